//! The backup file of a shard (`tmc backup`, `tmc backup verify`).
//!
//! **Format** (`tmc-backup/1`): one gzip-compressed tar, then a trailer
//! line with the SHA-256 of every byte before it (so a flipped byte
//! anywhere, even where gzip does not look, or a cut is caught before
//! anything is parsed; `head -c -84 FILE | tar tz` lists it). Its first entry is
//! `manifest.json` ([`Manifest`]): the format, the shard, the revision and
//! applied index of the cut, the time, and each part (a file of the RocksDB
//! checkpoint, `data/<name>`) with its size and SHA-256, plus a digest over
//! that list. The parts follow in the manifest's order. A replica makes
//! one from a RocksDB checkpoint taken after a linearizable read point
//! (everything committed before the backup began is applied and in it;
//! a checkpoint is one consistent cut of the database: no transaction is
//! half in), reading each file twice (hash, then stream) and never holding
//! one in memory.
//!
//! **Verify** ([`verify`]) reads the file once, in order: the manifest's
//! own digest, each part's size and SHA-256 while it is extracted into a
//! scratch directory (a part missing, extra, reordered, damaged or cut
//! short is an error naming it), then opens the extracted database and
//! takes its [`crate::store::digest::digest`]: every value's envelope
//! checked, keys per resource, workspaces, a hash over all keys and
//! values, which must equal what the manifest recorded at backup time.
//! Secrets stay as stored (encrypted under the shard's keys when it had
//! an encryption configuration).
//!
//! **Restore** ([`restore`]) verifies the file the same way into a
//! staging directory inside the target, then makes a new shard of it:
//! the revision moved ahead and the history marked compacted (a watch or
//! list from an older resourceVersion gets 410 Gone), the raft state
//! replaced by a new cluster id and the given members at the backup's
//! applied index, and only then moves the store into place.
//!
//! One workspace has a format of its own ([`workspace`]).
//!
//! Left out: a checkpoint that moves to another replica when the
//! answering one loses its leader midway (the backup fails instead).

pub mod workspace;

use crate::store::digest::{digest, hex, StoreDigest};
use crate::store::{RocksEngine, RocksOptions, Store, StoreOptions};
use crate::util::BoxError;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The format this module writes and reads.
pub const FORMAT: &str = "tmc-backup/1";
/// The first entry of a backup.
pub const MANIFEST: &str = "manifest.json";

/// One file of the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Its path in the archive (`data/...`).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The shard it was taken of.
    pub shard: String,
    /// That shard's cluster id (16 hex digits).
    #[serde(default)]
    pub cluster_id: String,
    /// The store's revision at the cut.
    pub revision: u64,
    /// The raft index applied at the cut.
    pub applied_index: u64,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// The checkpoint's files, in archive order.
    pub parts: Vec<Part>,
    /// The store's digest at the cut (what verify must find again).
    pub store: StoreDigest,
    /// SHA-256 over the lines `name size sha256` of the parts, hex.
    pub digest: String,
}

impl Manifest {
    fn parts_digest(parts: &[Part]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update(format!("{} {} {}\n", p.name, p.size, p.sha256));
        }
        hex(&h.finalize())
    }
}

/// Hands the file at `path` to `each` in 1 MiB pieces.
fn for_each_piece(path: &Path, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n]);
    }
}

/// SHA-256 and size of the file at `path`.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    for_each_piece(path, |piece| {
        h.update(piece);
        size += piece.len() as u64;
    })?;
    Ok((size, hex(&h.finalize())))
}

/// The manifest of the checkpoint in `dir` (a RocksDB checkpoint of shard
/// `shard`): opens it to read its revision, applied index and digest, and
/// hashes every file.
pub fn manifest_of(dir: &Path, shard: &str) -> Result<Manifest, BoxError> {
    let (revision, applied_index, store, cluster_id) = {
        let engine = RocksEngine::open_read_only(dir, &RocksOptions::default())?;
        let store = Store::open(engine, StoreOptions::default())?;
        let d = digest(store.engine())?;
        let cluster_id = crate::raft::storage::cluster_id_of(store.engine())?;
        (store.revision(), store.applied_index(), d, cluster_id)
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut parts = Vec::new();
    for path in names {
        if !path.is_file() {
            return Err(format!("{} is not a file of a checkpoint", path.display()).into());
        }
        let (size, sha256) = hash_file(&path)?;
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("a file name that is not UTF-8 in {}", dir.display()))?;
        parts.push(Part {
            name: format!("data/{file}"),
            size,
            sha256,
        });
    }
    Ok(Manifest {
        format: FORMAT.to_string(),
        shard: shard.to_string(),
        cluster_id: format!("{cluster_id:016x}"),
        revision,
        applied_index,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        digest: Manifest::parts_digest(&parts),
        parts,
        store,
    })
}

