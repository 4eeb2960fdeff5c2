//! `pty`: a full-screen program (`isol top`) in a pseudo-terminal, as a person sees it:
//! the screen it draws (kept by a terminal emulator), the interrupts the watched CPU takes
//! while it runs, and the terminal's state after it quits.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

use crate::common::{irq_total, pin};

/// Run `cmd` in a `cols`x`rows` pseudo-terminal; once its screen shows `ready`, wait a
/// second (its start is done), count `cpu`'s interrupts over `secs`, keep the screen, press
/// `q`, and print one JSON object: the interrupts, the screen, and whether the terminal
/// came back to its main screen with a visible cursor.
pub fn pty(cols: u16, rows: u16, cpu: u32, secs: u64, ready: &str, cmd: &[String]) {
    pin(0);
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("posix_openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&master, size).expect("TIOCSWINSZ");
    let slave = || {
        let fd = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY,
            Mode::empty(),
        )
        .expect("open the pty's slave");
        Stdio::from(fd)
    };
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(slave())
        .stdout(slave())
        .stderr(slave())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", cmd[0]));
    let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
    let mut reader = std::fs::File::from(rustix::io::dup(&master).expect("dup"));
    let parser = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            parser.lock().unwrap().process(&buf[..n]);
        }
    });
    let contents = || screen.lock().unwrap().screen().contents();
    let t0 = Instant::now();
    while !contents().contains(ready) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no {ready:?} on the screen:\n{}",
            contents()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = irq_total(cpu);
    std::thread::sleep(Duration::from_secs(secs));
    let irqs = irq_total(cpu) - before;
    let shown = contents();
    let mut writer = std::fs::File::from(master);
    writer.write_all(b"q").expect("press q");
    let status = child.wait().expect("wait");
    // The last bytes it wrote (leaving the alternate screen) reach the emulator.
    std::thread::sleep(Duration::from_millis(500));
    let s = screen.lock().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "irqs": irqs,
            "secs": secs,
            "screen": shown,
            "status": status.code(),
            "alternate_after": s.screen().alternate_screen(),
            "cursor_hidden_after": s.screen().hide_cursor(),
        })
    );
}
