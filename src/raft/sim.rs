//! A deterministic in-process cluster on a simulated network, for tests.
//!
//! Every replica is a real [`Node`] on its own engine (in memory or
//! RocksDB). Time is logical: [`Sim::tick`] ticks every running node once,
//! then delivers messages until the cluster is quiet. Messages travel as
//! [`wire`] frames through a network that can drop, delay and corrupt them,
//! cut a link, isolate a node and heal; nodes can be stopped, restarted from
//! their engine, wiped, added and removed. All randomness (network faults,
//! election timeouts) comes from one seed, so a run replays exactly.
//!
//! The simulator also watches three invariants while it runs: at most one
//! leader per term (election safety), replicas at the same applied
//! index hold the same data ([`Sim::check_consistent`]), and no frame a
//! node sent undamaged is refused by its recipient's checks
//! ([`super::validate`]).
//!
//! A stop is a crash that keeps every write: the engine's contents stay as
//! they were (a memory engine has no unsynced state to lose).
//!
//! Like a real transport, it reports a link it cannot use to the sender
//! ([`Node::report_unreachable`]) and the fate of each snapshot
//! ([`Node::report_snapshot`]).

use super::node::{MembershipChange, Node, NodeConfig, Outcome, RequestId};
use super::{wire, Error};
use crate::store::{
    Cf, Committed, EncodingTag, Engine, Expectation, GroupResource, Key, MemoryEngine, ObjectKey,
    RocksEngine, RocksOptions, StoreOptions, Txn, TxnOp, Workspace,
};
use raft::eraftpb::MessageType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where the simulated replicas keep their engines.
pub trait EngineFactory<E: Engine> {
    /// Opens (creating if needed) the engine of node `id`.
    fn open(&mut self, id: u64) -> crate::store::Result<E>;
    /// Destroys the engine of node `id` (a wiped disk).
    fn wipe(&mut self, id: u64) -> crate::store::Result<()>;
}

/// In-memory engines; a restarted node gets its old engine back.
#[derive(Default)]
pub struct MemoryEngines(BTreeMap<u64, MemoryEngine>);

impl EngineFactory<MemoryEngine> for MemoryEngines {
    fn open(&mut self, id: u64) -> crate::store::Result<MemoryEngine> {
        Ok(self.0.entry(id).or_default().clone())
    }

    fn wipe(&mut self, id: u64) -> crate::store::Result<()> {
        self.0.remove(&id);
        Ok(())
    }
}

/// RocksDB engines in `dir/node-{id}`.
pub struct RocksEngines {
    /// The parent directory.
    pub dir: PathBuf,
    /// Engine options.
    pub options: RocksOptions,
}

impl EngineFactory<RocksEngine> for RocksEngines {
    fn open(&mut self, id: u64) -> crate::store::Result<RocksEngine> {
        RocksEngine::open(&self.dir.join(format!("node-{id}")), &self.options)
    }

    fn wipe(&mut self, id: u64) -> crate::store::Result<()> {
        let path = self.dir.join(format!("node-{id}"));
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::store::Error::engine(format!(
                "wiping {}: {e}",
                path.display()
            ))),
        }
    }
}

/// Receives a snapshot as the TCP transport does: the announce frame, then
/// every chunk into a staging directory under `root`.
fn receive_snapshot(
    root: &std::path::Path,
    announce: &[u8],
    chunks: &[Vec<u8>],
) -> Result<(raft::eraftpb::Message, super::snapshot::Staged), String> {
    let msg = wire::decode_announce(announce).map_err(|e| e.to_string())?;
    let manifest =
        super::snapshot::Manifest::decode(&msg.get_snapshot().data).map_err(|e| e.to_string())?;
    let mut inc = super::snapshot::Incoming::begin(root, manifest).map_err(|e| e.to_string())?;
    for c in chunks {
        inc.push(c).map_err(|e| e.to_string())?;
    }
    let staged = inc.finish().map_err(|e| e.to_string())?;
    Ok((msg, staged))
}

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Settings of every node (`id`, `voters` and `seed` are filled in).
    pub node: NodeConfig,
    /// Store options of every node.
    pub store: StoreOptions,
}

