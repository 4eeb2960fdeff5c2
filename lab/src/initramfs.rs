//! The guest's userland: isol, the guest helper and libisol's C example built static-pie,
//! busybox, the kernel's config in `/boot`, and an init script that runs the scenarios in
//! order and powers off, packed with cpio into an initramfs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::protocol::{BEGIN, DONE, END};
use crate::{io_err, Lab, LabError, Scenario};

impl Lab {
    /// Build `isol` and the guest helper static-pie; returns their paths.
    pub fn build_binaries(&self) -> Result<Vec<PathBuf>, LabError> {
        let target_dir = self.dir().join("build");
        // One set of flags for every build here, so that they share their dependencies.
        let build = |packages: &[&str], what: &str| -> Result<(), LabError> {
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .current_dir(&self.workspace)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .args([
                    "build",
                    "--quiet",
                    "--release",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                ])
                .args(packages)
                .arg("--target-dir")
                .arg(&target_dir);
            run_step(&mut cargo, what)
        };
        build(
            &[
                "-p",
                "isol-cli",
                "-p",
                "isol-lab",
                "--bin",
                "isol",
                "--bin",
                "isol-lab-guest",
            ],
            "cargo build of the static binaries",
        )?;
        // libisol for C, and the C example of a first entry linked statically against it.
        build(&["-p", "isol-capi"], "cargo build of libisol")?;
        let out = target_dir.join("x86_64-unknown-linux-gnu/release");
        let capi_dir = self.workspace.join("crates/isol-capi");
        let c_bin = out.join("isol-first-entry-c");
        let mut cc = Command::new("cc");
        cc.args(["-static", "-O2", "-o"])
            .arg(&c_bin)
            .arg(capi_dir.join("examples/first_entry.c"))
            .arg("-I")
            .arg(capi_dir.join("include"))
            .arg(out.join("libisol.a"))
            .args(["-lpthread", "-ldl", "-lm"]);
        run_step(&mut cc, "cc -static of examples/first_entry.c")?;
        Ok(vec![out.join("isol"), out.join("isol-lab-guest"), c_bin])
    }

    /// Write an initramfs that runs `scenarios` (or an interactive shell when empty).
    pub fn initramfs(&self, scenarios: &[Scenario], out: &Path) -> Result<(), LabError> {
        let bins = self.build_binaries()?;
        let stage = out.with_extension("d");
        let _ = std::fs::remove_dir_all(&stage);
        for d in ["bin", "boot", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(stage.join(d)).map_err(io_err(&stage))?;
        }
        let copy = |from: &Path, name: &str| -> Result<(), LabError> {
            let to = stage.join("bin").join(name);
            std::fs::copy(from, &to).map_err(io_err(from))?;
            Ok(())
        };
        copy(&self.busybox, "busybox")?;
        for b in &bins {
            copy(b, b.file_name().and_then(|n| n.to_str()).unwrap_or("x"))?;
        }
        // As on an installed Debian system, the kernel's config is in /boot (this kernel has
        // no /proc/config.gz).
        let config = self.vmlinuz.with_file_name("config");
        let boot_config = stage.join("boot").join(format!("config-{}", self.kernel));
        std::fs::copy(&config, &boot_config).map_err(io_err(&config))?;
        let init = stage.join("init");
        std::fs::write(&init, init_script(scenarios)).map_err(io_err(&init))?;
        set_exec(&init)?;
        let script = format!(
            "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
            shell_quote(&stage.to_string_lossy()),
            shell_quote(&out.to_string_lossy())
        );
        run_step(
            Command::new("sh").arg("-c").arg(&script),
            "packing the initramfs (find | cpio | gzip)",
        )?;
        let _ = std::fs::remove_dir_all(&stage);
        Ok(())
    }
}

fn init_script(scenarios: &[Scenario]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox echo @@ISOL-LAB-INIT\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/pts && mount -t devpts -o ptmxmode=666 devpts /dev/pts\n\
         [ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx\n\
         mount -t tmpfs tmpfs /tmp\n\
         mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null\n\
         mount -t debugfs nodev /sys/kernel/debug 2>/dev/null\n\
         mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup\n\
         hostname isol-lab\n",
    );
    if scenarios.is_empty() {
        s.push_str(
            "echo 'isol lab shell: isol and isol-lab-guest are in /bin; exit to power off'\n\
             setsid cttyhack sh\n",
        );
    } else {
        for sc in scenarios {
            let _ = write!(
                s,
                "( {cmd} ) >/tmp/out 2>&1; rc=$?\n\
                 {{ echo '{BEGIN}{name}'; cat /tmp/out; echo; echo \"{END}{name} $rc\"; }} >/dev/ttyS1\n",
                cmd = sc.command,
                name = sc.name,
            );
        }
        let _ = writeln!(s, "echo '{DONE}' >/dev/ttyS1");
    }
    s.push_str("sync\npoweroff -f\n");
    s
}

/// Run one build step to completion; a failure names the step.
fn run_step(cmd: &mut Command, what: &str) -> Result<(), LabError> {
    let status = cmd
        .status()
        .map_err(|e| LabError::Build(format!("{what}: cannot start: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::Build(format!("{what} failed ({status})")))
    }
}

fn set_exec(path: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io_err(path))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::INIT;

    #[test]
    fn init_frames_each_scenario() {
        let s = init_script(&[Scenario::new("one", "echo hi")]);
        assert!(s.contains("( echo hi )"));
        assert!(s.contains(&format!("{END}one $rc")));
        assert!(s.contains(DONE));
        assert!(s.ends_with("poweroff -f\n"));
        // The first thing init does: panics after it are never retried.
        let first = s.lines().nth(1).unwrap();
        assert_eq!(first, format!("/bin/busybox echo {INIT}"));
    }
}
