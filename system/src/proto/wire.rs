//! The wire format: every livecam datagram, encoded and decoded in this one place.
//!
//! Every datagram starts with a 4-byte preamble and ends with a CRC-32C of everything before it:
//!
//! ```text
//! 0      2         3      4                              len-4    len
//! +------+---------+------+------------------------------+--------+
//! | "LC" | version | type | type-specific body           | CRC32C |
//! +------+---------+------+------------------------------+--------+
//! ```
//!
//! All integers are big-endian. Types `0x01..=0x0f` belong to the segment protocol (segment,
//! NACK, frame ACK); `0x10..=0x2f` are reserved for the cluster's control messages and
//! `0x30..=0x3f` for the backend's. A decoder that meets a type it does not know rejects it with
//! [`WireError::UnknownType`], so old peers fail loudly rather than misread.
//!
//! Decoding never panics, whatever the bytes: every field is bounds-checked and every
//! inconsistency is a typed [`WireError`].

use thiserror::Error;

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"LC";
/// The wire version this build speaks.
pub const VERSION: u8 = 1;
/// Preamble (magic, version, type) length.
pub const PREAMBLE_LEN: usize = 4;
/// Trailing checksum length.
pub const CRC_LEN: usize = 4;
/// Segment header after the preamble: session, frame, index, count, offset, frame length,
/// payload length.
const SEGMENT_FIELDS_LEN: usize = 4 + 4 + 2 + 2 + 4 + 4 + 2;
/// Bytes a segment adds to its payload on the wire (preamble, header and CRC), before UDP/IP.
pub const SEGMENT_OVERHEAD: usize = PREAMBLE_LEN + SEGMENT_FIELDS_LEN + CRC_LEN;
/// UDP (8) and IPv4 (20) header bytes that every datagram also carries.
pub const UDP_IP_OVERHEAD: usize = 28;
/// Largest payload one segment may carry (keeps the datagram under UDP's 65,507-byte limit).
pub const MAX_SEGMENT_PAYLOAD: usize = 65_507 - SEGMENT_OVERHEAD;
/// Most segment indices one NACK datagram names; longer lists are split.
pub const MAX_NACK_INDICES: usize = 1024;

/// Message type codes.
pub mod kind {
    /// A piece of a frame.
    pub const SEGMENT: u8 = 0x01;
    /// The receiver's request for named segments again.
    pub const NACK: u8 = 0x02;
    /// A frame is complete; carries the segment size for the next frame.
    pub const FRAME_ACK: u8 = 0x03;
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than the smallest valid datagram of its kind.
    #[error("datagram too short: {len} bytes, need at least {need}")]
    TooShort { len: usize, need: usize },
    /// Does not start with `LC`.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 2]),
    /// A version this build does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// A type code this build does not know.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// The trailing CRC-32C does not match: the datagram was damaged on the way.
    #[error("checksum mismatch: datagram damaged")]
    BadChecksum,
    /// The length fields disagree with the datagram's size.
    #[error("length mismatch: {0}")]
    Length(&'static str),
    /// A field holds a value no valid peer sends.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// One segment of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Session the frame belongs to.
    pub session: u32,
    /// Frame number within the session.
    pub frame: u32,
    /// Index of this segment within the frame, `< count`.
    pub index: u16,
    /// Number of segments the frame was cut into.
    pub count: u16,
    /// Byte offset of the payload within the frame.
    pub offset: u32,
    /// Length of the whole frame in bytes.
    pub frame_len: u32,
    /// The segment's bytes.
    pub payload: &'a [u8],
}

/// The receiver asks for exactly these segments of a frame again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub session: u32,
    pub frame: u32,
    /// Missing or damaged segment indices, strictly increasing.
    pub missing: Vec<u16>,
}

/// A frame arrived whole; the sender cuts its next frame into `next_segment_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAck {
    pub session: u32,
    pub frame: u32,
    pub next_segment_size: u16,
}

/// Any decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Segment(Segment<'a>),
    Nack(Nack),
    FrameAck(FrameAck),
}

