//! What a receiver can tell about the link a session's segments cross, and what follows for
//! the segment size and the parity count.
//!
//! The receiver sees each frame's first crossing (its data and parity segments sent once, in
//! order; repairs are flagged on the wire and left out) and so which datagrams arrived, which
//! arrived damaged (a bad CRC, when the link hands damaged datagrams up rather than discarding
//! them) and which never came. [`LinkEstimator`] turns that into a [`LinkEstimate`] of:
//!
//! - **per-packet loss** `p`: every IP packet lost with probability `p`, whatever its size, so a
//!   datagram in `c` fragments survives with `(1 - p)^c`;
//! - **byte errors** `λ` per wire byte (`λ = -8 ln(1 - BER)`): a datagram of `L` wire bytes
//!   survives them with `exp(-λ L)`;
//! - **burstiness**: the mean length of a run of consecutive lost segments (`1/(1 - q)` for
//!   independent losses at rate `q`, longer for a Gilbert-Elliott channel);
//! - the round trip (from a NACK to the repair it asked for) and its variation, the spacing of
//!   a frame's segments on arrival and its jitter, and the path MTU (configured).
//!
//! Loss and byte errors are told apart as far as the data allows. Damaged datagrams are byte
//! errors, seen directly; once any are seen, the missing ones are loss. Where damaged datagrams
//! never arrive (checksums discard them on the way), both causes look alike but for their
//! dependence on size: losses that grow with the datagram's bytes are byte errors, those that
//! grow with its packet count are loss. The estimator keeps decayed counts per size class
//! (packets, wire bytes) and fits `(p, λ)` to them: per class, loss events per segment
//! `-ln(1 - q) = -ln(1 - p) x packets + λ x wire bytes` (exact for the two independent
//! causes), by weighted least squares, a cause taken only where it shows beyond two standard
//! errors of the counting noise. Where the data cannot decide, the previous split is kept,
//! moving 5% per frame towards loss (the null: size-independent loss). With one size class only the fit keeps its previous split
//! (at the start: loss), and moves as soon as sizes differ, which the size policy's own moves
//! and the shorter last segment of each frame provide.
//!
//! The fit also gives the standard error of `λ` ([`LinkEstimate::byte_error_se`]): how
//! decided the split is. [`LinkEstimate::split_regret`] turns it into what a better split
//! could still gain, which is what the size policy's exploration buys.
//!
//! [`LinkEstimate::best_size`] picks the segment size that maximises delivered payload per wire
//! byte, `S / wire(S) x (1 - p)^c(S) x exp(-λ wire(S))`, fragmentation counted: under pure loss
//! that is the largest unfragmented size (or the next fragment count's, when loss is so low
//! that the header share matters more), under byte errors the square-root law optimum
//! `S* = (-H + sqrt(H² + 4H/λ)) / 2` for the header `H` of its fragment count.

use std::time::Duration;

use super::rtt::SmoothedRtt;

use crate::link::{packet_sizes, wire_bytes, DEFAULT_MTU, IPV4_HEADER_LEN, UDP_HEADER_LEN};
use crate::time::Instant;

use super::limits::SizeLimits;
use super::wire::{PARITY_OVERHEAD, SEGMENT_OVERHEAD};

/// The estimate, as the policies read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkEstimate {
    /// Probability that an IP packet is lost, whatever its size.
    pub loss: f64,
    /// Byte errors per wire byte (`-8 ln(1 - BER)`).
    pub byte_error: f64,
    /// Mean length of a run of lost segments, at least 1.
    pub mean_burst: f64,
    /// Smoothed round trip, once measured.
    pub srtt: Option<Duration>,
    /// Its mean deviation.
    pub rttvar: Duration,
    /// Smoothed spacing of a frame's segments on arrival.
    pub gap: Duration,
    /// Mean deviation of that spacing.
    pub jitter: Duration,
    /// How late a segment taken for lost has come, unasked, lately (decaying): the extra
    /// patience the receiver's NACK timing needs on this link.
    pub late: Duration,
    /// Path MTU in bytes.
    pub mtu: usize,
    /// The smallest and largest datagrams (UDP payload bytes) the estimate has seen enough of
    /// (two segments' weight): where the fit is backed by data.
    pub seen: Option<(usize, usize)>,
    /// Standard error of [`byte_error`](Self::byte_error) from the counting noise of the fit:
    /// how well the data split the failures between loss and byte errors. Infinite while they
    /// cannot (one size class, sizes too alike, nothing measured). See [`Self::split_regret`].
    pub byte_error_se: f64,
    /// A change-point reset happened within the last few frames: the fit's window still mixes
    /// the old link's counts with the new one's, so its standard error understates the doubt
    /// about the new link's split.
    pub changed_recently: bool,
}

impl Default for LinkEstimate {
    /// A perfect link of MTU 1500, nothing measured.
    fn default() -> Self {
        LinkEstimate {
            loss: 0.0,
            byte_error: 0.0,
            mean_burst: 1.0,
            srtt: None,
            rttvar: Duration::ZERO,
            gap: Duration::ZERO,
            jitter: Duration::ZERO,
            late: Duration::ZERO,
            mtu: DEFAULT_MTU,
            seen: None,
            byte_error_se: f64::INFINITY,
            changed_recently: false,
        }
    }
}

