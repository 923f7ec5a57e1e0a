//! Helpers of the watch tests: an event's type and revision, an object's
//! revision, and values that do not compress. (The client is the harness's
//! [`tmc::testcluster::ApiClient`].)

use serde_json::Value;

/// An event's type and the resourceVersion of its object.
pub fn kind_rv(ev: &Value) -> (String, u64) {
    (
        ev["type"].as_str().unwrap_or("").to_string(),
        ev["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
    )
}

/// The resourceVersion of a list or object.
pub fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
        .parse()
        .unwrap()
}

/// Pseudo-random text of `len` characters that compresses little.
pub fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x & 63) as usize] as char
        })
        .collect()
}
