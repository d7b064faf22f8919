use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::outbox::Outbox;
use crate::proto::wire::{
    ConnectForward, Handover, HeartbeatAck, ManagerChange, Message, PeerStatus,
};
use crate::time::{period, Instant};

/// How a [`Tier1`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier1Config {
    pub id: u32,
    /// Its own address, as peers and clients reach it.
    pub addr: SocketAddr,
    /// The other tier-1 servers: id and address.
    pub peers: Vec<(u32, SocketAddr)>,
    /// A tier-2 silent this long is no longer managed.
    pub tier2_timeout: Duration,
    pub peer_interval: Duration,
    /// A peer silent this long is taken for dead.
    pub peer_timeout: Duration,
    /// A hand-over request unanswered this long is sent again.
    pub handover_retry: Duration,
    /// How a connection request picks its tier-2.
    pub selection: Selection,
    /// Seed of the random pick (only [`Selection::Random`] draws).
    pub seed: u64,
    /// Balance: hand a tier-2 to a peer whose tier-2s carry on average more than `ratio`
    /// times the sessions of ours (and at least `min_gap` more). `None` disables it.
    pub balance: Option<Balance>,
}

/// How a tier-1 places a client on a tier-2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The seed's way: forward to every tier-2; the least loaded answers first and wins.
    #[default]
    FirstResponder,
    /// Forward to one tier-2 picked at random (a baseline).
    Random,
    /// Forward to the tier-2s in turn (a baseline).
    RoundRobin,
}

/// When a tier-1 gives tier-2s to a busier peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub ratio: f64,
    pub min_gap: f64,
    pub interval: Duration,
}

impl Tier1Config {
    pub fn new(id: u32, addr: SocketAddr, peers: Vec<(u32, SocketAddr)>) -> Self {
        Tier1Config {
            id,
            addr,
            peers,
            tier2_timeout: Duration::from_millis(1000),
            peer_interval: Duration::from_millis(250),
            peer_timeout: Duration::from_millis(1000),
            handover_retry: Duration::from_millis(200),
            selection: Selection::FirstResponder,
            seed: u64::from(id),
            balance: Some(Balance {
                ratio: 1.5,
                min_gap: 4.0,
                interval: Duration::from_secs(2),
            }),
        }
    }
}

/// Something the tier-1's operator should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tier1Event {
    /// This tier-1 now manages the tier-2.
    Managing { tier2: u32, epoch: u64 },
    /// This tier-1 no longer manages the tier-2 (handed over, or silent).
    Released { tier2: u32, to: Option<u32> },
    /// A drain finished: no tier-2 is left.
    Drained,
}

#[derive(Debug, Clone)]
struct Managed {
    addr: SocketAddr,
    epoch: u64,
    sessions: u32,
    capacity: u32,
    last_seen: Instant,
}

#[derive(Debug, Clone)]
struct Handing {
    to: u32,
    to_addr: SocketAddr,
    tier2_addr: SocketAddr,
    /// The epoch the tier-2 gets with its new manager.
    epoch: u64,
    accepted: bool,
    retry_at: Instant,
}

#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    last_seen: Option<Instant>,
    status: Option<PeerStatus>,
}

/// A tier-1 server. See the module docs of [`crate::cluster`].
#[derive(Debug)]
pub struct Tier1 {
    cfg: Tier1Config,
    managed: BTreeMap<u32, Managed>,
    handing: BTreeMap<u32, Handing>,
    peers: BTreeMap<u32, Peer>,
    draining: bool,
    next_status: Instant,
    next_balance: Instant,
    rng: ChaCha8Rng,
    next_pick: usize,
    outbox: Outbox,
    events: VecDeque<Tier1Event>,
    /// Secure mode: answers to unverified sources, the offers of the tier-2s it asks
    /// included, no larger than what they sent; the wire bytes of one offer.
    bounded_answers: Option<usize>,
}

