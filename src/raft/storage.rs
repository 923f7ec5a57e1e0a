//! The raft log and raft state over an [`Engine`]: raft-rs's [`raft::Storage`].
//!
//! Layout:
//!
//! ```text
//! log  {index: u64 big-endian}  envelope(create = term, mod = index, body = protobuf Entry)
//! meta raft_hard_state          envelope(protobuf HardState)
//! meta raft_conf_state          envelope(protobuf ConfState) as of the applied index
//! meta raft_truncated           envelope(index u64 BE, term u64 BE) of the last entry
//!                               dropped by compaction or covered by a snapshot
//! meta raft_incarnation         envelope(u64 BE), bumped on every open of a node
//! meta raft_cluster_id          envelope(u64 BE): the shard's cluster id (see
//!                               [`super::server::transport`]'s hello); absent on
//!                               a replica that has not joined yet
//! meta raft_installing          envelope(protobuf Snapshot: metadata, data = the
//!                               staging directory) while a snapshot installs
//! ```
//!
//! Every value is wrapped in the store's checksummed envelope
//! ([`crate::store::codec`]), so a damaged entry is an error naming its
//! key, never a wrong entry. An entry's term is also in the envelope header,
//! and [`LogStore`] keeps the terms in memory as runs (`(first index, term)`,
//! one per term), so `term()` never touches the disk.
//!
//! Two raft-rs pitfalls are handled here: the term of `first_index() - 1`
//! stays known after compaction (the `raft_truncated` record), and installing
//! a snapshot moves first and last index to the snapshot (and clears the log).
//! The state machine's data is replaced from the staged checkpoint in
//! batches before that final write; the `raft_installing` marker, written
//! durably first, makes the whole install one step across a crash: an open
//! that finds it finishes the install before reading anything else
//! ([`LogStore::open_in`]). The install comes in two steps
//! ([`LogStore::begin_install`], [`LogStore::finish_install`]) so that the
//! node can point the store's readers at the staged checkpoint in between
//! (see [`super::snapshot`]).
//!
//! raft-rs treats most storage errors as fatal (it panics); an I/O error of
//! the engine is such a case, and the node must stop anyway. A snapshot that
//! cannot be produced is reported as temporarily unavailable instead, which
//! raft-rs retries.
//!
//! This file holds the log itself (open, append, compaction, raft-rs's
//! reads); `storage/records.rs` the keys and encodings of the layout above;
//! `storage/snapshots.rs` producing and installing snapshots.

use super::snapshot::Checkpoint;
use crate::store::{codec, Cf, Engine, WriteBatch};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use records::{corrupt, decode_entry, encode_entry, encode_proto, encode_u64s};
use records::{read_proto, read_u64s, KEY_CONF_STATE, KEY_HARD_STATE, KEY_INCARNATION};
use records::{KEY_CLUSTER_ID, KEY_INSTALLING, KEY_TRUNCATED};
use snapshots::complete_install;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

mod records;
mod snapshots;

pub use records::{log_key, RAFT_META_PREFIX};
pub use snapshots::Installing;

/// The terms of the log as runs: `(first index, term)`, ascending. The first
/// run starts at the truncated index (whose term must stay known).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TermRuns(Vec<(u64, u64)>);

impl TermRuns {
    fn new(truncated: (u64, u64)) -> Self {
        TermRuns(vec![truncated])
    }

    fn term(&self, index: u64) -> Option<u64> {
        let pos = self.0.partition_point(|&(start, _)| start <= index);
        pos.checked_sub(1).map(|p| self.0[p].1)
    }

    /// Drops the runs from `index` on (an append overwrites them).
    fn truncate_from(&mut self, index: u64) {
        // The first run (the truncated entry) always stays.
        while self.0.len() > 1 && self.0.last().is_some_and(|&(start, _)| start >= index) {
            self.0.pop();
        }
    }

    fn push(&mut self, index: u64, term: u64) {
        if self.0.last().map(|&(_, t)| t) != Some(term) {
            self.0.push((index, term));
        }
    }

