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
//! reaches raft. The simulated network uses the same frames, so tests cover
//! the decoding path; the TCP transport reads the 8-byte header first, then
//! the body.

use protobuf::Message as _;
use raft::eraftpb::Message;

/// Header length in bytes.
pub const HEADER_LEN: usize = 8;

/// Largest body accepted (a snapshot travels in one message for now).
pub const MAX_FRAME: usize = 1 << 30;

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
    /// The header announces more than [`MAX_FRAME`] bytes.
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
}

/// Encodes a message as one frame.
pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    let body = msg
        .write_to_bytes()
        .map_err(|e| WireError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLong(body.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body length a frame header announces.
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLong(len));
    }
    Ok(len)
}

/// Decodes one whole frame.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    let header: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Truncated {
            have: frame.len(),
            want: HEADER_LEN,
        })?;
    let len = body_len(header)?;
    let body = &frame[HEADER_LEN..];
    if body.len() != len {
        return Err(WireError::Truncated {
            have: frame.len(),
            want: HEADER_LEN + len,
        });
    }
    let stored = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
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
}
