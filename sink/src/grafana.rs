//! Reads the SQL, the template variables and the saved time range out of Grafana dashboard JSON
//! and expands Grafana's PostgreSQL macros, so tests can run every panel's query against a real
//! database, as Grafana would send it.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::{Error, Result};

/// The datasource a panel or query points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasourceRef {
    /// Plugin id (`grafana-postgresql-datasource`).
    pub kind: String,
    pub uid: String,
}

/// One SQL query of a dashboard: a panel target, or a template variable's query.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub dashboard: String,
    /// The panel's title, or `variable <name>` for a template variable.
    pub panel_title: String,
    pub ref_id: String,
    /// `time_series` or `table`; empty for variables.
    pub format: String,
    /// The target's datasource, else the panel's.
    pub datasource: Option<DatasourceRef>,
    pub sql: String,
}

/// Every SQL query of a dashboard: panel targets with `rawSql` (also inside collapsed rows),
/// then template-variable queries.
pub fn panel_queries(dashboard_json: &str) -> Result<Vec<PanelQuery>> {
    let dashboard: Value = serde_json::from_str(dashboard_json).map_err(|e| Error::Dashboard {
        dashboard: "(unparsed)".into(),
        problem: format!("is not valid JSON: {e}"),
    })?;
    let title = dashboard["title"].as_str().unwrap_or_default().to_owned();
    let panels = dashboard["panels"]
        .as_array()
        .ok_or_else(|| Error::Dashboard {
            dashboard: title.clone(),
            problem: "has no panels array".into(),
        })?;
    let mut queries = Vec::new();
    collect_panels(&title, panels, &mut queries);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        if let Some(sql) = variable_sql(&variable["query"]) {
            queries.push(PanelQuery {
                dashboard: title.clone(),
                panel_title: format!("variable {}", variable["name"].as_str().unwrap_or_default()),
                ref_id: String::new(),
                format: String::new(),
                datasource: datasource_ref(&variable["datasource"]),
                sql: sql.to_owned(),
            });
        }
    }
    Ok(queries)
}

/// A dashboard's template variable (`templating.list`).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVariable {
    pub name: String,
    /// `query`, `custom`, `constant`, `textbox`, `interval`...
    pub kind: String,
    /// The SQL of a `query` variable.
    pub sql: Option<String>,
    /// The value saved with the dashboard (`current.value`; the first one of a list).
    pub current: Option<String>,
    pub multi: bool,
    pub include_all: bool,
}

impl TemplateVariable {
    /// `value` as Grafana's SQL datasources insert it: a single-value variable verbatim with
    /// its quotes doubled (the SQL quotes it: `'$name'`), a multi-value or include-all one as a
    /// quoted literal (the SQL lists it: `IN ($name)`).
    pub fn sql_value(&self, value: &str) -> String {
        let escaped = value.replace('\'', "''");
        if self.multi || self.include_all {
            format!("'{escaped}'")
        } else {
            escaped
        }
    }
}

/// The template variables of a dashboard, in their order (later ones may use earlier ones).
pub fn template_variables(dashboard_json: &str) -> Result<Vec<TemplateVariable>> {
    let dashboard: Value = serde_json::from_str(dashboard_json).map_err(|e| Error::Dashboard {
        dashboard: "(unparsed)".into(),
        problem: format!("is not valid JSON: {e}"),
    })?;
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items.first().and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    };
    Ok(dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|variable| TemplateVariable {
            name: variable["name"].as_str().unwrap_or_default().to_owned(),
            kind: variable["type"].as_str().unwrap_or_default().to_owned(),
            sql: (variable["type"] == "query")
                .then(|| variable_sql(&variable["query"]))
                .flatten()
                .map(str::to_owned),
            current: text(&variable["current"]["value"]),
            multi: variable["multi"].as_bool().unwrap_or(false),
            include_all: variable["includeAll"].as_bool().unwrap_or(false),
        })
        .collect())
}

/// A query variable's SQL: the query itself (older dashboards) or its `rawSql`.
fn variable_sql(query: &Value) -> Option<&str> {
    match query {
        Value::String(sql) => Some(sql.as_str()),
        query => query["rawSql"].as_str().or(query["query"].as_str()),
    }
}

