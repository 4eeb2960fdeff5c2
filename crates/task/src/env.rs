//! The configuration `isol run` hands to the program it starts, through the environment.
//!
//! | variable | value | meaning |
//! |---|---|---|
//! | `ISOL_CPU` | a CPU number | the CPU to isolate on (the program is already pinned there) |
//! | `ISOL_FIFO` | 1..=99 | run the isolated thread SCHED_FIFO at this priority |
//! | `ISOL_STRICT` | `kill`, `report`, or a signal (`SIGUSR1`, `USR1`, `10`, `RTMIN+2`) | strict mode |
//! | `ISOL_REPORT_FD` | a file descriptor | where strict-mode violations are also written, one line each |
//! | `ISOL_ALLOW_TICKING` | `1` | enter even where the tick cannot stop (`isol run --allow-ticking`) |
//!
//! Rust programs read it with [`Isolation::from_env`](super::Isolation::from_env); C programs
//! get it from `isol_config_init`. A program run without these variables gets the
//! defaults, as if it were started by hand.

use super::{IsolError, Strict};

/// `ISOL_CPU`.
pub const ENV_CPU: &str = "ISOL_CPU";
/// `ISOL_FIFO`.
pub const ENV_FIFO: &str = "ISOL_FIFO";
/// `ISOL_STRICT`.
pub const ENV_STRICT: &str = "ISOL_STRICT";
/// `ISOL_REPORT_FD`.
pub const ENV_REPORT_FD: &str = "ISOL_REPORT_FD";
/// `ISOL_ALLOW_TICKING`.
pub const ENV_ALLOW_TICKING: &str = "ISOL_ALLOW_TICKING";

/// What the environment asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// `ISOL_CPU`.
    pub cpu: Option<u32>,
    /// `ISOL_FIFO`.
    pub fifo: Option<i32>,
    /// `ISOL_STRICT`.
    pub strict: Option<Strict>,
    /// `ISOL_REPORT_FD`.
    pub report_fd: Option<i32>,
    /// `ISOL_ALLOW_TICKING=1`.
    pub allow_ticking: bool,
}

impl RunConfig {
    /// Read the process environment. A variable that is set but malformed is an error
    /// naming it (a typo must not silently run the program unisolated).
    pub fn from_env() -> Result<RunConfig, IsolError> {
        let c = RunConfig::parse(|k| std::env::var(k).ok())?;
        if let Some(fd) = c.report_fd {
            report_fd_usable(fd)?;
        }
        Ok(c)
    }

    /// Read the variables from `get` (the environment, or a test's map).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<RunConfig, IsolError> {
        let bad = |var: &str, value: &str, want: &str| {
            IsolError::Config(format!("{var}={value:?} is not {want}"))
        };
        let mut c = RunConfig::default();
        if let Some(v) = get(ENV_CPU) {
            c.cpu = Some(
                v.trim()
                    .parse()
                    .map_err(|_| bad(ENV_CPU, &v, "a CPU number"))?,
            );
        }
        if let Some(v) = get(ENV_FIFO) {
            let p: i32 = v
                .trim()
                .parse()
                .map_err(|_| bad(ENV_FIFO, &v, "a priority 1..=99"))?;
            if !(1..=99).contains(&p) {
                return Err(bad(ENV_FIFO, &v, "a priority 1..=99"));
            }
            c.fifo = Some(p);
        }
        if let Some(v) = get(ENV_STRICT) {
            c.strict = Some(parse_strict(&v).map_err(|want| bad(ENV_STRICT, &v, &want))?);
        }
        if let Some(v) = get(ENV_REPORT_FD) {
            let fd: i32 = v
                .trim()
                .parse()
                .map_err(|_| bad(ENV_REPORT_FD, &v, "a file descriptor"))?;
            if fd < 0 {
                return Err(bad(ENV_REPORT_FD, &v, "a file descriptor"));
            }
            c.report_fd = Some(fd);
        }
        if let Some(v) = get(ENV_ALLOW_TICKING) {
            c.allow_ticking = match v.trim() {
                "1" => true,
                "0" | "" => false,
                _ => return Err(bad(ENV_ALLOW_TICKING, &v, "0 or 1")),
            };
        }
        Ok(c)
    }

    /// The variables that hand this configuration to a program.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(c) = self.cpu {
            out.push((ENV_CPU, c.to_string()));
        }
        if let Some(p) = self.fifo {
            out.push((ENV_FIFO, p.to_string()));
        }
        if let Some(s) = self.strict {
            out.push((
                ENV_STRICT,
                match s {
                    Strict::Kill => "kill".into(),
                    Strict::Report => "report".into(),
                    Strict::Signal(n) => n.to_string(),
                },
            ));
        }
        if let Some(fd) = self.report_fd {
            out.push((ENV_REPORT_FD, fd.to_string()));
        }
        if self.allow_ticking {
            out.push((ENV_ALLOW_TICKING, "1".into()));
        }
        out
    }
}

