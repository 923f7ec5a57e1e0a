//! The finalizer helper, modelled on kube-runtime's `finalizer.rs`: a
//! controller that must act before its objects go keeps a finalizer on
//! them, and [`finalizer`] runs the three steps in order:
//!
//! 1. an object not being deleted and without the finalizer gets it
//!    first, in a write of its own (kcp's committer: one write at a time),
//!    and nothing else happens in this reconcile: the write's change comes
//!    back through the feed, and the next reconcile acts;
//! 2. an object not being deleted and with the finalizer is reconciled
//!    ([`finalizer`]'s `apply`);
//! 3. an object being deleted is cleaned up (`cleanup`). When it answers
//!    [`Cleanup::Done`], the finalizer is removed in one transaction with
//!    the writes it returned (its own records: a placement's decision and
//!    index entry), a compare-and-swap on the object; removing the last
//!    finalizer deletes the object, as the API does. [`Cleanup::Wait`]
//!    keeps the finalizer and asks to come back (a cluster still named by
//!    a placement).
//!
//! Every write is a compare-and-swap on the revision read; a lost one is
//! [`Error::Conflict`], which the caller may treat as "await the change".
//!
//! Unlike kube-runtime, the cleanup also runs for an object being deleted
//! whose finalizer is already gone (someone removed it by hand, other
//! finalizers still hold the object): the controller's own records still
//! go. kube-runtime removes its finalizer with a JSON patch `test`; here
//! the compare-and-swap on the revision is that test.
//!
//! Not every finalizer fits: the sync controller's `tmc.kcp.io/sync` is on
//! an object only while copies of it may exist on member clusters, and is
//! written together with the object's cluster list
//! ([`super::sync::next_object`]), so it does not use this helper.

use super::error::{Error, Result};
use super::objects::{self, Stored};
use super::runtime::Action;
use crate::shard::Shard;
use crate::store::{Txn, TxnOp};
use std::future::Future;

/// What a cleanup decided.
#[derive(Debug)]
pub enum Cleanup {
    /// Done: remove the finalizer, in one transaction with these writes.
    Done(Vec<TxnOp>),
    /// Not yet: keep the finalizer; what to do next.
    Wait(Action),
}

/// Runs `apply` or `cleanup` for `obj` under the finalizer `name` (see
/// the module docs).
pub async fn finalizer<T, A, C>(
    shard: &dyn Shard,
    name: &str,
    obj: &Stored<T>,
    apply: impl FnOnce() -> A,
    cleanup: impl FnOnce() -> C,
) -> Result<Action>
where
    A: Future<Output = Result<Action>>,
    C: Future<Output = Result<Cleanup>>,
{
    if crate::object::is_deleting(&obj.raw) {
        let mut ops = match cleanup().await? {
            Cleanup::Wait(action) => return Ok(action),
            Cleanup::Done(ops) => ops,
        };
        if let Some(op) = objects::finalizer_write(obj, name, false)? {
            // The last finalizer's removal deletes the object: its
            // dependants index goes with it ([`crate::owners`]).
            if matches!(op, TxnOp::Delete { .. }) {
                ops.extend(crate::owners::removal_ops(&obj.key, &obj.raw));
            }
            ops.push(op);
        }
        if !ops.is_empty() {
            shard.write(Txn::new(ops)).await?;
        }
        return Ok(Action::await_change());
    }
    if let Some(op) = objects::finalizer_write(obj, name, true)? {
        shard.write(Txn::new(vec![op])).await?;
        return Ok(Action::await_change());
    }
    apply().await
}

