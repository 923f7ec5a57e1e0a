//! The store: revisions, transactions, consistent paginated lists and the
//! change log, on top of any [`Engine`].
//!
//! # Protocol
//!
//! - Every committed transaction gets the next **revision** (the previous
//!   one plus one). Under raft, one log entry carries a group of
//!   transactions ([`Store::apply_entry`]): they get consecutive revisions
//!   and are written, with the entry's index as applied index, in one atomic
//!   write batch. Every replica applies the same entries in the same order,
//!   so revisions agree across replicas.
//! - A transaction is a list of puts, deletes and checks, each with an
//!   [`Expectation`] on the key's current mod revision (compare-and-swap on
//!   `resourceVersion`). If any fails, nothing is written and the error
//!   names the key; under raft the applied index still advances.
//! - Each change is also written to the `changes` column family, keyed by
//!   (revision, sequence), with the new and the previous value. That log
//!   serves watches ([`Store::changes_since`]) and consistent lists at an
//!   older revision; it keeps a bounded window of revisions and a request
//!   for an older one gets [`Error::Compacted`] (Kubernetes' 410 Gone).
//! - A list page is consistent at one revision R: the data range is scanned
//!   live, and every key changed after R is replaced by its value at R,
//!   taken from the first change after R in the log (its `prev`). The
//!   continue token carries R and the next key, so all pages of one list
//!   show the same revision, as with etcd.
//! - **Replacing the whole state** (a raft snapshot installed on a
//!   follower) never shows readers a mix of the old state and the new
//!   one. The installer opens the new state on its own engine (the
//!   snapshot's checkpoint) and hands it to [`Store::begin_replace`]: from
//!   then on every read (gets, lists, the change log, the revision) is
//!   served from it, while the live engine is rewritten underneath. A read
//!   already running on the live engine finishes first (readers of the
//!   live engine hold a read lock for the length of one call, the switch
//!   takes it for writing). [`Store::finish_replace`] switches readers back
//!   to the live engine once it holds the same state. So a reader sees the
//!   old state, then the new one, never a half-copied one; a watcher
//!   behind the new change log's window gets [`Error::Compacted`].
//!
//! # Implementation caveats
//!
//! - A list at a revision older than the current one reads the change log
//!   from that revision on; its cost grows with the writes since, bounded by
//!   the retention window.
//! - Writers are serialized by one mutex: under raft there is exactly one
//!   writer (the apply loop) anyway.
//!
//! This file holds the store itself (opening, applying transactions,
//! replacing the state, reads of one key); beside it are the types of a
//! transaction ([`super::txn`]), the change log ([`super::changes`]) and
//! paged lists ([`super::list`]).

use super::changes::{change_key, ChangeKind};
use super::codec::{self, Encoding};
use super::engine::{Cf, Engine, WriteBatch};
use super::error::{printable_key, Error, Expectation, Found, Result};
use super::keys::Key;
use super::txn::{Committed, OpResult, Record, Txn, TxnOp};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

const META_REVISION: &[u8] = b"revision";
const META_APPLIED: &[u8] = b"applied_index";
const META_COMPACTED: &[u8] = b"compacted_revision";
/// The revisions skipped by [`TxnOp::Advance`] inside the change log's
/// window: `(revision of the advancing transaction, revisions skipped)`.
const META_GAPS: &[u8] = b"revision_gaps";

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Fsync the write-ahead log on every commit.
    pub sync: bool,
    /// How many revisions of history the change log keeps.
    pub changes_retention: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: true,
            changes_retention: 100_000,
        }
    }
}

