//! Property tests of the event-time window operator (`monitor/src/window.rs`): window
//! assignment, sliding windows against a from-scratch computation, out-of-order input
//! within the allowed lateness, and the update horizon (re-emission and late drops).
//!
//! Windows are seconds long so that random event times cover many panes and windows.
//! Every expectation is computed from the events alone, without the operator's panes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use streamwatch_monitor::decode::DecodedEvent;
use streamwatch_monitor::evaluate::WindowData;
use streamwatch_monitor::window::{
    MicroBatch, ReadyWindow, Watermarks, WindowOperator, WindowSpec,
};
use streamwatch_stats::Distribution;

const SECOND: i64 = 1_000_000;
/// Monitored columns: data-column ids `0..MONITORED`, values in `DecodedEvent::values`.
const MONITORED: usize = 3;
/// Other data columns (ids `MONITORED..MONITORED + OTHER`): only their cells count.
const OTHER: usize = 2;
/// A small set, so values repeat and counts matter; `-0.0` is the same value as `0.0`.
const VALUES: [f64; 7] = [0.0, -0.0, 1.0, 2.5, -3.0, 0.1, 1e9];

/// One cell of an event as it appears in the JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// The key is not in the event.
    Absent,
    /// `null` (or `""` for a non-monitored column).
    Missing,
    Value(f64),
}

#[derive(Debug, Clone)]
struct Event {
    time_us: i64,
    cells: [Cell; MONITORED + OTHER],
}

impl Event {
    /// The event as the decoder produces it: monitored values in column order (`None` for
    /// null or absent), and a `(column id, missing)` pair for every key the event carries.
    fn decoded(&self) -> DecodedEvent {
        let mut values = vec![None; MONITORED];
        let mut cells = Vec::new();
        // Non-monitored keys first: the cells' order is the JSON keys' order, not the ids'.
        for id in (MONITORED..MONITORED + OTHER).chain(0..MONITORED) {
            match self.cells[id] {
                Cell::Absent => {}
                Cell::Missing => cells.push((id as u32, true)),
                Cell::Value(v) => {
                    if id < MONITORED {
                        values[id] = Some(v);
                    }
                    cells.push((id as u32, false));
                }
            }
        }
        DecodedEvent {
            event_time_us: self.time_us,
            trip_id: None,
            values,
            cells,
        }
    }

    fn shifted(&self, by_us: i64) -> Event {
        Event {
            time_us: self.time_us + by_us,
            ..self.clone()
        }
    }
}

/// `WindowData` without `PartialEq`: its fields, compared exactly.
#[derive(Debug, Clone, PartialEq)]
struct Contents {
    row_count: u64,
    number_of_columns: u32,
    number_of_missing_values: u64,
    /// Per monitored column: the value distribution, missing cells, integer dtype.
    columns: Vec<(Distribution, u64, bool)>,
}

impl Contents {
    fn of(data: &WindowData) -> Self {
        Self {
            row_count: data.row_count,
            number_of_columns: data.number_of_columns,
            number_of_missing_values: data.number_of_missing_values,
            columns: data
                .columns
                .iter()
                .map(|c| (c.values.clone(), c.nulls, c.integer_dtype))
                .collect(),
        }
    }

    /// What a window holding exactly `events` contains, computed directly: a data frame of
    /// the events whose columns are the keys any of them carries (pandas' semantics).
    fn from_scratch<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let events: Vec<&Event> = events.into_iter().collect();
        let columns: BTreeSet<usize> = events
            .iter()
            .flat_map(|e| (0..MONITORED + OTHER).filter(|&id| e.cells[id] != Cell::Absent))
            .collect();
        let missing = events
            .iter()
            .map(|e| {
                columns
                    .iter()
                    .filter(|&&id| !matches!(e.cells[id], Cell::Value(_)))
                    .count() as u64
            })
            .sum();
        Self {
            row_count: events.len() as u64,
            number_of_columns: columns.len() as u32,
            number_of_missing_values: missing,
            columns: (0..MONITORED)
                .map(|id| {
                    let values: Vec<f64> = events
                        .iter()
                        .filter_map(|e| match e.cells[id] {
                            Cell::Value(v) => Some(v),
                            _ => None,
                        })
                        .collect();
                    let nulls = (events.len() - values.len()) as u64;
                    (Distribution::from_values(&values), nulls, false)
                })
                .collect(),
        }
    }
}

