//! What the helpers share: placing threads, counting interrupts, waiting for a
//! measurement to begin, and the sleeper and migrant threads that disturb a CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol::kernel::interrupts::InterruptTable;

/// Pin the calling thread to `cpu`.
pub fn pin(cpu: u32) {
    isol_sys::thread::pin([cpu]).unwrap_or_else(|e| panic!("sched_setaffinity(cpu {cpu}): {e}"));
}

/// Make the calling thread SCHED_FIFO at `priority`.
pub fn set_fifo(priority: i32) {
    isol_sys::thread::set_fifo(priority)
        .unwrap_or_else(|e| panic!("sched_setscheduler(SCHED_FIFO): {e}"));
}

/// Name the calling thread.
pub fn set_name(name: &str) {
    let _ = isol_sys::thread::set_name(name);
}

pub use isol_sys::thread::gettid;

/// `/proc/interrupts` now.
pub fn loc() -> InterruptTable {
    let text = std::fs::read_to_string("/proc/interrupts").expect("read /proc/interrupts");
    InterruptTable::parse(&text).expect("parse /proc/interrupts")
}

/// Every counter of `cpu`'s column in `/proc/interrupts`, summed.
pub fn irq_total(cpu: u32) -> u64 {
    let t = loc();
    t.rows.iter().filter_map(|r| r.counts.get(&cpu)).sum()
}

/// A thread spinning on `cpu` (SCHED_FIFO 10 when `fifo`) until `stop`.
pub fn spinner(cpu: u32, fifo: bool, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
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

pub fn spin_for(d: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Poll `done` every 20 ms until it holds, at most 120 s (then say `what` never happened
/// and go on).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
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
/// tracepoints on, which takes seconds under TCG). Reads /proc only, through the kernel
/// model's thread walk.
pub fn wait_running(comm: &str, cpu: u32) {
    let root = isol::SysRoot::live();
    let running = || {
        isol::kernel::threads::stats(&root)
            .any(|s| s.comm == comm && s.state == 'R' && s.processor == cpu)
    };
    let mut seen = 0;
    wait_until(&format!("{comm} running on cpu {cpu}"), || {
        seen = if running() { seen + 1 } else { 0 };
        seen >= 2
    });
}

/// A thread `isol-sleeper` on `cpu` that, each time it is sent a message, sleeps `nap` (a
/// timer on its CPU) if given, then spins 50 us. SCHED_FIFO before arriving when `fifo`: a
/// moment as SCHED_OTHER on a nohz_full CPU starts its fair deadline server, which pokes
/// the CPU up to a second later. Returns the sender (drop it to end the thread), the
/// thread and its tid.
pub fn sleeper(
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
pub fn migrant(cpu: u32, fifo: bool) -> i32 {
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

/// `pages` fresh anonymous pages, each written (faulted in on this CPU). Dropping the
/// mapping unmaps them: a TLB shootdown of every CPU the process's threads ran on.
pub fn touch_pages(pages: usize) -> isol_sys::mem::Mapping {
    let m = isol_sys::mem::Mapping::anonymous(pages * 4096).expect("mmap");
    for i in 0..pages {
        m.write(i * 4096, 1);
    }
    m
}

/// The calling thread's affinity, policy and priority, and the process's locked memory.
pub fn thread_state() -> serde_json::Value {
    let cpus = isol_sys::thread::affinity().unwrap_or_default();
    let policy = isol_sys::thread::Policy::current().expect("sched_getscheduler");
    let locked = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        .unwrap_or_default();
    serde_json::json!({"cpus": cpus, "policy": policy.number(), "priority": policy.priority(), "locked_kb": locked})
}
