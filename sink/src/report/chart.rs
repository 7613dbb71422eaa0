//! A small line chart as inline SVG: time on x, one or more series on y, with axes, ticks, labels,
//! grid lines, dashed threshold lines and highlighted points. Gaps (missing values) break a line.
//! Every text goes through `maud`, which escapes it. No script: each point's value is in a
//! `<title>`, which browsers show as a tooltip.

use chrono::{DateTime, NaiveDateTime};
use maud::{html, Markup};

use super::format;

/// Series colours (Tableau 10 without its red, which marks alerts and thresholds).
pub const PALETTE: [&str; 9] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#7f7f7f",
];
/// Thresholds and flagged points.
pub const ALERT: &str = "#d62728";

/// The default size, in CSS pixels at 100 %: the width of a report section.
pub const FULL: (f64, f64) = (1094.0, 280.0);
/// Half a section (two charts side by side).
pub const HALF: (f64, f64) = (537.0, 240.0);
const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 34.0;
/// Above this many points, only isolated points get a dot (the line shows the rest).
const MAX_DOTS: usize = 150;

/// How the y values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Plain numbers (`0.1`, `12.5`).
    Number,
    /// Shares in [0, 1], shown as percent.
    Percent,
    /// Whole numbers.
    Count,
}

impl Scale {
    fn value(self, v: f64) -> String {
        match self {
            Scale::Number => format::number(Some(v), 4),
            Scale::Percent => format::percent(Some(v)),
            Scale::Count => format::count(v.round() as i64),
        }
    }
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    points: Vec<(NaiveDateTime, Option<f64>)>,
}

#[derive(Debug, Clone)]
struct Threshold {
    value: f64,
    label: String,
}

#[derive(Debug, Clone)]
struct Marker {
    at: NaiveDateTime,
    value: f64,
    label: String,
}

/// A line chart over time; build it, then `render` it.
#[derive(Debug, Clone)]
pub struct LineChart {
    title: String,
    y_label: String,
    scale: Scale,
    zero_based: bool,
    series: Vec<Series>,
    thresholds: Vec<Threshold>,
    markers: Vec<Marker>,
    marker_legend: Option<String>,
    size: (f64, f64),
}

impl LineChart {
    /// `title` names the chart for screen readers; `y_label` is the y axis' label.
    pub fn new(title: impl Into<String>, y_label: impl Into<String>, scale: Scale) -> Self {
        Self {
            title: title.into(),
            y_label: y_label.into(),
            scale,
            zero_based: false,
            series: Vec::new(),
            thresholds: Vec::new(),
            markers: Vec::new(),
            marker_legend: None,
            size: FULL,
        }
    }

    /// Width and height of the SVG's coordinate system (the SVG scales to its container).
    pub fn size(mut self, size: (f64, f64)) -> Self {
        self.size = size;
        self
    }

    /// The y axis starts at (or crosses) zero.
    pub fn zero_based(mut self) -> Self {
        self.zero_based = true;
        self
    }

    pub fn series(
        mut self,
        name: impl Into<String>,
        points: impl IntoIterator<Item = (NaiveDateTime, Option<f64>)>,
    ) -> Self {
        self.series.push(Series {
            name: name.into(),
            points: points.into_iter().collect(),
        });
        self
    }

    /// A dashed horizontal line at `value`.
    pub fn threshold(mut self, value: f64, label: impl Into<String>) -> Self {
        if value.is_finite() {
            self.thresholds.push(Threshold {
                value,
                label: label.into(),
            });
        }
        self
    }

    /// Highlighted points (drifted windows, breaches), named `legend` in the legend; each
    /// point's label is its tooltip.
    pub fn markers(
        mut self,
        legend: impl Into<String>,
        points: impl IntoIterator<Item = (NaiveDateTime, f64, String)>,
    ) -> Self {
        self.markers.extend(
            points
                .into_iter()
                .filter(|(_, v, _)| v.is_finite())
                .map(|(at, value, label)| Marker { at, value, label }),
        );
        self.marker_legend = Some(legend.into());
        self
    }

    /// True when at least one series has a finite value.
    pub fn has_data(&self) -> bool {
        self.series
            .iter()
            .flat_map(|s| &s.points)
            .any(|(_, v)| v.is_some_and(f64::is_finite))
    }

