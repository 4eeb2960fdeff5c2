//! A reader of the kernel's per-CPU ring-buffer pages, the bytes `trace_pipe_raw` returns.
//!
//! A page is a header (timestamp, commit word) followed by events. Each event starts with a
//! 32-bit word: `type_len` (5 bits) and `time_delta` (27 bits). `type_len` 1..=28 is a data
//! record of `type_len * 4` bytes; 0 is a data record whose length is in the next word;
//! 29 is padding (the rest of the page when `time_delta` is 0, else a discarded event);
//! 30 extends the delta by 32 more bits; 31 is an absolute timestamp. The commit word's two
//! top bits say that events were lost before this page, and whether their count is stored
//! after the data.
//!
//! Everything is bounds-checked: a corrupt page is an error naming the offset, never a
//! panic, and events lost by the kernel are reported, not skipped.

use super::format::PageLayout;

const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
const TYPE_TIME_STAMP: u32 = 31;
const TS_SHIFT: u32 = 27;
/// The top 5 bits an absolute timestamp does not store (the kernel's `TS_MSB`).
const TS_MSB: u64 = 0xf8 << 56;
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;

/// One data record: its timestamp (trace clock, ns for the `mono` clock) and payload, which
/// starts with the common fields (`common_type` at offset 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// Time stamp (trace clock ns).
    pub ts: u64,
    /// The event record.
    pub payload: &'a [u8],
}

impl RawEvent<'_> {
    /// The event type id (`common_type`), or None when the payload is too short.
    pub fn type_id(&self) -> Option<u16> {
        Some(u16::from_le_bytes(self.payload.get(0..2)?.try_into().ok()?))
    }
}

/// Events the kernel dropped before a page because the buffer was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// None.
    None,
    /// Some were lost; the kernel had no room to store how many.
    Unknown,
    /// This many.
    Count(u64),
}

/// A corrupt or truncated page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ring-buffer page: {reason} (at byte {offset})")]
pub struct PageError {
    /// Byte offset in the page.
    pub offset: usize,
    /// Why.
    pub reason: String,
}

fn perr(offset: usize, reason: impl Into<String>) -> PageError {
    PageError {
        offset,
        reason: reason.into(),
    }
}

/// A validated page: header read, commit length within bounds.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The page time stamp.
    pub timestamp: u64,
    /// Events dropped before it.
    pub missed: Missed,
    data: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

impl<'a> Page<'a> {
    /// Check a page's header. `bytes` may be shorter than a full page only if it still
    /// holds all committed data.
    pub fn parse(layout: &PageLayout, bytes: &'a [u8]) -> Result<Page<'a>, PageError> {
        let timestamp = u64_at(bytes, 0).ok_or_else(|| perr(0, "shorter than its header"))?;
        let raw = match layout.commit_size {
            8 => u64_at(bytes, layout.commit_offset),
            _ => u32_at(bytes, layout.commit_offset).map(u64::from),
        }
        .ok_or_else(|| perr(layout.commit_offset, "shorter than its header"))?;
        let len = (raw & !(MISSED_EVENTS | MISSED_STORED) & 0xffff_ffff) as usize;
        let capacity = layout.page_size - layout.data_offset;
        if len > capacity {
            return Err(perr(
                layout.commit_offset,
                format!("commit says {len} bytes of data, a page holds {capacity}"),
            ));
        }
        let end = layout.data_offset + len;
        let data = bytes.get(layout.data_offset..end).ok_or_else(|| {
            perr(
                bytes.len(),
                format!("truncated: {} bytes, commit needs {end}", bytes.len()),
            )
        })?;
        let missed = if raw & MISSED_EVENTS == 0 {
            Missed::None
        } else if raw & MISSED_STORED != 0 {
            // The count is an unsigned long stored right after the data.
            match u64_at(bytes, end) {
                Some(n) => Missed::Count(n),
                None => Missed::Unknown,
            }
        } else {
            Missed::Unknown
        };
        Ok(Page {
            timestamp,
            missed,
            data,
        })
    }

    /// Bytes of committed event data.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the page holds no data.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The page's data records in order, with absolute timestamps.
    pub fn events(&self) -> Events<'a> {
        Events {
            data: self.data,
            pos: 0,
            ts: self.timestamp,
            done: false,
        }
    }
}

