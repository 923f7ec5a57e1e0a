//! The sync controller: workloads placed by a WorkloadPlacement are
//! server-side applied to the chosen member clusters, and their status
//! comes back — kcp ≤ v0.11's syncer (`pkg/syncer`: spec down, status up)
//! turned around: tmc pushes from the shard's raft leader instead of
//! running an agent per cluster.
//!
//! ## Protocol
//! Two kinds of queue, both fed without a watch per workspace:
//!
//! - **Object queues**, one per syncable resource (a [`SyncController`] each,
//!   fed by the runtime from the change log). Reconciling a workspace
//!   object computes its *desired* clusters: the decisions
//!   (`/tmc/placements/...`) of the workspace's placements whose resources,
//!   `namespaceSelector` and `workloadSelector` match it; for a ConfigMap,
//!   Secret or ServiceAccount also the clusters of every workload of its
//!   namespace whose pod template references it (Karmada's
//!   *propagateDeps*). The object carries the clusters that may hold a copy
//!   in the annotation `tmc.kcp.io/clusters` and the finalizer
//!   `tmc.kcp.io/sync` while that list is not empty. A cluster is added to
//!   the list *before* anything is applied there (write-ahead), and
//!   removed only when its sync record is gone, i.e. the copy was deleted.
//!   Then every listed or desired cluster gets a work item, and the status
//!   of the copies (from their sync records) is folded into the object's
//!   status, with a per-cluster breakdown in `tmc.kcp.io/cluster-status`.
//!   A deleted object (deletionTimestamp) desires no cluster; once the list
//!   is empty the finalizer goes, and with it the object.
//! - **Cluster queues**, one per member cluster ([`cluster::ClusterSyncer`]):
//!   a work item `(resource, object)` re-reads the object and decides
//!   alone: desired and listed → apply (if the copy differs from what the
//!   record says was applied, or a field tmc set was changed downstream),
//!   not desired → delete the copy and the record, then empty tmc-made
//!   namespaces. Each cluster has its own workers, backoff and token bucket
//!   (`--sync-qps`, `--sync-burst`), so a slow or dead cluster delays only
//!   its own queue; its items back off and resume when it returns.
//!
//! Downstream, objects live in `tmc-<hash(workspace, namespace)>`
//! ([`mapping::downstream_namespace`]) so two tenants' `default` never
//! meet; they carry the label `tmc.kcp.io/owner` and annotations naming
//! their origin. One watch per member cluster per resource, selected by
//! that label, keeps what is downstream in memory (cost grows with the
//! objects placed there, not with workspaces): a status change updates
//! the sync record and requeues the workspace object; a copy changed or
//! deleted by hand is requeued and put back (drift); a copy whose origin
//! no longer wants it is removed.
//!
//! The sync record of each (cluster, object), `/tmc/sync/...` in bincode
//! ([`SyncRecord`]), holds the hash of what was applied, the downstream
//! uid and resourceVersion, the downstream status and the last error. A new
//! leader starts from it: the first list of each watch matches the records
//! and nothing is re-applied.
//!
//! A downstream object that tmc did not create is not overwritten unless a
//! placement's `conflictPolicy` is `Adopt`; the workspace object gets a
//! condition `tmc.kcp.io/Synced` False, reason `Conflict`. Secrets go only
//! to clusters reached over TLS.
//!
//! The owner label's value is the shard's identity (the uid of root's
//! `default` namespace, [`SyncCore::owner`]), so two shards sharing a
//! member cluster never touch each other's copies.
//!
//! Left out: deleting copies on a
//! cluster whose registration was deleted (its items fail until it
//! returns; the object's finalizer waits); batching several objects into
//! one request (the Kubernetes API has none: items are coalesced per key
//! and sent concurrently over one HTTP/2 connection instead); resources
//! beyond the built-in set in [`syncable`].

pub mod cluster;
pub mod mapping;
mod object;

pub use object::next_object;

