//! The WorkloadPlacement controller: TMC's placement scheduler
//! (`pkg/reconciler/workload/placement` and the namespace scheduler of kcp
//! ≤ v0.11), with the decision as the pure [`super::schedule::schedule`].
//!
//! For each WorkloadPlacement:
//! - its **location workspace** is `spec.locationWorkspace` or its own;
//!   a location that does not exist gives `Scheduled` False,
//!   `LocationNotFound`;
//! - the location's clusters come from the [`Catalog`]: its
//!   ClusterRegistrations read from local state, cached per workspace with
//!   a TTL and dropped when a registration changes in a way that matters
//!   to scheduling (labels, unschedulable, taints, readiness) — a
//!   heartbeat alone does not. Such a change also requeues every placement
//!   whose location it is, found through the index
//!   `/tmc/placements-by-location/<location>/<workspace>/<name>` kept in
//!   the store beside each decision (nothing per placement in memory:
//!   tests/controllers_memory.rs);
//! - the **previous decision** is internal state in the store,
//!   `/tmc/placements/<workspace>/<name>` (bincode: uid, location,
//!   clusters); it survives failover, so a new leader resumes it (no
//!   churn). A decision of an older object of the same name (other uid) or
//!   another location is not reused;
//! - the decision and the status mirroring it (`phase`, `selectedClusters`,
//!   conditions `Scheduled` and `Ready`) are written in one transaction, a
//!   compare-and-swap on both records;
//! - while a chosen cluster is unhealthy the key is requeued for the end
//!   of its grace period, when the decision replaces it;
//! - the finalizer `tmc.kcp.io/placement` holds a deleted placement until
//!   its decision and index entry are deleted (one transaction with the
//!   finalizer's removal).
//!
//! Left out: namespace and workload selection (issue 8's sync controller
//! reads `namespaceSelector`/`workloadSelector`), and scores other than
//! the rendezvous hash (capacity-aware spreading).

use super::feed::{self, Event};
use super::keys::QueueKey;
use super::objects::{self, set_condition, unix_now, Stored};
use super::queue::WorkQueue;
use super::runtime::Controller;
use super::schedule::{self, ClusterInfo, Prepared, Reason};
use crate::api::types::{
    ClusterRegistration, PlacementPhase, SelectedCluster, WorkloadPlacement,
    WorkloadPlacementStatus,
};
use crate::shard::{BoxFuture, Shard, ShardError};
use crate::store::{
    Expectation, GroupResource, Key, ObjectKey, Prefix, Record, Txn, TxnOp, Workspace,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The resource this controller reconciles.
pub fn resource() -> GroupResource {
    GroupResource::new(crate::api::types::GROUP, "workloadplacements").expect("valid")
}

/// The finalizer the controller keeps on every WorkloadPlacement: its
/// decision is deleted before the object is.
pub const FINALIZER: &str = "tmc.kcp.io/placement";

/// Condition types.
pub const SCHEDULED: &str = "Scheduled";
/// The readiness of the chosen clusters.
pub const READY: &str = "Ready";

/// A placement decision as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementState {
    /// uid of the WorkloadPlacement it belongs to.
    pub uid: String,
    /// The location workspace the clusters are in.
    pub location: String,
    /// Chosen ClusterRegistration names, sorted.
    pub clusters: Vec<String>,
}

impl PlacementState {
    /// Encodes as stored (bincode).
    pub fn encode(&self) -> Vec<u8> {
        objects::encode_state(self)
    }

    /// Decodes a stored state.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        objects::decode_state(bytes)
    }
}

/// What the scheduler knows of a registration.
pub fn cluster_info(reg: &ClusterRegistration) -> ClusterInfo {
    let ready = objects::condition(&reg.status.conditions, super::cluster::READY);
    ClusterInfo {
        name: reg.metadata.name.clone().unwrap_or_default(),
        labels: reg.metadata.labels.clone().unwrap_or_default(),
        unschedulable: reg.spec.unschedulable,
        taints: reg.spec.taints.clone(),
        ready: ready.is_some_and(|c| c.status == "True"),
        unhealthy_since: ready
            .filter(|c| c.status != "True")
            .map(|c| objects::secs(&c.last_transition_time)),
    }
}

