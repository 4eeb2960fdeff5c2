//! Snapshots: every kernel file the model reads, in one `.tar.gz`, so a bug report carries
//! the machine and tests replay real kernels.
//!
//! The archive holds the files at their kernel paths (`proc/interrupts`, `sys/devices/...`)
//! plus a manifest ([`crate::sysroot::MANIFEST`]) recording the kernel, the host, and the
//! files that existed but could not be read. Extracted, it is a directory that
//! [`SysRoot::at`] replays.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::kernel::KernelModel;
use crate::sysroot::{Manifest, SysRoot, MANIFEST};

/// Snapshot format version.
pub const FORMAT: u32 = 1;

/// A snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot write snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read snapshot {path}: {source} (is it a .tar.gz made by `isol snapshot`?)")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a capture produced.
#[derive(Debug)]
pub struct Captured {
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
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(&captured.archive).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Extract a snapshot archive into `dir` (created if needed); returns its manifest.
/// Entries are confined to `dir`: absolute paths and `..` are refused by the unpacker.
pub fn extract(archive: &Path, dir: &Path) -> Result<Manifest, SnapshotError> {
    let err = |source| SnapshotError::Read {
        path: archive.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(archive).map_err(err)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    std::fs::create_dir_all(dir).map_err(err)?;
    for entry in tar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        entry.unpack_in(dir).map_err(err)?;
    }
    let m = std::fs::read(dir.join(MANIFEST)).map_err(err)?;
    serde_json::from_slice(&m).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))
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
        let m = extract(&file, &dir).unwrap();
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
        let e = extract(&file, &out.path().join("x")).unwrap_err();
        assert!(e.to_string().contains("isol snapshot"));
    }
}
