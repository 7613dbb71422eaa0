//! Live input: JSON objects from stdin (one per line) or HTTP requests (`source::http`). Every
//! source sends [`Submission`]s into one channel; the ingest loop checks each input with
//! [`validate`], publishes the events, dead-letters the rejections and, when the source asked
//! for it, answers with a [`Receipt`].

use std::io::BufRead;

use chrono::NaiveDateTime;
use serde_json::{Map, Value};
use streamwatch_common::events::{format_timestamp, parse_timestamp, EVENT_TIME, TRIP_ID};
use streamwatch_common::spec::Spec;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{LiveArgs, TimeFallback};
use crate::error::{Error, Result};

/// One raw message from an input source.
#[derive(Debug, Clone)]
pub struct LiveInput {
    /// Where it came from, for dead-letter reasons (for example `line 3`).
    pub origin: String,
    /// When it arrived, the event time of last resort.
    pub arrival: NaiveDateTime,
    pub bytes: Vec<u8>,
}

/// Which source an input came from (the `source` label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stdin,
    Http,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stdin => "stdin",
            Source::Http => "http",
        }
    }
}

/// What a source hands to the ingest loop: inputs in order, and where the outcome goes.
#[derive(Debug)]
pub struct Submission {
    pub source: Source,
    pub inputs: Vec<LiveInput>,
    /// Told once every accepted input is acknowledged by the broker (or failed); `None` when
    /// no one waits (stdin).
    pub reply: Option<oneshot::Sender<Receipt>>,
}

/// The channel every source feeds; an `Err` (a failed read) ends the run.
pub type Inputs = mpsc::Sender<Result<Submission>>;

/// An input of a submission that did not become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position of the input in its submission (0-based).
    pub index: usize,
    pub kind: &'static str,
    /// The reason, as in the dead letter's `dlq.reason` header.
    pub reason: String,
}

/// The outcome of one submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Inputs that passed validation and were published.
    pub accepted: usize,
    /// Inputs that failed validation, in order; each was dead-lettered.
    pub rejected: Vec<Rejected>,
    /// Accepted events the broker did not acknowledge, plus dead letters not written.
    pub failed: usize,
    /// The first of those failures.
    pub error: Option<String>,
}

/// A validated event, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub trip_id: String,
    pub event_time: NaiveDateTime,
    pub payload: Vec<u8>,
}

/// Why an input cannot become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Short label for the dead-letter counter.
    pub kind: &'static str,
    /// The full reason, starting with the input's origin.
    pub reason: String,
}

/// How event times and trip ids are found in live objects, and what else they must hold.
#[derive(Debug, Clone)]
pub struct LiveRules {
    pub event_time_field: String,
    pub time_column: String,
    pub fallback: TimeFallback,
    /// The columns a monitoring spec asks for, when one is given.
    pub columns: Option<SpecColumns>,
}

impl LiveRules {
    pub fn new(args: &LiveArgs) -> Result<Self> {
        let spec = args.spec.as_deref().map(Spec::load).transpose()?;
        let time_column = match &spec {
            Some(spec) if spec.timestamp != args.event_time_field => spec.timestamp.clone(),
            _ => args.time_column.clone(),
        };
        Ok(Self {
            event_time_field: args.event_time_field.clone(),
            time_column,
            fallback: args.time_field_fallback,
            columns: spec.as_ref().map(SpecColumns::from),
        })
    }
}

/// The data columns of a monitoring spec, by the JSON types they accept.
#[derive(Debug, Clone, Default)]
pub struct SpecColumns {
    /// Must be present; a number or null.
    pub numerical: Vec<String>,
    /// Must be present; a string, number, boolean or null.
    pub categorical: Vec<String>,
    /// May be absent; a number or null when present.
    pub target: Option<String>,
}

impl From<&Spec> for SpecColumns {
    fn from(spec: &Spec) -> Self {
        Self {
            numerical: spec.numerical.clone(),
            categorical: spec.categorical.clone(),
            target: spec.target.clone(),
        }
    }
}