impl LinkEstimate {
    /// Probability that a datagram of `len` bytes of UDP payload arrives intact.
    pub fn p_datagram(&self, len: usize) -> f64 {
        let keep = 1.0 - self.loss.clamp(0.0, 1.0);
        let lambda = self.byte_error.max(0.0);
        packet_sizes(len, self.mtu)
            .map(|bytes| keep * (-lambda * bytes as f64).exp())
            .product()
    }

    /// Probability that a data segment of `size` payload bytes arrives intact.
    pub fn p_intact(&self, size: usize) -> f64 {
        self.p_datagram(size + SEGMENT_OVERHEAD)
    }

    /// Probability that a parity segment of `size` shard bytes arrives intact.
    pub fn p_intact_parity(&self, size: usize) -> f64 {
        self.p_datagram(size + PARITY_OVERHEAD)
    }

    /// Payload bytes delivered per wire byte with data segments of `size` bytes.
    pub fn efficiency(&self, size: usize) -> f64 {
        let wire = wire_bytes(size + SEGMENT_OVERHEAD, self.mtu) as f64;
        size as f64 * self.p_intact(size) / wire
    }

    /// The segment size within `limits` that maximises [`efficiency`](Self::efficiency);
    /// with `unfragmented`, among sizes that fit one packet (when any does). The optimum for
    /// each fragment count is found in closed form, so this is a handful of evaluations.
    pub fn best_size(&self, limits: &SizeLimits, unfragmented: bool) -> usize {
        let cap = self.mtu.max(crate::link::MIN_MTU) - IPV4_HEADER_LEN;
        let base = SEGMENT_OVERHEAD + UDP_HEADER_LEN;
        let fragments = |size: usize| (size + base).div_ceil(cap);
        let most = if unfragmented && fragments(limits.min) == 1 {
            1
        } else {
            fragments(limits.max)
        };
        let mut candidates = vec![limits.min];
        if !unfragmented || most > 1 {
            candidates.push(limits.max);
        }
        for c in 1..=most {
            // Sizes that travel in exactly `c` packets.
            let lo = ((c - 1) * cap + 1).saturating_sub(base).max(limits.min);
            let hi = (c * cap).saturating_sub(base).min(limits.max);
            if lo > hi {
                continue;
            }
            let header = (base + c * IPV4_HEADER_LEN) as f64;
            let star = if self.byte_error > 0.0 {
                (-header + (header * header + 4.0 * header / self.byte_error).sqrt()) / 2.0
            } else {
                f64::INFINITY
            };
            let s = star.clamp(lo as f64, hi as f64);
            candidates.extend([s.floor() as usize, s.ceil() as usize, hi]);
        }
        candidates
            .into_iter()
            .filter(|&s| s >= limits.min && s <= limits.max)
            .filter(|&s| !unfragmented || most > 1 || fragments(s) == 1)
            .map(|s| (s, self.efficiency(s)))
            .fold((limits.min, f64::MIN), |best, (s, e)| {
                if e > best.1 + 1e-12 || (e >= best.1 - 1e-12 && s > best.0) {
                    (s, e)
                } else {
                    best
                }
            })
            .0
    }

    /// How much efficiency segments of `size` could be losing for want of a better split of
    /// the failures between loss and byte errors: the largest shortfall of `size` against the
    /// best size of a link that fits the data as well within `z` standard errors of
    /// [`byte_error`](Self::byte_error), that is, with `λ ± z se` and the per-packet loss moved
    /// to keep the failure rate at `size` (which the data pin down far better than the split).
    /// 1 when the split is unknown. What exploring other sizes can still gain, at most.
    pub fn split_regret(
        &self,
        size: usize,
        limits: &SizeLimits,
        unfragmented: bool,
        z: f64,
    ) -> f64 {
        let se = self.byte_error_se;
        if !se.is_finite() {
            return 1.0;
        }
        self.plausible_splits(size, z)
            .iter()
            .map(|l| l.regret(size, limits, unfragmented))
            .fold(0.0, f64::max)
    }

    /// The two links at the ends of the splits of the failures at `size` that fit the data
    /// within `z` standard errors of [`byte_error`](Self::byte_error) (see
    /// [`resplit`](Self::resplit)): fewer byte errors and more per-packet loss, and the
    /// other way round. Before the fit can tell (an infinite standard error), loss alone and
    /// byte errors alone.
    pub fn plausible_splits(&self, size: usize, z: f64) -> [LinkEstimate; 2] {
        let (lambda, se) = (self.byte_error.max(0.0), self.byte_error_se);
        let ends = if se.is_finite() {
            [(lambda - z * se).max(0.0), lambda + z * se]
        } else {
            [0.0, f64::INFINITY]
        };
        ends.map(|l| self.resplit(size, l))
    }

