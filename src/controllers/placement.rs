//! The WorkloadPlacement controller: TMC's placement scheduler
//! (`pkg/reconciler/workload/placement` and the namespace scheduler of kcp
//! ≤ v0.11), with the decision as the pure [`super::schedule::schedule`].
//!
//! For each WorkloadPlacement:
//! - its **location workspace** is `spec.locationWorkspace` or its own.
//!   Another workspace's clusters are used only if the author of the
//!   placement's spec (recorded by the API server in the annotation
//!   [`crate::authz::author::AUTHOR_ANNOTATION`], which clients cannot
//!   set) may `use` `clusterregistrations.tmc.kcp.io` there, decided by
//!   the location's RBAC with the same code as the API
//!   ([`crate::authz::allowed`], through the shard). A location
//!   that may not be used and one that does not exist give the same
//!   `Scheduled` False, `LocationNotFound`, with the same message, and
//!   no decision (an empty one is kept, so that the location's index
//!   entry requeues the placement). A change of the ClusterRoles or
//!   ClusterRoleBindings of a location requeues its placements (a
//!   revoked grant drops the decision at once);
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

use super::error::{Error, Result};
use super::feed::{self, Event};
use super::finalizer::{finalizer, Cleanup};
use super::keys::QueueKey;
use super::objects::{self, set_condition, unix_now, Stored};
use super::queue::WorkQueue;
use super::remote::{OtherShards, Whereabouts};
use super::runtime::{Action, Controller};
use super::schedule::{self, ClusterInfo, Prepared, Reason};
use crate::shard::{BoxFuture, Shard, ShardError};
use crate::store::{
    Expectation, GroupResource, Key, ObjectKey, Prefix, Record, Txn, TxnOp, Workspace,
};
use crate::types::{
    ClusterRegistration, PlacementPhase, SelectedCluster, WorkloadPlacement,
    WorkloadPlacementStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The resource this controller reconciles.
pub fn resource() -> GroupResource {
    GroupResource::new(crate::types::GROUP, "workloadplacements").expect("valid")
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
    /// The cluster-scope RBAC of locations on other shards, with when.
    policies: Mutex<HashMap<Workspace, (Instant, Arc<crate::authz::rbac::Policy>)>>,
}

impl Catalog {
    /// An empty catalog whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Catalog {
            ttl,
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            policies: Mutex::new(HashMap::new()),
        }
    }

    /// The clusters of `ws` if read less than the TTL ago.
    fn fresh(&self, ws: &Workspace) -> Option<Arc<Prepared>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(ws)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    /// The clusters of `ws`.
    pub fn get(&self, shard: &dyn Shard, ws: &Workspace) -> Result<Arc<Prepared>, ShardError> {
        if let Some(c) = self.fresh(ws) {
            return Ok(c);
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
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::SeqCst) == epoch {
            entries.insert(ws.clone(), (Instant::now(), clusters.clone()));
        }
        Ok(clusters)
    }

    /// The clusters of `ws`, which shard `on` holds (listed from there).
    pub async fn get_remote(
        &self,
        others: &dyn OtherShards,
        on: &str,
        ws: &Workspace,
    ) -> Result<Arc<Prepared>> {
        if let Some(c) = self.fresh(ws) {
            return Ok(c);
        }
        let items = others
            .list_objects(on, ws, &super::cluster::resource())
            .await
            .map_err(Error::OtherShard)?;
        let clusters: Vec<ClusterInfo> = items
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ClusterRegistration>(v).ok())
            .filter(|reg| reg.metadata.deletion_timestamp.is_none())
            .map(|reg| cluster_info(&reg))
            .collect();
        let clusters = Arc::new(Prepared::new(clusters));
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(ws.clone(), (Instant::now(), clusters.clone()));
        Ok(clusters)
    }

    /// The cluster-scope RBAC of `ws`, which shard `on` holds (its
    /// ClusterRoles and ClusterRoleBindings, listed from there), cached
    /// like the clusters.
    pub async fn policy_remote(
        &self,
        others: &dyn OtherShards,
        on: &str,
        ws: &Workspace,
    ) -> Result<Arc<crate::authz::rbac::Policy>> {
        if let Some((at, p)) = self
            .policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(ws)
        {
            if at.elapsed() < self.ttl {
                return Ok(p.clone());
            }
        }
        let mut objs = Vec::new();
        for (plural, kind) in [
            ("clusterroles", "ClusterRole"),
            ("clusterrolebindings", "ClusterRoleBinding"),
        ] {
            let gr = GroupResource::new(crate::authz::rbac::RBAC_GROUP, plural)
                .map_err(Error::InvalidKey)?;
            let items = others
                .list_objects(on, ws, &gr)
                .await
                .map_err(Error::OtherShard)?;
            // A list's items need not say their kind.
            objs.extend(items.into_iter().filter_map(|mut o| {
                o.as_object_mut()?.insert("kind".into(), kind.into());
                Some(o)
            }));
        }
        let policy = Arc::new(crate::authz::rbac::Policy::from_objects(objs.iter()));
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ws.clone(), (Instant::now(), policy.clone()));
        Ok(policy)
    }

    /// Drops the entry of `ws`.
    pub fn invalidate(&self, ws: &Workspace) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.remove(ws);
    }

    fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
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
    others: Option<Arc<dyn OtherShards>>,
}

