//! The TCP peer transport of `tmc serve`: inbound connections read frame
//! by frame, one outbound connection per peer. It runs on a runtime of its
//! own ([`NetRuntime`]: one thread), apart from the runtime that serves the
//! API, so that no amount of API work delays a heartbeat or a vote.
//!
//! **Inbound.** At most [`MAX_INBOUND`] connections at once (more are
//! closed at accept). With mutual TLS each connection is one peer's
//! ([`PeerId`]); the operator's certificate may not send frames, and a
//! node holds at most [`PER_NODE`] connections (a newer one closes its
//! oldest: a peer that restarted does not wait for its dead connection to
//! time out), so a peer holds that many reassembly buffers at most. Each frame: the 8-byte header (a length over
//! [`wire::MAX_FRAME`] closes the connection before anything is
//! allocated), then the body; chunks are reassembled up to
//! [`wire::MAX_MESSAGE`]; the message is decoded here and its `from`
//! checked against the connection's node ([`validate::check_sender`]: a
//! mismatch is logged and closes the connection). Messages enter the event
//! loop's bounded peer queue; when it is full the reader waits, so the
//! connection stops being read and TCP pushes back on the sender.
//!
//! **Hello.** A connection opens with a hello each way (after TLS): the
//! 4 bytes `TMCH` and the sender's cluster id (8 bytes, big-endian). The
//! dialer sends first; the acceptor answers with its own; each side
//! refuses (logs and closes) a peer of another cluster, so a shard
//! restored from a backup (a new cluster id) and the shard it came from
//! never exchange a message, whatever addresses they are given. A replica
//! that waits to join (no cluster id yet, nothing on disk) takes the id of
//! the first peer that reaches it. A replica written before cluster ids
//! existed has id 0 and talks only to others with 0.
//!
//! **Outbound.** One task per peer dials (with backoff), checks that the
//! server's certificate names that peer, and writes the frames the event
//! loop queued; the queue is bounded in bytes ([`OUT_QUEUE_BYTES`]): the
//! event loop reports a peer whose queue is full as unreachable, and raft
//! retransmits later.

use super::super::snapshot::{self, Checkpoint};
use super::super::tls::{PeerId, PeerStream, PeerTls};
use super::super::{validate, wire};
use super::{Inbox, PeerInput};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Inbound peer connections open at once, handshakes included.
pub const MAX_INBOUND: usize = 64;

/// Inbound connections of one node at once.
pub const PER_NODE: usize = 2;

/// Bytes of frames queued for one peer before it counts as unreachable.
pub const OUT_QUEUE_BYTES: usize = 64 << 20;

/// The first bytes of a hello.
pub const HELLO_MAGIC: [u8; 4] = *b"TMCH";
/// A hello's length.
pub const HELLO_LEN: usize = 12;
/// How long a connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster id this replica's transport checks peers against (see the
/// module's docs).
pub struct ClusterId {
    id: std::sync::atomic::AtomicU64,
    /// Records an adopted id durably; `None` once one is recorded (or for
    /// a replica that must not adopt one).
    adopt: Mutex<Option<ClusterIdSink>>,
}

/// Records an adopted cluster id durably.
pub type ClusterIdSink = Box<dyn FnOnce(u64) -> Result<(), String> + Send>;

impl ClusterId {
    /// A replica of cluster `id`; `adopt` records the first peer's id when
    /// `id` is 0 (a replica waiting to join).
    pub fn new(id: u64, adopt: Option<ClusterIdSink>) -> Self {
        ClusterId {
            id: std::sync::atomic::AtomicU64::new(id),
            adopt: Mutex::new(if id == 0 { adopt } else { None }),
        }
    }

    /// The id (0: none).
    pub fn get(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// Whether a peer of cluster `peer` may talk to this replica; a
    /// replica waiting to join takes `peer`'s id here.
    pub fn admit(&self, peer: u64) -> Result<(), String> {
        let mut adopt = self.adopt.lock().unwrap_or_else(|p| p.into_inner());
        let own = self.get();
        if own == peer {
            return Ok(());
        }
        if own == 0 && peer != 0 {
            if let Some(record) = adopt.take() {
                record(peer)?;
                self.id.store(peer, Ordering::Release);
                tracing::info!(cluster_id = %format!("{peer:016x}"), "joined the cluster of the first peer that reached this replica");
                return Ok(());
            }
        }
        Err(format!(
            "the peer belongs to cluster {peer:016x}, this replica to {own:016x} (a shard restored from a backup and the shard it came from never talk)"
        ))
    }
}

/// A hello carrying cluster id `id`.
pub fn hello(id: u64) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&HELLO_MAGIC);
    h[4..].copy_from_slice(&id.to_be_bytes());
    h
}