/// Iterator over a page's data records. After an error it yields nothing more.
pub struct Events<'a> {
    data: &'a [u8],
    pos: usize,
    ts: u64,
    done: bool,
}

impl<'a> Events<'a> {
    fn step(&mut self) -> Result<Option<RawEvent<'a>>, PageError> {
        // Offsets below are relative to the page's data; errors report them as such.
        loop {
            let at = self.pos;
            if at >= self.data.len() {
                return Ok(None);
            }
            let hdr = u32_at(self.data, at).ok_or_else(|| perr(at, "event header cut off"))?;
            let type_len = hdr & 0x1f;
            let delta = u64::from(hdr >> 5);
            let word =
                |n: usize| u32_at(self.data, at + 4 * n).ok_or_else(|| perr(at, "event cut off"));
            match type_len {
                TYPE_PADDING => {
                    if delta == 0 {
                        // The rest of the page is unused.
                        return Ok(None);
                    }
                    // A discarded event: its delta still counts, as in trace-cmd.
                    let len = word(1)? as usize;
                    self.ts = self.ts.wrapping_add(delta);
                    self.pos = at + 4 + len.max(4);
                }
                TYPE_TIME_EXTEND => {
                    let ext = u64::from(word(1)?);
                    self.ts = self.ts.wrapping_add(ext << TS_SHIFT | delta);
                    self.pos = at + 8;
                }
                TYPE_TIME_STAMP => {
                    let mut abs = u64::from(word(1)?) << TS_SHIFT | delta;
                    // Only 59 bits are stored; the top bits come from the current time.
                    if self.ts & TS_MSB != 0 {
                        abs |= self.ts & TS_MSB;
                        if abs < self.ts {
                            abs = abs.wrapping_add(1 << 59);
                        }
                    }
                    self.ts = abs;
                    self.pos = at + 8;
                }
                n => {
                    // The payload: `type_len` words, or as many as the length word says
                    // (which counts itself).
                    let (start, len) = if n == 0 {
                        let len = word(1)? as usize;
                        if len < 4 || len % 4 != 0 {
                            return Err(perr(at, format!("data record with length word {len}")));
                        }
                        (at + 8, len - 4)
                    } else {
                        (at + 4, n as usize * 4)
                    };
                    let payload = self
                        .data
                        .get(start..start + len)
                        .ok_or_else(|| perr(at, format!("{len}-byte record runs past commit")))?;
                    self.ts = self.ts.wrapping_add(delta);
                    self.pos = start + len;
                    return Ok(Some(RawEvent {
                        ts: self.ts,
                        payload,
                    }));
                }
            }
        }
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<RawEvent<'a>, PageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds pages in the kernel's format, for the tests.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct PageBuilder {
    layout: PageLayout,
    timestamp: u64,
    last: u64,
    data: Vec<u8>,
    missed: Missed,
}

#[cfg(test)]
impl PageBuilder {
    /// A page with `layout`, starting at `timestamp`.
    pub fn new(layout: PageLayout, timestamp: u64) -> Self {
        PageBuilder {
            layout,
            timestamp,
            last: timestamp,
            data: Vec::new(),
            missed: Missed::None,
        }
    }

    /// With events missed before it.
    pub fn missed(mut self, m: Missed) -> Self {
        self.missed = m;
        self
    }

    fn room(&self) -> usize {
        self.layout.page_size - self.layout.data_offset - self.data.len()
    }

