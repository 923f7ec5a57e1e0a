//! Helpers of the watch tests: an event's type and revision, an object's
//! revision. (The client is the harness's [`tmc::testcluster::ApiClient`].)

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
