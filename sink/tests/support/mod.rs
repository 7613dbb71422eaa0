//! Helpers shared by the integration tests: a fresh database per test and synthetic metric rows.
#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{NaiveDateTime, Utc};
use streamwatch_common::events::{
    parse_timestamp, ColumnDrift, ColumnOutliers, MetricRow, QuantileValue, SegmentDrift,
    WindowKey, WindowKind,
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
        window: WindowKey {
            monitor: "taxi".into(),
            kind: WindowKind::Tumbling,
            size_seconds: 86_400,
            step_seconds: 86_400,
            start,
            end: start + chrono::Duration::days(1),
        },
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
        contributions: vec![],
        segments: vec![],
        emitted_at: Utc::now(),
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
