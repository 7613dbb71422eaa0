//! Per-window metric time on the 28 February 2022 days, against Evidently's time on the
//! same windows (tests/golden/evidently-timings.json, made by
//! scripts/goldens/bench_evidently.sh on the same machine).
//!
//! Run with `cargo bench -p streamwatch-monitor --bench window_metrics`. Prints a table:
//! for each day, the time to aggregate the window's events into pane value counts and
//! evaluate every metric (the streaming path after JSON decoding), the time of the
//! evaluation alone (what runs when a window closes), and the ratio to Evidently.

use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use streamwatch_monitor::batch::reference_from_parquet;
use streamwatch_monitor::decode::DecodedEvent;
use streamwatch_monitor::evaluate::evaluate;
use streamwatch_monitor::mapping::{ColumnMapping, MappingArgs};
use streamwatch_monitor::window::{MicroBatch, WindowOperator, WindowSpec};

const REPEATS: usize = 30;
const DAY_US: i64 = 86_400_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The scored February file as decoded events, the form the window operator receives.
fn february_events(batch: &RecordBatch, counted: &[String]) -> Vec<DecodedEvent> {
    let times = cast(
        batch.column_by_name("lpep_pickup_datetime").unwrap(),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .unwrap();
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let values: Vec<_> = counted
        .iter()
        .map(|c| cast(batch.column_by_name(c).unwrap(), &DataType::Float64).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let cells = batch
                .columns()
                .iter()
                .enumerate()
                .map(|(id, column)| {
                    let missing = column.is_null(row)
                        || matches!(column.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                            && cast(&column.slice(row, 1), &DataType::Utf8)
                                .unwrap()
                                .as_string::<i32>()
                                .value(0)
                                .is_empty()
                        || matches!(column.data_type(), DataType::Float64)
                            && !column.as_primitive::<Float64Type>().value(row).is_finite();
                    (id as u32, missing)
                })
                .collect();
            DecodedEvent {
                event_time_us: times.value(row),
                trip_id: None,
                values: values
                    .iter()
                    .map(|v| {
                        let v = v.as_primitive::<Float64Type>();
                        (!v.is_null(row)).then(|| v.value(row))
                    })
                    .collect(),
                cells,
            }
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mapping = ColumnMapping::from_args(&MappingArgs {
        monitor_name: "bench".into(),
        prediction: "prediction".into(),
        numerical: [
            "passenger_count",
            "trip_distance",
            "fare_amount",
            "total_amount",
        ]
        .map(String::from)
        .to_vec(),
        categorical: ["PULocationID", "DOLocationID"].map(String::from).to_vec(),
        quantiles: vec!["fare_amount:0.5".into()],
        drift_share: 0.5,
    })
    .unwrap();
    let counted = mapping.counted_columns();
    let reference = reference_from_parquet(
        repo().join("data/reference.parquet").to_str().unwrap(),
        &mapping,
    )
    .await
    .unwrap();
    let model =
        streamwatch_scorer::LinearModel::load(repo().join("models/trip-duration-linear.json"))
            .unwrap();
    let raw = streamwatch_scorer::batch::read_parquet(
        &repo().join("data/green_tripdata_2022-02.parquet"),
    )
    .unwrap();
    let scored = streamwatch_scorer::score_batch(&model, &raw).unwrap();
    let events = february_events(&scored, &counted);

    let evidently: serde_json::Value =
        std::fs::read_to_string(repo().join("tests/golden/evidently-timings.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
    let evidently_daily: Vec<f64> = evidently["daily_seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();

    let spec = WindowSpec::parse("1d").unwrap();
    let february = chrono::NaiveDate::from_ymd_opt(2022, 2, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    println!("| day | rows | aggregate + evaluate (µs) | evaluate at close (µs) | Evidently (s) | ratio (aggregate + evaluate) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut total_full, mut total_eval, mut total_evidently) = (0.0, 0.0, 0.0);
    for day in 0..28 {
        let start = february + day * DAY_US;
        let mut batch = MicroBatch::default();
        for (offset, event) in events.iter().enumerate() {
            if event.event_time_us >= start && event.event_time_us < start + DAY_US {
                batch.push(event, 0, offset as i64);
            }
        }
        let mut full = Vec::with_capacity(REPEATS);
        let mut eval_only = Vec::with_capacity(REPEATS);
        let mut rows = 0;
        for _ in 0..REPEATS {
            let began = Instant::now();
            let mut operator = WindowOperator::new(&[spec], counted.len(), 0);
            operator.ingest(&batch, i64::MIN);
            let ready = operator.take_ready(i64::MAX, false);
            let closing = Instant::now();
            let metrics = evaluate(&mapping, &reference, &ready[0].data);
            let done = Instant::now();
            rows = metrics.row_count;
            std::hint::black_box(metrics);
            full.push((done - began).as_secs_f64());
            eval_only.push((done - closing).as_secs_f64());
        }
        let (full, eval_only) = (median(full), median(eval_only));
        let evidently = evidently_daily.get(day as usize).copied();
        total_full += full;
        total_eval += eval_only;
        total_evidently += evidently.unwrap_or(f64::NAN);
        println!(
            "| 2022-02-{:02} | {rows} | {:.0} | {:.0} | {} | {} |",
            day + 1,
            full * 1e6,
            eval_only * 1e6,
            evidently.map_or("n/a".into(), |e| format!("{e:.3}")),
            evidently.map_or("n/a".into(), |e| format!("{:.0}x", e / full)),
        );
    }
    println!(
        "| mean | | {:.0} | {:.0} | {:.3} | {:.0}x |",
        total_full / 28.0 * 1e6,
        total_eval / 28.0 * 1e6,
        total_evidently / 28.0,
        total_evidently / total_full
    );
}
