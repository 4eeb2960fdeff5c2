//! Where apply and restore write: the running kernel, or a captured tree that behaves like it.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
            .open(path)?;
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
/// thread's affinity is the `Cpus_allowed_list` line of its `status`. Nothing outside the
/// directory is touched, and links are never followed.
#[derive(Debug, Clone)]
pub struct DirSystem {
    root: PathBuf,
}

impl DirSystem {
    /// A tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DirSystem {
        DirSystem { root: root.into() }
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn replace(&self, path: &str, text: &str) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.at(path))?;
        f.write_all(text.as_bytes())
    }
}

impl System for DirSystem {
    fn read(&self, path: &str) -> io::Result<String> {
        read_nofollow(&self.at(path))
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
