//! `CpuSet`: a set of CPU numbers, with the kernel's two textual forms.
//!
//! * The **list** form (`0-3,8,10-11`), as in `/sys/devices/system/cpu/online`, `nohz_full=`
//!   and `smp_affinity_list`. The kernel's `bitmap_parselist()` also accepts a stride form
//!   `a-b:used/group` (`0-15:2/4` is `0,1,4,5,8,9,12,13`) and, since Linux 5.13, `N` for the
//!   last CPU; [`CpuSet::parse_list_with_last`] resolves `N` and `all` when the caller knows
//!   the last CPU.
//! * The **mask** form (`ff,ffffffff`), as in `smp_affinity` and the workqueue cpumask:
//!   hexadecimal, in 32-bit groups separated by commas, most significant group first.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Highest CPU number accepted (the kernel's `NR_CPUS` maximum is 8192).
pub const MAX_CPU: u32 = 8191;

/// A set of CPU numbers.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuSet {
    /// Bit `n` of `words[n / 64]` is CPU `n`; no trailing zero words.
    words: Vec<u64>,
}

/// A CPU list or mask that could not be parsed: the text, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU {form} {input:?} at position {position}: {reason}")]
pub struct CpuListError {
    /// `list` or `mask`.
    pub form: &'static str,
    /// The whole text that was parsed.
    pub input: String,
    /// Byte offset of the offending character (0-based).
    pub position: usize,
    /// What was expected there.
    pub reason: String,
}

