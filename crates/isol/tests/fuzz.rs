//! The fuzz tier: mutation tests of every parser and reader, seeded from the real fixtures,
//! on stable Rust. Each target takes inputs captured from real kernels, mutates them (bit
//! flips, interesting bytes, cut, duplicated or spliced ranges, truncation) and feeds them
//! to isol, asserting no panic, no hang (a watchdog aborts an input that runs past
//! [`HANG`]) and bounded memory (peak RSS below [`MAX_RSS_MB`]).
//!
//! Inputs that once failed are kept in `tests/fuzz-regressions/TARGET/` and replayed first.
//! A failing input is written to `target/fuzz-failures/` and named in the failure.
//!
//! `ISOL_FUZZ_ITERS` sets the iterations per target (default 300); the seed is fixed per
//! run unless `ISOL_FUZZ_SEED` is given, so a failure reproduces.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::copy_tree;
use isol::kernel::KernelModel;
use isol::tracefs::format::{EventFormat, PageLayout};
use isol::tracefs::ring::Page;
use isol::{check, CpuSet, SysRoot};

const HANG: Duration = Duration::from_secs(20);
const MAX_RSS_MB: u64 = 1024;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = b"\0\xff\x7f\x80\n\t ,-:;=[]()9";

/// One to four mutations of `input`, with `other` as a splice donor.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len);
                for _ in 0..=rng.below(3) {
                    v.splice(at..at, chunk.iter().copied());
                }
            }
            4 => v.truncate(rng.below(len + 1)),
            5 if !other.is_empty() => {
                let a = rng.below(other.len());
                let b = (a + rng.below(256)).min(other.len());
                let at = rng.below(len + 1);
                v.splice(at..at, other[a..b].iter().copied());
            }
            6 if len >= 8 => {
                // A little-endian word set to an edge value.
                let i = rng.below(len - 7);
                let w: u64 = [0, 1, u64::MAX, i64::MAX as u64, 1 << 32, 4096][rng.below(6)];
                v[i..i + 8].copy_from_slice(&w.to_le_bytes());
            }
            _ => {
                // A decimal number replaced by a huge or negative one.
                if let Some(i) = v.iter().position(|b| b.is_ascii_digit()) {
                    let n: &[u8] =
                        [&b"99999999999999999999999"[..], b"-1", b"0", b"4294967296"][rng.below(4)];
                    v.splice(i..i + 1, n.iter().copied());
                }
            }
        }
    }
    v
}

/// Runs targets under a watchdog and counts what they did.
struct Fuzz {
    rng: Rng,
    iters: u64,
    current: Arc<Mutex<(String, Instant)>>,
    failures: Vec<String>,
    counts: Vec<(String, u64)>,
    saved: u64,
}

impl Fuzz {
    fn new() -> Fuzz {
        let seed = std::env::var("ISOL_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x1505_1505_1505_1505);
        let iters = std::env::var("ISOL_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300);
        let current = Arc::new(Mutex::new((String::from("start"), Instant::now())));
        let watched = current.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let (what, since) = watched.lock().unwrap().clone();
            if since.elapsed() > HANG {
                eprintln!("fuzz: {what} ran past {HANG:?}: a hang; input saved as named above");
                std::process::abort();
            }
        });
        Fuzz {
            rng: Rng(seed | 1),
            iters,
            current,
            failures: Vec::new(),
            counts: Vec::new(),
            saved: 0,
        }
    }

