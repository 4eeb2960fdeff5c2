//! What the screen shows, kept from the watch's records: one row per watched CPU, the
//! culprits across them, each CPU's last interruptions. Pure state: records and the time
//! come in, rows come out; no terminal, no clock of its own.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use isol_trace::interrupt::{Interruption, Kind, Record, Sender};

/// How far back "the last second" looks, ns.
const WINDOW_NS: u64 = 1_000_000_000;
/// The last second is counted in slots of this length, ns.
const SLOT_NS: u64 = 100_000_000;
const SLOTS: usize = (WINDOW_NS / SLOT_NS) as usize;
/// Interruptions kept per CPU for its expanded view.
pub const RECENT: usize = 200;
/// Culprits kept: past this, the least seen of the ones not seen for a minute go.
const MAX_CULPRITS: usize = 4096;

/// The kinds with a column of their own; the rest count under `other`.
pub const COLUMNS: [(Kind, &str); 5] = [
    (Kind::LocalTimer, "tick"),
    (Kind::Ipi, "ipi"),
    (Kind::Irq, "irq"),
    (Kind::Softirq, "sirq"),
    (Kind::Task, "task"),
];

/// One watched CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuRow {
    /// The CPU.
    pub cpu: u32,
    /// Interruptions since the start (or the last reset).
    pub total: u64,
    /// Of those, by [`COLUMNS`], then `other` (APIC, NMI, system calls, page faults).
    pub by_kind: [u64; COLUMNS.len() + 1],
    /// The longest net time of one, ns.
    pub longest_ns: u64,
    /// When the last one began (trace clock, ns).
    pub last_ns: Option<u64>,
    /// Trace events the kernel dropped for this CPU: counts are lower bounds.
    pub lost: u64,
    /// Failed tick stops.
    pub tick_kept: u64,
    /// Counts per [`SLOT_NS`] slot: (slot number, count).
    window: [(u64, u64); SLOTS],
}

impl CpuRow {
    fn new(cpu: u32) -> CpuRow {
        CpuRow {
            cpu,
            ..Default::default()
        }
    }

    /// Interruptions that began in the second before `now_ns`.
    pub fn last_second(&self, now_ns: u64) -> u64 {
        let now_slot = now_ns / SLOT_NS;
        self.window
            .iter()
            .filter(|(slot, _)| *slot + (SLOTS as u64) > now_slot && *slot <= now_slot)
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&mut self, at_ns: u64) {
        let slot = at_ns / SLOT_NS;
        let cell = &mut self.window[(slot % SLOTS as u64) as usize];
        if cell.0 != slot {
            *cell = (slot, 0);
        }
        cell.1 += 1;
    }
}

/// Who caused interruptions, across the watched CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    /// What kind.
    pub kind: Kind,
    /// What ran (`kworker/1:1: vmstat_update`, `tick_nohz_handler`, `python3 [ran/du-0 l1]`).
    pub what: Rc<str>,
    /// Who caused it from elsewhere, with its service, container or pod; empty when
    /// nothing did (the CPU's own timer) or the kernel does not say.
    pub by: Rc<str>,
    /// How many.
    pub count: u64,
    /// The longest net time, ns.
    pub longest_ns: u64,
    /// The CPUs it hit.
    pub cpus: Vec<u32>,
    /// When it was last seen (trace clock, ns).
    pub last_ns: u64,
}

/// One line of a CPU's expanded view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    /// When it began (trace clock, ns).
    pub at_ns: u64,
    /// What kind.
    pub kind: Kind,
    /// What ran (shared with its culprit).
    pub what: Rc<str>,
    /// Net time, ns (None for page faults).
    pub net_ns: Option<u64>,
    /// Who caused it.
    pub by: Rc<str>,
}

/// How CPU rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By CPU number.
    Cpu,
    /// Most interruptions in the last second first.
    LastSecond,
    /// Most interruptions since the start first.
    Total,
    /// Longest interruption first.
    Longest,
    /// Most recently interrupted first.
    Latest,
}

impl Sort {
    /// The next order (the `s` key).
    pub fn next(self) -> Sort {
        match self {
            Sort::Cpu => Sort::LastSecond,
            Sort::LastSecond => Sort::Total,
            Sort::Total => Sort::Longest,
            Sort::Longest => Sort::Latest,
            Sort::Latest => Sort::Cpu,
        }
    }

