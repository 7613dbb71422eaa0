//! `sink report`: the stored metrics of one monitor and window shape over a time range, as ONE
//! self-contained HTML page for people without Grafana. The charts are inline SVG drawn here
//! (`chart`), the page is a `maud` template (`page`): no script, font, image or style sheet is
//! loaded from anywhere, and a Content-Security-Policy in the page forbids it.
//!
//! `data` reads the tables with parameterised queries; `page` renders whatever it found, and a
//! section without data says so.

mod chart;
mod data;
mod format;
mod page;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};
use streamwatch_common::events::WindowKind;

pub use data::{load, ReportData};
pub use page::render;

use crate::config::ReportArgs;
use crate::service::MetricStore;
use crate::{Error, Result};

/// The window shape a report covers: `SIZE` (tumbling) or `SIZE/STEP` (sliding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportWindow {
    pub size_seconds: i64,
    pub step_seconds: i64,
}

impl ReportWindow {
    pub const DAILY: ReportWindow = ReportWindow {
        size_seconds: 86_400,
        step_seconds: 86_400,
    };

    pub fn kind(&self) -> WindowKind {
        if self.size_seconds == self.step_seconds {
            WindowKind::Tumbling
        } else {
            WindowKind::Sliding
        }
    }

    /// `1d`, or `1d/1h` for a sliding shape.
    pub fn label(&self) -> String {
        match self.kind() {
            WindowKind::Tumbling => format_duration(self.size_seconds),
            WindowKind::Sliding => format!(
                "{}/{}",
                format_duration(self.size_seconds),
                format_duration(self.step_seconds)
            ),
        }
    }
}

impl std::str::FromStr for ReportWindow {
    type Err = String;

    /// `1d`, `6h`, `1d/1h`: units s, m, h, d, as `monitor run --window` takes them.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (size, step) = match text.split_once('/') {
            Some((size, step)) => (parse_duration(size)?, parse_duration(step)?),
            None => {
                let size = parse_duration(text)?;
                (size, size)
            }
        };
        if step > size || size % step != 0 {
            return Err(format!(
                "window {text:?}: the size must be a multiple of the step"
            ));
        }
        Ok(ReportWindow {
            size_seconds: size,
            step_seconds: step,
        })
    }
}

/// `90s`, `15m`, `1h`, `1d` in seconds.
fn parse_duration(text: &str) -> std::result::Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} must look like 30s, 15m, 1h or 1d"))?;
    let unit = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "duration {text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ))
        }
    };
    match number.checked_mul(unit) {
        Some(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(format!("duration {text:?} must be positive")),
    }
}

/// `86400` → `1d`, `5400` → `90m`.
pub fn format_duration(seconds: i64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// A date (midnight) or a naive timestamp (`2022-02-01T06:00:00`, also with a space).
pub fn parse_time_bound(text: &str) -> std::result::Result<NaiveDateTime, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN));
    }
    streamwatch_common::events::parse_timestamp(text)
        .map_err(|_| format!("{text:?} is neither YYYY-MM-DD nor YYYY-MM-DDTHH:MM:SS[.ffffff]"))
}

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// None: the only monitor with windows of this shape in the range.
    pub monitor: Option<String>,
    pub window: ReportWindow,
    /// Windows starting at or after this time.
    pub from: Option<NaiveDateTime>,
    /// Windows starting before this time.
    pub to: Option<NaiveDateTime>,
}

/// What a written report holds, for the command's last line and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    pub monitor: Option<String>,
    pub windows: usize,
    pub charts: usize,
    pub bytes: usize,
    pub output: PathBuf,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let output = if self.output == Path::new("-") {
            "standard output".to_owned()
        } else {
            self.output.display().to_string()
        };
        write!(
            f,
            "wrote {output} ({} bytes): monitor {}, {} windows, {} charts",
            self.bytes,
            self.monitor.as_deref().unwrap_or("(none in the range)"),
            self.windows,
            self.charts
        )
    }
}

/// Reads the metrics and renders the page.
pub async fn generate(store: &MetricStore, query: &ReportQuery) -> Result<(String, ReportData)> {
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if to <= from {
            return Err(Error::Report {
                problem: format!("--to {to} is not after --from {from}"),
            });
        }
    }
    let data = load(store, query).await?;
    let html = render(&data);
    Ok((html, data))
}

/// `sink report`: connects, reads, renders and writes the file (`-`: standard output).
pub async fn write(args: &ReportArgs) -> Result<ReportSummary> {
    let store = MetricStore::from_args(&args.database)?;
    let query = ReportQuery {
        monitor: args.monitor.clone(),
        window: args.window,
        from: args.from,
        to: args.to,
    };
    let (html, data) = generate(&store, &query).await?;
    write_output(&args.output, html.as_bytes())?;
    Ok(ReportSummary {
        monitor: data.monitor.clone(),
        windows: data.windows.len(),
        charts: html.matches("<svg").count(),
        bytes: html.len(),
        output: args.output.clone(),
    })
}

fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    let failed = |source| Error::Output {
        path: path.to_owned(),
        source,
    };
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(bytes)
            .and_then(|()| stdout.flush())
            .map_err(failed);
    }
    // Written next to the target and renamed, so a reader never sees half a page.
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes).map_err(failed)?;
    std::fs::rename(&partial, path).map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        failed(source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_shapes_parse_like_the_monitor_option() {
        assert_eq!("1d".parse::<ReportWindow>(), Ok(ReportWindow::DAILY));
        let sliding: ReportWindow = "1d/1h".parse().unwrap();
        assert_eq!(
            (sliding.size_seconds, sliding.step_seconds),
            (86_400, 3_600)
        );
        assert_eq!(sliding.kind(), WindowKind::Sliding);
        assert_eq!(sliding.label(), "1d/1h");
        assert_eq!("90m".parse::<ReportWindow>().unwrap().label(), "90m");
        assert_eq!("45s".parse::<ReportWindow>().unwrap().label(), "45s");
        for bad in ["", "0d", "1w", "1h/1d", "1d/7h", "-1d", "999999999999999d"] {
            assert!(bad.parse::<ReportWindow>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn time_bounds_take_dates_and_timestamps() {
        assert_eq!(
            parse_time_bound("2022-02-01").unwrap().to_string(),
            "2022-02-01 00:00:00"
        );
        assert_eq!(
            parse_time_bound("2022-02-01T06:30:00").unwrap().to_string(),
            "2022-02-01 06:30:00"
        );
        assert!(parse_time_bound("February").is_err());
    }
}
