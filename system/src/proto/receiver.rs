//! The receiving half of the segment protocol (the tier-2 server's side).
//!
//! [`Receiver`] reassembles frames from segments for many sessions at once. A segment whose
//! CRC-32C fails is dropped and so counts as missing. A NACK names exactly the segments still
//! missing: holes below the highest index seen go out after `nack_delay`; when a frame stops
//! making progress for `nack_interval`, every missing segment (the tail included) is named, and
//! that repeats while the frame is incomplete. No segment is named twice within
//! `nack_interval`. A complete frame is delivered at once, whatever older frames are still
//! missing (later frames never wait behind an old one), and acknowledged with the segment size
//! the session's [`SizePolicy`](super::policy::SizePolicy) picks for the next frame. A frame
//! not complete `frame_timeout` after its first segment is reported dropped.
//!
//! Memory is bounded: at most `max_sessions` sessions, `max_frames_per_session` frames in
//! reassembly per session (a new frame evicts the oldest, reported dropped), frames of at most
//! `max_frame_len` bytes and `max_bytes` of reassembly buffers in all.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::finished::{Finished, FinishedWindow};
use super::policy::{FrameOutcome, PolicyConfig, SizePolicy};
use super::wire::{self, FrameAck, Message, Nack, Segment, MAX_NACK_INDICES};
use super::DropReason;
use crate::driver::Endpoint;
use crate::lookup::Lookup;
use crate::outbox::Outbox;
use crate::time::{period, Instant};

/// How a [`Receiver`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    /// Wait after a hole appears before NACKing it (lets a burst of holes share one NACK).
    pub nack_delay: Duration,
    /// Longest repeat period of NACKs, and of the silence after which the tail is NACKed too;
    /// used until the session has measured its round-trip time.
    pub nack_interval: Duration,
    /// Shortest repeat period. In between, a session repeats NACKs every `2 x srtt + 2 ms`,
    /// srtt being the smoothed time from a NACK to the arrival of a segment it named.
    pub nack_interval_min: Duration,
    /// A frame not complete this long after its first segment is dropped.
    pub frame_timeout: Duration,
    /// A session with no datagram for this long is forgotten.
    pub session_idle_timeout: Duration,
    pub max_sessions: usize,
    pub max_frames_per_session: usize,
    pub max_frame_len: usize,
    pub max_bytes: usize,
    /// Finished frame ids remembered per session (a window of the latest ids, rounded up to a
    /// multiple of 64), to re-ACK duplicates and ignore stale ones.
    pub finished_memory: usize,
    /// Segment size policy, one instance per session.
    pub policy: PolicyConfig,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            nack_delay: Duration::from_millis(2),
            nack_interval: Duration::from_millis(50),
            nack_interval_min: Duration::from_millis(5),
            frame_timeout: Duration::from_secs(1),
            session_idle_timeout: Duration::from_secs(30),
            max_sessions: 4096,
            max_frames_per_session: 32,
            max_frame_len: 4 << 20,
            max_bytes: 256 << 20,
            finished_memory: 1024,
            policy: PolicyConfig::default(),
        }
    }
}

/// Something the application (storage, forwarding) should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverEvent {
    SessionOpened {
        session: u32,
        peer: SocketAddr,
    },
    /// A whole frame, checked segment by segment.
    FrameDelivered {
        session: u32,
        frame: u32,
        data: Vec<u8>,
        segment_size: usize,
        segments: u16,
        /// Segments that had to be asked for again.
        failed: u16,
        next_segment_size: usize,
        first_segment_at: Instant,
    },
    FrameDropped {
        session: u32,
        frame: u32,
        reason: DropReason,
        received: u16,
        segments: u16,
    },
    SessionClosed {
        session: u32,
    },
}

/// Counters, for reports and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    pub datagrams: u64,
    pub datagrams_malformed: u64,
    pub datagrams_damaged: u64,
    pub datagrams_unexpected: u64,
    pub segments_received: u64,
    pub segments_duplicate: u64,
    pub segments_stale: u64,
    pub segments_inconsistent: u64,
    pub frames_delivered: u64,
    pub frames_dropped: u64,
    pub frames_refused: u64,
    pub sessions_refused: u64,
    pub nacks_sent: u64,
    pub segments_nacked: u64,
    pub acks_sent: u64,
}

