//! The consensus core of one replica: raft-rs's `RawNode` over a
//! [`LogStore`], the Ready loop, group commit, linearizable reads and
//! membership changes. See the module documentation of [`crate::raft`] for
//! the protocol.
//!
//! This file holds the node's state and its inputs: opening, requests
//! (writes queued for group commit, reads, membership changes), ticks,
//! messages from peers, and the first half of a poll (leadership checks,
//! proposing the queued writes and reads). The rest is in two modules:
//! `node/ready.rs`: one round of raft-rs's Ready protocol (persist, apply,
//! install a snapshot, answer); `node/codec.rs`: an entry's data and a ReadIndex
//! context as bytes.

use super::snapshot::{self, Checkpoint, Staged};
use super::storage::LogStore;
use super::storage::SnapshotDir;
use super::{raft_logger, validate, wire, Error};
use crate::store::{Committed, Engine, Store, StoreOptions, Txn};
use codec::{encode_batch, read_ctx, txn_size, Batch};
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message, MessageType};
use raft::{Config, RawNode, ReadOnlyOption, SnapshotStatus, StateRole, INVALID_ID, INVALID_INDEX};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

mod codec;
mod ready;

/// Identifies a client request on the node that accepted it.
pub type RequestId = u64;

/// Takes the messages a leader sends before persisting (see
/// [`Node::send_early`]).
pub type EarlySink = Box<dyn FnMut(Vec<Message>) + Send>;

/// Settings of one replica.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This replica's id (non-zero, unique in the shard).
    pub id: u64,
    /// The founding voters, used only to bootstrap an empty store; empty for
    /// a replica that joins an existing shard.
    pub voters: Vec<u64>,
    /// Ticks without a leader before an election.
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// At most this many transactions per raft entry.
    pub max_batch_txns: usize,
    /// At most about this many bytes of transactions per raft entry.
    pub max_batch_bytes: usize,
    /// Upper bound of one append message (raft's `max_size_per_msg`).
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// Compact the log when it holds more applied entries than this (0:
    /// never).
    pub log_compact_threshold: u64,
    /// Requests fail with [`Error::Timeout`] after this many ticks.
    pub request_timeout_ticks: u64,
    /// Seed of the election-timeout RNG; `None` leaves it to raft-rs.
    pub seed: Option<u64>,
    /// Directory of snapshot checkpoints and incoming transfers (its
    /// contents are removed on open); `None`: a temporary directory.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// Revisions of history the store's change log keeps, overriding the
    /// [`StoreOptions`] given to [`Node::open`] (`tmc serve
    /// --changes-retention`).
    pub changes_retention: Option<u64>,
    /// The cluster id a founding replica records when it bootstraps (every
    /// founder of a shard must be given the same; see
    /// [`cluster_id_for`]). 0: none.
    pub cluster_id: u64,
}

/// The cluster id the founders of shard `name` record: derived from the
/// name, so that founders agree without talking. Two shards founded with
/// the same name share it (as two etcd clusters with the same
/// `--initial-cluster-token` do); a restore always mints a random one.
pub fn cluster_id_for(name: &str) -> u64 {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("tmc-shard:{name}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b).max(1)
}

impl NodeConfig {
    /// Defaults for replica `id` of a shard founded by `voters`, for a tick
    /// of about 100 ms: elections after 1-2 s, heartbeats every 200 ms.
    pub fn new(id: u64, voters: Vec<u64>) -> Self {
        NodeConfig {
            id,
            voters,
            election_tick: 10,
            heartbeat_tick: 2,
            max_batch_txns: 512,
            max_batch_bytes: 1 << 20,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            log_compact_threshold: 10_000,
            request_timeout_ticks: 50,
            seed: None,
            snapshot_dir: None,
            changes_retention: None,
            cluster_id: 0,
        }
    }
}

/// A change of the voter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter (it starts empty and catches up from the leader), or
    /// promote a learner.
    AddVoter(u64),
    /// Add a learner: it receives the log and the snapshots but does not
    /// vote nor count for commits, so a replica that is far behind joins
    /// without weakening the quorum; promote it with [`Self::AddVoter`]
    /// once it has caught up.
    AddLearner(u64),
    /// Remove a voter.
    RemoveVoter(u64),
}

