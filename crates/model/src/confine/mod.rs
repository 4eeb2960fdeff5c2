//! Files that cross a trust boundary.
//!
//! Snapshots (`isol snapshot`) and recordings (`isol watch --record`) are made to be
//! attached to bug reports, and a maintainer reads them, usually as root. So a captured tree
//! is untrusted input: it may hold symbolic or hard links to the reader's secrets, FIFOs
//! and device nodes that hang or never end, paths that climb out with `..`, and files or
//! archives far larger than any kernel writes. Output directories (`--record DIR`) may sit
//! where another local user can plant links.
//!
//! The rules this module enforces:
//! * **Reading a captured tree** opens one component at a time from the tree's root with
//!   `O_NOFOLLOW`, and only ever opens a regular file with one link, or a directory. A
//!   symbolic link, hard link, FIFO, socket or device node is refused before it is opened,
//!   and the file's identity is checked again after opening (no swap between the two).
//! * **Every read is capped** ([`Limits`]); a tree is scanned once before use
//!   ([`scan_tree`]) against caps on file size, total size, entry count, depth and path
//!   length, and refused with the member and the reason.
//! * **Writing** goes through a directory isol created itself, or an empty one owned by the
//!   caller that nobody else can write; files in it are created with `O_EXCL | O_NOFOLLOW`
//!   relative to the directory's descriptor, never by name from the top.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

mod write;
pub use write::{OutputDir, Tree};

/// Caps on what isol reads from an untrusted tree or archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one file.
    pub max_file: u64,
    /// Bytes of one file of trace pages (`trace_pipe_raw`, streamed, never read whole).
    pub max_pages: u64,
    /// Bytes of all files together.
    pub max_total: u64,
    /// Files and directories in the tree.
    pub max_entries: u64,
    /// Path components below the root.
    pub max_depth: usize,
    /// Bytes of one path below the root.
    pub max_path: usize,
}

/// Caps for snapshots: a 2-CPU machine's snapshot holds ~500 files and 2 MB; these leave
/// room for machines with hundreds of CPUs and tens of thousands of threads.
pub const SNAPSHOT_LIMITS: Limits = Limits {
    max_file: 64 << 20,
    max_pages: 64 << 20,
    max_total: 256 << 20,
    max_entries: 500_000,
    max_depth: 32,
    max_path: 1024,
};

/// Caps for recordings: the pages of one CPU may be large (they are streamed, never read
/// whole); every other file is read whole and capped at [`MAX_TEXT_FILE`].
pub const RECORDING_LIMITS: Limits = Limits {
    max_file: MAX_TEXT_FILE,
    max_pages: 4 << 30,
    max_total: 16 << 30,
    max_entries: 100_000,
    max_depth: 32,
    max_path: 1024,
};

/// The most isol reads whole from one kernel file of a captured tree (the biggest real
/// ones, `/proc/kallsyms` and `timer_list` of large machines, are a few MB).
pub const MAX_TEXT_FILE: u64 = 64 << 20;

/// The name of a file of trace pages, which [`Limits::max_pages`] caps.
pub const PAGES_FILE: &str = "trace_pipe_raw";

/// The most entries isol lists from one directory of a captured tree.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// A member of an untrusted tree or archive that isol will not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {why}", shorten(member))]
pub struct Refusal {
    /// The member, relative to the tree's root (or the archive's).
    pub member: String,
    /// Why it was refused.
    pub why: String,
}

impl Refusal {
    /// Refuse `member` for `why`.
    pub fn new(member: impl Into<String>, why: impl Into<String>) -> Refusal {
        Refusal {
            member: member.into(),
            why: why.into(),
        }
    }
}

/// A member name fit for a one-line message: long ones keep their start and end.
fn shorten(name: &str) -> String {
    const KEEP: usize = 60;
    if name.len() <= 2 * KEEP + 3 {
        return name.to_string();
    }
    let mut start = KEEP;
    while !name.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = name.len() - KEEP;
    while !name.is_char_boundary(end) {
        end += 1;
    }
    format!("{}...{}", &name[..start], &name[end..])
}

fn refused(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn mib(n: u64) -> String {
    format!("{} MiB", n >> 20)
}

/// The components of a relative member name, checked: not absolute, no `.` or `..`, no
/// NUL, within the depth and length caps. Empty components (`a//b`, a trailing `/`) are
/// skipped.
pub fn components<'a>(name: &'a str, limits: &Limits) -> Result<Vec<&'a str>, String> {
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    if name.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let parts: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err("path contains `.` or `..`".into());
    }
    if parts.len() > limits.max_depth {
        return Err(format!(
            "path is {} levels deep, more than the {} isol accepts",
            parts.len(),
            limits.max_depth
        ));
    }
    if name.len() > limits.max_path {
        return Err(format!(
            "path is {} bytes long, more than the {} isol accepts",
            name.len(),
            limits.max_path
        ));
    }
    if parts.is_empty() {
        return Err("empty path".into());
    }
    Ok(parts)
}

