//! Host tier: the Debian package, built by `packaging/build-deb.sh` and installed with dpkg
//! into a clean root: this machine's root under a private overlay (a mount namespace of its
//! own, the machine itself untouched), where isol was not installed. There `isol check`
//! runs, `man isol` is found, and a C program compiles and runs with
//! `pkg-config --cflags --libs isol`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

const PROGRAM: &str = r#"#include <isol.h>
#include <stdio.h>

int main(void) {
    struct isol_config cfg;
    isol_config_init(&cfg);
    printf("libisol linked: cpu %d, interruptions %llu\n", cfg.cpu,
           (unsigned long long)isol_interruptions());
    return 0;
}
"#;

const INSIDE: &str = r#"set -e
if command -v isol > /dev/null; then echo "NOT CLEAN: isol is already installed"; exit 1; fi
dpkg -i /tmp/isol.deb > /dev/null
echo "INSTALLED $(dpkg-query -W -f='${Version}' isol)"
set +e
isol check --cpus 1 --json > /tmp/check.json
echo "CHECK_STATUS $?"
set -e
grep -o '"schema": "isol.check/v1"' /tmp/check.json
echo "MAN $(man -w isol) $(man -w isol-run)"
echo "PKG $(pkg-config --cflags --libs isol)"
cc -o /tmp/prog /tmp/prog.c $(pkg-config --cflags --libs isol)
/tmp/prog
echo "COMPLETION $(test -s /usr/share/bash-completion/completions/isol && echo bash)"
echo "UNITS $(ls /usr/lib/systemd/system/ | grep isol | tr '\n' ' ')"
if command -v systemd-analyze > /dev/null; then
  systemd-analyze verify --man=no /usr/lib/systemd/system/isol-watch.service \
    /usr/lib/systemd/system/isol-apply@.service 2>&1 && echo "VERIFIED"
else
  echo "VERIFIED (no systemd-analyze)"
fi
"#;

#[test]
fn the_deb_installs_on_a_clean_root_and_works() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing: Vec<&str> = [
        "dpkg-deb",
        "dpkg",
        "unshare",
        "chroot",
        "cc",
        "pkg-config",
        "man",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    if !is_root || !missing.is_empty() {
        eprintln!("skipped: needs root and {missing:?}");
        return;
    }
    // Its own target directory: the test run holds the workspace's. Built under umask
    // 000: the package's modes must not follow the builder's.
    let built = Command::new("sh")
        .args(["-c", "umask 000; exec sh \"$0\""])
        .arg(repo().join("packaging/build-deb.sh"))
        .env("CARGO_TARGET_DIR", repo().join("target/package"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-deb.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = repo().join(
        String::from_utf8_lossy(&built.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    );
    assert!(deb.is_file(), "{}", deb.display());
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for line in listing.lines() {
        let mode = line.split_whitespace().next().unwrap_or("");
        assert!(
            mode.len() == 10 && &mode[5..6] != "w" && &mode[8..9] != "w",
            "writable by group or others: {line}"
        );
    }
    assert!(
        listing.contains("-rwxr-xr-x root/root") && listing.contains("./usr/bin/isol"),
        "{listing}"
    );

    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("prog.c"), PROGRAM).unwrap();
    std::fs::write(t.path().join("inside.sh"), INSIDE).unwrap();
    let d = t.path().display();
    let outside = format!(
        "set -e
mkdir -p {d}/layer {d}/merged
mount -t tmpfs tmpfs {d}/layer
mkdir {d}/layer/upper {d}/layer/work
mount -t overlay overlay -o lowerdir=/,upperdir={d}/layer/upper,workdir={d}/layer/work {d}/merged
for m in proc sys dev; do mount --rbind /$m {d}/merged/$m; done
cp {deb} {d}/merged/tmp/isol.deb
cp {d}/prog.c {d}/inside.sh {d}/merged/tmp/
chroot {d}/merged sh /tmp/inside.sh",
        deb = deb.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &outside])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}\n{err}");
    assert!(text.contains("INSTALLED 0."), "{text}");
    let status: i32 = text
        .lines()
        .find_map(|l| l.strip_prefix("CHECK_STATUS "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((0..=2).contains(&status), "isol check ran: {text}");
    assert!(text.contains("isol.check/v1"), "{text}");
    assert!(
        text.contains("/usr/share/man/man1/isol.1.gz") && text.contains("isol-run.1.gz"),
        "{text}"
    );
    assert!(text.contains("PKG ") && text.contains("-lisol"), "{text}");
    assert!(
        text.contains("libisol linked: cpu -1, interruptions 0"),
        "{text}"
    );
    assert!(text.contains("COMPLETION bash"), "{text}");
    assert!(
        text.contains("isol-apply@.service") && text.contains("isol-watch.service"),
        "{text}"
    );
    assert!(text.contains("VERIFIED"), "systemd-analyze verify: {text}");
    // The machine itself is untouched: the install went into the overlay.
    assert!(
        !Path::new("/usr/include/isol.h").exists(),
        "installed on the host itself"
    );
}
