//! The lifecycle controller: deletion of namespaces and workspaces, as
//! kube's namespace controller and kcp's logicalclusterdeletion controller
//! do it.
//!
//! A DELETE of a namespace or a workspace (`src/api/handlers/delete.rs`)
//! only marks it: `deletionTimestamp`, phase Terminating (the API then
//! refuses new content in it). This controller, on the shard's leader,
//! finds terminating ones and empties them:
//! - a **namespace**: every namespaced object in it is deleted; an object
//!   with finalizers is marked instead (`deletionTimestamp`) and the
//!   namespace waits until whoever owns the finalizers removes them;
//! - a **workspace**: every object in it is deleted, finalizers or not (as
//!   kcp's logical cluster deletion); a nested workspace is marked
//!   Terminating and emptied in turn (its own key), and the outer one
//!   waits for it;
//! - once empty, the namespace or the Workspace object itself is deleted
//!   (with the workspace's LogicalCluster marker): the controller is its
//!   implicit finalizer (kube's `spec.finalizers: [kubernetes]`; nothing
//!   is stored for it).
//!
//! Across shards (`docs/sharding.md`): a Workspace object here whose
//! logical cluster another shard holds (`spec.shard`) is deleted by asking
//! that shard to delete its LogicalCluster ([`Remote`]) and waiting until
//! it is gone; a LogicalCluster marked here by another shard's request is
//! emptied like a workspace and then removed. A Workspace left in
//! `Scheduling` (its create cut short) is finished after
//! [`SCHEDULING_GRACE`]: its logical cluster created on its shard, its
//! phase Ready.
//!
//! Every write is a compare-and-swap on the revision read: one that loses
//! a race leaves the object for the next pass. The controller reads and
//! writes only through the shard interface ([`crate::shard::Shard`]).
//! What a namespace or workspace holds is the list of served resources,
//! given at start ([`Content`]; `src/replica.rs` passes the API's), so
//! this module imports nothing of the API.
//!
//! **Where it runs**: always, whatever the other controllers do
//! (`tmc serve --no-controllers` and `tmc dev` included: a tenant's
//! namespace delete must complete on a node that runs no placement or
//! sync controllers), through the controller runtime
//! ([`super::runtime`]), on the leader only.
//!
//! **What it costs**: nothing per workspace in memory. Terminating
//! namespaces and workspaces are found from the change log
//! ([`super::feed`]): at the start of a leader term one scan of namespaces
//! and of Workspace objects queues only those being deleted (the records
//! are read once, nothing is kept), then each change that marks one
//! queues it. A deletion of an object inside a terminating namespace (the
//! last finalizer removed, by the API or a controller) or of a nested
//! workspace queues its container again at once, so a namespace held by
//! finalizers goes as soon as they do; while one waits it is also looked
//! at again every [`WAIT`]. The queue holds terminating containers only:
//! the runtime's own feed of a [`Controller::resource`] would queue every
//! namespace of every workspace at each term start, so this controller
//! names none and brings its own feeds ([`Controller::start_term`]).
//!
//! Objects it deletes leave the dependants index in the same
//! transaction ([`crate::owners::index_ops`]).
//!
//! Left out: kube's NamespaceDeletionDiscoveryFailure-style status
//! conditions on the namespace, and tmc's internal state of a deleted workspace
//! (`/tmc/...`: the placement and sync controllers drop what no longer
//! has an object).

