//! `isol run`: start a program on an isolated CPU, configured for libisol, optionally after
//! `apply` (undone when it ends) and watched; exit with its status, as a shell would.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isol::apply::{self, LiveSystem, Options, StateDir};
use isol::check::{self, Severity, Target, TargetSource};
use isol::kernel::{KernelModel, Place, Places};
use isol::task::env::{parse_strict, RunConfig};
use isol::task::Strict;
use isol::tracefs::{TraceError, Tracefs};
use isol::watch::summary::{Summary, Tally};
use isol::watch::{Watch, WatchOptions};
use isol::{CpuSet, SysRoot};
use serde_json::json;

use crate::cmd::watch::Output;
use crate::Failure;

/// Exit code when the program cannot be found, as in a shell.
const EXIT_NOT_FOUND: u8 = 127;
/// Exit code when the program cannot be executed, as in a shell.
const EXIT_NOT_EXECUTABLE: u8 = 126;
const POLL: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct Args {
    /// The CPU to run the program on. Default: the first nohz_full CPU, else the first
    /// isolated CPU.
    #[arg(long, value_name = "N")]
    cpu: Option<u32>,

    /// Run it SCHED_FIFO at this priority (1 when no value is given), set before it lands
    /// on the CPU.
    #[arg(long, value_name = "PRIO", num_args = 0..=1, default_missing_value = "1")]
    fifo: Option<i32>,

    /// Strict mode for a program that enters isolation with libisol: `kill`, `report`, or
    /// a signal (`SIGUSR1`).
    #[arg(long, value_name = "kill|report|SIGNAL")]
    strict: Option<String>,

    /// Print every interruption of the CPU (on standard error) while the program runs,
    /// and a summary when it ends.
    #[arg(long)]
    watch: bool,

    /// Print the run's summary as JSON (schema isol.run/v1) on standard output when the
    /// program ends.
    #[arg(long)]
    json: bool,

    /// First move the kernel's work off the CPU, as `isol apply` does; restored when the
    /// program ends (also on Ctrl-C and SIGTERM).
    #[arg(long)]
    apply: bool,

    /// Run even when `isol check` says the CPU cannot be isolated (its tick keeps running).
    #[arg(long)]
    allow_ticking: bool,

    /// Where --apply keeps its journal (default /run/isol).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<OsString>,
}

/// A failure of `isol run` itself (not the program's).
fn usage(msg: impl Into<String>) -> Failure {
    Failure::usage(format!("run: {}", msg.into()))
}

