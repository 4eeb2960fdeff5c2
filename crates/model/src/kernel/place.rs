//! Where a task lives: its systemd unit, its container, its Kubernetes pod, read from its
//! cgroup (`/proc/PID/cgroup`) and named through kubelet's own log layout, with no API to
//! ask.
//!
//! A cgroup path says a lot by its shape alone:
//!
//! | shape | what |
//! |---|---|
//! | `/system.slice/chronyd.service` | the unit `chronyd.service` |
//! | `/user.slice/user-1000.slice/session-3.scope` | the unit `session-3.scope` |
//! | `/system.slice/docker-<id>.scope`, `/docker/<id>` | a Docker container |
//! | `.../cri-containerd-<id>.scope`, `.../crio-<id>.scope`, `.../libpod-<id>.scope` | a containerd, CRI-O or Podman container |
//! | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/<container>` | a pod (kubelet's systemd driver: `_` for `-` in the uid) |
//! | `/kubepods/besteffort/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>` | a pod (kubelet's cgroupfs driver; no QoS level: guaranteed) |
//!
//! Names come from what kubelet writes for the logs: `/var/log/pods/<namespace>_<pod>_<uid>/`
//! (one directory per container inside) and `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`.
//! Only the names of these directories and links are read, never a log.
//!
//! Every name comes from the machine, or from a stranger's snapshot: they are kept as
//! read, and escaped where they are printed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sysroot::SysRoot;

/// Where a task lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// Its systemd unit (`chronyd.service`, `session-3.scope`), when it is not a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Its container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Its Kubernetes pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// A container, from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// `docker`, `containerd`, `crio`, `podman`, or `kubepods` (kubelet's cgroupfs driver,
    /// where the runtime is not in the path).
    pub runtime: String,
    /// Its id (64 hex digits, as the runtime names it).
    pub id: String,
    /// Its name in its pod, from kubelet's log layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A Kubernetes pod, from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Its uid (with `-`, as the API writes it).
    pub uid: String,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: String,
    /// Its namespace, from kubelet's log layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name, from kubelet's log layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Place {
    /// Whether nothing is known of where the task lives (the root cgroup, a kernel thread).
    pub fn is_empty(&self) -> bool {
        self.unit.is_none() && self.container.is_none() && self.pod.is_none()
    }

    /// A short tag for a line of text: `[ns/pod container]`, `[docker 0123456789ab]`,
    /// `[chronyd.service]`; empty when nothing is known.
    pub fn tag(&self) -> String {
        let short = |id: &str| id.chars().take(12).collect::<String>();
        if let Some(p) = &self.pod {
            let pod = match (&p.namespace, &p.name) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                _ => format!("pod {}", short(&p.uid)),
            };
            return match &self.container {
                Some(Container { name: Some(c), .. }) => format!("[{pod} {c}]"),
                Some(c) => format!("[{pod} {}]", short(&c.id)),
                None => format!("[{pod}]"),
            };
        }
        if let Some(c) = &self.container {
            return format!("[{} {}]", c.runtime, short(&c.id));
        }
        self.unit
            .as_ref()
            .map_or_else(String::new, |u| format!("[{u}]"))
    }
}

/// The cgroup path of `/proc/PID/cgroup`'s text: the unified (v2) line's path when it is
/// not the root, else the first v1 line's (hybrid hosts keep the unit and container paths
/// in the v1 hierarchies).
pub fn cgroup_path(text: &str) -> Option<&str> {
    let mut v1 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            if path != "/" {
                return Some(path);
            }
        } else if path != "/" && v1.is_none() {
            v1 = Some(path);
        }
    }
    v1
}

/// A container id: 64 hexadecimal digits.
fn container_id(s: &str) -> Option<&str> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// A container scope (`docker-<id>.scope`, `cri-containerd-<id>.scope`, ...).
fn container_scope(s: &str) -> Option<Container> {
    let stem = s.strip_suffix(".scope")?;
    for (prefix, runtime) in [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "crio"),
        ("libpod-", "podman"),
    ] {
        if let Some(id) = stem.strip_prefix(prefix).and_then(container_id) {
            return Some(Container {
                runtime: runtime.into(),
                id: id.into(),
                name: None,
            });
        }
    }
    None
}

