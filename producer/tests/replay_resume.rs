//! Against a real broker (KAFKA_BROKERS): a paced replay with completions into fresh 3-partition
//! topics is killed with SIGKILL mid-way and run again; the second run resumes (every trip and
//! completion of the range ends up in the topics, with few duplicates), and a third run on the
//! complete topics sends nothing. Skipped with a notice when KAFKA_BROKERS is unset.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::parquet::record::Field;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use streamwatch_common::end_of_stream::is_end_of_stream;
use streamwatch_common::events::parse_timestamp;
use streamwatch_common::kafka::KafkaArgs;

// This test uses only part of the shared helpers.
#[allow(dead_code)]
mod support;
use support::{kafka, producer, unique};

const PARTITIONS: i32 = 3;
const FROM: &str = "2022-02-01T06:00:00";
const TO: &str = "2022-02-01T10:00:00";
/// Four hours of trips in about six seconds.
const SPEED: f64 = 2400.0;
/// Longest pause, in seconds: the completions of the few long trips come soon after the others.
const MAX_PAUSE: f64 = 1.0;
/// Re-sent events allowed per topic: those in flight when the producer was killed (it is paced
/// at a few hundred events a second and the client lingers 5 ms).
const MOST_DUPLICATES: usize = 25;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/green_tripdata_2022-02.parquet")
}

async fn create_topic(kafka: &KafkaArgs, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().unwrap().create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("could not create {topic}: {code}"));
    }
}

/// The keys of every message of `topic` (but end-of-stream markers), read from the beginning
/// of each partition to its end.
async fn keys(kafka: &KafkaArgs, topic: &str) -> Vec<String> {
    let mut config = kafka.client_config().unwrap();
    config
        .set("group.id", "producer-test-resume-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100");
    let consumer: StreamConsumer = config.create().unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut keys = Vec::new();
    let mut at_end = BTreeSet::new();
    while at_end.len() < PARTITIONS as usize {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic} stalled"))
        {
            // A finished replay's end-of-stream markers carry no key.
            Ok(message) if is_end_of_stream(message.headers()) => {}
            Ok(message) => keys.push(String::from_utf8(message.key().unwrap().to_vec()).unwrap()),
            Err(KafkaError::PartitionEOF(partition)) => {
                at_end.insert(partition);
            }
            Err(error) => panic!("reading {topic}: {error}"),
        }
    }
    // Closing a consumer may hang on the local broker: nothing waits for it.
    std::thread::spawn(move || drop(consumer));
    keys
}

/// Pickup and dropoff of the rows picked up in `[FROM, TO)`, by trip id, read with the parquet
/// crate's record API.
fn expected_trips() -> BTreeMap<String, (NaiveDateTime, NaiveDateTime)> {
    let (from, to) = (parse_timestamp(FROM).unwrap(), parse_timestamp(TO).unwrap());
    let path = data();
    let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    let mut trips = BTreeMap::new();
    for (index, row) in reader.get_row_iter(None).unwrap().enumerate() {
        let row = row.unwrap();
        let column = |wanted: &str| {
            row.get_column_iter()
                .find_map(|(name, field)| match field {
                    Field::TimestampMicros(micros) if name == wanted => Some(
                        chrono::DateTime::from_timestamp_micros(*micros)
                            .unwrap()
                            .naive_utc(),
                    ),
                    _ => None,
                })
                .unwrap()
        };
        let pickup = column("lpep_pickup_datetime");
        if from <= pickup && pickup < to {
            trips.insert(
                format!("{stem}:{index}"),
                (pickup, column("lpep_dropoff_datetime")),
            );
        }
    }
    trips
}

/// A running replay and the lines it wrote on stderr so far.
struct Replay {
    child: Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Replay {
    fn start(args: &[String]) -> Self {
        let mut child = producer()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = mpsc::channel();
        let pipe = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stderr,
            log: Vec::new(),
        }
    }

    /// Waits for the stderr line holding `marker`.
    fn wait_for(&mut self, marker: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no {marker:?} on stderr:\n{}", self.log.join("\n")));
            self.log.push(line.clone());
            if line.contains(marker) {
                return line;
            }
        }
    }

    /// Waits for the end of the run; its summary line (stdout) and its log.
    fn finish(mut self) -> (String, Vec<String>) {
        let output: Output = self.child.wait_with_output().unwrap();
        self.log.extend(self.stderr.try_iter());
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}\n{}", self.log.join("\n"));
        (stdout, self.log)
    }
}

