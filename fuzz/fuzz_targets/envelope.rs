//! One structured-mode event (`application/cloudevents+json`), as the proxy parses a single
//! event's body: never a panic; the 400/422 split follows whether the body is JSON at all;
//! every accepted event is valid and maps onto a Kafka record and back losslessly.
#![no_main]

use courier_fuzz::{check_binary_mode, check_event, is_json};
use courier_shared::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match Event::from_json(body) {
        Ok(event) => {
            check_event(&event);
            check_binary_mode(&event);
        }
        Err(e) => assert_eq!(e.is_syntax(), !is_json(body), "{e}"),
    }
});
