//! The alert rules' state on a topic of its own (`--alert-state-topic`), so a restarted
//! monitor or merger goes on with the streaks it had (`crate::alerts`). Each record is one
//! rule's whole state, keyed by consumer group, monitor and rule: the latest record per key is
//! the state, so the topic may be compacted. At start the topic is read from its beginning to
//! its end once (it holds one small record per rule per emitted window of its shape).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use streamwatch_common::kafka::KafkaArgs;

use crate::alerts::{Alerts, RuleState};
use crate::outputs::Outputs;
use crate::{MonitorError, Result};

/// How long reading the topic back at start may take before the monitor gives up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one monitor deployment (its consumer group) keeps its rules' state.
pub struct AlertStateTopic {
    outputs: Outputs,
    /// `group/monitor/`: the key of each rule's record is this and the rule's name.
    prefix: String,
}

impl AlertStateTopic {
    /// None when `topic` is empty (the streaks then live in memory only).
    /// Records go through `outputs`' producer and checkpoints, so the state a batch
    /// changed is acknowledged before its offsets are stored.
    pub fn new(outputs: &Outputs, topic: &str, group: &str, monitor: &str) -> Option<Self> {
        (!topic.is_empty()).then(|| Self {
            outputs: outputs.for_topic(topic),
            prefix: format!("{group}/{monitor}/"),
        })
    }

    /// Reads the topic back and hands the latest state of each rule to `alerts`.
    pub async fn restore(&self, kafka: &KafkaArgs, alerts: &mut Alerts) -> Result<()> {
        let (kafka, topic, prefix) = (
            kafka.clone(),
            self.outputs.topic().to_owned(),
            self.prefix.clone(),
        );
        let states = tokio::task::spawn_blocking(move || load(&kafka, &topic, &prefix))
            .await
            .expect("reading the alert state does not panic")?;
        let restored = alerts.restore(&states);
        tracing::info!(
            topic = %self.outputs.topic(),
            records = states.len(),
            restored,
            "alert rules' state read back"
        );
        Ok(())
    }

    /// Sends the state of every rule that changed: call it after the batch's transitions
    /// were published and before its offsets' checkpoint.
    pub async fn save(&self, alerts: &mut Alerts) -> Result<()> {
        for state in alerts.take_changed() {
            let key = format!("{}{}", self.prefix, state.rule);
            self.outputs.publish_json(&key, &state).await?;
        }
        Ok(())
    }
}

/// The latest state per rule under `prefix` in `topic` (none when the topic does not exist).
fn load(kafka: &KafkaArgs, topic: &str, prefix: &str) -> Result<Vec<RuleState>> {
    let mut config = kafka.client_config()?;
    // librdkafka assigns partitions only to a consumer with a group; this one never joins it
    // (no subscription) and commits nothing.
    config
        .set("group.id", format!("{prefix}alert-state-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), kafka.connect_timeout())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // Per partition, the offset the reading must reach.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, kafka.connect_timeout())?;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            remaining.insert(partition, high);
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut latest: HashMap<String, RuleState> = HashMap::new();
    let deadline = Instant::now() + LOAD_TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(MonitorError::Config(format!(
                "alert-state topic {topic}: not read to its end within {LOAD_TIMEOUT:?}"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        if remaining
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            remaining.remove(&message.partition());
        }
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        if !key.starts_with(prefix) {
            continue;
        }
        match serde_json::from_slice::<RuleState>(message.payload().unwrap_or_default()) {
            Ok(state) => {
                latest.insert(key.to_owned(), state);
            }
            Err(error) => tracing::warn!(
                topic,
                partition = message.partition(),
                offset = message.offset(),
                %error,
                "unreadable alert state skipped"
            ),
        }
    }
    Ok(latest.into_values().collect())
}
