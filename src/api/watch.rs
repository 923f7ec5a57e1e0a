//! The watch hub: one reader of the shard's change log fans changes out to
//! every open watch on this node.
//!
//! Protocol. The hub keeps `delivered`, the revision through which it has
//! handed every change to its subscribers. A watch that starts after
//! revision `S`:
//! 1. registers with its key prefix, under the hub's lock, and learns
//!    `P = delivered` at that instant: every change after `P` that falls
//!    under its prefix will arrive on its channel, in order;
//! 2. replays the changes in `(S, P]` from the change log itself (these
//!    may be older than the hub's position: resumption from an old
//!    resourceVersion), and only then drains its channel.
//!
//! So a watch sees every change after `S` exactly once and in revision
//! order, and the change log is read and each change decoded once for all
//! watches rather than once per watch.
//!
//! **Bookmarks** must never pass a change the watch was not sent: a client
//! resumes from a bookmark's resourceVersion (client-go does), so a
//! bookmark ahead of a queued or lost change would lose it for good. A
//! watch asks [`Subscription::progress`] for a bookmark's revision: under
//! the hub's lock it takes `delivered` and everything queued on its channel
//! (which the hub fills under the same lock, so those are exactly the
//! changes up to `delivered` not yet taken); it sends those first, then the
//! bookmark. A watch the hub dropped gets no bookmark.
//!
//! **Ending.** The hub stops feeding a watch, and says why
//! ([`Subscription::ended`]) once its channel is drained:
//! - [`Ended::TooSlow`]: its channel was full (a client that does not
//!   read). Its stream ends after what was queued; the client re-watches
//!   from the last resourceVersion it saw, as with kube-apiserver's watch
//!   cache, and gets the rest from the change log, never a skip.
//! - [`Ended::Expired`]: the hub fell behind the change log's window (a
//!   compaction, or a raft snapshot installed on this replica moved the
//!   state past it). A watch that is itself still inside the window
//!   subscribes again and replays from the log; the others end with a 410
//!   Expired ERROR event, and the client re-lists.
//! - [`Ended::Failed`]: the change log could not be read: an ERROR event.
//! - [`Ended::Gone`]: the watch's workspace left this shard (its
//!   LogicalCluster was deleted: moved to another shard, or deleted): a
//!   410 ERROR event after the changes before it, and the client re-lists
//!   (through the front proxy, from the shard that holds it now).
//!
//! A change whose value cannot be read (a Secret whose encryption key is
//! gone: [`Change::unreadable`]) is decoded with its error; only a watch
//! whose range holds that key ends with an ERROR event naming it.

use crate::shard::Shard;
use crate::store::{Change, Key, Prefix, Workspace};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::mpsc;

/// A change of an object, decoded once for every watch that sees it.
pub struct Decoded {
    /// The change.
    pub change: Change,
    /// The object's workspace.
    pub workspace: String,
    /// Its namespace.
    pub namespace: Option<String>,
    /// The new object (puts), as stored.
    pub new: Option<Value>,
    /// The object before the change, as stored.
    pub old: Option<Value>,
    /// Why the change cannot be shown ([`Change::unreadable`]).
    pub error: Option<String>,
}

impl Decoded {
    /// Decodes a change of an API object (`None` for other keys).
    pub fn new(change: Change) -> Option<Decoded> {
        let Key::Object(k) = Key::decode(&change.key)? else {
            return None;
        };
        let parse = |r: &Option<crate::store::Record>| {
            r.as_ref()
                .and_then(|r| serde_json::from_slice::<Value>(&r.value).ok())
        };
        Some(Decoded {
            new: match change.kind {
                crate::store::ChangeKind::Put => parse(&change.value),
                crate::store::ChangeKind::Delete => None,
            },
            old: parse(&change.prev),
            error: change.unreadable.clone(),
            workspace: k.workspace.as_str().to_string(),
            namespace: k.namespace,
            change,
        })
    }
}

/// Changes buffered per watch before it counts as too slow.
const CHANNEL: usize = 1024;