    /// Append a record at `ts` (not before the previous one). Returns false when the page
    /// is full. Uses a time extend when the delta needs more than 27 bits.
    pub fn push(&mut self, ts: u64, payload: &[u8]) -> bool {
        let delta = ts.saturating_sub(self.last);
        let padded = payload.len().div_ceil(4) * 4;
        let small = padded > 0 && padded <= 28 * 4;
        let need = if small { 4 + padded } else { 8 + padded }
            + if delta >= 1 << TS_SHIFT { 8 } else { 0 };
        if need > self.room() {
            return false;
        }
        let mut d = delta;
        if delta >= 1 << TS_SHIFT {
            let hdr = TYPE_TIME_EXTEND | ((delta as u32 & ((1 << TS_SHIFT) - 1)) << 5);
            self.data.extend_from_slice(&hdr.to_le_bytes());
            self.data
                .extend_from_slice(&((delta >> TS_SHIFT) as u32).to_le_bytes());
            d = 0;
        }
        if small {
            let hdr = (padded / 4) as u32 | ((d as u32) << 5);
            self.data.extend_from_slice(&hdr.to_le_bytes());
        } else {
            self.data
                .extend_from_slice(&((d as u32) << 5).to_le_bytes());
            self.data
                .extend_from_slice(&((padded + 4) as u32).to_le_bytes());
        }
        self.data.extend_from_slice(payload);
        self.data
            .resize(self.data.len() + padded - payload.len(), 0);
        self.last = ts;
        true
    }

    /// Append an absolute timestamp record (as the kernel writes with `timestamp_mode`
    /// absolute), which resets the running time to `ts`.
    pub fn push_absolute(&mut self, ts: u64) {
        let hdr = TYPE_TIME_STAMP | ((ts as u32 & ((1 << TS_SHIFT) - 1)) << 5);
        self.data.extend_from_slice(&hdr.to_le_bytes());
        self.data
            .extend_from_slice(&(((ts & !TS_MSB) >> TS_SHIFT) as u32).to_le_bytes());
        self.last = ts;
    }

    /// Append a discarded record (padding with a length).
    pub fn push_discarded(&mut self, ts: u64, len: usize) {
        let delta = ts.saturating_sub(self.last).max(1) as u32;
        let len = len.div_ceil(4) * 4;
        self.data
            .extend_from_slice(&(TYPE_PADDING | (delta << 5)).to_le_bytes());
        self.data.extend_from_slice(&(len as u32).to_le_bytes());
        self.data.resize(self.data.len() + len - 4, 0);
        self.last = ts;
    }

    /// The full page, as `trace_pipe_raw` returns it.
    pub fn finish(self) -> Vec<u8> {
        let l = self.layout;
        let mut page = vec![0u8; l.page_size];
        page[0..8].copy_from_slice(&self.timestamp.to_le_bytes());
        let mut commit = self.data.len() as u64;
        match self.missed {
            Missed::None => {}
            Missed::Unknown => commit |= MISSED_EVENTS,
            Missed::Count(n) => {
                commit |= MISSED_EVENTS | MISSED_STORED;
                let at = l.data_offset + self.data.len();
                if at + 8 <= page.len() {
                    page[at..at + 8].copy_from_slice(&n.to_le_bytes());
                }
            }
        }
        let c = &mut page[l.commit_offset..l.commit_offset + l.commit_size];
        c.copy_from_slice(&commit.to_le_bytes()[..l.commit_size]);
        page[l.data_offset..l.data_offset + self.data.len()].copy_from_slice(&self.data);
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LAYOUT: PageLayout = PageLayout {
        page_size: 4096,
        commit_offset: 8,
        commit_size: 8,
        data_offset: 16,
    };

    fn all(page: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, PageError> {
        let p = Page::parse(&LAYOUT, page)?;
        p.events()
            .map(|e| e.map(|e| (e.ts, e.payload.to_vec())))
            .collect()
    }

    #[test]
    fn small_large_and_extended_records_round_trip() {
        let mut b = PageBuilder::new(LAYOUT, 1_000);
        assert!(b.push(1_010, &[1, 0, 0, 0, 7, 7, 7, 7]));
        let big = vec![9u8; 200];
        assert!(b.push(1_020, &big));
        // A gap of 2^40 ns needs a time extend.
        assert!(b.push(1_020 + (1 << 40), &[2, 0, 0, 0]));
        let ev = all(&b.finish()).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0], (1_010, vec![1, 0, 0, 0, 7, 7, 7, 7]));
        assert_eq!(ev[1].0, 1_020);
        assert_eq!(ev[1].1, big);
        assert_eq!(ev[2].0, 1_020 + (1 << 40));
    }

