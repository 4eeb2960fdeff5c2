//! What the live commands (watch, noise) share: the CPUs they work on, durations, the
//! signals that stop them, and how they print times.

pub mod signals;

use std::time::Duration;

use isol::check::Target;
use isol::kernel::KernelModel;
use isol::CpuSet;

use crate::Failure;

pub fn parse_cpus(text: &str, model: &KernelModel) -> Result<CpuSet, Failure> {
    let parsed = match model.cpus.last_possible() {
        Some(last) => CpuSet::parse_list_with_last(text, last),
        None => CpuSet::parse_list(text),
    };
    parsed.map_err(|e| Failure::usage(format!("--cpus: {e}")))
}

/// The CPUs a command works on: `--cpus` checked against this kernel, or the CPUs
/// kubelet gave `--pod`, else the kernel's isolated CPUs or a suggestion, as `isol check`
/// chooses them.
pub fn choose_target(
    model: &KernelModel,
    cpus: Option<&str>,
    pod: Option<&str>,
) -> Result<Target, Failure> {
    if let Some(pod) = pod {
        return Target::of_pod(model, pod).map_err(|e| Failure::usage(e.to_string()));
    }
    let given = cpus.map(|text| parse_cpus(text, model)).transpose()?;
    Target::choose(model, given.as_ref()).map_err(|e| Failure::usage(e.to_string()))
}

/// A duration as people write it: `10` (seconds), `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 10s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "ns" => v / 1e9,
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?}: the duration must be more than zero"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "{s:?}: longer than {} days; leave the duration out to run until Ctrl-C",
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// The longest duration a command accepts.
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// The exit status of a command stopped by a signal before it began.
pub fn stopped_code() -> u8 {
    128 + signals::caught().unwrap_or(libc::SIGINT) as u8
}

/// Human durations: `850ns`, `12.3us`, `4.56ms`, `1.23s`.
pub use isol::units::fmt_ns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("18446744073709551615")
            .unwrap_err()
            .contains("longer than"));
        assert!(parse_duration("1e300h").is_err());
        assert!(parse_duration("inf").is_err());
    }
}
