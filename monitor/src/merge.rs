//! `monitor merge`: combines the pane partials of scale-out workers (`crate::partials`) into
//! windows, evaluates them and publishes the metric rows (drift, and with
//! `--completions-topic` performance), as a single monitor would.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use streamwatch_common::deadletter::{DeadLetters, Origin};
use streamwatch_common::telemetry::{serve_admin, Readiness, EVENTS_IN_TOTAL, PROCESSING_SECONDS};
use tokio_util::sync::CancellationToken;

use crate::config::{MergeArgs, Resolved};
use crate::health::{instance_name, HealthTracker};
use crate::outputs::{Outputs, Settle};
use crate::partials::{Applied, MergeOperator, PartialRecord, PerfMergeOperator};
use crate::service::{
    alert_state_topic, emit_performance, emit_windows, prepare_drift, prepare_performance,
    DriftSetup,
};
use crate::Result;

/// How long one batch of partials collects before windows are checked.
const BATCH_LINGER: Duration = Duration::from_millis(50);
/// Largest batch of partials.
const MAX_BATCH: usize = 4096;
/// How often the scored topic's partition count is read again while not every partition
/// has reported (a topic can gain partitions; the workers may not have started).
const PARTITIONS_REFRESH: Duration = Duration::from_secs(5);

/// Runs the merger until `shutdown` fires; then stores and commits offsets and returns.
pub async fn run(args: MergeArgs, shutdown: CancellationToken) -> Result<()> {
    let readiness = Readiness::default();
    serve_admin("monitor", &args.admin, readiness.clone(), shutdown.clone()).await?;
    let resolved = Resolved::new(&args.monitored, &args.windowed.windows)?;
    let DriftSetup {
        mapping,
        specs,
        horizon,
        reference,
        mut segments,
        mut alerts,
    } = prepare_drift(&resolved, &args.windowed.update_horizon).await?;
    let mut performance = prepare_performance(&resolved, &args.performance)
        .await?
        .map(|(label_horizon, evaluation)| {
            PerfMergeOperator::new(
                &mapping.monitor_name,
                &specs,
                label_horizon,
                horizon,
                evaluation,
            )
        });
    let kafka = args.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_reachable())
        .await
        .expect("connectivity probe does not panic")?;
    let consumer =
        args.kafka
            .stage_consumer("monitor", &args.group, &[&args.partials_topic], false)?;
    let producer = args.kafka.producer()?;
    let dead_letters = DeadLetters::new(
        producer.clone(),
        &args.windowed.dead_letter_topic,
        "monitor",
    );
    let outputs = Outputs::new(producer.clone(), &args.windowed.output_topic);
    let alert_state = alert_state_topic(
        &args.kafka,
        &args.windowed,
        &args.group,
        &mapping,
        &mut alerts,
        &outputs,
    )
    .await?;
    let columns = mapping.counted_columns().len();
    let mut operator = MergeOperator::new(&mapping.monitor_name, &specs, columns, horizon);
    let mut health =
        HealthTracker::new(&mapping.monitor_name, instance_name(), None, Instant::now());
    let mut next_offsets: FxHashMap<i32, i64> = FxHashMap::default();
    let mut partitions = 0usize;
    let mut partitions_read: Option<Instant> = None;
    let mut warned_performance = false;
    readiness.set(true);
    tracing::info!(
        topic = %args.partials_topic,
        scored_topic = %args.windowed.input_topic,
        group = %args.group,
        windows = ?resolved.windows,
        "merger consuming"
    );

    let mut stopping = false;
    let mut result = Ok(());
    while !stopping {
        if (partitions == 0 || operator.reported_partitions() < partitions)
            && partitions_read.is_none_or(|at| at.elapsed() >= PARTITIONS_REFRESH)
        {
            partitions_read = Some(Instant::now());
            let kafka = args.kafka.clone();
            let topic = args.windowed.input_topic.clone();
            match tokio::task::spawn_blocking(move || {
                kafka.partition_count(&topic, Duration::from_secs(5))
            })
            .await
            .expect("metadata probe does not panic")
            {
                Ok(count) => {
                    partitions = count;
                    operator.set_partitions(count);
                    if let Some(performance) = &mut performance {
                        performance.set_partitions(count);
                    }
                }
                Err(error) => tracing::warn!(%error, "scored topic's partitions unknown"),
            }
        }
        let batch_revocations = consumer.context().revocations();
        let mut pending_dead_letters = Vec::new();
        let mut received = 0usize;
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while received < MAX_BATCH {
            let message = tokio::select! {
                biased;
                _ = shutdown.cancelled() => { stopping = true; break; }
                received = tokio::time::timeout_at(deadline, consumer.recv()) => match received {
                    Err(_) => break,
                    Ok(Err(KafkaError::PartitionEOF(_))) => continue,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "consumer error");
                        break;
                    }
                    Ok(Ok(message)) => message,
                },
            };
            received += 1;
            metrics::counter!(EVENTS_IN_TOTAL, "stage" => "monitor").increment(1);
            let (partition, offset) = (message.partition(), message.offset());
            next_offsets.insert(partition, offset + 1);
            let payload = message.payload().unwrap_or_default();
            match serde_json::from_slice::<PartialRecord>(payload) {
                Ok(PartialRecord::Pane(partial)) => {
                    let applied = operator.apply_pane(
                        &partial,
                        payload,
                        (partition, offset),
                        &mut segments.segmenters,
                    );
                    warn_refused(applied, "pane", partial.partition, partial.pane_start_us);
                }
                Ok(PartialRecord::Performance(partial)) => match &mut performance {
                    Some(performance) => {
                        let applied = performance.apply(&partial, payload, (partition, offset));
                        warn_refused(
                            applied,
                            "performance",
                            partial.partition,
                            partial.pane_start_us,
                        );
                    }
                    None => {
                        if !warned_performance {
                            warned_performance = true;
                            tracing::warn!(
                                partition = partial.partition,
                                "performance partials ignored: this merger has no --completions-topic"
                            );
                        }
                    }
                },
                Ok(PartialRecord::Progress(progress)) => {
                    operator.apply_progress(&progress);
                    if let Some(performance) = &mut performance {
                        performance.apply_progress(&progress);
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
                    pending_dead_letters.push(dead_letters.enqueue(
                        "invalid_partial",
                        &error.to_string(),
                        Some(origin),
                        message.key(),
                        payload,
                    )?);
                }
            }
        }
        for letter in pending_dead_letters {
            letter.delivered().await?;
        }
        let started = Instant::now();
        let (watermark, flush) = operator.advance();
        let ready = operator.take_ready(watermark, flush);
        // Rows and alerts, then the rules' state: all acknowledged before offsets are stored.
        let emitted: Result<()> = async {
            emit_windows(
                &outputs,
                &mapping,
                &reference,
                &segments,
                &mut alerts,
                &mut health,
                ready,
                watermark,
            )
            .await?;
            operator.evict(watermark);
            if let Some(performance) = &mut performance {
                let (watermark, flush) = performance.advance();
                let ready = performance.take_ready(watermark, flush);
                let closed_until = watermark.saturating_sub(performance.label_horizon_us());
                emit_performance(&outputs, &mapping, &mut alerts, ready, closed_until).await?;
                performance.evict(watermark);
            }
            if let Some(topic) = &alert_state {
                topic.save(&mut alerts).await?;
            }
            outputs.checkpoint(
                offsets_to_store(
                    &args.partials_topic,
                    &operator,
                    performance.as_ref(),
                    &next_offsets,
                ),
                batch_revocations,
            );
            outputs.settle(&consumer, Settle::Ready).await
        }
        .await;
        if let Err(error) = emitted {
            result = Err(error);
            break;
        }
        readiness.set(consumer.context().brokers_reachable());
        metrics::gauge!("streamwatch_monitor_open_windows").set(operator.open_windows() as f64);
        metrics::gauge!("streamwatch_monitor_panes").set(operator.partials() as f64);
        if received > 0 {
            metrics::histogram!(PROCESSING_SECONDS, "stage" => "monitor").record(started.elapsed());
        }
    }

    readiness.set(false);
    // The last batch made its checkpoint; after a failure only what was acknowledged before
    // it has its offsets stored.
    if result.is_ok() {
        result = outputs.settle(&consumer, Settle::All).await;
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(%error, "final offset commit skipped");
    }
    if let Err(error) = producer.flush(Duration::from_secs(30)) {
        tracing::warn!(%error, "producer flush at shutdown failed");
    }
    tracing::info!(open_windows = operator.open_windows(), "merger stopped");
    result
}

