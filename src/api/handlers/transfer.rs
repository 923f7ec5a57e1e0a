//! Moving a workspace between shards: the admin operations of a shard
//! that `tmc workspace export`, `import` and `move` drive
//! (`/tmc/workspaces/{op}?workspace=W`, through the front proxy
//! `/tmc/shards/{name}/workspaces/{op}`; `system:masters` only).
//!
//! - `export` (GET): the workspace's every key (objects, placement
//!   decisions and their index entries, sync records) at one revision, as
//!   stored ([`crate::backup::workspace`] is the file), streamed as the
//!   store lists it.
//! - `hold` / `release`: the [`MOVE_ANNOTATION`] on the workspace's
//!   LogicalCluster: while it is there the API refuses writes to the
//!   workspace (503 with `Retry-After`) and the sync controller leaves its
//!   copies alone; changing the LogicalCluster also moves the revision
//!   lists and watches of the workspace must resume from (older ones get
//!   410). `release&after=R` gives the release a revision past R: past
//!   every resourceVersion the shard the workspace came from handed out
//!   for it (see [`crate::store::TxnOp::Advance`]).
//! - `import` in phases: `begin` (this shard must not hold the workspace;
//!   it must hold every encryption key the export's Secrets need; what a
//!   failed import left is removed), `records` (a batch of records,
//!   written at the target path, each only if absent; Secrets decrypted
//!   with the source's associated data and encrypted again here under
//!   their new key), `commit` (the number of records written must be what
//!   the export holds; then the LogicalCluster is written, last: until
//!   then the workspace is not served here) and `abort` (removes what an
//!   unfinished import wrote, never a workspace that was served).
//! - `switch` (on the shard of the workspace's parent): the Workspace
//!   object names the new shard (`spec.shard`, compare-and-swap), or is
//!   created for a workspace imported at a new path. This is the index
//!   switch: from here on the front proxy resolves to the new shard.
//! - `remove` (on the shard the workspace leaves, which must hold it
//!   with the hold of a move): deletes its LogicalCluster first (the
//!   workspace is no longer served: 421; its watches end with 410) and
//!   returns that revision, then the rest in batches.
//!
//! Left out: moving a workspace that holds ClusterRegistrations (a
//! location: refused), importing a workspace with child workspaces at
//! another path (their Workspace objects would name logical clusters
//! that are not theirs: refused), root and the shard identity workspace.

use super::{parse_value, storage_error, ObjectApi};
use crate::api::status::{ApiError, ApiResult};
use crate::backup::workspace::{self as wsfile, Header, Item};
use crate::shards::{moving, MOVE_ANNOTATION};
use crate::store::{
    EncodingTag, Expectation, Key, ListOptions, ObjectKey, Prefix, Record, Txn, TxnOp, Workspace,
};
use bytes::Bytes;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;

/// The most records one write of an import or a removal carries.
const BATCH: usize = 500;

