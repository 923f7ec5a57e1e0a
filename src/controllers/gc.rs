//! The garbage collector: `metadata.ownerReferences` with kube's
//! Background, Foreground and Orphan propagation, within one workspace,
//! without a graph in memory.
//!
//! **Protocol.** kube's collector keeps every object of the cluster in an
//! in-memory graph fed by informers; at a million workspaces that is the
//! cost tmc exists to avoid. Here the relation lives in the store and is
//! written by the writes that change it ([`crate::owners`]):
//! - `/tmc/dependants/{ws}/{owner uid}/{group}/{resource}/[{ns}/]{name}`
//!   ([`Key::Dependant`]): one entry per ownerReference, written, changed
//!   or removed in the same transaction as every create, update, patch,
//!   apply or delete of the dependant (and the lifecycle controller's
//!   deletions);
//! - `/tmc/gc/{ws}/{owner|dependant}/{uid}` ([`Key::GcWork`]): work
//!   items, also in the same transaction: an owner deleted with
//!   Foreground or Orphan (it keeps a finalizer until this collector is
//!   done), any object removed (Background: its dependants, if any, are
//!   looked at; written whether the index holds any or not, so that a
//!   dependant created while the removal is in flight is not missed), a
//!   dependant whose references were added (is its owner there?).
//!
//! This collector runs on the shard's leader (always, like the lifecycle
//! controller, `--no-controllers` too), reads the work items from local
//! state, at the start of each term and after each change (at most every
//! [`PASS_INTERVAL`], and every [`RETRY`] while items wait), and processes
//! them by reading local state; it deletes an item once done (a
//! compare-and-swap on the item's revision: a newer item stays). A leader
//! change loses nothing and relists nothing: the next leader finds the
//! same items. Its memory is one page of items at a time.
//!
//! **Per item**, as kube's `attemptToDeleteItem` and
//! `processDeletingDependentsItem`:
//! - *dependant*: each ownerReference is resolved by kind, name and uid in
//!   the dependant's own workspace (a namespaced owner in the dependant's
//!   namespace, a cluster-scoped one anywhere in the workspace). An owner
//!   present with that uid and not being deleted in the foreground is
//!   *solid*; one being deleted in the foreground is *waiting*; one not
//!   found (or with another uid) is *absent*. With a solid owner the
//!   absent and waiting references are removed; without, and with a
//!   waiting owner and dependants of its own, the dependant is deleted in
//!   the foreground; otherwise it is deleted (Background, or the policy
//!   its own `orphan`/`foregroundDeletion` finalizer says). A reference
//!   whose kind is not served, or a namespaced owner named by a
//!   cluster-scoped dependant, is unresolvable and counts as solid (kube
//!   never collects those either).
//! - *owner, Background* (removed): each dependant of its uid is handled
//!   as above.
//! - *owner, Foreground*: each dependant not yet being deleted is handled
//!   as above (the owner is waiting); once no dependant with
//!   `blockOwnerDeletion: true` is left, `foregroundDeletion` is removed
//!   (and the owner goes with its last finalizer).
//! - *owner, Orphan*: the reference to it is removed from every
//!   dependant, then the `orphan` finalizer.
//!
//! **Workspaces.** A reference is resolved only in its own workspace:
//! the index and the items are per workspace, so deleting an owner in A
//! never touches B. A dependant in B naming a uid that exists only in A
//! has, in B, an absent owner: it is deleted as dangling (kube's rule,
//! decided so: B cannot see A, so A's objects cannot keep B's alive).
//!
//! Left out: a changed policy on an object already being deleted (kube
//! may add `orphan` then; here the first DELETE's policy stays); the
//! policy of a DELETE of a namespace or workspace (the lifecycle
//! controller deletes their contents whatever it says); `managedFields`
//! entries for the collector's own writes (kube's collector patches as
//! `generic-garbage-collector`); the `OwnerReferencesPermissionEnforcement`
//! admission check of `blockOwnerDeletion` (not enabled by default in
//! kube-apiserver either);
//! `Unresolvable` events kube records; cycle detection among foreground
//! deletions (kube's is heuristic); the collector reprocesses waiting
//! items every pass, so a Foreground owner with many blocking dependants
//! costs one index read per pass until they are gone.

