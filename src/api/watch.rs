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
//! watches rather than once per watch. A subscriber whose channel is full (a slow
//! client) is dropped; its stream ends and the client re-watches from its
//! last resourceVersion, as with kube-apiserver's watch cache. If the hub
//! falls behind the change log's retention, it drops every subscriber and
//! starts again from the current revision.

use crate::shard::Shard;
use crate::store::{Change, Key, Prefix};
use serde_json::Value;
use std::sync::{Arc, Mutex};
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
            workspace: k.workspace.as_str().to_string(),
            namespace: k.namespace,
            change,
        })
    }
}

/// Changes buffered per watch before it counts as too slow.
const CHANNEL: usize = 1024;

struct Subscriber {
    id: u64,
    prefix: Prefix,
    tx: mpsc::Sender<Arc<Decoded>>,
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
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.inner.lock().expect("hub lock");
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

    /// Registers a watch of the keys under `prefix`.
    pub fn subscribe(self: &Arc<Self>, prefix: Prefix) -> Subscription {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let mut inner = self.inner.lock().expect("hub lock");
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subs.push(Subscriber { id, prefix, tx });
        Subscription {
            from: inner.delivered,
            rx,
            id,
            hub: self.clone(),
        }
    }

    /// The revision through which changes have been delivered.
    pub fn delivered(&self) -> u64 {
        self.inner.lock().expect("hub lock").delivered
    }

    /// Open watches.
    pub fn watchers(&self) -> usize {
        self.inner.lock().expect("hub lock").subs.len()
    }
}

async fn run(hub: Arc<WatchHub>, shard: Arc<dyn Shard>) {
    let mut signal = shard.subscribe();
    loop {
        let after = hub.delivered();
        let changes = match read_whole_revisions(shard.as_ref(), after) {
            Ok(c) => c,
            Err(e) => {
                // Fell out of the change log (or it failed): everyone must
                // re-watch; restart at the current revision.
                tracing::warn!(error = %e, after, "watch hub lost its place; dropping all watches");
                let mut inner = hub.inner.lock().expect("hub lock");
                inner.subs.clear();
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
        let mut inner = hub.inner.lock().expect("hub lock");
        for change in changes {
            let rev = change.revision;
            if inner.subs.iter().any(|s| s.prefix.contains(&change.key)) {
                // Decoded once, outside nobody's interest.
                if let Some(d) = Decoded::new(change) {
                    let d = Arc::new(d);
                    inner.subs.retain(|s| {
                        if !s.prefix.contains(&d.change.key) {
                            return true;
                        }
                        // A full channel: the client is too slow; drop it.
                        s.tx.try_send(d.clone()).is_ok()
                    });
                }
            }
            inner.delivered = rev;
        }
    }
}

/// Changes after `after`, a bounded batch that never ends in the middle
/// of a revision (one transaction's changes share one revision).
pub fn read_whole_revisions(
    shard: &dyn Shard,
    after: u64,
) -> Result<Vec<Change>, crate::shard::ShardError> {
    const BATCH: usize = 1000;
    let mut changes = shard.changes_since(after, BATCH)?;
    if changes.len() < BATCH {
        return Ok(changes);
    }
    let last = changes.last().map(|c| c.revision).unwrap_or(after);
    if changes.first().map(|c| c.revision) == Some(last) {
        // One transaction larger than a batch: take it whole, reading
        // more until a later revision shows (never the whole backlog).
        let mut limit = 2 * BATCH;
        loop {
            let more = shard.changes_since(after, limit)?;
            if more.len() < limit || more.last().map(|c| c.revision) != Some(last) {
                return Ok(more
                    .into_iter()
                    .take_while(|c| c.revision == last)
                    .collect());
            }
            limit *= 2;
        }
    }
    changes.retain(|c| c.revision < last);
    Ok(changes)
}
