//! Snapshots: every kernel file the model reads, in one `.tar.gz`, so a bug report carries
//! the machine and tests replay real kernels.
//!
//! The archive holds the files at their kernel paths (`proc/interrupts`, `sys/devices/...`)
//! plus a manifest ([`crate::sysroot::MANIFEST`]) recording the kernel, the host, and the
//! files that existed but could not be read. Extracted, it is a directory that
//! [`SysRoot::at`] replays.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::confine::{self, Refusal, SNAPSHOT_LIMITS};
use crate::kernel::KernelModel;
use crate::sysroot::{Manifest, SysRoot, MANIFEST};

/// Snapshot format version.
pub const FORMAT: u32 = 1;

/// A snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot write snapshot {path}: {source}")]
    /// The archive could not be written.
    Write {
        /// The archive.
        path: PathBuf,
        #[source]
        /// Why.
        source: io::Error,
    },
    #[error("cannot read snapshot {path}: {source} (is it a .tar.gz made by `isol snapshot`?)")]
    /// The archive could not be read.
    Read {
        /// The archive.
        path: PathBuf,
        #[source]
        /// Why.
        source: io::Error,
    },
    /// The archive or tree holds something isol will not read (see [`crate::confine`]).
    #[error("snapshot {path} refused: {refusal}")]
    Refused {
        /// The archive or tree.
        path: PathBuf,
        /// What was refused, and why.
        refusal: Refusal,
    },
    /// Extraction was stopped (a signal); what was extracted is for the caller to remove.
    #[error("reading snapshot {path} was interrupted")]
    Interrupted {
        /// The archive.
        path: PathBuf,
    },
}

/// What a capture produced.
#[derive(Debug)]
pub struct Captured {
    /// What was captured and what could not be read.
    pub manifest: Manifest,
    /// Number of files in the archive (manifest excluded).
    pub files: usize,
    /// The gzip-compressed tar archive.
    pub archive: Vec<u8>,
}

/// Read the whole kernel model through a recording root and archive what it read.
pub fn capture(root: &SysRoot, note: &str) -> io::Result<Captured> {
    let (rec_root, rec) = root.recording();
    let model = KernelModel::load(&rec_root);
    let rec = std::mem::take(&mut *rec.lock().unwrap_or_else(|p| p.into_inner()));
    let manifest = Manifest {
        format: FORMAT,
        isol_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel: model.release.as_ref().cloned().unwrap_or_default(),
        hostname: root
            .read_line("/proc/sys/kernel/hostname")
            .unwrap_or_default(),
        taken_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        note: note.to_string(),
        unreadable: rec.unreadable,
        listings: rec.dirs.clone(),
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = manifest.taken_at_unix;
    let mut add = |path: &str, data: &[u8], dir: bool| -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_mtime(mtime);
        h.set_size(if dir { 0 } else { data.len() as u64 });
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        let name = path.trim_start_matches('/');
        let name = if dir {
            format!("{name}/")
        } else {
            name.to_string()
        };
        tar.append_data(&mut h, name, data)
    };
    add(
        MANIFEST,
        &serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?,
        false,
    )?;
    for d in rec.dirs.keys().filter(|d| *d != "/") {
        add(d, &[], true)?;
    }
    for (path, data) in &rec.files {
        add(path, data, false)?;
    }
    let archive = tar.into_inner()?.finish()?;
    Ok(Captured {
        manifest,
        files: rec.files.len(),
        archive,
    })
}

