//! Decoding scored trip events (JSON objects) into what windows need: the event time,
//! the monitored columns' values and which data cells are present or missing. One pass
//! over the bytes with serde, no intermediate `Value` tree, and no allocation per event once
//! the decoder has seen the events' fields: event time and trip id are copied into buffers
//! that are reused, and each field's role is remembered by its position in the object (events
//! of one producer list their fields in the same order), so a field costs one comparison with
//! the name seen there last time instead of hash-table lookups.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use streamwatch_common::events::{
    parse_timestamp, EVENT_TIME, METADATA_FIELDS, PREDICTION_TIME, TRIP_ID,
};

/// Why an event could not be used; the text goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    /// Short label for the dead-letter counter.
    pub kind: &'static str,
    pub reason: String,
}

impl DecodeError {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// One decoded event. Reused between events to avoid allocation.
#[derive(Debug, Default, Clone)]
pub struct DecodedEvent {
    /// Event time in microseconds since 1970-01-01 (naive, no time zone).
    pub event_time_us: i64,
    pub trip_id: Option<String>,
    /// Values of the monitored columns, in [`Decoder::new`] order; `None` for null or absent.
    pub values: Vec<Option<f64>>,
    /// Every data column the event carries, as interned ids, with whether its cell is missing
    /// (null or empty string).
    pub cells: Vec<(u32, bool)>,
}

/// What a field of an event is for.
#[derive(Debug, Clone, Copy)]
enum Role {
    EventTime,
    TripId,
    /// Metadata or an ignored column.
    Skip,
    /// A monitored column: its index in [`DecodedEvent::values`] and its column id.
    Monitored {
        index: usize,
        id: u32,
    },
    /// Any other data column: present or missing.
    Cell {
        id: u32,
    },
}

/// Fields whose role is remembered by position; later ones are looked up each time.
const MAX_LAYOUT: usize = 256;

/// Decodes events for a fixed list of monitored columns.
pub struct Decoder {
    monitored: FxHashMap<Box<str>, usize>,
    ignored: Vec<String>,
    column_ids: FxHashMap<Box<str>, u32>,
    column_names: Vec<Box<str>>,
    /// The fields of the events decoded so far by position: the name last seen there and
    /// its role.
    layout: Vec<(Box<str>, Role)>,
    /// The current event's `event_time` text (reused).
    event_time: String,
}

impl Decoder {
    /// `monitored` columns are read as numbers; `ignored` ones are skipped entirely.
    pub fn new(monitored: &[String], ignored: &[String]) -> Self {
        Self {
            ignored: ignored.to_vec(),
            monitored: monitored
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str().into(), i))
                .collect(),
            column_ids: FxHashMap::default(),
            column_names: Vec::new(),
            layout: Vec::new(),
            event_time: String::new(),
        }
    }

    /// Name of an interned data column.
    pub fn column_name(&self, id: u32) -> &str {
        &self.column_names[id as usize]
    }

    pub fn decode(&mut self, bytes: &[u8], out: &mut DecodedEvent) -> Result<(), DecodeError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            DecodeError::new("invalid_utf8", format!("event is not valid UTF-8: {e}"))
        })?;
        out.values.clear();
        out.values.resize(self.monitored.len(), None);
        out.cells.clear();
        // The trip id's buffer is reused: cleared here, filled when the event has one.
        let mut trip_id = out.trip_id.take().unwrap_or_default();
        trip_id.clear();
        let mut fields = Fields {
            event_time: false,
            trip_id: false,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let decoded = de
            .deserialize_map(EventVisitor {
                decoder: self,
                out,
                trip_id: &mut trip_id,
                fields: &mut fields,
            })
            .and_then(|()| de.end());
        if fields.trip_id {
            out.trip_id = Some(trip_id);
        }
        decoded.map_err(|e| {
            let text = e.to_string();
            let kind = if text.starts_with("field ") {
                "invalid_field"
            } else {
                "invalid_json"
            };
            DecodeError::new(kind, text)
        })?;
        if !fields.event_time {
            return Err(DecodeError::new(
                "missing_event_time",
                format!("field \"{EVENT_TIME}\" is missing"),
            ));
        }
        let time = &self.event_time;
        out.event_time_us = parse_event_time(time).ok_or_else(|| {
            DecodeError::new(
                "invalid_event_time",
                format!(
                    "field \"{EVENT_TIME}\": {:?} is not a timestamp like 2022-02-01T00:02:32",
                    time.chars().take(40).collect::<String>()
                ),
            )
        })?;
        Ok(())
    }

    /// The role of the field `name` at `position` in the event: the remembered one when the
    /// same name was there before.
    fn role(&mut self, position: usize, name: &str) -> Role {
        if let Some((seen, role)) = self.layout.get(position) {
            if **seen == *name {
                return *role;
            }
        }
        let role = if name == EVENT_TIME {
            Role::EventTime
        } else if name == TRIP_ID {
            Role::TripId
        } else if METADATA_FIELDS.contains(&name) || self.ignored.iter().any(|c| c == name) {
            Role::Skip
        } else if let Some(&index) = self.monitored.get(name) {
            Role::Monitored {
                index,
                id: self.column_id(name),
            }
        } else {
            Role::Cell {
                id: self.column_id(name),
            }
        };
        if position < self.layout.len() {
            self.layout[position] = (name.into(), role);
        } else if position == self.layout.len() && position < MAX_LAYOUT {
            self.layout.push((name.into(), role));
        }
        role
    }

    fn column_id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.column_ids.get(name) {
            return *id;
        }
        let id = self.column_names.len() as u32;
        self.column_names.push(name.into());
        self.column_ids.insert(name.into(), id);
        id
    }
}

