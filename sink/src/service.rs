//! The database side: the connection pool and the upsert of metric rows.

use std::collections::HashSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use streamwatch_common::events::{
    ColumnDrift, ColumnOutliers, FeatureContribution, LateEvents, MetricRow, MetricsRecord,
    PerformanceReport, PerformanceStats,
};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::NoTls;

use crate::config::DatabaseArgs;
use crate::{Error, Result};

/// Upserts a window's summary; a replayed older revision leaves a newer one in place (the
/// `WHERE` makes the conflicting row not updated, and then nothing is returned).
const UPSERT_WINDOW: &str = "\
INSERT INTO window_metrics (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start, window_end,
    revision, row_count, number_of_columns, number_of_missing_values, share_of_missing_values,
    prediction_drift, prediction_stattest, prediction_threshold, prediction_drift_detected,
    number_of_drifted_columns, share_of_drifted_columns, dataset_drift, emitted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT (monitor, window_kind, window_size_seconds, window_step_seconds, window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end,
    revision = EXCLUDED.revision,
    row_count = EXCLUDED.row_count,
    number_of_columns = EXCLUDED.number_of_columns,
    number_of_missing_values = EXCLUDED.number_of_missing_values,
    share_of_missing_values = EXCLUDED.share_of_missing_values,
    prediction_drift = EXCLUDED.prediction_drift,
    prediction_stattest = EXCLUDED.prediction_stattest,
    prediction_threshold = EXCLUDED.prediction_threshold,
    prediction_drift_detected = EXCLUDED.prediction_drift_detected,
    number_of_drifted_columns = EXCLUDED.number_of_drifted_columns,
    share_of_drifted_columns = EXCLUDED.share_of_drifted_columns,
    dataset_drift = EXCLUDED.dataset_drift,
    emitted_at = EXCLUDED.emitted_at,
    stored_at = now()
WHERE window_metrics.revision <= EXCLUDED.revision
RETURNING revision";

const DELETE_COLUMNS: &str = "DELETE FROM column_drift WHERE monitor = $1 AND window_kind = $2 \
     AND window_size_seconds = $3 AND window_step_seconds = $4 AND window_start = $5";

const DELETE_QUANTILES: &str =
    "DELETE FROM column_quantiles WHERE monitor = $1 AND window_kind = $2 \
     AND window_size_seconds = $3 AND window_step_seconds = $4 AND window_start = $5";

const DELETE_OUTLIERS: &str =
    "DELETE FROM column_outliers WHERE monitor = $1 AND window_kind = $2 \
     AND window_size_seconds = $3 AND window_step_seconds = $4 AND window_start = $5";

const INSERT_OUTLIERS: &str = "\
INSERT INTO column_outliers (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
    column_name, lower_quantile, upper_quantile, lower_bound, upper_bound,
    share_outside_quantiles, iqr_lower_fence, iqr_upper_fence, share_outside_iqr, finite_values)
SELECT $1, $2, $3, $4, $5, o.*
FROM UNNEST($6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],
            $12::float8[], $13::float8[], $14::float8[], $15::int8[]) AS o";

const DELETE_CONTRIBUTIONS: &str =
    "DELETE FROM feature_contributions WHERE monitor = $1 AND window_kind = $2 \
     AND window_size_seconds = $3 AND window_step_seconds = $4 AND window_start = $5";

const INSERT_CONTRIBUTIONS: &str = "\
INSERT INTO feature_contributions (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
    feature, coefficient, reference_mean, mean_contribution, mean_abs_contribution,
    reference_mean_abs_contribution, drift_score, drift_detected, rows)
SELECT $1, $2, $3, $4, $5, c.*
FROM UNNEST($6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],
            $12::float8[], $13::bool[], $14::int8[]) AS c";

/// One statement per window for all its columns: arrays unnested into rows.
const INSERT_COLUMNS: &str = "\
INSERT INTO column_drift (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
    column_name, column_type, stattest, threshold, score, drift_detected,
    reference_rows, current_rows, error)
SELECT $1, $2, $3, $4, $5, c.*
FROM UNNEST($6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::bool[],
            $12::int8[], $13::int8[], $14::text[]) AS c";

/// Upserts a window's performance; an older revision leaves a newer one in place.
const UPSERT_PERFORMANCE: &str = "\
INSERT INTO window_performance (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start, window_end,
    revision, predictions, labelled_rows, unmatched_completions, mae, rmse, mape, mape_rows, r2,
    mean_error, label_delay_mean_seconds, label_delay_p50_seconds, label_delay_p95_seconds,
    label_delay_max_seconds, fairness_low, fairness_high, worst_segment, worst_mae_ratio, emitted_at,
    error_lower_bound, error_upper_bound, error_share_outside_quantiles, error_share_outside_iqr)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
        $21, $22, $23, $24, $25, $26, $27, $28, $29)
