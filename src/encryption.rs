//! Encryption at rest: Secrets are stored encrypted with AES-GCM.
//!
//! The configuration is kube-apiserver's `EncryptionConfiguration` file
//! (`apiserver.config.k8s.io/v1`), so an operator who has rotated keys on
//! Kubernetes does the same here:
//!
//! ```yaml
//! apiVersion: apiserver.config.k8s.io/v1
//! kind: EncryptionConfiguration
//! resources:
//!   - resources: [secrets]
//!     providers:
//!       - aesgcm:
//!           keys:
//!             - name: key2
//!               secret: <base64 of 16, 24 or 32 random bytes>
//!             - name: key1
//!               secret: <...>
//!       - identity: {}
//! ```
//!
//! **Protocol.** The first provider writes: with `aesgcm`, its first key
//! encrypts; every key of every provider decrypts (so a new key can be put
//! first while old data stays readable). `identity` first means "write in
//! clear" (the step that turns encryption off). A stored value is
//! `k8s:enc:aesgcm:v1:<key name>:` followed by a random 96-bit nonce and the
//! AES-GCM ciphertext with its tag — the layout kube-apiserver writes to
//! etcd. The authenticated data is the value's store key (workspace,
//! namespace and name), so a ciphertext copied under another key, say into
//! another tenant's workspace, fails to decrypt instead of being served
//! there. A value without the `k8s:enc:` prefix is clear text (written
//! before encryption was turned on) and is read as such.
//!
//! **Where.** [`EncryptedShard`] wraps a [`Shard`]: writes are encrypted
//! before they enter the raft log, reads, lists and the change feed are
//! decrypted after they leave the store. So the log, the RocksDB files,
//! snapshots and backups only ever hold ciphertext, while the API and the
//! controllers above see plain objects.
//!
//! **A value that cannot be decrypted** (its key was removed from the
//! config, or the ciphertext is damaged) fails only the requests that read
//! it: a get or list that returns it answers 500 with an error naming the
//! store key and the encryption key (`encrypted with key "key1", which the
//! encryption config does not hold`). In the change feed it is one change
//! marked [`Change::unreadable`], so a watch whose range holds that Secret
//! ends with an ERROR event saying the same, while every other watch (of
//! other Secrets, other kinds, other tenants) goes on.
//!
//! **Rotation.** Put the new key first and restart (or let the file be
//! reloaded: [`EncryptedShard::watch`]); records whose stored
//! form is not under the current write key are marked
//! [`Record::stale`], so an update that changes nothing still rewrites
//! them. `tmc encryption rewrite` lists every Secret across workspaces and
//! writes each back unchanged, after which the old key can be removed.
//!
//! Left out: KMS providers (v1/v2 with a key-encryption key), `secretbox`
//! and `aescbc`, encrypting resources other than Secrets, and a per-write
//! nonce counter (random nonces: rotate keys well before 2^32 writes per
//! key, as kube-apiserver advises for `aesgcm`).

use crate::shard::{BoxFuture, Shard, ShardError};
use crate::store::{
    Change, Committed, Key, ListOptions, ListPage, OpResult, Prefix, Record, Txn, TxnOp,
};
use base64::Engine as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// What a stored value encrypted with AES-GCM starts with.
const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";
/// What every encrypted stored value starts with.
const ENC_PREFIX: &[u8] = b"k8s:enc:";
const NONCE_LEN: usize = 12;