/// A window's identity: spec (size, step) and start.
type Key = (i64, i64, i64);

fn key(spec: WindowSpec, start_us: i64) -> Key {
    (spec.size_us, spec.step_us, start_us)
}

/// Starts of all windows of `spec` with `start <= time < start + size`, found by
/// scanning every step-aligned start that could qualify.
fn windows_containing(spec: WindowSpec, time_us: i64) -> Vec<i64> {
    let first = (time_us - spec.size_us).div_euclid(spec.step_us);
    let last = time_us.div_euclid(spec.step_us);
    (first..=last)
        .map(|k| k * spec.step_us)
        .filter(|start| *start <= time_us && time_us < start + spec.size_us)
        .collect()
}

/// The events of one window, in input order.
fn events_in(events: &[Event], start_us: i64, size_us: i64) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| start_us <= e.time_us && e.time_us < start_us + size_us)
        .collect()
}

/// Every window (of every spec) holding at least one event, with its events.
fn expected_windows<'a>(
    specs: &[WindowSpec],
    events: &'a [Event],
) -> BTreeMap<Key, Vec<&'a Event>> {
    let mut windows: BTreeMap<Key, Vec<&Event>> = BTreeMap::new();
    for spec in specs {
        for event in events {
            for start in windows_containing(*spec, event.time_us) {
                windows.entry(key(*spec, start)).or_default().push(event);
            }
        }
    }
    windows
}

fn batch_of(events: &[Event], first_offset: i64) -> MicroBatch {
    let mut batch = MicroBatch::default();
    for (i, event) in events.iter().enumerate() {
        batch.push(&event.decoded(), 0, first_offset + i as i64);
    }
    batch
}

/// Splits `events` into consecutive micro-batches of the given sizes (cycled).
fn chunks<'a>(events: &'a [Event], sizes: &[usize]) -> Vec<&'a [Event]> {
    let mut out = Vec::new();
    let mut rest = events;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Emitted windows by key; fails on a key emitted twice in one call.
