//! Rate control: how many bytes per second the sender may put on the link.
//!
//! A camera on a cellular uplink gets a capacity that changes every second. Without control
//! the sender keeps sending what the camera makes, the bottleneck queue grows, every frame
//! behind it misses its deadline, and repairs of late frames add to the queue: a congestion
//! collapse. [`RateController`] estimates what the link delivers and keeps the queue short;
//! the [`Sender`](super::Sender) paces every datagram (data, parity, repairs) at its rate and
//! the camera shapes its frames to fit ([`RateController::target`]).
//!
//! # Why this design
//!
//! The feedback this protocol has is one ACK per frame (and NACKs naming damaged segments),
//! taken at the sender: no receiver timestamps, no per-packet ACKs. Of the published
//! controllers:
//!
//! - loss-based ones (TCP Reno/CUBIC) read radio loss as congestion and starve a camera on a
//!   lossy link, which is exactly the link this system is for;
//! - GCC (WebRTC) needs per-packet receive timestamps to get a one-way delay gradient;
//! - Sprout needs the receiver's forecasts; Copa needs per-packet ACKs to run its window;
//! - BBR builds its model from two sender-side measurements that frame ACKs do give: the
//!   *delivery rate* (bytes acknowledged per unit of time) and the *minimum round trip*.
//!
//! So this is BBR's model (delivery rate, windowed minimum RTT, pacing at the estimate,
//! in-flight bytes capped near the bandwidth-delay product) with a delay-based control law
//! in place of BBR's gain cycling, because a camera is not a bulk flow: it cannot fill a
//! probe phase on demand, and every millisecond of queue is latency on screen. The law, per
//! ACK that carries a clean round-trip sample (a frame that needed no repair, Karn's rule):
//!
//! - with [`RateConfig::uplink_alone`] a frame's own transmission time is not a queue: on a
//!   slow link a frame of a few KB takes longer to cross than the whole round trip of a fast
//!   one (a 4.5 KB frame needs three or four delivery opportunities, 80-150 ms at 85 KB/s on
//!   the Verizon trace), and read as queue it holds the target at about 40% of the capacity.
//!   A frame only queues behind the camera's own traffic if the frame before it had not
//!   crossed yet when it was pushed, which shows as the previous ACK coming later than its
//!   push plus the minimum round trip; so a sample reads at most that much above the minimum
//!   ([`RttSample::pushed_at`]). On the Verizon trace's slow seconds that carries 76% of the
//!   capacity instead of 38%. It is an option, off by default, because one ACK per frame
//!   cannot tell the frame's own transmission from another flow's queue ahead of it: the
//!   rule takes up to a frame interval of that queue for its own. Two cameras on one
//!   150 KB/s link then see frame latency p95 of about 500 ms (320-335 without), and beside a
//!   TCP bulk flow the split turned bimodal (TCP 17-58%, the camera 20-52% over eight
//!   emulated runs, where without the rule both kept 31-41%). The receive time of a frame's
//!   first datagram (the one-way delay of its head, as LEDBAT reads it) was tried in its
//!   place and is not enough: the frame's transmission past its pacing is itself the sign
//!   that the target outran the bottleneck, and without it the camera fills a slow link
//!   with no room for repairs (the README's rate control section has the figures);
//! - the *queueing delay* is the smallest of the last three readings minus the minimum round
//!   trip of the last 10 s: one or two held samples are not a queue. A frame alone on a
//!   cellular link waits out the link's gaps without a delivery opportunity (50-100 ms on
//!   the recorded traces), and one sharing a bottleneck waits behind the other flow's frame
//!   when their captures fall close; a queue the sender built holds every sample. With the
//!   smaller of two, two cameras on one 150 KB/s link reached Jain 0.945-1.000 and 82-90% of
//!   the link over seeds 1-10 (three below 85%); with three, 0.956-1.000 and 83-92% (one),
//!   at 60-70 ms more frame latency p95 (314-350 ms);
//! - above [`RateConfig::queue_target`] the link is overused: the target falls to 0.85 x
//!   the delivery rate (the rate the bottleneck is actually draining at, so the queue
//!   drains), at most once per round trip;
//! - below half of it the target grows by 15% per 100 ms since the law last moved it (a
//!   camera at 10 fps: 15% per sample), counted over at most 300 ms: growth is a matter of
//!   time, not of how many frames happen to be acknowledged, so a sender with sparse samples
//!   (a low frame rate, or a durable camera draining its ring at the floor rate with its live
//!   stream idle) climbs about as fast as one at 10 fps instead of staying near the floor.
//!   (Resetting the clock on ACKs without a sample as well, so that a lossy link grows per
//!   sample, left two explorer seeds' durable cameras at the floor, where the receiver's
//!   early NACKs for their slowly paced tails took every sample; the sender no longer lets
//!   such a NACK void a sample, see `OutFrame::rate_rtt`);
//! - growth needs something delivered: a round trip from a NACK (rough, see
//!   [`RateController::on_rtt`]) grows the target only once two ACKs give a delivery rate,
//!   and a queue seen before that halves the target (nothing says where the bottleneck is);
//! - in between it holds;
//! - a reading above the target that holds still for a second across three cuts is no queue
//!   (the cuts would have drained one the sender built): the path's round trip grew, and the
//!   minimum round trip is taken anew from the samples (BBR's 10 s minimum filter would hold
//!   the camera at its floor for those 10 s);
//! - and after every ACK it is at most 1.5 x the delivery rate (GCC's bound: a source that
//!   is not using its rate does not earn a larger one, and a capacity drop that finds the
//!   sender at 1.5 x its load strands less in the queue than one that finds it at its
//!   initial rate).
//!
//! Random radio loss changes none of this: a lost segment is repaired and its frame gives no
//! sample, and the delivery rate counts every byte that arrived, over the time the path had
//! the frames that arrived to carry (a frame lost whole does not count its time, see
//! [`RateController::on_ack`]). Queue build-up raises the round trip of every frame,
//! repaired or not, and that is what the law reads.
//!
//! Whatever arrives, the target stays within [`RateConfig::min_rate`] and
//! [`RateConfig::max_rate`]: a forged or replayed ACK (the sealed sessions reject those
//! anyway), a clock that jumps, or a sample of zero cannot push it outside.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::time::Instant;

