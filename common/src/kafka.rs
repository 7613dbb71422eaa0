//! Kafka client settings shared by every stage, settable from flags or the environment, and
//! the consumer context that turns librdkafka statistics into consumer-lag gauges.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::{Error, Result};

/// Connection and security settings for the Kafka cluster.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers (host:port).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,

    /// Security protocol: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "plaintext")]
    pub security_protocol: String,

    /// SASL mechanism when SASL is used (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,

    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    /// File holding the SASL password (secrets are read from files or the environment, never flags).
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<String>,

    /// CA certificate file (PEM) to verify the brokers with TLS.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,

    /// Extra librdkafka properties as comma-separated key=value pairs (for example `linger.ms=20`).
    #[arg(long, env = "KAFKA_EXTRA_CONFIG", default_value = "")]
    pub extra_config: String,

    /// How often consumers publish librdkafka statistics (the consumer-lag gauges), in
    /// milliseconds; 0 turns them off.
    #[arg(
        long = "kafka-statistics-interval-ms",
        env = "KAFKA_STATISTICS_INTERVAL_MS",
        default_value_t = DEFAULT_STATISTICS_INTERVAL_MS
    )]
    pub statistics_interval_ms: u64,

    /// How long a stage waits at start for a broker to answer before it exits with an error,
    /// in seconds. A stage started while the broker restarts waits for it instead of failing.
    #[arg(
        long = "kafka-connect-timeout-seconds",
        env = "KAFKA_CONNECT_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    pub connect_timeout_seconds: u64,
}

/// Default of [`KafkaArgs::statistics_interval_ms`].
pub const DEFAULT_STATISTICS_INTERVAL_MS: u64 = 5000;

/// The longest single metadata request of [`KafkaArgs::check_reachable`]; it asks again
/// until the connect timeout has passed.
const PROBE_ATTEMPT: Duration = Duration::from_secs(5);

/// Gauge of the messages between a partition's high watermark and the group's committed
/// offset, labelled `stage`, `topic`, `partition`.
pub const CONSUMER_LAG: &str = "streamwatch_consumer_lag";
/// Gauge of the sum of [`CONSUMER_LAG`] over a consumer's assigned partitions, labelled `stage`.
pub const CONSUMER_LAG_TOTAL: &str = "streamwatch_consumer_lag_total";

/// A stage's consumer: a [`StreamConsumer`] whose context publishes consumer lag.
pub type StageConsumer = StreamConsumer<StageContext>;

