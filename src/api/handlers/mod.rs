//! Object requests: create, get, list, update, patch, delete,
//! deletecollection and watch, with kube-apiserver's semantics, over the
//! [`Shard`] interface.
//!
//! Reads are linearizable by default (a [`Shard::barrier`] first); a
//! `resourceVersion=0` read is served from this replica's local state.
//! Writes are compare-and-swap transactions: an update reads the object,
//! computes the new one and commits it on the condition that the object
//! is still at the revision read (kube-apiserver's GuaranteedUpdate),
//! retrying a few times when the client gave no resourceVersion of its
//! own.
//!
//! Finalizers: deleting an object with finalizers sets
//! `deletionTimestamp`; the update that removes the last finalizer
//! deletes it. Namespaces and workspaces are deleted with their contents:
//! they turn Terminating (no new content), their objects are deleted, and
//! they go once empty. Objects with finalizers keep a terminating
//! namespace until the finalizers are removed.
//!
//! Left out: `propagationPolicy` (no garbage collector: dependants are
//! not deleted), graceful deletion periods (deletion is immediate once
//! finalizers are gone), schema validation of built-in kinds (stored
//! schemaless; `fieldValidation` is accepted and has no effect), scale
//! subresources, Table output.

use super::apply;
use super::object::{self, for_response, meta_mut, meta_str, strip_for_storage};
use super::patch::{self, PatchType};
use super::request::{ResourceRequest, WorkspaceSel};
use super::resources::{self, ResourceInfo, RESOURCES, TENANCY_GROUP};
use super::schema::GroupKind;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult};
use super::watch::WatchHub;
use crate::shard::{Shard, ShardError};
use crate::store::{
    Expectation, Key, ListOptions, ObjectKey, Prefix, Record, Txn, TxnOp, Workspace,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How many times an update without a client resourceVersion is retried
/// after losing a compare-and-swap race.
const UPDATE_RETRIES: usize = 8;

/// The object API over one shard.
pub struct ObjectApi {
    /// The data.
    pub shard: Arc<dyn Shard>,
    /// Open watches.
    pub hub: Arc<WatchHub>,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
}

/// Query parameters (last value wins, as in Go's `url.Values.Get`).
pub type Params = HashMap<String, String>;

/// A check of an object about to be written (after every other check,
/// before the commit): the stored object (`None` on create) and the new
/// one, which it may amend with server-owned fields. RBAC's escalation
/// prevention is one; see [`super::admission`].
pub type Admit =
    Arc<dyn Fn(&ResourceInfo, Option<&Value>, &mut Value) -> ApiResult<()> + Send + Sync>;

/// Who is asking: for field managers, workspace URLs, the admin of a new
/// workspace, and admission.
#[derive(Default)]
pub struct Caller {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// The `Host` header, for workspace URLs.
    pub host: String,
    /// The authenticated user's name (becomes admin of workspaces it
    /// creates).
    pub user: String,
    /// Checks writes before they commit.
    pub admit: Option<Admit>,
}

impl Caller {
    fn admit(&self, info: &ResourceInfo, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
        match &self.admit {
            Some(a) => a(info, old, new),
            None => Ok(()),
        }
    }
}

/// A response: status code and JSON body.
pub type Reply = (u16, Value);

fn storage_error(e: ShardError) -> ApiError {
    e.into()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("stored {what} is unreadable: {e}"))
}

/// The Workspace object that makes `ws` exist (`None` for `root`).
pub fn workspace_object_key(ws: &Workspace) -> Option<Key> {
    let parent = ws.parent()?;
    let info = resources::lookup(TENANCY_GROUP, "v1alpha1", "workspaces")?;
    ObjectKey::with_rule(
        info.group_resource(),
        parent,
        None,
        ws.base(),
        info.name_rule,
    )
    .ok()
    .map(Key::from)
}

fn namespace_info() -> &'static ResourceInfo {
    resources::lookup("", "v1", "namespaces").expect("namespaces are served")
}

fn namespace_key(ws: &Workspace, ns: &str) -> ApiResult<Key> {
    let info = namespace_info();
    ObjectKey::with_rule(info.group_resource(), ws.clone(), None, ns, info.name_rule)
        .map(Key::from)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_value(rec: &Record) -> ApiResult<Value> {
    serde_json::from_slice(&rec.value).map_err(|e| corrupt("object", e))
}

fn deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// `obj` marked for deletion (unchanged if it already is): a
/// `deletionTimestamp`, and for a namespace or workspace (`container`) the
/// phase Terminating.
fn marked_for_deletion(obj: &Value, container: bool) -> Value {
    let mut marked = obj.clone();
    if !deleting(&marked) {
        let meta = meta_mut(&mut marked);
        meta.insert("deletionTimestamp".into(), Value::String(object::now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if container {
            marked["status"]["phase"] = Value::String("Terminating".into());
        }
    }
    marked
}

/// Parsed `resourceVersion`.
fn parse_rv(s: &str) -> ApiResult<u64> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

fn bool_param(p: &Params, name: &str) -> ApiResult<bool> {
    match p.get(name).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid value for {name}: {v:?} (want true or false)"
        ))),
    }
}

