//! Scale-out by consumer group. Worker monitors (`monitor run --partials-topic`) in one
//! consumer group each own some partitions of the scored topic. Per partition they build the
//! panes as a single monitor does, and publish
//!
//! - each pane's exact state for that partition (a *pane partial*: row count, present cells
//!   per column, the value counts of every monitored column, the same per segment) once the
//!   partition's watermark has passed the pane's end, and again when a late event changes it;
//! - with completions, each performance pane's state for that partition (a *performance
//!   partial*: predictions, the labelled rows with their canonical sort keys, unmatched
//!   completions; `crate::performance`) once the partition's performance watermark has passed
//!   the pane's end plus the label horizon, and again when it changes. A worker joins
//!   partition p of the completions topic with partition p of the scored topic, so the two
//!   must be co-partitioned (same partition count and key, assigned together);
//! - the partition's watermark and idleness (*progress*), after the partials it covers were
//!   acknowledged.
//!
//! The merger (`monitor merge`) keeps the latest partial per (window spec, pane, partition),
//! closes a window when the lowest watermark over all partitions of the scored topic passes
//! its end, adds up the partials of its panes (value counts add exactly) and evaluates the
//! window as a single monitor would; performance windows likewise, on the lowest performance
//! watermark plus the label horizon, over the partitions' rows put together in canonical
//! order. A partial is a pure function of the partition's events, so a partial re-sent after
//! a worker restart or a rebalance replaces an identical one and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

use crate::performance::{PerfEvaluation, PerfPane, ReadyPerformance};
use crate::segments::Segmenter;
use crate::window::{assemble_window, Pane, ReadyWindow, WindowSpec};

/// A message on the partials topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum PartialRecord {
    Pane(PanePartial),
    Performance(PerfPanePartial),
    Progress(PartitionProgress),
}

impl PartialRecord {
    /// Every record of one scored partition gets the same key, hence one partition of the
    /// partials topic: the merger reads a partition's progress after its partials.
    pub fn message_key(&self) -> String {
        let (monitor, partition) = match self {
            PartialRecord::Pane(p) => (&p.monitor, p.partition),
            PartialRecord::Performance(p) => (&p.monitor, p.partition),
            PartialRecord::Progress(p) => (&p.monitor, p.partition),
        };
        format!("{monitor}/{partition}")
    }
}

/// One pane's state from one partition of the scored topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanePartial {
    pub monitor: String,
    pub size_us: i64,
    pub step_us: i64,
    pub pane_start_us: i64,
    pub partition: i32,
    /// Offset of the pane's first event in the partition: a worker that rebuilt a pane from
    /// part of its events (restarted after events older than its offsets arrived) sends a
    /// higher one, and the merger keeps the complete state.
    #[serde(default)]
    pub first_offset: Option<i64>,
    pub pane: PaneState,
}

/// A pane's contents, with columns and segments by name (ids are local to a process).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaneState {
    pub rows: u64,
    /// Latest Kafka timestamp of the pane's events (milliseconds).
    pub max_published_ms: Option<i64>,
    /// Data columns seen in the pane and how many of their cells were present, by name.
    pub cells: Vec<(String, u64)>,
    /// Value counts per monitored column, in the monitor's column order.
    pub columns: Vec<CountsState>,
    /// The pane's rows per segment of each drift dimension (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentState>,
}

/// Exact value counts: each value as its IEEE-754 bits (JSON has no infinities), sorted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CountsState {
    pub nulls: u64,
    pub bits: Vec<u64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentState {
    pub dimension: usize,
    pub segment: String,
    pub pane: PaneState,
}

/// One performance pane's state from one partition (the same partition of the scored and of
/// the completions topic: workers read them co-partitioned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfPanePartial {
    pub monitor: String,
    pub size_us: i64,
    pub step_us: i64,
    pub pane_start_us: i64,
    pub partition: i32,
    /// Offsets of the pane's first scored event and first completion in the partition (see
    /// `PanePartial::first_offset`).
    pub scored_first_offset: Option<i64>,
    pub completions_first_offset: Option<i64>,
    pub pane: PerfPaneState,
}

/// A performance pane's contents, with segments by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerfPaneState {
    pub predictions: u64,
    /// Predictions per (dimension, segment name), sorted.
    pub segment_predictions: Vec<(usize, String, u64)>,
    /// Per dimension, the segment names of the labelled rows (sorted): rows refer to them by
    /// index.
    pub segment_names: Vec<Vec<String>>,
    pub rows: LabelledRows,
    /// Completions that labelled none of the pane's predictions.
    pub unmatched_completions: u64,
}

/// Labelled rows in canonical order (`crate::performance`), one entry per row in each vector;
/// values as IEEE-754 bits (exact through JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelledRows {
    pub prediction_times_us: Vec<i64>,
    /// Hashes of the trip ids.
    pub trips: Vec<u64>,
    pub truths: Vec<u64>,
    pub predicted: Vec<u64>,
    pub delays_s: Vec<u64>,
    /// Per dimension, each row's index into `PerfPaneState::segment_names`.
    pub segments: Vec<Vec<u32>>,
}

/// A partition's watermark as its worker last computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionProgress {
    pub monitor: String,
    pub partition: i32,
    /// `i64::MIN` before the partition delivered an event.
    pub watermark_us: i64,
    /// Caught up and silent for the idle timeout: it does not hold windows back.
    pub idle: bool,
    /// With completions: the lower of the partition's scored and completions watermarks,
    /// which closes performance panes (`None` from workers without completions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_watermark_us: Option<i64>,
    /// Both of the partition's topics are idle.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub performance_idle: bool,
    /// The worker instance that sent it (for people reading the topic).
    pub instance: String,
}

