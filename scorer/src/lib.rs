//! The scorer stage: the course's linear trip-duration model (training, file format,
//! bit-exact prediction), offline Parquet scoring, and the Kafka service that adds
//! `prediction` and `model_version` to every trip event.

pub mod batch;
pub mod config;
pub mod decode;
pub mod error;
pub mod explain;
pub mod model;
pub mod offsets;
pub mod onnx;
pub mod outbox;
pub mod service;
pub mod train;

pub use batch::{score_batch, score_file};
pub use error::{Error, Result};
pub use explain::{load_linear_terms, LinearTerms, Link};
pub use model::LinearModel;
pub use onnx::OnnxLinearModel;
