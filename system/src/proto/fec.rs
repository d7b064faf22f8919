//! Forward error correction: parity segments for a frame, and how many to send.
//!
//! A frame cut into `k` data segments of `S` bytes (the last one padded with zeros to `S`)
//! forms the `k` original shards of a systematic Reed-Solomon code over GF(2^8); parity
//! segment `i` is recovery shard `i`. Any `k` of a frame's data and parity segments rebuild
//! it, so a frame with `m` parity segments survives any `m` losses in its first crossing
//! without waiting a round trip for a NACK. The code is `reed-solomon-erasure` (see
//! `system/Cargo.toml` for the measured choice); its recovery shard `i` is the same whatever
//! the number of recovery shards asked for (the rows of its encoding matrix below the identity
//! are fixed Vandermonde rows), so a sender may encode spare shards beyond the first crossing
//! to answer NACKs with, and a receiver decodes with any subset of them.
//!
//! [`FecKind`] is the configuration (`off`, `auto`, `fixed:M`); [`parity_for`] is the `auto`
//! rule, in two tiers that follow the frame's latency percentiles. First: the fewest parity
//! segments with which a frame misses its first crossing with probability at most `target`
//! (1%: the p99 frame then arrives in one crossing), if they cost at most
//! [`CHEAP_SHARE`] of the frame's bytes. Otherwise the loss is too high to buy that, and the
//! rule settles for the fewest with which at most [`SECOND_ROUND_MISS`] of frames need a NACK
//! round (the p99 frame then arrives one round trip later), within the budget. The
//! probability of missing is computed over the estimated loss process, bursts included
//! ([`LinkEstimate::p_complete`](super::estimator::LinkEstimate::p_complete)).

use std::fmt;
use std::str::FromStr;

use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};

use super::estimator::LinkEstimate;
use super::policy::PolicyError;
use super::wire::MAX_SHARDS;

/// Whether and how a session adds parity segments to its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FecKind {
    /// None: losses are repaired by NACK only (the seed's protocol).
    #[default]
    Off,
    /// As many as the link estimate says pay for themselves ([`parity_for`]).
    Auto,
    /// Always this many per frame.
    Fixed(u8),
}

impl FromStr for FecKind {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(FecKind::Off),
            "auto" => Ok(FecKind::Auto),
            _ => match s.strip_prefix("fixed:") {
                Some(n) => n
                    .parse::<u8>()
                    .map(FecKind::Fixed)
                    .map_err(|_| PolicyError::BadFec(s.to_string())),
                None => Err(PolicyError::BadFec(s.to_string())),
            },
        }
    }
}

impl TryFrom<String> for FecKind {
    type Error = PolicyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<FecKind> for String {
    fn from(k: FecKind) -> String {
        k.to_string()
    }
}

impl fmt::Display for FecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FecKind::Off => f.write_str("off"),
            FecKind::Auto => f.write_str("auto"),
            FecKind::Fixed(n) => write!(f, "fixed:{n}"),
        }
    }
}

/// Most parity segments the `auto` rule puts on one frame.
pub const MAX_AUTO_PARITY: usize = 32;
/// The parity share of a frame's bytes worth paying for the first-crossing target.
pub const CHEAP_SHARE: f64 = 0.3;
/// The share of frames the second tier lets miss their first crossing.
pub const SECOND_ROUND_MISS: f64 = 0.08;

/// The `auto` rule (see the module docs): the parity count for a frame of `frame_len` bytes
/// cut into segments of `size` bytes, given the link estimate, a first-crossing miss target
/// and a budget of parity bytes per frame byte.
pub fn parity_for(
    link: &LinkEstimate,
    frame_len: usize,
    size: usize,
    budget: f64,
    target: f64,
) -> usize {
    if frame_len == 0 || size == 0 {
        return 0;
    }
    let k = frame_len.div_ceil(size);
    let share = |m: usize| (m * size) as f64 / frame_len as f64;
    let within = |cap: f64| {
        (0..=MAX_AUTO_PARITY.min(MAX_SHARDS.saturating_sub(k + 1)))
            .take_while(|&m| share(m) <= cap)
            .last()
            .unwrap_or(0)
    };
    let most = within(budget.max(0.0));
    let cheap = within(CHEAP_SHARE.min(budget.max(0.0)));
    let data_loss = 1.0 - link.p_intact(size);
    let parity_loss = 1.0 - link.p_intact_parity(size);
    let miss = |m: usize| 1.0 - link.p_complete(k, m, data_loss, parity_loss);
    let fewest = |goal: f64, cap: usize| (0..=cap).find(|&m| miss(m) <= goal);
    fewest(target, cheap)
        .or_else(|| fewest(SECOND_ROUND_MISS.max(target), most))
        .unwrap_or(most)
}

