//! How isol writes a duration for people: one short form, shared by every command.

/// A duration in ns, in the unit that reads best: `850ns`, `12.3us`, `4.00ms`, `1.25s`.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_ns;

    #[test]
    fn each_range_has_its_unit() {
        assert_eq!(fmt_ns(0), "0ns");
        assert_eq!(fmt_ns(999), "999ns");
        assert_eq!(fmt_ns(12_345), "12.3us");
        assert_eq!(fmt_ns(4_000_000), "4.00ms");
        assert_eq!(fmt_ns(1_250_000_000), "1.25s");
    }
}
