//! A digest of a store's objects, for comparing a backup with the shard it
//! came from (`tmc backup verify`) the way `etcdutl snapshot status` prints
//! a hash over all keys: every key and value of the `data` column family,
//! in key order, each value's envelope checked on the way (a damaged value
//! is an error naming its key), counted per resource and per workspace.
//!
//! The hash is SHA-256 over, for each key in order: the key's length (8
//! bytes, big-endian), the key, the raw value's length, the raw value. Two
//! stores with the same `data` column family have the same hash whatever
//! their revision history or file layout.
//!
//! Left out: the change log and the raft state (they are history, not
//! state), and a live replica's hash at a given revision (it would hash a
//! checkpoint taken at that point).

use super::engine::{Cf, Engine};
use super::keys::REGISTRY;
use super::Result;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashSet};

/// What [`digest`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreDigest {
    /// Keys of the `data` column family.
    pub keys: u64,
    /// API objects per resource (`group/resource`, `core` for the legacy
    /// group).
    pub per_resource: BTreeMap<String, u64>,
    /// Workspaces holding at least one API object.
    pub workspaces: u64,
    /// Controller records (placement decisions, their index, sync state).
    pub records: u64,
    /// SHA-256 over every key and value, hex.
    pub sha256: String,
    /// Values stored encrypted (kube-apiserver's `k8s:enc:<provider>:v1:<key>:`
    /// form), by the name of the key that decrypts them: what an
    /// encryption configuration must hold to read them.
    #[serde(default)]
    pub encryption_keys: BTreeMap<String, u64>,
}

/// The key name of a value stored in kube-apiserver's encrypted form
/// (`k8s:enc:<provider>:v1:<key name>:<ciphertext>`), if it is one.
pub fn encryption_key_of(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(b"k8s:enc:")?;
    let mut fields = rest.splitn(4, |b| *b == b':');
    let _provider = fields.next()?;
    let _version = fields.next()?;
    let name = fields.next()?;
    fields.next()?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

/// Scans every key and value of `engine`'s data (see the module's docs).
///
/// One pass, no allocation per key: keys of one resource are contiguous
/// (`/registry/{group}/{resource}/...` sorts by resource first), so they
/// are counted as runs; workspaces are counted as distinct 64-bit hashes
/// of their names (a collision among a million names has a chance of
/// about 10^-7, and would undercount by one).
pub fn digest<E: Engine>(engine: &E) -> Result<StoreDigest> {
    // SHA-256 runs on a thread of its own, fed batches of the scanned pairs
    // (moved, not copied; at most 8 batches of about 4 MiB in flight), so
    // that hashing overlaps the scan and the checksums on a second core.
    type Batch = Vec<(Vec<u8>, Vec<u8>)>;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut hash = Sha256::new();
            for batch in rx {
                for (key, value) in batch {
                    hash.update((key.len() as u64).to_be_bytes());
                    hash.update(&key);
                    hash.update((value.len() as u64).to_be_bytes());
                    hash.update(&value);
                }
            }
            hex(&hash.finalize())
        });
        let counted = count(engine, tx);
        let sha256 = hasher
            .join()
            .map_err(|_| super::Error::engine("the digest's hashing thread panicked"))?;
        counted.map(|mut d| {
            d.sha256 = sha256;
            d
        })
    })
}

/// The scan of [`digest`]: checks and counts every pair, and hands it to
/// `tx` for hashing (`sha256` is left empty).
fn count<E: Engine>(
    engine: &E,
    tx: std::sync::mpsc::SyncSender<Vec<(Vec<u8>, Vec<u8>)>>,
) -> Result<StoreDigest> {
    use std::hash::BuildHasher;
    const BATCH_BYTES: usize = 4 << 20;
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut keys = 0u64;
    let mut records = 0u64;
    let mut per_resource: BTreeMap<String, u64> = BTreeMap::new();
    let mut run: Option<(Vec<u8>, u64)> = None;
    let seed = std::collections::hash_map::RandomState::new();
    let mut workspaces: HashSet<u64> = HashSet::new();
    let mut encryption_keys: BTreeMap<String, u64> = BTreeMap::new();
    let mut flush = |run: &mut Option<(Vec<u8>, u64)>| {
        if let Some((gr, n)) = run.take() {
            *per_resource
                .entry(String::from_utf8_lossy(&gr).into_owned())
                .or_default() += n;
        }
    };
    for kv in engine.scan(Cf::Data, &[], &[])? {
        let (key, value) = kv?;
        // The envelope's checksum, or an error naming the key.
        let (_, _, _, body) = super::codec::check(Cf::Data.name(), &key, &value)?;
        if body.starts_with(b"k8s:enc:") {
            if let Some(name) = encryption_key_of(body) {
                *encryption_keys.entry(name).or_default() += 1;
            }
        }
        keys += 1;
        // `/registry/{group}/{resource}/{workspace}/...`
        let mut parts = key
            .strip_prefix(REGISTRY.as_bytes())
            .map(|rest| rest.splitn(4, |b| *b == b'/'));
        let object = parts.as_mut().and_then(|p| {
            let (g, r, ws) = (p.next()?, p.next()?, p.next()?);
            p.next()?;
            Some((g, r, ws))
        });
        match object {
            None => records += 1,
            Some((g, r, ws)) => {
                let gr_len = g.len() + 1 + r.len();
                let gr = &key[REGISTRY.len()..REGISTRY.len() + gr_len];
                match &mut run {
                    Some((current, n)) if current.as_slice() == gr => *n += 1,
                    _ => {
                        flush(&mut run);
                        run = Some((gr.to_vec(), 1));
                    }
                }
                workspaces.insert(seed.hash_one(ws));
            }
        }
        batch_bytes += key.len() + value.len();
        batch.push((key, value));
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if tx.send(std::mem::take(&mut batch)).is_err() {
                return Err(super::Error::engine("the digest's hashing thread stopped"));
            }
        }
    }
    flush(&mut run);
    if !batch.is_empty() && tx.send(batch).is_err() {
        return Err(super::Error::engine("the digest's hashing thread stopped"));
    }
    Ok(StoreDigest {
        keys,
        per_resource,
        workspaces: workspaces.len() as u64,
        records,
        sha256: String::new(),
        encryption_keys,
    })
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::encryption_key_of;

    #[test]
    fn the_key_of_an_encrypted_value_is_its_fourth_field() {
        assert_eq!(
            encryption_key_of(b"k8s:enc:aesgcm:v1:key1:\x00\x01ciphertext").as_deref(),
            Some("key1")
        );
        assert_eq!(encryption_key_of(b"{\"kind\":\"Secret\"}"), None);
        assert_eq!(encryption_key_of(b"k8s:enc:aesgcm:v1:key1"), None);
        assert_eq!(encryption_key_of(b"k8s:enc:"), None);
    }
}
