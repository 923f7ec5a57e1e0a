//! The wire format of raft messages between replicas.
//!
//! ```text
//! offset size field
//! 0      4    length of the body, big-endian
//! 4      4    crc32 (IEEE) of the body
//! 8      ..   body: the protobuf-encoded eraftpb::Message
//! ```
//!
//! A frame that is short, too long, fails its checksum or does not decode is
//! an error; the receiver logs and drops it (raft retransmits), it never
//! reaches raft.
//!
//! **Chunks.** A message whose frame is larger than a chunk (1 MiB; in
//! practice a snapshot) travels as a series of chunk frames, so no single
//! frame on the wire is large and each piece is checked on its own:
//!
//! ```text
//! offset size field
//! 0      4    length of the chunk body | 0x8000_0000 (the chunk flag)
//! 4      4    crc32 (IEEE) of the chunk body
//! 8      8    transfer id, big-endian
//! 16     4    chunk number, from 0
//! 20     4    number of chunks
//! 24     ..   the next piece of the whole message's frame
//! ```
//!
//! [`encode_chunked`] splits, [`Reassembler`] (one per connection) joins:
//! chunks of a transfer arrive in order on one connection; a chunk that
//! fails its checksum, or arrives out of order, abandons the transfer (the
//! later chunks of it are dropped too) and nothing of it reaches raft; the
//! leader sends a new snapshot when the follower still needs one. The
//! reassembled frame is an ordinary frame, checked again as a whole.
//!
//! **Snapshot transfers** use a second flag, [`FILE_FLAG`] (bit 30 of the
//! length field): on an ordinary frame it marks the `MsgSnapshot` that
//! announces a transfer ([`encode_announce`], [`decode_announce`]; neither
//! decoder takes the other's frames, so a flipped flag is caught); on a
//! chunk frame, a piece of the checkpoint's files ([`chunk_frame`],
//! [`parse_chunk`]), in the chunk layout above. [`super::snapshot`]
//! streams and receives them.
//!
//! The simulated network uses the same frames, so tests cover
//! the decoding path; the TCP transport reads the 8-byte header first, then
//! the body.

use protobuf::Message as _;
use raft::eraftpb::Message;

/// Header length in bytes.
pub const HEADER_LEN: usize = 8;

/// Largest body of one frame on the wire, ordinary or chunk: a chunk
/// ([`CHUNK_SIZE`]) and its header, with room to spare. A header that
/// announces more closes the connection before anything is allocated.
pub const MAX_FRAME: usize = CHUNK_SIZE + (64 << 10);

/// Largest message accepted whole: an ordinary frame, or the frame its
/// chunks reassemble into. Raft's appends are cut at 1 MiB
/// (`max_size_per_msg`) plus one entry, whose transactions the API bounds
/// at a few MiB; a snapshot's data never travels in its message (only its
/// manifest does).
pub const MAX_MESSAGE: usize = 64 << 20;

/// Marks a chunk frame in the length field.
pub const CHUNK_FLAG: u32 = 1 << 31;

/// Marks a snapshot transfer in the length field: on an ordinary frame, a
/// `MsgSnapshot` whose checkpoint files follow as chunk frames; on a chunk
/// frame (with [`CHUNK_FLAG`]), a piece of those files (see
/// [`super::snapshot`]).
pub const FILE_FLAG: u32 = 1 << 30;

/// Messages whose frame is larger than this travel in chunks of this size.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Largest chunk body accepted (the wire bound of every frame).
pub const MAX_CHUNK: usize = MAX_FRAME;

/// Bytes of a chunk body before its piece: transfer id, number, count.
const CHUNK_HEADER: usize = 16;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header says.
    #[error("truncated frame: {have} bytes, expected {want}")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the header announces.
        want: usize,
    },
    /// The header announces more than [`MAX_FRAME`] bytes (on the wire) or
    /// [`MAX_MESSAGE`] (a whole message).
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// The body does not match its checksum.
    #[error("frame checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the body received.
        computed: u32,
    },
    /// The body is not a raft message.
    #[error("undecodable raft message: {0}")]
    Decode(String),
    /// The message could not be encoded.
    #[error("unencodable raft message: {0}")]
    Encode(String),
    /// A chunk that does not continue the transfer in progress.
    #[error("chunk out of order: {0}")]
    ChunkOrder(String),
}

