//! The schema, the upsert and the dashboards against a real PostgreSQL (`DATABASE_URL`); each
//! test works in a database of its own.

mod support;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use streamwatch_common::events::{
    AlertEvent, AlertState, LateEvent, LateEvents, MetricsRecord, WindowKind, WindowShape,
};
use streamwatch_sink::grafana::{expand_macros, panel_queries, template_variables, time_range};
use streamwatch_sink::migrations;
use streamwatch_sink::service::{validate, MetricStore, WriteSummary};
use support::{
    contribution, daily_performance, daily_row, database_url, drift, health_report, outliers,
    small_segment, tested_segment, TestDb,
};

/// Every dashboard Grafana provisions: (file name, JSON).
fn dashboards() -> Vec<(String, String)> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards");
    let mut dashboards: Vec<(String, String)> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    dashboards.sort();
    dashboards
}

macro_rules! test_db {
    ($name:literal) => {{
        let Some(url) = database_url($name) else {
            return;
        };
        let db = TestDb::create(&url).await;
        migrations::apply(&db.store)
            .await
            .expect("migrations apply");
        db
    }};
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn migrations_apply_once_and_grant_the_grafana_role() {
    let Some(url) = database_url("migrations_apply_once_and_grant_the_grafana_role") else {
        return;
    };
    let first = TestDb::create(&url).await;
    let embedded = migrations::embedded_names();
    assert_eq!(
        embedded[..3],
        ["V1__metrics", "V2__late_events", "V3__outliers"]
    );
    let newest = embedded.last().map(String::as_str);
    let report = migrations::apply(&first.store).await.unwrap();
    assert_eq!(report.applied, embedded);
    assert_eq!(report.current.as_deref(), newest);
    let again = migrations::apply(&first.store).await.unwrap();
    assert!(
        again.applied.is_empty(),
        "second run applied {:?}",
        again.applied
    );
    assert_eq!(again.current.as_deref(), newest);

    // The role is cluster-wide: a second database finds it existing and still grants it.
    let second = TestDb::create(&url).await;
    assert_eq!(
        migrations::apply(&second.store).await.unwrap().applied,
        embedded
    );
    for db in [&first, &second] {
        let client = db.client().await;
        for relation in [
            "window_metrics",
            "column_drift",
            "column_quantiles",
            "column_outliers",
            "late_events",
            "window_late_events",
            "segment_drift",
            "segment_column_drift",
            "window_performance",
            "segment_performance",
            "alerts",
            "feature_contributions",
            "service_health",
            "window_latency",
            "dummy_metrics",
            "daily_metrics",
        ] {
            let granted: bool = client
                .query_one(
                    "SELECT has_table_privilege('streamwatch_grafana', $1, 'SELECT')",
                    &[&relation],
                )
                .await
                .unwrap()
                .get(0);
            assert!(
                granted,
                "streamwatch_grafana cannot read {relation} in {}",
                db.name
            );
            let writable: bool = client
                .query_one(
                    "SELECT has_table_privilege('streamwatch_grafana', $1, 'INSERT')",
                    &[&relation],
                )
                .await
                .unwrap()
                .get(0);
            assert!(!writable, "streamwatch_grafana may write {relation}");
        }
    }
    first.drop_database().await;
    second.drop_database().await;
}

#[tokio::test]
async fn the_same_row_twice_leaves_one_row() {
    let db = test_db!("the_same_row_twice_leaves_one_row");
    let row = daily_row("2022-02-01", 1, 0.19);
    for _ in 0..2 {
        let summary = db.store.write(&[row.clone().into()]).await.unwrap();
        assert_eq!(
            summary,
            WriteSummary {
                applied: 1,
                stale: 0
            }
        );
    }
    // Also twice within one transaction.
    db.store
        .write(&[row.clone().into(), row.clone().into()])
        .await
        .unwrap();
    let client = db.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM window_metrics").await,
        1
    );
    assert_eq!(count(&client, "SELECT count(*) FROM column_drift").await, 3);
    assert_eq!(
        count(&client, "SELECT count(*) FROM column_quantiles").await,
        2
    );
    let stored = client
        .query_one(
            "SELECT revision, row_count, prediction_drift, prediction_stattest, prediction_threshold,
                    prediction_drift_detected, number_of_drifted_columns, window_end, emitted_at
             FROM window_metrics",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, i64>(0), 1);
    assert_eq!(stored.get::<_, i64>(1), 2_399);
    assert_eq!(stored.get::<_, Option<f64>>(2), Some(0.19));
    assert_eq!(
        stored.get::<_, Option<String>>(3).as_deref(),
        Some("wasserstein")
    );
    assert_eq!(stored.get::<_, Option<f64>>(4), Some(0.1));
    assert_eq!(stored.get::<_, Option<bool>>(5), Some(true));
    assert_eq!(stored.get::<_, i64>(6), 2);
    assert_eq!(stored.get::<_, chrono::NaiveDateTime>(7), row.window.end);
    let emitted: chrono::DateTime<Utc> = stored.get(8);
    assert_eq!(
        emitted.timestamp_micros(),
        row.emitted_at.timestamp_micros()
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_retracted_alert_transition_removes_only_its_row() {
    let db = test_db!("a_retracted_alert_transition_removes_only_its_row");
    let alert = |day: &str, rule: &str, state: AlertState, value: f64| {
        MetricsRecord::Alert(AlertEvent {
            rule: rule.into(),
            metric: "prediction_drift".into(),
            op: ">=".into(),
            threshold: 0.1,
            for_windows: 1,
            window: daily_row(day, 1, value).window,
            state,
            value: Some(value),
            emitted_at: Utc::now(),
        })
    };
    db.store
        .write(&[
            alert("2022-02-02", "drift", AlertState::Firing, 0.15),
            alert("2022-02-03", "drift", AlertState::Resolved, 0.05),
            alert("2022-02-02", "other", AlertState::Firing, 0.15),
        ])
        .await
        .unwrap();
    // A later revision of Feb 2 keeps the rule below its threshold: both transitions go, in
    // one batch with the firing they replace (the order on the topic is kept).
    db.store
        .write(&[
            alert("2022-02-02", "drift", AlertState::Firing, 0.16),
            alert("2022-02-02", "drift", AlertState::Retracted, 0.08),
            alert("2022-02-03", "drift", AlertState::Retracted, 0.05),
        ])
        .await
        .unwrap();
    let client = db.client().await;
    let left: Vec<(String, String)> = client
        .query("SELECT rule, state FROM alerts ORDER BY rule", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(left, [("other".to_owned(), "firing".to_owned())]);
    // A retraction of a row not stored (a redelivery) is harmless.
    db.store
        .write(&[alert("2022-02-02", "drift", AlertState::Retracted, 0.08)])
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM alerts").await, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn an_older_revision_never_overwrites_a_newer_one() {
    let db = test_db!("an_older_revision_never_overwrites_a_newer_one");
    let newer = daily_row("2022-02-01", 2, 0.22);
    let mut older = daily_row("2022-02-01", 1, 0.11);
    older.columns.push(drift("trip_distance", None, false));
    assert_eq!(
        db.store
            .write(&[newer.clone().into()])
            .await
            .unwrap()
            .applied,
        1
    );
    assert_eq!(
        db.store.write(&[older.clone().into()]).await.unwrap(),
        WriteSummary {
            applied: 0,
            stale: 1
        }
    );
    let client = db.client().await;
    let row = client
        .query_one("SELECT revision, prediction_drift FROM window_metrics", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, Option<f64>>(1)),
        (2, Some(0.22))
    );
    // The stale row's columns did not replace the newer ones.
    assert_eq!(count(&client, "SELECT count(*) FROM column_drift").await, 3);
    let median: Option<f64> = client
        .query_one(
            "SELECT value FROM column_quantiles WHERE quantile = 0.5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(median, Some(14.5));

    // Out of order inside one batch: the highest revision wins.
    let summary = db
        .store
        .write(&[
            daily_row("2022-02-01", 3, 0.3).into(),
            daily_row("2022-02-01", 2, 0.2).into(),
        ])
        .await
        .unwrap();
    assert_eq!(
        summary,
        WriteSummary {
            applied: 1,
            stale: 1
        }
    );
    assert_eq!(
        count(&client, "SELECT revision FROM window_metrics").await,
        3
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_restarted_monitors_rows_replace_its_predecessors_whatever_their_revision() {
    let db = test_db!("a_restarted_monitors_rows_replace_its_predecessors");
    let row = |generation: i64, revision: u32, drift: f64| {
        let mut row = daily_row("2022-02-01", revision, drift);
        row.generation = generation;
        row
    };
    let stored = || async {
        let client = db.client().await;
        let row = client
            .query_one(
                "SELECT generation, revision, prediction_drift FROM window_metrics",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, Option<f64>>(2),
        )
    };
    // The first process reached revision 3 before it died.
    db.store.write(&[row(1_000, 3, 0.3).into()]).await.unwrap();
    // Its successor rebuilt the window and counts from 1 again: its revisions apply.
    for (revision, drift) in [(1, 0.31), (2, 0.32)] {
        let summary = db
            .store
            .write(&[row(2_000, revision, drift).into()])
            .await
            .unwrap();
        assert_eq!(summary.applied, 1, "revision {revision}");
    }
    assert_eq!(stored().await, (2_000, 2, Some(0.32)));
    // A redelivered row of the dead process is older, whatever its revision.
    let summary = db.store.write(&[row(1_000, 9, 0.9).into()]).await.unwrap();
    assert_eq!(
        summary,
        WriteSummary {
            applied: 0,
            stale: 1
        }
    );
    assert_eq!(stored().await, (2_000, 2, Some(0.32)));
    db.drop_database().await;
}

#[tokio::test]
async fn a_new_revision_replaces_the_column_rows() {
    let db = test_db!("a_new_revision_replaces_the_column_rows");
    let first = daily_row("2022-02-01", 1, 0.19);
    let mut second = daily_row("2022-02-01", 2, 0.05);
    second.columns = vec![
        drift("prediction", Some(0.05), false),
        drift("total_amount", None, false),
    ];
    second.columns[1].error = Some("every value of the window is missing".into());
    second.quantiles.truncate(1);
    db.store.write(&[first.clone().into()]).await.unwrap();
    // A different window keeps its rows.
    db.store
        .write(&[daily_row("2022-02-02", 1, 0.1).into()])
        .await
        .unwrap();
    db.store.write(&[second.clone().into()]).await.unwrap();

    let client = db.client().await;
    let rows = client
        .query(
            "SELECT column_name, score, error FROM column_drift
             WHERE window_start = '2022-02-01' ORDER BY column_name",
            &[],
        )
        .await
        .unwrap();
    let columns: Vec<(String, Option<f64>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        columns,
        [
            ("prediction".to_owned(), Some(0.05), None),
            (
                "total_amount".to_owned(),
                None,
                Some("every value of the window is missing".to_owned())
            ),
        ]
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM column_quantiles WHERE window_start = '2022-02-01'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM column_drift WHERE window_start = '2022-02-02'"
        )
        .await,
        3
    );
    db.drop_database().await;
}

#[tokio::test]
async fn the_views_give_the_course_columns() {
    let db = test_db!("the_views_give_the_course_columns");
    let mut sliding = daily_row("2022-02-01", 1, 0.9);
    sliding.window.kind = WindowKind::Sliding;
    sliding.window.step_seconds = 3_600;
    let mut hourly = daily_row("2022-02-01", 1, 0.8);
    hourly.window.size_seconds = 3_600;
    hourly.window.step_seconds = 3_600;
    hourly.window.end = hourly.window.start + chrono::Duration::hours(1);
    db.store
        .write(&[
            daily_row("2022-02-01", 1, 0.188522969503922).into(),
            daily_row("2022-02-02", 1, 0.12).into(),
            sliding.into(),
            hourly.into(),
        ])
        .await
        .unwrap();

    let client = db.client().await;
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_name = 'dummy_metrics' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("timestamp", "timestamp without time zone"),
        ("prediction_drift", "double precision"),
        ("num_drifted_columns", "integer"),
        ("share_missing_values", "double precision"),
    ];
    assert_eq!(
        columns,
        expected.map(|(n, t)| (n.to_owned(), t.to_owned())).to_vec()
    );

    // The course's own query shape; only daily tumbling windows are in the view.
    let rows = client
        .query(
            r#"SELECT "timestamp", prediction_drift, num_drifted_columns, share_missing_values
               FROM dummy_metrics ORDER BY "timestamp""#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<_, chrono::NaiveDateTime>(0),
        support::ts("2022-02-01T00:00:00")
    );
    assert_eq!(rows[0].get::<_, Option<f64>>(1), Some(0.188522969503922));
    assert_eq!(rows[0].get::<_, Option<i32>>(2), Some(2));
    assert_eq!(rows[0].get::<_, Option<f64>>(3), Some(0.08025169217332619));

    let daily = client
        .query(
            r#"SELECT "timestamp", quantile_50, row_count FROM daily_metrics ORDER BY 1"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(daily.len(), 2);
    assert_eq!(daily[0].get::<_, Option<f64>>(1), Some(13.5));
    assert_eq!(daily[0].get::<_, i64>(2), 2_399);
    db.drop_database().await;
}

#[tokio::test]
async fn every_dashboard_query_returns_rows_for_the_grafana_role() {
    let db = test_db!("every_dashboard_query_returns_rows_for_the_grafana_role");
    // Three days of every metric family, each day stored by a transaction of its own (so each
    // window has its own stored_at, as when the monitor emits them one by one).
    let published = Utc::now() - chrono::Duration::seconds(120);
    for (i, day) in ["2022-02-01", "2022-02-02", "2022-02-03"]
        .iter()
        .enumerate()
    {
        let mut row = daily_row(day, 1, 0.1 + i as f64 / 20.0);
        // Tested segments (a time series each) and one too small to test.
        row.segments = vec![
            small_segment("EWR"),
            tested_segment("Manhattan", vec![drift("prediction", Some(0.02), false)]),
            tested_segment("Queens", vec![drift("fare_amount", Some(0.2), true)]),
        ];
        row.contributions = vec![
            contribution("trip_distance", 2.5),
            contribution("PULocationID", 0.4),
        ];
        row.last_event_published_at = Some(published + chrono::Duration::seconds(i as i64));
        let performance = daily_performance(
            day,
            &[
                ("Manhattan", Some(0.9)),
                ("Queens", Some(1.3)),
                ("EWR", None),
            ],
        );
        db.store
            .write(&[row.into(), MetricsRecord::Performance(performance)])
            .await
            .unwrap();
    }
    let alert = MetricsRecord::Alert(AlertEvent {
        rule: "prediction drift".into(),
        metric: "prediction_drift".into(),
        op: ">=".into(),
        threshold: 0.1,
        for_windows: 1,
        window: daily_row("2022-02-02", 1, 0.1).window,
        state: AlertState::Firing,
        value: Some(0.15),
        emitted_at: Utc::now(),
    });
    let now = Utc::now();
    let health: Vec<MetricsRecord> = [30, 20, 10]
        .map(|ago| {
            MetricsRecord::Health(health_report(
                "host-1/4242",
                now - chrono::Duration::seconds(ago),
            ))
        })
        .into();
    db.store.write(&[alert]).await.unwrap();
    db.store.write(&health).await.unwrap();

    let client = db.client().await;
    // Grafana's read-only role must be enough for every panel and variable.
    client
        .batch_execute("SET ROLE streamwatch_grafana")
        .await
        .unwrap();
    let now = (Utc::now() + chrono::Duration::seconds(5)).naive_utc();
    let mut titles = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
        titles.insert(json["title"].as_str().unwrap().to_owned());
        // Grafana opens a dashboard on its saved range; relative ones end now.
        let (from, to) = time_range(&dashboard, now).unwrap_or_else(|| panic!("{file}: time"));
        // Each variable's query runs with the values of those before it, and offers the
        // saved value, which the panels then use.
        let mut values: Vec<(String, String)> = Vec::new();
        for variable in template_variables(&dashboard).unwrap() {
            let what = format!("{file} variable {}", variable.name);
            let sql = variable
                .sql
                .as_deref()
                .unwrap_or_else(|| panic!("{what}: no query"));
            let sql = expand_macros(sql, from, to, &pairs(&values));
            assert!(!sql.contains('$'), "{what}: a variable is left: {sql}");
            let options: Vec<String> = client
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{what}: {sql}\nfailed: {}", db_message(&e)))
                .iter()
                .map(|r| r.get(0))
                .collect();
            let current = variable
                .current
                .clone()
                .unwrap_or_else(|| panic!("{what}: no value"));
            assert!(
                options.contains(&current),
                "{what}: the saved value {current:?} is not among {options:?}"
            );
            values.push((variable.name.clone(), variable.sql_value(&current)));
        }
        let queries = panel_queries(&dashboard).unwrap();
        let panels: Vec<_> = queries
            .iter()
            .filter(|q| !q.panel_title.starts_with("variable "))
            .collect();
        assert!(panels.len() >= 6, "{file}: {} panels", panels.len());
        for query in &panels {
            let what = format!("{file} panel {:?}", query.panel_title);
            let sql = expand_macros(&query.sql, from, to, &pairs(&values));
            assert!(
                !sql.contains('$'),
                "{what}: a variable or macro is left: {sql}"
            );
            let result = client
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{what}: {sql}\nfailed: {}", db_message(&e)));
            assert!(!result.is_empty(), "{what} returned no rows: {sql}");
            if query.format == "time_series" {
                assert_eq!(result[0].columns()[0].name(), "time", "{what}");
                // Three days, three health reports, three stored windows.
                let times = count(
                    &client,
                    &format!(r#"SELECT count(DISTINCT "time") FROM ({sql}) AS panel"#),
                )
                .await;
                assert_eq!(times, 3, "{what}: {sql}");
            }
        }
        // After the range the panels are empty: the time filter is applied.
        let later = to + chrono::Duration::days(1);
        for query in &panels {
            let sql = expand_macros(
                &query.sql,
                later,
                later + chrono::Duration::days(1),
                &pairs(&values),
            );
            assert!(client.query(&sql, &[]).await.unwrap().is_empty(), "{sql}");
        }
    }
    for title in ["Data drift", "Model performance", "Service health"] {
        assert!(
            titles.contains(title),
            "no dashboard {title:?} in {titles:?}"
        );
    }
    db.drop_database().await;
}

/// The server's message for a failed query (`Display` says only "db error").
fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// Variable values as `expand_macros` takes them.
fn pairs(values: &[(String, String)]) -> Vec<(&str, &str)> {
    values
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

#[tokio::test]
async fn health_reports_are_stored_once() {
    let db = test_db!("health_reports_are_stored_once");
    let at = DateTime::parse_from_rfc3339("2025-06-01T12:00:05.250Z")
        .unwrap()
        .with_timezone(&Utc);
    let report = health_report("host-1/4242", at);
    let record = MetricsRecord::Health(report.clone());
    assert_eq!(validate(&record), Ok(()));
    // Delivered twice (a monitor restarted before its offsets were committed), and twice in
    // one batch.
    for _ in 0..2 {
        db.store.write(std::slice::from_ref(&record)).await.unwrap();
    }
    db.store
        .write(&[record.clone(), record.clone()])
        .await
        .unwrap();
    let client = db.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM service_health").await,
        1
    );
    let row = client
        .query_one(
            "SELECT monitor, instance, at, interval_seconds, events_in, events_per_second,
                    events_failed, consumer_lag, watermark, open_windows, panes, windows_emitted,
                    emit_latency_seconds, resident_memory_bytes, uptime_seconds
             FROM service_health",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "taxi");
    assert_eq!(row.get::<_, String>(1), "host-1/4242");
    assert_eq!(row.get::<_, DateTime<Utc>>(2), at);
    assert_eq!(row.get::<_, f64>(3), 5.0);
    assert_eq!(row.get::<_, i64>(4), 6_000);
    assert_eq!(row.get::<_, f64>(5), 1_200.0);
    assert_eq!(row.get::<_, i64>(6), 2);
    assert_eq!(row.get::<_, Option<i64>>(7), Some(340));
    assert_eq!(
        row.get::<_, Option<chrono::NaiveDateTime>>(8),
        report.watermark
    );
    assert_eq!(
        (
            row.get::<_, i64>(9),
            row.get::<_, i64>(10),
            row.get::<_, i64>(11)
        ),
        (26, 48, 3)
    );
    assert_eq!(row.get::<_, Option<f64>>(12), Some(0.75));
    assert_eq!(row.get::<_, Option<i64>>(13), Some(96 << 20));
    assert_eq!(row.get::<_, f64>(14), 65.0);

    // The next report of the instance, another instance's, and one without the values known
    // only later (lag, watermark, latency, memory) are rows of their own.
    let next = health_report("host-1/4242", at + chrono::Duration::seconds(5));
    let other = health_report("host-2/17", at);
    let mut early = health_report("host-3/9", at);
    early.consumer_lag = None;
    early.watermark = None;
    early.emit_latency_seconds = None;
    early.resident_memory_bytes = None;
    db.store
        .write(&[next, other, early].map(MetricsRecord::Health))
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM service_health").await,
        4
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM service_health WHERE consumer_lag IS NULL AND watermark IS NULL"
        )
        .await,
        1
    );
    db.drop_database().await;
}

#[tokio::test]
async fn an_invalid_health_report_is_rejected() {
    let db = test_db!("an_invalid_health_report_is_rejected");
    let at = Utc::now();
    let mut no_monitor = health_report("host-1/4242", at);
    no_monitor.monitor.clear();
    let mut no_instance = health_report("host-1/4242", at);
    no_instance.instance.clear();
    let mut negative_lag = health_report("host-1/4242", at);
    negative_lag.consumer_lag = Some(-5);
    let mut negative_rate = health_report("host-1/4242", at);
    negative_rate.events_per_second = -1.0;
    let mut nan_latency = health_report("host-1/4242", at);
    nan_latency.emit_latency_seconds = Some(f64::NAN);
    let mut nan_uptime = health_report("host-1/4242", at);
    nan_uptime.uptime_seconds = f64::NAN;
    let bad = [
        (no_monitor, "monitor"),
        (no_instance, "instance"),
        (negative_lag, "consumer_lag"),
        (negative_rate, "events_per_second"),
        (nan_latency, "emit_latency_seconds"),
        (nan_uptime, "uptime_seconds"),
    ];
    for (report, field) in &bad {
        let record = MetricsRecord::Health(report.clone());
        // The sink's check dead-letters it...
        let reason = validate(&record).unwrap_err();
        assert!(reason.contains(field), "{field}: {reason}");
        if report.emit_latency_seconds.is_some_and(f64::is_nan) || report.uptime_seconds.is_nan() {
            continue; // JSON cannot carry NaN
        }
        let json = serde_json::to_vec(&record).unwrap();
        let (kind, reason) = streamwatch_sink::sink::decode(&json).unwrap_err();
        assert_eq!(kind, "invalid_row", "{field}: {reason}");
        assert!(reason.contains(field), "{field}: {reason}");
    }
    // ...and the schema refuses it too, should it get past the check: nothing is written.
    for (report, field) in bad {
        let error = db
            .store
            .write(&[
                MetricsRecord::Health(health_report("host-9/1", at)),
                MetricsRecord::Health(report),
            ])
            .await
            .unwrap_err();
        assert!(error.is_rejection(), "{field}: {error}");
    }
    let client = db.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM service_health").await,
        0
    );
    db.drop_database().await;
}

#[tokio::test]
async fn window_latency_is_from_the_latest_event_to_the_stored_revision() {
    let db = test_db!("window_latency_is_from_the_latest_event_to_the_stored_revision");
    let published = Utc::now() - chrono::Duration::seconds(90);
    let mut first = daily_row("2022-02-01", 1, 0.1);
    first.last_event_published_at = Some(published);
    let mut untimed = daily_row("2022-02-02", 1, 0.1);
    untimed.last_event_published_at = None;
    db.store
        .write(&[first.clone().into(), untimed.into()])
        .await
        .unwrap();
    let client = db.client().await;
    let latency = || {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT l.latency_seconds, l.stored_at, w.stored_at, l.last_event_published_at,
                            l.revision, l.window_end
                     FROM window_latency l JOIN window_metrics w USING (monitor, window_kind,
                          window_size_seconds, window_step_seconds, window_start)",
                    &[],
                )
                .await
                .unwrap();
            let seconds: f64 = row.get(0);
            let stored: DateTime<Utc> = row.get(1);
            assert_eq!(stored, row.get::<_, DateTime<Utc>>(2));
            let event: DateTime<Utc> = row.get(3);
            assert_eq!(row.get::<_, chrono::NaiveDateTime>(5), first.window.end);
            (seconds, stored, event, row.get::<_, i64>(4))
        }
    };
    // Only the window with a publication time is in the view.
    assert_eq!(
        count(&client, "SELECT count(*) FROM window_latency").await,
        1
    );
    let (seconds, stored, event, revision) = latency().await;
    assert_eq!(revision, 1);
    assert_eq!(event.timestamp_micros(), published.timestamp_micros());
    let expected = (stored - event).num_microseconds().unwrap() as f64 / 1e6;
    assert!((seconds - expected).abs() < 1e-6, "{seconds} vs {expected}");
    assert!((90.0..150.0).contains(&seconds), "{seconds}");

    // A stale revision changes nothing; a newer one (a late event) sets both times again.
    let mut stale = daily_row("2022-02-01", 0, 0.1);
    stale.last_event_published_at = Some(published - chrono::Duration::hours(1));
    db.store.write(&[stale.into()]).await.unwrap();
    assert_eq!(latency().await, (seconds, stored, event, 1));
    let late = Utc::now() - chrono::Duration::seconds(30);
    let mut second = daily_row("2022-02-01", 2, 0.1);
    second.last_event_published_at = Some(late);
    db.store.write(&[second.into()]).await.unwrap();
    let (seconds, restored, event, revision) = latency().await;
    assert_eq!(revision, 2);
    assert!(
        restored > stored,
        "stored_at is set again: {restored} vs {stored}"
    );
    assert_eq!(event.timestamp_micros(), late.timestamp_micros());
    let expected = (restored - event).num_microseconds().unwrap() as f64 / 1e6;
    assert!((seconds - expected).abs() < 1e-6, "{seconds} vs {expected}");
    assert!((30.0..90.0).contains(&seconds), "{seconds}");
    db.drop_database().await;
}

#[tokio::test]
async fn data_the_database_refuses_is_a_rejection_and_nothing_is_written() {
    let db = test_db!("data_the_database_refuses_is_a_rejection_and_nothing_is_written");
    let good = daily_row("2022-02-01", 1, 0.1);
    let mut bad = daily_row("2022-02-02", 1, 0.1);
    bad.window.monitor = "nul\u{0}byte".into();
    let error = db
        .store
        .write(&[good.into(), bad.into()])
        .await
        .unwrap_err();
    assert!(error.is_rejection(), "{error}");
    let client = db.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM window_metrics").await,
        0
    );
    db.drop_database().await;
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let config: tokio_postgres::Config =
        "postgres://postgres:hunter2@127.0.0.1:1/streamwatch?connect_timeout=2"
            .parse()
            .unwrap();
    let store = MetricStore::from_config(config, 1).unwrap();
    let error = store.ping().await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(
            "database at postgres://postgres@127.0.0.1:1/streamwatch is unreachable: "
        ),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!error.is_rejection());
}

