//! Model performance once the truth arrives: predictions (scored events) are joined by trip
//! id with completion events (the actual target, published when the trip ends), in either
//! order, in keyed state bounded by the label horizon. A prediction is labelled when its
//! completion's event time is at most the label horizon after the prediction's (a later
//! truth counts as an unmatched completion), whatever the arrival order or batching. A
//! labelled row belongs to the window of its *prediction's* event time; a window's
//! performance is reported once the watermark passes its end plus the label horizon, when
//! every prediction of it is labelled or given up.
//!
//! Rows are kept per pane (as the drift panes are), so sliding windows merge panes and the
//! sums run over the window's rows in numpy's pairwise order: the numbers equal
//! scikit-learn's. The rows are summed in a canonical order — by the prediction's event
//! time, then by a hash of the trip id (`RowKey`) — not in the order they were joined, so the
//! same predictions and completions give the same numbers to the bit however they were
//! interleaved, batched or replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};
use streamwatch_common::events::{
    ColumnOutliers, LabelDelay, PerformanceStats, RegressionMetrics, SegmentPerformance,
};
use streamwatch_common::spec::PerformanceSpec;
use streamwatch_stats::{pairwise_sum, Distribution};

use crate::outliers::OutlierBounds;
use crate::partials::{LabelledRows, PerfPanePartial, PerfPaneState};
use crate::segments::Segmenter;
use crate::window::WindowSpec;

/// Pending predictions and completions are expired in buckets of this much event time.
const EXPIRY_BUCKET_US: i64 = 60 * 1_000_000;

/// What performance needs of a scored event.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub time_us: i64,
    pub value: Option<f64>,
    /// Segment id per dimension.
    pub segments: Vec<u32>,
}

/// A completion event: the truth for one trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completion {
    pub time_us: i64,
    /// The prediction's event time, as the completion states it.
    pub prediction_time_us: i64,
    pub truth: Option<f64>,
}

/// Where a message sits in its topic, to hold the consumer's commit position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// 0: the scored topic, 1: the completions topic.
    pub topic: u8,
    pub partition: i32,
}

/// A labelled row's place in its window's canonical order: by the prediction's event time,
/// then by the trip id's hash. Rows are summed in this order, so a window's numbers do not
/// depend on the order the joins happened in (partition interleaving, batching, restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    prediction_time_us: i64,
    trip: u64,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct PerfPane {
    /// Predictions of the pane, overall and per (dimension, segment id).
    predictions: u64,
    segment_predictions: FxHashMap<(usize, u32), u64>,
    /// The labelled rows, one entry per row in each vector; in canonical order (`RowKey`,
    /// then the values' bits) unless `unsorted`.
    keys: Vec<RowKey>,
    truths: Vec<f64>,
    predicted: Vec<f64>,
    delays_s: Vec<f64>,
    /// Segment ids of each labelled row, one vector per dimension.
    segments: Vec<Vec<u32>>,
    /// Rows were added since the pane was last sorted.
    unsorted: bool,
    unmatched_completions: u64,
    first_offsets: FxHashMap<Position, i64>,
}

impl PerfPane {
    /// Puts the labelled rows in canonical order. Equal keys (the same trip twice) are
    /// ordered by their values, so any two orders of the same rows sort to the same one.
    fn sort_rows(&mut self) {
        if !self.unsorted {
            return;
        }
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_unstable_by_key(|&i| {
            (
                self.keys[i],
                self.truths[i].to_bits(),
                self.predicted[i].to_bits(),
                self.delays_s[i].to_bits(),
            )
        });
        fn permute<T: Copy>(values: &mut Vec<T>, order: &[usize]) {
            if !values.is_empty() {
                *values = order.iter().map(|&i| values[i]).collect();
            }
        }
        permute(&mut self.keys, &order);
        permute(&mut self.truths, &order);
        permute(&mut self.predicted, &order);
        permute(&mut self.delays_s, &order);
        for column in &mut self.segments {
            permute(column, &order);
        }
        self.unsorted = false;
    }

    /// The pane as a worker exports it, segments by name (`crate::partials`); rows must be
    /// sorted.
    fn state(&self, segmenters: &[Segmenter]) -> PerfPaneState {
        let name = |dimension: usize, id: u32| segmenters[dimension].name_of(id).to_owned();
        let mut segment_predictions: Vec<(usize, String, u64)> = self
            .segment_predictions
            .iter()
            .map(|(&(dimension, id), &count)| (dimension, name(dimension, id), count))
            .collect();
        segment_predictions.sort_unstable();
        let mut segment_names = Vec::new();
        let mut segments = Vec::new();
        for (dimension, ids) in self.segments.iter().enumerate() {
            let names: BTreeMap<String, u32> =
                ids.iter().map(|id| (name(dimension, *id), *id)).collect();
            let index: FxHashMap<u32, u32> = names
                .values()
                .enumerate()
                .map(|(index, id)| (*id, index as u32))
                .collect();
            segments.push(ids.iter().map(|id| index[id]).collect());
            segment_names.push(names.into_keys().collect());
        }
        let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect();
        PerfPaneState {
            predictions: self.predictions,
            segment_predictions,
            segment_names,
            rows: LabelledRows {
                prediction_times_us: self.keys.iter().map(|k| k.prediction_time_us).collect(),
                trips: self.keys.iter().map(|k| k.trip).collect(),
                truths: bits(&self.truths),
                predicted: bits(&self.predicted),
                delays_s: bits(&self.delays_s),
                segments,
            },
            unmatched_completions: self.unmatched_completions,
        }
    }

