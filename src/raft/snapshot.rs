//! Snapshot data: the replicated state of a shard at one applied index.
//!
//! A snapshot is a consistent copy of the `data` and `changes` column
//! families and of the store's own `meta` records (revision, applied index,
//! compacted revision; never the per-replica `raft_*` records), taken at the
//! applied index. It is encoded as bincode inside the store's checksummed
//! envelope, so a damaged snapshot is refused before anything is replaced.
//!
//! Consistency of the export comes from the single writer: the node exports
//! between two applies, on the thread that applies, so no write can
//! interleave.
//!
//! The snapshot is one raft message, but it does not travel as one frame:
//! the transport splits any message larger than [`wire::CHUNK_SIZE`]
//! (1 MiB) into crc-checked chunks and the receiver reassembles them,
//! refusing the whole transfer if one chunk is damaged or missing
//! ([`wire::encode_chunked`], [`wire::Reassembler`]). It is still built and
//! reassembled in memory; exporting a RocksDB checkpoint and streaming its
//! files would replace [`SnapshotData::export`] and
//! [`SnapshotData::stage_install`] behind the same two calls, without a
//! change to the raft side (metadata, install, compaction).
//!
//! [`wire::CHUNK_SIZE`]: super::wire::CHUNK_SIZE
//! [`wire::encode_chunked`]: super::wire::encode_chunked
//! [`wire::Reassembler`]: super::wire::Reassembler

use super::storage::RAFT_META_PREFIX;
use crate::store::{codec, Cf, Encoding, Engine, WriteBatch};
use serde::{Deserialize, Serialize};

/// Format version, kept in the envelope's create-revision field.
const FORMAT: u64 = 1;

/// The meta key under which the store keeps its applied index.
const STORE_APPLIED_KEY: &[u8] = b"applied_index";

/// The replicated state at one applied index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotData {
    /// The applied index the data reflects.
    pub index: u64,
    /// Every pair of the `data` column family, in key order.
    pub data: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every pair of the `changes` column family, in key order.
    pub changes: Vec<(Vec<u8>, Vec<u8>)>,
    /// The store's `meta` pairs (not the raft layer's).
    pub meta: Vec<(Vec<u8>, Vec<u8>)>,
}

fn scan_all(engine: &impl Engine, cf: Cf) -> crate::store::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    engine.scan(cf, &[], &[])?.collect()
}

fn corrupt(reason: String) -> crate::store::Error {
    crate::store::Error::Corrupt {
        cf: "snapshot",
        key: String::new(),
        reason,
    }
}

