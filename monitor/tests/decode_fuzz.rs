//! The event decoder on hostile input (the same property as the `cargo fuzz` target in
//! `fuzz/`, run here on every test run): it never panics, and a decoder that has seen other
//! events (it remembers field positions and reuses buffers) decodes every input exactly as a
//! fresh one does — on random bytes, on byte-level mutations of real scored events and on
//! random JSON objects mixing the event's fields with nulls, strings, huge numbers and nesting.

use proptest::prelude::*;
use streamwatch_monitor::decode::{DecodedEvent, Decoder};

const MONITORED: [&str; 3] = ["prediction", "fare_amount", "trip_distance"];
const FIELDS: [&str; 8] = [
    "event_time",
    "trip_id",
    "prediction",
    "fare_amount",
    "trip_distance",
    "VendorID",
    "store_and_fwd_flag",
    "model_version",
];
const EVENT: &str = r#"{"VendorID":2,"lpep_pickup_datetime":"2022-02-01T00:02:41","store_and_fwd_flag":"N","PULocationID":74,"passenger_count":1.0,"trip_distance":1.44,"fare_amount":7.0,"ehail_fee":null,"trip_id":"green_tripdata_2022-02:17","event_time":"2022-02-01T00:02:41","prediction":8.625,"model_version":"linear-1"}"#;

fn decoder() -> Decoder {
    let monitored: Vec<String> = MONITORED.iter().map(|s| (*s).to_owned()).collect();
    Decoder::new(&monitored, &["VendorID".to_owned()])
}

/// What a decode produced, with cells by column name (ids are per decoder).
fn outcome(decoder: &mut Decoder, bytes: &[u8], event: &mut DecodedEvent) -> String {
    match decoder.decode(bytes, event) {
        Err(error) => format!("error {error:?}"),
        Ok(()) => {
            assert_eq!(event.values.len(), MONITORED.len());
            let cells: Vec<(String, bool)> = event
                .cells
                .iter()
                .map(|(id, missing)| (decoder.column_name(*id).to_owned(), *missing))
                .collect();
            format!(
                "ok {} {:?} {:?} {cells:?}",
                event.event_time_us, event.trip_id, event.values
            )
        }
    }
}

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("-0e0".to_owned()),
        Just("1e400".to_owned()),
        Just("18446744073709551616".to_owned()),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| format!("{v:?}")),
        any::<i64>().prop_map(|v| v.to_string()),
        Just(r#""2022-02-01T10:00:00""#.to_owned()),
        Just(r#""2022-02-30T10:00:00""#.to_owned()),
        "[a-z0-9:\\-]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("true".to_owned()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(inner, 0..3).prop_map(|v| {
                let fields: Vec<String> = v
                    .iter()
                    .enumerate()
                    .map(|(i, x)| format!("\"k{i}\":{x}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn json_event() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(FIELDS.to_vec()), json_value()), 0..10).prop_map(
        |fields| {
            let fields: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("\"{name}\":{value}"))
                .collect();
            format!("{{{}}}", fields.join(","))
        },
    )
}

/// A real event with a few bytes flipped, inserted, removed, or cut off.
fn mutated_event() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((0usize..EVENT.len(), any::<u8>(), 0u8..4), 0..6);
    edits.prop_map(|edits| {
        let mut bytes = EVENT.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match kind {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mutated_event(),
        json_event().prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_used_decoder_decodes_like_a_fresh_one(inputs in prop::collection::vec(input(), 1..12)) {
        let mut shared = decoder();
        let mut event = DecodedEvent::default();
        for bytes in &inputs {
            let mut fresh = decoder();
            let expected = outcome(&mut fresh, bytes, &mut DecodedEvent::default());
            prop_assert_eq!(outcome(&mut shared, bytes, &mut event), expected);
        }
    }
}

#[test]
fn the_unmutated_event_decodes() {
    let mut event = DecodedEvent::default();
    let text = outcome(&mut decoder(), EVENT.as_bytes(), &mut event);
    assert!(text.starts_with("ok "), "{text}");
    assert_eq!(event.values, vec![Some(8.625), Some(7.0), Some(1.44)]);
    assert_eq!(event.trip_id.as_deref(), Some("green_tripdata_2022-02:17"));
}