impl PlacementController {
    /// A controller over `shard`.
    pub fn new(shard: Arc<dyn Shard>, opts: PlacementOptions) -> Self {
        PlacementController {
            shard,
            opts,
            catalog: Catalog::new(opts.catalog_ttl),
            others: None,
        }
    }

    /// With `others`, locations on other shards are usable.
    pub fn with_others(mut self, others: Option<Arc<dyn OtherShards>>) -> Self {
        self.others = others;
        self
    }

    /// Where `location` lives.
    async fn whereabouts(&self, location: &Workspace) -> Result<Whereabouts> {
        super::remote::whereabouts(&*self.shard, self.others.as_deref(), location).await
    }

    /// The clusters of `location`, from wherever it lives.
    async fn clusters_of(&self, location: &Workspace, at: &Whereabouts) -> Result<Arc<Prepared>> {
        match at {
            Whereabouts::There(on) => {
                let Some(others) = &self.others else {
                    return Ok(Arc::new(Prepared::new(Vec::new())));
                };
                self.catalog.get_remote(others.as_ref(), on, location).await
            }
            _ => Ok(self.catalog.get(&*self.shard, location)?),
        }
    }

    /// May the placement `raw` of `ws` use the clusters of `location`
    /// (which lives `at`)? Its own workspace: yes. Another: if its
    /// recorded author may `use` ClusterRegistrations there and the
    /// workspace exists.
    async fn location_usable(
        &self,
        raw: &serde_json::Value,
        ws: &Workspace,
        location: &Workspace,
        at: &Whereabouts,
    ) -> Result<bool> {
        if location == ws {
            return Ok(true);
        }
        let Some(author) = crate::authz::author::author_of(raw) else {
            return Ok(false);
        };
        match at {
            Whereabouts::Here => Ok(crate::authz::allowed(
                &*self.shard,
                &author,
                location,
                &crate::authz::author::use_attributes(),
            )
            .await?),
            // The location's RBAC, read from its shard with its clusters.
            Whereabouts::There(on) => match &self.others {
                Some(o) => {
                    let policy = self.catalog.policy_remote(o.as_ref(), on, location).await?;
                    Ok(crate::authz::rbac::authorize(
                        &policy,
                        &author,
                        &crate::authz::author::use_attributes(),
                    ))
                }
                None => Ok(false),
            },
            Whereabouts::Nowhere => Ok(false),
        }
    }

    /// One reconcile; public for the benchmark.
    pub async fn reconcile_key(&self, key: &QueueKey) -> Result<Action> {
        let ws = key.workspace.clone();
        let okey = ObjectKey::cluster_scoped(resource(), ws.clone(), &key.name)?;
        let skey = Key::placement(ws.clone(), &key.name)?;
        let state_rec = self.shard.get(&skey)?;
        let Some(wp) = objects::read::<WorkloadPlacement>(&*self.shard, &okey)? else {
            let ops = decision_deletes(key, &skey, state_rec.as_ref());
            if !ops.is_empty() {
                self.shard.write(Txn::new(ops)).await?;
            }
            return Ok(Action::await_change());
        };
        // Deleting: the decision and its index entry go in one transaction
        // with the finalizer (CAS on the state and the object).
        let cleanup = decision_deletes(key, &skey, state_rec.as_ref());
        finalizer(
            &*self.shard,
            FINALIZER,
            &wp,
            || self.decide(key, &wp, skey, state_rec),
            || async { Ok(Cleanup::Done(cleanup)) },
        )
        .await
    }

