//! The segment protocol's datagrams (types `0x01..=0x07` and `0x0a..=0x0e`): a frame's
//! segments and parity segments, the receiver's NACK and frame ACK, the tier-2's STORED, the
//! idle session's keep-alive, the path challenge and its response, and a bonded camera's path
//! ping, its echo and its path mark. Each message's body layout is written once, its encoder
//! beside its decoder.

use super::codec::{Reader, Writer};
use super::{framed, kind, WireError, CRC_LEN, PREAMBLE_LEN};

/// Segment header after the preamble: session, frame, index, count, offset, frame length,
/// payload length.
const SEGMENT_FIELDS_LEN: usize = 4 + 4 + 2 + 2 + 4 + 4 + 2;
/// Bytes a segment adds to its payload on the wire (preamble, header and CRC), before UDP/IP.
pub const SEGMENT_OVERHEAD: usize = PREAMBLE_LEN + SEGMENT_FIELDS_LEN + CRC_LEN;
/// Parity header after the preamble: session, frame, index, first count, data count, frame
/// length, flags, payload length.
const PARITY_FIELDS_LEN: usize = 4 + 4 + 2 + 2 + 2 + 4 + 1 + 2;
/// Bytes a parity segment adds to its shard on the wire, before UDP/IP.
pub const PARITY_OVERHEAD: usize = PREAMBLE_LEN + PARITY_FIELDS_LEN + CRC_LEN;
/// Most shards (data segments and parity segments) one frame's erasure code spans: the code
/// works in GF(2^8).
pub const MAX_SHARDS: usize = 256;
/// Largest payload one segment may carry (keeps the datagram under UDP's 65,507-byte limit).
pub const MAX_SEGMENT_PAYLOAD: usize = 65_507 - SEGMENT_OVERHEAD;
/// Most segment indices one NACK datagram names; longer lists are split.
pub const MAX_NACK_INDICES: usize = 1024;
/// Bytes of a path challenge or response (preamble, session, token, CRC), before sealing.
pub const PATH_PROBE_LEN: usize = PREAMBLE_LEN + 4 + 8 + CRC_LEN;
/// Bytes of a path ping or its echo (preamble, session, token, byte count, CRC), before
/// sealing: the two are the same size, so an echo never amplifies.
pub const PATH_REPORT_LEN: usize = PREAMBLE_LEN + 4 + 8 + 8 + CRC_LEN;
/// Most frame ids one STORED datagram names; longer lists are split (160 x 8 B keeps a sealed
/// STORED within a 1500-byte MTU).
pub const MAX_STORED_FRAMES: usize = 160;

/// A payload's 16-bit length. It fits: callers cut segments of at most
/// [`MAX_SEGMENT_PAYLOAD`] bytes.
fn payload_len(payload: &[u8]) -> u16 {
    u16::try_from(payload.len()).unwrap_or(u16::MAX)
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
    /// Sent again (a repair), not in the frame's first crossing.
    pub repair: bool,
}

impl<'a> Segment<'a> {
    /// Appends the encoded segment to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, self.kind(), |b| self.encode_body(b));
    }

    /// [`kind::SEGMENT`], or [`kind::SEGMENT_REPAIR`] for a repair.
    pub(super) fn kind(&self) -> u8 {
        if self.repair {
            kind::SEGMENT_REPAIR
        } else {
            kind::SEGMENT
        }
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.reserve(SEGMENT_OVERHEAD + self.payload.len());
        buf.put_u32(self.session);
        buf.put_u32(self.frame);
        buf.put_u16(self.index);
        buf.put_u16(self.count);
        buf.put_u32(self.offset);
        buf.put_u32(self.frame_len);
        buf.put_u16(payload_len(self.payload));
        buf.put_bytes(self.payload);
    }

    pub(super) fn decode_body(r: &mut Reader<'a>, repair: bool) -> Result<Self, WireError> {
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
            repair,
        })
    }
}

