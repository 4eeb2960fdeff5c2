//! `isol top`: a live, full-screen view of the watched CPUs and who interrupts them, on the
//! watch engine ([`isol_trace::watch::Watch`]).
//!
//! - [`board`]: what is shown, kept from the watch's records (pure state, tested alone);
//! - [`screen`]: drawing it, and what the keys do;
//! - [`canvas`]: the cells drawn, and the rows a terminal is sent (only those that changed);
//! - [`run`]: the loop: read the watch, draw ten times a second, answer keys, and leave the
//!   terminal as it was found, whatever ends the run (a key, a signal, an error, a panic).
//!
//! The screen costs the watched CPUs nothing beyond the watch's own start and stop: it runs
//! where the caller runs (on housekeeping CPUs), reads the watch's buffers as `isol watch`
//! does, and writes only to its terminal.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod board;
pub mod canvas;
mod keys;
pub mod screen;

use std::collections::BTreeMap;
use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::{cursor, execute, terminal};

use isol_trace::tracefs::TraceError;
use isol_trace::watch::Watch;

pub use board::{Board, Sort};
pub use canvas::Canvas;
pub use screen::{Flow, Header, View};

/// How often the screen is drawn and the watch read.
pub const REDRAW: Duration = Duration::from_millis(100);

/// Why a run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The terminal could not be set up or written.
    #[error("the terminal: {0}")]
    Terminal(#[from] io::Error),
    /// The watch failed.
    #[error("{0}")]
    Watch(#[from] TraceError),
}

/// Run the screen on `watch` until a key quits it or `stopped()` says a signal asked to.
/// The terminal is restored before returning, and by a panic hook if a panic unwinds
/// through.
pub fn run(
    watch: &mut Watch,
    header: &Header,
    color: bool,
    stopped: &dyn Fn() -> bool,
) -> Result<(), TopError> {
    let mut term = Screen::enter()?;
    let mut board = Board::new(watch.cpus().iter(), watch.started_ns());
    let mut view = View::new(color);
    let mut occupants: BTreeMap<u32, Vec<(i32, String)>> = watch.occupants();
    let mut next = Instant::now();
    loop {
        if stopped() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next {
            board.add(&watch.poll()?);
            // A paused screen shows the residents of the moment it was paused.
            if view.frozen.is_none() {
                occupants = watch.occupants();
            }
            next = now + REDRAW;
            term.draw(&board, header, &view, &occupants)?;
        }
        // A resize is seen at the next draw: the canvas takes the terminal's size each time.
        let Some(keys) = keys::wait(next.saturating_duration_since(Instant::now()))? else {
            // The terminal hung up (closed window, lost connection): nobody is looking.
            return Ok(());
        };
        if keys.is_empty() {
            continue;
        }
        for k in keys {
            if view.key(k, &mut board, clock()) == Flow::Quit {
                return Ok(());
            }
        }
        term.draw(&board, header, &view, &occupants)?;
    }
}

fn clock() -> u64 {
    isol_model::monotonic_ns()
}

/// The terminal in the screen's modes (raw, the alternate screen, no cursor) for as long
/// as this lives, and what it shows.
struct Screen {
    out: Stdout,
    shown: Option<Canvas>,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        static HOOKED: std::sync::Once = std::sync::Once::new();
        HOOKED.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if ACTIVE.load(Ordering::SeqCst) {
                    leave();
                }
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            leave();
            return Err(e);
        }
        Ok(Screen { out, shown: None })
    }

    /// Draw the screen at the terminal's size now (a resize is drawn whole); write the
    /// rows that changed.
    fn draw(
        &mut self,
        board: &Board,
        header: &Header,
        view: &View,
        occupants: &BTreeMap<u32, Vec<(i32, String)>>,
    ) -> io::Result<()> {
        let (w, h) = terminal::size()?;
        let mut canvas = Canvas::new(w, h);
        screen::draw(&mut canvas, board, clock(), header, view, occupants);
        let changes = canvas.changes(self.shown.as_ref());
        if !changes.is_empty() {
            self.out.write_all(changes.as_bytes())?;
            self.out.flush()?;
        }
        self.shown = Some(canvas);
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        leave();
    }
}

/// Whether the terminal is in the screen's modes: a panic then restores it before the
/// message is printed.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal as it was: the main screen, the cursor, cooked mode. Safe to call twice.
fn leave() {
    ACTIVE.store(false, Ordering::SeqCst);
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}
