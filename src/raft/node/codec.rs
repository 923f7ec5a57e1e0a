//! What a node puts into raft-rs's opaque bytes: the data of an entry it
//! proposes (a batch of writes, group commit's unit) and the context of a
//! ReadIndex request.
//!
//! An entry's data is bincode of `(request id, transaction)` pairs; the
//! request ids let the proposing node match the applied entry to the
//! requests it answers (every other replica ignores them). An entry that
//! does not decode, or has trailing bytes, is [`Error::Corrupt`]: every
//! replica then skips it alike. A ReadIndex context is three big-endian
//! `u64`s (node, incarnation, sequence).
//!
//! Left out: a version byte (the format changes only with a new log).

use super::RequestId;
use crate::raft::Error;
use crate::store::{Txn, TxnOp};

/// Writes as raft entry data: `(request id, transaction)` pairs.
pub(super) type Batch = Vec<(RequestId, Txn)>;

pub(super) fn encode_batch(batch: &Batch) -> Result<Vec<u8>, Error> {
    bincode::serde::encode_to_vec(batch, bincode::config::standard()).map_err(|e| Error::Corrupt {
        what: "write batch",
        reason: e.to_string(),
    })
}

pub(super) fn decode_batch(data: &[u8]) -> Result<Batch, Error> {
    let (batch, used): (Batch, usize) =
        bincode::serde::decode_from_slice(data, bincode::config::standard()).map_err(|e| {
            Error::Corrupt {
                what: "raft entry",
                reason: e.to_string(),
            }
        })?;
    if used != data.len() {
        return Err(Error::Corrupt {
            what: "raft entry",
            reason: "trailing bytes".into(),
        });
    }
    Ok(batch)
}

/// About how many bytes `txn` adds to an entry (group commit's byte
/// limit).
pub(super) fn txn_size(txn: &Txn) -> usize {
    txn.ops
        .iter()
        .map(|op| match op {
            TxnOp::Put { key, value, .. } => key.encode().len() + value.len() + 16,
            TxnOp::Delete { key, .. } | TxnOp::Check { key, .. } => key.encode().len() + 16,
            TxnOp::Advance { .. } => 16,
        })
        .sum::<usize>()
        + 8
}

/// The context of a ReadIndex request: node, incarnation, sequence. The
/// incarnation keeps a request from before a restart from answering one
/// after it.
pub(super) fn read_ctx(node: u64, incarnation: u64, seq: u64) -> Vec<u8> {
    [node, incarnation, seq]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// The parts of a context [`read_ctx`] made; `None` for any other bytes.
pub(super) fn parse_read_ctx(ctx: &[u8]) -> Option<(u64, u64, u64)> {
    if ctx.len() != 24 {
        return None;
    }
    let at = |i: usize| u64::from_be_bytes(ctx[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Some((at(0), at(1), at(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ctx_round_trip() {
        assert_eq!(parse_read_ctx(&read_ctx(3, 7, 99)), Some((3, 7, 99)));
        assert_eq!(parse_read_ctx(b"short"), None);
    }

    #[test]
    fn batch_round_trip_and_garbage() {
        let batch: Batch = vec![(1, Txn::default()), (2, Txn::default())];
        let data = encode_batch(&batch).unwrap();
        assert_eq!(decode_batch(&data).unwrap(), batch);
        assert!(decode_batch(&[0xff, 0xff, 0xff]).is_err());
        let mut long = data.clone();
        long.push(0);
        assert!(decode_batch(&long).is_err());
    }
}
