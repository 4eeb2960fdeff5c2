//! The tracing engine's kernel side: a private tracefs instance per run, event formats
//! read from the running kernel, and non-blocking readers of the per-CPU ring buffers.
//!
//! Rules this module keeps, because an isolated CPU must not be disturbed by the tool that
//! watches it:
//! * buffers are read with `O_NONBLOCK` and never `poll`ed: a blocked reader makes the
//!   writing CPU raise an irq_work to wake it, which is exactly the noise being measured;
//! * the caller reads from a housekeeping CPU, on a timer (see [`crate::watch`]);
//! * events are enabled with `tracing_on` = 0 and recording starts only after all of them
//!   are on, so the code patching of enabling tracepoints (an IPI to every CPU) is not
//!   reported as an interruption. Enabling and disabling tracepoints does send those IPIs:
//!   start and stop `watch` before and after a measurement, not during it.

pub mod format;
pub mod record;
pub mod ring;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::SysRoot;
pub use format::{EventFormat, Field, FormatError, PageLayout};

/// Where tracefs is normally mounted.
pub const DEFAULT_MOUNT: &str = "/sys/kernel/tracing";
/// Prefix of the instances isol creates: `isol-<pid>-<n>`.
pub const INSTANCE_PREFIX: &str = "isol-";
/// The long-lived instance `isol watch --keep-armed` leaves with its events on and recording
/// off, so later watches switch no tracepoint (see [`Instance::take_armed`]).
pub const ARMED: &str = "isol-armed";

/// Why tracing could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "tracefs is not mounted, so kernel events cannot be traced; \
         mount it with `mount -t tracefs nodev {DEFAULT_MOUNT}`"
    )]
    /// tracefs is not mounted.
    NotMounted,
    #[error(
        "{op} {path}: permission denied; tracing needs root (CAP_SYS_ADMIN): run isol as root"
    )]
    /// Tracing needs root.
    NeedsRoot {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
    },
    #[error("{op} {path}: {source}")]
    /// An I/O error.
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
        #[source]
        /// Why.
        source: io::Error,
    },
    #[error("{0}; the kernel's tracefs is not in a format isol understands")]
    /// An event format did not parse.
    Format(#[from] FormatError),
    #[error(
        "trace clock {wanted:?} is not offered by this kernel (it has: {available}); \
         isol needs a clock shared by all CPUs"
    )]
    /// The trace clock isol needs is missing.
    Clock {
        /// The clock isol needs.
        wanted: String,
        /// The clocks the kernel offers.
        available: String,
    },
    #[error("none of the events isol traces exist in {0}/events; is this a tracefs mount?")]
    /// None of the events exist.
    NoEvents(String),
    #[error("{0}")]
    /// A recording is unusable.
    Recording(String),
    /// A recording holds something isol will not read (see [`crate::confine`]).
    #[error("{0}")]
    Refused(String),
}

impl TraceError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> TraceError {
        let path = path.display().to_string();
        if source.kind() == io::ErrorKind::PermissionDenied {
            TraceError::NeedsRoot { op, path }
        } else {
            TraceError::Io { op, path, source }
        }
    }
}

/// A tracefs mount: formats are read through the [`SysRoot`] (so recordings replay them),
/// instances are created in the live filesystem.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: SysRoot,
    mount: String,
}

impl Tracefs {
    /// Find tracefs in the mount table (through `root`); for a replayed root without one,
    /// the usual place when the tree has its files.
    pub fn locate(root: &SysRoot) -> Result<Tracefs, TraceError> {
        let mounts = root.read("/proc/self/mounts").unwrap_or_default();
        let mount = crate::kernel::tracefs_mount(&mounts)
            .or_else(|| {
                // Replayed trees have no mount table but do have the files.
                (!root.is_live() && root.exists(&format!("{DEFAULT_MOUNT}/events/header_page")))
                    .then(|| DEFAULT_MOUNT.to_string())
            })
            .ok_or(TraceError::NotMounted)?;
        Ok(Tracefs {
            root: root.clone(),
            mount,
        })
    }