/// How a [`RateController`] behaves. Rates are bytes per second on the wire (UDP and IP
/// headers included).
#[derive(Debug, Clone, PartialEq)]
pub struct RateConfig {
    /// The rate before anything is measured.
    pub initial_rate: f64,
    /// The target never falls below this.
    pub min_rate: f64,
    /// The target never rises above this.
    pub max_rate: f64,
    /// Queueing delay above the minimum round trip that counts as overuse.
    pub queue_target: Duration,
    /// The camera has its uplink to itself (a modem of its own): a frame's own transmission
    /// time is then not read as queue (see the [module docs](self)). Off by default: beside
    /// another flow it takes up to a frame interval of that flow's queue for its own.
    pub uplink_alone: bool,
    /// The target grows while the queue is empty however little is delivered: GCC's bound
    /// (at most 1.5 x the delivery rate) is off. For the uplinks of a bond
    /// ([`super::bond`]), whose share of the load follows their target: bound by what it
    /// carries, an uplink that carries little could never earn a larger share. A queue still
    /// cuts the target to 0.85 x what the uplink delivers.
    pub grow_unused: bool,
}

impl Default for RateConfig {
    /// Starts at 500 KB/s (4 Mbit/s: above what a camera offers, below what a cellular
    /// uplink's queue absorbs in the first round trip), within 8 KB/s and 12.5 MB/s, overuse
    /// above 40 ms of queue.
    fn default() -> Self {
        RateConfig {
            initial_rate: 500_000.0,
            min_rate: 8_000.0,
            max_rate: 12_500_000.0,
            queue_target: Duration::from_millis(40),
            uplink_alone: false,
            grow_unused: false,
        }
    }
}

impl RateConfig {
    /// The bounds made sane: finite, positive, `min <= max`, the initial rate between them.
    fn sanitized(mut self) -> Self {
        let finite_pos = |x: f64, or: f64| if x.is_finite() && x > 0.0 { x } else { or };
        self.min_rate = finite_pos(self.min_rate, 1_000.0);
        self.max_rate = finite_pos(self.max_rate, self.min_rate).max(self.min_rate);
        self.initial_rate =
            finite_pos(self.initial_rate, self.max_rate).clamp(self.min_rate, self.max_rate);
        self
    }
}

/// Round-trip samples kept for the windowed minimum.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// ACKs kept for the delivery rate: the last few, over at least this long.
const DELIVERY_WINDOW: Duration = Duration::from_millis(300);
/// At most this many ACKs in the delivery-rate window.
const DELIVERY_ACKS: usize = 8;
/// Multiplicative decrease, of the delivery rate, on overuse.
const DECREASE: f64 = 0.85;
/// Multiplicative decrease on overuse before any delivery rate is known: a queue with no
/// frame through it yet says only that the target is far above the bottleneck (TCP's halving).
const UNMEASURED_DECREASE: f64 = 0.5;
/// Multiplicative decrease when an ACK is overdue.
const OVERDUE_DECREASE: f64 = 0.7;
/// A silence cuts the target to no less than this share of what it was when the silence
/// began: lost feedback looks the same, and a queue shows itself in the late ACKs that follow
/// ([`RateController::on_late_ack`]).
const OVERDUE_FLOOR: f64 = 0.5;
/// Multiplicative increase per [`INCREASE_PERIOD`] while the queue is empty.
const INCREASE: f64 = 1.15;
/// The time one [`INCREASE`] step takes.
const INCREASE_PERIOD: Duration = Duration::from_millis(100);
/// The longest time one sample's increase covers: after a long hold, one sample does not
/// earn many steps at once (the target stays within 2 x what is delivered anyway).
const INCREASE_SPAN_MAX: Duration = Duration::from_millis(300);
/// The target may not run further ahead of the delivery rate than this.
const AHEAD_OF_DELIVERY: f64 = 1.5;
/// A round-trip sample longer than this is a clock step or a stall, not a measurement.
const MAX_SAMPLE: Duration = Duration::from_secs(10);
/// A queue reading that holds still (within a quarter of the queue target) this long, across
/// [`BASE_SHIFT_CUTS`] cuts of the target, is no queue the cuts can drain: the path's own
/// round trip grew (a route change, a hand-over to a farther cell).
const BASE_SHIFT_AFTER: Duration = Duration::from_secs(1);
/// Cuts a still queue reading must outlast to be taken for a longer path.
const BASE_SHIFT_CUTS: u64 = 3;

