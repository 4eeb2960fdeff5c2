//! The state machine on hand-built event sequences.

use super::super::decode::VectorInfo;
use super::*;

const TIMER_FN: u64 = 0xffff_ffff_8100_1000;
const MEMBARRIER: u64 = 0xffff_ffff_8100_2000;
const GENERIC: u64 = 0xffff_ffff_8100_3000;
const FLUSH: u64 = 0xffff_ffff_8100_5000;
const WORK_FOR_CPU: u64 = 0xffff_ffff_8100_6000;
const TIMER_WAKEUP: u64 = 0xffff_ffff_8100_7000;
const RAW_EVENT: u64 = 0xffff_ffff_8100_8000;
const WAKE_UP: u64 = 0xffff_ffff_8100_9000;
const VRING: u64 = 0xffff_ffff_8100_a000;
const HANDLE_EVENT: u64 = 0xffff_ffff_8100_b000;
const SEND_SIG: u64 = 0xffff_ffff_8100_c000;

fn machine() -> Machine {
    let symbols = Symbols::parse(
        "ffffffff81001000 t tick_nohz_handler\n\
         ffffffff81002000 t membarrier_private_expedited\n\
         ffffffff81003000 t generic_smp_call_function_single_interrupt\n\
         ffffffff81004000 t vmstat_update\n\
         ffffffff81005000 t flush_tlb_func\n\
         ffffffff81006000 t work_for_cpu_fn\n\
         ffffffff81007000 t hrtimer_wakeup\n\
         ffffffff81008000 t trace_event_raw_event_sched_wakeup_template\n\
         ffffffff81009000 t try_to_wake_up\n\
         ffffffff8100a000 t vring_interrupt\n\
         ffffffff8100b000 t __handle_irq_event_percpu\n\
         ffffffff8100c000 t send_signal_locked\n",
    );
    let vectors = vec![
        VectorInfo {
            name: "local_timer".into(),
            kind: Kind::LocalTimer,
            consumes: Consumes::Nothing,
        },
        VectorInfo {
            name: "call_function_single".into(),
            kind: Kind::Ipi,
            consumes: Consumes::Calls,
        },
    ];
    Machine::new(
        CpuSet::from_iter([1]),
        symbols,
        vectors,
        &[100],
        Box::new(Tasks {
            pinned: vec![300, 301],
        }),
    )
}

/// Tasks named `task<pid>`; those listed are pinned to the watched CPU.
struct Tasks {
    pinned: Vec<i32>,
}

impl TaskLookup for Tasks {
    fn comm(&self, pid: i32) -> Option<String> {
        Some(format!("task{pid}"))
    }

    fn placement(&self, pid: i32, _: &CpuSet) -> Option<Placement> {
        Some(if self.pinned.contains(&pid) {
            Placement::Pinned
        } else {
            Placement::Free
        })
    }

    /// Task 77 runs in `chronyd.service`, task 88 in pod ran/du-0's container l1.
    fn place(&self, pid: i32) -> Option<crate::interrupt::Place> {
        let path = match pid {
            77 => "/system.slice/chronyd.service".to_string(),
            88 => format!("/kubepods/pod1234/{}", "a".repeat(64)),
            _ => return None,
        };
        let mut p = crate::kernel::place::classify(&path);
        if let Some(pod) = &mut p.pod {
            pod.namespace = Some("ran".into());
            pod.name = Some("du-0".into());
        }
        if let Some(c) = &mut p.container {
            c.name = Some("l1".into());
        }
        Some(p)
    }
}

fn ev(ts: u64, cpu: u32, pid: i32, what: What) -> Event {
    Event {
        ts,
        cpu,
        pid,
        flags: 0,
        what,
    }
}

fn comm(s: &str) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

/// CPU 1 switches from `prev` (left in `prev_state`) to `next`; tasks are named
/// `task<pid>`.
fn switch(ts: u64, prev: i32, prev_state: i64, next: i32) -> Event {
    ev(
        ts,
        1,
        prev,
        What::Switch {
            prev_pid: prev,
            prev_state,
            prev_comm: comm(&format!("task{prev}")),
            next_pid: next,
            next_comm: comm(&format!("task{next}")),
        },
    )
}

