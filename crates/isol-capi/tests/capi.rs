//! The C ABI: the checked-in header matches the code, and the C example builds against
//! the static library and runs on this machine (development mode: this kernel has no
//! nohz_full, so enter works with allow_ticking and refuses without it, with -EINVAL).

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_is_generated_from_the_code() {
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(cbindgen::Config::from_file(crate_dir().join("cbindgen.toml")).unwrap())
        .generate()
        .expect("cbindgen")
        .write(&mut out);
    let path = crate_dir().join("include/isol.h");
    if std::env::var_os("ISOL_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == out,
        "include/isol.h is stale: run ISOL_UPDATE_HEADER=1 cargo test -p isol-capi header"
    );
}

/// Build `libisol.a` (cargo does not build a staticlib for integration tests) and return
/// its path.
fn static_lib() -> PathBuf {
    let workspace = crate_dir().join("../..");
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "isol-capi", "--lib"])
        .current_dir(&workspace)
        .status()
        .expect("run cargo")
        .success();
    assert!(ok, "cargo build -p isol-capi failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target.join("debug/libisol.a")
}

fn build_example(dir: &Path) -> PathBuf {
    build_named(dir, "hotloop")
}

fn build_named(dir: &Path, name: &str) -> PathBuf {
    let lib = static_lib();
    let out = dir.join(name);
    let ok = Command::new("cc")
        .arg(crate_dir().join(format!("examples/{name}.c")))
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("run cc")
        .success();
    assert!(ok, "the C example does not build against {}", lib.display());
    out
}

#[test]
fn c_example_builds_and_runs() {
    let tmp = std::env::temp_dir().join(format!("isol-capi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let exe = build_example(&tmp);
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped running: tracing needs root");
        return;
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let nohz = std::fs::read_to_string("/sys/devices/system/cpu/nohz_full").unwrap_or_default();
    if online.trim() == "0" || !nohz.trim().is_empty() && nohz.trim() != "(null)" {
        eprintln!("skipped running: needs CPU 1 and a kernel without nohz_full CPUs");
        return;
    }
    // Without nohz_full, a plain enter is refused with -EINVAL and a reason.
    let out = Command::new(&exe).args(["1", "0.2"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["rc"], -libc::EINVAL, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nohz_full"), "{v}");
    // Development mode: enter works, the tick keeps running and is counted.
    let out = Command::new(&exe)
        .args(["1", "0.5", "--allow-ticking"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["cpu"], 1);
    assert_eq!(v["ticking"], 1);
    assert!(v["polls"].as_u64().unwrap() > 1000, "{v}");
    // HZ=250 for 0.5 s: the tick alone gives about 125.
    let n = v["interruptions"].as_u64().unwrap();
    assert!(n >= 50, "{v}");
    assert!(v["seen"].as_u64().unwrap() <= n);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Strict mode through the C ABI, in development mode on this host (the tick keeps
/// running, but Syscall User Dispatch and perf events work): `isol_enter` stores its
/// bookkeeping before strict mode begins, so only the program's own call is a violation.
#[test]
fn strict_mode_from_c() {
    let tmp = std::env::temp_dir().join(format!("isol-capi-strict-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let exe = build_named(&tmp, "strict");
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped running: tracing needs root");
        return;
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if online.trim() == "0" {
        eprintln!("skipped running: needs CPU 1");
        return;
    }
    let run = |mode: &str| {
        Command::new(&exe)
            .args(["1", mode, "--allow-ticking"])
            .output()
            .unwrap()
    };
    let json = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    // Report: the call ran (the right parent), one violation naming it.
    let v = json(&run("report"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["ppid_right"], true, "{v}");
    assert_eq!(v["violations"], 1, "{v}");
    assert_eq!(v["name"], "getppid", "{v}");
    assert_eq!(v["syscall"], libc::SYS_getppid, "{v}");
    // Signal: the handler ran first and could read the violation; then the call ran.
    let v = json(&run("signal"));
    assert_eq!(v["handled"], 1, "{v}");
    assert_eq!(v["handler_saw"], libc::SYS_getppid, "{v}");
    assert_eq!(v["ppid_right"], true, "{v}");
    // Kill: SIGKILL, with the violation on stderr.
    let out = run("kill");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("made system call getppid (110)"), "{err}");
    // A process killed outright cannot remove its tracing instance: the next isol process
    // to enter does (or `isol watch --cleanup`). This test killed it, so it cleans up.
    let tracefs = isol_trace::tracefs::Tracefs::locate(&isol_model::SysRoot::live()).unwrap();
    let removed = tracefs.remove_stale().unwrap();
    assert!(!removed.is_empty(), "the killed process left its instance");
    let _ = std::fs::remove_dir_all(&tmp);
}
