//! `monitor run`: the Kafka loop. Decode a micro-batch, add it to the window panes,
//! advance the watermark, publish the windows it closed, store offsets that no kept pane
//! still needs (so a restart rebuilds open windows from the topic).

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use streamwatch_common::deadletter::{DeadLetters, Origin};
use streamwatch_common::events::MetricRow;
use streamwatch_common::telemetry::{serve_admin, Readiness};
use tokio_util::sync::CancellationToken;

use crate::batch::reference_from_parquet;
use crate::config::{Resolved, RunArgs};
use crate::decode::{DecodedEvent, Decoder};
use crate::evaluate::{evaluate, ReferenceColumn};
use crate::mapping::ColumnMapping;
use crate::report::metric_row;
use crate::window::{parse_duration, MicroBatch, Watermarks, WindowOperator, WindowSpec};
use crate::{MonitorError, Result};

/// How long one micro-batch collects events before it is processed.
const BATCH_LINGER: Duration = Duration::from_millis(50);

struct Outputs {
    producer: FutureProducer,
    topic: String,
}

impl Outputs {
    async fn publish(&self, row: &MetricRow) -> Result<()> {
        let key = row.window.message_key();
        let payload = serde_json::to_vec(row).expect("metric rows serialise");
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&payload),
                Duration::from_secs(60),
            )
            .await
            .map(|_| ())
            .map_err(|(source, _)| MonitorError::Publish {
                target: format!("{}: {key}", self.topic),
                source,
            })
    }
}

/// Runs the monitor until `shutdown` fires; then stores and commits offsets and returns.
pub async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<()> {
    let readiness = Readiness::default();
    serve_admin("monitor", &args.admin, readiness.clone(), shutdown.clone()).await?;

    let resolved = Resolved::new(&args.monitored, &args.windows)?;
    let mapping = resolved.mapping;
    let specs = resolved
        .windows
        .iter()
        .map(|w| WindowSpec::parse(w))
        .collect::<Result<Vec<_>>>()?;
    let lateness = parse_duration(&args.allowed_lateness)?;
    let horizon = parse_duration(&args.update_horizon)?;
    let idle = Duration::from_micros(parse_duration(&args.idle_timeout)? as u64);

    let started = Instant::now();
    let reference = reference_from_parquet(&resolved.reference, &mapping).await?;
    tracing::info!(
        path = %resolved.reference,
        columns = reference.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reference profile built"
    );

    let kafka = args.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_reachable(Duration::from_secs(10)))
        .await
        .expect("connectivity probe does not panic")?;
    let consumer = args
        .kafka
        .consumer_reporting_eof(&args.group, &[&args.input_topic], true)?;
    let producer = args.kafka.producer()?;
    let dead_letters = DeadLetters::new(producer.clone(), &args.dead_letter_topic, "monitor");
    let outputs = Outputs {
        producer: producer.clone(),
        topic: args.output_topic.clone(),
    };
    readiness.set(true);
    tracing::info!(
        topic = %args.input_topic,
        group = %args.group,
        windows = ?resolved.windows,
        "monitor consuming"
    );

    let mut state = LoopState {
        decoder: Decoder::new(&mapping.counted_columns(), &mapping.ignored),
        operator: WindowOperator::new(&specs, mapping.counted_columns().len(), horizon),
        watermarks: Watermarks::new(lateness, idle),
        batch: MicroBatch::default(),
        event: DecodedEvent::default(),
        next_offsets: FxHashMap::default(),
    };
    let result = consume(
        &args,
        &consumer,
        &dead_letters,
        &outputs,
        &mapping,
        &reference,
        &mut state,
        &shutdown,
    )
    .await;

    readiness.set(false);
    store_offsets(&consumer, &args.input_topic, &state);
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing consumed yet means nothing to commit.
        tracing::debug!(%error, "final offset commit skipped");
    }
    if let Err(error) = producer.flush(Duration::from_secs(30)) {
        tracing::warn!(%error, "producer flush at shutdown failed");
    }
    tracing::info!(
        open_windows = state.operator.open_windows(),
        "monitor stopped"
    );
    result
}

struct LoopState {
    decoder: Decoder,
    operator: WindowOperator,
    watermarks: Watermarks,
    batch: MicroBatch,
    event: DecodedEvent,
    /// One past the last consumed offset, per partition.
    next_offsets: FxHashMap<i32, i64>,
}

