//! What lab and host tests expect of `isol watch` records.

use isol::interrupt::{Interruption, Kind, Record};

/// The records in `isol watch --json` output (interruptions, lost events, tick stops);
/// other lines are skipped.
pub fn records(stdout: &str) -> Vec<Record> {
    stdout
        .lines()
        .filter(|l| {
            l.contains(r#""type":"interruption""#)
                || l.contains(r#""type":"lost""#)
                || l.contains(r#""type":"tick_stop""#)
        })
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The interruptions among `records`.
pub fn interruptions(records: &[Record]) -> Vec<&Interruption> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Interruption(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// Check the records against what `provoke` says it did.
/// Check the records against what `isol-lab-guest provoke` says it did: each of its
/// four provocations is reported with the right kind and culprit, the resident never.
pub fn assert_provocations_named(records: &[Record], prov: &serde_json::Value) {
    let all = interruptions(records);
    let pid = prov["pid"].as_i64().unwrap() as i32;
    let resident = prov["resident"].as_i64().unwrap();
    let migrant = prov["migrant"].as_i64().unwrap();
    let show = || {
        all.iter()
            .filter(|i| i.culprit() != "tick_nohz_handler")
            .map(|i| serde_json::to_string(i).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // 1. The membarrier IPI, sent by the provoking process from CPU 0: named by the
    //    function it ran (`ipi_mb`, where the kernel traces it) or where it was sent.
    assert!(
        all.iter().any(|i| i.kind == Kind::Ipi
            && i.senders.iter().any(|s| s.cpu == 0
                && s.pid == pid
                && s.callsite
                    .as_deref()
                    .is_some_and(|c| c.contains("membarrier")))
            && (i.culprit().contains("membarrier") || i.culprit().contains("ipi_mb"))),
        "no IPI from membarrier on cpu0 by pid {pid}:\n{}",
        show()
    );
    // 2. The POSIX timer armed on CPU 1. On a nohz_full CPU the kernel moves the
    //    hrtimer to a housekeeping CPU; the interruption is then the reschedule IPI
    //    that delivers its signal, sent from `send_sigqueue` there.
    assert!(
        all.iter().any(|i| (i.kind == Kind::LocalTimer
            && i.functions.iter().any(|f| f == "posix_timer_fn"))
            || (i.kind == Kind::Ipi
                && i.senders
                    .iter()
                    .any(|s| s.callsite.as_deref() == Some("send_sigqueue")))),
        "no local timer running posix_timer_fn, nor its signal's IPI:\n{}",
        show()
    );
    // 3. stat_refresh's work item, run by a kworker, queued by the provoking process.
    assert!(
        all.iter().any(|i| i.kind == Kind::Task
            && i.source.starts_with("kworker/")
            && i.functions.iter().any(|f| f == "refresh_vm_stats")
            && i.senders
                .iter()
                .any(|s| s.action == "queue_work" && s.pid == pid)),
        "no kworker running refresh_vm_stats queued by pid {pid}:\n{}",
        show()
    );
    // 4. The migrated task, by name and tid.
    assert!(
        all.iter().any(|i| i.kind == Kind::Task
            && i.number == Some(migrant)
            && i.source == "isol-migrant"),
        "no task interruption by isol-migrant/{migrant}:\n{}",
        show()
    );
    // The resident itself is never an interruption.
    assert!(
        !all.iter()
            .any(|i| i.kind == Kind::Task && i.number == Some(resident)),
        "the resident {resident} was reported as an interruption:\n{}",
        show()
    );
    for i in &all {
        if let (Some(d), Some(n)) = (i.duration_ns, i.net_ns) {
            assert!(n <= d, "net above duration: {i:?}");
        }
        assert_eq!(i.cpu, 1, "an interruption of an unwatched CPU: {i:?}");
    }
}
