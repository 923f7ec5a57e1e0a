//! How a replica of a StatefulSet finds its place in its shard by itself
//! (`tmc serve --pod-name`), without a hand-written `--peers` or `--join`:
//!
//! - **Before opening the node** ([`decide`]), a replica with an empty
//!   data directory asks the other replicas' `/status` (over the peers'
//!   mutual TLS) whether the shard already has a leader.
//!   - No leader anywhere and the replica is one of the founding ordinals:
//!     it founds the shard with the founding voters ([`Start::Found`]).
//!     All founding replicas start at once (`podManagementPolicy:
//!     Parallel`), none sees a leader, all found the same configuration.
//!   - A leader, and this replica is not a member: it joins
//!     ([`Start::Join`]: no configuration, a snapshot from the leader).
//!   - A leader that lists this replica as a voter it has already
//!     replicated to: the replica's volume was lost. It refuses to start
//!     with what to do (remove it with `tmc member remove`, then it joins
//!     anew): a voter that forgot what it acknowledged could help elect a
//!     leader without committed entries. A founding voter the leader has
//!     never heard from (its pod started late) founds as the others did.
//!   - No leader and not a founding ordinal: it waits for one.
//! - **After opening it** ([`join`]), a replica that is not a voter yet
//!   asks the leader to add it as a **learner** (it gets the snapshot and
//!   the log but does not vote, so a far-behind replica never weakens the
//!   quorum), and once the leader reports it within [`CATCH_UP_SLACK`]
//!   entries of the commit index, to promote it to voter. It retries every
//!   second until it is a voter; a restart in the middle picks up where it
//!   stopped (the leader's view decides).
//!
//! A replica with data opens it ([`Start::Open`]); if the shard's leader
//! knows it neither as voter nor as learner and its own configuration
//! does not name it, it was removed: it refuses to start (delete its
//! volume to let it join anew) instead of sitting outside the shard.
//!
//! Left out: removing a replica by itself when the StatefulSet shrinks
//! (removal is explicit, as in etcd and CockroachDB: `tmc member remove`,
//! then fewer replicas), and telling a founding voter whose volume was lost
//! from one that never started when the leader changed in between (the
//! new leader has heard from neither; such a replica founds and catches
//! up: safe unless another voter fails before it has).

use super::event_loop::{Input, StatusReport};
use super::forward::Forwarder;
use super::shard::RaftShard;
use crate::store::Engine;
use axum::http::{Method, StatusCode};
use std::time::Duration;

/// A learner within this many entries of the leader's commit index is
/// promoted to voter.
pub const CATCH_UP_SLACK: u64 = 1_000;

/// How a replica starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Found the shard with these voters (an empty disk, no leader yet).
    Found(Vec<u64>),
    /// Join the running shard: no configuration until the leader's
    /// snapshot, then [`join`] makes it a learner and a voter.
    Join,
    /// Open the data on disk.
    Open,
}