    /// Schedules the placement `wp` (not being deleted, with the
    /// finalizer) and commits its decision and status.
    async fn decide(
        &self,
        key: &QueueKey,
        wp: &Stored<WorkloadPlacement>,
        skey: Key,
        state_rec: Option<Record>,
    ) -> Result<Action> {
        let ws = key.workspace.clone();
        let uid = wp.obj.metadata.uid.clone().unwrap_or_default();
        let spec = &wp.obj.spec;
        let location = match &spec.location_workspace {
            None => Ok(ws.clone()),
            Some(l) => Workspace::parse(l).map_err(|e| e.to_string()),
        };
        let now = unix_now();
        // Where the location lives, read once (its own workspace is here).
        let at = match &location {
            Ok(l) if *l == ws => Whereabouts::Here,
            Ok(l) => self.whereabouts(l).await?,
            Err(_) => Whereabouts::Nowhere,
        };
        let usable = match &location {
            Ok(l) => self.location_usable(&wp.raw, &ws, l, &at).await?,
            Err(_) => false,
        };
        let old_state = state_rec
            .as_ref()
            .and_then(|r| PlacementState::decode(&r.value));
        let location = match location {
            Ok(l) if usable => l,
            other => {
                // A location on another shard sends no changes here (its
                // RBAC, its creation): look again after a while.
                let mut again = None;
                let (why, writes) = match other {
                    Ok(l) => {
                        if matches!(at, Whereabouts::There(_)) {
                            again = Some(self.opts.catalog_ttl);
                        }
                        let who = crate::authz::author::author_of(&wp.raw)
                            .map(|u| format!("user {:?}", u.name))
                            .unwrap_or_else(|| "nobody recorded".to_string());
                        let why = format!(
                            "location workspace {l} does not exist, or the author of the \
                             placement's spec ({who}) may not use its ClusterRegistrations \
                             (verb \"use\" on clusterregistrations.tmc.kcp.io there)"
                        );
                        // No decision; an empty one stays at the location,
                        // whose index entry requeues this placement when the
                        // location's registrations or RBAC change.
                        let empty = PlacementState {
                            uid: uid.clone(),
                            location: l.to_string(),
                            clusters: Vec::new(),
                        };
                        let writes = state_writes(
                            key,
                            skey.clone(),
                            &state_rec,
                            old_state.as_ref(),
                            &empty,
                            &l,
                        )?;
                        (why, writes)
                    }
                    Err(e) => {
                        // No location, no decision: drop a previous one (and
                        // its index entry), so no deleted cluster waits on it.
                        (
                            format!("spec.locationWorkspace is not a workspace path: {e}"),
                            decision_deletes(key, &skey, state_rec.as_ref()),
                        )
                    }
                };
                let mut status = wp.obj.status.clone();
                status.phase = PlacementPhase::Pending;
                status.selected_clusters.clear();
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
                return self.commit(wp, status, writes, again).await;
            }
        };
        let clusters = self.clusters_of(&location, &at).await?;
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
        let mut again = mirror(&mut status, spec, &decision, &clusters, &location, now);
        if matches!(at, Whereabouts::There(_)) {
            // A location on another shard sends no changes here: look
            // again when its cached clusters expire.
            again = Some(again.map_or(self.opts.catalog_ttl, |a| a.min(self.opts.catalog_ttl)));
        }
        let writes = state_writes(key, skey, &state_rec, old_state.as_ref(), &state, &location)?;
        self.commit(wp, status, writes, again).await
    }

