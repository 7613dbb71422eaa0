//! The scored-event decoder on arbitrary bytes: it must not panic, and a decoder that has
//! seen the previous inputs (it remembers field positions, reuses buffers) must decode each
//! input exactly as a fresh decoder does. `monitor/tests/decode_fuzz.rs` runs the same
//! property with proptest on every test run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamwatch_monitor::decode::{DecodedEvent, Decoder};

fn decoder() -> Decoder {
    let monitored = ["prediction", "fare_amount", "trip_distance"].map(String::from);
    Decoder::new(&monitored, &["VendorID".to_owned()])
}

fn outcome(decoder: &mut Decoder, bytes: &[u8], event: &mut DecodedEvent) -> String {
    match decoder.decode(bytes, event) {
        Err(error) => format!("error {error:?}"),
        Ok(()) => {
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

fuzz_target!(|data: &[u8]| {
    // Inputs separated by a 0xFF byte (never in valid UTF-8) go through one decoder.
    let mut shared = decoder();
    let mut event = DecodedEvent::default();
    for bytes in data.split(|b| *b == 0xff) {
        let expected = outcome(&mut decoder(), bytes, &mut DecodedEvent::default());
        assert_eq!(outcome(&mut shared, bytes, &mut event), expected);
    }
});