/// The parity count a session asks for under `kind` (for `Fixed`, within the code's shards).
pub fn parity_count(
    kind: FecKind,
    link: &LinkEstimate,
    frame_len: usize,
    size: usize,
    budget: f64,
    target: f64,
) -> usize {
    let k = frame_len.div_ceil(size.max(1));
    match kind {
        FecKind::Off => 0,
        FecKind::Fixed(m) => usize::from(m).min(MAX_SHARDS.saturating_sub(k + 1)),
        FecKind::Auto => parity_for(link, frame_len, size, budget, target),
    }
}

/// A Reed-Solomon coder for one shape `(k, m)`, kept while frames keep that shape (building
/// one costs a matrix inversion).
#[derive(Default)]
pub struct Coder {
    rs: Option<ReedSolomon>,
}

impl fmt::Debug for Coder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = self
            .rs
            .as_ref()
            .map(|rs| (rs.data_shard_count(), rs.parity_shard_count()));
        f.debug_struct("Coder").field("shape", &shape).finish()
    }
}

impl Coder {
    fn get(&mut self, k: usize, m: usize) -> Option<&ReedSolomon> {
        let fits = self
            .rs
            .as_ref()
            .is_some_and(|rs| rs.data_shard_count() == k && rs.parity_shard_count() == m);
        if !fits {
            self.rs = Some(ReedSolomon::new(k, m).ok()?);
        }
        self.rs.as_ref()
    }

    /// The first `m` parity shards of `data` cut into segments of `size` bytes; empty when the
    /// shape is outside the code (`k + m > 256`, `m == 0`).
    pub fn encode(&mut self, data: &[u8], size: usize, m: usize) -> Vec<Vec<u8>> {
        if data.is_empty() || size == 0 || m == 0 {
            return Vec::new();
        }
        let k = data.len().div_ceil(size);
        if k + m > MAX_SHARDS {
            return Vec::new();
        }
        let Some(rs) = self.get(k, m) else {
            return Vec::new();
        };
        let mut last = data[(k - 1) * size..].to_vec();
        last.resize(size, 0);
        let originals: Vec<&[u8]> = data
            .chunks(size)
            .take(k - 1)
            .chain(std::iter::once(last.as_slice()))
            .collect();
        let mut parity = vec![vec![0u8; size]; m];
        match rs.encode_sep(&originals, &mut parity) {
            Ok(()) => parity,
            Err(_) => Vec::new(),
        }
    }

