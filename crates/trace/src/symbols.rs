//! Kernel symbols from `/proc/kallsyms`, to name the functions trace events carry as raw
//! pointers (timer callbacks, IPI callbacks and callsites, work functions, stack frames).

use crate::SysRoot;

/// A sorted symbol table. Empty when kallsyms hides addresses (not root, or
/// `kernel.kptr_restrict` = 2): names then fall back to hexadecimal addresses.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    addrs: Vec<u64>,
    names: Vec<Box<str>>,
}

/// Symbols further than this from the nearest one below are not attributed to it.
const MAX_DISTANCE: u64 = 1 << 20;

impl Symbols {
    /// Load `/proc/kallsyms` through `root`. A missing or address-less file gives an empty
    /// table, never an error: symbol names are a convenience, addresses stay exact.
    pub fn load(root: &SysRoot) -> Symbols {
        root.read("/proc/kallsyms")
            .map(|t| Symbols::parse(&t))
            .unwrap_or_default()
    }

    /// Parse kallsyms text: `ffffffff81000000 T _text [module]`.
    pub fn parse(text: &str) -> Symbols {
        let mut pairs: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let _kind = it.next()?;
                let name = it.next()?;
                (addr != 0).then_some((addr, name))
            })
            .collect();
        pairs.sort_by_key(|&(a, _)| a);
        pairs.dedup_by_key(|p| p.0);
        Symbols {
            addrs: pairs.iter().map(|p| p.0).collect(),
            names: pairs.iter().map(|p| p.1.into()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// How many symbols were loaded.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.addrs.partition_point(|&a| a <= addr).checked_sub(1)?;
        let off = addr - self.addrs[i];
        (off < MAX_DISTANCE).then(|| (&*self.names[i], off))
    }

    /// The address of the symbol `name` (the first, if several share it).
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .map(|i| self.addrs[i])
    }

    /// A function's name: `vmstat_update`, or `0xffffffffc0123456` when unknown. A null
    /// pointer is None.
    pub fn name(&self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        Some(match self.lookup(addr) {
            Some((n, _)) => n.to_string(),
            None => format!("{addr:#x}"),
        })
    }

    /// The `kallsyms` lines of the symbols containing `addrs`: what a recording needs to
    /// name its addresses without keeping the whole table.
    pub fn subset(&self, addrs: impl IntoIterator<Item = u64>) -> String {
        let mut idx: Vec<usize> = addrs
            .into_iter()
            .filter_map(|a| {
                let i = self.addrs.partition_point(|&x| x <= a).checked_sub(1)?;
                (a - self.addrs[i] < MAX_DISTANCE).then_some(i)
            })
            .collect();
        idx.sort_unstable();
        idx.dedup();
        let mut out = String::new();
        for i in idx {
            out.push_str(&format!("{:016x} t {}\n", self.addrs[i], self.names[i]));
            // The next symbol bounds the previous one.
            if let Some(a) = self.addrs.get(i + 1) {
                out.push_str(&format!("{:016x} t {}\n", a, self.names[i + 1]));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "ffffffff81000000 T _text
ffffffff81001000 t vmstat_update
ffffffff81001200 T tick_nohz_handler
0000000000000000 A fixed_percpu_data
ffffffffc0100000 t e1000_intr\t[e1000]
";

    #[test]
    fn lookup_names_the_containing_function() {
        let s = Symbols::parse(TEXT);
        assert_eq!(s.len(), 4);
        assert_eq!(s.lookup(0xffffffff81001010), Some(("vmstat_update", 0x10)));
        assert_eq!(
            s.name(0xffffffff81001200).as_deref(),
            Some("tick_nohz_handler")
        );
        assert_eq!(s.name(0xffffffffc0100004).as_deref(), Some("e1000_intr"));
        assert_eq!(s.name(0x1000).as_deref(), Some("0x1000"));
        assert_eq!(s.name(0), None);
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        let s = Symbols::parse("0000000000000000 T _text\n0000000000000000 t foo\n");
        assert!(s.is_empty());
        assert_eq!(
            s.name(0xffffffff81000000).as_deref(),
            Some("0xffffffff81000000")
        );
    }

    #[test]
    fn subset_keeps_what_the_addresses_need() {
        let s = Symbols::parse(TEXT);
        let sub = Symbols::parse(&s.subset([0xffffffff81001010]));
        assert_eq!(
            sub.name(0xffffffff81001010).as_deref(),
            Some("vmstat_update")
        );
        assert_eq!(sub.len(), 2);
    }
}
