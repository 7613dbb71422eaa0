//! Resuming a replay that was interrupted (a crash, SIGKILL): before sending, the producer reads
//! the trips topic (and the completions topic, when completions are on) from the beginning of
//! every partition to its end, finds which of this replay's events are already there, and starts
//! at the first event of the replay order that is missing.
//!
//! Why the first missing event: the replay order is deterministic (the trips sorted by event
//! time, ties in file order, merged with their completions by `source::schedule`), and a trip id
//! (`<file stem>:<row>`) maps back to its position in it. The broker keeps each partition in the
//! order it was sent, so what reached a partition is a prefix of the events the replay sent to
//! it, and the first missing position is where that partition stopped: the minimum over the
//! partitions of "the first position after the partition's last one that belongs to it". The
//! events after it that are already there (those that were in flight on other partitions) are
//! sent again; the monitor deduplicates trips and completions by trip id. Resuming at the first
//! missing event also holds without the prefix property (nothing before it is missing), so a
//! topic holding an earlier replay of another range of the same file is handled too.
//!
//! Completions: the replay interleaves trips and completions in one order (a completion at its
//! trip's dropoff time, the few that precede their pickup before their trip), so one position in
//! that merged order is chosen: the first item, trip or completion, missing from its topic. No
//! completion is lost, and the completions re-sent are the ones after that point.
//!
//! Messages of other files, of trips outside this replay's range and malformed ones (no key, a
//! key that is not a trip id of this file, a payload that is not this trip's event) are ignored.
//! The topics must still hold the replay's messages: if retention deleted its beginning, the
//! replay starts again from there.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDateTime;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use streamwatch_common::end_of_stream::is_end_of_stream;
use streamwatch_common::events::{format_timestamp, parse_timestamp};
use streamwatch_common::kafka::{partitions_in, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::source::parquet::TripEvents;
use crate::source::schedule::{Item, Schedule, Scheduled};

/// Longest wait for the next message or partition end while reading a topic.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The group id of the reading consumer, which never joins it nor commits to it.
const READER_GROUP: &str = "streamwatch-producer-resume";

/// Maps the trip ids of a replay (the message keys) back to the events' positions in the
/// replay order.
pub struct Positions {
    prefix: String,
    /// Position of each row of the file; `usize::MAX` for rows not replayed.
    by_row: Vec<usize>,
}

impl Positions {
    pub fn new(events: &TripEvents) -> Self {
        let rows = (0..events.len())
            .map(|i| events.row_index(i) + 1)
            .max()
            .unwrap_or(0);
        let mut by_row = vec![usize::MAX; rows as usize];
        for i in 0..events.len() {
            by_row[events.row_index(i) as usize] = i;
        }
        Self {
            prefix: events.trip_id_prefix().to_owned(),
            by_row,
        }
    }

    /// The position of the replayed event with this trip id (as the message key carries it);
    /// `None` for another file's id, a row outside the replay or anything else.
    pub fn of_key(&self, key: &[u8]) -> Option<usize> {
        let row = key.strip_prefix(self.prefix.as_bytes())?;
        // Only the digits the producer writes: no sign, no leading zeros (`:07` is not row 7).
        if row.is_empty() || !row.iter().all(u8::is_ascii_digit) || row.len() > 1 && row[0] == b'0'
        {
            return None;
        }
        let row: usize = std::str::from_utf8(row).ok()?.parse().ok()?;
        self.by_row.get(row).copied().filter(|&p| p != usize::MAX)
    }
}

/// The topic a message was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Trips,
    Completions,
}

/// The fields of a trip or completion event a resume checks.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    trip_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event_time: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    prediction_time: Option<std::borrow::Cow<'a, str>>,
}