    /// The legend (when there is more than one thing to tell apart) and the SVG.
    pub fn render(&self) -> Markup {
        let legend = self.series.len() > 1
            || !self.thresholds.is_empty()
            || (!self.markers.is_empty() && self.marker_legend.is_some());
        html! {
            figure.chart {
                @if legend {
                    ul.legend {
                        @for (i, s) in self.series.iter().enumerate() {
                            li { span.swatch style={ "background:" (color(i)) } {} (s.name) }
                        }
                        @for t in &self.thresholds {
                            li { span.swatch.dashed {} (t.label) }
                        }
                        @if let (false, Some(name)) = (self.markers.is_empty(), &self.marker_legend) {
                            li { span.dot {} (name) }
                        }
                    }
                }
                (self.svg())
            }
        }
    }

    fn svg(&self) -> Markup {
        let (width, height) = self.size;
        let plot_w = width - LEFT - RIGHT;
        let plot_h = height - TOP - BOTTOM;
        let (x0, x1) = self.x_domain();
        let y = YAxis::new(self.y_values(), self.zero_based, self.scale);
        let sx = |t: NaiveDateTime| LEFT + (seconds(t) - x0) / (x1 - x0) * plot_w;
        let sy = |v: f64| TOP + plot_h - (v - y.lo) / (y.hi - y.lo) * plot_h;
        let x_ticks = time_ticks(x0, x1, (plot_w / 90.0).floor() as usize);
        let total_points: usize = self.series.iter().map(|s| s.points.len()).sum();
        let dots_everywhere = total_points <= MAX_DOTS;
        let base = TOP + plot_h;

        html! {
            svg viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) role="img"
                aria-label=(self.title) font-family="system-ui, sans-serif" font-size="12" {
                title { (self.title) }
                // Grid and y axis.
                g.grid {
                    @for v in &y.ticks {
                        line x1=(px(LEFT)) x2=(px(LEFT + plot_w)) y1=(px(sy(*v))) y2=(px(sy(*v)))
                            stroke="#e5e7eb" stroke-width="1" {}
                        text x=(px(LEFT - 6.0)) y=(px(sy(*v) + 4.0)) text-anchor="end" fill="#4b5563" {
                            (y.label(*v))
                        }
                    }
                }
                text transform={ "translate(14 " (px(TOP + plot_h / 2.0)) ") rotate(-90)" }
                    text-anchor="middle" fill="#374151" { (self.y_label) }
                // x axis.
                line x1=(px(LEFT)) x2=(px(LEFT + plot_w)) y1=(px(base)) y2=(px(base))
                    stroke="#9ca3af" stroke-width="1" {}
                @for (t, label) in &x_ticks {
                    @let x = LEFT + (t - x0) / (x1 - x0) * plot_w;
                    line x1=(px(x)) x2=(px(x)) y1=(px(base)) y2=(px(base + 5.0)) stroke="#9ca3af" {}
                    text x=(px(x)) y=(px(base + 18.0)) text-anchor="middle" fill="#4b5563" { (label) }
                }
                // Thresholds.
                @for t in &self.thresholds {
                    line x1=(px(LEFT)) x2=(px(LEFT + plot_w)) y1=(px(sy(t.value))) y2=(px(sy(t.value)))
                        stroke=(ALERT) stroke-width="1.5" stroke-dasharray="6 4" {}
                    text x=(px(LEFT + plot_w - 4.0)) y=(px(sy(t.value) - 5.0)) text-anchor="end"
                        fill=(ALERT) { (t.label) }
                }
                // Series.
                @for (i, s) in self.series.iter().enumerate() {
                    g.series fill="none" stroke=(color(i)) stroke-width="2" stroke-linejoin="round" {
                        @for run in runs(&s.points) {
                            @if run.len() > 1 {
                                polyline points=(polyline(run.iter().map(|(t, v)| (sx(*t), sy(*v))))) {}
                            }
                        }
                    }
                    g fill=(color(i)) {
                        @for run in runs(&s.points) {
                            @if dots_everywhere || run.len() == 1 {
                                @for (t, v) in &run {
                                    circle cx=(px(sx(*t))) cy=(px(sy(*v))) r="3" {
                                        title { (s.name) " · " (format::time(*t)) ": " (self.scale.value(*v)) }
                                    }
                                }
                            }
                        }
                    }
                }
                // Highlighted points on top.
                @for m in &self.markers {
                    circle cx=(px(sx(m.at))) cy=(px(sy(m.value))) r="5.5" fill=(ALERT) stroke="#fff"
                        stroke-width="1.5" {
                        title { (m.label) }
                    }
                }
            }
        }
    }

    /// Seconds since the epoch of the first and last point, padded by half the smallest gap
    /// between two points (12 h for a single point), so that no point sits on the frame.
    fn x_domain(&self) -> (f64, f64) {
        let mut xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|(t, _)| seconds(*t)))
            .chain(self.markers.iter().map(|m| seconds(m.at)))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let (Some(&first), Some(&last)) = (xs.first(), xs.last()) else {
            return (0.0, 86_400.0);
        };
        let gap = xs
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        let pad = if gap.is_finite() { gap / 2.0 } else { 43_200.0 };
        (first - pad, last + pad)
    }

    fn y_values(&self) -> Vec<f64> {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|(_, v)| *v))
            .chain(self.thresholds.iter().map(|t| t.value))
            .chain(self.markers.iter().map(|m| m.value))
            .filter(|v| v.is_finite())
            .collect()
    }
}

fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn seconds(t: NaiveDateTime) -> f64 {
    t.and_utc().timestamp() as f64
}

/// A coordinate with one decimal (enough at this size, and short).
fn px(v: f64) -> String {
    let text = format!("{v:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

fn polyline(points: impl Iterator<Item = (f64, f64)>) -> String {
    points
        .map(|(x, y)| format!("{},{}", px(x), px(y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs of consecutive finite values: a missing value breaks the line.
fn runs(points: &[(NaiveDateTime, Option<f64>)]) -> Vec<Vec<(NaiveDateTime, f64)>> {
    let mut sorted: Vec<_> = points.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    let mut runs = vec![Vec::new()];
    for (t, v) in sorted {
        match v.filter(|v| v.is_finite()) {
            Some(v) => runs.last_mut().expect("never empty").push((t, v)),
            None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
            None => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// A y axis with 4 to 6 round ticks covering the values.
struct YAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    scale: Scale,
    decimals: usize,
}

impl YAxis {
    fn new(values: Vec<f64>, zero_based: bool, scale: Scale) -> Self {
        let mut lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if zero_based {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
        }
        if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
            (lo, hi) = if zero_based && lo >= 0.0 {
                (lo, hi + pad)
            } else {
                (lo - pad, hi + pad)
            };
        }
        let mut step = nice_step((hi - lo) / 4.0);
        if scale == Scale::Count {
            step = step.max(1.0).round();
        }
        let lo_tick = (lo / step).floor() * step;
        let hi_tick = (hi / step).ceil() * step;
        let count = ((hi_tick - lo_tick) / step).round() as usize;
        let ticks = (0..=count).map(|i| lo_tick + i as f64 * step).collect();
        // Decimals a tick label needs (in percent for shares).
        let shown = if scale == Scale::Percent {
            step * 100.0
        } else {
            step
        };
        let decimals = (-shown.log10().floor()).max(0.0) as usize + usize::from(is_half(shown));
        Self {
            lo: lo_tick,
            hi: hi_tick,
            ticks,
            scale,
            decimals,
        }
    }

    fn label(&self, v: f64) -> String {
        // Ticks are multiples of the step; clean up `-0` and float noise.
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        match self.scale {
            Scale::Percent => format!("{:.*}%", self.decimals, v * 100.0),
            Scale::Count => format::count(v.round() as i64),
            Scale::Number => format!("{:.*}", self.decimals, v),
        }
    }
}

/// True for steps like 2.5 or 0.25 that need one more decimal than their magnitude says.
fn is_half(step: f64) -> bool {
    let normalized = step / 10f64.powf(step.log10().floor());
    (normalized - 2.5).abs() < 1e-9
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalized = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|n| normalized <= n * (1.0 + 1e-9))
        .unwrap_or(10.0);
    nice * magnitude
}

/// Round times between `x0` and `x1` (epoch seconds), at most `max` of them, with labels.
fn time_ticks(x0: f64, x1: f64, max: usize) -> Vec<(f64, String)> {
    const DAY: i64 = 86_400;
    const STEPS: [i64; 18] = [
        60,
        300,
        600,
        900,
        1_800,
        3_600,
        2 * 3_600,
        3 * 3_600,
        6 * 3_600,
        12 * 3_600,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        28 * DAY,
        91 * DAY,
        182 * DAY,
        364 * DAY,
    ];
    let max = max.max(2) as f64;
    let span = x1 - x0;
    let step = STEPS
        .into_iter()
        .find(|s| span / *s as f64 <= max)
        .unwrap_or_else(|| ((span / max / DAY as f64).ceil() as i64).max(1) * DAY);
    // Weeks start on Mondays (the epoch was a Thursday).
    let offset = if step % (7 * DAY) == 0 { 4 * DAY } else { 0 };
    let first = ((x0 as i64 - offset) as f64 / step as f64).ceil() as i64 * step + offset;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| (*t as f64) <= x1)
        .filter_map(|t| {
            let time = DateTime::from_timestamp(t, 0)?.naive_utc();
            let label = if step >= DAY || t % DAY == 0 {
                time.format("%b %-d").to_string()
            } else {
                time.format("%H:%M").to_string()
            };
            Some((t as f64, label))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse_time_bound;

    fn day(d: u32) -> NaiveDateTime {
        parse_time_bound(&format!("2022-02-{d:02}")).unwrap()
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.03), 0.05);
        assert_eq!(nice_step(0.21), 0.25);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(1.0), 1.0);
        let axis = YAxis::new(vec![0.02, 0.27], true, Scale::Number);
        assert_eq!(axis.ticks.first(), Some(&0.0));
        assert!(*axis.ticks.last().unwrap() >= 0.27);
        assert!((4..=6).contains(&axis.ticks.len()), "{:?}", axis.ticks);
        assert_eq!(axis.label(0.1), "0.1");
        assert_eq!(
            YAxis::new(vec![0.0, 0.09], true, Scale::Number).label(0.025),
            "0.025"
        );
        let shares = YAxis::new(vec![0.0801, 0.0803], false, Scale::Percent);
        assert!(shares.ticks.len() >= 2);
        let counts = YAxis::new(vec![3.0, 3.0], true, Scale::Count);
        assert_eq!((counts.lo, counts.hi), (0.0, 3.0));
        let constant = YAxis::new(vec![0.08, 0.08], false, Scale::Number);
        assert!(constant.lo < 0.08 && constant.hi > 0.08);
    }

    #[test]
    fn a_month_of_days_gets_weekly_or_shorter_ticks_with_dates() {
        let ticks = time_ticks(seconds(day(1)) - 43_200.0, seconds(day(28)) + 43_200.0, 7);
        assert!((3..=7).contains(&ticks.len()), "{ticks:?}");
        assert_eq!(ticks[0].1, "Feb 7"); // a Monday
        let hours = time_ticks(seconds(day(1)), seconds(day(1)) + 6.0 * 3_600.0, 7);
        assert_eq!(hours[0].1, "Feb 1");
        assert_eq!(hours[1].1, "01:00");
    }

    #[test]
    fn gaps_break_lines_and_text_is_escaped() {
        let points = vec![
            (day(1), Some(1.0)),
            (day(2), None),
            (day(3), Some(2.0)),
            (day(4), Some(f64::NAN)),
            (day(5), Some(3.0)),
            (day(6), Some(4.0)),
        ];
        let r = runs(&points);
        assert_eq!(r.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 2]);
        let chart = LineChart::new("a <b> & c", "y \"label\"", Scale::Number)
            .series("s<1>", points)
            .threshold(2.5, "threshold 2.5")
            .markers("drift", [(day(6), 4.0, "drift on Feb 6".to_owned())]);
        assert!(chart.has_data());
        let svg = chart.render().into_string();
        assert!(svg.contains("a &lt;b&gt; &amp; c"), "{svg}");
        assert!(svg.contains("y &quot;label&quot;"), "{svg}");
        assert!(svg.contains("s&lt;1&gt;"), "{svg}");
        assert!(!svg.contains("<b>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
        assert!(svg.contains("drift on Feb 6"));
        assert!(!LineChart::new("t", "y", Scale::Number)
            .series("s", [(day(1), None)])
            .has_data());
    }
}