impl SnapshotData {
    /// Exports the replicated state of `engine`, which must be at applied
    /// index `index` (checked against the store's own record).
    pub fn export(engine: &impl Engine, index: u64) -> crate::store::Result<SnapshotData> {
        let meta: Vec<_> = scan_all(engine, Cf::Meta)?
            .into_iter()
            .filter(|(k, _)| !k.starts_with(RAFT_META_PREFIX))
            .collect();
        let recorded = meta
            .iter()
            .find(|(k, _)| k.as_slice() == STORE_APPLIED_KEY)
            .map(|(k, v)| -> crate::store::Result<u64> {
                let env = codec::decode(Cf::Meta.name(), k, v)?;
                let bytes: [u8; 8] = env
                    .body
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("applied index is not 8 bytes".into()))?;
                Ok(u64::from_be_bytes(bytes))
            })
            .transpose()?
            .unwrap_or(0);
        if recorded != index {
            return Err(crate::store::Error::engine(format!(
                "snapshot export at index {index}, but the store has applied {recorded}"
            )));
        }
        Ok(SnapshotData {
            index,
            data: scan_all(engine, Cf::Data)?,
            changes: scan_all(engine, Cf::Changes)?,
            meta,
        })
    }

    /// Encodes the snapshot (bincode in a checksummed envelope).
    pub fn encode(&self) -> Vec<u8> {
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("snapshot data always encodes");
        codec::encode(Encoding::Bincode, FORMAT, self.index, &body)
    }

    /// Decodes and checks bytes produced by [`SnapshotData::encode`].
    pub fn decode(bytes: &[u8]) -> crate::store::Result<SnapshotData> {
        let env = codec::decode("snapshot", &[], bytes)?;
        if env.create_revision != FORMAT {
            return Err(corrupt(format!(
                "unknown snapshot format {}",
                env.create_revision
            )));
        }
        let (data, used): (SnapshotData, usize) =
            bincode::serde::decode_from_slice(&env.body, bincode::config::standard())
                .map_err(|e| corrupt(format!("undecodable snapshot: {e}")))?;
        if used != env.body.len() {
            return Err(corrupt("trailing bytes after the snapshot".into()));
        }
        if data.index != env.mod_revision {
            return Err(corrupt(format!(
                "snapshot body says index {}, envelope {}",
                data.index, env.mod_revision
            )));
        }
        Ok(data)
    }

    /// Stages into `wb` the replacement of the replicated state of `engine`
    /// by this snapshot: every existing pair of `data` and `changes` and
    /// every store `meta` record is removed, the snapshot's are written.
    pub fn stage_install(
        &self,
        engine: &impl Engine,
        wb: &mut WriteBatch,
    ) -> crate::store::Result<()> {
        for cf in [Cf::Data, Cf::Changes] {
            if let Some(last) = engine.scan_rev(cf, &[], &[])?.next() {
                let (mut end, _) = last?;
                end.push(0);
                wb.delete_range(cf, Vec::new(), end);
            }
        }
        for item in engine.scan(Cf::Meta, &[], &[])? {
            let (k, _) = item?;
            if !k.starts_with(RAFT_META_PREFIX) {
                wb.delete(Cf::Meta, k);
            }
        }
        for (k, v) in &self.data {
            wb.put(Cf::Data, k.clone(), v.clone());
        }
        for (k, v) in &self.changes {
            wb.put(Cf::Changes, k.clone(), v.clone());
        }
        for (k, v) in &self.meta {
            if !k.starts_with(RAFT_META_PREFIX) {
                wb.put(Cf::Meta, k.clone(), v.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotData {
        SnapshotData {
            index: 7,
            data: vec![
                (b"/a".to_vec(), b"1".to_vec()),
                (b"/b".to_vec(), b"2".to_vec()),
            ],
            changes: vec![(vec![0; 12], b"c".to_vec())],
            meta: vec![(b"revision".to_vec(), b"r".to_vec())],
        }
    }

    #[test]
    fn round_trip_and_damage() {
        let bytes = sample().encode();
        assert_eq!(SnapshotData::decode(&bytes).unwrap(), sample());
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                SnapshotData::decode(&bad).is_err(),
                "flipped byte {i} accepted"
            );
        }
        assert!(SnapshotData::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(SnapshotData::decode(b"").is_err());
    }

    #[test]
    fn install_replaces_data_changes_and_store_meta_only() {
        let engine = crate::store::MemoryEngine::new();
        let mut wb = WriteBatch::new();
        wb.put(Cf::Data, b"/old".to_vec(), b"x".to_vec());
        wb.put(Cf::Data, b"/zzz".to_vec(), b"x".to_vec());
        wb.put(Cf::Changes, vec![9; 12], b"x".to_vec());
        wb.put(Cf::Meta, b"compacted_revision".to_vec(), b"x".to_vec());
        wb.put(Cf::Meta, b"raft_hard_state".to_vec(), b"keep".to_vec());
        engine.write(wb, false).unwrap();
        let mut wb = WriteBatch::new();
        sample().stage_install(&engine, &mut wb).unwrap();
        engine.write(wb, false).unwrap();
        assert_eq!(scan_all(&engine, Cf::Data).unwrap(), sample().data);
        assert_eq!(scan_all(&engine, Cf::Changes).unwrap(), sample().changes);
        assert_eq!(
            scan_all(&engine, Cf::Meta).unwrap(),
            vec![
                (b"raft_hard_state".to_vec(), b"keep".to_vec()),
                (b"revision".to_vec(), b"r".to_vec())
            ]
        );
    }
}