/// The `name=value` fields of a summary or log line (without the log's colours).
fn fields(line: &str) -> BTreeMap<String, String> {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence: ESC [ parameters letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn number(fields: &BTreeMap<String, String>, name: &str) -> u64 {
    fields
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
        .parse()
        .unwrap()
}

/// Counts each key; checks that every one is an expected trip id.
fn count(
    keys: &[String],
    expected: &BTreeMap<String, (NaiveDateTime, NaiveDateTime)>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        assert!(
            expected.contains_key(key),
            "{key} is not a trip of the range"
        );
        *counts.entry(key.clone()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_killed_replay_resumes_and_a_finished_one_sends_nothing() {
    let Some(kafka) = kafka() else { return };
    let trips_topic = unique("resume-trips");
    let completions_topic = unique("resume-completions");
    create_topic(&kafka, &trips_topic).await;
    create_topic(&kafka, &completions_topic).await;
    let expected = expected_trips();
    let n = expected.len();
    assert!(n > 300, "{n} trips between {FROM} and {TO}");
    assert!(expected.values().all(|(pickup, dropoff)| dropoff >= pickup));

    let replay = |speed: f64, more: &[&str]| -> Vec<String> {
        let speed = speed.to_string();
        let max_pause = MAX_PAUSE.to_string();
        let file = data();
        let mut args = vec![
            "replay",
            "--from",
            FROM,
            "--to",
            TO,
            "--speed",
            &speed,
            "--max-pause",
            &max_pause,
            "--topic",
            &trips_topic,
            "--completions-topic",
            &completions_topic,
            "--brokers",
            &kafka.brokers,
            "--file",
            file.to_str().unwrap(),
        ];
        args.extend(more);
        args.into_iter().map(str::to_owned).collect()
    };
    let args = replay(SPEED, &[]);

    // 1. Killed with SIGKILL about half-way.
    let mut first = Replay::start(&args);
    first.wait_for("replaying from the start");
    std::thread::sleep(Duration::from_secs(3));
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let trips_after_kill = count(&keys(&kafka, &trips_topic).await, &expected);
    let completions_after_kill = count(&keys(&kafka, &completions_topic).await, &expected);
    let published = trips_after_kill.len();
    assert!(
        published > 0 && published < n,
        "the kill should come mid-way: {published} of {n} trips published"
    );
    println!(
        "killed after {published} of {n} trips and {} completions",
        completions_after_kill.len()
    );

    // 2. Run again: it resumes.
    let started = Instant::now();
    let mut second = Replay::start(&args);
    let resumed = fields(&second.wait_for("already published: resuming at"));
    let (summary, log) = second.finish();
    let seconds = started.elapsed().as_secs_f64();
    let summary = fields(&summary);
    println!("second run ({seconds:.1} s): {summary:?}\n{resumed:?}");
    assert_eq!(number(&summary, "events"), n as u64, "{summary:?}");
    assert_eq!(number(&summary, "completions"), n as u64, "{summary:?}");
    assert_eq!(number(&resumed, "trips_found"), published as u64);
    let skipped = number(&summary, "already_published");
    let sent = number(&summary, "sent");
    assert!(skipped > 0 && skipped as usize <= published, "{summary:?}");
    assert_eq!(skipped + sent, n as u64, "{summary:?}");
    assert_eq!(number(&summary, "delivered"), sent);
    let completions_skipped = number(&summary, "completions_already_published");
    let completions_sent = number(&summary, "completions_sent");
    assert_eq!(completions_skipped + completions_sent, n as u64);
    assert!(completions_skipped as usize <= completions_after_kill.len());

    let trips = count(&keys(&kafka, &trips_topic).await, &expected);
    let completions = count(&keys(&kafka, &completions_topic).await, &expected);
    for (name, counts) in [("trips", &trips), ("completions", &completions)] {
        assert!(
            counts.keys().eq(expected.keys()),
            "{name}: {} of {n} trip ids",
            counts.len()
        );
        let duplicates: usize = counts.values().map(|c| c - 1).sum();
        println!("{name}: {duplicates} duplicates");
        assert!(
            duplicates <= MOST_DUPLICATES,
            "{name}: {duplicates} duplicates"
        );
    }
    // What the second run sent is all that was added.
    let total = |counts: &BTreeMap<String, usize>| counts.values().sum::<usize>() as u64;
    assert_eq!(total(&trips), total(&trips_after_kill) + sent);
    assert_eq!(
        total(&completions),
        total(&completions_after_kill) + completions_sent
    );

    // Pacing went on from the resumed event time: the publishing took about the event time
    // left divided by the speed (gaps capped at --max-pause), with no pause for the
    // part already published.
    let resume_time = parse_timestamp(&resumed["resume_time"]).unwrap();
    let mut times: Vec<NaiveDateTime> = expected
        .values()
        .flat_map(|(pickup, dropoff)| [*pickup, *dropoff])
        .filter(|time| *time >= resume_time)
        .collect();
    times.sort();
    let paced: f64 = times
        .windows(2)
        .map(|w| ((w[1] - w[0]).num_milliseconds() as f64 / 1000.0 / SPEED).min(MAX_PAUSE))
        .sum();
    let queued = log
        .iter()
        .find(|line| line.contains("events encoded and queued"))
        .map(|line| fields(line)["seconds"].parse::<f64>().unwrap())
        .expect("the publishing time is logged");
    println!("publishing took {queued:.2} s for {paced:.2} s of paced event time");
    assert!(
        queued > paced - 1.0 && queued < paced + 3.0,
        "publishing took {queued:.2} s for {paced:.2} s of paced event time"
    );

    // 3. On complete topics a replay sends nothing.
    let mut third = Replay::start(&args);
    third.wait_for("nothing to send");
    let (summary, _) = third.finish();
    let summary = fields(&summary);
    assert_eq!(number(&summary, "events"), n as u64);
    assert_eq!(number(&summary, "already_published"), n as u64);
    assert_eq!(number(&summary, "sent"), 0);
    assert_eq!(number(&summary, "completions_sent"), 0);
    assert_eq!(
        keys(&kafka, &trips_topic).await.len(),
        trips.values().sum::<usize>()
    );
    assert_eq!(
        keys(&kafka, &completions_topic).await.len(),
        completions.values().sum::<usize>()
    );

    // 4. --no-resume sends the whole range again.
    let (summary, _) = Replay::start(&replay(0.0, &["--no-resume"])).finish();
    let summary = fields(&summary);
    assert_eq!(number(&summary, "already_published"), 0);
    assert_eq!(number(&summary, "sent"), n as u64);
}