use super::error::Error;
use super::keys::QueueKey;
use super::queue::WorkQueue;
use super::runtime::{Action, Controller};
use crate::object::{finalizers, is_deleting, meta_str};
use crate::owners::{self, OwnerRef, Policy, WorkItem};
use crate::shard::{BoxFuture, Shard};
use crate::store::{
    Expectation, GcRole, GroupResource, Key, ListOptions, ObjectKey, Prefix, Record, Txn, TxnOp,
    Workspace,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Least time between two passes over the work items.
pub const PASS_INTERVAL: Duration = Duration::from_millis(100);
/// How often items that wait (blocking dependants with finalizers) are
/// looked at again without a change.
pub const RETRY: Duration = Duration::from_secs(1);
/// Work items read per page.
const PAGE: usize = 256;

/// A kind the collector can resolve an ownerReference to.
#[derive(Debug, Clone)]
pub struct Kind {
    /// API group (`""` for the legacy group).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Its resource.
    pub resource: GroupResource,
    /// Namespaced.
    pub namespaced: bool,
}

/// The garbage collector (see the module doc).
pub struct GarbageCollector {
    kinds: Vec<Kind>,
}

/// What resolving an ownerReference found.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Solid,
    Waiting,
    Absent,
}

/// What handling one item came to.
enum Outcome {
    Done,
    Wait,
}

fn json_of(rec: &Record) -> Option<Value> {
    serde_json::from_slice(&rec.value).ok()
}

fn encode(v: &Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::invalid("object", e))
}

impl GarbageCollector {
    /// A collector resolving references to `kinds`.
    pub fn new(kinds: Vec<Kind>) -> Self {
        GarbageCollector { kinds }
    }