ON CONFLICT (monitor, window_kind, window_size_seconds, window_step_seconds, window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end,
    revision = EXCLUDED.revision,
    predictions = EXCLUDED.predictions,
    labelled_rows = EXCLUDED.labelled_rows,
    unmatched_completions = EXCLUDED.unmatched_completions,
    mae = EXCLUDED.mae,
    rmse = EXCLUDED.rmse,
    mape = EXCLUDED.mape,
    mape_rows = EXCLUDED.mape_rows,
    r2 = EXCLUDED.r2,
    mean_error = EXCLUDED.mean_error,
    label_delay_mean_seconds = EXCLUDED.label_delay_mean_seconds,
    label_delay_p50_seconds = EXCLUDED.label_delay_p50_seconds,
    label_delay_p95_seconds = EXCLUDED.label_delay_p95_seconds,
    label_delay_max_seconds = EXCLUDED.label_delay_max_seconds,
    fairness_low = EXCLUDED.fairness_low,
    fairness_high = EXCLUDED.fairness_high,
    worst_segment = EXCLUDED.worst_segment,
    worst_mae_ratio = EXCLUDED.worst_mae_ratio,
    emitted_at = EXCLUDED.emitted_at,
    error_lower_bound = EXCLUDED.error_lower_bound,
    error_upper_bound = EXCLUDED.error_upper_bound,
    error_share_outside_quantiles = EXCLUDED.error_share_outside_quantiles,
    error_share_outside_iqr = EXCLUDED.error_share_outside_iqr,
    stored_at = now()
WHERE window_performance.revision <= EXCLUDED.revision
RETURNING revision";

const DELETE_SEGMENTS: &str =
    "DELETE FROM segment_performance WHERE monitor = $1 AND window_kind = $2 \
     AND window_size_seconds = $3 AND window_step_seconds = $4 AND window_start = $5";

const INSERT_SEGMENTS: &str = "\
INSERT INTO segment_performance (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
    dimension, value, predictions, labelled_rows, too_small, mae, rmse, mape, mape_rows, r2,
    mean_error, label_delay_mean_seconds, label_delay_p50_seconds, label_delay_p95_seconds,
    label_delay_max_seconds, mae_ratio, bias_ratio, unfair)
SELECT $1, $2, $3, $4, $5, s.*
FROM UNNEST($6::text[], $7::text[], $8::int8[], $9::int8[], $10::bool[], $11::float8[],
            $12::float8[], $13::float8[], $14::int8[], $15::float8[], $16::float8[],
            $17::float8[], $18::float8[], $19::float8[], $20::float8[], $21::float8[],
            $22::float8[], $23::bool[]) AS s";

/// Stores an alert transition; a repeated one replaces itself.
const UPSERT_ALERT: &str = "\
INSERT INTO alerts (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start, window_end,
    rule, state, metric, op, threshold, for_windows, value, emitted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, rule)
DO UPDATE SET
    window_end = EXCLUDED.window_end,
    state = EXCLUDED.state,
    metric = EXCLUDED.metric,
    op = EXCLUDED.op,
    threshold = EXCLUDED.threshold,
    for_windows = EXCLUDED.for_windows,
    value = EXCLUDED.value,
    emitted_at = EXCLUDED.emitted_at,
    stored_at = now()";

/// Late events are stored once per event and window shape; a repeated report changes nothing.
const INSERT_LATE_EVENTS: &str = "\
INSERT INTO late_events (
    monitor, window_kind, window_size_seconds, window_step_seconds, source_topic,
    source_partition, source_offset, event_time, watermark, dropped_at)
SELECT $1, $2, $3, $4, $5, e.partition, e.offset_, e.event_time, $6, $7
FROM UNNEST($8::int4[], $9::int8[], $10::timestamp[]) AS e(partition, offset_, event_time)
ON CONFLICT DO NOTHING";

const INSERT_QUANTILES: &str = "\
INSERT INTO column_quantiles (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
    column_name, quantile, value)
SELECT $1, $2, $3, $4, $5, q.*
FROM UNNEST($6::text[], $7::float8[], $8::float8[]) AS q";

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows stored (new windows, or a revision at least as new as the stored one).
    pub applied: usize,
    /// Rows skipped because the database holds a newer revision of their window.
    pub stale: usize,
}

/// The database holding the metric tables.
#[derive(Clone)]
pub struct MetricStore {
    pool: Pool,
    target: String,
    wait: Duration,
}

