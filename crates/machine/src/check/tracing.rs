use super::*;
use crate::kernel::tracing::plain;
use crate::kernel::TraceInstance;
use crate::tracefs::{instance_owner, ARMED};

impl Ctx<'_> {
    /// Tracing left switched on, in any tracefs instance. Enabled events and function
    /// tracers slow every kernel entry of the isolated task; `hwlat`, `osnoise` and
    /// `timerlat` run a thread on the CPUs they measure, which is an interruption (fail
    /// while recording on a target CPU).
    pub(super) fn tracing_switched_on(&self) -> Finding {
        if self.m.tracefs.is_none() {
            return self.finding(
                Severity::Ok,
                "tracefs is not mounted: no tracing is switched on through it",
                vec![ev("/proc/self/mounts", "tracefs not mounted")],
                None,
            );
        }
        let Some(all) = self.m.tracing.as_ref() else {
            return self.unknown("tracing switched on", &self.m.tracing);
        };
        let active: Vec<&TraceInstance> = all.iter().filter(|i| i.active()).collect();
        let mut e: Vec<Evidence> = all.iter().map(|i| ev(&i.path, self.state(i))).collect();
        let unknown = all
            .iter()
            .find_map(|i| i.tracer.unknown().or_else(|| i.events.unknown()));
        if active.is_empty() {
            if let Some((file, why)) = unknown {
                e.push(ev(file, why.to_string()));
                return self.finding(
                    Severity::Unknown,
                    format!("tracing switched on: unknown ({file}: {why})"),
                    e,
                    None,
                );
            }
            return self.finding(
                Severity::Ok,
                "no tracer and no trace event is switched on",
                e,
                None,
            );
        }
        let running = active.iter().any(|i| {
            i.threaded()
                && i.on.as_ref() != Some(&false)
                && i.cpus
                    .as_ref()
                    .and_then(|c| c.as_ref())
                    .is_none_or(|c| c.intersects(self.target()))
        });
        let what: Vec<String> = active
            .iter()
            .map(|i| format!("{} ({})", i.label(), self.state(i)))
            .collect();
        let fixes: Vec<String> = active.iter().map(|i| self.switch_off(i)).collect();
        if running {
            self.finding(
                Severity::Fail,
                format!(
                    "a tracer runs a kernel thread on the target CPUs: {}",
                    what.join("; ")
                ),
                e,
                fix(FixKind::Runtime, fixes.join("; ")),
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "tracing is switched on, and every kernel entry it traces on the target \
                     CPUs pays for it: {}",
                    what.join("; ")
                ),
                e,
                fix(FixKind::Runtime, fixes.join("; ")),
            )
        }
    }

    /// `tracer osnoise on CPUs 1, 45 events (raw_syscalls:sys_enter, ...), not recording`.
    fn state(&self, i: &TraceInstance) -> String {
        let mut parts = Vec::new();
        match i.tracer.as_ref() {
            Some(t) if t != "nop" => {
                let on = match i.cpus.as_ref().map(|c| c.as_ref()) {
                    Some(Some(c)) => format!(" on {}", c.named()),
                    _ => String::new(),
                };
                parts.push(format!("tracer {t}{on}"));
            }
            Some(_) => {}
            None => parts.push("tracer unknown".into()),
        }
        match i.events.as_ref() {
            Some(ev) if !ev.is_empty() => {
                let shown: Vec<&str> = ev.iter().take(3).map(String::as_str).collect();
                let more = if ev.len() > 3 { ", ..." } else { "" };
                parts.push(format!(
                    "{} event{} ({}{more})",
                    ev.len(),
                    if ev.len() == 1 { "" } else { "s" },
                    shown.join(", ")
                ));
            }
            Some(_) => {}
            None => parts.push("events unknown".into()),
        }
        if parts.is_empty() {
            return "nothing switched on".into();
        }
        if i.on.as_ref() == Some(&false) {
            parts.push("not recording".into());
        }
        if let Some(owner) = self.isol_owner(i) {
            parts.push(owner);
        }
        parts.join(", ")
    }

    /// Who left an instance named like isol's: the armed one, a running isol, or one
    /// that ended without removing it.
    fn isol_owner(&self, i: &TraceInstance) -> Option<String> {
        if i.name == ARMED {
            return Some("left by `isol watch --keep-armed`".into());
        }
        let pid = instance_owner(&i.name)?;
        let alive = self
            .m
            .threads
            .as_ref()
            .map(|t| t.iter().any(|t| t.pid == pid));
        Some(match alive {
            Some(true) => format!("isol pid {pid} is tracing"),
            Some(false) => format!("left by isol pid {pid}, which has ended"),
            None => format!("isol pid {pid}"),
        })
    }

    /// The command that switches an instance's tracing off.
    fn switch_off(&self, i: &TraceInstance) -> String {
        if i.name == ARMED {
            return "isol watch --disarm".into();
        }
        // The path comes from the machine (or a snapshot of it): a command is offered only
        // for one that is safe to paste into a shell.
        if !plain(&i.path) {
            return format!(
                "switch off the tracing instance at {:?} (its path is not safe to paste into a shell)",
                i.path
            );
        }
        match self.isol_owner(i) {
            Some(o) if o.contains("has ended") => return format!("rmdir {}", i.path),
            Some(o) if o.contains("is tracing") => {
                return "it ends when that isol does (or stop it)".into()
            }
            _ => {}
        }
        let mut steps = Vec::new();
        if i.tracer.as_ref().is_some_and(|t| t != "nop") {
            steps.push(format!("echo nop > {}/current_tracer", i.path));
        }
        if i.events.as_ref().is_some_and(|e| !e.is_empty()) {
            steps.push(format!("echo > {}/set_event", i.path));
        }
        steps.join("; ")
    }
}