    /// The link that fails segments of `size` as often as this one, with `byte_error` byte
    /// errors per wire byte (at most all of the failures) and per-packet loss for the rest.
    pub fn resplit(&self, size: usize, byte_error: f64) -> LinkEstimate {
        let len = size + SEGMENT_OVERHEAD;
        let packets = packet_sizes(len, self.mtu).count().max(1) as f64;
        let wire = wire_bytes(len, self.mtu) as f64;
        let hazard = -(1.0 - self.loss.clamp(0.0, 0.999_999)).ln() * packets
            + self.byte_error.max(0.0) * wire;
        let l = byte_error.clamp(0.0, hazard / wire);
        LinkEstimate {
            loss: 1.0 - (-(hazard - l * wire) / packets).exp(),
            byte_error: l,
            ..*self
        }
    }

    /// How much less efficient segments of `size` are than this link's best size (0 to 1).
    pub fn regret(&self, size: usize, limits: &SizeLimits, unfragmented: bool) -> f64 {
        let best = self.efficiency(self.best_size(limits, unfragmented));
        if best > 0.0 {
            1.0 - self.efficiency(size) / best
        } else {
            0.0
        }
    }

    /// Probability that at least `k` of `k + m` segments sent back to back arrive, data
    /// segments lost with `data_loss`, parity ones with `parity_loss`, losses running in
    /// bursts of [`mean_burst`](Self::mean_burst) on average (a two-state chain with that mean
    /// run length and the data loss rate as its stationary loss).
    pub fn p_complete(&self, k: usize, m: usize, data_loss: f64, parity_loss: f64) -> f64 {
        let n = k + m;
        let q = data_loss.clamp(0.0, 0.999_999);
        if q == 0.0 && parity_loss <= 0.0 {
            return 1.0;
        }
        // P(lost | previous lost) from the mean run length, never below independence.
        let stay = (1.0 - 1.0 / self.mean_burst.max(1.0)).clamp(q, 0.999);
        let enter = (q * (1.0 - stay) / (1.0 - q)).clamp(0.0, 1.0);
        // dist[lost][state]: state 0 = previous arrived, 1 = previous lost; losses past m are
        // pooled at m + 1.
        let mut dist = vec![[0.0f64; 2]; m + 2];
        dist[0][0] = 1.0 - q;
        dist[0][1] = q;
        let mut next = vec![[0.0f64; 2]; m + 2];
        let mut first = true;
        for i in 0..n {
            let rate = if i < k {
                q
            } else {
                parity_loss.clamp(0.0, 1.0)
            };
            let scale = if q > 0.0 { rate / q } else { 1.0 };
            next.iter_mut().for_each(|s| *s = [0.0; 2]);
            for (lost, states) in dist.iter().enumerate() {
                for (state, &p) in states.iter().enumerate() {
                    if p == 0.0 {
                        continue;
                    }
                    let p_loss = if first {
                        // The first segment: the chain's state is the stationary one.
                        if state == 1 {
                            1.0
                        } else {
                            0.0
                        }
                    } else if state == 1 {
                        (stay * scale).min(1.0)
                    } else {
                        (enter * scale).min(1.0)
                    };
                    let up = (lost + 1).min(m + 1);
                    next[up][1] += p * p_loss;
                    next[lost][0] += p * (1.0 - p_loss);
                }
            }
            std::mem::swap(&mut dist, &mut next);
            first = false;
        }
        dist.iter().take(m + 1).map(|s| s[0] + s[1]).sum()
    }
}

/// The round trip, arrival spacing, jitter and lateness of a [`LinkEstimate`], on their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkTiming {
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    pub gap: Duration,
    pub jitter: Duration,
    pub late: Duration,
}

/// Decayed counts of first-crossing segments of one size class.
#[derive(Debug, Clone, Copy)]
struct Bin {
    packets: usize,
    bucket: usize,
    /// Sent, their wire bytes, missing (damaged included), damaged.
    sent: f64,
    wire: f64,
    missing: f64,
    damaged: f64,
}

/// Size classes kept (the smallest is forgotten first).
const MAX_BINS: usize = 16;
/// Wire bytes per size class.
const BUCKET_BYTES: usize = 64;

/// The estimator a receiver keeps per session. See the module docs.
#[derive(Debug, Clone)]
pub struct LinkEstimator {
    mtu: usize,
    bins: Vec<Bin>,
    /// Loss events per packet (`-ln(1 - p)`) and byte errors per wire byte.
    rate_loss: f64,
    rate_byte: f64,
    /// Decayed lost segments and runs of them.
    run_lost: f64,
    runs: f64,
    rtt: SmoothedRtt,
    gap_us: Option<f64>,
    jitter_us: f64,
    late_us: f64,
    last_arrival: Option<(u32, Instant)>,
    /// The failure level over a long window (decayed sent and missing first-crossing
    /// datagrams), and the factor it sets on the fit's rates; see [`Self::LEVEL_DECAY`].
    slow_sent: f64,
    slow_missing: f64,
    level: f64,
    /// Standard error of `rate_byte` from the last fit (infinite when it could not tell).
    se_byte: f64,
    /// Crossings since the last change-point reset of the long window.
    since_change: u32,
}

