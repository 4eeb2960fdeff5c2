//! `arrive`: the path users take into isolation, measured side by side with the closest
//! peer. Each round, for each method in turn, a thread created on CPU 0 (SCHED_OTHER, as a
//! program's threads start) goes to the isolated CPU and waits there for quiet:
//!
//! * `spin`, `sleep`: isol's `enter` (pin, SCHED_FIFO 10, the wait named);
//! * `tif`: the wait of Intel's Task Isolation Framework (`tif_helper.c`, 2020): pin,
//!   SCHED_FIFO at the highest priority, then read `/proc/timer_list` from the thread itself
//!   until the CPU's `.tick_stopped` reads 1.
//!
//! Then it stays, spinning without a system call, for `--after` seconds; then it waits
//! again from where it is (the re-entry path: isol's `exit` and `enter`, tif's wait once
//! more) and stays again. Meanwhile the main thread, on CPU 0, reads the CPU's interrupt
//! counts in `/proc/interrupts` every millisecond: how many came in the second after each
//! return, and when the last one before that second's end came (when the CPU was truly
//! quiet), at nice 19 so as not to take CPU 0 from isol's watcher. isol's lines also carry
//! its own count of interruptions after quiet (`isol_counted`, from each isolation's report,
//! which covers the measured second). One JSON line per round and path.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isol::task::{Isolation, Wait};
use isol_sys::clock::{monotonic_ns, thread_cpu_ns};

use crate::common::{loc, pin, set_fifo};

/// `arrive CPU [--rounds N] [--methods spin,sleep,tif] [--after SECS] [--cold]`.
#[derive(clap::Args)]
pub struct ArriveArgs {
    cpu: u32,
    /// Rounds; each runs every method once.
    #[arg(long, default_value_t = 12)]
    rounds: usize,
    /// The methods, in the order each round runs them.
    #[arg(long, value_delimiter = ',', default_value = "spin,sleep,tif")]
    methods: Vec<String>,
    /// Seconds the thread stays after each return, its interrupts counted.
    #[arg(long, default_value_t = 1.0)]
    after: f64,
    /// Leave isol's watcher and the process's memory locking to the first `enter` (by
    /// default both are done first, as `start_watcher` and `lock_memory` let a program do
    /// at initialisation).
    #[arg(long)]
    cold: bool,
    /// Write a line to this trace_marker at each step (a traced run).
    #[arg(long)]
    mark: Option<String>,
}

/// What the worker publishes for the main thread: the step it is at, and the times of its
/// last wait.
#[derive(Default)]
struct Shared {
    /// 0 starting, 1 waited (arrival), 2 release asked, 3 waited (re-entry), 4 done asked,
    /// 5 over.
    step: AtomicU8,
    called_ns: AtomicU64,
    returned_ns: AtomicU64,
    cpu_ns: AtomicU64,
    ok: AtomicU8,
    /// isol's own count of interruptions after quiet, of each isolation, as its report
    /// gives it at exit.
    counted: std::sync::Mutex<Vec<serde_json::Value>>,
}

