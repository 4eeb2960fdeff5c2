//! What tracing is switched on, per tracefs instance: the tracer and the enabled events.
//!
//! An enabled tracepoint runs on every CPU that passes it, an isolated task's system calls
//! included; a function tracer runs on every kernel function; and the latency tracers
//! `hwlat`, `osnoise` and `timerlat` run a kernel thread on the CPUs they measure. Each is
//! noise for an isolated CPU, and each outlives the tool that switched it on (`isol watch
//! --keep-armed` leaves the instance `isol-armed` on purpose).

use serde::Serialize;

use super::Fact;
use crate::cpus::CpuSet;
use crate::sysroot::SysRoot;

/// Tracers that run a kernel thread on the CPUs they measure.
const THREADED: [&str; 3] = ["hwlat", "osnoise", "timerlat"];

/// One tracefs instance: the top level (`name` empty) or one under `instances/`.
#[derive(Debug, Clone, Serialize)]
pub struct TraceInstance {
    /// Its name under `instances/`; empty for the top level.
    pub name: String,
    /// Its directory (`/sys/kernel/tracing/instances/NAME`).
    pub path: String,
    /// `current_tracer`.
    pub tracer: Fact<String>,
    /// `set_event`: every enabled event, `system:event`.
    pub events: Fact<Vec<String>>,
    /// `tracing_on`: whether it records (its tracepoints run either way).
    pub on: Fact<bool>,
    /// For a tracer with a kernel thread per CPU, the CPUs it runs on (`osnoise/cpus` for
    /// osnoise and timerlat, `tracing_cpumask` for hwlat).
    pub cpus: Option<Fact<CpuSet>>,
}

impl TraceInstance {
    fn load(root: &SysRoot, tracefs: &str, name: &str) -> TraceInstance {
        let path = if name.is_empty() {
            tracefs.to_string()
        } else {
            format!("{tracefs}/instances/{name}")
        };
        let tracer = Fact::read(root, &format!("{path}/current_tracer"), |s| {
            Ok(s.trim().to_string())
        });
        let cpus = match tracer.as_ref().map(String::as_str) {
            Some("osnoise" | "timerlat") => {
                Some(Fact::read(root, &format!("{tracefs}/osnoise/cpus"), |s| {
                    CpuSet::parse_list(s.trim()).map_err(|e| e.to_string())
                }))
            }
            Some("hwlat") => Some(Fact::mask(root, &format!("{path}/tracing_cpumask"))),
            _ => None,
        };
        TraceInstance {
            events: Fact::read(root, &format!("{path}/set_event"), |s| {
                Ok(s.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect())
            }),
            on: Fact::read(root, &format!("{path}/tracing_on"), super::yes_no),
            name: name.to_string(),
            path,
            tracer,
            cpus,
        }
    }

    /// Whether its tracer runs a kernel thread on the CPUs it measures.
    pub fn threaded(&self) -> bool {
        self.tracer
            .as_ref()
            .is_some_and(|t| THREADED.contains(&t.as_str()))
    }

    /// Whether it has a tracer or events switched on (unknown parts count as off).
    pub fn active(&self) -> bool {
        self.tracer.as_ref().is_some_and(|t| t != "nop")
            || self.events.as_ref().is_some_and(|e| !e.is_empty())
    }

    /// How a person names it: `the top-level instance` or `instance NAME`.
    /// A name that is not plain (a snapshot can hold any) is quoted.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            "the top-level instance".into()
        } else if plain(&self.name) {
            format!("instance {}", self.name)
        } else {
            format!("instance {:?}", self.name)
        }
    }
}

/// Whether a name (or each part of a path) is letters, digits, `.`, `_` and `-` only:
/// safe to print and to paste into a shell.
pub fn plain(name: &str) -> bool {
    name.split('/').all(|part| {
        part.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    })
}

/// Every instance under `tracefs`, the top level first; unknown when tracefs is not
/// mounted or its `instances/` cannot be listed.
pub fn load(root: &SysRoot, tracefs: Option<&str>) -> Fact<Vec<TraceInstance>> {
    let Some(tracefs) = tracefs else {
        return Fact::Unknown {
            path: "/sys/kernel/tracing".into(),
            why: super::Unknown::Absent,
        };
    };
    let names = match root.list(&format!("{tracefs}/instances")) {
        Ok(n) => n,
        Err(e) => return Fact::from_error(&e),
    };
    let mut all = vec![TraceInstance::load(root, tracefs, "")];
    all.extend(names.iter().map(|n| TraceInstance::load(root, tracefs, n)));
    Fact::Known(all)
}
