//! Runs every provisioned Grafana alert rule's SQL (grafana/provisioning/alerting) against a
//! freshly migrated PostgreSQL database (`DATABASE_URL`), as Grafana sends it: macros expanded
//! over the rule's relative time range. Checks the result has the shape Grafana's time-series
//! alerting needs and, on a few written rows, which rules fire (reduce `last` per series, then
//! the threshold), as Grafana would evaluate them.

mod alerting;
mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use streamwatch_common::events::{format_timestamp, MetricsRecord, WindowKind};
use streamwatch_sink::grafana::expand_macros;
use streamwatch_sink::migrations;
use support::{daily_row, database_url, ts, TestDb};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// One alert instance: its labels (the text columns), the reduced value, whether it fires.
#[derive(Debug, Clone, PartialEq)]
struct Instance {
    labels: BTreeMap<String, String>,
    value: f64,
    fires: bool,
}

/// Runs each rule's query and evaluates it: rule uid -> instances.
async fn evaluate(client: &Client) -> BTreeMap<String, Vec<Instance>> {
    let file = alerting::rule_file();
    let now = Utc::now().naive_utc();
    let mut results = BTreeMap::new();
    for rule in alerting::rules(&file) {
        let queries = rule.sql_queries();
        assert_eq!(queries.len(), 1, "{}: one SQL query", rule.uid());
        let query = &queries[0];
        let what = format!("{} {}", query.rule_uid, query.ref_id);
        let sql = expand_macros(
            &query.sql,
            now - Duration::seconds(query.from_seconds),
            now - Duration::seconds(query.to_seconds),
            &[],
        );
        let statement = client
            .prepare(&sql)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{sql}"));
        assert!(statement.params().is_empty(), "{what}: takes parameters");

        // Grafana's time series from SQL: a "time" column, one numeric value column, and text
        // columns that become labels.
        let columns = statement.columns();
        let time = columns
            .iter()
            .position(|c| c.name() == "time")
            .unwrap_or_else(|| panic!("{what}: no \"time\" column"));
        assert_eq!(columns[time].type_(), &Type::TIMESTAMPTZ, "{what}: time");
        let numeric: Vec<usize> = (0..columns.len())
            .filter(|&i| i != time && columns[i].type_() != &Type::TEXT)
            .collect();
        assert_eq!(
            numeric.len(),
            1,
            "{what}: one value column, the others text: {columns:?}"
        );
        let value = numeric[0];
        assert_eq!(columns[value].type_(), &Type::FLOAT8, "{what}: value");

        let rows = client
            .query(&statement, &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut last: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
        let mut previous: Option<DateTime<Utc>> = None;
        for row in &rows {
            let at: DateTime<Utc> = row.get(time);
            assert!(
                previous.is_none_or(|p| p <= at),
                "{what}: rows must be sorted by time"
            );
            previous = Some(at);
            let labels = (0..columns.len())
                .filter(|&i| i != time && i != value)
                .map(|i| {
                    let text: Option<String> = row.get(i);
                    (columns[i].name().to_owned(), text.unwrap_or_default())
                })
                .collect();
            // Reduce `last`, dropping non-numbers (mode dropNN).
            if let Some(v) = row.get::<_, Option<f64>>(value).filter(|v| v.is_finite()) {
                last.insert(labels, v);
            }
        }
        let threshold = rule.threshold();
        let instances = last
            .into_iter()
            .map(|(labels, value)| Instance {
                labels,
                value,
                fires: threshold.fires(value),
            })
            .collect();
        results.insert(rule.uid().to_owned(), instances);
    }
    results
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn performance(day: &str, mae: f64, worst_ratio: f64) -> MetricsRecord {
    let start = ts(&format!("{day}T00:00:00"));
    let end = start + Duration::days(1);
    let stats = |mae: f64| {
        json!({
            "predictions": 2399, "labelled_rows": 2391,
            "metrics": {"mae": mae, "rmse": mae * 1.8, "mape": 0.35, "mape_rows": 2391,
                        "r2": 0.51, "mean_error": -2.7},
            "label_delay": {"mean_seconds": 900.0, "p50_seconds": 700.0,
                            "p95_seconds": 2400.0, "max_seconds": 10000.0}
        })
    };
    let mut segment = stats(mae * worst_ratio);
    segment["dimension"] = json!("pickup_borough");
    segment["value"] = json!("Brooklyn");
    segment["too_small"] = json!(false);
    segment["mae_ratio"] = json!(worst_ratio);
    segment["bias_ratio"] = json!(1.1);
    segment["unfair"] = json!(!(0.8..=1.25).contains(&worst_ratio));
    let mut report = stats(mae);
    report["record"] = json!("performance");
    report["window"] = json!({
        "monitor": "taxi", "kind": "tumbling", "size_seconds": 86400, "step_seconds": 86400,
        "start": format_timestamp(start), "end": format_timestamp(end)
    });
    report["revision"] = json!(1);
    report["unmatched_completions"] = json!(0);
    report["segments"] = json!([segment]);
    report["fairness_band"] = json!([0.8, 1.25]);
    report["worst_segment"] = json!("pickup_borough=Brooklyn");
    report["worst_mae_ratio"] = json!(worst_ratio);
    report["emitted_at"] = json!(Utc::now());
    serde_json::from_value(report).expect("a performance record")
}

fn alert(day: &str, rule: &str, state: &str, emitted_at: DateTime<Utc>) -> MetricsRecord {
    let start = ts(&format!("{day}T00:00:00"));
    let window = json!({
        "monitor": "taxi", "kind": "tumbling", "size_seconds": 86400, "step_seconds": 86400,
        "start": format_timestamp(start), "end": format_timestamp(start + Duration::days(1))
    });
    serde_json::from_value(json!({
        "record": "alert", "rule": rule, "metric": "prediction_drift_detected", "op": ">=",
        "threshold": 1.0, "for_windows": 1, "window": window, "state": state, "value": 1.0,
        "emitted_at": emitted_at
    }))
    .expect("an alert record")
}

#[tokio::test]
async fn every_alert_rule_query_runs_and_fires_as_grafana_would() {
    let Some(url) = database_url("every_alert_rule_query_runs_and_fires_as_grafana_would") else {
        return;
    };
    let db = TestDb::create(&url).await;
    migrations::apply(&db.store)
        .await
        .expect("migrations apply");
    let client = db.client().await;

    // An empty database: every query runs and nothing fires (no data).
    let empty = evaluate(&client).await;
    assert!(empty.len() >= 5, "{empty:?}");
    for (uid, instances) in &empty {
        assert!(instances.is_empty(), "{uid}: {instances:?}");
    }

    // Day 1 has dataset drift, day 2 (the latest daily window) prediction drift only. An hourly
    // window after both, with dataset drift, is not a daily one.
    let mut day1 = daily_row("2022-02-01", 1, 0.05);
    day1.dataset_drift = true;
    let day2 = daily_row("2022-02-02", 1, 0.3);
    let mut hourly = daily_row("2022-02-03", 1, 0.0);
    hourly.window.size_seconds = 3600;
    hourly.window.step_seconds = 3600;
    hourly.window.end = hourly.window.start + Duration::hours(1);
    hourly.dataset_drift = true;
    assert_eq!(hourly.window.kind, WindowKind::Tumbling);
    let records = vec![
        day1.into(),
        day2.into(),
        hourly.into(),
        // Day 1's MAE is high and fair, day 2's normal with an unfair segment.
        performance("2022-02-01", 9.0, 1.0),
        performance("2022-02-02", 5.2, 1.4),
        alert("2022-02-02", "prediction drift", "firing", Utc::now()),
        alert("2022-02-01", "share missing", "resolved", Utc::now()),
        // Fired two days ago: not in the last day.
        alert(
            "2022-01-30",
            "dataset drift",
            "firing",
            Utc::now() - Duration::days(2),
        ),
    ];
    db.store.write(&records).await.expect("write the rows");

    let results = evaluate(&client).await;
    let only = |uid: &str| -> Instance {
        let instances = &results[uid];
        assert_eq!(instances.len(), 1, "{uid}: {instances:?}");
        instances[0].clone()
    };
    let latest = [("monitor", "taxi"), ("window_start", "2022-02-02T00:00:00")];
    assert_eq!(
        only("streamwatch-prediction-drift"),
        Instance {
            labels: labels(&latest),
            value: 1.0,
            fires: true
        }
    );
    assert_eq!(
        only("streamwatch-dataset-drift"),
        Instance {
            labels: labels(&latest),
            value: 0.0,
            fires: false
        }
    );
    assert_eq!(
        only("streamwatch-mae-high"),
        Instance {
            labels: labels(&latest),
            value: 5.2,
            fires: false
        }
    );
    let mut unfair = latest.to_vec();
    unfair.push(("worst_segment", "pickup_borough=Brooklyn"));
    assert_eq!(
        only("streamwatch-unfair-segment"),
        Instance {
            labels: labels(&unfair),
            value: 1.4,
            fires: true
        }
    );
    assert_eq!(
        only("streamwatch-monitor-alerts"),
        Instance {
            labels: labels(&[("monitor", "taxi"), ("rule", "prediction drift")]),
            value: 1.0,
            fires: true
        }
    );
    drop(client);
    db.drop_database().await;
}
