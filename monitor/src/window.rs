//! Event-time windows built from panes. Every event lands in exactly one pane of each
//! window spec (a `step`-long slice of time); a window of `size` combines its
//! `size / step` panes, so sliding windows never re-scan events. Panes hold exact value
//! counts, which merge without loss.
//!
//! A window is emitted when the watermark passes its end. Events for an emitted window
//! that arrive before `end + update_horizon` re-emit it with a higher revision; later
//! ones are dropped and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::logical_expr::Accumulator;
use rustc_hash::FxHashMap;
use streamwatch_common::events::WindowKind;

use crate::counts::{ValueCounts, ValueCountsAccumulator};
use crate::decode::DecodedEvent;
use crate::evaluate::{ColumnSample, WindowData};
use crate::{MonitorError, Result};

const MICROS_PER_SECOND: i64 = 1_000_000;

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
    fn pane_of(&self, time_us: i64) -> i64 {
        time_us.div_euclid(self.step_us)
    }

    /// Starts of every window that contains a pane.
    fn windows_of_pane(&self, pane: i64) -> impl Iterator<Item = i64> + '_ {
        (0..self.panes_per_window()).map(move |j| (pane - j) * self.step_us)
    }
}

/// Parses `90s`, `15m`, `1h`, `1d` into microseconds.
pub fn parse_duration(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| {
        MonitorError::Config(format!("duration {text:?} must look like 30s, 15m, 1h or 1d"))
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
        return Err(MonitorError::Config(format!("duration {text:?} must be positive")));
    }
    Ok(number * seconds * MICROS_PER_SECOND)
}

/// Events decoded from one poll of the consumer, in columnar form.
#[derive(Debug, Default)]
pub struct MicroBatch {
    times: Vec<i64>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    cell_ends: Vec<usize>,
    cells: Vec<(u32, bool)>,
    values: Vec<Vec<Option<f64>>>,
}

impl MicroBatch {
    pub fn push(&mut self, event: &DecodedEvent, partition: i32, offset: i64) {
        if self.values.len() < event.values.len() {
            self.values.resize_with(event.values.len(), Vec::new);
        }
        self.times.push(event.event_time_us);
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.cells.extend_from_slice(&event.cells);
        self.cell_ends.push(self.cells.len());
        for (column, value) in self.values.iter_mut().zip(&event.values) {
            column.push(*value);
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
        self.partitions.clear();
        self.offsets.clear();
        self.cell_ends.clear();
        self.cells.clear();
        self.values.iter_mut().for_each(Vec::clear);
    }

    fn cells_of(&self, row: usize) -> &[(u32, bool)] {
        let start = if row == 0 { 0 } else { self.cell_ends[row - 1] };
        &self.cells[start..self.cell_ends[row]]
    }
}

/// One pane's contents.
#[derive(Debug, Default)]
struct Pane {
    rows: u64,
    /// Per data-column id: seen in this pane at all, and cells that were not missing.
    seen: Vec<bool>,
    present: Vec<u64>,
    columns: Vec<ValueCountsAccumulator>,
    /// Lowest offset per partition of the events in this pane: the consumer may not
    /// commit past it while the pane is kept.
    first_offsets: FxHashMap<i32, i64>,
}

impl Pane {
    fn new(columns: usize) -> Self {
        Self {
            columns: (0..columns).map(|_| ValueCountsAccumulator::default()).collect(),
            ..Self::default()
        }
    }

