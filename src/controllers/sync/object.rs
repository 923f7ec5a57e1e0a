//! The workspace object as the sync controller writes it
//! ([`next_object`]): the list of member clusters that may hold a copy
//! ([`super::ANN_CLUSTERS`]), the finalizer [`super::FINALIZER`] while that
//! list is not empty, the per-cluster breakdown
//! ([`super::ANN_CLUSTER_STATUS`]) and, for kinds with status, the status
//! folded from the copies' ([`super::mapping::aggregate`]) with the
//! [`super::SYNCED`] condition. A pure function of the stored object and
//! the sync records, so a property test feeds it any JSON.

use super::mapping;
use super::{
    deleting, kind_of, Desired, SyncRecord, ANN_CLUSTERS, ANN_CLUSTER_STATUS, FINALIZER, SYNCED,
};
use crate::store::{ClusterRef, GroupResource};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The workspace object as it should be: cluster list, finalizer and
/// (for kinds with status) the folded status and its breakdown. Total:
/// stored objects and downstream statuses are data; a shape it cannot
/// work with is an error (metadata, its annotations and finalizers), or
/// replaced (the status, which sync owns for kinds with status).
pub fn next_object(
    gr: &GroupResource,
    raw: &Value,
    keep: &BTreeSet<ClusterRef>,
    desired: &Desired,
    records: &BTreeMap<ClusterRef, SyncRecord>,
) -> Result<Value, String> {
    let mut new = raw
        .as_object()
        .cloned()
        .ok_or("the stored object is not a JSON object")?;
    let meta = mapping::object_field(&mut new, "metadata", "metadata")?;
    {
        let anns = mapping::object_field(meta, "annotations", "metadata.annotations")?;
        if keep.is_empty() {
            anns.remove(ANN_CLUSTERS);
            anns.remove(ANN_CLUSTER_STATUS);
        } else {
            let list: Vec<String> = keep.iter().map(ToString::to_string).collect();
            anns.insert(ANN_CLUSTERS.into(), Value::String(list.join(",")));
        }
    }
    let mut fins: Vec<Value> = match meta.get("finalizers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("metadata.finalizers of the stored object is not a list".into()),
    };
    fins.retain(|f| f.as_str() != Some(FINALIZER));
    if !keep.is_empty() {
        fins.push(Value::String(FINALIZER.into()));
    }
    if fins.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), Value::Array(fins));
    }
    let uid = raw["metadata"]["uid"].as_str().unwrap_or_default();
    let current: Vec<(&ClusterRef, &SyncRecord)> = desired
        .clusters
        .iter()
        .filter_map(|c| records.get(c).map(|r| (c, r)))
        .filter(|(_, r)| r.uid == uid)
        .collect();
    if deleting(raw) || keep.is_empty() {
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            meta.remove("annotations");
        }
        return Ok(Value::Object(new));
    }
    // The per-cluster breakdown.
    let mut breakdown = Map::new();
    for c in &desired.clusters {
        let entry = match records.get(c).filter(|r| r.uid == uid) {
            None => serde_json::json!({"state": "Pending"}),
            Some(r) if r.conflict || !r.error.is_empty() => {
                serde_json::json!({"state": if r.conflict {"Conflict"} else {"Error"}, "error": r.error})
            }
            Some(r) => {
                let st: Value = serde_json::from_str(&r.status).unwrap_or(Value::Null);
                let mut e = Map::new();
                e.insert("state".into(), "Synced".into());
                for f in [
                    "replicas",
                    "readyReplicas",
                    "availableReplicas",
                    "updatedReplicas",
                ] {
                    if let Some(n) = st.get(f) {
                        e.insert(f.into(), n.clone());
                    }
                }
                Value::Object(e)
            }
        };
        breakdown.insert(c.to_string(), entry);
    }
    mapping::object_field(meta, "annotations", "metadata.annotations")?.insert(
        ANN_CLUSTER_STATUS.into(),
        Value::String(Value::Object(breakdown).to_string()),
    );
    if !kind_of(gr).is_some_and(|k| k.has_status) {
        return Ok(Value::Object(new));
    }
    let statuses: Vec<(String, Value)> = current
        .iter()
        .filter(|(_, r)| !r.status.is_empty())
        .filter_map(|(c, r)| Some((c.to_string(), serde_json::from_str(&r.status).ok()?)))
        .collect();
    let mut status = if statuses.is_empty() {
        match raw.get("status") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    } else {
        match mapping::aggregate(&statuses) {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    };
    let generation = raw["metadata"]["generation"].as_i64().unwrap_or(0);
    let all_seen = current.len() == desired.clusters.len()
        && current
            .iter()
            .all(|(_, r)| r.generation == generation && r.observed);
    let observed = if all_seen {
        Some(Value::from(generation))
    } else {
        raw["status"].get("observedGeneration").cloned()
    };
    match observed {
        Some(g) => status.insert("observedGeneration".into(), g),
        None => status.remove("observedGeneration"),
    };
    // Conflicts and errors as a condition.
    let problems: Vec<String> = desired
        .clusters
        .iter()
        .filter_map(|c| {
            let r = records.get(c).filter(|r| r.uid == uid)?;
            (r.conflict || !r.error.is_empty()).then(|| format!("{c}: {}", r.error))
        })
        .collect();
    let mut conds: Vec<Value> = match status.get("conditions") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let old = raw["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == SYNCED).cloned());
    conds.retain(|c| c["type"] != SYNCED);
    if !problems.is_empty() {
        let conflict = current.iter().any(|(_, r)| r.conflict);
        let reason = if conflict { "Conflict" } else { "SyncError" };
        let message = problems.join("; ");
        let since = match &old {
            Some(o) if o["reason"] == reason && o["message"] == message.as_str() => {
                o["lastTransitionTime"].clone()
            }
            _ => Value::String(crate::object::now()),
        };
        conds.push(serde_json::json!({
            "type": SYNCED, "status": "False", "reason": reason,
            "message": message, "lastTransitionTime": since, "lastUpdateTime": since,
        }));
    }
    if conds.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), Value::Array(conds));
    }
    new.insert("status".into(), Value::Object(status));
    Ok(Value::Object(new))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use proptest::prelude::*;

    /// Keys that steer arbitrary JSON into the places sync reads.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "metadata", "annotations", "labels", "finalizers", "name", "namespace", "uid",
                "generation", "deletionTimestamp", "status", "conditions", "type", "status",
                "message", "reason", "lastTransitionTime", "observedGeneration", "replicas",
                "readyReplicas", "spec", "template", "jobTemplate", "containers", "volumes",
                "env", "envFrom", "valueFrom", "configMap", "secret", "secretName",
                "configMapRef", "secretRef", "configMapKeyRef", "secretKeyRef", "projected",
                "sources", "imagePullSecrets", "serviceAccountName", "clusterIP",
                ANN_CLUSTERS, ANN_CLUSTER_STATUS, LABEL_OWNER,
            ])
            .prop_map(String::from),
            1 => "[a-z]{1,3}",
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            prop::sample::select(vec![
                "",
                "True",
                "False",
                "Unknown",
                "root|east",
                "x",
                "{}",
                "5"
            ])
            .prop_map(Value::from),
            "[a-z|,:]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 96, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An object whose top level is usually an object with metadata, so
    /// that the deeper paths are reached.
    fn object() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => json(),
            4 => (json(), json(), json(), json()).prop_map(|(meta, spec, status, rest)| {
                let mut o = match rest {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                o.insert("metadata".into(), meta);
                o.insert("spec".into(), spec);
                o.insert("status".into(), status);
                Value::Object(o)
            }),
        ]
    }

    fn cluster(i: usize) -> ClusterRef {
        ClusterRef {
            workspace: Workspace::parse("root").unwrap(),
            name: format!("c{i}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Stored objects and downstream statuses are data: nothing in the
        /// mapping or the status folding panics on any JSON, and what they
        /// return keeps its promises.
        #[test]
        fn sync_mapping_and_status_folding_take_any_json(
            obj in object(),
            statuses in prop::collection::vec((json(), "[a-z ]{0,5}", any::<bool>(), any::<bool>()), 0..4),
            kind in 0usize..8,
            uid_matches in any::<bool>(),
        ) {
            let kinds = syncable();
            let gr = &kinds[kind % kinds.len()].gr;
            let ws = Workspace::parse("root:a").unwrap();
            if let Ok(d) = mapping::downstream_object(gr, &ws, &obj, "owner") {
                prop_assert_eq!(&d["metadata"]["labels"][LABEL_OWNER], "owner");
                prop_assert!(d.get("status").is_none());
            }
            let _ = mapping::dependencies(&obj);
            let _ = listed_clusters(&obj);
            let _ = labels_of(&obj);
            prop_assert!(mapping::contains(&obj, &obj));
            let _ = mapping::content_hash(&obj);
            let folded: Vec<(String, Value)> =
                statuses.iter().enumerate().map(|(i, (s, ..))| (format!("c{i}"), s.clone())).collect();
            prop_assert!(mapping::aggregate(&folded).is_object());
            let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            let mut desired = Desired::default();
            let mut records = BTreeMap::new();
            for (i, (status, error, conflict, observed)) in statuses.iter().enumerate() {
                desired.clusters.insert(cluster(i));
                records.insert(cluster(i), SyncRecord {
                    uid: if uid_matches { uid.clone() } else { "other".into() },
                    status: status.to_string(),
                    error: error.clone(),
                    conflict: *conflict,
                    observed: *observed,
                    generation: obj["metadata"]["generation"].as_i64().unwrap_or(0),
                    ..Default::default()
                });
            }
            let keep: BTreeSet<ClusterRef> = desired.clusters.clone();
            if let Ok(new) = next_object(gr, &obj, &keep, &desired, &records) {
                prop_assert!(new.is_object());
                if !keep.is_empty() {
                    let fins = crate::object::finalizers(&new);
                    prop_assert!(fins.iter().any(|f| f == FINALIZER));
                    prop_assert_eq!(listed_clusters(&new), keep.clone());
                }
            }
            let _ = next_object(gr, &obj, &BTreeSet::new(), &Desired::default(), &records);
        }
    }
}