impl LinkEstimator {
    /// The long window's weight kept per crossing (about 400 frames). The fit's window of 50
    /// frames holds some 400 datagrams: at 1% loss its rate is 1% +- 0.5%, and the parity a
    /// frame needs doubles at 2%. So the fit gives the shape (loss against bit errors, by
    /// size) and the long window the level, unless the short window's level differs from it
    /// by more than [`Self::LEVEL_CHANGE`] standard errors: then the link changed, and the long window restarts
    /// from the short one's counts (a change-point reset, so a step in loss is followed within
    /// a few frames).
    const LEVEL_DECAY: f64 = 0.9975;
    /// Standard errors between the two windows' levels that make a change. Tested after
    /// every crossing, two would fire by chance every few dozen frames and hand the level
    /// back to the noisy short window; three fire about once in several hundred.
    const LEVEL_CHANGE: f64 = 3.0;
    /// Standard errors a cause (loss, byte errors) must show in the fit to be taken. The test
    /// runs after every crossing: at two, a loss-only link showed byte errors by chance every
    /// few dozen frames (at 20% loss the size fell to a third on one seed); at three, weak
    /// bit errors (1e-5) went unseen. 2.5 with the policy's wider exploration does both.
    const SIGNIFICANCE: f64 = 2.5;
    /// Pseudo-runs of i.i.d. length in the burst estimate (see [`Self::mean_burst`]).
    const PRIOR_RUNS: f64 = 8.0;
    /// Weight kept by past crossings at each new one (a window of about 50 frames).
    const DECAY: f64 = 0.98;
    /// Prior: 20 pseudo-packets of 1500 bytes with 0.1% loss and 1e-7 byte errors per byte.
    const PRIOR_PACKETS: f64 = 20.0;
    const PRIOR_LOSS: f64 = 0.02;
    const PRIOR_BYTES: f64 = 30_000.0;
    const PRIOR_BYTE_ERRORS: f64 = 0.003;
    /// Crossings after a change-point reset during which the estimate says so
    /// ([`LinkEstimate::changed_recently`]): the fit's window still holds the old link's
    /// counts, so its standard errors understate the doubt. The size policy does not grow past
    /// the sizes seen meanwhile. 20: in `policy-vs-loss` (8 seeds, NACK-only, model / best
    /// fixed efficiency, exploring 1 frame in 16 once settled) 10 left bursty 6% and 10% at
    /// 0.976 and 0.971 and 30% loss at 0.966, 20 gives 0.987, 0.985 and 0.971 (0 made the
    /// split count as known at once and gave 0.972, 0.970, 0.966, with 1e-5 bit errors at
    /// 0.957).
    const CHANGE_DOUBT: u32 = 20;
    /// How far an undecided fit moves the split towards loss per frame.
    const TOWARDS_NULL: f64 = 0.05;
    /// A class's failure share is capped here before `-ln(1 - q)`.
    const MAX_SHARE: f64 = 0.95;

    pub fn new(mtu: usize) -> Self {
        LinkEstimator {
            mtu: mtu.max(crate::link::MIN_MTU),
            bins: Vec::new(),
            rate_loss: Self::PRIOR_LOSS / Self::PRIOR_PACKETS,
            rate_byte: Self::PRIOR_BYTE_ERRORS / Self::PRIOR_BYTES,
            run_lost: 0.0,
            runs: 0.0,
            rtt: SmoothedRtt::default(),
            gap_us: None,
            jitter_us: 0.0,
            late_us: 0.0,
            last_arrival: None,
            slow_sent: 0.0,
            slow_missing: 0.0,
            level: 1.0,
            se_byte: f64::INFINITY,
            since_change: 0,
        }
    }

    /// The timing part of the estimate alone: what the receiver's NACK timers read on every
    /// segment, without the loss model's arithmetic.
    pub fn timing(&self) -> LinkTiming {
        LinkTiming {
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            gap: Duration::from_micros(self.gap_us.unwrap_or(0.0) as u64),
            jitter: Duration::from_micros(self.jitter_us as u64),
            late: Duration::from_micros(self.late_us as u64),
        }
    }

    pub fn estimate(&self) -> LinkEstimate {
        let t = self.timing();
        let loss = 1.0 - (-self.rate_loss * self.level).exp();
        LinkEstimate {
            loss,
            byte_error: self.rate_byte * self.level,
            mean_burst: self.mean_burst(loss),
            srtt: t.srtt,
            rttvar: t.rttvar,
            gap: t.gap,
            jitter: t.jitter,
            late: t.late,
            mtu: self.mtu,
            byte_error_se: self.se_byte * self.level,
            changed_recently: self.since_change < Self::CHANGE_DOUBT,
            seen: self
                .bins
                .iter()
                .filter(|b| b.sent >= 2.0)
                .map(|b| {
                    let wire = (b.wire / b.sent) as usize;
                    wire.saturating_sub(UDP_HEADER_LEN + b.packets * IPV4_HEADER_LEN)
                })
                .fold(None, |r, s| match r {
                    None => Some((s, s)),
                    Some((lo, hi)) => Some((lo.min(s), hi.max(s))),
                }),
        }
    }