    /// A worker's pane back, with this process's segment ids; `None` when its vectors do not
    /// fit together or its dimensions are not `segmenters`'.
    pub(crate) fn from_state(state: &PerfPaneState, segmenters: &mut [Segmenter]) -> Option<Self> {
        let rows = &state.rows;
        let count = rows.truths.len();
        let fits = [
            rows.prediction_times_us.len(),
            rows.trips.len(),
            rows.predicted.len(),
            rows.delays_s.len(),
        ]
        .iter()
        .all(|len| *len == count)
            && rows.segments.len() == state.segment_names.len()
            && (count == 0 || state.segment_names.len() == segmenters.len())
            && rows
                .segments
                .iter()
                .zip(&state.segment_names)
                .all(|(column, names)| {
                    column.len() == count && column.iter().all(|i| (*i as usize) < names.len())
                })
            && state
                .segment_predictions
                .iter()
                .all(|(dimension, _, _)| *dimension < segmenters.len());
        if !fits {
            return None;
        }
        let mut pane = PerfPane {
            predictions: state.predictions,
            unmatched_completions: state.unmatched_completions,
            unsorted: true,
            ..Default::default()
        };
        for (dimension, name, count) in &state.segment_predictions {
            let id = segmenters[*dimension].intern(name.clone());
            *pane
                .segment_predictions
                .entry((*dimension, id))
                .or_default() += count;
        }
        pane.keys = rows
            .prediction_times_us
            .iter()
            .zip(&rows.trips)
            .map(|(&prediction_time_us, &trip)| RowKey {
                prediction_time_us,
                trip,
            })
            .collect();
        let values = |bits: &[u64]| bits.iter().map(|b| f64::from_bits(*b)).collect();
        pane.truths = values(&rows.truths);
        pane.predicted = values(&rows.predicted);
        pane.delays_s = values(&rows.delays_s);
        pane.segments = rows
            .segments
            .iter()
            .zip(&state.segment_names)
            .zip(segmenters.iter_mut())
            .map(|((column, names), segmenter)| {
                let ids: Vec<u32> = names
                    .iter()
                    .map(|name| segmenter.intern(name.clone()))
                    .collect();
                column.iter().map(|i| ids[*i as usize]).collect()
            })
            .collect();
        pane.sort_rows();
        Some(pane)
    }

    /// One pane of the partitions' panes together, its rows in canonical order.
    pub(crate) fn merged(parts: Vec<&PerfPane>, dimensions: usize) -> Self {
        let mut pane = PerfPane {
            unsorted: true,
            ..Default::default()
        };
        for part in parts {
            pane.predictions += part.predictions;
            for (segment, count) in &part.segment_predictions {
                *pane.segment_predictions.entry(*segment).or_default() += count;
            }
            pane.keys.extend(&part.keys);
            pane.truths.extend(&part.truths);
            pane.predicted.extend(&part.predicted);
            pane.delays_s.extend(&part.delays_s);
            if !part.keys.is_empty() {
                pane.segments.resize_with(dimensions, Vec::new);
                for (column, part_column) in pane.segments.iter_mut().zip(&part.segments) {
                    column.extend(part_column);
                }
            }
            pane.unmatched_completions += part.unmatched_completions;
        }
        pane.sort_rows();
        pane
    }

    fn hold(&mut self, position: Position, offset: i64) {
        let first = self.first_offsets.entry(position).or_insert(offset);
        *first = (*first).min(offset);
    }
}

#[derive(Debug, Clone)]
struct PerfSpecState {
    spec: WindowSpec,
    panes: BTreeMap<i64, PerfPane>,
    pending: BTreeSet<i64>,
    revisions: BTreeMap<i64, u32>,
    /// Panes changed since they were last exported (only when exporting panes).
    dirty: Option<BTreeSet<i64>>,
}

impl PerfSpecState {
    /// A pane changed: its windows are reported (or the pane exported) again.
    fn touch(&mut self, pane_index: i64) {
        self.pending.extend(self.spec.windows_of_pane(pane_index));
        if let Some(dirty) = &mut self.dirty {
            dirty.insert(pane_index);
        }
    }
}

/// A prediction waiting for its truth (its pane holds its offset).
#[derive(Debug, Clone)]
struct WaitingPrediction {
    prediction: Prediction,
}

#[derive(Debug, Clone, Copy)]
struct WaitingCompletion {
    completion: Completion,
    position: Position,
    offset: i64,
}

/// A window's performance, ready to report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyPerformance {
    pub spec: WindowSpec,
    pub start_us: i64,
    pub revision: u32,
    pub overall: PerformanceStats,
    pub unmatched_completions: u64,
    pub segments: Vec<SegmentPerformance>,
    pub fairness_band: [f64; 2],
    pub worst_segment: Option<String>,
    pub worst_mae_ratio: Option<f64>,
    /// The labelled rows' errors outside the reference errors' range (`crate::outliers`).
    pub error_outliers: Option<ColumnOutliers>,
}

/// The join of predictions with completions, and the performance panes.
#[derive(Debug, Clone)]
pub struct PerformanceOperator {
    specs: Vec<PerfSpecState>,
    horizon_us: i64,
    /// How long after its report a window still takes late predictions and truths (re-emitted
    /// with a higher revision), as drift windows do: `--update-horizon`.
    update_horizon_us: i64,
    evaluation: PerfEvaluation,
    predictions: FxHashMap<u64, WaitingPrediction>,
    completions: FxHashMap<u64, WaitingCompletion>,
    /// Ids to expire, by bucket of the time they expire after.
    expiry: BTreeMap<i64, Vec<u64>>,
    /// Completions dropped because their prediction's window was already reported and evicted.
    pub late_completions: u64,
}

/// How a window's performance is evaluated from its panes, the same in a single instance
/// and in the merger.
#[derive(Debug, Clone)]
pub struct PerfEvaluation {
    pub settings: PerformanceSpec,
    /// Every segment dimension; segment ids are local to a process, names are not.
    pub segmenters: Vec<Segmenter>,
    /// The reference errors' outlier bounds, when the reference has the target.
    pub error_bounds: Option<OutlierBounds>,
}

fn id_hash(id: &str) -> u64 {
    let mut hasher = FxHasher::default();
    id.hash(&mut hasher);
    hasher.finish()
}

