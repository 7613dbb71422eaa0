//! The database side: the connection pool and the upsert of metric rows.

use std::collections::HashSet;
use std::hash::Hash;
use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use streamwatch_common::events::{
    AlertEvent, AlertState, ColumnDrift, FeatureContribution, HealthReport, LateEvents, MetricRow,
    MetricsRecord, PerformanceReport, PerformanceStats, SegmentDrift, WindowKey,
};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use crate::config::DatabaseArgs;
use crate::{Error, Result};

/// Upserts a window's summary; a replayed older (generation, revision) leaves a newer one in
/// place (the `WHERE` makes the conflicting row not updated, and then nothing is returned).
const UPSERT_WINDOW: &str = "\
INSERT INTO window_metrics (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start, window_end,
    revision, row_count, number_of_columns, number_of_missing_values, share_of_missing_values,
    prediction_drift, prediction_stattest, prediction_threshold, prediction_drift_detected,
    number_of_drifted_columns, share_of_drifted_columns, dataset_drift, emitted_at,
    last_event_published_at, generation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
        $21)
ON CONFLICT (monitor, window_kind, window_size_seconds, window_step_seconds, window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end,
    generation = EXCLUDED.generation,
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
    last_event_published_at = EXCLUDED.last_event_published_at,
    -- The end-to-end latency (view window_latency) is of the revision stored last.
    stored_at = now()
WHERE (window_metrics.generation, window_metrics.revision) <= (EXCLUDED.generation, EXCLUDED.revision)
RETURNING revision";

/// Upserts a window's performance; an older revision leaves a newer one in place.
const UPSERT_PERFORMANCE: &str = "\
INSERT INTO window_performance (
    monitor, window_kind, window_size_seconds, window_step_seconds, window_start, window_end,
    revision, predictions, labelled_rows, unmatched_completions, mae, rmse, mape, mape_rows, r2,
    mean_error, label_delay_mean_seconds, label_delay_p50_seconds, label_delay_p95_seconds,
    label_delay_max_seconds, fairness_low, fairness_high, worst_segment, worst_mae_ratio, emitted_at,
    error_lower_bound, error_upper_bound, error_share_outside_quantiles, error_share_outside_iqr,
    generation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
        $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)
ON CONFLICT (monitor, window_kind, window_size_seconds, window_step_seconds, window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end,
    generation = EXCLUDED.generation,
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
WHERE (window_performance.generation, window_performance.revision)
    <= (EXCLUDED.generation, EXCLUDED.revision)
RETURNING revision";

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

/// Removes an alert transition a later revision of its windows retracted.
const DELETE_ALERT: &str = "\
DELETE FROM alerts
WHERE (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, rule)
    = ($1, $2, $3, $4, $5, $6)";

/// Late events are stored once per event and window shape; a repeated report changes nothing.
const INSERT_LATE_EVENTS: &str = "\
INSERT INTO late_events (
    monitor, window_kind, window_size_seconds, window_step_seconds, source_topic,
    source_partition, source_offset, source_index, event_time, watermark, dropped_at)
SELECT $1, $2, $3, $4, $5, e.partition, e.offset_, e.index_, e.event_time, $6, $7
FROM UNNEST($8::int4[], $9::int8[], $10::int4[], $11::timestamp[])
    AS e(partition, offset_, index_, event_time)
ON CONFLICT DO NOTHING";

/// Health reports are stored once per (monitor, instance, at); a re-delivered one changes nothing.
const INSERT_HEALTH: &str = "\
INSERT INTO service_health (
    monitor, instance, at, interval_seconds, events_in, events_per_second, events_failed,
    consumer_lag, watermark, open_windows, panes, windows_emitted, emit_latency_seconds,
    resident_memory_bytes, uptime_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (monitor, instance, at) DO NOTHING";

/// A table of per-window rows (columns, quantiles, segments...), replaced whenever its window's
/// row is stored: the window's rows are deleted, then all the new ones inserted by one statement
/// whose arrays (`$6`...) are unnested into rows. `$1`..`$5` are the window key in both.
struct ChildTable {
    delete: &'static str,
    insert: &'static str,
    /// What failed, for messages.
    deleting: &'static str,
    inserting: &'static str,
}

/// The `ChildTable` named `$table`, with `$columns` after the window key filled from `$arrays`.
macro_rules! child_table {
    ($table:literal, $columns:literal, $arrays:literal) => {
        ChildTable {
            delete: concat!(
                "DELETE FROM ",
                $table,
                " WHERE monitor = $1 AND window_kind = $2 AND window_size_seconds = $3 \
                 AND window_step_seconds = $4 AND window_start = $5"
            ),
            insert: concat!(
                "INSERT INTO ",
                $table,
                " (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, ",
                $columns,
                ") SELECT $1, $2, $3, $4, $5, r.* FROM UNNEST(",
                $arrays,
                ") AS r"
            ),
            deleting: concat!("delete from ", $table),
            inserting: concat!("insert into ", $table),
        }
    };
}

