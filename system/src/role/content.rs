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
}

/// Checks a delivered frame.
pub trait FrameCheck: Send {
    fn is_intact(&self, session: u32, frame: u32, data: &[u8]) -> bool;
}

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Generates the bytes of frame `frame` of session `session`: pseudo-random (so compression or
/// pattern luck cannot hide damage) and a pure function of `(seed, session, frame, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameContent {
    pub seed: u64,
}

impl FrameContent {
    fn rng(&self, session: u32, frame: u32) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream((u64::from(session) << 32) | u64::from(frame));
        rng
    }

    /// The frame's bytes.
    pub fn frame(&self, session: u32, frame: u32, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.rng(session, frame).fill_bytes(&mut data);
        data
    }
}

impl FrameProducer for FrameContent {
    fn produce(&mut self, session: u32, frame: u32, _now: Instant, len: usize) -> Vec<u8> {
        self.frame(session, frame, len)
    }
}

impl FrameCheck for FrameContent {
    /// True when `data` is exactly what [`FrameContent::frame`] produced.
    fn is_intact(&self, session: u32, frame: u32, data: &[u8]) -> bool {
        // Generated and compared a piece at a time: no frame-sized buffer to allocate and
        // zero per check. Pieces are whole 32-bit words, so the stream is the one `frame`
        // fills in one go.
        let mut rng = self.rng(session, frame);
        let mut expected = [0u8; 256];
        data.chunks(expected.len()).all(|piece| {
            let expected = &mut expected[..piece.len()];
            rng.fill_bytes(expected);
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