/// What [`scan_tree`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes in the files.
    pub bytes: u64,
}

fn kind_word(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "is a symbolic link"
    } else if ft.is_fifo() {
        "is a FIFO"
    } else if ft.is_socket() {
        "is a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "is a device node"
    } else {
        "is not a regular file or directory"
    }
}

/// Walk `dir` without following any link and check every member against `limits`: only
/// regular files with one link and directories, within the caps. `dir` itself may be a
/// link (the caller named it).
pub fn scan_tree(dir: &Path, limits: &Limits) -> Result<TreeStats, Refusal> {
    let top = std::fs::metadata(dir)
        .map_err(|e| Refusal::new(dir.display().to_string(), e.to_string()))?;
    if !top.is_dir() {
        return Err(Refusal::new(
            dir.display().to_string(),
            "is not a directory",
        ));
    }
    let mut stats = TreeStats::default();
    let mut stack: Vec<(std::path::PathBuf, String, usize)> = vec![(dir.into(), String::new(), 0)];
    while let Some((path, rel, depth)) = stack.pop() {
        let rd = std::fs::read_dir(&path).map_err(|e| Refusal::new(rel.clone(), e.to_string()))?;
        for entry in rd {
            let entry = entry.map_err(|e| Refusal::new(rel.clone(), e.to_string()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let member = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if depth + 1 > limits.max_depth {
                return Err(Refusal::new(
                    member,
                    format!("more than {} levels deep", limits.max_depth),
                ));
            }
            if member.len() > limits.max_path {
                return Err(Refusal::new(
                    member,
                    format!("path longer than {} bytes", limits.max_path),
                ));
            }
            stats.files += 1;
            if stats.files + stats.dirs > limits.max_entries {
                return Err(Refusal::new(
                    member,
                    format!("more than {} entries", limits.max_entries),
                ));
            }
            let meta = entry
                .metadata()
                .map_err(|e| Refusal::new(member.clone(), e.to_string()))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                stats.files -= 1;
                stats.dirs += 1;
                stack.push((entry.path(), member, depth + 1));
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    return Err(Refusal::new(
                        member,
                        format!(
                            "has {} hard links; a captured tree holds only plain files",
                            meta.nlink()
                        ),
                    ));
                }
                let cap = if name == PAGES_FILE {
                    limits.max_pages
                } else {
                    limits.max_file
                };
                if meta.len() > cap {
                    return Err(Refusal::new(
                        member,
                        format!(
                            "{} bytes, more than the {} isol reads from one file",
                            meta.len(),
                            mib(cap)
                        ),
                    ));
                }
                stats.bytes += meta.len();
                if stats.bytes > limits.max_total {
                    return Err(Refusal::new(
                        member,
                        format!("the tree holds more than {}", mib(limits.max_total)),
                    ));
                }
            } else {
                return Err(Refusal::new(
                    member,
                    format!(
                        "{}; a captured tree holds only regular files and directories",
                        kind_word(ft)
                    ),
                ));
            }
        }
    }
    Ok(stats)
}

/// The path rules of one open below a root (the tree's own caps were checked by
/// [`scan_tree`] or the extraction).
const WALK_LIMITS: Limits = Limits {
    max_path: 4096,
    max_depth: 64,
    ..SNAPSHOT_LIMITS
};

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| refused("path contains a NUL byte"))
}

/// Open `root` and walk `rel`'s directories one at a time, never following a link.
/// Returns the innermost directory and the last component.
fn walk<'a>(root: &Path, rel: &'a str) -> io::Result<(OwnedFd, Option<&'a str>)> {
    walk_from(File::open(root)?.into(), rel)
}

/// [`walk`] from a directory already open.
fn walk_from(mut dir: OwnedFd, rel: &str) -> io::Result<(OwnedFd, Option<&str>)> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return Ok((dir, None));
    }
    let parts = components(rel, &WALK_LIMITS).map_err(refused)?;
    let (last, parents) = parts.split_last().expect("components are never empty");
    for c in parents {
        let name = cstr(c)?;
        let st = rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)?;
        check_type(&st, true)?;
        dir = open_subdir(&dir, &name)?;
    }
    Ok((dir, Some(last)))
}

/// Open the directory `name` in `dir`, refusing a link.
fn open_subdir(dir: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| link_error(e.into()))
}

/// `O_NOFOLLOW` on a link answers ELOOP (or ENOTDIR with `O_DIRECTORY`): say what it is.
fn link_error(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        refused("a symbolic link; isol does not follow links in a captured tree")
    } else {
        e
    }
}

