//! The sending half of the segment protocol (the mobile client's side).
//!
//! [`Sender`] cuts each frame into segments of the current size, paces them out at a configured
//! rate, resends exactly the segments a NACK names (with their original boundaries), gives a
//! frame up at its deadline, and takes the segment size for the next frame from each frame ACK
//! and NACK.
//!
//! Parity: an ACK also says how many parity segments ([`super::fec`]) to add to the next
//! frames. They follow the frame's data segments in its first crossing; two spare ones more
//! are encoded with them and answer NACKs: a NACKed data segment of full size is answered with
//! a spare parity segment (the same bytes, and it repairs whichever segment is still missing
//! when it arrives, a repair lost on the way included), the short last one with itself.
//!
//! Tail loss: if every segment of a frame has been sent and neither an ACK nor a NACK arrives
//! within the probe timeout, the sender resends the frame's last segment once (a tail probe).
//! That tells a receiver which saw nothing of the frame its size, so it can NACK the rest, and
//! makes a receiver whose ACK was lost repeat it. The probe timeout is `srtt + 4 x rttvar` plus
//! 2 ms (RFC 6298's form, the round trip measured from a frame's last transmission to its
//! ACK), within 10 ms and `probe_timeout`; under rate control it also covers the bytes queued
//! ahead of the frame and the queue the feedback showed (`Sender::queue_seen`), and doubles
//! per probe of the same tail. In a clean run (the last [`CLEAN_RUN`] frames sent without
//! parity and none lost while no queue was seen, and no parity asked for) a frame of several
//! segments has its tail sent again at most once by the timer (not at all if a NACK already
//! brought a copy), unless a newer frame's ACK shows it lost: there a silence is a queue
//! (capacity fell), the receiver names a lost tail itself once any segment of the frame
//! arrives, and each further copy only lengthens the queue. A frame's first NACK there also
//! tells the rate its head drained at, and a copy further back in that queue is not sent
//! again before its place can have passed.
//!
//! NACK limits: a NACK is a request from the network, so it never makes the sender send more
//! than it names (a spare parity segment answers a full-size segment only, byte for byte). Only segments of a frame still in flight that were already sent once are
//! resent, each once per NACK (repeats in the list, out-of-range indices and unknown frames
//! are counted and ignored), so the bytes resent never exceed the named segments' sizes. A
//! segment is resent on NACK at most once per [`SenderConfig::nack_resend_interval`] (or half
//! the smoothed round trip, if longer, up to the probe timeout): NACKs inside that window are
//! counted as limited and ignored. The receiver repeats its NACKs no faster than its own
//! `nack_interval_min`, so an honest receiver loses at most one repeat to the limit. Under
//! rate control, while the feedback shows a long queue ([`QUEUE_HOLDS_COPIES`]), a NACK for
//! a segment whose last copy may still be in it is counted as limited too.

use crate::mutants::{self, Mutant};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::fec::Coder;
use super::limits::DEFAULT_SEGMENT_SIZE;
use super::rate::{RateConfig, RateController, RttSample};
use super::rtt::SmoothedRtt;
use super::wire::{
    self, Message, Parity, Segment, MAX_SEGMENT_PAYLOAD, MAX_SHARDS, UDP_IP_OVERHEAD,
};
use super::DropReason;
use crate::machine::Endpoint;
use crate::time::{period, Instant};

/// How a [`Sender`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderConfig {
    /// Session id carried in every segment.
    pub session: u32,
    /// Where segments go.
    pub peer: SocketAddr,
    /// Segment size for the first frame, until an ACK says otherwise.
    pub initial_segment_size: usize,
    /// Pacing rate in bytes per second on the wire (UDP/IP headers included); `None` sends as
    /// fast as the caller polls.
    pub pacing_rate: Option<u64>,
    /// Bytes that may leave back to back before pacing applies.
    pub pacing_burst: usize,
    /// A frame not acknowledged this long after it was pushed is given up.
    pub frame_deadline: Duration,
    /// Frames in flight at once; pushing one more gives the oldest up.
    pub max_frames_in_flight: usize,
    /// Id of the first frame. A sender that restarts under the same session id must not
    /// reuse ids a receiver may still remember as finished: real runs start from a per-boot
    /// value (see `runtime::service`), simulations give each incarnation its own session.
    pub first_frame: u32,
    /// Longest silence after a frame's last transmission before its last segment is probed
    /// again; used until the round trip is measured, then `3 x srtt + 5 ms` within 10 ms and
    /// this.
    pub probe_timeout: Duration,
    /// Shortest time between two NACK-driven resends of one segment; half the smoothed round
    /// trip is used instead when that is longer (capped at `probe_timeout`).
    pub nack_resend_interval: Duration,
    /// Rate control ([`super::rate`]): when set, the pacing rate follows the controller's
    /// target (and `pacing_rate` is unused), new frames wait while the bytes in flight fill
    /// its window, and repairs get at most half of the rate while new frames wait.
    pub rate_control: Option<RateConfig>,
}

impl SenderConfig {
    /// Defaults for a session `session` to `peer`: 500 B segments, unpaced, 1 s deadline.
    pub fn new(session: u32, peer: SocketAddr) -> Self {
        SenderConfig {
            session,
            peer,
            initial_segment_size: DEFAULT_SEGMENT_SIZE,
            pacing_rate: None,
            pacing_burst: 16 * 1024,
            frame_deadline: Duration::from_secs(1),
            first_frame: 0,
            max_frames_in_flight: 16,
            probe_timeout: Duration::from_millis(100),
            nack_resend_interval: Duration::from_millis(10),
            rate_control: None,
        }
    }
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// The receiver has the whole frame. `latency` runs from push to ACK.
    FrameAcked {
        frame: u32,
        latency: Duration,
        segments: u16,
        resent: u32,
        /// The frame's length.
        bytes: usize,
        /// Its round trip when that is a sure sample (its data crossed once, and no repair
        /// could have brought the ACK), as the rate control reads it.
        rtt: Option<Duration>,
    },
    /// The frame was given up.
    FrameDropped { frame: u32, reason: DropReason },
    /// The rate control's target changed (bytes per second on the wire): what the camera
    /// shapes its frames to.
    TargetRate {
        bytes_per_s: u64,
        /// The queueing delay the rate control reads from its latest round trips.
        queue: Duration,
    },
    /// Frames pushed from now on are cut at the new size.
    SegmentSizeChanged { from: usize, to: usize },
    /// Frames pushed from now on carry this many parity segments.
    ParityChanged { from: usize, to: usize },
}

/// A frame the sender cannot take.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PushError {
    #[error("frame is empty")]
    Empty,
    #[error("frame of {len} bytes needs more than 65535 segments of {segment_size} bytes")]
    TooLarge { len: usize, segment_size: usize },
}

/// Counters, for reports and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderStats {
    pub frames_pushed: u64,
    pub frames_acked: u64,
    pub frames_dropped: u64,
    pub segments_sent: u64,
    pub segments_resent: u64,
    pub tail_probes: u64,
    /// Parity segments sent in first crossings, and in answer to NACKs.
    pub parity_sent: u64,
    pub parity_repairs: u64,
    pub bytes_sent: u64,
    /// Payload bytes of data segments sent for the first time.
    pub data_bytes: u64,
    /// Repair bytes: parity shards and resent data payload.
    pub repair_bytes: u64,
    /// Everything else on the wire: our headers and CRC, UDP and IP (28 per datagram).
    pub header_bytes: u64,
    pub nacks_received: u64,
    /// NACKs for a frame not in flight (unknown, acknowledged or given up).
    pub nacks_unknown_frame: u64,
    /// NACKed indices ignored: out of range, not sent yet, named twice or already queued.
    pub nack_indices_ignored: u64,
    /// NACKed segments not resent because they were resent on NACK too recently.
    pub nack_resends_limited: u64,
    pub acks_received: u64,
    pub datagrams_malformed: u64,
    pub datagrams_damaged: u64,
    pub datagrams_foreign: u64,
}

/// One datagram's worth of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shard {
    Data(u16),
    /// A parity segment, in the first crossing or (`repair`) in answer to a NACK.
    Parity {
        index: u16,
        repair: bool,
    },
}

/// The repair credit may build up to at least this many bytes: a few full datagrams.
const MAX_DATAGRAM_BURST: usize = 4 * 1500;

/// Spare parity segments encoded per frame with parity, to answer NACKs.
const SPARE_PARITY: usize = 2;

