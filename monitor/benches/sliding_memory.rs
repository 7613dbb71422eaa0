//! Memory and time per event of a month replayed through the window operator, with more
//! and more windows open at once: 1-day tumbling (1 open), 1-day sliding by 1 hour (24
//! open) and by 10 minutes (144 open). Memory must stay flat as events accumulate, and the
//! time per event must not grow with the number of open windows (each event goes to one
//! pane; a window merges its panes only when it closes).
//!
//! Run with `cargo bench -p streamwatch-monitor --bench sliding_memory`.

use std::time::Instant;

use streamwatch_common::telemetry::resident_memory_bytes;
use streamwatch_monitor::batch::reference_from_parquet;
use streamwatch_monitor::evaluate::evaluate;
use streamwatch_monitor::window::{MicroBatch, WindowOperator, WindowSpec};

mod common;
use common::{repo, scored_february, taxi_mapping};

const BATCH: usize = 1000;
const MIB: f64 = 1024.0 * 1024.0;

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
    let mut events = scored_february(&counted);
    events.sort_by_key(|e| e.event_time_us);
    let baseline = resident_memory_bytes().unwrap_or(0) as f64 / MIB;
    println!(
        "events: {}, resident memory before the runs: {baseline:.1} MiB\n",
        events.len()
    );

    let mut summary = Vec::new();
    for spec_text in ["1d", "1d/1h", "1d/10m"] {
        let spec = WindowSpec::parse(spec_text).unwrap();
        let mut operator = WindowOperator::new(&[spec], counted.len(), 0);
        let mut batch = MicroBatch::default();
        let (mut watermark, mut emitted, mut peak_panes) = (i64::MIN, 0usize, 0usize);
        let mut ingest_seconds = 0.0;
        let mut close_seconds = 0.0;
        println!("window {spec_text}: | events | resident MiB | panes | windows emitted |");
        println!("|---:|---:|---:|---:|");
        for (chunk_index, chunk) in events.chunks(BATCH).enumerate() {
            batch.clear();
            for (i, event) in chunk.iter().enumerate() {
                batch.push(event, 0, (chunk_index * BATCH + i) as i64);
            }
            let started = Instant::now();
            operator.ingest(&batch, watermark);
            ingest_seconds += started.elapsed().as_secs_f64();
            watermark = watermark.max(chunk.last().unwrap().event_time_us);
            let started = Instant::now();
            for window in operator.take_ready(watermark, false) {
                std::hint::black_box(evaluate(&mapping, &reference, &window.data));
                emitted += 1;
            }
            operator.evict(watermark);
            close_seconds += started.elapsed().as_secs_f64();
            peak_panes = peak_panes.max(operator.panes());
            if (chunk_index + 1) % 10 == 0 {
                let rss = resident_memory_bytes().unwrap_or(0) as f64 / MIB;
                println!(
                    "| {} | {rss:.1} | {} | {emitted} |",
                    (chunk_index + 1) * BATCH,
                    operator.panes()
                );
            }
        }
        let per_event_ns = ingest_seconds / events.len() as f64 * 1e9;
        summary.push((spec_text, per_event_ns, close_seconds, emitted, peak_panes));
        println!();
    }
    println!("| window | open at once | ingest ns/event | windows emitted | close time per window (µs) | peak panes |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (spec_text, per_event_ns, close_seconds, emitted, peak_panes) in summary {
        let spec = WindowSpec::parse(spec_text).unwrap();
        println!(
            "| {spec_text} | {} | {per_event_ns:.0} | {emitted} | {:.0} | {peak_panes} |",
            spec.size_us / spec.step_us,
            close_seconds / emitted.max(1) as f64 * 1e6
        );
    }
}
