//! For tests against a real broker: skip when none is configured, and name topics and groups
//! so that runs never share them.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::kafka::KafkaArgs;

/// Settings for the brokers in `KAFKA_BROKERS`; `None`, after printing that `test` is skipped,
/// when it is unset.
pub fn kafka_from_env(test: &str) -> Option<KafkaArgs> {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => Some(KafkaArgs::for_brokers(&brokers)),
        _ => {
            eprintln!(
                "SKIPPED {test}: KAFKA_BROKERS is not set (eval \"$(scripts/services.sh up)\"; export KAFKA_BROKERS)"
            );
            None
        }
    }
}

/// A topic or group name of this process alone: `test-{scope}-{name}-{pid}-{nanos}`.
pub fn unique_name(scope: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    format!("test-{scope}-{name}-{}-{nanos}", std::process::id())
}
