//! Checks on a raft message from a peer before raft-rs sees it.
//!
//! raft-rs trusts its peers: a well-formed message that breaks one of its
//! invariants makes it panic (`fatal!`), taking the replica down. Every
//! message that arrives over the network is therefore checked here first,
//! against the state of the receiving node, and refused (logged, nothing
//! changed) when raft-rs could panic on it or when it is a message a peer
//! never sends. The checks follow raft-rs 0.7's code paths (`Raft::step`,
//! `handle_append_entries`, `handle_heartbeat`, `restore`,
//! `handle_append_response`, `RaftLog::maybe_append`, `commit_to`,
//! `send`):
//!
//! - **Who.** `to` is this node; `from` is another node (not 0, not this
//!   one) and, on an authenticated connection, the node its certificate
//!   names ([`check_sender`]).
//! - **Kinds.** Only messages replicas send each other: appends,
//!   heartbeats, votes and pre-votes and their responses, snapshots,
//!   `MsgTimeoutNow`, `MsgReadIndex` (a follower's read forwarded to the
//!   leader) and its response. Local kinds (`MsgHup`, `MsgBeat`,
//!   `MsgPropose`, `MsgUnreachable`, `MsgSnapStatus`, `MsgCheckQuorum`) and
//!   `MsgTransferLeader` (which raft-rs forwards with a term set, and then
//!   panics on) are refused.
//! - **Terms.** Every kind carries a term of at least 1, except
//!   `MsgReadIndex`, which must carry none (raft-rs forwards it and panics
//!   on a set term; a `MsgReadIndexResp` with term 0 would commit past the
//!   log). Terms and indexes stay below [`LIMIT`] (2^62), so no `+ 1` in
//!   raft-rs can overflow.
//! - **Appends**: entries numbered consecutively from `index + 1`, with terms at least
//!   1, not decreasing, at least `log_term` and at most the message's term;
//!   `log_term` 0 exactly when `index` is 0. Then raft-rs's
//!   `maybe_append` can neither slice out of bounds, nor truncate below the
//!   commit index, nor commit past the log.
//! - **Heartbeats**: `commit` not past this node's last index (raft-rs
//!   commits it blindly and panics otherwise: the "commit past the log"
//!   frame).
//! - **Append responses** to a leader of the same term: an accepted index
//!   not past the leader's log.
//! - **Read index** and its response: exactly one entry (the request
//!   context; raft-rs indexes `entries[0]`).
//! - **Snapshots**: index and term at least 1, term not above the
//!   message's, a plain configuration (voters, unique, not empty, learners
//!   apart from them, no joint state), so that raft-rs's `restore` cannot
//!   fail to rebuild it.
//!
//! Left out: the content of entries is the replicated data itself and is
//! not judged here (an entry that does not decode is skipped by every
//! replica alike when applied); a peer with a valid certificate can still
//! lie within these rules (claim leadership, vote twice): raft tolerates
//! crashed and slow peers, not Byzantine ones.

use raft::eraftpb::{ConfState, EntryType, Message, MessageType};

/// Terms and indexes at or above this are refused: far beyond any real
/// log, and far enough from `u64::MAX` that raft-rs's arithmetic on them
/// cannot overflow.
pub const LIMIT: u64 = 1 << 62;

/// What the checks need to know of the receiving node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The node.
    pub id: u64,
    /// Its current term.
    pub term: u64,
    /// Its commit index.
    pub committed: u64,
    /// The last index of its log.
    pub last_index: u64,
    /// True while it leads.
    pub leader: bool,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// Checks that a message arriving on a connection authenticated as node
/// `sender` (`None`: an unauthenticated link, `--insecure-peers`) says it
/// is from that node.
pub fn check_sender(msg: &Message, sender: Option<u64>) -> Result<(), Refused> {
    match sender {
        Some(s) if msg.from != s => refuse(format!(
            "a message claiming to be from node {} on the connection of node {s}",
            msg.from
        )),
        _ => Ok(()),
    }
}