/// `PROGRAM` as a shell finds it: a path with a slash, else the first match in `PATH`.
fn resolve(program: &OsString) -> Result<PathBuf, Failure> {
    let p = Path::new(program);
    let name = p.display();
    if p.as_os_str().is_empty() {
        return Err(Failure {
            code: EXIT_NOT_FOUND,
            message: "run: '': command not found".into(),
        });
    }
    let executable = |c: &Path| {
        std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if p.as_os_str().as_encoded_bytes().contains(&b'/') {
        p.exists().then(|| p.to_path_buf())
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        let all: Vec<PathBuf> = std::env::split_paths(&path).map(|d| d.join(p)).collect();
        all.iter()
            .find(|c| executable(c))
            .or_else(|| all.iter().find(|c| c.exists()))
            .cloned()
    };
    match found {
        None => Err(Failure {
            code: EXIT_NOT_FOUND,
            message: format!("run: {name}: command not found"),
        }),
        Some(c) if !executable(&c) => Err(Failure {
            code: EXIT_NOT_EXECUTABLE,
            message: format!(
                "run: {}: permission denied (not an executable file)",
                c.display()
            ),
        }),
        Some(c) => Ok(c),
    }
}

/// The one CPU to run on.
fn choose_cpu(model: &KernelModel, cpu: Option<u32>) -> Result<Target, Failure> {
    let given = cpu.map(|c| CpuSet::range(c, c));
    let t = Target::choose(model, given.as_ref()).map_err(|e| usage(e.to_string()))?;
    if t.source == TargetSource::Suggested {
        return Err(usage(format!(
            "no CPU is isolated on this kernel; name one with --cpu (isol suggests {})",
            t.cpus.first().unwrap_or(1)
        )));
    }
    let first = t.cpus.first().expect("a target has a CPU");
    Target::choose(model, Some(&CpuSet::range(first, first))).map_err(|e| usage(e.to_string()))
}

/// Refuse a CPU `check` fails, unless asked not to.
fn refuse_unready(model: &KernelModel, target: &Target, allow: bool) -> Result<(), Failure> {
    let report = check::run(model, target);
    let fails: Vec<&check::Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .collect();
    if allow || fails.is_empty() {
        return Ok(());
    }
    let f = fails[0];
    Err(usage(format!(
        "{} cannot be isolated: {} ({}{}); --allow-ticking runs the program anyway",
        target.cpus.named(),
        f.summary,
        f.id,
        if fails.len() > 1 {
            format!(
                ", and {} more failing checks: `isol check --cpus {}`",
                fails.len() - 1,
                target.cpus
            )
        } else {
            String::new()
        }
    )))
}

/// A pipe, both ends close-on-exec and non-blocking.
fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    use rustix::pipe::PipeFlags;
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(|e| Failure::runtime(format!("run: cannot create a pipe: {e}")))
}

/// What was applied, to restore at the end whatever happens.
struct Applied {
    state: StateDir,
    changes: usize,
}

impl Applied {
    fn restore(self) -> serde_json::Value {
        let mut left = 0;
        let restored = apply::restore(&mut LiveSystem, &self.state, false, &mut |_, u| {
            left += usize::from(matches!(
                u,
                apply::Undo::Conflict(_) | apply::Undo::Failed(_)
            ));
        });
        match restored {
            Ok(_) => {
                if left > 0 {
                    crate::say!(
                        "isol: run: restore left {left} settings changed by someone else; \
                         see `isol restore`"
                    );
                }
                json!({"changes": self.changes, "restored": left == 0})
            }
            Err(e) => {
                crate::say!("isol: run: restore failed: {e}");
                json!({"changes": self.changes, "restored": false, "error": e.to_string()})
            }
        }
    }
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    if !root.is_live() {
        return Err(usage(
            "run starts a program on this machine; --root does not apply",
        ));
    }
    let program = resolve(&args.command[0])?;
    let strict: Option<Strict> = args
        .strict
        .as_deref()
        .map(parse_strict)
        .transpose()
        .map_err(|why| {
            usage(format!(
                "--strict {}: {why}",
                args.strict.as_deref().unwrap_or("")
            ))
        })?;
    if let Some(p) = args.fifo {
        if !(1..=99).contains(&p) {
            return Err(usage(format!(
                "--fifo {p}: a SCHED_FIFO priority is 1..=99"
            )));
        }
        isol::target::refuse_rt_throttling(root).map_err(|e| usage(e.to_string()))?;
    }
    let model = KernelModel::load(root);
    let target = choose_cpu(&model, args.cpu)?;
    let cpu = target.cpus.first().expect("one CPU");
    if (args.apply || args.watch) && !isol::is_root() {
        return Err(Failure {
            code: crate::EXIT_NOPERM,
            message: "run: --apply and --watch need root".into(),
        });
    }
    let mut applied = None;
    if args.apply {
        let plan = apply::plan(
            root,
            &model,
            &target.cpus,
            &Options {
                keep_pids: vec![std::process::id()],
                ..Options::default()
            },
        )
        .map_err(|e| usage(e.to_string()))?;
        // The journal names this run: should isol be killed before it restores, `isol
        // check` says whose apply was left behind, and how to undo it.
        let program = args.command[0].to_string_lossy();
        let owner = apply::Owner::this_process(format!("isol run -- {program}"))
            .map_err(|e| Failure::runtime(format!("run: cannot read /proc/self/stat: {e}")))?;
        let state = StateDir::new(
            args.state_dir
                .clone()
                .unwrap_or_else(|| apply::DEFAULT_STATE_DIR.into()),
        )
        .owned_by(owner);
        let done = apply::apply(&plan, &mut LiveSystem, &state)
            .map_err(|e| Failure::runtime(format!("run: --apply: {e}")))?;
        let changes = done
            .steps
            .iter()
            .filter(|(_, o)| *o == apply::Outcome::Done)
            .count();
        applied = Some(Applied { state, changes });
    }
    // The readiness check judges the CPU as the program will find it (after apply).
    let model = if applied.is_some() {
        KernelModel::load(root)
    } else {
        model
    };
    let outcome = supervise(root, &model, &args, &program, &target, strict);
    let applied_json = applied.map(Applied::restore);
    finish(&args, cpu, outcome?, applied_json)
}

