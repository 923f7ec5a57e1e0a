//! The second half of a node's poll: one round of raft-rs's Ready
//! protocol ([`Node::handle_ready`]) and what it hands the node.
//!
//! In raft-rs's documented order: messages a leader may send before
//! persisting go out at once; a snapshot from the leader is installed
//! (durable marker, readers on the staged checkpoint, copy, readers back);
//! entries and hard state are persisted in one batch (fsynced when raft
//! requires it); read states become reads waiting for their index;
//! committed entries are applied to the store (a batch of writes in one
//! store transaction per entry, or a membership change), and the requests
//! this node proposed are answered from the results. An entry applied
//! before (a restart replays from the applied index) is skipped; one that
//! does not decode is skipped by every replica alike. Proposals an applied
//! index passes without carrying them failed ([`Error::LeadershipLost`]).
//! Log compaction ([`Node::maybe_compact`]) keeps the newer half of the
//! applied entries once there are more than the threshold.
//!
//! Left out: applying on a thread apart from the one that persists (apply
//! is the store's write batch and is fast next to the fsync).

use super::codec::{decode_batch, parse_read_ctx};
use super::{sorted, Node, Outcome, RequestId};
use crate::raft::Error;
use crate::store::{Engine, Txn};
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, MessageType, Snapshot};

impl<E: Engine> Node<E> {
    /// One round of raft-rs's Ready protocol, in its documented order.
    pub(super) fn handle_ready(&mut self) -> Result<(), Error> {
        let mut rd = self.raw.ready();

        // 1. Messages a leader may send before persisting: out now, so the
        //    followers persist while the leader does.
        let early = rd.take_messages();
        match &mut self.early {
            Some(sink) => {
                let (snapshots, rest): (Vec<_>, Vec<_>) = early
                    .into_iter()
                    .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
                if !rest.is_empty() {
                    sink(rest);
                }
                // A snapshot's fate is reported back to raft by the driver.
                self.messages.extend(snapshots);
            }
            None => self.messages.extend(early),
        }

        // 2. A snapshot from the leader.
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(&snap)?;
        }

        // 3. Entries and hard state, in one batch, fsynced when required.
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        if !entries.is_empty() || hs.is_some() {
            self.raw
                .store()
                .persist(&entries, hs.as_ref(), rd.must_sync())?;
        }

        // 4. Messages that promise what is now on disk.
        self.messages.extend(rd.take_persisted_messages());

        // 5. Read states: reads whose index is known.
        for rs in rd.take_read_states() {
            match parse_read_ctx(&rs.request_ctx) {
                Some((node, inc, seq)) if node == self.id && inc == self.incarnation => {
                    if let Some((_, ids)) = self.reads_inflight.remove(&seq) {
                        self.reads_ready.entry(rs.index).or_default().extend(ids);
                    }
                }
                _ => tracing::debug!(
                    node = self.id,
                    "ignoring a read state of an earlier incarnation"
                ),
            }
        }

        // 6. Committed entries (their commit index was persisted above).
        self.apply(rd.take_committed_entries())?;

