//! The value envelope.
//!
//! Every value in the `data` and `changes` column families is wrapped:
//!
//! ```text
//! offset size field
//! 0      2    magic b"tV"
//! 2      1    format version (1)
//! 3      1    body encoding (0 raw, 1 JSON, 2 bincode)
//! 4      8    create revision, big-endian
//! 12     8    mod revision, big-endian
//! 20     4    crc32 (IEEE) of bytes 0..20 followed by the body
//! 24     ..   body
//! ```
//!
//! The checksum covers the header, so a flipped bit in a revision is caught
//! as surely as one in the body. Decoding never panics: a short, foreign or
//! damaged value is an [`Error::Corrupt`] that names the key.

use super::error::{printable_key, Error, Result};

/// Magic bytes at the start of every envelope.
pub const MAGIC: [u8; 2] = *b"tV";
/// Current format version.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 24;

/// How the body of a value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Encoding {
    /// Opaque bytes.
    Raw = 0,
    /// Compact JSON (API objects).
    Json = 1,
    /// bincode 2 (internal state records).
    Bincode = 2,
}

impl Encoding {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Encoding::Raw),
            1 => Some(Encoding::Json),
            2 => Some(Encoding::Bincode),
            _ => None,
        }
    }
}

/// A decoded value: body plus its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Body encoding.
    pub encoding: Encoding,
    /// Revision that created the key (kept across updates).
    pub create_revision: u64,
    /// Revision of the last change.
    pub mod_revision: u64,
    /// The body.
    pub body: Vec<u8>,
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(body);
    h.finalize()
}

/// Encodes an envelope.
pub fn encode(encoding: Encoding, create_revision: u64, mod_revision: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(encoding as u8);
    out.extend_from_slice(&create_revision.to_be_bytes());
    out.extend_from_slice(&mod_revision.to_be_bytes());
    let crc = checksum(&out[..20], body);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes an envelope read from column family `cf` at `key`.
pub fn decode(cf: &'static str, key: &[u8], value: &[u8]) -> Result<Envelope> {
    let (encoding, create_revision, mod_revision, body) = check(cf, key, value)?;
    Ok(Envelope {
        encoding,
        create_revision,
        mod_revision,
        body: body.to_vec(),
    })
}

/// Checks the envelope of the value at `key` of `cf` without copying it:
/// its encoding, revisions and body.
pub fn check<'v>(
    cf: &'static str,
    key: &[u8],
    value: &'v [u8],
) -> Result<(Encoding, u64, u64, &'v [u8])> {
    let corrupt = |reason: String| Error::Corrupt {
        cf,
        key: printable_key(key),
        reason,
    };
    if value.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "value is {} bytes, shorter than the {HEADER_LEN}-byte header",
            value.len()
        )));
    }
    if value[..2] != MAGIC {
        return Err(corrupt(format!("bad magic {:02x?}", &value[..2])));
    }
    let stored = u32::from_be_bytes(value[20..24].try_into().expect("4 bytes"));
    let actual = checksum(&value[..20], &value[HEADER_LEN..]);
    if stored != actual {
        return Err(corrupt(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        )));
    }
    if value[2] != VERSION {
        return Err(corrupt(format!("unknown format version {}", value[2])));
    }
    let encoding = Encoding::from_byte(value[3])
        .ok_or_else(|| corrupt(format!("unknown encoding {}", value[3])))?;
    Ok((
        encoding,
        u64::from_be_bytes(value[4..12].try_into().expect("8 bytes")),
        u64::from_be_bytes(value[12..20].try_into().expect("8 bytes")),
        &value[HEADER_LEN..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = encode(Encoding::Json, 3, 9, br#"{"a":1}"#);
        let e = decode("data", b"k", &v).unwrap();
        assert_eq!(
            e,
            Envelope {
                encoding: Encoding::Json,
                create_revision: 3,
                mod_revision: 9,
                body: br#"{"a":1}"#.to_vec()
            }
        );
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let v = encode(Encoding::Json, 3, 9, br#"{"kind":"Deployment"}"#);
        for i in 0..v.len() {
            for bit in 0..8 {
                let mut bad = v.clone();
                bad[i] ^= 1 << bit;
                let err = decode("data", b"/registry/k", &bad).unwrap_err();
                let msg = err.to_string();
                assert!(msg.contains("/registry/k"), "{msg}");
                assert!(matches!(err, Error::Corrupt { .. }));
            }
        }
        assert!(decode("data", b"k", &v[..10])
            .unwrap_err()
            .to_string()
            .contains("shorter"));
        assert!(decode("data", b"k", &v[..HEADER_LEN + 2])
            .unwrap_err()
            .to_string()
            .contains("checksum"));
    }
}