    #[test]
    fn absolute_timestamps_and_discarded_records() {
        let mut b = PageBuilder::new(LAYOUT, 5_000);
        b.push(5_001, &[1, 0, 0, 0]);
        b.push_discarded(5_003, 12);
        b.push(5_004, &[2, 0, 0, 0]);
        b.push_absolute(9_000_000_000);
        b.push(9_000_000_100, &[3, 0, 0, 0]);
        let ev = all(&b.finish()).unwrap();
        let ts: Vec<u64> = ev.iter().map(|e| e.0).collect();
        assert_eq!(ts, vec![5_001, 5_004, 9_000_000_000 + 100]);
    }

    #[test]
    fn absolute_timestamps_take_their_top_bits_from_the_running_time() {
        let base = 0xf8u64 << 56 | 12_345;
        let mut b = PageBuilder::new(LAYOUT, base);
        b.push_absolute(base + 77);
        b.push(base + 80, &[1, 0, 0, 0]);
        let ev = all(&b.finish()).unwrap();
        assert_eq!(ev[0].0, base + 80);
    }

    #[test]
    fn lost_events_are_reported() {
        let b = PageBuilder::new(LAYOUT, 1).missed(Missed::Count(42));
        let page = b.finish();
        assert_eq!(
            Page::parse(&LAYOUT, &page).unwrap().missed,
            Missed::Count(42)
        );
        let b = PageBuilder::new(LAYOUT, 1).missed(Missed::Unknown);
        let page = b.finish();
        assert_eq!(Page::parse(&LAYOUT, &page).unwrap().missed, Missed::Unknown);
    }

    #[test]
    fn a_full_page_refuses_more() {
        let mut b = PageBuilder::new(LAYOUT, 0);
        let mut n = 0;
        while b.push(n, &[0u8; 12]) {
            n += 1;
        }
        assert_eq!(n as usize, (4096 - 16) / 16);
        assert_eq!(all(&b.finish()).unwrap().len(), n as usize);
    }

    #[test]
    fn corrupt_pages_are_errors_with_offsets() {
        let mut page = PageBuilder::new(LAYOUT, 0).finish();
        page[8..16].copy_from_slice(&5000u64.to_le_bytes());
        let e = Page::parse(&LAYOUT, &page).unwrap_err();
        assert!(e.reason.contains("5000"), "{e}");
        // A type-0 record claiming more bytes than committed.
        let mut b = PageBuilder::new(LAYOUT, 0);
        b.push(1, &[0u8; 200]);
        let mut page = b.finish();
        page[20..24].copy_from_slice(&4000u32.to_le_bytes());
        let e = all(&page).unwrap_err();
        assert!(e.reason.contains("runs past commit"), "{e}");
        assert!(Page::parse(&LAYOUT, &page[..10]).is_err());
    }

    proptest! {
        #[test]
        fn random_corruption_gives_errors_not_panics(
            flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..40),
            cut in 0usize..5000,
        ) {
            let mut b = PageBuilder::new(LAYOUT, 77);
            for i in 0..100u64 {
                let len = (i as usize * 7) % 150 + 4;
                if !b.push(77 + i * 1000, &vec![i as u8; len]) { break; }
            }
            let mut page = b.finish();
            for (at, v) in flips { page[at] = v; }
            page.truncate(cut.min(page.len()));
            if let Ok(p) = Page::parse(&LAYOUT, &page) {
                for e in p.events().flatten() {
                    prop_assert!(e.payload.len() <= 4096);
                }
            }
        }

        #[test]
        fn any_sequence_of_records_round_trips(
            recs in proptest::collection::vec((0u64..(1 << 33), 1usize..300), 1..60)
        ) {
            let mut b = PageBuilder::new(LAYOUT, 10);
            let mut ts = 10;
            let mut want = Vec::new();
            for (d, len) in recs {
                ts += d;
                let payload = vec![(len % 251) as u8; len];
                if !b.push(ts, &payload) { break; }
                want.push((ts, len));
            }
            let got = all(&b.finish()).unwrap();
            prop_assert_eq!(got.len(), want.len());
            for ((gt, gp), (wt, wl)) in got.iter().zip(&want) {
                prop_assert_eq!(gt, wt);
                prop_assert!(gp.len() >= *wl && gp.len() < wl + 4);
            }
        }
    }
}
