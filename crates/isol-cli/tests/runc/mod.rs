//! Containers made with Debian's `runc` from a generated OCI runtime config: `runc spec`'s
//! defaults (its masked and read-only paths, no capabilities but three), changed only
//! where a test says so.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

/// Whether `tool` is on PATH. Under CI (which installs every tool the tests use) a
/// missing one is a failure; elsewhere the test says it is skipped.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing: .ci/run installs it"
        );
        eprintln!("skipped: no {tool}");
    }
    found
}

/// Root, and runc: what a container test needs.
pub fn usable() -> bool {
    if !crate::common::is_root() {
        eprintln!("skipped: containers need root");
        return false;
    }
    have("runc")
}

/// One container's configuration.
#[derive(Clone)]
pub struct Spec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// `linux.cgroupsPath` (runc's cgroupfs driver takes it as given).
    pub cgroups_path: Option<String>,
    /// `linux.resources.cpu.cpus`.
    pub cpus: Option<String>,
    /// Share the host's PID namespace.
    pub host_pid: bool,
    /// Share the host's network namespace.
    pub host_net: bool,
    /// Bind mounts: (host path, container path, writable).
    pub binds: Vec<(PathBuf, String, bool)>,
    /// A root filesystem to use; `None`: an empty one with the host's `/usr` bound
    /// read-only (and the usual links to it), so host programs run.
    pub rootfs: Option<PathBuf>,
    /// Capabilities (all five sets); `None`: runc's defaults.
    pub caps: Option<Vec<String>>,
    /// Masked paths; `None`: runc's defaults.
    pub masked: Option<Vec<String>>,
    /// Read-only paths; `None`: runc's defaults.
    pub read_only: Option<Vec<String>>,
}

impl Spec {
    pub fn new(args: &[&str]) -> Spec {
        Spec {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            cgroups_path: None,
            cpus: None,
            host_pid: false,
            host_net: false,
            binds: Vec::new(),
            rootfs: None,
            caps: None,
            masked: None,
            read_only: None,
        }
    }

    pub fn bind(mut self, host: impl Into<PathBuf>, at: &str, writable: bool) -> Spec {
        self.binds.push((host.into(), at.to_string(), writable));
        self
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A created bundle; the container is deleted when this is dropped.
pub struct Container {
    pub id: String,
    pub bundle: tempfile::TempDir,
    child: Option<Child>,
}

impl Container {
    /// Write the bundle for `spec`.
    pub fn new(spec: &Spec) -> Container {
        let id = format!(
            "isol-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let bundle = tempfile::tempdir().unwrap();
        let out = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(bundle.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "runc spec: {out:?}");
        let path = bundle.path().join("config.json");
        let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let root = match &spec.rootfs {
            Some(r) => r.clone(),
            None => {
                let r = bundle.path().join("rootfs");
                std::fs::create_dir_all(r.join("usr")).unwrap();
                for (link, to) in [
                    ("bin", "usr/bin"),
                    ("sbin", "usr/sbin"),
                    ("lib", "usr/lib"),
                    ("lib64", "usr/lib64"),
                ] {
                    std::os::unix::fs::symlink(to, r.join(link)).unwrap();
                }
                std::fs::create_dir_all(r.join("tmp")).unwrap();
                c["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/usr", "type": "bind", "source": "/usr",
                    "options": ["rbind", "ro"]
                }));
                r
            }
        };
        c["root"] = json!({"path": root, "readonly": true});
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(spec.args);
        c["process"]["env"] = json!(spec.env);
        if let Some(caps) = &spec.caps {
            for set in ["bounding", "effective", "permitted", "ambient"] {
                c["process"]["capabilities"][set] = json!(caps);
            }
        }
        let linux = &mut c["linux"];
        if let Some(p) = &spec.cgroups_path {
            linux["cgroupsPath"] = json!(p);
        }
        if let Some(cpus) = &spec.cpus {
            linux["resources"]["cpu"] = json!({"cpus": cpus, "mems": "0"});
        }
        let drop: Vec<&str> = [
            spec.host_pid.then_some("pid"),
            spec.host_net.then_some("network"),
        ]
        .into_iter()
        .flatten()
        .collect();
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| !drop.contains(&n["type"].as_str().unwrap_or("")));
        if let Some(m) = &spec.masked {
            linux["maskedPaths"] = json!(m);
        }
        if let Some(r) = &spec.read_only {
            linux["readonlyPaths"] = json!(r);
        }
        for (host, at, writable) in &spec.binds {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": at, "type": "bind", "source": host,
                "options": ["rbind", if *writable { "rw" } else { "ro" }]
            }));
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        Container {
            id,
            bundle,
            child: None,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.args(["run", "--bundle"])
            .arg(self.bundle.path())
            .arg(&self.id);
        cmd
    }

    /// Run it to the end: its output.
    pub fn run(spec: &Spec) -> Output {
        let c = Container::new(spec);
        c.command().stdin(Stdio::null()).output().unwrap()
    }

    /// Start it in the background, its stdout piped.
    pub fn start(spec: &Spec) -> Container {
        let mut c = Container::new(spec);
        c.child = Some(
            c.command()
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        c
    }

    /// Wait for a started container to end.
    pub fn wait(&mut self) -> Output {
        self.child.take().unwrap().wait_with_output().unwrap()
    }

    /// Send `signal` to its first process.
    pub fn kill(&self, signal: &str) {
        let _ = Command::new("runc")
            .args(["kill", &self.id, signal])
            .output();
    }

    pub fn bundle(&self) -> &Path {
        self.bundle.path()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.kill("KILL");
            let _ = child.wait();
        }
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
    }
}

