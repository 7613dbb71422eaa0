//! Alert rules from the spec: a metric of one window shape compared with a threshold; a rule
//! fires when that many consecutive windows breach it, and resolves at the first window that
//! does not. Only the transitions are reported, as alert records on the metrics topic.
//!
//! The transitions are a function of the latest revision of each window: a revision that
//! changes a window's breach takes the rule's streaks up again from that window, and every
//! transition that changes is reported again, a vanished one as `retracted` (the `alerts` rows
//! are upserts per rule and window, and a retraction removes one). So a window first reported
//! from part of its events, which fires or resolves a rule its complete revision does not,
//! leaves nothing behind once the complete revision is in.
//!
//! A rule's state (its recent windows' breaches and transitions) outlives the process when an
//! alert-state topic is set (`crate::alert_state`): it is published after the transitions of
//! a batch and before its offsets are stored, and read back at start. Windows a restarted
//! monitor rebuilds and emits again then change nothing unless their metrics differ. The
//! state keeps the windows whose revisions can still come (the update horizon) and the streak
//! before them; a revision of a window older than that makes no transition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use streamwatch_common::events::{AlertEvent, AlertState, MetricRow, PerformanceReport};
use streamwatch_common::spec::AlertSpec;

use crate::window::WindowSpec;
use crate::{MonitorError, Result};

/// Metrics a rule can watch, from window rows or performance reports.
const METRICS: [&str; 9] = [
    "prediction_drift",
    "prediction_drift_detected",
    "number_of_drifted_columns",
    "share_of_drifted_columns",
    "dataset_drift",
    "share_of_missing_values",
    "mae",
    "rmse",
    "worst_mae_ratio",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Above,
    AtLeast,
    Below,
    AtMost,
}

impl Comparison {
    fn parse(text: &str) -> Option<Self> {
        match text {
            ">" => Some(Self::Above),
            ">=" => Some(Self::AtLeast),
            "<" => Some(Self::Below),
            "<=" => Some(Self::AtMost),
            _ => None,
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::AtLeast => value >= threshold,
            Self::Below => value < threshold,
            Self::AtMost => value <= threshold,
        }
    }
}

#[derive(Debug)]
struct Rule {
    spec: AlertSpec,
    window: WindowSpec,
    comparison: Comparison,
    /// Whether each recent window (by start) breached the rule, and the value.
    breaches: BTreeMap<i64, (bool, Option<f64>)>,
    /// The transitions reported at those windows, with the value there.
    transitions: BTreeMap<i64, (AlertState, Option<f64>)>,
    /// Windows starting before this were forgotten; `firing_before` is the rule's state there.
    forgotten_before: Option<i64>,
    /// The window the rule fired at, if it was firing before the kept windows.
    firing_before: Option<i64>,
    /// How far before the newest window revisions can still come (µs).
    retention_us: i64,
    /// Changed since its state was last taken ([`Alerts::take_changed`]).
    changed: bool,
}

/// A rule's state as the alert-state topic keeps it; the rule's definition is part of it, so
/// a changed rule starts afresh instead of taking another rule's streak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub rule: String,
    pub metric: String,
    pub window: String,
    pub op: String,
    pub threshold: f64,
    pub for_windows: u32,
    /// (window start in µs, breached, value), oldest first.
    pub breaches: Vec<(i64, bool, Option<f64>)>,
    /// (window start in µs, transition, value), oldest first.
    pub transitions: Vec<(i64, AlertState, Option<f64>)>,
    pub forgotten_before: Option<i64>,
    pub firing_before: Option<i64>,
}

impl Rule {
    fn state(&self) -> RuleState {
        RuleState {
            rule: self.spec.name.clone(),
            metric: self.spec.metric.clone(),
            window: self.spec.window.clone(),
            op: self.spec.op.clone(),
            threshold: self.spec.threshold,
            for_windows: self.spec.for_windows,
            breaches: self
                .breaches
                .iter()
                .map(|(start, (breached, value))| (*start, *breached, *value))
                .collect(),
            transitions: self
                .transitions
                .iter()
                .map(|(start, (state, value))| (*start, *state, *value))
                .collect(),
            forgotten_before: self.forgotten_before,
            firing_before: self.firing_before,
        }
    }

    fn defined_as(&self, state: &RuleState) -> bool {
        let spec = &self.spec;
        spec.name == state.rule
            && spec.metric == state.metric
            && spec.window == state.window
            && spec.op == state.op
            && spec.threshold.to_bits() == state.threshold.to_bits()
            && spec.for_windows == state.for_windows
    }
}

