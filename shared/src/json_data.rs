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
/// holds (serde_json, like most JSON readers, refuses `1e400`).
///
/// Almost all data is cleared by [`plainly_readable`], a scan of its bytes; what that scan
/// cannot clear is read again by serde_json ([`exact`]), which gives the refusal its reason.
pub(crate) fn check(raw: &RawValue) -> Result<(), EventError> {
    if plainly_readable(raw.get().as_bytes()) {
        return Ok(());
    }
    exact(raw)
}

/// The longest run of digits (and decimal points) the quick scan lets through: a double
/// holds every number of up to 308 digits without an exponent.
const PLAIN_DIGITS: usize = 300;

/// True when `json` — valid JSON, as serde_json has already read it — is nested at most
/// [`MAX_DATA_DEPTH`] levels and has no number that could be beyond a double: none with an
/// exponent, none longer than [`PLAIN_DIGITS`]. One pass over the bytes, counting brackets
/// outside strings: a few times cheaper than lexing the JSON again, which is what [`exact`]
/// does (it was 4 % of the proxy's CPU per batched event). It may say false of data that is
/// readable (`1e3`); it never says true of data that is not.
fn plainly_readable(json: &[u8]) -> bool {
    let mut depth = 0_usize;
    let mut digits = 0_usize;
    let mut bytes = json.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // To the closing quote, stepping over each escaped character.
                loop {
                    match bytes.next() {
                        Some(b'"') => break,
                        Some(b'\\') => {
                            bytes.next();
                        }
                        Some(_) => {}
                        None => return false,
                    }
                }
                digits = 0;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DATA_DEPTH {
                    return false;
                }
                digits = 0;
            }
            b'0'..=b'9' | b'.' => {
                digits += 1;
                if digits > PLAIN_DIGITS {
                    return false;
                }
            }
            // An exponent (`e` right after a digit; `true` and `false` have theirs after a
            // letter).
            b'e' | b'E' if digits > 0 => return false,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                digits = 0;
            }
            _ => digits = 0,
        }
    }
    true
}

/// The check by serde_json: it does the lexing, and the seed only counts levels, allocating
/// nothing.
fn exact(raw: &RawValue) -> Result<(), EventError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            (1_u32..400, 1_u32..400).prop_map(|(d, e)| format!("{d}e{e}")),
            (1_usize..400).prop_map(|n| "9".repeat(n)),
            (1_usize..400).prop_map(|n| format!("0.{}1", "0".repeat(n))),
        ];
        let leaf = prop_oneof![
            number,
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            // Strings with quotes, escapes and brackets in them.
            "[a-z\\[\\]{}\"\\\\e0-9 ]{0,12}"
                .prop_map(|s| serde_json::to_string(&s).expect("a string")),
        ];
        leaf.prop_recursive(80, 400, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(("[a-z\\[\\]\"{}]{0,4}", inner), 0..4).prop_map(|v| {
                    let fields: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).expect("a key")))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// The quick scan never clears what serde_json would refuse, and the check as a whole
        /// decides exactly as serde_json does.
        #[test]
        fn the_quick_scan_agrees_with_serde_json(text in json()) {
            let Ok(raw) = serde_json::from_str::<Box<RawValue>>(&text) else {
                // Deeper than serde_json reads at all: not data the envelope ever holds.
                return Ok(());
            };
            let exact = exact(&raw);
            if plainly_readable(raw.get().as_bytes()) {
                prop_assert!(exact.is_ok(), "{text}: {exact:?}");
            }
            prop_assert_eq!(check(&raw), exact);
        }
    }

    #[test]
    fn the_quick_scan_clears_plain_data_and_leaves_the_rest() {
        let plain = r#"{"a":[1,2.5,-3,"x]]]\"{{",true,false,null],"b":{"c":"e1"}}"#;
        assert!(plainly_readable(plain.as_bytes()));
        for unclear in [
            "1e3",
            "[1E400]",
            &"9".repeat(PLAIN_DIGITS + 1),
            &format!(
                "{}1{}",
                "[".repeat(MAX_DATA_DEPTH + 1),
                "]".repeat(MAX_DATA_DEPTH + 1)
            ),
        ] {
            assert!(!plainly_readable(unclear.as_bytes()), "{unclear}");
        }
        let deepest = format!(
            "{}1{}",
            "[".repeat(MAX_DATA_DEPTH),
            "]".repeat(MAX_DATA_DEPTH)
        );
        assert!(plainly_readable(deepest.as_bytes()));
    }
}