/// kubelet's log layout for one container, laid out on this machine for a test and
/// removed after it: `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log` and
/// `/var/log/containers/<pod>_<ns>_<container>-<id>.log`, a link to it, as kubelet makes
/// them (the log holds a line, which isol must never read).
pub struct PodLogs {
    made: Vec<PathBuf>,
}

pub const LOG_LINE: &str = "a line of the application's log that isol never reads";

impl PodLogs {
    pub fn lay_out(ns: &str, pod: &str, uid: &str, container: &str, id: &str) -> PodLogs {
        let mut made = Vec::new();
        for dir in ["/var/log/pods", "/var/log/containers"] {
            if !Path::new(dir).exists() {
                std::fs::create_dir_all(dir).unwrap();
                made.push(PathBuf::from(dir));
            }
        }
        let pod_dir = PathBuf::from(format!("/var/log/pods/{ns}_{pod}_{uid}"));
        std::fs::create_dir_all(pod_dir.join(container)).unwrap();
        let log = pod_dir.join(container).join("0.log");
        std::fs::write(&log, LOG_LINE).unwrap();
        let link = PathBuf::from(format!(
            "/var/log/containers/{pod}_{ns}_{container}-{id}.log"
        ));
        std::os::unix::fs::symlink(&log, &link).unwrap();
        // Removed innermost first.
        made.push(pod_dir);
        made.push(link);
        PodLogs { made }
    }
}

impl Drop for PodLogs {
    fn drop(&mut self) {
        for p in self.made.iter().rev() {
            if p.is_symlink() || p.is_file() {
                let _ = std::fs::remove_file(p);
            } else {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}

/// cgroup directories a container left behind (runc removes its own, not its parents).
pub struct CgroupParents(pub Vec<String>);

impl Drop for CgroupParents {
    fn drop(&mut self) {
        for rel in &self.0 {
            for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let mut p = hierarchy.path().join(rel.trim_start_matches('/'));
                if hierarchy.file_name() == "cgroup.controllers" {
                    continue;
                }
                // Deepest first, stopping at the first that is not empty or not ours.
                while p != hierarchy.path() && std::fs::remove_dir(&p).is_ok() {
                    p.pop();
                }
            }
            let _ =
                std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')));
        }
    }
}

/// One test at a time lays out kubelet's layout (the directories are shared).
static LAYOUT: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    LAYOUT.lock().unwrap_or_else(|e| e.into_inner())
}