/// The rules of one monitor and their state.
#[derive(Debug, Default)]
pub struct Alerts {
    rules: Vec<Rule>,
}

/// A metric value read from a record, by the rule's metric name.
fn window_value(metric: &str, row: &MetricRow) -> Option<f64> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    match metric {
        "prediction_drift" => row.prediction_drift.as_ref().and_then(|d| d.score),
        "prediction_drift_detected" => row
            .prediction_drift
            .as_ref()
            .map(|d| flag(d.drift_detected)),
        "number_of_drifted_columns" => Some(f64::from(row.number_of_drifted_columns)),
        "share_of_drifted_columns" => Some(row.share_of_drifted_columns),
        "dataset_drift" => Some(flag(row.dataset_drift)),
        "share_of_missing_values" => row.share_of_missing_values,
        _ => None,
    }
}

fn performance_value(metric: &str, report: &PerformanceReport) -> Option<f64> {
    let metrics = report.overall.metrics.as_ref();
    match metric {
        "mae" => metrics.map(|m| m.mae),
        "rmse" => metrics.map(|m| m.rmse),
        "worst_mae_ratio" => report.worst_mae_ratio,
        _ => None,
    }
}

fn is_performance(metric: &str) -> bool {
    matches!(metric, "mae" | "rmse" | "worst_mae_ratio")
}

