//! The pipeline's speed on the real broker and PostgreSQL, with the release binaries:
//!
//! 1. end to end: February 2022 replayed through producer, scorer, monitor and sink until the
//!    28 daily windows are stored in PostgreSQL, twice: *cold* (the stages started and ready,
//!    the topics not yet created, so the consumers discover them and join their groups on the
//!    clock, as in `scripts/demo.sh`) and *warm* (topics created and every consumer group
//!    joined before the clock starts);
//! 2. the bare produce-and-consume baseline: the producer's own messages (February's trips
//!    and completions, same keys and payloads, same partitions) produced with the stages'
//!    producer settings and consumed by a plain consumer that is already assigned, timed from
//!    the first send to the last message received;
//! 3. the monitor alone: February's scored events ten times over (shifted by 28 days per
//!    copy, distinct trip ids) read from a full 6-partition topic by 1 or more monitor
//!    instances in one consumer group, in events per second of wall time and per CPU-second
//!    (summed over the instances), next to a plain consumer reading the same topic;
//! 4. each stage's peak memory (VmHWM) and CPU time in the cold end-to-end run.
//!
//! ```sh
//! eval "$(bash scripts/services.sh up)"; export KAFKA_BROKERS DATABASE_URL
//! cargo build --release --bins && cargo bench -p streamwatch-tests --bench pipeline
//! ```
//!
//! Options (environment):
//!
//! - `STREAMWATCH_BENCH_MONITORS=1,2,3`: the monitor-alone run for each instance count in
//!   turn, each a fresh consumer group over the same topic (default `1`). Instances that split
//!   the partitions each emit partial windows (see "Known limits"); the bench measures
//!   throughput only. An instance that takes over a partition after a rebalance re-reads it
//!   from the last committed offset, so the events consumed may exceed the topic's.
//! - `STREAMWATCH_BENCH_SCALE_OUT=1`: the instances run as scale-out workers
//!   (`--partials-topic`, a fresh 6-partition topic per run) beside one `monitor merge`; a run
//!   ends when the workers consumed every event and the merger emitted every daily window, and
//!   its CPU time includes the merger's (also shown on its own, with its peak memory and how
//!   long after the workers' last event it emitted the last window).
//! - `STREAMWATCH_BENCH_MONITOR_ARGS="--max-batch 16384"`: extra `monitor run` arguments
//!   for the monitor-alone runs; `{run}` in one becomes a name unique to the run and the
//!   instance count, and is deleted at the end as a topic (`--partials-topic {run}.partials`).
//! - `STREAMWATCH_BENCH_ONLY=monitor`: only the monitor-alone runs (February is scored by the
//!   producer and the scorer first; no end-to-end runs, no baseline).
//! - `STREAMWATCH_BENCH_PERF=/tmp/monitor.perf`: `perf record --call-graph dwarf` of the
//!   monitor instances while they consume (`perf report -i /tmp/monitor.perf`; with several
//!   instance counts, one file per count, `/tmp/monitor.perf.N`), and of this process while
//!   its plain consumer reads the same topic (`/tmp/monitor.perf.bare`).
//! - `STREAMWATCH_BENCH_SCORED=/tmp/scored.jsonl`: writes February's scored events, one per
//!   line.
//! - `STREAMWATCH_BENCH_MONITOR=/path/to/monitor`: runs another monitor binary (before/after).
//! - `STREAMWATCH_BENCH_ALONE_BATCH=1`: scored events per message in the monitor-alone topic
//!   (default 1000, the scorer's batches; 1 is one JSON event per message, keyed by trip id).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use streamwatch_common::batch::{batch_headers, events, is_batch, partition_for_key, push_event};
use streamwatch_common::end_of_stream::is_end_of_stream;
use streamwatch_common::kafka::queue_record;
use streamwatch_tests::{
    bin_dir, connect, create_topics, delete_topics, drop_database, local_broker_pid,
    partition_count, repo_root, signal, Services, Stage,
};

/// The stages' counters of messages consumed and of outputs acknowledged.
const EVENTS_IN: &str = "streamwatch_events_in_total";
const WINDOWS_EMITTED: &str = "streamwatch_monitor_windows_emitted_total";
const EVENTS_OUT: &str = "streamwatch_events_out_total";
/// Trips of February 2022 the producer replays.
const FEBRUARY_TRIPS: usize = 69_376;
/// Copies of February's scored events in the monitor-alone run.
const COPIES: i64 = 10;
/// Event-time shift between copies: February 2022 is exactly four weeks long, so the copies
/// tile the time line without overlap, weekday for weekday.
const SHIFT_DAYS: i64 = 28;
/// The monitor's idle timeout. End to end, the replay's end-of-stream markers close the last
/// day's window before it; in the monitor-alone runs (no markers) the last day waits for it.
const IDLE_TIMEOUT: &str = "1s";
/// The malformed message that shows a warm stage is reading its input topic.
const WARM_UP: &[u8] = b"{not json";

struct Bench {
    brokers: String,
    database_url: String,
    run: String,
    log_dir: PathBuf,
    spec: PathBuf,
    /// Topics and databases to remove at the end.
    topics: Vec<String>,
    databases: Vec<String>,
}

impl Bench {
    fn topic(&mut self, name: &str) -> String {
        let topic = format!("{}.{name}", self.run);
        self.topics.push(topic.clone());
        topic
    }

    fn group(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }
}

// ------------------------------------------------------------------ processes

/// Clock ticks per second of /proc/PID/stat.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU seconds of a process, all threads (`self` for this one).
fn cpu_seconds(pid: &str, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// The broker's process (Tansu, found by its listener's port in /proc), whose CPU time the
/// tables show next to the machine's; none when the broker runs elsewhere.
static BROKER_PID: OnceLock<Option<String>> = OnceLock::new();

/// CPU counters at an instant: busy and total ticks of the whole machine (/proc/stat, all
/// processes) and the broker's CPU seconds (NaN when unknown).
#[derive(Clone, Copy)]
struct Ticks {
    busy: f64,
    total: f64,
    broker: f64,
}

fn machine_ticks() -> Ticks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let at = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let broker = BROKER_PID
        .get()
        .and_then(Option::as_deref)
        .and_then(|pid| cpu_seconds(pid, clock_ticks()))
        .unwrap_or(f64::NAN);
    Ticks {
        busy,
        total: busy + at(3) + at(4) + at(7),
        broker,
    }
}

/// Cores kept busy between two [`machine_ticks`]: by every process on the machine, and by
/// the broker alone.
#[derive(Clone, Copy)]
struct Busy {
    cores: f64,
    broker: f64,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:.2} (broker {:.2})", self.cores, self.broker)
    }
}

