//! `isol apply`, `isol restore` and `isol cmdline`: the runtime setup with its undo, and the
//! boot parameters.

use std::path::PathBuf;

use isol::apply::{
    self, Applied, Change, DirSystem, LiveSystem, Options, Outcome, Plan, Restored, Setting,
    StateDir, System, Undo,
};
use isol::check::{self, Severity, Target, TargetSource};
use isol::kernel::KernelModel;
use isol::SysRoot;
use serde_json::json;

use crate::root::Root;
use crate::Failure;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// CPUs to isolate (`2-7,10`). Default: the kernel's nohz_full CPUs, else its isolated
    /// CPUs.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Also take each isolated CPU offline and online once at the end, so that timers
    /// stranded there move away (disturbs whatever runs there now).
    #[arg(long)]
    cycle_offline: bool,

    /// Also turn RT throttling off (kernel.sched_rt_runtime_us=-1): a runaway SCHED_FIFO
    /// task can then keep its CPU forever.
    #[arg(long)]
    rt_unthrottled: bool,

    /// Where the journal and lock live. Default: /run/isol (under the --root directory when
    /// one is given).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Print the plan and its outcome as JSON (schema isol.apply/v1, docs/apply.md).
    #[arg(long)]
    json: bool,

    /// List every thread moved, not only how many.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Write the old values also where someone changed the setting since apply, and
    /// restore a journal from an earlier boot.
    #[arg(long)]
    force: bool,

    /// Where the journal lives (as given to apply).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Print what was restored as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CmdlineArgs {
    /// CPUs to isolate. Default: the kernel's nohz_full CPUs, else its isolated CPUs, else a
    /// suggestion (every CPU but the first core).
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Print the parameters as JSON.
    #[arg(long)]
    json: bool,
}

/// Where apply and restore write: the live kernel, or the `--root` directory (opened once;
/// every write below it is resolved from that descriptor, no link followed).
fn system(root: &Root, state_dir: Option<PathBuf>) -> Result<(Box<dyn System>, StateDir), Failure> {
    if root.sys.is_live() {
        let state = state_dir.unwrap_or_else(|| PathBuf::from(apply::DEFAULT_STATE_DIR));
        return Ok((Box::new(LiveSystem), StateDir::new(state)));
    }
    let Some(dir) = &root.dir else {
        return Err(Failure::usage(
            "apply and restore change settings: give the live system, or a directory (a copy \
             of a captured tree) with --root, not an archive",
        ));
    };
    let sys = DirSystem::open(dir)
        .map_err(|e| Failure::runtime(format!("--root {}: {e}", dir.display())))?;
    let state = match state_dir {
        Some(d) => StateDir::new(d),
        None => StateDir::within(sys.tree(), apply::DEFAULT_STATE_DIR)
            .map_err(|e| Failure::runtime(format!("--root {}: {e}", dir.display())))?,
    };
    Ok((Box::new(sys), state))
}

fn needs_root(root: &SysRoot, what: &str) -> Result<(), Failure> {
    if root.is_live() && !isol::is_root() {
        return Err(Failure {
            code: crate::EXIT_NOPERM,
            message: format!("{what} changes kernel settings: run it as root (`isol apply --dry-run` shows the plan without root)"),
        });
    }
    Ok(())
}

fn target_for(model: &KernelModel, cpus: Option<&str>, what: &str) -> Result<Target, Failure> {
    let target = crate::live::choose_target(model, cpus, None)?;
    if target.source == TargetSource::Suggested {
        return Err(Failure::usage(format!(
            "no CPU is isolated on this kernel; name the CPUs to {what} with --cpus (isol \
             suggests {})",
            target.cpus
        )));
    }
    Ok(target)
}

pub fn apply(root: &Root, args: ApplyArgs) -> Result<u8, Failure> {
    let model = KernelModel::load(&root.sys);
    let target = target_for(&model, args.cpus.as_deref(), "isolate")?;
    let opts = Options {
        cycle_offline: args.cycle_offline,
        rt_unthrottled: args.rt_unthrottled,
        keep_pids: vec![std::process::id()],
    };
    let plan = apply::plan(&root.sys, &model, &target.cpus, &opts)
        .map_err(|e| Failure::usage(e.to_string()))?;
    if args.dry_run {
        return print_plan(&plan, None, &args);
    }
    needs_root(&root.sys, "apply")?;
    let (mut sys, state) = system(root, args.state_dir.clone())?;
    let before = open_findings(&model, &target);
    let applied =
        apply::apply(&plan, sys.as_mut(), &state).map_err(|e| Failure::runtime(e.to_string()))?;
    let after_model = KernelModel::load(&root.sys);
    let after = open_findings(&after_model, &target);
    print_plan(&plan, Some((&applied, &before, &after)), &args)
}

/// The ids of the findings that are not ok.
fn open_findings(model: &KernelModel, target: &Target) -> Vec<String> {
    check::run(model, target)
        .findings
        .iter()
        .filter(|f| matches!(f.severity, Severity::Warn | Severity::Fail))
        .map(|f| f.id.to_string())
        .collect()
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Done => "done".into(),
        Outcome::AlreadySet => "already set".into(),
        Outcome::Refused(why) => format!("refused by the kernel: {why}"),
        Outcome::Gone => "gone before isol got to it".into(),
    }
}

