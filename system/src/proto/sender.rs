//! The sending half of the segment protocol (the mobile client's side).
//!
//! [`Sender`] cuts each frame into segments of the current size, paces them out at a configured
//! rate, resends exactly the segments a NACK names (with their original boundaries), gives a
//! frame up at its deadline, and takes the segment size for the next frame from each frame ACK.
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
//! ACK), within 10 ms and `probe_timeout`.
//!
//! NACK limits: a NACK is a request from the network, so it never makes the sender send more
//! than it names (a spare parity segment answers a full-size segment only, byte for byte). Only segments of a frame still in flight that were already sent once are
//! resent, each once per NACK (repeats in the list, out-of-range indices and unknown frames
//! are counted and ignored), so the bytes resent never exceed the named segments' sizes. A
//! segment is resent on NACK at most once per [`SenderConfig::nack_resend_interval`] (or half
//! the smoothed round trip, if longer, up to the probe timeout): NACKs inside that window are
//! counted as limited and ignored. The receiver repeats its NACKs no faster than its own
//! `nack_interval_min`, so an honest receiver loses at most one repeat to the limit.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::fec::Coder;
use super::policy::DEFAULT_SEGMENT_SIZE;
use super::wire::{
    self, Message, Parity, Segment, MAX_SEGMENT_PAYLOAD, MAX_SHARDS, UDP_IP_OVERHEAD,
};
use super::DropReason;
use crate::driver::Endpoint;
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
    },
    /// The frame was given up.
    FrameDropped { frame: u32, reason: DropReason },
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
    resent: u32,
    /// When to probe the tail, once everything was sent and nothing came back.
    probe_at: Option<Instant>,
    /// When the frame's last datagram left.
    last_tx: Instant,
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
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Parity segments per frame, as the last ACK asked.
    parity: usize,
    coder: Coder,
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
}

impl Sender {
    pub fn new(mut cfg: SenderConfig) -> Self {
        cfg.frame_deadline = period(cfg.frame_deadline);
        cfg.probe_timeout = period(cfg.probe_timeout);
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
            srtt: None,
            rttvar: Duration::ZERO,
            parity: 0,
            coder: Coder::default(),
            events: VecDeque::new(),
            stats: SenderStats::default(),
        }
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

    /// True when a segment (fresh or resent) is waiting to go out.
    pub fn has_queued(&self) -> bool {
        let live = |q: &VecDeque<(u32, Shard)>| q.iter().any(|(f, _)| self.frames.contains_key(f));
        live(&self.resend) || live(&self.fresh)
    }

    /// True when nothing is waiting to go out and the pacer would let a datagram leave at
    /// `now`: the sender leaves the link's budget unused at this moment.
    pub fn is_idle(&self, now: Instant) -> bool {
        !self.has_queued() && (self.cfg.pacing_rate.is_none() || now >= self.pace_at)
    }

    /// When the pacer lets the next datagram leave (`None`: unpaced).
    pub fn pace_ready_at(&self) -> Option<Instant> {
        self.cfg.pacing_rate.is_some().then_some(self.pace_at)
    }

