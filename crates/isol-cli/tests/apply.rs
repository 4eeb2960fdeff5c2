//! `isol apply`, `restore` and `cmdline` as a user runs them: on copies of captured trees
//! (every change lands inside the copy), and the refusals on this machine.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{as_nobody, copy_tree, fixture, isol, json};

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

fn lab_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("lab-6.12"), dir.path());
    dir
}

fn root_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

#[test]
fn dry_run_apply_restore_on_a_copy_of_the_lab_machine() {
    let dir = lab_copy();
    let r = root_arg(dir.path());
    let pristine = tree(dir.path());

    let out = isol()
        .args(["--root", &r, "apply", "--cpus", "1", "--dry-run", "--json"])
        .assert()
        .success();
    let plan = json(&out.get_output().stdout);
    assert_eq!(plan["schema"], "isol.apply/v1");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["cpus"], "1");
    assert_eq!(plan["housekeeping"], "0");
    let changes = plan["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for c in changes {
        assert!(c["why"].as_str().is_some_and(|w| !w.is_empty()), "{c}");
        assert!(c.get("outcome").is_none(), "a dry run has no outcome: {c}");
    }
    assert_eq!(tree(dir.path()), pristine, "a dry run changes nothing");
    assert!(!dir.path().join("run").exists());

    let out = isol()
        .args(["--root", &r, "apply", "--cpus", "1", "--json"])
        .assert()
        .success();
    let applied = json(&out.get_output().stdout);
    assert_eq!(applied["dry_run"], false);
    let done = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"]["outcome"] == "done")
        .count();
    assert_eq!(done, changes.len(), "{applied}");
    assert!(
        applied["findings_after"].as_array().unwrap().len()
            <= applied["findings_before"].as_array().unwrap().len()
    );
    assert_ne!(tree(dir.path()), pristine);

    // Twice: nothing more to do.
    let out = isol()
        .args(["--root", &r, "apply", "--cpus", "1"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("nothing to change"), "{text}");

    let out = isol().args(["--root", &r, "restore"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains(&format!("{done} restored")), "{text}");
    assert_eq!(tree(dir.path()), pristine, "restore puts back every byte");
    let out = isol().args(["--root", &r, "restore"]).assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("nothing to restore"));
}

#[test]
fn bad_cpu_lists_and_archives_are_refused_with_nothing_written() {
    let dir = lab_copy();
    let r = root_arg(dir.path());
    let pristine = tree(dir.path());
    for (cpus, says) in [
        ("0-1", "no online housekeeping"),
        ("7", "does not exist"),
        ("1-", "--cpus"),
        ("x", "--cpus"),
    ] {
        let out = isol()
            .args(["--root", &r, "apply", "--cpus", cpus])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{cpus}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.lines().count() == 1,
            "{cpus}: {err}"
        );
    }
    // The host fixture isolates nothing: apply wants the CPUs named.
    let out = isol()
        .args(["--root"])
        .arg(fixture("host-6.18"))
        .args(["apply", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cpus"));
    assert_eq!(tree(dir.path()), pristine);
    assert!(!dir.path().join("run").exists());

    // A snapshot archive is replayed from a temporary extraction: never written to.
    let archive = dir.path().join("snap.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(fixture("lab-6.12"))
        .args(["isol-snapshot.json", "proc", "sys"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = isol()
        .arg("--root")
        .arg(&archive)
        .args(["apply", "--cpus", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an archive"));
}

#[test]
fn a_corrupt_journal_is_refused_and_left_in_place() {
    let dir = lab_copy();
    let r = root_arg(dir.path());
    isol()
        .args(["--root", &r, "apply", "--cpus", "1"])
        .assert()
        .success();
    let journal = dir.path().join("run/isol/journal");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.insert_str(text.find('\n').unwrap() + 1, "{\"garbage\": true}\n");
    std::fs::write(&journal, &text).unwrap();
    let out = isol().args(["--root", &r, "restore"]).output().unwrap();
    assert_eq!(out.status.code(), Some(70));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("left in place"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), text);
}

/// A journal holding only its header (an apply that changed nothing, or was killed before
/// its first change) is a journal: restore says so and removes it.
#[test]
fn a_journal_of_only_a_header_is_named_and_removed() {
    let dir = lab_copy();
    let r = root_arg(dir.path());
    isol()
        .args(["--root", &r, "apply", "--cpus", "1"])
        .assert()
        .success();
    let journal = dir.path().join("run/isol/journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, &text[..=text.find('\n').unwrap()]).unwrap();
    let out = isol().args(["--root", &r, "restore"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("recorded no change") && !said.contains("no journal"),
        "{said}"
    );
    assert!(!journal.exists());
}

#[test]
fn a_conflict_is_reported_and_exits_1() {
    let dir = lab_copy();
    let r = root_arg(dir.path());
    let out = isol()
        .args(["--root", &r, "apply", "--cpus", "1", "--json"])
        .assert()
        .success();
    let applied = json(&out.get_output().stdout);
    let file = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|c| {
            (c["setting"]["kind"] == "file")
                .then(|| c["setting"]["path"].as_str().unwrap().to_string())
        })
        .expect("a file change");
    let on_disk = dir.path().join(file.trim_start_matches('/'));
    std::fs::write(&on_disk, "someone-else\n").unwrap();
    let out = isol().args(["--root", &r, "restore"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&file) && text.contains("changed by someone else"),
        "{text}"
    );
    assert!(text.contains("--force"), "{text}");
    assert_eq!(std::fs::read_to_string(&on_disk).unwrap(), "someone-else\n");
}

#[test]
fn cmdline_gives_the_parameters_and_the_grub_line() {
    let out = isol()
        .arg("--root")
        .arg(fixture("lab-6.12"))
        .args(["cmdline", "--json"])
        .assert()
        .success();
    let v = json(&out.get_output().stdout);
    assert_eq!(v["schema"], "isol.cmdline/v1");
    assert_eq!(v["cpus"], "1");
    let line = v["cmdline"].as_str().unwrap();
    assert!(
        line.starts_with(
            "nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0"
        ),
        "{line}"
    );
    assert!(v["grub"].as_str().unwrap().contains(line));
    let out = isol()
        .arg("--root")
        .arg(fixture("host-6.18"))
        .args(["cmdline", "--cpus", "1"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(
        text.contains("GRUB_CMDLINE_LINUX_DEFAULT") && text.contains("isol edits no boot file")
    );
    let out = isol().args(["cmdline", "--cpus", "0-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn host_apply_needs_root_and_says_so() {
    let Some(out) = as_nobody(&["apply", "--cpus", "1"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(77));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run it as root") && err.contains("--dry-run"),
        "{err}"
    );
    let out = as_nobody(&["restore"]).unwrap();
    assert_eq!(out.status.code(), Some(77));
    // The plan needs no root.
    let out = as_nobody(&["apply", "--cpus", "1", "--dry-run", "--json"]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out.stdout)["dry_run"], true);
}