/// Why the hub stopped feeding a watch (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Its channel was full: the client does not read.
    TooSlow,
    /// The hub fell out of the change log: changes after `requested` are
    /// no longer there, only those after `oldest`.
    Expired {
        /// The hub's position.
        requested: u64,
        /// The change log's compacted revision.
        oldest: u64,
    },
    /// Reading the change log failed.
    Failed(String),
    /// The watch's workspace is no longer on this shard.
    Gone(String),
}

struct Subscriber {
    id: u64,
    prefix: Prefix,
    /// The one workspace watched, if one.
    workspace: Option<Workspace>,
    tx: mpsc::Sender<Arc<Decoded>>,
    ended: Arc<OnceLock<Ended>>,
}

struct Inner {
    delivered: u64,
    next_id: u64,
    subs: Vec<Subscriber>,
}

/// Fans the change log out to watches.
pub struct WatchHub {
    inner: Mutex<Inner>,
}

/// A registered watch: changes after `from` arrive on `rx`.
pub struct Subscription {
    /// Every change after this revision under the prefix arrives on `rx`.
    pub from: u64,
    /// The changes.
    pub rx: mpsc::Receiver<Arc<Decoded>>,
    id: u64,
    hub: Arc<WatchHub>,
    ended: Arc<OnceLock<Ended>>,
}

impl Subscription {
    /// Why the hub stopped feeding this watch (`None` while it feeds it;
    /// set before its channel closes).
    pub fn ended(&self) -> Option<Ended> {
        self.ended.get().cloned()
    }

    /// A revision this watch may send as a bookmark, and the changes it
    /// must send before: `(through, queued)`, where every change under
    /// the prefix up to `through` is either in `queued` (in order) or was
    /// taken from the channel before. `None` once the hub has dropped the
    /// watch (its stream must end without another bookmark).
    pub fn progress(&mut self) -> Option<(u64, Vec<Arc<Decoded>>)> {
        let inner = self.hub.lock();
        if !inner.subs.iter().any(|s| s.id == self.id) {
            return None;
        }
        // The hub fills channels under this lock: what is queued now is
        // exactly the changes up to `delivered` not taken yet.
        let mut queued = Vec::new();
        while let Ok(d) = self.rx.try_recv() {
            queued.push(d);
        }
        Some((inner.delivered, queued))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        inner.subs.retain(|s| s.id != self.id);
    }
}