/// Write a capture to `path`.
pub fn write(captured: &Captured, path: &Path) -> Result<(), SnapshotError> {
    let err = |source| SnapshotError::Write {
        path: path.to_path_buf(),
        source,
    };
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOFOLLOW: a link planted at the output path is not followed.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    f.write_all(&captured.archive).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Extract a snapshot archive into `dir` (created if needed); returns its manifest.
///
/// The archive is untrusted: only regular files and directories are extracted, each
/// member's path is confined to `dir` ([`confine::components`]), and the caps of
/// [`SNAPSHOT_LIMITS`] hold on member size, total size, member count, depth and path
/// length. The first member that breaks a rule refuses the whole archive, naming it.
/// `stop` is asked between members; when it says yes, extraction ends with
/// [`SnapshotError::Interrupted`]. On any error the caller removes `dir`.
pub fn extract(
    archive: &Path,
    dir: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<Manifest, SnapshotError> {
    let err = |source| SnapshotError::Read {
        path: archive.to_path_buf(),
        source,
    };
    let refuse = |member: &str, why: String| SnapshotError::Refused {
        path: archive.to_path_buf(),
        refusal: Refusal::new(member, why),
    };
    let limits = SNAPSHOT_LIMITS;
    let f = confine::open_user_file(archive).map_err(err)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    std::fs::create_dir_all(dir).map_err(err)?;
    let (mut entries, mut total) = (0u64, 0u64);
    for entry in tar.entries().map_err(err)? {
        if stop() {
            return Err(SnapshotError::Interrupted {
                path: archive.to_path_buf(),
            });
        }
        let mut entry = entry.map_err(err)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        entries += 1;
        if entries > limits.max_entries {
            return Err(refuse(
                &name,
                format!("the archive has more than {} members", limits.max_entries),
            ));
        }
        let parts = confine::components(&name, &limits).map_err(|why| refuse(&name, why))?;
        let ty = entry.header().entry_type();
        let is_dir = ty == tar::EntryType::Directory;
        if !is_dir && ty != tar::EntryType::Regular && ty != tar::EntryType::Continuous {
            return Err(refuse(
                &name,
                format!(
                    "is a {}; a snapshot holds only regular files and directories",
                    entry_kind(ty)
                ),
            ));
        }
        let size = entry.header().size().map_err(err)?;
        if size > limits.max_file {
            return Err(refuse(
                &name,
                format!(
                    "{size} bytes, more than the {} MiB isol reads from one file",
                    limits.max_file >> 20
                ),
            ));
        }
        total += size;
        if total > limits.max_total {
            return Err(refuse(
                &name,
                format!(
                    "the archive unpacks to more than {} MiB",
                    limits.max_total >> 20
                ),
            ));
        }
        let mut path = dir.to_path_buf();
        for c in &parts {
            path.push(c);
        }
        if is_dir {
            std::fs::create_dir_all(&path).map_err(err)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        // create_new: O_EXCL, which also refuses to follow a link at the final component.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    refuse(&name, "appears twice in the archive".into())
                } else {
                    err(e)
                }
            })?;
        let copied =
            io::copy(&mut (&mut entry).take(limits.max_file + 1), &mut out).map_err(err)?;
        if copied != size {
            return Err(refuse(
                &name,
                format!("holds {copied} bytes where its header says {size}"),
            ));
        }
    }
    let m = confine::read_file(dir, MANIFEST).map_err(err)?;
    let manifest: Manifest = serde_json::from_slice(&m)
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    manifest.check().map_err(|refusal| SnapshotError::Refused {
        path: archive.to_path_buf(),
        refusal,
    })?;
    Ok(manifest)
}

fn entry_kind(ty: tar::EntryType) -> &'static str {
    match ty {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Fifo => "FIFO",
        tar::EntryType::Char | tar::EntryType::Block => "device node",
        _ => "special member",
    }
}

/// Check a captured directory before replaying it: the tree obeys [`SNAPSHOT_LIMITS`]
/// (or `limits`) and its manifest, if any, names only plain entries.
pub fn check_tree(dir: &Path, limits: &confine::Limits) -> Result<(), SnapshotError> {
    let refused = |refusal| SnapshotError::Refused {
        path: dir.to_path_buf(),
        refusal,
    };
    confine::scan_tree(dir, limits).map_err(refused)?;
    if confine::exists(dir, MANIFEST) {
        let m = confine::read_file(dir, MANIFEST).map_err(|e| SnapshotError::Read {
            path: dir.join(MANIFEST),
            source: e,
        })?;
        if let Ok(m) = serde_json::from_slice::<Manifest>(&m) {
            m.check().map_err(refused)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_and_replay_round_trip() {
        let src = tempfile::tempdir().unwrap();
        let p = src.path();
        std::fs::create_dir_all(p.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(p.join("sys/devices/system/cpu")).unwrap();
        std::fs::write(
            p.join("proc/sys/kernel/osrelease"),
            "6.12.57+deb13-cloud-amd64\n",
        )
        .unwrap();
        std::fs::write(p.join("proc/cmdline"), "nohz_full=1\n").unwrap();
        std::fs::write(p.join("sys/devices/system/cpu/online"), "0-1\n").unwrap();
        std::fs::write(p.join("sys/devices/system/cpu/nohz_full"), "1\n").unwrap();
        let cap = capture(&SysRoot::at(p), "test").unwrap();
        assert_eq!(cap.manifest.kernel, "6.12.57+deb13-cloud-amd64");
        assert!(cap.files >= 4);

        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("snap.tar.gz");
        write(&cap, &file).unwrap();
        let dir = out.path().join("x");
        let m = extract(&file, &dir, &|| false).unwrap();
        assert_eq!(m.note, "test");
        let a = KernelModel::load(&SysRoot::at(p));
        let b = KernelModel::load(&SysRoot::at(&dir));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap(),
            "the replayed model equals the captured one"
        );
    }

    #[test]
    fn extract_rejects_non_archives() {
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("bad.tar.gz");
        std::fs::write(&file, b"not an archive").unwrap();
        let e = extract(&file, &out.path().join("x"), &|| false).unwrap_err();
        assert!(e.to_string().contains("isol snapshot"));
    }
}
