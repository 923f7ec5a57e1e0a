//! Replication of a shard's store across its replicas with raft-rs.
//!
//! Layers, bottom up:
//! - [`storage`]: [`LogStore`], raft-rs's `Storage` over an [`Engine`](crate::store::Engine): the
//!   `log` column family and the raft records of `meta`.
//! - [`snapshot`]: a snapshot is a [`Checkpoint`] of the engine at an
//!   applied index; its files stream in chunks into a [`Staged`] copy on
//!   the follower.
//! - [`wire`]: the checksummed frame a raft message travels in, the chunks
//!   a large one is split into, and the frames of a snapshot transfer.
//! - [`node`]: [`Node`], the consensus core: raft-rs's `RawNode`, the Ready
//!   loop, group commit, reads and membership changes. No sockets, no clock.
//! - [`sim`]: a deterministic in-process cluster on a simulated network, for
//!   tests.
//! - [`linearize`]: a linearizability checker (Wing-Gong-Lowe search) for
//!   histories of gets and puts recorded by tests.
//! - [`validate`]: the checks a message from a peer passes before raft-rs
//!   sees it (who sent it, and nothing raft-rs would panic on).
//! - [`tls`]: mutual TLS between replicas with a peer CA of its own and a
//!   node identity per certificate.
//! - [`fuzz`]: a fuzzer of raft frames against live in-process replicas.
//! - [`server`]: `tmc serve`'s replica: the event loop that owns a node on
//!   a real clock ([`server::event_loop`]), the peer transport
//!   ([`server::transport`]), [`server::RaftShard`] (the raft-backed
//!   [`Shard`](crate::shard::Shard)) with its forwarding client
//!   ([`server::forward`]), and the internal HTTP interface
//!   ([`server::kv`], [`server::internal`]).
//!
//! # Protocol
//!
//! **Inputs and outputs.** A [`Node`] sees only messages ([`Node::step`],
//! [`Node::step_frame`]), logical ticks ([`Node::tick`]) and client requests
//! ([`Node::propose`], [`Node::read`], [`Node::change_membership`]). After a
//! batch of inputs the caller runs [`Node::poll`], then takes the messages to
//! send ([`Node::take_messages`]) and the answers to requests
//! ([`Node::take_responses`]). Disk writes go to the node's [`Engine`](crate::store::Engine); the
//! simulation gives it an in-memory one. Sockets, timers and the thread that
//! owns the node live in an event loop at the edge ([`server`], below).
//!
//! **The Ready loop**, in the order raft-rs documents (its `src/lib.rs`),
//! in [`Node::poll`]:
//! 1. queued writes become raft entries (group commit, below), queued reads
//!    one ReadIndex request;
//! 2. `messages()` are sent at once: a leader replicates while it persists
//!    (raft thesis 10.2.1);
//! 3. a snapshot from the leader is installed: data, log position,
//!    configuration and hard state in one durable write;
//! 4. new entries and the hard state are persisted in one write batch,
//!    fsynced unless `must_sync()` is false (only the commit index changed);
//! 5. only then are `persisted_messages()` sent (votes and append
//!    responses promise what is on disk);
//! 6. committed entries are applied; the commit index was persisted with
//!    the hard state before, never after;
//! 7. `advance`; the `LightReady`'s new commit index is persisted, its
//!    messages sent, its committed entries applied; `advance_apply`.
//!
//! **Applying and the applied index.** Each committed entry goes through
//! [`Store::apply_entry`](crate::store::Store::apply_entry), which writes the
//! data, the next revisions and the entry's index as *applied index* in one
//! atomic batch. The applied index is therefore exactly the state on disk:
//! on restart the node passes it to raft as `Config.applied`, and raft
//! replays the committed entries after it. Applying is not fsynced: the log
//! entry it applies is, and RocksDB's write-ahead log recovers a prefix of
//! writes, so a lost apply is replayed. A non-deterministic failure while
//! applying (I/O) stops the node ([`Error::Stopped`]) rather than let its
//! replica diverge; a failed precondition is deterministic and only fails
//! that transaction.
//!
//! **Group commit.** Writes are queued ([`Node::propose`]) and, at the next
//! poll, up to `max_batch_txns` of them (or `max_batch_bytes`) go into one
//! raft entry: bincode of `Vec<(request id, Txn)>`. One entry costs one
//! append, one fsync, one replication round; its transactions get
//! consecutive revisions. The proposer remembers `(index, term)` of each
//! entry it proposed; when the entry at that index is applied with that
//! term, each transaction's result goes to its request id. If the term
//! differs, or the node loses leadership first, the requests fail with
//! [`Error::LeadershipLost`]: the outcome of such a write is unknown (it may
//! still commit under the next leader), as with etcd. Writes are accepted by
//! the leader only ([`Error::NotLeader`] names the leader, if known).
//!
//! **Reads.** [`Node::read`] is linearizable: reads queued until a poll
//! share one raft ReadIndex request; once the leader has confirmed its
//! leadership with a quorum and this node has applied up to the read index,
//! the answer is that index and the caller reads the store. raft-rs drops
//! ReadIndex requests when no leader is known, so [`Node::read`] fails at
//! once with [`Error::NoLeader`] then, and a new leader holds reads until it
//! has committed an entry of its term. Reads, like writes, time out after
//! `request_timeout_ticks` ([`Error::Timeout`]). A minority side of a
//! partition cannot complete a ReadIndex, so it serves no stale
//! linearizable read. Local reads (Kubernetes' `resourceVersion=0`) read
//! [`Node::store`] directly.
//!
//! **Snapshots and compaction.** The state machine is durable on its own
//! (RocksDB), so compaction needs no separate snapshot file: when the log
//! holds more than `log_compact_threshold` applied entries, the older half
//! is removed, keeping the index and term of the last removed entry. A
//! follower that needs a removed entry gets a snapshot: a checkpoint of the
//! engine taken on demand at the applied index ([`Checkpoint`]). The raft
//! message carries only its [`Manifest`]; the files follow on the same
//! peer connection in crc-checked 1 MiB chunks, read lazily on the leader
//! and written to a staging directory on the follower, which verifies the
//! whole transfer before raft sees the message and installs it without
//! loading it into memory (see [`snapshot`]).
//!
//! **Membership.** [`Node::change_membership`] adds or removes one voter
//! or learner, or promotes a learner, with a `ConfChangeV2` (a simple
//! change, no joint state); one change at a time. A learner gets the log
//! and snapshots but neither votes nor counts for commits: a replica that
//! starts far behind joins as one and is promoted once caught up
//! ([`server::join`]). The configuration as of the applied index is kept in `meta` and
//! travels in snapshots. A replica opened with no founding voters and an
//! empty disk (`tmc serve --join`) knows no configuration: it sets raft-rs's
//! `pending_request_snapshot`, so it answers the leader's first append with
//! a snapshot request instead of replaying the log from index 1 (which
//! would apply the shard's membership history to an empty configuration).
//!
//! **Determinism.** raft-rs draws election timeouts from a thread-local
//! RNG; with `NodeConfig::seed` set, the node redraws them from its own
//! seeded RNG, so a simulated cluster replays exactly for a seed.
//!
//! # Event loop and transport
//!
//! [`server::start`] opens a [`Node`] and runs it on one dedicated thread,
//! the event loop, which alone touches the node; the peer transport runs
//! on a tokio runtime of its own (one more thread), the API and the KV
//! interface on another, and none of them blocks on an fsync. The loop
//! mirrors [`sim`]:
//! 1. wait for an input or the next tick (one logical tick per
//!    `--tick-ms`, 100 ms by default: elections after 10-20 ticks, i.e.
//!    1-2 s, heartbeats every 2 ticks); then take every queued message
//!    from peers ([`Node::step`], [`Node::step_snapshot`]), then at most
//!    one batch of client requests: writes ([`Node::propose`]), read
//!    points ([`Node::read`]; the store itself is read by the caller, off
//!    the loop), status queries; every queue is bounded (see
//!    [`server::event_loop`]);
//! 2. tick when the tick is due (a late loop does not tick in a burst);
//! 3. [`Node::poll`], then hand each of [`Node::take_messages`] to the
//!    peer's outbound queue (a full queue or a dead link is reported with
//!    [`Node::report_unreachable`]; a snapshot is reported with
//!    [`Node::report_snapshot`] when its stream is over), then answer
//!    [`Node::take_responses`] to the waiting clients through their
//!    oneshot channels. A linearizable read's caller then reads the store
//!    itself, which has applied at least up to the read index.
//!
//! **Transport.** TCP with mutual TLS ([`tls`]; plain with
//! `--insecure-peers`), one outbound connection per peer, dialled
//! with exponential backoff (20 ms doubling to 1 s) and redialled when a
//! write fails; frames queued while a peer is unreachable are dropped (raft
//! retransmits). Queued frames are coalesced into one socket write. A
//! message larger than 1 MiB is sent as crc-checked chunk frames and
//! reassembled per connection; a damaged or missing chunk drops the whole
//! transfer ([`wire`]). A snapshot goes as an announce frame followed by
//! its checkpoint's files in chunk frames, streamed from disk; the leader's
//! appends leave before its own fsync ([`Node::send_early`]). Inbound
//! connections are read frame by frame: the 8-byte header, then the body;
//! a header announcing more than [`wire::MAX_FRAME`] (a chunk and some
//! room) closes the connection before anything is allocated, chunks
//! reassemble into at most [`wire::MAX_MESSAGE`], and a frame that fails
//! its checksum or does not decode is logged and dropped, never applied.
//! A message must come from the node the connection's certificate names
//! ([`validate::check_sender`]; otherwise the connection closes), and must
//! pass [`validate::check`] against the node's state before raft-rs sees
//! it ([`Node::step`]): a message raft-rs would panic on is refused and
//! logged, and nothing changes.
//!
//! **KV interface.** [`server::router`] ([`server::kv`]): `PUT/GET/DELETE
//! /kv/{workspace}/{namespace}/{name}` (objects of `?resource=`,
//! configmaps by default), `GET /kv/{workspace}` (list), `POST /txn` (a
//! JSON [`crate::store::Txn`]), `GET /status` (`?disk=true`: with the data
//! directory's size), and membership: `POST /members/{id}` (add a voter or
//! promote a learner; `?learner=true`: add a learner), `DELETE
//! /members/{id}` (remove one), `GET /members`, `POST /leader/hand-over`
//! (the leader transfers leadership to its most caught-up voter,
//! [`Node::hand_over`]); over the peers' mutual TLS. A write on a follower is
//! forwarded once ([`server::forward`]: to the leader's `POST
//! /internal/txn` at its `--kv-peers` address, naming itself in
//! `x-tmc-from`, over a kept-alive connection of the replica's one
//! client) and the leader's answer passed back. A forwarded request
//! carries the `x-tmc-no-forward` header, so a stale view of the leader
//! costs a 503, never a loop: `not leader; leader is N at ADDR`, whose
//! JSON names `leader` and `leader_addr`, which clients (`tmc kv`, the
//! tests) follow. No leader known: 503 `no leader`; forwarding failed:
//! 502; a timeout or lost leadership: 504 (a write's outcome is then
//! unknown in both); a failed precondition: 409.
//!
//! # Implementation caveats
//!
//! - A replica's certificate is trusted for what raft trusts a peer with:
//!   a replica (or a thief of its key) can lie within raft's rules (claim
//!   leadership in a term, vote twice); raft tolerates crashes, not
//!   Byzantine peers. Certificates are not revoked (the peer CA is
//!   replaced instead).
//! - raft-rs drops a ReadIndex request that reaches a new leader before it
//!   has committed an entry of its term; a follower's read then ends with
//!   [`Error::Timeout`] and is retried by the caller.
//! - Writes and membership changes sent to a follower are refused with
//!   [`Error::NotLeader`] and the leader's id; the KV interface forwards
//!   them one hop (HTTP/1.1 over the peers' mutual TLS, on connections
//!   kept alive between forwards) or answers a 503 naming the leader.
//! - Raft addresses are static: `--peers` is the address book, and a voter
//!   can only be added if every replica's `--peers` names it (replicas are
//!   restarted with a longer list first; a StatefulSet's pods name every
//!   ordinal up to `--max-replicas` from the start). Addresses do not
//!   travel in the configuration; host names are resolved at every dial.
//! - A snapshot is a full checkpoint (the raft log's column family
//!   included, though the follower reads only the replicated ones);
//!   there is no incremental transfer and no resume of a broken one: the
//!   leader starts over with a new checkpoint. Compaction does not wait for
//!   slow followers: one that falls behind the compacted log gets a full
//!   snapshot. A transfer into a link that swallows bytes without closing
//!   holds that peer in raft's snapshot state until the connection breaks.
//! - The leader reads each 1 MiB chunk from disk inside the async writer
//!   task, and the follower verifies a received checkpoint (opening it) on
//!   the event-loop thread: short blocking I/O outside the fsync thread's
//!   usual work.
//! - The configuration record and the applied index of a membership change
//!   are two writes (the store's batch cannot carry raft records yet); a
//!   crash between them re-applies the change on restart, which raft-rs
//!   accepts for simple changes.
//! - A storage I/O error inside raft-rs's own calls (reading the log)
//!   panics there, as raft-rs does for every storage error; the node must
//!   stop then anyway.
//! - The checks of [`validate`] follow raft-rs 0.7's code paths; a newer
//!   raft-rs must be read again for new panics.
//! - Most tests run replicas in one process on a simulated network
//!   ([`sim`]); a simulated crash keeps every write (the memory engine has
//!   no unsynced state). `tests/raft_process.rs` runs three `tmc serve`
//!   processes on loopback on RocksDB and SIGKILLs them.
//! - Installing a snapshot on a follower keeps its readers consistent: once
//!   the install's marker is durable, the [`crate::store::Store`] serves
//!   every read from the staged checkpoint (the new state, complete) while
//!   the live engine is rewritten, then from the live engine again
//!   ([`crate::store::Store::begin_replace`]). Subscribers keep their
//!   receivers; a watch whose revision the new change log no longer covers
//!   gets `Compacted` (410 at the API), never a gap.

