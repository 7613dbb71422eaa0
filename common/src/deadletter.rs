//! The dead-letter topic: every message a stage cannot process goes there with the
//! stage, the reason and the original bytes, and is counted per reason.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::events::{HEADER_DLQ_ORIGIN, HEADER_DLQ_REASON, HEADER_DLQ_STAGE};
use crate::{Error, Result};

/// Where a dead-lettered message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Sends unprocessable messages to the dead-letter topic.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    stage: &'static str,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: impl Into<String>, stage: &'static str) -> Self {
        Self {
            producer,
            topic: topic.into(),
            stage,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `payload` with its reason and waits for the broker's acknowledgement, so the
    /// caller may store the original offset afterwards. `kind` is a short label for the counter
    /// (for example `invalid_json`); `reason` is the full message for people.
    pub async fn send(
        &self,
        kind: &'static str,
        reason: &str,
        origin: Option<Origin<'_>>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<()> {
        self.enqueue(kind, reason, origin, key, payload)?
            .delivered()
            .await
    }

    /// Like [`Self::send`], but returns once the producer has queued the message: a burst of
    /// bad input is published in batches instead of one round trip each. Await
    /// [`PendingDeadLetter::delivered`] before storing the original's offset.
    pub fn enqueue(
        &self,
        kind: &'static str,
        reason: &str,
        origin: Option<Origin<'_>>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<PendingDeadLetter> {
        let origin_text = origin
            .map(|o| format!("{}/{}/{}", o.topic, o.partition, o.offset))
            .unwrap_or_default();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_DLQ_STAGE,
                value: Some(self.stage),
            })
            .insert(Header {
                key: HEADER_DLQ_REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: HEADER_DLQ_ORIGIN,
                value: Some(origin_text.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        tracing::warn!(stage = self.stage, kind, reason, origin = %origin_text, "event dead-lettered");
        metrics::counter!("streamwatch_dead_letters_total", "stage" => self.stage, "reason" => kind)
            .increment(1);
        let delivery =
            self.producer
                .send_result(record)
                .map_err(|(source, _)| Error::DeadLetter {
                    topic: self.topic.clone(),
                    source,
                })?;
        Ok(PendingDeadLetter {
            delivery,
            topic: self.topic.clone(),
        })
    }
}

/// A dead letter the producer has queued.
pub struct PendingDeadLetter {
    delivery: DeliveryFuture,
    topic: String,
}

impl PendingDeadLetter {
    /// Waits for the broker's acknowledgement (the producer retries until
    /// `message.timeout.ms`).
    pub async fn delivered(self) -> Result<()> {
        let failed = |source| Error::DeadLetter {
            topic: self.topic.clone(),
            source,
        };
        match self.delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((source, _))) => Err(failed(source)),
            Err(_canceled) => Err(failed(rdkafka::error::KafkaError::Canceled)),
        }
    }
}
