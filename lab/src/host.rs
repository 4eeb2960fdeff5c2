//! Host-tier helpers: tests that trace this machine's own kernel.

use isol::tracefs::{TraceError, Tracefs, DEFAULT_MOUNT};
use isol::{CpuSet, SysRoot};

/// tracefs for a host test: mounted if it was not (and unmounted when dropped).
pub struct Tracing {
    mounted_here: bool,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = rustix::mount::unmount(DEFAULT_MOUNT, rustix::mount::UnmountFlags::empty());
        }
    }
}

fn skip(reason: &str) -> Option<Tracing> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and this host test cannot run: {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

/// tracefs on this machine, for a test that traces CPU 1 from CPU 0: root, both CPUs
/// online, tracefs found where the mount table says (or mounted, as `isol watch` does).
/// `None`, after saying why, where that cannot be.
pub fn tracing() -> Option<Tracing> {
    if !isol::is_root() {
        return skip("tracing needs root");
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if !CpuSet::parse_list(online.trim()).is_ok_and(|s| s.contains(0) && s.contains(1)) {
        return skip("CPUs 0 and 1 must be online");
    }
    match Tracefs::locate(&SysRoot::live()) {
        Ok(_) => Some(Tracing {
            mounted_here: false,
        }),
        Err(TraceError::NotMounted) => match Tracefs::mount_default() {
            Ok(()) => Some(Tracing { mounted_here: true }),
            Err(e) => skip(&format!(
                "tracefs is not mounted and mounting it failed: {e}"
            )),
        },
        Err(e) => skip(&format!("tracefs: {e}")),
    }
}
