//! Seeded models of network links, shared by every backend.
//!
//! A [`Link`] is one *directed* link: it decides the fate of each UDP datagram offered to it —
//! lost (and why), or delivered when, how many times, and with which bits flipped. It is pure:
//! no I/O, no clock (the caller passes `now`), no global randomness (each link owns a
//! [`ChaCha8Rng`] seeded at construction). The turmoil and madsim simulators and the emulator
//! all run this same code, so their results are comparable, and a run is a function of its
//! configuration, seed and calls. Like smoltcp's fault injector it sits *around* the net layer:
//! the protocol never knows it is there.
//!
//! A [`Network`] puts the links of a run together: one per directed pair of named hosts,
//! seeded by [`pair_seed`], a schedule of [`Change`]s, and the datagrams in flight in a
//! [`Calendar`] queue, driven by `offer`, `poll` and `next_deadline`.
//!
//! # The model
//!
//! A datagram of `len` bytes of UDP payload meets, in order:
//!
//! 1. **Partition** ([`Link::set_partitioned`]): while on, every datagram is lost, and nothing
//!    else happens (no queueing, no randomness drawn).
//! 2. **Queue and rate limit** (`rate_bytes_per_s`, `queue_bytes`): the link serializes one
//!    datagram at a time, FIFO, at the rate, counting the bytes on the wire
//!    ([`wire_bytes`]: payload + 28, plus 20 per extra fragment). The backlog at `now` is the
//!    bytes accepted but not yet serialized. A datagram that would take the backlog past
//!    `queue_bytes` is tail-dropped ([`LossCause::QueueFull`]) — except that an idle link
//!    (empty backlog) always takes one, so a datagram larger than the queue is not a black
//!    hole. An accepted datagram occupies the medium even if it is lost later on.
//!
//!    With a **capacity** instead of a rate (`capacity`: a Mahimahi trace or the seeded
//!    synthetic cellular model, see [`Capacity`]) the serializer is driven by delivery
//!    opportunities, as Mahimahi's `mm-link` is: each carries up to [`OPPORTUNITY_BYTES`] wire
//!    bytes of the queue's head, FIFO, a datagram spanning several opportunities or sharing one
//!    with others; it finishes at the opportunity that carries its last byte. An opportunity
//!    that finds the queue empty is wasted (an idle link banks nothing). The trace's time
//!    origin is the link's [`Instant::ZERO`], and it repeats with its period. The backlog is the
//!    bytes still to be carried by opportunities after `now`, and tail drop works as above. A
//!    capacity with no opportunity for a long time just holds (and then tail-drops) what is
//!    offered.
//! 3. **The medium, per IP packet**: the datagram travels as the fragments of
//!    [`packet_sizes`] and is lost if any of them is. For each packet in turn, the
//!    [`GilbertElliott`] chain (if `burst` is set) takes one step and may lose it
//!    ([`LossCause::Burst`]); else i.i.d. `loss` may ([`LossCause::Random`]); else each of its
//!    bits flips with probability `bit_error_rate`. With `checksums` on, a packet with a
//!    flipped bit is discarded ([`LossCause::Corrupted`]); with them off, the flips that fall
//!    in the UDP payload are handed to the receiver ([`Delivery::bit_flips`]) and those in
//!    headers are ignored. Large datagrams therefore really do suffer more: more fragments to
//!    lose, more bits to hit.
//! 4. **Timing**: delivery at the end of serialization + `delay_ms` + a uniform jitter in
//!    `[0, jitter_ms]`, but never before the previously delivered datagram (jitter does not
//!    reorder). Then, with probability `reorder`, the datagram is held back `reorder_delay_ms`
//!    more, letting later ones overtake it; and with probability `duplicate` it is delivered
//!    twice (an identical copy at the same instant).
//!
//! Every random decision is drawn only when its probability is above zero, so a perfect link
//! draws nothing. [`Link::set_config`] changes the parameters mid-run (fault schedules) and
//! keeps the random stream, the queue and the burst state; a change the link was told of in
//! advance ([`Link::foresee`], as a [`Network`]'s schedule does) also has the queue drain at
//! the new rate from its instant on, as a real queue does when its link speeds up.
//!
//! # Example
//!
//! ```
//! use livecam_system::link::{apply_bit_flips, Link, LinkConfig};
//! use livecam_system::time::Instant;
//!
//! let config = LinkConfig {
//!     loss: 0.01,
//!     delay_ms: 20.0,
//!     rate_bytes_per_s: Some(1_250_000.0),
//!     ..LinkConfig::default()
//! };
//! config.validate()?;
//! let mut link = Link::new(config, 42);
//! let datagram = vec![7u8; 1200];
//! let t = link.transmit(Instant::ZERO, datagram.len());
//! for copy in &t.copies {
//!     let mut bytes = datagram.clone();
//!     apply_bit_flips(&mut bytes, &copy.bit_flips);
//!     // hand `bytes` to the receiver at `copy.at`: here 1228 wire bytes at 1.25 MB/s + 20 ms
//!     assert_eq!(copy.at.as_micros(), 982 + 20_000);
//! }
//! assert_eq!(link.stats().offered, 1);
//! # Ok::<(), livecam_system::link::LinkConfigError>(())
//! ```