impl SimConfig {
    /// Node defaults with the given seed.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            node: NodeConfig::new(0, vec![]),
            store: StoreOptions::default(),
        }
    }
}

/// A message on the wire.
struct Packet {
    from: u64,
    to: u64,
    frame: Vec<u8>,
    snapshot: bool,
    /// A snapshot's checkpoint, as the chunk frames that follow its
    /// announce frame on a connection.
    chunks: Vec<Vec<u8>>,
    /// The network flipped a bit of the frame.
    damaged: bool,
}

/// The simulated network.
struct Network {
    /// Packets by (delivery tick, sequence).
    queue: BTreeMap<(u64, u64), Packet>,
    /// Next sequence number.
    seq: u64,
    /// Directed links that drop everything.
    cut: BTreeSet<(u64, u64)>,
    /// Nodes cut off from everyone.
    isolated: BTreeSet<u64>,
    /// Probability that a packet is lost.
    drop_rate: f64,
    /// Probability that a packet arrives with a flipped bit.
    corrupt_rate: f64,
    /// Delivery delay in ticks, inclusive range.
    delay: (u64, u64),
}

impl Network {
    fn link_down(&self, from: u64, to: u64) -> bool {
        self.cut.contains(&(from, to))
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
    }
}

/// What became of a packet handed to the network.
enum Sent {
    Queued,
    LinkDown,
    Lost,
}

/// The replicated state of one replica, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// Applied index.
    pub applied: u64,
    /// Store revision.
    pub revision: u64,
    /// Every pair of the `data` column family.
    pub data: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every pair of the `changes` column family.
    pub changes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A simulated cluster.
pub struct Sim<E: Engine> {
    /// Engines of the replicas.
    engines: Box<dyn EngineFactory<E>>,
    /// Settings.
    config: SimConfig,
    /// The founding voters.
    voters: Vec<u64>,
    /// Randomness of the network.
    rng: StdRng,
    /// Logical time.
    now: u64,
    /// Replicas; `None` while stopped.
    nodes: BTreeMap<u64, Option<Node<E>>>,
    /// The network.
    net: Network,
    /// Answers not yet collected, by (node, request).
    results: BTreeMap<(u64, RequestId), Outcome>,
    /// The leader seen in each term.
    leaders: BTreeMap<u64, u64>,
    /// Invariant violations seen.
    violations: Vec<String>,
    /// Notable events (leader changes, restarts), for replay checks.
    events: Vec<String>,
    /// Snapshot messages delivered and accepted.
    snapshots: u64,
    /// Frames delivered (recipient, frame), while tapping.
    tap: Option<Vec<(u64, Vec<u8>)>>,
}

impl Sim<MemoryEngine> {
    /// A cluster of nodes `1..=n` on in-memory engines.
    pub fn memory(n: u64, config: SimConfig) -> Result<Self, Error> {
        Sim::new(
            Box::new(MemoryEngines::default()),
            (1..=n).collect(),
            config,
        )
    }
}

impl<E: Engine> Sim<E> {
    /// A cluster founded by `voters`, each started on its engine.
    pub fn new(
        engines: Box<dyn EngineFactory<E>>,
        voters: Vec<u64>,
        config: SimConfig,
    ) -> Result<Self, Error> {
        let mut sim = Sim {
            engines,
            rng: StdRng::seed_from_u64(config.seed),
            config,
            voters: voters.clone(),
            now: 0,
            nodes: BTreeMap::new(),
            net: Network {
                queue: BTreeMap::new(),
                seq: 0,
                cut: BTreeSet::new(),
                isolated: BTreeSet::new(),
                drop_rate: 0.0,
                corrupt_rate: 0.0,
                delay: (0, 0),
            },
            results: BTreeMap::new(),
            leaders: BTreeMap::new(),
            violations: Vec::new(),
            events: Vec::new(),
            snapshots: 0,
            tap: None,
        };
        for id in voters {
            sim.open_node(id, true)?;
        }
        Ok(sim)
    }

    fn open_node(&mut self, id: u64, founder: bool) -> Result<(), Error> {
        let engine = self.engines.open(id)?;
        let mut config = self.config.node.clone();
        config.id = id;
        config.voters = if founder { self.voters.clone() } else { vec![] };
        config.seed = Some(self.config.seed);
        let node = Node::open(engine, config, self.config.store.clone())?;
        self.nodes.insert(id, Some(node));
        Ok(())
    }