    async fn commit(
        &self,
        wp: &Stored<WorkloadPlacement>,
        mut status: WorkloadPlacementStatus,
        state_writes: Vec<TxnOp>,
        again: Option<Duration>,
    ) -> Result<Action> {
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
            self.shard.write(Txn::new(ops)).await?;
        }
        Ok(again.map_or_else(Action::await_change, Action::requeue))
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

/// The writes that replace the stored decision `old` (record `rec`) of
/// the placement `key` by `state` at `location`: the state (CAS) and, when
/// the location moved, its index entry. None when nothing changed.
fn state_writes(
    key: &QueueKey,
    skey: Key,
    rec: &Option<Record>,
    old: Option<&PlacementState>,
    state: &PlacementState,
    location: &Workspace,
) -> Result<Vec<TxnOp>> {
    let mut writes = Vec::new();
    if old == Some(state) {
        return Ok(writes);
    }
    writes.push(TxnOp::put_bincode(
        skey,
        state.encode(),
        match rec {
            Some(r) => Expectation::ModRevision(r.mod_revision),
            None => Expectation::Absent,
        },
    ));
    if old.map(|s| s.location.as_str()) != Some(location.as_str()) {
        writes.extend(index_delete(key, old));
        writes.push(TxnOp::put_bincode(
            Key::placement_at(location.clone(), key.workspace.clone(), &key.name)?,
            Vec::new(),
            Expectation::Any,
        ));
    }
    Ok(writes)
}

/// The writes that drop the stored decision of the placement `key`
/// (record `rec`, a compare-and-swap) and its index entry.
fn decision_deletes(key: &QueueKey, skey: &Key, rec: Option<&Record>) -> Vec<TxnOp> {
    let Some(rec) = rec else {
        return Vec::new();
    };
    let mut ops = vec![TxnOp::delete(
        skey.clone(),
        Expectation::ModRevision(rec.mod_revision),
    )];
    ops.extend(index_delete(
        key,
        PlacementState::decode(&rec.value).as_ref(),
    ));
    ops
}

/// Deletes the index entry of the placement `key` whose state was `old`.
fn index_delete(key: &QueueKey, old: Option<&PlacementState>) -> Option<TxnOp> {
    let location = Workspace::parse(&old?.location).ok()?;
    let k = Key::placement_at(location, key.workspace.clone(), &key.name).ok()?;
    Some(TxnOp::delete(k, Expectation::Any))
}

/// Mirrors `decision` into `status`; returns when to look again (the end
/// of the earliest grace period of an unhealthy chosen cluster).
fn mirror(
    status: &mut WorkloadPlacementStatus,
    spec: &crate::types::WorkloadPlacementSpec,
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
    fn resource(&self) -> Option<GroupResource> {
        Some(resource())
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
        let (this, q, sh) = (self.clone(), queue.clone(), shard.clone());
        // Who may use a location is decided by its cluster-wide RBAC: a
        // change there requeues the placements located at it.
        let rbac_feed: BoxFuture<'static, ()> = Box::pin(async move {
            let stop = q.clone();
            let rbac = |plural| GroupResource::new(crate::authz::rbac::RBAC_GROUP, plural);
            let grs = match (rbac("clusterroles"), rbac("clusterrolebindings")) {
                (Ok(a), Ok(b)) => vec![a, b],
                _ => return,
            };
            let r = feed::follow_changes(sh, grs, move || stop.shutting_down(), |k, _| {
                if let Err(e) = this.requeue_located_at(&k.workspace, &q) {
                    tracing::warn!(location = %k.workspace, error = %e,
                        "reading the placements of a location failed; they see the change at their next reconcile");
                }
            })
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the placement controller's RBAC feed stopped");
            }
        });
        let this = self.clone();
        vec![
            rbac_feed,
            Box::pin(async move {
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
            }),
        ]
    }
    fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action>> {
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
        let admin = crate::authz::User::new("admin", "", &["system:masters"]);
        placement_by(shard, tenant, location, &admin).await;
    }

    /// The placement `web` of `tenant` at `location`, its spec written by
    /// `author` (as the API server records it).
    async fn placement_by(
        shard: &dyn Shard,
        tenant: &str,
        location: &str,
        author: &crate::authz::User,
    ) {
        let key = ObjectKey::cluster_scoped(resource(), ws(tenant), "web").unwrap();
        put(
            shard,
            key,
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
            "metadata": {"name": "web", "uid": "u1", "generation": 1,
                         "annotations": {crate::authz::author::AUTHOR_ANNOTATION:
                                         crate::authz::author::author_value(author)}},
            "spec": {"locationWorkspace": location, "strategy": {"type": "Single"}}}),
        )
        .await;
    }

    fn status_of(shard: &dyn Shard, tenant: &str) -> serde_json::Value {
        let k = ObjectKey::cluster_scoped(resource(), ws(tenant), "web").unwrap();
        objects::read::<serde_json::Value>(shard, &k)
            .unwrap()
            .unwrap()
            .raw["status"]
            .clone()
    }

    #[tokio::test]
    async fn another_workspaces_clusters_need_the_authors_use_right_there() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        for name in ["loc", "t", "u"] {
            let k = Key::from(ObjectKey::workspace_object(&ws(&format!("root:{name}"))).unwrap());
            let Key::Object(k) = k else { unreachable!() };
            put(&*shard, k, json!({"metadata": {"name": name}})).await;
        }
        let reg =
            ObjectKey::cluster_scoped(super::super::cluster::resource(), ws("root:loc"), "east")
                .unwrap();
        put(&*shard, reg, json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
            "metadata": {"name": "east", "uid": "r1"},
            "spec": {"apiEndpoint": "https://10.0.0.1", "credentialsSecretRef": {"namespace": "s", "name": "s"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .await;
        let alice = crate::authz::User::new("alice", "u-a", &[]);
        // Stored straight into the shard: the controller checks again,
        // whatever the API let through.
        placement_by(&*shard, "root:t", "root:loc", &alice).await;
        placement_by(&*shard, "root:u", "root:nope", &alice).await;
        let c = PlacementController::new(shard.clone(), PlacementOptions::default());
        let (t, u) = (
            QueueKey::new(ws("root:t"), None, "web"),
            QueueKey::new(ws("root:u"), None, "web"),
        );
        for k in [&t, &u, &t, &u] {
            c.reconcile_key(k).await.unwrap(); // the finalizer, then the decision
        }
        let not_found = |tenant: &str| {
            let s = status_of(&*shard, tenant);
            let cond = s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == SCHEDULED)
                .unwrap()
                .clone();
            assert_eq!(cond["reason"], "LocationNotFound", "{s}");
            assert!(s.get("selectedClusters").is_none(), "{s}");
            cond["message"].as_str().unwrap().to_string()
        };
        let forbidden = not_found("root:t");
        let absent = not_found("root:u");
        assert_eq!(
            forbidden.replace("root:loc", "W"),
            absent.replace("root:nope", "W")
        );
        let decision = |tenant: &str| {
            let rec = shard
                .get(&Key::placement(ws(tenant), "web").unwrap())
                .unwrap()
                .unwrap();
            PlacementState::decode(&rec.value).unwrap().clusters
        };
        assert!(
            decision("root:t").is_empty(),
            "no decision without the right"
        );
        assert_eq!(
            located_at(&*shard, "root:loc"),
            ["/tmc/placements-by-location/root:loc/root:t/web"],
            "but an index entry, so that a grant requeues it"
        );

        // A grant in root:loc: the RBAC feed requeues root:t's placement,
        // which is then placed.
        let q = WorkQueue::new();
        let tasks = Arc::new(PlacementController::new(
            shard.clone(),
            PlacementOptions::default(),
        ))
        .start_term(shard.clone(), q.clone());
        let feeds: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for _ in 0..100 {
            tokio::task::yield_now().await; // the feeds start (at this revision)
        }
        let rbac = |plural: &str, name: &str| {
            ObjectKey::cluster_scoped(
                GroupResource::new(crate::authz::rbac::RBAC_GROUP, plural).unwrap(),
                ws("root:loc"),
                name,
            )
            .unwrap()
        };
        put(&*shard, rbac("clusterroles", "use"), json!({"kind": "ClusterRole", "metadata": {"name": "use"}, "rules": [
            {"verbs": ["use"], "apiGroups": ["tmc.kcp.io"], "resources": ["clusterregistrations"]}]}))
        .await;
        put(&*shard, rbac("clusterrolebindings", "alice"), json!({"kind": "ClusterRoleBinding", "metadata": {"name": "alice"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use"},
            "subjects": [{"kind": "User", "name": "alice"}]}))
        .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while q.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the RBAC change requeued nothing"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        q.shut_down();
        for f in feeds {
            f.abort();
        }
        c.reconcile_key(&t).await.unwrap();
        assert_eq!(decision("root:t"), ["east"]);
        assert_eq!(
            status_of(&*shard, "root:t")["selectedClusters"][0]["name"],
            "east"
        );
        // Revoked: the decision goes.
        let del = TxnOp::delete(rbac("clusterrolebindings", "alice"), Expectation::Any);
        shard.write(Txn::new(vec![del])).await.unwrap();
        c.reconcile_key(&t).await.unwrap();
        assert!(decision("root:t").is_empty());
        assert_eq!(not_found("root:t"), forbidden);
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
            let k = ObjectKey::workspace_object(&ws(&format!("{parent}:{name}")))
                .map(Key::from)
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