    fn bin(&mut self, len: usize) -> &mut Bin {
        let packets = packet_sizes(len, self.mtu).count();
        let wire = wire_bytes(len, self.mtu);
        let bucket = wire / BUCKET_BYTES;
        let at = match self
            .bins
            .iter()
            .position(|b| b.packets == packets && b.bucket == bucket)
        {
            Some(at) => at,
            None => {
                if self.bins.len() >= MAX_BINS {
                    let smallest = (0..self.bins.len())
                        .min_by(|&a, &b| self.bins[a].sent.total_cmp(&self.bins[b].sent))
                        .unwrap_or(0);
                    self.bins.swap_remove(smallest);
                }
                self.bins.push(Bin {
                    packets,
                    bucket,
                    sent: 0.0,
                    wire: 0.0,
                    missing: 0.0,
                    damaged: 0.0,
                });
                self.bins.len() - 1
            }
        };
        &mut self.bins[at]
    }

    /// Share of recent first-crossing datagrams that did not arrive intact (decayed counts;
    /// 0 before any). Cheap: a sum over the size classes, no fit.
    pub fn missing_share(&self) -> f64 {
        let (missing, sent) = self.short_totals();
        if sent > 0.0 {
            missing / sent
        } else {
            0.0
        }
    }

    /// A datagram of the session arrived damaged: `len` bytes of UDP payload with a bad CRC.
    /// The crossing it belonged to counts it missing too.
    pub fn on_damaged(&mut self, len: usize) {
        self.bin(len).damaged += 1.0;
    }

    /// A first-crossing segment of `frame` arrived at `now`: the spacing of arrivals within a
    /// frame and its jitter. Time going backwards is ignored.
    pub fn on_arrival(&mut self, now: Instant, frame: u32) {
        if let Some((f, at)) = self.last_arrival {
            if f == frame && now >= at {
                let gap = (now - at).as_micros() as f64;
                match self.gap_us {
                    Some(g) => {
                        self.jitter_us += ((gap - g).abs() - self.jitter_us) / 16.0;
                        self.gap_us = Some(g + (gap - g) / 8.0);
                    }
                    None => self.gap_us = Some(gap),
                }
            }
        }
        self.last_arrival = Some((frame, now));
    }

    /// A segment NACKed as lost arrived in its first crossing, `by` after the NACK: the NACK
    /// was spurious. The NACK timing waits that much longer from now on (decaying per frame).
    pub fn on_late(&mut self, by: Duration) {
        self.late_us = self.late_us.max(by.as_micros() as f64 * 1.5);
    }

    /// A round-trip sample: from a NACK to the first repair it brought (RFC 6298's filter).
    pub fn on_rtt(&mut self, sample: Duration) {
        self.rtt.update(sample);
    }

    /// One frame's first crossing, in the order it was sent: each segment's UDP payload length
    /// and whether it arrived (intact). Refits the loss model.
    pub fn on_crossing(&mut self, segments: impl IntoIterator<Item = (usize, bool)>) {
        for b in &mut self.bins {
            b.sent *= Self::DECAY;
            b.wire *= Self::DECAY;
            b.missing *= Self::DECAY;
            b.damaged *= Self::DECAY;
        }
        self.bins.retain(|b| b.sent >= 0.02);
        self.run_lost *= Self::LEVEL_DECAY;
        self.runs *= Self::LEVEL_DECAY;
        self.late_us *= Self::DECAY;
        let mut in_run = false;
        let mut any = false;
        let (mut new_sent, mut new_missing) = (0.0, 0.0);
        for (len, arrived) in segments {
            any = true;
            new_sent += 1.0;
            if !arrived {
                new_missing += 1.0;
            }
            let wire = wire_bytes(len, self.mtu) as f64;
            let b = self.bin(len);
            b.sent += 1.0;
            b.wire += wire;
            if !arrived {
                b.missing += 1.0;
                self.run_lost += 1.0;
                if !in_run {
                    self.runs += 1.0;
                }
            }
            in_run = !arrived;
        }
        if any {
            self.since_change = self.since_change.saturating_add(1);
            self.refit();
            self.relevel(new_sent, new_missing);
        }
    }

    /// Mean loss run length: runs are counted over the long window (a link's burstiness
    /// changes more slowly than its level), with [`Self::PRIOR_RUNS`] pseudo-runs of the
    /// i.i.d. length `1 / (1 - loss)`: at 1% loss a window holds a few dozen runs, and one
    /// chance pair of adjacent losses must not read as a bursty link (it would double the
    /// parity of the next twenty frames).
    fn mean_burst(&self, loss: f64) -> f64 {
        let iid = 1.0 / (1.0 - loss.min(Self::MAX_SHARE));
        ((self.run_lost + Self::PRIOR_RUNS * iid) / (self.runs + Self::PRIOR_RUNS)).max(1.0)
    }

    /// Updates the long window and the level factor after a crossing (see
    /// [`Self::LEVEL_DECAY`]).
    /// Missing and sent first-crossing datagrams over the fit's (short) window, all sizes.
    fn short_totals(&self) -> (f64, f64) {
        self.bins
            .iter()
            .fold((0.0, 0.0), |(m, s), b| (m + b.missing, s + b.sent))
    }