    /// The column it sorts by, as the screen names it.
    pub fn column(self) -> &'static str {
        match self {
            Sort::Cpu => "cpu",
            Sort::LastSecond => "1s",
            Sort::Total => "total",
            Sort::Longest => "longest",
            Sort::Latest => "last",
        }
    }
}

/// Everything the screen shows, updated record by record.
#[derive(Debug, Clone)]
pub struct Board {
    rows: BTreeMap<u32, CpuRow>,
    /// By a hash of kind, what ran and who caused it: one lookup per record, and the names
    /// shared with the record's line in [`Board::recent`] rather than copied.
    culprits: HashMap<u64, Culprit>,
    recent: BTreeMap<u32, VecDeque<Recent>>,
    /// When counting began (the watch's start, or the last reset), trace clock ns.
    pub since_ns: u64,
}

impl Board {
    /// An empty board of `cpus`, counting from `since_ns`.
    pub fn new(cpus: impl IntoIterator<Item = u32>, since_ns: u64) -> Board {
        let rows: BTreeMap<u32, CpuRow> = cpus.into_iter().map(|c| (c, CpuRow::new(c))).collect();
        let recent = rows.keys().map(|&c| (c, VecDeque::new())).collect();
        Board {
            rows,
            culprits: HashMap::new(),
            recent,
            since_ns,
        }
    }

    /// Count `records`. Nested interruptions (a softirq inside a task's slice) are counted
    /// as their own, as `isol watch --summary` counts them.
    pub fn add(&mut self, records: &[Record]) {
        for r in records {
            match r {
                Record::Interruption(i) => self.interruption(i),
                Record::Lost { cpu, events, .. } => {
                    if let Some(row) = self.rows.get_mut(cpu) {
                        row.lost += events.unwrap_or(1);
                    }
                }
                Record::TickStop {
                    cpu,
                    success: false,
                    ..
                } => {
                    if let Some(row) = self.rows.get_mut(cpu) {
                        row.tick_kept += 1;
                    }
                }
                Record::TickStop { .. } => {}
            }
        }
    }

    fn interruption(&mut self, i: &Interruption) {
        let Some(row) = self.rows.get_mut(&i.cpu) else {
            return;
        };
        row.total += 1;
        let column = COLUMNS
            .iter()
            .position(|(k, _)| *k == i.kind)
            .unwrap_or(COLUMNS.len());
        row.by_kind[column] += 1;
        row.longest_ns = row.longest_ns.max(i.net_ns.unwrap_or(0));
        row.last_ns = Some(row.last_ns.map_or(i.start_ns, |l| l.max(i.start_ns)));
        row.count(i.start_ns);
        let what = i.culprit();
        let by = cause(i);
        let key = {
            let mut h = std::hash::DefaultHasher::new();
            (i.kind, &what, &by).hash(&mut h);
            h.finish()
        };
        if self.culprits.len() >= MAX_CULPRITS && !self.culprits.contains_key(&key) {
            self.forget_culprits(i.start_ns);
        }
        let c = self.culprits.entry(key).or_insert_with(|| Culprit {
            kind: i.kind,
            what: what.into(),
            by: by.into(),
            count: 0,
            longest_ns: 0,
            cpus: Vec::new(),
            last_ns: 0,
        });
        let recent = self.recent.entry(i.cpu).or_default();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Recent {
            at_ns: i.start_ns,
            kind: i.kind,
            what: c.what.clone(),
            net_ns: i.net_ns,
            by: c.by.clone(),
        });
        c.count += 1;
        c.longest_ns = c.longest_ns.max(i.net_ns.unwrap_or(0));
        c.last_ns = c.last_ns.max(i.start_ns);
        if let Err(at) = c.cpus.binary_search(&i.cpu) {
            c.cpus.insert(at, i.cpu);
        }
    }

    /// Memory stays bounded over hours of culprits that come and go (kworkers with new
    /// pids, short-lived tasks): down to three quarters of the bound, the culprits not seen
    /// for a minute go first, least seen first, then the least seen of the others.
    fn forget_culprits(&mut self, now_ns: u64) {
        let mut all: Vec<(bool, u64, u64)> = self
            .culprits
            .iter()
            .map(|(k, c)| (c.last_ns + 60 * WINDOW_NS >= now_ns, c.count, *k))
            .collect();
        all.sort_unstable();
        let excess = self.culprits.len().saturating_sub(MAX_CULPRITS * 3 / 4);
        for (_, _, k) in all.into_iter().take(excess) {
            self.culprits.remove(&k);
        }
    }

    /// Start counting again from `now_ns` (the `r` key).
    pub fn reset(&mut self, now_ns: u64) {
        *self = Board::new(self.rows.keys().copied(), now_ns);
    }

    /// The CPU rows in `sort` order, at `now_ns`.
    pub fn rows(&self, sort: Sort, now_ns: u64) -> Vec<&CpuRow> {
        let mut rows: Vec<&CpuRow> = self.rows.values().collect();
        match sort {
            Sort::Cpu => {}
            Sort::LastSecond => rows.sort_by_key(|r| std::cmp::Reverse(r.last_second(now_ns))),
            Sort::Total => rows.sort_by_key(|r| std::cmp::Reverse(r.total)),
            Sort::Longest => rows.sort_by_key(|r| std::cmp::Reverse(r.longest_ns)),
            Sort::Latest => rows.sort_by_key(|r| std::cmp::Reverse(r.last_ns)),
        }
        rows
    }

    /// The `n` culprits seen most, then most recently.
    pub fn culprits(&self, n: usize) -> Vec<&Culprit> {
        let mut all: Vec<&Culprit> = self.culprits.values().collect();
        all.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.last_ns.cmp(&a.last_ns))
                .then(a.what.cmp(&b.what))
        });
        all.truncate(n);
        all
    }

    /// A CPU's last interruptions, newest first.
    pub fn recent(&self, cpu: u32) -> impl Iterator<Item = &Recent> {
        self.recent
            .get(&cpu)
            .into_iter()
            .flat_map(|r| r.iter().rev())
    }

    /// Trace events lost over all CPUs.
    pub fn lost(&self) -> u64 {
        self.rows.values().map(|r| r.lost).sum()
    }

    /// The watched CPUs, in order.
    pub fn cpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.rows.keys().copied()
    }
}

