use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::{Camera, Recorder, RoleEvent};
use crate::cluster::{ClientEvent, Connector};
use crate::machine::{Endpoint, Role};
use crate::outbox::Outbox;
use crate::proto::bond::{
    Bond, BondConfig, BondEvent, Placement, UplinkStats, Uplinks, MAX_UPLINKS,
};
use crate::proto::wire::{
    self, Command, CommandMsg, CommandResult, Message, PathMark, PathReport, SEGMENT_OVERHEAD,
    UDP_IP_OVERHEAD,
};
use crate::secure::Channel;
use crate::time::Instant;

/// How a mobile client watches its session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileConfig {
    /// Frames in flight and no ACK or NACK for this long: the tier-2 is taken for gone and the
    /// client reconnects through tier-1.
    pub session_timeout: Duration,
    /// The client asks for a session this long before its camera's first capture (zero: at
    /// the first capture, which then waits for the session).
    pub connect_ahead: Duration,
    /// An idle session (no frame in flight: a stopped camera, a slow frame rate) sends a
    /// keep-alive once nothing has been heard from the tier-2 for this long. The echo keeps
    /// the session and its keys at the tier-2 (a stopped camera stays commandable), and no
    /// echo within `session_timeout` means the tier-2 is gone: the client reconnects, so an
    /// idle client fails over within `keepalive_interval + session_timeout`. While one is
    /// unanswered it is repeated every quarter of `session_timeout`, so a lost keep-alive or
    /// echo is not a lost session (four in a row must be). Costs one small sealed datagram
    /// each way per interval while idle (about 80 bytes on the wire).
    pub keepalive_interval: Duration,
    /// Local uplinks (sockets) the client sends by, 1 to [`MAX_UPLINKS`]. With more than one
    /// and a keyed session, the session is bonded: each datagram leaves by the uplink
    /// [`Bond`] picks, each uplink is pinged, and each proves itself to the tier-2 by a path
    /// challenge before it is answered on (see `secure::paths`). Without keys a tier-2 can
    /// validate no path, so everything leaves by the first.
    pub uplinks: usize,
    /// How a bonded session spreads its datagrams ([`Placement::Broadcast`] is the
    /// baseline of SRT's broadcast group, for experiments).
    pub placement: Placement,
}

impl Default for MobileConfig {
    fn default() -> Self {
        MobileConfig {
            session_timeout: Duration::from_millis(1000),
            connect_ahead: Duration::ZERO,
            keepalive_interval: Duration::from_millis(1000),
            uplinks: 1,
            placement: Placement::Earliest,
        }
    }
}

/// A mobile client in the cluster. See the [module docs](super).
pub struct Mobile {
    cfg: MobileConfig,
    connector: Connector,
    camera: Camera,
    started: bool,
    connected_at: Instant,
    /// Whether a session was ever opened (the first one drops the frames its set-up held).
    ever_connected: bool,
    /// Since when frames have been in flight without a break (none in flight: `None`).
    waiting_since: Option<Instant>,
    /// The last datagram of the session from its tier-2 (or the connection).
    heard_at: Instant,
    /// The last keep-alive sent, its number, and since when keep-alives go unanswered.
    keepalive_sent_at: Instant,
    keepalive_seq: u32,
    keepalive_since: Option<Instant>,
    /// A paused camera sends no segment that would open its session at a new tier-2: it greets
    /// with a keep-alive right after connecting instead.
    greet: bool,
    /// Results of the latest commands, so a repeated command (its result was lost) is
    /// answered again, not carried out twice.
    results: VecDeque<CommandResult>,
    outbox: Outbox,
    recorder: Recorder,
    /// The session's keys when the connector authenticates (see [`crate::secure`]).
    channel: Option<Channel>,
    /// Reused for datagrams before sealing and after opening.
    scratch: Vec<u8>,
    /// Datagrams refused: unsealed session traffic when keys are in use, or sealed ones that
    /// did not open (forged, replayed, from another address).
    rejected: u64,
    /// The scheduler of a bonded session's uplinks (more than one uplink, keys in use).
    bond: Option<Bond>,
    /// Datagrams that must leave by one uplink: path responses (by the one the challenge
    /// came in by) and pings; index = uplink.
    by_uplink: Vec<Outbox>,
    /// The uplink the datagram being handled came in by.
    arrived_on: usize,
    /// Data segments a bonded session sent lately: when, by which uplink, frame and index;
    /// those of an uplink that falls silent are sent again by the others, and their resends
    /// that have not left are withdrawn if it answers again.
    sent_by: VecDeque<(Instant, usize, u32, u16)>,
    /// What the uplinks carried in the bonds of earlier sessions (a reconnection starts a
    /// new bond): [`Mobile::uplink_stats`] counts on from there.
    uplinks_before: Vec<UplinkStats>,
    /// Sealed copies still to leave by their uplinks ([`Placement::Broadcast`], and second
    /// copies of repeated repairs).
    copies: Vec<(usize, SocketAddr, Vec<u8>)>,
    /// The uplinks the handshake went by since the client began connecting.
    connect_tried: Uplinks,
}

