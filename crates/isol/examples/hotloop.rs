//! A polling hot loop that enters isolation, works, exits, and prints the report.
//!
//! `cargo run --example hotloop -p isol -- CPU SECONDS [--allow-ticking] [--sleep]` (root).
//! On a kernel without nohz_full (a laptop, CI), `--allow-ticking` enters anyway and the
//! report says the tick kept running.

use std::time::{Duration, Instant};

use isol::task::{Isolation, Wait};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cpu), Some(secs)) = (
        args.first().and_then(|a| a.parse::<u32>().ok()),
        args.get(1).and_then(|a| a.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: hotloop CPU SECONDS [--allow-ticking] [--sleep]");
        std::process::exit(64);
    };
    let wait = if args.iter().any(|a| a == "--sleep") {
        Wait::Sleep
    } else {
        Wait::Spin
    };
    let guard = match Isolation::builder()
        .cpu(cpu)
        .pin(true)
        .wait(wait)
        .allow_ticking(args.iter().any(|a| a == "--allow-ticking"))
        .enter()
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("hotloop: {e} (errno {})", e.errno());
            std::process::exit(1);
        }
    };
    // The hot loop: no system calls; the clock is read through the vDSO.
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut polls, mut seen) = (0u64, 0u64);
    while Instant::now() < end {
        polls += 1;
        seen = guard.interruptions();
    }
    let report = guard.exit();
    println!("{polls} polls, {seen} interruptions seen from the loop\n{report}");
}
