//! A machine's readiness as metric series: one value per check, and what the machine is
//! (kernel, nohz_full and isolated CPUs, an apply in place). The numbers are what an
//! exporter serves; docs/metrics.md documents them.

use isol_machine::check::{Report, Severity};
use isol_model::cpus::CpuSet;
use isol_model::kernel::{Fact, KernelModel};

/// A severity as a number, worst highest: ok 0, unknown 1, warn 2, fail 3 (the order of
/// [`Severity`]).
pub fn severity_value(s: Severity) -> i64 {
    match s {
        Severity::Ok => 0,
        Severity::Unknown => 1,
        Severity::Warn => 2,
        Severity::Fail => 3,
    }
}

/// One check's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// Its id (`boot.nohz_full`).
    pub id: &'static str,
    /// Its area (`boot`).
    pub area: &'static str,
    /// [`severity_value`] of its finding.
    pub value: i64,
}

/// What the machine is, as an info series' labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Kernel release (`unknown` when unreadable).
    pub kernel: String,
    /// The kernel's nohz_full CPUs (`none`).
    pub nohz_full: String,
    /// The kernel's domain-isolated CPUs (`none`).
    pub isolated: String,
    /// The CPUs judged.
    pub target: String,
    /// Whether an `isol apply` journal is in place (`true`/`false`).
    pub applied: String,
}

/// A readiness report as series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every check.
    pub checks: Vec<CheckState>,
    /// The machine.
    pub info: Info,
    /// The report's exit code: 0 ready, 1 warnings or unknowns, 2 failures.
    pub verdict: i64,
}

fn list(c: &CpuSet) -> String {
    if c.is_empty() {
        "none".into()
    } else {
        c.to_list()
    }
}

/// The series of `report`, checked on `model`.
pub fn of(model: &KernelModel, report: &Report) -> Readiness {
    Readiness {
        checks: report
            .findings
            .iter()
            .map(|f| CheckState {
                id: f.id,
                area: f.area.as_str(),
                value: severity_value(f.severity),
            })
            .collect(),
        info: Info {
            kernel: report.kernel.clone().unwrap_or_else(|| "unknown".into()),
            nohz_full: list(&model.nohz_full()),
            isolated: list(&model.domain_isolated()),
            target: list(&report.target.cpus),
            applied: matches!(model.applied, Fact::Known(_)).to_string(),
        },
        verdict: i64::from(report.exit_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_machine::check::{self, Target};
    use isol_model::SysRoot;

    #[test]
    fn the_lab_fixture_as_series() {
        let root = SysRoot::at(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lab-6.12"),
        );
        let model = KernelModel::load(&root);
        let target = Target::choose(&model, None).unwrap();
        let report = check::run(&model, &target);
        let r = of(&model, &report);
        assert_eq!(r.checks.len(), report.findings.len());
        let nohz = r.checks.iter().find(|c| c.id == "boot.nohz_full").unwrap();
        assert_eq!((nohz.area, nohz.value), ("boot", 0));
        // The lab fixture warns (writeback, vmstat, RT throttling): 2, exit code 1.
        assert!(r.checks.iter().any(|c| c.value == 2));
        assert_eq!(r.verdict, 1);
        assert_eq!(r.info.nohz_full, "1");
        assert_eq!(r.info.target, "1");
        assert_eq!(r.info.applied, "false");
        assert!(r.info.kernel.starts_with("6.12"), "{:?}", r.info);
    }

    #[test]
    fn severities_are_ordered_worst_highest() {
        let all = [
            Severity::Ok,
            Severity::Unknown,
            Severity::Warn,
            Severity::Fail,
        ];
        let v: Vec<i64> = all.iter().map(|s| severity_value(*s)).collect();
        assert_eq!(v, [0, 1, 2, 3]);
    }
}
