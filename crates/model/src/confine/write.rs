//! Writing where others may have planted things: a captured tree isol changes ([`Tree`]),
//! and a directory isol creates files in ([`OutputDir`]). Both resolve every path from a
//! directory descriptor, one component at a time, never following a link.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

use super::{
    check_type, components, cstr, open_checked_from, open_subdir, read_capped, refused,
    MAX_TEXT_FILE, WALK_LIMITS,
};

/// A captured tree that isol changes (`isol --root DIR apply` rehearses on a copy of a
/// machine): opened once, and every path below it resolved from that descriptor one
/// component at a time, no link followed, so that nothing planted in the tree, before or
/// during the run, leads a read or a write outside it.
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    path: std::path::PathBuf,
}

impl Tree {
    /// Open the directory `path` (the user named it: it may be a link to a directory).
    pub fn open(path: &Path) -> io::Result<Tree> {
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(Tree {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory as the user named it, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same tree, through a second descriptor.
    pub fn try_clone(&self) -> io::Result<Tree> {
        Ok(Tree {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    fn top(&self) -> io::Result<OwnedFd> {
        rustix::fs::openat(
            &self.fd,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    /// Read the regular file `rel` whole (capped at [`MAX_TEXT_FILE`]).
    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        let fd = open_checked_from(self.top()?, rel, false, OFlags::RDONLY)?;
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io::Error::from)?;
        read_capped(File::from(fd), MAX_TEXT_FILE)
    }

    /// Open the regular file `rel`, which must exist, for writing (never created, never
    /// a link, a FIFO or a device, one link only).
    pub fn open_write(&self, rel: &str) -> io::Result<File> {
        let fd = open_checked_from(self.top()?, rel, false, OFlags::WRONLY)?;
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io::Error::from)?;
        Ok(File::from(fd))
    }

    /// The directory `rel`, created with `mode` where missing, one component at a time
    /// (`mkdirat`, then opened with `O_NOFOLLOW`): a link planted anywhere on the way is
    /// refused, never followed.
    pub fn create_dirs(&self, rel: &str, mode: u32) -> io::Result<OwnedFd> {
        let parts = components(rel.trim_start_matches('/'), &WALK_LIMITS).map_err(refused)?;
        let mut dir = self.top()?;
        for c in parts {
            let name = cstr(c)?;
            match rustix::fs::mkdirat(&dir, name.as_c_str(), Mode::from_raw_mode(mode)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let st = rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io::Error::from)?;
            check_type(&st, true)?;
            dir = open_subdir(&dir, &name)?;
        }
        Ok(dir)
    }
}

/// A directory isol writes into: created by isol, or empty, owned by the caller and
/// writable by nobody else. Files are created relative to its descriptor.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
    path: std::path::PathBuf,
}

impl OutputDir {
    /// Create `path` (its parents too), or take it if it exists, is a real directory (not
    /// a link), is empty, belongs to the caller and is writable by nobody else.
    pub fn create(path: &Path) -> io::Result<OutputDir> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let created = match std::fs::create_dir(path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                refused("is a symbolic link or not a directory; choose a new directory")
            } else {
                e
            }
        })?;
        let st = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
        if !created {
            let euid = rustix::process::geteuid().as_raw();
            if st.st_uid != euid {
                return Err(refused(format!(
                    "exists and belongs to uid {}, not to isol's user (uid {euid}); choose a new directory",
                    st.st_uid
                )));
            }
            if st.st_mode & 0o022 != 0 {
                return Err(refused(format!(
                    "exists and others may write to it (mode {:o}); choose a new directory",
                    st.st_mode & 0o7777
                )));
            }
            let mut d = rustix::fs::Dir::read_from(fd.as_fd()).map_err(io::Error::from)?;
            let nonempty = d.any(|e| {
                e.map(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
                    .unwrap_or(true)
            });
            if nonempty {
                return Err(refused(
                    "exists and is not empty; choose a new or empty directory",
                ));
            }
        }
        Ok(OutputDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the new file `rel` (and its missing parent directories) below this
    /// directory: `O_EXCL | O_NOFOLLOW` at every step, so nothing planted is followed or
    /// overwritten.
    pub fn create_file(&self, rel: &str) -> io::Result<File> {
        let parts = components(rel, &WALK_LIMITS).map_err(refused)?;
        let (last, parents) = parts.split_last().expect("components are never empty");
        let mut dir = rustix::fs::openat(
            &self.fd,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        for c in parents {
            let name = cstr(c)?;
            match rustix::fs::mkdirat(&dir, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            dir = open_subdir(&dir, &name)?;
        }
        let fd = rustix::fs::openat(
            &dir,
            cstr(last)?.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(io::Error::from)?;
        Ok(File::from(fd))
    }
}