type Result3<'a> = (&'a Applied, &'a Vec<String>, &'a Vec<String>);

fn print_plan(plan: &Plan, result: Option<Result3>, args: &ApplyArgs) -> Result<u8, Failure> {
    let outcome_of = |i: usize| result.map(|(a, _, _)| &a.steps[i].1);
    if args.json {
        let changes: Vec<_> = plan
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = serde_json::to_value(c).expect("a change serialises");
                if let Some(o) = outcome_of(i) {
                    v["outcome"] = serde_json::to_value(o).expect("an outcome serialises");
                }
                v
            })
            .collect();
        let mut doc = json!({
            "schema": "isol.apply/v1",
            "dry_run": result.is_none(),
            "cpus": plan.cpus,
            "housekeeping": plan.housekeeping,
            "changes": changes,
            "left": plan.left,
        });
        if let Some((a, before, after)) = result {
            doc["journal"] = json!(a.journal);
            doc["findings_before"] = json!(before);
            doc["findings_after"] = json!(after);
        }
        crate::output::println_json(&serde_json::to_string_pretty(&doc).expect("json"))?;
        return Ok(0);
    }
    let mut out = format!(
        "isol apply: {} isolated, housekeeping {}{}\n",
        plan.cpus.named(),
        plan.housekeeping,
        if result.is_none() {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    if plan.changes.is_empty() {
        out.push_str("  nothing to change: every setting isol knows is already right\n");
    }
    let mut threads: Vec<(usize, &Change)> = Vec::new();
    for (i, c) in plan.changes.iter().enumerate() {
        if matches!(c.setting, Setting::Affinity { .. }) && !args.verbose {
            threads.push((i, c));
            continue;
        }
        let fixes = c
            .fixes
            .as_deref()
            .map(|f| format!(" [{f}]"))
            .unwrap_or_default();
        let status = outcome_of(i)
            .map(|o| format!(": {}", outcome_text(o)))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}: {} -> {}{status}\n      {}{fixes}\n",
            c.setting.describe(),
            c.old,
            c.new,
            c.why
        ));
    }
    if !threads.is_empty() {
        let kernel = threads
            .iter()
            .filter(|(_, c)| matches!(c.setting, Setting::Affinity { kernel: true, .. }))
            .count();
        let names: Vec<String> = threads
            .iter()
            .take(6)
            .map(|(_, c)| c.setting.describe().replace("affinity of ", ""))
            .collect();
        let done = threads
            .iter()
            .filter(|(i, _)| outcome_of(*i) == Some(&Outcome::Done))
            .count();
        out.push_str(&format!(
            "  move {} threads off {} ({kernel} kernel, {} user): {}{}{}\n      -v lists each [tasks.kthreads, tasks.user]\n",
            threads.len(),
            plan.cpus.named(),
            threads.len() - kernel,
            names.join(", "),
            if threads.len() > names.len() { ", ..." } else { "" },
            result.map(|_| format!(": {done} moved")).unwrap_or_default(),
        ));
    }
    if !plan.left.is_empty() {
        out.push_str("left as they are:\n");
        for l in &plan.left {
            out.push_str(&format!("  {}: {}\n", l.what, l.why));
        }
    }
    if let Some((applied, before, after)) = result {
        let count = |f: fn(&Outcome) -> bool| applied.steps.iter().filter(|(_, o)| f(o)).count();
        out.push_str(&format!(
            "applied: {} changed, {} already set, {} refused by the kernel, {} gone; journal {}\n\
             undo with `isol restore`\n",
            count(|o| *o == Outcome::Done),
            count(|o| *o == Outcome::AlreadySet),
            count(|o| matches!(o, Outcome::Refused(_))),
            count(|o| *o == Outcome::Gone),
            applied.journal.display()
        ));
        out.push_str(&format!(
            "isol check: {} warnings or failures before, {} after{}\n",
            before.len(),
            after.len(),
            if after.is_empty() {
                String::new()
            } else {
                format!(" ({}; boot parameters: `isol cmdline`)", after.join(", "))
            }
        ));
    }
    crate::output::print(&out)?;
    Ok(0)
}

pub fn restore(root: &Root, args: RestoreArgs) -> Result<u8, Failure> {
    needs_root(&root.sys, "restore")?;
    let (mut sys, state) = system(root, args.state_dir)?;
    // Each step is written as it is undone: a journal of any length costs no memory here.
    let mut out = Streamed::new(args.json);
    let restored = apply::restore(sys.as_mut(), &state, args.force, &mut |c, u| {
        if args.json {
            let mut v = serde_json::to_value(c).expect("a change serialises");
            v["undo"] = serde_json::to_value(u).expect("an undo serialises");
            out.item(&v);
        } else if let Some(line) = problem(c, u) {
            out.text(&line);
        }
    });
    // Restore stops before its first step (an unsafe or foreign journal) or, rarely,
    // after some (the journal changed under it): what was undone so far has been printed.
    let restored = restored.map_err(|e| Failure::runtime(e.to_string()))?;
    out.flush()?;
    let code = u8::from(restored.kept.is_some());
    if args.json {
        let tail = format!(
            "],\n  \"journal\": {},\n  \"counts\": {},\n  \"journal_kept\": {}\n}}",
            serde_json::to_string(&restored.header.as_ref().map(|_| state.journal_path()))
                .expect("json"),
            serde_json::to_string(&restored.counts).expect("json"),
            serde_json::to_string(&restored.kept).expect("json"),
        );
        crate::output::println_json(&tail)?;
        return Ok(code);
    }
    crate::output::print(&render_restored(&restored, &state))?;
    Ok(code)
}