/// `pid` on CPU 0 sends a function-call IPI to `target` from `callsite` (the generic
/// handler as callback, as `smp_call_function_single` reports it).
fn call_ipi(ts: u64, pid: i32, target: u32, callsite: u64) -> Event {
    ev(
        ts,
        0,
        pid,
        What::IpiCpu {
            target,
            callsite,
            callback: GENERIC,
        },
    )
}

/// `pid` runs on CPU 1 from `ts` for 100 ns, then blocks: its interruption.
fn run_briefly(m: &mut Machine, pid: i32, ts: u64) -> Interruption {
    m.feed(switch(ts, 0, 0, pid));
    m.feed(switch(ts + 100, pid, 1, 0));
    interruptions(m).pop().unwrap()
}

fn interruptions(m: &mut Machine) -> Vec<Interruption> {
    m.take()
        .into_iter()
        .filter_map(|r| match r {
            Record::Interruption(i) => Some(i),
            _ => None,
        })
        .collect()
}

#[test]
fn a_timer_interrupt_names_its_hrtimer() {
    let mut m = machine();
    m.feed(ev(1_000, 1, 100, What::VecEntry(0)));
    m.feed(ev(1_100, 1, 100, What::Hrtimer(TIMER_FN)));
    m.feed(ev(3_000, 1, 100, What::VecExit(0)));
    let i = interruptions(&mut m);
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].kind, Kind::LocalTimer);
    assert_eq!(i[0].culprit(), "tick_nohz_handler");
    assert_eq!((i[0].duration_ns, i[0].net_ns), (Some(2_000), Some(2_000)));
    assert!(i[0].complete);
}

#[test]
fn nested_time_is_subtracted_from_the_outer_interruption() {
    let mut m = machine();
    let switch = |ts, prev: i32, next: i32| {
        ev(
            ts,
            1,
            prev,
            What::Switch {
                prev_pid: prev,
                prev_state: 0,
                prev_comm: comm(&format!("task{prev}")),
                next_pid: next,
                next_comm: comm("kworker/1:1"),
            },
        )
    };
    // The resident (100) is preempted by a kworker, which is hit by a timer IRQ.
    m.feed(switch(10_000, 100, 33));
    m.feed(ev(
        11_000,
        1,
        33,
        What::WorkStart {
            work: 1,
            function: 0xffff_ffff_8100_4000,
        },
    ));
    m.feed(ev(12_000, 1, 33, What::VecEntry(0)));
    m.feed(ev(15_000, 1, 33, What::VecExit(0)));
    m.feed(ev(
        20_000,
        1,
        33,
        What::Switch {
            prev_pid: 33,
            prev_state: 0x80,
            prev_comm: comm("kworker/1:1"),
            next_pid: 100,
            next_comm: comm("task100"),
        },
    ));
    let i = interruptions(&mut m);
    assert_eq!(i.len(), 2);
    let task = i.iter().find(|i| i.kind == Kind::Task).unwrap();
    assert_eq!(task.source, "kworker/1:1");
    assert_eq!(task.number, Some(33));
    assert_eq!(task.functions, vec!["vmstat_update".to_string()]);
    assert_eq!(task.duration_ns, Some(10_000));
    assert_eq!(task.net_ns, Some(7_000));
    let irq = i.iter().find(|i| i.kind == Kind::LocalTimer).unwrap();
    assert_eq!(irq.depth, 1);
    assert_eq!(task.depth, 0);
    // Sorted by start: the task began first.
    assert_eq!(i[0].kind, Kind::Task);
}

