//! Carrying a plan out, and undoing it.

use std::io;
use std::path::PathBuf;

use super::journal::{Header, Journal, JournalError, Locked, StateDir, JOURNAL_FORMAT};
use super::{Change, Plan, Setting, System};
use crate::cpus::CpuSet;

/// What happened to one change of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Made (and journaled before).
    Done,
    /// Already at the value: not touched, not journaled.
    AlreadySet,
    /// The kernel refused the value (a managed IRQ, a bound thread): nothing changed.
    Refused(String),
    /// The thread exited or the file went away before isol got to it.
    Gone,
}

/// The result of [`apply()`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// Each change of the plan and what became of it, in order.
    pub steps: Vec<(Change, Outcome)>,
    /// The journal restore will read.
    pub journal: PathBuf,
}

/// What restore did with one journaled change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "undo", content = "detail", rename_all = "snake_case")]
pub enum Undo {
    /// Put back to its old value.
    Restored,
    /// Already at its old value (the change was never made, or was undone before).
    NotChanged,
    /// Someone changed it since apply: it now reads this, and was left alone.
    Conflict(String),
    /// The thread exited (or its id now names another thread), or the file went away.
    Gone,
    /// Writing the old value failed.
    Failed(String),
    /// An action with nothing to undo (a CPU offline/online cycle).
    Action,
}

/// How many journaled changes met each [`Undo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UndoCounts {
    /// [`Undo::Restored`].
    pub restored: usize,
    /// [`Undo::NotChanged`].
    pub not_changed: usize,
    /// [`Undo::Conflict`].
    pub conflicts: usize,
    /// [`Undo::Gone`].
    pub gone: usize,
    /// [`Undo::Failed`].
    pub failed: usize,
    /// [`Undo::Action`].
    pub actions: usize,
}

impl UndoCounts {
    fn count(&mut self, u: &Undo) {
        *match u {
            Undo::Restored => &mut self.restored,
            Undo::NotChanged => &mut self.not_changed,
            Undo::Conflict(_) => &mut self.conflicts,
            Undo::Gone => &mut self.gone,
            Undo::Failed(_) => &mut self.failed,
            Undo::Action => &mut self.actions,
        } += 1;
    }

    /// Every journaled change restore met.
    pub fn total(&self) -> usize {
        self.restored + self.not_changed + self.conflicts + self.gone + self.failed + self.actions
    }
}

/// The result of [`restore()`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    /// The journal's header, when there was a journal (it may hold no change).
    pub header: Option<Header>,
    /// What became of the journaled changes.
    pub counts: UndoCounts,
    /// The journal, kept when some changes could not be undone (it then holds only
    /// those); `None` when it was removed.
    pub kept: Option<PathBuf>,
}

/// Why apply or restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state directory or journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A journal for other CPUs is in place.
    #[error(
        "{} already isolated by an earlier apply ({path}); run `isol restore` before \
         isolating {}",
        are(journal_cpus),
        named(asked)
    )]
    OtherCpus {
        /// The CPUs in the journal.
        journal_cpus: String,
        /// The CPUs asked for now.
        asked: String,
        /// The journal.
        path: PathBuf,
    },
    /// An apply that is meant to end with its owner found one already in place.
    #[error(
        "an apply is already in place ({path}, {}{by}): it stays until `isol restore`; \
         run without --apply to use it as it is, or restore it first",
        named(cpus)
    )]
    InPlace {
        /// The journal.
        path: PathBuf,
        /// Its CPUs.
        cpus: String,
        /// Who made it, when known.
        by: String,
    },
    /// The journal was written before the machine last booted.
    #[error(
        "{path} was written before the machine last booted (boot id {journal}, now {now}): \
         the runtime settings it records were reset by the reboot; remove it, or restore \
         with --force to write its old values anyway"
    )]
    OtherBoot {
        /// The journal.
        path: PathBuf,
        /// The boot id it records.
        journal: String,
        /// This boot's id.
        now: String,
    },
    /// A change failed in a way that stops the run (no permission); what apply had done was
    /// undone.
    #[error(
        "cannot set {what}: {source}{hint}; the {undone} change(s) made before it were undone"
    )]
    Failed {
        /// The setting.
        what: String,
        /// The error.
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
        /// How many changes were undone.
        undone: usize,
    },
}

