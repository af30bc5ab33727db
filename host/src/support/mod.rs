//! What every layer leans on: secrets at rest, metrics and telemetry.

pub mod constant_time;
pub mod metrics;
pub mod secrets;
pub mod telemetry;
pub mod vault;
