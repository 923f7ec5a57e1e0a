//! Snapshots in the log store: producing one for a lagging peer and
//! installing one received from the leader.
//!
//! **Producing.** When raft-rs asks for a snapshot
//! ([`raft::Storage::snapshot`]) the store takes a RocksDB checkpoint at
//! the applied index ([`Checkpoint::take`]); the `Snapshot` raft-rs sends
//! carries only the checkpoint's manifest, and the transport takes the
//! checkpoint itself ([`LogStore::take_checkpoint`], once) to stream it in
//! chunks. One not taken within a minute is dropped.
//!
//! **Installing.** A received checkpoint, staged on disk, replaces the
//! state machine's data in two steps ([`LogStore::begin_install`],
//! [`LogStore::finish_install`]), so that the node can point the store's
//! readers at the staged checkpoint in between: first a durable marker
//! (`raft_installing`, with the hard state), then the data copied in
//! batches and one final durable batch that clears the log, moves first and
//! last index to the snapshot's, records its configuration and removes the
//! marker. An open that finds the marker finishes the install first
//! ([`LogStore::open_in`] calls [`complete_install`]).
//!
//! Left out: incremental snapshots (a checkpoint is always whole).

use super::records::{encode_proto, encode_u64s, log_key, KEY_CONF_STATE, KEY_HARD_STATE};
use super::records::{KEY_INSTALLING, KEY_TRUNCATED};
use super::{LogState, LogStore, TermRuns};
use crate::raft::snapshot::{self, Checkpoint, Staged};
use crate::store::{Cf, Engine, WriteBatch};
use raft::eraftpb::{HardState, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl<E: Engine> LogStore<E> {
    /// The checkpoint behind a `Snapshot` that [`raft::Storage::snapshot`]
    /// produced, for the transport to stream; each is taken once.
    pub fn take_checkpoint(&self, snapshot: &Snapshot) -> Option<Arc<Checkpoint>> {
        let id = snapshot::Manifest::decode(&snapshot.data).ok()?.id;
        self.lock().outgoing.remove(&id).map(|(_, cp)| cp)
    }

    /// Installs a received snapshot: replaces the state machine's data by
    /// the staged checkpoint's, clears the log, sets first and last index
    /// to the snapshot's, its configuration, and `hard_state`. Crash-safe
    /// without holding the data in memory: the staged files are synced, a
    /// durable marker (with the hard state) names the install in progress,
    /// the data is copied in batches, and one final durable batch moves the
    /// log position and clears the marker; [`LogStore::open_in`] finishes
    /// an install a crash interrupted. [`LogStore::begin_install`] and
    /// [`LogStore::finish_install`] in one step, the staging directory
    /// removed at the end (for callers without readers of the store).
    pub fn install_snapshot(
        &self,
        snapshot: &Snapshot,
        staged: Staged,
        hard_state: &HardState,
    ) -> Result<(), crate::store::Error> {
        let installing = self.begin_install(snapshot, staged, hard_state)?;
        let cp = self.engine.open_checkpoint(installing.dir())?;
        self.finish_install(&installing, &cp)?;
        drop(cp);
        installing.remove_dir();
        Ok(())
    }

    /// The first, durable step of an install: syncs the staged checkpoint
    /// and records the marker with `hard_state`. From here on the install
    /// happens, now or after a crash; the checkpoint's directory belongs to
    /// the returned [`Installing`] (remove it only after
    /// [`LogStore::finish_install`]).
    pub fn begin_install(
        &self,
        snapshot: &Snapshot,
        staged: Staged,
        hard_state: &HardState,
    ) -> Result<Installing, crate::store::Error> {
        let meta = snapshot.get_metadata();
        let index = meta.index;
        if staged.manifest().index != index {
            return Err(crate::store::Error::engine(format!(
                "snapshot at index {index} with a checkpoint at {}",
                staged.manifest().index
            )));
        }
        let mut st = self.lock();
        staged.sync()?;
        let mut marker = Snapshot::default();
        marker.set_metadata(meta.clone());
        marker.data = staged
            .dir()
            .to_string_lossy()
            .into_owned()
            .into_bytes()
            .into();
        let mut wb = WriteBatch::new();
        wb.put(Cf::Meta, KEY_INSTALLING, encode_proto(&marker)?);
        wb.put(Cf::Meta, KEY_HARD_STATE, encode_proto(hard_state)?);
        self.engine.write(wb, true)?;
        st.hard_state = hard_state.clone();
        // The marker owns the staging directory now.
        let dir = staged.keep();
        Ok(Installing { marker, dir })
    }

    /// The rest of the install [`LogStore::begin_install`] started: copies
    /// the state from `cp` (its checkpoint, opened) and, in one durable
    /// batch, clears the log, records the snapshot's index and term and its
    /// configuration and removes the marker.
    pub fn finish_install(
        &self,
        installing: &Installing,
        cp: &E,
    ) -> Result<(), crate::store::Error> {
        let mut st = self.lock();
        complete_install_from(&self.engine, &installing.marker, cp)?;
        let meta = installing.marker.get_metadata();
        let (index, term) = (meta.index, meta.term);
        st.truncated = (index, term);
        st.last_index = index;
        st.terms = TermRuns::new((index, term));
        st.conf_state = meta.get_conf_state().clone();
        st.applied = index;
        Ok(())
    }

    /// A checkpoint at the applied index, as the `Snapshot` raft-rs
    /// sends (its data the checkpoint's manifest), kept for the
    /// transport to take.
    pub(super) fn make_snapshot(&self, st: &mut LogState) -> Result<Snapshot, crate::store::Error> {
        let index = st.applied;
        let term = st
            .term(index)
            .map_err(|e| crate::store::Error::engine(format!("term of {index}: {e}")))?;
        // A checkpoint raft asked for but that no transfer took within a
        // minute never will be (several may wait at once: one per lagging
        // peer).
        st.outgoing
            .retain(|_, (at, _)| at.elapsed() < std::time::Duration::from_secs(60));
        let cp = Checkpoint::take(&self.engine, self.snapshots.path(), index)?;
        let mut snap = Snapshot {
            data: cp.manifest().encode().into(),
            ..Default::default()
        };
        let m = snap.mut_metadata();
        m.index = index;
        m.term = term;
        m.set_conf_state(st.conf_state.clone());
        st.outgoing
            .insert(cp.manifest().id, (std::time::Instant::now(), Arc::new(cp)));
        Ok(snap)
    }
}

/// An install past its durable marker ([`LogStore::begin_install`]).
#[derive(Debug)]
pub struct Installing {
    marker: Snapshot,
    dir: PathBuf,
}

impl Installing {
    /// The staged checkpoint's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the staged checkpoint (once the install is finished and
    /// nothing reads it any more).
    pub fn remove_dir(&self) {
        remove_staging(&self.dir);
    }
}

fn remove_staging(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an installed snapshot's staging directory");
    }
}