/// The workspace a request names, if it may be moved at all.
pub fn movable(path: Option<&str>) -> ApiResult<Workspace> {
    let path = path.ok_or_else(|| ApiError::bad_request("?workspace=PATH is required"))?;
    let ws = Workspace::parse(path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if ws.parent().is_none() {
        return Err(ApiError::bad_request(format!(
            "{path} has no parent: root cannot be exported, imported or moved"
        )));
    }
    Ok(ws)
}

fn encoding_tag(e: crate::store::Encoding) -> EncodingTag {
    match e {
        crate::store::Encoding::Raw => EncodingTag::Raw,
        crate::store::Encoding::Json => EncodingTag::Json,
        crate::store::Encoding::Bincode => EncodingTag::Bincode,
    }
}

fn is_marker(key: &Key) -> bool {
    matches!(key, Key::Object(o) if o.gr.key_group() == crate::store::keys::CORE_KCP_GROUP
        && o.gr.resource() == crate::store::keys::LOGICAL_CLUSTERS)
}

fn is_kind(key: &Key, group: &str, resource: &str) -> bool {
    matches!(key, Key::Object(o) if o.gr.key_group() == group && o.gr.resource() == resource)
}

/// A [`Write`] that hands what is written to an HTTP body in pieces.
struct ToBody {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ToBody {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl Write for ToBody {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 256 << 10 {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl ObjectApi {
    /// The LogicalCluster of `ws` here, with its object.
    fn marker(&self, ws: &Workspace) -> ApiResult<Option<(Record, Value)>> {
        let key = Key::from(ObjectKey::logical_cluster(ws));
        match self.shard.get(&key).map_err(storage_error)? {
            None => Ok(None),
            Some(rec) => {
                let v = parse_value(&rec)?;
                Ok(Some((rec, v)))
            }
        }
    }

    /// The LogicalCluster of `ws`, which this shard must hold.
    async fn held_marker(&self, ws: &Workspace) -> ApiResult<(Record, Value)> {
        self.shard.barrier().await.map_err(storage_error)?;
        self.marker(ws)?.ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "shard {:?} does not hold workspace {}",
                    self.directory.name(),
                    ws.as_str()
                ),
            )
        })
    }

    /// Writes the LogicalCluster `lc` of `ws` over `rec` with the move
    /// annotation set to `how` (or removed), and `extra` in the same
    /// transaction. Returns the revision.
    async fn put_marker(
        &self,
        ws: &Workspace,
        rec: &Record,
        mut lc: Value,
        how: Option<&str>,
        extra: Vec<TxnOp>,
    ) -> ApiResult<u64> {
        set_move(&mut lc, how);
        let bytes = serde_json::to_vec(&lc).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut ops = vec![TxnOp::put_json(
            ObjectKey::logical_cluster(ws),
            bytes,
            Expectation::ModRevision(rec.mod_revision),
        )];
        ops.extend(extra);
        let c = self
            .shard
            .write(Txn::new(ops))
            .await
            .map_err(storage_error)?;
        Ok(c.revision)
    }

    /// Streams the export of `ws` (see the module docs).
    pub async fn export_workspace(
        &self,
        ws: &Workspace,
    ) -> ApiResult<tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>> {
        self.held_marker(ws).await?;
        let revision = self.shard.revision();
        let shard = self.shard.clone();
        let mut ranges = shard.workspace_ranges(ws).map_err(storage_error)?;
        // A range whose keys were all deleted since `revision` is not
        // found live: the change log names it.
        let mut after = revision;
        loop {
            let changes =
                crate::shard::read_whole_revisions(&*shard, after).map_err(storage_error)?;
            let Some(last) = changes.last() else { break };
            after = last.revision;
            for c in changes {
                if let Some(k) = Key::decode(&c.key).filter(|k| k.workspace() == ws) {
                    ranges.push(k.workspace_range());
                }
            }
        }
        ranges.sort();
        ranges.dedup();
        let header = Header {
            format: wsfile::FORMAT.into(),
            workspace: ws.as_str().into(),
            shard: self.directory.name().into(),
            revision,
            created_at: crate::object::now(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let fail = tx.clone();
        tokio::task::spawn_blocking(move || {
            let out = ToBody {
                tx,
                buf: Vec::new(),
            };
            if let Err(e) = write_export(&*shard, &ranges, revision, out, &header) {
                tracing::warn!(workspace = header.workspace, error = %e, "export failed");
                let _ = fail.blocking_send(Err(std::io::Error::other(e)));
            }
        });
        Ok(rx)
    }

    /// Sets the hold of a move (`how`: `to=SHARD`) on `ws`.
    pub async fn hold_workspace(&self, ws: &Workspace, how: &str) -> ApiResult<Value> {
        let (rec, lc) = self.held_marker(ws).await?;
        match moving(&lc) {
            Some(m) if m == how => return Ok(json!({"revision": rec.mod_revision})),
            Some(m) => {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "workspace {} is already held for another move ({m})",
                        ws.as_str()
                    ),
                ))
            }
            None => {}
        }
        if super::deleting(&lc) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("workspace {} is being deleted", ws.as_str()),
            ));
        }
        let regs = Prefix::workspace(&crate::controllers::cluster::resource(), ws);
        let page = self
            .shard
            .list(
                &regs,
                &ListOptions {
                    limit: 1,
                    ..Default::default()
                },
            )
            .map_err(storage_error)?;
        if !page.items.is_empty() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "workspace {} holds ClusterRegistrations (a location): moving a location is \
                 not supported",
                    ws.as_str()
                ),
            ));
        }
        let revision = self.put_marker(ws, &rec, lc, Some(how), Vec::new()).await?;
        Ok(json!({ "revision": revision }))
    }

    /// Lifts the hold of `ws`; `after`: a revision the release must come
    /// after.
    pub async fn release_workspace(&self, ws: &Workspace, after: Option<u64>) -> ApiResult<Value> {
        let (rec, lc) = self.held_marker(ws).await?;
        if moving(&lc).is_none() && after.is_none_or(|a| rec.mod_revision > a) {
            return Ok(json!({ "revision": rec.mod_revision }));
        }
        let extra = after
            .map(|a| TxnOp::Advance { at_least: a + 1 })
            .into_iter()
            .collect();
        let revision = self.put_marker(ws, &rec, lc, None, extra).await?;
        Ok(json!({ "revision": revision }))
    }

    /// Removes every key of `ws` here, in batches; the number removed.
    async fn purge(&self, ws: &Workspace) -> ApiResult<u64> {
        let mut removed = 0;
        loop {
            let ranges = self.shard.workspace_ranges(ws).map_err(storage_error)?;
            if ranges.is_empty() {
                return Ok(removed);
            }
            let before = removed;
            for p in ranges {
                let page = self
                    .shard
                    .list(
                        &p,
                        &ListOptions {
                            limit: BATCH,
                            ..Default::default()
                        },
                    )
                    .map_err(storage_error)?;
                let ops: Vec<TxnOp> = page
                    .items
                    .iter()
                    .filter_map(|r| Key::decode(&r.key))
                    .map(|k| TxnOp::delete(k, Expectation::Any))
                    .collect();
                if ops.is_empty() {
                    continue;
                }
                removed += ops.len() as u64;
                self.shard
                    .write(Txn::new(ops))
                    .await
                    .map_err(storage_error)?;
            }
            if removed == before {
                return Err(ApiError::internal(format!(
                    "keys of workspace {} that are not tmc's remain on this shard",
                    ws.as_str()
                )));
            }
        }
    }

    /// The number of keys of `ws` here.
    fn count(&self, ws: &Workspace) -> ApiResult<u64> {
        let mut n = 0;
        for p in self.shard.workspace_ranges(ws).map_err(storage_error)? {
            let mut token = None;
            loop {
                let page = self
                    .shard
                    .list(
                        &p,
                        &ListOptions {
                            limit: 1000,
                            continue_token: token,
                            revision: None,
                        },
                    )
                    .map_err(storage_error)?;
                n += page.items.len() as u64;
                token = page.continue_token;
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// `import?phase=begin`: this shard takes `ws` if it does not hold it
    /// and holds the encryption keys `keys`.
    pub async fn import_begin(&self, ws: &Workspace, keys: &[String]) -> ApiResult<Value> {
        self.shard.barrier().await.map_err(storage_error)?;
        if self.marker(ws)?.is_some() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!(
                    "shard {:?} already holds workspace {}: import at another path, or delete \
                     it first",
                    self.directory.name(),
                    ws.as_str()
                ),
            ));
        }
        let have = self.shard.at_rest_keys();
        if let Some(k) = keys.iter().find(|k| !have.contains(k)) {
            return Err(ApiError::bad_request(format!(
                "the export's Secrets are encrypted with key {k:?}, which shard {:?} does not \
                 hold: add it to the shard's encryption configuration (as an extra key), then \
                 import again",
                self.directory.name()
            )));
        }
        let removed = self.purge(ws).await?;
        Ok(json!({ "shard": self.directory.name(), "removedLeftovers": removed }))
    }

    /// `import?phase=records`: writes a batch of `from`'s records as `ws`'s.
    pub async fn import_records(
        &self,
        ws: &Workspace,
        from: &Workspace,
        body: &[u8],
    ) -> ApiResult<Value> {
        let items = wsfile::decode_batch(body).map_err(ApiError::bad_request)?;
        let mut ops = Vec::with_capacity(items.len());
        let mut skipped = 0u64;
        for item in items {
            if item.key.workspace() != from {
                return Err(ApiError::bad_request(format!(
                    "record {} is not of workspace {}",
                    item.key,
                    from.as_str()
                )));
            }
            if is_marker(&item.key) {
                return Err(ApiError::bad_request(
                    "the LogicalCluster comes with phase=commit, last",
                ));
            }
            if from != ws {
                if matches!(item.key, Key::Sync { .. }) {
                    // Copies of another workspace: the new path gets its own.
                    skipped += 1;
                    continue;
                }
                if is_kind(&item.key, crate::store::keys::TENANCY_GROUP, "workspaces") {
                    return Err(ApiError::bad_request(format!(
                        "workspace {} has child workspaces ({}): it can be imported at its own \
                         path only",
                        from.as_str(),
                        item.key
                    )));
                }
            }
            let original = item.key.encode();
            let value = self
                .shard
                .open_at_rest(&original, item.value)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            ops.push(TxnOp::Put {
                key: item.key.with_workspace(ws),
                encoding: encoding_tag(item.encoding),
                value,
                expect: Expectation::Absent,
            });
        }
        let written = ops.len();
        if !ops.is_empty() {
            self.shard
                .write(Txn::new(ops))
                .await
                .map_err(storage_error)?;
        }
        Ok(json!({ "written": written, "skipped": skipped }))
    }

    /// `import?phase=commit`: checks that `records` keys of `ws` are here,
    /// then writes its LogicalCluster (`body`: the export's, of `from`)
    /// with the hold `hold`; `owner_uid`: the Workspace object's uid at a
    /// new path.
    pub async fn import_commit(
        &self,
        ws: &Workspace,
        from: &Workspace,
        records: u64,
        hold: Option<&str>,
        owner_uid: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let mut items = wsfile::decode_batch(body).map_err(ApiError::bad_request)?;
        let (Some(item), true) = (items.pop(), items.is_empty()) else {
            return Err(ApiError::bad_request(
                "phase=commit takes one record, the LogicalCluster",
            ));
        };
        if !is_marker(&item.key) || item.key.workspace() != from {
            return Err(ApiError::bad_request(format!(
                "phase=commit takes the LogicalCluster of {}, not {}",
                from.as_str(),
                item.key
            )));
        }
        let here = self.count(ws)?;
        if here != records {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                "{here} records of workspace {} are here, the import wrote {records}: abort and \
                 import again",
                ws.as_str()
            ),
            ));
        }
        let mut lc: Value = serde_json::from_slice(&item.value)
            .map_err(|e| ApiError::bad_request(format!("the LogicalCluster: {e}")))?;
        if from != ws {
            lc["spec"]["owner"]["cluster"] = json!(ws.parent().map(|p| p.as_str().to_string()));
            lc["spec"]["owner"]["name"] = json!(ws.base());
            lc["spec"]["owner"]["uid"] = json!(owner_uid.unwrap_or_default());
        }
        set_move(&mut lc, hold);
        let bytes = serde_json::to_vec(&lc).map_err(|e| ApiError::internal(e.to_string()))?;
        let c = self
            .shard
            .write(Txn::new(vec![TxnOp::put_json(
                ObjectKey::logical_cluster(ws),
                bytes,
                Expectation::Absent,
            )]))
            .await
            .map_err(storage_error)?;
        Ok(json!({ "revision": c.revision }))
    }

    /// `import?phase=abort`: removes what an unfinished import of `ws`
    /// wrote (also one committed with a move's hold from another shard).
    pub async fn import_abort(&self, ws: &Workspace) -> ApiResult<Value> {
        self.shard.barrier().await.map_err(storage_error)?;
        if let Some((_, lc)) = self.marker(ws)? {
            if !moving(&lc).is_some_and(|m| m.starts_with("from=")) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "workspace {} is served here: abort removes only an unfinished import",
                        ws.as_str()
                    ),
                ));
            }
            let key = Key::from(ObjectKey::logical_cluster(ws));
            self.shard
                .write(Txn::new(vec![TxnOp::delete(key, Expectation::Any)]))
                .await
                .map_err(storage_error)?;
        }
        let removed = self.purge(ws).await?;
        Ok(json!({ "removed": removed }))
    }

    /// `switch`: the Workspace object of `ws` (its parent is here) names
    /// shard `to` (it must name `from` now, when given); absent, it is
    /// created with uid `uid` (a workspace imported at a new path).
    pub async fn switch_workspace(
        &self,
        ws: &Workspace,
        from: Option<&str>,
        to: &str,
        uid: Option<&str>,
        host: &str,
    ) -> ApiResult<Value> {
        let parent = ws
            .parent()
            .ok_or_else(|| ApiError::bad_request("root has no Workspace object"))?;
        self.shard.barrier().await.map_err(storage_error)?;
        let view = crate::shard::local_view(&*self.shard, &parent, self.directory.is_root())
            .map_err(storage_error)?;
        if view != crate::shard::LocalView::Held {
            return Err(super::workspace::not_on_shard(
                &parent,
                self.directory.name(),
            ));
        }
        let key = ObjectKey::workspace_object(ws)
            .ok_or_else(|| ApiError::bad_request("root has no Workspace object"))?;
        let (obj, expect) = match self
            .shard
            .get(&Key::from(key.clone()))
            .map_err(storage_error)?
        {
            Some(rec) => {
                let mut obj = parse_value(&rec)?;
                let now = obj
                    .pointer("/spec/shard")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if now == to {
                    return Ok(json!({ "revision": rec.mod_revision }));
                }
                if let Some(f) = from.filter(|f| *f != now) {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "the Workspace object of {} names shard {now:?}, not {f:?}",
                            ws.as_str()
                        ),
                    ));
                }
                obj["spec"]["shard"] = json!(to);
                (obj, Expectation::ModRevision(rec.mod_revision))
            }
            None => {
                let uid = uid.ok_or_else(|| {
                    ApiError::new(
                        404,
                        "NotFound",
                        format!("no Workspace object of {} to switch", ws.as_str()),
                    )
                })?;
                let obj = json!({
                    "apiVersion": "tenancy.kcp.io/v1alpha1",
                    "kind": "Workspace",
                    "metadata": {
                        "name": ws.base(),
                        "uid": uid,
                        "creationTimestamp": crate::object::now(),
                    },
                    "spec": {
                        "shard": to,
                        "cluster": ws.as_str(),
                        "URL": format!("https://{host}/clusters/{}", ws.as_str()),
                    },
                    "status": {"phase": "Ready"},
                });
                (obj, Expectation::Absent)
            }
        };
        let bytes = serde_json::to_vec(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
        let c = self
            .shard
            .write(Txn::new(vec![TxnOp::put_json(key, bytes, expect)]))
            .await
            .map_err(storage_error)?;
        Ok(json!({ "revision": c.revision }))
    }

    /// `remove`: `ws` leaves this shard (see the module docs).
    pub async fn remove_workspace(&self, ws: &Workspace) -> ApiResult<Value> {
        self.shard.barrier().await.map_err(storage_error)?;
        let mut revision = self.shard.revision();
        if let Some((rec, lc)) = self.marker(ws)? {
            if !moving(&lc).is_some_and(|m| m.starts_with("to=")) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "workspace {} is not held for a move: hold it first (tmc workspace move)",
                        ws.as_str()
                    ),
                ));
            }
            let key = Key::from(ObjectKey::logical_cluster(ws));
            revision = self
                .shard
                .write(Txn::new(vec![TxnOp::delete(
                    key,
                    Expectation::ModRevision(rec.mod_revision),
                )]))
                .await
                .map_err(storage_error)?
                .revision;
        }
        let removed = self.purge(ws).await?;
        Ok(json!({ "revision": revision, "removed": removed }))
    }
}

