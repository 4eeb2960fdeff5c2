//! Standard output that never panics and never holds a command hostage:
//! * a reader that went away (EPIPE, as with `| head`) ends the command quietly with status
//!   141 (128 + SIGPIPE, as a shell reports a tool killed by it);
//! * any other write error (ENOSPC, `/dev/full`) is a failure with exit 70;
//! * a write blocked on a reader that stopped reading gives way to a signal (Ctrl-C): after
//!   the signal, a reader that takes nothing for 2 s is given up on, so the command can still
//!   clean up; std's stdout would retry it forever.
//!
//! Each call writes straight to file descriptor 1 and returns when all of it is written.
//!
//! Names in isol's output come from the machine or from a stranger's snapshot (thread
//! names, IRQ names, tracing instances, units): a name can hold terminal escape sequences.
//! So every text written here or on standard error has its control characters escaped
//! (`\x1b` stays four visible characters), as have the characters that reorder text
//! (bidirectional overrides). JSON escapes what JSON must, and the rest as `\u00XX`.

use std::io;

use crate::Failure;

/// Exit status when standard output's reader has gone.
pub const EXIT_BROKEN_PIPE: u8 = 128 + libc::SIGPIPE as u8;

/// What a failed write to standard output means for the command.
fn write_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::quiet(EXIT_BROKEN_PIPE)
    } else {
        Failure::runtime(format!("cannot write to standard output: {e}"))
    }
}

fn write_all(mut buf: &[u8]) -> Result<(), Failure> {
    // File descriptor 1 itself, written without std's buffer or its retries.
    let stdout = std::io::stdout();
    let fd = std::os::fd::AsFd::as_fd(&stdout);
    while !buf.is_empty() {
        // Once a signal asked the command to stop, a reader that takes no more within
        // GRACE is not waited for: the command must get on with its cleanup.
        if let Some(sig) = crate::live::signals::caught() {
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::OUT,
            )];
            let grace = rustix::event::Timespec {
                tv_sec: GRACE_SECS,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut fds, Some(&grace)) {
                Ok(0) => return Err(Failure::quiet(128 + sig as u8)),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(write_failure(e.into())),
            }
        }
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(write_failure(io::ErrorKind::WriteZero.into())),
            Ok(n) => buf = &buf[n..],
            // A signal: the loop above decides whether to go on.
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(write_failure(e.into())),
        }
    }
    Ok(())
}

/// How long a stopping command waits for a reader that does not read.
const GRACE_SECS: i64 = 2;

/// A character a terminal may act on rather than show: C0 controls but newline and tab,
/// DEL, C1 controls, and the bidirectional formatting characters.
fn acts(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal may act on written out: `\x1b`, `\u{202e}`.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(acts) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !acts(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out.into()
}

/// JSON text with what serde leaves raw inside strings (DEL, C1 controls, bidirectional
/// formatting) written as `\u00XX` escapes: the same JSON value, safe on a terminal.
pub fn escape_json(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(acts) {
        return json.into();
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if acts(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Write `text` to standard output, escaped.
pub fn print(text: &str) -> Result<(), Failure> {
    write_all(escape(text).as_bytes())
}

/// Write `text` and a newline to standard output, in one write when it fits.
pub fn println(text: &str) -> Result<(), Failure> {
    let text = escape(text);
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(&text);
    line.push('\n');
    write_all(line.as_bytes())
}

/// Write a JSON document (or part of one) to standard output.
pub fn print_json(json: &str) -> Result<(), Failure> {
    write_all(escape_json(json).as_bytes())
}

/// Write a JSON document and a newline to standard output.
pub fn println_json(json: &str) -> Result<(), Failure> {
    let mut line = escape_json(json).into_owned();
    line.push('\n');
    write_all(line.as_bytes())
}

/// Write `text` to standard error, escaped (messages, and `isol run --watch`'s lines).
pub fn eprint(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(escape(text).as_bytes());
}

/// `eprintln!` with the escaping of [`eprint()`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::eprint(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// A table as the reports by area print one (`isol check`, `isol diff`): no borders,
/// wrapped to the terminal's width (`$COLUMNS`, else 120).
pub fn area_table() -> comfy_table::Table {
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120u16);
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(width);
    table
}

/// One area's section of such a report: its name, then its table, lines trimmed.
pub fn area_section(area: &str, table: &comfy_table::Table) -> String {
    let text = table.to_string();
    let body: Vec<&str> = text.lines().map(str::trim_end).collect();
    format!("\n{area}\n{}\n", body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_acts_on_is_written_out() {
        assert_eq!(escape("kworker/1:0\n\tok"), "kworker/1:0\n\tok");
        assert_eq!(escape("evil\x1b[2Jname\r"), "evil\\x1b[2Jname\\x0d");
        assert_eq!(escape("a\u{9b}b\u{202e}c\u{7f}"), "a\\x9bb\\u{202e}c\\x7f");
        let json =
            serde_json::to_string(&serde_json::json!({"comm": "x\u{1b}y\u{9b}\u{202e}"})).unwrap();
        let safe = escape_json(&json);
        assert!(!safe.chars().any(acts), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["comm"], "x\u{1b}y\u{9b}\u{202e}");
    }
}