impl PaneState {
    /// A pane's state; `column_name` and `segment_name` turn the process's ids into names.
    pub(crate) fn of(
        pane: &Pane,
        column_name: &dyn Fn(u32) -> String,
        segment_name: &dyn Fn(usize, u32) -> String,
    ) -> Self {
        let mut cells: Vec<(String, u64)> = pane
            .seen
            .iter()
            .zip(&pane.present)
            .enumerate()
            .filter(|(_, (seen, _))| **seen)
            .map(|(id, (_, present))| (column_name(id as u32), *present))
            .collect();
        cells.sort_unstable();
        let columns = pane
            .columns
            .iter()
            .map(|accumulator| {
                let counts = accumulator.counts();
                let mut pairs: Vec<(u64, u64)> = counts
                    .sorted_pairs()
                    .into_iter()
                    .map(|(v, c)| (v.to_bits(), c))
                    .collect();
                pairs.sort_unstable();
                let (bits, counts_of) = pairs.into_iter().unzip();
                CountsState {
                    nulls: counts.nulls(),
                    bits,
                    counts: counts_of,
                }
            })
            .collect();
        let mut segments: Vec<SegmentState> = pane
            .segments
            .iter()
            .map(|(&(dimension, id), sub)| SegmentState {
                dimension,
                segment: segment_name(dimension, id),
                pane: PaneState::of(sub, column_name, segment_name),
            })
            .collect();
        segments.sort_unstable_by(|a, b| (a.dimension, &a.segment).cmp(&(b.dimension, &b.segment)));
        Self {
            rows: pane.rows,
            max_published_ms: Some(pane.max_published_ms).filter(|ms| *ms != i64::MIN),
            cells,
            columns,
            segments,
        }
    }

    /// The pane back, with the merger's ids for columns and segments.
    fn to_pane(
        &self,
        columns: usize,
        column_id: &mut dyn FnMut(&str) -> u32,
        segmenters: &mut [Segmenter],
    ) -> Pane {
        let mut pane = Pane::new(columns);
        pane.rows = self.rows;
        pane.max_published_ms = self.max_published_ms.unwrap_or(i64::MIN);
        for (name, present) in &self.cells {
            pane.add_column_cells(column_id(name), *present);
        }
        for (accumulator, state) in pane.columns.iter_mut().zip(&self.columns) {
            let counts = accumulator.counts_mut();
            counts.add_nulls(state.nulls);
            for (bits, count) in state.bits.iter().zip(&state.counts) {
                counts.add_count(f64::from_bits(*bits), *count);
            }
        }
        for segment in &self.segments {
            let Some(segmenter) = segmenters.get_mut(segment.dimension) else {
                continue;
            };
            let id = segmenter.intern(segment.segment.clone());
            let sub = segment.pane.to_pane(columns, column_id, segmenters);
            pane.segments.insert((segment.dimension, id), sub);
        }
        pane
    }
}

/// What the merger did with a pane partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// New or changed: the windows holding the pane are (re-)reported.
    Changed,
    /// The same state as the one kept (a worker restarted or a partition moved).
    Unchanged,
    /// Built from fewer of the partition's events than the state kept (its first offset is
    /// later): refused.
    Incomplete,
    /// Every window holding the pane is past its update horizon.
    Late,
    /// A window spec this merger does not compute, or another monitor's partial.
    Foreign,
    /// Its contents do not fit together or do not fit this merger's segments: refused.
    Malformed,
}

struct StoredPartial<P> {
    pane: P,
    digest: u64,
    /// Offsets of the pane's first event per topic the partial covers.
    first_offsets: [Option<i64>; 2],
    /// Where it is in the partials topic: (partition, offset).
    position: (i32, i64),
}

/// A partial about to be kept: where it belongs and what identifies its contents.
struct Incoming<'a> {
    pane_start_us: i64,
    partition: i32,
    payload: &'a [u8],
    first_offsets: [Option<i64>; 2],
    position: (i32, i64),
}

struct MergeSpec<P> {
    spec: WindowSpec,
    /// pane index → scored partition → its latest partial.
    panes: BTreeMap<i64, BTreeMap<i32, StoredPartial<P>>>,
    pending: BTreeSet<i64>,
    revisions: BTreeMap<i64, u32>,
}

impl<P> MergeSpec<P> {
    fn new(spec: WindowSpec) -> Self {
        Self {
            spec,
            panes: BTreeMap::new(),
            pending: BTreeSet::new(),
            revisions: BTreeMap::new(),
        }
    }

    /// Keeps a partial (its pane made by `build`, `None` when malformed) unless every window
    /// of its pane is closed at `watermark` (windows close `horizon` after their end), it
    /// equals the kept one, or it was built from fewer events.
    fn keep(
        &mut self,
        incoming: Incoming,
        watermark: i64,
        horizon: i64,
        build: impl FnOnce() -> Option<P>,
    ) -> Applied {
        let spec = self.spec;
        let open =
            |start: i64| start.saturating_add(spec.size_us).saturating_add(horizon) > watermark;
        let pane_index = spec.pane_of(incoming.pane_start_us);
        let windows: Vec<i64> = spec
            .windows_of_pane(pane_index)
            .filter(|s| open(*s))
            .collect();
        if windows.is_empty() {
            return Applied::Late;
        }
        let digest = {
            let mut hasher = FxHasher::default();
            incoming.payload.hash(&mut hasher);
            hasher.finish()
        };
        let by_partition = self.panes.entry(pane_index).or_default();
        if let Some(kept) = by_partition.get(&incoming.partition) {
            if kept.digest == digest {
                // The first copy's position stays the commit point: a restarted merger re-reads
                // it before the progress records that would make a later copy look late.
                return Applied::Unchanged;
            }
            let later = kept
                .first_offsets
                .iter()
                .zip(&incoming.first_offsets)
                .any(|(kept, first)| matches!((kept, first), (Some(k), Some(f)) if f > k));
            if later {
                return Applied::Incomplete;
            }
        }
        let Some(pane) = build() else {
            return Applied::Malformed;
        };
        by_partition.insert(
            incoming.partition,
            StoredPartial {
                pane,
                digest,
                first_offsets: incoming.first_offsets,
                position: incoming.position,
            },
        );
        self.pending.extend(windows);
        Applied::Changed
    }

