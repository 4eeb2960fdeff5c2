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

impl Ctx<'_> {
    /// What isol cannot see from where it runs: a container's masks, read-only mounts and
    /// PID namespace.
    pub(super) fn view(&self) -> Finding {
        let v = match &self.m.view {
            Fact::Known(v) => v,
            f => return self.unknown("the mount table", f),
        };
        let pids = match v.host_pids {
            Some(true) => "kernel threads visible",
            Some(false) => "no kernel thread visible",
            None => "tasks unreadable",
        };
        let e = vec![
            ev(
                "/proc/self/mounts",
                if v.masked.is_empty() && v.read_only.is_empty() {
                    "no masked or read-only /proc and /sys paths".to_string()
                } else {
                    let mut parts = Vec::new();
                    if !v.masked.is_empty() {
                        parts.push(format!("masked: {}", v.masked.join(", ")));
                    }
                    if !v.read_only.is_empty() {
                        parts.push(format!("read-only: {}", v.read_only.join(", ")));
                    }
                    parts.join("; ")
                },
            ),
            ev("/proc", pids),
        ];
        let read_only = if v.read_only.is_empty() {
            String::new()
        } else {
            format!(
                "; {} read-only: `isol apply` cannot change them from here",
                v.read_only.join(", ")
            )
        };
        if !v.hides_anything() {
            let summary = if v.is_contained() {
                format!("isol runs inside a container and sees the whole machine{read_only}")
            } else {
                "isol sees the whole machine: the host's tasks, /proc and /sys unmasked".into()
            };
            return self.finding(Severity::Ok, summary, e, None);
        }
        self.finding(
            Severity::Warn,
            format!(
                "isol runs inside a container and cannot see all of the machine: {}{read_only}",
                v.losses().join("; ")
            ),
            e,
            fix(
                FixKind::Platform,
                "run isol on the host, or give its container the host's PID namespace \
                 (--pid=host; Kubernetes hostPID: true), /sys/kernel/tracing and \
                 /sys/kernel/debug bound from the host, and an unmasked /proc (docker \
                 --security-opt systempaths=unconfined; Kubernetes securityContext.procMount: \
                 Unmasked); packaging/kubernetes/ has a DaemonSet that does",
            ),
        )
    }
}

/// The fix for a missing config option.
fn rebuild(option: &str) -> Option<Fix> {
    fix(
        FixKind::Kernel,
        format!("boot a kernel built with CONFIG_{option}=y (Debian's linux-image-cloud-amd64 and -rt kernels have it)"),
    )
}