/// The dashboard's saved time range (`time.from`, `time.to`) as UTC times: absolute ones
/// (`2022-02-01T00:00:00.000Z`) or relative to `now` (`now`, `now-6h`, `now-7d`; rounding
/// such as `now/d` is not supported). None when missing or not understood.
pub fn time_range(
    dashboard_json: &str,
    now: NaiveDateTime,
) -> Option<(NaiveDateTime, NaiveDateTime)> {
    let dashboard: Value = serde_json::from_str(dashboard_json).ok()?;
    let point = |text: &str| -> Option<NaiveDateTime> {
        if let Some(offset) = text.strip_prefix("now") {
            if offset.is_empty() {
                return Some(now);
            }
            let (sign, interval) = match offset.split_at(1) {
                ("-", rest) => (-1.0, rest),
                ("+", rest) => (1.0, rest),
                _ => return None,
            };
            let seconds = interval_seconds(interval)?;
            let millis = (sign * seconds * 1_000.0) as i64;
            return now.checked_add_signed(chrono::Duration::milliseconds(millis));
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.naive_utc())
    };
    let from = point(dashboard["time"]["from"].as_str()?)?;
    let to = point(dashboard["time"]["to"].as_str()?)?;
    (from < to).then_some((from, to))
}

fn collect_panels(dashboard: &str, panels: &[Value], queries: &mut Vec<PanelQuery>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let panel_source = datasource_ref(&panel["datasource"]);
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(sql) = target["rawSql"].as_str() else {
                continue;
            };
            queries.push(PanelQuery {
                dashboard: dashboard.to_owned(),
                panel_title: title.to_owned(),
                ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                format: target["format"].as_str().unwrap_or_default().to_owned(),
                datasource: datasource_ref(&target["datasource"]).or_else(|| panel_source.clone()),
                sql: sql.to_owned(),
            });
        }
        // A collapsed row keeps its panels inside itself.
        if let Some(nested) = panel["panels"].as_array() {
            collect_panels(dashboard, nested, queries);
        }
    }
}

fn datasource_ref(value: &Value) -> Option<DatasourceRef> {
    Some(DatasourceRef {
        kind: value["type"].as_str()?.to_owned(),
        uid: value["uid"].as_str()?.to_owned(),
    })
}

/// Expands a panel's SQL as Grafana does for PostgreSQL over the range `[from, to]` (naive
/// times are UTC, as Grafana reads `timestamp` columns): first the template variables (`$name`,
/// `${name}`, `${name:format}`, `[[name]]`) from `vars`, inserted verbatim, plus the globals
/// `$__from`/`$__to` (epoch milliseconds); then the macros `$__time`, `$__timeEpoch`,
/// `$__timeFilter`, `$__timeFrom`, `$__timeTo`, `$__timeGroup`, `$__timeGroupAlias`,
/// `$__unixEpochFilter`, `$__unixEpochFrom`, `$__unixEpochTo`, `$__unixEpochGroup` and
/// `$__unixEpochGroupAlias`. Like Grafana, it leaves what it does not know (an unknown variable
/// or macro, wrong arguments) as written, so the database's error shows it.
pub fn expand_macros(
    sql: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    vars: &[(&str, &str)],
) -> String {
    let range = Range {
        from: from.and_utc(),
        to: to.and_utc(),
    };
    expand_sql_macros(&expand_variables(sql, &range, vars), &range)
}