use super::error::Error;
use super::feed::{self, Event};
use super::keys::QueueKey;
use super::queue::WorkQueue;
use super::runtime::{self, Action, Controller, Metrics};
use crate::object::is_deleting;
use crate::shard::{BoxFuture, Shard};
use crate::store::{
    Change, ChangeKind, Expectation, GroupResource, Key, ListOptions, ObjectKey, Prefix, Record,
    Txn, TxnOp, Workspace,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How often a namespace or workspace that waits (objects with
/// finalizers, nested workspaces, a lost race) is looked at again even
/// without a change that concerns it.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a Workspace may wait in `Scheduling` for the request that
/// created it before this controller finishes it.
pub const SCHEDULING_GRACE: Duration = Duration::from_secs(10);

/// Objects listed (and deleted in one transaction) at a time.
const PAGE: usize = 500;

/// A resource whose objects a namespace or workspace holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The resource.
    pub resource: GroupResource,
    /// Namespaced (else cluster-scoped within a workspace).
    pub namespaced: bool,
}

fn namespaces() -> GroupResource {
    GroupResource::new("", "namespaces").expect("a valid group resource")
}

fn workspaces() -> GroupResource {
    GroupResource::new("tenancy.kcp.io", "workspaces").expect("a valid group resource")
}

fn logical_clusters() -> GroupResource {
    GroupResource::new(
        crate::store::keys::CORE_KCP_GROUP,
        crate::store::keys::LOGICAL_CLUSTERS,
    )
    .expect("a valid group resource")
}

/// The other shards, for workspaces whose Workspace object is here and
/// whose contents are not.
pub use super::remote::OtherShards as Remote;

/// The shard a Workspace object names (`spec.shard`), when it is not
/// `own`.
pub fn remote_shard<'a>(wobj: &'a Value, own: &str) -> Option<&'a str> {
    match wobj.pointer("/spec/shard").and_then(Value::as_str) {
        None | Some("") => None,
        Some(s) if s == own => None,
        Some(s) => Some(s),
    }
}

/// What the controller empties and removes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Container {
    /// Namespace `name` of workspace `ws`.
    Namespace { ws: Workspace, name: String },
    /// The workspace at this path (its Workspace object is in the parent).
    Workspace(Workspace),
}

impl Container {
    /// The queue key: `ws|name` for a namespace, `path|` (no object name,
    /// which no namespace has) for a workspace.
    fn queue_key(&self) -> QueueKey {
        match self {
            Container::Namespace { ws, name } => QueueKey::new(ws.clone(), None, name),
            Container::Workspace(path) => QueueKey::new(path.clone(), None, ""),
        }
    }

    fn from_queue_key(k: &QueueKey) -> Container {
        if k.name.is_empty() {
            Container::Workspace(k.workspace.clone())
        } else {
            Container::Namespace {
                ws: k.workspace.clone(),
                name: k.name.clone(),
            }
        }
    }

    /// The container of a Namespace or Workspace object's key.
    fn of_object(k: &ObjectKey) -> Option<Container> {
        if k.gr == namespaces() {
            Some(Container::Namespace {
                ws: k.workspace.clone(),
                name: k.name.clone(),
            })
        } else if k.gr == workspaces() {
            k.workspace.join(&k.name).ok().map(Container::Workspace)
        } else if k.gr == logical_clusters() {
            Some(Container::Workspace(k.workspace.clone()))
        } else {
            None
        }
    }

    /// The key of the object that makes it exist; `None` for `root`.
    fn object_key(&self) -> Result<Option<Key>, Error> {
        match self {
            Container::Namespace { ws, name } => Ok(Some(Key::from(ObjectKey::cluster_scoped(
                namespaces(),
                ws.clone(),
                name,
            )?))),
            Container::Workspace(path) => Ok(ObjectKey::workspace_object(path).map(Key::from)),
        }
    }
}

/// The value of a stored object; `None` if it is not JSON.
fn json_of(rec: &Record) -> Option<Value> {
    serde_json::from_slice(&rec.value).ok()
}

fn has_finalizers(obj: &Value) -> bool {
    !crate::object::finalizers(obj).is_empty()
}

/// `obj` marked for deletion as the API marks it: a `deletionTimestamp`,
/// and for a namespace or workspace the phase Terminating.
fn marked(mut obj: Value, container: bool) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "deletionTimestamp".into(),
            Value::String(crate::object::now()),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    if container {
        obj["status"]["phase"] = Value::String("Terminating".into());
    }
    obj
}

