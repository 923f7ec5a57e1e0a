//! [`RaftShard`]: the raft-backed implementation of the shard interface
//! ([`Shard`]), which the API and the controllers of `tmc serve` and
//! `tmc dev` use.
//!
//! **Protocol.**
//! - [`Shard::write`] hands the transaction to the event loop; on the
//!   leader it is proposed and answered once committed and applied here. A
//!   follower forwards it once to the leader ([`Forwarder`], `POST
//!   /internal/txn`) and then waits until its own store has applied the
//!   leader's revision, so a read here afterwards sees the write
//!   (read-your-writes on every replica).
//! - [`Shard::barrier`] asks the event loop for a read point (raft's
//!   ReadIndex) and answers once this replica has applied up to it; the
//!   revision it returns is the local store's.
//! - Reads ([`Shard::get`], [`Shard::list`], the change log, the revision
//!   signal) go straight to the local store, never through the event loop.
//! - [`Shard::leadership`] is the event loop's leadership signal; it moves
//!   only when the node's role changes.
//!
//! Every request to the event loop is answered within 15 s, or fails with
//! [`CallError::NoAnswer`]; one refused because [`CLIENT_INFLIGHT`]
//! requests are in flight fails at once with [`CallError::Busy`]
//! ([`ShardError::Unavailable`]).
//!
//! Left out: reads are never forwarded (a follower reads its own store, made
//! fresh by a barrier when asked); a write whose forward failed is not
//! retried (its outcome is unknown: [`ShardError::Timeout`]).
//!
//! [`CLIENT_INFLIGHT`]: super::CLIENT_INFLIGHT

use super::super::Error;
use super::event_loop::{CallError, Health, Inbox, Input, Signals};
use super::forward::{ForwardedWrite, Forwarder, WireError};
use crate::shard::{BoxFuture, Shard, ShardError};
use crate::store::{Committed, Engine, Store, Txn};
use axum::http::Method;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// A running replica of a raft shard: the ways into its event loop, its
/// local store and its client to the other replicas. Clones share all of
/// it.
pub struct RaftShard<E: Engine> {
    /// This replica.
    pub id: u64,
    inbox: Inbox,
    /// KV addresses of the voters.
    pub kv_peers: BTreeMap<u64, String>,
    /// The store the event loop applies to; read here, written only by
    /// the event loop.
    store: Arc<Store<Arc<E>>>,
    /// Set by the event loop when the node's role changes.
    leader: watch::Receiver<bool>,
    health: watch::Receiver<Health>,
    forwarder: Forwarder,
    metrics: super::metrics::LoopMetrics,
    data_dir: Option<Arc<std::path::PathBuf>>,
}

