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
//! [`FecKind`] is the configuration (`off`, `auto`, `fixed:M`); [`plan_for`] is the `auto`
//! rule. It picks the frame's cut with its parity (parity comes in whole segments, so smaller
//! segments buy protection in finer steps), in two tiers that follow the frame's latency
//! percentiles. First: the cut and parity count with the fewest wire bytes with which a frame
//! misses its first crossing with probability at most `target` (0.5% by default: the p99
//! frame then arrives in one crossing), if the parity costs at most [`CHEAP_SHARE`] of the frame's bytes.
//! Otherwise the loss is too high to buy that, and the rule settles for the cheapest with
//! which at most [`SECOND_ROUND_MISS`] of frames need a NACK round (the p99 frame then arrives
//! one round trip later), within the budget. The probability of missing is computed over the
//! estimated loss process, bursts included
//! ([`LinkEstimate::p_complete`](super::estimator::LinkEstimate::p_complete)).

use std::fmt;
use std::str::FromStr;

use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};

use super::estimator::LinkEstimate;
use super::limits::PolicyError;
use super::wire::{MAX_SHARDS, PARITY_OVERHEAD, SEGMENT_OVERHEAD};
use crate::link::{wire_bytes, IPV4_HEADER_LEN, UDP_HEADER_LEN};

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
/// The parity share of a frame's bytes worth paying for the first-crossing target. With the
/// cut chosen with the parity (see [`plan_for`]) this buys the first crossing up to about 7%
/// i.i.d. loss (21% parity at 5%); past that the second tier's one NACK round is the cheaper
/// tail (at 10% the first crossing would take a third of the frame, the second tier a quarter).
pub const CHEAP_SHARE: f64 = 0.3;
/// The share of frames the second tier lets miss their first crossing.
pub const SECOND_ROUND_MISS: f64 = 0.08;
/// How many times more segments than the largest unfragmented cut the `auto` rule considers.
pub const MAX_SPLIT: usize = 3;

/// How the next frame is cut: the segment size (the sender cuts at most this) and the parity
/// segments of its first crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub size: usize,
    pub parity: usize,
}

impl Plan {
    /// The plan as the frame ACK and NACK carry it (`next_segment_size`, `next_parity`),
    /// saturated to the fields' widths.
    pub fn on_wire(&self) -> (u16, u8) {
        (
            u16::try_from(self.size).unwrap_or(u16::MAX),
            u8::try_from(self.parity).unwrap_or(u8::MAX),
        )
    }
}

/// The `auto` rule (see the module docs): the cut and parity count for a frame of
/// `frame_len` bytes that the size policy would cut into segments of `size` bytes, given the
/// link estimate, a first-crossing miss target and a budget of parity bytes per frame byte.
///
/// Parity comes in whole shards of the segment size, so the size is chosen with it: among the
/// cuts into `k` (the policy's) to [`MAX_SPLIT`] times the unfragmented cut's count of equal
/// segments (no smaller than `min_size`), the one whose data and parity segments take the
/// fewest wire bytes (headers and fragmentation counted) while the frame meets the goal. At 1% i.i.d. loss a 10 kB frame misses its first
/// crossing less than once in a hundred as 13 segments of 770 bytes and one parity segment
/// (16% more wire bytes than the frame) as well as 7 of 1429 bytes and one (19%); at 10%, where
/// the second tier rules, as 8 segments of 1250 bytes and two parity (31%) rather than 7 and
/// two (34%). Without loss the policy's segment count stays, cut evenly.
pub fn plan_for(
    link: &LinkEstimate,
    frame_len: usize,
    size: usize,
    min_size: usize,
    budget: f64,
    target: f64,
) -> Plan {
    if frame_len == 0 || size == 0 {
        return Plan { size, parity: 0 };
    }
    let k0 = frame_len.div_ceil(size);
    let budget = budget.max(0.0);
    let mtu = link.mtu;
    // At most MAX_SPLIT times finer than the largest cut that fits one packet per segment:
    // a policy that already cuts finer (exploring, or under bit errors) keeps its cut.
    let one_packet = mtu
        .saturating_sub(IPV4_HEADER_LEN + UDP_HEADER_LEN + SEGMENT_OVERHEAD)
        .max(1);
    let k_max = (frame_len.div_ceil(one_packet) * MAX_SPLIT)
        .min(frame_len / min_size.max(1))
        .min(MAX_SHARDS.saturating_sub(1))
        .max(k0);
    // The cut into `k` equal segments, if `k` is what a cut at that size gives.
    let cut = |k: usize| {
        let s = frame_len.div_ceil(k);
        (frame_len.div_ceil(s) == k).then_some(s)
    };
    let wire = |k: usize, s: usize, m: usize| {
        let last = frame_len - (k - 1) * s;
        (k - 1) * wire_bytes(s + SEGMENT_OVERHEAD, mtu)
            + wire_bytes(last + SEGMENT_OVERHEAD, mtu)
            + m * wire_bytes(s + PARITY_OVERHEAD, mtu)
    };
    let miss = |k: usize, s: usize, m: usize| {
        let data_loss = 1.0 - link.p_intact(s);
        let parity_loss = 1.0 - link.p_intact_parity(s);
        1.0 - link.p_complete(k, m, data_loss, parity_loss)
    };
    // The cheapest cut meeting `goal` with at most `cap` of the frame's bytes in parity.
    let search = |goal: f64, cap: f64| -> Option<Plan> {
        let mut best: Option<(usize, Plan)> = None;
        let mut m = 0usize;
        for k in k0..=k_max {
            let Some(s) = cut(k) else { continue };
            let most = MAX_AUTO_PARITY.min(MAX_SHARDS.saturating_sub(k + 1));
            if best.is_some_and(|(cost, _)| wire(k, s, 0) >= cost) {
                break; // more segments only add headers from here on
            }
            // The count needed grows with k on a loss-only link; bit errors can make it fall.
            m = m.min(most);
            while m > 0 && miss(k, s, m - 1) <= goal {
                m -= 1;
            }
            while m <= most && miss(k, s, m) > goal {
                m += 1;
            }
            if m > most {
                m = most;
                continue;
            }
            if (m * s) as f64 > cap * frame_len as f64 {
                continue;
            }
            let cost = wire(k, s, m);
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, Plan { size: s, parity: m }));
            }
        }
        best.map(|(_, p)| p)
    };
    search(target, CHEAP_SHARE.min(budget))
        .or_else(|| search(SECOND_ROUND_MISS.max(target), budget))
        .unwrap_or_else(|| {
            // Neither goal within the budget: as much parity as it allows, at the policy's cut.
            let parity = (0..=MAX_AUTO_PARITY.min(MAX_SHARDS.saturating_sub(k0 + 1)))
                .take_while(|&m| (m * size) as f64 <= budget * frame_len as f64)
                .last()
                .unwrap_or(0);
            Plan { size, parity }
        })
}

