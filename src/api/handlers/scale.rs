//! The `scale` subresource of Deployments, StatefulSets and ReplicaSets:
//! an `autoscaling/v1` `Scale` view of the object (`spec.replicas`,
//! `status.replicas`, and `spec.selector` as a selector string), as
//! kube-apiserver serves it for `kubectl scale` and autoscalers.
//!
//! GET answers the view; PUT takes a Scale (its `resourceVersion`, when
//! set, is a precondition on the object) and PATCH patches the view (JSON
//! patch, merge patch, or strategic merge patch, which on a Scale, a kind
//! without lists, is a merge patch); both write `spec.replicas` of the
//! object through the same compare-and-swap as any update, so the
//! generation moves as for a spec change, and answer the new view.
//!
//! Left out: server-side apply of a Scale (415 with a message), and
//! `managedFields` entries for the `scale` subresource (the update is
//! recorded as the caller's `Update` of the object).

use super::{ObjectApi, Reply, WriteOptions};
use crate::api::apply;
use crate::api::handlers::{Caller, GetOptions};
use crate::api::object::{self, CLUSTER_ANNOTATION};
use crate::api::patch::{self, PatchType};
use crate::api::request::ResourceRequest;
use crate::api::schema::GroupKind;
use crate::api::status::{ApiError, ApiResult};
use crate::api::table::cells::selector_string;
use crate::object::meta_str;
use crate::store::Workspace;
use serde_json::{json, Map, Value};

/// The Scale of `obj` (an object as answered, with its resourceVersion).
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut m = Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    if let Some(ws) = meta
        .get("annotations")
        .and_then(|a| a.get(CLUSTER_ANNOTATION))
    {
        m.insert("annotations".into(), json!({ CLUSTER_ANNOTATION: ws }));
    }
    let mut status = Map::new();
    status.insert(
        "replicas".into(),
        json!(obj["status"]["replicas"].as_i64().unwrap_or(0)),
    );
    // kube prints the selector as a string (`LabelSelectorAsSelector`); a
    // stored selector it could not parse (tmc stores built-in kinds as
    // sent) is left out.
    let selector = selector_string(&obj["spec"]["selector"]).unwrap_or_default();
    if !selector.is_empty() {
        status.insert("selector".into(), Value::String(selector));
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        // kube-apiserver defaults an unset `spec.replicas` to 1.
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": status,
    })
}

/// `spec.replicas` of a Scale sent by a client, checked as kube-apiserver
/// checks it.
fn desired_replicas(scale: &Value, name: &str) -> ApiResult<i64> {
    let invalid = |msg: String| {
        ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            vec![("spec.replicas".into(), msg, "FieldValueInvalid")],
        )
    };
    match &scale["spec"]["replicas"] {
        Value::Null => Ok(0),
        Value::Number(n) => match n.as_i64() {
            Some(r) if r < 0 => Err(invalid(format!(
                "Invalid value: {r}: must be greater than or equal to 0"
            ))),
            Some(r) if r > i64::from(i32::MAX) => Err(invalid(format!(
                "Invalid value: {r}: must be at most {}",
                i32::MAX
            ))),
            Some(r) => Ok(r),
            None => Err(invalid(format!("Invalid value: {n}: must be an integer"))),
        },
        other => Err(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go struct field ScaleSpec.spec.replicas of type int32",
            match other {
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                Value::Array(_) => "array",
                _ => "object",
            }
        ))),
    }
}

impl ObjectApi {
    /// GET of the Scale.
    pub async fn get_scale(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &GetOptions,
    ) -> ApiResult<Reply> {
        let (code, obj) = self.get(req, ws, opts).await?;
        Ok((code, scale_of(&obj)))
    }