fn cores_busy(before: Ticks, after: Ticks) -> Busy {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let total = (after.total - before.total).max(1.0);
    // /proc/stat counts every core's ticks: the wall time is total / cores / ticks per second.
    let wall = total / cores / clock_ticks();
    Busy {
        cores: (after.busy - before.busy) / total * cores,
        broker: (after.broker - before.broker) / wall,
    }
}

/// Peak resident memory (VmHWM) of a process in MiB.
fn peak_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `perf record --call-graph dwarf` of the processes `pids` (comma-separated) into `path`.
fn perf_record(path: &str, pids: &str) -> Result<Child> {
    Command::new("perf")
        .args(["record", "-F", "999", "--call-graph", "dwarf,16384"])
        .args(["-o", path, "-p", pids])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")
}

/// Stops a [`perf_record`] (SIGINT: it writes its file and exits).
fn perf_stop(mut perf: Child) -> Result<()> {
    signal(perf.id(), "INT")?;
    perf.wait()?;
    Ok(())
}

/// A stage's release binary (`STREAMWATCH_BENCH_MONITOR` replaces the monitor's).
fn stage_binary(name: &str) -> PathBuf {
    match std::env::var_os("STREAMWATCH_BENCH_MONITOR") {
        Some(path) if name == "monitor" => PathBuf::from(path),
        _ => bin_dir().join(name),
    }
}

/// `NAME run ARGS` with its admin endpoints on a free port, logging to `LOG_DIR/TAG-NAME.log`.
fn spawn_stage(name: &'static str, args: &[String], log_dir: &Path, tag: &str) -> Result<Stage> {
    let args: Vec<&str> = std::iter::once("run")
        .chain(args.iter().map(String::as_str))
        .collect();
    Stage::spawn_with_admin(
        name,
        &stage_binary(name),
        &args,
        &log_dir.join(format!("{tag}-{name}.log")),
    )
}

// ------------------------------------------------------------------ Kafka

/// The stages' producer settings (`KafkaArgs::producer`).
fn producer(brokers: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.timeout.ms", "300000")
        .create()?)
}

/// The stages' consumer fetch settings (`KafkaArgs::consumer_config`), assigned to every
/// partition of `topics` from the start (no group join, no commits).
fn assigned_consumer(brokers: &str, topics: &[(&str, i32)], eof: bool) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "streamwatch-bench-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "200000")
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

