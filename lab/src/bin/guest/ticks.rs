//! `ticks`, `spin`, `irqsum`: the tick and interrupt counts of a busy or idle CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol::kernel::timer_list;

use crate::common::{loc, pin, spinner};

/// Keep `cpu` busy with a pinned spinner (SCHED_FIFO with `fifo`; the spinners of `also`
/// stay SCHED_OTHER), wait for the tick to stop, then count local timer interrupts per CPU
/// over `secs` seconds from `/proc/interrupts`, and sample `/proc/timer_list` for the CPU's
/// tick state.
pub fn ticks(cpu: u32, secs: u64, fifo: bool, also: &[u32]) {
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

/// Spin on `cpu` for `secs` seconds.
pub fn spin(cpu: u32, secs: u64, fifo: bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = spinner(cpu, fifo, stop.clone());
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let _ = s.join();
}

/// Every interrupt `cpu` has taken since boot, each counted once.
pub fn irqsum(cpu: u32) {
    println!("{}", loc().interrupts_on(cpu));
}
