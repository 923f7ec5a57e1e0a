//! The change log: every change a transaction makes, kept in the
//! `changes` column family for watches and for lists at an older revision.
//!
//! A record's key is (revision, sequence within the transaction), both
//! big-endian, so the log is ordered by revision; its value is the store's
//! envelope around bincode of the key, the kind of change, and the new and
//! previous values (each itself an envelope, as in `data`). Records are
//! written in the same batch as the data they describe
//! ([`Store::push_change`]), so a reader that sees a value finds its
//! change. The store trims the log to a window of revisions
//! ([`StoreOptions::changes_retention`](super::StoreOptions)); a read from
//! before the window is [`Error::Compacted`], also when a compaction
//! races with the read.
//!
//! Left out: an index by key (a list at an old revision reads every record
//! since, by key only).

use super::codec::{self, Encoding};
use super::engine::{Cf, Engine, WriteBatch};
use super::error::{printable_key, Error, Result};
use super::store::Reader;
use super::{Record, Store};
use serde::{Deserialize, Serialize};

/// What kind of change a change record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// A change as stored in the `changes` column family: raw envelopes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChangeEntry {
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    kind: ChangeKind,
    #[serde(with = "serde_bytes")]
    value: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    prev: Option<Vec<u8>>,
}

/// [`ChangeEntry`] borrowed, for writing without copying the values first.
#[derive(Serialize)]
struct ChangeEntryRef<'a> {
    #[serde(with = "serde_bytes")]
    key: &'a [u8],
    kind: ChangeKind,
    #[serde(with = "serde_bytes")]
    value: Option<&'a [u8]>,
    #[serde(with = "serde_bytes")]
    prev: Option<&'a [u8]>,
}

/// One change of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Revision of the transaction that made it.
    pub revision: u64,
    /// Created/updated or deleted.
    pub kind: ChangeKind,
    /// The encoded key.
    pub key: Vec<u8>,
    /// The new record (for puts).
    pub value: Option<Record>,
    /// The record before the change, if any.
    pub prev: Option<Record>,
    /// Set by a value transformer above the store (encryption at rest)
    /// when `value` or `prev` cannot be turned back into what was written
    /// (its key is missing): why, naming the key. The value that could not
    /// be read is then `None`. The store itself always says `None`; it is
    /// never persisted.
    pub unreadable: Option<String>,
}

/// bincode as the change log writes it.
pub(super) fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The key of the `seq`th change of the transaction at `revision`.
pub(super) fn change_key(revision: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl<E: Engine> Store<E> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_change(
        &self,
        wb: &mut WriteBatch,
        revision: u64,
        seq: &mut u32,
        key: &[u8],
        kind: ChangeKind,
        value: Option<&[u8]>,
        prev: Option<&[u8]>,
    ) {
        let entry = ChangeEntryRef {
            key,
            kind,
            value,
            prev,
        };
        let body = bincode::serde::encode_to_vec(&entry, bincode_config())
            .expect("change entries always encode");
        wb.put(
            Cf::Changes,
            change_key(revision, *seq).to_vec(),
            codec::encode(Encoding::Bincode, revision, revision, &body),
        );
        *seq += 1;
    }

    pub(super) fn decode_change(&self, k: &[u8], raw: &[u8]) -> Result<Change> {
        let (revision, entry): (u64, ChangeEntry) = change_record(k, raw)?;
        let rec = |raw: Option<Vec<u8>>| -> Result<Option<Record>> {
            raw.map(|r| Record::decode(Cf::Changes, entry.key.clone(), &r))
                .transpose()
        };
        Ok(Change {
            revision,
            kind: entry.kind,
            key: entry.key.clone(),
            value: rec(entry.value)?,
            prev: rec(entry.prev)?,
            unreadable: None,
        })
    }

    /// The key a change record is about, without decoding its values.
    pub(super) fn change_key_of(&self, k: &[u8], raw: &[u8]) -> Result<Vec<u8>> {
        /// The leading field of [`ChangeEntry`].
        #[derive(Deserialize)]
        struct ChangeHead {
            #[serde(with = "serde_bytes")]
            key: Vec<u8>,
        }
        let (_, head): (u64, ChangeHead) = change_record(k, raw)?;
        Ok(head.key)
    }

    /// The changes with revision greater than `after`, in order, at most
    /// `limit` of them (0: no limit). `after` older than the compacted
    /// revision gives [`Error::Compacted`].
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.changes_in(&self.reader(), after, limit)
    }

    fn changes_in(&self, r: &Reader<'_, E>, after: u64, limit: usize) -> Result<Vec<Change>> {
        let compacted_error = |oldest| Error::Compacted {
            requested: after,
            oldest,
        };
        let compacted = r.compacted();
        if after < compacted {
            return Err(compacted_error(compacted));
        }
        let start = change_key(after.saturating_add(1), 0);
        let mut out = Vec::new();
        for item in r.engine().scan(Cf::Changes, &start, &[])? {
            let (k, v) = item?;
            out.push(self.decode_change(&k, &v)?);
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
        // A compaction that raced with the scan may have removed records we
        // needed: say so rather than return a gap.
        let compacted = r.compacted();
        if after < compacted {
            return Err(compacted_error(compacted));
        }
        Ok(out)
    }
}

/// A change record's revision and body (all of [`ChangeEntry`], or a
/// leading part of it: bincode reads fields in order and stops there).
fn change_record<T: serde::de::DeserializeOwned>(k: &[u8], raw: &[u8]) -> Result<(u64, T)> {
    let env = codec::decode(Cf::Changes.name(), k, raw)?;
    let (body, _): (T, usize) = bincode::serde::decode_from_slice(&env.body, bincode_config())
        .map_err(|e| Error::Corrupt {
            cf: Cf::Changes.name(),
            key: printable_key(k),
            reason: format!("undecodable change record: {e}"),
        })?;
    Ok((env.mod_revision, body))
}
