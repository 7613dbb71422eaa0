use std::path::PathBuf;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;

/// Errors of the scorer library; each variant names the file, column or topic involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("arrow error while {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: ArrowError,
    },
    #[error("model file {path} is not valid JSON for a linear model: {source}")]
    ModelJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("model {what} is invalid: {reason}")]
    InvalidModel { what: String, reason: String },
    #[error("column {column:?} is missing (the model needs it as a feature)")]
    MissingColumn { column: String },
    #[error("column {column:?} has type {data_type}; expected {expected}")]
    ColumnType {
        column: String,
        data_type: DataType,
        expected: &'static str,
    },
    #[error("column {column:?} already exists; refusing to overwrite it")]
    ColumnExists { column: String },
    #[error("training on {path} failed: {reason}")]
    Training { path: PathBuf, reason: String },
    #[error("could not produce to topic {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {topic} does not exist and was not created; create it with the monitor's partition count")]
    NoSuchTopic { topic: String },
    #[error(transparent)]
    Common(#[from] streamwatch_common::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
