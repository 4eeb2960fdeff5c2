//! `/proc/timer_list`: per-CPU hrtimers, tick state and tick devices (versions v0.9-v0.11).
//!
//! The file is root-only and masked (empty) in default container runtimes; callers get a
//! [`crate::SysError`] for those cases before parsing.

use std::collections::BTreeMap;

use serde::Serialize;

/// `KTIME_MAX`: what `next_event`/`expires_next` read when nothing is armed.
pub const KTIME_MAX: i64 = i64::MAX;

/// One armed hrtimer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArmedTimer {
    /// The clock base index (0 = MONOTONIC, 1 = REALTIME, 2 = BOOTTIME, 3 = TAI; +4 = soft).
    pub clock: u32,
    /// The callback function (`tick_nohz_handler`, `hrtimer_wakeup`, `watchdog_timer_fn`).
    pub function: String,
    /// Soft expiry, in ns of the clock.
    pub expires_ns: Option<i64>,
}

/// Timer state of one CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuTimers {
    /// The CPU.
    pub cpu: u32,
    /// Its armed hrtimers.
    pub timers: Vec<ArmedTimer>,
    /// `.expires_next`: when the CPU's hrtimer hardware is next programmed to fire.
    pub expires_next: Option<i64>,
    /// `.tick_stopped`.
    pub tick_stopped: Option<bool>,
    /// `.nohz` / `.highres` modes.
    pub nohz: Option<bool>,
    /// Whether high-resolution mode is on.
    pub highres: Option<bool>,
    /// `.next_timer`: the next timer-wheel event.
    pub next_timer: Option<i64>,
    /// Every `.key: value` field of the CPU section, raw.
    #[serde(skip)]
    pub fields: BTreeMap<String, String>,
}

/// A tick (clock event) device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickDevice {
    /// The CPU, or `None` for the broadcast device.
    pub cpu: Option<u32>,
    /// `Clock Event Device:` name (`lapic-deadline`, `<NULL>`).
    pub device: String,
    /// `next_event`: when the device fires next; [`KTIME_MAX`] when nothing is programmed.
    pub next_event: Option<i64>,
    /// `event_handler`.
    pub event_handler: Option<String>,
}

/// A parsed `/proc/timer_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TimerList {
    /// `v0.10` and the like.
    pub version: String,
    /// `now at N nsecs`.
    pub now_ns: Option<i64>,
    /// Per CPU.
    pub cpus: BTreeMap<u32, CpuTimers>,
    /// The tick devices.
    pub tick_devices: Vec<TickDevice>,
}

impl TimerList {
    /// The tick device of a CPU.
    pub fn tick_device(&self, cpu: u32) -> Option<&TickDevice> {
        self.tick_devices.iter().find(|d| d.cpu == Some(cpu))
    }

    /// Whether nothing at all is armed on the CPU's tick device (`next_event == KTIME_MAX`),
    /// the stronger condition that task isolation requires (the flag alone is not enough).
    pub fn tick_quiet(&self, cpu: u32) -> Option<bool> {
        self.tick_device(cpu)?.next_event.map(|n| n == KTIME_MAX)
    }
}

/// The text is not a timer list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a /proc/timer_list: {0}")]
pub struct TimerListError(pub String);

fn nsecs(value: &str) -> Option<i64> {
    value.trim().trim_end_matches("nsecs").trim().parse().ok()
}

