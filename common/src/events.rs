//! The event and metric-row formats on the topics (see docs/ARCHITECTURE.md).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Field holding a trip's stable id (`<source>:<row>`), the deduplication key.
pub const TRIP_ID: &str = "trip_id";
/// Field of a completion event holding its prediction's event time.
pub const PREDICTION_TIME: &str = "prediction_time";
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
    let mut out = Vec::with_capacity(26);
    push_timestamp(&mut out, ts);
    String::from_utf8(out).expect("timestamps are ASCII")
}

/// Appends [`format_timestamp`]'s text to `out`. Written digit by digit: the producer formats
/// two timestamps per event, and chrono's `format` parses its pattern every time (14% of the
/// producer's CPU).
pub fn push_timestamp(out: &mut Vec<u8>, ts: NaiveDateTime) {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (ts.year(), ts.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Signed or five-digit years and leap seconds: chrono's own rules.
        out.extend_from_slice(ts.format(TIMESTAMP_FORMAT).to_string().as_bytes());
        return;
    }
    fn digits(out: &mut Vec<u8>, value: u32, width: u32) {
        for place in (0..width).rev() {
            out.push(b'0' + (value / 10u32.pow(place) % 10) as u8);
        }
    }
    digits(out, year as u32, 4);
    out.push(b'-');
    digits(out, ts.month(), 2);
    out.push(b'-');
    digits(out, ts.day(), 2);
    out.push(b'T');
    digits(out, ts.hour(), 2);
    out.push(b':');
    digits(out, ts.minute(), 2);
    out.push(b':');
    digits(out, ts.second(), 2);
    // As chrono's `%.f`: milli-, micro- or nanoseconds, whichever is exact; none when zero.
    if nanos == 0 {
        return;
    }
    out.push(b'.');
    if nanos % 1_000_000 == 0 {
        digits(out, nanos / 1_000_000, 3);
    } else if nanos % 1_000 == 0 {
        digits(out, nanos / 1_000, 6);
    } else {
        digits(out, nanos, 9);
    }
}

/// Parses an event timestamp; a space instead of `T` is accepted too.
pub fn parse_timestamp(value: &str) -> Result<NaiveDateTime> {
    parse_fixed_layout(value.as_bytes())
        .or_else(|| parse_with_chrono(value))
        .ok_or_else(|| Error::Timestamp {
            value: value.chars().take(64).collect(),
        })
}