    /// Makes `(index, term)` the first run (compaction up to `index`).
    fn compact_to(&mut self, index: u64, term: u64) {
        let keep = self.0.partition_point(|&(start, _)| start <= index);
        self.0.drain(..keep);
        self.0.insert(0, (index, term));
    }
}

/// The cached view of the raft state on disk.
#[derive(Debug)]
struct LogState {
    /// The persisted hard state (term, vote, commit).
    hard_state: HardState,
    /// The configuration as of the applied index.
    conf_state: ConfState,
    /// Index and term of the last entry that is no longer in the log.
    truncated: (u64, u64),
    /// Index of the last entry in the log (`truncated.0` when empty).
    last_index: u64,
    /// Terms of `truncated.0 ..= last_index`.
    terms: TermRuns,
    /// The state machine's applied index, as reported by the node.
    applied: u64,
    /// Checkpoints produced for peers and not yet taken by the transport,
    /// by transfer id, with when they were taken (see
    /// [`LogStore::take_checkpoint`]).
    outgoing: HashMap<u64, (std::time::Instant, Arc<Checkpoint>)>,
}

impl LogState {
    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.terms
            .term(index)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }
}

/// Where a replica keeps its snapshot checkpoints: a directory of the
/// operator's choice, or a temporary one removed with the store.
#[derive(Debug)]
pub enum SnapshotDir {
    /// A directory that outlives the process (next to the data).
    Path(PathBuf),
    /// A temporary directory (tests, the simulation).
    Temp(tempfile::TempDir),
}

impl SnapshotDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            SnapshotDir::Path(p) => p,
            SnapshotDir::Temp(t) => t.path(),
        }
    }
}

/// The raft log and raft state of one replica, stored in an [`Engine`].
pub struct LogStore<E: Engine> {
    engine: E,
    state: Mutex<LogState>,
    /// Outgoing checkpoints and incoming staging directories.
    snapshots: SnapshotDir,
    /// Where the time of each durable append goes, once set.
    fsync: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>,
}