    /// Feed `input` to `f` under the watchdog; a panic is saved and recorded.
    fn one(&mut self, target: &str, input: &[u8], f: &dyn Fn(&[u8])) {
        let path = self.save_path(target);
        *self.current.lock().unwrap() = (format!("{target} ({})", path.display()), Instant::now());
        // Kept on disk while it runs, so that a hang leaves the input behind.
        std::fs::write(&path, input).unwrap();
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            self.failures
                .push(format!("{target}: panicked on {}", path.display()));
            self.saved += 1;
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    fn save_path(&self, target: &str) -> PathBuf {
        let dir = repo().join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{target}-{}", self.saved))
    }

    /// Regressions first, then `iters` mutations of the seeds.
    fn run(&mut self, target: &str, seeds: &[Vec<u8>], f: &dyn Fn(&[u8])) {
        assert!(!seeds.is_empty(), "{target}: no seeds");
        let mut n = 0;
        let reg = repo()
            .join("crates/isol/tests/fuzz-regressions")
            .join(target);
        if let Ok(rd) = std::fs::read_dir(&reg) {
            for e in rd.flatten() {
                let input = std::fs::read(e.path()).unwrap();
                self.one(target, &input, f);
                n += 1;
            }
        }
        for s in seeds {
            self.one(target, s, f);
            n += 1;
        }
        for _ in 0..self.iters {
            let a = &seeds[self.rng.below(seeds.len())];
            let b = &seeds[self.rng.below(seeds.len())];
            let input = mutate(&mut self.rng, a, b);
            self.one(target, &input, f);
            n += 1;
        }
        self.counts.push((target.to_string(), n));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file of the snapshot fixtures, by kernel path.
fn snapshot_files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in ["host-6.18", "lab-6.12"] {
        let base = fixtures().join(name);
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = format!("/{}", p.strip_prefix(&base).unwrap().display());
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out
}

fn seeds_named(files: &[(String, Vec<u8>)], pred: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    files
        .iter()
        .filter(|(p, _)| pred(p))
        .map(|(_, b)| b.clone())
        .collect()
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// The whole kernel model and every check on a tree where one file was mutated: this
/// reaches every /proc and /sys parser the model has.
fn model_target(fz: &mut Fuzz, files: &[(String, Vec<u8>)], name: &str, kernel_path: &str) {
    let tree = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join(name), tree.path());
    let rel = kernel_path.trim_start_matches('/').to_string();
    let path = tree.path().join(&rel);
    if !path.exists() {
        return;
    }
    let seeds = seeds_named(files, |p| p == kernel_path);
    let target = format!("model{}", kernel_path.replace('/', "_"));
    let root = SysRoot::at(tree.path());
    fz.run(&target, &seeds, &|input| {
        std::fs::write(&path, input).unwrap();
        let model = KernelModel::load(&root);
        if let Ok(t) = check::Target::choose(&model, None) {
            let report = check::run(&model, &t);
            serde_json::to_string(&report).unwrap();
        }
    });
}

#[test]
fn fuzz_every_parser_and_reader() {
    let began = Instant::now();
    let mut fz = Fuzz::new();
    let files = snapshot_files();

    // CPU lists and masks.
    let lists = seeds_named(&files, |p| {
        p.ends_with("/online")
            || p.ends_with("/nohz_full")
            || p.ends_with("/isolated")
            || p.ends_with("/possible")
            || p.ends_with("effective_affinity_list")
            || p.ends_with("smp_affinity_list")
            || p.ends_with("cpuset.cpus.effective")
    });
    fz.run("cpulist", &lists, &|b| {
        let _ = CpuSet::parse_list(&text(b));
    });
    let masks = seeds_named(&files, |p| {
        p.ends_with("smp_affinity") || p.ends_with("default_smp_affinity") || p.ends_with("cpumask")
    });
    fz.run("cpumask", &masks, &|b| {
        let _ = CpuSet::parse_mask(&text(b));
    });

    // Direct parsers of the kernel model.
    let cmdlines = seeds_named(&files, |p| p == "/proc/cmdline");
    fz.run("cmdline", &cmdlines, &|b| {
        let _ = isol::kernel::cmdline::parse(&text(b), Some(7));
    });
    let configs = seeds_named(&files, |p| p.contains("config"));
    fz.run("config", &configs, &|b| {
        let _ = isol::kernel::config::KernelConfig::parse(&text(b), "fuzz");
        let _ = isol::kernel::config::KernelConfig::parse_gz(b, "fuzz");
    });
    let interrupts = seeds_named(&files, |p| p == "/proc/interrupts" || p == "/proc/softirqs");
    fz.run("interrupts", &interrupts, &|b| {
        let _ = isol::kernel::interrupts::InterruptTable::parse(&text(b));
    });
    let timers = seeds_named(&files, |p| p == "/proc/timer_list");
    if !timers.is_empty() {
        fz.run("timer_list", &timers, &|b| {
            let _ = isol::kernel::timer_list::parse(&text(b));
        });
    }
    let stats = seeds_named(&files, |p| p.ends_with("/stat") && p.contains("/task/"));
    let statuses = seeds_named(&files, |p| p.ends_with("/status") && p.contains("/task/"));
    fz.run("thread_stat", &stats, &|b| {
        let t = text(b);
        let _ = isol::kernel::threads::parse_stat(&t);
        let _ = isol::kernel::threads::thread_info(1, &t, &t);
    });
    fz.run("thread_status", &statuses, &|b| {
        let _ = isol::kernel::threads::parse_status_allowed(&text(b));
    });
    let mounts = seeds_named(&files, |p| p == "/proc/self/mounts");
    fz.run("mounts", &mounts, &|b| {
        let _ = isol::kernel::cgroup::parse_mounts(&text(b));
    });

    // Whole-model targets, one file mutated at a time.
    for (name, path) in [
        ("host-6.18", "/proc/cmdline"),
        ("host-6.18", "/proc/interrupts"),
        ("host-6.18", "/proc/self/mounts"),
        ("host-6.18", "/sys/devices/system/cpu/online"),
        ("lab-6.12", "/proc/timer_list"),
        ("lab-6.12", "/proc/softirqs"),
        ("lab-6.12", "/sys/devices/system/cpu/nohz_full"),
        ("lab-6.12", "/proc/sys/kernel/sched_rt_runtime_us"),
    ] {
        model_target(&mut fz, &files, name, path);
    }

    // Manifests of snapshots.
    let manifests = seeds_named(&files, |p| p == "/isol-snapshot.json");
    fz.run("snapshot_manifest", &manifests, &|b| {
        if let Ok(m) = serde_json::from_slice::<isol::sysroot::Manifest>(b) {
            let _ = m.check();
        }
    });

    // Event formats and page layouts of the recordings.
    let mut formats = Vec::new();
    let mut headers = Vec::new();
    let mut pages = Vec::new();
    for rec in ["trace-host-6.18", "trace-lab-6.12"] {
        let t = fixtures().join(rec).join("sys/kernel/tracing");
        headers.push(std::fs::read(t.join("events/header_page")).unwrap());
        for sys in std::fs::read_dir(t.join("events")).unwrap().flatten() {
            if let Ok(evs) = std::fs::read_dir(sys.path()) {
                for ev in evs.flatten() {
                    if let Ok(f) = std::fs::read(ev.path().join("format")) {
                        formats.push(f);
                    }
                }
            }
        }
        for cpu in std::fs::read_dir(t.join("per_cpu")).unwrap().flatten() {
            let bytes = std::fs::read(cpu.path().join("trace_pipe_raw")).unwrap();
            pages.extend(bytes.chunks(4096).map(|c| c.to_vec()));
        }
    }
    fz.run("event_format", &formats, &|b| {
        let _ = EventFormat::parse("fuzz", &text(b));
    });
    fz.run("header_page", &headers, &|b| {
        let _ = PageLayout::parse(&text(b));
    });
    let layout = PageLayout::parse(&text(&headers[0])).unwrap();
    fz.run("ring_page", &pages, &|b| {
        if let Ok(p) = Page::parse(&layout, b) {
            for e in p.events() {
                let _ = e;
            }
        }
    });

    // Whole recordings: pages, formats and manifest mutated, replayed end to end.
    for rec in ["trace-host-6.18", "trace-lab-6.12"] {
        let tree = tempfile::tempdir().unwrap();
        copy_tree(&fixtures().join(rec), tree.path());
        let dir = tree.path().to_path_buf();
        for (label, rel) in [
            ("pages", "sys/kernel/tracing/per_cpu/cpu1/trace_pipe_raw"),
            ("manifest", "isol-trace.json"),
            (
                "ipi_format",
                "sys/kernel/tracing/events/ipi/ipi_send_cpu/format",
            ),
            (
                "switch_format",
                "sys/kernel/tracing/events/sched/sched_switch/format",
            ),
        ] {
            let path = dir.join(rel);
            let Ok(orig) = std::fs::read(&path) else {
                continue;
            };
            let d = dir.clone();
            fz.run(
                &format!("recording_{label}"),
                std::slice::from_ref(&orig),
                &|b| {
                    std::fs::write(&path, b).unwrap();
                    let _ = isol::watch::replay(&d, None);
                },
            );
            std::fs::write(&path, orig).unwrap();
        }
    }

    // Snapshot archives: a real archive's bytes mutated, then extracted and loaded.
    let archive = isol::snapshot::capture(&SysRoot::at(fixtures().join("lab-6.12")), "fuzz")
        .unwrap()
        .archive;
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a.tar.gz");
    let extracted = AtomicU64::new(0);
    fz.run("snapshot_archive", &[archive], &|b| {
        std::fs::write(&file, b).unwrap();
        let out = scratch.path().join("x");
        let _ = std::fs::remove_dir_all(&out);
        if isol::snapshot::extract(&file, &out, &|| false).is_ok() {
            extracted.fetch_add(1, Ordering::Relaxed);
            let model = KernelModel::load(&SysRoot::at(&out));
            let _ = check::Target::choose(&model, None).map(|t| check::run(&model, &t));
        }
    });

    // Noise reports given to --compare.
    let noise = std::fs::read(fixtures().join("noise-host-6.18.json")).unwrap();
    fz.run("noise_json", &[noise], &|b| {
        let _ = serde_json::from_slice::<isol::noise::Report>(b);
    });

    let total: u64 = fz.counts.iter().map(|(_, n)| n).sum();
    let rss = peak_rss_mb();
    println!(
        "fuzz: {total} inputs over {} targets in {:.1} s, peak RSS {rss} MB ({} archives extracted whole)",
        fz.counts.len(),
        began.elapsed().as_secs_f64(),
        extracted.load(Ordering::Relaxed)
    );
    for (t, n) in &fz.counts {
        println!("fuzz: {t:<40} {n:>6} inputs");
    }
    assert!(fz.failures.is_empty(), "{}", fz.failures.join("\n"));
    assert!(rss < MAX_RSS_MB, "peak RSS {rss} MB");
}