#[test]
fn an_ipi_is_matched_with_its_sender_on_another_cpu() {
    let mut m = machine();
    m.feed(call_ipi(500, 4242, 1, MEMBARRIER + 0x40));
    // An IPI to an unwatched CPU is ignored.
    m.feed(call_ipi(600, 4242, 0, MEMBARRIER));
    m.feed(ev(900, 1, 100, What::VecEntry(1)));
    m.feed(ev(1_300, 1, 100, What::VecExit(1)));
    let i = interruptions(&mut m);
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].kind, Kind::Ipi);
    assert_eq!(i[0].senders.len(), 1);
    let s = &i[0].senders[0];
    assert_eq!((s.cpu, s.pid, s.comm.as_str()), (0, 4242, "task4242"));
    assert_eq!(s.callsite.as_deref(), Some("membarrier_private_expedited"));
    // The generic handler is replaced by the callsite in the culprit.
    assert_eq!(
        i[0].culprit(),
        "call_function_single: membarrier_private_expedited"
    );
}

#[test]
fn exits_without_entries_are_ignored_and_open_frames_end_incomplete() {
    let mut m = machine();
    m.feed(ev(100, 1, 100, What::VecExit(0)));
    m.feed(ev(200, 1, 100, What::SoftirqEntry(1)));
    m.feed(ev(250, 1, 100, What::VecEntry(0)));
    // The softirq exits, but the timer exit was never seen.
    m.feed(ev(400, 1, 100, What::SoftirqExit(1)));
    m.feed(ev(500, 1, 100, What::VecEntry(0)));
    m.finish(900);
    let i = interruptions(&mut m);
    assert_eq!(i.len(), 3, "{i:?}");
    let soft = i.iter().find(|i| i.kind == Kind::Softirq).unwrap();
    assert!(soft.complete);
    assert_eq!(soft.source, "TIMER");
    assert_eq!(soft.net_ns, Some(200 - 150));
    assert!(i
        .iter()
        .filter(|i| i.kind == Kind::LocalTimer)
        .all(|i| !i.complete));
}

#[test]
fn lost_events_close_what_was_open_and_are_reported() {
    let mut m = machine();
    m.feed(ev(100, 1, 100, What::VecEntry(0)));
    m.lost(1, 300, Some(12), "ring buffer overflowed".into());
    let recs = m.take();
    assert!(matches!(&recs[0], Record::Interruption(i) if !i.complete));
    assert!(matches!(
        &recs[1],
        Record::Lost {
            events: Some(12),
            ..
        }
    ));
}

#[test]
fn syscalls_of_the_resident_count_but_not_those_of_an_interloper() {
    let mut m = machine();
    m.feed(ev(100, 1, 100, What::SysEnter(39)));
    m.feed(ev(400, 1, 100, What::SysExit(39)));
    m.feed(ev(
        500,
        1,
        100,
        What::Switch {
            prev_pid: 100,
            prev_state: 0,
            prev_comm: comm("task100"),
            next_pid: 7,
            next_comm: comm("intruder"),
        },
    ));
    m.feed(ev(600, 1, 7, What::SysEnter(0)));
    m.feed(ev(700, 1, 7, What::SysExit(0)));
    m.finish(800);
    let i = interruptions(&mut m);
    let sys: Vec<_> = i.iter().filter(|i| i.kind == Kind::Syscall).collect();
    assert_eq!(sys.len(), 1);
    assert_eq!(sys[0].source, "getpid");
    assert_eq!(sys[0].net_ns, Some(300));
    let task = i.iter().find(|i| i.kind == Kind::Task).unwrap();
    assert_eq!(task.source, "intruder");
    assert!(!task.complete, "still running when the watch ended");
}

/// A thread or child process the resident (100) creates is the CPU's workload too; a task
/// created by anyone else still interrupts.
#[test]
fn what_the_resident_creates_is_resident() {
    let mut m = machine();
    // 100 creates thread 101, which then runs on the CPU while 100 sleeps.
    m.feed(ev(
        1_000,
        1,
        100,
        What::Fork {
            parent: 100,
            child: 101,
        },
    ));
    m.feed(switch(2_000, 100, 1, 101));
    m.feed(switch(5_000, 101, 1, 100));
    // 200 (not resident) creates 201, which runs there: an interruption.
    m.feed(ev(
        6_000,
        1,
        200,
        What::Fork {
            parent: 200,
            child: 201,
        },
    ));
    m.feed(switch(7_000, 100, 1, 201));
    m.feed(switch(9_000, 201, 1, 100));
    let i = interruptions(&mut m);
    let tasks: Vec<String> = i.iter().map(|x| x.culprit()).collect();
    assert_eq!(i.len(), 1, "{tasks:?}");
    assert_eq!(i[0].kind, Kind::Task);
    assert_eq!(i[0].number, Some(201));
}

