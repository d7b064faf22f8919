use crate::mutants::{self, Mutant};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::outbox::Outbox;
use crate::proto::wire::{
    ConnectReply, ConnectRequest, Message, MAX_TIER1_LIST, PADDED_REQUEST_LEN,
};
use crate::secure::{Attempt, Channel, DeviceSecurity, Initiator};
use crate::time::{period, Instant};

/// How a client finds its tier-2.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The client's id; also its session id.
    pub id: u32,
    /// Tier-1 servers, the default first, then backups (claim 22).
    pub tier1s: Vec<SocketAddr>,
    /// No offer within this: try the next tier-1.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    pub fn new(id: u32, tier1s: Vec<SocketAddr>) -> Self {
        ClientConfig {
            id,
            tier1s,
            connect_timeout: Duration::from_millis(500),
        }
    }
}

/// What happened to the client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A tier-2 took the client: stream to `addr`.
    Connected {
        tier2: u32,
        addr: SocketAddr,
        /// From the first request of this connection attempt to the offer.
        setup: Duration,
        attempts: u32,
    },
    /// The tier-1 list changed (claim 23).
    Tier1List(Vec<SocketAddr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting {
        started: Instant,
        deadline: Instant,
        tries: u32,
    },
    Connected {
        tier2: u32,
        addr: SocketAddr,
    },
}

/// The client's connection logic. See the module docs of [`crate::cluster`].
#[derive(Debug)]
pub struct Connector {
    cfg: ClientConfig,
    /// Index of the tier-1 to ask next.
    current: usize,
    /// A new tier-1 list came while connecting: the next failover starts at its head (the
    /// list's own order) instead of moving past it.
    list_fresh: bool,
    attempt: u32,
    state: State,
    outbox: Outbox,
    events: VecDeque<ClientEvent>,
    /// With keys: every request carries a Noise hello and only an offer whose reply proves
    /// the cluster's key is taken (see [`crate::secure`]).
    security: Option<DeviceSecurity>,
    /// The handshake of the current attempt.
    initiator: Option<Initiator>,
    /// Keys of the session just connected, until the application takes them.
    channel: Option<Channel>,
    /// The tier-1 the last request went to: the only one whose tier-1 list is taken (the list
    /// is its answer; a list from anywhere else would let a stranger redirect the client).
    asked: Option<SocketAddr>,
    /// The capture sequence number of the boot's frame 0, told by the camera: each request
    /// carries it, so the tier-2 can read the session's 32-bit frame ids as 64-bit ones.
    boot_seq: u64,
}

impl Connector {
    pub fn new(mut cfg: ClientConfig) -> Self {
        cfg.connect_timeout = period(cfg.connect_timeout);
        Connector {
            cfg,
            current: 0,
            list_fresh: false,
            attempt: 0,
            state: State::Idle,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            security: None,
            initiator: None,
            channel: None,
            asked: None,
            boot_seq: 0,
        }
    }

    /// The capture sequence number of the boot's frame 0 (see [`ConnectRequest`]).
    pub fn set_boot_seq(&mut self, seq: u64) {
        self.boot_seq = seq;
    }

    /// Authenticates to the cluster with these keys.
    pub fn with_security(mut self, security: DeviceSecurity) -> Self {
        self.security = Some(security);
        self
    }

    pub fn is_secure(&self) -> bool {
        self.security.is_some()
    }

    /// The keys of the session just connected (once, after [`ClientEvent::Connected`]).
    pub fn take_channel(&mut self) -> Option<Channel> {
        self.channel.take()
    }

    pub fn id(&self) -> u32 {
        self.cfg.id
    }

    /// The tier-1 servers known now, the one asked next first.
    pub fn tier1s(&self) -> &[SocketAddr] {
        &self.cfg.tier1s
    }

    /// The tier-2 streamed to, once connected.
    pub fn connected(&self) -> Option<(u32, SocketAddr)> {
        match self.state {
            State::Connected { tier2, addr } => Some((tier2, addr)),
            _ => None,
        }
    }

    /// Makes `addr` the default tier-1: the first one asked on the next connection (a
    /// browser's "switch default tier-1"). A tier-1 list from tier-1 later replaces the order.
    pub fn set_default_tier1(&mut self, addr: SocketAddr) {
        self.cfg.tier1s.retain(|&a| a != addr);
        self.cfg.tier1s.insert(0, addr);
        self.cfg.tier1s.truncate(crate::proto::wire::MAX_TIER1_LIST);
        self.current = 0;
    }

