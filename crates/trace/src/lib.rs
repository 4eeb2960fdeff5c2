//! # isol-trace: every interruption of a CPU, from the kernel's own trace
//!
//! * [`tracefs`]: tracing instances, event formats, the ring-buffer page reader (written
//!   here: no crate reads live ftrace pages), recordings;
//! * [`watch`]: the engine that decodes the events of the watched CPUs and of the CPUs
//!   that send them work, merged by time, into [`interrupt::Record`]s: each interruption
//!   with its kind, what ran, its net duration and who caused it.
//!
//! The one rule of this crate: the watched CPUs pay nothing for being watched. Pages are
//! read from a housekeeping CPU without blocking, never on a CPU being watched.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod interrupt;
mod symbols;
mod syscalls;
pub mod tracefs;
pub mod watch;

// The layer below, by the names the code uses.
use isol_model::{confine, cpus, kernel, thread as os, CpuSet, SysError, SysRoot};

pub use syscalls::name as syscall_name;
