//! `isol-lab-guest`: small measurement helpers run inside the lab guest.
//!
//! `ticks [--fifo] CPU SECS [BUSY_CPU...]`: keep CPU busy with a pinned spinning thread
//! (SCHED_FIFO with `--fifo`; the other CPUs' spinners stay SCHED_OTHER), and keep the
//! other listed CPUs too), wait for the tick to stop, then count local timer interrupts per
//! CPU over SECS seconds from `/proc/interrupts`, and sample `/proc/timer_list` for the
//! CPU's tick state. Prints one JSON object.
//!
//! `spin [--fifo] CPU SECS`: spin on CPU for SECS seconds (SCHED_FIFO with `--fifo`).
//!
//! `provoke CPU [DELAY_MS]`: start a resident thread spinning on CPU, wait DELAY_MS (default
//! 300), then interrupt CPU on purpose, once each, about 300 ms apart: an IPI (membarrier from CPU 0), a POSIX timer armed on CPU, a
//! workqueue item (`vm/stat_refresh` from CPU 0), and a task migrated onto CPU. Prints one
//! JSON object naming the threads involved, for a watcher to be checked against.
//!
//! `disturb CPU DELAY_MS WAKEUPS [--refresh] [--fifo] [--after COMM]`: interrupt CPU from another process,
//! for a noise measurement running there: after DELAY_MS, wake a thread sleeping on CPU
//! WAKEUPS times 100 ms apart (`isol-sleeper`, 50 us of work each), queue vmstat work on
//! every CPU with `--refresh` (a kworker on CPU; skipped otherwise, since a SCHED_FIFO
//! spinner starves it), and run a task on CPU for 20 ms (`isol-migrant`). With `--fifo`
//! both threads are SCHED_FIFO 20, so they preempt a SCHED_FIFO 1 sampler. Prints one JSON
//! object with the threads' ids and when the disturbing began and ended (CLOCK_MONOTONIC).
//!
//! `isolate CPU SECS [--wait spin|sleep] [--no-pin] [--fifo] [--allow-ticking] [--timer]
//! [--share] [--repeat N]`: a worker thread enters task isolation on CPU through the
//! library API, spins SECS seconds reading its interruption counter, exits, and prints the
//! report; meanwhile the main thread (CPU 0) counts CPU's interrupts in `/proc/interrupts`.
//! `--timer` arms a CPU-time POSIX timer first and `--share` runs a second spinner on the
//! CPU (both must make enter fail, naming why); `--repeat N` enters and exits N times and
//! prints every time to quiet (for the benchmark); `--warm` starts the process's watcher
//! before the first enter. `--first` is the user's first entry: the worker is created on
//! CPU 0 as SCHED_OTHER and does nothing before enter (enter pins it and, with `--fifo`,
//! makes it SCHED_FIFO); the output adds the `/proc/interrupts` rows that moved.
//!
//! `strict MODE CPU SECS`: strict mode as a user meets it. A worker created on CPU 0
//! enters isolation on CPU (pinned, SCHED_FIFO 10) in strict mode, spins SECS seconds with
//! no system call while the main thread counts CPU's interrupts, then: `kill` calls
//! getppid (the process must die by SIGKILL, the violation on stderr); `signal` calls
//! write on a pipe under Strict::Signal(SIGUSR1) (the handler runs first, isolation off,
//! and the write then succeeds); `report` calls getppid under Strict::Report (the call
//! returns the right value, the report names it); `exit` calls `_exit(7)` while strict
//! (allowed); `after` exits isolation first, then writes (no violation); `badsignal` asks
//! for signal 1000 and `nested` enters twice (both refused, nothing left armed). Prints
//! one JSON object.
//!
//! `notify MODE CPU`: remote notification. A worker created on CPU 0 enters isolation on
//! CPU with `on_interrupt(SIGUSR2)` (with `tlbstrict`, in strict mode Kill too); then, from
//! CPU 0, `tlb`/`tlbstrict` map, touch and unmap memory in a sibling thread (a TLB
//! shootdown IPI to CPU), and `task` runs `isol-lab-guest disturb CPU 0 0 --fifo`, another
//! process whose threads move onto CPU. Prints whether the worker's handler ran, what it
//! was notified for, the last interruption, and the report.
//!
//! `requiet timer|write CPU [--sleep]`: re-quiet mode (waiting by sleeping with `--sleep`). A worker created on CPU 0 enters isolation on
//! CPU with `requiet(true)`, then arms a 20 ms timerfd or writes 1 MiB to a file: the call
//! returns only once the CPU is quiet again; the main thread then counts CPU's interrupts
//! for 3 s. Prints the call's duration, the worker's counts and the report.
//!
//! `irqsum CPU`: the sum of every counter of CPU's column in `/proc/interrupts`, i.e. all
//! interrupts (device, timer, IPIs, ...) it has taken since boot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol::kernel::interrupts::InterruptTable;
use isol::kernel::timer_list;