/// The minimum of the samples of the last [`MIN_RTT_WINDOW`] (a monotone deque: each entry
/// smaller than the ones after it).
#[derive(Debug, Clone, Default)]
struct WindowedMin(VecDeque<(Instant, Duration)>);

impl WindowedMin {
    fn push(&mut self, now: Instant, sample: Duration) {
        while self.0.back().is_some_and(|&(_, d)| d >= sample) {
            self.0.pop_back();
        }
        self.0.push_back((now, sample));
        while self
            .0
            .front()
            .is_some_and(|&(t, _)| now - t > MIN_RTT_WINDOW)
        {
            self.0.pop_front();
        }
    }

    fn min(&self) -> Option<Duration> {
        self.0.front().map(|&(_, d)| d)
    }
}

/// A sure round trip: a frame sent once and acknowledged ([`RateController::on_ack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSample {
    /// From the frame's last data segment to its ACK.
    pub rtt: Duration,
    /// When the frame was handed to the sender, when known: then the queue it found is
    /// read from when the ACK before it came (see the [module docs](self)), and its own
    /// transmission time is not taken for a queue.
    pub pushed_at: Option<Instant>,
}

impl RttSample {
    /// A round trip with no push time: the whole sample above the minimum reads as queue.
    pub fn rtt(rtt: Duration) -> Self {
        RttSample {
            rtt,
            pushed_at: None,
        }
    }
}

/// The smallest of the last three values of a series of round trips.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LastThree([Option<Duration>; 2]);

impl LastThree {
    /// Takes `x` in and returns the smallest of it and the two before it.
    pub(crate) fn push(&mut self, x: Duration) -> Duration {
        let smallest = self.0.into_iter().flatten().fold(x, Duration::min);
        self.0 = [self.0[1], Some(x)];
        smallest
    }

    /// The latest value.
    fn last(&self) -> Option<Duration> {
        self.0[1]
    }
}

/// An acknowledged frame, for the delivery rate.
#[derive(Debug, Clone, Copy)]
struct Ack {
    at: Instant,
    wire_bytes: u64,
    /// The time it counts for in the delivery rate: since the ACK before it, or, when frames
    /// sent before it were lost, since its first datagram left if that was later (see
    /// [`RateController::on_ack`]).
    took: Duration,
}

/// Counters, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RateStats {
    /// Times the target was cut for a queue.
    pub decreases: u64,
    /// Times it was raised.
    pub increases: u64,
    /// Round-trip samples ignored (time going backwards, or implausibly long).
    pub samples_ignored: u64,
    /// Times the minimum round trip was taken anew because the path's own round trip grew.
    pub base_shifts: u64,
}

/// The rate controller. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct RateController {
    cfg: RateConfig,
    target: f64,
    /// `(when, sample)` of recent clean round trips, for the windowed minimum (monotone
    /// deque: each entry smaller than the ones after it).
    min_rtt: WindowedMin,
    /// The same over samples that may read short (see [`RateController::on_rtt`]): the
    /// minimum only when there is no clean one.
    min_rough: WindowedMin,
    /// The last samples, whole.
    samples: LastThree,
    /// The last readings: samples less what the frame's own transmission took (see
    /// [`RttSample::pushed_at`]).
    readings: LastThree,
    /// Recent ACKs.
    acks: VecDeque<Ack>,
    /// When the target was last cut, and the round trip then: no second cut within it.
    hold_until: Instant,
    /// The target before a silence cut it ([`RateController::on_overdue`]): restored if the
    /// first sure round trip after it shows no queue (the silence was lost feedback, not a
    /// queue: Eifel's response to a spurious timeout, RFC 4015).
    undo: Option<f64>,
    /// The latest `now` seen: time never goes backwards here.
    clock: Instant,
    /// Since when the queue reading has held still above the target: `(since, reading then,
    /// cuts by then)`; see [`BASE_SHIFT_AFTER`].
    still: Option<(Instant, Duration, u64)>,
    /// When the minimum round trip was last taken anew: at most once per [`MIN_RTT_WINDOW`].
    last_shift: Option<Instant>,
    /// When the control law last moved the target (grew it, cut it, or held it):
    /// the next increase covers the time since.
    last_moved: Option<Instant>,
    stats: RateStats,
}

impl RateController {
    pub fn new(cfg: RateConfig) -> Self {
        let cfg = cfg.sanitized();
        RateController {
            target: cfg.initial_rate,
            cfg,
            min_rtt: WindowedMin::default(),
            min_rough: WindowedMin::default(),
            samples: LastThree::default(),
            readings: LastThree::default(),
            acks: VecDeque::new(),
            hold_until: Instant::ZERO,
            undo: None,
            clock: Instant::ZERO,
            still: None,
            last_shift: None,
            last_moved: None,
            stats: RateStats::default(),
        }
    }

    pub fn config(&self) -> &RateConfig {
        &self.cfg
    }

    /// The rate the sender should use now, bytes per second on the wire.
    pub fn target(&self) -> f64 {
        self.target
    }

    pub fn stats(&self) -> &RateStats {
        &self.stats
    }