/// What ends every backup: this, then the SHA-256 (hex) of every byte
/// before it, then a newline.
pub const TRAILER: &[u8] = b"\ntmc-backup-sha256:";
const TRAILER_LEN: u64 = TRAILER.len() as u64 + 64 + 1;

/// A writer that hashes what passes through it and ends with the
/// trailer ([`Hashing::finish`]).
pub(crate) struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }

    /// Writes the trailer line (the SHA-256 of every byte before it) and
    /// hands back the writer underneath.
    pub(crate) fn finish(self) -> std::io::Result<W> {
        let digest = hex(&self.hash.finalize());
        let mut inner = self.inner;
        inner.write_all(TRAILER)?;
        inner.write_all(digest.as_bytes())?;
        inner.write_all(b"\n")?;
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the backup of checkpoint `dir` with `manifest` to `out`.
pub fn write(dir: &Path, manifest: &Manifest, out: impl Write) -> Result<(), BoxError> {
    let gz = flate2::write::GzEncoder::new(Hashing::new(out), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let json = serde_json::to_vec_pretty(manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, json.as_slice())?;
    for p in &manifest.parts {
        let file = p.name.strip_prefix("data/").unwrap_or(&p.name);
        let mut f = std::fs::File::open(dir.join(file))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(p.size);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, &p.name, (&mut f).take(p.size))?;
    }
    tar.into_inner()?.finish()?.finish()?;
    Ok(())
}

/// Checks a backup's trailer as its bytes go by (a download, a read of
/// the file): every byte but the last [`TRAILER`] line is hashed, and
/// [`TrailerCheck::finish`] compares the hash with that line.
pub struct TrailerCheck {
    hash: Sha256,
    /// The last bytes seen, which may be the trailer.
    tail: Vec<u8>,
    /// Bytes hashed.
    body: u64,
}

impl Default for TrailerCheck {
    fn default() -> Self {
        TrailerCheck {
            hash: Sha256::new(),
            tail: Vec::with_capacity(2 * TRAILER_LEN as usize),
            body: 0,
        }
    }
}

impl TrailerCheck {
    /// The next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        let keep = TRAILER_LEN as usize;
        if bytes.len() >= keep {
            // Everything held, and all but the last `keep` new bytes, is body.
            self.hash.update(&self.tail);
            self.body += self.tail.len() as u64;
            self.tail.clear();
            let cut = bytes.len() - keep;
            self.hash.update(&bytes[..cut]);
            self.body += cut as u64;
            bytes = &bytes[cut..];
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > keep {
            let cut = self.tail.len() - keep;
            self.hash.update(&self.tail[..cut]);
            self.body += cut as u64;
            self.tail.drain(..cut);
        }
    }

    /// The length of the archive before the trailer, or what is wrong.
    pub fn finish(self) -> Result<u64, String> {
        if (self.tail.len() as u64) < TRAILER_LEN {
            return Err(format!(
                "{} bytes: cut short, or not a tmc backup",
                self.body + self.tail.len() as u64
            ));
        }
        let Some(hex_digest) = self
            .tail
            .strip_prefix(TRAILER)
            .and_then(|t| t.strip_suffix(b"\n"))
        else {
            return Err("no tmc backup trailer at the end: cut short, or not a tmc backup".into());
        };
        if hex_digest != hex(&self.hash.finalize()).as_bytes() {
            return Err("the file's SHA-256 is not the one written at its end: damaged".into());
        }
        Ok(self.body)
    }
}

/// Checks the trailer of `file` (the SHA-256 of everything before it):
/// a flipped byte anywhere, a cut or a foreign file fails here. Returns
/// the length of the archive before the trailer.
pub(crate) fn check_trailer(file: &Path) -> Result<u64, String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let mut check = TrailerCheck::default();
    for_each_piece(file, |piece| check.update(piece)).map_err(|e| what(&e))?;
    check.finish().map_err(|e| what(&e))
}

