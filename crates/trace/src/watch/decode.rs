//! Binding the running kernel's event formats to typed events.
//!
//! [`Schema::bind`] reads each event's format once and keeps the field offsets; decoding a
//! record is then a table lookup by event id and a few bounded reads. No field offset is
//! hard-coded.

use crate::tracefs::format::{DynamicKind, EventFormat, Field};
use crate::tracefs::ring::RawEvent;
use crate::tracefs::{TraceError, Tracefs};
use crate::CpuSet;

/// An event the watch engine traces, and on which CPUs it is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Fires on the interrupted CPU: filtered with `CPU == n`.
    Target,
    /// Fires on the CPU that causes the interruption, naming the target in `field`.
    Sender(&'static str),
    /// Follows another event (kernel stacks).
    Internal,
    /// Kept from every CPU, unfiltered: rare events that name tasks (a rename).
    Anywhere,
    /// Wanted only for a function followed on every CPU ([`FOLLOWED`]): enabled only when
    /// that function's address is known, and filtered to it (a kworker's work ending).
    Proxy,
}

/// The work function through which a task has a kworker do its work on a given CPU
/// (`work_on_cpu`): CPU hotplug brings CPUs down so, and what the kworker then sends is
/// traced back to who queued it.
pub(crate) const PROXY_WORK: &str = "work_for_cpu_fn";
/// The hrtimer callback that wakes a sleeping task: traced on every CPU, so a wakeup from
/// a timer interrupt elsewhere names it.
pub(crate) const TIMER_WAKEUP: &str = "hrtimer_wakeup";

/// Events also kept, on every CPU, when their `function` field is one of these: queueing,
/// starting and ending [`PROXY_WORK`] (who a kworker works for), and expiring
/// [`TIMER_WAKEUP`] (the timer that wakes a task elsewhere).
pub(crate) const FOLLOWED: &[(&str, &str)] = &[
    ("workqueue_queue_work", PROXY_WORK),
    ("workqueue_execute_start", PROXY_WORK),
    ("workqueue_execute_end", PROXY_WORK),
    ("hrtimer_expire_entry", TIMER_WAKEUP),
];

/// Events wanted besides the whole `irq_vectors` system.
pub(crate) const EVENTS: &[(&str, &str, Side)] = &[
    ("irq", "irq_handler_entry", Side::Target),
    ("irq", "irq_handler_exit", Side::Target),
    ("irq", "softirq_entry", Side::Target),
    ("irq", "softirq_exit", Side::Target),
    ("timer", "hrtimer_expire_entry", Side::Target),
    ("timer", "timer_expire_entry", Side::Target),
    // The function a call-function IPI ran (6.3+): a TLB flush and text patching look
    // alike by their callsite alone.
    ("csd", "csd_function_entry", Side::Target),
    ("timer", "tick_stop", Side::Target),
    ("workqueue", "workqueue_execute_start", Side::Target),
    ("workqueue", "workqueue_execute_end", Side::Proxy),
    ("sched", "sched_switch", Side::Target),
    ("sched", "sched_process_fork", Side::Target),
    // A task's name changes at exec and by prctl (busybox re-executes itself through
    // /proc/self/exe, then names itself): senders are named as they were when they sent.
    ("task", "task_rename", Side::Anywhere),
    ("nmi", "nmi_handler", Side::Target),
    ("raw_syscalls", "sys_enter", Side::Target),
    ("raw_syscalls", "sys_exit", Side::Target),
    ("exceptions", "page_fault_user", Side::Target),
    ("exceptions", "page_fault_kernel", Side::Target),
    ("ipi", "ipi_send_cpu", Side::Sender("cpu")),
    ("ipi", "ipi_send_cpumask", Side::Sender("cpumask")),
    ("workqueue", "workqueue_queue_work", Side::Sender("cpu")),
    ("sched", "sched_wakeup", Side::Sender("target_cpu")),
];

/// Softirq vector names, by number.
pub(crate) const SOFTIRQS: [&str; 10] = [
    "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU",
];

/// `timer:tick_stop` dependency bits.
pub(crate) fn tick_dependency(bits: i64) -> String {
    const NAMES: [&str; 6] = [
        "POSIX_TIMER",
        "PERF_EVENTS",
        "SCHED",
        "CLOCK_UNSTABLE",
        "RCU",
        "RCU_EXP",
    ];
    if bits == 0 {
        return "NONE".into();
    }
    let names: Vec<&str> = (0..NAMES.len())
        .filter(|b| bits & (1 << b) != 0)
        .map(|b| NAMES[b])
        .collect();
    if names.is_empty() || bits >> NAMES.len() != 0 {
        format!("{bits:#x}")
    } else {
        names.join("|")
    }
}