/// Data segments a bonded client remembers the uplink of: a second of a 2 MB/s camera in
/// 1,400-byte segments, well past any silence timer.
const SENT_BY_KEPT: usize = 2048;

/// The data segments `sent_by` says left by `uplink` from `since` on, by frame.
fn carried(
    sent_by: &VecDeque<(Instant, usize, u32, u16)>,
    uplink: usize,
    since: Instant,
) -> BTreeMap<u32, Vec<u16>> {
    let mut by_frame: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
    for &(_, _, frame, index) in sent_by
        .iter()
        .filter(|&&(at, by, ..)| by == uplink && at >= since)
    {
        by_frame.entry(frame).or_default().push(index);
    }
    by_frame
}

/// Command results a mobile client remembers.
const REMEMBERED_RESULTS: usize = 64;

impl Mobile {
    /// `camera`'s sender must use the client id as its session id.
    pub fn new(cfg: MobileConfig, mut connector: Connector, camera: Camera) -> Self {
        connector.set_boot_seq(camera.boot_seq());
        Mobile {
            cfg,
            connector,
            camera,
            started: false,
            connected_at: Instant::ZERO,
            ever_connected: false,
            waiting_since: None,
            heard_at: Instant::ZERO,
            keepalive_sent_at: Instant::ZERO,
            keepalive_seq: 0,
            keepalive_since: None,
            greet: false,
            results: VecDeque::new(),
            outbox: Outbox::default(),
            recorder: Recorder::default(),
            channel: None,
            scratch: Vec::new(),
            rejected: 0,
            bond: None,
            by_uplink: (0..cfg.uplinks.clamp(1, MAX_UPLINKS))
                .map(|_| Outbox::default())
                .collect(),
            arrived_on: 0,
            sent_by: VecDeque::new(),
            uplinks_before: Vec::new(),
            copies: Vec::new(),
            connect_tried: Uplinks::default(),
        }
    }

    /// The bond of its uplinks, while a bonded session is up.
    pub fn bond(&self) -> Option<&Bond> {
        self.bond.as_ref()
    }

    /// What each uplink of a bonded client carried over all its sessions (counts), with the
    /// current bond's target and round trip; empty for a client with one uplink.
    pub fn uplink_stats(&self) -> Vec<UplinkStats> {
        let now = self.bond.as_ref().map(Bond::stats).unwrap_or_default();
        let n = now.len().max(self.uplinks_before.len());
        (0..n)
            .map(|i| {
                let mut u = now.get(i).cloned().unwrap_or_default();
                if let Some(before) = self.uplinks_before.get(i) {
                    u.add_counts(before);
                }
                u
            })
            .collect()
    }

    /// Datagrams refused as unauthenticated.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Opens a sealed datagram from the tier-2 of the session into `inner`.
    fn open(&mut self, from: SocketAddr, data: &[u8], inner: &mut Vec<u8>) -> bool {
        let from_tier2 = self.connector.connected().is_some_and(|(_, a)| a == from);
        let opened = match (&mut self.channel, wire::decode(data)) {
            (Some(ch), Ok(Message::Sealed(m))) if from_tier2 && m.session == ch.session() => {
                ch.open(&m, inner).is_ok()
            }
            _ => false,
        };
        if !opened {
            self.rejected += 1;
        }
        opened
    }

