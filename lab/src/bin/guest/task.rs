//! `isolate`, `under-run`: the task isolation API as a user calls it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol::task::{Isolation, Wait};
use isol_sys::timer::{signal_me_after, TimerClock};

use crate::common::{irq_total, loc, pin, set_fifo, spinner, thread_state};

/// `isolate CPU SECS [OPTIONS]`.
#[derive(clap::Args)]
pub struct IsolateArgs {
    cpu: u32,
    secs: f64,
    /// How enter waits for quiet.
    #[arg(long, default_value = "spin", value_parser = ["spin", "sleep"])]
    wait: String,
    /// Leave the thread unpinned (enter must refuse).
    #[arg(long)]
    no_pin: bool,
    /// Enter where the tick cannot stop.
    #[arg(long)]
    allow_ticking: bool,
    /// Arm a CPU-time POSIX timer first (enter must fail, naming POSIX_TIMER).
    #[arg(long)]
    timer: bool,
    /// Run a second spinner on the CPU (enter must fail, naming SCHED).
    #[arg(long)]
    share: bool,
    /// Enter and exit N times, printing every time to quiet (the benchmark).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Start the process's watcher before the first enter (the benchmark's re-entry path).
    #[arg(long)]
    warm: bool,
    /// The user's first entry: the worker is created on CPU 0 as SCHED_OTHER and does
    /// nothing before enter (enter pins it and, with --fifo, makes it SCHED_FIFO).
    #[arg(long)]
    first: bool,
}

/// A worker thread enters task isolation on the CPU through the library API, spins SECS
/// seconds reading its interruption counter, exits, and prints the report; meanwhile the
/// main thread (CPU 0) counts the CPU's interrupts in `/proc/interrupts`. The output adds
/// the `/proc/interrupts` rows that moved.
pub fn isolate(a: &IsolateArgs, fifo: bool) {
    let cpu = a.cpu;
    let wait = if a.wait == "sleep" {
        Wait::Sleep
    } else {
        Wait::Spin
    };
    let (repeat, pin_it, ticking, first) = (a.repeat, !a.no_pin, a.allow_ticking, a.first);
    pin(0);
    if a.warm {
        isol::task::start_watcher(None).expect("start the watcher");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let isolated = Arc::new(AtomicBool::new(false));
    if a.share {
        // Another runnable task on the CPU: the tick must keep running (SCHED).
        let _ = spinner(cpu, false, stop.clone());
    }
    let worker = {
        let (stop, isolated) = (stop.clone(), isolated.clone());
        let timer = a.timer;
        std::thread::spawn(move || {
            if !first {
                pin(cpu);
            }
            if fifo && !first {
                // Become real-time well before entering: the fair class's deadline server
                // (6.12) fires once more after the last fair task left the CPU.
                set_fifo(10);
                std::thread::sleep(Duration::from_millis(1500));
            }
            if timer {
                // A CPU-time timer: the kernel keeps the tick for it (POSIX_TIMER).
                isol_sys::process::on_signal(libc::SIGUSR1, ignore).expect("sigaction");
                signal_me_after(
                    TimerClock::ThreadCpuTime,
                    Duration::from_millis(100),
                    Duration::from_millis(100),
                    libc::SIGUSR1,
                )
                .expect("timer_create");
            }
            let mut entries = Vec::new();
            for i in 0..repeat {
                let mut b = Isolation::builder()
                    .cpu(cpu)
                    .wait(wait)
                    .allow_ticking(ticking);
                if !pin_it {
                    // Undo the pin: the thread may run anywhere, and enter must refuse.
                    let all: isol::CpuSet = (0..2).collect();
                    isol::pin_current_thread(&all).unwrap();
                } else {
                    b = b.pin(true);
                }
                if fifo {
                    b = b.fifo(10);
                }
                let before = thread_state();
                match b.enter() {
                    Err(e) => {
                        entries.push(serde_json::json!({
                            "ok": false, "errno": e.errno(), "error": e.to_string(),
                            "state_before": before, "state_after": thread_state(),
                        }));
                        break;
                    }
                    Ok(g) => {
                        if i + 1 == repeat {
                            isolated.store(true, Ordering::SeqCst);
                            let mut n = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                n = n.wrapping_add(g.interruptions());
                                std::hint::spin_loop();
                            }
                            std::hint::black_box(n);
                        }
                        let r = g.exit();
                        entries.push(serde_json::json!({"ok": true, "report": r}));
                    }
                }
            }
            isolated.store(true, Ordering::SeqCst);
            entries
        })
    };
    while !isolated.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let rows_before = loc();
    let before = irq_total(cpu);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(a.secs));
    let after = irq_total(cpu);
    let rows_after = loc();
    let rows: serde_json::Map<String, serde_json::Value> = rows_after
        .rows
        .iter()
        .filter_map(|r| {
            let a = r.counts.get(&cpu).copied().unwrap_or(0);
            let b = rows_before
                .rows
                .iter()
                .find(|x| x.name == r.name)
                .and_then(|x| x.counts.get(&cpu).copied())
                .unwrap_or(0);
            (a > b).then(|| (r.name.clone(), serde_json::json!(a - b)))
        })
        .collect();
    let window = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let entries = worker.join().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "cpu": cpu,
            "wait": wait.to_string(),
            "irqs": after - before,
            "rows": rows,
            "window_s": window,
            "entries": entries,
        })
    );
}

extern "C" fn ignore(_: libc::c_int) {}

/// `under-run quiet|syscall SECS`: a program as `isol run` starts it. It enters isolation as
/// the environment says (`Isolation::from_env`: the CPU, SCHED_FIFO, strict mode), spins
/// SECS without a system call, then (`syscall`) makes one, leaves, and prints its report.
/// A helper thread, moved to CPU 0 before the entry, ends the spin. It exits only after
/// the isolation ends: a thread of the process exiting while another is isolated was seen
/// to send that one an IPI (`call_function_single` from `on_each_cpu_cond_mask`).
pub fn under_run(mode: &str, secs: f64) {
    let done = Arc::new(AtomicBool::new(false));
    let released = Arc::new(AtomicBool::new(false));
    let timer = {
        let (done, released) = (done.clone(), released.clone());
        std::thread::spawn(move || {
            pin(0);
            std::thread::sleep(Duration::from_secs_f64(secs));
            done.store(true, Ordering::SeqCst);
            while !released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // The helper has left this CPU before the entry waits for quiet.
    std::thread::sleep(Duration::from_millis(50));
    let builder = Isolation::from_env().unwrap_or_else(|e| {
        eprintln!("under-run: {e}");
        std::process::exit(2)
    });
    let guard = match builder.enter() {
        Ok(g) => g,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            );
            std::process::exit(3)
        }
    };
    while !done.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
    if mode == "syscall" {
        // Under strict kill, the process ends here.
        std::hint::black_box(rustix::process::getppid());
    }
    let report = guard.exit();
    released.store(true, Ordering::SeqCst);
    timer.join().unwrap();
    println!(
        "{}",
        serde_json::json!({"ok": true, "report": serde_json::to_value(&report).unwrap()})
    );
}