/// The status of replica `to`, if it answers.
async fn status_of(fwd: &Forwarder, to: u64) -> Option<StatusReport> {
    match fwd.request(to, Method::GET, "/status", Vec::new()).await {
        Ok((StatusCode::OK, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

/// The leader's status, asked of the leader that any of `others` names.
pub async fn leader_status(fwd: &Forwarder, others: &[u64]) -> Option<StatusReport> {
    for &peer in others {
        let Some(s) = status_of(fwd, peer).await else {
            continue;
        };
        let Some(leader) = s.leader else { continue };
        if leader == s.id {
            return Some(s);
        }
        if let Some(l) = status_of(fwd, leader).await {
            if l.leader == Some(l.id) {
                return Some(l);
            }
        }
    }
    None
}

/// Decides how replica `id` starts (see the module's documentation):
/// `empty` says whether its data directory is empty, `founders` are the
/// founding voters, `others` every other replica that may exist. Waits
/// (logging why) while a non-founding replica sees no leader.
pub async fn decide(
    fwd: &Forwarder,
    id: u64,
    empty: bool,
    founders: &[u64],
    others: &[u64],
) -> Result<Start, String> {
    if !empty {
        return Ok(Start::Open);
    }
    let mut waited = 0u32;
    loop {
        match leader_status(fwd, others).await {
            Some(l) if l.voters.contains(&id) => {
                if l.matched.get(&id).copied().unwrap_or(0) > 0 {
                    return Err(format!(
                        "node {id} is a voter of its shard (leader {}) but its data directory is \
                         empty: its volume was lost. Remove it first (tmc member remove --id {id}); \
                         it then joins anew as a learner",
                        l.id
                    ));
                }
                return Ok(Start::Found(founders.to_vec()));
            }
            Some(_) => return Ok(Start::Join),
            None if founders.contains(&id) => return Ok(Start::Found(founders.to_vec())),
            None => {
                if waited.is_multiple_of(10) {
                    tracing::info!(
                        node = id,
                        "waiting for the shard's leader to join it (no other replica knows one)"
                    );
                }
                waited += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Checks a replica that opened data of its own against the shard: one
/// the leader knows neither as voter nor learner, and whose own
/// configuration leaves it out, was removed. `Ok` when no leader answers.
pub async fn check_removed<E: Engine>(
    shard: &RaftShard<E>,
    fwd: &Forwarder,
    others: &[u64],
) -> Result<(), String> {
    let id = shard.id;
    let own = shard
        .call(Input::Status)
        .await
        .map_err(|e| format!("status of node {id}: {e}"))?;
    let configured = own.voters.contains(&id) || own.learners.contains(&id);
    if configured || own.voters.is_empty() {
        return Ok(());
    }
    match leader_status(fwd, others).await {
        Some(l) if !l.voters.contains(&id) && !l.learners.contains(&id) => Err(format!(
            "node {id} was removed from its shard (leader {} has voters {:?}) and its data is \
             stale: delete its data directory (its PersistentVolumeClaim) to let it join anew",
            l.id, l.voters
        )),
        _ => Ok(()),
    }
}

/// Makes replica `shard` a voter: a learner first, promoted once caught
/// up (see the module's documentation). Returns when it is a voter.
pub async fn join<E: Engine>(shard: RaftShard<E>, fwd: Forwarder, others: Vec<u64>) {
    let id = shard.id;
    let mut last_said = String::new();
    loop {
        let said = match step(id, &fwd, &others).await {
            Ok(true) => {
                tracing::info!(node = id, "a voter of the shard");
                return;
            }
            Ok(false) => String::new(),
            Err(e) => e,
        };
        if !said.is_empty() && said != last_said {
            tracing::info!(node = id, "joining the shard: {said}");
        }
        last_said = said;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One step of [`join`]: `Ok(true)` once a voter.
async fn step(id: u64, fwd: &Forwarder, others: &[u64]) -> Result<bool, String> {
    let l = leader_status(fwd, others)
        .await
        .ok_or("no leader answers yet")?;
    if l.voters.contains(&id) {
        return Ok(true);
    }
    let path = if l.learners.contains(&id) {
        let matched = l.matched.get(&id).copied().unwrap_or(0);
        if matched + CATCH_UP_SLACK < l.commit {
            return Err(format!(
                "a learner at index {matched} of {}, catching up",
                l.commit
            ));
        }
        format!("/members/{id}")
    } else {
        format!("/members/{id}?learner=true")
    };
    match fwd.request(l.id, Method::POST, &path, Vec::new()).await {
        Ok((code, _)) if code.is_success() => {
            tracing::info!(node = id, leader = l.id, "asked: POST {path}");
            Ok(false)
        }
        Ok((code, body)) => Err(format!(
            "POST {path} to leader {}: {code} {}",
            l.id,
            String::from_utf8_lossy(&body)
        )),
        Err(e) => Err(format!("POST {path} to leader {}: {e}", l.id)),
    }
}
