//! Recordings: the raw ring-buffer pages of a watch, with the formats and symbols needed to
//! decode them elsewhere. A recording is a directory laid out like the live system, so the
//! same code reads it through a [`SysRoot`]:
//!
//! ```text
//! DIR/isol-trace.json                                   manifest (TraceManifest)
//! DIR/sys/kernel/tracing/events/header_page             page layout
//! DIR/sys/kernel/tracing/events/<system>/<event>/format every decoded event
//! DIR/sys/kernel/tracing/per_cpu/cpu<N>/trace_pipe_raw  the pages, concatenated
//! DIR/proc/kallsyms                                     the symbols the pages refer to
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::EventFormat;
use super::{TraceError, DEFAULT_MOUNT};
use crate::confine::{self, OutputDir, RECORDING_LIMITS};
use crate::SysRoot;

/// The manifest file of a recording.
pub const TRACE_MANIFEST: &str = "isol-trace.json";
/// The recording format.
pub const TRACE_FORMAT: &str = "isol.trace/v1";

/// The default of a flag older recordings lack.
fn yes() -> bool {
    true
}

/// What a recording holds besides its pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceManifest {
    /// `isol.trace/v1`.
    pub format: String,
    /// isol version that recorded.
    pub isol_version: String,
    /// Kernel release.
    pub kernel: String,
    /// The watched CPUs (`1,3`).
    pub cpus: String,
    /// CPUs whose buffers were recorded.
    pub traced_cpus: Vec<u32>,
    /// The trace clock.
    pub clock: String,
    /// Ring buffer page size.
    pub page_size: usize,
    /// Pages recorded per CPU.
    pub pages: BTreeMap<u32, usize>,
    /// Start (CLOCK_MONOTONIC ns).
    pub start_ns: u64,
    /// End (CLOCK_MONOTONIC ns).
    pub end_ns: u64,
    /// `pid -> comm` of tasks named in the pages, as seen while recording.
    pub comms: BTreeMap<i32, String>,
    /// `pid -> place` (unit, container, pod) of the tasks named, as seen while recording.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub places: BTreeMap<i32, crate::interrupt::Place>,
    /// Tasks that belonged on the watched CPUs (see `WatchOptions::residents`).
    #[serde(default)]
    pub residents: Vec<i32>,
    /// User tasks found pinned to the watched CPUs when they arrived there: workload too.
    #[serde(default)]
    pub pinned: Vec<i32>,
    /// Whether senders' whole kernel stacks were asked for (`--stack`); without it, only
    /// senders in interrupts have one, to name their handler. Recordings older than this
    /// field had stacks only with `--stack`.
    #[serde(default = "yes")]
    pub stacks: bool,
    /// A free-form note.
    pub note: String,
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> TraceError {
    TraceError::io(op, path, e)
}

/// Writes a recording as pages arrive, into a directory of its own (see
/// [`OutputDir`]: created by isol, or empty, owned by the caller and writable by nobody
/// else), creating every file with `O_EXCL | O_NOFOLLOW`.
#[derive(Debug)]
pub struct Recorder {
    dir: OutputDir,
    files: BTreeMap<u32, File>,
    pages: BTreeMap<u32, usize>,
}

impl Recorder {
    /// Start a recording in `dir`.
    pub fn create(dir: &Path) -> Result<Recorder, TraceError> {
        let dir = OutputDir::create(dir)
            .map_err(|e| TraceError::Recording(format!("--record {}: {e}", dir.display())))?;
        Ok(Recorder {
            dir,
            files: BTreeMap::new(),
            pages: BTreeMap::new(),
        })
    }

    fn create_file(&self, rel: &str) -> Result<File, TraceError> {
        self.dir
            .create_file(rel)
            .map_err(|e| io_err("create", &self.dir.path().join(rel), e))
    }

    /// Append one page of `cpu`.
    pub fn page(&mut self, cpu: u32, page: &[u8]) -> Result<(), TraceError> {
        if !self.files.contains_key(&cpu) {
            let rel = format!(
                "{}/per_cpu/cpu{cpu}/trace_pipe_raw",
                DEFAULT_MOUNT.trim_start_matches('/')
            );
            let f = self.create_file(&rel)?;
            self.files.insert(cpu, f);
        }
        let f = self.files.get_mut(&cpu).expect("file just created");
        f.write_all(page).map_err(|e| {
            io_err(
                "write",
                &self.dir.path().join(format!("per_cpu/cpu{cpu}")),
                e,
            )
        })?;
        *self.pages.entry(cpu).or_default() += 1;
        Ok(())
    }

