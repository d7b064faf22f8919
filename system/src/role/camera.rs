use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::adapt::{Bounds, Ladder, Picture};
use super::durable::{Durable, DurableEvent, DurableReport, BACKFILL_SESSION_BIT};
use super::{FrameProducer, Recorder, RoleEvent};
use crate::machine::{Endpoint, Role};
use crate::proto::wire::{self, Command, Message};
use crate::proto::{Sender, SenderEvent};
use crate::stats::Samples;
use crate::time::Instant;

/// What a camera produces.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// Frames per second.
    pub fps: f64,
    /// Frames to send in all.
    pub frames: u64,
    /// Bytes per frame, for producers of synthetic content (a real picture is as long as it
    /// is).
    pub frame_bytes: usize,
    /// When the first frame is captured.
    pub start_at: Instant,
}

/// A camera's figures at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CameraReport {
    pub frames_sent: u64,
    pub frames_delivered: u64,
    pub frames_dropped: u64,
    pub bytes_delivered: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub segments_sent: u64,
    pub segments_resent: u64,
    pub tail_probes: u64,
    pub final_segment_size: usize,
    pub first_frame_at_s: f64,
    pub last_ack_at_s: f64,
    /// Frames given up before they could start to leave, a newer capture having come
    /// (rate control: the newest frame wins), those of a slow set-up included
    /// ([`Camera::keep_newest`]). Also in `frames_dropped`.
    pub frames_superseded: u64,
    /// Capture instants skipped because the rate control lowered the frame rate.
    pub frames_skipped: u64,
    /// The picture of the last capture.
    pub final_quality: u8,
    pub final_fps: f64,
    /// The ring and backfill, when the camera keeps frames until stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable: Option<DurableReport>,
}

/// A mobile client's stream: captures frames at `fps` and sends them. Finished once every
/// frame was pushed and has been acknowledged or given up.
pub struct Camera {
    cfg: CameraConfig,
    producer: Box<dyn FrameProducer>,
    sender: Sender,
    next_frame_at: Instant,
    pushed: u64,
    latencies: Samples,
    /// `(time, segment size)` each time the size changed, starting with the initial one.
    size_trace: Vec<(Instant, usize)>,
    delivered: u64,
    dropped: u64,
    bytes_delivered: u64,
    last_ack_at: Instant,
    /// Stopped by a command: no captures until started again.
    paused: bool,
    recorder: Recorder,
    /// Keeps frames until stored and backfills them (see [`super::durable`]).
    durable: Option<Durable>,
    /// The capture sequence number of this boot's live frame 0 (see [`super::durable`]).
    boot_seq: u64,
    /// Chooses each capture's picture from the sender's rate (see [`super::adapt`]).
    ladder: Ladder,
    picture: Picture,
    /// Fractions of a capture owed at a frame rate below the ceiling.
    capture_credit: f64,
    superseded: u64,
    skipped: u64,
}

/// Frame rates a command may set.
pub const FPS_RANGE: std::ops::RangeInclusive<f64> = 0.1..=60.0;

impl Camera {
    pub fn new(cfg: CameraConfig, sender: Sender, producer: Box<dyn FrameProducer>) -> Self {
        let ladder = Ladder {
            bounds: Bounds {
                fps: (cfg.fps, cfg.fps.min(1.0)),
                ..Bounds::default()
            },
            nominal_bytes: cfg.frame_bytes,
        };
        let picture = ladder.choose(None);
        Camera {
            ladder,
            picture,
            capture_credit: 0.0,
            superseded: 0,
            skipped: 0,
            producer,
            next_frame_at: cfg.start_at,
            size_trace: vec![(cfg.start_at, sender.segment_size())],
            cfg,
            sender,
            pushed: 0,
            latencies: Samples::default(),
            delivered: 0,
            dropped: 0,
            bytes_delivered: 0,
            last_ack_at: Instant::ZERO,
            paused: false,
            recorder: Recorder::default(),
            durable: None,
            boot_seq: 0,
        }
    }