#[derive(Debug)]
struct InFrame {
    data: Vec<u8>,
    count: u16,
    /// Payload bytes per segment (all but the last), learned from the first segment seen.
    segment_size: usize,
    have: Vec<bool>,
    received: u16,
    max_seen: u16,
    /// When each segment was last named in a NACK.
    nacked_at: Vec<Option<Instant>>,
    first_seen: Instant,
    deadline: Instant,
    last_progress: Instant,
    last_nack: Option<Instant>,
    hole_nack_at: Option<Instant>,
    /// The timer entry currently armed for this frame.
    armed: Option<Instant>,
}

/// Bytes a frame in reassembly holds per segment besides its data (the `have` flag and the
/// time it was last NACKed).
const PER_SEGMENT_BYTES: usize = 1 + std::mem::size_of::<Option<Instant>>();

/// What a frame of `len` bytes in `count` segments holds in memory while in reassembly.
fn footprint(len: usize, count: usize) -> usize {
    len + count * PER_SEGMENT_BYTES
}

impl InFrame {
    fn footprint(&self) -> usize {
        footprint(self.data.len(), self.have.len())
    }

    fn failed(&self) -> usize {
        self.nacked_at.iter().filter(|t| t.is_some()).count()
    }

    fn repeat_at(&self, interval: Duration) -> Instant {
        self.last_progress
            .max(self.last_nack.unwrap_or(Instant::ZERO))
            + interval
    }

    fn wake_at(&self, interval: Duration) -> Instant {
        let mut at = self.deadline.min(self.repeat_at(interval));
        if let Some(h) = self.hole_nack_at {
            at = at.min(h);
        }
        at
    }
}

struct Session {
    peer: SocketAddr,
    policy: Box<dyn SizePolicy>,
    frames: BTreeMap<u32, InFrame>,
    /// Frames finished lately; ids below its floor are older than anything remembered.
    finished: FinishedWindow,
    /// Smoothed NACK-to-retransmission time.
    srtt: Option<Duration>,
    last_activity: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Frame(u32),
    Idle,
}

/// The receiving state machine. See the module docs.
pub struct Receiver {
    cfg: ReceiverConfig,
    /// Looked up on every segment; never iterated but to count.
    sessions: Lookup<u32, Session>,
    timers: BTreeSet<(Instant, u32, Timer)>,
    bytes_in_use: usize,
    outbox: Outbox,
    events: VecDeque<ReceiverEvent>,
    stats: ReceiverStats,
}