/// Decodes a completion event: `trip_id`, `event_time` (when the truth became known),
/// `prediction_time` (the event time of the trip's prediction) and the `target` field (a
/// number, or null when the truth is unknown).
pub fn decode_completion(
    bytes: &[u8],
    target: &str,
) -> Result<(String, crate::performance::Completion), DecodeError> {
    match completion_fast(bytes, target) {
        Some(decoded) => Ok(decoded),
        // Whatever the fast path does not take, the full parse decides, and says why.
        None => completion_slow(bytes, target),
    }
}

/// A well-formed completion, its fields read in one pass without building a JSON tree
/// (which was a fifth of a completion's handling under `perf`); `None` for anything else.
fn completion_fast(bytes: &[u8], target: &str) -> Option<(String, crate::performance::Completion)> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let fields = deserializer
        .deserialize_map(CompletionVisitor { target })
        .ok()?;
    deserializer.end().ok()?;
    Some((
        fields.trip_id?.0.into_owned(),
        crate::performance::Completion {
            time_us: parse_event_time(&fields.event_time?.0)?,
            prediction_time_us: parse_event_time(&fields.prediction_time?.0)?,
            truth: fields.truth?.filter(|v| v.is_finite()),
        },
    ))
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct JsonText<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for JsonText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = JsonText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<JsonText<'de>, E> {
                Ok(JsonText(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonText<'de>, E> {
                Ok(JsonText(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The fields of a completion the monitor reads; the last of repeated keys wins, as in a
/// JSON object parsed whole.
#[derive(Default)]
struct CompletionFields<'de> {
    trip_id: Option<JsonText<'de>>,
    event_time: Option<JsonText<'de>>,
    prediction_time: Option<JsonText<'de>>,
    truth: Option<Option<f64>>,
}

struct CompletionVisitor<'t> {
    target: &'t str,
}

impl<'de> Visitor<'de> for CompletionVisitor<'_> {
    type Value = CompletionFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one completion)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = CompletionFields::default();
        while let Some(key) = map.next_key::<JsonText<'de>>()? {
            match key.0.as_ref() {
                TRIP_ID => fields.trip_id = Some(map.next_value()?),
                EVENT_TIME => fields.event_time = Some(map.next_value()?),
                PREDICTION_TIME => fields.prediction_time = Some(map.next_value()?),
                name if name == self.target => fields.truth = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// [`decode_completion`] through a whole JSON object, with the reason when it fails.
fn completion_slow(
    bytes: &[u8],
    target: &str,
) -> Result<(String, crate::performance::Completion), DecodeError> {
    use serde_json::Value;
    let object: serde_json::Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        DecodeError::new(
            "invalid_json",
            format!("completion is not a JSON object: {e}"),
        )
    })?;
    let text = |field: &str| match object.get(field) {
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(other) => Err(DecodeError::new(
            "invalid_field",
            format!("field \"{field}\" must be a string, got {other}"),
        )),
        None => Err(DecodeError::new(
            "missing_field",
            format!("field \"{field}\" is missing"),
        )),
    };
    let time = |field: &str| {
        let value = text(field)?;
        parse_event_time(value).ok_or_else(|| {
            DecodeError::new(
                "invalid_event_time",
                format!(
                    "field \"{field}\": {:?} is not a timestamp like 2022-02-01T00:02:32",
                    value.chars().take(40).collect::<String>()
                ),
            )
        })
    };
    let trip_id = text(TRIP_ID)?.to_owned();
    let completion = crate::performance::Completion {
        time_us: time(EVENT_TIME)?,
        prediction_time_us: time(PREDICTION_TIME)?,
        truth: match object.get(target) {
            None => {
                return Err(DecodeError::new(
                    "missing_field",
                    format!("field \"{target}\" (the target) is missing"),
                ))
            }
            Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()),
            Some(other) => {
                return Err(DecodeError::new(
                    "invalid_field",
                    format!("field \"{target}\" (the target) must be a number, got {other}"),
                ))
            }
        },
    };
    Ok((trip_id, completion))
}

