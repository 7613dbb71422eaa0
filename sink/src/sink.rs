//! The Kafka side: consume metric rows, write them in bounded batches, retry the database
//! while it fails, dead-letter malformed rows, and store offsets only after both are done.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::types::RDKafkaErrorCode;
use streamwatch_common::deadletter::{DeadLetters, Origin};
use streamwatch_common::events::MetricsRecord;
use streamwatch_common::kafka::{pause_fetching, resume_fetching, StageConsumer};
use streamwatch_common::telemetry::{
    Readiness, EVENTS_IN_TOTAL, EVENTS_OUT_TOTAL, PROCESSING_SECONDS,
};
use tokio_util::sync::CancellationToken;

use crate::config::Backoff;
use crate::service::{validate, MetricStore};
use crate::Error;

/// The stage name in metrics labels and dead-letter headers.
pub const STAGE: &str = "sink";

/// `/readyz`: ready while both the broker and the database answer.
#[derive(Clone)]
pub struct Health {
    database: Arc<AtomicBool>,
    broker: Arc<AtomicBool>,
    readiness: Readiness,
}

impl Health {
    pub fn new(readiness: Readiness) -> Self {
        Self {
            database: Arc::default(),
            broker: Arc::default(),
            readiness,
        }
    }

    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
        self.update();
    }

    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
        self.update();
    }

    fn update(&self) {
        self.readiness
            .set(self.database.load(Ordering::Relaxed) && self.broker.load(Ordering::Relaxed));
    }
}

/// How the loop batches and retries.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub topic: String,
    /// Most rows per transaction.
    pub batch_size: usize,
    pub backoff: Backoff,
}

/// What the loop did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopStats {
    pub messages: u64,
    pub transactions: u64,
    pub applied: u64,
    pub stale: u64,
    pub dead_lettered: u64,
    pub database_retries: u64,
}

/// A consumed message, copied so it can outlive the consumer's buffer while the database is retried.
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl Received {
    fn new(message: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        }
    }
}

/// Parses and checks one message; the error is a dead-letter kind and the reason.
pub fn decode(payload: &[u8]) -> Result<MetricsRecord, (&'static str, String)> {
    let row: MetricsRecord = serde_json::from_slice(payload).map_err(|e| {
        let kind = if e.is_syntax() || e.is_eof() {
            "invalid_json"
        } else {
            "invalid_row"
        };
        (kind, format!("not a metric record: {e}"))
    })?;
    validate(&row).map_err(|reason| ("invalid_row", reason))?;
    Ok(row)
}

/// The consume-write-commit loop.
pub struct MetricSink {
    consumer: StageConsumer,
    dead_letters: DeadLetters,
    store: MetricStore,
    health: Health,
    settings: LoopSettings,
    stats: LoopStats,
    /// Messages that arrived while consumption was paused; they go first into the next batches.
    queue: VecDeque<Received>,
    paused: bool,
}

impl MetricSink {
    pub fn new(
        consumer: StageConsumer,
        dead_letters: DeadLetters,
        store: MetricStore,
        health: Health,
        settings: LoopSettings,
    ) -> Self {
        Self {
            consumer,
            dead_letters,
            store,
            health,
            settings,
            stats: LoopStats::default(),
            queue: VecDeque::new(),
            paused: false,
        }
    }

    /// Runs until `shutdown` fires: the batch in progress is finished (unless the database keeps
    /// failing; then it is left uncommitted and consumed again after a restart), stored offsets
    /// are committed, and the consumer is closed.
    pub async fn run(mut self, shutdown: CancellationToken) -> LoopStats {
        let processing = metrics::histogram!(PROCESSING_SECONDS, "stage" => STAGE);
        while let Some(batch) = self.next_batch(&shutdown).await {
            // From a full batch in hand to its offsets stored: decoding, the database write
            // (with its retries while the database is down) and the dead letters.
            let started = Instant::now();
            if !self.process(batch, &shutdown).await {
                break;
            }
            processing.record(started.elapsed());
        }
        self.commit();
        self.stats
    }

