//! What kubelet hands out on this node: its CPU manager's checkpoint
//! (`/var/lib/kubelet/cpu_manager_state`: the policy, the shared pool, and the CPUs each
//! container got for itself) and the CPUs it keeps for the system (`reservedSystemCPUs` in
//! its configuration file, `/var/lib/kubelet/config.yaml` unless told otherwise).
//!
//! The checkpoint is kubelet's `cpumanager/state` format (JSON):
//! `{"policyName":"static","defaultCpuSet":"0-1,6-7","entries":{"<pod uid>":{"<container>":"2-5"}},"checksum":1552716370}`.
//! The configuration is a `KubeletConfiguration` in YAML or JSON; isol reads the two
//! top-level keys it needs (`cpuManagerPolicy`, `reservedSystemCPUs`), written as kubelet's
//! examples write them (`key: value`, quoted or not). A node configured by command-line
//! flags instead (`--reserved-cpus`) has none of them in the file: isol then says it does
//! not know.

use std::collections::BTreeMap;

use serde::Serialize;

use super::place::PodNames;
use super::Fact;
use crate::cpus::CpuSet;
use crate::sysroot::SysRoot;

/// Where kubelet keeps its CPU manager's checkpoint.
pub const CPU_MANAGER_STATE: &str = "/var/lib/kubelet/cpu_manager_state";
/// Where kubelet's configuration file usually is.
pub const CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// The CPU manager's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuManagerState {
    /// `none` or `static` (as written: kubelet writes `none`, older ones `None`).
    pub policy: String,
    /// The shared pool: every CPU not given to a container alone.
    pub default_cpu_set: CpuSet,
    /// The CPUs given to containers alone: pod uid -> container name -> CPUs.
    pub entries: BTreeMap<String, BTreeMap<String, CpuSet>>,
}

/// One container's own CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exclusive {
    /// Its pod's uid.
    pub pod_uid: String,
    /// Its pod's `namespace/name`, from kubelet's log layout, when known.
    pub pod: Option<String>,
    /// The container's name.
    pub container: String,
    /// Its CPUs.
    pub cpus: CpuSet,
}

impl Exclusive {
    /// `ns/pod container` (or the pod's uid when its name is not known).
    pub fn who(&self) -> String {
        format!(
            "{} {}",
            self.pod
                .clone()
                .unwrap_or_else(|| format!("pod {}", self.pod_uid)),
            self.container
        )
    }
}

/// The parts of kubelet's configuration isol reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KubeletConfig {
    /// `cpuManagerPolicy`.
    pub cpu_manager_policy: Option<String>,
    /// `reservedSystemCPUs`.
    pub reserved_system_cpus: Option<CpuSet>,
}

/// What isol knows of the kubelet of this node.
#[derive(Debug, Clone, Serialize)]
pub struct Kubelet {
    /// The CPU manager's checkpoint (absent: not a Kubernetes node, or no CPU manager).
    pub state: Fact<CpuManagerState>,
    /// The configuration file, and what it says.
    pub config_path: String,
    /// What the configuration says.
    pub config: Fact<KubeletConfig>,
    /// Pods and containers by name, from kubelet's log layout.
    #[serde(skip)]
    pub names: PodNames,
}

impl Kubelet {
    /// Read kubelet's files below `root`; `config` overrides where its configuration is.
    pub fn load(root: &SysRoot, config: Option<&str>) -> Kubelet {
        let config_path = config.unwrap_or(CONFIG).to_string();
        Kubelet {
            state: Fact::read(root, CPU_MANAGER_STATE, parse_state),
            config: Fact::read(root, &config_path, |s| Ok(parse_config(s))),
            config_path,
            names: PodNames::load(root),
        }
    }

    /// Whether this node runs a kubelet isol can see (its checkpoint or its configuration).
    pub fn present(&self) -> bool {
        self.state.as_ref().is_some() || self.config.as_ref().is_some()
    }

    /// Every container's own CPUs, named where kubelet's log layout names the pod.
    pub fn exclusive(&self) -> Vec<Exclusive> {
        let Some(s) = self.state.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (uid, containers) in &s.entries {
            let pod = self.names.pods.get(uid).map(|(ns, n)| format!("{ns}/{n}"));
            for (container, cpus) in containers {
                out.push(Exclusive {
                    pod_uid: uid.clone(),
                    pod: pod.clone(),
                    container: container.clone(),
                    cpus: cpus.clone(),
                });
            }
        }
        out
    }