    /// The minimum round trip of the last 10 s, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.min().or(self.min_rough.min())
    }

    /// The queueing delay the last sample shows (less the minimum round trip).
    pub fn queue_delay(&self) -> Option<Duration> {
        Some(self.readings.last()?.saturating_sub(self.min_rtt()?))
    }

    /// Bytes per second the ACKs of the last few frames show arriving, once two are in: their
    /// bytes over the time they took, which is the span of their ACKs less the time before
    /// each one's first datagram left where frames sent before it were lost.
    pub fn delivery_rate(&self) -> Option<f64> {
        if self.acks.len() < 2 {
            return None;
        }
        let (bytes, took) = self.acks.iter().skip(1).fold((0.0, 0.0), |(b, t), a| {
            (b + a.wire_bytes as f64, t + a.took.as_secs_f64())
        });
        (took >= 1e-3).then(|| bytes / took)
    }

    /// How many bytes may be in flight (sent, not acknowledged) before a new frame starts:
    /// the target over the minimum round trip plus the queue target. The sender lets one
    /// frame beyond this go, so a frame larger than the window still leaves.
    pub fn window(&self) -> f64 {
        let rtt = self.min_rtt().unwrap_or(Duration::from_millis(100));
        self.target * (rtt + self.cfg.queue_target).as_secs_f64()
    }

    /// A frame of `wire_bytes` (every datagram it took, headers included) was acknowledged at
    /// `now`; `rtt` is its round trip when it is a clean sample (sent once, not repaired).
    /// `after_loss` is when its first datagram left, given when frames sent before it were
    /// lost (given up since the ACK before, or still unacknowledged with datagrams out: lost
    /// whole or in repair): then it counts in the delivery rate for the time since then or
    /// since the ACK before it, whichever is shorter. The ACKs' spacing alone counts the lost
    /// frames' time as delivery time, and on a link that loses frames whole in bursts the
    /// delivery rate then reads far below what the path carries; GCC's bound on it (below)
    /// ratcheted the target down to its floor with no queue in sight (NACK-only lossy soak
    /// case 57: 28% loss in bursts on a 500 KB/s link, 74.8% of the frames delivered). Where
    /// the frames queue one behind the other the ACK before comes after the first datagram
    /// left, and nothing changes: a queue's drops are read as before.
    pub fn on_ack(
        &mut self,
        now: Instant,
        wire_bytes: u64,
        rtt: Option<RttSample>,
        after_loss: Option<Instant>,
    ) {
        if now < self.clock {
            self.stats.samples_ignored += u64::from(rtt.is_some());
            return;
        }
        self.clock = now;
        let previous_ack = self.acks.back().map(|a| a.at);
        let from = match (previous_ack, after_loss.filter(|&t| t <= now)) {
            (Some(p), Some(t)) => p.max(t),
            (Some(p), None) => p,
            (None, _) => now,
        };
        self.acks.push_back(Ack {
            at: now,
            wire_bytes,
            took: now - from,
        });
        while self.acks.len() > DELIVERY_ACKS
            || (self.acks.len() > 2
                && self
                    .acks
                    .front()
                    .is_some_and(|a| now - a.at > DELIVERY_WINDOW))
        {
            self.acks.pop_front();
        }
        if let Some(sample) = rtt {
            let found = sample
                .pushed_at
                .zip(previous_ack)
                .filter(|_| self.cfg.uplink_alone);
            self.on_round_trip(now, sample.rtt, true, found);
        }
    }

    /// A round-trip sample taken at `now`. A `clean` one is a frame sent once and
    /// acknowledged; the others (from the end of a frame's first crossing to the first NACK
    /// for it, which the receiver sends once it sees the frame's last segment) may read
    /// short when an earlier segment made the receiver ask, so they set the minimum round
    /// trip only while there is no clean sample; either shows a queue, so a link where every
    /// frame needs repair still has its delay watched.
    pub fn on_rtt(&mut self, now: Instant, sample: Duration, clean: bool) {
        self.on_round_trip(now, sample, clean, None);
    }

    /// [`RateController::on_rtt`], with `(pushed_at, previous_ack)` when the frame's push
    /// time is known: the sample then reads no more queue than the frame found, the time by
    /// which the ACK before it came later than its push plus the minimum round trip.
    fn on_round_trip(
        &mut self,
        now: Instant,
        sample: Duration,
        clean: bool,
        found: Option<(Instant, Instant)>,
    ) {
        if now < self.clock {
            self.stats.samples_ignored += 1;
            return;
        }
        self.clock = now;
        if sample > MAX_SAMPLE {
            self.stats.samples_ignored += 1;
            return;
        }
        if clean {
            self.min_rtt.push(now, sample);
        } else {
            self.min_rough.push(now, sample);
        }
        let Some(min_rtt) = self.min_rtt() else {
            self.samples.push(sample);
            self.readings.push(sample);
            return;
        };
        // The frame's own transmission is no queue; it is one once it holds up the next
        // frame, which shows as an ACK that came later than the next frame's push plus the
        // minimum round trip.
        let reading = match found {
            Some((pushed_at, previous_ack)) => {
                let waited = (previous_ack - min_rtt).saturating_duration_since(pushed_at);
                sample.min(min_rtt + waited)
            }
            None => sample,
        };
        let smallest_sample = self.samples.push(sample);
        let mut queue = self.readings.push(reading).saturating_sub(min_rtt);
        // Whether the path grew is judged on the whole samples: a queue another flow keeps
        // full (a TCP bulk transfer) holds them still, where the readings (less up to a frame
        // interval) come and go.
        if clean && self.base_shifted(now, smallest_sample.saturating_sub(min_rtt)) {
            // The path is longer now: its round trip is what the samples show.
            self.min_rtt = WindowedMin::default();
            self.min_rtt.push(now, smallest_sample);
            self.min_rough = WindowedMin::default();
            self.stats.base_shifts += 1;
            queue = Duration::ZERO;
        }
        if clean {
            if let Some(before) = self.undo.take() {
                if reading.saturating_sub(min_rtt) < self.cfg.queue_target / 2 {
                    self.set_target(self.target.max(before));
                }
            }
        }
        if queue > self.cfg.queue_target {
            self.overuse(now, sample);
        } else {
            if queue < self.cfg.queue_target / 2 && now >= self.hold_until && self.earned(clean) {
                self.stats.increases += 1;
                let span = self
                    .last_moved
                    .map_or(INCREASE_PERIOD, |t| (now - t).min(INCREASE_SPAN_MAX));
                let steps = span.as_secs_f64() / INCREASE_PERIOD.as_secs_f64();
                self.set_target(self.target * INCREASE.powf(steps));
            }
            // Grown or held: either way the next increase counts from here.
            self.last_moved = Some(now);
        }
        // Never further ahead of what is delivered than GCC allows (twice, with next to no
        // queue, so a source recovering from a dip doubles per delivery window), whatever
        // the sample.
        if let Some(delivered) = self.delivery_rate().filter(|_| !self.cfg.grow_unused) {
            let ahead = if queue < self.cfg.queue_target / 4 {
                2.0
            } else {
                AHEAD_OF_DELIVERY
            };
            self.set_target(self.target.min(delivered * ahead));
        }
    }

    /// Whether the clean reading `queue` at `now` shows the path's round trip grew, not a
    /// queue: a queue the sender's own traffic built drains once the target is below what
    /// the bottleneck delivers (at 0.85 x, a queue of `q` seconds is gone in about `q / 0.15`),
    /// so a reading above the target that holds still for [`BASE_SHIFT_AFTER`] across
    /// [`BASE_SHIFT_CUTS`] cuts is not one. BBR meets the same case with a 10 s minimum
    /// filter and a probe that drains the queue; a camera cannot spend 10 s at the floor.
    /// A flow beside it that keeps the queue full (a TCP bulk transfer) holds the reading
    /// still too, and taking its queue for the path hands it the link; so the minimum is
    /// taken anew at most once per [`MIN_RTT_WINDOW`], no more often than the 10 s filter
    /// would forget the old one anyway.
    fn base_shifted(&mut self, now: Instant, queue: Duration) -> bool {
        if queue <= self.cfg.queue_target {
            self.still = None;
            return false;
        }
        match self.still {
            Some((since, reading, cuts))
                if queue.abs_diff(reading) <= self.cfg.queue_target / 4 =>
            {
                if now - since >= BASE_SHIFT_AFTER
                    && self.stats.decreases >= cuts + BASE_SHIFT_CUTS
                    && self.last_shift.is_none_or(|t| now - t > MIN_RTT_WINDOW)
                {
                    self.still = None;
                    self.last_shift = Some(now);
                    return true;
                }
            }
            _ => self.still = Some((now, queue, self.stats.decreases)),
        }
        false
    }

    /// A frame acknowledged at `now` gave no sure round trip (it was repaired), but its last
    /// datagram left `since_last_tx` ago: whatever brought the ACK took at least that long,
    /// so if that is a queue's worth above the minimum round trip, it is overuse.
    pub fn on_late_ack(&mut self, now: Instant, since_last_tx: Duration) {
        let Some(min_rtt) = self.min_rtt() else {
            return;
        };
        if now >= self.clock
            && since_last_tx <= MAX_SAMPLE
            && since_last_tx.saturating_sub(min_rtt) > self.cfg.queue_target
        {
            self.clock = now;
            self.overuse(now, since_last_tx);
        }
    }

    /// The queue is above its target: the target falls below what the bottleneck drains,
    /// at most once per round trip (`rtt`).
    fn overuse(&mut self, now: Instant, rtt: Duration) {
        if now >= self.hold_until {
            let drained = self
                .delivery_rate()
                .map_or(self.target * UNMEASURED_DECREASE, |d| d * DECREASE);
            self.set_target(self.target.min(drained));
            self.hold_until = now + rtt;
            self.last_moved = Some(now);
            self.stats.decreases += 1;
        }
    }

    /// Whether a round trip without a queue may grow the target: a `clean` one (a frame sent
    /// once and acknowledged: the path carried it), a rough one once the path has shown what
    /// it delivers (two ACKs), any with [`RateConfig::grow_unused`]. Rough round trips alone
    /// earn nothing (GCC's bound, with nothing delivered yet): on a link where every frame
    /// needs repair the minimum comes from a NACK of the very first frame, already behind
    /// the queue the initial rate built, so later readings show no queue above it while the
    /// target climbs (soak case 32, bit error rate 2.4e-4: 500 KB/s to 2.3 MB/s on a
    /// 124 KB/s link in 1.5 s, 26 of the first 27 frames lost).
    fn earned(&self, clean: bool) -> bool {
        clean || self.cfg.grow_unused || self.delivery_rate().is_some()
    }

    /// A frame whose last datagram left at `last_tx` is still not acknowledged at `now`, and
    /// the receiver has not asked for a repair since: its ACK is overdue once the minimum
    /// round trip plus twice the queue target have passed. A queue (or an outage) holds an ACK
    /// back that long, and so does a burst that takes the feedback with it. The target is cut
    /// by 30%, at most once per minimum round trip plus queue target and to no less than half
    /// of what it was when the silence began, without waiting for the late ACK to say by how
    /// much; or to `bound` when that is less: the most the path can have delivered for the
    /// silence to last this long, when the sender can tell (see `Sender::silence_bound`).
    /// A cut that the first sure round trip after it shows was no queue is undone.
    pub fn on_overdue(&mut self, now: Instant, last_tx: Instant, bound: Option<f64>) {
        let rtt = self.min_rtt().unwrap_or(Duration::from_millis(100));
        if now < self.clock || now < last_tx + rtt + self.cfg.queue_target * 2 {
            return;
        }
        self.clock = now;
        let before = *self.undo.get_or_insert(self.target);
        // Half of what it was, or what the path was measured to deliver when that is less:
        // a target that started far above a slow uplink reaches it.
        let floor = (before * OVERDUE_FLOOR).min(self.delivery_rate().unwrap_or(f64::INFINITY));
        if now >= self.hold_until {
            // Held for the same time whether or not it cut, so `overdue_at` moves on.
            self.hold_until = now + rtt + self.cfg.queue_target;
            let cut = (self.target * OVERDUE_DECREASE).max(floor);
            // Within the bounds before the comparison: a cut the floor undoes is no cut (the
            // base-shift rule counts cuts).
            let cut = bound.map_or(cut, |b| cut.min(b)).max(self.cfg.min_rate);
            if cut < self.target {
                self.set_target(cut);
                self.last_moved = Some(now);
                self.stats.decreases += 1;
            }
        }
    }

    /// When [`RateController::on_overdue`] would act for a frame whose last datagram left at
    /// `last_tx`.
    pub fn overdue_at(&self, last_tx: Instant) -> Instant {
        let rtt = self.min_rtt().unwrap_or(Duration::from_millis(100));
        (last_tx + rtt + self.cfg.queue_target * 2).max(self.hold_until)
    }

    /// Holds the target at or below `ceiling` (within the configured bounds): what the links
    /// under the sender are measured to carry, when something else measures them (the
    /// uplinks of a bond, `proto::bond`).
    pub fn cap(&mut self, ceiling: f64) {
        if ceiling < self.target {
            self.set_target(ceiling);
        }
    }

    fn set_target(&mut self, rate: f64) {
        if rate.is_finite() {
            self.target = rate.clamp(self.cfg.min_rate, self.cfg.max_rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn rtt(n: u64) -> Option<RttSample> {
        Some(RttSample::rtt(Duration::from_millis(n)))
    }

    /// ACKs of 10 KB frames every 100 ms (100 KB/s delivered) with round trip `rtt_ms`.
    fn feed(rc: &mut RateController, from_ms: u64, n: u64, rtt_ms: u64) {
        for i in 0..n {
            rc.on_ack(ms(from_ms + i * 100), 10_000, rtt(rtt_ms), None);
        }
    }

    /// ACKs of 5 KB frames pushed every 100 ms, each taking `rtt_ms` from its last segment
    /// to its ACK, with their push times.
    fn feed_pushed(rc: &mut RateController, from_ms: u64, n: u64, rtt_ms: u64) {
        for i in 0..n {
            let pushed = from_ms + i * 100;
            let sample = RttSample {
                rtt: Duration::from_millis(rtt_ms),
                pushed_at: Some(ms(pushed)),
            };
            rc.on_ack(ms(pushed + rtt_ms), 5_000, Some(sample), None);
        }
    }

    #[test]
    fn silence_cuts_reach_what_the_path_delivers_below_half_the_start() {
        // The 500 KB/s start over a path that delivers 20 KB/s (a 2 KB frame every 100 ms,
        // each ACK a round trip the queue already filled: no sample reads as a queue).
        let mut rc = RateController::new(RateConfig::default());
        for i in 0..5 {
            rc.on_ack(ms(i * 100), 2_000, None, None);
        }
        let delivered = rc.delivery_rate().expect("a delivery rate");
        assert!((delivered - 20_000.0).abs() < 1.0, "{delivered}");
        // Then silences, one after another: the cuts go past half the start (250 KB/s),
        // down to what the path delivers, and no further.
        for i in 0..40 {
            rc.on_overdue(ms(1_000 + i * 200), ms(500 + i * 200), None);
        }
        assert_eq!(rc.target(), delivered);
    }

    #[test]
    fn nothing_delivered_earns_no_growth_and_a_queue_then_halves_the_target() {
        // A link where every frame needs repair: no ACK yet, only rough round trips from
        // NACKs. The first is already behind the queue the start built, so the next ones
        // read no queue above it; they must not raise the target, nothing was delivered.
        let mut rc = RateController::new(RateConfig::default());
        let start = rc.target();
        for (i, rtt) in [213, 217, 229, 235].into_iter().enumerate() {
            rc.on_rtt(ms(420 + i as u64 * 200), Duration::from_millis(rtt), false);
        }
        assert_eq!(rc.target(), start);
        assert_eq!(rc.stats().increases, 0);
        // Three readings 400 ms above the minimum: a queue, and no delivery rate to cut to.
        // The target halves, once per round trip.
        for i in 0..3 {
            rc.on_rtt(ms(1_300 + i * 200), Duration::from_millis(640), false);
        }
        assert_eq!(rc.target(), start * UNMEASURED_DECREASE);
        assert_eq!(rc.stats().decreases, 1);
        // Once two ACKs show what the path delivers, a round trip without a queue grows it.
        rc.on_ack(ms(3_000), 10_000, None, None);
        rc.on_ack(ms(3_100), 10_000, None, None);
        for i in 0..3 {
            rc.on_rtt(ms(3_200 + i * 100), Duration::from_millis(213), false);
        }
        assert!(rc.stats().increases > 0);
        // A bond's uplink grows unused, before any ACK as well.
        let unused = RateConfig {
            grow_unused: true,
            ..RateConfig::default()
        };
        let mut rc = RateController::new(unused);
        rc.on_rtt(ms(100), Duration::from_millis(40), false);
        rc.on_rtt(ms(200), Duration::from_millis(40), false);
        assert!(rc.target() > start, "{}", rc.target());
    }

    #[test]
    fn a_frames_own_transmission_is_not_a_queue_until_it_holds_up_the_next() {
        let alone = RateConfig {
            uplink_alone: true,
            ..RateConfig::default()
        };
        let mut rc = RateController::new(alone);
        feed_pushed(&mut rc, 0, 10, 40);
        let before = (rc.stats().decreases, rc.target());
        // The link slows: every frame now takes 90 ms longer to cross (its own bytes at the
        // lower capacity), but each is through before the next is pushed. No queue: no cut.
        feed_pushed(&mut rc, 1_000, 10, 130);
        assert_eq!(rc.stats().decreases, before.0, "{}", rc.target());
        assert!(rc.queue_delay() < Some(Duration::from_millis(20)));
        // Read whole, as a sender that may share its uplink must, the same samples are a
        // queue.
        let mut shared = RateController::new(RateConfig::default());
        feed_pushed(&mut shared, 0, 10, 40);
        feed_pushed(&mut shared, 1_000, 10, 130);
        assert!(shared.stats().decreases > 0);
        // Slower still: each frame is still crossing when the next is pushed (190 ms from
        // push to ACK, 40 ms of it the path), so the next one waits 50 ms: a queue, cut.
        feed_pushed(&mut rc, 2_000, 10, 190);
        assert!(rc.stats().decreases > before.0, "{}", rc.target());
    }

    #[test]
    fn a_queue_cuts_the_target_to_below_the_delivery_rate() {
        let mut rc = RateController::new(RateConfig::default());
        // Ahead of what is delivered by at most 2 x with no queue.
        feed(&mut rc, 0, 10, 40);
        assert_eq!(rc.min_rtt(), Some(Duration::from_millis(40)));
        assert!(rc.target() <= 200_000.0 + 1.0, "{}", rc.target());
        // The round trip grows by 100 ms: a queue. The target drops below what is delivered.
        feed(&mut rc, 1000, 3, 140);
        assert!(rc.target() <= 100_000.0 * DECREASE + 1.0, "{}", rc.target());
        assert!(rc.stats().decreases >= 1);
    }

    #[test]
    fn frames_lost_whole_do_not_count_as_delivery_time() {
        // 10 KB frames every 100 ms on a path of 40 ms that carries 200 KB/s (a frame's
        // datagrams cross in 50 ms), no queue; every other frame is lost whole, so an ACK
        // comes every 200 ms.
        let lossy = |after_loss: bool| {
            let mut rc = RateController::new(RateConfig::default());
            for i in 0..20u64 {
                let sent = i * 200;
                let first_tx = Some(ms(sent)).filter(|_| after_loss);
                rc.on_ack(ms(sent + 90), 10_000, rtt(40), first_tx);
            }
            rc
        };
        // Read from the ACKs' spacing alone the path delivers 50 KB/s, and the target may
        // be no more than twice that, the camera's 100 KB/s: any loss would take it lower.
        let spacing = lossy(false);
        assert!((spacing.delivery_rate().unwrap() - 50_000.0).abs() < 1.0);
        assert!(spacing.target() <= 100_000.0 + 1.0, "{}", spacing.target());
        // Told the frames before were lost, each ACK counts from its frame's first datagram:
        // 10 KB in 90 ms, 111 KB/s, and the target may reach twice that.
        let told = lossy(true);
        let delivered = told.delivery_rate().unwrap();
        assert!((delivered - 10_000.0 / 0.09).abs() < 1.0, "{delivered}");
        assert!(told.target() > 200_000.0, "{}", told.target());

        // Frames that queue one behind the other: each ACK comes after the next frame's
        // first datagram left, and a loss ahead changes nothing (a queue's drops read as
        // before): the ACKs' spacing, 100 KB/s.
        let mut queued = RateController::new(RateConfig::default());
        for i in 0..8u64 {
            queued.on_ack(ms(1000 + i * 100), 10_000, None, Some(ms(i * 50)));
        }
        let d = queued.delivery_rate().unwrap();
        assert!((d - 100_000.0).abs() < 1.0, "{d}");
    }

    #[test]
    fn a_longer_path_is_taken_for_one_after_a_second_of_a_still_queue() {
        let mut rc = RateController::new(RateConfig::default());
        feed(&mut rc, 0, 20, 40);
        let before = rc.target();
        // The path's round trip grows by 47 ms and stays there (a route change): the first
        // readings are a queue and cut the target; a second on, with the reading still, the
        // controller takes the new round trip as the path's and grows again.
        feed(&mut rc, 2_000, 8, 87);
        assert!(rc.target() < before, "a queue at first");
        assert_eq!(rc.stats().base_shifts, 0);
        feed(&mut rc, 2_800, 5, 87);
        assert_eq!(rc.stats().base_shifts, 1);
        assert_eq!(rc.min_rtt(), Some(Duration::from_millis(87)));
        let low = rc.target();
        feed(&mut rc, 3_300, 10, 87);
        assert!(rc.target() > low, "{} after {low}", rc.target());
        // A queue that moves (it drains as the target falls) is a queue.
        let mut rc = RateController::new(RateConfig::default());
        feed(&mut rc, 0, 20, 40);
        for i in 0..30 {
            feed(&mut rc, 2_000 + i * 100, 1, 300 - i * 8);
        }
        assert_eq!(rc.stats().base_shifts, 0);
    }

    #[test]
    fn growth_is_a_matter_of_time_not_of_how_many_acks() {
        // Two senders at 20 KB/s on an empty path: one acknowledged every 100 ms, one every
        // 300 ms (a durable camera's backfill at a low budget). After 1.2 s both have grown
        // by the same factor (15% per 100 ms), not the second by a third of the first.
        let grown = |every_ms: u64| {
            let mut rc = RateController::new(RateConfig {
                initial_rate: 20_000.0,
                ..RateConfig::default()
            });
            rc.on_ack(ms(0), 100_000, rtt(40), None);
            let start = rc.target();
            let mut t = 0;
            while t < 1_200 {
                t += every_ms;
                // Large ACKs: the delivery rate does not hold the target back here.
                rc.on_ack(ms(t), 100_000, rtt(40), None);
            }
            rc.target() / start
        };
        let (fast, sparse) = (grown(100), grown(300));
        assert!((fast / sparse - 1.0).abs() < 0.01, "{fast} vs {sparse}");
        assert!(fast > 1.15f64.powi(11), "{fast}");
        // One sample after a long gap earns at most 300 ms of growth.
        let mut rc = RateController::new(RateConfig {
            initial_rate: 20_000.0,
            ..RateConfig::default()
        });
        rc.on_ack(ms(0), 100_000, rtt(40), None);
        let before = rc.target();
        rc.on_ack(ms(5_000), 100_000, rtt(40), None);
        assert!(
            rc.target() <= before * 1.15f64.powi(3) + 1.0,
            "{}",
            rc.target()
        );
    }

    #[test]
    fn loss_alone_is_not_congestion() {
        // Frames that needed repair give no round-trip sample but still count as delivered:
        // the target grows to 1.5 x what is delivered and stays there.
        let mut rc = RateController::new(RateConfig {
            initial_rate: 50_000.0,
            ..RateConfig::default()
        });
        for i in 0..50 {
            let sample = if i % 2 == 0 { rtt(40) } else { None };
            rc.on_ack(ms(i * 100), 10_000, sample, None);
        }
        assert_eq!(rc.stats().decreases, 0);
        assert!(rc.target() > 140_000.0, "{}", rc.target());
    }

    #[test]
    fn the_target_stays_within_its_bounds_whatever_arrives() {
        let cfg = RateConfig {
            initial_rate: 100_000.0,
            min_rate: 20_000.0,
            max_rate: 200_000.0,
            ..RateConfig::default()
        };
        let mut rc = RateController::new(cfg);
        // A flood of ACKs at one instant, huge byte counts, zero and huge round trips, time
        // going backwards.
        for i in 0..1000u64 {
            // Losses ahead of frames that left long before, or (a clock that jumps) after.
            let after_loss = [None, Some(ms(0)), Some(ms(9000))][(i % 3) as usize];
            rc.on_ack(ms(5000 + i % 7), u64::MAX / 4, rtt(i % 3), after_loss);
            assert!((20_000.0..=200_000.0).contains(&rc.target()));
        }
        rc.on_ack(ms(1), 1, rtt(100_000), None);
        for i in 0..100 {
            rc.on_ack(ms(6000 + i * 100), 1, rtt(5000), None);
            assert!((20_000.0..=200_000.0).contains(&rc.target()));
        }
        assert!(rc.stats().samples_ignored >= 1);
        // Nonsense bounds are made sane rather than trusted.
        let rc = RateController::new(RateConfig {
            initial_rate: f64::NAN,
            min_rate: -1.0,
            max_rate: 0.0,
            queue_target: Duration::ZERO,
            uplink_alone: false,
            grow_unused: false,
        });
        assert!(rc.target().is_finite() && rc.target() > 0.0);
    }

    #[test]
    fn a_cap_lowers_the_target_within_its_bounds_and_never_raises_it() {
        let mut rc = RateController::new(RateConfig::default());
        rc.cap(120_000.0);
        assert_eq!(rc.target(), 120_000.0);
        rc.cap(900_000.0);
        assert_eq!(rc.target(), 120_000.0, "a cap never raises the target");
        rc.cap(1.0);
        assert_eq!(rc.target(), RateConfig::default().min_rate);
        rc.cap(f64::NAN);
        assert_eq!(rc.target(), RateConfig::default().min_rate);
    }

    #[test]
    fn the_window_covers_the_round_trip_and_the_queue_target() {
        let mut rc = RateController::new(RateConfig {
            initial_rate: 100_000.0,
            ..RateConfig::default()
        });
        rc.on_ack(ms(0), 1000, rtt(60), None);
        // The target x (60 + 40) ms.
        assert!(rc.target() > 100_000.0, "no queue: it grew");
        assert!(
            (rc.window() - rc.target() * 0.1).abs() < 1.0,
            "{}",
            rc.window()
        );
    }
}