impl MetricStore {
    /// Builds the pool from the command-line settings; no connection is opened yet.
    pub fn from_args(args: &DatabaseArgs) -> Result<Self> {
        let mut config: tokio_postgres::Config = args
            .database_url
            .parse()
            .map_err(|source| Error::DatabaseUrl { source })?;
        if let Some(path) = &args.database_password_file {
            let password = std::fs::read_to_string(path).map_err(|source| Error::PasswordFile {
                path: path.clone(),
                source,
            })?;
            config.password(password.trim_end());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(args.connect_timeout));
        }
        Self::from_config(config, usize::from(args.pool_size))
    }

    /// Builds the pool for an already parsed configuration.
    pub fn from_config(mut config: tokio_postgres::Config, pool_size: usize) -> Result<Self> {
        let target = describe(&config);
        // TLS would need a TLS connector crate; refuse rather than silently connect in plaintext.
        if config.get_ssl_mode() == SslMode::Require {
            return Err(Error::DatabaseSettings {
                target,
                problem: "asks for sslmode=require, but the sink connects without TLS; use \
                          sslmode=disable or prefer (or a TLS-terminating proxy)"
                    .into(),
            });
        }
        if config.get_application_name().is_none() {
            config.application_name("streamwatch-sink");
        }
        let connect = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A connection attempt may take `connect`; waiting for a pooled one twice that.
        let wait = connect * 2;
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(connect))
            .wait_timeout(Some(wait))
            .recycle_timeout(Some(connect))
            .build()
            .map_err(|e| Error::Pool {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { pool, target, wait })
    }

    /// The server and database, for messages (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(source) => Error::Unreachable {
                target: self.target.clone(),
                source,
            },
            PoolError::Timeout(_) => Error::PoolTimeout {
                target: self.target.clone(),
                waited: self.wait,
            },
            other => Error::Pool {
                target: self.target.clone(),
                reason: other.to_string(),
            },
        })
    }

    /// Fails unless the server answers a query.
    pub async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|source| Error::Unreachable {
                target: self.target.clone(),
                source,
            })
    }

    fn query_error(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |source| Error::Query {
            target: self.target.clone(),
            what,
            source,
        }
    }

    /// Writes `records` in one transaction, in order. For each window row: upsert its window;
    /// when that applied, replace the window's column, quantile and outlier rows. Late events are
    /// inserted once. Nothing is written on error.
    pub async fn write(&self, records: &[MetricsRecord]) -> Result<WriteSummary> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.query_error("BEGIN"))?;
        let upsert = tx
            .prepare_cached(UPSERT_WINDOW)
            .await
            .map_err(self.query_error("prepare"))?;
        let delete_columns = tx
            .prepare_cached(DELETE_COLUMNS)
            .await
            .map_err(self.query_error("prepare"))?;
        let delete_quantiles = tx
            .prepare_cached(DELETE_QUANTILES)
            .await
            .map_err(self.query_error("prepare"))?;
        let insert_columns = tx
            .prepare_cached(INSERT_COLUMNS)
            .await
            .map_err(self.query_error("prepare"))?;
        let insert_quantiles = tx
            .prepare_cached(INSERT_QUANTILES)
            .await
            .map_err(self.query_error("prepare"))?;
        let delete_outliers = tx
            .prepare_cached(DELETE_OUTLIERS)
            .await
            .map_err(self.query_error("prepare"))?;
        let insert_outliers = tx
            .prepare_cached(INSERT_OUTLIERS)
            .await
            .map_err(self.query_error("prepare"))?;
        let insert_late = tx
            .prepare_cached(INSERT_LATE_EVENTS)
            .await
            .map_err(self.query_error("prepare"))?;

        let mut summary = WriteSummary::default();
        for record in records {
            let row = match record {
                MetricsRecord::Window(row) => row,
                MetricsRecord::Alert(alert) => {
                    let upsert = tx
                        .prepare_cached(UPSERT_ALERT)
                        .await
                        .map_err(self.query_error("prepare"))?;
                    let w = &alert.window;
                    tx.execute(
                        &upsert,
                        &[
                            &w.monitor,
                            &w.kind.as_str(),
                            &w.size_seconds,
                            &w.step_seconds,
                            &w.start,
                            &w.end,
                            &alert.rule,
                            &alert.state.as_str(),
                            &alert.metric,
                            &alert.op,
                            &alert.threshold,
                            &i32::try_from(alert.for_windows).unwrap_or(i32::MAX),
                            &alert.value,
                            &alert.emitted_at,
                        ],
                    )
                    .await
                    .map_err(self.query_error("upsert of alerts"))?;
                    summary.applied += 1;
                    continue;
                }
                MetricsRecord::Performance(report) => {
                    if self.write_performance(&tx, report).await? {
                        summary.applied += 1;
                    } else {
                        summary.stale += 1;
                    }
                    continue;
                }
                MetricsRecord::LateEvents(late) => {
                    let values = LateValues::new(late);
                    tx.execute(
                        &insert_late,
                        &[
                            &late.shape.monitor,
                            &late.shape.kind.as_str(),
                            &late.shape.size_seconds,
                            &late.shape.step_seconds,
                            &late.topic,
                            &late.watermark,
                            &late.emitted_at,
                            &values.partitions,
                            &values.offsets,
                            &values.times,
                        ],
                    )
                    .await
                    .map_err(self.query_error("insert into late_events"))?;
                    summary.applied += 1;
                    continue;
                }
            };
            let values = RowValues::new(row);
            let key = values.key();
            let applied = tx
                .query_opt(
                    &upsert,
                    &[
                        key[0],
                        key[1],
                        key[2],
                        key[3],
                        key[4],
                        &row.window.end,
                        &values.revision,
                        &values.row_count,
                        &values.number_of_columns,
                        &values.number_of_missing_values,
                        &row.share_of_missing_values,
                        &values.prediction_score,
                        &values.prediction_stattest,
                        &values.prediction_threshold,
                        &values.prediction_detected,
                        &values.number_of_drifted_columns,
                        &row.share_of_drifted_columns,
                        &row.dataset_drift,
                        &row.emitted_at,
                    ],
                )
                .await
                .map_err(self.query_error("upsert of window_metrics"))?
                .is_some();
            if !applied {
                summary.stale += 1;
                continue;
            }
            summary.applied += 1;
            tx.execute(&delete_columns, &key)
                .await
                .map_err(self.query_error("delete from column_drift"))?;
            tx.execute(&delete_quantiles, &key)
                .await
                .map_err(self.query_error("delete from column_quantiles"))?;
            if !row.columns.is_empty() {
                let c = ColumnArrays::new(&row.columns);
                tx.execute(
                    &insert_columns,
                    &[
                        key[0],
                        key[1],
                        key[2],
                        key[3],
                        key[4],
                        &c.names,
                        &c.types,
                        &c.stattests,
                        &c.thresholds,
                        &c.scores,
                        &c.detected,
                        &c.reference_rows,
                        &c.current_rows,
                        &c.errors,
                    ],
                )
                .await
                .map_err(self.query_error("insert into column_drift"))?;
            }
            if !row.quantiles.is_empty() {
                let names: Vec<&str> = row.quantiles.iter().map(|q| q.column.as_str()).collect();
                let quantiles: Vec<f64> = row.quantiles.iter().map(|q| q.quantile).collect();
                let values: Vec<Option<f64>> = row.quantiles.iter().map(|q| q.value).collect();
                tx.execute(
                    &insert_quantiles,
                    &[
                        key[0], key[1], key[2], key[3], key[4], &names, &quantiles, &values,
                    ],
                )
                .await
                .map_err(self.query_error("insert into column_quantiles"))?;
            }
            tx.execute(&delete_outliers, &key)
                .await
                .map_err(self.query_error("delete from column_outliers"))?;
            if !row.outliers.is_empty() {
                let o = OutlierArrays::new(&row.outliers);
                tx.execute(
                    &insert_outliers,
                    &[
                        key[0],
                        key[1],
                        key[2],
                        key[3],
                        key[4],
                        &o.names,
                        &o.lower_quantiles,
                        &o.upper_quantiles,
                        &o.lower_bounds,
                        &o.upper_bounds,
                        &o.shares_outside_quantiles,
                        &o.iqr_lower_fences,
                        &o.iqr_upper_fences,
                        &o.shares_outside_iqr,
                        &o.values,
                    ],
                )
                .await
                .map_err(self.query_error("insert into column_outliers"))?;
            }
            self.write_contributions(&tx, &key, &row.contributions)
                .await?;
        }
        tx.commit().await.map_err(self.query_error("COMMIT"))?;
        Ok(summary)
    }
}

