//! Kafka client settings shared by every stage, settable from flags or the environment.

use std::time::Duration;

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

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
}

impl KafkaArgs {
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
        config.create().map_err(|source| Error::KafkaClient {
            what: "producer",
            source,
        })
    }

    /// A consumer in `group` subscribed to `topics`; offsets are stored by the stage only
    /// after its output was delivered, and committed in the background (at-least-once).
    pub fn consumer(&self, group: &str, topics: &[&str]) -> Result<StreamConsumer> {
        self.consumer_reporting_eof(group, topics, false)
    }

    /// Like [`Self::consumer`]; with `partition_eof`, reaching the end of a partition is
    /// reported as `KafkaError::PartitionEOF` (the monitor uses it to tell a caught-up
    /// partition from one with a backlog).
    pub fn consumer_reporting_eof(
        &self,
        group: &str,
        topics: &[&str],
        partition_eof: bool,
    ) -> Result<StreamConsumer> {
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
            .set("queued.min.messages", "200000");
        let consumer: StreamConsumer = config.create().map_err(|source| Error::KafkaClient {
            what: "consumer",
            source,
        })?;
        consumer
            .subscribe(topics)
            .map_err(|source| Error::Subscribe {
                topic: topics.join(","),
                source,
            })?;
        Ok(consumer)
    }

    /// Fails with a clear error when no broker answers within `timeout`.
    pub fn check_reachable(&self, timeout: Duration) -> Result<()> {
        let config = self.client_config()?;
        let probe: rdkafka::consumer::BaseConsumer =
            config.create().map_err(|source| Error::KafkaClient {
                what: "connectivity probe",
                source,
            })?;
        probe
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|source| Error::BrokerUnreachable {
                brokers: self.brokers.clone(),
                source,
            })
    }
}