/// Reads a peer's hello; its cluster id.
async fn read_hello<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<u64, String> {
    let mut h = [0u8; HELLO_LEN];
    match tokio::time::timeout(HELLO_TIMEOUT, r.read_exact(&mut h)).await {
        Err(_) => return Err("no hello within 5 s".into()),
        Ok(Err(e)) => return Err(format!("no hello: {e}")),
        Ok(Ok(_)) => {}
    }
    if h[..4] != HELLO_MAGIC {
        return Err("not a tmc raft peer (bad hello)".into());
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[4..]);
    Ok(u64::from_be_bytes(id))
}

/// The runtime of the transport: a current-thread tokio runtime driven by
/// one dedicated thread for the life of the process.
pub struct NetRuntime;

impl NetRuntime {
    /// Starts the thread; returns a handle to spawn onto it.
    pub fn start(name: String) -> std::io::Result<tokio::runtime::Handle> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        Ok(handle)
    }
}

/// What the event loop queues for a peer's connection.
pub enum Outbound {
    /// One frame (or chunk frame) as it goes on the wire.
    Frame(Vec<u8>),
    /// A `MsgSnapshot` (announce frame), then its checkpoint streamed in
    /// chunk frames read from disk as the connection takes them.
    Snapshot(Vec<u8>, Arc<Checkpoint>),
}

impl Outbound {
    fn bytes(&self) -> usize {
        match self {
            Outbound::Frame(f) | Outbound::Snapshot(f, _) => f.len(),
        }
    }
}

/// The event loop's side of a peer's outbound queue.
#[derive(Clone)]
pub struct OutQueue {
    tx: mpsc::UnboundedSender<Outbound>,
    bytes: Arc<AtomicUsize>,
}

impl OutQueue {
    /// Queues `item`; false when the queue holds [`OUT_QUEUE_BYTES`]
    /// already or the connection task is gone.
    pub fn push(&self, item: Outbound) -> bool {
        let n = item.bytes();
        let before = self.bytes.fetch_add(n, Ordering::AcqRel);
        if before + n > OUT_QUEUE_BYTES && before > 0 {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        if self.tx.send(item).is_err() {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// The connection task's side of a peer's outbound queue.
pub struct OutRx {
    rx: mpsc::UnboundedReceiver<Outbound>,
    bytes: Arc<AtomicUsize>,
}

impl OutRx {
    async fn recv(&mut self) -> Option<Outbound> {
        let item = self.rx.recv().await?;
        self.bytes.fetch_sub(item.bytes(), Ordering::AcqRel);
        Some(item)
    }

    fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(item.bytes(), Ordering::AcqRel);
        Some(item)
    }
}

/// A peer's outbound queue.
pub fn out_queue() -> (OutQueue, OutRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        OutQueue {
            tx,
            bytes: bytes.clone(),
        },
        OutRx { rx, bytes },
    )
}

/// The inbound connections of each node, oldest first: one more than
/// [`PER_NODE`] closes the oldest.
#[derive(Default)]
struct Current {
    next: u64,
    by_node: HashMap<u64, std::collections::VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// Accepts peer connections on `listener` and reads their frames into
/// `inbox`; `snapshots` is where incoming snapshots are staged.
pub async fn accept_loop(
    listener: std::net::TcpListener,
    inbox: Inbox,
    tls: Option<Arc<PeerTls>>,
    snapshots: Arc<std::path::PathBuf>,
    cluster: Arc<ClusterId>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the raft listener failed; no peer can reach this node");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND));
    let current = Arc::new(Mutex::new(Current::default()));
    loop {
        let (sock, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, limit = MAX_INBOUND, "refused a peer connection: too many open");
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (inbox, tls, snapshots, current, cluster) = (
            inbox.clone(),
            tls.clone(),
            snapshots.clone(),
            current.clone(),
            cluster.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let (mut sock, who) = match super::super::tls::accept(tls.as_deref(), sock).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%from, error = %e, "refused a peer connection: TLS handshake failed");
                    return;
                }
            };
            let admitted = match read_hello(&mut sock).await {
                Ok(peer) => cluster.admit(peer),
                Err(e) => Err(e),
            };
            // The answer goes out either way, so the dialer can say why.
            let _ = sock.write_all(&hello(cluster.get())).await;
            let _ = sock.flush().await;
            if let Err(e) = admitted {
                tracing::warn!(%from, error = %e, "refused a peer connection");
                return;
            }
            let node = match who {
                None => None,
                Some(PeerId::Node(n)) => Some(n),
                Some(PeerId::Operator) => {
                    tracing::warn!(%from, "refused a peer connection: the operator's certificate may not send raft messages");
                    return;
                }
            };
            let (closed_tx, closed) = oneshot::channel();
            // Unauthenticated (plain TCP) connections are nobody's: they
            // keep their sender here and are never replaced.
            let mut _unreplaceable = None;
            let me = match node {
                Some(n) => {
                    let mut c = current.lock().unwrap_or_else(|p| p.into_inner());
                    c.next += 1;
                    let me = c.next;
                    let open = c.by_node.entry(n).or_default();
                    open.push_back((me, closed_tx));
                    if open.len() > PER_NODE {
                        if let Some((_, oldest)) = open.pop_front() {
                            let _ = oldest.send(());
                        }
                    }
                    Some((n, me))
                }
                None => {
                    _unreplaceable = Some(closed_tx);
                    None
                }
            };
            let r = read_frames(sock, node, &inbox, &snapshots, closed).await;
            if let Some((n, me)) = me {
                let mut c = current.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(open) = c.by_node.get_mut(&n) {
                    open.retain(|(id, _)| *id != me);
                    if open.is_empty() {
                        c.by_node.remove(&n);
                    }
                }
            }
            match r {
                Ok(()) => tracing::debug!(%from, "peer connection closed"),
                Err(e) => tracing::debug!(%from, error = %e, "peer connection closed"),
            }
        });
    }
}