fn read_meta<E: Engine>(engine: &E) -> Result<Meta> {
    let read = |k: &[u8]| -> Result<u64> {
        match engine.get(Cf::Meta, k)? {
            None => Ok(0),
            Some(raw) => {
                let e = codec::decode(Cf::Meta.name(), k, &raw)?;
                let bytes: [u8; 8] = e.body.as_slice().try_into().map_err(|_| Error::Corrupt {
                    cf: Cf::Meta.name(),
                    key: printable_key(k),
                    reason: format!("expected 8 bytes, found {}", e.body.len()),
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    };
    let gaps = match engine.get(Cf::Meta, META_GAPS)? {
        None => Vec::new(),
        Some(raw) => {
            let e = codec::decode(Cf::Meta.name(), META_GAPS, &raw)?;
            if e.body.len() % 16 != 0 {
                return Err(Error::Corrupt {
                    cf: Cf::Meta.name(),
                    key: printable_key(META_GAPS),
                    reason: format!("{} bytes, not pairs of u64", e.body.len()),
                });
            }
            e.body
                .chunks_exact(16)
                .map(|c| {
                    let (a, b) = c.split_at(8);
                    let n = |x: &[u8]| u64::from_be_bytes(x.try_into().unwrap_or([0; 8]));
                    (n(a), n(b))
                })
                .collect()
        }
    };
    Ok(Meta {
        revision: read(META_REVISION)?,
        applied_index: read(META_APPLIED)?,
        compacted: read(META_COMPACTED)?,
        gaps,
    })
}

fn encode_gaps(gaps: &[(u64, u64)]) -> Vec<u8> {
    let body: Vec<u8> = gaps
        .iter()
        .flat_map(|(at, n)| at.to_be_bytes().into_iter().chain(n.to_be_bytes()))
        .collect();
    codec::encode(Encoding::Raw, 0, 0, &body)
}

/// Revision bookkeeping, guarded by the writer mutex.
#[derive(Debug, Clone, Default)]
struct Meta {
    revision: u64,
    applied_index: u64,
    compacted: u64,
    /// Revision gaps after `compacted` (see [`META_GAPS`]), oldest first.
    gaps: Vec<(u64, u64)>,
}

/// Revisions that hold changes in `(compacted, revision]`, given the
/// gaps after `compacted`.
fn window(compacted: u64, gaps: &[(u64, u64)], revision: u64) -> u64 {
    let skipped: u64 = gaps.iter().map(|g| g.1).sum();
    revision.saturating_sub(compacted).saturating_sub(skipped)
}

/// The compacted revision that keeps `keep` revisions with changes before
/// `revision`: skipped revisions (`gaps`) do not count.
fn compact_to(compacted: u64, gaps: &[(u64, u64)], revision: u64, keep: u64) -> u64 {
    let mut r = revision.saturating_sub(keep);
    for (at, n) in gaps.iter().rev() {
        if *at > r {
            r = r.saturating_sub(*n);
        }
    }
    r.max(compacted)
}

/// The store over an engine.
pub struct Store<E: Engine> {
    engine: E,
    opts: StoreOptions,
    /// Writers hold this lock; readers use the atomics below.
    meta: Mutex<Meta>,
    /// The revision readers see: `meta.revision` (updated after each
    /// write lands), or the replacement's while one is served.
    revision: AtomicU64,
    /// Mirror of `meta.applied_index`.
    applied: AtomicU64,
    /// The compacted revision readers see (as `revision`).
    compacted: AtomicU64,
    /// Wakes watchers with the latest revision.
    notify: tokio::sync::watch::Sender<u64>,
    /// While the state is being replaced, the new state on its own engine,
    /// which serves every read ([`Store::begin_replace`]). Readers of the
    /// live engine hold the read lock for the length of one call.
    replacing: RwLock<Option<Arc<Replacement<E>>>>,
}

/// The new state while it is copied into the live engine.
struct Replacement<E: Engine> {
    /// Dropped before `done` (declaration order), so the engine is closed
    /// when `done` runs its clean-up.
    engine: E,
    meta: Meta,
    done: OnClose,
}

/// Runs a clean-up once the replacement engine is closed, if the live
/// engine took its state over ([`Store::finish_replace`]); an install that
/// did not finish keeps its files for the restart that finishes it.
struct OnClose {
    finished: std::sync::atomic::AtomicBool,
    run: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Drop for OnClose {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Acquire) {
            let run = self.run.get_mut().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(run) = run {
                run();
            }
        }
    }
}

/// What one read call reads: the live engine (holding the read lock, so
/// that a replacement waits for it) or the replacement.
pub(super) struct Reader<'a, E: Engine> {
    store: &'a Store<E>,
    replacement: Option<Arc<Replacement<E>>>,
    _live: Option<RwLockReadGuard<'a, Option<Arc<Replacement<E>>>>>,
}

impl<E: Engine> Reader<'_, E> {
    pub(super) fn engine(&self) -> &E {
        match &self.replacement {
            Some(r) => &r.engine,
            None => &self.store.engine,
        }
    }

    pub(super) fn revision(&self) -> u64 {
        match &self.replacement {
            Some(r) => r.meta.revision,
            None => self.store.revision.load(Ordering::Acquire),
        }
    }

    pub(super) fn compacted(&self) -> u64 {
        match &self.replacement {
            Some(r) => r.meta.compacted,
            None => self.store.compacted.load(Ordering::Acquire),
        }
    }
}

fn encode_u64(v: u64) -> Vec<u8> {
    codec::encode(Encoding::Raw, 0, 0, &v.to_be_bytes())
}

impl<E: Engine> Store<E> {
    /// Opens a store on an engine, reading its revision bookkeeping.
    pub fn open(engine: E, opts: StoreOptions) -> Result<Self> {
        let meta = read_meta(&engine)?;
        let (notify, _) = tokio::sync::watch::channel(meta.revision);
        Ok(Store {
            engine,
            opts,
            revision: AtomicU64::new(meta.revision),
            applied: AtomicU64::new(meta.applied_index),
            compacted: AtomicU64::new(meta.compacted),
            meta: Mutex::new(meta),
            notify,
            replacing: RwLock::new(None),
        })
    }

    /// Re-reads the revision bookkeeping after the engine's contents were
    /// replaced underneath the store (a raft snapshot was installed), and
    /// serves reads from the live engine again: [`Store::finish_replace`].
    pub fn reload(&self) -> Result<()> {
        self.finish_replace()
    }

    /// Serves every read from `replacement` from now on: an engine that
    /// holds, complete, the state the live engine is about to be rewritten
    /// to (a raft snapshot's checkpoint, opened). Waits for the reads of
    /// the live engine under way. Subscribers are told its revision.
    /// `on_close` runs once the replacement engine is closed after
    /// [`Store::finish_replace`] (never if the replacement is dropped
    /// unfinished: a crash recovery may still need its files).
    ///
    /// Nothing may be applied until [`Store::finish_replace`].
    pub fn begin_replace(&self, replacement: E, on_close: Box<dyn FnOnce() + Send>) -> Result<()> {
        let meta = read_meta(&replacement)?;
        let (revision, compacted) = (meta.revision, meta.compacted);
        let r = Arc::new(Replacement {
            engine: replacement,
            meta,
            done: OnClose {
                finished: std::sync::atomic::AtomicBool::new(false),
                run: Mutex::new(Some(on_close)),
            },
        });
        let mut slot = self.replacing.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(r);
        self.revision.store(revision, Ordering::Release);
        self.compacted.store(compacted, Ordering::Release);
        drop(slot);
        self.notify.send_replace(revision);
        Ok(())
    }

    /// The live engine now holds the state: re-reads its revision
    /// bookkeeping and serves reads from it again. The replacement (if
    /// any) closes when the last read on it ends. Subscribers keep their
    /// receivers and are told the revision.
    pub fn finish_replace(&self) -> Result<()> {
        let mut meta = self.lock();
        let fresh = read_meta(&self.engine)?;
        *meta = fresh.clone();
        let mut slot = self.replacing.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.take() {
            r.done.finished.store(true, Ordering::Release);
        }
        self.revision.store(fresh.revision, Ordering::Release);
        self.applied.store(fresh.applied_index, Ordering::Release);
        self.compacted.store(fresh.compacted, Ordering::Release);
        drop(slot);
        self.notify.send_replace(fresh.revision);
        Ok(())
    }

    /// True while a replacement serves the reads.
    pub fn replacing(&self) -> bool {
        self.replacing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub(super) fn reader(&self) -> Reader<'_, E> {
        let guard = self.replacing.read().unwrap_or_else(|p| p.into_inner());
        match guard.clone() {
            Some(r) => Reader {
                store: self,
                replacement: Some(r),
                _live: None,
            },
            None => Reader {
                store: self,
                replacement: None,
                _live: Some(guard),
            },
        }
    }

    /// The engine underneath (for raft log storage and checkpoints).
    pub fn engine(&self) -> &E {
        &self.engine
    }

    fn lock(&self) -> MutexGuard<'_, Meta> {
        // A panic while holding the lock cannot leave the meta half-updated:
        // it is only assigned after a successful write.
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prepares a restored store (`tmc restore`): moves the revision
    /// `bump` ahead (so that no revision the original shard handed out
    /// after the backup is handed out again with other contents) and, with
    /// `mark_compacted`, drops the change log and marks everything up to
    /// the new revision compacted, so that a client watching or listing
    /// from a resourceVersion of before gets 410 Gone and relists, as
    /// etcd's `--bump-revision --mark-compacted` does. Objects keep their
    /// resourceVersions. Returns the new revision. Call before anything
    /// else uses the store.
    pub fn bump_for_restore(&self, bump: u64, mark_compacted: bool) -> Result<u64> {
        let mut meta = self.lock();
        let revision = meta.revision.checked_add(bump).ok_or_else(|| {
            Error::engine(format!("revision {} + {bump} overflows", meta.revision))
        })?;
        let mut wb = WriteBatch::new();
        wb.put(Cf::Meta, META_REVISION, encode_u64(revision));
        let mut compacted = meta.compacted;
        if mark_compacted {
            compacted = revision;
            wb.delete_range(
                Cf::Changes,
                change_key(0, 0).to_vec(),
                change_key(u64::MAX, u32::MAX).to_vec(),
            );
            wb.put(Cf::Meta, META_COMPACTED, encode_u64(compacted));
        }
        self.engine.write(wb, true)?;
        meta.revision = revision;
        meta.compacted = compacted;
        self.revision.store(revision, Ordering::Release);
        self.compacted.store(compacted, Ordering::Release);
        Ok(revision)
    }

    /// The revision of the last committed transaction.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The raft index last applied.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The newest revision no longer in the change log: watches and lists
    /// must start after it.
    pub fn compacted_revision(&self) -> u64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// A receiver that sees the revision after each commit.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Reads one key.
    pub fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.get_raw(&key.encode())
    }

    /// Reads one encoded key.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Record>> {
        get_in(self.reader().engine(), key)
    }

    /// Commits one transaction (standalone use): the next applied index,
    /// the next revision.
    pub fn commit(&self, txn: Txn) -> Result<Committed> {
        let mut meta = self.lock();
        let index = meta.applied_index + 1;
        let mut results = self.apply_locked(&mut meta, index, vec![txn])?;
        results.pop().expect("one result per transaction")
    }

    /// Applies the transactions of the raft entry at `index`, in order, in
    /// one atomic write together with the applied index. Each successful
    /// transaction gets the next revision; a failed precondition fails that
    /// transaction alone (deterministically, on every replica).
    ///
    /// The outer error is not deterministic (I/O): the caller must stop
    /// applying rather than let its replica diverge.
    pub fn apply_entry(&self, index: u64, txns: Vec<Txn>) -> Result<Vec<Result<Committed>>> {
        let mut meta = self.lock();
        self.apply_locked(&mut meta, index, txns)
    }

    /// [`Store::apply_entry`] for an entry of one transaction.
    pub fn apply(&self, index: u64, txn: Txn) -> Result<Committed> {
        let mut meta = self.lock();
        let mut results = self.apply_locked(&mut meta, index, vec![txn])?;
        results.pop().expect("one result per transaction")
    }

    /// Records `index` as applied without changing data (raft entries that
    /// carry no transaction: empty entries, configuration changes).
    pub fn apply_noop(&self, index: u64) -> Result<()> {
        let mut meta = self.lock();
        self.apply_locked(&mut meta, index, vec![]).map(|_| ())
    }

    fn apply_locked(
        &self,
        meta: &mut Meta,
        index: u64,
        txns: Vec<Txn>,
    ) -> Result<Vec<Result<Committed>>> {
        if self.replacing() {
            return Err(Error::engine(format!(
                "cannot apply index {index} while the state is being replaced"
            )));
        }
        if index <= meta.applied_index {
            return Err(Error::StaleRevision {
                given: index,
                current: meta.applied_index,
            });
        }
        let mut wb = WriteBatch::new();
        wb.put(Cf::Meta, META_APPLIED, encode_u64(index));
        // Values as written by earlier transactions of this entry.
        let mut pending: BTreeMap<Vec<u8>, Option<Record>> = BTreeMap::new();
        let mut revision = meta.revision;
        let mut outcomes = Vec::with_capacity(txns.len());
        let mut skipped = Vec::new();
        for txn in txns {
            match self.stage(&mut wb, &mut pending, revision + 1, txn)? {
                Ok(c) => {
                    if c.revision > revision + 1 {
                        skipped.push((c.revision, c.revision - revision - 1));
                    }
                    revision = c.revision;
                    outcomes.push(Ok(c));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        let mut compacted = meta.compacted;
        let mut gaps = meta.gaps.clone();
        if revision > meta.revision {
            wb.put(Cf::Meta, META_REVISION, encode_u64(revision));
            gaps.extend(skipped);
            // Trim the change log in steps, so that the range delete is rare
            // (counting revisions that hold changes: an advance is no reason
            // to trim).
            let step = (self.opts.changes_retention / 8).max(1);
            if window(meta.compacted, &gaps, revision) > self.opts.changes_retention + step {
                compacted =
                    compact_to(meta.compacted, &gaps, revision, self.opts.changes_retention);
                wb.delete_range(
                    Cf::Changes,
                    change_key(0, 0).to_vec(),
                    change_key(compacted + 1, 0).to_vec(),
                );
                wb.put(Cf::Meta, META_COMPACTED, encode_u64(compacted));
                gaps.retain(|(at, _)| *at > compacted);
            }
            if gaps != meta.gaps {
                wb.put(Cf::Meta, META_GAPS, encode_gaps(&gaps));
            }
        }
        // Readers learn of a compaction before its records disappear, so a
        // reader never misses changes silently (see `changes_since`).
        self.compacted.store(compacted, Ordering::Release);
        self.engine.write(wb, self.opts.sync)?;
        meta.applied_index = index;
        meta.compacted = compacted;
        meta.gaps = gaps;
        self.applied.store(index, Ordering::Release);
        if revision > meta.revision {
            meta.revision = revision;
            self.revision.store(revision, Ordering::Release);
            self.notify.send_replace(revision);
        }
        Ok(outcomes)
    }

    /// Checks one transaction's preconditions and stages its writes into
    /// `wb` at `revision`. The outer error is an engine failure; the inner
    /// one a failed precondition (nothing staged).
    fn stage(
        &self,
        wb: &mut WriteBatch,
        pending: &mut BTreeMap<Vec<u8>, Option<Record>>,
        revision: u64,
        txn: Txn,
    ) -> Result<Result<Committed>> {
        // An advance moves the transaction's revision ahead.
        let revision = txn
            .ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Advance { at_least } => Some(*at_least),
                _ => None,
            })
            .fold(revision, u64::max);
        // Read current values and check every precondition first.
        let mut current: BTreeMap<Vec<u8>, Option<Record>> = BTreeMap::new();
        for op in &txn.ops {
            let Some(k) = op.key().map(Key::encode) else {
                continue;
            };
            if !current.contains_key(&k) {
                let rec = match pending.get(&k) {
                    Some(r) => r.clone(),
                    None => get_in(&self.engine, &k)?,
                };
                current.insert(k.clone(), rec);
            }
            let found = match &current[&k] {
                None => Found::Absent,
                Some(r) => Found::ModRevision(r.mod_revision),
            };
            let ok = match (op.expect(), found) {
                (Expectation::Any, _) => true,
                (Expectation::Absent, Found::Absent) => true,
                (Expectation::Present, Found::ModRevision(_)) => true,
                (Expectation::ModRevision(want), Found::ModRevision(have)) => want == have,
                _ => false,
            };
            if !ok {
                return Ok(Err(Error::Conflict {
                    key: printable_key(&k),
                    expected: op.expect(),
                    found,
                }));
            }
        }
        let mut results = Vec::with_capacity(txn.ops.len());
        let mut seq = 0u32;
        for op in txn.ops {
            let Some(k) = op.key().map(Key::encode) else {
                results.push(OpResult::Checked);
                continue;
            };
            let prev = current.get(&k).cloned().flatten();
            match op {
                TxnOp::Put {
                    encoding, value, ..
                } => {
                    let create = prev.as_ref().map_or(revision, |p| p.create_revision);
                    let raw = codec::encode(encoding.into(), create, revision, &value);
                    let prev_raw = prev.as_ref().map(|p| {
                        codec::encode(p.encoding, p.create_revision, p.mod_revision, &p.value)
                    });
                    self.push_change(
                        wb,
                        revision,
                        &mut seq,
                        &k,
                        ChangeKind::Put,
                        Some(&raw),
                        prev_raw.as_deref(),
                    );
                    wb.put(Cf::Data, k.clone(), raw);
                    let record = Record {
                        key: k.clone(),
                        encoding: encoding.into(),
                        create_revision: create,
                        mod_revision: revision,
                        value,
                        stale: false,
                    };
                    current.insert(k, Some(record.clone()));
                    results.push(OpResult::Put { record, prev });
                }
                TxnOp::Delete { .. } => {
                    if let Some(p) = &prev {
                        let prev_raw =
                            codec::encode(p.encoding, p.create_revision, p.mod_revision, &p.value);
                        self.push_change(
                            wb,
                            revision,
                            &mut seq,
                            &k,
                            ChangeKind::Delete,
                            None,
                            Some(&prev_raw),
                        );
                        wb.delete(Cf::Data, k.clone());
                        current.insert(k, None);
                    }
                    results.push(OpResult::Deleted(prev));
                }
                TxnOp::Check { .. } | TxnOp::Advance { .. } => results.push(OpResult::Checked),
            }
        }
        pending.extend(current);
        Ok(Ok(Committed { revision, results }))
    }

    /// Writes a consistent checkpoint of the whole store into `dir`.
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        self.engine.checkpoint(dir)
    }
}

