//! The consume loop against a real broker (`KAFKA_BROKERS`) and PostgreSQL (`DATABASE_URL`):
//! rows wait while the database is down, nothing is dropped, malformed rows are dead-lettered
//! with their reason, and offsets are committed on shutdown.

mod support;

use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use streamwatch_common::deadletter::DeadLetters;
use streamwatch_common::events::{
    MetricsRecord, HEADER_DLQ_ORIGIN, HEADER_DLQ_REASON, HEADER_DLQ_STAGE,
};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::Readiness;
use streamwatch_common::testing::kafka_from_env;
use streamwatch_sink::config::Backoff;
use streamwatch_sink::migrations;
use streamwatch_sink::service::MetricStore;
use streamwatch_sink::sink::{Health, LoopSettings, LoopStats, MetricSink};
use support::{daily_row, database_url, unique, TestDb};
use tokio_util::sync::CancellationToken;

fn kafka_args(test: &str) -> Option<KafkaArgs> {
    let mut kafka = kafka_from_env(test)?;
    kafka.statistics_interval_ms = 1000;
    Some(kafka)
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce to the test topic");
}

/// A running sink loop with its own readiness, stopped by `stop`.
struct Running {
    readiness: Readiness,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<LoopStats>,
}

fn start(
    kafka: &KafkaArgs,
    topic: &str,
    group: &str,
    dead_letter_topic: &str,
    store: MetricStore,
) -> Running {
    let consumer = kafka.consumer("sink", group, &[topic]).unwrap();
    let dead_letters = DeadLetters::new(kafka.producer().unwrap(), dead_letter_topic, "sink");
    let readiness = Readiness::default();
    let health = Health::new(readiness.clone());
    health.set_broker(true);
    health.set_database(true);
    let settings = LoopSettings {
        topic: topic.to_owned(),
        batch_size: 50,
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(200)),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        MetricSink::new(consumer, dead_letters, store, health, settings).run(shutdown.clone()),
    );
    Running {
        readiness,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) -> LoopStats {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the loop stops after shutdown")
            .unwrap()
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored_windows(db: &TestDb) -> Vec<(String, i64)> {
    db.client()
        .await
        .query(
            "SELECT to_char(window_start, 'YYYY-MM-DD'), revision FROM window_metrics ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_wait_for_the_database_and_malformed_ones_are_dead_lettered() {
    let test = "rows_wait_for_the_database_and_malformed_ones_are_dead_lettered";
    let (Some(kafka), Some(url)) = (kafka_args(test), database_url(test)) else {
        return;
    };
    streamwatch_common::telemetry::init_tracing();
    let topic = unique("sink-metrics");
    let dead_letter_topic = unique("sink-deadletter");
    let group = unique("sink-group");
    let producer = kafka.producer().unwrap();

    let rows = [
        daily_row("2022-02-01", 1, 0.19),
        daily_row("2022-02-01", 2, 0.21),
        daily_row("2022-02-02", 1, 0.12),
    ];
    for row in &rows {
        produce(
            &producer,
            &topic,
            &row.window.message_key(),
            &serde_json::to_vec(&MetricsRecord::Window(row.clone())).unwrap(),
        )
        .await;
    }
    let mut refused = daily_row("2022-02-03", 1, 0.1);
    refused.window.monitor = "nul\u{0}byte".into(); // valid JSON that PostgreSQL's text refuses
    let malformed: [(&str, Vec<u8>); 3] = [
        ("bad-json", b"{\"window\": ".to_vec()),
        (
            "wrong-fields",
            br#"{"record": "window", "window": {"monitor": "taxi"}, "revision": "two"}"#.to_vec(),
        ),
        (
            "refused",
            serde_json::to_vec(&MetricsRecord::Window(refused)).unwrap(),
        ),
    ];
    for (key, payload) in &malformed {
        produce(&producer, &topic, key, payload).await;
    }

    // 1. The database is down: the loop retries and keeps the rows, stores no offset.
    let unreachable: tokio_postgres::Config =
        "postgres://postgres@127.0.0.1:1/streamwatch?connect_timeout=1"
            .parse()
            .unwrap();
    let down = start(
        &kafka,
        &topic,
        &group,
        &dead_letter_topic,
        MetricStore::from_config(unreachable, 1).unwrap(),
    );
    let readiness = down.readiness.clone();
    wait_for("a failed database write", Duration::from_secs(60), || {
        let ready = readiness.is_ready();
        async move { !ready }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = down.stop().await;
    assert!(stats.database_retries >= 2, "{stats:?}");
    assert_eq!((stats.applied, stats.dead_lettered), (0, 0), "{stats:?}");

    // 2. The database is back: the same group gets every row again.
    let db = TestDb::create(&url).await;
    migrations::apply(&db.store).await.unwrap();
    let up = start(&kafka, &topic, &group, &dead_letter_topic, db.store.clone());
    wait_for(
        "the rows in the database",
        Duration::from_secs(60),
        || async {
            stored_windows(&db).await
                == [("2022-02-01".to_owned(), 2), ("2022-02-02".to_owned(), 1)]
        },
    )
    .await;
    let readiness = up.readiness.clone();
    wait_for("readiness", Duration::from_secs(10), || {
        let ready = readiness.is_ready();
        async move { ready }
    })
    .await;
    // Give the dead letters (written after the rows) time to be sent.
    let dlq = kafka
        .consumer(
            "sink-test-reader",
            &unique("sink-dlq-reader"),
            &[&dead_letter_topic],
        )
        .unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < malformed.len() {
        let message = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(header(HEADER_DLQ_STAGE), "sink");
        assert!(header(HEADER_DLQ_ORIGIN).starts_with(&format!("{topic}/")));
        let key = String::from_utf8_lossy(message.key().unwrap()).into_owned();
        let (_, payload) = malformed
            .iter()
            .find(|(k, _)| *k == key)
            .expect("a known key");
        assert_eq!(
            message.payload().unwrap(),
            payload.as_slice(),
            "payload of {key}"
        );
        reasons.push((key, header(HEADER_DLQ_REASON)));
    }
    reasons.sort();
    assert_eq!(reasons[0].0, "bad-json");
    assert!(reasons[0].1.contains("not a metric record"), "{reasons:?}");
    assert_eq!(reasons[1].0, "refused");
    assert!(reasons[1].1.contains("db error"), "{reasons:?}");
    assert_eq!(reasons[2].0, "wrong-fields");
    assert!(reasons[2].1.contains("not a metric record"), "{reasons:?}");
    drop(dlq);
    let stats = up.stop().await;
    assert_eq!(stats.messages, 6, "{stats:?}");
    assert_eq!(stats.dead_lettered, 3, "{stats:?}");
    assert_eq!(stats.applied + stats.stale, 3, "{stats:?}");

    // 3. After a restart only the new row is consumed: the offsets were committed on shutdown.
    let later = daily_row("2022-02-04", 1, 0.15);
    produce(
        &producer,
        &topic,
        &later.window.message_key(),
        &serde_json::to_vec(&MetricsRecord::Window(later.clone())).unwrap(),
    )
    .await;
    let again = start(&kafka, &topic, &group, &dead_letter_topic, db.store.clone());
    wait_for("the new row", Duration::from_secs(60), || async {
        stored_windows(&db).await.len() == 3
    })
    .await;
    let stats = again.stop().await;
    assert_eq!(stats.messages, 1, "{stats:?}");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_resumes_when_the_database_comes_back() {
    let test = "consumption_resumes_when_the_database_comes_back";
    let (Some(kafka), Some(url)) = (kafka_args(test), database_url(test)) else {
        return;
    };
    let topic = unique("sink-metrics");
    let producer = kafka.producer().unwrap();
    let first = daily_row("2022-02-01", 1, 0.19);
    produce(
        &producer,
        &topic,
        &first.window.message_key(),
        &serde_json::to_vec(&MetricsRecord::Window(first.clone())).unwrap(),
    )
    .await;

    // The database does not exist yet: every connection attempt fails.
    let db = TestDb::unborn(&url);
    let running = start(
        &kafka,
        &topic,
        &unique("sink-group"),
        &unique("sink-deadletter"),
        db.store.clone(),
    );
    let readiness = running.readiness.clone();
    wait_for("a failed database write", Duration::from_secs(60), || {
        let ready = readiness.is_ready();
        async move { !ready }
    })
    .await;
    db.create_database().await;
    migrations::apply(&db.store).await.unwrap();
    wait_for("the first row", Duration::from_secs(30), || async {
        stored_windows(&db).await.len() == 1
    })
    .await;

    // Fetching was resumed: a row produced now arrives too.
    let second = daily_row("2022-02-02", 1, 0.12);
    produce(
        &producer,
        &topic,
        &second.window.message_key(),
        &serde_json::to_vec(&MetricsRecord::Window(second.clone())).unwrap(),
    )
    .await;
    wait_for("the second row", Duration::from_secs(30), || async {
        stored_windows(&db).await.len() == 2
    })
    .await;
    assert!(readiness.is_ready());
    let stats = running.stop().await;
    assert!(stats.database_retries >= 1, "{stats:?}");
    assert_eq!((stats.messages, stats.applied), (2, 2), "{stats:?}");
    db.drop_database().await;
}
