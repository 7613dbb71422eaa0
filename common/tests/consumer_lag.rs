//! The consumer-lag gauges against a real broker (`KAFKA_BROKERS`; skipped when unset): a
//! consumer that committed 5 of 50 messages reports a lag of 45 for the partition, and 0 once
//! it committed them all.

use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use streamwatch_common::kafka::StageConsumer;
use streamwatch_common::telemetry::prometheus_builder;
use streamwatch_common::testing::{kafka_from_env, unique_name};

const MESSAGES: i64 = 50;
const COMMITTED: i64 = 5;
const STAGE: &str = "lag-test";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The value of the first sample whose name and labels contain all of `parts`.
fn sample(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| parts.iter().all(|part| line.contains(part)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Polls the consumer (statistics are delivered while it polls) until the partition's lag gauge
/// reads `expected`; returns the last rendering.
async fn wait_for_lag(
    consumer: &StageConsumer,
    handle: &PrometheusHandle,
    topic: &str,
    expected: f64,
) -> String {
    let topic_label = format!(r#"topic="{topic}""#);
    let labels = [
        r#"stage="lag-test""#,
        topic_label.as_str(),
        r#"partition="0""#,
    ];
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        let text = handle.render();
        let lag = sample(&text, "streamwatch_consumer_lag", &labels);
        if lag == Some(expected) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no lag gauge of {expected} for {topic}/0 within {TIMEOUT:?} (last {lag:?}):\n{text}"
        );
    }
}

#[tokio::test]
async fn lag_gauge_counts_the_messages_behind_the_high_watermark() {
    let Some(mut kafka) = kafka_from_env("consumer_lag") else {
        return;
    };
    kafka.statistics_interval_ms = 200;
    let handle = prometheus_builder().install_recorder().unwrap();
    let topic = unique_name("common", "lag");
    let group = unique_name("common", "lag-group");

    let admin: AdminClient<DefaultClientContext> = kafka.client_config().unwrap().create().unwrap();
    for result in admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        result.unwrap_or_else(|(topic, code)| panic!("could not create {topic}: {code}"));
    }
    let producer = kafka.producer().unwrap();
    for i in 0..MESSAGES {
        let payload = format!(r#"{{"n":{i}}}"#);
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| error)
            .expect("produce to the test topic");
    }

    let consumer = kafka.consumer(STAGE, &group, &[&topic]).unwrap();
    let mut last = -1;
    for _ in 0..COMMITTED {
        let message = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .expect("a message within the timeout")
            .expect("no consumer error");
        last = message.offset();
    }
    assert_eq!(last, COMMITTED - 1);
    // As a stage does: store the offset of the last processed message, then commit.
    consumer.store_offset(&topic, 0, last).unwrap();
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();

    let text = wait_for_lag(&consumer, &handle, &topic, (MESSAGES - COMMITTED) as f64).await;
    let total = sample(
        &text,
        "streamwatch_consumer_lag_total",
        &[r#"stage="lag-test""#],
    );
    assert_eq!(total, Some((MESSAGES - COMMITTED) as f64), "{text}");

    // Caught up: the lag drops to 0 once every offset is committed.
    consumer.store_offset(&topic, 0, MESSAGES - 1).unwrap();
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    wait_for_lag(&consumer, &handle, &topic, 0.0).await;
}
