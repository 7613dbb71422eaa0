//! Event-time windows built from panes. Every event lands in exactly one pane of each
//! window spec (a `step`-long slice of time); a window of `size` combines its
//! `size / step` panes, so sliding windows never re-scan events. Panes hold exact value
//! counts, which merge without loss.
//!
//! A window is emitted when the watermark passes its end. Events for an emitted window
//! that arrive before `end + update_horizon` re-emit it with a higher revision; later
//! ones are dropped and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::logical_expr::Accumulator;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use streamwatch_common::events::WindowKind;

use crate::counts::ValueCountsAccumulator;
use crate::decode::DecodedEvent;
use crate::evaluate::{ColumnSample, WindowData};
use crate::segments::SegmentWindow;
use crate::{MonitorError, Result};
use streamwatch_stats::Distribution;

const MICROS_PER_SECOND: i64 = 1_000_000;
/// Event ids are remembered in buckets of this much event time, so whole buckets expire.
const DEDUP_BUCKET_US: i64 = 3600 * MICROS_PER_SECOND;

/// A window's size and step; equal for tumbling windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub size_us: i64,
    pub step_us: i64,
}

impl WindowSpec {
    /// Parses `1d` (tumbling) or `1d/1h` (sliding: size/step), with units s, m, h, d.
    pub fn parse(text: &str) -> Result<Self> {
        let (size, step) = match text.split_once('/') {
            Some((size, step)) => (parse_duration(size)?, parse_duration(step)?),
            None => {
                let size = parse_duration(text)?;
                (size, size)
            }
        };
        if size % step != 0 {
            return Err(MonitorError::Config(format!(
                "window {text:?}: the size must be a multiple of the step"
            )));
        }
        Ok(Self {
            size_us: size,
            step_us: step,
        })
    }

    pub fn kind(&self) -> WindowKind {
        if self.size_us == self.step_us {
            WindowKind::Tumbling
        } else {
            WindowKind::Sliding
        }
    }

    fn panes_per_window(&self) -> i64 {
        self.size_us / self.step_us
    }

    /// The pane holding an event time.
    pub(crate) fn pane_of(&self, time_us: i64) -> i64 {
        time_us.div_euclid(self.step_us)
    }

    /// Start of the pane holding an event time (also the start of the last window holding it).
    pub(crate) fn pane_start(&self, time_us: i64) -> i64 {
        self.pane_of(time_us) * self.step_us
    }

    /// Starts of every window that contains a pane.
    pub(crate) fn windows_of_pane(&self, pane: i64) -> impl Iterator<Item = i64> + '_ {
        (0..self.panes_per_window()).map(move |j| (pane - j) * self.step_us)
    }
}

/// Parses `90s`, `15m`, `1h`, `1d` into microseconds.
pub fn parse_duration(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| {
        MonitorError::Config(format!(
            "duration {text:?} must look like 30s, 15m, 1h or 1d"
        ))
    })?;
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(MonitorError::Config(format!(
                "duration {text:?}: unknown unit {unit:?} (use s, m, h or d)"
            )))
        }
    };
    if number <= 0 {
        return Err(MonitorError::Config(format!(
            "duration {text:?} must be positive"
        )));
    }
    Ok(number * seconds * MICROS_PER_SECOND)
}

/// Events decoded from one poll of the consumer, in columnar form.
#[derive(Debug, Default)]
pub struct MicroBatch {
    times: Vec<i64>,
    /// Kafka timestamps (milliseconds; `i64::MIN` when a message has none).
    published_ms: Vec<i64>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Each event's place among the events of its message (0 unless the message is a batch).
    indexes: Vec<u32>,
    /// Per row, the index of its cells (column id, missing) in `shapes`: events mostly
    /// carry the same fields, so a run of rows with one shape is counted once.
    row_shapes: Vec<u32>,
    /// The distinct cell lists of this batch's rows, and where each is in `shapes`.
    shapes: Vec<Box<[(u32, bool)]>>,
    shape_ids: FxHashMap<Box<[(u32, bool)]>, u32>,
    /// One more than the highest column id of any cell in the batch.
    cell_columns: usize,
    /// Per counted column, its values, NaN where missing (value counts count NaN as
    /// missing): the Arrow arrays built from them need no validity bitmap.
    values: Vec<Vec<f64>>,
    /// Per row, its segment id in each drift dimension (row-major).
    segments: Vec<u32>,
}

impl MicroBatch {
    pub fn push(&mut self, event: &DecodedEvent, partition: i32, offset: i64) {
        self.push_segmented(event, &[], partition, offset);
    }

    /// Sets the Kafka timestamp (milliseconds) of the event pushed last.
    pub fn set_published_ms(&mut self, millis: i64) {
        if let Some(last) = self.published_ms.last_mut() {
            *last = millis;
        }
    }

    /// Sets the place of the event pushed last among the events of its message (a batch).
    pub fn set_index(&mut self, index: u32) {
        if let Some(last) = self.indexes.last_mut() {
            *last = index;
        }
    }

