//! Nothing lost: a camera keeps every captured frame until storage has it, and backfills the
//! frames that missed their live deadline with the bandwidth live frames leave over.
//!
//! - **Two acknowledgements.** FRAME_ACK stays the transport's "frame complete" (it stops
//!   resends and sets the next segment size). `STORED` ([`wire::Stored`]) is sent by the
//!   tier-2 once its database has committed a frame; only that releases the frame from the
//!   client's [`FrameRing`].
//! - **Frame identity.** A frame is named by its client (the live session id, which is the
//!   client id) and its 64-bit capture sequence number. Each boot of a client numbers its
//!   frames on from a `boot_seq`: live frame id `n` (32 bits on the wire, from 0 in every
//!   boot) is frame `boot_seq + n`. The connect request carries `boot_seq` (inside the
//!   authenticated hello when the cluster has keys), so a tier-2 knows every live frame's
//!   identity; backfilled frames carry theirs in their envelope, and STORED names frames by
//!   it. A real client takes `boot_seq` above its ring's high water (the highest id it ever
//!   kept, persisted in the ring's log) and at least the Unix time in milliseconds: so ids
//!   never repeat across restarts and reconnects (the sender keeps its numbering), across a
//!   clock step (the ring's high water wins), or when the ring is lost (the clock wins, as
//!   long as the client captures fewer than 1,000 frames a second). Only both at once (ring
//!   lost and clock set back) can repeat an id; then storage refuses the different picture
//!   under the stored key and the tier-2 counts it (`frames_conflicting`) and answers STORED,
//!   since no retry could store it. Storage is idempotent per (client, frame), so a frame
//!   stored twice (a STORED lost, a backfill after a reconnect, a different tier-2) is one
//!   row. A tier-2 that sees a new `boot_seq` for a session it still holds (the client
//!   restarted within its memory) forgets the session's old numbering first, so the new
//!   boot's low ids are not taken for stale ones.
//! - **Backfill.** Frames in the ring whose live attempt is over (given up at the deadline or
//!   evicted, or acknowledged but not STORED within `stored_timeout`) are sent again on a
//!   second, low-priority session: id `client | BACKFILL_SESSION_BIT`, its own
//!   [`Sender`] with its own frame numbering (so the receiver's duplicate and staleness rules
//!   for the live session are untouched), each frame wrapped in a small envelope carrying its
//!   capture sequence number and capture time ([`encode_envelope`]). The tier-2 unwraps it and
//!   stores the frame under its original identity, counted as a backfill, not as a live
//!   delivery.
//! - **"Left over" bandwidth**, precisely: a backfill datagram leaves only when the live
//!   sender is idle ([`Sender::is_idle`]: no live segment, fresh or resend, is queued, and the
//!   live pacer would let a datagram leave now), and it is then charged to the live pacer
//!   ([`Sender::charge`]). So live and backfill together never exceed the pacing rate, and a
//!   live segment never waits behind a backfill one for longer than one datagram. A new
//!   backfill frame is taken from the ring only at such a moment, and at most
//!   `backfill_in_flight` are in flight.

use crate::mutants::{self, Mutant};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::ring::{FrameRing, RingFrame, RingStats};
use crate::machine::Endpoint;
use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::{Sender, SenderConfig, SenderEvent};
use crate::time::Instant;

/// Set in the session id of the backfill session of a client.
pub const BACKFILL_SESSION_BIT: u32 = 0x8000_0000;

/// Envelope header: capture sequence number and capture time.
pub const ENVELOPE_LEN: usize = 8 + 8;

/// The first `boot_seq` of a client whose ring holds `ring` and whose clock reads `unix_ms`:
/// above every frame the ring ever kept, and not below the clock (see the module docs).
pub fn boot_seq(ring: Option<&dyn FrameRing>, unix_ms: u64) -> u64 {
    let above_ring = ring
        .and_then(|r| r.index().high_water())
        .map_or(0, |h| h.saturating_add(1));
    above_ring.max(unix_ms)
}

