//! Where apply and restore write: the running kernel, or a captured tree that behaves like it.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::confine::Tree;
use crate::cpus::CpuSet;

/// The operations apply and restore need. Paths are absolute machine paths (`/proc/...`).
pub trait System {
    /// The text of a file.
    fn read(&self, path: &str) -> io::Result<String>;
    /// Write `value` to a file that exists (never creates one).
    fn write(&mut self, path: &str, value: &str) -> io::Result<()>;
    /// A thread's CPU affinity and its start time (clock ticks after boot).
    fn affinity(&self, pid: u32, tid: u32) -> io::Result<(CpuSet, u64)>;
    /// Set a thread's CPU affinity.
    fn set_affinity(&mut self, pid: u32, tid: u32, cpus: &CpuSet) -> io::Result<()>;
}

/// The parts of a thread's `stat` apply needs.
fn stat(text: &str) -> io::Result<crate::kernel::threads::Stat> {
    crate::kernel::threads::parse_stat(text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

fn read_nofollow(path: &Path) -> io::Result<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// A file the kernel created without any write permission (the affinity of an IRQ that
/// user space may not move is mode 0444) refuses a value; it is not a missing privilege.
/// Only root without `CAP_DAC_OVERRIDE` (a hardened unit) sees it as `EACCES`.
fn read_only(path: &str, e: io::Error) -> io::Error {
    use std::os::unix::fs::PermissionsExt;
    let no_write =
        std::fs::symlink_metadata(path).is_ok_and(|m| m.permissions().mode() & 0o222 == 0);
    if e.raw_os_error() == Some(libc::EACCES) && no_write {
        io::Error::other("the kernel made the file read-only: it takes no new value")
    } else {
        e
    }
}

/// The running kernel.
#[derive(Debug, Default)]
pub struct LiveSystem;

impl System for LiveSystem {
    fn read(&self, path: &str) -> io::Result<String> {
        read_nofollow(Path::new(path))
    }

    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| read_only(path, e))?;
        // One write call: sysfs and procfs files take the value in one piece.
        f.write_all(format!("{value}\n").as_bytes())
    }

    fn affinity(&self, pid: u32, tid: u32) -> io::Result<(CpuSet, u64)> {
        let stat = self.read(&format!("/proc/{pid}/task/{tid}/stat"))?;
        Ok((crate::os::affinity_of(tid)?, self::stat(&stat)?.start_time))
    }

    fn set_affinity(&mut self, _pid: u32, tid: u32, cpus: &CpuSet) -> io::Result<()> {
        crate::os::set_affinity_of(tid, cpus)
    }
}

/// A captured tree (an `isol snapshot` directory, or a test fixture) that answers like the
/// kernel for what apply writes: a choice file keeps its words and moves the brackets, a
/// thread's affinity is the `Cpus_allowed_list` line of its `status`. The tree is opened
/// once and every path is resolved from it one component at a time with no link followed
/// ([`Tree`]): nothing planted in it, before or during the run, is written through.
#[derive(Debug)]
pub struct DirSystem {
    tree: Tree,
}

impl DirSystem {
    /// The tree rooted at `root` (a directory; the name the user gave may be a link).
    pub fn open(root: impl AsRef<Path>) -> io::Result<DirSystem> {
        Ok(DirSystem {
            tree: Tree::open(root.as_ref())?,
        })
    }

    /// The tree, for the state directory kept inside it.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    fn replace(&self, path: &str, text: &str) -> io::Result<()> {
        let mut f = self.tree.open_write(path)?;
        f.set_len(0)?;
        f.write_all(text.as_bytes())
    }
}

impl System for DirSystem {
    fn read(&self, path: &str) -> io::Result<String> {
        String::from_utf8(self.tree.read(path)?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
    }

    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        let now = self.read(path)?;
        let text = if now.contains('[') {
            // A choice file: only its words may be chosen.
            let words: Vec<&str> = now
                .split_whitespace()
                .map(|w| w.trim_start_matches('[').trim_end_matches(']'))
                .collect();
            if !words.contains(&value) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let marked: Vec<String> = words
                .iter()
                .map(|w| {
                    if *w == value {
                        format!("[{w}]")
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            format!("{}\n", marked.join(" "))
        } else {
            format!("{value}\n")
        };
        self.replace(path, &text)
    }

    fn affinity(&self, pid: u32, tid: u32) -> io::Result<(CpuSet, u64)> {
        let dir = format!("/proc/{pid}/task/{tid}");
        let status = self.read(&format!("{dir}/status"))?;
        let allowed = crate::kernel::threads::parse_status_allowed(&status)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Cpus_allowed_list"))?;
        let started = stat(&self.read(&format!("{dir}/stat"))?)?.start_time;
        Ok((allowed, started))
    }

    fn set_affinity(&mut self, pid: u32, tid: u32, cpus: &CpuSet) -> io::Result<()> {
        let path = format!("/proc/{pid}/task/{tid}/status");
        let status = self.read(&path)?;
        let flags = stat(&self.read(&format!("/proc/{pid}/task/{tid}/stat"))?)?.flags;
        // A bound per-CPU kernel thread refuses, as the kernel does.
        if flags & crate::kernel::threads::PF_NO_SETAFFINITY != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let text: String = status
            .lines()
            .map(|l| {
                if l.starts_with("Cpus_allowed_list:") {
                    format!("Cpus_allowed_list:\t{}\n", cpus.to_list())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        self.replace(&path, &text)
    }
}
