//! Host tier, a process of its own (locking is process-wide): `lock_memory` locks the
//! process's memory once, as the first enter would, and an enter that fails afterwards
//! leaves it locked (it was locked before that enter).

use isol::task::Isolation;
use isol::CpuSet;

fn locked_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn memory_locked_ahead_stays_locked_through_a_failed_enter() {
    if !isol::is_root() {
        eprintln!("skipped: mlockall of a whole test process needs root");
        return;
    }
    assert_eq!(locked_kib(), 0, "nothing locked before");
    isol::task::lock_memory().unwrap();
    let locked = locked_kib();
    assert!(locked > 0, "VmLck after lock_memory: {locked} kB");
    // Once per process: a second call finds it done.
    isol::task::lock_memory().unwrap();
    std::thread::spawn(|| {
        isol::pin_current_thread(&CpuSet::from_iter([0])).unwrap();
        // Fails at its checks (no such CPU) and puts the thread back as it found it: the
        // memory, locked before this enter, stays locked.
        let e = Isolation::builder()
            .cpu(4095)
            .pin(true)
            .enter()
            .unwrap_err();
        assert!(e.errno() < 0, "{e}");
    })
    .join()
    .unwrap();
    assert!(locked_kib() > 0, "still locked after the failed enter");
}