impl Alerts {
    /// `horizon_us`: how long after its end a window can still be revised (the update horizon).
    pub fn new(specs: &[AlertSpec], horizon_us: i64) -> Result<Self> {
        let rules = specs
            .iter()
            .map(|spec| {
                let fail = |reason: String| {
                    MonitorError::Config(format!("alert {:?}: {reason}", spec.name))
                };
                if !METRICS.contains(&spec.metric.as_str()) {
                    return Err(fail(format!(
                        "unknown metric {:?} (one of {})",
                        spec.metric,
                        METRICS.join(", ")
                    )));
                }
                let comparison = Comparison::parse(&spec.op)
                    .ok_or_else(|| fail(format!("op {:?} is not >, >=, < or <=", spec.op)))?;
                if spec.for_windows == 0 {
                    return Err(fail("for_windows must be at least 1".into()));
                }
                let window = WindowSpec::parse(&spec.window)?;
                // A revisable window starts after the newest closed one's start minus the
                // horizon; its streak reaches `for_windows` steps further back.
                let retention_us = horizon_us
                    .saturating_add(window.size_us)
                    .saturating_add(window.step_us.saturating_mul(i64::from(spec.for_windows)));
                Ok(Rule {
                    window,
                    spec: spec.clone(),
                    comparison,
                    breaches: BTreeMap::new(),
                    transitions: BTreeMap::new(),
                    forgotten_before: None,
                    firing_before: None,
                    retention_us,
                    changed: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { rules })
    }

    /// No rules: nothing to evaluate or keep.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Takes up the states read back from the alert-state topic; a state whose rule is gone
    /// or defined differently now is ignored. Returns how many were taken up.
    pub fn restore(&mut self, states: &[RuleState]) -> usize {
        let mut restored = 0;
        for state in states {
            if let Some(rule) = self.rules.iter_mut().find(|r| r.defined_as(state)) {
                rule.breaches = state
                    .breaches
                    .iter()
                    .map(|(start, breached, value)| (*start, (*breached, *value)))
                    .collect();
                rule.transitions = state
                    .transitions
                    .iter()
                    .map(|(start, transition, value)| (*start, (*transition, *value)))
                    .collect();
                rule.forgotten_before = state.forgotten_before;
                rule.firing_before = state.firing_before;
                restored += 1;
            }
        }
        restored
    }

    /// The states of the rules that changed since the last call.
    pub fn take_changed(&mut self) -> Vec<RuleState> {
        self.rules
            .iter_mut()
            .filter_map(|rule| std::mem::take(&mut rule.changed).then(|| rule.state()))
            .collect()
    }

    /// Evaluates the rules watching this window row; returns the transitions.
    pub fn on_window(&mut self, row: &MetricRow) -> Vec<AlertEvent> {
        self.observe(row, |metric| {
            (!is_performance(metric)).then(|| window_value(metric, row))
        })
    }

    /// Evaluates the rules watching performance; returns the transitions.
    pub fn on_performance(&mut self, report: &PerformanceReport) -> Vec<AlertEvent> {
        let row_window = &report.window;
        self.observe_key(row_window, |metric| {
            is_performance(metric).then(|| performance_value(metric, report))
        })
    }

    fn observe(
        &mut self,
        row: &MetricRow,
        value: impl Fn(&str) -> Option<Option<f64>>,
    ) -> Vec<AlertEvent> {
        self.observe_key(&row.window, value)
    }

    fn observe_key(
        &mut self,
        window: &streamwatch_common::events::WindowKey,
        value: impl Fn(&str) -> Option<Option<f64>>,
    ) -> Vec<AlertEvent> {
        let start = window.start.and_utc().timestamp_micros();
        let mut events = Vec::new();
        for rule in &mut self.rules {
            if rule.window.size_us != window.size_seconds * 1_000_000
                || rule.window.step_us != window.step_seconds * 1_000_000
            {
                continue;
            }
            let Some(current) = value(&rule.spec.metric) else {
                continue;
            };
            if rule.forgotten_before.is_some_and(|before| start < before) {
                continue;
            }
            let breached = current.is_some_and(|v| rule.comparison.holds(v, rule.spec.threshold));
            rule.breaches.insert(start, (breached, current));
            rule.changed = true;
            for (at, state, value) in rule.reevaluate_from(start) {
                let mut window = window.clone();
                let shift = chrono::Duration::microseconds(at - start);
                window.start += shift;
                window.end += shift;
                events.push(AlertEvent {
                    rule: rule.spec.name.clone(),
                    metric: rule.spec.metric.clone(),
                    op: rule.spec.op.clone(),
                    threshold: rule.spec.threshold,
                    for_windows: rule.spec.for_windows,
                    window,
                    state,
                    value,
                    emitted_at: chrono::Utc::now(),
                });
            }
            rule.forget_old();
        }
        events
    }
}

impl Rule {
    /// Takes the streaks up again from the window at `from` to the newest one; returns the
    /// transitions that changed (window start, state, value), a vanished one as retracted.
    fn reevaluate_from(&mut self, from: i64) -> Vec<(i64, AlertState, Option<f64>)> {
        let mut firing = match self.transitions.range(..from).next_back() {
            Some((at, (AlertState::Firing, _))) => Some(*at),
            Some(_) => None,
            None => self.firing_before,
        };
        let step = self.window.step_us;
        let streak = self.spec.for_windows as i64;
        let mut changed = Vec::new();
        let later: Vec<(i64, bool, Option<f64>)> = self
            .breaches
            .range(from..)
            .map(|(at, (breached, value))| (*at, *breached, *value))
            .collect();
        for (at, breached, value) in later {
            let consecutive =
                (0..streak).all(|k| self.breaches.get(&(at - k * step)).is_some_and(|(b, _)| *b));
            let transition = match (firing, consecutive, breached) {
                (None, true, _) => {
                    firing = Some(at);
                    Some(AlertState::Firing)
                }
                (Some(since), _, false) if at > since => {
                    firing = None;
                    Some(AlertState::Resolved)
                }
                _ => None,
            };
            let reported = self.transitions.get(&at).copied();
            match (transition, reported) {
                (Some(state), Some(old)) if old == (state, value) => {}
                (Some(state), _) => {
                    self.transitions.insert(at, (state, value));
                    changed.push((at, state, value));
                }
                (None, Some(_)) => {
                    self.transitions.remove(&at);
                    changed.push((at, AlertState::Retracted, value));
                }
                (None, None) => {}
            }
        }
        changed
    }

    /// Drops the windows no revision can reach any more, keeping the state they leave.
    fn forget_old(&mut self) {
        let Some(newest) = self.breaches.last_key_value().map(|(at, _)| *at) else {
            return;
        };
        let keep_from = newest.saturating_sub(self.retention_us);
        while let Some(entry) = self.breaches.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            let at = entry.remove_entry().0;
            match self.transitions.remove(&at) {
                Some((AlertState::Firing, _)) => self.firing_before = Some(at),
                Some((AlertState::Resolved, _)) => self.firing_before = None,
                _ => {}
            }
            self.forgotten_before = Some(at + 1);
        }
    }
}

/// Checks that every rule's window is one the monitor computes.
pub fn check_windows(specs: &[AlertSpec], windows: &[String]) -> Result<()> {
    let computed: Vec<WindowSpec> = windows
        .iter()
        .map(|w| WindowSpec::parse(w))
        .collect::<Result<_>>()?;
    for spec in specs {
        let window = WindowSpec::parse(&spec.window)?;
        if !computed.contains(&window) {
            return Err(MonitorError::Config(format!(
                "alert {:?}: window {:?} is not one of the monitor's windows {windows:?}",
                spec.name, spec.window
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use streamwatch_common::events::{parse_timestamp, WindowKey};

    use super::*;

    const DAY: i64 = 86_400_000_000;

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

    fn rule(for_windows: u32) -> AlertSpec {
        AlertSpec {
            name: "drifted".into(),
            metric: "number_of_drifted_columns".into(),
            window: "1d".into(),
            op: ">=".into(),
            threshold: 2.0,
            for_windows,
        }
    }

    #[test]
    fn fires_after_consecutive_breaches_and_resolves_once() {
        let mut alerts = Alerts::new(&[rule(2)], DAY).unwrap();
        let drifted = [0, 2, 3, 3, 1, 2, 0];
        let mut transitions = Vec::new();
        for (i, d) in drifted.iter().enumerate() {
            for event in alerts.on_window(&row(i as u32 + 1, *d)) {
                transitions.push((
                    event.window.start.format("%d").to_string(),
                    event.state,
                    event.value,
                ));
            }
        }
        assert_eq!(
            transitions,
            [
                ("03".to_owned(), AlertState::Firing, Some(3.0)),
                ("05".to_owned(), AlertState::Resolved, Some(1.0)),
            ]
        );
        // Other window shapes and performance metrics are not this rule's business.
        let mut hourly = row(8, 3);
        hourly.window.size_seconds = 3600;
        hourly.window.step_seconds = 3600;
        assert!(alerts.on_window(&hourly).is_empty());
    }

    /// (day, state) of each transition.
    fn transitions(alerts: &mut Alerts, days: &[(u32, u32)]) -> Vec<(u32, AlertState)> {
        days.iter()
            .flat_map(|(day, drifted)| alerts.on_window(&row(*day, *drifted)))
            .map(|event| {
                (
                    event.window.start.format("%d").to_string().parse().unwrap(),
                    event.state,
                )
            })
            .collect()
    }

    #[test]
    fn a_restored_state_goes_on_with_the_streaks_as_if_never_stopped() {
        let drifted: Vec<(u32, u32)> = [0, 2, 3, 3, 3, 1, 2, 2, 2, 0, 3]
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u32 + 1, *d))
            .collect();
        let mut uninterrupted = Alerts::new(&[rule(2)], DAY).unwrap();
        let expected = transitions(&mut uninterrupted, &drifted);
        assert_eq!(
            expected,
            [
                (3, AlertState::Firing),
                (6, AlertState::Resolved),
                (8, AlertState::Firing),
                (10, AlertState::Resolved),
            ]
        );

        for (stop, replayed) in
            (1..drifted.len()).flat_map(|stop| [(stop, 0), (stop, 1), (stop, 3)])
        {
            // Up to `stop` windows, then the state as the topic keeps it (through JSON).
            let mut before = Alerts::new(&[rule(2)], DAY).unwrap();
            let mut seen = transitions(&mut before, &drifted[..stop]);
            let saved: Vec<RuleState> = before
                .take_changed()
                .iter()
                .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
                .collect();
            assert_eq!(saved.len(), 1);
            assert!(before.take_changed().is_empty(), "taken once");
            // Restarted: the last windows before the stop are rebuilt and emitted again.
            let mut after = Alerts::new(&[rule(2)], DAY).unwrap();
            assert_eq!(after.restore(&saved), 1);
            let replay_from = stop.saturating_sub(replayed);
            seen.extend(transitions(&mut after, &drifted[replay_from..]));
            seen.sort_by_key(|(day, state)| (*day, *state == AlertState::Resolved));
            seen.dedup();
            assert_eq!(
                seen, expected,
                "stopped after {stop} windows, {replayed} replayed"
            );
        }

        // A state saved for another definition of the rule is not taken up.
        let mut before = Alerts::new(&[rule(2)], DAY).unwrap();
        transitions(&mut before, &drifted[..4]);
        let saved = before.take_changed();
        let mut stricter = rule(2);
        stricter.threshold = 3.0;
        assert_eq!(Alerts::new(&[stricter], DAY).unwrap().restore(&saved), 0);
    }

    /// What the `alerts` table holds after the sink applied `events`: window day -> (state, value).
    fn apply(table: &mut BTreeMap<u32, (AlertState, Option<f64>)>, events: Vec<AlertEvent>) {
        for event in events {
            let day = event.window.start.format("%d").to_string().parse().unwrap();
            if event.state == AlertState::Retracted {
                table.remove(&day);
            } else {
                table.insert(day, (event.state, event.value));
            }
        }
    }

    #[test]
    fn a_revision_retracts_the_transitions_its_earlier_revision_made() {
        let mut alerts = Alerts::new(&[rule(1)], DAY).unwrap();
        let mut table = BTreeMap::new();
        // Day 3 first reported from part of its events: it breaches, and day 4 resolves.
        for (day, drifted) in [(1, 0), (2, 0), (3, 3), (4, 0), (5, 0)] {
            apply(&mut table, alerts.on_window(&row(day, drifted)));
        }
        assert_eq!(
            table,
            BTreeMap::from([
                (3, (AlertState::Firing, Some(3.0))),
                (4, (AlertState::Resolved, Some(0.0)))
            ])
        );
        // Its complete revision does not breach: both transitions go.
        let retracted = alerts.on_window(&row(3, 1));
        assert_eq!(
            retracted.iter().map(|e| e.state).collect::<Vec<_>>(),
            [AlertState::Retracted, AlertState::Retracted]
        );
        apply(&mut table, retracted);
        assert!(table.is_empty(), "{table:?}");
        // A revision that keeps the transition but changes the value reports the new value.
        apply(&mut table, alerts.on_window(&row(4, 2)));
        apply(&mut table, alerts.on_window(&row(4, 3)));
        assert_eq!(
            table,
            BTreeMap::from([
                (4, (AlertState::Firing, Some(3.0))),
                (5, (AlertState::Resolved, Some(0.0)))
            ])
        );
        // The same revision again changes nothing.
        assert!(alerts.on_window(&row(4, 3)).is_empty());
    }

    #[test]
    fn a_revision_older_than_the_horizon_makes_no_transition() {
        let mut alerts = Alerts::new(&[rule(1)], DAY).unwrap();
        for day in 1..=10 {
            alerts.on_window(&row(day, 0));
        }
        // Kept: the horizon, the window and the streak (1 + 1 + 1 days) before day 10.
        assert!(alerts.on_window(&row(6, 3)).is_empty());
        assert_eq!(
            alerts.on_window(&row(7, 3)).len(),
            2,
            "fires at 7, resolves at 8"
        );
        let saved = alerts.take_changed();
        assert_eq!(saved[0].breaches.first().map(|b| b.0), Some(day_us(7)));
    }

    fn day_us(day: u32) -> i64 {
        row(day, 0).window.start.and_utc().timestamp_micros()
    }

    proptest::proptest! {
        /// Whatever earlier revisions came, in whatever order, the table ends as a clean run
        /// over the windows' final revisions leaves it.
        #[test]
        fn the_table_follows_the_final_revisions(
            finals in proptest::collection::vec(0u32..4, 1..12),
            earlier in proptest::collection::vec((0usize..12, 0u32..4, 0usize..1000), 0..24),
            for_windows in 1u32..4,
        ) {
            let mut rule = rule(for_windows);
            rule.threshold = 2.0;
            let mut clean = Alerts::new(&[rule.clone()], 30 * DAY).unwrap();
            let mut expected = BTreeMap::new();
            for (i, drifted) in finals.iter().enumerate() {
                apply(&mut expected, clean.on_window(&row(i as u32 + 1, *drifted)));
            }
            // The finals in window order, each earlier revision somewhere before its final.
            let mut emitted: Vec<(u32, u32)> =
                finals.iter().enumerate().map(|(i, d)| (i as u32 + 1, *d)).collect();
            for (index, drifted, place) in earlier {
                let day = (index % finals.len()) as u32 + 1;
                let final_at = emitted.iter().rposition(|(d, _)| *d == day).unwrap();
                emitted.insert(place * final_at / 1000, (day, drifted));
            }
            let mut revised = Alerts::new(&[rule], 30 * DAY).unwrap();
            let mut table = BTreeMap::new();
            for (day, drifted) in emitted {
                apply(&mut table, revised.on_window(&row(day, drifted)));
            }
            proptest::prop_assert_eq!(table, expected);
        }
    }

    #[test]
    fn bad_rules_are_rejected_with_the_reason() {
        let mut unknown = rule(1);
        unknown.metric = "accuracy".into();
        assert!(Alerts::new(&[unknown], DAY)
            .unwrap_err()
            .to_string()
            .contains("unknown metric"));
        let mut op = rule(1);
        op.op = "=".into();
        assert!(Alerts::new(&[op], DAY)
            .unwrap_err()
            .to_string()
            .contains("op"));
        assert!(Alerts::new(&[rule(0)], DAY).is_err());
        let err = check_windows(&[rule(1)], &["1h".to_owned()]).unwrap_err();
        assert!(
            err.to_string().contains("not one of the monitor's windows"),
            "{err}"
        );
    }
}
