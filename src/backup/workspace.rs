//! The export file of one workspace (`tmc workspace export`, `import`,
//! `move`).
//!
//! **Format** (`tmc-workspace/1`): a gzip stream, then the same trailer
//! line as a backup (the SHA-256 of every byte before it, so a flipped
//! byte or a cut is caught before anything is parsed). Inside the gzip:
//! the line `tmc-workspace/1`, then frames, each a tag byte, a big-endian
//! u32 length and that many bytes:
//!
//! - `H` once, first: the [`Header`] (JSON): the workspace, the shard it
//!   came from, the revision the export is consistent at, the time;
//! - `R` per stored key of the workspace, in key order: a big-endian u16
//!   key length, the key (the store's, `crate::store::keys`), one byte of
//!   encoding (0 raw, 1 JSON, 2 bincode) and the value as stored: an
//!   encrypted Secret stays encrypted, under the source shard's key, with
//!   its key as the associated data;
//! - `E` once, last: the [`Summary`] (JSON): the number of records, per
//!   resource, and the encryption keys the Secrets need.
//!
//! The records are written as the store lists them, so an export is never
//! held whole in memory; an import reads the file twice (check, then
//! write). The same `R` frames, without gzip, carry a batch of records
//! to the importing shard ([`encode_batch`], [`decode_batch`]).

use crate::store::digest::{encryption_key_of, hex};
use crate::store::{Encoding, Key};
use crate::util::BoxError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// The format this module writes and reads.
pub const FORMAT: &str = "tmc-workspace/1";
/// The largest frame read (a value is at most the API's 3 MiB body).
const MAX_FRAME: usize = 8 << 20;

/// Where an export comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// The workspace (`root:acme`).
    pub workspace: String,
    /// The shard it was exported from.
    pub shard: String,
    /// The revision every record is at.
    pub revision: u64,
    /// When (RFC 3339, UTC).
    pub created_at: String,
}

/// What an export holds, written after its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Records.
    pub records: u64,
    /// Records per resource (`deployments.apps`), placement decisions
    /// (`tmc:placements`, `tmc:placements-by-location`), sync records
    /// (`tmc:sync`), the dependants index (`tmc:dependants`) and the
    /// garbage collector's work items (`tmc:gc`).
    pub per_resource: BTreeMap<String, u64>,
    /// Values encrypted, per encryption key name.
    pub encryption_keys: BTreeMap<String, u64>,
}

impl Summary {
    /// Counts one record.
    pub fn count(&mut self, key: &Key, value: &[u8]) {
        self.records += 1;
        *self.per_resource.entry(kind_of(key)).or_default() += 1;
        if let Some(k) = encryption_key_of(value) {
            *self.encryption_keys.entry(k).or_default() += 1;
        }
    }
}

/// What [`Summary::per_resource`] counts `key` under.
fn kind_of(key: &Key) -> String {
    match key {
        Key::Object(o) => o.gr.to_string(),
        Key::Placement { .. } => "tmc:placements".into(),
        Key::PlacementAt { .. } => "tmc:placements-by-location".into(),
        Key::Sync { .. } => "tmc:sync".into(),
        Key::Dependant { .. } => "tmc:dependants".into(),
        Key::GcWork { .. } => "tmc:gc".into(),
    }
}

/// One stored key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The key.
    pub key: Key,
    /// How the value is encoded.
    pub encoding: Encoding,
    /// The value, as stored.
    pub value: Vec<u8>,
}

fn encoding_byte(e: Encoding) -> u8 {
    match e {
        Encoding::Raw => 0,
        Encoding::Json => 1,
        Encoding::Bincode => 2,
    }
}

fn write_frame(out: &mut impl Write, tag: u8, payload: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).map_err(|_| std::io::Error::other("a frame over 4 GiB"))?;
    out.write_all(&[tag])?;
    out.write_all(&len.to_be_bytes())?;
    for p in payload {
        out.write_all(p)?;
    }
    Ok(())
}

/// Appends the `R` frame of `item` to `out`.
fn write_item(out: &mut impl Write, item: &Item) -> std::io::Result<()> {
    let key = item.key.encode();
    let klen = u16::try_from(key.len()).map_err(|_| std::io::Error::other("a key over 64 KiB"))?;
    write_frame(
        out,
        b'R',
        &[
            &klen.to_be_bytes(),
            &key,
            &[encoding_byte(item.encoding)],
            &item.value,
        ],
    )
}

/// Reads one frame; `None` at a clean end.
fn read_frame(input: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>, String> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("a frame cut short".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(format!("a frame of {len} bytes (at most {MAX_FRAME})"));
    }
    let mut payload = vec![0u8; len];
    input
        .read_exact(&mut payload)
        .map_err(|e| format!("a frame cut short: {e}"))?;
    Ok(Some((head[0], payload)))
}

