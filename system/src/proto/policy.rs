//! Segment size policies: how big the next frame's segments should be.
//!
//! The receiver sees, for every frame, how many segments were cut and how many of them arrived
//! damaged or not at all ([`FrameOutcome`]). A [`SizePolicy`] turns that into the segment size
//! for the next frame, which travels back to the sender in the frame ACK (seed [0035]).
//!
//! Three policies:
//! - [`SeedRule`], the patent's rule (seed [0033]-[0034], claim 5): no error in the frame grows
//!   the size by 10% up to the maximum; any error shrinks it by 10% down to the minimum.
//! - [`Fixed`]: always the same size (the baseline every adaptive policy is measured against).
//! - [`ModelBased`]: estimates the per-byte error rate from the segments it has seen and picks
//!   the size that maximises the expected efficiency `S/(S+H) * P(segment of S+H bytes intact)`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::wire::{SEGMENT_OVERHEAD, UDP_IP_OVERHEAD};

/// The seed's default segment size (seed [0029]).
pub const DEFAULT_SEGMENT_SIZE: usize = 500;

/// What one frame's transfer looked like, as the receiver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameOutcome {
    /// Segment size the frame was cut with (payload bytes per segment).
    pub segment_size: usize,
    /// Frame length in bytes.
    pub frame_len: usize,
    /// Segments the frame was cut into.
    pub segments: usize,
    /// Segments that were missing or damaged at least once (and so were asked for again).
    pub failed: usize,
    /// False when the frame was given up at its deadline.
    pub delivered: bool,
}

impl FrameOutcome {
    /// True when any packet of the frame was lost or damaged: the seed's "packet error".
    pub fn had_error(&self) -> bool {
        self.failed > 0 || !self.delivered
    }
}

/// Decides the segment size of the next frame from the outcome of the last one.
pub trait SizePolicy: Send {
    /// Size to use now, before any outcome or after the last one.
    fn current(&self) -> usize;
    /// Takes one frame's outcome and returns the size for the next frame.
    fn observe(&mut self, outcome: &FrameOutcome) -> usize;
}

/// Smallest and largest segment size a policy may choose, and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SizeLimits {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits {
            initial: DEFAULT_SEGMENT_SIZE,
            min: 100,
            max: 8000,
        }
    }
}

/// A size limit that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("segment size limits: min must be at least 1, got {0}")]
    MinZero(usize),
    #[error("segment size limits: min ({min}) must not exceed max ({max})")]
    MinAboveMax { min: usize, max: usize },
    #[error("segment size limits: max ({0}) exceeds the largest segment payload")]
    MaxTooLarge(usize),
    #[error("segment size limits: initial ({initial}) must lie within min..=max ({min}..={max})")]
    InitialOutside {
        initial: usize,
        min: usize,
        max: usize,
    },
    #[error("policy: expected `seed`, `fixed:N` or `model`, got `{0}`")]
    UnknownPolicy(String),
    #[error("policy: fixed size `{0}` is not a positive number")]
    BadFixedSize(String),
}

impl SizeLimits {
    /// Checks the limits, naming the field at fault.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min == 0 {
            return Err(PolicyError::MinZero(self.min));
        }
        if self.min > self.max {
            return Err(PolicyError::MinAboveMax {
                min: self.min,
                max: self.max,
            });
        }
        if self.max > super::wire::MAX_SEGMENT_PAYLOAD {
            return Err(PolicyError::MaxTooLarge(self.max));
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return Err(PolicyError::InitialOutside {
                initial: self.initial,
                min: self.min,
                max: self.max,
            });
        }
        Ok(())
    }

    fn clamp(&self, size: f64) -> usize {
        (size.round() as usize).clamp(self.min, self.max)
    }
}

/// Which policy to run; parses from `seed`, `fixed:N` or `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PolicyKind {
    Seed,
    Fixed(usize),
    Model,
}

impl FromStr for PolicyKind {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seed" => Ok(PolicyKind::Seed),
            "model" => Ok(PolicyKind::Model),
            _ => match s.strip_prefix("fixed:") {
                Some(n) => match n.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(PolicyKind::Fixed(n)),
                    _ => Err(PolicyError::BadFixedSize(n.to_string())),
                },
                None => Err(PolicyError::UnknownPolicy(s.to_string())),
            },
        }
    }
}

impl TryFrom<String> for PolicyKind {
    type Error = PolicyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PolicyKind> for String {
    fn from(k: PolicyKind) -> String {
        k.to_string()
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyKind::Seed => f.write_str("seed"),
            PolicyKind::Fixed(n) => write!(f, "fixed:{n}"),
            PolicyKind::Model => f.write_str("model"),
        }
    }
}

/// A policy choice with its limits: what a receiver needs to make a policy per session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub kind: PolicyKind,
    pub limits: SizeLimits,
    /// Per-segment overhead H on the wire (our header and CRC, UDP and IP), in bytes.
    pub header_bytes: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            kind: PolicyKind::Seed,
            limits: SizeLimits::default(),
            header_bytes: SEGMENT_OVERHEAD + UDP_IP_OVERHEAD,
        }
    }
}

