//! The isol lab: a real `nohz_full` kernel (Debian's 6.12 cloud kernel) booted under
//! QEMU/TCG with isol inside, so claims about ticks and interruptions are tested for real.
//!
//! ```no_run
//! use isol_lab::{Lab, Boot, Scenario};
//! let lab = Lab::open().expect("provisioned: run lab/provision.sh");
//! let run = lab.run(&Boot::default(), &[Scenario::new("nohz", "cat /sys/devices/system/cpu/nohz_full")]).unwrap();
//! assert_eq!(run.result("nohz").unwrap().stdout.trim(), "1");
//! ```
//!
//! How a run works: the harness builds isol and the guest helper static-pie, packs them with
//! busybox and an init script into an initramfs, and boots QEMU with two serial ports: the
//! first is the kernel console (kept to detect panics), the second carries results. Each
//! scenario's output is framed by sentinel lines with its exit status, so results come back
//! machine-readable and a missing one is noticed.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the lab could not run or a run went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Something the lab needs is missing on this machine.
    #[error("lab not provisioned: {what}; run `lab/provision.sh` (as root, with network access to Debian's mirrors)")]
    NotProvisioned { what: String },
    /// Building the static binaries or the initramfs failed.
    #[error("lab build failed: {0}")]
    Build(String),
    /// QEMU could not be started.
    #[error("cannot start qemu-system-x86_64: {0}")]
    Qemu(std::io::Error),
    /// The guest kernel panicked.
    #[error("guest kernel panicked{}{}; console tail:\n{console_tail}", if *before_init { " while booting, before init ran" } else { "" }, if *torn_patch { " on a half-patched instruction (TCG)" } else { "" })]
    Panic {
        console_tail: String,
        /// Before the init script ran anything.
        before_init: bool,
        /// On an instruction the kernel was rewriting (see [`torn_code_patch`]).
        torn_patch: bool,
    },
    /// The guest did not finish in time.
    #[error("guest did not finish within {timeout:?} (hang); console tail:\n{console_tail}")]
    Timeout {
        timeout: Duration,
        console_tail: String,
    },
    /// The guest powered off before reporting that every scenario had run.
    #[error("the guest stopped before finishing its scenarios (got results for: {got}); console tail:\n{console_tail}")]
    Incomplete { got: String, console_tail: String },
    /// I/O on the lab's files.
    #[error("lab I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A command to run inside the guest (by busybox `sh`).
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub command: String,
}

impl Scenario {
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Scenario {
        Scenario {
            name: name.into(),
            command: command.into(),
        }
    }
}

/// What one scenario printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioResult {
    pub name: String,
    /// Exit status of the command.
    pub status: i32,
    /// Its standard output and error, interleaved.
    pub stdout: String,
}

impl ScenarioResult {
    /// Parse the output as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "scenario {} did not print JSON ({e}):\n{}",
                self.name, self.stdout
            )
        })
    }
}

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

/// The results of one boot.
#[derive(Debug, Clone)]
pub struct Run {
    /// The guest kernel release.
    pub kernel: String,
    /// The command line it booted with.
    pub cmdline: String,
    pub results: Vec<ScenarioResult>,
    /// Wall time from QEMU start to exit.
    pub elapsed: Duration,
    /// The serial console (kernel messages, init output).
    pub console: String,
}

