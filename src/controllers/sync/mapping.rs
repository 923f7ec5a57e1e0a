//! Pure parts of sync: how a workspace object becomes its downstream copy,
//! which objects a workload depends on, whether a downstream copy drifted,
//! and how the status of several copies is folded into one.

use super::{ANN_NAME, ANN_NAMESPACE, ANN_UID, ANN_WORKSPACE, LABEL_OWNER};
use crate::store::{GroupResource, Workspace};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The downstream namespace of `(workspace, namespace)`: `tmc-` and 20 hex
/// digits of a SHA-256 over both, so two tenants' `default` never meet on
/// a physical cluster (80 bits: no collision in any real fleet), and the
/// name says nothing of the tenant to other users of the cluster.
pub fn downstream_namespace(ws: &Workspace, namespace: &str) -> String {
    let mut h = Sha256::new();
    h.update(ws.as_str().as_bytes());
    h.update([0u8]);
    h.update(namespace.as_bytes());
    let d = h.finalize();
    let hex: String = d.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("tmc-{hex}")
}

/// The downstream namespace object tmc creates for `(ws, namespace)`.
pub fn namespace_object(ws: &Workspace, namespace: &str, owner: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": downstream_namespace(ws, namespace),
            "labels": {LABEL_OWNER: owner},
            "annotations": {ANN_WORKSPACE: ws.as_str(), ANN_NAMESPACE: namespace},
        }
    })
}

/// Metadata fields the downstream server owns, or that only mean
/// something in the workspace; never sent down.
const SERVER_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "managedFields",
    "ownerReferences",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
    "finalizers",
    "generateName",
];

/// `map[key]` as an object, created if absent or null; an error naming
/// `what` if it holds anything else.
pub fn object_field<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    let v = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
        .ok_or_else(|| format!("{what} of the stored object is not an object"))
}

/// The copy of `obj` (a workspace object of `gr` in `ws`) to apply on a
/// member cluster: server-owned fields and status stripped, tmc's own
/// annotations dropped, the namespace mapped, the owner label and origin
/// annotations added. Services lose their allocated cluster IPs (each
/// cluster allocates its own). An object whose JSON is not shaped as an
/// object with object metadata, labels and annotations (the API refuses
/// such objects; older stored data may hold them) is an error, never a
/// panic.
pub fn downstream_object(
    gr: &GroupResource,
    ws: &Workspace,
    obj: &Value,
    owner: &str,
) -> Result<Value, String> {
    let mut o = obj
        .as_object()
        .cloned()
        .ok_or("the stored object is not a JSON object")?;
    o.remove("status");
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
    let meta = object_field(&mut o, "metadata", "metadata")?;
    for f in SERVER_META {
        meta.remove(*f);
    }
    if !namespace.is_empty() {
        meta.insert(
            "namespace".into(),
            Value::String(downstream_namespace(ws, namespace)),
        );
    }
    let labels = object_field(meta, "labels", "metadata.labels")?;
    labels.insert(LABEL_OWNER.into(), Value::String(owner.into()));
    let anns = object_field(meta, "annotations", "metadata.annotations")?;
    anns.retain(|k, _| !k.starts_with("tmc.kcp.io/") && k != LAST_APPLIED);
    anns.insert(ANN_WORKSPACE.into(), Value::String(ws.to_string()));
    anns.insert(ANN_NAMESPACE.into(), Value::String(namespace.into()));
    anns.insert(ANN_NAME.into(), name.into());
    anns.insert(ANN_UID.into(), uid.into());
    if gr.key_group() == "core" && gr.resource() == "services" {
        if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    Ok(Value::Object(o))
}

/// kubectl's client-side apply record: meaningless downstream.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A stable hash of what is applied (serde_json keeps object keys
/// sorted, so equal objects serialize equally).
pub fn content_hash(v: &Value) -> u64 {
    let d = Sha256::digest(serde_json::to_vec(v).expect("JSON serializes"));
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// True when every field of `want` has its value in `have` (objects
/// compared key by key, lists element by element with equal lengths):
/// the downstream server may add defaults, but a field tmc set and
/// someone changed is drift.
pub fn contains(have: &Value, want: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv)) || is_empty(wv)),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(wv, hv)| contains(hv, wv))
        }
        _ => want == have,
    }
}

/// Values a server drops on the way in (`{}`, `[]`, `null`, `""`).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Resources whose objects follow a workload that references them.
pub fn is_dependency_kind(gr: &GroupResource) -> bool {
    gr.key_group() == "core"
        && matches!(gr.resource(), "configmaps" | "secrets" | "serviceaccounts")
}

