//! What `isol apply` left on this machine: the header of its journal (`/run/isol/journal`),
//! which CPUs an apply isolated and, for an apply that lasts only as long as a process
//! (`isol run --apply`), which process. The journal itself, and everything done with it,
//! is `isol-machine`'s apply; the model only reads its first line.

use std::io;

use serde::{Deserialize, Serialize};

/// The journal's format tag, on its first line.
pub const JOURNAL_FORMAT: &str = "isol-apply/1";

/// Where `isol apply` keeps its journal on the machine, unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/isol";

/// The process that applied, when the apply lasts only as long as it does (`isol run
/// --apply` restores when its program ends). A journal without an owner was left on
/// purpose (`isol apply`) and stays until `isol restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its start time (clock ticks after boot, `/proc/PID/stat` field 22), so that a
    /// reused pid is never taken for it.
    pub start: u64,
    /// What it was, for people (`isol run -- ./app`).
    pub command: String,
}

impl Owner {
    /// The calling process, described as `command`.
    pub fn this_process(command: impl Into<String>) -> io::Result<Owner> {
        let pid = std::process::id();
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let start = super::threads::parse_stat(&stat)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?
            .start_time;
        Ok(Owner {
            pid,
            start,
            command: command.into(),
        })
    }
}

/// The first line of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`JOURNAL_FORMAT`].
    pub journal: String,
    /// `/proc/sys/kernel/random/boot_id` when apply ran: runtime settings do not survive a
    /// reboot, so neither does the journal's meaning.
    pub boot_id: String,
    /// The isolated CPUs.
    pub cpus: String,
    /// The housekeeping CPUs.
    pub housekeeping: String,
    /// When the journal was started (seconds since the epoch).
    pub created_unix: u64,
    /// The process whose end should have restored it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Header {
    /// Parse a journal's first line.
    pub fn parse(line: &str) -> Result<Header, String> {
        let header: Header = serde_json::from_str(line.trim_end())
            .map_err(|e| format!("line 1 is not a journal header: {e}"))?;
        if header.journal != JOURNAL_FORMAT {
            return Err(format!(
                "its format is {:?}, this isol reads {JOURNAL_FORMAT:?}",
                header.journal
            ));
        }
        Ok(header)
    }
}