impl SpecColumns {
    /// The first column that is missing or of the wrong type, as (kind, problem).
    fn check(&self, object: &Map<String, Value>) -> Result<(), (&'static str, String)> {
        let numerical = self.numerical.iter().map(|c| (c, true));
        let categorical = self.categorical.iter().map(|c| (c, false));
        for (column, is_numerical) in numerical.chain(categorical) {
            match object.get(column) {
                None => {
                    return Err((
                        "missing_column",
                        format!("column {column} is missing (send null for a missing value)"),
                    ))
                }
                Some(value) => check_type(column, value, is_numerical)?,
            }
        }
        if let Some(target) = &self.target {
            if let Some(value) = object.get(target) {
                check_type(target, value, true)?;
            }
        }
        Ok(())
    }
}

fn check_type(column: &str, value: &Value, numerical: bool) -> Result<(), (&'static str, String)> {
    let fits = match value {
        Value::Null | Value::Number(_) => true,
        Value::String(_) | Value::Bool(_) => !numerical,
        Value::Array(_) | Value::Object(_) => false,
    };
    if fits {
        return Ok(());
    }
    let expected = if numerical {
        "a number or null"
    } else {
        "a string, number, boolean or null"
    };
    Err((
        "wrong_type",
        format!(
            "column {column} must be {expected}, got {}",
            describe(value)
        ),
    ))
}

/// Trip ids for objects that bring none: `live:<process start in ms>-<counter>`, unique across
/// restarts without coordination.
#[derive(Debug)]
pub struct LiveIds {
    prefix: String,
    next: u64,
}

impl LiveIds {
    pub fn new(process_start: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            prefix: format!("live:{}-", process_start.timestamp_millis()),
            next: 0,
        }
    }

    fn next_id(&mut self) -> String {
        let id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn reject(kind: &'static str, input: &LiveInput, problem: String) -> Rejection {
    Rejection {
        kind,
        reason: format!("{}: {problem}", input.origin),
    }
}

/// Reads a time field; `Ok(None)` when it is absent or null.
fn time_field(
    object: &Map<String, Value>,
    field: &str,
    input: &LiveInput,
) -> Result<Option<NaiveDateTime>, Rejection> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_timestamp(text).map(Some).map_err(|_| {
            let shown: String = text.chars().take(64).collect();
            reject(
                "invalid_event_time",
                input,
                format!(
                    "{field} {shown:?} is not a timestamp (expected YYYY-MM-DDTHH:MM:SS[.ffffff])"
                ),
            )
        }),
        Some(other) => Err(reject(
            "invalid_event_time",
            input,
            format!(
                "{field} must be a timestamp string, got {}",
                describe(other)
            ),
        )),
    }
}

/// Checks one input and builds its event: the object with `event_time` set (normalised) and
/// `trip_id` kept or generated.
pub fn validate(
    input: &LiveInput,
    rules: &LiveRules,
    ids: &mut LiveIds,
) -> Result<LiveEvent, Rejection> {
    let value: Value = serde_json::from_slice(&input.bytes)
        .map_err(|error| reject("invalid_json", input, format!("invalid JSON: {error}")))?;
    let Value::Object(mut object) = value else {
        return Err(reject(
            "not_an_object",
            input,
            format!("expected a JSON object, got {}", describe(&value)),
        ));
    };
    let trip_id = match object.get(TRIP_ID) {
        None | Some(Value::Null) => ids.next_id(),
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(other) => {
            let got = match other {
                Value::String(_) => "an empty string",
                other => describe(other),
            };
            return Err(reject(
                "invalid_trip_id",
                input,
                format!("{TRIP_ID} must be a non-empty string, got {got}"),
            ));
        }
    };
    let event_time = match time_field(&object, &rules.event_time_field, input)? {
        Some(time) => time,
        None => match time_field(&object, &rules.time_column, input)? {
            Some(time) => time,
            None if rules.fallback == TimeFallback::Arrival => input.arrival,
            None => {
                return Err(reject(
                    "missing_event_time",
                    input,
                    format!(
                        "neither {} nor {} holds a timestamp",
                        rules.event_time_field, rules.time_column
                    ),
                ))
            }
        },
    };
    if let Some(columns) = &rules.columns {
        columns
            .check(&object)
            .map_err(|(kind, problem)| reject(kind, input, problem))?;
    }
    object.insert(TRIP_ID.to_owned(), Value::String(trip_id.clone()));
    object.insert(
        EVENT_TIME.to_owned(),
        Value::String(format_timestamp(event_time)),
    );
    let payload = serde_json::to_vec(&object).expect("a JSON object always serializes");
    Ok(LiveEvent {
        trip_id,
        event_time,
        payload,
    })
}

