//! One module per subcommand.

pub mod check;
pub mod metrics;
pub mod snapshot;
pub mod watch;
