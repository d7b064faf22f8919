use crate::mutants::{self, Mutant};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outbox::Outbox;
use crate::proto::wire::{ConnectOffer, Heartbeat, Message, MAX_TIER1_LIST};
use crate::secure::{Attempt, Channel, Gate, GateStats};
use crate::time::{period, Instant};

/// How long a tier-2 waits before answering a forwarded request: `base + per_session * load`,
/// so the least loaded tier-2 answers first (claim 17).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfferDelay {
    pub base_ms: f64,
    pub per_session_ms: f64,
    /// The longest delay, whatever the load: an offer must reach the client well within its
    /// connect timeout (500 ms by default), or a busy but healthy tier-2 would never be taken.
    pub max_ms: f64,
}

impl Default for OfferDelay {
    fn default() -> Self {
        OfferDelay {
            base_ms: 1.0,
            per_session_ms: 2.0,
            max_ms: 200.0,
        }
    }
}

impl OfferDelay {
    pub fn delay(&self, load: u32) -> Duration {
        let ms = (self.base_ms + self.per_session_ms * f64::from(load)).min(self.max_ms);
        Duration::try_from_secs_f64(ms.max(0.0) / 1e3).unwrap_or(Duration::MAX)
    }
}

/// How a [`Tier2`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier2Config {
    pub id: u32,
    /// Every tier-1 it may register with, its first manager first.
    pub tier1s: Vec<SocketAddr>,
    /// Sessions it takes at most; at capacity it does not answer requests.
    pub capacity: u32,
    pub offer_delay: OfferDelay,
    pub heartbeat_interval: Duration,
    /// No heartbeat answer for this long: the manager is taken for dead.
    pub manager_timeout: Duration,
    /// An offer not accepted or released within this is dropped.
    pub reservation_ttl: Duration,
}

impl Tier2Config {
    pub fn new(id: u32, tier1s: Vec<SocketAddr>) -> Self {
        Tier2Config {
            id,
            tier1s,
            capacity: 1000,
            offer_delay: OfferDelay::default(),
            heartbeat_interval: Duration::from_millis(200),
            manager_timeout: Duration::from_millis(1000),
            reservation_ttl: Duration::from_millis(2000),
        }
    }
}

/// Something the tier-2's application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tier2Event {
    /// A client accepted this tier-2's offer.
    /// `boot_seq` is the capture sequence number the session's frame ids continue from (what
    /// the client's request said, authenticated by its hello when the cluster has keys);
    /// `None` for a client taken without a reservation (only without keys).
    /// `addr` is where the session is answered: with keys, the address the offer (with the
    /// handshake's answer) went to, which the client proved it reads by agreeing the keys;
    /// without, where the accept came from.
    SessionAccepted {
        client: u32,
        addr: SocketAddr,
        boot_seq: Option<u64>,
    },
    /// The tier-2's manager changed.
    ManagerChanged { manager: SocketAddr, epoch: u64 },
}

#[derive(Debug)]
struct Reservation {
    attempt: u32,
    /// From the forward (and its hello): see [`Tier2Event::SessionAccepted`].
    boot_seq: u64,
    client_addr: SocketAddr,
    offer_at: Option<Instant>,
    expires: Instant,
    /// The handshake reply the offer carries (empty without keys).
    reply: Vec<u8>,
    /// The session's keys, handed over once the client accepts.
    channel: Option<Channel>,
}

impl Reservation {
    /// Where the accepted session is answered, its accept (or first datagram) having come
    /// from `from`: see [`Tier2Event::SessionAccepted`].
    fn session_addr(&self, from: SocketAddr) -> SocketAddr {
        if self.channel.is_some() {
            self.client_addr
        } else {
            from
        }
    }
}

/// A tier-2 server's cluster logic. Frames go to its [`Receiver`](crate::proto::Receiver);
/// this handles the control messages. See the module docs of [`crate::cluster`].
#[derive(Debug)]
pub struct Tier2 {
    cfg: Tier2Config,
    manager: usize,
    epoch: u64,
    last_ack: Instant,
    next_heartbeat: Instant,
    reservations: BTreeMap<u32, Reservation>,
    /// Sessions the receiver holds, as the application last said.
    sessions: u32,
    outbox: Outbox,
    events: VecDeque<Tier2Event>,
    /// With keys: admits only registered devices (see [`crate::secure`]).
    gate: Option<Gate>,
    /// Keys of sessions accepted and not yet taken by the application.
    channels: BTreeMap<u32, Channel>,
}

impl Tier2 {
    pub fn new(mut cfg: Tier2Config, now: Instant) -> Self {
        cfg.heartbeat_interval = period(cfg.heartbeat_interval);
        cfg.manager_timeout = period(cfg.manager_timeout);
        cfg.reservation_ttl = period(cfg.reservation_ttl);
        Tier2 {
            cfg,
            manager: 0,
            epoch: 0,
            last_ack: now,
            next_heartbeat: now,
            reservations: BTreeMap::new(),
            sessions: 0,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            gate: None,
            channels: BTreeMap::new(),
        }
    }

