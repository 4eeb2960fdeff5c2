//! `--root`: the live system, a captured directory, or a snapshot archive (extracted to a
//! temporary directory that lives as long as the command).

use std::path::Path;

use isol::SysRoot;

use crate::Failure;

/// An opened root, keeping any temporary extraction alive.
pub struct Root {
    pub sys: SysRoot,
    /// The captured directory given with `--root` (not an extracted archive), where
    /// `apply` and `restore` may rehearse on a copy of a machine.
    pub dir: Option<std::path::PathBuf>,
    _extracted: Option<tempfile::TempDir>,
}

pub fn open(root: Option<&Path>) -> Result<Root, Failure> {
    let Some(path) = root else {
        return Ok(Root {
            sys: SysRoot::live(),
            dir: None,
            _extracted: None,
        });
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        Failure::usage(format!(
            "--root {}: {e}; give a directory or an `isol snapshot` archive",
            path.display()
        ))
    })?;
    if meta.is_dir() {
        if std::fs::canonicalize(path).is_ok_and(|p| p == Path::new("/")) {
            // `--root /` is the live system, said plainly; reaching it another way (a
            // link, `/..`) is almost always a mistake, and apply would write the machine.
            if !path
                .components()
                .all(|c| c == std::path::Component::RootDir)
            {
                return Err(Failure::usage(format!(
                    "--root {}: this is the running system's / reached through a link or \
                     `..`; leave out --root to act on this machine",
                    path.display()
                )));
            }
            return Ok(Root {
                sys: SysRoot::live(),
                dir: None,
                _extracted: None,
            });
        }
        // A captured tree is untrusted: checked whole before anything reads it.
        isol::snapshot::check_tree(path, &isol::confine::SNAPSHOT_LIMITS)
            .map_err(|e| Failure::usage(format!("--root: {e}")))?;
        return Ok(Root {
            sys: SysRoot::at(path),
            dir: Some(path.to_path_buf()),
            _extracted: None,
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix("isol-root-")
        .tempdir()
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot create a temporary directory to extract {}: {e}",
                path.display()
            ))
        })?;
    // On any error `tmp` is dropped, which removes what was extracted; a signal stops the
    // extraction between members for the same reason.
    isol::snapshot::extract(path, tmp.path(), &crate::live::signals::stopped).map_err(
        |e| match e {
            isol::snapshot::SnapshotError::Interrupted { .. } => {
                Failure::quiet(128 + crate::live::signals::caught().unwrap_or(libc::SIGINT) as u8)
            }
            e => Failure::usage(format!("--root: {e}")),
        },
    )?;
    Ok(Root {
        sys: SysRoot::at(tmp.path()),
        dir: None,
        _extracted: Some(tmp),
    })
}
