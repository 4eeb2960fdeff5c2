//! `SysRoot`: the one door through which isol reads `/proc`, `/sys` and tracefs.
//!
//! Every kernel file is named by its absolute path on a live system (`/proc/interrupts`) and
//! resolved under the root, `/` by default. Pointing the root at a directory captured by
//! `isol snapshot` replays another machine's kernel: that is how the tests run the parsers on
//! fixtures from real kernels.
//!
//! A snapshot also carries a manifest of the files that could not be read when it was taken
//! (`permission denied`, say), so a replay reports them exactly as the live system did.
//!
//! A recording root remembers every path read through it; `isol snapshot` uses this to
//! capture exactly the files the kernel model reads, no more and no less.
//!
//! A captured tree is untrusted (snapshots come from strangers): below any root but `/`,
//! reads follow the rules of [`crate::confine`] (no link is followed, only regular files
//! are opened, every read is capped), and manifest listings hold plain names only.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The manifest a snapshot keeps at its top: what was captured, and what could not be read.
pub const MANIFEST: &str = "isol-snapshot.json";

/// Why a kernel file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The file does not exist on this kernel (a missing feature or config option).
    #[error("{path}: not present on this kernel")]
    NotFound {
        /// The kernel path.
        path: String,
    },
    /// The file exists but reading it needs privileges isol does not have.
    #[error("{path}: permission denied (needs root)")]
    NeedsRoot {
        /// The kernel path.
        path: String,
    },
    /// The file reads as empty where the kernel always writes something: hidden by a
    /// container runtime (masked paths are bind mounts of `/dev/null`).
    #[error("{path}: masked (empty; containers hide it)")]
    Masked {
        /// The kernel path.
        path: String,
    },
    /// A captured tree holds something isol will not read there (a link, a FIFO, a file
    /// over the size cap): see [`crate::confine`].
    #[error("{path}: refused: {why}")]
    Refused {
        /// The kernel path.
        path: String,
        /// Why it was refused.
        why: String,
    },
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The kernel path.
        path: String,
        #[source]
        /// Why.
        source: io::Error,
    },
}

impl SysError {
    /// The kernel path the error is about.
    pub fn path(&self) -> &str {
        match self {
            SysError::NotFound { path }
            | SysError::NeedsRoot { path }
            | SysError::Masked { path }
            | SysError::Refused { path, .. }
            | SysError::Io { path, .. } => path,
        }
    }

    /// A short word for reports: `absent`, `needs root`, `masked`, `refused`, `error`.
    pub fn kind(&self) -> &'static str {
        match self {
            SysError::NotFound { .. } => "absent",
            SysError::NeedsRoot { .. } => "needs root",
            SysError::Masked { .. } => "masked",
            SysError::Refused { .. } => "refused",
            SysError::Io { .. } => "error",
        }
    }

    fn from_io(path: &str, e: io::Error) -> SysError {
        let path = path.to_string();
        match e.kind() {
            io::ErrorKind::NotFound => SysError::NotFound { path },
            io::ErrorKind::PermissionDenied => SysError::NeedsRoot { path },
            _ if e.raw_os_error() == Some(libc::ENOTDIR) => SysError::NotFound { path },
            io::ErrorKind::InvalidData => SysError::Refused {
                path,
                why: e.to_string(),
            },
            _ => SysError::Io { path, source: e },
        }
    }
}

/// What a snapshot manifest says about one file that could not be read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unreadable {
    /// `needs root`, `masked` or `error`.
    pub kind: String,
    /// The error text at capture time.
    pub detail: String,
}

/// The manifest stored in a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the snapshot.
    pub format: u32,
    /// `isol` version that took it.
    pub isol_version: String,
    /// Kernel release (`uname -r`) of the captured system.
    pub kernel: String,
    /// Host name of the captured system.
    pub hostname: String,
    /// Seconds since the Unix epoch at capture.
    pub taken_at_unix: u64,
    /// Free-form note, e.g. where the snapshot came from.
    #[serde(default)]
    pub note: String,
    /// Files that existed but could not be read, by kernel path.
    #[serde(default)]
    pub unreadable: BTreeMap<String, Unreadable>,
    /// Directory listings as the live system gave them (entries that were not read, such as
    /// `/proc/irq/N/<action>`, are not in the archive but are listed here).
    #[serde(default)]
    pub listings: BTreeMap<String, Vec<String>>,
}

/// Paths read through a recording root.
#[derive(Debug, Default)]
pub struct Recording {
    /// Files read successfully, with the bytes read.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Directories listed, with their entries.
    pub dirs: BTreeMap<String, Vec<String>>,
    /// Files that exist but could not be read, with why.
    pub unreadable: BTreeMap<String, Unreadable>,
}

/// The root under which kernel paths are resolved.
#[derive(Debug, Clone)]
pub struct SysRoot {
    root: PathBuf,
    unreadable: Arc<BTreeMap<String, Unreadable>>,
    listings: Arc<BTreeMap<String, Vec<String>>>,
    recording: Option<Arc<Mutex<Recording>>>,
}

