//! The addresses a tier-2 answers a session on: the paths it validated.
//!
//! A sealed datagram proves who sealed it, not where its sender is. Before this table the
//! receiver sent a session's feedback (ACKs, NACKs, commands, stored notices) to wherever the
//! session's last datagram came from, so anyone who saw one sealed datagram on the way could
//! send a copy from another address ahead of the original and take the session's feedback
//! there (the copy opens: it is authentic, and the original then counts as its replay). Now a
//! session answers only on paths it validated, as QUIC does when a connection migrates:
//!
//! - The first path is the address the handshake's offer went to (the client could not have
//!   agreed the keys without reading it there).
//! - An authenticated datagram from any other address is taken (its frames are the client's,
//!   whoever carried them) but answered on the session's validated path heard from last, and
//!   that address gets a [`PathProbe`](crate::proto::wire::PathProbe) challenge, sealed, whose
//!   token the client must echo from that very address. Then it is a path too, and the one
//!   answered on while the client sends from it: a client whose NAT rebound, or that moved to
//!   another radio, keeps its session after one round trip, losing no frame (its segments
//!   were taken all along; only feedback waited on the old path for that round trip).
//! - A bonded session's ACKs and NACKs also go, each sealed on its own, by every other
//!   validated path heard from within [`LIVE`] (`role::Tier2Server`): a NACK lost on one
//!   uplink arrives by another. A path the session left gets nothing.
//!
//! What answering a stranger costs: nothing for a datagram that does not open (it never
//! reaches this table). For an authentic one sent from an unvalidated address (a copy, or a
//! forged source), at most as many challenge bytes to that address as it sent from it (the
//! anti-amplification limit of QUIC's RFC 9000, section 8), a challenge at most every
//! [`RETRY`], and a bounded table: [`MAX_PENDING`] unvalidated addresses and [`MAX_PATHS`]
//! validated ones per session, dropped with the session's keys.
//!
//! A session keeps up to [`MAX_PATHS`] validated paths (a bonded camera's two or three
//! modems, issue 21), forgetting the one heard from least recently. Sans-IO like the rest:
//! `now` and addresses in, routes and tokens out. Without keys (the seed's plain sessions)
//! nothing can be proved, and the receiver answers wherever the last datagram came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::wire::UDP_IP_OVERHEAD;
use crate::time::Instant;

/// Validated paths a session keeps: a bonded camera has two or three modems.
pub const MAX_PATHS: usize = 3;
/// Unvalidated addresses with a challenge out, per session; a new one replaces the one heard
/// from least recently.
pub const MAX_PENDING: usize = 4;
/// An unanswered challenge is sent again after this, when the address sent more since (and
/// its byte allowance covers it).
pub const RETRY: Duration = Duration::from_millis(250);

/// A validated path heard from this recently is live ([`PathTable::live_paths`]).
pub const LIVE: Duration = Duration::from_millis(500);

/// What the table did, for the tier-2's metrics and summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PathStats {
    /// Challenges sent.
    pub challenges: u64,
    /// Addresses that answered their challenge and became paths.
    pub validated: u64,
    /// Responses that named no challenge sent to the address they came from.
    pub refused_responses: u64,
    /// Challenges not sent because the address had not sent enough bytes to pay for them.
    pub held_for_amplification: u64,
}

