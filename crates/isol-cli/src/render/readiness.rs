//! `isol check` as metrics, next to the watch's: a thread on a housekeeping CPU re-checks
//! readiness every `--check-interval`, and at once when an apply or restore changes the
//! journal; the gauges it sets are served with the rest (docs/metrics.md).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use isol::check::{self, Target};
use isol::fleet::readiness;
use isol::kernel::KernelModel;
use isol::{CpuSet, SysRoot};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
    area: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    kernel: String,
    nohz_full: String,
    isolated: String,
    target: String,
    applied: String,
}

/// The readiness gauges.
#[derive(Clone, Default)]
pub struct Gauges {
    severity: Family<CheckLabels, Gauge>,
    verdict: Gauge,
    last_run: Gauge<f64, AtomicU64>,
    duration: Gauge<f64, AtomicU64>,
    info: Family<InfoLabels, Gauge>,
    armed: Gauge,
    checks: Counter,
}

impl Gauges {
    /// Register them in `registry`.
    pub fn register(registry: &mut Registry) -> Gauges {
        let g = Gauges::default();
        registry.register(
            "isol_check_severity",
            "Readiness of each isol check: 0 ok, 1 unknown, 2 warn, 3 fail",
            g.severity.clone(),
        );
        registry.register(
            "isol_check_verdict",
            "isol check's verdict: 0 ready, 1 warnings or unknowns, 2 failures",
            g.verdict.clone(),
        );
        registry.register(
            "isol_check_last_run_timestamp_seconds",
            "When readiness was last checked (Unix time)",
            g.last_run.clone(),
        );
        registry.register(
            "isol_check_duration_seconds",
            "How long the last readiness check took",
            g.duration.clone(),
        );
        registry.register(
            "isol_check_runs",
            "Readiness checks run since the exporter started",
            g.checks.clone(),
        );
        registry.register(
            "isol_node_info",
            "The machine as isol sees it: kernel, nohz_full and isolated CPUs, the CPUs \
             judged, whether an isol apply is in place",
            g.info.clone(),
        );
        registry.register(
            "isol_tracing_armed",
            "1 while isol's armed trace instance (watch --keep-armed) is in place",
            g.armed.clone(),
        );
        g
    }

    /// Check `cpus` on `root` once and set every gauge; `probed` (the findings of a probe
    /// made at start) are served with the checks'.
    pub fn check(
        &self,
        root: &SysRoot,
        cpus: &CpuSet,
        probed: &[check::Finding],
    ) -> Result<(), String> {
        let began = Instant::now();
        let model = KernelModel::load(root);
        let target = Target::choose(&model, Some(cpus)).map_err(|e| e.to_string())?;
        let mut report = check::run(&model, &target);
        report.add(probed.to_vec());
        let r = readiness::of(&model, &report);
        for c in &r.checks {
            self.severity
                .get_or_create(&CheckLabels {
                    check: c.id.into(),
                    area: c.area.into(),
                })
                .set(c.value);
        }
        self.verdict.set(r.verdict);
        // One info series: the machine's current description.
        let info = InfoLabels {
            kernel: r.info.kernel,
            nohz_full: r.info.nohz_full,
            isolated: r.info.isolated,
            target: r.info.target,
            applied: r.info.applied,
        };
        if self.info.get(&info).is_none() {
            self.info.clear();
        }
        self.info.get_or_create(&info).set(1);
        let armed = model
            .tracing
            .as_ref()
            .is_some_and(|all| all.iter().any(|t| t.name == isol::tracefs::ARMED));
        self.armed.set(i64::from(armed));
        self.duration.set(began.elapsed().as_secs_f64());
        self.last_run.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        self.checks.inc();
        Ok(())
    }

    /// Check now, then every `every` (never again when zero) and whenever the apply journal
    /// changes, from a thread of its own (on the caller's CPUs: the housekeeping ones).
    pub fn keep_checking(
        &self,
        root: SysRoot,
        cpus: CpuSet,
        every: Duration,
        probed: Vec<check::Finding>,
    ) -> std::io::Result<()> {
        let g = self.clone();
        std::thread::Builder::new()
            .name("isol-check".into())
            .spawn(move || loop {
                if let Err(e) = g.check(&root, &cpus, &probed) {
                    crate::say!("isol: readiness check: {e}");
                }
                let journal = journal_state();
                let since = Instant::now();
                loop {
                    std::thread::sleep(JOURNAL_POLL);
                    if journal_state() != journal {
                        break;
                    }
                    if !every.is_zero() && since.elapsed() >= every {
                        break;
                    }
                }
            })
            .map(|_| ())
    }
}

/// How often the apply journal is looked at.
const JOURNAL_POLL: Duration = Duration::from_secs(1);

/// The apply journal's identity and size: an apply, a restore or a run changes it.
fn journal_state() -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("{}/journal", isol::apply::DEFAULT_STATE_DIR);
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}