fn put_preamble(buf: &mut Vec<u8>, kind: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.push(kind);
    start
}

fn put_crc(buf: &mut Vec<u8>, start: usize) {
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(&crc.to_be_bytes());
}

impl Segment<'_> {
    /// Appends the encoded segment to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.reserve(SEGMENT_OVERHEAD + self.payload.len());
        let start = put_preamble(buf, kind::SEGMENT);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&self.index.to_be_bytes());
        buf.extend_from_slice(&self.count.to_be_bytes());
        buf.extend_from_slice(&self.offset.to_be_bytes());
        buf.extend_from_slice(&self.frame_len.to_be_bytes());
        // The payload length fits: callers cut segments of at most MAX_SEGMENT_PAYLOAD bytes.
        let len = u16::try_from(self.payload.len()).unwrap_or(u16::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(self.payload);
        put_crc(buf, start);
    }
}

impl Nack {
    /// Appends the encoded NACK to `buf`. At most [`MAX_NACK_INDICES`] indices are written;
    /// the receiver splits longer lists.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let n = self.missing.len().min(MAX_NACK_INDICES);
        let start = put_preamble(buf, kind::NACK);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&(n as u16).to_be_bytes());
        for i in &self.missing[..n] {
            buf.extend_from_slice(&i.to_be_bytes());
        }
        put_crc(buf, start);
    }
}

impl FrameAck {
    /// Appends the encoded frame ACK to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = put_preamble(buf, kind::FRAME_ACK);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&self.next_segment_size.to_be_bytes());
        put_crc(buf, start);
    }
}

impl Message<'_> {
    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Message::Segment(s) => s.encode(buf),
            Message::Nack(n) => n.encode(buf),
            Message::FrameAck(a) => a.encode(buf),
        }
    }
}

/// A bounds-checked big-endian reader over a datagram body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Length("field runs past the end"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Length("trailing bytes after the message"))
        }
    }
}

/// Decodes one datagram, checking preamble, checksum and every field.
pub fn decode(datagram: &[u8]) -> Result<Message<'_>, WireError> {
    let need = PREAMBLE_LEN + CRC_LEN;
    if datagram.len() < need {
        return Err(WireError::TooShort {
            len: datagram.len(),
            need,
        });
    }
    let magic = [datagram[0], datagram[1]];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if datagram[2] != VERSION {
        return Err(WireError::UnsupportedVersion(datagram[2]));
    }
    let kind = datagram[3];
    let (signed, crc) = datagram.split_at(datagram.len() - CRC_LEN);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(signed) != crc {
        return Err(WireError::BadChecksum);
    }
    let mut r = Reader {
        bytes: &signed[PREAMBLE_LEN..],
    };
    let msg = match kind {
        kind::SEGMENT => Message::Segment(decode_segment(&mut r)?),
        kind::NACK => Message::Nack(decode_nack(&mut r)?),
        kind::FRAME_ACK => Message::FrameAck(FrameAck {
            session: r.u32()?,
            frame: r.u32()?,
            next_segment_size: r.u16()?,
        }),
        other => return Err(WireError::UnknownType(other)),
    };
    r.finish()?;
    Ok(msg)
}

fn decode_segment<'a>(r: &mut Reader<'a>) -> Result<Segment<'a>, WireError> {
    let session = r.u32()?;
    let frame = r.u32()?;
    let index = r.u16()?;
    let count = r.u16()?;
    let offset = r.u32()?;
    let frame_len = r.u32()?;
    let len = r.u16()?;
    let payload = r.take(usize::from(len))?;
    if count == 0 {
        return Err(WireError::Invalid("segment count is zero"));
    }
    if index >= count {
        return Err(WireError::Invalid("segment index not below count"));
    }
    if payload.is_empty() {
        return Err(WireError::Invalid("empty segment payload"));
    }
    if u64::from(offset) + u64::from(len) > u64::from(frame_len) {
        return Err(WireError::Invalid("segment runs past the frame's end"));
    }
    Ok(Segment {
        session,
        frame,
        index,
        count,
        offset,
        frame_len,
        payload,
    })
}