use super::error::{Error, Result};
use super::feed::{self, Event};
use super::keys::QueueKey;
use super::objects;
use super::queue::WorkQueue;
use super::runtime::{Action, Controller};
use crate::object::selector::matches_metav1;
use crate::shard::{BoxFuture, Shard};
use crate::store::{
    ClusterRef, Expectation, GroupResource, Key, ListOptions, ObjectKey, Prefix, Txn, TxnOp,
    Workspace,
};
use crate::types::WorkloadPlacement;
use cluster::{ClusterSyncer, SyncItem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Label on every downstream object and namespace tmc made; the watches
/// select on it. Its value names the shard: the uid of `root`'s `default`
/// namespace (made once at bootstrap and replicated, like Kubernetes'
/// convention of the `kube-system` uid as a cluster's identity), so two
/// shards sharing a member cluster never touch each other's copies.
pub const LABEL_OWNER: &str = "tmc.kcp.io/owner";
/// Origin annotations on downstream objects.
pub const ANN_WORKSPACE: &str = "tmc.kcp.io/workspace";
/// The origin namespace.
pub const ANN_NAMESPACE: &str = "tmc.kcp.io/namespace";
/// The origin name.
pub const ANN_NAME: &str = "tmc.kcp.io/name";
/// The origin uid.
pub const ANN_UID: &str = "tmc.kcp.io/uid";
/// On workspace objects: the clusters that may hold a copy.
/// Kept by the API as stored whatever a client sends
/// ([`crate::object::SERVER_OWNED_ANNOTATIONS`]).
pub const ANN_CLUSTERS: &str = crate::object::SERVER_OWNED_ANNOTATIONS[0];
/// On workspace objects: the status of each copy.
pub const ANN_CLUSTER_STATUS: &str = crate::object::SERVER_OWNED_ANNOTATIONS[1];
/// The finalizer that keeps a workspace object until its copies are gone.
pub const FINALIZER: &str = "tmc.kcp.io/sync";
/// The condition that reports conflicts and sync errors.
pub const SYNCED: &str = "tmc.kcp.io/Synced";

/// Options of the sync controller.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Downstream writes per second per cluster.
    pub qps: f64,
    /// Burst of downstream writes per cluster.
    pub burst: u32,
    /// Concurrent downstream requests per cluster.
    pub workers_per_cluster: usize,
    /// Workers of each object queue.
    pub object_workers: usize,
    /// Timeout of one downstream request.
    pub request_timeout: Duration,
    /// Which member endpoints may be connected to.
    pub endpoints: super::member::EndpointPolicy,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            qps: 50.0,
            burst: 100,
            workers_per_cluster: 16,
            object_workers: 8,
            request_timeout: Duration::from_secs(10),
            endpoints: super::member::EndpointPolicy::default(),
        }
    }
}

/// What a syncable resource is downstream.
#[derive(Debug, Clone)]
pub struct Kind {
    /// The resource.
    pub gr: GroupResource,
    /// `apps/v1`, `v1`, ...
    pub api_version: &'static str,
    /// `Deployment`, ...
    pub kind: &'static str,
    /// Synced when a placement lists no resources.
    pub default: bool,
    /// Has a status worth bringing back.
    pub has_status: bool,
}

/// The resources tmc syncs. Secrets and ServiceAccounts only follow the
/// workloads that use them unless a placement lists them.
pub fn syncable() -> Vec<Kind> {
    let k = |g: &str, r: &str, v, kind, default, has_status| Kind {
        gr: GroupResource::new(g, r).expect("valid"),
        api_version: v,
        kind,
        default,
        has_status,
    };
    vec![
        k("apps", "deployments", "apps/v1", "Deployment", true, true),
        k("apps", "statefulsets", "apps/v1", "StatefulSet", true, true),
        k("apps", "daemonsets", "apps/v1", "DaemonSet", true, true),
        k("batch", "jobs", "batch/v1", "Job", true, true),
        k("batch", "cronjobs", "batch/v1", "CronJob", true, true),
        k("apps", "replicasets", "apps/v1", "ReplicaSet", true, true),
        k(
            "autoscaling",
            "horizontalpodautoscalers",
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            true,
            true,
        ),
        k(
            "policy",
            "poddisruptionbudgets",
            "policy/v1",
            "PodDisruptionBudget",
            true,
            true,
        ),
        k(
            "networking.k8s.io",
            "ingresses",
            "networking.k8s.io/v1",
            "Ingress",
            true,
            true,
        ),
        k(
            "networking.k8s.io",
            "networkpolicies",
            "networking.k8s.io/v1",
            "NetworkPolicy",
            true,
            false,
        ),
        k(
            "",
            "persistentvolumeclaims",
            "v1",
            "PersistentVolumeClaim",
            true,
            true,
        ),
        k("", "services", "v1", "Service", true, false),
        k("", "configmaps", "v1", "ConfigMap", true, false),
        k("", "secrets", "v1", "Secret", false, false),
        k("", "serviceaccounts", "v1", "ServiceAccount", false, false),
        k("", "limitranges", "v1", "LimitRange", false, false),
        k("", "resourcequotas", "v1", "ResourceQuota", false, true),
    ]
}

