//! Events for controllers from the shard's local change log.
//!
//! No watch per workspace and no informer cache: a controller for one
//! resource first scans that resource across all workspaces of the shard
//! (one contiguous key range, paged), queueing every key, then follows the
//! store's change log from the scan's revision, queueing the key of every
//! change to that resource. The log is read in batches of whole
//! revisions ([`crate::shard::read_whole_revisions`]): a transaction
//! larger than a batch is read whole, never cut. If the log was compacted past where the feed
//! stood (the controller fell far behind), it scans again: a resync, the
//! only time it reads everything. Memory is the queue, whatever the number
//! of workspaces.

use super::keys::QueueKey;
use super::queue::WorkQueue;
use crate::shard::{Shard, ShardError};
use crate::store::{self, Change, GroupResource, Key, ListOptions, ObjectKey, Prefix};
use std::sync::Arc;

/// Page size of the start-up scan.
const SCAN_PAGE: usize = 1000;

/// The object key of `raw` if it is an object of `gr`.
pub fn object_key(gr: &GroupResource, raw: &[u8]) -> Option<ObjectKey> {
    match Key::decode(raw)? {
        Key::Object(o) if &o.gr == gr => Some(o),
        _ => None,
    }
}

/// The queue key of an object key.
pub fn queue_key(o: &ObjectKey) -> QueueKey {
    QueueKey::new(o.workspace.clone(), o.namespace.as_deref(), &o.name)
}

/// Calls `sink` with every object of `gr` on the shard (from local
/// state); returns the revision the scan was consistent at.
pub fn scan(
    shard: &dyn Shard,
    gr: &GroupResource,
    sink: &mut dyn FnMut(ObjectKey),
) -> Result<u64, ShardError> {
    scan_prefix(shard, &Prefix::resource(gr), &mut |k| {
        if &k.gr == gr {
            sink(k)
        }
    })
}

/// Calls `sink` with every object under `prefix` (from local state).
pub fn scan_prefix(
    shard: &dyn Shard,
    prefix: &Prefix,
    sink: &mut dyn FnMut(ObjectKey),
) -> Result<u64, ShardError> {
    let mut opts = ListOptions {
        limit: SCAN_PAGE,
        ..Default::default()
    };
    loop {
        let page = shard.list(prefix, &opts)?;
        for r in &page.items {
            if let Some(Key::Object(k)) = Key::decode(&r.key) {
                sink(k);
            }
        }
        match page.continue_token {
            Some(t) => opts.continue_token = Some(t),
            None => return Ok(page.revision),
        }
    }
}

/// What a feed hands its consumer.
pub enum Event<'a> {
    /// Found by a scan (at start, or a resync after compaction).
    Scanned(ObjectKey),
    /// A change of the change log.
    Changed(ObjectKey, &'a Change),
    /// A scan is over (what it found was handed on as `Scanned`): the
    /// consumer has seen every object; changes follow. A rescan after
    /// compaction starts with `Rescan`.
    ScanDone,
    /// The change log was compacted past the feed: what was scanned
    /// before comes again as `Scanned` (a consumer that counts starts
    /// over).
    Rescan,
}