/// A parity segment: recovery shard `index` of a frame whose `count` data segments, each
/// padded with zeros to the payload's length (the frame's segment size), form the code's
/// original shards. Any `count` of the frame's data and parity segments rebuild the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parity<'a> {
    pub session: u32,
    pub frame: u32,
    /// Index among the frame's parity shards; `count + index < MAX_SHARDS`.
    pub index: u16,
    /// Parity segments the frame's first crossing carries (repairs may use later indices).
    pub first_count: u16,
    /// Data segments the frame was cut into.
    pub count: u16,
    /// Length of the whole frame in bytes.
    pub frame_len: u32,
    /// Sent in answer to a NACK, not in the first crossing.
    pub repair: bool,
    /// The shard: as long as the frame's segment size.
    pub payload: &'a [u8],
}

impl<'a> Parity<'a> {
    /// Appends the encoded parity segment to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, kind::PARITY, |b| self.encode_body(b));
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.reserve(PARITY_OVERHEAD + self.payload.len());
        buf.put_u32(self.session);
        buf.put_u32(self.frame);
        buf.put_u16(self.index);
        buf.put_u16(self.first_count);
        buf.put_u16(self.count);
        buf.put_u32(self.frame_len);
        buf.put_flag(self.repair);
        buf.put_u16(payload_len(self.payload));
        buf.put_bytes(self.payload);
    }

    pub(super) fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let session = r.u32()?;
        let frame = r.u32()?;
        let index = r.u16()?;
        let first_count = r.u16()?;
        let count = r.u16()?;
        let frame_len = r.u32()?;
        let repair = r.flag("parity flags")?;
        let len = r.u16()?;
        let payload = r.take(usize::from(len))?;
        if count == 0 || payload.is_empty() {
            return Err(WireError::Invalid("parity of an empty frame"));
        }
        if usize::from(count) + usize::from(index) >= MAX_SHARDS
            || usize::from(count) + usize::from(first_count) > MAX_SHARDS
        {
            return Err(WireError::Invalid("parity index past the code's shards"));
        }
        if u64::from(frame_len).div_ceil(u64::from(len)) != u64::from(count) {
            return Err(WireError::Invalid("parity shard does not fit its frame"));
        }
        Ok(Parity {
            session,
            frame,
            index,
            first_count,
            count,
            frame_len,
            repair,
            payload,
        })
    }
}

/// The receiver asks for exactly these segments of a frame again. Like a [`FrameAck`] it
/// carries the segment size and parity the receiver wants for the next frames: on a link
/// where no frame completes any more, NACKs are the only feedback, and a size set too large
/// before the receiver saw the link's bit errors must still come down (see `Sender`). A size
/// of 0 is no advice (the seed's rule, the patent's baseline, advises on frame ACKs only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub session: u32,
    pub frame: u32,
    pub next_segment_size: u16,
    pub next_parity: u8,
    /// Missing or damaged segment indices, strictly increasing.
    pub missing: Vec<u16>,
}

impl Nack {
    /// Appends the encoded NACK to `buf`. At most [`MAX_NACK_INDICES`] indices are written;
    /// the receiver splits longer lists.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, kind::NACK, |b| self.encode_body(b));
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        let n = self.missing.len().min(MAX_NACK_INDICES);
        buf.put_u32(self.session);
        buf.put_u32(self.frame);
        buf.put_u16(self.next_segment_size);
        buf.put_u8(self.next_parity);
        buf.put_u16(n as u16);
        for &i in self.missing.iter().take(n) {
            buf.put_u16(i);
        }
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let session = r.u32()?;
        let frame = r.u32()?;
        let next_segment_size = r.u16()?;
        let next_parity = r.u8()?;
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
            next_segment_size,
            next_parity,
            missing,
        })
    }
}

fields_body! {
    /// A frame arrived whole; the sender cuts its next frame into `next_segment_size` bytes and
    /// adds `next_parity` parity segments to it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FrameAck {
        pub session: u32,
        pub frame: u32,
        pub next_segment_size: u16,
        pub next_parity: u8,
    }
}

impl FrameAck {
    /// Appends the encoded frame ACK to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, kind::FRAME_ACK, |b| self.encode_body(b));
    }
}

fields_body! {
    /// An idle session's sign of life (see `role::Mobile`): the client sends one when it has
    /// heard nothing from its tier-2 for a keep-alive interval, and the tier-2 echoes it. It keeps
    /// the session (and its keys) at the tier-2 while the camera sends no frames (stopped), and
    /// tells the client its tier-2 is gone when no echo comes. Who may send it: the session's two
    /// ends only (it travels sealed with the session's keys); the echo is the size of the request,
    /// so answering it amplifies nothing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct KeepAlive {
        pub session: u32,
        /// Counts up per keep-alive; the echo carries the request's.
        pub seq: u32,
    }
}