    /// PUT of a Scale: sets the object's `spec.replicas`.
    pub async fn update_scale(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &WriteOptions,
        caller: &Caller,
        body: Value,
    ) -> ApiResult<Reply> {
        let name = req.name.clone().unwrap_or_default();
        if body["kind"].as_str().is_some_and(|k| k != "Scale") {
            return Err(ApiError::bad_request(format!(
                "the scale subresource takes a Scale (autoscaling/v1), not a {}",
                body["kind"].as_str().unwrap_or_default()
            )));
        }
        if let Some(n) = meta_str(&body, "name").filter(|n| *n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let client_rv = match meta_str(&body, "resourceVersion") {
            Some(s) if !s.is_empty() => Some(super::params::parse_rv(s)?),
            _ => None,
        };
        let replicas = desired_replicas(&body, &name)?;
        self.write_replicas(req, ws, opts, caller, client_rv, move |_| Ok(replicas))
            .await
    }

    /// PATCH of a Scale: patches the view, then sets the object's
    /// `spec.replicas` from it.
    pub async fn patch_scale(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &WriteOptions,
        caller: &Caller,
        content_type: &str,
        body: &[u8],
    ) -> ApiResult<Reply> {
        let ty = match super::writes::patch_type(content_type, body)? {
            PatchType::Apply => {
                return Err(ApiError::unsupported_media_type(
                    "server-side apply of the scale subresource is not supported: \
                     patch it with application/merge-patch+json or apply the object",
                ))
            }
            // A Scale has no lists: a strategic merge patch is a merge patch.
            PatchType::Strategic => PatchType::Merge,
            t => t,
        };
        let name = req.name.clone().unwrap_or_default();
        let ws_name = ws.as_str().to_string();
        let scale_gk = GroupKind::new("autoscaling", "Scale");
        self.write_replicas(req, ws, opts, caller, None, move |live| {
            let view = scale_of(&object::for_response(live.0.clone(), live.1, &ws_name));
            let patched = patch::apply_patch(&scale_gk, &view, ty, body).map_err(|e| ApiError {
                code: e.code(),
                reason: e.reason(),
                message: e.to_string(),
                details: None,
            })?;
            if let Some(s) = meta_str(&patched, "resourceVersion") {
                if s != live.1.to_string() {
                    return Err(ApiError::conflict(req.info.group, req.info.plural, &name));
                }
            }
            desired_replicas(&patched, &name)
        })
        .await
    }

    /// Writes `spec.replicas` (from `replicas`, given the stored object
    /// and its revision) and answers the new Scale.
    async fn write_replicas(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &WriteOptions,
        caller: &Caller,
        client_rv: Option<u64>,
        replicas: impl Fn((&Value, u64)) -> ApiResult<i64>,
    ) -> ApiResult<Reply> {
        let manager = opts.manager(caller, false)?;
        let gk = GroupKind::new(req.info.group, req.info.kind);
        let (code, obj) = self
            .guaranteed_update(req, ws, client_rv, opts.dry_run, caller, |current, rv| {
                let n = replicas((current, rv))?;
                let mut desired = current.clone();
                let Some(obj) = desired.as_object_mut() else {
                    return Err(ApiError::internal("the stored object is not a JSON object"));
                };
                let spec = obj.entry("spec").or_insert_with(|| json!({}));
                if !spec.is_object() {
                    *spec = json!({});
                }
                spec["replicas"] = json!(n);
                Ok(apply::track_update(
                    &gk,
                    Some(current),
                    &desired,
                    &manager,
                    &crate::object::now(),
                ))
            })
            .await?;
        Ok((code, scale_of(&obj)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_has_spec_status_and_identity() {
        let d = json!({"metadata": {"name": "web", "namespace": "n", "uid": "u",
            "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["kind"], "Scale");
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        assert!(s["metadata"].get("labels").is_none());
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(scale_of(&json!({}))["spec"]["replicas"], 1);
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
        assert!(scale_of(&bad)["status"].get("selector").is_none());
    }

    #[test]
    fn replicas_are_checked_as_kube_checks_them() {
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": 4}}), "w").unwrap(),
            4
        );
        let neg = desired_replicas(&json!({"spec": {"replicas": -1}}), "w").unwrap_err();
        assert_eq!(neg.code, 422);
        assert!(
            neg.message
                .contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "{}",
            neg.message
        );
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": "3"}}), "w")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": 1.5}}), "w")
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": 1u64 << 40}}), "w")
                .unwrap_err()
                .code,
            422
        );
    }
}