    fn relevel(&mut self, new_sent: f64, new_missing: f64) {
        let (missing, sent) = self.short_totals();
        self.slow_sent = self.slow_sent * Self::LEVEL_DECAY + new_sent;
        self.slow_missing = self.slow_missing * Self::LEVEL_DECAY + new_missing;
        self.level = 1.0;
        if sent < 1.0 || missing <= 0.0 {
            return;
        }
        let fast = missing / sent;
        let slow = (self.slow_missing + 0.5) / (self.slow_sent + 1.0);
        let spread = (1.0 / sent - 1.0 / self.slow_sent.max(sent)).max(0.25 / sent);
        let se = (slow * (1.0 - slow) * spread).sqrt();
        if (fast - slow).abs() > Self::LEVEL_CHANGE * se {
            self.slow_sent = sent;
            self.slow_missing = missing;
            self.since_change = 0;
            return;
        }
        let hazard = |p: f64| -(1.0 - p.min(Self::MAX_SHARE)).ln();
        let slow = self.slow_missing / self.slow_sent.max(1.0);
        self.level = (hazard(slow) / hazard(fast)).clamp(0.25, 4.0);
    }

    fn refit(&mut self) {
        let events = |missing: f64, sent: f64| {
            let share = (missing / sent.max(1e-9)).clamp(0.0, Self::MAX_SHARE);
            -sent * (1.0 - share).ln()
        };
        let packets: f64 = self.bins.iter().map(|b| b.sent * b.packets as f64).sum();
        let bytes: f64 = self.bins.iter().map(|b| b.wire).sum();
        let damaged: f64 = self.bins.iter().map(|b| b.damaged).sum();
        let loss_den = packets + Self::PRIOR_PACKETS;
        let byte_den = bytes + Self::PRIOR_BYTES;
        if damaged >= 0.5 {
            // Damage is visible: damaged datagrams are the byte errors, the rest is loss.
            let lost: f64 = self
                .bins
                .iter()
                .map(|b| events((b.missing - b.damaged).max(0.0), b.sent))
                .sum();
            self.rate_loss = (lost + Self::PRIOR_LOSS) / loss_den;
            let errors: f64 = self.bins.iter().map(|b| events(b.damaged, b.sent)).sum();
            self.rate_byte = (errors + Self::PRIOR_BYTE_ERRORS) / byte_den;
            // Seen directly: the counting noise of the damaged datagrams alone.
            self.se_byte = (errors + Self::PRIOR_BYTE_ERRORS).sqrt() / byte_den;
            return;
        }
        // Per class, loss events per segment r = a x packets + λ x wire bytes: a weighted
        // least-squares fit of (a, λ) >= 0 over the classes (weights: segments sent).
        let (mut skk, mut skl, mut sll, mut skr, mut slr, mut total) =
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for b in &self.bins {
            let e = events(b.missing, b.sent);
            let r = e / b.sent;
            let k = b.packets as f64;
            let l = b.wire / b.sent;
            skk += b.sent * k * k;
            skl += b.sent * k * l;
            sll += b.sent * l * l;
            skr += b.sent * k * r;
            slr += b.sent * l * r;
            total += e;
        }
        // The previous split of the events between the causes, moved a little towards
        // size-independent loss (the null): what the fit keeps where the data cannot decide,
        // so that an estimate does not flip between the causes frame by frame.
        let kept_split = || {
            let (a0, l0) = (self.rate_loss, self.rate_byte);
            let bytes_per_packet = if skk > 0.0 { skl / skk } else { 1500.0 };
            let share = a0 / (a0 + l0 * bytes_per_packet).max(1e-30);
            let share = share + (1.0 - share) * Self::TOWARDS_NULL;
            let per_packet = if packets > 0.0 { total / packets } else { 0.0 };
            (
                per_packet * share,
                per_packet * (1.0 - share) / bytes_per_packet,
            )
        };
        let det = skk * sll - skl * skl;
        self.se_byte = f64::INFINITY;
        let (a, l) = if skk > 0.0 && sll > 0.0 && det > 1e-4 * skk * sll {
            let a = (skr * sll - slr * skl) / det;
            let l = (slr * skk - skr * skl) / det;
            // A cause is taken only where it shows itself beyond the counting noise
            // ([`Self::SIGNIFICANCE`] standard errors; the events are Poisson, so their
            // variance is about their mean): otherwise noise on a loss-only link would read
            // as byte errors and the size would drift down.
            let sent: f64 = self.bins.iter().map(|b| b.sent).sum();
            let var = (total / sent.max(1e-9)).max(1e-12);
            let se_l = (var * skk / det).sqrt();
            let loss_shows = a > Self::SIGNIFICANCE * (var * sll / det).sqrt();
            let bytes_show = l > Self::SIGNIFICANCE * se_l;
            // In the units of the rate (the prior's pseudo-bytes dilute it as they do `l`).
            self.se_byte = se_l * bytes / byte_den;
            match (loss_shows, bytes_show) {
                (true, true) => (a, l),
                (false, true) => (0.0, slr / sll),
                _ => kept_split(),
            }
        } else {
            // One size class (or sizes too alike to tell).
            kept_split()
        };
        self.rate_loss = (a * packets + Self::PRIOR_LOSS) / loss_den;
        self.rate_byte = (l * bytes + Self::PRIOR_BYTE_ERRORS) / byte_den;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Link, LinkConfig};
    use crate::proto::policy::{FrameOutcome, ModelBased, SizePolicy};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn limits() -> SizeLimits {
        SizeLimits {
            initial: 500,
            min: 100,
            max: 8000,
        }
    }

