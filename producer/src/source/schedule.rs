//! The order a replay publishes in: the trips by event time, merged lazily with their
//! completions by completion time. Pure (no Kafka).
//!
//! Events with equal times: completions first, then the trips in their order, each trip directly
//! followed by its own completion when that has the same time (a zero-length trip). Completions
//! with equal times follow their trips' order.
//!
//! A completion is known once its trip is published, so only the completions of trips still
//! under way are held (a heap); the rare completions that precede their own trip (TLC files have
//! some dropoffs before the pickup) were noted by [`TripEvents::load`] and are merged from there.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::NaiveDateTime;

use super::parquet::TripEvents;

/// What to publish next, by the index of its trip in [`TripEvents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The trip event.
    Trip(usize),
    /// The trip's completion event.
    Completion(usize),
}

/// An item with its event time (a trip's event time, a completion's completion time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    pub time: NaiveDateTime,
    pub item: Item,
}

/// Sort key of an item: (time, rank, trip index, after its trip). Completions at a time rank 0,
/// trips rank 1; a completion at its own trip's time takes the trip's rank and sorts right after
/// it. Every item has its own key.
type Key = (NaiveDateTime, u8, usize, u8);

fn trip_key(time: NaiveDateTime, trip: usize) -> Key {
    (time, 1, trip, 0)
}

fn completion_key(completion: NaiveDateTime, start: NaiveDateTime, trip: usize) -> Key {
    if completion == start {
        (completion, 1, trip, 1)
    } else {
        (completion, 0, trip, 0)
    }
}

/// Iterates over the trips and their completions in event-time order.
pub struct Schedule<'a> {
    events: &'a TripEvents,
    next_trip: usize,
    /// Completions of published trips that end at or after their trip's event time.
    pending: BinaryHeap<Reverse<Key>>,
    /// Completions that precede their trip's event time, sorted.
    early: &'a [(NaiveDateTime, usize)],
}

impl<'a> Schedule<'a> {
    pub fn new(events: &'a TripEvents) -> Self {
        Self {
            events,
            next_trip: 0,
            pending: BinaryHeap::new(),
            early: events.early_completions(),
        }
    }

    /// Completions waiting for their time (held in memory).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Iterator for Schedule<'_> {
    type Item = Scheduled;

