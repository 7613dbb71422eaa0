//! Reads what a report shows. Every statement is parameterised: `$1` monitor, `$2` window kind,
//! `$3` size and `$4` step in seconds, `$5` and `$6` the optional range of window starts.

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{ReportQuery, ReportWindow};
use crate::service::MetricStore;
use crate::{Error, Result};

/// The window filter every query shares, after the monitor.
const SHAPE_AND_RANGE: &str = "window_kind = $2 AND window_size_seconds = $3 \
     AND window_step_seconds = $4 \
     AND ($5::timestamp IS NULL OR window_start >= $5::timestamp) \
     AND ($6::timestamp IS NULL OR window_start < $6::timestamp)";

/// The monitors with windows (drift or performance) of the shape in the range.
const MONITORS: &str = "\
SELECT monitor FROM window_metrics
 WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3
   AND ($4::timestamp IS NULL OR window_start >= $4::timestamp)
   AND ($5::timestamp IS NULL OR window_start < $5::timestamp)
UNION
SELECT monitor FROM window_performance
 WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3
   AND ($4::timestamp IS NULL OR window_start >= $4::timestamp)
   AND ($5::timestamp IS NULL OR window_start < $5::timestamp)
ORDER BY 1";

/// One window's summary (`window_metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub revision: i64,
    pub row_count: i64,
    pub number_of_columns: i64,
    pub missing_values: i64,
    pub share_missing: Option<f64>,
    pub prediction_drift: Option<f64>,
    pub prediction_stattest: Option<String>,
    pub prediction_threshold: Option<f64>,
    pub prediction_drift_detected: Option<bool>,
    pub drifted_columns: i64,
    pub share_drifted: f64,
    pub dataset_drift: bool,
    pub emitted_at: DateTime<Utc>,
}

/// One column's drift test in one window (`column_drift`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRow {
    pub start: NaiveDateTime,
    pub column: String,
    pub column_type: String,
    pub stattest: String,
    pub threshold: f64,
    pub score: Option<f64>,
    pub drift_detected: bool,
    pub current_rows: i64,
    pub error: Option<String>,
}

/// `column_quantiles`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileRow {
    pub start: NaiveDateTime,
    pub column: String,
    pub quantile: f64,
    pub value: Option<f64>,
}

/// `column_outliers`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierRow {
    pub start: NaiveDateTime,
    pub column: String,
    pub lower_quantile: f64,
    pub upper_quantile: f64,
    pub share_outside_quantiles: Option<f64>,
    pub share_outside_iqr: Option<f64>,
}

/// `window_performance`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceRow {
    pub start: NaiveDateTime,
    pub predictions: i64,
    pub labelled_rows: i64,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub mape: Option<f64>,
    pub r2: Option<f64>,
    pub mean_error: Option<f64>,
    pub fairness_low: f64,
    pub fairness_high: f64,
    pub worst_segment: Option<String>,
    pub worst_mae_ratio: Option<f64>,
}

/// `segment_performance`.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub start: NaiveDateTime,
    pub dimension: String,
    pub value: String,
    pub labelled_rows: i64,
    pub too_small: bool,
    pub mae: Option<f64>,
    pub mae_ratio: Option<f64>,
    pub unfair: bool,
}

/// `alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub start: NaiveDateTime,
    pub rule: String,
    pub state: String,
    pub metric: String,
    pub op: String,
    pub threshold: f64,
    pub for_windows: i32,
    pub value: Option<f64>,
}

/// `window_late_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRow {
    pub start: NaiveDateTime,
    pub dropped: i64,
}

/// Everything the page shows, oldest window first.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// The monitor reported on; None when no monitor has windows of the shape in the range.
    pub monitor: Option<String>,
    /// Every monitor with windows of the shape in the range.
    pub monitors_in_range: Vec<String>,
    pub window: ReportWindow,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    /// The database, as `postgres://user@host:port/db` (never the password).
    pub database: String,
    pub generated_at: DateTime<Utc>,
    pub windows: Vec<WindowRow>,
    pub columns: Vec<ColumnRow>,
    pub quantiles: Vec<QuantileRow>,
    pub outliers: Vec<OutlierRow>,
    pub performance: Vec<PerformanceRow>,
    pub segments: Vec<SegmentRow>,
    pub alerts: Vec<AlertRow>,
    pub late: Vec<LateRow>,
}