/// Watch first, application second: a user task pinned to the watched CPU (300) that
/// arrives after the watch started is the CPU's workload, not an interruption, and what
/// interrupts it is a top-level line. A free task (400) arriving the same way still
/// interrupts.
#[test]
fn a_pinned_task_arriving_after_the_watch_is_the_workload() {
    let mut m = machine();
    m.feed(switch(1_000, 0, 0, 300));
    m.feed(ev(2_000, 1, 300, What::VecEntry(0)));
    m.feed(ev(2_500, 1, 300, What::VecExit(0)));
    // It blocks, a free task runs, then the workload comes back.
    m.feed(switch(3_000, 300, 1, 400));
    m.feed(switch(4_000, 400, 1, 300));
    m.finish(10_000);
    assert_eq!(m.pinned(), vec![300], "the recording keeps what was pinned");
    // Where the workload is named, a pinned newcomer interrupts it.
    let mut named = machine();
    named.without_pinned_residents();
    named.feed(switch(1_000, 0, 0, 300));
    named.finish(2_000);
    let t = interruptions(&mut named);
    assert_eq!((t[0].kind, t[0].number), (Kind::Task, Some(300)));
    let i = interruptions(&mut m);
    assert_eq!(i.len(), 2, "{i:?}");
    assert_eq!(i[0].kind, Kind::LocalTimer);
    assert_eq!(
        i[0].depth, 0,
        "the tick interrupted the workload: a top-level line"
    );
    assert_eq!((i[1].kind, i[1].source.as_str()), (Kind::Task, "task400"));
    assert_eq!(i[1].duration_ns, Some(1_000));
}

/// Where the kernel traces the function a call-function IPI ran (`csd_function_entry`),
/// the line names it rather than the sender's callsite: a TLB flush and text patching sent
/// through the same `on_each_cpu_cond_mask` look different.
#[test]
fn a_function_call_names_the_function_that_ran() {
    let mut m = machine();
    m.feed(call_ipi(500, 4242, 1, MEMBARRIER));
    m.feed(ev(900, 1, 100, What::VecEntry(1)));
    m.feed(ev(950, 1, 100, What::Csd(FLUSH)));
    m.feed(ev(1_300, 1, 100, What::VecExit(1)));
    let i = interruptions(&mut m);
    assert_eq!(i[0].functions, vec!["flush_tlb_func".to_string()]);
    assert_eq!(i[0].culprit(), "call_function_single: flush_tlb_func");
    let s = &i[0].senders[0];
    assert_eq!(
        s.callsite.as_deref(),
        Some("membarrier_private_expedited"),
        "kept"
    );
}

/// An IPI with no send event says why: before the watch started, a kernel without the
/// events, or a sending CPU that was not tracing.
#[test]
fn an_ipi_without_a_sender_says_why() {
    let ipi = |m: &mut Machine, at: u64| {
        m.feed(ev(at, 1, 100, What::VecEntry(1)));
        m.feed(ev(at + 100, 1, 100, What::VecExit(1)));
        interruptions(m).pop().unwrap()
    };
    let mut m = machine();
    let first = ipi(&mut m, 1_000);
    assert_eq!(
        first.untraced.as_deref(),
        Some("sent before the watch started")
    );
    let later = ipi(&mut m, 50_000_000);
    assert!(later.untraced.unwrap().contains("not tracing"));
    let timer = {
        m.feed(ev(60_000_000, 1, 100, What::VecEntry(0)));
        m.feed(ev(60_000_100, 1, 100, What::VecExit(0)));
        interruptions(&mut m).pop().unwrap()
    };
    assert_eq!(timer.untraced, None, "a tick has no sender to miss");
    let mut old = machine();
    old.without_ipi_events();
    old.feed(ev(
        1,
        0,
        5,
        What::Fault {
            user: true,
            address: 0,
        },
    ));
    let i = ipi(&mut old, 50_000_000);
    assert!(i.untraced.unwrap().contains("no ipi_send_cpu"));
}