/// A bad encryption configuration, or a value that cannot be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The configuration file is unusable; the message says why.
    #[error("encryption config {path}: {msg}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// A stored value could not be decrypted.
    #[error("cannot decrypt {key}: {msg}")]
    Decrypt {
        /// The store key of the value.
        key: String,
        /// Why.
        msg: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    api_version: String,
    kind: String,
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderConfig {
    #[serde(default)]
    aesgcm: Option<KeysConfig>,
    #[serde(default)]
    identity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// One named AES-GCM key.
struct NamedKey {
    name: String,
    key: LessSafeKey,
}

/// The keys in force: which one writes, and all that read.
pub struct Keys {
    /// `None`: write in clear (identity first).
    write: Option<usize>,
    keys: Vec<NamedKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("Keys")
            .field("write", &self.write_key_name())
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keys {
    /// Parses an `EncryptionConfiguration` document; `path` names it in
    /// errors.
    pub fn parse(path: &str, text: &str) -> Result<Keys, EncryptionError> {
        let err = |msg: String| EncryptionError::Config {
            path: path.to_string(),
            msg,
        };
        let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;
        if file.api_version != "apiserver.config.k8s.io/v1"
            || file.kind != "EncryptionConfiguration"
        {
            return Err(err(format!(
                "expected apiVersion apiserver.config.k8s.io/v1 and kind EncryptionConfiguration, \
                 got {} {}",
                file.api_version, file.kind
            )));
        }
        let mut secrets = None;
        for r in &file.resources {
            for res in &r.resources {
                match res.as_str() {
                    "secrets" | "secrets." if secrets.is_none() => secrets = Some(r),
                    "secrets" | "secrets." => {
                        return Err(err("secrets are listed twice".into()));
                    }
                    other => {
                        return Err(err(format!(
                            "resource {other:?}: only secrets can be encrypted"
                        )))
                    }
                }
            }
        }
        let Some(r) = secrets else {
            return Err(err("no entry for secrets".into()));
        };
        let mut keys = Vec::new();
        let mut write = None;
        let mut first = true;
        for p in &r.providers {
            match (&p.aesgcm, &p.identity) {
                (Some(k), None) => {
                    if k.keys.is_empty() {
                        return Err(err("aesgcm provider without keys".into()));
                    }
                    if first {
                        write = Some(keys.len());
                    }
                    for kc in &k.keys {
                        if kc.name.is_empty() || kc.name.contains(':') {
                            return Err(err(format!(
                                "key name {:?}: must be non-empty without ':'",
                                kc.name
                            )));
                        }
                        if keys.iter().any(|n: &NamedKey| n.name == kc.name) {
                            return Err(err(format!("key name {:?} is used twice", kc.name)));
                        }
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(kc.secret.trim())
                            .map_err(|_| err(format!("key {:?}: secret is not base64", kc.name)))?;
                        let alg = match raw.len() {
                            16 => &aead::AES_128_GCM,
                            32 => &aead::AES_256_GCM,
                            n => {
                                return Err(err(format!(
                                    "key {:?}: {n} bytes; AES-GCM keys here are 16 or 32 bytes",
                                    kc.name
                                )))
                            }
                        };
                        let key = UnboundKey::new(alg, &raw)
                            .map_err(|_| err(format!("key {:?}: rejected", kc.name)))?;
                        keys.push(NamedKey {
                            name: kc.name.clone(),
                            key: LessSafeKey::new(key),
                        });
                    }
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(err(
                        "each provider is exactly one of aesgcm or identity".into()
                    ))
                }
            }
            first = false;
        }
        Ok(Keys { write, keys })
    }

    /// The names of every key (each decrypts what it encrypted).
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.name.clone()).collect()
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Keys, EncryptionError> {
        let text = std::fs::read_to_string(path).map_err(|e| EncryptionError::Config {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Keys::parse(&path.display().to_string(), &text)
    }

    /// A configuration with one new random 256-bit key (for `tmc dev`).
    pub fn generate_config() -> String {
        let mut raw = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut raw[..]);
        let secret = base64::engine::general_purpose::STANDARD.encode(raw);
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\n\
             kind: EncryptionConfiguration\n\
             resources:\n  \
             - resources: [secrets]\n    \
             providers:\n      \
             - aesgcm:\n          \
             keys:\n            \
             - name: key1\n              \
             secret: {secret}\n      \
             - identity: {{}}\n"
        )
    }

    /// The name of the key that encrypts writes (`None`: clear text).
    pub fn write_key_name(&self) -> Option<&str> {
        self.write.map(|i| self.keys[i].name.as_str())
    }

    /// The stored form of `plain` under store key `key`.
    pub fn encrypt(&self, key: &[u8], plain: &[u8]) -> Vec<u8> {
        let Some(k) = self.write.map(|i| &self.keys[i]) else {
            return plain.to_vec();
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
        let mut out =
            Vec::with_capacity(AESGCM_PREFIX.len() + k.name.len() + 1 + 12 + plain.len() + 16);
        out.extend_from_slice(AESGCM_PREFIX.as_bytes());
        out.extend_from_slice(k.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key),
                &mut sealed,
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        out.extend_from_slice(&sealed);
        out
    }

    /// The clear text of a stored value, and whether its stored form is
    /// stale (not what [`Keys::encrypt`] would write now).
    pub fn decrypt(&self, key: &[u8], stored: &[u8]) -> Result<(Vec<u8>, bool), EncryptionError> {
        let fail = |msg: String| EncryptionError::Decrypt {
            key: String::from_utf8_lossy(key).into_owned(),
            msg,
        };
        if !stored.starts_with(ENC_PREFIX) {
            return Ok((stored.to_vec(), self.write.is_some()));
        }
        let Some(rest) = stored.strip_prefix(AESGCM_PREFIX.as_bytes()) else {
            return Err(fail("stored with a provider other than aesgcm".into()));
        };
        let colon = rest
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| fail("no key name".into()))?;
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let body = &rest[colon + 1..];
        let Some(k) = self.keys.iter().find(|k| k.name == name) else {
            return Err(fail(format!(
                "encrypted with key {name:?}, which the encryption config does not hold"
            )));
        };
        if body.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(fail(format!("ciphertext under key {name:?} is truncated")));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&body[..NONCE_LEN]);
        let mut buf = body[NONCE_LEN..].to_vec();
        let plain = k
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(key), &mut buf)
            .map_err(|_| {
                fail(format!(
                    "authentication under key {name:?} failed (damaged, or stored under another key)"
                ))
            })?;
        let stale = self.write_key_name() != Some(name.as_str());
        Ok((plain.to_vec(), stale))
    }
}