/// How an `irq_vectors` vector is classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VectorInfo {
    pub name: String,
    pub kind: crate::interrupt::Kind,
    /// Which IPI senders it consumes: reschedules (no callback) or function calls.
    pub consumes: Consumes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumes {
    Nothing,
    Reschedule,
    Calls,
}

fn classify_vector(name: &str) -> VectorInfo {
    use crate::interrupt::Kind;
    let (kind, consumes) = match name {
        "local_timer" => (Kind::LocalTimer, Consumes::Nothing),
        "reschedule" => (Kind::Ipi, Consumes::Reschedule),
        "call_function" | "call_function_single" => (Kind::Ipi, Consumes::Calls),
        "irq_work" | "reboot" | "x86_platform_ipi" => (Kind::Ipi, Consumes::Nothing),
        _ => (Kind::Apic, Consumes::Nothing),
    };
    VectorInfo {
        name: name.to_string(),
        kind,
        consumes,
    }
}

/// A decoded event. Addresses stay raw; names are looked up when an interruption is
/// reported, not for every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    VecEntry(u16),
    VecExit(u16),
    IrqEntry {
        irq: u32,
        name: String,
    },
    IrqExit {
        irq: u32,
    },
    SoftirqEntry(u32),
    SoftirqExit(u32),
    Hrtimer(u64),
    Timer(u64),
    /// A cross-CPU function call run here (`csd_function_entry`).
    Csd(u64),
    TickStop {
        success: bool,
        dependency: i64,
    },
    WorkStart {
        work: u64,
        function: u64,
    },
    WorkEnd {
        work: u64,
    },
    Switch {
        prev_pid: i32,
        prev_state: i64,
        prev_comm: [u8; 16],
        next_pid: i32,
        next_comm: [u8; 16],
    },
    Nmi {
        handler: u64,
        delta_ns: i64,
    },
    SysEnter(i64),
    SysExit(i64),
    Fault {
        user: bool,
        address: u64,
    },
    IpiCpu {
        target: u32,
        callsite: u64,
        callback: u64,
    },
    IpiMask {
        targets: CpuSet,
        callsite: u64,
        callback: u64,
    },
    Queue {
        work: u64,
        function: u64,
        cpu: i32,
    },
    Wakeup {
        pid: i32,
        comm: [u8; 16],
        target_cpu: i32,
    },
    /// A task (thread or process) created on a watched CPU.
    Fork {
        parent: i32,
        child: i32,
    },
    /// A task took a new name (exec, `PR_SET_NAME`).
    Rename {
        pid: i32,
        comm: [u8; 16],
    },
    Stack(Vec<u64>),
    /// Not a kernel event: the page reader found lost events or a corrupt page.
    Lost {
        events: Option<u64>,
        reason: String,
    },
}

impl What {
    /// Kernel addresses the event refers to (for a recording's symbol subset).
    pub(crate) fn addresses(&self) -> Vec<u64> {
        match self {
            What::Hrtimer(a) | What::Timer(a) | What::Csd(a) => vec![*a],
            What::WorkStart { function, .. } | What::Queue { function, .. } => vec![*function],
            What::Nmi { handler, .. } => vec![*handler],
            What::IpiCpu {
                callsite, callback, ..
            }
            | What::IpiMask {
                callsite, callback, ..
            } => {
                vec![*callsite, *callback]
            }
            What::Stack(v) => v.clone(),
            _ => Vec::new(),
        }
    }
}

/// One decoded event with its place and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub ts: u64,
    pub cpu: u32,
    pub pid: i32,
    /// `common_flags`: the context the event fired in (hard/soft irq, NMI bits).
    pub flags: u8,
    pub what: What,
}

/// `common_flags` bits, stable across kernels.
pub(crate) const FLAG_HARDIRQ: u8 = 0x08;
pub(crate) const FLAG_SOFTIRQ: u8 = 0x10;
pub(crate) const FLAG_NMI: u8 = 0x40;

#[derive(Debug, Clone, Copy)]
struct Loc {
    offset: usize,
    size: usize,
    signed: bool,
    dynamic: Option<DynamicKind>,
}