impl PerformanceOperator {
    /// `horizon_us` is the label horizon: how long after a prediction its truth may come.
    pub fn new(
        specs: &[WindowSpec],
        horizon_us: i64,
        settings: PerformanceSpec,
        segmenters: Vec<Segmenter>,
    ) -> Self {
        Self {
            specs: specs
                .iter()
                .map(|spec| PerfSpecState {
                    spec: *spec,
                    panes: BTreeMap::new(),
                    pending: BTreeSet::new(),
                    revisions: BTreeMap::new(),
                    dirty: None,
                })
                .collect(),
            horizon_us,
            update_horizon_us: 0,
            evaluation: PerfEvaluation {
                settings,
                segmenters,
                error_bounds: None,
            },
            predictions: FxHashMap::default(),
            completions: FxHashMap::default(),
            expiry: BTreeMap::new(),
            late_completions: 0,
        }
    }

    /// For a scale-out worker: keeps track of changed panes for `take_partials`.
    pub fn exporting_panes(mut self) -> Self {
        for state in &mut self.specs {
            state.dirty = Some(BTreeSet::new());
        }
        self
    }

    /// Late predictions and truths still update a window for this long after its report.
    pub fn with_update_horizon(mut self, update_horizon_us: i64) -> Self {
        self.update_horizon_us = update_horizon_us;
        self
    }

    /// How long after a window's end it is kept: the label horizon, then the update horizon.
    fn retention_us(&self) -> i64 {
        self.horizon_us.saturating_add(self.update_horizon_us)
    }

    /// Reports, per window, the share of errors outside these bounds of the reference's.
    pub fn with_error_bounds(mut self, bounds: Option<OutlierBounds>) -> Self {
        self.evaluation.error_bounds = bounds;
        self
    }

    /// The segment ids of an event whose counted column values are `values`.
    pub fn classify(&mut self, values: &[Option<f64>]) -> Vec<u32> {
        self.evaluation
            .segmenters
            .iter_mut()
            .map(|s| s.classify(values.get(s.column).copied().flatten()))
            .collect()
    }

    /// Past every update: late events are dropped.
    fn closed(&self, spec: &WindowSpec, start: i64, watermark: i64) -> bool {
        start
            .saturating_add(spec.size_us)
            .saturating_add(self.retention_us())
            <= watermark
    }

    /// A scored event. Returns false when every window it belongs to was already reported
    /// and evicted (it is then not counted).
    pub fn predict(
        &mut self,
        trip_id: &str,
        prediction: Prediction,
        position: Position,
        offset: i64,
        watermark: i64,
    ) -> bool {
        let time = prediction.time_us;
        if !self.add_prediction(&prediction, position, offset, watermark) {
            return false;
        }
        let id = id_hash(trip_id);
        if let Some(waiting) = self.completions.remove(&id) {
            self.join(
                id,
                &prediction,
                &waiting.completion,
                waiting.position,
                waiting.offset,
            );
        } else {
            self.predictions
                .insert(id, WaitingPrediction { prediction });
            self.expire_after(time, id);
        }
        true
    }

    /// A completion event. Returns false when its prediction's windows are gone.
    pub fn complete(
        &mut self,
        trip_id: &str,
        completion: Completion,
        position: Position,
        offset: i64,
        watermark: i64,
    ) -> bool {
        let id = id_hash(trip_id);
        let time = completion.prediction_time_us;
        if completion.time_us.saturating_sub(time) > self.horizon_us {
            self.predictions.remove(&id);
            return self.unmatched(completion, position, offset, watermark);
        }
        if let Some(waiting) = self.predictions.remove(&id) {
            self.join(id, &waiting.prediction, &completion, position, offset);
            return true;
        }
        if self
            .specs
            .iter()
            .all(|s| self.closed(&s.spec, s.spec.pane_start(time), watermark))
        {
            self.late_completions += 1;
            return false;
        }
        // The truth came first (or its prediction never will): wait, holding the offset in
        // the panes of the windows still open (a closed window must not come back: it would
        // restart at revision 1 and replace its own report).
        let horizon = self.retention_us();
        for state in &mut self.specs {
            let spec = state.spec;
            let pane_start = spec.pane_start(time);
            if pane_start
                .saturating_add(spec.size_us)
                .saturating_add(horizon)
                <= watermark
            {
                continue;
            }
            let pane = spec.pane_of(time);
            state.panes.entry(pane).or_default().hold(position, offset);
        }
        self.completions.insert(
            id,
            WaitingCompletion {
                completion,
                position,
                offset,
            },
        );
        self.expire_after(time, id);
        true
    }

    /// A truth that came after the label horizon: unmatched by its own two times, whatever
    /// arrived first. It counts in its prediction's pane when it is no later than the pane's
    /// end plus the horizon: every window holding the pane is then still open when it
    /// arrives (per partition, events come in event-time order), whatever the watermark of
    /// this instance, so a single monitor and scale-out workers count the same ones. A later
    /// truth is late, and so is one whose pane's windows were reported and evicted (events
    /// out of order): a closed window must not come back at revision 1. False when no pane
    /// took it.
    fn unmatched(
        &mut self,
        completion: Completion,
        position: Position,
        offset: i64,
        watermark: i64,
    ) -> bool {
        let time = completion.prediction_time_us;
        let (horizon, retention) = (self.horizon_us, self.retention_us());
        let mut counted = false;
        for state in &mut self.specs {
            let spec = state.spec;
            let pane_index = spec.pane_of(time);
            let pane_end = (pane_index + 1).saturating_mul(spec.step_us);
            if completion.time_us > pane_end.saturating_add(horizon)
                || pane_end.saturating_add(retention) <= watermark
            {
                continue;
            }
            let pane = state.panes.entry(pane_index).or_default();
            pane.unmatched_completions += 1;
            pane.hold(position, offset);
            state.touch(pane_index);
            counted = true;
        }
        if !counted {
            self.late_completions += 1;
        }
        counted
    }

    fn expire_after(&mut self, time_us: i64, id: u64) {
        // Kept through the update horizon: a prediction late by less still meets its truth.
        let bucket = (time_us.saturating_add(self.retention_us())).div_euclid(EXPIRY_BUCKET_US);
        self.expiry.entry(bucket).or_default().push(id);
    }