    /// One pass over every work item; true when some wait.
    pub async fn pass(&self, shard: &dyn Shard) -> Result<bool, Error> {
        let mut opts = ListOptions {
            limit: PAGE,
            ..Default::default()
        };
        let mut waiting = false;
        loop {
            let page = shard.list(&Prefix::gc_work(), &opts)?;
            let mut done = Vec::new();
            for rec in &page.items {
                let Some(Key::GcWork {
                    workspace,
                    role,
                    uid,
                }) = Key::decode(&rec.key)
                else {
                    continue;
                };
                let outcome = match serde_json::from_slice::<WorkItem>(&rec.value) {
                    Ok(item) => match item.object_key(&workspace) {
                        Some(k) => self.item(shard, role, &uid, &k, item.policy).await,
                        None => Ok(Outcome::Done),
                    },
                    Err(_) => Ok(Outcome::Done),
                };
                match outcome {
                    Ok(Outcome::Done) => done.push(TxnOp::delete(
                        Key::GcWork {
                            workspace,
                            role,
                            uid,
                        },
                        Expectation::ModRevision(rec.mod_revision),
                    )),
                    Ok(Outcome::Wait) => waiting = true,
                    Err(e) => {
                        tracing::debug!(error = %e, "garbage collection item failed; retrying");
                        waiting = true;
                    }
                }
            }
            if !done.is_empty() {
                // Items rewritten meanwhile stay: one at a time on a conflict.
                if let Err(e) = shard.write(Txn::new(done.clone())).await {
                    if !e.is_conflict() {
                        return Err(e.into());
                    }
                    for op in done {
                        let _ = shard.write(Txn::new(vec![op])).await;
                    }
                }
            }
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => return Ok(waiting),
            }
        }
    }

    async fn item(
        &self,
        shard: &dyn Shard,
        role: GcRole,
        uid: &str,
        key: &ObjectKey,
        policy: Option<Policy>,
    ) -> Result<Outcome, Error> {
        match (role, policy) {
            (GcRole::Dependant, _) | (GcRole::Owner, None) => {
                let Some(rec) = shard.get(&Key::from(key.clone()))? else {
                    return Ok(Outcome::Done);
                };
                if json_of(&rec).as_ref().and_then(|o| meta_str(o, "uid")) != Some(uid) {
                    return Ok(Outcome::Done);
                }
                self.attempt_delete(shard, key).await
            }
            (GcRole::Owner, Some(policy)) => {
                let current = shard
                    .get(&Key::from(key.clone()))?
                    .and_then(|r| json_of(&r).map(|o| (r, o)))
                    .filter(|(_, o)| meta_str(o, "uid") == Some(uid));
                match (current, policy) {
                    // Gone (or Background): its dependants, as kube's
                    // graph handles an owner's removal.
                    (None, _) | (_, Policy::Background) => {
                        self.each_dependant(shard, &key.workspace, uid, |_, _| true)
                            .await
                    }
                    (Some((rec, owner)), Policy::Foreground) => {
                        self.foreground(shard, key, uid, rec, owner).await
                    }
                    (Some((rec, owner)), Policy::Orphan) => {
                        self.orphan(shard, key, uid, rec, owner).await
                    }
                }
            }
        }
    }

    /// Handles (kube's attemptToDelete) each dependant of `uid` that
    /// `select` (given the entry and the dependant) picks.
    async fn each_dependant(
        &self,
        shard: &dyn Shard,
        ws: &Workspace,
        uid: &str,
        select: impl Fn(&Record, &Value) -> bool,
    ) -> Result<Outcome, Error> {
        let Ok(prefix) = Prefix::dependants_of(ws, uid) else {
            return Ok(Outcome::Done);
        };
        let mut outcome = Outcome::Done;
        for (entry, dep_key) in dependants(shard, &prefix)? {
            let Some(rec) = shard.get(&Key::from(dep_key.clone()))? else {
                continue;
            };
            let Some(dep) = json_of(&rec) else { continue };
            if !select(&entry, &dep) {
                continue;
            }
            if let Outcome::Wait = self.attempt_delete(shard, &dep_key).await? {
                outcome = Outcome::Wait;
            }
        }
        Ok(outcome)
    }

    async fn foreground(
        &self,
        shard: &dyn Shard,
        key: &ObjectKey,
        uid: &str,
        rec: Record,
        owner: Value,
    ) -> Result<Outcome, Error> {
        if !finalizers(&owner)
            .iter()
            .any(|f| f == owners::FOREGROUND_FINALIZER)
        {
            return Ok(Outcome::Done);
        }
        self.each_dependant(shard, &key.workspace, uid, |_, d| !is_deleting(d))
            .await?;
        // Blocking dependants left?
        let Ok(prefix) = Prefix::dependants_of(&key.workspace, uid) else {
            return Ok(Outcome::Done);
        };
        for (entry, dep_key) in dependants(shard, &prefix)? {
            if owners::index_blocks(&entry) && shard.get(&Key::from(dep_key))?.is_some() {
                return Ok(Outcome::Wait);
            }
        }
        self.drop_finalizer(shard, key, rec, &owner, owners::FOREGROUND_FINALIZER)
            .await
    }

    async fn orphan(
        &self,
        shard: &dyn Shard,
        key: &ObjectKey,
        uid: &str,
        rec: Record,
        owner: Value,
    ) -> Result<Outcome, Error> {
        if !finalizers(&owner)
            .iter()
            .any(|f| f == owners::ORPHAN_FINALIZER)
        {
            return Ok(Outcome::Done);
        }
        let Ok(prefix) = Prefix::dependants_of(&key.workspace, uid) else {
            return Ok(Outcome::Done);
        };
        for (_, dep_key) in dependants(shard, &prefix)? {
            let Some(drec) = shard.get(&Key::from(dep_key.clone()))? else {
                continue;
            };
            let Some(dep) = json_of(&drec) else { continue };
            if !self
                .remove_refs(shard, &dep_key, &drec, &dep, &[uid.to_string()])
                .await?
            {
                return Ok(Outcome::Wait);
            }
        }
        self.drop_finalizer(shard, key, rec, &owner, owners::ORPHAN_FINALIZER)
            .await
    }

    /// Removes finalizer `f` from the owner; the owner goes with its last
    /// finalizer.
    async fn drop_finalizer(
        &self,
        shard: &dyn Shard,
        key: &ObjectKey,
        rec: Record,
        owner: &Value,
        f: &str,
    ) -> Result<Outcome, Error> {
        let after = owners::without_finalizer(owner, f);
        let expect = Expectation::ModRevision(rec.mod_revision);
        let k = Key::from(key.clone());
        let mut ops = Vec::new();
        if is_deleting(&after) && finalizers(&after).is_empty() {
            ops.push(TxnOp::delete(k, expect));
            ops.extend(owners::removal_ops(key, owner));
        } else {
            ops.push(TxnOp::put_json(k, encode(&after)?, expect));
        }
        write(shard, ops).await
    }

    /// Removes the references to `uids` from dependant `key`; false on a
    /// lost race.
    async fn remove_refs(
        &self,
        shard: &dyn Shard,
        key: &ObjectKey,
        rec: &Record,
        dep: &Value,
        uids: &[String],
    ) -> Result<bool, Error> {
        let mut after = dep.clone();
        if let Some(Value::Array(refs)) = after.pointer_mut("/metadata/ownerReferences") {
            refs.retain(|r| {
                !r.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| uids.iter().any(|x| x == u))
            });
            if refs.is_empty() {
                if let Some(m) = after.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("ownerReferences");
                }
            }
        }
        if &after == dep {
            return Ok(true);
        }
        let mut ops = vec![TxnOp::put_json(
            Key::from(key.clone()),
            encode(&after)?,
            Expectation::ModRevision(rec.mod_revision),
        )];
        ops.extend(owners::index_ops(key, Some(dep), Some(&after)));
        Ok(matches!(write(shard, ops).await?, Outcome::Done))
    }

    /// kube's `attemptToDeleteItem` for dependant `key`.
    async fn attempt_delete(&self, shard: &dyn Shard, key: &ObjectKey) -> Result<Outcome, Error> {
        let Some(rec) = shard.get(&Key::from(key.clone()))? else {
            return Ok(Outcome::Done);
        };
        let Some(dep) = json_of(&rec) else {
            return Ok(Outcome::Done);
        };
        if is_deleting(&dep) {
            return Ok(Outcome::Done);
        }
        let refs = owners::owner_refs(&dep);
        if refs.is_empty() {
            return Ok(Outcome::Done);
        }
        let (mut solid, mut gone) = (false, Vec::new());
        let mut waiting = false;
        for r in &refs {
            match self.resolve(shard, key, r)? {
                Owner::Solid => solid = true,
                Owner::Waiting => {
                    waiting = true;
                    gone.push(r.uid.clone());
                }
                Owner::Absent => gone.push(r.uid.clone()),
            }
        }
        if solid {
            if gone.is_empty() {
                return Ok(Outcome::Done);
            }
            return Ok(
                match self.remove_refs(shard, key, &rec, &dep, &gone).await? {
                    true => Outcome::Done,
                    false => Outcome::Wait,
                },
            );
        }
        let uid = meta_str(&dep, "uid").unwrap_or("");
        let policy = if waiting && owners::has_dependants(shard, &key.workspace, uid)? {
            Policy::Foreground
        } else {
            let fs = finalizers(&dep);
            if fs.iter().any(|f| f == owners::ORPHAN_FINALIZER) {
                Policy::Orphan
            } else if fs.iter().any(|f| f == owners::FOREGROUND_FINALIZER) {
                Policy::Foreground
            } else {
                Policy::Background
            }
        };
        let d = owners::deletion(key, &rec, &dep, Some(policy))?;
        if d.ops.is_empty() {
            return Ok(Outcome::Done);
        }
        write(shard, d.ops).await
    }

    /// Resolves ownerReference `r` of dependant `dep` in `dep`'s
    /// workspace.
    fn resolve(&self, shard: &dyn Shard, dep: &ObjectKey, r: &OwnerRef) -> Result<Owner, Error> {
        let Some(kind) = self
            .kinds
            .iter()
            .find(|k| k.kind == r.kind && k.group == r.group())
        else {
            return Ok(Owner::Solid); // unresolvable: never collected
        };
        let ns = match (kind.namespaced, &dep.namespace) {
            (true, Some(ns)) => Some(ns.as_str()),
            (true, None) => return Ok(Owner::Solid), // unresolvable
            (false, _) => None,
        };
        let Ok(okey) = ObjectKey::with_rule(
            kind.resource.clone(),
            dep.workspace.clone(),
            ns,
            &r.name,
            crate::store::NameRule::PathSegment,
        ) else {
            return Ok(Owner::Absent);
        };
        let Some(rec) = shard.get(&Key::from(okey))? else {
            return Ok(Owner::Absent);
        };
        let Some(owner) = json_of(&rec) else {
            return Ok(Owner::Solid);
        };
        if meta_str(&owner, "uid") != Some(r.uid.as_str()) {
            return Ok(Owner::Absent);
        }
        let foreground = is_deleting(&owner)
            && finalizers(&owner)
                .iter()
                .any(|f| f == owners::FOREGROUND_FINALIZER);
        Ok(if foreground {
            Owner::Waiting
        } else {
            Owner::Solid
        })
    }
}