    /// The CPUs kubelet gave pod `namespace/name` (one container's, or all of its
    /// containers' together). `Err` says why there are none.
    pub fn cpus_of(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<CpuSet, String> {
        let uid = self.names.uid_of(namespace, name).ok_or_else(|| {
            format!(
                "no pod {namespace}/{name} on this node (kubelet's /var/log/pods has no \
                 {namespace}_{name}_<uid> directory)"
            )
        })?;
        let state = self.state.as_ref().ok_or_else(|| {
            format!("kubelet's CPU manager state ({CPU_MANAGER_STATE}) cannot be read")
        })?;
        let Some(entries) = state.entries.get(uid) else {
            return Err(format!(
                "pod {namespace}/{name} has no CPU of its own (CPU manager policy {}; only \
                 containers of Guaranteed pods with whole CPUs get some)",
                state.policy
            ));
        };
        let mut cpus = CpuSet::new();
        for (c, set) in entries {
            if container.is_none_or(|want| want == c) {
                cpus = cpus.union(set);
            }
        }
        if cpus.is_empty() {
            return Err(format!(
                "container {} of pod {namespace}/{name} has no CPU of its own (its \
                 containers with some: {})",
                container.unwrap_or("?"),
                entries.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(cpus)
    }
}

/// Parse the CPU manager's checkpoint.
pub fn parse_state(text: &str) -> Result<CpuManagerState, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "policyName")]
        policy: String,
        #[serde(rename = "defaultCpuSet", default)]
        default_cpu_set: String,
        #[serde(default)]
        entries: BTreeMap<String, BTreeMap<String, String>>,
    }
    let raw: Raw =
        serde_json::from_str(text).map_err(|e| format!("not a CPU manager checkpoint: {e}"))?;
    let list = |s: &str| CpuSet::parse_list(s).map_err(|e| e.to_string());
    let mut entries = BTreeMap::new();
    for (uid, containers) in raw.entries {
        let mut m = BTreeMap::new();
        for (c, cpus) in containers {
            m.insert(c, list(&cpus)?);
        }
        entries.insert(uid, m);
    }
    Ok(CpuManagerState {
        policy: raw.policy,
        default_cpu_set: list(&raw.default_cpu_set)?,
        entries,
    })
}

/// The keys isol needs from a `KubeletConfiguration`, YAML or JSON.
pub fn parse_config(text: &str) -> KubeletConfig {
    let value = |key: &str| -> Option<String> {
        if text.trim_start().starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            return v.get(key)?.as_str().map(str::to_string);
        }
        text.lines().find_map(|l| {
            // A top-level key: no indentation.
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let v = rest.split(" #").next()?.trim();
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            (!v.is_empty()).then(|| v.to_string())
        })
    };
    KubeletConfig {
        cpu_manager_policy: value("cpuManagerPolicy"),
        reserved_system_cpus: value("reservedSystemCPUs").and_then(|v| CpuSet::parse_list(&v).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checkpoint kubelet's documentation and source show (cpumanager/state).
    const STATE: &str = r#"{"policyName":"static","defaultCpuSet":"0,2-12,14-23","entries":{"235148fe-393f-47a8-a17d-bd55bc1a836b":{"cgroup1-0":"1,13"}},"checksum":1552716370}"#;

    #[test]
    fn the_checkpoint_and_the_configuration() {
        let s = parse_state(STATE).unwrap();
        assert_eq!(s.policy, "static");
        assert_eq!(s.default_cpu_set.to_list(), "0,2-12,14-23");
        assert_eq!(
            s.entries["235148fe-393f-47a8-a17d-bd55bc1a836b"]["cgroup1-0"].to_list(),
            "1,13"
        );
        let none = parse_state(r#"{"policyName":"none","defaultCpuSet":"","checksum":3242152201}"#)
            .unwrap();
        assert!(none.entries.is_empty() && none.default_cpu_set.is_empty());
        assert!(parse_state("{").is_err());
        assert!(parse_state(r#"{"policyName":"static","defaultCpuSet":"x"}"#).is_err());
        let yaml = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicy: static\nreservedSystemCPUs: \"0-1\" # housekeeping\nkubeReserved:\n  cpu: 1000m\n";
        let c = parse_config(yaml);
        assert_eq!(c.cpu_manager_policy.as_deref(), Some("static"));
        assert_eq!(c.reserved_system_cpus.unwrap().to_list(), "0-1");
        let json = r#"{"kind":"KubeletConfiguration","cpuManagerPolicy":"none"}"#;
        assert_eq!(
            parse_config(json).cpu_manager_policy.as_deref(),
            Some("none")
        );
        assert_eq!(
            parse_config("  reservedSystemCPUs: 0\n"),
            KubeletConfig::default()
        );
    }
}
