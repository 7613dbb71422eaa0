//! Against a real broker (KAFKA_BROKERS): replays part of February 2022 and feeds live lines,
//! then reads the topics back. Skipped with a notice when KAFKA_BROKERS is unset.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use rdkafka::message::Message;
use serde_json::Value;
use streamwatch_common::events::parse_timestamp;

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
        stdout.contains("replay events=500 delivered=500 failed=0"),
        "{stdout}"
    );

    let events = consume(&kafka, &topic, 500, |message| {
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        (key, event)
    })
    .await;
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

    let events = consume(&kafka, &topic, 3, |message| {
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(
            event["trip_id"].as_str().unwrap().as_bytes(),
            message.key().unwrap()
        );
        event
    })
    .await;
    assert_eq!(events[0]["trip_id"], "t-1");
    assert!(events[1]["trip_id"].as_str().unwrap().starts_with("live:"));
    assert_eq!(events[1]["event_time"], "2022-02-01T08:01:00");
    assert_eq!(events[2]["event_time"], "2022-02-01T08:02:00");

    let rejected = consume(&kafka, &dead, 2, |message| {
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