    /// Sends `frames` 10 KB frames over `link` at the sizes the model policy picks (NACK only),
    /// feeding the first crossings back; returns the estimator and the best size it sees.
    fn run(config: LinkConfig, frames: usize, seed: u64) -> (LinkEstimator, usize) {
        let mut link = Link::new(config.clone(), seed);
        let mut est = LinkEstimator::new(config.mtu);
        let mut policy = ModelBased::new(limits(), false);
        let mut size = policy.current();
        let mut t = Instant::ZERO;
        for _ in 0..frames {
            let k = 10_000usize.div_ceil(size);
            let mut crossing = Vec::new();
            for i in 0..k {
                let payload = if i + 1 < k {
                    size
                } else {
                    10_000 - size * (k - 1)
                };
                let len = payload + SEGMENT_OVERHEAD;
                let fate = link.transmit(t, len);
                let arrived = fate.copies.iter().any(|c| c.bit_flips.is_empty());
                let damaged = !fate.copies.is_empty() && !arrived;
                if damaged {
                    est.on_damaged(len);
                }
                crossing.push((len, arrived));
            }
            est.on_crossing(crossing);
            let outcome = FrameOutcome {
                segment_size: size,
                frame_len: 10_000,
                segments: k,
                failed: 0,
                delivered: true,
            };
            size = policy.observe(&outcome, &est.estimate());
            t += Duration::from_millis(100);
        }
        let best = est.estimate().best_size(&limits(), false);
        (est, best)
    }

    #[test]
    fn pure_loss_is_read_as_loss_and_picks_the_largest_unfragmented_size() {
        for (loss, seed) in [(0.05, 1), (0.1, 2), (0.2, 3)] {
            let (est, size) = run(
                LinkConfig {
                    loss,
                    ..LinkConfig::default()
                },
                300,
                seed,
            );
            let e = est.estimate();
            assert!(
                (e.loss - loss).abs() < loss * 0.35,
                "loss {loss}: estimated {}",
                e.loss
            );
            assert_eq!(size, 1500 - 28 - SEGMENT_OVERHEAD, "loss {loss}: {e:?}");
        }
    }

    #[test]
    fn bit_errors_behind_checksums_are_told_from_loss_by_their_size_dependence() {
        // Checksums on: damaged packets are discarded, so bit errors look like loss that
        // grows with size. The fit must find the square-root law's neighbourhood anyway.
        for (ber, seed) in [(3e-5, 4), (1e-4, 5)] {
            let cfg = LinkConfig {
                bit_error_rate: ber,
                ..LinkConfig::default()
            };
            let truth = LinkEstimate {
                byte_error: -8.0 * (1.0f64 - ber).ln(),
                ..LinkEstimate::default()
            };
            let best = truth.best_size(&limits(), false);
            let (_, size) = run(cfg, 400, seed);
            let ratio = truth.efficiency(size) / truth.efficiency(best);
            assert!(
                ratio > 0.97,
                "ber {ber}: picked {size} B, best {best} B, {ratio:.3} of its efficiency"
            );
        }
    }

    #[test]
    fn a_bit_error_split_settles_and_one_size_class_leaves_it_open() {
        let lim = limits();
        // Bit errors behind checksums (1e-4): the sizes the policy varies pin the split down
        // to a few percent of efficiency, and then the policy explores rarely. Exploring
        // rarely thins the smaller sizes until the doubt shows again, so the regret is held
        // about the threshold (0.0088-0.0104 from 200 to 400 frames on this seed): settled
        // more often than not, and never far above.
        let cfg = LinkConfig {
            bit_error_rate: 1e-4,
            ..LinkConfig::default()
        };
        let mut settled = 0;
        let mut checks = 0;
        for n in (200..=400).step_by(40) {
            let (est, size) = run(cfg.clone(), n, 8);
            let e = est.estimate();
            assert!(e.byte_error_se.is_finite(), "{e:?}");
            assert!(e.byte_error_se < 0.3 * e.byte_error, "{e:?}");
            let regret = e.split_regret(size, &lim, false, ModelBased::DOUBT);
            assert!(regret < 1.5 * ModelBased::REGRET, "{n} frames: {regret}");
            settled += usize::from(regret < ModelBased::REGRET);
            checks += 1;
        }
        assert!(2 * settled > checks, "settled at {settled} of {checks}");
        // One size class only: loss or byte errors, the data cannot say.
        let mut est = LinkEstimator::new(1500);
        feed(&mut est, 0..100, |f, i| {
            (f as usize * 8 + i).is_multiple_of(5)
        });
        let e = est.estimate();
        assert!(e.byte_error_se.is_infinite(), "{e:?}");
        assert_eq!(e.split_regret(1442, &lim, false, ModelBased::DOUBT), 1.0);
    }