/// Encodes a message as one frame.
pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    let body = msg
        .write_to_bytes()
        .map_err(|e| WireError::Encode(e.to_string()))?;
    if body.len() > MAX_MESSAGE {
        return Err(WireError::TooLong(body.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body length a frame header on the wire announces (an ordinary
/// frame's or a chunk's), at most [`MAX_FRAME`]: a sender cuts anything
/// larger into chunks, so a larger header means a stream out of step or a
/// hostile peer, and the connection is closed before anything is read.
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, WireError> {
    announced_len(header, MAX_FRAME)
}

fn announced_len(header: &[u8; HEADER_LEN], limit: usize) -> Result<usize, WireError> {
    let [a, b, c, d, ..] = *header;
    let raw = u32::from_be_bytes([a, b, c, d]);
    let len = (raw & !(CHUNK_FLAG | FILE_FLAG)) as usize;
    if len > limit {
        return Err(WireError::TooLong(len));
    }
    Ok(len)
}

/// True when the frame (or its header) is a chunk of a larger message.
pub fn is_chunk(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x80 != 0)
}

/// True when the frame (or its header) belongs to a snapshot transfer: the
/// announcing `MsgSnapshot` or a chunk of its files.
pub fn is_file(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x40 != 0)
}

/// Encodes a `MsgSnapshot` as the frame that announces a snapshot transfer:
/// an ordinary frame with [`FILE_FLAG`]; the checkpoint's file chunks follow.
pub fn encode_announce(msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut frame = encode(msg)?;
    frame[0] |= 0x40;
    Ok(frame)
}

/// Builds one chunk frame: `flags` (| [`CHUNK_FLAG`]) in the length field,
/// crc32 of the body, then transfer id, chunk number, chunk count, piece.
pub fn chunk_frame(flags: u32, id: u64, seq: u32, count: u32, piece: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(CHUNK_HEADER + piece.len());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(&count.to_be_bytes());
    body.extend_from_slice(piece);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32 | CHUNK_FLAG | flags).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A chunk frame that passed its checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Transfer id.
    pub id: u64,
    /// Chunk number, from 0.
    pub seq: u32,
    /// Number of chunks of the transfer.
    pub count: u32,
    /// The piece it carries.
    pub piece: &'a [u8],
}

/// Checks a chunk frame (announced length, crc32 of the body, header) and
/// splits it.
pub fn parse_chunk(frame: &[u8]) -> Result<Chunk<'_>, WireError> {
    let body = &frame[HEADER_LEN.min(frame.len())..];
    let stored = frame
        .get(4..8)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        .unwrap_or(0);
    let computed = crc32fast::hash(body);
    let announced = frame
        .get(..HEADER_LEN)
        .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
        .and_then(|h| body_len(&h).ok());
    if !is_chunk(frame)
        || body.len() < CHUNK_HEADER
        || stored != computed
        || announced != Some(body.len())
    {
        return Err(WireError::Checksum { stored, computed });
    }
    Ok(Chunk {
        id: u64::from_be_bytes(body[..8].try_into().expect("8 bytes")),
        seq: u32::from_be_bytes(body[8..12].try_into().expect("4 bytes")),
        count: u32::from_be_bytes(body[12..16].try_into().expect("4 bytes")),
        piece: &body[CHUNK_HEADER..],
    })
}

/// Encodes a message as one frame, or, when that frame is larger than
/// `chunk_size`, as chunk frames carrying it in order.
pub fn encode_chunked(msg: &Message, chunk_size: usize) -> Result<Vec<Vec<u8>>, WireError> {
    static TRANSFER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let frame = encode(msg)?;
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK - CHUNK_HEADER);
    if frame.len() <= chunk_size {
        return Ok(vec![frame]);
    }
    // Unique per process; a restart makes the receiver drop the old
    // connection anyway.
    let id = TRANSFER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ^ (u64::from(std::process::id()) << 40);
    let pieces: Vec<&[u8]> = frame.chunks(chunk_size).collect();
    let count = pieces.len() as u32;
    Ok(pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| chunk_frame(0, id, i as u32, count, piece))
        .collect())
}

/// A transfer being reassembled.
struct Transfer {
    id: u64,
    next: u32,
    count: u32,
    buf: Vec<u8>,
}

/// Joins chunk frames back into whole frames; one per inbound connection.
#[derive(Default)]
pub struct Reassembler {
    transfer: Option<Transfer>,
    /// A transfer given up on: its remaining chunks are dropped quietly.
    abandoned: Option<u64>,
}

