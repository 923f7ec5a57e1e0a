//! Kubernetes RBAC, evaluated over the objects of one workspace.
//!
//! Semantics follow kube-apiserver's RBAC authorizer
//! (`plugin/pkg/auth/authorizer/rbac`) and its escalation check
//! (`pkg/registry/rbac/validation`):
//!
//! - A request is allowed when some rule reachable from a binding whose
//!   subjects match the user allows it. ClusterRoleBindings grant their
//!   ClusterRole's rules everywhere in the workspace (every namespace and
//!   the cluster scope); RoleBindings grant their Role's (same namespace)
//!   or ClusterRole's rules in their own namespace only.
//! - A rule allows a resource request when its verbs (or `*`), apiGroups
//!   (or `*`), resources (`*`, the resource, `resource/subresource`, or
//!   `*/subresource`) and resourceNames (empty: any) all match; a
//!   non-resource request (a URL path) when its verbs match and a
//!   nonResourceURL is the path or a `prefix*`.
//! - Subjects: `User` by name, `Group` by membership, `ServiceAccount` as
//!   the user `system:serviceaccount:{namespace}:{name}` (the namespace
//!   defaults to the RoleBinding's).
//! - Escalation: a role may only be written with rules its writer holds
//!   (in that namespace, or cluster-wide for a ClusterRole), and a binding
//!   only to a role whose rules its writer holds; [`covers`] decides, after
//!   breaking the requested rules down to single verb/group/resource/name
//!   rules as Kubernetes does.
//!
//! A [`Policy`] is built from the workspace's RBAC objects as fetched by
//! the caller: there is no way for it to see another workspace's objects,
//! so a binding in `root:a` can never grant anything in `root:b`, and a
//! roleRef always names a role of the binding's own workspace.
//!
//! Left out: aggregated ClusterRoles (`aggregationRule`), the `impersonate`
//! verb (no impersonation), kube's bootstrap roles beyond the built-in
//! [`basic_rules`].

use super::User;
use serde_json::Value;
use std::collections::HashMap;

/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyRule {
    /// Verbs (`get`, `list`, ..., or `*`).
    pub verbs: Vec<String>,
    /// API groups (`""` for core, or `*`).
    pub api_groups: Vec<String>,
    /// Resources (`configmaps`, `deployments/status`, `*/status`, `*`).
    pub resources: Vec<String>,
    /// Object names (empty: any).
    pub resource_names: Vec<String>,
    /// Non-resource URL paths (`/api`, `/healthz/*`, `*`).
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn vs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl PolicyRule {
    /// A rule from its JSON form (unknown fields ignored, wrong types
    /// read as empty, which grants nothing).
    pub fn from_value(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// A resource rule.
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: vs(verbs),
            api_groups: vs(groups),
            resources: vs(resources),
            ..Default::default()
        }
    }

    /// A non-resource rule.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: vs(verbs),
            non_resource_urls: vs(urls),
            ..Default::default()
        }
    }

    /// The JSON form (as in a role's `rules`).
    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("verbs".into(), self.verbs.clone().into());
        if !self.api_groups.is_empty() {
            m.insert("apiGroups".into(), self.api_groups.clone().into());
        }
        if !self.resources.is_empty() {
            m.insert("resources".into(), self.resources.clone().into());
        }
        if !self.resource_names.is_empty() {
            m.insert("resourceNames".into(), self.resource_names.clone().into());
        }
        if !self.non_resource_urls.is_empty() {
            m.insert(
                "nonResourceURLs".into(),
                self.non_resource_urls.clone().into(),
            );
        }
        Value::Object(m)
    }
}

/// The rules of `cluster-admin`: everything.
pub fn admin_rules() -> Vec<PolicyRule> {
    vec![
        PolicyRule::resource(&["*"], &["*"], &["*"]),
        PolicyRule::urls(&["*"], &["*"]),
    ]
}

