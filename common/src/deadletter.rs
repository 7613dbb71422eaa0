//! The dead-letter topic: every message a stage cannot process goes there with the
//! stage, the reason and the original bytes, and is counted per reason.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::events::{HEADER_DLQ_ORIGIN, HEADER_DLQ_REASON, HEADER_DLQ_STAGE};
use crate::{Error, Result};

/// Where a dead-lettered message came from.
#[derive(Debug, Clone)]
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
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| Error::DeadLetter {
                topic: self.topic.clone(),
                source,
            })
    }
}