/// Finishes the install that `marker` records after a crash: opens the
/// staged checkpoint, completes the install from it, then removes the
/// staging directory.
pub(super) fn complete_install<E: Engine>(
    engine: &E,
    marker: &Snapshot,
) -> Result<(), crate::store::Error> {
    let dir = PathBuf::from(String::from_utf8_lossy(&marker.data).into_owned());
    let cp = engine.open_checkpoint(&dir)?;
    complete_install_from(engine, marker, &cp)?;
    drop(cp);
    remove_staging(&dir);
    Ok(())
}

/// Copies the state of `cp` (the staged checkpoint of `marker`, opened)
/// and, in one durable batch, clears the log, records the snapshot's index
/// and term as truncated, its configuration, and removes the marker.
fn complete_install_from<E: Engine>(
    engine: &E,
    marker: &Snapshot,
    cp: &E,
) -> Result<(), crate::store::Error> {
    let meta = marker.get_metadata();
    snapshot::copy_from(engine, cp)?;
    let mut wb = WriteBatch::new();
    wb.delete_range(Cf::Log, log_key(0), log_key(u64::MAX));
    wb.put(
        Cf::Meta,
        KEY_TRUNCATED,
        encode_u64s(&[meta.index, meta.term]),
    );
    wb.put(
        Cf::Meta,
        KEY_CONF_STATE,
        encode_proto(meta.get_conf_state())?,
    );
    wb.delete(Cf::Meta, KEY_INSTALLING);
    engine.write(wb, true)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entries, is_compacted, with_engines};
    use super::*;
    use raft::StorageError;

    fn snapshot_at(index: u64, term: u64) -> (Snapshot, HardState) {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        let hs = HardState {
            term,
            commit: index,
            ..Default::default()
        };
        (snap, hs)
    }

    #[test]
    fn snapshot_install_moves_first_and_last_index() {
        with_engines(|open| {
            let log = open();
            // The checkpoint a leader would send: /a at index 50.
            log.data_engine_put(b"/a", b"1");
            log.store_apply_noop(50);
            let staged = log.stage_own(50);
            let dir = staged.dir().to_path_buf();
            // The follower's own state, replaced by the install.
            let log = open();
            log.persist(&entries(1..=10, 1), None).unwrap();
            log.data_engine_put(b"/old", b"gone after the snapshot");
            let (snap, hs) = snapshot_at(50, 4);
            log.install(&snap, staged, &hs).unwrap();
            assert!(!dir.exists(), "the staging directory is removed");
            for log in [log, open()] {
                let s = log.s();
                assert_eq!(s.first_index().unwrap(), 51);
                assert_eq!(s.last_index().unwrap(), 50);
                assert_eq!(s.term(50).unwrap(), 4);
                assert!(is_compacted(s.term(10)));
                assert_eq!(s.initial_state().unwrap().hard_state.commit, 50);
                assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
                assert_eq!(log.data(), vec![(b"/a".to_vec(), b"1".to_vec())]);
            }
            // The log continues after the snapshot.
            let log = open();
            log.persist(&entries(51..=52, 4), None).unwrap();
            assert_eq!(log.s().entries(51, 53, None).unwrap(), entries(51..=52, 4));
        });
    }

    #[test]
    fn an_install_interrupted_by_a_crash_is_finished_on_open() {
        with_engines(|open| {
            let log = open();
            log.data_engine_put(b"/a", b"1");
            log.store_apply_noop(30);
            let staged = log.stage_own(30);
            log.persist(&entries(1..=5, 1), None).unwrap();
            log.data_engine_put(b"/old", b"gone after the snapshot");
            let (snap, hs) = snapshot_at(30, 3);
            log.crash_after_marker(&snap, staged, &hs);
            let log = log.reopen();
            let s = log.s();
            assert_eq!(s.first_index().unwrap(), 31);
            assert_eq!(s.last_index().unwrap(), 30);
            assert_eq!(s.term(30).unwrap(), 3);
            assert_eq!(s.initial_state().unwrap().hard_state, hs);
            assert_eq!(log.data(), vec![(b"/a".to_vec(), b"1".to_vec())]);
            // Nothing is left in the snapshot directory.
            let log = log.reopen();
            assert_eq!(log.s().last_index().unwrap(), 30);
        });
    }

    #[test]
    fn snapshot_is_taken_at_the_applied_index() {
        with_engines(|open| {
            let log = open();
            log.bootstrap(&[1, 2, 3]);
            log.persist(&[entries(1..=2, 1), entries(3..=4, 2)].concat(), None)
                .unwrap();
            log.data_engine_put(b"/k", b"v");
            log.store_apply_noop(3);
            log.set_applied(3);
            // A request beyond the applied index must wait.
            assert!(matches!(
                log.s().snapshot(4),
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            ));
            let snap = log.s().snapshot(2).unwrap();
            assert_eq!(snap.get_metadata().index, 3);
            assert_eq!(snap.get_metadata().term, 2);
            assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
            let manifest = snapshot::Manifest::decode(&snap.data).unwrap();
            assert_eq!(manifest.index, 3);
            assert!(!manifest.files.is_empty());
            // Two lagging peers: two checkpoints, each taken once by the
            // transport, each directory gone with its last holder.
            let snap2 = log.s().snapshot(2).unwrap();
            let (a, b) = (log.take(&snap).unwrap(), log.take(&snap2).unwrap());
            assert!(log.take(&snap).is_none(), "a checkpoint is taken once");
            assert_ne!(a.manifest().id, b.manifest().id);
            let (da, db) = (a.dir().to_path_buf(), b.dir().to_path_buf());
            assert!(da.join(&manifest.files[0].name).is_file() && db.is_dir());
            drop((a, b));
            assert!(!da.exists() && !db.exists());
            // The applied index reported must match the store's own record,
            // or the checkpoint would not be consistent.
            log.set_applied(4);
            assert!(matches!(
                log.s().snapshot(0),
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            ));
        });
    }
}