/// Scans, then follows the change log, calling `sink` for objects of
/// `gr`, until `stopped` returns true. Returns an error only for a
/// store failure.
pub async fn follow(
    shard: Arc<dyn Shard>,
    gr: GroupResource,
    stopped: impl Fn() -> bool,
    mut sink: impl FnMut(Event<'_>),
) -> Result<(), ShardError> {
    let mut revisions = shard.subscribe();
    let mut at = scan(&*shard, &gr, &mut |k| sink(Event::Scanned(k)))?;
    sink(Event::ScanDone);
    loop {
        if stopped() {
            return Ok(());
        }
        match crate::shard::read_whole_revisions(&*shard, at) {
            Ok(changes) if !changes.is_empty() => {
                for ch in &changes {
                    if let Some(k) = object_key(&gr, &ch.key) {
                        sink(Event::Changed(k, ch));
                    }
                }
                at = changes.last().expect("not empty").revision;
                continue;
            }
            Ok(_) => {}
            Err(ShardError::Store(store::Error::Compacted { .. })) => {
                tracing::warn!(resource = %gr, from = at, "change log compacted past the feed; rescanning");
                sink(Event::Rescan);
                at = scan(&*shard, &gr, &mut |k| sink(Event::Scanned(k)))?;
                sink(Event::ScanDone);
                continue;
            }
            Err(e) => return Err(e),
        }
        // Caught up: wait for the next commit (or look again for shutdown).
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}

/// Follows the change log from the current revision, without a scan,
/// calling `sink` for changes of objects of any of `grs`, until `stopped`
/// returns true. For consumers that react to changes of a related
/// resource only; if the log was compacted past the follower it goes on
/// from the current revision (the main feed of the same log rescans
/// then, which requeues everything anyway).
pub async fn follow_changes(
    shard: Arc<dyn Shard>,
    grs: Vec<GroupResource>,
    stopped: impl Fn() -> bool,
    mut sink: impl FnMut(&ObjectKey, &Change),
) -> Result<(), ShardError> {
    let mut revisions = shard.subscribe();
    let mut at = shard.revision();
    loop {
        if stopped() {
            return Ok(());
        }
        match crate::shard::read_whole_revisions(&*shard, at) {
            Ok(changes) if !changes.is_empty() => {
                for ch in &changes {
                    if let Some(k) = grs.iter().find_map(|gr| object_key(gr, &ch.key)) {
                        sink(&k, ch);
                    }
                    at = ch.revision;
                }
                continue;
            }
            Ok(_) => {}
            Err(ShardError::Store(store::Error::Compacted { .. })) => {
                at = shard.revision();
                continue;
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}

/// Scans, then follows the change log, queueing keys of `gr` until the
/// queue shuts down.
pub async fn run(
    shard: Arc<dyn Shard>,
    gr: GroupResource,
    queue: WorkQueue<QueueKey>,
) -> Result<(), ShardError> {
    let q = queue.clone();
    follow(
        shard,
        gr,
        move || q.shutting_down(),
        |ev| match ev {
            Event::Scanned(k) | Event::Changed(k, _) => queue.add(queue_key(&k)),
            Event::ScanDone | Event::Rescan => {}
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{
        Expectation, MemoryEngine, ObjectKey, Store, StoreOptions, Txn, TxnOp, Workspace,
    };
    use std::time::Duration;

    fn put(st: &Store<MemoryEngine>, gr: &GroupResource, ws: &str, name: &str) {
        let k = ObjectKey::cluster_scoped(gr.clone(), Workspace::parse(ws).unwrap(), name).unwrap();
        st.commit(Txn::new(vec![TxnOp::put_json(
            k,
            b"{}".to_vec(),
            Expectation::Any,
        )]))
        .unwrap();
    }

    async fn next(q: &WorkQueue<QueueKey>) -> String {
        let k = tokio::time::timeout(Duration::from_secs(10), q.get())
            .await
            .expect("a key in time")
            .unwrap();
        q.done(&k);
        k.to_string()
    }

    /// Regression: the feed read the log 1,000 changes at a time and
    /// moved past the revision of the last one, losing the rest of a
    /// larger transaction (found by tests/controllers_memory.rs).
    #[tokio::test]
    async fn a_transaction_larger_than_a_batch_reaches_the_queue_whole() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let placements = GroupResource::new("tmc.kcp.io", "workloadplacements").unwrap();
        let q = WorkQueue::new();
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st.clone()));
        let feed = tokio::spawn(run(shard, placements.clone(), q.clone()));
        put(&st, &placements, "root:a", "first");
        assert_eq!(next(&q).await, "root:a|first");
        let ops = (0..2500)
            .map(|i| {
                let k = ObjectKey::cluster_scoped(
                    placements.clone(),
                    Workspace::parse("root:big").unwrap(),
                    &format!("p{i}"),
                )
                .unwrap();
                TxnOp::put_json(k, b"{}".to_vec(), Expectation::Any)
            })
            .collect();
        st.commit(Txn::new(ops)).unwrap();
        put(&st, &placements, "root:a", "after");
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 2501 {
            seen.insert(next(&q).await);
        }
        assert!(seen.contains("root:big|p2499") && seen.contains("root:a|after"));
        q.shut_down();
        tokio::time::timeout(Duration::from_secs(10), feed)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn scan_then_follow_only_the_resource() {
        let st = Arc::new(
            Store::open(
                MemoryEngine::new(),
                StoreOptions {
                    sync: false,
                    changes_retention: 4,
                },
            )
            .unwrap(),
        );
        let placements = GroupResource::new("tmc.kcp.io", "workloadplacements").unwrap();
        let other = GroupResource::new("tmc.kcp.io", "clusterregistrations").unwrap();
        put(&st, &placements, "root:a", "p1");
        put(&st, &other, "root:a", "c1");
        let q = WorkQueue::new();
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st.clone()));
        let feed = tokio::spawn(run(shard, placements.clone(), q.clone()));
        assert_eq!(next(&q).await, "root:a|p1", "the start-up scan");
        put(&st, &other, "root:b", "c2");
        put(&st, &placements, "root:b", "p2");
        assert_eq!(
            next(&q).await,
            "root:b|p2",
            "a change, and only of this resource"
        );
        // Fall behind past the retention window: the feed rescans.
        for i in 0..20 {
            put(&st, &other, "root:c", &format!("x{i}"));
        }
        put(&st, &placements, "root:c", "p3");
        // (No await between the puts: the feed cannot keep up.)
        let mut seen = vec![];
        while !seen.contains(&"root:c|p3".to_string()) {
            seen.push(next(&q).await);
        }
        assert!(
            seen.contains(&"root:a|p1".to_string()),
            "p1 again: a rescan happened: {seen:?}"
        );
        assert!(
            seen.iter().all(|k| k.contains("|p")),
            "no other resource: {seen:?}"
        );
        q.shut_down();
        tokio::time::timeout(Duration::from_secs(10), feed)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