pub fn arrive(a: &ArriveArgs) {
    pin(0);
    let hz = isol::target::Topology::read(&isol::SysRoot::live())
        .hz
        .unwrap_or(250);
    if !a.cold {
        isol::task::start_watcher(None).expect("start isol's watcher");
        isol::task::lock_memory().expect("lock the process's memory");
        std::thread::sleep(Duration::from_secs(1));
    }
    for round in 0..a.rounds {
        for method in &a.methods {
            for line in one(a, method, round, hz) {
                println!("{line}");
            }
            // The thread has left: let the CPU go idle again.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// One thread, both paths: the lines for them.
fn one(a: &ArriveArgs, method: &str, round: usize, hz: u32) -> Vec<serde_json::Value> {
    let cpu = a.cpu;
    let shared = Arc::new(Shared::default());
    let mut samples = Sampler::new(cpu);
    let worker = {
        let shared = shared.clone();
        let method = method.to_string();
        let mark = a.mark.clone();
        std::thread::spawn(move || worker(cpu, &method, &shared, mark.as_deref()))
    };
    // The reads of /proc/interrupts share CPU 0 with isol's watcher: at nice 19 they take
    // only what the watcher leaves (the worker, created before, keeps nice 0).
    isol_sys::thread::set_nice(19).expect("setpriority");
    let after_ns = (a.after * 1e9) as u64;
    let mut lines = Vec::new();
    for (path, waited, next) in [("arrive", 1u8, 2u8), ("reenter", 3, 4)] {
        // Sample until the thread has waited and stayed `after` since.
        loop {
            samples.take();
            let step = shared.step.load(Ordering::SeqCst);
            if step >= waited {
                let back = shared.returned_ns.load(Ordering::SeqCst);
                samples.back = Some(back);
                if monotonic_ns() >= back + after_ns || shared.ok.load(Ordering::SeqCst) == 0 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let called = shared.called_ns.load(Ordering::SeqCst);
        let back = shared.returned_ns.load(Ordering::SeqCst);
        let ok = shared.ok.load(Ordering::SeqCst) == 1;
        lines.push(samples.line(
            called,
            back,
            after_ns,
            ok,
            |tick| {
                serde_json::json!({
                    "round": round, "method": method, "path": path, "hz": hz, "ok": ok,
                    "return_ticks": (back - called) as f64 / tick,
                    "cpu_ticks": shared.cpu_ns.load(Ordering::SeqCst) as f64 / tick,
                })
            },
            hz,
        ));
        shared.step.store(next, Ordering::SeqCst);
        if !ok {
            break;
        }
        samples.reset();
    }
    shared.step.store(4, Ordering::SeqCst);
    let _ = worker.join();
    isol_sys::thread::set_nice(0).expect("setpriority");
    // isol's own count for each isolation (none for tif).
    for (line, n) in lines.iter_mut().zip(shared.counted.lock().unwrap().iter()) {
        line["isol_counted"] = n.clone();
    }
    lines
}

/// The interrupt counts of one CPU, read from `/proc/interrupts` on CPU 0: each read's start
/// and end time and the CPU's total.
struct Sampler {
    cpu: u32,
    /// (read started, read ended, total)
    at: Vec<(u64, u64, u64)>,
    /// When the thread returned, once known: the first read that starts after it keeps its
    /// rows, to name what came after the return.
    back: Option<u64>,
    rows_after_return: Option<isol::kernel::interrupts::InterruptTable>,
}

impl Sampler {
    fn new(cpu: u32) -> Sampler {
        let mut s = Sampler {
            cpu,
            at: Vec::new(),
            back: None,
            rows_after_return: None,
        };
        s.take();
        s
    }

    fn take(&mut self) {
        let t0 = monotonic_ns();
        let table = loc();
        let t1 = monotonic_ns();
        let total = table
            .rows
            .iter()
            .filter_map(|r| r.counts.get(&self.cpu))
            .sum();
        self.at.push((t0, t1, total));
        if self.back.is_some_and(|b| t0 >= b) && self.rows_after_return.is_none() {
            self.rows_after_return = Some(table);
        }
    }

    /// Keep only the last read: the next wait starts from it.
    fn reset(&mut self) {
        let last = *self.at.last().expect("a read");
        self.at = vec![last];
        self.back = None;
        self.rows_after_return = None;
    }

    /// The line for a wait called at `called` that returned at `back`. A read's increase
    /// came between the start of the read before it and its own end: it counts as `after`
    /// the return when the read before it started after the return, as `around` it when
    /// that read straddled the return (a row it read before the return may have moved
    /// before it). Only the `after_ns` that followed the return count. Also: the rows that
    /// moved after the return, and the last interrupt (the end of the first read that saw
    /// it), from the call.
    fn line(
        &mut self,
        called: u64,
        back: u64,
        after_ns: u64,
        ok: bool,
        base: impl FnOnce(f64) -> serde_json::Value,
        hz: u32,
    ) -> serde_json::Value {
        let tick = 1e9 / f64::from(hz);
        let (mut after, mut around) = (0u64, 0u64);
        let mut last: Option<u64> = None;
        for w in self.at.windows(2) {
            let ((prev_start, prev_end, prev), (_, end, now)) = (w[0], w[1]);
            if end < called || prev_start > back + after_ns || now <= prev {
                continue;
            }
            last = Some(end);
            if prev_start >= back {
                after += now - prev;
            } else if prev_end >= back {
                around += now - prev;
            }
        }
        let rows: serde_json::Map<String, serde_json::Value> = match self.rows_after_return.take() {
            Some(start) if ok => {
                let end = loc();
                end.rows
                    .iter()
                    .filter_map(|r| {
                        let now = r.counts.get(&self.cpu).copied().unwrap_or(0);
                        let before = start
                            .rows
                            .iter()
                            .find(|x| x.name == r.name)
                            .and_then(|x| x.counts.get(&self.cpu).copied())
                            .unwrap_or(0);
                        (now > before).then(|| (r.name.clone(), serde_json::json!(now - before)))
                    })
                    .collect()
            }
            _ => Default::default(),
        };
        let mut v = base(tick);
        v["after"] = serde_json::json!(after);
        v["around"] = serde_json::json!(around);
        v["after_rows"] = serde_json::Value::Object(rows);
        v["last_irq_ticks"] =
            serde_json::json!(last.map(|l| (l.saturating_sub(called)) as f64 / tick));
        v["reads"] = serde_json::json!(self.at.len());
        v
    }
}

/// The thread that arrives: waits by `method`, stays, waits again, stays, leaves.
fn worker(cpu: u32, method: &str, shared: &Shared, mark: Option<&str>) {
    let marker = mark.and_then(|p| std::fs::OpenOptions::new().write(true).open(p).ok());
    let note = |what: &str| {
        if let Some(mut f) = marker.as_ref() {
            use std::io::Write;
            // One write, one trace event.
            let _ = f.write_all(format!("arrive: {method} {what}\n").as_bytes());
        }
    };
    let wait = match method {
        "sleep" => Some(Wait::Sleep),
        "spin" => Some(Wait::Spin),
        _ => None,
    };
    let enter = || {
        Isolation::builder()
            .cpu(cpu)
            .pin(true)
            .fifo(10)
            .wait(wait.expect("an isol method"))
            .enter()
    };
    let mut guard: Option<isol::task::IsolatedGuard> = None;
    for (waited, release) in [(1u8, 2u8), (3, 4)] {
        // Re-entry: the thread left isolation, and asks again from where it is.
        if let Some(g) = guard.take() {
            shared.counted.lock().unwrap().push(counted(g.exit()));
        }
        note("called");
        let (c0, t0) = (thread_cpu_ns(), monotonic_ns());
        let ok = match wait {
            Some(_) => match enter() {
                Ok(g) => {
                    guard = Some(g);
                    true
                }
                Err(e) => {
                    eprintln!("arrive: {method}: {e}");
                    false
                }
            },
            None => tif_wait(cpu, waited == 1),
        };
        let t1 = monotonic_ns();
        let c1 = thread_cpu_ns();
        note("returned");
        shared.called_ns.store(t0, Ordering::SeqCst);
        shared.returned_ns.store(t1, Ordering::SeqCst);
        shared.cpu_ns.store(c1 - c0, Ordering::SeqCst);
        shared.ok.store(u8::from(ok), Ordering::SeqCst);
        shared.step.store(waited, Ordering::SeqCst);
        if !ok {
            break;
        }
        // Stay, without a system call, until the main thread has counted.
        while shared.step.load(Ordering::SeqCst) < release {
            std::hint::spin_loop();
        }
    }
    if let Some(g) = guard.take() {
        shared.counted.lock().unwrap().push(counted(g.exit()));
    }
    shared.step.store(5, Ordering::SeqCst);
}

/// isol's count from a report, and its causes (the worker's own `clock_gettime` of its CPU
/// time, right after the return, is one: a system call enters the kernel).
fn counted(r: isol::task::Report) -> serde_json::Value {
    serde_json::json!({"n": r.interruptions, "by_cause": r.by_cause})
}

/// The tif wait, as `tif_helper.c` does it: on arrival, pin and SCHED_FIFO at the highest
/// priority; then, from the thread itself, read `/proc/timer_list` until the CPU's
/// `.tick_stopped` is 1 (at most a second).
fn tif_wait(cpu: u32, arriving: bool) -> bool {
    if arriving {
        pin(cpu);
        set_fifo(99);
    }
    let start = monotonic_ns();
    while monotonic_ns() - start < 1_000_000_000 {
        let text = std::fs::read_to_string("/proc/timer_list").unwrap_or_default();
        if tick_stopped(&text, cpu) == Some(true) {
            return true;
        }
    }
    false
}

/// `.tick_stopped` of `cpu` in a `/proc/timer_list`: the first such line after `cpu: N`.
fn tick_stopped(text: &str, cpu: u32) -> Option<bool> {
    let head = format!("cpu: {cpu}");
    let mut lines = text.lines().skip_while(|l| l.trim() != head);
    lines.next()?;
    lines
        .find_map(|l| l.trim().strip_prefix(".tick_stopped"))
        .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse::<u8>().ok())
        .map(|v| v == 1)
}

#[cfg(test)]
mod tests {
    use super::tick_stopped;

    #[test]
    fn tick_stopped_is_read_for_the_cpu_asked() {
        let text = "cpu: 0\n clock 0:\n  .tick_stopped   : 0\ncpu: 1\n  .tick_stopped   : 1\n";
        assert_eq!(tick_stopped(text, 0), Some(false));
        assert_eq!(tick_stopped(text, 1), Some(true));
        assert_eq!(tick_stopped(text, 2), None);
    }
}