    /// A datagram of the session, from its tier-2 (opened, when keys are in use).
    fn on_session_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.heard_at = now;
        self.keepalive_since = None;
        let kind = wire::kind_of(data);
        if kind == Some(wire::kind::KEEPALIVE) {
            // The echo: its arrival was all it had to say.
        } else if kind == Some(wire::kind::SESSION_TIER1S) {
            // Trusted only sealed (it came through `open`); without keys the plain tier-1
            // list rules, as in the seed.
            if let (Some(_), Ok(Message::SessionTier1s(m))) = (&self.channel, wire::decode(data)) {
                if m.session == self.connector.id() {
                    self.connector.trust_tier1s(&m.tier1s);
                }
            }
        } else if kind == Some(wire::kind::PATH_CHALLENGE) {
            // Sealed only (it came through `open` from the session's tier-2): the token goes
            // back from the address the challenge reached, which proves this client is there
            // (see `secure::paths`). Same size as the challenge: nothing amplified.
            if let (Some(_), Ok(Message::PathChallenge(m))) = (&self.channel, wire::decode(data)) {
                if m.session == self.connector.id() {
                    let out = self.by_uplink.get_mut(self.arrived_on);
                    out.unwrap_or(&mut self.outbox)
                        .send(from, &Message::PathResponse(m));
                }
            }
        } else if kind == Some(wire::kind::PATH_ECHO) {
            // Sealed only, like the challenge: the measurement of one of its uplinks.
            if let (Some(bond), Ok(Message::PathEcho(m))) = (&mut self.bond, wire::decode(data)) {
                if m.session == self.connector.id() {
                    bond.on_echo(now, self.arrived_on, m.token, m.bytes);
                    // One rate budget: no more than the uplinks carry together.
                    let capacity = bond.capacity();
                    self.camera.sender_mut().cap_rate(capacity);
                }
            }
        } else if wire::is_control(data) {
            // Commands come only through the tier-2 that holds the session.
            if let Ok(Message::Command(m)) = wire::decode(data) {
                self.on_command(now, from, &m);
            }
        } else {
            self.camera.handle_datagram(now, from, data);
        }
    }

    /// Carries out a command from the backend (once per command id) and answers `from`.
    fn on_command(&mut self, now: Instant, from: SocketAddr, m: &CommandMsg) {
        let client = self.connector.id();
        if m.client != client {
            return;
        }
        let result = match self.results.iter().find(|r| r.id == m.id) {
            Some(done) => done.clone(),
            None => {
                let outcome = match m.command {
                    // Only to a tier-1 it already knows (configured, or listed by a tier-1
                    // it asked): a command cannot point the camera at an address of the
                    // sender's choosing, whoever the sender is.
                    Command::SwitchTier1 { addr } if self.connector.tier1s().contains(&addr) => {
                        self.connector.set_default_tier1(addr);
                        Ok(())
                    }
                    Command::SwitchTier1 { addr } => {
                        Err(format!("{addr} is not one of this client's tier-1 servers"))
                    }
                    ref other => self.camera.apply(now, other),
                };
                tracing::info!(id = m.id, command = ?m.command, ?outcome, "command");
                let result = CommandResult {
                    id: m.id,
                    client,
                    ok: outcome.is_ok(),
                    reason: outcome.err().unwrap_or_default(),
                };
                self.recorder.record(
                    now,
                    RoleEvent::CommandDone {
                        client,
                        id: m.id,
                        ok: result.ok,
                    },
                );
                if self.results.len() == REMEMBERED_RESULTS {
                    self.results.pop_front();
                }
                self.results.push_back(result.clone());
                result
            }
        };
        self.outbox.send(from, &Message::CommandResult(result));
    }

    pub fn camera(&self) -> &Camera {
        &self.camera
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Its [`RoleEvent`]s (and its camera's), recorded once enabled.
    pub fn enable_recording(&mut self) {
        self.recorder.enable();
        self.camera.recorder().enable();
    }

    /// The events recorded since the last call.
    pub fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        self.recorder.take_with(self.camera.recorder())
    }

    /// The uplink the connection handshake goes by (request and reply of one attempt alike,
    /// so the tier-2 meets the client where the tier-1 saw it). A bonded client (keys and
    /// several uplinks) tries every tier-1 by one uplink, then moves to the next: a modem
    /// dead when the client connects costs a round of connect timeouts, not the session.
    /// The session's first path is the uplink it connected by; the others prove themselves
    /// by path challenges as for any bonded session. Without keys no other path could be
    /// validated, so everything goes by the first.
    fn connect_uplink(&self) -> usize {
        let n = self.by_uplink.len();
        if n <= 1 || !self.connector.is_secure() {
            return 0;
        }
        let per_uplink = self.connector.tier1s().len().max(1) as u32;
        (self.connector.attempt().saturating_sub(1) / per_uplink) as usize % n
    }

    fn start_connecting(&mut self, now: Instant) {
        // The session's bond goes with it (its pings need a tier-2): a new one comes with
        // the next session.
        self.uplinks_before = self.uplink_stats();
        self.bond = None;
        self.sent_by.clear();
        self.copies.clear();
        self.connect_tried = Uplinks::default();
        self.connector.connect(now);
        if let Some(&tier1) = self.connector.tier1s().first() {
            self.recorder.record(
                now,
                RoleEvent::Connecting {
                    client: self.connector.id(),
                    tier1,
                },
            );
        }
    }

    fn drain_connector(&mut self, now: Instant) {
        while let Some(ev) = self.connector.poll_event() {
            if let ClientEvent::Connected {
                tier2,
                addr,
                setup,
                attempts,
            } = ev
            {
                // The first session starts with the newest frame: those captured while a
                // slow set-up went on (a lost offer, a dead tier-1: 0.5-1 s) would leave
                // together at the starting rate, late, and the frames after them would
                // queue behind (two 10%-loss uplinks, seeds 4, 11, 12: frame latency p99
                // 609-840 ms, 190-217 ms this way). A reconnection keeps them: the frames
                // in flight at a failover are resent whole, and superseding them cost more
                // on the LTE trace, whose uplink reconnects nine times into its outages.
                if !self.ever_connected {
                    self.camera.keep_newest();
                }
                self.ever_connected = true;
                self.camera.restart(now, addr);
                self.channel = self.connector.take_channel();
                self.uplinks_before = self.uplink_stats();
                self.sent_by.clear();
                self.copies.clear();
                // The uplinks the handshake tried in vain carry nothing until they answer.
                let connected_by = self.connect_uplink();
                let dead = self
                    .connect_tried
                    .iter()
                    .filter(move |&u| u != connected_by);
                self.bond = (self.by_uplink.len() > 1 && self.channel.is_some()).then(|| {
                    let cfg = BondConfig {
                        placement: self.cfg.placement,
                        ..BondConfig::new(self.by_uplink.len())
                    };
                    Bond::new(cfg, now).suspect_until_heard(dead)
                });
                for out in &mut self.by_uplink {
                    *out = Outbox::default();
                }
                self.connected_at = now;
                self.heard_at = now;
                self.keepalive_since = None;
                self.greet = self.camera.is_paused();
                self.recorder.record(
                    now,
                    RoleEvent::Connected {
                        client: self.connector.id(),
                        tier2,
                        setup_us: u64::try_from(setup.as_micros()).unwrap_or(u64::MAX),
                        attempts,
                    },
                );
            }
        }
    }

    /// Keeps `waiting_since` up to date after a step at `now`.
    fn track_waiting(&mut self, now: Instant) {
        if self.camera.frames_in_flight() == 0 {
            self.waiting_since = None;
        } else if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
    }

    /// When the client starts asking for a session.
    fn join_at(&self) -> Instant {
        let start = self.camera.start_at();
        Instant::from_micros(
            start
                .as_micros()
                .saturating_sub(self.cfg.connect_ahead.as_micros() as u64),
        )
    }

    /// When the next keep-alive is due: connected, no frame in flight, and neither a word
    /// from the tier-2 nor a keep-alive for an interval.
    fn keepalive_due(&self) -> Option<Instant> {
        self.connector.connected()?;
        if self.camera.frames_in_flight() > 0 {
            return None;
        }
        if self.greet {
            return Some(self.connected_at);
        }
        if self.keepalive_since.is_some() {
            // Unanswered: try again well before the session counts as lost.
            let retry = (self.cfg.session_timeout / 4).max(Duration::from_millis(1));
            return Some(self.keepalive_sent_at + retry);
        }
        Some(self.heard_at.max(self.keepalive_sent_at) + self.cfg.keepalive_interval)
    }

    fn send_keepalive(&mut self, now: Instant) {
        let Some((_, tier2)) = self.connector.connected() else {
            return;
        };
        self.keepalive_seq = self.keepalive_seq.wrapping_add(1);
        self.keepalive_sent_at = now;
        self.greet = false;
        self.keepalive_since.get_or_insert(now);
        let k = wire::KeepAlive {
            session: self.connector.id(),
            seq: self.keepalive_seq,
        };
        self.outbox.send(tier2, &Message::KeepAlive(k));
    }

    /// When the session counts as lost if nothing is heard before.
    fn silence_deadline(&self) -> Option<Instant> {
        self.connector.connected()?;
        // Silence counts from the last word of the tier-2, the connection, or the moment frames
        // started waiting for an answer, whichever is latest: an idle camera is not a dead
        // session. (Not from the oldest frame in flight: frames given up at their deadline
        // leave, so with a deadline no longer than the timeout that would never be old enough.)
        // An idle session counts from its first unanswered keep-alive instead.
        let waiting_since = self.waiting_since.or(self.keepalive_since)?;
        let heard = [
            self.camera.last_feedback(),
            Some(self.connected_at),
            Some(waiting_since),
        ]
        .into_iter()
        .flatten()
        .max()?;
        Some(heard + self.cfg.session_timeout)
    }
}