fn dry_run(p: &Params) -> ApiResult<bool> {
    match p.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid dry run value {v:?}: only \"All\" is supported"
        ))),
    }
}

/// A delete's dry run: `dryRun=All` in the query, or in the DeleteOptions
/// body, where client-go (kubectl, the Python client) puts it.
fn delete_dry_run(p: &Params, opts: &Value) -> ApiResult<bool> {
    let mut dry = dry_run(p)?;
    match opts.get("dryRun") {
        None | Some(Value::Null) => {}
        Some(Value::Array(vs)) => {
            for v in vs {
                match v.as_str() {
                    Some("All") => dry = true,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "invalid dry run value {v}: only \"All\" is supported"
                        )))
                    }
                }
            }
        }
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.dryRun must be a list, not {v}"
            )))
        }
    }
    Ok(dry)
}

fn check_field_validation(p: &Params) -> ApiResult<()> {
    match p.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Ignore") | Some("Warn") | Some("Strict") => Ok(()),
        Some(v) => Err(ApiError::bad_request(format!(
            "fieldValidation must be Ignore, Warn or Strict, not {v:?}"
        ))),
    }
}

/// The field manager of a write: `fieldManager`, else the client's
/// User-Agent up to its first `/` (kube-apiserver's default).
fn field_manager(p: &Params, caller: &Caller, required: bool) -> ApiResult<String> {
    if let Some(m) = p.get("fieldManager") {
        if m.is_empty() || m.len() > 128 || m.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_request(
                "fieldManager must be 1 to 128 printable characters",
            ));
        }
        return Ok(m.clone());
    }
    if required {
        return Err(ApiError::bad_request(
            "PATCH with apply requires the fieldManager parameter",
        ));
    }
    let ua = caller.user_agent.split('/').next().unwrap_or("").trim();
    Ok(if ua.is_empty() {
        "unknown".into()
    } else {
        ua.chars().take(128).collect()
    })
}

fn selectors(p: &Params) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = match p.get("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::everything(),
    };
    let fields = match p.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => FieldSelector::parse("").map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    Ok((labels, fields))
}

/// The workspace and namespace of a stored object, from its key.
fn workspace_and_namespace_of(rec: &Record) -> Option<(String, Option<String>)> {
    match Key::decode(&rec.key)? {
        Key::Object(k) => Some((k.workspace.as_str().to_string(), k.namespace)),
        _ => None,
    }
}

impl ObjectApi {
    fn gk(info: &ResourceInfo) -> GroupKind {
        GroupKind::new(info.group, info.kind)
    }

    /// Waits for the read point a request asks for: linearizable unless
    /// `resourceVersion=0`; at least revision N for `resourceVersion=N`.
    async fn read_point(&self, rv: Option<&str>) -> ApiResult<u64> {
        match rv {
            Some("0") => Ok(self.shard.revision()),
            None | Some("") => self.shard.barrier().await.map_err(storage_error),
            Some(n) => {
                let want = parse_rv(n)?;
                self.wait_for(want).await
            }
        }
    }