    /// Counts a datagram of `len` bytes that left at `now` against the pacing budget (the
    /// sender's own, and datagrams another sender sends with the budget this one left over).
    pub fn charge(&mut self, now: Instant, len: usize) {
        if let Some(rate) = self.cfg.pacing_rate.filter(|&r| r > 0) {
            let per_byte = |bytes: usize| Duration::from_secs_f64(bytes as f64 / rate as f64);
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
        self.last_feedback = Some(now);
        self.fresh.clear();
        self.resend.clear();
        for (&id, f) in self.frames.iter_mut() {
            f.unsent = f.count;
            f.parity_unsent = f.parity_first;
            f.parity_next = f.parity_first;
            f.queued.iter_mut().for_each(|q| *q = false);
            f.resent_at.iter_mut().for_each(|t| *t = None);
            f.probe_at = None;
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
                resent: 0,
                probe_at: None,
                last_tx: now,
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
        if self.frames.remove(&frame).is_some() {
            self.stats.frames_dropped += 1;
            self.events
                .push_back(SenderEvent::FrameDropped { frame, reason });
        }
    }

    fn on_ack(&mut self, now: Instant, ack: wire::FrameAck) {
        self.stats.acks_received += 1;
        self.last_feedback = Some(now);
        if let Some(f) = self.frames.remove(&ack.frame) {
            if f.resent == 0 && f.unsent == 0 && f.parity_unsent == 0 {
                let sample = now - f.last_tx;
                match self.srtt {
                    Some(srtt) => {
                        self.rttvar = (self.rttvar * 3 + srtt.abs_diff(sample)) / 4;
                        self.srtt = Some((srtt * 7 + sample) / 8);
                    }
                    None => {
                        self.srtt = Some(sample);
                        self.rttvar = sample / 2;
                    }
                }
            }
            self.stats.frames_acked += 1;
            self.events.push_back(SenderEvent::FrameAcked {
                frame: ack.frame,
                latency: now - f.pushed_at,
                segments: f.count,
                resent: f.resent,
                bytes: f.data.len(),
            });
        }
        let newer = self
            .size_set_by
            .is_none_or(|by| ack.frame.wrapping_sub(by) < u32::MAX / 2);
        // A peer may ask for anything; a segment must still fit one UDP datagram.
        let next = usize::from(ack.next_segment_size).min(MAX_SEGMENT_PAYLOAD);
        if newer && next > 0 {
            self.size_set_by = Some(ack.frame);
            if next != self.segment_size {
                self.events.push_back(SenderEvent::SegmentSizeChanged {
                    from: self.segment_size,
                    to: next,
                });
                self.segment_size = next;
            }
            let parity = usize::from(ack.next_parity);
            if parity != self.parity {
                self.events.push_back(SenderEvent::ParityChanged {
                    from: self.parity,
                    to: parity,
                });
                self.parity = parity;
            }
        }
    }

    /// Shortest time between two NACK-driven resends of one segment.
    pub fn nack_resend_interval(&self) -> Duration {
        let floor = self.cfg.nack_resend_interval;
        match self.srtt {
            Some(srtt) => (srtt / 2).min(self.cfg.probe_timeout).max(floor),
            None => floor,
        }
    }

    fn on_nack(&mut self, now: Instant, nack: wire::Nack) {
        self.stats.nacks_received += 1;
        let interval = self.nack_resend_interval();
        let Some(f) = self.frames.get_mut(&nack.frame) else {
            self.stats.nacks_unknown_frame += 1;
            return;
        };
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
            let full = i + 1 < f.count || f.data.len() % f.segment_size == 0;
            if full && usize::from(f.parity_next) < f.parity.len() {
                // A spare parity segment: as many bytes as the named one, and it repairs
                // whichever segment is missing when it arrives.
                f.resent_at[i_us] = Some(now);
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

    fn pop_next(&mut self) -> Option<(u32, Shard, bool)> {
        while let Some((frame, shard)) = self.resend.pop_front() {
            if let Some(f) = self.frames.get_mut(&frame) {
                if let Shard::Data(i) = shard {
                    f.queued[usize::from(i)] = false;
                }
                return Some((frame, shard, true));
            }
        }
        while let Some((frame, shard)) = self.fresh.pop_front() {
            if self.frames.contains_key(&frame) {
                return Some((frame, shard, false));
            }
        }
        None
    }

    /// The probe timeout: `srtt + 4 x rttvar + 2 ms` within 10 ms and `probe_timeout`.
    fn probe_timeout(&self) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt + self.rttvar * 4 + Duration::from_millis(2)).clamp(
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
                self.on_nack(now, n)
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
        let expired: Vec<u32> = self
            .frames
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.give_up(id, DropReason::Deadline);
        }
        for (&id, f) in self.frames.iter_mut() {
            if f.probe_at.is_some_and(|at| at <= now) {
                f.probe_at = None;
                let last = f.count - 1;
                if !f.queued[usize::from(last)] {
                    f.queued[usize::from(last)] = true;
                    self.resend.push_back((id, Shard::Data(last)));
                    self.stats.tail_probes += 1;
                }
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if self.cfg.pacing_rate.is_some() && now < self.pace_at {
            return None;
        }
        let (frame, shard, resend) = self.pop_next()?;
        let probe_timeout = self.probe_timeout();
        let f = self.frames.get_mut(&frame)?;
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
                    f.resent += 1;
                    self.stats.segments_resent += 1;
                    self.stats.repair_bytes += (end - offset) as u64;
                } else {
                    f.unsent -= 1;
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
        if f.unsent == 0 && f.parity_unsent == 0 {
            f.probe_at = Some(now + probe_timeout);
        }
        self.stats.segments_sent += 1;
        self.stats.bytes_sent += buf.len() as u64;
        self.stats.header_bytes += (buf.len() - payload + UDP_IP_OVERHEAD) as u64;
        self.charge(now, buf.len());
        Some(self.cfg.peer)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let pacing = (self.cfg.pacing_rate.is_some()
            && !(self.fresh.is_empty() && self.resend.is_empty()))
        .then_some(self.pace_at);
        [self.next_deadline(), pacing].into_iter().flatten().min()
    }
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
