//! The stream stage: consume trip events, score them, produce the scored events (or dead
//! letters), and store each input offset only once its output has been acknowledged.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use metrics::{Counter, Gauge, Histogram};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use streamwatch_common::batch::batch_headers;
use streamwatch_common::deadletter::{DeadLetters, Origin};
use streamwatch_common::end_of_stream::{
    delivered, is_end_of_stream, queue_markers, Marker, Upstream, MALFORMED_MARKER,
};
use streamwatch_common::kafka::{partition_count_of, StageConsumer};
use streamwatch_common::telemetry::{
    Readiness, EVENTS_IN_TOTAL, EVENTS_OUT_TOTAL, PROCESSING_SECONDS,
};
use tokio_util::sync::CancellationToken;

use crate::config::RunArgs;
use crate::decode::EventScorer;
use crate::model::LinearModel;
use crate::offsets::OffsetTracker;
use crate::outbox::{Batch, BatchLimits, Outbox};
use crate::{Error, Result};

/// The stage name in metrics labels and dead-letter headers.
pub const STAGE: &str = "scorer";

/// What a run did, counted when the broker acknowledged each output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events_in: u64,
    pub events_out: u64,
    pub dead_lettered: u64,
}

/// Runs the stage until `shutdown` fires (then finishes the in-flight deliveries, stores and
/// commits their offsets, and returns) or until an output cannot be delivered (then the
/// offsets stop before that event and the error is returned, so a restart scores it again).
pub async fn run(
    args: &RunArgs,
    model: LinearModel,
    shutdown: CancellationToken,
    readiness: Readiness,
) -> Result<Summary> {
    let kafka = args.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_reachable())
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
    let producer = args.kafka.producer()?;
    let partitions = output_partitions(args, &producer).await?;
    let consumer = args
        .kafka
        .consumer(STAGE, &args.group, &[args.input_topic.as_str()])?;
    let mut stage = Stage {
        args,
        dead_letters: DeadLetters::new(producer.clone(), &args.dead_letter_topic, STAGE),
        producer,
        scorer: EventScorer::new(model),
        tracker: OffsetTracker::default(),
        outbox: Outbox::new(
            partitions,
            BatchLimits {
                max_events: args.batch_events as usize,
                max_bytes: args.batch_max_bytes,
                linger: Duration::from_millis(args.batch_linger_ms),
            },
        ),
        in_flight: FuturesUnordered::new(),
        in_flight_events: 0,
        metrics: Metrics::new(),
        summary: Summary::default(),
    };
    readiness.set(true);
    // `/readyz` follows the broker connection while consuming.
    let watching = shutdown.child_token();
    {
        let (context, readiness, stop) = (
            consumer.context().clone(),
            readiness.clone(),
            watching.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => readiness.set(context.brokers_reachable()),
                }
            }
        });
    }
    tracing::info!(
        input = %args.input_topic,
        output = %args.output_topic,
        dead_letters = %args.dead_letter_topic,
        group = %args.group,
        model_version = stage.scorer.model().version(),
        output_partitions = partitions,
        batch_events = args.batch_events,
        "scoring trip events"
    );
    let mut consumed = stage.consume(&consumer, &shutdown).await;
    watching.cancel();
    readiness.set(false);
    if consumed.is_ok() {
        consumed = stage.send_all(&consumer).await;
    }
    tracing::info!(
        in_flight = stage.in_flight_events,
        "stopped consuming; waiting for in-flight deliveries"
    );
    let drained = stage.drain(&consumer).await;
    commit(&consumer, &args.group);
    let summary = stage.summary;
    tracing::info!(
        events_in = summary.events_in,
        events_out = summary.events_out,
        dead_lettered = summary.dead_lettered,
        "scorer stopped"
    );
    consumed.and(drained).map(|()| summary)
}