impl From<&Field> for Loc {
    fn from(f: &Field) -> Loc {
        Loc {
            offset: f.offset,
            size: f.size,
            signed: f.signed,
            dynamic: f.dynamic,
        }
    }
}

#[derive(Debug, Clone)]
enum Binding {
    VecEntry(u16),
    VecExit(u16),
    IrqEntry {
        irq: Loc,
        name: Loc,
    },
    IrqExit {
        irq: Loc,
    },
    SoftirqEntry(Loc),
    SoftirqExit(Loc),
    Hrtimer(Loc),
    Timer(Loc),
    Csd(Loc),
    TickStop {
        success: Loc,
        dependency: Loc,
    },
    WorkStart {
        work: Loc,
        function: Loc,
    },
    WorkEnd {
        work: Loc,
    },
    Switch {
        prev_pid: Loc,
        prev_state: Loc,
        prev_comm: Loc,
        next_pid: Loc,
        next_comm: Loc,
    },
    Nmi {
        handler: Loc,
        delta: Loc,
    },
    SysEnter(Loc),
    SysExit(Loc),
    Fault {
        user: bool,
        address: Loc,
    },
    IpiCpu {
        cpu: Loc,
        callsite: Loc,
        callback: Loc,
    },
    IpiMask {
        mask: Loc,
        callsite: Loc,
        callback: Loc,
    },
    Queue {
        work: Loc,
        function: Loc,
        cpu: Loc,
    },
    Wakeup {
        pid: Loc,
        comm: Loc,
        target: Loc,
    },
    Fork {
        parent: Loc,
        child: Loc,
    },
    Rename {
        /// Absent on kernels where the event is always about the current task.
        pid: Option<Loc>,
        comm: Loc,
    },
    Stack {
        size: Loc,
        caller: Loc,
    },
}

/// The events this kernel has, bound to their formats.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    by_id: Vec<Option<Binding>>,
    pid: Option<Loc>,
    flags: Option<Loc>,
    pub(crate) vectors: Vec<VectorInfo>,
    /// Every bound format (what a recording copies).
    pub formats: Vec<EventFormat>,
    /// The events to enable: `(system, name, side)`.
    pub(crate) enabled: Vec<(String, String, Side)>,
    /// Wanted events this kernel does not have (`ipi:ipi_send_cpu` before 6.4 ...).
    pub missing: Vec<String>,
}

fn need<'f>(f: &'f EventFormat, name: &str) -> Result<&'f Field, TraceError> {
    f.field(name).ok_or_else(|| {
        TraceError::Format(crate::tracefs::FormatError {
            what: f.full_name(),
            reason: format!("no field `{name}`"),
        })
    })
}

/// What a missing event costs the report, said once at the start of a watch.
fn missing_meaning(event: &str) -> &'static str {
    match event {
        "ipi:ipi_send_cpu" | "ipi:ipi_send_cpumask" => {
            "IPIs are counted and timed, but who sent them is not named (each says so)"
        }
        "csd:csd_function_entry" => {
            "a call-function IPI is named by its sender's callsite, not by the function it ran"
        }
        "workqueue:workqueue_queue_work" => "work items run but who queued them is not named",
        "sched:sched_wakeup" => "tasks run but who woke them is not named",
        "sched:sched_process_fork" => {
            "threads the workload creates on a watched CPU count as interruptions"
        }
        "timer:tick_stop" => "the tick's stop and its kept dependencies are not reported",
        _ => "interruptions it would explain are reported without that detail",
    }
}

impl Schema {
    /// Whether the kernel names IPI senders (`ipi:ipi_send_cpu`, 6.4+).
    pub(crate) fn has_ipi_senders(&self) -> bool {
        !self.missing.iter().any(|m| m.starts_with("ipi:ipi_send"))
    }

    /// One line per consequence of the events this kernel lacks.
    pub fn missing_notices(&self) -> Vec<String> {
        let mut out: Vec<(Vec<&str>, &str)> = Vec::new();
        for m in &self.missing {
            let meaning = missing_meaning(m);
            match out.iter_mut().find(|(_, w)| *w == meaning) {
                Some((names, _)) => names.push(m),
                None => out.push((vec![m], meaning)),
            }
        }
        out.into_iter()
            .map(|(names, meaning)| {
                let s = if names.len() > 1 { "s" } else { "" };
                format!(
                    "this kernel has no {} event{s}: {meaning}",
                    names.join(", ")
                )
            })
            .collect()
    }