    /// Starts (or stops) recording the ordinary frames delivered, for
    /// [`Sim::tapped`].
    pub fn tap(&mut self, on: bool) {
        self.tap = on.then(Vec::new);
    }

    /// The frames delivered since [`Sim::tap`]: (recipient, frame).
    pub fn tapped(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.tap.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Logical time in ticks.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The ids of all nodes, running or stopped.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// A running node.
    pub fn node(&self, id: u64) -> Option<&Node<E>> {
        self.nodes.get(&id).and_then(Option::as_ref)
    }

    /// A running node, mutably.
    pub fn node_mut(&mut self, id: u64) -> Option<&mut Node<E>> {
        self.nodes.get_mut(&id).and_then(Option::as_mut)
    }

    fn running_node(&mut self, id: u64) -> Result<&mut Node<E>, Error> {
        self.node_mut(id).ok_or(Error::Stopped {
            id,
            reason: "not running in the simulation".into(),
        })
    }

    /// Invariant violations seen so far (must stay empty).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// How many snapshots were delivered to a running node.
    pub fn snapshots_delivered(&self) -> u64 {
        self.snapshots
    }

    /// Notable events so far: leader changes, stops, starts.
    pub fn events(&self) -> &[String] {
        &self.events
    }

    // ---- faults ----

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.net.cut.insert((a, b));
        self.net.cut.insert((b, a));
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&mut self, id: u64) {
        self.net.isolated.insert(id);
    }