const COLUMN_DRIFT: ChildTable = child_table!(
    "column_drift",
    "column_name, column_type, stattest, threshold, score, drift_detected, reference_rows, \
     current_rows, error",
    "$6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::bool[], $12::int8[], \
     $13::int8[], $14::text[]"
);

const COLUMN_QUANTILES: ChildTable = child_table!(
    "column_quantiles",
    "column_name, quantile, value",
    "$6::text[], $7::float8[], $8::float8[]"
);

const COLUMN_OUTLIERS: ChildTable = child_table!(
    "column_outliers",
    "column_name, lower_quantile, upper_quantile, lower_bound, upper_bound, \
     share_outside_quantiles, iqr_lower_fence, iqr_upper_fence, share_outside_iqr, finite_values",
    "$6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
     $12::float8[], $13::float8[], $14::float8[], $15::int8[]"
);

const FEATURE_CONTRIBUTIONS: ChildTable = child_table!(
    "feature_contributions",
    "feature, coefficient, reference_mean, mean_contribution, mean_abs_contribution, \
     reference_mean_abs_contribution, drift_score, drift_detected, rows",
    "$6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
     $12::float8[], $13::bool[], $14::int8[]"
);

/// Child of `window_performance`.
const SEGMENT_PERFORMANCE: ChildTable = child_table!(
    "segment_performance",
    "dimension, value, predictions, labelled_rows, too_small, mae, rmse, mape, mape_rows, r2, \
     mean_error, label_delay_mean_seconds, label_delay_p50_seconds, label_delay_p95_seconds, \
     label_delay_max_seconds, mae_ratio, bias_ratio, unfair",
    "$6::text[], $7::text[], $8::int8[], $9::int8[], $10::bool[], $11::float8[], $12::float8[], \
     $13::float8[], $14::int8[], $15::float8[], $16::float8[], $17::float8[], $18::float8[], \
     $19::float8[], $20::float8[], $21::float8[], $22::float8[], $23::bool[]"
);

const SEGMENT_DRIFT: ChildTable = child_table!(
    "segment_drift",
    "dimension, segment, row_count, reference_rows, too_small, number_of_missing_values, \
     share_of_missing_values, prediction_drift, prediction_stattest, prediction_threshold, \
     prediction_drift_detected, number_of_drifted_columns, share_of_drifted_columns, \
     dataset_drift",
    "$6::text[], $7::text[], $8::int8[], $9::int8[], $10::bool[], $11::int8[], $12::float8[], \
     $13::float8[], $14::text[], $15::float8[], $16::bool[], $17::int8[], $18::float8[], \
     $19::bool[]"
);

/// Child of `segment_drift`: deleting a window's segments deletes their columns.
const SEGMENT_COLUMN_DRIFT: ChildTable = child_table!(
    "segment_column_drift",
    "dimension, segment, column_name, column_type, stattest, threshold, score, drift_detected, \
     reference_rows, current_rows, error",
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::float8[], \
     $13::bool[], $14::int8[], $15::int8[], $16::text[]"
);

/// A statement parameter.
type Param<'a> = &'a (dyn ToSql + Sync);

/// One column of a child table's new rows, as an array parameter.
type Array<'a> = Box<dyn ToSql + Send + Sync + 'a>;

/// The array of `value` over `rows`.
fn array<'a, T, U>(rows: &'a [T], value: impl Fn(&'a T) -> U) -> Array<'a>
where
    U: ToSql + Send + Sync + 'a,
{
    Box::new(rows.iter().map(value).collect::<Vec<U>>())
}

/// A window key as the leading parameters (`$1`..`$5`) of the statements about its window.
struct Key<'a> {
    window: &'a WindowKey,
    kind: &'static str,
}

impl<'a> Key<'a> {
    fn new(window: &'a WindowKey) -> Self {
        Self {
            window,
            kind: window.kind.as_str(),
        }
    }

    /// The key's parameters followed by `rest`.
    fn params<'p>(&'p self, rest: &[Param<'p>]) -> Vec<Param<'p>> {
        let w = self.window;
        let mut params: Vec<Param<'p>> = vec![
            &w.monitor,
            &self.kind,
            &w.size_seconds,
            &w.step_seconds,
            &w.start,
        ];
        params.extend_from_slice(rest);
        params
    }
}

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

