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
//! two applies or restores from interleaving. Once the directory is open, every file in it
//! is reached from the directory's descriptor with `O_NOFOLLOW`, and only a regular file
//! is ever opened (a FIFO planted as the journal is refused before it could block).
//!
//! A journal is read as a stream: its lines are checked once, front to back, and only
//! their offsets are kept, so restoring a journal of any length costs memory for its
//! offsets, never for its changes.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{Change, Setting};
use crate::confine::Tree;

pub use isol_model::kernel::applied::{Header, Owner, DEFAULT_STATE_DIR, JOURNAL_FORMAT};

/// Journals are small (one line per change); a bigger file is not one of ours.
const MAX_JOURNAL: u64 = 64 << 20;

const JOURNAL: &str = "journal";
const JOURNAL_NEW: &str = "journal.new";
const LOCK: &str = "lock";

/// Why the state directory or its journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another apply or restore holds the lock.
    #[error("another isol apply or restore is running (it holds {0}); wait for it to finish")]
    Busy(PathBuf),
    /// The state directory or journal is not safe to trust (a link, someone else's, open
    /// to others, not a regular file).
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

    fn unsafe_(path: &Path, why: impl Into<String>) -> JournalError {
        JournalError::Unsafe {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}

/// Where journals and the lock live.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Inside a captured tree: the tree, and the directory's path in it.
    within: Option<(Tree, String)>,
    owner: Option<Owner>,
}

impl StateDir {
    /// The state directory `dir` on this machine (created, private, when first locked).
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir {
            path: dir.into(),
            within: None,
            owner: None,
        }
    }

    /// The state directory `rel` inside `tree` (`run/isol` of a captured machine): created
    /// and reached one component at a time from the tree, no link followed.
    pub fn within(tree: &Tree, rel: &str) -> io::Result<StateDir> {
        Ok(StateDir {
            path: tree.path().join(rel.trim_start_matches('/')),
            within: Some((tree.try_clone()?, rel.to_string())),
            owner: None,
        })
    }

    /// The journals this directory starts name `owner` as the process that restores them.
    pub fn owned_by(mut self, owner: Owner) -> StateDir {
        self.owner = Some(owner);
        self
    }

    pub(crate) fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.path.join(JOURNAL)
    }

    /// The directory, created (mode 0700) when missing, opened without following a link.
    fn open_dir(&self) -> Result<OwnedFd, JournalError> {
        if let Some((tree, rel)) = &self.within {
            return tree.create_dirs(rel, 0o700).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    JournalError::unsafe_(&self.path, e.to_string())
                } else {
                    JournalError::io("create", &self.path, e)
                }
            });
        }
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| JournalError::io("create", parent, e))?;
        }
        match rustix::fs::mkdir(&self.path, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(JournalError::io("create", &self.path, e.into())),
        }
        rustix::fs::openat(
            rustix::fs::CWD,
            &self.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                JournalError::unsafe_(&self.path, "it is a symbolic link or not a directory")
            }
            e => JournalError::io("open", &self.path, e.into()),
        })
    }

    /// Take the lock (creating the directory, mode 0700, when missing). Refuses a directory
    /// that is a link, not owned by the caller, or writable by others.
    pub fn lock(&self) -> Result<Locked, JournalError> {
        let dir = self.open_dir()?;
        let st = rustix::fs::fstat(&dir)
            .map_err(|e| JournalError::io("inspect", &self.path, e.into()))?;
        private(&self.path, &st, true)?;
        let lock_path = self.path.join(LOCK);
        let lock = open_regular(&dir, LOCK, &lock_path, OFlags::RDWR | OFlags::CREATE)?
            .ok_or_else(|| JournalError::io("open", &lock_path, io::ErrorKind::NotFound.into()))?;
        use rustix::fs::{flock, FlockOperation};
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(JournalError::Busy(lock_path)),
            Err(e) => return Err(JournalError::io("lock", &lock_path, e.into())),
        }
        Ok(Locked {
            dir,
            path: self.path.clone(),
            _lock: lock,
        })
    }
}