/// Parse `/proc/timer_list`.
pub fn parse(text: &str) -> Result<TimerList, TimerListError> {
    let mut tl = TimerList::default();
    let mut cpu: Option<u32> = None;
    let mut clock = 0u32;
    let mut in_device = false;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(v) = line.strip_prefix("Timer List Version:") {
            tl.version = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("now at ") {
            tl.now_ns = nsecs(v);
        } else if let Some(v) = line.strip_prefix("cpu:") {
            let n: u32 = v
                .trim()
                .parse()
                .map_err(|_| TimerListError(format!("bad cpu line {line:?}")))?;
            cpu = Some(n);
            in_device = false;
            tl.cpus.insert(
                n,
                CpuTimers {
                    cpu: n,
                    ..Default::default()
                },
            );
        } else if let Some(v) = line.strip_prefix("clock ") {
            clock = v.trim_end_matches(':').parse().unwrap_or(clock);
        } else if line.starts_with("Tick Device:") {
            in_device = true;
            cpu = None;
            tl.tick_devices.push(TickDevice::default());
        } else if in_device {
            let dev = tl.tick_devices.last_mut().expect("pushed on Tick Device");
            if let Some(v) = line.strip_prefix("Per CPU device:") {
                dev.cpu = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("Clock Event Device:") {
                dev.device = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("next_event:") {
                dev.next_event = nsecs(v);
            } else if let Some(v) = line.strip_prefix("event_handler:") {
                dev.event_handler = Some(v.trim().to_string());
            }
        } else if let Some(c) = cpu {
            let entry = tl.cpus.get_mut(&c).expect("inserted on cpu line");
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim();
                if let Some(exp) = rest.strip_prefix("expires at ") {
                    if let Some(t) = entry.timers.last_mut() {
                        t.expires_ns = exp.split('-').next().and_then(|s| s.trim().parse().ok());
                    }
                } else if let Some((_, fields)) = rest.split_once(':') {
                    // "<ptr>, function, S:01[, start_site, comm/pid]"
                    let function = fields.split(',').nth(1).unwrap_or("").trim().to_string();
                    entry.timers.push(ArmedTimer {
                        clock,
                        function,
                        expires_ns: None,
                    });
                }
            } else if let Some(rest) = line.strip_prefix('.') {
                if let Some((k, v)) = rest.split_once(':') {
                    let (k, v) = (k.trim(), v.trim());
                    if !matches!(
                        k,
                        "base" | "index" | "resolution" | "offset" | "get_time" | "first"
                    ) {
                        entry.fields.insert(k.to_string(), v.to_string());
                    }
                }
            }
        }
    }
    if tl.version.is_empty() && tl.cpus.is_empty() {
        return Err(TimerListError("no version line and no cpu sections".into()));
    }
    for c in tl.cpus.values_mut() {
        let flag = |k: &str| c.fields.get(k).map(|v| v.trim() == "1");
        c.expires_next = c.fields.get("expires_next").and_then(|v| nsecs(v));
        c.tick_stopped = flag("tick_stopped");
        c.nohz = flag("nohz");
        c.highres = flag("highres");
        c.next_timer = c.fields.get("next_timer").and_then(|v| nsecs(v));
    }
    Ok(tl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V10: &str = "Timer List Version: v0.10
HRTIMER_MAX_CLOCK_BASES: 8
now at 67637769973 nsecs

cpu: 0
 clock 0:
  .base:       0000000077c39814
  .index:      0
  .resolution: 1 nsecs
  .offset:     0 nsecs
active timers:
 #0: <00000000aa7f6368>, tick_nohz_handler, S:01
 # expires at 67644000000-67644000000 nsecs [in 2652061 to 2652061 nsecs]
 #1: <000000007143ff66>, watchdog_timer_fn, S:01
 # expires at 68207680734-68207680734 nsecs [in 569910761 to 569910761 nsecs]
 clock 1:
  .base:       00000000c94bd5c0
active timers:
  .expires_next   : 67644000000 nsecs
  .nohz           : 1
  .highres        : 1
  .tick_stopped   : 0
  .next_timer     : 9223372036854775807
jiffies: 4294909456

cpu: 1
 clock 0:
active timers:
 clock 3:
active timers:
 #0: <00000000aa7f6369>, hrtimer_wakeup, S:01
 # expires at 100-200 nsecs [in 2 to 3 nsecs]
  .expires_next   : 9223372036854775807 nsecs
  .tick_stopped   : 1
jiffies: 4294909456

Tick Device: mode:     1
Broadcast device
Clock Event Device: <NULL>
tick_broadcast_mask: 0

Tick Device: mode:     1
Per CPU device: 0
Clock Event Device: lapic-deadline
 next_event:     67644000000 nsecs
 event_handler:  hrtimer_interrupt

Tick Device: mode:     1
Per CPU device: 1
Clock Event Device: lapic-deadline
 next_event:     9223372036854775807 nsecs
 event_handler:  hrtimer_interrupt
";

    #[test]
    fn parses_v010() {
        let tl = parse(V10).unwrap();
        assert_eq!(tl.version, "v0.10");
        assert_eq!(tl.now_ns, Some(67637769973));
        let c0 = &tl.cpus[&0];
        assert_eq!(c0.timers.len(), 2);
        assert_eq!(c0.timers[0].function, "tick_nohz_handler");
        assert_eq!(c0.timers[1].expires_ns, Some(68207680734));
        assert_eq!(c0.tick_stopped, Some(false));
        assert_eq!(c0.expires_next, Some(67644000000));
        assert_eq!(c0.next_timer, Some(KTIME_MAX));
        let c1 = &tl.cpus[&1];
        assert_eq!(c1.timers[0].clock, 3);
        assert_eq!(c1.tick_stopped, Some(true));
        assert_eq!(tl.tick_devices.len(), 3);
        assert_eq!(tl.tick_devices[0].cpu, None);
        assert_eq!(tl.tick_device(0).unwrap().device, "lapic-deadline");
        assert_eq!(tl.tick_quiet(0), Some(false));
        assert_eq!(tl.tick_quiet(1), Some(true));
        assert_eq!(tl.tick_quiet(7), None);
    }

    #[test]
    fn parses_v09_timer_entries_with_start_site() {
        let tl = parse(
            "Timer List Version: v0.9\ncpu: 0\n clock 0:\nactive timers:\n #0: <ffff88003fc0e4a0>, tick_sched_timer, S:01, hrtimer_start_range_ns, swapper/0/0\n # expires at 5-5 nsecs [in 1 to 1 nsecs]\n",
        )
        .unwrap();
        assert_eq!(tl.cpus[&0].timers[0].function, "tick_sched_timer");
    }

    #[test]
    fn rejects_other_text() {
        assert!(parse("").is_err());
        assert!(parse("hello world\n").is_err());
        assert!(parse("Timer List Version: v0.10\ncpu: x\n").is_err());
    }
}