impl KafkaArgs {
    /// The settings for `brokers`, every other option as the command line gives it (its
    /// environment variable, or its default).
    pub fn for_brokers(brokers: &str) -> Self {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kafka: KafkaArgs,
        }
        use clap::Parser as _;
        Cli::parse_from(["streamwatch", "--brokers", brokers]).kafka
    }

    /// Settings common to producers and consumers.
    pub fn client_config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("security.protocol", &self.security_protocol);
        if let Some(mechanism) = &self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism);
        }
        if let Some(user) = &self.sasl_username {
            config.set("sasl.username", user);
        }
        if let Some(password) = self.sasl_password()? {
            config.set("sasl.password", password);
        }
        if let Some(ca) = &self.ssl_ca_location {
            config.set("ssl.ca.location", ca);
        }
        for pair in self
            .extra_config
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            if let Some((key, value)) = pair.split_once('=') {
                config.set(key.trim(), value.trim());
            }
        }
        Ok(config)
    }

    fn sasl_password(&self) -> Result<Option<String>> {
        if let Ok(password) = std::env::var("KAFKA_SASL_PASSWORD") {
            return Ok(Some(password));
        }
        match &self.sasl_password_file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Some(s.trim_end().to_owned()))
                .map_err(|source| Error::SecretFile {
                    path: path.clone(),
                    source,
                }),
        }
    }

    /// A producer that batches for throughput and retries without reordering.
    pub fn producer(&self) -> Result<FutureProducer> {
        self.producer_config()?
            .create()
            .map_err(|source| Error::KafkaClient {
                what: "producer",
                source,
            })
    }

    /// The settings of [`KafkaArgs::producer`], for a producer with its own context.
    pub fn producer_config(&self) -> Result<ClientConfig> {
        let mut config = self.client_config()?;
        config
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("compression.type", "none")
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("message.timeout.ms", "300000");
        Ok(config)
    }

    /// A consumer for `stage` in `group` subscribed to `topics`; offsets are stored by the
    /// stage only after its output was delivered, and committed in the background
    /// (at-least-once). Its [`StageContext`] publishes the consumer-lag gauges.
    pub fn consumer(&self, stage: &str, group: &str, topics: &[&str]) -> Result<StageConsumer> {
        self.stage_consumer(stage, group, topics, false)
    }

    /// Like [`Self::consumer`]; with `partition_eof`, reaching the end of a partition is
    /// reported as `KafkaError::PartitionEOF` (the monitor uses it to tell a caught-up
    /// partition from one with a backlog).
    pub fn stage_consumer(
        &self,
        stage: &str,
        group: &str,
        topics: &[&str],
        partition_eof: bool,
    ) -> Result<StageConsumer> {
        let mut config = self.consumer_config(group, partition_eof)?;
        config.set(
            "statistics.interval.ms",
            self.statistics_interval_ms.to_string(),
        );
        let consumer: StageConsumer = config
            .create_with_context(StageContext::new(stage))
            .map_err(|source| Error::KafkaClient {
                what: "consumer",
                source,
            })?;
        subscribe(&consumer, topics)?;
        Ok(consumer)
    }

    fn consumer_config(&self, group: &str, partition_eof: bool) -> Result<ClientConfig> {
        let mut config = self.client_config()?;
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "enable.partition.eof",
                if partition_eof { "true" } else { "false" },
            )
            // The classic protocol: Tansu never assigns partitions with the new one.
            .set("group.protocol", "classic")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            // A subscription to a topic that does not exist yet is retried at the metadata
            // refresh; librdkafka's default of 5 minutes would stall a freshly started pipeline.
            .set("topic.metadata.refresh.interval.ms", "2000")
            .set("queued.min.messages", "200000")
            // Once its local queue holds `queued.max.messages.kbytes` (64 MiB), librdkafka stops
            // fetching for `fetch.queue.backoff.ms`, 1 s by default: a stage that drains the
            // queue in less time sat idle for the rest of it (the monitor, about 40% of a replay).
            .set("fetch.queue.backoff.ms", "10");
        Ok(config)
    }

    /// How long startup waits for a broker: [`KafkaArgs::connect_timeout_seconds`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    /// Waits until a broker answers; fails with a clear error when none has within the
    /// connect timeout. Blocking.
    pub fn check_reachable(&self) -> Result<()> {
        let config = self.client_config()?;
        let probe: rdkafka::consumer::BaseConsumer =
            config.create().map_err(|source| Error::KafkaClient {
                what: "connectivity probe",
                source,
            })?;
        let deadline = Instant::now() + self.connect_timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match probe.fetch_metadata(None, left.min(PROBE_ATTEMPT)) {
                Ok(_) => return Ok(()),
                Err(source) if Instant::now() >= deadline => {
                    return Err(Error::BrokerUnreachable {
                        brokers: self.brokers.clone(),
                        source,
                    })
                }
                Err(source) => {
                    tracing::warn!(brokers = %self.brokers, error = %source, "no broker answers yet; waiting");
                    std::thread::sleep(Duration::from_millis(500).min(left));
                }
            }
        }
    }
}

impl KafkaArgs {
    /// The number of partitions of `topic` (0 while it does not exist). Blocking.
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> Result<usize> {
        let config = self.client_config()?;
        let probe: rdkafka::consumer::BaseConsumer =
            config.create().map_err(|source| Error::KafkaClient {
                what: "metadata probe",
                source,
            })?;
        let metadata = probe
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| Error::BrokerUnreachable {
                brokers: self.brokers.clone(),
                source,
            })?;
        Ok(partitions_in(&metadata, topic))
    }
}