/// The position of the replayed event this message carries: its key is a trip id of the replay
/// and its payload that trip's event (a JSON object with the same `trip_id` and the trip's
/// `event_time`) or completion (`event_time` = the completion time, `prediction_time` = the
/// trip's event time). `None` for anything else.
pub fn match_message(
    events: &TripEvents,
    positions: &Positions,
    kind: Kind,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Option<usize> {
    let key = key?;
    let position = positions.of_key(key)?;
    let probe: Probe<'_> = serde_json::from_slice(payload?).ok()?;
    // The key is the id as written into the JSON string (escaped); the payload's is decoded.
    if probe.trip_id.as_bytes() != key {
        let escaped = serde_json::to_string(&probe.trip_id).ok()?;
        if escaped.as_bytes().get(1..escaped.len() - 1) != Some(key) {
            return None;
        }
    }
    let time = |text: &str| parse_timestamp(text).ok();
    let matches = match kind {
        Kind::Trips => time(&probe.event_time) == Some(events.event_time(position)),
        Kind::Completions => {
            events.completion_time(position).is_some()
                && time(&probe.event_time) == events.completion_time(position)
                && probe.prediction_time.as_deref().and_then(time)
                    == Some(events.event_time(position))
        }
    };
    matches.then_some(position)
}

/// What reading one topic found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Per position of the replay order: whether the topic holds that event.
    pub present: Vec<bool>,
    /// Messages read.
    pub messages: u64,
    /// Messages that are events of this replay (repeated ones included).
    pub matched: u64,
    /// Per partition: the highest position found there.
    pub highest: BTreeMap<i32, usize>,
}

impl Found {
    pub fn new(len: usize) -> Self {
        Self {
            present: vec![false; len],
            messages: 0,
            matched: 0,
            highest: BTreeMap::new(),
        }
    }

    /// Notes one message read from `partition`.
    pub fn record(
        &mut self,
        events: &TripEvents,
        positions: &Positions,
        kind: Kind,
        partition: i32,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        self.messages += 1;
        if let Some(position) = match_message(events, positions, kind, key, payload) {
            self.matched += 1;
            self.present[position] = true;
            let highest = self.highest.entry(partition).or_insert(position);
            *highest = position.max(*highest);
        }
    }

    /// Distinct events of the replay found.
    pub fn distinct(&self) -> usize {
        self.present.iter().filter(|p| **p).count()
    }

    /// Messages that are not events of this replay.
    pub fn ignored(&self) -> u64 {
        self.messages - self.matched
    }
}

/// Where a replay starts: the first item of the replay order (trips and completions merged)
/// that is missing from its topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Items (trips and completions) before it: all already published.
    pub items: usize,
    /// Trips before it, which is also the position of the first trip to send.
    pub trips: usize,
    /// Completions before it.
    pub completions: usize,
    /// Its event time; `None` when nothing is missing.
    pub time: Option<NaiveDateTime>,
}

/// The first item of `schedule` missing from its topic: a trip whose position is not in
/// `trips`, or a completion whose trip's position is not in `completions`.
pub fn resume_point(
    schedule: impl IntoIterator<Item = Scheduled>,
    trips: &[bool],
    completions: &[bool],
) -> ResumePoint {
    let mut point = ResumePoint::default();
    for Scheduled { time, item } in schedule {
        let present = match item {
            Item::Trip(i) => trips.get(i).copied().unwrap_or(false),
            Item::Completion(i) => completions.get(i).copied().unwrap_or(false),
        };
        if !present {
            point.time = Some(time);
            return point;
        }
        point.items += 1;
        match item {
            Item::Trip(_) => point.trips += 1,
            Item::Completion(_) => point.completions += 1,
        }
    }
    point
}

/// Reads `topic` from the beginning of every partition to its end and notes this replay's
/// events. `None` when a signal arrived meanwhile. A topic that does not exist holds nothing.
pub async fn scan(
    kafka: &KafkaArgs,
    topic: &str,
    kind: Kind,
    events: &TripEvents,
    positions: &Positions,
    shutdown: &CancellationToken,
) -> Result<Option<Found>> {
    let mut found = Found::new(events.len());
    let failed = |source| Error::Resume {
        topic: topic.to_owned(),
        source,
    };
    // A plain consumer assigned to every partition: it joins no group (librdkafka needs a
    // group id to assign partitions, but without a subscription it is never used) and commits
    // nothing; it reports the end of each partition.
    let mut config = kafka.client_config()?;
    config
        .set("group.id", READER_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        // Bounds the messages fetched ahead of the reading (librdkafka's default is 64 MiB).
        .set("queued.max.messages.kbytes", "16384");
    let consumer: StreamConsumer = config.create().map_err(failed)?;
    // The consumer asks for the topic's metadata itself: besides the partition count, it
    // learns each partition's leader, without which librdkafka retries the first offset query
    // of an assigned partition only after a fixed 500 ms.
    let (name, timeout) = (topic.to_owned(), kafka.connect_timeout());
    let (consumer, metadata) = tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&name), timeout);
        (consumer, metadata)
    })
    .await?;
    let metadata = metadata.map_err(|source| streamwatch_common::Error::BrokerUnreachable {
        brokers: kafka.brokers.clone(),
        source,
    })?;
    let partitions = partitions_in(&metadata, topic);
    if partitions == 0 {
        std::thread::spawn(move || drop(consumer));
        return Ok(Some(found));
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(failed)?;
    }
    consumer.assign(&assignment).map_err(failed)?;

    let mut at_end = vec![false; partitions];
    let mut open = partitions;
    let outcome = loop {
        if open == 0 {
            break Ok(Some(found));
        }
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ok(None),
            next = tokio::time::timeout(STALL_TIMEOUT, consumer.recv()) => next,
        };
        match next {
            // An earlier replay's end: not a message to resume from, nor a foreign one.
            Ok(Ok(message)) if is_end_of_stream(message.headers()) => {}
            Ok(Ok(message)) => found.record(
                events,
                positions,
                kind,
                message.partition(),
                message.key(),
                message.payload(),
            ),
            Ok(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(end) = at_end.get_mut(partition as usize) {
                    if !std::mem::replace(end, true) {
                        open -= 1;
                    }
                }
            }
            Ok(Err(error)) => break Err(failed(error)),
            Err(_) => {
                break Err(Error::ResumeStalled {
                    topic: topic.to_owned(),
                    seconds: STALL_TIMEOUT.as_secs(),
                    partitions_at_end: partitions - open,
                    partitions,
                })
            }
        }
    };
    // Closing a consumer can hang on some brokers: stop fetching and let a thread of its own
    // close it, which nothing waits for.
    let _ = consumer.unassign();
    std::thread::spawn(move || drop(consumer));
    outcome
}