#[derive(Debug)]
struct OutFrame {
    data: Vec<u8>,
    segment_size: usize,
    count: u16,
    /// Parity shards: the first crossing's, then the spares.
    parity: Vec<Vec<u8>>,
    /// Parity shards in the first crossing.
    parity_first: u16,
    /// First-crossing parity shards not yet sent.
    parity_unsent: u16,
    /// Next spare parity shard to answer a NACK with.
    parity_next: u16,
    pushed_at: Instant,
    deadline: Instant,
    /// Segments not yet sent even once.
    unsent: u16,
    /// Segments waiting in the resend queue, so a repeated NACK does not queue them twice.
    queued: Vec<bool>,
    /// When each segment was last resent, for the NACK rate limit.
    resent_at: Vec<Option<Instant>>,
    /// How many times each segment was sent again (NACKs and probes).
    resends: Vec<u8>,
    /// [`Sender::wire_sent`] once each data segment's latest data copy had left: where in
    /// the sender's bytes that copy stands (a spare parity shard answering a NACK does not
    /// move it; frames with a drain rate have no parity, see `drain`).
    copy_wire: Vec<u64>,
    /// Bytes of older frames in flight or given up when its first datagram left: what may
    /// have been queued ahead of it (more, if some had arrived unacknowledged, which reads
    /// the drain rate high and sends copies sooner). Zero without rate control (unread).
    ahead_at_first: u64,
    /// In a clean run, the rate in bytes per second the path drained at, as the frame's
    /// first NACK showed it (only first copies came, no parity; see [`Sender::on_nack`]).
    drain: Option<f64>,
    resent: u32,
    /// When to probe the tail, once everything was sent and nothing came back.
    probe_at: Option<Instant>,
    /// A newer frame was acknowledged while this one was not: its tail is lost, not queued
    /// (the path is first in, first out), so its probe goes without further wait.
    tail_lost: bool,
    /// A newer frame was acknowledged while this one was not (it is lost or in repair, not
    /// queued; unlike `tail_lost` it stays set): its silence says nothing of the capacity
    /// (see [`Sender::silence_bound`]).
    overtaken: bool,
    /// When the frame's first datagram left (for the delivery rate after a loss, see
    /// [`RateController::on_ack`]).
    first_tx: Option<Instant>,
    /// When the frame's last datagram left.
    last_tx: Instant,
    /// [`Sender::wire_sent`] before its first datagram left, and when its first crossing
    /// ended: the bytes the bottleneck must carry, from the frame's head on, before its ACK
    /// can come (see [`Sender::silence_bound`]).
    sent_before: u64,
    sent_by_crossing: u64,
    /// Bytes on the wire for this frame so far (every datagram, UDP/IP headers included).
    wire_bytes: u64,
    /// When a NACK for it last came: the receiver is seeing it, so a late ACK is a loss
    /// being repaired, not a queue.
    nacked_at: Option<Instant>,
    /// Whether a NACK named a segment that could have arrived (not only a tail that left
    /// less than the minimum round trip before the NACK came): then the ACK may owe its
    /// timing to a repair, and gives no sure round trip.
    loss_reported: bool,
    /// When the last datagram of its first crossing left. Repairs and tail probes do not
    /// move it: an ACK is overdue from here (see [`RateController::on_overdue`]).
    crossed_at: Option<Instant>,
    /// When its last data segment first left: no ACK can come before that segment arrives
    /// (parity sent after it can only make the ACK later), so a round trip measured from
    /// here never reads short.
    data_sent_at: Option<Instant>,
    /// When its first repair (resend, spare parity or tail probe) left.
    first_repair_at: Option<Instant>,
    /// Wire bytes sent since the last NACK for it (all of them before one came).
    unheard_bytes: u64,
}

impl OutFrame {
    /// The round trip an ACK at `now` gives for the rate control, when it is a sure one:
    /// from the frame's last data segment, if no NACK reported a loss (one naming only a tail
    /// still in flight does not, see `loss_reported`) and no repair left within `min_rtt`
    /// before `now`, so the ACK can only have come from the first crossing (Karn's rule,
    /// sharpened: a tail probe sent into a queue does not blind the rate control to that
    /// queue).
    ///
    /// First-crossing parity still unsent does not void the sample: the receiver rebuilt the
    /// frame from what arrived, and the round trip is measured from the last data segment,
    /// which parity can only follow. (Requiring every parity segment out first took the
    /// sample from nearly every frame with FEC, since parity is paced behind new frames,
    /// and the target then never grew again after a dip.)
    fn rate_rtt(&self, now: Instant, min_rtt: Option<Duration>) -> Option<Duration> {
        let data_sent = self.data_sent_at?;
        if self.unsent > 0 || self.loss_reported {
            return None;
        }
        sure_rtt(now, data_sent, self.first_repair_at, min_rtt)
    }

    /// Whether every datagram of its first crossing has left.
    fn all_sent(&self) -> bool {
        self.unsent == 0 && self.parity_unsent == 0
    }

    /// Where segment `i`'s latest data copy stands in the bytes that may have been queued
    /// ahead of it: the older frames' ([`OutFrame::ahead_at_first`]) and this frame's own
    /// through that copy. What a clean run's drain rate divides, and multiplies back.
    fn place(&self, i: u16) -> u64 {
        self.ahead_at_first + self.copy_wire[usize::from(i)].saturating_sub(self.sent_before)
    }

    /// When the receiver should have answered it: its first crossing or the last NACK.
    fn heard_or_sent(&self) -> Instant {
        let crossed = self.crossed_at.unwrap_or(self.last_tx);
        self.nacked_at.map_or(crossed, |t| t.max(crossed))
    }
}

/// The sending state machine. See the module docs.
#[derive(Debug)]
pub struct Sender {
    cfg: SenderConfig,
    segment_size: usize,
    next_frame: u32,
    /// Highest frame whose ACK set the segment size; older ACKs do not override it.
    size_set_by: Option<u32>,
    frames: BTreeMap<u32, OutFrame>,
    fresh: VecDeque<(u32, Shard)>,
    resend: VecDeque<(u32, Shard)>,
    pace_at: Instant,
    /// When the receiver last said anything (ACK or NACK).
    last_feedback: Option<Instant>,
    /// Smoothed round trip, from a frame's last transmission to its ACK (frames sent once),
    /// and its mean deviation.
    rtt: SmoothedRtt,
    /// The queueing delay the latest feedback showed (rate control only): from a sure
    /// round-trip sample, or at least what a frame's first NACK shows its head waited (see
    /// [`Sender::on_nack`]). A tail probe waits for it on top of the round trip, and while
    /// it is over [`QUEUE_HOLDS_COPIES`] a NACK for a segment whose last copy left within
    /// the minimum round trip plus this queue brings no further copy: the receiver asked
    /// before that copy could arrive.
    queue_seen: Duration,
    /// One bit per acknowledged frame, the newest lowest: whether a NACK reported one of its
    /// segments lost while no queue was seen. Any bit set tells a lossy link, on which a
    /// silence is more likely loss than a queue (see [`Sender::handle_timeout`]).
    recent_losses: u16,
    /// Frames acknowledged in a row, sent without parity, with no segment reported lost and no
    /// older frame left unacknowledged or given up, while no queue was seen (saturating; see
    /// [`CLEAN_RUN`]).
    clean_frames: u16,
    /// A frame with datagrams on the wire was given up since the last ACK: the next ACK's
    /// frame was sent after a loss (see [`RateController::on_ack`]).
    lost_since_ack: bool,
    /// Parity segments per frame, as the last ACK asked.
    parity: usize,
    coder: Coder,
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
    rate: Option<RateController>,
    /// The target last reported in a [`SenderEvent::TargetRate`].
    reported_target: u64,
    /// Bytes repairs may still take while new frames wait (see [`REPAIR_SHARE`]), and when
    /// it was last topped up.
    repair_credit: f64,
    repair_credit_at: Instant,
    /// Frames given up after some of their bytes left, oldest first: those bytes may still
    /// sit in the bottleneck queue, so they count as in flight until the frame's late ACK
    /// (which also tells the rate control what the link delivered), or an ACK of a newer
    /// frame, or one more frame deadline (rate control only).
    abandoned: VecDeque<Abandoned>,
    /// New frame data (first crossings of data segments) and wire bytes sent recently, each
    /// decaying with [`SHARE_TIME`], and when they were last updated: their ratio is the
    /// share of the rate the camera may fill.
    recent_data: f64,
    recent_wire: f64,
    share_at: Instant,
    /// Set by the datagram last handed out when it was the last shard of its frame's first
    /// crossing: the frame and that shard's place in the crossing (see [`Sender::crossing_ended`]).
    crossing_ended: Option<(u32, u32)>,
    /// Set by the datagram last handed out when it was a data segment sent again for at least
    /// the second time (see [`Sender::resent_again`]).
    resent_again: bool,
    /// Wire bytes (UDP and IP headers included) of every datagram handed out so far. Not
    /// [`SenderStats::bytes_sent`]: that leaves the headers out and counts the copies a bonded
    /// client sends on other uplinks ([`Sender::note_copy`]), which do not cross this path.
    wire_sent: u64,
}

/// The longest a receiver waits after the last segment that came before it NACKs a frame's
/// tail: twice the default `ReceiverConfig::nack_interval` (50 ms).
const RECEIVER_QUIET_MAX: Duration = Duration::from_millis(100);

/// A queue seen at least this long makes a NACK for a segment whose last copy may still be in
/// it go unanswered. When the capacity fell to a fifth, the receiver asked for a frame's tail
/// every 50 ms while the tail sat in a 400 ms queue, and each NACK put one more 2.7 KB copy
/// behind it: with the rule (and the tail probe waiting out the queue seen) 27-28 of the dip's
/// 50 frames arrived instead of 16-19 (before stop 57). Shorter queues do not earn it: on links
/// with random loss a lost repair then waits out the queue's time before it is sent again (with
/// no floor, or one of 40 or 100 ms, 43-44 of 120 bit-error soak links fell below 99.5% instead
/// of 41).
const QUEUE_HOLDS_COPIES: Duration = Duration::from_millis(150);

