use super::*;

impl Ctx<'_> {
    pub(super) fn kernel_config(&self, option: &str, bad: Severity, what: &str) -> Finding {
        let Some(cfg) = self.m.config.as_ref() else {
            return self.unknown(&format!("CONFIG_{option}"), &self.m.config);
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
            self.finding(bad,
                format!("kernel built without CONFIG_{option}: it cannot {what}"),
                evidence,
                fix(FixKind::Kernel, format!("boot a kernel built with CONFIG_{option}=y (Debian's linux-image-cloud-amd64 and -rt kernels have it)")),
            )
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
