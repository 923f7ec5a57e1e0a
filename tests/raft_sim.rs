//! Raft replication on the deterministic simulated cluster
//! (`tmc::raft::sim`): elections, leader loss, partitions, snapshots,
//! membership changes, restarts, group commit and randomized faults.
//!
//! Every test asserts outcomes: acknowledged writes present on every
//! replica, replicas at the same applied index identical (data, revisions,
//! change log), at most one leader per term.

use std::collections::BTreeSet;
use tmc::raft::sim::{self, RocksEngines, Sim, SimConfig};
use tmc::raft::{Error, MembershipChange, Outcome, StateRole};
use tmc::store::{EncodingTag, Engine, Expectation, MemoryEngine, RocksOptions, Txn, TxnOp};

const T: u64 = 200;

fn config(seed: u64) -> SimConfig {
    SimConfig::new(seed)
}

fn cluster(n: u64, seed: u64) -> Sim<MemoryEngine> {
    Sim::memory(n, config(seed)).expect("cluster starts")
}

/// Checks the invariants the simulator watches, and that the replicas at the
/// same applied index agree.
fn assert_sound<E: Engine>(sim: &Sim<E>) {
    assert!(
        sim.violations().is_empty(),
        "violations: {:?}",
        sim.violations()
    );
    sim.check_consistent().expect("replicas agree");
}

/// Checks that every running node holds `key = value`.
fn assert_everywhere<E: Engine>(sim: &Sim<E>, key: &str, value: &[u8]) {
    for id in sim.running() {
        assert_eq!(
            sim.get_local(id, key).as_deref(),
            Some(value),
            "node {id} lacks {key}"
        );
    }
}

fn followers<E: Engine>(sim: &Sim<E>, leader: u64) -> Vec<u64> {
    sim.running()
        .into_iter()
        .filter(|&id| id != leader)
        .collect()
}

#[test]
fn a_leader_is_elected_and_every_replica_applies_its_writes() {
    let mut sim = cluster(3, 1);
    let leader = sim.wait_for_leader(T).expect("a leader within 200 ticks");
    let mut last_revision = 0;
    for i in 0..20 {
        let c = sim
            .put(leader, &format!("k-{i}"), format!("v{i}").as_bytes(), T)
            .unwrap();
        assert!(c.revision > last_revision, "revisions grow");
        last_revision = c.revision;
    }
    assert!(sim.converge(T));
    for i in 0..20 {
        assert_everywhere(&sim, &format!("k-{i}"), format!("v{i}").as_bytes());
    }
    let statuses: Vec<_> = sim
        .running()
        .iter()
        .map(|&id| sim.node(id).unwrap().status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.role == StateRole::Leader)
            .count(),
        1
    );
    assert!(statuses
        .iter()
        .all(|s| s.leader == Some(leader) && s.revision == last_revision));
    assert!(statuses.iter().all(|s| s.voters == vec![1, 2, 3]));

    // A follower refuses writes and names the leader.
    let f = followers(&sim, leader)[0];
    match sim.propose(f, sim::put("x", b"1")) {
        Err(Error::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("follower accepted a write: {other:?}"),
    }
    // Linearizable reads work on the leader and on followers.
    for id in sim.running() {
        assert_eq!(sim.get(id, "k-7", T).unwrap().as_deref(), Some(&b"v7"[..]));
    }
    assert_sound(&sim);
}

#[test]
fn a_read_without_a_leader_fails_at_once() {
    let mut sim = cluster(3, 2);
    // No tick yet: nobody knows a leader.
    let err = sim.node_mut(1).unwrap().read().unwrap_err();
    assert!(matches!(err, Error::NoLeader), "{err}");
    assert!(err.to_string().contains("no leader"));
}

#[test]
fn after_leader_loss_a_new_leader_takes_writes() {
    let mut sim = cluster(3, 3);
    let old = sim.wait_for_leader(T).unwrap();
    sim.put(old, "before", b"1", T).unwrap();
    sim.stop(old);
    let new = sim.wait_for_leader(T).expect("a new leader");
    assert_ne!(new, old);
    sim.put(new, "after", b"2", T).unwrap();
    // The old leader comes back as a follower and catches up.
    sim.start(old).unwrap();
    assert!(sim.converge(T));
    assert_eq!(sim.leader(), Some(new));
    assert_eq!(sim.node(old).unwrap().status().role, StateRole::Follower);
    assert_everywhere(&sim, "before", b"1");
    assert_everywhere(&sim, "after", b"2");
    assert_sound(&sim);
}