fn pin(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set, CPU_SET writes within it,
    // and sched_setaffinity only reads the set we pass with its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!(
                "sched_setaffinity(cpu {cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn loc() -> InterruptTable {
    let text = std::fs::read_to_string("/proc/interrupts").expect("read /proc/interrupts");
    InterruptTable::parse(&text).expect("parse /proc/interrupts")
}

fn set_fifo(priority: i32) {
    // SAFETY: sched_param is plain data, fully initialised here; the call reads it only.
    let rc = unsafe {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param)
    };
    if rc != 0 {
        panic!(
            "sched_setscheduler(SCHED_FIFO): {}",
            std::io::Error::last_os_error()
        );
    }
}

fn spinner(cpu: u32, fifo: bool, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        pin(cpu);
        if fifo {
            set_fifo(10);
        }
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n = n.wrapping_add(1);
            std::hint::spin_loop();
        }
        n
    })
}

fn ticks(cpu: u32, secs: u64, fifo: bool, also: &[u32]) {
    // The measuring thread stays on CPU 0, the housekeeping CPU.
    pin(0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut spinners = vec![spinner(cpu, fifo, stop.clone())];
    spinners.extend(also.iter().map(|&c| spinner(c, false, stop.clone())));
    // Let the tick stop: the CPU needs a tick or two to notice it runs a single task.
    std::thread::sleep(Duration::from_secs(1));
    let before = loc();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs) / 2);
    let tl_text = std::fs::read_to_string("/proc/timer_list").unwrap_or_default();
    std::thread::sleep(Duration::from_secs(secs) / 2);
    let after = loc();
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    let mut counts = serde_json::Map::new();
    for c in &after.cpus {
        let d = after.count("LOC", *c).unwrap_or(0) - before.count("LOC", *c).unwrap_or(0);
        counts.insert(c.to_string(), d.into());
    }
    let tl = timer_list::parse(&tl_text).ok();
    let cpu_timers = tl.as_ref().and_then(|t| t.cpus.get(&cpu));
    let out = serde_json::json!({
        "cpu": cpu,
        "policy": if fifo { "fifo" } else { "other" },
        "seconds": elapsed,
        "loc": counts,
        "tick_stopped": cpu_timers.and_then(|c| c.tick_stopped),
        "next_event": tl.as_ref().and_then(|t| t.tick_device(cpu)).and_then(|d| d.next_event),
        "next_event_is_ktime_max": tl.as_ref().and_then(|t| t.tick_quiet(cpu)),
        "timers": cpu_timers.map(|c| c.timers.iter().map(|t| t.function.clone()).collect::<Vec<_>>()),
    });
    println!("{out}");
}

fn spin(cpu: u32, secs: u64, fifo: bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = spinner(cpu, fifo, stop.clone());
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let _ = s.join();
}

fn irqsum(cpu: u32) {
    println!("{}", loc().interrupts_on(cpu));
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

fn set_name(name: &str) {
    let c = std::ffi::CString::new(name).expect("no NUL in thread names");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a valid
    // pointer; longer names are truncated by the kernel.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Arm a POSIX timer on `clock` that sends SIGUSR1 (handled, doing nothing) to the calling
/// thread after `first_ms`, then every `every_ms` (0: once).
fn arm_timer(clock: libc::clockid_t, first_ms: i64, every_ms: i64) {
    let ts = |ms: i64| libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    // SAFETY: the handler does nothing (async-signal-safe); sigaction and sigevent are
    // zero-initialised plain data with the needed fields set; timer_create writes the id
    // into a valid local, and timer_settime reads a fully initialised itimerspec.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGUSR1;
        sev.sigev_notify_thread_id = gettid();
        let mut id: libc::timer_t = std::ptr::null_mut();
        if libc::timer_create(clock, &mut sev, &mut id) != 0 {
            panic!("timer_create: {}", std::io::Error::last_os_error());
        }
        let spec = libc::itimerspec {
            it_interval: ts(every_ms),
            it_value: ts(first_ms),
        };
        if libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) != 0 {
            panic!("timer_settime: {}", std::io::Error::last_os_error());
        }
    }
}

