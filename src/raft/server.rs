//! The event loop that owns one [`Node`], its TCP peer transport and a small
//! internal HTTP KV interface (`tmc serve`).
//!
//! - One thread runs the event loop: it owns the node, ticks it every
//!   [`ServerConfig::tick`], steps messages from peers, takes client
//!   requests, and after each batch of inputs polls the node, hands its
//!   messages to the transport and answers waiting clients (oneshot).
//!   Disk writes (fsync) happen on this thread, never on a tokio runtime.
//! - The transport ([`transport`]) runs on a runtime of its own (one
//!   thread), apart from the runtime of the API and the KV interface: API
//!   work never delays a heartbeat, a vote or an append.
//! - The KV interface (axum, JSON) stores values as configmap-like objects
//!   `/kv/{workspace}/{namespace}/{name}`; see [`router`]. It is served by
//!   [`internal::serve`], which tells each request who sent it.
//!
//! **Queues, all bounded.** Between the network and raft:
//! - messages from peers: at most [`PEER_INBOX`] queued; a reader that
//!   finds the queue full waits, so its connection is no longer read and
//!   TCP pushes back on the sender;
//! - client requests (writes, barriers, status, membership): at most
//!   [`CLIENT_INFLIGHT`] accepted and not yet answered, on this replica; a
//!   request beyond that is refused at once with [`CallError::Busy`] (the
//!   API answers 503 ServiceUnavailable, the KV interface 503 `busy`):
//!   nothing was queued, the client may retry;
//! - frames to each peer: [`transport::OUT_QUEUE_BYTES`]; beyond that the
//!   peer counts as unreachable and raft retransmits later.
//!
//! **Priorities.** Each turn of the loop takes every queued peer message
//! first, then at most [`CLIENT_BATCH`] client requests, ticks when due,
//! and polls; so a flood of requests delays neither the peers' messages
//! nor the ticks by more than one batch.
//!
//! **Readiness** ([`Handle::ready`]): the loop publishes after each turn
//! whether the replica knows a leader, has applied what it learned is
//! committed (within [`READY_LAG`] entries) and has not stopped; a
//! follower cut off from its peers becomes a pre-candidate after an
//! election timeout, forgets its leader and is not ready.

use super::snapshot::Staged;
use super::tls::PeerTls;
use super::{Error, MembershipChange, Node, NodeConfig, Outcome, RequestId, StateRole};
use crate::shard::{BoxFuture, Shard, ShardError};
use crate::store::{Change, ListPage, Store};
use crate::store::{
    Committed, Engine, Expectation, GroupResource, Key, ListOptions, ObjectKey, OpResult, Prefix,
    Record, StoreOptions, Txn, TxnOp, Workspace,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub mod internal;
mod members;
pub mod transport;

pub use internal::Caller;
pub use transport::{OutQueue, Outbound};

/// Messages from peers queued for the event loop, at most.
pub const PEER_INBOX: usize = 1024;

/// Client requests accepted by the event loop and not yet answered, at
/// most (queued, proposed, or waiting for a read index).
pub const CLIENT_INFLIGHT: usize = 4096;

/// Client requests taken per turn of the event loop, at most.
pub const CLIENT_BATCH: usize = 1024;

/// A replica whose applied index trails its commit index by more than this
/// many entries is not ready.
pub const READY_LAG: u64 = 100;

/// Settings of one served replica.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This replica.
    pub id: u64,
    /// Raft address of every voter. This node listens on its own; without
    /// one (a one-voter `tmc dev`) it opens no raft port at all.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// KV (HTTP) address of every voter, for "not leader" redirects.
    pub kv_peers: BTreeMap<u64, String>,
    /// Wall-clock length of one logical tick.
    pub tick: Duration,
    /// Mutual TLS between replicas (raft and internal HTTP); `None`: plain
    /// TCP, for tests that inject faults into the byte stream.
    pub tls: Option<Arc<PeerTls>>,
}

/// A read of the KV interface.
#[derive(Debug)]
pub enum ReadOp {
    /// One key.
    Get(Key),
    /// A prefix, at most `limit` items (0: all).
    List(Prefix, usize),
}

/// What a read returns.
#[derive(Debug)]
pub enum ReadResult {
    /// The record, if any, and the store revision.
    Get(Option<Record>, u64),
    /// The records and the revision they are consistent at.
    List(Vec<Record>, u64),
}

/// Node status as the KV interface reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// The node.
    pub id: u64,
    /// leader, follower, candidate or precandidate.
    pub role: String,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Store revision.
    pub revision: u64,
    /// Voters.
    pub voters: Vec<u64>,
    /// Whether the replica is ready ([`Handle::ready`]).
    #[serde(default)]
    pub ready: bool,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A client request to the event loop.
pub enum Input {
    /// A write.
    Write(Txn, Reply<Committed>),
    /// A linearizable read point (ReadIndex): answered once this replica
    /// has applied up to it.
    Barrier(Reply<()>),
    /// The node's status.
    Status(oneshot::Sender<StatusReport>),
    /// A membership change; the answer is the voters after it.
    Member(MembershipChange, Reply<Vec<u64>>),
}

