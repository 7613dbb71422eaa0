//! `monitor run`: the Kafka loop. Decode a micro-batch, add it to the window panes,
//! advance the watermark, publish the windows it closed, store offsets that no kept pane
//! still needs (so a restart rebuilds open windows from the topic).

use std::time::{Duration, Instant};

use metrics::Counter;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use streamwatch_common::batch::{events as batch_events, is_batch};
use streamwatch_common::deadletter::{DeadLetters, Origin};
use streamwatch_common::end_of_stream::{is_end_of_stream, Ends, Marker, MALFORMED_MARKER};
use streamwatch_common::events::{AlertEvent, MetricsRecord};
use streamwatch_common::kafka::{KafkaArgs, StageConsumer};
use streamwatch_common::telemetry::{serve_admin, Readiness, EVENTS_IN_TOTAL, PROCESSING_SECONDS};
use tokio_util::sync::CancellationToken;

use crate::alert_state::AlertStateTopic;
use crate::alerts::{check_windows, Alerts};
use crate::batch::{reference_errors, reference_from_parquet};
use crate::config::{PerformanceArgs, Resolved, RunArgs, WindowedArgs};
use crate::decode::{decode_completion, DecodedEvent, Decoder};
use crate::evaluate::{evaluate, ReferenceColumn};
use crate::health::{instance_name, Gauges, HealthTracker};
use crate::mapping::ColumnMapping;
use crate::outliers::OutlierBounds;
use crate::outputs::{Outputs, Settle};
use crate::partials::{PanePartial, PaneState, PartialRecord, PartitionProgress};
use crate::performance::{
    PerfEvaluation, PerformanceOperator, Position, Prediction, ReadyPerformance,
};
use crate::report::{late_events, metric_row, performance_report};
use crate::segments::{segment_drift, SegmentReference, Segmenter};
use crate::window::{
    parse_duration, IdKind, IngestStats, MicroBatch, ReadyWindow, Watermarks, WindowOperator,
    WindowSpec,
};
use crate::{MonitorError, Result};

/// Index of the scored topic in watermark and offset keys.
const SCORED: u8 = 0;
/// Index of the completions topic.
const COMPLETIONS: u8 = 1;

/// How long one micro-batch collects events before it is processed.
const BATCH_LINGER: Duration = Duration::from_millis(50);

/// What evaluating drift windows needs, from the spec and the reference (`run` and `merge`).
pub(crate) struct DriftSetup {
    pub(crate) mapping: ColumnMapping,
    pub(crate) specs: Vec<WindowSpec>,
    /// The update horizon (microseconds).
    pub(crate) horizon: i64,
    pub(crate) reference: Vec<ReferenceColumn>,
    pub(crate) segments: DriftSegments,
    pub(crate) alerts: Alerts,
}

pub(crate) async fn prepare_drift(resolved: &Resolved, update_horizon: &str) -> Result<DriftSetup> {
    let mapping = resolved.mapping.clone();
    let specs = resolved
        .windows
        .iter()
        .map(|w| WindowSpec::parse(w))
        .collect::<Result<Vec<_>>>()?;
    let horizon = parse_duration(update_horizon)?;
    let started = Instant::now();
    let reference = reference_from_parquet(&resolved.reference, &mapping).await?;
    tracing::info!(
        path = %resolved.reference,
        columns = reference.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reference profile built"
    );
    let counted = mapping.counted_columns();
    let mut segmenters = resolved
        .segments
        .iter()
        .filter(|segment| segment.drift)
        .map(|segment| Segmenter::new(segment, &counted))
        .collect::<Result<Vec<_>>>()?;
    let segment_reference =
        SegmentReference::from_parquet(&resolved.reference, &mapping, &reference, &mut segmenters)
            .await?;
    check_windows(&resolved.alerts, &resolved.windows)?;
    let alerts = Alerts::new(&resolved.alerts, horizon)?;
    Ok(DriftSetup {
        mapping,
        specs,
        horizon,
        reference,
        segments: DriftSegments {
            segmenters,
            reference: segment_reference,
            min_rows: resolved.segment_min_rows,
            ids: Vec::new(),
        },
        alerts,
    })
}

/// What evaluating performance needs (`run` and `merge`): the label horizon (microseconds)
/// and how windows are evaluated; `None` without a completions topic.
pub(crate) async fn prepare_performance(
    resolved: &Resolved,
    args: &PerformanceArgs,
) -> Result<Option<(i64, PerfEvaluation)>> {
    if args.completions_topic.is_empty() {
        return Ok(None);
    }
    let mapping = &resolved.mapping;
    let counted = mapping.counted_columns();
    let segmenters = resolved
        .segments
        .iter()
        .map(|segment| Segmenter::new(segment, &counted))
        .collect::<Result<Vec<_>>>()?;
    let label_horizon = parse_duration(&args.label_horizon)?;
    let target = resolved.target.as_deref().unwrap_or(&args.target);
    let errors = reference_errors(&resolved.reference, mapping.prediction(), target).await?;
    let error_bounds =
        errors.and_then(|e| OutlierBounds::new(&e.without_infinite(), mapping.outlier_quantiles));
    Ok(Some((
        label_horizon,
        PerfEvaluation {
            settings: resolved.performance.clone(),
            segmenters,
            error_bounds,
        },
    )))
}

