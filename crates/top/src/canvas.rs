//! The screen's cells, and what a terminal needs to show them: each redraw fills a new
//! canvas, and only the rows that differ from the last one are written, each in one go.
//! Comparing rows of plain cells and writing a few of them is all a redraw costs (a widget
//! library's layout, grapheme segmentation and per-cell diff cost several times more,
//! ten times a second: BENCHMARKS.md).

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

/// How a cell looks: a set of attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style(u8);

impl Style {
    /// Nothing special.
    pub const PLAIN: Style = Style(0);
    const BOLD: u8 = 1;
    const UNDERLINED: u8 = 2;
    const REVERSED: u8 = 4;
    const RED: u8 = 8;

    /// Bold as well.
    pub fn bold(self) -> Style {
        Style(self.0 | Self::BOLD)
    }

    /// Underlined as well.
    pub fn underlined(self) -> Style {
        Style(self.0 | Self::UNDERLINED)
    }

    /// Reversed as well.
    pub fn reversed(self) -> Style {
        Style(self.0 | Self::REVERSED)
    }

    /// Red text as well.
    pub fn red(self) -> Style {
        Style(self.0 | Self::RED)
    }

    /// Both sets of attributes.
    pub fn with(self, other: Style) -> Style {
        Style(self.0 | other.0)
    }

    /// Whether it has every attribute of `other`.
    pub fn has(self, other: Style) -> bool {
        self.0 & other.0 == other.0
    }

    /// The SGR sequence that sets exactly this style.
    fn sgr(self, out: &mut String) {
        out.push_str("\x1b[0");
        for (bit, code) in [
            (Self::BOLD, ";1"),
            (Self::UNDERLINED, ";4"),
            (Self::REVERSED, ";7"),
            (Self::RED, ";31"),
        ] {
            if self.0 & bit != 0 {
                out.push_str(code);
            }
        }
        out.push('m');
    }
}

/// One cell: a character and its style. `'\0'` is the second half of a wide character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    ch: char,
    style: Style,
}

const BLANK: Cell = Cell {
    ch: ' ',
    style: Style::PLAIN,
};

/// A screen's worth of cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    width: u16,
    height: u16,
    cells: Vec<Cell>,
}

impl Canvas {
    /// A blank canvas of `width` x `height` cells.
    pub fn new(width: u16, height: u16) -> Canvas {
        Canvas {
            width,
            height,
            cells: vec![BLANK; width as usize * height as usize],
        }
    }

    /// Its width.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Its height.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// Write `text` from column `x` of row `y`, at most `max` columns of it (fewer at the
    /// right edge). Wide characters take two columns; zero-width ones are left out.
    pub fn put(&mut self, x: usize, y: u16, text: &str, max: usize, style: Style) {
        if y >= self.height {
            return;
        }
        let row = y as usize * self.width as usize;
        let end = (x + max).min(self.width as usize);
        let mut at = x;
        for ch in text.chars() {
            let w = if ch.is_ascii() {
                1
            } else {
                ch.width().unwrap_or(0)
            };
            if w == 0 {
                continue;
            }
            if at + w > end {
                break;
            }
            self.cells[row + at] = Cell { ch, style };
            if w == 2 {
                self.cells[row + at + 1] = Cell { ch: '\0', style };
            }
            at += w;
        }
    }

    /// Add `style`'s attributes to `len` cells from column `x` of row `y`.
    pub fn restyle(&mut self, x: usize, y: u16, len: usize, style: Style) {
        if y >= self.height {
            return;
        }
        let row = y as usize * self.width as usize;
        for c in x..(x + len).min(self.width as usize) {
            let cell = &mut self.cells[row + c];
            cell.style = cell.style.with(style);
        }
    }

    fn row(&self, y: u16) -> &[Cell] {
        let w = self.width as usize;
        &self.cells[y as usize * w..(y as usize + 1) * w]
    }

    /// Row `y`'s text, trailing blanks left out.
    pub fn text(&self, y: u16) -> String {
        let s: String = self
            .row(y)
            .iter()
            .filter(|c| c.ch != '\0')
            .map(|c| c.ch)
            .collect();
        s.trim_end().to_string()
    }

    /// The style of the cell at (`x`, `y`).
    pub fn style(&self, x: usize, y: u16) -> Style {
        self.row(y)[x].style
    }

    /// The escape sequences and text that turn a terminal showing `before` (None: an
    /// unknown or cleared screen) into this canvas: each row that differs, whole.
    pub fn changes(&self, before: Option<&Canvas>) -> String {
        let before = before.filter(|b| b.width == self.width && b.height == self.height);
        let mut out = String::new();
        if before.is_none() {
            out.push_str("\x1b[0m\x1b[2J");
        }
        for y in 0..self.height {
            let row = self.row(y);
            if before.is_some_and(|b| b.row(y) == row) {
                continue;
            }
            let _ = write!(out, "\x1b[{};1H", y + 1);
            let mut style = None;
            for c in row {
                if c.ch == '\0' {
                    continue;
                }
                if style != Some(c.style) {
                    c.style.sgr(&mut out);
                    style = Some(c.style);
                }
                out.push(c.ch);
            }
            out.push_str("\x1b[0m");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_placed_clipped_and_styled() {
        let mut c = Canvas::new(10, 2);
        c.put(0, 0, "hello world", 20, Style::PLAIN);
        assert_eq!(c.text(0), "hello worl", "clipped at the edge");
        c.put(2, 1, "abcdef", 3, Style::PLAIN.bold());
        assert_eq!(c.text(1), "  abc");
        c.restyle(3, 1, 2, Style::PLAIN.red());
        assert_eq!(c.style(2, 1), Style::PLAIN.bold());
        assert!(c.style(3, 1).has(Style::PLAIN.bold().red()));
        // A wide character takes two columns, and does not fit in one.
        let mut c = Canvas::new(5, 1);
        c.put(0, 0, "a漢b", 5, Style::PLAIN);
        assert_eq!(c.text(0), "a漢b");
        c.put(0, 0, "xyz漢", 4, Style::PLAIN);
        assert_eq!(c.text(0), "xyzb", "the wide character would pass the limit");
        c.put(0, 0, "e\u{301}", 5, Style::PLAIN);
        assert!(c.text(0).starts_with("ey"), "combining marks are left out");
    }

    #[test]
    fn only_changed_rows_are_written() {
        let mut a = Canvas::new(6, 3);
        a.put(0, 0, "one", 6, Style::PLAIN);
        a.put(0, 1, "two", 6, Style::PLAIN.reversed());
        let first = a.changes(None);
        assert!(first.starts_with("\x1b[0m\x1b[2J"), "a clear screen first");
        assert!(
            first.contains("\x1b[2;1H\x1b[0;7mtwo\x1b[0m   \x1b[0m"),
            "{first:?}"
        );
        let mut b = a.clone();
        b.put(0, 2, "three", 6, Style::PLAIN.red());
        let next = b.changes(Some(&a));
        assert_eq!(next, "\x1b[3;1H\x1b[0;31mthree\x1b[0m \x1b[0m");
        assert_eq!(b.changes(Some(&b)), "", "nothing changed, nothing written");
        // A resized terminal is drawn whole.
        assert!(Canvas::new(7, 3).changes(Some(&a)).contains("\x1b[2J"));
    }
}
