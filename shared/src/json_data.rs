//! What JSON `data` may be: nested at most [`MAX_DATA_DEPTH`] levels, every number within a
//! double. serde_json's readers — the consumers among them — stop at 128 levels and refuse
//! larger numbers, and `data` is kept raw (never parsed into a value) on its way to Kafka, so
//! without this check such data would be accepted and then be unreadable downstream.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::envelope::{EventError, MAX_DATA_DEPTH};

/// Checks that JSON `data` is something every consumer can read back: at most
/// [`MAX_DATA_DEPTH`] levels of arrays and objects, and every number within what a double
/// holds (serde_json, like most JSON readers, refuses `1e400`). serde_json does the lexing; the
/// seed only counts levels, allocating nothing.
pub(crate) fn check(raw: &RawValue) -> Result<(), EventError> {
    use serde::de::{DeserializeSeed, SeqAccess};

    struct Level(usize);
    impl<'de> DeserializeSeed<'de> for Level {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Level {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(E::custom("a number beyond what a double holds"))
            }
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let inner = self.enter()?;
            while seq.next_element_seed(Level(inner))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.enter()?;
            while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                map.next_value_seed(Level(inner))?;
            }
            Ok(())
        }
    }
    impl Level {
        fn enter<E: serde::de::Error>(self) -> Result<usize, E> {
            if self.0 >= MAX_DATA_DEPTH {
                return Err(E::custom(format_args!(
                    "nested deeper than {MAX_DATA_DEPTH} levels"
                )));
            }
            Ok(self.0 + 1)
        }
    }

    let mut de = serde_json::Deserializer::from_str(raw.get());
    Level(0)
        .deserialize(&mut de)
        .map_err(|e| EventError::invalid("data", strip_position(&e.to_string())))
}

/// serde_json's message without " at line L column C" (the position is within `data`, not the
/// body, so it would mislead).
fn strip_position(message: &str) -> String {
    message
        .rsplit_once(" at line ")
        .map_or(message, |(text, _)| text)
        .to_owned()
}