/// Classify a cgroup path (see the module's table); names are filled in by
/// [`PodNames::name`].
pub fn classify(path: &str) -> Place {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut place = Place::default();
    for (i, part) in parts.iter().enumerate() {
        // kubelet, systemd driver: kubepods[-qos]-pod<uid>.slice
        if let Some(rest) = part
            .strip_prefix("kubepods-")
            .and_then(|r| r.strip_suffix(".slice"))
        {
            let (qos, uid) = match rest.split_once("-pod") {
                Some((q, u)) if !q.is_empty() => (q, u),
                _ => match rest.strip_prefix("pod") {
                    Some(u) => ("guaranteed", u),
                    None => continue,
                },
            };
            place.pod = Some(Pod {
                uid: uid.replace('_', "-"),
                qos: qos.into(),
                namespace: None,
                name: None,
            });
            continue;
        }
        // kubelet, cgroupfs driver: /kubepods[/qos]/pod<uid>/<id>
        if let Some(uid) = part
            .strip_prefix("pod")
            .filter(|_| parts.contains(&"kubepods"))
        {
            let qos = match parts.get(i.wrapping_sub(1)) {
                Some(&"burstable") => "burstable",
                Some(&"besteffort") => "besteffort",
                _ => "guaranteed",
            };
            place.pod = Some(Pod {
                uid: uid.into(),
                qos: qos.into(),
                namespace: None,
                name: None,
            });
            if let Some(id) = parts.get(i + 1).and_then(|p| container_id(p)) {
                place.container = Some(Container {
                    runtime: "kubepods".into(),
                    id: id.into(),
                    name: None,
                });
            }
            continue;
        }
        if let Some(c) = container_scope(part) {
            place.container = Some(c);
            continue;
        }
        // Docker's and Podman's cgroupfs forms: /docker/<id>, /libpod_parent/libpod-<id>.
        if let Some(id) = parts.get(i + 1).and_then(|p| container_id(p)) {
            if *part == "docker" {
                place.container = Some(Container {
                    runtime: "docker".into(),
                    id: id.into(),
                    name: None,
                });
            }
        }
        if let Some(id) = part.strip_prefix("libpod-").and_then(container_id) {
            place.container = Some(Container {
                runtime: "podman".into(),
                id: id.into(),
                name: None,
            });
        }
        if place.container.is_none() && (part.ends_with(".service") || part.ends_with(".scope")) {
            place.unit = Some(part.to_string());
        }
    }
    if place.container.is_some() {
        place.unit = None;
    }
    place
}

/// What kubelet's log layout says: pods by uid, containers by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    /// uid -> (namespace, pod name).
    pub pods: BTreeMap<String, (String, String)>,
    /// (pod uid, container name) for every container directory of a pod.
    pub containers_of: BTreeMap<String, Vec<String>>,
    /// container id -> (namespace, pod name, container name).
    pub containers: BTreeMap<String, (String, String, String)>,
}