/// The TLS connector for `sslmode` `prefer` and `require` (none for `disable`). Without a CA
/// file the server's certificate is not checked, as libpq's `require`; with one, its chain and
/// host name are.
fn tls_connector(
    target: &str,
    mode: SslMode,
    ca_file: Option<&Path>,
) -> Result<Option<MakeTlsConnector>> {
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let problem = |what: &str, e: &dyn std::fmt::Display| Error::DatabaseSettings {
        target: target.to_owned(),
        problem: format!("{what}: {e}"),
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| problem("TLS setup failed", &e))?;
    match ca_file {
        Some(path) => builder
            .set_ca_file(path)
            .map_err(|e| problem(&format!("CA file {} unusable", path.display()), &e))?,
        None => builder.set_verify(SslVerifyMode::NONE),
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if ca_file.is_none() {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(Some(connector))
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
        Self::build(
            config,
            usize::from(args.pool_size),
            args.database_ca_file.as_deref(),
        )
    }

    /// Builds the pool for an already parsed configuration (no CA file).
    pub fn from_config(config: tokio_postgres::Config, pool_size: usize) -> Result<Self> {
        Self::build(config, pool_size, None)
    }

    fn build(
        mut config: tokio_postgres::Config,
        pool_size: usize,
        ca_file: Option<&Path>,
    ) -> Result<Self> {
        let target = describe(&config);
        let tls = tls_connector(&target, config.get_ssl_mode(), ca_file)?;
        if config.get_application_name().is_none() {
            config.application_name("streamwatch-sink");
        }
        let connect = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5));
        let settings = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, settings),
            None => Manager::from_config(config, NoTls, settings),
        };
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
    /// when that applied, replace the window's column, quantile, outlier, contribution and
    /// segment rows (likewise performance reports and their segments). Late events and health
    /// reports are inserted once. Nothing is written on error.
    pub async fn write(&self, records: &[MetricsRecord]) -> Result<WriteSummary> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.query_error("BEGIN"))?;
        let mut summary = WriteSummary::default();
        for record in records {
            let applied = match record {
                MetricsRecord::Window(row) => self.write_window(&tx, row).await?,
                MetricsRecord::Performance(report) => self.write_performance(&tx, report).await?,
                MetricsRecord::Alert(alert) => self.write_alert(&tx, alert).await?,
                MetricsRecord::LateEvents(late) => self.write_late(&tx, late).await?,
                MetricsRecord::Health(health) => self.write_health(&tx, health).await?,
            };
            if applied {
                summary.applied += 1;
            } else {
                summary.stale += 1;
            }
        }
        tx.commit().await.map_err(self.query_error("COMMIT"))?;
        Ok(summary)
    }

    async fn execute(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        what: &'static str,
        params: &[Param<'_>],
    ) -> Result<u64> {
        let statement = tx
            .prepare_cached(sql)
            .await
            .map_err(self.query_error("prepare"))?;
        tx.execute(&statement, params)
            .await
            .map_err(self.query_error(what))
    }

    /// Runs an upsert guarded by the revision: true when it applied (it returned the row).
    async fn upsert(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        what: &'static str,
        params: &[Param<'_>],
    ) -> Result<bool> {
        let statement = tx
            .prepare_cached(sql)
            .await
            .map_err(self.query_error("prepare"))?;
        let row = tx
            .query_opt(&statement, params)
            .await
            .map_err(self.query_error(what))?;
        Ok(row.is_some())
    }

    /// Replaces the window's rows in `table` by `rows` new ones (`arrays`: one per column).
    async fn replace_rows(
        &self,
        tx: &Transaction<'_>,
        table: &ChildTable,
        key: &Key<'_>,
        rows: usize,
        arrays: Vec<Array<'_>>,
    ) -> Result<()> {
        self.execute(tx, table.delete, table.deleting, &key.params(&[]))
            .await?;
        self.insert_rows(tx, table, key, rows, arrays).await
    }

    /// Inserts `rows` rows of the window into `table` (`arrays`: one per column), if any.
    async fn insert_rows(
        &self,
        tx: &Transaction<'_>,
        table: &ChildTable,
        key: &Key<'_>,
        rows: usize,
        arrays: Vec<Array<'_>>,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let arrays: Vec<Param<'_>> = arrays.iter().map(|a| &**a as Param<'_>).collect();
        self.execute(tx, table.insert, table.inserting, &key.params(&arrays))
            .await?;
        Ok(())
    }

    /// Upserts a window row and, when it applied, replaces its child rows.
    async fn write_window(&self, tx: &Transaction<'_>, row: &MetricRow) -> Result<bool> {
        let key = Key::new(&row.window);
        let prediction = row.prediction_drift.as_ref();
        let applied = self
            .upsert(
                tx,
                UPSERT_WINDOW,
                "upsert of window_metrics",
                &key.params(&[
                    &row.window.end,
                    &i64::from(row.revision),
                    &saturating_i64(row.row_count),
                    &i64::from(row.number_of_columns),
                    &saturating_i64(row.number_of_missing_values),
                    &row.share_of_missing_values,
                    &prediction.and_then(|p| p.score),
                    &prediction.map(|p| p.stattest.as_str()),
                    &prediction.map(|p| p.threshold),
                    &prediction.map(|p| p.drift_detected),
                    &i64::from(row.number_of_drifted_columns),
                    &row.share_of_drifted_columns,
                    &row.dataset_drift,
                    &row.emitted_at,
                    &row.last_event_published_at,
                    &row.generation,
                ]),
            )
            .await?;
        if !applied {
            return Ok(false);
        }
        let (columns, quantiles, outliers) = (&row.columns, &row.quantiles, &row.outliers);
        self.replace_rows(
            tx,
            &COLUMN_DRIFT,
            &key,
            columns.len(),
            drift_arrays(columns, |c| c),
        )
        .await?;
        self.replace_rows(
            tx,
            &COLUMN_QUANTILES,
            &key,
            quantiles.len(),
            vec![
                array(quantiles, |q| q.column.as_str()),
                array(quantiles, |q| q.quantile),
                array(quantiles, |q| q.value),
            ],
        )
        .await?;
        self.replace_rows(
            tx,
            &COLUMN_OUTLIERS,
            &key,
            outliers.len(),
            vec![
                array(outliers, |o| o.column.as_str()),
                array(outliers, |o| o.lower_quantile),
                array(outliers, |o| o.upper_quantile),
                array(outliers, |o| o.lower_bound),
                array(outliers, |o| o.upper_bound),
                array(outliers, |o| o.share_outside_quantiles),
                array(outliers, |o| o.iqr_lower_fence),
                array(outliers, |o| o.iqr_upper_fence),
                array(outliers, |o| o.share_outside_iqr),
                array(outliers, |o| saturating_i64(o.values)),
            ],
        )
        .await?;
        self.write_contributions(tx, &key, &row.contributions)
            .await?;
        self.write_segment_drift(tx, &key, &row.segments).await?;
        Ok(true)
    }

    /// Replaces a window's feature contributions.
    async fn write_contributions(
        &self,
        tx: &Transaction<'_>,
        key: &Key<'_>,
        contributions: &[FeatureContribution],
    ) -> Result<()> {
        let c = contributions;
        self.replace_rows(
            tx,
            &FEATURE_CONTRIBUTIONS,
            key,
            c.len(),
            vec![
                array(c, |c| c.feature.as_str()),
                array(c, |c| c.coefficient),
                array(c, |c| c.reference_mean),
                array(c, |c| c.mean_contribution),
                array(c, |c| c.mean_abs_contribution),
                array(c, |c| c.reference_mean_abs_contribution),
                array(c, |c| c.drift_score),
                array(c, |c| c.drift_detected),
                array(c, |c| saturating_i64(c.rows)),
            ],
        )
        .await
    }

    /// Replaces a window's segments and their columns (deleting a segment deletes its columns).
    async fn write_segment_drift(
        &self,
        tx: &Transaction<'_>,
        key: &Key<'_>,
        segments: &[SegmentDrift],
    ) -> Result<()> {
        fn prediction(s: &SegmentDrift) -> Option<&ColumnDrift> {
            s.prediction_drift.as_ref()
        }
        let s = segments;
        self.replace_rows(
            tx,
            &SEGMENT_DRIFT,
            key,
            s.len(),
            vec![
                array(s, |s| s.dimension.as_str()),
                array(s, |s| s.segment.as_str()),
                array(s, |s| saturating_i64(s.row_count)),
                array(s, |s| saturating_i64(s.reference_rows)),
                array(s, |s| s.too_small),
                array(s, |s| saturating_i64(s.number_of_missing_values)),
                array(s, |s| s.share_of_missing_values),
                array(s, |s| prediction(s).and_then(|p| p.score)),
                array(s, |s| prediction(s).map(|p| p.stattest.as_str())),
                array(s, |s| prediction(s).map(|p| p.threshold)),
                array(s, |s| prediction(s).map(|p| p.drift_detected)),
                array(s, |s| s.number_of_drifted_columns.map(i64::from)),
                array(s, |s| s.share_of_drifted_columns),
                array(s, |s| s.dataset_drift),
            ],
        )
        .await?;
        let columns: Vec<(&SegmentDrift, &ColumnDrift)> = s
            .iter()
            .flat_map(|s| s.columns.iter().map(move |c| (s, c)))
            .collect();
        let mut arrays = vec![
            array(&columns, |(s, _)| s.dimension.as_str()),
            array(&columns, |(s, _)| s.segment.as_str()),
        ];
        arrays.extend(drift_arrays(&columns, |(_, c)| c));
        self.insert_rows(tx, &SEGMENT_COLUMN_DRIFT, key, columns.len(), arrays)
            .await
    }

    /// Upserts one performance report and, when it applied, replaces its segment rows.
    async fn write_performance(
        &self,
        tx: &Transaction<'_>,
        report: &PerformanceReport,
    ) -> Result<bool> {
        let key = Key::new(&report.window);
        let overall = StatsValues::new(&report.overall);
        let errors = report.error_outliers.as_ref();
        let applied = self
            .upsert(
                tx,
                UPSERT_PERFORMANCE,
                "upsert of window_performance",
                &key.params(&[
                    &report.window.end,
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
                    &report.generation,
                ]),
            )
            .await?;
        if !applied {
            return Ok(false);
        }
        let segments = &report.segments;
        let stats: Vec<StatsValues> = segments
            .iter()
            .map(|s| StatsValues::new(&s.stats))
            .collect();
        self.replace_rows(
            tx,
            &SEGMENT_PERFORMANCE,
            &key,
            segments.len(),
            vec![
                array(segments, |s| s.dimension.as_str()),
                array(segments, |s| s.value.as_str()),
                array(&stats, |s| s.predictions),
                array(&stats, |s| s.labelled),
                array(segments, |s| s.too_small),
                array(&stats, |s| s.mae),
                array(&stats, |s| s.rmse),
                array(&stats, |s| s.mape),
                array(&stats, |s| s.mape_rows),
                array(&stats, |s| s.r2),
                array(&stats, |s| s.mean_error),
                array(&stats, |s| s.delay_mean),
                array(&stats, |s| s.delay_p50),
                array(&stats, |s| s.delay_p95),
                array(&stats, |s| s.delay_max),
                array(segments, |s| s.mae_ratio),
                array(segments, |s| s.bias_ratio),
                array(segments, |s| s.unfair),
            ],
        )
        .await?;
        Ok(true)
    }

    /// Stores an alert transition, or removes a retracted one (always applied: a repeated
    /// one replaces itself).
    async fn write_alert(&self, tx: &Transaction<'_>, alert: &AlertEvent) -> Result<bool> {
        let key = Key::new(&alert.window);
        if alert.state == AlertState::Retracted {
            self.execute(
                tx,
                DELETE_ALERT,
                "delete from alerts",
                &key.params(&[&alert.rule]),
            )
            .await?;
            return Ok(true);
        }
        self.execute(
            tx,
            UPSERT_ALERT,
            "upsert of alerts",
            &key.params(&[
                &alert.window.end,
                &alert.rule,
                &alert.state.as_str(),
                &alert.metric,
                &alert.op,
                &alert.threshold,
                &i32::try_from(alert.for_windows).unwrap_or(i32::MAX),
                &alert.value,
                &alert.emitted_at,
            ]),
        )
        .await?;
        Ok(true)
    }

    /// Stores late events not stored yet (always applied).
    async fn write_late(&self, tx: &Transaction<'_>, late: &LateEvents) -> Result<bool> {
        let shape = &late.shape;
        let events = &late.events;
        self.execute(
            tx,
            INSERT_LATE_EVENTS,
            "insert into late_events",
            &[
                &shape.monitor,
                &shape.kind.as_str(),
                &shape.size_seconds,
                &shape.step_seconds,
                &late.topic,
                &late.watermark,
                &late.emitted_at,
                &events.iter().map(|e| e.partition).collect::<Vec<_>>(),
                &events.iter().map(|e| e.offset).collect::<Vec<_>>(),
                &events.iter().map(|e| e.index as i32).collect::<Vec<_>>(),
                &events.iter().map(|e| e.event_time).collect::<Vec<_>>(),
            ],
        )
        .await?;
        Ok(true)
    }

    /// Stores a health report not stored yet (always applied: a repeated one changes nothing).
    async fn write_health(&self, tx: &Transaction<'_>, health: &HealthReport) -> Result<bool> {
        self.execute(
            tx,
            INSERT_HEALTH,
            "insert into service_health",
            &[
                &health.monitor,
                &health.instance,
                &health.at,
                &health.interval_seconds,
                &saturating_i64(health.events_in),
                &health.events_per_second,
                &saturating_i64(health.events_failed),
                &health.consumer_lag,
                &health.watermark,
                &saturating_i64(health.open_windows),
                &saturating_i64(health.panes),
                &saturating_i64(health.windows_emitted),
                &health.emit_latency_seconds,
                &health.resident_memory_bytes.map(saturating_i64),
                &health.uptime_seconds,
            ],
        )
        .await?;
        Ok(true)
    }
}

/// The arrays of a drift test's columns (`column_name` .. `error`), for rows holding one each.
fn drift_arrays<'a, T>(rows: &'a [T], drift: fn(&'a T) -> &'a ColumnDrift) -> Vec<Array<'a>> {
    vec![
        array(rows, move |r| drift(r).column.as_str()),
        array(rows, move |r| drift(r).column_type.as_str()),
        array(rows, move |r| drift(r).stattest.as_str()),
        array(rows, move |r| drift(r).threshold),
        array(rows, move |r| drift(r).score),
        array(rows, move |r| drift(r).drift_detected),
        array(rows, move |r| saturating_i64(drift(r).reference_rows)),
        array(rows, move |r| saturating_i64(drift(r).current_rows)),
        array(rows, move |r| drift(r).error.as_deref()),
    ]
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
            validate_window_key(&alert.window)?;
            if alert.rule.is_empty() {
                return Err("alert without a rule name".into());
            }
            Ok(())
        }
        MetricsRecord::Health(health) => validate_health(health),
    }
}

