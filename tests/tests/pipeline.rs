//! End to end on the real broker and PostgreSQL: replay February 2022 through producer,
//! scorer, monitor and sink (the real binaries, as processes), then check that the 28
//! daily rows in PostgreSQL equal Evidently's golden values, that malformed events (10,000
//! injected into each input topic during the replay) land in the dead-letter topic with a
//! reason and their original bytes without changing a metric, that every Grafana panel's SQL returns rows,
//! and that every stage exits 0 on SIGTERM.
//!
//! Needs KAFKA_BROKERS and DATABASE_URL (scripts/services.sh sets both) and the four
//! binaries built next to this test (`cargo build --workspace --bins`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use streamwatch_common::end_of_stream::{delivered, queue_markers, Marker};
use streamwatch_common::events::{HEADER_DLQ_REASON, HEADER_DLQ_STAGE};
use streamwatch_tests::{
    bin_dir, connect, drop_database, fresh_database, partition_count, repo_root, Services, Stage,
};

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Starts a stage's binary (`log_dir/<name>.log`).
fn spawn(name: &'static str, args: &[&str], log_dir: &Path) -> Result<Stage> {
    Stage::spawn(
        name,
        &bin_dir().join(name),
        args,
        &log_dir.join(format!("{name}.log")),
    )
}

fn close(expected: f64, actual: f64) -> bool {
    expected == actual || (expected - actual).abs() <= 1e-12 * expected.abs().max(actual.abs())
}

fn golden_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s == "NaN" => None,
        other => panic!("unexpected golden float {other}"),
    }
}

/// Reads `expected` dead letters: (stage, reason, original payload).
async fn dead_letters(
    brokers: &str,
    topic: &str,
    expected: usize,
) -> Result<Vec<(String, String, Vec<u8>)>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-check"))
        .set("auto.offset.reset", "earliest")
        .set("group.protocol", "classic")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while found.len() < expected {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| {
                format!("only {} of {expected} dead letters arrived", found.len())
            })??;
        let headers = message.headers().context("dead letters carry headers")?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        found.push((
            header(HEADER_DLQ_STAGE),
            header(HEADER_DLQ_REASON),
            message.payload().unwrap_or_default().to_vec(),
        ));
    }
    Ok(found)
}

/// Malformed messages injected into each input topic during the replay.
const MALFORMED_PER_TOPIC: usize = 10_000;

