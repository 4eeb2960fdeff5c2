//! `/proc/interrupts`, `/proc/softirqs` and per-IRQ affinity under `/proc/irq`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cpus::CpuSet;

/// One row of `/proc/interrupts` or `/proc/softirqs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterruptRow {
    /// The row label: an IRQ number (`24`) or a name (`LOC`, `RES`, `TIMER`).
    pub name: String,
    /// Count per CPU, for the CPUs that have a column. Rows with a single total (`ERR`,
    /// `MIS`) have one entry, under the first CPU column.
    pub counts: BTreeMap<u32, u64>,
    /// The text after the counts: chip, hardware IRQ and actions for device IRQs
    /// (`IO-APIC 4-edge ttyS0`), a description for architecture rows.
    pub description: String,
}

impl InterruptRow {
    /// The IRQ number, for device interrupt rows.
    pub fn irq(&self) -> Option<u32> {
        self.name.parse().ok()
    }

    /// For device IRQs, the action names (the device): the description less chip and
    /// hardware IRQ fields.
    pub fn device(&self) -> String {
        if self.irq().is_none() {
            return self.description.clone();
        }
        let words: Vec<&str> = self.description.split_whitespace().collect();
        // chip, then "hwirq-type" (e.g. "4-edge"), then actions; some chips omit the type.
        let skip = words
            .iter()
            .position(|w| w.ends_with("-edge") || w.ends_with("-level") || w.ends_with("-fasteoi"))
            .map(|i| i + 1)
            .unwrap_or(words.len().min(2));
        words[skip.min(words.len())..].join(" ")
    }

    /// Total over the given CPUs.
    pub fn total_on(&self, cpus: &CpuSet) -> u64 {
        self.counts
            .iter()
            .filter(|(c, _)| cpus.contains(**c))
            .map(|(_, n)| n)
            .sum()
    }
}

/// A parsed `/proc/interrupts` or `/proc/softirqs` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InterruptTable {
    /// The CPUs that have a column (online CPUs).
    pub cpus: Vec<u32>,
    /// One row per interrupt source.
    pub rows: Vec<InterruptRow>,
}

