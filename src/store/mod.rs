//! The storage layer: one RocksDB instance per node holding the API objects
//! of many workspaces in kcp's etcd key layout, tmc's internal state, the
//! raft log and a change log for watches.
//!
//! Layers, bottom up:
//! - [`engine`]: the [`Engine`] trait (column families, atomic batches, range
//!   scans, checkpoints) with [`RocksEngine`] and [`MemoryEngine`].
//! - [`codec`]: the value envelope (magic, version, crc32, revisions).
//! - [`keys`] and [`names`]: typed keys and the naming rules behind them.
//! - [`Store`]: revisions, compare-and-swap transactions ([`Txn`]),
//!   consistent paginated lists and the change log (in modules of their
//!   own: `txn.rs`, `list.rs`, `changes.rs`).
//!
//! The store knows nothing of HTTP or raft: the raft layer hands it committed
//! transactions through [`Store::apply`], the API reads through it.

mod changes;
pub mod codec;
pub mod digest;
pub mod engine;
pub mod error;
pub mod keys;
mod list;
pub mod names;
mod ranges;
pub mod rocks;
#[allow(clippy::module_inception)]
mod store;
mod txn;

pub use changes::{Change, ChangeKind};
pub use codec::Encoding;
pub use engine::{Cf, Engine, EngineStats, MemoryEngine, WriteBatch};
pub use error::{Error, Expectation, Found, NameError, Result};
pub use keys::{ClusterRef, GcRole, GroupResource, Key, ObjectKey, Prefix};
pub use list::{continue_revision, decode_continue, ListOptions, ListPage};
pub use names::{NameRule, Workspace};
pub use rocks::{RocksEngine, RocksOptions};
pub use store::{Store, StoreOptions};
pub use txn::{Committed, EncodingTag, OpResult, Record, Txn, TxnOp};

/// Opens a RocksDB-backed store in `dir`.
pub fn open_rocks(
    dir: &std::path::Path,
    rocks: &RocksOptions,
    opts: StoreOptions,
) -> Result<Store<RocksEngine>> {
    Store::open(RocksEngine::open(dir, rocks)?, opts)
}