mod calendar;
mod capacity;
mod config;
mod error;
mod network;
mod packet;
#[cfg(test)]
mod tests;

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::time::Instant;

pub use calendar::Calendar;
pub use capacity::{
    Capacity, CapacityError, CapacitySpec, CapacityTrace, CellularSpec, TraceError,
    MAX_OPPORTUNITIES, MAX_PERIOD_S, MAX_TRACE_FILE_BYTES, OPPORTUNITY_BYTES,
};
pub use config::{GilbertElliott, LinkConfig, DEFAULT_MTU, DEFAULT_QUEUE_BYTES};
pub use error::LinkConfigError;
pub use network::{Change, Network};
pub use packet::{
    apply_bit_flips, packet_sizes, wire_bytes, IPV4_HEADER_LEN, MAX_MTU, MIN_MTU, UDP_HEADER_LEN,
};

use packet::{fragment_capacity, payload_bit, BitErrors};

/// The seed of the link from host `from` to host `to` in a run seeded `run_seed`: a ChaCha8
/// stream of the run seed, chosen by the xxh3 hash of `"from->to"`. A pure function of the
/// run seed and the two host names, so the simulators and the emulator give the same pair the
/// same dice, whatever order hosts are listed or links first used in.
pub fn pair_seed(run_seed: u64, from: &str, to: &str) -> u64 {
    use rand::RngCore;
    let mut rng = ChaCha8Rng::seed_from_u64(run_seed);
    rng.set_stream(xxhash_rust::xxh3::xxh3_64(
        format!("{from}->{to}").as_bytes(),
    ));
    rng.next_u64()
}

/// Slack, in bytes, for floating-point rounding when comparing a backlog with the queue's
/// capacity; far below one byte, so a queue still overflows at exactly `queue_bytes`.
const QUEUE_SLACK_BYTES: f64 = 1e-6;

/// One directed link's state: its configuration, random stream, queue and burst state.
///
/// See the [module docs](self) for the model.
#[derive(Clone, Debug)]
pub struct Link {
    config: LinkConfig,
    rng: ChaCha8Rng,
    partitioned: bool,
    /// Gilbert-Elliott state: `true` when bad.
    burst_bad: bool,
    /// When the serializer finishes everything accepted so far, in microseconds (fractional, so
    /// rounding never accumulates).
    busy_until_us: f64,
    /// With a capacity: where its serializer stands, `None` until it has carried a datagram
    /// (and again after the capacity is changed).
    cursor: Option<Cursor>,
    /// Delivery time of the last datagram not held back for reordering; later ones are not
    /// delivered before it.
    last_delivery: Instant,
    /// The models a schedule will give this link, in time order ([`Link::foresee`]): the
    /// serializer's finishing times are computed across them.
    upcoming: std::collections::VecDeque<(Instant, LinkConfig)>,
    stats: LinkStats,
}