/// A resident spinning on `cpu`, then from CPU 0, once `go` exists if given and
/// `delay_ms` later, 300 ms apart: membarrier IPIs, a timer the resident arms, work queued
/// on every CPU, a task moved onto `cpu`. Prints what it did, as JSON.
fn provoke(cpu: u32, delay_ms: u64, go: Option<String>) {
    pin(0);
    let stop = Arc::new(AtomicBool::new(false));
    let arm = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let resident = {
        let (stop, arm) = (stop.clone(), arm.clone());
        std::thread::spawn(move || {
            pin(cpu);
            set_name("isol-resident");
            // The CPU's resident even when other tasks compete for it (a loaded host): the
            // membarrier IPI goes only to a CPU where a thread of this process runs.
            // SAFETY: setpriority takes integer arguments; 0 is the calling thread.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
            tx.send(gettid()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if arm.swap(false, Ordering::Relaxed) {
                    arm_timer(libc::CLOCK_MONOTONIC, 20, 0);
                }
                std::hint::spin_loop();
            }
        })
    };
    let resident_tid = rx.recv().unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(300));
    if let Some(go) = go {
        wait_until(&format!("{go} appearing"), || {
            std::path::Path::new(&go).exists()
        });
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    // 1. IPIs to every CPU running this process: the resident's. The IPI goes only where
    //    a thread of this process runs at that instant; on a loaded host another task may
    //    hold the CPU for a moment, so a few tries, 10 ms apart.
    // SAFETY: membarrier takes integer arguments only.
    unsafe { libc::syscall(libc::SYS_membarrier, 1 << 4, 0, 0) }; // REGISTER_PRIVATE_EXPEDITED
    let mut rc = 0;
    for _ in 0..5 {
        // SAFETY: as above.
        rc |= unsafe { libc::syscall(libc::SYS_membarrier, 1 << 3, 0, 0) }; // PRIVATE_EXPEDITED
        std::thread::sleep(Duration::from_millis(10));
    }
    let membarrier_tid = gettid();
    pause();
    // 2. A POSIX timer armed by the resident itself, on its CPU.
    arm.store(true, Ordering::Relaxed);
    pause();
    // 3. Work queued on every CPU, from CPU 0.
    let refresh = std::fs::write("/proc/sys/vm/stat_refresh", "1").is_ok();
    pause();
    // 4. A task started on CPU 0 and moved onto the CPU.
    let (ttx, trx) = std::sync::mpsc::channel();
    let migrant = std::thread::spawn(move || {
        set_name("isol-migrant");
        ttx.send(gettid()).unwrap();
        let t0 = Instant::now();
        pin(cpu);
        while t0.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    });
    let migrant_tid = trx.recv().unwrap();
    let _ = migrant.join();
    pause();
    stop.store(true, Ordering::Relaxed);
    let _ = resident.join();
    println!(
        "{}",
        serde_json::json!({
            "cpu": cpu,
            "pid": std::process::id(),
            "resident": resident_tid,
            "membarrier": {"tid": membarrier_tid, "ok": rc == 0},
            "stat_refresh": refresh,
            "migrant": migrant_tid,
        })
    );
}

fn spin_for(d: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A thread `isol-sleeper` on `cpu` that, each time it is sent a message, sleeps `nap` (a
/// timer on its CPU) if given, then spins 50 us. SCHED_FIFO before arriving when `fifo`: a
/// moment as SCHED_OTHER on a nohz_full CPU starts its fair deadline server, which pokes
/// the CPU up to a second later. Returns the sender (drop it to end the thread), the
/// thread and its tid.
fn sleeper(
    cpu: u32,
    fifo: bool,
    nap: Option<Duration>,
) -> (
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
    i32,
) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ttx, trx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        set_name("isol-sleeper");
        if fifo {
            set_fifo(20);
        }
        pin(cpu);
        ttx.send(gettid()).unwrap();
        while rx.recv().is_ok() {
            if let Some(d) = nap {
                std::thread::sleep(d);
            }
            spin_for(Duration::from_micros(50));
        }
    });
    (tx, thread, trx.recv().unwrap())
}

/// A thread `isol-migrant` started here and moved onto `cpu`, where it spins 20 ms
/// (SCHED_FIFO first when `fifo`). Returns its tid once it has ended.
fn migrant(cpu: u32, fifo: bool) -> i32 {
    let (mtx, mrx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        set_name("isol-migrant");
        mtx.send(gettid()).unwrap();
        if fifo {
            set_fifo(20);
        }
        pin(cpu);
        spin_for(Duration::from_millis(20));
    });
    let tid = mrx.recv().unwrap();
    let _ = thread.join();
    tid
}

/// Poll `done` every 20 ms until it holds, at most 120 s (then say `what` never happened
/// and go on).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        if Instant::now() > deadline {
            eprintln!("isol-lab-guest: {what} never happened; going on");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until a thread named `comm` is running on `cpu`, seen twice 20 ms apart: the