fn check_type(st: &rustix::fs::Stat, want_dir: bool) -> io::Result<()> {
    let ft = FileType::from_raw_mode(st.st_mode);
    match ft {
        FileType::Directory if want_dir => Ok(()),
        FileType::RegularFile if !want_dir => {
            if st.st_nlink > 1 {
                Err(refused(format!(
                    "has {} hard links; isol reads only plain files in a captured tree",
                    st.st_nlink
                )))
            } else {
                Ok(())
            }
        }
        FileType::Directory => Err(io::Error::from_raw_os_error(libc::EISDIR)),
        FileType::RegularFile => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        FileType::Symlink if want_dir => Err(refused(
            "a symbolic link; isol does not follow links in a captured tree",
        )),
        FileType::Symlink => Err(refused(
            "a symbolic link; isol does not follow links in a captured tree",
        )),
        FileType::Fifo => Err(refused("a FIFO; isol reads only regular files")),
        FileType::Socket => Err(refused("a socket; isol reads only regular files")),
        _ => Err(refused("a device node; isol reads only regular files")),
    }
}

fn open_checked(root: &Path, rel: &str, want_dir: bool) -> io::Result<OwnedFd> {
    open_checked_from(File::open(root)?.into(), rel, want_dir, OFlags::RDONLY)
}

/// Open `rel` below the directory `top` with `access` (read or write), as [`open_file`]
/// does: one component at a time, no link followed, its type checked before and after.
fn open_checked_from(
    top: OwnedFd,
    rel: &str,
    want_dir: bool,
    access: OFlags,
) -> io::Result<OwnedFd> {
    let (dir, last) = walk_from(top, rel)?;
    let Some(last) = last else {
        return if want_dir {
            Ok(dir)
        } else {
            Err(io::Error::from_raw_os_error(libc::EISDIR))
        };
    };
    let name = cstr(last)?;
    // Look before opening: opening a FIFO or a device has effects of its own.
    let before = rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io::Error::from)?;
    check_type(&before, want_dir)?;
    let mut flags = access | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if want_dir {
        flags |= OFlags::DIRECTORY;
    } else {
        flags |= OFlags::NOCTTY;
    }
    let fd = rustix::fs::openat(&dir, name.as_c_str(), flags, Mode::empty())
        .map_err(|e| link_error(e.into()))?;
    let after = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
    check_type(&after, want_dir)?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(refused("changed while isol opened it"));
    }
    Ok(fd)
}

/// Open the regular file `rel` below `root` for reading, without following any link:
/// see the module rules.
pub fn open_file(root: &Path, rel: &str) -> io::Result<File> {
    let fd = open_checked(root, rel, false)?;
    // Reads of a regular file never block; clear O_NONBLOCK all the same.
    rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io::Error::from)?;
    Ok(File::from(fd))
}

/// Read `r` whole, refusing more than `cap` bytes.
pub fn read_capped(r: impl Read, cap: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(refused(format!(
            "larger than the {} isol reads from one file",
            mib(cap)
        )));
    }
    Ok(buf)
}

/// Read the regular file `rel` below `root` whole, capped at [`MAX_TEXT_FILE`].
pub fn read_file(root: &Path, rel: &str) -> io::Result<Vec<u8>> {
    read_capped(open_file(root, rel)?, MAX_TEXT_FILE)
}

/// The entry names of the directory `rel` below `root`, without following any link.
pub fn list_dir(root: &Path, rel: &str) -> io::Result<Vec<String>> {
    let fd = open_checked(root, rel, true)?;
    let dir = rustix::fs::Dir::read_from(fd.as_fd()).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for e in dir {
        let e = e.map_err(io::Error::from)?;
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        if names.len() >= MAX_DIR_ENTRIES {
            return Err(refused(format!(
                "more than {MAX_DIR_ENTRIES} entries in one directory"
            )));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Whether `rel` below `root` is a regular file or a directory, reached without links.
pub fn exists(root: &Path, rel: &str) -> bool {
    let Ok((dir, last)) = walk(root, rel) else {
        return false;
    };
    let Some(last) = last else {
        return true;
    };
    let Ok(name) = cstr(last) else {
        return false;
    };
    rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        matches!(
            FileType::from_raw_mode(st.st_mode),
            FileType::RegularFile | FileType::Directory
        )
    })
}

/// Open a file a user named (`--root ARCHIVE`, `--compare F`): it may be a link the user
/// made, but it must end at a regular file (not a FIFO or a device, which could hang or
/// never end).
pub fn open_user_file(path: &Path) -> io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(refused(format!(
            "{}; give a regular file",
            kind_word(meta.file_type())
        )));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(refused("is not a regular file"));
    }
    rustix::fs::fcntl_setfl(&f, OFlags::empty()).map_err(io::Error::from)?;
    Ok(f)
}

