//! A fuzzer for raft frames: decoding ([`super::wire`]), the checks on a
//! peer's message ([`super::validate`]) and raft-rs behind them, on real
//! in-process replicas.
//!
//! Three replicas run on the simulated network ([`super::sim`]) with a
//! stream of writes; the frames they exchange (tapped) are the seeds.
//! Each input goes to one replica, leader or follower, through
//! [`Node::step_frame`](super::Node::step_frame), as a frame from the
//! network would: a seed with fields rewritten to values around the
//! replica's own term, commit and last index (or far beyond them), a seed
//! with flipped bytes (its checksum fixed or not), a message of a random
//! kind built from such values, or random bytes. Then the cluster runs on
//! (polls, deliveries, ticks), so what a replica accepted is carried
//! through raft's Ready loop too. Every 2,000 inputs a fresh cluster
//! starts (accepted lies can leave one far from any real state).
//!
//! Run it with `RUST_LOG=off tmc debug fuzz-raft --seconds 600 [--seed N]`;
//! it stops at the first input that panics or breaks the invariant, prints
//! it and exits non-zero. Checked besides "no panic": an input that is
//! refused ([`super::Error::Refused`]) leaves the replica's status (role,
//! term, leader, commit, applied, log) exactly as it was. A short run is a
//! unit test.

use super::sim::{self, Sim, SimConfig};
use super::{validate, wire, Error};
use crate::fuzz::panic_message;
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use rand::rngs::StdRng;
use rand::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Every message kind, by number.
fn kind(n: u32) -> MessageType {
    use MessageType::*;
    [
        MsgHup,
        MsgBeat,
        MsgPropose,
        MsgAppend,
        MsgAppendResponse,
        MsgRequestVote,
        MsgRequestVoteResponse,
        MsgSnapshot,
        MsgHeartbeat,
        MsgHeartbeatResponse,
        MsgUnreachable,
        MsgSnapStatus,
        MsgCheckQuorum,
        MsgTransferLeader,
        MsgTimeoutNow,
        MsgReadIndex,
        MsgReadIndexResp,
        MsgRequestPreVote,
        MsgRequestPreVoteResponse,
    ][n as usize % 19]
}

/// A value near something the replica knows, or far from it.
fn value(rng: &mut StdRng, v: &validate::View) -> u64 {
    let around = |x: u64, rng: &mut StdRng| match rng.random_range(0..5) {
        0 => x.saturating_sub(1),
        1 => x,
        2 => x.saturating_add(1),
        3 => x.saturating_add(2),
        _ => x.saturating_add(rng.random_range(3..1000)),
    };
    match rng.random_range(0..10) {
        0 => 0,
        1 => 1,
        2 | 3 => around(v.committed, rng),
        4 | 5 => around(v.last_index, rng),
        6 | 7 => around(v.term, rng),
        8 => [validate::LIMIT - 1, validate::LIMIT, u64::MAX, u64::MAX - 1][rng.random_range(0..4)],
        _ => rng.random(),
    }
}

fn entry(rng: &mut StdRng, v: &validate::View, index: u64, term: u64) -> Entry {
    let index = if rng.random_bool(0.8) {
        index
    } else {
        value(rng, v)
    };
    let term = if rng.random_bool(0.8) {
        term
    } else {
        value(rng, v)
    };
    let mut e = Entry {
        index,
        term,
        ..Default::default()
    };
    e.set_entry_type(match rng.random_range(0..3) {
        0 => EntryType::EntryConfChange,
        1 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    });
    let len = rng.random_range(0..64);
    e.data = (0..len).map(|_| rng.random()).collect::<Vec<u8>>().into();
    e
}