fn kind_of(gr: &GroupResource) -> Option<Kind> {
    syncable().into_iter().find(|k| &k.gr == gr)
}

/// Sync state of one object on one cluster, `/tmc/sync/...` (bincode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// uid of the workspace object the copy is of.
    pub uid: String,
    /// Hash of the applied copy ([`mapping::content_hash`]).
    pub hash: u64,
    /// Generation of the workspace object that was applied.
    pub generation: i64,
    /// Downstream uid.
    pub downstream_uid: String,
    /// Downstream resourceVersion after the apply or the last status seen.
    pub downstream_rv: String,
    /// Downstream status as JSON (empty: none).
    pub status: String,
    /// The downstream controller has seen the applied generation.
    pub observed: bool,
    /// The last error (empty: none).
    pub error: String,
    /// The downstream object exists and is not tmc's.
    pub conflict: bool,
    /// Dependencies (`resource/name`) applied with the object.
    pub deps: Vec<String>,
}

impl SyncRecord {
    /// Encodes as stored.
    pub fn encode(&self) -> Vec<u8> {
        objects::encode_state(self)
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        objects::decode_state(bytes)
    }
}

/// A cluster reference as written in annotations: `workspace|name`.
pub fn parse_cluster(s: &str) -> Option<ClusterRef> {
    let (ws, name) = s.split_once('|')?;
    Some(ClusterRef {
        workspace: Workspace::parse(ws).ok()?,
        name: name.to_string(),
    })
}

/// The clusters listed on a workspace object.
pub fn listed_clusters(obj: &Value) -> BTreeSet<ClusterRef> {
    obj["metadata"]["annotations"][ANN_CLUSTERS]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(parse_cluster)
        .collect()
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Where an object should be: its clusters, and whether a placement that
/// places it allows adopting existing downstream objects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The clusters.
    pub clusters: BTreeSet<ClusterRef>,
    /// `conflictPolicy: Adopt` on a matching placement.
    pub adopt: bool,
}

/// State shared by the controllers of one process.
pub struct SyncCore {
    shard: Arc<dyn Shard>,
    opts: SyncOptions,
    term: Mutex<TermState>,
    owner: Mutex<Option<String>>,
    /// Where the cluster workers count panics.
    metrics: std::sync::OnceLock<Arc<super::runtime::Metrics>>,
    /// The other shards, for locations that live there.
    others: std::sync::OnceLock<Arc<dyn super::remote::OtherShards>>,
}

#[derive(Default)]
struct TermState {
    /// Counts terms, so that a late clean-up of one term leaves the next alone.
    id: u64,
    queues: HashMap<GroupResource, WorkQueue<QueueKey>>,
    clusters: HashMap<ClusterRef, Arc<ClusterSyncer>>,
    spawn: Option<tokio::sync::mpsc::UnboundedSender<BoxFuture<'static, ()>>>,
}

impl SyncCore {
    /// A core over `shard`.
    pub fn new(shard: Arc<dyn Shard>, opts: SyncOptions) -> Arc<Self> {
        Arc::new(SyncCore {
            shard,
            opts,
            term: Mutex::new(TermState::default()),
            owner: Mutex::new(None),
            metrics: std::sync::OnceLock::new(),
            others: std::sync::OnceLock::new(),
        })
    }

