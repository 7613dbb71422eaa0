//! Reads Grafana's provisioned alert rules (grafana/provisioning/alerting/*.yaml) and the
//! relations migrations/*.sql create; shared by compose.rs (structure) and alert_rules.rs (the
//! queries on PostgreSQL).
#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

/// The PostgreSQL datasource's uid, fixed in grafana/provisioning/datasources/postgres.yaml.
pub const DATASOURCE_UID: &str = "streamwatch-postgres";
/// Grafana's pseudo-datasource of server-side expressions (reduce, math, threshold).
pub const EXPRESSION_UID: &str = "__expr__";
pub const RULE_FILE: &str = "grafana/provisioning/alerting/alert-rules.yaml";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

pub fn yaml(relative: &str) -> Value {
    let mut value: Value =
        serde_norway::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
    value.apply_merge().unwrap(); // `<<: *anchor`
    value
}

pub fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// One rule of the provisioned file, with its group.
pub struct Rule<'a> {
    pub group: &'a Value,
    pub rule: &'a Value,
}

impl<'a> Rule<'a> {
    pub fn uid(&self) -> &'a str {
        str_of(&self.rule["uid"])
    }

    pub fn data(&self) -> impl Iterator<Item = &'a Value> {
        self.rule["data"].as_sequence().into_iter().flatten()
    }

    pub fn query(&self, ref_id: &str) -> Option<&'a Value> {
        self.data().find(|d| str_of(&d["refId"]) == ref_id)
    }

    /// The data-source queries (not expressions).
    pub fn sql_queries(&self) -> Vec<SqlQuery> {
        self.data()
            .filter(|d| str_of(&d["datasourceUid"]) != EXPRESSION_UID)
            .map(|d| SqlQuery {
                rule_uid: self.uid().to_owned(),
                ref_id: str_of(&d["refId"]).to_owned(),
                datasource_uid: str_of(&d["datasourceUid"]).to_owned(),
                from_seconds: d["relativeTimeRange"]["from"].as_i64().unwrap_or(-1),
                to_seconds: d["relativeTimeRange"]["to"].as_i64().unwrap_or(-1),
                format: str_of(&d["model"]["format"]).to_owned(),
                sql: str_of(&d["model"]["rawSql"]).to_owned(),
            })
            .collect()
    }

    /// The condition's threshold: evaluator type and parameters.
    pub fn threshold(&self) -> Threshold {
        let condition = self
            .query(str_of(&self.rule["condition"]))
            .unwrap_or_else(|| panic!("{}: the condition is not one of its queries", self.uid()));
        let evaluator = &condition["model"]["conditions"][0]["evaluator"];
        Threshold {
            kind: str_of(&evaluator["type"]).to_owned(),
            params: evaluator["params"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|p| p.as_f64().expect("numeric threshold"))
                .collect(),
        }
    }
}

pub struct SqlQuery {
    pub rule_uid: String,
    pub ref_id: String,
    pub datasource_uid: String,
    /// `relativeTimeRange`: seconds before now.
    pub from_seconds: i64,
    pub to_seconds: i64,
    pub format: String,
    pub sql: String,
}

/// A threshold expression's evaluator, as Grafana applies it to the reduced value.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub kind: String,
    pub params: Vec<f64>,
}

impl Threshold {
    pub fn fires(&self, value: f64) -> bool {
        let p = &self.params;
        match self.kind.as_str() {
            "gt" => value > p[0],
            "lt" => value < p[0],
            "within_range" => value > p[0] && value < p[1],
            "outside_range" => value < p[0] || value > p[1],
            other => panic!("unknown evaluator {other}"),
        }
    }

    pub fn arity(kind: &str) -> Option<usize> {
        match kind {
            "gt" | "lt" => Some(1),
            "within_range" | "outside_range" => Some(2),
            _ => None,
        }
    }
}

pub fn rule_file() -> Value {
    yaml(RULE_FILE)
}

pub fn rules(file: &Value) -> Vec<Rule<'_>> {
    file["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| {
            group["rules"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(move |rule| Rule { group, rule })
        })
        .collect()
}

/// Tables and views the migrations create (lower case).
pub fn migration_relations() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations/*.sql");
    for file in files {
        let text = strip_comments(&std::fs::read_to_string(&file).unwrap()).to_lowercase();
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            if *word != "create" {
                continue;
            }
            let mut rest = words[i + 1..].iter().copied();
            let mut next = rest.next();
            if next == Some("or") {
                rest.next(); // replace
                next = rest.next();
            }
            for modifier in ["temporary", "temp", "unlogged", "materialized"] {
                if next == Some(modifier) {
                    next = rest.next();
                }
            }
            if !matches!(next, Some("table" | "view")) {
                continue;
            }
            let mut name = rest.next().unwrap();
            if name == "if" {
                rest.next(); // not
                rest.next(); // exists
                name = rest.next().unwrap();
            }
            names.insert(unquote(name.rsplit('.').next().unwrap()).to_owned());
        }
    }
    names
}

fn strip_comments(sql: &str) -> String {
    sql.lines()
        .map(|line| line.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn unquote(name: &str) -> &str {
    name.trim_matches('"')
}

/// The relations a query reads: the names after FROM and JOIN, outside string literals and
/// function calls (`extract(epoch FROM x)`), not subqueries.
pub fn referenced_relations(sql: &str) -> BTreeSet<String> {
    let tokens = tokens(&strip_comments(sql));
    let mut relations = BTreeSet::new();
    // One entry per open parenthesis: true when it opened a function's arguments.
    let mut in_function: Vec<bool> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "(" => {
                let function = i > 0 && {
                    let before = tokens[i - 1].as_str();
                    is_word(before) && !KEYWORDS.contains(&before)
                };
                in_function.push(function);
            }
            ")" => {
                in_function.pop();
            }
            "from" | "join" if !in_function.last().copied().unwrap_or(false) => {
                if let Some(next) = tokens.get(i + 1).filter(|t| is_word(t)) {
                    relations.insert(unquote(next.rsplit('.').next().unwrap()).to_owned());
                }
            }
            _ => {}
        }
    }
    relations
}

const KEYWORDS: &[&str] = &[
    "from", "join", "in", "exists", "as", "on", "and", "or", "not", "select", "where", "lateral",
    "any", "all", "over", "filter", "by", "using",
];

fn is_word(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '"')
}

/// Lower-case words (with dots and quoted identifiers) and single punctuation; string literals
/// are dropped.
fn tokens(sql: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // A literal, with '' as an escaped quote.
            while let Some(d) = chars.next() {
                if d == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
        } else if c.is_alphanumeric() || c == '_' || c == '"' || c == '$' {
            let mut word = String::from(c);
            let mut quoted = c == '"';
            while let Some(&d) = chars.peek() {
                if quoted {
                    word.push(d);
                    chars.next();
                    if d == '"' {
                        quoted = false;
                    }
                } else if d.is_alphanumeric() || d == '_' || d == '.' || d == '$' {
                    word.push(d);
                    chars.next();
                } else if d == '"' {
                    quoted = true;
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(word.to_lowercase());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// Seconds of a Grafana/Prometheus duration such as `1m`, `5m`, `0s`, `1h30m`.
pub fn duration_seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0 // milliseconds: below a second
        } else {
            match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                'y' => 31_536_000,
                _ => return None,
            }
        };
        let n: u64 = std::mem::take(&mut number).parse().ok()?;
        total += n * unit;
    }
    number.is_empty().then_some(total)
}