    fn add_cells(&mut self, cells: &[(u32, bool)]) {
        for &(id, missing) in cells {
            let id = id as usize;
            if id >= self.seen.len() {
                self.seen.resize(id + 1, false);
                self.present.resize(id + 1, 0);
            }
            self.seen[id] = true;
            self.present[id] += u64::from(!missing);
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
}

#[derive(Debug)]
struct SpecState {
    spec: WindowSpec,
    panes: BTreeMap<i64, Pane>,
    /// Windows with new events not yet reported.
    pending: BTreeSet<i64>,
    /// Last reported revision of windows still inside their update horizon.
    revisions: BTreeMap<i64, u32>,
}

/// Tracks the watermark: the minimum over active partitions of (highest event time seen
/// minus the allowed lateness). It never moves back.
#[derive(Debug)]
pub struct Watermarks {
    partitions: FxHashMap<i32, (i64, Instant)>,
    lateness_us: i64,
    idle_timeout: Duration,
    current: i64,
}

impl Watermarks {
    pub fn new(lateness_us: i64, idle_timeout: Duration) -> Self {
        Self {
            partitions: FxHashMap::default(),
            lateness_us,
            idle_timeout,
            current: i64::MIN,
        }
    }

    pub fn observe(&mut self, partition: i32, time_us: i64, now: Instant) {
        let entry = self.partitions.entry(partition).or_insert((i64::MIN, now));
        entry.0 = entry.0.max(time_us);
        entry.1 = now;
    }

    /// Forgets partitions this instance no longer owns (after a rebalance).
    pub fn retain_partitions(&mut self, owned: impl Fn(i32) -> bool) {
        self.partitions.retain(|p, _| owned(*p));
    }

    /// Recomputes the watermark; partitions idle for longer than the idle timeout do not
    /// hold it back.
    pub fn advance(&mut self, now: Instant) -> i64 {
        let active = self
            .partitions
            .values()
            .filter(|(_, seen)| now.duration_since(*seen) < self.idle_timeout)
            .map(|(max, _)| max.saturating_sub(self.lateness_us))
            .min();
        if let Some(candidate) = active {
            self.current = self.current.max(candidate);
        }
        self.current
    }

    /// True when partitions are known and every one of them is idle.
    pub fn all_idle(&self, now: Instant) -> bool {
        !self.partitions.is_empty()
            && self
                .partitions
                .values()
                .all(|(_, seen)| now.duration_since(*seen) >= self.idle_timeout)
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
}

/// All window state of a monitor.
#[derive(Debug)]
pub struct WindowOperator {
    specs: Vec<SpecState>,
    columns: usize,
    horizon_us: i64,
    scratch: Vec<ArrayRef>,
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
                })
                .collect(),
            columns,
            horizon_us,
            scratch: Vec::new(),
        }
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
        let horizon = self.horizon_us;
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
                if pane_start.saturating_add(spec.size_us).saturating_add(horizon) <= watermark {
                    stats.late_dropped += (end - row) as u64;
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
                for r in row..end {
                    pane.add_cells(batch.cells_of(r));
                    let first = pane
                        .first_offsets
                        .entry(batch.partitions[r])
                        .or_insert(batch.offsets[r]);
                    *first = (*first).min(batch.offsets[r]);
                }
                pane.rows += (end - row) as u64;
                stats.assigned += (end - row) as u64;
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
                let panes = state
                    .panes
                    .range(first_pane..first_pane + spec.panes_per_window())
                    .map(|(_, pane)| pane);
                let data = merge_panes(panes, self.columns);
                if data.row_count == 0 {
                    continue;
                }
                let revision = state.revisions.entry(start).or_insert(0);
                *revision += 1;
                ready.push(ReadyWindow {
                    spec,
                    start_us: start,
                    revision: *revision,
                    data,
                });
            }
        }
        ready
    }

    /// Drops panes and revisions no window can need any more.
    pub fn evict(&mut self, watermark: i64) {
        let horizon = self.horizon_us;
        for state in &mut self.specs {
            let spec = state.spec;
            let closed = |start: i64| start.saturating_add(spec.size_us).saturating_add(horizon) <= watermark;
            state.panes.retain(|pane, _| !closed(pane * spec.step_us));
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

fn merge_panes<'a>(panes: impl Iterator<Item = &'a Pane>, columns: usize) -> WindowData {
    let mut rows = 0u64;
    let mut seen: Vec<bool> = Vec::new();
    let mut present: Vec<u64> = Vec::new();
    let mut counts: Vec<ValueCounts> = vec![ValueCounts::default(); columns];
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
        for (merged, accumulator) in counts.iter_mut().zip(&pane.columns) {
            merged.merge(accumulator.counts());
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
        columns: counts
            .into_iter()
            .map(|c| ColumnSample::new(c, false))
            .collect(),
    }
}