fn cname(name: &str) -> CString {
    CString::new(name).expect("journal file names have no NUL")
}

/// Open the regular file `name` in `dir` (`None` when it does not exist and `flags` does
/// not create it). Looks before opening: a link, FIFO, socket or device is refused
/// unopened; the file opened must be the one looked at, the caller's, and closed to others.
fn open_regular(
    dir: &OwnedFd,
    name: &str,
    path: &Path,
    flags: OFlags,
) -> Result<Option<File>, JournalError> {
    let c = cname(name);
    match rustix::fs::statat(dir, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft != FileType::RegularFile {
                return Err(JournalError::unsafe_(path, kind_of(ft)));
            }
        }
        Err(rustix::io::Errno::NOENT) if flags.contains(OFlags::CREATE) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(JournalError::io("inspect", path, e.into())),
    }
    let fd = rustix::fs::openat(
        dir,
        c.as_c_str(),
        flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => JournalError::unsafe_(path, "it is a symbolic link"),
        e => JournalError::io("open", path, e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| JournalError::io("inspect", path, e.into()))?;
    private(path, &st, false)?;
    rustix::fs::fcntl_setfl(&fd, OFlags::empty() | (flags & OFlags::APPEND))
        .map_err(|e| JournalError::io("open", path, e.into()))?;
    Ok(Some(File::from(fd)))
}

fn kind_of(ft: FileType) -> &'static str {
    match ft {
        FileType::Symlink => "it is a symbolic link",
        FileType::Fifo => "it is a FIFO, not a regular file",
        FileType::Socket => "it is a socket, not a regular file",
        FileType::Directory => "it is a directory, not a regular file",
        _ => "it is a device node, not a regular file",
    }
}

/// The caller's own, of the right type, with one link, and closed to others.
fn private(path: &Path, st: &rustix::fs::Stat, dir: bool) -> Result<(), JournalError> {
    let ft = FileType::from_raw_mode(st.st_mode);
    if dir && ft != FileType::Directory {
        return Err(JournalError::unsafe_(path, "it is not a directory"));
    }
    if !dir && ft != FileType::RegularFile {
        return Err(JournalError::unsafe_(path, kind_of(ft)));
    }
    if !dir && st.st_nlink > 1 {
        return Err(JournalError::unsafe_(
            path,
            format!("it has {} hard links", st.st_nlink),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(JournalError::unsafe_(
            path,
            format!("it belongs to uid {}, not to you (uid {me})", st.st_uid),
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(JournalError::unsafe_(
            path,
            format!("others may write to it (mode {:o})", st.st_mode & 0o7777),
        ));
    }
    Ok(())
}

/// The state directory, locked for as long as this lives.
#[derive(Debug)]
pub struct Locked {
    dir: OwnedFd,
    path: PathBuf,
    _lock: File,
}

/// A journal on disk, checked line by line; its changes are read back one at a time.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    pub header: Header,
    /// Where each change's line starts, and its length (newline included).
    lines: Vec<(u64, u32)>,
}

impl Journal {
    /// How many changes it records.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    fn raw(&self, i: usize) -> Result<Vec<u8>, JournalError> {
        let (at, len) = self.lines[i];
        let mut buf = vec![0; len as usize];
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| JournalError::io("read", &self.path, e))?;
        Ok(buf)
    }

    /// The `i`th change (0 is the oldest).
    pub fn change(&self, i: usize) -> Result<Change, JournalError> {
        let raw = self.raw(i)?;
        parse_change(&raw, i + 2).map_err(|why| JournalError::Corrupt {
            path: self.path.clone(),
            why: format!("{why} (it changed while isol read it)"),
        })
    }
}

/// One change line, checked: it parses, and names only a file apply itself writes.
fn parse_change(line: &[u8], number: usize) -> Result<Change, String> {
    let change: Change = serde_json::from_slice(line.trim_ascii_end())
        .map_err(|e| format!("line {number} is not a change: {e}"))?;
    if let Setting::File { path, format } = &change.setting {
        if super::plan::written_as(path) != Some(*format) {
            return Err(format!(
                "line {number} names {path} ({format:?}), a file apply never writes so"
            ));
        }
    }
    Ok(change)
}

/// Check a journal's lines and note where each starts. `Err` says what is wrong.
fn scan(r: impl Read) -> Result<(Header, Vec<(u64, u32)>), String> {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    let mut at = r
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("unreadable: {e}"))? as u64;
    if line.is_empty() {
        return Err("it is empty".into());
    }
    let header = Header::parse(&String::from_utf8_lossy(&line))?;
    let mut lines = Vec::new();
    let mut number = 1;
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("unreadable: {e}"))?;
        if n == 0 {
            break;
        }
        number += 1;
        match parse_change(&line, number) {
            Ok(_) => lines.push((at, n as u32)),
            // Cut short by a crash while being written: its change was never made. Only
            // the last line can be: nothing may follow it.
            Err(_) if !line.ends_with(b"\n") => break,
            Err(why) => return Err(why),
        }
        at += n as u64;
    }
    Ok((header, lines))
}

