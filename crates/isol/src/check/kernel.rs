use super::*;

impl Ctx<'_> {
    pub(super) fn kernel_config(&self, option: &str, bad: Severity, what: &str) -> Finding {
        let Some(cfg) = self.m.config.as_ref() else {
            return self.config_from_runtime(option, bad, what);
        };
        let value = cfg.value(option).unwrap_or("not mentioned").to_string();
        let evidence = vec![ev(&cfg.source, format!("CONFIG_{option}={value}"))];
        if cfg.enabled(option) {
            self.finding(
                Severity::Ok,
                format!("kernel built with CONFIG_{option}"),
                evidence,
                None,
            )
        } else {
            self.finding(
                bad,
                format!("kernel built without CONFIG_{option}: it cannot {what}"),
                evidence,
                rebuild(option),
            )
        }
    }

    /// Without a readable config, what the running kernel shows decides where it can:
    /// `cpu/nohz_full` exists only with `CONFIG_NO_HZ_FULL` (which selects
    /// `CONFIG_CPU_ISOLATION`); a non-empty `cpu/isolated` needs `CONFIG_CPU_ISOLATION`;
    /// `rcuo*` kthreads are RCU callback offloading at work.
    fn config_from_runtime(&self, option: &str, bad: Severity, what: &str) -> Finding {
        const NOHZ: &str = "/sys/devices/system/cpu/nohz_full";
        const ISOLATED: &str = "/sys/devices/system/cpu/isolated";
        let (file, why) = self.m.config.unknown().unwrap_or(("", &Unknown::Error));
        let config = ev(file, why.to_string());
        let has_nohz = match &self.m.cpus.nohz_full {
            Fact::Known(s) => Some((true, cpus(s))),
            f if f.is_absent() => Some((false, "absent".to_string())),
            _ => None,
        };
        let rcuo = self.m.threads.as_ref().map(|t| {
            t.iter()
                .filter(|t| t.kernel_thread && t.comm.starts_with("rcuo"))
                .count()
        });
        let isolated = self.m.cpus.isolated.as_ref().filter(|s| !s.is_empty());
        let decided: Option<(bool, Evidence)> = match option {
            "NO_HZ_FULL" => has_nohz.map(|(yes, v)| (yes, ev(NOHZ, v))),
            "CPU_ISOLATION" => match (has_nohz, isolated) {
                (Some((true, v)), _) => Some((true, ev(NOHZ, v))),
                (_, Some(iso)) => Some((true, ev(ISOLATED, cpus(iso)))),
                _ => None,
            },
            "RCU_NOCB_CPU" => rcuo.filter(|&n| n > 0).map(|n| {
                (
                    true,
                    ev("/proc/*/task/*/comm", format!("{n} rcuo* kthreads")),
                )
            }),
            _ => None,
        };
        match decided {
            Some((true, e)) => self.finding(
                Severity::Ok,
                format!("kernel built with CONFIG_{option} (the config is unreadable; decided by {})", e.file),
                vec![config, e],
                None,
            ),
            Some((false, e)) => self.finding(
                bad,
                format!("kernel built without CONFIG_{option}: it cannot {what} (the config is unreadable; decided by {} being absent)", e.file),
                vec![config, e],
                rebuild(option),
            ),
            None => self.unknown(&format!("CONFIG_{option}"), &self.m.config),
        }
    }

    pub(super) fn tracing(&self) -> Finding {
        let tp = self
            .m
            .config
            .as_ref()
            .map(|c| c.enabled("TRACEPOINTS") || c.enabled("FTRACE"));
        let mut e = vec![ev(
            "/proc/self/mounts",
            self.m
                .tracefs
                .clone()
                .map_or("tracefs not mounted".into(), |p| format!("tracefs at {p}")),
        )];
        if let Some(c) = self.m.config.as_ref() {
            let on: Vec<String> = c
                .tracing()
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| n.to_string())
                .collect();
            e.push(ev(
                &c.source,
                format!(
                    "enabled: {}",
                    if on.is_empty() {
                        "none".into()
                    } else {
                        on.join(" ")
                    }
                ),
            ));
        }
        match (tp, &self.m.tracefs) {
            (Some(false), _) => self.finding(
                Severity::Warn,
                "kernel built without tracepoints: interruptions cannot be attributed",
                e,
                fix(
                    FixKind::Kernel,
                    "boot a kernel with CONFIG_FTRACE=y and CONFIG_TRACEPOINTS=y",
                ),
            ),
            (_, None) => self.finding(
                Severity::Warn,
                "tracefs is not mounted: interruptions cannot be attributed",
                e,
                fix(
                    FixKind::Runtime,
                    "mount -t tracefs nodev /sys/kernel/tracing",
                ),
            ),
            (_, Some(_)) => self.finding(
                Severity::Ok,
                "tracefs is mounted: interruptions can be attributed",
                e,
                None,
            ),
        }
    }
}

/// The fix for a missing config option.
fn rebuild(option: &str) -> Option<Fix> {
    fix(
        FixKind::Kernel,
        format!("boot a kernel built with CONFIG_{option}=y (Debian's linux-image-cloud-amd64 and -rt kernels have it)"),
    )
}
