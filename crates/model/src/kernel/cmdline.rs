//! The kernel command line (`/proc/cmdline`): the boot parameters that matter for isolation.

use serde::Serialize;

use crate::cpus::{CpuListError, CpuSet};

/// `isolcpus=` as the kernel reads it: flags, then a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolCpus {
    /// The CPUs.
    pub cpus: CpuSet,
    /// `nohz` flag: the CPUs are also nohz_full-capable housekeeping exclusions.
    pub nohz: bool,
    /// `domain` flag (the default when no flag is given): removed from scheduler domains.
    pub domain: bool,
    /// `managed_irq` flag: managed interrupts avoid the CPUs where possible.
    pub managed_irq: bool,
}

/// Isolation-related boot parameters. Unset parameters are `None`/`false`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootParams {
    /// Every parameter as `(name, value)`, in order, before a `--`.
    #[serde(skip)]
    pub all: Vec<(String, Option<String>)>,
    /// `nohz_full=`.
    pub nohz_full: Option<CpuSet>,
    /// `isolcpus=`.
    pub isolcpus: Option<IsolCpus>,
    /// `rcu_nocbs=`; `Some(empty)` when given without a list.
    pub rcu_nocbs: Option<CpuSet>,
    /// `rcu_nocb_poll`.
    pub rcu_nocb_poll: bool,
    /// `irqaffinity=`.
    pub irqaffinity: Option<CpuSet>,
    /// `skew_tick=`.
    pub skew_tick: Option<String>,
    /// `nosoftlockup`.
    pub nosoftlockup: bool,
    /// `nowatchdog`.
    pub nowatchdog: bool,
    /// `nmi_watchdog=`.
    pub nmi_watchdog: Option<String>,
    /// `tsc=`.
    pub tsc: Option<String>,
    /// `intel_pstate=`.
    pub intel_pstate: Option<String>,
    /// `idle=`.
    pub idle: Option<String>,
    /// `processor.max_cstate=`.
    pub processor_max_cstate: Option<String>,
    /// `intel_idle.max_cstate=`.
    pub intel_idle_max_cstate: Option<String>,
    /// `nohz=`.
    pub nohz: Option<String>,
    /// Parameters that failed to parse, with why (the kernel ignores or warns on these).
    pub errors: Vec<String>,
}

impl BootParams {
    /// The value of a parameter, if given (last one wins, as in the kernel).
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.all
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Whether a parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// CPUs removed from scheduler domains at boot (`isolcpus=` with the `domain` flag).
    pub fn domain_isolated(&self) -> CpuSet {
        match &self.isolcpus {
            Some(i) if i.domain => i.cpus.clone(),
            _ => CpuSet::new(),
        }
    }
}

/// Split a command line into parameters the way the kernel does: blanks separate,
/// double quotes group (and are removed), `--` ends the kernel's part.
fn split(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = cmdline.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
            } else if c.is_whitespace() && !quoted {
                break;
            } else {
                word.push(c);
            }
            chars.next();
        }
        if word == "--" {
            break;
        }
        match word.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((word, None)),
        }
    }
    out
}

/// Parse `/proc/cmdline`. `last_cpu` (the highest possible CPU) resolves `N` and `all` in
/// CPU lists when known.
pub fn parse(cmdline: &str, last_cpu: Option<u32>) -> BootParams {
    let all = split(cmdline);
    let mut p = BootParams::default();
    let list = |v: &str| -> Result<CpuSet, CpuListError> {
        match last_cpu {
            Some(l) => CpuSet::parse_list_with_last(v, l),
            None => CpuSet::parse_list(v),
        }
    };
    for (name, value) in &all {
        let v = value.as_deref();
        let text = || v.map(str::to_string);
        match name.as_str() {
            "nohz_full" => match list(v.unwrap_or("")) {
                Ok(s) => p.nohz_full = Some(s),
                Err(e) => p.errors.push(format!("nohz_full: {e}")),
            },
            "isolcpus" => match parse_isolcpus(v.unwrap_or(""), &list) {
                Ok(i) => p.isolcpus = Some(i),
                Err(e) => p.errors.push(format!("isolcpus: {e}")),
            },
            "rcu_nocbs" => match v {
                None => p.rcu_nocbs = Some(CpuSet::new()),
                Some(v) => match list(v) {
                    Ok(s) => p.rcu_nocbs = Some(s),
                    Err(e) => p.errors.push(format!("rcu_nocbs: {e}")),
                },
            },
            "rcu_nocb_poll" => p.rcu_nocb_poll = true,
            "irqaffinity" => match list(v.unwrap_or("")) {
                Ok(s) => p.irqaffinity = Some(s),
                Err(e) => p.errors.push(format!("irqaffinity: {e}")),
            },
            "skew_tick" => p.skew_tick = text(),
            "nosoftlockup" => p.nosoftlockup = true,
            "nowatchdog" => p.nowatchdog = true,
            "nmi_watchdog" => p.nmi_watchdog = text(),
            "tsc" => p.tsc = text(),
            "intel_pstate" => p.intel_pstate = text(),
            "idle" => p.idle = text(),
            "processor.max_cstate" => p.processor_max_cstate = text(),
            "intel_idle.max_cstate" => p.intel_idle_max_cstate = text(),
            "nohz" => p.nohz = text(),
            _ => {}
        }
    }
    p.all = all;
    p
}