    /// Mount tracefs at its usual place, as `trace-cmd` does when it is missing. Needs
    /// root; leaves it mounted (it costs nothing until events are enabled).
    pub fn mount_default() -> Result<(), TraceError> {
        rustix::mount::mount(
            "nodev",
            DEFAULT_MOUNT,
            "tracefs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .map_err(|e| TraceError::io("mount tracefs on", Path::new(DEFAULT_MOUNT), e.into()))
    }

    /// Where tracefs is mounted.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The root it is read through.
    pub fn sysroot(&self) -> &SysRoot {
        &self.root
    }

    fn read(&self, rel: &str) -> Result<String, TraceError> {
        let path = format!("{}/{rel}", self.mount);
        self.root.read(&path).map_err(|e| {
            let p = PathBuf::from(&path);
            match e {
                crate::SysError::NeedsRoot { .. } => TraceError::NeedsRoot { op: "read", path },
                e @ crate::SysError::Refused { .. } => TraceError::Refused(e.to_string()),
                other => TraceError::io("read", &p, io::Error::other(other.to_string())),
            }
        })
    }

    /// The ring-buffer page layout.
    pub fn page_layout(&self) -> Result<PageLayout, TraceError> {
        Ok(PageLayout::parse(&self.read("events/header_page")?)?)
    }

    /// The format of `system:name`, or None when this kernel has no such event.
    pub fn format(&self, system: &str, name: &str) -> Result<Option<EventFormat>, TraceError> {
        let rel = format!("events/{system}/{name}/format");
        if !self.root.exists(&format!("{}/{rel}", self.mount)) {
            return Ok(None);
        }
        Ok(Some(EventFormat::parse(system, &self.read(&rel)?)?))
    }

    /// Names of the events in `system` (empty when the system does not exist).
    pub fn events_of(&self, system: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .root
            .list(&format!("{}/events/{system}", self.mount))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n != "enable" && n != "filter")
            .collect();
        v.sort();
        v
    }

    /// Clocks the kernel offers (`trace_clock`).
    pub fn clocks(&self) -> Vec<String> {
        self.read("trace_clock")
            .unwrap_or_default()
            .split_whitespace()
            .map(|c| c.trim_matches(|c| c == '[' || c == ']').to_string())
            .collect()
    }

    /// Instances left by isol runs whose process no longer exists.
    pub fn stale_instances(&self) -> Vec<String> {
        let dir = format!("{}/instances", self.mount);
        let mut out: Vec<String> = self
            .root
            .list(&dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| match instance_owner(n) {
                Some(pid) => !self.root.exists(&format!("/proc/{pid}")),
                None => false,
            })
            .collect();
        out.sort();
        out
    }

    /// Remove stale instances; returns the names removed.
    pub fn remove_stale(&self) -> Result<Vec<String>, TraceError> {
        let stale = self.stale_instances();
        for name in &stale {
            let dir = PathBuf::from(format!("{}/instances/{name}", self.mount));
            let _ = fs::write(dir.join("tracing_on"), "0");
            fs::remove_dir(&dir).map_err(|e| TraceError::io("remove instance", &dir, e))?;
        }
        Ok(stale)
    }
}

