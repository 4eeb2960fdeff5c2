//! The state machine that turns a time-ordered stream of decoded events into
//! [`Interruption`]s.
//!
//! Per watched CPU it keeps a stack of open frames (an IRQ inside a syscall inside another
//! task's time slice ...). A frame closes at its exit event; its net duration is its
//! duration minus the frames nested in it. Events from other CPUs name the culprit: an
//! `ipi_send_*` is matched to the IPI it causes, a `workqueue_queue_work` to the work item,
//! a `sched_wakeup` to the task that then runs.

use std::collections::{HashMap, HashSet, VecDeque};

use super::decode::{
    comm_str, tick_dependency, Consumes, Event, What, FLAG_HARDIRQ, FLAG_NMI, FLAG_SOFTIRQ,
    PROXY_WORK, SOFTIRQS,
};
use super::{Placement, TaskLookup};
use crate::interrupt::{Behalf, Interruption, Kind, Place, Record, Sender};
use crate::symbols::Symbols;
use crate::CpuSet;

/// A sent IPI, work item or wakeup is forgotten if nothing consumes it within this time.
const PENDING_TTL_NS: u64 = 1_000_000_000;
const PENDING_MAX: usize = 256;
/// x86-64 `exit` and `exit_group`, which never return to `sys_exit`.
const SYS_EXIT: i64 = 60;
const SYS_EXIT_GROUP: i64 = 231;
/// `sched_switch` `prev_state` bits of a task that has exited (`Z`, `X`).
const TASK_GONE: i64 = 0x10 | 0x20;
/// A wakeup in a timer interrupt this soon after a sleeper's hrtimer expired is its work.
const TIMER_WAKEUP_NS: u64 = 100_000;
/// An IPI this soon after the first event may have been sent before recording began.
const EARLY_NS: u64 = 1_000_000;
/// The callback `ipi_send_cpu` reports when the real function is not known.
const GENERIC_CALL: &str = "generic_smp_call_function_single_interrupt";

/// Keep a pending sender until its effect is seen, forgetting ones older than the TTL when
/// the map is full.
fn remember<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, (u64, V)>,
    key: K,
    ts: u64,
    sender: V,
) {
    if map.len() >= PENDING_MAX {
        map.retain(|_, (t, _)| ts.saturating_sub(*t) < PENDING_TTL_NS);
    }
    map.insert(key, (ts, sender));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Vector(u16),
    Irq(u32),
    Softirq(u32),
    Task(i32),
    /// A system call of the task with this id.
    Syscall(i32),
}

impl Tag {
    /// Which senders a vector frame consumes (`Nothing` for every other frame).
    fn consumes(&self, vectors: &[super::decode::VectorInfo]) -> Consumes {
        match self {
            Tag::Vector(v) => vectors
                .get(*v as usize)
                .map_or(Consumes::Nothing, |i| i.consumes),
            _ => Consumes::Nothing,
        }
    }

    /// A call-function vector: its senders name a callsite, `csd` events the function.
    fn is_call_vector(&self, vectors: &[super::decode::VectorInfo]) -> bool {
        self.consumes(vectors) == Consumes::Calls
    }
}

/// How long a task's place is taken as known before `/proc/PID/cgroup` is read again.
const PLACE_TTL_NS: u64 = 1_000_000_000;

#[derive(Debug)]
struct Frame {
    tag: Tag,
    kind: Kind,
    source: String,
    number: Option<i64>,
    place: Option<Place>,
    start: u64,
    child_ns: u64,
    complete: bool,
    functions: Vec<u64>,
    senders: Vec<Sender>,
}

#[derive(Debug)]
struct PendingIpi {
    ts: u64,
    seq: u64,
    reschedule: bool,
    sender: Sender,
}

#[derive(Debug, Default)]
struct CpuState {
    frames: Vec<Frame>,
    ipis: VecDeque<PendingIpi>,
}

/// Where the last sender event of a CPU went, so the kernel stack that follows it can be
/// attached.
#[derive(Debug, Clone)]
enum LastSender {
    Ipi(u64),
    Work(u64),
    Wakeup(i32),
}

/// `filter` (of a sender event) narrowed to senders in an interrupt or softirq on a CPU
/// that is not watched: the ones whose kernel stack names the handler they ran in. (On a
/// watched CPU the handler is a line of its own, and taking a stack there would lengthen
/// the interruption it is part of.)
pub(crate) fn in_interrupt(filter: Option<&str>, watched: &CpuSet) -> String {
    let mut f = format!("common_flags & {}", FLAG_HARDIRQ | FLAG_SOFTIRQ);
    if let Some(own) = filter {
        f = format!("({own}) && {f}");
    }
    for cpu in watched.iter() {
        f.push_str(&format!(" && CPU != {cpu}"));
    }
    f
}

