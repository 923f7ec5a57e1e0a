//! The shard interface: how the API and the controllers reach data.
//!
//! A shard is one replicated store. Its users see five things and nothing of
//! raft or RocksDB:
//! - [`Shard::write`]: a compare-and-swap transaction, committed through
//!   the shard's leader (a follower forwards it) and applied here before
//!   the future resolves, so a read on this node afterwards sees it;
//! - [`Shard::barrier`]: the linearizable read point (raft's ReadIndex).
//!   Once it resolves, local reads reflect every write acknowledged anywhere
//!   before the barrier was asked for;
//! - local reads ([`Shard::get`], [`Shard::list`]), which are as fresh as
//!   this replica: linearizable after a barrier, possibly stale without;
//! - the change log ([`Shard::changes_since`]) and a revision signal
//!   ([`Shard::subscribe`]) for watches and controllers;
//! - [`Shard::is_leader`], for controllers that run on the leader only.
//!
//! [`read_whole_revisions`] reads the change log in bounded batches that
//! never end inside a transaction: the API's watch hub and the
//! controllers' feeds both read it so.

use crate::store::{Change, Committed, Key, ListOptions, ListPage, Prefix, Record, Txn};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a shard request failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// No leader can be reached now (election, partition); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The request timed out or leadership changed under it; a write may
    /// or may not have been applied.
    #[error("{0}")]
    Timeout(String),
    /// A store error: a failed precondition, a compacted revision, an
    /// invalid continue token, corruption.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Anything else (the node stopped, forwarding failed).
    #[error("{0}")]
    Internal(String),
}

impl ShardError {
    /// True when a compare-and-swap precondition failed: the data changed
    /// since it was read (retry on fresh state).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ShardError::Store(crate::store::Error::Conflict { .. })
        )
    }
}

/// One replicated store, as its users see it.
pub trait Shard: Send + Sync + 'static {
    /// Commits `txn` (through the leader) and waits until it is applied on
    /// this node.
    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<Committed, ShardError>>;
    /// Waits for a linearizable read point; returns the revision local
    /// reads are now at least at.
    fn barrier(&self) -> BoxFuture<'_, Result<u64, ShardError>>;
    /// Reads one key from local state.
    fn get(&self, key: &Key) -> Result<Option<Record>, ShardError>;
    /// Lists from local state, one page, consistent at one revision.
    fn list(&self, prefix: &Prefix, opts: &ListOptions) -> Result<ListPage, ShardError>;
    /// Changes after revision `after`, at most `limit` (0: all).
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, ShardError>;
    /// The local store revision.
    fn revision(&self) -> u64;
    /// The oldest revision the change log still holds changes after.
    fn compacted_revision(&self) -> u64;
    /// A signal that moves whenever the local revision does.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Every range of the local state that holds a key of workspace `ws`
    /// (`crate::store::Store::workspace_ranges`): for moving a workspace.
    fn workspace_ranges(&self, ws: &crate::store::Workspace) -> Result<Vec<Prefix>, ShardError>;
    /// [`Shard::list`] with values as they are at rest: an encrypted
    /// Secret stays encrypted (a workspace export). The same as `list`
    /// for a shard without a value transformer.
    fn list_at_rest(&self, prefix: &Prefix, opts: &ListOptions) -> Result<ListPage, ShardError> {
        self.list(prefix, opts)
    }
    /// The plain value of `stored`, the value at rest of the key `key`
    /// (encoded) on the shard it was exported from: a Secret encrypted
    /// there (AES-GCM authenticates the key too) is decrypted, if this
    /// shard holds its encryption key; anything else is returned as it
    /// is. A shard without encryption refuses an encrypted value.
    fn open_at_rest(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, ShardError> {
        match crate::store::digest::encryption_key_of(&stored) {
            Some(name) => Err(ShardError::Internal(format!(
                "{} is encrypted with key {name:?} and this shard has no encryption \
                 configuration",
                crate::store::error::printable_key(key)
            ))),
            None => Ok(stored),
        }
    }
    /// The names of the encryption keys this shard can decrypt with.
    fn at_rest_keys(&self) -> Vec<String> {
        Vec::new()
    }
    /// True while this node leads the shard.
    fn is_leader(&self) -> bool {
        *self.leadership().borrow()
    }
    /// Whether this node leads the shard, pushed on every change (by the
    /// raft event loop when the node's role changes).
    fn leadership(&self) -> tokio::sync::watch::Receiver<bool>;
}

/// What a shard's own data says of where workspace `ws` lives (see
/// `docs/sharding.md`): the one reading the API's existence check, its
/// admission and the controllers share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalView {
    /// This shard holds it (its LogicalCluster; `root` on the root shard).
    Held,
    /// Not held, but its Workspace object is here and names this shard
    /// (`spec.shard`, empty if it names none).
    Named(String),
    /// Neither it nor its Workspace object is here, but its parent is
    /// held here: it does not exist.
    ParentHeld,
    /// Nothing of it or its parent is here.
    Unknown,
}

/// [`LocalView`] of `ws` from `shard`'s data; `root_held`: this is the
/// root shard. At most three reads.
pub fn local_view(
    shard: &dyn Shard,
    ws: &crate::store::Workspace,
    root_held: bool,
) -> Result<LocalView, ShardError> {
    use crate::store::ObjectKey;
    let held = |w: &crate::store::Workspace| -> Result<bool, ShardError> {
        match w.parent() {
            None => Ok(root_held),
            Some(_) => Ok(shard
                .get(&Key::from(ObjectKey::logical_cluster(w)))?
                .is_some()),
        }
    };
    if held(ws)? {
        return Ok(LocalView::Held);
    }
    let Some(parent) = ws.parent() else {
        return Ok(LocalView::Unknown);
    };
    if let Some(k) = ObjectKey::workspace_object(ws) {
        if let Some(rec) = shard.get(&Key::from(k))? {
            let named = serde_json::from_slice::<serde_json::Value>(&rec.value)
                .ok()
                .and_then(|o| Some(o.pointer("/spec/shard")?.as_str()?.to_string()))
                .unwrap_or_default();
            return Ok(LocalView::Named(named));
        }
    }
    Ok(if held(&parent)? {
        LocalView::ParentHeld
    } else {
        LocalView::Unknown
    })
}

