//! Booting the guest: which kernel, with what command line, QEMU with two serial ports
//! (the console, kept to detect panics; the results), the run's deadline, and the boots
//! retried when TCG crashes the kernel before anything of isol ran.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::protocol::{parse_results, INIT};
use crate::{io_err, tail, LabError, Run, Scenario};

/// Whether a panicking console shows TCG running code the kernel was patching: the
/// breakpoint `text_poke_bp` plants (`Oops: int3`), or a fault whose instruction pointer is
/// inside a 5-byte NOP (`0f <1f> 44 00 00` on the `Code:` line), which real CPUs never
/// execute half-written.
pub fn torn_code_patch(console: &str) -> bool {
    console.contains("Oops: int3")
        || console
            .lines()
            .any(|l| l.contains("Code: ") && l.contains("0f <1f> 44 00 00"))
}

/// How to boot the guest.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Number of vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Isolation parameters appended to the base command line.
    pub isolation: String,
    /// How long the whole run may take.
    pub timeout: Duration,
    /// Run every vCPU in one host thread (`-accel tcg,thread=single`). Slower, but TCG
    /// then never executes a guest instruction another vCPU is rewriting: with one thread
    /// per vCPU, a kernel patching its code (each tracepoint switched on or off) was seen
    /// to run a half-written instruction and panic (`__schedule`, RIP inside a 5-byte NOP).
    /// For boots that switch tracepoints many times.
    pub single_thread: bool,
}

impl Boot {
    /// CPU 0 housekeeping, CPUs `1..cpus` isolated with the full set of parameters.
    /// `mce=ignore_ce` stops the machine-check poll, a 300 s timer on every CPU that
    /// otherwise keeps the isolated CPU's tick device armed (`next_event` != KTIME_MAX).
    pub fn isolated(cpus: u32) -> Boot {
        let list = if cpus == 2 {
            "1".to_string()
        } else {
            format!("1-{}", cpus - 1)
        };
        Boot {
            cpus,
            memory_mib: 512,
            isolation: format!(
                "nohz_full={list} isolcpus=nohz,domain,managed_irq,{list} rcu_nocbs={list} irqaffinity=0 mce=ignore_ce"
            ),
            timeout: Duration::from_secs(240),
            single_thread: false,
        }
    }

    /// The full kernel command line.
    pub fn cmdline(&self) -> String {
        format!(
            "console=ttyS0 quiet panic=-1 tsc=reliable {}",
            self.isolation
        )
    }
}

impl Default for Boot {
    fn default() -> Self {
        Boot::isolated(2)
    }
}

/// Kill and reap QEMU by its own PID, whatever happens to the caller.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A provisioned lab.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The workspace root.
    pub workspace: PathBuf,
    pub vmlinuz: PathBuf,
    /// The kernel release, recorded with every result.
    pub kernel: String,
    /// The kernel's short name in [`KERNELS`].
    pub name: String,
    pub(crate) busybox: PathBuf,
}

/// Boots retried when the guest kernel panics before its init runs.
const BOOT_RETRIES: u32 = 2;