    /// Waits for one message, then takes whatever else is already waiting, up to the batch size.
    async fn next_batch(&mut self, shutdown: &CancellationToken) -> Option<Vec<Received>> {
        let mut batch = Vec::new();
        if let Some(first) = self.queue.pop_front() {
            batch.push(first);
        } else {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return None,
                    received = self.consumer.recv() => match received {
                        Ok(message) => {
                            batch.push(Received::new(&message));
                            break;
                        }
                        Err(error) => tracing::warn!(topic = %self.settings.topic, %error, "kafka consumer error"),
                    },
                }
            }
        }
        while batch.len() < self.settings.batch_size {
            if let Some(next) = self.queue.pop_front() {
                batch.push(next);
                continue;
            }
            // A zero timeout still polls the consumer once: only already fetched messages come.
            match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(Received::new(&message)),
                Ok(Err(error)) => {
                    tracing::warn!(topic = %self.settings.topic, %error, "kafka consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Writes the batch's rows, dead-letters the rest, then stores the offsets. False when
    /// shutdown interrupted it (nothing of the batch is then stored).
    async fn process(&mut self, batch: Vec<Received>, shutdown: &CancellationToken) -> bool {
        self.stats.messages += batch.len() as u64;
        metrics::counter!(EVENTS_IN_TOTAL, "stage" => STAGE).increment(batch.len() as u64);
        let mut rows = Vec::with_capacity(batch.len());
        let mut row_origin = Vec::with_capacity(batch.len());
        let mut rejects: Vec<(usize, &'static str, String)> = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            match decode(&message.payload) {
                Ok(row) => {
                    rows.push(row);
                    row_origin.push(index);
                }
                Err((kind, reason)) => rejects.push((index, kind, reason)),
            }
        }
        if !rows.is_empty() {
            let Some(rejected) = self.write_rows(&rows, shutdown).await else {
                return false;
            };
            rejects.extend(
                rejected
                    .into_iter()
                    .map(|(row, reason)| (row_origin[row], "rejected_by_database", reason)),
            );
        }
        rejects.sort_by_key(|(index, ..)| *index);
        for (index, kind, reason) in rejects {
            if !self
                .dead_letter(&batch[index], kind, &reason, shutdown)
                .await
            {
                return false;
            }
        }
        // Fetching stays paused from the first failed attempt until the whole batch is done.
        self.resume();
        self.store_offsets(&batch);
        true
    }

    /// Writes `rows` in one transaction. When the database refuses the data itself, writes them
    /// one per transaction to find the refused ones, returned with the reason. None on shutdown.
    async fn write_rows(
        &mut self,
        rows: &[MetricsRecord],
        shutdown: &CancellationToken,
    ) -> Option<Vec<(usize, String)>> {
        match self.write_retrying(rows, shutdown).await? {
            Ok(()) => Some(Vec::new()),
            Err(error) if rows.len() == 1 => Some(vec![(0, error.to_string())]),
            Err(error) => {
                tracing::warn!(rows = rows.len(), %error, "database refused a batch; writing its rows one by one");
                let mut rejected = Vec::new();
                for (index, row) in rows.iter().enumerate() {
                    if let Err(error) = self
                        .write_retrying(std::slice::from_ref(row), shutdown)
                        .await?
                    {
                        rejected.push((index, error.to_string()));
                    }
                }
                Some(rejected)
            }
        }
    }

    /// Retries while the database is unavailable; returns the error only when it refused the
    /// data. None when shutdown came while retrying.
    async fn write_retrying(
        &mut self,
        rows: &[MetricsRecord],
        shutdown: &CancellationToken,
    ) -> Option<Result<(), Error>> {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            match self.store.write(rows).await {
                Ok(summary) => {
                    self.stats.transactions += 1;
                    self.stats.applied += summary.applied as u64;
                    self.stats.stale += summary.stale as u64;
                    metrics::histogram!("streamwatch_sink_write_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("streamwatch_sink_batch_rows").record(rows.len() as f64);
                    metrics::counter!("streamwatch_sink_rows_total", "outcome" => "applied")
                        .increment(summary.applied as u64);
                    metrics::counter!("streamwatch_sink_rows_total", "outcome" => "stale")
                        .increment(summary.stale as u64);
                    // Rows the database committed (applied, or already newer there).
                    metrics::counter!(EVENTS_OUT_TOTAL, "stage" => STAGE)
                        .increment((summary.applied + summary.stale) as u64);
                    if attempt > 0 {
                        tracing::info!(
                            attempts = attempt + 1,
                            rows = rows.len(),
                            "database write succeeded after retries"
                        );
                    }
                    self.health.set_database(true);
                    return Some(Ok(()));
                }
                Err(error) if error.is_rejection() => {
                    self.health.set_database(true);
                    return Some(Err(error));
                }
                Err(error) => {
                    attempt += 1;
                    self.stats.database_retries += 1;
                    metrics::counter!("streamwatch_sink_database_retries_total").increment(1);
                    self.health.set_database(false);
                    let delay = self.settings.backoff.delay(attempt);
                    tracing::warn!(
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        rows = rows.len(),
                        %error,
                        "database write failed; consumption paused until it succeeds"
                    );
                    if !self.pause_and_wait(delay, shutdown).await {
                        tracing::warn!(
                            rows = rows.len(),
                            "shutdown while the database is failing; these rows are not committed and will be consumed again"
                        );
                        return None;
                    }
                }
            }
        }
    }

    /// Sends one message to the dead-letter topic, retrying while the broker fails. False on shutdown.
    async fn dead_letter(
        &mut self,
        message: &Received,
        kind: &'static str,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            let origin = Origin {
                topic: &message.topic,
                partition: message.partition,
                offset: message.offset,
            };
            let sent = self
                .dead_letters
                .send(
                    kind,
                    reason,
                    Some(origin),
                    message.key.as_deref(),
                    &message.payload,
                )
                .await;
            match sent {
                Ok(()) => {
                    self.stats.dead_lettered += 1;
                    return true;
                }
                Err(error) => {
                    attempt += 1;
                    let delay = self.settings.backoff.delay(attempt);
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %error, "dead-letter write failed; retrying");
                    if !self.pause_and_wait(delay, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Pauses fetching and waits `delay`, still polling the consumer so that librdkafka's
    /// `max.poll.interval.ms` never expires and the group keeps this member. (Pausing drops
    /// prefetched messages; fetching restarts after the last one received.) Partitions assigned
    /// meanwhile are paused on assignment; a message that still arrives is queued.
    /// False when shutdown came first.
    async fn pause_and_wait(&mut self, delay: Duration, shutdown: &CancellationToken) -> bool {
        self.pause();
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return false,
                _ = &mut sleep => return true,
                received = self.consumer.recv() => {
                    if let Ok(message) = received {
                        self.queue.push_back(Received::new(&message));
                    }
                }
            }
            self.pause();
        }
    }

    fn pause(&mut self) {
        if !self.paused {
            metrics::gauge!("streamwatch_sink_paused").set(1.0);
        }
        // Paused even when librdkafka refused: partitions assigned later are paused anyway.
        self.paused = true;
        if let Err(error) = pause_fetching(&self.consumer) {
            tracing::warn!(%error, "could not pause consumption");
        }
    }

    fn resume(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        metrics::gauge!("streamwatch_sink_paused").set(0.0);
        if let Err(error) = resume_fetching(&self.consumer) {
            tracing::warn!(%error, "could not resume consumption");
        }
    }

    /// Stores, per partition, the last offset of the batch (librdkafka commits it + 1).
    fn store_offsets(&self, batch: &[Received]) {
        let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for message in batch {
            let entry = last
                .entry((&message.topic, message.partition))
                .or_insert(message.offset);
            *entry = (*entry).max(message.offset);
        }
        for ((topic, partition), offset) in last {
            if let Err(error) = self.consumer.store_offset(topic, partition, offset) {
                // After a rebalance the partition may belong to another member, which reads these
                // rows again; the upsert makes that harmless.
                tracing::warn!(topic, partition, offset, %error, "offset not stored");
            }
        }
    }

    fn commit(&self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!(topic = %self.settings.topic, "offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                tracing::debug!(topic = %self.settings.topic, "no new offsets to commit")
            }
            Err(error) => {
                tracing::warn!(topic = %self.settings.topic, %error, "final offset commit failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_tells_json_errors_from_wrong_rows() {
        assert_eq!(decode(b"{not json").unwrap_err().0, "invalid_json");
        assert_eq!(decode(b"").unwrap_err().0, "invalid_json");
        let (kind, reason) = decode(br#"{"window": 3}"#).unwrap_err();
        assert_eq!(kind, "invalid_row");
        assert!(reason.contains("not a metric record"), "{reason}");
    }

    #[test]
    fn readiness_needs_both_broker_and_database() {
        let readiness = Readiness::default();
        let health = Health::new(readiness.clone());
        health.set_database(true);
        assert!(!readiness.is_ready());
        health.set_broker(true);
        assert!(readiness.is_ready());
        health.set_database(false);
        assert!(!readiness.is_ready());
    }
}