    /// Waits (up to 3 s, as kube-apiserver) until the local revision
    /// reaches `want`.
    async fn wait_for(&self, want: u64) -> ApiResult<u64> {
        if self.shard.revision() >= want {
            return Ok(self.shard.revision());
        }
        let mut sub = self.shard.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            if self.shard.revision() >= want {
                return Ok(self.shard.revision());
            }
            if tokio::time::timeout_at(deadline, sub.changed())
                .await
                .is_err()
            {
                return Err(ApiError {
                    details: Some(json!({"causes": [{"reason": "ResourceVersionTooLarge",
                        "message": "Too large resource version"}], "retryAfterSeconds": 1})),
                    ..ApiError::timeout(format!(
                        "Too large resource version: {want}, current: {}",
                        self.shard.revision()
                    ))
                });
            }
        }
    }

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

    fn object_key(
        info: &ResourceInfo,
        ws: &Workspace,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Key, crate::store::NameError> {
        ObjectKey::with_rule(
            info.group_resource(),
            ws.clone(),
            if info.namespaced { ns } else { None },
            name,
            info.name_rule,
        )
        .map(Key::from)
    }

    /// The key of the object a path names; a name that cannot exist is
    /// NotFound, as in kube-apiserver.
    fn path_key(req: &ResourceRequest, ws: &Workspace) -> ApiResult<Key> {
        let name = req.name.as_deref().unwrap_or("");
        if req.info.namespaced && req.namespace.is_none() {
            return Err(ApiError::path_not_found());
        }
        Self::object_key(req.info, ws, req.namespace.as_deref(), name)
            .map_err(|_| ApiError::not_found(req.info.group, req.info.plural, name))
    }

    // ------------------------------------------------------------------
    // get

    /// GET of one object (or its status).
    pub async fn get(&self, req: &ResourceRequest, ws: &Workspace, p: &Params) -> ApiResult<Reply> {
        self.read_point(p.get("resourceVersion").map(String::as_str))
            .await?;
        let key = Self::path_key(req, ws)?;
        let name = req.name.as_deref().unwrap_or("");
        match self.shard.get(&key).map_err(storage_error)? {
            None => Err(ApiError::not_found(req.info.group, req.info.plural, name)),
            Some(rec) => Ok((
                200,
                for_response(parse_value(&rec)?, rec.mod_revision, ws.as_str()),
            )),
        }
    }

    // ------------------------------------------------------------------
    // list

    fn list_prefix(req: &ResourceRequest, ws: &WorkspaceSel) -> ApiResult<Prefix> {
        let gr = req.info.group_resource();
        Ok(match (ws, &req.namespace) {
            (WorkspaceSel::One(w), Some(ns)) => {
                Prefix::namespace(&gr, w, ns).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            (WorkspaceSel::One(w), None) => Prefix::workspace(&gr, w),
            (WorkspaceSel::All, _) => Prefix::resource(&gr),
        })
    }

    /// LIST with selectors, pagination and resourceVersion semantics.
    pub async fn list(
        &self,
        req: &ResourceRequest,
        ws: &WorkspaceSel,
        p: &Params,
    ) -> ApiResult<Reply> {
        let (labels, fields) = selectors(p)?;
        let limit: usize = match p.get("limit").map(String::as_str) {
            None | Some("") => 0,
            Some(l) => {
                let n: i64 = l
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?;
                n.max(0) as usize
            }
        };
        let token = p.get("continue").filter(|c| !c.is_empty()).cloned();
        let rv = p
            .get("resourceVersion")
            .filter(|s| !s.is_empty())
            .map(String::as_str);
        let rv_match = p
            .get("resourceVersionMatch")
            .filter(|s| !s.is_empty())
            .map(String::as_str);
        if token.is_some() && (rv.is_some_and(|r| r != "0") || rv_match.is_some()) {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let mut at: Option<u64> = None;
        match (rv, rv_match) {
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ))
            }
            (None, None) => match &token {
                None => {
                    self.shard.barrier().await.map_err(storage_error)?;
                }
                // A page of a list another replica began: wait (briefly)
                // until this one has applied its revision.
                Some(t) => {
                    let rv = crate::store::continue_revision(t)
                        .map_err(|e| ApiError::from(ShardError::Store(e)))?;
                    self.wait_for(rv).await?;
                }
            },
            (Some("0"), Some("Exact")) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                ))
            }
            (Some("0"), None | Some("NotOlderThan")) => {}
            (Some(n), Some("Exact")) => {
                let n = parse_rv(n)?;
                self.wait_for(n).await?;
                at = Some(n);
            }
            (Some(n), Some("NotOlderThan")) => {
                self.wait_for(parse_rv(n)?).await?;
            }
            (Some(n), None) => {
                let n = parse_rv(n)?;
                self.wait_for(n).await?;
                // Legacy: with a limit, an exact list at that revision.
                if limit > 0 {
                    at = Some(n);
                }
            }
            (Some(_), Some(m)) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch must be Exact or NotOlderThan, not {m:?}"
                )))
            }
        }
        let prefix = Self::list_prefix(req, ws)?;
        let want_ns = match ws {
            WorkspaceSel::All => req.namespace.clone(),
            WorkspaceSel::One(_) => None,
        };
        let mut items = Vec::new();
        let mut token = token;
        let mut revision;
        let mut next_token;
        loop {
            let page = self
                .shard
                .list(
                    &prefix,
                    &ListOptions {
                        limit: if limit == 0 { 0 } else { limit - items.len() },
                        continue_token: token.clone(),
                        revision: at,
                    },
                )
                .map_err(storage_error)?;
            revision = page.revision;
            for rec in &page.items {
                let Some((wsname, ns)) = workspace_and_namespace_of(rec) else {
                    continue;
                };
                if want_ns.is_some() && ns != want_ns {
                    continue;
                }
                let obj = for_response(parse_value(rec)?, rec.mod_revision, &wsname);
                if labels.matches_object(&obj) && fields.matches(&obj) {
                    items.push(obj);
                }
            }
            next_token = page.continue_token;
            if next_token.is_none() || limit == 0 || items.len() >= limit {
                break;
            }
            token = next_token.clone();
            at = None; // the token carries the revision
        }
        let mut meta = json!({ "resourceVersion": revision.to_string() });
        if let Some(t) = &next_token {
            meta["continue"] = Value::String(t.clone());
        }
        Ok((
            200,
            json!({
                "kind": req.info.list_kind(),
                "apiVersion": req.info.api_version(),
                "metadata": meta,
                "items": items,
            }),
        ))
    }

    // ------------------------------------------------------------------
    // create

    /// POST of a new object.
    pub async fn create(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        p: &Params,
        caller: &Caller,
        body: Value,
    ) -> ApiResult<Reply> {
        check_field_validation(p)?;
        let dry = dry_run(p)?;
        let manager = field_manager(p, caller, false)?;
        let info = req.info;
        object::check_kind(info, &body)?;
        let mut obj = body;
        self.prepare_create(req, ws, &mut obj)?;
        let now = object::now();
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
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert("creationTimestamp".into(), Value::String(object::now()));
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
        if let Some(wkey) = workspace_object_key(ws) {
            ops.push(TxnOp::Check {
                key: wkey,
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
                    super::status::qualified(info.group, info.plural)
                )));
            }
            ops.push(TxnOp::Check {
                key: k.clone(),
                expect: Expectation::ModRevision(rec.mod_revision),
            });
            ns_key = Some(k);
        }
        caller.admit(info, None, &mut obj)?;
        let mut child_default_ns = None;
        let mut child_rbac = Vec::new();
        if (info.group, info.kind) == (TENANCY_GROUP, "Workspace") {
            let child = ws
                .join(&name)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            obj["spec"]["URL"] = Value::String(format!(
                "https://{}/clusters/{}",
                caller.host,
                child.as_str()
            ));
            let ns = default_namespace(&child);
            child_default_ns = Some((namespace_key(&child, "default")?, ns));
            child_rbac = workspace_admin_objects(&child, &caller.user)?;
        }
        super::validation::validate(info, &obj)?;
        let value = object::encode_for_storage(&obj)?;
        if dry {
            return Ok((201, for_response(obj, 0, ws.as_str())));
        }
        ops.push(TxnOp::put_json(key.clone(), value, Expectation::Absent));
        if let Some((k, ns)) = child_default_ns {
            let v = serde_json::to_vec(&ns).map_err(|e| ApiError::internal(e.to_string()))?;
            ops.push(TxnOp::put_json(k, v, Expectation::Absent));
        }
        for (k, o) in child_rbac {
            let v = serde_json::to_vec(&o).map_err(|e| ApiError::internal(e.to_string()))?;
            ops.push(TxnOp::put_json(k, v, Expectation::Any));
        }
        match self.shard.write(Txn::new(ops)).await {
            Ok(c) => Ok((201, for_response(obj, c.revision, ws.as_str()))),
            Err(ShardError::Store(crate::store::Error::Conflict { key: k, .. })) => {
                if Some(k.as_str()) == ns_key.as_ref().map(|n| n.to_string()).as_deref() {
                    Err(ApiError::conflict(
                        "",
                        "namespaces",
                        req.namespace.as_deref().unwrap_or(""),
                    ))
                } else if k == key.to_string() {
                    Err(ApiError::already_exists(info.group, info.plural, &name))
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

    // ------------------------------------------------------------------
    // update and patch

    /// PUT of an object or its status.
    pub async fn update(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        p: &Params,
        caller: &Caller,
        body: Value,
    ) -> ApiResult<Reply> {
        check_field_validation(p)?;
        let dry = dry_run(p)?;
        let manager = field_manager(p, caller, false)?;
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
            let now = object::now();
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
        p: &Params,
        caller: &Caller,
        content_type: &str,
        body: &[u8],
    ) -> ApiResult<Reply> {
        check_field_validation(p)?;
        let dry = dry_run(p)?;
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
        let info = req.info;
        let gk = Self::gk(info);
        if ty == PatchType::Apply {
            let manager = field_manager(p, caller, true)?;
            let force = bool_param(p, "force")?;
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
                        &object::now(),
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
                        &object::now(),
                    )
                    .map_err(apply_error)?;
                    self.prepare_create(req, ws, &mut obj)?;
                    self.commit_create(req, ws, obj, dry, caller).await
                }
                other => other,
            };
        }
        let manager = field_manager(p, caller, false)?;
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
                &object::now(),
            ))
        })
        .await
    }

    /// Read, compute, compare-and-swap; retried on a lost race unless the
    /// client pinned a resourceVersion. `compute` gets the stored object
    /// and its revision and returns the desired object; server-owned
    /// metadata and the spec/status split are enforced here.
    async fn guaranteed_update(
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
            super::validation::validate(info, &new)?;
            // A stale record (stored under an old encryption key) is
            // rewritten even when nothing changed: that is how
            // `tmc encryption rewrite` re-encrypts.
            if new == current && !rec.stale {
                return Ok((200, for_response(current, rec.mod_revision, ws.as_str())));
            }
            caller.admit(info, Some(&current), &mut new)?;
            let remove = deleting(&new) && object::finalizers(&new).is_empty();
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
            let txn = match value {
                None => Txn::new(vec![TxnOp::delete(key.clone(), expect)]),
                Some(value) => Txn::new(vec![TxnOp::put_json(key.clone(), value, expect)]),
            };
            match self.shard.write(txn).await {
                Ok(c) => {
                    if remove {
                        self.after_delete(req, ws).await;
                    }
                    return Ok((200, for_response(new, c.revision, ws.as_str())));
                }
                Err(ShardError::Store(crate::store::Error::Conflict { .. }))
                    if client_rv.is_none() =>
                {
                    continue
                }
                Err(ShardError::Store(crate::store::Error::Conflict { .. })) => {
                    return Err(ApiError::conflict(info.group, info.plural, &name))
                }
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(ApiError::conflict(info.group, info.plural, &name))
    }

    // ------------------------------------------------------------------
    // delete

    /// DELETE of one object.
    pub async fn delete(
        &self,
        req: &ResourceRequest,
        ws: &Workspace,
        p: &Params,
        body: Option<Value>,
    ) -> ApiResult<Reply> {
        let info = req.info;
        let name = req.name.clone().unwrap_or_default();
        let key = Self::path_key(req, ws)?;
        let opts = body.unwrap_or(Value::Null);
        if !opts.is_null() && !opts.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        }
        let dry = delete_dry_run(p, &opts)?;
        // NamespaceLifecycle: the system namespaces stay (a workspace's
        // deletion removes them with everything else, not through here).
        if (info.group, info.plural) == ("", "namespaces")
            && ["default", "kube-system", "kube-public"].contains(&name.as_str())
        {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let pre_uid = opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let pre_rv = match opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(s) => Some(parse_rv(s)?),
            None => None,
        };
        if let Some(pol) = opts.get("propagationPolicy").and_then(Value::as_str) {
            if !["Orphan", "Background", "Foreground"].contains(&pol) {
                return Err(ApiError::bad_request(format!(
                    "unknown propagationPolicy {pol:?}"
                )));
            }
        }
        self.shard.barrier().await.map_err(storage_error)?;
        for _ in 0..UPDATE_RETRIES {
            let Some(rec) = self.shard.get(&key).map_err(storage_error)? else {
                return Err(ApiError::not_found(info.group, info.plural, &name));
            };
            let current = parse_value(&rec)?;
            if let Some(uid) = &pre_uid {
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
                ("", "Namespace") | (TENANCY_GROUP, "Workspace")
            );
            if dry {
                return Ok((200, for_response(current, rec.mod_revision, ws.as_str())));
            }
            if is_container || !object::finalizers(&current).is_empty() {
                // Mark it; it goes when its finalizers (or contents) do.
                let marked = marked_for_deletion(&current, is_container);
                let mut out_rev = rec.mod_revision;
                if marked != current {
                    let value = serde_json::to_vec(&marked)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    match self
                        .shard
                        .write(Txn::new(vec![TxnOp::put_json(key.clone(), value, expect)]))
                        .await
                    {
                        Ok(c) => out_rev = c.revision,
                        Err(ShardError::Store(crate::store::Error::Conflict { .. })) => continue,
                        Err(e) => return Err(storage_error(e)),
                    }
                }
                if is_container {
                    match self.terminate(info, ws, &name).await? {
                        Some(gone) => return Ok((200, for_response(gone, out_rev, ws.as_str()))),
                        None => {
                            let rec = self.shard.get(&key).map_err(storage_error)?;
                            return Ok(match rec {
                                Some(r) => (
                                    200,
                                    for_response(parse_value(&r)?, r.mod_revision, ws.as_str()),
                                ),
                                None => (200, for_response(marked, out_rev, ws.as_str())),
                            });
                        }
                    }
                }
                return Ok((200, for_response(marked, out_rev, ws.as_str())));
            }
            match self
                .shard
                .write(Txn::new(vec![TxnOp::delete(key.clone(), expect)]))
                .await
            {
                Ok(_) => {
                    self.after_delete(req, ws).await;
                    return Ok((200, for_response(current, rec.mod_revision, ws.as_str())));
                }
                Err(ShardError::Store(crate::store::Error::Conflict { .. })) => continue,
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
        p: &Params,
        opts: Option<Value>,
    ) -> ApiResult<Reply> {
        let (_, list) = self.list(req, &WorkspaceSel::One(ws.clone()), p).await?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let mut one = req.clone();
            one.name = meta_str(&item, "name").map(str::to_string);
            one.namespace = meta_str(&item, "namespace")
                .map(str::to_string)
                .or(one.namespace);
            match self.delete(&one, ws, p, opts.clone()).await {
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

    /// After a namespaced object is removed: if its namespace is
    /// terminating and now empty, the namespace goes too.
    async fn after_delete(&self, req: &ResourceRequest, ws: &Workspace) {
        if let Some(ns) = &req.namespace {
            if let Err(e) = self.terminate(namespace_info(), ws, ns).await {
                tracing::debug!(error = %e, "finishing a terminating namespace failed");
            }
        }
    }

    /// Drives a terminating namespace or workspace: deletes its contents
    /// (marking objects with finalizers), and deletes it once empty.
    /// Returns the container's last state if it is gone now.
    async fn terminate(
        &self,
        info: &ResourceInfo,
        ws: &Workspace,
        name: &str,
    ) -> ApiResult<Option<Value>> {
        let key = Self::object_key(info, ws, None, name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let Some(rec) = self.shard.get(&key).map_err(storage_error)? else {
            return Ok(None);
        };
        let container = parse_value(&rec)?;
        if !deleting(&container) {
            return Ok(None);
        }
        let is_ws = info.kind == "Workspace";
        let (scope_ws, scope_ns) = if is_ws {
            (
                ws.join(name)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                None,
            )
        } else {
            (ws.clone(), Some(name.to_string()))
        };
        let mut remaining = 0usize;
        for r in RESOURCES {
            if scope_ns.is_some() && !r.namespaced {
                continue;
            }
            let gr = r.group_resource();
            let prefix = match &scope_ns {
                Some(ns) => Prefix::namespace(&gr, &scope_ws, ns)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                None => Prefix::workspace(&gr, &scope_ws),
            };
            loop {
                let page = self
                    .shard
                    .list(
                        &prefix,
                        &ListOptions {
                            limit: 500,
                            ..Default::default()
                        },
                    )
                    .map_err(storage_error)?;
                let mut ops = Vec::new();
                for item in &page.items {
                    let obj = parse_value(item)?;
                    let expect = Expectation::ModRevision(item.mod_revision);
                    let k = Key::decode(&item.key).ok_or_else(|| corrupt("key", "undecodable"))?;
                    if is_ws && r.kind == "Workspace" {
                        // A nested workspace: empty it first.
                        let child_name = meta_str(&obj, "name").unwrap_or("").to_string();
                        if !deleting(&obj) {
                            let marked = marked_for_deletion(&obj, true);
                            let v = serde_json::to_vec(&marked)
                                .map_err(|e| ApiError::internal(e.to_string()))?;
                            let _ = self
                                .shard
                                .write(Txn::new(vec![TxnOp::put_json(k.clone(), v, expect)]))
                                .await;
                        }
                        if Box::pin(self.terminate(r, &scope_ws, &child_name))
                            .await?
                            .is_none()
                        {
                            remaining += 1;
                        }
                        continue;
                    }
                    if !is_ws && !object::finalizers(&obj).is_empty() {
                        remaining += 1;
                        if !deleting(&obj) {
                            let marked = marked_for_deletion(&obj, false);
                            let v = serde_json::to_vec(&marked)
                                .map_err(|e| ApiError::internal(e.to_string()))?;
                            ops.push(TxnOp::put_json(k, v, expect));
                        }
                        continue;
                    }
                    ops.push(TxnOp::delete(k, expect));
                }
                if !ops.is_empty() {
                    // A lost race leaves the object for the next pass.
                    if let Err(e) = self.shard.write(Txn::new(ops)).await {
                        if !matches!(e, ShardError::Store(crate::store::Error::Conflict { .. })) {
                            return Err(storage_error(e));
                        }
                        remaining += 1;
                    }
                }
                if page.continue_token.is_none() {
                    break;
                }
                if !is_ws && scope_ns.is_some() {
                    // Objects with finalizers stay; step over them.
                    continue;
                }
            }
        }
        if remaining > 0 {
            return Ok(None);
        }
        let rec = self.shard.get(&key).map_err(storage_error)?;
        let Some(rec) = rec else {
            return Ok(Some(container));
        };
        match self
            .shard
            .write(Txn::new(vec![TxnOp::delete(
                key,
                Expectation::ModRevision(rec.mod_revision),
            )]))
            .await
        {
            Ok(_) => Ok(Some(parse_value(&rec)?)),
            Err(ShardError::Store(crate::store::Error::Conflict { .. })) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
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
                Ok(_) | Err(ShardError::Store(crate::store::Error::Conflict { .. })) => {}
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
            Ok(_) | Err(ShardError::Store(crate::store::Error::Conflict { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }
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
                "creationTimestamp": object::now(),
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
                    "creationTimestamp": object::now(),
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
            "creationTimestamp": object::now(),
        },
        "spec": {},
        "status": {"phase": "Active"},
    })
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
        let old: Vec<String> = object::finalizers(current);
        let added: Vec<String> = object::finalizers(&new)
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

// ----------------------------------------------------------------------
// watch

/// One event of a watch stream.
fn event(kind: &str, object: Value) -> Value {
    json!({ "type": kind, "object": object })
}

/// A watch: the events to send, produced until the stream should end.
pub struct WatchStream {
    /// Events, already encoded as lines of JSON.
    pub rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

/// The watch timeout when the client gives none, or 0 (kube-apiserver
/// picks 30-60 minutes).
const WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// The longest watch: a larger `timeoutSeconds` is clamped to it (the
/// client re-watches, as after any timeout).
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The watch's duration from `timeoutSeconds`: any integer is safe
/// (clamped to [`MAX_WATCH_TIMEOUT`]); 0 or none is the default; a
/// negative or non-numeric value is refused.
fn watch_timeout(p: &Params) -> ApiResult<Duration> {
    match p.get("timeoutSeconds").map(String::as_str) {
        None | Some("") => Ok(WATCH_TIMEOUT),
        Some(t) => {
            let n: u64 = t.trim().parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid timeoutSeconds {t:?}: a non-negative number of seconds"
                ))
            })?;
            Ok(match n {
                0 => WATCH_TIMEOUT,
                n => Duration::from_secs(n).min(MAX_WATCH_TIMEOUT),
            })
        }
    }
}

/// A stream of one ERROR event (kube-apiserver's answer to a watch that
/// fails after its parameters were accepted).
fn error_stream(e: ApiError) -> WatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let _ = tx.try_send(line(event("ERROR", e.to_status())));
    WatchStream { rx }
}

/// What the watch loop does after handling one change.
enum Step {
    Go,
    /// The client went away, or an ERROR event ended the stream.
    Stop,
}

impl ObjectApi {
    /// Starts a watch; events flow on the returned stream until the
    /// timeout, an error event, or the client going away.
    ///
    /// resourceVersion semantics, as kube-apiserver's watch cache: none is
    /// "from now" (after a linearizable read point), `0` is "from any
    /// state" (this replica's), `N` is "every change after N". N in this
    /// replica's future is accepted without waiting and changes up to N
    /// are not sent (they are the ones the client saw where it got N), as
    /// the cacher does; with `sendInitialEvents=true` the state must be at
    /// least N: the watch waits up to 3 s for it, then ends with an ERROR
    /// event, 504 Timeout with cause ResourceVersionTooLarge.
    pub async fn watch(
        self: &Arc<Self>,
        req: &ResourceRequest,
        ws: &WorkspaceSel,
        p: &Params,
    ) -> ApiResult<WatchStream> {
        let (labels, fields) = selectors(p)?;
        let bookmarks = bool_param(p, "allowWatchBookmarks")?;
        let initial = match p.get("sendInitialEvents").map(String::as_str) {
            None | Some("") => None,
            Some(_) => Some(bool_param(p, "sendInitialEvents")?),
        };
        let timeout = watch_timeout(p)?;
        let rv = p.get("resourceVersion").filter(|s| !s.is_empty()).cloned();
        if initial == Some(true)
            && p.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan")
        {
            return Err(ApiError::bad_request(
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan",
            ));
        }
        let prefix = Self::list_prefix(req, ws)?;
        let want_ns = match ws {
            WorkspaceSel::All => req.namespace.clone(),
            WorkspaceSel::One(_) => None,
        };
        // Where the stream starts, and whether it starts with the state.
        let (start, send_state) = match (rv.as_deref(), initial) {
            (None, _) => (
                self.shard.barrier().await.map_err(storage_error)?,
                initial != Some(false),
            ),
            (Some("0"), _) => (self.shard.revision(), initial != Some(false)),
            (Some(n), Some(true)) => match self.wait_for(parse_rv(n)?).await {
                Ok(at) => (at, true),
                Err(e) => return Ok(error_stream(e)),
            },
            (Some(n), _) => (parse_rv(n)?, false),
        };
        let sub = self.hub.subscribe(prefix.clone());
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
        let api = self.clone();
        let info = req.info;
        // Selectors see the stored object (labels, name, namespace are
        // as stored); only matching objects are copied for the client.
        let matches = move |obj: &Value, ns: &Option<String>| -> bool {
            (want_ns.is_none() || *ns == want_ns)
                && labels.matches_object(obj)
                && fields.matches(obj)
        };
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::spawn(async move {
            let run = api.run_watch(
                WatchRun {
                    info,
                    prefix,
                    start,
                    send_state,
                    initial,
                    bookmarks,
                    tx,
                },
                sub,
                &matches,
            );
            // The deadline ends the stream wherever it is waiting (a
            // client that does not read blocks sends too).
            let _ = tokio::time::timeout_at(deadline, run).await;
        });
        Ok(WatchStream { rx })
    }

    /// The body of one watch: the state if asked for, the changes from the
    /// log up to the hub's position, then the hub's changes and bookmarks
    /// (see [`super::watch`] for why bookmarks never pass a change).
    async fn run_watch(
        &self,
        w: WatchRun,
        mut sub: super::watch::Subscription,
        matches: &(impl Fn(&Value, &Option<String>) -> bool + Sync),
    ) {
        let tx = &w.tx;
        // The watch's position: changes up to the start are not sent.
        let mut pos = Position::at(w.start);
        // 1. The state, when asked for.
        if w.send_state {
            let mut token = None;
            loop {
                let page = match self.shard.list(
                    &w.prefix,
                    &ListOptions {
                        limit: 500,
                        continue_token: token.clone(),
                        revision: Some(w.start),
                    },
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx
                            .send(line(event("ERROR", ApiError::from(e).to_status())))
                            .await;
                        return;
                    }
                };
                for rec in &page.items {
                    if let Some((ws, ns)) = workspace_and_namespace_of(rec) {
                        let Ok(obj) = serde_json::from_slice::<Value>(&rec.value) else {
                            continue;
                        };
                        if matches(&obj, &ns) {
                            let obj = for_response(obj, rec.mod_revision, &ws);
                            if tx.send(line(event("ADDED", obj))).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                token = page.continue_token;
                if token.is_none() {
                    break;
                }
            }
            if w.initial == Some(true) {
                let b = bookmark(w.info, w.start, true);
                if tx.send(line(event("BOOKMARK", b))).await.is_err() {
                    return;
                }
            }
        }
        let mut tick = tokio::time::interval(self.bookmark_interval);
        tick.tick().await;
        loop {
            // 2. Changes up to the hub's position, from the log.
            if pos.done < sub.from {
                let mut after = pos.done;
                while after < sub.from {
                    let chs = match super::watch::read_whole_revisions(self.shard.as_ref(), after) {
                        Ok(chs) if chs.is_empty() => break,
                        Ok(chs) => chs,
                        Err(e) => {
                            let _ = tx
                                .send(line(event("ERROR", ApiError::from(e).to_status())))
                                .await;
                            return;
                        }
                    };
                    // Sent as read, so a long replay does not pile up.
                    for c in chs {
                        after = c.revision;
                        if c.revision > sub.from || !w.prefix.contains(&c.key) {
                            continue;
                        }
                        if let Some(d) = super::watch::Decoded::new(c) {
                            if let Step::Stop = send_change(tx, &d, &mut pos, matches).await {
                                return;
                            }
                        }
                    }
                }
                pos.complete(sub.from);
            } else if self.shard.compacted_revision() > pos.done {
                let e = ApiError::expired(format!(
                    "too old resource version: {} ({})",
                    pos.done,
                    self.shard.compacted_revision()
                ));
                let _ = tx.send(line(event("ERROR", e.to_status()))).await;
                return;
            }
            // 3. Live changes from the hub, with bookmarks.
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    c = sub.rx.recv() => {
                        let Some(c) = c else { break };
                        if let Step::Stop = send_change(tx, &c, &mut pos, matches).await {
                            return;
                        }
                    }
                    _ = tick.tick(), if w.bookmarks => {
                        // A bookmark never passes a change not yet sent;
                        // a watch the hub dropped gets none.
                        let Some((through, queued)) = sub.progress() else { continue };
                        for c in queued {
                            if let Step::Stop = send_change(tx, &c, &mut pos, matches).await {
                                return;
                            }
                        }
                        pos.complete(through);
                        let b = bookmark(w.info, pos.done, false);
                        if tx.send(line(event("BOOKMARK", b))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The hub stopped feeding this watch, and its channel is
            // drained: it handed over whole revisions, so the last one sent
            // is complete.
            pos.complete(pos.sent);
            match sub.ended() {
                Some(super::watch::Ended::Expired { oldest, .. })
                    if oldest <= pos.done && self.shard.compacted_revision() <= pos.done =>
                {
                    // The hub fell out of the change log, but this watch
                    // is still inside it: subscribe again and replay.
                    sub = self.hub.subscribe(w.prefix.clone());
                    continue;
                }
                Some(super::watch::Ended::Expired { oldest, .. }) => {
                    let e = ApiError::expired(format!(
                        "too old resource version: {} ({})",
                        pos.done,
                        oldest.max(self.shard.compacted_revision())
                    ));
                    let _ = tx.send(line(event("ERROR", e.to_status()))).await;
                    return;
                }
                Some(super::watch::Ended::Failed(msg)) => {
                    let e = ApiError::internal(msg);
                    let _ = tx.send(line(event("ERROR", e.to_status()))).await;
                    return;
                }
                // Too slow (or the hub stopped): the stream ends; the
                // client re-watches from the last resourceVersion it saw.
                Some(super::watch::Ended::TooSlow) | None => return,
            }
        }
    }
}

/// What [`ObjectApi::run_watch`] needs besides the subscription.
struct WatchRun {
    info: &'static ResourceInfo,
    prefix: Prefix,
    start: u64,
    send_state: bool,
    initial: Option<bool>,
    bookmarks: bool,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// One event as a line of JSON.
fn line(v: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Where a watch is: every change under its prefix up to `done` was sent
/// (or did not match); changes of `sent`, the latest revision sent, may
/// still follow (one revision's changes come one by one, always whole).
struct Position {
    done: u64,
    sent: u64,
}

impl Position {
    fn at(rev: u64) -> Position {
        Position {
            done: rev,
            sent: rev,
        }
    }

    /// Every change up to `rev` was handled.
    fn complete(&mut self, rev: u64) {
        self.done = self.done.max(rev);
        self.sent = self.sent.max(self.done);
    }
}

/// Sends the event of one change after the position (if it matches) and
/// moves the position; a change that cannot be read ends the stream with
/// an ERROR event naming why.
async fn send_change(
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
    d: &super::watch::Decoded,
    pos: &mut Position,
    matches: &impl Fn(&Value, &Option<String>) -> bool,
) -> Step {
    let rev = d.change.revision;
    if rev <= pos.done {
        return Step::Go;
    }
    // Changes arrive in revision order: the revisions before this one are
    // complete.
    pos.complete(rev - 1);
    if let Some(why) = &d.error {
        let e = ApiError::internal(why.clone());
        let _ = tx.send(line(event("ERROR", e.to_status()))).await;
        return Step::Stop;
    }
    if let Some(ev) = change_event(d, matches) {
        if tx.send(line(ev)).await.is_err() {
            return Step::Stop;
        }
    }
    pos.sent = rev;
    Step::Go
}

fn bookmark(info: &ResourceInfo, revision: u64, initial_end: bool) -> Value {
    let mut meta = json!({ "resourceVersion": revision.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": meta })
}

/// The event a change makes for a watch with `filter`: a change that
/// makes an object match is ADDED, one that makes it stop matching is
/// DELETED, as with kube-apiserver's watch cache.
fn change_event(
    d: &super::watch::Decoded,
    matches: &impl Fn(&Value, &Option<String>) -> bool,
) -> Option<Value> {
    let rev = d.change.revision;
    let old = d.old.as_ref().filter(|o| matches(o, &d.namespace));
    match &d.new {
        Some(new) => {
            let out = || for_response(new.clone(), rev, &d.workspace);
            match (old.is_some(), matches(new, &d.namespace)) {
                (true, true) => Some(event("MODIFIED", out())),
                (false, true) => Some(event("ADDED", out())),
                // Stopped matching: deleted from this watch's view.
                (true, false) => Some(event("DELETED", out())),
                (false, false) => None,
            }
        }
        None => old.map(|o| event("DELETED", for_response(o.clone(), rev, &d.workspace))),
    }
}