/// Turns events into records. Feed it events in time order.
pub struct Machine {
    targets: CpuSet,
    symbols: Symbols,
    vectors: Vec<super::decode::VectorInfo>,
    cpus: HashMap<u32, CpuState>,
    work: HashMap<u64, (u64, Sender)>,
    wakeups: HashMap<i32, (u64, Sender)>,
    last_sender: HashMap<u32, LastSender>,
    residents: HashSet<i32>,
    /// Proxy work (`work_for_cpu_fn`) queued and not yet started: who queued it.
    proxy_work: HashMap<u64, (u64, Behalf)>,
    /// kworkers running proxy work now, and for whom.
    proxies: HashMap<i32, Behalf>,
    /// The last `hrtimer_wakeup` that expired on each unwatched CPU: when and its address.
    timer_wakeups: HashMap<u32, (u64, u64)>,
    /// Residents that have run on each CPU and not died: a pinned newcomer is the workload
    /// only where there is none.
    occupants: HashMap<u32, HashSet<i32>>,
    /// Residents found running on each CPU when the watch started, until they die: shown
    /// as occupants ([`Machine::occupants`]) where no resident has run since.
    at_start: HashMap<u32, HashSet<i32>>,
    /// Residents that blocked inside a system call: its name and number, to go on with
    /// when they run here again.
    blocked_in_syscall: HashMap<i32, (String, Option<i64>)>,
    comms: HashMap<i32, String>,
    /// Where each task named lives (its unit, container, pod), and when that was asked
    /// (trace time): asked again after [`PLACE_TTL_NS`], as tasks move (a container's
    /// first process runs before its runtime moves it into its cgroup).
    places: HashMap<i32, (Option<Place>, u64)>,
    /// Placement of every task seen arriving on a watched CPU, asked once.
    placements: HashMap<i32, Option<Placement>>,
    tasks: Box<dyn TaskLookup>,
    seq: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    /// The kernel has the `ipi_send_*` events (6.4+).
    ipi_events: bool,
    /// Tasks arriving pinned to the watched CPUs are residents.
    pinned_rule: bool,
    /// Whether senders keep their whole kernel stacks (`--stack`).
    stacks: bool,
    out: Vec<Record>,
}

impl Machine {
    pub(crate) fn new(
        targets: CpuSet,
        symbols: Symbols,
        vectors: Vec<super::decode::VectorInfo>,
        residents: &[i32],
        tasks: Box<dyn TaskLookup>,
    ) -> Machine {
        Machine {
            targets,
            symbols,
            vectors,
            cpus: HashMap::new(),
            work: HashMap::new(),
            wakeups: HashMap::new(),
            last_sender: HashMap::new(),
            residents: residents.iter().copied().collect(),
            blocked_in_syscall: HashMap::new(),
            occupants: HashMap::new(),
            at_start: HashMap::new(),
            proxy_work: HashMap::new(),
            proxies: HashMap::new(),
            timer_wakeups: HashMap::new(),
            comms: HashMap::new(),
            places: HashMap::new(),
            placements: HashMap::new(),
            tasks,
            seq: 0,
            first_ts: None,
            last_ts: 0,
            ipi_events: true,
            pinned_rule: true,
            stacks: true,
            out: Vec::new(),
        }
    }

    /// Records produced so far (drained), by start time. An interruption is produced when
    /// it ends, so nested ones come out before the one they are nested in; sorting puts
    /// them back in the order they began.
    pub fn take(&mut self) -> Vec<Record> {
        let mut out = std::mem::take(&mut self.out);
        out.sort_by_key(|r| r.at_ns());
        out
    }

    /// Tasks arriving pinned to the watched CPUs are not residents: the workload is known.
    pub(crate) fn without_pinned_residents(&mut self) {
        self.pinned_rule = false;
    }

    /// Senders' kernel stacks were not asked for: the stacks that come (of senders in an
    /// interrupt, see [`in_interrupt`]) name the handler and are dropped.
    pub(crate) fn without_stacks(&mut self) {
        self.stacks = false;
    }

