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

use crate::config::{DatabaseArgs, RunArgs};
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
    store.ping().await?;
    let report = migrations::apply(&store).await?;
    tracing::info!(database = store.target(), %report, "migrations checked");
    health.set_database(true);

    let kafka = args.kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check_reachable(Duration::from_secs(10)))
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