/// How the program ended, what the watch saw, and where the program lived.
struct Supervised {
    status: std::process::ExitStatus,
    summary: Option<Summary>,
    violations: Vec<String>,
    /// Its unit, container and pod (those isol run runs in).
    place: Option<Place>,
}

/// Check, start the watch, start the program, wait for it; everything up to its exit.
fn supervise(
    root: &SysRoot,
    model: &KernelModel,
    args: &Args,
    program: &Path,
    target: &Target,
    strict: Option<Strict>,
) -> Result<Supervised, Failure> {
    let cpu = target.cpus.first().expect("one CPU");
    refuse_unready(model, target, args.allow_ticking)?;
    let mut watch = None;
    if args.watch {
        isol::pin_current_thread(&target.housekeeping).map_err(|e| {
            Failure::runtime(format!("run: cannot move isol to housekeeping CPUs: {e}"))
        })?;
        if let Err(TraceError::NotMounted) = Tracefs::locate(root) {
            Tracefs::mount_default().map_err(|e| Failure::runtime(format!("run: {e}")))?;
        }
        // The program (and what it creates) is the workload; anything else interrupts it.
        let mut opts = WatchOptions::new(target.cpus.clone());
        opts.pinned_residents = false;
        let w =
            Watch::start(root, opts).map_err(|e| Failure::runtime(format!("run: --watch: {e}")))?;
        let mut out = Output::on_stderr(target.cpus.clone(), w.started_ns());
        out.header(w.notices(), None, false)?;
        watch = Some((w, out, Tally::new(&target.cpus)));
    }
    let (report_r, report_w) = pipe()?;
    let config = RunConfig {
        cpu: Some(cpu),
        fifo: args.fifo,
        strict,
        report_fd: Some(report_w.as_raw_fd()),
        allow_ticking: args.allow_ticking,
    };
    let mut cmd = Command::new(program);
    cmd.arg0(&args.command[0]).args(&args.command[1..]);
    // The program gets what run was asked for, and nothing the caller's environment says
    // about isolation: every ISOL_* variable is run's own.
    for (k, _) in std::env::vars_os() {
        if k.as_encoded_bytes().starts_with(b"ISOL_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in config.to_env() {
        cmd.env(k, v);
    }
    // The policy first, on the housekeeping CPU (a fair task arriving on a nohz_full CPU
    // starts its fair deadline server), then the CPU; the report pipe's end stays open.
    isol_sys::process::Placement {
        fifo: args.fifo,
        cpu: Some(cpu),
        keep: vec![report_w.as_raw_fd()],
    }
    .apply_to(&mut cmd);
    let spawned = cmd.spawn();
    drop(report_w);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            if let Some((w, ..)) = watch {
                let _ = w.stop();
            }
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                std::io::ErrorKind::PermissionDenied => EXIT_NOT_EXECUTABLE,
                _ => crate::EXIT_FAILURE,
            };
            return Err(Failure {
                code,
                message: format!("run: cannot start {}: {e}", program.display()),
            });
        }
    };
    // Before the first poll decodes its arrival on the CPU: the program is the CPU's
    // resident, not an interruption.
    if let Some((w, ..)) = &mut watch {
        w.add_resident(child.id() as i32);
    }
    let place = Places::new(root).of(child.id());

    let mut forwarded = 0;
    let began = Instant::now();
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(|e| Failure::runtime(format!("run: wait: {e}")))?
        {
            break s;
        }
        // Every signal isol gets goes on to the program (a second Ctrl-C is a second
        // SIGINT); run waits for the program whatever it does with them.
        let (received, last) = crate::live::signals::received();
        if received > forwarded {
            let sig = last.unwrap_or(libc::SIGTERM);
            for _ in forwarded..received {
                // Our child, not reaped yet: its pid is still its own.
                let _ = isol_sys::thread::signal_process(child.id() as i32, sig);
            }
            forwarded = received;
        }
        if let Some((w, out, tally)) = &mut watch {
            let records = w
                .poll()
                .map_err(|e| Failure::runtime(format!("run: --watch: {e}")))?;
            out.records(&records, None, tally)?;
        }
        std::thread::sleep(if began.elapsed() < Duration::from_millis(100) {
            Duration::from_millis(5)
        } else {
            POLL
        });
    };
    let summary = match watch {
        Some((w, mut out, mut tally)) => {
            let stats = w.stats();
            let end = isol::monotonic_ns();
            let start_cost = w.start_cost().clone();
            let (records, stop_cost) = w
                .stop_costed()
                .map_err(|e| Failure::runtime(format!("run: --watch: {e}")))?;
            out.records(&records, None, &mut tally)?;
            let s = tally.summary(end.saturating_sub(out.start));
            if !args.json {
                out.summary(&s, stats, Some([&start_cost, &stop_cost]))?;
            }
            Some(s)
        }
        None => None,
    };
    let mut text = String::new();
    let _ = std::fs::File::from(report_r).read_to_string(&mut text);
    let violations = text.lines().map(str::to_string).collect();
    Ok(Supervised {
        status,
        summary,
        violations,
        place,
    })
}

