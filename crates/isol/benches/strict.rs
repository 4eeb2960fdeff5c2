//! What strict mode costs, against the same work without it, in the same run:
//!
//! * a hot loop (no system call) with strict mode armed and without: iterations per
//!   second, ratio armed / plain (target 1.00: an armed thread that makes no system call
//!   pays nothing);
//! * one trapped system call (`getppid` under `Strict::Report`: SIGSYS, the handler, the
//!   call made on the thread's behalf, sigreturn) against the same call untrapped.
//!
//! Runs on any CPU the process may use (development mode: `allow_ticking`), as root (the
//! watcher traces). `cargo bench -p isol --bench strict`.

use std::time::{Duration, Instant};

use isol::task::{Isolation, Strict};

const CPU: u32 = 1;

fn builder() -> Isolation {
    Isolation::builder()
        .cpu(CPU)
        .pin(true)
        .allow_ticking(true)
        .mlock(false)
}

/// Iterations of a dependent arithmetic loop in `d`.
fn hot_loop(d: Duration) -> f64 {
    let start = Instant::now();
    let mut x = 1u64;
    let mut n = 0u64;
    // The clock is read every 4096 iterations through the vDSO: no system call.
    loop {
        for _ in 0..4096 {
            // black_box: one real multiply-add per iteration, not a folded loop.
            x = std::hint::black_box(x)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
        n += 4096;
        if start.elapsed() >= d {
            break;
        }
    }
    std::hint::black_box(x);
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Start the watcher once, outside the measurements.
    if let Err(e) = isol::task::start_watcher(Some(&isol::CpuSet::from_iter([CPU]))) {
        eprintln!("strict bench: cannot start the watcher ({e}); run as root");
        return;
    }
    let rounds = 7;
    let (mut plain, mut armed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Alternate, so that drift hits both alike.
        let g = builder().enter().expect("enter");
        plain.push(hot_loop(Duration::from_millis(300)));
        g.exit();
        let g = builder()
            .strict(Strict::Kill)
            .enter()
            .expect("enter strict");
        armed.push(hot_loop(Duration::from_millis(300)));
        g.exit();
    }
    let (p, a) = (median(plain), median(armed));
    println!(
        "hot loop: plain {:.1} M it/s, strict armed {:.1} M it/s, ratio armed/plain {:.3} (median of {rounds})",
        p / 1e6,
        a / 1e6,
        a / p
    );

    let samples = 2001;
    let (mut untrapped, mut trapped) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let g = builder().enter().expect("enter");
        let t = Instant::now();
        std::hint::black_box(rustix::process::getppid());
        untrapped.push(t.elapsed().as_nanos() as f64);
        g.exit();
        let g = builder()
            .strict(Strict::Report)
            .enter()
            .expect("enter strict");
        let t = Instant::now();
        // Under Report the call traps, is recorded and runs.
        std::hint::black_box(rustix::process::getppid());
        trapped.push(t.elapsed().as_nanos() as f64);
        let r = g.exit();
        assert_eq!(r.violations, 1, "the call was trapped");
    }
    let (u, t) = (median(untrapped), median(trapped));
    println!(
        "getppid: untrapped {u:.0} ns, trapped (Strict::Report) {t:.0} ns, ratio {:.1} (median of {samples})",
        t / u
    );
}