/// A resident's system call ends here when the resident leaves the CPU: a thread that
/// moves itself away inside `sched_setaffinity` (its exit is on another CPU) does not hide
/// every later interruption inside that call, and a call the resident blocks in goes on
/// when it runs again, with what ran meanwhile at the top level.
#[test]
fn a_system_call_ends_here_when_its_task_leaves_the_cpu() {
    let mut m = machine();
    // 300 (pinned here) moves itself away: preempted by the stopper, never back.
    m.feed(switch(100, 0, 0, 300));
    m.feed(ev(1_000, 1, 300, What::SysEnter(203)));
    m.feed(switch(2_000, 300, 0, 0));
    m.feed(ev(5_000, 1, 0, What::VecEntry(0)));
    m.feed(ev(5_100, 1, 0, What::VecExit(0)));
    // 100 blocks in futex; 400 runs; 100 comes back and the call returns.
    m.feed(switch(6_000, 0, 0, 100));
    m.feed(ev(7_000, 1, 100, What::SysEnter(202)));
    m.feed(switch(8_000, 100, 1, 400));
    m.feed(switch(9_000, 400, 1, 100));
    m.feed(ev(9_500, 1, 100, What::SysExit(202)));
    m.finish(20_000);
    let i = interruptions(&mut m);
    let brief: Vec<(Kind, &str, u32, Option<u64>)> = i
        .iter()
        .map(|i| (i.kind, i.source.as_str(), i.depth, i.duration_ns))
        .collect();
    assert_eq!(
        brief,
        vec![
            (Kind::Syscall, "sched_setaffinity", 0, Some(1_000)),
            (Kind::LocalTimer, "local_timer", 0, Some(100)),
            (Kind::Syscall, "futex", 0, Some(1_000)),
            (Kind::Task, "task400", 0, Some(1_000)),
            (Kind::Syscall, "futex", 0, Some(500)),
        ]
    );
}

/// CPU hotplug has a kworker on CPU 0 do its work (`work_on_cpu`): what that kworker
/// sends to the watched CPU names the task that queued the work, and only while the work
/// runs.
#[test]
fn a_kworker_working_for_another_task_names_it() {
    let mut m = machine();
    let wake = |ts| {
        ev(
            ts,
            0,
            600,
            What::Wakeup {
                pid: 28,
                comm: comm("migration/1"),
                target_cpu: 1,
            },
        )
    };
    m.feed(ev(
        1_000,
        0,
        500,
        What::Queue {
            work: 0xabc,
            function: WORK_FOR_CPU,
            cpu: 0,
        },
    ));
    m.feed(ev(
        2_000,
        0,
        600,
        What::WorkStart {
            work: 0xabc,
            function: WORK_FOR_CPU,
        },
    ));
    m.feed(wake(3_000));
    let i = run_briefly(&mut m, 28, 4_000);
    let b = i.senders[0].on_behalf.as_ref().expect("on behalf");
    assert_eq!((b.pid, b.comm.as_str(), b.cpu), (500, "task500", 0));
    assert_eq!(b.function, "work_for_cpu_fn");
    assert!(i.senders[0]
        .to_string()
        .ends_with("for task500/500 (work_for_cpu_fn)"));
    m.feed(ev(5_000, 0, 600, What::WorkEnd { work: 0xabc }));
    m.feed(wake(6_000));
    let i = run_briefly(&mut m, 28, 7_000);
    assert_eq!(i.senders[0].on_behalf, None, "the work had ended");
}

