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
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::EventFormat;
use super::{TraceError, DEFAULT_MOUNT};
use crate::SysRoot;

pub const TRACE_MANIFEST: &str = "isol-trace.json";
pub const TRACE_FORMAT: &str = "isol.trace/v1";

/// What a recording holds besides its pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceManifest {
    pub format: String,
    pub isol_version: String,
    pub kernel: String,
    /// The watched CPUs (`1,3`).
    pub cpus: String,
    /// CPUs whose buffers were recorded.
    pub traced_cpus: Vec<u32>,
    pub clock: String,
    pub page_size: usize,
    pub pages: BTreeMap<u32, usize>,
    pub start_ns: u64,
    pub end_ns: u64,
    /// `pid -> comm` of tasks named in the pages, as seen while recording.
    pub comms: BTreeMap<i32, String>,
    /// Tasks that belonged on the watched CPUs (see `WatchOptions::residents`).
    #[serde(default)]
    pub residents: Vec<i32>,
    pub note: String,
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> TraceError {
    TraceError::io(op, path, e)
}

/// Writes a recording as pages arrive.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    files: BTreeMap<u32, File>,
    pages: BTreeMap<u32, usize>,
}

impl Recorder {
    /// Start a recording in `dir` (created; must be empty or absent).
    pub fn create(dir: &Path) -> Result<Recorder, TraceError> {
        if dir.exists()
            && fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(TraceError::Recording(format!(
                "{} exists and is not empty; choose a new directory for the recording",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            pages: BTreeMap::new(),
        })
    }

    fn tracing(&self) -> PathBuf {
        self.dir.join(DEFAULT_MOUNT.trim_start_matches('/'))
    }

    /// Append one page of `cpu`.
    pub fn page(&mut self, cpu: u32, page: &[u8]) -> Result<(), TraceError> {
        if !self.files.contains_key(&cpu) {
            let d = self.tracing().join(format!("per_cpu/cpu{cpu}"));
            fs::create_dir_all(&d).map_err(|e| io_err("create", &d, e))?;
            let p = d.join("trace_pipe_raw");
            let f = File::create(&p).map_err(|e| io_err("create", &p, e))?;
            self.files.insert(cpu, f);
        }
        let f = self.files.get_mut(&cpu).expect("file just created");
        f.write_all(page)
            .map_err(|e| io_err("write", &self.dir.join("per_cpu"), e))?;
        *self.pages.entry(cpu).or_default() += 1;
        Ok(())
    }

    /// Write formats, symbols and the manifest.
    pub fn finish(
        self,
        header_page: &str,
        formats: &[EventFormat],
        format_text: impl Fn(&EventFormat) -> Option<String>,
        kallsyms: &str,
        mut manifest: TraceManifest,
    ) -> Result<PathBuf, TraceError> {
        let t = self.tracing();
        let write = |p: PathBuf, text: &str| -> Result<(), TraceError> {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
            }
            fs::write(&p, text).map_err(|e| io_err("write", &p, e))
        };
        write(t.join("events/header_page"), header_page)?;
        for f in formats {
            if let Some(text) = format_text(f) {
                write(
                    t.join(format!("events/{}/{}/format", f.system, f.name)),
                    &text,
                )?;
            }
        }
        write(self.dir.join("proc/kallsyms"), kallsyms)?;
        manifest.pages = self.pages.clone();
        let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        write(self.dir.join(TRACE_MANIFEST), &(json + "\n"))?;
        Ok(self.dir)
    }
}

/// An opened recording.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub root: SysRoot,
    pub manifest: TraceManifest,
}

impl Recorded {
    pub fn open(dir: &Path) -> Result<Recorded, TraceError> {
        let mpath = dir.join(TRACE_MANIFEST);
        let text = fs::read_to_string(&mpath).map_err(|e| {
            TraceError::Recording(format!(
                "{} is not an isol trace recording ({}: {e}); make one with `isol watch --record DIR`",
                dir.display(),
                mpath.display()
            ))
        })?;
        let manifest: TraceManifest = serde_json::from_str(&text)
            .map_err(|e| TraceError::Recording(format!("{}: {e}", mpath.display())))?;
        if manifest.format != TRACE_FORMAT {
            return Err(TraceError::Recording(format!(
                "{}: format {:?}, this isol reads {TRACE_FORMAT:?}",
                mpath.display(),
                manifest.format
            )));
        }
        Ok(Recorded {
            root: SysRoot::at(dir),
            manifest,
        })
    }

    /// All pages of `cpu`, concatenated.
    pub fn pages(&self, cpu: u32) -> Result<Vec<u8>, TraceError> {
        let p = format!("{DEFAULT_MOUNT}/per_cpu/cpu{cpu}/trace_pipe_raw");
        match self.root.read_bytes(&p) {
            Ok(b) => Ok(b),
            Err(crate::SysError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(TraceError::Recording(e.to_string())),
        }
    }
}