/// What every authenticated user may do in every workspace, as
/// Kubernetes' bootstrap `system:basic-user`, `system:discovery` and
/// `system:public-info-viewer` bound to `system:authenticated`: ask what
/// it may do (self access and rules reviews), discovery, OpenAPI, version
/// and health. None of it reads a workspace's objects.
pub fn basic_rules() -> Vec<PolicyRule> {
    vec![
        PolicyRule::resource(
            &["create"],
            &["authorization.k8s.io"],
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        ),
        PolicyRule::urls(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/openapi",
                "/openapi/*",
                "/version",
                "/version/",
                "/livez",
                "/readyz",
                "/healthz",
            ],
        ),
    ]
}

/// What a request asks, as Kubernetes' `authorizer.Attributes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// The verb (`get`, `list`, `watch`, `create`, ..., or a URL verb).
    pub verb: String,
    /// A resource request (else a non-resource one, by `path`).
    pub resource_request: bool,
    /// Namespace (`""`: cluster scope or all namespaces).
    pub namespace: String,
    /// API group (`""` for core).
    pub api_group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`status`), or `""`.
    pub subresource: String,
    /// Object name, or `""`.
    pub name: String,
    /// URL path of a non-resource request.
    pub path: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// A non-resource request.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// The same with a subresource.
    pub fn with_subresource(mut self, sub: &str) -> Self {
        self.subresource = sub.into();
        self
    }

    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

/// Does `rule` allow the request? (kube's `RuleAllows`)
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    let verb = has(&rule.verbs, "*") || has(&rule.verbs, &a.verb);
    if !verb {
        return false;
    }
    if !a.resource_request {
        return rule.non_resource_urls.iter().any(|u| {
            u == "*"
                || *u == a.path
                || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
        });
    }
    let group = has(&rule.api_groups, "*") || has(&rule.api_groups, &a.api_group);
    let combined = a.combined_resource();
    let resource = rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty()
                && r.len() == a.subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(&a.subresource))
    });
    let name = rule.resource_names.is_empty() || has(&rule.resource_names, &a.name);
    group && resource && name
}

/// A reference from a binding to a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    /// `Role` or `ClusterRole`.
    pub kind: String,
    /// The role's name.
    pub name: String,
}

/// A subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (ServiceAccounts).
    pub namespace: String,
}

/// A RoleBinding (`namespace` set) or ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The binding's namespace; `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The role it grants.
    pub role_ref: RoleRef,
    /// Whom it grants it to.
    pub subjects: Vec<Subject>,
}

/// The roleRef of a binding's JSON.
pub fn role_ref_of(obj: &Value) -> Option<RoleRef> {
    let r = obj.get("roleRef")?;
    Some(RoleRef {
        kind: r.get("kind")?.as_str()?.to_string(),
        name: r.get("name")?.as_str()?.to_string(),
    })
}

/// The rules of a role's JSON.
pub fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(PolicyRule::from_value).collect())
        .unwrap_or_default()
}

impl Binding {
    /// A binding from its JSON; `None` when it has no usable roleRef.
    pub fn from_value(obj: &Value) -> Option<Binding> {
        let meta = obj.get("metadata");
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let subjects = obj
            .get("subjects")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(Subject {
                            kind: s.get("kind")?.as_str()?.to_string(),
                            name: s.get("name")?.as_str()?.to_string(),
                            namespace: s
                                .get("namespace")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Binding {
            namespace,
            name,
            role_ref: role_ref_of(obj)?,
            subjects,
        })
    }

    /// Does one of the subjects name `user`? (kube's `appliesTo`)
    pub fn applies_to(&self, user: &User) -> bool {
        self.subjects.iter().any(|s| match s.kind.as_str() {
            "User" => s.name == user.name,
            "Group" => user.in_group(&s.name),
            "ServiceAccount" => {
                let ns = if s.namespace.is_empty() {
                    self.namespace.as_deref().unwrap_or("")
                } else {
                    &s.namespace
                };
                !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            _ => false,
        })
    }
}

/// The RBAC objects of one workspace (or the part of them a request in one
/// namespace needs: its Roles and RoleBindings, every ClusterRole and
/// ClusterRoleBinding).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_role_bindings: Vec<Binding>,
    role_bindings: Vec<Binding>,
}

impl Policy {
    /// A policy from objects of kinds Role, ClusterRole, RoleBinding and
    /// ClusterRoleBinding (others, and unreadable ones, are ignored).
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Policy {
        let mut p = Policy::default();
        for o in objects {
            p.add(o);
        }
        p
    }

