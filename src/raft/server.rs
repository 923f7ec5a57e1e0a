//! The event loop that owns one [`Node`], its TCP peer transport and a small
//! internal HTTP KV interface (`tmc serve`).
//!
//! - One thread runs the event loop: it owns the node, ticks it every
//!   [`ServerConfig::tick`], steps inbound frames, takes client requests
//!   from a channel, and after each batch of inputs polls the node, hands
//!   its messages to the transport and answers waiting clients (oneshot).
//!   Disk writes (fsync) happen on this thread, never on the tokio runtime.
//! - The transport (tokio TCP): one outbound connection per peer, redialled
//!   with exponential backoff, carrying [`wire`] frames; one
//!   task per inbound connection reads header then body and passes the
//!   whole frame to the loop, where [`Node::step_frame`] drops (and logs) a
//!   frame that fails its checksum. No TLS yet (mTLS is a later issue).
//! - The KV interface (axum, JSON) stores values as configmap-like objects
//!   `/kv/{workspace}/{namespace}/{name}`; see [`router`].

use super::snapshot::{self, Checkpoint, Staged};
use super::{wire, Error, MembershipChange, Node, NodeConfig, Outcome, RequestId, StateRole};
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
use tokio::sync::{mpsc, oneshot};

mod members;

/// Frames queued per peer before new ones are dropped (raft retransmits).
const PEER_QUEUE: usize = 4096;

/// Settings of one served replica.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This replica.
    pub id: u64,
    /// Raft address of every voter, this one included.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// KV (HTTP) address of every voter, for "not leader" redirects.
    pub kv_peers: BTreeMap<u64, String>,
    /// Wall-clock length of one logical tick.
    pub tick: Duration,
    /// Mutual TLS between replicas (raft and internal HTTP); `None`: plain
    /// TCP, for tests that inject faults into the byte stream.
    pub tls: Option<Arc<super::tls::PeerTls>>,
}