/// The manifest of the backup in `file` (its first entry), checked for
/// format and digest; the trailer is not read (see [`TrailerCheck`]).
pub fn read_manifest(file: &Path) -> Result<Manifest, BoxError> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let f = std::fs::File::open(file).map_err(|e| what(&e))?;
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::io::BufReader::new(f),
    ));
    let mut entries = archive.entries().map_err(|e| what(&e))?;
    first_manifest(&mut entries, &what)
}

/// Reads and checks the manifest, the first of `entries`.
fn first_manifest<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    what: &dyn Fn(&dyn std::fmt::Display) -> String,
) -> Result<Manifest, BoxError> {
    let mut first = entries
        .next()
        .ok_or_else(|| what(&"empty: not a tmc backup"))?
        .map_err(|e| what(&format!("not a tmc backup ({e})")))?;
    let path = first
        .path()
        .map_err(|e| what(&e))?
        .to_string_lossy()
        .into_owned();
    if path != MANIFEST {
        return Err(what(&format!(
            "its first entry is {path:?}, not {MANIFEST}: not a tmc backup"
        ))
        .into());
    }
    if first.size() > 64 << 20 {
        return Err(what(&"a manifest over 64 MiB").into());
    }
    let mut json = Vec::new();
    first.read_to_end(&mut json).map_err(|e| what(&e))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| what(&format!("a damaged manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(what(&format!(
            "format {:?}, this tmc reads {FORMAT}",
            manifest.format
        ))
        .into());
    }
    if Manifest::parts_digest(&manifest.parts) != manifest.digest {
        return Err(what(&"the manifest's digest does not match its parts").into());
    }
    Ok(manifest)
}

/// Bytes free for an unprivileged user on the file system of `dir`.
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid
    // NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The digest of the extracted store (equal to `manifest.store`).
    pub store: StoreDigest,
}

/// Checks the backup in `file` (see the module's docs), extracting it
/// into the empty or absent directory `scratch`; an error says what is
/// wrong and where.
pub fn verify(file: &Path, scratch: &Path) -> Result<Verified, BoxError> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let body = check_trailer(file)?;
    let f = std::fs::File::open(file).map_err(|e| what(&e))?.take(body);
    // Multi-member: bytes after the first gzip member are read (and
    // refused below) instead of silently ignored.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::io::BufReader::new(f),
    ));
    let mut entries = archive.entries().map_err(|e| what(&e))?;
    let manifest = first_manifest(&mut entries, &what)?;
    let data = scratch.join("data");
    std::fs::create_dir_all(&data)?;
    // What the parts will take, against what the scratch file system has:
    // a manifest that declares more fails here, not on a full disk.
    let needed = manifest
        .parts
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.size))
        .ok_or_else(|| what(&"the parts' sizes overflow"))?;
    if let Some(free) = available_bytes(&data) {
        if needed > free {
            return Err(what(&format!(
                "its parts need {needed} bytes in {}, which has {free} free",
                data.display()
            ))
            .into());
        }
    }
    let mut expected = manifest.parts.iter();
    for entry in entries {
        let mut entry = entry.map_err(|e| what(&format!("cut short or damaged ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| what(&e))?
            .to_string_lossy()
            .into_owned();
        let Some(part) = expected.next() else {
            return Err(what(&format!("{name}: a part the manifest does not list")).into());
        };
        if part.name != name {
            return Err(what(&format!("{name} where the manifest lists {}", part.name)).into());
        }
        let file_name = name
            .strip_prefix("data/")
            .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
            .ok_or_else(|| what(&format!("{name}: not a part's name")))?;
        if entry.size() != part.size {
            return Err(what(&format!(
                "{name}: {} bytes in the archive, {} in the manifest",
                entry.size(),
                part.size
            ))
            .into());
        }
        let mut out = std::fs::File::create(data.join(file_name))?;
        let mut h = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| what(&format!("{name}: cut short or damaged ({e})")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            size += n as u64;
        }
        if size != part.size || hex(&h.finalize()) != part.sha256 {
            return Err(what(&format!(
                "{name}: {size} bytes whose SHA-256 is not the manifest's ({} bytes)",
                part.size
            ))
            .into());
        }
    }
    if let Some(missing) = expected.next() {
        return Err(what(&format!("cut short: {} is missing", missing.name)).into());
    }
    // The rest of the gzip stream (and its CRC and length) must be whole
    // too, and hold nothing but the tar's zero padding.
    let mut gz = archive.into_inner();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = gz.read(&mut buf).map_err(|e| {
            what(&format!(
                "damaged after the last part, or bytes after the end ({e})"
            ))
        })?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(what(&"bytes after the end of the backup").into());
        }
    }
    let store = {
        let engine = RocksEngine::open_read_only(&data, &RocksOptions::default())
            .map_err(|e| what(&format!("the extracted database does not open: {e}")))?;
        digest(&engine).map_err(|e| what(&format!("a damaged value: {e}")))?
    };
    if store != manifest.store {
        return Err(what(&format!(
            "the data's digest {} is not the one taken at backup time ({})",
            store.sha256, manifest.store.sha256
        ))
        .into());
    }
    Ok(Verified { manifest, store })
}

