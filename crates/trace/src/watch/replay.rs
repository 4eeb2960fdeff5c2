//! Recordings read back: decoded as a stream, one page per CPU in memory at a time, merged
//! across CPUs by the pages' timestamps, every record handed on as it completes.

use std::path::Path;

use super::decode::Schema;
use super::tasks::RecordedTasks;
use super::{new_machine, Decoder, Stats};
use crate::interrupt::Record;
use crate::symbols::Symbols;
use crate::tracefs::record::{Recorded, TraceManifest};
use crate::tracefs::ring::Page;
use crate::tracefs::{TraceError, Tracefs};
use crate::CpuSet;

/// The result of decoding a recording.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The recording.
    pub manifest: TraceManifest,
    /// What happened, in time order per CPU.
    pub records: Vec<Record>,
    /// What was read.
    pub stats: Stats,
}

/// What a streamed replay reports besides its records.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The recording.
    pub manifest: TraceManifest,
    /// What was read.
    pub stats: Stats,
}

/// Decode a recording made with [`WatchOptions::record`](super::WatchOptions::record), all records at once. `cpus`
/// overrides the watched CPUs stored in it.
pub fn replay(dir: &Path, cpus: Option<&CpuSet>) -> Result<Replay, TraceError> {
    let mut records = Vec::new();
    let r = replay_each(dir, cpus, |batch| records.extend(batch))?;
    Ok(Replay {
        manifest: r.manifest,
        records,
        stats: r.stats,
    })
}

/// One CPU's recorded pages, read a page at a time.
struct PageSource {
    cpu: u32,
    file: std::io::BufReader<std::fs::File>,
    page: Vec<u8>,
    /// The timestamp of `page`, None when the file is exhausted.
    next_ts: Option<u64>,
}

impl PageSource {
    fn advance(&mut self) -> Result<(), TraceError> {
        use std::io::Read;
        self.next_ts = None;
        let mut got = 0;
        while got < self.page.len() {
            match self.file.read(&mut self.page[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TraceError::Recording(format!("cpu{}: {e}", self.cpu))),
            }
        }
        if got == self.page.len() {
            let ts = u64::from_le_bytes(self.page[..8].try_into().expect("8 bytes"));
            self.next_ts = Some(ts);
        }
        Ok(())
    }
}

/// Decode a recording as a stream: pages are read one at a time, merged across CPUs by
/// their timestamps, and `sink` receives the records as they complete, so memory stays
/// flat whatever the recording's size. The recording is untrusted input: read by the
/// rules of [`crate::confine`], with events stamped outside its time span dropped and
/// reported as lost.
pub fn replay_each(
    dir: &Path,
    cpus: Option<&CpuSet>,
    sink: impl FnMut(Vec<Record>),
) -> Result<Replayed, TraceError> {
    replay_recorded(Recorded::open(dir)?, cpus, sink)
}

/// What the recording's kernel lacks, one line per consequence (`this kernel has no
/// ipi:ipi_send_cpu, ipi:ipi_send_cpumask events: ...`), as a live watch says at its
/// start.
pub fn missing_events(rec: &Recorded) -> Result<Vec<String>, TraceError> {
    let tracefs = Tracefs::locate(&rec.root)?;
    Ok(Schema::bind(&tracefs, true, true)?.missing_notices())
}

/// [`replay_each`] of a recording already opened (and so already checked).
pub fn replay_recorded(
    rec: Recorded,
    cpus: Option<&CpuSet>,
    mut sink: impl FnMut(Vec<Record>),
) -> Result<Replayed, TraceError> {
    let tracefs = Tracefs::locate(&rec.root)?;
    let layout = tracefs.page_layout()?;
    let schema = Schema::bind(&tracefs, true, true)?;
    let targets = match cpus {
        Some(c) => c.clone(),
        None => CpuSet::parse_list(&rec.manifest.cpus)
            .map_err(|e| TraceError::Recording(format!("manifest cpus: {e}")))?,
    };
    let mut machine = new_machine(
        targets,
        Symbols::load(&rec.root),
        &schema,
        &rec.manifest.residents,
        Box::new(RecordedTasks {
            comms: rec.manifest.comms.clone(),
            pinned: rec.manifest.pinned.iter().copied().collect(),
            places: rec.manifest.places.clone(),
        }),
    );
    if !rec.manifest.stacks {
        machine.without_stacks();
    }
    // Events may precede the recorded start by the time it took to switch tracing on.
    const SLACK_NS: u64 = 1_000_000_000;
    let mut d = Decoder {
        window: Some((
            rec.manifest.start_ns.saturating_sub(SLACK_NS),
            rec.manifest.end_ns.saturating_add(SLACK_NS),
        )),
        ..Decoder::new(schema, layout)
    };
    let mut sources = Vec::new();
    for &cpu in &rec.manifest.traced_cpus {
        if let Some(file) = rec.pages_file(cpu)? {
            let mut src = PageSource {
                cpu,
                file: std::io::BufReader::with_capacity(64 << 10, file),
                page: vec![0; layout.page_size],
                next_ts: None,
            };
            src.advance()?;
            sources.push(src);
        }
    }
    while let Some(i) = (0..sources.len())
        .filter(|&i| sources[i].next_ts.is_some())
        .min_by_key(|&i| sources[i].next_ts)
    {
        let src = &mut sources[i];
        d.ingest(src.cpu, &src.page);
        src.advance()?;
        // Every event still unread is at or after the earliest next page.
        if let Some(horizon) = sources.iter().filter_map(|s| s.next_ts).min() {
            d.drain(&mut machine, horizon.saturating_sub(1));
            let batch = machine.take();
            if !batch.is_empty() {
                sink(batch);
            }
        }
    }
    d.drain(&mut machine, u64::MAX);
    machine.finish(rec.manifest.end_ns);
    sink(machine.take());
    Ok(Replayed {
        manifest: rec.manifest,
        stats: d.stats,
    })
}

/// Decode `pages` (concatenated pages of one CPU) `rounds` times without interpreting
/// them: the decoder's raw speed, for benchmarks. Returns events decoded.
pub fn decode_only(dir: &Path, rounds: usize) -> Result<u64, TraceError> {
    let rec = Recorded::open(dir)?;
    let tracefs = Tracefs::locate(&rec.root)?;
    let layout = tracefs.page_layout()?;
    let schema = Schema::bind(&tracefs, true, true)?;
    let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
    for &c in &rec.manifest.traced_cpus {
        if let Some(f) = rec.pages_file(c)? {
            let bytes = crate::confine::read_capped(f, crate::confine::RECORDING_LIMITS.max_file)
                .map_err(|e| TraceError::Recording(format!("cpu{c}: {e}")))?;
            pages.push((c, bytes));
        }
    }
    let mut n = 0u64;
    for _ in 0..rounds {
        for (cpu, bytes) in &pages {
            for page in bytes.chunks(layout.page_size) {
                if let Ok(p) = Page::parse(&layout, page) {
                    for raw in p.events().flatten() {
                        if schema.decode(*cpu, &raw).is_some() {
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    Ok(n)
}