/// The pid in an instance name `isol-<pid>-<n>`.
pub fn instance_owner(name: &str) -> Option<u32> {
    name.strip_prefix(INSTANCE_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// A private tracing instance: its own buffers, events, filters and clock. Removed on drop,
/// unless it is the armed instance ([`ARMED`]), which is only switched off and unlocked.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    name: String,
    removed: bool,
    /// For the armed instance: the open directory, `flock`ed while this run uses it.
    armed: Option<File>,
}

impl Instance {
    /// Create `instances/isol-<pid>-<n>`, with recording off.
    pub fn create(tracefs: &Tracefs) -> Result<Instance, TraceError> {
        if !tracefs.root.is_live() {
            return Err(TraceError::Recording(
                "cannot trace a replayed root; use the live system".into(),
            ));
        }
        let base = PathBuf::from(format!("{}/instances", tracefs.mount));
        let pid = std::process::id();
        for n in 0..1000 {
            let name = format!("{INSTANCE_PREFIX}{pid}-{n}");
            let dir = base.join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let inst = Instance {
                        dir,
                        name,
                        removed: false,
                        armed: None,
                    };
                    inst.write("tracing_on", "0")?;
                    return Ok(inst);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(TraceError::io("create tracing instance", &dir, e)),
            }
        }
        Err(TraceError::Recording(format!(
            "could not create an instance under {}: 1000 names taken",
            base.display()
        )))
    }

    /// The armed instance, locked for this run, if it exists and no other run holds it.
    /// Its events are already on, so enabling them again patches no code.
    pub fn take_armed(tracefs: &Tracefs) -> Result<Option<Instance>, TraceError> {
        if !tracefs.root.is_live() {
            return Ok(None);
        }
        let dir = PathBuf::from(format!("{}/instances/{ARMED}", tracefs.mount));
        let lock = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&dir)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TraceError::io("open", &dir, e)),
        };
        use rustix::fs::{flock, FlockOperation};
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(TraceError::io("lock", &dir, e.into())),
        }
        let inst = Instance {
            dir,
            name: ARMED.into(),
            removed: false,
            armed: Some(lock),
        };
        // Recording is off; what a run that died left in the buffers is read and dropped
        // by the caller (emptying them through `trace` would wait for an RCU grace period).
        inst.write("tracing_on", "0")?;
        Ok(Some(inst))
    }

    /// Create the armed instance (or take it, if another run created it meanwhile); None
    /// when another run holds it.
    pub fn create_armed(tracefs: &Tracefs) -> Result<Option<Instance>, TraceError> {
        let dir = PathBuf::from(format!("{}/instances/{ARMED}", tracefs.mount));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(TraceError::io("create tracing instance", &dir, e)),
        }
        Instance::take_armed(tracefs)
    }

    /// Remove the armed instance, switching its events off (which patches code, as any
    /// watch's stop does). False when there was none.
    pub fn disarm(tracefs: &Tracefs) -> Result<bool, TraceError> {
        let dir = PathBuf::from(format!("{}/instances/{ARMED}", tracefs.mount));
        if !dir.exists() {
            return Ok(false);
        }
        let _ = fs::write(dir.join("tracing_on"), "0");
        fs::remove_dir(&dir).map_err(|e| TraceError::io("remove instance", &dir, e))?;
        Ok(true)
    }

    /// Whether this is the long-lived armed instance.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Events enabled in this instance (`system:name`).
    pub fn enabled_events(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("set_event"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write a control file of the instance.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), TraceError> {
        let path = self.dir.join(rel);
        fs::write(&path, value).map_err(|e| TraceError::io("write", &path, e))
    }

    /// Enable `system:name`, with an optional filter. A filter the kernel rejects is
    /// dropped (the decoder filters again) and reported in the return value.
    pub fn enable(
        &self,
        system: &str,
        name: &str,
        filter: Option<&str>,
    ) -> Result<Option<String>, TraceError> {
        let ev = format!("events/{system}/{name}");
        let mut dropped = None;
        if let Some(f) = filter {
            // Replacing a filter waits for RCU grace periods: on the armed instance, where
            // the same filter is usually there already, it is not rewritten.
            if !self.holds(&format!("{ev}/filter"), f)
                && self.write(&format!("{ev}/filter"), f).is_err()
            {
                dropped = Some(format!("{system}:{name} filter {f:?} rejected"));
            }
        }
        if !self.holds(&format!("{ev}/enable"), "1") {
            self.write(&format!("{ev}/enable"), "1")?;
        }
        Ok(dropped)
    }

    /// Whether the control file `rel` reads `value` already (a clock list shows the one in
    /// use in brackets).
    pub fn holds(&self, rel: &str, value: &str) -> bool {
        fs::read_to_string(self.dir.join(rel)).is_ok_and(|now| {
            let now = now.trim();
            now == value || now.split_whitespace().any(|w| w == format!("[{value}]"))
        })
    }

    /// Record a kernel stack after `system:name` each time it fires.
    pub fn stack_trigger(&self, system: &str, name: &str, filter: Option<&str>) -> bool {
        let t = match filter {
            Some(f) => format!("stacktrace if {f}"),
            None => "stacktrace".to_string(),
        };
        self.write(&format!("events/{system}/{name}/trigger"), &t)
            .is_ok()
    }

    /// Make the stacktrace trigger of `system:name` the one with `filter`, unless it is
    /// already (a trigger another run left, with another filter, is replaced). False when
    /// the kernel refuses it.
    pub fn ensure_stack_trigger(&self, system: &str, name: &str, filter: Option<&str>) -> bool {
        let want = match filter {
            Some(f) => format!(" if {f}"),
            None => String::new(),
        };
        match self.stack_trigger_now(system, name) {
            // `stacktrace:unlimited if FILTER`, or `stacktrace:5` with a count.
            Some(now)
                if now.trim_start_matches(|c: char| c == ':' || c.is_alphanumeric()) == want =>
            {
                return true
            }
            Some(_) => {
                let _ = self.write(&format!("events/{system}/{name}/trigger"), "!stacktrace");
            }
            None => {}
        }
        self.stack_trigger(system, name, filter)
    }

    /// The stacktrace trigger `system:name` has, after the word `stacktrace`.
    fn stack_trigger_now(&self, system: &str, name: &str) -> Option<String> {
        let rel = format!("events/{system}/{name}/trigger");
        let now = fs::read_to_string(self.dir.join(rel)).ok()?;
        now.lines()
            .find_map(|l| l.strip_prefix("stacktrace"))
            .map(|rest| rest.trim_end().to_string())
    }

    /// Remove the stacktrace trigger of `system:name`, if it has one (removing waits for
    /// RCU grace periods, so the file is read first).
    pub fn remove_stack_trigger(&self, system: &str, name: &str) {
        if self.stack_trigger_now(system, name).is_some() {
            let _ = self.write(&format!("events/{system}/{name}/trigger"), "!stacktrace");
        }
    }

    /// Open the non-blocking raw reader of `cpu`'s buffer.
    pub fn reader(&self, cpu: u32) -> Result<CpuReader, TraceError> {
        let path = self.dir.join(format!("per_cpu/cpu{cpu}/trace_pipe_raw"));
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| TraceError::io("open", &path, e))?;
        Ok(CpuReader { cpu, file, path })
    }

    /// Stop recording and remove the instance (buffers are freed by the kernel). The armed
    /// instance stays, its events on, recording off, its stack triggers removed (`triggers`:
    /// the events given one), and unlocked.
    pub fn remove(mut self, triggers: &[(String, String)]) -> Result<(), TraceError> {
        self.removed = true;
        let _ = self.write("tracing_on", "0");
        if self.armed.is_some() {
            for (sys, name) in triggers {
                self.remove_stack_trigger(sys, name);
            }
            return Ok(());
        }
        fs::remove_dir(&self.dir).map_err(|e| TraceError::io("remove instance", &self.dir, e))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.armed.is_some() {
            let _ = fs::write(self.dir.join("tracing_on"), "0");
        } else if !self.removed {
            let _ = fs::write(self.dir.join("tracing_on"), "0");
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// A non-blocking reader of one CPU's `trace_pipe_raw`.
#[derive(Debug)]
pub struct CpuReader {
    /// The CPU.
    pub cpu: u32,
    file: File,
    path: PathBuf,
}

impl CpuReader {
    /// Read one page into `buf` (which must be one page long). Returns false when the
    /// buffer is empty right now; never blocks.
    pub fn read_page(&mut self, buf: &mut [u8]) -> Result<bool, TraceError> {
        loop {
            match self.file.read(buf) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TraceError::io("read", &self.path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_carry_the_owner() {
        assert_eq!(instance_owner("isol-1234-0"), Some(1234));
        assert_eq!(instance_owner("isol-x-0"), None);
        assert_eq!(instance_owner("other"), None);
    }

    #[test]
    fn not_mounted_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Tracefs::locate(&SysRoot::at(dir.path())).unwrap_err();
        assert!(e.to_string().contains("mount -t tracefs"), "{e}");
    }
}