    fn add_prediction(
        &mut self,
        prediction: &Prediction,
        position: Position,
        offset: i64,
        watermark: i64,
    ) -> bool {
        let horizon = self.retention_us();
        let mut counted = false;
        for state in &mut self.specs {
            let spec = state.spec;
            let pane_index = spec.pane_of(prediction.time_us);
            if spec
                .pane_start(prediction.time_us)
                .saturating_add(spec.size_us)
                .saturating_add(horizon)
                <= watermark
            {
                continue;
            }
            counted = true;
            let pane = state.panes.entry(pane_index).or_default();
            pane.predictions += 1;
            for (dimension, segment) in prediction.segments.iter().enumerate() {
                *pane
                    .segment_predictions
                    .entry((dimension, *segment))
                    .or_default() += 1;
            }
            pane.hold(position, offset);
            state.touch(pane_index);
        }
        counted
    }

    /// Labels the prediction when the truth came within the label horizon of it (in event
    /// time, so the outcome does not depend on how events are batched); a later truth
    /// counts as an unmatched completion.
    fn join(
        &mut self,
        id: u64,
        prediction: &Prediction,
        completion: &Completion,
        position: Position,
        offset: i64,
    ) {
        if completion.time_us - prediction.time_us <= self.horizon_us {
            self.label(id, prediction, completion, position, offset);
            return;
        }
        for state in &mut self.specs {
            let pane_index = state.spec.pane_of(prediction.time_us);
            if let Some(pane) = state.panes.get_mut(&pane_index) {
                pane.unmatched_completions += 1;
                pane.hold(position, offset);
                state.touch(pane_index);
            }
        }
    }

    fn label(
        &mut self,
        id: u64,
        prediction: &Prediction,
        completion: &Completion,
        position: Position,
        offset: i64,
    ) {
        let (Some(predicted), Some(truth)) = (prediction.value, completion.truth) else {
            return;
        };
        let delay_s = (completion.time_us - prediction.time_us) as f64 / 1e6;
        let dimensions = self.evaluation.segmenters.len();
        let key = RowKey {
            prediction_time_us: prediction.time_us,
            trip: id,
        };
        for state in &mut self.specs {
            let spec = state.spec;
            let pane_index = spec.pane_of(prediction.time_us);
            // The prediction's pane exists unless its windows were evicted meanwhile.
            let Some(pane) = state.panes.get_mut(&pane_index) else {
                continue;
            };
            pane.keys.push(key);
            pane.truths.push(truth);
            pane.predicted.push(predicted);
            pane.delays_s.push(delay_s);
            pane.segments.resize_with(dimensions, Vec::new);
            for (column, segment) in pane.segments.iter_mut().zip(&prediction.segments) {
                column.push(*segment);
            }
            pane.unsorted = true;
            pane.hold(position, offset);
            state.touch(pane_index);
        }
    }

    /// Forgets predictions and completions whose horizon the watermark passed, counting
    /// completions that never met their prediction.
    fn expire(&mut self, watermark: i64) {
        let last = watermark.div_euclid(EXPIRY_BUCKET_US);
        let due: Vec<i64> = self.expiry.range(..last).map(|(b, _)| *b).collect();
        for bucket in due {
            for id in self.expiry.remove(&bucket).unwrap_or_default() {
                self.predictions.remove(&id);
                if let Some(waiting) = self.completions.remove(&id) {
                    let time = waiting.completion.prediction_time_us;
                    for state in &mut self.specs {
                        let pane_index = state.spec.pane_of(time);
                        if let Some(pane) = state.panes.get_mut(&pane_index) {
                            pane.unmatched_completions += 1;
                            state.touch(pane_index);
                        }
                    }
                }
            }
        }
    }

    /// Windows whose end plus the label horizon the watermark passed (or all pending ones
    /// when `flush_all`), with their performance.
    pub fn take_ready(&mut self, watermark: i64, flush_all: bool) -> Vec<ReadyPerformance> {
        self.expire(watermark);
        let horizon = self.horizon_us;
        let mut ready = Vec::new();
        for index in 0..self.specs.len() {
            let spec = self.specs[index].spec;
            let starts: Vec<i64> = self.specs[index]
                .pending
                .iter()
                .copied()
                .filter(|s| {
                    flush_all || s.saturating_add(spec.size_us).saturating_add(horizon) <= watermark
                })
                .collect();
            self.specs[index]
                .panes
                .values_mut()
                .for_each(PerfPane::sort_rows);
            for start in starts {
                self.specs[index].pending.remove(&start);
                let Some(mut report) = self.window_report(index, start) else {
                    continue;
                };
                let revision = self.specs[index].revisions.entry(start).or_insert(0);
                *revision += 1;
                report.revision = *revision;
                ready.push(report);
            }
        }
        ready
    }

    /// Scale-out worker owning `partition` of both topics: each pane changed since it was
    /// last exported, once the watermark has passed its end plus the label horizon (every
    /// changed one when `flush`), as that partition's partial; windows the watermark closed
    /// stop counting as pending.
    pub(crate) fn take_partials(
        &mut self,
        monitor: &str,
        partition: i32,
        watermark: i64,
        flush: bool,
    ) -> Vec<PerfPanePartial> {
        self.expire(watermark);
        let horizon = self.horizon_us;
        let first_offset = |pane: &PerfPane, topic: u8| {
            pane.first_offsets
                .get(&Position { topic, partition })
                .copied()
        };
        let mut partials = Vec::new();
        for state in &mut self.specs {
            let spec = state.spec;
            let Some(dirty) = &mut state.dirty else {
                continue;
            };
            let done: Vec<i64> = dirty
                .iter()
                .copied()
                .filter(|pane| {
                    flush
                        || (pane + 1)
                            .saturating_mul(spec.step_us)
                            .saturating_add(horizon)
                            <= watermark
                })
                .collect();
            for pane_index in done {
                dirty.remove(&pane_index);
                let Some(pane) = state.panes.get_mut(&pane_index) else {
                    continue;
                };
                pane.sort_rows();
                partials.push(PerfPanePartial {
                    monitor: monitor.to_owned(),
                    size_us: spec.size_us,
                    step_us: spec.step_us,
                    pane_start_us: pane_index * spec.step_us,
                    partition,
                    scored_first_offset: first_offset(pane, 0),
                    completions_first_offset: first_offset(pane, 1),
                    pane: pane.state(&self.evaluation.segmenters),
                });
            }
            state.pending.retain(|start| {
                !flush && start.saturating_add(spec.size_us).saturating_add(horizon) > watermark
            });
        }
        partials
    }

