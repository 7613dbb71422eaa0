use std::net::SocketAddr;

/// Errors of the shared library; each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka client for {what} could not be created: {source}")]
    KafkaClient {
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka brokers {brokers} are unreachable: {source}")]
    BrokerUnreachable {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("could not subscribe to topic {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("could not write to dead-letter topic {topic}: {source}")]
    DeadLetter {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("could not read secret file {path}: {source}")]
    SecretFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin server could not bind {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics recorder could not be installed: {0}")]
    MetricsRecorder(String),
    /// A monitoring spec that cannot be read or is invalid; the text names the file, the
    /// line when there is one, and the reason.
    #[error("{0}")]
    Spec(String),
    #[error("invalid timestamp {value:?}: expected YYYY-MM-DDTHH:MM:SS[.ffffff]")]
    Timestamp { value: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
