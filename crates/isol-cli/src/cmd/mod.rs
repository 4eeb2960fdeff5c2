//! One module per subcommand.

pub mod check;
pub mod metrics;
pub mod noise;
pub mod plot;
pub mod snapshot;
pub mod watch;
