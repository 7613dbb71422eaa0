//! End-of-stream markers: a replay that has delivered everything says so on every partition
//! of its topics, so the stages after it close their last windows at once instead of waiting
//! for an idle timeout.
//!
//! A marker is a message with the header `content-type:
//! application/vnd.streamwatch.end-of-stream+json` and a small JSON payload. `producer replay`
//! writes one (`{}`) to each partition of its topics once all its events are acknowledged. The
//! scorer, reading one on partition `p` of its input, sends its open batches and then a marker
//! to every partition of its output naming `p` as its upstream (`{"upstream": {"topic":
//! "trips", "partition": p, "partitions": n}}`): a scored partition holds events from every
//! input partition, so it has ended only once the markers of all `n` of them have arrived
//! ([`Ends`]). A marker means "nothing more for now": an event after it reopens the partition,
//! so a marker read too early costs only an early report, as an idle timeout would.

use std::collections::{BTreeSet, HashMap};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use crate::batch::{has_content_type, CONTENT_TYPE_HEADER};
use crate::kafka::queue_record;

/// The `content-type` of a marker.
pub const END_OF_STREAM: &str = "application/vnd.streamwatch.end-of-stream+json";
/// The dead-letter reason (counter label) of a marker whose payload cannot be read.
pub const MALFORMED_MARKER: &str = "malformed_marker";

/// A marker's payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// The input partition whose end a stage forwards; none when the writer's own stream ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
}

/// The partition of a stage's input that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub topic: String,
    pub partition: i32,
    /// The input topic's partition count: how many markers end a downstream partition.
    pub partitions: u32,
}

impl Marker {
    /// Reads a marker's payload; the error says what is wrong with it.
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        let marker: Self = serde_json::from_slice(payload)
            .map_err(|error| format!("malformed end-of-stream marker: {error}"))?;
        if let Some(upstream) = &marker.upstream {
            if upstream.partition < 0 || upstream.partition as u32 >= upstream.partitions {
                return Err(format!(
                    "malformed end-of-stream marker: upstream partition {} of {}",
                    upstream.partition, upstream.partitions
                ));
            }
        }
        Ok(marker)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a marker serialises")
    }
}

/// Whether a message with these headers is an end-of-stream marker.
pub fn is_end_of_stream<H: Headers + ?Sized>(headers: Option<&H>) -> bool {
    has_content_type(headers, END_OF_STREAM)
}

/// The headers a marker is sent with.
pub fn marker_headers() -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: CONTENT_TYPE_HEADER,
        value: Some(END_OF_STREAM),
    })
}

/// Queues `marker` to every one of the `partitions` partitions of `topic`, after whatever the
/// producer has queued for them before (the stages' producers keep a partition's order), and
/// returns the deliveries to wait for.
pub async fn queue_markers(
    producer: &FutureProducer,
    topic: &str,
    partitions: usize,
    marker: &Marker,
) -> Result<Vec<DeliveryFuture>, KafkaError> {
    let payload = marker.to_json();
    let mut deliveries = Vec::with_capacity(partitions);
    for partition in 0..partitions as i32 {
        let record = FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(&payload)
            .headers(marker_headers());
        deliveries.push(queue_record(producer, record).await?);
    }
    Ok(deliveries)
}

/// Waits for the deliveries of [`queue_markers`]; the first failure.
pub async fn delivered(deliveries: Vec<DeliveryFuture>) -> Result<(), KafkaError> {
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(error),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// Which partitions of a topic have ended, from the markers read on them.
#[derive(Debug, Default)]
pub struct Ends {
    /// Per partition, the upstream markers read since it last ended.
    waiting: HashMap<i32, Waiting>,
}

#[derive(Debug)]
struct Waiting {
    topic: String,
    partitions: u32,
    seen: BTreeSet<i32>,
}

impl Ends {
    /// Records a marker read on `partition`. True when the partition has now ended: the marker
    /// has no upstream, or it completes the markers of every partition of its upstream topic
    /// read on this partition since it last ended. Events in between do not reset the count:
    /// a scored partition interleaves the events of all input partitions, so those of
    /// partitions that have not ended yet come after the first markers.
    pub fn record(&mut self, partition: i32, marker: &Marker) -> bool {
        let Some(upstream) = &marker.upstream else {
            self.waiting.remove(&partition);
            return true;
        };
        let waiting = self.waiting.entry(partition).or_insert_with(|| Waiting {
            topic: upstream.topic.clone(),
            partitions: upstream.partitions,
            seen: BTreeSet::new(),
        });
        // Another upstream, or the same one with another partition count: count anew.
        if waiting.topic != upstream.topic || waiting.partitions != upstream.partitions {
            waiting.topic.clone_from(&upstream.topic);
            waiting.partitions = upstream.partitions;
            waiting.seen.clear();
        }
        waiting.seen.insert(upstream.partition);
        if waiting.seen.len() as u32 >= waiting.partitions {
            self.waiting.remove(&partition);
            return true;
        }
        false
    }

    /// Forgets the partitions this instance no longer owns (after a rebalance).
    pub fn retain_partitions(&mut self, owned: impl Fn(i32) -> bool) {
        self.waiting.retain(|p, _| owned(*p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(partition: i32, partitions: u32) -> Marker {
        Marker {
            upstream: Some(Upstream {
                topic: "trips".into(),
                partition,
                partitions,
            }),
        }
    }

    #[test]
    fn markers_round_trip_and_bad_ones_are_refused() {
        assert_eq!(Marker::default().to_json(), b"{}");
        let marker = forwarded(2, 6);
        assert_eq!(
            String::from_utf8(marker.to_json()).unwrap(),
            r#"{"upstream":{"topic":"trips","partition":2,"partitions":6}}"#
        );
        assert_eq!(Marker::parse(&marker.to_json()), Ok(marker));
        assert_eq!(Marker::parse(b"{}"), Ok(Marker::default()));
        for bad in [
            &b"not json"[..],
            br#"{"upstream":{"topic":"trips","partition":6,"partitions":6}}"#,
            br#"{"upstream":{"topic":"trips","partition":-1,"partitions":6}}"#,
            br#"{"end":true}"#,
        ] {
            let error = Marker::parse(bad).unwrap_err();
            assert!(
                error.starts_with("malformed end-of-stream marker"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_partition_ends_once_every_upstream_partition_has() {
        let mut ends = Ends::default();
        // The writer's own end ends the partition at once.
        assert!(ends.record(0, &Marker::default()));
        // Forwarded ends: all three upstream partitions, in any order, repeats counted once.
        assert!(!ends.record(1, &forwarded(2, 3)));
        assert!(!ends.record(1, &forwarded(2, 3)));
        assert!(!ends.record(1, &forwarded(0, 3)));
        assert!(
            !ends.record(5, &forwarded(1, 3)),
            "another partition counts apart"
        );
        assert!(ends.record(1, &forwarded(1, 3)));
        // Ended: the next replay's markers count from none again.
        assert!(!ends.record(1, &forwarded(1, 3)));
        // An upstream with another partition count (it grew) starts the count again.
        assert!(!ends.record(1, &forwarded(0, 4)));
        assert!(!ends.record(1, &forwarded(1, 4)));
        assert!(!ends.record(1, &forwarded(2, 4)));
        assert!(ends.record(1, &forwarded(3, 4)));
        // A revoked partition's count is forgotten.
        assert!(!ends.record(5, &forwarded(0, 3)));
        ends.retain_partitions(|p| p != 5);
        assert!(!ends.record(5, &forwarded(2, 3)));
    }
}
