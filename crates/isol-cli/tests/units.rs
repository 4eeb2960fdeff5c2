//! The shipped systemd units as systemd runs them: their command lines expanded from the
//! instance a user enables (the README's `isol-apply@2-7.service`), run against copies of
//! captured machines; their hardening rated by `systemd-analyze security --offline`, each
//! under a bound; and the least privilege they claim, tried with the capabilities they keep.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{copy_tree, fixture, isol};

fn unit(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/systemd")
        .join(name)
}

/// `%I`: systemd's unescaping of an instance name (`-` is `/`, `\xNN` a byte).
fn unescape(instance: &str) -> String {
    let mut out = String::new();
    let mut rest = instance;
    while let Some(c) = rest.chars().next() {
        if let Some(hex) = rest.strip_prefix("\\x").filter(|h| h.len() >= 2) {
            out.push(u8::from_str_radix(&hex[..2], 16).unwrap() as char);
            rest = &hex[2..];
            continue;
        }
        out.push(if c == '-' { '/' } else { c });
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Expand the unit's specifiers (`%i`, `%I`, `%%`) for `instance`.
fn specifiers(text: &str, instance: &str) -> String {
    text.replace("%%", "\u{0}")
        .replace("%i", instance)
        .replace("%I", &unescape(instance))
        .replace('\u{0}', "%")
}

/// The arguments after `/usr/bin/isol` of the unit's `key` line (`ExecStart=`), as systemd
/// passes them for `instance`: specifiers expanded, then `${VAR}` from `Environment=`.
fn command(unit_text: &str, key: &str, instance: &str) -> Vec<String> {
    let env: BTreeMap<String, String> = unit_text
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), specifiers(v, instance)))
        .collect();
    let line = unit_text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the unit"));
    let words: Vec<String> = specifiers(line, instance)
        .split_whitespace()
        .map(|w| {
            let mut w = w.to_string();
            for (k, v) in &env {
                w = w.replace(&format!("${{{k}}}"), v);
            }
            w
        })
        .collect();
    assert_eq!(words[0], "/usr/bin/isol", "{line}");
    words[1..].to_vec()
}

#[test]
fn instance_names_expand_as_systemd_expands_them() {
    assert_eq!(unescape("2-7"), "2/7");
    assert_eq!(unescape("2\\x2d7\\x2c10"), "2-7,10");
    assert_eq!(
        specifiers("--cpus %i %I 100%%", "2-7"),
        "--cpus 2-7 2/7 100%"
    );
}

/// Every file under `root` but isol's state, with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(root.join("run")) {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The apply unit enabled as the README shows it, `isol-apply@2-7.service`, on a copy of
/// the lab machine given eight CPUs: start applies CPUs 2-7, stop restores every byte.
#[test]
fn the_apply_unit_of_the_readme_applies_and_restores() {
    let text = std::fs::read_to_string(unit("isol-apply@.service")).unwrap();
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    assert!(
        readme.contains("isol-apply@2-7.service"),
        "the README's example moved"
    );
    let start = command(&text, "ExecStart=", "2-7");
    assert_eq!(start, ["apply", "--cpus", "2-7"], "{start:?}");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("lab-6.12"), dir.path());
    for f in ["online", "possible", "present"] {
        std::fs::write(dir.path().join("sys/devices/system/cpu").join(f), "0-7\n").unwrap();
    }
    let r = dir.path().to_str().unwrap();
    let pristine = tree(dir.path());
    let out = isol().args(["--root", r]).args(&start).output().unwrap();
    common::assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CPUs 2-7 isolated"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_ne!(tree(dir.path()), pristine);
    let stop = command(&text, "ExecStop=", "2-7");
    isol().args(["--root", r]).args(&stop).assert().success();
    assert_eq!(tree(dir.path()), pristine);
}

/// `systemd-analyze security --offline` rates each unit under its bound (exposure out of
/// 10, lower is safer): both were 9.6 "UNSAFE" with no hardening at all.
#[test]
fn the_units_are_hardened() {
    let have = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("skipped: no systemd-analyze (Debian's systemd package)");
        return;
    }
    for (name, bound) in [
        ("isol-apply@.service", "2.5"),
        ("isol-watch.service", "2.0"),
    ] {
        let out = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!(
                "--threshold={}",
                (bound.parse::<f64>().unwrap() * 10.0) as u32
            ))
            .arg(unit(name))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        let level = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .map(|(_, v)| v.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("{name}: no rating in {text}\n{err}"));
        assert!(
            out.status.success(),
            "{name}: exposure {level}, over the bound {bound}\n{text}"
        );
        assert!(
            !err.contains("Unknown") && !err.contains("ignoring"),
            "{name}: systemd does not understand all of it: {err}"
        );
        eprintln!("{name}: exposure {level} (bound {bound})");
    }
}

/// The watch unit's own command, for one second, with only the capability the unit keeps
/// (CAP_SYSLOG) and no new privileges (host tier: tracing needs root).
#[test]
fn the_watch_unit_command_runs_with_the_units_capabilities() {
    let text = std::fs::read_to_string(unit("isol-watch.service")).unwrap();
    let words = command(&text, "ExecStart=", "");
    let caps: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a bounding set")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    assert_eq!(caps, ["syslog"]);
    if !common::is_root() {
        eprintln!("skipped: tracing needs root");
        return;
    }
    let out = std::process::Command::new("setpriv")
        .arg(format!("--bounding-set=-all,+{}", caps.join(",+")))
        .arg("--no-new-privs")
        .arg(assert_cmd::cargo::cargo_bin("isol"))
        .args(&words)
        .args(["-d", "1s"])
        .output()
        .unwrap();
    common::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("Summary over"), "{stdout}");
    assert!(
        stderr.contains("Prometheus metrics on http://127.0.0.1:9184"),
        "{stderr}"
    );
    assert!(stderr.contains("network timestamping held on"), "{stderr}");
    // With CAP_SYSLOG, functions are named, not printed as addresses.
    assert!(!stderr.contains("shows no addresses"), "{stderr}");
}