/// Who caused an interruption, short: the first sender's task (or context) with its
/// service, container or pod, and whom a kworker worked for. Pids are left out, so that a
/// daemon's many threads and a kworker's restarts are one culprit.
pub fn cause(i: &Interruption) -> String {
    match i.senders.first() {
        Some(s) => sender(s),
        None => match &i.untraced {
            Some(_) => "(sender not traced)".into(),
            None => String::new(),
        },
    }
}

fn sender(s: &Sender) -> String {
    let tag = |p: Option<&isol_trace::interrupt::Place>| match p.map(|p| p.tag()) {
        Some(t) if !t.is_empty() => format!(" {t}"),
        _ => String::new(),
    };
    let mut out = match s.context.as_str() {
        "task" => format!("{}{}", s.comm, tag(s.place.as_ref())),
        ctx => match &s.handler {
            Some(h) => format!("{ctx} {h}"),
            None => ctx.to_string(),
        },
    };
    if let Some(b) = &s.on_behalf {
        out.push_str(&format!(" for {}{}", b.comm, tag(b.place.as_ref())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(json: &str) -> Record {
        serde_json::from_str(json).unwrap()
    }

    fn tick(cpu: u32, at: u64, net: u64) -> Record {
        rec(&format!(
            r#"{{"type":"interruption","cpu":{cpu},"start_ns":{at},"duration_ns":{net},"net_ns":{net},"depth":0,"complete":true,"kind":"local_timer","source":"local_timer","functions":["tick_nohz_handler"]}}"#
        ))
    }

    fn kworker(cpu: u32, at: u64, pid: u32, sender_pid: u32) -> Record {
        rec(&format!(
            r#"{{"type":"interruption","cpu":{cpu},"start_ns":{at},"duration_ns":9000,"net_ns":8000,"depth":0,"complete":true,"kind":"task","source":"kworker/u4:1","number":{pid},"functions":["vmstat_update"],"senders":[{{"cpu":0,"pid":{sender_pid},"comm":"chronyd","context":"task","action":"queue_work","place":{{"unit":"chronyd.service"}}}}]}}"#
        ))
    }

    #[test]
    fn rows_count_by_kind_and_the_last_second_slides() {
        let s = 1_000_000_000u64;
        let mut b = Board::new([1, 2], 0);
        b.add(&[tick(1, s, 2000), tick(1, s + 500_000_000, 3000)]);
        b.add(&[kworker(1, s + 900_000_000, 77, 500)]);
        let r = b.rows(Sort::Cpu, s + 950_000_000);
        assert_eq!(
            (r[0].cpu, r[0].total, r[0].by_kind),
            (1, 3, [2, 0, 0, 0, 1, 0])
        );
        assert_eq!(r[0].longest_ns, 8000);
        assert_eq!(r[0].last_ns, Some(s + 900_000_000));
        assert_eq!(r[0].last_second(s + 950_000_000), 3);
        // 1.4 s after the first: it has left the window, the others have not.
        assert_eq!(r[0].last_second(s + 1_400_000_000), 2);
        assert_eq!(r[0].last_second(s + 3_000_000_000), 0);
        assert_eq!((r[1].cpu, r[1].total, r[1].last_ns), (2, 0, None));
    }

    #[test]
    fn culprits_merge_threads_of_one_service_and_name_it() {
        let mut b = Board::new([1, 2], 0);
        b.add(&[
            kworker(1, 10, 77, 500),
            kworker(2, 20, 78, 501),
            tick(1, 30, 1),
        ]);
        let c = b.culprits(10);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(&*c[0].what, "kworker/u4:1: vmstat_update");
        assert_eq!(&*c[0].by, "chronyd [chronyd.service]");
        assert_eq!((c[0].count, c[0].cpus.clone()), (2, vec![1, 2]));
        let ticks = c.iter().find(|c| c.kind == Kind::LocalTimer).unwrap();
        assert_eq!((&*ticks.what, &*ticks.by), ("tick_nohz_handler", ""));
        b.add(&[tick(2, 40, 1), tick(2, 50, 1)]);
        let ticks = b.culprits(1)[0].clone();
        assert_eq!((ticks.count, ticks.cpus.clone()), (3, vec![1, 2]));
    }

    #[test]
    fn sorting_reset_lost_and_recent() {
        let s = 1_000_000_000u64;
        let mut b = Board::new([1, 2, 3], 0);
        b.add(&[tick(2, s, 50), tick(3, s, 10), tick(3, s + 1, 10)]);
        b.add(&[rec(
            r#"{"type":"lost","cpu":1,"at_ns":5,"events":7,"reason":"ring buffer full"}"#,
        )]);
        let order = |sort| b.rows(sort, s).iter().map(|r| r.cpu).collect::<Vec<_>>();
        assert_eq!(order(Sort::Cpu), [1, 2, 3]);
        assert_eq!(order(Sort::Total), [3, 2, 1]);
        assert_eq!(order(Sort::Longest), [2, 3, 1]);
        assert_eq!(b.lost(), 7);
        let recent: Vec<u64> = b.recent(3).map(|r| r.at_ns).collect();
        assert_eq!(recent, [s + 1, s], "newest first");
        b.reset(s + 5);
        assert_eq!(b.since_ns, s + 5);
        assert!(b
            .rows(Sort::Cpu, s)
            .iter()
            .all(|r| r.total == 0 && r.lost == 0));
        assert_eq!(b.culprits(5).len(), 0);
        assert_eq!(b.recent(3).count(), 0);
        assert_eq!(b.cpus().collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn recent_and_culprits_stay_bounded() {
        let mut b = Board::new([1], 0);
        for n in 0..(MAX_CULPRITS as u64 + 500) {
            // A new culprit every 100 ms: most are a minute old by the end.
            b.add(&[kworker(1, n * 100_000_000, n as u32, n as u32 + 1)]);
            let mut r = tick(1, n * 100_000_000 + 1, 1);
            if let Record::Interruption(i) = &mut r {
                i.functions = vec![format!("timer_{n}")];
            }
            b.add(&[r]);
        }
        assert_eq!(b.recent(1).count(), RECENT);
        assert!(b.culprits.len() <= MAX_CULPRITS, "{}", b.culprits.len());
        assert_eq!(
            b.rows(Sort::Cpu, 0)[0].total,
            2 * (MAX_CULPRITS as u64 + 500)
        );
    }
}
