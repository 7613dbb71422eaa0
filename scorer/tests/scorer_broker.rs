//! Runs the scorer service in-process against a real broker (KAFKA_BROKERS) on fresh topics:
//! valid events come out scored, invalid ones land in the dead-letter topic with their
//! reason, end-of-stream markers reach every output partition after the events before them,
//! and cancelling the token stops the service cleanly with its offsets committed.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use streamwatch_common::batch;
use streamwatch_common::end_of_stream::{is_end_of_stream, marker_headers, Marker};
use streamwatch_common::events::{HEADER_DLQ_ORIGIN, HEADER_DLQ_REASON, HEADER_DLQ_STAGE};
use streamwatch_common::telemetry::Readiness;
use streamwatch_scorer::config::RunArgs;
use streamwatch_scorer::{service, LinearModel};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    run: RunArgs,
}

const PARTITIONS: i32 = 2;
const TIMEOUT: Duration = Duration::from_secs(60);

fn valid_event(i: usize) -> String {
    format!(
        r#"{{"VendorID":2,"lpep_pickup_datetime":"2022-02-01T00:{i:02}:00","passenger_count":{},"trip_distance":{}.5,"fare_amount":{}.0,"ehail_fee":null,"total_amount":{}.3,"PULocationID":{},"DOLocationID":{},"trip_id":"test:{i}","event_time":"2022-02-01T00:{i:02}:00"}}"#,
        if i.is_multiple_of(3) {
            "null".to_owned()
        } else {
            "1.0".to_owned()
        },
        i,
        10 + i,
        12 + i,
        70 + i,
        40 + i
    )
}