/// Every layout [`parse_timestamp`] accepts, through chrono's format strings.
fn parse_with_chrono(value: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(value, TIMESTAMP_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}]` (or a space for `T`), read by hand: every event's time
/// goes through here, and chrono's format-string parser was a tenth of the scorer's CPU.
/// `None` for anything else (then chrono decides, so both paths accept the same texts).
fn parse_fixed_layout(b: &[u8]) -> Option<NaiveDateTime> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(range)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let micros = match b.len() {
        19 => 0,
        21..=26 if b[19] == b'.' => digits(20..b.len())? * 10u32.pow((26 - b.len()) as u32),
        _ => return None,
    };
    chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?
        // A leap second (60) is refused here and left to chrono.
        .and_hms_micro_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, micros)
}

/// This process's generation: milliseconds since the Unix epoch when it first asked. A
/// restarted monitor rebuilds its open windows from the topic and counts their revisions from
/// 1 again, with at least the events its predecessor had; its rows must replace the ones its
/// predecessor stored, so the sink orders rows by (generation, revision). Assumes the clocks of
/// successive monitor hosts agree to well under a restart's duration (NTP).
pub fn generation() -> i64 {
    static GENERATION: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *GENERATION.get_or_init(|| Utc::now().timestamp_millis())
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
    /// A tumbling window of `size_seconds` starting at `start`.
    pub fn tumbling(monitor: &str, start: NaiveDateTime, size_seconds: i64) -> Self {
        Self {
            monitor: monitor.to_owned(),
            kind: WindowKind::Tumbling,
            size_seconds,
            step_seconds: size_seconds,
            start,
            end: start + chrono::Duration::seconds(size_seconds),
        }
    }

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

/// How much of one column in one window lies outside the reference's range: outside its
/// `[lower_quantile, upper_quantile]` quantiles, and outside its IQR fences (Tukey's
/// `Q1 - 1.5 IQR`, `Q3 + 1.5 IQR`). Quantiles are numpy's linear method on the reference's
/// finite values; "outside" is strictly below the lower or strictly above the upper bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnOutliers {
    pub column: String,
    /// The reference quantiles the range is cut at (`0.01` and `0.99` by default).
    pub lower_quantile: f64,
    pub upper_quantile: f64,
    /// The reference's values at those quantiles.
    pub lower_bound: f64,
    pub upper_bound: f64,
    /// Share of the window's values below `lower_bound` or above `upper_bound`; `None` when
    /// the window has no values for the column.
    pub share_outside_quantiles: Option<f64>,
    pub iqr_lower_fence: f64,
    pub iqr_upper_fence: f64,
    /// Share of the window's values below `iqr_lower_fence` or above `iqr_upper_fence`.
    pub share_outside_iqr: Option<f64>,
    /// The shares' denominator: the window's non-missing finite values (null, NaN and ±inf
    /// are missing cells, so ±inf is neither counted nor an outlier).
    pub values: u64,
}

/// A linear model feature's contributions in one window: `coefficient × (x − reference_mean)`
/// with a missing `x` as 0 (the scorer's rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    pub feature: String,
    pub coefficient: f64,
    /// Mean of the feature over the reference (missing as 0).
    pub reference_mean: f64,
    /// `None` when the window has no rows.
    pub mean_contribution: Option<f64>,
    pub mean_abs_contribution: Option<f64>,
    pub reference_mean_abs_contribution: f64,
    /// Normed Wasserstein distance of the window's contributions from the reference's.
    pub drift_score: Option<f64>,
    /// `drift_score >= 0.1`, Evidently's default for the test.
    pub drift_detected: bool,
    pub rows: u64,
}

/// Everything a monitor reports for one window; the sink upserts it by `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub window: WindowKey,
    /// The emitting process's [`generation`]; the sink keeps the highest
    /// (generation, revision).
    #[serde(default)]
    pub generation: i64,
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
    /// Per numerical column (and numerical prediction), the share of values outside the
    /// reference's range; absent in rows from monitors that predate it.
    #[serde(default)]
    pub outliers: Vec<ColumnOutliers>,
    /// Per model feature, its contributions (`monitor --model`); empty without a model.
    #[serde(default)]
    pub contributions: Vec<FeatureContribution>,
    /// Drift and data quality per segment of the segment dimensions with `drift = true`,
    /// each against the same segment of the reference; empty without such dimensions.
    #[serde(default)]
    pub segments: Vec<SegmentDrift>,
    /// When the window's latest event was published to Kafka (the message timestamp the
    /// scorer keeps from the producer): `stored_at` minus this is the end-to-end latency
    /// from event to stored metric. `None` when the messages carry no timestamp.
    #[serde(default)]
    pub last_event_published_at: Option<DateTime<Utc>>,
    pub emitted_at: DateTime<Utc>,
}

impl MetricRow {
    /// A window's first report with nothing counted or tested yet: callers fill in what they
    /// have.
    pub fn empty(window: WindowKey, emitted_at: DateTime<Utc>) -> Self {
        Self {
            window,
            generation: 0,
            revision: 1,
            row_count: 0,
            number_of_columns: 0,
            number_of_missing_values: 0,
            share_of_missing_values: None,
            prediction_drift: None,
            number_of_drifted_columns: 0,
            share_of_drifted_columns: 0.0,
            dataset_drift: false,
            columns: Vec::new(),
            quantiles: Vec::new(),
            outliers: Vec::new(),
            contributions: Vec::new(),
            segments: Vec::new(),
            last_event_published_at: None,
            emitted_at,
        }
    }
}

