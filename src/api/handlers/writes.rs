//! Writes: create (POST), update (PUT), patch (the four patch types,
//! server-side apply among them) of an object or its status. An update is
//! kube-apiserver's GuaranteedUpdate: read, compute, compare-and-swap on
//! the revision read, retried on a lost race unless the client pinned a
//! resourceVersion. The server owns some metadata and, without the status
//! subresource, the status (`merge_server_fields`).

use super::params::{parse_rv, WriteOptions};
use super::{
    deleting, namespace_key, parse_value, storage_error, workspace, Caller, ObjectApi, Reply,
    UPDATE_RETRIES,
};
use crate::api::apply;
use crate::api::object::{self, for_response, strip_for_storage};
use crate::api::patch::{self, PatchType};
use crate::api::request::ResourceRequest;
use crate::api::resources::{ResourceInfo, CORE_KCP_GROUP, TENANCY_GROUP};
use crate::api::status::{ApiError, ApiResult};
use crate::object::{finalizers, meta_mut, meta_str};
use crate::shard::ShardError;
use crate::store::{Expectation, Key, ObjectKey, Txn, TxnOp, Workspace};
use serde_json::{json, Map, Value};

/// A new workspace counted on a shard by the scheduler: taken back
/// unless the create went through (whatever made it fail, and where).
struct Scheduled<'a> {
    directory: &'a crate::shards::Directory,
    shard: String,
    created: bool,
}

impl Drop for Scheduled<'_> {
    fn drop(&mut self) {
        if !self.created {
            self.directory.unschedule(&self.shard);
        }
    }
}

impl ObjectApi {
    /// POST of a new object.
    pub async fn create(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &WriteOptions,
        caller: &Caller,
        body: Value,
    ) -> ApiResult<Reply> {
        let dry = opts.dry_run;
        let manager = opts.manager(caller, false)?;
        let info = req.info;
        object::check_kind(info, &body)?;
        let mut obj = body;
        self.prepare_create(req, ws, &mut obj)?;
        let now = crate::object::now();
        obj = apply::track_update(&Self::gk(info), None, &obj, &manager, &now);
        self.commit_create(req, ws, obj, dry, caller).await
    }

