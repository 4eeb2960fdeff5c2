use isol::noise::{sampler::Sampler, tsc};
use std::sync::atomic::AtomicBool;
fn main() {
    let cpu: u32 = std::env::args().nth(1).unwrap().parse().unwrap();
    let secs: f64 = std::env::args().nth(2).unwrap().parse().unwrap();
    isol::monitor::pin_current_thread(&isol::CpuSet::from_iter([cpu])).unwrap();
    let hz = tsc::calibrate(std::time::Duration::from_millis(100));
    let s = Sampler::new((hz / 1e7) as u64, 1 << 20); // 100ns
    let end = tsc::read() + (hz * secs) as u64;
    let r = s.run(end, &AtomicBool::new(false));
    let dur = (r.end - r.start) as f64 / hz;
    println!(
        "hz {hz:.0} iters {} loop {:.2} ns",
        r.iterations,
        dur * 1e9 / r.iterations as f64
    );
    let mut cum = 0;
    for (lo, hi, c) in r.buckets.iter() {
        cum += c;
        if c > 10 || lo > 1000 {}
        let _ = hi;
    }
    let _ = cum;
    for thr_ns in [50u64, 100, 200, 300, 500, 1000, 2000, 5000, 10000, 50000] {
        let t = (thr_ns as f64 * hz / 1e9) as u64;
        let n: u64 = r.buckets.iter().filter(|b| b.0 >= t).map(|b| b.2).sum();
        println!(">= {thr_ns} ns: {n} ({:.0}/s)", n as f64 / dur);
    }
    let mut v: Vec<_> = r.buckets.iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.2));
    for b in v.iter().take(8) {
        println!("{:.1} ns x{}", b.0 as f64 * 1e9 / hz, b.2);
    }
    println!("max {:.1} us", r.max_ticks as f64 * 1e6 / hz);
}
