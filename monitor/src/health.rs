//! The instance's health records: what it consumed, emitted and held over each interval,
//! published on the metrics topic for the service-health dashboard (the same numbers are
//! on `/metrics` for Prometheus).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use streamwatch_common::events::HealthReport;
use streamwatch_common::telemetry::resident_memory_bytes;

/// What the instance held when a report is taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// The scored topic's watermark (microseconds), `i64::MIN` before the first event.
    pub watermark_us: i64,
    pub consumer_lag: Option<i64>,
    pub open_windows: usize,
    pub panes: usize,
}

/// Counts events and windows between two health reports.
#[derive(Debug)]
pub struct HealthTracker {
    monitor: String,
    instance: String,
    interval: Option<Duration>,
    started: Instant,
    since: Instant,
    events_in: u64,
    events_failed: u64,
    windows_emitted: u64,
    latency_sum: f64,
    latency_count: u64,
}

/// This process: host name and process id.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

impl HealthTracker {
    /// `interval` `None` turns reports off.
    pub fn new(monitor: &str, instance: String, interval: Option<Duration>, now: Instant) -> Self {
        Self {
            monitor: monitor.to_owned(),
            instance,
            interval,
            started: now,
            since: now,
            events_in: 0,
            events_failed: 0,
            windows_emitted: 0,
            latency_sum: 0.0,
            latency_count: 0,
        }
    }

    /// This process's instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn event_in(&mut self) {
        self.events_in += 1;
    }

    pub fn event_failed(&mut self) {
        self.events_failed += 1;
    }

    /// A window row was published; `published_at` is when its latest event was published.
    pub fn window_emitted(&mut self, published_at: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        self.windows_emitted += 1;
        if let Some(at) = published_at {
            self.latency_sum += (now - at).as_seconds_f64().max(0.0);
            self.latency_count += 1;
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.interval
            .is_some_and(|interval| now.duration_since(self.since) >= interval)
    }

    /// The report for the interval ending now; the counts start again from zero.
    pub fn take_report(&mut self, gauges: Gauges, now: Instant, at: DateTime<Utc>) -> HealthReport {
        let seconds = now.duration_since(self.since).as_secs_f64();
        let report = HealthReport {
            monitor: self.monitor.clone(),
            instance: self.instance.clone(),
            at,
            interval_seconds: seconds,
            events_in: self.events_in,
            events_per_second: if seconds > 0.0 {
                self.events_in as f64 / seconds
            } else {
                0.0
            },
            events_failed: self.events_failed,
            consumer_lag: gauges.consumer_lag,
            watermark: (gauges.watermark_us != i64::MIN)
                .then(|| DateTime::from_timestamp_micros(gauges.watermark_us))
                .flatten()
                .map(|t| t.naive_utc()),
            open_windows: gauges.open_windows as u64,
            panes: gauges.panes as u64,
            windows_emitted: self.windows_emitted,
            emit_latency_seconds: (self.latency_count > 0)
                .then(|| self.latency_sum / self.latency_count as f64),
            resident_memory_bytes: resident_memory_bytes(),
            uptime_seconds: now.duration_since(self.started).as_secs_f64(),
        };
        self.since = now;
        self.events_in = 0;
        self.events_failed = 0;
        self.windows_emitted = 0;
        self.latency_sum = 0.0;
        self.latency_count = 0;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_covers_its_interval_and_resets_the_counts() {
        let start = Instant::now();
        let mut health = HealthTracker::new(
            "taxi",
            "host-1".into(),
            Some(Duration::from_secs(10)),
            start,
        );
        for _ in 0..50 {
            health.event_in();
        }
        health.event_failed();
        let now = Utc::now();
        health.window_emitted(Some(now - chrono::Duration::seconds(3)), now);
        health.window_emitted(Some(now - chrono::Duration::seconds(1)), now);
        health.window_emitted(None, now);
        assert!(!health.is_due(start + Duration::from_secs(9)));
        let later = start + Duration::from_secs(10);
        assert!(health.is_due(later));
        let gauges = Gauges {
            watermark_us: 1_643_673_600_000_000,
            consumer_lag: Some(7),
            open_windows: 2,
            panes: 5,
        };
        let report = health.take_report(gauges, later, now);
        assert_eq!(
            (report.monitor.as_str(), report.instance.as_str()),
            ("taxi", "host-1")
        );
        assert_eq!(
            (
                report.events_in,
                report.events_failed,
                report.windows_emitted
            ),
            (50, 1, 3)
        );
        assert_eq!(report.events_per_second, 5.0);
        assert_eq!(report.emit_latency_seconds, Some(2.0));
        assert_eq!(report.consumer_lag, Some(7));
        assert_eq!(report.watermark.unwrap().to_string(), "2022-02-01 00:00:00");
        assert_eq!((report.open_windows, report.panes), (2, 5));
        assert!(!health.is_due(later));
        let next = health.take_report(
            Gauges {
                watermark_us: i64::MIN,
                ..gauges
            },
            later + Duration::from_secs(10),
            now,
        );
        assert_eq!((next.events_in, next.windows_emitted), (0, 0));
        assert_eq!((next.emit_latency_seconds, next.watermark), (None, None));
        assert_eq!(next.uptime_seconds, 20.0);
    }

    #[test]
    fn no_interval_means_no_reports() {
        let start = Instant::now();
        let health = HealthTracker::new("taxi", instance_name(), None, start);
        assert!(!health.is_due(start + Duration::from_secs(3600)));
        assert!(instance_name().ends_with(&format!("-{}", std::process::id())));
    }
}