/// The output topic's partition count, which places the batches (the topic is created with
/// the broker's defaults when it does not exist and the broker allows that).
async fn output_partitions(args: &RunArgs, producer: &FutureProducer) -> Result<usize> {
    let (topic, timeout) = (&args.output_topic, args.kafka.connect_timeout());
    let deadline = Instant::now() + timeout;
    loop {
        let found = partition_count_of(producer, topic, timeout)
            .await
            .map_err(|source| Error::Produce {
                topic: topic.clone(),
                source,
            })?;
        if found > 0 {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(Error::NoSuchTopic {
                topic: args.output_topic.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How one output (a batch of scored events or a dead letter) ended.
struct Completion {
    /// The input partition and offset of each event it carries.
    sources: Vec<(i32, i64)>,
    outcome: Outcome,
}

enum Outcome {
    Scored {
        enqueued: Instant,
        result: Result<(), KafkaError>,
    },
    DeadLettered(streamwatch_common::Result<()>),
    /// An end-of-stream marker forwarded to every output partition.
    EndForwarded(Result<(), KafkaError>),
}

struct Metrics {
    events_in: Counter,
    events_out: Counter,
    scoring: Histogram,
    /// Time from receiving a message until its output is queued for the broker.
    processing: Histogram,
    delivery: Histogram,
    in_flight: Gauge,
    event_time: Gauge,
}

impl Metrics {
    fn new() -> Self {
        Self {
            events_in: metrics::counter!(EVENTS_IN_TOTAL, "stage" => STAGE),
            events_out: metrics::counter!(EVENTS_OUT_TOTAL, "stage" => STAGE),
            scoring: metrics::histogram!("streamwatch_scoring_duration_seconds", "stage" => STAGE),
            processing: metrics::histogram!(PROCESSING_SECONDS, "stage" => STAGE),
            delivery: metrics::histogram!("streamwatch_delivery_duration_seconds", "stage" => STAGE),
            in_flight: metrics::gauge!("streamwatch_in_flight_events", "stage" => STAGE),
            event_time: metrics::gauge!("streamwatch_last_event_time_seconds", "stage" => STAGE),
        }
    }
}

struct Stage<'a> {
    args: &'a RunArgs,
    producer: FutureProducer,
    dead_letters: DeadLetters,
    scorer: EventScorer,
    tracker: OffsetTracker,
    outbox: Outbox,
    in_flight: FuturesUnordered<BoxFuture<'static, Completion>>,
    /// Events in `in_flight` (a batch counts its events).
    in_flight_events: usize,
    metrics: Metrics,
    summary: Summary,
}

impl Stage<'_> {
    async fn consume(
        &mut self,
        consumer: &StageConsumer,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let max_in_flight = self.args.max_in_flight.max(1);
        loop {
            let due = self.outbox.next_due();
            let waiting = self.in_flight_events + self.outbox.waiting();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.settle(consumer, done)?;
                }
                () = sleep_until(due), if due.is_some() => {
                    for batch in self.outbox.take_due(Instant::now()) {
                        self.send(consumer, batch).await?;
                    }
                }
                received = consumer.recv(), if waiting < max_in_flight => {
                    match received {
                        Ok(message) => {
                            let received = Instant::now();
                            self.process(consumer, &message, received).await?;
                            self.metrics.processing.record(received.elapsed());
                        }
                        Err(error) => tracing::warn!(
                            topic = %self.args.input_topic,
                            %error,
                            "consumer error; continuing"
                        ),
                    }
                }
            }
        }
    }

    /// Scores one event, received at `received`, and sends its output (or dead letter) on its
    /// way. The clock is read twice per event (it showed under `perf`).
    async fn process(
        &mut self,
        consumer: &StageConsumer,
        message: &BorrowedMessage<'_>,
        received: Instant,
    ) -> Result<()> {
        let (partition, offset) = (message.partition(), message.offset());
        if is_end_of_stream(message.headers()) {
            return self.forward_end(consumer, message).await;
        }
        let payload = message.payload().unwrap_or_default();
        self.metrics.events_in.increment(1);
        self.summary.events_in += 1;
        let scored = self.scorer.score(payload);
        let scored_at = Instant::now();
        self.metrics.scoring.record(scored_at - received);
        self.tracker.start(partition, offset);
        match scored {
            Ok(event) => {
                self.metrics
                    .event_time
                    .set(event.event_time.and_utc().timestamp() as f64);
                let ready = self.outbox.push(
                    event.trip_id.as_bytes(),
                    &event.payload,
                    (partition, offset),
                    message.timestamp().to_millis(),
                    scored_at,
                );
                for batch in ready {
                    self.send(consumer, batch).await?;
                }
            }
            Err(rejection) => {
                let kind = rejection.kind();
                metrics::counter!("streamwatch_events_failed_total", "stage" => STAGE, "reason" => kind)
                    .increment(1);
                self.dead_letter(message, kind, rejection.to_string());
            }
        }
        self.metrics.in_flight.set(self.in_flight_events as f64);
        Ok(())
    }

    /// Sends a rejected message to the dead-letter topic; its offset is stored once the
    /// letter is acknowledged.
    fn dead_letter(&mut self, message: &BorrowedMessage<'_>, kind: &'static str, reason: String) {
        let dead_letters = self.dead_letters.clone();
        let topic = self.args.input_topic.clone();
        let (partition, offset) = (message.partition(), message.offset());
        let key = message.key().map(<[u8]>::to_vec);
        let payload = message.payload().unwrap_or_default().to_vec();
        self.in_flight.push(Box::pin(async move {
            let origin = Origin {
                topic: &topic,
                partition,
                offset,
            };
            let result = dead_letters
                .send(kind, &reason, Some(origin), key.as_deref(), &payload)
                .await;
            Completion {
                sources: vec![(partition, offset)],
                outcome: Outcome::DeadLettered(result),
            }
        }));
        self.in_flight_events += 1;
    }

    /// An end-of-stream marker on an input partition: the open batches go first (they may
    /// hold that partition's last events), then a marker naming the partition to every
    /// output partition. Its offset is stored once all of those are acknowledged.
    async fn forward_end(
        &mut self,
        consumer: &StageConsumer,
        message: &BorrowedMessage<'_>,
    ) -> Result<()> {
        let args = self.args;
        let (partition, offset) = (message.partition(), message.offset());
        self.tracker.start(partition, offset);
        if let Err(reason) = Marker::parse(message.payload().unwrap_or_default()) {
            metrics::counter!("streamwatch_events_failed_total", "stage" => STAGE, "reason" => MALFORMED_MARKER)
                .increment(1);
            self.dead_letter(message, MALFORMED_MARKER, reason);
            return Ok(());
        }
        let input_partitions = partition_count_of(
            &self.producer,
            &args.input_topic,
            args.kafka.connect_timeout(),
        )
        .await
        .map_err(|source| Error::Produce {
            topic: args.input_topic.clone(),
            source,
        })?
        // The topic went away since: the partition read is the last one known.
        .max(partition as usize + 1);
        self.send_all(consumer).await?;
        let marker = Marker {
            upstream: Some(Upstream {
                topic: args.input_topic.clone(),
                partition,
                partitions: input_partitions as u32,
            }),
        };
        let output_partitions = self.outbox.partitions();
        let deliveries = queue_markers(
            &self.producer,
            &args.output_topic,
            output_partitions,
            &marker,
        )
        .await
        .map_err(|source| Error::Produce {
            topic: args.output_topic.clone(),
            source,
        })?;
        self.in_flight.push(Box::pin(async move {
            Completion {
                sources: vec![(partition, offset)],
                outcome: Outcome::EndForwarded(delivered(deliveries).await),
            }
        }));
        self.in_flight_events += 1;
        tracing::info!(
            input_partition = partition,
            input_partitions,
            output_partitions,
            "end of stream read; forwarded to every output partition"
        );
        Ok(())
    }

    /// Sends a batch of scored events on its way.
    async fn send(&mut self, consumer: &StageConsumer, batch: Batch) -> Result<()> {
        let topic = &self.args.output_topic;
        let mut record = FutureRecord::to(topic).payload(&batch.payload);
        match (&batch.key, batch.partition) {
            (Some(key), _) => record = record.key(key),
            (None, Some(partition)) => {
                record = record.partition(partition).headers(batch_headers());
            }
            (None, None) => {}
        }
        if let Some(millis) = batch.timestamp_ms {
            record = record.timestamp(millis);
        }
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer queue is full: let an acknowledgement free a slot.
                    record = back;
                    match self.in_flight.next().await {
                        Some(done) => self.settle(consumer, done)?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((source, _)) => {
                    return Err(Error::Produce {
                        topic: topic.clone(),
                        source,
                    })
                }
            }
        };
        let enqueued = Instant::now();
        self.in_flight_events += batch.sources.len();
        let sources = batch.sources;
        self.in_flight.push(Box::pin(async move {
            let result = match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(error),
                Err(_) => Err(KafkaError::Canceled),
            };
            Completion {
                sources,
                outcome: Outcome::Scored { enqueued, result },
            }
        }));
        self.metrics.in_flight.set(self.in_flight_events as f64);
        Ok(())
    }

    /// Sends every open batch (at shutdown).
    async fn send_all(&mut self, consumer: &StageConsumer) -> Result<()> {
        for batch in self.outbox.take_all() {
            self.send(consumer, batch).await?;
        }
        Ok(())
    }

    /// Accounts for one acknowledged (or failed) output and stores the offsets it unblocks.
    fn settle(&mut self, consumer: &StageConsumer, done: Completion) -> Result<()> {
        let events = done.sources.len();
        self.in_flight_events -= events;
        match done.outcome {
            Outcome::Scored { enqueued, result } => {
                result.map_err(|source| Error::Produce {
                    topic: self.args.output_topic.clone(),
                    source,
                })?;
                self.metrics.delivery.record(enqueued.elapsed());
                self.metrics.events_out.increment(events as u64);
                self.summary.events_out += events as u64;
            }
            Outcome::DeadLettered(result) => {
                result?;
                self.summary.dead_lettered += 1;
            }
            Outcome::EndForwarded(result) => {
                result.map_err(|source| Error::Produce {
                    topic: self.args.output_topic.clone(),
                    source,
                })?;
            }
        }
        // The last offset each partition may now store (a batch holds several partitions').
        let mut storable: Vec<(i32, i64)> = Vec::new();
        for &(partition, offset) in &done.sources {
            if let Some(offset) = self.tracker.acknowledge(partition, offset) {
                match storable.iter_mut().find(|(p, _)| *p == partition) {
                    Some(entry) => entry.1 = entry.1.max(offset),
                    None => storable.push((partition, offset)),
                }
            }
        }
        for (partition, offset) in storable {
            if let Err(error) = consumer.store_offset(&self.args.input_topic, partition, offset) {
                // Happens after a rebalance took the partition away; its new owner re-reads.
                tracing::warn!(
                    topic = %self.args.input_topic,
                    partition,
                    offset,
                    %error,
                    "could not store the offset"
                );
            }
        }
        Ok(())
    }

    /// Waits for every in-flight output; returns the first failure.
    async fn drain(&mut self, consumer: &StageConsumer) -> Result<()> {
        let mut outcome = Ok(());
        while let Some(done) = self.in_flight.next().await {
            if let Err(error) = self.settle(consumer, done) {
                if outcome.is_ok() {
                    outcome = Err(error);
                } else {
                    tracing::error!(%error, "another output failed");
                }
            }
        }
        self.metrics.in_flight.set(self.in_flight_events as f64);
        outcome
    }
}

/// Commits the stored offsets synchronously. A failure only means the events after the
/// last background commit get scored again after a restart (at-least-once), so it is logged.
fn commit(consumer: &StageConsumer, group: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::info!(group, "offsets committed"),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
            tracing::info!(group, "no new offsets to commit")
        }
        Err(error) => tracing::warn!(
            group,
            %error,
            "could not commit offsets; events since the last commit will be scored again"
        ),
    }
}

/// Sleeps until `due` (never when there is none; the branch is disabled then).
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}
