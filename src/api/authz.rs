//! Authorization at the API edge: the request's RBAC attributes, the RBAC
//! objects of the request's workspace, the decision ([`crate::authz::rbac`]),
//! escalation prevention for writes of roles and bindings, and the self
//! access and rules reviews (`kubectl auth can-i`).
//!
//! Only the request's own workspace is read: its ClusterRoles and
//! ClusterRoleBindings, and the Roles and RoleBindings of the request's
//! namespace, four exact key ranges in this replica's local state, so the
//! cost is O(RBAC objects of that workspace) and nothing of another
//! workspace can take part. A request the local state denies is decided
//! again after a linearizable barrier, so a grant acknowledged anywhere
//! before the request is never missed; a revocation takes effect on each
//! replica once it has applied it (as Kubernetes' RBAC informers).

use super::handlers::{Admit, Reply};
use super::request::ResourceRequest;
use super::status::{qualified, ApiError, ApiResult};
use crate::authz::rbac::{self, Attributes, Policy, PolicyRule, RBAC_GROUP};
use crate::authz::User;
use crate::shard::Shard;
use crate::store::Workspace;
use serde_json::{json, Value};
use std::sync::Arc;

/// The RBAC attributes of a resource request, as kube-apiserver's
/// RequestInfo: a named namespace's own namespace is itself.
pub fn attributes(r: &ResourceRequest, verb: &str) -> Attributes {
    let name = r.name.clone().unwrap_or_default();
    let namespace = match (&r.namespace, r.info.group, r.info.kind) {
        (Some(ns), _, _) => ns.clone(),
        (None, "", "Namespace") => name.clone(),
        _ => String::new(),
    };
    let a = Attributes::resource(verb, r.info.group, r.info.plural, &namespace, &name);
    if r.status {
        a.with_subresource("status")
    } else if r.scale {
        a.with_subresource("scale")
    } else {
        a
    }
}

/// The policy of `ws` as seen from `namespace` (`""`: cluster scope),
/// from this replica's local state ([`crate::authz::load_policy`]).
pub fn load_policy(shard: &dyn Shard, ws: &Workspace, namespace: &str) -> ApiResult<Policy> {
    Ok(crate::authz::load_policy(shard, ws, namespace)?)
}

/// The 403 of a denied request, as kube-apiserver words it.
pub fn forbidden(user: &User, a: &Attributes, ws: &Workspace) -> ApiError {
    let reason = rbac::forbidden_reason(user, a, ws.as_str());
    if !a.resource_request {
        return ApiError::forbidden(format!("forbidden: {reason}"));
    }
    let what = qualified(&a.api_group, &a.resource);
    let message = if a.name.is_empty() {
        format!("{what} is forbidden: {reason}")
    } else {
        format!("{what} {:?} is forbidden: {reason}", a.name)
    };
    ApiError {
        details: Some(json!({"name": a.name, "group": a.api_group, "kind": a.resource})),
        ..ApiError::forbidden(message)
    }
}

/// Is `user` allowed `a` in `ws`? ([`crate::authz::allowed`]: local
/// state first, a denial checked again at a linearizable read point.)
pub async fn allowed(
    shard: &dyn Shard,
    user: &User,
    ws: &Workspace,
    a: &Attributes,
) -> ApiResult<bool> {
    Ok(crate::authz::allowed(shard, user, ws, a).await?)
}

/// 403 unless `user` may do `a` in `ws`.
pub async fn authorize(
    shard: &dyn Shard,
    user: &User,
    ws: &Workspace,
    a: &Attributes,
) -> ApiResult<()> {
    if allowed(shard, user, ws, a).await? {
        Ok(())
    } else {
        Err(forbidden(user, a, ws))
    }
}

