//! Function-call tests of the cluster machines: messages are moved by hand, so each test
//! decides exactly which ones are lost, duplicated or late.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::proto::wire::{self, Message};
use crate::secure::Attempt;
use crate::time::Instant;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const T1A: &str = "10.0.1.1:7000";
const T1B: &str = "10.0.1.2:7000";
const CLIENT: &str = "10.0.9.9:7000";

fn t2addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, 0, 2, i as u8], 7000))
}

/// Everything a machine wants to send, decoded.
fn drain_out(
    mut poll: impl FnMut(&mut Vec<u8>) -> Option<SocketAddr>,
) -> Vec<(SocketAddr, Message<'static>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(to) = poll(&mut buf) {
        // Messages borrow their datagram; a test can afford to keep every datagram.
        let bytes: &'static [u8] = Box::leak(buf.clone().into_boxed_slice());
        let msg = wire::decode(bytes).unwrap();
        assert!(
            !matches!(msg, Message::Segment(_)),
            "segment from a cluster machine"
        );
        out.push((to, msg));
    }
    out
}

fn tier2(id: u32, sessions: u32) -> Tier2 {
    let mut t = Tier2::new(
        Tier2Config {
            capacity: 10,
            ..Tier2Config::new(id, vec![addr(T1A), addr(T1B)])
        },
        Instant::ZERO,
    );
    t.set_sessions(sessions);
    t
}

fn forward(client: u32, attempt: u32) -> Message<'static> {
    Message::ConnectForward(wire::ConnectForward {
        client,
        attempt,
        boot_seq: 0,
        client_addr: addr(CLIENT),
        hello: &[],
    })
}

/// When a tier-2 sends its offer for a forwarded request, if it does.
fn offer_time(t: &mut Tier2) -> Option<Instant> {
    t.handle(Instant::ZERO, addr(T1A), &forward(7, 1));
    let mut now = Instant::ZERO;
    for _ in 0..100 {
        let offered = drain_out(|b| t.poll_transmit(Instant::ZERO, b))
            .into_iter()
            .any(|(to, m)| to == addr(CLIENT) && matches!(m, Message::ConnectOffer(_)));
        if offered {
            return Some(now);
        }
        now = t.poll_timeout()?.min(now + Duration::from_millis(5));
        t.handle_timeout(now);
    }
    None
}

#[test]
fn the_least_loaded_tier2_answers_first_and_a_full_one_not_at_all() {
    let idle = offer_time(&mut tier2(1, 0)).unwrap();
    let busy = offer_time(&mut tier2(2, 5)).unwrap();
    assert!(idle < busy, "idle offered at {idle}, busy at {busy}");
    assert_eq!(
        offer_time(&mut tier2(3, 10)),
        None,
        "a full tier-2 answered"
    );
}

#[test]
fn tier1_forwards_to_every_tier2_it_manages_with_the_clients_address() {
    let now = Instant::ZERO;
    let mut t1 = Tier1::new(Tier1Config::new(1, addr(T1A), vec![]), now);
    for i in 1..=3 {
        let hb = Message::Heartbeat(wire::Heartbeat {
            tier2: i,
            epoch: 0,
            sessions: 0,
            capacity: 10,
        });
        t1.handle(now, t2addr(i), &hb);
    }
    drain_out(|b| t1.poll_transmit(Instant::ZERO, b));
    let req = Message::ConnectRequest(wire::ConnectRequest {
        client: 7,
        attempt: 1,
        boot_seq: 0,
        hello: &[],
        padding: 0,
    });
    t1.handle(now, addr(CLIENT), &req);
    let out = drain_out(|b| t1.poll_transmit(Instant::ZERO, b));
    let forwarded: Vec<SocketAddr> = out
        .iter()
        .filter(|(_, m)| matches!(m, Message::ConnectForward(f) if f.client_addr == addr(CLIENT)))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(forwarded, vec![t2addr(1), t2addr(2), t2addr(3)]);
    assert!(out
        .iter()
        .any(|(to, m)| *to == addr(CLIENT) && matches!(m, Message::Tier1List(_))));
}