/// Drift and data quality of one segment of a window (`pickup_borough` = `Queens`), tested
/// against the reference rows of the same segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDrift {
    pub dimension: String,
    pub segment: String,
    pub row_count: u64,
    pub reference_rows: u64,
    /// The window or the reference holds fewer rows of the segment than the spec's
    /// `min_segment_rows`: only counts and missing values are reported, no drift.
    pub too_small: bool,
    pub number_of_missing_values: u64,
    pub share_of_missing_values: Option<f64>,
    /// The tests as for the whole window; `None` and empty when `too_small`.
    pub prediction_drift: Option<ColumnDrift>,
    pub number_of_drifted_columns: Option<u32>,
    pub share_of_drifted_columns: Option<f64>,
    pub dataset_drift: Option<bool>,
    pub columns: Vec<ColumnDrift>,
}

/// The shape of a monitor's windows (a window key without its start and end).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowShape {
    pub monitor: String,
    pub kind: WindowKind,
    pub size_seconds: i64,
    pub step_seconds: i64,
}

/// One scored event a window spec dropped: it arrived after the update horizon of every
/// window of the spec that contains its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateEvent {
    /// Where the event is in the monitor's input topic (its identity: re-reading the topic
    /// after a restart reports it again, and the sink stores it once).
    pub partition: i32,
    pub offset: i64,
    /// Its place among the events of its message: a batch holds many (0 for a lone event,
    /// and in reports of monitors that predate batches).
    #[serde(default)]
    pub index: u32,
    #[serde(with = "naive_ts")]
    pub event_time: NaiveDateTime,
}

/// Events of one window spec dropped as too late in one micro-batch; the sink stores each
/// once and counts them per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateEvents {
    pub shape: WindowShape,
    /// The monitor's input topic.
    pub topic: String,
    /// The watermark when they were dropped.
    #[serde(with = "naive_ts")]
    pub watermark: NaiveDateTime,
    pub events: Vec<LateEvent>,
    pub emitted_at: DateTime<Utc>,
}

impl LateEvents {
    /// The Kafka message key: late reports of one window shape share a partition.
    pub fn message_key(&self) -> String {
        let s = &self.shape;
        format!(
            "{}/{}/{}/{}/late",
            s.monitor,
            s.kind.as_str(),
            s.size_seconds,
            s.step_seconds
        )
    }
}

/// Regression quality of a set of labelled rows (error = prediction − target, as Evidently's
/// regression metrics define it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub mae: f64,
    pub rmse: f64,
    /// Mean of |error| / |target| over the rows whose target is not zero (a fraction, as
    /// scikit-learn's); `None` when every target is zero.
    pub mape: Option<f64>,
    /// Rows MAPE is computed over.
    pub mape_rows: u64,
    /// `None` with fewer than two rows or a constant target.
    pub r2: Option<f64>,
    /// Mean error: positive when the model overestimates (bias).
    pub mean_error: f64,
}

/// How long the truth took to arrive: completion event time − prediction event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelDelay {
    pub mean_seconds: f64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub max_seconds: f64,
}

/// Performance of one group of rows of a window: all of them, or one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceStats {
    /// Scored events of the window (of the segment).
    pub predictions: u64,
    /// Of those, the ones whose completion arrived within the label horizon.
    pub labelled_rows: u64,
    /// `None` when there are no labelled rows, or (segments) fewer than the minimum.
    pub metrics: Option<RegressionMetrics>,
    pub label_delay: Option<LabelDelay>,
}

/// One segment's performance and its fairness ratios against the whole window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentPerformance {
    /// The segment dimension (`pickup_borough`) and value (`Manhattan`).
    pub dimension: String,
    pub value: String,
    #[serde(flatten)]
    pub stats: PerformanceStats,
    /// Fewer labelled rows than the spec's `min_segment_rows`: reported, not measured.
    pub too_small: bool,
    /// Segment MAE / overall MAE.
    pub mae_ratio: Option<f64>,
    /// Segment mean error / overall mean error.
    pub bias_ratio: Option<f64>,
    /// `mae_ratio` is outside the fairness band.
    pub unfair: bool,
}