#[test]
fn a_minority_accepts_no_write_and_serves_no_stale_linearizable_read() {
    let mut sim = cluster(3, 4);
    let old = sim.wait_for_leader(T).unwrap();
    sim.put(old, "x", b"1", T).unwrap();
    assert!(sim.converge(T));
    sim.isolate(old);

    // The isolated leader may still queue the write, but never acknowledges it.
    if let Ok(id) = sim.propose(old, sim::put("x", b"minority")) {
        match sim.wait(old, id, T) {
            Some(Outcome::Write(Err(e))) => {
                assert!(
                    matches!(
                        e,
                        Error::LeadershipLost | Error::Timeout { .. } | Error::NotLeader { .. }
                    ),
                    "{e}"
                )
            }
            other => panic!("minority write answered with {other:?}"),
        }
    }
    // The majority elects a new leader, which takes writes.
    let new = sim.wait_for_leader(T).unwrap();
    assert_ne!(new, old);
    sim.put(new, "x", b"2", T).unwrap();

    // The old leader still holds x=1 locally (a stale local read is possible)
    // but no linearizable read succeeds there.
    assert_eq!(sim.get_local(old, "x").as_deref(), Some(&b"1"[..]));
    let read = sim.get(old, "x", T);
    assert!(
        read.is_err(),
        "minority served a linearizable read: {read:?}"
    );
    // Nor on a follower cut off from everyone.
    let f = followers(&sim, new)[0];
    sim.isolate(f);
    sim.run(30);
    let read = sim.get(f, "x", T);
    assert!(
        read.is_err(),
        "isolated follower served a linearizable read: {read:?}"
    );

    sim.heal();
    assert!(sim.converge(T));
    assert_everywhere(&sim, "x", b"2");
    assert_eq!(sim.get(old, "x", T).unwrap().as_deref(), Some(&b"2"[..]));
    assert_sound(&sim);
}

#[test]
fn a_partitioned_majority_keeps_working_and_the_minority_rejoins() {
    let mut sim = cluster(5, 5);
    let leader = sim.wait_for_leader(T).unwrap();
    // Put the leader on the minority side with one follower.
    let other = followers(&sim, leader)[0];
    sim.partition(&[leader, other]);
    // The old leader leads its term until the majority elects a new one.
    let mut new = leader;
    for _ in 0..T {
        sim.tick();
        match sim.leader() {
            Some(l) if l != leader && l != other => {
                new = l;
                break;
            }
            _ => {}
        }
    }
    assert!(new != leader, "the majority side elected a leader");
    // The minority leader steps down (check quorum) and takes no writes.
    sim.run(30);
    assert!(!sim.is_leader(leader));
    assert!(sim.propose(leader, sim::put("minority", b"v")).is_err());
    for i in 0..10 {
        sim.put(new, &format!("p-{i}"), b"v", T).unwrap();
    }
    assert!(sim.get(other, "p-0", 50).is_err());
    sim.heal();
    assert!(sim.converge(T));
    for i in 0..10 {
        assert_everywhere(&sim, &format!("p-{i}"), b"v");
    }
    assert_sound(&sim);
}

