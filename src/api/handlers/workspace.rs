//! Workspaces as the object API sees them: whether one exists (and may
//! take new content), what a new one starts with (its `default`
//! namespace, `cluster-admin`, and `workspace-admin` binding its creator),
//! written in the transaction that creates its Workspace object, and the
//! bootstrap of `root`. Deleting a workspace is the lifecycle
//! controller's ([`crate::controllers::lifecycle`]).

use super::{
    deleting, namespace_key, parse_value, storage_error, workspace_object_key, Caller, ObjectApi,
};
use crate::api::resources::{self, TENANCY_GROUP};
use crate::api::status::{ApiError, ApiResult};
use crate::shard::ShardError;
use crate::store::{Expectation, Key, Txn, TxnOp, Workspace};
use serde_json::{json, Value};

impl ObjectApi {
    /// Checks that a workspace exists (its Workspace object in the parent;
    /// `root` always does). `for_write` also refuses a terminating one.
    pub async fn ensure_workspace(&self, ws: &Workspace, for_write: bool) -> ApiResult<()> {
        let Some(key) = workspace_object_key(ws) else {
            return Ok(());
        };
        let mut rec = self.shard.get(&key).map_err(storage_error)?;
        if rec.is_none() {
            // Perhaps just created through another replica.
            self.shard.barrier().await.map_err(storage_error)?;
            rec = self.shard.get(&key).map_err(storage_error)?;
        }
        let Some(rec) = rec else {
            return Err(ApiError {
                details: Some(
                    json!({"name": ws.as_str(), "group": TENANCY_GROUP, "kind": "workspaces"}),
                ),
                ..ApiError::new(
                    404,
                    "NotFound",
                    format!("workspace {:?} not found", ws.as_str()),
                )
            });
        };
        if for_write && deleting(&parse_value(&rec)?) {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in workspace {} because it is being terminated",
                ws.as_str()
            )));
        }
        Ok(())
    }

    /// Creates `default` in `root` if missing (new workspaces get theirs
    /// with their Workspace object).
    pub async fn bootstrap(&self) -> Result<(), ShardError> {
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
        let key = namespace_key(&root, "default").map_err(|e| ShardError::Internal(e.message))?;
        if self.shard.get(&key)?.is_some() {
            return Ok(());
        }
        let v = serde_json::to_vec(&default_namespace(&root))
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

/// Creating the Workspace `name` in `ws`: sets its URL (through the
/// caller's `Host`) in `obj` and returns the writes of what the child
/// workspace starts with, for the transaction that creates `obj`: its
/// `default` namespace (which must not exist yet) and its admin RBAC (the
/// caller becomes admin).
pub(super) fn new_workspace(
    ws: &Workspace,
    name: &str,
    obj: &mut Value,
    caller: &Caller,
) -> ApiResult<Vec<TxnOp>> {
    let child = ws
        .join(name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    obj["spec"]["URL"] = Value::String(format!(
        "https://{}/clusters/{}",
        caller.host,
        child.as_str()
    ));
    let encode = |o: &Value| serde_json::to_vec(o).map_err(|e| ApiError::internal(e.to_string()));
    let mut ops = vec![TxnOp::put_json(
        namespace_key(&child, "default")?,
        encode(&default_namespace(&child))?,
        Expectation::Absent,
    )];
    for (k, o) in workspace_admin_objects(&child, &caller.user)? {
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