impl Tier1 {
    pub fn new(mut cfg: Tier1Config, now: Instant) -> Self {
        cfg.tier2_timeout = period(cfg.tier2_timeout);
        cfg.peer_interval = period(cfg.peer_interval);
        cfg.peer_timeout = period(cfg.peer_timeout);
        cfg.handover_retry = period(cfg.handover_retry);
        if let Some(b) = cfg.balance.as_mut() {
            b.interval = period(b.interval);
        }
        let peers = cfg
            .peers
            .iter()
            .filter(|(id, _)| *id != cfg.id)
            .map(|&(id, addr)| {
                (
                    id,
                    Peer {
                        addr,
                        last_seen: None,
                        status: None,
                    },
                )
            })
            .collect();
        let next_balance = now + cfg.balance.map_or(Duration::ZERO, |b| b.interval);
        Tier1 {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            managed: BTreeMap::new(),
            handing: BTreeMap::new(),
            peers,
            draining: false,
            next_status: now,
            next_balance,
            next_pick: 0,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            bounded_answers: None,
        }
    }

    /// Secure mode: what a connection request (whose source address nobody has verified)
    /// draws towards its source, this tier-1's list and the offers of the tier-2s it asks,
    /// is never larger than the request, so a forged source cannot be flooded with more bytes
    /// than the forger spent. A request asks as many tier-2s as its size pays offers for
    /// (clients with keys pad theirs to
    /// [`PADDED_REQUEST_LEN`](crate::proto::wire::PADDED_REQUEST_LEN): a dozen), the least
    /// loaded first; the list gets what is left. (Forwards go to registered tier-2s only.)
    pub fn bound_answers(&mut self) {
        self.bounded_answers = Some(crate::secure::handshake::offer_len());
    }

    pub fn id(&self) -> u32 {
        self.cfg.id
    }

