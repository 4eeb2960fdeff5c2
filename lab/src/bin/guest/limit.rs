//! `cpu-limit`: arm a CPU-time limit on another process while it runs, as `prlimit --pid`
//! does (busybox has no prlimit). A limit set on a running process arms a process CPU-time
//! timer, which keeps the tick of every CPU its threads run on (the POSIX_TIMER
//! dependency): what `isol check --probe` must measure and name.

use std::time::{Duration, Instant};

use rustix::process::{prlimit, Pid, Resource, Rlimit};

/// Once a thread named `thread` (a prefix) runs in process `pid`, give the process a
/// CPU-time limit of `secs` seconds; print what was done as JSON.
pub fn cpu_limit(pid: i32, secs: u64, thread: Option<String>) {
    let waited = Instant::now();
    if let Some(name) = &thread {
        while !has_thread(pid, name) {
            if waited.elapsed() > Duration::from_secs(30) {
                eprintln!("cpu-limit: no thread {name} in process {pid} after 30 s");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let Some(target) = Pid::from_raw(pid) else {
        eprintln!("cpu-limit: {pid} is not a process id");
        std::process::exit(64);
    };
    let limit = Rlimit {
        current: Some(secs),
        maximum: None,
    };
    if let Err(e) = prlimit(Some(target), Resource::Cpu, limit) {
        eprintln!("cpu-limit: prlimit({pid}, RLIMIT_CPU, {secs}): {e}");
        std::process::exit(1);
    }
    println!(
        "{}",
        serde_json::json!({
            "pid": pid,
            "cpu_limit_s": secs,
            "after_ms": waited.elapsed().as_millis() as u64,
        })
    );
}

fn has_thread(pid: i32, name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(name)))
}
