//! Who wrote a WorkloadPlacement's spec, and the right to use a location.
//!
//! The API server records the author of a placement's spec in the
//! annotation [`AUTHOR_ANNOTATION`] (`{"username", "uid", "groups"}`, the
//! shape of kcp's workspace owner annotation; clients cannot set it, see
//! [`crate::api::admission`]). The placement controller reads it back
//! with [`author_of`] and asks [`super::allowed`] whether that user may
//! [`use_attributes`] in the location workspace: the same decision the
//! API made when the spec was written, taken again on every reconcile.
//!
//! Here because both the API and the controllers need it, and it is a
//! matter of who may do what, not of HTTP.

use super::rbac::Attributes;
use super::User;
use serde_json::{json, Value};

/// The annotation in which the server records who wrote a placement's
/// spec.
pub const AUTHOR_ANNOTATION: &str = "tmc.kcp.io/author";

/// The verb that allows using a location's ClusterRegistrations.
pub const USE_VERB: &str = "use";

/// The RBAC attributes of using a location's clusters.
pub fn use_attributes() -> Attributes {
    Attributes::resource(
        USE_VERB,
        crate::types::GROUP,
        "clusterregistrations",
        "",
        "",
    )
}

/// The author record of `user`.
pub fn author_value(user: &User) -> String {
    json!({"username": user.name, "uid": user.uid, "groups": user.groups}).to_string()
}

/// The author annotation of `obj` as stored (not parsed).
pub fn author_text(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(AUTHOR_ANNOTATION)?
        .as_str()
}

/// The recorded author of a stored placement, if any.
pub fn author_of(obj: &Value) -> Option<User> {
    let v: Value = serde_json::from_str(author_text(obj)?).ok()?;
    let name = v.get("username")?.as_str().filter(|n| !n.is_empty())?;
    let uid = v.get("uid").and_then(Value::as_str).unwrap_or("");
    let groups: Vec<&str> = v
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(User::new(name, uid, &groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_author_round_trips_and_a_nameless_one_is_nobody() {
        let alice = User::new("alice", "a1", &["dev"]);
        let obj = json!({"metadata": {"annotations": {AUTHOR_ANNOTATION: author_value(&alice)}}});
        assert_eq!(author_of(&obj), Some(alice));
        let nameless = json!({"username": "", "uid": "x"}).to_string();
        let obj = json!({"metadata": {"annotations": {AUTHOR_ANNOTATION: nameless}}});
        assert_eq!(author_of(&obj), None);
        assert_eq!(author_of(&json!({"metadata": {}})), None);
    }
}