    /// The tier-2s this tier-1 manages now.
    pub fn managed(&self) -> impl Iterator<Item = u32> + '_ {
        self.managed.keys().copied()
    }

    /// Sessions across the managed tier-2s (heartbeats say what they like: the sum saturates).
    pub fn sessions(&self) -> u32 {
        let sum: u64 = self.managed.values().map(|m| u64::from(m.sessions)).sum();
        u32::try_from(sum).unwrap_or(u32::MAX)
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    pub fn poll_event(&mut self) -> Option<Tier1Event> {
        self.events.pop_front()
    }

    /// Starts handing every managed tier-2 to peers, one at a time, before downtime.
    pub fn drain(&mut self, now: Instant) {
        self.draining = true;
        self.next_status = now;
        self.start_handover(now);
    }

    fn live_peers(&self, now: Instant) -> impl Iterator<Item = (u32, &Peer)> + '_ {
        let timeout = self.cfg.peer_timeout;
        self.peers
            .iter()
            .filter(move |(_, p)| {
                p.last_seen
                    .is_some_and(|t| now.saturating_duration_since(t) < timeout)
                    && p.status.is_some_and(|s| !s.draining)
            })
            .map(|(&id, p)| (id, p))
    }

    /// Mean sessions per tier-2 of a group.
    fn mean_load(sessions: u32, tier2s: u32) -> f64 {
        f64::from(sessions) / f64::from(tier2s.max(1))
    }

    /// The tier-1 list a client should use: live tier-1s, the least loaded first, this one
    /// last when draining.
    fn tier1_list(&self, now: Instant) -> Vec<SocketAddr> {
        let mut list: Vec<(bool, f64, u32, SocketAddr)> = self
            .live_peers(now)
            .filter_map(|(id, p)| {
                p.status
                    .map(|s| (false, Self::mean_load(s.sessions, s.tier2s), id, p.addr))
            })
            .collect();
        list.push((
            self.draining,
            Self::mean_load(self.sessions(), self.managed.len() as u32),
            self.cfg.id,
            self.cfg.addr,
        ));
        list.sort_by(|a, b| {
            (a.0, a.1, a.2)
                .partial_cmp(&(b.0, b.1, b.2))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        list.into_iter().map(|x| x.3).collect()
    }

    /// Begins handing one managed tier-2 to the least loaded live peer, if none is in flight.
    fn start_handover(&mut self, now: Instant) {
        if self.handing.values().any(|h| !h.accepted) {
            return;
        }
        let Some((&tier2, m)) = self
            .managed
            .iter()
            .find(|(t, _)| !self.handing.contains_key(t))
        else {
            return;
        };
        let (addr, epoch) = (m.addr, m.epoch);
        if let Some((to, to_addr)) = self.least_loaded_peer(now) {
            self.request_handover(now, tier2, addr, epoch, to, to_addr);
        }
    }

    /// The live, not draining peer whose tier-2s carry the fewest sessions on average.
    fn least_loaded_peer(&self, now: Instant) -> Option<(u32, SocketAddr)> {
        self.live_peers(now)
            .filter_map(|(id, p)| {
                p.status
                    .map(|s| (Self::mean_load(s.sessions, s.tier2s), id, p.addr))
            })
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .map(|(_, id, addr)| (id, addr))
    }

    fn request_handover(
        &mut self,
        now: Instant,
        tier2: u32,
        tier2_addr: SocketAddr,
        epoch: u64,
        to: u32,
        to_addr: SocketAddr,
    ) {
        let h = Handing {
            to,
            to_addr,
            tier2_addr,
            epoch: epoch.saturating_add(1),
            accepted: false,
            retry_at: now + self.cfg.handover_retry,
        };
        self.send_handover_request(tier2, &h);
        self.handing.insert(tier2, h);
    }

    fn send_handover_request(&mut self, tier2: u32, h: &Handing) {
        let req = Handover {
            tier1: self.cfg.id,
            tier2,
            tier2_addr: h.tier2_addr,
            epoch: h.epoch,
        };
        self.outbox.send(h.to_addr, &Message::HandoverRequest(req));
    }

    fn send_manager_change(&mut self, tier2: u32, h: &Handing) {
        let change = ManagerChange {
            tier2,
            manager: h.to,
            manager_addr: h.to_addr,
            epoch: h.epoch,
        };
        self.outbox
            .send(h.tier2_addr, &Message::ManagerChange(change));
    }

    /// Handles a control message; returns false when it is not one for a tier-1.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) -> bool {
        match msg {
            Message::ConnectRequest(r) => {
                let fwd = ConnectForward {
                    client: r.client,
                    attempt: r.attempt,
                    boot_seq: r.boot_seq,
                    client_addr: from,
                    hello: r.hello,
                };
                let mut targets: Vec<(u32, &Managed)> = self
                    .managed
                    .iter()
                    .filter(|(t, _)| !self.handing.get(t).is_some_and(|h| h.accepted))
                    .map(|(&t, m)| (t, m))
                    .collect();
                // The seed's fan-out, or one tier-2 picked without asking (the baselines the
                // experiments compare it with).
                match self.cfg.selection {
                    Selection::FirstResponder => {}
                    Selection::Random if !targets.is_empty() => {
                        let i = self.rng.random_range(0..targets.len());
                        targets = vec![targets[i]];
                    }
                    Selection::RoundRobin if !targets.is_empty() => {
                        let i = self.next_pick % targets.len();
                        self.next_pick = self.next_pick.wrapping_add(1);
                        targets = vec![targets[i]];
                    }
                    _ => {}
                }
                // The source of a request is not verified (it may be forged): in secure mode
                // it gets no more bytes than it sent, offers and list together.
                let mut room = usize::MAX;
                if let Some(offer) = self.bounded_answers {
                    let asked = msg.encoded_len();
                    let fits = asked / offer.max(1);
                    if targets.len() > fits {
                        // The least loaded first: the ones that would answer first anyway.
                        targets.sort_by(|a, b| {
                            let load =
                                |m: &Managed| f64::from(m.sessions) / f64::from(m.capacity.max(1));
                            load(a.1).total_cmp(&load(b.1)).then(a.0.cmp(&b.0))
                        });
                        targets.truncate(fits);
                    }
                    room = asked - targets.len() * offer;
                }
                let targets: Vec<SocketAddr> = targets.iter().map(|(_, m)| m.addr).collect();
                for to in targets {
                    self.outbox.send(to, &Message::ConnectForward(fwd));
                }
                let mut list = self.tier1_list(now);
                // Sorted best first: the tail goes.
                while !list.is_empty() && Message::Tier1List(list.clone()).encoded_len() > room {
                    list.pop();
                }
                if !list.is_empty() {
                    self.outbox.send(from, &Message::Tier1List(list));
                }
            }
            Message::Heartbeat(hb) => {
                if let Some(h) = self.handing.get(&hb.tier2) {
                    if h.accepted && hb.epoch < h.epoch {
                        // It has not heard of its new manager yet: tell it again.
                        let h = h.clone();
                        self.send_manager_change(hb.tier2, &h);
                        return true;
                    }
                    if hb.epoch >= h.epoch {
                        // It came back to us later (its new manager died): ours again.
                        self.handing.remove(&hb.tier2);
                    }
                }
                let new = !self.managed.contains_key(&hb.tier2);
                if new && self.draining {
                    // A draining tier-1 takes no new tier-2: point it at a live peer.
                    if let Some((to, to_addr)) = self.least_loaded_peer(now) {
                        let h = Handing {
                            to,
                            to_addr,
                            tier2_addr: from,
                            epoch: hb.epoch.saturating_add(1),
                            accepted: true,
                            retry_at: now,
                        };
                        self.send_manager_change(hb.tier2, &h);
                        return true;
                    }
                }
                self.managed.insert(
                    hb.tier2,
                    Managed {
                        addr: from,
                        epoch: hb.epoch,
                        sessions: hb.sessions,
                        capacity: hb.capacity,
                        last_seen: now,
                    },
                );
                if new {
                    self.events.push_back(Tier1Event::Managing {
                        tier2: hb.tier2,
                        epoch: hb.epoch,
                    });
                }
                let ack = HeartbeatAck {
                    tier1: self.cfg.id,
                    tier2: hb.tier2,
                    epoch: hb.epoch,
                };
                self.outbox.send(from, &Message::HeartbeatAck(ack));
                if self.draining {
                    self.start_handover(now);
                }
            }
            Message::HandoverRequest(req) => {
                if !self.draining {
                    let accept = Handover {
                        tier1: self.cfg.id,
                        ..*req
                    };
                    self.outbox.send(from, &Message::HandoverAccept(accept));
                }
            }
            Message::HandoverAccept(acc) => {
                let Some(h) = self.handing.get_mut(&acc.tier2) else {
                    return true;
                };
                if h.to != acc.tier1 || h.epoch != acc.epoch {
                    return true;
                }
                let first = !h.accepted;
                h.accepted = true;
                h.retry_at = now + self.cfg.handover_retry;
                let h = h.clone();
                self.send_manager_change(acc.tier2, &h);
                if first && self.managed.remove(&acc.tier2).is_some() {
                    self.events.push_back(Tier1Event::Released {
                        tier2: acc.tier2,
                        to: Some(h.to),
                    });
                }
                if self.draining {
                    self.start_handover(now);
                }
            }
            Message::PeerStatus(s) => {
                if let Some(p) = self.peers.get_mut(&s.tier1) {
                    p.last_seen = Some(now);
                    p.status = Some(*s);
                    p.addr = from;
                }
            }
            _ => return false,
        }
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Forget silent tier-2s.
        let silent: Vec<u32> = self
            .managed
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) >= self.cfg.tier2_timeout)
            .map(|(&t, _)| t)
            .collect();
        for tier2 in silent {
            self.managed.remove(&tier2);
            self.events
                .push_back(Tier1Event::Released { tier2, to: None });
        }
        // Hand-overs: retry requests, give up on those whose tier-2 moved on or went silent.
        let ids: Vec<u32> = self.handing.keys().copied().collect();
        for tier2 in ids {
            let Some(h) = self.handing.get(&tier2).cloned() else {
                continue;
            };
            if h.retry_at > now {
                continue;
            }
            if !h.accepted {
                let peer_alive = self.live_peers(now).any(|(id, _)| id == h.to);
                if self.managed.contains_key(&tier2) && peer_alive {
                    if let Some(h) = self.handing.get_mut(&tier2) {
                        h.retry_at = now + self.cfg.handover_retry;
                    }
                    self.send_handover_request(tier2, &h);
                } else {
                    // The tier-2 left us, or the peer died or began draining: give this
                    // hand-over up; a drain or the next balance round picks again.
                    self.handing.remove(&tier2);
                }
            } else {
                // Accepted: keep the record while the tier-2 might still heartbeat us with
                // its old epoch; after a tier-2 timeout without that, it has moved.
                if now.saturating_duration_since(h.retry_at) >= self.cfg.tier2_timeout {
                    self.handing.remove(&tier2);
                }
            }
        }
        if self.draining {
            if self.managed.is_empty() && self.handing.values().all(|h| h.accepted) {
                if !self.events.contains(&Tier1Event::Drained) {
                    self.events.push_back(Tier1Event::Drained);
                }
            } else {
                self.start_handover(now);
            }
        }
        if self.next_status <= now {
            let status = PeerStatus {
                tier1: self.cfg.id,
                tier2s: self.managed.len() as u32,
                sessions: self.sessions(),
                capacity: u32::try_from(
                    self.managed
                        .values()
                        .map(|m| u64::from(m.capacity))
                        .sum::<u64>(),
                )
                .unwrap_or(u32::MAX),
                draining: self.draining,
            };
            let peers: Vec<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
            for to in peers {
                self.outbox.send(to, &Message::PeerStatus(status));
            }
            self.next_status = now + self.cfg.peer_interval;
        }
        if let Some(b) = self.cfg.balance {
            if self.next_balance <= now {
                self.next_balance = now + b.interval;
                self.balance(now, b);
            }
        }
    }

    /// Gives one tier-2 to the busiest live peer when its tier-2s carry clearly more sessions
    /// on average than ours: that peer then has more tier-2s to spread its clients over.
    fn balance(&mut self, now: Instant, b: Balance) {
        if self.draining || self.managed.len() < 2 || !self.handing.is_empty() {
            return;
        }
        let mine = Self::mean_load(self.sessions(), self.managed.len() as u32);
        let busiest = self
            .live_peers(now)
            .filter_map(|(id, p)| {
                p.status
                    .map(|s| (Self::mean_load(s.sessions, s.tier2s), id, p.addr))
            })
            .max_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let Some((theirs, to, to_addr)) = busiest else {
            return;
        };
        if theirs > mine * b.ratio && theirs - mine >= b.min_gap {
            // The least loaded of ours helps them most.
            if let Some((&tier2, m)) = self.managed.iter().min_by_key(|(id, m)| (m.sessions, **id))
            {
                let (addr, epoch) = (m.addr, m.epoch);
                self.request_handover(now, tier2, addr, epoch, to, to_addr);
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
        let tier2s = self
            .managed
            .values()
            .map(|m| m.last_seen + self.cfg.tier2_timeout);
        let handing = self.handing.values().map(|h| {
            if h.accepted {
                h.retry_at + self.cfg.tier2_timeout
            } else {
                h.retry_at
            }
        });
        let balance = self.cfg.balance.map(|_| self.next_balance);
        tier2s
            .chain(handing)
            .chain([Some(self.next_status), balance].into_iter().flatten())
            .min()
    }
}