/// Where to answer an authenticated datagram, and whether to challenge its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The address the session's answers go to: the datagram's source when it is a
    /// validated path, else the validated path heard from last.
    pub answer_to: SocketAddr,
    /// A challenge to send the datagram's source now, with this token.
    pub challenge: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Path {
    addr: SocketAddr,
    heard_at: Instant,
    /// Authenticated bytes of the session that came from this address, on the wire (UDP and
    /// IP headers included, as rates are counted): what a path echo reports. Only its growth
    /// means anything.
    received: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    addr: SocketAddr,
    token: u64,
    heard_at: Instant,
    /// Authenticated bytes that came from the address, and challenge bytes sent to it.
    bytes_in: u64,
    bytes_out: u64,
    sent_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct SessionPaths {
    validated: Vec<Path>,
    pending: Vec<Pending>,
}

impl SessionPaths {
    fn answer_to(&self) -> Option<SocketAddr> {
        self.validated
            .iter()
            .max_by_key(|p| p.heard_at)
            .map(|p| p.addr)
    }
}

/// The validated paths of every session a tier-2 holds (see the module docs).
#[derive(Debug, Default)]
pub struct PathTable {
    sessions: BTreeMap<u32, SessionPaths>,
    next_token: u64,
    stats: PathStats,
}

impl PathTable {
    /// Session `session` begins with `addr` validated by its handshake (any paths an earlier
    /// session of the same client had are forgotten).
    pub fn begin(&mut self, now: Instant, session: u32, addr: SocketAddr) {
        let paths = SessionPaths {
            validated: vec![Path {
                addr,
                heard_at: now,
                received: 0,
            }],
            pending: Vec::new(),
        };
        self.sessions.insert(session, paths);
    }

    /// Keeps only the sessions `keep` names (those whose keys the tier-2 still holds).
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.sessions.retain(|&s, _| keep(s));
    }

    /// Whether `addr` is a validated path of `session`.
    pub fn is_validated(&self, session: u32, addr: SocketAddr) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.validated.iter().any(|p| p.addr == addr))
    }

    /// The validated paths of `session`, in the order they were validated.
    pub fn paths(&self, session: u32) -> impl Iterator<Item = SocketAddr> + '_ {
        self.sessions
            .get(&session)
            .into_iter()
            .flat_map(|s| s.validated.iter().map(|p| p.addr))
    }

    /// The validated paths of `session` heard from within [`LIVE`] of `now`: a bonded
    /// camera's uplinks (each pinged every 50 ms). An address the session left (a NAT that
    /// rebound, a modem that died) drops out, so nothing is copied there.
    pub fn live_paths(&self, session: u32, now: Instant) -> impl Iterator<Item = SocketAddr> + '_ {
        self.sessions.get(&session).into_iter().flat_map(move |s| {
            s.validated
                .iter()
                .filter(move |p| now.saturating_duration_since(p.heard_at) <= LIVE)
                .map(|p| p.addr)
        })
    }

    /// Authenticated bytes of `session` received from `addr`, when it is a validated path.
    pub fn received(&self, session: u32, addr: SocketAddr) -> Option<u64> {
        self.sessions
            .get(&session)?
            .validated
            .iter()
            .find(|p| p.addr == addr)
            .map(|p| p.received)
    }

    pub fn stats(&self) -> PathStats {
        self.stats
    }

    /// An authenticated datagram of `len` bytes of `session` came from `from`: where to
    /// answer, and whether to challenge `from` with a challenge of `challenge_len` bytes.
    /// `None` when the session has no paths (it has not begun here).
    pub fn on_datagram(
        &mut self,
        now: Instant,
        session: u32,
        from: SocketAddr,
        len: usize,
        challenge_len: usize,
    ) -> Option<Route> {
        let s = self.sessions.get_mut(&session)?;
        if let Some(p) = s.validated.iter_mut().find(|p| p.addr == from) {
            p.heard_at = now;
            p.received += (len + UDP_IP_OVERHEAD) as u64;
            return Some(Route {
                answer_to: from,
                challenge: None,
            });
        }
        let answer_to = s.answer_to()?;
        let i = match s.pending.iter().position(|p| p.addr == from) {
            Some(i) => i,
            None => {
                if s.pending.len() >= MAX_PENDING {
                    let stalest = (0..s.pending.len()).min_by_key(|&i| s.pending[i].heard_at);
                    if let Some(i) = stalest {
                        s.pending.swap_remove(i);
                    }
                }
                self.next_token = self.next_token.wrapping_add(1);
                s.pending.push(Pending {
                    addr: from,
                    token: self.next_token,
                    heard_at: now,
                    bytes_in: 0,
                    bytes_out: 0,
                    sent_at: None,
                });
                s.pending.len() - 1
            }
        };
        let p = &mut s.pending[i];
        p.heard_at = now;
        p.bytes_in += len as u64;
        let due = p.sent_at.is_none_or(|at| now >= at + RETRY);
        let challenge = if !due {
            None
        } else if p.bytes_out + challenge_len as u64 > p.bytes_in {
            self.stats.held_for_amplification += 1;
            None
        } else {
            p.bytes_out += challenge_len as u64;
            p.sent_at = Some(now);
            self.stats.challenges += 1;
            Some(p.token)
        };
        Some(Route {
            answer_to,
            challenge,
        })
    }

    /// A response with `token` came from `from` (authenticated as `session`'s): true when it
    /// answers the challenge sent to `from`, which is then a validated path of the session
    /// (the one heard from least recently goes if there were [`MAX_PATHS`]).
    pub fn on_response(
        &mut self,
        now: Instant,
        session: u32,
        from: SocketAddr,
        token: u64,
    ) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else {
            self.stats.refused_responses += 1;
            return false;
        };
        let Some(i) = s
            .pending
            .iter()
            .position(|p| p.addr == from && p.token == token && p.sent_at.is_some())
        else {
            self.stats.refused_responses += 1;
            return false;
        };
        let pending = s.pending.swap_remove(i);
        if s.validated.len() >= MAX_PATHS {
            let stalest = (0..s.validated.len()).min_by_key(|&i| s.validated[i].heard_at);
            if let Some(i) = stalest {
                s.validated.remove(i);
            }
        }
        s.validated.push(Path {
            addr: from,
            heard_at: now,
            received: pending.bytes_in,
        });
        self.stats.validated += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 7000))
    }

    fn t(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    const CHALLENGE: usize = 60;

    #[test]
    fn the_handshakes_address_is_answered_and_a_new_one_only_after_its_challenge() {
        let mut paths = PathTable::default();
        assert_eq!(paths.on_datagram(t(0), 7, a(1), 500, CHALLENGE), None);
        paths.begin(t(0), 7, a(1));
        let route = paths.on_datagram(t(1), 7, a(1), 500, CHALLENGE);
        assert_eq!(
            route,
            Some(Route {
                answer_to: a(1),
                challenge: None
            })
        );
        // From a new address: answered on the old path, the new one challenged once.
        let route = paths.on_datagram(t(2), 7, a(2), 500, CHALLENGE).unwrap();
        assert_eq!(route.answer_to, a(1));
        let token = route.challenge.expect("a challenge");
        let again = paths.on_datagram(t(3), 7, a(2), 500, CHALLENGE).unwrap();
        assert_eq!(again.challenge, None, "one challenge per RETRY");
        // A response with the token from elsewhere, or a wrong token, validates nothing.
        assert!(!paths.on_response(t(4), 7, a(3), token));
        assert!(!paths.on_response(t(4), 7, a(2), token + 1));
        assert!(!paths.on_response(t(4), 8, a(2), token));
        assert!(!paths.is_validated(7, a(2)));
        assert_eq!(paths.stats().refused_responses, 3);
        // The right one does, and the new path is answered on while heard from.
        assert!(paths.on_response(t(5), 7, a(2), token));
        assert!(paths.is_validated(7, a(2)));
        assert!(
            !paths.on_response(t(6), 7, a(2), token),
            "a token is used once"
        );
        let route = paths.on_datagram(t(7), 7, a(2), 500, CHALLENGE).unwrap();
        assert_eq!(route.answer_to, a(2));
        assert_eq!(paths.paths(7).collect::<Vec<_>>(), vec![a(1), a(2)]);
    }

    #[test]
    fn challenges_never_send_an_address_more_bytes_than_it_sent() {
        let mut paths = PathTable::default();
        paths.begin(t(0), 7, a(1));
        // 20-byte datagrams: the first challenge waits until 60 bytes came.
        let mut out = 0;
        let mut sent_in = 0;
        for i in 0..40u64 {
            sent_in += 20;
            let route = paths
                .on_datagram(t(i * 100), 7, a(9), 20, CHALLENGE)
                .unwrap();
            assert_eq!(route.answer_to, a(1));
            if route.challenge.is_some() {
                out += CHALLENGE;
            }
            assert!(out <= sent_in, "{out} bytes out for {sent_in} in");
        }
        // Retried every RETRY (250 ms) at most over the 4 s, once the bytes allow it.
        assert!(
            (2..=16).contains(&paths.stats().challenges),
            "{:?}",
            paths.stats()
        );
        assert!(paths.stats().held_for_amplification > 0);
    }

    #[test]
    fn the_table_is_bounded_per_session() {
        let mut paths = PathTable::default();
        paths.begin(t(0), 7, a(1));
        let mut tokens = Vec::new();
        for i in 0..20u8 {
            let route = paths.on_datagram(t(u64::from(i)), 7, a(100 + i), 500, CHALLENGE);
            tokens.push(route.unwrap().challenge.unwrap());
        }
        // Only the last MAX_PENDING addresses are still pending.
        let pending = paths.sessions[&7].pending.len();
        assert_eq!(pending, MAX_PENDING);
        assert!(!paths.on_response(t(30), 7, a(100), tokens[0]));
        for (i, &token) in tokens.iter().enumerate().skip(20 - MAX_PENDING) {
            assert!(paths.on_response(t(40 + i as u64), 7, a(100 + i as u8), token));
        }
        assert_eq!(paths.paths(7).count(), MAX_PATHS);
        // The stalest went: the handshake's path, heard from at 0.
        assert!(!paths.is_validated(7, a(1)));
        paths.retain(|s| s != 7);
        assert_eq!(paths.paths(7).count(), 0);
    }

    proptest::proptest! {
        /// Whatever arrives, from whichever addresses, in whatever order: no unvalidated
        /// address is sent more challenge bytes than it sent, only an address that answered
        /// its own challenge becomes a path, and the table stays within its bounds.
        #[test]
        fn no_sequence_of_datagrams_amplifies_or_validates_a_silent_address(
            steps in proptest::collection::vec(
                (0u8..8, 1usize..1500, proptest::bool::ANY, 0u64..40), 1..300)
        ) {
            let mut paths = PathTable::default();
            paths.begin(t(0), 7, a(0));
            let mut sent_in = [0usize; 8];
            let mut sent_out = [0usize; 8];
            let mut tokens: [Option<u64>; 8] = [None; 8];
            let mut answered = [false; 8];
            let mut ms = 0;
            for (who, len, respond, dt) in steps {
                ms += dt * 10;
                let i = usize::from(who);
                // Addresses 4..8 never answer: a stranger's copies, or a forged source.
                if respond && i < 4 {
                    if let Some(token) = tokens[i] {
                        answered[i] |= paths.on_response(t(ms), 7, a(who), token);
                    }
                    continue;
                }
                sent_in[i] += len;
                let route = paths.on_datagram(t(ms), 7, a(who), len, CHALLENGE).unwrap();
                proptest::prop_assert!(paths.is_validated(7, route.answer_to));
                if let Some(token) = route.challenge {
                    sent_out[i] += CHALLENGE;
                    tokens[i] = Some(token);
                }
                let s = &paths.sessions[&7];
                proptest::prop_assert!(s.validated.len() <= MAX_PATHS);
                proptest::prop_assert!(s.pending.len() <= MAX_PENDING);
            }
            for i in 1..8u8 {
                let k = usize::from(i);
                if !answered[k] {
                    proptest::prop_assert!(sent_out[k] <= sent_in[k], "{} out, {} in", sent_out[k], sent_in[k]);
                }
                if k >= 4 {
                    proptest::prop_assert!(!paths.is_validated(7, a(i)));
                }
            }
        }
    }

    /// The roles on the in-process network (`role::tests::Net`), with keys: a tier-1, a
    /// tier-2 and device 7's camera at `CAR`, streaming from 1 s.
    mod on_the_roles {
        use std::collections::BTreeMap;

        use super::*;
        use crate::cluster::{ClientConfig, Connector, Tier1, Tier1Config, Tier2, Tier2Config};
        use crate::proto::wire::{self, Message, PathProbe, PATH_PROBE_LEN, SEALED_OVERHEAD};
        use crate::proto::{Receiver, ReceiverConfig, Sender, SenderConfig};
        use crate::role::tests::{Host, Net};
        use crate::role::{
            Camera, CameraConfig, FrameContent, Mobile, MobileConfig, Sink, Tier1Server,
            Tier2Server,
        };
        use crate::secure::{DeviceRegistry, DeviceSecurity, Entropy, Gate, StaticKey};

        const T1: SocketAddr = SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
            7000,
        );
        const T2: SocketAddr = SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
            7000,
        );
        const CAR: SocketAddr = SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 50)),
            7000,
        );

        fn secure_net() -> Net {
            let mut e = Entropy::seeded(60);
            let cluster = StaticKey::generate(&mut e);
            let device = StaticKey::generate(&mut e);
            let mut devices = DeviceRegistry::new();
            devices.insert(7, device.public());
            let tier1 = Tier1::new(Tier1Config::new(1, T1, Vec::new()), Instant::ZERO);
            let tier2 = Tier2::new(Tier2Config::new(11, vec![T1]), Instant::ZERO)
                .with_gate(Gate::new(cluster.clone(), devices, Entropy::seeded(61)));
            let sink = Sink::new(
                Receiver::new(ReceiverConfig::default()),
                Box::new(FrameContent { seed: 1 }),
            );
            let camera = Camera::new(
                CameraConfig {
                    fps: 10.0,
                    frames: u64::MAX,
                    frame_bytes: 3000,
                    start_at: t(1000),
                },
                Sender::new(SenderConfig::new(7, T2)),
                Box::new(FrameContent { seed: 1 }),
            );
            let dev = DeviceSecurity::new(device, cluster.public(), 0, Entropy::seeded(62));
            let connector = Connector::new(ClientConfig::new(7, vec![T1])).with_security(dev);
            let mobile = Mobile::new(MobileConfig::default(), connector, camera);
            Net::with_hosts(BTreeMap::from([
                (T1, Host::Tier1(Box::new(Tier1Server::new(tier1, None)))),
                (T2, Host::Tier2(Box::new(Tier2Server::new(tier2, sink)))),
                (CAR, Host::Mobile(Box::new(mobile))),
            ]))
        }

        fn tier2(net: &Net) -> &Tier2Server {
            match net.hosts.get(&T2) {
                Some(Host::Tier2(t)) => t,
                _ => unreachable!("the tier-2 is a host"),
            }
        }

        fn mobile(net: &Net, at: SocketAddr) -> &Mobile {
            match net.hosts.get(&at) {
                Some(Host::Mobile(m)) => m,
                _ => panic!("no mobile at {at}"),
            }
        }

        /// The bytes of one sealed challenge on the wire.
        fn challenge_len() -> usize {
            let probe = PathProbe {
                session: 7,
                token: 0,
            };
            let len = Message::PathChallenge(probe).encoded_len();
            assert_eq!(len, PATH_PROBE_LEN);
            len + SEALED_OVERHEAD
        }

        /// An attacker who sees the camera's sealed datagrams takes one every 100 ms and
        /// sends it from its own address ahead of the original. Before paths, the copy moved
        /// the session's ACKs and NACKs to the attacker. Now everything the attacker's
        /// address gets is challenges (no more bytes than it sent), the session is still
        /// answered at the camera, and no frame is lost.
        #[test]
        fn a_copy_of_a_sealed_datagram_from_elsewhere_does_not_take_the_sessions_feedback() {
            let attacker: SocketAddr = ([10, 6, 6, 6], 5000).into();
            let mut net = secure_net();
            net.run_until(t(2000));
            let before = mobile(&net, CAR).camera().report();
            assert!(before.frames_delivered >= 5, "{before:?}");
            let mut copied = 0;
            for step in 1..=20 {
                let stolen =
                    net.take_in_flight(|from, to, d| from == CAR && to == T2 && wire::is_sealed(d));
                if let Some((from, to, data)) = stolen {
                    copied += data.len();
                    net.send(attacker, to, data.clone());
                    net.send(from, to, data);
                }
                net.run_until(t(2000 + step * 100));
            }
            net.run_until(t(5000));
            let after = mobile(&net, CAR).camera().report();
            let stats = tier2(&net).paths().stats();
            assert!(copied > 10_000, "the attacker copied {copied} bytes");
            // One challenge per RETRY at most, over the 2 s of copies.
            assert!((5..=8).contains(&stats.challenges), "{stats:?}");
            assert_eq!(stats.validated, 0, "{stats:?}");
            assert_eq!(
                net.outside_bytes,
                stats.challenges as usize * challenge_len(),
                "the attacker got more than challenges"
            );
            assert!(net.outside_bytes <= copied);
            assert!(!tier2(&net).paths().is_validated(7, attacker));
            assert_eq!(tier2(&net).sink().peer(7), Some(CAR));
            assert_eq!(after.frames_dropped, 0, "{after:?}");
            assert!(
                after.frames_delivered >= before.frames_delivered + 28,
                "{after:?}"
            );
        }

        /// The camera's address changes mid-stream (its NAT rebound, or it moved to another
        /// radio): the tier-2 takes its segments from the new address at once, challenges
        /// it, and answers there after one round trip; the session goes on (no reconnect)
        /// and no frame is lost.
        #[test]
        fn a_camera_whose_address_changes_keeps_its_session_after_one_challenge() {
            let moved: SocketAddr = ([10, 0, 0, 51], 7100).into();
            let mut net = secure_net();
            net.run_until(t(2000));
            let before = mobile(&net, CAR).camera().report();
            assert_eq!(tier2(&net).paths().paths(7).collect::<Vec<_>>(), vec![CAR]);
            let car = net.hosts.remove(&CAR).expect("the mobile");
            net.hosts.insert(moved, car);
            net.run_until(t(3000));
            // The old address is a validated path no longer heard from: once it is past
            // `LIVE`, no copy of the session's feedback goes there (only bonded sessions'
            // live paths get copies).
            let quiet = net.outside_bytes;
            net.run_until(t(4000));
            assert_eq!(
                net.outside_bytes, quiet,
                "the old address still gets feedback"
            );
            let m = mobile(&net, moved);
            let after = m.camera().report();
            assert_eq!(m.connector().connected().map(|(_, a)| a), Some(T2));
            let stats = tier2(&net).paths().stats();
            assert_eq!((stats.challenges, stats.validated), (1, 1), "{stats:?}");
            assert!(tier2(&net).paths().is_validated(7, moved));
            assert_eq!(tier2(&net).sink().peer(7), Some(moved));
            assert_eq!(after.frames_dropped, 0, "{after:?}");
            assert!(
                after.frames_delivered >= before.frames_delivered + 18,
                "{after:?}"
            );
            // What an operator sees of it.
            let m = crate::metrics::RoleMetrics::default();
            crate::metrics::Observed::mirror(tier2(&net), &m);
            assert_eq!((m.path_challenges.get(), m.paths_validated.get()), (1, 1));
            assert_eq!(m.path_responses_refused.get(), 0);
        }
    }
}
