//! Per-window metric time on the 28 February 2022 days, against Evidently's time on the
//! same windows (tests/golden/evidently-timings.json, made by
//! scripts/goldens/make_goldens.sh --bench-only on the same machine).
//!
//! Run with `cargo bench -p streamwatch-monitor --bench window_metrics`. Prints a table:
//! for each day, the time to aggregate the window's events into pane value counts and
//! evaluate every metric (the streaming path after JSON decoding), the time of the close
//! alone (merging the window's panes and evaluating: what runs when the watermark closes
//! a window), and the ratio to Evidently; then the
//! same for one window of 10k, 100k and 1M rows sampled with replacement from February
//! (as Evidently's timings are), fed in micro-batches of the monitor's default size.

use std::time::Instant;

use streamwatch_monitor::batch::reference_from_parquet;
use streamwatch_monitor::evaluate::evaluate;
use streamwatch_monitor::window::{MicroBatch, WindowOperator, WindowSpec};

mod common;
use common::{repo, scored_february, taxi_mapping};

const REPEATS: usize = 30;
const DAY_US: i64 = 86_400_000_000;
/// The monitor's default `--max-batch`.
const MICRO_BATCH: usize = 8192;

/// splitmix64: a fixed, dependency-free sample (its rows differ from numpy's, its
/// distribution does not).
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mapping = taxi_mapping();
    let counted = mapping.counted_columns();
    let reference = reference_from_parquet(
        repo().join("data/reference.parquet").to_str().unwrap(),
        &mapping,
    )
    .await
    .unwrap();
    let events = scored_february(&counted);

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
            let closing = Instant::now();
            let ready = operator.take_ready(i64::MAX, false);
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

    sampled_windows(&mapping, &reference, &events, &evidently);
}

/// One window of 10k, 100k and 1M rows sampled from February's events.
fn sampled_windows(
    mapping: &streamwatch_monitor::mapping::ColumnMapping,
    reference: &[streamwatch_monitor::evaluate::ReferenceColumn],
    events: &[streamwatch_monitor::decode::DecodedEvent],
    evidently: &serde_json::Value,
) {
    let spec = WindowSpec::parse("1d").unwrap();
    let columns = mapping.counted_columns().len();
    let mut random = SplitMix(20_220_201);
    println!();
    println!("| rows | aggregate + evaluate (ms) | evaluate at close (ms) | Evidently (s) | ratio (aggregate + evaluate) | ratio (at close) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (rows, repeats) in [(10_000usize, 10), (100_000, 3), (1_000_000, 1)] {
        // All in one window: the events keep their values, not their times.
        let batches: Vec<MicroBatch> = (0..rows)
            .collect::<Vec<_>>()
            .chunks(MICRO_BATCH)
            .map(|chunk| {
                let mut batch = MicroBatch::default();
                for &offset in chunk {
                    let mut event = events[random.below(events.len())].clone();
                    event.event_time_us = 0;
                    batch.push(&event, 0, offset as i64);
                }
                batch
            })
            .collect();
        let mut full = Vec::new();
        let mut eval_only = Vec::new();
        for _ in 0..repeats {
            let began = Instant::now();
            let mut operator = WindowOperator::new(&[spec], columns, 0);
            for batch in &batches {
                operator.ingest(batch, i64::MIN);
            }
            let closing = Instant::now();
            let ready = operator.take_ready(i64::MAX, false);
            let metrics = evaluate(mapping, reference, &ready[0].data);
            let done = Instant::now();
            assert_eq!(metrics.row_count, rows as u64);
            std::hint::black_box(metrics);
            full.push((done - began).as_secs_f64());
            eval_only.push((done - closing).as_secs_f64());
        }
        let (full, eval_only) = (median(full), median(eval_only));
        let evidently = evidently[format!("rows_{rows}")].as_f64();
        let ratio = |ours: f64| evidently.map_or("n/a".into(), |e| format!("{:.0}x", e / ours));
        println!(
            "| {rows} | {:.1} | {:.2} | {} | {} | {} |",
            full * 1e3,
            eval_only * 1e3,
            evidently.map_or("n/a".into(), |e| format!("{e:.3}")),
            ratio(full),
            ratio(eval_only),
        );
    }
}
