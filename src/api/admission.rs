//! Admission of writes, after RBAC allowed the request: RBAC's escalation
//! check ([`super::authz::rbac_admission`]) and the location check of
//! WorkloadPlacements.
//!
//! ## Who may use a location
//!
//! A WorkloadPlacement's `spec.locationWorkspace` names the workspace
//! whose ClusterRegistrations it places workloads on. Those clusters
//! belong to that workspace, so using them is a right granted there, in
//! the spirit of kcp's `bind` verb on APIExports: the verb **`use`** on
//! `clusterregistrations.tmc.kcp.io`, at the cluster scope of the
//! location workspace (a ClusterRole rule `{verbs: [use], apiGroups:
//! [tmc.kcp.io], resources: [clusterregistrations]}` bound there with a
//! ClusterRoleBinding; a workspace's admins hold it through `*`). A
//! location equal to the placement's own workspace (or none) needs no
//! extra right.
//!
//! - **The API** checks it on every write that sets or changes a
//!   placement's `spec` (create, update, every patch, apply), with the
//!   location workspace's RBAC as of a linearizable read point (the
//!   server puts a barrier before such writes, [`prepare`]). A location
//!   the writer may not use and one that does not exist give the same
//!   403, so the answer tells nothing of other workspaces.
//! - **The author** of the spec is recorded by the server in the
//!   annotation [`AUTHOR_ANNOTATION`] ([`crate::authz::author`]) (`{"username", "uid", "groups"}`,
//!   the shape of kcp's workspace owner annotation): written on every
//!   write that changes `spec`, kept from the stored object on any other
//!   write (metadata, status), never taken from the client — a value a
//!   client sends is overwritten or restored.
//! - **The controller** checks again, as the recorded author, with the
//!   same RBAC code over the shard ([`crate::authz::allowed`]): on every
//!   reconcile, and when the ClusterRoles or ClusterRoleBindings of a
//!   location change. A revoked grant drops the decision.
//!
//! Left out: per-cluster grants (`resourceNames` on `use`: a named rule
//! never allows the unnamed check), and admission of other kinds.

use super::authz;
use super::handlers::Admit;
use super::resources::{ResourceInfo, CORE_KCP_GROUP, TENANCY_GROUP, TMC_GROUP};
use super::status::{qualified, ApiError, ApiResult};
use crate::authz::author::{author_text, author_value, use_attributes, AUTHOR_ANNOTATION};
use crate::authz::rbac;
use crate::authz::User;
use crate::object::SERVER_OWNED_ANNOTATIONS;
use crate::shard::Shard;
use crate::store::Workspace;
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn is_placement(info: &ResourceInfo) -> bool {
    (info.group, info.kind) == (TMC_GROUP, "WorkloadPlacement")
}

/// The admission of writes by `user` in `ws`: RBAC escalation, then the
/// placement location check and author record.
pub fn admit(shard: Arc<dyn Shard>, user: User, ws: Workspace) -> Admit {
    let rbac = authz::rbac_admission(shard.clone(), user.clone(), ws.clone());
    Arc::new(move |info, old, new| {
        rbac(info, old, new)?;
        let system = user.is_master() || crate::authz::shard_name(&user).is_some();
        if !(system && info.group == CORE_KCP_GROUP) {
            keep_server_owned(old, new);
        }
        workspace_placement_fields(info, old, new);
        own_shard_entry(info, &user, new)?;
        placement(shard.as_ref(), &user, &ws, info, old, new)
    })
}

/// Where a workspace lives (`spec.shard`, `spec.cluster`, `spec.URL`) is
/// the server's choice at creation and never changes: an update keeps
/// the stored values whatever it sends (the proxy resolves through them).
fn workspace_placement_fields(info: &ResourceInfo, old: Option<&Value>, new: &mut Value) {
    if (info.group, info.kind) != (TENANCY_GROUP, "Workspace") {
        return;
    }
    let Some(old) = old else { return };
    for field in ["shard", "cluster", "URL"] {
        let stored = old.get("spec").and_then(|s| s.get(field)).cloned();
        match (stored, new.get_mut("spec").and_then(Value::as_object_mut)) {
            (Some(v), Some(spec)) => {
                spec.insert(field.into(), v);
            }
            (None, Some(spec)) => {
                spec.remove(field);
            }
            (Some(v), None) => {
                if let Some(obj) = new.as_object_mut() {
                    let mut spec = Map::new();
                    spec.insert(field.into(), v);
                    obj.insert("spec".into(), Value::Object(spec));
                }
            }
            (None, None) => {}
        }
    }
}

