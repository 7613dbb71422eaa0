use std::path::PathBuf;
use std::time::Duration;

/// Errors of the sink; database errors name the server (without its password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid database url: {source}")]
    DatabaseUrl {
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database url for {target} {problem}")]
    DatabaseSettings { target: String, problem: String },
    #[error("could not read database password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database pool for {target} could not be built: {reason}")]
    Pool { target: String, reason: String },
    #[error("database at {target} is unreachable: {}", chain(.source))]
    Unreachable {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database at {target} gave no connection within {waited:?}")]
    PoolTimeout { target: String, waited: Duration },
    #[error("database at {target}: {what} failed: {}", chain(.source))]
    Query {
        target: String,
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migrations on {target} failed: {}", chain(.source))]
    Migration {
        target: String,
        #[source]
        source: refinery::Error,
    },
    #[error("kafka {what} failed on topic {topic}: {source}")]
    Kafka {
        what: &'static str,
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Common(#[from] streamwatch_common::Error),
    #[error("dashboard {dashboard}: {problem}")]
    Dashboard { dashboard: String, problem: String },
    #[error("report: {problem}")]
    Report { problem: String },
    #[error("could not write the report to {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line: the database client's top-level messages ("error
/// connecting to server", "db error") say little without them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

impl Error {
    /// True when the database could not be reached or gave no connection: a sink starting
    /// while PostgreSQL is down waits for it instead of exiting.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::PoolTimeout { .. })
    }

    /// True when the database refused the data itself (SQLSTATE class 22, data exception, or 23,
    /// integrity constraint violation): retrying the same row cannot succeed, so it is dead-lettered.
    /// Every other failure (connection lost, server restarting, deadlock...) is worth retrying.
    pub fn is_rejection(&self) -> bool {
        match self {
            Error::Query { source, .. } => source
                .code()
                .is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("23")),
            _ => false,
        }
    }
}