/// Checks a message from a peer against the receiving node's state; see
/// the module documentation for the rules.
pub fn check(msg: &Message, node: &View) -> Result<(), Refused> {
    use MessageType::*;
    if msg.to != node.id {
        return refuse(format!("addressed to node {}", msg.to));
    }
    if msg.from == 0 || msg.from == node.id {
        return refuse(format!("from node {}", msg.from));
    }
    let ty = msg.get_msg_type();
    match ty {
        MsgHup | MsgBeat | MsgPropose | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum
        | MsgTransferLeader => return refuse(format!("{ty:?} is not sent between replicas")),
        MsgReadIndex => {
            if msg.term != 0 {
                return refuse("MsgReadIndex with a term");
            }
        }
        _ => {
            if msg.term == 0 {
                return refuse(format!("{ty:?} without a term"));
            }
        }
    }
    let fields = [
        ("term", msg.term),
        ("log_term", msg.log_term),
        ("index", msg.index),
        ("commit", msg.commit),
        ("commit_term", msg.commit_term),
        ("reject_hint", msg.reject_hint),
        ("request_snapshot", msg.request_snapshot),
    ];
    if let Some((name, v)) = fields.iter().find(|(_, v)| *v >= LIMIT) {
        return refuse(format!("{name} {v} out of range"));
    }
    if msg.entries.len() as u64 >= LIMIT - msg.index {
        return refuse("too many entries");
    }
    if let Some(e) = msg.entries.iter().find(|e| e.term >= LIMIT) {
        return refuse(format!("an entry of term {}", e.term));
    }
    // A message of an older term is answered (or ignored) by raft-rs
    // without touching the log; the checks below are about the log.
    let handled = msg.term == 0 || msg.term >= node.term;
    match ty {
        MsgAppend => check_append(msg),
        MsgHeartbeat if handled && msg.commit > node.last_index => refuse(format!(
            "a heartbeat committing {} past the last index {}",
            msg.commit, node.last_index
        )),
        MsgAppendResponse
            if handled
                && node.leader
                && msg.term == node.term
                && !msg.reject
                && msg.index > node.last_index =>
        {
            refuse(format!(
                "an append response accepting index {} past the last index {}",
                msg.index, node.last_index
            ))
        }
        MsgReadIndex | MsgReadIndexResp if msg.entries.len() != 1 => refuse(format!(
            "{ty:?} with {} entries instead of one",
            msg.entries.len()
        )),
        MsgSnapshot => check_snapshot(msg),
        _ => Ok(()),
    }
}

fn check_append(msg: &Message) -> Result<(), Refused> {
    if (msg.index == 0) != (msg.log_term == 0) {
        return refuse(format!(
            "an append after index {} of term {}",
            msg.index, msg.log_term
        ));
    }
    if msg.log_term > msg.term {
        return refuse("an append whose previous entry is of a later term than the message");
    }
    let mut prev_term = msg.log_term;
    for (i, e) in msg.entries.iter().enumerate() {
        if e.index != msg.index + 1 + i as u64 {
            return refuse(format!(
                "entry {i} of an append after index {} has index {}",
                msg.index, e.index
            ));
        }
        if e.term == 0 || e.term < prev_term || e.term > msg.term {
            return refuse(format!("entry {} has term {}", e.index, e.term));
        }
        if !matches!(
            e.get_entry_type(),
            EntryType::EntryNormal | EntryType::EntryConfChangeV2
        ) {
            return refuse(format!("entry {} is a {:?}", e.index, e.get_entry_type()));
        }
        prev_term = e.term;
    }
    Ok(())
}

fn check_snapshot(msg: &Message) -> Result<(), Refused> {
    let meta = msg.get_snapshot().get_metadata();
    if meta.index == 0 || meta.term == 0 || meta.index >= LIMIT || meta.term > msg.term {
        return refuse(format!(
            "a snapshot at index {} of term {}",
            meta.index, meta.term
        ));
    }
    check_conf_state(meta.get_conf_state())
}