/// The fate of one datagram: the copies delivered, or why it was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmission {
    /// When (and how damaged) the datagram arrives: empty when lost, two when duplicated.
    pub copies: Vec<Delivery>,
    /// Why the datagram was lost, when it was.
    pub lost: Option<LossCause>,
}

impl Transmission {
    /// Whether the datagram was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_some()
    }
}

/// One copy of a datagram arriving at the far end of the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When it arrives.
    pub at: Instant,
    /// Bits of the UDP payload to flip before handing it over (see [`apply_bit_flips`]),
    /// ascending. Non-empty only when the link's `checksums` are off.
    pub bit_flips: Vec<usize>,
}

/// Why a datagram was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossCause {
    /// The link was partitioned.
    Partition,
    /// One of its packets was lost to the i.i.d. `loss`.
    Random,
    /// One of its packets was lost to the Gilbert-Elliott bursty loss.
    Burst,
    /// One of its packets had bit errors and was discarded by the checksums.
    Corrupted,
    /// The queue in front of the rate limiter was full (tail drop).
    QueueFull,
}

impl fmt::Display for LossCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossCause::Partition => "partition",
            LossCause::Random => "random loss",
            LossCause::Burst => "burst loss",
            LossCause::Corrupted => "corrupted",
            LossCause::QueueFull => "queue full",
        })
    }
}

/// Counters of what a [`Link`] did. Every offered datagram is counted either as delivered or
/// under exactly one `lost_*` cause.
#[derive(Default, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Datagrams offered.
    pub offered: u64,
    /// Datagrams delivered (once or twice).
    pub delivered: u64,
    /// Datagrams lost to a partition.
    pub lost_partition: u64,
    /// Datagrams lost to i.i.d. packet loss.
    pub lost_random: u64,
    /// Datagrams lost to bursty loss.
    pub lost_burst: u64,
    /// Datagrams discarded for bit errors (checksums on).
    pub lost_corrupted: u64,
    /// Datagrams tail-dropped by a full queue.
    pub lost_queue: u64,
    /// Delivered datagrams that were delivered twice.
    pub duplicated: u64,
    /// Delivered datagrams with flipped bits (checksums off).
    pub corrupted_delivered: u64,
    /// UDP payload bytes offered.
    pub bytes_offered: u64,
}

impl LinkStats {
    /// Datagrams lost, for any cause.
    pub fn lost(&self) -> u64 {
        self.lost_partition
            + self.lost_random
            + self.lost_burst
            + self.lost_corrupted
            + self.lost_queue
    }
}

