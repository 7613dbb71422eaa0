//! Scored events waiting to be sent, gathered into one batch per output partition (see
//! `streamwatch_common::batch`): a message per thousand events instead of one per event is
//! what lets the scorer and the monitor keep up with a replay.

use std::time::{Duration, Instant};

use streamwatch_common::batch::{partition_for_key, push_event};

/// The limits of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most events in one message; 1 sends each event alone, keyed by its trip id.
    pub max_events: usize,
    /// Most payload bytes in one message (a single larger event still goes alone).
    pub max_bytes: usize,
    /// Longest an event waits for its batch to fill.
    pub linger: Duration,
}

/// A message to send: events of one output partition.
#[derive(Debug)]
pub struct Batch {
    /// The output partition, or `None` for a lone event sent with its key (`max_events` 1),
    /// which the producer's partitioner places.
    pub partition: Option<i32>,
    /// The key of a lone event.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The input partition and offset of each event, in order.
    pub sources: Vec<(i32, i64)>,
    /// The input message timestamp of the first event (milliseconds since the epoch).
    pub timestamp_ms: Option<i64>,
    opened: Instant,
}

/// The open batch of each output partition.
#[derive(Debug)]
pub struct Outbox {
    limits: BatchLimits,
    open: Vec<Option<Batch>>,
    /// Events in open batches.
    waiting: usize,
}

impl Outbox {
    /// An outbox for a topic of `partitions` partitions.
    pub fn new(partitions: usize, limits: BatchLimits) -> Self {
        assert!(partitions > 0, "a topic has at least one partition");
        Self {
            limits: BatchLimits {
                max_events: limits.max_events.max(1),
                ..limits
            },
            open: (0..partitions).map(|_| None).collect(),
            waiting: 0,
        }
    }

    /// The output topic's partition count.
    pub fn partitions(&self) -> usize {
        self.open.len()
    }

    /// Events waiting in open batches.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Adds a scored event (`key` is its trip id); returns the batches ready to send, in
    /// order: the one this event did not fit in, and this event's once full.
    pub fn push(
        &mut self,
        key: &[u8],
        event: &[u8],
        source: (i32, i64),
        timestamp_ms: Option<i64>,
        now: Instant,
    ) -> Vec<Batch> {
        if self.limits.max_events == 1 {
            return vec![Batch {
                partition: None,
                key: Some(key.to_vec()),
                payload: event.to_vec(),
                sources: vec![source],
                timestamp_ms,
                opened: now,
            }];
        }
        let partition = partition_for_key(key, self.open.len());
        let slot = &mut self.open[partition as usize];
        let mut ready = Vec::new();
        if slot
            .as_ref()
            .is_some_and(|batch| batch.payload.len() + event.len() + 1 > self.limits.max_bytes)
        {
            ready.extend(slot.take());
        }
        let batch = slot.get_or_insert_with(|| Batch {
            partition: Some(partition),
            key: None,
            payload: Vec::with_capacity(self.limits.max_bytes.min(1 << 20)),
            sources: Vec::with_capacity(self.limits.max_events.min(1 << 16)),
            timestamp_ms,
            opened: now,
        });
        push_event(&mut batch.payload, event);
        batch.sources.push(source);
        if batch.sources.len() >= self.limits.max_events
            || batch.payload.len() >= self.limits.max_bytes
        {
            ready.extend(slot.take());
        }
        self.waiting = self.waiting + 1 - ready.iter().map(|b| b.sources.len()).sum::<usize>();
        ready
    }