/// The item of an `R` frame's payload.
fn parse_item(payload: &[u8]) -> Result<Item, String> {
    let (klen, rest) = payload
        .split_first_chunk::<2>()
        .ok_or("a record without a key length")?;
    let klen = u16::from_be_bytes(*klen) as usize;
    if rest.len() < klen + 1 {
        return Err("a record cut short".into());
    }
    let (raw_key, rest) = rest.split_at(klen);
    let key = Key::decode(raw_key).ok_or_else(|| {
        format!(
            "a record with a key that is not tmc's: {}",
            crate::store::error::printable_key(raw_key)
        )
    })?;
    let encoding = match rest[0] {
        0 => Encoding::Raw,
        1 => Encoding::Json,
        2 => Encoding::Bincode,
        b => return Err(format!("record {key}: unknown encoding {b}")),
    };
    Ok(Item {
        key,
        encoding,
        value: rest[1..].to_vec(),
    })
}

/// Writes an export: [`Writer::new`], [`Writer::item`] per record,
/// [`Writer::finish`].
pub struct Writer<W: Write> {
    gz: flate2::write::GzEncoder<super::Hashing<W>>,
    summary: Summary,
}

impl<W: Write> Writer<W> {
    /// Starts an export of `header` into `out`.
    pub fn new(out: W, header: &Header) -> std::io::Result<Self> {
        let mut gz =
            flate2::write::GzEncoder::new(super::Hashing::new(out), flate2::Compression::fast());
        gz.write_all(FORMAT.as_bytes())?;
        gz.write_all(b"\n")?;
        write_frame(&mut gz, b'H', &[&serde_json::to_vec(header)?])?;
        Ok(Writer {
            gz,
            summary: Summary::default(),
        })
    }

    /// Writes one record.
    pub fn item(&mut self, item: &Item) -> std::io::Result<()> {
        self.summary.count(&item.key, &item.value);
        write_item(&mut self.gz, item)
    }

    /// Writes the summary and the trailer; returns the summary.
    pub fn finish(mut self) -> std::io::Result<Summary> {
        write_frame(&mut self.gz, b'E', &[&serde_json::to_vec(&self.summary)?])?;
        self.gz.finish()?.finish()?;
        Ok(self.summary)
    }
}

/// An export read and checked whole ([`read`]).
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where it comes from.
    pub header: Header,
    /// What it holds, counted while reading (equal to what it says).
    pub summary: Summary,
}

/// Reads the export `file` in order, handing each record to `each`:
/// the trailer is checked first (a flipped byte anywhere, a cut, a foreign
/// file), then the format line, the header, every record (its key must be
/// of the header's workspace) and the summary, which must count what was
/// read. Any error names the file and what is wrong.
pub fn read(
    file: &Path,
    mut each: impl FnMut(Item) -> Result<(), BoxError>,
) -> Result<Checked, BoxError> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let body_len = super::check_trailer(file).map_err(|e| e.replace("tmc backup", "tmc export"))?;
    let f = std::fs::File::open(file).map_err(|e| what(&e))?;
    let body = std::io::BufReader::new(f).take(body_len);
    let mut input = flate2::read::GzDecoder::new(body);
    let mut line = [0u8; FORMAT.len() + 1];
    input
        .read_exact(&mut line)
        .map_err(|_| what(&"not a tmc workspace export (no format line)"))?;
    if &line[..FORMAT.len()] != FORMAT.as_bytes() || line[FORMAT.len()] != b'\n' {
        return Err(what(&format!(
            "not a tmc workspace export: it does not begin with {FORMAT:?}"
        ))
        .into());
    }
    let frame = |input: &mut flate2::read::GzDecoder<_>| read_frame(input).map_err(|e| what(&e));
    let header: Header = match frame(&mut input)? {
        Some((b'H', p)) => {
            serde_json::from_slice(&p).map_err(|e| what(&format!("a damaged header: {e}")))?
        }
        _ => return Err(what(&"no header after the format line").into()),
    };
    let ws = crate::store::Workspace::parse(&header.workspace)
        .map_err(|e| what(&format!("the header's workspace: {e}")))?;
    let mut counted = Summary::default();
    let summary: Summary = loop {
        match frame(&mut input)? {
            Some((b'R', p)) => {
                let item = parse_item(&p)
                    .map_err(|e| what(&format!("record {}: {e}", counted.records + 1)))?;
                if item.key.workspace() != &ws {
                    return Err(what(&format!(
                        "record {} ({}) is not of workspace {}",
                        counted.records + 1,
                        item.key,
                        ws.as_str()
                    ))
                    .into());
                }
                counted.count(&item.key, &item.value);
                each(item).map_err(|e| what(&e))?;
            }
            Some((b'E', p)) => {
                break serde_json::from_slice(&p)
                    .map_err(|e| what(&format!("a damaged summary: {e}")))?
            }
            Some((t, _)) => return Err(what(&format!("an unknown frame {:?}", t as char)).into()),
            None => return Err(what(&"no summary: cut short").into()),
        }
    };
    if summary != counted {
        return Err(what(&format!(
            "the summary says {} records, {} were read",
            summary.records, counted.records
        ))
        .into());
    }
    let mut rest = Vec::new();
    input.read_to_end(&mut rest).map_err(|e| what(&e))?;
    if !rest.is_empty() {
        return Err(what(&format!("{} bytes after the summary", rest.len())).into());
    }
    Ok(Checked { header, summary })
}

