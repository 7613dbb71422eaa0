use std::net::SocketAddr;
use std::path::PathBuf;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;

/// Everything the producer can fail with; each variant names the file, column or topic at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a readable Parquet file: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("could not decode a record batch of {}: {source}", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
    #[error("{} lacks the required column(s) {}", path.display(), columns.join(", "))]
    MissingColumns { path: PathBuf, columns: Vec<String> },
    #[error("column {column} of {} has type {data_type}, which events cannot carry", path.display())]
    UnsupportedType {
        path: PathBuf,
        column: String,
        data_type: DataType,
    },
    #[error(
        "time column {column} of {} has type {data_type}; expected a timestamp, a date or a string",
        path.display()
    )]
    TimeColumnType {
        path: PathBuf,
        column: String,
        data_type: DataType,
    },
    #[error("column {column} of {} clashes with the {column} field the producer adds", path.display())]
    ReservedColumn { path: PathBuf, column: String },
    #[error(
        "{} has no dropoff column to take completion times from (looked for {}); name one with --completion-time-column",
        path.display(),
        candidates.join(", ")
    )]
    NoCompletionColumn {
        path: PathBuf,
        candidates: Vec<String>,
    },
    #[error(
        "truth column {column} of {} has type {data_type}; expected a number",
        path.display()
    )]
    TruthColumnType {
        path: PathBuf,
        column: String,
        data_type: DataType,
    },
    #[error("the completions topic must differ from the trips topic {topic}")]
    CompletionsTopic { topic: String },
    #[error("row {row} of {}: {column} value {value:?} is not a timestamp", path.display())]
    InvalidTimestamp {
        path: PathBuf,
        column: String,
        row: u64,
        value: String,
    },
    #[error("row {row} of {}: {column} is outside the range of representable timestamps", path.display())]
    TimestampOutOfRange {
        path: PathBuf,
        column: String,
        row: u64,
    },
    #[error("reading the live input failed: {0}")]
    Input(#[source] std::io::Error),
    #[error("live mode has no input: stdin is off (--stdin=false) and no --http-addr is given")]
    NoLiveSource,
    #[error("the HTTP source could not bind {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{failed} of {sent} events could not be delivered to topic {topic}")]
    Delivery {
        topic: String,
        failed: u64,
        sent: u64,
    },
    #[error(
        "could not read topic {topic} to find where the replay resumes (--no-resume replays \
         the whole range): {source}"
    )]
    Resume {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "reading topic {topic} to find where the replay resumes stalled: nothing for \
         {seconds} s, {partitions_at_end} of {partitions} partitions read to their end \
         (--no-resume replays the whole range)"
    )]
    ResumeStalled {
        topic: String,
        seconds: u64,
        partitions_at_end: usize,
        partitions: usize,
    },
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Common(#[from] streamwatch_common::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