    /// Numbers this boot's frames on from capture sequence number `seq` (default 0): live
    /// frame id `n` is frame `seq + n` (see [`super::durable::boot_seq`]).
    pub fn with_boot_seq(mut self, seq: u64) -> Self {
        self.boot_seq = seq;
        self
    }

    /// See [`Camera::with_boot_seq`].
    pub fn boot_seq(&self) -> u64 {
        self.boot_seq
    }

    /// The capture sequence number of live frame `frame`.
    fn seq_of(&self, frame: u32) -> u64 {
        super::durable::seq_of(self.boot_seq, frame)
    }

    /// Keeps every captured frame in `durable`'s ring until a tier-2 says it is stored, and
    /// backfills those that missed their live deadline.
    pub fn with_durable(mut self, durable: Durable) -> Self {
        self.durable = Some(durable);
        self
    }

    pub fn durable(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// Moves the live session (and the backfill session) to a new receiver.
    pub fn restart(&mut self, now: Instant, peer: SocketAddr) {
        self.sender.restart(now, peer);
        if let Some(d) = self.durable.as_mut() {
            d.restart(now, peer);
        }
    }

    /// The session just opened after a set-up: of the frames captured meanwhile only the
    /// newest goes, under rate control (the others are given up,
    /// [`DropReason::SetUp`](crate::proto::DropReason::SetUp); a
    /// durable camera's backfill still sends them).
    pub fn keep_newest(&mut self) {
        if self.sender.rate_control().is_some() {
            self.superseded += self.sender.keep_newest_unstarted() as u64;
        }
    }

    /// Frames per second now.
    pub fn fps(&self) -> f64 {
        self.cfg.fps
    }

    /// True while stopped by a command.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Carries out a browser command that concerns the camera: frame rate, snapshot,
    /// start/stop here; picture settings in the frame producer. Err says why not.
    pub fn apply(&mut self, now: Instant, command: &Command) -> Result<(), String> {
        match *command {
            Command::SetFps { milli_fps } => {
                let fps = f64::from(milli_fps) / 1e3;
                if !FPS_RANGE.contains(&fps) {
                    return Err(format!(
                        "frame rate {fps} outside {}..={}",
                        FPS_RANGE.start(),
                        FPS_RANGE.end()
                    ));
                }
                self.cfg.fps = fps;
                let floor = self.ladder.bounds.fps.1.min(fps);
                self.ladder.bounds.fps = (fps, floor);
                // The new rate applies from the next capture on, no later than one new
                // interval from now.
                self.next_frame_at = self.next_frame_at.min(now + self.frame_interval());
                Ok(())
            }
            Command::Snapshot => {
                if self.pushed >= self.cfg.frames {
                    return Err("the camera has sent all its frames".to_string());
                }
                self.capture(now);
                Ok(())
            }
            Command::Start => {
                if self.paused {
                    self.paused = false;
                    self.next_frame_at = self.next_frame_at.max(now);
                }
                Ok(())
            }
            Command::Stop => {
                self.paused = true;
                Ok(())
            }
            Command::SetResolution { width, height } => {
                self.producer.apply(command)?;
                self.ladder.bounds.resolution = (width, height);
                Ok(())
            }
            Command::SetQuality { quality } => {
                self.producer.apply(command)?;
                let floor = self.ladder.bounds.quality.1.min(quality);
                self.ladder.bounds.quality = (quality, floor);
                Ok(())
            }
            Command::SwitchTier1 { .. } => Err("not a camera command".to_string()),
        }
    }

    /// The bounds the picture is chosen within.
    pub fn bounds(&self) -> &Bounds {
        &self.ladder.bounds
    }

    /// Sets the floors (and ceilings) of the picture; the commands move the ceilings later.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.ladder.bounds = bounds;
        self.cfg.fps = bounds.fps.0;
        self.picture = self.ladder.choose(self.sender.source_rate());
        self
    }

    /// The picture of the latest capture.
    pub fn picture(&self) -> &Picture {
        &self.picture
    }

