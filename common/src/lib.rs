//! Pieces every streamwatch stage shares: event field names and metric rows,
//! Kafka client settings, dead-lettering, telemetry (tracing, `/healthz`,
//! `/metrics`) and shutdown on SIGINT/SIGTERM.

pub mod batch;
pub mod deadletter;
pub mod end_of_stream;
pub mod error;
pub mod events;
pub mod kafka;
pub mod shutdown;
pub mod spec;
pub mod telemetry;
pub mod testing;

pub use error::{Error, Result};
