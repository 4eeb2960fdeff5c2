//! Outputs beyond text and JSON: plots of a noise report, Prometheus metrics of a watch.

pub mod metrics;
pub mod plot;