    /// Adds one object.
    pub fn add(&mut self, o: &Value) {
        let meta = o.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match o.get("kind").and_then(Value::as_str) {
            Some("ClusterRole") => {
                self.cluster_roles.insert(name, rules_of(o));
            }
            Some("Role") if !ns.is_empty() => {
                self.roles.insert((ns, name), rules_of(o));
            }
            Some("ClusterRoleBinding") => {
                if let Some(mut b) = Binding::from_value(o) {
                    b.namespace = None;
                    self.cluster_role_bindings.push(b);
                }
            }
            Some("RoleBinding") if !ns.is_empty() => {
                if let Some(b) = Binding::from_value(o) {
                    self.role_bindings.push(b);
                }
            }
            _ => {}
        }
    }

    /// The rules a roleRef names, seen from `namespace` (a Role must be in
    /// the binding's namespace; a ClusterRoleBinding can name only a
    /// ClusterRole). `None` when no such role exists.
    pub fn role_rules(&self, r: &RoleRef, namespace: Option<&str>) -> Option<&[PolicyRule]> {
        match (r.kind.as_str(), namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(&r.name).map(Vec::as_slice),
            ("Role", Some(ns)) => self
                .roles
                .get(&(ns.to_string(), r.name.clone()))
                .map(Vec::as_slice),
            _ => None,
        }
    }

    /// Calls `visit` with every rule that applies to `user` in `namespace`
    /// (`""`: cluster scope / all namespaces) until it returns true.
    fn visit(
        &self,
        user: &User,
        namespace: &str,
        mut visit: impl FnMut(&PolicyRule) -> bool,
    ) -> bool {
        for b in &self.cluster_role_bindings {
            if b.role_ref.kind != "ClusterRole" || !b.applies_to(user) {
                continue;
            }
            if let Some(rules) = self.role_rules(&b.role_ref, None) {
                if rules.iter().any(&mut visit) {
                    return true;
                }
            }
        }
        if namespace.is_empty() {
            return false;
        }
        for b in &self.role_bindings {
            if b.namespace.as_deref() != Some(namespace) || !b.applies_to(user) {
                continue;
            }
            if let Some(rules) = self.role_rules(&b.role_ref, Some(namespace)) {
                if rules.iter().any(&mut visit) {
                    return true;
                }
            }
        }
        false
    }

    /// Is the request allowed by a binding of this workspace (or by
    /// [`basic_rules`])? `system:masters` is not special here: see
    /// [`authorize`].
    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        basic_rules().iter().any(|r| rule_allows(r, a))
            || self.visit(user, &a.namespace, |r| rule_allows(r, a))
    }

    /// Every rule that applies to `user` in `namespace` (`""`: cluster
    /// scope only), [`basic_rules`] included.
    pub fn rules_for(&self, user: &User, namespace: &str) -> Vec<PolicyRule> {
        let mut out = basic_rules();
        self.visit(user, namespace, |r| {
            out.push(r.clone());
            false
        });
        out
    }
}

/// Allowed or not: `system:masters` may do anything; anyone else what the
/// workspace's policy allows.
pub fn authorize(policy: &Policy, user: &User, a: &Attributes) -> bool {
    user.is_master() || policy.allows(user, a)
}

/// kube-apiserver's forbidden message, with the workspace:
/// `User "alice" cannot list resource "configmaps" in API group "" in the
/// namespace "default" in workspace "root:a"`.
pub fn forbidden_reason(user: &User, a: &Attributes, workspace: &str) -> String {
    let base = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path)
    } else if !a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name,
            a.verb,
            a.combined_resource(),
            a.api_group,
            a.namespace
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name,
            a.verb,
            a.combined_resource(),
            a.api_group
        )
    };
    format!("{base} in workspace {workspace:?}")
}

