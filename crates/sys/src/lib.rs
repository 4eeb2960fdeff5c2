//! # isol-sys: isol's system call boundary
//!
//! Every `unsafe` block of isol lives in this crate (the C ABI's FFI boundary aside), each
//! behind a safe function whose contract the function itself upholds. Every other crate of
//! the workspace forbids `unsafe` code, so a reader looking for what could break memory
//! safety reads this crate and `isol-capi`, nothing else.
//!
//! | module | what |
//! |---|---|
//! | [`thread`] | the calling thread and others: ids, CPU affinity, scheduling policy, names, signals to a thread |
//! | [`clock`] | `CLOCK_MONOTONIC`, `CLOCK_MONOTONIC_RAW` and the TSC |
//! | [`mem`] | locking memory, touching it so that it is present, anonymous mappings, allocator tuning |
//! | [`net`] | a socket that holds network timestamping on, so that its static key never flips |
//! | [`dispatch`] | Syscall User Dispatch: the per-thread selector byte, switching dispatch on and off |
//! | [`trap`] | the SIGSYS and SIGTRAP handlers strict mode runs in, chained to the program's own |
//! | [`perf`] | the per-thread page-fault event that raises SIGTRAP |
//! | [`raw`] | system calls safe to make inside a signal handler (no errno, no lock) |
//! | [`process`] | signal handlers for the command, exit hooks, a child's placement before `exec` |
//! | [`timer`] | POSIX timers that signal the calling thread |
//!
//! Functions return [`std::io::Result`]; callers add what failed and what to do next.

#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod clock;
pub mod dispatch;
pub mod mem;
pub mod net;
pub mod perf;
pub mod process;
pub mod raw;
pub mod thread;
pub mod timer;
pub mod trap;
