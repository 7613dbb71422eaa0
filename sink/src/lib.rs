//! The sink: consumes the monitor's metric rows from Kafka and upserts them into PostgreSQL,
//! where Grafana reads them (`window_metrics`, `column_drift`, `column_quantiles` and the
//! course-compatible view `dummy_metrics`), and renders them as a self-contained HTML report
//! (`report`).

pub mod config;
pub mod error;
pub mod grafana;
pub mod migrations;
pub mod report;
pub mod service;
pub mod sink;

use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};
use streamwatch_common::deadletter::DeadLetters;
use streamwatch_common::telemetry::{serve_admin, Readiness};
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use crate::config::{Backoff, DatabaseArgs, RunArgs};
use crate::migrations::MigrationReport;
use crate::service::MetricStore;
use crate::sink::{Health, LoopSettings, LoopStats, MetricSink, STAGE};

/// `sink migrate`: applies the migrations the database lacks.
pub async fn migrate(args: &DatabaseArgs) -> Result<MigrationReport> {
    let store = MetricStore::from_args(args)?;
    store.ping().await?;
    migrations::apply(&store).await
}

/// `sink run`: migrations, then the consume loop until `shutdown` fires.
pub async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<LoopStats> {
    let readiness = Readiness::default();
    serve_admin(STAGE, &args.admin, readiness.clone(), shutdown.clone()).await?;
    let health = Health::new(readiness);

    let store = MetricStore::from_args(&args.database)?;
    let Some(report) = wait_for_database(&store, &args.backoff(), &shutdown).await? else {
        return Ok(LoopStats::default());
    };
    tracing::info!(database = store.target(), %report, "migrations checked");
    health.set_database(true);

    let kafka = args.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_reachable())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    health.set_broker(true);

    let consumer = args.kafka.consumer(STAGE, &args.group, &[&args.topic])?;
    let producer = args.kafka.producer()?;
    let dead_letters = DeadLetters::new(producer.clone(), &args.dead_letter_topic, STAGE);
    tokio::spawn(probe(
        store.clone(),
        producer,
        args.topic.clone(),
        health.clone(),
        Duration::from_secs(args.probe_interval),
        shutdown.clone(),
    ));
    tracing::info!(topic = %args.topic, group = %args.group, database = store.target(), "consuming metric rows");
    let settings = LoopSettings {
        topic: args.topic.clone(),
        batch_size: args.batch_size as usize,
        backoff: args.backoff(),
    };
    let stats = MetricSink::new(consumer, dead_letters, store, health, settings)
        .run(shutdown)
        .await;
    tracing::info!(
        messages = stats.messages,
        applied = stats.applied,
        stale = stats.stale,
        dead_lettered = stats.dead_lettered,
        database_retries = stats.database_retries,
        "sink stopped"
    );
    Ok(stats)
}

/// Connects and applies the migrations, retrying with backoff while the database is
/// unavailable (a sink restarted during an outage waits rather than exits); `None` when
/// shutdown came first.
async fn wait_for_database(
    store: &MetricStore,
    backoff: &Backoff,
    shutdown: &CancellationToken,
) -> Result<Option<MigrationReport>> {
    let mut attempt = 0;
    loop {
        let result = match store.ping().await {
            Ok(()) => migrations::apply(store).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(report) => return Ok(Some(report)),
            Err(error) if error.is_unavailable() => {
                attempt += 1;
                let delay = backoff.delay(attempt);
                tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "database unavailable at start; waiting");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// Keeps `/readyz` current: the database answers `SELECT 1`, the broker answers a metadata request.
async fn probe(
    store: MetricStore,
    producer: FutureProducer,
    topic: String,
    health: Health,
    every: Duration,
    shutdown: CancellationToken,
) {
    let timeout = every.min(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let database = matches!(
            tokio::time::timeout(timeout, store.ping()).await,
            Ok(Ok(()))
        );
        let client = producer.clone();
        let topic = topic.clone();
        let broker = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        health.set_database(database);
        health.set_broker(broker);
    }
}