/// Scale-out workers join the completions of partition p with the predictions of partition
/// p: both topics must have the same partition count (and be keyed by trip id with the same
/// partitioner, as the scorer and the producer are).
async fn check_co_partitioned(
    kafka: &KafkaArgs,
    scored_topic: &str,
    args: &PerformanceArgs,
) -> Result<()> {
    let (kafka, scored, completions) = (
        kafka.clone(),
        scored_topic.to_owned(),
        args.completions_topic.clone(),
    );
    let timeout = kafka.connect_timeout();
    let (scored_partitions, completions_partitions) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            Ok((
                kafka.partition_count(&scored, timeout)?,
                kafka.partition_count(&completions, timeout)?,
            ))
        })
        .await
        .expect("metadata probe does not panic")?;
    if scored_partitions == 0 || scored_partitions != completions_partitions {
        return Err(MonitorError::Config(format!(
            "--partials-topic with --completions-topic needs both topics with the same number \
             of partitions (a worker joins partition p of one with partition p of the other): \
             {scored_topic} has {scored_partitions}, {} has {completions_partitions}",
            args.completions_topic
        )));
    }
    Ok(())
}

/// Runs the monitor until `shutdown` fires; then stores and commits offsets and returns.
pub async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<()> {
    let readiness = Readiness::default();
    serve_admin("monitor", &args.admin, readiness.clone(), shutdown.clone()).await?;

    let resolved = Resolved::new(&args.monitored, &args.windowed.windows)?;
    let DriftSetup {
        mapping,
        specs,
        horizon,
        reference,
        segments,
        mut alerts,
    } = prepare_drift(&resolved, &args.windowed.update_horizon).await?;
    let lateness = parse_duration(&args.allowed_lateness)?;
    let idle = Duration::from_micros(parse_duration(&args.idle_timeout)? as u64);
    let health_interval = match args.health_interval.trim() {
        "0" | "0s" => None,
        text => Some(Duration::from_micros(parse_duration(text)? as u64)),
    };
    let counted = mapping.counted_columns();
    let scale_out = !args.partials_topic.is_empty();

    let kafka = args.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_reachable())
        .await
        .expect("connectivity probe does not panic")?;
    let mut topics = vec![args.windowed.input_topic.as_str()];
    let performance = prepare_performance(&resolved, &args.performance)
        .await?
        .map(|(label_horizon, evaluation)| {
            PerformanceOperator::new(
                &specs,
                label_horizon,
                evaluation.settings,
                evaluation.segmenters,
            )
            .with_error_bounds(evaluation.error_bounds)
            .with_update_horizon(horizon)
        });
    let mut kafka = args.kafka.clone();
    if performance.is_some() {
        topics.push(&args.performance.completions_topic);
        if scale_out {
            check_co_partitioned(&args.kafka, &args.windowed.input_topic, &args.performance)
                .await?;
            // Range assigns each topic's partitions by index, so with equal counts a worker
            // owns partition p of both topics: a trip's prediction and truth meet.
            kafka.extra_config =
                format!("{},partition.assignment.strategy=range", kafka.extra_config);
        }
    }
    // A worker joins per partition (`PartitionedWindows`), a single instance over all.
    let (performance, partition_performance) = if scale_out {
        (None, performance.map(PerformanceOperator::exporting_panes))
    } else {
        (performance, None)
    };
    let target = resolved
        .target
        .clone()
        .unwrap_or_else(|| args.performance.target.clone());
    let consumer = kafka.stage_consumer("monitor", &args.group, &topics, true)?;
    let producer = args.kafka.producer()?;
    let dead_letters = DeadLetters::new(
        producer.clone(),
        &args.windowed.dead_letter_topic,
        "monitor",
    );
    let outputs = Outputs::new(producer.clone(), &args.windowed.output_topic);
    // Workers evaluate no alerts: their merger does.
    let alert_state = if scale_out {
        None
    } else {
        alert_state_topic(
            &args.kafka,
            &args.windowed,
            &args.group,
            &mapping,
            &mut alerts,
            &outputs,
        )
        .await?
    };
    let dimensions = segments.segmenters.len();
    let partitioned = scale_out.then(|| PartitionedWindows {
        outputs: outputs.for_topic(&args.partials_topic),
        specs: specs.clone(),
        columns: counted.len(),
        horizon,
        dimensions,
        performance: partition_performance,
        partitions: FxHashMap::default(),
    });
    readiness.set(true);
    tracing::info!(
        topics = ?topics,
        group = %args.group,
        windows = ?resolved.windows,
        "monitor consuming"
    );

    let mut state = LoopState {
        decoder: Decoder::new(&mapping.counted_columns(), &mapping.ignored),
        operator: WindowOperator::new(&specs, counted.len(), horizon)
            .with_segment_dimensions(dimensions),
        partitioned,
        segments,
        watermarks: Watermarks::new(lateness, idle),
        completion_marks: Watermarks::new(lateness, idle),
        scored_ends: Ends::default(),
        completion_ends: Ends::default(),
        batch: MicroBatch::default(),
        event: DecodedEvent::default(),
        next_offsets: FxHashMap::default(),
        performance,
        target,
        alerts,
        alert_state,
        readiness: readiness.clone(),
        batch_revocations: consumer.context().revocations(),
        health: HealthTracker::new(
            &mapping.monitor_name,
            instance_name(),
            health_interval,
            Instant::now(),
        ),
        counters: EventCounters::new(),
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
    // The last batch made its checkpoint; after a failure only what was acknowledged before
    // it has its offsets stored.
    let result = match result {
        Ok(()) => outputs.settle(&consumer, Settle::All).await,
        Err(error) => Err(error),
    };
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
    /// The consumer's revocation count when the current micro-batch began.
    batch_revocations: u64,
    decoder: Decoder,
    operator: WindowOperator,
    /// Scale-out worker: windows per partition, exported as pane partials.
    partitioned: Option<PartitionedWindows>,
    /// The scored topic's watermark: it alone closes drift windows, so completions read
    /// ahead of the scored events (the scorer lags) cannot make those late.
    watermarks: Watermarks,
    /// The completions topic's watermark; performance windows close on the lower of the two.
    completion_marks: Watermarks,
    /// End-of-stream markers read on the scored topic's partitions, and on the completions'.
    scored_ends: Ends,
    completion_ends: Ends,
    batch: MicroBatch,
    event: DecodedEvent,
    segments: DriftSegments,
    /// One past the last consumed offset, per topic and partition (a scale-out worker keeps
    /// them per partition, in `partitioned`).
    next_offsets: FxHashMap<Position, i64>,
    /// The join with completions, when a completions topic is read.
    performance: Option<PerformanceOperator>,
    /// The target's field in completion events.
    target: String,
    alerts: Alerts,
    alert_state: Option<AlertStateTopic>,
    /// `/readyz`: up while a broker is reachable.
    readiness: Readiness,
    health: HealthTracker,
    counters: EventCounters,
}