/// The `i`-th malformed message for an input topic: garbage every decoder rejects (random
/// bytes, invalid UTF-8, truncated JSON, a top-level array, nesting deeper than the JSON
/// parser allows, a number beyond f64, a 700 KB message) or a record of the topic's shape
/// with a field missing or of the wrong type. None of them may change a metric.
fn malformed(topic: &str, i: usize) -> Vec<u8> {
    let id = format!("malformed:{topic}:{i}");
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    match i % 10 {
        0 => {
            let len = 1 + (random() % 200) as usize;
            // Random bytes that cannot open a JSON object.
            let mut bytes: Vec<u8> = (0..len).map(|_| random() as u8).collect();
            bytes[0] = b'#';
            bytes
        }
        1 => [&br#"{"trip_id":""#[..], &[0xff, 0xfe, 0x80], &br#""}"#[..]].concat(),
        2 => format!(r#"{{"trip_id":"{id}","event_time":"2022-02-01T10:00:00","#).into_bytes(),
        3 => br#"[1, 2, 3]"#.to_vec(),
        4 => format!(r#"{{"trip_id":"{id}","nested":{}1{}}}"#, "[".repeat(300), "]".repeat(300))
            .into_bytes(),
        5 => format!(
            r#"{{"trip_id":"{id}","event_time":"2022-02-01T10:00:00","prediction_time":"2022-02-01T09:50:00","fare_amount":1e999,"prediction":1e999,"duration_min":1e999}}"#
        )
        .into_bytes(),
        6 if i % 1000 == 6 => vec![b'x'; 700 * 1024],
        // A record of the topic's shape with a field missing or of the wrong type.
        _ => {
            let missing_field = i.is_multiple_of(2);
            match (topic, missing_field) {
                ("trips", true) | ("scored", true) => format!(
                    r#"{{"trip_id":"{id}","passenger_count":1,"trip_distance":2.5,"fare_amount":12.0,"total_amount":15.3,"PULocationID":74,"DOLocationID":75,"prediction":11.0}}"#
                ),
                ("trips", false) => format!(
                    r#"{{"trip_id":"{id}","event_time":"2022-02-01T10:00:00","passenger_count":1,"trip_distance":2.5,"fare_amount":"twelve","total_amount":15.3,"PULocationID":74,"DOLocationID":75}}"#
                ),
                ("scored", false) => format!(
                    r#"{{"trip_id":"{id}","event_time":1643709600,"passenger_count":1,"fare_amount":12.0,"prediction":11.0}}"#
                ),
                ("completions", true) => {
                    r#"{"event_time":"2022-02-01T10:00:00","prediction_time":"2022-02-01T09:50:00","duration_min":10.0}"#.to_owned()
                }
                ("completions", false) => format!(
                    r#"{{"trip_id":"{id}","event_time":"2022-02-01T10:00:00","prediction_time":"2022-02-01T09:50:00","duration_min":"ten"}}"#
                ),
                (_, true) => format!(r#"{{"record":"window","window":{{"monitor":"{id}"}}}}"#),
                (_, false) => r#"{"record":"window","revision":"first","row_count":-1}"#.to_owned(),
            }
            .into_bytes()
        }
    }
}

/// Sends [`MALFORMED_PER_TOPIC`] malformed messages to each (label, topic); returns every
/// payload sent.
async fn inject_malformed(brokers: &str, topics: &[(&str, String)]) -> Result<Vec<Vec<u8>>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "1000000")
        .create()?;
    let mut sent = Vec::new();
    for (label, topic) in topics {
        let payloads: Vec<Vec<u8>> = (0..MALFORMED_PER_TOPIC)
            .map(|i| malformed(label, i))
            .collect();
        for chunk in payloads.chunks(1000) {
            // `send_result` queues at once; `send` would queue only when awaited.
            let deliveries = chunk
                .iter()
                .map(|payload| {
                    producer
                        .send_result(FutureRecord::<(), [u8]>::to(topic).payload(payload))
                        .map_err(|(e, _)| e)
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            for delivery in deliveries {
                delivery.await?.map_err(|(e, _)| e)?;
            }
        }
        sent.extend(payloads);
    }
    Ok(sent)
}

/// Golden files of the windows the monitor computes in this run: (file, kind, size, step).
const WINDOW_GOLDENS: [(&str, &str, i64, i64); 3] = [
    (
        "tests/golden/feb-2022-daily.json",
        "tumbling",
        86_400,
        86_400,
    ),
    (
        "tests/golden/feb-2022-hourly.json",
        "tumbling",
        3_600,
        3_600,
    ),
    (
        "tests/golden/feb-2022-sliding-1d-1h.json",
        "sliding",
        86_400,
        3_600,
    ),
];

/// One window's stored metrics against Evidently's: every statistic, flags exactly.
async fn check_window(
    client: &tokio_postgres::Client,
    kind: &str,
    size: i64,
    step: i64,
    case: &Value,
) -> Result<()> {
    let start = chrono::NaiveDateTime::parse_from_str(
        case["start"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S",
    )?;
    let window = format!("{kind} {size}/{step} {start}");
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&kind, &size, &step, &start];
    let stored = client
        .query_opt("SELECT row_count, number_of_missing_values, dataset_drift, number_of_drifted_columns, share_of_missing_values, prediction_drift FROM window_metrics WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3 AND window_start = $4", &key)
        .await?;
    let expected = &case["expected"];
    if expected.is_null() {
        // Evidently refused the whole report; the monitor reports the untestable column.
        stored.with_context(|| format!("{window}: no row"))?;
        let errors: i64 = client
            .query_one("SELECT count(*) FROM column_drift WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3 AND window_start = $4 AND error IS NOT NULL", &key)
            .await?
            .get(0);
        assert!(
            errors > 0,
            "{window}: Evidently raised {}, the monitor reported no untestable column",
            case["expected_error"]
        );
        return Ok(());
    }
    let stored = stored.with_context(|| format!("{window}: no row in window_metrics"))?;
    assert_eq!(
        stored.get::<_, i64>(0),
        expected["row_count"].as_i64().unwrap(),
        "{window}: rows"
    );
    assert_eq!(
        stored.get::<_, i64>(1),
        expected["number_of_missing_values"].as_i64().unwrap(),
        "{window}: missing cells"
    );
    assert_eq!(
        stored.get::<_, bool>(2),
        expected["dataset_drift"].as_bool().unwrap(),
        "{window}: dataset drift"
    );
    assert_eq!(
        stored.get::<_, i64>(3),
        expected["number_of_drifted_columns"].as_i64().unwrap(),
        "{window}: drifted columns"
    );
    assert!(
        close(
            expected["share_of_missing_values"].as_f64().unwrap(),
            stored.get::<_, f64>(4)
        ),
        "{window}: missing share"
    );
    let prediction: Option<f64> = stored.get(5);
    let golden_prediction = golden_f64(&expected["prediction_drift"]["drift_score"]);
    assert!(
        match (golden_prediction, prediction) {
            (Some(e), Some(a)) => close(e, a),
            (None, None) => true,
            _ => false,
        },
        "{window}: prediction drift {prediction:?} vs {golden_prediction:?}"
    );
    for column in expected["columns"].as_array().unwrap() {
        let name = column["column"].as_str().unwrap();
        let stored = client
            .query_one("SELECT stattest, score, drift_detected, threshold FROM column_drift WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3 AND window_start = $4 AND column_name = $5", &[&kind, &size, &step, &start, &name])
            .await
            .with_context(|| format!("{window}: no drift row for {name}"))?;
        assert_eq!(
            stored.get::<_, String>(0),
            column["stattest"].as_str().unwrap(),
            "{window} {name}: test"
        );
        assert_eq!(
            stored.get::<_, bool>(2),
            column["drift_detected"].as_bool().unwrap(),
            "{window} {name}: flag"
        );
        assert_eq!(
            stored.get::<_, f64>(3),
            column["threshold"].as_f64().unwrap(),
            "{window} {name}: threshold"
        );
        let score: Option<f64> = stored.get(1);
        let expected_score = golden_f64(&column["drift_score"]);
        assert!(
            match (expected_score, score) {
                (Some(e), Some(a)) => close(e, a),
                (None, None) => true,
                _ => false,
            },
            "{window} {name}: score {score:?} vs Evidently {expected_score:?}"
        );
    }
    let median: Option<f64> = client
        .query_one("SELECT value FROM column_quantiles WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3 AND window_start = $4 AND column_name = 'fare_amount' AND quantile = 0.5", &key)
        .await?
        .get(0);
    let expected_median = golden_f64(&expected["quantiles"][0]["value"]);
    assert!(
        match (expected_median, median) {
            (Some(e), Some(a)) => close(e, a),
            (None, None) => true,
            _ => false,
        },
        "{window}: median fare {median:?} vs {expected_median:?}"
    );
    Ok(())
}

/// Per day and pickup borough, the stored segment drift against `feb-2022-segments.json`.
async fn check_segments(client: &tokio_postgres::Client) -> Result<()> {
    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("tests/golden/feb-2022-segments.json"),
    )?)?;
    let cases = goldens["cases"].as_array().context("golden cases")?;
    let daily = "WHERE window_kind = 'tumbling' AND window_size_seconds = 86400 \
                 AND window_start = $1 AND dimension = 'pickup_borough' AND segment = $2";
    let mut tested = 0;
    for case in cases {
        let start = chrono::NaiveDateTime::parse_from_str(
            case["start"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S",
        )?;
        let segment = case["segment"].as_str().unwrap();
        let what = case["name"].as_str().unwrap();
        let stored = client
            .query_opt(
                &format!("SELECT row_count, reference_rows, too_small, number_of_missing_values, dataset_drift, number_of_drifted_columns, prediction_drift FROM segment_drift {daily}"),
                &[&start, &segment],
            )
            .await?;
        if case["row_count"].as_i64() == Some(0) {
            assert!(stored.is_none(), "{what}: no trips, yet a segment row");
            continue;
        }
        let stored = stored.with_context(|| format!("{what}: no segment_drift row"))?;
        assert_eq!(
            stored.get::<_, i64>(0),
            case["row_count"].as_i64().unwrap(),
            "{what}: rows"
        );
        assert_eq!(
            stored.get::<_, i64>(1),
            case["reference_rows"].as_i64().unwrap(),
            "{what}: reference rows"
        );
        let too_small = case["too_small"].as_bool().unwrap();
        assert_eq!(stored.get::<_, bool>(2), too_small, "{what}: too small");
        // A too-small segment's missing values are recorded next to its counts.
        let expected = if too_small { case } else { &case["expected"] };
        assert_eq!(
            stored.get::<_, i64>(3),
            expected["number_of_missing_values"].as_i64().unwrap(),
            "{what}: missing cells"
        );
        if too_small {
            continue;
        }
        tested += 1;
        assert_eq!(
            stored.get::<_, Option<bool>>(4),
            expected["dataset_drift"].as_bool(),
            "{what}: dataset drift"
        );
        assert_eq!(
            stored.get::<_, Option<i64>>(5),
            expected["number_of_drifted_columns"].as_i64(),
            "{what}: drifted columns"
        );
        assert_close(
            &format!("{what}: prediction drift"),
            &expected["prediction_drift"]["drift_score"],
            stored.get(6),
        );
        for column in expected["columns"].as_array().unwrap() {
            let name = column["column"].as_str().unwrap();
            let row = client
                .query_one(
                    &format!("SELECT stattest, score, drift_detected FROM segment_column_drift {daily} AND column_name = $3"),
                    &[&start, &segment, &name],
                )
                .await
                .with_context(|| format!("{what}: no drift row for {name}"))?;
            assert_eq!(
                row.get::<_, String>(0),
                column["stattest"].as_str().unwrap(),
                "{what} {name}: test"
            );
            assert_eq!(
                row.get::<_, bool>(2),
                column["drift_detected"].as_bool().unwrap(),
                "{what} {name}: flag"
            );
            assert_close(
                &format!("{what} {name}"),
                &column["drift_score"],
                row.get(1),
            );
        }
    }
    assert!(tested >= 100, "only {tested} segments were tested");
    eprintln!("feb-2022-segments.json: {tested} (day, borough) segments equal Evidently's");
    Ok(())
}

fn assert_close(what: &str, expected: &Value, actual: Option<f64>) {
    assert_close_scaled(what, expected, actual, 0.0);
}

/// Within 1e-12 relative to the larger of the value and `scale`. The rows are summed in the
/// order their truths arrived (which varies with the partitions' interleaving), not in the
/// file's order, so quantities that cancel are compared at the scale of their terms: R² as
/// `1 − SSres/SStot` at the scale of 1, the mean error at the scale of the MAE.
fn assert_close_scaled(what: &str, expected: &Value, actual: Option<f64>, scale: f64) {
    match (golden_f64(expected), actual) {
        (Some(e), Some(a)) => assert!(
            e == a || (e - a).abs() <= 1e-12 * e.abs().max(a.abs()).max(scale),
            "{what}: {a} vs the golden {e}"
        ),
        (None, None) => {}
        (e, a) => panic!("{what}: {a:?} vs the golden {e:?}"),
    }
}

/// The scale a regression metric's rounding is judged at (see [`assert_close_scaled`]).
fn metric_scale(name: &str, metrics: &Value) -> f64 {
    match name {
        "r2" => 1.0,
        "mean_error" => metrics["mae"].as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Waits for the 28 daily performance rows, then compares them with the golden file.
async fn check_performance(client: &tokio_postgres::Client, log_dir: &Path) -> Result<()> {
    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("tests/golden/feb-2022-performance.json"),
    )?)?;
    let cases = goldens["cases"].as_array().context("golden cases")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let daily =
        "FROM window_performance WHERE window_kind = 'tumbling' AND window_size_seconds = 86400";
    loop {
        let complete: i64 = client
            .query_one(
                &format!("SELECT count(*) {daily} AND window_start < '2022-03-01'"),
                &[],
            )
            .await?
            .get(0);
        let labelled: i64 = client
            .query_one(
                &format!("SELECT coalesce(sum(labelled_rows), 0)::bigint {daily} AND window_start < '2022-03-01'"),
                &[],
            )
            .await?
            .get(0);
        let expected: i64 = cases
            .iter()
            .map(|c| c["expected"]["labelled_rows"].as_i64().unwrap())
            .sum();
        if complete == 28 && labelled == expected {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{complete} of 28 daily performance rows, {labelled} of {expected} labelled rows; logs in {}",
                log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for case in cases {
        let start = chrono::NaiveDateTime::parse_from_str(
            case["start"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S",
        )?;
        let expected = &case["expected"];
        let row = client
            .query_one(
                &format!("SELECT predictions, labelled_rows, mae, rmse, mape, r2, mean_error, mape_rows, error_lower_bound, error_upper_bound, error_share_outside_quantiles, error_share_outside_iqr {daily} AND window_start = $1"),
                &[&start],
            )
            .await?;
        let day = case["start"].as_str().unwrap();
        assert_eq!(
            row.get::<_, i64>(0),
            expected["predictions"].as_i64().unwrap(),
            "{day}: predictions"
        );
        assert_eq!(
            row.get::<_, i64>(1),
            expected["labelled_rows"].as_i64().unwrap(),
            "{day}: labelled rows"
        );
        for (i, name) in ["mae", "rmse", "mape", "r2", "mean_error"]
            .iter()
            .enumerate()
        {
            assert_close_scaled(
                &format!("{day}: {name}"),
                &expected[*name],
                row.get(i + 2),
                metric_scale(name, expected),
            );
        }
        assert_eq!(
            row.get::<_, Option<i64>>(7),
            expected["mape_rows"].as_i64(),
            "{day}: mape rows"
        );
        for (i, name) in [
            "error_lower_bound",
            "error_upper_bound",
            "error_share_outside_quantiles",
            "error_share_outside_iqr",
        ]
        .iter()
        .enumerate()
        {
            assert_close(&format!("{day}: {name}"), &expected[*name], row.get(i + 8));
        }
        let segments = client
            .query(
                "SELECT value, predictions, labelled_rows, too_small, mae, rmse, mape, r2, mean_error
                 FROM segment_performance
                 WHERE window_kind = 'tumbling' AND window_size_seconds = 86400
                   AND window_start = $1 AND dimension = 'pickup_borough' ORDER BY value",
                &[&start],
            )
            .await?;
        let golden = expected["segments"]
            .as_object()
            .context("golden segments")?;
        assert_eq!(
            segments.len(),
            golden.len(),
            "{day}: one row per borough with trips"
        );
        for segment in &segments {
            let borough: String = segment.get(0);
            let want = &golden[&borough];
            let what = format!("{day} {borough}");
            assert_eq!(
                segment.get::<_, i64>(1),
                want["predictions"].as_i64().unwrap(),
                "{what}: predictions"
            );
            assert_eq!(
                segment.get::<_, i64>(2),
                want["labelled_rows"].as_i64().unwrap(),
                "{what}: labelled"
            );
            assert_eq!(
                segment.get::<_, bool>(3),
                want.get("mae").is_none(),
                "{what}: too small"
            );
            if want.get("mae").is_some() {
                for (i, name) in ["mae", "rmse", "mape", "r2", "mean_error"]
                    .iter()
                    .enumerate()
                {
                    assert_close_scaled(
                        &format!("{what}: {name}"),
                        &want[*name],
                        segment.get(i + 4),
                        metric_scale(name, want),
                    );
                }
            }
        }
    }
    eprintln!("feb-2022-performance.json: 28 days and their boroughs equal scikit-learn's");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn february_replay_matches_evidently_in_postgres() -> Result<()> {
    let Some(Services {
        brokers,
        database_url,
    }) = Services::from_env()
    else {
        eprintln!("skipped: set KAFKA_BROKERS and DATABASE_URL (scripts/services.sh up) to run the end-to-end test");
        return Ok(());
    };
    let run = format!("e2e{}", std::process::id());
    let topic = |name: &str| format!("{run}.{name}");
    let (trips, scored, metrics_topic, dlq, completions) = (
        topic("trips"),
        topic("trips.scored"),
        topic("metrics"),
        topic("deadletter"),
        topic("completions"),
    );
    let db_name = format!("sw_{run}_{}", chrono::Utc::now().timestamp());
    let db_url = fresh_database(&database_url, &db_name).await?;
    let log_dir = std::env::temp_dir().join(format!("streamwatch-{run}"));
    std::fs::create_dir_all(&log_dir)?;
    eprintln!("stage logs in {}", log_dir.display());
    // The shipped taxi spec, with the three window shapes and absolute paths.
    let examples = repo_root().join("examples/specs");
    let spec = std::fs::read_to_string(examples.join("taxi.toml"))?
        .replace(r#"windows = ["1d"]"#, r#"windows = ["1d", "1h", "1d/1h"]"#)
        .replace("../../", &format!("{}/", repo_root().display()));
    let spec_path = log_dir.join("taxi.toml");
    std::fs::write(&spec_path, spec)?;

    let common = |group: &str| {
        vec![
            "--brokers".to_owned(),
            brokers.clone(),
            "--group".to_owned(),
            format!("{run}-{group}"),
        ]
    };
    let strings = |v: Vec<String>| v;
    let sink_args = strings(
        [
            common("sink"),
            vec![
                "--topic".into(),
                metrics_topic.clone(),
                "--dead-letter-topic".into(),
                dlq.clone(),
                "--database-url".into(),
                db_url.clone(),
            ],
        ]
        .concat(),
    );
    let monitor_args = strings(
        [
            common("monitor"),
            vec![
                "--input-topic".into(),
                scored.clone(),
                "--output-topic".into(),
                metrics_topic.clone(),
                "--dead-letter-topic".into(),
                dlq.clone(),
                "--spec".into(),
                spec_path.display().to_string(),
                "--completions-topic".into(),
                completions.clone(),
                // The last windows close only through the replay's end-of-stream markers
                // (forwarded by the scorer): were one lost, the test would time out.
                "--idle-timeout".into(),
                "1h".into(),
            ],
        ]
        .concat(),
    );
    let scorer_args = strings(
        [
            common("scorer"),
            vec![
                "--input-topic".into(),
                trips.clone(),
                "--output-topic".into(),
                scored.clone(),
                "--dead-letter-topic".into(),
                dlq.clone(),
                "--model".into(),
                "models/trip-duration-linear.json".into(),
            ],
        ]
        .concat(),
    );

    let mut sink = spawn(
        "sink",
        &[&["run"][..], &as_refs(&sink_args)].concat(),
        &log_dir,
    )?;
    let mut monitor = spawn(
        "monitor",
        &[&["run"][..], &as_refs(&monitor_args)].concat(),
        &log_dir,
    )?;

    let mut scorer = spawn(
        "scorer",
        &[&["run"][..], &as_refs(&scorer_args)].concat(),
        &log_dir,
    )?;

    // Malformed events on both input topics: they must reach the dead-letter topic.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    for (target, payload) in [
        (&trips, &b"{not json"[..]),
        (&trips, &br#"{"trip_id":"bad:1","event_time":"2022-02-01T10:00:00","passenger_count":1,"trip_distance":2.5,"fare_amount":"twelve","total_amount":15.3,"PULocationID":74,"DOLocationID":75}"#[..]),
        (&scored, &br#"{"trip_id":"bad:2","prediction":1.0}"#[..]),
    ] {
        producer
            .send(FutureRecord::<(), [u8]>::to(target).payload(payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }
    // A batch in the scorer's framing whose two events are malformed: each goes on its own.
    let mut batch = Vec::new();
    for event in [
        &br#"{"trip_id":"bad:3","event_time":"2022-02-31T10:00:00","prediction":1.0}"#[..],
        br#"{"trip_id":"bad:4","event_time":"2022-02-01T10:00:00","prediction":"#,
    ] {
        streamwatch_common::batch::push_event(&mut batch, event);
    }
    producer
        .send(
            FutureRecord::<(), [u8]>::to(&scored)
                .payload(&batch)
                .partition(0)
                .headers(streamwatch_common::batch::batch_headers()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;

    // 10,000 malformed messages into each input topic while the month is replayed.
    let injection = tokio::spawn({
        let brokers = brokers.clone();
        let topics = [
            ("trips", trips.clone()),
            ("scored", scored.clone()),
            ("completions", completions.clone()),
            ("metrics", metrics_topic.clone()),
        ];
        async move { inject_malformed(&brokers, &topics).await }
    });
    let replay = Command::new(bin_dir().join("producer"))
        .args([
            "replay",
            "--file",
            "data/green_tripdata_2022-02.parquet",
            "--from",
            "2022-02-01",
            "--to",
            "2022-03-01",
            "--topic",
            &trips,
            "--completions-topic",
            &completions,
            "--brokers",
            &brokers,
        ])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()?;
    assert!(replay.status.success(), "producer failed: {replay:?}");
    let injected = injection.await??;
    let summary = String::from_utf8_lossy(&replay.stdout);
    eprintln!("producer: {summary}");
    assert!(
        summary.contains("69376"),
        "the producer reports the 69,376 February events: {summary}"
    );

    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("tests/golden/feb-2022-daily.json"),
    )?)?;
    let cases = goldens["cases"].as_array().context("golden cases")?;
    assert_eq!(cases.len(), 28);
    let expected_windows = WINDOW_GOLDENS
        .iter()
        .map(|(file, kind, size, step)| {
            let goldens: Value =
                serde_json::from_str(&std::fs::read_to_string(repo_root().join(file))?)?;
            let cases = goldens["cases"].as_array().context("golden cases")?.clone();
            Ok((*file, *kind, *size, *step, cases))
        })
        .collect::<Result<Vec<_>>>()?;

    // Wait until every window Evidently has is stored with all its rows (the last windows
    // are emitted once every partition has ended).
    let client = connect(&db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        for stage in [&mut sink, &mut monitor, &mut scorer] {
            stage.check_running()?;
        }
        let mut incomplete = 0;
        for (_, kind, size, step, cases) in &expected_windows {
            let stored: std::collections::HashMap<chrono::NaiveDateTime, i64> = client
                .query(
                    "SELECT window_start, row_count FROM window_metrics WHERE window_kind = $1 AND window_size_seconds = $2 AND window_step_seconds = $3",
                    &[kind, size, step],
                )
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                .unwrap_or_default();
            incomplete += cases
                .iter()
                .filter(|case| {
                    let start = chrono::NaiveDateTime::parse_from_str(
                        case["start"].as_str().unwrap(),
                        "%Y-%m-%dT%H:%M:%S",
                    )
                    .unwrap();
                    match (stored.get(&start), case["expected"]["row_count"].as_i64()) {
                        (Some(rows), Some(expected)) => *rows != expected,
                        (Some(_), None) => false,
                        (None, _) => true,
                    }
                })
                .count();
        }
        if incomplete == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{incomplete} windows missing or incomplete after 240 s; logs in {}",
                log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Compare with Evidently's golden values, day by day.
    let course_view = client
        .query("SELECT \"timestamp\", prediction_drift, num_drifted_columns, share_missing_values FROM dummy_metrics ORDER BY 1", &[])
        .await?;
    assert_eq!(course_view.len(), 28, "one course row per February day");
    for (case, row) in cases.iter().zip(&course_view) {
        let expected = &case["expected"];
        let day: chrono::NaiveDateTime = row.get(0);
        assert_eq!(
            chrono::NaiveDateTime::parse_from_str(
                case["start"].as_str().unwrap(),
                "%Y-%m-%dT%H:%M:%S"
            )?,
            day
        );
        let prediction_drift: Option<f64> = row.get(1);
        let drifted: i32 = row.get(2);
        let missing: Option<f64> = row.get(3);
        let golden_prediction = golden_f64(&expected["prediction_drift"]["drift_score"]);
        assert!(
            close(golden_prediction.unwrap(), prediction_drift.unwrap()),
            "{day}: prediction drift {prediction_drift:?} vs {golden_prediction:?}"
        );
        assert_eq!(
            i64::from(drifted),
            expected["number_of_drifted_columns"].as_i64().unwrap(),
            "{day}: drifted columns"
        );
        assert!(
            close(
                expected["share_of_missing_values"].as_f64().unwrap(),
                missing.unwrap()
            ),
            "{day}: missing share"
        );
    }
    for (file, kind, size, step) in WINDOW_GOLDENS {
        let goldens: Value =
            serde_json::from_str(&std::fs::read_to_string(repo_root().join(file))?)?;
        let cases = goldens["cases"].as_array().context("golden cases")?;
        for case in cases {
            check_window(&client, kind, size, step, case).await?;
        }
        eprintln!("{file}: {} windows equal Evidently's", cases.len());
    }

    // Drift per pickup borough and day, streamed through segment sub-panes, equals
    // Evidently's report on both frames filtered to the borough.
    check_segments(&client).await?;

    // Model performance per pickup day, overall and per borough, equals scikit-learn's.
    check_performance(&client, &log_dir).await?;

    // The spec's model is explained: each day's feature contributions equal NumPy's.
    let contributions: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("tests/golden/feb-2022-contributions.json"),
    )?)?;
    for case in contributions["cases"].as_array().context("golden cases")? {
        let day = chrono::NaiveDateTime::parse_from_str(
            case["start"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S",
        )?;
        let rows = client
            .query(
                "SELECT feature, mean_abs_contribution, drift_detected FROM feature_contributions
                 WHERE window_kind = 'tumbling' AND window_size_seconds = 86400 AND window_start = $1
                 ORDER BY feature",
                &[&day],
            )
            .await?;
        let mut expected: Vec<&Value> = case["features"].as_array().unwrap().iter().collect();
        expected.sort_by_key(|f| f["feature"].as_str().unwrap().to_owned());
        assert_eq!(
            rows.len(),
            expected.len(),
            "{day}: one row per model feature"
        );
        for (row, want) in rows.iter().zip(expected) {
            let feature: String = row.get(0);
            assert_eq!(feature, want["feature"].as_str().unwrap());
            let mean_abs = want["mean_abs_contribution"].as_f64().unwrap();
            assert!(
                close(mean_abs, row.get::<_, Option<f64>>(1).unwrap()),
                "{day} {feature}: mean |contribution|"
            );
            assert_eq!(
                row.get::<_, bool>(2),
                want["drift_detected"].as_bool().unwrap()
            );
        }
    }

    // The spec's alert rule on prediction drift is in effect exactly on the days Evidently
    // flags: it fires at the first flagged day of each run and resolves at the next unflagged.
    let transitions: Vec<(chrono::NaiveDateTime, String)> = client
        .query(
            "SELECT window_start, state FROM alerts WHERE rule = 'prediction drift'
               AND window_kind = 'tumbling' AND window_size_seconds = 86400 ORDER BY window_start",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut firing = false;
    for case in cases {
        let day = chrono::NaiveDateTime::parse_from_str(
            case["start"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S",
        )?;
        if let Some((_, state)) = transitions.iter().find(|(start, _)| *start == day) {
            firing = state == "firing";
        }
        let flagged = case["expected"]["prediction_drift"]["drift_detected"]
            .as_bool()
            .unwrap();
        assert_eq!(
            firing, flagged,
            "{day}: alert in effect vs Evidently's flag ({transitions:?})"
        );
    }

    // Every Grafana panel's SQL, macros expanded, returns rows.
    let from = chrono::NaiveDate::from_ymd_opt(2022, 2, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let to = chrono::NaiveDate::from_ymd_opt(2022, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let mut panels = 0;
    for entry in std::fs::read_dir(repo_root().join("grafana/dashboards"))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dashboard = std::fs::read_to_string(&path)?;
        // The dashboard's saved range, as Grafana opens it (service health: the last hour).
        let (from, to) =
            streamwatch_sink::grafana::time_range(&dashboard, chrono::Utc::now().naive_utc())
                .unwrap_or((from, to));
        // Template variables in order (each may use the ones before): its query must offer
        // values; the saved one is taken when offered, else the first.
        let mut values: Vec<(String, String)> = Vec::new();
        for variable in streamwatch_sink::grafana::template_variables(&dashboard)? {
            let Some(sql) = &variable.sql else {
                continue;
            };
            let vars: Vec<(&str, &str)> = values
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let sql = streamwatch_sink::grafana::expand_macros(sql, from, to, &vars);
            let options: Vec<String> = client
                .query(sql.as_str(), &[])
                .await
                .with_context(|| {
                    format!("variable {} of {}: {sql}", variable.name, path.display())
                })?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()
                .with_context(|| format!("variable {}: values are text", variable.name))?;
            let value = variable
                .current
                .clone()
                .filter(|c| options.contains(c))
                .or_else(|| options.first().cloned())
                .with_context(|| {
                    format!(
                        "variable {} of {} has no values: {sql}",
                        variable.name,
                        path.display()
                    )
                })?;
            values.push((variable.name.clone(), variable.sql_value(&value)));
        }
        let vars: Vec<(&str, &str)> = values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        for query in streamwatch_sink::grafana::panel_queries(&dashboard)? {
            if query.panel_title.starts_with("variable ") {
                continue; // ran above
            }
            let sql = streamwatch_sink::grafana::expand_macros(&query.sql, from, to, &vars);
            let rows = client.query(sql.as_str(), &[]).await.with_context(|| {
                format!("panel {:?} of {}: {sql}", query.panel_title, path.display())
            })?;
            assert!(
                !rows.is_empty(),
                "panel {:?} of {} returned no rows ({values:?}): {sql}",
                query.panel_title,
                path.display()
            );
            panels += 1;
        }
    }
    assert!(
        panels >= 20,
        "the dashboards have at least twenty panels, found {panels}"
    );

    // Out of order after the end of the month: a trip of February 1st is past every window's
    // update horizon, so each window shape drops it and reports it; a trip of the last hour
    // is within the horizon and re-emits its windows with one more row, once its writer ends
    // the stream again (the monitor's idle timeout is an hour).
    let late_trip = |id: &str, time: &str| {
        format!(
            r#"{{"trip_id":"{id}","event_time":"{time}","lpep_pickup_datetime":"{time}","passenger_count":1,"trip_distance":2.5,"fare_amount":12.0,"total_amount":15.3,"PULocationID":74,"DOLocationID":75}}"#
        )
    };
    let last_hour: (i64, i64) = client
        .query_one(
            "SELECT revision, row_count FROM window_metrics WHERE window_kind = 'tumbling' AND window_size_seconds = 3600 AND window_start = '2022-02-28T23:00:00'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))?;
    for (id, time) in [
        ("late:too-late", "2022-02-01T10:00:00"),
        ("late:in-horizon", "2022-02-28T23:50:00"),
    ] {
        producer
            .send(
                FutureRecord::to(&trips)
                    .key(id)
                    .payload(&late_trip(id, time)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let partitions = partition_count(&brokers, &trips)? as usize;
    let markers = queue_markers(&producer, &trips, partitions, &Marker::default()).await?;
    delivered(markers).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dropped = client
            .query_one("SELECT count(*) FROM late_events", &[])
            .await?
            .get::<_, i64>(0);
        let now: (i64, i64) = client
            .query_one(
                "SELECT revision, row_count FROM window_metrics WHERE window_kind = 'tumbling' AND window_size_seconds = 3600 AND window_start = '2022-02-28T23:00:00'",
                &[],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))?;
        if dropped == 3 && now == (last_hour.0 + 1, last_hour.1 + 1) {
            break;
        }
        if Instant::now() > deadline {
            bail!("late events: {dropped} stored (want 3, one per window shape), last hour {now:?} (was {last_hour:?}); logs in {}", log_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let per_window: Vec<(String, i64, i64)> = client
        .query(
            "SELECT window_kind, window_size_seconds, count(*) FROM window_late_events
             WHERE late_events_dropped = 1 GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        per_window,
        [
            ("sliding".to_owned(), 86_400, 24),
            ("tumbling".to_owned(), 3_600, 1),
            ("tumbling".to_owned(), 86_400, 1),
        ],
        "the dropped trip counts in every window that contains it"
    );

    // Malformed events were dead-lettered with their reasons and original bytes, by the
    // stage that read them: the five above and the 40,000 injected (whose metrics, checked
    // above, equal the clean goldens).
    let letters = dead_letters(&brokers, &dlq, 5 + injected.len()).await?;
    let per_stage = |name: &str| letters.iter().filter(|(stage, ..)| stage == name).count();
    assert_eq!(
        (per_stage("scorer"), per_stage("monitor"), per_stage("sink")),
        (
            2 + MALFORMED_PER_TOPIC,
            3 + 2 * MALFORMED_PER_TOPIC,
            MALFORMED_PER_TOPIC
        ),
        "dead letters per stage"
    );
    assert!(
        letters.iter().all(|(_, reason, _)| !reason.is_empty()),
        "every dead letter has a reason"
    );
    let mut original: Vec<&[u8]> = injected.iter().map(Vec::as_slice).collect();
    let mut stored: Vec<&[u8]> = letters
        .iter()
        .map(|(_, _, payload)| payload.as_slice())
        .filter(|payload| {
            !payload.starts_with(b"{not json") && !payload.starts_with(br#"{"trip_id":"bad:"#)
        })
        .collect();
    original.sort();
    stored.sort();
    assert!(
        original == stored,
        "the dead letters carry the injected bytes unchanged"
    );
    assert!(
        letters
            .iter()
            .any(|(stage, reason, _)| stage == "scorer" && reason.contains("fare_amount")),
        "a scorer reason names the field"
    );
    assert!(
        letters
            .iter()
            .any(|(stage, reason, _)| stage == "monitor" && reason.contains("event_time")),
        "a monitor reason names the field"
    );
    let batched: Vec<(&str, &[u8])> = letters
        .iter()
        .filter(|(_, reason, _)| reason.contains("of a batch"))
        .map(|(_, reason, payload)| (reason.as_str(), payload.as_slice()))
        .collect();
    assert_eq!(
        batched.len(),
        2,
        "one dead letter per malformed event of the batch"
    );
    assert!(
        batched
            .iter()
            .any(|(reason, payload)| reason.starts_with("event 0 of a batch")
                && payload.starts_with(br#"{"trip_id":"bad:3""#)),
        "{batched:?}"
    );
    assert!(
        batched
            .iter()
            .any(|(reason, payload)| reason.starts_with("event 1 of a batch")
                && payload.starts_with(br#"{"trip_id":"bad:4""#)),
        "{batched:?}"
    );

    for stage in [scorer, monitor, sink] {
        stage.terminate()?;
    }
    drop(client);
    drop_database(&database_url, &db_name).await?;
    Ok(())
}
