//! isol across a fleet: what differs between two machines that matters for isolation
//! ([`diff`]), and a machine's readiness as metric series ([`readiness`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod diff;
pub mod readiness;
