//! What `watch` reports: one [`Interruption`] per kernel excursion on a watched CPU, with
//! its kind, what ran, who caused it and how long it took.

use serde::{Deserialize, Serialize};
use std::fmt;

pub use isol_model::kernel::place::{Container, Place, Pod};

/// The broad class of an interruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The local APIC timer: the tick, or an hrtimer that expired on this CPU.
    LocalTimer,
    /// An inter-processor interrupt (reschedule, call function, irq_work, ...).
    Ipi,
    /// Another APIC system vector (thermal, MCE threshold, error, spurious, ...).
    Apic,
    /// A device interrupt.
    Irq,
    /// A softirq run on interrupt exit (in ksoftirqd it is part of that task).
    Softirq,
    /// Another task or kernel thread ran on the CPU (kworker, ksoftirqd, migration ...).
    Task,
    /// A non-maskable interrupt handler.
    Nmi,
    /// A system call of the CPU's own task.
    Syscall,
    /// A page fault (the kernel has no end event for faults: no duration).
    PageFault,
}

impl Kind {
    /// Every kind, in display order.
    pub const ALL: [Kind; 9] = [
        Kind::LocalTimer,
        Kind::Ipi,
        Kind::Apic,
        Kind::Irq,
        Kind::Softirq,
        Kind::Task,
        Kind::Nmi,
        Kind::Syscall,
        Kind::PageFault,
    ];

    /// The name used in output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LocalTimer => "local_timer",
            Kind::Ipi => "ipi",
            Kind::Apic => "apic",
            Kind::Irq => "irq",
            Kind::Softirq => "softirq",
            Kind::Task => "task",
            Kind::Nmi => "nmi",
            Kind::Syscall => "syscall",
            Kind::PageFault => "page_fault",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who, on which CPU, caused an interruption from elsewhere: the sender of an IPI, the task
/// that queued a work item, the waker of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The CPU the task ran on.
    pub cpu: u32,
    /// Its process id (tgid).
    pub pid: i32,
    /// The task running on the sender's CPU; with `context` other than `task`, the one an
    /// interrupt handler interrupted, not the culprit itself.
    pub comm: String,
    /// Where the sender ran: `task`, `irq`, `softirq` or `nmi`.
    pub context: String,
    /// What it did: `ipi_send_cpu`, `ipi_send_cpumask`, `queue_work`, `wakeup`.
    pub action: String,
    /// The kernel function that sent it (`ipi_send_*` callsite), if known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callsite: Option<String>,
    /// The function the target CPU was asked to run, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callback: Option<String>,
    /// In an interrupt or softirq (`context` `irq` or `softirq`): the handler it ran
    /// (`vring_interrupt`, `net_rx_action`, a timer's function), from its kernel stack.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub handler: Option<String>,
    /// The sender's kernel stack, innermost first (with `--stack`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stack: Vec<String>,
    /// The task the sender worked for: a kworker running `work_on_cpu` work (CPU hotplug
    /// does its work so) names who queued it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_behalf: Option<Behalf>,
    /// Where the sending task lives: its unit, container, pod.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub place: Option<Place>,
}

/// Who a proxy (a kworker) was working for when it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behalf {
    /// CPU the work was queued from.
    pub cpu: u32,
    /// The task that queued the work.
    pub pid: i32,
    /// Its name.
    pub comm: String,
    /// The work function the proxy was running (`work_for_cpu_fn`).
    pub function: String,
    /// Where that task lives.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub place: Option<Place>,
}

/// ` [tag]` for a place that says something, else nothing.
fn tag(place: Option<&Place>) -> String {
    match place.map(Place::tag) {
        Some(t) if !t.is_empty() => format!(" {t}"),
        _ => String::new(),
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action.as_str() {
            "queue_work" => "queued by",
            "wakeup" => "woken by",
            _ => "sent by",
        };
        write!(f, "{verb} cpu{} ", self.cpu)?;
        match self.context.as_str() {
            "task" => write!(f, "{}/{}{}", self.comm, self.pid, tag(self.place.as_ref()))?,
            ctx => {
                write!(f, "{ctx}")?;
                if let Some(h) = &self.handler {
                    write!(f, " {h}")?;
                }
                write!(f, " (over {}/{})", self.comm, self.pid)?;
            }
        }
        if let Some(c) = self
            .callsite
            .as_ref()
            .filter(|c| Some(*c) != self.handler.as_ref())
        {
            write!(f, " in {c}")?;
        }
        if let Some(b) = &self.on_behalf {
            write!(
                f,
                " for {}/{}{} ({})",
                b.comm,
                b.pid,
                tag(b.place.as_ref()),
                b.function
            )?;
        }
        Ok(())
    }
}

