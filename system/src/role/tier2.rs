use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Recorder, RoleEvent, Sink};
use crate::cluster::{Tier2, Tier2Event};
use crate::machine::{Endpoint, Role};
use crate::outbox::Outbox;
use crate::proto::wire::{
    self, CommandMsg, CommandResult, Message, PathProbe, PathReport, SessionTier1s, PATH_PROBE_LEN,
    SEALED_OVERHEAD,
};
use crate::secure::control::{ControlGate, ControlPlane, ControlStats, Incoming};
use crate::secure::{Channel, PathTable};
use crate::time::Instant;

/// A tier-2 server: the cluster logic ([`Tier2`]) for control messages and a [`Sink`] for the
/// frames. Its load is the sessions its receiver holds plus clients that accepted and have not
/// sent their first segment yet, plus open reservations.
///
/// It also relays the backend's commands to the clients it holds, and their results back
/// (seed [0040]: commands from the browser reach the mobile client through its tier-2).
pub struct Tier2Server {
    tier2: Tier2,
    sink: Sink,
    /// Clients that accepted, until their session shows up in the receiver.
    accepted: BTreeMap<u32, Instant>,
    /// Command id -> (who sent it, client, until when its result is relayed back).
    relays: BTreeMap<u64, Relay>,
    /// Server-to-server datagrams (results back to the backend): never sealed.
    outbox: Outbox,
    /// Commands to clients, and copies of a bonded session's feedback for its other paths:
    /// session traffic, sealed when sessions have keys.
    to_clients: Outbox,
    recorder: Recorder,
    /// Keys of the sessions it holds, when the cluster authenticates devices.
    channels: BTreeMap<u32, Channel>,
    /// The addresses each of those sessions is answered on (see [`crate::secure::paths`]).
    paths: PathTable,
    /// When channels of sessions that ended are next swept away.
    next_sweep: Instant,
    /// Reused for datagrams before sealing and after opening.
    scratch: Vec<u8>,
    /// Session datagrams refused: unsealed while keys are in use, or sealed ones that did not
    /// open (unknown session, forged, replayed, or naming another session inside).
    rejected: u64,
    /// Signs what it sends other servers and checks what they send it (secure mode).
    control: ControlGate,
}

/// The session whose keys carry session `s`'s datagrams: a client's backfill session travels
/// under the client's own keys.
fn keys_of(s: u32) -> u32 {
    s & !super::durable::BACKFILL_SESSION_BIT
}

/// How often channels of ended sessions are swept away.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Relay {
    backend: SocketAddr,
    client: u32,
    expires: Instant,
}

/// How long a tier-2 relays results of a command back.
const RELAY_TTL: Duration = Duration::from_secs(30);
/// Commands in relay at most; the oldest is forgotten first.
const MAX_RELAYS: usize = 4096;

impl Tier2Server {
    pub fn new(tier2: Tier2, sink: Sink) -> Self {
        Tier2Server {
            tier2,
            sink,
            accepted: BTreeMap::new(),
            relays: BTreeMap::new(),
            outbox: Outbox::default(),
            to_clients: Outbox::default(),
            recorder: Recorder::default(),
            channels: BTreeMap::new(),
            paths: PathTable::default(),
            next_sweep: Instant::ZERO,
            scratch: Vec::new(),
            rejected: 0,
            control: ControlGate::default(),
        }
    }

    /// Authenticates its server-to-server traffic with `plane`: heartbeats, results and the
    /// rest signed out; forwards, manager changes and commands taken only signed by a server
    /// whose role may send them.
    pub fn with_control(mut self, plane: ControlPlane) -> Self {
        self.control = ControlGate::new(Some(plane));
        self
    }

    /// What its control plane signed, let in and refused.
    pub fn control_stats(&self) -> ControlStats {
        self.control.stats()
    }

    /// Session datagrams refused: unauthenticated, or (without keys, when storing) of a
    /// session whose frame numbering this tier-2 does not know.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Sessions whose keys it holds.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// The paths its sessions are answered on, and what validating them took
    /// ([`PathTable::stats`]).
    pub fn paths(&self) -> &PathTable {
        &self.paths
    }