    /// Read the formats of every wanted event from `tracefs`.
    pub fn bind(tracefs: &Tracefs, syscalls: bool, faults: bool) -> Result<Schema, TraceError> {
        let mut s = Schema::default();
        for name in tracefs.events_of("irq_vectors") {
            let Some(base) = name.strip_suffix("_entry") else {
                continue;
            };
            if base.starts_with("vector") {
                continue;
            }
            let Some(entry) = tracefs.format("irq_vectors", &name)? else {
                continue;
            };
            let Some(exit) = tracefs.format("irq_vectors", &format!("{base}_exit"))? else {
                continue;
            };
            let v = s.vectors.len() as u16;
            s.vectors.push(classify_vector(base));
            s.add(entry, Binding::VecEntry(v), Side::Target);
            s.add(exit, Binding::VecExit(v), Side::Target);
        }
        for &(sys, name, side) in EVENTS {
            if (sys == "raw_syscalls" && !syscalls) || (sys == "exceptions" && !faults) {
                continue;
            }
            let Some(f) = tracefs.format(sys, name)? else {
                s.missing.push(format!("{sys}:{name}"));
                continue;
            };
            let l = |n: &str| need(&f, n).map(Loc::from);
            let b = match name {
                "irq_handler_entry" => Binding::IrqEntry {
                    irq: l("irq")?,
                    name: l("name")?,
                },
                "irq_handler_exit" => Binding::IrqExit { irq: l("irq")? },
                "softirq_entry" => Binding::SoftirqEntry(l("vec")?),
                "softirq_exit" => Binding::SoftirqExit(l("vec")?),
                "hrtimer_expire_entry" => Binding::Hrtimer(l("function")?),
                "timer_expire_entry" => Binding::Timer(l("function")?),
                "csd_function_entry" => Binding::Csd(l("func")?),
                "tick_stop" => Binding::TickStop {
                    success: l("success")?,
                    dependency: l("dependency")?,
                },
                "workqueue_execute_start" => Binding::WorkStart {
                    work: l("work")?,
                    function: l("function")?,
                },
                // Filtered by its function: without one (older kernels) it is not used.
                "workqueue_execute_end" if f.field("function").is_some() => {
                    Binding::WorkEnd { work: l("work")? }
                }
                "workqueue_execute_end" => {
                    s.missing.push(format!("{sys}:{name} (function field)"));
                    continue;
                }
                "sched_switch" => Binding::Switch {
                    prev_pid: l("prev_pid")?,
                    prev_state: l("prev_state")?,
                    prev_comm: l("prev_comm")?,
                    next_pid: l("next_pid")?,
                    next_comm: l("next_comm")?,
                },
                "nmi_handler" => Binding::Nmi {
                    handler: l("handler")?,
                    delta: l("delta_ns")?,
                },
                "sys_enter" => Binding::SysEnter(l("id")?),
                "sys_exit" => Binding::SysExit(l("id")?),
                "page_fault_user" | "page_fault_kernel" => Binding::Fault {
                    user: name == "page_fault_user",
                    address: l("address")?,
                },
                "ipi_send_cpu" => Binding::IpiCpu {
                    cpu: l("cpu")?,
                    callsite: l("callsite")?,
                    callback: l("callback")?,
                },
                "ipi_send_cpumask" => Binding::IpiMask {
                    mask: l("cpumask")?,
                    callsite: l("callsite")?,
                    callback: l("callback")?,
                },
                "workqueue_queue_work" => Binding::Queue {
                    work: l("work")?,
                    function: l("function")?,
                    cpu: l("cpu")?,
                },
                "sched_process_fork" => Binding::Fork {
                    parent: l("parent_pid")?,
                    child: l("child_pid")?,
                },
                "task_rename" => Binding::Rename {
                    pid: f.field("pid").map(Loc::from),
                    comm: l("newcomm")?,
                },
                "sched_wakeup" => Binding::Wakeup {
                    pid: l("pid")?,
                    comm: l("comm")?,
                    target: l("target_cpu")?,
                },
                _ => continue,
            };
            s.add(f, b, side);
        }
        if s.enabled.is_empty() {
            return Err(TraceError::NoEvents(tracefs.mount().to_string()));
        }
        if let Some(f) = tracefs.format("ftrace", "kernel_stack")? {
            let b = Binding::Stack {
                size: need(&f, "size")?.into(),
                caller: need(&f, "caller")?.into(),
            };
            s.add(f, b, Side::Internal);
        }
        Ok(s)
    }