impl PolicyConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.limits.validate()?;
        if let PolicyKind::Fixed(n) = self.kind {
            if n > super::wire::MAX_SEGMENT_PAYLOAD {
                return Err(PolicyError::MaxTooLarge(n));
            }
        }
        Ok(())
    }

    /// The segment size a sender should start with under this policy.
    pub fn initial_size(&self) -> usize {
        match self.kind {
            PolicyKind::Fixed(n) => n,
            _ => self.limits.initial,
        }
    }

    /// A fresh policy for one session.
    pub fn build(&self) -> Box<dyn SizePolicy> {
        match self.kind {
            PolicyKind::Seed => Box::new(SeedRule::new(self.limits)),
            PolicyKind::Fixed(n) => Box::new(Fixed(n)),
            PolicyKind::Model => Box::new(ModelBased::new(self.limits, self.header_bytes)),
        }
    }
}

/// The patent's rule: grow 10% after a clean frame, shrink 10% after a frame with any error,
/// always within `min..=max` (claim 5's four branches).
#[derive(Debug, Clone)]
pub struct SeedRule {
    limits: SizeLimits,
    size: usize,
}

impl SeedRule {
    pub fn new(limits: SizeLimits) -> Self {
        SeedRule {
            size: limits.initial.clamp(limits.min, limits.max),
            limits,
        }
    }
}

impl SizePolicy for SeedRule {
    fn current(&self) -> usize {
        self.size
    }

    fn observe(&mut self, outcome: &FrameOutcome) -> usize {
        let factor = if outcome.had_error() { 0.9 } else { 1.1 };
        self.size = self.limits.clamp(self.size as f64 * factor);
        self.size
    }
}

/// Always the same segment size.
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub usize);

impl SizePolicy for Fixed {
    fn current(&self) -> usize {
        self.0
    }
    fn observe(&mut self, _: &FrameOutcome) -> usize {
        self.0
    }
}

/// Picks the size that maximises expected efficiency under an estimated per-byte error rate.
///
/// Model: every byte on the wire is damaged independently with rate `λ`, so a segment of `S`
/// payload bytes and `H` overhead bytes arrives intact with probability `exp(-λ (S+H))`, and
/// the efficiency of sending it is `S/(S+H) * exp(-λ (S+H))`. Setting the derivative of its
/// logarithm to zero gives `H / (S (S+H)) = λ`, so `S* = (-H + sqrt(H² + 4H/λ)) / 2`.
///
/// `λ` is estimated as failures per byte of exposure: an intact segment contributes its whole
/// wire size, a failed one half of it (the expected position of the first error when errors are
/// rare). Both sums decay geometrically per frame so the estimate follows a changing link; a
/// small prior keeps `λ` positive before any failure is seen.
#[derive(Debug, Clone)]
pub struct ModelBased {
    limits: SizeLimits,
    header: f64,
    failures: f64,
    exposure: f64,
    size: usize,
}

impl ModelBased {
    /// Weight kept by past observations at each new frame (a window of about 50 frames).
    const DECAY: f64 = 0.98;
    /// Pseudo-failures of the prior.
    const PRIOR_FAILURES: f64 = 0.05;

    pub fn new(limits: SizeLimits, header_bytes: usize) -> Self {
        ModelBased {
            limits,
            header: header_bytes as f64,
            failures: 0.0,
            exposure: 0.0,
            size: limits.initial.clamp(limits.min, limits.max),
        }
    }

    /// The current estimate of the per-byte error rate.
    pub fn byte_error_rate(&self) -> f64 {
        (self.failures + Self::PRIOR_FAILURES) / (self.exposure + 1.0)
    }

    /// The payload size that maximises `S/(S+H) * exp(-λ (S+H))`, before clamping.
    pub fn optimal_size(byte_error_rate: f64, header_bytes: f64) -> f64 {
        let h = header_bytes;
        if byte_error_rate <= 0.0 {
            return f64::INFINITY;
        }
        (-h + (h * h + 4.0 * h / byte_error_rate).sqrt()) / 2.0
    }
}

impl SizePolicy for ModelBased {
    fn current(&self) -> usize {
        self.size
    }