    /// An event with its segment id per drift dimension (as many as the operator has).
    pub fn push_segmented(
        &mut self,
        event: &DecodedEvent,
        segments: &[u32],
        partition: i32,
        offset: i64,
    ) {
        self.segments.extend_from_slice(segments);
        self.published_ms.push(i64::MIN);
        if self.values.len() < event.values.len() {
            self.values.resize_with(event.values.len(), Vec::new);
        }
        self.times.push(event.event_time_us);
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.indexes.push(0);
        let shape = self.shape_of_cells(&event.cells);
        self.row_shapes.push(shape);
        for (column, value) in self.values.iter_mut().zip(&event.values) {
            column.push(value.unwrap_or(f64::NAN));
        }
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    pub fn clear(&mut self) {
        self.times.clear();
        self.published_ms.clear();
        self.partitions.clear();
        self.offsets.clear();
        self.indexes.clear();
        self.row_shapes.clear();
        self.shapes.clear();
        self.shape_ids.clear();
        self.cell_columns = 0;
        self.values.iter_mut().for_each(Vec::clear);
        self.segments.clear();
    }

    /// The shape id of a row with `cells`, added if the batch has not seen it yet.
    fn shape_of_cells(&mut self, cells: &[(u32, bool)]) -> u32 {
        if let Some(&last) = self.row_shapes.last() {
            if *self.shapes[last as usize] == *cells {
                return last;
            }
        }
        if let Some(&known) = self.shape_ids.get(cells) {
            return known;
        }
        let id = self.shapes.len() as u32;
        self.shapes.push(cells.into());
        self.shape_ids.insert(cells.into(), id);
        if let Some(highest) = cells.iter().map(|&(column, _)| column as usize + 1).max() {
            self.cell_columns = self.cell_columns.max(highest);
        }
        id
    }

    fn cells_of(&self, row: usize) -> &[(u32, bool)] {
        &self.shapes[self.row_shapes[row] as usize]
    }

    /// The rows `start..end` as runs of one shape: (its cells, rows in the run).
    fn cell_runs(&self, start: usize, end: usize) -> impl Iterator<Item = (&[(u32, bool)], u64)> {
        self.row_shapes[start..end]
            .chunk_by(|a, b| a == b)
            .map(|run| (&*self.shapes[run[0] as usize], run.len() as u64))
    }
}

/// One pane's contents.
#[derive(Debug, Default)]
pub(crate) struct Pane {
    pub(crate) rows: u64,
    /// Latest Kafka timestamp of the pane's events (milliseconds), `i64::MIN` if none.
    pub(crate) max_published_ms: i64,
    /// Per data-column id: seen in this pane at all, and cells that were not missing.
    pub(crate) seen: Vec<bool>,
    pub(crate) present: Vec<u64>,
    pub(crate) columns: Vec<ValueCountsAccumulator>,
    /// Lowest offset per partition of the events in this pane: the consumer may not
    /// commit past it while the pane is kept.
    first_offsets: FxHashMap<i32, i64>,
    /// The pane's rows of each segment, by (drift dimension, segment id).
    pub(crate) segments: FxHashMap<(usize, u32), Pane>,
}

impl Pane {
    pub(crate) fn new(columns: usize) -> Self {
        Self {
            columns: (0..columns)
                .map(|_| ValueCountsAccumulator::default())
                .collect(),
            max_published_ms: i64::MIN,
            ..Self::default()
        }
    }

    /// Counts the cells of `rows` rows that all have `cells`, whose column ids are below
    /// `columns`: the column table grows once, then each cell is two stores.
    fn add_cells(&mut self, cells: &[(u32, bool)], rows: u64, columns: usize) {
        self.ensure_columns(columns);
        for &(id, missing) in cells {
            self.seen[id as usize] = true;
            self.present[id as usize] += if missing { 0 } else { rows };
        }
    }

    /// Lowers the first offset kept for `partition` to `offset`.
    fn note_offset(&mut self, partition: i32, offset: i64) {
        let first = self.first_offsets.entry(partition).or_insert(offset);
        *first = (*first).min(offset);
    }

    /// The lowest offset of the pane's events from `partition`.
    pub(crate) fn first_offset(&self, partition: i32) -> Option<i64> {
        self.first_offsets.get(&partition).copied()
    }

    /// Marks a data column seen, with `present` more cells that were not missing.
    pub(crate) fn add_column_cells(&mut self, id: u32, present: u64) {
        let id = id as usize;
        self.ensure_columns(id + 1);
        self.seen[id] = true;
        self.present[id] += present;
    }

    /// Makes room in the cell tables for the column ids below `columns`.
    fn ensure_columns(&mut self, columns: usize) {
        if columns > self.seen.len() {
            self.seen.resize(columns, false);
            self.present.resize(columns, 0);
        }
    }