    /// Splits the cluster: no link between a node of `side` and one outside.
    pub fn partition(&mut self, side: &[u64]) {
        for &a in side {
            for b in self.ids() {
                if !side.contains(&b) {
                    self.cut(a, b);
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.net.cut.clear();
        self.net.isolated.clear();
    }

    /// Loses each packet with probability `p`.
    pub fn set_drop_rate(&mut self, p: f64) {
        self.net.drop_rate = p;
    }

    /// Flips a bit of each packet with probability `p`.
    pub fn set_corrupt_rate(&mut self, p: f64) {
        self.net.corrupt_rate = p;
    }

    /// Delays each packet by `min..=max` ticks.
    pub fn set_delay(&mut self, min: u64, max: u64) {
        self.net.delay = (min, max.max(min));
    }

    /// Stops (crashes) a node; its engine stays.
    pub fn stop(&mut self, id: u64) {
        if let Some(slot) = self.nodes.get_mut(&id) {
            if slot.take().is_some() {
                self.events.push(format!("t={} stop {id}", self.now));
            }
        }
    }

    /// Starts a stopped node from its engine.
    pub fn start(&mut self, id: u64) -> Result<(), Error> {
        if self.node(id).is_some() {
            return Ok(());
        }
        let founder = self.voters.contains(&id);
        self.open_node(id, founder)?;
        self.events.push(format!("t={} start {id}", self.now));
        Ok(())
    }

    /// Stops and starts a node.
    pub fn restart(&mut self, id: u64) -> Result<(), Error> {
        self.stop(id);
        self.start(id)
    }

    /// Stops a node and destroys its engine (a replaced disk).
    pub fn wipe(&mut self, id: u64) -> Result<(), Error> {
        self.stop(id);
        self.engines.wipe(id)?;
        Ok(())
    }

    /// Starts a new, empty node that joins through a membership change.
    pub fn add_node(&mut self, id: u64) -> Result<(), Error> {
        self.open_node(id, false)?;
        self.events.push(format!("t={} add {id}", self.now));
        Ok(())
    }

    // ---- time ----

    /// One tick: every running node ticks, then messages flow until the
    /// cluster is quiet.
    pub fn tick(&mut self) {
        self.now += 1;
        for node in self.nodes.values_mut().flatten() {
            if node.stopped().is_none() {
                let _ = node.tick();
            }
        }
        self.settle();
    }

    /// Runs `n` ticks.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Polls every node and delivers due messages until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            self.poll_all();
            let due: Vec<Packet> = {
                let later = self.net.queue.split_off(&(self.now + 1, 0));
                std::mem::replace(&mut self.net.queue, later)
                    .into_values()
                    .collect()
            };
            if due.is_empty() {
                break;
            }
            for p in due {
                self.deliver(p);
            }
        }
        self.observe();
    }

    fn poll_all(&mut self) {
        let ids = self.running();
        for id in ids {
            let Some(node) = self.nodes.get_mut(&id).and_then(Option::as_mut) else {
                continue;
            };
            if node.stopped().is_some() {
                continue;
            }
            if let Err(e) = node.poll() {
                self.violations
                    .push(format!("t={} node {id} stopped: {e}", self.now));
            }
            for r in node.take_responses() {
                self.results.insert((id, r.id), r.outcome);
            }
            for msg in node.take_messages() {
                let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
                let to = msg.to;
                // A snapshot travels as its announce frame and the chunk
                // frames of its checkpoint, as over TCP.
                let encoded = if snapshot {
                    node.take_checkpoint(&msg).ok_or(()).and_then(|cp| {
                        let chunks = cp
                            .frames(wire::CHUNK_SIZE)
                            .collect::<std::io::Result<Vec<_>>>()
                            .map_err(|_| ())?;
                        let announce = wire::encode_announce(&msg).map_err(|_| ())?;
                        Ok((announce, chunks))
                    })
                } else {
                    wire::encode(&msg).map(|f| (f, Vec::new())).map_err(|_| ())
                };
                let sent = match encoded {
                    Ok((frame, chunks)) => Self::send(
                        &mut self.net,
                        &mut self.rng,
                        self.now,
                        (id, to),
                        frame,
                        chunks,
                    ),
                    Err(()) => Sent::Lost,
                };
                match sent {
                    Sent::Queued => {}
                    Sent::LinkDown => {
                        node.report_unreachable(to);
                        if snapshot {
                            node.report_snapshot(to, false);
                        }
                    }
                    Sent::Lost => {
                        if snapshot {
                            node.report_snapshot(to, false);
                        }
                    }
                }
            }
        }
    }

    fn send(
        net: &mut Network,
        rng: &mut StdRng,
        now: u64,
        (from, to): (u64, u64),
        mut frame: Vec<u8>,
        mut chunks: Vec<Vec<u8>>,
    ) -> Sent {
        let snapshot = wire::is_file(&frame);
        if net.link_down(from, to) {
            return Sent::LinkDown;
        }
        if net.drop_rate > 0.0 && rng.random_bool(net.drop_rate) {
            return Sent::Lost;
        }
        let mut damaged = false;
        if net.corrupt_rate > 0.0 && rng.random_bool(net.corrupt_rate) && !frame.is_empty() {
            let i = rng.random_range(0..frame.len());
            frame[i] ^= 1 << rng.random_range(0..8);
            damaged = true;
        }
        for chunk in chunks.iter_mut() {
            if net.corrupt_rate > 0.0 && rng.random_bool(net.corrupt_rate) {
                let i = rng.random_range(0..chunk.len());
                chunk[i] ^= 1 << rng.random_range(0..8);
            }
        }
        let delay = if net.delay.1 > net.delay.0 {
            rng.random_range(net.delay.0..=net.delay.1)
        } else {
            net.delay.0
        };
        net.seq += 1;
        net.queue.insert(
            (now + delay, net.seq),
            Packet {
                from,
                to,
                frame,
                snapshot,
                chunks,
                damaged,
            },
        );
        Sent::Queued
    }

    fn deliver(&mut self, p: Packet) {
        // A link cut while the packet was in flight loses it.
        let arrived = !self.net.link_down(p.from, p.to);
        let mut accepted = false;
        if arrived {
            if let Some(node) = self.node_mut(p.to) {
                if p.snapshot {
                    match receive_snapshot(node.snapshot_dir(), &p.frame, &p.chunks) {
                        Ok((msg, staged)) => {
                            accepted = true;
                            let _ = node.step_snapshot(msg, staged);
                        }
                        Err(e) => {
                            tracing::debug!(to = p.to, error = %e, "simulated snapshot refused");
                        }
                    }
                } else {
                    let r = node.step_frame(&p.frame);
                    if let (Err(Error::Refused(why)), false) = (&r, p.damaged) {
                        self.violations.push(format!(
                            "t={}: node {} refused an undamaged frame from node {}: {why}",
                            self.now, p.to, p.from
                        ));
                    }
                    if let Some(tap) = self.tap.as_mut().filter(|t| t.len() < 100_000) {
                        tap.push((p.to, p.frame.clone()));
                    }
                }
            }
        }
        if p.snapshot {
            if accepted {
                self.snapshots += 1;
                self.events
                    .push(format!("t={} snapshot {} -> {}", self.now, p.from, p.to));
            }
            if let Some(sender) = self.node_mut(p.from) {
                sender.report_snapshot(p.to, accepted);
            }
        }
    }

    /// Records leaders and checks election safety.
    fn observe(&mut self) {
        for (id, node) in self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.as_ref().map(|n| (*id, n)))
        {
            if node.is_leader() {
                let term = node.status().term;
                match self.leaders.get(&term) {
                    None => {
                        self.leaders.insert(term, id);
                        self.events
                            .push(format!("t={} leader {id} term {term}", self.now));
                    }
                    Some(&other) if other != id => self.violations.push(format!(
                        "t={}: two leaders in term {term}: {other} and {id}",
                        self.now
                    )),
                    Some(_) => {}
                }
            }
        }
    }

