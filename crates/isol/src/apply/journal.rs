//! The journal: every value apply replaces, written and synced before the change, so that
//! restore can undo a run that crashed or was killed at any point.
//!
//! One JSON document per line: a header, then one [`Change`] per line, appended with
//! `O_APPEND` and `fdatasync`ed before the change is made. A line cut short by a crash can
//! only be the last one, and its change was never made (the write waits for the sync), so
//! it is dropped; any other damage refuses the whole journal and leaves it in place.
//!
//! The journal lives in a private state directory (`/run/isol` on the machine, so that it
//! goes with the runtime settings when the machine reboots), beside a lock file that keeps
//! two applies or restores from interleaving.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Change, Setting};

/// The journal's format tag, on its first line.
pub const JOURNAL_FORMAT: &str = "isol-apply/1";

/// Journals are small (one line per change); a bigger file is not one of ours.
const MAX_JOURNAL: u64 = 64 << 20;

/// Why the state directory or its journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another apply or restore holds the lock.
    #[error("another isol apply or restore is running (it holds {0}); wait for it to finish")]
    Busy(PathBuf),
    /// The state directory or journal is not safe to trust (a link, someone else's, open
    /// to others).
    #[error("refusing {path}: {why}; remove it, or pass a private directory with --state-dir")]
    Unsafe {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The journal is damaged or not isol's.
    #[error(
        "{path} is not a journal isol can restore from ({why}); it was left in place: \
         put the values back by hand from it, then remove it"
    )]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}{hint}")]
    Io {
        /// What isol was doing.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
}

impl JournalError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> JournalError {
        let hint = match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                " (apply and restore change kernel settings: run them as root)"
            }
            _ => "",
        };
        JournalError::Io {
            op,
            path: path.to_path_buf(),
            source,
            hint,
        }
    }
}

/// The first line of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
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
}

/// Where journals and the lock live.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state directory `dir` (created, private, when first locked).
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// Take the lock (creating the directory, mode 0700, when missing). Refuses a directory
    /// that is a link, not owned by the caller, or writable by others.
    pub fn lock(&self) -> Result<Locked, JournalError> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(JournalError::io("create", &self.dir, e)),
        }
        let meta = std::fs::symlink_metadata(&self.dir)
            .map_err(|e| JournalError::io("inspect", &self.dir, e))?;
        private(&self.dir, &meta, true)?;
        let lock_path = self.dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| JournalError::io("open", &lock_path, e))?;
        use rustix::fs::{flock, FlockOperation};
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(JournalError::Busy(lock_path)),
            Err(e) => return Err(JournalError::io("lock", &lock_path, e.into())),
        }
        Ok(Locked {
            state: self.clone(),
            _lock: lock,
        })
    }
}

/// The caller's own, not a link, and closed to others.
fn private(path: &Path, meta: &std::fs::Metadata, dir: bool) -> Result<(), JournalError> {
    let unsafe_ = |why: String| JournalError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_("it is a symbolic link".into()));
    }
    if dir != meta.is_dir() || (!dir && !meta.is_file()) {
        return Err(unsafe_(format!(
            "it is not a {}",
            if dir { "directory" } else { "regular file" }
        )));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_(format!(
            "it belongs to uid {}, not to you (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_(format!(
            "others may write to it (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The state directory, locked for as long as this lives.
#[derive(Debug)]
pub struct Locked {
    state: StateDir,
    _lock: File,
}

/// What a journal holds.
#[derive(Debug)]
pub(crate) struct Contents {
    pub header: Header,
    pub changes: Vec<Change>,
}

impl Locked {
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.state.journal_path()
    }

    /// The journal, when there is one.
    pub(crate) fn read(&self) -> Result<Option<Contents>, JournalError> {
        let path = self.journal_path();
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(JournalError::Unsafe {
                    path,
                    why: "it is a symbolic link".into(),
                })
            }
            Err(e) => return Err(JournalError::io("open", &path, e)),
        };
        let meta = f
            .metadata()
            .map_err(|e| JournalError::io("inspect", &path, e))?;
        private(&path, &meta, false)?;
        let mut text = String::new();
        Read::by_ref(&mut f)
            .take(MAX_JOURNAL + 1)
            .read_to_string(&mut text)
            .map_err(|e| JournalError::Corrupt {
                path: path.clone(),
                why: format!("unreadable: {e}"),
            })?;
        if text.len() as u64 > MAX_JOURNAL {
            return Err(JournalError::Corrupt {
                path,
                why: format!("larger than {MAX_JOURNAL} bytes"),
            });
        }
        parse(&text)
            .map(Some)
            .map_err(|why| JournalError::Corrupt { path, why })
    }

    /// Start a new journal with `header` (synced, directory entry included).
    pub(crate) fn create(&self, header: &Header) -> Result<Writer, JournalError> {
        let w = Writer::start(self.journal_path(), header)?;
        sync_dir(self.state.path())?;
        Ok(w)
    }

    /// Append to the journal that exists.
    pub(crate) fn append(&self) -> Result<Writer, JournalError> {
        let path = self.journal_path();
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| JournalError::io("open", &path, e))?;
        Ok(Writer { file, path })
    }

    /// Replace the journal by one holding `changes` (what restore could not undo), or
    /// remove it when there are none.
    pub(crate) fn rewrite(&self, header: &Header, changes: &[Change]) -> Result<(), JournalError> {
        let path = self.journal_path();
        if changes.is_empty() {
            return match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(self.state.path()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(JournalError::io("remove", &path, e)),
            };
        }
        let tmp = self.state.path().join("journal.new");
        let _ = std::fs::remove_file(&tmp);
        let mut w = Writer::start(tmp.clone(), header)?;
        for c in changes {
            w.record(c)?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| JournalError::io("replace", &path, e))?;
        sync_dir(self.state.path())
    }
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("sync", dir, e))
}