        // 7. Advance; the light ready's commit index is persisted before its
        //    entries are applied.
        let mut light = self.raw.advance(rd);
        if light.commit_index().is_some() {
            let hs = self.raw.raft.hard_state();
            self.raw.store().persist(&[], Some(&hs), false)?;
        }
        self.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.answer_reads();
        Ok(())
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), Error> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let staged = match self.incoming_snapshot.take() {
            Some((i, t, staged)) if i == index && t == term => staged,
            _ => {
                return Err(Error::Corrupt {
                    what: "raft snapshot",
                    reason: format!(
                        "raft took a snapshot at {index} (term {term}) that was not received"
                    ),
                })
            }
        };
        let hs = self.raw.raft.hard_state();
        let log = self.raw.store();
        // 1. The durable marker: from here on the install happens, now or
        //    when the replica opens again after a crash.
        let installing = log.begin_install(snap, staged, &hs)?;
        // 2. Readers read the new state from the staged checkpoint while
        //    the live engine is rewritten: never a half-copied state. The
        //    checkpoint's directory goes once the last read on it ends.
        let cp = log.engine().open_checkpoint(installing.dir())?;
        let dir = installing.dir().to_path_buf();
        self.store.begin_replace(
            cp.clone(),
            Box::new(move || {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an installed snapshot's staging directory");
                }
            }),
        )?;
        // 3. The copy and the final durable batch; then readers go back to
        //    the live engine, which holds the same state.
        log.finish_install(&installing, &cp)?;
        drop(cp);
        self.store.finish_replace()?;
        self.awaiting_snapshot = false;
        tracing::info!(
            node = self.id,
            index,
            term,
            revision = self.store.revision(),
            "installed a raft snapshot"
        );
        self.fail_superseded(index);
        self.answer_reads();
        Ok(())
    }

    /// Fails proposals at or below `index` that were not applied as
    /// proposed.
    fn fail_superseded(&mut self, index: u64) {
        let later_p = self.proposals.split_off(&(index + 1));
        let lost: Vec<RequestId> = std::mem::replace(&mut self.proposals, later_p)
            .into_values()
            .flat_map(|p| p.ids)
            .collect();
        let later_c = self.conf_changes.split_off(&(index + 1));
        let lost_c: Vec<RequestId> = std::mem::replace(&mut self.conf_changes, later_c)
            .into_values()
            .map(|(_, id)| id)
            .collect();
        for id in lost.into_iter().chain(lost_c) {
            self.fail(id, Error::LeadershipLost);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        for entry in entries {
            let index = entry.index;
            if index <= self.store.applied_index() {
                tracing::debug!(node = self.id, index, "skipping an entry applied before");
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(entry)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(entry)?
                }
            }
            self.raw.store().set_applied(index);
            self.fail_superseded(index);
        }
        self.answer_reads();
        Ok(())
    }

    fn apply_normal(&mut self, entry: Entry) -> Result<(), Error> {
        let index = entry.index;
        let mine = match self.proposals.remove(&index) {
            Some(p) if p.term == entry.term => Some(p.ids),
            Some(p) => {
                for id in p.ids {
                    self.fail(id, Error::LeadershipLost);
                }
                None
            }
            None => None,
        };
        if entry.data.is_empty() {
            // A new leader's empty entry.
            self.store.apply_noop(index)?;
            return Ok(());
        }
        let batch = match decode_batch(&entry.data) {
            Ok(b) => b,
            Err(e) => {
                // Deterministic: every replica skips the same entry.
                let node = self.id;
                tracing::error!(node, index, error = %e, "skipping an undecodable raft entry");
                self.store.apply_noop(index)?;
                for id in mine.unwrap_or_default() {
                    self.fail(
                        id,
                        Error::Corrupt {
                            what: "raft entry",
                            reason: e.to_string(),
                        },
                    );
                }
                return Ok(());
            }
        };
        let (ids, txns): (Vec<RequestId>, Vec<Txn>) = batch.into_iter().unzip();
        let results = self.store.apply_entry(index, txns)?;
        if let Some(mine) = mine {
            if mine == ids {
                for (id, result) in ids.into_iter().zip(results) {
                    self.respond(id, Outcome::Write(result.map_err(Error::Store)));
                }
            } else {
                tracing::error!(
                    node = self.id,
                    index,
                    "applied entry does not carry the proposed requests"
                );
                for id in mine {
                    self.fail(id, Error::LeadershipLost);
                }
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: Entry) -> Result<(), Error> {
        let index = entry.index;
        let mine = match self.conf_changes.remove(&index) {
            Some((term, id)) if term == entry.term => Some(id),
            Some((_, id)) => {
                self.fail(id, Error::LeadershipLost);
                None
            }
            None => None,
        };
        let applied: Result<ConfState, Error> = match entry.get_entry_type() {
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data)
                .map_err(|e| Error::Corrupt {
                    what: "membership change",
                    reason: e.to_string(),
                })
                .and_then(|cc| self.raw.apply_conf_change(&cc).map_err(Error::from)),
            _ => ConfChange::parse_from_bytes(&entry.data)
                .map_err(|e| Error::Corrupt {
                    what: "membership change",
                    reason: e.to_string(),
                })
                .and_then(|cc| self.raw.apply_conf_change(&cc).map_err(Error::from)),
        };
        let outcome = match applied {
            Ok(cs) => {
                self.raw.store().set_conf_state(&cs)?;
                tracing::info!(node = self.id, index, voters = ?cs.voters, "membership changed");
                Ok(sorted(cs.voters.clone()))
            }
            Err(e) => {
                // Deterministic: every replica refuses the same change.
                tracing::warn!(node = self.id, index, error = %e, "membership change refused");
                Err(e)
            }
        };
        self.store.apply_noop(index)?;
        if let Some(id) = mine {
            self.respond(id, Outcome::Membership(outcome));
        }
        Ok(())
    }

    /// Answers the reads whose read index has been applied.
    fn answer_reads(&mut self) {
        let applied = self.store.applied_index();
        let waiting = self.reads_ready.split_off(&(applied + 1));
        let ready = std::mem::replace(&mut self.reads_ready, waiting);
        for (index, ids) in ready {
            for id in ids {
                self.respond(id, Outcome::Read(Ok(index)));
            }
        }
    }

    /// Compacts the log once it holds more applied entries than the
    /// threshold, keeping the newer half.
    pub(super) fn maybe_compact(&mut self) -> Result<(), Error> {
        let threshold = self.config.log_compact_threshold;
        if threshold == 0 {
            return Ok(());
        }
        let applied = self.store.applied_index();
        let (truncated, _) = self.raw.store().truncated();
        if applied.saturating_sub(truncated) > threshold {
            let to = applied - threshold / 2;
            self.raw.store().compact(to)?;
            tracing::debug!(node = self.id, to, "compacted the raft log");
        }
        Ok(())
    }
}