/// The partition count of `topic` (0 while the broker does not know it), asked over the
/// producer's own connections, on a blocking thread.
pub async fn partition_count_of<C, P>(
    producer: &P,
    topic: &str,
    timeout: Duration,
) -> std::result::Result<usize, KafkaError>
where
    C: ProducerContext + 'static,
    P: Producer<C> + Clone + Send + 'static,
{
    let (client, topic) = (producer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map(|metadata| partitions_in(&metadata, &topic))
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// Queues `record`, waiting for room while the client's queue is full (it drains as the
/// broker acknowledges what is in it); returns the delivery to wait for.
pub async fn queue_record<K, P>(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, K, P>,
) -> std::result::Result<DeliveryFuture, KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// How many partitions `metadata` lists for `topic`: 0 when the broker does not know it.
pub fn partitions_in(metadata: &Metadata, topic: &str) -> usize {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// Stops fetching from the partitions the consumer holds now and from those assigned to it
/// later, until [`resume_fetching`]. (A bare `pause` covers only the current assignment, and
/// librdkafka keeps it through a revocation, so a partition that comes back would stay paused.)
pub fn pause_fetching(consumer: &StageConsumer) -> std::result::Result<(), KafkaError> {
    follow(consumer, true)
}

/// Fetches again from every assigned partition, and from those assigned later.
pub fn resume_fetching(consumer: &StageConsumer) -> std::result::Result<(), KafkaError> {
    follow(consumer, false)
}

/// Records the stage's choice for later assignments, and applies it to the current one.
fn follow(consumer: &StageConsumer, paused: bool) -> std::result::Result<(), KafkaError> {
    consumer
        .context()
        .fetching_paused
        .store(paused, Ordering::SeqCst);
    set_paused(consumer, &consumer.assignment()?, paused)
}

fn set_paused(
    consumer: &impl Consumer<StageContext>,
    partitions: &rdkafka::TopicPartitionList,
    paused: bool,
) -> std::result::Result<(), KafkaError> {
    if paused {
        consumer.pause(partitions)
    } else {
        consumer.resume(partitions)
    }
}

fn subscribe<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    topics: &[&str],
) -> Result<()> {
    consumer
        .subscribe(topics)
        .map_err(|source| Error::Subscribe {
            topic: topics.join(","),
            source,
        })
}

/// The context of a [`StageConsumer`].
///
/// - Every `statistics.interval.ms` it sets [`CONSUMER_LAG`] for each assigned partition from
///   librdkafka's `consumer_lag` (the fetch high watermark, or the last stable offset under
///   `read_committed`, minus the committed offset), and [`CONSUMER_LAG_TOTAL`]. Partitions whose
///   lag librdkafka does not know yet (`-1`: nothing committed or fetched) keep their last value;
///   a revoked partition's gauge drops to 0, as this consumer no longer owes anything on it.
/// - Partition EOFs (`enable.partition.eof`), which librdkafka also reports as client errors,
///   are logged at debug level; transport errors at warn; other errors at error.
pub struct StageContext {
    stage: String,
    lag: Mutex<LagState>,
    /// librdkafka reported every broker down, and no statistics since showed one up.
    brokers_down: AtomicBool,
    /// The stage paused fetching ([`pause_fetching`]); every new assignment follows it.
    fetching_paused: AtomicBool,
    /// Rebalances that took partitions away.
    revocations: AtomicU64,
}

#[derive(Default)]
struct LagState {
    /// Partitions currently assigned to this consumer.
    assigned: BTreeSet<(String, i32)>,
    /// Partitions with a published lag gauge, and that lag.
    published: BTreeMap<(String, i32), i64>,
}

impl StageContext {
    pub fn new(stage: &str) -> Self {
        Self {
            stage: stage.to_owned(),
            lag: Mutex::default(),
            brokers_down: AtomicBool::new(false),
            fetching_paused: AtomicBool::new(false),
            revocations: AtomicU64::new(0),
        }
    }

    /// How many rebalances took partitions away so far: offsets computed before one must not
    /// be stored after it, as the partition may have been re-read since.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    /// The stage named in the gauges' `stage` label.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// False while librdkafka reports every broker down (for `/readyz`); true again once
    /// its statistics show a broker up.
    pub fn brokers_reachable(&self) -> bool {
        !self.brokers_down.load(Ordering::Relaxed)
    }

    /// Messages behind over the assigned partitions, once librdkafka's statistics told it.
    pub fn total_lag(&self) -> Option<i64> {
        let state = self.lock();
        (!state.published.is_empty()).then(|| state.published.values().sum())
    }

    fn lag_gauge(&self, topic: &str, partition: i32) -> metrics::Gauge {
        metrics::gauge!(
            CONSUMER_LAG,
            "stage" => self.stage.clone(),
            "topic" => topic.to_owned(),
            "partition" => partition.to_string()
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LagState> {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the lag of the assigned partitions from one librdkafka statistics document.
    fn publish_lag(&self, stats: &LagStatistics) {
        let mut state = self.lock();
        for (topic, topic_stats) in &stats.topics {
            for partition in topic_stats.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition; a lag of -1 means unknown.
                if partition.partition < 0 || partition.consumer_lag < 0 {
                    continue;
                }
                let key = (topic.clone(), partition.partition);
                if !state.assigned.contains(&key) {
                    continue;
                }
                self.lag_gauge(topic, partition.partition)
                    .set(partition.consumer_lag as f64);
                state.published.insert(key, partition.consumer_lag);
            }
        }
        let total: i64 = state.published.values().sum();
        metrics::gauge!(CONSUMER_LAG_TOTAL, "stage" => self.stage.clone()).set(total as f64);
    }

    fn assign(&self, partitions: &rdkafka::TopicPartitionList) {
        let mut state = self.lock();
        for element in partitions.elements() {
            state
                .assigned
                .insert((element.topic().to_owned(), element.partition()));
        }
    }

    fn revoke(&self, partitions: &rdkafka::TopicPartitionList) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        for element in partitions.elements() {
            let key = (element.topic().to_owned(), element.partition());
            state.assigned.remove(&key);
            if state.published.remove(&key).is_some() {
                self.lag_gauge(&key.0, key.1).set(0.0);
            }
        }
        let total: i64 = state.published.values().sum();
        metrics::gauge!(CONSUMER_LAG_TOTAL, "stage" => self.stage.clone()).set(total as f64);
    }
}

/// The part of librdkafka's statistics JSON the lag gauges need (parsing only this keeps the
/// callback cheap and independent of fields other librdkafka versions add or drop).
#[derive(Debug, Default, Deserialize)]
struct LagStatistics {
    #[serde(default)]
    topics: HashMap<String, TopicLag>,
    /// Per broker connection, its state (`UP`, `DOWN`, `CONNECT`, ...).
    #[serde(default)]
    brokers: HashMap<String, BrokerState>,
}

#[derive(Debug, Default, Deserialize)]
struct BrokerState {
    #[serde(default)]
    state: String,
}

#[derive(Debug, Default, Deserialize)]
struct TopicLag {
    #[serde(default)]
    partitions: HashMap<String, PartitionLag>,
}

#[derive(Debug, Deserialize)]
struct PartitionLag {
    partition: i32,
    #[serde(default = "unknown_lag")]
    consumer_lag: i64,
}

fn unknown_lag() -> i64 {
    -1
}

impl ClientContext for StageContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", stage = %self.stage, "{fac} {log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", stage = %self.stage, "{fac} {log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", stage = %self.stage, "{fac} {log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", stage = %self.stage, "{fac} {log_message}")
            }
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<LagStatistics>(statistics) {
            Ok(stats) => {
                if stats.brokers.values().any(|b| b.state == "UP") {
                    self.brokers_down.store(false, Ordering::Relaxed);
                }
                self.publish_lag(&stats)
            }
            Err(error) => {
                tracing::warn!(stage = %self.stage, %error, "unreadable librdkafka statistics")
            }
        }
    }

    fn stats(&self, _: Statistics) {
        // Everything happens in `stats_raw`, which does not call this.
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let stage = &self.stage;
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        match error.rdkafka_error_code() {
            // Not an error: the consumer caught up with a partition (enable.partition.eof).
            Some(RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!(target: "librdkafka", stage, "partition EOF: {reason}")
            }
            // Connections come and go; librdkafka reconnects by itself.
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve,
            ) => tracing::warn!(target: "librdkafka", stage, %error, "{reason}"),
            _ => tracing::error!(target: "librdkafka", stage, %error, "{reason}"),
        }
    }
}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.assign(partitions);
                // librdkafka keeps a partition's pause through its revocation and reassignment:
                // a partition paused before a rebalance would otherwise stay paused after a
                // resume that came while it was assigned elsewhere.
                let paused = self.fetching_paused.load(Ordering::SeqCst);
                if let Err(error) = set_paused(consumer, partitions, paused) {
                    tracing::warn!(stage = %self.stage, %error, "could not apply the pause to newly assigned partitions");
                }
            }
            Rebalance::Revoke(partitions) => self.revoke(partitions),
            Rebalance::Error(error) => {
                tracing::warn!(stage = %self.stage, %error, "consumer group rebalance failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;
    use rdkafka::TopicPartitionList;

    use super::*;

    /// Trimmed librdkafka statistics: partition -1 (internal), an assigned partition behind, an
    /// assigned partition with nothing committed yet (-1) and an unassigned one.
    const STATS: &str = r#"{
        "name": "rdkafka#consumer-1", "type": "consumer", "ts": 1, "time": 2,
        "topics": {
            "trips": {
                "topic": "trips",
                "partitions": {
                    "-1": {"partition": -1, "consumer_lag": -1},
                    "0": {"partition": 0, "hi_offset": 50, "committed_offset": 8, "consumer_lag": 42},
                    "1": {"partition": 1, "hi_offset": 7, "committed_offset": -1001, "consumer_lag": -1},
                    "2": {"partition": 2, "hi_offset": 9, "committed_offset": 2, "consumer_lag": 7}
                }
            }
        }
    }"#;

    fn partitions(topic: &str, list: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &partition in list {
            tpl.add_partition(topic, partition);
        }
        tpl
    }

    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn lag_gauges_come_from_the_statistics_of_assigned_partitions() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let context = StageContext::new("scorer");
        metrics::with_local_recorder(&recorder, || {
            context.assign(&partitions("trips", &[0, 1]));
            context.stats_raw(STATS.as_bytes());
        });
        let text = handle.render();
        let lag = |p: i32| {
            value(
                &text,
                &format!(
                    r#"streamwatch_consumer_lag{{stage="scorer",topic="trips",partition="{p}"}}"#
                ),
            )
        };
        assert_eq!(lag(0), Some(42.0), "{text}");
        assert_eq!(lag(1), None, "unknown lag is not published: {text}");
        assert_eq!(
            lag(2),
            None,
            "unassigned partition is not published: {text}"
        );
        assert_eq!(lag(-1), None, "{text}");
        assert_eq!(
            value(&text, r#"streamwatch_consumer_lag_total{stage="scorer"}"#),
            Some(42.0),
            "{text}"
        );

        // Revoked: this consumer owes nothing on it any more, and later statistics that still
        // list it do not bring it back.
        metrics::with_local_recorder(&recorder, || {
            context.revoke(&partitions("trips", &[0, 1]));
            context.stats_raw(STATS.as_bytes());
        });
        let text = handle.render();
        assert_eq!(
            value(
                &text,
                r#"streamwatch_consumer_lag{stage="scorer",topic="trips",partition="0"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"streamwatch_consumer_lag_total{stage="scorer"}"#),
            Some(0.0),
            "{text}"
        );
    }

    #[test]
    fn unreadable_statistics_change_nothing() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let context = StageContext::new("sink");
        metrics::with_local_recorder(&recorder, || {
            context.assign(&partitions("trips", &[0]));
            context.stats_raw(b"{not json");
            context.stats_raw(br#"{"topics": {}}"#);
        });
        let text = handle.render();
        assert!(!text.contains("streamwatch_consumer_lag{"), "{text}");
    }

    /// Collects what a `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partition_eof_is_logged_at_debug_and_real_errors_stay_loud() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let context = StageContext::new("monitor");
        tracing::subscriber::with_default(subscriber, || {
            context.error(
                KafkaError::Global(RDKafkaErrorCode::PartitionEOF),
                "Fetch from broker 1 reached end of partition at offset 42",
            );
            context.error(
                KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:9092/1: Disconnected",
            );
            context.error(
                KafkaError::Global(RDKafkaErrorCode::UnknownTopicOrPartition),
                "Subscribed topic not available",
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let level_of = |needle: &str| {
            let line = text
                .lines()
                .find(|line| line.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"));
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .into_iter()
                .find(|level| line.contains(level))
                .unwrap_or_else(|| panic!("no level in {line:?}"))
        };
        assert_eq!(level_of("reached end of partition"), "DEBUG", "{text}");
        assert_eq!(level_of("Disconnected"), "WARN", "{text}");
        assert_eq!(
            level_of("Subscribed topic not available"),
            "ERROR",
            "{text}"
        );
    }

    #[test]
    fn brokers_are_unreachable_from_all_brokers_down_until_statistics_show_one_up() {
        let context = StageContext::new("monitor");
        assert!(context.brokers_reachable());
        context.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(!context.brokers_reachable());
        context.stats_raw(br#"{"brokers": {"127.0.0.1:9092/1": {"state": "DOWN"}}}"#);
        assert!(!context.brokers_reachable());
        context.stats_raw(br#"{"brokers": {"127.0.0.1:9092/1": {"state": "UP"}}}"#);
        assert!(context.brokers_reachable());
    }

    /// librdkafka refuses `security.protocol=ssl`/`sasl_ssl` and SCRAM when it was built
    /// without OpenSSL: the settings users set from the environment must create clients.
    #[test]
    fn tls_and_sasl_settings_create_clients() {
        let secret = std::env::temp_dir().join(format!("sw-sasl-{}", std::process::id()));
        std::fs::write(&secret, "s3cret\n").unwrap();
        for (protocol, mechanism) in [
            ("ssl", None),
            ("sasl_ssl", Some("SCRAM-SHA-512")),
            ("sasl_plaintext", Some("PLAIN")),
        ] {
            let args = KafkaArgs {
                brokers: "127.0.0.1:1".into(),
                security_protocol: protocol.into(),
                sasl_mechanism: mechanism.map(str::to_owned),
                sasl_username: mechanism.map(|_| "monitor".to_owned()),
                sasl_password_file: mechanism.map(|_| secret.display().to_string()),
                ssl_ca_location: None,
                extra_config: String::new(),
                statistics_interval_ms: 0,
                connect_timeout_seconds: 1,
            };
            let created: std::result::Result<rdkafka::producer::BaseProducer, _> =
                args.client_config().unwrap().create();
            assert!(created.is_ok(), "{protocol}: {:?}", created.err());
        }
        std::fs::remove_file(secret).unwrap();
    }

    #[test]
    fn statistics_interval_is_a_flag_with_a_default() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kafka: KafkaArgs,
        }
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["test"]).unwrap();
        assert_eq!(
            cli.kafka.statistics_interval_ms,
            DEFAULT_STATISTICS_INTERVAL_MS
        );
        let cli = Cli::try_parse_from(["test", "--kafka-statistics-interval-ms", "0"]).unwrap();
        assert_eq!(cli.kafka.statistics_interval_ms, 0);
    }
}
