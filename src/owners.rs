//! `metadata.ownerReferences` in the store: the dependants index and the
//! garbage collector's work items, as the writes that change objects
//! must maintain them. Shared by the API (`src/api/handlers`) and the
//! controllers (the lifecycle controller, the garbage collector
//! [`crate::controllers::gc`]); it builds transaction operations and reads
//! only through the [`Shard`] interface.
//!
//! Every write that adds, changes or removes an object's
//! ownerReferences, or removes the object, carries in the same
//! transaction:
//! - the index entries ([`Key::Dependant`], one per owner uid) of what
//!   changed: [`index_ops`];
//! - when references were added, a work item about the dependant
//!   ([`GcRole::Dependant`]): the collector checks that its owners exist
//!   (kube's "dangling owner" handling);
//! - when an object is removed, or is deleted with the
//!   `Foreground` or `Orphan` policy, a work item about the owner
//!   ([`GcRole::Owner`], [`removal_ops`], [`deletion`]).
//!
//! The work item's value names the object inside its workspace (never
//! the workspace itself: a workspace imported at another path keeps
//! working items) and the policy.

use crate::object::{finalizers, is_deleting, meta_mut, meta_str};
use crate::shard::{Shard, ShardError};
use crate::store::{
    Expectation, GcRole, GroupResource, Key, ListOptions, ObjectKey, Prefix, Record, TxnOp,
    Workspace,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The finalizer of an owner deleted with the Foreground policy.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an owner deleted with the Orphan policy.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// A DELETE's `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// Delete the owner now, its dependants after.
    Background,
    /// Delete the dependants first, then the owner.
    Foreground,
    /// Delete the owner, keep the dependants (without the reference).
    Orphan,
}

impl Policy {
    /// Parses kube's spelling.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "Background" => Some(Policy::Background),
            "Foreground" => Some(Policy::Foreground),
            "Orphan" => Some(Policy::Orphan),
            _ => None,
        }
    }

    /// The finalizer that holds an owner deleted with this policy.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Policy::Background => None,
            Policy::Foreground => Some(FOREGROUND_FINALIZER),
            Policy::Orphan => Some(ORPHAN_FINALIZER),
        }
    }
}

/// One ownerReference, as the collector reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// `uid`.
    pub uid: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `name`.
    pub name: String,
    /// `blockOwnerDeletion`.
    pub block: bool,
}

impl OwnerRef {
    /// The API group of `apiVersion` (`""` for `v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
}