/// A shard registers itself only: a Shard it creates bears its name.
fn own_shard_entry(info: &ResourceInfo, user: &User, new: &Value) -> ApiResult<()> {
    if (info.group, info.kind) != (CORE_KCP_GROUP, "Shard") || user.is_master() {
        return Ok(());
    }
    let name = new.pointer("/metadata/name").and_then(Value::as_str);
    if crate::authz::shard_name(user).is_some() && crate::authz::shard_name(user) == name {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "user {:?} may register only its own shard, not {:?}",
        user.name,
        name.unwrap_or("")
    )))
}

/// Before a write of `info` with `verb` by `user`: a linearizable read
/// point when admission will read another workspace's RBAC from local
/// state (a grant acknowledged before the request is then seen).
pub async fn prepare(
    shard: &dyn Shard,
    info: &ResourceInfo,
    verb: &str,
    user: &User,
) -> ApiResult<()> {
    if is_placement(info) && !user.is_master() && matches!(verb, "create" | "update" | "patch") {
        shard.barrier().await?;
    }
    Ok(())
}

fn set_author(obj: &mut Value, author: Option<String>) {
    set_annotation(obj, AUTHOR_ANNOTATION, author.map(Value::String));
}

/// Sets annotation `key` of `obj` to `value`, or removes it (and an
/// annotation map it leaves empty).
fn set_annotation(obj: &mut Value, key: &str, value: Option<Value>) {
    let meta = crate::object::meta_mut(obj);
    match value {
        Some(v) => {
            let anns = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if !anns.is_object() {
                *anns = Value::Object(Map::new());
            }
            if let Some(m) = anns.as_object_mut() {
                m.insert(key.into(), v);
            }
        }
        None => {
            let empty = match meta.get_mut("annotations") {
                Some(Value::Object(m)) => {
                    m.remove(key);
                    m.is_empty()
                }
                _ => false,
            };
            if empty {
                meta.remove("annotations");
            }
        }
    }
}

/// Keeps the [`SERVER_OWNED_ANNOTATIONS`] of every written object as
/// stored: what a client sends for them is replaced by the stored value,
/// or removed when there is none (a create).
fn keep_server_owned(old: Option<&Value>, new: &mut Value) {
    for key in SERVER_OWNED_ANNOTATIONS {
        let stored = old
            .and_then(|o| o.get("metadata")?.get("annotations")?.get(key))
            .cloned();
        let sent = new
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key));
        if sent != stored.as_ref() {
            set_annotation(new, key, stored);
        }
    }
}

/// May `user` use the clusters of `location`? From this replica's local
/// state (the caller made it current).
pub fn may_use(shard: &dyn Shard, user: &User, location: &Workspace) -> ApiResult<bool> {
    if user.is_master() {
        return Ok(true);
    }
    let policy = authz::load_policy(shard, location, "")?;
    Ok(rbac::authorize(&policy, user, &use_attributes()))
}