    fn window_report(&self, index: usize, start: i64) -> Option<ReadyPerformance> {
        let state = &self.specs[index];
        let spec = state.spec;
        let first = spec.pane_of(start);
        let panes: Vec<&PerfPane> = state
            .panes
            .range(first..first + spec.size_us / spec.step_us)
            .map(|(_, p)| p)
            .collect();
        self.evaluation.window(spec, start, &panes)
    }

    /// Drops panes and revisions of windows the watermark passed beyond the label and update
    /// horizons.
    pub fn evict(&mut self, watermark: i64) {
        let horizon = self.retention_us();
        for state in &mut self.specs {
            let spec = state.spec;
            let closed = |start: i64| {
                start.saturating_add(spec.size_us).saturating_add(horizon) <= watermark
            };
            // A pane is needed while its last window (the one starting at the pane) is open.
            state.panes.retain(|pane, _| !closed(pane * spec.step_us));
            state.revisions.retain(|start, _| !closed(*start));
        }
    }

    /// Lowest offset any kept pane still needs at `position`, or `next` when none does.
    pub fn commit_position(&self, position: Position, next: i64) -> i64 {
        self.specs
            .iter()
            .flat_map(|s| s.panes.values())
            .filter_map(|pane| pane.first_offsets.get(&position).copied())
            .min()
            .map_or(next, |lowest| lowest.min(next))
    }

    /// How long after a window's end its truths may still come (microseconds).
    pub fn label_horizon_us(&self) -> i64 {
        self.horizon_us
    }

    /// Predictions waiting for their truth, and completions waiting for their prediction.
    pub fn waiting(&self) -> (usize, usize) {
        (self.predictions.len(), self.completions.len())
    }

    /// Panes held in memory.
    pub fn panes(&self) -> usize {
        self.specs.iter().map(|s| s.panes.len()).sum()
    }
}

impl PerfEvaluation {
    /// A window's performance from its panes (in time order, each with its rows sorted),
    /// or `None` when it has neither predictions nor completions.
    pub(crate) fn window(
        &self,
        spec: WindowSpec,
        start: i64,
        panes: &[&PerfPane],
    ) -> Option<ReadyPerformance> {
        let predictions: u64 = panes.iter().map(|p| p.predictions).sum();
        let unmatched: u64 = panes.iter().map(|p| p.unmatched_completions).sum();
        if predictions == 0 && unmatched == 0 {
            return None;
        }
        let rows = Rows::gather(panes, None);
        let overall = rows.stats(predictions, 1);
        let error_outliers = self.error_bounds.map(|bounds| {
            let errors: Vec<f64> = rows
                .predicted
                .iter()
                .zip(&rows.truths)
                .map(|(p, t)| p - t)
                .collect();
            bounds.measure("error", &Distribution::from_values(&errors))
        });
        let overall_metrics = overall.metrics.clone();
        let mut segments = Vec::new();
        for (dimension, segmenter) in self.segmenters.iter().enumerate() {
            let mut ids: BTreeMap<&str, u32> = BTreeMap::new();
            for pane in panes {
                for (d, id) in pane.segment_predictions.keys() {
                    if *d == dimension {
                        ids.insert(segmenter.name_of(*id), *id);
                    }
                }
            }
            for (name, id) in ids {
                let predictions = panes
                    .iter()
                    .map(|p| {
                        p.segment_predictions
                            .get(&(dimension, id))
                            .copied()
                            .unwrap_or(0)
                    })
                    .sum();
                let rows = Rows::gather(panes, Some((dimension, id)));
                let labelled = rows.truths.len() as u64;
                let too_small = labelled < self.settings.min_segment_rows.max(1);
                let stats = rows.stats(predictions, self.settings.min_segment_rows.max(1));
                let ratio = |part: Option<f64>, whole: Option<f64>| match (part, whole) {
                    (Some(p), Some(w)) if w != 0.0 => Some(p / w),
                    _ => None,
                };
                let (mae, bias) = match (&stats.metrics, &overall_metrics) {
                    (Some(s), Some(o)) => (
                        ratio(Some(s.mae), Some(o.mae)),
                        ratio(Some(s.mean_error), Some(o.mean_error)),
                    ),
                    _ => (None, None),
                };
                let [low, high] = self.settings.fairness_band;
                segments.push(SegmentPerformance {
                    dimension: segmenter.name.clone(),
                    value: name.to_owned(),
                    stats,
                    too_small,
                    mae_ratio: mae,
                    bias_ratio: bias,
                    unfair: mae.is_some_and(|r| r < low || r > high),
                });
            }
        }
        let worst = segments
            .iter()
            .filter_map(|s| s.mae_ratio.map(|r| (s, r)))
            .max_by(|(_, a), (_, b)| unfairness(*a).total_cmp(&unfairness(*b)));
        Some(ReadyPerformance {
            spec,
            start_us: start,
            revision: 0,
            overall,
            unmatched_completions: unmatched,
            fairness_band: self.settings.fairness_band,
            worst_segment: worst.map(|(s, _)| format!("{}={}", s.dimension, s.value)),
            worst_mae_ratio: worst.map(|(_, r)| r),
            segments,
            error_outliers,
        })
    }
}

/// How far a ratio is from 1, symmetric in r and 1/r.
fn unfairness(ratio: f64) -> f64 {
    if ratio <= 0.0 {
        f64::INFINITY
    } else {
        ratio.max(1.0 / ratio)
    }
}

