//! Many events in one Kafka message: the scorer sends its scored events in batches, one JSON
//! object per line (newline-delimited JSON), marked by a `content-type` header. A message
//! without the header is one JSON event, as every producer of live events sends them.
//!
//! A batch holds events of one partition only, the one librdkafka's default partitioner gives
//! each event's trip id, so the scored topic stays co-partitioned with the completions (which
//! the producer keys by trip id): the monitor's scale-out workers join partition p of one with
//! partition p of the other.

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The header that marks a batch.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Its value: one JSON object per line.
pub const NDJSON: &str = "application/x-ndjson";

/// Whether a message with these headers is a batch of events.
pub fn is_batch<H: Headers + ?Sized>(headers: Option<&H>) -> bool {
    has_content_type(headers, NDJSON)
}

/// Whether the headers hold `content-type: <content_type>`.
pub(crate) fn has_content_type<H: Headers + ?Sized>(
    headers: Option<&H>,
    content_type: &str,
) -> bool {
    headers.is_some_and(|headers| {
        (0..headers.count()).any(|i| {
            let header = headers.get(i);
            header.key == CONTENT_TYPE_HEADER && header.value == Some(content_type.as_bytes())
        })
    })
}

/// The headers a batch is sent with.
pub fn batch_headers() -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: CONTENT_TYPE_HEADER,
        value: Some(NDJSON),
    })
}

/// The events of a batch's payload, with their index in the batch: its non-blank lines.
pub fn events(payload: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', payload)
        .chain(std::iter::once(payload.len()))
        .map(move |end| {
            let line = &payload[start..end];
            start = end + 1;
            line
        })
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .enumerate()
        .map(|(index, line)| (index as u32, line))
}

/// Appends one JSON event to a batch as a line. Line breaks inside a JSON document can only be
/// whitespace between its tokens (strings carry them escaped), so they become spaces.
pub fn push_event(batch: &mut Vec<u8>, event: &[u8]) {
    let start = batch.len();
    batch.extend_from_slice(event);
    // Found with memchr (SIMD): a byte-at-a-time scan was a noticeable part of the scorer.
    for at in memchr::memchr2_iter(b'\n', b'\r', event) {
        batch[start + at] = b' ';
    }
    batch.push(b'\n');
}

/// The partition librdkafka's default partitioner (`consistent_random`) gives a non-empty
/// key among `partitions`: CRC-32 of the key modulo the partition count.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (crc32fast::hash(key) % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    use super::*;

    #[test]
    fn events_are_the_non_blank_lines_in_order() {
        let mut batch = Vec::new();
        push_event(&mut batch, br#"{"a":1}"#);
        push_event(&mut batch, b"{\n  \"b\": \"x\\ny\"\r\n}");
        push_event(&mut batch, br#"not json"#);
        let events: Vec<_> = events(&batch).collect();
        assert_eq!(
            events,
            vec![
                (0, &br#"{"a":1}"#[..]),
                (1, &b"{   \"b\": \"x\\ny\"  }"[..]),
                (2, &b"not json"[..]),
            ]
        );
        let parsed: serde_json::Value = serde_json::from_slice(events[1].1).unwrap();
        assert_eq!(parsed["b"], "x\ny");
        assert_eq!(
            super::events(b"\n \n{}\n\n").collect::<Vec<_>>(),
            [(0, &b"{}"[..])]
        );
        // A last line without its line break, and an empty payload.
        assert_eq!(
            super::events(b"{}\n[1]").collect::<Vec<_>>(),
            [(0, &b"{}"[..]), (1, &b"[1]"[..])]
        );
        assert_eq!(super::events(b"").count(), 0);
    }

    #[tokio::test]
    async fn partition_for_key_agrees_with_librdkafka() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("keys", 6, 1).unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        for i in 0..200 {
            let key = format!("2022-02-{:02}:{i}", i % 28 + 1);
            let delivered = producer
                .send(
                    FutureRecord::<_, [u8]>::to("keys")
                        .key(&key)
                        .payload(&[][..]),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            assert_eq!(
                delivered.partition,
                partition_for_key(key.as_bytes(), 6),
                "{key}"
            );
        }
    }

    #[test]
    fn batches_and_markers_are_recognised_by_their_header_only() {
        use rdkafka::message::{Message, OwnedMessage, Timestamp};
        let message = |headers: Option<OwnedHeaders>| {
            OwnedMessage::new(
                None,
                None,
                "t".into(),
                Timestamp::NotAvailable,
                0,
                0,
                headers,
            )
        };
        let other = OwnedHeaders::new().insert(Header {
            key: CONTENT_TYPE_HEADER,
            value: Some("application/json"),
        });
        assert!(is_batch(message(Some(batch_headers())).headers()));
        assert!(!is_batch(message(Some(other)).headers()));
        assert!(!is_batch(message(None).headers()));
        // End-of-stream markers are told apart by the same header.
        use crate::end_of_stream::{is_end_of_stream, marker_headers};
        assert!(is_end_of_stream(message(Some(marker_headers())).headers()));
        assert!(!is_batch(message(Some(marker_headers())).headers()));
        assert!(!is_end_of_stream(message(Some(batch_headers())).headers()));
        assert!(!is_end_of_stream(message(None).headers()));
    }
}