/// The answer to one request.
#[derive(Debug)]
pub enum Outcome {
    /// A write: its commit (revision and per-operation results) or why not.
    Write(Result<Committed, Error>),
    /// A linearizable read: the read index, applied here, so the store may
    /// be read now; or why not.
    Read(Result<u64, Error>),
    /// A membership change: the voters after it, or why not.
    Membership(Result<Vec<u64>, Error>),
}

/// A request's id and its answer.
#[derive(Debug)]
pub struct Response {
    /// The id [`Node::propose`], [`Node::read`] or
    /// [`Node::change_membership`] returned.
    pub id: RequestId,
    /// The answer.
    pub outcome: Outcome,
}

/// A snapshot of a node's raft state, for tests and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The node.
    pub id: u64,
    /// Leader, follower, candidate, pre-candidate.
    pub role: StateRole,
    /// Current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Commit index.
    pub commit: u64,
    /// Applied index of the store.
    pub applied: u64,
    /// Store revision.
    pub revision: u64,
    /// First index still in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Voters as of the applied index.
    pub voters: Vec<u64>,
    /// Learners as of the applied index (they receive the log but do not
    /// vote).
    pub learners: Vec<u64>,
    /// On the leader: the highest log index known to be replicated on each
    /// other member (voter or learner); empty elsewhere.
    pub matched: BTreeMap<u64, u64>,
}

/// What kind of request an id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
    Membership,
}

impl Kind {
    fn failed(self, e: Error) -> Outcome {
        match self {
            Kind::Write => Outcome::Write(Err(e)),
            Kind::Read => Outcome::Read(Err(e)),
            Kind::Membership => Outcome::Membership(Err(e)),
        }
    }
}

/// A write waiting for the next entry.
struct Queued {
    id: RequestId,
    size: usize,
    txn: Txn,
}

/// An entry this node proposed, by index.
struct Proposal {
    term: u64,
    ids: Vec<RequestId>,
}

/// One replica's consensus core. Single-threaded: one event loop owns it.
pub struct Node<E: Engine> {
    /// This replica's id.
    id: u64,
    /// Its settings.
    config: NodeConfig,
    /// raft-rs, over the raft log in the engine.
    raw: RawNode<LogStore<Arc<E>>>,
    /// The replicated state machine, shared with local readers.
    store: Arc<Store<Arc<E>>>,
    /// Seeded election-timeout RNG, when deterministic.
    rng: Option<StdRng>,
    /// Counts opens of this replica (see [`read_ctx`]).
    incarnation: u64,
    /// Logical time, in ticks.
    now: u64,
    /// Next request id.
    next_id: RequestId,
    /// Requests not answered yet.
    live: BTreeMap<RequestId, Kind>,
    /// Deadlines of requests, `(tick, id)`.
    deadlines: BTreeSet<(u64, RequestId)>,
    /// Writes waiting for the next entry (group commit).
    queue: VecDeque<Queued>,
    /// Entries proposed here, by log index.
    proposals: BTreeMap<u64, Proposal>,
    /// Membership changes proposed here, by log index: (term, id).
    conf_changes: BTreeMap<u64, (u64, RequestId)>,
    /// Reads waiting for the next ReadIndex request.
    reads_queued: Vec<RequestId>,
    /// ReadIndex requests in flight, by sequence: (leader asked, reads).
    reads_inflight: BTreeMap<u64, (u64, Vec<RequestId>)>,
    /// Reads with a read index, waiting for it to be applied.
    reads_ready: BTreeMap<u64, Vec<RequestId>>,
    /// Next ReadIndex sequence.
    next_read_seq: u64,
    /// The term in which this node leads, if it does.
    leader_term: Option<u64>,
    /// The leader this node knew at the last check.
    known_leader: u64,
    /// A verified snapshot received from the leader: (index, term, its
    /// staged checkpoint).
    incoming_snapshot: Option<(u64, u64, Staged)>,
    /// Messages to send.
    messages: Vec<Message>,
    /// Where the messages raft-rs lets a leader send before persisting go
    /// at once, so the followers' fsyncs overlap the leader's (see
    /// [`Node::send_early`]); without one they wait in `messages`.
    early: Option<EarlySink>,
    /// Answers to requests.
    responses: Vec<Response>,
    /// Why the node stopped, once it has.
    stopped: Option<String>,
    /// A replica that joins with an empty disk: it has no configuration and
    /// no log, and must start from a snapshot (see [`Node::step`]).
    awaiting_snapshot: bool,
}