/// Invalid payloads, their keys and the reason the scorer must give.
fn invalid_events() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let scored = valid_event(1).replacen('}', r#","prediction":1.0,"model_version":"x"}"#, 1);
    vec![
        (
            "bad:type",
            valid_event(2)
                .replace(r#""fare_amount":12.0"#, r#""fare_amount":"12""#)
                .into_bytes(),
            r#"field "fare_amount": expected a number or null, got string"#,
        ),
        (
            "bad:missing",
            valid_event(3)
                .replace(r#""DOLocationID":43,"#, "")
                .into_bytes(),
            r#"missing field "DOLocationID""#,
        ),
        (
            "bad:json",
            b"{\"trip_id\": oops".to_vec(),
            "payload is not valid JSON",
        ),
        (
            "bad:utf8",
            vec![b'{', b'"', 0xff, b'"', b':', b'1', b'}'],
            "payload is not valid UTF-8",
        ),
        ("bad:scored", scored.into_bytes(), "already scored"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_scores_dead_letters_and_stops_cleanly() {
    let Ok(brokers) = std::env::var("KAFKA_BROKERS") else {
        eprintln!("KAFKA_BROKERS is not set: skipping the scorer broker test");
        return;
    };
    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let input = format!("scorer-test-trips-{unique}");
    let output = format!("scorer-test-scored-{unique}");
    let dead = format!("scorer-test-dead-{unique}");
    let group = format!("scorer-test-{unique}");
    let model_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/trip-duration-linear.json");
    let args = TestCli::parse_from([
        "test",
        "--brokers",
        &brokers,
        "--input-topic",
        &input,
        "--output-topic",
        &output,
        "--dead-letter-topic",
        &dead,
        "--group",
        &group,
        "--model",
        model_path.to_str().unwrap(),
        "--max-in-flight",
        "3",
    ])
    .run;
    let model = LinearModel::load(&args.model.path).unwrap();

    let admin: AdminClient<DefaultClientContext> =
        args.kafka.client_config().unwrap().create().unwrap();
    let topics: Vec<NewTopic<'_>> = [&input, &output, &dead]
        .into_iter()
        .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }

    // Produce every event first and remember where each landed.
    let producer = args.kafka.producer().unwrap();
    let valid: Vec<String> = (0..8).map(valid_event).collect();
    let invalid = invalid_events();
    let mut end_offsets: HashMap<i32, i64> = HashMap::new();
    let send = |key: String, payload: Vec<u8>| {
        let producer = producer.clone();
        let input = input.clone();
        async move {
            let record = FutureRecord::to(&input).key(&key).payload(&payload);
            producer
                .send(record, TIMEOUT)
                .await
                .map_err(|(e, _)| e)
                .unwrap()
        }
    };
    for (i, event) in valid.iter().enumerate() {
        let delivery = send(format!("test:{i}"), event.clone().into_bytes()).await;
        let end = end_offsets.entry(delivery.partition).or_default();
        *end = (*end).max(delivery.offset + 1);
    }
    for (key, payload, _) in &invalid {
        let delivery = send((*key).to_owned(), payload.clone()).await;
        let end = end_offsets.entry(delivery.partition).or_default();
        *end = (*end).max(delivery.offset + 1);
    }
    // The end of the stream on every input partition, and a marker that cannot be read.
    let mut markers_in = vec![(None, Marker::default().to_json()); PARTITIONS as usize];
    markers_in.push((Some("bad-marker"), br#"{"upstream":1}"#.to_vec()));
    for (partition, (key, payload)) in markers_in.iter().enumerate() {
        let mut record = FutureRecord::<str, [u8]>::to(&input)
            .partition(partition as i32 % PARTITIONS)
            .payload(payload)
            .headers(marker_headers());
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = producer
            .send(record, TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        let end = end_offsets.entry(delivery.partition).or_default();
        *end = (*end).max(delivery.offset + 1);
    }

    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let service = tokio::spawn({
        let (shutdown, readiness, args) = (shutdown.clone(), readiness.clone(), args.clone());
        async move { service::run(&args, model, shutdown, readiness).await }
    });

    // Read both output topics until every event is accounted for.
    let verify_group = format!("{group}-verify");
    let reader = args
        .kafka
        .consumer("scorer-test-reader", &verify_group, &[&output, &dead])
        .unwrap();
    let model = LinearModel::load(&model_path).unwrap();
    let mut scored: HashMap<String, Vec<u8>> = HashMap::new();
    let mut dead_letters: HashMap<String, (Vec<u8>, HashMap<String, String>)> = HashMap::new();
    // (output partition, input partition) of each end-of-stream marker forwarded.
    let mut markers_out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while scored.len() < valid.len()
        || dead_letters.len() < invalid.len() + 1
        || markers_out.len() < (PARTITIONS * PARTITIONS) as usize
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, reader.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out with {} scored and {} dead letters",
                    scored.len(),
                    dead_letters.len()
                )
            })
            .unwrap();
        let payload = message.payload().unwrap_or_default().to_vec();
        if message.topic() == output && is_end_of_stream(message.headers()) {
            let upstream = Marker::parse(&payload).unwrap().upstream.unwrap();
            assert_eq!(
                (upstream.topic.as_str(), upstream.partitions),
                (input.as_str(), 2)
            );
            // Every event of that input partition for this output partition came before it.
            for i in 0..valid.len() {
                let key = format!("test:{i}");
                let place = |partitions| batch::partition_for_key(key.as_bytes(), partitions);
                if place(PARTITIONS as usize) == upstream.partition
                    && place(PARTITIONS as usize) == message.partition()
                {
                    assert!(
                        scored.contains_key(&key),
                        "{key} came after its partition's end"
                    );
                }
            }
            markers_out.push((message.partition(), upstream.partition));
        } else if message.topic() == output {
            // Batches: each event on its line, all in the partition of their trip ids.
            assert!(
                batch::is_batch(message.headers()),
                "scored output is batched"
            );
            for (_, event) in batch::events(&payload) {
                let value: serde_json::Value = serde_json::from_slice(event).unwrap();
                let id = value["trip_id"].as_str().unwrap().to_owned();
                assert_eq!(
                    batch::partition_for_key(id.as_bytes(), PARTITIONS as usize),
                    message.partition(),
                    "{id} is in its key's partition"
                );
                assert!(
                    scored.insert(id, event.to_vec()).is_none(),
                    "duplicate output"
                );
            }
        } else {
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8(h.value.unwrap_or_default().to_vec());
                            (h.key.to_owned(), value.unwrap())
                        })
                        .collect()
                })
                .unwrap_or_default();
            dead_letters.insert(key, (payload, headers));
        }
    }
    assert!(readiness.is_ready());
    markers_out.sort_unstable();
    assert_eq!(
        markers_out,
        [(0, 0), (0, 1), (1, 0), (1, 1)],
        "each input partition's end reaches every output partition once"
    );
    let (_, headers) = &dead_letters["bad-marker"];
    assert!(
        headers[HEADER_DLQ_REASON].starts_with("malformed end-of-stream marker"),
        "{headers:?}"
    );

    for (i, event) in valid.iter().enumerate() {
        let out = &scored[&format!("test:{i}")];
        // The source bytes are kept, then the two fields follow.
        assert!(out.starts_with(&event.as_bytes()[..event.len() - 1]));
        let value: serde_json::Value = serde_json::from_slice(out).unwrap();
        let x: Vec<Option<f64>> = model
            .features()
            .iter()
            .map(|name| value[name].as_f64())
            .collect();
        assert_eq!(
            value["prediction"].as_f64().unwrap().to_bits(),
            model.predict(&x).to_bits()
        );
        assert_eq!(value["model_version"], model.version());
    }
    for (key, payload, reason) in &invalid {
        let (got, headers) = &dead_letters[*key];
        assert_eq!(got, payload, "{key}: the original bytes");
        assert!(
            headers[HEADER_DLQ_REASON].contains(reason),
            "{key}: reason {:?}",
            headers[HEADER_DLQ_REASON]
        );
        assert_eq!(headers[HEADER_DLQ_STAGE], "scorer");
        assert!(headers[HEADER_DLQ_ORIGIN].starts_with(&format!("{input}/")));
    }

    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("the service stops within 30 s of cancellation")
        .unwrap()
        .unwrap();
    assert_eq!(summary.events_in, (valid.len() + invalid.len()) as u64);
    assert_eq!(summary.events_out, valid.len() as u64);
    assert_eq!(summary.dead_lettered, invalid.len() as u64 + 1);
    assert!(!readiness.is_ready());

    // Every input offset was committed for the group.
    let probe: BaseConsumer = args
        .kafka
        .client_config()
        .unwrap()
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(&input, partition);
    }
    let committed = probe
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    for partition in 0..PARTITIONS {
        let expected = end_offsets.get(&partition).copied();
        let got = committed
            .find_partition(&input, partition)
            .unwrap()
            .offset();
        match expected {
            Some(end) => assert_eq!(got, Offset::Offset(end), "partition {partition}"),
            None => assert!(matches!(got, Offset::Invalid), "partition {partition}"),
        }
    }
}
