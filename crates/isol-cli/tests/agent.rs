//! isol as a node agent: the Kubernetes manifests validate against the API schema, and the
//! OCI image (packaging/oci/build-image.sh, unpacked by umoci) runs under runc exactly as
//! the DaemonSet configures it (its capabilities, host PID namespace, read-only root and
//! host paths), watching and checking as isol on the host does.

mod common;
mod runc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{http_get, isol, text};
use runc::{Container, Spec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> PathBuf {
    repo().join("packaging/kubernetes/validate")
}

/// Node and the validator's packages (`npm ci` in packaging/kubernetes/validate).
fn node_ready() -> bool {
    if !runc::have("node") {
        return false;
    }
    let ready = validator().join("node_modules/kubernetes-models").is_dir();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "packaging/kubernetes/validate has no node_modules: .ci/run runs npm ci there"
        );
        eprintln!("skipped: run `npm ci` in packaging/kubernetes/validate");
    }
    ready
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("packaging/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new("node")
        .arg(validator().join("validate.mjs"))
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    if !node_ready() {
        return;
    }
    let out = validate(&manifests());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("4 objects valid"),
        "{}",
        text(&out.stdout)
    );
    // The validator fails where the API server would drop or refuse a field.
    let dir = tempfile::tempdir().unwrap();
    let ds = std::fs::read_to_string(repo().join("packaging/kubernetes/daemonset.yaml")).unwrap();
    for (from, to, says) in [
        (
            "readOnlyRootFilesystem",
            "readOnlyRootFileSystem",
            "readOnlyRootFileSystem",
        ),
        (
            "containerPort: 9184",
            "containerPort: \"9184\"",
            "containerPort",
        ),
        ("  selector:\n", "  selectr:\n", "selector"),
    ] {
        let broken = dir.path().join("daemonset.yaml");
        assert!(ds.contains(from), "{from}");
        std::fs::write(&broken, ds.replacen(from, to, 1)).unwrap();
        let out = validate(&[broken]);
        assert_eq!(out.status.code(), Some(1), "{to}: {}", text(&out.stdout));
        assert!(
            text(&out.stdout).contains(says),
            "{to}: {}",
            text(&out.stdout)
        );
    }
}

/// The DaemonSet's pod template, as the test's runc configuration takes it.
fn daemonset() -> Value {
    let out = Command::new("node")
        .arg(validator().join("to-json.mjs"))
        .arg(repo().join("packaging/kubernetes/daemonset.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0]["spec"]["template"]["spec"].clone()
}

/// The image, built once per test run and unpacked by umoci (which checks every digest).
fn image() -> &'static Path {
    static BUNDLE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let out = Command::new(repo().join("packaging/oci/build-image.sh"))
                .env("ISOL_STATIC_TARGET_DIR", repo().join("target/lab/build"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "build-image.sh: {}",
                text(&out.stderr)
            );
            let layout = repo().join("target/oci/isol");
            let version = env!("CARGO_PKG_VERSION");
            let dir = tempfile::tempdir().unwrap();
            let bundle = dir.path().join("bundle");
            let out = Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:{version}", layout.display()))
                .arg(&bundle)
                .output()
                .unwrap();
            assert!(out.status.success(), "umoci unpack: {}", text(&out.stderr));
            dir
        })
        .path()
}

/// runc's configuration for the DaemonSet's container, running `args` instead of its own
/// (`$(POD_IP)` is loopback here, the pod network being the host's in this test).
fn as_the_daemonset_says(args: Option<Vec<String>>) -> Spec {
    let pod = daemonset();
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    let image_config: Value =
        serde_json::from_slice(&std::fs::read(image().join("bundle/config.json")).unwrap())
            .unwrap();
    let entry: Vec<String> =
        serde_json::from_value(image_config["process"]["args"].clone()).unwrap();
    let mut spec = Spec::new(&[]);
    spec.args = vec![entry[0].clone()];
    spec.args.extend(args.unwrap_or_else(|| {
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().replace("$(POD_IP)", "127.0.0.1"))
            .collect()
    }));
    spec.rootfs = Some(image().join("bundle/rootfs"));
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    spec.caps = Some(
        sc["capabilities"]["add"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("CAP_{}", c.as_str().unwrap()))
            .collect(),
    );
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsUser"], 0);
    spec.host_pid = pod["hostPID"] == true;
    spec.host_net = true;
    for m in c["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let host = PathBuf::from(vol["hostPath"]["path"].as_str().unwrap());
        if !host.exists() {
            // DirectoryOrCreate; Directory ones exist on any node isol runs on.
            assert_eq!(vol["hostPath"]["type"], "DirectoryOrCreate", "{host:?}");
            continue;
        }
        spec = spec.bind(
            host,
            m["mountPath"].as_str().unwrap(),
            m["readOnly"] != true,
        );
    }
    spec
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status line, then the body.
fn scrape(port: u16) -> Option<String> {
    http_get(port, "/metrics").map(|(status, body)| format!("{status}\n{body}"))
}