/// Appends changes to a journal, each synced before it returns.
#[derive(Debug)]
pub(crate) struct Writer {
    file: File,
    path: PathBuf,
}

impl Writer {
    /// A new private file at `path` (it must not exist), its header written and synced.
    fn start(path: PathBuf, header: &Header) -> Result<Writer, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| JournalError::io("create", &path, e))?;
        let mut w = Writer { file, path };
        w.line(&serde_json::to_string(header).expect("a header serialises"))?;
        Ok(w)
    }

    fn line(&mut self, json: &str) -> Result<(), JournalError> {
        self.file
            .write_all(format!("{json}\n").as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| JournalError::io("write", &self.path, e))
    }

    /// Record `change`; it is on disk when this returns.
    pub(crate) fn record(&mut self, change: &Change) -> Result<(), JournalError> {
        self.line(&serde_json::to_string(change).expect("a change serialises"))
    }
}

/// Only the files apply itself writes: anything else in a journal is not ours.
pub(crate) fn writable(path: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "/proc/irq/",
        "/proc/sys/kernel/",
        "/proc/sys/vm/",
        "/sys/devices/virtual/workqueue/",
        "/sys/devices/system/cpu/",
        "/sys/devices/system/machinecheck/",
        "/sys/kernel/mm/",
        "/sys/class/net/",
    ];
    let fair = path.starts_with("/sys/kernel/debug/sched/fair_server/");
    (fair || PREFIXES.iter().any(|p| path.starts_with(p)))
        && !path.split('/').any(|c| c == ".." || c == ".")
        && !path.contains("//")
        && !path.contains('\0')
}

fn parse(text: &str) -> Result<Contents, String> {
    let mut lines = text.split_inclusive('\n').enumerate().peekable();
    let (_, first) = lines.next().ok_or("it is empty")?;
    let header: Header = serde_json::from_str(first.trim_end())
        .map_err(|e| format!("line 1 is not a journal header: {e}"))?;
    if header.journal != JOURNAL_FORMAT {
        return Err(format!(
            "its format is {:?}, this isol reads {JOURNAL_FORMAT:?}",
            header.journal
        ));
    }
    let mut changes = Vec::new();
    while let Some((i, line)) = lines.next() {
        let last = lines.peek().is_none();
        let change: Change = match serde_json::from_str(line.trim_end()) {
            Ok(c) => c,
            // Cut short by a crash while being written: its change was never made.
            Err(_) if last && !line.ends_with('\n') => break,
            Err(e) => return Err(format!("line {} is not a change: {e}", i + 1)),
        };
        if let Setting::File { path, .. } = &change.setting {
            if !writable(path) {
                return Err(format!(
                    "line {} names {path}, a file apply never writes",
                    i + 1
                ));
            }
        }
        changes.push(change);
    }
    Ok(Contents { header, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_apply_files_are_writable() {
        assert!(writable("/proc/irq/24/smp_affinity_list"));
        assert!(writable("/sys/kernel/debug/sched/fair_server/cpu1/runtime"));
        assert!(!writable("/etc/shadow"));
        assert!(!writable("/proc/irq/../../etc/shadow"));
        assert!(!writable("/sys/kernel/debug/tracing/trace"));
        assert!(!writable("/proc/sys/kernel//x"));
    }

    #[test]
    fn torn_last_line_is_dropped_other_damage_refused() {
        let header = r#"{"journal":"isol-apply/1","boot_id":"b","cpus":"1","housekeeping":"0","created_unix":1}"#;
        let change = r#"{"setting":{"kind":"file","path":"/proc/sys/kernel/nmi_watchdog","format":"word"},"old":"1","new":"0","why":"w","fixes":null}"#;
        let ok = format!("{header}\n{change}\n{}", &change[..20]);
        assert_eq!(parse(&ok).unwrap().changes.len(), 1);
        let bad = format!("{header}\n{}\n{change}\n", &change[..20]);
        assert!(parse(&bad).unwrap_err().contains("line 2"));
        let foreign = header.replace("isol-apply/1", "isol-apply/9");
        assert!(parse(&foreign).unwrap_err().contains("format"));
        let evil = change.replace("/proc/sys/kernel/nmi_watchdog", "/etc/shadow");
        assert!(parse(&format!("{header}\n{evil}\n"))
            .unwrap_err()
            .contains("never writes"));
        assert!(parse("").is_err());
        assert!(parse("not json\n").is_err());
    }
}
