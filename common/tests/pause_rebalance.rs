//! Pausing survives rebalances, and so does resuming, against a real broker (`KAFKA_BROKERS`;
//! skipped when unset). librdkafka keeps a partition's pause through its revocation: a consumer
//! that paused both partitions, lost one to a second member, resumed, and got it back must fetch
//! from both (the sink stalled on exactly this when its group session expired during a database
//! outage).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use streamwatch_common::kafka::{pause_fetching, resume_fetching, StageConsumer};
use streamwatch_common::testing::{kafka_from_env, unique_name};

const TIMEOUT: Duration = Duration::from_secs(60);

fn assigned(consumer: &StageConsumer) -> Vec<i32> {
    let mut partitions: Vec<i32> = consumer
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    partitions.sort_unstable();
    partitions
}

/// Polls every consumer (a rebalance completes only while all members poll) until `done`.
async fn poll_until(consumers: &[&StageConsumer], what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "not within {TIMEOUT:?}: {what}");
        for consumer in consumers {
            if let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await
            {
                panic!(
                    "unexpected message from partition {} while {what}",
                    message.partition()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_partition_paused_before_a_rebalance_fetches_after_a_resume() {
    let Some(kafka) = kafka_from_env("pause_rebalance") else {
        return;
    };
    let topic = unique_name("common", "pause");
    let group = unique_name("common", "pause-group");
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().unwrap().create().unwrap();
    for result in admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        result.unwrap_or_else(|(topic, code)| panic!("could not create {topic}: {code}"));
    }

    let first = kafka.consumer("pause-test", &group, &[&topic]).unwrap();
    poll_until(&[&first], "the first member gets both partitions", || {
        assigned(&first) == [0, 1]
    })
    .await;
    pause_fetching(&first).unwrap();

    let second = kafka.consumer("pause-test", &group, &[&topic]).unwrap();
    poll_until(
        &[&first, &second],
        "the second member takes a partition",
        || assigned(&first).len() == 1 && assigned(&second).len() == 1,
    )
    .await;
    // Resumed while the other partition belongs to the second member.
    resume_fetching(&first).unwrap();
    drop(second);
    poll_until(
        &[&first],
        "the first member gets both partitions back",
        || assigned(&first) == [0, 1],
    )
    .await;

    let producer = kafka.producer().unwrap();
    for partition in [0, 1] {
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key("k")
                    .payload("{}"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| error)
            .expect("produce to the test topic");
    }
    let mut fetched = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while fetched.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, first.recv()).await {
            Ok(message) => fetched.push(message.expect("no consumer error").partition()),
            Err(_) => panic!("only partitions {fetched:?} fetched within {TIMEOUT:?}"),
        }
    }
    fetched.sort_unstable();
    assert_eq!(fetched, [0, 1]);
}