    /// Opens a sealed datagram into `inner`; the session it belongs to, if it authenticated.
    fn open(&mut self, from: SocketAddr, data: &[u8], inner: &mut Vec<u8>) -> Option<u32> {
        let Ok(Message::Sealed(m)) = wire::decode(data) else {
            return None;
        };
        match self.channels.get_mut(&m.session) {
            Some(channel) => channel.open(&m, inner).ok()?,
            None => {
                // The client's accept may have been lost: its first datagram, opened with the
                // reservation's keys, is as good as the accept.
                self.tier2
                    .reserved_channel(m.session)?
                    .open(&m, inner)
                    .ok()?;
                self.tier2.confirm(m.session, from);
            }
        }
        // Inside, it must be this session's own traffic.
        (wire::session_of(inner).map(keys_of) == Some(m.session)).then_some(m.session)
    }

    /// An opened datagram of `session` that came from `from`, `len` bytes sealed: a path
    /// response validates `from`; anything else is the session's own traffic, answered on a
    /// validated path (and `from` challenged when it is not one).
    fn on_sealed_datagram(
        &mut self,
        now: Instant,
        session: u32,
        from: SocketAddr,
        len: usize,
        inner: &[u8],
    ) {
        // A peek at the type byte: the datagrams on this path are mostly segments, which the
        // receiver decodes.
        let kind = wire::kind_of(inner);
        if kind == Some(wire::kind::PATH_RESPONSE) {
            if let Ok(Message::PathResponse(r)) = wire::decode(inner) {
                if r.session == session {
                    self.paths.on_response(now, session, from, r.token);
                }
            }
            return;
        }
        let challenge_len = PATH_PROBE_LEN + SEALED_OVERHEAD;
        let route = self
            .paths
            .on_datagram(now, session, from, len, challenge_len);
        if let Some(token) = route.and_then(|r| r.challenge) {
            let probe = PathProbe { session, token };
            self.to_clients.send(from, &Message::PathChallenge(probe));
        }
        if kind == Some(wire::kind::PATH_PING) {
            // Echoed on a validated path only, at the ping's own size; from anywhere else the
            // ping is one more authenticated datagram, paying for the address's challenge.
            if let (Ok(Message::PathPing(p)), Some(received)) =
                (wire::decode(inner), self.paths.received(session, from))
            {
                if p.session == session {
                    let echo = PathReport {
                        bytes: received,
                        ..p
                    };
                    self.to_clients.send(from, &Message::PathEcho(echo));
                }
            }
            return;
        }
        let answer_to = route.map_or(from, |r| r.answer_to);
        self.on_session_datagram(now, answer_to, inner);
    }