/// Changes after `after`, a bounded batch that never ends in the middle
/// of a revision (one transaction's changes share one revision).
pub fn read_whole_revisions(shard: &dyn Shard, after: u64) -> Result<Vec<Change>, ShardError> {
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

/// A shard of one store with no replication: always the leader, writes
/// commit directly. For unit tests and in-process benchmarks of code that
/// runs over [`Shard`].
pub struct LocalShard<E: crate::store::Engine> {
    store: std::sync::Arc<crate::store::Store<E>>,
    /// Always `true`.
    leadership: tokio::sync::watch::Sender<bool>,
}

impl<E: crate::store::Engine> LocalShard<E> {
    /// Wraps a store.
    pub fn new(store: std::sync::Arc<crate::store::Store<E>>) -> Self {
        LocalShard {
            store,
            leadership: tokio::sync::watch::Sender::new(true),
        }
    }

    /// The store.
    pub fn store(&self) -> &crate::store::Store<E> {
        &self.store
    }
}

impl<E: crate::store::Engine + Send + Sync + 'static> Shard for LocalShard<E> {
    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<Committed, ShardError>> {
        Box::pin(async move { Ok(self.store.commit(txn)?) })
    }
    fn barrier(&self) -> BoxFuture<'_, Result<u64, ShardError>> {
        Box::pin(async move { Ok(self.store.revision()) })
    }
    reads_from_store!(store);
    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leadership.subscribe()
    }
}

/// The read half of [`Shard`] for a shard whose reads are its replica's
/// own store (`self.$store`, a [`crate::store::Store`]): one key, a list
/// page, the change log, the revisions and the revision signal, each the
/// store's with its error as a [`ShardError::Store`]. Written once here
/// for [`LocalShard`] and the raft-backed shard
/// (`crate::raft::server::RaftShard`): `reads_from_store!(store);` inside
/// their `impl Shard`.
macro_rules! reads_from_store {
    ($store:ident) => {
        fn get(
            &self,
            key: &$crate::store::Key,
        ) -> Result<Option<$crate::store::Record>, $crate::shard::ShardError> {
            Ok(self.$store.get(key)?)
        }
        fn list(
            &self,
            prefix: &$crate::store::Prefix,
            opts: &$crate::store::ListOptions,
        ) -> Result<$crate::store::ListPage, $crate::shard::ShardError> {
            Ok(self.$store.list(prefix, opts)?)
        }
        fn changes_since(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<$crate::store::Change>, $crate::shard::ShardError> {
            Ok(self.$store.changes_since(after, limit)?)
        }
        fn revision(&self) -> u64 {
            self.$store.revision()
        }
        fn compacted_revision(&self) -> u64 {
            self.$store.compacted_revision()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
            self.$store.subscribe()
        }
        fn workspace_ranges(
            &self,
            ws: &$crate::store::Workspace,
        ) -> Result<Vec<$crate::store::Prefix>, $crate::shard::ShardError> {
            Ok(self.$store.workspace_ranges(ws)?)
        }
    };
}
pub(crate) use reads_from_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        Expectation, GroupResource, MemoryEngine, ObjectKey, Store, StoreOptions, TxnOp, Workspace,
    };

    /// One transaction of `n` puts; returns its revision.
    async fn txn_of(shard: &LocalShard<MemoryEngine>, from: usize, n: usize) -> u64 {
        let gr = GroupResource::new("", "configmaps").unwrap();
        let ws = Workspace::parse("root").unwrap();
        let ops = (from..from + n)
            .map(|i| {
                let k = ObjectKey::namespaced(gr.clone(), ws.clone(), "d", &format!("c{i}"));
                TxnOp::put_json(k.unwrap(), b"{}".to_vec(), Expectation::Any)
            })
            .collect();
        shard.write(Txn::new(ops)).await.unwrap().revision
    }

    #[tokio::test]
    async fn whole_revisions_are_read_in_batches_never_split() {
        let st = Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap();
        let shard = LocalShard::new(std::sync::Arc::new(st));
        // Three transactions of 600: a batch of 1000 ends inside the
        // second, which is left for the next read.
        let r1 = txn_of(&shard, 0, 600).await;
        let r2 = txn_of(&shard, 600, 600).await;
        let r3 = txn_of(&shard, 1200, 600).await;
        let got = read_whole_revisions(&shard, 0).unwrap();
        assert_eq!(got.len(), 600);
        assert!(got.iter().all(|c| c.revision == r1));
        let got = read_whole_revisions(&shard, r1).unwrap();
        assert_eq!(got.len(), 600);
        assert!(got.iter().all(|c| c.revision == r2));
        let got = read_whole_revisions(&shard, r2).unwrap();
        assert_eq!(got.len(), 600, "fewer than a batch: all of it");
        assert!(got.iter().all(|c| c.revision == r3));
        // One transaction larger than a batch comes whole, and alone.
        let big = txn_of(&shard, 2000, 2500).await;
        txn_of(&shard, 5000, 1).await;
        let got = read_whole_revisions(&shard, r3).unwrap();
        assert_eq!(got.len(), 2500);
        assert!(got.iter().all(|c| c.revision == big));
    }
}