    /// The kernel has no `ipi_send_cpu`/`ipi_send_cpumask` events: IPI senders cannot be
    /// named, and each IPI says so.
    pub(crate) fn without_ipi_events(&mut self) {
        self.ipi_events = false;
    }

    pub(crate) fn add_resident(&mut self, tid: i32) {
        self.residents.insert(tid);
    }

    /// `tid`, named `comm`, is a resident running on `cpu`, found there at the start. It
    /// is shown as the CPU's occupant until another resident runs there or it dies; unlike
    /// a resident seen running, it does not make a pinned newcomer an interruption.
    pub(crate) fn occupy(&mut self, cpu: u32, tid: i32, comm: String) {
        self.residents.insert(tid);
        self.comms.entry(tid).or_insert(comm);
        self.at_start.entry(cpu).or_default().insert(tid);
    }

    /// The residents living on each CPU, by task id, with their names.
    pub(crate) fn occupants(&self) -> std::collections::BTreeMap<u32, Vec<(i32, String)>> {
        let cpus: HashSet<u32> = self
            .occupants
            .keys()
            .chain(self.at_start.keys())
            .copied()
            .collect();
        cpus.into_iter()
            .filter_map(|cpu| {
                let seen = self.occupants.get(&cpu).filter(|t| !t.is_empty());
                seen.or_else(|| self.at_start.get(&cpu))
                    .filter(|t| !t.is_empty())
                    .map(|t| (cpu, t))
            })
            .map(|(cpu, tids)| {
                let mut named: Vec<(i32, String)> = tids
                    .iter()
                    .map(|&t| (t, self.comms.get(&t).cloned().unwrap_or_default()))
                    .collect();
                named.sort();
                (cpu, named)
            })
            .collect()
    }

