//! An NDJSON stream (`application/x-ndjson`): never a panic; one result per non-blank line,
//! in order, each the same as that line parsed alone — a bad line harms no other.
#![no_main]

use courier_fuzz::{check_binary_mode, check_event};
use courier_shared::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let results = Event::batch_from_ndjson(body);
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .collect();
    assert_eq!(results.len(), lines.len());
    for (result, line) in results.iter().zip(lines) {
        match (result, Event::from_json(line)) {
            (Ok(event), Ok(_)) => {
                check_event(event);
                check_binary_mode(event);
            }
            (Err(a), Err(b)) => assert_eq!(*a, b),
            (a, b) => panic!("line {a:?} but alone {b:?}"),
        }
    }
});
