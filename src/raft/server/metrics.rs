//! A replica's raft metrics for Prometheus, named after etcd's where one
//! exists (`etcd_server_has_leader` → `tmc_raft_has_leader`, ...): read
//! from the event loop's status at each scrape, plus the leader changes
//! this replica has seen since it started (counted from its health
//! channel, which coalesces changes faster than the loop publishes them).
//!
//! - `tmc_raft_has_leader`, `tmc_raft_is_leader` (0 or 1),
//!   `tmc_raft_term`, `tmc_raft_commit_index`, `tmc_raft_applied_index`,
//!   `tmc_raft_voters`, `tmc_raft_learners`;
//! - on the leader, `tmc_raft_follower_lag_entries{follower}`: its commit
//!   index minus what each other member has replicated;
//! - `tmc_raft_leader_changes_seen_total`;
//! - `tmc_store_disk_bytes`: the bytes under the data directory;
//!   `tmc_store_compactions_running`, `tmc_store_compaction_pending_bytes`
//!   and `tmc_store_live_table_bytes`: RocksDB's own figures;
//! - measured in the event loop ([`LoopMetrics`]):
//!   `tmc_raft_proposal_duration_seconds` (a write from the event loop
//!   taking it to its answer: replication, fsync, apply),
//!   `tmc_raft_fsync_duration_seconds` (each durable append of the raft
//!   log, as etcd's `etcd_disk_wal_fsync_duration_seconds`),
//!   `tmc_raft_snapshots_sent_total` and `_received_total`.

use super::event_loop::{Input, StatusReport};
use super::shard::RaftShard;
use crate::store::Engine;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::path::Path;

/// What the event loop measures itself; shared with the exposition.
#[derive(Clone, Debug)]
pub struct LoopMetrics {
    /// From a write's arrival on the event loop to its answer.
    pub proposal: Histogram,
    /// Each durable (fsynced) append of the raft log.
    pub fsync: Histogram,
    /// Snapshots streamed whole to a peer.
    pub snapshots_sent: Counter,
    /// Snapshots received whole from the leader.
    pub snapshots_received: Counter,
}