impl CpuSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPUs `first..=last`.
    pub fn range(first: u32, last: u32) -> Self {
        let mut s = Self::new();
        for c in first..=last {
            s.insert(c);
        }
        s
    }

    /// Add a CPU.
    pub fn insert(&mut self, cpu: u32) {
        let w = (cpu / 64) as usize;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (cpu % 64);
    }

    /// Remove a CPU.
    pub fn remove(&mut self, cpu: u32) {
        let w = (cpu / 64) as usize;
        if let Some(word) = self.words.get_mut(w) {
            *word &= !(1 << (cpu % 64));
        }
        self.trim();
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.words
            .get((cpu / 64) as usize)
            .is_some_and(|w| w & (1 << (cpu % 64)) != 0)
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The CPUs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u32 * 64 + b)
        })
    }

    /// The first (lowest) CPU.
    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    /// The last (highest) CPU.
    pub fn last(&self) -> Option<u32> {
        let (i, w) = self.words.iter().enumerate().next_back()?;
        Some(i as u32 * 64 + 63 - w.leading_zeros())
    }

    /// CPUs in either set.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        let n = self.words.len().max(other.words.len());
        let words = (0..n)
            .map(|i| self.word(i) | other.word(i))
            .collect::<Vec<_>>();
        CpuSet { words }.trimmed()
    }

    /// CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        let n = self.words.len().min(other.words.len());
        let words = (0..n).map(|i| self.word(i) & other.word(i)).collect();
        CpuSet { words }.trimmed()
    }

    /// CPUs in `self` but not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        let words = (0..self.words.len())
            .map(|i| self.word(i) & !other.word(i))
            .collect();
        CpuSet { words }.trimmed()
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.difference(other).is_empty()
    }

    /// Whether the sets share a CPU.
    pub fn intersects(&self, other: &CpuSet) -> bool {
        !self.intersection(other).is_empty()
    }

    fn word(&self, i: usize) -> u64 {
        self.words.get(i).copied().unwrap_or(0)
    }

    fn trim(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    fn trimmed(mut self) -> Self {
        self.trim();
        self
    }

    /// Parse the kernel's list form. `N` and `all` are refused: use
    /// [`CpuSet::parse_list_with_last`] when the last CPU is known.
    pub fn parse_list(text: &str) -> Result<CpuSet, CpuListError> {
        ListParser::new(text, None).parse()
    }

    /// Parse the list form, resolving `N` (the last CPU) and `all` (every CPU up to it).
    pub fn parse_list_with_last(text: &str, last_cpu: u32) -> Result<CpuSet, CpuListError> {
        ListParser::new(text, Some(last_cpu)).parse()
    }

    /// Parse the kernel's mask form (`ff,ffffffff`); `0x` prefixes are accepted.
    pub fn parse_mask(text: &str) -> Result<CpuSet, CpuListError> {
        let trimmed = text.trim();
        let offset = text.len() - text.trim_start().len();
        let err = |position: usize, reason: &str| CpuListError {
            form: "mask",
            input: text.trim().to_string(),
            position: position - offset,
            reason: reason.to_string(),
        };
        if trimmed.is_empty() {
            return Err(err(offset, "expected hexadecimal digits, found nothing"));
        }
        let mut set = CpuSet::new();
        let groups: Vec<&str> = trimmed.split(',').collect();
        let mut pos = offset;
        let mut bits: Vec<(u32, u32)> = Vec::new(); // (group index from the right, value)
        for (gi, group) in groups.iter().enumerate() {
            let g = group
                .strip_prefix("0x")
                .or_else(|| group.strip_prefix("0X"));
            let (digits, skip) = match g {
                Some(d) if gi == 0 => (d, 2),
                _ => (*group, 0),
            };
            if digits.is_empty() {
                return Err(err(pos + skip, "expected hexadecimal digits"));
            }
            if digits.len() > 8 {
                return Err(err(
                    pos + skip + 8,
                    "a group has at most 8 hexadecimal digits",
                ));
            }
            if let Some(i) = digits.find(|c: char| !c.is_ascii_hexdigit()) {
                return Err(err(pos + skip + i, "expected a hexadecimal digit"));
            }
            let value = u32::from_str_radix(digits, 16).expect("validated hex digits");
            bits.push(((groups.len() - 1 - gi) as u32, value));
            pos += group.len() + 1;
        }
        for (g, value) in bits {
            for b in 0..32 {
                if value & (1 << b) != 0 {
                    let cpu = g * 32 + b;
                    if cpu > MAX_CPU {
                        return Err(err(offset, "mask names a CPU above 8191"));
                    }
                    set.insert(cpu);
                }
            }
        }
        Ok(set)
    }

    /// The set for a sentence: `CPU 3`, `CPUs 2-7`, or `no CPU`.
    pub fn named(&self) -> String {
        match self.len() {
            0 => "no CPU".into(),
            1 => format!("CPU {}", self.to_list()),
            _ => format!("CPUs {}", self.to_list()),
        }
    }

    /// The list form, in the kernel's style: ascending ranges, `""` for the empty set.
    pub fn to_list(&self) -> String {
        let mut out = String::new();
        let mut iter = self.iter().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end = iter.next().expect("peeked");
            }
            if !out.is_empty() {
                out.push(',');
            }
            if start == end {
                out.push_str(&start.to_string());
            } else {
                out.push_str(&format!("{start}-{end}"));
            }
        }
        out
    }

    /// The mask form, in the kernel's style for a machine with `nr_cpus` possible CPUs:
    /// 32-bit groups, most significant first, every group but the first zero-padded to 8
    /// digits, the first as wide as `nr_cpus` needs (`3` for 2 CPUs, `ff,ffffffff` for 40).
    pub fn to_mask(&self, nr_cpus: u32) -> String {
        let bits = nr_cpus.max(self.last().map_or(1, |l| l + 1)).max(1);
        let groups = bits.div_ceil(32);
        let mut out = String::new();
        for g in (0..groups).rev() {
            let mut value: u32 = 0;
            for b in 0..32 {
                if self.contains(g * 32 + b) {
                    value |= 1 << b;
                }
            }
            if g == groups - 1 {
                let width = (bits - g * 32).div_ceil(4) as usize;
                out.push_str(&format!("{value:0width$x}"));
            } else {
                out.push_str(&format!(",{value:08x}"));
            }
        }
        out
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<T: IntoIterator<Item = u32>>(iter: T) -> Self {
        let mut s = CpuSet::new();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_list())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({})", self.to_list())
    }
}

impl std::str::FromStr for CpuSet {
    type Err = CpuListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuSet::parse_list(s)
    }
}

impl Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_list())
    }
}

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CpuSet::parse_list(&s).map_err(serde::de::Error::custom)
    }
}

/// A small recursive-descent parser over the list form, tracking positions for errors.
struct ListParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    last: Option<u32>,
}

