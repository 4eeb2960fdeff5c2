//! The probe as a library call on this machine (host tier, root): the calling thread's
//! placement and policy are as they were, and none of the probe's threads is left.

use isol::kernel::KernelModel;
use isol::probe::{self, Options};
use isol::target::Target;
use isol::{CpuSet, SysRoot};

#[test]
fn the_probe_leaves_the_caller_as_it_found_it() {
    if !isol::is_root() {
        eprintln!("skipped: the probe needs root");
        return;
    }
    let root = SysRoot::live();
    let model = KernelModel::load(&root);
    let Some(last) = model.cpus.online.as_ref().and_then(|o| o.last()) else {
        eprintln!("skipped: the online CPUs cannot be read");
        return;
    };
    if last == 0 {
        eprintln!("skipped: one CPU only");
        return;
    }
    let target = Target::choose(&model, Some(&CpuSet::from_iter([last]))).unwrap();
    let before = isol_sys::thread::affinity().unwrap();
    let policy = isol_sys::thread::Policy::current().unwrap();
    let opts = Options {
        window: std::time::Duration::from_millis(200),
        busy: true,
        ..Options::default()
    };
    let p = probe::probe(&root, &model, &target, &opts).unwrap();
    assert_eq!(p.results.len(), 2, "{p:?}");
    assert_eq!(isol_sys::thread::affinity().unwrap(), before);
    assert_eq!(isol_sys::thread::Policy::current().unwrap(), policy);
    let mine = std::fs::read_dir("/proc/self/task").unwrap();
    for t in mine.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        assert!(!comm.starts_with("isol-probe"), "left behind: {comm}");
    }
}