    /// A datagram of a client's session (opened, when keys are in use), answered on `from`.
    fn on_session_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if wire::is_control(data) {
            if let Ok(Message::CommandResult(r)) = wire::decode(data) {
                self.on_command_result(from, r);
            }
        } else {
            self.sink.handle_datagram(now, from, data);
        }
    }

    /// Drops the keys of sessions that ended (the receiver forgot them and they are not
    /// waiting for their first segment).
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let receiver = self.sink.receiver();
        let accepted = &self.accepted;
        let held = |receiver: &crate::proto::Receiver, session: u32| {
            receiver.segment_size(session).is_some() || accepted.contains_key(&session)
        };
        self.channels.retain(|&session, _| held(receiver, session));
        let channels = &self.channels;
        self.paths.retain(|session| channels.contains_key(&session));
        self.sink.retain_boot_seqs(held);
    }

    /// A command from the backend: passed on to the client if this tier-2 holds its session,
    /// refused with a reason otherwise.
    fn on_command(&mut self, now: Instant, from: SocketAddr, m: &CommandMsg) {
        self.relays.retain(|_, r| r.expires > now);
        match self.sink.peer(m.client) {
            Some(client_addr) => {
                if self.relays.len() >= MAX_RELAYS && !self.relays.contains_key(&m.id) {
                    self.relays.pop_first();
                }
                self.relays.insert(
                    m.id,
                    Relay {
                        backend: from,
                        client: m.client,
                        expires: now + RELAY_TTL,
                    },
                );
                self.to_clients.send(client_addr, &Message::Command(*m));
            }
            None => self.outbox.send(
                from,
                &Message::CommandResult(CommandResult {
                    id: m.id,
                    client: m.client,
                    ok: false,
                    reason: format!(
                        "client {} has no session on tier-2 {}",
                        m.client,
                        self.tier2.id()
                    ),
                }),
            ),
        }
    }

    /// A client's result: back to whoever sent the command.
    fn on_command_result(&mut self, from: SocketAddr, r: CommandResult) {
        let Some(relay) = self.relays.get(&r.id) else {
            return;
        };
        if relay.client == r.client && self.sink.peer(r.client) == Some(from) {
            self.outbox.send(relay.backend, &Message::CommandResult(r));
        }
    }

    pub fn tier2(&self) -> &Tier2 {
        &self.tier2
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn enable_recording(&mut self) {
        self.recorder.enable();
        self.sink.recorder().enable();
    }

    pub fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        self.recorder.take_with(self.sink.recorder())
    }

    fn update(&mut self, now: Instant) {
        while let Some(ev) = self.tier2.poll_event() {
            let id = self.tier2.id();
            match ev {
                Tier2Event::SessionAccepted {
                    client,
                    addr,
                    boot_seq,
                } => {
                    self.accepted.insert(client, now);
                    self.sink.begin_session(client, boot_seq);
                    if let Some(channel) = self.tier2.take_channel(client) {
                        self.channels.insert(client, channel);
                        // The handshake's offer went to `addr`, and the client read it there.
                        self.paths.begin(now, client, addr);
                        // The tier-1s, sealed: the list a client may trust (a plain one from
                        // a tier-1 could come from anyone).
                        let tier1s = self.tier2.tier1s();
                        if !tier1s.is_empty() {
                            let m = SessionTier1s {
                                session: client,
                                tier1s,
                            };
                            self.to_clients.send(addr, &Message::SessionTier1s(m));
                        }
                    }
                    self.recorder
                        .record(now, RoleEvent::SessionAccepted { tier2: id, client });
                }
                Tier2Event::ManagerChanged { manager, epoch } => self.recorder.record(
                    now,
                    RoleEvent::ManagerChanged {
                        tier2: id,
                        manager,
                        epoch,
                    },
                ),
            }
        }
        let receiver = self.sink.receiver();
        let ttl = receiver.config().frame_timeout;
        self.accepted.retain(|&client, &mut at| {
            receiver.segment_size(client).is_none() && now.saturating_duration_since(at) < ttl
        });
        let sessions = receiver.session_count() + self.accepted.len();
        self.tier2.set_sessions(sessions as u32);
    }
}