impl WatchHub {
    /// Starts the hub's reader on the current tokio runtime.
    pub fn start(shard: Arc<dyn Shard>) -> Arc<WatchHub> {
        let hub = Arc::new(WatchHub {
            inner: Mutex::new(Inner {
                delivered: shard.revision(),
                next_id: 1,
                subs: Vec::new(),
            }),
        });
        tokio::spawn(run(hub.clone(), shard));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update of `Inner` is complete before anything that could
        // panic, so a poisoned lock still holds a consistent hub.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a watch of the keys under `prefix`.
    pub fn subscribe(self: &Arc<Self>, prefix: Prefix) -> Subscription {
        self.subscribe_in(prefix, None)
    }

    /// Registers a watch of the keys under `prefix`, all in `workspace`
    /// when one is named: the watch ends ([`Ended::Gone`]) when that
    /// workspace's LogicalCluster is deleted here.
    pub fn subscribe_in(
        self: &Arc<Self>,
        prefix: Prefix,
        workspace: Option<Workspace>,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let ended = Arc::new(OnceLock::new());
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subs.push(Subscriber {
            id,
            prefix,
            workspace,
            tx,
            ended: ended.clone(),
        });
        Subscription {
            from: inner.delivered,
            rx,
            id,
            hub: self.clone(),
            ended,
        }
    }

    /// The revision through which changes have been delivered.
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    /// Open watches.
    pub fn watchers(&self) -> usize {
        self.lock().subs.len()
    }
}

async fn run(hub: Arc<WatchHub>, shard: Arc<dyn Shard>) {
    let mut signal = shard.subscribe();
    loop {
        let after = hub.delivered();
        let changes = match crate::shard::read_whole_revisions(shard.as_ref(), after) {
            Ok(c) => c,
            Err(e) => {
                // Fell out of the change log (or it failed): every watch
                // is told why and ends (or, if it can, resumes from the
                // log itself); restart at the current revision.
                let why = match &e {
                    crate::shard::ShardError::Store(crate::store::Error::Compacted {
                        requested,
                        oldest,
                    }) => Ended::Expired {
                        requested: *requested,
                        oldest: *oldest,
                    },
                    other => Ended::Failed(other.to_string()),
                };
                tracing::warn!(error = %e, after, "watch hub lost its place; ending every watch");
                let mut inner = hub.lock();
                for s in inner.subs.drain(..) {
                    let _ = s.ended.set(why.clone());
                }
                inner.delivered = shard.revision();
                continue;
            }
        };
        if changes.is_empty() {
            if Arc::strong_count(&hub) == 1 {
                return; // nobody can subscribe any more
            }
            if shard.revision() > after {
                continue;
            }
            tokio::select! {
                r = signal.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            continue;
        }
        let mut inner = hub.lock();
        // One revision (one transaction) at a time, and to each watch
        // whole: a watch whose channel cannot take all of a revision's
        // changes for it is dropped before it gets any, so that a client
        // resuming from the last resourceVersion it saw misses nothing.
        let mut group: Vec<Arc<Decoded>> = Vec::new();
        let mut gone: Vec<Workspace> = Vec::new();
        let mut changes = changes.into_iter().peekable();
        while let Some(change) = changes.next() {
            let rev = change.revision;
            if let Some(ws) = logical_cluster_deleted(&change) {
                gone.push(ws);
            }
            if inner.subs.iter().any(|s| s.prefix.contains(&change.key)) {
                // Decoded once, outside nobody's interest.
                group.extend(Decoded::new(change).map(Arc::new));
            }
            if changes.peek().is_some_and(|c| c.revision == rev) {
                continue;
            }
            if !group.is_empty() {
                inner.subs.retain(|s| deliver(s, &group));
                group.clear();
            }
            for ws in gone.drain(..) {
                inner.subs.retain(|s| {
                    if s.workspace.as_ref() != Some(&ws) {
                        return true;
                    }
                    let _ = s.ended.set(Ended::Gone(format!(
                        "workspace {:?} is no longer on this shard (moved or deleted at \
                         revision {rev}): list it again",
                        ws.as_str()
                    )));
                    false
                });
            }
            inner.delivered = rev;
        }
    }
}

/// The workspace whose LogicalCluster `change` deletes, if it does.
fn logical_cluster_deleted(change: &Change) -> Option<Workspace> {
    const MARKERS: &[u8] = b"/registry/core.kcp.io/logicalclusters/";
    if change.kind != crate::store::ChangeKind::Delete || !change.key.starts_with(MARKERS) {
        return None;
    }
    match Key::decode(&change.key)? {
        Key::Object(o) if o.name == crate::store::keys::LOGICAL_CLUSTER_NAME => Some(o.workspace),
        _ => None,
    }
}

/// Hands `sub` the changes of one revision under its prefix, all or none;
/// false when it is too slow to take them (it is dropped then).
fn deliver(sub: &Subscriber, group: &[Arc<Decoded>]) -> bool {
    let mine = group
        .iter()
        .filter(|d| sub.prefix.contains(&d.change.key))
        .count();
    if mine == 0 {
        return true;
    }
    // The hub is the only sender: the room can only grow meanwhile.
    let kept = sub.tx.capacity() >= mine
        && group
            .iter()
            .filter(|d| sub.prefix.contains(&d.change.key))
            .all(|d| sub.tx.try_send(d.clone()).is_ok());
    if !kept {
        // It learns why once it has drained its channel.
        let _ = sub.ended.set(Ended::TooSlow);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{
        Expectation, GroupResource, MemoryEngine, ObjectKey, Store, StoreOptions, Txn, TxnOp,
        Workspace,
    };

    fn shard(retention: u64) -> Arc<LocalShard<MemoryEngine>> {
        let store = Store::open(
            MemoryEngine::new(),
            StoreOptions {
                sync: false,
                changes_retention: retention,
            },
        )
        .unwrap();
        Arc::new(LocalShard::new(Arc::new(store)))
    }

    fn key(ns: &str, name: &str) -> crate::store::Key {
        let gr = GroupResource::new("", "configmaps").unwrap();
        ObjectKey::namespaced(gr, Workspace::parse("root").unwrap(), ns, name)
            .unwrap()
            .into()
    }

    fn prefix(ns: &str) -> Prefix {
        let gr = GroupResource::new("", "configmaps").unwrap();
        Prefix::namespace(&gr, &Workspace::parse("root").unwrap(), ns).unwrap()
    }

    fn put(s: &LocalShard<MemoryEngine>, names: &[&str]) -> u64 {
        let ops = names
            .iter()
            .map(|n| TxnOp::put_json(key("ns", n), b"{}".to_vec(), Expectation::Any))
            .collect();
        s.store().commit(Txn::new(ops)).unwrap().revision
    }

    async fn caught_up(hub: &WatchHub, rev: u64) {
        while hub.delivered() < rev {
            tokio::task::yield_now().await;
        }
    }

    /// A bookmark's revision comes with every change up to it still
    /// queued for the watch: sending those first, the bookmark passes
    /// nothing.
    #[tokio::test(flavor = "current_thread")]
    async fn progress_hands_over_what_is_queued_up_to_it() {
        let s = shard(1_000);
        let hub = WatchHub::start(s.clone());
        let mut sub = hub.subscribe(prefix("ns"));
        let mut last = 0;
        for i in 0..3 {
            last = put(&s, &[&format!("c{i}")]);
        }
        caught_up(&hub, last).await;
        let (through, queued) = sub.progress().unwrap();
        assert_eq!(through, last);
        let revs: Vec<u64> = queued.iter().map(|d| d.change.revision).collect();
        assert_eq!(revs, vec![last - 2, last - 1, last]);
        assert!(sub.rx.try_recv().is_err());
        assert_eq!(sub.ended(), None);
    }

    /// A watch that does not read is dropped once its channel cannot take
    /// a whole revision: what it was handed is whole revisions in order,
    /// then it learns it was too slow, and gets no bookmark.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_watch_gets_whole_revisions_then_too_slow() {
        let s = shard(100_000);
        let hub = WatchHub::start(s.clone());
        let mut sub = hub.subscribe(prefix("ns"));
        let mut last = 0;
        for i in 0..CHANNEL - 1 {
            last = put(&s, &[&format!("c{i}")]);
            if i % 100 == 0 {
                caught_up(&hub, last).await;
            }
        }
        // One transaction of three objects: room for one only.
        let three = put(&s, &["x", "y", "z"]);
        let after = put(&s, &["after"]);
        caught_up(&hub, after).await;
        assert!(sub.progress().is_none(), "a dropped watch got a bookmark");
        let mut got = Vec::new();
        while let Some(d) = sub.rx.recv().await {
            got.push(d.change.revision);
        }
        assert_eq!(got.len(), CHANNEL - 1);
        assert_eq!(got.last(), Some(&last));
        assert!(!got.contains(&three));
        assert_eq!(sub.ended(), Some(Ended::TooSlow));
        assert_eq!(hub.watchers(), 0);
    }

    /// When the change log moves past the hub (a compaction while it was
    /// not reading, or a snapshot installed under it), every watch learns
    /// it expired: none goes on silently after a gap.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hub_behind_the_change_log_ends_its_watches_as_expired() {
        let s = shard(4);
        let hub = WatchHub::start(s.clone());
        let start = s.revision();
        let mut sub = hub.subscribe(prefix("ns"));
        // No await: the hub does not run while these commit.
        for i in 0..40 {
            put(&s, &[&format!("c{i}")]);
        }
        assert!(s.compacted_revision() > start);
        while sub.rx.recv().await.is_some() {}
        assert_eq!(
            sub.ended(),
            Some(Ended::Expired {
                requested: start,
                oldest: s.compacted_revision()
            })
        );
    }
}
