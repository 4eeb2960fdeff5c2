//! What isol can see of the machine from where it runs: inside a container, the runtime
//! masks parts of `/proc` and `/sys`, mounts them read-only, and a PID namespace hides the
//! host's tasks. Read from the mount table and the thread walk, so a snapshot taken in a
//! container says the same.

use serde::Serialize;

/// Files a container runtime hides that isol reads, and what is lost without them.
const MATTERS: &[(&str, &str)] = &[
    (
        "/proc/timer_list",
        "the tick and timers of each CPU (timers.*)",
    ),
    ("/proc/sched_debug", "the scheduler's view of each CPU"),
    ("/proc/irq", "interrupt affinities (irq.*)"),
    ("/sys/kernel/tracing", "tracing (watch)"),
    ("/sys/kernel/debug", "debugfs (the fair server's runtime)"),
];

/// Filesystems that belong where they are mounted; anything else over a `/proc` or `/sys`
/// path hides what the kernel put there.
const NATIVE: &[&str] = &[
    "proc",
    "sysfs",
    "tracefs",
    "debugfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "efivarfs",
    "hugetlbfs",
    "mqueue",
    "autofs",
    "selinuxfs",
    "rpc_pipefs",
    "nfsd",
];

/// What isol sees of the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct View {
    /// `/proc` and `/sys` paths with another filesystem mounted over them (a container
    /// runtime's masked paths).
    pub masked: Vec<String>,
    /// `/proc/sys`, `/sys` and their kind mounted read-only.
    pub read_only: Vec<String>,
    /// Whether the thread walk saw kernel threads: they live only in the host's PID
    /// namespace (`None`: the walk failed).
    pub host_pids: Option<bool>,
}

impl View {
    /// The view given the mount table (`/proc/self/mounts`) and whether any kernel thread
    /// was seen.
    pub fn from(mounts: &str, kernel_threads: Option<bool>) -> View {
        let mut v = View {
            host_pids: kernel_threads,
            ..View::default()
        };
        for line in mounts.lines() {
            let mut f = line.split_whitespace();
            let (Some(_), Some(at), Some(fs), Some(opts)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let at = unescape(at);
            let under = |p: &str| at == p || at.starts_with(&format!("{p}/"));
            if !(under("/proc") || under("/sys")) {
                continue;
            }
            // A v1 cgroup hierarchy's tmpfs is where it belongs.
            if fs == "tmpfs" && at == "/sys/fs/cgroup" {
                continue;
            }
            if !NATIVE.contains(&fs) {
                v.masked.retain(|m| m != &at);
                v.masked.push(at.clone());
            } else if opts.split(',').any(|o| o == "ro")
                && ["/proc/sys", "/sys", "/proc/irq"].contains(&at.as_str())
            {
                v.read_only.push(at);
            }
        }
        v
    }

    /// Whether isol runs somewhere that hides part of the machine (read-only mounts hide
    /// nothing).
    pub fn hides_anything(&self) -> bool {
        !self.masked.is_empty() || self.host_pids == Some(false)
    }

    /// Whether isol runs in a container (something is masked, read-only or in a PID
    /// namespace of its own).
    pub fn is_contained(&self) -> bool {
        self.hides_anything() || !self.read_only.is_empty()
    }

    /// Whether `path` is hidden by a mask.
    pub fn hides(&self, path: &str) -> bool {
        self.masked
            .iter()
            .any(|m| path == m || path.starts_with(&format!("{m}/")))
    }

    /// What is lost, one phrase per hidden part that matters to isol.
    pub fn losses(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.host_pids == Some(false) {
            out.push(
                "the host's tasks (a PID namespace of its own: no kernel thread is visible, \
                 so tasks.* and watch see only this container's tasks)"
                    .to_string(),
            );
        }
        for (path, what) in MATTERS {
            if self.hides(path) {
                out.push(format!("{what}: {path} is masked"));
            }
        }
        let other: Vec<&str> = self
            .masked
            .iter()
            .filter(|m| !MATTERS.iter().any(|(p, _)| p == m))
            .map(String::as_str)
            .collect();
        if !other.is_empty() {
            out.push(format!("also masked: {}", other.join(", ")));
        }
        out
    }
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table of a runc container with runc's default masked and read-only
    /// paths, as read inside one on this project's development machine (cgroup v1 host).
    const RUNC: &str = "/dev/vda / ext4 ro,relatime 0 0
proc /proc proc rw,relatime 0 0
tmpfs /dev tmpfs rw,nosuid,size=65536k,mode=755 0 0
sysfs /sys sysfs ro,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,nosuid,nodev,noexec,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuset cgroup ro,nosuid,nodev,noexec,relatime,cpuset 0 0
proc /proc/bus proc ro,relatime 0 0
proc /proc/irq proc ro,relatime 0 0
proc /proc/sys proc ro,relatime 0 0
tmpfs /proc/acpi tmpfs ro,relatime 0 0
tmpfs /proc/keys tmpfs rw,nosuid,size=65536k,mode=755 0 0
tmpfs /proc/timer_list tmpfs rw,nosuid,size=65536k,mode=755 0 0
tmpfs /sys/firmware tmpfs ro,relatime 0 0
";

    #[test]
    fn a_containers_masks_and_read_only_mounts() {
        let v = View::from(RUNC, Some(false));
        assert!(v.is_contained());
        assert_eq!(
            v.masked,
            [
                "/proc/acpi",
                "/proc/keys",
                "/proc/timer_list",
                "/sys/firmware"
            ]
        );
        assert_eq!(v.read_only, ["/sys", "/proc/irq", "/proc/sys"]);
        assert!(v.hides("/proc/timer_list") && !v.hides("/proc/timer_listing"));
        let losses = v.losses().join("\n");
        assert!(losses.contains("the host's tasks"), "{losses}");
        assert!(
            losses.contains("timers.*): /proc/timer_list is masked"),
            "{losses}"
        );
        assert!(
            losses.contains("also masked: /proc/acpi, /proc/keys, /sys/firmware"),
            "{losses}"
        );
        assert!(!losses.contains("read-only"), "{losses}");
        let ro = View::from("sysfs /sys sysfs ro,nosuid 0 0\n", Some(true));
        assert!(ro.is_contained() && !ro.hides_anything() && ro.losses().is_empty());
    }

    #[test]
    fn a_machine_seen_whole() {
        let host = "proc /proc proc rw,relatime 0 0\nsysfs /sys sysfs rw 0 0\n\
                    tracefs /sys/kernel/tracing tracefs rw 0 0\n\
                    binfmt_misc /proc/sys/fs/binfmt_misc binfmt_misc rw 0 0\n\
                    tmpfs /run tmpfs rw 0 0\n";
        let v = View::from(host, Some(true));
        assert!(!v.is_contained(), "{v:?}");
        assert!(v.losses().is_empty());
        // A mount point with a space, escaped as the kernel does.
        let v = View::from("tmpfs /proc/a\\040b tmpfs rw 0 0\n", Some(true));
        assert_eq!(v.masked, ["/proc/a b"]);
    }
}