impl<E: Engine> Node<E> {
    /// Opens replica `config.id` on `engine`: bootstraps an empty engine
    /// with `config.voters`, or restarts from the persisted raft state with
    /// the store's applied index as raft's `Config.applied`.
    pub fn open(engine: E, config: NodeConfig, store_opts: StoreOptions) -> Result<Self, Error> {
        let engine = Arc::new(engine);
        let log = match &config.snapshot_dir {
            Some(dir) => LogStore::open_in(engine.clone(), SnapshotDir::Path(dir.clone()))?,
            None => LogStore::open(engine.clone())?,
        };
        if log.is_empty() && !config.voters.is_empty() {
            log.bootstrap(&config.voters)?;
            if config.cluster_id != 0 {
                log.set_cluster_id(config.cluster_id)?;
            }
        }
        let incarnation = log.bump_incarnation()?;
        // Under raft the log is the durable record; applies are replayed.
        let store_opts = StoreOptions {
            sync: false,
            changes_retention: config
                .changes_retention
                .unwrap_or(store_opts.changes_retention),
        };
        let store = Arc::new(Store::open(engine, store_opts)?);
        let applied = store.applied_index();
        let commit = log.hard_state().commit;
        let (truncated, _) = log.truncated();
        if applied > commit {
            return Err(Error::Corrupt {
                what: "raft state",
                reason: format!(
                    "applied index {applied} is beyond the persisted commit index {commit}"
                ),
            });
        }
        if applied < truncated {
            return Err(Error::Corrupt {
                what: "raft state",
                reason: format!(
                    "applied index {applied} is behind the compacted log (up to {truncated})"
                ),
            });
        }
        log.set_applied(applied);
        let raft_config = Config {
            id: config.id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            ..Default::default()
        };
        raft_config.validate()?;
        // Nothing on disk and no founding voters: a replica joining a shard.
        let awaiting_snapshot = log.conf_state().voters.is_empty()
            && log.truncated() == (0, 0)
            && log.hard_state().commit == 0;
        let raw = RawNode::new(&raft_config, log, &raft_logger(config.id))?;
        let rng = config
            .seed
            .map(|s| StdRng::seed_from_u64(s ^ config.id.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let mut node = Node {
            id: config.id,
            config,
            raw,
            store,
            rng,
            incarnation,
            now: 0,
            next_id: 1,
            live: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            queue: VecDeque::new(),
            proposals: BTreeMap::new(),
            conf_changes: BTreeMap::new(),
            reads_queued: Vec::new(),
            reads_inflight: BTreeMap::new(),
            reads_ready: BTreeMap::new(),
            next_read_seq: 1,
            leader_term: None,
            known_leader: INVALID_ID,
            incoming_snapshot: None,
            messages: Vec::new(),
            early: None,
            responses: Vec::new(),
            stopped: None,
            awaiting_snapshot,
        };
        node.reseed_election_timeout(true);
        // A shard of one voter has nobody to wait for: it leads at once
        // (pre-vote and vote are its own) instead of after an election
        // timeout, so `tmc dev` is ready as soon as it starts.
        let cs = node.raw.store().conf_state();
        if cs.voters == [node.id] && cs.learners.is_empty() && !node.is_leader() {
            node.raw.campaign()?;
        }
        Ok(node)
    }

    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The replicated store, for local (possibly stale) reads, and for
    /// linearizable reads once [`Outcome::Read`] said so.
    pub fn store(&self) -> &Store<Arc<E>> {
        &self.store
    }

    /// The store, shared: readers on other threads use it for local reads
    /// and the change log while this node applies (the store is
    /// single-writer, many-reader; a snapshot install reloads it in place).
    pub fn shared_store(&self) -> Arc<Store<Arc<E>>> {
        self.store.clone()
    }

    /// True while this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        let l = self.raw.raft.leader_id;
        (l != INVALID_ID).then_some(l)
    }

    /// Why the node stopped, if it has.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// The node's raft state.
    pub fn status(&self) -> Status {
        let raft = &self.raw.raft;
        let log = self.raw.store();
        let (truncated, _) = log.truncated();
        Status {
            id: self.id,
            role: raft.state,
            term: raft.term,
            leader: self.leader(),
            commit: raft.raft_log.committed,
            applied: self.store.applied_index(),
            revision: self.store.revision(),
            first_index: truncated + 1,
            last_index: raft.raft_log.last_index(),
            voters: sorted(log.conf_state().voters),
            learners: sorted(log.conf_state().learners),
            matched: if raft.state == StateRole::Leader {
                raft.prs()
                    .iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, p)| (*id, p.matched))
                    .collect()
            } else {
                BTreeMap::new()
            },
        }
    }

    fn check_running(&self) -> Result<(), Error> {
        match &self.stopped {
            None => Ok(()),
            Some(reason) => Err(Error::Stopped {
                id: self.id,
                reason: reason.clone(),
            }),
        }
    }

    fn alloc(&mut self, kind: Kind) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.live.insert(id, kind);
        self.deadlines
            .insert((self.now + self.config.request_timeout_ticks, id));
        id
    }

    fn respond(&mut self, id: RequestId, outcome: Outcome) {
        if self.live.remove(&id).is_some() {
            self.responses.push(Response { id, outcome });
        }
    }

    fn fail(&mut self, id: RequestId, e: Error) {
        if let Some(kind) = self.live.remove(&id) {
            self.responses.push(Response {
                id,
                outcome: kind.failed(e),
            });
        }
    }

    /// Queues a write for the next raft entry. Only the leader accepts
    /// writes. The answer comes as [`Outcome::Write`] after a poll.
    pub fn propose(&mut self, txn: Txn) -> Result<RequestId, Error> {
        self.check_running()?;
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader(),
            });
        }
        let id = self.alloc(Kind::Write);
        let size = txn_size(&txn);
        self.queue.push_back(Queued { id, size, txn });
        Ok(id)
    }

    /// Starts a linearizable read. The answer comes as [`Outcome::Read`]
    /// after a poll; then read [`Node::store`].
    pub fn read(&mut self) -> Result<RequestId, Error> {
        self.check_running()?;
        if self.leader().is_none() {
            return Err(Error::NoLeader);
        }
        let id = self.alloc(Kind::Read);
        self.reads_queued.push(id);
        Ok(id)
    }

    /// Proposes a change of the voter set (leader only, one at a time). The
    /// answer comes as [`Outcome::Membership`] once the change is applied.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<RequestId, Error> {
        self.check_running()?;
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader(),
            });
        }
        if self.raw.raft.has_pending_conf() || !self.conf_changes.is_empty() {
            return Err(Error::ConfChangeInProgress);
        }
        let conf = self.raw.store().conf_state();
        let voters = conf.voters;
        let (kind, node) = match change {
            MembershipChange::AddVoter(n) | MembershipChange::AddLearner(n) => {
                if n == INVALID_ID {
                    return Err(Error::InvalidConfChange("node id 0 is reserved".into()));
                }
                if voters.contains(&n) {
                    return Err(Error::InvalidConfChange(format!(
                        "node {n} is already a voter"
                    )));
                }
                if matches!(change, MembershipChange::AddLearner(_)) {
                    if conf.learners.contains(&n) {
                        return Err(Error::InvalidConfChange(format!(
                            "node {n} is already a learner"
                        )));
                    }
                    (ConfChangeType::AddLearnerNode, n)
                } else {
                    (ConfChangeType::AddNode, n)
                }
            }
            MembershipChange::RemoveVoter(n) => {
                if n == self.id {
                    // raft-rs keeps a removed leader leading; hand over first.
                    return Err(Error::InvalidConfChange(format!(
                        "node {n} is the leader; hand leadership over first (tmc member hand-over)"
                    )));
                }
                if conf.learners.contains(&n) {
                    (ConfChangeType::RemoveNode, n)
                } else if !voters.contains(&n) {
                    return Err(Error::InvalidConfChange(format!(
                        "node {n} is not a member"
                    )));
                } else if voters.len() == 1 {
                    return Err(Error::InvalidConfChange(format!(
                        "node {n} is the last voter"
                    )));
                } else {
                    (ConfChangeType::RemoveNode, n)
                }
            }
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = node;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        let id = self.alloc(Kind::Membership);
        if let Err(e) = self.raw.propose_conf_change(id.to_be_bytes().to_vec(), cc) {
            self.live.remove(&id);
            return Err(Error::Dropped(e.to_string()));
        }
        let index = self.raw.raft.raft_log.last_index();
        self.conf_changes.insert(index, (self.raw.raft.term, id));
        Ok(id)
    }

    /// Times every durable append of the log into `h`.
    pub fn observe_fsync(&self, h: prometheus_client::metrics::histogram::Histogram) {
        self.raw.store().observe_fsync(h);
    }

    /// Asks the leader to hand leadership to voter `to` (which must be up
    /// to date soon; the transfer is abandoned after an election timeout).
    pub fn transfer_leadership(&mut self, to: u64) -> Result<(), Error> {
        self.check_running()?;
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader(),
            });
        }
        if !self.raw.store().conf_state().voters.contains(&to) {
            return Err(Error::InvalidConfChange(format!(
                "node {to} is not a voter"
            )));
        }
        self.raw.transfer_leader(to);
        Ok(())
    }

    /// On the leader: hands leadership to the voter that has replicated
    /// the most of the log (the one that can take over soonest), for a
    /// replica about to stop; returns it. Errors: not the leader, or no
    /// other voter.
    pub fn hand_over(&mut self) -> Result<u64, Error> {
        let to = self
            .status()
            .matched
            .into_iter()
            .filter(|(id, _)| self.raw.store().conf_state().voters.contains(id))
            .max_by_key(|(id, matched)| (*matched, std::cmp::Reverse(*id)))
            .map(|(id, _)| id);
        match to {
            Some(to) => self.transfer_leadership(to).map(|()| to),
            None if !self.is_leader() => Err(Error::NotLeader {
                leader: self.leader(),
            }),
            None => Err(Error::InvalidConfChange(
                "no other voter to hand leadership to".into(),
            )),
        }
    }

    /// Advances logical time by one tick: elections, heartbeats, timeouts.
    pub fn tick(&mut self) -> Result<(), Error> {
        self.check_running()?;
        self.now += 1;
        self.raw.tick();
        self.reseed_election_timeout(false);
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > self.now {
                break;
            }
            self.deadlines.pop_first();
            self.fail(
                id,
                Error::Timeout {
                    ticks: self.config.request_timeout_ticks,
                },
            );
        }
        let live = &self.live;
        self.reads_inflight
            .retain(|_, (_, ids)| ids.iter().any(|id| live.contains_key(id)));
        Ok(())
    }

    /// What [`validate::check`] needs of this node's raft state.
    pub fn view(&self) -> validate::View {
        let raft = &self.raw.raft;
        validate::View {
            id: self.id,
            term: raft.term,
            committed: raft.raft_log.committed,
            last_index: raft.raft_log.last_index(),
            leader: raft.state == StateRole::Leader,
        }
    }

    /// Checks a message from a peer ([`validate::check`]); a refusal is
    /// logged and returned as [`Error::Refused`], and raft never sees the
    /// message.
    fn admit(&self, msg: &Message) -> Result<(), Error> {
        validate::check(msg, &self.view()).map_err(|e| {
            tracing::warn!(
                node = self.id,
                from = msg.from,
                to = msg.to,
                msg_type = ?msg.get_msg_type(),
                term = msg.term,
                reason = %e,
                "refused a raft message"
            );
            Error::Refused(e.0)
        })
    }

    /// Hands a message from a peer to raft, once [`validate::check`]ed:
    /// messages not meant for this node, local kinds (proposals are not
    /// forwarded between nodes) and messages raft-rs would panic on are
    /// refused ([`Error::Refused`]) with nothing changed; a snapshot
    /// without its checkpoint is logged and dropped.
    pub fn step(&mut self, msg: Message) -> Result<(), Error> {
        self.check_running()?;
        self.admit(&msg)?;
        if self.awaiting_snapshot && self.raw.raft.pending_request_snapshot == INVALID_INDEX {
            // A joining replica knows no configuration: replaying the log
            // from index 1 would apply the shard's membership changes to an
            // empty one. Ask the leader for a snapshot instead (raft-rs then
            // answers every append with the request until one arrives).
            self.raw.raft.pending_request_snapshot = 1;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            // Its data travels apart from it: see [`Node::step_snapshot`].
            tracing::warn!(
                node = self.id,
                from = msg.from,
                "dropping a snapshot message without its checkpoint"
            );
            return Ok(());
        }
        self.step_raw(msg)
    }

    /// Hands raft a `MsgSnapshot` whose checkpoint the transport received
    /// into `staged` ([`snapshot::Incoming`]). The checkpoint must match the
    /// message's manifest, open, and hold the store at the snapshot's
    /// index; otherwise the message is logged and dropped and nothing
    /// changes (the leader sends another).
    pub fn step_snapshot(&mut self, msg: Message, staged: Staged) -> Result<(), Error> {
        self.check_running()?;
        self.admit(&msg)?;
        if msg.to != self.id || msg.get_msg_type() != MessageType::MsgSnapshot {
            tracing::warn!(
                node = self.id,
                to = msg.to,
                "dropping a misdirected snapshot"
            );
            return Ok(());
        }
        let from = msg.from;
        let snap = msg.get_snapshot();
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let checked = snapshot::Manifest::decode(&snap.data)
            .and_then(|m| {
                if &m == staged.manifest() && m.index == index {
                    Ok(())
                } else {
                    Err(crate::store::Error::engine(format!(
                        "the checkpoint received (index {}, transfer {:x}) is not the one announced (index {index})",
                        staged.manifest().index,
                        staged.manifest().id
                    )))
                }
            })
            .and_then(|()| snapshot::verify(self.store.engine(), &staged));
        if let Err(e) = checked {
            tracing::warn!(node = self.id, from, index, error = %e, "dropping a damaged snapshot");
            return Ok(());
        }
        if self.awaiting_snapshot && self.raw.raft.pending_request_snapshot == INVALID_INDEX {
            self.raw.raft.pending_request_snapshot = 1;
        }
        self.incoming_snapshot = Some((index, term, staged));
        self.step_raw(msg)
    }

    /// The checkpoint to stream with a `MsgSnapshot` this node sends (each
    /// is handed out once; its directory goes when the last holder drops
    /// it).
    pub fn take_checkpoint(&self, msg: &Message) -> Option<Arc<Checkpoint>> {
        self.raw.store().take_checkpoint(msg.get_snapshot())
    }

    /// True while this replica has no configuration and no log (it waits
    /// for a leader's snapshot to join).
    pub fn awaiting_snapshot(&self) -> bool {
        self.awaiting_snapshot
    }

    /// The cluster id recorded on this replica (0: none).
    pub fn cluster_id(&self) -> Result<u64, Error> {
        Ok(self.raw.store().cluster_id()?)
    }

    /// Where this node keeps snapshot checkpoints and incoming transfers.
    pub fn snapshot_dir(&self) -> &std::path::Path {
        self.raw.store().snapshot_dir()
    }

    fn step_raw(&mut self, msg: Message) -> Result<(), Error> {
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(node = self.id, error = %e, "raft refused a message");
        }
        if self.raw.snap().is_none() {
            // raft did not take the snapshot (stale, or none was sent).
            self.incoming_snapshot = None;
        }
        self.reseed_election_timeout(false);
        Ok(())
    }

    /// Decodes a frame ([`wire`]) and steps it ([`Node::step`]); a frame
    /// that does not decode is logged and refused ([`Error::Refused`]).
    pub fn step_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        match wire::decode(frame) {
            Ok(msg) => self.step(msg),
            Err(e) => {
                tracing::warn!(node = self.id, error = %e, "dropping an undecodable raft frame");
                Err(Error::Refused(e.to_string()))
            }
        }
    }

    /// The transport could not reach `peer`.
    pub fn report_unreachable(&mut self, peer: u64) {
        if self.stopped.is_none() {
            self.raw.report_unreachable(peer);
        }
    }

    /// The transport delivered (`delivered`) or lost a snapshot to `peer`.
    pub fn report_snapshot(&mut self, peer: u64, delivered: bool) {
        if self.stopped.is_none() {
            let status = if delivered {
                SnapshotStatus::Finish
            } else {
                SnapshotStatus::Failure
            };
            self.raw.report_snapshot(peer, status);
        }
    }

    /// Hands the messages that raft-rs lets a leader send before persisting
    /// (its appends and heartbeats; never a snapshot) to `sink` during
    /// [`Node::poll`], before the leader's own fsync, instead of holding
    /// them until `poll` returns. The leader's fsync and its followers' then
    /// overlap, as Ongaro's thesis (section 10.2.1) and raft-rs's Ready order
    /// allow: these messages promise nothing about the leader's disk.
    /// Messages that do ([`raft::Ready::persisted_messages`]) still wait
    /// for the fsync and come out of [`Node::take_messages`].
    pub fn send_early(&mut self, sink: EarlySink) {
        self.early = Some(sink);
    }

    /// Messages to send to peers (each names its recipient in `to`).
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Answers to requests since the last call.
    pub fn take_responses(&mut self) -> Vec<Response> {
        std::mem::take(&mut self.responses)
    }

    /// Runs the Ready loop until raft has nothing left to do: proposes
    /// queued writes and reads, persists, applies, answers. A fatal error
    /// (I/O while persisting or applying) stops the node; it is returned
    /// here and by every later call.
    pub fn poll(&mut self) -> Result<(), Error> {
        self.check_running()?;
        match self.poll_inner() {
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(node = self.id, error = %reason, "raft node stopped");
                self.stopped = Some(reason.clone());
                let ids: Vec<RequestId> = self.live.keys().copied().collect();
                for id in ids {
                    self.fail(
                        id,
                        Error::Stopped {
                            id: self.id,
                            reason: reason.clone(),
                        },
                    );
                }
                Err(e)
            }
        }
    }

    fn poll_inner(&mut self) -> Result<(), Error> {
        self.check_leadership();
        self.flush_writes();
        self.flush_reads();
        while self.raw.has_ready() {
            self.handle_ready()?;
            self.check_leadership();
            // A new leader holds reads until it commits in its term.
            self.flush_reads();
        }
        self.maybe_compact()?;
        self.reseed_election_timeout(false);
        Ok(())
    }

    /// Fails what a change of leadership invalidates.
    fn check_leadership(&mut self) {
        let raft = &self.raw.raft;
        let leading = (raft.state == StateRole::Leader).then_some(raft.term);
        let leader = raft.leader_id;
        if self.leader_term.is_some() && self.leader_term != leading {
            let new_leader = (leader != INVALID_ID).then_some(leader);
            let queued: Vec<RequestId> = self.queue.drain(..).map(|q| q.id).collect();
            for id in queued {
                self.fail(id, Error::NotLeader { leader: new_leader });
            }
            let proposed: Vec<RequestId> = std::mem::take(&mut self.proposals)
                .into_values()
                .flat_map(|p| p.ids)
                .collect();
            let changes: Vec<RequestId> = std::mem::take(&mut self.conf_changes)
                .into_values()
                .map(|(_, id)| id)
                .collect();
            for id in proposed.into_iter().chain(changes) {
                self.fail(id, Error::LeadershipLost);
            }
        }
        self.leader_term = leading;
        if leader != self.known_leader {
            // ReadIndex requests sent to the old leader are lost with it.
            let lost: Vec<RequestId> = std::mem::take(&mut self.reads_inflight)
                .into_values()
                .flat_map(|(_, ids)| ids)
                .collect();
            for id in lost {
                self.fail(id, Error::LeadershipLost);
            }
            self.known_leader = leader;
        }
    }

    /// Group commit: turns the queued writes into as few entries as the
    /// batch limits allow.
    fn flush_writes(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        if !self.is_leader() {
            let leader = self.leader();
            let queued: Vec<RequestId> = self.queue.drain(..).map(|q| q.id).collect();
            for id in queued {
                self.fail(id, Error::NotLeader { leader });
            }
            return;
        }
        while !self.queue.is_empty() {
            let mut batch: Batch = Vec::new();
            let mut bytes = 0usize;
            while let Some(front) = self.queue.front() {
                if !batch.is_empty()
                    && (batch.len() >= self.config.max_batch_txns
                        || bytes + front.size > self.config.max_batch_bytes)
                {
                    break;
                }
                let q = self.queue.pop_front().expect("front exists");
                if !self.live.contains_key(&q.id) {
                    continue; // timed out while queued
                }
                bytes += q.size;
                batch.push((q.id, q.txn));
            }
            if batch.is_empty() {
                continue;
            }
            let ids: Vec<RequestId> = batch.iter().map(|(id, _)| *id).collect();
            let result = encode_batch(&batch)
                .and_then(|data| self.raw.propose(vec![], data).map_err(Error::from));
            match result {
                Ok(()) => {
                    let index = self.raw.raft.raft_log.last_index();
                    let term = self.raw.raft.term;
                    self.proposals.insert(index, Proposal { term, ids });
                }
                Err(e) => {
                    let reason = e.to_string();
                    for id in ids {
                        self.fail(id, Error::Dropped(reason.clone()));
                    }
                }
            }
        }
    }

    /// Sends the queued reads as one ReadIndex request.
    fn flush_reads(&mut self) {
        if self.reads_queued.is_empty() {
            return;
        }
        let leader = self.raw.raft.leader_id;
        if leader == INVALID_ID {
            for id in std::mem::take(&mut self.reads_queued) {
                self.fail(id, Error::NoLeader);
            }
            return;
        }
        if self.is_leader() && !self.raw.raft.commit_to_current_term() {
            return;
        }
        let seq = self.next_read_seq;
        self.next_read_seq += 1;
        let ids = std::mem::take(&mut self.reads_queued);
        self.raw
            .read_index(read_ctx(self.id, self.incarnation, seq));
        self.reads_inflight.insert(seq, (leader, ids));
    }

    /// Redraws raft's election timeout from the seeded RNG whenever raft has
    /// just reset its election timer (and so drawn from its own RNG).
    fn reseed_election_timeout(&mut self, force: bool) {
        let Some(rng) = &mut self.rng else {
            return;
        };
        if force || self.raw.raft.election_elapsed == 0 {
            let lo = self.config.election_tick;
            let hi = 2 * self.config.election_tick;
            let t = rng.random_range(lo..hi);
            self.raw.raft.set_randomized_election_timeout(t);
        }
    }
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard of one voter (`tmc dev`) leads as soon as it opens, without
    /// an election timeout: zero ticks; and again after a restart.
    #[test]
    fn a_sole_voter_leads_at_once_without_ticks() {
        let engine = crate::store::MemoryEngine::default();
        for _ in 0..2 {
            let mut node = Node::open(
                engine.clone(),
                NodeConfig::new(1, vec![1]),
                StoreOptions::default(),
            )
            .unwrap();
            node.poll().unwrap();
            assert!(node.is_leader(), "{:?}", node.status());
            let id = node.propose(Txn::default()).unwrap();
            let mut answered = Vec::new();
            for _ in 0..10 {
                node.poll().unwrap();
                answered.extend(node.take_responses());
            }
            assert!(
                answered
                    .iter()
                    .any(|r| r.id == id && matches!(r.outcome, Outcome::Write(Ok(_)))),
                "{answered:?}"
            );
        }
        // With peers it waits for an election, as before.
        let node = Node::open(
            crate::store::MemoryEngine::default(),
            NodeConfig::new(1, vec![1, 2, 3]),
            StoreOptions::default(),
        )
        .unwrap();
        assert!(!node.is_leader());
    }
}