/// measurement a disturbance is meant for has begun (starting a measurement switches
/// tracepoints on, which takes seconds under TCG). Reads /proc only.
fn wait_running(comm: &str, cpu: u32) {
    let running = || {
        let tasks = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        tasks
            .flat_map(|p| {
                std::fs::read_dir(p.path().join("task"))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter_map(|s| isol::kernel::threads::parse_stat(&s))
            .any(|s| s.comm == comm && s.state == 'R' && s.processor == cpu)
    };
    let mut seen = 0;
    wait_until(&format!("{comm} running on cpu {cpu}"), || {
        seen = if running() { seen + 1 } else { 0 };
        seen >= 2
    });
}

/// From CPU 0: a sleeper on `cpu` (made at once: its arrival is not part of what is
/// measured), then, once `after` runs there if given, and `delay_ms` later: `wakeups`
/// wakeups of the sleeper 100 ms apart, a vmstat refresh if `refresh`, and a task moved
/// onto `cpu`. Prints what it did and when, as JSON.
fn disturb(
    cpu: u32,
    delay_ms: u64,
    wakeups: u64,
    refresh: bool,
    fifo: bool,
    after: Option<String>,
) {
    pin(0);
    let (tx, sleeper, sleeper_tid) = sleeper(cpu, fifo, None);
    if let Some(comm) = after {
        wait_running(&comm, cpu);
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    let begin_ns = isol::monotonic_ns();
    for _ in 0..wakeups {
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(tx);
    let _ = sleeper.join();
    let refreshed = refresh && std::fs::write("/proc/sys/vm/stat_refresh", "1").is_ok();
    std::thread::sleep(Duration::from_millis(100));
    let migrant_tid = migrant(cpu, fifo);
    let end_ns = isol::monotonic_ns();
    println!(
        "{}",
        serde_json::json!({
            "cpu": cpu,
            "pid": std::process::id(),
            "sleeper": sleeper_tid,
            "wakeups": wakeups,
            "stat_refresh": refreshed,
            "migrant": migrant_tid,
            "begin_ns": begin_ns,
            "end_ns": end_ns,
        })
    );
}

/// The calling thread's affinity, policy and priority, and the process's locked memory.
fn thread_state() -> serde_json::Value {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    let cpus: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (0..64).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    };
    // SAFETY: sched_getscheduler takes a tid (0: this thread).
    let policy = unsafe { libc::sched_getscheduler(0) };
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_getparam writes one sched_param into `param`.
    unsafe { libc::sched_getparam(0, &mut param) };
    let locked = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        .unwrap_or_default();
    serde_json::json!({"cpus": cpus, "policy": policy, "priority": param.sched_priority, "locked_kb": locked})
}

fn irq_total(cpu: u32) -> u64 {
    let t = loc();
    t.rows.iter().filter_map(|r| r.counts.get(&cpu)).sum()
}

fn isolate(args: &[String], fifo: bool) {
    use isol::task::{Isolation, Wait};
    let flag = |f: &str| args.iter().any(|a| a == f);
    let opt = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let cpu: u32 = args[1].parse().unwrap_or_else(|_| usage());
    let secs: f64 = args[2].parse().unwrap_or_else(|_| usage());
    let wait = match opt("--wait").as_deref() {
        Some("sleep") => Wait::Sleep,
        _ => Wait::Spin,
    };
    let repeat: usize = opt("--repeat").and_then(|v| v.parse().ok()).unwrap_or(1);
    let (pin_it, ticking) = (!flag("--no-pin"), flag("--allow-ticking"));
    let first = flag("--first");
    pin(0);
    if flag("--warm") {
        isol::task::start_watcher(None).expect("start the watcher");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let isolated = Arc::new(AtomicBool::new(false));
    if flag("--share") {
        // Another runnable task on the CPU: the tick must keep running (SCHED).
        let _ = spinner(cpu, false, stop.clone());
    }
    let worker = {
        let (stop, isolated) = (stop.clone(), isolated.clone());
        let timer = flag("--timer");
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
                arm_timer(libc::CLOCK_THREAD_CPUTIME_ID, 100, 100);
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
    std::thread::sleep(Duration::from_secs_f64(secs));
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

/// Argument `i`, parsed, or the usage.
/// The value after `flag`, if the flag is given.
fn option(args: &[String], flag: &str) -> Option<String> {
    let i = args.iter().position(|a| a == flag)?;
    Some(arg(args, i + 1))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

/// Install a plain handler for `sig`.
fn on_signal(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with a plain handler; sigaction reads it.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

static HANDLED: AtomicBool = AtomicBool::new(false);
static HANDLER_SAW_VIOLATION: AtomicBool = AtomicBool::new(false);
static HANDLER_SYSCALL_OK: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    HANDLED.store(true, Ordering::SeqCst);
    HANDLER_SAW_VIOLATION.store(
        isol::task::strict::last_violation().is_some(),
        Ordering::SeqCst,
    );
    // Isolation is off in the handler: a system call runs, and is not a second violation.
    // SAFETY: getpid takes no arguments.
    let pid = unsafe { libc::getpid() };
    HANDLER_SYSCALL_OK.store(
        pid > 0 && isol::task::strict::violations() == 1,
        Ordering::SeqCst,
    );
}

static NOTIFIED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr2(_: libc::c_int) {
    NOTIFIED.store(true, Ordering::SeqCst);
}

fn notify(args: &[String]) {
    use isol::task::{Isolation, Strict};
    let (mode, cpu): (String, u32) = (arg(args, 1), arg(args, 2));
    pin(0);
    on_signal(libc::SIGUSR2, on_usr2);
    let spinning = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (spinning, done, strict) = (spinning.clone(), done.clone(), mode == "tlbstrict");
        std::thread::spawn(move || -> serde_json::Value {
            let mut b = Isolation::builder()
                .cpu(cpu)
                .pin(true)
                .fifo(10)
                .on_interrupt(libc::SIGUSR2);
            if strict {
                b = b.strict(Strict::Kill);
            }
            let g = match b.enter() {
                Ok(g) => g,
                Err(e) => {
                    spinning.store(true, Ordering::SeqCst);
                    return serde_json::json!({"ok": false, "error": e.to_string()});
                }
            };
            spinning.store(true, Ordering::SeqCst);
            while !done.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            isol::task::strict::stop_trapping();
            let by = g.notified_by();
            let last = g.last_interruption();
            let r = g.exit();
            serde_json::json!({"ok": true, "notified": NOTIFIED.load(Ordering::SeqCst),
                "notified_by": by, "last": last, "report": r,
                "violations": isol::task::strict::violations()})
        })
    };
    while !spinning.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    if mode == "task" {
        let _ = std::process::Command::new("isol-lab-guest")
            .args(["disturb", &cpu.to_string(), "0", "0", "--fifo"])
            .output();
    } else {
        std::thread::spawn(|| {
            pin(0);
            // Touched, then unmapped: the unmap flushes the TLB of every CPU running this
            // process (CPU 1: the worker).
            let pages = 64;
            let p = touch_pages(pages);
            // SAFETY: `p` is the mapping of `pages` pages touch_pages just made.
            unsafe { libc::munmap(p as *mut libc::c_void, pages * 4096) };
        })
        .join()
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    println!("{}", worker.join().unwrap());
}

fn requiet(args: &[String]) {
    use isol::task::{Isolation, Wait};
    let (mode, cpu): (String, u32) = (arg(args, 1), arg(args, 2));
    let wait = if args.iter().any(|a| a == "--sleep") {
        Wait::Sleep
    } else {
        Wait::Spin
    };
    pin(0);
    // SAFETY: timerfd_create and open take plain arguments and a valid path.
    let (tfd, ffd) = unsafe {
        let path = std::ffi::CString::new("/tmp/isol-requiet").unwrap();
        (
            libc::timerfd_create(libc::CLOCK_MONOTONIC, 0),
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                0o600,
            ),
        )
    };
    assert!(tfd >= 0 && ffd >= 0);
    let buf = vec![7u8; 1 << 20];
    let (called, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let worker = {
        let (called, done) = (called.clone(), done.clone());
        std::thread::spawn(move || -> serde_json::Value {
            let g = match Isolation::builder()
                .cpu(cpu)
                .pin(true)
                .fifo(10)
                .wait(wait)
                .requiet(true)
                .enter()
            {
                Ok(g) => g,
                Err(e) => {
                    called.store(true, Ordering::SeqCst);
                    return serde_json::json!({"ok": false, "error": e.to_string()});
                }
            };
            let t0 = std::time::Instant::now();
            while t0.elapsed() < Duration::from_millis(200) {
                std::hint::spin_loop();
            }
            let before = g.interruptions();
            let t = std::time::Instant::now();
            // SAFETY: a timer 20 ms from now on our own timerfd; a write of our own buffer
            // to our own file.
            let ret = unsafe {
                if mode == "timer" {
                    let spec = libc::itimerspec {
                        it_interval: libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        },
                        it_value: libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 20_000_000,
                        },
                    };
                    libc::timerfd_settime(tfd, 0, &spec, std::ptr::null_mut()) as i64
                } else {
                    libc::write(ffd, buf.as_ptr().cast(), buf.len()) as i64
                }
            };
            let call_ns = t.elapsed().as_nanos() as u64;
            let at_return = g.interruptions();
            called.store(true, Ordering::SeqCst);
            while !done.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            let after = g.interruptions();
            let r = g.exit();
            serde_json::json!({"ok": true, "ret": ret, "call_ns": call_ns,
                "counted_before": before, "counted_at_return": at_return,
                "counted_after": after, "report": r})
        })
    };
    while !called.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The CPU after the call returned: 3 s, counted from CPU 0.
    let before = irq_total(cpu);
    std::thread::sleep(Duration::from_secs(3));
    let irqs = irq_total(cpu) - before;
    done.store(true, Ordering::SeqCst);
    let mut out = worker.join().unwrap();
    out["irqs_after"] = irqs.into();
    println!("{out}");
}

fn strict(args: &[String]) {
    use isol::task::{Isolation, Strict};
    let (mode, cpu, secs): (String, u32, f64) = (arg(args, 1), arg(args, 2), arg(args, 3));
    pin(0);
    on_signal(libc::SIGUSR1, on_usr1);
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two descriptors into the array.
    unsafe { libc::pipe(fds.as_mut_ptr()) };
    let strictness = match mode.as_str() {
        "signal" => Strict::Signal(libc::SIGUSR1),
        "report" | "nested" | "fault" => Strict::Report,
        "badsignal" => Strict::Signal(1000),
        _ => Strict::Kill,
    };
    let spinning = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (spinning, done, mode) = (spinning.clone(), done.clone(), mode.clone());
        std::thread::spawn(move || -> serde_json::Value {
            // `fault`, `faultkill`: a file mapping left unfaulted. Everything mapped before it
            // is made present first, and enter does not lock memory, so the first page the
            // thread faults on while strict is the mapping's.
            let faulting = mode.starts_with("fault");
            let mapping = faulting.then(|| {
                let path = std::ffi::CString::new("/tmp/isol-fault").unwrap();
                // SAFETY: mlockall takes flags; open, ftruncate and mmap get a valid path,
                // descriptor and length; the mapping stays for the process's life.
                unsafe {
                    assert_eq!(libc::mlockall(libc::MCL_CURRENT), 0, "mlockall");
                    let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600);
                    assert!(fd >= 0);
                    assert_eq!(libc::ftruncate(fd, 8192), 0);
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        8192,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE,
                        fd,
                        0,
                    );
                    assert_ne!(p, libc::MAP_FAILED);
                    p as usize
                }
            });
            let b = move || {
                Isolation::builder()
                    .cpu(cpu)
                    .pin(true)
                    .fifo(10)
                    .mlock(!faulting)
                    .strict(strictness)
            };
            let g = match b().enter() {
                Ok(g) => g,
                Err(e) => {
                    // Nothing left armed: this call would trap (and kill) if it were.
                    // SAFETY: getppid takes no arguments.
                    let ppid = unsafe { libc::getppid() };
                    spinning.store(true, Ordering::SeqCst);
                    return serde_json::json!({"ok": false, "errno": e.errno(), "error": e.to_string(),
                        "ppid": ppid, "violations": isol::task::strict::violations()});
                }
            };
            if mode == "nested" {
                let e = b().enter().err();
                // Leaving strict mode first: the JSON below allocates.
                isol::task::strict::disarm();
                let r = g.exit();
                spinning.store(true, Ordering::SeqCst);
                return serde_json::json!({"ok": true, "nested_errno": e.as_ref().map(|e| e.errno()),
                    "nested_error": e.map(|e| e.to_string()), "report": r});
            }
            spinning.store(true, Ordering::SeqCst);
            while !done.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            let isolated_irqs = g.interruptions();
            let mut out = serde_json::json!({"ok": true});
            match mode.as_str() {
                "fault" | "faultkill" => {
                    let addr = mapping.unwrap();
                    // SAFETY: a readable page of our own mapping.
                    let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
                    let r = g.exit();
                    out["byte"] = byte.into();
                    out["mapping"] = addr.into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                }
                "kill" | "report" => {
                    // SAFETY: getppid takes no arguments.
                    let ppid = unsafe { libc::getppid() };
                    let r = g.exit();
                    // SAFETY: as above.
                    out["ppid_right"] = (ppid == unsafe { libc::getppid() }).into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                }
                "signal" => {
                    // SAFETY: writes one byte from a live buffer to our own pipe.
                    let n = unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
                    let r = g.exit();
                    out["write_ret"] = n.into();
                    out["handled"] = HANDLED.load(Ordering::SeqCst).into();
                    out["handler_saw_violation"] =
                        HANDLER_SAW_VIOLATION.load(Ordering::SeqCst).into();
                    out["handler_syscall_ok"] = HANDLER_SYSCALL_OK.load(Ordering::SeqCst).into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                }
                "exit" => {
                    // SAFETY: ends the process; allowed while strict.
                    unsafe { libc::_exit(7) };
                }
                _ => {
                    // `after` and `quiet`: leave first, then a call is no violation.
                    let r = g.exit();
                    // SAFETY: as above.
                    let n = unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
                    out["write_ret"] = n.into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                }
            }
            out["isolated_irqs"] = isolated_irqs.into();
            out["violations_after"] = isol::task::strict::violations().into();
            out
        })
    };
    while !spinning.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = irq_total(cpu);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let irqs = irq_total(cpu) - before;
    let window = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let mut out = worker.join().unwrap();
    out["irqs"] = irqs.into();
    out["window_s"] = window.into();
    println!("{out}");
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let fifo = args.iter().any(|a| a == "--fifo");
    args.retain(|a| a != "--fifo");
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.first().map(String::as_str) {
        Some("ticks") => {
            let also: Vec<u32> = args[3..].iter().filter_map(|a| a.parse().ok()).collect();
            ticks(num(1) as u32, num(2), fifo, &also)
        }
        Some("spin") => spin(num(1) as u32, num(2), fifo),
        Some("irqsum") => irqsum(num(1) as u32),
        Some("isolate") => isolate(&args, fifo),
        Some("under-run") => under_run(&args),
        Some("app") => app(arg(&args, 1)),
        Some("udp") => udp(num(1) as u32, num(2) as u32),
        Some("referee") => {
            if let Some(comm) = option(&args, "--after") {
                wait_running(&comm, num(1) as u32);
            }
            referee(num(1) as u32, num(2))
        }
        Some("strict") => strict(&args),
        Some("notify") => notify(&args),
        Some("requiet") => requiet(&args),
        Some("disturb") => disturb(
            num(1) as u32,
            num(2),
            num(3),
            args.iter().any(|a| a == "--refresh"),
            fifo,
            option(&args, "--after"),
        ),
        Some("provoke") => provoke(
            num(1) as u32,
            args.get(2).and_then(|a| a.parse().ok()).unwrap_or(300),
            option(&args, "--go"),
        ),
        _ => usage(),
    }
}

static APP_USR1: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_app_usr1(_: libc::c_int) {
    APP_USR1.fetch_add(1, Ordering::SeqCst);
}

/// Map `pages` fresh anonymous pages and write each (faulting them in on this CPU).
fn touch_pages(pages: usize) -> *mut u8 {
    let len = pages * 4096;
    // SAFETY: an anonymous private mapping of `len` bytes, checked before use; each write
    // is inside it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let p = p as *mut u8;
        for i in 0..pages {
            p.add(i * 4096).write_volatile(1);
        }
        p
    }
}

/// `app SECS`: an application as a user starts it, after `isol watch`, with `taskset -c 1
/// isol-lab-guest app SECS`. It faults in a few pages on its CPU (they wait in that CPU's
/// LRU batch until something drains it), starts a sibling thread that moves to CPU 0 and
/// unmaps a page every 500 ms (each a TLB shootdown of the app's CPU), makes itself
/// SCHED_FIFO and spins SECS, counting the SIGUSR1s it gets. It prints what it did as JSON.
/// A thread `isol-udp` on `cpu` (SCHED_FIFO 20, above `app`) receives `n` datagrams over
/// loopback, sent from CPU 0 100 ms apart: each wakes it from the sender's softirq
/// (`net_rx_action`). Prints its tid and what it received, as JSON.
fn udp(cpu: u32, n: u32) {
    pin(0);
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket (is lo up?)");
    let to = rx.local_addr().unwrap();
    let (tx_tid, tid) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        set_name("isol-udp");
        set_fifo(20);
        pin(cpu);
        tx_tid.send(gettid()).unwrap();
        let mut buf = [0u8; 16];
        (0..n).filter(|_| rx.recv(&mut buf).is_ok()).count()
    });
    let tid = tid.recv().unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(100));
        tx.send_to(b"isol", to).unwrap();
    }
    let received = receiver.join().unwrap();
    println!(
        "{}",
        serde_json::json!({"receiver": tid, "received": received})
    );
}