impl Receiver {
    pub fn new(mut cfg: ReceiverConfig) -> Self {
        cfg.nack_interval_min = period(cfg.nack_interval_min);
        cfg.nack_interval = cfg.nack_interval.max(cfg.nack_interval_min);
        cfg.frame_timeout = period(cfg.frame_timeout);
        cfg.session_idle_timeout = period(cfg.session_idle_timeout);
        Receiver {
            cfg,
            sessions: Lookup::default(),
            timers: BTreeSet::new(),
            bytes_in_use: 0,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
    }

    pub fn config(&self) -> &ReceiverConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Sessions currently known.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Frames in reassembly across all sessions.
    pub fn frames_in_reassembly(&self) -> usize {
        self.sessions.values().map(|s| s.frames.len()).sum()
    }

    /// Bytes held in reassembly: frame data and per-segment bookkeeping.
    pub fn bytes_in_use(&self) -> usize {
        self.bytes_in_use
    }

    /// The segment size the session's policy currently asks for.
    /// Where session `session`'s sender was last heard from, while the session is open.
    pub fn peer(&self, session: u32) -> Option<SocketAddr> {
        self.sessions.get(&session).map(|s| s.peer)
    }

    pub fn segment_size(&self, session: u32) -> Option<usize> {
        self.sessions.get(&session).map(|s| s.policy.current())
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    /// A session's NACK repeat period: twice its measured round trip, within the limits.
    fn nack_interval(cfg: &ReceiverConfig, srtt: Option<Duration>) -> Duration {
        match srtt {
            Some(srtt) => (srtt * 2 + Duration::from_millis(2)).clamp(
                cfg.nack_interval_min,
                cfg.nack_interval.max(cfg.nack_interval_min),
            ),
            None => cfg.nack_interval,
        }
    }

    /// Arms frame `frame`'s timer for its next wake, unless it is already armed as early.
    fn arm(
        timers: &mut BTreeSet<(Instant, u32, Timer)>,
        session: u32,
        frame: u32,
        f: &mut InFrame,
        interval: Duration,
    ) {
        let at = f.wake_at(interval);
        if f.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        if let Some(old) = f.armed.replace(at) {
            timers.remove(&(old, session, Timer::Frame(frame)));
        }
        timers.insert((at, session, Timer::Frame(frame)));
    }

    fn send_ack(&mut self, session: u32, frame: u32) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        let ack = FrameAck {
            session,
            frame,
            next_segment_size: u16::try_from(s.policy.current()).unwrap_or(u16::MAX),
        };
        let peer = s.peer;
        self.outbox.send(peer, &Message::FrameAck(ack));
        self.stats.acks_sent += 1;
    }

    /// Records a frame as finished (remembered over a window of recent ids).
    fn finish(&mut self, session: u32, frame: u32, how: Finished) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.finished.insert(frame, how);
        }
    }

    /// Takes a frame out of reassembly (disarming its timer, freeing its bytes) and tells the
    /// session's policy how it went. Returns the frame, its failed segments and the next size.
    fn take_frame(
        &mut self,
        session: u32,
        frame: u32,
        delivered: bool,
    ) -> Option<(InFrame, usize, usize)> {
        let s = self.sessions.get_mut(&session)?;
        let f = s.frames.remove(&frame)?;
        if let Some(at) = f.armed {
            self.timers.remove(&(at, session, Timer::Frame(frame)));
        }
        self.bytes_in_use -= f.footprint();
        let failed = f.failed();
        let next = s.policy.observe(&FrameOutcome {
            segment_size: f.segment_size,
            frame_len: f.data.len(),
            segments: usize::from(f.count),
            failed,
            delivered,
        });
        Some((f, failed, next))
    }

    /// Removes a frame from reassembly and reports it dropped.
    fn drop_frame(&mut self, session: u32, frame: u32, reason: DropReason) {
        let Some((f, _, _)) = self.take_frame(session, frame, false) else {
            return;
        };
        self.stats.frames_dropped += 1;
        self.events.push_back(ReceiverEvent::FrameDropped {
            session,
            frame,
            reason,
            received: f.received,
            segments: f.count,
        });
        self.finish(session, frame, Finished::Dropped);
    }

    /// Notes a segment from `from` on its session, opened if it is new and there is room;
    /// false when there is none.
    fn session_for(&mut self, now: Instant, from: SocketAddr, session: u32) -> bool {
        let full = self.sessions.len() >= self.cfg.max_sessions;
        match self.sessions.entry(session) {
            Entry::Occupied(e) => {
                let s = e.into_mut();
                s.peer = from;
                s.last_activity = now;
                true
            }
            Entry::Vacant(_) if full => {
                self.stats.sessions_refused += 1;
                false
            }
            Entry::Vacant(e) => {
                self.timers
                    .insert((now + self.cfg.session_idle_timeout, session, Timer::Idle));
                self.events.push_back(ReceiverEvent::SessionOpened {
                    session,
                    peer: from,
                });
                e.insert(Session {
                    peer: from,
                    policy: self.cfg.policy.build(),
                    frames: BTreeMap::new(),
                    finished: FinishedWindow::new(self.cfg.finished_memory),
                    srtt: None,
                    last_activity: now,
                });
                true
            }
        }
    }

    /// Makes room for and starts reassembly of a new frame; false when it cannot be taken.
    fn open_frame(&mut self, now: Instant, seg: &Segment<'_>) -> bool {
        let len = seg.frame_len as usize;
        if len > self.cfg.max_frame_len {
            self.stats.frames_refused += 1;
            return false;
        }
        // Each segment but the last carries `size` bytes; learn it from whichever arrived.
        let size = if seg.index + 1 < seg.count {
            seg.payload.len()
        } else if seg.index == 0 {
            len
        } else {
            seg.offset as usize / usize::from(seg.index)
        };
        if size == 0 || len.div_ceil(size) != usize::from(seg.count) {
            self.stats.segments_inconsistent += 1;
            return false;
        }
        loop {
            let Some(s) = self.sessions.get(&seg.session) else {
                return false;
            };
            let over_frames = s.frames.len() >= self.cfg.max_frames_per_session.max(1);
            let over_bytes =
                self.bytes_in_use + footprint(len, usize::from(seg.count)) > self.cfg.max_bytes;
            if !over_frames && !over_bytes {
                break;
            }
            match s.frames.keys().next().copied() {
                Some(oldest) => self.drop_frame(seg.session, oldest, DropReason::Evicted),
                None => {
                    self.stats.frames_refused += 1;
                    return false;
                }
            }
        }
        let deadline = now + self.cfg.frame_timeout;
        let count = usize::from(seg.count);
        let Some(s) = self.sessions.get_mut(&seg.session) else {
            return false;
        };
        s.frames.insert(
            seg.frame,
            InFrame {
                data: vec![0; len],
                count: seg.count,
                segment_size: size,
                have: vec![false; count],
                received: 0,
                max_seen: 0,
                nacked_at: vec![None; count],
                first_seen: now,
                deadline,
                last_progress: now,
                last_nack: None,
                hole_nack_at: None,
                armed: None,
            },
        );
        self.bytes_in_use += footprint(len, count);
        true
    }

    /// A segment: two session lookups on the common path (a segment of a frame already in
    /// reassembly); a new frame, a finished one and a completed one look it up again.
    fn on_segment(&mut self, now: Instant, from: SocketAddr, seg: Segment<'_>) {
        if !self.session_for(now, from, seg.session) {
            return;
        }
        let Some(s) = self.sessions.get_mut(&seg.session) else {
            return;
        };
        let in_reassembly = s.frames.contains_key(&seg.frame);
        match s.finished.get(seg.frame) {
            Some(Finished::Delivered) => {
                // Our ACK may have been lost: the sender is probing. Say it again.
                self.stats.segments_duplicate += 1;
                self.send_ack(seg.session, seg.frame);
                return;
            }
            Some(Finished::Dropped) => {
                self.stats.segments_stale += 1;
                return;
            }
            // Forgotten: older than the window (unless it is still being reassembled).
            None if seg.frame < s.finished.floor() && !in_reassembly => {
                self.stats.segments_stale += 1;
                return;
            }
            None => {}
        }
        let s = if in_reassembly {
            s
        } else {
            if !self.open_frame(now, &seg) {
                return;
            }
            match self.sessions.get_mut(&seg.session) {
                Some(s) => s,
                None => return,
            }
        };
        let Some(f) = s.frames.get_mut(&seg.frame) else {
            return;
        };
        let index = usize::from(seg.index);
        let expect_len = if index + 1 < usize::from(f.count) {
            f.segment_size
        } else {
            f.data.len() - f.segment_size * index.min(usize::from(f.count) - 1)
        };
        let consistent = seg.count == f.count
            && seg.frame_len as usize == f.data.len()
            && seg.offset as usize == index * f.segment_size
            && seg.payload.len() == expect_len;
        if !consistent {
            self.stats.segments_inconsistent += 1;
            return;
        }
        if f.have[index] {
            self.stats.segments_duplicate += 1;
            return;
        }
        let offset = seg.offset as usize;
        f.data[offset..offset + seg.payload.len()].copy_from_slice(seg.payload);
        f.have[index] = true;
        f.received += 1;
        f.last_progress = now;
        self.stats.segments_received += 1;
        if let Some(asked) = f.nacked_at[index] {
            // A segment we asked for: one round-trip sample.
            let sample = now - asked;
            s.srtt = Some(match s.srtt {
                Some(srtt) => (srtt * 7 + sample) / 8,
                None => sample,
            });
        }
        if f.received == f.count {
            self.complete(seg.session, seg.frame);
            return;
        }
        if seg.index > f.max_seen || f.received == 1 {
            // Anything skipped between the old highest index and this one is a new hole.
            let new_hole = (usize::from(f.max_seen)..index).any(|i| !f.have[i]);
            f.max_seen = f.max_seen.max(seg.index);
            if new_hole && f.hole_nack_at.is_none() {
                f.hole_nack_at = Some(now + self.cfg.nack_delay);
            }
        }
        let interval = Self::nack_interval(&self.cfg, s.srtt);
        Self::arm(&mut self.timers, seg.session, seg.frame, f, interval);
    }

    fn complete(&mut self, session: u32, frame: u32) {
        let Some((f, failed, next)) = self.take_frame(session, frame, true) else {
            return;
        };
        self.stats.frames_delivered += 1;
        self.events.push_back(ReceiverEvent::FrameDelivered {
            session,
            frame,
            segment_size: f.segment_size,
            segments: f.count,
            failed: failed as u16,
            next_segment_size: next,
            first_segment_at: f.first_seen,
            data: f.data,
        });
        self.finish(session, frame, Finished::Delivered);
        self.send_ack(session, frame);
    }

    /// Sends the NACK that is due for a frame, if any, and handles its deadline.
    fn frame_timer(&mut self, now: Instant, session: u32, frame: u32) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let interval = Self::nack_interval(&self.cfg, s.srtt);
        let peer = s.peer;
        let Some(f) = s.frames.get_mut(&frame) else {
            return;
        };
        f.armed = None;
        if f.deadline <= now {
            self.drop_frame(session, frame, DropReason::Deadline);
            return;
        }
        let holes_due = f.hole_nack_at.is_some_and(|t| t <= now);
        let tail_due = f.repeat_at(interval) <= now;
        if holes_due || tail_due {
            let limit = if tail_due {
                usize::from(f.count)
            } else {
                usize::from(f.max_seen)
            };
            let mut missing = Vec::new();
            for i in 0..limit {
                let eligible = f.nacked_at[i].is_none_or(|t| t + interval <= now);
                if !f.have[i] && eligible {
                    f.nacked_at[i] = Some(now);
                    missing.push(i as u16);
                }
            }
            f.hole_nack_at = None;
            if tail_due || !missing.is_empty() {
                f.last_nack = Some(now);
            }
            for chunk in missing.chunks(MAX_NACK_INDICES) {
                self.stats.nacks_sent += 1;
                self.stats.segments_nacked += chunk.len() as u64;
                self.outbox.send(
                    peer,
                    &Message::Nack(Nack {
                        session,
                        frame,
                        missing: chunk.to_vec(),
                    }),
                );
            }
        }
        Self::arm(&mut self.timers, session, frame, f, interval);
    }

    fn idle_timer(&mut self, now: Instant, session: u32) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        let expires = s.last_activity + self.cfg.session_idle_timeout;
        if expires > now {
            self.timers.insert((expires, session, Timer::Idle));
            return;
        }
        let frames: Vec<u32> = s.frames.keys().copied().collect();
        for frame in frames {
            self.drop_frame(session, frame, DropReason::SessionClosed);
        }
        self.sessions.remove(&session);
        self.events
            .push_back(ReceiverEvent::SessionClosed { session });
    }
}

impl Endpoint for Receiver {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.datagrams += 1;
        match wire::decode(data) {
            Ok(Message::Segment(seg)) => self.on_segment(now, from, seg),
            Ok(_) => self.stats.datagrams_unexpected += 1,
            Err(wire::WireError::BadChecksum) => self.stats.datagrams_damaged += 1,
            Err(e) => {
                self.stats.datagrams_malformed += 1;
                tracing::debug!(error = %e, %from, "receiver dropped a malformed datagram");
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, session, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Frame(frame) => self.frame_timer(now, session, frame),
                Timer::Idle => self.idle_timer(now, session),
            }
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.outbox.poll_transmit(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _, _)| at)
    }
}