/// Does another shard hold `location`? Admission reads this shard's
/// state only, so a location there is checked by the placement
/// controller instead, on that location's RBAC read from its shard (a
/// placement its author may not use gets no decision and says why).
/// True when the location's Workspace object here names another shard,
/// or nothing of it or its parent is here; false for a workspace this
/// shard holds or whose parent it holds (then it does not exist).
fn held_elsewhere(shard: &dyn Shard, location: &Workspace) -> ApiResult<bool> {
    use crate::shard::LocalView;
    use crate::store::{Key, ObjectKey};
    // The root shard holds root's `default`.
    let root =
        Workspace::parse(crate::shards::ROOT).map_err(|e| ApiError::internal(e.to_string()))?;
    let root_default = ObjectKey::cluster_scoped(
        crate::store::GroupResource::new("", "namespaces")
            .map_err(|e| ApiError::internal(e.to_string()))?,
        root,
        "default",
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let root_held = shard.get(&Key::from(root_default))?.is_some();
    Ok(
        match crate::shard::local_view(shard, location, root_held)? {
            LocalView::Held | LocalView::ParentHeld => false,
            LocalView::Named(s) => !s.is_empty(),
            LocalView::Unknown => true,
        },
    )
}

fn placement(
    shard: &dyn Shard,
    user: &User,
    ws: &Workspace,
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
) -> ApiResult<()> {
    if !is_placement(info) {
        return Ok(());
    }
    let spec_changed = old.is_none_or(|o| o.get("spec") != new.get("spec"));
    let author = if spec_changed {
        Some(author_value(user))
    } else {
        old.and_then(author_text).map(str::to_string)
    };
    set_author(new, author);
    if !spec_changed {
        return Ok(());
    }
    let name = crate::object::meta_str(new, "name")
        .unwrap_or("")
        .to_string();
    let Some(Value::String(location)) = new.pointer("/spec/locationWorkspace") else {
        // None: its own workspace; another type is refused by validation.
        return Ok(());
    };
    let location = match Workspace::parse(location) {
        Ok(l) => l,
        Err(e) => {
            return Err(ApiError::invalid(
                info.kind,
                info.group,
                &name,
                vec![(
                    "spec.locationWorkspace".into(),
                    format!("Invalid value: {location:?}: {e}"),
                    "FieldValueInvalid",
                )],
            ))
        }
    };
    if location == *ws || may_use(shard, user, &location)? || held_elsewhere(shard, &location)? {
        return Ok(());
    }
    let reason = rbac::forbidden_reason(user, &use_attributes(), location.as_str());
    Err(ApiError {
        details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
        ..ApiError::forbidden(format!(
            "{} {name:?} is forbidden: {reason}: spec.locationWorkspace must name a workspace \
             whose ClusterRegistrations the writer may use (or it does not exist)",
            qualified(info.group, info.plural)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::author::author_of;
    use crate::shard::LocalShard;
    use crate::store::{Expectation, GroupResource, MemoryEngine, ObjectKey, Store, StoreOptions};
    use crate::store::{Txn, TxnOp};

    fn wp_info() -> &'static ResourceInfo {
        super::super::resources::RESOURCES
            .iter()
            .find(|r| r.kind == "WorkloadPlacement")
            .unwrap()
    }

    fn at(location: &str) -> Value {
        json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
               "metadata": {"name": "p"}, "spec": {"locationWorkspace": location}})
    }

    #[tokio::test]
    async fn a_foreign_location_needs_use_there_and_absent_ones_answer_alike() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard = LocalShard::new(st);
        let loc = Workspace::parse("root:loc").unwrap();
        let rbac = |plural: &str| GroupResource::new(rbac::RBAC_GROUP, plural).unwrap();
        let put = |plural: &str, name: &str, v: Value| {
            TxnOp::put_json(
                ObjectKey::cluster_scoped(rbac(plural), loc.clone(), name).unwrap(),
                serde_json::to_vec(&v).unwrap(),
                Expectation::Any,
            )
        };
        // The root shard holding root (its `default`), root:loc and
        // root:a (their LogicalClusters).
        let root = Workspace::parse("root").unwrap();
        let mut ops = vec![TxnOp::put_json(
            ObjectKey::cluster_scoped(
                GroupResource::new("", "namespaces").unwrap(),
                root,
                "default",
            )
            .unwrap(),
            serde_json::to_vec(&json!({"kind": "Namespace", "metadata": {"name": "default"}}))
                .unwrap(),
            Expectation::Any,
        )];
        for w in ["root:loc", "root:a"] {
            ops.push(TxnOp::put_json(
                ObjectKey::logical_cluster(&Workspace::parse(w).unwrap()),
                serde_json::to_vec(
                    &json!({"kind": "LogicalCluster", "metadata": {"name": "cluster"}}),
                )
                .unwrap(),
                Expectation::Any,
            ));
        }
        ops.extend([
            put(
                "clusterroles",
                "use",
                json!({"kind": "ClusterRole", "metadata": {"name": "use"}, "rules": [
                {"verbs": ["use"], "apiGroups": ["tmc.kcp.io"], "resources": ["clusterregistrations"]}]}),
            ),
            put(
                "clusterrolebindings",
                "alice",
                json!({"kind": "ClusterRoleBinding", "metadata": {"name": "alice"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use"},
                "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
        ]);
        shard.write(Txn::new(ops)).await.unwrap();
        let ws = Workspace::parse("root:a").unwrap();
        let alice = User::new("alice", "u-a", &[]);
        let bob = User::new("bob", "u-b", &[]);
        let info = wp_info();

        let mut new = at("root:loc");
        placement(&shard, &alice, &ws, info, None, &mut new).unwrap();
        assert_eq!(author_of(&new), Some(alice.clone()));
        let err = |user: &User, location: &str| {
            let mut new = at(location);
            let e = placement(&shard, user, &ws, info, None, &mut new).unwrap_err();
            assert_eq!((e.code, e.reason), (403, "Forbidden"), "{}", e.message);
            e.message
        };
        let forbidden = err(&bob, "root:loc");
        let absent = err(&bob, "root:nope");
        assert_eq!(
            forbidden.replace("root:loc", "W"),
            absent.replace("root:nope", "W"),
            "a forbidden and an absent location answer alike"
        );
        // A location another shard holds (its Workspace object here names
        // that shard; or nothing of it or its parent is here): admission
        // cannot read its RBAC, so the placement controller asks there.
        shard
            .write(Txn::new(vec![TxnOp::put_json(
                ObjectKey::workspace_object(&Workspace::parse("root:far").unwrap()).unwrap(),
                serde_json::to_vec(&json!({"kind": "Workspace", "metadata": {"name": "far"},
                                           "spec": {"shard": "two"}}))
                .unwrap(),
                Expectation::Any,
            )]))
            .await
            .unwrap();
        placement(&shard, &bob, &ws, info, None, &mut at("root:far")).unwrap();
        placement(&shard, &bob, &ws, info, None, &mut at("root:far:deeper")).unwrap();
        // Its own workspace needs nothing; neither does the admin.
        placement(&shard, &bob, &ws, info, None, &mut at("root:a")).unwrap();
        let admin = User::new("admin", "", &["system:masters"]);
        placement(&shard, &admin, &ws, info, None, &mut at("root:nope")).unwrap();
        // A metadata write by bob keeps alice as the author, whatever he sends.
        let stored = new;
        let mut forged = stored.clone();
        forged["metadata"]["labels"] = json!({"x": "y"});
        forged["metadata"]["annotations"][AUTHOR_ANNOTATION] = Value::String(author_value(&admin));
        placement(&shard, &bob, &ws, info, Some(&stored), &mut forged).unwrap();
        assert_eq!(author_of(&forged), Some(alice));
        // A spec write makes bob the author, and needs his right.
        let mut moved = forged.clone();
        moved["spec"]["strategy"] = json!({"type": "All"});
        assert_eq!(
            placement(&shard, &bob, &ws, info, Some(&forged), &mut moved)
                .unwrap_err()
                .code,
            403
        );
    }

    #[test]
    fn the_author_round_trips_and_clients_cannot_set_it() {
        let alice = User::new("alice", "u-a", &["team"]);
        let mut obj = json!({"metadata": {"name": "p", "annotations": {AUTHOR_ANNOTATION:
            author_value(&User::new("admin", "", &["system:masters"]))}}, "spec": {}});
        set_author(&mut obj, Some(author_value(&alice)));
        assert_eq!(author_of(&obj), Some(alice));
        set_author(&mut obj, None);
        assert_eq!(obj["metadata"].get("annotations"), None);
        assert_eq!(
            author_of(&json!({"metadata": {"annotations": {AUTHOR_ANNOTATION: "x"}}})),
            None
        );
    }

    #[test]
    fn clients_cannot_write_the_sync_controllers_annotations() {
        let stored = json!({"metadata": {"name": "web", "annotations": {
            "tmc.kcp.io/clusters": "root:loc/east", "keep": "me"}}});
        // An update that names another cluster and forges a status.
        let mut sent = json!({"metadata": {"name": "web", "annotations": {
            "tmc.kcp.io/clusters": "root:other/west",
            "tmc.kcp.io/cluster-status": "{}", "keep": "you"}}});
        keep_server_owned(Some(&stored), &mut sent);
        assert_eq!(
            sent["metadata"]["annotations"],
            json!({"tmc.kcp.io/clusters": "root:loc/east", "keep": "you"})
        );
        // A create keeps none of them, and no empty map is left.
        let mut created = json!({"metadata": {"name": "web", "annotations": {
            "tmc.kcp.io/clusters": "root:other/west"}}});
        keep_server_owned(None, &mut created);
        assert_eq!(created["metadata"].get("annotations"), None);
        // What the server stored survives a client that drops it.
        let mut dropped = json!({"metadata": {"name": "web"}});
        keep_server_owned(Some(&stored), &mut dropped);
        assert_eq!(
            dropped["metadata"]["annotations"]["tmc.kcp.io/clusters"],
            "root:loc/east"
        );
    }
}