    /// Adds one row of `batch` to the sub-pane of each of its segments.
    fn add_to_segments(
        &mut self,
        batch: &MicroBatch,
        row: usize,
        dimensions: usize,
        cell_columns: usize,
    ) {
        let columns = self.columns.len();
        for dimension in 0..dimensions {
            let segment = batch.segments[row * dimensions + dimension];
            let sub = self
                .segments
                .entry((dimension, segment))
                .or_insert_with(|| Pane::new(columns));
            for (counts, values) in sub.columns.iter_mut().zip(&batch.values) {
                counts.counts_mut().add(Some(values[row]));
            }
            sub.add_cells(batch.cells_of(row), 1, cell_columns);
            sub.rows += 1;
        }
    }
}

/// A window ready to be reported.
#[derive(Debug)]
pub struct ReadyWindow {
    pub spec: WindowSpec,
    pub start_us: i64,
    pub revision: u32,
    pub data: WindowData,
    /// The window's rows per segment of each drift dimension.
    pub segments: Vec<SegmentWindow>,
    /// Latest Kafka timestamp (milliseconds) of the window's events, if they carry one.
    pub last_published_ms: Option<i64>,
}

#[derive(Debug)]
struct SpecState {
    spec: WindowSpec,
    panes: BTreeMap<i64, Pane>,
    /// Windows with new events not yet reported.
    pending: BTreeSet<i64>,
    /// Last reported revision of windows still inside their update horizon.
    revisions: BTreeMap<i64, u32>,
    /// Panes changed since they were last exported (only when exporting panes).
    dirty: BTreeSet<i64>,
}

/// What the watermark knows of one partition.
#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// Highest event time seen (`i64::MIN` before the first event).
    max_time_us: i64,
    /// When the partition last delivered an event, or was assigned.
    last_seen: Instant,
    /// The consumer has read everything the partition holds (partition EOF).
    caught_up: bool,
    /// An end-of-stream marker ended the partition after its last event.
    ended: bool,
}

/// Tracks the watermark: the minimum over active partitions of (highest event time seen
/// minus the allowed lateness). It never moves back.
///
/// A partition is idle, and stops holding the watermark back, only when the consumer has
/// caught up with it *and* it delivered nothing for the idle timeout: a partition with a
/// backlog is never idle, however long the consumer is busy elsewhere. While other
/// partitions of the topic are delivering, a caught-up partition needs ten idle timeouts of
/// silence (an upstream stage fills its partitions one after the other). A caught-up
/// partition that an end-of-stream marker ended is idle at once. An assigned partition that
/// has delivered nothing yet holds the watermark at its start.
/// Partitions are keyed by `K`: the partition number, or (topic, partition) for a monitor
/// reading several topics.
#[derive(Debug)]
pub struct Watermarks<K = i32> {
    partitions: FxHashMap<K, PartitionClock>,
    lateness_us: i64,
    idle_timeout: Duration,
    current: i64,
    /// When any partition last delivered an event.
    last_activity: Option<Instant>,
    /// When the partitions started delivering after a quiet spell (no event for the idle
    /// timeout): silence before that does not count against a partition.
    busy_since: Option<Instant>,
}

/// While other partitions of the topic deliver events, a silent partition is idle only after
/// this many idle timeouts: an upstream stage that has just started (or restarted behind a
/// backlog) fills its partitions one after the other, and the silent ones will get events soon.
const BUSY_TOPIC_IDLE_FACTOR: u32 = 10;

impl<K: Copy + Eq + std::hash::Hash> Watermarks<K> {
    pub fn new(lateness_us: i64, idle_timeout: Duration) -> Self {
        Self {
            partitions: FxHashMap::default(),
            lateness_us,
            idle_timeout,
            current: i64::MIN,
            last_activity: None,
            busy_since: None,
        }
    }

    /// Registers a partition assigned to this instance (no-op when known).
    pub fn assign(&mut self, partition: K, now: Instant) {
        self.partitions.entry(partition).or_insert(PartitionClock {
            max_time_us: i64::MIN,
            last_seen: now,
            caught_up: false,
            ended: false,
        });
    }

    pub fn observe(&mut self, partition: K, time_us: i64, now: Instant) {
        self.assign(partition, now);
        let clock = self.partitions.get_mut(&partition).expect("just assigned");
        clock.max_time_us = clock.max_time_us.max(time_us);
        clock.last_seen = now;
        clock.caught_up = false;
        clock.ended = false;
        if self
            .last_activity
            .is_none_or(|at| now.duration_since(at) >= self.idle_timeout)
        {
            self.busy_since = Some(now);
        }
        self.last_activity = Some(now);
    }

    /// The consumer reached the end of a partition.
    pub fn reached_end(&mut self, partition: K, now: Instant) {
        self.assign(partition, now);
        if let Some(clock) = self.partitions.get_mut(&partition) {
            clock.caught_up = true;
        }
    }

    /// An end-of-stream marker ended the partition (`streamwatch_common::end_of_stream`):
    /// once caught up it is idle at once, without the idle timeout. Its next event undoes it.
    pub fn end_of_stream(&mut self, partition: K, now: Instant) {
        self.assign(partition, now);
        if let Some(clock) = self.partitions.get_mut(&partition) {
            clock.ended = true;
        }
    }

    /// Forgets partitions this instance no longer owns (after a rebalance).
    pub fn retain_partitions(&mut self, owned: impl Fn(K) -> bool) {
        self.partitions.retain(|p, _| owned(*p));
    }

