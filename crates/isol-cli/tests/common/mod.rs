//! Helpers shared by the `isol` command's test files.
#![allow(dead_code)]

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

pub fn isol() -> Command {
    Command::cargo_bin("isol").unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

pub fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).expect("valid JSON")
}

/// `isol watch ARGS --replay tests/fixtures/RECORDING`, which must succeed: its stdout.
pub fn replay(args: &[&str], recording: &str) -> String {
    let out = isol()
        .arg("watch")
        .args(args)
        .arg("--replay")
        .arg(fixture(recording))
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

pub fn is_root() -> bool {
    isol_sys::thread::is_root()
}

/// Run `isol ARGS` as the user `nobody` (host tier: needs root and setpriv to drop
/// privileges). None, after saying why, when that cannot be done here.
pub fn as_nobody(args: &[&str]) -> Option<std::process::Output> {
    let has_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok();
    if !is_root() || !has_setpriv {
        eprintln!("skipped: needs root and setpriv to run isol as nobody");
        return None;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(assert_cmd::cargo::cargo_bin("isol"))
        .args(args)
        .output()
        .unwrap();
    Some(out)
}

/// Start `isol ARGS`, send it SIGINT after `after`, and wait for it.
pub fn interrupted(args: &[&str], after: std::time::Duration) -> std::process::Output {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = isol_sys::thread::signal_process(child.id() as i32, libc::SIGINT);
    child.wait_with_output().unwrap()
}

/// Assert that a finished `isol` run exited 0, showing its stderr otherwise.
pub fn assert_success(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// The library's test helpers, shared rather than copied (`copy_tree`).
#[path = "../../../isol/tests/common/mod.rs"]
mod library;
#[allow(unused_imports)] // not every test file copies trees
pub use library::copy_tree;

/// Longer than any refusal may take: a run past it is a hang.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes as text, for messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Read stdout until the start line: the watch is tracing.
pub fn wait_started(child: &mut std::process::Child) -> std::process::ChildStdout {
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while std::io::Read::read(&mut stdout, &mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    assert!(
        text(&line).contains("\"type\":\"start\""),
        "{}",
        text(&line)
    );
    stdout
}

/// `GET path` from 127.0.0.1:`port` over HTTP/1.0: the status line and the body; None
/// while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    let (head, body) = all.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// A check report's finding `id`.
pub fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report}"))
}