    // ---- observation ----

    /// The leader of the highest term among running nodes, if that term
    /// has one.
    pub fn leader(&self) -> Option<u64> {
        let max_term = self
            .nodes
            .values()
            .flatten()
            .map(|n| n.status().term)
            .max()?;
        self.nodes
            .values()
            .flatten()
            .find(|n| n.is_leader() && n.status().term == max_term)
            .map(|n| n.id())
    }

    /// Ticks until there is a leader (at most `max_ticks`).
    pub fn wait_for_leader(&mut self, max_ticks: u64) -> Option<u64> {
        for _ in 0..=max_ticks {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            self.tick();
        }
        None
    }

    /// Ticks until every running node has applied everything the leader
    /// has committed and the leader has nothing uncommitted (at most
    /// `max_ticks`). True when that happened.
    pub fn converge(&mut self, max_ticks: u64) -> bool {
        for _ in 0..=max_ticks {
            if let Some(l) = self.leader() {
                let ls = self.node(l).map(|n| n.status());
                if let Some(ls) = ls {
                    let all = self.nodes.values().flatten().all(|n| {
                        n.status().applied == ls.commit && n.status().last_index == ls.last_index
                    });
                    if ls.commit == ls.last_index && all {
                        return true;
                    }
                }
            }
            self.tick();
        }
        false
    }

    /// The replicated state of a running node.
    pub fn state(&self, id: u64) -> Option<ReplicaState> {
        let node = self.node(id)?;
        let engine = node.store().engine();
        let scan = |cf: Cf| -> Vec<(Vec<u8>, Vec<u8>)> {
            engine
                .scan(cf, &[], &[])
                .map(|it| it.filter_map(Result::ok).collect())
                .unwrap_or_default()
        };
        Some(ReplicaState {
            applied: node.store().applied_index(),
            revision: node.store().revision(),
            data: scan(Cf::Data),
            changes: scan(Cf::Changes),
        })
    }