/// The pod template of a workload, if it has one.
fn pod_spec(obj: &Value) -> Option<&Value> {
    let t = &obj["spec"]["template"]["spec"];
    if t.is_object() {
        return Some(t);
    }
    let j = &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    j.is_object().then_some(j)
}

/// ConfigMaps, Secrets and ServiceAccounts (resource, name) the pod
/// template of `obj` references: volumes (including projected), `envFrom`,
/// `env[].valueFrom`, image pull secrets and the service account (not
/// `default`, which every namespace has).
pub fn dependencies(obj: &Value) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    let Some(spec) = pod_spec(obj) else {
        return out;
    };
    let mut add = |kind: &'static str, v: &Value| {
        if let Some(n) = v.as_str().filter(|n| !n.is_empty()) {
            out.insert((kind, n.to_string()));
        }
    };
    for key in ["serviceAccountName", "serviceAccount"] {
        if let Some(sa) = spec[key].as_str().filter(|s| *s != "default") {
            add("serviceaccounts", &Value::String(sa.into()));
        }
    }
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add("secrets", &s["name"]);
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add("configmaps", &v["configMap"]["name"]);
        add("secrets", &v["secret"]["secretName"]);
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            add("configmaps", &src["configMap"]["name"]);
            add("secrets", &src["secret"]["name"]);
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                add("configmaps", &e["configMapRef"]["name"]);
                add("secrets", &e["secretRef"]["name"]);
            }
            for e in c["env"].as_array().into_iter().flatten() {
                add("configmaps", &e["valueFrom"]["configMapKeyRef"]["name"]);
                add("secrets", &e["valueFrom"]["secretKeyRef"]["name"]);
            }
        }
    }
    out
}

/// Integer status fields that add up across clusters.
const SUMMED: &[&str] = &[
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "currentReplicas",
    "terminatingReplicas",
    "currentNumberScheduled",
    "desiredNumberScheduled",
    "numberAvailable",
    "numberMisscheduled",
    "numberReady",
    "numberUnavailable",
    "updatedNumberScheduled",
    "active",
    "succeeded",
    "failed",
    "ready",
    "desiredReplicas",
    "currentHealthy",
    "desiredHealthy",
    "disruptionsAllowed",
    "expectedPods",
];

/// Phases of the kinds tmc syncs, worst first: the phase shown for
/// clusters that disagree.
const PHASES: &[&str] = &[
    "Failed",
    "Lost",
    "Unknown",
    "Pending",
    "Terminating",
    "Running",
    "Active",
    "Bound",
    "Succeeded",
];

/// A condition status's badness: False is worse than Unknown, which is
/// worse than True.
fn rank(status: &str) -> u8 {
    match status {
        "True" => 0,
        "Unknown" => 1,
        _ => 2,
    }
}

