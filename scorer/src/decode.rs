//! Trip events on the wire: validating one, reading its features, and splicing the
//! prediction into the original bytes. Pure functions, no Kafka.
//!
//! Only `trip_id`, `event_time` and the model's features are materialised; serde_json still
//! checks the whole payload is one well-formed JSON object while skipping the other fields.
//! The output is the input up to its closing `}` followed by
//! `,"prediction":<f64>,"model_version":"<version>"}`, so every source field stays
//! byte-identical and nothing is re-serialised.

use std::borrow::Cow;
use std::fmt;

use chrono::NaiveDateTime;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use streamwatch_common::events::{parse_timestamp, EVENT_TIME, MODEL_VERSION, PREDICTION, TRIP_ID};

use crate::model::LinearModel;

/// Why an event cannot be scored; it goes to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    InvalidUtf8 {
        valid_up_to: usize,
    },
    InvalidJson(String),
    /// The payload is JSON but not an object; holds the JSON type found.
    NotAnObject(&'static str),
    MissingField(String),
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    InvalidEventTime(String),
    DuplicateField(String),
    /// The event already carries this field of a scored event.
    AlreadyScored(&'static str),
    /// The features are so large the prediction overflows; JSON has no infinity or NaN.
    NonFinitePrediction(f64),
}

impl Rejection {
    /// Short label for counters and the dead-letter kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::InvalidUtf8 { .. } => "invalid_utf8",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::NotAnObject(_) => "not_an_object",
            Rejection::MissingField(_) => "missing_field",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::InvalidEventTime(_) => "invalid_event_time",
            Rejection::DuplicateField(_) => "duplicate_field",
            Rejection::AlreadyScored(_) => "already_scored",
            Rejection::NonFinitePrediction(_) => "non_finite_prediction",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::InvalidUtf8 { valid_up_to } => write!(
                f,
                "payload is not valid UTF-8 (invalid byte at offset {valid_up_to})"
            ),
            Rejection::InvalidJson(error) => write!(f, "payload is not valid JSON: {error}"),
            Rejection::NotAnObject(got) => {
                write!(f, "payload is a JSON {got}, expected an object")
            }
            Rejection::MissingField(field) => write!(f, "missing field {field:?}"),
            Rejection::WrongType {
                field,
                expected,
                got,
            } => write!(f, "field {field:?}: expected {expected}, got {got}"),
            Rejection::InvalidEventTime(value) => write!(
                f,
                "field {EVENT_TIME:?}: {value:?} is not a timestamp YYYY-MM-DDTHH:MM:SS[.ffffff]"
            ),
            Rejection::DuplicateField(field) => {
                write!(f, "field {field:?} appears more than once")
            }
            Rejection::AlreadyScored(field) => {
                write!(f, "already scored: the event has a {field:?} field")
            }
            Rejection::NonFinitePrediction(value) => write!(
                f,
                "prediction is {value}, which JSON cannot carry (feature values too large)"
            ),
        }
    }
}

/// The fields of a trip event the scorer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TripEvent<'a> {
    pub trip_id: Cow<'a, str>,
    pub event_time: NaiveDateTime,
    /// One value per model feature, in the model's order; `None` for JSON null.
    pub features: Vec<Option<f64>>,
}

/// A scored event ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredEvent<'a> {
    pub trip_id: Cow<'a, str>,
    pub event_time: NaiveDateTime,
    pub prediction: f64,
    /// The original bytes with `prediction` and `model_version` appended.
    pub payload: Vec<u8>,
}

/// Validates events against a model's features and scores them.
pub struct EventScorer {
    model: LinearModel,
    /// `,"prediction":` written before the number.
    prediction_prefix: Vec<u8>,
    /// `,"model_version":"<version>"}` written after the number.
    tail: Vec<u8>,
}

impl EventScorer {
    pub fn new(model: LinearModel) -> Self {
        let prediction_prefix = format!(",{}:", json_string(PREDICTION)).into_bytes();
        let tail = format!(
            ",{}:{}}}",
            json_string(MODEL_VERSION),
            json_string(model.version())
        )
        .into_bytes();
        Self {
            model,
            prediction_prefix,
            tail,
        }
    }

    pub fn model(&self) -> &LinearModel {
        &self.model
    }

