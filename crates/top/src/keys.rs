//! Keys, read from the terminal directly: `poll(2)` on standard input with a timeout, then
//! the bytes a terminal in raw mode sends, decoded. A hung-up terminal (a closed window, a
//! dropped connection) reads as the end of input and ends the screen; crossterm's own
//! reader retries a zero-byte read forever, spinning a CPU, so it is not used.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

/// A key the screen knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Ctrl-C (in raw mode it is a byte, not a signal).
    CtrlC,
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// The up arrow.
    Up,
    /// The down arrow.
    Down,
}

/// Wait up to `timeout` for keys: the keys pressed (none when the time ran out), or None
/// when the terminal hung up.
pub(crate) fn wait(timeout: Duration) -> io::Result<Option<Vec<Key>>> {
    wait_on(io::stdin().as_fd(), timeout)
}

fn wait_on(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<Option<Vec<Key>>> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(0) | Err(Errno::INTR) => return Ok(Some(Vec::new())),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    if !fds[0].revents().contains(PollFlags::IN) {
        // HUP, ERR or NVAL with nothing to read.
        return Ok(None);
    }
    let mut buf = [0u8; 256];
    match rustix::io::read(fd, &mut buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(decode(&buf[..n]))),
        Err(Errno::INTR) | Err(Errno::AGAIN) => Ok(Some(Vec::new())),
        Err(e) => Err(e.into()),
    }
}

/// The keys in what a terminal sent: printable characters, Enter, Ctrl-C, Esc and the
/// arrows (`ESC [ A`, or `ESC O A` in application mode); other sequences are skipped.
pub(crate) fn decode(bytes: &[u8]) -> Vec<Key> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            0x03 => out.push(Key::CtrlC),
            b'\r' | b'\n' => out.push(Key::Enter),
            0x1b if i < bytes.len() && (bytes[i] == b'[' || bytes[i] == b'O') => {
                // A sequence: parameters, then one final byte (0x40-0x7e).
                let mut j = i + 1;
                while j < bytes.len() && !(0x40..=0x7e).contains(&bytes[j]) {
                    j += 1;
                }
                match bytes.get(j) {
                    Some(b'A') => out.push(Key::Up),
                    Some(b'B') => out.push(Key::Down),
                    _ => {}
                }
                i = j + 1;
            }
            0x1b => out.push(Key::Esc),
            0x20..=0x7e => out.push(Key::Char(b as char)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_bytes_decode_to_keys() {
        assert_eq!(
            decode(b"qs\r\x1b[A\x1bOB\x1b[1;5C\x1b"),
            [
                Key::Char('q'),
                Key::Char('s'),
                Key::Enter,
                Key::Up,
                Key::Down,
                Key::Esc
            ]
        );
        assert_eq!(decode(b"\x03"), [Key::CtrlC]);
        assert!(decode(b"\x1b[").is_empty(), "a cut sequence is skipped");
    }

    /// A terminal that hung up reads as the end of input, not as a key, and not forever.
    #[test]
    fn a_hung_up_terminal_ends_the_wait() {
        // A file at its end stands for a hung-up terminal (both read 0 bytes).
        let null = std::fs::File::open("/dev/null").unwrap();
        let r = wait_on(null.as_fd(), Duration::from_secs(5));
        assert!(matches!(r, Ok(None)), "{r:?}");
        // Keys waiting are read and decoded.
        let (rx, tx) = rustix::pipe::pipe().unwrap();
        rustix::io::write(&tx, b"q").unwrap();
        let keys = wait_on(rx.as_fd(), Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(keys, [Key::Char('q')]);
        // Nothing pressed: the time runs out.
        let none = wait_on(rx.as_fd(), Duration::from_millis(10)).unwrap();
        assert_eq!(none.map(|k| k.len()), Some(0));
    }
}