    /// Admits only the devices `gate` knows: a connection request whose handshake does not
    /// verify gets no reservation.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Whether sessions are authenticated and encrypted.
    pub fn is_secure(&self) -> bool {
        self.gate.is_some()
    }

    /// What the gate admitted and refused (`None` without keys).
    pub fn gate_stats(&self) -> Option<GateStats> {
        self.gate.as_ref().map(Gate::stats)
    }

    /// The keys of `client`'s reservation: a sealed datagram that arrives before its accept
    /// (the accept was lost) is opened with them.
    pub fn reserved_channel(&mut self, client: u32) -> Option<&mut Channel> {
        self.reservations.get_mut(&client)?.channel.as_mut()
    }

    /// Whether `client` holds a reservation here (an offer it has not yet accepted).
    pub fn is_reserved(&self, client: u32) -> bool {
        self.reservations.contains_key(&client)
    }

    /// `client` proved it took this tier-2's offer (a datagram opened with its reservation's
    /// keys): accepted as if its accept had arrived from `addr` (a session with keys is
    /// answered where its offer went, see [`Tier2Event::SessionAccepted`]).
    pub fn confirm(&mut self, client: u32, addr: SocketAddr) {
        if let Some(r) = self.reservations.remove(&client) {
            let addr = r.session_addr(addr);
            if let Some(channel) = r.channel {
                self.channels.insert(client, channel);
            }
            self.events.push_back(Tier2Event::SessionAccepted {
                client,
                addr,
                boot_seq: Some(r.boot_seq),
            });
        }
    }

    /// The keys of `client`'s newly accepted session (once, after
    /// [`Tier2Event::SessionAccepted`]).
    pub fn take_channel(&mut self, client: u32) -> Option<Channel> {
        self.channels.remove(&client)
    }

    pub fn id(&self) -> u32 {
        self.cfg.id
    }