/// Where a restored store goes in the data directory: the layout of the
/// process that will serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `tmc dev --data-dir DIR`: the store in `DIR/shard`, the encryption
    /// configuration in `DIR/encryption.yaml`.
    Dev,
    /// `tmc serve --data-dir DIR`: the store in `DIR/data`.
    Serve,
}

impl Layout {
    /// The store's directory under `data_dir`.
    pub fn store_dir(self, data_dir: &Path) -> PathBuf {
        match self {
            Layout::Dev => data_dir.join("shard"),
            Layout::Serve => data_dir.join("data"),
        }
    }
}

/// How [`restore`] makes a new shard of a backup.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Which process will serve the data.
    pub layout: Layout,
    /// The voters of the new shard (`--initial-cluster`); every member is
    /// restored with the same list.
    pub voters: Vec<u64>,
    /// The new shard's cluster id (the same for all its members).
    pub cluster_id: u64,
    /// How far the revision moves ahead.
    pub bump_revision: u64,
    /// Drop the change log and mark everything before compacted.
    pub mark_compacted: bool,
    /// The encryption configuration the shard will run with (checked to
    /// hold every key the backup's Secrets need; with [`Layout::Dev`],
    /// copied to `DIR/encryption.yaml`).
    pub encryption_config: Option<PathBuf>,
}

/// What [`restore`] made.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The new shard's cluster id (16 hex digits).
    pub cluster_id: String,
    /// Its voters.
    pub voters: Vec<u64>,
    /// The revision it starts at (bumped).
    pub revision: u64,
    /// Revisions up to this one answer 410 Gone.
    pub compacted_revision: u64,
    /// Where the store is.
    pub store_dir: PathBuf,
}

/// Restores the backup in `file` into `data_dir`, which must be absent
/// or empty: verifies it (as [`verify`]), checks the encryption keys its
/// Secrets need, bumps the revision (and marks the history compacted),
/// replaces the original shard's raft state with that of a new shard
/// (`opts.voters`, a new cluster id; see
/// [`crate::raft::storage::reset_for_restore`]), then moves the store
/// into place. On any error nothing is left in `data_dir` (a directory
/// it created is removed).
pub fn restore(file: &Path, data_dir: &Path, opts: &RestoreOptions) -> Result<Restored, BoxError> {
    let claimed = crate::util::EmptyDir::claim(
        data_dir,
        "a restore writes only into an empty or new directory",
    )?;
    let result = restore_into(file, data_dir, opts);
    if result.is_err() {
        claimed.discard();
    }
    result
}