/// `ISOL_REPORT_FD` must name a pipe or a socket: violation lines are written into it from
/// the thread's signal handler, and a descriptor the program opened for something else (a
/// file, a terminal) would be written into by mistake. `isol run` always hands over a pipe.
pub fn report_fd_usable(fd: i32) -> Result<(), IsolError> {
    use std::os::unix::fs::FileTypeExt;
    let bad = |why: String| {
        IsolError::Config(format!(
            "{ENV_REPORT_FD}={fd}: {why}; it must be a pipe or a socket (as `isol run` \
             passes), or unset"
        ))
    };
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map_err(|e| bad(format!("not an open descriptor ({e})")))?;
    let ft = meta.file_type();
    if ft.is_fifo() || ft.is_socket() {
        Ok(())
    } else if ft.is_file() {
        Err(bad("a regular file".into()))
    } else if ft.is_char_device() {
        Err(bad("a terminal or device".into()))
    } else {
        Err(bad("not a pipe or socket".into()))
    }
}

/// `kill`, `report`, or a signal: `SIGUSR1`, `USR1`, `10`, `SIGRTMIN+2`, `RTMIN`. Err: what
/// was expected.
pub fn parse_strict(text: &str) -> Result<Strict, String> {
    let t = text.trim();
    let want = || "expected kill, report, or a signal (SIGUSR1, USR2, 10, RTMIN+2)".to_string();
    match t.to_ascii_lowercase().as_str() {
        "kill" => return Ok(Strict::Kill),
        "report" => return Ok(Strict::Report),
        _ => {}
    }
    let n = signal_number(t).ok_or_else(want)?;
    super::strict::check_signal("strict mode", n).map_err(|e| e.to_string())?;
    Ok(Strict::Signal(n))
}

/// A signal by number or name, with or without `SIG`.
pub fn signal_number(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return Some(n);
    }
    let up = text.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        let n = libc::SIGRTMIN() + off;
        return (n <= libc::SIGRTMAX()).then_some(n);
    }
    const NAMES: [(&str, i32); 16] = [
        ("KILL", libc::SIGKILL),
        ("STOP", libc::SIGSTOP),
        ("SYS", libc::SIGSYS),
        ("TRAP", libc::SIGTRAP),
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ABRT", libc::SIGABRT),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("URG", libc::SIGURG),
        ("IO", libc::SIGIO),
        ("WINCH", libc::SIGWINCH),
    ];
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<RunConfig, IsolError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RunConfig::parse(|k| m.get(k).cloned())
    }

    #[test]
    fn round_trips_and_refuses_malformed_values() {
        let c = RunConfig {
            cpu: Some(3),
            fifo: Some(10),
            strict: Some(Strict::Signal(libc::SIGUSR1)),
            report_fd: Some(7),
            allow_ticking: true,
        };
        let env: Vec<(String, String)> = c
            .to_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let back = RunConfig::parse(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        assert_eq!(back.unwrap(), c);
        assert_eq!(parse(&[]).unwrap(), RunConfig::default());
        assert_eq!(
            parse(&[("ISOL_STRICT", "KILL")]).unwrap().strict,
            Some(Strict::Kill)
        );
        assert_eq!(
            parse(&[("ISOL_STRICT", "SIGUSR2")]).unwrap().strict,
            Some(Strict::Signal(libc::SIGUSR2))
        );
        assert_eq!(
            parse(&[("ISOL_STRICT", "rtmin+1")]).unwrap().strict,
            Some(Strict::Signal(libc::SIGRTMIN() + 1))
        );
        for (k, v, says) in [
            ("ISOL_CPU", "one", "ISOL_CPU"),
            ("ISOL_FIFO", "0", "1..=99"),
            ("ISOL_FIFO", "100", "1..=99"),
            ("ISOL_STRICT", "maybe", "kill, report"),
            ("ISOL_STRICT", "SIGKILL", "handler can catch"),
            ("ISOL_STRICT", "SIGSYS", "SIGSYS"),
            ("ISOL_REPORT_FD", "-1", "file descriptor"),
            ("ISOL_ALLOW_TICKING", "yes", "0 or 1"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(says), "{k}={v}: {e}");
        }
    }

    #[test]
    fn a_report_descriptor_must_be_a_pipe_or_socket() {
        let (r, w) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        report_fd_usable(w.as_raw_fd()).unwrap();
        let file = tempfile::tempfile().unwrap();
        let e = report_fd_usable(file.as_raw_fd()).unwrap_err().to_string();
        assert!(
            e.contains("a regular file") && e.contains("ISOL_REPORT_FD"),
            "{e}"
        );
        drop((r, w));
        let e = report_fd_usable(987_654).unwrap_err().to_string();
        assert!(e.contains("not an open descriptor"), "{e}");
    }
}
