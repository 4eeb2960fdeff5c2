//! The isol lab: a real `nohz_full` kernel (Debian's 6.12 cloud kernel) booted under
//! QEMU/TCG with isol inside, so claims about ticks and interruptions are tested for real.
//!
//! ```no_run
//! use isol_lab::{Lab, Boot, Scenario};
//! let lab = Lab::open().expect("provisioned: run lab/provision.sh");
//! let run = lab.run(&Boot::default(), &[Scenario::new("nohz", "cat /sys/devices/system/cpu/nohz_full")]).unwrap();
//! assert_eq!(run.result("nohz").unwrap().stdout.trim(), "1");
//! ```
//!
//! How a run works: the harness builds isol and the guest helper static-pie, packs them with
//! busybox and an init script into an initramfs, and boots QEMU with two serial ports: the
//! first is the kernel console (kept to detect panics), the second carries results. Each
//! scenario's output is framed by sentinel lines with its exit status, so results come back
//! machine-readable and a missing one is noticed.

#![forbid(unsafe_code)]

mod boot;
pub mod expect;
pub mod host;
mod initramfs;
mod protocol;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use boot::{lab_kernel_or_skip, lab_or_skip, torn_code_patch, Boot, Lab, KERNELS};
pub use protocol::parse_results;

/// Why the lab could not run or a run went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Something the lab needs is missing on this machine.
    #[error("lab not provisioned: {what}; run `lab/provision.sh` (as root, with network access to Debian's mirrors)")]
    NotProvisioned { what: String },
    /// Building the static binaries or the initramfs failed.
    #[error("lab build failed: {0}")]
    Build(String),
    /// QEMU could not be started.
    #[error("cannot start qemu-system-x86_64: {0}")]
    Qemu(std::io::Error),
    /// The guest kernel panicked.
    #[error("guest kernel panicked{}{}; console tail:\n{console_tail}", if *before_init { " while booting, before init ran" } else { "" }, if *torn_patch { " on a half-patched instruction (TCG)" } else { "" })]
    Panic {
        console_tail: String,
        /// Before the init script ran anything.
        before_init: bool,
        /// On an instruction the kernel was rewriting (see [`torn_code_patch`]).
        torn_patch: bool,
    },
    /// The guest did not finish in time.
    #[error("guest did not finish within {timeout:?} (hang); console tail:\n{console_tail}")]
    Timeout {
        timeout: Duration,
        console_tail: String,
    },
    /// The guest powered off before reporting that every scenario had run.
    #[error("the guest stopped before finishing its scenarios (got results for: {got}); console tail:\n{console_tail}")]
    Incomplete { got: String, console_tail: String },
    /// I/O on the lab's files.
    #[error("lab I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A command to run inside the guest (by busybox `sh`).
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub command: String,
}

impl Scenario {
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Scenario {
        Scenario {
            name: name.into(),
            command: command.into(),
        }
    }
}

/// What one scenario printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioResult {
    pub name: String,
    /// Exit status of the command.
    pub status: i32,
    /// Its standard output and error, interleaved.
    pub stdout: String,
}

impl ScenarioResult {
    /// Parse the output as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "scenario {} did not print JSON ({e}):\n{}",
                self.name, self.stdout
            )
        })
    }
}

/// The results of one boot.
#[derive(Debug, Clone)]
pub struct Run {
    /// The guest kernel release.
    pub kernel: String,
    /// The command line it booted with.
    pub cmdline: String,
    pub results: Vec<ScenarioResult>,
    /// Wall time from QEMU start to exit.
    pub elapsed: Duration,
    /// The serial console (kernel messages, init output).
    pub console: String,
}

impl Run {
    /// The result of a scenario by name; a missing result is an error naming it.
    pub fn result(&self, name: &str) -> Result<&ScenarioResult, String> {
        self.results.iter().find(|r| r.name == name).ok_or_else(|| {
            format!(
                "no result for scenario {name:?} (got: {}); console tail:\n{}",
                self.results
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                tail(&self.console, 40)
            )
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