/// The capture sequence number of live frame `frame` of a boot numbering from `boot_seq`.
pub fn seq_of(boot_seq: u64, frame: u32) -> u64 {
    boot_seq.saturating_add(u64::from(frame))
}

/// Wraps a backfilled frame: its capture sequence number and capture time, then its bytes.
pub fn encode_envelope(frame: u64, capture_us: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_LEN + data.len());
    out.put_u64(frame);
    out.put_u64(capture_us);
    out.put_bytes(data);
    out
}

/// Unwraps a backfilled frame: `(frame, capture_us, data)`, or `None` when too short.
pub fn decode_envelope(bytes: &[u8]) -> Option<(u64, u64, &[u8])> {
    let mut r = Reader::new(bytes);
    let frame = r.u64().ok()?;
    let capture_us = r.u64().ok()?;
    Some((frame, capture_us, r.rest()))
}

/// How a camera backfills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurableConfig {
    /// A frame acknowledged but not STORED this long after is taken for lost on its way to
    /// the database (the tier-2 died, the STORED was lost) and backfilled.
    pub stored_timeout: Duration,
    /// A backfilled frame not acknowledged this long after it was sent is given up (and
    /// backfilled again later).
    pub backfill_deadline: Duration,
    /// Backfill frames in flight at most.
    pub backfill_in_flight: usize,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            stored_timeout: Duration::from_secs(5),
            backfill_deadline: Duration::from_secs(5),
            backfill_in_flight: 2,
        }
    }
}

/// What the durability layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DurableReport {
    /// Frames the ring released on STORED.
    pub frames_stored: u64,
    /// Backfill frames sent (each attempt).
    pub backfill_sent: u64,
    /// Backfill frames the tier-2 acknowledged.
    pub backfill_acked: u64,
    /// Backfill attempts given up (deadline), to be tried again.
    pub backfill_given_up: u64,
    /// STORED messages received.
    pub stored_messages: u64,
    pub ring: RingStats,
}

/// Where a frame held in the ring is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// In the live sender.
    Live,
    /// Acknowledged; backfilled unless STORED comes before this.
    Acked(Instant),
    /// In the backfill sender under this transport id.
    Backfill(u32),
}

/// A frame released or dropped, for the camera's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableEvent {
    /// The ring dropped an unstored frame to make room.
    RingDropped { frame: u64 },
    /// A backfilled frame was acknowledged.
    /// A backfilled frame is complete at the tier-2; `wire_bytes` it took on the path
    /// (payload and every segment's headers, not counting repairs), and its round trip when
    /// that was a sure sample.
    BackfillAcked {
        frame: u64,
        wire_bytes: u64,
        rtt: Option<std::time::Duration>,
    },
}

/// The durability layer of one camera. See the [module docs](self).
pub struct Durable {
    cfg: DurableConfig,
    ring: Box<dyn FrameRing>,
    backfill: Sender,
    /// Frames held in the ring that are not free for backfill (absent: free).
    busy: BTreeMap<u64, Busy>,
    /// Backfill transport id -> frame.
    in_backfill: BTreeMap<u32, u64>,
    report: DurableReport,
    events: VecDeque<DurableEvent>,
}

impl Durable {
    /// `live` is the camera's sender config: the backfill session copies its peer, pacing and
    /// sizes, with the backfill bit set in the session id.
    pub fn new(cfg: DurableConfig, ring: Box<dyn FrameRing>, live: &SenderConfig) -> Self {
        let backfill = Sender::new(SenderConfig {
            session: live.session | BACKFILL_SESSION_BIT,
            frame_deadline: cfg.backfill_deadline,
            max_frames_in_flight: cfg.backfill_in_flight.max(1),
            // Backfill spends what the live sender's pacer leaves (it is charged there).
            rate_control: None,
            ..live.clone()
        });
        Durable {
            cfg,
            ring,
            backfill,
            busy: BTreeMap::new(),
            in_backfill: BTreeMap::new(),
            report: DurableReport::default(),
            events: VecDeque::new(),
        }
    }

    pub fn ring(&self) -> &dyn FrameRing {
        self.ring.as_ref()
    }

