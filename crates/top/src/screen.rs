//! The screen, drawn from a [`Board`]: a header, one row per watched CPU, the top culprits
//! (or one CPU's last interruptions), a help line. Drawing only; the keys change a
//! [`View`].

use std::collections::BTreeMap;

use crate::board::{Board, Sort, COLUMNS};
use crate::canvas::{Canvas, Style};
use crate::keys::Key;
use isol_model::units::fmt_ns;

/// The smallest terminal the screen is drawn in; smaller ones are told so.
pub const MIN_WIDTH: u16 = 80;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 12;

/// What does not change while the screen runs: the machine and the watch.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Kernel release.
    pub kernel: String,
    /// The kernel's nohz_full CPUs (a list, or `none`).
    pub nohz_full: String,
    /// The kernel's isolated CPUs.
    pub isolated: String,
    /// What the watch's start cost the watched CPUs, in one line.
    pub start_cost: String,
    /// What the watch says the user should know (missing events, dropped filters).
    pub notices: Vec<String>,
}

/// How the screen is looked at: the keys change it.
#[derive(Debug, Clone)]
pub struct View {
    /// CPU rows' order.
    pub sort: Sort,
    /// The highlighted CPU row (index in the sorted rows).
    pub selected: usize,
    /// The CPU whose last interruptions replace the culprits.
    pub expanded: Option<u32>,
    /// A frozen copy of the board, shown while paused (the live one keeps counting).
    pub frozen: Option<(Board, u64)>,
    /// Colours allowed (not `NO_COLOR`).
    pub color: bool,
}

/// What a key asks of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Leave.
    Quit,
}

impl View {
    /// The starting view.
    pub fn new(color: bool) -> View {
        View {
            sort: Sort::Cpu,
            selected: 0,
            expanded: None,
            frozen: None,
            color,
        }
    }

    /// Act on a key: `q`, Esc or Ctrl-C quit; `p` or space pause; `s` sorts by the next
    /// column; Up/Down (or `k`/`j`) move; Enter (or `e`) expands the CPU, again folds it;
    /// `r` resets the counters.
    pub fn key(&mut self, key: Key, board: &mut Board, now_ns: u64) -> Flow {
        let cpus: Vec<u32> = board
            .rows(self.sort, now_ns)
            .iter()
            .map(|r| r.cpu)
            .collect();
        match key {
            Key::CtrlC | Key::Char('q') | Key::Esc => return Flow::Quit,
            Key::Char('p') | Key::Char(' ') => {
                self.frozen = match self.frozen {
                    Some(_) => None,
                    None => Some((board.clone(), now_ns)),
                }
            }
            Key::Char('s') => {
                let cpu = cpus.get(self.selected).copied();
                self.sort = self.sort.next();
                // The highlight stays on the same CPU.
                let order: Vec<u32> = board
                    .rows(self.sort, now_ns)
                    .iter()
                    .map(|r| r.cpu)
                    .collect();
                self.selected = cpu
                    .and_then(|c| order.iter().position(|&o| o == c))
                    .unwrap_or(0);
            }
            Key::Down | Key::Char('j') => {
                self.selected = (self.selected + 1).min(cpus.len().saturating_sub(1))
            }
            Key::Up | Key::Char('k') => self.selected = self.selected.saturating_sub(1),
            Key::Enter | Key::Char('e') => {
                let cpu = cpus.get(self.selected).copied();
                self.expanded = if self.expanded == cpu { None } else { cpu };
            }
            Key::Char('r') => {
                board.reset(now_ns);
                if self.frozen.is_some() {
                    self.frozen = Some((board.clone(), now_ns));
                }
            }
            _ => {}
        }
        Flow::Continue
    }
}