impl Run {
    /// The result of a scenario by name; a missing result is an error naming it.
    pub fn result(&self, name: &str) -> Result<&ScenarioResult, String> {
        self.results.iter().find(|r| r.name == name).ok_or_else(|| {
            format!(
                "no result for scenario {name:?} (got: {}); console tail:\n{}",
                self.results
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                tail(&self.console, 40)
            )
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
    busybox: PathBuf,
}

const BEGIN: &str = "@@ISOL-LAB-BEGIN ";
const END: &str = "@@ISOL-LAB-END ";
const DONE: &str = "@@ISOL-LAB-DONE";
/// The init's first words on the console: after them, userspace (and isol) runs.
const INIT: &str = "@@ISOL-LAB-INIT";
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

    fn dir(&self) -> PathBuf {
        self.workspace.join("target/lab")
    }

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

/// Split the result port's text into scenario results; `true` if the guest finished.
pub fn parse_results(raw: &str) -> (Vec<ScenarioResult>, bool) {
    let mut results = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut done = false;
    for line in raw.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix(BEGIN) {
            current = Some((name.to_string(), String::new()));
        } else if let Some(rest) = line.strip_prefix(END) {
            let (name, status) = rest.rsplit_once(' ').unwrap_or((rest, "-1"));
            if let Some((n, out)) = current.take() {
                if n == name {
                    results.push(ScenarioResult {
                        name: n,
                        status: status.parse().unwrap_or(-1),
                        stdout: out,
                    });
                }
            }
        } else if line == DONE {
            done = true;
        } else if let Some((_, out)) = current.as_mut() {
            out.push_str(line);
            out.push('\n');
        }
    }
    (results, done)
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

/// What lab and host tests expect of `isol watch` records.
pub mod expect {
    use isol::interrupt::{Interruption, Kind, Record};

    /// The records in `isol watch --json` output (interruptions, lost events, tick stops);
    /// other lines are skipped.
    pub fn records(stdout: &str) -> Vec<Record> {
        stdout
            .lines()
            .filter(|l| {
                l.contains(r#""type":"interruption""#)
                    || l.contains(r#""type":"lost""#)
                    || l.contains(r#""type":"tick_stop""#)
            })
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The interruptions among `records`.
    pub fn interruptions(records: &[Record]) -> Vec<&Interruption> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Interruption(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    /// Check the records against what `provoke` says it did.
    /// Check the records against what `isol-lab-guest provoke` says it did: each of its
    /// four provocations is reported with the right kind and culprit, the resident never.
    pub fn assert_provocations_named(records: &[Record], prov: &serde_json::Value) {
        let all = interruptions(records);
        let pid = prov["pid"].as_i64().unwrap() as i32;
        let resident = prov["resident"].as_i64().unwrap();
        let migrant = prov["migrant"].as_i64().unwrap();
        let show = || {
            all.iter()
                .filter(|i| i.culprit() != "tick_nohz_handler")
                .map(|i| serde_json::to_string(i).unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        };
        // 1. The membarrier IPI, sent by the provoking process from CPU 0: named by the
        //    function it ran (`ipi_mb`, where the kernel traces it) or where it was sent.
        assert!(
            all.iter().any(|i| i.kind == Kind::Ipi
                && i.senders.iter().any(|s| s.cpu == 0
                    && s.pid == pid
                    && s.callsite
                        .as_deref()
                        .is_some_and(|c| c.contains("membarrier")))
                && (i.culprit().contains("membarrier") || i.culprit().contains("ipi_mb"))),
            "no IPI from membarrier on cpu0 by pid {pid}:\n{}",
            show()
        );
        // 2. The POSIX timer armed on CPU 1. On a nohz_full CPU the kernel moves the
        //    hrtimer to a housekeeping CPU; the interruption is then the reschedule IPI
        //    that delivers its signal, sent from `send_sigqueue` there.
        assert!(
            all.iter().any(|i| (i.kind == Kind::LocalTimer
                && i.functions.iter().any(|f| f == "posix_timer_fn"))
                || (i.kind == Kind::Ipi
                    && i.senders
                        .iter()
                        .any(|s| s.callsite.as_deref() == Some("send_sigqueue")))),
            "no local timer running posix_timer_fn, nor its signal's IPI:\n{}",
            show()
        );
        // 3. stat_refresh's work item, run by a kworker, queued by the provoking process.
        assert!(
            all.iter().any(|i| i.kind == Kind::Task
                && i.source.starts_with("kworker/")
                && i.functions.iter().any(|f| f == "refresh_vm_stats")
                && i.senders
                    .iter()
                    .any(|s| s.action == "queue_work" && s.pid == pid)),
            "no kworker running refresh_vm_stats queued by pid {pid}:\n{}",
            show()
        );
        // 4. The migrated task, by name and tid.
        assert!(
            all.iter().any(|i| i.kind == Kind::Task
                && i.number == Some(migrant)
                && i.source == "isol-migrant"),
            "no task interruption by isol-migrant/{migrant}:\n{}",
            show()
        );
        // The resident itself is never an interruption.
        assert!(
            !all.iter()
                .any(|i| i.kind == Kind::Task && i.number == Some(resident)),
            "the resident {resident} was reported as an interruption:\n{}",
            show()
        );
        for i in &all {
            if let (Some(d), Some(n)) = (i.duration_ns, i.net_ns) {
                assert!(n <= d, "net above duration: {i:?}");
            }
            assert_eq!(i.cpu, 1, "an interruption of an unwatched CPU: {i:?}");
        }
    }
}

/// Host-tier helpers: tests that trace this machine's own kernel.
pub mod host {
    use std::process::Command;

    use isol::CpuSet;

    /// tracefs for a host test: mounted if it was not (and unmounted when dropped).
    pub struct Tracing {
        mounted_here: bool,
    }

    impl Drop for Tracing {
        fn drop(&mut self) {
            if self.mounted_here {
                let _ = Command::new("umount").arg(monitor_mount()).status();
            }
        }
    }

    fn monitor_mount() -> &'static str {
        isol::tracefs::DEFAULT_MOUNT
    }

    fn skip(reason: &str) -> Option<Tracing> {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and this host test cannot run: {reason}");
        }
        eprintln!("skipped: {reason}");
        None
    }

    pub fn tracing() -> Option<Tracing> {
        // SAFETY: geteuid has no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return skip("tracing needs root");
        }
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
        if !CpuSet::parse_list(online.trim()).is_ok_and(|s| s.contains(0) && s.contains(1)) {
            return skip("CPUs 0 and 1 must be online");
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
        {
            return Some(Tracing {
                mounted_here: false,
            });
        }
        let ok = Command::new("mount")
            .args(["-t", "tracefs", "nodev", monitor_mount()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return skip("tracefs is not mounted and mounting it failed");
        }
        Some(Tracing { mounted_here: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_framed_results() {
        let raw = format!(
            "noise\n{BEGIN}a\nhello\n{{\"x\":1}}\n\n{END}a 0\n{BEGIN}b\n\n{END}b 3\n{DONE}\n"
        );
        let (r, done) = parse_results(&raw);
        assert!(done);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].stdout, "hello\n{\"x\":1}\n\n");
        assert_eq!(r[0].status, 0);
        assert_eq!(r[1].status, 3);
    }

    #[test]
    fn missing_end_or_done_is_noticed() {
        let raw = format!("{BEGIN}a\npartial\n");
        let (r, done) = parse_results(&raw);
        assert!(r.is_empty() && !done);
    }

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
