//! Kubernetes objects as JSON values ([`serde_json::Value`]), shared by
//! the API and the controllers: the metadata helpers both need, the
//! RFC 7386 merge patch ([`merge`]), label and field selectors with
//! Kubernetes' semantics ([`selector`]), and the annotations only the
//! server writes.
//!
//! Neutral ground: nothing here knows HTTP (that is [`crate::api`], which
//! adds shape checks, encoding for storage and error replies on top) or
//! the store (keys and revisions are [`crate::store`]'s). A controller that
//! needs a piece of object handling the API also uses finds it here, not
//! in `api`.
//!
//! Left out: strategic merge patch and server-side apply (they need the
//! API's schemas: [`crate::api::patch`], [`crate::api::apply`]).

pub mod merge;
pub mod selector;

use serde_json::{Map, Value};

/// `metadata`, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("just made an object")
}

/// Gives a new object's metadata what the server sets when it is
/// created: a fresh `uid` and the `creationTimestamp`.
pub fn stamp_created(meta: &mut Map<String, Value>) {
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("creationTimestamp".into(), Value::String(now()));
}

/// Sets `status.phase` of `obj` (an object), making `status` an object
/// if it is not one.
pub fn set_status_phase(obj: &mut Value, phase: &str) {
    let Some(m) = obj.as_object_mut() else { return };
    let status = m
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    if let Some(st) = status.as_object_mut() {
        st.insert("phase".into(), Value::String(phase.into()));
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Now, as Kubernetes writes times (RFC 3339, seconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// True when `metadata.deletionTimestamp` is set: the object is being
/// deleted and waits for its finalizers.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Annotations only the sync controller writes (through the shard, never
/// through the API): the clusters that may hold a copy of a workspace
/// object, and each copy's status. The sync controller connects to, and
/// cleans up on, every cluster the first one names, so a client that could
/// write it could make tmc reach clusters its placements were never given.
pub const SERVER_OWNED_ANNOTATIONS: [&str; 3] = [
    "tmc.kcp.io/clusters",
    "tmc.kcp.io/cluster-status",
    CREATOR_ANNOTATION,
];

/// Who created a Workspace (and becomes admin of its logical cluster),
/// set by the server, and carried to the LogicalCluster.
pub const CREATOR_ANNOTATION: &str = "tmc.kcp.io/creator";