    /// Checks `payload` is a trip event the model can score and reads its features.
    pub fn decode<'a>(&self, payload: &'a [u8]) -> Result<TripEvent<'a>, Rejection> {
        let text = std::str::from_utf8(payload).map_err(|e| Rejection::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = TopLevel {
            features: self.model.features(),
        }
        .deserialize(&mut deserializer)
        .and_then(|parsed| deserializer.end().map(|()| parsed))
        .map_err(|e| Rejection::InvalidJson(e.to_string()))?;
        match parsed {
            Parsed::Object(fields) => fields.validate(self.model.features()),
            Parsed::Other(got) => Err(Rejection::NotAnObject(got)),
        }
    }

    /// Decodes, predicts and splices one event.
    pub fn score<'a>(&self, payload: &'a [u8]) -> Result<ScoredEvent<'a>, Rejection> {
        let event = self.decode(payload)?;
        let prediction = self.model.predict(&event.features);
        // `from_f64` refuses infinities and NaN; its Display is the shortest round-trip form.
        let number = serde_json::Number::from_f64(prediction)
            .ok_or(Rejection::NonFinitePrediction(prediction))?
            .to_string();
        // A decoded payload is one object: its last non-whitespace byte is the closing brace.
        let close = payload
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .filter(|&i| payload[i] == b'}')
            .ok_or_else(|| Rejection::InvalidJson("no closing brace".into()))?;
        let mut out = Vec::with_capacity(
            close + self.prediction_prefix.len() + number.len() + self.tail.len(),
        );
        out.extend_from_slice(&payload[..close]);
        out.extend_from_slice(&self.prediction_prefix);
        out.extend_from_slice(number.as_bytes());
        out.extend_from_slice(&self.tail);
        Ok(ScoredEvent {
            trip_id: event.trip_id,
            event_time: event.event_time,
            prediction,
            payload: out,
        })
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A JSON value reduced to what validation needs; arrays and objects are skipped.
#[derive(Debug)]
enum JsonValue<'de> {
    Null,
    Number(f64),
    String(Cow<'de, str>),
    Other(&'static str),
}

impl JsonValue<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Number(_) => "number",
            JsonValue::String(_) => "string",
            JsonValue::Other(name) => name,
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = JsonValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonValue::Other("boolean"))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonValue::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonValue::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(JsonValue::Number(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonValue::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonValue::String(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other("array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other("object"))
    }
}

/// Which of the fields the scorer cares about a key names.
enum Key {
    TripId,
    EventTime,
    Feature(usize),
    Scored(&'static str),
    Other,
}

struct KeySeed<'f> {
    features: &'f [String],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            TRIP_ID => Key::TripId,
            EVENT_TIME => Key::EventTime,
            PREDICTION => Key::Scored(PREDICTION),
            MODEL_VERSION => Key::Scored(MODEL_VERSION),
            _ => match self.features.iter().position(|f| f == key) {
                Some(index) => Key::Feature(index),
                None => Key::Other,
            },
        })
    }
}