    /// Pending windows the watermark closed (all when `flush`), with their panes' partials
    /// (panes in time order) and the revision they would be reported with.
    fn take_closed(
        &mut self,
        watermark: i64,
        horizon: i64,
        flush: bool,
    ) -> Vec<(i64, u32, Vec<Vec<&P>>)> {
        let spec = self.spec;
        let starts: Vec<i64> = self
            .pending
            .iter()
            .copied()
            .filter(|start| {
                flush || start.saturating_add(spec.size_us).saturating_add(horizon) <= watermark
            })
            .collect();
        let mut closed = Vec::new();
        for start in starts {
            self.pending.remove(&start);
            let first = spec.pane_of(start);
            let panes: Vec<Vec<&P>> = self
                .panes
                .range(first..first + spec.size_us / spec.step_us)
                .map(|(_, partitions)| partitions.values().map(|p| &p.pane).collect())
                .collect();
            let revision = self.revisions.get(&start).copied().unwrap_or(0) + 1;
            closed.push((start, revision, panes));
        }
        closed
    }

    /// Drops panes no window can take any more.
    fn evict(&mut self, watermark: i64, horizon: i64) {
        let spec = self.spec;
        let closed =
            |start: i64| start.saturating_add(spec.size_us).saturating_add(horizon) <= watermark;
        self.panes.retain(|pane, _| !closed(pane * spec.step_us));
        self.revisions.retain(|start, _| !closed(*start));
    }

    fn partials(&self) -> impl Iterator<Item = &StoredPartial<P>> {
        self.panes.values().flat_map(BTreeMap::values)
    }
}

/// The lowest offset of a kept partial in a partition of the partials topic, or `next`.
fn commit_position<'a, P: 'a>(
    specs: impl Iterator<Item = &'a MergeSpec<P>>,
    partition: i32,
    next: i64,
) -> i64 {
    specs
        .flat_map(MergeSpec::partials)
        .filter(|p| p.position.0 == partition)
        .map(|p| p.position.1)
        .min()
        .map_or(next, |lowest| lowest.min(next))
}

/// The merged watermark: the lowest over the scored topic's partitions of the watermarks
/// their workers reported.
/// The kept state of a partial's window spec, when the partial is this merger's monitor's
/// and of a spec it computes.
fn ours<'a, P>(
    specs: &'a mut [MergeSpec<P>],
    monitor: &str,
    partial_monitor: &str,
    (size_us, step_us): (i64, i64),
) -> Option<&'a mut MergeSpec<P>> {
    if partial_monitor != monitor {
        return None;
    }
    specs
        .iter_mut()
        .find(|s| s.spec.size_us == size_us && s.spec.step_us == step_us)
}

struct MergedWatermark {
    progress: BTreeMap<i32, (i64, bool)>,
    /// Partitions of the scored topic: windows wait until each has reported.
    partitions: usize,
    current: i64,
}

impl MergedWatermark {
    fn new() -> Self {
        Self {
            progress: BTreeMap::new(),
            partitions: 0,
            current: i64::MIN,
        }
    }

    fn report(&mut self, partition: i32, watermark: i64, idle: bool) {
        let entry = self.progress.entry(partition).or_insert((i64::MIN, false));
        // A partition's watermark never moves back (a restarted worker starts low again).
        entry.0 = entry.0.max(watermark);
        entry.1 = idle;
    }

    /// The merged watermark, or the partition's own when that is higher: a worker restarted
    /// from committed offsets starts with a low watermark and would rebuild panes it had
    /// evicted from the events after those offsets alone; they are past the horizon of the
    /// partition's windows.
    fn for_partition(&self, partition: i32) -> i64 {
        let own = self
            .progress
            .get(&partition)
            .map_or(i64::MIN, |(watermark, _)| *watermark);
        self.current.max(own)
    }

    fn advance(&mut self) -> (i64, bool) {
        if self.partitions == 0 || self.progress.len() < self.partitions {
            return (self.current, false);
        }
        let active = self
            .progress
            .values()
            .filter(|(_, idle)| !idle)
            .map(|(watermark, _)| *watermark)
            .min();
        match active {
            Some(watermark) => {
                self.current = self.current.max(watermark);
                (self.current, false)
            }
            None => (self.current, true),
        }
    }
}

/// The merger's state: the latest partial per pane and partition, and each partition's
/// progress.
pub struct MergeOperator {
    monitor: String,
    specs: Vec<MergeSpec<Pane>>,
    columns: usize,
    horizon_us: i64,
    watermark: MergedWatermark,
    column_ids: FxHashMap<String, u32>,
}

impl MergeOperator {
    pub fn new(monitor: &str, specs: &[WindowSpec], columns: usize, horizon_us: i64) -> Self {
        Self {
            monitor: monitor.to_owned(),
            specs: specs.iter().map(|spec| MergeSpec::new(*spec)).collect(),
            columns,
            horizon_us,
            watermark: MergedWatermark::new(),
            column_ids: FxHashMap::default(),
        }
    }

    /// The scored topic's partition count (from the broker's metadata).
    pub fn set_partitions(&mut self, partitions: usize) {
        self.watermark.partitions = partitions;
    }