#[test]
fn a_lagging_follower_catches_up_by_snapshot_after_compaction() {
    let mut cfg = config(6);
    cfg.node.log_compact_threshold = 20;
    let mut sim = Sim::memory(3, cfg).unwrap();
    let leader = sim.wait_for_leader(T).unwrap();
    let lag = followers(&sim, leader)[0];
    sim.put(leader, "first", b"1", T).unwrap();
    assert!(sim.converge(T));
    sim.isolate(lag);
    for i in 0..100 {
        sim.put(leader, &format!("k-{i}"), format!("{i}").as_bytes(), T)
            .unwrap();
    }
    let ls = sim.node(leader).unwrap().status();
    let lagging = sim.node(lag).unwrap().status();
    assert!(
        ls.first_index > lagging.last_index + 1,
        "the leader compacted past the follower: {ls:?} vs {lagging:?}"
    );
    assert_eq!(sim.snapshots_delivered(), 0);

    sim.heal();
    assert!(sim.converge(T));
    assert!(
        sim.snapshots_delivered() >= 1,
        "the follower got a snapshot"
    );
    let caught_up = sim.node(lag).unwrap().status();
    assert!(
        caught_up.first_index > lagging.last_index + 1,
        "its log restarts after the snapshot"
    );
    assert_eq!(
        sim.state(lag),
        sim.state(leader),
        "data, revisions and change log match"
    );
    // It keeps following: later writes reach it through the log.
    sim.put(leader, "later", b"x", T).unwrap();
    assert!(sim.converge(T));
    assert_everywhere(&sim, "later", b"x");
    assert_everywhere(&sim, "k-99", b"99");
    assert_everywhere(&sim, "first", b"1");
    // And it survives a restart from its engine after the snapshot.
    sim.restart(lag).unwrap();
    assert!(sim.converge(T));
    assert_eq!(sim.state(lag), sim.state(leader));
    assert_sound(&sim);
}

#[test]
fn voters_are_added_and_removed() {
    let mut cfg = config(7);
    cfg.node.log_compact_threshold = 30;
    let mut sim = Sim::memory(3, cfg).unwrap();
    let leader = sim.wait_for_leader(T).unwrap();
    for i in 0..50 {
        sim.put(leader, &format!("k-{i}"), b"v", T).unwrap();
    }

    // Add node 4: it starts empty and catches up (by snapshot, the log was compacted).
    sim.add_node(4).unwrap();
    let voters = sim
        .change_membership(leader, MembershipChange::AddVoter(4), T)
        .unwrap();
    assert_eq!(voters, vec![1, 2, 3, 4]);
    assert!(sim.converge(T));
    assert_everywhere(&sim, "k-49", b"v");
    for id in sim.running() {
        assert_eq!(
            sim.node(id).unwrap().status().voters,
            vec![1, 2, 3, 4],
            "node {id}"
        );
    }
    assert_eq!(sim.state(4), sim.state(leader));

    // One change at a time; nonsense changes are refused.
    let node = sim.node_mut(leader).unwrap();
    let first = node
        .change_membership(MembershipChange::RemoveVoter(4))
        .unwrap();
    assert!(matches!(
        node.change_membership(MembershipChange::AddVoter(5)),
        Err(Error::ConfChangeInProgress)
    ));
    match sim.wait(leader, first, T) {
        Some(Outcome::Membership(Ok(v))) => assert_eq!(v, vec![1, 2, 3]),
        other => panic!("{other:?}"),
    }
    sim.stop(4);
    let node = sim.node_mut(leader).unwrap();
    assert!(matches!(
        node.change_membership(MembershipChange::AddVoter(2)),
        Err(Error::InvalidConfChange(_))
    ));
    assert!(matches!(
        node.change_membership(MembershipChange::RemoveVoter(9)),
        Err(Error::InvalidConfChange(_))
    ));
    assert!(matches!(
        node.change_membership(MembershipChange::RemoveVoter(leader)),
        Err(Error::InvalidConfChange(_))
    ));

    // Remove the leader: hand leadership over first.
    let heir = followers(&sim, leader)[0];
    sim.put(leader, "before-transfer", b"v", T).unwrap();
    assert!(sim.converge(T));
    sim.transfer_leadership(leader, heir, T).unwrap();
    let remaining: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let voters = sim
        .change_membership(heir, MembershipChange::RemoveVoter(leader), T)
        .unwrap();
    assert_eq!(voters, remaining);
    sim.stop(leader);
    // Two voters left: both must agree, and they do.
    sim.put(heir, "after-removal", b"v", T).unwrap();
    assert!(sim.converge(T));
    assert_everywhere(&sim, "after-removal", b"v");
    for id in sim.running() {
        assert_eq!(
            sim.node(id).unwrap().status().voters,
            remaining,
            "node {id}"
        );
    }
    assert_sound(&sim);
}

