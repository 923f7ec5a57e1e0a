//! How the raft layer's values lie in the engine: the keys (a log entry
//! by its index, the meta records by name) and their encodings, each value
//! in the store's checksummed envelope ([`crate::store::codec`]), so that
//! a damaged value is an error naming its key, never a wrong value. An
//! entry's term and index are in the envelope header too and must agree
//! with the entry's own.
//!
//! Left out: a version of these records apart from the envelope's.

use crate::store::{codec, Cf, Encoding, Engine};
use protobuf::Message as _;
use raft::eraftpb::Entry;

/// Meta keys of the raft layer all start with this prefix; the snapshot
/// leaves them out (they are per replica).
pub const RAFT_META_PREFIX: &[u8] = b"raft_";
pub(super) const KEY_HARD_STATE: &[u8] = b"raft_hard_state";
pub(super) const KEY_CONF_STATE: &[u8] = b"raft_conf_state";
pub(super) const KEY_TRUNCATED: &[u8] = b"raft_truncated";
pub(super) const KEY_INCARNATION: &[u8] = b"raft_incarnation";
pub(super) const KEY_INSTALLING: &[u8] = b"raft_installing";
pub(super) const KEY_CLUSTER_ID: &[u8] = b"raft_cluster_id";

/// The key of the log entry at `index`.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(super) fn corrupt(key: &[u8], reason: impl Into<String>) -> crate::store::Error {
    crate::store::Error::Corrupt {
        cf: Cf::Log.name(),
        key: crate::store::error::printable_key(key),
        reason: reason.into(),
    }
}

pub(super) fn encode_entry(e: &Entry) -> Result<Vec<u8>, crate::store::Error> {
    let body = e.write_to_bytes().map_err(|err| {
        crate::store::Error::engine(format!("encoding raft entry {}: {err}", e.index))
    })?;
    Ok(codec::encode(Encoding::Raw, e.term, e.index, &body))
}

/// Decodes the log value stored at `index`, checking that it is that entry.
pub(super) fn decode_entry(index: u64, raw: &[u8]) -> Result<Entry, crate::store::Error> {
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
pub(super) fn read_proto<M: protobuf::Message>(
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

pub(super) fn encode_proto(m: &impl protobuf::Message) -> Result<Vec<u8>, crate::store::Error> {
    let body = m
        .write_to_bytes()
        .map_err(|e| crate::store::Error::engine(format!("encoding raft state: {e}")))?;
    Ok(codec::encode(Encoding::Raw, 0, 0, &body))
}

pub(super) fn read_u64s<const N: usize>(
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

pub(super) fn encode_u64s(values: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    codec::encode(Encoding::Raw, 0, 0, &body)
}