    /// Scored partitions that have reported progress.
    pub fn reported_partitions(&self) -> usize {
        self.watermark.progress.len()
    }

    /// Keeps a pane partial read at `position` of the partials topic; `payload` is its
    /// message (equal payloads are equal states).
    pub fn apply_pane(
        &mut self,
        partial: &PanePartial,
        payload: &[u8],
        position: (i32, i64),
        segmenters: &mut [Segmenter],
    ) -> Applied {
        let watermark = self.watermark.for_partition(partial.partition);
        let Some(state) = ours(
            &mut self.specs,
            &self.monitor,
            &partial.monitor,
            (partial.size_us, partial.step_us),
        ) else {
            return Applied::Foreign;
        };
        let incoming = Incoming {
            pane_start_us: partial.pane_start_us,
            partition: partial.partition,
            payload,
            first_offsets: [partial.first_offset, None],
            position,
        };
        let (columns, column_ids) = (self.columns, &mut self.column_ids);
        state.keep(incoming, watermark, self.horizon_us, || {
            let mut column_id = |name: &str| -> u32 {
                let next = column_ids.len() as u32;
                *column_ids.entry(name.to_owned()).or_insert(next)
            };
            Some(partial.pane.to_pane(columns, &mut column_id, segmenters))
        })
    }

    pub fn apply_progress(&mut self, progress: &PartitionProgress) {
        if progress.monitor == self.monitor {
            self.watermark
                .report(progress.partition, progress.watermark_us, progress.idle);
        }
    }

    /// The merged watermark, and whether every partition is idle (then open windows are
    /// reported early, as a single monitor does). It waits until every partition of the
    /// scored topic has reported.
    pub fn advance(&mut self) -> (i64, bool) {
        self.watermark.advance()
    }

    /// Windows whose end the watermark passed (every pending one when `flush`), merged
    /// over their panes and partitions.
    pub fn take_ready(&mut self, watermark: i64, flush: bool) -> Vec<ReadyWindow> {
        let mut ready = Vec::new();
        for state in &mut self.specs {
            let spec = state.spec;
            let mut reported = Vec::new();
            for (start, revision, panes) in state.take_closed(watermark, 0, flush) {
                let panes: Vec<&Pane> = panes.into_iter().flatten().collect();
                if let Some(window) = assemble_window(spec, start, revision, &panes, self.columns) {
                    reported.push((start, revision));
                    ready.push(window);
                }
            }
            state.revisions.extend(reported);
        }
        ready
    }

    /// Drops panes no window can take any more.
    pub fn evict(&mut self, watermark: i64) {
        for state in &mut self.specs {
            state.evict(watermark, self.horizon_us);
        }
    }

    /// The offset to commit in a partition of the partials topic: the lowest one of a kept
    /// partial, or `next`.
    pub fn commit_position(&self, partition: i32, next: i64) -> i64 {
        commit_position(self.specs.iter(), partition, next)
    }

    /// Windows waiting to be reported.
    pub fn open_windows(&self) -> usize {
        self.specs.iter().map(|s| s.pending.len()).sum()
    }

    /// Pane partials kept.
    pub fn partials(&self) -> usize {
        self.specs.iter().map(|s| s.partials().count()).sum()
    }
}

/// The merger's performance state: the latest performance partial per pane and partition,
/// and each partition's performance watermark. Windows close when the lowest of those passes
/// their end plus the label horizon and are evaluated over the partitions' labelled rows
/// together, in canonical order: the single instance's numbers.
pub struct PerfMergeOperator {
    monitor: String,
    specs: Vec<MergeSpec<PerfPane>>,
    /// The label horizon.
    horizon_us: i64,
    /// How long after its report a window still takes changed partials (`--update-horizon`).
    update_horizon_us: i64,
    evaluation: PerfEvaluation,
    watermark: MergedWatermark,
}

impl PerfMergeOperator {
    /// How long after a window's end its truths may still come (microseconds).
    pub fn label_horizon_us(&self) -> i64 {
        self.horizon_us
    }

    pub fn new(
        monitor: &str,
        specs: &[WindowSpec],
        horizon_us: i64,
        update_horizon_us: i64,
        evaluation: PerfEvaluation,
    ) -> Self {
        Self {
            monitor: monitor.to_owned(),
            specs: specs.iter().map(|spec| MergeSpec::new(*spec)).collect(),
            horizon_us,
            update_horizon_us,
            evaluation,
            watermark: MergedWatermark::new(),
        }
    }

    /// The scored (and completions) topic's partition count.
    pub fn set_partitions(&mut self, partitions: usize) {
        self.watermark.partitions = partitions;
    }

    /// Keeps a performance partial read at `position` of the partials topic.
    pub fn apply(
        &mut self,
        partial: &PerfPanePartial,
        payload: &[u8],
        position: (i32, i64),
    ) -> Applied {
        let watermark = self.watermark.for_partition(partial.partition);
        let Some(state) = ours(
            &mut self.specs,
            &self.monitor,
            &partial.monitor,
            (partial.size_us, partial.step_us),
        ) else {
            return Applied::Foreign;
        };
        let incoming = Incoming {
            pane_start_us: partial.pane_start_us,
            partition: partial.partition,
            payload,
            first_offsets: [
                partial.scored_first_offset,
                partial.completions_first_offset,
            ],
            position,
        };
        let segmenters = &mut self.evaluation.segmenters;
        let retention = self.horizon_us.saturating_add(self.update_horizon_us);
        state.keep(incoming, watermark, retention, || {
            PerfPane::from_state(&partial.pane, segmenters)
        })
    }

