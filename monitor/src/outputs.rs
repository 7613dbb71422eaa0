//! Publishing the monitor's records without waiting a broker round trip per record.
//!
//! Records are sent as they are made. The input offsets a micro-batch lets the monitor store
//! become a checkpoint behind every record sent before it, and are stored only once all of
//! those are acknowledged, so at-least-once holds while the consumer goes on reading. Waiting
//! for each record's acknowledgement instead (one linger plus a round trip) stalled reading
//! for every window emitted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;
use streamwatch_common::events::MetricsRecord;
use streamwatch_common::kafka::StageConsumer;
use streamwatch_common::telemetry::EVENTS_OUT_TOTAL;

use crate::{MonitorError, Result};

/// Checkpoints that may wait for acknowledgements before the oldest one is waited for.
const MAX_PENDING_CHECKPOINTS: usize = 64;

/// How long to wait before sending again when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// Records to one topic; clones made by [`Outputs::for_topic`] share the checkpoints, so
/// records to every topic a batch writes are acknowledged before its offsets are stored.
#[derive(Clone)]
pub struct Outputs {
    producer: FutureProducer,
    topic: String,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    /// Sent since the last checkpoint.
    sent: Vec<Sent>,
    checkpoints: VecDeque<Checkpoint>,
}

struct Sent {
    /// `<topic>: <key>`, for the error.
    target: String,
    delivery: DeliveryFuture,
}

impl Sent {
    /// Waits for the broker's answer.
    async fn acknowledged(self) -> Result<()> {
        delivered(self.delivery.await).map_err(|source| MonitorError::Publish {
            target: self.target,
            source,
        })
    }
}

struct Checkpoint {
    unacknowledged: Vec<Sent>,
    offsets: TopicPartitionList,
    /// The consumer's revocation count when the batch began: offsets computed across a
    /// rebalance are not stored (a later checkpoint stores them).
    revocations: u64,
}

/// How long [`Outputs::settle`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Stores the checkpoints already acknowledged; waits only while too many are pending.
    Ready,
    /// Waits for every checkpoint (at shutdown).
    All,
}

impl Outputs {
    pub fn new(producer: FutureProducer, topic: &str) -> Self {
        Self {
            producer,
            topic: topic.to_owned(),
            pending: Arc::default(),
        }
    }

    /// The same producer and checkpoints, another topic.
    pub fn for_topic(&self, topic: &str) -> Self {
        Self {
            producer: self.producer.clone(),
            topic: topic.to_owned(),
            pending: self.pending.clone(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub async fn publish(&self, record: &MetricsRecord) -> Result<()> {
        self.publish_json(&record.message_key(), record).await
    }

    /// Sends one JSON message; its acknowledgement is awaited by the next checkpoint.
    pub async fn publish_json<T: serde::Serialize>(&self, key: &str, record: &T) -> Result<()> {
        let payload = serde_json::to_vec(record).expect("records serialise");
        let target = format!("{}: {key}", self.topic);
        loop {
            let record = FutureRecord::to(&self.topic).key(key).payload(&payload);
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.lock().sent.push(Sent { target, delivery });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((source, _)) => return Err(MonitorError::Publish { target, source }),
            }
        }
    }

    /// Waits for the acknowledgement of every record sent since the last checkpoint.
    pub async fn wait_sent(&self) -> Result<()> {
        let sent = std::mem::take(&mut self.lock().sent);
        for sent in sent {
            sent.acknowledged().await?;
        }
        Ok(())
    }

    /// Puts `offsets` behind every record sent so far.
    pub fn checkpoint(&self, offsets: TopicPartitionList, revocations: u64) {
        let mut pending = self.lock();
        let unacknowledged = std::mem::take(&mut pending.sent);
        pending.checkpoints.push_back(Checkpoint {
            unacknowledged,
            offsets,
            revocations,
        });
        metrics::gauge!("streamwatch_monitor_pending_checkpoints")
            .set(pending.checkpoints.len() as f64);
    }

    /// Stores the offsets of the checkpoints whose records (and all earlier ones) are
    /// acknowledged, oldest first. Fails on the first record the broker refused: the offsets
    /// stop before it, so a restart emits it again.
    pub async fn settle(&self, consumer: &StageConsumer, settle: Settle) -> Result<()> {
        loop {
            let (mut checkpoint, wait) = {
                let mut pending = self.lock();
                let must_wait =
                    settle == Settle::All || pending.checkpoints.len() > MAX_PENDING_CHECKPOINTS;
                let Some(front) = pending.checkpoints.front_mut() else {
                    break;
                };
                let mut refused = None;
                front
                    .unacknowledged
                    .retain_mut(|sent| match (&mut sent.delivery).now_or_never() {
                        None => true,
                        Some(outcome) => {
                            if let Err(source) = delivered(outcome) {
                                refused.get_or_insert((sent.target.clone(), source));
                            }
                            false
                        }
                    });
                if let Some((target, source)) = refused {
                    return Err(MonitorError::Publish { target, source });
                }
                if !front.unacknowledged.is_empty() && !must_wait {
                    break;
                }
                let checkpoint = pending.checkpoints.pop_front().expect("front exists");
                metrics::gauge!("streamwatch_monitor_pending_checkpoints")
                    .set(pending.checkpoints.len() as f64);
                let wait = !checkpoint.unacknowledged.is_empty();
                (checkpoint, wait)
            };
            if wait {
                for sent in checkpoint.unacknowledged.drain(..) {
                    sent.acknowledged().await?;
                }
            }
            self.store(consumer, checkpoint);
        }
        Ok(())
    }

    fn store(&self, consumer: &StageConsumer, checkpoint: Checkpoint) {
        if checkpoint.offsets.count() == 0 {
            return;
        }
        if checkpoint.revocations != consumer.context().revocations() {
            tracing::debug!("partitions were revoked since the batch began; its offsets are left to the next one");
            return;
        }
        if let Err(error) = consumer.store_offsets(&checkpoint.offsets) {
            // After a rebalance the partition may belong to another instance.
            tracing::debug!(%error, "offsets not stored");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A delivery's outcome; counts the record as out when the broker has it.
fn delivered(
    outcome: std::result::Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> std::result::Result<(), KafkaError> {
    match outcome {
        Ok(Ok(_)) => {
            metrics::counter!(EVENTS_OUT_TOTAL, "stage" => "monitor").increment(1);
            Ok(())
        }
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::Canceled),
    }
}
