//! The monitor's records and its input offsets through a real broker (`KAFKA_BROKERS`; skipped
//! when unset): a checkpoint stores its offsets once the records sent before it are
//! acknowledged, and a checkpoint whose batch began before a rebalance revoked partitions
//! stores nothing.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use streamwatch_common::kafka::StageConsumer;
use streamwatch_common::testing::{kafka_from_env, unique_name};
use streamwatch_monitor::outputs::{Outputs, Settle};

const TIMEOUT: Duration = Duration::from_secs(60);

fn committed(consumer: &StageConsumer, topic: &str) -> Offset {
    let committed = consumer
        .committed_offsets(position(topic, 0), TIMEOUT)
        .unwrap();
    committed
        .find_partition(topic, 0)
        .map_or(Offset::Invalid, |p| p.offset())
}

fn assigned(consumer: &StageConsumer) -> bool {
    consumer.assignment().unwrap().count() == 1
}

fn position(topic: &str, offset: i64) -> TopicPartitionList {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    offsets
}

#[tokio::test]
async fn offsets_wait_for_the_records_before_them_and_skip_a_rebalance() {
    let Some(kafka) = kafka_from_env("outputs") else {
        return;
    };
    let (input, output) = (
        unique_name("monitor", "outputs-in"),
        unique_name("monitor", "outputs-out"),
    );
    let group = unique_name("monitor", "outputs-group");
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().unwrap().create().unwrap();
    let topics = [&input, &output].map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)));
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap_or_else(|(topic, code)| panic!("could not create {topic}: {code}"));
    }
    let producer = kafka.producer().unwrap();
    for n in 0..3 {
        producer
            .send(
                FutureRecord::to(&input)
                    .key("trip")
                    .payload(&format!("{n}")),
                TIMEOUT,
            )
            .await
            .unwrap();
    }
    let consumer = kafka.consumer("monitor", &group, &[&input]).unwrap();
    let first = tokio::time::timeout(TIMEOUT, consumer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.offset(), 0);
    let batch_began = consumer.context().revocations();

    let outputs = Outputs::new(producer.clone(), &output);
    outputs
        .publish_json("window", &serde_json::json!({"rows": 1}))
        .await
        .unwrap();
    outputs.checkpoint(position(&input, 1), batch_began);
    outputs.settle(&consumer, Settle::All).await.unwrap();
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    assert_eq!(committed(&consumer, &input), Offset::Offset(1));

    // A second member joins: the rebalance revokes the first member's partition.
    let second = kafka.consumer("monitor", &group, &[&input]).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while consumer.context().revocations() == batch_began {
        assert!(Instant::now() < deadline, "no rebalance within {TIMEOUT:?}");
        for member in [&consumer, &second] {
            let _ = tokio::time::timeout(Duration::from_millis(50), member.recv()).await;
        }
    }
    // The partition comes back to the first member, so storing would work.
    drop(second);
    while !assigned(&consumer) {
        assert!(
            Instant::now() < deadline,
            "partition not back within {TIMEOUT:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await;
    }
    // Offsets computed in the batch that began before the revocation are not stored, even
    // once its records are acknowledged: the partition was re-read from offset 1 since.
    outputs
        .publish_json("window", &serde_json::json!({"rows": 2}))
        .await
        .unwrap();
    outputs.checkpoint(position(&input, 3), batch_began);
    outputs.settle(&consumer, Settle::All).await.unwrap();
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    assert_eq!(committed(&consumer, &input), Offset::Offset(1));
}
