//! What the broker tests share: the broker from KAFKA_BROKERS, unique topics, reading a topic
//! back, and the producer binary.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use streamwatch_common::end_of_stream::{is_end_of_stream, Marker};
use streamwatch_common::events::HEADER_DLQ_REASON;
use streamwatch_common::kafka::{KafkaArgs, StageConsumer};

pub fn kafka() -> Option<KafkaArgs> {
    let Ok(brokers) = std::env::var("KAFKA_BROKERS") else {
        println!("KAFKA_BROKERS is not set: skipping the broker test");
        return None;
    };
    Some(KafkaArgs::for_brokers(&brokers))
}

pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-producer-{name}-{}-{nanos}", std::process::id())
}

/// One partition, so the order the producer chose is the order read back.
pub async fn create_topic(kafka: &KafkaArgs, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().unwrap().create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("could not create {topic}: {code}"));
    }
}

/// Reads `expected` messages, then waits a little to catch any extra one. End-of-stream
/// markers are not passed to `each` but counted: the second value. A message after a marker
/// fails the test (a replay sends its markers last).
pub async fn consume<T>(
    kafka: &KafkaArgs,
    topic: &str,
    expected: usize,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> T,
) -> (Vec<T>, usize) {
    let consumer: StageConsumer = kafka
        .consumer("producer-test-reader", &unique("group"), &[topic])
        .unwrap();
    let mut got = Vec::new();
    let mut markers = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let wait = if got.len() < expected {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            Duration::from_secs(2)
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(message) => {
                let message = message.unwrap();
                if is_end_of_stream(message.headers()) {
                    Marker::parse(message.payload().unwrap_or_default()).unwrap();
                    markers += 1;
                } else {
                    assert_eq!(
                        markers, 0,
                        "a message after an end-of-stream marker on {topic}"
                    );
                    got.push(each(&message));
                }
            }
            Err(_) => break,
        }
    }
    assert_eq!(got.len(), expected, "messages on {topic}");
    (got, markers)
}

pub fn producer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_producer"));
    command.env("ADMIN_ADDR", "127.0.0.1:0");
    command
}

/// The `dlq.reason` header of a dead letter.
pub fn dlq_reason(message: &BorrowedMessage<'_>) -> String {
    message
        .headers()
        .and_then(|headers| headers.iter().find(|h| h.key == HEADER_DLQ_REASON))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("a dlq.reason header")
}

/// The payload as text.
pub fn text(message: &BorrowedMessage<'_>) -> String {
    String::from_utf8(message.payload().unwrap().to_vec()).unwrap()
}
