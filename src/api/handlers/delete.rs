//! DELETE of one object and of a collection. An object with finalizers,
//! and every namespace and workspace, is marked (`deletionTimestamp`; a
//! namespace or workspace also turns Terminating) instead of removed; the
//! update that removes the last finalizer removes the object, and the
//! lifecycle controller ([`crate::controllers::lifecycle`]) empties and
//! then removes a terminating namespace or workspace. Other objects are
//! deleted with the garbage collector's `propagationPolicy`
//! ([`crate::owners::deletion`], [`crate::controllers::gc`]):
//! Background by default, Foreground and Orphan through their
//! finalizers, the dependants index kept in the same transaction.

use super::params::{DeleteOptions, ListOptions};
use super::{deleting, parse_value, storage_error, ObjectApi, Reply, UPDATE_RETRIES};
use crate::api::object::for_response;
use crate::api::request::{ResourceRequest, WorkspaceSel};
use crate::api::resources::{CORE_KCP_GROUP, TENANCY_GROUP};
use crate::api::status::{ApiError, ApiResult};
use crate::object::{meta_mut, meta_str};
use crate::owners;
use crate::store::{Expectation, Key, ObjectKey, Txn, TxnOp, Workspace};
use serde_json::{json, Value};

/// `obj` marked for deletion (unchanged if it already is): a
/// `deletionTimestamp`, and for a namespace or workspace (`container`) the
/// phase Terminating.
fn marked_for_deletion(obj: &Value, container: bool) -> Value {
    let mut marked = obj.clone();
    if !deleting(&marked) {
        let meta = meta_mut(&mut marked);
        meta.insert(
            "deletionTimestamp".into(),
            Value::String(crate::object::now()),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if container {
            marked["status"]["phase"] = Value::String("Terminating".into());
        }
    }
    marked
}

impl ObjectApi {
    /// Deleting Workspace `name` of `ws` (stored as `wobj`) whose logical
    /// cluster is on this shard: the write that marks its LogicalCluster
    /// too, so that the workspace takes no new content from then on.
    fn mark_logical_cluster(
        &self,
        ws: &Workspace,
        name: &str,
        wobj: &Value,
    ) -> ApiResult<Option<TxnOp>> {
        if crate::controllers::lifecycle::remote_shard(wobj, self.directory.name()).is_some() {
            return Ok(None);
        }
        let child = ws
            .join(name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let key = Key::from(ObjectKey::logical_cluster(&child));
        let Some(rec) = self.shard.get(&key).map_err(storage_error)? else {
            return Ok(None);
        };
        let lc = parse_value(&rec)?;
        let marked = marked_for_deletion(&lc, true);
        let value = serde_json::to_vec(&marked).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Some(TxnOp::put_json(
            key,
            value,
            Expectation::ModRevision(rec.mod_revision),
        )))
    }

    /// DELETE of one object.
    pub async fn delete(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &DeleteOptions,
    ) -> ApiResult<Reply> {
        let info = req.info;
        let name = req.name.clone().unwrap_or_default();
        let key = Self::path_key(req, ws)?;
        let dry = opts.dry_run;
        // NamespaceLifecycle: the system namespaces stay (a workspace's
        // deletion removes them with everything else, not through here).
        if (info.group, info.plural) == ("", "namespaces")
            && ["default", "kube-system", "kube-public"].contains(&name.as_str())
        {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let pre_uid = &opts.preconditions.uid;
        let pre_rv = opts.preconditions.resource_version;
        self.shard.barrier().await.map_err(storage_error)?;
        for _ in 0..UPDATE_RETRIES {
            let Some(rec) = self.shard.get(&key).map_err(storage_error)? else {
                return Err(ApiError::not_found(info.group, info.plural, &name));
            };
            let current = parse_value(&rec)?;
            if let Some(uid) = pre_uid {
                if meta_str(&current, "uid") != Some(uid.as_str()) {
                    return Err(ApiError {
                        details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
                        ..ApiError::new(409, "Conflict", format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta_str(&current, "uid").unwrap_or("")
                        ))
                    });
                }
            }
            if pre_rv.is_some_and(|rv| rv != rec.mod_revision) {
                return Err(ApiError::conflict(info.group, info.plural, &name));
            }
            let expect = Expectation::ModRevision(rec.mod_revision);
            let is_container = matches!(
                (info.group, info.kind),
                ("", "Namespace")
                    | (TENANCY_GROUP, "Workspace")
                    | (CORE_KCP_GROUP, "LogicalCluster")
            );
            if dry {
                return Ok((200, for_response(current, rec.mod_revision, ws.as_str())));
            }
            if is_container {
                // Mark it; it goes once the lifecycle controller has
                // deleted its contents.
                let marked = marked_for_deletion(&current, is_container);
                let mut out_rev = rec.mod_revision;
                if marked != current {
                    let value = serde_json::to_vec(&marked)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    let mut ops = vec![TxnOp::put_json(key.clone(), value, expect)];
                    if (info.group, info.kind) == (TENANCY_GROUP, "Workspace") {
                        ops.extend(self.mark_logical_cluster(ws, &name, &current)?);
                    }
                    match self.shard.write(Txn::new(ops)).await {
                        Ok(c) => out_rev = c.revision,
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(storage_error(e)),
                    }
                }
                return Ok((200, for_response(marked, out_rev, ws.as_str())));
            }
            // Anything else: with the garbage collector's policy (an
            // object with finalizers is marked and goes with them).
            let Key::Object(okey) = &key else {
                return Err(ApiError::internal("an object path names an object key"));
            };
            let d = owners::deletion(okey, &rec, &current, opts.policy()).map_err(storage_error)?;
            // kube-apiserver: 202 when not deleted at once and the client
            // said `orphanDependents: false`.
            let code = if opts.orphan_dependents == Some(false) {
                202
            } else {
                200
            };
            if d.ops.is_empty() {
                let after = d.after.unwrap_or(current);
                return Ok((code, for_response(after, rec.mod_revision, ws.as_str())));
            }
            match self.shard.write(Txn::new(d.ops)).await {
                Ok(c) => {
                    return Ok(match d.after {
                        Some(after) => (code, for_response(after, c.revision, ws.as_str())),
                        None => (200, for_response(current, rec.mod_revision, ws.as_str())),
                    })
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(ApiError::conflict(info.group, info.plural, &name))
    }

    /// DELETE of a collection: every object the selectors match.
    pub async fn delete_collection(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        selection: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Reply> {
        let (_, list) = self
            .list(req, &WorkspaceSel::One(ws.clone()), selection)
            .await?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let mut one = req.clone();
            one.name = meta_str(&item, "name").map(str::to_string);
            one.namespace = meta_str(&item, "namespace")
                .map(str::to_string)
                .or(one.namespace);
            match self.delete(&one, ws, opts).await {
                Ok((_, obj)) => deleted.push(obj),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok((
            200,
            json!({
                "kind": req.info.list_kind(),
                "apiVersion": req.info.api_version(),
                "metadata": {"resourceVersion": self.shard.revision().to_string()},
                "items": deleted,
            }),
        ))
    }
}