/// Reads the topics of a replay and finds where it resumes; logs what it found. `None` when a
/// signal arrived meanwhile.
pub async fn find(
    kafka: &KafkaArgs,
    topic: &str,
    completions_topic: Option<&str>,
    events: &TripEvents,
    shutdown: &CancellationToken,
) -> Result<Option<ResumePoint>> {
    let started = std::time::Instant::now();
    let positions = Positions::new(events);
    let trips = scan(kafka, topic, Kind::Trips, events, &positions, shutdown);
    let completions = async {
        match completions_topic {
            Some(name) => scan(kafka, name, Kind::Completions, events, &positions, shutdown)
                .await
                .map(|found| found.map(Some)),
            None => Ok(Some(None)),
        }
    };
    let (trips, completions) = tokio::join!(trips, completions);
    let (Some(trips), Some(completions)) = (trips?, completions?) else {
        return Ok(None);
    };
    let none = Found::new(0);
    let completions_found = completions.as_ref().unwrap_or(&none);
    let point = resume_point(
        Schedule::new(events),
        &trips.present,
        &completions_found.present,
    );
    let completions_total = completions.as_ref().map_or(0, |_| {
        events.len() - events.stats().no_completion_time as usize
    });
    tracing::info!(
        topic,
        messages = trips.messages,
        ignored = trips.ignored(),
        trips_found = trips.distinct(),
        highest_per_partition = ?trips.highest,
        completions_topic = completions_topic.unwrap_or_default(),
        completions_messages = completions_found.messages,
        completions_ignored = completions_found.ignored(),
        completions_found = completions_found.distinct(),
        events = events.len(),
        completions = completions_total,
        already_published = point.trips,
        completions_already_published = point.completions,
        resume_time = %point.time.map(format_timestamp).unwrap_or_default(),
        seconds = started.elapsed().as_secs_f64(),
        "{}",
        describe(
            &point,
            events.len(),
            completions_total,
            trips.distinct() + completions_found.distinct()
        )
    );
    Ok(Some(point))
}

