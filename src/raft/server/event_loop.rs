//! The event loop: one thread that owns the raft [`Node`] and runs it on a
//! real clock.
//!
//! **Protocol.** `spawn` moves the node onto a thread of its own. Each
//! turn of the loop:
//! 1. sleeps until a producer wakes it (every queue push unparks the
//!    thread) or the next tick is due; it does not sleep while client
//!    requests are left over from the last turn;
//! 2. takes what the transport reported (a snapshot stream ended:
//!    [`Node::report_snapshot`]), then **every** queued message from peers
//!    ([`Node::step`], [`Node::step_snapshot`]), then at most
//!    [`CLIENT_BATCH`] client requests ([`Input`]): writes
//!    ([`Node::propose`]), read points ([`Node::read`]), status queries,
//!    membership changes;
//! 3. ticks when the tick is due (a late loop does not tick in a burst);
//! 4. [`Node::poll`] (disk writes and fsync happen here, on this thread,
//!    never on a tokio runtime); then publishes leadership and [`Health`]
//!    when they changed, hands each of [`Node::take_messages`] to the
//!    peer's outbound queue (a full queue or an unknown peer is reported
//!    with [`Node::report_unreachable`]; a snapshot is reported when its
//!    stream is over), and answers [`Node::take_responses`] to the waiting
//!    clients through their oneshot channels.
//!
//! The leader's appends leave before its own fsync ([`Node::send_early`]);
//! the peers they could not be queued for are reported after the poll.
//! The store itself is read by callers, off the loop: a read point only
//! says when the local store is fresh enough.
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
//! - frames to each peer: [`OUT_QUEUE_BYTES`]; beyond that the peer counts
//!   as unreachable and raft retransmits later.
//!
//! **Priorities.** Peers' messages first, then one batch of client
//! requests, then the tick: a flood of requests delays neither the peers'
//! messages nor the ticks by more than one batch.
//!
//! **Readiness** ([`Health::ready`]): the loop publishes after each turn
//! whether the replica knows a leader, has applied what it learned is
//! committed (within [`READY_LAG`] entries) and has not stopped; a
//! follower cut off from its peers becomes a pre-candidate after an
//! election timeout, forgets its leader and is not ready.
//!
//! Left out: the loop has no shutdown of its own; it ends when every
//! sender of client requests is gone (the process exits). A node that
//! failed ([`Node::poll`] returned an error) keeps the loop turning and
//! answering, but serves nothing and reports itself stopped.
//!
//! [`OUT_QUEUE_BYTES`]: super::transport::OUT_QUEUE_BYTES

use super::super::{Error, MembershipChange, Node, Outcome, RequestId, StateRole};
use super::members;
use super::transport::{OutQueue, Outbound};
use crate::raft::snapshot::Staged;
use crate::store::{Committed, Engine, Txn};
use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

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
    /// Learners (members that do not vote yet).
    #[serde(default)]
    pub learners: Vec<u64>,
    /// On the leader: the log index each other member has replicated.
    #[serde(default)]
    pub matched: std::collections::BTreeMap<u64, u64>,
    /// Whether the replica is ready ([`Health::ready`]).
    #[serde(default)]
    pub ready: bool,
    /// Bytes under its data directory (`/status?disk=true` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// The shard's cluster id (16 hex digits; all zeros: none recorded).
    #[serde(default)]
    pub cluster_id: String,
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
    /// On the leader: hand leadership to the most caught-up voter
    /// ([`Node::hand_over`]); the answer names it. The transfer itself
    /// finishes (or is abandoned) over the next ticks.
    HandOver(Reply<u64>),
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
    pub(super) fn client(&self, input: Input) -> Result<(), CallError> {
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

    pub(super) fn snapshot_sent(&self, peer: u64, ok: bool) {
        let _ = self.events.send(Event::SnapshotSent(peer, ok));
        self.thread.unpark();
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

/// What a running event loop publishes.
pub(super) struct Signals {
    /// Whether the node leads, changed only when its role does.
    pub(super) leader: watch::Receiver<bool>,
    /// The loop's [`Health`] after each turn, when it changed.
    pub(super) health: watch::Receiver<Health>,
}

/// Moves `node` onto a thread of its own (named `raft-<id>`) and runs the
/// event loop there; `outbound` holds one queue per peer, `tick` is the
/// wall-clock length of one logical tick. Returns the ways in and what the
/// loop publishes.
pub(super) fn spawn<E: Engine>(
    node: Node<E>,
    outbound: HashMap<u64, OutQueue>,
    tick: Duration,
    metrics: super::metrics::LoopMetrics,
) -> std::io::Result<(Inbox, Signals)> {
    node.observe_fsync(metrics.fsync.clone());
    let (leader_tx, leader) = watch::channel(false);
    let (health_tx, health) = watch::channel(Health::default());
    let (peers_tx, peers_rx) = std_mpsc::channel();
    let (clients_tx, clients_rx) = std_mpsc::channel();
    let (events_tx, events_rx) = std_mpsc::channel();
    let queues = Queues {
        peers: peers_rx,
        clients: clients_rx,
        events: events_rx,
    };
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", node.id()))
        .spawn(move || {
            event_loop(
                node,
                queues,
                outbound,
                tick,
                (leader_tx, health_tx),
                metrics,
            )
        })?
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
    Ok((inbox, Signals { leader, health }))
}

/// The event loop's ends of its queues.
pub(crate) struct Queues {
    pub(crate) peers: std_mpsc::Receiver<(PeerInput, OwnedSemaphorePermit)>,
    pub(crate) clients: std_mpsc::Receiver<(Input, OwnedSemaphorePermit)>,
    events: std_mpsc::Receiver<Event>,
}

/// A request waiting for the node's answer.
enum Pending {
    /// A write, and when the event loop took it.
    Write(Reply<Committed>, std::time::Instant),
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
        learners: s.learners,
        matched: s.matched,
        ready: health_of(node).ready().is_ok(),
        disk_bytes: None,
        cluster_id: format!("{:016x}", node.cluster_id().unwrap_or(0)),
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
    match crate::raft::wire::encode_chunked(&msg, crate::raft::wire::CHUNK_SIZE) {
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
    match crate::raft::wire::encode_announce(msg) {
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
                pending.insert(id, (Pending::Write(reply, std::time::Instant::now()), slot));
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
        Input::HandOver(reply) => {
            let _ = reply.send(node.hand_over());
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
    (leadership, health): (watch::Sender<bool>, watch::Sender<Health>),
    metrics: super::metrics::LoopMetrics,
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
            if ok {
                metrics.snapshots_sent.inc();
            }
            if !ok {
                node.report_unreachable(to);
            }
            node.report_snapshot(to, ok);
        }
        // Peers first: every message queued, whatever the clients sent.
        while let Ok((input, _slot)) = queues.peers.try_recv() {
            let r = match input {
                PeerInput::Message(msg) => node.step(*msg),
                PeerInput::Snapshot(msg, staged) => {
                    metrics.snapshots_received.inc();
                    node.step_snapshot(*msg, staged)
                }
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
                (Some(Pending::Write(reply, since)), Outcome::Write(res)) => {
                    metrics.proposal.observe(since.elapsed().as_secs_f64());
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
}