fn info_of(rec: &Record) -> Option<ClusterInfo> {
    let reg: ClusterRegistration = serde_json::from_slice(&rec.value).ok()?;
    if reg.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(cluster_info(&reg))
}

/// When a location's list was read, and the list.
type CatalogEntry = (Instant, Arc<Prepared>);

/// The clusters of location workspaces, cached (see the module docs).
pub struct Catalog {
    ttl: Duration,
    entries: Mutex<HashMap<Workspace, CatalogEntry>>,
    /// Moves on every invalidation; a load that raced one is not cached.
    epoch: AtomicU64,
}

impl Catalog {
    /// An empty catalog whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Catalog {
            ttl,
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// The clusters of `ws`.
    pub fn get(&self, shard: &dyn Shard, ws: &Workspace) -> Result<Arc<Prepared>, ShardError> {
        if let Some((at, c)) = self.entries.lock().expect("lock").get(ws) {
            if at.elapsed() < self.ttl {
                return Ok(c.clone());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let prefix = Prefix::workspace(&super::cluster::resource(), ws);
        let mut opts = crate::store::ListOptions {
            limit: 1000,
            ..Default::default()
        };
        let mut clusters = Vec::new();
        loop {
            let page = shard.list(&prefix, &opts)?;
            clusters.extend(page.items.iter().filter_map(info_of));
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => break,
            }
        }
        let clusters = Arc::new(Prepared::new(clusters));
        let mut entries = self.entries.lock().expect("lock");
        if self.epoch.load(Ordering::SeqCst) == epoch {
            entries.insert(ws.clone(), (Instant::now(), clusters.clone()));
        }
        Ok(clusters)
    }

    /// Drops the entry of `ws`.
    pub fn invalidate(&self, ws: &Workspace) {
        let mut entries = self.entries.lock().expect("lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.remove(ws);
    }

    fn clear(&self) {
        let mut entries = self.entries.lock().expect("lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

/// Options of the controller.
#[derive(Debug, Clone, Copy)]
pub struct PlacementOptions {
    /// How long a location's cluster list is cached.
    pub catalog_ttl: Duration,
    /// Workers.
    pub workers: usize,
}

impl Default for PlacementOptions {
    fn default() -> Self {
        PlacementOptions {
            catalog_ttl: Duration::from_secs(30),
            workers: 4,
        }
    }
}

/// The controller.
pub struct PlacementController {
    shard: Arc<dyn Shard>,
    opts: PlacementOptions,
    catalog: Catalog,
}

impl PlacementController {
    /// A controller over `shard`.
    pub fn new(shard: Arc<dyn Shard>, opts: PlacementOptions) -> Self {
        PlacementController {
            shard,
            opts,
            catalog: Catalog::new(opts.catalog_ttl),
        }
    }

    fn location_exists(&self, ws: &Workspace, location: &Workspace) -> Result<bool, String> {
        if location == ws {
            return Ok(true);
        }
        match crate::api::handlers::workspace_object_key(location) {
            None => Ok(true), // root
            Some(k) => Ok(self.shard.get(&k).map_err(|e| e.to_string())?.is_some()),
        }
    }

    /// One reconcile; public for the benchmark.
    pub async fn reconcile_key(&self, key: &QueueKey) -> Result<Option<Duration>, String> {
        let ws = key.cluster.clone();
        let okey = ObjectKey::cluster_scoped(resource(), ws.clone(), &key.name)
            .map_err(|e| e.to_string())?;
        let skey = Key::placement(ws.clone(), &key.name).map_err(|e| e.to_string())?;
        let state_rec = self.shard.get(&skey).map_err(|e| e.to_string())?;
        let Some(wp) = objects::read::<WorkloadPlacement>(&*self.shard, &okey)? else {
            if let Some(rec) = state_rec {
                let mut ops = vec![TxnOp::delete(
                    skey,
                    Expectation::ModRevision(rec.mod_revision),
                )];
                ops.extend(index_delete(
                    key,
                    PlacementState::decode(&rec.value).as_ref(),
                ));
                self.write(Txn::new(ops)).await?;
            }
            return Ok(None);
        };
        if wp.obj.metadata.deletion_timestamp.is_some() {
            // Deleting: the decision, its index entry and the finalizer go
            // in one transaction (CAS on the state and the object); the
            // last finalizer's removal deletes the object.
            let mut ops = Vec::new();
            if let Some(rec) = &state_rec {
                ops.push(TxnOp::delete(
                    skey,
                    Expectation::ModRevision(rec.mod_revision),
                ));
                ops.extend(index_delete(
                    key,
                    PlacementState::decode(&rec.value).as_ref(),
                ));
            }
            ops.extend(objects::finalizer_write(&wp, FINALIZER, false)?);
            if !ops.is_empty() {
                self.write(Txn::new(ops)).await?;
            }
            return Ok(None);
        }
        if let Some(op) = objects::finalizer_write(&wp, FINALIZER, true)? {
            // One write at a time (kcp's committer): the finalizer first;
            // its change comes back through the feed for the decision.
            self.write(Txn::new(vec![op])).await?;
            return Ok(None);
        }
        let uid = wp.obj.metadata.uid.clone().unwrap_or_default();
        let spec = &wp.obj.spec;
        let location = match &spec.location_workspace {
            None => Ok(ws.clone()),
            Some(l) => Workspace::parse(l).map_err(|e| e.to_string()),
        };
        let now = unix_now();
        let location = match location {
            Ok(l) if self.location_exists(&ws, &l)? => l,
            bad => {
                let why = match bad {
                    Ok(l) => format!("location workspace {l} does not exist"),
                    Err(e) => format!("spec.locationWorkspace is not a workspace path: {e}"),
                };
                // No location, no decision: drop a previous one (and its
                // index entry), so no deleted cluster waits on it.
                let mut drop_state = Vec::new();
                if let Some(rec) = &state_rec {
                    drop_state.push(TxnOp::delete(
                        skey.clone(),
                        Expectation::ModRevision(rec.mod_revision),
                    ));
                    drop_state.extend(index_delete(
                        key,
                        PlacementState::decode(&rec.value).as_ref(),
                    ));
                }
                let mut status = wp.obj.status.clone();
                status.phase = PlacementPhase::Pending;
                set_condition(
                    &mut status.conditions,
                    SCHEDULED,
                    "False",
                    "LocationNotFound",
                    why.clone(),
                    now,
                );
                set_condition(
                    &mut status.conditions,
                    READY,
                    "False",
                    "LocationNotFound",
                    why,
                    now,
                );
                return self.commit(&wp, status, drop_state, None).await;
            }
        };
        let clusters = self
            .catalog
            .get(&*self.shard, &location)
            .map_err(|e| e.to_string())?;
        let old_state = state_rec
            .as_ref()
            .and_then(|r| PlacementState::decode(&r.value));
        let previous: &[String] = match &old_state {
            Some(s) if s.uid == uid && s.location == location.as_str() => &s.clusters,
            _ => &[],
        };
        let decision = clusters.schedule(&key.to_string(), spec, previous, now);
        let state = PlacementState {
            uid,
            location: location.to_string(),
            clusters: decision.clusters.clone(),
        };
        let mut status = wp.obj.status.clone();
        let again = mirror(&mut status, spec, &decision, &clusters, &location, now);
        let mut state_writes = Vec::new();
        if old_state.as_ref() != Some(&state) {
            state_writes.push(TxnOp::put_bincode(
                skey,
                state.encode(),
                match &state_rec {
                    Some(r) => Expectation::ModRevision(r.mod_revision),
                    None => Expectation::Absent,
                },
            ));
            if old_state.as_ref().map(|s| s.location.as_str()) != Some(location.as_str()) {
                state_writes.extend(index_delete(key, old_state.as_ref()));
                state_writes.push(TxnOp::put_bincode(
                    Key::placement_at(location.clone(), ws.clone(), &key.name)
                        .map_err(|e| e.to_string())?,
                    Vec::new(),
                    Expectation::Any,
                ));
            }
        }
        let r = self.commit(&wp, status, state_writes, again).await?;
        Ok(r)
    }

    async fn commit(
        &self,
        wp: &Stored<WorkloadPlacement>,
        mut status: WorkloadPlacementStatus,
        state_writes: Vec<TxnOp>,
        again: Option<Duration>,
    ) -> Result<Option<Duration>, String> {
        for c in status.conditions.iter_mut() {
            c.observed_generation = wp.obj.metadata.generation;
        }
        let mut ops = state_writes;
        if let Some(op) = objects::status_write(wp, &status)? {
            ops.push(op);
        } else if !ops.is_empty() {
            // The decision changes alone: still only if the object is as read.
            ops.push(TxnOp::Check {
                key: wp.key.clone().into(),
                expect: Expectation::ModRevision(wp.revision),
            });
        }
        if !ops.is_empty() {
            self.write(Txn::new(ops)).await?;
        }
        Ok(again)
    }

    async fn write(&self, txn: Txn) -> Result<(), String> {
        match self.shard.write(txn).await {
            Ok(_) => Ok(()),
            Err(ShardError::Store(crate::store::Error::Conflict { .. })) => {
                Err("changed while reconciling; retrying on fresh state".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Registration changes: drop the location's cached list and requeue
    /// its placements when something that matters to scheduling changed.
    fn registration_changed(
        &self,
        key: &ObjectKey,
        ch: &crate::store::Change,
        queue: &WorkQueue<QueueKey>,
    ) {
        let new = ch.value.as_ref().and_then(info_of);
        let old = ch.prev.as_ref().and_then(info_of);
        if new == old {
            return;
        }
        self.catalog.invalidate(&key.workspace);
        if let Err(e) = self.requeue_located_at(&key.workspace, queue) {
            tracing::warn!(location = %key.workspace, error = %e,
                "reading the placements of a location failed; they see the change at their next reconcile");
        }
    }

    /// Queues every placement located at `location` (read from the
    /// `/tmc/placements-by-location` index, a page at a time).
    fn requeue_located_at(
        &self,
        location: &Workspace,
        queue: &WorkQueue<QueueKey>,
    ) -> Result<(), ShardError> {
        let prefix = Prefix::placements_at(location);
        let mut opts = crate::store::ListOptions {
            limit: 1000,
            ..Default::default()
        };
        loop {
            let page = self.shard.list(&prefix, &opts)?;
            for r in &page.items {
                if let Some(Key::PlacementAt {
                    workspace, name, ..
                }) = Key::decode(&r.key)
                {
                    queue.add(QueueKey::new(workspace, None, &name));
                }
            }
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => return Ok(()),
            }
        }
    }
}

/// Deletes the index entry of the placement `key` whose state was `old`.
fn index_delete(key: &QueueKey, old: Option<&PlacementState>) -> Option<TxnOp> {
    let location = Workspace::parse(&old?.location).ok()?;
    let k = Key::placement_at(location, key.cluster.clone(), &key.name).ok()?;
    Some(TxnOp::delete(k, Expectation::Any))
}

/// Mirrors `decision` into `status`; returns when to look again (the end
/// of the earliest grace period of an unhealthy chosen cluster).
fn mirror(
    status: &mut WorkloadPlacementStatus,
    spec: &crate::api::types::WorkloadPlacementSpec,
    decision: &schedule::Decision,
    clusters: &Prepared,
    location: &Workspace,
    now: i64,
) -> Option<Duration> {
    status.selected_clusters = decision
        .clusters
        .iter()
        .map(|n| SelectedCluster {
            workspace: location.to_string(),
            name: n.clone(),
        })
        .collect();
    status.phase = if decision.clusters.is_empty() {
        PlacementPhase::Unschedulable
    } else {
        PlacementPhase::Bound
    };
    let n = decision.clusters.len();
    match decision.reason {
        Reason::Scheduled => set_condition(
            &mut status.conditions,
            SCHEDULED,
            "True",
            "Scheduled",
            format!("placed on {n} cluster(s) of workspace {location}"),
            now,
        ),
        Reason::NotEnoughClusters => set_condition(
            &mut status.conditions,
            SCHEDULED,
            "False",
            "NotEnoughClusters",
            format!(
                "placed on {n} cluster(s) of workspace {location}, fewer than the strategy wants: \
                 register more Ready clusters matching the clusterSelector"
            ),
            now,
        ),
        Reason::NoMatchingCluster => set_condition(
            &mut status.conditions,
            SCHEDULED,
            "False",
            "NoMatchingCluster",
            format!(
                "none of the {} ClusterRegistration(s) in workspace {location} is Ready, \
                 schedulable, matching the clusterSelector and without untolerated taints",
                clusters.clusters().len()
            ),
            now,
        ),
    }
    let grace = schedule::grace_secs(spec);
    let mut again: Option<i64> = None;
    let mut unhealthy = Vec::new();
    for name in &decision.clusters {
        let Some(c) = clusters.get(name) else {
            continue;
        };
        if c.ready {
            continue;
        }
        match c.unhealthy_since {
            Some(since) => {
                let left = (grace - (now - since)).max(0);
                again = Some(again.map_or(left, |a| a.min(left)));
                unhealthy.push(format!(
                    "{name} (not Ready since {}, moved in {left}s unless it recovers)",
                    objects::time(since).0
                ));
            }
            None => unhealthy.push(format!("{name} (not probed yet)")),
        }
    }
    if n == 0 {
        let (reason, msg) = {
            let c = objects::condition(&status.conditions, SCHEDULED).expect("just set");
            (c.reason.clone(), c.message.clone())
        };
        set_condition(&mut status.conditions, READY, "False", &reason, msg, now);
    } else if unhealthy.is_empty() {
        set_condition(
            &mut status.conditions,
            READY,
            "True",
            "ClustersReady",
            "every chosen cluster is Ready",
            now,
        );
    } else {
        set_condition(
            &mut status.conditions,
            READY,
            "False",
            "ClusterUnhealthy",
            format!("chosen cluster(s) not Ready: {}", unhealthy.join(", ")),
            now,
        );
    }
    again.map(|s| Duration::from_secs(s as u64 + 1))
}

impl Controller for PlacementController {
    fn name(&self) -> &'static str {
        "workloadplacement"
    }
    fn resource(&self) -> GroupResource {
        resource()
    }
    fn workers(&self) -> usize {
        self.opts.workers
    }
    fn start_term(
        self: Arc<Self>,
        shard: Arc<dyn Shard>,
        queue: WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        self.catalog.clear();
        let this = self.clone();
        vec![Box::pin(async move {
            let q = queue.clone();
            let r = feed::follow(
                shard,
                super::cluster::resource(),
                move || q.shutting_down(),
                |ev| {
                    if let Event::Changed(k, ch) = ev {
                        this.registration_changed(&k, ch, &queue);
                    }
                },
            )
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the placement controller's registration feed stopped");
            }
        })]
    }
    fn reconcile<'a>(
        &'a self,
        key: &'a QueueKey,
    ) -> BoxFuture<'a, Result<Option<Duration>, String>> {
        Box::pin(self.reconcile_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{MemoryEngine, Store, StoreOptions};
    use serde_json::json;

    fn ws(s: &str) -> Workspace {
        Workspace::parse(s).unwrap()
    }

    async fn put(shard: &dyn Shard, key: ObjectKey, v: serde_json::Value) {
        let op = TxnOp::put_json(key, serde_json::to_vec(&v).unwrap(), Expectation::Any);
        shard.write(Txn::new(vec![op])).await.unwrap();
    }

    async fn placement(shard: &dyn Shard, tenant: &str, location: &str) {
        let key = ObjectKey::cluster_scoped(resource(), ws(tenant), "web").unwrap();
        put(
            shard,
            key,
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
            "metadata": {"name": "web", "uid": "u1", "generation": 1},
            "spec": {"locationWorkspace": location, "strategy": {"type": "Single"}}}),
        )
        .await;
    }

    fn located_at(shard: &dyn Shard, location: &str) -> Vec<String> {
        let page = shard
            .list(&Prefix::placements_at(&ws(location)), &Default::default())
            .unwrap();
        page.items
            .iter()
            .map(|r| String::from_utf8(r.key.clone()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_location_index_lives_in_the_store_and_follows_moves_and_deletes() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        for (parent, name) in [("root", "east"), ("root", "west")] {
            let k = crate::api::handlers::workspace_object_key(&ws(&format!("{parent}:{name}")))
                .unwrap();
            let Key::Object(k) = k else { unreachable!() };
            put(&*shard, k, json!({"metadata": {"name": name}})).await;
        }
        placement(&*shard, "root:a", "root:east").await;
        placement(&*shard, "root:b", "root:east").await;
        let c = PlacementController::new(shard.clone(), PlacementOptions::default());
        let (a, b) = (
            QueueKey::new(ws("root:a"), None, "web"),
            QueueKey::new(ws("root:b"), None, "web"),
        );
        for k in [&a, &b] {
            c.reconcile_key(k).await.unwrap();
            assert!(
                located_at(&*shard, "root:east").is_empty(),
                "first the finalizer"
            );
        }
        let akey = ObjectKey::cluster_scoped(resource(), ws("root:a"), "web").unwrap();
        let stored: Stored<serde_json::Value> = objects::read(&*shard, &akey).unwrap().unwrap();
        assert_eq!(stored.raw["metadata"]["finalizers"], json!([FINALIZER]));
        c.reconcile_key(&a).await.unwrap();
        c.reconcile_key(&b).await.unwrap();
        assert_eq!(
            located_at(&*shard, "root:east"),
            [
                "/tmc/placements-by-location/root:east/root:a/web",
                "/tmc/placements-by-location/root:east/root:b/web"
            ]
        );
        let q = WorkQueue::new();
        c.requeue_located_at(&ws("root:east"), &q).unwrap();
        assert_eq!(
            q.len(),
            2,
            "both placements located at root:east are queued"
        );
        // A move: the entry follows, in the same transaction as the state.
        placement(&*shard, "root:a", "root:west").await;
        c.reconcile_key(&a).await.unwrap(); // (the put dropped the finalizer)
        c.reconcile_key(&a).await.unwrap();
        assert_eq!(
            located_at(&*shard, "root:east"),
            ["/tmc/placements-by-location/root:east/root:b/web"]
        );
        assert_eq!(
            located_at(&*shard, "root:west"),
            ["/tmc/placements-by-location/root:west/root:a/web"]
        );
        // Deleted through the API (deletionTimestamp, kept by the
        // finalizer): decision, entry and finalizer go, then the object.
        let mut marked = objects::read::<serde_json::Value>(&*shard, &akey)
            .unwrap()
            .unwrap()
            .raw;
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        put(&*shard, akey.clone(), marked).await;
        c.reconcile_key(&a).await.unwrap();
        assert!(located_at(&*shard, "root:west").is_empty());
        assert!(shard
            .get(&Key::placement(ws("root:a"), "web").unwrap())
            .unwrap()
            .is_none());
        assert!(shard.get(&akey.clone().into()).unwrap().is_none(), "gone");
        // Removed without a finalizer (older objects): cleaned up too.
        let bkey = ObjectKey::cluster_scoped(resource(), ws("root:b"), "web").unwrap();
        let del = TxnOp::delete(bkey, Expectation::Any);
        shard.write(Txn::new(vec![del])).await.unwrap();
        c.reconcile_key(&b).await.unwrap();
        assert!(located_at(&*shard, "root:east").is_empty());
        assert!(shard
            .get(&Key::placement(ws("root:b"), "web").unwrap())
            .unwrap()
            .is_none());
    }

    #[test]
    fn state_round_trips() {
        let s = PlacementState {
            uid: "u".into(),
            location: "root:compute".into(),
            clusters: vec!["a".into(), "b".into()],
        };
        assert_eq!(PlacementState::decode(&s.encode()), Some(s));
        assert_eq!(PlacementState::decode(b"\xff"), None);
    }
}