/// The `R` frames of `items`, the body of one import batch.
pub fn encode_batch(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        // Writing to a Vec cannot fail; a key over 64 KiB cannot be
        // decoded from a store.
        let _ = write_item(&mut out, item);
    }
    out
}

/// The items of an import batch; an error names what is wrong.
pub fn decode_batch(mut body: &[u8]) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    while let Some((tag, p)) = read_frame(&mut body)? {
        if tag != b'R' {
            return Err(format!("an unknown frame {:?} in a batch", tag as char));
        }
        out.push(parse_item(&p).map_err(|e| format!("record {}: {e}", out.len() + 1))?);
    }
    Ok(out)
}

/// A digest of the records of an export (their keys and values, in
/// order): equal for two exports of the same state.
pub fn items_digest<'a>(items: impl IntoIterator<Item = &'a Item>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for i in items {
        let k = i.key.encode();
        h.update((k.len() as u64).to_be_bytes());
        h.update(&k);
        h.update((i.value.len() as u64).to_be_bytes());
        h.update(&i.value);
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GroupResource, ObjectKey, Workspace};

    fn item(ws: &str, name: &str, value: &[u8]) -> Item {
        let gr = GroupResource::new("", "configmaps").unwrap();
        Item {
            key: ObjectKey::namespaced(gr, Workspace::parse(ws).unwrap(), "default", name)
                .unwrap()
                .into(),
            encoding: Encoding::Json,
            value: value.to_vec(),
        }
    }

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            workspace: "root:a".into(),
            shard: "root".into(),
            revision: 7,
            created_at: "2026-12-07T00:00:00Z".into(),
        }
    }

    fn export(items: &[Item]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, &header()).unwrap();
        for i in items {
            w.item(i).unwrap();
        }
        w.finish().unwrap();
        out
    }

    fn read_all(bytes: &[u8]) -> Result<(Checked, Vec<Item>), String> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.tmcws");
        std::fs::write(&f, bytes).unwrap();
        let mut got = Vec::new();
        let c = read(&f, |i| {
            got.push(i);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok((c, got))
    }

    #[test]
    fn an_export_reads_back_and_any_damage_is_named() {
        let items = vec![
            item("root:a", "x", b"{\"a\":1}"),
            item("root:a", "y", b"k8s:enc:aesgcm:v1:key1:xyz"),
        ];
        let bytes = export(&items);
        let (c, got) = read_all(&bytes).unwrap();
        assert_eq!(got, items);
        assert_eq!(c.header, header());
        assert_eq!(c.summary.records, 2);
        assert_eq!(c.summary.per_resource["configmaps.core"], 2);
        assert_eq!(c.summary.encryption_keys["key1"], 1);
        // A flipped byte anywhere, a cut: the trailer says so first.
        for at in [0, bytes.len() / 2, bytes.len() - 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            let e = read_all(&bad).unwrap_err();
            assert!(
                e.contains("damaged") || e.contains("not a tmc"),
                "{at}: {e}"
            );
        }
        let e = read_all(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(e.contains("cut short") || e.contains("trailer"), "{e}");
        // A record of another workspace is refused, naming it.
        let bytes = export(&[item("root:b", "x", b"{}")]);
        let e = read_all(&bytes).unwrap_err();
        assert!(e.contains("is not of workspace root:a"), "{e}");
    }

    #[test]
    fn a_batch_round_trips_and_garbage_is_refused() {
        let items = vec![item("root:a", "x", b"{}"), item("root:a", "y", b"")];
        assert_eq!(decode_batch(&encode_batch(&items)).unwrap(), items);
        assert!(decode_batch(b"R\x00\x00\x00\x05ab")
            .unwrap_err()
            .contains("cut short"));
        assert!(decode_batch(b"R\x00\x00\x00\x04\x00\x01/\x01")
            .unwrap_err()
            .contains("not tmc's"));
        assert!(decode_batch(b"R\xff\xff\xff\xff")
            .unwrap_err()
            .contains("at most"));
        assert!(decode_batch(b"X\x00\x00\x00\x00")
            .unwrap_err()
            .contains("unknown frame"));
    }
}