fn app(secs: f64) {
    set_name("app");
    on_signal(libc::SIGUSR1, on_app_usr1);
    touch_pages(64);
    // The sibling keeps the time, so the spin makes no call at all (not even a vDSO
    // clock read, which is a system call under some clocksources).
    let done = Arc::new(AtomicBool::new(false));
    let (moved_tx, moved) = std::sync::mpsc::channel();
    let sibling = {
        let done = done.clone();
        std::thread::spawn(move || {
            set_name("sibling");
            pin(0);
            moved_tx.send(()).unwrap();
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut unmapped = 0u64;
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(500));
                let p = touch_pages(1);
                // SAFETY: `p` is the one-page mapping touch_pages just made.
                unsafe { libc::munmap(p as *mut libc::c_void, 4096) };
                unmapped += 1;
            }
            done.store(true, Ordering::SeqCst);
            (gettid(), unmapped)
        })
    };
    // SCHED_FIFO once the sibling has left: a FIFO spinner never yields its CPU.
    moved.recv().unwrap();
    set_fifo(1);
    while !done.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
    let (sibling_tid, unmapped) = sibling.join().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "pid": std::process::id(),
            "sibling": sibling_tid,
            "munmaps": unmapped,
            "usr1": APP_USR1.load(Ordering::SeqCst),
        })
    );
}

