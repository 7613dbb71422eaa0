//! Alert rules from the spec: a metric of one window shape compared with a threshold; a rule
//! fires when that many consecutive windows breach it, and resolves at the first window that
//! does not. Only the transitions are reported, as alert records on the metrics topic.

use std::collections::BTreeMap;

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
    /// The window the rule fired at, while it is firing.
    firing_since: Option<i64>,
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
    pub fn new(specs: &[AlertSpec]) -> Result<Self> {
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
                Ok(Rule {
                    window: WindowSpec::parse(&spec.window)?,
                    spec: spec.clone(),
                    comparison,
                    breaches: BTreeMap::new(),
                    firing_since: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { rules })
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
            let breached = current.is_some_and(|v| rule.comparison.holds(v, rule.spec.threshold));
            rule.breaches.insert(start, (breached, current));
            // Keep what the consecutive count can need.
            let keep = rule.spec.for_windows as i64 + 1;
            while rule.breaches.len() as i64 > keep.max(2) * 4 {
                rule.breaches.pop_first();
            }
            let step = rule.window.step_us;
            let consecutive = (0..rule.spec.for_windows as i64).all(|k| {
                rule.breaches
                    .get(&(start - k * step))
                    .is_some_and(|(b, _)| *b)
            });
            let state = match (rule.firing_since, consecutive, breached) {
                (None, true, _) => {
                    rule.firing_since = Some(start);
                    Some(AlertState::Firing)
                }
                (Some(since), _, false) if start > since => {
                    rule.firing_since = None;
                    Some(AlertState::Resolved)
                }
                _ => None,
            };
            if let Some(state) = state {
                events.push(AlertEvent {
                    rule: rule.spec.name.clone(),
                    metric: rule.spec.metric.clone(),
                    op: rule.spec.op.clone(),
                    threshold: rule.spec.threshold,
                    for_windows: rule.spec.for_windows,
                    window: window.clone(),
                    state,
                    value: current,
                    emitted_at: chrono::Utc::now(),
                });
            }
        }
        events
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
    use streamwatch_common::events::{parse_timestamp, WindowKey, WindowKind};

    use super::*;

    fn row(day: u32, drifted: u32) -> MetricRow {
        let start = parse_timestamp(&format!("2022-02-{day:02}T00:00:00")).unwrap();
        MetricRow {
            window: WindowKey {
                monitor: "taxi".into(),
                kind: WindowKind::Tumbling,
                size_seconds: 86_400,
                step_seconds: 86_400,
                start,
                end: start + chrono::Duration::days(1),
            },
            generation: 0,
            revision: 1,
            row_count: 10,
            number_of_columns: 3,
            number_of_missing_values: 0,
            share_of_missing_values: Some(0.0),
            prediction_drift: None,
            number_of_drifted_columns: drifted,
            share_of_drifted_columns: f64::from(drifted) / 3.0,
            dataset_drift: false,
            columns: vec![],
            quantiles: vec![],
            outliers: vec![],
            contributions: vec![],
            segments: vec![],
            last_event_published_at: None,
            emitted_at: Utc::now(),
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
        let mut alerts = Alerts::new(&[rule(2)]).unwrap();
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

    #[test]
    fn bad_rules_are_rejected_with_the_reason() {
        let mut unknown = rule(1);
        unknown.metric = "accuracy".into();
        assert!(Alerts::new(&[unknown])
            .unwrap_err()
            .to_string()
            .contains("unknown metric"));
        let mut op = rule(1);
        op.op = "=".into();
        assert!(Alerts::new(&[op]).unwrap_err().to_string().contains("op"));
        assert!(Alerts::new(&[rule(0)]).is_err());
        let err = check_windows(&[rule(1)], &["1h".to_owned()]).unwrap_err();
        assert!(
            err.to_string().contains("not one of the monitor's windows"),
            "{err}"
        );
    }
}