/// Output written as restore goes: the JSON document's steps, or the lines of what could
/// not be undone. Buffered in pieces, never whole.
struct Streamed {
    json: bool,
    buf: String,
    first: bool,
    error: Option<Failure>,
}

impl Streamed {
    fn new(json: bool) -> Streamed {
        let buf = if json {
            "{\n  \"schema\": \"isol.restore/v1\",\n  \"steps\": [".to_string()
        } else {
            String::new()
        };
        Streamed {
            json,
            buf,
            first: true,
            error: None,
        }
    }

    fn item(&mut self, v: &serde_json::Value) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        self.buf.push_str("\n    ");
        self.buf
            .push_str(&serde_json::to_string(v).expect("a step serialises"));
        self.maybe_flush();
    }

    fn text(&mut self, line: &str) {
        if self.buf.is_empty() {
            self.buf.push_str("isol restore: left alone:\n");
        }
        self.buf.push_str(line);
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.buf.len() >= 64 << 10 && self.error.is_none() {
            let buf = std::mem::take(&mut self.buf);
            if let Err(e) = self.write(&buf) {
                self.error = Some(e);
            }
        }
        if self.error.is_some() {
            self.buf.clear();
        }
    }

    /// Write what is left (and the end of the steps list, in JSON).
    fn flush(mut self) -> Result<(), Failure> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.json && !self.first {
            self.buf.push_str("\n  ");
        }
        self.write(&self.buf)
    }

    fn write(&self, text: &str) -> Result<(), Failure> {
        if self.json {
            crate::output::print_json(text)
        } else {
            crate::output::print(text)
        }
    }
}

/// A line for a journaled change restore could not undo.
fn problem(c: &Change, u: &Undo) -> Option<String> {
    match u {
        Undo::Conflict(now) => Some(format!(
            "  {}: now {now}, isol set {}, was {}: changed by someone else, left alone\n",
            c.setting.describe(),
            c.new,
            c.old
        )),
        Undo::Failed(why) => Some(format!(
            "  {}: could not write {} back: {why}\n",
            c.setting.describe(),
            c.old
        )),
        _ => None,
    }
}

fn render_restored(r: &Restored, state: &StateDir) -> String {
    let Some(header) = &r.header else {
        return format!(
            "isol restore: nothing to restore (no journal at {})\n",
            state.journal_path().display()
        );
    };
    let n = &r.counts;
    if n.total() == 0 {
        return format!(
            "isol restore: the journal {} recorded no change (apply of CPUs {} changed \
             nothing, or was stopped before its first change); removed\n",
            state.journal_path().display(),
            header.cpus
        );
    }
    let mut out = format!(
        "isol restore: {} restored, {} already as they were, {} gone (threads that exited), {} \
         conflicts, {} failed\n",
        n.restored, n.not_changed, n.gone, n.conflicts, n.failed,
    );
    if let Some(kept) = &r.kept {
        out.push_str(&format!(
            "the journal {} keeps only these; `isol restore --force` writes the old values anyway\n",
            kept.display()
        ));
    }
    out
}

pub fn cmdline(root: &SysRoot, args: CmdlineArgs) -> Result<u8, Failure> {
    let model = KernelModel::load(root);
    let target = crate::live::choose_target(&model, args.cpus.as_deref(), None)?;
    let params = apply::boot_params(&model, &target.cpus, &target.housekeeping);
    let grub = apply::grub_snippet(&params);
    if args.json {
        let doc = json!({
            "schema": "isol.cmdline/v1",
            "cpus": target.cpus,
            "housekeeping": target.housekeeping,
            "params": params,
            "cmdline": params.iter().map(|p| p.param.as_str()).collect::<Vec<_>>().join(" "),
            "grub": grub,
        });
        crate::output::println_json(&serde_json::to_string_pretty(&doc).expect("json"))?;
        return Ok(0);
    }
    let width = params.iter().map(|p| p.param.len()).max().unwrap_or(0);
    let mut out = format!(
        "Kernel parameters to isolate {} (housekeeping {}):\n\n",
        target.cpus.named(),
        target.housekeeping
    );
    for p in &params {
        out.push_str(&format!("  {:width$}  {}\n", p.param, p.why));
    }
    out.push_str(&format!(
        "\nOn a GRUB system, put this line in /etc/default/grub.d/isol.cfg, run update-grub, \
         and reboot (isol edits no boot file):\n\n{grub}"
    ));
    crate::output::print(&out)?;
    Ok(0)
}