impl Endpoint for Mobile {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.handle_datagram_on(now, 0, from, data);
    }

    fn handle_datagram_on(&mut self, now: Instant, uplink: usize, from: SocketAddr, data: &[u8]) {
        self.arrived_on = uplink;
        let from_tier2 = self.connector.connected().is_some_and(|(_, a)| a == from);
        let secure = self.connector.is_secure();
        if wire::is_sealed(data) {
            let mut inner = std::mem::take(&mut self.scratch);
            if self.open(from, data, &mut inner) {
                self.on_session_datagram(now, from, &inner);
            }
            self.scratch = inner;
        } else if wire::is_control(data) {
            match wire::decode(data) {
                Ok(Message::Command(_)) if secure => self.rejected += 1,
                Ok(Message::Command(_)) if from_tier2 => self.on_session_datagram(now, from, data),
                Ok(Message::Command(_)) => {}
                Ok(msg) => {
                    self.connector.handle(now, from, &msg);
                    self.drain_connector(now);
                }
                Err(_) => {}
            }
        } else if secure {
            self.rejected += 1;
        } else if from_tier2 {
            self.on_session_datagram(now, from, data);
        }
        self.track_waiting(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        // The client joins the fleet when its camera starts (or `connect_ahead` before).
        if !self.started && now >= self.join_at() {
            self.started = true;
            self.start_connecting(now);
        }
        self.connector.handle_timeout(now);
        self.camera.handle_timeout(now);
        if let Some(bond) = &mut self.bond {
            bond.handle_timeout(now);
            while let Some(ev) = bond.poll_event() {
                tracing::debug!(client = self.connector.id(), ?ev, "uplink");
                match ev {
                    // What it carried since its last answer is not coming: send it again now,
                    // by the uplinks still answering, rather than a round trip later when
                    // the receiver asks.
                    BondEvent::Silent { uplink, since } => {
                        let sender = self.camera.sender_mut();
                        for (frame, indices) in carried(&self.sent_by, uplink, since) {
                            sender.resend_lost(frame, &indices);
                        }
                    }
                    // It was not dead: the resends of what it carried that have not left
                    // are withdrawn, and the receiver names what was lost. (On two 60 KB/s
                    // uplinks under a 100 KB/s camera with parity, an uplink whose queue
                    // outgrew its ping wait was taken for silent, its 190 ms of segments went
                    // again by the other, whose queue overflowed, and parity followed the
                    // loss.)
                    BondEvent::Back { uplink, since } => {
                        let sender = self.camera.sender_mut();
                        for (frame, indices) in carried(&self.sent_by, uplink, since) {
                            sender.withdraw_resends(frame, &indices);
                        }
                    }
                }
            }
        }
        self.track_waiting(now);
        if self.keepalive_due().is_some_and(|t| t <= now) {
            self.send_keepalive(now);
        }
        if self.silence_deadline().is_some_and(|t| t <= now) {
            if let Some((tier2, _)) = self.connector.connected() {
                self.recorder.record(
                    now,
                    RoleEvent::SessionLost {
                        client: self.connector.id(),
                        tier2,
                    },
                );
            }
            self.start_connecting(now);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.poll_transmit_on(now, buf).map(|(_, to)| to)
    }

    fn poll_transmit_on(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<(usize, SocketAddr)> {
        if let Some(to) = self.connector.poll_transmit(now, buf) {
            let uplink = self.connect_uplink();
            self.connect_tried.insert(uplink);
            return Some((uplink, to));
        }
        if let Some((uplink, to, copy)) = self.copies.pop() {
            *buf = copy;
            return Some((uplink, to));
        }
        // Session traffic: path responses and pings, command results, then the camera's
        // segments; sealed with keys.
        let Some(channel) = self.channel.as_mut().filter(|_| self.connector.is_secure()) else {
            if let Some(to) = self.outbox.poll_transmit(buf) {
                return Some((0, to));
            }
            self.connector.connected()?;
            return self.camera.poll_transmit(now, buf).map(|to| (0, to));
        };
        if let (Some(bond), Some((_, tier2))) = (&mut self.bond, self.connector.connected()) {
            while let Some((uplink, token, bytes)) = bond.poll_ping(now) {
                let session = self.connector.id();
                let ping = PathReport {
                    session,
                    token,
                    bytes,
                };
                self.by_uplink[uplink].send(tier2, &Message::PathPing(ping));
            }
        }
        let mut plain = std::mem::take(&mut self.scratch);
        plain.clear();
        let pinned = self
            .by_uplink
            .iter_mut()
            .enumerate()
            .find_map(|(i, out)| Some((i, out.poll_transmit(&mut plain)?)));
        // The frame whose first crossing the camera's datagram ends, if it does.
        let mut crossing_ended = None;
        // Whether it is a data segment sent again for at least the second time.
        let mut resent_again = false;
        let next = match pinned {
            Some((uplink, to)) => Some((Some(uplink), to)),
            None => match self.outbox.poll_transmit(&mut plain) {
                Some(to) => Some((None, to)),
                None if self.connector.connected().is_some() => {
                    let sent = self.camera.poll_transmit(now, &mut plain);
                    crossing_ended = sent.and(self.camera.sender().crossing_ended());
                    resent_again = sent.is_some() && self.camera.sender().resent_again();
                    sent.map(|to| (None, to))
                }
                None => None,
            },
        };
        buf.clear();
        let sealed = next.filter(|_| channel.seal(&plain, buf).is_ok());
        self.scratch = plain;
        let (uplink, to) = sealed?;
        let wire_len = buf.len() + UDP_IP_OVERHEAD;
        let uplink = match (uplink, &mut self.bond) {
            (Some(i), Some(bond)) => {
                bond.charge(now, i, wire_len);
                i
            }
            (None, Some(bond)) => {
                let picked = bond.pick(now, wire_len);
                for other in picked.iter().skip(1) {
                    // Sealed on its own: the same bytes twice would be the copy's replay.
                    let mut copy = Vec::new();
                    if channel.seal(&self.scratch, &mut copy).is_ok() {
                        self.copies.push((other, to, copy));
                    }
                }
                let uplink = picked.first();
                // A segment sent again a second time (its first repair was lost too, or its
                // tail is probed again) belongs to a frame in the latency tail: a copy by
                // another uplink makes its next loss need both. Sealed on its own.
                let again = bond.placement() == Placement::Earliest && resent_again;
                if again && self.camera.sender().has_room(now) {
                    let mut copy = Vec::new();
                    if let Some(other) = bond.pick_other(now, wire_len, uplink) {
                        if channel.seal(&self.scratch, &mut copy).is_ok() {
                            self.copies.push((other, to, copy));
                            let payload = self.scratch.len().saturating_sub(SEGMENT_OVERHEAD);
                            self.camera
                                .sender_mut()
                                .note_copy(now, self.scratch.len(), payload);
                        }
                    }
                }
                // A broadcast one every uplink carried: none has anything to send again.
                let resendable = bond.placement() != Placement::Broadcast;
                if let Some((frame, passed)) = crossing_ended.filter(|_| resendable) {
                    // Every uplink in use is marked past the frame (its mark follows what it
                    // carried of it), so the tier-2 names a lost tail at once, and does not
                    // wait for an uplink that carried none of it.
                    let mark = Message::PathMark(PathMark {
                        session: self.connector.id(),
                        frame,
                        passed,
                    });
                    for i in (0..bond.uplinks()).filter(|&i| !bond.is_silent(i)) {
                        self.by_uplink[i].send(to, &mark);
                    }
                }
                if let Some((frame, index)) = wire::segment_of(&self.scratch).filter(|_| resendable)
                {
                    if self.sent_by.len() >= SENT_BY_KEPT {
                        self.sent_by.pop_front();
                    }
                    self.sent_by.push_back((now, uplink, frame, index));
                }
                uplink
            }
            (Some(i), None) => i,
            (None, None) => 0,
        };
        Some((uplink, to))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.started {
            return Some(self.join_at());
        }
        let camera = if self.connector.connected().is_some() {
            self.camera.poll_timeout()
        } else {
            // Not connected: only capture and deadlines matter; pacing waits for a peer.
            self.camera.next_deadline()
        };
        [
            self.connector.poll_timeout(),
            camera,
            self.silence_deadline(),
            self.keepalive_due(),
            self.bond.as_ref().and_then(Bond::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Role for Mobile {
    fn is_finished(&self) -> bool {
        self.camera.is_finished()
    }
}