/// True for store keys whose values are encrypted: core Secrets.
fn encrypted(key: &Key) -> bool {
    matches!(key, Key::Object(o) if o.gr.resource() == "secrets" && o.gr.key_group() == "core")
}

fn encrypted_raw(key: &[u8]) -> bool {
    Key::decode(key).is_some_and(|k| encrypted(&k))
}

/// A [`Shard`] that encrypts Secrets on the way in and decrypts them on the
/// way out (see the module docs).
pub struct EncryptedShard {
    inner: Arc<dyn Shard>,
    /// The keys, re-read from their file when it changes.
    keys: Arc<crate::util::Reloading<Keys>>,
}

impl EncryptedShard {
    /// Wraps `inner` with the keys of a configuration file, which
    /// [`EncryptedShard::watch`] re-reads.
    pub fn from_file(
        inner: Arc<dyn Shard>,
        path: &Path,
    ) -> Result<EncryptedShard, EncryptionError> {
        let p = path.to_path_buf();
        let keys = crate::util::Reloading::new("encryption config", vec![p.clone()], move || {
            Keys::load(&p).map_err(|e| e.to_string())
        })
        .map_err(|msg| EncryptionError::Config {
            path: path.display().to_string(),
            msg,
        })?;
        Ok(EncryptedShard { inner, keys })
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.get()
    }