impl KeepAlive {
    /// Appends the encoded keep-alive to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, kind::KEEPALIVE, |b| self.encode_body(b));
    }
}

fields_body! {
    /// A path challenge (tier-2 -> client, [`super::kind::PATH_CHALLENGE`]) or its response
    /// (client -> tier-2, [`super::kind::PATH_RESPONSE`]), as QUIC validates a new path. A
    /// sealed datagram of a session that comes from an address the session has not used
    /// proves who sent it (the keys) but not where its sender is: a copy of a captured
    /// datagram sent from elsewhere, or a forged source address, would otherwise move the
    /// session's feedback there. The tier-2 takes the datagram's contents but answers on the
    /// paths it validated, and challenges the new address; the client echoes the token from
    /// where it got the challenge, and that address is a path of the session from then on.
    ///
    /// Who may send it: the session's two ends only (both travel sealed with the session's
    /// keys). The token need not be secret (the challenge is sealed, so only the client
    /// reads it, and only the client can seal the response); it ties one response to one
    /// challenge, and so to the one address that challenge went to. What answering a stranger
    /// costs: a challenge goes only to an address that sent an authenticated datagram of the
    /// session, and never more bytes than that address sent (see `secure::paths`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PathProbe {
        pub session: u32,
        pub token: u64,
    }
}

fields_body! {
    /// A bonded camera's measurement of one of its uplinks: a path ping (client -> tier-2,
    /// [`super::kind::PATH_PING`], `bytes` = bytes of the session the client has sent on that
    /// uplink) and its echo (tier-2 -> client, [`super::kind::PATH_ECHO`], the same token,
    /// `bytes` = bytes of the session the tier-2 has received from that address). Both count
    /// sealed datagrams on the wire, UDP and IP headers included, as rates are counted. The echo's
    /// round trip is the uplink's round trip with its queue, the growth of `bytes` between two
    /// echoes is what the uplink delivered, and the ping's count beside the echo's is what it
    /// lost: the per-path estimates the scheduler of `proto::bond` places segments by.
    ///
    /// Who may send it: the session's two ends only (both travel sealed). A tier-2 echoes a
    /// ping only from a validated path of the session (`secure::paths`), and an echo is the
    /// ping's own size: answering costs no more than the ping did, and nothing goes to an
    /// address that has not proved it is the client's.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PathReport {
        pub session: u32,
        pub token: u64,
        pub bytes: u64,
    }
}

fields_body! {
    /// A bonded camera's mark on one of its uplinks (client -> tier-2,
    /// [`super::kind::PATH_MARK`]): the first crossing of `frame` has been handed out, and this
    /// uplink carries nothing more of it. `passed` is the crossing's last position
    /// (`proto::path_marks::position`: data segments, then parity). Each uplink keeps order,
    /// so once the mark has arrived by every live path, a segment of the frame still missing
    /// is lost: a lost tail (the last segments an uplink carried, which no later segment
    /// shows missing) is named at once instead of after the receiver's silence timer or the
    /// next frame. A mark lost on the way costs only that.
    ///
    /// Who may send it: the session's client only (it travels sealed with the session's
    /// keys). What it costs a receiver: no answer, and one place in the session's path marks
    /// (at most `MAX_PATHS`, as for segments); a client that lies about its own first
    /// crossings gets its own segments asked for early.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PathMark {
        pub session: u32,
        pub frame: u32,
        pub passed: u32,
    }
}

/// Tier-2 -> client: storage has committed these frames of `session` (capture sequence
/// numbers, see `role::durable`). Unlike [`FrameAck`] (the frame is complete), this is the
/// durable acknowledgement: only now may the client release the frame from its ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub session: u32,
    /// At most [`MAX_STORED_FRAMES`] ids: the frames' 64-bit capture sequence numbers.
    pub frames: Vec<u64>,
}

