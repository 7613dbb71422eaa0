//! The report page: one HTML document with its style sheet inline and every chart as inline SVG.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::chart::{LineChart, Scale, HALF};
use super::data::{ColumnRow, ReportData, WindowRow};
use super::format::{count, number, percent, time};

/// Most windows in the column heat map (the latest ones).
const HEAT_MAP_WINDOWS: usize = 31;
/// Most segment values drawn per dimension (those with the most labelled rows).
const SEGMENT_SERIES: usize = 8;
/// Most rows of a table before it says how many it left out.
const TABLE_ROWS: usize = 400;

/// Nothing is loaded from anywhere: no script runs, styles are inline, images could only be
/// `data:` URLs (there are none). A page that tried would log a CSP violation to the console.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const CSS: &str = r#"
:root { --fg: #111827; --muted: #6b7280; --line: #e5e7eb; --bg: #f9fafb; --card: #fff;
        --drift: #d62728; --ok: #2ca02c; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: #1f2937; color: #f9fafb; padding: 20px 32px 16px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; color: #d1d5db; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 32px; font-size: 13px; }
nav a { color: #1f77b4; text-decoration: none; margin-right: 14px; white-space: nowrap; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 32px 32px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
          padding: 16px 20px; margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 4px; }
p.note, p.empty { color: var(--muted); margin: 4px 0 8px; }
p.empty { font-style: italic; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card .value { font-size: 22px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 12px; }
.card.alert .value { color: var(--drift); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 20px; }
figure.chart { margin: 0; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
ul.legend { list-style: none; margin: 0 0 2px; padding: 0; font-size: 12px; color: #374151; }
ul.legend li { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 16px; height: 3px; vertical-align: middle; margin-right: 5px; }
.swatch.dashed { background: repeating-linear-gradient(90deg, var(--drift) 0 5px, transparent 5px 8px); }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; background: var(--drift);
       vertical-align: middle; margin-right: 5px; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 8px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; }
th { color: #374151; font-weight: 600; background: #f3f4f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
table.heat td.cell { text-align: center; font-size: 10px; padding: 3px 1px; min-width: 29px;
                     border: 1px solid #fff; font-variant-numeric: tabular-nums; }
table.heat th { white-space: nowrap; }
table.heat th.day { font-size: 10px; padding: 3px 1px; text-align: center; font-weight: 500; }
table.heat th.period { font-size: 11px; text-align: center; border-left: 2px solid #fff; }
td.drift { background: #f8c4c4; color: #7f1d1d; font-weight: 600; }
td.nodrift { background: #d9f0d3; color: #14532d; }
td.na { background: #f3f4f6; color: var(--muted); }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
.badge.firing, .badge.drift { background: #fde2e2; color: #991b1b; }
.badge.resolved, .badge.ok { background: #dcfce7; color: #166534; }
footer { color: var(--muted); font-size: 12px; max-width: 1200px; margin: 0 auto; padding: 0 32px 24px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
"#;

/// The whole page.
pub fn render(data: &ReportData) -> String {
    let title = match &data.monitor {
        Some(monitor) => format!("streamwatch report: {monitor}"),
        None => "streamwatch report".to_owned(),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "streamwatch sink report " (env!("CARGO_PKG_VERSION")) };
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { (title) }
                    p { (scope(data)) }
                }
                nav {
                    @for (id, name) in SECTIONS {
                        a href={ "#" (id) } { (name) }
                    }
                }
                main {
                    (summary(data))
                    (prediction_drift(data))
                    (drifted_columns(data))
                    (missing_values(data))
                    (column_drift(data))
                    (quantiles(data))
                    (outliers(data))
                    (performance(data))
                    (fairness(data))
                    (alerts(data))
                    (late_events(data))
                    (windows(data))
                }
                footer {
                    "Generated by streamwatch sink report " (env!("CARGO_PKG_VERSION")) " at "
                    (data.generated_at.format("%Y-%m-%d %H:%M:%S UTC")) " from " (data.database)
                    ". Times are the windows' naive event times. This page is self-contained: it loads no script, font or image."
                }
            }
        }
    };
    page.into_string()
}

const SECTIONS: [(&str, &str); 12] = [
    ("summary", "Summary"),
    ("prediction-drift", "Prediction drift"),
    ("drifted-columns", "Drifted columns"),
    ("missing-values", "Missing values"),
    ("column-drift", "Column drift"),
    ("quantiles", "Quantiles"),
    ("outliers", "Outliers"),
    ("performance", "Model performance"),
    ("fairness", "Fairness"),
    ("alerts", "Alerts"),
    ("late-events", "Late events"),
    ("windows", "Windows"),
];

fn section(id: &str, body: Markup) -> Markup {
    let name = SECTIONS
        .iter()
        .find(|(i, _)| *i == id)
        .map_or(id, |(_, name)| name);
    html! {
        section id=(id) {
            h2 { (name) }
            (body)
        }
    }
}

fn empty(text: &str) -> Markup {
    html! { p.empty { (text) } }
}

fn chart_or_empty(chart: &LineChart, title: &str, missing: &str) -> Markup {
    html! {
        div {
            h3 { (title) }
            @if chart.has_data() { (chart.render()) } @else { (empty(missing)) }
        }
    }
}

/// "daily" windows read as days in the summary.
fn unit(data: &ReportData) -> (&'static str, &'static str) {
    if data.window == super::ReportWindow::DAILY {
        ("day", "days")
    } else {
        ("window", "windows")
    }
}

fn scope(data: &ReportData) -> String {
    let shape = format!(
        "{} {} windows",
        data.window.label(),
        data.window.kind().as_str()
    );
    let range = match (data.from, data.to) {
        (Some(from), Some(to)) => format!("starting from {} to before {}", time(from), time(to)),
        (Some(from), None) => format!("starting from {}", time(from)),
        (None, Some(to)) => format!("starting before {}", time(to)),
        (None, None) => "over all stored windows".to_owned(),
    };
    let stored = match (data.windows.first(), data.windows.last()) {
        (Some(first), Some(last)) => {
            format!("; stored: {} to {}", time(first.start), time(last.start))
        }
        _ => String::new(),
    };
    match &data.monitor {
        Some(monitor) => format!("Monitor {monitor} · {shape} {range}{stored}"),
        None => format!("No monitor · {shape} {range}"),
    }
}

fn card(value: String, label: &str, alert: bool) -> Markup {
    html! {
        div.card.alert[alert] {
            div.value { (value) }
            div.label { (label) }
        }
    }
}

fn summary(data: &ReportData) -> Markup {
    let (one, many) = unit(data);
    let windows = data.windows.len();
    let rows: i64 = data.windows.iter().map(|w| w.row_count).sum();
    let dataset_drift = data.windows.iter().filter(|w| w.dataset_drift).count();
    let prediction_drift = data
        .windows
        .iter()
        .filter(|w| w.prediction_drift_detected == Some(true))
        .count();
    let cells: i64 = data
        .windows
        .iter()
        .map(|w| w.row_count * w.number_of_columns)
        .sum();
    let missing: i64 = data.windows.iter().map(|w| w.missing_values).sum();
    let labelled: i64 = data.performance.iter().map(|p| p.labelled_rows).sum();
    let (mae, rmse) = overall_errors(data);
    let firing = data.alerts.iter().filter(|a| a.state == "firing").count();
    let late: i64 = data.late.iter().map(|l| l.dropped).sum();
    section(
        "summary",
        html! {
            @if data.monitor.is_none() {
                (empty("No monitor has windows of this shape in the range: there is nothing to report."))
            } @else if windows == 0 {
                p.empty { "No drift windows of this shape in the range for this monitor." }
            }
            @if data.monitors_in_range.len() > 1 {
                p.note { "Other monitors with windows in the range: "
                    (data.monitors_in_range.iter().filter(|m| Some(*m) != data.monitor.as_ref())
                        .cloned().collect::<Vec<_>>().join(", ")) "." }
            }
            div.cards {
                (card(count(windows as i64), &format!("{many} with metrics"), false))
                (card(count(rows), "rows (events) in them", false))
                (card(format!("{dataset_drift} / {windows}"), &format!("{many} with dataset drift"), dataset_drift > 0))
                (card(format!("{prediction_drift} / {windows}"), &format!("{many} with prediction drift"), prediction_drift > 0))
                (card(percent((cells > 0).then(|| missing as f64 / cells as f64)), "share of missing values (all cells)", false))
                (card(count(labelled), "labelled rows (truth arrived)", false))
                (card(number(mae, 4), "MAE over all labelled rows", false))
                (card(number(rmse, 4), "RMSE over all labelled rows", false))
                (card(count(firing as i64), "alerts fired", firing > 0))
                (card(count(late), "late events dropped", late > 0))
            }
            @if windows > 0 {
                p.note {
                    "Dataset drift: the share of drifted columns reached the monitor's drift share. One "
                    (one) " is one " (data.window.label()) " window."
                }
            }
        },
    )
}

/// MAE and RMSE over every labelled row of the range, from the windows' values and row counts
/// (both are means over rows, so they combine exactly).
fn overall_errors(data: &ReportData) -> (Option<f64>, Option<f64>) {
    let rows = data
        .performance
        .iter()
        .filter_map(|p| Some((p.labelled_rows as f64, p.mae?, p.rmse?)))
        .filter(|(n, _, _)| *n > 0.0);
    let (mut n, mut abs, mut sq) = (0.0, 0.0, 0.0);
    for (rows, mae, rmse) in rows {
        n += rows;
        abs += mae * rows;
        sq += rmse * rmse * rows;
    }
    if n > 0.0 {
        (Some(abs / n), Some((sq / n).sqrt()))
    } else {
        (None, None)
    }
}

/// Whether drift means a score below the threshold (p-values) or at or above it (distances),
/// as the stored flags show it; None when they do not tell.
fn drift_direction(rows: impl Iterator<Item = (f64, f64, bool)>) -> Option<&'static str> {
    let (mut below, mut above, mut total) = (0, 0, 0);
    for (score, threshold, detected) in rows {
        total += 1;
        below += usize::from(detected == (score < threshold));
        above += usize::from(detected == (score >= threshold));
    }
    match (below == total, above == total) {
        (true, false) => Some("drift below"),
        (false, true) => Some("drift at or above"),
        _ => None,
    }
}

fn prediction_drift(data: &ReportData) -> Markup {
    let scored: Vec<&WindowRow> = data
        .windows
        .iter()
        .filter(|w| w.prediction_drift.is_some())
        .collect();
    let stattest = data
        .windows
        .iter()
        .rev()
        .find_map(|w| w.prediction_stattest.clone());
    let threshold = data
        .windows
        .iter()
        .rev()
        .find_map(|w| w.prediction_threshold);
    let direction = drift_direction(scored.iter().filter_map(|w| {
        Some((
            w.prediction_drift?,
            w.prediction_threshold?,
            w.prediction_drift_detected?,
        ))
    }));
    let y_label = match &stattest {
        Some(test) => format!("score ({test})"),
        None => "score".to_owned(),
    };
    let mut chart = LineChart::new("Prediction drift per window", y_label, Scale::Number)
        .zero_based()
        .series(
            "prediction drift",
            data.windows.iter().map(|w| (w.start, w.prediction_drift)),
        );
    if let Some(t) = threshold {
        let label = match direction {
            Some(direction) => format!("threshold {} ({direction})", number(Some(t), 4)),
            None => format!("threshold {}", number(Some(t), 4)),
        };
        chart = chart.threshold(t, label);
    }
    chart = chart.markers(
        "drift detected",
        data.windows
            .iter()
            .filter(|w| w.prediction_drift_detected == Some(true))
            .filter_map(|w| {
                let score = w.prediction_drift?;
                Some((
                    w.start,
                    score,
                    format!(
                        "{}: prediction drift {} (drift detected)",
                        time(w.start),
                        number(Some(score), 4)
                    ),
                ))
            }),
    );
    let drifted = data
        .windows
        .iter()
        .filter(|w| w.prediction_drift_detected == Some(true))
        .count();
    section(
        "prediction-drift",
        html! {
            @if chart.has_data() {
                p.note {
                    "The prediction column's drift score against the reference, per window; "
                    (drifted) " of " (data.windows.len()) " windows drifted (red)."
                }
                (chart.render())
            } @else {
                (empty("No prediction drift scores in the range."))
            }
        },
    )
}

fn drifted_columns(data: &ReportData) -> Markup {
    let dataset_drift = |value: fn(&WindowRow) -> f64| {
        data.windows
            .iter()
            .filter(|w| w.dataset_drift)
            .map(move |w| {
                (
                    w.start,
                    value(w),
                    format!(
                        "{}: dataset drift, {} drifted columns ({})",
                        time(w.start),
                        w.drifted_columns,
                        percent(Some(w.share_drifted))
                    ),
                )
            })
            .collect::<Vec<_>>()
    };
    let number_chart = LineChart::new("Number of drifted columns", "columns", Scale::Count)
        .size(HALF)
        .zero_based()
        .series(
            "drifted columns",
            data.windows
                .iter()
                .map(|w| (w.start, Some(w.drifted_columns as f64))),
        )
        .markers("dataset drift", dataset_drift(|w| w.drifted_columns as f64));
    let share_chart = LineChart::new("Share of drifted columns", "share", Scale::Percent)
        .size(HALF)
        .zero_based()
        .series(
            "share of drifted columns",
            data.windows
                .iter()
                .map(|w| (w.start, Some(w.share_drifted))),
        )
        .markers("dataset drift", dataset_drift(|w| w.share_drifted));
    section(
        "drifted-columns",
        html! {
            @if data.windows.is_empty() {
                (empty("No windows in the range."))
            } @else {
                div.grid2 {
                    (chart_or_empty(&number_chart, "Number of drifted columns", "No data."))
                    (chart_or_empty(&share_chart, "Share of drifted columns", "No data."))
                }
            }
        },
    )
}

fn missing_values(data: &ReportData) -> Markup {
    let chart = LineChart::new("Share of missing values", "share of cells", Scale::Percent)
        .zero_based()
        .series(
            "share of missing values",
            data.windows.iter().map(|w| (w.start, w.share_missing)),
        );
    section(
        "missing-values",
        html! {
            @if chart.has_data() {
                p.note { "Missing cells (null, NaN, ±inf, empty strings) over every data column of the window." }
                (chart.render())
            } @else {
                (empty("No missing-value shares in the range."))
            }
        },
    )
}

/// Column names with the prediction first.
fn ordered_columns<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = names.collect::<BTreeSet<_>>().into_iter().collect();
    names.sort_by_key(|n| (*n != "prediction", *n));
    names
}

fn column_drift(data: &ReportData) -> Markup {
    if data.columns.is_empty() {
        return section(
            "column-drift",
            empty("No per-column drift results in the range."),
        );
    }
    let by_key: BTreeMap<(&str, NaiveDateTime), &ColumnRow> = data
        .columns
        .iter()
        .map(|c| ((c.column.as_str(), c.start), c))
        .collect();
    let starts: Vec<NaiveDateTime> = data
        .columns
        .iter()
        .map(|c| c.start)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let shown = &starts[starts.len().saturating_sub(HEAT_MAP_WINDOWS)..];
    let columns = ordered_columns(data.columns.iter().map(|c| c.column.as_str()));
    let latest = *starts.last().expect("columns are not empty");
    // Two header rows: months over days, or days over times of day.
    let daily = shown.iter().all(|s| s.time() == chrono::NaiveTime::MIN);
    let (period, head) = if daily {
        ("%b %Y", "%-d")
    } else {
        ("%b %-d", "%H:%M")
    };
    let mut periods: Vec<(String, usize)> = Vec::new();
    for s in shown {
        let label = s.format(period).to_string();
        match periods.last_mut() {
            Some((last, n)) if *last == label => *n += 1,
            _ => periods.push((label, 1)),
        }
    }
    section(
        "column-drift",
        html! {
            p.note {
                "Each column's drift score per window (red: drift detected, green: none, grey: no test). "
                @if shown.len() < starts.len() {
                    "The latest " (shown.len()) " of " (starts.len()) " windows. "
                }
                "Hover a cell for the test and threshold."
            }
            div.scroll {
                table.heat {
                    thead {
                        tr {
                            th rowspan="2" { "column" }
                            th.num rowspan="2" { "drifted" }
                            @for (label, n) in &periods { th.period colspan=(n) { (label) } }
                        }
                        tr {
                            @for s in shown { th.day title=(time(*s)) { (s.format(head)) } }
                        }
                    }
                    tbody {
                        @for column in &columns {
                            @let drifted = starts.iter().filter(|s| by_key.get(&(*column, **s)).is_some_and(|c| c.drift_detected)).count();
                            @let tested = starts.iter().filter(|s| by_key.contains_key(&(*column, **s))).count();
                            tr {
                                th { (column) }
                                td.num { (drifted) " / " (tested) }
                                @for s in shown {
                                    @match by_key.get(&(*column, *s)) {
                                        Some(c) => {
                                            td.cell.drift[c.drift_detected].nodrift[!c.drift_detected && c.score.is_some()].na[c.score.is_none()]
                                                title=(cell_title(c)) { (number(c.score, 2)) }
                                        }
                                        None => { td.cell.na title={ (column) " · " (time(*s)) ": no result" } { "" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Latest window (" (time(latest)) ")" }
            div.scroll {
                table {
                    thead { tr {
                        th { "column" } th { "type" } th { "test" } th.num { "threshold" }
                        th.num { "score" } th { "drift" } th.num { "rows" } th { "error" }
                    } }
                    tbody {
                        @for column in &columns {
                            @if let Some(c) = by_key.get(&(*column, latest)) {
                                tr {
                                    td { (c.column) }
                                    td { (c.column_type) }
                                    td { (c.stattest) }
                                    td.num { (number(Some(c.threshold), 4)) }
                                    td.num { (number(c.score, 4)) }
                                    td { @if c.drift_detected { span.badge.drift { "drift" } } @else { "no" } }
                                    td.num { (count(c.current_rows)) }
                                    td { (c.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn cell_title(c: &ColumnRow) -> String {
    let outcome = match (&c.error, c.drift_detected) {
        (Some(error), _) => format!("not tested: {error}"),
        (None, true) => "drift detected".to_owned(),
        (None, false) => "no drift".to_owned(),
    };
    format!(
        "{} · {}: {} {} (threshold {}), {}",
        c.column,
        time(c.start),
        c.stattest,
        number(c.score, 4),
        number(Some(c.threshold), 4),
        outcome
    )
}

/// `p50`, `p99.5`.
fn quantile_name(q: f64) -> String {
    format!("p{}", number(Some(q * 100.0), 4))
}

fn quantiles(data: &ReportData) -> Markup {
    // Column → quantile (as bits, to be a key) → points.
    let mut by_column: BTreeMap<&str, BTreeMap<u64, Points>> = BTreeMap::new();
    for q in &data.quantiles {
        by_column
            .entry(q.column.as_str())
            .or_default()
            .entry(q.quantile.to_bits())
            .or_default()
            .push((q.start, q.value));
    }
    let charts: Vec<(String, LineChart)> = ordered_columns(by_column.keys().copied())
        .into_iter()
        .map(|column| {
            let mut chart =
                LineChart::new(format!("Quantiles of {column}"), "value", Scale::Number).size(HALF);
            let mut quantiles: Vec<_> = by_column[column].iter().collect();
            quantiles.sort_by(|a, b| f64::from_bits(*a.0).total_cmp(&f64::from_bits(*b.0)));
            for (q, points) in quantiles {
                chart = chart.series(quantile_name(f64::from_bits(*q)), points.clone());
            }
            (column.to_owned(), chart)
        })
        .collect();
    section(
        "quantiles",
        html! {
            @if charts.is_empty() {
                (empty("No quantiles in the range."))
            } @else {
                p.note { "The window's quantiles (numpy's linear method) of each configured column." }
                div.grid2 {
                    @for (column, chart) in &charts {
                        (chart_or_empty(chart, column, "No values in the range."))
                    }
                }
            }
        },
    )
}

fn outliers(data: &ReportData) -> Markup {
    if data.outliers.is_empty() {
        return section("outliers", empty("No outlier shares in the range."));
    }
    let columns = ordered_columns(data.outliers.iter().map(|o| o.column.as_str()));
    let range = data
        .outliers
        .last()
        .map(|o| {
            format!(
                "{}–{}",
                quantile_name(o.lower_quantile),
                quantile_name(o.upper_quantile)
            )
        })
        .unwrap_or_default();
    let mut quantile_chart = LineChart::new(
        format!("Share of values outside the reference's {range}"),
        "share of values",
        Scale::Percent,
    )
    .size(HALF)
    .zero_based();
    let mut iqr_chart = LineChart::new(
        "Share of values outside the reference's IQR fences",
        "share of values",
        Scale::Percent,
    )
    .size(HALF)
    .zero_based();
    for column in &columns {
        let rows = data.outliers.iter().filter(|o| o.column == *column);
        quantile_chart = quantile_chart.series(
            *column,
            rows.clone().map(|o| (o.start, o.share_outside_quantiles)),
        );
        iqr_chart = iqr_chart.series(*column, rows.map(|o| (o.start, o.share_outside_iqr)));
    }
    section(
        "outliers",
        html! {
            p.note { "Per numerical column (and the prediction), the share of the window's finite values strictly outside the reference's range." }
            div.grid2 {
                (chart_or_empty(&quantile_chart, &format!("Outside the reference's {range}"), "No shares in the range."))
                (chart_or_empty(&iqr_chart, "Outside the reference's IQR fences (Q1 − 1.5 IQR, Q3 + 1.5 IQR)", "No shares in the range."))
            }
        },
    )
}

fn performance(data: &ReportData) -> Markup {
    if data.performance.is_empty() {
        return section(
            "performance",
            empty("No model performance in the range (the monitor joins predictions with completions when it runs with --completions-topic)."),
        );
    }
    let errors = LineChart::new(
        "MAE and RMSE per window",
        "error (target units)",
        Scale::Number,
    )
    .zero_based()
    .series("MAE", data.performance.iter().map(|p| (p.start, p.mae)))
    .series("RMSE", data.performance.iter().map(|p| (p.start, p.rmse)));
    let predictions: i64 = data.performance.iter().map(|p| p.predictions).sum();
    let labelled: i64 = data.performance.iter().map(|p| p.labelled_rows).sum();
    let (mae, rmse) = overall_errors(data);

    // Per segment dimension, the values with the most labelled rows.
    let mut dimensions: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for s in &data.segments {
        *dimensions
            .entry(s.dimension.as_str())
            .or_default()
            .entry(s.value.as_str())
            .or_default() += s.labelled_rows;
    }
    let segment_charts: Vec<SegmentChart> = dimensions
        .iter()
        .map(|(dimension, values)| {
            let points = |value: &str| {
                data.segments
                    .iter()
                    .filter(|s| s.dimension == *dimension && s.value == value)
                    .map(|s| (s.start, if s.too_small { None } else { s.mae }))
                    .collect::<Vec<_>>()
            };
            // Values never measured (always too small) are named, not drawn.
            let (measured, unmeasured): (Vec<Ranked>, Vec<Ranked>) = values
                .iter()
                .map(|(v, n)| (*v, *n))
                .partition(|(v, _)| points(v).iter().any(|(_, mae)| mae.is_some()));
            let mut ranked = measured;
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let shown = ranked.len().min(SEGMENT_SERIES);
            let mut chart = LineChart::new(format!("MAE per {dimension}"), "MAE", Scale::Number)
                .size(HALF)
                .zero_based();
            for (value, _) in &ranked[..shown] {
                chart = chart.series(*value, points(value));
            }
            SegmentChart {
                dimension: dimension.to_string(),
                shown,
                measured: ranked.len(),
                unmeasured: unmeasured.iter().map(|(v, _)| v.to_string()).collect(),
                chart,
            }
        })
        .collect();
    section(
        "performance",
        html! {
            p.note {
                (count(labelled)) " of " (count(predictions)) " predictions labelled; over them MAE "
                (number(mae, 4)) ", RMSE " (number(rmse, 4)) ". Error = prediction − target."
            }
            (chart_or_empty(&errors, "MAE and RMSE", "No labelled rows in the range."))
            @if segment_charts.is_empty() {
                (empty("No segment performance in the range."))
            }
            div.grid2 {
                @for s in &segment_charts {
                    div {
                        h3 { "MAE per " (s.dimension) }
                        @if s.shown < s.measured {
                            p.note { "The " (s.shown) " of " (s.measured) " values with the most labelled rows." }
                        }
                        @if s.chart.has_data() {
                            (s.chart.render())
                        } @else {
                            (empty("Every segment had too few labelled rows to measure."))
                        }
                        @if !s.unmeasured.is_empty() {
                            p.note { "Too few labelled rows to measure: " (s.unmeasured.join(", ")) "." }
                        }
                    }
                }
            }
        },
    )
}

/// A series' points: window start and value.
type Points = Vec<(NaiveDateTime, Option<f64>)>;
/// A segment value and its labelled rows over the range.
type Ranked<'a> = (&'a str, i64);

struct SegmentChart {
    dimension: String,
    shown: usize,
    measured: usize,
    unmeasured: Vec<String>,
    chart: LineChart,
}

fn fairness(data: &ReportData) -> Markup {
    let band = data
        .performance
        .last()
        .map(|p| (p.fairness_low, p.fairness_high));
    let mut chart = LineChart::new(
        "Worst segment's MAE ratio per window",
        "segment MAE / window MAE",
        Scale::Number,
    )
    .series(
        "worst MAE ratio",
        data.performance
            .iter()
            .map(|p| (p.start, p.worst_mae_ratio)),
    );
    if let Some((low, high)) = band {
        chart = chart
            .threshold(low, format!("band {}", number(Some(low), 3)))
            .threshold(high, format!("band {}", number(Some(high), 3)));
    }
    chart = chart.markers(
        "outside the band",
        data.performance.iter().filter_map(|p| {
            let ratio = p.worst_mae_ratio?;
            let outside = ratio < p.fairness_low || ratio > p.fairness_high;
            outside.then(|| {
                (
                    p.start,
                    ratio,
                    format!(
                        "{}: {} has {} × the window's MAE",
                        time(p.start),
                        p.worst_segment.as_deref().unwrap_or("a segment"),
                        number(Some(ratio), 3)
                    ),
                )
            })
        }),
    );
    let mut unfair: Vec<_> = data.segments.iter().filter(|s| s.unfair).collect();
    unfair.sort_by(|a, b| {
        let distance = |r: Option<f64>| r.map_or(0.0, |r| r.max(1.0 / r));
        distance(b.mae_ratio)
            .total_cmp(&distance(a.mae_ratio))
            .then(a.start.cmp(&b.start))
    });
    section(
        "fairness",
        html! {
            @if chart.has_data() {
                p.note { "Per window, the measured segment whose MAE ratio to the whole window is farthest from 1, against the fairness band." }
                (chart.render())
            } @else {
                (empty("No segment MAE ratios in the range."))
            }
            @if !unfair.is_empty() {
                h3 { "Segments outside the band" }
                (limited_note(unfair.len(), 20))
                table {
                    thead { tr { th { "window" } th { "segment" } th.num { "labelled rows" } th.num { "MAE" } th.num { "MAE ratio" } } }
                    tbody {
                        @for s in unfair.iter().take(20) {
                            tr {
                                td { (time(s.start)) }
                                td { (s.dimension) " = " (s.value) }
                                td.num { (count(s.labelled_rows)) }
                                td.num { (number(s.mae, 4)) }
                                td.num { (number(s.mae_ratio, 3)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn limited_note(total: usize, limit: usize) -> Markup {
    html! {
        @if total > limit {
            p.note { "The first " (limit) " of " (total) " rows." }
        }
    }
}

fn alerts(data: &ReportData) -> Markup {
    section(
        "alerts",
        html! {
            @if data.alerts.is_empty() {
                (empty("No alert fired or resolved in the range."))
            } @else {
                (limited_note(data.alerts.len(), TABLE_ROWS))
                table {
                    thead { tr { th { "window" } th { "rule" } th { "state" } th { "condition" } th.num { "value" } } }
                    tbody {
                        @for a in data.alerts.iter().take(TABLE_ROWS) {
                            tr {
                                td { (time(a.start)) }
                                td { (a.rule) }
                                td { span.badge.firing[a.state == "firing"].resolved[a.state == "resolved"] { (a.state) } }
                                td {
                                    (a.metric) " " (a.op) " " (number(Some(a.threshold), 4))
                                    @if a.for_windows > 1 { " for " (a.for_windows) " windows" }
                                }
                                td.num { (number(a.value, 4)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn late_events(data: &ReportData) -> Markup {
    let total: i64 = data.late.iter().map(|l| l.dropped).sum();
    section(
        "late-events",
        html! {
            @if data.late.is_empty() {
                (empty("No late events were dropped in the range."))
            } @else {
                p.note {
                    (count(total)) " events came after every window's update horizon and were dropped (not counted in the metrics), in "
                    (data.late.len()) " windows."
                }
                (limited_note(data.late.len(), TABLE_ROWS))
                table {
                    thead { tr { th { "window" } th.num { "late events dropped" } } }
                    tbody {
                        @for l in data.late.iter().take(TABLE_ROWS) {
                            tr { td { (time(l.start)) } td.num { (count(l.dropped)) } }
                        }
                    }
                }
            }
        },
    )
}

fn windows(data: &ReportData) -> Markup {
    let mae: BTreeMap<NaiveDateTime, Option<f64>> =
        data.performance.iter().map(|p| (p.start, p.mae)).collect();
    let late: BTreeMap<NaiveDateTime, i64> =
        data.late.iter().map(|l| (l.start, l.dropped)).collect();
    section(
        "windows",
        html! {
            @if data.windows.is_empty() {
                (empty("No windows in the range."))
            } @else {
                (limited_note(data.windows.len(), TABLE_ROWS))
                div.scroll {
                    table {
                        thead { tr {
                            th { "window" } th.num { "rows" } th.num { "missing" }
                            th.num { "prediction drift" } th.num { "drifted columns" } th { "dataset drift" }
                            th.num { "MAE" } th.num { "late events" } th.num { "revision" }
                        } }
                        tbody {
                            @for w in data.windows.iter().take(TABLE_ROWS) {
                                tr {
                                    td { (time(w.start)) }
                                    td.num { (count(w.row_count)) }
                                    td.num { (percent(w.share_missing)) }
                                    td.num {
                                        (number(w.prediction_drift, 4))
                                        @if w.prediction_drift_detected == Some(true) { " " span.badge.drift { "drift" } }
                                    }
                                    td.num { (w.drifted_columns) " (" (percent(Some(w.share_drifted))) ")" }
                                    td { @if w.dataset_drift { span.badge.drift { "yes" } } @else { "no" } }
                                    td.num { (number(mae.get(&w.start).copied().flatten(), 4)) }
                                    td.num { (count(late.get(&w.start).copied().unwrap_or(0))) }
                                    td.num { (w.revision) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ReportQuery, ReportWindow};

    #[test]
    fn an_empty_report_says_so_in_every_section() {
        let query = ReportQuery {
            monitor: None,
            window: ReportWindow::DAILY,
            from: None,
            to: None,
        };
        let html = render(&ReportData::empty(&query, "postgres://u@h:5432/d".into()));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("nothing to report"));
        assert!(html.contains("No late events"));
        assert!(html.contains("No alert fired"));
        assert!(html.contains("No model performance"));
        assert!(!html.contains("<svg"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn drift_direction_follows_the_flags() {
        let p_values = [(0.01, 0.05, true), (0.2, 0.05, false)];
        assert_eq!(drift_direction(p_values.into_iter()), Some("drift below"));
        let distances = [(0.2, 0.1, true), (0.05, 0.1, false)];
        assert_eq!(
            drift_direction(distances.into_iter()),
            Some("drift at or above")
        );
        assert_eq!(drift_direction(std::iter::empty()), None);
    }
}
