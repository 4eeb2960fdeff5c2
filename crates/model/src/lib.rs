//! # isol-model: what isol knows of a machine
//!
//! Everything isol reads of a machine, read-only, through one door: [`SysRoot`] resolves
//! every `/proc`, `/sys` and tracefs path under a root, `/` or a capture of another machine
//! (an `isol snapshot`), so every parser runs on fixtures from real kernels; a capture is
//! untrusted input, read by the rules of [`confine`].
//!
//! * [`kernel::KernelModel`]: the kernel's isolation state, every part a [`kernel::Fact`]
//!   (known, or why not);
//! * [`target`]: which CPUs to isolate, which are left for housekeeping;
//! * [`CpuSet`]: the kernel's CPU list (`0-3,8`) and mask (`ff,ffffffff`) syntaxes;
//! * [`thread`]: placing and tuning threads, in [`CpuSet`] terms.
//!
//! The one rule of this crate: it reads. Nothing here changes the machine (that is
//! `isol-machine`'s apply) or traces it (`isol-trace`).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod confine;
pub mod cpus;
pub mod kernel;
pub mod sysroot;
pub mod target;
pub mod thread;
pub mod units;

pub use cpus::{CpuListError, CpuSet};
pub use sysroot::{SysError, SysRoot};
pub use thread::{is_root, monotonic_ns, pin_current_thread};
