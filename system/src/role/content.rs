//! Deterministic frame content, so a receiver can check a frame byte for byte.

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

    /// True when `data` is exactly what [`FrameContent::frame`] produced.
    pub fn is_intact(&self, session: u32, frame: u32, data: &[u8]) -> bool {
        data == self.frame(session, frame, data.len()).as_slice()
    }
}
