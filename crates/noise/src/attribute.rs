//! Joining gaps with interruptions. A gap is a stretch of time the sampler did not run; an
//! interruption is a kernel excursion the trace saw on the same CPU. Both are on
//! `CLOCK_MONOTONIC` (gaps through the measured TSC mapping), so an
//! interruption explains a gap when their intervals overlap, give or take `slack_ns` for
//! the mapping's uncertainty. A gap that nothing explains is hardware or hypervisor
//! noise (an SMI, a vCPU preempted by its host, ...), as the kernel's osnoise tracer
//! reports it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::interrupt::{Interruption, Kind};

/// A gap on the trace clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start (CLOCK_MONOTONIC ns).
    pub start_ns: u64,
    /// Length, ns.
    pub len_ns: u64,
}

impl Span {
    fn end(&self) -> u64 {
        self.start_ns + self.len_ns
    }
}

/// For each gap, the indexes of the interruptions inside it; and the interruptions that
/// fell in no gap (shorter than the threshold, or outside the measured time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Joined {
    /// For each gap, the interruptions inside it.
    pub per_gap: Vec<Vec<usize>>,
    /// Interruptions inside no gap.
    pub outside: Vec<usize>,
}

/// Join `gaps` (sorted by start, not overlapping) with `irqs` (any order) of one CPU.
pub fn join(gaps: &[Span], irqs: &[Interruption], slack_ns: u64) -> Joined {
    let mut order: Vec<usize> = (0..irqs.len()).collect();
    order.sort_by_key(|&i| irqs[i].start_ns);
    let mut out = Joined {
        per_gap: vec![Vec::new(); gaps.len()],
        outside: Vec::new(),
    };
    let mut g = 0;
    for i in order {
        let s = irqs[i].start_ns;
        let e = s + irqs[i].duration_ns.unwrap_or(0);
        while g < gaps.len() && gaps[g].end() + slack_ns < s {
            g += 1;
        }
        if g < gaps.len() && gaps[g].start_ns <= e + slack_ns {
            out.per_gap[g].push(i);
        } else {
            out.outside.push(i);
        }
    }
    out
}

/// One cause of noise on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseRow {
    /// What kind.
    pub kind: Kind,
    /// Who or what caused it.
    pub culprit: String,
    /// Interruptions of this cause inside gaps.
    pub count: u64,
    /// Their net time (nested interruptions subtracted).
    pub total_ns: u64,
    /// The longest, ns.
    pub max_ns: u64,
    /// Gaps in which this cause took the most time.
    pub main_in_gaps: u64,
    /// Who caused it from elsewhere (IPI senders, work queuers, wakers), as
    /// `comm/pid on cpuN`; the first few distinct ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
}

/// Distinct senders kept per cause.
const SENDERS: usize = 6;

/// The label of a gap's cause in tables, plots and JSON.
pub fn cause_label(kind: Kind, culprit: &str) -> String {
    if culprit.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {culprit}")
    }
}

/// The label of gaps no interruption explains.
pub const UNEXPLAINED: &str = "hardware/hypervisor (unexplained)";

/// Per-cause totals over the joined gaps, most total time first; and for each gap, the
/// label of the interruption that took most of it (None: unexplained).
pub fn causes(irqs: &[Interruption], joined: &Joined) -> (Vec<CauseRow>, Vec<Option<String>>) {
    let mut rows: BTreeMap<(Kind, String), CauseRow> = BTreeMap::new();
    let mut main = Vec::with_capacity(joined.per_gap.len());
    for inside in &joined.per_gap {
        let mut best: Option<(u64, Kind, String)> = None;
        for &i in inside {
            let irq = &irqs[i];
            let net = irq.net_ns.unwrap_or(0);
            let culprit = irq.culprit();
            let r = rows
                .entry((irq.kind, culprit.clone()))
                .or_insert_with(|| CauseRow {
                    kind: irq.kind,
                    culprit: culprit.clone(),
                    count: 0,
                    total_ns: 0,
                    max_ns: 0,
                    main_in_gaps: 0,
                    senders: Vec::new(),
                });
            for snd in &irq.senders {
                let who = format!("{}/{} on cpu{}", snd.comm, snd.pid, snd.cpu);
                if r.senders.len() < SENDERS && !r.senders.contains(&who) {
                    r.senders.push(who);
                }
            }
            r.count += 1;
            r.total_ns += net;
            r.max_ns = r.max_ns.max(net);
            if best.as_ref().is_none_or(|b| net > b.0) {
                best = Some((net, irq.kind, culprit));
            }
        }
        main.push(best.map(|(_, k, c)| {
            if let Some(r) = rows.get_mut(&(k, c.clone())) {
                r.main_in_gaps += 1;
            }
            cause_label(k, &c)
        }));
    }
    let mut rows: Vec<CauseRow> = rows.into_values().collect();
    rows.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(b.count.cmp(&a.count)));
    (rows, main)
}