fn offer(tier2: u32, attempt: u32) -> Message<'static> {
    Message::ConnectOffer(wire::ConnectOffer {
        client: 7,
        attempt,
        tier2,
        load: 0,
        reply: &[],
    })
}

#[test]
fn the_client_takes_the_first_offer_and_releases_the_others() {
    let mut c = Connector::new(ClientConfig::new(7, vec![addr(T1A), addr(T1B)]));
    c.connect(Instant::ZERO);
    let out = drain_out(|b| c.poll_transmit(Instant::ZERO, b));
    assert!(matches!(out[..], [(to, Message::ConnectRequest(_))] if to == addr(T1A)));
    let t = Instant::from_millis(30);
    c.handle(t, t2addr(2), &offer(2, 1));
    c.handle(t, t2addr(1), &offer(1, 1));
    let out = drain_out(|b| c.poll_transmit(Instant::ZERO, b));
    assert!(matches!(out[0], (to, Message::ConnectAccept(r)) if to == t2addr(2) && r.tier2 == 2));
    assert!(matches!(out[1], (to, Message::ConnectRelease(r)) if to == t2addr(1) && r.tier2 == 1));
    assert_eq!(c.connected(), Some((2, t2addr(2))));
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Connected { tier2: 2, setup, .. }) if setup == Duration::from_millis(30)
    ));
}

#[test]
fn a_reservation_whose_release_was_lost_expires() {
    let mut t = tier2(1, 0);
    t.handle(Instant::ZERO, addr(T1A), &forward(7, 1));
    assert_eq!(t.load(), 1);
    // The client's release never arrives.
    let ttl = Tier2Config::new(1, vec![]).reservation_ttl;
    t.handle_timeout(Instant::ZERO + ttl + Duration::from_millis(50));
    assert_eq!(t.load(), 0);
}

#[test]
fn the_client_fails_over_to_its_backup_and_takes_a_new_tier1_list() {
    let mut c = Connector::new(ClientConfig::new(7, vec![addr(T1A), addr(T1B)]));
    c.connect(Instant::ZERO);
    drain_out(|b| c.poll_transmit(Instant::ZERO, b));
    // T1A is dead: nothing comes back before the timeout.
    let timeout = c.poll_timeout().unwrap();
    c.handle_timeout(timeout);
    let out = drain_out(|b| c.poll_transmit(Instant::ZERO, b));
    assert!(
        matches!(out[..], [(to, Message::ConnectRequest(r))] if to == addr(T1B) && r.attempt == 2)
    );
    // An offer for the first attempt is late: released, not taken.
    c.handle(timeout, t2addr(1), &offer(1, 1));
    assert!(c.connected().is_none());
    // A list from anyone but the tier-1 it asked (a stranger, or T1A it no longer asks) is
    // not taken.
    let planted = vec![addr("10.6.6.6:7000")];
    c.handle(
        timeout,
        addr("10.6.6.6:7000"),
        &Message::Tier1List(planted.clone()),
    );
    c.handle(timeout, addr(T1A), &Message::Tier1List(planted));
    assert_eq!(c.tier1s(), &[addr(T1A), addr(T1B)]);
    // T1B sends its list; the client uses it from now on.
    let list = vec![addr(T1B), addr("10.0.1.3:7000")];
    c.handle(timeout, addr(T1B), &Message::Tier1List(list.clone()));
    assert_eq!(c.tier1s(), &list[..]);
}

fn heartbeat_from(t: &mut Tier2) -> (SocketAddr, wire::Heartbeat) {
    drain_out(|b| t.poll_transmit(Instant::ZERO, b))
        .into_iter()
        .rev()
        .find_map(|(to, m)| match m {
            Message::Heartbeat(h) => Some((to, h)),
            _ => None,
        })
        .expect("a heartbeat")
}

