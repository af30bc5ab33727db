//! What every layer leans on: secrets at rest, metrics and telemetry.

pub mod metrics;
pub mod secrets;
pub mod telemetry;
pub mod vault;