    /// The metrics the cluster workers count panics in
    /// (`tmc_controller_panics_total{controller="sync-cluster"}`).
    pub fn set_metrics(&self, metrics: Arc<super::runtime::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Locations on other shards are reached through `others`.
    pub fn set_others(&self, others: Arc<dyn super::remote::OtherShards>) {
        let _ = self.others.set(others);
    }

    /// The other shards, if this shard reaches them.
    pub fn others(&self) -> Option<&dyn super::remote::OtherShards> {
        self.others.get().map(|o| o.as_ref())
    }

    fn record_sync(&self, cluster: &str, ok: bool, took: std::time::Duration) {
        if let Some(m) = self.metrics.get() {
            m.record_sync(cluster, ok, took);
        }
    }

    fn record_panic(&self) {
        if let Some(m) = self.metrics.get() {
            m.record_panic("sync-cluster");
        }
    }

    /// The shard's identity, the value of [`LABEL_OWNER`].
    pub fn owner(&self) -> Result<String> {
        let mut o = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = o.as_ref() {
            return Ok(id.clone());
        }
        // The root shard: root's `default`; another shard: its own
        // reserved workspace's (written at its bootstrap).
        let mut ns = None;
        for ws in ["root", "system:shard"] {
            let ws = Workspace::parse_any(ws).expect("valid");
            let key = ObjectKey::cluster_scoped(namespaces(), ws, "default").expect("valid");
            ns = objects::read::<Value>(&*self.shard, &key)?;
            if ns.is_some() {
                break;
            }
        }
        let id = ns
            .and_then(|n| n.raw["metadata"]["uid"].as_str().map(str::to_string))
            .ok_or_else(|| {
                Error::NotReady(
                    "the shard's identity (the uid of root's default namespace) is not there yet"
                        .into(),
                )
            })?;
        *o = Some(id.clone());
        Ok(id)
    }

    /// The shard.
    pub fn shard(&self) -> &Arc<dyn Shard> {
        &self.shard
    }

    /// The controllers, one per syncable resource.
    pub fn controllers(self: &Arc<Self>) -> Vec<Arc<dyn Controller>> {
        syncable()
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                Arc::new(SyncController {
                    name: Box::leak(format!("sync-{}", k.gr.resource()).into_boxed_str()),
                    gr: k.gr,
                    core: self.clone(),
                    primary: i == 0,
                }) as Arc<dyn Controller>
            })
            .collect()
    }

    /// Queues a workspace object for its object reconcile.
    pub fn enqueue_object(&self, gr: &GroupResource, key: QueueKey) {
        if let Some(q) = self
            .term
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queues
            .get(gr)
        {
            q.add(key);
        }
    }

    /// Queues work for `cluster`, starting its syncer if needed.
    fn enqueue_cluster(self: &Arc<Self>, cluster: &ClusterRef, item: SyncItem) -> Result<()> {
        let owner = self.owner()?;
        let mut t = self.term.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = t.clusters.get(cluster) {
            s.queue().add(item);
            return Ok(());
        }
        let Some(spawn) = t.spawn.clone() else {
            return Ok(()); // between terms
        };
        let syncer = ClusterSyncer::new(self.clone(), cluster.clone(), self.opts, owner);
        syncer.queue().add(item);
        for task in syncer.clone().tasks() {
            let _ = spawn.send(task);
        }
        t.clusters.insert(cluster.clone(), syncer);
        Ok(())
    }

    /// The syncer of `cluster` in this term, if started.
    pub fn syncer(&self, cluster: &ClusterRef) -> Option<Arc<ClusterSyncer>> {
        self.term
            .lock()
            .expect("lock")
            .clusters
            .get(cluster)
            .cloned()
    }

    /// The placements of `ws` that place `obj` (of `gr` in `namespace`):
    /// their clusters, from the stored decisions.
    pub fn direct(
        &self,
        gr: &GroupResource,
        ws: &Workspace,
        namespace: &str,
        obj: &Value,
    ) -> Result<Desired> {
        let mut out = Desired::default();
        let placements = self.list(&Prefix::workspace(&super::placement::resource(), ws))?;
        if placements.is_empty() {
            return Ok(out);
        }
        let ns_labels = match ObjectKey::cluster_scoped(namespaces(), ws.clone(), namespace) {
            Ok(k) => objects::read::<Value>(&*self.shard, &k)?
                .map(|n| labels_of(&n.raw))
                .unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        let labels = labels_of(obj);
        for raw in placements {
            let Ok(wp) = serde_json::from_value::<WorkloadPlacement>(raw) else {
                continue; // validated on the way in; an old shape is skipped
            };
            if wp.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let covers = if wp.spec.resources.is_empty() {
                kind_of(gr).is_some_and(|k| k.default)
            } else {
                wp.spec
                    .resources
                    .iter()
                    .any(|r| GroupResource::new(&r.group, &r.resource).is_ok_and(|g| &g == gr))
            };
            if !covers
                || !matches_metav1(wp.spec.namespace_selector.as_ref(), &ns_labels)
                || !matches_metav1(wp.spec.workload_selector.as_ref(), &labels)
            {
                continue;
            }
            let name = wp.metadata.name.clone().unwrap_or_default();
            let key = Key::placement(ws.clone(), &name)?;
            let Some(rec) = self.shard.get(&key)? else {
                continue;
            };
            let Some(state) = super::placement::PlacementState::decode(&rec.value) else {
                continue;
            };
            if Some(&state.uid) != wp.metadata.uid.as_ref() {
                continue;
            }
            let Ok(location) = Workspace::parse(&state.location) else {
                continue;
            };
            for c in state.clusters {
                out.clusters.insert(ClusterRef {
                    workspace: location.clone(),
                    name: c,
                });
            }
            out.adopt |= wp.spec.conflict_policy == crate::types::ConflictPolicy::Adopt;
        }
        Ok(out)
    }

    /// Where `obj` (of `gr` at `key`) should be: [`SyncCore::direct`], and
    /// for dependency kinds the clusters of the workloads that use it.
    pub fn desired(&self, key: &ObjectKey, obj: &Value) -> Result<Desired> {
        if deleting(obj) {
            return Ok(Desired::default());
        }
        let ns = key.namespace.clone().unwrap_or_default();
        let mut d = self.direct(&key.gr, &key.workspace, &ns, obj)?;
        if mapping::is_dependency_kind(&key.gr) {
            for k in syncable().iter().filter(|k| k.has_status) {
                let prefix = Prefix::namespace(&k.gr, &key.workspace, &ns)?;
                for w in self.list(&prefix)? {
                    let uses = mapping::dependencies(&w)
                        .iter()
                        .any(|(r, n)| *r == key.gr.resource() && *n == key.name);
                    if uses && !deleting(&w) {
                        let wd = self.direct(&k.gr, &key.workspace, &ns, &w)?;
                        d.clusters.extend(wd.clusters);
                        d.adopt |= wd.adopt;
                    }
                }
            }
        }
        Ok(d)
    }

    fn list(&self, prefix: &Prefix) -> Result<Vec<Value>> {
        let mut opts = ListOptions {
            limit: 500,
            ..Default::default()
        };
        let mut out = Vec::new();
        loop {
            let page = self.shard.list(prefix, &opts)?;
            for r in &page.items {
                if let Ok(v) = serde_json::from_slice::<Value>(&r.value) {
                    out.push(v);
                }
            }
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// The sync record of `object` on `cluster`, with its revision.
    pub fn record(
        &self,
        cluster: &ClusterRef,
        object: &ObjectKey,
    ) -> Result<Option<(u64, SyncRecord)>> {
        let key = Key::sync(cluster.clone(), object.clone())?;
        let Some(rec) = self.shard.get(&key)? else {
            return Ok(None);
        };
        let r = SyncRecord::decode(&rec.value)
            .ok_or_else(|| Error::invalid(format!("sync record {key}"), "does not decode"))?;
        Ok(Some((rec.mod_revision, r)))
    }

    async fn write(&self, txn: Txn) -> Result<()> {
        self.shard.write(txn).await?;
        Ok(())
    }

    /// Whether the objects of `ws` are synced from here: this shard holds
    /// the workspace and it is not being moved. A workspace moved away
    /// (its LogicalCluster gone) leaves its copies to the shard that holds
    /// it now, which takes them over (its sync records came with it); a
    /// held one is left alone until the move is done.
    pub fn active(&self, ws: &Workspace) -> Result<bool> {
        if ws.parent().is_none() {
            return Ok(true);
        }
        let key = ObjectKey::logical_cluster(ws);
        Ok(objects::read::<Value>(&*self.shard, &key)?
            .is_some_and(|lc| crate::shards::moving(&lc.raw).is_none()))
    }

    /// The object reconcile (see the module docs).
    async fn reconcile_object(
        self: &Arc<Self>,
        gr: &GroupResource,
        key: &QueueKey,
    ) -> Result<Action> {
        if !self.active(&key.workspace)? {
            // Requeued when a move's hold is lifted.
            return Ok(Action::await_change());
        }
        let okey = ObjectKey::with_rule(
            gr.clone(),
            key.workspace.clone(),
            key.namespace.as_deref(),
            &key.name,
            crate::store::NameRule::DnsSubdomain,
        )?;
        let Some(obj) = objects::read::<Value>(&*self.shard, &okey)? else {
            return Ok(Action::await_change());
        };
        let desired = self.desired(&okey, &obj.raw)?;
        let listed = listed_clusters(&obj.raw);
        if listed.is_empty() && desired.clusters.is_empty() {
            return Ok(Action::await_change()); // not placed, never was: no write to make
        }
        let mut keep: BTreeSet<ClusterRef> = listed.union(&desired.clusters).cloned().collect();
        let mut records = BTreeMap::new();
        for c in &listed {
            match self.record(c, &okey)? {
                Some((_, r)) => {
                    records.insert(c.clone(), r);
                }
                None if !desired.clusters.contains(c) => {
                    keep.remove(c);
                }
                None => {}
            }
        }
        let new = next_object(gr, &obj.raw, &keep, &desired, &records).map_err(|e| {
            Error::invalid(format!("stored object {}:", Key::from(okey.clone())), e)
        })?;
        if new != obj.raw {
            let op = if deleting(&new) && crate::object::finalizers(&new).is_empty() {
                TxnOp::delete(okey.clone(), Expectation::ModRevision(obj.revision))
            } else {
                let bytes = serde_json::to_vec(&new).map_err(|e| {
                    Error::invalid(format!("stored object {}:", Key::from(okey.clone())), e)
                })?;
                TxnOp::put_json(okey.clone(), bytes, Expectation::ModRevision(obj.revision))
            };
            // Work for a newly listed cluster goes out only once the list is
            // written (write-ahead): the write has applied locally when it
            // returns, so the cluster's worker reads the new list.
            self.write(Txn::new(vec![op])).await?;
        }
        let item = SyncItem {
            gr: gr.clone(),
            key: key.clone(),
        };
        for c in listed.union(&desired.clusters) {
            self.enqueue_cluster(c, item.clone())?;
        }
        Ok(Action::await_change())
    }
}

fn namespaces() -> GroupResource {
    GroupResource::new("", "namespaces").expect("valid")
}

/// The controller of one syncable resource's object queue.
pub struct SyncController {
    name: &'static str,
    gr: GroupResource,
    core: Arc<SyncCore>,
    /// Starts the term's shared state and the placement/namespace feed.
    primary: bool,
}

impl Controller for SyncController {
    fn name(&self) -> &'static str {
        self.name
    }

    fn resource(&self) -> Option<GroupResource> {
        Some(self.gr.clone())
    }

    fn workers(&self) -> usize {
        self.core.opts.object_workers
    }

    fn start_term(
        self: Arc<Self>,
        shard: Arc<dyn Shard>,
        queue: WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
        let mut t = self
            .core
            .term
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.primary {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<BoxFuture<'static, ()>>();
            let old = std::mem::take(&mut *t);
            for s in old.clusters.values() {
                s.queue().shut_down();
            }
            t.id = old.id + 1;
            t.spawn = Some(tx);
            let id = t.id;
            // Runs the cluster syncers of this term; aborting it (the term
            // ends) drops the set, which aborts them.
            let core = self.core.clone();
            tasks.push(Box::pin(async move {
                let _guard = ShutDownOnDrop(core, id);
                let mut set = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        Some(f) = rx.recv() => { set.spawn(f); }
                        Some(_) = set.join_next(), if !set.is_empty() => {}
                        else => return,
                    }
                }
            }));
            let core = self.core.clone();
            tasks.push(Box::pin(follow_placements_and_namespaces(core, shard)));
        }
        t.queues.insert(self.gr.clone(), queue);
        tasks
    }

    fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action>> {
        Box::pin(self.core.reconcile_object(&self.gr, key))
    }
}