fn other(e: crate::store::Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl<E: Engine> LogStore<E> {
    /// Opens the raft state in `engine`: reads the hard state, conf state and
    /// truncation record, and scans the log once for its last index and
    /// terms (the log is kept short by compaction).
    pub fn open(engine: E) -> Result<Self, crate::store::Error> {
        let temp = tempfile::Builder::new()
            .prefix("tmc-snapshots-")
            .tempdir()
            .map_err(|e| crate::store::Error::engine(format!("snapshot directory: {e}")))?;
        Self::open_in(engine, SnapshotDir::Temp(temp))
    }

    /// [`LogStore::open`] with snapshots kept under `snapshots`. An install
    /// that a crash interrupted is finished first; then whatever else is in
    /// the directory (checkpoints and transfers of an earlier run) is
    /// removed.
    pub fn open_in(engine: E, snapshots: SnapshotDir) -> Result<Self, crate::store::Error> {
        if let Some(marker) = read_proto::<Snapshot>(&engine, KEY_INSTALLING)? {
            let m = marker.get_metadata();
            tracing::warn!(
                index = m.index,
                term = m.term,
                "finishing a snapshot install that was interrupted"
            );
            complete_install(&engine, &marker)?;
        }
        let root = snapshots.path();
        std::fs::create_dir_all(root).map_err(|e| {
            crate::store::Error::engine(format!("creating {}: {e}", root.display()))
        })?;
        let leftovers = std::fs::read_dir(root)
            .map_err(|e| crate::store::Error::engine(format!("listing {}: {e}", root.display())))?;
        for item in leftovers.flatten() {
            let _ = std::fs::remove_dir_all(item.path());
        }
        let hard_state = read_proto::<HardState>(&engine, KEY_HARD_STATE)?.unwrap_or_default();
        let conf_state = read_proto::<ConfState>(&engine, KEY_CONF_STATE)?.unwrap_or_default();
        let truncated = read_u64s::<2>(&engine, KEY_TRUNCATED)?.map_or((0, 0), |[i, t]| (i, t));
        let mut terms = TermRuns::new(truncated);
        let mut last_index = truncated.0;
        for item in engine.scan(Cf::Log, &[], &[])? {
            let (key, raw) = item?;
            let index = match <[u8; 8]>::try_from(key.as_slice()) {
                Ok(b) => u64::from_be_bytes(b),
                Err(_) => return Err(corrupt(&key, "log key is not 8 bytes")),
            };
            if index <= truncated.0 {
                return Err(corrupt(
                    &key,
                    format!("entry at or below the truncated index {}", truncated.0),
                ));
            }
            if index != last_index + 1 {
                return Err(corrupt(
                    &key,
                    format!("gap in the log after index {last_index}"),
                ));
            }
            let env = codec::decode(Cf::Log.name(), &key, &raw)?;
            terms.push(index, env.create_revision);
            last_index = index;
        }
        Ok(LogStore {
            engine,
            state: Mutex::new(LogState {
                hard_state,
                conf_state,
                truncated,
                last_index,
                terms,
                applied: 0,
                outgoing: HashMap::new(),
            }),
            snapshots,
            fsync: std::sync::OnceLock::new(),
        })
    }

    /// The directory of snapshot checkpoints and transfers.
    pub fn snapshot_dir(&self) -> &Path {
        self.snapshots.path()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // The state is only assigned after a successful write, so a panic
        // elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine underneath.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// True when nothing was ever stored: no configuration, no hard state,
    /// no entry and no snapshot.
    pub fn is_empty(&self) -> bool {
        let st = self.lock();
        st.conf_state == ConfState::default()
            && st.hard_state == HardState::default()
            && st.last_index == 0
            && st.truncated == (0, 0)
    }

    /// Writes the initial configuration of a new cluster (every founding
    /// member does this with the same voters).
    pub fn bootstrap(&self, voters: &[u64]) -> Result<(), crate::store::Error> {
        let cs = ConfState::from((voters.to_vec(), Vec::<u64>::new()));
        let mut wb = WriteBatch::new();
        wb.put(Cf::Meta, KEY_CONF_STATE, encode_proto(&cs)?);
        self.engine.write(wb, true)?;
        self.lock().conf_state = cs;
        Ok(())
    }

    /// The shard's cluster id (0: none recorded: a replica waiting to
    /// join, or one written before cluster ids existed).
    pub fn cluster_id(&self) -> Result<u64, crate::store::Error> {
        cluster_id_of(&self.engine)
    }

    /// Records the shard's cluster id (durably).
    pub fn set_cluster_id(&self, id: u64) -> Result<(), crate::store::Error> {
        set_cluster_id(&self.engine, id)
    }

    /// Increments and returns the incarnation counter (durably): a number
    /// that differs on every open of this replica.
    pub fn bump_incarnation(&self) -> Result<u64, crate::store::Error> {
        let next = read_u64s::<1>(&self.engine, KEY_INCARNATION)?.map_or(0, |[v]| v) + 1;
        let mut wb = WriteBatch::new();
        wb.put(Cf::Meta, KEY_INCARNATION, encode_u64s(&[next]));
        self.engine.write(wb, true)?;
        Ok(next)
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state.clone()
    }

    /// The configuration as of the applied index.
    pub fn conf_state(&self) -> ConfState {
        self.lock().conf_state.clone()
    }

    /// Index and term of the last entry no longer in the log.
    pub fn truncated(&self) -> (u64, u64) {
        self.lock().truncated
    }

    /// Times every durable append from now on into `h` (the first call
    /// wins).
    pub fn observe_fsync(&self, h: prometheus_client::metrics::histogram::Histogram) {
        let _ = self.fsync.set(h);
    }

    /// Appends `entries` (overwriting any conflicting suffix of the log) and
    /// stores `hard_state`, in one write; with `sync`, durably.
    pub fn persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), crate::store::Error> {
        let mut st = self.lock();
        let mut wb = WriteBatch::new();
        let mut new_last = st.last_index;
        if let Some(first) = entries.first() {
            let first_index = first.index;
            if first_index <= st.truncated.0 {
                return Err(corrupt(
                    &log_key(first_index),
                    format!(
                        "append at index {first_index}, at or below the truncated index {}",
                        st.truncated.0
                    ),
                ));
            }
            if first_index > st.last_index + 1 {
                return Err(corrupt(
                    &log_key(first_index),
                    format!(
                        "append at index {first_index} leaves a gap after {}",
                        st.last_index
                    ),
                ));
            }
            for (i, e) in entries.iter().enumerate() {
                if e.index != first_index + i as u64 {
                    return Err(corrupt(
                        &log_key(e.index),
                        "appended entries are not contiguous",
                    ));
                }
                wb.put(Cf::Log, log_key(e.index), encode_entry(e)?);
            }
            new_last = first_index + entries.len() as u64 - 1;
            // Drop the rest of a conflicting suffix that the new entries do
            // not overwrite.
            if new_last < st.last_index {
                wb.delete_range(Cf::Log, log_key(new_last + 1), log_key(st.last_index + 1));
            }
        }
        if let Some(hs) = hard_state {
            wb.put(Cf::Meta, KEY_HARD_STATE, encode_proto(hs)?);
        }
        if wb.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.engine.write(wb, sync)?;
        if let (true, Some(h)) = (sync, self.fsync.get()) {
            h.observe(started.elapsed().as_secs_f64());
        }
        if let Some(first) = entries.first() {
            st.terms.truncate_from(first.index);
            for e in entries {
                st.terms.push(e.index, e.term);
            }
            st.last_index = new_last;
        }
        if let Some(hs) = hard_state {
            st.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Stores the configuration that applying the entry at the applied index
    /// produced.
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), crate::store::Error> {
        let mut wb = WriteBatch::new();
        wb.put(Cf::Meta, KEY_CONF_STATE, encode_proto(cs)?);
        self.engine.write(wb, false)?;
        self.lock().conf_state = cs.clone();
        Ok(())
    }

    /// Records the state machine's applied index (snapshots are taken at it).
    pub fn set_applied(&self, index: u64) {
        self.lock().applied = index;
    }

    /// Removes the entries up to and including `index` from the log, keeping
    /// their last index and term. `index` must be applied.
    pub fn compact(&self, index: u64) -> Result<(), crate::store::Error> {
        let mut st = self.lock();
        if index <= st.truncated.0 {
            return Ok(());
        }
        if index > st.applied || index > st.last_index {
            return Err(crate::store::Error::engine(format!(
                "cannot compact the log to {index}: applied {}, last index {}",
                st.applied, st.last_index
            )));
        }
        let term = st
            .term(index)
            .map_err(|e| crate::store::Error::engine(e.to_string()))?;
        let mut wb = WriteBatch::new();
        wb.delete_range(Cf::Log, log_key(st.truncated.0 + 1), log_key(index + 1));
        wb.put(Cf::Meta, KEY_TRUNCATED, encode_u64s(&[index, term]));
        self.engine.write(wb, false)?;
        st.truncated = (index, term);
        st.terms.compact_to(index, term);
        Ok(())
    }
}

/// The cluster id recorded on `engine` (0: none).
pub fn cluster_id_of<E: Engine>(engine: &E) -> Result<u64, crate::store::Error> {
    Ok(read_u64s::<1>(engine, KEY_CLUSTER_ID)?.map_or(0, |[v]| v))
}

/// Records `id` as the cluster id of the replica on `engine` (durably).
pub fn set_cluster_id<E: Engine>(engine: &E, id: u64) -> Result<(), crate::store::Error> {
    let mut wb = WriteBatch::new();
    wb.put(Cf::Meta, KEY_CLUSTER_ID, encode_u64s(&[id]));
    engine.write(wb, true)
}

/// Makes the raft state of a restored replica (`tmc restore`): whatever
/// log and raft records the backup's checkpoint holds (the original
/// shard's, per replica) are dropped, and the state becomes that of a
/// replica that installed a snapshot at `applied` (the store's applied
/// index) in term 1 of a new shard of `voters` with cluster id
/// `cluster_id`. Every member restored from the same backup with the same
/// voters has the same state, so they elect a leader among themselves (in
/// term 2) without a snapshot transfer.
pub fn reset_for_restore<E: Engine>(
    engine: &E,
    voters: &[u64],
    applied: u64,
    cluster_id: u64,
) -> Result<(), crate::store::Error> {
    let mut wb = WriteBatch::new();
    wb.delete_range(Cf::Log, log_key(0).to_vec(), log_key(u64::MAX).to_vec());
    wb.delete(Cf::Log, log_key(u64::MAX).to_vec());
    for key in [KEY_HARD_STATE, KEY_INSTALLING, KEY_INCARNATION] {
        wb.delete(Cf::Meta, key.to_vec());
    }
    let cs = ConfState::from((voters.to_vec(), Vec::<u64>::new()));
    wb.put(Cf::Meta, KEY_CONF_STATE, encode_proto(&cs)?);
    let hs = HardState {
        term: 1,
        commit: applied,
        ..Default::default()
    };
    wb.put(Cf::Meta, KEY_HARD_STATE, encode_proto(&hs)?);
    wb.put(Cf::Meta, KEY_TRUNCATED, encode_u64s(&[applied, 1]));
    wb.put(Cf::Meta, KEY_CLUSTER_ID, encode_u64s(&[cluster_id]));
    engine.write(wb, true)
}

impl<E: Engine> raft::Storage for LogStore<E> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self.lock();
        Ok(RaftState::new(st.hard_state.clone(), st.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let st = self.lock();
        if low <= st.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > st.last_index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        let mut limited = false;
        for item in self
            .engine
            .scan(Cf::Log, &log_key(low), &log_key(high))
            .map_err(other)?
        {
            let (_, raw) = item.map_err(other)?;
            let expected = low + out.len() as u64;
            let entry = decode_entry(expected, &raw).map_err(other)?;
            size += entry.compute_size() as u64;
            if !out.is_empty() && size > max_size {
                limited = true;
                break;
            }
            out.push(entry);
        }
        if !limited && out.len() as u64 != high - low {
            // The scan ended early: an entry is missing on disk.
            let missing = low + out.len() as u64;
            return Err(other(corrupt(
                &log_key(missing),
                "entry missing from the log",
            )));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.lock().term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().truncated.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut st = self.lock();
        let unavailable = Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ));
        if st.applied == 0 || st.applied < request_index {
            return unavailable;
        }
        match self.make_snapshot(&mut st) {
            Ok(snap) => {
                tracing::info!(
                    index = snap.get_metadata().index,
                    to,
                    "raft snapshot produced (a checkpoint)"
                );
                Ok(snap)
            }
            Err(e) => {
                tracing::warn!(error = %e, to, "raft snapshot not available");
                unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::snapshot::{self, Staged};
    use crate::store::{MemoryEngine, RocksEngine, RocksOptions};
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("entry {index}").into_bytes().into(),
            ..Default::default()
        }
    }

    pub(super) fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    pub(super) fn is_compacted(r: raft::Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
    }

    fn is_unavailable(r: raft::Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(raft::Error::Store(StorageError::Unavailable)))
    }

    /// Runs `test` against a memory engine and a RocksDB engine; `reopen`
    /// gives a fresh `LogStore` over the same data.
    pub(super) fn with_engines(test: impl Fn(&dyn Fn() -> Box<dyn LogHandle>)) {
        let mem = MemoryEngine::new();
        test(&|| Box::new(LogStore::open(mem.clone()).unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rocks =
            std::sync::Arc::new(RocksEngine::open(&path, &RocksOptions::default()).unwrap());
        test(&|| Box::new(LogStore::open(rocks.clone()).unwrap()));
    }

    /// Object-safe view of a `LogStore` for the engine-generic tests.
    pub(super) trait LogHandle {
        fn s(&self) -> &dyn StorageDyn;
        fn persist(&self, e: &[Entry], hs: Option<&HardState>) -> Result<(), crate::store::Error>;
        fn compact(&self, i: u64) -> Result<(), crate::store::Error>;
        fn set_applied(&self, i: u64);
        fn install(
            &self,
            s: &Snapshot,
            d: Staged,
            hs: &HardState,
        ) -> Result<(), crate::store::Error>;
        /// Checkpoints this store at `index` and receives it, as a peer would.
        fn stage_own(&self, index: u64) -> Staged;
        /// Writes the install marker of `s` as a crash right after it would
        /// leave it.
        fn crash_after_marker(&self, s: &Snapshot, d: Staged, hs: &HardState);
        /// A `LogStore` reopened over the same engine and snapshot directory.
        fn reopen(&self) -> Box<dyn LogHandle>;
        fn take(&self, s: &Snapshot) -> Option<Arc<Checkpoint>>;
        fn data_engine_put(&self, key: &[u8], value: &[u8]);
        fn data(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
        fn bootstrap(&self, voters: &[u64]);
        /// Applies an empty entry at `index` through a real store.
        fn store_apply_noop(&self, index: u64);
    }

    pub(super) trait StorageDyn {
        fn initial_state(&self) -> raft::Result<RaftState>;
        fn entries(&self, low: u64, high: u64, max: Option<u64>) -> raft::Result<Vec<Entry>>;
        fn term(&self, idx: u64) -> raft::Result<u64>;
        fn first_index(&self) -> raft::Result<u64>;
        fn last_index(&self) -> raft::Result<u64>;
        fn snapshot(&self, req: u64) -> raft::Result<Snapshot>;
    }

    impl<E: Engine> StorageDyn for LogStore<E> {
        fn initial_state(&self) -> raft::Result<RaftState> {
            Storage::initial_state(self)
        }
        fn entries(&self, low: u64, high: u64, max: Option<u64>) -> raft::Result<Vec<Entry>> {
            Storage::entries(self, low, high, max, ctx())
        }
        fn term(&self, idx: u64) -> raft::Result<u64> {
            Storage::term(self, idx)
        }
        fn first_index(&self) -> raft::Result<u64> {
            Storage::first_index(self)
        }
        fn last_index(&self) -> raft::Result<u64> {
            Storage::last_index(self)
        }
        fn snapshot(&self, req: u64) -> raft::Result<Snapshot> {
            Storage::snapshot(self, req, 2)
        }
    }

    impl<E: Engine + Clone> LogHandle for LogStore<E> {
        fn s(&self) -> &dyn StorageDyn {
            self
        }
        fn persist(&self, e: &[Entry], hs: Option<&HardState>) -> Result<(), crate::store::Error> {
            LogStore::persist(self, e, hs, true)
        }
        fn compact(&self, i: u64) -> Result<(), crate::store::Error> {
            LogStore::compact(self, i)
        }
        fn set_applied(&self, i: u64) {
            LogStore::set_applied(self, i)
        }
        fn install(
            &self,
            s: &Snapshot,
            d: Staged,
            hs: &HardState,
        ) -> Result<(), crate::store::Error> {
            self.install_snapshot(s, d, hs)
        }
        fn stage_own(&self, index: u64) -> Staged {
            let cp = Checkpoint::take(&self.engine, self.snapshot_dir(), index).unwrap();
            let mut inc =
                snapshot::Incoming::begin(self.snapshot_dir(), cp.manifest().clone()).unwrap();
            for f in cp.frames(crate::raft::wire::CHUNK_SIZE) {
                inc.push(&f.unwrap()).unwrap();
            }
            inc.finish().unwrap()
        }
        fn crash_after_marker(&self, s: &Snapshot, d: Staged, hs: &HardState) {
            d.sync().unwrap();
            let mut marker = Snapshot::default();
            marker.set_metadata(s.get_metadata().clone());
            marker.data = d.dir().to_string_lossy().into_owned().into_bytes().into();
            let mut wb = WriteBatch::new();
            wb.put(Cf::Meta, KEY_INSTALLING, encode_proto(&marker).unwrap());
            wb.put(Cf::Meta, KEY_HARD_STATE, encode_proto(hs).unwrap());
            self.engine.write(wb, true).unwrap();
            let _ = d.keep();
        }
        fn take(&self, s: &Snapshot) -> Option<Arc<Checkpoint>> {
            self.take_checkpoint(s)
        }
        fn reopen(&self) -> Box<dyn LogHandle> {
            let dir = SnapshotDir::Path(self.snapshot_dir().to_path_buf());
            Box::new(LogStore::open_in(self.engine.clone(), dir).unwrap())
        }
        fn data_engine_put(&self, key: &[u8], value: &[u8]) {
            let mut wb = WriteBatch::new();
            wb.put(Cf::Data, key, value);
            self.engine.write(wb, false).unwrap();
        }
        fn data(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.engine
                .scan(Cf::Data, &[], &[])
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        }
        fn bootstrap(&self, voters: &[u64]) {
            LogStore::bootstrap(self, voters).unwrap()
        }
        fn store_apply_noop(&self, index: u64) {
            let store = crate::store::Store::open(self.engine.clone(), Default::default()).unwrap();
            store.apply_noop(index).unwrap();
        }
    }

    #[test]
    fn empty_storage() {
        with_engines(|open| {
            let log = open();
            let s = log.s();
            assert_eq!(s.first_index().unwrap(), 1);
            assert_eq!(s.last_index().unwrap(), 0);
            assert_eq!(s.term(0).unwrap(), 0);
            assert!(is_unavailable(s.term(1)));
            assert_eq!(s.entries(1, 1, None).unwrap(), vec![]);
            assert!(!s.initial_state().unwrap().initialized());
            // Nothing applied: no snapshot yet, and raft retries.
            assert!(matches!(
                s.snapshot(0),
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            ));
        });
    }

    #[test]
    fn append_read_and_limit_size() {
        with_engines(|open| {
            let log = open();
            log.persist(&entries(1..=5, 1), None).unwrap();
            log.persist(&entries(6..=9, 2), None).unwrap();
            let s = log.s();
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 9));
            assert_eq!(s.term(5).unwrap(), 1);
            assert_eq!(s.term(6).unwrap(), 2);
            assert_eq!(s.term(9).unwrap(), 2);
            assert!(is_unavailable(s.term(10)));
            let got = s.entries(2, 8, None).unwrap();
            assert_eq!(got, [entries(2..=5, 1), entries(6..=7, 2)].concat());
            // max_size: at least one entry, then whole entries within the limit.
            let one = entry(3, 1).compute_size() as u64;
            assert_eq!(s.entries(3, 9, Some(0)).unwrap().len(), 1);
            assert_eq!(s.entries(3, 9, Some(one)).unwrap().len(), 1);
            assert_eq!(s.entries(3, 9, Some(2 * one)).unwrap().len(), 2);
            assert_eq!(s.entries(3, 9, Some(2 * one + 1)).unwrap().len(), 2);
            // Out of range reads are errors, not panics.
            assert!(is_unavailable(s.entries(3, 11, None)));
            // And the log survives a reopen.
            let log = open();
            let s = log.s();
            assert_eq!(s.last_index().unwrap(), 9);
            assert_eq!(s.term(6).unwrap(), 2);
            assert_eq!(s.entries(1, 10, None).unwrap().len(), 9);
        });
    }

    #[test]
    fn append_truncates_a_conflicting_suffix() {
        with_engines(|open| {
            let log = open();
            log.persist(&entries(1..=6, 1), None).unwrap();
            // A new leader overwrites 4..=6 with a shorter suffix of term 3.
            log.persist(&entries(4..=4, 3), None).unwrap();
            let s = log.s();
            assert_eq!(s.last_index().unwrap(), 4);
            assert_eq!(s.term(3).unwrap(), 1);
            assert_eq!(s.term(4).unwrap(), 3);
            assert!(is_unavailable(s.term(5)));
            assert_eq!(
                s.entries(1, 5, None).unwrap(),
                [entries(1..=3, 1), entries(4..=4, 3)].concat()
            );
            // The removed entries are gone from disk too.
            let log = open();
            assert_eq!(log.s().last_index().unwrap(), 4);
            assert_eq!(log.s().term(4).unwrap(), 3);
            // Appending with a gap or below the log start is refused.
            assert!(log.persist(&entries(7..=7, 3), None).is_err());
        });
    }

    #[test]
    fn compaction_keeps_the_term_before_the_first_index() {
        with_engines(|open| {
            let log = open();
            log.persist(&[entries(1..=3, 1), entries(4..=8, 2)].concat(), None)
                .unwrap();
            // Compaction is refused past the applied index.
            assert!(log.compact(5).is_err());
            log.set_applied(8);
            log.compact(5).unwrap();
            for log in [log, open()] {
                let s = log.s();
                assert_eq!(s.first_index().unwrap(), 6);
                assert_eq!(s.last_index().unwrap(), 8);
                assert_eq!(s.term(5).unwrap(), 2, "term of first_index - 1 is kept");
                assert!(is_compacted(s.term(4)));
                assert!(is_compacted(s.entries(5, 7, None)));
                assert_eq!(s.entries(6, 9, None).unwrap(), entries(6..=8, 2));
            }
            // Compacting everything leaves an empty log that still knows the
            // last term.
            let log = open();
            log.set_applied(8);
            log.compact(8).unwrap();
            log.persist(&entries(9..=9, 3), None).unwrap();
            let log = open();
            let s = log.s();
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (9, 9));
            assert_eq!(s.term(8).unwrap(), 2);
            assert_eq!(s.term(9).unwrap(), 3);
        });
    }

    #[test]
    fn hard_and_conf_state_survive_reopen() {
        with_engines(|open| {
            let log = open();
            log.bootstrap(&[1, 2, 3]);
            let hs = HardState {
                term: 4,
                vote: 2,
                ..Default::default()
            };
            log.persist(&[], Some(&hs)).unwrap();
            let st = open().s().initial_state().unwrap();
            assert_eq!(st.hard_state, hs);
            assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
            assert!(st.initialized());
        });
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_panic() {
        let mem = MemoryEngine::new();
        let log = LogStore::open(mem.clone()).unwrap();
        log.persist(&entries(1..=3, 1), None, true).unwrap();
        let mut raw = mem.get(Cf::Log, &log_key(2)).unwrap().unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x40;
        let mut wb = WriteBatch::new();
        wb.put(Cf::Log, log_key(2).to_vec(), raw);
        mem.write(wb, false).unwrap();
        let err = Storage::entries(&log, 1, 4, None, ctx()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // Reopening reports it too.
        let err = LogStore::open(mem)
            .err()
            .expect("damaged log must not open");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn term_runs() {
        let mut r = TermRuns::new((0, 0));
        for (i, t) in [(1, 1), (2, 1), (3, 2), (4, 3), (5, 3)] {
            r.push(i, t);
        }
        assert_eq!(r.0, vec![(0, 0), (1, 1), (3, 2), (4, 3)]);
        assert_eq!(r.term(2), Some(1));
        assert_eq!(r.term(5), Some(3));
        r.truncate_from(4);
        assert_eq!(r.0, vec![(0, 0), (1, 1), (3, 2)]);
        r.compact_to(3, 2);
        assert_eq!(r.0, vec![(3, 2)]);
        r.push(4, 2);
        assert_eq!(r.term(4), Some(2));
    }
}