/// Folds the downstream statuses of one object (cluster name, status) into
/// the status of the workspace object: one cluster's status as it is;
/// several: counters summed, and per condition type the worst one (its
/// message prefixed with the cluster), so `Available` is True only when
/// it is True everywhere; every cluster's load balancers; other fields
/// when all clusters report the same, and the worst `phase` when they
/// do not. `observedGeneration` is set by the caller.
/// Always an object, whatever the statuses hold.
pub fn aggregate(statuses: &[(String, Value)]) -> Value {
    if let [(_, one)] = statuses {
        let mut s = match one {
            Value::Object(_) => one.clone(),
            _ => Value::Object(Map::new()),
        };
        if let Some(o) = s.as_object_mut() {
            o.remove("observedGeneration");
        }
        return s;
    }
    let mut out = Map::new();
    let mut conditions: Vec<(String, Value)> = Vec::new();
    for (cluster, st) in statuses {
        for f in SUMMED {
            if let Some(n) = st[*f].as_i64() {
                let sum = out
                    .get(*f)
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .saturating_add(n);
                out.insert((*f).into(), sum.into());
            }
        }
        for c in st["conditions"].as_array().into_iter().flatten() {
            if !c.is_object() {
                continue; // a member cluster's status is data, not trusted
            }
            let ty = c["type"].as_str().unwrap_or_default().to_string();
            let mut c = c.clone();
            if rank(c["status"].as_str().unwrap_or("")) > 0 {
                let msg = c["message"].as_str().unwrap_or_default();
                c["message"] = Value::String(format!("{cluster}: {msg}"));
            }
            match conditions.iter_mut().find(|(t, _)| *t == ty) {
                None => conditions.push((ty, c)),
                Some((_, have)) => {
                    let worse = rank(c["status"].as_str().unwrap_or(""))
                        > rank(have["status"].as_str().unwrap_or(""));
                    if worse {
                        *have = c;
                    }
                }
            }
        }
    }
    // Other plain fields (a claim's `phase`, its `capacity`...): kept when
    // every cluster reports the same; a `phase` they disagree on is the
    // worst of theirs.
    if let Some(first) = statuses.first().and_then(|(_, s)| s.as_object()) {
        for (k, v) in first {
            if out.contains_key(k)
                || SUMMED.contains(&k.as_str())
                || matches!(
                    k.as_str(),
                    "observedGeneration" | "conditions" | "loadBalancer"
                )
            {
                continue;
            }
            let values: Vec<&Value> = statuses.iter().map(|(_, s)| &s[k.as_str()]).collect();
            if values.iter().all(|x| *x == v) {
                out.insert(k.clone(), v.clone());
            } else if k == "phase" {
                if let Some(worst) = values
                    .iter()
                    .filter_map(|x| x.as_str())
                    .min_by_key(|p| PHASES.iter().position(|w| w == p).unwrap_or(PHASES.len()))
                {
                    out.insert(k.clone(), Value::String(worst.to_string()));
                }
            }
        }
    }
    // The load balancers of Services and Ingresses: every cluster's.
    let ingress: Vec<Value> = statuses
        .iter()
        .flat_map(|(_, st)| {
            st["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .cloned()
        .collect();
    if !ingress.is_empty() {
        out.insert(
            "loadBalancer".into(),
            serde_json::json!({ "ingress": ingress }),
        );
    }
    if !conditions.is_empty() {
        out.insert(
            "conditions".into(),
            Value::Array(conditions.into_iter().map(|(_, c)| c).collect()),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ws(s: &str) -> Workspace {
        Workspace::parse(s).unwrap()
    }

    #[test]
    fn namespaces_are_isolated_per_workspace_and_valid_names() {
        let a = downstream_namespace(&ws("root:a"), "default");
        let b = downstream_namespace(&ws("root:b"), "default");
        assert_ne!(a, b);
        assert_eq!(a, downstream_namespace(&ws("root:a"), "default"));
        // No ambiguity from concatenation.
        assert_ne!(
            downstream_namespace(&ws("root:ab"), "c"),
            downstream_namespace(&ws("root:a"), "bc")
        );
        assert!(crate::store::names::validate_namespace(&a).is_ok());
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn downstream_copies_lose_server_fields_and_carry_their_origin() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                "resourceVersion": "7", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{}], "ownerReferences": [{}], "finalizers": ["tmc.kcp.io/sync"],
                "labels": {"app": "web"},
                "annotations": {"tmc.kcp.io/clusters": "x", "keep": "me",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 2},
            "status": {"replicas": 2}
        });
        let gr = GroupResource::new("apps", "deployments").unwrap();
        let d = downstream_object(&gr, &ws("root:a"), &obj, "tmc").unwrap();
        let m = &d["metadata"];
        for f in [
            "uid",
            "resourceVersion",
            "generation",
            "managedFields",
            "ownerReferences",
            "finalizers",
            "creationTimestamp",
        ] {
            assert!(m.get(f).is_none(), "{f} survived");
        }
        assert!(d.get("status").is_none());
        assert_eq!(
            m["namespace"],
            downstream_namespace(&ws("root:a"), "default")
        );
        assert_eq!(m["labels"]["app"], "web");
        assert_eq!(m["labels"][LABEL_OWNER], "tmc");
        assert_eq!(m["annotations"]["keep"], "me");
        assert!(m["annotations"].get("tmc.kcp.io/clusters").is_none());
        assert!(m["annotations"].get(LAST_APPLIED).is_none());
        assert_eq!(m["annotations"][ANN_WORKSPACE], "root:a");
        assert_eq!(m["annotations"][ANN_NAMESPACE], "default");
        assert_eq!(m["annotations"][ANN_NAME], "web");
        assert_eq!(m["annotations"][ANN_UID], "u-1");
        assert_eq!(d["spec"]["replicas"], 2);
        let svc = json!({"metadata": {"name": "s", "namespace": "n"}, "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}]}});
        let d = downstream_object(
            &GroupResource::new("", "services").unwrap(),
            &ws("root:a"),
            &svc,
            "tmc",
        )
        .unwrap();
        assert!(d["spec"].get("clusterIP").is_none());
        assert_eq!(d["spec"]["ports"][0]["port"], 80);
    }

    #[test]
    fn drift_is_a_changed_field_not_a_default() {
        let want = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}, "metadata": {"annotations": {}}});
        let have = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"},
            "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always"}]}}}, "metadata": {}});
        assert!(contains(&have, &want));
        let mut scaled = have.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(!contains(&scaled, &want));
        let mut extra = have.clone();
        extra["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "c", "image": "i"}, {"name": "d", "image": "j"}]);
        assert!(!contains(&extra, &want));
    }

    #[test]
    fn dependencies_are_found_everywhere_a_pod_template_refers() {
        let d = json!({"spec": {"template": {"spec": {
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "configMap": {"name": "cm-vol"}},
                        {"name": "b", "secret": {"secretName": "s-vol"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "cm-proj"}}, {"secret": {"name": "s-proj"}}]}}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-envfrom"}}]}],
            "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s-envfrom"}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                        {"name": "Z", "value": "plain"}]}]
        }}}});
        let got: Vec<String> = dependencies(&d)
            .into_iter()
            .map(|(k, n)| format!("{k}/{n}"))
            .collect();
        assert_eq!(
            got,
            [
                "configmaps/cm-env",
                "configmaps/cm-envfrom",
                "configmaps/cm-proj",
                "configmaps/cm-vol",
                "secrets/pull",
                "secrets/s-env",
                "secrets/s-envfrom",
                "secrets/s-proj",
                "secrets/s-vol",
                "serviceaccounts/robot",
            ]
        );
        let job = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"serviceAccountName": "default", "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}]}]}}}}}});
        assert_eq!(
            dependencies(&job).into_iter().collect::<Vec<_>>(),
            [("configmaps", "x".to_string())]
        );
        assert!(dependencies(&json!({"data": {"a": "b"}})).is_empty());
    }

    #[test]
    fn statuses_sum_and_keep_the_worst_condition() {
        let a = json!({"replicas": 2, "readyReplicas": 2, "observedGeneration": 4,
            "conditions": [{"type": "Available", "status": "True", "message": "ok"}]});
        let b = json!({"replicas": 3, "readyReplicas": 1,
            "conditions": [{"type": "Available", "status": "False", "message": "MinimumReplicasUnavailable"}]});
        let one = aggregate(&[("c1".into(), a.clone())]);
        assert_eq!(one["replicas"], 2);
        assert!(one.get("observedGeneration").is_none());
        let both = aggregate(&[("c1".into(), a), ("c2".into(), b)]);
        assert_eq!(both["replicas"], 5);
        assert_eq!(both["readyReplicas"], 3);
        assert_eq!(both["conditions"][0]["status"], "False");
        assert_eq!(
            both["conditions"][0]["message"],
            "c2: MinimumReplicasUnavailable"
        );
        assert_eq!(content_hash(&both), content_hash(&both.clone()));
    }

    #[test]
    fn load_balancers_of_every_cluster_are_kept_and_budgets_summed() {
        let a = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]},
            "currentHealthy": 2, "disruptionsAllowed": 1});
        let b = json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}]},
            "currentHealthy": 3, "disruptionsAllowed": 0});
        let both = aggregate(&[("c1".into(), a), ("c2".into(), b)]);
        assert_eq!(
            both["loadBalancer"]["ingress"],
            json!([{"ip": "10.0.0.1"}, {"hostname": "lb.example"}])
        );
        assert_eq!(both["currentHealthy"], 5);
        assert_eq!(both["disruptionsAllowed"], 1);
        let claims = aggregate(&[
            (
                "c1".into(),
                json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"]}),
            ),
            (
                "c2".into(),
                json!({"phase": "Pending", "accessModes": ["ReadWriteOnce"]}),
            ),
        ]);
        assert_eq!(claims["phase"], "Pending");
        assert_eq!(claims["accessModes"], json!(["ReadWriteOnce"]));
        let odd = aggregate(&[
            (
                "c1".into(),
                json!({"phase": "Bound", "capacity": {"storage": "1Gi"}}),
            ),
            (
                "c2".into(),
                json!({"phase": 7, "capacity": {"storage": "2Gi"}}),
            ),
        ]);
        assert_eq!(odd["phase"], "Bound");
        assert!(odd.get("capacity").is_none());
        let none = aggregate(&[
            ("c1".into(), json!({})),
            ("c2".into(), json!({"loadBalancer": 3})),
        ]);
        assert!(none.get("loadBalancer").is_none());
    }
}