/// The ownerReferences of `obj` that have a uid (the API refuses others).
pub fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let s = |r: &Value, f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    refs.iter()
        .filter_map(|r| {
            let uid = r.get("uid")?.as_str()?.to_string();
            Some(OwnerRef {
                uid,
                api_version: s(r, "apiVersion"),
                kind: s(r, "kind"),
                name: s(r, "name"),
                block: r
                    .get("blockOwnerDeletion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect()
}

/// What a work item's value holds: the object within its workspace and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// API group as in keys (`core` for the legacy group).
    pub group: String,
    /// Resource.
    pub resource: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// For an owner: the policy it is deleted with (`None` for a
    /// dependant to check).
    pub policy: Option<Policy>,
}

impl WorkItem {
    fn of(key: &ObjectKey, policy: Option<Policy>) -> WorkItem {
        WorkItem {
            group: key.gr.key_group().to_string(),
            resource: key.gr.resource().to_string(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            policy,
        }
    }

    /// The object's key in `ws`; `None` if the item is malformed.
    pub fn object_key(&self, ws: &Workspace) -> Option<ObjectKey> {
        let gr = GroupResource::new(&self.group, &self.resource).ok()?;
        ObjectKey::with_rule(
            gr,
            ws.clone(),
            self.namespace.as_deref(),
            &self.name,
            crate::store::NameRule::PathSegment,
        )
        .ok()
    }
}

fn work_op(key: &ObjectKey, uid: &str, role: GcRole, policy: Option<Policy>) -> Option<TxnOp> {
    let k = Key::gc_work(key.workspace.clone(), role, uid).ok()?;
    let v = serde_json::to_vec(&WorkItem::of(key, policy)).ok()?;
    Some(TxnOp::put_json(k, v, Expectation::Any))
}

/// The work item saying that the owner `key` (uid `uid`) is deleted with
/// `policy`.
pub fn owner_work(key: &ObjectKey, uid: &str, policy: Policy) -> Option<TxnOp> {
    work_op(key, uid, GcRole::Owner, Some(policy))
}

fn index_value(r: &OwnerRef) -> Vec<u8> {
    json!({"blockOwnerDeletion": r.block})
        .to_string()
        .into_bytes()
}

/// Reads an index entry's `blockOwnerDeletion`.
pub fn index_blocks(rec: &Record) -> bool {
    serde_json::from_slice::<Value>(&rec.value)
        .ok()
        .and_then(|v| v.get("blockOwnerDeletion").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// The index operations of a write of object `key` from `old` to `new`
/// (`None`: absent): entries removed for the owners no longer named,
/// written for the new or changed ones, and a dependant work item when
/// owners were added. Pure.
pub fn index_ops(key: &ObjectKey, old: Option<&Value>, new: Option<&Value>) -> Vec<TxnOp> {
    let refs = |o: Option<&Value>| -> BTreeMap<String, Vec<u8>> {
        o.map(owner_refs)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.uid.clone(), index_value(&r)))
            .collect()
    };
    let (before, after) = (refs(old), refs(new));
    let mut ops = Vec::new();
    for uid in before.keys().filter(|u| !after.contains_key(*u)) {
        if let Ok(k) = Key::dependant(uid, key.clone()) {
            ops.push(TxnOp::delete(k, Expectation::Any));
        }
    }
    let mut added = false;
    for (uid, v) in &after {
        if before.get(uid) == Some(v) {
            continue;
        }
        added |= !before.contains_key(uid);
        if let Ok(k) = Key::dependant(uid, key.clone()) {
            ops.push(TxnOp::put_json(k, v.clone(), Expectation::Any));
        }
    }
    if added {
        if let Some(uid) = new.and_then(|n| meta_str(n, "uid")) {
            ops.extend(work_op(key, uid, GcRole::Dependant, None));
        }
    }
    ops
}

/// True when some object of `ws` names uid `uid` as an owner.
pub fn has_dependants(shard: &dyn Shard, ws: &Workspace, uid: &str) -> Result<bool, ShardError> {
    let Ok(prefix) = Prefix::dependants_of(ws, uid) else {
        return Ok(false);
    };
    let opts = ListOptions {
        limit: 1,
        ..Default::default()
    };
    Ok(!shard.list(&prefix, &opts)?.items.is_empty())
}

/// What else a transaction that removes object `key` (stored as `obj`)
/// carries: its index entries removed and a Background work item about
/// it (the collector then deletes the dependants whose owners are all
/// gone, if it has any).
///
/// The item is written whether or not the index holds dependants now:
/// a dependant created while this removal is in flight (its entry
/// committed after a read of the index, its own check run before the
/// removal commits) would otherwise be missed, and the store has no
/// range precondition to guard the read with. The item costs one key in
/// the same transaction and one seek of the collector.
pub fn removal_ops(key: &ObjectKey, obj: &Value) -> Vec<TxnOp> {
    let mut ops = index_ops(key, Some(obj), None);
    if let Some(uid) = meta_str(obj, "uid") {
        ops.extend(owner_work(key, uid, Policy::Background));
    }
    ops
}

/// `obj` with `deletionTimestamp` set (unchanged if already set).
pub fn marked(obj: &Value) -> Value {
    let mut m = obj.clone();
    if !is_deleting(&m) {
        let meta = meta_mut(&mut m);
        meta.insert(
            "deletionTimestamp".into(),
            Value::String(crate::object::now()),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    m
}

/// `obj` with finalizer `f` added (if missing).
pub fn with_finalizer(obj: &Value, f: &str) -> Value {
    let mut m = obj.clone();
    if !finalizers(&m).iter().any(|x| x == f) {
        let meta = meta_mut(&mut m);
        let list = meta
            .entry("finalizers")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Value::Array(a) = list {
            a.push(Value::String(f.to_string()));
        }
    }
    m
}

/// `obj` without finalizer `f`.
pub fn without_finalizer(obj: &Value, f: &str) -> Value {
    let mut m = obj.clone();
    if let Some(Value::Array(a)) = m.pointer_mut("/metadata/finalizers") {
        a.retain(|x| x.as_str() != Some(f));
        if a.is_empty() {
            meta_mut(&mut m).remove("finalizers");
        }
    }
    m
}

/// The outcome of [`deletion`]: the object as it is after the write
/// (`None`: removed) and the transaction's operations (none: nothing to
/// write).
pub struct Deletion {
    /// The object after the write; `None` when it is removed.
    pub after: Option<Value>,
    /// The operations, the object's own first.
    pub ops: Vec<TxnOp>,
}

/// A DELETE of object `key` (stored as `rec`, parsed as `obj`) with
/// `policy` (`None`: the client gave none), as kube-apiserver does it:
/// Foreground and Orphan add their finalizer and mark the object (and
/// leave a work item for the collector); Background, or no policy, marks
/// an object with finalizers (without a policy, an `orphan` or
/// `foregroundDeletion` finalizer it already has stays and gets its work
/// item) and removes one without (with [`removal_ops`]). An object
/// already being deleted is left as it is.
pub fn deletion(
    key: &ObjectKey,
    rec: &Record,
    obj: &Value,
    policy: Option<Policy>,
) -> Result<Deletion, ShardError> {
    let expect = Expectation::ModRevision(rec.mod_revision);
    let put = |v: &Value| -> Result<TxnOp, ShardError> {
        let bytes = serde_json::to_vec(v).map_err(|e| {
            ShardError::Internal(format!("encoding {}: {e}", Key::from(key.clone())))
        })?;
        Ok(TxnOp::put_json(Key::from(key.clone()), bytes, expect))
    };
    if is_deleting(obj) {
        return Ok(Deletion {
            after: Some(obj.clone()),
            ops: Vec::new(),
        });
    }
    // Foreground and Orphan add their finalizer (and drop the other's),
    // Background drops both; without a policy the object keeps the one
    // it carries (kube-apiserver's deletionFinalizersForGarbageCollection).
    let with = match policy {
        None => obj.clone(),
        Some(Policy::Background) => without_finalizer(
            &without_finalizer(obj, FOREGROUND_FINALIZER),
            ORPHAN_FINALIZER,
        ),
        Some(Policy::Foreground) => {
            without_finalizer(&with_finalizer(obj, FOREGROUND_FINALIZER), ORPHAN_FINALIZER)
        }
        Some(Policy::Orphan) => {
            without_finalizer(&with_finalizer(obj, ORPHAN_FINALIZER), FOREGROUND_FINALIZER)
        }
    };
    let fins = finalizers(&with);
    if !fins.is_empty() {
        let after = marked(&with);
        let mut ops = vec![put(&after)?];
        // The collector's part: the policy its finalizer says.
        let held = if fins.iter().any(|f| f == FOREGROUND_FINALIZER) {
            Some(Policy::Foreground)
        } else if fins.iter().any(|f| f == ORPHAN_FINALIZER) {
            Some(Policy::Orphan)
        } else {
            None
        };
        if let (Some(p), Some(uid)) = (held, meta_str(obj, "uid")) {
            ops.extend(owner_work(key, uid, p));
        }
        return Ok(Deletion {
            after: Some(after),
            ops,
        });
    }
    let mut ops = vec![TxnOp::delete(Key::from(key.clone()), expect)];
    ops.extend(removal_ops(key, obj));
    Ok(Deletion { after: None, ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::namespaced(
            GroupResource::new("", "configmaps").unwrap(),
            Workspace::parse("root:a").unwrap(),
            "default",
            name,
        )
        .unwrap()
    }

    fn obj(uid: &str, refs: &[(&str, bool)]) -> Value {
        let refs: Vec<Value> = refs
            .iter()
            .map(|(u, b)| {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": u,
                       "blockOwnerDeletion": b})
            })
            .collect();
        json!({"metadata": {"name": "d", "uid": uid, "ownerReferences": refs}})
    }

    fn summary(ops: &[TxnOp]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                TxnOp::Put { key, value, .. } => {
                    format!("put {key} {}", String::from_utf8_lossy(value))
                }
                TxnOp::Delete { key, .. } => format!("delete {key}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_create_with_owners_indexes_them_and_asks_for_a_check() {
        let ops = index_ops(
            &key("d"),
            None,
            Some(&obj("d1", &[("o1", true), ("o2", false)])),
        );
        assert_eq!(
            summary(&ops),
            vec![
                "put /tmc/dependants/root:a/o1/core/configmaps/default/d {\"blockOwnerDeletion\":true}",
                "put /tmc/dependants/root:a/o2/core/configmaps/default/d {\"blockOwnerDeletion\":false}",
                "put /tmc/gc/root:a/dependant/d1 {\"group\":\"core\",\"resource\":\"configmaps\",\"namespace\":\"default\",\"name\":\"d\",\"policy\":null}",
            ]
        );
    }

    #[test]
    fn an_update_writes_only_what_changed() {
        let before = obj("d1", &[("o1", true), ("o2", false)]);
        assert!(index_ops(&key("d"), Some(&before), Some(&before)).is_empty());
        // o1 no longer blocks, o2 goes, nothing added: no check.
        let after = obj("d1", &[("o1", false)]);
        assert_eq!(
            summary(&index_ops(&key("d"), Some(&before), Some(&after))),
            vec![
                "delete /tmc/dependants/root:a/o2/core/configmaps/default/d",
                "put /tmc/dependants/root:a/o1/core/configmaps/default/d {\"blockOwnerDeletion\":false}",
            ]
        );
        // An owner added: a check.
        let more = obj("d1", &[("o1", false), ("o3", false)]);
        let s = summary(&index_ops(&key("d"), Some(&after), Some(&more)));
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[1].starts_with("put /tmc/gc/root:a/dependant/d1 "));
    }

    #[test]
    fn a_removal_drops_every_entry_and_bad_uids_are_skipped() {
        let before = obj("d1", &[("o1", true), ("bad/uid", false)]);
        assert_eq!(
            summary(&index_ops(&key("d"), Some(&before), None)),
            vec!["delete /tmc/dependants/root:a/o1/core/configmaps/default/d"]
        );
        assert!(index_ops(&key("d"), None, Some(&json!({"metadata": {"uid": "x"}}))).is_empty());
    }

    #[test]
    fn a_removal_leaves_a_background_item_even_without_dependants_now() {
        let s = summary(&removal_ops(&key("d"), &obj("d1", &[("o1", true)])));
        assert_eq!(
            s,
            vec![
                "delete /tmc/dependants/root:a/o1/core/configmaps/default/d",
                "put /tmc/gc/root:a/owner/d1 {\"group\":\"core\",\"resource\":\"configmaps\",\"namespace\":\"default\",\"name\":\"d\",\"policy\":\"Background\"}",
            ]
        );
    }

    fn record() -> Record {
        Record {
            key: Key::from(key("d")).encode(),
            encoding: crate::store::Encoding::Json,
            create_revision: 1,
            mod_revision: 7,
            value: Vec::new(),
            stale: false,
        }
    }

    #[test]
    fn deletions_follow_the_policy_and_the_finalizers_already_there() {
        let plain = obj("d1", &[]);
        let gone = deletion(&key("d"), &record(), &plain, Some(Policy::Background)).unwrap();
        assert!(gone.after.is_none());
        assert!(matches!(gone.ops[0], TxnOp::Delete { .. }));
        // Foreground replaces an orphan finalizer.
        let held = with_finalizer(&plain, ORPHAN_FINALIZER);
        let fg = deletion(&key("d"), &record(), &held, Some(Policy::Foreground)).unwrap();
        let after = fg.after.unwrap();
        assert_eq!(finalizers(&after), [FOREGROUND_FINALIZER]);
        assert!(is_deleting(&after));
        assert!(summary(&fg.ops)[1].ends_with("\"policy\":\"Foreground\"}"));
        // No policy keeps an orphan finalizer and asks the collector;
        // an explicit Background drops it.
        let kept = deletion(&key("d"), &record(), &held, None).unwrap();
        assert_eq!(finalizers(kept.after.as_ref().unwrap()), [ORPHAN_FINALIZER]);
        assert!(summary(&kept.ops)[1].ends_with("\"policy\":\"Orphan\"}"));
        let bg = deletion(&key("d"), &record(), &held, Some(Policy::Background)).unwrap();
        assert!(bg.after.is_none());
        // Someone else's finalizer: marked, nothing for the collector.
        let other = with_finalizer(&plain, "example.com/x");
        let marked_only = deletion(&key("d"), &record(), &other, None).unwrap();
        assert_eq!(marked_only.ops.len(), 1);
        // Already being deleted: nothing.
        let again = deletion(&key("d"), &record(), &marked(&other), Some(Policy::Orphan)).unwrap();
        assert!(again.ops.is_empty());
    }

    #[test]
    fn finalizers_are_added_once_and_removed() {
        let o = json!({"metadata": {"name": "x", "finalizers": ["a"]}});
        let f = with_finalizer(&with_finalizer(&o, ORPHAN_FINALIZER), ORPHAN_FINALIZER);
        assert_eq!(finalizers(&f), vec!["a", "orphan"]);
        let g = without_finalizer(&without_finalizer(&f, "a"), ORPHAN_FINALIZER);
        assert!(g["metadata"].get("finalizers").is_none());
        assert!(is_deleting(&marked(&g)));
    }

    #[test]
    fn work_items_name_the_object_inside_its_workspace() {
        let w = WorkItem::of(&key("d"), Some(Policy::Foreground));
        let other = Workspace::parse("root:b").unwrap();
        let k = w.object_key(&other).unwrap();
        assert_eq!(k.workspace, other);
        assert_eq!(
            (k.namespace.as_deref(), k.name.as_str()),
            (Some("default"), "d")
        );
        assert_eq!(
            OwnerRef {
                api_version: "apps/v1".into(),
                ..owner_refs(&obj("d", &[("o", true)]))[0].clone()
            }
            .group(),
            "apps"
        );
        assert_eq!(owner_refs(&obj("d", &[("o", true)]))[0].group(), "");
    }
}