#[test]
fn hand_over_survives_a_lost_manager_change_and_duplicates() {
    let mut now = Instant::ZERO;
    let mut a = Tier1::new(Tier1Config::new(1, addr(T1A), vec![(2, addr(T1B))]), now);
    let mut b = Tier1::new(Tier1Config::new(2, addr(T1B), vec![(1, addr(T1A))]), now);
    let mut t = tier2(5, 0);
    t.handle_timeout(now);
    let (to, hb) = heartbeat_from(&mut t);
    assert_eq!(to, addr(T1A));
    a.handle(now, t2addr(5), &Message::Heartbeat(hb));
    // Peers learn of each other.
    a.handle_timeout(now);
    b.handle_timeout(now);
    for (to, m) in drain_out(|x| a.poll_transmit(Instant::ZERO, x)) {
        if to == addr(T1B) {
            b.handle(now, addr(T1A), &m);
        }
    }
    for (to, m) in drain_out(|x| b.poll_transmit(Instant::ZERO, x)) {
        if to == addr(T1A) {
            a.handle(now, addr(T1B), &m);
        }
    }
    // A drains: request -> accept -> manager change (lost).
    a.drain(now);
    let req = drain_out(|x| a.poll_transmit(Instant::ZERO, x))
        .into_iter()
        .find(|(_, m)| matches!(m, Message::HandoverRequest(_)))
        .expect("a hand-over request");
    b.handle(now, addr(T1A), &req.1);
    let accept = drain_out(|x| b.poll_transmit(Instant::ZERO, x)).remove(0).1;
    a.handle(now, addr(T1B), &accept);
    a.handle(now, addr(T1B), &accept); // duplicated
    let changes: Vec<Message> = drain_out(|x| a.poll_transmit(Instant::ZERO, x))
        .into_iter()
        .filter(|(to, m)| *to == t2addr(5) && matches!(m, Message::ManagerChange(_)))
        .map(|(_, m)| m)
        .collect();
    assert!(!changes.is_empty());
    assert_eq!(a.managed().count(), 0, "A let go at the accept");
    // The change is lost; the tier-2 heartbeats A with its old epoch and A tells it again.
    now += Duration::from_millis(200);
    t.handle_timeout(now);
    let (to, hb) = heartbeat_from(&mut t);
    assert_eq!((to, hb.epoch), (addr(T1A), 0));
    a.handle(now, t2addr(5), &Message::Heartbeat(hb));
    let again = drain_out(|x| a.poll_transmit(Instant::ZERO, x))
        .into_iter()
        .find(|(to, m)| *to == t2addr(5) && matches!(m, Message::ManagerChange(_)))
        .expect("the change sent again");
    assert_eq!(
        a.managed().count(),
        0,
        "a stale heartbeat does not make A manager again"
    );
    t.handle(now, addr(T1A), &again.1);
    t.handle(now, addr(T1A), &again.1); // duplicated: the epoch makes it a no-op
    assert_eq!((t.manager(), t.epoch()), (Some(addr(T1B)), 1));
    let (to, hb) = heartbeat_from(&mut t);
    assert_eq!(to, addr(T1B));
    b.handle(now, t2addr(5), &Message::Heartbeat(hb));
    assert_eq!(b.managed().collect::<Vec<_>>(), vec![5]);
    assert_eq!(a.managed().count(), 0);
}

#[test]
fn a_tier2_whose_manager_died_registers_with_a_live_tier1() {
    let mut t = tier2(5, 0);
    t.handle_timeout(Instant::ZERO);
    assert_eq!(t.manager(), Some(addr(T1A)));
    // No acknowledgement ever comes from T1A.
    let timeout = Tier2Config::new(5, vec![]).manager_timeout;
    t.handle_timeout(Instant::ZERO + timeout);
    assert_eq!((t.manager(), t.epoch()), (Some(addr(T1B)), 1));
    let (to, hb) = heartbeat_from(&mut t);
    assert_eq!((to, hb.epoch), (addr(T1B), 1));
}