struct Range {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn expand_variables(sql: &str, range: &Range, vars: &[(&str, &str)]) -> String {
    let lookup = |name: &str| -> Option<String> {
        if let Some((_, value)) = vars.iter().find(|(n, _)| *n == name) {
            return Some((*value).to_owned());
        }
        match name {
            "__from" => Some(range.from.timestamp_millis().to_string()),
            "__to" => Some(range.to.timestamp_millis().to_string()),
            _ => None,
        }
    };
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(pos) = rest.find(['$', '[']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        // (variable name, bytes of `tail` the reference takes)
        let reference = if tail.starts_with("$$") {
            None // dollar quoting, never a variable
        } else if let Some(inner) = tail.strip_prefix("[[") {
            inner.find("]]").and_then(|end| {
                let name = inner[..end].split(':').next().unwrap_or_default();
                (!name.is_empty() && name.chars().all(is_ident)).then_some((name, end + 4))
            })
        } else if let Some(inner) = tail.strip_prefix("${") {
            inner
                .find('}')
                .map(|end| (inner[..end].split(':').next().unwrap_or_default(), end + 3))
        } else if let Some(inner) = tail.strip_prefix('$') {
            let len = inner.find(|c: char| !is_ident(c)).unwrap_or(inner.len());
            let name = &inner[..len];
            let is_macro = name.starts_with("__") && inner[len..].starts_with('(');
            // `$1` is a positional parameter, not a variable.
            let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            (!is_macro && is_name).then_some((name, len + 1))
        } else {
            None
        };
        match reference.and_then(|(name, taken)| Some((lookup(name)?, taken))) {
            Some((value, taken)) => {
                out.push_str(&value);
                rest = &tail[taken..];
            }
            None => {
                // Keep the character (both of `$$`) and go on after it.
                let keep = if tail.starts_with("$$") { 2 } else { 1 };
                out.push_str(&tail[..keep]);
                rest = &tail[keep..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn expand_sql_macros(sql: &str, range: &Range) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(pos) = rest.find("$__") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 3..];
        let len = after.find(|c: char| !is_ident(c)).unwrap_or(after.len());
        let name = &after[..len];
        let call = after[len..].strip_prefix('(').and_then(|args_text| {
            split_arguments(args_text).map(|(args, used)| (args, len + 1 + used))
        });
        match call.and_then(|(args, used)| Some((expand_one(name, &args, range)?, used))) {
            Some((expansion, used)) => {
                out.push_str(&expansion);
                rest = &after[used..];
            }
            None => {
                out.push_str(&rest[pos..pos + 3 + len]);
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits `a, 'b,c', f(d))...` at top-level commas up to the closing parenthesis; returns the
/// trimmed arguments and the number of bytes consumed, the parenthesis included.
fn split_arguments(text: &str) -> Option<(Vec<String>, usize)> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') if depth > 0 => depth -= 1,
            (None, ')') => {
                let last = text[start..i].trim();
                if !(args.is_empty() && last.is_empty()) {
                    args.push(last.to_owned());
                }
                return Some((args, i + 1));
            }
            (None, ',') if depth == 0 => {
                args.push(text[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// One macro's expansion; None when the name or the arguments are not Grafana's.
fn expand_one(name: &str, args: &[String], range: &Range) -> Option<String> {
    let arity = |min: usize, max: usize| (min..=max).contains(&args.len()).then_some(());
    let quoted = |t: DateTime<Utc>| format!("'{}'", t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    let alias = |group: String| {
        if name.ends_with("Alias") {
            format!("{group} AS \"time\"")
        } else {
            group
        }
    };
    Some(match name {
        "time" => {
            arity(1, 1)?;
            format!("{} AS \"time\"", args[0])
        }
        "timeEpoch" => {
            arity(1, 1)?;
            format!("extract(epoch from {}) AS \"time\"", args[0])
        }
        "timeFilter" => {
            arity(1, 1)?;
            format!(
                "{} BETWEEN {} AND {}",
                args[0],
                quoted(range.from),
                quoted(range.to)
            )
        }
        "timeFrom" => {
            arity(0, 0)?;
            quoted(range.from)
        }
        "timeTo" => {
            arity(0, 0)?;
            quoted(range.to)
        }
        "timeGroup" | "timeGroupAlias" => {
            arity(2, 3)?;
            let seconds = interval_seconds(&args[1])?;
            alias(format!(
                "floor(extract(epoch from {})/{seconds})*{seconds}",
                args[0]
            ))
        }
        "unixEpochFilter" => {
            arity(1, 1)?;
            let column = &args[0];
            format!(
                "{column} >= {} AND {column} <= {}",
                range.from.timestamp(),
                range.to.timestamp()
            )
        }
        "unixEpochFrom" => {
            arity(0, 0)?;
            range.from.timestamp().to_string()
        }
        "unixEpochTo" => {
            arity(0, 0)?;
            range.to.timestamp().to_string()
        }
        "unixEpochGroup" | "unixEpochGroupAlias" => {
            arity(2, 3)?;
            let seconds = interval_seconds(&args[1])?;
            alias(format!("floor({}/{seconds})*{seconds}", args[0]))
        }
        _ => return None,
    })
}

/// Seconds of a Grafana interval: `'5m'`, `30s`, `1h`, `1d`, `1w`, `500ms` (quotes optional).
fn interval_seconds(text: &str) -> Option<f64> {
    let bare = text.trim().trim_matches(|c| c == '\'' || c == '"');
    let split = bare
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(bare.len());
    let (number, unit) = bare.split_at(split);
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    Some(Duration::from_millis(number.saturating_mul(unit_ms)).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> (NaiveDateTime, NaiveDateTime) {
        let day = |d: &str| NaiveDateTime::parse_from_str(d, "%Y-%m-%dT%H:%M:%S").unwrap();
        (day("2022-02-01T00:00:00"), day("2022-03-01T00:00:00"))
    }

    fn expand(sql: &str) -> String {
        let (from, to) = range();
        expand_macros(sql, from, to, &[])
    }

    #[test]
    fn time_filter_and_bounds() {
        assert_eq!(
            expand(
                r#"SELECT "timestamp" AS "time" FROM t WHERE $__timeFilter("timestamp") ORDER BY 1"#
            ),
            r#"SELECT "timestamp" AS "time" FROM t WHERE "timestamp" BETWEEN '2022-02-01T00:00:00Z' AND '2022-03-01T00:00:00Z' ORDER BY 1"#
        );
        assert_eq!(
            expand("x >= $__timeFrom() AND x < $__timeTo( )"),
            "x >= '2022-02-01T00:00:00Z' AND x < '2022-03-01T00:00:00Z'"
        );
        assert_eq!(
            expand("$__unixEpochFilter(ts) OR $__unixEpochFrom() < $__unixEpochTo()"),
            "ts >= 1643673600 AND ts <= 1646092800 OR 1643673600 < 1646092800"
        );
    }

    #[test]
    fn time_group_and_alias() {
        assert_eq!(
            expand("SELECT $__timeGroupAlias(window_start, '1d'), avg(v) FROM t GROUP BY 1"),
            "SELECT floor(extract(epoch from window_start)/86400)*86400 AS \"time\", avg(v) FROM t GROUP BY 1"
        );
        assert_eq!(
            expand("$__timeGroup(date_trunc('day', ts), 5m, NULL)"),
            "floor(extract(epoch from date_trunc('day', ts))/300)*300"
        );
        assert_eq!(
            expand("$__time(ts), $__timeEpoch(ts)"),
            "ts AS \"time\", extract(epoch from ts) AS \"time\""
        );
        assert_eq!(
            expand("$__unixEpochGroupAlias(epoch, '1h')"),
            "floor(epoch/3600)*3600 AS \"time\""
        );
    }

    #[test]
    fn template_variables() {
        let (from, to) = range();
        let vars = [
            ("monitor", "'taxi'"),
            ("column", "fare_amount"),
            ("__interval", "1d"),
        ];
        assert_eq!(
            expand_macros(
                "SELECT $column, [[column]], ${column:raw} FROM t WHERE m = $monitor AND $__timeGroup(ts, $__interval) > 0",
                from,
                to,
                &vars
            ),
            "SELECT fare_amount, fare_amount, fare_amount FROM t WHERE m = 'taxi' AND floor(extract(epoch from ts)/86400)*86400 > 0"
        );
        assert_eq!(
            expand_macros("$__from - $__to, $1, $$x$$", from, to, &[]),
            "1643673600000 - 1646092800000, $1, $$x$$"
        );
        // Unknown variables stay, as in Grafana.
        assert_eq!(
            expand_macros(
                "WHERE m = $monitor OR n = ${other:csv} OR [[third]]",
                from,
                to,
                &[]
            ),
            "WHERE m = $monitor OR n = ${other:csv} OR [[third]]"
        );
    }

    #[test]
    fn unknown_or_broken_macros_stay_as_written() {
        for sql in [
            "$__nope(x)",
            "$__timeFilter(x",
            "$__timeFilter()",
            "$__timeFilter(a, b)",
            "$__timeGroup(x, 'soon')",
            "$__timeGroup(x, 0s)",
            "$__timeFrom",
        ] {
            assert_eq!(expand(sql), sql);
        }
        assert_eq!(
            expand("$__nope(x) AND $__timeFilter(t)"),
            "$__nope(x) AND t BETWEEN '2022-02-01T00:00:00Z' AND '2022-03-01T00:00:00Z'"
        );
        assert_eq!(
            expand("$__timeFilter(coalesce(a, ')'))"),
            "coalesce(a, ')') BETWEEN '2022-02-01T00:00:00Z' AND '2022-03-01T00:00:00Z'"
        );
    }

    #[test]
    fn panel_queries_walk_rows_and_variables() {
        let dashboard = r#"{
            "title": "t",
            "panels": [
                {"title": "a", "datasource": {"type": "grafana-postgresql-datasource", "uid": "u"},
                 "targets": [{"refId": "A", "format": "table", "rawSql": "SELECT 1"}]},
                {"title": "row", "type": "row", "panels": [
                    {"title": "b", "targets": [{"refId": "B", "format": "time_series", "rawSql": "SELECT 2",
                      "datasource": {"type": "postgres", "uid": "v"}}]}
                ]},
                {"title": "text", "type": "text"}
            ],
            "templating": {"list": [
                {"name": "m", "type": "query", "query": "SELECT 3"},
                {"name": "c", "type": "custom", "query": "x,y"}
            ]}
        }"#;
        let queries = panel_queries(dashboard).unwrap();
        let summary: Vec<(&str, &str, &str, Option<&str>)> = queries
            .iter()
            .map(|q| {
                (
                    q.panel_title.as_str(),
                    q.sql.as_str(),
                    q.format.as_str(),
                    q.datasource.as_ref().map(|d| d.uid.as_str()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "SELECT 1", "table", Some("u")),
                ("b", "SELECT 2", "time_series", Some("v")),
                ("variable m", "SELECT 3", "", None),
            ]
        );
        assert!(panel_queries("{}").is_err());
        assert!(panel_queries("not json").is_err());
    }

    #[test]
    fn template_variables_and_their_values() {
        let dashboard = r#"{
            "templating": {"list": [
                {"name": "kind", "type": "query", "current": {"text": "tumbling", "value": "tumbling"},
                 "query": {"refId": "V", "rawSql": "SELECT DISTINCT window_kind FROM w"}},
                {"name": "size", "type": "query", "current": {"value": 86400},
                 "query": "SELECT 86400::text"},
                {"name": "segment", "type": "query", "multi": true, "current": {"value": ["Queens", "EWR"]},
                 "query": {"rawSql": "SELECT DISTINCT segment FROM s"}},
                {"name": "c", "type": "custom", "query": "x,y"}
            ]}
        }"#;
        let variables = super::template_variables(dashboard).unwrap();
        let summary: Vec<(&str, Option<&str>, Option<&str>, bool)> = variables
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.sql.as_deref(),
                    v.current.as_deref(),
                    v.multi,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "kind",
                    Some("SELECT DISTINCT window_kind FROM w"),
                    Some("tumbling"),
                    false
                ),
                ("size", Some("SELECT 86400::text"), Some("86400"), false),
                (
                    "segment",
                    Some("SELECT DISTINCT segment FROM s"),
                    Some("Queens"),
                    true
                ),
                ("c", None, None, false),
            ]
        );
        assert_eq!(variables[0].sql_value("O'Hare"), "O''Hare");
        assert_eq!(variables[2].sql_value("O'Hare"), "'O''Hare'");
        assert!(super::template_variables("{}").unwrap().is_empty());
        assert!(super::template_variables("not json").is_err());
    }

    #[test]
    fn saved_time_ranges() {
        let now =
            NaiveDateTime::parse_from_str("2025-06-01T12:00:00", "%Y-%m-%dT%H:%M:%S").unwrap();
        let range = |from: &str, to: &str| {
            time_range(
                &format!(r#"{{"time": {{"from": "{from}", "to": "{to}"}}}}"#),
                now,
            )
            .map(|(f, t)| (f.to_string(), t.to_string()))
        };
        assert_eq!(
            range("2022-02-01T00:00:00.000Z", "2022-03-01T00:00:00.000Z"),
            Some((
                "2022-02-01 00:00:00".to_owned(),
                "2022-03-01 00:00:00".to_owned()
            ))
        );
        assert_eq!(
            range("now-6h", "now"),
            Some((
                "2025-06-01 06:00:00".to_owned(),
                "2025-06-01 12:00:00".to_owned()
            ))
        );
        assert_eq!(
            range("now-1d", "now+5m"),
            Some((
                "2025-05-31 12:00:00".to_owned(),
                "2025-06-01 12:05:00".to_owned()
            ))
        );
        assert_eq!(range("now/d", "now"), None);
        assert_eq!(range("now", "now-1h"), None);
        assert_eq!(time_range("{}", now), None);
    }
}