impl Stored {
    /// Appends the encoded message to `buf`. At most [`MAX_STORED_FRAMES`] ids are written.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, kind::STORED, |b| self.encode_body(b));
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        let n = self.frames.len().min(MAX_STORED_FRAMES);
        buf.put_u32(self.session);
        buf.put_u16(n as u16);
        for &f in self.frames.iter().take(n) {
            buf.put_u64(f);
        }
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let session = r.u32()?;
        let n = usize::from(r.u16()?);
        if n > MAX_STORED_FRAMES {
            return Err(WireError::Invalid("STORED names too many frames"));
        }
        let frames = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
        Ok(Stored { session, frames })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::wire::{decode, Message, WireError};

    fn seg(payload: &[u8]) -> Segment<'_> {
        Segment {
            session: 9,
            frame: 3,
            index: 1,
            count: 4,
            offset: 500,
            frame_len: 2000,
            payload,
            repair: false,
        }
    }

    #[test]
    fn segment_overhead_matches_encoding() {
        let mut buf = Vec::new();
        seg(&[7; 500]).encode(&mut buf);
        assert_eq!(buf.len(), 500 + SEGMENT_OVERHEAD);
    }

    fn parity(payload: &[u8]) -> Parity<'_> {
        Parity {
            session: 9,
            frame: 3,
            index: 0,
            first_count: 2,
            count: 4,
            frame_len: 1900,
            repair: false,
            payload,
        }
    }

    #[test]
    fn parity_overhead_matches_encoding_and_round_trips() {
        let mut buf = Vec::new();
        let shard = [5u8; 500];
        parity(&shard).encode(&mut buf);
        assert_eq!(buf.len(), 500 + PARITY_OVERHEAD);
        assert_eq!(decode(&buf), Ok(Message::Parity(parity(&shard))));
    }

    #[test]
    fn parity_that_does_not_fit_its_frame_is_rejected() {
        let shard = [5u8; 500];
        let cases = [
            // 2100 bytes are five shards of 500, not four.
            (
                Parity {
                    frame_len: 2100,
                    ..parity(&shard)
                },
                "parity shard does not fit its frame",
            ),
            (
                Parity {
                    index: 252,
                    ..parity(&shard)
                },
                "parity index past the code's shards",
            ),
            (
                Parity {
                    first_count: 253,
                    ..parity(&shard)
                },
                "parity index past the code's shards",
            ),
            (
                Parity {
                    count: 0,
                    frame_len: 0,
                    ..parity(&shard)
                },
                "parity of an empty frame",
            ),
        ];
        for (p, why) in cases {
            let mut buf = Vec::new();
            p.encode(&mut buf);
            assert_eq!(decode(&buf), Err(WireError::Invalid(why)), "{p:?}");
        }
        // A flags byte other than 0 or 1.
        let mut buf = Vec::new();
        parity(&shard).encode(&mut buf);
        buf[PREAMBLE_LEN + 18] = 7;
        let n = buf.len() - CRC_LEN;
        let crc = crc32c::crc32c(&buf[..n]);
        buf[n..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&buf), Err(WireError::Invalid("parity flags")));
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
            1u8..=6,
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
                        repair: a % 2 == 1,
                    })
                }
                2 => Message::Nack(Nack {
                    session, frame, next_segment_size: a, next_parity: b as u8,
                    missing: missing.clone(),
                }),
                3 => Message::FrameAck(FrameAck { session, frame, next_segment_size: a, next_parity: b as u8 }),
                6 => Message::KeepAlive(KeepAlive { session, seq: frame }),
                _ => {
                    // A parity shard of a frame of `count` segments of the shard's length.
                    let count = b % 200 + 1;
                    let len = payload.len() as u32;
                    Message::Parity(Parity {
                        session, frame,
                        index: a % (MAX_SHARDS as u16 - count),
                        first_count: b % 50,
                        count,
                        frame_len: (u32::from(count) - 1) * len + 1 + (a as u32 % len),
                        repair: which == 5,
                        payload: &payload,
                    })
                }
            };
            msg.encode(&mut buf);
            prop_assert_eq!(decode(&buf), Ok(msg));
        }

        #[test]
        fn truncation_is_always_rejected(payload in proptest::collection::vec(any::<u8>(), 1..600), cut in 1usize..600) {
            let mut buf = Vec::new();
            Segment { session: 1, frame: 1, index: 0, count: 1, offset: 0, frame_len: payload.len() as u32, payload: &payload, repair: false }.encode(&mut buf);
            let cut = cut.min(buf.len());
            prop_assert!(decode(&buf[..buf.len() - cut]).is_err());
        }
    }
}
