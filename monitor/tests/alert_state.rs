//! The alert rules' state through a real broker (`KAFKA_BROKERS`; skipped when unset): what
//! one process saved, the next one of the same group takes up, and goes on with the streak;
//! another group's state is not taken.

use chrono::Utc;
use streamwatch_common::events::{parse_timestamp, AlertState, MetricRow, WindowKey};
use streamwatch_common::spec::AlertSpec;
use streamwatch_common::testing::{kafka_from_env, unique_name};
use streamwatch_monitor::alert_state::AlertStateTopic;
use streamwatch_monitor::alerts::Alerts;
use streamwatch_monitor::outputs::Outputs;

/// The update horizon the rules are kept for (µs).
const DAY: i64 = 86_400_000_000;

/// A daily window row of February 2022 with `drifted` drifted columns.
fn row(day: u32, drifted: u32) -> MetricRow {
    let start = parse_timestamp(&format!("2022-02-{day:02}T00:00:00")).unwrap();
    MetricRow {
        row_count: 10,
        number_of_columns: 3,
        share_of_missing_values: Some(0.0),
        number_of_drifted_columns: drifted,
        share_of_drifted_columns: f64::from(drifted) / 3.0,
        ..MetricRow::empty(WindowKey::tumbling("taxi", start, 86_400), Utc::now())
    }
}

fn rules() -> Vec<AlertSpec> {
    vec![AlertSpec {
        name: "drifted".into(),
        metric: "number_of_drifted_columns".into(),
        window: "1d".into(),
        op: ">=".into(),
        threshold: 2.0,
        for_windows: 2,
    }]
}

#[tokio::test]
async fn a_restarted_process_goes_on_with_its_groups_streaks() {
    let Some(kafka) = kafka_from_env("alert_state") else {
        return;
    };
    let topic = unique_name("monitor", "alert-state");
    let outputs = Outputs::new(kafka.producer().unwrap(), "metrics");
    let state = |group: &str| AlertStateTopic::new(&outputs, &topic, group, "taxi").unwrap();

    // Nothing saved yet: the topic does not even exist.
    let mut first = Alerts::new(&rules(), DAY).unwrap();
    state("group-a").restore(&kafka, &mut first).await.unwrap();
    assert!(first.on_window(&row(1, 3)).is_empty());
    let fired = first.on_window(&row(2, 3));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].state, AlertState::Firing);
    state("group-a").save(&mut first).await.unwrap();
    outputs.wait_sent().await.unwrap();
    // Another deployment's state under the same monitor name, saved after.
    let mut other = Alerts::new(&rules(), DAY).unwrap();
    other.on_window(&row(2, 0));
    state("group-b").save(&mut other).await.unwrap();
    outputs.wait_sent().await.unwrap();

    // Restarted: day 2 is emitted again (no second firing), day 3 resolves the alert.
    let mut restarted = Alerts::new(&rules(), DAY).unwrap();
    state("group-a")
        .restore(&kafka, &mut restarted)
        .await
        .unwrap();
    assert!(
        restarted.on_window(&row(2, 3)).is_empty(),
        "fired before the restart"
    );
    let resolved = restarted.on_window(&row(3, 0));
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, AlertState::Resolved);

    // Without the state the same windows fire again: the state is what made the difference.
    let mut forgetful = Alerts::new(&rules(), DAY).unwrap();
    state("group-c")
        .restore(&kafka, &mut forgetful)
        .await
        .unwrap();
    forgetful.on_window(&row(1, 3));
    assert_eq!(forgetful.on_window(&row(2, 3)).len(), 1);
}