/// A message from a peer, decoded and checked against its connection.
pub enum PeerInput {
    /// A raft message.
    Message(Box<raft::eraftpb::Message>),
    /// A `MsgSnapshot` whose checkpoint arrived whole into a staging
    /// directory.
    Snapshot(Box<raft::eraftpb::Message>, Staged),
}

/// What the transport itself reports.
enum Event {
    /// A snapshot to a peer was streamed (`true`) or not.
    SnapshotSent(u64, bool),
}

/// Why the event loop did not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// [`CLIENT_INFLIGHT`] requests are in flight already: nothing was
    /// queued; retry later.
    #[error("the replica is busy: too many requests in flight; retry later")]
    Busy,
    /// The event loop has stopped.
    #[error("event loop stopped")]
    Stopped,
    /// No answer within 15 s.
    #[error("event loop did not answer in time")]
    NoAnswer,
}

/// The ways into the event loop; cloned by every producer.
#[derive(Clone)]
pub struct Inbox {
    peers: std_mpsc::Sender<(PeerInput, OwnedSemaphorePermit)>,
    clients: std_mpsc::Sender<(Input, OwnedSemaphorePermit)>,
    events: std_mpsc::Sender<Event>,
    peer_slots: Arc<Semaphore>,
    client_slots: Arc<Semaphore>,
    thread: std::thread::Thread,
}

impl Inbox {
    /// Queues a peer's message, waiting while [`PEER_INBOX`] are queued;
    /// false when the event loop is gone.
    pub async fn peer(&self, input: PeerInput) -> bool {
        let Ok(slot) = self.peer_slots.clone().acquire_owned().await else {
            return false;
        };
        let ok = self.peers.send((input, slot)).is_ok();
        self.thread.unpark();
        ok
    }

    /// Queues a client request unless [`CLIENT_INFLIGHT`] are in flight.
    fn client(&self, input: Input) -> Result<(), CallError> {
        let slot = self
            .client_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| CallError::Busy)?;
        self.clients
            .send((input, slot))
            .map_err(|_| CallError::Stopped)?;
        self.thread.unpark();
        Ok(())
    }

    fn snapshot_sent(&self, peer: u64, ok: bool) {
        let _ = self.events.send(Event::SnapshotSent(peer, ok));
        self.thread.unpark();
    }
}

/// Local reads of the shared store, without its engine type.
trait LocalReads: Send + Sync {
    fn get(&self, key: &Key) -> crate::store::Result<Option<Record>>;
    fn list(&self, prefix: &Prefix, opts: &ListOptions) -> crate::store::Result<ListPage>;
    fn changes_since(&self, after: u64, limit: usize) -> crate::store::Result<Vec<Change>>;
    fn revision(&self) -> u64;
    fn compacted_revision(&self) -> u64;
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
}

impl<E: Engine> LocalReads for Store<E> {
    fn get(&self, key: &Key) -> crate::store::Result<Option<Record>> {
        Store::get(self, key)
    }
    fn list(&self, prefix: &Prefix, opts: &ListOptions) -> crate::store::Result<ListPage> {
        Store::list(self, prefix, opts)
    }
    fn changes_since(&self, after: u64, limit: usize) -> crate::store::Result<Vec<Change>> {
        Store::changes_since(self, after, limit)
    }
    fn revision(&self) -> u64 {
        Store::revision(self)
    }
    fn compacted_revision(&self) -> u64 {
        Store::compacted_revision(self)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        Store::subscribe(self)
    }
}

/// What the event loop publishes after each turn, for readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The leader this replica knows of.
    pub leader: Option<u64>,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
    /// Why it stopped, if it has.
    pub stopped: Option<String>,
}

impl Health {
    /// `Ok` when the replica knows a leader, has applied what it knows is
    /// committed (within [`READY_LAG`] entries) and has not stopped.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(why) = &self.stopped {
            return Err(format!("the raft node stopped: {why}"));
        }
        if self.leader.is_none() {
            return Err("no leader is known".into());
        }
        let behind = self.commit.saturating_sub(self.applied);
        if behind > READY_LAG {
            return Err(format!(
                "{behind} committed entries are not applied yet (commit {}, applied {})",
                self.commit, self.applied
            ));
        }
        Ok(())
    }
}

/// A handle to a running event loop; also the node's [`Shard`].
#[derive(Clone)]
pub struct Handle {
    /// This replica.
    pub id: u64,
    inbox: Inbox,
    /// KV addresses of the voters.
    pub kv_peers: BTreeMap<u64, String>,
    reads: Arc<dyn LocalReads>,
    /// Set by the event loop when the node's role changes.
    leader: tokio::sync::watch::Receiver<bool>,
    health: tokio::sync::watch::Receiver<Health>,
    tls: Option<Arc<PeerTls>>,
}

