//! # isol: task isolation for Linux, from userspace
//!
//! Latency-critical programs want a CPU where their thread runs with no kernel
//! interruptions at all: no timer tick, no device interrupts, no IPIs, no kworkers. Linux
//! has the parts (`nohz_full=`, `isolcpus=`, `rcu_nocbs=`, cpuset partitions, tracepoints);
//! isol ties them together.
//!
//! This crate is the library under the `isol` command:
//!
//! * [`CpuSet`]: the kernel's CPU list (`0-3,8`) and mask (`ff,ffffffff`) syntaxes;
//! * [`SysRoot`]: the one door to `/proc` and `/sys`, so every parser can be replayed on a
//!   tree captured from another kernel ([`snapshot`]);
//! * [`kernel::KernelModel`]: a read-only picture of the kernel's isolation state;
//! * [`check`]: readiness findings for a set of CPUs, each with evidence and a fix;
//! * [`confine`]: the rules for untrusted input (snapshots and recordings from strangers)
//!   and for output directories others can see.
//!
//! ## Terminology
//!
//! * **isolated CPU**: a CPU meant to run one latency-critical thread undisturbed;
//! * **housekeeping CPU**: a CPU that takes the kernel's background work instead;
//! * **nohz_full**: a CPU whose periodic tick stops while it runs a single task;
//! * **domain-isolated**: removed from scheduler load balancing (`isolcpus=domain` or an
//!   `isolated` cgroup v2 cpuset partition).
//!
//! ## Example
//!
//! ```
//! use isol::{check, kernel::KernelModel, CpuSet, SysRoot};
//!
//! // The live system; `SysRoot::at(dir)` replays a snapshot instead.
//! let model = KernelModel::load(&SysRoot::live());
//! let target = check::Target::choose(&model, None).expect("a valid target");
//! let report = check::run(&model, &target);
//! for f in &report.findings {
//!     println!("{:?} {} {}", f.severity, f.id, f.summary);
//! }
//! # let _ = CpuSet::parse_list("0-3").unwrap();
//! ```

pub mod check;
pub mod confine;
pub mod cpus;
pub mod interrupt;
pub mod kernel;
pub mod noise;
mod os;
pub mod snapshot;
pub mod symbols;
pub mod syscalls;
pub mod sysroot;
pub mod target;
pub mod task;
pub mod tracefs;
pub mod watch;

pub use cpus::{CpuListError, CpuSet};
pub use os::{is_root, monotonic_ns, pin_current_thread};
pub use sysroot::{SysError, SysRoot};