/// What [`Reassembler::push`] made of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A whole frame, ready for [`decode`]; `chunks` pieces made it (1 for
    /// an ordinary frame).
    Frame {
        /// The frame.
        frame: Vec<u8>,
        /// How many chunks carried it.
        chunks: u32,
    },
    /// A chunk was taken; more are needed.
    Partial,
    /// A chunk of an abandoned transfer, dropped.
    Dropped,
}

impl Reassembler {
    /// Takes the next frame of the connection. Ordinary frames pass through
    /// unchecked ([`decode`] checks them). A chunk is checked: a bad one
    /// abandons its transfer and is an error.
    pub fn push(&mut self, frame: Vec<u8>) -> Result<Assembled, WireError> {
        if !is_chunk(&frame) {
            return Ok(Assembled::Frame { frame, chunks: 1 });
        }
        let Chunk {
            id,
            seq,
            count,
            piece,
        } = match parse_chunk(&frame) {
            Ok(c) => c,
            Err(e) => {
                // The transfer id itself may be damaged: give up whatever is
                // in progress.
                if let Some(t) = self.transfer.take() {
                    self.abandoned = Some(t.id);
                }
                return Err(e);
            }
        };
        if self.abandoned == Some(id) {
            return Ok(Assembled::Dropped);
        }
        if seq == 0 {
            // A new transfer replaces an unfinished one.
            self.transfer = Some(Transfer {
                id,
                next: 0,
                count,
                buf: Vec::new(),
            });
        }
        let t = match self.transfer.as_mut() {
            Some(t) if t.id == id && t.next == seq && t.count == count && seq < count => t,
            _ => {
                self.transfer = None;
                self.abandoned = Some(id);
                return Err(WireError::ChunkOrder(format!(
                    "chunk {seq}/{count} of transfer {id:x} does not continue the transfer in progress"
                )));
            }
        };
        // Grown chunk by chunk, never past one whole message.
        if t.buf.len() + piece.len() > HEADER_LEN + MAX_MESSAGE {
            self.transfer = None;
            self.abandoned = Some(id);
            return Err(WireError::TooLong(HEADER_LEN + MAX_MESSAGE));
        }
        t.buf.extend_from_slice(piece);
        t.next += 1;
        if t.next < t.count {
            return Ok(Assembled::Partial);
        }
        let chunks = t.count;
        let frame = std::mem::take(&mut t.buf);
        self.transfer = None;
        Ok(Assembled::Frame { frame, chunks })
    }
}

/// Decodes one whole frame. A frame with [`FILE_FLAG`] is refused: only
/// [`decode_announce`] takes those.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    if is_file(frame) {
        return Err(WireError::Decode(
            "a snapshot announce where an ordinary frame belongs".into(),
        ));
    }
    decode_any(frame)
}

/// Decodes the frame that announces a snapshot transfer
/// ([`encode_announce`]): it must carry [`FILE_FLAG`] and a `MsgSnapshot`.
pub fn decode_announce(frame: &[u8]) -> Result<Message, WireError> {
    if !is_file(frame) {
        return Err(WireError::Decode("not a snapshot announce".into()));
    }
    let msg = decode_any(frame)?;
    if msg.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
        return Err(WireError::Decode(format!(
            "a snapshot announce carrying {:?}",
            msg.get_msg_type()
        )));
    }
    Ok(msg)
}