fn decode_nack(r: &mut Reader<'_>) -> Result<Nack, WireError> {
    let session = r.u32()?;
    let frame = r.u32()?;
    let n = usize::from(r.u16()?);
    if n == 0 || n > MAX_NACK_INDICES {
        return Err(WireError::Invalid("NACK index count out of range"));
    }
    let mut missing = Vec::with_capacity(n);
    for _ in 0..n {
        let i = r.u16()?;
        if missing.last().is_some_and(|&prev| prev >= i) {
            return Err(WireError::Invalid("NACK indices not strictly increasing"));
        }
        missing.push(i);
    }
    Ok(Nack {
        session,
        frame,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(payload: &[u8]) -> Segment<'_> {
        Segment {
            session: 9,
            frame: 3,
            index: 1,
            count: 4,
            offset: 500,
            frame_len: 2000,
            payload,
        }
    }

    #[test]
    fn segment_overhead_matches_encoding() {
        let mut buf = Vec::new();
        seg(&[7; 500]).encode(&mut buf);
        assert_eq!(buf.len(), 500 + SEGMENT_OVERHEAD);
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        seg(&[7; 64]).encode(&mut buf);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn unknown_and_reserved_types_are_rejected() {
        let mut buf = Vec::new();
        FrameAck {
            session: 1,
            frame: 2,
            next_segment_size: 500,
        }
        .encode(&mut buf);
        buf[3] = 0x10;
        let n = buf.len() - CRC_LEN;
        let crc = crc32c::crc32c(&buf[..n]);
        buf[n..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&buf), Err(WireError::UnknownType(0x10)));
    }

    #[test]
    fn inconsistent_segment_is_rejected() {
        let mut buf = Vec::new();
        Segment {
            offset: 1900,
            ..seg(&[1; 200])
        }
        .encode(&mut buf);
        assert_eq!(
            decode(&buf),
            Err(WireError::Invalid("segment runs past the frame's end"))
        );
    }

    fn arb_message() -> impl Strategy<Value = (u8, u32, u32, u16, u16, Vec<u8>, Vec<u16>)> {
        (
            1u8..=3,
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            1u16..,
            proptest::collection::vec(any::<u8>(), 1..3000),
            proptest::collection::btree_set(any::<u16>(), 1..200)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        )
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_garbage_after_a_valid_preamble_never_panics(
            kind in 0u8..=4,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut buf = vec![b'L', b'C', VERSION, kind];
            buf.extend_from_slice(&body);
            let crc = crc32c::crc32c(&buf);
            buf.extend_from_slice(&crc.to_be_bytes());
            let _ = decode(&buf);
        }

        #[test]
        fn round_trip((which, session, frame, a, b, payload, missing) in arb_message()) {
            let mut buf = Vec::new();
            let msg = match which {
                1 => {
                    let count = b.max(1);
                    let index = a % count;
                    Message::Segment(Segment {
                        session, frame, index, count,
                        offset: 17,
                        frame_len: 17 + payload.len() as u32 + 5,
                        payload: &payload,
                    })
                }
                2 => Message::Nack(Nack { session, frame, missing: missing.clone() }),
                _ => Message::FrameAck(FrameAck { session, frame, next_segment_size: a }),
            };
            msg.encode(&mut buf);
            prop_assert_eq!(decode(&buf), Ok(msg));
        }

        #[test]
        fn truncation_is_always_rejected(payload in proptest::collection::vec(any::<u8>(), 1..600), cut in 1usize..600) {
            let mut buf = Vec::new();
            Segment { session: 1, frame: 1, index: 0, count: 1, offset: 0, frame_len: payload.len() as u32, payload: &payload }.encode(&mut buf);
            let cut = cut.min(buf.len());
            prop_assert!(decode(&buf[..buf.len() - cut]).is_err());
        }
    }
}
