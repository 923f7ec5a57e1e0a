//! Validation of tmc's own kinds against their Rust types.
//!
//! Built-in Kubernetes kinds are stored schemaless (kube-apiserver would
//! validate them; tmc passes them to member clusters, which do). tmc's own
//! kinds are read by its controllers, so a ClusterRegistration or a
//! WorkloadPlacement whose `spec` (or `status`) does not decode into the
//! types of [`crate::types`] is refused with 422 Invalid, naming the field
//! path serde stopped at, as kube-apiserver does for a CRD whose OpenAPI
//! schema the object breaks. Unknown fields are kept (as a structural
//! schema with `x-kubernetes-preserve-unknown-fields` would), not refused.

use super::resources::ResourceInfo;
use super::status::{ApiError, ApiResult};
use crate::types::{
    ClusterRegistrationSpec, ClusterRegistrationStatus, WorkloadPlacementSpec,
    WorkloadPlacementStatus,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn check<T: DeserializeOwned>(
    info: &ResourceInfo,
    obj: &Value,
    field: &str,
    required: bool,
) -> ApiResult<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let invalid = |path: String, msg: String, reason: &'static str| {
        ApiError::invalid(info.kind, info.group, name, vec![(path, msg, reason)])
    };
    match obj.get(field) {
        None | Some(Value::Null) if required => Err(invalid(
            field.to_string(),
            "Required value".to_string(),
            "FieldValueRequired",
        )),
        None | Some(Value::Null) => Ok(()),
        Some(v) => match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut path = match e.path().to_string() {
                    p if p == "." => field.to_string(),
                    p => format!("{field}.{p}"),
                };
                let msg = e.inner().to_string();
                // serde names a missing field only in its message.
                if let Some(missing) = msg
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                {
                    path.push('.');
                    path.push_str(missing);
                    return Err(invalid(path, "Required value".into(), "FieldValueRequired"));
                }
                Err(invalid(
                    path,
                    format!("Invalid value: {msg}"),
                    "FieldValueInvalid",
                ))
            }
        },
    }
}