fn decode_any(frame: &[u8]) -> Result<Message, WireError> {
    let header: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Truncated {
            have: frame.len(),
            want: HEADER_LEN,
        })?;
    if is_chunk(header) {
        return Err(WireError::Decode(
            "a chunk frame must be reassembled before decoding".into(),
        ));
    }
    let len = announced_len(header, MAX_MESSAGE)?;
    let body = &frame[HEADER_LEN..];
    if body.len() != len {
        return Err(WireError::Truncated {
            have: frame.len(),
            want: HEADER_LEN + len,
        });
    }
    let [_, _, _, _, a, b, c, d] = *header;
    let stored = u32::from_be_bytes([a, b, c, d]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(WireError::Checksum { stored, computed });
    }
    Message::parse_from_bytes(body).map_err(|e| WireError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 3;
        m.index = 40;
        let frame = encode(&m).unwrap();
        assert_eq!(decode(&frame).unwrap(), m);
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 0..frame.len() {
            assert!(decode(&frame[..cut]).is_err());
        }
    }

    fn snapshot_message(bytes: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = 4;
        let snap = m.mut_snapshot();
        snap.mut_metadata().index = 77;
        snap.data = (0..bytes)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        m
    }

    fn reassemble(frames: Vec<Vec<u8>>) -> Vec<Result<Assembled, WireError>> {
        let mut r = Reassembler::default();
        frames.into_iter().map(|f| r.push(f)).collect()
    }

    #[test]
    fn a_snapshot_announce_is_told_apart_from_an_ordinary_frame() {
        let m = snapshot_message(100);
        let announce = encode_announce(&m).unwrap();
        assert!(is_file(&announce) && !is_chunk(&announce));
        assert_eq!(decode_announce(&announce).unwrap(), m);
        // Neither decoder takes the other's frame, so a flipped flag bit is
        // caught either way.
        assert!(decode(&announce).is_err());
        assert!(decode_announce(&encode(&m).unwrap()).is_err());
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        let mut flagged = encode(&append).unwrap();
        flagged[0] |= 0x40;
        assert!(
            decode_announce(&flagged).is_err(),
            "only a MsgSnapshot announces"
        );
        let chunk = chunk_frame(FILE_FLAG, 7, 0, 1, b"piece");
        assert!(is_file(&chunk) && is_chunk(&chunk));
        let c = parse_chunk(&chunk).unwrap();
        assert_eq!((c.id, c.seq, c.count, c.piece), (7, 0, 1, &b"piece"[..]));
    }

    #[test]
    fn small_messages_are_one_ordinary_frame() {
        let m = snapshot_message(100);
        let frames = encode_chunked(&m, 1024).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(!is_chunk(&frames[0]));
        assert_eq!(frames[0], encode(&m).unwrap());
    }

    #[test]
    fn a_large_message_travels_in_checked_chunks() {
        let m = snapshot_message(10_000);
        let frames = encode_chunked(&m, 1000).unwrap();
        assert!(frames.len() >= 10, "{} chunks", frames.len());
        for f in &frames {
            assert!(is_chunk(f));
            assert!(f.len() <= 1000 + HEADER_LEN + CHUNK_HEADER);
            assert!(decode(f).is_err(), "a chunk is not a message");
            let header: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().unwrap();
            assert_eq!(body_len(&header).unwrap(), f.len() - HEADER_LEN);
        }
        let n = frames.len() as u32;
        let out = reassemble(frames);
        for r in &out[..out.len() - 1] {
            assert_eq!(r, &Ok(Assembled::Partial));
        }
        match out.last().unwrap() {
            Ok(Assembled::Frame { frame, chunks }) => {
                assert_eq!(*chunks, n);
                assert_eq!(decode(frame).unwrap(), m);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_corrupt_chunk_is_refused_and_its_transfer_abandoned() {
        let m = snapshot_message(10_000);
        for victim in [0usize, 3, 10] {
            for byte in [2usize, 9, 30, 500] {
                let mut frames = encode_chunked(&m, 1000).unwrap();
                let victim = victim.min(frames.len() - 1);
                let at = byte.min(frames[victim].len() - 1);
                frames[victim][at] ^= 0x10;
                let out = reassemble(frames);
                assert!(out[victim].is_err(), "chunk {victim} byte {at}: {out:?}");
                assert!(
                    !out.iter().any(|r| matches!(r, Ok(Assembled::Frame { .. }))),
                    "a damaged transfer was delivered (chunk {victim} byte {at})"
                );
            }
        }
        // A missing chunk: the next one is out of order, nothing delivered.
        let mut frames = encode_chunked(&m, 1000).unwrap();
        frames.remove(4);
        let out = reassemble(frames);
        assert!(matches!(out[4], Err(WireError::ChunkOrder(_))));
        assert!(!out.iter().any(|r| matches!(r, Ok(Assembled::Frame { .. }))));
        // After a damaged transfer, the next one on the same connection
        // goes through, and ordinary frames pass between.
        let mut r = Reassembler::default();
        let mut bad = encode_chunked(&m, 1000).unwrap();
        bad[1][20] ^= 1;
        let mut last = None;
        for f in bad
            .into_iter()
            .chain(encode_chunked(&snapshot_message(10), 1000).unwrap())
            .chain(encode_chunked(&m, 1000).unwrap())
        {
            last = Some(r.push(f));
        }
        match last.unwrap() {
            Ok(Assembled::Frame { frame, .. }) => assert_eq!(decode(&frame).unwrap(), m),
            other => panic!("{other:?}"),
        }
    }
}