    fn add(&mut self, f: EventFormat, b: Binding, side: Side) {
        if self.pid.is_none() {
            self.pid = f.field("common_pid").map(Loc::from);
            self.flags = f.field("common_flags").map(Loc::from);
        }
        let id = f.id as usize;
        if self.by_id.len() <= id {
            self.by_id.resize(id + 1, None);
        }
        self.by_id[id] = Some(b);
        if side != Side::Internal {
            self.enabled.push((f.system.clone(), f.name.clone(), side));
        }
        self.formats.push(f);
    }

    /// Decode one record; None for events this schema does not know or malformed ones.
    pub(crate) fn decode(&self, cpu: u32, raw: &RawEvent<'_>) -> Option<Event> {
        let id = raw.type_id()? as usize;
        let b = self.by_id.get(id)?.as_ref()?;
        let p = raw.payload;
        let pid = self.pid.and_then(|l| int(p, l)).unwrap_or(-1) as i32;
        let flags = self.flags.and_then(|l| int(p, l)).unwrap_or(0) as u8;
        let what = match b {
            Binding::VecEntry(v) => What::VecEntry(*v),
            Binding::VecExit(v) => What::VecExit(*v),
            Binding::IrqEntry { irq, name } => What::IrqEntry {
                irq: int(p, *irq)? as u32,
                name: string(p, *name).unwrap_or_default(),
            },
            Binding::IrqExit { irq } => What::IrqExit {
                irq: int(p, *irq)? as u32,
            },
            Binding::SoftirqEntry(v) => What::SoftirqEntry(int(p, *v)? as u32),
            Binding::SoftirqExit(v) => What::SoftirqExit(int(p, *v)? as u32),
            Binding::Hrtimer(f) => What::Hrtimer(int(p, *f)? as u64),
            Binding::Timer(f) => What::Timer(int(p, *f)? as u64),
            Binding::Csd(f) => What::Csd(int(p, *f)? as u64),
            Binding::TickStop {
                success,
                dependency,
            } => What::TickStop {
                success: int(p, *success)? != 0,
                dependency: int(p, *dependency)?,
            },
            Binding::WorkStart { work, function } => What::WorkStart {
                work: int(p, *work)? as u64,
                function: int(p, *function)? as u64,
            },
            Binding::WorkEnd { work } => What::WorkEnd {
                work: int(p, *work)? as u64,
            },
            Binding::Switch {
                prev_pid,
                prev_state,
                prev_comm,
                next_pid,
                next_comm,
            } => What::Switch {
                prev_pid: int(p, *prev_pid)? as i32,
                prev_state: int(p, *prev_state)?,
                prev_comm: comm(p, *prev_comm)?,
                next_pid: int(p, *next_pid)? as i32,
                next_comm: comm(p, *next_comm)?,
            },
            Binding::Nmi { handler, delta } => What::Nmi {
                handler: int(p, *handler)? as u64,
                delta_ns: int(p, *delta)?,
            },
            Binding::SysEnter(id) => What::SysEnter(int(p, *id)?),
            Binding::SysExit(id) => What::SysExit(int(p, *id)?),
            Binding::Fault { user, address } => What::Fault {
                user: *user,
                address: int(p, *address)? as u64,
            },
            Binding::IpiCpu {
                cpu,
                callsite,
                callback,
            } => What::IpiCpu {
                target: int(p, *cpu)? as u32,
                callsite: int(p, *callsite)? as u64,
                callback: int(p, *callback)? as u64,
            },
            Binding::IpiMask {
                mask,
                callsite,
                callback,
            } => What::IpiMask {
                targets: cpumask(p, *mask)?,
                callsite: int(p, *callsite)? as u64,
                callback: int(p, *callback)? as u64,
            },
            Binding::Queue {
                work,
                function,
                cpu,
            } => What::Queue {
                work: int(p, *work)? as u64,
                function: int(p, *function)? as u64,
                cpu: int(p, *cpu)? as i32,
            },
            Binding::Wakeup {
                pid,
                comm: c,
                target,
            } => What::Wakeup {
                pid: int(p, *pid)? as i32,
                comm: comm(p, *c)?,
                target_cpu: int(p, *target)? as i32,
            },
            Binding::Fork { parent, child } => What::Fork {
                parent: int(p, *parent)? as i32,
                child: int(p, *child)? as i32,
            },
            Binding::Rename { pid, comm: c } => What::Rename {
                pid: match pid {
                    Some(l) => int(p, *l)? as i32,
                    None => int(p, self.pid?)? as i32,
                },
                comm: comm(p, *c)?,
            },
            Binding::Stack { size, caller } => {
                let n = int(p, *size)?.max(0) as usize;
                let mut v = Vec::with_capacity(n.min(64));
                for i in 0..n.min(128) {
                    match p.get(caller.offset + 8 * i..caller.offset + 8 * i + 8) {
                        Some(b) => v.push(u64::from_le_bytes(b.try_into().ok()?)),
                        None => break,
                    }
                }
                What::Stack(v)
            }
        };
        Some(Event {
            ts: raw.ts,
            cpu,
            pid,
            flags,
            what,
        })
    }
}