/// Counters bumped per event, registered once: looking one up by name costs a hash of its
/// key and a registry read each time, a tenth of a completion's handling under `perf`.
struct EventCounters {
    duplicates: Counter,
    late_predictions: Counter,
    completions: Counter,
    late_completions: Counter,
}

impl EventCounters {
    fn new() -> Self {
        Self {
            duplicates: metrics::counter!("streamwatch_monitor_duplicates_total"),
            late_predictions: metrics::counter!("streamwatch_monitor_late_predictions_total"),
            completions: metrics::counter!("streamwatch_monitor_completions_total"),
            late_completions: metrics::counter!("streamwatch_monitor_late_completions_total"),
        }
    }
}

impl LoopState {
    /// An end-of-stream marker read at `position`: the partition is idle as soon as it is
    /// caught up once the markers of every upstream partition are in.
    fn end_of_stream(&mut self, position: Position, marker: &Marker, topic: &str) {
        let (ends, marks) = if position.topic == SCORED {
            (&mut self.scored_ends, &mut self.watermarks)
        } else {
            (&mut self.completion_ends, &mut self.completion_marks)
        };
        if ends.record(position.partition, marker) {
            marks.end_of_stream(position.partition, Instant::now());
            tracing::info!(
                topic,
                partition = position.partition,
                "end of stream: the partition is idle once read to its end"
            );
        }
    }

    /// Whether completions are read: by the single instance's join or the workers'
    /// per-partition ones.
    fn joins_completions(&self) -> bool {
        self.performance.is_some()
            || self
                .partitioned
                .as_ref()
                .is_some_and(|p| p.performance.is_some())
    }
}

/// Drift and data quality per segment (`[[segments]]` with `drift = true`).
pub(crate) struct DriftSegments {
    pub(crate) segmenters: Vec<Segmenter>,
    reference: SegmentReference,
    min_rows: u64,
    /// The current event's segment ids (reused).
    ids: Vec<u32>,
}

/// A scale-out worker's windows: one operator per partition of the scored topic, so each
/// pane's state per partition can be exported for the merger (`crate::partials`).
struct PartitionedWindows {
    outputs: Outputs,
    specs: Vec<WindowSpec>,
    columns: usize,
    horizon: i64,
    dimensions: usize,
    /// With completions: a new partition's join (no state yet).
    performance: Option<PerformanceOperator>,
    partitions: FxHashMap<i32, PartitionWindows>,
}

struct PartitionWindows {
    operator: WindowOperator,
    batch: MicroBatch,
    /// The partition's watermark as last exported, and whether it was idle.
    watermark: i64,
    idle: bool,
    /// The join of the partition's predictions with its completions (partition p of both
    /// topics), with its watermark (the lower of the two topics') and idleness as last
    /// exported.
    performance: Option<PerformanceOperator>,
    performance_watermark: i64,
    performance_idle: bool,
    /// When progress was last published (a heartbeat even when nothing changes, so a
    /// restarted merger learns every partition's watermark).
    reported_at: Option<Instant>,
    /// One past the last offset read in each topic (`SCORED`, `COMPLETIONS`) since the
    /// partition was assigned. They live and go with the partition's panes: a revoked and
    /// reassigned partition is re-read from its committed offsets, and positions read
    /// before the revocation would store offsets past the panes the new state must rebuild.
    next_offsets: [Option<i64>; 2],
}

/// How often a worker re-publishes an unchanged partition's progress.
const PROGRESS_HEARTBEAT: Duration = Duration::from_secs(1);