impl Handle {
    async fn call<T>(
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

    /// Whether this replica is ready to serve (see [`Health::ready`]).
    pub fn ready(&self) -> Result<(), String> {
        self.health.borrow().ready()
    }

    /// Changes whenever the event loop's [`Health`] does.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.health.clone()
    }
}

/// Opens the node and starts the transport and the event loop; returns the
/// handle the KV interface uses. Must be called within a tokio runtime.
pub async fn start<E: Engine>(
    engine: E,
    cfg: ServerConfig,
    node_cfg: NodeConfig,
) -> Result<Handle, Box<dyn std::error::Error + Send + Sync>> {
    let node = Node::open(engine, node_cfg, StoreOptions::default())?;
    let reads: Arc<dyn LocalReads> = node.shared_store();
    let (leader_tx, leader) = tokio::sync::watch::channel(false);
    let (health_tx, health) = tokio::sync::watch::channel(Health::default());
    let listener = match cfg.peers.get(&cfg.id) {
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
    let (peers_tx, peers_rx) = std_mpsc::channel();
    let (clients_tx, clients_rx) = std_mpsc::channel();
    let (events_tx, events_rx) = std_mpsc::channel();
    let mut outbound = HashMap::new();
    let mut dialers = Vec::new();
    for (&peer, &addr) in &cfg.peers {
        if peer != cfg.id {
            let (q, rx) = transport::out_queue();
            outbound.insert(peer, q);
            dialers.push((peer, addr, rx));
        }
    }
    let inbox_dir = Arc::new(node.snapshot_dir().to_path_buf());
    let tick = cfg.tick;
    let queues = Queues {
        peers: peers_rx,
        clients: clients_rx,
        events: events_rx,
    };
    let loop_outbound = outbound.clone();
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", cfg.id))
        .spawn(move || event_loop(node, queues, loop_outbound, tick, leader_tx, health_tx))?
        .thread()
        .clone();
    let inbox = Inbox {
        peers: peers_tx,
        clients: clients_tx,
        events: events_tx,
        peer_slots: Arc::new(Semaphore::new(PEER_INBOX)),
        client_slots: Arc::new(Semaphore::new(CLIENT_INFLIGHT)),
        thread,
    };
    if listener.is_some() || !dialers.is_empty() {
        let net = transport::NetRuntime::start(format!("raft-net-{}", cfg.id))?;
        if let Some(l) = listener {
            net.spawn(transport::accept_loop(
                l,
                inbox.clone(),
                cfg.tls.clone(),
                inbox_dir,
            ));
        }
        for (peer, addr, rx) in dialers {
            net.spawn(transport::dial_loop(
                (cfg.id, peer),
                addr,
                rx,
                cfg.tls.clone(),
                inbox.clone(),
            ));
        }
    }
    Ok(Handle {
        id: cfg.id,
        inbox,
        kv_peers: cfg.kv_peers,
        reads,
        leader,
        health,
        tls: cfg.tls,
    })
}

/// The event loop's ends of its queues.
pub(crate) struct Queues {
    pub(crate) peers: std_mpsc::Receiver<(PeerInput, OwnedSemaphorePermit)>,
    pub(crate) clients: std_mpsc::Receiver<(Input, OwnedSemaphorePermit)>,
    events: std_mpsc::Receiver<Event>,
}

/// A request waiting for the node's answer.
enum Pending {
    Write(Reply<Committed>),
    Barrier(Reply<()>),
    Member(Reply<Vec<u64>>),
}

/// Pending requests, each with its slot (given back with the answer).
type PendingMap = HashMap<RequestId, (Pending, OwnedSemaphorePermit)>;

fn status_report<E: Engine>(node: &Node<E>) -> StatusReport {
    let s = node.status();
    StatusReport {
        id: s.id,
        role: match s.role {
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "precandidate",
        }
        .to_string(),
        leader: s.leader,
        term: s.term,
        commit: s.commit,
        applied: s.applied,
        revision: s.revision,
        voters: s.voters,
        ready: health_of(node).ready().is_ok(),
    }
}

fn health_of<E: Engine>(node: &Node<E>) -> Health {
    let s = node.status();
    Health {
        leader: s.leader,
        commit: s.commit,
        applied: s.applied,
        stopped: node.stopped().map(str::to_string),
    }
}

/// Queues `msg` on its peer's connection (in chunks when large); false
/// when it could not be queued.
fn send_message(outbound: &HashMap<u64, OutQueue>, msg: raft::eraftpb::Message) -> bool {
    let to = msg.to;
    let Some(q) = outbound.get(&to) else {
        tracing::warn!(to, "message for an unknown peer");
        return false;
    };
    match super::wire::encode_chunked(&msg, super::wire::CHUNK_SIZE) {
        Ok(frames) => frames.into_iter().all(|f| q.push(Outbound::Frame(f))),
        Err(e) => {
            tracing::warn!(to, error = %e, "cannot encode a raft message");
            false
        }
    }
}

/// Queues a `MsgSnapshot` and its checkpoint for streaming; false when
/// it could not be queued.
fn send_snapshot<E: Engine>(
    node: &Node<E>,
    outbound: &HashMap<u64, OutQueue>,
    msg: &raft::eraftpb::Message,
) -> bool {
    let to = msg.to;
    let Some(q) = outbound.get(&to) else {
        tracing::warn!(to, "snapshot for an unknown peer");
        return false;
    };
    let Some(cp) = node.take_checkpoint(msg) else {
        tracing::warn!(to, "a snapshot message without its checkpoint");
        return false;
    };
    match super::wire::encode_announce(msg) {
        Ok(announce) => q.push(Outbound::Snapshot(announce, cp)),
        Err(e) => {
            tracing::warn!(to, error = %e, "cannot encode a snapshot message");
            false
        }
    }
}

fn take_client<E: Engine>(
    node: &mut Node<E>,
    outbound: &HashMap<u64, OutQueue>,
    pending: &mut PendingMap,
    input: Input,
    slot: OwnedSemaphorePermit,
) {
    match input {
        Input::Write(txn, reply) => match node.propose(txn) {
            Ok(id) => {
                pending.insert(id, (Pending::Write(reply), slot));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        },
        Input::Barrier(reply) => match node.read() {
            Ok(id) => {
                pending.insert(id, (Pending::Barrier(reply), slot));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        },
        Input::Status(reply) => {
            let _ = reply.send(status_report(node));
        }
        Input::Member(change, reply) => match members::propose(node, outbound, change) {
            Ok(id) => {
                pending.insert(id, (Pending::Member(reply), slot));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        },
    }
}

fn event_loop<E: Engine>(
    mut node: Node<E>,
    queues: Queues,
    outbound: HashMap<u64, OutQueue>,
    tick: Duration,
    leadership: tokio::sync::watch::Sender<bool>,
    health: tokio::sync::watch::Sender<Health>,
) {
    let mut pending = PendingMap::new();
    // The leader's appends leave before its fsync (Node::send_early); the
    // peers they could not be queued for are reported after the poll.
    let unreachable: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    {
        let outbound = outbound.clone();
        let unreachable = unreachable.clone();
        node.send_early(Box::new(move |msgs| {
            for msg in msgs {
                let to = msg.to;
                if !send_message(&outbound, msg) {
                    unreachable
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(to);
                }
            }
        }));
    }
    let mut next_tick = Instant::now() + tick;
    let mut failed = false;
    // Client requests left for the next turn (more than one batch).
    let mut backlog = false;
    loop {
        if !backlog {
            // Woken by any producer (unpark) or the next tick.
            std::thread::park_timeout(next_tick.saturating_duration_since(Instant::now()));
        }
        while let Ok(Event::SnapshotSent(to, ok)) = queues.events.try_recv() {
            if !ok {
                node.report_unreachable(to);
            }
            node.report_snapshot(to, ok);
        }
        // Peers first: every message queued, whatever the clients sent.
        while let Ok((input, _slot)) = queues.peers.try_recv() {
            let r = match input {
                PeerInput::Message(msg) => node.step(*msg),
                PeerInput::Snapshot(msg, staged) => node.step_snapshot(*msg, staged),
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "step failed");
            }
        }
        let mut taken = 0;
        while taken < CLIENT_BATCH {
            match queues.clients.try_recv() {
                Ok((input, slot)) => take_client(&mut node, &outbound, &mut pending, input, slot),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
            taken += 1;
        }
        // A full batch was taken: more may wait, so do not sleep.
        backlog = taken == CLIENT_BATCH;
        let now = Instant::now();
        if now >= next_tick {
            if let Err(e) = node.tick() {
                tracing::debug!(error = %e, "tick failed");
            }
            next_tick += tick;
            if next_tick < now {
                // Fell behind (a long fsync): do not tick in a burst.
                next_tick = now + tick;
            }
        }
        if let Err(e) = node.poll() {
            if !failed {
                tracing::error!(error = %e, "raft node failed; it serves nothing any more");
                failed = true;
            }
        }
        let early_lost =
            std::mem::take(&mut *unreachable.lock().unwrap_or_else(|p| p.into_inner()));
        for to in early_lost {
            node.report_unreachable(to);
        }
        // Pushed to the controllers' runtime only when the role changes.
        let leads = !failed && node.is_leader();
        leadership.send_if_modified(|l| std::mem::replace(l, leads) != leads);
        let now_health = health_of(&node);
        health.send_if_modified(|h| {
            if *h != now_health {
                *h = now_health;
                true
            } else {
                false
            }
        });
        for msg in node.take_messages() {
            let to = msg.to;
            if msg.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                // Reported when the stream is over (Event::SnapshotSent).
                if !send_snapshot(&node, &outbound, &msg) {
                    node.report_unreachable(to);
                    node.report_snapshot(to, false);
                }
                continue;
            }
            if !send_message(&outbound, msg) {
                node.report_unreachable(to);
            }
        }
        for r in node.take_responses() {
            match (pending.remove(&r.id).map(|(p, _slot)| p), r.outcome) {
                (Some(Pending::Write(reply)), Outcome::Write(res)) => {
                    let _ = reply.send(res);
                }
                (Some(Pending::Barrier(reply)), Outcome::Read(res)) => {
                    let _ = reply.send(res.map(|_| ()));
                }
                (Some(Pending::Member(reply)), Outcome::Membership(res)) => {
                    let _ = reply.send(res);
                }
                (p, o) => {
                    if p.is_some() {
                        tracing::warn!(id = r.id, outcome = ?o, "response of an unexpected kind");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The KV interface.

/// Where KV values live: configmaps in the given workspace and namespace.
fn kv_resource() -> GroupResource {
    GroupResource::new("", "configmaps").expect("valid resource")
}

/// Consistency of a read.
#[derive(Debug, serde::Deserialize)]
pub struct ReadParams {
    /// `linearizable` (default) or `local`.
    pub consistency: Option<String>,
    /// At most this many items in a list.
    pub limit: Option<usize>,
}

/// A record as JSON.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct KvRecord {
    /// The key, as text.
    pub key: String,
    /// The value, as UTF-8 text.
    pub value: String,
    /// Revision that created the key.
    pub create_revision: u64,
    /// Revision of the last change.
    pub mod_revision: u64,
}

fn kv_record(r: Record) -> KvRecord {
    KvRecord {
        key: Key::decode(&r.key)
            .map(|k| k.to_string())
            .unwrap_or_else(|| String::from_utf8_lossy(&r.key).into_owned()),
        value: String::from_utf8_lossy(&r.value).into_owned(),
        create_revision: r.create_revision,
        mod_revision: r.mod_revision,
    }
}

fn http_error(
    status: StatusCode,
    msg: String,
    leader: Option<(u64, Option<String>)>,
) -> HttpResponse {
    let mut body = serde_json::json!({ "error": msg });
    if let Some((id, addr)) = leader {
        body["leader"] = serde_json::json!(id);
        body["leader_addr"] = serde_json::json!(addr);
    }
    (status, Json(body)).into_response()
}

fn raft_error(h: &Handle, e: Error) -> HttpResponse {
    match e {
        Error::NotLeader { leader: Some(l) } => {
            let addr = h.kv_peers.get(&l).cloned();
            let msg = format!(
                "not leader; leader is {l} at {}",
                addr.as_deref().unwrap_or("an unknown address")
            );
            http_error(StatusCode::SERVICE_UNAVAILABLE, msg, Some((l, addr)))
        }
        Error::NotLeader { leader: None } | Error::NoLeader => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Error::NoLeader.to_string(),
            None,
        ),
        e @ (Error::Timeout { .. } | Error::LeadershipLost) => {
            http_error(StatusCode::GATEWAY_TIMEOUT, e.to_string(), None)
        }
        e @ Error::Store(
            crate::store::Error::Conflict { .. } | crate::store::Error::InvalidName(_),
        ) => http_error(StatusCode::CONFLICT, e.to_string(), None),
        e => http_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

/// A refused request: status and message.
type Bad = (StatusCode, String);

fn object_key(ws: &str, ns: &str, name: &str) -> Result<Key, Bad> {
    let ws = Workspace::parse(ws).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    ObjectKey::namespaced(kv_resource(), ws, ns, name)
        .map(Key::from)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

fn linearizable(p: &ReadParams) -> Result<bool, Bad> {
    match p.consistency.as_deref() {
        None | Some("linearizable") => Ok(true),
        Some("local") => Ok(false),
        Some(other) => Err((
            StatusCode::BAD_REQUEST,
            format!("consistency must be linearizable or local, not {other}"),
        )),
    }
}

/// Header that stops a write from being forwarded to the leader: set on
/// forwarded requests (one hop at most) and by clients that want the 503.
pub const NO_FORWARD: &str = "x-tmc-no-forward";

async fn write(h: &Handle, txn: Txn, forward: bool) -> HttpResponse {
    match h.write_txn(txn, forward).await {
        Err(e) => wire_error_response(h, e),
        Ok(c) => {
            let deleted = c
                .results
                .iter()
                .any(|r| matches!(r, OpResult::Deleted(Some(_))));
            Json(serde_json::json!({ "revision": c.revision, "deleted": deleted })).into_response()
        }
    }
}

/// Why a write failed, as it crosses from the leader back to the follower
/// that forwarded it (`POST /internal/txn`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum WireError {
    /// A precondition failed.
    Conflict {
        /// The key, printable.
        key: String,
        /// What was expected.
        expected: Expectation,
        /// What the store held.
        found: crate::store::Found,
    },
    /// An invalid name or request.
    Invalid(String),
    /// The raft layer refused (not leader, no leader).
    NotLeader(Option<u64>),
    /// Timed out or leadership lost: the outcome is unknown.
    Timeout(String),
    /// Forwarding to the leader failed (it may have died mid-request): the
    /// outcome is unknown.
    Forward(String),
    /// Too many requests in flight: nothing was queued; retry later.
    Busy(String),
    /// Anything else.
    Internal(String),
}

impl From<CallError> for WireError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Busy => WireError::Busy(e.to_string()),
            e => WireError::Internal(e.to_string()),
        }
    }
}

/// The answer to a request the event loop did not take.
fn call_error(e: CallError) -> HttpResponse {
    let code = match e {
        CallError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    http_error(code, e.to_string(), None)
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { leader } => WireError::NotLeader(leader),
            Error::NoLeader => WireError::NotLeader(None),
            e @ (Error::Timeout { .. } | Error::LeadershipLost) => {
                WireError::Timeout(e.to_string())
            }
            Error::Store(crate::store::Error::Conflict {
                key,
                expected,
                found,
            }) => WireError::Conflict {
                key,
                expected,
                found,
            },
            Error::Store(e @ crate::store::Error::InvalidName(_)) => {
                WireError::Invalid(e.to_string())
            }
            e => WireError::Internal(e.to_string()),
        }
    }
}

impl From<WireError> for ShardError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Conflict {
                key,
                expected,
                found,
            } => ShardError::Store(crate::store::Error::Conflict {
                key,
                expected,
                found,
            }),
            WireError::Invalid(m) => ShardError::Internal(m),
            WireError::NotLeader(_) => ShardError::Unavailable(Error::NoLeader.to_string()),
            WireError::Busy(m) => ShardError::Unavailable(m),
            WireError::Timeout(m) | WireError::Forward(m) => ShardError::Timeout(m),
            WireError::Internal(m) => ShardError::Internal(m),
        }
    }
}

fn wire_error_response(h: &Handle, e: WireError) -> HttpResponse {
    match e {
        WireError::NotLeader(leader) => raft_error(h, Error::NotLeader { leader }),
        WireError::Timeout(m) => http_error(StatusCode::GATEWAY_TIMEOUT, m, None),
        WireError::Forward(m) => http_error(StatusCode::BAD_GATEWAY, m, None),
        WireError::Busy(m) => http_error(StatusCode::SERVICE_UNAVAILABLE, m, None),
        e @ WireError::Conflict { .. } => {
            http_error(StatusCode::CONFLICT, ShardError::from(e).to_string(), None)
        }
        WireError::Invalid(m) => http_error(StatusCode::CONFLICT, m, None),
        WireError::Internal(m) => http_error(StatusCode::INTERNAL_SERVER_ERROR, m, None),
    }
}

impl Handle {
    /// Commits `txn` here, or (when `forward` and this node knows another
    /// leader) on the leader through its `POST /internal/txn`, marked not
    /// to be forwarded again.
    async fn write_txn(&self, txn: Txn, forward: bool) -> Result<Committed, WireError> {
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
                    .internal_request(l, "POST", "/internal/txn", &body)
                    .await
                    .map_err(|e| {
                        WireError::Forward(format!(
                            "forwarding to the leader {l} at {addr} failed: {e}"
                        ))
                    })?;
                let answer: Result<Committed, WireError> =
                    serde_json::from_slice(&raw).map_err(|e| {
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
        let mut sub = self.reads.subscribe();
        let wait = async {
            while self.reads.revision() < revision {
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

impl Shard for Handle {
    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<Committed, ShardError>> {
        Box::pin(async move { self.write_txn(txn, true).await.map_err(ShardError::from) })
    }

    fn barrier(&self) -> BoxFuture<'_, Result<u64, ShardError>> {
        Box::pin(async move {
            match self.call(Input::Barrier).await {
                Err(e) => Err(WireError::from(e).into()),
                Ok(Ok(())) => Ok(self.reads.revision()),
                Ok(Err(e)) => Err(match WireError::from(e) {
                    WireError::NotLeader(_) => ShardError::Unavailable(Error::NoLeader.to_string()),
                    other => other.into(),
                }),
            }
        })
    }

    fn get(&self, key: &Key) -> Result<Option<Record>, ShardError> {
        Ok(self.reads.get(key)?)
    }

    fn list(&self, prefix: &Prefix, opts: &ListOptions) -> Result<ListPage, ShardError> {
        Ok(self.reads.list(prefix, opts)?)
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, ShardError> {
        Ok(self.reads.changes_since(after, limit)?)
    }

    fn revision(&self) -> u64 {
        self.reads.revision()
    }

    fn compacted_revision(&self) -> u64 {
        self.reads.compacted_revision()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reads.subscribe()
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.clone()
    }
}

/// Answers to internal requests longer than this are refused.
const MAX_INTERNAL_ANSWER: u64 = 16 << 20;

impl Handle {
    /// One request to replica `to`'s KV interface (HTTP/1.1, one request
    /// per connection, marked not to be forwarded again and with this
    /// replica's id in [`internal::FROM`], 15 s bound); over mutual TLS the
    /// server's certificate must name `to`. Returns status and body.
    async fn internal_request(
        &self,
        to: u64,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let addr = self
            .kv_peers
            .get(&to)
            .ok_or_else(|| format!("no KV address of node {to}"))?;
        internal_request(self.tls.as_deref(), (self.id, to), addr, method, path, body).await
    }
}

/// See [`Handle::internal_request`].
async fn internal_request(
    tls: Option<&PeerTls>,
    (from, to): (u64, u64),
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Vec<u8>), String> {
    let exchange = async {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = super::tls::connect(tls, s, Some(to))
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\n{NO_FORWARD}: 1\r\n{}: {from}\r\n\
             Content-Length: {}\r\n\r\n",
            internal::FROM,
            body.len()
        );
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(body).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_INTERNAL_ANSWER + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        if raw.len() as u64 > MAX_INTERNAL_ANSWER {
            return Err(format!("an answer over {MAX_INTERNAL_ANSWER} bytes"));
        }
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| "timed out".to_string())??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("malformed status line")?;
    Ok((code, raw[split + 4..].to_vec()))
}

fn forward_allowed(headers: &axum::http::HeaderMap) -> bool {
    !headers.contains_key(NO_FORWARD)
}

/// Reads the local store, after a linearizable read point when `lin`;
/// the store is read here, never on the event loop.
async fn read(h: &Handle, op: ReadOp, lin: bool) -> Result<ReadResult, HttpResponse> {
    if lin {
        match h.call(Input::Barrier).await {
            Err(e) => return Err(call_error(e)),
            Ok(Err(e)) => return Err(raft_error(h, e)),
            Ok(Ok(())) => {}
        }
    }
    let store = |e: crate::store::Error| raft_error(h, Error::Store(e));
    match op {
        ReadOp::Get(key) => {
            // The revision first: the record is at least as new.
            let revision = h.reads.revision();
            Ok(ReadResult::Get(h.reads.get(&key).map_err(store)?, revision))
        }
        ReadOp::List(prefix, limit) => {
            let page = h
                .reads
                .list(
                    &prefix,
                    &ListOptions {
                        limit,
                        ..Default::default()
                    },
                )
                .map_err(store)?;
            Ok(ReadResult::List(page.items, page.revision))
        }
    }
}

async fn put_key(
    State(h): State<Handle>,
    Path((ws, ns, name)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpResponse {
    let key = match object_key(&ws, &ns, &name) {
        Ok(k) => k,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let op = TxnOp::Put {
        key,
        encoding: crate::store::EncodingTag::Raw,
        value: body.to_vec(),
        expect: Expectation::Any,
    };
    write(&h, Txn::new(vec![op]), forward_allowed(&headers)).await
}

async fn delete_key(
    State(h): State<Handle>,
    Path((ws, ns, name)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
) -> HttpResponse {
    let key = match object_key(&ws, &ns, &name) {
        Ok(k) => k,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    write(
        &h,
        Txn::new(vec![TxnOp::delete(key, Expectation::Any)]),
        forward_allowed(&headers),
    )
    .await
}

async fn get_key(
    State(h): State<Handle>,
    Path((ws, ns, name)): Path<(String, String, String)>,
    Query(p): Query<ReadParams>,
) -> HttpResponse {
    let key = match object_key(&ws, &ns, &name) {
        Ok(k) => k,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let lin = match linearizable(&p) {
        Ok(l) => l,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    match read(&h, ReadOp::Get(key), lin).await {
        Err(r) => r,
        Ok(ReadResult::Get(Some(rec), revision)) => {
            Json(serde_json::json!({ "record": kv_record(rec), "revision": revision }))
                .into_response()
        }
        Ok(ReadResult::Get(None, revision)) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "not found", "revision": revision })),
        )
            .into_response(),
        Ok(ReadResult::List(..)) => {
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "bad read".into(), None)
        }
    }
}

async fn list_workspace(
    State(h): State<Handle>,
    Path(ws): Path<String>,
    Query(p): Query<ReadParams>,
) -> HttpResponse {
    let ws = match Workspace::parse(&ws) {
        Ok(w) => w,
        Err(e) => return http_error(StatusCode::BAD_REQUEST, e.to_string(), None),
    };
    let lin = match linearizable(&p) {
        Ok(l) => l,
        Err((code, msg)) => return http_error(code, msg, None),
    };
    let prefix = Prefix::workspace(&kv_resource(), &ws);
    match read(&h, ReadOp::List(prefix, p.limit.unwrap_or(0)), lin).await {
        Err(r) => r,
        Ok(ReadResult::List(items, revision)) => Json(serde_json::json!({
            "items": items.into_iter().map(kv_record).collect::<Vec<_>>(),
            "revision": revision,
        }))
        .into_response(),
        Ok(ReadResult::Get(..)) => {
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "bad read".into(), None)
        }
    }
}

/// The leader's side of forwarding: commits and answers
/// `Result<Committed, WireError>` as JSON.
async fn internal_txn(State(h): State<Handle>, Json(t): Json<Txn>) -> HttpResponse {
    let res = h.write_txn(t, false).await;
    Json(res).into_response()
}

async fn txn(
    State(h): State<Handle>,
    headers: axum::http::HeaderMap,
    Json(t): Json<Txn>,
) -> HttpResponse {
    write(&h, t, forward_allowed(&headers)).await
}

async fn status(State(h): State<Handle>) -> HttpResponse {
    match h.call(Input::Status).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => call_error(e),
    }
}

/// The KV interface:
/// - `PUT /kv/{workspace}/{namespace}/{name}` (body: the JSON value),
///   `GET` (`?consistency=linearizable|local`, linearizable by default),
///   `DELETE`;
/// - `GET /kv/{workspace}` lists the workspace's values (`?limit=`);
/// - `POST /txn` takes a JSON [`Txn`];
/// - `GET /status`: id, role, leader, term, commit, applied, revision,
///   ready;
/// - `POST /members/{id}`, `DELETE /members/{id}`: add or remove a voter
///   (forwarded to the leader like writes; see the `members` submodule),
///   `GET /members`: the voters;
/// - `POST /internal/txn`: a write forwarded by a replica (which names
///   itself in [`internal::FROM`]; see [`internal::check_claims`]).
///
/// Serve it with [`internal::serve`], which tells each request who sent
/// it. Writes on a follower are forwarded once to the leader's `POST
/// /internal/txn` (its address from `kv_peers`) and its answer passed
/// back; 502 if that fails. A replica with [`CLIENT_INFLIGHT`] requests
/// in flight answers 503 `the replica is busy` at once. With the [`NO_FORWARD`] header (set on forwarded requests), or
/// when the leader's address is unknown, a follower answers 503 `not
/// leader; leader is N at ADDR` with `leader` and `leader_addr` in the JSON
/// body instead. With no leader, 503 `no
/// leader`; a timeout or lost leadership, 504; a failed precondition, 409.
pub fn router(h: Handle) -> Router {
    Router::new()
        .route(
            "/kv/{ws}/{ns}/{name}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/kv/{ws}", get(list_workspace))
        .route("/txn", axum::routing::post(txn))
        .route("/internal/txn", axum::routing::post(internal_txn))
        .route("/status", get(status))
        .route("/members", get(members::list))
        .route(
            "/members/{id}",
            axum::routing::post(members::add).delete(members::remove),
        )
        .with_state(h)
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
pub(crate) mod tests {
    use super::*;

    /// An inbox whose event loop is the test itself.
    pub(crate) fn test_inbox() -> (Inbox, Queues) {
        let (peers, peers_rx) = std_mpsc::channel();
        let (clients, clients_rx) = std_mpsc::channel();
        let (events, events_rx) = std_mpsc::channel();
        (
            Inbox {
                peers,
                clients,
                events,
                peer_slots: Arc::new(Semaphore::new(PEER_INBOX)),
                client_slots: Arc::new(Semaphore::new(CLIENT_INFLIGHT)),
                thread: std::thread::current(),
            },
            Queues {
                peers: peers_rx,
                clients: clients_rx,
                events: events_rx,
            },
        )
    }

    #[test]
    fn requests_beyond_the_bound_are_refused_at_once_as_busy() {
        let (inbox, queues) = test_inbox();
        let mut answers = Vec::new();
        for _ in 0..CLIENT_INFLIGHT {
            let (tx, rx) = oneshot::channel();
            inbox.client(Input::Status(tx)).unwrap();
            answers.push(rx);
        }
        let (tx, _rx) = oneshot::channel();
        assert_eq!(inbox.client(Input::Status(tx)), Err(CallError::Busy));
        // An answered request gives its slot back.
        let (_input, slot) = queues.clients.try_recv().unwrap();
        drop(slot);
        let (tx, _rx) = oneshot::channel();
        assert_eq!(inbox.client(Input::Status(tx)), Ok(()));
        let (tx, _rx) = oneshot::channel();
        assert_eq!(inbox.client(Input::Status(tx)), Err(CallError::Busy));
        // Busy is a 503 at the KV interface and Unavailable at the API.
        assert_eq!(
            call_error(CallError::Busy).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(matches!(
            ShardError::from(WireError::from(CallError::Busy)),
            ShardError::Unavailable(_)
        ));
    }

    #[test]
    fn readiness_needs_a_leader_an_applied_commit_and_a_running_node() {
        let ok = Health {
            leader: Some(1),
            commit: 500,
            applied: 500 - READY_LAG,
            stopped: None,
        };
        assert_eq!(ok.ready(), Ok(()));
        for bad in [
            Health {
                leader: None,
                ..ok.clone()
            },
            Health {
                applied: 500 - READY_LAG - 1,
                ..ok.clone()
            },
            Health {
                stopped: Some("disk".into()),
                ..ok.clone()
            },
        ] {
            assert!(bad.ready().is_err(), "{bad:?}");
        }
    }

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
