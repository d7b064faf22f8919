//! Where a camera's frames come from and how a receiver checks them.
//!
//! [`FrameProducer`] makes a frame's bytes; [`FrameCheck`] tells whether delivered bytes are
//! intact. [`FrameContent`] (deterministic pseudo-random bytes, checked byte for byte) serves
//! simulations and benchmarks; [`crate::device::DeviceFrames`] and
//! [`crate::device::CapturedCheck`] serve real runs (a JPEG and a GPS fix, checked by CRC).

use crate::proto::wire::Command;
use crate::time::Instant;

/// Makes the bytes of a camera's frames.
pub trait FrameProducer: Send {
    /// The bytes of frame `frame` of `session`, captured at `now`; `len` is the configured
    /// frame size, which producers of real pictures may ignore.
    fn produce(&mut self, session: u32, frame: u32, now: Instant, len: usize) -> Vec<u8>;

    /// Applies a capture setting from a browser command (resolution or JPEG quality). Frame
    /// rate, snapshots and start/stop are the camera role's; only picture settings reach the
    /// producer. Err says why the producer cannot do it.
    fn apply(&mut self, command: &Command) -> Result<(), String> {
        Err(format!("{command:?} is not supported by this frame source"))
    }

    /// Takes the picture rate adaptation chose ([`super::adapt`]) for the next captures.
    /// Producers of synthetic content need do nothing (the length they are asked for is the
    /// picture's); a real camera changes what it can and says once what it cannot.
    fn adapt(&mut self, picture: &super::adapt::Picture) {
        let _ = picture;
    }
}

/// Checks a delivered frame.
pub trait FrameCheck: Send {
    fn is_intact(&self, session: u32, frame: u32, data: &[u8]) -> bool;
}

/// Generates the bytes of frame `frame` of session `session`: pseudo-random (so compression or
/// pattern luck cannot hide damage) and a pure function of `(seed, session, frame, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameContent {
    pub seed: u64,
}

/// SplitMix64's finaliser: spreads nearby keys (frame 7, frame 8) far apart.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One frame's byte stream: wyrand, one 64 x 64 -> 128-bit multiply per 8 bytes. Frames are
/// made and checked for every simulated datagram's worth of payload, so this is on the
/// simulator's hot path; ChaCha8 cost about three times as much, and nothing here needs a
/// cryptographic generator (damage is found by comparing every byte, not by chance).
struct Stream(u64);

impl Stream {
    fn next_word(&mut self) -> [u8; 8] {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (((t >> 64) as u64) ^ (t as u64)).to_le_bytes()
    }

    /// Fills `out` with the next bytes: whole words, and the start of one more for a tail.
    /// Filling in pieces whose lengths are multiples of 8 gives the bytes of one fill.
    fn fill(&mut self, out: &mut [u8]) {
        let mut words = out.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_word());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&self.next_word()[..n]);
        }
    }
}

impl FrameContent {
    fn stream(&self, session: u32, frame: u32) -> Stream {
        let id = (u64::from(session) << 32) | u64::from(frame);
        Stream(mix(self.seed ^ mix(id)))
    }

    /// The frame's bytes.
    pub fn frame(&self, session: u32, frame: u32, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.stream(session, frame).fill(&mut data);
        data
    }
}

impl FrameProducer for FrameContent {
    fn produce(&mut self, session: u32, frame: u32, _now: Instant, len: usize) -> Vec<u8> {
        self.frame(session, frame, len)
    }

    /// Takes resolution and quality (checked as a real camera checks them): the camera role
    /// sizes synthetic frames by its picture model ([`super::adapt`]), so both are honoured.
    fn apply(&mut self, command: &Command) -> Result<(), String> {
        use super::adapt::{check_quality, check_resolution};
        match *command {
            Command::SetResolution { width, height } => {
                check_resolution(width, height).map_err(|e| e.to_string())
            }
            Command::SetQuality { quality } => check_quality(quality).map_err(|e| e.to_string()),
            ref other => Err(format!("{other:?} is not a picture setting")),
        }
    }
}

impl FrameCheck for FrameContent {
    /// True when `data` is exactly what [`FrameContent::frame`] produced.
    fn is_intact(&self, session: u32, frame: u32, data: &[u8]) -> bool {
        // Generated and compared a piece at a time: no frame-sized buffer to allocate and
        // zero per check. Pieces are whole words, so the stream is the one `frame` fills in
        // one go.
        let mut stream = self.stream(session, frame);
        let mut expected = [0u8; 256];
        data.chunks(expected.len()).all(|piece| {
            let expected = &mut expected[..piece.len()];
            stream.fill(expected);
            expected == piece
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_checks_intact_and_any_flipped_bit_does_not() {
        let content = FrameContent { seed: 7 };
        for len in [0, 1, 3, 255, 256, 257, 1000, 10_001] {
            let frame = content.frame(3, 9, len);
            assert!(content.is_intact(3, 9, &frame), "len {len}");
            assert!(len == 0 || !content.is_intact(3, 10, &frame), "len {len}");
            for bit in [0, len * 8 / 2, len * 8 - (len > 0) as usize] {
                if len == 0 {
                    break;
                }
                let mut damaged = frame.clone();
                damaged[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(!content.is_intact(3, 9, &damaged), "len {len} bit {bit}");
            }
        }
    }
}