/// Model performance of one window, once the truth arrived (`"record": "performance"`).
/// Rows belong to the window of their prediction's event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceReport {
    pub window: WindowKey,
    /// The emitting process's [`generation`], as for [`MetricRow`].
    #[serde(default)]
    pub generation: i64,
    pub revision: u32,
    #[serde(flatten)]
    pub overall: PerformanceStats,
    /// Completions whose prediction this monitor never saw (counted where their prediction
    /// time falls).
    pub unmatched_completions: u64,
    pub segments: Vec<SegmentPerformance>,
    /// The fairness band `[low, high]` for `mae_ratio`.
    pub fairness_band: [f64; 2],
    /// The measured segment whose MAE ratio is farthest from 1 (by max(r, 1/r)).
    pub worst_segment: Option<String>,
    pub worst_mae_ratio: Option<f64>,
    /// The labelled rows' errors (prediction − target) outside the reference errors' quantile
    /// range and IQR fences; `None` when the reference has no target.
    #[serde(default)]
    pub error_outliers: Option<ColumnOutliers>,
    pub emitted_at: DateTime<Utc>,
}

/// Whether an alert rule started or stopped firing at a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
    /// The transition an earlier revision of this window (or of one before it in the
    /// streak) made no longer holds on the latest revisions: the stored one is removed.
    Retracted,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Retracted => "retracted",
        }
    }
}

/// A transition of an alert rule (`"record": "alert"`): it fired at `window` (the last of
/// `for_windows` consecutive breaching windows) or resolved there (the first that does not
/// breach), or the transition stored for `window` is retracted. The records of one rule and
/// window share a message key, so the latest is the one that stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: String,
    pub metric: String,
    pub op: String,
    pub threshold: f64,
    pub for_windows: u32,
    pub window: WindowKey,
    pub state: AlertState,
    /// The metric's value in that window (`None` when undefined there).
    pub value: Option<f64>,
    pub emitted_at: DateTime<Utc>,
}

/// One monitor instance's health over the last reporting interval: what the service-health
/// dashboard plots (the same numbers are on the instance's `/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub monitor: String,
    /// Host name and process id: instances of one consumer group report separately.
    pub instance: String,
    /// End of the interval; (monitor, instance, at) identifies the report.
    pub at: DateTime<Utc>,
    pub interval_seconds: f64,
    /// Messages consumed in the interval (scored events and completions).
    pub events_in: u64,
    pub events_per_second: f64,
    /// Messages dead-lettered in the interval.
    pub events_failed: u64,
    /// Messages behind the end of the assigned partitions (librdkafka's consumer lag, from
    /// the fetch high watermarks); `None` until the first statistics arrive.
    pub consumer_lag: Option<i64>,
    /// The scored topic's watermark (event time); `None` before the first event.
    #[serde(default, with = "optional_naive_ts")]
    pub watermark: Option<NaiveDateTime>,
    pub open_windows: u64,
    pub panes: u64,
    /// Window rows published in the interval.
    pub windows_emitted: u64,
    /// Mean seconds from the publication of a window's latest event (its Kafka timestamp)
    /// to the window's emission, over the windows emitted in the interval.
    pub emit_latency_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub uptime_seconds: f64,
}

/// A message on the metrics topic, tagged by its `record` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// A window's metrics (`"record": "window"`).
    Window(MetricRow),
    /// Events dropped as too late (`"record": "late_events"`).
    LateEvents(LateEvents),
    /// Model performance once the truth arrived (`"record": "performance"`).
    Performance(PerformanceReport),
    /// An alert rule fired or resolved (`"record": "alert"`).
    Alert(AlertEvent),
    /// A monitor instance's health over the last interval (`"record": "health"`).
    Health(HealthReport),
}

impl From<MetricRow> for MetricsRecord {
    fn from(row: MetricRow) -> Self {
        MetricsRecord::Window(row)
    }
}