/// An integer field, sign-extended when the format says it is signed.
fn int(p: &[u8], l: Loc) -> Option<i64> {
    let b = p.get(l.offset..l.offset.checked_add(l.size)?)?;
    Some(match l.size {
        1 if l.signed => b[0] as i8 as i64,
        1 => b[0] as i64,
        2 if l.signed => i16::from_le_bytes(b.try_into().ok()?) as i64,
        2 => u16::from_le_bytes(b.try_into().ok()?) as i64,
        4 if l.signed => i32::from_le_bytes(b.try_into().ok()?) as i64,
        4 => u32::from_le_bytes(b.try_into().ok()?) as i64,
        8 => i64::from_le_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

/// The bytes of a `__data_loc` / `__rel_loc` field.
fn dynamic(p: &[u8], l: Loc) -> Option<&[u8]> {
    let word = int(
        p,
        Loc {
            size: 4,
            signed: false,
            ..l
        },
    )? as u32;
    let (mut off, len) = ((word & 0xffff) as usize, (word >> 16) as usize);
    if l.dynamic == Some(DynamicKind::RelLoc) {
        off += l.offset + 4;
    }
    p.get(off..off.checked_add(len)?)
}

fn string(p: &[u8], l: Loc) -> Option<String> {
    let b = if l.dynamic.is_some() {
        dynamic(p, l)?
    } else {
        p.get(l.offset..l.offset + l.size)?
    };
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    Some(String::from_utf8_lossy(&b[..end]).into_owned())
}

fn comm(p: &[u8], l: Loc) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let b = p.get(l.offset..l.offset + l.size.min(16))?;
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// A `cpumask_t` stored as a dynamic array of unsigned longs.
fn cpumask(p: &[u8], l: Loc) -> Option<CpuSet> {
    let b = if l.dynamic.is_some() {
        dynamic(p, l)?
    } else {
        p.get(l.offset..l.offset + l.size)?
    };
    let mut set = CpuSet::new();
    for (w, chunk) in b.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let mut bits = u64::from_le_bytes(word);
        while bits != 0 {
            let bit = bits.trailing_zeros();
            set.insert(w as u32 * 64 + bit);
            bits &= bits - 1;
        }
    }
    Some(set)
}

/// A comm from a fixed 16-byte field.
pub(crate) fn comm_str(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(16);
    String::from_utf8_lossy(&c[..end]).into_owned()
}

/// The filter that keeps an event to the watched CPUs, or None when not needed. An event
/// in [`FOLLOWED`] is also kept wherever it carries that function (`address` gives a
/// function's address, when kallsyms shows it).
pub(crate) fn filter_for(
    event: &str,
    side: Side,
    cpus: &CpuSet,
    address: impl Fn(&str) -> Option<u64>,
) -> Option<String> {
    let any = |field: &str| {
        cpus.iter()
            .map(|c| format!("{field} == {c}"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let followed = FOLLOWED
        .iter()
        .find(|(e, _)| *e == event)
        .and_then(|(_, f)| address(f))
        .map(|a| format!("function == {a:#x}"));
    let watched = match side {
        Side::Target => Some(any("CPU")),
        Side::Sender("cpumask") => Some(format!("cpumask & CPUS{{{}}}", cpus.to_list())),
        Side::Sender(field) => Some(any(field)),
        Side::Proxy => return followed,
        Side::Internal | Side::Anywhere => return None,
    };
    match (watched, followed) {
        (Some(w), Some(f)) => Some(format!("{w} || {f}")),
        (w, _) => w,
    }
}

#[cfg(test)]
mod tests;