fn check_conf_state(cs: &ConfState) -> Result<(), Refused> {
    let mut voters = cs.voters.clone();
    voters.sort_unstable();
    voters.dedup();
    let mut learners = cs.learners.clone();
    learners.sort_unstable();
    learners.dedup();
    if voters.is_empty()
        || voters.len() != cs.voters.len()
        || learners.len() != cs.learners.len()
        || voters.contains(&0)
        || learners.iter().any(|l| *l == 0 || voters.contains(l))
        || !cs.voters_outgoing.is_empty()
        || !cs.learners_next.is_empty()
        || cs.auto_leave
    {
        return refuse(format!("a snapshot with the configuration {cs:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::sim::{self, Sim, SimConfig};
    use crate::raft::Error;
    use raft::eraftpb::{Entry, Snapshot};

    fn msg(ty: MessageType, from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(ty);
        m.from = from;
        m.to = to;
        m.term = term;
        m
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    /// Well-formed messages that raft-rs 0.7 panics on (or acts on as if
    /// local), sent to a follower and to the leader of a live cluster:
    /// each is refused, and the node is exactly as before.
    #[test]
    fn messages_raft_rs_would_panic_on_are_refused_and_change_nothing() {
        use MessageType::*;
        let mut sim = Sim::memory(3, SimConfig::new(5)).unwrap();
        let l = sim.wait_for_leader(500).unwrap();
        for i in 0..5 {
            sim.write(l, sim::put(&format!("k{i}"), b"v"), 100).unwrap();
        }
        sim.run(3);
        let f = (1..=3).find(|&i| i != l).unwrap();
        let g = (1..=3).find(|&i| i != l && i != f).unwrap();
        let fv = sim.node(f).unwrap().view();
        let lv = sim.node(l).unwrap().view();
        let t = fv.term;
        let mut cases: Vec<(&str, Message)> = Vec::new();
        let mut m = msg(MsgHeartbeat, l, f, t);
        m.commit = fv.last_index + 1000;
        cases.push(("heartbeat committing past the log", m));
        let mut m = msg(MsgHeartbeat, g, f, t + 1);
        m.commit = fv.last_index + 1;
        cases.push(("heartbeat of a new term committing past the log", m));
        let mut m = msg(MsgReadIndexResp, l, f, 0);
        m.index = fv.last_index + 1000;
        m.mut_entries().push(entry(0, 0));
        cases.push(("read index response without a term", m));
        cases.push(("read index without a context", msg(MsgReadIndex, f, l, 0)));
        let mut m = msg(MsgReadIndex, f, g, t);
        m.mut_entries().push(entry(0, 0));
        cases.push(("read index with a term, forwarded by a follower", m));
        cases.push(("vote without a term", msg(MsgRequestVote, g, f, 0)));
        cases.push(("pre-vote without a term", msg(MsgRequestPreVote, g, f, 0)));
        cases.push((
            "transfer forwarded with a term",
            msg(MsgTransferLeader, g, f, t),
        ));
        cases.push(("campaign", msg(MsgHup, g, f, 0)));
        cases.push(("beat", msg(MsgBeat, g, l, 0)));
        cases.push(("proposal", msg(MsgPropose, g, l, t)));
        cases.push(("unreachable", msg(MsgUnreachable, f, l, t)));
        cases.push(("snapshot status", msg(MsgSnapStatus, f, l, t)));
        cases.push(("check quorum", msg(MsgCheckQuorum, f, l, t)));
        let mut m = msg(MsgAppend, l, f, t);
        m.index = fv.last_index;
        m.log_term = t;
        m.mut_entries().push(entry(fv.last_index + 5, t));
        m.commit = fv.last_index + 5;
        cases.push(("append with a gap", m));
        let mut m = msg(MsgAppend, l, f, t);
        m.index = fv.committed;
        m.log_term = t;
        m.mut_entries().push(entry(fv.committed, t));
        cases.push(("append going backwards", m));
        let mut m = msg(MsgAppend, l, f, t);
        m.index = fv.last_index + 10;
        m.log_term = 0;
        m.mut_entries().push(entry(fv.last_index + 11, t));
        cases.push(("append after an index of term 0", m));
        let mut m = msg(MsgAppend, l, f, t);
        m.index = u64::MAX - 1;
        m.log_term = t;
        m.mut_entries().push(entry(u64::MAX, t));
        cases.push(("append at the end of u64", m));
        let mut m = msg(MsgAppend, l, f, t);
        m.index = fv.last_index;
        m.log_term = t;
        m.mut_entries().push(entry(fv.last_index + 1, t + 7));
        cases.push(("append of an entry from a later term", m));
        let mut m = msg(MsgAppendResponse, f, l, lv.term);
        m.index = lv.last_index + 1000;
        cases.push(("append response past the leader's log", m));
        let mut m = msg(MsgHeartbeat, g, f, u64::MAX);
        m.commit = 0;
        cases.push(("a term at the end of u64", m));
        let mut misrouted = vec![("to another node", msg(MsgHeartbeat, l, g, t))];
        cases.push(("from nobody", msg(MsgHeartbeat, 0, f, t)));
        cases.push(("from itself", msg(MsgHeartbeat, f, f, t)));
        let mut m = msg(MsgSnapshot, l, f, t);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = fv.last_index + 100;
        snap.mut_metadata().term = 0;
        m.set_snapshot(snap);
        cases.push(("snapshot of term 0", m));
        let cases = cases
            .into_iter()
            .map(|(name, m)| (name, m.to, m))
            .chain(misrouted.drain(..).map(|(name, m)| (name, f, m)));
        for (name, to, m) in cases {
            let node = sim.node_mut(to).unwrap();
            let before = (node.status(), node.view());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.step(m)));
            match r {
                Ok(Err(Error::Refused(_))) => {}
                Ok(other) => panic!("{name}: not refused: {other:?}"),
                Err(_) => panic!("{name}: node {to} panicked"),
            }
            assert_eq!(
                (node.status(), node.view()),
                before,
                "{name} changed node {to}"
            );
            sim.settle();
        }
        // The cluster goes on.
        sim.write(l, sim::put("after", b"v"), 100).unwrap();
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[test]
    fn configurations_raft_rs_cannot_restore_are_refused() {
        let ok = ConfState::from((vec![1, 2, 3], vec![]));
        assert_eq!(check_conf_state(&ok), Ok(()));
        for bad in [
            ConfState::default(),
            ConfState::from((vec![1, 1, 2], vec![])),
            ConfState::from((vec![1, 2], vec![2])),
            ConfState::from((vec![0, 2], vec![])),
            ConfState::from((vec![1], vec![3, 3])),
            {
                let mut c = ok.clone();
                c.voters_outgoing = vec![1];
                c
            },
            {
                let mut c = ok.clone();
                c.auto_leave = true;
                c
            },
        ] {
            assert!(check_conf_state(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_message_on_another_node_s_connection_is_refused() {
        let m = Message {
            from: 3,
            ..Default::default()
        };
        assert!(check_sender(&m, Some(2)).is_err());
        assert!(check_sender(&m, Some(3)).is_ok());
        assert!(check_sender(&m, None).is_ok());
    }
}