/// The controller.
pub struct LifecycleController {
    shard: Arc<dyn Shard>,
    contents: Vec<Content>,
    remote: Option<Arc<dyn Remote>>,
}

/// A Workspace object waiting for its logical cluster on another shard.
fn scheduling(obj: &Value) -> bool {
    obj.pointer("/status/phase").and_then(Value::as_str) == Some("Scheduling")
}

impl LifecycleController {
    /// A controller over `shard` for containers holding `contents`; with
    /// `remote`, it also deletes (and finishes creating) logical clusters
    /// on other shards.
    pub fn new(
        shard: Arc<dyn Shard>,
        contents: Vec<Content>,
        remote: Option<Arc<dyn Remote>>,
    ) -> Self {
        LifecycleController {
            shard,
            contents,
            remote,
        }
    }

    /// Is the object at `key` being deleted, or (`or_scheduling`) a
    /// Workspace waiting for its logical cluster? (Absent or unreadable:
    /// no.)
    fn terminating(&self, key: &Key, or_scheduling: bool) -> bool {
        matches!(self.shard.get(key), Ok(Some(rec)) if json_of(&rec)
            .is_some_and(|v| is_deleting(&v) || (or_scheduling && scheduling(&v))))
    }

    /// Queues `c` if it is being deleted (its object or its logical
    /// cluster here), or its Workspace waits for its logical cluster.
    fn queue_if_terminating(&self, c: Container, queue: &WorkQueue<QueueKey>) {
        let mut keys = Vec::new();
        if let Ok(Some(key)) = c.object_key() {
            keys.push(key);
        }
        if let Container::Workspace(ws) = &c {
            keys.push(Key::from(ObjectKey::logical_cluster(ws)));
        }
        if keys
            .iter()
            .any(|k| self.terminating(k, matches!(c, Container::Workspace(_))))
        {
            queue.add(c.queue_key());
        }
    }

    /// A change of a Namespace or Workspace object: queued when it is
    /// marked; a Workspace object gone may let its parent workspace go.
    fn on_container_change(&self, k: &ObjectKey, ch: &Change, queue: &WorkQueue<QueueKey>) {
        let Some(c) = Container::of_object(k) else {
            return;
        };
        match (&ch.kind, &ch.value) {
            (ChangeKind::Put, Some(rec)) => {
                if json_of(rec).is_some_and(|v| is_deleting(&v) || scheduling(&v)) {
                    queue.add(c.queue_key());
                }
            }
            _ => {
                if k.gr == workspaces() || k.gr == logical_clusters() {
                    self.queue_if_terminating(Container::Workspace(k.workspace.clone()), queue);
                }
            }
        }
    }

    /// A namespaced object deleted: its namespace may be empty now.
    fn on_content_deleted(&self, k: &ObjectKey, ch: &Change, queue: &WorkQueue<QueueKey>) {
        if let (ChangeKind::Delete, Some(ns)) = (&ch.kind, &k.namespace) {
            let c = Container::Namespace {
                ws: k.workspace.clone(),
                name: ns.clone(),
            };
            self.queue_if_terminating(c, queue);
        }
    }