/// The whole payload: an object's interesting fields, or the type of a non-object.
enum Parsed<'de> {
    Object(Fields<'de>),
    Other(&'static str),
}

struct TopLevel<'f> {
    features: &'f [String],
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Parsed<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields {
            trip_id: None,
            event_time: None,
            features: (0..self.features.len()).map(|_| None).collect(),
            duplicate: None,
            scored: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed {
            features: self.features,
        })? {
            let (slot, name) = match key {
                Key::TripId => (&mut fields.trip_id, TRIP_ID),
                Key::EventTime => (&mut fields.event_time, EVENT_TIME),
                Key::Feature(index) => (&mut fields.features[index], self.features[index].as_str()),
                Key::Scored(name) => {
                    fields.scored.get_or_insert(name);
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<JsonValue<'de>>()?;
            if slot.is_some() {
                fields.duplicate.get_or_insert_with(|| name.to_owned());
            } else {
                *slot = Some(value);
            }
        }
        Ok(Parsed::Object(fields))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Parsed::Other("null"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Parsed::Other("boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Parsed::Other("number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Parsed::Other("number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Parsed::Other("number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Parsed::Other("string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::Other("array"))
    }
}

/// The interesting fields of an object, checked once the whole payload parsed.
struct Fields<'de> {
    trip_id: Option<JsonValue<'de>>,
    event_time: Option<JsonValue<'de>>,
    features: Vec<Option<JsonValue<'de>>>,
    duplicate: Option<String>,
    scored: Option<&'static str>,
}

impl<'de> Fields<'de> {
    fn validate(self, names: &[String]) -> Result<TripEvent<'de>, Rejection> {
        if let Some(field) = self.scored {
            return Err(Rejection::AlreadyScored(field));
        }
        if let Some(field) = self.duplicate {
            return Err(Rejection::DuplicateField(field));
        }
        let trip_id = match required_string(TRIP_ID, self.trip_id)? {
            id if id.is_empty() => {
                return Err(Rejection::WrongType {
                    field: TRIP_ID.to_owned(),
                    expected: "a non-empty string",
                    got: "an empty string",
                })
            }
            id => id,
        };
        let event_time = required_string(EVENT_TIME, self.event_time)?;
        let event_time = parse_timestamp(&event_time)
            .map_err(|_| Rejection::InvalidEventTime(event_time.chars().take(64).collect()))?;
        let features = self
            .features
            .into_iter()
            .zip(names)
            .map(|(value, name)| match value {
                None => Err(Rejection::MissingField(name.clone())),
                Some(JsonValue::Null) => Ok(None),
                Some(JsonValue::Number(v)) => Ok(Some(v)),
                Some(other) => Err(Rejection::WrongType {
                    field: name.clone(),
                    expected: "a number or null",
                    got: other.type_name(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TripEvent {
            trip_id,
            event_time,
            features,
        })
    }
}

fn required_string<'de>(
    field: &str,
    value: Option<JsonValue<'de>>,
) -> Result<Cow<'de, str>, Rejection> {
    match value {
        None => Err(Rejection::MissingField(field.to_owned())),
        Some(JsonValue::String(text)) => Ok(text),
        Some(other) => Err(Rejection::WrongType {
            field: field.to_owned(),
            expected: "a string",
            got: other.type_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COEFFICIENTS: [f64; 6] = [
        -0.013579399518018597,
        -1.0880067218462571e-05,
        0.4128882540093592,
        0.19890292342197644,
        -0.005173405959499887,
        0.0021842771145854853,
    ];
    const INTERCEPT: f64 = 4.4360188162808445;

    fn scorer() -> EventScorer {
        let features = crate::model::FEATURES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let model = LinearModel::new(
            "2022-01.test",
            features,
            COEFFICIENTS.to_vec(),
            INTERCEPT,
            None,
        )
        .unwrap();
        EventScorer::new(model)
    }

    /// The contract's left-to-right sum, written out independently of `LinearModel::predict`.
    fn expected_prediction(x: [f64; 6]) -> f64 {
        let mut p = INTERCEPT;
        for (c, v) in COEFFICIENTS.iter().zip(x) {
            p += c * v;
        }
        p
    }

    const EVENT: &str = r#"{"VendorID":2,"lpep_pickup_datetime":"2022-02-01T00:02:32","passenger_count":1.0,"trip_distance":2.5,"fare_amount":11.0,"ehail_fee":null,"total_amount":13.3,"PULocationID":74,"DOLocationID":42,"trip_id":"green_tripdata_2022-02:0","event_time":"2022-02-01T00:02:32"}"#;

    #[test]
    fn a_valid_event_gets_prediction_and_version_appended() {
        let scored = scorer().score(EVENT.as_bytes()).unwrap();
        let p = expected_prediction([1.0, 2.5, 11.0, 13.3, 74.0, 42.0]);
        assert_eq!(scored.prediction.to_bits(), p.to_bits());
        assert_eq!(scored.trip_id, "green_tripdata_2022-02:0");
        assert!(matches!(scored.trip_id, Cow::Borrowed(_)));
        assert_eq!(
            scored.event_time,
            parse_timestamp("2022-02-01T00:02:32").unwrap()
        );
        let expected = format!(
            "{},\"prediction\":{},\"model_version\":\"2022-01.test\"}}",
            &EVENT[..EVENT.len() - 1],
            serde_json::Number::from_f64(p).unwrap()
        );
        assert_eq!(String::from_utf8(scored.payload.clone()).unwrap(), expected);
        // The number is exact: parsing the output gives the same bits back.
        let back: serde_json::Value = serde_json::from_slice(&scored.payload).unwrap();
        assert_eq!(back["prediction"].as_f64().unwrap().to_bits(), p.to_bits());
    }

    #[test]
    fn exact_bytes_for_a_small_event() {
        let event = br#"{"trip_id":"t:1","event_time":"2022-02-01T00:00:00","passenger_count":0,"trip_distance":0,"fare_amount":0,"total_amount":0,"PULocationID":0,"DOLocationID":0}"#;
        let scored = scorer().score(event).unwrap();
        assert_eq!(
            scored.payload,
            br#"{"trip_id":"t:1","event_time":"2022-02-01T00:00:00","passenger_count":0,"trip_distance":0,"fare_amount":0,"total_amount":0,"PULocationID":0,"DOLocationID":0,"prediction":4.4360188162808445,"model_version":"2022-01.test"}"#
        );
    }

    #[test]
    fn null_features_count_as_zero() {
        let event = br#"{"trip_id":"t:2","event_time":"2022-02-01T00:00:00","passenger_count":null,"trip_distance":null,"fare_amount":10,"total_amount":null,"PULocationID":null,"DOLocationID":null}"#;
        let decoded = scorer().decode(event).unwrap();
        assert_eq!(
            decoded.features,
            vec![None, None, Some(10.0), None, None, None]
        );
        let scored = scorer().score(event).unwrap();
        let p = expected_prediction([0.0, 0.0, 10.0, 0.0, 0.0, 0.0]);
        assert_eq!(scored.prediction.to_bits(), p.to_bits());
        assert!(scored.payload.ends_with(
            format!(
                ",\"prediction\":{},\"model_version\":\"2022-01.test\"}}",
                serde_json::Number::from_f64(p).unwrap()
            )
            .as_bytes()
        ));
    }

    fn rejection(payload: &[u8]) -> Rejection {
        scorer().score(payload).unwrap_err()
    }

    fn replace(from: &str, to: &str) -> Vec<u8> {
        assert!(EVENT.contains(from));
        EVENT.replacen(from, to, 1).into_bytes()
    }

    #[test]
    fn missing_fields_are_named() {
        for field in ["trip_id", "event_time", "fare_amount", "DOLocationID"] {
            let payload = EVENT
                .split(',')
                .filter(|part| !part.contains(&format!("\"{field}\"")))
                .collect::<Vec<_>>()
                .join(",");
            let payload = if payload.ends_with('}') {
                payload
            } else {
                payload + "}"
            };
            let rejected = rejection(payload.as_bytes());
            assert_eq!(rejected, Rejection::MissingField(field.into()));
            assert_eq!(rejected.to_string(), format!("missing field \"{field}\""));
            assert_eq!(rejected.kind(), "missing_field");
        }
    }

    #[test]
    fn wrong_types_are_named() {
        let rejected = rejection(&replace(r#""fare_amount":11.0"#, r#""fare_amount":"11.0""#));
        assert_eq!(
            rejected.to_string(),
            r#"field "fare_amount": expected a number or null, got string"#
        );
        assert_eq!(rejected.kind(), "wrong_type");
        let rejected = rejection(&replace(r#""PULocationID":74"#, r#""PULocationID":[74]"#));
        assert_eq!(
            rejected.to_string(),
            r#"field "PULocationID": expected a number or null, got array"#
        );
        let rejected = rejection(&replace(
            r#""passenger_count":1.0"#,
            r#""passenger_count":true"#,
        ));
        assert_eq!(
            rejected.to_string(),
            r#"field "passenger_count": expected a number or null, got boolean"#
        );
        let rejected = rejection(&replace(
            r#""trip_id":"green_tripdata_2022-02:0""#,
            r#""trip_id":7"#,
        ));
        assert_eq!(
            rejected.to_string(),
            r#"field "trip_id": expected a string, got number"#
        );
        let rejected = rejection(&replace(
            r#""trip_id":"green_tripdata_2022-02:0""#,
            r#""trip_id":"""#,
        ));
        assert_eq!(rejected.kind(), "wrong_type");
        let rejected = rejection(&replace(
            r#""event_time":"2022-02-01T00:02:32""#,
            r#""event_time":null"#,
        ));
        assert_eq!(
            rejected.to_string(),
            r#"field "event_time": expected a string, got null"#
        );
    }

    #[test]
    fn unparseable_event_time_is_rejected() {
        let rejected = rejection(&replace(
            r#""event_time":"2022-02-01T00:02:32""#,
            r#""event_time":"yesterday""#,
        ));
        assert_eq!(rejected, Rejection::InvalidEventTime("yesterday".into()));
        assert_eq!(rejected.kind(), "invalid_event_time");
    }

    #[test]
    fn invalid_utf8_and_json_are_rejected() {
        let mut payload = EVENT.as_bytes().to_vec();
        let at = EVENT.find("green_tripdata").unwrap();
        payload[at] = 0xff;
        assert_eq!(
            rejection(&payload),
            Rejection::InvalidUtf8 { valid_up_to: at }
        );
        for bad in [
            &b""[..],
            b"{",
            br#"{"trip_id":"a""#,
            br#"{"trip_id":"a",}"#,
            b"{} {}",
            br#"{"a":1}x"#,
        ] {
            let rejected = rejection(bad);
            assert_eq!(rejected.kind(), "invalid_json", "{rejected}");
        }
    }

    #[test]
    fn non_objects_are_rejected_with_their_type() {
        for (payload, got) in [
            (&b"[1,{\"a\":2}]"[..], "array"),
            (b"\"text\"", "string"),
            (b"12", "number"),
            (b"null", "null"),
            (b"true", "boolean"),
        ] {
            assert_eq!(rejection(payload), Rejection::NotAnObject(got));
        }
        assert_eq!(
            Rejection::NotAnObject("array").to_string(),
            "payload is a JSON array, expected an object"
        );
    }

    #[test]
    fn trailing_whitespace_is_dropped_and_inner_whitespace_kept() {
        let event = b" {\"trip_id\":\"t:1\", \"event_time\":\"2022-02-01T00:00:00\",\"passenger_count\":0,\"trip_distance\":0,\"fare_amount\":0,\"total_amount\":0,\"PULocationID\":0,\"DOLocationID\":0 \n} \r\n\t";
        let scored = scorer().score(event).unwrap();
        assert_eq!(
            std::str::from_utf8(&scored.payload).unwrap(),
            " {\"trip_id\":\"t:1\", \"event_time\":\"2022-02-01T00:00:00\",\"passenger_count\":0,\"trip_distance\":0,\"fare_amount\":0,\"total_amount\":0,\"PULocationID\":0,\"DOLocationID\":0 \n,\"prediction\":4.4360188162808445,\"model_version\":\"2022-01.test\"}"
        );
    }

    #[test]
    fn nested_objects_are_skipped_and_their_keys_ignored() {
        let event = br#"{"trip_id":"t:3","meta":{"prediction":1,"fare_amount":"x","deep":[{"}":"}"},[]]},"event_time":"2022-02-01T00:00:00","passenger_count":1,"trip_distance":1,"fare_amount":1,"total_amount":1,"PULocationID":1,"DOLocationID":1}"#;
        let scored = scorer().score(event).unwrap();
        let p = expected_prediction([1.0; 6]);
        let expected = format!(
            "{},\"prediction\":{},\"model_version\":\"2022-01.test\"}}",
            std::str::from_utf8(&event[..event.len() - 1]).unwrap(),
            serde_json::Number::from_f64(p).unwrap()
        );
        assert_eq!(String::from_utf8(scored.payload).unwrap(), expected);
    }

    #[test]
    fn already_scored_events_are_rejected() {
        let once = scorer().score(EVENT.as_bytes()).unwrap().payload;
        let rejected = rejection(&once);
        assert_eq!(rejected, Rejection::AlreadyScored("prediction"));
        assert_eq!(
            rejected.to_string(),
            r#"already scored: the event has a "prediction" field"#
        );
        let rejected = rejection(&replace("\"VendorID\":2", "\"model_version\":\"x\""));
        assert_eq!(rejected, Rejection::AlreadyScored("model_version"));
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        let rejected = rejection(&replace("\"VendorID\":2", "\"fare_amount\":12.0"));
        assert_eq!(rejected, Rejection::DuplicateField("fare_amount".into()));
        // Unrelated duplicates are left to whoever reads them.
        scorer()
            .score(&replace("\"VendorID\":2", "\"ehail_fee\":1"))
            .unwrap();
    }

    #[test]
    fn escaped_keys_and_ids_are_decoded() {
        let payload = replace(
            r#""trip_id":"green_tripdata_2022-02:0""#,
            r#""trip\u005fid":"green\"trip:0""#,
        );
        let scored = scorer().score(&payload).unwrap();
        assert_eq!(scored.trip_id, "green\"trip:0");
        assert!(scored.payload.starts_with(&payload[..payload.len() - 1]));
    }

    #[test]
    fn overflowing_predictions_are_rejected() {
        // The course model cannot overflow on finite inputs (its |coefficients| sum to 0.63).
        let features = crate::model::FEATURES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let model = LinearModel::new("big", features, vec![10.0; 6], 0.0, None).unwrap();
        let rejected = EventScorer::new(model)
            .score(&replace(r#""fare_amount":11.0"#, r#""fare_amount":1e308"#))
            .unwrap_err();
        assert_eq!(rejected, Rejection::NonFinitePrediction(f64::INFINITY));
        assert_eq!(rejected.kind(), "non_finite_prediction");
    }
}