    fn is_idle(&self, clock: &PartitionClock, now: Instant) -> bool {
        let silent = now.duration_since(clock.last_seen);
        let topic_quiet = self
            .last_activity
            .is_none_or(|at| now.duration_since(at) >= self.idle_timeout);
        // Silence while the others deliver, counted from when they started to.
        let silent_while_busy = match self.busy_since {
            Some(since) => now.duration_since(clock.last_seen.max(since)),
            None => silent,
        };
        clock.caught_up
            && (clock.ended
                || silent >= self.idle_timeout
                    && (topic_quiet
                        || silent_while_busy >= self.idle_timeout * BUSY_TOPIC_IDLE_FACTOR))
    }

    /// Recomputes the watermark from the partitions that are not idle.
    pub fn advance(&mut self, now: Instant) -> i64 {
        let active = self
            .partitions
            .values()
            .filter(|clock| !self.is_idle(clock, now))
            .map(|clock| clock.max_time_us.saturating_sub(self.lateness_us))
            .min();
        if let Some(candidate) = active {
            self.current = self.current.max(candidate);
        }
        self.current
    }

    /// One partition's own watermark (its highest event time minus the allowed lateness),
    /// `None` before it delivered an event.
    pub fn partition_watermark(&self, partition: K) -> Option<i64> {
        self.partitions
            .get(&partition)
            .filter(|clock| clock.max_time_us != i64::MIN)
            .map(|clock| clock.max_time_us.saturating_sub(self.lateness_us))
    }

    /// True when the partition is known and idle (see [`Watermarks`]).
    pub fn is_partition_idle(&self, partition: K, now: Instant) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|clock| self.is_idle(clock, now))
    }

    /// The partitions followed.
    pub fn partitions(&self) -> impl Iterator<Item = K> + '_ {
        self.partitions.keys().copied()
    }

    /// True when this instance has partitions to follow.
    pub fn has_partitions(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// True when partitions are known and every one of them is idle.
    pub fn all_idle(&self, now: Instant) -> bool {
        !self.partitions.is_empty()
            && self
                .partitions
                .values()
                .all(|clock| self.is_idle(clock, now))
    }

    pub fn current(&self) -> i64 {
        self.current
    }
}

/// What one micro-batch did, counted per (event, window spec) assignment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub assigned: u64,
    /// Assignments dropped because every window of the pane was past its update horizon.
    pub late_dropped: u64,
    /// The dropped assignments, so they can be reported per window.
    pub late: Vec<LateAssignment>,
}

/// An event dropped from one window spec because it came after the update horizon of every
/// window of that spec containing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateAssignment {
    pub spec: WindowSpec,
    pub partition: i32,
    pub offset: i64,
    /// The event's place among the events of its message.
    pub index: u32,
    pub time_us: i64,
}

/// What an id given to [`WindowOperator::is_duplicate`] names: a trip's completion is not a
/// repeat of its scored event, so the two have separate key spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Event,
    Completion,
}

/// All window state of a monitor.
#[derive(Debug)]
pub struct WindowOperator {
    specs: Vec<SpecState>,
    columns: usize,
    /// Drift dimensions: each row of a micro-batch carries one segment id per dimension.
    segment_dimensions: usize,
    horizon_us: i64,
    scratch: Vec<ArrayRef>,
    /// Hashes of the event ids seen, bucketed by event-time hour, for deduplication.
    seen_ids: BTreeMap<i64, FxHashSet<u64>>,
    /// Panes are exported to a merger (`take_partials`) instead of reported as windows.
    exports_panes: bool,
}

impl WindowOperator {
    /// `columns` is the number of monitored columns; `horizon_us` how long after its end a
    /// window still accepts late events.
    pub fn new(specs: &[WindowSpec], columns: usize, horizon_us: i64) -> Self {
        Self {
            specs: specs
                .iter()
                .map(|spec| SpecState {
                    spec: *spec,
                    panes: BTreeMap::new(),
                    pending: BTreeSet::new(),
                    revisions: BTreeMap::new(),
                    dirty: BTreeSet::new(),
                })
                .collect(),
            columns,
            segment_dimensions: 0,
            horizon_us,
            scratch: Vec::new(),
            seen_ids: BTreeMap::new(),
            exports_panes: false,
        }
    }

    /// Tracks which panes changed, for [`WindowOperator::take_partials`].
    pub fn exporting_panes(mut self) -> Self {
        self.exports_panes = true;
        self
    }

    /// Keeps every window's rows also per segment of `dimensions` drift dimensions (the
    /// micro-batches then carry as many segment ids per row).
    pub fn with_segment_dimensions(mut self, dimensions: usize) -> Self {
        self.segment_dimensions = dimensions;
        self
    }

