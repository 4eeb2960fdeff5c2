//! Unit tier for the watch engine: recordings of real kernels (this host's 6.18 and the
//! lab's 6.12, committed under tests/fixtures/trace-*) decode into the interruptions that
//! were provoked while they were recorded; corrupt pages give errors, never panics.

use std::path::{Path, PathBuf};

use isol::interrupt::{Kind, Record};
use isol::tracefs::record::Recorded;
use isol::tracefs::ring::Page;
use isol::tracefs::Tracefs;
use isol::watch;
use isol_lab::expect::{assert_provocations_named, interruptions};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn provoke(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("provoke.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

const FIXTURES: [&str; 2] = ["trace-host-6.18", "trace-lab-6.12"];

#[test]
fn every_recorded_page_decodes_in_time_order() {
    for name in FIXTURES {
        let dir = fixture(name);
        let rec = Recorded::open(&dir).unwrap();
        let layout = Tracefs::locate(&rec.root).unwrap().page_layout().unwrap();
        for &cpu in &rec.manifest.traced_cpus {
            let mut bytes = Vec::new();
            if let Some(mut f) = rec.pages_file(cpu).unwrap() {
                std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
            }
            assert_eq!(bytes.len() % layout.page_size, 0, "{name} cpu{cpu}");
            let mut last = 0;
            let mut n = 0;
            for page in bytes.chunks(layout.page_size) {
                let p = Page::parse(&layout, page).unwrap();
                for e in p.events() {
                    let e = e.unwrap_or_else(|e| panic!("{name} cpu{cpu}: {e}"));
                    assert!(e.ts >= last, "{name} cpu{cpu}: time goes back");
                    assert!(e.ts >= rec.manifest.start_ns && e.ts <= rec.manifest.end_ns);
                    last = e.ts;
                    n += 1;
                }
            }
            assert!(n > 0, "{name} cpu{cpu}: no events");
        }
    }
}

#[test]
fn host_recording_names_every_provocation() {
    let dir = fixture("trace-host-6.18");
    let r = watch::replay(&dir, None).unwrap();
    assert!(r.records.iter().all(|r| !matches!(r, Record::Lost { .. })));
    assert_provocations_named(&r.records, &provoke(&dir));
    // HZ=250 and a tick that never stops: about 250 ticks per second of recording.
    let secs = (r.manifest.end_ns - r.manifest.start_ns) as f64 / 1e9;
    let ticks = interruptions(&r.records)
        .iter()
        .filter(|i| i.kind == Kind::LocalTimer && i.culprit() == "tick_nohz_handler")
        .count() as f64;
    assert!(
        (ticks / secs - 250.0).abs() < 40.0,
        "{ticks} ticks in {secs:.2} s"
    );
}

#[test]
fn lab_recording_names_every_provocation_and_the_tick_dependency() {
    let dir = fixture("trace-lab-6.12");
    let r = watch::replay(&dir, None).unwrap();
    assert_provocations_named(&r.records, &provoke(&dir));
    // The resident is SCHED_OTHER: the nohz_full tick is kept by the SCHED dependency
    // whenever a second task is runnable.
    assert!(r.records.iter().any(|r| matches!(
        r,
        Record::TickStop { success: false, dependency, .. } if dependency == "SCHED"
    )));
    // Recorded with --stack: the IPI senders carry their kernel stacks.
    let stacks = interruptions(&r.records)
        .iter()
        .flat_map(|i| &i.senders)
        .filter(|s| !s.stack.is_empty())
        .count();
    assert!(stacks > 0, "no sender stack in a --stack recording");
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn corrupt_recordings_give_lost_records_not_panics(
        flips in proptest::collection::vec((0usize..135_168, any::<u8>()), 1..64),
        truncate in proptest::option::of(0usize..135_168),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&fixture("trace-host-6.18"), tmp.path());
        let raw = tmp.path().join("sys/kernel/tracing/per_cpu/cpu1/trace_pipe_raw");
        let mut bytes = std::fs::read(&raw).unwrap();
        for (at, v) in flips {
            let at = at % bytes.len();
            bytes[at] = v;
        }
        if let Some(t) = truncate {
            bytes.truncate(t);
        }
        std::fs::write(&raw, &bytes).unwrap();
        // Either a clean decode or Lost records naming what was undecodable; never a panic.
        let r = watch::replay(tmp.path(), None).unwrap();
        for rec in &r.records {
            if let Record::Interruption(i) = rec {
                prop_assert_eq!(i.cpu, 1);
            }
        }
    }
}

#[test]
fn a_kernel_without_ipi_events_still_decodes_and_says_what_is_missing() {
    // Debian's 6.1 kernels (and anything before 6.4) have no ipi_send_cpu/cpumask.
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture("trace-host-6.18"), tmp.path());
    std::fs::remove_dir_all(tmp.path().join("sys/kernel/tracing/events/ipi")).unwrap();
    let rec = isol::tracefs::record::Recorded::open(tmp.path()).unwrap();
    let missing = watch::missing_events(&rec).unwrap();
    assert!(
        missing
            .iter()
            .any(|m| m.contains("ipi:ipi_send_cpu") && m.contains("ipi:ipi_send_cpumask")),
        "{missing:?}"
    );
    let r = watch::replay(tmp.path(), None).unwrap();
    let ipis: Vec<_> = interruptions(&r.records)
        .into_iter()
        .filter(|i| i.kind == Kind::Ipi)
        .collect();
    assert!(!ipis.is_empty(), "IPIs are still seen on the target");
    assert!(
        ipis.iter().all(|i| i.senders.is_empty()),
        "no sender without the send events"
    );
}