impl PartitionedWindows {
    fn partition(&mut self, partition: i32) -> &mut PartitionWindows {
        let (specs, columns, horizon, dimensions, performance) = (
            &self.specs,
            self.columns,
            self.horizon,
            self.dimensions,
            &self.performance,
        );
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionWindows {
                operator: WindowOperator::new(specs, columns, horizon)
                    .with_segment_dimensions(dimensions)
                    .exporting_panes(),
                batch: MicroBatch::default(),
                watermark: i64::MIN,
                idle: false,
                performance: performance.clone(),
                performance_watermark: i64::MIN,
                performance_idle: false,
                reported_at: None,
                next_offsets: [None; 2],
            })
    }

    /// A message was read at `offset` of `position`.
    fn read(&mut self, position: Position, offset: i64) {
        self.partition(position.partition).next_offsets[usize::from(position.topic)] =
            Some(offset + 1);
    }

    /// Drops the state of partitions no longer assigned: their next owner (maybe this
    /// instance again) rebuilds their panes from the committed offsets.
    fn retain_assigned(&mut self, owned: &[i32]) {
        self.partitions.retain(|p, _| owned.contains(p));
    }

    /// Per topic and partition read since its assignment, the offset to store: the lowest
    /// one a kept pane or waiting join entry needs, or the next one to read.
    fn offsets_to_store(&self) -> Vec<(Position, i64)> {
        let mut offsets = Vec::new();
        for (&partition, part) in &self.partitions {
            for topic in [SCORED, COMPLETIONS] {
                let Some(next) = part.next_offsets[usize::from(topic)] else {
                    continue;
                };
                let position = Position { topic, partition };
                let lowest =
                    lowest_needed(position, next, &part.operator, part.performance.as_ref());
                offsets.push((position, lowest));
            }
        }
        offsets
    }
}