/// A task woken by its timer on another CPU names the timer (`hrtimer_wakeup`), not only
/// "irq over swapper"; a wakeup in an interrupt long after is not given that name.
#[test]
fn a_timer_wakeup_names_the_timer() {
    let mut m = machine();
    let wake = |ts| Event {
        ts,
        cpu: 0,
        pid: 0,
        flags: FLAG_HARDIRQ,
        what: What::Wakeup {
            pid: 77,
            comm: comm("sleeper"),
            target_cpu: 1,
        },
    };
    m.feed(ev(1_000, 0, 0, What::Hrtimer(TIMER_WAKEUP)));
    m.feed(wake(3_000));
    let i = run_briefly(&mut m, 77, 5_000);
    assert_eq!(i.senders[0].callsite.as_deref(), Some("hrtimer_wakeup"));
    assert!(i.senders[0]
        .to_string()
        .contains("irq (over swapper/0/0) in hrtimer_wakeup"));
    m.feed(wake(10_000_000));
    let i = run_briefly(&mut m, 77, 10_001_000);
    assert_eq!(i.senders[0].callsite, None);
}

/// A sender is named as it was when it sent: a shell's child that execs `kill` (or
/// busybox, renaming itself to its applet) is `kill`.
#[test]
fn an_exec_renames_the_sender() {
    let mut m = machine();
    m.feed(ev(
        100,
        0,
        500,
        What::Rename {
            pid: 500,
            comm: comm("kill"),
        },
    ));
    m.feed(call_ipi(500, 500, 1, MEMBARRIER));
    m.feed(ev(900, 1, 100, What::VecEntry(1)));
    m.feed(ev(1_000, 1, 100, What::VecExit(1)));
    let i = interruptions(&mut m);
    assert_eq!(i[0].senders[0].comm, "kill", "not the lookup's task500");
    assert_eq!(
        m.comms().get(&500).map(String::as_str),
        Some("kill"),
        "recorded"
    );
}

/// A pinned task arriving on a CPU its resident occupies interrupts the resident (a task
/// moved onto the isolated CPU); once the resident has exited, the next one is the
/// workload.
#[test]
fn a_pinned_newcomer_on_an_occupied_cpu_interrupts() {
    let mut m = machine();
    m.feed(switch(1_000, 0, 0, 100));
    m.feed(switch(2_000, 100, 0x100, 301));
    m.feed(switch(3_000, 301, 0x20, 100));
    let i = interruptions(&mut m);
    assert_eq!((i[0].kind, i[0].number), (Kind::Task, Some(301)), "{i:?}");
    // 100 exits; 300, pinned, arrives on the vacant CPU: the new workload.
    m.feed(switch(4_000, 100, 0x20, 0));
    m.feed(switch(5_000, 0, 0, 300));
    m.finish(6_000);
    assert!(interruptions(&mut m).is_empty());
}

/// A task woken from a device interrupt on another CPU names the handler it ran in, from
/// the stack its wakeup's trigger records; without `--stack` the stack itself is dropped.
/// A sender in a task has no handler, its stack kept with `--stack`.
#[test]
fn a_wakeup_from_a_device_interrupt_names_its_handler() {
    let wake = |ts, flags, pid| Event {
        ts,
        cpu: 0,
        pid,
        flags,
        what: What::Wakeup {
            pid: 77,
            comm: comm("reader"),
            target_cpu: 1,
        },
    };
    let stack = |ts, inner| {
        ev(
            ts,
            0,
            0,
            What::Stack(vec![RAW_EVENT, WAKE_UP, inner, HANDLE_EVENT]),
        )
    };
    for keep in [false, true] {
        let mut m = machine();
        if !keep {
            m.without_stacks();
        }
        m.feed(wake(1_000, FLAG_HARDIRQ, 0));
        m.feed(stack(1_001, VRING));
        let s = &run_briefly(&mut m, 77, 5_000).senders[0];
        assert_eq!(s.handler.as_deref(), Some("vring_interrupt"));
        assert!(
            s.to_string()
                .contains("woken by cpu0 irq vring_interrupt (over swapper/0/0)"),
            "{s}"
        );
        assert_eq!(s.stack.len(), if keep { 3 } else { 0 }, "{:?}", s.stack);

        m.feed(wake(10_000, 0, 42));
        m.feed(stack(10_001, SEND_SIG));
        let s = &run_briefly(&mut m, 77, 15_000).senders[0];
        assert_eq!(s.handler, None, "a task runs no handler");
        assert_eq!(s.to_string(), "woken by cpu0 task42/42");

        // A timer whose function ended in a tail call to the wakeup: no handler to name.
        m.feed(wake(20_000, FLAG_SOFTIRQ, 0));
        m.feed(ev(
            20_001,
            0,
            0,
            What::Stack(vec![RAW_EVENT, WAKE_UP, HANDLE_EVENT]),
        ));
        let s = &run_briefly(&mut m, 77, 25_000).senders[0];
        assert_eq!(s.handler, None, "{s}");
    }
}