/// The lab kernels `lab/provision.sh` fetches: a short name and its cache under
/// `target/lab/`. The first is the default.
pub const KERNELS: [(&str, &str); 3] = [
    // Debian bookworm-backports' 6.12 cloud kernel: ipi_send_* tracepoints, fair server.
    ("6.12", "kernel"),
    // Debian bookworm's 6.1 LTS cloud kernel: no ipi_send_* tracepoints, no fair server.
    ("6.1", "kernel-6.1"),
    // Debian's 6.12 PREEMPT_RT kernel: the osnoise and timerlat tracers.
    ("rt", "kernel-rt"),
];

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Lab {
    /// Find the default kernel (6.12 cloud) and tools, or say what is missing.
    pub fn open() -> Result<Lab, LabError> {
        Self::open_kernel(KERNELS[0].0)
    }

    /// Find the lab kernel named `name` (see [`KERNELS`]) and the tools.
    pub fn open_kernel(name: &str) -> Result<Lab, LabError> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("lab/ is inside the workspace")
            .to_path_buf();
        let dir = KERNELS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| LabError::NotProvisioned {
                what: format!("no lab kernel named {name:?}"),
            })?;
        let cache = workspace.join("target/lab").join(dir);
        let vmlinuz = cache.join("vmlinuz");
        if !vmlinuz.exists() {
            return Err(LabError::NotProvisioned {
                what: format!("no kernel at {}", vmlinuz.display()),
            });
        }
        let kernel = std::fs::read_to_string(cache.join("release"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        for tool in ["qemu-system-x86_64", "cpio", "gzip"] {
            if which(tool).is_none() {
                return Err(LabError::NotProvisioned {
                    what: format!("{tool} is not installed"),
                });
            }
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(LabError::NotProvisioned {
                what: "busybox (busybox-static) is not installed".into(),
            })?;
        Ok(Lab {
            name: name.to_string(),
            workspace,
            vmlinuz,
            kernel,
            busybox,
        })
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.workspace.join("target/lab")
    }
}

impl Lab {
    fn qemu(&self, boot: &Boot, initrd: &Path, results: Option<&Path>) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let accel = if boot.single_thread {
            "tcg,thread=single"
        } else {
            "tcg,thread=multi"
        };
        cmd.args(["-accel", accel, "-cpu", "max", "-smp"])
            .arg(boot.cpus.to_string())
            .arg("-m")
            .arg(boot.memory_mib.to_string())
            .args(["-nographic", "-no-reboot", "-net", "none", "-kernel"])
            .arg(&self.vmlinuz)
            .arg("-initrd")
            .arg(initrd)
            .arg("-append")
            .arg(boot.cmdline());
        if let Some(r) = results {
            // First serial port: console on stdio; second: results to a file.
            cmd.args(["-serial", "stdio", "-serial"])
                .arg(format!("file:{}", r.display()))
                .args(["-monitor", "none"]);
        }
        cmd
    }

    /// Boot, run the scenarios in order, power off, and return their results.
    ///
    /// A guest kernel that panics before its init runs, or on an instruction it was
    /// rewriting, is booted again, at most `BOOT_RETRIES` times, saying so on stderr.
    /// Under TCG's thread per vCPU, the kernel's code patching (static keys and calls
    /// flipped at boot, and by every tracepoint switched on or off) was seen to crash: an
    /// `int3` in `sched_clock_cpu` before init, about one boot in twenty, and a fault in
    /// the middle of a 5-byte NOP being rewritten (`Code: ... 0f <1f> 44 00 00`). Any
    /// other panic is never retried.
    pub fn run(&self, boot: &Boot, scenarios: &[Scenario]) -> Result<Run, LabError> {
        let mut attempt = 0;
        loop {
            match self.run_once(boot, scenarios) {
                Err(LabError::Panic {
                    console_tail,
                    before_init,
                    torn_patch,
                }) if (before_init || torn_patch) && attempt < BOOT_RETRIES => {
                    attempt += 1;
                    let when = if before_init {
                        "while booting, before init ran"
                    } else {
                        "on an instruction it was rewriting (TCG runs half-patched code)"
                    };
                    eprintln!(
                        "lab: the guest kernel panicked {when} (boot {attempt} of {}); \
                         booting again. Console tail:\n{console_tail}",
                        BOOT_RETRIES + 1
                    );
                }
                other => return other,
            }
        }
    }

    fn run_once(&self, boot: &Boot, scenarios: &[Scenario]) -> Result<Run, LabError> {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.dir().join(format!("run-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let initrd = dir.join("initrd.gz");
        self.initramfs(scenarios, &initrd)?;
        let results_path = dir.join("results.txt");
        let console_path = dir.join("console.txt");
        let console_file = std::fs::File::create(&console_path).map_err(io_err(&console_path))?;
        let start = Instant::now();
        let child = self
            .qemu(boot, &initrd, Some(&results_path))
            .stdin(Stdio::null())
            .stdout(console_file)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(LabError::Qemu)?;
        let mut guard = Guard(child);
        let status = loop {
            if let Some(st) = guard.0.try_wait().map_err(LabError::Qemu)? {
                break st;
            }
            if start.elapsed() > boot.timeout {
                drop(guard);
                let console = std::fs::read_to_string(&console_path).unwrap_or_default();
                return Err(LabError::Timeout {
                    timeout: boot.timeout,
                    console_tail: tail(&console, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut qemu_err = String::new();
        if let Some(mut e) = guard.0.stderr.take() {
            let _ = e.read_to_string(&mut qemu_err);
        }
        let elapsed = start.elapsed();
        let console = std::fs::read_to_string(&console_path).unwrap_or_default();
        let raw = std::fs::read_to_string(&results_path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        if console.contains("Kernel panic") {
            return Err(LabError::Panic {
                console_tail: tail(&console, 40),
                before_init: !console.contains(INIT),
                torn_patch: torn_code_patch(&console),
            });
        }
        if !status.success() {
            return Err(LabError::Build(format!(
                "qemu exited with {status}: {}",
                qemu_err.trim()
            )));
        }
        let (results, done) = parse_results(&raw);
        if !done {
            return Err(LabError::Incomplete {
                got: results
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                console_tail: tail(&console, 40),
            });
        }
        Ok(Run {
            kernel: self.kernel.clone(),
            cmdline: boot.cmdline(),
            results,
            elapsed,
            console,
        })
    }

    /// An interactive shell in the guest on this terminal.
    pub fn shell(&self, boot: &Boot) -> Result<(), LabError> {
        let dir = self.dir().join("shell");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let initrd = dir.join("initrd.gz");
        self.initramfs(&[], &initrd)?;
        let mut child = self
            .qemu(boot, &initrd, None)
            .spawn()
            .map_err(LabError::Qemu)?;
        child.wait().map_err(LabError::Qemu)?;
        Ok(())
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.exists())
    })
}

/// For tests: the lab, or a reason to skip. With `CI=true` a missing lab is a failure.
pub fn lab_or_skip() -> Option<Lab> {
    lab_kernel_or_skip(KERNELS[0].0)
}

/// For tests: the lab with the kernel named `name`, or a reason to skip. With `CI=true` a
/// missing kernel is a failure.
pub fn lab_kernel_or_skip(name: &str) -> Option<Lab> {
    match Lab::open_kernel(name) {
        Ok(l) => Some(l),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the lab is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_code_patch_is_recognised() {
        let seen = "[   20.137146] RIP: 0010:__schedule+0x339/0xbf0\n\
            [   20.137254] Code: aa 48 89 45 b8 0f 85 42 07 00 00 0f <1f> 44 00 00 48 8b\n\
            [   20.139165] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert!(torn_code_patch(seen));
        assert!(torn_code_patch("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n"));
        assert!(!torn_code_patch(
            "BUG: kernel NULL pointer dereference\nCode: 48 8b <48> 8b 07\nKernel panic\n"
        ));
    }

    #[test]
    fn default_boot_isolates_cpu1() {
        let b = Boot::default();
        assert!(b
            .cmdline()
            .contains("nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0"));
        assert!(Boot::isolated(4).cmdline().contains("nohz_full=1-3"));
    }
}