/// Time constant, in seconds, of the recent data share.
const SHARE_TIME: f64 = 1.0;

/// A frame given up while its bytes may still be on the way (see `Sender::abandoned`).
#[derive(Debug, Clone, Copy)]
struct Abandoned {
    frame: u32,
    wire_bytes: u64,
    /// When its last data segment left, if its late ACK can give a sure round trip (see
    /// [`sure_rtt`]), and when its first repair left.
    data_sent_at: Option<Instant>,
    first_repair_at: Option<Instant>,
    /// When its last datagram left.
    last_tx: Instant,
    /// Forgotten at this instant if nothing was heard of it.
    until: Instant,
    /// When the queue ahead of its last datagram has drained and a round trip passed: it is
    /// forgotten then instead if the receiver was heard after that instant and the feedback
    /// shows no queue (see [`Abandoned::forget_at`]).
    drained: Instant,
}

impl Abandoned {
    /// When its bytes stop counting in flight. A deadline after its own at the latest;
    /// sooner, once the queue ahead of its last datagram has drained, if the receiver was
    /// `heard` after that with no queue in sight ([`Sender::heard_with_no_queue`]): its bytes
    /// are then not in the network but lost. On a silent path they keep counting (a silence
    /// may be a queue), and so they do behind a queue: after a capacity collapse the delivery
    /// rate the drain is reckoned at has not fallen yet, and forgetting them there cost
    /// `rate_collapse` its p99 (365-422 -> 562-643 ms).
    fn forget_at(&self, heard: Option<Instant>) -> Instant {
        if heard.is_some_and(|t| t > self.drained) {
            self.until.min(self.drained)
        } else {
            self.until
        }
    }
}

/// Frames acknowledged in a row, sent without parity, with no segment reported lost and no
/// older frame left unacknowledged or given up while no queue was seen, after which a silence is taken for a queue by the tail
/// probe ([`Sender::clean_run`]): a frame of several segments has its tail sent again at most
/// once by the timer, not again as the probes back off. In `step_down.toml` the two 10 KB
/// frames in flight when the capacity fell to 20 KB/s had their 2.7 KB tails sent five more
/// times into the queue (0.67 s of the 20 KB/s link); probed once, 36 of the dip's 50 frames
/// arrive (34 before) at a p99 of 556-562 ms (750-754 ms), and 37-38 once a NACK no longer
/// sends a copy before the place of the last one can have passed (see [`Sender::on_nack`]).
/// 32, not 16: on a NACK-only link at 2.5-4% loss 16 clean frames in a row come often, and a
/// frame whose tail and first probe were both lost then died (15 -> 18 lossy soak links
/// below 99.5%); a frame of one segment is always probed again, since a receiver that saw
/// none of it cannot ask for it (soak case 59, 2.9% loss).
const CLEAN_RUN: u16 = 32;

/// The share of the pacing rate repairs (resends, parity answering NACKs, tail probes) may
/// take while new frames are waiting; with nothing new waiting they take what is left.
const REPAIR_SHARE: f64 = 0.5;

/// Pacing runs this much faster than the rate control's target, so a frame shaped to the
/// target leaves in less than its frame interval, with room for its repairs.
const PACING_GAIN: f64 = 1.25;

impl Sender {
    pub fn new(mut cfg: SenderConfig) -> Self {
        cfg.frame_deadline = period(cfg.frame_deadline);
        cfg.probe_timeout = period(cfg.probe_timeout);
        let rate = cfg.rate_control.clone().map(RateController::new);
        Sender {
            segment_size: cfg.initial_segment_size.clamp(1, MAX_SEGMENT_PAYLOAD),
            next_frame: cfg.first_frame,
            cfg,
            size_set_by: None,
            frames: BTreeMap::new(),
            fresh: VecDeque::new(),
            resend: VecDeque::new(),
            pace_at: Instant::ZERO,
            last_feedback: None,
            rtt: SmoothedRtt::default(),
            queue_seen: Duration::ZERO,
            recent_losses: 0,
            clean_frames: 0,
            lost_since_ack: false,
            parity: 0,
            coder: Coder::default(),
            events: VecDeque::new(),
            stats: SenderStats::default(),
            rate,
            reported_target: 0,
            repair_credit: 0.0,
            repair_credit_at: Instant::ZERO,
            abandoned: VecDeque::new(),
            recent_data: 0.0,
            recent_wire: 0.0,
            share_at: Instant::ZERO,
            crossing_ended: None,
            resent_again: false,
            wire_sent: 0,
        }
    }

    /// Whether the datagram last handed out ended its frame's first crossing (every data and
    /// parity segment of the frame has now been sent once): the frame and the crossing's last
    /// position (`path_marks::position`). A bonded client marks each uplink with it
    /// ([`crate::proto::wire::PathMark`]).
    pub fn crossing_ended(&self) -> Option<(u32, u32)> {
        self.crossing_ended
    }

    /// Whether the datagram last handed out was a data segment sent again for at least the
    /// second time (its first repair, or the parity sent in its place, was lost too; or its
    /// tail is probed again): a frame in the latency tail. A bonded client sends a copy of
    /// it by a second uplink (`role::Mobile`).
    pub fn resent_again(&self) -> bool {
        self.resent_again
    }

    /// The rate control, when on.
    pub fn rate_control(&self) -> Option<&RateController> {
        self.rate.as_ref()
    }

    /// The pacing rate in bytes per second: the rate control's target (times a small gain),
    /// else the configured one; `None` when unpaced.
    pub fn pacing_rate(&self) -> Option<f64> {
        match &self.rate {
            Some(rc) => Some(rc.target() * PACING_GAIN),
            None => self.cfg.pacing_rate.filter(|&r| r > 0).map(|r| r as f64),
        }
    }

    /// Payload bytes per second the camera may produce: the rate control's target less the
    /// share headers, parity and repairs took of the recent datagrams. `None` without rate
    /// control.
    pub fn source_rate(&self) -> Option<f64> {
        let target = self.rate.as_ref()?.target();
        // Until something was sent, a fifth is assumed to go to overhead.
        let share = if self.recent_wire > 0.0 {
            self.recent_data / self.recent_wire
        } else {
            0.8
        };
        Some(target * share.clamp(0.3, 1.0))
    }

    /// Takes the next frame id for a capture instant the camera skips (its frame rate lowered
    /// to fit the rate) and reports it dropped at once ([`DropReason::Skipped`]).
    pub fn skip_frame(&mut self) -> u32 {
        let frame = self.next_frame;
        self.next_frame = self.next_frame.wrapping_add(1);
        self.stats.frames_dropped += 1;
        self.events.push_back(SenderEvent::FrameDropped {
            frame,
            reason: DropReason::Skipped,
        });
        frame
    }

    /// Data segments `indices` of `frame` that the caller knows are lost (a bonded uplink fell
    /// silent with them on it, `proto::bond`): queued again at once, each once, as a NACK's
    /// would be, without waiting a round trip for the receiver to ask. Segments not sent yet,
    /// already queued, or of a frame no longer in flight are skipped. Returns how many were
    /// queued.
    pub fn resend_lost(&mut self, frame: u32, indices: &[u16]) -> usize {
        let Some(f) = self.frames.get_mut(&frame) else {
            return 0;
        };
        let sent = usize::from(f.count - f.unsent);
        let mut queued = 0;
        for &i in indices {
            let i_us = usize::from(i);
            if i_us >= sent || f.queued[i_us] {
                continue;
            }
            f.queued[i_us] = true;
            self.resend.push_back((frame, Shard::Data(i)));
            queued += 1;
        }
        queued
    }

    /// Data segments `indices` of `frame` whose resends [`Sender::resend_lost`] queued too
    /// soon: the bonded uplink taken for silent with them on it answered again (a sealed
    /// echo, `proto::bond`), so it was queued, not dead, and they arrive late or were lost
    /// one at a time, which the receiver names. Their resends still waiting to leave are
    /// withdrawn, much as TCP undoes a spurious retransmission timeout (Eifel, F-RTO).
    /// Copies already sent and segments not queued are left alone, and a NACK naming one of
    /// them later resends it as usual. Returns how many were withdrawn.
    pub fn withdraw_resends(&mut self, frame: u32, indices: &[u16]) -> usize {
        let Some(f) = self.frames.get_mut(&frame) else {
            return 0;
        };
        let before = self.resend.len();
        self.resend.retain(|&(id, shard)| {
            id != frame || !matches!(shard, Shard::Data(i) if indices.contains(&i))
        });
        for &i in indices {
            if let Some(queued) = f.queued.get_mut(usize::from(i)) {
                *queued = false;
            }
        }
        before - self.resend.len()
    }