    /// User tasks found pinned to the watched CPUs, for a recording to replay.
    pub fn pinned(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .placements
            .iter()
            .filter(|(_, p)| **p == Some(Placement::Pinned))
            .map(|(pid, _)| *pid)
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether `pid`, arriving on a watched CPU, is the CPU's workload: a user task
    /// allowed on watched CPUs only (started with `taskset`, `isol run`, a cpuset, or
    /// pinned by itself). Asked once per task.
    fn pinned_here(&mut self, pid: i32) -> bool {
        if !self.pinned_rule {
            return false;
        }
        let tasks = &self.tasks;
        let targets = &self.targets;
        *self
            .placements
            .entry(pid)
            .or_insert_with(|| tasks.placement(pid, targets))
            == Some(Placement::Pinned)
    }

    /// Known comms (`pid -> comm`), for a recording to replay.
    pub fn comms(&self) -> &HashMap<i32, String> {
        &self.comms
    }

    /// Known places (`pid -> place`), for a recording to replay.
    pub fn places(&self) -> impl Iterator<Item = (i32, &Place)> {
        self.places
            .iter()
            .filter_map(|(pid, (p, _))| Some((*pid, p.as_ref()?)))
    }

    /// Where `pid` lives, asked at most once per [`PLACE_TTL_NS`] (none for the idle
    /// task).
    pub(crate) fn place_of(&mut self, pid: i32) -> Option<Place> {
        if pid <= 0 {
            return None;
        }
        let now = self.last_ts;
        match self.places.get(&pid) {
            Some((p, at)) if now.saturating_sub(*at) < PLACE_TTL_NS => p.clone(),
            old => {
                // A task that has gone keeps the place it had.
                let p = self
                    .tasks
                    .place(pid)
                    .or_else(|| old.and_then(|(p, _)| p.clone()));
                self.places.insert(pid, (p.clone(), now));
                p
            }
        }
    }

    /// Process one event.
    pub(crate) fn feed(&mut self, e: Event) {
        self.last_ts = self.last_ts.max(e.ts);
        self.first_ts.get_or_insert(e.ts);
        if let What::Lost { events, reason } = e.what {
            self.lost(e.cpu, e.ts, events, reason);
            return;
        }
        if self.sender_event(&e) {
            return;
        }
        if !self.targets.contains(e.cpu) {
            return;
        }
        let cpu = e.cpu;
        match e.what {
            What::VecEntry(v) => {
                let Some(info) = self.vectors.get(v as usize).cloned() else {
                    return;
                };
                let mut f = self.frame(Tag::Vector(v), info.kind, info.name, None, e.ts);
                if info.consumes != Consumes::Nothing {
                    let st = self.cpus.entry(cpu).or_default();
                    let want_resched = info.consumes == Consumes::Reschedule;
                    let mut keep = VecDeque::new();
                    while let Some(p) = st.ipis.pop_front() {
                        if p.ts <= e.ts && p.reschedule == want_resched {
                            f.senders.push(p.sender);
                        } else {
                            keep.push_back(p);
                        }
                    }
                    st.ipis = keep;
                }
                self.push(cpu, f);
            }
            What::VecExit(v) => self.close_to(cpu, Tag::Vector(v), e.ts),
            What::IrqEntry { irq, name } => {
                let f = self.frame(Tag::Irq(irq), Kind::Irq, name, Some(irq as i64), e.ts);
                self.push(cpu, f);
            }
            What::IrqExit { irq } => self.close_to(cpu, Tag::Irq(irq), e.ts),
            What::SoftirqEntry(v) => {
                let name = SOFTIRQS
                    .get(v as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("softirq{v}"));
                let f = self.frame(Tag::Softirq(v), Kind::Softirq, name, Some(v as i64), e.ts);
                self.push(cpu, f);
            }
            What::SoftirqExit(v) => self.close_to(cpu, Tag::Softirq(v), e.ts),
            What::Hrtimer(func) | What::Timer(func) | What::Csd(func) => {
                if let Some(f) = self.cpus.entry(cpu).or_default().frames.last_mut() {
                    f.functions.push(func);
                }
            }
            What::TickStop {
                success,
                dependency,
            } => self.out.push(Record::TickStop {
                cpu,
                at_ns: e.ts,
                success,
                dependency: tick_dependency(dependency),
            }),
            What::WorkStart { work, function } => {
                let queued = self.work.remove(&work).map(|(_, s)| s);
                if let Some(f) = self.cpus.entry(cpu).or_default().frames.last_mut() {
                    f.functions.push(function);
                    f.senders.extend(queued);
                }
            }
            What::Switch {
                prev_pid,
                prev_state,
                prev_comm,
                next_pid,
                next_comm,
            } => self.switch(
                cpu, e.ts, prev_pid, prev_state, prev_comm, next_pid, next_comm,
            ),
            // A thread or child process of the CPU's workload is workload too.
            What::Fork { parent, child } => {
                if self.residents.contains(&parent) {
                    self.residents.insert(child);
                }
            }
            What::Nmi { handler, delta_ns } => {
                let d = delta_ns.max(0) as u64;
                let name = self.symbols.name(handler).unwrap_or_else(|| "nmi".into());
                if let Some(f) = self.cpus.entry(cpu).or_default().frames.last_mut() {
                    f.child_ns += d;
                }
                let start = e.ts.saturating_sub(d);
                self.instant(cpu, start, Some(d), Kind::Nmi, name, None, None);
            }
            What::SysEnter(nr) => {
                if self.in_task_frame(cpu) {
                    return;
                }
                let name = crate::syscalls::name(nr)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("syscall_{nr}"));
                if nr == SYS_EXIT || nr == SYS_EXIT_GROUP {
                    // These never return: an instant, not a frame.
                    self.instant(cpu, e.ts, None, Kind::Syscall, name, Some(nr), None);
                    return;
                }
                // A call still open for this task is one whose end this CPU never saw
                // (the task blocked in it, then ran elsewhere): it ended before this one.
                self.close_to(cpu, Tag::Syscall(e.pid), e.ts);
                let f = self.frame(Tag::Syscall(e.pid), Kind::Syscall, name, Some(nr), e.ts);
                self.push(cpu, f);
            }
            What::SysExit(_) => {
                self.blocked_in_syscall.remove(&e.pid);
                let st = self.cpus.entry(cpu).or_default();
                let top_task = st
                    .frames
                    .iter()
                    .rposition(|f| matches!(f.tag, Tag::Task(_)));
                let sys = st.frames.iter().rposition(|f| f.tag == Tag::Syscall(e.pid));
                if let Some(s) = sys {
                    if top_task.is_none_or(|t| t < s) {
                        self.close_to(cpu, Tag::Syscall(e.pid), e.ts);
                    }
                }
            }
            What::Fault { user, address } => {
                if self.in_task_frame(cpu) {
                    return;
                }
                let source = if user { "user" } else { "kernel" }.to_string();
                let pid = Some(e.pid as i64);
                self.instant(cpu, e.ts, None, Kind::PageFault, source, pid, Some(address));
            }
            // Lost and sender events were handled above.
            What::Lost { .. } => {}
            // Sender events were handled above.
            What::IpiCpu { .. }
            | What::WorkEnd { .. }
            | What::Rename { .. }
            | What::IpiMask { .. }
            | What::Queue { .. }
            | What::Wakeup { .. }
            | What::Stack(_) => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn switch(
        &mut self,
        cpu: u32,
        ts: u64,
        prev_pid: i32,
        prev_state: i64,
        prev_comm: [u8; 16],
        next_pid: i32,
        next_comm: [u8; 16],
    ) {
        if prev_pid != 0 {
            self.comms.insert(prev_pid, comm_str(&prev_comm));
        }
        if next_pid != 0 {
            self.comms.insert(next_pid, comm_str(&next_comm));
        }
        // A resident leaving the CPU inside a system call (it blocks, is preempted, or is
        // moved away) ends that call's time here: what runs next is not nested in it. A
        // call it blocked in goes on when it returns (`blocked_in_syscall`).
        if let Some(f) = self
            .cpus
            .get(&cpu)
            .and_then(|st| st.frames.iter().find(|f| f.tag == Tag::Syscall(prev_pid)))
        {
            if prev_state & 0xff != 0 {
                let resumed = (f.source.clone(), f.number);
                self.blocked_in_syscall.insert(prev_pid, resumed);
            }
            self.close_to(cpu, Tag::Syscall(prev_pid), ts);
        }
        let st = self.cpus.entry(cpu).or_default();
        let own = st.frames.iter().rposition(|f| f.tag == Tag::Task(prev_pid));
        if own.is_some() {
            self.close_to(cpu, Tag::Task(prev_pid), ts);
        } else if prev_pid != 0 && prev_state & 0xff == 0 {
            // The CPU's own task was preempted while runnable: it is the one being
            // interrupted, so its later returns are not interruptions.
            self.residents.insert(prev_pid);
        }
        // Which residents live on this CPU: one that runs here does, until it dies.
        if prev_state & TASK_GONE != 0 {
            if let Some(t) = self.at_start.get_mut(&cpu) {
                t.remove(&prev_pid);
            }
        }
        let occupants = self.occupants.entry(cpu).or_default();
        if self.residents.contains(&prev_pid) {
            if prev_state & TASK_GONE != 0 {
                occupants.remove(&prev_pid);
            } else {
                occupants.insert(prev_pid);
            }
        }
        let vacant = occupants.is_empty();
        if next_pid != 0
            && vacant
            && !self.residents.contains(&next_pid)
            && self.pinned_here(next_pid)
        {
            // Pinned to a CPU no resident occupies: the workload arriving, whatever ran
            // when the watch started. On an occupied CPU it interrupts the occupant.
            self.residents.insert(next_pid);
            self.wakeups.remove(&next_pid);
        }
        if self.residents.contains(&next_pid) {
            self.occupants.entry(cpu).or_default().insert(next_pid);
        }
        if let Some((name, nr)) = self.blocked_in_syscall.remove(&next_pid) {
            if self.residents.contains(&next_pid) {
                let f = self.frame(Tag::Syscall(next_pid), Kind::Syscall, name, nr, ts);
                self.push(cpu, f);
            }
        }
        if next_pid != 0 && !self.residents.contains(&next_pid) {
            let mut f = self.frame(
                Tag::Task(next_pid),
                Kind::Task,
                comm_str(&next_comm),
                Some(next_pid as i64),
                ts,
            );
            if let Some((_, s)) = self.wakeups.remove(&next_pid) {
                f.senders.push(s);
            }
            f.place = self.place_of(next_pid);
            self.push(cpu, f);
        }
    }

    /// Report an interruption that is not a frame: an NMI (its duration comes with it), a
    /// page fault or a syscall that never returns (no end event: no duration).
    #[allow(clippy::too_many_arguments)]
    fn instant(
        &mut self,
        cpu: u32,
        start_ns: u64,
        duration_ns: Option<u64>,
        kind: Kind,
        source: String,
        number: Option<i64>,
        address: Option<u64>,
    ) {
        let depth = self.cpus.get(&cpu).map_or(0, |s| s.frames.len()) as u32;
        self.out.push(Record::Interruption(Interruption {
            cpu,
            start_ns,
            duration_ns,
            net_ns: duration_ns,
            depth,
            complete: true,
            kind,
            source,
            number,
            functions: Vec::new(),
            senders: Vec::new(),
            untraced: None,
            address,
            place: None,
        }));
    }

    fn in_task_frame(&self, cpu: u32) -> bool {
        self.cpus
            .get(&cpu)
            .is_some_and(|s| s.frames.iter().any(|f| matches!(f.tag, Tag::Task(_))))
    }

    fn frame(&self, tag: Tag, kind: Kind, source: String, number: Option<i64>, ts: u64) -> Frame {
        Frame {
            tag,
            kind,
            source,
            number,
            place: None,
            start: ts,
            child_ns: 0,
            complete: true,
            functions: Vec::new(),
            senders: Vec::new(),
        }
    }

    fn push(&mut self, cpu: u32, f: Frame) {
        self.cpus.entry(cpu).or_default().frames.push(f);
    }

    /// Close frames down to and including the innermost one tagged `tag`; frames above it
    /// lost their exit event and are reported incomplete. An exit with no open frame (the
    /// entry was before the watch started) is ignored.
    fn close_to(&mut self, cpu: u32, tag: Tag, ts: u64) {
        let Some(st) = self.cpus.get_mut(&cpu) else {
            return;
        };
        let Some(i) = st.frames.iter().rposition(|f| f.tag == tag) else {
            return;
        };
        let above = st.frames.len() - i - 1;
        for _ in 0..above {
            let mut f = self.pop(cpu);
            f.complete = false;
            self.emit_top(cpu, f, ts);
        }
        let f = self.pop(cpu);
        self.emit_top(cpu, f, ts);
    }

    fn pop(&mut self, cpu: u32) -> Frame {
        self.cpus
            .get_mut(&cpu)
            .and_then(|s| s.frames.pop())
            .expect("a frame counted as open")
    }

    fn emit_top(&mut self, cpu: u32, f: Frame, end: u64) {
        let st = self.cpus.entry(cpu).or_default();
        let duration = end.saturating_sub(f.start);
        if let Some(parent) = st.frames.last_mut() {
            parent.child_ns += duration;
        }
        let depth = st.frames.len() as u32;
        let mut functions: Vec<String> = f
            .functions
            .iter()
            .filter_map(|&a| self.symbols.name(a))
            .collect();
        // The function a call-function IPI ran, when the kernel traced it (6.3+).
        let ran = f.tag.is_call_vector(&self.vectors) && !functions.is_empty();
        for s in &f.senders {
            match (&s.callback, &s.callsite) {
                (Some(cb), _) if cb == GENERIC_CALL && ran => {}
                // The generic handler says nothing; where it was sent from does.
                (Some(cb), Some(site)) if cb == GENERIC_CALL => functions.push(site.clone()),
                (Some(cb), _) => functions.push(cb.clone()),
                _ => {}
            }
        }
        let untraced = (f.senders.is_empty() && f.tag.consumes(&self.vectors) != Consumes::Nothing)
            .then(|| self.why_untraced(f.start));
        let mut senders: Vec<Sender> = Vec::new();
        for s in f.senders {
            if !senders.contains(&s) {
                senders.push(s);
            }
        }
        let mut seen = HashSet::new();
        functions.retain(|n| seen.insert(n.clone()));
        self.out.push(Record::Interruption(Interruption {
            cpu,
            start_ns: f.start,
            duration_ns: Some(duration),
            net_ns: Some(duration.saturating_sub(f.child_ns)),
            depth,
            complete: f.complete,
            kind: f.kind,
            source: f.source,
            number: f.number,
            functions,
            senders,
            untraced,
            address: None,
            place: f.place.map(Box::new),
        }));
    }

    /// Events were lost on `cpu`: what is open there can no longer be trusted.
    pub(crate) fn lost(&mut self, cpu: u32, at: u64, events: Option<u64>, reason: String) {
        if self.targets.contains(cpu) {
            self.close_all(cpu, at);
        }
        self.out.push(Record::Lost {
            cpu,
            at_ns: at,
            events,
            reason,
        });
    }

    fn close_all(&mut self, cpu: u32, at: u64) {
        while let Some(mut f) = self.cpus.get_mut(&cpu).and_then(|s| s.frames.pop()) {
            f.complete = false;
            let end = at.max(f.start);
            self.emit_top(cpu, f, end);
        }
    }

    /// The watch ends at `at`: frames still open are reported as incomplete.
    pub(crate) fn finish(&mut self, at: u64) {
        let at = at.max(self.last_ts);
        let cpus: Vec<u32> = self.cpus.keys().copied().collect();
        for cpu in cpus {
            self.close_all(cpu, at);
        }
    }
}

mod senders;
#[cfg(test)]
mod tests;