/// Labelled rows of a window (or of one segment of it), in canonical order: panes in time
/// order, each sorted (`PerfPane::sort_rows`).
#[derive(Debug, Default)]
struct Rows {
    truths: Vec<f64>,
    predicted: Vec<f64>,
    delays_s: Vec<f64>,
}

impl Rows {
    fn gather(panes: &[&PerfPane], segment: Option<(usize, u32)>) -> Self {
        let mut rows = Rows::default();
        for pane in panes {
            for i in 0..pane.truths.len() {
                if let Some((dimension, id)) = segment {
                    if pane.segments.get(dimension).and_then(|s| s.get(i)) != Some(&id) {
                        continue;
                    }
                }
                rows.truths.push(pane.truths[i]);
                rows.predicted.push(pane.predicted[i]);
                rows.delays_s.push(pane.delays_s[i]);
            }
        }
        rows
    }

    /// Metrics when there are at least `min_rows` labelled rows.
    fn stats(&self, predictions: u64, min_rows: u64) -> PerformanceStats {
        let labelled = self.truths.len() as u64;
        let measured = labelled >= min_rows && labelled > 0;
        PerformanceStats {
            predictions,
            labelled_rows: labelled,
            metrics: measured.then(|| regression_metrics(&self.truths, &self.predicted)),
            label_delay: measured.then(|| label_delay(&self.delays_s)),
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    pairwise_sum(values) / values.len() as f64
}

/// scikit-learn's regression metrics (numpy's pairwise sums over the rows in order), with
/// the error as prediction − target.
pub fn regression_metrics(truths: &[f64], predicted: &[f64]) -> RegressionMetrics {
    let errors: Vec<f64> = predicted.iter().zip(truths).map(|(p, t)| p - t).collect();
    let absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    let squared: Vec<f64> = truths
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p) * (t - p))
        .collect();
    let percentage: Vec<f64> = truths
        .iter()
        .zip(&absolute)
        .filter(|(t, _)| **t != 0.0)
        .map(|(t, a)| a / t.abs())
        .collect();
    let mse = mean(&squared);
    let truth_mean = mean(truths);
    let deviations: Vec<f64> = truths
        .iter()
        .map(|t| (t - truth_mean) * (t - truth_mean))
        .collect();
    let total = pairwise_sum(&deviations);
    let residual = pairwise_sum(&squared);
    RegressionMetrics {
        mae: mean(&absolute),
        rmse: mse.sqrt(),
        mape: (!percentage.is_empty()).then(|| mean(&percentage)),
        mape_rows: percentage.len() as u64,
        r2: (truths.len() >= 2 && total != 0.0).then(|| 1.0 - residual / total),
        mean_error: mean(&errors),
    }
}