/// Shuts the cluster queues of term `.1` down when its supervisor is
/// aborted (unless a new term has already replaced it).
struct ShutDownOnDrop(Arc<SyncCore>, u64);

impl Drop for ShutDownOnDrop {
    fn drop(&mut self) {
        let mut t = self.0.term.lock().unwrap_or_else(PoisonError::into_inner);
        if t.id != self.1 {
            return;
        }
        for s in t.clusters.values() {
            s.queue().shut_down();
        }
        t.clusters.clear();
        t.spawn = None;
    }
}

/// A placement's decision or selectors changed, or a namespace's labels:
/// requeue the objects they may place.
async fn follow_placements_and_namespaces(core: Arc<SyncCore>, shard: Arc<dyn Shard>) {
    let kinds = syncable();
    let requeue = |prefix_of: &dyn Fn(&GroupResource) -> Option<Prefix>| {
        for k in &kinds {
            let Some(prefix) = prefix_of(&k.gr) else {
                continue;
            };
            let _ = feed::scan_prefix(&*shard, &prefix, &mut |o: ObjectKey| {
                core.enqueue_object(&k.gr, feed::queue_key(&o));
            });
        }
    };
    let relevant = |v: Option<&crate::store::Record>| -> Value {
        let v: Value = v
            .and_then(|r| serde_json::from_slice(&r.value).ok())
            .unwrap_or(Value::Null);
        serde_json::json!([
            v["metadata"]["labels"],
            v["spec"],
            v["status"]["selectedClusters"],
            v["metadata"]["deletionTimestamp"]
        ])
    };
    let placements = super::placement::resource();
    let (sh, pl) = (shard.clone(), placements.clone());
    let a = feed::follow(
        sh,
        pl,
        || false,
        |ev| {
            if let Event::Changed(k, ch) = ev {
                if relevant(ch.prev.as_ref()) != relevant(ch.value.as_ref()) {
                    requeue(&|gr| Some(Prefix::workspace(gr, &k.workspace)));
                }
            }
        },
    );
    let b = feed::follow(
        shard.clone(),
        namespaces(),
        || false,
        |ev| {
            if let Event::Changed(k, ch) = ev {
                let labels = |v: Option<&crate::store::Record>| {
                    v.and_then(|r| serde_json::from_slice::<Value>(&r.value).ok())
                        .map(|v| v["metadata"]["labels"].clone())
                };
                if labels(ch.prev.as_ref()) != labels(ch.value.as_ref()) {
                    requeue(&|gr| Prefix::namespace(gr, &k.workspace, &k.name).ok());
                }
            }
        },
    );
    // A move's hold lifted (the workspace arrived here): everything of it
    // is looked at again.
    let c = feed::follow(
        shard.clone(),
        GroupResource::logical_clusters(),
        || false,
        |ev| {
            if let Event::Changed(k, ch) = ev {
                let held = |v: Option<&crate::store::Record>| {
                    v.and_then(|r| serde_json::from_slice::<Value>(&r.value).ok())
                        .is_some_and(|v| crate::shards::moving(&v).is_some())
                };
                if ch.value.is_some() && held(ch.prev.as_ref()) && !held(ch.value.as_ref()) {
                    requeue(&|gr| Some(Prefix::workspace(gr, &k.workspace)));
                }
            }
        },
    );
    let (ra, rb, rc) = tokio::join!(a, b, c);
    for r in [ra, rb, rc] {
        if let Err(e) = r {
            tracing::error!(error = %e, "the sync controller's placement feed stopped");
        }
    }
}