    /// Checks that running replicas at the same applied index hold the same
    /// revision, data and change log.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut by_applied: BTreeMap<u64, (u64, ReplicaState)> = BTreeMap::new();
        for id in self.running() {
            let Some(state) = self.state(id) else {
                continue;
            };
            match by_applied.get(&state.applied) {
                None => {
                    by_applied.insert(state.applied, (id, state));
                }
                Some((other, s)) => {
                    if s != &state {
                        return Err(format!(
                            "nodes {other} and {id} differ at applied index {} \
                             (revisions {} and {}, {} and {} keys)",
                            state.applied,
                            s.revision,
                            state.revision,
                            s.data.len(),
                            state.data.len()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    // ---- clients ----

    /// Collects the answer to a request, if it has come.
    pub fn take_result(&mut self, node: u64, id: RequestId) -> Option<Outcome> {
        self.results.remove(&(node, id))
    }

    /// Ticks until the answer to a request comes (at most `max_ticks`).
    pub fn wait(&mut self, node: u64, id: RequestId, max_ticks: u64) -> Option<Outcome> {
        self.settle();
        for _ in 0..=max_ticks {
            if let Some(o) = self.results.remove(&(node, id)) {
                return Some(o);
            }
            self.tick();
        }
        None
    }

    /// Queues a write at a node.
    pub fn propose(&mut self, node: u64, txn: Txn) -> Result<RequestId, Error> {
        self.running_node(node)?.propose(txn)
    }

    /// Writes and waits for the answer.
    pub fn write(&mut self, node: u64, txn: Txn, max_ticks: u64) -> Result<Committed, Error> {
        let id = self.propose(node, txn)?;
        match self.wait(node, id, max_ticks) {
            Some(Outcome::Write(r)) => r,
            Some(other) => Err(Error::Corrupt {
                what: "simulation",
                reason: format!("a write was answered with {other:?}"),
            }),
            None => Err(Error::Timeout { ticks: max_ticks }),
        }
    }

    /// Puts `value` under the test key `name` through `node`.
    pub fn put(
        &mut self,
        node: u64,
        name: &str,
        value: &[u8],
        max_ticks: u64,
    ) -> Result<Committed, Error> {
        self.write(node, put(name, value), max_ticks)
    }

    /// A linearizable read of the test key `name` through `node`.
    pub fn get(&mut self, node: u64, name: &str, max_ticks: u64) -> Result<Option<Vec<u8>>, Error> {
        let id = self.running_node(node)?.read()?;
        match self.wait(node, id, max_ticks) {
            Some(Outcome::Read(Ok(_))) => Ok(self.get_local(node, name)),
            Some(Outcome::Read(Err(e))) => Err(e),
            Some(other) => Err(Error::Corrupt {
                what: "simulation",
                reason: format!("a read was answered with {other:?}"),
            }),
            None => Err(Error::Timeout { ticks: max_ticks }),
        }
    }

    /// A local (possibly stale) read of the test key `name` at `node`.
    pub fn get_local(&self, node: u64, name: &str) -> Option<Vec<u8>> {
        let n = self.node(node)?;
        n.store().get(&key(name)).ok().flatten().map(|r| r.value)
    }

    /// Proposes a membership change at `node` and waits for it.
    pub fn change_membership(
        &mut self,
        node: u64,
        change: MembershipChange,
        max_ticks: u64,
    ) -> Result<Vec<u64>, Error> {
        let id = self.running_node(node)?.change_membership(change)?;
        match self.wait(node, id, max_ticks) {
            Some(Outcome::Membership(r)) => r,
            Some(other) => Err(Error::Corrupt {
                what: "simulation",
                reason: format!("a membership change was answered with {other:?}"),
            }),
            None => Err(Error::Timeout { ticks: max_ticks }),
        }
    }

    /// Asks the leader `node` to hand leadership to `to` and ticks until
    /// `to` leads (at most `max_ticks`).
    pub fn transfer_leadership(&mut self, node: u64, to: u64, max_ticks: u64) -> Result<(), Error> {
        self.running_node(node)?.transfer_leadership(to)?;
        for _ in 0..=max_ticks {
            self.settle();
            if self.is_leader(to) {
                return Ok(());
            }
            self.tick();
        }
        Err(Error::Timeout { ticks: max_ticks })
    }

    /// True when `node` runs and is the leader.
    pub fn is_leader(&self, node: u64) -> bool {
        self.node(node).is_some_and(Node::is_leader)
    }
}

/// The store key the simulation's test writes use for `name` (a ConfigMap
/// in workspace `root:sim`, namespace `default`).
pub fn key(name: &str) -> Key {
    let gr = GroupResource::new("", "configmaps").expect("valid group-resource");
    let ws = Workspace::parse("root:sim").expect("valid workspace");
    Key::Object(
        ObjectKey::namespaced(gr, ws, "default", name).expect("test key names are DNS subdomains"),
    )
}

/// An unconditional put of raw `value` under the test key `name`.
pub fn put(name: &str, value: &[u8]) -> Txn {
    Txn::new(vec![TxnOp::Put {
        key: key(name),
        encoding: EncodingTag::Raw,
        value: value.to_vec(),
        expect: Expectation::Any,
    }])
}