    /// Write formats, symbols and the manifest.
    pub fn finish(
        mut self,
        header_page: &str,
        formats: &[EventFormat],
        format_text: impl Fn(&EventFormat) -> Option<String>,
        kallsyms: &str,
        mut manifest: TraceManifest,
    ) -> Result<PathBuf, TraceError> {
        for (cpu, f) in std::mem::take(&mut self.files) {
            f.sync_all().map_err(|e| {
                io_err(
                    "write",
                    &self.dir.path().join(format!("per_cpu/cpu{cpu}")),
                    e,
                )
            })?;
        }
        let t = DEFAULT_MOUNT.trim_start_matches('/');
        let write = |rel: String, text: &str| -> Result<(), TraceError> {
            let mut f = self.create_file(&rel)?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| io_err("write", &self.dir.path().join(&rel), e))
        };
        write(format!("{t}/events/header_page"), header_page)?;
        for f in formats {
            if let Some(text) = format_text(f) {
                write(format!("{t}/events/{}/{}/format", f.system, f.name), &text)?;
            }
        }
        write("proc/kallsyms".into(), kallsyms)?;
        manifest.pages = self.pages.clone();
        let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        write(TRACE_MANIFEST.into(), &(json + "\n"))?;
        Ok(self.dir.path().to_path_buf())
    }
}

/// An opened recording.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The recorded tracefs files.
    pub root: SysRoot,
    /// Its manifest.
    pub manifest: TraceManifest,
}

impl Recorded {
    /// Open a recording. It is untrusted input: the tree is checked against
    /// [`RECORDING_LIMITS`] and read by the rules of [`crate::confine`].
    pub fn open(dir: &Path) -> Result<Recorded, TraceError> {
        let mpath = dir.join(TRACE_MANIFEST);
        let not_one = |e: &dyn std::fmt::Display| {
            TraceError::Recording(format!(
                "{} is not an isol trace recording ({}: {e}); make one with `isol watch --record DIR`",
                dir.display(),
                mpath.display()
            ))
        };
        let bytes = confine::read_file(dir, TRACE_MANIFEST).map_err(|e| not_one(&e))?;
        confine::scan_tree(dir, &RECORDING_LIMITS).map_err(|r| {
            TraceError::Refused(format!("recording {} refused: {r}", dir.display()))
        })?;
        let manifest: TraceManifest = serde_json::from_slice(&bytes)
            .map_err(|e| TraceError::Recording(format!("{}: {e}", mpath.display())))?;
        if manifest.format != TRACE_FORMAT {
            return Err(TraceError::Recording(format!(
                "{}: format {:?}, this isol reads {TRACE_FORMAT:?}",
                mpath.display(),
                manifest.format
            )));
        }
        if manifest.end_ns < manifest.start_ns {
            return Err(TraceError::Recording(format!(
                "{}: the recording ends ({}) before it starts ({})",
                mpath.display(),
                manifest.end_ns,
                manifest.start_ns
            )));
        }
        if manifest.traced_cpus.len() > crate::cpus::MAX_CPU as usize + 1 {
            return Err(TraceError::Recording(format!(
                "{}: {} traced CPUs, more than a kernel has",
                mpath.display(),
                manifest.traced_cpus.len()
            )));
        }
        Ok(Recorded {
            root: SysRoot::at(dir),
            manifest,
        })
    }

    /// The pages of `cpu`, to be read as a stream; None when the CPU recorded nothing.
    pub fn pages_file(&self, cpu: u32) -> Result<Option<File>, TraceError> {
        let p = format!("{DEFAULT_MOUNT}/per_cpu/cpu{cpu}/trace_pipe_raw");
        match self.root.open(&p) {
            Ok(f) => Ok(Some(f)),
            Err(crate::SysError::NotFound { .. }) => Ok(None),
            Err(e @ crate::SysError::Refused { .. }) => Err(TraceError::Refused(e.to_string())),
            Err(e) => Err(TraceError::Recording(e.to_string())),
        }
    }
}