    /// Chooses the picture for the capture due now from the sender's rate; returns whether
    /// to capture at all (below the frame-rate ceiling some instants are skipped).
    fn adapt(&mut self) -> bool {
        let picture = self.ladder.choose(self.sender.source_rate());
        if picture.quality != self.picture.quality
            || (picture.width, picture.height) != (self.picture.width, self.picture.height)
        {
            self.producer.adapt(&picture);
        }
        self.picture = picture;
        let ceiling = self.ladder.bounds.fps.0.max(1e-3);
        // Whole captures owed so far; what is left over carries to the next instant, so 8.4
        // fps of a 10 fps ceiling skips 1.6 instants in 10, not every other one.
        self.capture_credit += (picture.fps / ceiling).min(1.0);
        if self.capture_credit + 1e-9 >= 1.0 {
            self.capture_credit = (self.capture_credit - 1.0).max(0.0);
            true
        } else {
            self.skipped += 1;
            false
        }
    }

    /// Captures one frame now and pushes it into the sender. Under rate control a frame that
    /// has not started to leave is dropped first: the newest frame wins.
    fn capture(&mut self, now: Instant) {
        let id = self.sender.config().session;
        if self.sender.rate_control().is_some() {
            self.superseded += self.sender.drop_unstarted() as u64;
        }
        let frame = self.sender.next_frame_id();
        let data = self.producer.produce(id, frame, now, self.picture.bytes);
        let len = data.len();
        let kept = self.durable.is_some().then(|| data.clone());
        match self.sender.push_frame(now, data) {
            Ok(frame) => {
                let seq = self.seq_of(frame);
                if let (Some(d), Some(data)) = (self.durable.as_mut(), kept) {
                    d.on_capture(now, seq, &data);
                }
                self.record(
                    now,
                    RoleEvent::FramePushed {
                        session: id,
                        frame,
                        len,
                        boot_seq: self.boot_seq,
                    },
                )
            }
            Err(e) => tracing::warn!(error = %e, "camera frame refused"),
        }
        self.pushed += 1;
    }

    /// A capture instant skipped to fit the rate: its frame id is taken and reported dropped
    /// at the source (an empty frame pushed, then given up).
    fn skip(&mut self, now: Instant) {
        let session = self.sender.config().session;
        let frame = self.sender.skip_frame();
        self.record(
            now,
            RoleEvent::FramePushed {
                session,
                frame,
                len: 0,
                boot_seq: self.boot_seq,
            },
        );
        self.pushed += 1;
    }

    /// Its [`RoleEvent`]s, recorded once enabled.
    pub fn recorder(&mut self) -> &mut Recorder {
        &mut self.recorder
    }

    fn record(&mut self, now: Instant, ev: RoleEvent) {
        self.recorder.record(now, ev);
    }

    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    pub fn sender_mut(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// The segment size over time.
    pub fn size_trace(&self) -> &[(Instant, usize)] {
        &self.size_trace
    }

    /// Frame latencies (push to ACK) so far.
    pub fn latencies(&self) -> &Samples {
        &self.latencies
    }

    /// When the camera captures its first frame.
    pub fn start_at(&self) -> Instant {
        self.cfg.start_at
    }

    /// When the next frame is captured, if any is left.
    pub fn next_capture(&self) -> Option<Instant> {
        (!self.paused && self.pushed < self.cfg.frames).then_some(self.next_frame_at)
    }

    /// The next capture, frame deadline or probe, leaving pacing aside (for while the camera
    /// may not send).
    pub fn next_deadline(&self) -> Option<Instant> {
        let durable = self.durable.as_ref().and_then(Durable::next_deadline);
        [self.sender.next_deadline(), self.next_capture(), durable]
            .into_iter()
            .flatten()
            .min()
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.cfg.fps.max(1e-3))
    }

