//! `isol snapshot`: capture every kernel file isol reads into one `.tar.gz`.

use std::path::PathBuf;

use isol::SysRoot;

use crate::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the archive (default: isol-snapshot-HOST-KERNEL.tar.gz here).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// A note stored in the snapshot's manifest (where and why it was taken).
    #[arg(long, default_value = "")]
    note: String,
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    let cap = isol::snapshot::capture(root, &args.note)
        .map_err(|e| Failure::runtime(format!("cannot build the snapshot archive: {e}")))?;
    let m = &cap.manifest;
    let output = args.output.unwrap_or_else(|| {
        let host = if m.hostname.is_empty() {
            "host"
        } else {
            &m.hostname
        };
        PathBuf::from(format!(
            "isol-snapshot-{host}-{}.tar.gz",
            if m.kernel.is_empty() {
                "unknown"
            } else {
                &m.kernel
            }
        ))
    });
    isol::snapshot::write(&cap, &output).map_err(|e| Failure::runtime(e.to_string()))?;
    crate::output::println(&format!(
        "wrote {} ({} files, {} KiB, kernel {})",
        output.display(),
        cap.files,
        cap.archive.len().div_ceil(1024),
        if m.kernel.is_empty() {
            "unknown"
        } else {
            &m.kernel
        }
    ))?;
    if !m.unreadable.is_empty() {
        let kinds: std::collections::BTreeSet<&str> =
            m.unreadable.values().map(|u| u.kind.as_str()).collect();
        crate::output::println(&format!(
            "{} files could not be read ({}); they are listed in the manifest{}",
            m.unreadable.len(),
            kinds.into_iter().collect::<Vec<_>>().join(", "),
            if m.unreadable.values().any(|u| u.kind == "needs root") {
                ": run as root for a complete snapshot"
            } else {
                ""
            }
        ))?;
    }
    Ok(0)
}