#[allow(clippy::too_many_arguments)]
async fn consume(
    args: &RunArgs,
    consumer: &StageConsumer,
    dead_letters: &DeadLetters,
    outputs: &Outputs,
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    state: &mut LoopState,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut stopping = false;
    let mut pending_dead_letters = Vec::new();
    while !stopping {
        state.batch_revocations = consumer.context().revocations();
        state.batch.clear();
        if let Some(partitioned) = &mut state.partitioned {
            partitioned
                .partitions
                .values_mut()
                .for_each(|p| p.batch.clear());
        }
        let mut received = 0usize;
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while state.batch.len() < args.max_batch {
            let message = tokio::select! {
                biased;
                _ = shutdown.cancelled() => { stopping = true; break; }
                received = tokio::time::timeout_at(deadline, consumer.recv()) => match received {
                    Err(_) => break,
                    Ok(Err(KafkaError::PartitionEOF(partition))) => {
                        // The error names no topic, so the partition counts as caught up in
                        // both; one with more to read delivers it soon, which undoes that
                        // (idleness also needs silence for the idle timeout).
                        state.watermarks.reached_end(partition, Instant::now());
                        if state.joins_completions() {
                            state.completion_marks.reached_end(partition, Instant::now());
                        }
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
            let topic = if message.topic() == args.windowed.input_topic {
                SCORED
            } else {
                COMPLETIONS
            };
            let position = Position { topic, partition };
            match &mut state.partitioned {
                Some(partitioned) => partitioned.read(position, offset),
                None => {
                    state.next_offsets.insert(position, offset + 1);
                }
            }
            let payload = message.payload().unwrap_or_default();
            let origin = Origin {
                topic: message.topic(),
                partition,
                offset,
            };
            if is_end_of_stream(message.headers()) {
                match Marker::parse(payload) {
                    Ok(marker) => state.end_of_stream(position, &marker, message.topic()),
                    Err(reason) => {
                        state.health.event_failed();
                        pending_dead_letters.push(dead_letters.enqueue(
                            MALFORMED_MARKER,
                            &reason,
                            Some(origin),
                            message.key(),
                            payload,
                        )?);
                    }
                }
                continue;
            }
            if topic == SCORED && is_batch(message.headers()) {
                let published_ms = message.timestamp().to_millis();
                let now = Instant::now();
                for (index, event) in batch_events(payload) {
                    state.health.event_in();
                    received += 1;
                    let place = (position, offset, index);
                    if let Err(error) = take_scored(state, place, event, published_ms, now) {
                        let reason = format!("event {index} of a batch: {}", error.reason);
                        state.health.event_failed();
                        pending_dead_letters.push(dead_letters.enqueue(
                            error.kind,
                            &reason,
                            Some(origin),
                            None,
                            event,
                        )?);
                    }
                }
                continue;
            }
            state.health.event_in();
            received += 1;
            let decoded = if topic == SCORED {
                let published_ms = message.timestamp().to_millis();
                take_scored(
                    state,
                    (position, offset, 0),
                    payload,
                    published_ms,
                    Instant::now(),
                )
            } else {
                take_completion(state, position, offset, payload)
            };
            if let Err(error) = decoded {
                state.health.event_failed();
                pending_dead_letters.push(dead_letters.enqueue(
                    error.kind,
                    &error.reason,
                    Some(origin),
                    message.key(),
                    payload,
                )?);
            }
        }
        metrics::counter!("streamwatch_events_failed_total", "stage" => "monitor")
            .increment(pending_dead_letters.len() as u64);
        metrics::counter!(EVENTS_IN_TOTAL, "stage" => "monitor").increment(received as u64);
        // Offsets move past a dead-lettered event only once the broker has its letter.
        for letter in pending_dead_letters.drain(..) {
            letter.delivered().await?;
        }
        let started = Instant::now();
        process(args, consumer, outputs, mapping, reference, state).await?;
        if received > 0 {
            metrics::histogram!(PROCESSING_SECONDS, "stage" => "monitor").record(started.elapsed());
        }
    }
    Ok(())
}

/// A scored event, at (position, offset, index in its message), read at `now`: into the
/// micro-batch for the drift windows, and into the join.
fn take_scored(
    state: &mut LoopState,
    (position, offset, index): (Position, i64, u32),
    payload: &[u8],
    published_ms: Option<i64>,
    now: Instant,
) -> std::result::Result<(), crate::decode::DecodeError> {
    state.decoder.decode(payload, &mut state.event)?;
    let time = state.event.event_time_us;
    state.watermarks.observe(position.partition, time, now);
    let operator = match &mut state.partitioned {
        Some(partitioned) => &mut partitioned.partition(position.partition).operator,
        None => &mut state.operator,
    };
    let duplicate = state
        .event
        .trip_id
        .as_deref()
        .is_some_and(|id| operator.is_duplicate(id, IdKind::Event, time));
    if duplicate {
        state.counters.duplicates.increment(1);
        return Ok(());
    }
    let segments = &mut state.segments;
    segments.ids.clear();
    for segmenter in &mut segments.segmenters {
        let value = state.event.values.get(segmenter.column).copied().flatten();
        segments.ids.push(segmenter.classify(value));
    }
    let batch = match &mut state.partitioned {
        Some(partitioned) => &mut partitioned.partition(position.partition).batch,
        None => &mut state.batch,
    };
    batch.push_segmented(&state.event, &segments.ids, position.partition, offset);
    batch.set_index(index);
    if let Some(millis) = published_ms {
        batch.set_published_ms(millis);
    }
    let Some(id) = &state.event.trip_id else {
        return Ok(());
    };
    let (performance, watermark) = match &mut state.partitioned {
        Some(partitioned) => {
            let part = partitioned.partition(position.partition);
            (part.performance.as_mut(), part.performance_watermark)
        }
        None => (
            state.performance.as_mut(),
            performance_watermark(state.watermarks.current(), &state.completion_marks),
        ),
    };
    if let Some(performance) = performance {
        let prediction = Prediction {
            time_us: time,
            // The prediction is the first counted column.
            value: state.event.values.first().copied().flatten(),
            segments: performance.classify(&state.event.values),
        };
        if !performance.predict(id, prediction, position, offset, watermark) {
            state.counters.late_predictions.increment(1);
        }
    }
    Ok(())
}

/// A completion event: joined with its prediction (now or when it comes).
fn take_completion(
    state: &mut LoopState,
    position: Position,
    offset: i64,
    payload: &[u8],
) -> std::result::Result<(), crate::decode::DecodeError> {
    let (id, completion) = decode_completion(payload, &state.target)?;
    state
        .completion_marks
        .observe(position.partition, completion.time_us, Instant::now());
    let (operator, performance, watermark) = match &mut state.partitioned {
        Some(partitioned) => {
            let part = partitioned.partition(position.partition);
            (
                &mut part.operator,
                part.performance.as_mut(),
                part.performance_watermark,
            )
        }
        None => (
            &mut state.operator,
            state.performance.as_mut(),
            performance_watermark(state.watermarks.current(), &state.completion_marks),
        ),
    };
    // A completion replayed twice must not count twice.
    if operator.is_duplicate(&id, IdKind::Completion, completion.prediction_time_us) {
        state.counters.duplicates.increment(1);
        return Ok(());
    }
    if let Some(performance) = performance {
        if performance.complete(&id, completion, position, offset, watermark) {
            state.counters.completions.increment(1);
        } else {
            state.counters.late_completions.increment(1);
        }
    }
    Ok(())
}

async fn process(
    args: &RunArgs,
    consumer: &StageConsumer,
    outputs: &Outputs,
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    state: &mut LoopState,
) -> Result<()> {
    track_assignment(consumer, args, state);
    state.readiness.set(consumer.context().brokers_reachable());
    let now = Instant::now();
    let (watermark, flush) = if state.partitioned.is_some() {
        export_partials(args, outputs, mapping, state, now).await?
    } else {
        let before = state.watermarks.current();
        let stats = state.operator.ingest(&state.batch, before);
        publish_late(args, outputs, mapping, before, &stats).await?;
        let watermark = state.watermarks.advance(now);
        let completions_idle =
            !state.completion_marks.has_partitions() || state.completion_marks.all_idle(now);
        let flush = state.batch.is_empty() && state.watermarks.all_idle(now) && completions_idle;
        let ready = state.operator.take_ready(watermark, flush);
        emit_windows(
            outputs,
            mapping,
            reference,
            &state.segments,
            &mut state.alerts,
            &mut state.health,
            ready,
            watermark,
        )
        .await?;
        state.operator.evict(watermark);
        (watermark, flush)
    };
    let completions_watermark = state.completion_marks.advance(now);
    if let Some(performance) = &mut state.performance {
        let watermark = if state.completion_marks.has_partitions() {
            watermark.min(completions_watermark)
        } else {
            watermark
        };
        let ready = performance.take_ready(watermark, flush);
        let closed_until = watermark.saturating_sub(performance.label_horizon_us());
        emit_performance(outputs, mapping, &mut state.alerts, ready, closed_until).await?;
        performance.evict(watermark);
    }
    let joins: Vec<&PerformanceOperator> = match &state.partitioned {
        Some(partitioned) => partitioned
            .partitions
            .values()
            .filter_map(|p| p.performance.as_ref())
            .collect(),
        None => state.performance.iter().collect(),
    };
    if !joins.is_empty() {
        let (predictions, completions) = joins
            .iter()
            .map(|join| join.waiting())
            .fold((0, 0), |(p, c), (more_p, more_c)| (p + more_p, c + more_c));
        metrics::gauge!("streamwatch_monitor_join_waiting", "side" => "predictions")
            .set(predictions as f64);
        metrics::gauge!("streamwatch_monitor_join_waiting", "side" => "completions")
            .set(completions as f64);
    }
    if let Some(topic) = &state.alert_state {
        topic.save(&mut state.alerts).await?;
    }
    outputs.checkpoint(offsets_to_store(args, state), state.batch_revocations);
    outputs.settle(consumer, Settle::Ready).await?;
    let (open_windows, panes) = match &state.partitioned {
        Some(partitioned) => partitioned
            .partitions
            .values()
            .fold((0, 0), |(w, p), part| {
                (w + part.operator.open_windows(), p + part.operator.panes())
            }),
        None => (state.operator.open_windows(), state.operator.panes()),
    };
    metrics::gauge!("streamwatch_monitor_open_windows").set(open_windows as f64);
    metrics::gauge!("streamwatch_monitor_panes").set(panes as f64);
    let now = Instant::now();
    if state.health.is_due(now) {
        let gauges = Gauges {
            watermark_us: watermark,
            consumer_lag: consumer.context().total_lag(),
            open_windows,
            panes,
        };
        let report = state.health.take_report(gauges, now, chrono::Utc::now());
        outputs.publish(&MetricsRecord::Health(report)).await?;
    }
    Ok(())
}

/// Reports events dropped after their windows' update horizon, before the offsets move past
/// them, so none is lost unreported.
async fn publish_late(
    args: &RunArgs,
    outputs: &Outputs,
    mapping: &ColumnMapping,
    watermark: i64,
    stats: &IngestStats,
) -> Result<()> {
    if stats.late_dropped == 0 {
        return Ok(());
    }
    tracing::warn!(
        dropped = stats.late_dropped,
        watermark_us = watermark,
        "events arrived after their windows' update horizon and were dropped"
    );
    metrics::counter!("streamwatch_monitor_late_events_dropped_total")
        .increment(stats.late_dropped);
    for report in late_events(mapping, &args.windowed.input_topic, watermark, &stats.late) {
        outputs.publish(&MetricsRecord::LateEvents(report)).await?;
    }
    Ok(())
}

/// Where the alert rules' state is kept, when the spec has rules and a topic is set; the
/// state it holds is handed to `alerts`.
pub(crate) async fn alert_state_topic(
    kafka: &KafkaArgs,
    windowed: &WindowedArgs,
    group: &str,
    mapping: &ColumnMapping,
    alerts: &mut Alerts,
    outputs: &Outputs,
) -> Result<Option<AlertStateTopic>> {
    if alerts.is_empty() {
        return Ok(None);
    }
    let topic = AlertStateTopic::new(
        outputs,
        &windowed.alert_state_topic,
        group,
        &mapping.monitor_name,
    );
    if let Some(topic) = &topic {
        topic.restore(kafka, alerts).await?;
    }
    Ok(topic)
}

/// Evaluates windows and publishes their rows and the alerts they change. Alert rules see
/// only windows the watermark closed: an early report of an open window (every partition
/// idle) is incomplete, and its transitions would depend on when the input paused.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn emit_windows(
    outputs: &Outputs,
    mapping: &ColumnMapping,
    reference: &[ReferenceColumn],
    segments: &DriftSegments,
    alerts: &mut Alerts,
    health: &mut HealthTracker,
    windows: Vec<ReadyWindow>,
    watermark: i64,
) -> Result<()> {
    for window in windows {
        let started = Instant::now();
        let metrics = evaluate(mapping, reference, &window.data);
        let mut row = metric_row(mapping, &window, metrics);
        row.segments = segment_drift(
            mapping,
            &segments.reference,
            &segments.segmenters,
            &window.segments,
            segments.min_rows,
        );
        metrics::histogram!("streamwatch_monitor_window_eval_seconds")
            .record(started.elapsed().as_secs_f64());
        let (key, kind) = (row.window.message_key(), row.window.kind.as_str());
        let (revision, rows, drifted) =
            (row.revision, row.row_count, row.number_of_drifted_columns);
        let early = window.start_us.saturating_add(window.spec.size_us) > watermark;
        let transitions = if early {
            Vec::new()
        } else {
            alerts.on_window(&row)
        };
        let published_at = row.last_event_published_at;
        outputs.publish(&MetricsRecord::Window(row)).await?;
        health.window_emitted(published_at, chrono::Utc::now());
        publish_alerts(outputs, transitions).await?;
        metrics::counter!("streamwatch_monitor_windows_emitted_total", "kind" => kind).increment(1);
        tracing::info!(window = %key, revision, rows, drifted, early, "window emitted");
    }
    Ok(())
}

/// Publishes windows' performance rows and the alerts they change.
pub(crate) async fn emit_performance(
    outputs: &Outputs,
    mapping: &ColumnMapping,
    alerts: &mut Alerts,
    reports: Vec<ReadyPerformance>,
    closed_until: i64,
) -> Result<()> {
    for ready in reports {
        // Alerts on windows the watermark closed only, as for drift (`emit_windows`).
        let early = ready.start_us.saturating_add(ready.spec.size_us) > closed_until;
        let report = performance_report(mapping, ready);
        let (key, labelled) = (report.window.message_key(), report.overall.labelled_rows);
        let mae = report.overall.metrics.as_ref().map(|m| m.mae);
        let transitions = if early {
            Vec::new()
        } else {
            alerts.on_performance(&report)
        };
        outputs.publish(&MetricsRecord::Performance(report)).await?;
        publish_alerts(outputs, transitions).await?;
        metrics::counter!("streamwatch_monitor_performance_reports_total").increment(1);
        tracing::info!(window = %key, labelled, mae, "performance emitted");
    }
    Ok(())
}

/// Scale-out worker: per partition, adds its micro-batch to its panes, publishes the panes
/// its watermark closed (all changed ones once it is idle) and then its progress. Returns
/// the lowest watermark over the partitions, and whether all are idle.
async fn export_partials(
    args: &RunArgs,
    outputs: &Outputs,
    mapping: &ColumnMapping,
    state: &mut LoopState,
    now: Instant,
) -> Result<(i64, bool)> {
    let Some(partitioned) = state.partitioned.as_mut() else {
        return Ok((i64::MIN, false));
    };
    let decoder = &state.decoder;
    let segmenters = &state.segments.segmenters;
    let column_name = |id: u32| decoder.column_name(id).to_owned();
    let segment_name = |dimension: usize, id: u32| segmenters[dimension].name_of(id).to_owned();
    let owned: Vec<i32> = state.watermarks.partitions().collect();
    let mut panes = Vec::new();
    let mut progress = Vec::new();
    let mut lowest = None::<i64>;
    let mut all_idle = !owned.is_empty();
    for partition in owned {
        let part = partitioned.partition(partition);
        let before = part.watermark;
        let stats = part.operator.ingest(&part.batch, before);
        publish_late(args, outputs, mapping, before, &stats).await?;
        let watermark = before.max(
            state
                .watermarks
                .partition_watermark(partition)
                .unwrap_or(i64::MIN),
        );
        let idle = part.batch.is_empty() && state.watermarks.is_partition_idle(partition, now);
        part.operator
            .take_partials(watermark, idle, |spec, pane_start_us, pane| {
                panes.push(PartialRecord::Pane(PanePartial {
                    monitor: mapping.monitor_name.clone(),
                    size_us: spec.size_us,
                    step_us: spec.step_us,
                    pane_start_us,
                    partition,
                    first_offset: pane.first_offset(partition),
                    pane: PaneState::of(pane, &column_name, &segment_name),
                }));
            });
        part.operator.evict(watermark);
        let mut changed = (watermark, idle) != (part.watermark, part.idle);
        if let Some(performance) = &mut part.performance {
            // Performance panes close on the lower of the partition's two watermarks (an
            // idle completions partition does not hold them back), never moving back.
            let completions_idle = state.completion_marks.is_partition_idle(partition, now);
            let completed = if completions_idle {
                watermark
            } else {
                state
                    .completion_marks
                    .partition_watermark(partition)
                    .unwrap_or(i64::MIN)
            };
            let performance_watermark = part.performance_watermark.max(watermark.min(completed));
            let performance_idle = idle && completions_idle;
            panes.extend(
                performance
                    .take_partials(
                        &mapping.monitor_name,
                        partition,
                        performance_watermark,
                        performance_idle,
                    )
                    .into_iter()
                    .map(PartialRecord::Performance),
            );
            performance.evict(performance_watermark);
            changed |= (performance_watermark, performance_idle)
                != (part.performance_watermark, part.performance_idle);
            part.performance_watermark = performance_watermark;
            part.performance_idle = performance_idle;
        }
        if changed
            || part
                .reported_at
                .is_none_or(|at| now - at >= PROGRESS_HEARTBEAT)
        {
            part.reported_at = Some(now);
            progress.push(PartialRecord::Progress(PartitionProgress {
                monitor: mapping.monitor_name.clone(),
                partition,
                watermark_us: watermark,
                idle,
                performance_watermark_us: part
                    .performance
                    .is_some()
                    .then_some(part.performance_watermark),
                performance_idle: part.performance_idle,
                instance: state.health.instance().to_owned(),
            }));
        }
        part.watermark = watermark;
        part.idle = idle;
        all_idle &= idle;
        if !idle {
            lowest = Some(lowest.map_or(watermark, |l| l.min(watermark)));
        }
    }
    // A partition's progress goes out only after the panes it covers were acknowledged: a
    // pane the broker refused must not be covered by a progress it took.
    let sink = &partitioned.outputs;
    for record in &panes {
        publish_partial(sink, record).await?;
    }
    if !panes.is_empty() {
        sink.wait_sent().await?;
    }
    for record in &progress {
        publish_partial(sink, record).await?;
    }
    Ok((lowest.unwrap_or(state.watermarks.current()), all_idle))
}

async fn publish_partial(outputs: &Outputs, record: &PartialRecord) -> Result<()> {
    outputs.publish_json(&record.message_key(), record).await
}

async fn publish_alerts(outputs: &Outputs, transitions: Vec<AlertEvent>) -> Result<()> {
    for alert in transitions {
        tracing::warn!(
            rule = %alert.rule,
            state = alert.state.as_str(),
            window = %alert.window.message_key(),
            value = alert.value,
            "alert"
        );
        metrics::counter!("streamwatch_monitor_alerts_total", "state" => alert.state.as_str())
            .increment(1);
        outputs.publish(&MetricsRecord::Alert(alert)).await?;
    }
    Ok(())
}

/// The watermark that closes performance windows: the lower of the scored topic's and the
/// completions topic's (the scored one alone while no completions partition is known).
fn performance_watermark(scored: i64, completions: &Watermarks) -> i64 {
    if completions.has_partitions() {
        scored.min(completions.current())
    } else {
        scored
    }
}

/// Partitions assigned to this instance hold their topic's watermark back until they deliver
/// events or are caught up; revoked ones stop counting.
fn track_assignment(consumer: &StageConsumer, args: &RunArgs, state: &mut LoopState) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let elements = assignment.elements();
    if elements.is_empty() {
        return;
    }
    let now = Instant::now();
    for (topic, marks, ends) in [
        (
            args.windowed.input_topic.as_str(),
            &mut state.watermarks,
            &mut state.scored_ends,
        ),
        (
            args.performance.completions_topic.as_str(),
            &mut state.completion_marks,
            &mut state.completion_ends,
        ),
    ] {
        let owned: Vec<i32> = elements
            .iter()
            .filter(|e| e.topic() == topic)
            .map(|e| e.partition())
            .collect();
        for partition in &owned {
            marks.assign(*partition, now);
        }
        marks.retain_partitions(|p| owned.contains(&p));
        ends.retain_partitions(|p| owned.contains(&p));
    }
    if let Some(partitioned) = &mut state.partitioned {
        let owned: Vec<i32> = elements
            .iter()
            .filter(|e| e.topic() == args.windowed.input_topic)
            .map(|e| e.partition())
            .collect();
        partitioned.retain_assigned(&owned);
    }
}

/// The offset to store at `position`: the lowest one a kept pane of `operator` (scored topic)
/// or of `performance` still needs, or `next`.
fn lowest_needed(
    position: Position,
    next: i64,
    operator: &WindowOperator,
    performance: Option<&PerformanceOperator>,
) -> i64 {
    let mut lowest = next;
    if position.topic == SCORED {
        lowest = operator.commit_position(position.partition, lowest);
    }
    if let Some(performance) = performance {
        lowest = performance.commit_position(position, lowest);
    }
    lowest
}

/// Per partition, the lowest offset any kept pane or waiting join entry needs: what may be
/// stored once the records emitted so far are acknowledged.
fn offsets_to_store(args: &RunArgs, state: &LoopState) -> TopicPartitionList {
    let offsets = match &state.partitioned {
        Some(partitioned) => partitioned.offsets_to_store(),
        None => state
            .next_offsets
            .iter()
            .map(|(&position, &next)| {
                let lowest =
                    lowest_needed(position, next, &state.operator, state.performance.as_ref());
                (position, lowest)
            })
            .collect(),
    };
    let mut positions = TopicPartitionList::new();
    for (position, lowest) in offsets {
        let topic = if position.topic == SCORED {
            &args.windowed.input_topic
        } else {
            &args.performance.completions_topic
        };
        if let Err(error) =
            positions.add_partition_offset(topic, position.partition, Offset::Offset(lowest))
        {
            tracing::warn!(%error, partition = position.partition, "offset position rejected");
        }
    }
    positions
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;

    use super::*;

    fn worker_windows() -> PartitionedWindows {
        let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create()
            .expect("producer");
        PartitionedWindows {
            outputs: Outputs::new(producer, "partials"),
            specs: vec![WindowSpec::parse("1h").unwrap()],
            columns: 1,
            horizon: 0,
            dimensions: 0,
            performance: None,
            partitions: FxHashMap::default(),
        }
    }

    #[test]
    fn a_reassigned_partition_stores_no_offset_read_before_its_revocation() {
        let scored = |partition| Position {
            topic: SCORED,
            partition,
        };
        let completions = |partition| Position {
            topic: COMPLETIONS,
            partition,
        };
        let mut windows = worker_windows();
        windows.read(scored(0), 10);
        windows.read(scored(2), 100);
        windows.read(completions(2), 50);
        // Partition 2 is revoked, then assigned again: it is re-read from its committed
        // offsets, and the first message back is a completion. Storing 101 for the scored
        // topic would skip the events the new panes need.
        windows.retain_assigned(&[0]);
        windows.retain_assigned(&[0, 2]);
        windows.read(completions(2), 7);
        let mut stored = windows.offsets_to_store();
        stored.sort_unstable();
        assert_eq!(stored, vec![(scored(0), 11), (completions(2), 8)]);
    }
}