/// The plan a session asks for under `kind`: `auto` chooses cut and parity together
/// ([`plan_for`]); `off` and `fixed:M` keep the policy's cut (for `Fixed`, within the code's
/// shards).
pub fn plan(
    kind: FecKind,
    link: &LinkEstimate,
    frame_len: usize,
    size: usize,
    min_size: usize,
    budget: f64,
    target: f64,
) -> Plan {
    let k = frame_len.div_ceil(size.max(1));
    match kind {
        FecKind::Off => Plan { size, parity: 0 },
        FecKind::Fixed(m) => Plan {
            size,
            parity: usize::from(m).min(MAX_SHARDS.saturating_sub(k + 1)),
        },
        FecKind::Auto => plan_for(link, frame_len, size, min_size, budget, target),
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

    fn link(loss: f64) -> LinkEstimate {
        LinkEstimate {
            loss,
            ..LinkEstimate::default()
        }
    }

    #[test]
    fn auto_parity_grows_with_loss_and_stays_in_budget() {
        let plans: Vec<(usize, usize)> = [0.0, 0.01, 0.05, 0.1, 0.2]
            .iter()
            .map(|&p| plan_for(&link(p), 10_000, 1442, 100, 1.0, 0.01))
            .map(|p| (p.size, p.parity))
            .collect();
        // Without loss the policy's segment count stays (cut evenly); with loss the cut gets
        // finer so that whole parity segments cost less: the p99 frame crosses once at 1% and
        // 5%, and at 10% and 20% (where that would cost more than CHEAP_SHARE) at most 8% of
        // frames wait for one NACK round.
        assert_eq!(
            plans,
            [(1429, 0), (770, 1), (715, 3), (1250, 2), (1250, 4)],
            "cut and parity per loss rate"
        );
        for (&p, &(size, parity)) in [0.01, 0.05, 0.1, 0.2].iter().zip(&plans[1..]) {
            let k = 10_000usize.div_ceil(size);
            let miss = 1.0 - link(p).p_complete(k, parity, p, p);
            let goal = if p < 0.1 { 0.01 } else { SECOND_ROUND_MISS };
            assert!(miss <= goal, "{p}: {miss}");
            assert!((parity * size) as f64 <= 0.5 * 10_000.0);
        }
        // A budget of 30% of the frame caps the parity: the second tier at 20% loss.
        let capped = plan_for(&link(0.2), 10_000, 1442, 100, 0.3, 0.01);
        assert!(capped.parity * capped.size <= 3_000, "{capped:?}");
        assert!(capped.parity > 0, "{capped:?}");
        // No smaller than the policy's minimum size, no more shards than the code has.
        let floor = plan_for(&link(0.2), 10_000, 1442, 1000, 1.0, 0.01);
        assert!(floor.size >= 1000, "{floor:?}");
        let big = plan_for(&link(0.3), 60_000, 240, 100, 1.0, 0.01);
        assert!(
            60_000usize.div_ceil(big.size) + big.parity <= MAX_SHARDS,
            "{big:?}"
        );
        // At 0.5% estimated loss one parity segment already pays (the p99 frame crosses once).
        assert_eq!(
            plan_for(&link(0.005), 10_000, 1442, 100, 1.0, 0.01).parity,
            1
        );
    }

    #[test]
    fn the_plan_is_cheaper_than_parity_at_the_policys_cut() {
        // The same first-crossing goal at the policy's 1442-byte cut takes more wire bytes.
        let wire = |k: usize, s: usize, m: usize| {
            10_000 + k * (SEGMENT_OVERHEAD + 28) + m * (s + PARITY_OVERHEAD + 28)
        };
        for p in [0.01, 0.05, 0.1, 0.2] {
            let plan = plan_for(&link(p), 10_000, 1442, 100, 1.0, 0.01);
            let k = 10_000usize.div_ceil(plan.size);
            let m0 = (0..32)
                .find(|&m| 1.0 - link(p).p_complete(7, m, p, p) <= 0.01)
                .unwrap();
            assert!(
                wire(k, plan.size, plan.parity) < wire(7, 1442, m0),
                "{p}: {plan:?}"
            );
        }
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
