//! `strict`, `notify`, `requiet`: strict mode, remote notification and re-quiet mode as a
//! user meets them, each from a worker thread created on CPU 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol::task::{Isolation, Strict, Wait};

use crate::common::{irq_total, pin, touch_pages};

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
    let pid = rustix::process::getpid();
    HANDLER_SYSCALL_OK.store(
        pid.as_raw_nonzero().get() > 0 && isol::task::strict::violations() == 1,
        Ordering::SeqCst,
    );
}

static NOTIFIED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr2(_: libc::c_int) {
    NOTIFIED.store(true, Ordering::SeqCst);
}

/// `strict MODE CPU SECS`: a worker created on CPU 0 enters isolation on CPU (pinned,
/// SCHED_FIFO 10) in strict mode, spins SECS seconds with no system call while the main
/// thread counts CPU's interrupts, then: `kill` calls getppid (the process must die by
/// SIGKILL, the violation on stderr); `signal` calls write on a pipe under
/// Strict::Signal(SIGUSR1) (the handler runs first, isolation off, and the write then
/// succeeds); `report` calls getppid under Strict::Report (the call returns the right
/// value, the report names it); `exit` calls `_exit(7)` while strict (allowed); `after`
/// exits isolation first, then writes (no violation); `badsignal` asks for signal 1000 and
/// `nested` enters twice (both refused, nothing left armed); `fault`/`faultkill` read a
/// file mapping left unfaulted (a page fault while strict). Prints one JSON object.
pub fn strict(mode: &str, cpu: u32, secs: f64) {
    pin(0);
    isol_sys::process::on_signal(libc::SIGUSR1, on_usr1).expect("sigaction");
    let (_read_end, write_end) = rustix::pipe::pipe().expect("pipe");
    let strictness = match mode {
        "signal" => Strict::Signal(libc::SIGUSR1),
        "report" | "nested" | "fault" => Strict::Report,
        "badsignal" => Strict::Signal(1000),
        _ => Strict::Kill,
    };
    let spinning = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (spinning, done, mode) = (spinning.clone(), done.clone(), mode.to_string());
        std::thread::spawn(move || -> serde_json::Value {
            // `fault`, `faultkill`: a file mapping left unfaulted. Everything mapped before it
            // is made present first, and enter does not lock memory, so the first page the
            // thread faults on while strict is the mapping's.
            let faulting = mode.starts_with("fault");
            let mapping = faulting.then(|| {
                isol_sys::mem::lock_all_now().expect("mlockall");
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open("/tmp/isol-fault")
                    .expect("open /tmp/isol-fault");
                file.set_len(8192).expect("ftruncate");
                isol_sys::mem::Mapping::of_file(&file, 8192).expect("mmap")
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
                    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
                    spinning.store(true, Ordering::SeqCst);
                    return serde_json::json!({"ok": false, "errno": e.errno(), "error": e.to_string(),
                        "ppid": ppid, "violations": isol::task::strict::violations()});
                }
            };
            if mode == "nested" {
                let e = b().enter().err();
                // Leaving strict mode first: the JSON below allocates.
                g.end_strict();
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
                    let m = mapping.expect("the mapping");
                    let byte = m.read(0);
                    let r = g.exit();
                    out["byte"] = byte.into();
                    out["mapping"] = m.addr().into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                    // Mapped for the life of the process.
                    std::mem::forget(m);
                }
                "kill" | "report" => {
                    let ppid = rustix::process::getppid();
                    let r = g.exit();
                    out["ppid_right"] = (ppid == rustix::process::getppid()).into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                }
                "signal" => {
                    let n = rustix::io::write(&write_end, b"x").map_or(-1, |n| n as i64);
                    let r = g.exit();
                    out["write_ret"] = n.into();
                    out["handled"] = HANDLED.load(Ordering::SeqCst).into();
                    out["handler_saw_violation"] =
                        HANDLER_SAW_VIOLATION.load(Ordering::SeqCst).into();
                    out["handler_syscall_ok"] = HANDLER_SYSCALL_OK.load(Ordering::SeqCst).into();
                    out["report"] = serde_json::to_value(&r).unwrap();
                }
                "exit" => {
                    // Ends the process; allowed while strict.
                    isol_sys::raw::exit_now(7);
                }
                _ => {
                    // `after` and `quiet`: leave first, then a call is no violation.
                    let r = g.exit();
                    let n = rustix::io::write(&write_end, b"x").map_or(-1, |n| n as i64);
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

/// `notify MODE CPU`: remote notification. A worker created on CPU 0 enters isolation on
/// CPU with `on_interrupt(SIGUSR2)` (with `tlbstrict`, in strict mode Kill too); then, from
/// CPU 0, `tlb`/`tlbstrict` map, touch and unmap memory in a sibling thread (a TLB
/// shootdown IPI to CPU), and `task` runs `isol-lab-guest disturb CPU 0 0 --fifo`, another
/// process whose threads move onto CPU. Prints whether the worker's handler ran, what it
/// was notified for, the last interruption, and the report.
pub fn notify(mode: &str, cpu: u32) {
    pin(0);
    isol_sys::process::on_signal(libc::SIGUSR2, on_usr2).expect("sigaction");
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
            g.end_strict();
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
            // Touched, then unmapped as it is dropped: the unmap flushes the TLB of every
            // CPU running this process (CPU 1: the worker).
            drop(touch_pages(64));
        })
        .join()
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    println!("{}", worker.join().unwrap());
}

/// `requiet timer|write CPU [--sleep]`: re-quiet mode (waiting by sleeping with
/// `--sleep`). A worker created on CPU 0 enters isolation on CPU with `requiet(true)`,
/// then arms a 20 ms timerfd or writes 1 MiB to a file: the call returns only once the CPU
/// is quiet again; the main thread then counts CPU's interrupts for 3 s. Prints the call's
/// duration, the worker's counts and the report.
pub fn requiet(mode: &str, cpu: u32, sleep: bool) {
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    let wait = if sleep { Wait::Sleep } else { Wait::Spin };
    pin(0);
    let tfd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::empty()).expect("timerfd");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open("/tmp/isol-requiet")
        .expect("open /tmp/isol-requiet");
    let buf = vec![7u8; 1 << 20];
    let (called, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let worker = {
        let (called, done, mode) = (called.clone(), done.clone(), mode.to_string());
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
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(200) {
                std::hint::spin_loop();
            }
            let before = g.interruptions();
            let t = Instant::now();
            // A timer 20 ms from now on our own timerfd, or our own buffer to our own file.
            let ret: i64 = if mode == "timer" {
                let spec = Itimerspec {
                    it_interval: Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: Timespec {
                        tv_sec: 0,
                        tv_nsec: 20_000_000,
                    },
                };
                timerfd_settime(&tfd, TimerfdTimerFlags::empty(), &spec)
                    .map_or_else(|e| -(e.raw_os_error() as i64), |_| 0)
            } else {
                rustix::io::write(&file, &buf)
                    .map_or_else(|e| -(e.raw_os_error() as i64), |n| n as i64)
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