/// A WorkloadPlacement's label selectors must be valid Kubernetes
/// selectors (operators, values per operator, label keys and values), as
/// kube-apiserver validates a Deployment's `spec.selector`: the controllers
/// would otherwise read an invalid one as matching nothing, silently.
fn check_selectors(info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    let Some(spec) = obj
        .get("spec")
        .and_then(|v| serde_json::from_value::<WorkloadPlacementSpec>(v.clone()).ok())
    else {
        return Ok(());
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    for (field, sel) in [
        ("spec.namespaceSelector", &spec.namespace_selector),
        ("spec.workloadSelector", &spec.workload_selector),
        ("spec.clusterSelector", &spec.cluster_selector),
    ] {
        if let Some(sel) = sel {
            if let Err(e) = crate::object::selector::LabelSelector::from_metav1(sel) {
                return Err(ApiError::invalid(
                    info.kind,
                    info.group,
                    name,
                    vec![(
                        field.to_string(),
                        format!("Invalid value: {e}"),
                        "FieldValueInvalid",
                    )],
                ));
            }
        }
    }
    Ok(())
}

/// Checks a whole object about to be stored. Its shape (ObjectMeta and
/// top-level fields, [`super::object::check_shape`]) was checked when
/// the body was decoded; a patch's result is checked here, and refused
/// as kube-apiserver refuses a patch that does not decode.
pub fn validate(info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    super::object::check_shape(info, obj).map_err(|e| super::object::patch_error(&e))?;
    check_owner_references(info, obj)?;
    match (info.group, info.kind) {
        ("tmc.kcp.io", "ClusterRegistration") => {
            check::<ClusterRegistrationSpec>(info, obj, "spec", true)?;
            check::<ClusterRegistrationStatus>(info, obj, "status", false)
        }
        ("tmc.kcp.io", "WorkloadPlacement") => {
            check::<WorkloadPlacementSpec>(info, obj, "spec", true)?;
            check_selectors(info, obj)?;
            check::<WorkloadPlacementStatus>(info, obj, "status", false)
        }
        _ => Ok(()),
    }
}

/// kube-apiserver's checks of `metadata.ownerReferences` (apiVersion,
/// kind, name and uid required; one controller at most), and a uid the
/// dependants index can name (no `/`, `%` or control characters).
fn check_owner_references(info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    let mut causes = Vec::new();
    let mut controllers = 0;
    for (i, r) in refs.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("");
        for (field, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            if s(field).is_empty() {
                causes.push((
                    format!("{path}.{field}"),
                    format!("Invalid value: \"\": {what} must not be empty"),
                    "FieldValueInvalid",
                ));
            }
        }
        let uid = s("uid");
        if !uid.is_empty() && crate::store::names::validate_path_segment("uid", uid).is_err() {
            causes.push((
                format!("{path}.uid"),
                format!(
                    "Invalid value: {uid:?}: a uid may not contain '/', '%' or control characters"
                ),
                "FieldValueInvalid",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        causes.push((
            "metadata.ownerReferences".into(),
            "Invalid value: []v1.OwnerReference{...}: Only one reference can have Controller set to true"
                .into(),
            "FieldValueInvalid",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::invalid(info.kind, info.group, name, causes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(kind: &str) -> &'static ResourceInfo {
        super::super::resources::RESOURCES
            .iter()
            .find(|r| r.group == "tmc.kcp.io" && r.kind == kind)
            .expect("a tmc kind")
    }

    #[test]
    fn a_placements_selectors_must_be_valid_kubernetes_selectors() {
        let place = info("WorkloadPlacement");
        let with = |field: &str, sel: Value| {
            let mut spec = json!({"strategy": {"type": "Single"}});
            spec[field] = sel;
            json!({"metadata": {"name": "p"}, "spec": spec})
        };
        for field in ["namespaceSelector", "workloadSelector", "clusterSelector"] {
            assert!(validate(place, &with(field, json!({"matchLabels": {"a": "b"}}))).is_ok());
            for bad in [
                json!({"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]}),
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}),
                json!({"matchLabels": {"not a key!": "b"}}),
                json!({"matchLabels": {"a": "not a value!"}}),
            ] {
                let e = validate(place, &with(field, bad.clone()))
                    .expect_err(&format!("{field}: {bad}"))
                    .to_status();
                assert_eq!(e["code"], 422, "{field}: {bad}: {e}");
                assert_eq!(
                    e["details"]["causes"][0]["field"],
                    format!("spec.{field}"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn tmc_kinds_are_checked_against_their_types() {
        let creg = info("ClusterRegistration");
        let ok = json!({"metadata": {"name": "c"}, "spec": {
            "apiEndpoint": "https://10.0.0.1:6443",
            "credentialsSecretRef": {"namespace": "tmc-system", "name": "x"}}});
        assert!(validate(creg, &ok).is_ok());
        let missing = json!({"metadata": {"name": "c"}});
        let e = validate(creg, &missing).unwrap_err().to_status();
        assert_eq!(
            (e["code"].as_u64(), e["reason"].as_str()),
            (Some(422), Some("Invalid"))
        );
        assert_eq!(e["details"]["causes"][0]["field"], "spec");
        let wrong = json!({"metadata": {"name": "c"}, "spec": {
            "apiEndpoint": 5,
            "credentialsSecretRef": {"namespace": "tmc-system", "name": "x"}}});
        let e = validate(creg, &wrong).unwrap_err().to_status();
        assert_eq!(e["details"]["causes"][0]["field"], "spec.apiEndpoint");
        let place = info("WorkloadPlacement");
        let e = validate(place, &json!({"spec": {"strategy": {"type": "Nope"}}}))
            .unwrap_err()
            .to_status();
        assert!(
            e["details"]["causes"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with("spec.strategy"),
            "{e}"
        );
        // Other kinds: only their shape (the Go types of ObjectMeta and
        // the top level), as a patch's result.
        let cm = super::super::resources::RESOURCES
            .iter()
            .find(|r| r.kind == "ConfigMap")
            .unwrap();
        assert!(validate(cm, &json!({"data": {"a": "b"}, "spec": 5})).is_ok());
        let e = validate(cm, &json!({"data": 5})).unwrap_err().to_status();
        assert_eq!(
            (e["code"].as_u64(), e["reason"].as_str()),
            (Some(422), Some("Invalid"))
        );
        assert_eq!(e["details"]["causes"][0]["field"], "patch");
    }
}
