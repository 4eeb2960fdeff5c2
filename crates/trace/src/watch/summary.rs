//! Totals of a watch: per CPU and per cause, count, rate, total and maximum net time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::interrupt::{Kind, Record};
use crate::CpuSet;

/// One cause on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// What kind.
    pub kind: Kind,
    /// Who or what caused it.
    pub culprit: String,
    /// How many.
    pub count: u64,
    /// Sum of net durations (page faults have none and add nothing).
    pub total_ns: u64,
    /// The longest, ns.
    pub max_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
/// One CPU's interruptions.
pub struct CpuSummary {
    /// The CPU.
    pub cpu: u32,
    /// How many.
    pub interruptions: u64,
    /// Their total, ns.
    pub total_ns: u64,
    /// The longest, ns.
    pub max_ns: u64,
    /// Events the kernel reported dropped (None in a count means "some, unknown").
    pub lost: u64,
    /// Whether events were lost without a count.
    pub lost_unknown: bool,
    /// Failed tick stops by dependency.
    pub tick_kept: BTreeMap<String, u64>,
    /// By cause, most first.
    pub causes: Vec<Cause>,
}

/// The whole watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// How long was watched, ns.
    pub duration_ns: u64,
    /// Per CPU.
    pub cpus: Vec<CpuSummary>,
}

/// A running summary: records are added as they come and dropped, so a watch of hours
/// keeps only its aggregates (one entry per CPU and cause).
#[derive(Debug, Clone)]
pub struct Tally {
    per: BTreeMap<u32, CpuSummary>,
    causes: BTreeMap<(u32, Kind, String), Cause>,
}

impl Tally {
    /// An empty tally of `cpus` (every one appears in the summary, with zeros if nothing
    /// happened).
    pub fn new(cpus: &CpuSet) -> Tally {
        let per = cpus
            .iter()
            .map(|c| {
                (
                    c,
                    CpuSummary {
                        cpu: c,
                        interruptions: 0,
                        total_ns: 0,
                        max_ns: 0,
                        lost: 0,
                        lost_unknown: false,
                        tick_kept: BTreeMap::new(),
                        causes: Vec::new(),
                    },
                )
            })
            .collect();
        Tally {
            per,
            causes: BTreeMap::new(),
        }
    }

    /// Count one record.
    pub fn add(&mut self, r: &Record) {
        let Some(s) = self.per.get_mut(&r.cpu()) else {
            return;
        };
        match r {
            Record::Interruption(i) => {
                let net = i.net_ns.unwrap_or(0);
                s.interruptions += 1;
                s.total_ns = s.total_ns.saturating_add(net);
                s.max_ns = s.max_ns.max(net);
                let culprit = i.culprit();
                let c = self
                    .causes
                    .entry((i.cpu, i.kind, culprit.clone()))
                    .or_insert(Cause {
                        kind: i.kind,
                        culprit,
                        count: 0,
                        total_ns: 0,
                        max_ns: 0,
                    });
                c.count += 1;
                c.total_ns = c.total_ns.saturating_add(net);
                c.max_ns = c.max_ns.max(net);
            }
            Record::Lost { events, .. } => match events {
                Some(n) => s.lost = s.lost.saturating_add(*n),
                None => s.lost_unknown = true,
            },
            Record::TickStop {
                success: false,
                dependency,
                ..
            } => *s.tick_kept.entry(dependency.clone()).or_default() += 1,
            Record::TickStop { .. } => {}
        }
    }

    /// The summary of everything added, over a watch of `duration_ns`.
    pub fn summary(&self, duration_ns: u64) -> Summary {
        let mut per = self.per.clone();
        for ((cpu, _, _), c) in &self.causes {
            per.get_mut(cpu)
                .expect("cpu present")
                .causes
                .push(c.clone());
        }
        for s in per.values_mut() {
            s.causes
                .sort_by(|a, b| b.count.cmp(&a.count).then(b.total_ns.cmp(&a.total_ns)));
        }
        Summary {
            duration_ns,
            cpus: per.into_values().collect(),
        }
    }
}

impl Summary {
    /// Sum `records` over a watch of `duration_ns` on `cpus` (every watched CPU appears,
    /// with zeros if nothing happened).
    pub fn of(records: &[Record], cpus: &CpuSet, duration_ns: u64) -> Summary {
        let mut t = Tally::new(cpus);
        for r in records {
            t.add(r);
        }
        t.summary(duration_ns)
    }

    /// Rate per second of `count` over the watch.
    pub fn rate(&self, count: u64) -> f64 {
        if self.duration_ns == 0 {
            0.0
        } else {
            count as f64 * 1e9 / self.duration_ns as f64
        }
    }
}
