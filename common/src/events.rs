//! The event and metric-row formats on the topics (see docs/ARCHITECTURE.md).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Field holding a trip's stable id (`<source>:<row>`), the deduplication key.
pub const TRIP_ID: &str = "trip_id";
/// Field holding the event time (the pickup time for TLC trips).
pub const EVENT_TIME: &str = "event_time";
/// Field the scorer adds with the model's prediction (minutes).
pub const PREDICTION: &str = "prediction";
/// Field the scorer adds with the version of the model that scored the trip.
pub const MODEL_VERSION: &str = "model_version";
/// Fields that describe an event rather than the trip; they are never data columns.
pub const METADATA_FIELDS: [&str; 3] = [TRIP_ID, EVENT_TIME, MODEL_VERSION];

/// Kafka header naming the stage that dead-lettered a message.
pub const HEADER_DLQ_STAGE: &str = "dlq.stage";
/// Kafka header with the reason a message was dead-lettered.
pub const HEADER_DLQ_REASON: &str = "dlq.reason";
/// Kafka header with `topic/partition/offset` of the original message.
pub const HEADER_DLQ_ORIGIN: &str = "dlq.origin";

const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.f";

/// Formats a naive (zone-less) timestamp as events carry it: `2022-02-01T00:02:32`,
/// with a fraction only when there is one.
pub fn format_timestamp(ts: NaiveDateTime) -> String {
    ts.format(TIMESTAMP_FORMAT).to_string()
}

/// Parses an event timestamp; a space instead of `T` is accepted too.
pub fn parse_timestamp(value: &str) -> Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(value, TIMESTAMP_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f"))
        .map_err(|_| Error::Timestamp {
            value: value.chars().take(64).collect(),
        })
}

/// Window kinds a monitor computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    Tumbling,
    Sliding,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Tumbling => "tumbling",
            WindowKind::Sliding => "sliding",
        }
    }
}

/// Identifies one window of one monitor: the upsert key of every metric row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowKey {
    pub monitor: String,
    pub kind: WindowKind,
    pub size_seconds: i64,
    pub step_seconds: i64,
    #[serde(with = "naive_ts")]
    pub start: NaiveDateTime,
    #[serde(with = "naive_ts")]
    pub end: NaiveDateTime,
}

impl WindowKey {
    /// The Kafka message key for rows of this window, so re-emissions land in one partition.
    pub fn message_key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.monitor,
            self.kind.as_str(),
            self.size_seconds,
            self.step_seconds,
            format_timestamp(self.start)
        )
    }
}

/// One column's drift test result in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column: String,
    /// `num` or `cat`, as Evidently names them.
    pub column_type: String,
    /// Evidently's registry name of the test: `wasserstein`, `jensenshannon`, `ks`, `chisquare`, `z`.
    pub stattest: String,
    pub threshold: f64,
    /// p-value or distance; `None` when the test is undefined (NaN, for example with an infinite value).
    pub score: Option<f64>,
    pub drift_detected: bool,
    pub reference_rows: u64,
    pub current_rows: u64,
    /// Why the test could not run (for example every value of the window is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A quantile of a column in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileValue {
    pub column: String,
    pub quantile: f64,
    /// `None` when the window has no value for the column.
    pub value: Option<f64>,
}

/// Everything a monitor reports for one window; the sink upserts it by `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub window: WindowKey,
    /// Grows each time a window is emitted again (late events); the sink keeps the highest.
    pub revision: u32,
    pub row_count: u64,
    pub number_of_columns: u32,
    pub number_of_missing_values: u64,
    pub share_of_missing_values: Option<f64>,
    /// The prediction column's drift, computed as Evidently's ColumnDriftMetric does.
    pub prediction_drift: Option<ColumnDrift>,
    pub number_of_drifted_columns: u32,
    pub share_of_drifted_columns: f64,
    pub dataset_drift: bool,
    /// Every monitored column's drift, as Evidently's DatasetDriftMetric computes it.
    pub columns: Vec<ColumnDrift>,
    pub quantiles: Vec<QuantileValue>,
    pub emitted_at: DateTime<Utc>,
}

mod naive_ts {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_timestamp(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_and_without_fraction() {
        for text in ["2022-02-01T00:02:32", "2022-02-01T00:02:32.250"] {
            let ts = parse_timestamp(text).unwrap();
            assert_eq!(parse_timestamp(&format_timestamp(ts)).unwrap(), ts);
        }
        assert_eq!(
            parse_timestamp("2022-02-01 00:02:32").unwrap(),
            parse_timestamp("2022-02-01T00:02:32").unwrap()
        );
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn metric_rows_round_trip_through_json() {
        let start = parse_timestamp("2022-02-01T00:00:00").unwrap();
        let row = MetricRow {
            window: WindowKey {
                monitor: "taxi".into(),
                kind: WindowKind::Tumbling,
                size_seconds: 86_400,
                step_seconds: 86_400,
                start,
                end: start + chrono::Duration::days(1),
            },
            revision: 1,
            row_count: 3,
            number_of_columns: 21,
            number_of_missing_values: 2,
            share_of_missing_values: Some(2.0 / 63.0),
            prediction_drift: None,
            number_of_drifted_columns: 0,
            share_of_drifted_columns: 0.0,
            dataset_drift: false,
            columns: vec![ColumnDrift {
                column: "prediction".into(),
                column_type: "num".into(),
                stattest: "wasserstein".into(),
                threshold: 0.1,
                score: None,
                drift_detected: false,
                reference_rows: 10,
                current_rows: 3,
                error: None,
            }],
            quantiles: vec![],
            emitted_at: Utc::now(),
        };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(serde_json::from_str::<MetricRow>(&json).unwrap(), row);
        assert_eq!(
            row.window.message_key(),
            "taxi/tumbling/86400/86400/2022-02-01T00:00:00"
        );
    }
}
