use crate::mutants::{self, Mutant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::Serialize;

use super::durable::{decode_envelope, BACKFILL_SESSION_BIT};
use super::{Backhaul, Delivered, FrameCheck, Recorder, RoleEvent, StoredFrame};
use crate::machine::{Endpoint, Role};
use crate::proto::wire::{Message, Stored, MAX_STORED_FRAMES};
use crate::proto::{Receiver, ReceiverEvent, ReceiverStats};
use crate::time::Instant;

/// A sink's figures at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkReport {
    pub frames_delivered: u64,
    pub frames_dropped: u64,
    /// Delivered frames whose bytes differ from what the camera produced. Must be zero.
    pub frames_corrupted: u64,
    /// Frames delivered more than once. Must be zero.
    pub frames_duplicated: u64,
    pub bytes_delivered: u64,
    /// Backfilled frames received whole (not counted as delivered above).
    pub frames_backfilled: u64,
    /// Backfilled frames without a valid envelope, dropped.
    pub backfill_malformed: u64,
    /// Frames storage committed, and STORED messages sent for them.
    pub frames_stored: u64,
    pub stored_sent: u64,
    /// Committed frames whose client was gone: it sends them again and hears then.
    pub stored_unsent: u64,
    /// Sessions ended because their client came back with a new numbering (restarted).
    pub sessions_renumbered: u64,
    pub receiver: ReceiverStats,
}

/// A receiving server that checks every delivered frame against the cameras' content. It runs
/// until its driver is stopped from outside.
pub struct Sink {
    receiver: Receiver,
    check: Box<dyn FrameCheck>,
    /// Frames delivered per session, the most recent [`Sink::SEEN_PER_SESSION`] of each.
    seen: BTreeMap<u32, BTreeSet<u32>>,
    report: SinkReport,
    backhaul: Option<Box<dyn Backhaul>>,
    /// Committed frames per client, waiting to be announced with STORED.
    stored: BTreeMap<u32, Vec<u64>>,
    /// Each session's `boot_seq` (see [`super::durable`]), from its accepted request.
    boot_seqs: BTreeMap<u32, u64>,
    stored_buf: Vec<StoredFrame>,
    recorder: Recorder,
}

impl Sink {
    /// Delivered frame ids remembered per session for the duplicate check (far more than a
    /// receiver ever has in reassembly).
    pub const SEEN_PER_SESSION: usize = 4096;

    pub fn new(receiver: Receiver, check: Box<dyn FrameCheck>) -> Self {
        Sink {
            receiver,
            check,
            seen: BTreeMap::new(),
            report: SinkReport::default(),
            backhaul: None,
            stored: BTreeMap::new(),
            boot_seqs: BTreeMap::new(),
            stored_buf: Vec::new(),
            recorder: Recorder::default(),
        }
    }

    /// Hands sessions and intact first deliveries to `backhaul` from now on.
    pub fn with_backhaul(mut self, backhaul: Box<dyn Backhaul>) -> Self {
        self.backhaul = Some(backhaul);
        self
    }

    /// Whether this sink stores what it receives and does not know how `client` numbers its
    /// frames (no accepted request told it): it cannot name that session's frames in storage.
    pub fn cannot_name(&self, client: u32) -> bool {
        self.backhaul.is_some() && !self.boot_seqs.contains_key(&client)
    }

    /// Client `client` was accepted, numbering its frames from `boot_seq` (`None`: not known,
    /// a client taken without a request, only without keys). A new numbering for a session
    /// still held (the client restarted) ends the old session and its backfill session first,
    /// so the new boot's ids start afresh instead of being taken for stale ones.
    pub fn begin_session(&mut self, client: u32, boot_seq: Option<u64>) {
        let Some(seq) = boot_seq else {
            return;
        };
        if self
            .boot_seqs
            .insert(client, seq)
            .is_some_and(|old| old != seq)
        {
            self.report.sessions_renumbered += 1;
            self.receiver.close_session(client);
            self.receiver.close_session(client | BACKFILL_SESSION_BIT);
            self.seen.remove(&client);
        }
    }

    /// Forgets the `boot_seq` of sessions that `keep` says are over.
    pub fn retain_boot_seqs(&mut self, keep: impl Fn(&Receiver, u32) -> bool) {
        let receiver = &self.receiver;
        self.boot_seqs.retain(|&client, _| keep(receiver, client));
    }

    /// Where session `session`'s client was last heard from, while its session is open.
    pub fn peer(&self, session: u32) -> Option<SocketAddr> {
        self.receiver.peer(session)
    }

    /// Its [`RoleEvent`]s, recorded once enabled.
    pub fn recorder(&mut self) -> &mut Recorder {
        &mut self.recorder
    }

    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    pub fn report(&self) -> SinkReport {
        SinkReport {
            receiver: self.receiver.stats().clone(),
            ..self.report.clone()
        }
    }

    /// A frame of a client's backfill session: unwrapped and handed on under its original id.
    fn on_backfill(&mut self, now: Instant, ev: ReceiverEvent) {
        let ReceiverEvent::FrameDelivered {
            session,
            frame: ev_frame,
            data,
            segment_size,
            segments,
            failed,
            first_segment_at,
            ..
        } = ev
        else {
            return;
        };
        let client = session & !BACKFILL_SESSION_BIT;
        let Some((seq, _capture_us, data)) = decode_envelope(&data) else {
            self.report.backfill_malformed += 1;
            return;
        };
        self.report.frames_backfilled += 1;
        // Checked under its live id (what its content was made for): the low bits of its
        // sequence number relative to the current boot, exact within one boot.
        let boot = self.boot_seqs.get(&client).copied().unwrap_or(0);
        let intact = self
            .check
            .is_intact(client, seq.wrapping_sub(boot) as u32, data);
        if !intact {
            self.report.frames_corrupted += 1;
        }
        if let (Some(b), true) = (self.backhaul.as_mut(), intact) {
            b.frame_delivered(
                now,
                &Delivered {
                    session: client,
                    frame: ev_frame,
                    seq,
                    data,
                    segment_size,
                    segments,
                    failed,
                    reassembly: now.saturating_duration_since(first_segment_at),
                    backfill: true,
                },
            );
        }
        self.recorder.record(
            now,
            RoleEvent::FrameBackfilled {
                session: client,
                frame: seq,
                intact,
            },
        );
    }