fn meta(obj: &Value, field: &str) -> String {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn rules_text(rules: &[PolicyRule]) -> String {
    rules
        .iter()
        .map(|r| r.to_value().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escalation prevention and roleRef checks for writes of RBAC objects in
/// `ws` by `user` (Kubernetes' `ConfirmNoEscalation` and
/// `BindingAuthorized`):
/// - a Role or ClusterRole may only hold rules its writer holds in its
///   namespace (cluster-wide for a ClusterRole), unless the writer may
///   `escalate` it;
/// - a binding may only name a role of this workspace whose rules its
///   writer holds (in the binding's namespace), unless the writer may
///   `bind` it; a RoleBinding names a Role or ClusterRole, a
///   ClusterRoleBinding a ClusterRole; `roleRef` never changes.
///
/// Reads the local state: the server puts a barrier before RBAC writes.
pub fn rbac_admission(shard: Arc<dyn Shard>, user: User, ws: Workspace) -> Admit {
    Arc::new(move |info, old, new| {
        if info.group != RBAC_GROUP {
            return Ok(());
        }
        let name = meta(new, "name");
        let ns = meta(new, "namespace");
        let invalid = |field: &str, msg: String| {
            ApiError::invalid(
                info.kind,
                info.group,
                &name,
                vec![(field.to_string(), msg, "FieldValueInvalid")],
            )
        };
        let denied = |msg: String| ApiError {
            details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
            ..ApiError::forbidden(format!(
                "{} {name:?} is forbidden: {msg}",
                qualified(info.group, info.plural)
            ))
        };
        let holder = format!("user {:?} (groups={:?})", user.name, user.groups);
        match info.kind {
            "Role" | "ClusterRole" => {
                if user.is_master() {
                    return Ok(());
                }
                let requested = rbac::rules_of(new);
                let policy = load_policy(shard.as_ref(), &ws, &ns)?;
                let missing = rbac::uncovered(&policy.rules_for(&user, &ns), &requested);
                if missing.is_empty() {
                    return Ok(());
                }
                let escalate =
                    Attributes::resource("escalate", RBAC_GROUP, info.plural, &ns, &name);
                if rbac::authorize(&policy, &user, &escalate) {
                    return Ok(());
                }
                Err(denied(format!(
                    "{holder} is attempting to grant RBAC permissions not currently held: {}",
                    rules_text(&missing)
                )))
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let Some(role_ref) = rbac::role_ref_of(new) else {
                    return Err(invalid(
                        "roleRef",
                        "Required value: roleRef.kind and roleRef.name are required".into(),
                    ));
                };
                let kinds: &[&str] = if info.kind == "RoleBinding" {
                    &["Role", "ClusterRole"]
                } else {
                    &["ClusterRole"]
                };
                if !kinds.contains(&role_ref.kind.as_str()) {
                    return Err(invalid(
                        "roleRef.kind",
                        format!(
                            "Unsupported value: {:?}: supported values: {kinds:?}",
                            role_ref.kind
                        ),
                    ));
                }
                if let Some(old) = old {
                    if rbac::role_ref_of(old).as_ref() != Some(&role_ref) {
                        return Err(invalid(
                            "roleRef",
                            "Invalid value: cannot change roleRef".into(),
                        ));
                    }
                }
                if user.is_master() {
                    return Ok(());
                }
                let policy = load_policy(shard.as_ref(), &ws, &ns)?;
                let plural = if role_ref.kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                let bind = Attributes::resource("bind", RBAC_GROUP, plural, &ns, &role_ref.name);
                if rbac::authorize(&policy, &user, &bind) {
                    return Ok(());
                }
                let scope = (!ns.is_empty()).then_some(ns.as_str());
                let Some(rules) = policy.role_rules(&role_ref, scope) else {
                    return Err(denied(format!(
                        "{holder} cannot bind {} {:?}: it does not exist in workspace {:?}",
                        role_ref.kind,
                        role_ref.name,
                        ws.as_str()
                    )));
                };
                let missing = rbac::uncovered(&policy.rules_for(&user, &ns), rules);
                if missing.is_empty() {
                    return Ok(());
                }
                Err(denied(format!(
                    "{holder} is attempting to grant RBAC permissions not currently held: {}",
                    rules_text(&missing)
                )))
            }
            _ => Ok(()),
        }
    })
}

// ----------------------------------------------------------------------
// Reviews

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Answers a SelfSubjectAccessReview, SubjectAccessReview or
/// SelfSubjectRulesReview in `ws`.
pub async fn review(
    shard: &dyn Shard,
    user: &User,
    ws: &Workspace,
    kind: &str,
    body: Value,
) -> ApiResult<Reply> {
    if s(&body, "kind") != kind || s(&body, "apiVersion") != "authorization.k8s.io/v1" {
        return Err(ApiError::bad_request(format!(
            "the body must be an authorization.k8s.io/v1 {kind}"
        )));
    }
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    // A SubjectAccessReview asks about the user its spec names.
    let subject = if kind == "SubjectAccessReview" {
        let name = s(&spec, "user");
        if name.is_empty() {
            return Err(ApiError::invalid(
                kind,
                "authorization.k8s.io",
                "",
                vec![(
                    "spec.user".into(),
                    "Required value: a user to review".into(),
                    "FieldValueRequired",
                )],
            ));
        }
        let groups: Vec<&str> = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).take(256).collect())
            .unwrap_or_default();
        User::new(name, s(&spec, "uid"), &groups)
    } else {
        user.clone()
    };
    let user = &subject;
    let status = if kind == "SelfSubjectAccessReview" || kind == "SubjectAccessReview" {
        let a = if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
            Attributes::resource(
                s(r, "verb"),
                s(r, "group"),
                s(r, "resource"),
                s(r, "namespace"),
                s(r, "name"),
            )
            .with_subresource(s(r, "subresource"))
        } else if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
            Attributes::non_resource(s(n, "verb"), s(n, "path"))
        } else {
            return Err(ApiError::invalid(
                kind,
                "authorization.k8s.io",
                "",
                vec![(
                    "spec".into(),
                    "Invalid value: exactly one of nonResourceAttributes or resourceAttributes \
                     must be specified"
                        .into(),
                    "FieldValueInvalid",
                )],
            ));
        };
        if allowed(shard, user, ws, &a).await? {
            json!({"allowed": true, "reason": if user.is_master() {
                "system:masters may do anything".to_string()
            } else {
                format!("allowed by RBAC in workspace {:?}", ws.as_str())
            }})
        } else {
            // RBAC gives no reason for a denial (kubectl prints a bare "no").
            json!({"allowed": false})
        }
    } else {
        shard.barrier().await?;
        let ns = s(&spec, "namespace");
        let rules = if user.is_master() {
            rbac::admin_rules()
        } else {
            load_policy(shard, ws, ns)?.rules_for(user, ns)
        };
        let resource_rules: Vec<Value> = rules
            .iter()
            .filter(|r| r.non_resource_urls.is_empty())
            .map(|r| {
                let mut v = r.to_value();
                if v.get("apiGroups").is_none() {
                    v["apiGroups"] = json!([]);
                }
                v
            })
            .collect();
        let url_rules: Vec<Value> = rules
            .iter()
            .filter(|r| !r.non_resource_urls.is_empty())
            .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
            .collect();
        json!({"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": false})
    };
    Ok((
        201,
        json!({
            "kind": kind,
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, v: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, v.len() as u8];
        out.extend_from_slice(v);
        out
    }

    fn attrs(method: &str, path: &str) -> Attributes {
        let r = match super::super::request::route(path).unwrap().target {
            super::super::request::Target::Resource(r) => r,
            t => panic!("{t:?}"),
        };
        let m: axum::http::Method = method.parse().unwrap();
        let verb = super::super::request::verb(&m, &r, path.contains("watch=")).unwrap();
        attributes(&r, verb)
    }

    #[test]
    fn request_attributes_follow_kube_request_info() {
        let a = attrs("GET", "/clusters/root:a/api/v1/namespaces/dev/configmaps/x");
        assert_eq!(a, Attributes::resource("get", "", "configmaps", "dev", "x"));
        let a = attrs(
            "GET",
            "/clusters/root:a/apis/apps/v1/namespaces/dev/deployments",
        );
        assert_eq!(
            a,
            Attributes::resource("list", "apps", "deployments", "dev", "")
        );
        let a = attrs(
            "GET",
            "/clusters/root:a/api/v1/watch/namespaces/dev/secrets",
        );
        assert_eq!(a.verb, "watch");
        let a = attrs(
            "PUT",
            "/clusters/root:a/apis/apps/v1/namespaces/dev/deployments/w/status",
        );
        assert_eq!(
            a,
            Attributes::resource("update", "apps", "deployments", "dev", "w")
                .with_subresource("status")
        );
        // A namespace is in itself.
        let a = attrs("DELETE", "/clusters/root:a/api/v1/namespaces/dev");
        assert_eq!(
            a,
            Attributes::resource("delete", "", "namespaces", "dev", "dev")
        );
        let a = attrs("POST", "/clusters/root:a/api/v1/namespaces");
        assert_eq!(a, Attributes::resource("create", "", "namespaces", "", ""));
        let a = attrs("DELETE", "/clusters/root:a/api/v1/namespaces/dev/secrets");
        assert_eq!(a.verb, "deletecollection");
        let a = attrs("GET", "/clusters/root:a/api/v1/secrets");
        assert_eq!(a, Attributes::resource("list", "", "secrets", "", ""));
    }

    #[test]
    fn forbidden_errors_name_the_object_and_the_workspace() {
        let u = User::new("alice", "", &[]);
        let ws = Workspace::parse("root:a").unwrap();
        let e = forbidden(
            &u,
            &Attributes::resource("get", "apps", "deployments", "dev", "w"),
            &ws,
        );
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "deployments.apps \"w\" is forbidden: User \"alice\" cannot get resource \"deployments\" \
             in API group \"apps\" in the namespace \"dev\" in workspace \"root:a\""
        );
        assert_eq!(
            e.details,
            Some(json!({"name": "w", "group": "apps", "kind": "deployments"}))
        );
        let e = forbidden(
            &u,
            &Attributes::resource("list", "", "namespaces", "", ""),
            &ws,
        );
        assert_eq!(
            e.message,
            "namespaces is forbidden: User \"alice\" cannot list resource \"namespaces\" in API \
             group \"\" at the cluster scope in workspace \"root:a\""
        );
    }

    #[test]
    fn protobuf_access_reviews_decode() {
        let mut attrs = field(1, b"default");
        attrs.extend(field(2, b"list"));
        attrs.extend(field(5, b"configmaps"));
        let spec = field(1, &attrs);
        let mut ssar = field(1, b"");
        ssar.extend(field(2, &spec));
        let mut type_meta = field(1, b"authorization.k8s.io/v1");
        type_meta.extend(field(2, b"SelfSubjectAccessReview"));
        let mut unknown = field(1, &type_meta);
        unknown.extend(field(2, &ssar));
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown);
        let v =
            super::super::object::decode_body(Some("application/vnd.kubernetes.protobuf"), &body)
                .unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "list", "resource": "configmaps"})
        );
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        for bad in [
            &b"k8s\0\x12\x05ab"[..],
            b"nope",
            b"k8s\0\x0a\xff\xff\xff\xff\xff",
        ] {
            assert_eq!(
                super::super::object::decode_body(Some("application/vnd.kubernetes.protobuf"), bad)
                    .unwrap_err()
                    .code,
                400
            );
        }
    }
}
