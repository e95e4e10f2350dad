//! The digest of an API key: SHA-256, and its hex form as kept in the store and in the
//! configuration file (`[[auth.keys]] sha256`). A leaf module, so that both the configuration
//! (which checks the keys it declares) and authentication ([`crate::auth`]) use it.

use sha2::{Digest as _, Sha256};

/// SHA-256 of a key.
pub type KeyHash = [u8; 32];

/// SHA-256 of `key`.
pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A hash as lowercase hex.
pub fn hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash from 64 hex digits (either case).
pub fn parse_hash(text: &str) -> Option<KeyHash> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = hash("ck_example");
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash(&hex(&h).to_uppercase()), Some(h));
        assert_eq!(parse_hash("00"), None);
        assert_eq!(parse_hash(&"g".repeat(64)), None);
        // The well-known SHA-256 of "abc".
        assert_eq!(
            hex(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
