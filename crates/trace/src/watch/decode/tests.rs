//! Event binding, filters and names on hand-made inputs.

use super::*;

#[test]
fn integers_are_read_with_their_sign() {
    let p = [0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0];
    let l = |offset, size, signed| Loc {
        offset,
        size,
        signed,
        dynamic: None,
    };
    assert_eq!(int(&p, l(0, 4, true)), Some(-1));
    assert_eq!(int(&p, l(0, 4, false)), Some(0xffff_ffff));
    assert_eq!(int(&p, l(0, 1, true)), Some(-1));
    assert_eq!(int(&p, l(0, 1, false)), Some(255));
    assert_eq!(int(&p, l(4, 2, false)), Some(1));
    assert_eq!(int(&p, l(6, 4, false)), None);
    assert_eq!(int(&p, l(0, 3, false)), None);
}

#[test]
fn dynamic_fields_and_cpumasks() {
    // A __data_loc at offset 0 pointing at 8 bytes at offset 8.
    let mut p = vec![0u8; 16];
    p[0..4].copy_from_slice(&(8u32 | 8 << 16).to_le_bytes());
    p[8] = 0b1010;
    let l = Loc {
        offset: 0,
        size: 4,
        signed: false,
        dynamic: Some(DynamicKind::DataLoc),
    };
    assert_eq!(cpumask(&p, l).unwrap().to_list(), "1,3");
    p[8..13].copy_from_slice(b"eth0\0");
    assert_eq!(string(&p, l).as_deref(), Some("eth0"));
    p[0..4].copy_from_slice(&(8u32 | 200 << 16).to_le_bytes());
    assert_eq!(string(&p, l), None);
}

#[test]
fn tick_dependencies_are_named() {
    assert_eq!(tick_dependency(0), "NONE");
    assert_eq!(tick_dependency(4), "SCHED");
    assert_eq!(tick_dependency(1 | 16), "POSIX_TIMER|RCU");
    assert_eq!(tick_dependency(1 << 9), "0x200");
}

#[test]
fn filters_name_the_watched_cpus() {
    let cpus = CpuSet::parse_list("1,3").unwrap();
    // `proxy`: the address of work_for_cpu_fn; hrtimer_wakeup is one byte further.
    let f = |event, side, proxy: Option<u64>| {
        filter_for(event, side, &cpus, |name: &str| match name {
            PROXY_WORK => proxy,
            TIMER_WAKEUP => proxy.map(|a| a + 1),
            _ => None,
        })
    };
    assert_eq!(
        f("sched_switch", Side::Target, None).unwrap(),
        "CPU == 1 || CPU == 3"
    );
    assert_eq!(
        f("ipi_send_cpumask", Side::Sender("cpumask"), None).unwrap(),
        "cpumask & CPUS{1,3}"
    );
    assert_eq!(
        f("sched_wakeup", Side::Sender("target_cpu"), Some(0x10)).unwrap(),
        "target_cpu == 1 || target_cpu == 3"
    );
    // Work queued for a proxy (work_on_cpu) is followed on every CPU, when known.
    assert_eq!(
        f(
            "workqueue_queue_work",
            Side::Sender("cpu"),
            Some(0xffffffff81001000)
        )
        .unwrap(),
        "cpu == 1 || cpu == 3 || function == 0xffffffff81001000"
    );
    assert_eq!(
        f("workqueue_execute_start", Side::Target, Some(0x10)).unwrap(),
        "CPU == 1 || CPU == 3 || function == 0x10"
    );
    assert_eq!(
        f("workqueue_execute_end", Side::Proxy, Some(0x10)).unwrap(),
        "function == 0x10"
    );
    assert_eq!(f("workqueue_execute_end", Side::Proxy, None), None);
    // The timer that wakes a task is followed everywhere too.
    assert_eq!(
        f("hrtimer_expire_entry", Side::Target, Some(0x10)).unwrap(),
        "CPU == 1 || CPU == 3 || function == 0x11"
    );
    assert_eq!(
        f("hrtimer_expire_entry", Side::Target, None).unwrap(),
        "CPU == 1 || CPU == 3"
    );
}