impl Default for LoopMetrics {
    fn default() -> Self {
        // 100 µs .. ~6.5 s.
        let buckets = || exponential_buckets(0.0001, 2.0, 17);
        LoopMetrics {
            proposal: Histogram::new(buckets()),
            fsync: Histogram::new(buckets()),
            snapshots_sent: Counter::default(),
            snapshots_received: Counter::default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Follower {
    follower: String,
}

/// The raft gauges of one replica; [`RaftMetrics::refresh`] sets them.
#[derive(Clone, Default)]
pub struct RaftMetrics {
    has_leader: Gauge,
    is_leader: Gauge,
    term: Gauge,
    commit: Gauge,
    applied: Gauge,
    voters: Gauge,
    learners: Gauge,
    lag: Family<Follower, Gauge>,
    leader_changes: Counter,
    disk: Gauge,
    compactions: Gauge,
    compaction_pending: Gauge,
    tables: Gauge,
}

impl RaftMetrics {
    /// The metrics of replica `shard`, registered in `registry`; counts
    /// its leader changes from now on.
    pub fn start<E: Engine>(shard: &RaftShard<E>, registry: &mut Registry) -> RaftMetrics {
        let l = shard.loop_metrics();
        registry.register(
            "tmc_raft_proposal_duration_seconds",
            "Writes from the event loop taking them to their answer",
            l.proposal,
        );
        registry.register(
            "tmc_raft_fsync_duration_seconds",
            "Durable appends of the raft log",
            l.fsync,
        );
        registry.register(
            "tmc_raft_snapshots_sent",
            "Snapshots streamed whole to a peer",
            l.snapshots_sent,
        );
        registry.register(
            "tmc_raft_snapshots_received",
            "Snapshots received whole from the leader",
            l.snapshots_received,
        );
        let m = RaftMetrics::default();
        let r = registry;
        r.register(
            "tmc_raft_has_leader",
            "Whether this replica knows a leader",
            m.has_leader.clone(),
        );
        r.register(
            "tmc_raft_is_leader",
            "Whether this replica is the leader",
            m.is_leader.clone(),
        );
        r.register("tmc_raft_term", "The current raft term", m.term.clone());
        r.register(
            "tmc_raft_commit_index",
            "The commit index this replica knows",
            m.commit.clone(),
        );
        r.register(
            "tmc_raft_applied_index",
            "The index applied to the store",
            m.applied.clone(),
        );
        r.register(
            "tmc_raft_voters",
            "Voters in the configuration",
            m.voters.clone(),
        );
        r.register(
            "tmc_raft_learners",
            "Learners in the configuration",
            m.learners.clone(),
        );
        r.register(
            "tmc_raft_follower_lag_entries",
            "On the leader: commit index minus each member's replicated index",
            m.lag.clone(),
        );
        r.register(
            "tmc_raft_leader_changes_seen",
            "Changes of the leader this replica has seen",
            m.leader_changes.clone(),
        );
        r.register(
            "tmc_store_disk_bytes",
            "Bytes under the data directory",
            m.disk.clone(),
        );
        let mut health = shard.health();
        let changes = m.leader_changes.clone();
        tokio::spawn(async move {
            let mut last = health.borrow().leader;
            while health.changed().await.is_ok() {
                let now = health.borrow().leader;
                if now.is_some() && now != last {
                    changes.inc();
                }
                if now.is_some() {
                    last = now;
                }
            }
        });
        m
    }

    /// Reads the status of `shard` (and the data directory's size) into
    /// the gauges.
    pub async fn refresh<E: Engine>(&self, shard: &RaftShard<E>) {
        if let Ok(s) = shard.call(Input::Status).await {
            self.set(&s);
        }
        if let Some(bytes) = shard.disk_bytes().await {
            self.disk.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let e = shard.engine_stats();
        self.compactions.set(n(e.compactions_running));
        self.compaction_pending.set(n(e.compaction_pending_bytes));
        self.tables.set(n(e.live_table_bytes));
    }

    fn set(&self, s: &StatusReport) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.has_leader.set(i64::from(s.leader.is_some()));
        self.is_leader.set(i64::from(s.leader == Some(s.id)));
        self.term.set(n(s.term));
        self.commit.set(n(s.commit));
        self.applied.set(n(s.applied));
        self.voters.set(n(s.voters.len() as u64));
        self.learners.set(n(s.learners.len() as u64));
        self.lag.clear();
        for (id, matched) in &s.matched {
            self.lag
                .get_or_create(&Follower {
                    follower: id.to_string(),
                })
                .set(n(s.commit.saturating_sub(*matched)));
        }
    }
}

/// The bytes of the files under `dir` (symbolic links not followed).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauges_follow_the_status() {
        let m = RaftMetrics::default();
        let mut registry = Registry::default();
        registry.register("tmc_raft_follower_lag_entries", "", m.lag.clone());
        registry.register("tmc_raft_is_leader", "", m.is_leader.clone());
        let mut s = StatusReport {
            id: 1,
            role: "leader".into(),
            leader: Some(1),
            term: 3,
            commit: 100,
            applied: 100,
            revision: 90,
            voters: vec![1, 2, 3],
            learners: vec![],
            matched: [(2, 100), (3, 40)].into_iter().collect(),
            ready: true,
            disk_bytes: None,
            cluster_id: String::new(),
        };
        m.set(&s);
        let text = |r: &Registry| {
            let mut t = String::new();
            prometheus_client::encoding::text::encode(&mut t, r).unwrap();
            t
        };
        let t = text(&registry);
        assert!(
            t.contains("tmc_raft_follower_lag_entries{follower=\"3\"} 60"),
            "{t}"
        );
        assert!(t.contains("tmc_raft_is_leader 1"), "{t}");
        // A follower: no lag rows, not the leader.
        s.leader = Some(2);
        s.matched.clear();
        m.set(&s);
        let t = text(&registry);
        assert!(!t.contains("follower=\""), "{t}");
        assert!(t.contains("tmc_raft_is_leader 0"), "{t}");
    }
}
