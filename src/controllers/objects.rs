//! Reading API objects from the shard's local state and writing their
//! status back, as the API would store it.
//!
//! Objects are stored as JSON without `resourceVersion` (the record's mod
//! revision is the resourceVersion; the API adds it when it answers). A
//! controller reads the record, works on a typed copy, and the
//! [`super::committer`] plans one merge patch of `status`; the patch is
//! applied to the stored JSON and written as a compare-and-swap on the
//! record's mod revision. Status writes touch `status` only: no
//! `generation` bump, no `managedFields` entry (the API adds those for its
//! clients; a controller is not one).

use super::committer::{self, apply_merge_patch, Subresource};
use super::error::{Error, Result};
use crate::shard::Shard;
use crate::store::{Expectation, ObjectKey, TxnOp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// An object as read from local state.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// Its key.
    pub key: ObjectKey,
    /// Its mod revision (resourceVersion).
    pub revision: u64,
    /// The stored JSON.
    pub raw: Value,
    /// The typed object, with `metadata.resourceVersion` set.
    pub obj: T,
}

/// Reads and decodes one object; `None` if absent.
pub fn read<T: DeserializeOwned>(shard: &dyn Shard, key: &ObjectKey) -> Result<Option<Stored<T>>> {
    let Some(rec) = shard.get(&key.clone().into())? else {
        return Ok(None);
    };
    let what = || format!("stored object {}", key_str(key));
    let raw: Value = serde_json::from_slice(&rec.value)
        .map_err(|e| Error::invalid(what(), format!("is not JSON: {e}")))?;
    let obj = serde_json::from_value(with_resource_version(&raw, rec.mod_revision))
        .map_err(|e| Error::invalid(what(), format!("does not decode: {e}")))?;
    Ok(Some(Stored {
        key: key.clone(),
        revision: rec.mod_revision,
        raw,
        obj,
    }))
}

/// The stored JSON as the API shows it: with `metadata.resourceVersion`.
fn with_resource_version(raw: &Value, revision: u64) -> Value {
    let mut v = raw.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    v
}

fn key_str(k: &ObjectKey) -> String {
    crate::store::Key::Object(k.clone()).to_string()
}

/// The write that gives `stored` the status `status`, or `None` when the
/// status is unchanged. A compare-and-swap on the record's revision.
pub fn status_write<T, S: Serialize>(stored: &Stored<T>, status: &S) -> Result<Option<TxnOp>> {
    let old = with_resource_version(&stored.raw, stored.revision);
    let mut new = old.clone();
    new["status"] = serde_json::to_value(status).map_err(|e| {
        Error::invalid(
            key_str(&stored.key),
            format!("has a status that does not serialize: {e}"),
        )
    })?;
    let Some(patch) = committer::plan(&old, &new)? else {
        return Ok(None);
    };
    if patch.subresource != Subresource::Status {
        return Err(Error::invalid(
            key_str(&stored.key),
            "would get a status write that changes more than status",
        ));
    }
    let mut value = stored.raw.clone();
    apply_merge_patch(
        &mut value,
        &serde_json::json!({"status": patch.body["status"].clone()}),
    );
    let bytes = encode_json(&stored.key, &value)?;
    Ok(Some(TxnOp::put_json(
        stored.key.clone(),
        bytes,
        Expectation::ModRevision(stored.revision),
    )))
}

/// The stored JSON of an object.
fn encode_json(key: &ObjectKey, v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v)
        .map_err(|e| Error::invalid(key_str(key), format!("does not serialize: {e}")))
}

/// Encodes controller state kept in the store (`/tmc/...`, bincode).
pub fn encode_state<T: Serialize>(state: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(state, bincode::config::standard())
        .expect("encoding a plain struct cannot fail")
}

/// Decodes controller state; `None` if it does not decode (a record of an
/// older shape is recomputed, not trusted).
pub fn decode_state<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(s, _)| s)
}

/// The write that adds (`present`) or removes `finalizer` from `stored`'s
/// `metadata.finalizers`, or `None` when it already is as asked. Planned
/// by the [`super::committer`] (a metadata-only patch) and written as a
/// compare-and-swap on the record's revision. Removing the last
/// finalizer of an object being deleted deletes it, as the API does; a
/// finalizer is never added to an object being deleted (the API forbids
/// it too).
pub fn finalizer_write<T>(
    stored: &Stored<T>,
    finalizer: &str,
    present: bool,
) -> Result<Option<TxnOp>> {
    let mut finalizers = crate::object::finalizers(&stored.raw);
    if finalizers.iter().any(|f| f == finalizer) == present {
        return Ok(None);
    }
    let deleting = crate::object::is_deleting(&stored.raw);
    if present {
        if deleting {
            return Ok(None);
        }
        finalizers.push(finalizer.to_string());
    } else {
        finalizers.retain(|f| f != finalizer);
    }
    let old = with_resource_version(&stored.raw, stored.revision);
    let mut new = old.clone();
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        if finalizers.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), serde_json::json!(finalizers));
        }
    }
    let Some(patch) = committer::plan(&old, &new)? else {
        return Ok(None);
    };
    if patch.subresource != Subresource::Main {
        return Err(Error::invalid(
            key_str(&stored.key),
            "would get a finalizer write that changes status",
        ));
    }
    let expect = Expectation::ModRevision(stored.revision);
    if deleting && finalizers.is_empty() {
        return Ok(Some(TxnOp::delete(stored.key.clone(), expect)));
    }
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let bytes = encode_json(&stored.key, &new)?;
    Ok(Some(TxnOp::put_json(stored.key.clone(), bytes, expect)))
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Kubernetes time of whole seconds.
pub fn time(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
}