/// A health report the dashboard can plot: named, with finite non-negative numbers and counts
/// that fit a bigint.
fn validate_health(health: &HealthReport) -> std::result::Result<(), String> {
    if health.monitor.is_empty() {
        return Err("health report without a monitor".into());
    }
    if health.instance.is_empty() {
        return Err(format!(
            "health report of monitor {} without an instance",
            health.monitor
        ));
    }
    let numbers = [
        ("interval_seconds", Some(health.interval_seconds)),
        ("events_per_second", Some(health.events_per_second)),
        ("emit_latency_seconds", health.emit_latency_seconds),
        ("uptime_seconds", Some(health.uptime_seconds)),
    ];
    if let Some((name, value)) = numbers
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
    {
        return Err(format!(
            "health report of {}/{}: {name} = {value} is not a finite non-negative number",
            health.monitor, health.instance
        ));
    }
    if let Some(lag) = health.consumer_lag.filter(|lag| *lag < 0) {
        return Err(format!(
            "health report of {}/{}: consumer_lag = {lag} is negative",
            health.monitor, health.instance
        ));
    }
    let counts = [
        ("events_in", Some(health.events_in)),
        ("events_failed", Some(health.events_failed)),
        ("open_windows", Some(health.open_windows)),
        ("panes", Some(health.panes)),
        ("windows_emitted", Some(health.windows_emitted)),
        ("resident_memory_bytes", health.resident_memory_bytes),
    ];
    if let Some((name, value)) = counts
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .find(|(_, v)| i64::try_from(*v).is_err())
    {
        return Err(format!(
            "health report of {}/{}: {name} = {value} does not fit a bigint",
            health.monitor, health.instance
        ));
    }
    Ok(())
}