impl MetricsRecord {
    pub fn message_key(&self) -> String {
        match self {
            MetricsRecord::Window(row) => row.window.message_key(),
            MetricsRecord::LateEvents(late) => late.message_key(),
            MetricsRecord::Performance(report) => {
                format!("{}/performance", report.window.message_key())
            }
            MetricsRecord::Alert(alert) => {
                format!("{}/alert/{}", alert.window.message_key(), alert.rule)
            }
            MetricsRecord::Health(health) => {
                format!("{}/health/{}", health.monitor, health.instance)
            }
        }
    }
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

mod optional_naive_ts {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => super::naive_ts::serialize(ts, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| super::parse_timestamp(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;

    use super::*;

    #[test]
    fn timestamps_read_by_hand_are_chronos() {
        for text in [
            "2022-02-01T00:02:32",
            "2009-01-01 00:34:01",
            "2024-02-29T23:59:59.5",
            "1969-12-31T23:59:59.000001",
            "2022-02-01T10:00:00.123456",
            "2022-02-01T10:00:00.1234567",
            "2022-02-01T10:00:00.",
            "2022-02-30T00:00:00",
            "2022-02-01T25:00:00",
            "2022-02-01T23:60:00",
            "2016-12-31T23:59:60",
            "2022-2-01T00:00:00",
            "+2022-02-01T00:00:00",
            "2022-02-01T00:00:0x",
            "2022-02-01",
            "",
        ] {
            assert_eq!(
                parse_timestamp(text).ok(),
                parse_with_chrono(text),
                "{text:?}"
            );
        }
        assert!(parse_fixed_layout(b"2022-02-01T10:00:00.5").is_some());
    }

    #[test]
    fn timestamps_are_formatted_as_chrono_formats_them() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let mut checked = 0;
        for i in 0..20_000u64 {
            let seconds = (random() % (10_000 * 366 * 86_400)) as i64;
            let nanos = match i % 5 {
                0 => 0,
                1 => random() % 1_000 * 1_000_000,
                2 => random() % 1_000_000 * 1_000,
                3 => random() % 1_000_000_000,
                _ => 1_000_000_000 + random() % 1_000_000_000,
            } as u32;
            // Leap-second nanoseconds only exist at second 59; other times are skipped.
            let Some(ts) = (base + chrono::Duration::seconds(seconds)).with_nanosecond(nanos)
            else {
                continue;
            };
            assert_eq!(
                format_timestamp(ts),
                ts.format(TIMESTAMP_FORMAT).to_string(),
                "{ts:?}"
            );
            checked += 1;
        }
        assert!(checked > 16_000, "{checked}");
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap();
        assert_eq!(
            format_timestamp(leap),
            leap.format(TIMESTAMP_FORMAT).to_string()
        );
        let far = chrono::NaiveDate::from_ymd_opt(12_345, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        assert_eq!(
            format_timestamp(far),
            far.format(TIMESTAMP_FORMAT).to_string()
        );
    }

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
            generation: 0,
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
            outliers: vec![ColumnOutliers {
                column: "fare_amount".into(),
                lower_quantile: 0.01,
                upper_quantile: 0.99,
                lower_bound: 2.5,
                upper_bound: 80.0,
                share_outside_quantiles: Some(1.0 / 3.0),
                iqr_lower_fence: -5.75,
                iqr_upper_fence: 37.25,
                share_outside_iqr: None,
                values: 3,
            }],
            contributions: vec![],
            segments: vec![],
            last_event_published_at: None,
            emitted_at: Utc::now(),
        };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(serde_json::from_str::<MetricRow>(&json).unwrap(), row);
        // Rows from monitors without outliers still parse.
        let mut older: serde_json::Value = serde_json::from_str(&json).unwrap();
        older.as_object_mut().unwrap().remove("outliers");
        let parsed: MetricRow = serde_json::from_value(older).unwrap();
        assert!(parsed.outliers.is_empty());
        let record = MetricsRecord::Window(row.clone());
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.starts_with(r#"{"record":"window","#), "{json}");
        assert_eq!(
            serde_json::from_str::<MetricsRecord>(&json).unwrap(),
            record
        );
        assert_eq!(
            row.window.message_key(),
            "taxi/tumbling/86400/86400/2022-02-01T00:00:00"
        );
    }
}