    /// Validates names and namespace and sets the server-owned metadata.
    fn prepare_create(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let info = req.info;
        strip_for_storage(obj);
        let meta = meta_mut(obj);
        if info.namespaced {
            let Some(path_ns) = &req.namespace else {
                return Err(ApiError::method_not_allowed(
                    "create needs a namespace in the path for a namespaced resource",
                ));
            };
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    meta.insert("namespace".into(), Value::String(path_ns.clone()));
                }
                Some(ns) if ns == path_ns => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace \
                         sent on the request",
                    ))
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = if name.is_empty() {
            let gen = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if gen.is_empty() {
                return Err(ApiError::invalid(
                    info.kind,
                    info.group,
                    "",
                    vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                        "FieldValueRequired",
                    )],
                ));
            }
            let n = format!("{gen}{}", object::generate_suffix());
            meta.insert("name".into(), Value::String(n.clone()));
            n
        } else {
            name
        };
        if let Err(e) = Self::object_key(info, ws, req.namespace.as_deref(), &name) {
            return Err(ApiError::invalid(
                info.kind,
                info.group,
                &name,
                vec![(
                    "metadata.name".into(),
                    format!("Invalid value: {name:?}: {}", e.rule),
                    "FieldValueInvalid",
                )],
            ));
        }
        crate::object::stamp_created(meta);
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if info.status {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        if info.status {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
            match (info.group, info.kind) {
                ("", "Namespace") => obj["status"] = json!({"phase": "Active"}),
                (TENANCY_GROUP, "Workspace") => obj["status"] = json!({"phase": "Ready"}),
                _ => {}
            }
        }
        Ok(())
    }

    /// Commits a prepared new object with the checks that make it valid:
    /// the workspace exists, the namespace exists and is not terminating.
    async fn commit_create(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        mut obj: Value,
        dry: bool,
        caller: &Caller,
    ) -> ApiResult<Reply> {
        let info = req.info;
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let key = Self::object_key(info, ws, req.namespace.as_deref(), &name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut ops = Vec::new();
        let is_lc = (info.group, info.kind) == (CORE_KCP_GROUP, "LogicalCluster");
        if ws.parent().is_some() && !is_lc {
            ops.push(TxnOp::Check {
                key: Key::from(ObjectKey::logical_cluster(ws)),
                expect: Expectation::Present,
            });
        }
        let mut ns_key = None;
        if info.namespaced {
            let ns = req.namespace.as_deref().unwrap_or("");
            let k = namespace_key(ws, ns)?;
            let rec = self.shard.get(&k).map_err(storage_error)?;
            let rec = match rec {
                Some(r) => r,
                None => {
                    self.shard.barrier().await.map_err(storage_error)?;
                    self.shard
                        .get(&k)
                        .map_err(storage_error)?
                        .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?
                }
            };
            if deleting(&parse_value(&rec)?) {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} \
                     because it is being terminated",
                    crate::api::status::qualified(info.group, info.plural)
                )));
            }
            ops.push(TxnOp::Check {
                key: k.clone(),
                expect: Expectation::ModRevision(rec.mod_revision),
            });
            ns_key = Some(k);
        }
        caller.admit(info, None, &mut obj)?;
        let mut child_ops = Vec::new();
        // Where a new Workspace's logical cluster goes.
        let mut elsewhere = None;
        let mut scheduled = None;
        if (info.group, info.kind) == (TENANCY_GROUP, "Workspace") {
            let own = self.directory.name();
            let to = if dry {
                own.to_string()
            } else {
                let to = self.schedule(&obj).await?;
                scheduled = Some(Scheduled {
                    directory: &self.directory,
                    shard: to.clone(),
                    created: false,
                });
                to
            };
            child_ops = workspace::new_workspace(ws, &name, &mut obj, caller, &to, own)?;
            if to != own {
                elsewhere = Some(to);
            }
        }
        if is_lc {
            if name != crate::store::keys::LOGICAL_CLUSTER_NAME || ws.parent().is_none() {
                return Err(ApiError::invalid(
                    info.kind,
                    info.group,
                    &name,
                    vec![(
                        "metadata.name".into(),
                        "Invalid value: a workspace's LogicalCluster is named \"cluster\"".into(),
                        "FieldValueInvalid",
                    )],
                ));
            }
            obj["status"] = json!({"phase": "Ready"});
            let creator = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(crate::object::CREATOR_ANNOTATION))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            child_ops = workspace::starting_content(ws, &creator)?;
        }
        crate::api::validation::validate(info, &obj)?;
        let value = object::encode_for_storage(&obj)?;
        if dry {
            return Ok((201, for_response(obj, 0, ws.as_str())));
        }
        ops.push(TxnOp::put_json(key.clone(), value, Expectation::Absent));
        if let Key::Object(okey) = &key {
            ops.extend(crate::owners::index_ops(okey, None, Some(&obj)));
        }
        ops.extend(child_ops);
        let result = self
            .commit_new(req, ws, &name, &key, ns_key.as_ref(), ops, obj, elsewhere)
            .await;
        if result.is_ok() {
            if let Some(s) = scheduled.as_mut() {
                s.created = true;
            }
        }
        result
    }

    /// The write of [`ObjectApi::commit_create`], and for a Workspace
    /// going to another shard its second half.
    #[allow(clippy::too_many_arguments)]
    async fn commit_new(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        name: &str,
        key: &Key,
        ns_key: Option<&Key>,
        ops: Vec<TxnOp>,
        obj: Value,
        elsewhere: Option<String>,
    ) -> ApiResult<Reply> {
        let info = req.info;
        match self.shard.write(Txn::new(ops)).await {
            Ok(c) => match elsewhere {
                None => Ok((201, for_response(obj, c.revision, ws.as_str()))),
                Some(to) => {
                    self.create_elsewhere(ws, name, key, obj, c.revision, &to)
                        .await
                }
            },
            Err(ShardError::Store(crate::store::Error::Conflict { key: k, .. })) => {
                if Some(k.as_str()) == ns_key.as_ref().map(|n| n.to_string()).as_deref() {
                    Err(ApiError::conflict(
                        "",
                        "namespaces",
                        req.namespace.as_deref().unwrap_or(""),
                    ))
                } else if k == key.to_string() {
                    Err(ApiError::already_exists(info.group, info.plural, name))
                } else {
                    Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("workspace {:?} not found", ws.as_str()),
                    ))
                }
            }
            Err(e) => Err(storage_error(e)),
        }
    }

    /// The shard a new Workspace `obj` goes to (its
    /// `spec.location.selector` over the shards' labels).
    async fn schedule(&self, obj: &Value) -> ApiResult<String> {
        let selector = obj
            .pointer("/spec/location/selector")
            .filter(|v| !v.is_null());
        self.directory
            .schedule(selector)
            .await
            .map_err(|e| match e {
                crate::shards::ScheduleError::Unavailable(_) => {
                    ApiError::unavailable(e.to_string())
                }
                _ => ApiError::invalid(
                    "Workspace",
                    TENANCY_GROUP,
                    meta_str(obj, "name").unwrap_or(""),
                    vec![(
                        "spec.location.selector".into(),
                        format!("Invalid value: {e}"),
                        "FieldValueInvalid",
                    )],
                ),
            })
    }

    /// The second half of creating a Workspace whose logical cluster goes
    /// to shard `to`: its object is stored (`Scheduling`, revision `rev`);
    /// the logical cluster is created there, then the Workspace turns
    /// Ready. If `to` cannot take it, the Workspace object is removed
    /// again and the create fails with 503 (nothing is left half made; a
    /// crash in between leaves it `Scheduling`, which the lifecycle
    /// controller finishes).
    async fn create_elsewhere(
        &self,
        ws: &Workspace,
        name: &str,
        key: &Key,
        mut obj: Value,
        rev: u64,
        to: &str,
    ) -> ApiResult<Reply> {
        let child = ws
            .join(name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let lc = crate::shards::logical_cluster_object(&child, &obj);
        if let Err(why) = self.directory.create_logical_cluster(to, &child, &lc).await {
            let undo = TxnOp::delete(key.clone(), Expectation::ModRevision(rev));
            if let Err(e) = self.shard.write(Txn::new(vec![undo])).await {
                tracing::warn!(workspace = child.as_str(), error = %e,
                    "cannot remove the Workspace of a failed create; the lifecycle controller retries it");
            }
            return Err(ApiError::unavailable(format!(
                "workspace {:?} cannot be created on shard {to:?}: {why}",
                child.as_str()
            )));
        }
        obj["status"] = json!({"phase": "Ready"});
        let value = object::encode_for_storage(&obj)?;
        let ready = TxnOp::put_json(key.clone(), value, Expectation::ModRevision(rev));
        match self.shard.write(Txn::new(vec![ready])).await {
            Ok(c) => Ok((201, for_response(obj, c.revision, ws.as_str()))),
            // Changed meanwhile (a delete, say): what is stored is the truth.
            Err(e) if e.is_conflict() => match self.shard.get(key).map_err(storage_error)? {
                Some(rec) => Ok((
                    201,
                    for_response(parse_value(&rec)?, rec.mod_revision, ws.as_str()),
                )),
                None => Err(ApiError::conflict(TENANCY_GROUP, "workspaces", name)),
            },
            Err(e) => Err(storage_error(e)),
        }
    }

    /// PUT of an object or its status.
    pub async fn update(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &WriteOptions,
        caller: &Caller,
        body: Value,
    ) -> ApiResult<Reply> {
        let dry = opts.dry_run;
        let manager = opts.manager(caller, false)?;
        let info = req.info;
        object::check_kind(info, &body)?;
        let name = req.name.clone().unwrap_or_default();
        match meta_str(&body, "name") {
            Some(n) if n == name => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            None => {
                return Err(ApiError::bad_request(
                    "metadata.name is required in the body",
                ));
            }
        }
        if let (true, Some(ns), Some(path_ns)) = (
            info.namespaced,
            meta_str(&body, "namespace"),
            &req.namespace,
        ) {
            if ns != path_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent \
                     on the request",
                ));
            }
        }
        let client_rv = match meta_str(&body, "resourceVersion") {
            Some(s) if !s.is_empty() => Some(parse_rv(s)?),
            _ => None,
        };
        let gk = Self::gk(info);
        self.guaranteed_update(req, ws, client_rv, dry, caller, |current, _rv| {
            let now = crate::object::now();
            Ok(apply::track_update(
                &gk,
                Some(current),
                &body,
                &manager,
                &now,
            ))
        })
        .await
    }

    /// PATCH of an object or its status, of any of the four patch types.
    pub async fn patch(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        opts: &WriteOptions,
        caller: &Caller,
        content_type: &str,
        body: &[u8],
    ) -> ApiResult<Reply> {
        let dry = opts.dry_run;
        let ty = patch_type(content_type, body)?;
        let info = req.info;
        let gk = Self::gk(info);
        if ty == PatchType::Apply {
            let manager = opts.manager(caller, true)?;
            let force = opts.force()?;
            let applied = object::decode_body(Some("application/apply-patch+yaml"), body)?;
            object::check_kind(info, &applied)?;
            let name = req.name.clone().unwrap_or_default();
            match meta_str(&applied, "name") {
                Some(n) if n == name => {}
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the applied object must be {name:?}, the name on the URL"
                    )))
                }
            }
            let ws_name = ws.as_str().to_string();
            let result = self
                .guaranteed_update(req, ws, None, dry, caller, |current, rv| {
                    let live = for_response(current.clone(), rv, &ws_name);
                    apply::server_side_apply(
                        &gk,
                        Some(&live),
                        &applied,
                        &manager,
                        force,
                        &crate::object::now(),
                    )
                    .map_err(apply_error)
                })
                .await;
            return match result {
                Err(e)
                    if e.code == 404
                        && e.reason == "NotFound"
                        && e.details.as_ref().is_some_and(|d| d["kind"] == info.plural) =>
                {
                    // Apply creates.
                    let mut obj = apply::server_side_apply(
                        &gk,
                        None,
                        &applied,
                        &manager,
                        force,
                        &crate::object::now(),
                    )
                    .map_err(apply_error)?;
                    self.prepare_create(req, ws, &mut obj)?;
                    self.commit_create(req, ws, obj, dry, caller).await
                }
                other => other,
            };
        }
        let manager = opts.manager(caller, false)?;
        let ws_name = ws.as_str().to_string();
        self.guaranteed_update(req, ws, None, dry, caller, |current, rv| {
            let live = for_response(current.clone(), rv, &ws_name);
            let patched = patch::apply_patch(&gk, &live, ty, body).map_err(|e| ApiError {
                code: e.code(),
                reason: e.reason(),
                message: e.to_string(),
                details: None,
            })?;
            // A resourceVersion in the patch is a precondition.
            if let Some(s) = meta_str(&patched, "resourceVersion") {
                if s != rv.to_string() {
                    return Err(ApiError::conflict(
                        info.group,
                        info.plural,
                        req.name.as_deref().unwrap_or(""),
                    ));
                }
            }
            Ok(apply::track_update(
                &gk,
                Some(current),
                &patched,
                &manager,
                &crate::object::now(),
            ))
        })
        .await
    }

    /// Read, compute, compare-and-swap; retried on a lost race unless the
    /// client pinned a resourceVersion. `compute` gets the stored object
    /// and its revision and returns the desired object; server-owned
    /// metadata and the spec/status split are enforced here.
    pub(super) async fn guaranteed_update(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        client_rv: Option<u64>,
        dry: bool,
        caller: &Caller,
        compute: impl Fn(&Value, u64) -> ApiResult<Value>,
    ) -> ApiResult<Reply> {
        let info = req.info;
        let name = req.name.clone().unwrap_or_default();
        let key = Self::path_key(req, ws)?;
        for attempt in 0..UPDATE_RETRIES {
            if attempt > 0 {
                self.shard.barrier().await.map_err(storage_error)?;
            }
            let Some(rec) = self.shard.get(&key).map_err(storage_error)? else {
                if attempt == 0 {
                    // Not here yet perhaps: look again at the read point.
                    self.shard.barrier().await.map_err(storage_error)?;
                    if self.shard.get(&key).map_err(storage_error)?.is_some() {
                        continue;
                    }
                }
                return Err(ApiError::not_found(info.group, info.plural, &name));
            };
            if client_rv.is_some_and(|rv| rv != rec.mod_revision) {
                return Err(ApiError::conflict(info.group, info.plural, &name));
            }
            let current = parse_value(&rec)?;
            let desired = compute(&current, rec.mod_revision)?;
            let mut new = merge_server_fields(info, req.status, &current, desired)?;
            crate::api::validation::validate(info, &new)?;
            // A stale record (stored under an old encryption key) is
            // rewritten even when nothing changed: that is how
            // `tmc encryption rewrite` re-encrypts.
            if new == current && !rec.stale {
                return Ok((200, for_response(current, rec.mod_revision, ws.as_str())));
            }
            caller.admit(info, Some(&current), &mut new)?;
            let remove = deleting(&new) && finalizers(&new).is_empty();
            // What is stored is bounded; a stale record rewritten unchanged
            // (re-encryption) is what it was.
            let value = match (remove, new == current) {
                (true, _) => None,
                (false, false) => Some(object::encode_for_storage(&new)?),
                (false, true) => {
                    Some(serde_json::to_vec(&new).map_err(|e| ApiError::internal(e.to_string()))?)
                }
            };
            if dry {
                return Ok((200, for_response(new, rec.mod_revision, ws.as_str())));
            }
            let expect = Expectation::ModRevision(rec.mod_revision);
            // The dependants index and the collector's work items go in
            // the same transaction ([`crate::owners`]).
            let Key::Object(okey) = &key else {
                return Err(ApiError::internal("an object path names an object key"));
            };
            let txn = match value {
                None => {
                    let mut ops = vec![TxnOp::delete(key.clone(), expect)];
                    ops.extend(crate::owners::removal_ops(okey, &current));
                    Txn::new(ops)
                }
                Some(value) => {
                    let mut ops = vec![TxnOp::put_json(key.clone(), value, expect)];
                    ops.extend(crate::owners::index_ops(okey, Some(&current), Some(&new)));
                    Txn::new(ops)
                }
            };
            match self.shard.write(txn).await {
                Ok(c) => {
                    return Ok((200, for_response(new, c.revision, ws.as_str())));
                }
                Err(e) if e.is_conflict() && client_rv.is_none() => continue,
                Err(e) if e.is_conflict() => {
                    return Err(ApiError::conflict(info.group, info.plural, &name))
                }
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(ApiError::conflict(info.group, info.plural, &name))
    }
}

/// The patch type a PATCH's `Content-Type` names, for a body within the
/// size limit: 415 for an unknown type, 413 for a body too large.
pub(super) fn patch_type(content_type: &str, body: &[u8]) -> ApiResult<PatchType> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let ty = PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types \
             include: application/json-patch+json, application/merge-patch+json, \
             application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
        ))
    })?;
    if body.len() > object::MAX_BODY {
        return Err(ApiError::too_large("the patch is larger than 3 MiB"));
    }
    Ok(ty)
}

