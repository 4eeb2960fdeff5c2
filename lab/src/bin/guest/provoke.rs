//! `provoke`, `app`, `udp`: interruptions of a watched CPU made on purpose, in the order
//! users meet them, for `isol watch` to name.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol_sys::timer::{signal_me_after, TimerClock};

use crate::common::{gettid, pin, set_fifo, set_name, touch_pages, wait_until};

extern "C" fn ignore(_: libc::c_int) {}

/// A resident spinning on `cpu`, then from CPU 0, once `go` exists if given and
/// `delay_ms` later, 300 ms apart: membarrier IPIs, a timer the resident arms, work queued
/// on every CPU, a task moved onto `cpu`. Prints what it did, as JSON.
pub fn provoke(cpu: u32, delay_ms: u64, go: Option<String>) {
    pin(0);
    isol_sys::process::on_signal(libc::SIGUSR1, ignore).expect("sigaction");
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
            let _ = isol_sys::thread::set_nice(-20);
            tx.send(gettid()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if arm.swap(false, Ordering::Relaxed) {
                    signal_me_after(
                        TimerClock::Monotonic,
                        Duration::from_millis(20),
                        Duration::ZERO,
                        libc::SIGUSR1,
                    )
                    .expect("timer_create");
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
    use rustix::thread::{membarrier, MembarrierCommand};
    let _ = membarrier(MembarrierCommand::RegisterPrivateExpedited);
    let mut ok = true;
    for _ in 0..5 {
        ok &= membarrier(MembarrierCommand::PrivateExpedited).is_ok();
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
            "membarrier": {"tid": membarrier_tid, "ok": ok},
            "stat_refresh": refresh,
            "migrant": migrant_tid,
        })
    );
}

static APP_USR1: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_app_usr1(_: libc::c_int) {
    APP_USR1.fetch_add(1, Ordering::SeqCst);
}

/// `app SECS`: an application as a user starts it, after `isol watch`, with `taskset -c 1
/// isol-lab-guest app SECS`. It faults in a few pages on its CPU (they wait in that CPU's
/// LRU batch until something drains it), starts a sibling thread that moves to CPU 0 and
/// unmaps a page every 500 ms (each a TLB shootdown of the app's CPU), makes itself
/// SCHED_FIFO and spins SECS, counting the SIGUSR1s it gets. It prints what it did as JSON.
pub fn app(secs: f64) {
    set_name("app");
    isol_sys::process::on_signal(libc::SIGUSR1, on_app_usr1).expect("sigaction");
    // Kept mapped (and present) for the life of the process: never unmapped.
    std::mem::forget(touch_pages(64));
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
                // Faulted in, then unmapped as it is dropped.
                drop(touch_pages(1));
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

/// A thread `isol-udp` on `cpu` (SCHED_FIFO 20, above `app`) receives `n` datagrams over
/// loopback, sent from CPU 0 100 ms apart: each wakes it from the sender's softirq
/// (`net_rx_action`). Prints its tid and what it received, as JSON.
pub fn udp(cpu: u32, n: u32) {
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