    fn observe(&mut self, o: &FrameOutcome) -> usize {
        if o.segments > 0 {
            let wire = o.frame_len as f64 / o.segments as f64 + self.header;
            let failed = o.failed.min(o.segments) as f64;
            let intact = o.segments as f64 - failed;
            self.failures = self.failures * Self::DECAY + failed;
            self.exposure = self.exposure * Self::DECAY + intact * wire + failed * wire / 2.0;
        }
        let best = Self::optimal_size(self.byte_error_rate(), self.header);
        self.size = self.limits.clamp(best.min(self.limits.max as f64));
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn outcome(size: usize, failed: usize) -> FrameOutcome {
        FrameOutcome {
            segment_size: size,
            frame_len: 10_000,
            segments: 10_000usize.div_ceil(size),
            failed,
            delivered: true,
        }
    }

    fn limits(initial: usize) -> SizeLimits {
        SizeLimits {
            initial,
            min: 200,
            max: 1000,
        }
    }

    #[test]
    fn claim_5_grow_when_clean_below_max() {
        let mut p = SeedRule::new(limits(500));
        assert_eq!(p.observe(&outcome(500, 0)), 550);
    }

    #[test]
    fn claim_5_hold_when_clean_at_max() {
        let mut p = SeedRule::new(limits(1000));
        assert_eq!(p.observe(&outcome(1000, 0)), 1000);
        // Growing past the max is clamped to it, not beyond.
        let mut p = SeedRule::new(limits(950));
        assert_eq!(p.observe(&outcome(950, 0)), 1000);
    }

    #[test]
    fn claim_5_shrink_on_error_above_min() {
        let mut p = SeedRule::new(limits(500));
        assert_eq!(p.observe(&outcome(500, 1)), 450);
        let dropped = FrameOutcome {
            delivered: false,
            ..outcome(450, 0)
        };
        assert_eq!(p.observe(&dropped), 405);
    }

    #[test]
    fn claim_5_hold_on_error_at_min() {
        let mut p = SeedRule::new(limits(200));
        assert_eq!(p.observe(&outcome(200, 3)), 200);
        let mut p = SeedRule::new(limits(210));
        assert_eq!(p.observe(&outcome(210, 3)), 200);
    }

    #[test]
    fn fixed_never_moves() {
        let mut p = Fixed(1400);
        assert_eq!(p.observe(&outcome(1400, 5)), 1400);
        assert_eq!(p.observe(&outcome(1400, 0)), 1400);
    }

    #[test]
    fn policy_kind_parses_and_prints() {
        for s in ["seed", "model", "fixed:1400"] {
            assert_eq!(s.parse::<PolicyKind>().unwrap().to_string(), s);
        }
        assert!(matches!(
            "fixed:0".parse::<PolicyKind>(),
            Err(PolicyError::BadFixedSize(_))
        ));
        assert!(matches!(
            "tcp".parse::<PolicyKind>(),
            Err(PolicyError::UnknownPolicy(_))
        ));
    }

    #[test]
    fn limits_are_validated_by_field() {
        let bad = SizeLimits {
            initial: 50,
            min: 100,
            max: 200,
        };
        assert!(bad.validate().unwrap_err().to_string().contains("initial"));
        let bad = SizeLimits {
            initial: 100,
            min: 300,
            max: 200,
        };
        assert!(bad.validate().unwrap_err().to_string().contains("min"));
    }

    /// Feeds the model-based policy segment outcomes drawn from a link with the given bit error
    /// rate, sending every frame at the size the policy chose, and returns the mean size over
    /// the last `tail` frames.
    fn settle(ber: f64, header: usize, frames: usize, tail: usize, seed: u64) -> f64 {
        let lim = SizeLimits {
            initial: 500,
            min: 50,
            max: 16_000,
        };
        let mut p = ModelBased::new(lim, header);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sum = 0.0;
        for f in 0..frames {
            let s = p.current();
            let segments = 10_000usize.div_ceil(s);
            let bits = ((s + header) * 8) as i32;
            let p_intact = (1.0 - ber).powi(bits);
            let failed = (0..segments).filter(|_| !rng.random_bool(p_intact)).count();
            p.observe(&FrameOutcome {
                segment_size: s,
                frame_len: 10_000,
                segments,
                failed,
                delivered: true,
            });
            if f >= frames - tail {
                sum += p.current() as f64;
            }
        }
        sum / tail as f64
    }

    #[test]
    fn model_based_settles_within_10_percent_of_the_analytic_optimum() {
        let header = SEGMENT_OVERHEAD + UDP_IP_OVERHEAD;
        for (ber, seed) in [(1e-5, 1), (3e-5, 2), (1e-4, 3), (4e-6, 4)] {
            let lambda = -8.0 * (1.0f64 - ber).ln();
            // The true optimum of S/(S+H) * (1-ber)^(8(S+H)), found by brute force so the
            // test does not reuse the formula under test.
            let eff = |s: f64| s / (s + header as f64) * (-lambda * (s + header as f64)).exp();
            let optimum = (1..20_000)
                .map(|s| s as f64)
                .max_by(|a, b| eff(*a).total_cmp(&eff(*b)))
                .unwrap();
            let settled = settle(ber, header, 1500, 500, seed);
            let err = (settled - optimum).abs() / optimum;
            assert!(
                err < 0.10,
                "ber {ber}: settled at {settled:.0} B, optimum {optimum:.0} B ({:.1}% off)",
                err * 100.0
            );
        }
    }

    #[test]
    fn model_based_grows_to_max_on_a_clean_link_and_shrinks_on_a_bad_one() {
        let lim = SizeLimits {
            initial: 500,
            min: 100,
            max: 4000,
        };
        let mut p = ModelBased::new(lim, 58);
        for _ in 0..50 {
            p.observe(&outcome(p.current(), 0));
        }
        assert_eq!(p.current(), 4000);
        for _ in 0..50 {
            let s = p.current();
            p.observe(&outcome(s, 10_000usize.div_ceil(s) / 2));
        }
        assert!(p.current() < 500, "still at {}", p.current());
    }
}
