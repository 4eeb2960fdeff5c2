//! `netstamp`: turn network timestamping on and off as a program does (a socket asking
//! for timestamps, opened and closed), from CPU 0, and count what each flip of the kernel's
//! timestamping key costs another CPU: code patching, an IPI to every CPU. With the key
//! held on elsewhere (`isol watch --hold-timestamps`), nothing flips.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{loc, pin, set_fifo, spinner};

/// With a SCHED_FIFO thread spinning on `cpu` (the workload: an idle CPU that polls may
/// be spared the IPI), open and close a timestamping socket `times` times from CPU 0;
/// print `cpu`'s function call interrupts (`CAL`) and all its interrupts over them, as
/// JSON.
pub fn netstamp(cpu: u32, times: u32) {
    pin(0);
    // SCHED_FIFO before the spinner is created, so that it never runs on `cpu` as a fair
    // task (which would start the fair server there, and its kick).
    set_fifo(10);
    let stop = Arc::new(AtomicBool::new(false));
    let spin = spinner(cpu, false, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let count = |row: &str| -> u64 {
        loc()
            .rows
            .iter()
            .filter(|r| row.is_empty() || r.name == row)
            .filter_map(|r| r.counts.get(&cpu))
            .sum()
    };
    let (cal, all) = (count("CAL"), count(""));
    for _ in 0..times {
        let s = isol_sys::net::timestamping_socket().expect("a timestamping socket");
        // The key is switched by a work item: let it run before closing, and after.
        std::thread::sleep(Duration::from_millis(30));
        drop(s);
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (cal, all) = (count("CAL") - cal, count("") - all);
    stop.store(true, Ordering::Relaxed);
    let _ = spin.join();
    println!(
        "{}",
        serde_json::json!({
            "netstamp": times,
            "cpu": cpu,
            "cal": cal,
            "interrupts": all,
        })
    );
}