/// `referee CPU DELAY_MS`: from CPU 0, after DELAY_MS, disturb CPU in each way the
/// kernel's osnoise tracer has a class for: a device interrupt (the serial port's IRQ moved
/// to CPU, 5 writes to it, then moved back), IPIs and another thread (a sleeper on CPU woken
/// 5 times, each time sleeping 1 ms there: a timer), a kworker (`stat_refresh`), and a
/// task moved onto the CPU. Prints what it did as JSON.
fn referee(cpu: u32, delay_ms: u64) {
    pin(0);
    std::thread::sleep(Duration::from_millis(delay_ms));
    let irq = loc()
        .devices()
        .find(|r| r.device() == "ttyS0")
        .and_then(|r| r.irq());
    let mut serial_writes = 0;
    if let Some(irq) = irq {
        let path = format!("/proc/irq/{irq}/smp_affinity_list");
        let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "0".into());
        if std::fs::write(&path, cpu.to_string()).is_ok() {
            for _ in 0..5 {
                if std::fs::write("/dev/ttyS0", "isol referee: serial write\n").is_ok() {
                    serial_writes += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::write(&path, old.trim());
        }
    }
    let (tx, sleeper, sleeper_tid) = sleeper(cpu, false, Some(Duration::from_millis(1)));
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        tx.send(()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(tx);
    let _ = sleeper.join();
    let refreshed = std::fs::write("/proc/sys/vm/stat_refresh", "1").is_ok();
    std::thread::sleep(Duration::from_millis(100));
    let migrant_tid = migrant(cpu, false);
    println!(
        "{}",
        serde_json::json!({
            "cpu": cpu,
            "irq": irq,
            "serial_writes": serial_writes,
            "sleeper": sleeper_tid,
            "wakeups": 5,
            "stat_refresh": refreshed,
            "migrant": migrant_tid,
        })
    );
}

/// `under-run quiet|syscall SECS`: a program as `isol run` starts it. It enters isolation as
/// the environment says (`Isolation::from_env`: the CPU, SCHED_FIFO, strict mode), spins
/// SECS without a system call, then (`syscall`) makes one, leaves, and prints its report.
/// A helper thread, moved to CPU 0 before the entry, ends the spin. It exits only after
/// the isolation ends: a thread of the process exiting while another is isolated was seen
/// to send that one an IPI (`call_function_single` from `on_each_cpu_cond_mask`).
fn under_run(args: &[String]) {
    use isol::task::Isolation;
    let (mode, secs): (String, f64) = (arg(args, 1), arg(args, 2));
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
        // SAFETY: getppid takes no arguments (under strict kill, the process ends here).
        unsafe { libc::getppid() };
    }
    let report = guard.exit();
    released.store(true, Ordering::SeqCst);
    timer.join().unwrap();
    println!(
        "{}",
        serde_json::json!({"ok": true, "report": serde_json::to_value(&report).unwrap()})
    );
}

fn usage() -> ! {
    eprintln!(
        "usage: isol-lab-guest ticks [--fifo] CPU SECS [BUSY_CPU...] | spin [--fifo] CPU SECS | irqsum CPU | provoke CPU [DELAY_MS] [--go PATH] | disturb CPU DELAY_MS WAKEUPS [--refresh] [--fifo] [--after COMM] | isolate CPU SECS [OPTIONS] | under-run quiet|syscall SECS | app SECS | udp CPU N | referee CPU DELAY_MS [--after COMM]"
    );
    std::process::exit(64)
}