#[tokio::test]
async fn late_events_are_stored_once_and_counted_per_window() {
    let db = test_db!("late_events_are_stored_once_and_counted_per_window");
    let late = |offsets: &[(i64, &str)]| {
        MetricsRecord::LateEvents(LateEvents {
            shape: WindowShape {
                monitor: "taxi".into(),
                kind: WindowKind::Sliding,
                size_seconds: 3 * 3600,
                step_seconds: 3600,
            },
            topic: "trips.scored".into(),
            watermark: support::ts("2022-02-03T00:00:00"),
            events: offsets
                .iter()
                .map(|(offset, time)| LateEvent {
                    partition: 0,
                    offset: *offset,
                    index: 0,
                    event_time: support::ts(time),
                })
                .collect(),
            emitted_at: Utc::now(),
        })
    };
    let first = late(&[(7, "2022-02-01T05:10:00"), (9, "2022-02-01T06:59:59")]);
    db.store.write(std::slice::from_ref(&first)).await.unwrap();
    // A monitor restarted before committing reports them again, with one more.
    db.store
        .write(&[late(&[
            (7, "2022-02-01T05:10:00"),
            (9, "2022-02-01T06:59:59"),
            (12, "2022-02-01T03:00:00"),
        ])])
        .await
        .unwrap();
    let client = db.client().await;
    assert_eq!(count(&client, "SELECT count(*) FROM late_events").await, 3);
    let windows: Vec<(String, i64)> = client
        .query(
            "SELECT to_char(window_start, 'HH24:MI'), late_events_dropped
             FROM window_late_events ORDER BY window_start",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // 3-hour windows every hour: 03:00 is in the windows starting 01..03, 05:10 in 03..05,
    // 06:59:59 in 04..06.
    let expected = [
        ("01:00", 1),
        ("02:00", 1),
        ("03:00", 2),
        ("04:00", 2),
        ("05:00", 2),
        ("06:00", 1),
    ];
    assert_eq!(
        windows,
        expected
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect::<Vec<_>>()
    );
    // Events of one batch message share its offset and differ by their index in it.
    let MetricsRecord::LateEvents(mut batched) =
        late(&[(12, "2022-02-01T03:00:00"), (12, "2022-02-01T03:00:01")])
    else {
        unreachable!()
    };
    batched.events[1].index = 1;
    db.store
        .write(&[MetricsRecord::LateEvents(batched)])
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM late_events").await, 4);
    db.drop_database().await;
}

#[tokio::test]
async fn outliers_land_and_follow_the_window_revision() {
    let db = test_db!("outliers_land_and_follow_the_window_revision");
    let mut first = daily_row("2022-02-01", 1, 0.19);
    first.outliers.push(outliers("trip_distance", None, 0));
    db.store.write(&[first.clone().into()]).await.unwrap();
    db.store
        .write(&[daily_row("2022-02-02", 1, 0.1).into()])
        .await
        .unwrap();

    let client = db.client().await;
    type Stored = (
        String,
        f64,
        f64,
        f64,
        f64,
        Option<f64>,
        f64,
        f64,
        Option<f64>,
        i64,
    );
    let stored = |day: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT column_name, lower_quantile, upper_quantile, lower_bound, upper_bound,
                            share_outside_quantiles, iqr_lower_fence, iqr_upper_fence,
                            share_outside_iqr, finite_values
                     FROM column_outliers WHERE window_start = $1::text::timestamp
                     ORDER BY column_name",
                    &[&day],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                        r.get(7),
                        r.get(8),
                        r.get(9),
                    )
                })
                .collect::<Vec<Stored>>()
        }
    };
    let expected = |o: &streamwatch_common::events::ColumnOutliers| -> Stored {
        (
            o.column.clone(),
            o.lower_quantile,
            o.upper_quantile,
            o.lower_bound,
            o.upper_bound,
            o.share_outside_quantiles,
            o.iqr_lower_fence,
            o.iqr_upper_fence,
            o.share_outside_iqr,
            o.values as i64,
        )
    };
    let mut want: Vec<Stored> = first.outliers.iter().map(expected).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(stored("2022-02-01").await, want);
    assert_eq!(want[2].0, "trip_distance");
    assert_eq!((want[2].5, want[2].8, want[2].9), (None, None, 0));

    // A stale revision leaves them; a newer one replaces them; other windows keep theirs.
    let mut stale = daily_row("2022-02-01", 0, 0.5);
    stale.outliers.truncate(1);
    db.store.write(&[stale.into()]).await.unwrap();
    assert_eq!(stored("2022-02-01").await.len(), 3);
    let mut second = daily_row("2022-02-01", 2, 0.05);
    second.outliers = vec![outliers("fare_amount", Some(0.5), 4)];
    db.store.write(&[second.clone().into()]).await.unwrap();
    assert_eq!(
        stored("2022-02-01").await,
        vec![expected(&second.outliers[0])]
    );
    assert_eq!(stored("2022-02-02").await.len(), 2);

    // A row without outliers (an older monitor) clears them, and deleting a window
    // deletes its outliers.
    let mut third = daily_row("2022-02-01", 3, 0.05);
    third.outliers.clear();
    db.store.write(&[third.into()]).await.unwrap();
    assert!(stored("2022-02-01").await.is_empty());
    client
        .execute(
            "DELETE FROM window_metrics WHERE window_start = '2022-02-02'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM column_outliers").await,
        0
    );
    db.drop_database().await;
}

