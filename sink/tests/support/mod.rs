//! Helpers shared by the integration tests: a fresh database per test and synthetic metric rows.
#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, NaiveDateTime, Utc};
use streamwatch_common::events::{
    parse_timestamp, ColumnDrift, ColumnOutliers, FeatureContribution, HealthReport, LabelDelay,
    MetricRow, PerformanceReport, PerformanceStats, QuantileValue, RegressionMetrics, SegmentDrift,
    SegmentPerformance, WindowKey,
};
use streamwatch_sink::service::MetricStore;
use tokio_postgres::{Client, Config, NoTls};

/// `DATABASE_URL`, or None after printing why the test is skipped.
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: DATABASE_URL is not set (eval \"$(scripts/services.sh env)\")"
            );
            None
        }
    }
}

/// A unique name for this process and call.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database created for one test and dropped by `drop_database` (a failed test leaves it behind;
/// its name starts with `sw_test_`).
pub struct TestDb {
    admin: Config,
    pub name: String,
    pub config: Config,
    pub store: MetricStore,
}

impl TestDb {
    /// A fresh database name and its store; the database itself is made by `create_database`.
    pub fn unborn(url: &str) -> TestDb {
        let admin: Config = url.parse().expect("DATABASE_URL parses");
        let name = unique("sw_test");
        let mut config = admin.clone();
        config.dbname(&name);
        let store = MetricStore::from_config(config.clone(), 2).unwrap();
        TestDb {
            admin,
            name,
            config,
            store,
        }
    }

    pub async fn create(url: &str) -> TestDb {
        let db = TestDb::unborn(url);
        db.create_database().await;
        db
    }