fn by_key(ready: Vec<ReadyWindow>) -> BTreeMap<Key, (u32, Contents)> {
    let mut out = BTreeMap::new();
    for window in ready {
        let previous = out.insert(
            key(window.spec, window.start_us),
            (window.revision, Contents::of(&window.data)),
        );
        assert!(
            previous.is_none(),
            "window {:?} emitted twice in one call",
            window.start_us
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// Strategies.

/// A spec with a step of 1–4 s and 1–4 panes; one pane is written as a tumbling spec.
fn spec() -> impl Strategy<Value = WindowSpec> {
    (1i64..=4, 1i64..=4).prop_map(|(step, panes)| {
        let text = if panes == 1 {
            format!("{step}s")
        } else {
            format!("{}s/{step}s", step * panes)
        };
        WindowSpec::parse(&text).expect("valid spec")
    })
}

/// One to three specs, without duplicates.
fn specs() -> impl Strategy<Value = Vec<WindowSpec>> {
    prop::collection::vec(spec(), 1..=3).prop_map(|mut specs| {
        let mut seen = BTreeSet::new();
        specs.retain(|s| seen.insert((s.size_us, s.step_us)));
        specs
    })
}

/// Event times within -20 s..40 s, often right at a second boundary or just before one.
fn time() -> impl Strategy<Value = i64> {
    (
        -20i64..40,
        prop_oneof![Just(0), Just(SECOND - 1), 0..SECOND],
    )
        .prop_map(|(seconds, micros)| seconds * SECOND + micros)
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        1 => Just(Cell::Absent),
        1 => Just(Cell::Missing),
        4 => select(&VALUES[..]).prop_map(Cell::Value),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (time(), prop::array::uniform5(cell())).prop_map(|(time_us, cells)| Event { time_us, cells })
}

fn events(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(event(), len)
}

fn batch_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..8, 1..6)
}

const CASES: u32 = 96;

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Every event is assigned to exactly the windows containing its time: the emitted
    /// windows are exactly those holding an event, each with as many rows as events in
    /// `[start, end)`; a watermark emits exactly the windows that end at or before it.
    #[test]
    fn every_event_lands_in_exactly_the_windows_containing_it(
        specs in specs(),
        events in events(1..60),
        watermark in time(),
    ) {
        let mut op = WindowOperator::new(&specs, MONITORED, 0);
        let stats = op.ingest(&batch_of(&events, 0), i64::MIN);
        prop_assert_eq!(stats.assigned, (events.len() * specs.len()) as u64);
        prop_assert_eq!(stats.late_dropped, 0);
        prop_assert!(stats.late.is_empty());

        let expected = expected_windows(&specs, &events);
        let first = by_key(op.take_ready(watermark, false));
        let rest = by_key(op.take_ready(i64::MIN, true));
        prop_assert!(op.take_ready(i64::MAX, true).is_empty(), "everything was reported");

        let first_keys: BTreeSet<Key> = first.keys().copied().collect();
        let ended: BTreeSet<Key> = expected
            .keys()
            .copied()
            .filter(|(size, _, start)| start + size <= watermark)
            .collect();
        prop_assert_eq!(first_keys, ended, "windows ending by the watermark");

        let mut emitted = first;
        for (k, v) in rest {
            prop_assert!(emitted.insert(k, v).is_none(), "window {:?} emitted twice", k);
        }
        let emitted_keys: BTreeSet<Key> = emitted.keys().copied().collect();
        let expected_keys: BTreeSet<Key> = expected.keys().copied().collect();
        prop_assert_eq!(emitted_keys, expected_keys);
        for (k, (revision, contents)) in &emitted {
            prop_assert_eq!(*revision, 1);
            prop_assert_eq!(contents.row_count, expected[k].len() as u64, "window {:?}", k);
        }
        for spec in &specs {
            let panes = (spec.size_us / spec.step_us) as usize;
            for event in &events {
                prop_assert_eq!(windows_containing(*spec, event.time_us).len(), panes);
            }
            let assignments: u64 = emitted
                .iter()
                .filter(|((size, step, _), _)| (*size, *step) == (spec.size_us, spec.step_us))
                .map(|(_, (_, c))| c.row_count)
                .sum();
            prop_assert_eq!(assignments, (events.len() * panes) as u64, "spec {:?}", spec);
        }
    }

    /// Each emitted (sliding or tumbling) window's full `WindowData` equals a from-scratch
    /// computation over that window's events, and what a fresh operator with one tumbling
    /// window of the same size reports for them. Events come in micro-batches in random
    /// order, so panes are updated in several runs.
    #[test]
    fn sliding_windows_equal_a_from_scratch_computation(
        specs in specs(),
        events in events(1..60),
        sizes in batch_sizes(),
    ) {
        let mut op = WindowOperator::new(&specs, MONITORED, 0);
        let mut offset = 0;
        for chunk in chunks(&events, &sizes) {
            let stats = op.ingest(&batch_of(chunk, offset), i64::MIN);
            prop_assert_eq!(stats.late_dropped, 0);
            offset += chunk.len() as i64;
        }
        let emitted = by_key(op.take_ready(i64::MAX, false));
        prop_assert_eq!(emitted.len(), expected_windows(&specs, &events).len());
        for ((size, _, start), (_, contents)) in &emitted {
            let inside = events_in(&events, *start, *size);
            prop_assert_eq!(
                contents,
                &Contents::from_scratch(inside.iter().copied()),
                "window [{}, +{})", start, size
            );

            // The same events, moved so the window is the tumbling window [0, size).
            let moved: Vec<Event> = inside.iter().map(|e| e.shifted(-start)).collect();
            let tumbling = WindowSpec::parse(&format!("{}s", size / SECOND)).unwrap();
            let mut fresh = WindowOperator::new(&[tumbling], MONITORED, 0);
            fresh.ingest(&batch_of(&moved, 0), i64::MIN);
            let alone = fresh.take_ready(i64::MIN, true);
            prop_assert_eq!(alone.len(), 1);
            prop_assert_eq!(alone[0].start_us, 0);
            prop_assert_eq!(contents, &Contents::of(&alone[0].data));
        }
    }

    /// Input shuffled within the allowed lateness (each event at most `L` behind the
    /// highest time seen before it) gives the same windows as the sorted input, driven
    /// through `Watermarks` and micro-batches as the service does; nothing is dropped.
    #[test]
    fn out_of_order_input_within_the_lateness_gives_the_same_windows(
        specs in specs(),
        raw in events(1..80),
        lateness_s in 0i64..=6,
        horizon_s in 0i64..=4,
        sizes in batch_sizes(),
    ) {
        let lateness = lateness_s * SECOND;
        // Bounded displacement: pull each event up to at most `lateness` behind the maximum.
        let mut shuffled = raw;
        let mut max = i64::MIN;
        for event in &mut shuffled {
            event.time_us = event.time_us.max(max.saturating_sub(lateness));
            max = max.max(event.time_us);
        }
        let mut sorted = shuffled.clone();
        sorted.sort_by_key(|e| e.time_us);

        let run = |input: &[Event]| -> (u64, BTreeMap<Key, (u32, Contents)>) {
            let start = Instant::now();
            let mut op = WindowOperator::new(&specs, MONITORED, horizon_s * SECOND);
            let mut watermarks = Watermarks::new(lateness, Duration::from_secs(3600));
            watermarks.assign(0, start);
            let mut late = 0;
            let mut latest = BTreeMap::new();
            let mut offset = 0;
            let mut keep = |ready: Vec<ReadyWindow>| {
                for (k, v) in by_key(ready) {
                    // Latest revision per window.
                    if latest.get(&k).is_none_or(|(r, _): &(u32, Contents)| *r < v.0) {
                        latest.insert(k, v);
                    }
                }
            };
            for chunk in chunks(input, &sizes) {
                let before = watermarks.current();
                for event in chunk {
                    watermarks.observe(0, event.time_us, start);
                }
                late += op.ingest(&batch_of(chunk, offset), before).late_dropped;
                offset += chunk.len() as i64;
                let watermark = watermarks.advance(start);
                keep(op.take_ready(watermark, false));
                op.evict(watermark);
            }
            keep(op.take_ready(watermarks.current(), true));
            (late, latest)
        };
        let (sorted_late, from_sorted) = run(&sorted);
        let (shuffled_late, from_shuffled) = run(&shuffled);
        prop_assert_eq!(sorted_late, 0);
        prop_assert_eq!(shuffled_late, 0);
        prop_assert_eq!(&from_shuffled, &from_sorted);
        // And both are the from-scratch windows, each reported once.
        let expected = expected_windows(&specs, &sorted);
        prop_assert_eq!(from_sorted.len(), expected.len());
        for (k, events) in &expected {
            let (revision, contents) = &from_sorted[k];
            prop_assert_eq!(*revision, 1, "window {:?} re-emitted", k);
            prop_assert_eq!(contents, &Contents::from_scratch(events.iter().copied()));
        }
    }

    /// After windows are reported at watermark `W`, late events are dropped and counted
    /// exactly when every window containing them ended at or before `W - horizon`; the
    /// others re-emit each reported window they fall in with revision + 1 and the
    /// from-scratch contents, and still-open windows are reported once with everything.
    #[test]
    fn late_events_reemit_within_the_horizon_and_are_dropped_after_it(
        specs in specs(),
        early in events(1..40),
        late in events(1..30),
        horizon_s in 0i64..=6,
        watermark in time(),
    ) {
        let horizon = horizon_s * SECOND;
        let mut op = WindowOperator::new(&specs, MONITORED, horizon);
        let stats = op.ingest(&batch_of(&early, 0), i64::MIN);
        prop_assert_eq!(stats.late_dropped, 0);
        let first = by_key(op.take_ready(watermark, false));
        op.evict(watermark);

        let early_windows = expected_windows(&specs, &early);
        for (k, events) in &early_windows {
            let (size, _, start) = *k;
            if start + size <= watermark {
                prop_assert_eq!(
                    &first[k],
                    &(1, Contents::from_scratch(events.iter().copied())),
                    "window {:?}", k
                );
            }
        }
        prop_assert_eq!(
            first.len(),
            early_windows.keys().filter(|(size, _, start)| start + size <= watermark).count()
        );

        // The late batch arrives with the watermark at `W`.
        let first_late_offset = 1000;
        let stats = op.ingest(&batch_of(&late, first_late_offset), watermark);
        let mut expected_dropped = BTreeSet::new();
        for spec in &specs {
            for (i, event) in late.iter().enumerate() {
                let closed = windows_containing(*spec, event.time_us)
                    .iter()
                    .all(|start| start + spec.size_us + horizon <= watermark);
                if closed {
                    expected_dropped.insert((spec.size_us, spec.step_us, first_late_offset + i as i64));
                }
            }
        }
        prop_assert_eq!(stats.late_dropped, expected_dropped.len() as u64);
        prop_assert_eq!(
            stats.assigned + stats.late_dropped,
            (late.len() * specs.len()) as u64
        );
        let reported_dropped: BTreeSet<(i64, i64, i64)> = stats
            .late
            .iter()
            .map(|l| (l.spec.size_us, l.spec.step_us, l.offset))
            .collect();
        prop_assert_eq!(stats.late.len(), reported_dropped.len());
        prop_assert_eq!(&reported_dropped, &expected_dropped);
        for l in &stats.late {
            let i = (l.offset - first_late_offset) as usize;
            prop_assert_eq!((l.partition, l.time_us), (0, late[i].time_us));
        }

        // Reported windows still inside their horizon that got late events come back.
        let again = by_key(op.take_ready(watermark, false));
        let rest = by_key(op.take_ready(i64::MIN, true));
        let all: Vec<Event> = early.iter().chain(&late).cloned().collect();
        let late_windows = expected_windows(&specs, &late);
        let mut expected_again = BTreeMap::new();
        let mut expected_rest = BTreeMap::new();
        for (k, events) in expected_windows(&specs, &all) {
            let (size, _, start) = k;
            let contents = Contents::from_scratch(events.iter().copied());
            let end = start + size;
            if end > watermark {
                expected_rest.insert(k, (1, contents));
            } else if end + horizon > watermark && late_windows.contains_key(&k) {
                let revision = if early_windows.contains_key(&k) { 2 } else { 1 };
                expected_again.insert(k, (revision, contents));
            }
        }
        prop_assert_eq!(&again, &expected_again);
        prop_assert_eq!(&rest, &expected_rest);
    }

    /// With segment dimensions, every window also reports, per (dimension, segment) present
    /// in it, exactly the contents of its events of that segment, across micro-batches and
    /// sliding panes.
    #[test]
    fn segment_sub_windows_equal_a_from_scratch_computation(
        specs in specs(),
        events in events(1..60),
        sizes in batch_sizes(),
    ) {
        let mut op = WindowOperator::new(&specs, MONITORED, 0).with_segment_dimensions(2);
        let mut offset = 0;
        for chunk in chunks(&events, &sizes) {
            let mut batch = MicroBatch::default();
            for event in chunk {
                batch.push_segmented(&event.decoded(), &segments_of(event), 0, offset);
                offset += 1;
            }
            op.ingest(&batch, i64::MIN);
        }
        let ready = op.take_ready(i64::MIN, true);
        let expected = expected_windows(&specs, &events);
        prop_assert_eq!(ready.len(), expected.len());
        for window in &ready {
            let in_window = &expected[&key(window.spec, window.start_us)];
            let mut wanted: BTreeMap<(usize, u32), Contents> = BTreeMap::new();
            for dimension in 0..2 {
                let ids: BTreeSet<u32> =
                    in_window.iter().map(|e| segments_of(e)[dimension]).collect();
                for id in ids {
                    let of_segment = in_window
                        .iter()
                        .copied()
                        .filter(|e| segments_of(e)[dimension] == id);
                    wanted.insert((dimension, id), Contents::from_scratch(of_segment));
                }
            }
            let got: BTreeMap<(usize, u32), Contents> = window
                .segments
                .iter()
                .map(|s| ((s.dimension, s.segment), Contents::of(&s.data)))
                .collect();
            prop_assert_eq!(got.len(), window.segments.len(), "a segment reported twice");
            prop_assert_eq!(&got, &wanted, "window {:?}", window.start_us);
        }
    }
}

/// Two segment dimensions of an event: its time modulo 3, and whether its first column
/// holds a positive value.
fn segments_of(event: &Event) -> [u32; 2] {
    let positive = matches!(event.cells[0], Cell::Value(v) if v > 0.0);
    [event.time_us.rem_euclid(3) as u32, u32::from(positive)]
}