#[tokio::test]
async fn segment_drift_lands_and_follows_the_window_revision() {
    let db = test_db!("segment_drift_lands_and_follows_the_window_revision");
    let mut first = daily_row("2022-02-01", 1, 0.19);
    first.segments = vec![
        small_segment("EWR"),
        tested_segment(
            "Queens",
            vec![
                drift("prediction", Some(0.31), true),
                drift("fare_amount", None, false),
            ],
        ),
    ];
    first.segments[1].columns[1].error = Some("every value of the segment is missing".into());
    let mut other_day = daily_row("2022-02-02", 1, 0.1);
    other_day.segments = vec![small_segment("Bronx")];
    db.store
        .write(&[first.clone().into(), other_day.into()])
        .await
        .unwrap();

    let client = db.client().await;
    type Segment = (
        String,
        String,
        i64,
        i64,
        bool,
        i64,
        Option<f64>,
        (Option<f64>, Option<String>, Option<f64>, Option<bool>),
        Option<i64>,
        Option<f64>,
        Option<bool>,
    );
    let segments = || {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT dimension, segment, row_count, reference_rows, too_small,
                            number_of_missing_values, share_of_missing_values, prediction_drift,
                            prediction_stattest, prediction_threshold, prediction_drift_detected,
                            number_of_drifted_columns, share_of_drifted_columns, dataset_drift
                     FROM segment_drift WHERE window_start = '2022-02-01' ORDER BY segment",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                        (r.get(7), r.get(8), r.get(9), r.get(10)),
                        r.get(11),
                        r.get(12),
                        r.get(13),
                    )
                })
                .collect::<Vec<Segment>>()
        }
    };
    type Column = (
        String,
        String,
        String,
        String,
        f64,
        Option<f64>,
        bool,
        i64,
        i64,
        Option<String>,
    );
    let columns = || {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT segment, column_name, column_type, stattest, threshold, score,
                            drift_detected, reference_rows, current_rows, error
                     FROM segment_column_drift WHERE window_start = '2022-02-01'
                     ORDER BY segment, column_name",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                        r.get(7),
                        r.get(8),
                        r.get(9),
                    )
                })
                .collect::<Vec<Column>>()
        }
    };
    let expected_segment = |s: &streamwatch_common::events::SegmentDrift| -> Segment {
        let p = s.prediction_drift.as_ref();
        (
            s.dimension.clone(),
            s.segment.clone(),
            s.row_count as i64,
            s.reference_rows as i64,
            s.too_small,
            s.number_of_missing_values as i64,
            s.share_of_missing_values,
            (
                p.and_then(|p| p.score),
                p.map(|p| p.stattest.clone()),
                p.map(|p| p.threshold),
                p.map(|p| p.drift_detected),
            ),
            s.number_of_drifted_columns.map(i64::from),
            s.share_of_drifted_columns,
            s.dataset_drift,
        )
    };
    let expected_columns = |s: &streamwatch_common::events::SegmentDrift| -> Vec<Column> {
        let mut columns: Vec<Column> = s
            .columns
            .iter()
            .map(|c| {
                (
                    s.segment.clone(),
                    c.column.clone(),
                    c.column_type.clone(),
                    c.stattest.clone(),
                    c.threshold,
                    c.score,
                    c.drift_detected,
                    c.reference_rows as i64,
                    c.current_rows as i64,
                    c.error.clone(),
                )
            })
            .collect();
        columns.sort_by(|a, b| a.1.cmp(&b.1));
        columns
    };

    let want_segments: Vec<Segment> = first.segments.iter().map(expected_segment).collect();
    let want_columns = expected_columns(&first.segments[1]);
    assert_eq!(segments().await, want_segments);
    assert_eq!(columns().await, want_columns);
    // The too-small segment has counts and no drift; the tested one its prediction's test.
    assert_eq!(want_segments[0].1, "EWR");
    assert_eq!(
        (
            want_segments[0].7.clone(),
            want_segments[0].8,
            want_segments[0].10
        ),
        ((None, None, None, None), None, None)
    );
    assert_eq!(
        want_segments[1].7,
        (
            Some(0.31),
            Some("wasserstein".into()),
            Some(0.1),
            Some(true)
        )
    );
    assert_eq!(want_columns.len(), 2);

    // Delivered again, alone or twice in one batch: the same rows.
    db.store.write(&[first.clone().into()]).await.unwrap();
    db.store
        .write(&[first.clone().into(), first.clone().into()])
        .await
        .unwrap();
    assert_eq!(segments().await, want_segments);
    assert_eq!(columns().await, want_columns);

    // A higher revision with fewer segments and columns replaces them; a stale one does not.
    let mut second = daily_row("2022-02-01", 2, 0.05);
    second.segments = vec![tested_segment(
        "Manhattan",
        vec![drift("trip_distance", Some(0.02), false)],
    )];
    db.store.write(&[second.clone().into()]).await.unwrap();
    assert_eq!(
        db.store.write(&[first.clone().into()]).await.unwrap().stale,
        1
    );
    assert_eq!(
        segments().await,
        vec![expected_segment(&second.segments[0])]
    );
    assert_eq!(columns().await, expected_columns(&second.segments[0]));
    assert_eq!(segments().await[0].7, (None, None, None, None));

    // A revision without segments clears them; the other window keeps its own until its
    // window row is deleted.
    db.store
        .write(&[daily_row("2022-02-01", 3, 0.05).into()])
        .await
        .unwrap();
    assert!(segments().await.is_empty());
    assert!(columns().await.is_empty());
    assert_eq!(
        count(&client, "SELECT count(*) FROM segment_drift").await,
        1
    );
    client
        .execute(
            "DELETE FROM window_metrics WHERE window_start = '2022-02-02'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM segment_drift").await,
        0
    );

    // Deleting a window deletes its segments' columns too.
    let mut fourth = first;
    fourth.revision = 4;
    db.store.write(&[fourth.into()]).await.unwrap();
    assert_eq!(columns().await, want_columns);
    client
        .execute("DELETE FROM window_metrics", &[])
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM segment_column_drift").await,
        0
    );
    db.drop_database().await;
}