/// Sends every non-blank line of `reader` to `tx` as `line N` (1-based) until EOF, a read error
/// (sent as the last item) or the receiver going away.
pub fn read_lines(mut reader: impl BufRead, tx: &mpsc::Sender<Result<LiveInput>>) {
    let mut number = 0u64;
    loop {
        let mut bytes = Vec::new();
        let item = match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => return,
            Ok(_) => {
                number += 1;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok(LiveInput {
                    origin: format!("line {number}"),
                    arrival: chrono::Local::now().naive_local(),
                    bytes,
                })
            }
            Err(error) => Err(Error::Input(error)),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// Reads stdin on its own thread (a blocked read must not hold up the runtime at shutdown)
/// and forwards each line to `inputs` until EOF, a read error or `stop`; then it lets go of
/// `inputs`, so the ingest loop ends once every source has.
pub fn spawn_stdin(inputs: Inputs, stop: CancellationToken) -> Result<()> {
    let (tx, mut lines) = mpsc::channel(1024);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_lines(std::io::stdin().lock(), &tx))
        .map_err(Error::Input)?;
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                line = lines.recv() => line,
            };
            let Some(line) = line else {
                tracing::info!("stdin ended");
                break;
            };
            let failed = line.is_err();
            let submission = line.map(|input| Submission {
                source: Source::Stdin,
                inputs: vec![input],
                reply: None,
            });
            if inputs.send(submission).await.is_err() || failed {
                break;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(fallback: TimeFallback) -> LiveRules {
        LiveRules {
            event_time_field: "event_time".into(),
            time_column: "lpep_pickup_datetime".into(),
            fallback,
            columns: None,
        }
    }

    fn input(line: u64, text: &str) -> LiveInput {
        LiveInput {
            origin: format!("line {line}"),
            arrival: parse_timestamp("2024-03-05T10:00:00").unwrap(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn ids() -> LiveIds {
        LiveIds::new(chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap())
    }

    fn check(text: &str, fallback: TimeFallback) -> Result<Value, Rejection> {
        validate(&input(3, text), &rules(fallback), &mut ids())
            .map(|event| serde_json::from_slice(&event.payload).unwrap())
    }

    #[test]
    fn valid_objects_get_event_time_and_trip_id() {
        let event = check(
            r#"{"lpep_pickup_datetime":"2022-02-01 00:02:32","fare_amount":7.5}"#,
            TimeFallback::Reject,
        )
        .unwrap();
        assert_eq!(event[EVENT_TIME], "2022-02-01T00:02:32");
        assert_eq!(event[TRIP_ID], "live:1700000000000-0");
        assert_eq!(event["fare_amount"], 7.5);

        let event = check(
            r#"{"trip_id":"t-1","event_time":"2022-02-01T00:00:00.5","lpep_pickup_datetime":"2022-01-01T00:00:00"}"#,
            TimeFallback::Reject,
        )
        .unwrap();
        assert_eq!(event[TRIP_ID], "t-1");
        assert_eq!(event[EVENT_TIME], "2022-02-01T00:00:00.500");

        let event = check(r#"{"fare_amount":7.5}"#, TimeFallback::Arrival).unwrap();
        assert_eq!(event[EVENT_TIME], "2024-03-05T10:00:00");
    }

    #[test]
    fn generated_ids_count_up() {
        let mut ids = ids();
        let rules = rules(TimeFallback::Arrival);
        let first = validate(&input(1, "{}"), &rules, &mut ids).unwrap();
        let second = validate(&input(2, "{}"), &rules, &mut ids).unwrap();
        assert_eq!(first.trip_id, "live:1700000000000-0");
        assert_eq!(second.trip_id, "live:1700000000000-1");
    }

    #[test]
    fn invalid_lines_are_rejected_with_a_reason() {
        let cases = [
            (
                "[1,2]",
                "not_an_object",
                "line 3: expected a JSON object, got an array",
            ),
            (
                "42",
                "not_an_object",
                "line 3: expected a JSON object, got a number",
            ),
            (
                "{\"a\":",
                "invalid_json",
                "line 3: invalid JSON: EOF while parsing",
            ),
            (
                r#"{"event_time":"yesterday"}"#,
                "invalid_event_time",
                "line 3: event_time \"yesterday\" is not a timestamp",
            ),
            (
                r#"{"lpep_pickup_datetime":17}"#,
                "invalid_event_time",
                "line 3: lpep_pickup_datetime must be a timestamp string, got a number",
            ),
            (
                r#"{"fare_amount":7.5}"#,
                "missing_event_time",
                "line 3: neither event_time nor lpep_pickup_datetime holds a timestamp",
            ),
            (
                r#"{"trip_id":7,"event_time":"2022-02-01T00:00:00"}"#,
                "invalid_trip_id",
                "line 3: trip_id must be a non-empty string, got a number",
            ),
            (
                r#"{"trip_id":"","event_time":"2022-02-01T00:00:00"}"#,
                "invalid_trip_id",
                "line 3: trip_id must be a non-empty string, got an empty string",
            ),
        ];
        for (text, kind, reason) in cases {
            let rejection = check(text, TimeFallback::Reject).unwrap_err();
            assert_eq!(rejection.kind, kind, "{text}");
            assert!(
                rejection.reason.starts_with(reason),
                "{text}: {}",
                rejection.reason
            );
        }
    }

    #[test]
    fn a_spec_requires_its_columns_with_their_types() {
        let spec = Spec::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/specs/taxi.toml"),
        )
        .unwrap();
        let rules = LiveRules {
            columns: Some(SpecColumns::from(&spec)),
            ..rules(TimeFallback::Reject)
        };
        let trip = |fare: &str, pickup_zone: &str| {
            format!(
                r#"{{"lpep_pickup_datetime":"2022-02-01T00:02:32","passenger_count":1,"trip_distance":2.5,"fare_amount":{fare},"total_amount":null,"PULocationID":{pickup_zone},"DOLocationID":75,"duration_min":12.5}}"#
            )
        };
        let check = |text: &str| validate(&input(3, text), &rules, &mut ids());
        check(&trip("7.5", "74")).unwrap();
        check(&trip("7.5", "\"74\"")).unwrap();
        let cases = [
            (
                trip("\"seven\"", "74"),
                "wrong_type",
                "line 3: column fare_amount must be a number or null, got a string",
            ),
            (
                trip("7.5", "[74]"),
                "wrong_type",
                "line 3: column PULocationID must be a string, number, boolean or null, got an array",
            ),
            (
                trip("7.5", "74").replace(r#""trip_distance":2.5,"#, ""),
                "missing_column",
                "line 3: column trip_distance is missing",
            ),
            (
                trip("7.5", "74").replace("12.5", "\"long\""),
                "wrong_type",
                "line 3: column duration_min must be a number or null, got a string",
            ),
        ];
        for (text, kind, reason) in cases {
            let rejection = check(&text).unwrap_err();
            assert_eq!(rejection.kind, kind, "{text}");
            assert!(rejection.reason.starts_with(reason), "{}", rejection.reason);
        }
    }

    #[test]
    fn lines_are_numbered_and_blank_ones_skipped() {
        let (tx, mut rx) = mpsc::channel(16);
        let text = "{\"a\":1}\r\n\n  \n[2]\n{\"c\":3}";
        read_lines(std::io::Cursor::new(text), &tx);
        drop(tx);
        let mut got = Vec::new();
        while let Ok(item) = rx.try_recv() {
            let item = item.unwrap();
            got.push((item.origin, String::from_utf8(item.bytes).unwrap()));
        }
        assert_eq!(
            got,
            [
                ("line 1".to_owned(), "{\"a\":1}".to_owned()),
                ("line 4".to_owned(), "[2]".to_owned()),
                ("line 5".to_owned(), "{\"c\":3}".to_owned()),
            ]
        );
    }
}