/// Draw the whole screen. `occupants` are the residents of each CPU (the watch engine's).
///
/// Lines are formatted once and written into the canvas, columns at fixed places.
pub fn draw(
    canvas: &mut Canvas,
    live: &Board,
    now_ns: u64,
    header: &Header,
    view: &View,
    occupants: &BTreeMap<u32, Vec<(i32, String)>>,
) {
    let (w, h) = (canvas.width(), canvas.height());
    let buf = canvas;
    if w < MIN_WIDTH || h < MIN_HEIGHT {
        let text = format!(
            "terminal too small ({w}x{h}): isol top needs {MIN_WIDTH}x{MIN_HEIGHT}; enlarge it, or press q"
        );
        let width = w.max(1) as usize;
        let chars: Vec<char> = text.chars().collect();
        for (y, chunk) in chars.chunks(width).enumerate().take(h as usize) {
            let line: String = chunk.iter().collect();
            buf.put(0, y as u16, &line, width, Style::PLAIN);
        }
        return;
    }
    let (board, now_ns) = match &view.frozen {
        Some((b, at)) => (b, *at),
        None => (live, now_ns),
    };
    let width = w as usize;
    let bold = Style::PLAIN.bold();
    let put = |buf: &mut Canvas, x: usize, y: u16, text: &str, max: usize, style: Style| {
        buf.put(x, y, text, max, style)
    };
    let rows = board.rows(view.sort, now_ns);
    let cpu_lines = (rows.len() as u16).min((h - 6) / 2).max(1);

    // Header: two lines.
    let title = "isol top";
    put(buf, 0, 0, title, width, bold);
    let mut x = title.len();
    let text = format!(
        "  kernel {}  nohz_full {}  isolated {}  {} watched  {}",
        clean(&header.kernel),
        header.nohz_full,
        header.isolated,
        plural(rows.len(), "CPU"),
        clock(now_ns.saturating_sub(board.since_ns)),
    );
    put(buf, x, 0, &text, width, Style::PLAIN);
    x += text.chars().count();
    let lost = board.lost();
    if lost > 0 {
        let text = format!("  LOST {lost} events: counts are lower bounds");
        put(buf, x, 0, &text, width, view.red());
        x += text.chars().count();
    }
    if view.frozen.is_some() {
        put(buf, x + 2, 0, "PAUSED", width, bold.reversed());
    }
    let mut second = format!(
        "start cost: {}  sorted by {}",
        header.start_cost,
        view.sort.column()
    );
    for n in &header.notices {
        second.push_str(&format!("  ! {}", clean(n)));
    }
    put(buf, 0, 1, &second, width, Style::PLAIN);

    // One row per CPU, the selected one kept in view.
    let mut head = String::new();
    for (name, w) in CPU_COLUMNS {
        let name = if name == view.sort.column() {
            format!("{name}▼")
        } else {
            name.to_string()
        };
        head.push_str(&format!("{name:<w$} "));
    }
    head.push_str("resident");
    put(buf, 0, 2, &head, width, bold);
    if let Some(at) = head.find('▼') {
        // Underline the sorted column's name.
        let start = head[..at].rfind(' ').map_or(0, |s| s + 1);
        let name = head[start..].split(' ').next().unwrap_or_default();
        let x = head[..start].chars().count();
        buf.restyle(x, 2, name.chars().count(), Style::PLAIN.underlined());
    }
    let selected = view.selected.min(rows.len().saturating_sub(1));
    let first = (selected + 1).saturating_sub(cpu_lines as usize);
    for (i, r) in rows.iter().enumerate().skip(first).take(cpu_lines as usize) {
        let y = 3 + (i - first) as u16;
        let second = r.last_second(now_ns);
        let mut line = format!("{:<4} {:<5} {:<6} ", r.cpu, count(second), count(r.total));
        for n in r.by_kind {
            line.push_str(&format!("{:<5} ", count(n)));
        }
        let longest = if r.total > 0 {
            fmt_ns(r.longest_ns)
        } else {
            "-".into()
        };
        let last = r
            .last_ns
            .map_or("-".into(), |t| ago(now_ns.saturating_sub(t)));
        line.push_str(&format!("{longest:<7} {last:<5} "));
        line.push_str(&match occupants.get(&r.cpu) {
            Some(o) if !o.is_empty() => o
                .iter()
                .map(|(tid, comm)| format!("{}/{tid}", clean(comm)))
                .collect::<Vec<_>>()
                .join(" "),
            _ => "(none)".into(),
        });
        put(buf, 0, y, &line, width, Style::PLAIN);
        if i == selected {
            buf.restyle(0, y, width, Style::PLAIN.reversed());
        }
        if second > 0 {
            buf.restyle(5, y, 5, view.red());
        }
    }

    // Culprits, or one CPU's last interruptions, down to the help line.
    let top = 3 + cpu_lines;
    let bottom = h - 1;
    let lines = bottom.saturating_sub(top + 2) as usize;
    // Fixed columns, then what ran and who caused it share the rest, 3 to 2.
    let (fixed, heads): (usize, [&str; 4]) = match view.expanded {
        Some(_) => (11 + 1 + 11 + 1 + 7 + 1, ["time(s)", "kind", "net", ""]),
        None => (
            11 + 1 + 6 + 1 + 7 + 1 + 6 + 1,
            ["kind", "count", "longest", "cpus"],
        ),
    };
    let rest = width.saturating_sub(fixed);
    let what_w = rest * 3 / 5;
    let by_x = fixed + what_w + 1;
    let row = |buf: &mut Canvas, y: u16, left: &str, what: &str, by: &str, style: Style| {
        put(buf, 0, y, left, fixed, style);
        put(buf, fixed, y, what, what_w, style);
        put(buf, by_x, y, by, width, style);
    };
    let left = |cells: [&str; 4]| match view.expanded {
        Some(_) => format!("{:<11} {:<11} {:<7} ", cells[0], cells[1], cells[2]),
        None => format!(
            "{:<11} {:<6} {:<7} {:<6} ",
            cells[0], cells[1], cells[2], cells[3]
        ),
    };
    match view.expanded {
        Some(cpu) => {
            let title =
                format!("CPU {cpu}: last interruptions, newest first (enter: back to culprits)");
            put(buf, 0, top, &title, width, bold);
            row(buf, top + 1, &left(heads), "what ran", "caused by", bold);
            for (i, r) in board.recent(cpu).take(lines).enumerate() {
                let at = format!("{:.6}", r.at_ns.saturating_sub(board.since_ns) as f64 / 1e9);
                let net = r.net_ns.map_or("-".into(), fmt_ns);
                let l = left([&at, r.kind.as_str(), &net, ""]);
                row(
                    buf,
                    top + 2 + i as u16,
                    &l,
                    &clean(&r.what),
                    &clean(&r.by),
                    Style::PLAIN,
                );
            }
        }
        None => {
            put(
                buf,
                0,
                top,
                "top culprits across the watched CPUs",
                width,
                bold,
            );
            row(buf, top + 1, &left(heads), "what ran", "caused by", bold);
            for (i, c) in board.culprits(lines).into_iter().enumerate() {
                let (n, longest, cpus) = (count(c.count), fmt_ns(c.longest_ns), cpu_list(&c.cpus));
                let l = left([c.kind.as_str(), &n, &longest, &cpus]);
                row(
                    buf,
                    top + 2 + i as u16,
                    &l,
                    &clean(&c.what),
                    &clean(&c.by),
                    Style::PLAIN,
                );
            }
        }
    }

    let help = format!(
        "{:<width$}",
        "q quit  p pause  s sort  ↑/↓ select  enter expand  r reset"
    );
    put(buf, 0, bottom, &help, width, Style::PLAIN.reversed());
}

