//! `disturb`, `referee`: disturbances of a CPU from another process, for `isol noise`
//! and for the comparison with the kernel's osnoise tracer.

use std::time::Duration;

use crate::common::{loc, migrant, pin, sleeper, wait_running};

/// From CPU 0: a sleeper on `cpu` (made at once: its arrival is not part of what is
/// measured), then, once `after` runs there if given, and `delay_ms` later: `wakeups`
/// wakeups of the sleeper 100 ms apart, a vmstat refresh if `refresh`, and a task moved
/// onto `cpu`. Prints what it did and when, as JSON.
pub fn disturb(
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

/// From CPU 0, after `delay_ms`, disturb `cpu` in each way the kernel's osnoise tracer has
/// a class for: a device interrupt (the serial port's IRQ moved to the CPU, 5 writes to
/// it, then moved back), IPIs and another thread (a sleeper on the CPU woken 5 times, each
/// time sleeping 1 ms there: a timer), a kworker (`stat_refresh`), and a task moved onto
/// the CPU. Prints what it did as JSON.
pub fn referee(cpu: u32, delay_ms: u64) {
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