impl Link {
    /// A link with `config`, its randomness seeded from `seed`, idle, starting in the good
    /// burst state and not partitioned. Check `config` with [`LinkConfig::validate`] first.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Link {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            partitioned: false,
            burst_bad: false,
            busy_until_us: 0.0,
            cursor: None,
            last_delivery: Instant::ZERO,
            upcoming: std::collections::VecDeque::new(),
            stats: LinkStats::default(),
        }
    }

    /// The current configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the configuration, as a fault schedule does mid-run. The random stream, the
    /// queue, the burst state, the partition and the statistics are kept. Datagrams already
    /// accepted keep their departure times: when the change was foreseen ([`Link::foresee`],
    /// as a [`Network`]'s schedule does) those times already had the queue drain at the new
    /// rate from the change on; a change nobody foresaw leaves them at the old rate. Moving
    /// between a rate, a capacity and neither, datagrams accepted later queue behind those
    /// accepted before; a new capacity's first opportunity is its first one after the queue
    /// empties (the trace's origin stays at [`Instant::ZERO`]).
    pub fn set_config(&mut self, config: LinkConfig) {
        if config.capacity != self.config.capacity {
            self.cursor = None;
        }
        self.config = config;
    }

    /// Tells the link the models it will be given, each `(when, config)` (any order; these
    /// replace what it was told before), so that what it queues before a change drains at the
    /// new rate once the change is in force, as a real queue does when its link speeds up or
    /// slows down: a datagram accepted now finishes serializing at the rate of each stretch
    /// it spends in the queue. [`Link::set_config`] still makes each change; the two must
    /// agree, as a [`Network`] sees to. Rates and unlimited stretches are foreseen; the
    /// opportunities of a capacity are not (from a change to one on, the rate before it
    /// goes on, and a link on a capacity serializes by its trace alone).
    pub fn foresee(&mut self, mut changes: Vec<(Instant, LinkConfig)>) {
        changes.sort_by_key(|(at, _)| *at);
        self.upcoming = changes.into();
    }

    /// Cuts (`true`) or restores (`false`) the link. While cut every datagram is lost.
    pub fn set_partitioned(&mut self, on: bool) {
        self.partitioned = on;
    }

    /// Whether the link is cut.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// What the link has done so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Bytes accepted into the queue but not yet serialized at `now` (0 without a rate or a
    /// capacity). With a capacity, the bytes still to be carried by opportunities after `now`
    /// (those queued under a previous rate count as what the capacity could carry until they
    /// are out).
    pub fn backlog_bytes(&self, now: Instant) -> f64 {
        if let Some(capacity) = &self.config.capacity {
            let now_us = now.as_micros() as f64;
            if self.busy_until_us <= now_us {
                return 0.0;
            }
            let trace = capacity.trace();
            return match self.cursor {
                Some(c) => {
                    let first = trace.first_after(now).max(c.first);
                    let full = c.op.saturating_sub(first);
                    (full as f64) * OPPORTUNITY_BYTES as f64 + f64::from(c.used)
                }
                None => trace.bytes_between(now, instant_at(self.busy_until_us.ceil())) as f64,
            };
        }
        let (now_us, busy_us) = (now.as_micros() as f64, self.busy_until_us);
        let mut bytes = 0.0;
        if busy_us > now_us {
            self.walk_rate(now_us, |from, to, rate| {
                let end = to.min(busy_us);
                if let Some(rate) = rate {
                    bytes += (end - from).max(0.0) * rate / 1e6;
                }
                end >= busy_us
            });
        }
        bytes
    }

    /// Walks the serializer's rate from `start_us` on: calls `each(from_us, to_us, rate)` for
    /// each stretch of one rate (`None`: unlimited; the last stretch ends at infinity) until
    /// it returns `true`. The stretches are the current model's rate, then each foreseen
    /// change's (see [`Link::foresee`]); changes at or before `start_us` set the first one.
    fn walk_rate(&self, start_us: f64, mut each: impl FnMut(f64, f64, Option<f64>) -> bool) {
        let mut rate = self.rate();
        let mut from = start_us;
        for (at, config) in &self.upcoming {
            if config.capacity.is_some() {
                break;
            }
            let at_us = at.as_micros() as f64;
            if at_us > from {
                if each(from, at_us, rate) {
                    return;
                }
                from = at_us;
            }
            rate = rate_of(config);
        }
        each(from, f64::INFINITY, rate);
    }

    /// Decides the fate of one UDP datagram whose UDP payload is `len` bytes, offered to the
    /// link at `now`. Calls are expected in non-decreasing `now`.
    ///
    /// The work done is proportional to the number of fragments (and of bit errors), so `len`
    /// should be a real UDP payload size (at most 65 507 bytes).
    pub fn transmit(&mut self, now: Instant, len: usize) -> Transmission {
        self.stats.offered += 1;
        self.stats.bytes_offered = self
            .stats
            .bytes_offered
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        if self.partitioned {
            return self.lose(LossCause::Partition);
        }
        let Some(finish_us) = self.enqueue(now, wire_bytes(len, self.config.mtu)) else {
            return self.lose(LossCause::QueueFull);
        };
        let mut bit_flips = Vec::new();
        if let Some(cause) = self.cross_medium(len, &mut bit_flips) {
            return self.lose(cause);
        }

        let rng = &mut self.rng;
        let config = &self.config;
        let mut at_us = finish_us + millis_to_micros(config.delay_ms);
        let jitter_us = millis_to_micros(config.jitter_ms);
        if jitter_us > 0.0 {
            at_us += rng.random::<f64>() * jitter_us;
        }
        let mut at = instant_at(at_us).max(self.last_delivery);
        self.last_delivery = at;
        if chance(rng, config.reorder) {
            at = instant_at(at.as_micros() as f64 + millis_to_micros(config.reorder_delay_ms));
        }
        let duplicated = chance(rng, config.duplicate);

        self.stats.delivered += 1;
        if !bit_flips.is_empty() {
            self.stats.corrupted_delivered += 1;
        }
        let first = Delivery { at, bit_flips };
        let copies = if duplicated {
            self.stats.duplicated += 1;
            vec![first.clone(), first]
        } else {
            vec![first]
        };
        Transmission { copies, lost: None }
    }

    /// The configured rate, when it limits anything (a capacity takes precedence).
    fn rate(&self) -> Option<f64> {
        rate_of(&self.config)
    }

    /// Puts `wire` bytes in the queue at `now`; returns when they finish serializing, in
    /// microseconds, or `None` when tail-dropped.
    fn enqueue(&mut self, now: Instant, wire: usize) -> Option<f64> {
        while self.upcoming.front().is_some_and(|(at, _)| *at <= now) {
            self.upcoming.pop_front();
        }
        if self.config.capacity.is_some() {
            return self.enqueue_on_capacity(now, wire);
        }
        let now_us = now.as_micros() as f64;
        let start_us = self.busy_until_us.max(now_us);
        if self.rate().is_some() {
            let backlog = self.backlog_bytes(now);
            if backlog > QUEUE_SLACK_BYTES
                && backlog + wire as f64 > self.config.queue_bytes as f64 + QUEUE_SLACK_BYTES
            {
                return None;
            }
        }
        // Serialized at the rate of each stretch it spends on the wire (unlimited: at once,
        // but still behind anything queued before).
        let (mut left, mut finish_us) = (wire as f64, start_us);
        self.walk_rate(start_us, |from, to, rate| match rate {
            None => {
                finish_us = from;
                true
            }
            Some(rate) => {
                let carried = (to - from) * rate / 1e6;
                if left <= carried {
                    finish_us = from + left * 1e6 / rate;
                    true
                } else {
                    left -= carried;
                    false
                }
            }
        });
        self.busy_until_us = finish_us;
        Some(finish_us)
    }

    /// [`Link::enqueue`] with a capacity: the datagram's wire bytes take what is left of the
    /// opportunity the queue ends in (if that is not in the past), then whole opportunities;
    /// it finishes at the one carrying its last byte.
    fn enqueue_on_capacity(&mut self, now: Instant, wire: usize) -> Option<f64> {
        let trace = self.config.capacity.as_ref()?.trace();
        let backlog = self.backlog_bytes(now);
        if backlog > QUEUE_SLACK_BYTES
            && backlog + wire as f64 > self.config.queue_bytes as f64 + QUEUE_SLACK_BYTES
        {
            return None;
        }
        let per_op = OPPORTUNITY_BYTES as u64;
        let wire = wire as u64;
        let ongoing = self.cursor.filter(|c| trace.time_of(c.op) >= now);
        let cursor = match ongoing {
            Some(c) if wire <= per_op - u64::from(c.used) => Cursor {
                used: c.used + wire as u32,
                ..c
            },
            Some(c) => {
                // The rest of the current opportunity, then whole ones.
                let rest = wire - (per_op - u64::from(c.used));
                let n = rest.div_ceil(per_op);
                Cursor {
                    op: c.op.saturating_add(n),
                    used: (rest - (n - 1) * per_op) as u32,
                    first: c.first,
                }
            }
            None => {
                // The queue is empty (or held by a previous model): start afresh at the first
                // opportunity once it is free.
                let start = instant_at(self.busy_until_us.max(now.as_micros() as f64).ceil());
                let first = trace.first_at_or_after(start);
                let n = wire.div_ceil(per_op).max(1);
                Cursor {
                    op: first.saturating_add(n - 1),
                    used: (wire - (n - 1) * per_op) as u32,
                    first,
                }
            }
        };
        self.cursor = Some(cursor);
        self.busy_until_us = trace.time_of(cursor.op).as_micros() as f64;
        Some(self.busy_until_us)
    }

    /// Sends the datagram's packets across the medium: burst, random loss and bit errors.
    /// Returns the first cause of loss, or collects the payload bits to flip into `flips`.
    fn cross_medium(&mut self, len: usize, flips: &mut Vec<usize>) -> Option<LossCause> {
        let config = &self.config;
        let rng = &mut self.rng;
        let bit_errors = BitErrors::new(config.bit_error_rate);
        if config.burst.is_none() && !can_happen(config.loss) && bit_errors.is_none() {
            // Nothing acts per packet: skip walking the fragments.
            return None;
        }
        let capacity = fragment_capacity(config.mtu);
        let mut lost = None;
        for (fragment, size) in packet_sizes(len, config.mtu).enumerate() {
            if let Some(ge) = &config.burst {
                // The channel moves on for every packet that crosses it, lost datagram or not.
                let flip = if self.burst_bad {
                    ge.p_bad_to_good
                } else {
                    ge.p_good_to_bad
                };
                if chance(rng, flip) {
                    self.burst_bad = !self.burst_bad;
                }
                let loss = if self.burst_bad {
                    ge.loss_bad
                } else {
                    ge.loss_good
                };
                if lost.is_none() && chance(rng, loss) {
                    lost = Some(LossCause::Burst);
                }
            }
            if lost.is_some() {
                continue;
            }
            if chance(rng, config.loss) {
                lost = Some(LossCause::Random);
                continue;
            }
            let Some(errors) = bit_errors else {
                continue;
            };
            let bits = size * 8;
            if config.checksums {
                if errors.any(rng, bits) {
                    lost = Some(LossCause::Corrupted);
                }
            } else {
                errors.each(rng, bits, |bit| {
                    flips.extend(payload_bit(fragment, bit, capacity));
                });
            }
        }
        lost
    }

    fn lose(&mut self, cause: LossCause) -> Transmission {
        let counter = match cause {
            LossCause::Partition => &mut self.stats.lost_partition,
            LossCause::Random => &mut self.stats.lost_random,
            LossCause::Burst => &mut self.stats.lost_burst,
            LossCause::Corrupted => &mut self.stats.lost_corrupted,
            LossCause::QueueFull => &mut self.stats.lost_queue,
        };
        *counter += 1;
        Transmission {
            copies: Vec::new(),
            lost: Some(cause),
        }
    }
}

/// Where a capacity's serializer stands: the last opportunity holding accepted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    /// Global number of the opportunity the last accepted datagram finishes in.
    op: u64,
    /// Wire bytes of it taken (`1..=1500`).
    used: u32,
    /// The first opportunity of the current busy period: every one from it to `op` is full.
    first: u64,
}

/// The rate of `config`, when it limits anything.
fn rate_of(config: &LinkConfig) -> Option<f64> {
    config
        .rate_bytes_per_s
        .filter(|r| r.is_finite() && *r > 0.0)
}

/// Whether an event of probability `p` can happen at all: `p` above 0 (so not NaN).
fn can_happen(p: f64) -> bool {
    p > 0.0
}

/// `true` with probability `p`; draws nothing unless it [`can_happen`].
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    can_happen(p) && rng.random::<f64>() < p
}

/// Milliseconds as microseconds; negative and NaN count as 0.
fn millis_to_micros(ms: f64) -> f64 {
    if ms > 0.0 {
        ms * 1000.0
    } else {
        0.0
    }
}

/// The instant nearest to `micros` (saturating at the ends).
fn instant_at(micros: f64) -> Instant {
    // `as` saturates (and maps NaN to 0), which is what we want.
    Instant::from_micros(micros.round() as u64)
}