    /// Collects what storage committed, to announce with STORED.
    fn drain_stored(&mut self, now: Instant) {
        let Some(b) = self.backhaul.as_mut() else {
            return;
        };
        b.poll_stored(now, &mut self.stored_buf);
        for f in self.stored_buf.drain(..) {
            self.report.frames_stored += 1;
            self.stored.entry(f.session).or_default().push(f.seq);
            self.recorder.record(
                now,
                RoleEvent::FrameStored {
                    session: f.session,
                    frame: f.seq,
                    backfill: f.backfill,
                },
            );
        }
    }

    fn poll_stored_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        while let Some(mut entry) = self.stored.first_entry() {
            let client = *entry.key();
            let frames = entry.get_mut();
            let rest = frames.split_off(frames.len().min(MAX_STORED_FRAMES));
            let batch = std::mem::replace(frames, rest);
            if frames.is_empty() {
                entry.remove();
            }
            let peer = self
                .receiver
                .peer(client)
                .or_else(|| self.receiver.peer(client | BACKFILL_SESSION_BIT));
            let Some(peer) = peer else {
                self.report.stored_unsent += batch.len() as u64;
                continue;
            };
            buf.clear();
            Message::Stored(Stored {
                session: client,
                frames: batch,
            })
            .encode(buf);
            self.report.stored_sent += 1;
            return Some(peer);
        }
        None
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(ev) = self.receiver.poll_event() {
            let backfill = match &ev {
                ReceiverEvent::FrameDelivered { session, .. }
                | ReceiverEvent::FrameDropped { session, .. }
                | ReceiverEvent::SessionOpened { session, .. }
                | ReceiverEvent::SessionClosed { session } => session & BACKFILL_SESSION_BIT != 0,
            };
            if backfill {
                // Only whole frames matter: a backfill given up is sent again later.
                self.on_backfill(now, ev);
                continue;
            }
            match ev {
                ReceiverEvent::FrameDelivered {
                    session,
                    frame,
                    data,
                    segment_size,
                    segments,
                    failed,
                    first_segment_at,
                    ..
                } => {
                    self.report.frames_delivered += 1;
                    self.report.bytes_delivered += data.len() as u64;
                    let intact = self.check.is_intact(session, frame, &data);
                    if !intact {
                        self.report.frames_corrupted += 1;
                    }
                    let seen = self.seen.entry(session).or_default();
                    let duplicate = !seen.insert(frame);
                    if seen.len() > Self::SEEN_PER_SESSION {
                        seen.pop_first();
                    }
                    if duplicate {
                        self.report.frames_duplicated += 1;
                    }
                    if let (Some(b), true, false) = (self.backhaul.as_mut(), intact, duplicate) {
                        let boot = self.boot_seqs.get(&session).copied().unwrap_or(0);
                        let seq = super::durable::seq_of(boot, frame);
                        if mutants::active(Mutant::StoredBeforeCommit) {
                            self.stored.entry(session).or_default().push(seq);
                        }
                        b.frame_delivered(
                            now,
                            &Delivered {
                                session,
                                frame,
                                seq,
                                data: &data,
                                segment_size,
                                segments,
                                failed,
                                reassembly: now.saturating_duration_since(first_segment_at),
                                backfill: false,
                            },
                        );
                    }
                    self.recorder.record(
                        now,
                        RoleEvent::FrameDelivered {
                            session,
                            frame,
                            intact,
                            duplicate,
                            segment_size,
                            failed,
                        },
                    );
                }
                ReceiverEvent::FrameDropped {
                    session,
                    frame,
                    reason,
                    ..
                } => {
                    self.report.frames_dropped += 1;
                    if let Some(b) = self.backhaul.as_mut() {
                        b.frame_dropped(now, session, frame);
                    }
                    self.recorder.record(
                        now,
                        RoleEvent::FrameDropped {
                            session,
                            frame,
                            reason,
                        },
                    );
                }
                ReceiverEvent::SessionClosed { session } => {
                    self.seen.remove(&session);
                    if let Some(b) = self.backhaul.as_mut() {
                        b.session_closed(now, session);
                    }
                }
                ReceiverEvent::SessionOpened { session, peer } => {
                    if let Some(b) = self.backhaul.as_mut() {
                        b.session_opened(now, session, peer);
                    }
                }
            }
        }
    }
}

impl Endpoint for Sink {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.receiver.handle_datagram(now, from, data);
        self.drain_events(now);
        self.drain_stored(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.receiver.handle_timeout(now);
        self.drain_events(now);
        self.drain_stored(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.receiver
            .poll_transmit(now, buf)
            .or_else(|| self.poll_stored_transmit(buf))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let backhaul = self.backhaul.as_ref().and_then(|b| b.poll_timeout());
        [self.receiver.poll_timeout(), backhaul]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Role for Sink {
    fn is_finished(&self) -> bool {
        false
    }
}