/// Breaks rules down to one verb, group, resource and name each (kube's
/// `BreakdownRule`), so coverage can be checked piece by piece.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(PolicyRule::resource(&[v], &[g], &[r]));
                } else {
                    for n in &rule.resource_names {
                        let mut p = PolicyRule::resource(&[v], &[g], &[r]);
                        p.resource_names = vec![n.clone()];
                        out.push(p);
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(PolicyRule::urls(&[v], &[u]));
        }
    }
    out
}

fn has_all(owner: &[String], sub: &[String]) -> bool {
    sub.iter().all(|s| has(owner, s))
}

fn resource_covers_all(owner: &[String], sub: &[String]) -> bool {
    if has(owner, "*") {
        return true;
    }
    sub.iter().all(|s| {
        has(owner, s)
            || s.split_once('/')
                .is_some_and(|(_, subres)| has(owner, &format!("*/{subres}")))
    })
}

fn url_covers(owner: &str, sub: &str) -> bool {
    owner == sub || (owner.ends_with('*') && sub.starts_with(owner.trim_end_matches('*')))
}

/// Does `owner` cover `sub`? (kube's `ruleCovers`; `*` on the requested
/// side is covered only by `*` on the owner's.)
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = sub
        .non_resource_urls
        .iter()
        .all(|s| owner.non_resource_urls.iter().any(|o| url_covers(o, s)));
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// The pieces of `requested` that no rule of `owner` covers (empty: all
/// covered, no escalation).
pub fn uncovered(owner: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    requested
        .iter()
        .flat_map(breakdown)
        .filter(|piece| !owner.iter().any(|o| rule_covers(o, piece)))
        .collect()
}

