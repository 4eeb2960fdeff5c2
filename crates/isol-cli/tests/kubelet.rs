//! `--pod` and `--kubelet-config`: the CPUs kubelet hands out, on the lab fixture made a
//! Kubernetes node by adding kubelet's files in the formats kubelet writes them (see
//! crates/isol/tests/checks.rs for where each format is documented).

mod common;

use std::path::Path;

use common::{fixture, isol, json, text};

const UID: &str = "0c4a7e3c-1b2d-4e5f-8a9b-0123456789ab";

/// The lab fixture with pod ran/du-0 (containers l1, owning CPU 1, and sidecar, sharing)
/// and a kubelet configuration reserving `reserved`.
fn node(reserved: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture("lab-6.12").display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let put = |rel: &str, body: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    put(
        "var/lib/kubelet/cpu_manager_state",
        &format!(
            r#"{{"policyName":"static","defaultCpuSet":"0","entries":{{"{UID}":{{"l1":"1"}}}},"checksum":1}}"#
        ),
    );
    put(
        "var/lib/kubelet/config.yaml",
        &format!("kind: KubeletConfiguration\ncpuManagerPolicy: static\nreservedSystemCPUs: \"{reserved}\"\n"),
    );
    for c in ["l1", "sidecar"] {
        put(&format!("var/log/pods/ran_du-0_{UID}/{c}/0.log"), "");
    }
    dir
}

fn check(root: &Path, args: &[&str]) -> std::process::Output {
    isol()
        .arg("--root")
        .arg(root)
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_pods_cpus_are_the_ones_kubelet_gave_it() {
    let node = node("0");
    for pod in ["ran/du-0", "ran/du-0/l1"] {
        let out = check(node.path(), &["--json", "--pod", pod]);
        let r = json(&out.stdout);
        assert_eq!(r["target"]["cpus"], "1", "{pod}");
        assert_eq!(r["target"]["source"], "pod", "{pod}");
        assert_eq!(r["target"]["pod"], pod);
        let human = text(&check(node.path(), &["--pod", pod]).stdout);
        assert!(
            human.contains(&format!("CPU 1 (kubelet's CPUs of pod {pod})")),
            "{human}"
        );
    }
    // Each way of naming what kubelet did not hand out says why, on one line, exit 64.
    for (pod, says) in [
        ("ran/du-1", "no pod ran/du-1 on this node"),
        (
            "ran/du-0/sidecar",
            "container sidecar of pod ran/du-0 has no CPU of its own",
        ),
        ("du-0", "is not NAMESPACE/NAME[/CONTAINER]"),
        ("ran/du-0/l1/x", "is not NAMESPACE/NAME[/CONTAINER]"),
        ("ran/\u{1b}[2J", "ran/\\x1b[2J"),
    ] {
        let out = check(node.path(), &["--pod", pod]);
        assert_eq!(out.status.code(), Some(64), "{pod}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{pod}: {err}");
    }
    let out = check(node.path(), &["--pod", "ran/du-0", "--cpus", "1"]);
    assert_eq!(out.status.code(), Some(64));
    // Not a node: no checkpoint, so no pod has CPUs.
    let out = check(&fixture("lab-6.12"), &["--pod", "ran/du-0"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("no pod ran/du-0"));
}

#[test]
fn the_kubelet_configuration_can_live_elsewhere() {
    let node = node("0-1");
    let reserved = |args: &[&str]| {
        let out = check(node.path(), &[&["--json"], args].concat());
        let r = json(&out.stdout);
        let f = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "kubelet.reserved")
            .unwrap()
            .clone();
        f["severity"].as_str().unwrap().to_string()
    };
    assert_eq!(reserved(&[]), "fail", "the default file reserves CPUs 0-1");
    std::fs::create_dir_all(node.path().join("etc/kubernetes")).unwrap();
    std::fs::write(
        node.path().join("etc/kubernetes/kubelet.yaml"),
        "cpuManagerPolicy: static\nreservedSystemCPUs: 0\n",
    )
    .unwrap();
    assert_eq!(
        reserved(&["--kubelet-config", "/etc/kubernetes/kubelet.yaml"]),
        "ok"
    );
    let out = check(node.path(), &["--kubelet-config", "/etc/absent.yaml"]);
    assert_eq!(out.status.code(), Some(64));
    let err = text(&out.stderr);
    assert!(err.contains("--kubelet-config /etc/absent.yaml"), "{err}");
}

/// watch and noise take `--pod` as check does, before anything is traced or measured
/// (so also without root).
#[test]
fn watch_and_noise_take_a_pod_too() {
    for cmd in ["watch", "noise"] {
        let out = isol()
            .args([cmd, "--pod", "isol-absent/pod-0", "-d", "1s"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{cmd}");
        let err = text(&out.stderr);
        assert!(
            err.contains("no pod isol-absent/pod-0 on this node"),
            "{cmd}: {err}"
        );
        let both = isol()
            .args([cmd, "--pod", "a/b", "--cpus", "1"])
            .output()
            .unwrap();
        assert_eq!(both.status.code(), Some(64), "{cmd}");
    }
}
