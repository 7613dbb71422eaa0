//! The prediction/completion join over a month: February 2022's trips as predictions at their
//! pickup and completions at their dropoff, merged in event-time order, through the
//! performance operator with the 1-day, 1-hour and 1-day/1-hour windows and the pickup
//! borough and zone segments. Reports the join's state (predictions waiting for their truth,
//! completions waiting for their prediction, panes) and the time per event as the month
//! goes by: the state must stay bounded by the label horizon, not grow with the month.
//!
//! Run with `cargo bench -p streamwatch-monitor --bench join`.

use std::time::Instant;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use streamwatch_common::spec::{LookupSpec, PerformanceSpec, SegmentSpec};
use streamwatch_common::telemetry::resident_memory_bytes;
use streamwatch_monitor::performance::{Completion, PerformanceOperator, Position, Prediction};
use streamwatch_monitor::segments::Segmenter;
use streamwatch_monitor::window::WindowSpec;

mod common;
use common::{repo, scored_february, taxi_mapping};

const MIB: f64 = 1024.0 * 1024.0;
const HOUR_US: i64 = 3_600_000_000;
/// Events between two watermark advances (a micro-batch).
const BATCH: usize = 1000;

fn dropoff_times() -> Vec<i64> {
    let raw = streamwatch_scorer::batch::read_parquet(
        &repo().join("data/green_tripdata_2022-02.parquet"),
    )
    .unwrap();
    let times = cast(
        raw.column_by_name("lpep_dropoff_datetime").unwrap(),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .unwrap();
    let times = times.as_primitive::<TimestampMicrosecondType>();
    (0..raw.num_rows()).map(|i| times.value(i)).collect()
}

fn main() {
    let mapping = taxi_mapping();
    let counted = mapping.counted_columns();
    let events = scored_february(&counted);
    let dropoffs = dropoff_times();
    assert_eq!(events.len(), dropoffs.len());

    let lookup = |value: &str| LookupSpec {
        path: repo()
            .join("data/taxi_zone_lookup.csv")
            .to_string_lossy()
            .into_owned(),
        key: "LocationID".into(),
        value: value.into(),
    };
    let segmenters = [("pickup_borough", "Borough"), ("pickup_zone", "Zone")]
        .iter()
        .map(|(name, value)| {
            let spec = SegmentSpec {
                name: (*name).into(),
                column: "PULocationID".into(),
                lookup: Some(lookup(value)),
                drift: false,
            };
            Segmenter::new(&spec, &counted).unwrap()
        })
        .collect();
    let specs: Vec<WindowSpec> = ["1d", "1h", "1d/1h"]
        .iter()
        .map(|s| WindowSpec::parse(s).unwrap())
        .collect();
    let mut operator =
        PerformanceOperator::new(&specs, 3 * HOUR_US, PerformanceSpec::default(), segmenters);

    // (time, trip index, is completion), in event-time order; a trip before its completion.
    let mut stream: Vec<(i64, usize, bool)> = Vec::with_capacity(2 * events.len());
    for (i, event) in events.iter().enumerate() {
        stream.push((event.event_time_us, i, false));
        stream.push((dropoffs[i], i, true));
    }
    stream.sort();
    let ids: Vec<String> = (0..events.len()).map(|i| format!("feb:{i}")).collect();

    let baseline = resident_memory_bytes().unwrap_or(0) as f64 / MIB;
    println!(
        "trips: {}, events (predictions + completions): {}, resident memory before: {baseline:.1} MiB",
        events.len(),
        stream.len()
    );
    println!(
        "\n| events processed | waiting predictions | waiting completions | panes | reports so far | µs per event (last slice) | RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let scored = Position {
        topic: 0,
        partition: 0,
    };
    let done = Position {
        topic: 1,
        partition: 0,
    };
    let (mut max_predictions, mut max_completions, mut max_panes) = (0, 0, 0);
    let mut reports = 0usize;
    let mut watermark = i64::MIN;
    let started = Instant::now();
    let mut slice_started = Instant::now();
    let slice = stream.len() / 8;
    for (n, &(time, trip, is_completion)) in stream.iter().enumerate() {
        let event = &events[trip];
        if is_completion {
            let completion = Completion {
                time_us: time,
                prediction_time_us: event.event_time_us,
                truth: Some((time - event.event_time_us) as f64 / 60e6),
            };
            operator.complete(&ids[trip], completion, done, n as i64, watermark);
        } else {
            let prediction = Prediction {
                time_us: time,
                value: event.values[0],
                segments: operator.classify(&event.values),
            };
            operator.predict(&ids[trip], prediction, scored, n as i64, watermark);
        }
        if (n + 1) % BATCH == 0 {
            watermark = watermark.max(time - 60_000_000);
            reports += operator.take_ready(watermark, false).len();
            operator.evict(watermark);
            let (p, c) = operator.waiting();
            max_predictions = max_predictions.max(p);
            max_completions = max_completions.max(c);
            max_panes = max_panes.max(operator.panes());
        }
        if (n + 1) % slice == 0 {
            let per_event = slice_started.elapsed().as_secs_f64() * 1e6 / slice as f64;
            let (p, c) = operator.waiting();
            println!(
                "| {} | {p} | {c} | {} | {reports} | {per_event:.2} | {:.1} |",
                n + 1,
                operator.panes(),
                resident_memory_bytes().unwrap_or(0) as f64 / MIB
            );
            slice_started = Instant::now();
        }
    }
    reports += operator.take_ready(i64::MAX, true).len();
    let total = started.elapsed();
    println!(
        "\nwhole month: {:.2} µs per event ({:.0} events/s), {reports} window reports; peak state: {max_predictions} waiting predictions, {max_completions} waiting completions, {max_panes} panes",
        total.as_secs_f64() * 1e6 / stream.len() as f64,
        stream.len() as f64 / total.as_secs_f64()
    );
}
