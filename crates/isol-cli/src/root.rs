//! `--root`: the live system, a captured directory, or a snapshot archive (extracted to a
//! temporary directory that lives as long as the command).

use std::path::Path;

use isol::SysRoot;

use crate::Failure;

/// An opened root, keeping any temporary extraction alive.
pub struct Root {
    pub sys: SysRoot,
    _extracted: Option<tempfile::TempDir>,
}

pub fn open(root: Option<&Path>) -> Result<Root, Failure> {
    let Some(path) = root else {
        return Ok(Root {
            sys: SysRoot::live(),
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
        return Ok(Root {
            sys: SysRoot::at(path),
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
    isol::snapshot::extract(path, tmp.path())
        .map_err(|e| Failure::usage(format!("--root: {e}")))?;
    Ok(Root {
        sys: SysRoot::at(tmp.path()),
        _extracted: Some(tmp),
    })
}
