//! Turning window metrics into metric rows, and the `monitor batch` report.

use chrono::{NaiveDateTime, Utc};
use serde::Serialize;
use streamwatch_common::events::{
    format_timestamp, generation, parse_timestamp, LateEvent, LateEvents, MetricRow,
    PerformanceReport, WindowKey, WindowShape,
};

use crate::batch::{aggregate_parquet, reference_from_parquet, Slice};
use crate::config::{BatchArgs, ProfileArgs, Resolved};
use crate::evaluate::{evaluate, WindowMetrics};
use crate::mapping::ColumnMapping;
use crate::performance::ReadyPerformance;
use crate::window::{parse_duration, LateAssignment, ReadyWindow, WindowSpec};
use crate::{MonitorError, Result};

fn from_micros(us: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_micros(us)
        .expect("window bounds are within chrono's range")
        .naive_utc()
}

fn shape(mapping: &ColumnMapping, spec: WindowSpec) -> WindowShape {
    WindowShape {
        monitor: mapping.monitor_name.clone(),
        kind: spec.kind(),
        size_seconds: spec.size_us / 1_000_000,
        step_seconds: spec.step_us / 1_000_000,
    }
}

/// The late-event reports of one micro-batch: one per window spec that dropped events.
pub fn late_events(
    mapping: &ColumnMapping,
    topic: &str,
    watermark_us: i64,
    dropped: &[LateAssignment],
) -> Vec<LateEvents> {
    let mut reports: Vec<LateEvents> = Vec::new();
    for late in dropped {
        let shape = shape(mapping, late.spec);
        let event = LateEvent {
            partition: late.partition,
            offset: late.offset,
            index: late.index,
            event_time: from_micros(late.time_us),
        };
        match reports.iter_mut().find(|r| r.shape == shape) {
            Some(report) => report.events.push(event),
            None => reports.push(LateEvents {
                shape,
                topic: topic.to_owned(),
                watermark: from_micros(watermark_us),
                events: vec![event],
                emitted_at: Utc::now(),
            }),
        }
    }
    reports
}

fn window_key(mapping: &ColumnMapping, spec: WindowSpec, start_us: i64) -> WindowKey {
    WindowKey {
        monitor: mapping.monitor_name.clone(),
        kind: spec.kind(),
        size_seconds: spec.size_us / 1_000_000,
        step_seconds: spec.step_us / 1_000_000,
        start: from_micros(start_us),
        end: from_micros(start_us + spec.size_us),
    }
}

/// The performance record of a window.
pub fn performance_report(mapping: &ColumnMapping, ready: ReadyPerformance) -> PerformanceReport {
    PerformanceReport {
        window: window_key(mapping, ready.spec, ready.start_us),
        generation: generation(),
        revision: ready.revision,
        overall: ready.overall,
        unmatched_completions: ready.unmatched_completions,
        segments: ready.segments,
        fairness_band: ready.fairness_band,
        worst_segment: ready.worst_segment,
        worst_mae_ratio: ready.worst_mae_ratio,
        error_outliers: ready.error_outliers,
        emitted_at: Utc::now(),
    }
}

/// The metric row of an emitted window.
pub fn metric_row(
    mapping: &ColumnMapping,
    window: &ReadyWindow,
    metrics: WindowMetrics,
) -> MetricRow {
    MetricRow {
        window: window_key(mapping, window.spec, window.start_us),
        generation: generation(),
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
        outliers: metrics.outliers,
        contributions: metrics.contributions,
        segments: Vec::new(),
        last_event_published_at: window
            .last_published_ms
            .and_then(chrono::DateTime::from_timestamp_millis),
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
        group_column: None,
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
