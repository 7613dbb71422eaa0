//! Turning window metrics into metric rows, and the `monitor batch` report.

use chrono::{NaiveDateTime, Utc};
use serde::Serialize;
use streamwatch_common::events::{format_timestamp, parse_timestamp, MetricRow, WindowKey};

use crate::batch::{aggregate_parquet, reference_from_parquet, Slice};
use crate::config::{BatchArgs, ProfileArgs, Resolved};
use crate::evaluate::{evaluate, WindowMetrics};
use crate::mapping::ColumnMapping;
use crate::window::{parse_duration, ReadyWindow};
use crate::{MonitorError, Result};

fn from_micros(us: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_micros(us)
        .expect("window bounds are within chrono's range")
        .naive_utc()
}

/// The metric row of an emitted window.
pub fn metric_row(
    mapping: &ColumnMapping,
    window: &ReadyWindow,
    metrics: WindowMetrics,
) -> MetricRow {
    MetricRow {
        window: WindowKey {
            monitor: mapping.monitor_name.clone(),
            kind: window.spec.kind(),
            size_seconds: window.spec.size_us / 1_000_000,
            step_seconds: window.spec.step_us / 1_000_000,
            start: from_micros(window.start_us),
            end: from_micros(window.start_us + window.spec.size_us),
        },
        revision: window.revision,
        row_count: metrics.row_count,
        number_of_columns: metrics.number_of_columns,
        number_of_missing_values: metrics.number_of_missing_values,
        share_of_missing_values: metrics.share_of_missing_values,
        prediction_drift: metrics.prediction_drift,
        number_of_drifted_columns: metrics.number_of_drifted_columns,
        share_of_drifted_columns: metrics.share_of_drifted_columns,
        dataset_drift: metrics.dataset_drift,
        columns: metrics.columns,
        quantiles: metrics.quantiles,
        emitted_at: Utc::now(),
    }
}

/// One window of `monitor batch` output.
#[derive(Debug, Clone, Serialize)]
pub struct BatchWindow {
    /// Window start, or the `--from` bound (if any) for a single window.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    #[serde(flatten)]
    pub metrics: WindowMetrics,
}

fn parse_bound(text: &Option<String>) -> Result<Option<NaiveDateTime>> {
    text.as_deref()
        .map(|t| {
            let full = if t.len() == 10 {
                format!("{t}T00:00:00")
            } else {
                t.to_owned()
            };
            parse_timestamp(&full).map_err(MonitorError::from)
        })
        .transpose()
}

/// Runs `monitor batch`: the metrics of a scored Parquet file against a reference, per
/// window or for the whole selection.
pub async fn batch(args: &BatchArgs) -> Result<Vec<BatchWindow>> {
    let resolved = Resolved::new(&args.monitored, &[])?;
    let mapping = resolved.mapping;
    let reference = reference_from_parquet(&resolved.reference, &mapping).await?;
    let window_seconds = args
        .window
        .as_deref()
        .map(|w| parse_duration(w).map(|us| us / 1_000_000))
        .transpose()?;
    let (from, to) = (parse_bound(&args.from)?, parse_bound(&args.to)?);
    // The time column is needed only to select or cut by time.
    let uses_time = from.is_some() || to.is_some() || window_seconds.is_some();
    let slice = Slice {
        time_column: uses_time.then(|| {
            resolved
                .timestamp
                .unwrap_or_else(|| args.time_column.clone())
        }),
        from,
        to,
        window_seconds,
    };
    let current_error = |reason| MonitorError::Current {
        path: args.current.clone(),
        reason,
    };
    let windows = aggregate_parquet(&args.current, &mapping, &slice, current_error).await?;
    Ok(windows
        .into_iter()
        .map(|(start, data)| {
            let metrics = evaluate(&mapping, &reference, &data);
            let (window_start, window_end) = match (start, window_seconds) {
                (Some(start), Some(seconds)) => (
                    Some(start),
                    Some(start + chrono::Duration::seconds(seconds)),
                ),
                _ => (slice.from, slice.to),
            };
            BatchWindow {
                window_start: window_start.map(format_timestamp),
                window_end: window_end.map(format_timestamp),
                metrics,
            }
        })
        .collect())
}

/// Runs `monitor profile`: aggregates the reference once and stores its value counts.
pub async fn profile(args: &ProfileArgs) -> Result<(String, usize)> {
    let resolved = Resolved::new(&args.monitored, &[])?;
    let reference = reference_from_parquet(&resolved.reference, &resolved.mapping).await?;
    crate::profile::write(&args.output, &resolved.mapping, &reference)?;
    Ok((args.output.clone(), reference.len()))
}
