//! Logging and the admin port: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Args;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::{Error, Result};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr must not panic the process (tracing reports failed writes with
        // `eprintln!`, which panics on a closed pipe).
        .log_internal_errors(false)
        .try_init();
}

/// Histogram of each stage's processing time per message or batch, in seconds, labelled `stage`.
pub const PROCESSING_SECONDS: &str = "streamwatch_processing_seconds";
/// Counter of the events (messages, rows) a stage produced or wrote, labelled `stage`.
pub const EVENTS_OUT_TOTAL: &str = "streamwatch_events_out_total";
/// Counter of the events a stage consumed, labelled `stage`.
pub const EVENTS_IN_TOTAL: &str = "streamwatch_events_in_total";

/// Upper bounds (seconds) of the buckets of every histogram whose name ends in `_seconds`:
/// 100 µs to 60 s, roughly 1-2.5-5 per decade (plus `+Inf`, which Prometheus adds).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// How often the recorder drains histogram samples into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The Prometheus recorder settings every stage uses: histograms named `*_seconds` render as
/// Prometheus histograms with [`SECONDS_BUCKETS`] (`_bucket{le=...}`, `_sum`, `_count`); other
/// histograms (row counts) stay summaries.
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .expect("SECONDS_BUCKETS is not empty")
}

/// Where the admin endpoints listen.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Address of the admin HTTP server (`/healthz`, `/readyz`, `/metrics`); port 0 disables it.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:0")]
    pub admin_addr: SocketAddr,
}

/// Readiness the stage reports on `/readyz` (its broker and database reachable).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AdminState {
    handle: PrometheusHandle,
    readiness: Readiness,
    started: Instant,
    stage: &'static str,
}

/// Installs the Prometheus recorder and, unless the port is 0, serves the admin endpoints
/// until `shutdown` fires. Returns the bound address, if any.
pub async fn serve_admin(
    stage: &'static str,
    args: &AdminArgs,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<Option<SocketAddr>> {
    let handle = prometheus_builder()
        .install_recorder()
        .map_err(|e| Error::MetricsRecorder(e.to_string()))?;
    // `install_recorder` starts no upkeep task: without one, histogram samples pile up
    // between scrapes (forever when the admin port is off).
    tokio::spawn({
        let (handle, shutdown) = (handle.clone(), shutdown.clone());
        async move {
            let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => handle.run_upkeep(),
                }
            }
        }
    });
    if args.admin_addr.port() == 0 {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(|source| Error::AdminBind {
            addr: args.admin_addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::AdminBind {
        addr: args.admin_addr,
        source,
    })?;
    let state = AdminState {
        handle,
        readiness,
        started: Instant::now(),
        stage,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus_metrics))
        .with_state(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin server stopped");
        }
    });
    tracing::info!(%addr, stage, "admin server listening");
    Ok(Some(addr))
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn prometheus_metrics(State(state): State<AdminState>) -> String {
    metrics::gauge!("streamwatch_uptime_seconds", "stage" => state.stage)
        .set(state.started.elapsed().as_secs_f64());
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!("streamwatch_resident_memory_bytes", "stage" => state.stage)
            .set(rss as f64);
    }
    state.handle.render()
}

/// Resident set size of this process, from `/proc/self/statm` (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_histograms_render_with_buckets() {
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let histogram = metrics::histogram!(PROCESSING_SECONDS, "stage" => "test");
            histogram.record(0.003);
            histogram.record(0.2);
            histogram.record(120.0);
            metrics::histogram!("streamwatch_test_batch_rows").record(10.0);
        });
        let text = handle.render();
        assert!(
            text.contains("# TYPE streamwatch_processing_seconds histogram"),
            "{text}"
        );
        for line in [
            r#"streamwatch_processing_seconds_bucket{stage="test",le="0.0001"} 0"#,
            r#"streamwatch_processing_seconds_bucket{stage="test",le="0.005"} 1"#,
            r#"streamwatch_processing_seconds_bucket{stage="test",le="0.25"} 2"#,
            r#"streamwatch_processing_seconds_bucket{stage="test",le="60"} 2"#,
            r#"streamwatch_processing_seconds_bucket{stage="test",le="+Inf"} 3"#,
            r#"streamwatch_processing_seconds_count{stage="test"} 3"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
        // Histograms not measured in seconds keep their summary quantiles.
        assert!(
            text.contains("# TYPE streamwatch_test_batch_rows summary"),
            "{text}"
        );
    }

    #[test]
    fn seconds_buckets_are_increasing_and_span_100us_to_60s() {
        assert!(SECONDS_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(SECONDS_BUCKETS.first(), Some(&0.0001));
        assert_eq!(SECONDS_BUCKETS.last(), Some(&60.0));
    }
}