    pub async fn create_database(&self) {
        connect(&self.admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {}", self.name))
            .await
            .expect("CREATE DATABASE (the DATABASE_URL user needs CREATEDB)");
    }

    pub async fn client(&self) -> Client {
        connect(&self.config).await
    }

    pub async fn drop_database(self) {
        drop(self.store);
        connect(&self.admin)
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("DROP DATABASE");
    }
}

pub fn ts(text: &str) -> NaiveDateTime {
    parse_timestamp(text).unwrap()
}

pub fn drift(column: &str, score: Option<f64>, detected: bool) -> ColumnDrift {
    ColumnDrift {
        column: column.into(),
        column_type: if column.ends_with("LocationID") {
            "cat"
        } else {
            "num"
        }
        .into(),
        stattest: "wasserstein".into(),
        threshold: 0.1,
        score,
        drift_detected: detected,
        reference_rows: 25_211,
        current_rows: 2_399,
        error: None,
    }
}

/// A daily tumbling window of monitor `taxi` starting at `day` (`2022-02-01`).
pub fn daily_row(day: &str, revision: u32, prediction_drift: f64) -> MetricRow {
    let start = ts(&format!("{day}T00:00:00"));
    let columns = vec![
        drift("prediction", Some(prediction_drift), prediction_drift > 0.1),
        drift("fare_amount", Some(0.2), true),
        drift("PULocationID", Some(0.05), false),
    ];
    MetricRow {
        revision,
        row_count: 2_399,
        number_of_columns: 21,
        number_of_missing_values: 4_043,
        share_of_missing_values: Some(0.08025169217332619),
        prediction_drift: Some(columns[0].clone()),
        number_of_drifted_columns: columns.iter().filter(|c| c.drift_detected).count() as u32,
        share_of_drifted_columns: columns.iter().filter(|c| c.drift_detected).count() as f64 / 3.0,
        dataset_drift: false,
        columns,
        quantiles: vec![
            QuantileValue {
                column: "fare_amount".into(),
                quantile: 0.5,
                value: Some(12.5 + f64::from(revision)),
            },
            QuantileValue {
                column: "fare_amount".into(),
                quantile: 0.9,
                value: Some(30.0),
            },
        ],
        outliers: vec![
            outliers("prediction", Some(0.0125), 2_399),
            outliers("fare_amount", Some(0.03), 2_399),
        ],
        ..MetricRow::empty(WindowKey::tumbling("taxi", start, 86_400), Utc::now())
    }
}

/// A column's outliers against a 1st..99th percentile range; `share` outside both ranges.
pub fn outliers(column: &str, share: Option<f64>, values: u64) -> ColumnOutliers {
    ColumnOutliers {
        column: column.into(),
        lower_quantile: 0.01,
        upper_quantile: 0.99,
        lower_bound: 2.5,
        upper_bound: 70.0,
        share_outside_quantiles: share,
        iqr_lower_fence: -8.25,
        iqr_upper_fence: 35.75,
        share_outside_iqr: share.map(|s| s * 2.0),
        values,
    }
}

/// Segment `segment` of `pickup_borough` tested on `columns` (the prediction among them, if any).
pub fn tested_segment(segment: &str, columns: Vec<ColumnDrift>) -> SegmentDrift {
    let drifted = columns.iter().filter(|c| c.drift_detected).count();
    SegmentDrift {
        dimension: "pickup_borough".into(),
        segment: segment.into(),
        row_count: 1_210,
        reference_rows: 12_007,
        too_small: false,
        number_of_missing_values: 1_815,
        share_of_missing_values: Some(0.075),
        prediction_drift: columns.iter().find(|c| c.column == "prediction").cloned(),
        number_of_drifted_columns: Some(drifted as u32),
        share_of_drifted_columns: Some(drifted as f64 / columns.len() as f64),
        dataset_drift: Some(false),
        columns,
    }
}

/// Segment `segment` of `pickup_borough` with too few rows to test: counts only.
pub fn small_segment(segment: &str) -> SegmentDrift {
    SegmentDrift {
        dimension: "pickup_borough".into(),
        segment: segment.into(),
        row_count: 3,
        reference_rows: 41,
        too_small: true,
        number_of_missing_values: 2,
        share_of_missing_values: Some(2.0 / 63.0),
        prediction_drift: None,
        number_of_drifted_columns: None,
        share_of_drifted_columns: None,
        dataset_drift: None,
        columns: vec![],
    }
}

/// A linear model feature's contributions in a window of 2,399 rows.
pub fn contribution(feature: &str, mean_abs: f64) -> FeatureContribution {
    FeatureContribution {
        feature: feature.into(),
        coefficient: 0.75,
        reference_mean: 2.9,
        mean_contribution: Some(mean_abs / 2.0),
        mean_abs_contribution: Some(mean_abs),
        reference_mean_abs_contribution: 1.1,
        drift_score: Some(0.05),
        drift_detected: false,
        rows: 2_399,
    }
}

/// Labelled performance of `predictions` rows with MAE `mae`.
pub fn performance_stats(predictions: u64, mae: f64) -> PerformanceStats {
    PerformanceStats {
        predictions,
        labelled_rows: predictions - 10,
        metrics: Some(RegressionMetrics {
            mae,
            rmse: mae * 1.45,
            mape: Some(0.31),
            mape_rows: predictions - 10,
            r2: Some(0.42),
            mean_error: 0.4,
        }),
        label_delay: Some(LabelDelay {
            mean_seconds: 1_100.0,
            p50_seconds: 900.0,
            p95_seconds: 2_700.0,
            max_seconds: 9_000.0,
        }),
    }
}

/// Performance of the daily window of `daily_row(day, ..)` with a segment of `pickup_borough`
/// per `(segment, mae_ratio)` (a ratio of None: too small to measure).
pub fn daily_performance(day: &str, segments: &[(&str, Option<f64>)]) -> PerformanceReport {
    let mae = 6.2;
    let segments: Vec<SegmentPerformance> = segments
        .iter()
        .map(|(value, ratio)| SegmentPerformance {
            dimension: "pickup_borough".into(),
            value: (*value).into(),
            stats: match ratio {
                Some(ratio) => performance_stats(800, mae * ratio),
                None => PerformanceStats {
                    predictions: 3,
                    labelled_rows: 3,
                    metrics: None,
                    label_delay: None,
                },
            },
            too_small: ratio.is_none(),
            mae_ratio: *ratio,
            bias_ratio: ratio.map(|_| 1.0),
            unfair: ratio.is_some_and(|r| !(0.8..=1.25).contains(&r)),
        })
        .collect();
    let worst = segments
        .iter()
        .filter_map(|s| Some((s, s.mae_ratio?)))
        .max_by(|a, b| a.1.max(1.0 / a.1).total_cmp(&b.1.max(1.0 / b.1)));
    PerformanceReport {
        window: daily_row(day, 1, 0.1).window,
        generation: 0,
        revision: 1,
        overall: performance_stats(2_399, mae),
        unmatched_completions: 0,
        worst_segment: worst.map(|(s, _)| format!("{}={}", s.dimension, s.value)),
        worst_mae_ratio: worst.map(|(_, r)| r),
        segments,
        fairness_band: [0.8, 1.25],
        error_outliers: None,
        emitted_at: Utc::now(),
    }
}

/// A health report of monitor `taxi`'s `instance` for the 5 seconds up to `at`.
pub fn health_report(instance: &str, at: DateTime<Utc>) -> HealthReport {
    HealthReport {
        monitor: "taxi".into(),
        instance: instance.into(),
        at,
        interval_seconds: 5.0,
        events_in: 6_000,
        events_per_second: 1_200.0,
        events_failed: 2,
        consumer_lag: Some(340),
        watermark: Some(ts("2022-02-03T10:00:00")),
        open_windows: 26,
        panes: 48,
        windows_emitted: 3,
        emit_latency_seconds: Some(0.75),
        resident_memory_bytes: Some(96 << 20),
        uptime_seconds: 65.0,
    }
}