#[derive(Clone)]
struct Record {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Every event of `topic` (read to the end of each partition) but the warm-up ones and the
/// end-of-stream markers: a message, or each event of a batch (then without a key).
async fn read_all(brokers: &str, topic: &str) -> Result<Vec<Record>> {
    let count = partition_count(brokers, topic)?;
    let consumer = assigned_consumer(brokers, &[(topic, count)], true)?;
    let mut finished = std::collections::HashSet::new();
    let mut records = Vec::new();
    while finished.len() < count as usize {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Err(_) => bail!("reading {topic}: nothing for 30 s"),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                finished.insert(p);
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) if m.payload() == Some(WARM_UP) || is_end_of_stream(m.headers()) => {}
            Ok(Ok(m)) if is_batch(m.headers()) => records.extend(
                events(m.payload().unwrap_or_default()).map(|(_, event)| Record {
                    key: None,
                    payload: event.to_vec(),
                }),
            ),
            Ok(Ok(m)) => records.push(Record {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
        }
    }
    Ok(records)
}

/// Queues every record (the client copies them), then waits for every delivery. A record
/// with a partition is a batch of events (the scorer's framing).
async fn produce_all<'a>(
    producer: &FutureProducer,
    records: impl Iterator<Item = (&'a str, Option<&'a [u8]>, &'a [u8], Option<i32>)>,
) -> Result<usize> {
    let mut deliveries = Vec::new();
    for (topic, key, payload, batch_partition) in records {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = batch_partition {
            record = record.partition(partition).headers(batch_headers());
        }
        deliveries.push(queue_record(producer, record).await?);
    }
    let sent = deliveries.len();
    for delivery in deliveries {
        delivery
            .await
            .context("producer dropped a message")?
            .map_err(|(e, _)| e)?;
    }
    Ok(sent)
}

/// Counts messages until `expected` arrived: the instant the last one did.
async fn count_until(
    consumer: &StreamConsumer,
    expected: usize,
    seen: &AtomicUsize,
) -> Result<Instant> {
    while seen.load(Ordering::Relaxed) < expected {
        match tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await {
            Err(_) => bail!(
                "only {} of {expected} messages arrived",
                seen.load(Ordering::Relaxed)
            ),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(_)) => {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(Instant::now())
}

// ------------------------------------------------------------------ JSON fields

/// The byte range of a string field's value (`"field":"VALUE"`) in a flat JSON object.
fn string_field(payload: &[u8], field: &str) -> Option<std::ops::Range<usize>> {
    let needle = format!("\"{field}\":\"");
    let start = payload
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let len = payload[start..].iter().position(|&b| b == b'"')?;
    Some(start..start + len)
}

fn event_time(payload: &[u8]) -> Option<NaiveDateTime> {
    let range = string_field(payload, "event_time")?;
    let text = std::str::from_utf8(&payload[range]).ok()?;
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// Copy `k` of a scored event: event time shifted by `k` × 28 days, `#k` after the trip id.
fn shifted_copy(record: &Record, k: i64) -> Result<Record> {
    if k == 0 {
        return Ok(record.clone());
    }
    let payload = &record.payload;
    let time = string_field(payload, "event_time").context("scored event without event_time")?;
    let shifted = event_time(payload).context("unreadable event_time")?
        + chrono::Duration::days(SHIFT_DAYS * k);
    let id = string_field(payload, "trip_id").context("scored event without trip_id")?;
    let (first, second) = if time.start < id.start {
        ((time.clone(), true), (id.clone(), false))
    } else {
        ((id.clone(), false), (time.clone(), true))
    };
    let original_id = &payload[id.clone()];
    let new_id = [original_id, format!("#{k}").as_bytes()].concat();
    let new_time = shifted.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    let replacement = |is_time: bool| -> &[u8] {
        if is_time {
            new_time.as_bytes()
        } else {
            &new_id
        }
    };
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&payload[..first.0.start]);
    out.extend_from_slice(replacement(first.1));
    out.extend_from_slice(&payload[first.0.end..second.0.start]);
    out.extend_from_slice(replacement(second.1));
    out.extend_from_slice(&payload[second.0.end..]);
    let key = record.key.as_ref().map(|key| {
        if key.as_slice() == original_id {
            new_id.clone()
        } else {
            [key.as_slice(), format!("#{k}").as_bytes()].concat()
        }
    });
    Ok(Record { key, payload: out })
}

/// The messages carrying `events` (in order) as the scorer sends them: each partition's
/// events in batches of `batch` (with their partition), or one message per event keyed by
/// its trip id when `batch` is 1.
fn framed(events: &[Record], batch: usize) -> Result<Vec<(Option<i32>, Record)>> {
    if batch == 1 {
        return Ok(events.iter().map(|r| (None, r.clone())).collect());
    }
    let mut open: Vec<(usize, Vec<u8>)> = vec![(0, Vec::new()); ALONE_PARTITIONS as usize];
    let mut messages = Vec::new();
    for record in events {
        let id =
            string_field(&record.payload, "trip_id").context("scored event without trip_id")?;
        let partition = partition_for_key(&record.payload[id], ALONE_PARTITIONS as usize);
        let (count, payload) = &mut open[partition as usize];
        push_event(payload, &record.payload);
        *count += 1;
        if *count == batch {
            let payload = std::mem::take(payload);
            *count = 0;
            messages.push((Some(partition), Record { key: None, payload }));
        }
    }
    for (partition, (_, payload)) in open.into_iter().enumerate() {
        if !payload.is_empty() {
            messages.push((Some(partition as i32), Record { key: None, payload }));
        }
    }
    Ok(messages)
}

// ------------------------------------------------------------------ PostgreSQL

/// A fresh database, dropped at the end: its URL.
async fn fresh_database(bench: &mut Bench, tag: &str) -> Result<String> {
    let name = format!("sw_{}_{tag}", bench.run);
    let url = streamwatch_tests::fresh_database(&bench.database_url, &name).await?;
    bench.databases.push(name);
    Ok(url)
}

/// February's 28 days and the rows each holds (Evidently's golden counts).
fn february_days() -> Result<Vec<(NaiveDateTime, Option<i64>)>> {
    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("tests/golden/feb-2022-daily.json"),
    )?)?;
    goldens["cases"]
        .as_array()
        .context("golden cases")?
        .iter()
        .map(|case| {
            let start = NaiveDateTime::parse_from_str(
                case["start"].as_str().context("start")?,
                "%Y-%m-%dT%H:%M:%S",
            )?;
            Ok((start, case["expected"]["row_count"].as_i64()))
        })
        .collect()
}

/// Stored daily windows that hold all their rows, by start.
async fn complete_days(
    client: &tokio_postgres::Client,
    days: &[(NaiveDateTime, Option<i64>)],
) -> Vec<bool> {
    let stored: HashMap<NaiveDateTime, i64> = client
        .query(
            "SELECT window_start, row_count FROM window_metrics WHERE window_kind = 'tumbling' \
             AND window_size_seconds = 86400 AND window_step_seconds = 86400",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default();
    days.iter()
        .map(|(start, expected)| match (stored.get(start), expected) {
            (Some(rows), Some(expected)) => rows == expected,
            (Some(_), None) => true,
            (None, _) => false,
        })
        .collect()
}

// ------------------------------------------------------------------ end to end

#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// Stages ready, topics absent: discovery and group joins on the clock.
    Cold,
    /// Topics created and every group joined before the clock starts.
    Warm,
}

struct StageFigures {
    name: &'static str,
    peak_mib: f64,
    cpu_s: f64,
}

struct EndToEnd {
    /// Producer start to the first complete daily window in PostgreSQL.
    first_day: Duration,
    /// ... to February 1-27 complete (closed by the watermark).
    day_27: Duration,
    /// ... to all 28 days (the last one closed by the replay's end-of-stream markers).
    day_28: Duration,
    /// The producer process, start to exit.
    producer_wall: Duration,
    /// Cores busy on the machine from the producer's start to the 28th day.
    cores_busy: Busy,
    /// Producer, scorer, monitor, sink.
    stages: Vec<StageFigures>,
    /// Topics of the producer's and the scorer's messages.
    trips: String,
    completions: String,
    scored: String,
    /// How the consumers were known to have joined (warm runs).
    joined: &'static str,
}

/// Partition counts by topic role, as the cold run's auto-created topics have them.
type Partitions = HashMap<&'static str, i32>;

async fn end_to_end(
    bench: &mut Bench,
    start: Start,
    partition_counts: Option<&Partitions>,
) -> Result<EndToEnd> {
    let tag = if start == Start::Cold { "cold" } else { "warm" };
    let trips = bench.topic(&format!("{tag}.trips"));
    let scored = bench.topic(&format!("{tag}.trips.scored"));
    let completions = bench.topic(&format!("{tag}.completions"));
    let metrics = bench.topic(&format!("{tag}.metrics"));
    let dlq = bench.topic(&format!("{tag}.deadletter"));
    let db_url = fresh_database(bench, tag).await?;
    let brokers = bench.brokers.clone();
    if let Some(counts) = partition_counts {
        let topics: Vec<(&str, i32)> = [
            (trips.as_str(), "trips"),
            (scored.as_str(), "scored"),
            (completions.as_str(), "completions"),
            (metrics.as_str(), "metrics"),
            (dlq.as_str(), "deadletter"),
        ]
        .iter()
        .map(|(topic, role)| (*topic, counts[role]))
        .collect();
        create_topics(&brokers, &topics).await?;
    }
    let args = |extra: &[&str]| extra.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let group = |stage: &str| bench.group(&format!("{tag}-{stage}"));
    let groups = [group("sink"), group("monitor"), group("scorer")];
    let spec = bench.spec.display().to_string();
    let sink_args = args(&[
        "--brokers",
        &brokers,
        "--group",
        &groups[0],
        "--topic",
        &metrics,
        "--dead-letter-topic",
        &dlq,
        "--database-url",
        &db_url,
    ]);
    let monitor_args = args(&[
        "--brokers",
        &brokers,
        "--group",
        &groups[1],
        "--input-topic",
        &scored,
        "--output-topic",
        &metrics,
        "--dead-letter-topic",
        &dlq,
        "--spec",
        &spec,
        "--completions-topic",
        &completions,
        "--idle-timeout",
        IDLE_TIMEOUT,
    ]);
    let scorer_args = args(&[
        "--brokers",
        &brokers,
        "--group",
        &groups[2],
        "--input-topic",
        &trips,
        "--output-topic",
        &scored,
        "--dead-letter-topic",
        &dlq,
        "--model",
        "models/trip-duration-linear.json",
    ]);
    let log_dir = bench.log_dir.clone();
    let mut stages = vec![
        spawn_stage("sink", &sink_args, &log_dir, tag)?,
        spawn_stage("monitor", &monitor_args, &log_dir, tag)?,
        spawn_stage("scorer", &scorer_args, &log_dir, tag)?,
    ];
    let topics = [
        trips.as_str(),
        completions.as_str(),
        scored.as_str(),
        metrics.as_str(),
    ];
    let driven = drive(bench, start, &mut stages, &db_url, topics).await;
    let ticks = clock_ticks();
    let cpu_now: Vec<f64> = stages
        .iter()
        .map(|stage| cpu_seconds(&stage.pid().to_string(), ticks).unwrap_or(f64::NAN))
        .collect();
    let peaks: Vec<f64> = stages
        .iter()
        .map(|stage| peak_mib(stage.pid()).unwrap_or(f64::NAN))
        .collect();
    let names: Vec<&'static str> = stages.iter().map(|stage| stage.name).collect();
    for stage in stages {
        stage.terminate()?;
    }
    let driven = driven?;
    let mut figures: Vec<StageFigures> = (0..names.len())
        .map(|i| StageFigures {
            name: names[i],
            peak_mib: peaks[i],
            cpu_s: cpu_now[i] - driven.cpu_at_start[i],
        })
        .collect();
    figures.insert(0, driven.producer);
    // Pipeline order: producer, scorer, monitor, sink.
    figures.swap(1, 3);
    Ok(EndToEnd {
        first_day: driven.first_day,
        day_27: driven.day_27,
        day_28: driven.day_28,
        producer_wall: driven.producer_wall,
        cores_busy: driven.cores_busy,
        stages: figures,
        trips,
        completions,
        scored,
        joined: driven.joined,
    })
}

struct Driven {
    first_day: Duration,
    day_27: Duration,
    day_28: Duration,
    producer_wall: Duration,
    cores_busy: Busy,
    producer: StageFigures,
    joined: &'static str,
    /// Each stage's CPU seconds when the producer started (start-up excluded from the figures).
    cpu_at_start: Vec<f64>,
}

/// Waits for the stages, replays February, and times the daily windows' arrival.
async fn drive(
    bench: &Bench,
    start: Start,
    stages: &mut [Stage],
    db_url: &str,
    [trips, completions, scored_topic, metrics_topic]: [&str; 4],
) -> Result<Driven> {
    let deadline = Instant::now() + Duration::from_secs(120);
    for stage in stages.iter_mut() {
        stage.wait_ready(deadline)?;
    }
    let mut joined = "";
    if start == Start::Warm {
        // One malformed message on each input topic: once every stage has read (and
        // dead-lettered) its own, every consumer has joined its group and is fetching.
        joined = "a malformed message on each input topic, read by its stage";
        let producer = producer(&bench.brokers)?;
        let inputs = [scored_topic, completions, trips, metrics_topic];
        produce_all(&producer, inputs.iter().map(|t| (*t, None, WARM_UP, None))).await?;
        // Stages in spawn order: sink (metrics), monitor (scored, completions), scorer (trips).
        for (stage, expected) in stages.iter_mut().zip([1.0, 2.0, 1.0]) {
            loop {
                stage.check_running()?;
                let read = stage.metric(EVENTS_IN).unwrap_or(0.0);
                if read >= expected {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{} read no warm-up message in 120 s", stage.name);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let days = february_days()?;
    let client = connect(db_url).await?;
    let ticks = clock_ticks();
    let cpu_at_start = stages
        .iter()
        .map(|stage| cpu_seconds(&stage.pid().to_string(), ticks).unwrap_or(f64::NAN))
        .collect();

    let (started, machine) = (Instant::now(), machine_ticks());
    let mut producer = Command::new(bin_dir().join("producer"))
        .args(["replay", "--file", "data/green_tripdata_2022-02.parquet"])
        .args(["--from", "2022-02-01", "--to", "2022-03-01"])
        .args(["--topic", trips, "--completions-topic", completions])
        .args(["--brokers", &bench.brokers])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the producer")?;
    let pid = producer.id().to_string();
    let (mut producer_peak, mut producer_cpu, mut producer_wall) = (0.0, 0.0, None);
    let (mut first_day, mut day_27) = (None, None);
    let deadline = started + Duration::from_secs(300);
    let (day_28, cores_busy) = loop {
        if producer_wall.is_none() {
            // VmHWM is a high-water mark: the last reading before exit is the peak. A zombie
            // has no memory left to report but still its final CPU times.
            if let Some(peak) = peak_mib(producer.id()) {
                producer_peak = peak;
            }
            if let Some(cpu) = cpu_seconds(&pid, ticks) {
                producer_cpu = cpu;
            }
            if let Some(status) = producer.try_wait()? {
                producer_wall = Some(started.elapsed());
                let mut summary = String::new();
                producer
                    .stdout
                    .take()
                    .context("producer stdout")?
                    .read_to_string(&mut summary)?;
                if !status.success() || !summary.contains(&FEBRUARY_TRIPS.to_string()) {
                    bail!("producer: {status}, {summary}");
                }
            }
        }
        for stage in stages.iter_mut() {
            stage.check_running()?;
        }
        let complete = complete_days(&client, &days).await;
        let now = started.elapsed();
        if first_day.is_none() && complete.iter().any(|c| *c) {
            first_day = Some(now);
        }
        if day_27.is_none() && complete[..27].iter().all(|c| *c) {
            day_27 = Some(now);
        }
        if complete.iter().all(|c| *c) && producer_wall.is_some() {
            break (now, cores_busy(machine, machine_ticks()));
        }
        if Instant::now() > deadline {
            let done = complete.iter().filter(|c| **c).count();
            bail!(
                "{done} of 28 daily windows complete after 300 s; logs in {}",
                bench.log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(Driven {
        first_day: first_day.unwrap_or(day_28),
        day_27: day_27.unwrap_or(day_28),
        day_28,
        producer_wall: producer_wall.unwrap_or(day_28),
        cores_busy,
        producer: StageFigures {
            name: "producer",
            peak_mib: producer_peak,
            cpu_s: producer_cpu,
        },
        joined,
        cpu_at_start,
    })
}

// ------------------------------------------------------------------ baseline

struct Baseline {
    messages: usize,
    bytes: usize,
    /// First send to the last message received by the already assigned consumer.
    produce_and_consume: Duration,
    /// Cores busy on the machine meanwhile.
    cores_busy: Busy,
    /// First send to the last acknowledgement.
    produce: Duration,
    /// A fresh consumer reading the full topics.
    consume: Duration,
}

async fn baseline(
    bench: &mut Bench,
    trips: &[Record],
    completions: &[Record],
    counts: &Partitions,
) -> Result<Baseline> {
    let (trips_topic, completions_topic) =
        (bench.topic("base.trips"), bench.topic("base.completions"));
    let topics = [
        (trips_topic.as_str(), counts["trips"]),
        (completions_topic.as_str(), counts["completions"]),
    ];
    create_topics(&bench.brokers, &topics).await?;
    // Trips and completions interleaved in event-time order, as the producer sends them.
    let mut records: Vec<(Option<NaiveDateTime>, &str, &Record)> = trips
        .iter()
        .map(|r| (event_time(&r.payload), trips_topic.as_str(), r))
        .chain(
            completions
                .iter()
                .map(|r| (event_time(&r.payload), completions_topic.as_str(), r)),
        )
        .collect();
    records.sort_by_key(|(time, _, _)| *time);
    let messages = records.len();
    let bytes = records
        .iter()
        .map(|(_, _, r)| r.payload.len() + r.key.as_ref().map_or(0, Vec::len))
        .sum();

    let consumer = Arc::new(assigned_consumer(&bench.brokers, &topics, false)?);
    let seen = Arc::new(AtomicUsize::new(0));
    let counting = {
        let (consumer, seen) = (consumer.clone(), seen.clone());
        tokio::spawn(async move { count_until(&consumer, messages, &seen).await })
    };
    let producer = producer(&bench.brokers)?;
    // Both clients connected and the consumer fetching before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&trips_topic), Duration::from_secs(10))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (started, machine) = (Instant::now(), machine_ticks());
    produce_all(
        &producer,
        records
            .iter()
            .map(|(_, topic, r)| (*topic, r.key.as_deref(), r.payload.as_slice(), None)),
    )
    .await?;
    let produce = started.elapsed();
    let produce_and_consume = counting.await?? - started;
    let cores_busy = cores_busy(machine, machine_ticks());

    let fresh = assigned_consumer(&bench.brokers, &topics, false)?;
    let started = Instant::now();
    count_until(&fresh, messages, &AtomicUsize::new(0)).await?;
    let consume = started.elapsed();
    Ok(Baseline {
        messages,
        bytes,
        produce_and_consume,
        cores_busy,
        produce,
        consume,
    })
}

// ------------------------------------------------------------------ monitor alone

/// Partitions of the monitor-alone topic: 1, 2 and 3 instances each get an equal share.
const ALONE_PARTITIONS: i32 = 6;
/// The monitors are done when their summed event count has reached the topic's events and
/// not grown for this long (after a rebalance an instance re-reads what the previous owner
/// had not committed, so the sum may end above the topic's count).
const SETTLE: Duration = Duration::from_secs(2);

/// What the monitor-alone measurement runs (from the environment).
struct AloneOptions {
    /// Instance counts to measure in turn (`STREAMWATCH_BENCH_MONITORS=1,2,3`; default 1),
    /// each a fresh consumer group over the same full topic.
    instances: Vec<usize>,
    /// Extra `monitor run` arguments (`STREAMWATCH_BENCH_MONITOR_ARGS`, split at whitespace).
    extra_args: Vec<String>,
    /// Workers and a merger (`STREAMWATCH_BENCH_SCALE_OUT=1`).
    scale_out: bool,
    /// Events per message (`STREAMWATCH_BENCH_ALONE_BATCH`; default the scorer's 1000).
    batch: usize,
}

impl AloneOptions {
    fn from_env() -> Result<Self> {
        let instances = match std::env::var("STREAMWATCH_BENCH_MONITORS") {
            Err(_) => vec![1],
            Ok(list) => list
                .split(',')
                .map(|n| match n.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("STREAMWATCH_BENCH_MONITORS: {n:?} is not a positive count"),
                })
                .collect::<Result<_>>()?,
        };
        let extra_args = std::env::var("STREAMWATCH_BENCH_MONITOR_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let scale_out = std::env::var("STREAMWATCH_BENCH_SCALE_OUT").is_ok_and(|v| v == "1");
        let batch = match std::env::var("STREAMWATCH_BENCH_ALONE_BATCH") {
            Err(_) => 1000,
            Ok(n) => match n.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => bail!("STREAMWATCH_BENCH_ALONE_BATCH: {n:?} is not a positive count"),
            },
        };
        Ok(Self {
            instances,
            extra_args,
            scale_out,
            batch,
        })
    }
}

/// One run of N monitor instances in one consumer group over the full topic.
struct MonitorRun {
    instances: usize,
    /// The first instance's start to the first event consumed (reference profile, group join).
    startup: Duration,
    /// Events consumed, summed over the instances, from the first sample with an event to
    /// the last growth (re-reads after rebalances included).
    consumed: f64,
    /// Events consumed in all (the last sample).
    total: f64,
    /// First event to the last (sampled every 25 ms).
    wall: Duration,
    /// The middle of the run: from 10% to 90% of the topic's events consumed (events, time).
    steady: Option<(f64, Duration)>,
    /// User + system CPU seconds over `wall`, summed over the instances.
    cpu: f64,
    /// Cores busy on the whole machine over `wall`.
    cores_busy: Busy,
    /// Peak memory (VmHWM) of each instance, MiB.
    peak_mib: Vec<f64>,
    perf: Option<String>,
    merger: Option<MergerFigures>,
}

/// The merger beside scale-out workers.
struct MergerFigures {
    /// User + system CPU seconds from its start to the end of the run ([`MonitorRun::cpu`]
    /// includes its share from the first event to the last).
    cpu: f64,
    peak_mib: f64,
    /// Daily windows it emitted.
    windows: f64,
    /// From the workers' last event consumed to its last window emitted.
    behind: Duration,
}

struct MonitorAlone {
    events: usize,
    /// Kafka messages carrying them, of up to `batch` events.
    messages: usize,
    batch: usize,
    bytes: usize,
    /// A plain consumer reading the same full topic: wall time and CPU of this process.
    bare_wall: Duration,
    bare_cpu: f64,
    bare_busy: Busy,
    extra_args: Vec<String>,
    runs: Vec<MonitorRun>,
}

async fn monitor_alone(
    bench: &mut Bench,
    scored: &[Record],
    options: &AloneOptions,
) -> Result<MonitorAlone> {
    let topic = bench.topic("alone.trips.scored");
    create_topics(&bench.brokers, &[(topic.as_str(), ALONE_PARTITIONS)]).await?;
    let mut ordered: Vec<(Option<NaiveDateTime>, &Record)> =
        scored.iter().map(|r| (event_time(&r.payload), r)).collect();
    ordered.sort_by_key(|(time, _)| *time);
    let copies = (0..COPIES)
        .flat_map(|k| ordered.iter().map(move |(_, r)| shifted_copy(r, k)))
        .collect::<Result<Vec<_>>>()?;
    let events = copies.len();
    let bytes = copies.iter().map(|r| r.payload.len()).sum();
    let messages = framed(&copies, options.batch)?;
    let producer = producer(&bench.brokers)?;
    produce_all(
        &producer,
        messages.iter().map(|(partition, r)| {
            (
                topic.as_str(),
                r.key.as_deref(),
                r.payload.as_slice(),
                *partition,
            )
        }),
    )
    .await?;
    let message_count = messages.len();
    drop((copies, messages));

    let perf_path = std::env::var("STREAMWATCH_BENCH_PERF").ok();
    let ticks = clock_ticks();
    let consumer = assigned_consumer(&bench.brokers, &[(topic.as_str(), ALONE_PARTITIONS)], false)?;
    let bare_perf = match &perf_path {
        Some(path) => Some(perf_record(
            &format!("{path}.bare"),
            &std::process::id().to_string(),
        )?),
        None => None,
    };
    let (started, cpu, machine) = (
        Instant::now(),
        cpu_seconds("self", ticks).unwrap_or(0.0),
        machine_ticks(),
    );
    count_until(&consumer, message_count, &AtomicUsize::new(0)).await?;
    let bare_wall = started.elapsed();
    let bare_cpu = cpu_seconds("self", ticks).unwrap_or(0.0) - cpu;
    let bare_busy = cores_busy(machine, machine_ticks());
    if let Some(perf) = bare_perf {
        perf_stop(perf)?;
    }
    drop(consumer);

    let mut runs = Vec::new();
    for &instances in &options.instances {
        eprintln!("monitor alone, {instances} instance(s) ...");
        let perf = perf_path.as_ref().map(|path| {
            if options.instances.len() > 1 {
                format!("{path}.{instances}")
            } else {
                path.clone()
            }
        });
        runs.push(monitors(bench, &topic, events, instances, options, perf).await?);
    }
    Ok(MonitorAlone {
        events,
        messages: message_count,
        batch: options.batch,
        bytes,
        bare_wall,
        bare_cpu,
        bare_busy,
        extra_args: options.extra_args.clone(),
        runs,
    })
}

/// Runs `instances` monitors in one new group over `topic` until they consumed its `events`.
async fn monitors(
    bench: &mut Bench,
    topic: &str,
    events: usize,
    instances: usize,
    options: &AloneOptions,
    perf_path: Option<String>,
) -> Result<MonitorRun> {
    let tag = format!("alone{instances}");
    let metrics = bench.topic(&format!("{tag}.metrics"));
    let dlq = bench.topic(&format!("{tag}.deadletter"));
    // The options workers (or single monitors) and the merger share; `group` names the group.
    let shared_args = |bench: &Bench, group: &str| -> Vec<String> {
        [
            "--brokers",
            &bench.brokers,
            "--group",
            &bench.group(&format!("{tag}-{group}")),
            "--input-topic",
            topic,
            "--output-topic",
            &metrics,
            "--dead-letter-topic",
            &dlq,
            "--spec",
            &bench.spec.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut args = shared_args(bench, "monitor");
    args.extend(["--idle-timeout".to_owned(), IDLE_TIMEOUT.to_owned()]);
    // `{run}` in an extra argument names something of this run (a topic: deleted at the end).
    for arg in &options.extra_args {
        if arg.contains("{run}") {
            let arg = arg.replace("{run}", &format!("{}.{tag}", bench.run));
            let value = arg.split_once('=').map_or(arg.as_str(), |(_, v)| v);
            bench.topics.push(value.to_owned());
            args.push(arg);
        } else {
            args.push(arg.clone());
        }
    }
    let mut merger = None;
    if options.scale_out {
        let partials = bench.topic(&format!("{tag}.partials"));
        create_topics(&bench.brokers, &[(partials.as_str(), ALONE_PARTITIONS)]).await?;
        let mut merge_args = vec!["merge".to_owned()];
        merge_args.extend(shared_args(bench, "merger"));
        merge_args.extend(["--partials-topic".to_owned(), partials.clone()]);
        merger = Some(Stage::spawn_with_admin(
            "monitor",
            &stage_binary("monitor"),
            &merge_args,
            &bench.log_dir.join(format!("{tag}-merger.log")),
        )?);
        args.extend(["--partials-topic".to_owned(), partials]);
    }
    let started = Instant::now();
    let mut stages = (0..instances)
        .map(|i| spawn_stage("monitor", &args, &bench.log_dir, &format!("{tag}-{i}")))
        .collect::<Result<Vec<_>>>()?;
    let merger_pid = merger.as_ref().map(|m| m.pid().to_string());
    let pids: Vec<String> = stages
        .iter()
        .map(|s| s.pid().to_string())
        .chain(merger_pid.clone())
        .collect();
    // Daily windows of the shipped spec over the copies of February.
    let expected_windows = (COPIES * 28) as f64;
    let (mut merged_windows, mut merged_at) = (0.0, None);
    let ticks = clock_ticks();
    let cpu = |pids: &[String]| -> f64 {
        pids.iter()
            .map(|pid| cpu_seconds(pid, ticks).unwrap_or(f64::NAN))
            .sum()
    };
    let mut perf = None;
    let mut counts = vec![0.0; instances];
    // (instant, events summed, CPU summed, machine ticks)
    let mut first: Option<(Instant, f64, f64, Ticks)> = None;
    let mut last: Option<(Instant, f64, f64, Ticks)> = None;
    let (mut at_10, mut at_90) = (None, None);
    let deadline = started + Duration::from_secs(600);
    loop {
        for (stage, count) in stages.iter_mut().zip(&mut counts) {
            stage.check_running()?;
            // A failed scrape keeps the last value.
            if let Some(value) = stage.metric(EVENTS_IN) {
                *count = value;
            }
        }
        if let Some(merger) = &mut merger {
            merger.check_running()?;
            let windows = merger.metric(WINDOWS_EMITTED).unwrap_or(merged_windows);
            if windows > merged_windows {
                (merged_windows, merged_at) = (windows, Some(Instant::now()));
            }
        }
        let now = Instant::now();
        let sum: f64 = counts.iter().sum();
        let sample = (now, sum, cpu(&pids), machine_ticks());
        if sum > 0.0 && first.is_none() {
            first = Some(sample);
            if let Some(path) = &perf_path {
                perf = Some(perf_record(path, &pids.join(","))?);
            }
        }
        if sum > last.map_or(0.0, |l| l.1) {
            last = Some(sample);
        }
        if at_10.is_none() && sum >= 0.1 * events as f64 {
            at_10 = Some((now, sum));
        }
        if at_90.is_none() && sum >= 0.9 * events as f64 {
            at_90 = Some((now, sum));
        }
        if let Some(last) = last {
            let merged = merger.is_none() || merged_windows >= expected_windows;
            if last.1 >= events as f64 && now - last.0 >= SETTLE && merged {
                break;
            }
        }
        if now > deadline {
            bail!(
                "{instances} monitor(s) consumed {sum} of {events} events and the merger (if any) \
                 emitted {merged_windows} of {expected_windows} windows in 600 s; logs in {}",
                bench.log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if let Some(perf) = perf {
        perf_stop(perf)?;
    }
    let instance_peaks = stages
        .iter()
        .map(|s| peak_mib(s.pid()).unwrap_or(f64::NAN))
        .collect();
    let (first, last) = (
        first.context("no first sample")?,
        last.context("no last sample")?,
    );
    let merger = match merger {
        Some(merger) => {
            let figures = MergerFigures {
                cpu: merger_pid
                    .as_deref()
                    .and_then(|pid| cpu_seconds(pid, ticks))
                    .unwrap_or(f64::NAN),
                peak_mib: peak_mib(merger.pid()).unwrap_or(f64::NAN),
                windows: merged_windows,
                behind: merged_at.map_or(Duration::ZERO, |at| at.saturating_duration_since(last.0)),
            };
            merger.terminate()?;
            Some(figures)
        }
        None => None,
    };
    for stage in stages {
        stage.terminate()?;
    }
    Ok(MonitorRun {
        instances,
        startup: first.0 - started,
        consumed: last.1 - first.1,
        total: last.1,
        wall: last.0 - first.0,
        steady: at_10
            .zip(at_90)
            .map(|((t10, s10), (t90, s90))| (s90 - s10, t90 - t10)),
        cpu: last.2 - first.2,
        cores_busy: cores_busy(first.3, last.3),
        peak_mib: instance_peaks,
        perf: perf_path,
        merger,
    })
}

/// February's scored events without the whole pipeline: the producer's replay through the
/// scorer alone (`STREAMWATCH_BENCH_ONLY=monitor`).
async fn scored_february(bench: &mut Bench) -> Result<Vec<Record>> {
    let trips = bench.topic("only.trips");
    let scored = bench.topic("only.trips.scored");
    let dlq = bench.topic("only.deadletter");
    let args: Vec<String> = [
        "--brokers",
        &bench.brokers,
        "--group",
        &bench.group("only-scorer"),
        "--input-topic",
        &trips,
        "--output-topic",
        &scored,
        "--dead-letter-topic",
        &dlq,
        "--model",
        "models/trip-duration-linear.json",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut scorer = spawn_stage("scorer", &args, &bench.log_dir, "only")?;
    scorer.wait_ready(Instant::now() + Duration::from_secs(120))?;
    let replay = Command::new(bin_dir().join("producer"))
        .args(["replay", "--file", "data/green_tripdata_2022-02.parquet"])
        .args(["--from", "2022-02-01", "--to", "2022-03-01"])
        .args(["--topic", &trips, "--brokers", &bench.brokers])
        .current_dir(repo_root())
        .stderr(Stdio::null())
        .output()
        .context("running the producer")?;
    if !replay.status.success() {
        bail!("producer: {}", String::from_utf8_lossy(&replay.stdout));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while scorer.metric(EVENTS_OUT).unwrap_or(0.0) < FEBRUARY_TRIPS as f64 {
        scorer.check_running()?;
        if Instant::now() > deadline {
            bail!("the scorer did not score February in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scorer.terminate()?;
    read_all(&bench.brokers, &scored).await
}

// ------------------------------------------------------------------ main

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let Some(Services {
        brokers,
        database_url,
    }) = Services::from_env()
    else {
        bail!(
            "set KAFKA_BROKERS and DATABASE_URL: \
             eval \"$(bash scripts/services.sh up)\"; export KAFKA_BROKERS DATABASE_URL"
        );
    };
    let only_monitor = match std::env::var("STREAMWATCH_BENCH_ONLY").as_deref() {
        Err(_) | Ok("") => false,
        Ok("monitor") => true,
        Ok(other) => bail!("STREAMWATCH_BENCH_ONLY: {other:?} (only \"monitor\" is known)"),
    };
    let options = AloneOptions::from_env()?;
    for name in ["producer", "scorer", "monitor", "sink"] {
        let binary = stage_binary(name);
        if !binary.exists() {
            bail!(
                "{} is missing: run `cargo build --release --bins` first (the bench times the \
                 release binaries and does not build them)",
                binary.display()
            );
        }
    }
    let _ = BROKER_PID.set(local_broker_pid(&brokers).map(|pid| pid.to_string()));
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = loadavg();
    let run = format!(
        "bench{}x{}",
        std::process::id(),
        chrono::Utc::now().timestamp()
    );
    let log_dir = std::env::temp_dir().join(format!("streamwatch-{run}"));
    std::fs::create_dir_all(&log_dir)?;
    eprintln!("run {run}; stage logs in {}", log_dir.display());
    let mut bench = Bench {
        brokers,
        database_url,
        run,
        log_dir,
        spec: repo_root().join("examples/specs/taxi.toml"),
        topics: Vec::new(),
        databases: Vec::new(),
    };
    let result = measure(&mut bench, only_monitor, &options).await;
    let load_after = loadavg();
    if let Err(error) = delete_topics(&bench.brokers, &bench.topics).await {
        eprintln!("cleanup: {error:#}");
    }
    for db in &bench.databases {
        if let Err(error) = drop_database(&bench.database_url, db).await {
            eprintln!("cleanup: dropping {db}: {error:#}");
        }
    }
    let report = result?;
    print!("{}", report.table(load_before.trim(), load_after.trim()));
    Ok(())
}

struct Pipeline {
    cold: EndToEnd,
    warm: EndToEnd,
    baseline: Baseline,
}

struct Report {
    /// None with `STREAMWATCH_BENCH_ONLY=monitor`.
    pipeline: Option<Pipeline>,
    alone: MonitorAlone,
}

async fn measure(bench: &mut Bench, only_monitor: bool, options: &AloneOptions) -> Result<Report> {
    let (pipeline, scored) = if only_monitor {
        eprintln!("February's scored events (producer and scorer) ...");
        (None, scored_february(bench).await?)
    } else {
        let (pipeline, scored) = pipeline(bench).await?;
        (Some(pipeline), scored)
    };
    if scored.len() != FEBRUARY_TRIPS {
        bail!(
            "expected {FEBRUARY_TRIPS} scored events, read {}",
            scored.len()
        );
    }
    if let Ok(path) = std::env::var("STREAMWATCH_BENCH_SCORED") {
        let mut lines = Vec::new();
        for record in &scored {
            lines.extend_from_slice(&record.payload);
            lines.push(b'\n');
        }
        std::fs::write(&path, lines).with_context(|| format!("writing {path}"))?;
    }
    let alone = monitor_alone(bench, &scored, options).await?;
    Ok(Report { pipeline, alone })
}

/// End to end cold and warm, and the baseline: the figures and the warm run's scored events.
async fn pipeline(bench: &mut Bench) -> Result<(Pipeline, Vec<Record>)> {
    eprintln!("end to end, cold ...");
    let cold = end_to_end(bench, Start::Cold, None).await?;
    let mut counts = Partitions::new();
    for (role, topic) in [
        ("trips", &cold.trips),
        ("completions", &cold.completions),
        ("scored", &cold.scored),
    ] {
        counts.insert(role, partition_count(&bench.brokers, topic)?);
    }
    // Output topics as the scored one (the dead-letter topic stays uncreated in a clean run).
    counts.insert("metrics", counts["scored"]);
    counts.insert("deadletter", counts["scored"]);
    eprintln!("end to end, warm ...");
    let warm = end_to_end(bench, Start::Warm, Some(&counts)).await?;
    let trips = read_all(&bench.brokers, &warm.trips).await?;
    let completions = read_all(&bench.brokers, &warm.completions).await?;
    let scored = read_all(&bench.brokers, &warm.scored).await?;
    if trips.len() != FEBRUARY_TRIPS {
        bail!("expected {FEBRUARY_TRIPS} trips, read {}", trips.len());
    }
    eprintln!("bare produce-and-consume ...");
    let baseline = baseline(bench, &trips, &completions, &counts).await?;
    Ok((
        Pipeline {
            cold,
            warm,
            baseline,
        },
        scored,
    ))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl Report {
    fn table(&self, load_before: &str, load_after: &str) -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "\nFebruary 2022, {FEBRUARY_TRIPS} trips; /proc/loadavg before: {load_before}; after: {load_after}\n"
        ));
        if let Some(p) = &self.pipeline {
            let b = &p.baseline;
            let base = b.produce_and_consume.as_secs_f64();
            let ratio = |d: Duration| format!("{:.1}x", d.as_secs_f64() / base);
            line(format!(
                "| measurement | time | ratio to the baseline | cores busy (of {cores}, whole machine; the broker's) |"
            ));
            line("|---|---:|---:|---:|".into());
            line(format!(
                "| **baseline**: produce the producer's {} messages ({:.1} MB), consumed by an assigned consumer | {} | 1.0x | {} |",
                b.messages,
                b.bytes as f64 / 1e6,
                secs(b.produce_and_consume),
                b.cores_busy
            ));
            line(format!(
                "| - of which producing (all acknowledged) | {} | | |",
                secs(b.produce)
            ));
            line(format!(
                "| - consuming the full topics alone (fresh consumer) | {} | | |",
                secs(b.consume)
            ));
            for (name, e) in [("warm", &p.warm), ("cold", &p.cold)] {
                line(format!(
                    "| **end to end, {name}**: producer start to the 28 daily windows in PostgreSQL | {} | {} | {} |",
                    secs(e.day_28),
                    ratio(e.day_28),
                    e.cores_busy
                ));
                line(format!(
                    "| - to February 1-27 (closed by the watermark; the 28th by the end-of-stream markers) | {} | {} | |",
                    secs(e.day_27),
                    ratio(e.day_27)
                ));
                line(format!(
                    "| - to the first complete day | {} | | |",
                    secs(e.first_day)
                ));
                line(format!(
                    "| - the producer process (read, sort, encode, deliver) | {} | | |",
                    secs(e.producer_wall)
                ));
            }
            line(format!(
                "\nWarm: topics created and every consumer reading before the clock ({}). \
                 Cold: stages ready, topics created by the producer, discovery and group joins on the clock.\n",
                p.warm.joined
            ));
        }
        let a = &self.alone;
        let bare_rate = a.events as f64 / a.bare_wall.as_secs_f64();
        let bare_per_cpu = a.events as f64 / a.bare_cpu;
        line(format!(
            "Monitor alone: {} scored events ({} copies of February, {:.0} MB) in {} messages \
             ({}) read from a full {ALONE_PARTITIONS}-partition topic, daily windows, the shipped \
             spec{}; instances in one consumer group{}.\n",
            a.events,
            COPIES,
            a.bytes as f64 / 1e6,
            a.messages,
            if a.batch == 1 {
                "one event per message".to_owned()
            } else {
                format!("each partition's events in batches of {}", a.batch)
            },
            if a.extra_args.is_empty() {
                String::new()
            } else {
                format!(", extra arguments `{}`", a.extra_args.join(" "))
            },
            if a.runs.iter().any(|r| r.merger.is_some()) {
                ", as scale-out workers (`--partials-topic`) beside one merger (`monitor merge`)"
            } else {
                ""
            }
        ));
        line(format!(
            "| reader | events/s (wall, first to last event) | events/s (10% to 90%) | events per CPU-second | CPU µs per event | cores busy (of {cores}, whole machine; the broker's) | start-up to the first event | peak memory (VmHWM, MiB) |"
        ));
        line("|---|---:|---:|---:|---:|---:|---:|---:|".into());
        for r in &a.runs {
            let rate = r.consumed / r.wall.as_secs_f64();
            let per_cpu = r.consumed / r.cpu;
            let steady = r.steady.map_or("n/a".into(), |(events, time)| {
                format!("{:.0}", events / time.as_secs_f64())
            });
            let reread = r.total - a.events as f64;
            line(format!(
                "| {} × {}{} ({:.0} events timed{}) | {:.0} | {} | {:.0} | {:.2} | {} | {} | {} |",
                if r.merger.is_some() {
                    "worker"
                } else {
                    "monitor"
                },
                r.instances,
                if r.merger.is_some() { " + merger" } else { "" },
                r.consumed,
                if reread > 0.0 {
                    format!(", {reread:.0} re-read after rebalances")
                } else {
                    String::new()
                },
                rate,
                steady,
                per_cpu,
                1e6 / per_cpu,
                r.cores_busy,
                secs(r.startup),
                r.peak_mib
                    .iter()
                    .map(|m| format!("{m:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
            if let Some(m) = &r.merger {
                line(format!(
                    "| ↳ its merger: {:.0} daily windows, the last {} after the workers' last event | | | | | {:.2} s CPU from its start | | {:.1} |",
                    m.windows,
                    secs(m.behind),
                    m.cpu,
                    m.peak_mib
                ));
            }
        }
        line(format!(
            "| plain consumer, same topic, same fetch settings (this process) | {:.0} | | {:.0} | {:.2} | {} | | |",
            bare_rate,
            bare_per_cpu,
            1e6 / bare_per_cpu,
            a.bare_busy
        ));
        for r in &a.runs {
            if let Some(path) = &r.perf {
                line(format!("perf record of {} monitor(s): {path}", r.instances));
            }
        }
        if let Some(p) = &self.pipeline {
            line(
                "\nEnd-to-end runs, per stage (CPU from the producer's start to the 28th day):\n"
                    .into(),
            );
            line(
                "| stage | warm: CPU (s, user+system) | warm: peak memory (VmHWM, MiB) | cold: CPU (s) | cold: peak memory (MiB) |"
                    .into(),
            );
            line("|---|---:|---:|---:|---:|".into());
            for (warm, cold) in p.warm.stages.iter().zip(&p.cold.stages) {
                line(format!(
                    "| {} | {:.2} | {:.1} | {:.2} | {:.1} |",
                    warm.name, warm.cpu_s, warm.peak_mib, cold.cpu_s, cold.peak_mib
                ));
            }
        }
        out
    }
}
