//! Where a replay's messages go: librdkafka's queue, with every delivery counted in the
//! client's delivery callback. A replay needs no answer per message, so unlike
//! [`crate::publish::Publisher`] (live ingestion, which answers each HTTP request) it pays for
//! no future, channel or task wake-up per message; under `perf` those, with the thread that
//! fed them, were about a third of a replay's CPU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Counter;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use streamwatch_common::end_of_stream::{marker_headers, Marker};
use streamwatch_common::kafka::{partition_count_of, KafkaArgs};

use crate::error::Result;
use crate::publish::{Deliveries, STAGE};

/// A topic a replay writes, by its index in [`ReplayOutput::new`]'s list.
pub type TopicIndex = usize;

/// Counts each topic's deliveries as librdkafka reports them (on its polling thread).
pub struct CountingContext {
    topics: Vec<TopicCounts>,
    /// The end-of-stream markers' deliveries, counted apart from the events.
    markers: TopicCounts,
}

struct TopicCounts {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Counter of the delivered messages (`stage="producer"`); none for markers.
    metric: Option<Counter>,
}

impl TopicCounts {
    fn new(metric: Option<Counter>) -> Self {
        Self {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            metric,
        }
    }
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    /// The topic's index; past the last topic: an end-of-stream marker.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, topic: usize) {
        let counts = self.topics.get(topic).unwrap_or(&self.markers);
        match result {
            Ok(_) => {
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(metric) = &counts.metric {
                    metric.increment(1);
                }
            }
            Err((error, _)) => {
                let failed = counts.failed.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::counter!("streamwatch_delivery_failures_total", "stage" => STAGE)
                    .increment(1);
                // One line per failure would flood the log when the broker goes away.
                if failed == 1 || failed.is_power_of_two() {
                    tracing::error!(failed, %error, "event not delivered");
                }
            }
        }
    }
}

/// The replay's producer and what it sent to each topic.
pub struct ReplayOutput {
    producer: ThreadedProducer<CountingContext>,
    topics: Vec<String>,
    sent: Vec<u64>,
    /// How long a metadata request may wait.
    metadata_timeout: Duration,
}

impl ReplayOutput {
    /// A producer for `topics`, each with the counter (`stage="producer"`) of its deliveries.
    pub fn new(kafka: &KafkaArgs, topics: &[(&str, &'static str)]) -> Result<Self> {
        let context = CountingContext {
            topics: topics
                .iter()
                .map(|(_, metric)| {
                    TopicCounts::new(Some(metrics::counter!(*metric, "stage" => STAGE)))
                })
                .collect(),
            markers: TopicCounts::new(None),
        };
        let producer = kafka
            .producer_config()?
            .create_with_context(context)
            .map_err(|source| streamwatch_common::Error::KafkaClient {
                what: "producer",
                source,
            })?;
        Ok(Self {
            producer,
            topics: topics
                .iter()
                .map(|(topic, _)| (*topic).to_owned())
                .collect(),
            sent: vec![0; topics.len()],
            metadata_timeout: kafka.connect_timeout(),
        })
    }

    /// Queues one message (the client copies key and payload). When the client's queue is
    /// full it waits for deliveries to make room instead of failing.
    pub async fn send(&mut self, topic: TopicIndex, key: &[u8], payload: &[u8]) {
        self.sent[topic] += 1;
        let mut record = BaseRecord::with_opaque_to(&self.topics[topic], topic)
            .key(key)
            .payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => {
                    // Not queued: counted as failed here, since no callback will report it.
                    let counts = &self.producer.context().topics[topic];
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(topic = %self.topics[topic], %error, "event not queued");
                    return;
                }
            }
        }
    }

    /// Waits until every queued message is delivered or has failed (each fails at the latest
    /// after the client's message timeout).
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(Timeout::Never))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        if let Err(error) = flushed {
            tracing::error!(%error, "waiting for the broker's acknowledgements failed");
        }
    }

    /// What reached `topic` so far.
    pub fn deliveries(&self, topic: TopicIndex) -> Deliveries {
        let counts = &self.producer.context().topics[topic];
        Deliveries {
            sent: self.sent[topic],
            delivered: counts.delivered.load(Ordering::Relaxed),
            failed: counts.failed.load(Ordering::Relaxed),
            reported: 0,
        }
    }

    /// Tells the stages downstream that the replay is complete: an end-of-stream marker on
    /// every partition of each topic (`streamwatch_common::end_of_stream`), once every event
    /// is acknowledged, so the monitor reports the last windows at once. A marker that cannot
    /// be sent only leaves them to the monitor's idle timeout: a warning, not a failed replay.
    pub async fn end_streams(&self) {
        let payload = Marker::default().to_json();
        let mut expected = 0;
        for topic in &self.topics {
            let partitions = partition_count_of(&self.producer, topic, self.metadata_timeout).await;
            let partitions = match partitions {
                Ok(partitions) => partitions,
                Err(error) => {
                    tracing::warn!(topic, %error, "could not send the end-of-stream markers; the monitor closes the last windows after its idle timeout");
                    continue;
                }
            };
            for partition in 0..partitions as i32 {
                let record =
                    BaseRecord::<(), [u8], usize>::with_opaque_to(topic, self.topics.len())
                        .partition(partition)
                        .payload(&payload)
                        .headers(marker_headers());
                match self.producer.send(record) {
                    Ok(()) => expected += 1,
                    Err((error, _)) => {
                        tracing::warn!(topic, partition, %error, "could not send an end-of-stream marker; the monitor closes the last windows after its idle timeout")
                    }
                }
            }
        }
        self.flush().await;
        let markers = &self.producer.context().markers;
        let delivered = markers.delivered.load(Ordering::Relaxed);
        if delivered == expected {
            tracing::info!(topics = ?self.topics, markers = delivered, "end-of-stream markers delivered");
        } else {
            tracing::warn!(
                delivered,
                expected,
                "not every end-of-stream marker was delivered; the monitor closes the last windows after its idle timeout"
            );
        }
    }
}
