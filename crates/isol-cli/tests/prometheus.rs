//! isol's metrics in a real Prometheus (Debian's): the shipped alert rules pass their
//! promtool unit tests, and a Prometheus on loopback scraping `isol watch --metrics` while
//! CPU 1 is interrupted answers queries with the counters and the readiness of the same
//! moment, and fires a shipped rule through its own rule engine.

mod common;
mod runc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{http_get, isol, text};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus")
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    if !runc::have("promtool") {
        return;
    }
    for (what, file) in [("check", "isol-rules.yml"), ("test", "isol-rules.test.yml")] {
        let out = Command::new("promtool")
            .args([what, "rules", file])
            .current_dir(rules_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {what} rules {file}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // The tests can fail: a rule made to fire a minute late breaks them.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(rules_dir().join("isol-rules.yml")).unwrap();
    std::fs::write(
        dir.path().join("isol-rules.yml"),
        rules.replacen(
            "expr: isol_check_severity == 3\n",
            "expr: isol_check_severity == 3\n        for: 1m\n",
            1,
        ),
    )
    .unwrap();
    std::fs::copy(
        rules_dir().join("isol-rules.test.yml"),
        dir.path().join("isol-rules.test.yml"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "isol-rules.test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a changed rule passed: {}",
        text(&out.stdout)
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("IsolReadinessFailing"), "{said}");
}

/// A child stopped and reaped when dropped, on failure too: asked with SIGTERM, as a
/// service manager does (isol removes its tracing instance then), killed if it has not
/// ended within 20 s.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = isol_sys::thread::signal_process(self.0.id() as i32, libc::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port`: the status line and body, or None if nobody answers.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus' answer to an instant query: its result vector.
fn query(port: u16, q: &str) -> Vec<Value> {
    let (status, body) =
        http_get(port, &format!("/api/v1/query?query={}", encode(q))).expect("Prometheus answers");
    assert!(status.contains("200"), "{q}: {status} {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// Wait until `f` says yes, for at most `limit`.
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let began = Instant::now();
    while !f() {
        assert!(began.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `severity` -> its metric value.
fn value_of(severity: &str) -> i64 {
    match severity {
        "ok" => 0,
        "unknown" => 1,
        "warn" => 2,
        "fail" => 3,
        s => panic!("severity {s}"),
    }
}

fn host_check() -> std::collections::BTreeMap<String, i64> {
    let out = isol()
        .args(["check", "--cpus", "1", "--json"])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                value_of(f["severity"].as_str().unwrap()),
            )
        })
        .collect()
}

#[test]
fn prometheus_scrapes_queries_and_alerts_on_isols_metrics() {
    if !common::is_root() {
        eprintln!("skipped: watch needs root");
        return;
    }
    if !runc::have("prometheus") || !runc::have("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (exporter, web) = (free_port(), free_port());
    let _watch = Killed(
        Command::new(assert_cmd::cargo::cargo_bin("isol"))
            .args([
                "watch",
                "--cpus",
                "1",
                "--summary",
                "--check-interval",
                "2s",
                "--metrics",
            ])
            .arg(format!("127.0.0.1:{exporter}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(Duration::from_secs(30), "isol's exporter answering", || {
        http_get(exporter, "/metrics").is_some()
    });
    // What interrupts CPU 1: a task that wakes every millisecond there.
    let _work = Killed(
        Command::new("taskset")
            .args([
                "-c",
                "1",
                "python3",
                "-c",
                "import time\nwhile True: time.sleep(0.001)",
            ])
            .spawn()
            .unwrap(),
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: isol\n    static_configs:\n      - targets: ['127.0.0.1:{exporter}']\n",
            rules_dir().join("isol-rules.yml").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    until(Duration::from_secs(60), "Prometheus ready", || {
        http_get(web, "/-/ready").is_some_and(|(s, _)| s.contains("200"))
    });
    until(
        Duration::from_secs(60),
        "a scrape of isol with CPU 1's interruptions",
        || !query(web, "isol_interruptions_total{cpu=\"1\"}").is_empty(),
    );

    // The target is up, under the job and address configured.
    let up = query(web, "up{job=\"isol\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["metric"]["instance"], format!("127.0.0.1:{exporter}"));
    assert_eq!(up[0]["value"][1], "1", "{}", log());

    // Counters by kind, with their labels; the task waking on CPU 1 is among them.
    until(
        Duration::from_secs(30),
        "task interruptions of CPU 1 counted",
        || {
            query(web, "isol_interruptions_total{cpu=\"1\",kind=\"task\"}")
                .first()
                .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .is_some_and(|n| n > 0.0)
        },
    );
    let kinds = query(web, "sum by (kind) (isol_interruptions_total{cpu=\"1\"})");
    let known = [
        "local_timer",
        "ipi",
        "apic",
        "irq",
        "softirq",
        "task",
        "nmi",
        "syscall",
        "page_fault",
    ];
    for k in &kinds {
        let kind = k["metric"]["kind"].as_str().unwrap();
        assert!(known.contains(&kind), "{kind}");
    }
    let labels = query(web, "isol_interruptions_total");
    for l in &labels {
        let mut names: Vec<&str> = l["metric"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        assert_eq!(names, ["__name__", "cpu", "instance", "job", "kind"], "{l}");
    }
    let seconds = query(web, "isol_interruption_seconds_count{kind=\"task\"}");
    assert_eq!(seconds.len(), 1, "{seconds:?}");

    // Readiness: the series match `isol check` of the same moment (a check that changed in
    // between may match the check before or the one after).
    let before = host_check();
    let series = query(web, "isol_check_severity");
    let after = host_check();
    assert_eq!(series.len(), before.len(), "one series per check");
    for s in &series {
        let id = s["metric"]["check"].as_str().unwrap();
        let v: i64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(
            v == before[id] || v == after[id],
            "{id}: {v} in Prometheus, {} and {} from isol check",
            before[id],
            after[id]
        );
        assert_eq!(s["metric"]["area"], id.split('.').next().unwrap());
    }
    let info = query(web, "isol_node_info");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0]["metric"]["target"], "1");

    // A shipped rule, through Prometheus' rule engine: a failing check alerts at once; no
    // alert names a check that does not fail.
    let failing: Vec<&String> = before
        .iter()
        .filter(|(_, v)| **v == 3)
        .map(|(k, _)| k)
        .collect();
    let alerts = || -> Vec<Value> {
        let (_, body) = http_get(web, "/api/v1/alerts").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["alerts"].as_array().unwrap().clone()
    };
    if let Some(first) = failing.first() {
        until(
            Duration::from_secs(30),
            "IsolReadinessFailing firing",
            || {
                alerts().iter().any(|a| {
                    a["labels"]["alertname"] == "IsolReadinessFailing"
                        && a["labels"]["check"] == first.as_str()
                        && a["state"] == "firing"
                })
            },
        );
    } else {
        eprintln!("no check fails on this machine: IsolReadinessFailing must stay quiet");
        std::thread::sleep(Duration::from_secs(3));
    }
    for a in alerts() {
        if a["labels"]["alertname"] == "IsolReadinessFailing" {
            let check = a["labels"]["check"].as_str().unwrap();
            assert!(
                failing.iter().any(|f| *f == check),
                "{check} alerts but does not fail"
            );
        }
    }
}