/// Sets (or, with `None`, removes) the move annotation of `lc`.
fn set_move(lc: &mut Value, how: Option<&str>) {
    let meta = crate::object::meta_mut(lc);
    let anns = meta.entry("annotations").or_insert_with(|| json!({}));
    if !anns.is_object() {
        *anns = json!({});
    }
    if let Some(m) = anns.as_object_mut() {
        match how {
            Some(h) => {
                m.insert(MOVE_ANNOTATION.into(), json!(h));
            }
            None => {
                m.remove(MOVE_ANNOTATION);
            }
        }
    }
}

/// Writes the export of the keys in `ranges` at `revision` to `out`.
fn write_export(
    shard: &dyn crate::shard::Shard,
    ranges: &[Prefix],
    revision: u64,
    out: ToBody,
    header: &Header,
) -> Result<(), String> {
    let mut w = wsfile::Writer::new(out, header).map_err(|e| e.to_string())?;
    for p in ranges {
        let mut token = None;
        loop {
            let page = shard
                .list_at_rest(
                    p,
                    &ListOptions {
                        limit: 500,
                        continue_token: token,
                        revision: Some(revision),
                    },
                )
                .map_err(|e| e.to_string())?;
            for r in page.items {
                let key = Key::decode(&r.key).ok_or_else(|| {
                    format!(
                        "a stored key that is not tmc's: {}",
                        crate::store::error::printable_key(&r.key)
                    )
                })?;
                w.item(&Item {
                    key,
                    encoding: r.encoding,
                    value: r.value,
                })
                .map_err(|e| e.to_string())?;
            }
            token = page.continue_token;
            if token.is_none() {
                break;
            }
        }
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// Answers one `/tmc/workspaces/{op}` request (the caller has checked
/// that the user is `system:masters` and the shard is this one).
pub async fn serve(
    api: &Arc<ObjectApi>,
    op: &str,
    method: &axum::http::Method,
    q: &super::Query,
    body: Vec<u8>,
    host: &str,
) -> ApiResult<axum::response::Response> {
    use axum::http::{header, Method};
    use axum::response::IntoResponse;
    let ws = movable(q.get("workspace"))?;
    let want = |m: Method| -> ApiResult<()> {
        if *method == m {
            Ok(())
        } else {
            Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{m} /tmc/workspaces/{op} only"),
            ))
        }
    };
    let from = || -> ApiResult<Workspace> {
        match q.get("source") {
            Some(f) => Workspace::parse(f).map_err(|e| ApiError::bad_request(e.to_string())),
            None => Ok(ws.clone()),
        }
    };
    let number = |name: &str| -> ApiResult<Option<u64>> {
        q.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("?{name} must be a number")))
            })
            .transpose()
    };
    let answer = match op {
        "export" => {
            want(Method::GET)?;
            let rx = api.export_workspace(&ws).await?;
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|piece| (piece, rx))
            });
            return Ok((
                [(header::CONTENT_TYPE, "application/gzip")],
                axum::body::Body::from_stream(stream),
            )
                .into_response());
        }
        "hold" => {
            want(Method::POST)?;
            let how = q
                .get("move")
                .filter(|m| m.starts_with("to=") || m.starts_with("from="))
                .ok_or_else(|| ApiError::bad_request("?move=to=SHARD is required"))?;
            api.hold_workspace(&ws, how).await?
        }
        "release" => {
            want(Method::POST)?;
            api.release_workspace(&ws, number("after")?).await?
        }
        "import" => {
            want(Method::POST)?;
            match q.get("phase") {
                Some("begin") => {
                    let keys: Vec<String> = q
                        .get("keys")
                        .unwrap_or("")
                        .split(',')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect();
                    api.import_begin(&ws, &keys).await?
                }
                Some("records") => api.import_records(&ws, &from()?, &body).await?,
                Some("commit") => {
                    let records = number("records")?
                        .ok_or_else(|| ApiError::bad_request("?records=N is required"))?;
                    api.import_commit(
                        &ws,
                        &from()?,
                        records,
                        q.get("move"),
                        q.get("ownerUID"),
                        &body,
                    )
                    .await?
                }
                Some("abort") => api.import_abort(&ws).await?,
                _ => {
                    return Err(ApiError::bad_request(
                        "?phase= must be begin, records, commit or abort",
                    ))
                }
            }
        }
        "switch" => {
            want(Method::POST)?;
            let to = q
                .get("to")
                .ok_or_else(|| ApiError::bad_request("?to=SHARD is required"))?;
            api.switch_workspace(&ws, q.get("from"), to, q.get("uid"), host)
                .await?
        }
        "remove" => {
            want(Method::POST)?;
            api.remove_workspace(&ws).await?
        }
        other => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!(
                    "no workspace operation {other:?} (export, hold, release, import, switch, \
                     remove)"
                ),
            ))
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response())
}
