//! One replica of a raft shard, as `tmc serve` (and, with one voter and no
//! raft port, `tmc dev`) runs it: four pieces, each in a module of its own:
//!
//! - [`event_loop`]: one thread owns the raft [`Node`] and runs it on a
//!   real clock: ticks, messages from peers, client requests (writes, read
//!   points, status, membership), then the node's output (messages to
//!   send, answers to give). Disk writes (fsync) happen on this thread,
//!   never on a tokio runtime. Every queue into it is bounded.
//! - [`transport`]: the peer transport, TCP with mutual TLS ([`PeerTls`];
//!   plain with `--insecure-peers`). It runs on a runtime of its own (one
//!   thread), apart from the runtime of the API and the internal HTTP
//!   interface: API work never delays a heartbeat, a vote or an append.
//! - [`RaftShard`] ([`shard`]): the raft-backed implementation of the
//!   shard interface ([`crate::shard::Shard`]) the API and the controllers
//!   use: writes and read points through the event loop, reads from the
//!   local store, follower writes forwarded to the leader ([`forward`]:
//!   one kept-alive client per replica).
//! - The internal HTTP interface ([`kv`]: the router and its handlers,
//!   the `members` module for membership; [`internal`]: the server, which
//!   tells each request who sent it): `/kv`, `/txn`, `/internal/txn`,
//!   `/status`, `/members`, over the same mutual TLS as the transport.
//!
//! [`start`] wires them: it opens the node, binds the raft port, starts
//! the transport and the event loop, and returns the [`RaftShard`]; the
//! caller serves [`router`] with [`internal::serve`].
//!
//! Left out: stopping a replica in-process (the transport's thread runs
//! until the process exits; the event loop ends only once every clone of
//! the [`RaftShard`] is gone), and changing `--peers` or `--kv-peers`
//! while it runs.

use super::tls::PeerTls;
use super::{Node, NodeConfig};
use crate::store::{Engine, StoreOptions};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod event_loop;
pub mod forward;
pub mod internal;
pub mod join;
pub mod kv;
mod members;
pub mod metrics;
pub mod shard;
pub mod transport;

pub use event_loop::{
    CallError, Health, Inbox, Input, PeerInput, StatusReport, CLIENT_BATCH, CLIENT_INFLIGHT,
    PEER_INBOX, READY_LAG,
};
pub use forward::{Forwarder, WireError};
pub use internal::Caller;
pub use kv::{router, KvRecord, ReadOp, ReadParams, ReadResult, NO_FORWARD};
pub use shard::RaftShard;
pub use transport::{OutQueue, Outbound};

/// Settings of one served replica.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This replica.
    pub id: u64,
    /// Raft address (`host:port`) of every replica that may be a member:
    /// a name is resolved again at every connection attempt (a pod's
    /// address changes when it is rescheduled), and a peer is dialled only
    /// once raft has something to send it.
    pub peers: BTreeMap<u64, String>,
    /// Where this node's raft port listens; `None` (a one-voter
    /// `tmc dev`): no raft port at all.
    pub listen: Option<SocketAddr>,
    /// Internal HTTP address of every voter: where writes are forwarded,
    /// and what "not leader" answers name.
    pub kv_peers: BTreeMap<u64, String>,
    /// Wall-clock length of one logical tick.
    pub tick: Duration,
    /// Mutual TLS between replicas (raft and internal HTTP); `None`: plain
    /// TCP, for tests that inject faults into the byte stream.
    pub tls: Option<Arc<PeerTls>>,
    /// The replica's data directory, whose size `/status?disk=true` and the
    /// metrics report (`None`: not reported).
    pub data_dir: Option<std::path::PathBuf>,
}

/// Opens the node and starts the transport and the event loop; returns
/// the replica's [`RaftShard`], which [`router`] serves and the API and
/// the controllers use. Must be called within a tokio runtime.
pub async fn start<E: Engine>(
    engine: E,
    cfg: ServerConfig,
    node_cfg: NodeConfig,
) -> Result<RaftShard<E>, Box<dyn std::error::Error + Send + Sync>> {
    let node = Node::open(engine, node_cfg, StoreOptions::default())?;
    let store = node.shared_store();
    let cluster = {
        let engine = store.engine().clone();
        let record: transport::ClusterIdSink = Box::new(move |id| {
            crate::raft::storage::set_cluster_id(&engine, id).map_err(|e| e.to_string())
        });
        Arc::new(transport::ClusterId::new(
            node.cluster_id()?,
            node.awaiting_snapshot().then_some(record),
        ))
    };
    let listener = match &cfg.listen {
        Some(own) => {
            let l = std::net::TcpListener::bind(own)
                .map_err(|e| format!("cannot listen on {own}: {e}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    if let Some(tls) = &cfg.tls {
        tls.watch();
    }
    let mut outbound = HashMap::new();
    let mut dialers = Vec::new();
    for (&peer, addr) in &cfg.peers {
        if peer != cfg.id {
            let (q, rx) = transport::out_queue();
            outbound.insert(peer, q);
            dialers.push((peer, addr.clone(), rx));
        }
    }
    let inbox_dir = Arc::new(node.snapshot_dir().to_path_buf());
    let loop_metrics = metrics::LoopMetrics::default();
    let (inbox, signals) = event_loop::spawn(node, outbound, cfg.tick, loop_metrics.clone())?;
    if listener.is_some() || !dialers.is_empty() {
        let net = transport::NetRuntime::start(format!("raft-net-{}", cfg.id))?;
        if let Some(l) = listener {
            net.spawn(transport::accept_loop(
                l,
                inbox.clone(),
                cfg.tls.clone(),
                inbox_dir,
                cluster.clone(),
            ));
        }
        for (peer, addr, rx) in dialers {
            net.spawn(transport::dial_loop(
                (cfg.id, peer),
                addr,
                rx,
                cfg.tls.clone(),
                inbox.clone(),
                cluster.clone(),
            ));
        }
    }
    let forwarder = Forwarder::new(cfg.id, cfg.kv_peers.clone(), cfg.tls);
    Ok(RaftShard::new(
        cfg.id,
        (inbox, signals, loop_metrics),
        cfg.data_dir,
        store,
        cfg.kv_peers,
        forwarder,
    ))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("expected ID=ADDR, got {part:?}"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("bad node id in {part:?}"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        out.insert(id, addr.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_refused() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=h:1").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "127.0.0.1:7002");
        assert!(parse_peers("").unwrap().is_empty());
        assert!(parse_peers("1:127.0.0.1:7001").is_err());
        assert!(parse_peers("x=127.0.0.1:7001").is_err());
        assert!(parse_peers("0=127.0.0.1:7001").is_err());
    }
}
