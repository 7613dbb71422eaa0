//! Logging and the admin port: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Args;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
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
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Error::MetricsRecorder(e.to_string()))?;
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