    /// Gives up every frame that has not started to leave because the rate control holds it
    /// back (its window is closed, or the frame could not arrive in time behind what is in
    /// flight: see [`Sender::may_start`]), superseded by a newer capture: live video shows
    /// the newest. Frames held back for another reason (the session being set up, or moved
    /// to another receiver) wait for their deadline as before; a client's first session
    /// gives up those of its set-up when it opens ([`Sender::keep_newest_unstarted`]).
    /// Returns how many.
    pub fn drop_unstarted(&mut self) -> usize {
        let unstarted: Vec<u32> = self
            .frames
            .iter()
            .filter(|(_, f)| f.wire_bytes == 0 && !self.may_start(f))
            .map(|(&id, _)| id)
            .collect();
        for &id in &unstarted {
            self.give_up(id, DropReason::Superseded);
        }
        unstarted.len()
    }

    /// Gives up every frame that has not started to leave except the newest
    /// ([`DropReason::SetUp`]): what a live session owes once it opens after a slow set-up.
    /// Returns how many.
    pub fn keep_newest_unstarted(&mut self) -> usize {
        let unstarted: Vec<u32> = self
            .frames
            .iter()
            .filter(|(_, f)| f.wire_bytes == 0)
            .map(|(&id, _)| id)
            .collect();
        let stale = &unstarted[..unstarted.len().saturating_sub(1)];
        for &id in stale {
            self.give_up(id, DropReason::SetUp);
        }
        stale.len()
    }

    /// Whether the rate control lets `f`, not started yet, start: the window is open, and the
    /// frame could still arrive within its deadline if it left at once, its bytes behind
    /// those in flight at the target. A frame that could not is never started, and the next
    /// capture supersedes it: its bytes would only delay the frames after it. When capacity
    /// fell to a fifth, a frame captured at the old rate and started as the target was cut
    /// (8 KB at 17 KB/s behind 10 KB in flight) held the bottleneck for 0.9 s and still
    /// missed its deadline. A frame with nothing ahead of it always starts (a camera that
    /// cannot make frames small enough still sends, and its ACKs still teach the rate
    /// control).
    fn may_start(&self, f: &OutFrame) -> bool {
        let Some(rc) = &self.rate else { return true };
        if !self.window_open() {
            return false;
        }
        let ahead = self.unheard_bytes();
        if ahead == 0 {
            return true;
        }
        let rtt = rc.min_rtt().unwrap_or_default();
        let takes = (ahead + f.data.len() as u64) as f64 / rc.target();
        rtt.as_secs_f64() + takes <= self.cfg.frame_deadline.as_secs_f64()
    }

    /// Whether the window lets a new frame start now: the bytes in flight, leaving out the
    /// newest frame that started, are within the rate control's window. A frame's bytes
    /// stop counting when a NACK for it shows they arrived (what it sent after that counts):
    /// on a lossy link a frame waits for its repairs without sitting in any queue.
    fn window_open(&self) -> bool {
        let Some(rc) = &self.rate else { return true };
        let started = self.frames.values().filter(|f| f.wire_bytes > 0);
        let newest = started.clone().map(|f| f.pushed_at).max();
        let mut skipped_newest = false;
        let mut in_flight = 0u64;
        for f in started {
            if !skipped_newest && Some(f.pushed_at) == newest {
                skipped_newest = true;
                continue;
            }
            in_flight += f.unheard_bytes;
        }
        ((in_flight + self.abandoned_bytes()) as f64) < rc.window()
    }

    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// The id the next pushed frame gets.
    pub fn next_frame_id(&self) -> u32 {
        self.next_frame
    }

    /// The size the next pushed frame will be cut into.
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// Parity segments the next pushed frame gets.
    pub fn parity(&self) -> usize {
        self.parity
    }

    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// Frames pushed and not yet acknowledged or given up.
    pub fn frames_in_flight(&self) -> usize {
        self.frames.len()
    }