    pub fn backfill_sender(&self) -> &Sender {
        &self.backfill
    }

    pub fn report(&self) -> DurableReport {
        DurableReport {
            ring: self.ring.stats(),
            ..self.report
        }
    }

    /// The next event (a frame released or dropped), oldest first.
    pub fn poll_event(&mut self) -> Option<DurableEvent> {
        self.events.pop_front()
    }

    /// True when every frame is stored (or dropped) and nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.ring.index().is_empty() && self.backfill.frames_in_flight() == 0
    }

    /// A frame was captured and pushed into the live sender.
    pub fn on_capture(&mut self, now: Instant, frame: u64, data: &[u8]) {
        let dropped = self.ring.insert(RingFrame {
            frame,
            capture_us: now.as_micros(),
            data: data.to_vec(),
        });
        for f in dropped {
            self.busy.remove(&f);
            self.events
                .push_back(DurableEvent::RingDropped { frame: f });
        }
        if self.ring.index().get(frame).is_some() {
            self.busy.insert(frame, Busy::Live);
        }
    }

    /// The live sender's frame was acknowledged (complete at the tier-2, not yet stored).
    pub fn on_live_acked(&mut self, now: Instant, frame: u64) {
        if mutants::active(Mutant::ReleaseOnAck) {
            self.on_stored(&[frame]);
            return;
        }
        if let Some(b) = self.busy.get_mut(&frame) {
            *b = Busy::Acked(now + self.cfg.stored_timeout);
        }
    }

    /// The live sender gave the frame up: it is free for backfill.
    pub fn on_live_dropped(&mut self, frame: u64) {
        if self.busy.get(&frame) == Some(&Busy::Live) {
            self.busy.remove(&frame);
        }
    }

    /// STORED for `frames`: released from the ring.
    pub fn on_stored(&mut self, frames: &[u64]) {
        self.report.stored_messages += 1;
        for &f in frames {
            if self.ring.release(f) {
                self.report.frames_stored += 1;
            }
            if let Some(Busy::Backfill(id)) = self.busy.remove(&f) {
                self.in_backfill.remove(&id);
            }
        }
    }

    /// A datagram of the backfill session.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.backfill.handle_datagram(now, from, data);
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Acknowledged long ago and never STORED: free for backfill.
        self.busy
            .retain(|_, b| !matches!(*b, Busy::Acked(until) if until <= now));
        self.backfill.handle_timeout(now);
        self.drain(now);
    }

    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.backfill.poll_event() {
            match ev {
                SenderEvent::FrameAcked {
                    frame: id,
                    bytes,
                    segments,
                    rtt,
                    ..
                } => {
                    if let Some(frame) = self.in_backfill.remove(&id) {
                        self.report.backfill_acked += 1;
                        let headers = usize::from(segments)
                            * (crate::proto::wire::SEGMENT_OVERHEAD
                                + crate::proto::wire::UDP_IP_OVERHEAD);
                        self.events.push_back(DurableEvent::BackfillAcked {
                            frame,
                            wire_bytes: (bytes + headers) as u64,
                            rtt,
                        });
                        if self.busy.contains_key(&frame) {
                            self.busy
                                .insert(frame, Busy::Acked(now + self.cfg.stored_timeout));
                        }
                    }
                }
                SenderEvent::FrameDropped { frame: id, .. } => {
                    if let Some(frame) = self.in_backfill.remove(&id) {
                        self.report.backfill_given_up += 1;
                        if self.busy.get(&frame) == Some(&Busy::Backfill(id)) {
                            self.busy.remove(&frame);
                        }
                    }
                }
                SenderEvent::SegmentSizeChanged { .. }
                | SenderEvent::ParityChanged { .. }
                | SenderEvent::TargetRate { .. } => {}
            }
        }
    }

    /// The oldest frame free for backfill.
    fn next_free(&self) -> Option<u64> {
        self.ring
            .index()
            .iter()
            .map(|e| e.frame)
            .find(|f| !self.busy.contains_key(f))
    }

    /// Sends a backfill datagram if the live sender leaves room for one now (see the module
    /// docs), charging it to the live pacer.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        live: &mut Sender,
        buf: &mut Vec<u8>,
    ) -> Option<SocketAddr> {
        if !live.is_idle(now) {
            return None;
        }
        if !self.backfill.has_queued() && self.in_backfill.len() < self.cfg.backfill_in_flight {
            while let Some(frame) = self.next_free() {
                let Some(f) = self.ring.load(frame) else {
                    // Unreadable: the ring dropped it (and counted it).
                    self.busy.remove(&frame);
                    continue;
                };
                let env = encode_envelope(f.frame, f.capture_us, &f.data);
                match self.backfill.push_frame(now, env) {
                    Ok(id) => {
                        self.report.backfill_sent += 1;
                        self.in_backfill.insert(id, frame);
                        self.busy.insert(frame, Busy::Backfill(id));
                    }
                    Err(e) => {
                        // Cannot be cut into segments: no use keeping it.
                        tracing::warn!(frame, error = %e, "frame cannot be backfilled");
                        self.ring.release(frame);
                    }
                }
                break;
            }
        }
        let to = self.backfill.poll_transmit(now, buf)?;
        live.charge(now, buf.len());
        Some(to)
    }

    /// Backfill deadlines and probes, and when an acknowledged frame turns free.
    pub fn next_deadline(&self) -> Option<Instant> {
        let acked = self
            .busy
            .values()
            .filter_map(|b| match b {
                Busy::Acked(t) => Some(*t),
                _ => None,
            })
            .min();
        [self.backfill.next_deadline(), acked]
            .into_iter()
            .flatten()
            .min()
    }

    /// Like [`Durable::next_deadline`], plus when a backfill datagram may leave, if one is
    /// waiting: once both pacers allow it. While `live` has segments queued, its own timeout
    /// wakes the caller.
    pub fn poll_timeout(&self, live: &Sender) -> Option<Instant> {
        let waiting = self.backfill.has_queued()
            || (self.in_backfill.len() < self.cfg.backfill_in_flight && self.next_free().is_some());
        let pacing = (waiting && !live.has_queued())
            .then(|| {
                [live.pace_ready_at(), self.backfill.pace_ready_at()]
                    .into_iter()
                    .flatten()
                    .max()
            })
            .flatten();
        [pacing, self.next_deadline()].into_iter().flatten().min()
    }

    /// Moves the backfill session to a new receiver, as the live one.
    pub fn restart(&mut self, now: Instant, peer: SocketAddr) {
        self.backfill.restart(now, peer);
    }

    /// Frames in the backfill sender.
    pub fn frames_in_flight(&self) -> usize {
        self.backfill.frames_in_flight()
    }

    /// When the backfill session last heard its receiver.
    pub fn last_feedback(&self) -> Option<Instant> {
        self.backfill.last_feedback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{self, Message, Stored, MAX_STORED_FRAMES};
    use crate::role::ring::{MemoryRing, RingLimits};

    #[test]
    fn stored_round_trips_and_rejects_bad_lengths() {
        let m = Message::Stored(Stored {
            session: 7,
            frames: (0..MAX_STORED_FRAMES as u64).map(|i| i << 40 | i).collect(),
        });
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(wire::decode(&buf), Ok(m));
        // A count above the limit is refused, not allocated.
        let mut buf = vec![b'L', b'C', wire::VERSION, wire::kind::STORED];
        buf.extend_from_slice(&7u32.to_be_bytes());
        buf.extend_from_slice(&u16::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        assert!(wire::decode(&buf).is_err());
    }

    #[test]
    fn envelope_round_trips() {
        let env = encode_envelope(9, 123_456, b"abc");
        assert_eq!(env, b"\0\0\0\0\0\0\0\x09\0\0\0\0\0\x01\xe2\x40abc");
        assert_eq!(decode_envelope(&env), Some((9, 123_456, &b"abc"[..])));
        assert_eq!(decode_envelope(&env[..5]), None);
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// A receiver's answer: ACK of `frame` on `session`.
    fn ack(session: u32, frame: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        Message::FrameAck(wire::FrameAck {
            session,
            frame,
            next_segment_size: 500,
            next_parity: 0,
        })
        .encode(&mut buf);
        buf
    }

    fn segments(d: &mut Durable, live: &mut Sender, now: Instant) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while d.poll_transmit(now, live, &mut buf).is_some() {
            if let Ok(Message::Segment(s)) = wire::decode(&buf) {
                let orig = (s.index == 0).then(|| decode_envelope(s.payload).map(|e| e.0));
                out.push((s.frame, orig.flatten().unwrap_or(u64::MAX)));
            }
        }
        out
    }

    #[test]
    fn backfill_sends_only_frames_out_of_the_live_path_and_only_when_live_is_idle() {
        let live_cfg = SenderConfig::new(5, peer());
        let mut live = Sender::new(live_cfg.clone());
        let ring = MemoryRing::new(RingLimits::default());
        let cfg = DurableConfig {
            backfill_in_flight: 1,
            ..DurableConfig::default()
        };
        let mut d = Durable::new(cfg, Box::new(ring), &live_cfg);
        // Three frames captured; 0 given up, 1 acknowledged, 2 still live.
        for f in 0..3 {
            live.push_frame(ms(0), vec![f as u8; 100]).unwrap();
            d.on_capture(ms(0), f, &[f as u8; 100]);
        }
        d.on_live_dropped(0);
        d.on_live_acked(ms(0), 1);
        // Live has segments queued: no backfill.
        assert!(segments(&mut d, &mut live, ms(1)).is_empty());
        let mut buf = Vec::new();
        while live.poll_transmit(ms(1), &mut buf).is_some() {}
        // Live idle: frame 0 (only) goes as backfill frame 0 of session 5|BIT.
        assert_eq!(segments(&mut d, &mut live, ms(2)), vec![(0, 0)]);
        assert_eq!(
            d.backfill_sender().config().session,
            5 | BACKFILL_SESSION_BIT
        );
        // Its ACK frees the slot; frame 1's STORED never came: after the timeout it is next.
        d.handle_datagram(ms(3), peer(), &ack(5 | BACKFILL_SESSION_BIT, 0));
        assert!(
            segments(&mut d, &mut live, ms(4)).is_empty(),
            "1 waits for STORED"
        );
        d.handle_timeout(ms(5001));
        assert_eq!(segments(&mut d, &mut live, ms(5001)), vec![(1, 1)]);
        // STORED releases frames from the ring.
        d.on_stored(&[0, 1]);
        assert_eq!(d.ring().index().len(), 1);
        assert_eq!(d.report().frames_stored, 2);
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_says_so() {
        let live_cfg = SenderConfig::new(5, peer());
        let ring = MemoryRing::new(RingLimits {
            max_frames: 2,
            max_bytes: 1 << 20,
        });
        let mut d = Durable::new(DurableConfig::default(), Box::new(ring), &live_cfg);
        for f in 0..4 {
            d.on_capture(ms(0), f, &[1; 10]);
        }
        assert_eq!(
            std::iter::from_fn(|| d.poll_event()).collect::<Vec<_>>(),
            vec![
                DurableEvent::RingDropped { frame: 0 },
                DurableEvent::RingDropped { frame: 1 }
            ]
        );
        assert_eq!(d.report().ring.frames_dropped, 2);
    }

    #[test]
    fn a_boot_numbers_on_above_everything_the_ring_ever_kept_and_not_below_the_clock() {
        let mut ring = MemoryRing::new(RingLimits::default());
        assert_eq!(boot_seq(None, 1_000), 1_000, "no ring: the clock");
        assert_eq!(
            boot_seq(Some(&ring), 1_000),
            1_000,
            "an empty ring: the clock"
        );
        ring.insert(RingFrame {
            frame: 5_000,
            capture_us: 0,
            data: vec![1],
        });
        assert!(ring.release(5_000));
        // The frame is stored and gone, and the clock went back: still above it.
        assert_eq!(boot_seq(Some(&ring), 1_000), 5_001);
        assert_eq!(boot_seq(Some(&ring), 9_000), 9_000, "the clock ahead wins");
    }
}