#[test]
fn a_wiped_replica_is_replaced_and_catches_up() {
    let mut cfg = config(8);
    cfg.node.log_compact_threshold = 20;
    let mut sim = Sim::memory(3, cfg).unwrap();
    let leader = sim.wait_for_leader(T).unwrap();
    for i in 0..40 {
        sim.put(leader, &format!("k-{i}"), b"v", T).unwrap();
    }
    let victim = followers(&sim, leader)[0];
    sim.wipe(victim).unwrap();
    sim.change_membership(leader, MembershipChange::RemoveVoter(victim), T)
        .unwrap();
    // The same id comes back on an empty disk as a new member.
    sim.add_node(victim).unwrap();
    sim.change_membership(leader, MembershipChange::AddVoter(victim), T)
        .unwrap();
    assert!(sim.converge(T));
    assert_eq!(sim.state(victim), sim.state(leader));
    assert_everywhere(&sim, "k-39", b"v");
    assert_sound(&sim);
}

#[test]
fn restart_recovers_raft_state_and_applied_index_from_the_engine() {
    let mut sim = cluster(3, 9);
    let leader = sim.wait_for_leader(T).unwrap();
    for i in 0..30 {
        sim.put(leader, &format!("k-{i}"), b"v", T).unwrap();
    }
    assert!(sim.converge(T));
    let before: Vec<_> = sim
        .running()
        .iter()
        .map(|&id| sim.node(id).unwrap().status())
        .collect();

    // A follower restarts in the middle of writes.
    let f = followers(&sim, leader)[0];
    sim.restart(f).unwrap();
    sim.put(leader, "during", b"v", T).unwrap();

    // Then the whole cluster crashes and restarts.
    assert!(sim.converge(T));
    let revision = sim.node(leader).unwrap().status().revision;
    for id in sim.ids() {
        sim.stop(id);
    }
    for id in sim.ids() {
        sim.start(id).unwrap();
        let s = sim.node(id).unwrap().status();
        // Config.applied: the store's applied index, nothing re-applied.
        assert_eq!(s.revision, revision, "node {id}");
        assert!(s.applied >= before[0].applied, "node {id}");
        assert!(s.term >= before[0].term, "node {id} keeps its term");
        assert_eq!(
            s.commit, s.applied,
            "node {id}: commit persisted before apply"
        );
    }
    let leader = sim.wait_for_leader(T).unwrap();
    for i in 0..30 {
        assert_eq!(
            sim.get(leader, &format!("k-{i}"), T).unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
    let c = sim.put(leader, "after", b"v", T).unwrap();
    assert_eq!(c.revision, revision + 1, "revisions continue without a gap");
    assert!(sim.converge(T));
    assert_everywhere(&sim, "during", b"v");
    assert_everywhere(&sim, "after", b"v");
    assert_sound(&sim);
}

#[test]
fn group_commit_puts_many_transactions_in_one_entry() {
    let mut sim = cluster(3, 10);
    let leader = sim.wait_for_leader(T).unwrap();
    sim.put(leader, "warm-up", b"v", T).unwrap();
    assert!(sim.converge(T));
    let before = sim.node(leader).unwrap().status();

    let ids: Vec<_> = (0..100)
        .map(|i| {
            sim.propose(leader, sim::put(&format!("g-{i}"), b"v"))
                .unwrap()
        })
        .collect();
    sim.settle();
    let after = sim.node(leader).unwrap().status();
    assert_eq!(
        after.last_index,
        before.last_index + 1,
        "100 writes, one entry"
    );
    let mut revisions = Vec::new();
    for id in ids {
        match sim.take_result(leader, id) {
            Some(Outcome::Write(Ok(c))) => revisions.push(c.revision),
            other => panic!("write {id}: {other:?}"),
        }
    }
    let expected: Vec<u64> = (before.revision + 1..=before.revision + 100).collect();
    assert_eq!(
        revisions, expected,
        "consecutive revisions in proposal order"
    );

    // Transactions of one entry see each other: the second create of the
    // same key fails its precondition, alone, on every replica.
    let create = |v: &[u8]| {
        Txn::new(vec![TxnOp::Put {
            key: sim::key("once"),
            encoding: EncodingTag::Raw,
            value: v.to_vec(),
            expect: Expectation::Absent,
        }])
    };
    let a = sim.propose(leader, create(b"a")).unwrap();
    let b = sim.propose(leader, create(b"b")).unwrap();
    sim.settle();
    assert!(matches!(
        sim.take_result(leader, a),
        Some(Outcome::Write(Ok(_)))
    ));
    match sim.take_result(leader, b) {
        Some(Outcome::Write(Err(Error::Store(e)))) => {
            assert!(e.is_deterministic());
            assert!(e.to_string().contains("conflict"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(sim.converge(T));
    assert_everywhere(&sim, "once", b"a");
    assert_sound(&sim);
}

#[test]
fn batches_respect_the_transaction_limit() {
    let mut cfg = config(11);
    cfg.node.max_batch_txns = 10;
    let mut sim = Sim::memory(3, cfg).unwrap();
    let leader = sim.wait_for_leader(T).unwrap();
    sim.settle();
    let before = sim.node(leader).unwrap().status().last_index;
    for i in 0..95 {
        sim.propose(leader, sim::put(&format!("g-{i}"), b"v"))
            .unwrap();
    }
    sim.settle();
    assert_eq!(sim.node(leader).unwrap().status().last_index, before + 10);
    assert!(sim.converge(T));
    assert_everywhere(&sim, "g-94", b"v");
}

#[test]
fn damaged_frames_are_dropped_and_the_cluster_still_works() {
    let mut sim = cluster(3, 12);
    sim.set_corrupt_rate(0.2);
    let mut acked = Vec::new();
    for i in 0..30 {
        let Some(leader) = sim.wait_for_leader(T) else {
            continue;
        };
        if sim.put(leader, &format!("c-{i}"), b"v", 50).is_ok() {
            acked.push(i);
        }
    }
    assert!(acked.len() >= 10, "only {} writes succeeded", acked.len());
    sim.set_corrupt_rate(0.0);
    assert!(sim.converge(T));
    for i in acked {
        assert_everywhere(&sim, &format!("c-{i}"), b"v");
    }
    assert_sound(&sim);
}

/// A write that was attempted: (node, request, key).
struct Attempt {
    node: u64,
    id: u64,
    key: String,
}

/// A linearizable read in flight: (node, request, acknowledged writes at issue).
struct PendingRead {
    node: u64,
    id: u64,
    acked_before: usize,
}

/// Random faults (loss, delay, corruption, partitions, crashes) under a
/// stream of writes and reads; returns the events of the run.
fn random_run(seed: u64) -> (Vec<String>, Vec<Option<tmc::raft::sim::ReplicaState>>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xfeed);
    let mut cfg = config(seed);
    cfg.node.log_compact_threshold = 40;
    let mut sim = Sim::memory(3, cfg).unwrap();
    sim.set_drop_rate(0.05);
    sim.set_delay(0, 2);
    sim.set_corrupt_rate(0.01);

    let mut attempts: Vec<Attempt> = Vec::new();
    let mut acked: Vec<String> = Vec::new();
    let mut reads: Vec<PendingRead> = Vec::new();
    let mut n = 0;
    let mut reads_ok = 0;
    for step in 0..600 {
        // Faults.
        if step % 40 == 0 {
            match rng.random_range(0..5) {
                0 => sim.isolate(rng.random_range(1..=3)),
                1 => {
                    let (a, b) = (rng.random_range(1..=3), rng.random_range(1..=3));
                    if a != b {
                        sim.cut(a, b);
                    }
                }
                2 => sim.stop(rng.random_range(1..=3)),
                _ => {
                    sim.heal();
                    for id in sim.ids() {
                        sim.start(id).unwrap();
                    }
                }
            }
        }
        // Writes to whoever leads, reads anywhere.
        if let Some(leader) = sim.leader() {
            for _ in 0..rng.random_range(0..3) {
                n += 1;
                let key = format!("w-{n}");
                if let Ok(id) = sim.propose(leader, sim::put(&key, b"v")) {
                    attempts.push(Attempt {
                        node: leader,
                        id,
                        key,
                    });
                }
            }
        }
        let running = sim.running();
        if !running.is_empty() && rng.random_bool(0.3) {
            let node = running[rng.random_range(0..running.len())];
            if let Ok(id) = sim.node_mut(node).unwrap().read() {
                reads.push(PendingRead {
                    node,
                    id,
                    acked_before: acked.len(),
                });
            }
        }
        sim.tick();
        // Collect answers.
        attempts.retain(|a| match sim.take_result(a.node, a.id) {
            Some(Outcome::Write(Ok(_))) => {
                acked.push(a.key.clone());
                false
            }
            Some(_) => false,
            None => sim.node(a.node).is_some(),
        });
        reads.retain(|r| match sim.take_result(r.node, r.id) {
            Some(Outcome::Read(Ok(_))) => {
                // Linearizable: every write acknowledged before the read
                // began is visible.
                for key in &acked[..r.acked_before] {
                    assert!(
                        sim.get_local(r.node, key).is_some(),
                        "seed {seed}: read at node {} misses acknowledged {key}",
                        r.node
                    );
                }
                reads_ok += 1;
                false
            }
            Some(_) => false,
            None => sim.node(r.node).is_some(),
        });
        assert!(
            sim.violations().is_empty(),
            "seed {seed}: {:?}",
            sim.violations()
        );
    }

    sim.heal();
    sim.set_drop_rate(0.0);
    sim.set_corrupt_rate(0.0);
    for id in sim.ids() {
        sim.start(id).unwrap();
    }
    assert!(sim.converge(1000), "seed {seed}: no convergence");
    assert!(
        acked.len() > 20,
        "seed {seed}: only {} writes acknowledged",
        acked.len()
    );
    assert!(
        reads_ok > 20,
        "seed {seed}: only {reads_ok} linearizable reads completed"
    );
    for key in &acked {
        assert_everywhere(&sim, key, b"v");
    }
    // Nothing appears that was never written.
    let attempted: BTreeSet<String> = (1..=n).map(|i| format!("w-{i}")).collect();
    for id in sim.running() {
        for (k, _) in sim.state(id).unwrap().data {
            let k = String::from_utf8(k).unwrap();
            let name = k.rsplit('/').next().unwrap().to_string();
            assert!(attempted.contains(&name), "seed {seed}: unexpected key {k}");
        }
    }
    assert_sound(&sim);
    if std::env::var("RAFT_SIM_STATS").is_ok() {
        eprintln!(
            "seed {seed}: {} acked of {n}, {reads_ok} reads, {} snapshots, {} events, {:?}",
            acked.len(),
            sim.snapshots_delivered(),
            sim.events().len(),
            sim.node(1).map(|x| x.status())
        );
    }
    let states = sim.ids().iter().map(|&id| sim.state(id)).collect();
    (sim.events().to_vec(), states)
}

#[test]
fn random_faults_lose_no_acknowledged_write_and_keep_replicas_identical() {
    for seed in 0..10 {
        random_run(seed);
    }
}

#[test]
fn a_run_replays_exactly_for_its_seed() {
    let a = random_run(42);
    let b = random_run(42);
    assert_eq!(a.0, b.0, "same events");
    assert_eq!(a.1, b.1, "same final states");
    assert!(a.0.iter().any(|e| e.contains("leader")));
}

#[test]
fn a_rocksdb_cluster_survives_a_full_restart_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(13);
    cfg.node.log_compact_threshold = 20;
    let engines = RocksEngines {
        dir: dir.path().to_path_buf(),
        options: RocksOptions {
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            memtable_bytes: 2 << 20,
        },
    };
    let mut sim = Sim::new(Box::new(engines), vec![1, 2, 3], cfg).unwrap();
    let leader = sim.wait_for_leader(T).unwrap();
    let lag = followers(&sim, leader)[0];
    sim.stop(lag);
    for i in 0..60 {
        sim.put(leader, &format!("r-{i}"), b"v", T).unwrap();
    }
    sim.start(lag).unwrap();
    assert!(sim.converge(T));
    assert!(sim.snapshots_delivered() >= 1);
    assert_eq!(sim.state(lag), sim.state(leader));
    for id in sim.ids() {
        sim.stop(id);
    }
    for id in sim.ids() {
        sim.start(id).unwrap();
    }
    let leader = sim.wait_for_leader(T).unwrap();
    sim.put(leader, "after", b"v", T).unwrap();
    assert!(sim.converge(T));
    for i in 0..60 {
        assert_everywhere(&sim, &format!("r-{i}"), b"v");
    }
    assert_everywhere(&sim, "after", b"v");
    assert_sound(&sim);
}

#[test]
fn a_joining_node_starts_from_a_snapshot_even_when_the_log_is_whole() {
    // Never compact: the leader still has every entry from index 1. A new
    // node replaying them would apply "remove 3" and "add 4" to an empty
    // configuration and end up believing it is the only voter; it must ask
    // for a snapshot instead.
    let mut cfg = config(21);
    cfg.node.log_compact_threshold = 0;
    let mut sim = Sim::memory(3, cfg).expect("cluster starts");
    let leader = sim.wait_for_leader(T).unwrap();
    for i in 0..10 {
        sim.put(leader, &format!("k-{i}"), b"v", T).unwrap();
    }
    let victim = followers(&sim, leader)[0];
    let voters = sim
        .change_membership(leader, MembershipChange::RemoveVoter(victim), T)
        .unwrap();
    assert_eq!(voters.len(), 2);
    sim.stop(victim);
    assert_eq!(sim.node(leader).unwrap().status().first_index, 1);
    let before = sim.snapshots_delivered();
    sim.add_node(4).unwrap();
    let mut expected = sim
        .change_membership(leader, MembershipChange::AddVoter(4), T)
        .unwrap();
    expected.sort();
    assert!(sim.converge(T));
    assert!(
        sim.snapshots_delivered() > before,
        "node 4 caught up without a snapshot"
    );
    assert_eq!(sim.node(4).unwrap().status().voters, expected);
    assert_eq!(sim.state(4), sim.state(leader));
    assert_everywhere(&sim, "k-9", b"v");
    // And it is a working voter: with the other old voter gone, the leader
    // and node 4 commit.
    let other = expected
        .iter()
        .copied()
        .find(|&id| id != leader && id != 4)
        .unwrap();
    sim.stop(other);
    sim.put(leader, "after", b"v", T).unwrap();
    assert_sound(&sim);
}

/// The single-client latency fix of docs/benchmarks.md: a leader's appends
/// leave through [`tmc::raft::Node::send_early`] before the leader has
/// written the entries to its own log, so the followers' fsyncs overlap
/// the leader's. The followers' acknowledgements still commit the write.
#[test]
fn a_leaders_appends_leave_before_its_own_log_write() {
    use raft::eraftpb::{Message, MessageType};
    use std::sync::{Arc, Mutex};
    use tmc::raft::storage::log_key;
    use tmc::store::Cf;

    let mut sim = cluster(3, 11);
    let leader = sim.wait_for_leader(T).expect("a leader");
    sim.put(leader, "warm-up", b"x", T).expect("warm-up write");
    let engine = sim.node(leader).unwrap().store().engine().clone();
    // (last index carried, was it in the leader's log when sent?)
    let seen: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let sent: Arc<Mutex<Vec<Message>>> = Arc::default();
    {
        let (seen, sent) = (seen.clone(), sent.clone());
        sim.node_mut(leader)
            .unwrap()
            .send_early(Box::new(move |msgs: Vec<Message>| {
                for m in msgs {
                    if m.get_msg_type() == MessageType::MsgAppend && !m.entries.is_empty() {
                        let last = m.entries.last().unwrap().index;
                        let on_disk = engine.get(Cf::Log, &log_key(last)).unwrap().is_some();
                        seen.lock().unwrap().push((last, on_disk));
                    }
                    sent.lock().unwrap().push(m);
                }
            }));
    }
    let id = sim.propose(leader, sim::put("k", b"v")).expect("proposed");
    sim.node_mut(leader).unwrap().poll().expect("poll");
    let appends = seen.lock().unwrap().clone();
    assert_eq!(appends.len(), 2, "one append per follower: {appends:?}");
    for (index, on_disk) in &appends {
        assert!(
            !on_disk,
            "the append of {index} left after the leader's log write"
        );
        let engine = sim.node(leader).unwrap().store().engine();
        assert!(
            engine.get(Cf::Log, &log_key(*index)).unwrap().is_some(),
            "the leader persisted {index} in the same poll"
        );
    }
    // Deliver what the sink took; the followers answer through the network.
    for m in std::mem::take(&mut *sent.lock().unwrap()) {
        let to = m.to;
        sim.node_mut(to).unwrap().step(m).expect("step");
    }
    match sim.wait(leader, id, T) {
        Some(Outcome::Write(Ok(_))) => {}
        other => panic!("the write did not commit: {other:?}"),
    }
    assert_sound(&sim);
}