    fn drain_events(&mut self, now: Instant) {
        let session = self.sender.config().session;
        while let Some(ev) = self.sender.poll_event() {
            match ev {
                SenderEvent::FrameAcked {
                    frame,
                    latency,
                    bytes,
                    ..
                } => {
                    self.delivered += 1;
                    self.bytes_delivered += bytes as u64;
                    self.latencies.push(latency.as_secs_f64() * 1e3);
                    self.last_ack_at = now;
                    let seq = self.seq_of(frame);
                    if let Some(d) = self.durable.as_mut() {
                        d.on_live_acked(now, seq);
                    }
                    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    self.record(
                        now,
                        RoleEvent::FrameAcked {
                            session,
                            frame,
                            latency_us,
                        },
                    );
                }
                SenderEvent::FrameDropped { frame, reason } => {
                    self.dropped += 1;
                    let seq = self.seq_of(frame);
                    if let Some(d) = self.durable.as_mut() {
                        d.on_live_dropped(seq);
                    }
                    tracing::debug!(frame, ?reason, "frame given up");
                    self.record(
                        now,
                        RoleEvent::FrameGivenUp {
                            session,
                            frame,
                            reason,
                        },
                    );
                }
                SenderEvent::SegmentSizeChanged { to, .. } => {
                    self.size_trace.push((now, to));
                    self.record(now, RoleEvent::SegmentSize { session, size: to });
                }
                SenderEvent::TargetRate { bytes_per_s, queue } => {
                    let queue_us = u64::try_from(queue.as_micros()).unwrap_or(u64::MAX);
                    self.record(
                        now,
                        RoleEvent::TargetRate {
                            session,
                            bytes_per_s,
                            queue_us,
                        },
                    );
                }
                SenderEvent::ParityChanged { .. } => {}
            }
        }
        while let Some(ev) = self.durable.as_mut().and_then(Durable::poll_event) {
            let ev = match ev {
                DurableEvent::RingDropped { frame } => RoleEvent::RingDropped { session, frame },
                DurableEvent::BackfillAcked {
                    frame,
                    wire_bytes,
                    rtt,
                } => {
                    // The path carried it on the live budget: the rate control counts it.
                    self.sender.note_delivered(now, wire_bytes, rtt);
                    RoleEvent::BackfillAcked { session, frame }
                }
            };
            self.record(now, ev);
        }
    }

    /// Routes a datagram of the segment protocol: STORED and the backfill session's ACKs and
    /// NACKs to the durability layer, the rest to the live sender.
    fn route(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let session = self.sender.config().session;
        let Some(d) = self.durable.as_mut() else {
            self.sender.handle_datagram(now, from, data);
            return;
        };
        match wire::decode(data) {
            Ok(Message::Stored(m)) if m.session == session => d.on_stored(&m.frames),
            Ok(Message::FrameAck(wire::FrameAck { session: s, .. }))
            | Ok(Message::Nack(wire::Nack { session: s, .. }))
                if s == session | BACKFILL_SESSION_BIT =>
            {
                d.handle_datagram(now, from, data)
            }
            _ => self.sender.handle_datagram(now, from, data),
        }
    }

    /// When the receiver last said anything, on the live or the backfill session.
    pub fn last_feedback(&self) -> Option<Instant> {
        let backfill = self.durable.as_ref().and_then(Durable::last_feedback);
        self.sender.last_feedback().max(backfill)
    }

    /// Frames in flight on the live and the backfill session.
    pub fn frames_in_flight(&self) -> usize {
        self.sender.frames_in_flight() + self.durable.as_ref().map_or(0, Durable::frames_in_flight)
    }

    pub fn report(&self) -> CameraReport {
        let s = self.sender.stats();
        CameraReport {
            frames_sent: self.pushed,
            frames_delivered: self.delivered,
            frames_dropped: self.dropped,
            bytes_delivered: self.bytes_delivered,
            latency_ms_p50: self.latencies.quantile(0.5),
            latency_ms_p99: self.latencies.quantile(0.99),
            latency_ms_max: self.latencies.quantile(1.0),
            segments_sent: s.segments_sent,
            segments_resent: s.segments_resent,
            tail_probes: s.tail_probes,
            final_segment_size: self.sender.segment_size(),
            first_frame_at_s: self.cfg.start_at.since_origin().as_secs_f64(),
            last_ack_at_s: self.last_ack_at.since_origin().as_secs_f64(),
            frames_superseded: self.superseded,
            frames_skipped: self.skipped,
            final_quality: self.picture.quality,
            final_fps: self.picture.fps,
            durable: self.durable.as_ref().map(Durable::report),
        }
    }
}