impl<E: Engine> Clone for RaftShard<E> {
    fn clone(&self) -> Self {
        RaftShard {
            id: self.id,
            inbox: self.inbox.clone(),
            kv_peers: self.kv_peers.clone(),
            store: self.store.clone(),
            leader: self.leader.clone(),
            health: self.health.clone(),
            forwarder: self.forwarder.clone(),
            metrics: self.metrics.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

impl<E: Engine> RaftShard<E> {
    /// The shard of replica `id`, over a running event loop and the store
    /// it applies to.
    pub(super) fn new(
        id: u64,
        (inbox, signals, metrics): (Inbox, Signals, super::metrics::LoopMetrics),
        data_dir: Option<std::path::PathBuf>,
        store: Arc<Store<Arc<E>>>,
        kv_peers: BTreeMap<u64, String>,
        forwarder: Forwarder,
    ) -> Self {
        RaftShard {
            id,
            inbox,
            kv_peers,
            store,
            leader: signals.leader,
            health: signals.health,
            forwarder,
            metrics,
            data_dir: data_dir.map(Arc::new),
        }
    }

    /// Sends the event loop a request and waits (15 s at most) for its
    /// answer.
    pub(super) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.inbox.client(make(tx))?;
        match tokio::time::timeout(Duration::from_secs(15), rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(CallError::Stopped),
            Err(_) => Err(CallError::NoAnswer),
        }
    }

    /// On the leader, hands leadership to the most caught-up voter and
    /// waits (at most `within`) until this replica no longer leads; for a
    /// replica about to stop, so that the shard does not wait out an
    /// election timeout. Returns the voter it handed to; `None` when this
    /// replica did not lead (or has no other voter).
    pub async fn hand_over(&self, within: Duration) -> Option<u64> {
        let to = match self.call(Input::HandOver).await {
            Ok(Ok(to)) => to,
            Ok(Err(e)) => {
                tracing::debug!(node = self.id, error = %e, "no hand-over");
                return None;
            }
            Err(e) => {
                tracing::warn!(node = self.id, error = %e, "no hand-over: the event loop did not answer");
                return None;
            }
        };
        let mut health = self.health();
        let handed = tokio::time::timeout(
            within,
            health.wait_for(|h| h.leader.is_some() && h.leader != Some(self.id)),
        )
        .await;
        match handed {
            Ok(Ok(_)) => tracing::info!(node = self.id, to, "handed leadership over"),
            _ => tracing::warn!(
                node = self.id,
                to,
                ?within,
                "leadership was not taken over in time"
            ),
        }
        Some(to)
    }

    /// Writes a consistent checkpoint of the store into `dir` (a RocksDB
    /// checkpoint: hard links where it can; blocking).
    pub fn checkpoint(&self, dir: &std::path::Path) -> crate::store::Result<()> {
        self.store.checkpoint(dir)
    }

    /// The store engine's background work (compactions).
    pub fn engine_stats(&self) -> crate::store::EngineStats {
        self.store.engine().stats()
    }

    /// The bytes under the data directory, if it is known.
    pub async fn disk_bytes(&self) -> Option<u64> {
        let dir = self.data_dir.clone()?;
        tokio::task::spawn_blocking(move || super::metrics::dir_bytes(&dir))
            .await
            .ok()
    }

    /// The status of every member of the shard, as each reports it
    /// (`/status?disk=true` over the internal interface; this replica's
    /// own directly), in id order; a member that does not answer is an
    /// error naming it.
    pub async fn members_status(&self) -> Vec<(u64, Result<super::StatusReport, String>)> {
        let own = match self.call(Input::Status).await {
            Ok(s) => s,
            Err(e) => return vec![(self.id, Err(e.to_string()))],
        };
        let mut ids: Vec<u64> = own.voters.iter().chain(&own.learners).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let own = &own;
        let asks = ids.iter().map(|&id| async move {
            if id == self.id {
                let mut s = own.clone();
                s.disk_bytes = self.disk_bytes().await;
                return (id, Ok(s));
            }
            let answer = self
                .forwarder
                .request(id, axum::http::Method::GET, "/status?disk=true", Vec::new())
                .await;
            let parsed = match answer {
                Ok((code, body)) if code.is_success() => {
                    serde_json::from_slice::<super::StatusReport>(&body).map_err(|e| e.to_string())
                }
                Ok((code, body)) => Err(format!("{code}: {}", String::from_utf8_lossy(&body))),
                Err(e) => Err(e),
            };
            (id, parsed)
        });
        futures_util::future::join_all(asks).await
    }

    /// What the event loop measures ([`super::metrics`]).
    pub fn loop_metrics(&self) -> super::metrics::LoopMetrics {
        self.metrics.clone()
    }

    /// Whether this replica is ready to serve (see [`Health::ready`]).
    pub fn ready(&self) -> Result<(), String> {
        self.health.borrow().ready()
    }

    /// Changes whenever the event loop's [`Health`] does.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// The local store (read only: the event loop writes it).
    pub(super) fn store(&self) -> &Store<Arc<E>> {
        &self.store
    }

    /// This replica's client to the others' internal HTTP interface.
    pub(super) fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Commits `txn` here, or (when `forward` and this node knows another
    /// leader) on the leader through its `POST /internal/txn`, marked not
    /// to be forwarded again.
    pub(super) async fn write_txn(&self, txn: Txn, forward: bool) -> Result<Committed, WireError> {
        let to_forward = forward.then(|| txn.clone());
        match self.call(|tx| Input::Write(txn, tx)).await {
            Err(e) => Err(WireError::from(e)),
            Ok(Err(Error::NotLeader { leader: Some(l) })) if to_forward.is_some() => {
                let Some(addr) = self.kv_peers.get(&l) else {
                    return Err(WireError::NotLeader(Some(l)));
                };
                let body = serde_json::to_vec(&to_forward)
                    .map_err(|e| WireError::Internal(e.to_string()))?;
                let (code, raw) = self
                    .forwarder
                    .request(l, Method::POST, "/internal/txn", body)
                    .await
                    .map_err(|e| {
                        WireError::Forward(format!(
                            "forwarding to the leader {l} at {addr} failed: {e}"
                        ))
                    })?;
                let answer: ForwardedWrite = serde_json::from_slice(&raw).map_err(|e| {
                    WireError::Internal(format!(
                        "the leader {l} answered {code} with an unreadable body: {e}"
                    ))
                })?;
                let committed = answer?;
                // Read-your-writes on this node: wait until it has applied.
                self.wait_applied(committed.revision).await?;
                Ok(committed)
            }
            Ok(r) => r.map_err(WireError::from),
        }
    }

    /// Waits until the local store reaches `revision`.
    async fn wait_applied(&self, revision: u64) -> Result<(), WireError> {
        let mut sub = self.store.subscribe();
        let wait = async {
            while self.store.revision() < revision {
                if sub.changed().await.is_err() {
                    return Err(WireError::Internal("the store closed".into()));
                }
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .map_err(|_| {
                WireError::Timeout(format!(
                    "the write committed at revision {revision} was not applied here in time"
                ))
            })?
    }
}

impl<E: Engine> Shard for RaftShard<E> {
    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<Committed, ShardError>> {
        Box::pin(async move { self.write_txn(txn, true).await.map_err(ShardError::from) })
    }

    fn barrier(&self) -> BoxFuture<'_, Result<u64, ShardError>> {
        Box::pin(async move {
            match self.call(Input::Barrier).await {
                Err(e) => Err(WireError::from(e).into()),
                Ok(Ok(())) => Ok(self.store.revision()),
                Ok(Err(e)) => Err(match WireError::from(e) {
                    WireError::NotLeader(_) => ShardError::Unavailable(Error::NoLeader.to_string()),
                    other => other.into(),
                }),
            }
        })
    }

    crate::shard::reads_from_store!(store);

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }
}