/// The index entries under `prefix` with the dependant each names.
fn dependants(shard: &dyn Shard, prefix: &Prefix) -> Result<Vec<(Record, ObjectKey)>, Error> {
    let mut out = Vec::new();
    let mut opts = ListOptions {
        limit: PAGE,
        ..Default::default()
    };
    loop {
        let page = shard.list(prefix, &opts)?;
        for rec in page.items {
            if let Some(Key::Dependant { object, .. }) = Key::decode(&rec.key) {
                out.push((rec, object));
            }
        }
        match page.continue_token {
            Some(t) => opts.continue_token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Writes `ops`: Done, or Wait after a lost race (the next pass reads
/// again).
async fn write(shard: &dyn Shard, ops: Vec<TxnOp>) -> Result<Outcome, Error> {
    match shard.write(Txn::new(ops)).await {
        Ok(_) => Ok(Outcome::Done),
        Err(e) if e.is_conflict() => Ok(Outcome::Wait),
        Err(e) => Err(e.into()),
    }
}

impl Controller for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    fn resource(&self) -> Option<GroupResource> {
        None // its own loop over the work items, from `start_term`
    }

    fn start_term(
        self: Arc<Self>,
        shard: Arc<dyn Shard>,
        queue: WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        vec![Box::pin(async move {
            let mut changes = shard.subscribe();
            while !queue.shutting_down() {
                let waiting = match self.pass(&*shard).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collection pass failed");
                        true
                    }
                };
                let wait = if waiting {
                    RETRY
                } else {
                    Duration::from_secs(3600)
                };
                let _ = tokio::time::timeout(wait, changes.changed()).await;
                tokio::time::sleep(PASS_INTERVAL).await;
            }
        })]
    }

    fn reconcile<'a>(&'a self, _key: &'a QueueKey) -> BoxFuture<'a, Result<Action, Error>> {
        Box::pin(async { Ok(Action::await_change()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{MemoryEngine, Store, StoreOptions};
    use serde_json::json;

    fn shard() -> LocalShard<MemoryEngine> {
        LocalShard::new(Arc::new(
            Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap(),
        ))
    }

    fn collector() -> GarbageCollector {
        GarbageCollector::new(vec![Kind {
            group: String::new(),
            kind: "ConfigMap".into(),
            resource: GroupResource::new("", "configmaps").unwrap(),
            namespaced: true,
        }])
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::namespaced(
            GroupResource::new("", "configmaps").unwrap(),
            Workspace::parse("root:a").unwrap(),
            "default",
            name,
        )
        .unwrap()
    }

    /// Creates ConfigMap `name` (uid `u-{name}`) as the API does.
    async fn create(shard: &dyn Shard, name: &str, owners: &[(&str, &str)], fins: &[&str]) {
        let refs: Vec<Value> = owners
            .iter()
            .map(|(kind, n)| {
                json!({"apiVersion": "v1", "kind": kind, "name": n, "uid": format!("u-{n}"),
                       "blockOwnerDeletion": true})
            })
            .collect();
        let obj = json!({"metadata": {"name": name, "namespace": "default",
            "uid": format!("u-{name}"), "ownerReferences": refs, "finalizers": fins}});
        let mut ops = vec![TxnOp::put_json(
            key(name),
            serde_json::to_vec(&obj).unwrap(),
            Expectation::Absent,
        )];
        ops.extend(owners::index_ops(&key(name), None, Some(&obj)));
        shard.write(Txn::new(ops)).await.unwrap();
    }

    fn get(shard: &dyn Shard, name: &str) -> Option<Value> {
        shard
            .get(&Key::from(key(name)))
            .unwrap()
            .map(|r| serde_json::from_slice(&r.value).unwrap())
    }

    async fn delete(shard: &dyn Shard, name: &str, policy: Policy) {
        let rec = shard.get(&Key::from(key(name))).unwrap().unwrap();
        let obj: Value = serde_json::from_slice(&rec.value).unwrap();
        let d = owners::deletion(&key(name), &rec, &obj, Some(policy)).unwrap();
        shard.write(Txn::new(d.ops)).await.unwrap();
    }

    /// Passes until nothing changes; whether items still wait.
    async fn settle(gc: &GarbageCollector, shard: &dyn Shard) -> bool {
        loop {
            let before = shard.revision();
            let waiting = gc.pass(shard).await.unwrap();
            if shard.revision() == before {
                return waiting;
            }
        }
    }

    #[tokio::test]
    async fn a_foreground_chain_waits_for_its_deepest_blocking_dependant() {
        let (s, gc) = (shard(), collector());
        create(&s, "o", &[], &[]).await;
        create(&s, "c", &[("ConfigMap", "o")], &[]).await;
        create(&s, "g", &[("ConfigMap", "c")], &["example.com/hold"]).await;
        assert!(!settle(&gc, &s).await, "the checks find every owner");
        delete(&s, "o", Policy::Foreground).await;
        assert!(settle(&gc, &s).await, "o waits");
        // c has a dependant of its own: deleted in the foreground too.
        let c = get(&s, "c").expect("c waits for g");
        assert!(is_deleting(&c));
        assert_eq!(finalizers(&c), [owners::FOREGROUND_FINALIZER]);
        assert!(is_deleting(&get(&s, "g").expect("g is held")));
        assert_eq!(
            finalizers(&get(&s, "o").unwrap()),
            [owners::FOREGROUND_FINALIZER]
        );
        // g's finalizer removed (as the API does it): the chain unwinds.
        let rec = s.get(&Key::from(key("g"))).unwrap().unwrap();
        let g = get(&s, "g").unwrap();
        let mut ops = vec![TxnOp::delete(
            Key::from(key("g")),
            Expectation::ModRevision(rec.mod_revision),
        )];
        ops.extend(owners::removal_ops(&key("g"), &g));
        s.write(Txn::new(ops)).await.unwrap();
        assert!(!settle(&gc, &s).await);
        assert!(get(&s, "c").is_none() && get(&s, "o").is_none());
        let left = s
            .list(
                &Prefix::dependants(&key("o").workspace),
                &ListOptions::default(),
            )
            .unwrap();
        assert!(
            left.items.is_empty(),
            "the index is empty: {:?}",
            left.items
        );
    }

    #[tokio::test]
    async fn unresolvable_kinds_keep_and_absent_owners_collect() {
        let (s, gc) = (shard(), collector());
        create(&s, "keep", &[], &[]).await;
        create(&s, "widget-owned", &[("Widget", "w")], &[]).await;
        create(&s, "dangling", &[("ConfigMap", "ghost")], &[]).await;
        create(
            &s,
            "mixed",
            &[("ConfigMap", "ghost"), ("ConfigMap", "keep")],
            &[],
        )
        .await;
        assert!(!settle(&gc, &s).await);
        assert!(get(&s, "widget-owned").is_some());
        assert!(get(&s, "dangling").is_none());
        let mixed = get(&s, "mixed").unwrap();
        let names: Vec<String> = owners::owner_refs(&mixed)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["keep"]);
        let ghost = Prefix::dependants_of(&key("x").workspace, "u-ghost").unwrap();
        assert!(s
            .list(&ghost, &ListOptions::default())
            .unwrap()
            .items
            .is_empty());
        assert!(s
            .list(&Prefix::gc_work(), &ListOptions::default())
            .unwrap()
            .items
            .is_empty());
    }
}
