//! The committer: kcp's `committer.NewCommitter` pattern.
//!
//! A reconciler works on a copy of an object and hands the committer the
//! object as it was and as it should be. The committer compares them and
//! plans exactly one JSON merge patch (RFC 7386):
//!
//! - metadata and spec changed: a patch of the main resource;
//! - status changed: a patch of the `status` subresource;
//! - both: an error ([`CommitError::SpecAndStatus`]), never two silent
//!   writes — a reconciler that changes both is a bug, as in kcp;
//! - nothing: no write.
//!
//! Every patch carries the object's `uid` and `resourceVersion` as
//! preconditions, so it applies only to the object that was read; a
//! conflict means the reconciler runs again on fresh state.
//!
//! # Implementation caveats
//! - Only the plan is built here; sending it goes through the shard's
//!   write interface, which arrives with the API issue.

pub use crate::object::merge::{apply_merge_patch, merge_patch};
use serde_json::{Map, Value};

/// Which endpoint a planned patch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The main resource: metadata and spec.
    Main,
    /// The `status` subresource.
    Status,
}

/// One planned write.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// Where it goes.
    pub subresource: Subresource,
    /// The JSON merge patch, with `metadata.uid` and
    /// `metadata.resourceVersion` as preconditions.
    pub body: Value,
}

/// Why no patch could be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The reconciler changed both spec (or metadata) and status.
    #[error("the reconciler changed both spec/metadata and status of {0}: commit them separately")]
    SpecAndStatus(String),
    /// The old object lacks what the preconditions need.
    #[error("the object has no metadata.{0}; it was not read from the server")]
    Missing(&'static str),
}

fn without_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// Plans the one patch that turns `old` into `new` (see the module docs).
pub fn plan(old: &Value, new: &Value) -> Result<Option<Patch>, CommitError> {
    let meta = |field: &'static str| {
        old.pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(CommitError::Missing(field))
    };
    let main = merge_patch(&without_status(old), &without_status(new));
    let status = merge_patch(
        old.get("status").unwrap_or(&Value::Null),
        new.get("status").unwrap_or(&Value::Null),
    );
    let (subresource, mut body) = match (main, status) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            let name = old
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>");
            return Err(CommitError::SpecAndStatus(name.to_string()));
        }
        (Some(p), None) => (Subresource::Main, p),
        (None, Some(s)) => (Subresource::Status, serde_json::json!({ "status": s })),
    };
    let (uid, rv) = (meta("uid")?, meta("resourceVersion")?);
    let obj = body
        .as_object_mut()
        .expect("patches of objects are objects");
    let md = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(md) = md.as_object_mut() {
        md.insert("uid".into(), Value::String(uid));
        md.insert("resourceVersion".into(), Value::String(rv));
    }
    Ok(Some(Patch { subresource, body }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({
            "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
            "metadata": {"name": "web", "uid": "u1", "resourceVersion": "7", "labels": {"a": "1"}},
            "spec": {"strategy": {"type": "Single"}, "tolerations": [{"key": "x"}]},
            "status": {"phase": "Pending"}
        })
    }

    #[test]
    fn spec_only_is_one_main_patch_with_preconditions() {
        let old = obj();
        let mut new = old.clone();
        new["spec"]["strategy"]["type"] = json!("All");
        new["metadata"]["labels"]["b"] = json!("2");
        new["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("a");
        let p = plan(&old, &new).unwrap().unwrap();
        assert_eq!(p.subresource, Subresource::Main);
        assert_eq!(
            p.body,
            json!({"metadata": {"labels": {"a": null, "b": "2"}, "uid": "u1", "resourceVersion": "7"},
                   "spec": {"strategy": {"type": "All"}}})
        );
        let mut applied = old.clone();
        apply_merge_patch(&mut applied, &p.body);
        assert_eq!(applied, new, "the patch turns old into new");
    }

    #[test]
    fn status_only_goes_to_the_status_subresource() {
        let old = obj();
        let mut new = old.clone();
        new["status"] = json!({"phase": "Bound", "selectedClusters": [{"name": "c1"}]});
        let p = plan(&old, &new).unwrap().unwrap();
        assert_eq!(p.subresource, Subresource::Status);
        assert_eq!(
            p.body,
            json!({"status": {"phase": "Bound", "selectedClusters": [{"name": "c1"}]},
                   "metadata": {"uid": "u1", "resourceVersion": "7"}})
        );
    }

    #[test]
    fn spec_and_status_together_is_an_error_and_no_change_is_no_write() {
        let old = obj();
        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([]);
        new["status"]["phase"] = json!("Bound");
        assert_eq!(
            plan(&old, &new),
            Err(CommitError::SpecAndStatus("web".into()))
        );
        assert_eq!(plan(&old, &old.clone()), Ok(None));
        let mut bare = old.clone();
        bare["metadata"].as_object_mut().unwrap().remove("uid");
        let mut changed = bare.clone();
        changed["spec"] = json!({});
        assert_eq!(plan(&bare, &changed), Err(CommitError::Missing("uid")));
    }

    #[test]
    fn merge_patch_round_trips() {
        let cases = [
            (json!({"a": 1}), json!({"a": 2, "b": [1, 2]})),
            (json!({"a": {"b": {"c": 1}}}), json!({"a": {"b": {}}})),
            (json!({"a": [1, 2, 3]}), json!({"a": [3]})),
            (json!({"a": {"x": 1}}), json!({"a": "flat"})),
        ];
        for (old, new) in cases {
            let p = merge_patch(&old, &new).unwrap();
            let mut t = old.clone();
            apply_merge_patch(&mut t, &p);
            assert_eq!(t, new, "{old} -> {new} via {p}");
        }
    }
}