    /// Adds a micro-batch; `watermark` is the watermark before the batch.
    pub fn ingest(&mut self, batch: &MicroBatch, watermark: i64) -> IngestStats {
        let mut stats = IngestStats::default();
        if batch.is_empty() {
            return stats;
        }
        // Arrow arrays of the monitored columns, sliced per pane run for the accumulators.
        self.scratch.clear();
        for column in 0..self.columns {
            let values = batch.values.get(column).map(Vec::as_slice).unwrap_or(&[]);
            self.scratch
                .push(Arc::new(Float64Array::from(values.to_vec())) as ArrayRef);
        }
        debug_assert_eq!(batch.segments.len(), batch.len() * self.segment_dimensions);
        let horizon = self.horizon_us;
        let dimensions = self.segment_dimensions;
        let cell_columns = batch.cell_columns;
        for state in &mut self.specs {
            let spec = state.spec;
            let mut row = 0;
            while row < batch.len() {
                let pane_index = spec.pane_of(batch.times[row]);
                let mut end = row + 1;
                while end < batch.len() && spec.pane_of(batch.times[end]) == pane_index {
                    end += 1;
                }
                let pane_start = pane_index * spec.step_us;
                if pane_start
                    .saturating_add(spec.size_us)
                    .saturating_add(horizon)
                    <= watermark
                {
                    stats.late_dropped += (end - row) as u64;
                    stats.late.extend((row..end).map(|r| LateAssignment {
                        spec,
                        partition: batch.partitions[r],
                        offset: batch.offsets[r],
                        index: batch.indexes[r],
                        time_us: batch.times[r],
                    }));
                    row = end;
                    continue;
                }
                let pane = state
                    .panes
                    .entry(pane_index)
                    .or_insert_with(|| Pane::new(self.columns));
                for (accumulator, array) in pane.columns.iter_mut().zip(&self.scratch) {
                    accumulator
                        .update_batch(&[array.slice(row, end - row)])
                        .expect("value_counts accepts Float64 arrays");
                }
                for (cells, rows) in batch.cell_runs(row, end) {
                    pane.add_cells(cells, rows, cell_columns);
                }
                if let Some(&latest) = batch.published_ms[row..end].iter().max() {
                    pane.max_published_ms = pane.max_published_ms.max(latest);
                }
                if dimensions > 0 {
                    for r in row..end {
                        pane.add_to_segments(batch, r, dimensions, cell_columns);
                    }
                }
                // A run's events mostly come from one partition: one table update per
                // stretch of a partition instead of one per event.
                let (mut partition, mut lowest) = (batch.partitions[row], batch.offsets[row]);
                for r in row + 1..end {
                    if batch.partitions[r] == partition {
                        lowest = lowest.min(batch.offsets[r]);
                    } else {
                        pane.note_offset(partition, lowest);
                        (partition, lowest) = (batch.partitions[r], batch.offsets[r]);
                    }
                }
                pane.note_offset(partition, lowest);
                pane.rows += (end - row) as u64;
                stats.assigned += (end - row) as u64;
                if self.exports_panes {
                    state.dirty.insert(pane_index);
                }
                for start in spec.windows_of_pane(pane_index) {
                    if start.saturating_add(spec.size_us).saturating_add(horizon) > watermark {
                        state.pending.insert(start);
                    }
                }
                row = end;
            }
        }
        stats
    }

    /// Windows whose end the watermark has passed (or all pending ones when `flush_all`),
    /// with their contents; they are marked reported.
    pub fn take_ready(&mut self, watermark: i64, flush_all: bool) -> Vec<ReadyWindow> {
        let mut ready = Vec::new();
        for state in &mut self.specs {
            let spec = state.spec;
            let starts: Vec<i64> = state
                .pending
                .iter()
                .copied()
                .filter(|start| flush_all || start.saturating_add(spec.size_us) <= watermark)
                .collect();
            for start in starts {
                state.pending.remove(&start);
                let first_pane = spec.pane_of(start);
                let panes: Vec<&Pane> = state
                    .panes
                    .range(first_pane..first_pane + spec.panes_per_window())
                    .map(|(_, pane)| pane)
                    .collect();
                let revision = state.revisions.get(&start).copied().unwrap_or(0) + 1;
                if let Some(window) = assemble_window(spec, start, revision, &panes, self.columns) {
                    state.revisions.insert(start, revision);
                    ready.push(window);
                }
            }
        }
        ready
    }

    /// Passes each pane that changed since it was last exported, once the watermark has
    /// passed its end (every changed one when `flush`), to `export`; windows the watermark
    /// closed stop counting as open. For a worker monitor whose panes a merger combines.
    pub(crate) fn take_partials(
        &mut self,
        watermark: i64,
        flush: bool,
        mut export: impl FnMut(WindowSpec, i64, &Pane),
    ) {
        for state in &mut self.specs {
            let spec = state.spec;
            let done: Vec<i64> = state
                .dirty
                .iter()
                .copied()
                .filter(|pane| flush || (pane + 1).saturating_mul(spec.step_us) <= watermark)
                .collect();
            for pane in done {
                state.dirty.remove(&pane);
                if let Some(contents) = state.panes.get(&pane) {
                    export(spec, pane * spec.step_us, contents);
                }
            }
            state
                .pending
                .retain(|start| !flush && start.saturating_add(spec.size_us) > watermark);
        }
    }

    /// Remembers an event id; true if it was seen before (a replay or a retried delivery),
    /// in which case the event must not be counted again. Ids are remembered as long as
    /// any window could still take their event.
    pub fn is_duplicate(&mut self, id: &str, kind: IdKind, time_us: i64) -> bool {
        let hash = {
            let mut hasher = FxHasher::default();
            id.hash(&mut hasher);
            if kind == IdKind::Completion {
                hasher.write_u8(1);
            }
            hasher.finish()
        };
        !self
            .seen_ids
            .entry(time_us.div_euclid(DEDUP_BUCKET_US))
            .or_default()
            .insert(hash)
    }