/// A snapshot transfer being received on a connection.
enum Receiving {
    /// The announced message and its staging directory.
    Active(Box<raft::eraftpb::Message>, snapshot::Incoming, u64),
    /// A refused transfer: its remaining chunks are dropped quietly.
    Abandoned(u64),
}

/// Reads frames from a peer connection (of node `node`, when
/// authenticated) into the event loop until it closes, a header is out of
/// step, a message claims another sender, or `closed` fires.
pub async fn read_frames<S: tokio::io::AsyncRead + Unpin>(
    sock: S,
    node: Option<u64>,
    inbox: &Inbox,
    snapshots: &std::path::Path,
    mut closed: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let mut r = tokio::io::BufReader::new(sock);
    let mut chunks = wire::Reassembler::default();
    let mut receiving: Option<Receiving> = None;
    loop {
        let frame = tokio::select! {
            // What was sent before a newer connection replaced this one is
            // still read.
            biased;
            f = read_frame(&mut r) => f?,
            _ = &mut closed => {
                tracing::info!(node, "newer connections of the same peer replace this one");
                return Ok(());
            }
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        if wire::is_file(&frame) {
            match receive_snapshot(&mut receiving, &frame, snapshots, node) {
                Ok(Some(input)) => {
                    if !inbox.peer(input).await {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(()) => return Ok(()),
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
        let msg = match wire::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(node, error = %e, "dropping an undecodable raft frame");
                continue;
            }
        };
        if let Err(e) = validate::check_sender(&msg, node) {
            tracing::warn!(
                node,
                from = msg.from,
                msg_type = ?msg.get_msg_type(),
                reason = %e,
                "refused a raft message; closing the connection"
            );
            return Ok(());
        }
        if !inbox.peer(PeerInput::Message(Box::new(msg))).await {
            return Ok(());
        }
    }
}

/// One frame: `None` at a clean end of the stream or after a header that
/// is out of step (logged).
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; wire::HEADER_LEN];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = match wire::body_len(&header) {
        Ok(len) => len,
        Err(e) => {
            // The stream is out of step (or hostile): drop the connection
            // before allocating anything.
            tracing::warn!(error = %e, "bad frame header from a peer; closing");
            return Ok(None);
        }
    };
    let mut frame = vec![0u8; wire::HEADER_LEN + len];
    frame[..wire::HEADER_LEN].copy_from_slice(&header);
    r.read_exact(&mut frame[wire::HEADER_LEN..]).await?;
    Ok(Some(frame))
}

/// Takes one frame of a snapshot transfer: the announcing `MsgSnapshot`
/// starts one (writing to a staging directory under `inbox`), each chunk
/// is written as it comes; the last one yields the message and its staged
/// checkpoint. A damaged or misplaced frame refuses the whole transfer:
/// the staging directory is removed and raft never sees the message. An
/// announce from another node than the connection's is `Err`: the
/// connection closes.
fn receive_snapshot(
    receiving: &mut Option<Receiving>,
    frame: &[u8],
    inbox: &std::path::Path,
    node: Option<u64>,
) -> Result<Option<PeerInput>, ()> {
    if !wire::is_chunk(frame) {
        // A new transfer; one in progress is given up.
        *receiving = None;
        let msg = match wire::decode_announce(frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a damaged chunk and its transfer: a bad snapshot announce");
                return Ok(None);
            }
        };
        if let Err(e) = validate::check_sender(&msg, node) {
            tracing::warn!(node, from = msg.from, reason = %e, "refused a snapshot; closing the connection");
            return Err(());
        }
        let started = snapshot::Manifest::decode(&msg.get_snapshot().data)
            .map_err(|e| e.to_string())
            .and_then(|manifest| {
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
            Ok((msg, inc, 0)) => return Ok(finish_snapshot(msg, inc, 0)),
            Ok((msg, inc, chunks)) => *receiving = Some(Receiving::Active(msg, inc, chunks)),
            Err(e) => {
                tracing::warn!(error = %e, "dropping a damaged chunk and its transfer: a bad snapshot announce")
            }
        }
        return Ok(None);
    }
    Ok(match receiving.take() {
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
    })
}

fn finish_snapshot(
    msg: Box<raft::eraftpb::Message>,
    inc: snapshot::Incoming,
    chunks: u64,
) -> Option<PeerInput> {
    match inc.finish() {
        Ok(staged) => {
            tracing::info!(
                chunks,
                bytes = staged.manifest().total_bytes(),
                index = staged.manifest().index,
                "received a snapshot in chunks"
            );
            Some(PeerInput::Snapshot(msg, staged))
        }
        Err(e) => {
            tracing::warn!(error = %e, "dropping a damaged chunk and its transfer");
            None
        }
    }
}

/// Keeps one connection to `peer` at `addr` (`host:port`, resolved again
/// at every attempt) and writes what the event loop queues for it;
/// reports every snapshot handed to it through `inbox`. The connection is
/// opened when there is something to send: a replica that may join one day
/// (a StatefulSet ordinal not yet scaled to) costs nothing until raft
/// talks to it.
pub async fn dial_loop(
    (id, peer): (u64, u64),
    addr: String,
    mut rx: OutRx,
    tls: Option<Arc<PeerTls>>,
    inbox: Inbox,
    cluster: Arc<ClusterId>,
) {
    // Every snapshot handed to this task is reported back, streamed or not:
    // raft holds the peer in snapshot state until it hears.
    let report = |ok: bool| inbox.snapshot_sent(peer, ok);
    let mut backoff = Duration::from_millis(20);
    let mut first: Option<Outbound> = None;
    loop {
        if first.is_none() {
            match rx.recv().await {
                Some(item) => first = Some(item),
                None => return,
            }
        }
        let dialled = match tokio::net::TcpStream::connect(addr.as_str()).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                match super::super::tls::connect(tls.as_deref(), s, Some(peer)).await {
                    Ok(mut s) => say_hello(&mut s, &cluster).await.map(|()| s),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let mut sock: PeerStream = match dialled {
            Ok(s) => {
                backoff = Duration::from_millis(20);
                tracing::debug!(node = id, peer, %addr, "connected to peer");
                s
            }
            Err(e) => {
                tracing::debug!(node = id, peer, %addr, error = %e, "cannot reach peer");
                // Frames queued meanwhile are stale; raft retransmits.
                for item in first
                    .take()
                    .into_iter()
                    .chain(std::iter::from_fn(|| rx.try_recv()))
                {
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
            let item = if let Some(item) = first.take() {
                item
            } else {
                tokio::select! {
                    f = rx.recv() => match f { Some(f) => f, None => return },
                    _ = sock.read(&mut probe) => {
                        tracing::debug!(node = id, peer, "peer closed the connection");
                        break;
                    }
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
                    Some(Outbound::Frame(f)) => buf.extend_from_slice(&f),
                    Some(snap) => next = Some(snap),
                    None => break,
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

/// The dialer's side of the hello: ours out, theirs in and admitted.
async fn say_hello(sock: &mut PeerStream, cluster: &ClusterId) -> std::io::Result<()> {
    sock.write_all(&hello(cluster.get())).await?;
    sock.flush().await?;
    let refused = |e: String| {
        tracing::warn!(error = %e, "refused a peer");
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)
    };
    let theirs = read_hello(sock).await.map_err(refused)?;
    cluster.admit(theirs).map_err(refused)
}

/// Writes a snapshot's announce frame, then its checkpoint's chunk frames,
/// each read from disk only when the connection has taken the previous
/// one; returns the number of chunks.
async fn stream_snapshot(
    sock: &mut PeerStream,
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

#[cfg(test)]
mod tests {
    use super::super::event_loop::tests::test_inbox;
    use super::super::PeerInput;
    use super::*;
    use raft::eraftpb::{Message, MessageType};
    use tokio::io::AsyncWriteExt;

    fn heartbeat(from: u64) -> Vec<u8> {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = 1;
        m.term = 1;
        wire::encode(&m).unwrap()
    }

    #[tokio::test]
    async fn a_header_announcing_a_gibibyte_closes_the_connection_at_once() {
        let (inbox, queues) = test_inbox();
        let dir = tempfile::tempdir().unwrap();
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let (_keep, closed) = oneshot::channel();
        // The largest length the field can say (the two flag bits clear):
        // 1 GiB - 1, and no body behind it.
        tx.write_all(&[0x3f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
            .await
            .unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            read_frames(rx, Some(2), &inbox, dir.path(), closed),
        )
        .await;
        assert!(
            matches!(r, Ok(Ok(()))),
            "the reader waited for a gibibyte: {r:?}"
        );
        assert!(queues.peers.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_message_from_another_node_than_the_connection_closes_it() {
        let (inbox, queues) = test_inbox();
        let dir = tempfile::tempdir().unwrap();
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let (_keep, closed) = oneshot::channel();
        tx.write_all(&heartbeat(2)).await.unwrap();
        tx.write_all(&heartbeat(3)).await.unwrap();
        tx.write_all(&heartbeat(2)).await.unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            read_frames(rx, Some(2), &inbox, dir.path(), closed),
        )
        .await;
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
        // The first message came through; the liar's closed the
        // connection, and what followed was not read.
        match queues.peers.try_recv() {
            Ok((PeerInput::Message(m), _)) => assert_eq!(m.from, 2),
            _ => panic!("the honest message is missing"),
        }
        assert!(queues.peers.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_peer_queue_stops_reading_the_connection() {
        let (inbox, queues) = test_inbox();
        let dir = tempfile::tempdir().unwrap();
        let (mut tx, rx) = tokio::io::duplex(64 << 10);
        let (_keep, closed) = oneshot::channel();
        let reader = tokio::spawn(async move {
            let dir = dir;
            read_frames(rx, None, &inbox, dir.path(), closed).await
        });
        let one = heartbeat(2);
        // More than the queue and the pipe hold: the writer is pushed
        // back once both are full.
        let n = super::super::PEER_INBOX + 20_000;
        let writer = tokio::spawn(async move {
            for _ in 0..n {
                tx.write_all(&one).await.unwrap();
            }
            tx
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!writer.is_finished(), "nothing pushed back");
        // Held here, the queued messages keep their slots: the reader
        // waits.
        let mut held = Vec::new();
        while let Ok(m) = queues.peers.try_recv() {
            held.push(m);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(queues.peers.try_recv().is_err());
        assert_eq!(held.len(), super::super::PEER_INBOX);
        let mut queued = held.len();
        drop(held);
        // Draining lets the reader go on.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queued < n {
            match queues.peers.try_recv() {
                Ok(_) => queued += 1,
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "stuck at {queued}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        drop(writer.await.unwrap());
        assert!(reader.await.unwrap().is_ok());
    }
}