/// True when `owner` holds every right of `requested`.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> bool {
    uncovered(owner, requested).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alice() -> User {
        User::new("alice", "1", &["dev"])
    }

    fn role(kind: &str, ns: &str, name: &str, rules: Value) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn binding(
        kind: &str,
        ns: &str,
        name: &str,
        ref_kind: &str,
        ref_name: &str,
        subjects: Value,
    ) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": RBAC_GROUP, "kind": ref_kind, "name": ref_name},
               "subjects": subjects})
    }

    fn user(name: &str) -> Value {
        json!([{"kind": "User", "apiGroup": RBAC_GROUP, "name": name}])
    }

    fn cm(verb: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(verb, "", "configmaps", ns, name)
    }

    #[test]
    fn rules_match_verbs_groups_resources_names_and_urls() {
        let r = PolicyRule::resource(&["get", "list"], &[""], &["configmaps"]);
        assert!(rule_allows(&r, &cm("get", "d", "x")));
        assert!(rule_allows(&r, &cm("list", "d", "")));
        assert!(!rule_allows(&r, &cm("watch", "d", "")));
        assert!(!rule_allows(
            &r,
            &Attributes::resource("get", "apps", "configmaps", "d", "x")
        ));
        assert!(!rule_allows(
            &r,
            &Attributes::resource("get", "", "secrets", "d", "x")
        ));
        assert!(!rule_allows(
            &r,
            &cm("get", "d", "x").with_subresource("status")
        ));

        let mut named = PolicyRule::resource(&["*"], &["*"], &["configmaps"]);
        named.resource_names = vec!["x".into()];
        assert!(rule_allows(&named, &cm("delete", "d", "x")));
        assert!(!rule_allows(&named, &cm("delete", "d", "y")));
        assert!(
            !rule_allows(&named, &cm("list", "d", "")),
            "a named rule does not list"
        );
        assert!(!rule_allows(&named, &cm("create", "d", "")), "nor create");

        let status = PolicyRule::resource(&["update"], &["apps"], &["*/status"]);
        let dep = |sub: &str| {
            Attributes::resource("update", "apps", "deployments", "d", "w").with_subresource(sub)
        };
        assert!(rule_allows(&status, &dep("status")));
        assert!(!rule_allows(&status, &dep("")));
        assert!(!rule_allows(&status, &dep("scale")));
        let exact = PolicyRule::resource(&["update"], &["apps"], &["deployments/status"]);
        assert!(rule_allows(&exact, &dep("status")));
        assert!(!rule_allows(&exact, &dep("")));

        let urls = PolicyRule::urls(&["get"], &["/healthz", "/logs/*"]);
        assert!(rule_allows(
            &urls,
            &Attributes::non_resource("get", "/healthz")
        ));
        assert!(rule_allows(
            &urls,
            &Attributes::non_resource("get", "/logs/a/b")
        ));
        assert!(!rule_allows(
            &urls,
            &Attributes::non_resource("get", "/healthzx")
        ));
        assert!(!rule_allows(
            &urls,
            &Attributes::non_resource("post", "/healthz")
        ));
        assert!(
            !rule_allows(&urls, &cm("get", "d", "x")),
            "URL rules never match resources"
        );
        assert!(!rule_allows(&r, &Attributes::non_resource("get", "/api")));
    }

    #[test]
    fn bindings_grant_in_their_scope_only() {
        let objs = [
            role(
                "Role",
                "dev",
                "reader",
                json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}]),
            ),
            role(
                "ClusterRole",
                "",
                "secrets",
                json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]),
            ),
            role(
                "ClusterRole",
                "",
                "ns-viewer",
                json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["namespaces"]}]),
            ),
            binding("RoleBinding", "dev", "b1", "Role", "reader", user("alice")),
            // A RoleBinding to a ClusterRole grants it in its namespace only.
            binding(
                "RoleBinding",
                "dev",
                "b2",
                "ClusterRole",
                "secrets",
                json!([{"kind": "Group", "name": "dev"}]),
            ),
            binding(
                "ClusterRoleBinding",
                "",
                "b3",
                "ClusterRole",
                "ns-viewer",
                user("alice"),
            ),
            // A Role of another namespace is not reachable.
            binding("RoleBinding", "prod", "b4", "Role", "reader", user("alice")),
            // A ClusterRoleBinding cannot name a Role.
            binding(
                "ClusterRoleBinding",
                "",
                "b5",
                "Role",
                "reader",
                user("alice"),
            ),
            // A binding to a role that does not exist grants nothing.
            binding(
                "ClusterRoleBinding",
                "",
                "b6",
                "ClusterRole",
                "missing",
                user("alice"),
            ),
        ];
        let p = Policy::from_objects(objs.iter());
        let a = alice();
        assert!(p.allows(&a, &cm("get", "dev", "x")));
        assert!(p.allows(&a, &cm("list", "dev", "")));
        assert!(!p.allows(&a, &cm("list", "", "")), "not across namespaces");
        assert!(!p.allows(&a, &cm("get", "prod", "x")));
        assert!(!p.allows(&a, &cm("delete", "dev", "x")));
        assert!(p.allows(&a, &Attributes::resource("get", "", "secrets", "dev", "s")));
        assert!(!p.allows(&a, &Attributes::resource("get", "", "secrets", "prod", "s")));
        assert!(p.allows(&a, &Attributes::resource("list", "", "namespaces", "", "")));
        assert!(p.allows(&a, &Attributes::resource("list", "", "namespaces", "x", "")));
        let bob = User::new("bob", "2", &[]);
        assert!(!p.allows(&bob, &cm("get", "dev", "x")));
        assert!(!authorize(&p, &bob, &cm("get", "dev", "x")));
        assert!(authorize(
            &p,
            &User::new("root", "0", &[crate::authz::MASTERS]),
            &cm("delete", "", "")
        ));
        // Every authenticated user may ask about itself and discover.
        assert!(p.allows(
            &bob,
            &Attributes::resource(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                ""
            )
        ));
        assert!(p.allows(&bob, &Attributes::non_resource("get", "/apis/apps/v1")));
        assert!(!p.allows(&bob, &Attributes::non_resource("get", "/metrics")));
    }

    #[test]
    fn service_account_subjects_default_to_the_binding_namespace() {
        let objs = [
            role(
                "ClusterRole",
                "",
                "r",
                json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]),
            ),
            binding(
                "RoleBinding",
                "dev",
                "b",
                "ClusterRole",
                "r",
                json!([{"kind": "ServiceAccount", "name": "bot"}]),
            ),
            binding(
                "ClusterRoleBinding",
                "",
                "c",
                "ClusterRole",
                "r",
                json!([{"kind": "ServiceAccount", "name": "bot"}]),
            ),
        ];
        let p = Policy::from_objects(objs.iter());
        let sa = User::new("system:serviceaccount:dev:bot", "3", &[]);
        assert!(p.allows(&sa, &cm("get", "dev", "x")));
        assert!(
            !p.allows(&sa, &cm("get", "other", "x")),
            "the namespaceless CRB subject matches nobody"
        );
        let other = User::new("system:serviceaccount:other:bot", "4", &[]);
        assert!(!p.allows(&other, &cm("get", "dev", "x")));
    }

    #[test]
    fn escalation_is_checked_piece_by_piece() {
        let owner = vec![
            PolicyRule::resource(&["get", "list"], &[""], &["configmaps", "secrets"]),
            PolicyRule::resource(&["update"], &["apps"], &["*/status"]),
            PolicyRule::urls(&["get"], &["/logs/*"]),
        ];
        assert!(covers(
            &owner,
            &[PolicyRule::resource(&["get"], &[""], &["configmaps"])]
        ));
        assert!(covers(
            &owner,
            &[PolicyRule::resource(
                &["get", "list"],
                &[""],
                &["secrets", "configmaps"]
            )]
        ));
        let mut named = PolicyRule::resource(&["get"], &[""], &["secrets"]);
        named.resource_names = vec!["a".into(), "b".into()];
        assert!(covers(&owner, &[named]));
        assert!(covers(
            &owner,
            &[PolicyRule::resource(
                &["update"],
                &["apps"],
                &["deployments/status"]
            )]
        ));
        assert!(covers(&owner, &[PolicyRule::urls(&["get"], &["/logs/x"])]));
        assert!(!covers(
            &owner,
            &[PolicyRule::resource(&["delete"], &[""], &["configmaps"])]
        ));
        assert!(
            !covers(
                &owner,
                &[PolicyRule::resource(&["*"], &[""], &["configmaps"])]
            ),
            "* needs *"
        );
        assert!(!covers(
            &owner,
            &[PolicyRule::resource(&["get"], &["*"], &["configmaps"])]
        ));
        assert!(!covers(
            &owner,
            &[PolicyRule::resource(&["get"], &[""], &["*"])]
        ));
        assert!(!covers(
            &owner,
            &[PolicyRule::resource(
                &["update"],
                &["apps"],
                &["deployments"]
            )]
        ));
        assert!(!covers(&owner, &[PolicyRule::urls(&["get"], &["/logs"])]));
        let mut owner_named = PolicyRule::resource(&["get"], &[""], &["secrets"]);
        owner_named.resource_names = vec!["a".into()];
        assert!(!covers(
            &[owner_named.clone()],
            &[PolicyRule::resource(&["get"], &[""], &["secrets"])]
        ));
        let got = uncovered(
            &owner,
            &[PolicyRule::resource(
                &["get", "delete"],
                &[""],
                &["configmaps"],
            )],
        );
        assert_eq!(
            got,
            vec![PolicyRule::resource(&["delete"], &[""], &["configmaps"])]
        );
        assert!(covers(&admin_rules(), &owner));
        assert!(covers(&admin_rules(), &admin_rules()));
        assert!(!covers(&owner, &admin_rules()));
        assert!(covers(&owner, &[]));
    }

    #[test]
    fn forbidden_messages_have_kubernetes_shape() {
        let a = alice();
        assert_eq!(
            forbidden_reason(&a, &cm("list", "default", ""), "root:a"),
            "User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\" in workspace \"root:a\""
        );
        assert_eq!(
            forbidden_reason(&a, &Attributes::resource("get", "apps", "deployments", "", "").with_subresource("status"), "root"),
            "User \"alice\" cannot get resource \"deployments/status\" in API group \"apps\" at the cluster scope in workspace \"root\""
        );
    }
}
