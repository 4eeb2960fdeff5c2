//! apply and restore against a hostile tree and journal: links planted while apply runs,
//! and journals naming files apply never writes.

mod apply_support;

use std::io;
use std::path::PathBuf;

use apply_support::*;
use isol::apply::{self, DirSystem, Options, Outcome, StateDir, System};
use isol::CpuSet;

/// A system whose tree's owner swaps `proc/sys/vm` for a link to a directory outside the
/// tree once apply has begun writing (after every up-front check).
struct Swapping {
    inner: DirSystem,
    root: PathBuf,
    outside: PathBuf,
    swapped: bool,
}

impl System for Swapping {
    fn read(&self, path: &str) -> io::Result<String> {
        self.inner.read(path)
    }
    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        if !self.swapped {
            let vm = self.root.join("proc/sys/vm");
            std::fs::rename(&vm, self.root.join("proc/sys/vm.real")).unwrap();
            std::os::unix::fs::symlink(&self.outside, &vm).unwrap();
            self.swapped = true;
        }
        self.inner.write(path, value)
    }
    fn affinity(&self, pid: u32, tid: u32) -> io::Result<(CpuSet, u64)> {
        self.inner.affinity(pid, tid)
    }
    fn set_affinity(&mut self, pid: u32, tid: u32, cpus: &CpuSet) -> io::Result<()> {
        self.inner.set_affinity(pid, tid, cpus)
    }
}

/// Links planted in the tree after apply opened it are never written through: a file
/// outside the tree keeps its bytes, and the state directory is not created through a
/// planted `run` link.
#[test]
fn links_planted_during_apply_lead_nowhere_outside_the_tree() {
    let dir = noisy_host();
    let r = dir.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("stat_interval"), "victim\n").unwrap();
    let plan = plan_for(r, "1", &Options::default());
    assert!(plan
        .changes
        .iter()
        .any(|c| c.setting.describe() == "/proc/sys/vm/stat_interval"));
    let mut sys = Swapping {
        inner: dir_system(r),
        root: r.to_path_buf(),
        outside: outside.path().to_path_buf(),
        swapped: false,
    };
    let result = apply::apply(&plan, &mut sys, &state(r));
    assert!(sys.swapped, "apply wrote nothing");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("stat_interval")).unwrap(),
        "victim\n",
        "written through the planted link: {result:?}"
    );
    if let Ok(done) = &result {
        let step = done
            .steps
            .iter()
            .find(|(c, _)| c.setting.describe() == "/proc/sys/vm/stat_interval")
            .unwrap();
        assert!(
            matches!(&step.1, Outcome::Refused(why) if why.contains("symbolic link")),
            "{step:?}"
        );
    }

    // `run` planted as a link between opening the tree and locking its state directory.
    let dir = noisy_host();
    let r = dir.path();
    let target = tempfile::tempdir().unwrap();
    let sys = dir_system(r);
    let st = StateDir::within(sys.tree(), "/run/isol").unwrap();
    std::os::unix::fs::symlink(target.path(), r.join("run")).unwrap();
    let mut sys = sys;
    let e = apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &st).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(
        std::fs::read_dir(target.path()).unwrap().count(),
        0,
        "the state directory was created through the link"
    );
}

/// A journal that names any file but those apply writes, in the format apply writes it,
/// is refused whole and left in place; nothing is written.
#[test]
fn restore_writes_only_the_files_apply_writes() {
    let dir = noisy_host();
    let r = dir.path();
    let boot = std::fs::read_to_string(r.join("proc/sys/kernel/random/boot_id")).unwrap();
    put(r, "/proc/sys/kernel/core_pattern", "core\n");
    put(r, "/sys/devices/system/cpu/cpu1/online", "1\n");
    for (path, format) in [
        ("/proc/sys/kernel/core_pattern", "word"),
        ("/sys/devices/system/cpu/cpu1/online", "word"),
        ("/proc/sys/kernel/nmi_watchdog", "mask"),
    ] {
        let st = state(r);
        std::fs::create_dir_all(st.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(st.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let journal = format!(
            "{{\"journal\":\"isol-apply/1\",\"boot_id\":\"{}\",\"cpus\":\"1\",\"housekeeping\":\"0\",\"created_unix\":1}}\n\
             {{\"setting\":{{\"kind\":\"file\",\"path\":\"{path}\",\"format\":\"{format}\"}},\"old\":\"|/tmp/x\",\"new\":\"core\",\"why\":\"\",\"fixes\":null}}\n",
            boot.trim()
        );
        std::fs::write(st.journal_path(), &journal).unwrap();
        std::fs::set_permissions(st.journal_path(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let before = tree(r);
        let e = restore(&mut dir_system(r), &st, true).unwrap_err();
        assert!(e.to_string().contains("never writes"), "{path}: {e}");
        assert_eq!(tree(r), before, "{path}: something was written");
        assert_eq!(std::fs::read_to_string(st.journal_path()).unwrap(), journal);
    }
}