/// The agent as deployed: its metrics answer on the address given, count the CPU's
/// interruptions, and label the ones a pod causes with the pod's names (kubelet's log
/// layout bound in read-only); SIGTERM ends it cleanly.
#[test]
fn the_agent_runs_as_its_daemonset_says() {
    if !runc::usable() || !runc::have("umoci") || !node_ready() || !runc::have("python3") {
        return;
    }
    let _one = runc::one_at_a_time();
    // A pod on this node, named by kubelet's layout (laid out first: the agent's host
    // paths are bound when it starts).
    let uid = format!("{:08x}-3b2d-4e5f-8a9b-0123456789ab", std::process::id());
    let id = format!("{:064x}", 0xa6e7_u64 << 32 | u64::from(std::process::id()));
    let _logs = runc::PodLogs::lay_out("isoltest", "agent-0", &uid, "app", &id);
    let _parents = runc::CgroupParents(vec![format!("/kubepods/pod{uid}"), "/kubepods".into()]);
    let port = free_port();
    let mut spec = as_the_daemonset_says(None);
    for a in spec.args.iter_mut() {
        *a = a.replace(":9184", &format!(":{port}"));
    }
    assert!(
        spec.args.contains(&format!("127.0.0.1:{port}")),
        "{:?}",
        spec.args
    );
    let mut agent = Container::start(&spec);
    let began = Instant::now();
    while scrape(port).is_none() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the agent's metrics never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The pod's program on CPU 1.
    let mut work = Spec::new(&[
        "python3",
        "-c",
        "import time\nt = time.time()\nwhile time.time() - t < 2:\n    time.sleep(0.001)",
    ]);
    work.cgroups_path = Some(format!("/kubepods/pod{uid}/{id}"));
    work.cpus = Some("1".into());
    let out = Container::run(&work);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let body = scrape(port).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let counted: u64 = body
        .lines()
        .filter(|l| l.starts_with("isol_interruptions_total{cpu=\"1\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(counted > 0, "{body}");
    assert!(
        body.contains(
            "isol_pod_interruptions_total{cpu=\"1\",namespace=\"isoltest\",pod=\"agent-0\"}"
        ),
        "{body}"
    );
    agent.kill("TERM");
    let out = agent.wait();
    assert!(out.status.success(), "{out:?}");
}

/// Severity of each finding, by id.
fn severities(report: &[u8]) -> std::collections::BTreeMap<String, String> {
    let r: Value = serde_json::from_slice(report).unwrap();
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `isol check` in the agent's container judges as on the host, but for what the
/// container hides, which it names: with /proc unmasked, only `kernel.view` differs (it
/// says /sys and /proc/sys are read-only); with the runtime's default masks, the timers
/// are unknown and `kernel.view` says /proc/timer_list is masked and what to do.
#[test]
fn check_in_the_agent_judges_as_on_the_host() {
    if !runc::usable() || !runc::have("umoci") || !node_ready() {
        return;
    }
    let _one = runc::one_at_a_time();
    let args = || {
        Some(vec![
            "check".into(),
            "--cpus".into(),
            "1".into(),
            "--json".into(),
        ])
    };
    let host = || {
        isol()
            .args(["check", "--cpus", "1", "--json"])
            .output()
            .unwrap()
            .stdout
    };
    let before = severities(&host());
    let mut unmasked = as_the_daemonset_says(args());
    unmasked.masked = Some(Vec::new());
    let out = Container::run(&unmasked);
    let inside = severities(&out.stdout);
    let after = severities(&host());
    for (id, sev) in &inside {
        if id == "kernel.view" {
            continue;
        }
        assert!(
            sev == &before[id] || sev == &after[id],
            "{id}: {sev} in the container, {} and {} on the host",
            before[id],
            after[id]
        );
    }
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let view = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "kernel.view")
        .unwrap();
    assert_eq!(view["severity"], "ok", "{view}");
    assert!(
        view["summary"].as_str().unwrap().contains("/proc/sys"),
        "{view}"
    );

    let masked = Container::run(&as_the_daemonset_says(args()));
    let r: Value = serde_json::from_slice(&masked.stdout).unwrap();
    let find = |id: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()
            .clone()
    };
    let view = find("kernel.view");
    assert_eq!(view["severity"], "warn");
    let says = view["summary"].as_str().unwrap();
    assert!(says.contains("/proc/timer_list is masked"), "{says}");
    assert!(
        view["fix"]["text"].as_str().unwrap().contains("hostPID"),
        "{view}"
    );
    let tick = find("timers.tick");
    assert_eq!(tick["severity"], "unknown", "{tick}");
    assert!(
        tick["summary"].as_str().unwrap().contains("masked"),
        "{tick}"
    );
}

/// The agent's watch and one on the host, run side by side on CPU 1, see the same
/// interruptions by the kernel (timer, IPIs, device IRQs, softirqs, NMIs) over the time
/// both ran. (Which system calls, faults and task switches interrupt depends on what each
/// watch takes as the CPU's workload when it starts, so those are left out.)
#[test]
fn watch_in_the_agent_sees_what_the_host_sees() {
    if !runc::usable() || !runc::have("umoci") || !node_ready() {
        return;
    }
    let _one = runc::one_at_a_time();
    // Buffers large enough for what the container's start costs CPU 1 when it lands there
    // (its page faults are traced too): a dropped event would make the two views
    // incomparable. System calls, compared by neither, are not traced: once, the start's
    // system calls overflowed 16 MiB on CPU 1 in 3 s.
    let watch = [
        "watch",
        "--cpus",
        "1",
        "--json",
        "-d",
        "3s",
        "--buffer-kb",
        "16384",
        "--no-syscalls",
    ];
    let json_watch = |a: &mut Vec<String>| a.extend(watch.map(String::from));
    let mut args = Vec::new();
    json_watch(&mut args);
    let mut agent = Container::start(&as_the_daemonset_says(Some(args)));
    let host = isol().args(watch).output().unwrap();
    let inside = agent.wait();
    assert!(host.status.success() && inside.status.success());
    let seen = |out: &[u8]| -> (u64, u64, std::collections::BTreeSet<(u64, String, String)>) {
        let mut start = 0;
        let mut end = 0;
        let mut set = std::collections::BTreeSet::new();
        for l in text(out).lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            match v["type"].as_str() {
                Some("start") => start = v["start_ns"].as_u64().unwrap(),
                Some("interruption")
                    if ["local_timer", "ipi", "apic", "irq", "softirq", "nmi"]
                        .contains(&v["kind"].as_str().unwrap()) =>
                {
                    let at = v["start_ns"].as_u64().unwrap();
                    end = end.max(at);
                    set.insert((
                        at,
                        v["kind"].as_str().unwrap().into(),
                        v["source"].as_str().unwrap().into(),
                    ));
                }
                Some("lost") => panic!("the kernel dropped events: {l}"),
                _ => {}
            }
        }
        (start, end, set)
    };
    let (hs, he, h) = seen(&host.stdout);
    let (cs, ce, c) = seen(&inside.stdout);
    // The window both watched, less 100 ms at each edge (a batch's worth).
    let (from, to) = (
        hs.max(cs) + 100_000_000,
        he.min(ce).saturating_sub(100_000_000),
    );
    assert!(
        to > from + 1_000_000_000,
        "the two watches overlapped less than a second"
    );
    let window =
        |s: &std::collections::BTreeSet<(u64, String, String)>| -> Vec<(u64, String, String)> {
            s.iter()
                .filter(|(at, ..)| (from..to).contains(at))
                .cloned()
                .collect()
        };
    let (hw, cw) = (window(&h), window(&c));
    assert!(!hw.is_empty());
    let all =
        |s: &std::collections::BTreeSet<(u64, String, String)>| -> Vec<(u64, String, String)> {
            s.iter().cloned().collect()
        };
    // Each trace instance stamps its own copy of an event, one write after the other in the
    // same tracepoint call: usually a few microseconds apart, but this is a virtual machine,
    // and the hypervisor can stop the vCPU between the two writes (194 us has been seen).
    // So each interruption in one window is paired, one to one and nearest first, with one of
    // the same kind and source in the other watch's whole record (not its window: a pair can
    // straddle the window's edge), within 1 ms.
    let unmatched =
        |a: &[(u64, String, String)], b: &[(u64, String, String)]| -> Vec<(u64, String, String)> {
            let mut taken = vec![false; b.len()];
            let mut left = Vec::new();
            for (at, kind, source) in a {
                let best = b
                    .iter()
                    .enumerate()
                    .filter(|(i, (bt, bk, bs))| {
                        !taken[*i] && bk == kind && bs == source && bt.abs_diff(*at) <= 1_000_000
                    })
                    .min_by_key(|(_, (bt, ..))| bt.abs_diff(*at));
                match best {
                    Some((i, _)) => taken[i] = true,
                    None => left.push((*at, kind.clone(), source.clone())),
                }
            }
            left
        };
    let only_host = unmatched(&hw, &all(&c));
    let only_agent = unmatched(&cw, &all(&h));
    assert!(
        only_host.is_empty() && only_agent.is_empty(),
        "of {} interruptions on the host and {} in the agent, seen by the host only: {only_host:?}; by the agent only: {only_agent:?}",
        hw.len(),
        cw.len()
    );
}
