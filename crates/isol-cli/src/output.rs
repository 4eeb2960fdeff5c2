//! Standard output that never panics and never holds a command hostage:
//! * a reader that went away (EPIPE, as with `| head`) ends the command quietly with status
//!   141 (128 + SIGPIPE, as a shell reports a tool killed by it);
//! * any other write error (ENOSPC, `/dev/full`) is a failure with exit 70;
//! * a write blocked on a reader that stopped reading gives way to a signal (Ctrl-C): after
//!   the signal, a reader that takes nothing for 2 s is given up on, so the command can still
//!   clean up; std's stdout would retry it forever.
//!
//! Each call writes straight to file descriptor 1 and returns when all of it is written.

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
    // SAFETY: file descriptor 1 is open for the life of the process (the runtime opens
    // /dev/null there if it was closed at start); it is only borrowed for the call.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(1) };
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

/// Write `text` to standard output.
pub fn print(text: &str) -> Result<(), Failure> {
    write_all(text.as_bytes())
}

/// Write `text` and a newline to standard output, in one write when it fits.
pub fn println(text: &str) -> Result<(), Failure> {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    write_all(line.as_bytes())
}