    /// Drops panes, revisions and remembered ids no window can need any more.
    pub fn evict(&mut self, watermark: i64) {
        let horizon = self.horizon_us;
        let longest = self.specs.iter().map(|s| s.spec.size_us).max().unwrap_or(0);
        self.seen_ids.retain(|bucket, _| {
            (bucket + 1)
                .saturating_mul(DEDUP_BUCKET_US)
                .saturating_add(longest)
                .saturating_add(horizon)
                > watermark
        });
        for state in &mut self.specs {
            let spec = state.spec;
            let closed = |start: i64| {
                start.saturating_add(spec.size_us).saturating_add(horizon) <= watermark
            };
            state.panes.retain(|pane, _| !closed(pane * spec.step_us));
            state.dirty.retain(|pane| !closed(pane * spec.step_us));
            state.revisions.retain(|start, _| !closed(*start));
        }
    }

    /// Windows with data that have not been reported in their latest state.
    pub fn open_windows(&self) -> usize {
        self.specs.iter().map(|s| s.pending.len()).sum()
    }

    /// Panes held in memory.
    pub fn panes(&self) -> usize {
        self.specs.iter().map(|s| s.panes.len()).sum()
    }

    /// The offset the consumer may commit for `partition`: the lowest offset any kept pane
    /// still needs, or `next` (one past the last consumed) when none does.
    pub fn commit_position(&self, partition: i32, next: i64) -> i64 {
        self.specs
            .iter()
            .flat_map(|s| s.panes.values())
            .filter_map(|pane| pane.first_offsets.get(&partition).copied())
            .min()
            .map_or(next, |lowest| lowest.min(next))
    }
}

/// A window from its panes (in any order), with its rows per segment; `None` when it has
/// no rows.
pub(crate) fn assemble_window(
    spec: WindowSpec,
    start_us: i64,
    revision: u32,
    panes: &[&Pane],
    columns: usize,
) -> Option<ReadyWindow> {
    let data = merge_panes(panes.iter().copied(), columns);
    if data.row_count == 0 {
        return None;
    }
    let keys: BTreeSet<(usize, u32)> = panes
        .iter()
        .flat_map(|p| p.segments.keys().copied())
        .collect();
    let segments = keys
        .into_iter()
        .map(|key| SegmentWindow {
            dimension: key.0,
            segment: key.1,
            data: merge_panes(panes.iter().filter_map(|p| p.segments.get(&key)), columns),
        })
        .collect();
    Some(ReadyWindow {
        spec,
        start_us,
        revision,
        data,
        segments,
        last_published_ms: panes
            .iter()
            .map(|p| p.max_published_ms)
            .max()
            .filter(|ms| *ms != i64::MIN),
    })
}