    /// The current manager's address.
    pub fn manager(&self) -> Option<SocketAddr> {
        self.cfg.tier1s.get(self.manager).copied()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The tier-1s this tier-2 knows (configured, or named by a manager change), its manager
    /// first: what it tells its clients (see [`crate::proto::wire::SessionTier1s`]).
    pub fn tier1s(&self) -> Vec<SocketAddr> {
        let manager = self.manager();
        manager
            .into_iter()
            .chain(
                self.cfg
                    .tier1s
                    .iter()
                    .copied()
                    .filter(|&a| Some(a) != manager),
            )
            .collect()
    }

    /// How many tier-1 servers this tier-2 knows of.
    pub fn known_tier1s(&self) -> usize {
        self.cfg.tier1s.len()
    }

    /// Sessions plus open reservations: what the offer delay and heartbeats report.
    pub fn load(&self) -> u32 {
        self.sessions
            .saturating_add(u32::try_from(self.reservations.len()).unwrap_or(u32::MAX))
    }

    /// Sessions it takes at most.
    pub fn capacity(&self) -> u32 {
        self.cfg.capacity
    }

    /// Tells the tier-2 how many sessions its receiver holds.
    pub fn set_sessions(&mut self, sessions: u32) {
        self.sessions = sessions;
    }

    pub fn poll_event(&mut self) -> Option<Tier2Event> {
        self.events.pop_front()
    }

    fn send_heartbeat(&mut self, now: Instant) {
        if let Some(to) = self.manager() {
            let hb = Heartbeat {
                tier2: self.cfg.id,
                epoch: self.epoch,
                sessions: self.load(),
                capacity: self.cfg.capacity,
            };
            self.outbox.send(to, &Message::Heartbeat(hb));
        }
        self.next_heartbeat = now + self.cfg.heartbeat_interval;
    }

    fn switch_manager(&mut self, now: Instant, index: usize, epoch: u64) {
        self.manager = index;
        self.epoch = epoch;
        self.last_ack = now;
        if let Some(manager) = self.manager() {
            self.events
                .push_back(Tier2Event::ManagerChanged { manager, epoch });
        }
        self.send_heartbeat(now);
    }

    /// Handles a control message; returns false when it is not one for a tier-2.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) -> bool {
        match msg {
            Message::ConnectForward(f) => {
                if let Some(r) = self.reservations.get(&f.client) {
                    if r.attempt == f.attempt {
                        return true; // a duplicate forward: the reservation stands
                    }
                }
                if self.load() >= self.cfg.capacity {
                    return true; // full: no answer (claim 17: the others answer first)
                }
                let (reply, channel) = match &mut self.gate {
                    None => (Vec::new(), None),
                    Some(gate) => {
                        let at = Attempt::new(f.client, f.attempt, f.boot_seq);
                        match gate.admit(now, f.client_addr.ip(), at, self.cfg.id, f.hello) {
                            Ok((reply, channel)) => (reply, Some(channel)),
                            Err(e) => {
                                tracing::debug!(client = f.client, %e, "connection refused");
                                return true; // unknown or unproven device: no reservation
                            }
                        }
                    }
                };
                let delay = self.cfg.offer_delay.delay(self.load());
                self.reservations.insert(
                    f.client,
                    Reservation {
                        attempt: f.attempt,
                        boot_seq: f.boot_seq,
                        client_addr: f.client_addr,
                        offer_at: Some(now + delay),
                        expires: now + delay + self.cfg.reservation_ttl,
                        reply,
                        channel,
                    },
                );
            }
            Message::ConnectAccept(a) if a.tier2 == self.cfg.id => {
                let known = self
                    .reservations
                    .get(&a.client)
                    .is_some_and(|r| r.attempt == a.attempt);
                // Without a reservation (it expired, or the accept is a duplicate) the client
                // is still welcome while there is room, unless sessions need keys: those come
                // only from a reservation's handshake.
                if known || (self.gate.is_none() && self.load() < self.cfg.capacity) {
                    let r = self.reservations.remove(&a.client);
                    let boot_seq = r.as_ref().map(|r| r.boot_seq);
                    // The plain accept proves nothing of where it came from; a session with
                    // keys is answered where its offer went (see `SessionAccepted`).
                    let addr = r.as_ref().map_or(from, |r| r.session_addr(from));
                    if let Some(channel) = r.and_then(|r| r.channel) {
                        self.channels.insert(a.client, channel);
                    }
                    self.events.push_back(Tier2Event::SessionAccepted {
                        client: a.client,
                        addr,
                        boot_seq,
                    });
                }
            }
            Message::ConnectRelease(r) if r.tier2 == self.cfg.id => {
                if self
                    .reservations
                    .get(&r.client)
                    .is_some_and(|x| x.attempt == r.attempt)
                {
                    self.reservations.remove(&r.client);
                }
            }
            Message::HeartbeatAck(a) if a.tier2 == self.cfg.id => {
                if Some(from) == self.manager() && a.epoch == self.epoch {
                    self.last_ack = now;
                }
            }
            // Only the current manager hands this tier-2 on (a hand-over, or a draining
            // tier-1 redirecting it).
            Message::ManagerChange(c) if c.tier2 == self.cfg.id && Some(from) == self.manager() => {
                if c.epoch > self.epoch && !mutants::active(Mutant::StaleManager) {
                    let index = match self.cfg.tier1s.iter().position(|&a| a == c.manager_addr) {
                        Some(i) => i,
                        None if self.cfg.tier1s.len() < MAX_TIER1_LIST => {
                            self.cfg.tier1s.push(c.manager_addr);
                            self.cfg.tier1s.len() - 1
                        }
                        None => return true,
                    };
                    self.switch_manager(now, index, c.epoch);
                }
            }
            _ => return false,
        }
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.offer_at.is_some_and(|t| t <= now))
            .map(|(&c, _)| c)
            .collect();
        let load = self.load();
        for client in due {
            if let Some(r) = self.reservations.get_mut(&client) {
                r.offer_at = None;
                let offer = ConnectOffer {
                    client,
                    attempt: r.attempt,
                    tier2: self.cfg.id,
                    load,
                    reply: &r.reply,
                };
                self.outbox
                    .send(r.client_addr, &Message::ConnectOffer(offer));
            }
        }
        self.reservations.retain(|_, r| r.expires > now);
        if now.saturating_duration_since(self.last_ack) >= self.cfg.manager_timeout
            && !self.cfg.tier1s.is_empty()
        {
            // The manager stopped answering: register with the next tier-1.
            let next = (self.manager + 1) % self.cfg.tier1s.len();
            self.switch_manager(now, next, self.epoch.saturating_add(1));
        }
        if self.next_heartbeat <= now {
            self.send_heartbeat(now);
        }
    }

    /// The next datagram to send, written into `buf`, and where to. `now` is taken as every
    /// machine's `poll_transmit` takes it; these machines queue what they send as inputs
    /// arrive, so nothing here depends on it.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.outbox.poll_transmit(buf)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let offers = self.reservations.values().filter_map(|r| r.offer_at);
        let expiries = self.reservations.values().map(|r| r.expires);
        offers
            .chain(expiries)
            .chain([
                self.next_heartbeat,
                self.last_ack + self.cfg.manager_timeout,
            ])
            .min()
    }

    /// Releases a client's reservation as if it said so (used when its session ends).
    pub fn forget(&mut self, client: u32) {
        self.reservations.remove(&client);
    }
}
