//! Object requests: create, get, list, update, patch, delete,
//! deletecollection and watch, with kube-apiserver's semantics, over the
//! [`Shard`] interface. One file per concern: [`params`] (the query,
//! parsed once per request into the options of its verb), [`reads`] (get,
//! list), [`writes`] (create, update, patch, server-side apply, status),
//! [`delete`] (delete, deletecollection), [`watch_stream`] (one client's
//! watch, fed by the hub of [`super::watch`]) and [`workspace`] (a
//! workspace's existence, what a new one starts with, the bootstrap of
//! `root`). This file holds what they share.
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
//! deletes it. Deleting a namespace or a workspace marks it
//! (`deletionTimestamp`, phase Terminating: no new content) and returns;
//! the lifecycle controller ([`crate::controllers::lifecycle`], on the
//! shard's leader, always running) deletes its contents and then the
//! namespace or workspace itself. Objects with finalizers keep a
//! terminating namespace until the finalizers are removed.
//!
//! Garbage collection: a DELETE's `propagationPolicy` (Background by
//! default, Foreground, Orphan) is applied by [`crate::owners::deletion`];
//! every write keeps the dependants index and the collector's work items
//! in its own transaction ([`crate::owners`]); the collector
//! ([`crate::controllers::gc`]) does the rest on the leader.
//!
//! Left out: graceful deletion periods (deletion is immediate once
//! finalizers are gone), schema validation of built-in kinds (stored
//! schemaless; `fieldValidation` is accepted and has no effect). The
//! `scale` subresource is [`scale`]. (Reads answer as their `Accept`
//! header asks, Tables included: [`crate::api::table`], applied by the
//! server around [`ObjectApi::get`], [`ObjectApi::list`] and
//! [`ObjectApi::watch`].)

pub mod delete;
pub mod params;
pub mod reads;
pub mod scale;
pub mod transfer;
pub mod watch_stream;
pub mod workspace;
pub mod writes;

pub use params::{
    DeleteOptions, GetOptions, ListOptions, Query, ResourceVersion, WatchOptions, WriteOptions,
};
pub use watch_stream::WatchStream;
pub use workspace::{Access, CLUSTER_ADMIN, WORKSPACE_ADMIN};

use super::request::{ResourceRequest, WorkspaceSel};
use super::resources::{self, ResourceInfo};
use super::schema::GroupKind;
use super::status::{ApiError, ApiResult};
use super::watch::WatchHub;
use crate::object::meta_str;
use crate::shard::{Shard, ShardError};
use crate::store::{Key, ObjectKey, Prefix, Record, Workspace};
use serde_json::{json, Value};
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
    /// This shard among the others: where new workspaces go.
    pub directory: Arc<crate::shards::Directory>,
}

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
    async fn read_point(&self, rv: &ResourceVersion) -> ApiResult<u64> {
        match rv {
            ResourceVersion::Any => Ok(self.shard.revision()),
            ResourceVersion::Latest => self.shard.barrier().await.map_err(storage_error),
            ResourceVersion::At(_) | ResourceVersion::Invalid(_) => {
                let want = rv.revision()?.unwrap_or(0);
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

    /// The key range a list or watch reads: one namespace, one workspace,
    /// or every workspace (`*`).
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
}