/// A read the event loop answers from the store.
#[derive(Debug)]
pub enum ReadOp {
    /// Nothing: only the linearizable read point.
    Barrier,
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
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A request to the event loop.
pub enum Input {
    /// A frame from a peer (still undecoded).
    Frame(Vec<u8>),
    /// A write.
    Write(Txn, Reply<Committed>),
    /// A read; `linearizable` goes through ReadIndex.
    Read(ReadOp, bool, Reply<ReadResult>),
    /// The node's status.
    Status(oneshot::Sender<StatusReport>),
    /// A membership change; the answer is the voters after it.
    Member(MembershipChange, Reply<Vec<u64>>),
    /// A `MsgSnapshot` whose checkpoint arrived whole into a staging
    /// directory.
    Snapshot(Box<raft::eraftpb::Message>, Staged),
    /// The transport streamed (`true`) or failed to stream a snapshot to a
    /// peer.
    SnapshotSent(u64, bool),
}

/// What the event loop queues for a peer's connection.
pub enum Outbound {
    /// One frame (or chunk frame) as it goes on the wire.
    Frame(Vec<u8>),
    /// A `MsgSnapshot` (announce frame), then its checkpoint streamed in
    /// chunk frames read from disk as the connection takes them.
    Snapshot(Vec<u8>, Arc<Checkpoint>),
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

/// A handle to a running event loop; also the node's [`Shard`].
#[derive(Clone)]
pub struct Handle {
    tx: std_mpsc::Sender<Input>,
    /// KV addresses of the voters.
    pub kv_peers: BTreeMap<u64, String>,
    reads: Arc<dyn LocalReads>,
    /// Set by the event loop when the node's role changes.
    leader: tokio::sync::watch::Receiver<bool>,
    tls: Option<Arc<super::tls::PeerTls>>,
}

impl Handle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> Result<T, &'static str> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| "event loop stopped")?;
        match tokio::time::timeout(Duration::from_secs(15), rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err("event loop stopped"),
            Err(_) => Err("event loop did not answer in time"),
        }
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
    let (tx, rx) = std_mpsc::channel::<Input>();
    let own = *cfg
        .peers
        .get(&cfg.id)
        .ok_or("--peers must name this node's own raft address")?;
    let listener = tokio::net::TcpListener::bind(own)
        .await
        .map_err(|e| format!("cannot listen on {own}: {e}"))?;
    if let Some(tls) = &cfg.tls {
        tls.watch();
    }
    let inbox = Arc::new(node.snapshot_dir().to_path_buf());
    tokio::spawn(accept_loop(listener, tx.clone(), cfg.tls.clone(), inbox));
    let mut outbound = HashMap::new();
    for (&peer, &addr) in &cfg.peers {
        if peer == cfg.id {
            continue;
        }
        let (ptx, prx) = mpsc::channel::<Outbound>(PEER_QUEUE);
        tokio::spawn(dial_loop(
            (cfg.id, peer),
            addr,
            prx,
            cfg.tls.clone(),
            tx.clone(),
        ));
        outbound.insert(peer, ptx);
    }
    let tick = cfg.tick;
    std::thread::Builder::new()
        .name(format!("raft-{}", cfg.id))
        .spawn(move || event_loop(node, rx, outbound, tick, leader_tx))?;
    Ok(Handle {
        tx,
        kv_peers: cfg.kv_peers,
        reads,
        leader,
        tls: cfg.tls,
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tx: std_mpsc::Sender<Input>,
    tls: Option<Arc<super::tls::PeerTls>>,
    inbox: Arc<std::path::PathBuf>,
) {
    loop {
        match listener.accept().await {
            Ok((sock, from)) => {
                let _ = sock.set_nodelay(true);
                let tx = tx.clone();
                let tls = tls.clone();
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    let sock = match super::tls::accept(tls.as_deref(), sock).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(%from, error = %e, "refused a peer connection: TLS handshake failed");
                            return;
                        }
                    };
                    if let Err(e) = read_frames(sock, tx, &inbox).await {
                        tracing::debug!(%from, error = %e, "peer connection closed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A snapshot transfer being received on a connection.
enum Receiving {
    /// The announced message and its staging directory.
    Active(Box<raft::eraftpb::Message>, snapshot::Incoming, u64),
    /// A refused transfer: its remaining chunks are dropped quietly.
    Abandoned(u64),
}

async fn read_frames(
    sock: super::tls::PeerStream,
    tx: std_mpsc::Sender<Input>,
    inbox: &std::path::Path,
) -> std::io::Result<()> {
    let mut r = tokio::io::BufReader::new(sock);
    let mut chunks = wire::Reassembler::default();
    let mut receiving: Option<Receiving> = None;
    loop {
        let mut header = [0u8; wire::HEADER_LEN];
        r.read_exact(&mut header).await?;
        let len = match wire::body_len(&header) {
            Ok(len) => len,
            Err(e) => {
                // The stream is out of step: drop the connection.
                tracing::warn!(error = %e, "bad frame header from a peer; closing");
                return Ok(());
            }
        };
        let mut frame = vec![0u8; wire::HEADER_LEN + len];
        frame[..wire::HEADER_LEN].copy_from_slice(&header);
        r.read_exact(&mut frame[wire::HEADER_LEN..]).await?;
        if wire::is_file(&frame) {
            if let Some(input) = receive_snapshot(&mut receiving, &frame, inbox) {
                if tx.send(input).is_err() {
                    return Ok(());
                }
            }
            continue;
        }
        let frame = match chunks.push(frame) {
            Ok(wire::Assembled::Frame { frame, chunks }) => {
                if chunks > 1 {
                    tracing::info!(chunks, bytes = frame.len(), "received a message in chunks");
                }
                frame
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a damaged chunk and its transfer");
                continue;
            }
        };
        if tx.send(Input::Frame(frame)).is_err() {
            return Ok(());
        }
    }
}

/// Takes one frame of a snapshot transfer: the announcing `MsgSnapshot`
/// starts one (writing to a staging directory under `inbox`), each chunk
/// is written as it comes; the last one yields the message and its staged
/// checkpoint. A damaged or misplaced frame refuses the whole transfer:
/// the staging directory is removed and raft never sees the message.
fn receive_snapshot(
    receiving: &mut Option<Receiving>,
    frame: &[u8],
    inbox: &std::path::Path,
) -> Option<Input> {
    if !wire::is_chunk(frame) {
        // A new transfer; one in progress is given up.
        *receiving = None;
        let started = wire::decode_announce(frame)
            .map_err(|e| e.to_string())
            .and_then(|msg| {
                let manifest = snapshot::Manifest::decode(&msg.get_snapshot().data)
                    .map_err(|e| e.to_string())?;
                let (id, chunks, bytes) = (
                    manifest.id,
                    manifest.chunk_count(wire::CHUNK_SIZE),
                    manifest.total_bytes(),
                );
                let inc = snapshot::Incoming::begin(inbox, manifest).map_err(|e| e.to_string())?;
                tracing::info!(
                    transfer = format!("{id:x}"),
                    chunks,
                    bytes,
                    "receiving a snapshot"
                );
                Ok((Box::new(msg), inc, chunks))
            });
        match started {
            Ok((msg, inc, 0)) => return finish_snapshot(msg, inc, 0),
            Ok((msg, inc, chunks)) => *receiving = Some(Receiving::Active(msg, inc, chunks)),
            Err(e) => {
                tracing::warn!(error = %e, "dropping a damaged chunk and its transfer: a bad snapshot announce")
            }
        }
        return None;
    }
    match receiving.take() {
        Some(Receiving::Active(msg, mut inc, chunks)) => match inc.push(frame) {
            Ok(true) => finish_snapshot(msg, inc, chunks),
            Ok(false) => {
                *receiving = Some(Receiving::Active(msg, inc, chunks));
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, transfer = format!("{:x}", inc.id()), "dropping a damaged chunk and its transfer");
                *receiving = Some(Receiving::Abandoned(inc.id()));
                None
            }
        },
        Some(Receiving::Abandoned(id)) => {
            *receiving = Some(Receiving::Abandoned(id));
            None
        }
        None => {
            tracing::warn!("dropping a snapshot chunk outside any transfer");
            None
        }
    }
}

fn finish_snapshot(
    msg: Box<raft::eraftpb::Message>,
    inc: snapshot::Incoming,
    chunks: u64,
) -> Option<Input> {
    match inc.finish() {
        Ok(staged) => {
            tracing::info!(
                chunks,
                bytes = staged.manifest().total_bytes(),
                index = staged.manifest().index,
                "received a snapshot in chunks"
            );
            Some(Input::Snapshot(msg, staged))
        }
        Err(e) => {
            tracing::warn!(error = %e, "dropping a damaged chunk and its transfer");
            None
        }
    }
}

async fn dial_loop(
    (id, peer): (u64, u64),
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Outbound>,
    tls: Option<Arc<super::tls::PeerTls>>,
    events: std_mpsc::Sender<Input>,
) {
    // Every snapshot handed to this task is reported back, streamed or not:
    // raft holds the peer in snapshot state until it hears.
    let report = |ok: bool| {
        let _ = events.send(Input::SnapshotSent(peer, ok));
    };
    let mut backoff = Duration::from_millis(20);
    loop {
        let dialled = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                super::tls::connect(tls.as_deref(), s).await
            }
            Err(e) => Err(e),
        };
        let mut sock = match dialled {
            Ok(s) => {
                backoff = Duration::from_millis(20);
                tracing::debug!(node = id, peer, %addr, "connected to peer");
                s
            }
            Err(e) => {
                tracing::debug!(node = id, peer, %addr, error = %e, "cannot reach peer");
                // Frames queued meanwhile are stale; raft retransmits.
                while let Ok(item) = rx.try_recv() {
                    if let Outbound::Snapshot(..) = item {
                        report(false);
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        loop {
            // Peers never write on our outbound connection, so a readable
            // socket means the peer closed it (it restarted): reconnect at
            // once. Otherwise the next frames, perhaps the votes of the next
            // election, would vanish into a dead connection and cost a whole
            // election round (seen in `tmc bench failover`).
            let mut probe = [0u8; 1];
            let item = tokio::select! {
                f = rx.recv() => match f { Some(f) => f, None => return },
                _ = sock.read(&mut probe) => {
                    tracing::debug!(node = id, peer, "peer closed the connection");
                    break;
                }
            };
            let (mut buf, mut next) = match item {
                Outbound::Frame(f) => (f, None),
                snap => (Vec::new(), Some(snap)),
            };
            // Batch the queued frames into one write; a snapshot goes after
            // them, on its own.
            while next.is_none() && buf.len() < (1 << 20) {
                match rx.try_recv() {
                    Ok(Outbound::Frame(f)) => buf.extend_from_slice(&f),
                    Ok(snap) => next = Some(snap),
                    Err(_) => break,
                }
            }
            if !buf.is_empty() {
                if let Err(e) = sock.write_all(&buf).await {
                    tracing::debug!(node = id, peer, error = %e, "peer connection lost");
                    if next.is_some() {
                        report(false);
                    }
                    break;
                }
            }
            if let Some(Outbound::Snapshot(announce, cp)) = next {
                let streamed = stream_snapshot(&mut sock, &announce, &cp).await;
                report(streamed.is_ok());
                match streamed {
                    Ok(chunks) => tracing::info!(
                        node = id,
                        peer,
                        chunks,
                        bytes = cp.manifest().total_bytes(),
                        index = cp.manifest().index,
                        "streamed a snapshot"
                    ),
                    Err(e) => {
                        tracing::warn!(node = id, peer, error = %e, "streaming a snapshot failed");
                        break;
                    }
                }
            }
        }
    }
}

/// Writes a snapshot's announce frame, then its checkpoint's chunk frames,
/// each read from disk only when the connection has taken the previous
/// one; returns the number of chunks.
async fn stream_snapshot(
    sock: &mut super::tls::PeerStream,
    announce: &[u8],
    cp: &Checkpoint,
) -> std::io::Result<u64> {
    sock.write_all(announce).await?;
    let frames = cp.frames(wire::CHUNK_SIZE);
    let count = frames.chunks();
    // One chunk read (1 MiB) between writes: a short blocking read.
    for frame in frames {
        sock.write_all(&frame?).await?;
    }
    sock.flush().await?;
    Ok(count)
}

enum Pending {
    Write(Reply<Committed>),
    Read(ReadOp, Reply<ReadResult>),
    Member(Reply<Vec<u64>>),
}

fn do_read<E: Engine>(node: &Node<E>, op: &ReadOp) -> Result<ReadResult, Error> {
    let store = node.store();
    match op {
        ReadOp::Barrier => Ok(ReadResult::Get(None, store.revision())),
        ReadOp::Get(key) => Ok(ReadResult::Get(store.get(key)?, store.revision())),
        ReadOp::List(prefix, limit) => {
            let page = store.list(
                prefix,
                &ListOptions {
                    limit: *limit,
                    ..Default::default()
                },
            )?;
            Ok(ReadResult::List(page.items, page.revision))
        }
    }
}

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
    }
}

/// Queues `msg` on its peer's connection (in chunks when large); false
/// when it could not be queued.
fn send_message(
    outbound: &HashMap<u64, mpsc::Sender<Outbound>>,
    msg: raft::eraftpb::Message,
) -> bool {
    let to = msg.to;
    let Some(ptx) = outbound.get(&to) else {
        tracing::warn!(to, "message for an unknown peer");
        return false;
    };
    match wire::encode_chunked(&msg, wire::CHUNK_SIZE) {
        Ok(frames) => frames
            .into_iter()
            .all(|f| ptx.try_send(Outbound::Frame(f)).is_ok()),
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
    outbound: &HashMap<u64, mpsc::Sender<Outbound>>,
    msg: &raft::eraftpb::Message,
) -> bool {
    let to = msg.to;
    let Some(ptx) = outbound.get(&to) else {
        tracing::warn!(to, "snapshot for an unknown peer");
        return false;
    };
    let Some(cp) = node.take_checkpoint(msg) else {
        tracing::warn!(to, "a snapshot message without its checkpoint");
        return false;
    };
    match wire::encode_announce(msg) {
        Ok(announce) => ptx.try_send(Outbound::Snapshot(announce, cp)).is_ok(),
        Err(e) => {
            tracing::warn!(to, error = %e, "cannot encode a snapshot message");
            false
        }
    }
}

fn event_loop<E: Engine>(
    mut node: Node<E>,
    rx: std_mpsc::Receiver<Input>,
    outbound: HashMap<u64, mpsc::Sender<Outbound>>,
    tick: Duration,
    leadership: tokio::sync::watch::Sender<bool>,
) {
    let mut pending: HashMap<RequestId, Pending> = HashMap::new();
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
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(i) => Some(i),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut inputs: Vec<Input> = first.into_iter().collect();
        while inputs.len() < 4096 {
            match rx.try_recv() {
                Ok(i) => inputs.push(i),
                Err(_) => break,
            }
        }
        for input in inputs {
            match input {
                Input::Frame(f) => {
                    if let Err(e) = node.step_frame(&f) {
                        tracing::debug!(error = %e, "step failed");
                    }
                }
                Input::Write(txn, reply) => match node.propose(txn) {
                    Ok(id) => {
                        pending.insert(id, Pending::Write(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Input::Read(op, linearizable, reply) => {
                    if !linearizable {
                        let _ = reply.send(do_read(&node, &op));
                        continue;
                    }
                    match node.read() {
                        Ok(id) => {
                            pending.insert(id, Pending::Read(op, reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Input::Snapshot(msg, staged) => {
                    if let Err(e) = node.step_snapshot(*msg, staged) {
                        tracing::debug!(error = %e, "step failed");
                    }
                }
                Input::SnapshotSent(to, ok) => {
                    if !ok {
                        node.report_unreachable(to);
                    }
                    node.report_snapshot(to, ok);
                }
                Input::Status(reply) => {
                    let _ = reply.send(status_report(&node));
                }
                Input::Member(change, reply) => {
                    match members::propose(&mut node, &outbound, change) {
                        Ok(id) => {
                            pending.insert(id, Pending::Member(reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
        }
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
        for msg in node.take_messages() {
            let to = msg.to;
            if msg.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                // Reported when the stream is over (Input::SnapshotSent).
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
            match (pending.remove(&r.id), r.outcome) {
                (Some(Pending::Write(reply)), Outcome::Write(res)) => {
                    let _ = reply.send(res);
                }
                (Some(Pending::Read(op, reply)), Outcome::Read(res)) => {
                    let _ = reply.send(res.and_then(|_| do_read(&node, &op)));
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
    /// Anything else.
    Internal(String),
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
            Err(e) => Err(WireError::Internal(e.to_string())),
            Ok(Err(Error::NotLeader { leader: Some(l) })) if to_forward.is_some() => {
                let Some(addr) = self.kv_peers.get(&l) else {
                    return Err(WireError::NotLeader(Some(l)));
                };
                let body = serde_json::to_vec(to_forward.as_ref().expect("some"))
                    .map_err(|e| WireError::Internal(e.to_string()))?;
                let (code, raw) = post_internal(self.tls.as_deref(), addr, "/internal/txn", &body)
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
            match self.call(|tx| Input::Read(ReadOp::Barrier, true, tx)).await {
                Err(e) => Err(ShardError::Internal(e.to_string())),
                Ok(Ok(_)) => Ok(self.reads.revision()),
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

/// POSTs `body` to `http://addr{path}`; see [`internal_request`].
async fn post_internal(
    tls: Option<&super::tls::PeerTls>,
    addr: &str,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Vec<u8>), String> {
    internal_request(tls, addr, "POST", path, body).await
}

/// One request to another replica's KV interface (HTTP/1.1, one request
/// per connection, marked not to be forwarded again, 15 s bound); returns
/// status and body.
async fn internal_request(
    tls: Option<&super::tls::PeerTls>,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Vec<u8>), String> {
    let exchange = async {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = super::tls::connect(tls, s)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\n{NO_FORWARD}: 1\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(body).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
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

async fn read(h: &Handle, op: ReadOp, lin: bool) -> Result<ReadResult, HttpResponse> {
    match h.call(|tx| Input::Read(op, lin, tx)).await {
        Err(e) => Err(http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            None,
        )),
        Ok(Err(e)) => Err(raft_error(h, e)),
        Ok(Ok(r)) => Ok(r),
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
        Err(e) => http_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

/// The KV interface:
/// - `PUT /kv/{workspace}/{namespace}/{name}` (body: the JSON value),
///   `GET` (`?consistency=linearizable|local`, linearizable by default),
///   `DELETE`;
/// - `GET /kv/{workspace}` lists the workspace's values (`?limit=`);
/// - `POST /txn` takes a JSON [`Txn`];
/// - `GET /status`: id, role, leader, term, commit, applied, revision;
/// - `POST /members/{id}`, `DELETE /members/{id}`: add or remove a voter
///   (forwarded to the leader like writes; see the `members` submodule),
///   `GET /members`: the voters.
///
/// Writes on a follower are forwarded once to the leader's `POST /txn`
/// (its address from `kv_peers`) and its answer passed back; 502 if that
/// fails. With the [`NO_FORWARD`] header (set on forwarded requests), or
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