impl PodNames {
    /// Read the names kubelet's log layout gives (names only; absent on machines that are
    /// not Kubernetes nodes, which is not an error).
    pub fn load(root: &SysRoot) -> PodNames {
        let mut k = PodNames::default();
        for dir in root.list("/var/log/pods").unwrap_or_default() {
            let mut f = dir.splitn(3, '_');
            let (Some(ns), Some(name), Some(uid)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            k.pods
                .insert(uid.to_string(), (ns.to_string(), name.to_string()));
            let containers = root
                .list(&format!("/var/log/pods/{dir}"))
                .unwrap_or_default();
            k.containers_of.insert(uid.to_string(), containers);
        }
        for file in root.list("/var/log/containers").unwrap_or_default() {
            let Some(stem) = file.strip_suffix(".log") else {
                continue;
            };
            let Some((rest, id)) = stem.rsplit_once('-') else {
                continue;
            };
            let Some(id) = container_id(id) else {
                continue;
            };
            let mut f = rest.splitn(3, '_');
            let (Some(pod), Some(ns), Some(container)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            k.containers.insert(
                id.to_string(),
                (ns.to_string(), pod.to_string(), container.to_string()),
            );
        }
        k
    }

    /// Fill in the names of `place`'s pod and container.
    pub fn name(&self, place: &mut Place) {
        if let Some(c) = &mut place.container {
            if let Some((ns, pod, name)) = self.containers.get(&c.id) {
                c.name = Some(name.clone());
                if let Some(p) = &mut place.pod {
                    p.namespace.get_or_insert_with(|| ns.clone());
                    p.name.get_or_insert_with(|| pod.clone());
                }
            }
        }
        if let Some(p) = &mut place.pod {
            if let Some((ns, name)) = self.pods.get(&p.uid) {
                p.namespace = Some(ns.clone());
                p.name = Some(name.clone());
            }
        }
    }

    /// Whether these names cover `place`'s pod and container (or it has none).
    pub fn knows(&self, place: &Place) -> bool {
        let Some(pod) = &place.pod else {
            return true;
        };
        self.pods.contains_key(&pod.uid)
            && place
                .container
                .as_ref()
                .is_none_or(|c| self.containers.contains_key(&c.id))
    }

    /// The uid of pod `name` in `namespace`.
    pub fn uid_of(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods
            .iter()
            .find(|(_, (ns, n))| ns == namespace && n == name)
            .map(|(uid, _)| uid.as_str())
    }
}

/// Places of tasks, looked up once each: `/proc/PID/cgroup`, classified and named.
#[derive(Debug, Clone)]
pub struct Places {
    root: SysRoot,
    names: PodNames,
    /// When kubelet's layout was last listed.
    listed: std::time::Instant,
    seen: BTreeMap<u32, Option<Place>>,
}

/// How often kubelet's layout is listed again for a pod or container it does not name
/// yet (pods come and go while a watch runs).
const RELIST: std::time::Duration = std::time::Duration::from_secs(1);

impl Places {
    /// Look places up below `root`.
    pub fn new(root: &SysRoot) -> Places {
        Places {
            names: PodNames::load(root),
            listed: std::time::Instant::now(),
            root: root.clone(),
            seen: BTreeMap::new(),
        }
    }

    /// Where process `pid` lives (`None`: its cgroup cannot be read, or says nothing),
    /// read once.
    pub fn of(&mut self, pid: u32) -> Option<Place> {
        if let Some(p) = self.seen.get(&pid) {
            return p.clone();
        }
        let p = self
            .root
            .read(&format!("/proc/{pid}/cgroup"))
            .ok()
            .map(|text| self.from_cgroup(&text))
            .filter(|p| !p.is_empty());
        self.seen.insert(pid, p.clone());
        p
    }

    /// Where a task whose `/proc/PID/cgroup` reads `text` lives. A pod or container
    /// kubelet's layout does not name yet has it listed again, at most once a second.
    pub fn from_cgroup(&mut self, text: &str) -> Place {
        let mut p = cgroup_path(text).map(classify).unwrap_or_default();
        if !self.names.knows(&p) && self.listed.elapsed() >= RELIST {
            self.names = PodNames::load(&self.root);
            self.listed = std::time::Instant::now();
        }
        self.names.name(&mut p);
        p
    }

    /// The names kubelet's layout gives.
    pub fn names(&self) -> &PodNames {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn units_containers_and_pods_by_their_shape() {
        let unit = classify("/system.slice/chronyd.service");
        assert_eq!(unit.unit.as_deref(), Some("chronyd.service"));
        assert_eq!(unit.tag(), "[chronyd.service]");
        let session = classify("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(session.unit.as_deref(), Some("session-3.scope"));
        let user = classify("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service");
        assert_eq!(user.unit.as_deref(), Some("foo.service"));
        for (path, runtime) in [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/docker/{ID}"), "docker"),
            (
                format!("/system.slice/containerd.service/cri-containerd-{ID}.scope"),
                "containerd",
            ),
            (format!("/machine.slice/libpod-{ID}.scope"), "podman"),
            (format!("/libpod_parent/libpod-{ID}"), "podman"),
        ] {
            let p = classify(&path);
            let c = p.container.expect(&path);
            assert_eq!((c.runtime.as_str(), c.id.as_str()), (runtime, ID), "{path}");
            assert!(p.unit.is_none() && p.pod.is_none(), "{path}");
        }
        let sd = classify(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c4a7e3c_1b2d_4e5f_8a9b_0123456789ab.slice/crio-{ID}.scope"
        ));
        let pod = sd.pod.clone().unwrap();
        assert_eq!(pod.uid, "0c4a7e3c-1b2d-4e5f-8a9b-0123456789ab");
        assert_eq!(pod.qos, "burstable");
        assert_eq!(sd.container.as_ref().unwrap().runtime, "crio");
        let guaranteed = classify("/kubepods.slice/kubepods-pod0c4a7e3c_1b2d.slice");
        assert_eq!(guaranteed.pod.unwrap().qos, "guaranteed");
        let fs = classify(&format!("/kubepods/besteffort/pod0c4a7e3c-1b2d/{ID}"));
        assert_eq!(fs.pod.as_ref().unwrap().qos, "besteffort");
        assert_eq!(fs.container.as_ref().unwrap().id, ID);
        let fs_g = classify(&format!("/kubepods/pod0c4a7e3c-1b2d/{ID}"));
        assert_eq!(fs_g.pod.unwrap().qos, "guaranteed");
        assert!(classify("/").is_empty());
        assert!(classify("/user.slice").is_empty());
    }

    #[test]
    fn the_unified_line_first_then_v1() {
        assert_eq!(
            cgroup_path("0::/system.slice/a.service\n"),
            Some("/system.slice/a.service")
        );
        let hybrid = "9:name=systemd:/system.slice/b.service\n4:memory:/x\n0::/\n";
        assert_eq!(cgroup_path(hybrid), Some("/system.slice/b.service"));
        assert_eq!(cgroup_path("0::/\n"), None);
        assert_eq!(cgroup_path("garbage"), None);
    }

    #[test]
    fn kubelets_layout_names_pods_and_containers() {
        let dir = tempfile::tempdir().unwrap();
        let uid = "0c4a7e3c-1b2d-4e5f-8a9b-0123456789ab";
        std::fs::create_dir_all(dir.path().join(format!("var/log/pods/ran_du-0_{uid}/l1")))
            .unwrap();
        std::fs::create_dir_all(dir.path().join("var/log/containers")).unwrap();
        std::fs::write(
            dir.path()
                .join(format!("var/log/containers/du-0_ran_l1-{ID}.log")),
            "",
        )
        .unwrap();
        let root = SysRoot::at(dir.path());
        let mut places = Places::new(&root);
        let p = places.from_cgroup(&format!("0::/kubepods/burstable/pod{uid}/{ID}\n"));
        assert_eq!(p.tag(), "[ran/du-0 l1]");
        assert_eq!(places.names().uid_of("ran", "du-0"), Some(uid));
        assert_eq!(places.names().containers_of[uid], ["l1"]);
        // Unknown to kubelet's layout: the uid and the id, shortened.
        let other_id = ID.replace('0', "f");
        let other = places.from_cgroup(&format!("0::/kubepods/pod1234/{other_id}\n"));
        assert_eq!(other.tag(), "[pod 1234 f123456789ab]");
        // A pod that appears later is named once the layout is listed again.
        std::fs::create_dir_all(dir.path().join("var/log/pods/ran_du-1_1234/l2")).unwrap();
        std::fs::write(
            dir.path()
                .join(format!("var/log/containers/du-1_ran_l2-{other_id}.log")),
            "",
        )
        .unwrap();
        std::thread::sleep(RELIST);
        let later = places.from_cgroup(&format!("0::/kubepods/pod1234/{other_id}\n"));
        assert_eq!(later.tag(), "[ran/du-1 l2]");
    }
}