impl<'a> ListParser<'a> {
    fn new(text: &'a str, last: Option<u32>) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            last,
        }
    }

    fn error(&self, position: usize, reason: impl Into<String>) -> CpuListError {
        CpuListError {
            form: "list",
            input: self.text.trim_end().to_string(),
            position,
            reason: reason.into(),
        }
    }

    fn parse(mut self) -> Result<CpuSet, CpuListError> {
        let mut set = CpuSet::new();
        // The kernel's files end in a newline; surrounding blanks are tolerated.
        let end = self.text.trim_end().len();
        self.pos = self.text.len() - self.text.trim_start().len();
        self.bytes = &self.text.as_bytes()[..end];
        if self.pos >= end {
            return Ok(set);
        }
        if &self.text[self.pos..end] == "all" {
            let last = self
                .last
                .ok_or_else(|| self.error(self.pos, "\"all\" needs the number of CPUs"))?;
            return Ok(CpuSet::range(0, last));
        }
        loop {
            self.region(&mut set)?;
            match self.peek() {
                None => return Ok(set),
                Some(b',') => {
                    self.pos += 1;
                    if self.peek().is_none() {
                        return Err(self.error(self.pos, "expected a CPU number after ','"));
                    }
                }
                Some(_) => {
                    return Err(self.error(
                        self.pos,
                        format!("unexpected {}, expected ',' or '-'", self.here()),
                    ))
                }
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The character at the position, quoted and escaped for a message (the parser only
    /// steps over ASCII, so the position is on a character boundary).
    fn here(&self) -> String {
        self.text
            .get(self.pos..)
            .and_then(|t| t.chars().next())
            .map_or_else(|| "the end".into(), |c| format!("{c:?}"))
    }

    fn number(&mut self) -> Result<u32, CpuListError> {
        let start = self.pos;
        if self.peek() == Some(b'N') {
            self.pos += 1;
            return self
                .last
                .ok_or_else(|| self.error(start, "\"N\" (the last CPU) needs the number of CPUs"));
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            let what = match self.peek() {
                Some(_) => format!("expected a CPU number, found {}", self.here()),
                None => "expected a CPU number, found the end".to_string(),
            };
            return Err(self.error(start, what));
        }
        let value: u32 = self.text[start..self.pos]
            .parse()
            .map_err(|_| self.error(start, "number too large"))?;
        if value > MAX_CPU {
            return Err(self.error(start, format!("CPU {value} is above the maximum {MAX_CPU}")));
        }
        Ok(value)
    }

    fn region(&mut self, set: &mut CpuSet) -> Result<(), CpuListError> {
        let first = self.number()?;
        if self.peek() != Some(b'-') {
            set.insert(first);
            return Ok(());
        }
        self.pos += 1;
        let last_pos = self.pos;
        let last = self.number()?;
        if last < first {
            return Err(self.error(
                last_pos,
                format!("range {first}-{last} ends before it starts"),
            ));
        }
        let (mut used, mut group) = (1, 1);
        if self.peek() == Some(b':') {
            self.pos += 1;
            let used_pos = self.pos;
            used = self.number()?;
            if self.peek() != Some(b'/') {
                return Err(self.error(self.pos, "expected '/' in the a-b:used/group form"));
            }
            self.pos += 1;
            let group_pos = self.pos;
            group = self.number()?;
            if group == 0 {
                return Err(self.error(group_pos, "group size must be at least 1"));
            }
            if used == 0 || used > group {
                return Err(self.error(
                    used_pos,
                    format!("used ({used}) must be between 1 and the group size ({group})"),
                ));
            }
        }
        let mut cpu = first;
        while cpu <= last {
            if (cpu - first) % group < used {
                set.insert(cpu);
            }
            cpu += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_lists() {
        assert_eq!(
            CpuSet::parse_list("0-3,8,10-11\n").unwrap().to_list(),
            "0-3,8,10-11"
        );
        assert_eq!(CpuSet::parse_list("").unwrap(), CpuSet::new());
        assert_eq!(CpuSet::parse_list("\n").unwrap(), CpuSet::new());
        assert_eq!(CpuSet::parse_list("5,1,3-4").unwrap().to_list(), "1,3-5");
    }

    #[test]
    fn parses_stride_form() {
        let s = CpuSet::parse_list("0-15:2/4").unwrap();
        assert_eq!(s.to_list(), "0-1,4-5,8-9,12-13");
        assert_eq!(CpuSet::parse_list("2-9:1/3").unwrap().to_list(), "2,5,8");
    }

    #[test]
    fn resolves_last_cpu() {
        assert_eq!(
            CpuSet::parse_list_with_last("1-N", 7).unwrap().to_list(),
            "1-7"
        );
        assert_eq!(
            CpuSet::parse_list_with_last("all", 3).unwrap().to_list(),
            "0-3"
        );
        let e = CpuSet::parse_list("1-N").unwrap_err();
        assert_eq!(e.position, 2);
    }

    #[test]
    fn errors_name_text_and_position() {
        let e = CpuSet::parse_list("0-x").unwrap_err();
        assert_eq!((e.position, e.input.as_str()), (2, "0-x"));
        assert_eq!(
            e.to_string(),
            "invalid CPU list \"0-x\" at position 2: expected a CPU number, found 'x'"
        );
        assert_eq!(CpuSet::parse_list("3-1").unwrap_err().position, 2);
        assert_eq!(CpuSet::parse_list("1,,2").unwrap_err().position, 2);
        assert_eq!(CpuSet::parse_list("1,").unwrap_err().position, 2);
        assert_eq!(CpuSet::parse_list("1 2").unwrap_err().position, 1);
        assert_eq!(CpuSet::parse_list("0-7:3/2").unwrap_err().position, 4);
        assert_eq!(CpuSet::parse_list("0-7:1/0").unwrap_err().position, 6);
        assert!(CpuSet::parse_list("9000")
            .unwrap_err()
            .reason
            .contains("maximum"));
        assert_eq!(CpuSet::parse_mask("f,zz").unwrap_err().position, 2);
        assert_eq!(CpuSet::parse_mask("123456789").unwrap_err().form, "mask");
    }

    #[test]
    fn masks_in_kernel_style() {
        assert_eq!(
            CpuSet::parse_mask("ff,ffffffff\n").unwrap().to_list(),
            "0-39"
        );
        assert_eq!(CpuSet::parse_mask("3").unwrap().to_list(), "0-1");
        assert_eq!(CpuSet::parse_mask("0x2").unwrap().to_list(), "1");
        assert_eq!(
            CpuSet::parse_mask("00000000,00000000").unwrap(),
            CpuSet::new()
        );
        assert_eq!(CpuSet::range(0, 1).to_mask(2), "3");
        assert_eq!(CpuSet::range(0, 39).to_mask(40), "ff,ffffffff");
        assert_eq!(
            CpuSet::parse_list("1").unwrap().to_mask(64),
            "00000000,00000002"
        );
        assert_eq!(CpuSet::new().to_mask(2), "0");
    }

    #[test]
    fn set_operations() {
        let a = CpuSet::parse_list("0-3").unwrap();
        let b = CpuSet::parse_list("2-5,70").unwrap();
        assert_eq!(a.union(&b).to_list(), "0-5,70");
        assert_eq!(a.intersection(&b).to_list(), "2-3");
        assert_eq!(b.difference(&a).to_list(), "4-5,70");
        assert!(CpuSet::parse_list("1-2").unwrap().is_subset(&a));
        assert_eq!(b.last(), Some(70));
        assert_eq!(b.len(), 5);
        let mut c = b.clone();
        c.remove(70);
        assert_eq!(c.last(), Some(5));
    }

    fn arb_set() -> impl Strategy<Value = CpuSet> {
        proptest::collection::btree_set(0u32..300, 0..40).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn list_round_trips(set in arb_set()) {
            prop_assert_eq!(CpuSet::parse_list(&set.to_list()).unwrap(), set);
        }

        #[test]
        fn list_text_round_trips(set in arb_set()) {
            let text = set.to_list();
            prop_assert_eq!(CpuSet::parse_list(&text).unwrap().to_list(), text);
        }

        #[test]
        fn masks_and_lists_agree(set in arb_set(), extra in 0u32..300) {
            let mask = set.to_mask(extra);
            prop_assert_eq!(CpuSet::parse_mask(&mask).unwrap(), set.clone());
            prop_assert_eq!(CpuSet::parse_mask(&mask).unwrap().to_list(), set.to_list());
        }

        #[test]
        fn stride_matches_definition(first in 0u32..64, len in 0u32..64, used in 1u32..8, extra in 0u32..8) {
            let group = used + extra;
            let last = first + len;
            let s = CpuSet::parse_list(&format!("{first}-{last}:{used}/{group}")).unwrap();
            for cpu in 0..200 {
                let expect = cpu >= first && cpu <= last && (cpu - first) % group < used;
                prop_assert_eq!(s.contains(cpu), expect);
            }
        }

        #[test]
        fn garbage_never_panics(text in "[0-9,:/N a-f-]{0,20}") {
            let _ = CpuSet::parse_list(&text);
            let _ = CpuSet::parse_mask(&text);
        }
    }
}
