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

use super::snapshot::{self, Checkpoint, Staged};
use crate::store::{codec, Cf, Encoding, Engine, WriteBatch};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Meta keys of the raft layer all start with this prefix; the snapshot
/// leaves them out (they are per replica).
pub const RAFT_META_PREFIX: &[u8] = b"raft_";
const KEY_HARD_STATE: &[u8] = b"raft_hard_state";
const KEY_CONF_STATE: &[u8] = b"raft_conf_state";
const KEY_TRUNCATED: &[u8] = b"raft_truncated";
const KEY_INCARNATION: &[u8] = b"raft_incarnation";
const KEY_INSTALLING: &[u8] = b"raft_installing";

/// The key of the log entry at `index`.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> crate::store::Error {
    crate::store::Error::Corrupt {
        cf: Cf::Log.name(),
        key: crate::store::error::printable_key(key),
        reason: reason.into(),
    }
}

fn encode_entry(e: &Entry) -> Result<Vec<u8>, crate::store::Error> {
    let body = e.write_to_bytes().map_err(|err| {
        crate::store::Error::engine(format!("encoding raft entry {}: {err}", e.index))
    })?;
    Ok(codec::encode(Encoding::Raw, e.term, e.index, &body))
}

/// Decodes the log value stored at `index`, checking that it is that entry.
fn decode_entry(index: u64, raw: &[u8]) -> Result<Entry, crate::store::Error> {
    let key = log_key(index);
    let env = codec::decode(Cf::Log.name(), &key, raw)?;
    let entry = Entry::parse_from_bytes(&env.body)
        .map_err(|e| corrupt(&key, format!("undecodable entry: {e}")))?;
    if entry.index != index || env.mod_revision != index || entry.term != env.create_revision {
        return Err(corrupt(
            &key,
            format!(
                "entry says index {} term {}, envelope index {} term {}",
                entry.index, entry.term, env.mod_revision, env.create_revision
            ),
        ));
    }
    Ok(entry)
}

/// Reads a protobuf value from the meta column family.
fn read_proto<M: protobuf::Message>(
    engine: &impl Engine,
    key: &[u8],
) -> Result<Option<M>, crate::store::Error> {
    let Some(raw) = engine.get(Cf::Meta, key)? else {
        return Ok(None);
    };
    let env = codec::decode(Cf::Meta.name(), key, &raw)?;
    M::parse_from_bytes(&env.body)
        .map(Some)
        .map_err(|e| crate::store::Error::Corrupt {
            cf: Cf::Meta.name(),
            key: crate::store::error::printable_key(key),
            reason: format!("undecodable protobuf: {e}"),
        })
}

fn encode_proto(m: &impl protobuf::Message) -> Result<Vec<u8>, crate::store::Error> {
    let body = m
        .write_to_bytes()
        .map_err(|e| crate::store::Error::engine(format!("encoding raft state: {e}")))?;
    Ok(codec::encode(Encoding::Raw, 0, 0, &body))
}

fn read_u64s<const N: usize>(
    engine: &impl Engine,
    key: &[u8],
) -> Result<Option<[u64; N]>, crate::store::Error> {
    let Some(raw) = engine.get(Cf::Meta, key)? else {
        return Ok(None);
    };
    let env = codec::decode(Cf::Meta.name(), key, &raw)?;
    if env.body.len() != N * 8 {
        return Err(crate::store::Error::Corrupt {
            cf: Cf::Meta.name(),
            key: crate::store::error::printable_key(key),
            reason: format!("expected {} bytes, found {}", N * 8, env.body.len()),
        });
    }
    let mut out = [0u64; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u64::from_be_bytes(env.body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    }
    Ok(Some(out))
}

fn encode_u64s(values: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    codec::encode(Encoding::Raw, 0, 0, &body)
}

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
        })
    }

    /// The directory of snapshot checkpoints and transfers.
    pub fn snapshot_dir(&self) -> &Path {
        self.snapshots.path()
    }

    /// The checkpoint behind a `Snapshot` that [`raft::Storage::snapshot`]
    /// produced, for the transport to stream; each is taken once.
    pub fn take_checkpoint(&self, snapshot: &Snapshot) -> Option<Arc<Checkpoint>> {
        let id = snapshot::Manifest::decode(&snapshot.data).ok()?.id;
        self.lock().outgoing.remove(&id).map(|(_, cp)| cp)
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
        self.engine.write(wb, sync)?;
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

    fn make_snapshot(&self, st: &mut LogState) -> Result<Snapshot, crate::store::Error> {
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
fn complete_install<E: Engine>(engine: &E, marker: &Snapshot) -> Result<(), crate::store::Error> {
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

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    fn is_compacted(r: raft::Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
    }

    fn is_unavailable(r: raft::Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(raft::Error::Store(StorageError::Unavailable)))
    }

    /// Runs `test` against a memory engine and a RocksDB engine; `reopen`
    /// gives a fresh `LogStore` over the same data.
    fn with_engines(test: impl Fn(&dyn Fn() -> Box<dyn LogHandle>)) {
        let mem = MemoryEngine::new();
        test(&|| Box::new(LogStore::open(mem.clone()).unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rocks =
            std::sync::Arc::new(RocksEngine::open(&path, &RocksOptions::default()).unwrap());
        test(&|| Box::new(LogStore::open(rocks.clone()).unwrap()));
    }

    /// Object-safe view of a `LogStore` for the engine-generic tests.
    trait LogHandle {
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

    trait StorageDyn {
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