impl Endpoint for Camera {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.route(now, from, data);
        self.drain_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        while !self.paused && self.pushed < self.cfg.frames && self.next_frame_at <= now {
            // A camera that keeps frames until stored captures every instant: what the link
            // cannot carry live, the backfill stores later.
            if self.adapt() || self.durable.is_some() {
                self.capture(now);
            } else {
                self.skip(now);
            }
            self.next_frame_at += self.frame_interval();
        }
        self.sender.handle_timeout(now);
        if let Some(d) = self.durable.as_mut() {
            d.handle_timeout(now);
        }
        self.drain_events(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        // Live first; backfill only with what live leaves over.
        if let Some(to) = self.sender.poll_transmit(now, buf) {
            return Some(to);
        }
        self.durable
            .as_mut()?
            .poll_transmit(now, &mut self.sender, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let durable = self
            .durable
            .as_ref()
            .and_then(|d| d.poll_timeout(&self.sender));
        [self.sender.poll_timeout(), self.next_capture(), durable]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Role for Camera {
    fn is_finished(&self) -> bool {
        self.pushed >= self.cfg.frames
            && self.sender.frames_in_flight() == 0
            && self.durable.as_ref().is_none_or(Durable::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SenderConfig;
    use crate::role::FrameContent;

    fn camera() -> Camera {
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        Camera::new(
            CameraConfig {
                fps: 10.0,
                frames: 1000,
                frame_bytes: 100,
                start_at: Instant::ZERO,
            },
            Sender::new(SenderConfig::new(1, peer)),
            Box::new(FrameContent { seed: 1 }),
        )
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn commands_change_rate_pause_resume_and_snap() {
        let mut cam = camera();
        cam.handle_timeout(ms(0));
        assert_eq!(cam.next_capture(), Some(ms(100)));
        // 2 fps: the next capture moves no later than one new interval from now...
        cam.apply(ms(50), &Command::SetFps { milli_fps: 2000 })
            .unwrap();
        assert_eq!(cam.fps(), 2.0);
        assert_eq!(cam.next_capture(), Some(ms(100)));
        cam.handle_timeout(ms(100));
        // ...and later ones follow the new rate.
        assert_eq!(cam.next_capture(), Some(ms(600)));
        assert!(cam
            .apply(ms(100), &Command::SetFps { milli_fps: 0 })
            .is_err());
        assert!(cam
            .apply(ms(100), &Command::SetFps { milli_fps: 61_000 })
            .is_err());
        // Stopped: no captures, and no deadline for them.
        cam.apply(ms(100), &Command::Stop).unwrap();
        assert!(cam.is_paused());
        assert_eq!(cam.next_capture(), None);
        cam.handle_timeout(ms(5000));
        assert_eq!(cam.report().frames_sent, 2);
        // A snapshot is taken even when stopped.
        cam.apply(ms(5000), &Command::Snapshot).unwrap();
        assert_eq!(cam.report().frames_sent, 3);
        // Started again: capturing resumes now, not with a backlog of missed frames.
        cam.apply(ms(6000), &Command::Start).unwrap();
        assert_eq!(cam.next_capture(), Some(ms(6000)));
        cam.handle_timeout(ms(6000));
        assert_eq!(cam.report().frames_sent, 4);
        // Picture settings go to the producer (the synthetic one honours them) and become the
        // ceilings the rate control's choices stay under; out of range is refused.
        cam.apply(ms(6000), &Command::SetQuality { quality: 50 })
            .unwrap();
        assert_eq!(cam.bounds().quality.0, 50);
        cam.apply(
            ms(6000),
            &Command::SetResolution {
                width: 640,
                height: 480,
            },
        )
        .unwrap();
        assert_eq!(cam.bounds().resolution, (640, 480));
        assert!(cam
            .apply(ms(6000), &Command::SetQuality { quality: 0 })
            .is_err());
    }
}