impl Locked {
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.path.join(JOURNAL)
    }

    /// The journal, when there is one.
    pub(crate) fn read(&self) -> Result<Option<Journal>, JournalError> {
        let path = self.journal_path();
        let Some(mut file) = open_regular(&self.dir, JOURNAL, &path, OFlags::RDONLY)? else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(|e| JournalError::io("inspect", &path, e))?
            .size();
        if len > MAX_JOURNAL {
            return Err(JournalError::Corrupt {
                path,
                why: format!("larger than {MAX_JOURNAL} bytes"),
            });
        }
        let (header, lines) = scan(Read::by_ref(&mut file).take(MAX_JOURNAL)).map_err(|why| {
            JournalError::Corrupt {
                path: path.clone(),
                why,
            }
        })?;
        file.rewind()
            .map_err(|e| JournalError::io("read", &path, e))?;
        Ok(Some(Journal {
            file,
            path,
            header,
            lines,
        }))
    }

    /// Start a new journal with `header` (synced, directory entry included).
    pub(crate) fn create(&self, header: &Header) -> Result<Writer, JournalError> {
        let w = self.start(JOURNAL, header)?;
        self.sync_dir()?;
        Ok(w)
    }

    /// Append to the journal that exists.
    pub(crate) fn append(&self) -> Result<Writer, JournalError> {
        let path = self.journal_path();
        let file = open_regular(&self.dir, JOURNAL, &path, OFlags::WRONLY | OFlags::APPEND)?
            .ok_or_else(|| JournalError::io("open", &path, io::ErrorKind::NotFound.into()))?;
        Ok(Writer { file, path })
    }

    /// A new private file `name` (removing one left by an earlier crash), its header
    /// written and synced.
    fn start(&self, name: &str, header: &Header) -> Result<Writer, JournalError> {
        let path = self.path.join(name);
        let c = cname(name);
        if name != JOURNAL {
            match rustix::fs::unlinkat(&self.dir, c.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(JournalError::io("remove", &path, e.into())),
            }
        }
        let fd = rustix::fs::openat(
            &self.dir,
            c.as_c_str(),
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| JournalError::io("create", &path, e.into()))?;
        let mut w = Writer {
            file: File::from(fd),
            path,
        };
        w.line(
            serde_json::to_string(header)
                .expect("a header serialises")
                .as_bytes(),
        )?;
        Ok(w)
    }

    /// Replace the journal by one holding the lines `keep` of `old` (in order) and then
    /// `extra`, or remove it when that leaves nothing.
    pub(crate) fn rewrite(
        &self,
        header: &Header,
        old: Option<&Journal>,
        keep: &[usize],
        extra: &[Change],
    ) -> Result<(), JournalError> {
        let path = self.journal_path();
        if keep.is_empty() && extra.is_empty() {
            return match rustix::fs::unlinkat(
                &self.dir,
                cname(JOURNAL).as_c_str(),
                AtFlags::empty(),
            ) {
                Ok(()) => self.sync_dir(),
                Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(JournalError::io("remove", &path, e.into())),
            };
        }
        let mut w = self.start(JOURNAL_NEW, header)?;
        if let Some(old) = old {
            for &i in keep {
                let raw = old.raw(i)?;
                w.line(raw.trim_ascii_end())?;
            }
        }
        for c in extra {
            w.record(c)?;
        }
        rustix::fs::renameat(
            &self.dir,
            cname(JOURNAL_NEW).as_c_str(),
            &self.dir,
            cname(JOURNAL).as_c_str(),
        )
        .map_err(|e| JournalError::io("replace", &path, e.into()))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), JournalError> {
        rustix::fs::fsync(&self.dir).map_err(|e| JournalError::io("sync", &self.path, e.into()))
    }
}

