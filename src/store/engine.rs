//! The storage engine seam: a small ordered key-value interface with column
//! families, atomic write batches, range scans and checkpoints.
//!
//! Two implementations: [`super::rocks::RocksEngine`] (the real one; the
//! `rocksdb` crate is used in that module only) and [`MemoryEngine`] (for
//! tests and the deterministic raft simulation). Both pass one shared test
//! suite (`tests/store_engines.rs`).

use super::error::{Error, Result};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Column families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// API objects and tmc state, keyed as in [`super::keys`].
    Data,
    /// Raft log entries.
    Log,
    /// Raft hard state, conf state, applied index, store revision.
    Meta,
    /// Revision-ordered change records for watch.
    Changes,
}

impl Cf {
    /// All column families, in a fixed order.
    pub const ALL: [Cf; 4] = [Cf::Data, Cf::Log, Cf::Meta, Cf::Changes];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Data => "data",
            Cf::Log => "log",
            Cf::Meta => "meta",
            Cf::Changes => "changes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One operation of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key in `[start, end)`.
    DeleteRange {
        /// Column family.
        cf: Cf,
        /// Inclusive start.
        start: Vec<u8>,
        /// Exclusive end.
        end: Vec<u8>,
    },
}

/// An atomic group of writes: all of them become visible, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The operations, applied in order.
    pub ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put {
            cf,
            key: key.into(),
            value: value.into(),
        });
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete {
            cf,
            key: key.into(),
        });
    }

    /// Adds a range delete of `[start, end)`.
    pub fn delete_range(&mut self, cf: Cf, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeleteRange {
            cf,
            start: start.into(),
            end: end.into(),
        });
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value pair yielded by a scan.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An iterator over a key range, in key order.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<KeyValue>> + 'a>;

/// The storage engine interface.
pub trait Engine: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Applies a batch atomically; with `sync`, it is durable on return
    /// (fsync of the write-ahead log).
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;

    /// Scans `[start, end)` in key order; an empty `end` means no bound.
    fn scan(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>>;

    /// Scans `[start, end)` in reverse key order; an empty `end` means no
    /// bound.
    fn scan_rev(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>>;

    /// Writes a consistent copy of all column families into `dir`, which
    /// must not exist yet.
    fn checkpoint(&self, dir: &Path) -> Result<()>;

    /// Opens a checkpoint that [`Engine::checkpoint`] of this engine type
    /// wrote into `dir` (a raft snapshot received from a peer), to read it.
    /// Fails if `dir` holds no such checkpoint.
    fn open_checkpoint(&self, dir: &Path) -> Result<Self>
    where
        Self: Sized;

    /// Flushes buffered writes to durable files.
    fn flush(&self) -> Result<()>;

    /// What the engine reports of its background work (zeros where it has
    /// none).
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}

/// An engine's background work, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Compactions running now.
    pub compactions_running: u64,
    /// Bytes the engine estimates compactions still have to rewrite.
    pub compaction_pending_bytes: u64,
    /// Bytes of the live table files.
    pub live_table_bytes: u64,
}

type Tables = [BTreeMap<Vec<u8>, Vec<u8>>; 4];

/// An in-memory engine. Clones share the same data, so a "reopen" in a test
/// is a clone handed to a new store.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    tables: Arc<RwLock<Tables>>,
}

impl MemoryEngine {
    /// A new, empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn range(&self, cf: Cf, start: &[u8], end: &[u8], reverse: bool) -> Result<ScanIter<'_>> {
        let tables = self
            .tables
            .read()
            .map_err(|_| Error::engine("memory engine lock poisoned"))?;
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end.to_vec())
        };
        if !end.is_empty() && start >= end {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut items: Vec<Result<KeyValue>> = tables[cf.index()]
            .range((Bound::Included(start.to_vec()), upper))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        if reverse {
            items.reverse();
        }
        Ok(Box::new(items.into_iter()))
    }
}

impl Engine for MemoryEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tables = self
            .tables
            .read()
            .map_err(|_| Error::engine("memory engine lock poisoned"))?;
        Ok(tables[cf.index()].get(key).cloned())
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<()> {
        let mut tables = self
            .tables
            .write()
            .map_err(|_| Error::engine("memory engine lock poisoned"))?;
        for op in batch.ops {
            match op {
                Op::Put { cf, key, value } => {
                    tables[cf.index()].insert(key, value);
                }
                Op::Delete { cf, key } => {
                    tables[cf.index()].remove(&key);
                }
                Op::DeleteRange { cf, start, end } => {
                    let doomed: Vec<Vec<u8>> = tables[cf.index()]
                        .range(start..end)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        tables[cf.index()].remove(&k);
                    }
                }
            }
        }
        Ok(())
    }

    fn scan(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>> {
        self.range(cf, start, end, false)
    }

    fn scan_rev(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>> {
        self.range(cf, start, end, true)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let tables = self
            .tables
            .read()
            .map_err(|_| Error::engine("memory engine lock poisoned"))?;
        std::fs::create_dir(dir).map_err(Error::engine)?;
        for cf in Cf::ALL {
            let mut out = Vec::new();
            for (k, v) in &tables[cf.index()] {
                out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                out.extend_from_slice(k);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
            std::fs::write(dir.join(cf.name()), out).map_err(Error::engine)?;
        }
        Ok(())
    }

    fn open_checkpoint(&self, dir: &Path) -> Result<Self> {
        MemoryEngine::load_checkpoint(dir)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

impl MemoryEngine {
    /// Loads a checkpoint written by [`Engine::checkpoint`] of a memory
    /// engine.
    pub fn load_checkpoint(dir: &Path) -> Result<Self> {
        let mut tables: Tables = Default::default();
        for cf in Cf::ALL {
            let path = dir.join(cf.name());
            let data = std::fs::read(&path)
                .map_err(|e| Error::engine(format!("{}: {e}", path.display())))?;
            let mut rest = data.as_slice();
            let take = |rest: &mut &[u8]| -> Result<Vec<u8>> {
                let bad = || Error::engine(format!("{}: truncated checkpoint", path.display()));
                let len: [u8; 4] = rest.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes");
                let len = u32::from_be_bytes(len) as usize;
                let item = rest.get(4..4 + len).ok_or_else(bad)?.to_vec();
                *rest = &rest[4 + len..];
                Ok(item)
            };
            while !rest.is_empty() {
                let k = take(&mut rest)?;
                let v = take(&mut rest)?;
                tables[cf.index()].insert(k, v);
            }
        }
        Ok(MemoryEngine {
            tables: Arc::new(RwLock::new(tables)),
        })
    }
}

/// A shared engine is an engine: the node, its raft log and its store hold
/// the same one.
impl<E: Engine> Engine for Arc<E> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get(cf, key)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        (**self).write(batch, sync)
    }

    fn scan(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>> {
        (**self).scan(cf, start, end)
    }

    fn scan_rev(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>> {
        (**self).scan_rev(cf, start, end)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        (**self).checkpoint(dir)
    }

    fn open_checkpoint(&self, dir: &Path) -> Result<Self> {
        Ok(Arc::new((**self).open_checkpoint(dir)?))
    }

    fn flush(&self) -> Result<()> {
        (**self).flush()
    }

    fn stats(&self) -> EngineStats {
        (**self).stats()
    }
}