/// Parses an event time (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, see [`parse_timestamp`]) to
/// microseconds since the epoch.
pub fn parse_event_time(text: &str) -> Option<i64> {
    parse_timestamp(text)
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// Which of the non-column fields an event had (not null).
struct Fields {
    event_time: bool,
    trip_id: bool,
}

struct EventVisitor<'a> {
    decoder: &'a mut Decoder,
    out: &'a mut DecodedEvent,
    /// Receives the trip id.
    trip_id: &'a mut String,
    fields: &'a mut Fields,
}

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one trip event)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut position = 0;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            match self.decoder.role(position, key) {
                Role::EventTime => {
                    let buffer = &mut self.decoder.event_time;
                    buffer.clear();
                    self.fields.event_time = map.next_value_seed(Text(buffer)).map_err(|_| {
                        de::Error::custom(format!(
                            "field \"{EVENT_TIME}\": expected a timestamp string"
                        ))
                    })?;
                }
                Role::TripId => {
                    self.trip_id.clear();
                    self.fields.trip_id =
                        map.next_value_seed(Text(self.trip_id)).map_err(|_| {
                            de::Error::custom(format!("field \"{TRIP_ID}\": expected a string"))
                        })?;
                }
                Role::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Role::Monitored { index, id } => {
                    let value: Option<f64> = map.next_value_seed(Number { field: key })?;
                    self.out.values[index] = value;
                    self.out.cells.push((id, value.is_none()));
                }
                Role::Cell { id } => {
                    let present = map.next_value::<Cell>()?.0;
                    self.out.cells.push((id, !present));
                }
            }
            position += 1;
        }
        Ok(())
    }
}

/// A map key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A string or null, copied into a reused buffer: whether it was a string.
struct Text<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        self.0.push_str(v);
        Ok(true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A monitored column's value: a number or null.
struct Number<'a> {
    field: &'a str,
}