    /// The next frame deadline or tail probe, leaving pacing aside: what matters while the
    /// sender may not transmit (its session is being set up).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.frames
            .values()
            .flat_map(|f| [Some(f.deadline), f.probe_at])
            .flatten()
            .min()
    }

    /// True when a segment (fresh or resent) is waiting to go out and may go once the pacer
    /// allows: a new frame held back by the rate control's window does not count.
    pub fn has_queued(&self) -> bool {
        self.resend.iter().any(|(f, _)| self.frames.contains_key(f)) || self.fresh_ready()
    }

    /// When repairs, out of their share and with no new frame to send instead, may go again
    /// (`None`: they are not held back). See [`REPAIR_SHARE`].
    fn repairs_held_until(&self) -> Option<Instant> {
        let rate = self.rate.as_ref()?.target() * PACING_GAIN * REPAIR_SHARE;
        if self.repair_credit >= 0.0 || self.fresh_ready() || self.window_open() {
            return None;
        }
        // One microsecond past the exact instant, so the credit is surely back at zero.
        let wait = Duration::from_secs_f64(-self.repair_credit / rate) + Duration::from_micros(1);
        Some(self.repair_credit_at + wait)
    }

    /// Whether the first live entry of the fresh queue may go: it belongs to a frame already
    /// leaving, or the window lets a new one start.
    fn fresh_ready(&self) -> bool {
        self.fresh
            .iter()
            .find_map(|(id, _)| self.frames.get(id))
            .is_some_and(|f| f.wire_bytes > 0 || self.may_start(f))
    }

    /// True when nothing is waiting to go out and the pacer would let a datagram leave at
    /// `now`: the sender leaves the link's budget unused at this moment.
    pub fn is_idle(&self, now: Instant) -> bool {
        !self.has_queued() && (self.pacing_rate().is_none() || now >= self.pace_at)
    }

    /// When the pacer lets the next datagram leave (`None`: unpaced).
    pub fn pace_ready_at(&self) -> Option<Instant> {
        self.pacing_rate().is_some().then_some(self.pace_at)
    }

    /// Counts a datagram of `len` bytes that left at `now` against the pacing budget (the
    /// sender's own, and datagrams another sender sends with the budget this one left over).
    pub fn charge(&mut self, now: Instant, len: usize) {
        if let Some(rate) = self.pacing_rate().filter(|&r| r > 0.0) {
            let per_byte = |bytes: usize| Duration::from_secs_f64(bytes as f64 / rate);
            let base = self.pace_at.max(now - per_byte(self.cfg.pacing_burst));
            self.pace_at = base + per_byte(len + UDP_IP_OVERHEAD);
        }
    }

    /// When the oldest frame still in flight was pushed.
    pub fn oldest_in_flight(&self) -> Option<Instant> {
        self.frames.values().map(|f| f.pushed_at).min()
    }

    /// When the receiver last sent an ACK or NACK.
    pub fn last_feedback(&self) -> Option<Instant> {
        self.last_feedback
    }

    /// Moves the session to a new receiver (another tier-2 after a failover) and sends every
    /// frame still in flight there again, whole: the new receiver has none of it. Frames past
    /// their deadline are given up as usual.
    pub fn restart(&mut self, now: Instant, peer: SocketAddr) {
        self.cfg.peer = peer;
        // A new path: its rate is learned afresh, as QUIC resets its congestion controller
        // on migration (RFC 9000, 9.4); what the silence before it taught is not about it.
        self.rate = self.cfg.rate_control.clone().map(RateController::new);
        self.abandoned.clear();
        self.queue_seen = Duration::ZERO;
        self.lost_since_ack = false;
        // A clean run is the old path's; `recent_losses` stays (a lossy history only makes the
        // sender read silences as losses, the safe side).
        self.clean_frames = 0;
        self.last_feedback = Some(now);
        self.fresh.clear();
        self.resend.clear();
        for (&id, f) in self.frames.iter_mut() {
            f.unsent = f.count;
            f.parity_unsent = f.parity_first;
            f.parity_next = f.parity_first;
            f.queued.iter_mut().for_each(|q| *q = false);
            f.resent_at.iter_mut().for_each(|t| *t = None);
            f.resends.iter_mut().for_each(|n| *n = 0);
            f.drain = None;
            f.probe_at = None;
            f.wire_bytes = 0;
            f.unheard_bytes = 0;
            f.crossed_at = None;
            f.data_sent_at = None;
            f.first_repair_at = None;
            f.first_tx = None;
            f.overtaken = false;
            self.fresh
                .extend(first_crossing(id, f.count, f.parity_first));
        }
    }

    /// Queues a frame for sending, cut at the current segment size, and returns its id.
    /// At the in-flight limit the oldest frame is given up first: live video prefers the new.
    pub fn push_frame(&mut self, now: Instant, data: Vec<u8>) -> Result<u32, PushError> {
        if data.is_empty() {
            return Err(PushError::Empty);
        }
        let size = self.segment_size;
        let count = u16::try_from(data.len().div_ceil(size))
            .ok()
            .filter(|_| u32::try_from(data.len()).is_ok())
            .ok_or(PushError::TooLarge {
                len: data.len(),
                segment_size: size,
            })?;
        while self.frames.len() >= self.cfg.max_frames_in_flight.max(1) {
            let Some((&oldest, _)) = self.frames.first_key_value() else {
                break;
            };
            self.give_up(oldest, DropReason::Evicted);
        }
        let id = self.next_frame;
        self.next_frame = self.next_frame.wrapping_add(1);
        // Parity only where the code reaches (k + m shards at most).
        let first = if usize::from(count) + self.parity <= MAX_SHARDS {
            self.parity
        } else {
            0
        };
        let spare = SPARE_PARITY.min(MAX_SHARDS.saturating_sub(usize::from(count) + first));
        let parity = if first > 0 {
            self.coder.encode(&data, size, first + spare)
        } else {
            Vec::new()
        };
        let parity_first = if parity.is_empty() { 0 } else { first as u16 };
        self.frames.insert(
            id,
            OutFrame {
                data,
                segment_size: size,
                count,
                parity,
                parity_first,
                parity_unsent: parity_first,
                parity_next: parity_first,
                pushed_at: now,
                deadline: now + self.cfg.frame_deadline,
                unsent: count,
                queued: vec![false; usize::from(count)],
                resent_at: vec![None; usize::from(count)],
                copy_wire: vec![0; usize::from(count)],
                ahead_at_first: 0,
                drain: None,
                resends: vec![0; usize::from(count)],
                resent: 0,
                probe_at: None,
                tail_lost: false,
                overtaken: false,
                first_tx: None,
                last_tx: now,
                sent_before: 0,
                sent_by_crossing: 0,
                wire_bytes: 0,
                nacked_at: None,
                loss_reported: false,
                crossed_at: None,
                data_sent_at: None,
                first_repair_at: None,
                unheard_bytes: 0,
            },
        );
        self.fresh.extend(first_crossing(id, count, parity_first));
        self.stats.frames_pushed += 1;
        Ok(id)
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    fn give_up(&mut self, frame: u32, reason: DropReason) {
        if let Some(f) = self.frames.remove(&frame) {
            self.lost_since_ack |= f.wire_bytes > 0;
            if let Some(rc) = self.rate.as_ref().filter(|_| f.wire_bytes > 0) {
                // Its bytes are out of the network a deadline after its own at the latest,
                // and on a path that answers with no queue in sight once the queue ahead of
                // its last datagram drained and a round trip passed (see
                // [`Abandoned::forget_at`]): the queue holds at most what is unheard
                // of every frame, draining at the rate the ACKs show (the target when lower,
                // or before any). Frames lost whole leave nothing to hear back, and counting
                // them for the whole deadline kept the window shut with nothing in the
                // network while NACKs of an older frame came back (soak case 37: 1.6 s of
                // captures superseded with nothing sent).
                let ahead = self.unheard_bytes() + f.unheard_bytes;
                let rate = rc
                    .delivery_rate()
                    .map_or(rc.target(), |d| d.min(rc.target()));
                let drained = f.last_tx
                    + rc.min_rtt().unwrap_or_default()
                    + Duration::from_secs_f64((ahead as f64 / rate).min(10.0));
                self.abandoned.push_back(Abandoned {
                    frame,
                    wire_bytes: f.wire_bytes,
                    data_sent_at: f.data_sent_at.filter(|_| f.unsent == 0 && !f.loss_reported),
                    first_repair_at: f.first_repair_at,
                    last_tx: f.last_tx,
                    until: f.deadline + self.cfg.frame_deadline,
                    drained,
                });
            }
            self.stats.frames_dropped += 1;
            if reason != DropReason::Deadline && mutants::active(Mutant::SilentEviction) {
                return;
            }
            self.events
                .push_back(SenderEvent::FrameDropped { frame, reason });
        }
    }

    /// Tells the rate control a frame of `wire_bytes` whose last datagram left at `last_tx`
    /// was acknowledged, with its round trip when that is a sure sample (and when the frame
    /// was pushed, when known), and when its first datagram left if it was sent after a loss
    /// (see [`RateController::on_ack`]).
    fn rate_sample(
        &mut self,
        now: Instant,
        wire_bytes: u64,
        rtt: Option<Duration>,
        pushed_at: Option<Instant>,
        after_loss: Option<Instant>,
        last_tx: Instant,
    ) {
        if let Some(rc) = self.rate.as_mut() {
            let sample = rtt.map(|rtt| RttSample { rtt, pushed_at });
            rc.on_ack(now, wire_bytes, sample, after_loss);
            if rtt.is_none() {
                rc.on_late_ack(now, now - last_tx);
            }
        }
        self.report_target();
    }

    /// Counts `wire_bytes` that another sender delivered on this sender's budget (the
    /// backfill, which [`charge`](Self::charge)s its datagrams here) as delivered on the path:
    /// the rate control caps its target at a multiple of what the path delivers, and without
    /// these it would see only the live frames, so a backlog could never drain faster than
    /// the live stream runs. `rtt` is the frame's round trip when the other sender took it
    /// as a sure sample ([`SenderEvent::FrameAcked`]): the same path, so the rate control
    /// reads its queue from it, and a sender whose live stream is idle (its camera stopped, a
    /// backlog in the ring) still learns when the path has room again. Without it a silence
    /// that cut the target to its floor would hold the backlog there for good.
    pub fn note_delivered(&mut self, now: Instant, wire_bytes: u64, rtt: Option<Duration>) {
        if let Some(rc) = self.rate.as_mut() {
            rc.on_ack(now, wire_bytes, rtt.map(RttSample::rtt), None);
        }
        self.report_target();
    }

    /// Whether the pacing budget has room for a datagram now (always, unpaced): a bonded
    /// client copies a repair onto a second uplink only then (`role::Mobile`).
    pub fn has_room(&self, now: Instant) -> bool {
        self.pace_ready_at().is_none_or(|at| at <= now)
    }

    /// A copy of a repair this sender made, `len` bytes with `payload` of frame data, went
    /// out as well by another path (a bonded client's, `role::Mobile`): it counts as a
    /// repair, against the pacing budget and in the wire share the camera's rate is taken
    /// from, as the original did.
    pub fn note_copy(&mut self, now: Instant, len: usize, payload: usize) {
        self.stats.segments_sent += 1;
        self.stats.repair_bytes += payload as u64;
        self.count_sent(now, len, payload, true);
    }

    /// Counts a datagram of `len` bytes carrying `payload` bytes of frame data (`resend`: a
    /// repair) in the totals, the recent data share and the pacing budget.
    fn count_sent(&mut self, now: Instant, len: usize, payload: usize, resend: bool) {
        self.stats.bytes_sent += len as u64;
        self.stats.header_bytes += (len - payload + UDP_IP_OVERHEAD) as u64;
        let decay = (-(now - self.share_at).as_secs_f64() / SHARE_TIME).exp();
        self.share_at = now;
        self.recent_data = self.recent_data * decay + if resend { 0.0 } else { payload as f64 };
        self.recent_wire = self.recent_wire * decay + (len + UDP_IP_OVERHEAD) as f64;
        self.charge(now, len);
    }

    /// Holds the rate control's target at or below `ceiling` bytes per second (a bonded
    /// client's uplinks together, `proto::bond`); nothing without rate control.
    pub fn cap_rate(&mut self, ceiling: f64) {
        if let Some(rc) = self.rate.as_mut() {
            rc.cap(ceiling);
        }
        self.report_target();
    }

    /// Reports the rate control's target when it moved by a byte per second or more.
    fn report_target(&mut self) {
        let Some(rc) = self.rate.as_ref() else { return };
        let target = rc.target() as u64;
        if target != self.reported_target {
            self.reported_target = target;
            self.events.push_back(SenderEvent::TargetRate {
                bytes_per_s: target,
                queue: rc.queue_delay().unwrap_or_default(),
            });
        }
    }

    /// Whether, under rate control, the link has lost nothing for [`CLEAN_RUN`] frames in a
    /// row and asks for no parity (which would hide its losses from the NACKs): a silence
    /// there is a queue. Not the `recent_losses == 0` of [`Sender::silence_bound`], which
    /// holds from a session's first frame.
    fn clean_run(&self) -> bool {
        self.rate.is_some() && self.clean_frames >= CLEAN_RUN && self.parity == 0
    }

    /// [`Sender::clean_run`], for the role tests.
    #[cfg(test)]
    pub(crate) fn in_clean_run(&self) -> bool {
        self.clean_run()
    }

    /// Whether the latest feedback showed no queue: [`Sender::queue_seen`] within half the
    /// minimum round trip.
    fn no_queue_seen(&self) -> bool {
        let min_rtt = self.rate.as_ref().and_then(RateController::min_rtt);
        min_rtt.is_some_and(|min| self.queue_seen <= min / 2)
    }

    /// When the receiver was last heard, if that feedback showed no queue.
    fn heard_with_no_queue(&self) -> Option<Instant> {
        self.last_feedback.filter(|_| self.no_queue_seen())
    }

    /// Bytes that may still be on the way unheard of: what the frames in flight sent since
    /// their last NACK, and the abandoned frames' bytes.
    fn unheard_bytes(&self) -> u64 {
        self.frames.values().map(|f| f.unheard_bytes).sum::<u64>() + self.abandoned_bytes()
    }

    /// Bytes of abandoned frames that may still be on the way.
    fn abandoned_bytes(&self) -> u64 {
        self.abandoned.iter().map(|a| a.wire_bytes).sum()
    }

    /// An ACK of `frame` arrived: an abandoned frame of that id was delivered late (its bytes
    /// count as delivered), and older abandoned ones are behind the queue either way.
    fn settle_abandoned(&mut self, now: Instant, frame: u32) {
        let older = |a: &Abandoned| frame.wrapping_sub(a.frame).wrapping_sub(1) < u32::MAX / 2;
        while self.abandoned.front().is_some_and(older) {
            self.abandoned.pop_front();
        }
        let late = self.abandoned.iter().position(|a| a.frame == frame);
        if let Some(a) = late.and_then(|i| self.abandoned.remove(i)) {
            let min_rtt = self.rate.as_ref().and_then(RateController::min_rtt);
            let rtt = a
                .data_sent_at
                .and_then(|sent| sure_rtt(now, sent, a.first_repair_at, min_rtt));
            self.rate_sample(now, a.wire_bytes, rtt, None, None, a.last_tx);
        }
    }

    fn on_ack(&mut self, now: Instant, ack: wire::FrameAck) {
        self.stats.acks_received += 1;
        self.last_feedback = Some(now);
        self.settle_abandoned(now, ack.frame);
        // What older frames sent before this one is out of the network: delivered, or lost
        // (their repairs, sent from now on, count again). If any such frame went out, or one
        // was given up since the last ACK, this one was sent after a loss and counts in the
        // delivery rate from its own first datagram (see `RateController::on_ack`). Counting
        // only frames the receiver never asked about (lost whole, not in repair) was
        // measured and lost the gains (bit errors' worst 74.6% -> 61.0%, NACK-only lossy
        // 89.8% -> 75.6%).
        let mut older_lost = false;
        for f in self.frames.range_mut(..ack.frame).map(|(_, f)| f) {
            older_lost |= f.wire_bytes > 0;
            f.unheard_bytes = 0;
            f.overtaken = true;
            if self.rate.is_some() && f.all_sent() {
                if let Some(at) = f.probe_at.as_mut() {
                    f.tail_lost = true;
                    *at = (*at).min(now);
                }
            }
        }
        if let Some(f) = self.frames.remove(&ack.frame) {
            let clean = f.resent == 0 && f.unsent == 0 && f.parity_unsent == 0;
            let min_rtt = self.rate.as_ref().and_then(RateController::min_rtt);
            let rtt = f.rate_rtt(now, min_rtt);
            if let (Some(rtt), Some(min)) = (rtt, min_rtt) {
                self.queue_seen = rtt.saturating_sub(min);
            }
            // A loss counts as the link's own (radio loss) when no queue was seen: a loss at
            // a full queue says nothing of what a silence means.
            let quiet = self.no_queue_seen();
            self.recent_losses = self.recent_losses << 1 | u16::from(f.loss_reported && quiet);
            let lost = std::mem::take(&mut self.lost_since_ack) || older_lost;
            self.clean_frames = if (f.loss_reported || lost) && quiet {
                0
            } else if f.parity_first > 0 {
                // Parity hides what it repaired from the NACKs: such a frame does not lengthen
                // the run.
                self.clean_frames
            } else {
                self.clean_frames.saturating_add(1)
            };
            let after_loss = f.first_tx.filter(|_| lost);
            self.rate_sample(
                now,
                f.wire_bytes,
                rtt,
                Some(f.pushed_at),
                after_loss,
                f.last_tx,
            );
            if clean {
                self.rtt.update(now - f.last_tx);
            }
            self.stats.frames_acked += 1;
            self.events.push_back(SenderEvent::FrameAcked {
                frame: ack.frame,
                latency: now - f.pushed_at,
                segments: f.count,
                resent: f.resent,
                bytes: f.data.len(),
                rtt,
            });
        }
        self.take_advice(ack.frame, ack.next_segment_size, ack.next_parity);
    }

    /// Takes the segment size and parity the receiver wants for the next frames, from the
    /// ACK or NACK of `frame`, unless a message about a newer frame already set them (the
    /// path may reorder) or the size is 0 (no advice). NACKs carry it too (a smaller size
    /// only is taken from them): on a link where no frame completes any more, they are the
    /// only feedback, and a size too large for the link's bit errors must still come down.
    fn take_advice(&mut self, frame: u32, size: u16, parity: u8) {
        let newer = self
            .size_set_by
            .is_none_or(|by| frame.wrapping_sub(by) < u32::MAX / 2);
        // A peer may ask for anything; a segment must still fit one UDP datagram.
        let next = usize::from(size).min(MAX_SEGMENT_PAYLOAD);
        if newer && next > 0 {
            self.size_set_by = Some(frame);
            if next != self.segment_size {
                self.events.push_back(SenderEvent::SegmentSizeChanged {
                    from: self.segment_size,
                    to: next,
                });
                self.segment_size = next;
            }
            let parity = usize::from(parity);
            if parity != self.parity {
                self.events.push_back(SenderEvent::ParityChanged {
                    from: self.parity,
                    to: parity,
                });
                self.parity = parity;
            }
        }
    }

    /// The oldest frame that has wholly left and is waiting for its ACK: when it last left or
    /// was NACKed (see [`RateController::on_overdue`]).
    /// Feedback about any frame counts: a newer frame's prompt ACK says the path is not
    /// queueing, and the old frame was lost (its tail probe repairs it).
    fn overdue_since(&self) -> Option<Instant> {
        let heard = self
            .frames
            .values()
            .find(|f| f.all_sent() && f.wire_bytes > 0)
            .map(OutFrame::heard_or_sent)?;
        Some(self.last_feedback.map_or(heard, |t| t.max(heard)))
    }

    /// The most the path can have delivered, in bytes per second, given that the oldest
    /// frame waiting for its ACK has not been acknowledged by `now` (rate control only).
    /// The bytes that left from its first datagram to the end of its first crossing (its
    /// own and any other frame's between them), and the bytes of frames given up that may
    /// still be queued ahead of it, are counted as what had to cross the bottleneck before
    /// its ACK could leave the receiver (a few need not have: parity the receiver did not
    /// need, a given-up frame's bytes sent after it; counting them only raises the bound);
    /// they had at most the time since its first datagram's departure, less the minimum
    /// round trip and half the queue target (the path's jitter), to do it. At any higher
    /// rate the ACK would have come, provided the frame was paced no slower than the bound
    /// (where it was paced slower, the bound comes out above its pacing rate, above the
    /// target, and cuts nothing). Bytes queued ahead of it when it left that are not in
    /// the count (acknowledged frames', a durable backfill's sent on this sender's budget)
    /// make the bound read below the capacity: the rate that drains the queue they made.
    ///
    /// Only where that silence means capacity: not on a link that loses segments (recent losses
    /// reported with no queue seen; a lost segment delays the ACK as much), not once the
    /// receiver asked for a repair of the frame (it is being repaired) or a newer frame was
    /// acknowledged before it (it is lost, `OutFrame::overtaken`), and only while a newer frame
    /// has bytes out too (a queue the sender built holds more than one of its frames; a frame
    /// alone in a silence is as likely lost whole, and reading its silence as capacity cut the
    /// target to its floor and kept a lost frame's bytes in the window long after the path
    /// answered again). When the capacity under a camera's 100 KB/s fell to 20 KB/s
    /// (`sim/scenarios/step_down.toml`), the silence's cuts (0.7x per round trip, no lower than
    /// half) took 0.6 s to come near the 20 KB/s left, and frames started meanwhile at 4-10 KB
    /// held the queue for 2 s of the dip: 28 of its 50 frames arrived on each of seeds 1-5.
    /// With the bound the target is at 33 KB/s 0.37 s in and 34 arrive; the dip's frame latency
    /// p99 is 750-754 ms instead of 556-562 (a frame sent behind the two the queue held at
    /// their deadlines arrives, where before none sent then did; 37-38 at 556-562 ms since a
    /// clean run keeps its tails' copies out of that queue, see [`CLEAN_RUN`]). Taking the
    /// queue it shows for `queue_seen` as well (so NACKs for copies in it go unanswered) left
    /// bit-error soak case 84 at 50.9% of its frames instead of 89.8%: a silence at the start
    /// of a lossy link, before a loss is reported, is a loss.
    fn silence_bound(&self, now: Instant) -> Option<f64> {
        let rc = self.rate.as_ref()?;
        if self.recent_losses != 0 {
            return None;
        }
        let mut out = self.frames.values().filter(|f| f.wire_bytes > 0);
        let f = out.find(|f| f.all_sent())?;
        if f.nacked_at.is_some() || f.overtaken || out.next().is_none() {
            return None;
        }
        let first_tx = f.first_tx.filter(|_| f.crossed_at.is_some())?;
        let bytes = f.sent_by_crossing.saturating_sub(f.sent_before) + self.abandoned_bytes();
        let took = now
            .saturating_duration_since(first_tx + rc.min_rtt()? + rc.config().queue_target / 2)
            .max(Duration::from_millis(1));
        Some(bytes as f64 / took.as_secs_f64())
    }

    /// Shortest time between two NACK-driven resends of one segment.
    pub fn nack_resend_interval(&self) -> Duration {
        let floor = self.cfg.nack_resend_interval;
        match self.rtt.srtt() {
            Some(srtt) => (srtt / 2).min(self.cfg.probe_timeout).max(floor),
            None => floor,
        }
    }

    fn on_nack(&mut self, now: Instant, nack: wire::Nack) {
        self.stats.nacks_received += 1;
        // From a NACK only a smaller size is taken: growth waits for a frame that completed
        // (taking any size from NACKs cost the lossy soak: worst 85.5% -> 76.5%).
        if usize::from(nack.next_segment_size) < self.segment_size {
            self.take_advice(nack.frame, nack.next_segment_size, nack.next_parity);
        }
        let interval = self.nack_resend_interval();
        let min_rtt = self.rate.as_ref().and_then(RateController::min_rtt);
        let clean = self.clean_run();
        let Some(f) = self.frames.get_mut(&nack.frame) else {
            self.stats.nacks_unknown_frame += 1;
            return;
        };
        let first_nack = f.nacked_at.is_none();
        f.nacked_at = Some(now);
        let tail = f.count - 1;
        // A frame's first NACK, when every segment it does not name was sent once (no
        // parity, which a NACK does not account for), was set off by one of those first
        // copies arriving; the receiver asks at most `RECEIVER_QUIET_MAX` after the last
        // segment that came, so that copy waited in a queue for at least the rest of the
        // time since the frame's data left, less the minimum round trip.
        let only_first_copies_came = f.parity_first == 0
            && (0..f.count).all(|i| nack.missing.contains(&i) || f.resends[usize::from(i)] == 0);
        if let (true, true, Some(sent), Some(rtt)) =
            (first_nack, only_first_copies_came, f.data_sent_at, min_rtt)
        {
            self.queue_seen = (now - sent).saturating_sub(rtt + RECEIVER_QUIET_MAX);
            // In a clean run ([`Sender::clean_run`]) the copies that came, and the older
            // frames' bytes ahead of them when it left (`ahead_at_first`: by the NACK most of
            // those are acknowledged and gone), drained in the time since the frame's head
            // left less the round trip (the receiver may have asked up to `RECEIVER_QUIET_MAX`
            // later, so the rate may read low): a later copy, further back in the same queue,
            // arrives no sooner than its own place at that rate, and a NACK before then
            // brings no further copy of it (`still_queued`). In `step_down.toml` the queue read
            // above was too short to hold the tail's probe, sent behind the tail, and a third
            // copy of the frame's tail joined them (36 of the dip's 50 frames arrived with
            // it, 37-38 without); a tail really lost waits for the receiver's repeat after its
            // place has passed.
            let came_through = (0..f.count)
                .filter(|i| !nack.missing.contains(i))
                .map(|i| f.place(i))
                .max();
            let took = f.first_tx.map(|t| now.saturating_duration_since(t + rtt));
            if let (true, Some(came), Some(took)) = (clean, came_through, took) {
                let rate = came as f64 / took.as_secs_f64();
                f.drain = Some(rate).filter(|r| r.is_finite() && *r > 0.0);
            }
        }
        // Whether a copy that left at `at` may not have reached the receiver yet, with
        // `queue` of queueing on top of the minimum round trip.
        let left_within = |at: Option<Instant>, queue: Duration| {
            at.zip(min_rtt)
                .is_some_and(|(at, rtt)| now < at + rtt + queue)
        };
        // Whether the latest copy of segment `i` (which left at `copy` when known: its last
        // resend, or the tail's first copy) may still be queued, so the receiver asked before
        // it could arrive: by time, on any link, a copy that left within the round trip plus
        // a long queue seen; by place, a copy whose place in the sender's bytes has not
        // drained yet at the rate the frame's first NACK showed in a clean run (`drain`).
        let queue_seen = self.queue_seen;
        let still_queued = |f: &OutFrame, i: u16, copy: Option<Instant>| {
            let by_time = queue_seen >= QUEUE_HOLDS_COPIES && left_within(copy, queue_seen);
            let by_place =
                f.drain
                    .zip(f.first_tx)
                    .zip(min_rtt)
                    .is_some_and(|((rate, first), rtt)| {
                        let wait = Duration::from_secs_f64((f.place(i) as f64 / rate).min(10.0));
                        now < first + rtt + wait
                    });
            by_time || by_place
        };
        // A frame paced out slowly (a low target) leaves its tail long after its head, and
        // the receiver's stall timer may ask for the tail before it could have arrived: a
        // tail that left less than the minimum round trip ago is in flight, not known lost.
        // Such a NACK does not void the frame's round-trip sample (a repair it brings voids it
        // only if it left in time to bring the ACK, see `sure_rtt`), or a sender at a low
        // rate, every frame asked for this way, would get no sample and stay at its floor.
        // It still brings a resend: on a lossy link the early repair of a lost tail is what
        // keeps frames within their deadline (skipping it left 27 of the 150 lossy soak links
        // below 99.5% instead of 20).
        let tail_in_flight = left_within(f.data_sent_at, Duration::ZERO);
        let in_flight = |i: u16| i == tail && tail_in_flight;
        if nack.missing.iter().any(|&i| !in_flight(i)) {
            f.loss_reported = true;
        }
        f.unheard_bytes = 0;
        // A clean sample only when the frame's last segment arrived (what made the receiver
        // ask): a NACK its timer sent later would read as a queue.
        let tail_seen = !nack.missing.contains(&tail);
        if let (true, true, Some(crossed), Some(rc)) =
            (first_nack, tail_seen, f.crossed_at, self.rate.as_mut())
        {
            rc.on_rtt(now, now - crossed, false);
        }
        let sent = usize::from(f.count - f.unsent);
        for i in nack.missing {
            let i_us = usize::from(i);
            // A segment never sent yet is still on its way in the fresh queue; one already
            // queued (named earlier in this or another NACK, or probed) goes out once.
            if i_us >= sent || f.queued[i_us] {
                self.stats.nack_indices_ignored += 1;
                continue;
            }
            if f.resent_at[i_us].is_some_and(|t| now < t + interval) {
                self.stats.nack_resends_limited += 1;
                continue;
            }
            // The tail's first copy is the last data segment to leave; earlier segments'
            // first copies are not tracked (a hole is known lost: a later one came).
            let last_copy = f.resent_at[i_us].or(f.data_sent_at.filter(|_| i == tail));
            if still_queued(f, i, last_copy) {
                self.stats.nack_resends_limited += 1;
                continue;
            }
            let full = i + 1 < f.count || f.data.len() % f.segment_size == 0;
            if full && usize::from(f.parity_next) < f.parity.len() {
                // A spare parity segment: as many bytes as the named one, and it repairs
                // whichever segment is missing when it arrives.
                f.resent_at[i_us] = Some(now);
                f.resends[i_us] = f.resends[i_us].saturating_add(1);
                let index = f.parity_next;
                f.parity_next += 1;
                self.resend.push_back((
                    nack.frame,
                    Shard::Parity {
                        index,
                        repair: true,
                    },
                ));
            } else {
                f.queued[i_us] = true;
                self.resend.push_back((nack.frame, Shard::Data(i)));
            }
        }
    }

    fn pop_next(&mut self, now: Instant) -> Option<(u32, Shard, bool)> {
        // Drop what is no longer in flight from the front of the fresh queue.
        while self
            .fresh
            .front()
            .is_some_and(|(f, _)| !self.frames.contains_key(f))
        {
            self.fresh.pop_front();
        }
        let fresh_ready = self.fresh_ready();
        if let Some(rate) = self.rate.as_ref().map(|rc| rc.target() * PACING_GAIN) {
            // Repairs within their share while a new frame waits.
            let dt = (now - self.repair_credit_at).as_secs_f64();
            self.repair_credit = (self.repair_credit + dt * rate * REPAIR_SHARE)
                .min(self.cfg.pacing_burst.max(MAX_DATAGRAM_BURST) as f64);
            self.repair_credit_at = now;
            if self.repair_credit < 0.0 {
                if fresh_ready {
                    let (frame, shard) = self.fresh.pop_front()?;
                    return Some((frame, shard, false));
                }
                if !self.window_open() {
                    // A queue is building: repairs wait for their share too.
                    return None;
                }
            }
        }
        while let Some((frame, shard)) = self.resend.pop_front() {
            if let Some(f) = self.frames.get_mut(&frame) {
                if let Shard::Data(i) = shard {
                    f.queued[usize::from(i)] = false;
                }
                return Some((frame, shard, true));
            }
        }
        if !fresh_ready {
            return None;
        }
        let (frame, shard) = self.fresh.pop_front()?;
        Some((frame, shard, false))
    }

    /// The probe timeout: `srtt + 4 x rttvar + 2 ms` within 10 ms and `probe_timeout`.
    fn probe_timeout(&self) -> Duration {
        match self.rtt.srtt() {
            Some(srtt) => (srtt + self.rtt.rttvar() * 4 + Duration::from_millis(2)).clamp(
                Duration::from_millis(10),
                self.cfg.probe_timeout.max(Duration::from_millis(10)),
            ),
            None => self.cfg.probe_timeout,
        }
    }
}