    pub fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting { .. })
    }

    /// The number of the last connection request sent (0: none yet); every request of a
    /// retry counts.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Starts (or restarts, after the session was lost) a connection through tier-1.
    pub fn connect(&mut self, now: Instant) {
        if self.attempt > 0 && mutants::active(Mutant::NoReconnect) {
            self.state = State::Idle;
            return;
        }
        self.list_fresh = false;
        self.state = State::Connecting {
            started: now,
            deadline: now,
            tries: 0,
        };
        self.send_request(now);
    }

    fn send_request(&mut self, now: Instant) {
        let State::Connecting { started, tries, .. } = self.state else {
            return;
        };
        let Some(&tier1) = self
            .cfg
            .tier1s
            .get(self.current % self.cfg.tier1s.len().max(1))
        else {
            return;
        };
        self.attempt = self.attempt.wrapping_add(1);
        self.asked = Some(tier1);
        let mut hello = Vec::new();
        self.initiator = None;
        if let Some(security) = &mut self.security {
            match security.hello(now, Attempt::new(self.cfg.id, self.attempt, self.boot_seq)) {
                Ok((initiator, h)) => {
                    self.initiator = Some(initiator);
                    hello = h;
                }
                Err(e) => tracing::warn!(%e, "cannot start a handshake"),
            }
        }
        let mut req = ConnectRequest {
            client: self.cfg.id,
            attempt: self.attempt,
            boot_seq: self.boot_seq,
            hello: &hello,
            padding: 0,
        };
        if self.security.is_some() {
            // Padded: a secure tier-1 answers with no more bytes than it got (offers included).
            let len = Message::ConnectRequest(req).encoded_len();
            req.padding = u16::try_from(PADDED_REQUEST_LEN.saturating_sub(len)).unwrap_or(0);
        }
        self.outbox.send(tier1, &Message::ConnectRequest(req));
        self.state = State::Connecting {
            started,
            deadline: now + self.cfg.connect_timeout,
            tries: tries + 1,
        };
    }

    fn reply(&mut self, to: SocketAddr, attempt: u32, tier2: u32, accept: bool) {
        let r = ConnectReply {
            client: self.cfg.id,
            attempt,
            tier2,
        };
        let msg = if accept {
            Message::ConnectAccept(r)
        } else {
            Message::ConnectRelease(r)
        };
        self.outbox.send(to, &msg);
    }

    /// Handles a control message; returns false when it is not one for a client.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) -> bool {
        match msg {
            Message::ConnectOffer(o) if o.client == self.cfg.id => match self.state {
                State::Connecting { started, tries, .. } if o.attempt == self.attempt => {
                    if self.security.is_some() {
                        // Only an offer that completes the handshake counts; a forged one is
                        // ignored (not even released: it did not come from the cluster).
                        let Some(initiator) = self.initiator.take() else {
                            return true;
                        };
                        match initiator.finish(o.tier2, o.reply) {
                            Ok(channel) => self.channel = Some(channel),
                            Err((back, e)) => {
                                tracing::debug!(tier2 = o.tier2, %e, "offer refused");
                                self.initiator = back;
                                return true;
                            }
                        }
                    }
                    // The first answer wins (claim 17).
                    self.reply(from, o.attempt, o.tier2, true);
                    self.state = State::Connected {
                        tier2: o.tier2,
                        addr: from,
                    };
                    self.events.push_back(ClientEvent::Connected {
                        tier2: o.tier2,
                        addr: from,
                        setup: now - started,
                        attempts: tries,
                    });
                }
                State::Connected { tier2, .. } if tier2 == o.tier2 && o.attempt == self.attempt => {
                    // A duplicate of the offer we took: say accept again, it is idempotent.
                    self.reply(from, o.attempt, o.tier2, true);
                }
                _ => self.reply(from, o.attempt, o.tier2, false),
            },
            Message::Tier1List(list) => {
                if Some(from) != self.asked {
                    return true; // not the answer to our request: ignored
                }
                let next = if self.security.is_some() {
                    // Its source is not verified (an off-path spoofer can answer in its
                    // name): it may reorder the tier-1s this client trusts, never add or drop
                    // one. New ones come sealed in a session ([`Connector::trust_tier1s`]).
                    let known = &self.cfg.tier1s;
                    let mut next = Vec::with_capacity(known.len());
                    for a in list.iter().chain(known) {
                        if known.contains(a) && !next.contains(a) {
                            next.push(*a);
                        }
                    }
                    next
                } else {
                    list.clone()
                };
                self.take_tier1s(next);
            }
            _ => return false,
        }
        true
    }

    /// The tier-1 list a tier-2 sent sealed in this client's session (authenticated: only a
    /// holder of the cluster key could have agreed the session's keys): the tier-1s it names
    /// that this client did not know are added after those it knows, at most
    /// [`MAX_TIER1_LIST`] in all. The order stays the tier-1s' to give (their list puts the
    /// least loaded first, claims 22-23); a tier-1 the tier-2 does not name stays too (it
    /// may still be alive).
    pub fn trust_tier1s(&mut self, list: &[SocketAddr]) {
        let mut next = self.cfg.tier1s.clone();
        for a in list {
            if !next.contains(a) {
                next.push(*a);
            }
        }
        next.truncate(MAX_TIER1_LIST);
        self.take_tier1s(next);
    }

    fn take_tier1s(&mut self, list: Vec<SocketAddr>) {
        if !list.is_empty() && list != self.cfg.tier1s {
            self.cfg.tier1s = list.clone();
            self.current = 0;
            self.list_fresh = true;
            self.events.push_back(ClientEvent::Tier1List(list));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Connecting { deadline, .. } = self.state {
            if deadline <= now {
                // No offer: fail over to the next tier-1 (claim 23).
                // (Seed 487 of the explorer: a draining tier-1 answers with a list that puts
                // a live one first; moving past the head after adopting it skipped that one,
                // and two draining tier-1s sent the client back and forth between them.)
                self.current = if std::mem::take(&mut self.list_fresh) {
                    0
                } else {
                    (self.current + 1) % self.cfg.tier1s.len().max(1)
                };
                self.send_request(now);
            }
        }
    }

    /// The next datagram to send, written into `buf`, and where to. `now` is taken as every
    /// machine's `poll_transmit` takes it; these machines queue what they send as inputs
    /// arrive, so nothing here depends on it.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.outbox.poll_transmit(buf)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { deadline, .. } => Some(deadline),
            _ => None,
        }
    }
}