    /// Rebuilds the missing data segments of `frame` (cut into segments of `size`; `have[i]`
    /// true for those present) from `parity` (index, shard) pairs. True when every data
    /// segment is now in `frame`; false when the shards cannot rebuild it (the segments
    /// present are untouched, the bytes of the missing ones unspecified).
    pub fn rebuild(
        &mut self,
        frame: &mut [u8],
        size: usize,
        have: &[bool],
        parity: &[(u16, &[u8])],
    ) -> bool {
        let k = have.len();
        if size == 0 || k == 0 || frame.len().div_ceil(size) != k {
            return false;
        }
        let present = have.iter().filter(|h| **h).count();
        if present == k {
            return true;
        }
        let Some(m) = parity.iter().map(|(i, _)| usize::from(*i) + 1).max() else {
            return false;
        };
        if present + parity.len() < k || k + m > MAX_SHARDS {
            return false;
        }
        if parity.iter().any(|(_, p)| p.len() != size) {
            return false;
        }
        let Some(rs) = self.get(k, m) else {
            return false;
        };
        // Rebuilt in place: the full-size data segments are slices of `frame`, only a short
        // last segment and the received parity are copied (the crate writes the missing
        // shards into the slices it is given).
        let full = frame.len() / size;
        let (body, tail) = frame.split_at_mut(full * size);
        let mut last = Vec::new();
        if k > full {
            last.extend_from_slice(tail);
            last.resize(size, 0);
        }
        let mut received = vec![false; m];
        let mut scratch = vec![0u8; size * m];
        for (i, p) in parity {
            let i = usize::from(*i);
            received[i] = true;
            scratch[i * size..(i + 1) * size].copy_from_slice(p);
        }
        let mut shards: Vec<(&mut [u8], bool)> = Vec::with_capacity(k + m);
        shards.extend(body.chunks_mut(size).zip(have.iter().copied()));
        if k > full {
            shards.push((last.as_mut_slice(), have[k - 1]));
        }
        shards.extend(scratch.chunks_mut(size).zip(received));
        if rs.reconstruct_data(&mut shards).is_err() {
            return false;
        }
        drop(shards);
        if k > full && !have[k - 1] {
            tail.copy_from_slice(&last[..tail.len()]);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fec_kind_parses_and_prints() {
        for s in ["off", "auto", "fixed:3", "fixed:0"] {
            assert_eq!(s.parse::<FecKind>().unwrap().to_string(), s);
        }
        for bad in ["on", "fixed:", "fixed:-1", "fixed:300"] {
            assert!(
                matches!(bad.parse::<FecKind>(), Err(PolicyError::BadFec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn auto_parity_grows_with_loss_and_stays_in_budget() {
        let link = |loss: f64| LinkEstimate {
            loss,
            ..LinkEstimate::default()
        };
        let counts: Vec<usize> = [0.0, 0.01, 0.05, 0.1, 0.2]
            .iter()
            .map(|&p| parity_for(&link(p), 10_000, 1442, 1.0, 0.01))
            .collect();
        assert_eq!(counts, [0, 1, 2, 2, 4], "parity per loss rate");
        // At 20% loss four parity segments cost 58% of the frame: a budget of 30% caps them.
        assert_eq!(parity_for(&link(0.2), 10_000, 1442, 0.3, 0.01), 2);
        // At 0.5% estimated loss one parity segment already pays (the p99 frame crosses once).
        assert_eq!(parity_for(&link(0.005), 10_000, 1442, 1.0, 0.01), 1);
    }

    proptest! {
        /// Any `k` of a frame's data and parity shards rebuild it, byte for byte.
        #[test]
        fn any_k_shards_rebuild_the_frame(
            data in proptest::collection::vec(any::<u8>(), 1..6000),
            size in 1usize..1500,
            m in 1usize..6,
            lose in proptest::collection::vec(any::<bool>(), 0..40),
        ) {
            let k = data.len().div_ceil(size);
            prop_assume!(k + m <= MAX_SHARDS);
            let mut coder = Coder::default();
            let parity = coder.encode(&data, size, m);
            prop_assert_eq!(parity.len(), m);
            // Lose up to m shards among data and parity.
            let mut lost = 0;
            let mut present = Vec::with_capacity(k + m);
            for i in 0..k + m {
                let drop = lost < m && lose.get(i).copied().unwrap_or(false);
                if drop { lost += 1; }
                present.push(!drop);
            }
            let have = present[..k].to_vec();
            let kept: Vec<usize> = (0..m).filter(|&i| present[k + i]).collect();
            let mut frame = data.clone();
            for (i, h) in have.iter().enumerate() {
                if !h {
                    let end = ((i + 1) * size).min(frame.len());
                    frame[i * size..end].fill(0xEE);
                }
            }
            let shards: Vec<(u16, &[u8])> =
                kept.iter().map(|&i| (i as u16, parity[i].as_slice())).collect();
            prop_assert!(coder.rebuild(&mut frame, size, &have, &shards));
            prop_assert_eq!(frame, data);
        }

        /// Too few shards, shards of the wrong length or a shape outside the code: no rebuild,
        /// no panic, the frame untouched.
        #[test]
        fn bad_shards_never_panic(
            len in 1usize..3000,
            size in 1usize..700,
            shard_len in 0usize..800,
            index in any::<u16>(),
        ) {
            let k = len.div_ceil(size);
            let mut frame = vec![1u8; len];
            let mut have = vec![true; k];
            have[0] = false;
            let shard = vec![9u8; shard_len];
            let ok = Coder::default().rebuild(&mut frame, size, &have, &[(index, &shard)]);
            if shard_len != size || k + usize::from(index) + 1 > MAX_SHARDS {
                prop_assert!(!ok);
                prop_assert!(frame.iter().all(|&b| b == 1));
            }
        }
    }
}
