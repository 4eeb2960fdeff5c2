//! The scheduler's debug file (`/sys/kernel/debug/sched/debug`, 5.13 and later; before,
//! `/proc/sched_debug`): the length of each CPU's run queue, read in one file instead of
//! every task's `stat`.

use crate::SysRoot;

/// Where the file is, newest first.
pub const PATHS: [&str; 2] = ["/sys/kernel/debug/sched/debug", "/proc/sched_debug"];

/// `rq->nr_running` of `cpu` (the tasks on its run queue, the running one included), from
/// the first `.nr_running` line of its `cpu#N` section. None when the file cannot be read
/// (debugfs not mounted, not root) or has no such section.
pub fn nr_running(root: &SysRoot, cpu: u32) -> Option<u64> {
    PATHS
        .iter()
        .find_map(|p| root.read(p).ok())
        .and_then(|text| parse_nr_running(&text, cpu))
}

/// [`nr_running`] from the file's text.
pub fn parse_nr_running(text: &str, cpu: u32) -> Option<u64> {
    // `cpu#N, F MHz` on x86, `cpu#N` elsewhere.
    let head = format!("cpu#{cpu}");
    let mut lines = text.lines().skip_while(|l| {
        l.strip_prefix(&head)
            .is_none_or(|rest| !(rest.is_empty() || rest.starts_with(',')))
    });
    lines.next()?;
    lines
        .take_while(|l| !l.starts_with("cpu#"))
        .find_map(|l| l.trim().strip_prefix(".nr_running"))
        .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parse_nr_running;

    /// The shape of 6.12's file (cut): the run queue's count first, the fair class's after.
    const TEXT: &str = "Sched Debug Version: v0.11, 6.12.118+deb12-cloud-amd64 #1\n\
ktime                                   : 6312.551230\n\
\n\
cpu#0, 2599.987 MHz\n\
  .nr_running                    : 3\n\
  .nr_switches                   : 41529\n\
cfs_rq[0]:/\n\
  .nr_running                    : 2\n\
\n\
cpu#1, 2599.987 MHz\n\
  .nr_running                    : 1\n\
cfs_rq[1]:/\n\
  .nr_running                    : 0\n\
\n\
cpu#12, 2599.987 MHz\n\
  .nr_switches                   : 7\n";

    #[test]
    fn each_cpu_reads_its_own_run_queue() {
        assert_eq!(parse_nr_running(TEXT, 0), Some(3));
        assert_eq!(parse_nr_running(TEXT, 1), Some(1));
        // `cpu#1,` is not `cpu#12,`; a section without the line says nothing.
        assert_eq!(parse_nr_running(TEXT, 12), None);
        assert_eq!(parse_nr_running(TEXT, 2), None);
        assert_eq!(parse_nr_running("", 0), None);
        // Without the frequency (not x86).
        let plain = "cpu#3\n  .nr_running : 2\n";
        assert_eq!(parse_nr_running(plain, 3), Some(2));
    }
}