pub mod client;
pub mod fuzz;
pub mod linearize;
pub mod node;
pub mod server;
pub mod sim;
pub mod snapshot;
pub mod storage;
pub mod tls;
pub mod validate;
pub mod wire;

pub use node::{
    cluster_id_for, EarlySink, MembershipChange, Node, NodeConfig, Outcome, RequestId, Response,
    Status,
};
pub use raft::StateRole;
pub use snapshot::{Checkpoint, Manifest, Staged};
pub use storage::{LogStore, SnapshotDir};

use std::fmt::Write as _;

/// Errors of the replication layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writes and membership changes go to the leader.
    #[error("this node is not the leader; {}", leader_hint(*leader))]
    NotLeader {
        /// The leader, if this node knows one.
        leader: Option<u64>,
    },
    /// No leader is known: an election is in progress or this node is cut
    /// off from the majority. raft-rs would silently drop a read now.
    #[error("no leader: an election is in progress or this node is cut off from the majority")]
    NoLeader,
    /// Leadership changed while the request was in flight. A write's
    /// outcome is unknown: it may still commit under the new leader.
    #[error(
        "leadership lost before the request completed (a write may or may not have been applied)"
    )]
    LeadershipLost,
    /// The request did not complete in time. A write's outcome is unknown.
    #[error("request timed out after {ticks} ticks (a write may or may not have been applied)")]
    Timeout {
        /// The timeout, in logical ticks.
        ticks: u64,
    },
    /// Another membership change has not been applied yet.
    #[error("a membership change is already in progress")]
    ConfChangeInProgress,
    /// The membership change makes no sense for the current configuration.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(String),
    /// raft-rs refused the proposal (for example during a leader transfer).
    #[error("proposal dropped by raft: {0}")]
    Dropped(String),
    /// A committed entry or snapshot that cannot be decoded.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The store failed: a deterministic transaction error (conflict) when
    /// it answers one write, an I/O error otherwise.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// raft-rs failed.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A message from a peer was refused before raft saw it (see
    /// [`validate`]); nothing changed.
    #[error("refused a raft message: {0}")]
    Refused(String),
    /// The node stopped after a fatal error and serves nothing any more.
    #[error("node {id} has stopped after a fatal error: {reason}")]
    Stopped {
        /// The node.
        id: u64,
        /// The fatal error.
        reason: String,
    },
}

fn leader_hint(leader: Option<u64>) -> String {
    match leader {
        Some(l) => format!("the leader is node {l}"),
        None => "no leader is known".to_string(),
    }
}

/// raft-rs logs through slog; this drain forwards its records to `tracing`
/// (target `raft`), with the record's key-value pairs appended.
struct TracingDrain;

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        use slog::KV as _;
        let enabled = match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::enabled!(target: "raft", tracing::Level::ERROR)
            }
            slog::Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
            slog::Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            slog::Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{msg}{kv}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}{kv}"),
            slog::Level::Debug => tracing::debug!(target: "raft", "{msg}{kv}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{msg}{kv}"),
        }
        Ok(())
    }
}

/// The slog logger handed to raft-rs: records go to `tracing`.
pub fn raft_logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("raft_id" => node_id))
}