/// The sentence of the resume log line; `found`: events of the replay found in the topics.
fn describe(point: &ResumePoint, trips: usize, completions: usize, found: usize) -> String {
    match point.time {
        None if point.items == 0 => "nothing to replay".to_owned(),
        None => format!(
            "all {trips} trips and {completions} completions are already published: \
             nothing to send"
        ),
        Some(_) if point.items == 0 && found == 0 => {
            "no event of this replay published yet: replaying from the start".to_owned()
        }
        Some(_) if point.items == 0 => format!(
            "{found} events of this replay published, but not its first: replaying from the \
             start"
        ),
        Some(time) => format!(
            "{} of {trips} trips and {} of {completions} completions already published: \
             resuming at trip position {} ({})",
            point.trips,
            point.completions,
            point.trips,
            format_timestamp(time)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::PathBuf;
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    use super::*;
    use crate::source::parquet::{CompletionOptions, ReplayOptions};

    fn ts(text: &str) -> NaiveDateTime {
        crate::config::parse_time_bound(text).unwrap()
    }

    /// A Parquet file of pickups and dropoffs, removed on drop.
    struct Temp(PathBuf);

    impl Temp {
        fn trips(name: &str, trips: &[(&str, Option<&str>)]) -> Self {
            let micros = |times: Vec<Option<&str>>| -> ArrayRef {
                Arc::new(TimestampMicrosecondArray::from(
                    times
                        .into_iter()
                        .map(|t| t.map(|t| ts(t).and_utc().timestamp_micros()))
                        .collect::<Vec<_>>(),
                ))
            };
            let pickup = micros(trips.iter().map(|t| Some(t.0)).collect());
            let dropoff = micros(trips.iter().map(|t| t.1).collect());
            let schema = Arc::new(Schema::new(vec![
                Field::new("lpep_pickup_datetime", pickup.data_type().clone(), true),
                Field::new("lpep_dropoff_datetime", dropoff.data_type().clone(), true),
            ]));
            let batch = RecordBatch::try_new(schema, vec![pickup, dropoff]).unwrap();
            let dir = std::env::temp_dir().join(format!(
                "streamwatch-producer-resume-{}-{name}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{name}.parquet"));
            let mut writer =
                ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            Self(path)
        }

        fn load(&self, from: Option<&str>, completions: bool) -> TripEvents {
            let options = ReplayOptions {
                time_column: "lpep_pickup_datetime".into(),
                required_columns: Vec::new(),
                from: from.map(ts),
                to: None,
                limit: None,
                completions: completions.then(|| CompletionOptions {
                    time_column: None,
                    truth_field: "duration_min".into(),
                }),
            };
            TripEvents::load(&self.0, &options).unwrap()
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    /// Six trips; the file order is not the event-time order, trip 3 ends before its pickup.
    fn sample() -> Temp {
        Temp::trips(
            "sample",
            &[
                ("2022-02-01T10:20:00", Some("2022-02-01T10:50:00")), // position 3
                ("2022-02-01T10:00:00", Some("2022-02-01T10:15:00")), // position 0
                ("2022-02-01T10:10:00", Some("2022-02-01T10:12:00")), // position 2
                ("2022-02-01T10:30:00", Some("2022-02-01T10:05:00")), // position 4, early
                ("2022-02-01T10:05:00", None),                        // position 1, no dropoff
                ("2022-02-01T10:40:00", Some("2022-02-01T10:45:00")), // position 5
            ],
        )
    }

    /// Every scheduled message: (is a trip, position, key, payload).
    fn messages(events: &TripEvents) -> Vec<(Item, String, Vec<u8>)> {
        Schedule::new(events)
            .map(|Scheduled { item, .. }| {
                let (mut key, mut payload) = (String::new(), Vec::new());
                match item {
                    Item::Trip(i) => events.write_event(i, &mut key, &mut payload).unwrap(),
                    Item::Completion(i) => {
                        assert!(events.write_completion(i, &mut key, &mut payload))
                    }
                }
                (item, key, payload)
            })
            .collect()
    }

    #[test]
    fn trip_ids_map_back_to_replay_positions() {
        let file = sample();
        let events = file.load(None, false);
        let positions = Positions::new(&events);
        for (row, position) in [(0, 3), (1, 0), (2, 2), (3, 4), (4, 1), (5, 5)] {
            assert_eq!(
                positions.of_key(format!("sample:{row}").as_bytes()),
                Some(position),
                "row {row}"
            );
        }
        for other in [
            "sample:6",
            "sample:-1",
            "sample:+1",
            "sample:01",
            "sample:",
            "sample:1 ",
            "sample:99999999999999999999999",
            "other:1",
            "sample1",
            "xsample:1",
            "",
        ] {
            assert_eq!(positions.of_key(other.as_bytes()), None, "{other:?}");
        }

        // Rows outside the replay's range have no position; the others are renumbered.
        let later = file.load(Some("2022-02-01T10:10:00"), false);
        let positions = Positions::new(&later);
        assert_eq!(positions.of_key(b"sample:1"), None);
        assert_eq!(positions.of_key(b"sample:4"), None);
        assert_eq!(positions.of_key(b"sample:2"), Some(0));
        assert_eq!(positions.of_key(b"sample:5"), Some(3));
    }

    #[test]
    fn messages_of_the_replay_are_recognised_and_others_ignored() {
        let file = sample();
        let events = file.load(None, true);
        let positions = Positions::new(&events);
        for (item, key, payload) in messages(&events) {
            let (kind, position) = match item {
                Item::Trip(i) => (Kind::Trips, i),
                Item::Completion(i) => (Kind::Completions, i),
            };
            let matched =
                |k| match_message(&events, &positions, k, Some(key.as_bytes()), Some(&payload));
            assert_eq!(matched(kind), Some(position), "{key}");
            // A trip is not a completion and the other way round.
            let other = if kind == Kind::Trips {
                Kind::Completions
            } else {
                Kind::Trips
            };
            assert_eq!(matched(other), None, "{key} as {other:?}");
        }

        let check = |kind, key: Option<&str>, payload: Option<&str>| {
            match_message(
                &events,
                &positions,
                kind,
                key.map(str::as_bytes),
                payload.map(str::as_bytes),
            )
        };
        let trip = r#"{"x":1,"trip_id":"sample:1","event_time":"2022-02-01T10:00:00"}"#;
        assert_eq!(check(Kind::Trips, Some("sample:1"), Some(trip)), Some(0));
        for (key, payload) in [
            (None, Some(trip)),
            (Some("sample:1"), None),
            (Some("sample:2"), Some(trip)),
            (Some("sample:1"), Some("{not json")),
            (Some("sample:1"), Some("[1]")),
            (Some("sample:1"), Some(r#"{"trip_id":"sample:1"}"#)),
            (
                Some("sample:1"),
                Some(r#"{"trip_id":"sample:1","event_time":"2022-02-01T10:00:01"}"#),
            ),
            (
                Some("sample:1"),
                Some(r#"{"trip_id":"sample:1","event_time":"yesterday"}"#),
            ),
            (
                Some("other:1"),
                Some(r#"{"trip_id":"other:1","event_time":"2022-02-01T10:00:00"}"#),
            ),
        ] {
            assert_eq!(
                check(Kind::Trips, key, payload),
                None,
                "{key:?} {payload:?}"
            );
        }
        let completion = r#"{"trip_id":"sample:1","event_time":"2022-02-01T10:15:00","prediction_time":"2022-02-01T10:00:00","duration_min":15.0}"#;
        assert_eq!(
            check(Kind::Completions, Some("sample:1"), Some(completion)),
            Some(0)
        );
        // Another completion time (another --completion-time-column), or none for this trip.
        let moved = completion.replace("10:15:00", "10:16:00");
        assert_eq!(
            check(Kind::Completions, Some("sample:1"), Some(&moved)),
            None
        );
        let no_dropoff = r#"{"trip_id":"sample:4","event_time":"2022-02-01T10:05:00","prediction_time":"2022-02-01T10:05:00","duration_min":0.0}"#;
        assert_eq!(
            check(Kind::Completions, Some("sample:4"), Some(no_dropoff)),
            None
        );
    }

    fn all(len: usize) -> Vec<bool> {
        vec![true; len]
    }

    #[test]
    fn resume_point_is_the_first_missing_item_of_the_merged_order() {
        let file = sample();
        let events = file.load(None, true);
        let order: Vec<Item> = Schedule::new(&events).map(|s| s.item).collect();
        use Item::{Completion as C, Trip as T};
        // 10:00 T0, 10:05 C4 (early: before its trip, and completions first) and T1,
        // 10:10 T2, 10:12 C2, 10:15 C0, 10:20 T3, 10:30 T4, 10:40 T5, 10:45 C5, 10:50 C3.
        assert_eq!(
            order,
            [
                T(0),
                C(4),
                T(1),
                T(2),
                C(2),
                C(0),
                T(3),
                T(4),
                T(5),
                C(5),
                C(3)
            ]
        );
        let point = |trips: &[bool], completions: &[bool]| {
            resume_point(Schedule::new(&events), trips, completions)
        };
        // Nothing published: from the start.
        assert_eq!(
            point(&[false; 6], &[false; 6]),
            ResumePoint {
                items: 0,
                trips: 0,
                completions: 0,
                time: Some(ts("2022-02-01T10:00:00")),
            }
        );
        // Everything published: nothing to send.
        let complete = point(&all(6), &all(6));
        assert_eq!((complete.items, complete.trips), (11, 6));
        assert_eq!((complete.completions, complete.time), (5, None));

        // Trips up to position 3 and a later one made it, completion C0 did not: resume at
        // C0, before T3, so C0 is not lost and T3 is sent again.
        let trips = [true, true, true, true, false, true];
        let completions = [false, false, true, false, true, false];
        assert_eq!(
            point(&trips, &completions),
            ResumePoint {
                items: 5,
                trips: 3,
                completions: 2,
                time: Some(ts("2022-02-01T10:15:00")),
            }
        );
        // An early completion missing: resume before its trip.
        assert_eq!(
            point(&all(6), &[true, false, true, true, false, true]).items,
            1
        );
        // Completions off: only trips count (the schedule has none).
        let trips_only = file.load(None, false);
        let p = resume_point(Schedule::new(&trips_only), &trips, &[]);
        assert_eq!((p.items, p.trips, p.completions), (4, 4, 0));
        assert_eq!(p.time, Some(ts("2022-02-01T10:30:00")));
    }

    /// A crash leaves every partition with a prefix of what the replay sent to it; resuming at
    /// the first missing item loses nothing and re-sends no more than the rule "lowest of the
    /// partitions' highest positions, plus one" would.
    #[test]
    fn a_crash_loses_nothing_and_resends_only_what_was_in_flight() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/green_tripdata_2022-02.parquet");
        let options = ReplayOptions {
            time_column: "lpep_pickup_datetime".into(),
            required_columns: Vec::new(),
            from: None,
            to: None,
            limit: Some(3000),
            completions: Some(CompletionOptions {
                time_column: None,
                truth_field: "duration_min".into(),
            }),
        };
        let events = TripEvents::load(&path, &options).unwrap();
        let positions = Positions::new(&events);
        let sent = messages(&events);
        let partition = |key: &str| {
            key.bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
                % 3
        };
        // (sent up to, in flight on each partition): the last `lost[p]` messages sent to
        // partition p never arrived.
        for (crash, lost) in [
            (0, [0, 0, 0]),
            (1, [1, 0, 0]),
            (2000, [0, 0, 0]),
            (2000, [3, 0, 7]),
            (4500, [5, 9, 0]),
            (sent.len(), [0, 0, 0]),
            (sent.len(), [0, 2, 1]),
        ] {
            let mut per_partition: [Vec<usize>; 3] = Default::default();
            for (n, (_, key, _)) in sent[..crash].iter().enumerate() {
                per_partition[partition(key) as usize].push(n);
            }
            let mut trips = Found::new(events.len());
            let mut completions = Found::new(events.len());
            let mut delivered = vec![false; sent.len()];
            for (p, ns) in per_partition.iter().enumerate() {
                for &n in &ns[..ns.len().saturating_sub(lost[p])] {
                    delivered[n] = true;
                    let (item, key, payload) = &sent[n];
                    let (found, kind) = match item {
                        Item::Trip(_) => (&mut trips, Kind::Trips),
                        Item::Completion(_) => (&mut completions, Kind::Completions),
                    };
                    found.record(
                        &events,
                        &positions,
                        kind,
                        p as i32,
                        Some(key.as_bytes()),
                        Some(payload),
                    );
                }
            }
            // A few foreign messages change nothing.
            trips.record(
                &events,
                &positions,
                Kind::Trips,
                0,
                Some(b"x:1"),
                Some(b"{}"),
            );
            trips.record(&events, &positions, Kind::Trips, 1, None, None);
            assert_eq!(trips.ignored(), 2);

            let point = resume_point(Schedule::new(&events), &trips.present, &completions.present);
            assert!(
                delivered[..point.items].iter().all(|d| *d),
                "crash at {crash}, {lost:?}: an item before {} is missing",
                point.items
            );
            let first_undelivered = delivered.iter().position(|d| !d).unwrap_or(sent.len());
            assert_eq!(point.items, first_undelivered, "crash at {crash}, {lost:?}");
            // Re-sent: only what was sent after the first lost message.
            let resent = delivered[point.items..].iter().filter(|d| **d).count();
            assert!(resent < 100, "crash at {crash}, {lost:?}: {resent} re-sent");
            // The per-partition rule (lowest highest position + 1, in the merged order).
            let highest = |p: usize| {
                per_partition[p][..per_partition[p].len() - lost[p].min(per_partition[p].len())]
                    .last()
                    .map_or(0, |n| n + 1)
            };
            let rule = (0..3).map(highest).min().unwrap();
            assert!(point.items >= rule, "crash at {crash}, {lost:?}");
            if crash == sent.len() && lost == [0, 0, 0] {
                assert_eq!(point.time, None);
                assert_eq!(point.trips, events.len());
            }
        }
    }
}