fn label_delay(delays_s: &[f64]) -> LabelDelay {
    let distribution = Distribution::from_values(delays_s);
    LabelDelay {
        mean_seconds: mean(delays_s),
        p50_seconds: distribution.quantile_linear(0.5),
        p95_seconds: distribution.quantile_linear(0.95),
        max_seconds: delays_s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60 * 1_000_000;
    const HOUR: i64 = 60 * MINUTE;

    fn operator(specs: &[&str], min_rows: u64) -> PerformanceOperator {
        let specs: Vec<WindowSpec> = specs
            .iter()
            .map(|s| WindowSpec::parse(s).unwrap())
            .collect();
        let settings = PerformanceSpec {
            min_segment_rows: min_rows,
            fairness_band: [0.8, 1.25],
        };
        let segmenter = Segmenter::by_value("zone", 1);
        PerformanceOperator::new(&specs, 2 * HOUR, settings, vec![segmenter])
    }

    const SCORED: Position = Position {
        topic: 0,
        partition: 0,
    };
    const DONE: Position = Position {
        topic: 1,
        partition: 0,
    };

    fn predict(op: &mut PerformanceOperator, id: &str, time: i64, value: f64, zone: f64) {
        let segments = op.classify(&[Some(value), Some(zone)]);
        let prediction = Prediction {
            time_us: time,
            value: Some(value),
            segments,
        };
        assert!(op.predict(id, prediction, SCORED, time / MINUTE, i64::MIN));
    }

    fn complete(op: &mut PerformanceOperator, id: &str, at: i64, predicted_at: i64, truth: f64) {
        let completion = Completion {
            time_us: at,
            prediction_time_us: predicted_at,
            truth: Some(truth),
        };
        assert!(op.complete(id, completion, DONE, at / MINUTE, i64::MIN));
    }

    #[test]
    fn metrics_equal_the_textbook_formulas() {
        let truths = [10.0, 12.0, 0.0, 30.0];
        let predicted = [11.0, 10.0, 1.0, 27.0];
        let m = regression_metrics(&truths, &predicted);
        assert_eq!(m.mae, (1.0 + 2.0 + 1.0 + 3.0) / 4.0);
        assert_eq!(m.rmse, ((1.0 + 4.0 + 1.0 + 9.0) / 4.0f64).sqrt());
        assert_eq!(m.mean_error, (1.0 - 2.0 + 1.0 - 3.0) / 4.0);
        assert_eq!(m.mape_rows, 3);
        assert_eq!(m.mape, Some((0.1 + 2.0 / 12.0 + 0.1) / 3.0));
        let mean = 13.0;
        let total: f64 = truths.iter().map(|t| (t - mean) * (t - mean)).sum();
        assert_eq!(m.r2, Some(1.0 - 15.0 / total));
        assert_eq!(regression_metrics(&[5.0], &[4.0]).r2, None);
        assert_eq!(regression_metrics(&[0.0, 0.0], &[1.0, 2.0]).mape, None);
    }

    #[test]
    fn predictions_and_completions_join_in_either_order() {
        let mut op = operator(&["1h"], 1);
        predict(&mut op, "a", 10 * MINUTE, 12.0, 74.0);
        complete(&mut op, "a", 25 * MINUTE, 10 * MINUTE, 15.0);
        // The truth first: a trip whose dropoff is recorded before its pickup.
        complete(&mut op, "b", 5 * MINUTE, 20 * MINUTE, 8.0);
        predict(&mut op, "b", 20 * MINUTE, 10.0, 75.0);
        predict(&mut op, "c", 30 * MINUTE, 7.0, 74.0); // never completed
        assert_eq!(op.waiting(), (1, 0));

        // Not before the end of the window plus the label horizon.
        assert!(op.take_ready(3 * HOUR - 1, false).is_empty());
        let ready = op.take_ready(3 * HOUR, false);
        assert_eq!(ready.len(), 1);
        let report = &ready[0];
        assert_eq!((report.start_us, report.revision), (0, 1));
        assert_eq!(report.overall.predictions, 3);
        assert_eq!(report.overall.labelled_rows, 2);
        let metrics = report.overall.metrics.as_ref().unwrap();
        assert_eq!(metrics.mae, 2.5);
        assert_eq!(metrics.mean_error, (-3.0 + 2.0) / 2.0);
        let delay = report.overall.label_delay.as_ref().unwrap();
        assert_eq!(delay.max_seconds, 15.0 * 60.0);
        assert_eq!(delay.mean_seconds, (15.0 * 60.0 - 15.0 * 60.0) / 2.0);

        let zones: Vec<(&str, u64, u64)> = report
            .segments
            .iter()
            .map(|s| (s.value.as_str(), s.stats.predictions, s.stats.labelled_rows))
            .collect();
        assert_eq!(zones, [("74", 2, 1), ("75", 1, 1)]);
        assert_eq!(report.segments[0].mae_ratio, Some(3.0 / 2.5));
        assert!(!report.segments[0].unfair);
        assert_eq!(report.segments[1].mae_ratio, Some(2.0 / 2.5));
        assert_eq!(report.worst_mae_ratio, Some(0.8));
        assert_eq!(report.worst_segment.as_deref(), Some("zone=75"));
    }

    #[test]
    fn small_segments_are_reported_without_metrics() {
        let mut op = operator(&["1h"], 2);
        predict(&mut op, "a", MINUTE, 12.0, 74.0);
        predict(&mut op, "b", 2 * MINUTE, 12.0, 74.0);
        predict(&mut op, "c", 3 * MINUTE, 12.0, 75.0);
        for (id, at) in [("a", 1), ("b", 2), ("c", 3)] {
            complete(&mut op, id, (at + 10) * MINUTE, at * MINUTE, 10.0);
        }
        let report = op.take_ready(3 * HOUR, false).remove(0);
        let small = &report.segments[1];
        assert_eq!((small.value.as_str(), small.too_small), ("75", true));
        assert_eq!(small.stats.labelled_rows, 1);
        assert_eq!(small.stats.metrics, None);
        assert_eq!(small.mae_ratio, None);
        assert!(!report.segments[0].too_small);
    }

    #[test]
    fn sliding_windows_merge_panes_and_unmatched_completions_are_counted() {
        let mut op = operator(&["2h/1h"], 1);
        predict(&mut op, "a", 10 * MINUTE, 12.0, 74.0);
        complete(&mut op, "a", 20 * MINUTE, 10 * MINUTE, 10.0);
        predict(&mut op, "b", HOUR + 10 * MINUTE, 12.0, 74.0);
        complete(&mut op, "b", HOUR + 20 * MINUTE, HOUR + 10 * MINUTE, 16.0);
        complete(
            &mut op,
            "ghost",
            HOUR + 30 * MINUTE,
            HOUR + 5 * MINUTE,
            16.0,
        );
        let ready = op.take_ready(10 * HOUR, false);
        let by_start: Vec<(i64, u64, u64, f64)> = ready
            .iter()
            .map(|r| {
                (
                    r.start_us / HOUR,
                    r.overall.labelled_rows,
                    r.unmatched_completions,
                    r.overall.metrics.as_ref().unwrap().mae,
                )
            })
            .collect();
        assert_eq!(by_start, [(-1, 1, 0, 2.0), (0, 2, 1, 3.0), (1, 1, 1, 4.0)]);
        op.evict(10 * HOUR);
        assert_eq!(op.panes(), 0);
        assert_eq!(op.waiting(), (0, 0));
    }

    #[test]
    fn a_truth_after_the_label_horizon_does_not_label() {
        let mut op = operator(&["1h"], 1);
        predict(&mut op, "a", 10 * MINUTE, 12.0, 74.0);
        complete(&mut op, "a", 10 * MINUTE + 2 * HOUR + 1, 10 * MINUTE, 10.0);
        predict(&mut op, "b", 20 * MINUTE, 12.0, 74.0);
        complete(&mut op, "b", 20 * MINUTE + 2 * HOUR, 20 * MINUTE, 10.0);
        let report = op.take_ready(4 * HOUR, false).remove(0);
        assert_eq!(report.overall.labelled_rows, 1);
        assert_eq!(report.unmatched_completions, 1);
    }

    #[test]
    fn a_late_prediction_within_the_update_horizon_meets_its_waiting_truth() {
        let completion = Completion {
            time_us: 40 * MINUTE,
            prediction_time_us: 10 * MINUTE,
            truth: Some(10.0),
        };
        let prediction = Prediction {
            time_us: 10 * MINUTE,
            value: Some(12.0),
            segments: vec![0],
        };
        // The window [0, 1h) is reported at 3h (end plus the label horizon) without its row:
        // the prediction comes late (a scorer that fell behind), at 3h30.
        let mut op = operator(&["1h"], 1).with_update_horizon(HOUR);
        predict(&mut op, "b", 20 * MINUTE, 12.0, 74.0);
        complete(&mut op, "b", 30 * MINUTE, 20 * MINUTE, 11.0);
        assert!(op.complete("a", completion, DONE, 40, 0));
        let first = op.take_ready(3 * HOUR, false);
        assert_eq!((first[0].revision, first[0].overall.labelled_rows), (1, 1));
        op.evict(3 * HOUR);
        assert!(op.predict("a", prediction.clone(), SCORED, 10, 3 * HOUR + 30 * MINUTE));
        let second = op.take_ready(3 * HOUR + 30 * MINUTE, false);
        assert_eq!(
            (second[0].revision, second[0].overall.labelled_rows),
            (2, 2)
        );
        assert_eq!(second[0].unmatched_completions, 0);

        // Without an update horizon the truth was given up at 3h and the prediction is late.
        let mut op = operator(&["1h"], 1);
        predict(&mut op, "b", 20 * MINUTE, 12.0, 74.0);
        complete(&mut op, "b", 30 * MINUTE, 20 * MINUTE, 11.0);
        assert!(op.complete("a", completion, DONE, 40, 0));
        let only = op.take_ready(3 * HOUR, false);
        assert_eq!(
            (only[0].overall.labelled_rows, only[0].unmatched_completions),
            (1, 1)
        );
        op.evict(3 * HOUR);
        assert!(!op.predict("a", prediction, SCORED, 10, 3 * HOUR + 30 * MINUTE));
    }

    #[test]
    fn a_late_truth_does_not_resurrect_a_reported_window() {
        let mut op = operator(&["1h", "3h"], 1);
        predict(&mut op, "a", 10 * MINUTE, 12.0, 74.0);
        complete(&mut op, "a", 20 * MINUTE, 10 * MINUTE, 10.0);
        // The 1-hour window [0, 1h) closes at 3h (end plus the label horizon).
        let first = op.take_ready(3 * HOUR, false);
        assert_eq!(first.len(), 1);
        op.evict(3 * HOUR);
        // A truth for a trip of that hour whose prediction is gone: the 3-hour window is
        // still open and counts it; the reported 1-hour window stays reported.
        let completion = Completion {
            time_us: 3 * HOUR + MINUTE,
            prediction_time_us: 30 * MINUTE,
            truth: Some(200.0),
        };
        assert!(op.complete("b", completion, DONE, 99, 3 * HOUR));
        let later = op.take_ready(10 * HOUR, true);
        assert!(
            later.iter().all(|r| r.spec.size_us == 3 * HOUR),
            "only the 3-hour window reports again: {later:?}"
        );
        assert_eq!(later[0].unmatched_completions, 1);
    }

    /// Xorshift: the same pseudo-random numbers on every run.
    fn random(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn reports_do_not_depend_on_the_order_rows_are_labelled_in() {
        let mut next = random(0x9e37_79b9_7f4a_7c15);
        // (trip, prediction time, predicted, truth, completion time): several trips share a
        // prediction time, and the values' sums depend on their order.
        let trips: Vec<(String, i64, f64, f64, i64)> = (0..600)
            .map(|i| {
                let time = (next() % 300) as i64 * MINUTE / 2;
                let predicted = (next() % 10_000) as f64 / 7.0;
                let truth = (next() % 10_000) as f64 / 3.0 + 0.1;
                // Some beyond the label horizon: unmatched.
                let delay = (next() % 150) as i64 * MINUTE;
                (format!("trip-{i}"), time, predicted, truth, time + delay)
            })
            .collect();
        let ingest = |op: &mut PerformanceOperator, order: &[(bool, usize)]| {
            for &(is_prediction, i) in order {
                let (id, time, predicted, truth, done) = &trips[i];
                if is_prediction {
                    predict(op, id, *time, *predicted, (i % 3) as f64);
                } else {
                    // A truth later than its pane's end plus the horizon is late (false).
                    let completion = Completion {
                        time_us: *done,
                        prediction_time_us: *time,
                        truth: Some(*truth),
                    };
                    op.complete(id, completion, DONE, *done / MINUTE, i64::MIN);
                }
            }
        };
        // In time order, predictions first.
        let specs = ["1h", "30m", "2h/30m"];
        let mut in_order = operator(&specs, 1);
        let mut by_time: Vec<usize> = (0..trips.len()).collect();
        by_time.sort_by_key(|&i| trips[i].1);
        let order: Vec<(bool, usize)> = by_time
            .iter()
            .map(|&i| (true, i))
            .chain(by_time.iter().map(|&i| (false, i)))
            .collect();
        ingest(&mut in_order, &order);
        // Shuffled: many completions before their predictions, reports taken in between.
        let mut shuffled = operator(&specs, 1);
        let mut order = order;
        for i in (1..order.len()).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let mut latest = BTreeMap::new();
        for chunk in order.chunks(77) {
            ingest(&mut shuffled, chunk);
            for report in shuffled.take_ready(i64::MIN, true) {
                latest.insert(
                    (report.spec.size_us, report.spec.step_us, report.start_us),
                    report,
                );
            }
        }
        // Revisions count the interim reports; everything else is the same to the bit.
        let actual: Vec<ReadyPerformance> = latest
            .into_values()
            .map(|report| ReadyPerformance {
                revision: 1,
                ..report
            })
            .collect();
        let mut expected = in_order.take_ready(i64::MAX, true);
        expected.sort_by_key(|r| (r.spec.size_us, r.spec.step_us, r.start_us));
        assert!(expected.len() >= 10, "{} windows", expected.len());
        assert!(expected.iter().all(|r| r.overall.labelled_rows > 1));
        assert!(expected.iter().any(|r| r.unmatched_completions > 0));
        assert_eq!(actual, expected);
        assert_eq!(format!("{actual:?}"), format!("{expected:?}"));
    }

    #[test]
    fn panes_hold_the_offsets_of_both_topics() {
        let mut op = operator(&["1h"], 1);
        predict(&mut op, "a", 10 * MINUTE, 12.0, 74.0);
        complete(&mut op, "a", 40 * MINUTE, 10 * MINUTE, 10.0);
        assert_eq!(op.commit_position(SCORED, 99), 10);
        assert_eq!(op.commit_position(DONE, 99), 40);
        op.take_ready(3 * HOUR, false);
        op.evict(3 * HOUR);
        assert_eq!(op.commit_position(SCORED, 99), 99);
    }
}