    fn next(&mut self) -> Option<Scheduled> {
        let trip = (self.next_trip < self.events.len()).then(|| {
            let i = self.next_trip;
            trip_key(self.events.event_time(i), i)
        });
        let pending = self.pending.peek().map(|Reverse(key)| *key);
        let early = self
            .early
            .first()
            .map(|&(time, i)| completion_key(time, self.events.event_time(i), i));
        let next = [trip, pending, early].into_iter().flatten().min()?;
        let (time, _, i, _) = next;
        if Some(next) == trip {
            self.next_trip += 1;
            if let Some(completion) = self.events.completion_time(i) {
                if completion >= time {
                    self.pending
                        .push(Reverse(completion_key(completion, time, i)));
                }
            }
            return Some(Scheduled {
                time,
                item: Item::Trip(i),
            });
        }
        if Some(next) == pending {
            self.pending.pop();
        } else {
            self.early = &self.early[1..];
        }
        Some(Scheduled {
            time,
            item: Item::Completion(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
        TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::record::Field as ParquetField;
    use serde_json::{json, Value};
    use streamwatch_common::events::parse_timestamp;

    use super::*;
    use crate::source::parquet::{duration_minutes, CompletionOptions, ReplayOptions};

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data")
            .join(name)
    }

    fn ts(text: &str) -> NaiveDateTime {
        crate::config::parse_time_bound(text).unwrap()
    }

    fn options(time_column: &str) -> ReplayOptions {
        ReplayOptions {
            time_column: time_column.into(),
            required_columns: Vec::new(),
            from: None,
            to: None,
            limit: None,
            completions: Some(CompletionOptions {
                time_column: None,
                truth_field: "duration_min".into(),
            }),
        }
    }

    struct Temp(PathBuf);

    impl Temp {
        fn parquet(name: &str, columns: Vec<(&str, ArrayRef)>) -> Self {
            let fields: Vec<Field> = columns
                .iter()
                .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
                .collect();
            let batch = RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns.into_iter().map(|(_, a)| a).collect(),
            )
            .unwrap();
            let dir = std::env::temp_dir().join(format!(
                "streamwatch-producer-schedule-{}-{name}",
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
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    fn micros(times: &[Option<&str>]) -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(
            times
                .iter()
                .map(|t| t.map(|t| ts(t).and_utc().timestamp_micros()))
                .collect::<Vec<_>>(),
        ))
    }

    /// Each scheduled item as `T<row>` or `C<row>` (rows of the file) with its time.
    fn schedule(events: &TripEvents) -> Vec<(String, NaiveDateTime)> {
        let (mut key, mut payload) = (String::new(), Vec::new());
        Schedule::new(events)
            .map(|Scheduled { time, item }| {
                let (tag, i) = match item {
                    Item::Trip(i) => ("T", i),
                    Item::Completion(i) => ("C", i),
                };
                if tag == "T" {
                    events.write_event(i, &mut key, &mut payload).unwrap();
                } else {
                    assert!(events.write_completion(i, &mut key, &mut payload));
                }
                let row = key.rsplit(':').next().unwrap();
                (format!("{tag}{row}"), time)
            })
            .collect()
    }

    /// The index of the event with this trip id.
    fn index_of(events: &TripEvents, trip_id: &str) -> usize {
        let (mut key, mut payload) = (String::new(), Vec::new());
        (0..events.len())
            .find(|&i| {
                events.write_event(i, &mut key, &mut payload).unwrap();
                key == trip_id
            })
            .unwrap()
    }

    fn completion(events: &TripEvents, i: usize) -> Value {
        let (mut key, mut payload) = (String::new(), Vec::new());
        assert!(events.write_completion(i, &mut key, &mut payload));
        let value: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(value["trip_id"], json!(key));
        value
    }

    #[test]
    fn merge_order_ties_and_early_completions() {
        let pickup = micros(&[
            Some("2022-02-01T10:00:00"), // 0: ends 10:30
            Some("2022-02-01T10:10:00"), // 1: ends 10:20
            Some("2022-02-01T10:20:00"), // 2: zero length, at the time trip 1 ends
            Some("2022-02-01T10:20:00"), // 3: ends before its pickup, at 10:05
            Some("2022-02-01T10:25:00"), // 4: no dropoff
            Some("2022-02-01T10:20:00"), // 5: ends 10:30, like trip 0
            None,                        // 6: no event time, no trip
            Some("2022-02-01T10:05:00"), // 7: zero length, at trip 3's early completion
        ]);
        let dropoff = micros(&[
            Some("2022-02-01T10:30:00"),
            Some("2022-02-01T10:20:00"),
            Some("2022-02-01T10:20:00"),
            Some("2022-02-01T10:05:00"),
            None,
            Some("2022-02-01T10:30:00"),
            Some("2022-02-01T10:40:00"),
            Some("2022-02-01T10:05:00"),
        ]);
        let file = Temp::parquet(
            "merge",
            vec![
                ("lpep_pickup_datetime", pickup),
                ("lpep_dropoff_datetime", dropoff),
            ],
        );
        let events = TripEvents::load(&file.0, &options("lpep_pickup_datetime")).unwrap();
        let stats = events.stats();
        assert_eq!(stats.null_event_time, 1);
        assert_eq!(stats.no_completion_time, 1);
        assert_eq!(stats.early_completions, 1);
        assert_eq!(events.completion_column(), Some("lpep_dropoff_datetime"));

        let order: Vec<(String, NaiveDateTime)> = schedule(&events);
        let names: Vec<&str> = order.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "T0", // 10:00
                "C3", // 10:05, before its own trip and before trip 7 at the same time
                "T7", "C7", // 10:05, a zero-length trip: its completion right after it
                "T1", // 10:10
                "C1", // 10:20: completions first
                "T2", "C2", // 10:20, zero length
                "T3", // 10:20 (completed at 10:05)
                "T5", // 10:20
                "T4", // 10:25, no completion
                "C0", "C5", // 10:30, in trip order
            ]
        );
        assert!(order.windows(2).all(|w| w[0].1 <= w[1].1), "{order:?}");

        let early = completion(&events, index_of(&events, "merge:3"));
        assert_eq!(
            early,
            json!({
                "trip_id": "merge:3",
                "event_time": "2022-02-01T10:05:00",
                "prediction_time": "2022-02-01T10:20:00",
                "duration_min": -15.0,
            })
        );
        // Byte for byte: field order and the f64 written as such.
        let (mut key, mut payload) = (String::new(), Vec::new());
        assert!(events.write_completion(index_of(&events, "merge:0"), &mut key, &mut payload));
        assert_eq!(key, "merge:0");
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            r#"{"trip_id":"merge:0","event_time":"2022-02-01T10:30:00","prediction_time":"2022-02-01T10:00:00","duration_min":30.0}"#
        );
        let no_dropoff = index_of(&events, "merge:4");
        assert_eq!(events.completion_time(no_dropoff), None);
        payload.clear();
        assert!(!events.write_completion(no_dropoff, &mut key, &mut payload));
        assert!(payload.is_empty());
    }

    #[test]
    fn range_and_limit_select_trips_and_their_completions_follow() {
        let pickup = micros(&[
            Some("2022-02-01T10:00:00"),
            Some("2022-02-01T10:10:00"),
            Some("2022-02-01T10:20:00"),
            Some("2022-02-01T09:00:00"),
        ]);
        let dropoff = micros(&[
            Some("2022-02-01T12:00:00"),
            Some("2022-02-01T09:50:00"),
            Some("2022-02-01T09:55:00"),
            Some("2022-02-01T09:10:00"),
        ]);
        let file = Temp::parquet(
            "range",
            vec![
                ("lpep_pickup_datetime", pickup),
                ("lpep_dropoff_datetime", dropoff),
            ],
        );
        let mut opts = options("lpep_pickup_datetime");
        opts.from = Some(ts("2022-02-01T10:00:00"));
        opts.to = Some(ts("2022-02-01T11:00:00"));
        opts.limit = Some(2);
        let events = TripEvents::load(&file.0, &opts).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events.stats().early_completions, 1);
        let names: Vec<String> = schedule(&events).into_iter().map(|(n, _)| n).collect();
        // Trip 2 is over the limit, so its early completion is not published; trip 0's
        // completion comes after --to.
        assert_eq!(names, ["C1", "T0", "T1", "C0"]);
    }