/// A CPU list from a journal, for a sentence.
fn named(list: &str) -> String {
    CpuSet::parse_list(list).map_or_else(|_| format!("CPUs {list}"), |c| c.named())
}

/// "CPU 1 is" or "CPUs 1-3 are".
fn are(list: &str) -> String {
    let n = named(list);
    if n.starts_with("CPUs") {
        format!("{n} are")
    } else {
        format!("{n} is")
    }
}

/// The boot id, when the system has one.
fn boot_id(sys: &dyn System) -> String {
    sys.read("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT))
}

/// Errors that stop apply: isol may not write at all. `EPERM` to root is the kernel
/// refusing one value (a managed or per-CPU IRQ), not a missing permission.
fn is_fatal(e: &io::Error) -> bool {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EROFS) => true,
        Some(libc::EPERM) => !crate::is_root(),
        _ => false,
    }
}

/// A setting's current value as the journal records it; `Err` when it is gone.
fn current(sys: &dyn System, setting: &Setting) -> io::Result<String> {
    match setting {
        Setting::File { path, format } => Ok(format.value_of(&sys.read(path)?)),
        Setting::Affinity {
            pid, tid, start, ..
        } => {
            let (cpus, started) = sys.affinity(*pid, *tid)?;
            if started != *start {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(cpus.to_list())
        }
        Setting::CycleCpu { .. } => Ok("1".into()),
    }
}

fn set(sys: &mut dyn System, setting: &Setting, value: &str) -> io::Result<()> {
    match setting {
        Setting::File { path, .. } => sys.write(path, value),
        Setting::Affinity { pid, tid, .. } => {
            let cpus = CpuSet::parse_list(value)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            sys.set_affinity(*pid, *tid, &cpus)
        }
        Setting::CycleCpu { cpu } => {
            let online = format!("/sys/devices/system/cpu/cpu{cpu}/online");
            sys.write(&online, "0")?;
            sys.write(&online, "1")
        }
    }
}

/// Carry `plan` out on `sys`, journaling in `state` before each change.
///
/// Values already at their target are skipped, so a second apply of the same plan changes
/// nothing. When a journal from an earlier apply of the same CPUs is in place, new changes
/// are appended to it (its old values, the machine's before any apply, are kept). A change
/// the kernel refuses (a managed IRQ) is reported and the run goes on; a permission error
/// stops it and undoes what it did.
pub fn apply(plan: &Plan, sys: &mut dyn System, state: &StateDir) -> Result<Applied, ApplyError> {
    let locked = state.lock()?;
    let existing = locked.read()?;
    if let Some(c) = &existing {
        if CpuSet::parse_list(&c.header.cpus).ok().as_ref() != Some(&plan.cpus) {
            return Err(ApplyError::OtherCpus {
                journal_cpus: c.header.cpus.clone(),
                asked: plan.cpus.to_list(),
                path: locked.journal_path(),
            });
        }
    }
    if let (Some(c), Some(_)) = (&existing, state.owner()) {
        return Err(ApplyError::InPlace {
            path: locked.journal_path(),
            cpus: c.header.cpus.clone(),
            by: c
                .header
                .owner
                .as_ref()
                .map(|o| format!(", by {} (pid {})", o.command, o.pid))
                .unwrap_or_default(),
        });
    }
    let header = match &existing {
        Some(c) => c.header.clone(),
        None => Header {
            journal: JOURNAL_FORMAT.into(),
            boot_id: boot_id(sys),
            cpus: plan.cpus.to_list(),
            housekeeping: plan.housekeeping.to_list(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            owner: state.owner().cloned(),
        },
    };
    let mut writer = None;
    let mut made: Vec<Change> = Vec::new();
    let mut steps = Vec::new();
    for planned in &plan.changes {
        let format = planned.setting.format();
        let now = match current(sys, &planned.setting) {
            Ok(v) => v,
            Err(e) if is_gone(&e) => {
                steps.push((planned.clone(), Outcome::Gone));
                continue;
            }
            Err(e) => {
                return Err(undo_failed(
                    &locked,
                    &header,
                    existing.as_ref(),
                    made,
                    sys,
                    planned,
                    e,
                ))
            }
        };
        let action = matches!(planned.setting, Setting::CycleCpu { .. });
        if !action && format.same(&now, &planned.new) {
            steps.push((planned.clone(), Outcome::AlreadySet));
            continue;
        }
        let change = Change {
            old: now,
            ..planned.clone()
        };
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(match &existing {
                Some(_) => locked.append()?,
                None => locked.create(&header)?,
            }),
        };
        w.record(&change)?;
        match set(sys, &change.setting, &change.new) {
            Ok(()) => {
                made.push(change.clone());
                steps.push((change, Outcome::Done));
            }
            Err(e) if is_gone(&e) => steps.push((change, Outcome::Gone)),
            Err(e) if is_fatal(&e) => {
                return Err(undo_failed(
                    &locked,
                    &header,
                    existing.as_ref(),
                    made,
                    sys,
                    &change,
                    e,
                ))
            }
            Err(e) => steps.push((change, Outcome::Refused(e.to_string()))),
        }
    }
    Ok(Applied {
        steps,
        journal: locked.journal_path(),
    })
}

/// Undo this run's changes after a failure, keep the journal of earlier runs, and say why.
fn undo_failed(
    locked: &Locked,
    header: &Header,
    existing: Option<&Journal>,
    made: Vec<Change>,
    sys: &mut dyn System,
    failed: &Change,
    e: io::Error,
) -> ApplyError {
    let undone = made.len();
    let earlier: Vec<usize> = (0..existing.map_or(0, Journal::len)).collect();
    let mut kept = Vec::new();
    for c in made.iter().rev() {
        if !matches!(undo(sys, c, false), Undo::Restored | Undo::NotChanged) {
            kept.push(c.clone());
        }
    }
    kept.reverse();
    if let Err(j) = locked.rewrite(header, existing, &earlier, &kept) {
        return ApplyError::Journal(j);
    }
    ApplyError::Failed {
        what: failed.setting.describe(),
        hint: if is_fatal(&e) {
            " (apply changes kernel settings: run it as root)"
        } else {
            ""
        },
        source: e,
        undone,
    }
}

fn undo(sys: &mut dyn System, c: &Change, force: bool) -> Undo {
    if matches!(c.setting, Setting::CycleCpu { .. }) {
        return Undo::Action;
    }
    let format = c.setting.format();
    let now = match current(sys, &c.setting) {
        Ok(v) => v,
        Err(e) if is_gone(&e) => return Undo::Gone,
        Err(e) => return Undo::Failed(e.to_string()),
    };
    if format.same(&now, &c.old) {
        return Undo::NotChanged;
    }
    if !format.same(&now, &c.new) && !force {
        return Undo::Conflict(now);
    }
    match set(sys, &c.setting, &c.old) {
        Ok(()) => Undo::Restored,
        Err(e) if is_gone(&e) => Undo::Gone,
        Err(e) => Undo::Failed(e.to_string()),
    }
}

/// Put back every value the journal in `state` records, newest first, telling `on_step`
/// what became of each.
///
/// A value that reads neither as isol set it nor as it was has been changed by someone
/// else: it is reported and left alone, unless `force`. The journal is removed when
/// everything is back; otherwise it keeps only what could not be undone. With no journal
/// there is nothing to do. The journal is read one change at a time: memory does not grow
/// with its length.
pub fn restore(
    sys: &mut dyn System,
    state: &StateDir,
    force: bool,
    on_step: &mut dyn FnMut(&Change, &Undo),
) -> Result<Restored, ApplyError> {
    let locked = state.lock()?;
    let Some(journal) = locked.read()? else {
        return Ok(Restored {
            header: None,
            counts: UndoCounts::default(),
            kept: None,
        });
    };
    let now = boot_id(sys);
    if !force && journal.header.boot_id != now {
        return Err(ApplyError::OtherBoot {
            path: locked.journal_path(),
            journal: journal.header.boot_id.clone(),
            now,
        });
    }
    let mut counts = UndoCounts::default();
    let mut kept = Vec::new();
    for i in (0..journal.len()).rev() {
        let c = journal.change(i)?;
        let u = undo(sys, &c, force);
        if matches!(u, Undo::Conflict(_) | Undo::Failed(_)) {
            kept.push(i);
        }
        counts.count(&u);
        on_step(&c, &u);
    }
    kept.reverse();
    locked.rewrite(&journal.header, Some(&journal), &kept, &[])?;
    Ok(Restored {
        kept: (!kept.is_empty()).then(|| locked.journal_path()),
        header: Some(journal.header),
        counts,
    })
}