/// Appends changes to a journal, each synced before it returns.
#[derive(Debug)]
pub(crate) struct Writer {
    file: File,
    path: PathBuf,
}

impl Writer {
    fn line(&mut self, json: &[u8]) -> Result<(), JournalError> {
        let mut buf = Vec::with_capacity(json.len() + 1);
        buf.extend_from_slice(json);
        buf.push(b'\n');
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| JournalError::io("write", &self.path, e))
    }

    /// Record `change`; it is on disk when this returns.
    pub(crate) fn record(&mut self, change: &Change) -> Result<(), JournalError> {
        self.line(
            serde_json::to_string(change)
                .expect("a change serialises")
                .as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"journal":"isol-apply/1","boot_id":"b","cpus":"1","housekeeping":"0","created_unix":1}"#;
    const CHANGE: &str = r#"{"setting":{"kind":"file","path":"/proc/sys/kernel/nmi_watchdog","format":"word"},"old":"1","new":"0","why":"w","fixes":null}"#;

    fn parse(text: &str) -> Result<usize, String> {
        scan(text.as_bytes()).map(|(_, lines)| lines.len())
    }

    #[test]
    fn torn_last_line_is_dropped_other_damage_refused() {
        let ok = format!("{HEADER}\n{CHANGE}\n{}", &CHANGE[..20]);
        assert_eq!(parse(&ok).unwrap(), 1);
        let bad = format!("{HEADER}\n{}\n{CHANGE}\n", &CHANGE[..20]);
        assert!(parse(&bad).unwrap_err().contains("line 2"));
        let foreign = HEADER.replace("isol-apply/1", "isol-apply/9");
        assert!(parse(&foreign).unwrap_err().contains("format"));
        let evil = CHANGE.replace("/proc/sys/kernel/nmi_watchdog", "/etc/shadow");
        assert!(parse(&format!("{HEADER}\n{evil}\n"))
            .unwrap_err()
            .contains("never writes"));
        assert!(parse("").is_err());
        assert!(parse("not json\n").is_err());
    }

    #[test]
    fn only_the_files_apply_writes_and_as_it_writes_them() {
        for (path, format) in [
            ("/proc/sys/kernel/core_pattern", "word"),
            ("/sys/devices/system/cpu/cpu1/online", "word"),
            (
                "/sys/devices/system/cpu/cpu1/subsystem/devices/cpu1/online",
                "word",
            ),
            (
                "/sys/class/net/eth0/subsystem/eth0/queues/rx-0/rps_cpus",
                "mask",
            ),
            ("/proc/irq/24/../../sys/kernel/core_pattern", "list"),
            // The right file, the wrong format.
            ("/proc/sys/kernel/nmi_watchdog", "mask"),
        ] {
            let evil = CHANGE
                .replace("/proc/sys/kernel/nmi_watchdog", path)
                .replace("\"word\"", &format!("{format:?}"));
            let e = parse(&format!("{HEADER}\n{evil}\n")).unwrap_err();
            assert!(e.contains("never writes"), "{path}: {e}");
        }
        let owner = HEADER.replace(
            "\"created_unix\":1",
            r#""created_unix":1,"owner":{"pid":7,"start":9,"command":"isol run -- app"}"#,
        );
        let (h, _) = scan(format!("{owner}\n{CHANGE}\n").as_bytes()).unwrap();
        assert_eq!(h.owner.unwrap().pid, 7);
    }
}