impl ReportData {
    /// An empty report (no monitor, no rows), the base of `load`.
    pub fn empty(query: &ReportQuery, database: String) -> Self {
        Self {
            monitor: query.monitor.clone(),
            monitors_in_range: Vec::new(),
            window: query.window,
            from: query.from,
            to: query.to,
            database,
            generated_at: Utc::now(),
            windows: Vec::new(),
            columns: Vec::new(),
            quantiles: Vec::new(),
            outliers: Vec::new(),
            performance: Vec::new(),
            segments: Vec::new(),
            alerts: Vec::new(),
            late: Vec::new(),
        }
    }
}

/// Reads the report's rows in one read-only, repeatable-read transaction (one snapshot, so the
/// sections agree with each other while a sink keeps writing).
pub async fn load(store: &MetricStore, query: &ReportQuery) -> Result<ReportData> {
    let error = |what: &'static str| {
        move |source: tokio_postgres::Error| match source.as_db_error() {
            // The report never migrates (it only reads): say what to run.
            Some(db) if *db.code() == SqlState::UNDEFINED_TABLE => Error::Report {
                problem: format!(
                    "database at {}: {what} failed: {}; `sink migrate` creates the tables \
                     (and `sink run` fills them)",
                    store.target(),
                    db.message()
                ),
            },
            _ => Error::Query {
                target: store.target().to_owned(),
                what,
                source,
            },
        }
    };
    let mut client = store.client().await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(error("BEGIN"))?;

    let kind = query.window.kind().as_str();
    let size = query.window.size_seconds;
    let step = query.window.step_seconds;
    let mut data = ReportData::empty(query, store.target().to_owned());
    data.monitors_in_range = tx
        .query(MONITORS, &[&kind, &size, &step, &query.from, &query.to])
        .await
        .map_err(error("listing the monitors"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if data.monitor.is_none() {
        match data.monitors_in_range.as_slice() {
            [] => return Ok(data),
            [only] => data.monitor = Some(only.clone()),
            several => {
                return Err(Error::Report {
                    problem: format!(
                        "{} monitors have {} windows in the range ({}); choose one with --monitor",
                        several.len(),
                        query.window.label(),
                        several.join(", ")
                    ),
                })
            }
        }
    }
    let monitor = data.monitor.clone().unwrap_or_default();
    let params: [&(dyn ToSql + Sync); 6] = [&monitor, &kind, &size, &step, &query.from, &query.to];

    let select = |columns: &str, table: &str, order: &str| {
        format!("SELECT {columns} FROM {table} WHERE monitor = $1 AND {SHAPE_AND_RANGE} ORDER BY {order}")
    };
    let rows = |sql: String, what: &'static str| {
        let tx = &tx;
        let params = &params;
        async move { tx.query(&sql, params).await.map_err(error(what)) }
    };

    data.windows = rows(
        select(
            "window_start, window_end, revision, row_count, number_of_columns, \
             number_of_missing_values, share_of_missing_values, prediction_drift, \
             prediction_stattest, prediction_threshold, prediction_drift_detected, \
             number_of_drifted_columns, share_of_drifted_columns, dataset_drift, emitted_at",
            "window_metrics",
            "window_start",
        ),
        "reading window_metrics",
    )
    .await?
    .iter()
    .map(|r| WindowRow {
        start: r.get(0),
        end: r.get(1),
        revision: r.get(2),
        row_count: r.get(3),
        number_of_columns: r.get(4),
        missing_values: r.get(5),
        share_missing: r.get(6),
        prediction_drift: r.get(7),
        prediction_stattest: r.get(8),
        prediction_threshold: r.get(9),
        prediction_drift_detected: r.get(10),
        drifted_columns: r.get(11),
        share_drifted: r.get(12),
        dataset_drift: r.get(13),
        emitted_at: r.get(14),
    })
    .collect();

    data.columns = rows(
        select(
            "window_start, column_name, column_type, stattest, threshold, score, drift_detected, \
             current_rows, error",
            "column_drift",
            "window_start, column_name",
        ),
        "reading column_drift",
    )
    .await?
    .iter()
    .map(|r| ColumnRow {
        start: r.get(0),
        column: r.get(1),
        column_type: r.get(2),
        stattest: r.get(3),
        threshold: r.get(4),
        score: r.get(5),
        drift_detected: r.get(6),
        current_rows: r.get(7),
        error: r.get(8),
    })
    .collect();

    data.quantiles = rows(
        select(
            "window_start, column_name, quantile, value",
            "column_quantiles",
            "column_name, quantile, window_start",
        ),
        "reading column_quantiles",
    )
    .await?
    .iter()
    .map(|r| QuantileRow {
        start: r.get(0),
        column: r.get(1),
        quantile: r.get(2),
        value: r.get(3),
    })
    .collect();

    data.outliers = rows(
        select(
            "window_start, column_name, lower_quantile, upper_quantile, \
             share_outside_quantiles, share_outside_iqr",
            "column_outliers",
            "column_name, window_start",
        ),
        "reading column_outliers",
    )
    .await?
    .iter()
    .map(|r| OutlierRow {
        start: r.get(0),
        column: r.get(1),
        lower_quantile: r.get(2),
        upper_quantile: r.get(3),
        share_outside_quantiles: r.get(4),
        share_outside_iqr: r.get(5),
    })
    .collect();

    data.performance = rows(
        select(
            "window_start, predictions, labelled_rows, mae, rmse, mape, r2, mean_error, \
             fairness_low, fairness_high, worst_segment, worst_mae_ratio",
            "window_performance",
            "window_start",
        ),
        "reading window_performance",
    )
    .await?
    .iter()
    .map(|r| PerformanceRow {
        start: r.get(0),
        predictions: r.get(1),
        labelled_rows: r.get(2),
        mae: r.get(3),
        rmse: r.get(4),
        mape: r.get(5),
        r2: r.get(6),
        mean_error: r.get(7),
        fairness_low: r.get(8),
        fairness_high: r.get(9),
        worst_segment: r.get(10),
        worst_mae_ratio: r.get(11),
    })
    .collect();

    data.segments = rows(
        select(
            "window_start, dimension, value, labelled_rows, too_small, mae, mae_ratio, unfair",
            "segment_performance",
            "dimension, value, window_start",
        ),
        "reading segment_performance",
    )
    .await?
    .iter()
    .map(|r| SegmentRow {
        start: r.get(0),
        dimension: r.get(1),
        value: r.get(2),
        labelled_rows: r.get(3),
        too_small: r.get(4),
        mae: r.get(5),
        mae_ratio: r.get(6),
        unfair: r.get(7),
    })
    .collect();

    data.alerts = rows(
        select(
            "window_start, rule, state, metric, op, threshold, for_windows, value",
            "alerts",
            "window_start, rule",
        ),
        "reading alerts",
    )
    .await?
    .iter()
    .map(|r| AlertRow {
        start: r.get(0),
        rule: r.get(1),
        state: r.get(2),
        metric: r.get(3),
        op: r.get(4),
        threshold: r.get(5),
        for_windows: r.get(6),
        value: r.get(7),
    })
    .collect();

    data.late = rows(
        select(
            "window_start, late_events_dropped",
            "window_late_events",
            "window_start",
        ),
        "reading window_late_events",
    )
    .await?
    .iter()
    .map(|r: &Row| LateRow {
        start: r.get(0),
        dropped: r.get(1),
    })
    .collect();

    tx.commit().await.map_err(error("COMMIT"))?;
    Ok(data)
}