    #[test]
    fn without_completions_only_trips_are_scheduled() {
        let path = data("green_tripdata_2022-02.parquet");
        let mut opts = options("lpep_pickup_datetime");
        opts.completions = None;
        opts.limit = Some(1000);
        let events = TripEvents::load(&path, &opts).unwrap();
        assert!(!events.has_completions());
        let items: Vec<Scheduled> = Schedule::new(&events).collect();
        assert_eq!(items.len(), 1000);
        for (i, scheduled) in items.iter().enumerate() {
            assert_eq!(scheduled.item, Item::Trip(i));
        }
        let (mut key, mut payload) = (String::new(), Vec::new());
        assert!(!events.write_completion(0, &mut key, &mut payload));
    }

    /// Pickup and dropoff of every row, read with the parquet crate's record API (not Arrow),
    /// in microseconds.
    fn trip_times(path: &Path) -> Vec<(i64, Option<i64>)> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                let row = row.unwrap();
                let mut pickup = None;
                let mut dropoff = None;
                for (name, field) in row.get_column_iter() {
                    let value = match field {
                        ParquetField::TimestampMicros(v) => Some(*v),
                        ParquetField::Null => None,
                        _ => continue,
                    };
                    match name.as_str() {
                        "lpep_pickup_datetime" => pickup = value,
                        "lpep_dropoff_datetime" => dropoff = value,
                        _ => {}
                    }
                }
                (pickup.unwrap(), dropoff)
            })
            .collect()
    }

    /// Every trip of a month is published once and completed once, in event-time order, with
    /// the course's duration as the truth.
    fn check_month(file: &str, trips: usize) {
        let path = data(file);
        let events = TripEvents::load(&path, &options("lpep_pickup_datetime")).unwrap();
        assert_eq!(events.len(), trips);
        let times = trip_times(&path);
        let count = |f: fn(&(i64, Option<i64>)) -> bool| times.iter().filter(|t| f(t)).count();
        let stats = events.stats();
        assert_eq!(stats.no_completion_time as usize, count(|t| t.1.is_none()));
        assert_eq!(
            stats.early_completions as usize,
            count(|t| t.1.is_some_and(|dropoff| dropoff < t.0))
        );
        let stem = file.trim_end_matches(".parquet");

        let mut schedule = Schedule::new(&events);
        let mut most_pending = 0;
        let mut published = vec![false; events.len()];
        let mut completed = vec![false; events.len()];
        let mut previous = None;
        let mut published_trips = 0;
        while let Some(Scheduled { time, item }) = schedule.next() {
            assert!(previous <= Some(time), "{item:?} out of order");
            previous = Some(time);
            most_pending = most_pending.max(schedule.pending());
            match item {
                Item::Trip(i) => {
                    assert_eq!(i, published_trips, "trips keep their order");
                    published_trips += 1;
                    published[i] = true;
                    assert_eq!(time, events.event_time(i));
                }
                Item::Completion(i) => {
                    assert!(!std::mem::replace(&mut completed[i], true));
                    assert_eq!(Some(time), events.completion_time(i));
                    // A completion comes after its trip unless it precedes the trip's time.
                    assert_eq!(published[i], time >= events.event_time(i), "{i}");
                    let value = completion(&events, i);
                    let row: usize = value["trip_id"]
                        .as_str()
                        .unwrap()
                        .strip_prefix(&format!("{stem}:"))
                        .unwrap()
                        .parse()
                        .unwrap();
                    // The course: (dropoff - pickup).total_seconds() / 60, from the raw micros.
                    let (pickup, dropoff) = times[row];
                    let expected = (dropoff.unwrap() - pickup) as f64 / 1e6 / 60.0;
                    assert_eq!(value["duration_min"].as_f64().unwrap(), expected, "{value}");
                    let event_time = parse_timestamp(value["event_time"].as_str().unwrap());
                    assert_eq!(event_time.unwrap(), time);
                    let prediction_time =
                        parse_timestamp(value["prediction_time"].as_str().unwrap());
                    assert_eq!(prediction_time.unwrap(), events.event_time(i));
                }
            }
        }
        assert!(published.iter().all(|p| *p));
        assert!(completed.iter().all(|c| *c));
        // Only trips under way are held, not the month.
        assert!(
            most_pending < 500,
            "{most_pending} completions held at once"
        );
    }

    #[test]
    fn february_2022_trips_and_completions() {
        check_month("green_tripdata_2022-02.parquet", 69_399);
    }

    #[test]
    fn march_2024_trips_and_completions() {
        check_month("green_tripdata_2024-03.parquet", 57_457);
    }

    #[test]
    fn truth_is_the_course_duration_or_the_files_column() {
        let at = |t: &str| ts(t);
        let nanos = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).naive_utc();
        assert_eq!(
            duration_minutes(at("2022-02-01T00:20:21"), at("2022-02-01T00:24:30"), false),
            249.0 / 60.0
        );
        assert_eq!(
            duration_minutes(at("2022-02-01T00:24:30"), at("2022-02-01T00:20:21"), false),
            -249.0 / 60.0
        );
        assert_eq!(
            duration_minutes(nanos(0), nanos(1_500_000_001), true),
            1_500_000_001.0 / 1e9 / 60.0
        );
        assert_eq!(
            duration_minutes(at("2022-02-01T00:00:00"), at("2022-02-02T00:00:00"), false),
            1440.0
        );

        // Row 0 of February 2022: 00:20:21 to 00:24:30.
        let events = TripEvents::load(
            &data("green_tripdata_2022-02.parquet"),
            &ReplayOptions {
                limit: Some(100),
                ..options("lpep_pickup_datetime")
            },
        )
        .unwrap();
        let row0 = completion(&events, index_of(&events, "green_tripdata_2022-02:0"));
        assert_eq!(row0["trip_id"], "green_tripdata_2022-02:0");
        assert_eq!(row0["duration_min"], json!(4.15));
        assert_eq!(row0["event_time"], "2022-02-01T00:24:30");
        assert_eq!(row0["prediction_time"], "2022-02-01T00:20:21");

        // A truth column of that name is taken as it is (null stays null); the completion
        // column is named, a nanosecond string is fine.
        let file = Temp::parquet(
            "truth",
            vec![
                (
                    "start",
                    Arc::new(TimestampNanosecondArray::from(vec![0, 60_000_000_000])),
                ),
                (
                    "end",
                    Arc::new(StringArray::from(vec![
                        "1970-01-01T00:10:00.5",
                        "1970-01-01 00:11:00",
                    ])),
                ),
                (
                    "duration_min",
                    Arc::new(Float64Array::from(vec![Some(9.75), None])),
                ),
                ("minutes", Arc::new(Int64Array::from(vec![10, 11]))),
            ],
        );
        let mut opts = options("start");
        opts.completions = Some(CompletionOptions {
            time_column: Some("end".into()),
            truth_field: "duration_min".into(),
        });
        let events = TripEvents::load(&file.0, &opts).unwrap();
        assert_eq!(completion(&events, 0)["duration_min"], json!(9.75));
        assert_eq!(completion(&events, 1)["duration_min"], Value::Null);
        assert_eq!(
            completion(&events, 0)["event_time"],
            "1970-01-01T00:10:00.500"
        );
        opts.completions.as_mut().unwrap().truth_field = "minutes".into();
        let events = TripEvents::load(&file.0, &opts).unwrap();
        assert_eq!(completion(&events, 1)["minutes"], json!(11.0));
        opts.completions.as_mut().unwrap().truth_field = "computed".into();
        let events = TripEvents::load(&file.0, &opts).unwrap();
        assert_eq!(completion(&events, 0)["computed"], json!(600.5 / 60.0));
        assert_eq!(completion(&events, 1)["computed"], json!(10.0));
    }

    #[test]
    fn completion_columns_are_found_or_named() {
        let times = micros(&[Some("2022-02-01T10:00:00")]);
        let file = Temp::parquet(
            "columns",
            vec![
                ("tpep_pickup_datetime", times.clone()),
                ("tpep_dropoff_datetime", times.clone()),
                ("when", times),
                ("label", Arc::new(StringArray::from(vec!["long"]))),
                ("count", Arc::new(Int64Array::from(vec![3]))),
            ],
        );
        let events = TripEvents::load(&file.0, &options("tpep_pickup_datetime")).unwrap();
        assert_eq!(events.completion_column(), Some("tpep_dropoff_datetime"));

        let message = |opts: &ReplayOptions| {
            TripEvents::load(&file.0, opts)
                .err()
                .expect("the load fails")
                .to_string()
        };
        let mut opts = options("when");
        opts.completions.as_mut().unwrap().time_column = Some("done".into());
        let error = message(&opts);
        assert!(
            error.contains("done") && error.contains("columns.parquet"),
            "{error}"
        );
        opts.completions.as_mut().unwrap().time_column = Some("count".into());
        let error = message(&opts);
        assert!(
            error.contains("time column count") && error.contains("Int64"),
            "{error}"
        );
        opts.completions.as_mut().unwrap().time_column = Some("label".into());
        let error = message(&opts);
        assert!(
            error.contains("row 0") && error.contains("label value \"long\" is not a timestamp"),
            "{error}"
        );
        opts.completions.as_mut().unwrap().time_column = None;
        opts.completions.as_mut().unwrap().truth_field = "label".into();
        let error = message(&opts);
        assert!(
            error.contains("truth column label") && error.contains("Utf8"),
            "{error}"
        );

        let file = Temp::parquet(
            "nodropoff",
            vec![("pickup_at", micros(&[Some("2022-02-01T10:00:00")]))],
        );
        let error = TripEvents::load(&file.0, &options("pickup_at"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("dropoff_at, lpep_dropoff_datetime")
                && error.contains("--completion-time-column"),
            "{error}"
        );
    }
}
