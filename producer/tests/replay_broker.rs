//! Against a real broker (KAFKA_BROKERS): replays part of February 2022 (alone and with its
//! completions) and feeds live lines, then reads the topics back. Skipped with a notice when
//! KAFKA_BROKERS is unset.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use chrono::NaiveDateTime;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::parquet::record::Field;
use rdkafka::message::Message;
use serde_json::Value;
use streamwatch_common::events::{format_timestamp, parse_timestamp};

mod support;
use support::{consume, create_topic, dlq_reason, kafka, producer, text, unique};

#[tokio::test]
async fn replays_february_in_event_time_order() {
    let Some(kafka) = kafka() else { return };
    let topic = unique("trips");
    create_topic(&kafka, &topic).await;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/green_tripdata_2022-02.parquet");
    let output = producer()
        .args([
            "replay",
            "--limit",
            "500",
            "--topic",
            &topic,
            "--brokers",
            &kafka.brokers,
        ])
        .arg("--file")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("replay events=500 already_published=0 sent=500 delivered=500 failed=0"),
        "{stdout}"
    );

    let (events, markers) = consume(&kafka, &topic, 500, |message| {
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        (key, event)
    })
    .await;
    assert_eq!(
        markers, 1,
        "the replay ends its one partition with a marker"
    );
    let mut previous = None;
    for (key, event) in &events {
        assert_eq!(event["trip_id"], Value::String(key.clone()));
        let time = parse_timestamp(event["event_time"].as_str().unwrap()).unwrap();
        assert!(
            previous <= Some(time),
            "{key} arrived out of event-time order"
        );
        previous = Some(time);
    }
    let mut keys: Vec<&String> = events.iter().map(|(key, _)| key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 500);

    let expected: Value =
        serde_json::from_str(include_str!("fixtures/green_tripdata_2022-02_row0.json")).unwrap();
    let (_, row0) = events
        .iter()
        .find(|(key, _)| key == "green_tripdata_2022-02:0")
        .expect("row 0 is among the first 500 trips");
    assert_eq!(row0, &expected);
}

/// Pickup and dropoff of the rows picked up in `[from, to)`, by trip id, read with the parquet
/// crate's record API (not the producer's Arrow reader).
fn trips_between(
    path: &Path,
    from: &str,
    to: &str,
) -> BTreeMap<String, (NaiveDateTime, NaiveDateTime)> {
    let (from, to) = (parse_timestamp(from).unwrap(), parse_timestamp(to).unwrap());
    let time = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros)
            .unwrap()
            .naive_utc()
    };
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let mut trips = BTreeMap::new();
    for (index, row) in reader.get_row_iter(None).unwrap().enumerate() {
        let row = row.unwrap();
        let column = |wanted: &str| {
            row.get_column_iter()
                .find_map(|(name, field)| match field {
                    Field::TimestampMicros(micros) if name == wanted => Some(time(*micros)),
                    _ => None,
                })
                .unwrap()
        };
        let pickup = column("lpep_pickup_datetime");
        if from <= pickup && pickup < to {
            let dropoff = column("lpep_dropoff_datetime");
            trips.insert(format!("{stem}:{index}"), (pickup, dropoff));
        }
    }
    trips
}

