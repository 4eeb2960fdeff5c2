//! # isol-machine: the machine as a whole
//!
//! * [`check`]: is the machine ready to isolate these CPUs, and exactly what to fix, each
//!   finding with the files and values that decided it;
//! * [`apply`]: the runtime setup that moves the kernel's work off the CPUs, journaled
//!   before each change, with an exact undo; and the boot parameters;
//! * [`snapshot`]: every kernel file isol reads, in one archive, for bug reports and
//!   replay (and its extraction, as untrusted input).
//!
//! The one rule of this crate: every change it makes to a machine is journaled first and
//! can be undone; checks and snapshots only read.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod apply;
pub mod check;
pub mod snapshot;

// The layers below, by the names the code uses.
use isol_model::{confine, cpus, is_root, kernel, sysroot, target, thread as os, SysRoot};
use isol_trace::tracefs;