    /// Re-reads the configuration file if its contents changed. A file
    /// that no longer parses keeps the old keys in force and returns the
    /// error; `Ok(true)` when new keys were taken.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        self.keys.reload_if_changed()
    }

    /// Re-reads the configuration file every 5 s (needs a tokio runtime).
    pub fn watch(&self) {
        self.keys.watch(std::time::Duration::from_secs(5));
    }

    /// Decrypts `rec` in place if it is encrypted.
    fn open(keys: &Keys, rec: &mut Record) -> Result<(), ShardError> {
        if encrypted_raw(&rec.key) {
            let (plain, stale) = keys
                .decrypt(&rec.key, &rec.value)
                .map_err(|e| ShardError::Internal(e.to_string()))?;
            rec.value = plain;
            rec.stale = stale;
        }
        Ok(())
    }

    fn open_opt(keys: &Keys, rec: &mut Option<Record>) -> Result<(), ShardError> {
        rec.as_mut().map_or(Ok(()), |r| Self::open(keys, r))
    }
}

impl Shard for EncryptedShard {
    fn write(&self, mut txn: Txn) -> BoxFuture<'_, Result<Committed, ShardError>> {
        let keys = self.keys();
        for op in &mut txn.ops {
            if let TxnOp::Put { key, value, .. } = op {
                if encrypted(key) {
                    *value = keys.encrypt(&key.encode(), value);
                }
            }
        }
        Box::pin(async move {
            let mut c = self.inner.write(txn).await?;
            for r in &mut c.results {
                match r {
                    OpResult::Put { record, prev } => {
                        Self::open(&keys, record)?;
                        Self::open_opt(&keys, prev)?;
                    }
                    OpResult::Deleted(prev) => Self::open_opt(&keys, prev)?,
                    OpResult::Checked => {}
                }
            }
            Ok(c)
        })
    }

    fn barrier(&self) -> BoxFuture<'_, Result<u64, ShardError>> {
        self.inner.barrier()
    }

    fn get(&self, key: &Key) -> Result<Option<Record>, ShardError> {
        let mut rec = self.inner.get(key)?;
        Self::open_opt(&self.keys(), &mut rec)?;
        Ok(rec)
    }

    fn list(&self, prefix: &Prefix, opts: &ListOptions) -> Result<ListPage, ShardError> {
        let mut page = self.inner.list(prefix, opts)?;
        let keys = self.keys();
        for r in &mut page.items {
            Self::open(&keys, r)?;
        }
        Ok(page)
    }

    /// One change that cannot be decrypted does not fail the others: it
    /// comes with [`Change::unreadable`] set (naming the store key and the
    /// encryption key) and the unreadable value left out, so that only the
    /// readers it concerns (a watch of that Secret) fail, not every watch
    /// and controller that reads the change log.
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, ShardError> {
        let keys = self.keys();
        let mut changes = self.inner.changes_since(after, limit)?;
        for c in &mut changes {
            for rec in [&mut c.value, &mut c.prev] {
                if let Err(e) = Self::open_opt(&keys, rec) {
                    // Never pass the ciphertext on as if it were the value.
                    *rec = None;
                    c.unreadable.get_or_insert(e.to_string());
                }
            }
        }
        Ok(changes)
    }

    fn workspace_ranges(&self, ws: &crate::store::Workspace) -> Result<Vec<Prefix>, ShardError> {
        self.inner.workspace_ranges(ws)
    }

    fn list_at_rest(&self, prefix: &Prefix, opts: &ListOptions) -> Result<ListPage, ShardError> {
        self.inner.list_at_rest(prefix, opts)
    }

    fn open_at_rest(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, ShardError> {
        if !encrypted_raw(key) {
            return Ok(stored);
        }
        let (plain, _) = self
            .keys()
            .decrypt(key, &stored)
            .map_err(|e| ShardError::Internal(e.to_string()))?;
        Ok(plain)
    }

    fn at_rest_keys(&self) -> Vec<String> {
        self.keys().names()
    }

    fn revision(&self) -> u64 {
        self.inner.revision()
    }

    fn compacted_revision(&self) -> u64 {
        self.inner.compacted_revision()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }

    fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }

    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.leadership()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &[(&str, u8)], identity_first: bool) -> String {
        let mut s = String::from(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n",
        );
        if identity_first {
            s.push_str("  - identity: {}\n");
        }
        s.push_str("  - aesgcm:\n      keys:\n");
        for (name, byte) in keys {
            let secret = base64::engine::general_purpose::STANDARD.encode([*byte; 32]);
            s.push_str(&format!("      - name: {name}\n        secret: {secret}\n"));
        }
        s
    }

    fn keys(keys: &[(&str, u8)]) -> Keys {
        Keys::parse("test", &config(keys, false)).unwrap()
    }

    #[test]
    fn round_trip_is_bound_to_the_store_key() {
        let k = keys(&[("k1", 1)]);
        let stored = k.encrypt(b"/registry/core/secrets/root:a/default/s", b"hunter2");
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert!(!stored.windows(7).any(|w| w == b"hunter2"));
        let (plain, stale) = k
            .decrypt(b"/registry/core/secrets/root:a/default/s", &stored)
            .unwrap();
        assert_eq!((plain.as_slice(), stale), (&b"hunter2"[..], false));
        // Moved to another tenant's key: refused, not served.
        let e = k
            .decrypt(b"/registry/core/secrets/root:b/default/s", &stored)
            .unwrap_err()
            .to_string();
        assert!(e.contains("root:b") && e.contains("authentication"), "{e}");
        // A flipped byte anywhere in the ciphertext: refused.
        let mut bad = stored.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k
            .decrypt(b"/registry/core/secrets/root:a/default/s", &bad)
            .is_err());
        // Two encryptions of the same text differ (random nonce).
        assert_ne!(
            stored,
            k.encrypt(b"/registry/core/secrets/root:a/default/s", b"hunter2")
        );
    }

    #[test]
    fn rotation_reads_old_keys_and_marks_their_values_stale() {
        let key = b"/registry/core/secrets/root/default/s";
        let old = keys(&[("k1", 1)]).encrypt(key, b"v");
        let rotated = keys(&[("k2", 2), ("k1", 1)]);
        assert_eq!(rotated.decrypt(key, &old).unwrap(), (b"v".to_vec(), true));
        let new = rotated.encrypt(key, b"v");
        assert!(new.starts_with(b"k8s:enc:aesgcm:v1:k2:"));
        assert_eq!(rotated.decrypt(key, &new).unwrap(), (b"v".to_vec(), false));
        // Clear text from before encryption: readable, stale.
        assert_eq!(rotated.decrypt(key, b"{}").unwrap(), (b"{}".to_vec(), true));
        // The old key removed: a clear error naming the key.
        let e = keys(&[("k2", 2)])
            .decrypt(key, &old)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"k1\"") && e.contains("does not hold"), "{e}");
        // Identity first: writes clear text, still reads ciphertext.
        let off = Keys::parse("t", &config(&[("k2", 2)], true)).unwrap();
        assert_eq!(off.write_key_name(), None);
        assert_eq!(off.encrypt(key, b"v"), b"v");
        assert_eq!(off.decrypt(key, &new).unwrap(), (b"v".to_vec(), true));
        assert_eq!(off.decrypt(key, b"v").unwrap(), (b"v".to_vec(), false));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases = [
            ("kind: Nope\napiVersion: v1\nresources: []\n", "EncryptionConfiguration"),
            (
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [configmaps]\n  providers: [{identity: {}}]\n",
                "only secrets",
            ),
            (
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: a\n        secret: c2hvcnQ=\n",
                "5 bytes",
            ),
            (
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: a\n        secret: '%%%'\n",
                "not base64",
            ),
            (
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox: {}\n",
                "secretbox",
            ),
            ("{", "test"),
        ];
        for (text, want) in cases {
            let e = Keys::parse("test", text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let dup = config(&[("k", 1), ("k", 2)], false);
        assert!(Keys::parse("t", &dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        // The generated config parses and encrypts.
        let g = Keys::parse("gen", &Keys::generate_config()).unwrap();
        assert_eq!(g.write_key_name(), Some("key1"));
        assert!(!format!("{g:?}").contains("secret"));
    }

    /// A Secret whose key is gone from the config fails only the readers
    /// of that Secret: its change comes out of the feed marked unreadable
    /// (naming the key, without the ciphertext), the other changes come
    /// out as usual, and the watch hub hands the error to the watches of
    /// that Secret only; a get of it names the key.
    #[tokio::test(flavor = "current_thread")]
    async fn an_undecryptable_secret_fails_only_its_readers() {
        use crate::api::watch::WatchHub;
        use crate::shard::LocalShard;
        use crate::store::{Expectation, GroupResource, MemoryEngine, ObjectKey, Store, Workspace};
        let dir = tempfile::tempdir().unwrap();
        let with_a = dir.path().join("a.yaml");
        let without_a = dir.path().join("b.yaml");
        std::fs::write(&with_a, config(&[("keyA", 1)], false)).unwrap();
        std::fs::write(&without_a, config(&[("keyB", 2)], false)).unwrap();
        let store = Arc::new(Store::open(MemoryEngine::new(), Default::default()).unwrap());
        let inner: Arc<dyn Shard> = Arc::new(LocalShard::new(store));
        // One replica's view still holds key A; this one does not.
        let writer = EncryptedShard::from_file(inner.clone(), &with_a).unwrap();
        let reader: Arc<dyn Shard> =
            Arc::new(EncryptedShard::from_file(inner, &without_a).unwrap());
        let obj = |gr: &str, ws: &str, name: &str| -> Key {
            ObjectKey::namespaced(
                GroupResource::new("", gr).unwrap(),
                Workspace::parse(ws).unwrap(),
                "default",
                name,
            )
            .unwrap()
            .into()
        };
        let prefix = |gr: &str, ws: &str| {
            Prefix::namespace(
                &GroupResource::new("", gr).unwrap(),
                &Workspace::parse(ws).unwrap(),
                "default",
            )
            .unwrap()
        };
        let hub = WatchHub::start(reader.clone());
        let mut secrets = hub.subscribe(prefix("secrets", "root:t1"));
        let mut other = hub.subscribe(prefix("configmaps", "root:t2"));
        let put = |k: Key| {
            Txn::new(vec![TxnOp::put_json(
                k,
                br#"{"data":{"password":"aHVudGVyMg=="}}"#.to_vec(),
                Expectation::Any,
            )])
        };
        let secret = obj("secrets", "root:t1", "s");
        let s_rev = writer.write(put(secret.clone())).await.unwrap().revision;
        let c_rev = writer
            .write(put(obj("configmaps", "root:t2", "c")))
            .await
            .unwrap()
            .revision;

        let changes = reader.changes_since(0, 0).unwrap();
        assert_eq!(changes.len(), 2);
        let why = changes[0].unreadable.as_deref().unwrap();
        assert!(
            why.contains("\"keyA\"") && why.contains("root:t1"),
            "the error names the key and the Secret: {why}"
        );
        assert!(
            changes[0].value.is_none(),
            "ciphertext passed on as a value"
        );
        assert_eq!(changes[1].unreadable, None);
        let e = reader.get(&secret).unwrap_err().to_string();
        assert!(e.contains("\"keyA\"") && e.contains("does not hold"), "{e}");

        let d = secrets.rx.recv().await.unwrap();
        assert_eq!(d.change.revision, s_rev);
        assert!(d.error.as_deref().is_some_and(|e| e.contains("\"keyA\"")));
        let d = other.rx.recv().await.unwrap();
        assert_eq!((d.change.revision, d.error.as_deref()), (c_rev, None));
        assert_eq!(hub.watchers(), 2, "a watch was dropped");
        assert_eq!((secrets.ended(), other.ended()), (None, None));
    }
}
