//! What the store holds and what changes it: a [`Record`] (a value with
//! its key and revisions), a [`Txn`] (puts, deletes and checks, each with
//! an [`Expectation`] on the key's mod revision) and what committing one
//! gives back ([`Committed`], one [`OpResult`] per operation). These are
//! the types raft carries in its entries (serde) and the API builds; the
//! rules of applying them are in [`Store`](super::Store).
//!
//! Left out: range operations (a transaction names single keys).

use super::codec::{self, Encoding, Envelope};
use super::engine::Cf;
use super::error::{Expectation, Result};
use super::keys::Key;
use serde::{Deserialize, Serialize};

/// One stored value with its key and revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Encoded key (see [`Key::decode`]).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Body encoding.
    pub encoding: Encoding,
    /// Revision that created the key.
    pub create_revision: u64,
    /// Revision of the last change (Kubernetes' `resourceVersion`).
    pub mod_revision: u64,
    /// The body.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Set by a value transformer above the store (encryption at rest):
    /// the stored form is not what a write would store now (an old key),
    /// so an update should rewrite it even when the content is unchanged.
    /// The store itself always says `false`; it is never persisted.
    #[serde(skip)]
    pub stale: bool,
}

impl Record {
    pub(super) fn from_envelope(key: Vec<u8>, e: Envelope) -> Record {
        Record {
            key,
            encoding: e.encoding,
            create_revision: e.create_revision,
            mod_revision: e.mod_revision,
            value: e.body,
            stale: false,
        }
    }

    pub(super) fn decode(cf: Cf, key: Vec<u8>, raw: &[u8]) -> Result<Record> {
        let e = codec::decode(cf.name(), &key, raw)?;
        Ok(Record::from_envelope(key, e))
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Create or replace the key's value.
    Put {
        /// The key.
        key: Key,
        /// Body encoding.
        encoding: EncodingTag,
        /// The body.
        value: Vec<u8>,
        /// Precondition on the current value.
        expect: Expectation,
    },
    /// Remove the key.
    Delete {
        /// The key.
        key: Key,
        /// Precondition on the current value.
        expect: Expectation,
    },
    /// Only check a precondition.
    Check {
        /// The key.
        key: Key,
        /// Precondition on the current value.
        expect: Expectation,
    },
    /// Gives the transaction a revision of at least `at_least` (the
    /// revisions in between are never used). A workspace moved in from
    /// another shard is written so, past every resourceVersion that shard
    /// handed out for it, so that those are told apart (410 Gone) from
    /// this shard's own. Always last of the variants: raft entries of
    /// earlier versions decode unchanged.
    Advance {
        /// The lowest revision the transaction may get.
        at_least: u64,
    },
}

/// Serializable mirror of [`Encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncodingTag {
    /// Opaque bytes.
    Raw,
    /// Compact JSON.
    Json,
    /// bincode.
    Bincode,
}

impl From<EncodingTag> for Encoding {
    fn from(t: EncodingTag) -> Self {
        match t {
            EncodingTag::Raw => Encoding::Raw,
            EncodingTag::Json => Encoding::Json,
            EncodingTag::Bincode => Encoding::Bincode,
        }
    }
}

impl TxnOp {
    /// A JSON put with a precondition.
    pub fn put_json(key: impl Into<Key>, value: Vec<u8>, expect: Expectation) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            encoding: EncodingTag::Json,
            value,
            expect,
        }
    }

    /// A bincode put (internal state) with a precondition.
    pub fn put_bincode(key: impl Into<Key>, value: Vec<u8>, expect: Expectation) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            encoding: EncodingTag::Bincode,
            value,
            expect,
        }
    }

    /// A delete with a precondition.
    pub fn delete(key: impl Into<Key>, expect: Expectation) -> TxnOp {
        TxnOp::Delete {
            key: key.into(),
            expect,
        }
    }

    /// The key the operation names (none for [`TxnOp::Advance`]).
    pub fn key(&self) -> Option<&Key> {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key, .. } | TxnOp::Check { key, .. } => {
                Some(key)
            }
            TxnOp::Advance { .. } => None,
        }
    }

    pub(super) fn expect(&self) -> Expectation {
        match self {
            TxnOp::Put { expect, .. }
            | TxnOp::Delete { expect, .. }
            | TxnOp::Check { expect, .. } => *expect,
            TxnOp::Advance { .. } => Expectation::Any,
        }
    }
}

/// An atomic, conditional group of operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The operations; their preconditions are all checked before any write.
    pub ops: Vec<TxnOp>,
}

impl Txn {
    /// A transaction of the given operations.
    pub fn new(ops: Vec<TxnOp>) -> Self {
        Txn { ops }
    }
}

/// What one operation of a committed transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// The put stored this record; `prev` is what it replaced.
    Put {
        /// The new record.
        record: Record,
        /// The replaced record, if any.
        prev: Option<Record>,
    },
    /// The delete removed this record (`None`: there was nothing).
    Deleted(Option<Record>),
    /// The check held.
    Checked,
}

/// The outcome of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The revision of the transaction.
    pub revision: u64,
    /// One result per operation, in order.
    pub results: Vec<OpResult>,
}