#[allow(clippy::too_many_arguments)]
async fn consume(
    args: &RunArgs,
    consumer: &StreamConsumer,
    dead_letters: &DeadLetters,
    outputs: &Outputs,
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    state: &mut LoopState,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut stopping = false;
    while !stopping {
        state.batch.clear();
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while state.batch.len() < args.max_batch {
            let message = tokio::select! {
                biased;
                _ = shutdown.cancelled() => { stopping = true; break; }
                received = tokio::time::timeout_at(deadline, consumer.recv()) => match received {
                    Err(_) => break,
                    Ok(Err(KafkaError::PartitionEOF(partition))) => {
                        state.watermarks.reached_end(partition, Instant::now());
                        continue;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "consumer error");
                        break;
                    }
                    Ok(Ok(message)) => message,
                },
            };
            let partition = message.partition();
            let offset = message.offset();
            state.next_offsets.insert(partition, offset + 1);
            metrics::counter!("streamwatch_events_in_total", "stage" => "monitor").increment(1);
            let payload = message.payload().unwrap_or_default();
            match state.decoder.decode(payload, &mut state.event) {
                Ok(()) => {
                    let time = state.event.event_time_us;
                    state.watermarks.observe(partition, time, Instant::now());
                    let duplicate = state
                        .event
                        .trip_id
                        .as_deref()
                        .is_some_and(|id| state.operator.is_duplicate(id, time));
                    if duplicate {
                        metrics::counter!("streamwatch_monitor_duplicates_total").increment(1);
                    } else {
                        state.batch.push(&state.event, partition, offset);
                    }
                }
                Err(error) => {
                    metrics::counter!("streamwatch_events_failed_total", "stage" => "monitor")
                        .increment(1);
                    let origin = Origin {
                        topic: message.topic(),
                        partition,
                        offset,
                    };
                    dead_letters
                        .send(
                            error.kind,
                            &error.reason,
                            Some(origin),
                            message.key(),
                            payload,
                        )
                        .await?;
                }
            }
        }
        process(args, consumer, outputs, mapping, reference, state).await?;
    }
    Ok(())
}

async fn process(
    args: &RunArgs,
    consumer: &StreamConsumer,
    outputs: &Outputs,
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    state: &mut LoopState,
) -> Result<()> {
    track_assignment(consumer, &args.input_topic, &mut state.watermarks);
    let before = state.watermarks.current();
    let stats = state.operator.ingest(&state.batch, before);
    if stats.late_dropped > 0 {
        tracing::warn!(
            dropped = stats.late_dropped,
            watermark_us = before,
            "events arrived after their windows' update horizon and were dropped"
        );
        metrics::counter!("streamwatch_monitor_late_events_dropped_total")
            .increment(stats.late_dropped);
    }
    let now = Instant::now();
    let watermark = state.watermarks.advance(now);
    let flush = state.batch.is_empty() && state.watermarks.all_idle(now);
    for window in state.operator.take_ready(watermark, flush) {
        let started = Instant::now();
        let metrics = evaluate(mapping, reference, &window.data);
        metrics::histogram!("streamwatch_monitor_window_eval_seconds")
            .record(started.elapsed().as_secs_f64());
        let row = metric_row(mapping, &window, metrics);
        outputs.publish(&row).await?;
        metrics::counter!("streamwatch_monitor_windows_emitted_total", "kind" => row.window.kind.as_str())
            .increment(1);
        tracing::info!(
            window = %row.window.message_key(),
            revision = row.revision,
            rows = row.row_count,
            drifted = row.number_of_drifted_columns,
            early = flush,
            "window emitted"
        );
    }
    state.operator.evict(watermark);
    store_offsets(consumer, &args.input_topic, state);
    metrics::gauge!("streamwatch_monitor_open_windows").set(state.operator.open_windows() as f64);
    metrics::gauge!("streamwatch_monitor_panes").set(state.operator.panes() as f64);
    Ok(())
}

/// Partitions assigned to this instance hold the watermark back until they deliver
/// events or are caught up; revoked ones stop counting.
fn track_assignment(consumer: &StreamConsumer, topic: &str, watermarks: &mut Watermarks) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let owned: Vec<i32> = assignment
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    if owned.is_empty() {
        return;
    }
    let now = Instant::now();
    for partition in &owned {
        watermarks.assign(*partition, now);
    }
    watermarks.retain_partitions(|p| owned.contains(&p));
}

fn store_offsets(consumer: &StreamConsumer, topic: &str, state: &LoopState) {
    let mut positions = TopicPartitionList::new();
    for (&partition, &next) in &state.next_offsets {
        let position = state.operator.commit_position(partition, next);
        if let Err(error) =
            positions.add_partition_offset(topic, partition, Offset::Offset(position))
        {
            tracing::warn!(%error, partition, "offset position rejected");
        }
    }
    if positions.count() > 0 {
        if let Err(error) = consumer.store_offsets(&positions) {
            // After a rebalance the partition may belong to another instance.
            tracing::debug!(%error, "offsets not stored");
        }
    }
}