impl Endpoint for Tier2Server {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let secure = self.tier2.is_secure();
        let data = match self.control.incoming(now, from, data) {
            Incoming::Refused => return self.update(now),
            Incoming::Other(d) | Incoming::Control { datagram: d, .. } => d,
        };
        if wire::is_sealed(data) {
            let mut inner = std::mem::take(&mut self.scratch);
            match self.open(from, data, &mut inner) {
                Some(session) => {
                    if !self.channels.contains_key(&session) {
                        // This very datagram confirmed the session (its accept was lost): the
                        // session begins, and its frame numbering is known, before its first
                        // frame is handled.
                        self.update(now);
                    }
                    self.on_sealed_datagram(now, keys_of(session), from, data.len(), &inner)
                }
                // Damaged on the way (its checksum fails, so nothing in it can be trusted):
                // the receiver counts it as it counts every damaged datagram, and keeps no
                // state for it.
                None if wire::decode(data) == Err(wire::WireError::BadChecksum) => {
                    self.sink.handle_datagram(now, from, data)
                }
                None => self.rejected += 1,
            }
            self.scratch = inner;
        } else if wire::is_control(data) {
            match wire::decode(data) {
                // From the backend: server-to-server, not session traffic.
                Ok(Message::Command(m)) => self.on_command(now, from, &m),
                Ok(Message::CommandResult(_)) if secure => self.rejected += 1,
                Ok(Message::CommandResult(r)) => self.on_command_result(from, r),
                Ok(msg) => {
                    self.tier2.handle(now, from, &msg);
                }
                Err(_) => {}
            }
        } else if secure {
            // Unsealed session traffic never reaches the receiver: no state for strangers.
            self.rejected += 1;
        } else {
            // A plain session's first datagram may come before its accept, or instead of it
            // (the accept was lost): like a sealed one, an intact datagram of a client with a
            // reservation here confirms it, so the session's frame numbering is known before
            // its first frame is stored. Without keys anyone could do this as well by sending
            // the accept itself; it costs one decode, only for a reserved client.
            let client = wire::session_of(data).map(keys_of);
            if let Some(client) =
                client.filter(|&c| self.tier2.is_reserved(c) && wire::decode(data).is_ok())
            {
                self.tier2.confirm(client, from);
                self.update(now);
            }
            // A session this tier-2 stores for but whose numbering it never learnt (it
            // restarted under a streaming client, or the client's request went to another)
            // is not taken on trust: its frames would be stored under ids they do not have.
            // Refused, the client hears nothing, times out and connects again, telling its
            // numbering; its ring keeps the frames meanwhile, as with sealed sessions.
            match client {
                Some(c) if self.sink.cannot_name(c) => self.rejected += 1,
                _ => self.on_session_datagram(now, from, data),
            }
        }
        self.update(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sink.handle_timeout(now);
        self.tier2.handle_timeout(now);
        self.update(now);
        self.sweep(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some(to) = self
            .tier2
            .poll_transmit(now, buf)
            .or_else(|| self.outbox.poll_transmit(buf))
        {
            self.control.outgoing(now, buf);
            return Some(to);
        }
        if !self.tier2.is_secure() {
            return self
                .to_clients
                .poll_transmit(buf)
                .or_else(|| self.sink.poll_transmit(now, buf));
        }
        // Session traffic, sealed with its session's keys (skipping any whose keys are gone).
        let mut plain = std::mem::take(&mut self.scratch);
        let mut sent = None;
        loop {
            plain.clear();
            let (to, feedback) = match self.to_clients.poll_transmit(&mut plain) {
                Some(to) => (to, false),
                None => match self.sink.poll_transmit(now, &mut plain) {
                    Some(to) => (to, true),
                    None => break,
                },
            };
            let Some(keys) = wire::session_of(&plain).map(keys_of) else {
                continue;
            };
            let Some(channel) = self.channels.get_mut(&keys) else {
                continue;
            };
            buf.clear();
            if channel.seal(&plain, buf).is_err() {
                continue;
            }
            // A bonded session's ACKs and NACKs go by each of its live validated paths: the
            // copies are queued first among the commands to clients, and so each is sealed on
            // its own there, next (a copy is no replay): a NACK lost on one uplink still
            // arrives by the other. Only to addresses that proved they are the session's and
            // still send (`PathTable::live_paths`); the sender resends a NACKed segment at
            // most once per NACK interval, so a copy arriving within it resends nothing.
            let kind = wire::kind_of(&plain);
            if feedback && matches!(kind, Some(wire::kind::NACK | wire::kind::FRAME_ACK)) {
                for path in self.paths.live_paths(keys, now).filter(|&p| p != to) {
                    self.to_clients.send_first(path, &plain);
                }
            }
            sent = Some(to);
            break;
        }
        self.scratch = plain;
        sent
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let sweep = (!self.channels.is_empty()).then_some(self.next_sweep);
        [self.tier2.poll_timeout(), self.sink.poll_timeout(), sweep]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Role for Tier2Server {
    fn is_finished(&self) -> bool {
        false
    }
}
