//! Workspaces as the object API sees them: whether one exists (and may
//! take new content), what a new one starts with (its `default`
//! namespace, `cluster-admin`, and `workspace-admin` binding its creator),
//! written in the transaction that creates its Workspace object, and the
//! bootstrap of `root`. Deleting a workspace is the lifecycle
//! controller's ([`crate::controllers::lifecycle`]).

use super::{deleting, namespace_key, parse_value, storage_error, Caller, ObjectApi};
use crate::api::resources::{self, TENANCY_GROUP};
use crate::api::status::{ApiError, ApiResult};
use crate::shard::ShardError;
use crate::store::{Expectation, Key, ObjectKey, Txn, TxnOp, Workspace};
use serde_json::{json, Value};

/// What a request does in a workspace, for [`ObjectApi::ensure_workspace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (and discovery).
    Read,
    /// Updates, patches and deletes.
    Write,
    /// Creates: new content.
    Create,
}

impl ObjectApi {
    /// Checks that this shard holds workspace `ws` (its LogicalCluster
    /// marker; `root` is on the root shard). `for_write` also refuses a
    /// terminating one. A workspace this shard does not hold answers 421
    /// (`WorkspaceNotOnShard`, the front proxy's cue to resolve again)
    /// when its Workspace object says it is elsewhere or its parent is
    /// not here either; one whose parent is here and has no such child,
    /// 404.
    ///
    /// A workspace being moved to or from this shard
    /// ([`crate::shards::MOVE_ANNOTATION`] on its LogicalCluster) takes
    /// no writes: 503 with `Retry-After` (client-go retries on it), as
    /// kcp's migration holds a workspace. A watch, exact list or continued
    /// list from a resourceVersion older than the last change of the LogicalCluster
    /// here (`from_revision`: the workspace was created, moved in or held
    /// since) gets 410 Gone: that resourceVersion is another shard's, or
    /// of before the workspace was here, and the client lists again.
    pub async fn ensure_workspace(
        &self,
        ws: &Workspace,
        access: Access,
        from_revision: Option<u64>,
    ) -> ApiResult<()> {
        if ws.parent().is_none() {
            return if self.directory.is_root() {
                Ok(())
            } else {
                Err(not_on_shard(ws, self.directory.name()))
            };
        }
        let key = Key::from(ObjectKey::logical_cluster(ws));
        let mut rec = self.shard.get(&key).map_err(storage_error)?;
        if rec.is_none() {
            // Perhaps just created through another replica.
            self.shard.barrier().await.map_err(storage_error)?;
            rec = self.shard.get(&key).map_err(storage_error)?;
        }
        let Some(rec) = rec else {
            return Err(self.not_here(ws)?);
        };
        if let Some(from) = from_revision.filter(|r| *r > 0 && *r < rec.mod_revision) {
            return Err(ApiError::expired(format!(
                "too old resource version: {from} ({}): workspace {} came to this shard, or \
                 changed shards, since; list it again",
                rec.mod_revision,
                ws.as_str()
            )));
        }
        // Parsed only when it can matter: a create (terminating?) or a
        // write to a LogicalCluster that names a move.
        let held = contains(&rec.value, crate::shards::MOVE_ANNOTATION.as_bytes());
        if access == Access::Read || (access == Access::Write && !held) {
            return Ok(());
        }
        let lc = parse_value(&rec)?;
        if let Some(m) = crate::shards::moving(&lc) {
            return Err(ApiError::unavailable(format!(
                "workspace {} is being moved ({m}): writes are held until it has moved; retry",
                ws.as_str()
            )));
        }
        if access == Access::Create && deleting(&lc) {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in workspace {} because it is being terminated",
                ws.as_str()
            )));
        }
        Ok(())
    }

    /// Why `ws`, whose logical cluster is not here, is not served: 421
    /// when it is known to be elsewhere (or nothing about it is here),
    /// else 404.
    fn not_here(&self, ws: &Workspace) -> ApiResult<ApiError> {
        use crate::shard::LocalView;
        let own = self.directory.name();
        let view = crate::shard::local_view(&*self.shard, ws, self.directory.is_root())
            .map_err(storage_error)?;
        Ok(match view {
            LocalView::Named(s) if !s.is_empty() && s != own => not_on_shard(ws, own),
            // Its Workspace object is here and it is not (a create still on
            // its way, a workspace being deleted), or its parent is here and
            // has no such child.
            LocalView::Named(_) | LocalView::ParentHeld | LocalView::Held => {
                workspace_not_found(ws)
            }
            LocalView::Unknown => not_on_shard(ws, own),
        })
    }

    /// Creates `default` in `root` if missing (new workspaces get theirs
    /// with their Workspace object).
    pub async fn bootstrap(&self) -> Result<(), ShardError> {
        if !self.directory.is_root() {
            return self.bootstrap_identity().await;
        }
        let root = Workspace::parse("root").expect("root is valid");
        let (k, role) = cluster_admin_role(&root).map_err(|e| ShardError::Internal(e.message))?;
        if self.shard.get(&k)?.is_none() {
            let v = serde_json::to_vec(&role).map_err(|e| ShardError::Internal(e.to_string()))?;
            match self
                .shard
                .write(Txn::new(vec![TxnOp::put_json(k, v, Expectation::Absent)]))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        self.ensure_default_namespace(&root).await
    }

    /// Writes `ws`'s `default` namespace unless it exists.
    async fn ensure_default_namespace(&self, ws: &Workspace) -> Result<(), ShardError> {
        let key = namespace_key(ws, "default").map_err(|e| ShardError::Internal(e.message))?;
        if self.shard.get(&key)?.is_some() {
            return Ok(());
        }
        let v = serde_json::to_vec(&default_namespace(ws))
            .map_err(|e| ShardError::Internal(e.to_string()))?;
        match self
            .shard
            .write(Txn::new(vec![TxnOp::put_json(key, v, Expectation::Absent)]))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Where a shard other than the root shard keeps its identity (the uid
/// of the `default` namespace there; the root shard's is root's own
/// `default`): the value of the sync controller's owner label on member
/// clusters. A reserved workspace no request can name.
pub const SHARD_IDENTITY_WORKSPACE: &str = "system:shard";

impl ObjectApi {
    /// Writes this shard's identity once ([`SHARD_IDENTITY_WORKSPACE`]).
    async fn bootstrap_identity(&self) -> Result<(), ShardError> {
        let ws = Workspace::parse_any(SHARD_IDENTITY_WORKSPACE)
            .map_err(|e| ShardError::Internal(e.to_string()))?;
        self.ensure_default_namespace(&ws).await
    }
}

/// 404 for a workspace that does not exist.
fn workspace_not_found(ws: &Workspace) -> ApiError {
    ApiError {
        details: Some(json!({"name": ws.as_str(), "group": TENANCY_GROUP, "kind": "workspaces"})),
        ..ApiError::new(
            404,
            "NotFound",
            format!("workspace {:?} not found", ws.as_str()),
        )
    }
}

/// 421 for a workspace another shard holds.
pub(super) fn not_on_shard(ws: &Workspace, own: &str) -> ApiError {
    ApiError::new(
        421,
        "WorkspaceNotOnShard",
        format!(
            "workspace {:?} is not on shard {own:?}: ask the front proxy, or the shard its \
             Workspace object names",
            ws.as_str()
        ),
    )
}

/// Creating the Workspace `name` in `ws`: records who creates it and
/// where its logical cluster goes (`spec.shard`, `spec.cluster`,
/// `spec.URL` through the caller's `Host`) in `obj`. When that is this
/// shard, returns the writes of what the child workspace starts with, for
/// the transaction that creates `obj` ([`logical_cluster_writes`]);
/// otherwise none, and `obj`'s phase is `Scheduling` until the other
/// shard has created it.
pub(super) fn new_workspace(
    ws: &Workspace,
    name: &str,
    obj: &mut Value,
    caller: &Caller,
    shard: &str,
    own: &str,
) -> ApiResult<Vec<TxnOp>> {
    let child = ws
        .join(name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !matches!(
        obj.get("spec"),
        None | Some(Value::Object(_)) | Some(Value::Null)
    ) {
        return Err(ApiError::invalid(
            "Workspace",
            TENANCY_GROUP,
            name,
            vec![(
                "spec".into(),
                "Invalid value: spec must be an object".into(),
                "FieldValueInvalid",
            )],
        ));
    }
    obj["spec"]["URL"] = Value::String(format!(
        "https://{}/clusters/{}",
        caller.host,
        child.as_str()
    ));
    obj["spec"]["shard"] = Value::String(shard.to_string());
    obj["spec"]["cluster"] = Value::String(child.as_str().to_string());
    let anns = crate::object::meta_mut(obj)
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if !anns.is_object() {
        *anns = json!({});
    }
    if let Some(m) = anns.as_object_mut() {
        m.insert(
            crate::object::CREATOR_ANNOTATION.into(),
            Value::String(caller.user.clone()),
        );
    }
    if shard != own {
        obj["status"] = json!({"phase": "Scheduling"});
        return Ok(Vec::new());
    }
    let mut lc = crate::shards::logical_cluster_object(&child, obj);
    crate::object::stamp_created(crate::object::meta_mut(&mut lc));
    crate::object::set_status_phase(&mut lc, "Ready");
    let lc = serde_json::to_vec(&lc).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut ops = vec![TxnOp::put_json(
        Key::from(ObjectKey::logical_cluster(&child)),
        lc,
        Expectation::Absent,
    )];
    ops.extend(starting_content(&child, &caller.user)?);
    Ok(ops)
}

/// What a logical cluster starts with besides its LogicalCluster object,
/// for the transaction that creates that: its `default` namespace (which
/// must not exist yet) and its admin RBAC (`creator` becomes admin).
pub(super) fn starting_content(child: &Workspace, creator: &str) -> ApiResult<Vec<TxnOp>> {
    let encode = |o: &Value| serde_json::to_vec(o).map_err(|e| ApiError::internal(e.to_string()));
    let mut ops = vec![TxnOp::put_json(
        namespace_key(child, "default")?,
        encode(&default_namespace(child))?,
        Expectation::Absent,
    )];
    for (k, o) in workspace_admin_objects(child, creator)? {
        ops.push(TxnOp::put_json(k, encode(&o)?, Expectation::Any));
    }
    Ok(ops)
}

/// The name of the ClusterRole every workspace starts with: everything.
pub const CLUSTER_ADMIN: &str = "cluster-admin";
/// The name of the ClusterRoleBinding that makes a workspace's creator
/// its admin.
pub const WORKSPACE_ADMIN: &str = "workspace-admin";

fn rbac_key(ws: &Workspace, plural: &str, name: &str) -> ApiResult<Key> {
    let info = resources::lookup(crate::authz::rbac::RBAC_GROUP, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    ObjectApi::object_key(info, ws, None, name).map_err(|e| ApiError::internal(e.to_string()))
}

/// `cluster-admin` in `ws`: every verb on every resource and URL.
fn cluster_admin_role(ws: &Workspace) -> ApiResult<(Key, Value)> {
    let rules: Vec<Value> = crate::authz::rbac::admin_rules()
        .iter()
        .map(|r| r.to_value())
        .collect();
    Ok((
        rbac_key(ws, "clusterroles", CLUSTER_ADMIN)?,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": CLUSTER_ADMIN,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": crate::object::now(),
            },
            "rules": rules,
        }),
    ))
}

/// What a new workspace starts with besides `default`: `cluster-admin`,
/// and `workspace-admin` binding its creator (when there is one) to it.
fn workspace_admin_objects(ws: &Workspace, creator: &str) -> ApiResult<Vec<(Key, Value)>> {
    let mut out = vec![cluster_admin_role(ws)?];
    if !creator.is_empty() {
        out.push((
            rbac_key(ws, "clusterrolebindings", WORKSPACE_ADMIN)?,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {
                    "name": WORKSPACE_ADMIN,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": crate::object::now(),
                },
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": CLUSTER_ADMIN},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": creator}],
            }),
        ));
    }
    Ok(out)
}

/// The `default` namespace every workspace starts with.
fn default_namespace(ws: &Workspace) -> Value {
    let _ = ws;
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "default",
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": crate::object::now(),
        },
        "spec": {},
        "status": {"phase": "Active"},
    })
}

/// True when `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