    #[test]
    fn visible_damage_is_counted_as_byte_errors() {
        let ber = 1e-4;
        let cfg = LinkConfig {
            bit_error_rate: ber,
            checksums: false,
            loss: 0.02,
            ..LinkConfig::default()
        };
        let (est, _) = run(cfg, 300, 6);
        let e = est.estimate();
        let lambda = -8.0 * (1.0f64 - ber).ln();
        assert!((e.byte_error / lambda - 1.0).abs() < 0.3, "{e:?}");
        assert!((e.loss - 0.02).abs() < 0.012, "{e:?}");
    }

    #[test]
    fn bursts_lengthen_the_mean_run_and_ask_for_more_parity() {
        let mut est = LinkEstimator::new(1500);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            // Runs of three lost segments in one frame of two.
            let start = rng.random_range(0..16usize);
            let lost = |i: usize| start < 8 && (start..start + 3).contains(&i);
            est.on_crossing((0..10).map(|i| (1472, !lost(i))));
        }
        let e = est.estimate();
        assert!((e.mean_burst - 3.0).abs() < 0.2, "{e:?}");
        let iid = LinkEstimate {
            mean_burst: 1.0,
            ..e
        };
        let q = 1.0 - e.p_intact(1442);
        assert!(e.p_complete(7, 2, q, q) < iid.p_complete(7, 2, q, q));
    }

    #[test]
    fn p_complete_matches_the_binomial_for_independent_loss() {
        let e = LinkEstimate::default();
        // P(at most 2 of 9 lost) at 10%.
        let exact: f64 = (0..=2)
            .map(|j| {
                let c = [1.0, 9.0, 36.0][j];
                c * 0.1f64.powi(j as i32) * 0.9f64.powi(9 - j as i32)
            })
            .sum();
        let iid = LinkEstimate {
            mean_burst: 1.0 / 0.9,
            ..e
        };
        assert!((iid.p_complete(7, 2, 0.1, 0.1) - exact).abs() < 1e-9);
        assert_eq!(e.p_complete(7, 0, 0.0, 0.0), 1.0);
    }

    #[test]
    fn nonsense_input_stays_bounded() {
        let mut est = LinkEstimator::new(0);
        // Every datagram damaged, then none at all, then time going backwards.
        for _ in 0..100 {
            est.on_damaged(1472);
            est.on_crossing([(1472, false); 8]);
        }
        let e = est.estimate();
        assert!(e.loss.is_finite() && e.byte_error.is_finite() && e.loss <= 1.0);
        est.on_crossing([]);
        est.on_arrival(Instant::from_micros(10_000), 1);
        est.on_arrival(Instant::from_micros(5_000), 1);
        est.on_rtt(Duration::ZERO);
        for len in [0, 1, 65_535] {
            est.on_crossing([(len, true), (len, false)]);
        }
        assert!(est.bins.len() <= MAX_BINS);
        let e = est.estimate();
        assert!(e.p_intact(1000).is_finite());
        let s = e.best_size(&limits(), true);
        assert!((100..=8000).contains(&s));
    }

    /// `frames` crossings of 8 segments of 1442 B where `lost(frame, index)` says which miss.
    fn feed(
        est: &mut LinkEstimator,
        frames: std::ops::Range<u32>,
        lost: impl Fn(u32, usize) -> bool,
    ) {
        for f in frames {
            est.on_crossing((0..8).map(|i| (1442 + SEGMENT_OVERHEAD, !lost(f, i))));
        }
    }

    #[test]
    fn one_chance_pair_of_losses_is_not_a_bursty_link_and_a_step_in_loss_is_followed() {
        let mut est = LinkEstimator::new(1500);
        // 1% i.i.d.-like loss: one segment in 100, spread out.
        let spread = |f: u32, i: usize| (f * 8 + i as u32) % 100 == 37;
        feed(&mut est, 0..200, spread);
        // A chance pair of adjacent losses in one frame.
        feed(&mut est, 200..201, |_, i| i == 3 || i == 4);
        let e = est.estimate();
        assert!(e.mean_burst < 1.1, "{e:?}");
        assert!((0.006..0.02).contains(&e.loss), "{e:?}");
        // The parity that frame needs is still one (the level is the long window's).
        let parity = super::super::fec::plan_for(&e, 10_000, 1442, 100, 1.0, 0.01).parity;
        assert_eq!(parity, 1, "{e:?}");
        // Then the link turns to 20% loss: within ten frames the long window is dropped and
        // the estimate is the short window's (4-5% by then, and rising), not held at 1%.
        feed(&mut est, 201..211, |f, i| {
            (f as usize * 8 + i).is_multiple_of(5)
        });
        let e = est.estimate();
        assert!(e.loss > 0.9 * est.missing_share(), "{e:?}");
        assert!(e.loss > 0.04, "{e:?}");
    }
}
