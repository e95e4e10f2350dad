//! A JSON array batch (`application/cloudevents-batch+json`, or `application/json` starting
//! with `[`): never a panic; a JSON array gets one result per element, in order, each the
//! same as that element parsed alone; anything else is refused whole, as 400 exactly when it
//! is not JSON.
#![no_main]

use courier_fuzz::{check_binary_mode, check_event, is_json};
use courier_shared::Event;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|body: &[u8]| {
    match Event::batch_from_json(body) {
        Ok(results) => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).expect("an accepted batch is a JSON array");
            assert_eq!(results.len(), items.len());
            for (result, item) in results.iter().zip(items) {
                let alone = Event::from_json(item.get().as_bytes());
                match (result, alone) {
                    (Ok(event), Ok(_)) => {
                        check_event(event);
                        check_binary_mode(event);
                    }
                    (Err(a), Err(b)) => assert_eq!(*a, b),
                    (a, b) => panic!("batch element {a:?} but alone {b:?}"),
                }
            }
        }
        Err(e) => {
            assert_eq!(e.is_syntax(), !is_json(body), "{e}");
            assert!(
                serde_json::from_slice::<Vec<&RawValue>>(body).is_err(),
                "a JSON array was refused whole: {e}"
            );
        }
    }
});