fn restore_into(file: &Path, data_dir: &Path, opts: &RestoreOptions) -> Result<Restored, BoxError> {
    if opts.voters.is_empty() || opts.voters.contains(&0) {
        return Err("the new shard's members must be non-zero ids".into());
    }
    if opts.cluster_id == 0 {
        return Err("the cluster id must not be 0".into());
    }
    let staging = data_dir.join(".restoring");
    let v = verify(file, &staging)?;
    let needed: Vec<&String> = v.store.encryption_keys.keys().collect();
    let held = match &opts.encryption_config {
        Some(path) => crate::encryption::Keys::load(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .names(),
        None => Vec::new(),
    };
    if let Some(missing) = needed.iter().find(|k| !held.contains(k)) {
        let counts: Vec<String> = v
            .store
            .encryption_keys
            .iter()
            .map(|(k, n)| format!("{k:?} ({n} values)"))
            .collect();
        return Err(match &opts.encryption_config {
            None => format!(
                "{}: its Secrets are encrypted with the keys {}: give --encryption-config with a configuration that holds them",
                file.display(),
                counts.join(", ")
            ),
            Some(path) => format!(
                "{}: its Secrets need the key {missing:?}, which {} does not hold (they need {})",
                file.display(),
                path.display(),
                counts.join(", ")
            ),
        }
        .into());
    }
    let data = staging.join("data");
    let (revision, compacted_revision) = {
        let engine = RocksEngine::open(&data, &RocksOptions::default())?;
        let store = Store::open(engine, StoreOptions::default())?;
        let revision = store.bump_for_restore(opts.bump_revision, opts.mark_compacted)?;
        crate::raft::storage::reset_for_restore(
            store.engine(),
            &opts.voters,
            store.applied_index(),
            opts.cluster_id,
        )?;
        (revision, store.compacted_revision())
    };
    let store_dir = opts.layout.store_dir(data_dir);
    std::fs::rename(&data, &store_dir)
        .map_err(|e| format!("moving the store to {}: {e}", store_dir.display()))?;
    std::fs::remove_dir_all(&staging)?;
    if let (Layout::Dev, Some(config)) = (opts.layout, &opts.encryption_config) {
        let to = data_dir.join("encryption.yaml");
        let text = std::fs::read(config).map_err(|e| format!("{}: {e}", config.display()))?;
        crate::util::write_new_private(&to, &text).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(Restored {
        manifest: v.manifest,
        cluster_id: format!("{:016x}", opts.cluster_id),
        voters: opts.voters.clone(),
        revision,
        compacted_revision,
        store_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup of a small real store whose manifest `tamper` changes
    /// before it is written (digests recomputed, so only the checks that
    /// look deeper can tell).
    fn backup_with(tamper: impl Fn(&mut Manifest)) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        {
            let e = RocksEngine::open(&db, &RocksOptions::default()).unwrap();
            let mut wb = crate::store::WriteBatch::new();
            wb.put(crate::store::Cf::Meta, b"k".to_vec(), b"v".to_vec());
            crate::store::Engine::write(&e, wb, true).unwrap();
        }
        let mut m = manifest_of(&db, "root").unwrap();
        tamper(&mut m);
        m.digest = Manifest::parts_digest(&m.parts);
        let file = dir.path().join("b.tmcbackup");
        write(&db, &m, std::fs::File::create(&file).unwrap()).unwrap();
        (dir, file)
    }

    #[test]
    fn a_good_backup_verifies_and_a_crafted_manifest_does_not() {
        let (dir, file) = backup_with(|_| {});
        verify(&file, &dir.path().join("ok")).expect("a good backup");
        // A part declared larger than the scratch disk: refused before
        // anything is written.
        let (dir, file) = backup_with(|m| m.parts[0].size = 1 << 62);
        let e = verify(&file, &dir.path().join("s"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("free"), "{e}");
        // A part that is not what the manifest says: refused, named.
        let (dir, file) = backup_with(|m| m.parts[1].size += 1);
        let e = verify(&file, &dir.path().join("s"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("data/") && e.contains("manifest"), "{e}");
    }

    #[test]
    fn the_trailer_check_agrees_whatever_the_chunks() {
        let (_dir, file) = backup_with(|_| {});
        let good = std::fs::read(&file).unwrap();
        let feed = |bytes: &[u8], chunk: usize| {
            let mut c = TrailerCheck::default();
            for piece in bytes.chunks(chunk) {
                c.update(piece);
            }
            c.finish()
        };
        let body = good.len() as u64 - TRAILER_LEN;
        for chunk in [1, 7, 84, 85, 4096, good.len()] {
            assert_eq!(feed(&good, chunk), Ok(body), "chunks of {chunk}");
        }
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        assert!(feed(&flipped, 1000).unwrap_err().contains("damaged"));
        assert!(feed(&good[..good.len() - 1], 1000).is_err());
        assert!(feed(&good[..50], 10).unwrap_err().contains("cut short"));
    }
}