/// A window shape every table accepts: a monitor, and a positive size that is a multiple of a
/// positive step (as the monitor's window specs are).
fn validate_shape(
    monitor: &str,
    size_seconds: i64,
    step_seconds: i64,
) -> std::result::Result<(), String> {
    if monitor.is_empty() {
        return Err("the window's monitor is empty".into());
    }
    if size_seconds <= 0 || step_seconds <= 0 {
        return Err(format!(
            "window size {size_seconds} s and step {step_seconds} s must be positive"
        ));
    }
    if size_seconds % step_seconds != 0 {
        return Err(format!(
            "window size {size_seconds} s is not a multiple of its step {step_seconds} s"
        ));
    }
    Ok(())
}

/// A valid shape, and an end after the start.
fn validate_window_key(window: &WindowKey) -> std::result::Result<(), String> {
    validate_shape(&window.monitor, window.size_seconds, window.step_seconds)?;
    if window.end <= window.start {
        return Err(format!(
            "window end {} is not after its start {}",
            window.end, window.start
        ));
    }
    Ok(())
}

/// The first item whose `key` an earlier item has.
fn first_duplicate<'a, T, K: Eq + Hash>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Option<&'a T> {
    let mut seen = HashSet::new();
    items.iter().find(|item| !seen.insert(key(item)))
}