impl Endpoint for Sender {
    fn handle_datagram(&mut self, now: Instant, _from: SocketAddr, data: &[u8]) {
        match wire::decode(data) {
            Ok(Message::FrameAck(a)) if a.session == self.cfg.session => self.on_ack(now, a),
            Ok(Message::Nack(n)) if n.session == self.cfg.session => {
                self.last_feedback = Some(now);
                self.on_nack(now, n);
                self.report_target();
            }
            Ok(_) => self.stats.datagrams_foreign += 1,
            Err(wire::WireError::BadChecksum) => self.stats.datagrams_damaged += 1,
            Err(e) => {
                self.stats.datagrams_malformed += 1;
                tracing::debug!(error = %e, "sender dropped a malformed datagram");
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let heard = self.heard_with_no_queue();
        self.abandoned.retain(|a| a.forget_at(heard) > now);
        if let Some(t) = self.overdue_since() {
            let bound = self.silence_bound(now);
            if let Some(rc) = self.rate.as_mut() {
                rc.on_overdue(now, t, bound);
            }
            self.report_target();
        }
        let expired: Vec<u32> = self
            .frames
            .iter()
            .filter(|(_, f)| f.deadline <= now && !mutants::active(Mutant::NoDeadlineDrop))
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.give_up(id, DropReason::Deadline);
        }
        // Under rate control a probe waits while feedback keeps coming: the frame is queued
        // behind frames still being acknowledged (a probe now would only add to the queue),
        // and if its tail is lost, the ACK of a newer frame says so (`tail_lost`).
        // Feedback counts when it came within the last probe timeout.
        let probe_timeout = self.probe_timeout();
        let heard = self
            .last_feedback
            .filter(|&t| self.rate.is_some() && t + probe_timeout > now);
        let rearm = now + probe_timeout;
        let lossy = self.recent_losses != 0;
        // In a clean run a multi-segment tail is probed at most once (see [`CLEAN_RUN`]).
        let clean = self.clean_run();
        for (&id, f) in self.frames.iter_mut() {
            if f.probe_at.is_some_and(|at| at <= now) {
                if !f.tail_lost && heard.is_some_and(|t| t > f.last_tx) {
                    f.probe_at = Some(rearm);
                    continue;
                }
                f.probe_at = None;
                let shown_lost = std::mem::take(&mut f.tail_lost);
                // A whole probe timeout of silence past the queue seen, on a link that loses
                // segments: what the frame sent is taken for lost (as TCP's RTO empties the
                // flight), so it no longer holds the window shut while the probes back off.
                // On a link that has lost nothing the silence is a queue (capacity fell) and
                // the bytes stay counted.
                if lossy {
                    f.unheard_bytes = 0;
                }
                let last = f.count - 1;
                if clean && !shown_lost && last > 0 && f.resends[usize::from(last)] > 0 {
                    // Sent again already (probed, or resent on a NACK): the next copy waits for
                    // a newer frame's ACK to show the tail lost (`tail_lost`, which pulls the
                    // probe in) or for the receiver to name it; at the deadline the frame is
                    // given up before this runs.
                    f.probe_at = Some(f.deadline);
                    continue;
                }
                if !f.queued[usize::from(last)] {
                    f.queued[usize::from(last)] = true;
                    self.resend.push_back((id, Shard::Data(last)));
                    self.stats.tail_probes += 1;
                }
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        // What the last datagram handed out was, only while it is the last one (a caller that
        // sends a datagram of another sender next must not read it again).
        self.crossing_ended = None;
        self.resent_again = false;
        if self.pacing_rate().is_some() && now < self.pace_at {
            return None;
        }
        let (frame, shard, resend) = self.pop_next(now)?;
        let probe_timeout = self.probe_timeout();
        let f = self.frames.get_mut(&frame)?;
        let first_crossing = match shard {
            Shard::Data(_) => !resend,
            Shard::Parity { repair, .. } => !repair,
        };
        buf.clear();
        let payload = match shard {
            Shard::Data(index) => {
                let offset = usize::from(index) * f.segment_size;
                let end = (offset + f.segment_size).min(f.data.len());
                Segment {
                    session: self.cfg.session,
                    frame,
                    index,
                    count: f.count,
                    offset: offset as u32,
                    frame_len: f.data.len() as u32,
                    payload: &f.data[offset..end],
                    repair: resend,
                }
                .encode(buf);
                if resend {
                    f.resent_at[usize::from(index)] = Some(now);
                    f.resends[usize::from(index)] = f.resends[usize::from(index)].saturating_add(1);
                    self.resent_again = f.resends[usize::from(index)] >= 2;
                    f.resent += 1;
                    f.first_repair_at.get_or_insert(now);
                    self.stats.segments_resent += 1;
                    self.stats.repair_bytes += (end - offset) as u64;
                } else {
                    f.unsent -= 1;
                    if f.unsent == 0 {
                        f.data_sent_at = Some(now);
                    }
                    self.stats.data_bytes += (end - offset) as u64;
                }
                end - offset
            }
            Shard::Parity { index, repair } => {
                let shard = f.parity.get(usize::from(index))?;
                Parity {
                    session: self.cfg.session,
                    frame,
                    index,
                    first_count: f.parity_first,
                    count: f.count,
                    frame_len: f.data.len() as u32,
                    repair,
                    payload: shard,
                }
                .encode(buf);
                if repair {
                    f.resent += 1;
                    f.first_repair_at.get_or_insert(now);
                    self.stats.parity_repairs += 1;
                } else {
                    f.parity_unsent -= 1;
                    self.stats.parity_sent += 1;
                }
                self.stats.repair_bytes += shard.len() as u64;
                shard.len()
            }
        };
        f.last_tx = now;
        let first_datagram = f.first_tx.is_none();
        if first_datagram {
            f.first_tx = Some(now);
            f.sent_before = self.wire_sent;
        }
        let wire = (buf.len() + UDP_IP_OVERHEAD) as u64;
        self.wire_sent += wire;
        if let Shard::Data(index) = shard {
            f.copy_wire[usize::from(index)] = self.wire_sent;
        }
        f.wire_bytes += wire;
        f.unheard_bytes += wire;
        let all_sent = f.all_sent();
        // The older frames' bytes in flight or given up: what this datagram queues behind.
        // Only rate control reads them, for a frame's first datagram (`ahead_at_first`) and
        // its last (the probe's wait), so the frames are walked for those two alone, and never
        // by the seed's sender.
        let ahead = if self.rate.is_some() && (first_datagram || all_sent) {
            self.frames
                .range(..frame)
                .map(|(_, f)| f.wire_bytes)
                .sum::<u64>()
                + self.abandoned_bytes()
        } else {
            0
        };
        let queued_ahead = self.rate.as_ref().map_or(Duration::ZERO, |rc| {
            Duration::from_secs_f64((ahead as f64 / rc.target()).min(10.0))
        });
        let probe_timeout = probe_timeout + queued_ahead + self.queue_seen;
        let f = self.frames.get_mut(&frame)?;
        if first_datagram {
            f.ahead_at_first = ahead;
        }
        if resend && self.rate.is_some() {
            self.repair_credit = (self.repair_credit - (buf.len() + UDP_IP_OVERHEAD) as f64)
                .max(-(MAX_DATAGRAM_BURST as f64));
        }
        if all_sent {
            // Under rate control each probe of the same tail waits twice as long as the last
            // (RTO's backoff): in a silence, probes every round trip would fill the queue
            // that made the silence.
            let last = usize::from(f.count - 1);
            let backoff = if self.rate.is_some() {
                1u32 << f.resends[last].min(4)
            } else {
                1
            };
            f.probe_at = Some(now + probe_timeout * backoff);
            if f.crossed_at.is_none() {
                f.crossed_at = Some(now);
                f.sent_by_crossing = self.wire_sent;
            }
            if first_crossing {
                let last = u32::from(f.count) + u32::from(f.parity_first);
                self.crossing_ended = Some((frame, last));
            }
        }
        self.stats.segments_sent += 1;
        self.count_sent(now, buf.len(), payload, resend);
        Some(self.cfg.peer)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let pacing = (self.pacing_rate().is_some() && self.has_queued()).then(|| {
            self.pace_at
                .max(self.repairs_held_until().unwrap_or(self.pace_at))
        });
        let overdue = self
            .rate
            .as_ref()
            .zip(self.overdue_since())
            .map(|(rc, t)| rc.overdue_at(t));
        let heard = self.heard_with_no_queue();
        let forget = self.abandoned.iter().map(|a| a.forget_at(heard)).min();
        [self.next_deadline(), pacing, overdue, forget]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The round trip from `data_sent` to an ACK at `now`, unless a repair that left at
/// `first_repair` could have brought the ACK (it left at least `min_rtt` before `now`; with
/// no minimum known yet, any repair could have).
fn sure_rtt(
    now: Instant,
    data_sent: Instant,
    first_repair: Option<Instant>,
    min_rtt: Option<Duration>,
) -> Option<Duration> {
    let from_first_crossing = match (first_repair, min_rtt) {
        (None, _) => true,
        (Some(at), Some(rtt)) => at + rtt > now,
        (Some(_), None) => false,
    };
    from_first_crossing.then(|| now - data_sent)
}

/// A frame's first crossing, in sending order: its data segments, then its parity segments.
fn first_crossing(frame: u32, count: u16, parity: u16) -> impl Iterator<Item = (u32, Shard)> {
    (0..count)
        .map(move |i| (frame, Shard::Data(i)))
        .chain((0..parity).map(move |index| {
            (
                frame,
                Shard::Parity {
                    index,
                    repair: false,
                },
            )
        }))
}
