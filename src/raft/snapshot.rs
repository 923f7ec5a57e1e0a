//! Snapshots: a checkpoint of the store at the applied index, streamed to a
//! follower file by file in crc-checked chunks.
//!
//! **Taking.** When raft-rs asks for a snapshot ([`super::LogStore`]'s
//! `Storage::snapshot`), the engine writes a checkpoint of itself
//! ([`Engine::checkpoint`]; for RocksDB hard links to its table files plus
//! a copy of the small ones, after a flush) into `out-{index}-{id}` of the
//! node's snapshot directory, on the thread that applies, between two
//! applies: the checkpoint holds exactly the state at the applied index
//! (checked against the store's own record). The raft `Snapshot` message
//! carries only its [`Manifest`] (index, transfer id, file names and
//! lengths), never the data. The [`Checkpoint`] is handed to the transport
//! and its directory is removed when the transfer is over.
//!
//! **Streaming.** The transport sends the `MsgSnapshot` as an announce
//! frame ([`wire::encode_announce`]), then [`Checkpoint::frames`]: the
//! files in manifest order, read lazily, one piece of at most
//! [`wire::CHUNK_SIZE`] (1 MiB) per chunk frame, each with its own crc32
//! and the transfer id, chunk number and chunk count. Neither side holds
//! more than one chunk in memory.
//!
//! **Receiving.** [`Incoming`] writes each chunk into `in-{index}-{id}` of
//! the receiver's snapshot directory as it arrives. A chunk that fails its
//! checksum, arrives out of order, belongs to another transfer or does not
//! fit the manifest's file lengths abandons the whole transfer: the staging
//! directory is removed and the `MsgSnapshot` never reaches raft. Only a
//! transfer whose every file has its announced length becomes a [`Staged`]
//! snapshot, which the node checks once more before stepping it: the
//! checkpoint must open and hold the store at the snapshot's index
//! ([`verify`]; RocksDB also checks its block checksums while the install
//! reads). The leader sends a new snapshot when the follower still needs
//! one.
//!
//! **Installing** ([`super::LogStore::begin_install`] and
//! [`super::LogStore::finish_install`]) never holds the state in memory
//! either: the staged files are fsynced, a durable marker records the
//! install in progress, the replicated column families are replaced from
//! the opened checkpoint in batches of [`INSTALL_BATCH`] bytes
//! ([`copy_from`]), and one final durable batch moves the log position and
//! configuration and clears the marker. A replica that crashes in between
//! finishes the install from the staged checkpoint when it opens again,
//! before serving anything.
//!
//! **Readers during an install** never see the half-copied state: once
//! the marker is durable, the node hands the opened checkpoint to the
//! store ([`crate::store::Store::begin_replace`]), which serves every read
//! from it (the new state, complete) until the copy and the final batch
//! are done ([`crate::store::Store::finish_replace`]). The staging
//! directory is removed when the last read on the checkpoint ends.
//!
//! [`wire::encode_announce`]: super::wire::encode_announce
//! [`wire::CHUNK_SIZE`]: super::wire::CHUNK_SIZE

use super::storage::RAFT_META_PREFIX;
use super::wire;
use crate::store::{codec, Cf, Encoding, Engine, WriteBatch};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Format version of the manifest, kept in the envelope's create-revision
/// field. Version 1 was the whole state inline.
const FORMAT: u64 = 2;

/// The meta key under which the store keeps its applied index.
const STORE_APPLIED_KEY: &[u8] = b"applied_index";

/// Bytes of pairs copied from a snapshot per write batch while installing.
pub const INSTALL_BATCH: usize = 4 << 20;