/// Read a file a user named, as [`open_user_file`] opens it, up to `cap` bytes.
pub fn read_user_file(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let f = open_user_file(path)?;
    let len = f.metadata()?.len();
    if len > cap {
        return Err(refused(format!(
            "{len} bytes, more than the {} isol reads",
            mib(cap)
        )));
    }
    read_capped(f, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("proc/sys")).unwrap();
        std::fs::write(d.path().join("proc/cmdline"), "nohz_full=1\n").unwrap();
        d
    }

    #[test]
    fn regular_files_read_and_list() {
        let d = tree();
        assert_eq!(
            read_file(d.path(), "/proc/cmdline").unwrap(),
            b"nohz_full=1\n"
        );
        let mut l = list_dir(d.path(), "/proc").unwrap();
        l.sort();
        assert_eq!(l, ["cmdline", "sys"]);
        assert!(exists(d.path(), "/proc/sys"));
        assert!(!exists(d.path(), "/proc/nope"));
        assert_eq!(
            read_file(d.path(), "/proc/nope").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let s = scan_tree(d.path(), &SNAPSHOT_LIMITS).unwrap();
        assert_eq!((s.files, s.dirs, s.bytes), (1, 2, 12));
    }

    #[test]
    fn links_fifos_and_climbing_are_refused() {
        let d = tree();
        symlink("/etc/passwd", d.path().join("proc/secret")).unwrap();
        symlink("/etc", d.path().join("etc")).unwrap();
        std::fs::hard_link(d.path().join("proc/cmdline"), d.path().join("proc/hard")).unwrap();
        isol_sys::process::mkfifo(&d.path().join("proc/fifo"), 0o644).unwrap();
        for (rel, word) in [
            ("/proc/secret", "symbolic link"),
            ("/etc/passwd", "symbolic link"),
            ("/proc/hard", "hard links"),
            ("/proc/fifo", "FIFO"),
            ("/proc/../../etc/passwd", ".."),
        ] {
            let e = read_file(d.path(), rel).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{rel}: {e}");
            assert!(e.to_string().contains(word), "{rel}: {e}");
        }
        assert!(!exists(d.path(), "/proc/secret"));
        assert!(list_dir(d.path(), "/etc").is_err());
        let r = scan_tree(d.path(), &SNAPSHOT_LIMITS).unwrap_err();
        assert!(
            r.why.contains("symbolic link")
                || r.why.contains("hard links")
                || r.why.contains("FIFO"),
            "{r}"
        );
    }

    #[test]
    fn caps_hold() {
        let d = tree();
        let limits = Limits {
            max_file: 4,
            ..SNAPSHOT_LIMITS
        };
        let r = scan_tree(d.path(), &limits).unwrap_err();
        assert_eq!(r.member, "proc/cmdline");
        assert!(read_capped(&b"12345"[..], 4).is_err());
        assert_eq!(read_capped(&b"1234"[..], 4).unwrap(), b"1234");
        let deep = "a/".repeat(40) + "f";
        assert!(components(&deep, &SNAPSHOT_LIMITS)
            .unwrap_err()
            .contains("levels deep"));
        assert!(components("/etc/x", &SNAPSHOT_LIMITS).is_err());
        assert_eq!(
            components("proc//x/", &SNAPSHOT_LIMITS).unwrap(),
            ["proc", "x"]
        );
    }

    #[test]
    fn output_dir_refuses_what_others_control() {
        let d = tempfile::tempdir().unwrap();
        let out = OutputDir::create(&d.path().join("new/rec")).unwrap();
        out.create_file("sys/kernel/x").unwrap();
        assert!(out.create_file("sys/kernel/x").is_err(), "O_EXCL");
        // A planted link is not followed.
        symlink("/etc", d.path().join("new/rec/proc")).unwrap();
        assert!(out.create_file("proc/kallsyms").is_err());
        // An existing non-empty directory, a link, a world-writable directory.
        assert!(OutputDir::create(&d.path().join("new/rec")).is_err());
        symlink(d.path().join("new"), d.path().join("link")).unwrap();
        assert!(OutputDir::create(&d.path().join("link")).is_err());
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = OutputDir::create(&open).unwrap_err();
        assert!(e.to_string().contains("others may write"), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
        OutputDir::create(&open).unwrap();
    }

    #[test]
    fn user_files_must_be_regular() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        isol_sys::process::mkfifo(&fifo, 0o644).unwrap();
        assert!(read_user_file(&fifo, 100)
            .unwrap_err()
            .to_string()
            .contains("FIFO"));
        assert!(read_user_file(Path::new("/dev/zero"), 100).is_err());
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; 200]).unwrap();
        assert!(read_user_file(&big, 100).is_err());
        assert_eq!(read_user_file(&big, 200).unwrap().len(), 200);
    }
}