/// Logs and counts a partial the merger refused.
fn warn_refused(applied: Applied, kind: &str, partition: i32, pane_start_us: i64) {
    match applied {
        Applied::Incomplete => {
            tracing::warn!(
                kind,
                partition,
                pane_start_us,
                "partial rebuilt from fewer events than the one kept; kept the complete one"
            );
            metrics::counter!("streamwatch_monitor_incomplete_partials_total").increment(1);
        }
        Applied::Late => {
            tracing::warn!(
                kind,
                partition,
                pane_start_us,
                "partial after its windows' update or label horizon dropped"
            );
            metrics::counter!("streamwatch_monitor_late_partials_total").increment(1);
        }
        Applied::Malformed => {
            tracing::warn!(
                kind,
                partition,
                pane_start_us,
                "partial does not fit together or has other segment dimensions; dropped"
            );
            metrics::counter!("streamwatch_monitor_malformed_partials_total").increment(1);
        }
        Applied::Changed | Applied::Unchanged | Applied::Foreign => {}
    }
}

/// Per partition of the partials topic, the lowest offset of a partial still kept: a
/// restarted merger re-reads every partial of an open window.
fn offsets_to_store(
    topic: &str,
    operator: &MergeOperator,
    performance: Option<&PerfMergeOperator>,
    next_offsets: &FxHashMap<i32, i64>,
) -> TopicPartitionList {
    let mut positions = TopicPartitionList::new();
    for (&partition, &next) in next_offsets {
        let mut offset = operator.commit_position(partition, next);
        if let Some(performance) = performance {
            offset = performance.commit_position(partition, offset);
        }
        if let Err(error) = positions.add_partition_offset(topic, partition, Offset::Offset(offset))
        {
            tracing::warn!(%error, partition, "offset position rejected");
        }
    }
    positions
}