fn corrupt(reason: String) -> crate::store::Error {
    crate::store::Error::Corrupt {
        cf: "snapshot",
        key: String::new(),
        reason,
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> crate::store::Error {
    crate::store::Error::engine(format!("{what} {}: {e}", path.display()))
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the checkpoint directory (no path separator).
    pub name: String,
    /// Length in bytes.
    pub len: u64,
}

/// What a raft `Snapshot` message carries as its data: which checkpoint,
/// and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The applied index the checkpoint reflects.
    pub index: u64,
    /// Transfer id, unique per checkpoint taken.
    pub id: u64,
    /// The checkpoint's files, in the order they are streamed.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Encodes the manifest (bincode in the store's checksummed envelope).
    pub fn encode(&self) -> Vec<u8> {
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("a manifest always encodes");
        codec::encode(Encoding::Bincode, FORMAT, self.index, &body)
    }

    /// Decodes and checks bytes produced by [`Manifest::encode`]; file names
    /// must be plain names, so a manifest cannot write outside its staging
    /// directory.
    pub fn decode(bytes: &[u8]) -> crate::store::Result<Manifest> {
        let env = codec::decode("snapshot", &[], bytes)?;
        if env.create_revision != FORMAT {
            return Err(corrupt(format!(
                "unknown snapshot format {}",
                env.create_revision
            )));
        }
        let (m, used): (Manifest, usize) =
            bincode::serde::decode_from_slice(&env.body, bincode::config::standard())
                .map_err(|e| corrupt(format!("undecodable snapshot manifest: {e}")))?;
        if used != env.body.len() {
            return Err(corrupt("trailing bytes after the snapshot manifest".into()));
        }
        if m.index != env.mod_revision {
            return Err(corrupt(format!(
                "manifest says index {}, envelope {}",
                m.index, env.mod_revision
            )));
        }
        for f in &m.files {
            let plain = !f.name.is_empty()
                && f.name != "."
                && f.name != ".."
                && !f.name.contains(['/', '\\', '\0']);
            if !plain {
                return Err(corrupt(format!("bad file name {:?} in a manifest", f.name)));
            }
        }
        Ok(m)
    }

    /// Chunks the files make at `chunk` bytes per chunk (pieces never span
    /// two files; an empty file takes none).
    pub fn chunk_count(&self, chunk: usize) -> u64 {
        self.files
            .iter()
            .map(|f| f.len.div_ceil(chunk as u64))
            .sum()
    }

    /// Bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }
}

/// Reads the store's applied index from `engine` (0 when none recorded).
pub fn store_applied(engine: &impl Engine) -> crate::store::Result<u64> {
    let Some(raw) = engine.get(Cf::Meta, STORE_APPLIED_KEY)? else {
        return Ok(0);
    };
    let env = codec::decode(Cf::Meta.name(), STORE_APPLIED_KEY, &raw)?;
    let bytes: [u8; 8] = env
        .body
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("applied index is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn next_id() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Unique per process and across restarts (the clock moves on).
    (nanos << 16) ^ (u64::from(std::process::id()) << 40) ^ SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A checkpoint taken for a follower. Its directory is removed when the
/// last holder drops it.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    manifest: Manifest,
}

impl Checkpoint {
    /// Checkpoints `engine`, which must be at applied index `index`, into a
    /// new directory under `root`.
    pub fn take(engine: &impl Engine, root: &Path, index: u64) -> crate::store::Result<Checkpoint> {
        let recorded = store_applied(engine)?;
        if recorded != index {
            return Err(crate::store::Error::engine(format!(
                "snapshot at index {index}, but the store has applied {recorded}"
            )));
        }
        std::fs::create_dir_all(root).map_err(|e| io("creating", root, e))?;
        let id = next_id();
        let dir = root.join(format!("out-{index}-{id:016x}"));
        engine.checkpoint(&dir)?;
        // From here on, Drop removes the directory whatever happens.
        let mut cp = Checkpoint {
            dir,
            manifest: Manifest {
                index,
                id,
                files: Vec::new(),
            },
        };
        let mut files = Vec::new();
        for item in std::fs::read_dir(&cp.dir).map_err(|e| io("listing", &cp.dir, e))? {
            let item = item.map_err(|e| io("listing", &cp.dir, e))?;
            let meta = item
                .metadata()
                .map_err(|e| io("reading", &item.path(), e))?;
            if !meta.is_file() {
                return Err(crate::store::Error::engine(format!(
                    "checkpoint {} holds a non-file {}",
                    cp.dir.display(),
                    item.path().display()
                )));
            }
            files.push(FileEntry {
                name: item.file_name().to_string_lossy().into_owned(),
                len: meta.len(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        cp.manifest.files = files;
        Ok(cp)
    }

    /// The manifest a `Snapshot` message carries for this checkpoint.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The checkpoint's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chunk frames of the files, read lazily, `chunk` bytes at most
    /// per piece.
    pub fn frames(&self, chunk: usize) -> ChunkFrames<'_> {
        ChunkFrames {
            cp: self,
            chunk: chunk.clamp(1, wire::MAX_CHUNK - 64),
            count: self
                .manifest
                .chunk_count(chunk.clamp(1, wire::MAX_CHUNK - 64)),
            file: 0,
            open: None,
            left: 0,
            seq: 0,
        }
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a snapshot checkpoint");
        }
    }
}

/// The chunk frames of a checkpoint's files ([`Checkpoint::frames`]).
pub struct ChunkFrames<'a> {
    cp: &'a Checkpoint,
    chunk: usize,
    count: u64,
    file: usize,
    open: Option<std::fs::File>,
    left: u64,
    seq: u64,
}

impl ChunkFrames<'_> {
    /// Number of chunk frames in all.
    pub fn chunks(&self) -> u64 {
        self.count
    }
}

impl Iterator for ChunkFrames<'_> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let files = &self.cp.manifest.files;
        while self.open.is_none() || self.left == 0 {
            self.open = None;
            let f = files.get(self.file)?;
            self.file += 1;
            if f.len == 0 {
                continue;
            }
            match std::fs::File::open(self.cp.dir.join(&f.name)) {
                Ok(file) => {
                    self.open = Some(file);
                    self.left = f.len;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        let n = (self.left as usize).min(self.chunk);
        let mut piece = vec![0u8; n];
        let file = self.open.as_mut().expect("a file is open");
        if let Err(e) = file.read_exact(&mut piece) {
            self.open = None;
            self.file = files.len();
            return Some(Err(e));
        }
        self.left -= n as u64;
        let frame = wire::chunk_frame(
            wire::FILE_FLAG,
            self.cp.manifest.id,
            self.seq as u32,
            self.count as u32,
            &piece,
        );
        self.seq += 1;
        Some(Ok(frame))
    }
}

/// Why a transfer was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A chunk failed its checks.
    #[error("damaged chunk: {0}")]
    Damaged(#[from] wire::WireError),
    /// A chunk that does not continue the transfer.
    #[error("chunk out of place: {0}")]
    Order(String),
    /// The staging directory could not be written.
    #[error("staging the snapshot: {0}")]
    Io(String),
}

/// A snapshot being received into a staging directory.
pub struct Incoming {
    manifest: Manifest,
    dir: PathBuf,
    file: usize,
    open: Option<std::fs::File>,
    left: u64,
    next: u64,
    count: u64,
}

impl Incoming {
    /// Starts receiving the checkpoint of `manifest` into a new directory
    /// under `root` (whose files are created empty).
    pub fn begin(root: &Path, manifest: Manifest) -> Result<Incoming, TransferError> {
        let dir = root.join(format!("in-{}-{:016x}", manifest.index, manifest.id));
        let shown = dir.display().to_string();
        let ioe = |e: std::io::Error| TransferError::Io(format!("{shown}: {e}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(ioe)?;
        }
        std::fs::create_dir_all(&dir).map_err(ioe)?;
        let count = manifest.chunk_count(wire::CHUNK_SIZE);
        let mut inc = Incoming {
            manifest,
            dir,
            file: 0,
            open: None,
            left: 0,
            next: 0,
            count,
        };
        for f in &inc.manifest.files {
            std::fs::File::create(inc.dir.join(&f.name)).map_err(ioe)?;
        }
        inc.advance()?;
        Ok(inc)
    }

    /// The transfer id.
    pub fn id(&self) -> u64 {
        self.manifest.id
    }

    /// Opens the next file that still needs bytes.
    fn advance(&mut self) -> Result<(), TransferError> {
        while self.left == 0 {
            self.open = None;
            let Some(f) = self.manifest.files.get(self.file) else {
                return Ok(());
            };
            self.file += 1;
            if f.len > 0 {
                let path = self.dir.join(&f.name);
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| TransferError::Io(format!("{}: {e}", path.display())))?;
                self.open = Some(file);
                self.left = f.len;
            }
        }
        Ok(())
    }

    /// Takes the next chunk frame; true when the transfer is complete.
    pub fn push(&mut self, frame: &[u8]) -> Result<bool, TransferError> {
        let c = wire::parse_chunk(frame)?;
        if !wire::is_file(frame) {
            return Err(TransferError::Order(
                "a message chunk inside a snapshot transfer".into(),
            ));
        }
        if c.id != self.manifest.id
            || u64::from(c.seq) != self.next
            || u64::from(c.count) != self.count
        {
            return Err(TransferError::Order(format!(
                "chunk {}/{} of transfer {:x}, expected {}/{} of {:x}",
                c.seq, c.count, c.id, self.next, self.count, self.manifest.id
            )));
        }
        if c.piece.is_empty() || c.piece.len() as u64 > self.left || self.open.is_none() {
            return Err(TransferError::Order(format!(
                "chunk {} of {} bytes does not fit the file lengths of the manifest",
                c.seq,
                c.piece.len()
            )));
        }
        let file = self.open.as_mut().expect("checked above");
        file.write_all(c.piece)
            .map_err(|e| TransferError::Io(format!("{}: {e}", self.dir.display())))?;
        self.left -= c.piece.len() as u64;
        self.next += 1;
        self.advance()?;
        Ok(self.is_complete())
    }

    fn is_complete(&self) -> bool {
        self.next == self.count && self.open.is_none() && self.file == self.manifest.files.len()
    }

    /// The staged snapshot, once every chunk arrived and every file has its
    /// announced length.
    pub fn finish(mut self) -> Result<Staged, TransferError> {
        if !self.is_complete() {
            return Err(TransferError::Order(format!(
                "transfer {:x} ended after {} of {} chunks",
                self.manifest.id, self.next, self.count
            )));
        }
        for f in &self.manifest.files {
            let path = self.dir.join(&f.name);
            let len = std::fs::metadata(&path)
                .map_err(|e| TransferError::Io(format!("{}: {e}", path.display())))?
                .len();
            if len != f.len {
                return Err(TransferError::Order(format!(
                    "{} has {len} bytes, the manifest says {}",
                    path.display(),
                    f.len
                )));
            }
        }
        let dir = std::mem::take(&mut self.dir);
        Ok(Staged {
            dir,
            manifest: self.manifest.clone(),
        })
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.open = None;
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A received, complete checkpoint in its staging directory. Dropped
/// without [`Staged::keep`], it removes the directory.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    manifest: Manifest,
}

impl Staged {
    /// The manifest it was received under.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The staging directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the staged files and the directory durable: every file in
    /// it, since opening the checkpoint ([`verify`]) lets the engine
    /// rewrite some (RocksDB replaces its manifest and log files).
    pub fn sync(&self) -> crate::store::Result<()> {
        let listing = std::fs::read_dir(&self.dir).map_err(|e| io("listing", &self.dir, e))?;
        for item in listing {
            let path = item.map_err(|e| io("listing", &self.dir, e))?.path();
            if path.is_file() {
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io("syncing", &path, e))?;
            }
        }
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", &self.dir, e))
    }

    /// Gives up ownership of the directory (an install in progress owns it
    /// now) and returns its path.
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.dir)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Checks that a staged checkpoint opens with the engine type of `engine`
/// and holds the store at its manifest's index.
pub fn verify<E: Engine>(engine: &E, staged: &Staged) -> crate::store::Result<()> {
    let cp = engine.open_checkpoint(staged.dir())?;
    let applied = store_applied(&cp)?;
    if applied != staged.manifest.index {
        return Err(corrupt(format!(
            "the checkpoint holds the store at index {applied}, the manifest says {}",
            staged.manifest.index
        )));
    }
    Ok(())
}

/// Replaces the replicated state of `engine` (every pair of `data` and
/// `changes`, every store `meta` record; never the raft layer's) by that of
/// `cp`, a staged checkpoint opened ([`Engine::open_checkpoint`]), in
/// batches of [`INSTALL_BATCH`] bytes written without fsync (the caller's
/// final batch syncs). Idempotent: run again after a crash, it gives the
/// same result. Readers must not read `engine` meanwhile: the store serves
/// them from `cp` ([`crate::store::Store::begin_replace`]).
pub fn copy_from<E: Engine>(engine: &E, cp: &E) -> crate::store::Result<()> {
    let mut wb = WriteBatch::new();
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
    engine.write(std::mem::take(&mut wb), false)?;
    let mut bytes = 0usize;
    for cf in [Cf::Data, Cf::Changes, Cf::Meta] {
        for item in cp.scan(cf, &[], &[])? {
            let (k, v) = item?;
            if cf == Cf::Meta && k.starts_with(RAFT_META_PREFIX) {
                continue;
            }
            bytes += k.len() + v.len();
            wb.put(cf, k, v);
            if bytes >= INSTALL_BATCH {
                engine.write(std::mem::take(&mut wb), false)?;
                bytes = 0;
            }
        }
    }
    if !wb.is_empty() {
        engine.write(wb, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryEngine, RocksEngine, RocksOptions, Store};

    fn manifest() -> Manifest {
        Manifest {
            index: 7,
            id: 99,
            files: vec![
                FileEntry {
                    name: "a".into(),
                    len: 3,
                },
                FileEntry {
                    name: "b".into(),
                    len: 0,
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trip_and_damage() {
        let bytes = manifest().encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest());
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Manifest::decode(&bad).is_err(), "flipped byte {i} accepted");
        }
        assert!(Manifest::decode(b"").is_err());
        for name in ["", "..", "../x", "a/b"] {
            let mut m = manifest();
            m.files[0].name = name.into();
            assert!(
                Manifest::decode(&m.encode()).is_err(),
                "file name {name:?} accepted"
            );
        }
    }

    /// A RocksDB store at applied index 5 with `n` values of 4 KiB of
    /// incompressible bytes.
    fn rocks_store(dir: &Path, n: usize) -> Store<std::sync::Arc<RocksEngine>> {
        let engine = std::sync::Arc::new(
            RocksEngine::open(&dir.join("db"), &RocksOptions::default()).unwrap(),
        );
        let store = Store::open(engine.clone(), Default::default()).unwrap();
        let mut wb = WriteBatch::new();
        let mut x: u64 = 1;
        for i in 0..n {
            let v: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            wb.put(Cf::Data, format!("/k{i:06}").into_bytes(), v);
        }
        engine.write(wb, false).unwrap();
        store.apply_noop(5).unwrap();
        store
    }

    fn scan(e: &impl Engine, cf: Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        e.scan(cf, &[], &[]).unwrap().map(|r| r.unwrap()).collect()
    }

    fn transfer(
        cp: &Checkpoint,
        root: &Path,
        damage: Option<usize>,
    ) -> Result<Staged, TransferError> {
        let frames = cp.frames(wire::CHUNK_SIZE);
        assert_eq!(frames.chunks(), cp.manifest().chunk_count(wire::CHUNK_SIZE));
        let mut inc = Incoming::begin(root, cp.manifest().clone())?;
        for (i, f) in frames.enumerate() {
            let mut f = f.unwrap();
            if damage == Some(i) {
                let last = f.len() - 1;
                f[last] ^= 0x10;
            }
            inc.push(&f)?;
        }
        inc.finish()
    }

    #[test]
    fn a_checkpoint_streams_in_chunks_and_installs_elsewhere() {
        let tmp = tempfile::tempdir().unwrap();
        let store = rocks_store(tmp.path(), 2500); // ~10 MiB
        let engine = store.engine();
        assert!(Checkpoint::take(engine, &tmp.path().join("snap"), 4).is_err());
        let cp = Checkpoint::take(engine, &tmp.path().join("snap"), 5).unwrap();
        let chunks = cp.manifest().chunk_count(wire::CHUNK_SIZE);
        assert!(chunks >= 8, "only {chunks} chunks");
        assert!(cp.manifest().total_bytes() > 8 << 20);

        // A follower with other data.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let dst = std::sync::Arc::new(
            RocksEngine::open(&other.join("db"), &RocksOptions::default()).unwrap(),
        );
        let mut wb = WriteBatch::new();
        wb.put(Cf::Data, b"/old".to_vec(), b"x".to_vec());
        wb.put(Cf::Meta, b"raft_hard_state".to_vec(), b"keep".to_vec());
        dst.write(wb, false).unwrap();
        let inbox = other.join("snap");

        // A damaged chunk in the middle refuses the whole transfer and
        // leaves no staging directory behind.
        let err = transfer(&cp, &inbox, Some(chunks as usize / 2)).unwrap_err();
        assert!(matches!(err, TransferError::Damaged(_)), "{err}");
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
        // So does a missing chunk.
        let mut inc = Incoming::begin(&inbox, cp.manifest().clone()).unwrap();
        let err = cp
            .frames(wire::CHUNK_SIZE)
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .try_for_each(|(_, f)| inc.push(&f.unwrap()).map(|_| ()))
            .unwrap_err();
        assert!(matches!(err, TransferError::Order(_)), "{err}");
        drop(inc);
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
        // A transfer cut short is not a snapshot.
        let mut inc = Incoming::begin(&inbox, cp.manifest().clone()).unwrap();
        for f in cp.frames(wire::CHUNK_SIZE).take(2) {
            inc.push(&f.unwrap()).unwrap();
        }
        assert!(inc.finish().is_err());
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
        assert_eq!(
            scan(&*dst, Cf::Data),
            vec![(b"/old".to_vec(), b"x".to_vec())]
        );

        // The undamaged transfer installs.
        let staged = transfer(&cp, &inbox, None).unwrap();
        verify(&dst, &staged).unwrap();
        // Opening it let RocksDB rewrite files; syncing still works.
        staged.sync().unwrap();
        let cp_engine = dst.open_checkpoint(staged.dir()).unwrap();
        copy_from(&dst, &cp_engine).unwrap();
        drop(cp_engine);
        assert_eq!(scan(&*dst, Cf::Data), scan(engine, Cf::Data));
        assert_eq!(store_applied(&dst).unwrap(), 5);
        let metas = scan(&*dst, Cf::Meta);
        assert!(metas.iter().any(|(k, _)| k == b"raft_hard_state"));
        drop(staged);
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);

        // The leader's checkpoint directory goes with the checkpoint.
        let dir = cp.dir().to_path_buf();
        assert!(dir.exists());
        drop(cp);
        assert!(!dir.exists());
    }

    #[test]
    fn memory_checkpoints_stream_too() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = MemoryEngine::new();
        let store = Store::open(engine.clone(), Default::default()).unwrap();
        let mut wb = WriteBatch::new();
        wb.put(Cf::Data, b"/a".to_vec(), b"1".to_vec());
        engine.write(wb, false).unwrap();
        store.apply_noop(3).unwrap();
        let cp = Checkpoint::take(&engine, tmp.path(), 3).unwrap();
        let staged = transfer(&cp, &tmp.path().join("in"), None).unwrap();
        let dst = MemoryEngine::new();
        verify(&dst, &staged).unwrap();
        copy_from(&dst, &dst.open_checkpoint(staged.dir()).unwrap()).unwrap();
        assert_eq!(scan(&dst, Cf::Data), vec![(b"/a".to_vec(), b"1".to_vec())]);
    }

    /// Readers of a follower's store while it installs a snapshot see its
    /// old state or the new one, never the half-copied one in between:
    /// the store serves them from the opened checkpoint until the live
    /// engine holds the same state.
    #[test]
    fn readers_during_an_install_see_the_old_state_or_the_new_one() {
        use crate::store::{
            Expectation, GroupResource, Key, ListOptions, ObjectKey, Prefix, Txn, TxnOp, Workspace,
        };
        let tmp = tempfile::tempdir().unwrap();
        let gr = GroupResource::new("", "configmaps").unwrap();
        let root = Workspace::parse("root").unwrap();
        let key = |ns: &str, name: &str| -> Key {
            ObjectKey::namespaced(gr.clone(), root.clone(), ns, name)
                .unwrap()
                .into()
        };
        let open = |name: &str| {
            let e = std::sync::Arc::new(
                RocksEngine::open(&tmp.path().join(name), &RocksOptions::default()).unwrap(),
            );
            let s = Store::open(
                e.clone(),
                crate::store::StoreOptions {
                    sync: false,
                    changes_retention: 1_000,
                },
            )
            .unwrap();
            (e, s)
        };
        let put = |s: &Store<std::sync::Arc<RocksEngine>>, k: Key, v: Vec<u8>| {
            s.commit(Txn::new(vec![TxnOp::put_json(k, v, Expectation::Any)]))
                .unwrap();
        };
        // The follower: five probes holding "old".
        let (live, follower) = open("follower");
        for i in 0..5 {
            put(
                &follower,
                key("z-probe", &format!("p{i}")),
                b"\"old\"".to_vec(),
            );
        }
        // The leader: 16 MiB in a namespace that sorts before the probes
        // (copied first), the probes holding "new".
        let (leader_engine, leader) = open("leader");
        for i in 0..64u64 {
            let v = serde_json::to_vec(&crate::testcluster::noise(i, 256 << 10)).unwrap();
            put(&leader, key("a-bulk", &format!("b{i:03}")), v);
        }
        for i in 0..5 {
            put(
                &leader,
                key("z-probe", &format!("p{i}")),
                b"\"new\"".to_vec(),
            );
        }
        let index = leader.applied_index();
        let cp = Checkpoint::take(&leader_engine, &tmp.path().join("out"), index).unwrap();
        let staged = transfer(&cp, &tmp.path().join("in"), None).unwrap();
        let follower = std::sync::Arc::new(follower);
        let probe = Prefix::namespace(&gr, &root, "z-probe").unwrap();
        let states = |s: &Store<std::sync::Arc<RocksEngine>>| {
            let page = s.list(&probe, &ListOptions::default()).unwrap();
            let values: Vec<Vec<u8>> = page.items.into_iter().map(|r| r.value).collect();
            (page.revision, values)
        };
        let old = states(&follower);
        let new = states(&leader);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (f, stop, probe) = (follower.clone(), stop.clone(), probe.clone());
            let (old, new) = (old.clone(), new.clone());
            std::thread::spawn(move || {
                let mut seen = (0usize, 0usize);
                while !stop.load(Ordering::SeqCst) {
                    let page = f.list(&probe, &ListOptions::default()).unwrap();
                    let got = (
                        page.revision,
                        page.items.into_iter().map(|r| r.value).collect::<Vec<_>>(),
                    );
                    if got == old {
                        seen.0 += 1;
                    } else if got == new {
                        seen.1 += 1;
                    } else {
                        panic!(
                            "a list saw neither state: revision {}, {} items",
                            got.0,
                            got.1.len()
                        );
                    }
                }
                seen
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The node's install: open the checkpoint, serve reads from it,
        // copy, switch back.
        let cp_engine = live.open_checkpoint(staged.dir()).unwrap();
        let dir = staged.keep();
        let gone = dir.clone();
        follower
            .begin_replace(
                cp_engine.clone(),
                Box::new(move || {
                    let _ = std::fs::remove_dir_all(&gone);
                }),
            )
            .unwrap();
        copy_from(&live, &cp_engine).unwrap();
        drop(cp_engine);
        follower.finish_replace().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, Ordering::SeqCst);
        let (saw_old, saw_new) = reader.join().unwrap();
        assert!(saw_old > 0 && saw_new > 0, "{saw_old} old, {saw_new} new");
        assert_eq!(states(&follower), new);
        // The staging directory went with the last reader.
        assert!(!dir.exists());
    }
}
