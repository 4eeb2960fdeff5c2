//! Host tier for the task isolation API on this machine's kernel (no nohz_full): the
//! EINVAL cases, and development mode (allow_ticking), where enter works and the tick is
//! counted. What needs a nohz_full kernel (quiet, EAGAIN) is tested in the lab.

use std::time::{Duration, Instant};

use isol::task::{Ineligible, IsolError, Isolation, Wait};
use isol::CpuSet;

fn ready() -> bool {
    let root = isol::is_root();
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let nohz = std::fs::read_to_string("/sys/devices/system/cpu/nohz_full").unwrap_or_default();
    let two = CpuSet::parse_list(online.trim()).is_ok_and(|s| s.contains(0) && s.contains(1));
    let no_nohz = nohz.trim().is_empty() || nohz.trim() == "(null)";
    if !(root && two && no_nohz) {
        eprintln!("skipped: needs root, CPUs 0-1 and a kernel without nohz_full CPUs");
        return false;
    }
    true
}

#[test]
fn eligibility_then_development_mode_on_this_kernel() {
    if !ready() {
        return;
    }
    std::thread::spawn(|| {
        // Not pinned: the thread may run on both CPUs.
        isol::pin_current_thread(&CpuSet::from_iter([0, 1])).unwrap();
        let e = Isolation::builder().cpu(1).enter().unwrap_err();
        assert!(
            matches!(&e, IsolError::Ineligible(Ineligible::NotPinned { allowed }) if allowed.len() == 2),
            "{e}"
        );
        assert_eq!(e.errno(), -libc::EINVAL);
        // Pinned, but CPU 1 is not nohz_full here.
        let e = Isolation::builder().cpu(1).pin(true).enter().unwrap_err();
        assert!(matches!(e, IsolError::Ineligible(Ineligible::NotNohzFull { cpu: 1, .. })));
        assert!(e.to_string().contains("nohz_full=1"), "{e}");
        // Development mode: enter works, the tick keeps running and is counted.
        let g = Isolation::builder()
            .cpu(1)
            .pin(true)
            .wait(Wait::Sleep)
            .allow_ticking(true)
            .enter()
            .expect("development mode enters");
        assert_eq!(g.cpu(), 1);
        let t = Instant::now();
        let mut seen = 0;
        while t.elapsed() < Duration::from_millis(400) {
            seen = g.interruptions();
        }
        let r = g.exit();
        assert!(r.ticking);
        assert_eq!(r.time_to_quiet_ns, None);
        assert!(r.interruptions >= seen);
        // The tick fires HZ times a second on a busy CPU: over the time the report says
        // the thread was isolated, at least half of those are counted (the watcher's
        // first poll may come late), attributed to the tick handler.
        let hz = r.hz.expect("the kernel's HZ") as u64;
        let ticks = hz * r.isolated_ns / 1_000_000_000;
        assert!(ticks >= hz / 10, "isolated {} ns at HZ={hz}", r.isolated_ns);
        assert!(r.interruptions >= ticks / 2, "{r} (expected about {ticks})");
        assert!(
            r.by_cause
                .iter()
                .any(|(k, _, n)| *k == isol::interrupt::Kind::LocalTimer && *n >= ticks / 2),
            "{r} (expected about {ticks} ticks)"
        );
        assert!(r.to_string().contains("tick kept running"));
        // Enter twice on the same thread after exit is fine; a second thread on the same
        // CPU while one is isolated is refused.
        let g = Isolation::builder().cpu(1).pin(true).allow_ticking(true).enter().unwrap();
        let other = std::thread::spawn(|| {
            Isolation::builder()
                .cpu(1)
                .pin(true)
                .allow_ticking(true)
                .enter()
                .map(|g| g.exit())
        })
        .join()
        .unwrap();
        assert!(matches!(other, Err(IsolError::Busy(_))), "{other:?}");
        g.exit();
    })
    .join()
    .unwrap();
}

/// The calling thread's affinity and scheduling policy with its priority.
fn thread_state() -> (CpuSet, i32, i32) {
    let cpus = isol_sys::thread::affinity().unwrap().into_iter().collect();
    let policy = isol_sys::thread::Policy::current().unwrap();
    (cpus, policy.number(), policy.priority())
}

#[test]
fn a_failed_enter_leaves_the_thread_as_it_was() {
    if !ready() {
        return;
    }
    std::thread::spawn(|| {
        // As a user's thread starts: on CPU 0, SCHED_OTHER.
        isol::pin_current_thread(&CpuSet::from_iter([0])).unwrap();
        let before = thread_state();
        for b in [
            // EINVAL: CPU 1 is not nohz_full here.
            Isolation::builder().cpu(1).pin(true).fifo(10),
            // EINVAL: no such CPU.
            Isolation::builder().cpu(4095).pin(true).fifo(10),
            // EBUSY: pin without a CPU.
            Isolation::builder().pin(true).fifo(10),
        ] {
            let e = b.enter().unwrap_err();
            assert!(e.errno() < 0, "{e}");
            assert_eq!(thread_state(), before, "after {e}");
        }
    })
    .join()
    .unwrap();
}
