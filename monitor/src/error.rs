/// Errors of the monitor; each names the file, column or topic at fault.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("invalid monitor configuration: {0}")]
    Config(String),
    #[error("reference data {path}: {reason}")]
    Reference { path: String, reason: String },
    #[error("current data {path}: {reason}")]
    Current { path: String, reason: String },
    #[error("query failed: {0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Common(#[from] streamwatch_common::Error),
    /// `target` is `<topic>: <message key>`.
    #[error("could not publish to {target}: {source}")]
    Publish {
        target: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

pub type Result<T, E = MonitorError> = std::result::Result<T, E>;

// DataFusion's error is large; boxing it keeps every `Result` of the monitor small.
impl From<datafusion::error::DataFusionError> for MonitorError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        MonitorError::DataFusion(Box::new(error))
    }
}