/// A complete top-level interruption on CPU 1, for tests.
#[cfg(test)]
pub(crate) fn test_irq(start: u64, dur: u64, net: u64, kind: Kind, source: &str) -> Interruption {
    Interruption {
        cpu: 1,
        start_ns: start,
        duration_ns: Some(dur),
        net_ns: Some(net),
        depth: 0,
        complete: true,
        kind,
        source: source.into(),
        number: None,
        functions: Vec::new(),
        senders: Vec::new(),
        untraced: None,
        address: None,
        place: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irq(start: u64, dur: u64, net: u64, kind: Kind, source: &str) -> Interruption {
        test_irq(start, dur, net, kind, source)
    }

    fn span(start_ns: u64, len_ns: u64) -> Span {
        Span { start_ns, len_ns }
    }

    #[test]
    fn interruptions_land_in_the_gap_they_overlap() {
        let gaps = [span(1_000, 2_000), span(10_000, 500), span(20_000, 3_000)];
        let irqs = [
            irq(21_000, 1_500, 1_000, Kind::Task, "kworker/1:1"),
            irq(1_100, 1_800, 1_500, Kind::LocalTimer, "tick"),
            irq(1_200, 300, 300, Kind::Softirq, "TIMER"),
            irq(15_000, 100, 100, Kind::Ipi, "short, in no gap"),
            irq(9_950, 400, 400, Kind::Ipi, "starts just before its gap"),
        ];
        let j = join(&gaps, &irqs, 100);
        assert_eq!(j.per_gap, vec![vec![1, 2], vec![4], vec![0]]);
        assert_eq!(j.outside, vec![3]);
        let (rows, main) = causes(&irqs, &j);
        assert_eq!(
            main,
            vec![
                Some("local_timer: tick".to_string()),
                Some("ipi: starts just before its gap".to_string()),
                Some("task: kworker/1:1".to_string()),
            ]
        );
        assert_eq!(rows[0].culprit, "tick");
        assert_eq!(
            (rows[0].count, rows[0].total_ns, rows[0].main_in_gaps),
            (1, 1_500, 1)
        );
        let softirq = rows.iter().find(|r| r.kind == Kind::Softirq).unwrap();
        assert_eq!(softirq.main_in_gaps, 0);
        assert!(rows.iter().all(|r| r.culprit != "short, in no gap"));
    }

    #[test]
    fn a_gap_without_interruptions_is_unexplained() {
        let gaps = [span(0, 5_000)];
        let irqs = [irq(6_000, 10, 10, Kind::Ipi, "after")];
        let j = join(&gaps, &irqs, 500);
        assert_eq!(j.per_gap, vec![Vec::<usize>::new()]);
        let (rows, main) = causes(&irqs, &j);
        assert!(rows.is_empty());
        assert_eq!(main, vec![None]);
    }

    proptest::proptest! {
        #[test]
        fn every_interruption_is_placed_once(
            starts in proptest::collection::vec((0u64..1_000_000, 1u64..5_000), 0..50),
            gap_starts in proptest::collection::btree_set(0u64..100_000, 0..30),
        ) {
            let gaps: Vec<Span> = gap_starts.iter().map(|&s| span(s * 10, 5)).collect();
            let irqs: Vec<Interruption> = starts
                .iter()
                .map(|&(s, d)| irq(s, d, d, Kind::Ipi, "x"))
                .collect();
            let j = join(&gaps, &irqs, 0);
            let mut seen: Vec<usize> = j.per_gap.iter().flatten().copied().chain(j.outside.iter().copied()).collect();
            seen.sort_unstable();
            proptest::prop_assert_eq!(seen, (0..irqs.len()).collect::<Vec<_>>());
            for (g, inside) in j.per_gap.iter().enumerate() {
                for &i in inside {
                    let (s, e) = (irqs[i].start_ns, irqs[i].start_ns + irqs[i].duration_ns.unwrap());
                    proptest::prop_assert!(s <= gaps[g].end() && gaps[g].start_ns <= e);
                }
            }
        }
    }
}