/// One interruption of a watched CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// The interrupted CPU.
    pub cpu: u32,
    /// Start, in ns of the trace clock (CLOCK_MONOTONIC).
    pub start_ns: u64,
    /// From entry to exit. None for page faults (no exit event).
    pub duration_ns: Option<u64>,
    /// Duration minus the interruptions nested in it, as the kernel's osnoise counts.
    pub net_ns: Option<u64>,
    /// 0 for a top-level interruption, 1 for one nested in another, ...
    pub depth: u32,
    /// False when the start or end was not seen (watch started or stopped inside it, or
    /// events were lost): the duration is then a lower bound.
    pub complete: bool,
    /// What kind of interruption.
    pub kind: Kind,
    /// What it is: the vector (`reschedule`), IRQ name, softirq (`TIMER`), task comm,
    /// syscall name, NMI handler.
    pub source: String,
    /// IRQ number, softirq vector, pid, or syscall number.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub number: Option<i64>,
    /// Kernel functions that ran: expired (hr)timers, IPI callbacks, work items.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub functions: Vec<String>,
    /// Who caused it from another context.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub senders: Vec<Sender>,
    /// Why no sender is named for an interruption that has one (an IPI): the kernel has no
    /// send event, or the sending CPU was not tracing (one coming online), or the IPI was
    /// sent before the watch started.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub untraced: Option<String>,
    /// Faulting address (page faults).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address: Option<u64>,
    /// Where the task that ran lives (`task` interruptions): its unit, container, pod.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub place: Option<Box<Place>>,
}

impl Interruption {
    /// What ran, as one readable name: `tick_nohz_handler`, `TIMER: process_timeout`,
    /// `call_function_single: do_sync_core`, `kworker/1:1: vmstat_update`, `24 eth0`.
    /// Interruptions with the same culprit are one row of a summary.
    pub fn culprit(&self) -> String {
        let mut functions: Vec<&str> = Vec::new();
        for f in &self.functions {
            if !functions.contains(&f.as_str()) {
                functions.push(f);
            }
        }
        // The generic handler adds nothing when the real callback is known.
        if functions.len() > 1 {
            functions.retain(|f| *f != "generic_smp_call_function_single_interrupt");
        }
        let base = match self.kind {
            Kind::Irq => format!("{} {}", self.number.unwrap_or(-1), self.source),
            Kind::PageFault => format!("{} fault", self.source),
            Kind::LocalTimer if !functions.is_empty() => String::new(),
            Kind::Task => format!("{}{}", self.source, tag(self.place.as_deref())),
            _ => self.source.clone(),
        };
        match (base.is_empty(), functions.is_empty()) {
            (_, true) => base,
            (true, false) => functions.join(","),
            (false, false) => format!("{base}: {}", functions.join(",")),
        }
    }
}

/// Everything a watch reports, in time order per CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A CPU was interrupted.
    Interruption(Interruption),
    /// The kernel dropped events (buffer full) or a page could not be decoded: what
    /// happened on `cpu` around `at_ns` is incomplete.
    Lost {
        /// The CPU whose events are incomplete.
        cpu: u32,
        /// When (CLOCK_MONOTONIC ns).
        at_ns: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        /// How many events were dropped, when the kernel says.
        events: Option<u64>,
        /// Why.
        reason: String,
    },
    /// The nohz_full tick tried to stop (`timer:tick_stop`); on failure, the dependency
    /// that keeps it running (`SCHED`, `POSIX_TIMER`, `PERF_EVENTS`, `RCU`, ...).
    TickStop {
        /// The CPU whose tick tried to stop.
        cpu: u32,
        /// When (CLOCK_MONOTONIC ns).
        at_ns: u64,
        /// Whether it stopped.
        success: bool,
        /// What kept it running, on failure.
        dependency: String,
    },
}

impl Record {
    /// The CPU a record is about.
    pub fn cpu(&self) -> u32 {
        match self {
            Record::Interruption(i) => i.cpu,
            Record::Lost { cpu, .. } | Record::TickStop { cpu, .. } => *cpu,
        }
    }

    /// When it happened (CLOCK_MONOTONIC ns).
    pub fn at_ns(&self) -> u64 {
        match self {
            Record::Interruption(i) => i.start_ns,
            Record::Lost { at_ns, .. } | Record::TickStop { at_ns, .. } => *at_ns,
        }
    }
}
