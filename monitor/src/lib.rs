//! The monitor: event-time windows over scored events, Evidently-identical drift and
//! data-quality metrics computed from exact value counts, DataFusion aggregates.

pub mod alert_state;
pub mod alerts;
pub mod batch;
pub mod config;
pub mod counts;
pub mod decode;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod health;
pub mod mapping;
pub mod merge;
pub mod outliers;
pub mod outputs;
pub mod partials;
pub mod performance;
pub mod profile;
pub mod report;
pub mod segments;
pub mod service;
pub mod spec;
pub mod window;

pub use error::{MonitorError, Result};