fn apply_error(e: apply::ApplyError) -> ApiError {
    let mut err = ApiError::new(e.code(), e.reason(), e.to_string());
    if let apply::ApplyError::Conflict { conflicts } = &e {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?}"), "field": f}))
            .collect();
        err.details = Some(json!({ "causes": causes }));
    }
    err
}

/// The object to store for an update: what the client may change, from
/// `desired`; what the server owns, from `current`.
fn merge_server_fields(
    info: &ResourceInfo,
    status_request: bool,
    current: &Value,
    desired: Value,
) -> ApiResult<Value> {
    let mut new = if status_request {
        // The status subresource changes status (and managedFields) only.
        let mut n = current.clone();
        match desired.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(m) = n.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if let Some(mf) = desired.pointer("/metadata/managedFields") {
            meta_mut(&mut n).insert("managedFields".into(), mf.clone());
        }
        n
    } else {
        let mut n = desired;
        if info.status {
            match current.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        n
    };
    strip_for_storage(&mut new);
    let cur_meta = current
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let meta = meta_mut(&mut new);
    for owned in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match cur_meta.get(owned) {
            Some(v) => meta.insert(owned.into(), v.clone()),
            None => meta.remove(owned),
        };
    }
    if meta.get("generateName").is_none() {
        if let Some(g) = cur_meta.get("generateName") {
            meta.insert("generateName".into(), g.clone());
        }
    }
    if deleting(current) {
        let old: Vec<String> = finalizers(current);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !old.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                info.kind,
                info.group,
                meta_str(current, "name").unwrap_or(""),
                vec![("metadata.finalizers".into(), format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"), "FieldValueForbidden")],
            ));
        }
    }
    if info.status && !status_request && object::spec_part(&new) != object::spec_part(current) {
        let g = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    Ok(new)
}