/// Unix seconds of a Kubernetes time.
pub fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

/// The condition of `type_`, if set.
pub fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// True when the condition of `type_` is `True`.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    condition(conds, type_).is_some_and(|c| c.status == "True")
}

/// Sets a condition; its transition time moves only when its status does
/// (`meta.SetStatusCondition`).
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    now: i64,
) {
    let message = message.into();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = time(now);
            }
            c.reason = reason.into();
            c.message = message;
        }
        None => {
            conds.push(Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message,
                last_transition_time: time(now),
                observed_generation: None,
            });
            conds.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{GroupResource, MemoryEngine, Store, StoreOptions, Txn, Workspace};
    use std::sync::Arc;

    #[tokio::test]
    async fn status_writes_change_status_only_and_are_compare_and_swap() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard = LocalShard::new(st);
        let gr = GroupResource::new("tmc.kcp.io", "workloadplacements").unwrap();
        let key = ObjectKey::cluster_scoped(gr, Workspace::parse("root").unwrap(), "p").unwrap();
        let body = serde_json::json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
            "metadata": {"name": "p", "uid": "u", "generation": 1}, "spec": {"x": 1}});
        shard
            .write(Txn::new(vec![TxnOp::put_json(
                key.clone(),
                serde_json::to_vec(&body).unwrap(),
                Expectation::Absent,
            )]))
            .await
            .unwrap();
        let s: Stored<Value> = read(&shard, &key).unwrap().unwrap();
        assert_eq!(s.obj["metadata"]["resourceVersion"], s.revision.to_string());
        assert!(status_write(&s, &s.raw.get("status")).unwrap().is_none());
        let op = status_write(&s, &serde_json::json!({"phase": "Bound"}))
            .unwrap()
            .unwrap();
        shard.write(Txn::new(vec![op.clone()])).await.unwrap();
        let after: Stored<Value> = read(&shard, &key).unwrap().unwrap();
        let mut want = body.clone();
        want["status"] = serde_json::json!({"phase": "Bound"});
        assert_eq!(
            after.raw, want,
            "only status changed, no resourceVersion stored"
        );
        // The same write again is a conflict: the revision moved.
        assert!(shard.write(Txn::new(vec![op])).await.is_err());
    }

    #[tokio::test]
    async fn finalizers_are_added_removed_and_the_last_removal_deletes() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard = LocalShard::new(st);
        let gr = GroupResource::new("tmc.kcp.io", "workloadplacements").unwrap();
        let key = ObjectKey::cluster_scoped(gr, Workspace::parse("root").unwrap(), "p").unwrap();
        let body = serde_json::json!({"metadata": {"name": "p", "uid": "u", "generation": 1,
            "finalizers": ["other"]}, "spec": {"x": 1}, "status": {"phase": "Bound"}});
        let put = TxnOp::put_json(
            key.clone(),
            serde_json::to_vec(&body).unwrap(),
            Expectation::Absent,
        );
        shard.write(Txn::new(vec![put])).await.unwrap();
        let read = || read::<Value>(&shard, &key).unwrap();
        let s = read().unwrap();
        assert!(finalizer_write(&s, "other", true).unwrap().is_none());
        let op = finalizer_write(&s, "mine", true).unwrap().unwrap();
        shard.write(Txn::new(vec![op.clone()])).await.unwrap();
        let s = read().unwrap();
        assert_eq!(
            s.raw["metadata"]["finalizers"],
            serde_json::json!(["other", "mine"])
        );
        assert_eq!(s.raw["metadata"]["generation"], 1, "no generation bump");
        assert!(s.raw["metadata"].get("resourceVersion").is_none());
        assert_eq!(s.raw["status"], body["status"]);
        assert!(
            shard.write(Txn::new(vec![op])).await.is_err(),
            "compare-and-swap on the revision read"
        );
        // Being deleted: removing one of two keeps it; the last deletes it.
        let mut deleting = s.raw.clone();
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let put = TxnOp::put_json(
            key.clone(),
            serde_json::to_vec(&deleting).unwrap(),
            Expectation::Any,
        );
        shard.write(Txn::new(vec![put])).await.unwrap();
        let s = read().unwrap();
        assert!(
            finalizer_write(&s, "new", true).unwrap().is_none(),
            "none added while deleting"
        );
        let op = finalizer_write(&s, "mine", false).unwrap().unwrap();
        shard.write(Txn::new(vec![op])).await.unwrap();
        let s = read().unwrap();
        assert_eq!(
            s.raw["metadata"]["finalizers"],
            serde_json::json!(["other"])
        );
        let op = finalizer_write(&s, "other", false).unwrap().unwrap();
        shard.write(Txn::new(vec![op])).await.unwrap();
        assert!(
            read().is_none(),
            "the last finalizer gone: the object is gone"
        );
    }

    #[test]
    fn conditions_move_their_transition_time_only_on_a_status_change() {
        let mut c = vec![];
        set_condition(&mut c, "Ready", "True", "Healthy", "", 100);
        set_condition(&mut c, "Ready", "True", "Healthy", "still", 200);
        assert_eq!(secs(&c[0].last_transition_time), 100);
        set_condition(&mut c, "Ready", "False", "Down", "gone", 300);
        assert_eq!(secs(&c[0].last_transition_time), 300);
        assert!(!is_true(&c, "Ready"));
    }
}