#[tokio::test]
async fn replays_completions_in_event_time_order() {
    let Some(kafka) = kafka() else { return };
    let trips_topic = unique("trips");
    let completions_topic = unique("completions");
    create_topic(&kafka, &trips_topic).await;
    create_topic(&kafka, &completions_topic).await;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/green_tripdata_2022-02.parquet");
    let (from, to) = ("2022-02-01T08:00:00", "2022-02-01T09:00:00");
    let expected = trips_between(&data, from, to);
    let n = expected.len();
    assert!(n > 50, "{n} trips between {from} and {to}");

    let output = producer()
        .args([
            "replay",
            "--from",
            from,
            "--to",
            to,
            "--topic",
            &trips_topic,
            "--completions-topic",
            &completions_topic,
            "--brokers",
            &kafka.brokers,
        ])
        .arg("--file")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "replay events={n} already_published=0 sent={n} delivered={n} failed=0 "
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            " completions={n} completions_already_published=0 completions_sent={n} \
             completions_delivered={n} completions_failed=0 no_completion_time=0 "
        )),
        "{stdout}"
    );

    let parse = |message: &rdkafka::message::BorrowedMessage<'_>| {
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(event["trip_id"], Value::String(key.clone()));
        let time = parse_timestamp(event["event_time"].as_str().unwrap()).unwrap();
        (key, time, event)
    };
    let (trips, trip_markers) = consume(&kafka, &trips_topic, n, parse).await;
    let (completions, completion_markers) = consume(&kafka, &completions_topic, n, parse).await;
    assert_eq!(
        (trip_markers, completion_markers),
        (1, 1),
        "one marker ends each topic"
    );

    for (name, events) in [("trips", &trips), ("completions", &completions)] {
        assert!(
            events.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name} out of event-time order"
        );
        let ids: Vec<&String> = events.iter().map(|(key, _, _)| key).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert!(
            sorted.into_iter().eq(expected.keys()),
            "{name}: other trip ids"
        );
    }
    for (key, time, _) in &trips {
        assert_eq!(*time, expected[key].0, "{key}");
    }
    for (key, time, event) in &completions {
        let (pickup, dropoff) = expected[key];
        let mut fields: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["duration_min", "event_time", "prediction_time", "trip_id"],
            "{key}"
        );
        assert_eq!(*time, dropoff, "{key}");
        assert_eq!(
            event["prediction_time"].as_str().unwrap(),
            format_timestamp(pickup),
            "{key}"
        );
        // The course's target: (dropoff - pickup).total_seconds() / 60.
        let minutes = (dropoff - pickup).num_seconds() as f64 / 60.0;
        assert_eq!(event["duration_min"].as_f64().unwrap(), minutes, "{key}");
    }
    // Trips picked up before --to still get their completions after it.
    let to = parse_timestamp(to).unwrap();
    assert!(completions.last().unwrap().1 >= to);

    // A few rows of the file: pickup, dropoff and the minutes between them.
    let by_id: BTreeMap<&str, &Value> = completions
        .iter()
        .map(|(key, _, event)| (key.as_str(), event))
        .collect();
    for (row, pickup, dropoff, minutes) in [
        (133, "2022-02-01T08:00:08", "2022-02-01T08:03:38", 3.5),
        (
            136,
            "2022-02-01T08:06:49",
            "2022-02-01T08:26:51",
            1202.0 / 60.0,
        ),
        (62026, "2022-02-01T08:47:00", "2022-02-01T09:14:00", 27.0),
    ] {
        let event = by_id[format!("green_tripdata_2022-02:{row}").as_str()];
        assert_eq!(event["prediction_time"], pickup, "{event}");
        assert_eq!(event["event_time"], dropoff, "{event}");
        assert_eq!(event["duration_min"].as_f64(), Some(minutes), "{event}");
    }
}

#[tokio::test]
async fn live_lines_are_published_or_dead_lettered() {
    let Some(kafka) = kafka() else { return };
    let topic = unique("live");
    let dead = unique("deadletter");
    create_topic(&kafka, &topic).await;
    create_topic(&kafka, &dead).await;
    let mut child = producer()
        .args([
            "live",
            "--topic",
            &topic,
            "--dead-letter-topic",
            &dead,
            "--brokers",
            &kafka.brokers,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = [
        r#"{"trip_id":"t-1","event_time":"2022-02-01T08:00:00","fare_amount":7.5}"#,
        r#"[1,2]"#,
        r#"{"lpep_pickup_datetime":"2022-02-01 08:01:00","fare_amount":9.0}"#,
        r#"{"fare_amount":"#,
        r#"{"trip_id":"t-3","lpep_pickup_datetime":"2022-02-01T08:02:00"}"#,
    ];
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("live events=3 delivered=3 failed=0") && stdout.contains("dead_lettered=2"),
        "{stdout}"
    );

    let (events, markers) = consume(&kafka, &topic, 3, |message| {
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(
            event["trip_id"].as_str().unwrap().as_bytes(),
            message.key().unwrap()
        );
        event
    })
    .await;
    assert_eq!(markers, 0, "live input has no end");
    assert_eq!(events[0]["trip_id"], "t-1");
    assert!(events[1]["trip_id"].as_str().unwrap().starts_with("live:"));
    assert_eq!(events[1]["event_time"], "2022-02-01T08:01:00");
    assert_eq!(events[2]["event_time"], "2022-02-01T08:02:00");

    let (rejected, _) = consume(&kafka, &dead, 2, |message| {
        (dlq_reason(message), text(message))
    })
    .await;
    assert_eq!(
        rejected[0].0,
        "line 2: expected a JSON object, got an array"
    );
    assert_eq!(rejected[0].1, lines[1]);
    assert!(
        rejected[1]
            .0
            .starts_with("line 4: invalid JSON: EOF while parsing"),
        "{}",
        rejected[1].0
    );
    assert_eq!(rejected[1].1, lines[3]);
}