impl Default for SysRoot {
    fn default() -> Self {
        Self::live()
    }
}

impl SysRoot {
    /// The running system (`/`).
    pub fn live() -> Self {
        SysRoot {
            root: PathBuf::from("/"),
            unreadable: Arc::default(),
            listings: Arc::default(),
            recording: None,
        }
    }

    /// A directory holding a captured tree (`proc/`, `sys/`, ...), such as an extracted
    /// snapshot. Its manifest, if any, is loaded; listing entries that are not plain names
    /// are dropped (use [`Manifest::check`] to refuse such a manifest instead).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let mut manifest = if root == Path::new("/") {
            Manifest::default()
        } else {
            crate::confine::read_file(&root, MANIFEST)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
                .unwrap_or_default()
        };
        for names in manifest.listings.values_mut() {
            names.retain(|n| plain_name(n));
        }
        SysRoot {
            root,
            unreadable: Arc::new(manifest.unreadable),
            listings: Arc::new(manifest.listings),
            recording: None,
        }
    }

    /// This root, also remembering every path read through it (and through its clones).
    pub fn recording(&self) -> (SysRoot, Arc<Mutex<Recording>>) {
        let rec = Arc::new(Mutex::new(Recording::default()));
        let mut r = self.clone();
        r.recording = Some(rec.clone());
        (r, rec)
    }

    /// Whether this is the running system rather than a captured tree.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the kernel path `path` (absolute, like `/proc/stat`) lives under this root.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn replayed_error(&self, path: &str) -> Option<SysError> {
        let u = self.unreadable.get(path)?;
        let path = path.to_string();
        Some(match u.kind.as_str() {
            "needs root" => SysError::NeedsRoot { path },
            "masked" => SysError::Masked { path },
            _ => SysError::Io {
                path,
                source: io::Error::other(u.detail.clone()),
            },
        })
    }

    fn note(&self, f: impl FnOnce(&mut Recording)) {
        if let Some(rec) = &self.recording {
            f(&mut rec.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Open a file for reading as a stream (trace pages): below a captured root, by the
    /// rules of [`crate::confine`].
    pub fn open(&self, path: &str) -> Result<std::fs::File, SysError> {
        if let Some(e) = self.replayed_error(path) {
            return Err(e);
        }
        if self.is_live() {
            std::fs::File::open(self.resolve(path))
        } else {
            crate::confine::open_file(&self.root, path)
        }
        .map_err(|e| SysError::from_io(path, e))
    }

    /// Read a whole file as bytes (capped at [`crate::confine::MAX_TEXT_FILE`] below a
    /// captured root).
    pub fn read_bytes(&self, path: &str) -> Result<Vec<u8>, SysError> {
        if let Some(e) = self.replayed_error(path) {
            return Err(e);
        }
        let result = if self.is_live() {
            std::fs::File::open(self.resolve(path)).and_then(|mut f| {
                // Some kernel files (tracefs `events/header_page`) answer only the first
                // read(): ask for plenty at once.
                let mut buf = Vec::with_capacity(64 * 1024);
                f.read_to_end(&mut buf).map(|_| buf)
            })
        } else {
            crate::confine::read_file(&self.root, path)
        };
        self.recorded(path, result)
    }

    /// What a read gave, noted for a snapshot being recorded: the bytes read, or why the
    /// file could not be read (a missing file is not noted).
    fn recorded(&self, path: &str, result: std::io::Result<Vec<u8>>) -> Result<Vec<u8>, SysError> {
        match result {
            Ok(buf) => {
                self.note(|r| {
                    r.files.insert(path.to_string(), buf.clone());
                });
                Ok(buf)
            }
            Err(e) => {
                let err = SysError::from_io(path, e);
                if !matches!(err, SysError::NotFound { .. }) {
                    self.note(|r| {
                        r.unreadable.insert(
                            path.to_string(),
                            Unreadable {
                                kind: err.kind().to_string(),
                                detail: err.to_string(),
                            },
                        );
                    });
                }
                Err(err)
            }
        }
    }

    /// The first line of a file (at most 64 KiB of it), for files isol only needs the head
    /// of (the apply journal's header): a snapshot then captures that line and no more.
    /// Only a regular file is opened.
    pub fn read_first_line(&self, path: &str) -> Result<String, SysError> {
        const HEAD: u64 = 64 << 10;
        if let Some(e) = self.replayed_error(path) {
            return Err(e);
        }
        let file = if self.is_live() {
            crate::confine::open_user_file(&self.resolve(path))
        } else {
            crate::confine::open_file(&self.root, path)
        };
        let result = file.and_then(|f| {
            let mut buf = Vec::new();
            f.take(HEAD).read_to_end(&mut buf)?;
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                buf.truncate(end + 1);
            }
            Ok(buf)
        });
        self.recorded(path, result)
            .map(|buf| String::from_utf8_lossy(&buf).into_owned())
    }

    /// Read a whole file as text (invalid UTF-8 is replaced).
    pub fn read(&self, path: &str) -> Result<String, SysError> {
        let bytes = self.read_bytes(path)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Read a file whose content the kernel never leaves empty; empty means masked.
    pub fn read_nonempty(&self, path: &str) -> Result<String, SysError> {
        let text = self.read(path)?;
        if text.trim().is_empty() {
            self.note(|r| {
                r.files.remove(path);
                r.unreadable.insert(
                    path.to_string(),
                    Unreadable {
                        kind: "masked".into(),
                        detail: format!("{path}: empty"),
                    },
                );
            });
            return Err(SysError::Masked {
                path: path.to_string(),
            });
        }
        Ok(text)
    }

    /// Read a one-line file, trimmed.
    pub fn read_line(&self, path: &str) -> Result<String, SysError> {
        Ok(self.read(path)?.trim().to_string())
    }

    /// The entry names of a directory, sorted.
    pub fn list(&self, path: &str) -> Result<Vec<String>, SysError> {
        let names = match self.listings.get(path) {
            Some(names) => names.clone(),
            None if self.is_live() => {
                let rd = std::fs::read_dir(self.resolve(path))
                    .map_err(|e| SysError::from_io(path, e))?;
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect();
                names.sort();
                names
            }
            None => {
                let mut names = crate::confine::list_dir(&self.root, path)
                    .map_err(|e| SysError::from_io(path, e))?;
                names.retain(|n| !(path == "/" && n == MANIFEST));
                names.sort();
                names
            }
        };
        self.note(|r| {
            r.dirs.insert(path.to_string(), names.clone());
        });
        Ok(names)
    }

    /// Whether a path exists under the root (below a captured root: a regular file or a
    /// directory reached without links).
    pub fn exists(&self, path: &str) -> bool {
        self.unreadable.contains_key(path)
            || if self.is_live() {
                self.resolve(path).exists()
            } else {
                crate::confine::exists(&self.root, path)
            }
    }
}

/// A directory entry name as a kernel gives it: not empty, no `/`, not `.` or `..`.
fn plain_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

impl Manifest {
    /// Refuse a manifest that names anything but plain entries in its listings, or paths
    /// that are not absolute kernel paths.
    pub fn check(&self) -> Result<(), crate::confine::Refusal> {
        let bad_path = |p: &str| {
            !p.starts_with('/') || p.split('/').any(|c| c == "." || c == "..") || p.contains('\0')
        };
        for (dir, names) in &self.listings {
            if bad_path(dir) {
                return Err(crate::confine::Refusal::new(
                    format!("{MANIFEST} listings"),
                    format!("{dir:?} is not an absolute kernel path"),
                ));
            }
            if let Some(n) = names.iter().find(|n| !plain_name(n)) {
                return Err(crate::confine::Refusal::new(
                    format!("{MANIFEST} listings"),
                    format!("{dir} lists {n:?}, which is not a plain file name"),
                ));
            }
        }
        if let Some(p) = self.unreadable.keys().find(|p| bad_path(p)) {
            return Err(crate::confine::Refusal::new(
                format!("{MANIFEST} unreadable"),
                format!("{p:?} is not an absolute kernel path"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_records() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.path().join("proc/sys/kernel/osrelease"), "6.12.0\n").unwrap();
        let (root, rec) = SysRoot::at(dir.path()).recording();
        assert_eq!(
            root.read_line("/proc/sys/kernel/osrelease").unwrap(),
            "6.12.0"
        );
        assert!(matches!(
            root.read("/proc/nope"),
            Err(SysError::NotFound { .. })
        ));
        assert_eq!(root.list("/proc/sys").unwrap(), vec!["kernel"]);
        let rec = rec.lock().unwrap();
        assert_eq!(rec.files["/proc/sys/kernel/osrelease"], b"6.12.0\n");
        assert_eq!(rec.dirs["/proc/sys"], vec!["kernel"]);
    }

    #[test]
    fn replays_unreadable_files_from_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::default();
        m.unreadable.insert(
            "/proc/timer_list".into(),
            Unreadable {
                kind: "needs root".into(),
                detail: "permission denied".into(),
            },
        );
        std::fs::write(dir.path().join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        let root = SysRoot::at(dir.path());
        assert!(matches!(
            root.read("/proc/timer_list"),
            Err(SysError::NeedsRoot { .. })
        ));
        assert!(
            root.list("/").unwrap().is_empty(),
            "manifest is not a kernel file"
        );
    }

    #[test]
    fn empty_file_reads_as_masked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/timer_list"), "").unwrap();
        let root = SysRoot::at(dir.path());
        let e = root.read_nonempty("/proc/timer_list").unwrap_err();
        assert_eq!(e.kind(), "masked");
    }
}