/// The table could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TableError {
    /// The line (1-based).
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl InterruptTable {
    /// Parse the text of `/proc/interrupts` or `/proc/softirqs`.
    pub fn parse(text: &str) -> Result<InterruptTable, TableError> {
        let mut lines = text.lines().enumerate();
        let (_, header) = lines.next().ok_or(TableError {
            line: 1,
            reason: "empty file".into(),
        })?;
        let cpus: Vec<u32> = header
            .split_whitespace()
            .map(|w| {
                w.strip_prefix("CPU")
                    .and_then(|n| n.parse().ok())
                    .ok_or(TableError {
                        line: 1,
                        reason: format!("expected CPUn column headers, found {w:?}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let (name, rest) = line.split_once(':').ok_or(TableError {
                line: i + 1,
                reason: "expected 'NAME:' at the start".into(),
            })?;
            let mut counts = BTreeMap::new();
            let mut remaining = rest;
            for &cpu in &cpus {
                let trimmed = remaining.trim_start();
                let end = trimmed
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(trimmed.len());
                if end == 0 {
                    break;
                }
                let n: u64 = trimmed[..end].parse().map_err(|_| TableError {
                    line: i + 1,
                    reason: "count out of range".into(),
                })?;
                counts.insert(cpu, n);
                remaining = &trimmed[end..];
            }
            rows.push(InterruptRow {
                name: name.trim().to_string(),
                counts,
                description: remaining.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
        Ok(InterruptTable { cpus, rows })
    }

    /// The row with this label (`LOC`, `24`, `TIMER`).
    pub fn row(&self, name: &str) -> Option<&InterruptRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Count of a row on a CPU (`None` if the row or column is missing).
    pub fn count(&self, name: &str, cpu: u32) -> Option<u64> {
        self.row(name)?.counts.get(&cpu).copied()
    }

    /// Interrupts `cpu` has taken: every row with a count per CPU, less the rows that
    /// count something else or count twice on x86 (`TLB`: shootdowns already counted as
    /// `CAL`; `PMI`: performance interrupts already counted as `NMI`; `MCP`: machine-check
    /// polls, which are timer work; `RTR`: APIC read retries). What `isol watch` sees as
    /// one interrupt each.
    pub fn interrupts_on(&self, cpu: u32) -> u64 {
        const NOT_INTERRUPTS: [&str; 4] = ["TLB", "PMI", "MCP", "RTR"];
        self.rows
            .iter()
            .filter(|r| r.counts.len() == self.cpus.len() || self.cpus.len() == 1)
            .filter(|r| !NOT_INTERRUPTS.contains(&r.name.as_str()))
            .filter_map(|r| r.counts.get(&cpu))
            .sum()
    }

    /// Device IRQ rows.
    pub fn devices(&self) -> impl Iterator<Item = &InterruptRow> {
        self.rows.iter().filter(|r| r.irq().is_some())
    }
}

/// What `/proc/irq/N/` says about one interrupt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IrqAffinity {
    /// The IRQ number.
    pub irq: u32,
    /// `smp_affinity_list`: where the IRQ may be delivered (settable).
    pub affinity: Option<CpuSet>,
    /// `effective_affinity_list`: where it is actually delivered.
    pub effective: Option<CpuSet>,
    /// Whether the kernel manages the affinity (it cannot be changed from userspace).
    /// `None` when the kernel does not say (debugfs not mounted).
    pub managed: Option<bool>,
    /// Action names (the subdirectories of `/proc/irq/N`).
    pub actions: Vec<String>,
}

/// Whether a debugfs `irqs/N` entry shows a managed affinity.
pub fn debugfs_says_managed(text: &str) -> bool {
    text.contains("AFFINITY_MANAGED")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "           CPU0       CPU1       \n  \
 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n \
 26:          0         14  IO-APIC   4-edge      ttyS0\n \
 36:          0      39890 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
NMI:          0          0   Non-maskable interrupts\n\
LOC:       8504      10495   Local timer interrupts\n\
ERR:          0\n\
MIS:          0\n";

    #[test]
    fn parses_rows_and_devices() {
        let t = InterruptTable::parse(HOST).unwrap();
        assert_eq!(t.cpus, vec![0, 1]);
        assert_eq!(t.count("LOC", 1), Some(10495));
        assert_eq!(t.count("26", 1), Some(14));
        assert_eq!(t.row("26").unwrap().device(), "ttyS0");
        assert_eq!(t.row("36").unwrap().device(), "virtio1-req.0");
        assert_eq!(t.row("LOC").unwrap().description, "Local timer interrupts");
        assert_eq!(t.row("ERR").unwrap().counts.len(), 1);
        assert_eq!(t.devices().count(), 3);
        assert_eq!(
            t.row("LOC")
                .unwrap()
                .total_on(&CpuSet::parse_list("0-1").unwrap()),
            18999
        );
    }

    /// Each interrupt once: TLB shootdowns are also CAL, PMIs also NMIs, MCP counts polls.
    #[test]
    fn interrupts_are_counted_once() {
        let t = InterruptTable::parse(&format!(
            "{HOST}CAL:  13  61  Function call interrupts\nTLB:  0  9  TLB shootdowns\n\
             PMI:  0  3  Performance monitoring interrupts\nMCP:  1  1  Machine check polls\n"
        ))
        .unwrap();
        assert_eq!(t.interrupts_on(1), 14 + 39890 + 10495 + 61);
        assert_eq!(t.interrupts_on(0), 1 + 8504 + 13);
    }

    #[test]
    fn offline_cpus_have_no_column() {
        let t =
            InterruptTable::parse("  CPU0  CPU2\nLOC:  5  7  Local timer interrupts\n").unwrap();
        assert_eq!(t.cpus, vec![0, 2]);
        assert_eq!(t.count("LOC", 2), Some(7));
        assert_eq!(t.count("LOC", 1), None);
    }

    #[test]
    fn softirqs() {
        let t = InterruptTable::parse(
            "                    CPU0       CPU1       \n          HI:          0          0\n       TIMER:       2336       2277\n",
        )
        .unwrap();
        assert_eq!(t.count("TIMER", 1), Some(2277));
    }

    #[test]
    fn rejects_garbage() {
        assert!(InterruptTable::parse("").is_err());
        assert!(InterruptTable::parse("hello\n").is_err());
        assert_eq!(
            InterruptTable::parse("CPU0\nno colon\n").unwrap_err().line,
            2
        );
    }

    #[test]
    fn managed_flag() {
        assert!(debugfs_says_managed(
            "handler:  handle_edge_irq\nflags:    0x1\n             IRQD_AFFINITY_MANAGED\n"
        ));
        assert!(!debugfs_says_managed("flags: IRQD_LEVEL\n"));
    }
}