/// Rewrites one field of `m`.
fn mutate_field(rng: &mut StdRng, m: &mut Message, v: &validate::View, ids: u64) {
    match rng.random_range(0..16) {
        0 => m.set_msg_type(kind(rng.random_range(0..19))),
        1 => m.to = rng.random_range(0..=ids + 1),
        2 => m.from = rng.random_range(0..=ids + 1),
        3 => m.term = value(rng, v),
        4 => m.log_term = value(rng, v),
        5 => m.index = value(rng, v),
        6 => m.commit = value(rng, v),
        7 => m.commit_term = value(rng, v),
        8 => m.reject = !m.reject,
        9 => m.reject_hint = value(rng, v),
        10 => m.request_snapshot = value(rng, v),
        11 => {
            let n = rng.random_range(0..4);
            let (index, term) = (m.index, m.term);
            m.set_entries(
                (0..n)
                    .map(|i| entry(rng, v, index.wrapping_add(1 + i), term))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        12 => {
            if !m.entries.is_empty() {
                let i = rng.random_range(0..m.entries.len());
                let e = entry(rng, v, m.entries[i].index, m.entries[i].term);
                m.mut_entries()[i] = e;
            }
        }
        13 => {
            let len = rng.random_range(0..40);
            m.context = (0..len).map(|_| rng.random()).collect::<Vec<u8>>().into();
        }
        14 => {
            let mut snap = Snapshot::default();
            let meta = snap.mut_metadata();
            meta.index = value(rng, v);
            meta.term = value(rng, v);
            let voters: Vec<u64> = (0..rng.random_range(0..4))
                .map(|_| rng.random_range(0..=ids + 1))
                .collect();
            let learners: Vec<u64> = (0..rng.random_range(0..2))
                .map(|_| rng.random_range(0..=ids + 1))
                .collect();
            let mut cs = ConfState::from((voters, learners));
            if rng.random_bool(0.2) {
                cs.voters_outgoing = vec![1];
            }
            meta.set_conf_state(cs);
            m.set_snapshot(snap);
        }
        _ => m.priority = rng.random(),
    }
}

/// Recomputes a frame's checksum after its body changed.
fn fix_crc(frame: &mut [u8]) {
    if frame.len() >= wire::HEADER_LEN {
        let crc = crc32fast::hash(&frame[wire::HEADER_LEN..]);
        frame[4..8].copy_from_slice(&crc.to_be_bytes());
    }
}

/// One input for replica `to`.
fn input(
    rng: &mut StdRng,
    seeds: &[(u64, Vec<u8>)],
    to: u64,
    v: &validate::View,
    ids: u64,
) -> Vec<u8> {
    let seed = (!seeds.is_empty()).then(|| &seeds[rng.random_range(0..seeds.len())].1);
    let decoded = seed.and_then(|f| wire::decode(f).ok());
    match (rng.random_range(0..10), decoded) {
        (0..=4, Some(mut m)) => {
            // A peer's real message, redirected to `to`, with fields
            // rewritten.
            m.to = to;
            for _ in 0..rng.random_range(1..=3) {
                mutate_field(rng, &mut m, v, ids);
            }
            wire::encode(&m).unwrap_or_default()
        }
        (5..=6, _) => {
            // A message of any kind, from scratch.
            let mut m = Message::default();
            m.set_msg_type(kind(rng.random_range(0..19)));
            m.to = to;
            m.from = rng.random_range(1..=ids);
            m.term = v.term;
            for _ in 0..rng.random_range(1..=6) {
                mutate_field(rng, &mut m, v, ids);
            }
            wire::encode(&m).unwrap_or_default()
        }
        (7..=8, Some(m)) => {
            // Flipped bytes; the checksum fixed, or not.
            let mut m = m;
            m.to = to;
            let mut f = wire::encode(&m).unwrap_or_default();
            if f.len() > wire::HEADER_LEN {
                for _ in 0..rng.random_range(1..=4) {
                    let i = rng.random_range(wire::HEADER_LEN..f.len());
                    f[i] ^= 1 << rng.random_range(0..8);
                }
                if rng.random_bool(0.9) {
                    fix_crc(&mut f);
                }
            }
            f
        }
        _ => {
            let len = rng.random_range(0..64);
            let mut f: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) && f.len() >= wire::HEADER_LEN {
                let body = (f.len() - wire::HEADER_LEN) as u32;
                f[..4].copy_from_slice(&body.to_be_bytes());
                fix_crc(&mut f);
            }
            f
        }
    }
}

/// Frames a node received: (recipient, frame).
type Tapped = Vec<(u64, Vec<u8>)>;

/// A cluster of three with a leader and some history; the frames it
/// exchanged meanwhile.
fn cluster(seed: u64) -> Result<(Sim<crate::store::MemoryEngine>, Tapped), String> {
    let mut sim = Sim::memory(3, SimConfig::new(seed)).map_err(|e| e.to_string())?;
    sim.tap(true);
    let leader = sim.wait_for_leader(500).ok_or("no leader")?;
    for i in 0..20 {
        sim.write(leader, sim::put(&format!("k{i}"), b"v"), 100)
            .map_err(|e| format!("write: {e}"))?;
    }
    let _ = sim.get(leader, "k1", 100);
    sim.run(5);
    let seeds = sim.tapped();
    sim.tap(false);
    Ok((sim, seeds))
}

/// Inputs into one cluster before a fresh one is built.
const FRESH: u64 = 2000;

/// Runs inputs for `seconds` or `iterations`, whichever ends first;
/// returns how many ran, or the first failure.
pub fn run(seed: u64, seconds: u64, iterations: u64) -> Result<u64, String> {
    let (mut sim, seeds) = cluster(seed)?;
    if seeds.is_empty() {
        return Err("the cluster exchanged no frame".into());
    }
    let one = |rng: &mut StdRng, n: u64| -> Result<(), String> {
        let ids = sim.running();
        let to = ids[rng.random_range(0..ids.len())];
        let Some(node) = sim.node_mut(to) else {
            return Err(format!(
                "iteration {n}: node {to} is listed as running but is not"
            ));
        };
        if node.stopped().is_some() {
            return Err(format!("iteration {n}: node {to} stopped"));
        }
        let view = node.view();
        let frame = input(rng, &seeds, to, &view, 3);
        let before = node.status();
        let stepped = catch_unwind(AssertUnwindSafe(|| node.step_frame(&frame)));
        let shown = || match wire::decode(&frame) {
            Ok(m) => format!("{m:?}"),
            Err(e) => format!("{} bytes ({e})", frame.len()),
        };
        match stepped {
            Err(p) => {
                return Err(format!(
                    "iteration {n} (seed {seed}): node {to} panicked on {}: {}",
                    shown(),
                    panic_message(p)
                ))
            }
            Ok(Err(Error::Refused(why))) => {
                let after = node.status();
                if after != before || node.view() != view {
                    return Err(format!(
                        "iteration {n} (seed {seed}): node {to} refused {} ({why}) but changed: \
                         {before:?} -> {after:?}",
                        shown()
                    ));
                }
            }
            Ok(_) => {}
        }
        // On with the cluster: raft's Ready loop, the answers, a tick now
        // and then.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            if n.is_multiple_of(3) {
                sim.tick();
            } else {
                sim.settle();
            }
        }));
        if let Err(p) = ran {
            return Err(format!(
                "iteration {n} (seed {seed}): the cluster panicked after node {to} took {}: {}",
                shown(),
                panic_message(p)
            ));
        }
        if n % 500 == 499 {
            // Writes keep the logs moving.
            if let Some(l) = sim.leader() {
                let _ = sim.propose(l, sim::put("fuzz", &n.to_be_bytes()));
            }
        }
        if n % FRESH == FRESH - 1 {
            // What was accepted may have led the cluster far from any
            // real state (a term near the limit, no leader any more): start
            // again from a fresh one now and then.
            sim = cluster(seed ^ n.wrapping_mul(0x9e37_79b9))?.0;
        }
        Ok(())
    };
    crate::fuzz::run(seed, seconds, iterations, one, |p| {
        format!(
            "iteration {} (seed {seed}): the fuzzer panicked: {}",
            p.iteration, p.message
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_short_fuzz_run_is_clean() {
        for seed in [1, 2] {
            let n = super::run(seed, 120, 10_000).unwrap();
            assert_eq!(n, 10_000);
        }
    }

    #[test]
    fn frames_from_the_corpus_decode() {
        let (_, seeds) = super::cluster(3).unwrap();
        assert!(seeds.len() > 50, "{} seeds", seeds.len());
        for (_, f) in &seeds {
            super::wire::decode(f).unwrap();
        }
    }
}