/// The CPU rows' columns and their widths (the resident takes the rest).
const CPU_COLUMNS: [(&str, usize); 11] = [
    ("cpu", 4),
    ("1s", 5),
    ("total", 6),
    (COLUMNS[0].1, 5),
    (COLUMNS[1].1, 5),
    (COLUMNS[2].1, 5),
    (COLUMNS[3].1, 5),
    (COLUMNS[4].1, 5),
    ("other", 5),
    ("longest", 7),
    ("last", 5),
];

impl View {
    fn red(&self) -> Style {
        if self.color {
            Style::PLAIN.red()
        } else {
            Style::PLAIN.bold()
        }
    }
}

/// Names come from the machine (task names, unit and pod names): control characters
/// would move the cursor or change the terminal, so they are shown as `?`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A count in five columns: `99999`, `123k`, `12.3M`.
pub fn count(n: u64) -> String {
    match n {
        0..=99_999 => n.to_string(),
        100_000..=999_999 => format!("{}k", n / 1000),
        1_000_000..=99_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{}M", n / 1_000_000),
    }
}

/// Time since, in five columns: `0.3s`, `12s`, `5m`, `3h`.
fn ago(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=9 => format!("{:.1}s", ns as f64 / 1e9),
        10..=599 => format!("{s}s"),
        600..=35_999 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// Elapsed time: `42s`, `3m07s`, `2h05m`.
fn clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// CPUs as a short list: `1`, `1,3`, `1-4`.
fn cpu_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_trace::interrupt::Record;

    fn screen(board: &Board, view: &View, w: u16, h: u16, now: u64) -> String {
        let mut c = Canvas::new(w, h);
        let header = Header {
            kernel: "6.12.0-test\x1b[2J".into(),
            nohz_full: "1-2".into(),
            isolated: "1-2".into(),
            start_cost: "0 interrupts".into(),
            notices: vec![],
        };
        let occupants = BTreeMap::from([(2, vec![(4242, "spin".to_string())])]);
        draw(&mut c, board, now, &header, view, &occupants);
        (0..h).map(|y| c.text(y)).collect::<Vec<_>>().join("\n")
    }

    fn board() -> Board {
        let mut b = Board::new([1, 2], 0);
        let r: Record = serde_json::from_str(
            r#"{"type":"interruption","cpu":1,"start_ns":1500000000,"duration_ns":3000,"net_ns":2500,"depth":0,"complete":true,"kind":"ipi","source":"call_function_single","functions":["do_sync_core"],"senders":[{"cpu":0,"pid":9,"comm":"bash\u001b]0;x","context":"task","action":"send_ipi","place":{"unit":"ssh.service"}}]}"#,
        )
        .unwrap();
        b.add(&[r]);
        b
    }

    #[test]
    fn rows_culprits_and_header_are_drawn() {
        let s = screen(&board(), &View::new(false), 100, 14, 2_000_000_000);
        assert!(
            s.contains("isol top  kernel 6.12.0-test?[2J  nohz_full 1-2"),
            "{s}"
        );
        assert!(s.contains("2 CPUs watched  2s"), "{s}");
        let row1 = s
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .unwrap();
        let cells: Vec<&str> = row1.split_whitespace().collect();
        // cpu 1s total tick ipi irq sirq task other longest last resident
        assert_eq!(
            cells,
            ["1", "1", "1", "0", "1", "0", "0", "0", "0", "2.5us", "0.5s", "(none)"],
            "{s}"
        );
        let row2 = s
            .lines()
            .find(|l| l.trim_start().starts_with("2 "))
            .unwrap();
        assert!(row2.ends_with("spin/4242"), "{s}");
        assert!(s.contains("call_function_single: do_sync_core"), "{s}");
        assert!(
            s.contains("bash?]0;x [ssh.service]"),
            "control characters cleaned: {s}"
        );
        assert!(s.contains("q quit  p pause"), "{s}");
    }

    #[test]
    fn keys_sort_expand_pause_reset_and_quit() {
        let mut b = board();
        let mut v = View::new(false);
        let key = |k| k;
        let now = 2_000_000_000;
        assert_eq!(v.key(key(Key::Char('s')), &mut b, now), Flow::Continue);
        assert_eq!(v.sort, Sort::LastSecond);
        assert!(screen(&b, &v, 100, 14, now).contains("1s▼"));
        v.key(key(Key::Down), &mut b, now);
        v.key(key(Key::Enter), &mut b, now);
        // CPU 1 sorts first by the last second; Down selects CPU 2.
        assert_eq!(v.expanded, Some(2));
        v.key(key(Key::Up), &mut b, now);
        v.key(key(Key::Enter), &mut b, now);
        assert_eq!(v.expanded, Some(1));
        let s = screen(&b, &v, 100, 14, now);
        assert!(s.contains("CPU 1: last interruptions"), "{s}");
        assert!(s.contains("1.500000    ipi"), "{s}");
        v.key(key(Key::Char('p')), &mut b, now);
        b.reset(now);
        assert!(screen(&b, &v, 100, 14, now).contains("PAUSED"));
        assert!(
            screen(&b, &v, 100, 14, now).contains("1.500000"),
            "the frozen board is shown"
        );
        v.key(key(Key::Char('p')), &mut b, now);
        assert!(!screen(&b, &v, 100, 14, now).contains("1.500000"));
        v.key(key(Key::Char('r')), &mut b, now + 5);
        assert_eq!(b.since_ns, now + 5);
        assert_eq!(v.key(key(Key::Char('q')), &mut b, now), Flow::Quit);
        assert_eq!(v.key(Key::CtrlC, &mut b, now), Flow::Quit);
    }

    #[test]
    fn a_small_terminal_is_told_so() {
        let s = screen(&board(), &View::new(true), 60, 10, 0);
        assert!(s.contains("terminal too small (60x10)"), "{s}");
        assert!(s.contains("needs 80x12"), "{s}");
    }

    #[test]
    fn formats_fit_their_columns() {
        assert_eq!(count(99_999), "99999");
        assert_eq!(count(123_456), "123k");
        assert_eq!(count(12_345_678), "12.3M");
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(4_560_000), "4.56ms");
        assert_eq!(ago(300_000_000), "0.3s");
        assert_eq!(ago(700 * 1_000_000_000), "11m");
        assert_eq!(clock(187 * 1_000_000_000), "3m07s");
        assert_eq!(cpu_list(&[1, 2, 3, 5]), "1-3,5");
        assert_eq!(clean("a\x1b[31mb"), "a?[31mb");
    }
}