fn merge_panes<'a>(panes: impl Iterator<Item = &'a Pane>, columns: usize) -> WindowData {
    let mut rows = 0u64;
    let mut seen: Vec<bool> = Vec::new();
    let mut present: Vec<u64> = Vec::new();
    let mut singles: Vec<Vec<f64>> = vec![Vec::new(); columns];
    let mut pairs: Vec<Vec<(f64, u64)>> = vec![Vec::new(); columns];
    let mut nulls = vec![0u64; columns];
    for pane in panes {
        rows += pane.rows;
        if seen.len() < pane.seen.len() {
            seen.resize(pane.seen.len(), false);
            present.resize(pane.seen.len(), 0);
        }
        for (id, was_seen) in pane.seen.iter().enumerate() {
            seen[id] |= was_seen;
            present[id] += pane.present[id];
        }
        for (column, accumulator) in pane.columns.iter().enumerate() {
            // Concatenated pane counts; the distribution sorts them and adds up duplicates.
            singles[column].extend_from_slice(accumulator.counts().pending_singles());
            pairs[column].extend(accumulator.counts().counted());
            nulls[column] += accumulator.counts().nulls();
        }
    }
    let number_of_columns = seen.iter().filter(|s| **s).count() as u64;
    let present_cells: u64 = seen
        .iter()
        .zip(&present)
        .filter(|(s, _)| **s)
        .map(|(_, p)| p)
        .sum();
    WindowData {
        row_count: rows,
        number_of_columns: number_of_columns as u32,
        number_of_missing_values: rows * number_of_columns - present_cells,
        // Streamed values are JSON numbers, read as floats (pandas' float dtype).
        columns: singles
            .into_iter()
            .zip(pairs)
            .zip(nulls)
            .map(|((singles, pairs), nulls)| ColumnSample {
                values: Distribution::from_singles_and_counts(singles, pairs),
                nulls,
                integer_dtype: false,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::ValueCounts;

    const HOUR: i64 = 3600 * MICROS_PER_SECOND;

    fn event(time_us: i64, value: f64, cells: &[(u32, bool)]) -> DecodedEvent {
        DecodedEvent {
            event_time_us: time_us,
            trip_id: None,
            values: vec![Some(value)],
            cells: cells.to_vec(),
        }
    }

    fn batch(events: &[(i64, f64)], first_offset: i64) -> MicroBatch {
        let mut batch = MicroBatch::default();
        for (i, (time, value)) in events.iter().enumerate() {
            batch.push(
                &event(*time, *value, &[(0, false), (1, *value < 0.0)]),
                0,
                first_offset + i as i64,
            );
        }
        batch
    }

    #[test]
    fn parses_window_specs() {
        assert_eq!(
            WindowSpec::parse("1d").unwrap(),
            WindowSpec {
                size_us: 24 * HOUR,
                step_us: 24 * HOUR
            }
        );
        let sliding = WindowSpec::parse("1d/1h").unwrap();
        assert_eq!(sliding.kind(), WindowKind::Sliding);
        assert_eq!(sliding.panes_per_window(), 24);
        assert!(WindowSpec::parse("1d/7h").is_err());
        assert!(WindowSpec::parse("1w").is_err());
        assert!(WindowSpec::parse("0s").is_err());
    }

    #[test]
    fn every_event_lands_in_the_windows_containing_it() {
        let spec = WindowSpec::parse("3h/1h").unwrap();
        for time in [-5 * HOUR + 17, 0, 1, HOUR - 1, HOUR, 7 * HOUR + 12_345] {
            let starts: Vec<i64> = spec.windows_of_pane(spec.pane_of(time)).collect();
            assert_eq!(starts.len(), 3);
            for start in &starts {
                assert!(
                    *start <= time && time < start + spec.size_us,
                    "{time} not in [{start}, +3h)"
                );
            }
            // And no other window contains it.
            let all: Vec<i64> = (-10..10)
                .map(|k| k * HOUR)
                .filter(|s| *s <= time && time < s + spec.size_us)
                .collect();
            let mut sorted = starts.clone();
            sorted.sort();
            assert_eq!(sorted, all);
        }
    }

    #[test]
    fn tumbling_windows_close_on_the_watermark_and_reemit_late_events() {
        let spec = WindowSpec::parse("1h").unwrap();
        let mut op = WindowOperator::new(&[spec], 1, HOUR);
        let stats = op.ingest(
            &batch(&[(10, 1.0), (20, -2.0), (HOUR + 5, 3.0)], 0),
            i64::MIN,
        );
        assert_eq!(
            stats,
            IngestStats {
                assigned: 3,
                late_dropped: 0,
                late: vec![]
            }
        );
        // The watermark has not passed the first hour's end yet.
        assert!(op.take_ready(HOUR - 1, false).is_empty());
        let ready = op.take_ready(HOUR, false);
        assert_eq!(ready.len(), 1);
        let first = &ready[0];
        assert_eq!(
            (first.start_us, first.revision, first.data.row_count),
            (0, 1, 2)
        );
        assert_eq!(first.data.number_of_columns, 2);
        assert_eq!(first.data.number_of_missing_values, 1);
        let d = &first.data.columns[0].values;
        assert_eq!(d.values(), &[-2.0, 1.0]);

        // A late event inside the update horizon re-emits the window as revision 2.
        op.ingest(&batch(&[(30, 4.0)], 3), HOUR + 10);
        let ready = op.take_ready(HOUR + 10, false);
        assert_eq!(ready.len(), 1);
        assert_eq!(
            (
                ready[0].start_us,
                ready[0].revision,
                ready[0].data.row_count
            ),
            (0, 2, 3)
        );

        // Past the horizon the pane is evicted and a late event is dropped.
        op.evict(2 * HOUR);
        let stats = op.ingest(&batch(&[(40, 5.0)], 4), 2 * HOUR);
        assert_eq!(
            stats,
            IngestStats {
                assigned: 0,
                late_dropped: 1,
                late: vec![LateAssignment {
                    spec,
                    partition: 0,
                    offset: 4,
                    index: 0,
                    time_us: 40
                }]
            }
        );
        // The second hour is still open; a flush emits it early.
        let flushed = op.take_ready(2 * HOUR - 1, true);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].start_us, HOUR);
    }

    #[test]
    fn sliding_windows_equal_a_from_scratch_computation() {
        let spec = WindowSpec::parse("3h/1h").unwrap();
        let events: Vec<(i64, f64)> = (0..200)
            .map(|i| (i * 97 * MICROS_PER_SECOND * 7, (i % 13) as f64))
            .collect();
        let mut op = WindowOperator::new(&[spec], 1, 0);
        op.ingest(&batch(&events, 0), i64::MIN);
        let ready = op.take_ready(i64::MAX, false);
        assert!(!ready.is_empty());
        for window in ready {
            let mut expected = ValueCounts::default();
            let mut rows = 0;
            for (time, value) in &events {
                if *time >= window.start_us && *time < window.start_us + spec.size_us {
                    expected.add(Some(*value));
                    rows += 1;
                }
            }
            assert_eq!(window.data.row_count, rows);
            assert_eq!(window.data.columns[0].values, expected.distribution());
        }
    }

    #[test]
    fn out_of_order_input_gives_the_same_windows() {
        let spec = WindowSpec::parse("2h/1h").unwrap();
        let events: Vec<(i64, f64)> = (0..100)
            .map(|i| (i * 211 * MICROS_PER_SECOND * 5, (i % 7) as f64))
            .collect();
        let mut shuffled = events.clone();
        shuffled.reverse();
        shuffled.swap(3, 50);
        let run = |input: &[(i64, f64)]| {
            let mut op = WindowOperator::new(&[spec], 1, 0);
            op.ingest(&batch(input, 0), i64::MIN);
            op.take_ready(i64::MAX, false)
                .into_iter()
                .map(|w| {
                    (
                        w.start_us,
                        w.data.row_count,
                        w.data.columns[0].values.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&events), run(&shuffled));
    }

    #[test]
    fn duplicate_ids_are_recognised_until_their_windows_expire() {
        let spec = WindowSpec::parse("1h").unwrap();
        let mut op = WindowOperator::new(&[spec], 1, 0);
        assert!(!op.is_duplicate("a:1", IdKind::Event, 10));
        assert!(!op.is_duplicate("a:2", IdKind::Event, 10));
        assert!(op.is_duplicate("a:1", IdKind::Event, 10));
        // The trip's completion is no repeat of it, but its second copy is.
        assert!(!op.is_duplicate("a:1", IdKind::Completion, 10));
        assert!(op.is_duplicate("a:1", IdKind::Completion, 10));
        assert!(
            !op.is_duplicate("a:1", IdKind::Event, 2 * HOUR),
            "another time is another bucket"
        );
        op.evict(2 * HOUR);
        assert!(
            !op.is_duplicate("a:1", IdKind::Event, 10),
            "forgotten once no window can take it"
        );
        assert!(op.is_duplicate("a:1", IdKind::Event, 2 * HOUR));
    }

    #[test]
    fn commit_position_waits_for_kept_panes() {
        let spec = WindowSpec::parse("1h").unwrap();
        let mut op = WindowOperator::new(&[spec], 1, 0);
        op.ingest(&batch(&[(10, 1.0), (HOUR + 1, 2.0)], 100), i64::MIN);
        assert_eq!(op.commit_position(0, 102), 100);
        op.take_ready(HOUR, false);
        op.evict(HOUR);
        assert_eq!(op.commit_position(0, 102), 101);
        assert_eq!(op.commit_position(7, 5), 5);
    }

    #[test]
    fn watermark_waits_for_partitions_with_a_backlog() {
        let start = Instant::now();
        let later = |s: u64| start + Duration::from_secs(s);
        let mut w = Watermarks::new(10, Duration::from_secs(5));
        w.assign(2, start);
        w.observe(0, 1_000, start);
        w.observe(1, 500, start);
        // Partition 2 was assigned but has delivered nothing: it holds the watermark.
        assert_eq!(w.advance(start), i64::MIN);
        w.reached_end(2, start);
        assert_eq!(w.advance(later(1)), i64::MIN, "not idle before the timeout");
        assert_eq!(w.advance(later(6)), 490);
        // Partition 1 is silent but not caught up (a backlog): it still counts.
        w.observe(0, 2_000, later(7));
        assert_eq!(w.advance(later(20)), 490);
        w.reached_end(1, later(20));
        w.reached_end(0, later(20));
        // Everything caught up and silent: the watermark stays, and the stream is idle.
        assert_eq!(w.advance(later(21)), 490);
        assert!(w.all_idle(later(21)));
        // Partition 0 delivers again after a quiet spell: while the topic is busy, caught-up
        // partition 1 (silent for 30 s, but the topic was quiet) still counts — upstream may be
        // filling the partitions one by one.
        for t in (30..=68).step_by(2) {
            w.observe(0, 3_000, later(t));
        }
        assert_eq!(w.advance(later(68)), 490, "busy for 38 s only");
        // After ten idle timeouts of silence while the others deliver it is idle even so.
        for t in (70..=80).step_by(2) {
            w.observe(0, 3_000, later(t));
        }
        assert_eq!(w.advance(later(80)), 2_990);
        // It never moves back.
        w.observe(3, 100, later(81));
        assert_eq!(w.advance(later(81)), 2_990);
        assert!(!w.all_idle(later(81)));
        w.reached_end(0, later(81));
        w.reached_end(3, later(81));
        assert!(w.all_idle(later(90)));
    }

    #[test]
    fn an_ended_partition_is_idle_once_caught_up_until_its_next_event() {
        let start = Instant::now();
        let later = |s: u64| start + Duration::from_secs(s);
        let mut w = Watermarks::new(10, Duration::from_secs(60));
        w.observe(0, 1_000, start);
        w.observe(1, 500, start);
        // Ended while the consumer still has some of it to read: not idle yet.
        w.end_of_stream(1, later(1));
        assert_eq!(w.advance(later(1)), 490);
        assert!(!w.is_partition_idle(1, later(1)));
        // Caught up: idle at once, though the topic is busy and the idle timeout far away.
        w.reached_end(1, later(1));
        assert!(w.is_partition_idle(1, later(1)));
        assert_eq!(w.advance(later(1)), 990);
        assert!(!w.all_idle(later(1)), "partition 0 has not ended");
        w.end_of_stream(0, later(2));
        w.reached_end(0, later(2));
        assert!(w.all_idle(later(2)));
        // A later event reopens the partition: the timeout rules apply again.
        w.observe(1, 2_000, later(3));
        w.reached_end(1, later(3));
        assert!(!w.is_partition_idle(1, later(4)));
        assert!(!w.all_idle(later(4)));
        assert!(w.is_partition_idle(1, later(63)));
    }
}