fn validate_performance(report: &PerformanceReport) -> std::result::Result<(), String> {
    validate_window_key(&report.window)?;
    if let Some(s) = first_duplicate(&report.segments, |s| (&s.dimension, &s.value)) {
        return Err(format!(
            "segment {}={} is given twice",
            s.dimension, s.value
        ));
    }
    Ok(())
}

fn validate_late(late: &LateEvents) -> std::result::Result<(), String> {
    let shape = &late.shape;
    validate_shape(&shape.monitor, shape.size_seconds, shape.step_seconds)?;
    if let Some(event) = late
        .events
        .iter()
        .find(|e| e.partition < 0 || e.offset < 0 || i32::try_from(e.index).is_err())
    {
        return Err(format!(
            "late event at partition {} offset {} index {} has no place in a topic",
            event.partition, event.offset, event.index
        ));
    }
    Ok(())
}

fn drift_counts(c: &ColumnDrift) -> [(&'static str, u64); 2] {
    [
        ("reference_rows", c.reference_rows),
        ("current_rows", c.current_rows),
    ]
}

fn validate_window(row: &MetricRow) -> std::result::Result<(), String> {
    validate_window_key(&row.window)?;
    let counts = [
        ("row_count", row.row_count),
        ("number_of_missing_values", row.number_of_missing_values),
    ];
    let segment_counts = row.segments.iter().flat_map(|s| {
        [
            ("segment row_count", s.row_count),
            ("segment reference_rows", s.reference_rows),
            (
                "segment number_of_missing_values",
                s.number_of_missing_values,
            ),
        ]
        .into_iter()
        .chain(s.columns.iter().flat_map(drift_counts))
    });
    if let Some((name, value)) = counts
        .into_iter()
        .chain(row.columns.iter().flat_map(drift_counts))
        .chain(segment_counts)
        .find(|(_, v)| i64::try_from(*v).is_err())
    {
        return Err(format!("{name} = {value} does not fit a bigint"));
    }
    if let Some(column) = first_duplicate(&row.columns, |c| &c.column) {
        return Err(format!("column {:?} has two drift results", column.column));
    }
    if let Some(q) = first_duplicate(&row.quantiles, |q| (&q.column, q.quantile.to_bits())) {
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
    if let Some(o) = first_duplicate(&row.outliers, |o| &o.column) {
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
    if let Some(s) = first_duplicate(&row.segments, |s| (&s.dimension, &s.segment)) {
        return Err(format!(
            "segment {}={} has two drift results",
            s.dimension, s.segment
        ));
    }
    for s in &row.segments {
        if let Some(column) = first_duplicate(&s.columns, |c| &c.column) {
            return Err(format!(
                "column {:?} has two drift results in segment {}={}",
                column.column, s.dimension, s.segment
            ));
        }
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
    use streamwatch_common::events::{
        parse_timestamp, AlertState, ColumnOutliers, LateEvent, QuantileValue, SegmentPerformance,
        WindowKind, WindowShape,
    };

    fn health() -> HealthReport {
        HealthReport {
            monitor: "taxi".into(),
            instance: "host-1/4242".into(),
            at: Utc::now(),
            interval_seconds: 5.0,
            events_in: 5_000,
            events_per_second: 1_000.0,
            events_failed: 1,
            consumer_lag: Some(12),
            watermark: Some(parse_timestamp("2022-02-03T10:00:00").unwrap()),
            open_windows: 26,
            panes: 48,
            windows_emitted: 2,
            emit_latency_seconds: Some(0.4),
            resident_memory_bytes: Some(64 << 20),
            uptime_seconds: 35.0,
        }
    }

    #[test]
    fn health_reports_need_names_and_sane_numbers() {
        let check = |h: HealthReport| validate(&MetricsRecord::Health(h));
        assert_eq!(check(health()), Ok(()));
        // Unknown yet is fine.
        let mut early = health();
        early.consumer_lag = None;
        early.watermark = None;
        early.emit_latency_seconds = None;
        early.resident_memory_bytes = None;
        early.interval_seconds = 0.0;
        assert_eq!(check(early), Ok(()));

        let mut bad = health();
        bad.monitor.clear();
        assert!(check(bad).unwrap_err().contains("without a monitor"));
        let mut bad = health();
        bad.instance.clear();
        assert!(check(bad).unwrap_err().contains("without an instance"));
        let mut bad = health();
        bad.consumer_lag = Some(-1);
        assert!(check(bad).unwrap_err().contains("consumer_lag = -1"));
        let mut bad = health();
        bad.resident_memory_bytes = Some(u64::MAX);
        assert!(check(bad).unwrap_err().contains("resident_memory_bytes"));
        let mut bad = health();
        bad.events_in = u64::MAX;
        assert!(check(bad).unwrap_err().contains("events_in"));
        type Field = fn(&mut HealthReport, f64);
        let fields: [(&str, Field); 4] = [
            ("interval_seconds", |h, v| h.interval_seconds = v),
            ("events_per_second", |h, v| h.events_per_second = v),
            ("emit_latency_seconds", |h, v| {
                h.emit_latency_seconds = Some(v)
            }),
            ("uptime_seconds", |h, v| h.uptime_seconds = v),
        ];
        for (name, set) in fields {
            for value in [-1.0, f64::NAN, f64::INFINITY] {
                let mut bad = health();
                set(&mut bad, value);
                let error = check(bad).unwrap_err();
                assert!(error.contains(name), "{name} = {value}: {error}");
            }
        }
    }

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
    fn an_unusable_ca_file_is_named_without_the_password() {
        let config: tokio_postgres::Config = "postgres://u:pw@db/streamwatch?sslmode=require"
            .parse()
            .unwrap();
        let missing = Path::new("/nonexistent/ca.pem");
        let error = MetricStore::build(config, 1, Some(missing))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }

    fn row() -> MetricRow {
        let start = parse_timestamp("2022-02-01T00:00:00").unwrap();
        MetricRow {
            row_count: 3,
            number_of_columns: 21,
            share_of_missing_values: Some(0.0),
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
            ..MetricRow::empty(WindowKey::tumbling("taxi", start, 86_400), Utc::now())
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

        let mut bad = row();
        bad.window.step_seconds = 7 * 3_600;
        assert!(validate_window(&bad).unwrap_err().contains("multiple"));
    }

    fn segment(segment: &str) -> SegmentDrift {
        SegmentDrift {
            dimension: "pickup_borough".into(),
            segment: segment.into(),
            row_count: 2,
            reference_rows: 1_000,
            too_small: false,
            number_of_missing_values: 0,
            share_of_missing_values: Some(0.0),
            prediction_drift: None,
            number_of_drifted_columns: Some(0),
            share_of_drifted_columns: Some(0.0),
            dataset_drift: Some(false),
            columns: vec![ColumnDrift {
                column: "fare_amount".into(),
                column_type: "num".into(),
                stattest: "wasserstein".into(),
                threshold: 0.1,
                score: Some(0.01),
                drift_detected: false,
                reference_rows: 1_000,
                current_rows: 2,
                error: None,
            }],
        }
    }

    #[test]
    fn validation_checks_the_segments() {
        let mut good = row();
        good.segments = vec![segment("Queens"), segment("Manhattan")];
        assert_eq!(validate_window(&good), Ok(()));

        let mut bad = good.clone();
        bad.segments[1].segment = "Queens".into();
        let error = validate_window(&bad).unwrap_err();
        assert!(error.contains("pickup_borough=Queens"), "{error}");

        let mut bad = good.clone();
        let column = bad.segments[0].columns[0].clone();
        bad.segments[0].columns.push(column);
        let error = validate_window(&bad).unwrap_err();
        assert!(
            error.contains("in segment pickup_borough=Queens"),
            "{error}"
        );

        let mut bad = good;
        bad.segments[1].columns[0].current_rows = u64::MAX;
        let error = validate_window(&bad).unwrap_err();
        assert!(error.contains("current_rows"), "{error}");
    }

    fn report() -> PerformanceReport {
        PerformanceReport {
            window: row().window,
            generation: 0,
            revision: 1,
            overall: PerformanceStats {
                predictions: 3,
                labelled_rows: 0,
                metrics: None,
                label_delay: None,
            },
            unmatched_completions: 0,
            segments: vec![],
            fairness_band: [0.8, 1.25],
            worst_segment: None,
            worst_mae_ratio: None,
            error_outliers: None,
            emitted_at: Utc::now(),
        }
    }

    #[test]
    fn every_record_gets_the_same_window_checks() {
        assert_eq!(validate_performance(&report()), Ok(()));

        // Performance reports used to be checked for the monitor and the end only.
        let mut bad = report();
        bad.window.size_seconds = 0;
        let error = validate_performance(&bad).unwrap_err();
        assert!(error.contains("positive"), "{error}");

        let mut bad = report();
        bad.window.step_seconds = -3_600;
        let error = validate_performance(&bad).unwrap_err();
        assert!(error.contains("positive"), "{error}");

        let mut bad = report();
        bad.window.kind = WindowKind::Sliding;
        bad.window.step_seconds = 5 * 3_600;
        let error = validate_performance(&bad).unwrap_err();
        assert!(error.contains("multiple"), "{error}");

        let mut bad = report();
        bad.window.end = bad.window.start;
        assert!(validate_performance(&bad)
            .unwrap_err()
            .contains("not after"));

        let mut bad = report();
        let segment = SegmentPerformance {
            dimension: "pickup_borough".into(),
            value: "Queens".into(),
            stats: bad.overall.clone(),
            too_small: true,
            mae_ratio: None,
            bias_ratio: None,
            unfair: false,
        };
        bad.segments = vec![segment.clone(), segment];
        assert!(validate_performance(&bad).unwrap_err().contains("twice"));

        let alert = |window: WindowKey, rule: &str| {
            MetricsRecord::Alert(AlertEvent {
                rule: rule.into(),
                metric: "prediction_drift".into(),
                op: ">".into(),
                threshold: 0.1,
                for_windows: 1,
                window,
                state: AlertState::Firing,
                value: Some(0.2),
                emitted_at: Utc::now(),
            })
        };
        assert_eq!(validate(&alert(row().window, "drift")), Ok(()));
        assert!(validate(&alert(row().window, ""))
            .unwrap_err()
            .contains("rule"));
        let mut window = row().window;
        window.size_seconds = -1;
        assert!(validate(&alert(window, "drift"))
            .unwrap_err()
            .contains("positive"));

        let late = |size_seconds: i64, step_seconds: i64| {
            MetricsRecord::LateEvents(LateEvents {
                shape: WindowShape {
                    monitor: "taxi".into(),
                    kind: WindowKind::Sliding,
                    size_seconds,
                    step_seconds,
                },
                topic: "trips.scored".into(),
                watermark: row().window.end,
                events: vec![LateEvent {
                    partition: 0,
                    offset: 7,
                    index: 0,
                    event_time: row().window.start,
                }],
                emitted_at: Utc::now(),
            })
        };
        assert_eq!(validate(&late(86_400, 3_600)), Ok(()));
        assert!(validate(&late(86_400, 0)).unwrap_err().contains("positive"));
        assert!(validate(&late(86_400, 7 * 3_600))
            .unwrap_err()
            .contains("multiple"));
    }
}
