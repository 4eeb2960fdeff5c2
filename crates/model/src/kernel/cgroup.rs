//! cgroup cpusets, v1 and v2, including v2 partitions (`cpuset.cpus.partition`).

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::sysroot::SysRoot;

/// Which cgroup version a cpuset lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// cgroup v1 (one hierarchy per controller).
    V1,
    /// cgroup v2 (the unified hierarchy).
    V2,
}

/// One cgroup with a cpuset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpuset {
    /// Which cgroup version.
    pub version: CgroupVersion,
    /// Kernel path of the cgroup directory.
    pub path: String,
    /// Requested CPUs (`cpuset.cpus`); empty in v2 means "inherit".
    pub cpus: Option<CpuSet>,
    /// Effective CPUs (`cpuset.cpus.effective` / `cpuset.effective_cpus`).
    pub effective: Option<CpuSet>,
    /// v2 `cpuset.cpus.partition`: `member`, `root`, `isolated`, or `... invalid (why)`.
    pub partition: Option<String>,
    /// v1 `cpuset.cpu_exclusive`.
    pub exclusive: Option<bool>,
    /// v1 `cpuset.sched_load_balance`.
    pub load_balance: Option<bool>,
}

impl Cpuset {
    /// Whether this is a valid isolated partition (v2).
    pub fn isolated_partition(&self) -> bool {
        self.partition.as_deref() == Some("isolated")
    }
}

/// A mount of a cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupMount {
    /// Which cgroup version.
    pub version: CgroupVersion,
    /// Where it is mounted.
    pub mount_point: String,
    /// For v1, whether this hierarchy has the cpuset controller.
    pub cpuset: bool,
}

/// cgroup filesystems from `/proc/self/mounts`.
pub fn parse_mounts(mounts: &str) -> Vec<CgroupMount> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (point, fstype, opts) = (*f.get(1)?, *f.get(2)?, *f.get(3)?);
            let point = point.replace("\\040", " ");
            match fstype {
                "cgroup2" => Some(CgroupMount {
                    version: CgroupVersion::V2,
                    mount_point: point,
                    cpuset: true,
                }),
                "cgroup" => Some(CgroupMount {
                    version: CgroupVersion::V1,
                    mount_point: point,
                    cpuset: opts.split(',').any(|o| o == "cpuset"),
                }),
                _ => None,
            }
        })
        .collect()
}

/// Walk at most this many cgroups per hierarchy.
const MAX_CGROUPS: usize = 256;
/// And at most this deep.
const MAX_DEPTH: usize = 4;

/// Every cpuset cgroup under the mounted hierarchies, breadth first, bounded.
pub fn load(root: &SysRoot, mounts: &[CgroupMount]) -> Vec<Cpuset> {
    let mut out = Vec::new();
    for m in mounts.iter().filter(|m| m.cpuset) {
        let mut queue = vec![(m.mount_point.clone(), 0usize)];
        let mut seen = 0;
        while let Some((dir, depth)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            seen += 1;
            if seen > MAX_CGROUPS {
                break;
            }
            let Ok(names) = root.list(&dir) else { continue };
            let has = |f: &str| names.iter().any(|n| n == f);
            let read_set = |f: &str| {
                has(f)
                    .then(|| root.read(&format!("{dir}/{f}")).ok())
                    .flatten()
                    .and_then(|t| CpuSet::parse_list(t.trim()).ok())
            };
            let read_flag = |f: &str| {
                has(f)
                    .then(|| root.read_line(&format!("{dir}/{f}")).ok())
                    .flatten()
                    .map(|v| v == "1")
            };
            let cs = match m.version {
                CgroupVersion::V1 if has("cpuset.cpus") => Some(Cpuset {
                    version: CgroupVersion::V1,
                    path: dir.clone(),
                    cpus: read_set("cpuset.cpus"),
                    effective: read_set("cpuset.effective_cpus"),
                    partition: None,
                    exclusive: read_flag("cpuset.cpu_exclusive"),
                    load_balance: read_flag("cpuset.sched_load_balance"),
                }),
                CgroupVersion::V2 if has("cpuset.cpus.effective") => Some(Cpuset {
                    version: CgroupVersion::V2,
                    path: dir.clone(),
                    cpus: read_set("cpuset.cpus"),
                    effective: read_set("cpuset.cpus.effective"),
                    partition: has("cpuset.cpus.partition")
                        .then(|| root.read_line(&format!("{dir}/cpuset.cpus.partition")).ok())
                        .flatten(),
                    exclusive: None,
                    load_balance: None,
                }),
                _ => None,
            };
            // Without a cpuset here, v2 children cannot have one either (the controller is
            // enabled top-down); v1 hierarchies without cpuset files are skipped entirely.
            if cs.is_none() && depth > 0 {
                continue;
            }
            if let Some(cs) = cs {
                out.push(cs);
            }
            if depth < MAX_DEPTH {
                for n in &names {
                    if !n.contains('.')
                        && n != "tasks"
                        && n != "notify_on_release"
                        && n != "release_agent"
                    {
                        queue.push((format!("{dir}/{n}"), depth + 1));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_mounts() {
        let m = parse_mounts(
            "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
             cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
        );
        assert_eq!(m.len(), 3);
        assert!(!m[0].cpuset && m[1].cpuset);
        assert_eq!(m[2].version, CgroupVersion::V2);
        assert_eq!(m[2].mount_point, "/sys/fs/cgroup/unified");
    }

    #[test]
    fn walks_a_v2_partition() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(base.join("rt")).unwrap();
        std::fs::write(base.join("cpuset.cpus.effective"), "0-3\n").unwrap();
        std::fs::write(base.join("rt/cpuset.cpus"), "2-3\n").unwrap();
        std::fs::write(base.join("rt/cpuset.cpus.effective"), "2-3\n").unwrap();
        std::fs::write(base.join("rt/cpuset.cpus.partition"), "isolated\n").unwrap();
        let root = SysRoot::at(dir.path());
        let mounts = parse_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n");
        let sets = load(&root, &mounts);
        assert_eq!(sets.len(), 2);
        assert!(sets[1].isolated_partition());
        assert_eq!(sets[1].cpus.as_ref().unwrap().to_list(), "2-3");
        assert_eq!(sets[0].effective.as_ref().unwrap().to_list(), "0-3");
    }
}
