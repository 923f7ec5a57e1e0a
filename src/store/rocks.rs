//! The RocksDB engine. The only module that uses the `rocksdb` crate.
//!
//! Memory is bounded whatever the data size: one LRU block cache shared by
//! all column families holds data, index and filter blocks, and a write
//! buffer manager charged to the same cache caps the memtables. The store
//! therefore does not grow in memory with the number of workspaces.

use super::engine::{Cf, Engine, EngineStats, Op, ScanIter, WriteBatch};
use super::error::{printable_key, Error, Result};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    Direction, IteratorMode, Options, ReadOptions, WriteBufferManager, WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// Tuning of the RocksDB engine.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Bytes of the shared block cache (data, index and filter blocks).
    pub block_cache_bytes: usize,
    /// Bytes all memtables together may hold.
    pub write_buffer_bytes: usize,
    /// Bytes of one memtable before it is flushed.
    pub memtable_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            block_cache_bytes: 128 << 20,
            write_buffer_bytes: 128 << 20,
            memtable_bytes: 32 << 20,
        }
    }
}

/// How [`RocksEngine::open_with`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Read and write, creating it if missing.
    Create,
    /// Read and write an existing one.
    Existing,
    /// Read an existing one only.
    ReadOnly,
}

/// A RocksDB database with tmc's column families.
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
    // Kept alive for as long as the DB uses them.
    _cache: Cache,
    _wbm: WriteBufferManager,
}

impl RocksEngine {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<Self> {
        Self::open_with(path, opts, Access::Create)
    }

    /// Opens the existing database at `path` to read it only: nothing is
    /// written, flushed or compacted (a backup's checkpoint, a backup
    /// being verified). Its writes fail.
    pub fn open_read_only(path: &Path, opts: &RocksOptions) -> Result<Self> {
        Self::open_with(path, opts, Access::ReadOnly)
    }

    fn open_with(path: &Path, opts: &RocksOptions, access: Access) -> Result<Self> {
        let create = access == Access::Create;
        // The write buffer manager charges memtables to the cache, so the
        // cache holds both budgets: memtables can never squeeze blocks out
        // below `block_cache_bytes`, and the total stays bounded.
        let cache = Cache::new_lru_cache(opts.block_cache_bytes + opts.write_buffer_bytes);
        let wbm = WriteBufferManager::new_write_buffer_manager_with_cache(
            opts.write_buffer_bytes,
            false,
            cache.clone(),
        );
        let mut db_opts = Options::default();
        db_opts.create_if_missing(create);
        db_opts.create_missing_column_families(create);
        db_opts.set_write_buffer_manager(&wbm);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_total_wal_size(256 << 20);

        let cfs =
            Cf::ALL.map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf, opts, &cache)));
        let db = match access {
            Access::ReadOnly => DB::open_cf_descriptors_read_only(&db_opts, path, cfs, false),
            _ => DB::open_cf_descriptors(&db_opts, path, cfs),
        }
        .map_err(|e| Error::engine(format!("opening {}: {e}", path.display())))?;
        Ok(RocksEngine {
            db,
            path: path.to_path_buf(),
            _cache: cache,
            _wbm: wbm,
        })
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("column families are created on open")
    }

    fn iter(&self, cf: Cf, start: &[u8], end: &[u8], reverse: bool) -> Result<ScanIter<'_>> {
        let mut ro = ReadOptions::default();
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        ro.set_iterate_lower_bound(start.to_vec());
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::From(start, Direction::Forward)
        };
        let it = self.db.iterator_cf_opt(self.cf(cf), ro, mode);
        Ok(Box::new(it.map(move |r| {
            r.map(|(k, v)| (k.into_vec(), v.into_vec()))
                .map_err(|e| Error::engine(format!("scanning column family {}: {e}", cf.name())))
        })))
    }
}

fn cf_options(cf: Cf, opts: &RocksOptions, cache: &Cache) -> Options {
    let mut bb = BlockBasedOptions::default();
    bb.set_block_cache(cache);
    // Partitioned index and filters: a lookup loads one small partition, not
    // the whole index of a large bottommost file, and everything lives in the
    // bounded cache, the small top levels pinned.
    bb.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    bb.set_partition_filters(true);
    bb.set_metadata_block_size(4096);
    bb.set_cache_index_and_filter_blocks(true);
    bb.set_cache_index_and_filter_blocks_with_high_priority(true);
    bb.set_pin_top_level_index_and_filter(true);
    bb.set_pin_l0_filter_and_index_blocks_in_cache(true);
    bb.set_block_size(16 << 10);
    let mut o = Options::default();
    o.set_write_buffer_size(opts.memtable_bytes);
    o.set_max_write_buffer_number(3);
    o.set_compression_type(DBCompressionType::Lz4);
    // Objects and state settle in the bottom level: zstd there. The raft log
    // and the change log are trimmed long before they get old, so they are
    // not worth zstd's CPU.
    o.set_bottommost_compression_type(match cf {
        Cf::Data | Cf::Meta => DBCompressionType::Zstd,
        Cf::Log | Cf::Changes => DBCompressionType::Lz4,
    });
    match cf {
        Cf::Data | Cf::Meta => bb.set_bloom_filter(10.0, false),
        // The log and change feed are read in order, never by point lookup;
        // partitioned indexes need a filter policy, so give them a small one.
        Cf::Log | Cf::Changes => bb.set_bloom_filter(1.0, false),
    }
    o.set_block_based_table_factory(&bb);
    o.set_level_compaction_dynamic_level_bytes(true);
    o
}

impl Engine for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_pinned_cf(self.cf(cf), key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| Error::engine_at(key, e))
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put { cf, key, value } => wb.put_cf(self.cf(*cf), key, value),
                Op::Delete { cf, key } => wb.delete_cf(self.cf(*cf), key),
                Op::DeleteRange { cf, start, end } => wb.delete_range_cf(self.cf(*cf), start, end),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(|e| {
            let first = batch.ops.first().map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key, .. } => printable_key(key),
                Op::DeleteRange { start, .. } => printable_key(start),
            });
            Error::Engine {
                key: first,
                message: format!("writing a batch of {} operations: {e}", batch.ops.len()),
            }
        })
    }

    fn scan(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>> {
        self.iter(cf, start, end, false)
    }

    fn scan_rev(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<ScanIter<'_>> {
        self.iter(cf, start, end, true)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(Error::engine)?;
        cp.create_checkpoint(dir)
            .map_err(|e| Error::engine(format!("checkpoint into {}: {e}", dir.display())))
    }

    fn open_checkpoint(&self, dir: &Path) -> Result<Self> {
        // A reader of a snapshot: small caches, never a new database.
        let opts = RocksOptions {
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            memtable_bytes: 4 << 20,
        };
        RocksEngine::open_with(dir, &opts, Access::Existing)
    }

    fn stats(&self) -> EngineStats {
        // Summed over the column families (each has its own LSM tree).
        let sum = |name: &str| -> u64 {
            Cf::ALL
                .iter()
                .filter_map(|cf| {
                    self.db
                        .property_int_value_cf(self.cf(*cf), name)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        EngineStats {
            compactions_running: self
                .db
                .property_int_value("rocksdb.num-running-compactions")
                .ok()
                .flatten()
                .unwrap_or(0),
            compaction_pending_bytes: sum("rocksdb.estimate-pending-compaction-bytes"),
            live_table_bytes: sum("rocksdb.live-sst-files-size"),
        }
    }

    fn flush(&self) -> Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf)).map_err(Error::engine)?;
        }
        Ok(())
    }
}
