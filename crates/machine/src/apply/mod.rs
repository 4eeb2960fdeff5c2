//! Make a machine isolated at run time, with an exact and crash-safe undo.
//!
//! Three steps, each its own room:
//!
//! - [`plan()`] (`plan.rs`) reads the kernel model and lists every change for the chosen
//!   CPUs: the file or thread, its value now, the value isol would set, why, and which
//!   `isol check` finding it fixes. What cannot be moved (managed IRQs, per-CPU kernel
//!   threads, the workload already pinned there) is listed as [`Left`], with the reason.
//! - [`apply()`] (`run.rs`) carries a plan out under a lock. Before each change, the value
//!   it replaces goes into a journal (`journal.rs`), appended and synced, so that a crash or
//!   `kill -9` at any point leaves a journal that [`restore()`] can undo. Values already at
//!   their target are not touched, so applying twice changes nothing the second time.
//! - [`restore()`] walks the journal backwards and puts every value back, byte for byte. A
//!   value someone else changed since apply is reported and left alone (unless forced).
//!
//! Every write goes through a [`System`] (`system.rs`): [`LiveSystem`] is the running
//! kernel; [`DirSystem`] is a captured tree (a snapshot directory), which behaves like the
//! kernel for the files isol writes. The same plan, journal and restore run on both, which
//! is how the unit tests replay real machines.
//!
//! [`boot_params`] (`cmdline.rs`) gives the kernel command line for the chosen CPUs: the
//! part of isolation that only a reboot can do. isol prints it and never edits boot files.

mod cmdline;
mod journal;
mod plan;
mod run;
mod system;

use serde::{Deserialize, Serialize};

use crate::cpus::CpuSet;

pub use cmdline::{boot_params, grub_snippet, BootParam};
pub use journal::{Header, JournalError, Owner, StateDir, DEFAULT_STATE_DIR, JOURNAL_FORMAT};
pub use plan::{plan, Options, PlanError};
pub use run::{apply, restore, Applied, ApplyError, Outcome, Restored, Undo, UndoCounts};
pub use system::{DirSystem, LiveSystem, System};

/// How a value is written and compared. Two values are the same when the kernel would
/// read them back the same: `0-1` and `0,1` are one CPU list, `3` and `00000003` one mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A CPU list (`0-3,8`).
    List,
    /// A hexadecimal CPU mask (`ff`, `00000001,00000000`).
    Mask,
    /// One word or number (`0`, `10`).
    Word,
    /// A choice file whose selected word is in brackets (`always [madvise] never`).
    Choice,
}

impl Format {
    /// The value as isol records it from the file's text: the selected word of a choice
    /// file, the trimmed text otherwise.
    pub fn value_of(self, text: &str) -> String {
        match self {
            Format::Choice => {
                crate::kernel::selected_choice(text).unwrap_or_else(|_| text.trim().to_string())
            }
            _ => text.trim().to_string(),
        }
    }

    /// Whether two recorded values mean the same setting.
    pub fn same(self, a: &str, b: &str) -> bool {
        let (a, b) = (self.value_of(a), self.value_of(b));
        match self {
            Format::List => match (CpuSet::parse_list(&a), CpuSet::parse_list(&b)) {
                (Ok(x), Ok(y)) => x == y,
                _ => a == b,
            },
            Format::Mask => match (CpuSet::parse_mask(&a), CpuSet::parse_mask(&b)) {
                (Ok(x), Ok(y)) => x == y,
                _ => a == b,
            },
            Format::Word | Format::Choice => a == b,
        }
    }
}

/// What one change touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Setting {
    /// A file under `/proc` or `/sys`.
    File {
        /// Absolute path on the machine.
        path: String,
        /// How its value reads and compares.
        format: Format,
    },
    /// The CPU affinity of one thread (values are CPU lists).
    Affinity {
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// Its name when planned.
        comm: String,
        /// Its start time (clock ticks after boot), so that a reused thread id is never
        /// mistaken for the thread isol moved.
        start: u64,
        /// A kernel thread.
        kernel: bool,
    },
    /// Take a CPU offline and online once, so that timers stranded on it move to the
    /// housekeeping CPUs. An action: there is nothing to undo.
    CycleCpu {
        /// The CPU.
        cpu: u32,
    },
}

impl Setting {
    /// How the value compares.
    pub fn format(&self) -> Format {
        match self {
            Setting::File { format, .. } => *format,
            Setting::Affinity { .. } => Format::List,
            Setting::CycleCpu { .. } => Format::Word,
        }
    }

    /// One short name for it: the path, `thread NAME/TID`, or `cpuN offline/online`.
    pub fn describe(&self) -> String {
        match self {
            Setting::File { path, .. } => path.clone(),
            Setting::Affinity { comm, tid, .. } => format!("affinity of {comm}/{tid}"),
            Setting::CycleCpu { cpu } => format!("cpu{cpu} offline and online"),
        }
    }
}

/// One change of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What it touches.
    pub setting: Setting,
    /// The value now (restored by [`restore()`]).
    pub old: String,
    /// The value isol sets.
    pub new: String,
    /// Why, in one line.
    pub why: String,
    /// The `isol check` finding it fixes, when there is one.
    pub fixes: Option<String>,
}

/// Something isol leaves as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Left {
    /// What (an IRQ, a thread, a group of threads).
    pub what: String,
    /// Why it stays, and what would move it.
    pub why: String,
}

/// Every change for one set of CPUs, computed from the kernel model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The CPUs to isolate.
    pub cpus: CpuSet,
    /// The online CPUs left for the kernel.
    pub housekeeping: CpuSet,
    /// The changes, in the order they are applied.
    pub changes: Vec<Change>,
    /// What stays.
    pub left: Vec<Left>,
}