    /// Empties and removes one container; a requeue while it waits.
    pub async fn reconcile_key(&self, key: &QueueKey) -> Result<Action, Error> {
        let c = Container::from_queue_key(key);
        let okey = c.object_key()?;
        let rec = match &okey {
            Some(k) => self.shard.get(k)?,
            None => None,
        };
        let obj = rec.as_ref().and_then(json_of);
        if let (Container::Workspace(ws), Some(rec), Some(obj)) = (&c, &rec, &obj) {
            if let Some(remote) = &self.remote {
                if let Some(on) = remote_shard(obj, remote.own_shard()) {
                    let on = on.to_string();
                    return self
                        .remote_workspace(remote.as_ref(), ws, &on, rec, obj)
                        .await;
                }
            }
        }
        // The logical cluster of a workspace whose Workspace object is on
        // another shard: it goes when it is marked.
        let marker = match &c {
            Container::Workspace(ws) => {
                let k = Key::from(ObjectKey::logical_cluster(ws));
                self.shard.get(&k)?.map(|r| (k, r))
            }
            Container::Namespace { .. } => None,
        };
        let deleting_here = match (&obj, &marker) {
            (Some(o), _) => is_deleting(o),
            (None, Some((_, m))) => json_of(m).is_some_and(|v| is_deleting(&v)),
            (None, None) => false,
        };
        if !deleting_here {
            return Ok(Action::await_change());
        }
        let mut waiting = 0usize;
        for content in &self.contents {
            let prefix = match &c {
                Container::Namespace { .. } if !content.namespaced => continue,
                Container::Namespace { ws, name } => {
                    Prefix::namespace(&content.resource, ws, name)?
                }
                // The marker goes last, with the Workspace object.
                Container::Workspace(_) if content.resource == logical_clusters() => continue,
                Container::Workspace(path) => Prefix::workspace(&content.resource, path),
            };
            waiting += self.empty(&c, content, &prefix).await?;
        }
        if waiting > 0 {
            tracing::debug!(container = %key, waiting, "terminating: waiting for objects to go");
            return Ok(Action::requeue(WAIT));
        }
        let mut ops = Vec::new();
        if let (Some(k), Some(rec)) = (okey, &rec) {
            // A namespace or Workspace may own or be owned too.
            if let (Key::Object(ok), Some(o)) = (&k, &obj) {
                ops.extend(crate::owners::removal_ops(ok, o));
            }
            ops.push(TxnOp::delete(k, Expectation::ModRevision(rec.mod_revision)));
        }
        if let Some((k, m)) = marker {
            ops.push(TxnOp::delete(k, Expectation::ModRevision(m.mod_revision)));
        }
        match self.shard.write(Txn::new(ops)).await {
            Ok(_) => Ok(Action::await_change()),
            // Changed since it was read (a label, its own re-mark): again.
            Err(e) if e.is_conflict() => Ok(Action::requeue(Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }

    /// A Workspace object here whose logical cluster is on shard `on`:
    /// marked, its logical cluster is deleted there and then the object
    /// here; still `Scheduling` (a create cut short), its logical cluster
    /// is created there and the Workspace turns Ready.
    async fn remote_workspace(
        &self,
        remote: &dyn Remote,
        ws: &Workspace,
        on: &str,
        rec: &Record,
        obj: &Value,
    ) -> Result<Action, Error> {
        let okey = Key::decode(&rec.key)
            .ok_or_else(|| Error::invalid(String::from_utf8_lossy(&rec.key), "does not decode"))?;
        let expect = Expectation::ModRevision(rec.mod_revision);
        let op = if is_deleting(obj) {
            let gone = remote
                .delete_logical_cluster(on, ws)
                .await
                .map_err(Error::OtherShard)?;
            if !gone {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            TxnOp::delete(okey, expect)
        } else if scheduling(obj) {
            // The create request itself finishes it; only one it left
            // (a crash, a lost answer) is the controller's.
            let age = obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .and_then(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .to_std()
                        .ok()
                })
                .unwrap_or(SCHEDULING_GRACE);
            if age < SCHEDULING_GRACE {
                return Ok(Action::requeue(SCHEDULING_GRACE - age));
            }
            let lc = crate::shards::logical_cluster_object(ws, obj);
            remote
                .create_logical_cluster(on, ws, &lc)
                .await
                .map_err(Error::OtherShard)?;
            let mut ready = obj.clone();
            crate::object::set_status_phase(&mut ready, "Ready");
            let v = serde_json::to_vec(&ready).map_err(|e| Error::invalid(ws.as_str(), e))?;
            TxnOp::put_json(okey, v, expect)
        } else {
            return Ok(Action::await_change());
        };
        match self.shard.write(Txn::new(vec![op])).await {
            Ok(_) => Ok(Action::await_change()),
            Err(e) if e.is_conflict() => Ok(Action::requeue(Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes (or marks) the objects of `content` under `prefix`, a page
    /// per transaction; returns how many are left to wait for.
    async fn empty(
        &self,
        c: &Container,
        content: &Content,
        prefix: &Prefix,
    ) -> Result<usize, Error> {
        let in_workspace = matches!(c, Container::Workspace(_));
        let nested = in_workspace && content.resource == workspaces();
        let mut waiting = 0usize;
        let mut opts = ListOptions {
            limit: PAGE,
            ..Default::default()
        };
        loop {
            let page = self.shard.list(prefix, &opts)?;
            let mut ops = Vec::new();
            for item in &page.items {
                let key = Key::decode(&item.key).ok_or_else(|| {
                    Error::invalid(
                        String::from_utf8_lossy(&item.key),
                        "is a listed key that does not decode",
                    )
                })?;
                let expect = Expectation::ModRevision(item.mod_revision);
                let hold =
                    nested || (!in_workspace && json_of(item).is_some_and(|v| has_finalizers(&v)));
                if !hold {
                    // Its entries in the dependants index go with it (its
                    // owners are in the same namespace or workspace, or
                    // cluster-scoped and not being deleted through it).
                    if let (Key::Object(ok), Some(obj)) = (&key, json_of(item)) {
                        ops.extend(crate::owners::index_ops(ok, Some(&obj), None));
                    }
                    ops.push(TxnOp::delete(key, expect));
                    continue;
                }
                // Held: a nested workspace until it is emptied (under its
                // own key), an object with finalizers until they go.
                waiting += 1;
                let Some(obj) = json_of(item) else { continue };
                if !is_deleting(&obj) {
                    let v = serde_json::to_vec(&marked(obj, nested))
                        .map_err(|e| Error::invalid(String::from_utf8_lossy(&item.key), e))?;
                    ops.push(TxnOp::put_json(key, v, expect));
                }
            }
            if !ops.is_empty() {
                match self.shard.write(Txn::new(ops)).await {
                    Ok(_) => {}
                    // A lost race leaves the page for the next pass.
                    Err(e) if e.is_conflict() => waiting += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => return Ok(waiting),
            }
        }
    }
}

impl Controller for LifecycleController {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    fn resource(&self) -> Option<GroupResource> {
        // Its own feeds, from `start_term`: the runtime's would queue every
        // namespace of every workspace at each term's start.
        None
    }

    fn start_term(
        self: Arc<Self>,
        shard: Arc<dyn Shard>,
        queue: WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
        // Namespaces and Workspace objects: a scan at the term's start,
        // then their changes, queueing the terminating ones.
        for gr in [namespaces(), workspaces(), logical_clusters()] {
            let (this, q, sh) = (self.clone(), queue.clone(), shard.clone());
            tasks.push(Box::pin(async move {
                let stop = q.clone();
                let r = feed::follow(sh, gr.clone(), move || stop.shutting_down(), |ev| match ev {
                    Event::Scanned(k) => {
                        if let Some(c) = Container::of_object(&k) {
                            this.queue_if_terminating(c, &q);
                        }
                    }
                    Event::Changed(k, ch) => this.on_container_change(&k, ch, &q),
                    Event::ScanDone | Event::Rescan => {}
                })
                .await;
                if let Err(e) = r {
                    tracing::error!(resource = %gr, error = %e, "the lifecycle controller's feed stopped");
                }
            }));
        }
        // Deletions of namespaced objects: their namespace may be empty.
        let grs: Vec<GroupResource> = self
            .contents
            .iter()
            .filter(|c| c.namespaced)
            .map(|c| c.resource.clone())
            .collect();
        let (this, q) = (self.clone(), queue.clone());
        tasks.push(Box::pin(async move {
            let stop = q.clone();
            let r = feed::follow_changes(
                shard,
                grs,
                move || stop.shutting_down(),
                |k, ch| this.on_content_deleted(k, ch, &q),
            )
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the lifecycle controller's feed of deletions stopped");
            }
        }));
        tasks
    }

    fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action, Error>> {
        Box::pin(self.reconcile_key(key))
    }
}

/// Starts the lifecycle controller on `shard` (it runs while the shard is
/// led from here) with its own runtime loop, counted in `metrics`; for
/// containers holding `contents`. Runs until the process ends.
pub fn start(
    shard: Arc<dyn Shard>,
    contents: Vec<Content>,
    remote: Option<Arc<dyn Remote>>,
    others: Vec<Arc<dyn Controller>>,
    metrics: Arc<Metrics>,
) {
    let mut controllers: Vec<Arc<dyn Controller>> = vec![Arc::new(LifecycleController::new(
        shard.clone(),
        contents,
        remote,
    ))];
    controllers.extend(others);
    tokio::spawn(runtime::run(
        shard,
        controllers,
        metrics,
        std::future::pending(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{MemoryEngine, Store, StoreOptions};

    fn ws(s: &str) -> Workspace {
        Workspace::parse(s).unwrap()
    }

    fn gr(g: &str, r: &str) -> GroupResource {
        GroupResource::new(g, r).unwrap()
    }

    fn contents() -> Vec<Content> {
        vec![
            Content {
                resource: namespaces(),
                namespaced: false,
            },
            Content {
                resource: workspaces(),
                namespaced: false,
            },
            Content {
                resource: gr("", "configmaps"),
                namespaced: true,
            },
        ]
    }

    async fn put(shard: &dyn Shard, k: ObjectKey, v: Value) {
        let txn = Txn::new(vec![TxnOp::put_json(
            k,
            serde_json::to_vec(&v).unwrap(),
            Expectation::Any,
        )]);
        shard.write(txn).await.unwrap();
    }

    fn get(shard: &dyn Shard, k: &ObjectKey) -> Option<Value> {
        shard
            .get(&Key::from(k.clone()))
            .unwrap()
            .map(|r| serde_json::from_slice(&r.value).unwrap())
    }

    /// What the API does when the last finalizer of a deleted object
    /// goes: the object goes, at the revision it was read.
    async fn finalizer_removed(shard: &dyn Shard, k: ObjectKey) {
        let k = Key::from(k);
        let rev = shard.get(&k).unwrap().unwrap().mod_revision;
        let gone = TxnOp::delete(k, Expectation::ModRevision(rev));
        shard.write(Txn::new(vec![gone])).await.unwrap();
    }

    fn ns_key(w: &str, name: &str) -> ObjectKey {
        ObjectKey::cluster_scoped(namespaces(), ws(w), name).unwrap()
    }

    fn cm_key(w: &str, ns: &str, name: &str) -> ObjectKey {
        ObjectKey::namespaced(gr("", "configmaps"), ws(w), ns, name).unwrap()
    }

    fn ws_key(parent: &str, name: &str) -> ObjectKey {
        ObjectKey::cluster_scoped(workspaces(), ws(parent), name).unwrap()
    }

    fn terminating(name: &str) -> Value {
        json!({"metadata": {"name": name, "deletionTimestamp": "2026-01-01T00:00:00Z"},
               "status": {"phase": "Terminating"}})
    }

    #[test]
    fn queue_keys_tell_namespaces_from_workspaces() {
        let n = Container::Namespace {
            ws: ws("root:a"),
            name: "team".into(),
        };
        let w = Container::Workspace(ws("root:a:b"));
        assert_eq!(n.queue_key().to_string(), "root:a|team");
        assert_eq!(w.queue_key().to_string(), "root:a:b|");
        assert_eq!(Container::from_queue_key(&n.queue_key()), n);
        assert_eq!(Container::from_queue_key(&w.queue_key()), w);
        assert_eq!(
            w.object_key().unwrap(),
            Some(Key::from(ws_key("root:a", "b")))
        );
        assert_eq!(Container::Workspace(ws("root")).object_key().unwrap(), None);
        assert_eq!(Container::of_object(&ws_key("root:a", "b")), Some(w));
        assert_eq!(Container::of_object(&ns_key("root:a", "team")), Some(n));
    }

    #[tokio::test]
    async fn a_namespace_waits_for_finalizers_then_goes() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let c = LifecycleController::new(shard.clone(), contents(), None);
        put(&*shard, ns_key("root:a", "team"), terminating("team")).await;
        put(
            &*shard,
            cm_key("root:a", "team", "plain"),
            json!({"metadata": {"name": "plain"}}),
        )
        .await;
        put(
            &*shard,
            cm_key("root:a", "team", "held"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/x"]}}),
        )
        .await;
        // Another namespace's object stays.
        put(
            &*shard,
            cm_key("root:a", "other", "keep"),
            json!({"metadata": {"name": "keep"}}),
        )
        .await;
        let key = Container::Namespace {
            ws: ws("root:a"),
            name: "team".into(),
        }
        .queue_key();
        assert_eq!(c.reconcile_key(&key).await.unwrap(), Action::requeue(WAIT));
        assert!(get(&*shard, &cm_key("root:a", "team", "plain")).is_none());
        let held = get(&*shard, &cm_key("root:a", "team", "held")).unwrap();
        assert!(is_deleting(&held), "marked: {held}");
        assert!(
            get(&*shard, &ns_key("root:a", "team")).is_some(),
            "it waits"
        );
        // The finalizer goes (as the API's update would remove the object).
        finalizer_removed(&*shard, cm_key("root:a", "team", "held")).await;
        assert_eq!(c.reconcile_key(&key).await.unwrap(), Action::await_change());
        assert!(get(&*shard, &ns_key("root:a", "team")).is_none(), "gone");
        assert!(get(&*shard, &cm_key("root:a", "other", "keep")).is_some());
        // Not terminating: nothing happens.
        put(
            &*shard,
            ns_key("root:a", "live"),
            json!({"metadata": {"name": "live"}}),
        )
        .await;
        put(
            &*shard,
            cm_key("root:a", "live", "x"),
            json!({"metadata": {"name": "x"}}),
        )
        .await;
        let live = Container::Namespace {
            ws: ws("root:a"),
            name: "live".into(),
        };
        assert_eq!(
            c.reconcile_key(&live.queue_key()).await.unwrap(),
            Action::await_change()
        );
        assert!(get(&*shard, &cm_key("root:a", "live", "x")).is_some());
    }

    #[tokio::test]
    async fn a_workspace_goes_with_its_nested_workspaces_and_nothing_else() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let c = LifecycleController::new(shard.clone(), contents(), None);
        put(&*shard, ws_key("root", "a"), terminating("a")).await;
        put(
            &*shard,
            ns_key("root:a", "default"),
            json!({"metadata": {"name": "default"}}),
        )
        .await;
        put(
            &*shard,
            cm_key("root:a", "default", "held"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/x"]}}),
        )
        .await;
        put(
            &*shard,
            ws_key("root:a", "inner"),
            json!({"metadata": {"name": "inner"}}),
        )
        .await;
        put(
            &*shard,
            cm_key("root:a:inner", "default", "deep"),
            json!({"metadata": {"name": "deep"}}),
        )
        .await;
        put(
            &*shard,
            cm_key("root:ab", "default", "neighbour"),
            json!({"metadata": {"name": "neighbour"}}),
        )
        .await;
        let outer = Container::Workspace(ws("root:a")).queue_key();
        let inner = Container::Workspace(ws("root:a:inner")).queue_key();
        assert_eq!(
            c.reconcile_key(&outer).await.unwrap(),
            Action::requeue(WAIT)
        );
        assert!(
            get(&*shard, &cm_key("root:a", "default", "held")).is_none(),
            "finalizers do not hold a workspace's objects"
        );
        assert!(get(&*shard, &ns_key("root:a", "default")).is_none());
        let nested = get(&*shard, &ws_key("root:a", "inner")).unwrap();
        assert_eq!(nested["status"]["phase"], "Terminating", "{nested}");
        assert_eq!(
            c.reconcile_key(&inner).await.unwrap(),
            Action::await_change()
        );
        assert!(get(&*shard, &cm_key("root:a:inner", "default", "deep")).is_none());
        assert!(get(&*shard, &ws_key("root:a", "inner")).is_none());
        assert_eq!(
            c.reconcile_key(&outer).await.unwrap(),
            Action::await_change()
        );
        assert!(get(&*shard, &ws_key("root", "a")).is_none());
        assert!(
            get(&*shard, &cm_key("root:ab", "default", "neighbour")).is_some(),
            "root:ab is not inside root:a"
        );
    }

    /// Waits (up to 20 s) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_deletion_in_a_terminating_namespace_queues_it_and_no_other() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let c = LifecycleController::new(shard.clone(), contents(), None);
        put(&*shard, ns_key("root:a", "going"), terminating("going")).await;
        put(
            &*shard,
            ns_key("root:a", "live"),
            json!({"metadata": {"name": "live"}}),
        )
        .await;
        put(&*shard, ws_key("root", "a"), terminating("a")).await;
        let q = WorkQueue::new();
        let deleted = |k: &ObjectKey| Change {
            revision: 1,
            kind: ChangeKind::Delete,
            key: Key::from(k.clone()).encode(),
            value: None,
            prev: None,
            unreadable: None,
        };
        for k in [
            cm_key("root:a", "live", "x"),
            cm_key("root:a", "going", "x"),
        ] {
            c.on_content_deleted(&k, &deleted(&k), &q);
        }
        assert_eq!(q.len(), 1);
        let k = q.get().await.unwrap();
        assert_eq!(k.to_string(), "root:a|going");
        q.done(&k);
        // A nested workspace gone: the terminating parent is looked at.
        let nested = ws_key("root:a", "inner");
        c.on_container_change(&nested, &deleted(&nested), &q);
        assert_eq!(q.get().await.unwrap().to_string(), "root:a|");
    }

    #[tokio::test]
    async fn the_term_finds_terminating_containers_and_finishes_them() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        // Marked before the term starts: found by the scan.
        put(&*shard, ns_key("root:a", "early"), terminating("early")).await;
        let metrics = Arc::new(Metrics::new());
        start(shard.clone(), contents(), None, Vec::new(), metrics.clone());
        // Marked later, held by a finalizer that goes later still: found
        // from the change log, finished by the deletion's trigger.
        put(
            &*shard,
            ns_key("root:a", "late"),
            json!({"metadata": {"name": "late"}}),
        )
        .await;
        put(
            &*shard,
            cm_key("root:a", "late", "held"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/x"]}}),
        )
        .await;
        put(&*shard, ns_key("root:a", "late"), terminating("late")).await;
        until("early goes", || {
            get(&*shard, &ns_key("root:a", "early")).is_none()
        })
        .await;
        until("held is marked", || {
            get(&*shard, &cm_key("root:a", "late", "held")).is_some_and(|v| is_deleting(&v))
        })
        .await;
        assert!(
            get(&*shard, &ns_key("root:a", "late")).is_some(),
            "late waits"
        );
        finalizer_removed(&*shard, cm_key("root:a", "late", "held")).await;
        until("late goes", || {
            get(&*shard, &ns_key("root:a", "late")).is_none()
        })
        .await;
        assert!(metrics
            .render()
            .contains("tmc_controller_reconciles_total{controller=\"lifecycle\"}"));
    }
}
