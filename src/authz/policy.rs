//! RBAC decisions over a workspace's RBAC objects read through the shard:
//! what the API edge and the placement controller (deciding whether a
//! placement's author may use a location) both ask.
//!
//! Only the asked workspace is read: its ClusterRoles and
//! ClusterRoleBindings, and the Roles and RoleBindings of the asked
//! namespace, four exact key ranges of the replica's local state. A
//! denial from local state is decided again after a linearizable barrier,
//! so a grant acknowledged anywhere before the question is never missed.

use super::rbac::{self, Attributes, Policy, RBAC_GROUP};
use super::User;
use crate::shard::{Shard, ShardError};
use crate::store::{GroupResource, ListOptions, Prefix, Workspace};
use serde_json::Value;

fn list_all(shard: &dyn Shard, prefix: &Prefix, out: &mut Vec<Value>) -> Result<(), ShardError> {
    let page = shard.list(prefix, &ListOptions::default())?;
    for rec in page.items {
        if let Ok(v) = serde_json::from_slice::<Value>(&rec.value) {
            out.push(v);
        }
    }
    Ok(())
}

fn gr(plural: &str) -> GroupResource {
    GroupResource::new(RBAC_GROUP, plural).expect("valid")
}

/// The policy of `ws` as seen from `namespace` (`""`: cluster scope),
/// from this replica's local state.
pub fn load_policy(
    shard: &dyn Shard,
    ws: &Workspace,
    namespace: &str,
) -> Result<Policy, ShardError> {
    let mut objs = Vec::new();
    list_all(
        shard,
        &Prefix::workspace(&gr("clusterroles"), ws),
        &mut objs,
    )?;
    list_all(
        shard,
        &Prefix::workspace(&gr("clusterrolebindings"), ws),
        &mut objs,
    )?;
    if !namespace.is_empty() {
        for plural in ["roles", "rolebindings"] {
            // A namespace that cannot exist holds nothing.
            if let Ok(p) = Prefix::namespace(&gr(plural), ws, namespace) {
                list_all(shard, &p, &mut objs)?;
            }
        }
    }
    Ok(Policy::from_objects(objs.iter()))
}

/// Is `user` allowed `a` in `ws`? Local state first; a denial is checked
/// again at a linearizable read point.
pub async fn allowed(
    shard: &dyn Shard,
    user: &User,
    ws: &Workspace,
    a: &Attributes,
) -> Result<bool, ShardError> {
    if user.is_master() {
        return Ok(true);
    }
    if user.in_group(super::SHARDS_GROUP) && super::shard_allowed(user, a) {
        return Ok(true);
    }
    if rbac::authorize(&load_policy(shard, ws, &a.namespace)?, user, a) {
        return Ok(true);
    }
    shard.barrier().await?;
    Ok(rbac::authorize(
        &load_policy(shard, ws, &a.namespace)?,
        user,
        a,
    ))
}
