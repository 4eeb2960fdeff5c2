//! The state machine on hand-built event sequences.

use super::super::decode::VectorInfo;
use super::*;

const TIMER_FN: u64 = 0xffff_ffff_8100_1000;
const MEMBARRIER: u64 = 0xffff_ffff_8100_2000;
const GENERIC: u64 = 0xffff_ffff_8100_3000;

fn machine() -> Machine {
    let symbols = Symbols::parse(
        "ffffffff81001000 t tick_nohz_handler\n\
         ffffffff81002000 t membarrier_private_expedited\n\
         ffffffff81003000 t generic_smp_call_function_single_interrupt\n\
         ffffffff81004000 t vmstat_update\n",
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
        Box::new(|pid| Some(format!("task{pid}"))),
    )
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
    m.feed(ev(
        500,
        0,
        4242,
        What::IpiCpu {
            target: 1,
            callsite: MEMBARRIER + 0x40,
            callback: GENERIC,
        },
    ));
    // An IPI to an unwatched CPU is ignored.
    m.feed(ev(
        600,
        0,
        4242,
        What::IpiCpu {
            target: 0,
            callsite: MEMBARRIER,
            callback: GENERIC,
        },
    ));
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
    let switch = |ts, prev: i32, prev_state: i64, next: i32| {
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
    };
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