fn finish(
    args: &Args,
    cpu: u32,
    done: Supervised,
    applied: Option<serde_json::Value>,
) -> Result<u8, Failure> {
    let Supervised {
        status,
        summary,
        violations,
        place,
    } = done;
    let (code, status_json) = match (status.code(), status.signal()) {
        (Some(c), _) => (c as u8, json!({"exit": c})),
        (None, Some(s)) => ((128 + s) as u8, json!({"signal": s})),
        _ => (crate::EXIT_FAILURE, json!({})),
    };
    let name = args.command[0].to_string_lossy();
    if let Some(sig) = status.signal() {
        let what = if violations.is_empty() {
            String::new()
        } else {
            format!(
                " after a strict mode violation: {}",
                violations
                    .last()
                    .unwrap()
                    .trim_start_matches("isol: strict mode: ")
            )
        };
        crate::say!(
            "isol: run: {name} on CPU {cpu} was killed by signal {sig}{what}; exit status {code}"
        );
    } else if !violations.is_empty() && !args.json {
        crate::say!(
            "isol: run: {name} made {} strict mode violation(s) on CPU {cpu}: {}",
            violations.len(),
            violations[0].trim_start_matches("isol: strict mode: ")
        );
    }
    if args.json {
        let doc = json!({
            "schema": "isol.run/v1",
            "program": args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            "cpu": cpu,
            "place": place,
            "fifo": args.fifo,
            "strict": args.strict,
            "status": status_json,
            "exit_code": code,
            "violations": violations,
            "watch": summary,
            "apply": applied,
        });
        crate::output::println_json(&serde_json::to_string_pretty(&doc).expect("json"))?;
    }
    Ok(code)
}
