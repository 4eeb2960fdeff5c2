//! Outputs beyond text and JSON: plots of a noise report, Prometheus metrics of a watch and
//! of readiness.

pub mod metrics;
pub mod plot;
pub mod readiness;