    pub fn apply_progress(&mut self, progress: &PartitionProgress) {
        if let (true, Some(watermark)) = (
            progress.monitor == self.monitor,
            progress.performance_watermark_us,
        ) {
            self.watermark
                .report(progress.partition, watermark, progress.performance_idle);
        }
    }

    /// The merged performance watermark, and whether every partition is idle.
    pub fn advance(&mut self) -> (i64, bool) {
        self.watermark.advance()
    }

    /// Windows whose end plus the label horizon the watermark passed (every pending one when
    /// `flush`), with their performance over all partitions.
    pub fn take_ready(&mut self, watermark: i64, flush: bool) -> Vec<ReadyPerformance> {
        let mut ready = Vec::new();
        for state in &mut self.specs {
            let spec = state.spec;
            let mut reported = Vec::new();
            for (start, revision, panes) in state.take_closed(watermark, self.horizon_us, flush) {
                let merged: Vec<PerfPane> = panes
                    .into_iter()
                    .map(|partitions| {
                        PerfPane::merged(partitions, self.evaluation.segmenters.len())
                    })
                    .collect();
                let panes: Vec<&PerfPane> = merged.iter().collect();
                if let Some(mut report) = self.evaluation.window(spec, start, &panes) {
                    report.revision = revision;
                    reported.push((start, revision));
                    ready.push(report);
                }
            }
            state.revisions.extend(reported);
        }
        ready
    }

    /// Drops panes no window can take any more.
    pub fn evict(&mut self, watermark: i64) {
        let retention = self.horizon_us.saturating_add(self.update_horizon_us);
        for state in &mut self.specs {
            state.evict(watermark, retention);
        }
    }

    /// See [`MergeOperator::commit_position`].
    pub fn commit_position(&self, partition: i32, next: i64) -> i64 {
        commit_position(self.specs.iter(), partition, next)
    }