mod hostile_input {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = Message<'static>> {
        let a = any::<SocketAddr>();
        prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(client, attempt)| Message::ConnectRequest(
                wire::ConnectRequest {
                    client,
                    attempt,
                    boot_seq: u64::from(attempt) << 20,
                    hello: &[],
                    padding: (attempt % 2000) as u16,
                }
            )),
            (any::<u32>(), any::<u32>(), a.clone()).prop_map(|(client, attempt, client_addr)| {
                Message::ConnectForward(wire::ConnectForward {
                    client,
                    attempt,
                    boot_seq: u64::from(attempt) << 20,
                    client_addr,
                    hello: &[],
                })
            }),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(client, attempt, tier2)| {
                Message::ConnectOffer(wire::ConnectOffer {
                    client: client % 3,
                    attempt: attempt % 3,
                    tier2,
                    load: 0,
                    reply: &[],
                })
            }),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(client, attempt, tier2)| {
                Message::ConnectAccept(wire::ConnectReply {
                    client,
                    attempt,
                    tier2: tier2 % 3,
                })
            }),
            (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(tier2, epoch, sessions)| {
                Message::Heartbeat(wire::Heartbeat {
                    tier2: tier2 % 8,
                    epoch: epoch % 4,
                    sessions,
                    capacity: sessions,
                })
            }),
            (any::<u32>(), any::<u32>(), a.clone(), any::<u64>()).prop_map(
                |(t1, t2, addr, epoch)| {
                    Message::HandoverAccept(wire::Handover {
                        tier1: t1 % 3,
                        tier2: t2 % 8,
                        tier2_addr: addr,
                        epoch: epoch % 4,
                    })
                }
            ),
            (any::<u32>(), any::<u32>(), a.clone(), any::<u64>()).prop_map(
                |(t1, t2, addr, epoch)| {
                    Message::HandoverRequest(wire::Handover {
                        tier1: t1 % 3,
                        tier2: t2 % 8,
                        tier2_addr: addr,
                        epoch,
                    })
                }
            ),
            (any::<u32>(), any::<u32>(), a.clone(), any::<u64>()).prop_map(
                |(t2, m, addr, epoch)| {
                    Message::ManagerChange(wire::ManagerChange {
                        tier2: t2 % 3,
                        manager: m,
                        manager_addr: addr,
                        epoch: epoch % 8,
                    })
                }
            ),
            proptest::collection::vec(a, 1..5).prop_map(Message::Tier1List),
            (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(t1, n, draining)| {
                Message::PeerStatus(wire::PeerStatus {
                    tier1: t1 % 3,
                    tier2s: n % 10,
                    sessions: n,
                    capacity: n,
                    draining,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn cluster_machines_survive_any_control_message(
            msgs in proptest::collection::vec((arb_message(), any::<SocketAddr>(), 0u64..300_000), 1..80),
        ) {
            let mut now = Instant::ZERO;
            let mut t1 = Tier1::new(Tier1Config::new(1, addr(T1A), vec![(2, addr(T1B))]), now);
            let mut t2 = tier2(1, 0);
            let mut c = Connector::new(ClientConfig::new(1, vec![addr(T1A), addr(T1B)]));
            c.connect(now);
            let mut buf = Vec::new();
            for (i, (m, from, step)) in msgs.iter().enumerate() {
                now += Duration::from_micros(*step);
                if i == msgs.len() / 2 {
                    t1.drain(now);
                }
                t1.handle(now, *from, m);
                t2.handle(now, *from, m);
                c.handle(now, *from, m);
                t1.handle_timeout(now);
                t2.handle_timeout(now);
                c.handle_timeout(now);
                while t1.poll_transmit(now, &mut buf).is_some() {}
                while t2.poll_transmit(now, &mut buf).is_some() {}
                while c.poll_transmit(now, &mut buf).is_some() {}
                prop_assert!(t2.load() <= 10 + 1, "load {} beyond capacity", t2.load());
                prop_assert!(t2.known_tier1s() <= wire::MAX_TIER1_LIST);
            }
        }
    }
}

#[test]
fn a_handover_to_a_peer_that_died_moves_to_a_live_one() {
    let mut now = Instant::ZERO;
    let c_addr = addr("10.0.1.3:7000");
    let mut a = Tier1::new(
        Tier1Config::new(1, addr(T1A), vec![(2, addr(T1B)), (3, c_addr)]),
        now,
    );
    let hb = Message::Heartbeat(wire::Heartbeat {
        tier2: 10,
        epoch: 0,
        sessions: 0,
        capacity: 10,
    });
    a.handle(now, t2addr(10), &hb);
    // B looks idler than C, so the drain asks B first; then B goes silent.
    let status = |tier1, sessions| {
        Message::PeerStatus(wire::PeerStatus {
            tier1,
            tier2s: 1,
            sessions,
            capacity: 10,
            draining: false,
        })
    };
    a.handle(now, addr(T1B), &status(2, 0));
    a.handle(now, c_addr, &status(3, 5));
    a.drain(now);
    let mut asked = Vec::new();
    for _ in 0..100 {
        now += Duration::from_millis(100);
        a.handle(now, c_addr, &status(3, 5));
        a.handle(now, t2addr(10), &hb);
        a.handle_timeout(now);
        for (to, m) in drain_out(|x| a.poll_transmit(Instant::ZERO, x)) {
            if matches!(m, Message::HandoverRequest(_)) {
                asked.push(to);
            }
        }
        if asked.contains(&c_addr) {
            break;
        }
    }
    assert_eq!(asked.first(), Some(&addr(T1B)));
    assert!(asked.contains(&c_addr), "asked only {asked:?}");
}

mod with_keys {
    use super::*;
    use crate::secure::{DeviceRegistry, DeviceSecurity, Entropy, Gate, StaticKey};

    /// A tier-2 admitting device 7, and device 7's keys.
    fn keyed(seed: u64) -> (Tier2, DeviceSecurity) {
        let mut e = Entropy::seeded(seed);
        let cluster = StaticKey::generate(&mut e);
        let device = StaticKey::generate(&mut e);
        let mut reg = DeviceRegistry::new();
        reg.insert(7, device.public());
        let dev = DeviceSecurity::new(device, cluster.public(), 0, Entropy::seeded(seed + 1));
        let t = tier2(3, 0).with_gate(Gate::new(cluster, reg, Entropy::seeded(seed + 2)));
        (t, dev)
    }

    #[test]
    fn a_secure_client_pads_its_request_and_takes_new_tier1s_only_sealed() {
        let (_, dev) = keyed(5);
        let mut c =
            Connector::new(ClientConfig::new(7, vec![addr(T1A), addr(T1B)])).with_security(dev);
        c.connect(Instant::ZERO);
        let out = drain_out(|b| c.poll_transmit(Instant::ZERO, b));
        let [(to, Message::ConnectRequest(r))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(*to, addr(T1A));
        assert_eq!(
            Message::ConnectRequest(*r).encoded_len(),
            wire::PADDED_REQUEST_LEN,
            "padded, so a tier-1 can afford offers"
        );
        // The plain answer of the tier-1 asked (an off-path spoofer can forge it): a new
        // address is not taken, the known ones are reordered, none is dropped.
        let stranger = addr("10.6.6.6:7000");
        let list = vec![stranger, addr(T1B)];
        c.handle(Instant::ZERO, addr(T1A), &Message::Tier1List(list));
        assert_eq!(c.tier1s(), &[addr(T1B), addr(T1A)]);
        c.handle(
            Instant::ZERO,
            addr(T1A),
            &Message::Tier1List(vec![stranger]),
        );
        assert_eq!(c.tier1s(), &[addr(T1B), addr(T1A)]);
        // The list sealed in a session (from a tier-2 holding the cluster key) adds one.
        let new = addr("10.0.1.3:7000");
        c.trust_tier1s(&[new, addr(T1A)]);
        assert_eq!(c.tier1s(), &[addr(T1B), addr(T1A), new]);
        // Which the plain list may then put first.
        c.handle(Instant::ZERO, addr(T1A), &Message::Tier1List(vec![new]));
        assert_eq!(c.tier1s(), &[new, addr(T1B), addr(T1A)]);
    }

    fn forward_with(client: u32, hello: &[u8]) -> Message<'_> {
        Message::ConnectForward(wire::ConnectForward {
            client,
            attempt: 1,
            boot_seq: 0,
            client_addr: addr(CLIENT),
            hello,
        })
    }

    /// Everything the tier-2 sends within a second of simulated time.
    fn run_for_a_second(t: &mut Tier2) -> Vec<(SocketAddr, Message<'static>)> {
        let mut out = Vec::new();
        let mut now = Instant::ZERO;
        while now < Instant::from_micros(1_000_000) {
            out.extend(drain_out(|b| t.poll_transmit(Instant::ZERO, b)));
            now = t
                .poll_timeout()
                .unwrap_or(now)
                .max(now + Duration::from_millis(1));
            t.handle_timeout(now);
        }
        out
    }

    #[test]
    fn requests_without_a_valid_handshake_get_no_reservation_and_no_answer() {
        let (mut t, mut dev) = keyed(1);
        // No handshake at all, an unknown device, and garbage.
        let (_, hello) = dev.hello(Instant::ZERO, Attempt::new(7, 1, 0)).unwrap();
        t.handle(Instant::ZERO, addr(T1A), &forward_with(7, &[]));
        t.handle(Instant::ZERO, addr(T1A), &forward_with(8, &hello));
        t.handle(Instant::ZERO, addr(T1A), &forward_with(7, &[0xAB; 96]));
        assert_eq!(t.load(), 0, "a refused request reserved a place");
        let out = run_for_a_second(&mut t);
        assert!(
            !out.iter()
                .any(|(_, m)| matches!(m, Message::ConnectOffer(_))),
            "{out:?}"
        );
        let st = t.gate_stats().unwrap();
        assert_eq!((st.failed, st.unknown_device, st.admitted), (2, 1, 0));
    }

    #[test]
    fn a_valid_handshake_is_answered_and_its_first_datagram_stands_in_for_a_lost_accept() {
        let (mut t, mut dev) = keyed(2);
        let (init, hello) = dev.hello(Instant::ZERO, Attempt::new(7, 1, 0)).unwrap();
        t.handle(Instant::ZERO, addr(T1A), &forward_with(7, &hello));
        assert_eq!(t.load(), 1);
        let out = run_for_a_second(&mut t);
        let Some(Message::ConnectOffer(offer)) = out
            .iter()
            .map(|(_, m)| m.clone())
            .find(|m| matches!(m, Message::ConnectOffer(_)))
        else {
            panic!("no offer: {out:?}")
        };
        let mut client = init
            .finish(offer.tier2, offer.reply)
            .map_err(|(_, e)| e)
            .unwrap();
        // The accept is lost; the client's first sealed datagram arrives.
        let mut inner = Vec::new();
        wire::FrameAck {
            session: 7,
            frame: 0,
            next_segment_size: 500,
            next_parity: 0,
        }
        .encode(&mut inner);
        let mut sealed = Vec::new();
        client.seal(&inner, &mut sealed).unwrap();
        let Ok(Message::Sealed(m)) = wire::decode(&sealed) else {
            panic!()
        };
        let mut opened = Vec::new();
        t.reserved_channel(7)
            .expect("the reservation holds the keys")
            .open(&m, &mut opened)
            .unwrap();
        assert_eq!(opened, inner);
        t.confirm(7, addr(CLIENT));
        let events: Vec<Tier2Event> = std::iter::from_fn(|| t.poll_event()).collect();
        assert!(
            events.contains(&Tier2Event::SessionAccepted {
                client: 7,
                addr: addr(CLIENT),
                boot_seq: Some(0),
            }),
            "{events:?}"
        );
        assert!(t.take_channel(7).is_some());
        assert!(t.reserved_channel(7).is_none());
    }
}