/// `isolcpus=[flag,]...list`: leading words that are flags, then the CPU list (which has
/// commas of its own).
fn parse_isolcpus(
    value: &str,
    list: &dyn Fn(&str) -> Result<CpuSet, CpuListError>,
) -> Result<IsolCpus, CpuListError> {
    let mut rest = value;
    let (mut nohz, mut domain, mut managed_irq, mut any_flag) = (false, false, false, false);
    loop {
        let (word, after) = match rest.split_once(',') {
            Some((w, a)) => (w, a),
            None => (rest, ""),
        };
        match word {
            "nohz" => nohz = true,
            "domain" => domain = true,
            "managed_irq" => managed_irq = true,
            _ => break,
        }
        any_flag = true;
        rest = after;
    }
    if !any_flag {
        domain = true;
    }
    Ok(IsolCpus {
        cpus: list(rest)?,
        nohz,
        domain,
        managed_irq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tuned_command_line() {
        let p = parse(
            "BOOT_IMAGE=/vmlinuz root=UUID=1 ro nohz_full=2-7 isolcpus=nohz,domain,managed_irq,2-7 \
             rcu_nocbs=2-7 rcu_nocb_poll irqaffinity=0-1 skew_tick=1 nosoftlockup nowatchdog \
             tsc=reliable intel_pstate=disable idle=poll processor.max_cstate=1 quiet\n",
            Some(7),
        );
        assert_eq!(p.nohz_full.as_ref().unwrap().to_list(), "2-7");
        let i = p.isolcpus.as_ref().unwrap();
        assert!(i.nohz && i.domain && i.managed_irq);
        assert_eq!(i.cpus.to_list(), "2-7");
        assert_eq!(p.rcu_nocbs.as_ref().unwrap().to_list(), "2-7");
        assert!(p.rcu_nocb_poll && p.nosoftlockup && p.nowatchdog);
        assert_eq!(p.irqaffinity.as_ref().unwrap().to_list(), "0-1");
        assert_eq!(p.skew_tick.as_deref(), Some("1"));
        assert_eq!(p.tsc.as_deref(), Some("reliable"));
        assert_eq!(p.intel_pstate.as_deref(), Some("disable"));
        assert_eq!(p.idle.as_deref(), Some("poll"));
        assert_eq!(p.processor_max_cstate.as_deref(), Some("1"));
        assert!(p.errors.is_empty());
        assert_eq!(p.domain_isolated().to_list(), "2-7");
    }

    #[test]
    fn isolcpus_without_flags_means_domain() {
        let p = parse("isolcpus=1,3-4", None);
        let i = p.isolcpus.unwrap();
        assert!(i.domain && !i.nohz && !i.managed_irq);
        assert_eq!(i.cpus.to_list(), "1,3-4");
        let p = parse("isolcpus=nohz,3", None);
        assert!(!p.isolcpus.unwrap().domain);
    }

    #[test]
    fn stops_at_double_dash_and_honours_quotes() {
        let p = parse(
            "console=ttyS0 dyndbg=\"file a.c +p\" quiet -- nohz_full=1 --firecracker-init",
            None,
        );
        assert!(p.nohz_full.is_none());
        assert_eq!(p.get("dyndbg"), Some(Some("file a.c +p")));
        assert!(p.has("quiet"));
    }

    #[test]
    fn resolves_n_and_reports_errors() {
        let p = parse("nohz_full=1-N rcu_nocbs=all isolcpus=domain,x", Some(3));
        assert_eq!(p.nohz_full.unwrap().to_list(), "1-3");
        assert_eq!(p.rcu_nocbs.unwrap().to_list(), "0-3");
        assert!(p.isolcpus.is_none());
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].contains("isolcpus"));
    }

    #[test]
    fn rcu_nocbs_without_list() {
        let p = parse("rcu_nocbs", None);
        assert_eq!(p.rcu_nocbs, Some(CpuSet::new()));
    }
}