#[test]
fn the_trigger_of_interrupt_senders_leaves_the_watched_cpus_alone() {
    let cpus = CpuSet::from_iter([1, 3]);
    assert_eq!(
        in_interrupt(Some("target_cpu == 1 || target_cpu == 3"), &cpus),
        "(target_cpu == 1 || target_cpu == 3) && common_flags & 24 && CPU != 1 && CPU != 3"
    );
    assert_eq!(
        in_interrupt(None, &cpus),
        "common_flags & 24 && CPU != 1 && CPU != 3"
    );
}

/// The task that interrupts and the task that woke it each say where they live: a unit,
/// a pod's container.
#[test]
fn tasks_and_senders_carry_their_place() {
    let mut m = machine();
    m.feed(ev(
        1_000,
        0,
        88,
        What::Wakeup {
            pid: 77,
            comm: comm("chronyd"),
            target_cpu: 1,
        },
    ));
    let i = run_briefly(&mut m, 77, 5_000);
    assert_eq!(
        i.place.as_ref().and_then(|p| p.unit.as_deref()),
        Some("chronyd.service")
    );
    assert!(
        i.culprit().ends_with(" [chronyd.service]"),
        "{}",
        i.culprit()
    );
    let s = &i.senders[0];
    assert_eq!(s.place.as_ref().unwrap().tag(), "[ran/du-0 l1]");
    assert!(s.to_string().contains("/88 [ran/du-0 l1]"), "{s}");
    assert!(m.places().any(|(pid, p)| pid == 88 && p.pod.is_some()));
}

/// Tasks whose cgroups the test changes as it goes.
struct Moving(std::sync::Arc<std::sync::Mutex<HashMap<i32, String>>>);

impl TaskLookup for Moving {
    fn comm(&self, pid: i32) -> Option<String> {
        Some(format!("task{pid}"))
    }

    fn placement(&self, _: i32, _: &CpuSet) -> Option<Placement> {
        Some(Placement::Free)
    }

    fn place(&self, pid: i32) -> Option<crate::interrupt::Place> {
        let path = self.0.lock().unwrap().get(&pid)?.clone();
        Some(crate::kernel::place::classify(&path)).filter(|p| !p.is_empty())
    }
}

/// A container's first process runs before its runtime moves it into the container's
/// cgroup: it is named by the container once it has moved (within a second), and keeps
/// that name once it has exited.
#[test]
fn a_task_that_moves_is_named_where_it_went_and_keeps_it_when_gone() {
    let cgroups = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut m = Machine::new(
        CpuSet::from_iter([1]),
        Symbols::default(),
        Vec::new(),
        &[100],
        Box::new(Moving(cgroups.clone())),
    );
    cgroups.lock().unwrap().insert(55, "/".to_string());
    assert!(run_briefly(&mut m, 55, 1_000).place.is_none());
    let pod = format!("/kubepods/burstable/pod1234/{}", "b".repeat(64));
    cgroups.lock().unwrap().insert(55, pod);
    // Asked again only after a second.
    assert!(run_briefly(&mut m, 55, 500_000_000).place.is_none());
    let named = run_briefly(&mut m, 55, 1_000_002_000);
    assert_eq!(named.place.unwrap().pod.unwrap().uid, "1234");
    // Gone: /proc says nothing more, the place stays.
    cgroups.lock().unwrap().remove(&55);
    let later = run_briefly(&mut m, 55, 3_000_000_000);
    assert_eq!(later.place.unwrap().pod.unwrap().qos, "burstable");
    assert!(m.places().any(|(pid, p)| pid == 55 && p.pod.is_some()));
}
