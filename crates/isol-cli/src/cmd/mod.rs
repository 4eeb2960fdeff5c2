//! One module per subcommand.

pub mod apply;
pub mod check;
pub mod diff;
pub mod noise;
pub mod run;
pub mod ship;
pub mod snapshot;
pub mod top;
pub mod watch;