impl MetricStore {
    /// Replaces a window's feature contributions.
    async fn write_contributions(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        key: &[&(dyn tokio_postgres::types::ToSql + Sync); 5],
        contributions: &[FeatureContribution],
    ) -> Result<()> {
        let delete = tx
            .prepare_cached(DELETE_CONTRIBUTIONS)
            .await
            .map_err(self.query_error("prepare"))?;
        tx.execute(&delete, key)
            .await
            .map_err(self.query_error("delete from feature_contributions"))?;
        if contributions.is_empty() {
            return Ok(());
        }
        let insert = tx
            .prepare_cached(INSERT_CONTRIBUTIONS)
            .await
            .map_err(self.query_error("prepare"))?;
        let c = contributions;
        tx.execute(
            &insert,
            &[
                key[0],
                key[1],
                key[2],
                key[3],
                key[4],
                &c.iter().map(|c| c.feature.as_str()).collect::<Vec<_>>(),
                &c.iter().map(|c| c.coefficient).collect::<Vec<_>>(),
                &c.iter().map(|c| c.reference_mean).collect::<Vec<_>>(),
                &c.iter().map(|c| c.mean_contribution).collect::<Vec<_>>(),
                &c.iter()
                    .map(|c| c.mean_abs_contribution)
                    .collect::<Vec<_>>(),
                &c.iter()
                    .map(|c| c.reference_mean_abs_contribution)
                    .collect::<Vec<_>>(),
                &c.iter().map(|c| c.drift_score).collect::<Vec<_>>(),
                &c.iter().map(|c| c.drift_detected).collect::<Vec<_>>(),
                &c.iter().map(|c| saturating_i64(c.rows)).collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(self.query_error("insert into feature_contributions"))?;
        Ok(())
    }

    /// Upserts one performance report and, when it applied, replaces its segment rows.
    async fn write_performance(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        report: &PerformanceReport,
    ) -> Result<bool> {
        let upsert = tx
            .prepare_cached(UPSERT_PERFORMANCE)
            .await
            .map_err(self.query_error("prepare"))?;
        let w = &report.window;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &w.monitor,
            &w.kind.as_str(),
            &w.size_seconds,
            &w.step_seconds,
            &w.start,
        ];
        let overall = StatsValues::new(&report.overall);
        let errors = report.error_outliers.as_ref();
        let applied = tx
            .query_opt(
                &upsert,
                &[
                    key[0],
                    key[1],
                    key[2],
                    key[3],
                    key[4],
                    &w.end,
                    &i64::from(report.revision),
                    &overall.predictions,
                    &overall.labelled,
                    &saturating_i64(report.unmatched_completions),
                    &overall.mae,
                    &overall.rmse,
                    &overall.mape,
                    &overall.mape_rows,
                    &overall.r2,
                    &overall.mean_error,
                    &overall.delay_mean,
                    &overall.delay_p50,
                    &overall.delay_p95,
                    &overall.delay_max,
                    &report.fairness_band[0],
                    &report.fairness_band[1],
                    &report.worst_segment,
                    &report.worst_mae_ratio,
                    &report.emitted_at,
                    &errors.map(|o| o.lower_bound),
                    &errors.map(|o| o.upper_bound),
                    &errors.and_then(|o| o.share_outside_quantiles),
                    &errors.and_then(|o| o.share_outside_iqr),
                ],
            )
            .await
            .map_err(self.query_error("upsert of window_performance"))?
            .is_some();
        if !applied {
            return Ok(false);
        }
        let delete = tx
            .prepare_cached(DELETE_SEGMENTS)
            .await
            .map_err(self.query_error("prepare"))?;
        tx.execute(&delete, &key)
            .await
            .map_err(self.query_error("delete from segment_performance"))?;
        if report.segments.is_empty() {
            return Ok(true);
        }
        let insert = tx
            .prepare_cached(INSERT_SEGMENTS)
            .await
            .map_err(self.query_error("prepare"))?;
        let segments = &report.segments;
        let stats: Vec<StatsValues> = segments
            .iter()
            .map(|s| StatsValues::new(&s.stats))
            .collect();
        let column = |f: fn(&StatsValues) -> Option<f64>| stats.iter().map(f).collect::<Vec<_>>();
        tx.execute(
            &insert,
            &[
                key[0],
                key[1],
                key[2],
                key[3],
                key[4],
                &segments
                    .iter()
                    .map(|s| s.dimension.as_str())
                    .collect::<Vec<_>>(),
                &segments
                    .iter()
                    .map(|s| s.value.as_str())
                    .collect::<Vec<_>>(),
                &stats.iter().map(|s| s.predictions).collect::<Vec<_>>(),
                &stats.iter().map(|s| s.labelled).collect::<Vec<_>>(),
                &segments.iter().map(|s| s.too_small).collect::<Vec<_>>(),
                &column(|s| s.mae),
                &column(|s| s.rmse),
                &column(|s| s.mape),
                &stats.iter().map(|s| s.mape_rows).collect::<Vec<_>>(),
                &column(|s| s.r2),
                &column(|s| s.mean_error),
                &column(|s| s.delay_mean),
                &column(|s| s.delay_p50),
                &column(|s| s.delay_p95),
                &column(|s| s.delay_max),
                &segments.iter().map(|s| s.mae_ratio).collect::<Vec<_>>(),
                &segments.iter().map(|s| s.bias_ratio).collect::<Vec<_>>(),
                &segments.iter().map(|s| s.unfair).collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(self.query_error("insert into segment_performance"))?;
        Ok(true)
    }
}

/// Performance statistics as column values (NULL where not measured).
struct StatsValues {
    predictions: i64,
    labelled: i64,
    mae: Option<f64>,
    rmse: Option<f64>,
    mape: Option<f64>,
    mape_rows: Option<i64>,
    r2: Option<f64>,
    mean_error: Option<f64>,
    delay_mean: Option<f64>,
    delay_p50: Option<f64>,
    delay_p95: Option<f64>,
    delay_max: Option<f64>,
}

impl StatsValues {
    fn new(stats: &PerformanceStats) -> Self {
        let m = stats.metrics.as_ref();
        let d = stats.label_delay.as_ref();
        Self {
            predictions: saturating_i64(stats.predictions),
            labelled: saturating_i64(stats.labelled_rows),
            mae: m.map(|m| m.mae),
            rmse: m.map(|m| m.rmse),
            mape: m.and_then(|m| m.mape),
            mape_rows: m.map(|m| saturating_i64(m.mape_rows)),
            r2: m.and_then(|m| m.r2),
            mean_error: m.map(|m| m.mean_error),
            delay_mean: d.map(|d| d.mean_seconds),
            delay_p50: d.map(|d| d.p50_seconds),
            delay_p95: d.map(|d| d.p95_seconds),
            delay_max: d.map(|d| d.max_seconds),
        }
    }
}

/// A row's fields converted to the column types (the counts were range-checked by `validate`).
struct RowValues<'a> {
    monitor: &'a str,
    kind: &'static str,
    size: i64,
    step: i64,
    start: chrono::NaiveDateTime,
    revision: i64,
    row_count: i64,
    number_of_columns: i64,
    number_of_missing_values: i64,
    prediction_score: Option<f64>,
    prediction_stattest: Option<&'a str>,
    prediction_threshold: Option<f64>,
    prediction_detected: Option<bool>,
    number_of_drifted_columns: i64,
}

impl<'a> RowValues<'a> {
    fn new(row: &'a MetricRow) -> Self {
        let prediction = row.prediction_drift.as_ref();
        Self {
            monitor: &row.window.monitor,
            kind: row.window.kind.as_str(),
            size: row.window.size_seconds,
            step: row.window.step_seconds,
            start: row.window.start,
            revision: i64::from(row.revision),
            row_count: saturating_i64(row.row_count),
            number_of_columns: i64::from(row.number_of_columns),
            number_of_missing_values: saturating_i64(row.number_of_missing_values),
            prediction_score: prediction.and_then(|p| p.score),
            prediction_stattest: prediction.map(|p| p.stattest.as_str()),
            prediction_threshold: prediction.map(|p| p.threshold),
            prediction_detected: prediction.map(|p| p.drift_detected),
            number_of_drifted_columns: i64::from(row.number_of_drifted_columns),
        }
    }

    fn key(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 5] {
        [
            &self.monitor,
            &self.kind,
            &self.size,
            &self.step,
            &self.start,
        ]
    }
}

struct LateValues {
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    times: Vec<chrono::NaiveDateTime>,
}

impl LateValues {
    fn new(late: &LateEvents) -> Self {
        Self {
            partitions: late.events.iter().map(|e| e.partition).collect(),
            offsets: late.events.iter().map(|e| e.offset).collect(),
            times: late.events.iter().map(|e| e.event_time).collect(),
        }
    }
}

struct ColumnArrays<'a> {
    names: Vec<&'a str>,
    types: Vec<&'a str>,
    stattests: Vec<&'a str>,
    thresholds: Vec<f64>,
    scores: Vec<Option<f64>>,
    detected: Vec<bool>,
    reference_rows: Vec<i64>,
    current_rows: Vec<i64>,
    errors: Vec<Option<&'a str>>,
}

impl<'a> ColumnArrays<'a> {
    fn new(columns: &'a [ColumnDrift]) -> Self {
        Self {
            names: columns.iter().map(|c| c.column.as_str()).collect(),
            types: columns.iter().map(|c| c.column_type.as_str()).collect(),
            stattests: columns.iter().map(|c| c.stattest.as_str()).collect(),
            thresholds: columns.iter().map(|c| c.threshold).collect(),
            scores: columns.iter().map(|c| c.score).collect(),
            detected: columns.iter().map(|c| c.drift_detected).collect(),
            reference_rows: columns
                .iter()
                .map(|c| saturating_i64(c.reference_rows))
                .collect(),
            current_rows: columns
                .iter()
                .map(|c| saturating_i64(c.current_rows))
                .collect(),
            errors: columns.iter().map(|c| c.error.as_deref()).collect(),
        }
    }
}

struct OutlierArrays<'a> {
    names: Vec<&'a str>,
    lower_quantiles: Vec<f64>,
    upper_quantiles: Vec<f64>,
    lower_bounds: Vec<f64>,
    upper_bounds: Vec<f64>,
    shares_outside_quantiles: Vec<Option<f64>>,
    iqr_lower_fences: Vec<f64>,
    iqr_upper_fences: Vec<f64>,
    shares_outside_iqr: Vec<Option<f64>>,
    values: Vec<i64>,
}