/// Reads one encoded key of `engine`'s data.
fn get_in<E: Engine>(engine: &E, key: &[u8]) -> Result<Option<Record>> {
    match engine.get(Cf::Data, key)? {
        None => Ok(None),
        Some(raw) => Record::decode(Cf::Data, key.to_vec(), &raw).map(Some),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::engine::MemoryEngine;
    use crate::store::keys::{GroupResource, ObjectKey};
    use crate::store::names::Workspace;
    use crate::store::{ListOptions, Prefix};

    pub(in crate::store) fn key(name: &str) -> Key {
        let gr = GroupResource::new("", "configmaps").unwrap();
        ObjectKey::namespaced(gr, Workspace::parse("root").unwrap(), "ns", name)
            .unwrap()
            .into()
    }

    pub(in crate::store) fn put(store: &Store<MemoryEngine>, name: &str, v: &str) -> u64 {
        store
            .commit(Txn::new(vec![TxnOp::put_json(
                key(name),
                format!("{{\"v\":\"{v}\"}}").into_bytes(),
                Expectation::Any,
            )]))
            .unwrap()
            .revision
    }

    pub(in crate::store) fn opts(retention: u64) -> StoreOptions {
        StoreOptions {
            sync: false,
            changes_retention: retention,
        }
    }

    pub(in crate::store) fn prefix() -> Prefix {
        Prefix::namespace(
            &GroupResource::new("", "configmaps").unwrap(),
            &Workspace::parse("root").unwrap(),
            "ns",
        )
        .unwrap()
    }

    fn names(store: &Store<MemoryEngine>) -> Vec<String> {
        store
            .list(&prefix(), &ListOptions::default())
            .unwrap()
            .items
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }

    /// While a replacement serves reads, the live engine can be in any
    /// state: readers see the replacement whole, then the live engine
    /// again; the clean-up runs once, only after a finished replacement.
    #[test]
    fn a_replacement_serves_every_read_until_finished() {
        let live = MemoryEngine::new();
        let store = Store::open(live.clone(), opts(1_000)).unwrap();
        put(&store, "a", "old");
        let old_rev = store.revision();
        // The new state: further along, its change log compacted past the
        // old revision.
        let next = MemoryEngine::new();
        let other = Store::open(next.clone(), opts(4)).unwrap();
        for i in 0..20 {
            put(&other, "a", &format!("new{i}"));
        }
        put(&other, "b", "new");
        let (new_rev, new_compacted) = (other.revision(), other.compacted_revision());
        assert!(new_compacted > old_rev);
        let mut rx = store.subscribe();
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = closed.clone();
        store
            .begin_replace(
                next.clone(),
                Box::new(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        assert!(store.replacing());
        assert_eq!(*rx.borrow_and_update(), new_rev);
        // The live engine half rewritten: readers do not see it.
        let mut wb = WriteBatch::new();
        wb.delete_range(Cf::Data, Vec::new(), vec![0xff]);
        live.write(wb, false).unwrap();
        assert_eq!(store.revision(), new_rev);
        assert_eq!(store.compacted_revision(), new_compacted);
        assert_eq!(names(&store), vec!["{\"v\":\"new19\"}", "{\"v\":\"new\"}"]);
        assert!(store.get(&key("b")).unwrap().is_some());
        // A watcher at the old revision is behind the new change log.
        assert!(matches!(
            store.changes_since(old_rev, 0),
            Err(Error::Compacted { .. })
        ));
        assert!(!store.changes_since(new_compacted, 0).unwrap().is_empty());
        // Nothing applies meanwhile.
        assert!(store.apply_noop(store.applied_index() + 1).is_err());
        // The live engine takes the state over; reads go back to it.
        for cf in [Cf::Data, Cf::Changes, Cf::Meta] {
            let mut wb = WriteBatch::new();
            for item in next.scan(cf, &[], &[]).unwrap() {
                let (k, v) = item.unwrap();
                wb.put(cf, k, v);
            }
            live.write(wb, false).unwrap();
        }
        let reading = store.reader();
        store.finish_replace().unwrap();
        assert!(!store.replacing());
        // A read that began on the replacement keeps it open...
        assert_eq!(closed.load(Ordering::SeqCst), 0);
        assert_eq!(reading.revision(), new_rev);
        drop(reading);
        // ...and it closes with the last one.
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert_eq!(store.revision(), new_rev);
        assert_eq!(names(&store), vec!["{\"v\":\"new19\"}", "{\"v\":\"new\"}"]);
        assert_eq!(put(&store, "c", "after"), new_rev + 1);

        // A replacement that never finished keeps its files (a restart
        // finishes the install from them).
        let store = Store::open(MemoryEngine::new(), opts(1_000)).unwrap();
        let c = closed.clone();
        store
            .begin_replace(
                MemoryEngine::new(),
                Box::new(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        drop(store);
        assert_eq!(closed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_restore_bump_moves_the_revision_and_compacts_the_history() {
        let engine = MemoryEngine::new();
        let store = Store::open(engine.clone(), opts(1000)).unwrap();
        let first = put(&store, "a", "1");
        let old = put(&store, "b", "2");
        assert!(store.changes_since(first, 0).unwrap().len() == 1);
        let rev = store.bump_for_restore(1_000, true).unwrap();
        assert_eq!(rev, old + 1_000);
        assert_eq!(store.compacted_revision(), rev);
        assert!(matches!(
            store.changes_since(first, 0),
            Err(Error::Compacted { .. })
        ));
        // The objects keep their resourceVersions; new writes come after.
        assert_eq!(store.get(&key("b")).unwrap().unwrap().mod_revision, old);
        assert_eq!(put(&store, "c", "3"), rev + 1);
        // Durable: a reopen sees the same.
        drop(store);
        let store = Store::open(engine, opts(1000)).unwrap();
        assert_eq!(store.revision(), rev + 1);
        assert_eq!(store.compacted_revision(), rev);
        // Without marking, the history stays readable.
        let s2 = Store::open(MemoryEngine::new(), opts(1000)).unwrap();
        let r1 = put(&s2, "a", "1");
        put(&s2, "a", "2");
        s2.bump_for_restore(10, false).unwrap();
        assert_eq!(s2.changes_since(r1, 0).unwrap().len(), 1);
    }

    #[test]
    fn an_advance_skips_revisions_without_trimming_the_change_log() {
        let engine = MemoryEngine::new();
        let store = Store::open(engine.clone(), opts(16)).unwrap();
        let first = put(&store, "a", "0");
        let c = store
            .commit(Txn::new(vec![
                TxnOp::put_json(key("m"), b"{}".to_vec(), Expectation::Any),
                TxnOp::Advance {
                    at_least: first + 1_000,
                },
            ]))
            .unwrap();
        assert_eq!(c.revision, first + 1_000);
        assert_eq!(c.results[1], OpResult::Checked);
        // A thousand skipped revisions are no reason to trim: every change
        // since the first is still there.
        for i in 0..10 {
            put(&store, "a", &i.to_string());
        }
        assert_eq!(store.compacted_revision(), 0);
        assert_eq!(store.changes_since(first, 0).unwrap().len(), 11);
        // An advance to the past changes nothing.
        let rev = store.revision();
        let c = store
            .commit(Txn::new(vec![TxnOp::Advance { at_least: 5 }]))
            .unwrap();
        assert_eq!(c.revision, rev + 1);
        // Durable, and trimming counts changes again once the window fills:
        // it keeps the last 16 revisions that hold changes.
        drop(store);
        let store = Store::open(engine, opts(16)).unwrap();
        let mut last = 0;
        for i in 0..20 {
            last = put(&store, "b", &i.to_string());
        }
        let kept = store
            .changes_since(store.compacted_revision(), 0)
            .unwrap()
            .len();
        assert!((16..=18).contains(&kept), "{kept} changes kept");
        assert!(store.compacted_revision() > first + 1_000);
        assert_eq!(store.revision(), last);
    }
}