    /// When the oldest open batch is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.open
            .iter()
            .flatten()
            .map(|batch| batch.opened + self.limits.linger)
            .min()
    }

    /// The batches due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Batch> {
        let linger = self.limits.linger;
        let due = self
            .open
            .iter_mut()
            .filter(|slot| slot.as_ref().is_some_and(|b| b.opened + linger <= now))
            .filter_map(Option::take)
            .collect::<Vec<Batch>>();
        self.waiting -= due.iter().map(|b| b.sources.len()).sum::<usize>();
        due
    }

    /// Every open batch, oldest first.
    pub fn take_all(&mut self) -> Vec<Batch> {
        let mut all: Vec<Batch> = self.open.iter_mut().filter_map(Option::take).collect();
        all.sort_by_key(|batch| batch.opened);
        self.waiting = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use streamwatch_common::batch::events;

    use super::*;

    fn limits(max_events: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_events,
            max_bytes,
            linger: Duration::from_millis(20),
        }
    }

    fn event(i: i64) -> Vec<u8> {
        format!(r#"{{"trip_id":"t{i}"}}"#).into_bytes()
    }

    #[test]
    fn a_batch_is_ready_when_full_and_holds_one_partitions_events_in_order() {
        let mut outbox = Outbox::new(3, limits(4, 1 << 20));
        let now = Instant::now();
        let mut sent = Vec::new();
        for i in 0..40 {
            let key = format!("t{i}");
            sent.extend(outbox.push(key.as_bytes(), &event(i), (0, i), Some(i), now));
        }
        assert!(sent.iter().all(|b| b.sources.len() == 4));
        for batch in &sent {
            let partition = batch.partition.unwrap();
            let offsets: Vec<i64> = batch.sources.iter().map(|s| s.1).collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
            for (&(_, offset), (_, line)) in batch.sources.iter().zip(events(&batch.payload)) {
                assert_eq!(line, event(offset));
                assert_eq!(
                    partition_for_key(format!("t{offset}").as_bytes(), 3),
                    partition
                );
            }
            assert_eq!(batch.timestamp_ms, Some(offsets[0]));
        }
        let rest = outbox.waiting();
        assert_eq!(sent.len() * 4 + rest, 40);
        let all = outbox.take_all();
        assert_eq!(all.iter().map(|b| b.sources.len()).sum::<usize>(), rest);
        assert_eq!(outbox.waiting(), 0);
    }

    #[test]
    fn a_batch_is_due_after_the_linger() {
        let mut outbox = Outbox::new(1, limits(100, 1 << 20));
        let start = Instant::now();
        assert!(outbox.push(b"a", &event(1), (0, 1), None, start).is_empty());
        assert!(outbox
            .push(
                b"b",
                &event(2),
                (0, 2),
                None,
                start + Duration::from_millis(15)
            )
            .is_empty());
        assert_eq!(outbox.next_due(), Some(start + Duration::from_millis(20)));
        assert!(outbox
            .take_due(start + Duration::from_millis(19))
            .is_empty());
        let due = outbox.take_due(start + Duration::from_millis(20));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].sources, vec![(0, 1), (0, 2)]);
        assert_eq!(outbox.next_due(), None);
    }

    #[test]
    fn an_event_that_does_not_fit_sends_the_batch_before_it() {
        let line = event(1).len() + 1;
        let mut outbox = Outbox::new(1, limits(100, 2 * line));
        let now = Instant::now();
        assert!(outbox.push(b"a", &event(1), (0, 1), None, now).is_empty());
        // The second event fills the batch exactly.
        let full = outbox.push(b"a", &event(2), (0, 2), None, now);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].sources, vec![(0, 1), (0, 2)]);
        assert!(outbox.push(b"a", &event(3), (0, 3), None, now).is_empty());
        // Too large to join: the open batch goes first, then the big event alone.
        let big = format!(r#"{{"trip_id":"{}"}}"#, "x".repeat(3 * line)).into_bytes();
        let ready = outbox.push(b"a", &big, (0, 4), None, now);
        let sources: Vec<_> = ready.iter().map(|b| b.sources.clone()).collect();
        assert_eq!(sources, vec![vec![(0, 3)], vec![(0, 4)]]);
        assert_eq!(outbox.waiting(), 0);
        assert_eq!(outbox.next_due(), None);
    }

    #[test]
    fn one_event_per_message_keeps_the_key_and_the_bare_payload() {
        let mut outbox = Outbox::new(6, limits(1, 1 << 20));
        let mut ready = outbox.push(b"t7", &event(7), (2, 70), Some(5), Instant::now());
        assert_eq!(ready.len(), 1);
        let batch = ready.pop().unwrap();
        assert_eq!(batch.partition, None);
        assert_eq!(batch.key.as_deref(), Some(&b"t7"[..]));
        assert_eq!(batch.payload, event(7));
        assert_eq!(outbox.waiting(), 0);
    }
}