impl<'a> OutlierArrays<'a> {
    fn new(outliers: &'a [ColumnOutliers]) -> Self {
        Self {
            names: outliers.iter().map(|o| o.column.as_str()).collect(),
            lower_quantiles: outliers.iter().map(|o| o.lower_quantile).collect(),
            upper_quantiles: outliers.iter().map(|o| o.upper_quantile).collect(),
            lower_bounds: outliers.iter().map(|o| o.lower_bound).collect(),
            upper_bounds: outliers.iter().map(|o| o.upper_bound).collect(),
            shares_outside_quantiles: outliers.iter().map(|o| o.share_outside_quantiles).collect(),
            iqr_lower_fences: outliers.iter().map(|o| o.iqr_lower_fence).collect(),
            iqr_upper_fences: outliers.iter().map(|o| o.iqr_upper_fence).collect(),
            shares_outside_iqr: outliers.iter().map(|o| o.share_outside_iqr).collect(),
            values: outliers.iter().map(|o| saturating_i64(o.values)).collect(),
        }
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Checks what the JSON schema cannot: a record failing here is dead-lettered, not written.
pub fn validate(record: &MetricsRecord) -> std::result::Result<(), String> {
    match record {
        MetricsRecord::Window(row) => validate_window(row),
        MetricsRecord::LateEvents(late) => validate_late(late),
        MetricsRecord::Performance(report) => validate_performance(report),
        MetricsRecord::Alert(alert) => {
            if alert.window.monitor.is_empty() || alert.rule.is_empty() {
                Err("alert without a monitor or rule name".into())
            } else {
                Ok(())
            }
        }
    }
}

fn validate_performance(report: &PerformanceReport) -> std::result::Result<(), String> {
    let window = &report.window;
    if window.monitor.is_empty() || window.end <= window.start {
        return Err(format!(
            "performance window {} has no monitor or ends before it starts",
            window.message_key()
        ));
    }
    let mut seen = HashSet::new();
    if let Some(s) = report
        .segments
        .iter()
        .find(|s| !seen.insert((s.dimension.as_str(), s.value.as_str())))
    {
        return Err(format!(
            "segment {}={} is given twice",
            s.dimension, s.value
        ));
    }
    Ok(())
}

fn validate_late(late: &LateEvents) -> std::result::Result<(), String> {
    let shape = &late.shape;
    if shape.monitor.is_empty() {
        return Err("shape.monitor is empty".into());
    }
    if shape.size_seconds <= 0 || shape.step_seconds <= 0 {
        return Err(format!(
            "window size {} s and step {} s must be positive",
            shape.size_seconds, shape.step_seconds
        ));
    }
    if let Some(event) = late.events.iter().find(|e| e.partition < 0 || e.offset < 0) {
        return Err(format!(
            "late event at partition {} offset {} has no place in a topic",
            event.partition, event.offset
        ));
    }
    Ok(())
}

fn validate_window(row: &MetricRow) -> std::result::Result<(), String> {
    let window = &row.window;
    if window.monitor.is_empty() {
        return Err("window.monitor is empty".into());
    }
    if window.size_seconds <= 0 || window.step_seconds <= 0 {
        return Err(format!(
            "window size {} s and step {} s must be positive",
            window.size_seconds, window.step_seconds
        ));
    }
    if window.end <= window.start {
        return Err(format!(
            "window end {} is not after its start {}",
            window.end, window.start
        ));
    }
    let counts = [
        ("row_count", row.row_count),
        ("number_of_missing_values", row.number_of_missing_values),
    ];
    let column_counts = row.columns.iter().flat_map(|c| {
        [
            ("reference_rows", c.reference_rows),
            ("current_rows", c.current_rows),
        ]
    });
    if let Some((name, value)) = counts
        .into_iter()
        .chain(column_counts)
        .find(|(_, v)| i64::try_from(*v).is_err())
    {
        return Err(format!("{name} = {value} does not fit a bigint"));
    }
    let mut seen = HashSet::new();
    if let Some(column) = row.columns.iter().find(|c| !seen.insert(c.column.as_str())) {
        return Err(format!("column {:?} has two drift results", column.column));
    }
    let mut seen = HashSet::new();
    if let Some(q) = row
        .quantiles
        .iter()
        .find(|q| !seen.insert((q.column.as_str(), q.quantile.to_bits())))
    {
        return Err(format!(
            "quantile {} of column {:?} is given twice",
            q.quantile, q.column
        ));
    }
    if let Some(q) = row
        .quantiles
        .iter()
        .find(|q| !(0.0..=1.0).contains(&q.quantile))
    {
        return Err(format!(
            "quantile {} of column {:?} is outside [0, 1]",
            q.quantile, q.column
        ));
    }
    let mut seen = HashSet::new();
    if let Some(o) = row
        .outliers
        .iter()
        .find(|o| !seen.insert(o.column.as_str()))
    {
        return Err(format!("column {:?} has two outlier results", o.column));
    }
    if let Some(o) = row.outliers.iter().find(|o| {
        !(0.0 <= o.lower_quantile && o.lower_quantile < o.upper_quantile && o.upper_quantile <= 1.0)
            || i64::try_from(o.values).is_err()
    }) {
        return Err(format!(
            "outliers of column {:?}: quantiles {}..{} or {} values out of range",
            o.column, o.lower_quantile, o.upper_quantile, o.values
        ));
    }
    Ok(())
}

/// `postgres://user@host:port/dbname` for messages: the password is never part of it.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("[{}]:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let dbname = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgres://{user}{hosts}/{dbname}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use streamwatch_common::events::{parse_timestamp, QuantileValue, WindowKey, WindowKind};

    #[test]
    fn describe_never_shows_the_password() {
        let config: tokio_postgres::Config =
            "postgres://postgres:s3cret@127.0.0.1:5432/streamwatch"
                .parse()
                .unwrap();
        assert_eq!(
            describe(&config),
            "postgres://postgres@127.0.0.1:5432/streamwatch"
        );
        let config: tokio_postgres::Config =
            "host=db user=sw password=s3cret dbname=x".parse().unwrap();
        assert_eq!(describe(&config), "postgres://sw@db:5432/x");
        let config: tokio_postgres::Config = "postgres://a:pw@h1:1,h2:2/d".parse().unwrap();
        assert_eq!(describe(&config), "postgres://a@h1:1,h2:2/d");
    }

    #[test]
    fn tls_required_is_refused_with_a_clear_message() {
        let config: tokio_postgres::Config = "postgres://u:pw@db/streamwatch?sslmode=require"
            .parse()
            .unwrap();
        let error = MetricStore::from_config(config, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("sslmode=require"), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }

    fn row() -> MetricRow {
        let start = parse_timestamp("2022-02-01T00:00:00").unwrap();
        MetricRow {
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
            number_of_missing_values: 0,
            share_of_missing_values: Some(0.0),
            prediction_drift: None,
            number_of_drifted_columns: 0,
            share_of_drifted_columns: 0.0,
            dataset_drift: false,
            columns: vec![],
            quantiles: vec![QuantileValue {
                column: "fare_amount".into(),
                quantile: 0.5,
                value: Some(12.5),
            }],
            outliers: vec![ColumnOutliers {
                column: "fare_amount".into(),
                lower_quantile: 0.01,
                upper_quantile: 0.99,
                lower_bound: 3.0,
                upper_bound: 70.0,
                share_outside_quantiles: Some(0.5),
                iqr_lower_fence: -4.0,
                iqr_upper_fence: 30.0,
                share_outside_iqr: None,
                values: 2,
            }],
            contributions: vec![],
            emitted_at: Utc::now(),
        }
    }

    #[test]
    fn validation_rejects_what_the_schema_cannot_hold() {
        assert_eq!(validate_window(&row()), Ok(()));

        let mut bad = row();
        bad.window.end = bad.window.start;
        assert!(validate_window(&bad).unwrap_err().contains("not after"));

        let mut bad = row();
        bad.window.step_seconds = 0;
        assert!(validate_window(&bad).unwrap_err().contains("positive"));

        let mut bad = row();
        bad.row_count = u64::MAX;
        assert!(validate_window(&bad).unwrap_err().contains("row_count"));

        let mut bad = row();
        bad.quantiles.push(bad.quantiles[0].clone());
        assert!(validate_window(&bad).unwrap_err().contains("twice"));

        let mut bad = row();
        bad.quantiles[0].quantile = 1.5;
        assert!(validate_window(&bad).unwrap_err().contains("outside"));

        let mut bad = row();
        bad.window.monitor.clear();
        assert!(validate_window(&bad).unwrap_err().contains("monitor"));

        let mut bad = row();
        bad.outliers.push(bad.outliers[0].clone());
        assert!(validate_window(&bad).unwrap_err().contains("two outlier"));

        let mut bad = row();
        bad.outliers[0].upper_quantile = bad.outliers[0].lower_quantile;
        assert!(validate_window(&bad).unwrap_err().contains("out of range"));
    }
}