/// `result`, with a lost compare-and-swap turned into
/// [`Action::await_change`]: for controllers whose writes only record what
/// they saw, so the change that beat them brings the key back anyway.
pub fn conflict_awaits_change(result: Result<Action>) -> Result<Action> {
    match result {
        Err(Error::Conflict) => Ok(Action::await_change()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{
        Expectation, GroupResource, Key, MemoryEngine, ObjectKey, Store, StoreOptions, Workspace,
    };
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const NAME: &str = "tmc.kcp.io/test";

    fn fixture() -> (LocalShard<MemoryEngine>, ObjectKey, Key) {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let gr = GroupResource::new("tmc.kcp.io", "workloadplacements").unwrap();
        let ws = Workspace::parse("root").unwrap();
        let key = ObjectKey::cluster_scoped(gr, ws.clone(), "p").unwrap();
        (LocalShard::new(st), key, Key::placement(ws, "p").unwrap())
    }

    async fn put(shard: &LocalShard<MemoryEngine>, key: Key, v: &Value) {
        let op = TxnOp::put_json(key, serde_json::to_vec(v).unwrap(), Expectation::Any);
        shard.write(Txn::new(vec![op])).await.unwrap();
    }

    /// Runs the helper once; counts which step ran.
    async fn step(
        shard: &LocalShard<MemoryEngine>,
        key: &ObjectKey,
        record: &Key,
        wait: bool,
        applied: &AtomicUsize,
        cleaned: &AtomicUsize,
    ) -> Result<Action> {
        let obj: Stored<Value> = objects::read(shard, key).unwrap().unwrap();
        finalizer(
            shard,
            NAME,
            &obj,
            || async {
                applied.fetch_add(1, Ordering::SeqCst);
                Ok(Action::requeue(Duration::from_secs(7)))
            },
            || async {
                cleaned.fetch_add(1, Ordering::SeqCst);
                Ok(if wait {
                    Cleanup::Wait(Action::requeue(Duration::from_secs(1)))
                } else {
                    Cleanup::Done(vec![TxnOp::delete(record.clone(), Expectation::Any)])
                })
            },
        )
        .await
    }

    #[tokio::test]
    async fn add_first_then_apply_then_cleanup_with_the_removal() {
        let (shard, key, record) = fixture();
        put(
            &shard,
            key.clone().into(),
            &json!({"metadata": {"name": "p", "uid": "u"}}),
        )
        .await;
        put(&shard, record.clone(), &json!({})).await;
        let (applied, cleaned) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let run = |wait| step(&shard, &key, &record, wait, &applied, &cleaned);
        // 1. The finalizer first, alone.
        assert_eq!(run(false).await.unwrap(), Action::await_change());
        assert_eq!(applied.load(Ordering::SeqCst), 0, "nothing else this time");
        let obj: Stored<Value> = objects::read(&shard, &key).unwrap().unwrap();
        assert_eq!(crate::object::finalizers(&obj.raw), vec![NAME.to_string()]);
        // 2. Then the reconcile, whose action is passed on.
        assert_eq!(
            run(false).await.unwrap(),
            Action::requeue(Duration::from_secs(7))
        );
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        // 3. Deleting: a cleanup that waits keeps the finalizer.
        let mut deleting = obj.raw.clone();
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        put(&shard, key.clone().into(), &deleting).await;
        assert_eq!(
            run(true).await.unwrap(),
            Action::requeue(Duration::from_secs(1))
        );
        assert!(shard.get(&key.clone().into()).unwrap().is_some());
        assert!(shard.get(&record).unwrap().is_some());
        // A cleanup that is done: its writes and the finalizer's removal
        // in one transaction; the last finalizer gone, the object is gone.
        assert_eq!(run(false).await.unwrap(), Action::await_change());
        assert_eq!(cleaned.load(Ordering::SeqCst), 2);
        assert_eq!(applied.load(Ordering::SeqCst), 1, "no apply while deleting");
        assert!(shard.get(&key.clone().into()).unwrap().is_none());
        assert!(shard.get(&record).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_lost_compare_and_swap_is_a_conflict() {
        let (shard, key, _) = fixture();
        put(
            &shard,
            key.clone().into(),
            &json!({"metadata": {"name": "p", "uid": "u"}}),
        )
        .await;
        let obj: Stored<Value> = objects::read(&shard, &key).unwrap().unwrap();
        // Changed after the read.
        put(
            &shard,
            key.clone().into(),
            &json!({"metadata": {"name": "p", "uid": "u", "labels": {"a": "b"}}}),
        )
        .await;
        let r = finalizer(
            &shard,
            NAME,
            &obj,
            || async { Ok(Action::await_change()) },
            || async { Ok(Cleanup::Done(vec![])) },
        )
        .await;
        assert!(matches!(r, Err(Error::Conflict)), "{r:?}");
        assert_eq!(conflict_awaits_change(r).unwrap(), Action::await_change());
    }
}
