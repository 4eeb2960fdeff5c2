//! # isol: task isolation for Linux, from userspace
//!
//! Latency-critical programs want a CPU where their thread runs with no kernel
//! interruptions at all: no timer tick, no device interrupts, no IPIs, no kworkers. Linux
//! has the parts (`nohz_full=`, `isolcpus=`, `rcu_nocbs=`, cpuset partitions, tracepoints);
//! isol ties them together. This crate is the library under the `isol` command and
//! `libisol`.
//!
//! ## Concepts
//!
//! * **isolated CPU**: a CPU meant to run one latency-critical thread undisturbed;
//! * **housekeeping CPU**: a CPU that takes the kernel's background work instead (isol's own
//!   threads run there, so that isol is never the noise it measures);
//! * **nohz_full**: a CPU whose periodic tick stops while it runs a single task;
//! * **domain-isolated**: removed from scheduler load balancing (`isolcpus=domain` or an
//!   `isolated` cgroup v2 cpuset partition);
//! * **interruption**: any time the kernel takes an isolated CPU from its task (an IRQ, an
//!   IPI, a softirq, an exception, another task), with its cause and culprit;
//! * **quiet**: an isolated CPU whose tick device is disarmed, with no timer queued and
//!   nothing else runnable: nothing will interrupt it while its task stays in userspace;
//! * **strict mode**: an isolated task's own entries into the kernel (system calls, page
//!   faults) are violations, caught and acted on at once.
//!
//! ## Rooms, and the crates that hold them
//!
//! Data flows one way: the kernel as files, then a model of it, then the engines, then the
//! front ends (the `isol` command, the C ABI). This crate is the front door: it re-exports
//! the crates below under one name, and keeps the docs and the examples. Each is usable on
//! its own (libisol, the C library, links only `isol-task` and what it needs):
//!
//! | crate | modules here | its one rule |
//! |---|---|---|
//! | `isol-sys` | (none) | every `unsafe` system call, behind a safe wrapper; the only crate with `unsafe` (with the C ABI) |
//! | `isol-model` | [`sysroot`], [`confine`], [`cpus`], [`kernel`], [`target`] | reads the machine, never changes it |
//! | `isol-trace` | [`tracefs`], [`watch`], [`interrupt`] | the watched CPUs pay nothing for being watched |
//! | `isol-task` | [`task`] | the calling thread's isolation: enter, count, strict, exit |
//! | `isol-machine` | [`check`], [`apply`], [`snapshot`] | every change journaled first, with an exact undo |
//! | `isol-noise` | [`noise`] | measure with the samplers' own threads, attribute through a watch |
//!
//! * [`SysRoot`]: the one door to `/proc` and `/sys`, live or replayed from a capture
//!   ([`snapshot`]), with the rules for untrusted captures in [`confine`];
//! * [`kernel::KernelModel`]: a read-only picture of the kernel's isolation state, every
//!   part a [`kernel::Fact`] (known, or why not);
//! * [`target`]: which CPUs to isolate and which are left for housekeeping;
//! * [`check`]: readiness findings for a target, each with evidence and a fix;
//! * [`tracefs`]: tracing instances, event formats and the ring buffer reader;
//! * [`watch`]: every interruption of the watched CPUs, live or from a recording, as
//!   [`interrupt::Record`]s;
//! * [`noise`]: nanosecond OS-noise measurement, each gap attributed through a watch;
//! * [`task`]: task isolation for the calling thread (enter, quiet, count, exit);
//! * [`CpuSet`]: the kernel's CPU list (`0-3,8`) and mask (`ff,ffffffff`) syntaxes.
//!
//! ## Check a machine
//!
//! ```
//! use isol::{check, kernel::KernelModel, SysRoot};
//!
//! // The live system; `SysRoot::at(dir)` replays a snapshot instead.
//! let model = KernelModel::load(&SysRoot::live());
//! let target = check::Target::choose(&model, None).expect("a valid target");
//! let report = check::run(&model, &target);
//! for f in &report.findings {
//!     println!("{:?} {} {}", f.severity, f.id, f.summary);
//! }
//! ```
//!
//! ## Watch isolated CPUs (root, tracefs)
//!
//! ```no_run
//! use isol::interrupt::Record;
//! use isol::watch::{Watch, WatchOptions};
//! use isol::{CpuSet, SysRoot};
//!
//! let root = SysRoot::live();
//! // Never run where you watch: move to a housekeeping CPU first.
//! isol::pin_current_thread(&CpuSet::from_iter([0]))?;
//! let mut watch = Watch::start(&root, WatchOptions::new(CpuSet::from_iter([1])))?;
//! std::thread::sleep(std::time::Duration::from_secs(1));
//! for record in watch.poll()?.into_iter().chain(watch.stop()?) {
//!     if let Record::Interruption(i) = record {
//!         println!("cpu{} {:?} {} {:?} ns", i.cpu, i.kind, i.source, i.duration_ns);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Measure OS noise (root for attribution)
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! use isol::noise::{self, NoiseOptions};
//! use isol::{CpuSet, SysRoot};
//!
//! let opts = NoiseOptions::new(CpuSet::from_iter([1]), Duration::from_secs(5));
//! let report = noise::run(&SysRoot::live(), &opts, &AtomicBool::new(false), |_| {})?;
//! for cpu in &report.cpus {
//!     println!("cpu{}: longest gap {} ns", cpu.cpu, cpu.max_ns);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Isolate a thread (root, a nohz_full and domain-isolated CPU)
//!
//! ```no_run
//! use isol::task::Isolation;
//!
//! // Returns once CPU 1 is quiet: the tick stopped, nothing pending for it.
//! let guard = Isolation::builder().cpu(1).pin(true).fifo(10).enter()?;
//! while guard.interruptions() == 0 {
//!     // The latency-critical loop: no system calls, no page faults.
//!     # break;
//! }
//! let report = guard.exit();
//! println!("{report}");
//! # Ok::<(), isol::task::IsolError>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub use isol_fleet as fleet;
pub use isol_machine::{apply, check, snapshot};
pub use isol_model::{confine, cpus, kernel, sysroot, target, units};
pub use isol_noise as noise;
pub use isol_probe as probe;
pub use isol_task as task;
pub use isol_trace::{interrupt, tracefs, watch};

pub use isol_model::{is_root, monotonic_ns, pin_current_thread};
pub use isol_model::{CpuListError, CpuSet, SysError, SysRoot};