    /// Windows waiting to be reported.
    pub fn open_windows(&self) -> usize {
        self.specs.iter().map(|s| s.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodedEvent;
    use crate::evaluate::WindowData;
    use crate::performance::{Completion, PerformanceOperator, Position, Prediction};
    use crate::window::{MicroBatch, WindowOperator};
    use streamwatch_common::spec::PerformanceSpec;

    const HOUR: i64 = 3_600_000_000;
    const PARTITIONS: i32 = 3;

    /// (partition, offset, event) in arrival order, with one segment id per event.
    fn events() -> Vec<(i32, i64, DecodedEvent, u32)> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut offsets = [0i64; PARTITIONS as usize];
        (0..2_000)
            .map(|i| {
                let partition = (next() % PARTITIONS as u64) as i32;
                let offset = offsets[partition as usize];
                offsets[partition as usize] += 1;
                let value = match next() % 10 {
                    0 => None,
                    1 => Some(f64::INFINITY),
                    2 => Some(-0.0),
                    k => Some((k * (next() % 7)) as f64 / 4.0),
                };
                let time = i * 9 * HOUR / 100 + (next() % 1_000) as i64;
                let event = DecodedEvent {
                    event_time_us: time,
                    trip_id: None,
                    values: vec![value, Some((next() % 3) as f64)],
                    cells: vec![
                        (0, value.is_none()),
                        if next() % 3 == 0 {
                            (7, true)
                        } else {
                            (1, false)
                        },
                    ],
                };
                (partition, offset, event, (next() % 4) as u32)
            })
            .collect()
    }

    fn specs() -> Vec<WindowSpec> {
        ["1h", "3h/1h", "1d"]
            .iter()
            .map(|s| WindowSpec::parse(s).unwrap())
            .collect()
    }

    /// A window's contents in comparable form, segments by name.
    fn summary(window: &ReadyWindow, segment_name: &dyn Fn(u32) -> String) -> String {
        let data = |d: &WindowData| {
            let columns: Vec<_> = d
                .columns
                .iter()
                .map(|c| {
                    (
                        c.values.values().to_vec(),
                        c.values.counts().to_vec(),
                        c.nulls,
                    )
                })
                .collect();
            format!(
                "{} {} {} {columns:?}",
                d.row_count, d.number_of_columns, d.number_of_missing_values
            )
        };
        let mut segments: Vec<String> = window
            .segments
            .iter()
            .map(|s| format!("{}={}", segment_name(s.segment), data(&s.data)))
            .collect();
        segments.sort();
        format!(
            "{:?} {} {:?} {} {segments:?}",
            window.spec,
            window.start_us,
            window.last_published_ms,
            data(&window.data)
        )
    }

    #[test]
    fn merged_partials_equal_a_single_instance() {
        let events = events();
        let names = |id: u32| format!("segment-{id}");

        let mut single = WindowOperator::new(&specs(), 2, HOUR).with_segment_dimensions(1);
        for chunk in events.chunks(97) {
            let mut batch = MicroBatch::default();
            for (partition, offset, event, segment) in chunk {
                batch.push_segmented(event, &[*segment], *partition, *offset);
                batch.set_published_ms(event.event_time_us / 1000);
            }
            single.ingest(&batch, i64::MIN);
        }
        let mut expected: Vec<String> = single
            .take_ready(i64::MAX, true)
            .iter()
            .map(|w| summary(w, &names))
            .collect();
        expected.sort();

        // Workers: one operator per partition, panes exported as they close, through JSON.
        let mut merger = MergeOperator::new("m", &specs(), 2, HOUR);
        merger.set_partitions(PARTITIONS as usize);
        let mut segmenters = vec![Segmenter::by_value("dimension", 1)];
        let mut offset = 0;
        for partition in 0..PARTITIONS {
            let mut worker = WindowOperator::new(&specs(), 2, HOUR)
                .with_segment_dimensions(1)
                .exporting_panes();
            let mine: Vec<_> = events.iter().filter(|e| e.0 == partition).collect();
            let mut watermark = i64::MIN;
            for chunk in mine.chunks(41) {
                let mut batch = MicroBatch::default();
                for (partition, offset, event, segment) in chunk {
                    batch.push_segmented(event, &[*segment], *partition, *offset);
                    batch.set_published_ms(event.event_time_us / 1000);
                    watermark = watermark.max(event.event_time_us - HOUR);
                }
                worker.ingest(&batch, i64::MIN);
                let mut records = Vec::new();
                worker.take_partials(watermark, false, |spec, start, pane| {
                    records.push(PanePartial {
                        monitor: "m".into(),
                        size_us: spec.size_us,
                        step_us: spec.step_us,
                        pane_start_us: start,
                        partition,
                        first_offset: pane.first_offset(partition),
                        pane: PaneState::of(pane, &|id| format!("column-{id}"), &|_, id| names(id)),
                    });
                });
                for record in records {
                    let payload = serde_json::to_vec(&PartialRecord::Pane(record)).unwrap();
                    let PartialRecord::Pane(decoded) = serde_json::from_slice(&payload).unwrap()
                    else {
                        panic!("a pane record");
                    };
                    merger.apply_pane(&decoded, &payload, (0, offset), &mut segmenters);
                    offset += 1;
                }
            }
            // Idle at the end: every changed pane goes out.
            worker.take_partials(watermark, true, |spec, start, pane| {
                let partial = PanePartial {
                    monitor: "m".into(),
                    size_us: spec.size_us,
                    step_us: spec.step_us,
                    pane_start_us: start,
                    partition,
                    first_offset: pane.first_offset(partition),
                    pane: PaneState::of(pane, &|id| format!("column-{id}"), &|_, id| names(id)),
                };
                let payload = serde_json::to_vec(&partial).unwrap();
                merger.apply_pane(&partial, &payload, (0, offset), &mut segmenters);
                offset += 1;
            });
            assert_eq!(
                merger.advance(),
                (i64::MIN, false),
                "waits for every partition"
            );
            merger.apply_progress(&PartitionProgress {
                monitor: "m".into(),
                partition,
                watermark_us: watermark,
                idle: true,
                performance_watermark_us: None,
                performance_idle: false,
                instance: "test".into(),
            });
        }
        let (watermark, flush) = merger.advance();
        assert!(flush);
        let mut merged: Vec<String> = merger
            .take_ready(watermark, flush)
            .iter()
            .map(|w| summary(w, &|id| segmenters[0].name_of(id).to_owned()))
            .collect();
        merged.sort();
        assert!(expected.len() > 100, "{} windows", expected.len());
        assert_eq!(merged, expected);
    }

    /// A trip's events on one partition: its prediction and its completion, either possibly
    /// missing.
    enum TripEvent {
        Prediction(Prediction),
        Completion(Completion),
    }

    /// (partition, offset, trip id, event), per partition in event-time order.
    fn trip_events() -> Vec<(i32, i64, String, TripEvent)> {
        const MINUTE: i64 = 60_000_000;
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut events: Vec<(i32, i64, String, TripEvent)> = Vec::new();
        for trip in 0..1_500 {
            let partition = (next() % PARTITIONS as u64) as i32;
            let id = format!("trip-{trip}");
            let time = trip * 3 * MINUTE + (next() % 120) as i64 * MINUTE / 60;
            let kind = next() % 20;
            if kind != 0 {
                // Zones 0..4 as the segment column; a few predictions without a value.
                let value = (kind != 1).then(|| (next() % 5_000) as f64 / 7.0);
                let zone = (next() % 4) as f64;
                events.push((
                    partition,
                    time,
                    id.clone(),
                    TripEvent::Prediction(Prediction {
                        time_us: time,
                        value,
                        segments: vec![zone as u32],
                    }),
                ));
            }
            if kind != 2 {
                // Some truths come after the label horizon (2 h).
                let delay = (next() % 150) as i64 * MINUTE;
                events.push((
                    partition,
                    time + delay,
                    id,
                    TripEvent::Completion(Completion {
                        time_us: time + delay,
                        prediction_time_us: time,
                        truth: Some((next() % 3_000) as f64 / 3.0),
                    }),
                ));
            }
        }
        events.sort_by_key(|(partition, time, _, _)| (*partition, *time));
        let mut offsets = [0i64; PARTITIONS as usize];
        events
            .into_iter()
            .map(|(partition, _, id, event)| {
                let offset = offsets[partition as usize];
                offsets[partition as usize] += 1;
                (partition, offset, id, event)
            })
            .collect()
    }

    fn performance_operator() -> PerformanceOperator {
        let settings = PerformanceSpec {
            min_segment_rows: 3,
            fairness_band: [0.8, 1.25],
        };
        let segmenters = vec![Segmenter::by_value("zone", 1)];
        PerformanceOperator::new(&specs(), 2 * HOUR, settings, segmenters)
    }

    /// Feeds one event; segments are classified by the operator (its own ids).
    fn feed(
        op: &mut PerformanceOperator,
        partition: i32,
        offset: i64,
        id: &str,
        event: &TripEvent,
    ) {
        match event {
            TripEvent::Prediction(prediction) => {
                let zone = prediction.segments[0] as f64;
                let segments = op.classify(&[prediction.value, Some(zone)]);
                let prediction = Prediction {
                    segments,
                    ..prediction.clone()
                };
                let position = Position {
                    topic: 0,
                    partition,
                };
                op.predict(id, prediction, position, offset, i64::MIN);
            }
            TripEvent::Completion(completion) => {
                let position = Position {
                    topic: 1,
                    partition,
                };
                op.complete(id, *completion, position, offset, i64::MIN);
            }
        }
    }

    fn by_window(mut reports: Vec<ReadyPerformance>) -> Vec<ReadyPerformance> {
        reports.sort_by_key(|r| (r.spec.size_us, r.spec.step_us, r.start_us));
        reports
    }

    #[test]
    fn merged_performance_partials_equal_a_single_instance() {
        let events = trip_events();
        // The single instance reads the partitions interleaved in another order.
        let mut single = performance_operator();
        let mut interleaved: Vec<&(i32, i64, String, TripEvent)> = events.iter().collect();
        interleaved.sort_by_key(|(partition, offset, _, _)| (*offset, -partition));
        for (partition, offset, id, event) in interleaved {
            feed(&mut single, *partition, *offset, id, event);
        }
        let expected = by_window(single.take_ready(i64::MAX, true));

        let evaluation = PerfEvaluation {
            settings: PerformanceSpec {
                min_segment_rows: 3,
                fairness_band: [0.8, 1.25],
            },
            segmenters: vec![Segmenter::by_value("zone", 1)],
            error_bounds: None,
        };
        let mut merger = PerfMergeOperator::new("m", &specs(), 2 * HOUR, 0, evaluation);
        merger.set_partitions(PARTITIONS as usize);
        let mut position = 0;
        let mut apply = |merger: &mut PerfMergeOperator, partials: Vec<PerfPanePartial>| {
            for partial in partials {
                let payload = serde_json::to_vec(&PartialRecord::Performance(partial)).unwrap();
                let PartialRecord::Performance(decoded) = serde_json::from_slice(&payload).unwrap()
                else {
                    panic!("a performance record");
                };
                let applied = merger.apply(&decoded, &payload, (0, position));
                assert!(
                    matches!(applied, Applied::Changed | Applied::Unchanged),
                    "{applied:?}"
                );
                position += 1;
            }
        };
        for partition in 0..PARTITIONS {
            let mut worker = performance_operator().exporting_panes();
            let mine: Vec<_> = events.iter().filter(|e| e.0 == partition).collect();
            let (mut scored, mut completed) = (i64::MIN, i64::MIN);
            for chunk in mine.chunks(29) {
                for (partition, offset, id, event) in chunk {
                    feed(&mut worker, *partition, *offset, id, event);
                    match event {
                        TripEvent::Prediction(p) => scored = scored.max(p.time_us),
                        TripEvent::Completion(c) => completed = completed.max(c.time_us),
                    }
                }
                let watermark = scored.min(completed);
                apply(
                    &mut merger,
                    worker.take_partials("m", partition, watermark, false),
                );
            }
            // The end of the stream: everything waiting expires, every changed pane goes out.
            apply(
                &mut merger,
                worker.take_partials("m", partition, i64::MAX, true),
            );
            assert_eq!(
                merger.advance(),
                (i64::MIN, false),
                "waits for every partition"
            );
            merger.apply_progress(&PartitionProgress {
                monitor: "m".into(),
                partition,
                watermark_us: i64::MAX,
                idle: true,
                performance_watermark_us: Some(i64::MAX),
                performance_idle: true,
                instance: "test".into(),
            });
        }
        let (watermark, flush) = merger.advance();
        assert!(flush);
        let merged = by_window(merger.take_ready(watermark, flush));
        assert!(expected.len() > 100, "{} windows", expected.len());
        assert!(expected.iter().any(|r| r.unmatched_completions > 0));
        assert!(expected
            .iter()
            .any(|r| r.segments.iter().any(|s| s.too_small)));
        assert!(expected
            .iter()
            .all(|r| r.overall.labelled_rows < r.overall.predictions));
        assert_eq!(merged, expected);
        assert_eq!(format!("{merged:?}"), format!("{expected:?}"));
    }

    #[test]
    fn performance_partials_are_checked_and_older_progress_records_still_decode() {
        let old = r#"{"record":"progress","monitor":"m","partition":2,"watermark_us":5,"idle":false,"instance":"w"}"#;
        let PartialRecord::Progress(progress) = serde_json::from_str(old).unwrap() else {
            panic!("a progress record");
        };
        assert_eq!(
            (progress.performance_watermark_us, progress.performance_idle),
            (None, false)
        );

        let evaluation = PerfEvaluation {
            settings: PerformanceSpec::default(),
            segmenters: vec![Segmenter::by_value("zone", 1)],
            error_bounds: None,
        };
        let spec = WindowSpec::parse("1h").unwrap();
        let mut merger = PerfMergeOperator::new("m", &[spec], HOUR, 0, evaluation);
        merger.set_partitions(1);
        let row = |truth: f64| LabelledRows {
            prediction_times_us: vec![60],
            trips: vec![7],
            truths: vec![truth.to_bits()],
            predicted: vec![1.5f64.to_bits()],
            delays_s: vec![30f64.to_bits()],
            segments: vec![vec![0]],
        };
        let partial = PerfPanePartial {
            monitor: "m".into(),
            size_us: HOUR,
            step_us: HOUR,
            pane_start_us: 0,
            partition: 0,
            scored_first_offset: Some(4),
            completions_first_offset: Some(9),
            pane: PerfPaneState {
                predictions: 1,
                segment_predictions: vec![(0, "74".into(), 1)],
                segment_names: vec![vec!["74".into()]],
                rows: row(2.0),
                unmatched_completions: 0,
            },
        };
        let payload = serde_json::to_vec(&partial).unwrap();
        assert_eq!(merger.apply(&partial, &payload, (0, 0)), Applied::Changed);
        assert_eq!(merger.apply(&partial, &payload, (0, 1)), Applied::Unchanged);
        // Rebuilt without the partition's first completion: the complete state stays.
        let mut partly = partial.clone();
        partly.completions_first_offset = Some(10);
        partly.pane.rows = LabelledRows::default();
        partly.pane.segment_names.clear();
        let payload = serde_json::to_vec(&partly).unwrap();
        assert_eq!(merger.apply(&partly, &payload, (0, 2)), Applied::Incomplete);
        // A row pointing past the segment names, or a column short of a row.
        let mut broken = partial.clone();
        broken.pane.rows.segments = vec![vec![1]];
        let payload = serde_json::to_vec(&broken).unwrap();
        assert_eq!(merger.apply(&broken, &payload, (0, 3)), Applied::Malformed);
        broken.pane.rows = row(3.0);
        broken.pane.rows.trips.clear();
        let payload = serde_json::to_vec(&broken).unwrap();
        assert_eq!(merger.apply(&broken, &payload, (0, 4)), Applied::Malformed);

        // Windows close on the performance watermark plus the label horizon.
        let progress = |performance_watermark_us| PartitionProgress {
            monitor: "m".into(),
            partition: 0,
            watermark_us: 10 * HOUR,
            idle: false,
            performance_watermark_us,
            performance_idle: false,
            instance: "w".into(),
        };
        merger.apply_progress(&progress(None));
        assert_eq!(merger.advance(), (i64::MIN, false), "no performance yet");
        merger.apply_progress(&progress(Some(2 * HOUR - 1)));
        let (watermark, flush) = merger.advance();
        assert!(merger.take_ready(watermark, flush).is_empty());
        merger.apply_progress(&progress(Some(2 * HOUR)));
        let (watermark, flush) = merger.advance();
        let ready = merger.take_ready(watermark, flush);
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].revision, ready[0].overall.labelled_rows), (1, 1));
        assert_eq!(ready[0].overall.metrics.as_ref().unwrap().mae, 0.5);
        assert_eq!(merger.commit_position(0, 99), 0);
        merger.evict(watermark);
        assert_eq!(merger.commit_position(0, 99), 99);
    }

    #[test]
    fn a_resent_partial_changes_nothing_and_late_ones_are_refused() {
        let spec = WindowSpec::parse("1h").unwrap();
        let mut merger = MergeOperator::new("m", &[spec], 1, HOUR);
        merger.set_partitions(1);
        let mut segmenters = Vec::new();
        let partial = PanePartial {
            monitor: "m".into(),
            size_us: HOUR,
            step_us: HOUR,
            pane_start_us: 0,
            partition: 0,
            first_offset: Some(10),
            pane: PaneState {
                rows: 2,
                max_published_ms: None,
                cells: vec![("fare".into(), 2)],
                columns: vec![CountsState {
                    nulls: 0,
                    bits: vec![1.5f64.to_bits()],
                    counts: vec![2],
                }],
                segments: Vec::new(),
            },
        };
        let payload = serde_json::to_vec(&partial).unwrap();
        assert_eq!(
            merger.apply_pane(&partial, &payload, (0, 0), &mut segmenters),
            Applied::Changed
        );
        let progress = |watermark_us| PartitionProgress {
            monitor: "m".into(),
            partition: 0,
            watermark_us,
            idle: false,
            performance_watermark_us: None,
            performance_idle: false,
            instance: "w".into(),
        };
        merger.apply_progress(&progress(HOUR));
        let (watermark, _) = merger.advance();
        let windows = merger.take_ready(watermark, false);
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].revision, 1);
        // A worker restarted: the same state again, later in the topic.
        assert_eq!(
            merger.apply_pane(&partial, &payload, (0, 5), &mut segmenters),
            Applied::Unchanged
        );
        assert!(merger.take_ready(watermark, false).is_empty());
        assert_eq!(merger.commit_position(0, 9), 0);
        // Rebuilt from later events only: the complete state stays.
        let mut partly = partial.clone();
        partly.first_offset = Some(11);
        partly.pane.rows = 1;
        assert_eq!(
            merger.apply_pane(
                &partly,
                &serde_json::to_vec(&partly).unwrap(),
                (0, 6),
                &mut segmenters
            ),
            Applied::Incomplete
        );
        // A restarted worker's watermark starts low: the merged one does not move back.
        merger.apply_progress(&progress(i64::MIN));
        assert_eq!(merger.advance().0, HOUR);
        // Past the update horizon the pane is gone and a changed partial is refused.
        merger.apply_progress(&progress(3 * HOUR));
        let (watermark, _) = merger.advance();
        merger.evict(watermark);
        assert_eq!(merger.partials(), 0);
        let mut changed = partial.clone();
        changed.pane.rows = 3;
        assert_eq!(
            merger.apply_pane(
                &changed,
                &serde_json::to_vec(&changed).unwrap(),
                (0, 6),
                &mut segmenters
            ),
            Applied::Late
        );
        // A pane of a partition whose own watermark passed its windows' horizon is refused
        // even while another partition holds the merged watermark back: a restarted worker
        // rebuilding an evicted pane from part of its events.
        let mut merger = MergeOperator::new("m", &[spec], 1, HOUR);
        merger.set_partitions(2);
        merger.apply_progress(&progress(5 * HOUR));
        assert_eq!(merger.advance().0, i64::MIN);
        assert_eq!(
            merger.apply_pane(
                &changed,
                &serde_json::to_vec(&changed).unwrap(),
                (0, 8),
                &mut segmenters
            ),
            Applied::Late
        );
        // Another monitor's partials are not ours.
        let mut other = partial;
        other.monitor = "other".into();
        assert_eq!(
            merger.apply_pane(&other, b"x", (0, 7), &mut segmenters),
            Applied::Foreign
        );
    }
}