impl<'de> DeserializeSeed<'de> for Number<'_> {
    type Value = Option<f64>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Number<'_> {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "field \"{}\": a number or null", self.field)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_unit<E>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<f64>, E> {
        Err(self.wrong("a string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<f64>, E> {
        Err(self.wrong("a boolean"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Option<f64>, A::Error> {
        Err(self.wrong("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Option<f64>, A::Error> {
        Err(self.wrong("an object"))
    }
}

impl Number<'_> {
    fn wrong<E: de::Error>(&self, got: &str) -> E {
        E::custom(format!(
            "field \"{}\": expected a number or null, got {got}",
            self.field
        ))
    }
}

/// Any other cell: present unless null or an empty string (Evidently's missing values).
struct Cell(bool);

impl<'de> de::Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Cell, E> {
                Ok(Cell(false))
            }
            fn visit_none<E>(self) -> Result<Cell, E> {
                Ok(Cell(false))
            }
            fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell(!v.is_empty()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Cell, E> {
                Ok(Cell(true))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Cell, E> {
                Ok(Cell(true))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Cell, E> {
                Ok(Cell(true))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Cell, E> {
                Ok(Cell(true))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell(true))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Cell(true))
            }
        }
        d.deserialize_any(CellVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        Decoder::new(
            &["prediction".to_owned(), "fare_amount".to_owned()],
            &["VendorID".to_owned()],
        )
    }

    #[test]
    fn decodes_values_cells_and_time() {
        let mut d = decoder();
        let mut e = DecodedEvent::default();
        d.decode(
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:02:32","fare_amount":12,"store_and_fwd_flag":"","ehail_fee":null,"VendorID":2,"prediction":7.5,"model_version":"v1"}"#,
            &mut e,
        )
        .unwrap();
        assert_eq!(e.values, vec![Some(7.5), Some(12.0)]);
        assert_eq!(e.trip_id.as_deref(), Some("f:1"));
        assert_eq!(e.event_time_us, 1_643_673_752_000_000);
        let missing: Vec<(&str, bool)> = e
            .cells
            .iter()
            .map(|(id, m)| (d.column_name(*id), *m))
            .collect();
        assert_eq!(
            missing,
            vec![
                ("fare_amount", false),
                ("store_and_fwd_flag", true),
                ("ehail_fee", true),
                ("prediction", false)
            ]
        );
    }

    #[test]
    fn rejects_bad_events_with_reasons() {
        let mut d = decoder();
        let mut e = DecodedEvent::default();
        let cases: [(&[u8], &str, &str); 6] = [
            (b"[1,2]", "invalid_json", "a JSON object"),
            (
                b"{\"event_time\":\"2022-02-01T00:00:00\",\"fare_amount\":\"12\"}",
                "invalid_field",
                "field \"fare_amount\": expected a number or null, got a string",
            ),
            (
                b"{\"fare_amount\":1}",
                "missing_event_time",
                "\"event_time\" is missing",
            ),
            (
                b"{\"event_time\":\"yesterday\"}",
                "invalid_event_time",
                "not a timestamp",
            ),
            (b"\xff\xfe", "invalid_utf8", "UTF-8"),
            (
                b"{\"event_time\":\"2022-02-01T00:00:00\"} trailing",
                "invalid_json",
                "trailing",
            ),
        ];
        for (bytes, kind, text) in cases {
            let err = d.decode(bytes, &mut e).unwrap_err();
            assert_eq!(err.kind, kind, "{err}");
            assert!(err.reason.contains(text), "{err} should mention {text}");
        }
    }

    /// The decoder remembers each position's field and reuses its buffers: events whose
    /// fields come in another order, or lack the trip id, decode as a fresh decoder does.
    #[test]
    fn changing_field_orders_decode_as_with_a_fresh_decoder() {
        let events: [&[u8]; 7] = [
            br#"{"trip_id":"a:1","event_time":"2022-02-01T00:00:00","fare_amount":1,"x":"","prediction":2.5}"#,
            br#"{"prediction":3,"event_time":"2022-02-01T00:00:01","x":null,"fare_amount":null,"y":1}"#,
            br#"{"trip_id":"b:2","event_time":"2022-02-01T00:00:02.5","fare_amount":4,"x":"v","prediction":null,"model_version":"m"}"#,
            br#"{"trip_id":null,"event_time":"2022-02-01T00:00:03","VendorID":1,"fare_amount":5}"#,
            br#"{"trip_id":"c:3","event_time":"2022-02-01T00:00:04","fare_amount":"bad"}"#,
            br#"{"trip_id":"e:5","fare_amount":7}"#,
            br#"{"trip_id":"d\u0031","event_time":"2022-02-01T00:00:0\u0035","fare_amount":6}"#,
        ];
        let mut shared = decoder();
        let mut event = DecodedEvent::default();
        for bytes in events {
            let mut fresh = decoder();
            let mut expected = DecodedEvent::default();
            let result = shared.decode(bytes, &mut event);
            assert_eq!(result, fresh.decode(bytes, &mut expected));
            if result.is_err() {
                continue;
            }
            assert_eq!(event.values, expected.values);
            assert_eq!(event.trip_id, expected.trip_id);
            assert_eq!(event.event_time_us, expected.event_time_us);
            let named = |d: &Decoder, e: &DecodedEvent| -> Vec<(String, bool)> {
                e.cells
                    .iter()
                    .map(|(id, missing)| (d.column_name(*id).to_owned(), *missing))
                    .collect()
            };
            assert_eq!(named(&shared, &event), named(&fresh, &expected));
        }
        assert_eq!(event.trip_id.as_deref(), Some("d1"));
        assert_eq!(event.event_time_us, 1_643_673_605_000_000);
    }

    #[test]
    fn event_times_are_microseconds_since_the_epoch() {
        assert_eq!(parse_event_time("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_event_time("1969-12-31T23:59:59.000001"),
            Some(-999_999)
        );
        assert_eq!(
            parse_event_time("2022-02-01 00:02:32.5"),
            Some(1_643_673_752_500_000)
        );
        assert_eq!(parse_event_time("2022-02-30T00:00:00"), None);
    }

    #[test]
    fn completions_decode_or_say_why_not() {
        let (id, completion) = decode_completion(
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":18.0}"#,
            "duration_min",
        )
        .unwrap();
        assert_eq!(id, "f:1");
        assert_eq!(
            completion.time_us - completion.prediction_time_us,
            18 * 60 * 1_000_000
        );
        assert_eq!(completion.truth, Some(18.0));
        let cases: [(&[u8], &str); 4] = [
            (b"[1]", "invalid_json"),
            (br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","duration_min":1}"#, "missing_field"),
            (br#"{"trip_id":"f:1","event_time":"soon","prediction_time":"2022-02-01T00:02:00","duration_min":1}"#, "invalid_event_time"),
            (br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":"long"}"#, "invalid_field"),
        ];
        for (bytes, kind) in cases {
            let error = decode_completion(bytes, "duration_min").unwrap_err();
            assert_eq!(error.kind, kind, "{error}");
        }
    }

    #[test]
    fn the_fast_completion_path_agrees_with_the_whole_object() {
        let cases: [&[u8]; 10] = [
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":18.0}"#,
            br#"{"duration_min":7,"prediction_time":"2022-02-01T00:02:00","x":[1,{"a":null}],"event_time":"2022-02-01 00:20:00.5","trip_id":"f:\u0032"}"#,
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":null}"#,
            br#"{"trip_id":"f:1","trip_id":"f:2","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":1,"duration_min":2}"#,
            br#"{"trip_id":5,"trip_id":"f:2","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":1}"#,
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":1e400}"#,
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00"}"#,
            br#"{"trip_id":"f:1","event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":1} x"#,
            br#"{"trip_id":null,"event_time":"2022-02-01T00:20:00","prediction_time":"2022-02-01T00:02:00","duration_min":1}"#,
            b"\xff",
        ];
        for bytes in cases {
            let fast = completion_fast(bytes, "duration_min");
            let slow = completion_slow(bytes, "duration_min");
            let text = String::from_utf8_lossy(bytes);
            match (&fast, &slow) {
                (Some((id, c)), Ok((slow_id, s))) => {
                    assert_eq!(id, slow_id, "{text}");
                    assert_eq!(
                        (c.time_us, c.prediction_time_us, c.truth.map(f64::to_bits)),
                        (s.time_us, s.prediction_time_us, s.truth.map(f64::to_bits)),
                        "{text}"
                    );
                }
                (None, _) => {}
                (Some(_), Err(error)) => panic!("{text}: only the full parse refuses it: {error}"),
            }
            assert_eq!(
                decode_completion(bytes, "duration_min").map(|(id, _)| id),
                slow.map(|(id, _)| id),
                "{text}"
            );
        }
    }
}
