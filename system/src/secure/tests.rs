use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::proto::wire::{self, Message};
use crate::time::Instant;

/// Where the test device's hellos come from.
const DEVICE_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));

fn pair(seed: u64) -> (DeviceSecurity, Gate, StaticKey) {
    let mut e = Entropy::seeded(seed);
    let cluster = StaticKey::generate(&mut e);
    let device = StaticKey::generate(&mut e);
    let mut reg = DeviceRegistry::new();
    reg.insert(7, device.public());
    let dev = DeviceSecurity::new(
        device.clone(),
        cluster.public(),
        0,
        Entropy::seeded(seed + 1),
    );
    let gate = Gate::new(cluster, reg, Entropy::seeded(seed + 2));
    (dev, gate, device)
}

fn handshake(dev: &mut DeviceSecurity, gate: &mut Gate, at: u64) -> (Channel, Channel) {
    let now = Instant::from_micros(at);
    let (init, hello) = dev.hello(now, Attempt::new(7, 1, 0)).unwrap();
    let (reply, server) = gate
        .admit(now, DEVICE_ADDR, Attempt::new(7, 1, 0), 3, &hello)
        .unwrap();
    // What a tier-1 budgets for the offer that carries it.
    assert_eq!(reply.len(), super::handshake::REPLY_LEN);
    let client = init.finish(3, &reply).map_err(|(_, e)| e).unwrap();
    (client, server)
}

#[test]
fn noise_params_parse() {
    let _ = params();
}

#[test]
fn key_text_round_trips_and_bad_text_names_the_field() {
    let k = StaticKey::generate(&mut Entropy::seeded(1));
    let back = StaticKey::parse(&format!("  {}\n", k.private_hex()), "key").unwrap();
    assert_eq!(back.public(), k.public());
    let err = StaticKey::parse("abc", "tier2.key")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tier2.key"), "{err}");
    assert!(PublicKey::parse(&k.public().to_string(), "x").is_ok());
    // Debug never shows the private half.
    assert!(!format!("{k:?}").contains(&k.private_hex()));
}

#[test]
fn registry_parses_and_names_bad_entries() {
    let k = StaticKey::generate(&mut Entropy::seeded(2)).public();
    let mut reg = DeviceRegistry::new();
    reg.insert(3, k);
    reg.insert(9, k);
    let back = DeviceRegistry::parse(&reg.to_toml(), "devices.toml").unwrap();
    assert_eq!(back, reg);
    let err = DeviceRegistry::parse("[[device]]\nid = 4\nkey = \"zz\"\n", "devices.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("device[0] (id 4) key"), "{err}");
    let twice = format!("{}[[device]]\nid = 3\nkey = \"{k}\"\n", reg.to_toml());
    let err = DeviceRegistry::parse(&twice, "d").unwrap_err().to_string();
    assert!(err.contains("listed twice"), "{err}");
    assert!(DeviceRegistry::parse("[[device]]\nid = 1\n", "d").is_err());
}

#[test]
fn sealed_datagrams_open_on_the_other_side_only() {
    let (mut dev, mut gate, _) = pair(10);
    let (mut c, mut s) = handshake(&mut dev, &mut gate, 1_000);
    let mut inner = Vec::new();
    wire::FrameAck {
        session: 7,
        frame: 1,
        next_segment_size: 900,
        next_parity: 0,
    }
    .encode(&mut inner);
    let mut sealed = Vec::new();
    c.seal(&inner, &mut sealed).unwrap();
    assert_eq!(sealed.len(), inner.len() + wire::SEALED_OVERHEAD);
    let Ok(Message::Sealed(m)) = wire::decode(&sealed) else {
        panic!("not a sealed datagram")
    };
    assert_eq!(m.session, 7);
    let mut out = Vec::new();
    s.open(&m, &mut out).unwrap();
    assert_eq!(out, inner);
    // The same datagram again is a replay.
    assert_eq!(s.open(&m, &mut out), Err(SecureError::Replay(0)));
    // The sender cannot open its own datagram (each direction has its own key).
    assert_eq!(c.open(&m, &mut out), Err(SecureError::Forged));
    // And back the other way.
    let mut back = Vec::new();
    s.seal(&inner, &mut back).unwrap();
    let Ok(Message::Sealed(m)) = wire::decode(&back) else {
        panic!()
    };
    c.open(&m, &mut out).unwrap();
    assert_eq!(out, inner);
}

#[test]
fn a_flipped_bit_or_a_wrong_nonce_does_not_authenticate() {
    let (mut dev, mut gate, _) = pair(11);
    let (mut c, mut s) = handshake(&mut dev, &mut gate, 1_000);
    let mut sealed = Vec::new();
    c.seal(b"hello there", &mut sealed).unwrap();
    let Ok(Message::Sealed(m)) = wire::decode(&sealed) else {
        panic!()
    };
    let mut body = m.body.to_vec();
    body[3] ^= 0x10;
    let mut out = Vec::new();
    let forged = wire::Sealed { body: &body, ..m };
    assert_eq!(s.open(&forged, &mut out), Err(SecureError::Forged));
    let renumbered = wire::Sealed { nonce: 5, ..m };
    assert_eq!(s.open(&renumbered, &mut out), Err(SecureError::Forged));
    // Neither moved the window: the real one still opens.
    s.open(&m, &mut out).unwrap();
}

#[test]
fn unknown_devices_wrong_keys_and_replayed_hellos_are_refused() {
    let (mut dev, mut gate, _) = pair(12);
    let now = Instant::from_micros(5_000);
    let (_, hello) = dev.hello(now, Attempt::new(7, 1, 0)).unwrap();
    assert_eq!(
        gate.admit(now, DEVICE_ADDR, Attempt::new(8, 1, 0), 1, &hello)
            .map(|_| ()),
        Err(SecureError::UnknownDevice(8))
    );
    assert!(gate
        .admit(now, DEVICE_ADDR, Attempt::new(7, 1, 0), 1, &hello)
        .is_ok());
    let later = Instant::from_micros(500_000);
    assert_eq!(
        gate.admit(later, DEVICE_ADDR, Attempt::new(7, 1, 0), 1, &hello)
            .map(|_| ()),
        Err(SecureError::ReplayedHello(7))
    );
    // A device with another key claiming to be 7.
    let thief = StaticKey::generate(&mut Entropy::seeded(99));
    let mut impostor = DeviceSecurity::new(thief, gate.public(), 0, Entropy::seeded(5));
    let at = Instant::from_micros(600_000);
    let (_, bad) = impostor.hello(at, Attempt::new(7, 2, 0)).unwrap();
    assert_eq!(
        gate.admit(at, DEVICE_ADDR, Attempt::new(7, 2, 0), 1, &bad)
            .map(|_| ()),
        Err(SecureError::WrongKey(7))
    );
    // Garbage.
    assert!(matches!(
        gate.admit(
            Instant::from_micros(900_000),
            DEVICE_ADDR,
            Attempt::new(7, 3, 0),
            1,
            &[1, 2, 3]
        ),
        Err(SecureError::Handshake(_))
    ));
    let st = gate.stats();
    assert_eq!((st.admitted, st.unknown_device, st.replayed), (1, 1, 1));
}

#[test]
fn a_forward_that_changes_the_sealed_frame_numbering_is_refused() {
    let (mut dev, mut gate, _) = pair(21);
    let now = Instant::from_micros(5_000);
    let claimed = Attempt::new(7, 1, 1_700_000_000_000);
    let (_, hello) = dev.hello(now, claimed).unwrap();
    // A tier-1 or anyone on the path rewrites the boot sequence number in the forward: the
    // tier-2 would file the device's frames under other identities.
    for boot_seq in [0, 1_700_000_000_001, u64::MAX] {
        assert_eq!(
            gate.admit(
                now,
                DEVICE_ADDR,
                Attempt {
                    boot_seq,
                    ..claimed
                },
                1,
                &hello
            )
            .map(|_| ()),
            Err(SecureError::Mismatch),
            "boot_seq {boot_seq}"
        );
    }
    assert!(gate.admit(now, DEVICE_ADDR, claimed, 1, &hello).is_ok());
}

#[test]
fn hello_floods_are_rate_limited_per_device() {
    let (mut dev, mut gate, _) = pair(13);
    let t0 = Instant::from_micros(1_000);
    let (_, h1) = dev.hello(t0, Attempt::new(7, 1, 0)).unwrap();
    assert!(gate
        .admit(t0, DEVICE_ADDR, Attempt::new(7, 1, 0), 1, &h1)
        .is_ok());
    let (_, h2) = dev.hello(t0, Attempt::new(7, 2, 0)).unwrap();
    assert_eq!(
        gate.admit(t0, DEVICE_ADDR, Attempt::new(7, 2, 0), 1, &h2)
            .map(|_| ()),
        Err(SecureError::RateLimited(7))
    );
    let t1 = t0 + handshake::HANDSHAKE_INTERVAL;
    let (_, h3) = dev.hello(t1, Attempt::new(7, 3, 0)).unwrap();
    assert!(gate
        .admit(t1, DEVICE_ADDR, Attempt::new(7, 3, 0), 1, &h3)
        .is_ok());
}

#[test]
fn a_forged_offer_leaves_the_handshake_able_to_read_the_real_one() {
    let (mut dev, mut gate, _) = pair(14);
    let now = Instant::from_micros(1_000);
    let (init, hello) = dev.hello(now, Attempt::new(7, 1, 0)).unwrap();
    let (reply, _) = gate
        .admit(now, DEVICE_ADDR, Attempt::new(7, 1, 0), 3, &hello)
        .unwrap();
    let mut bad = reply.clone();
    bad[40] ^= 1;
    let (init, err) = init.finish(3, &bad).unwrap_err();
    assert!(matches!(err, SecureError::Handshake(_)));
    assert!(init.unwrap().finish(3, &reply).is_ok());
}

#[test]
fn same_seed_same_handshake_bytes() {
    let run = || {
        let (mut dev, mut gate, _) = pair(20);
        let now = Instant::from_micros(77);
        let (_, hello) = dev.hello(now, Attempt::new(7, 1, 0)).unwrap();
        let (reply, _) = gate
            .admit(now, DEVICE_ADDR, Attempt::new(7, 1, 0), 3, &hello)
            .unwrap();
        (hello, reply)
    };
    assert_eq!(run(), run());
}

proptest! {
    /// The window accepts every nonce once and refuses repeats and nonces that fell behind
    /// it, whatever the arrival order.
    #[test]
    fn replay_window_accepts_each_nonce_at_most_once(nonces in proptest::collection::vec(0u64..5000, 1..400)) {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        for n in nonces {
            let fresh = !seen.contains(&n) && (n >= top || top - n <= channel::REPLAY_WINDOW);
            prop_assert_eq!(w.check(n).is_ok(), fresh, "nonce {} top {}", n, top);
            if fresh {
                w.mark(n);
                seen.insert(n);
                top = top.max(n + 1);
            }
        }
    }
}

#[test]
fn forged_hellos_for_a_real_device_never_lock_it_out() {
    let (mut dev, mut gate, _) = pair(21);
    let now = Instant::from_micros(1_000);
    // A stranger forwards garbage and other keys' hellos for device 7, from its own address,
    // as fast as it likes: refused, and budgeted to that address.
    let stranger = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut other = DeviceSecurity::new(
        StaticKey::generate(&mut Entropy::seeded(99)),
        gate.public(),
        0,
        Entropy::seeded(98),
    );
    for i in 0..1000u32 {
        let forged = if i % 2 == 0 {
            vec![i as u8; 96]
        } else {
            other.hello(now, Attempt::new(7, i, 0)).unwrap().1
        };
        assert!(gate
            .admit(now, stranger, Attempt::new(7, i, 0), 1, &forged)
            .is_err());
    }
    let st = gate.stats();
    assert_eq!(
        st.rate_limited,
        1000 - handshake::ADDRESS_BURST as u64,
        "{st:?}"
    );
    // The real device, at the same instant, is admitted.
    let (_, hello) = dev.hello(now, Attempt::new(7, 5000, 0)).unwrap();
    assert!(gate
        .admit(now, DEVICE_ADDR, Attempt::new(7, 5000, 0), 1, &hello)
        .is_ok());
}

#[test]
fn each_address_and_the_gate_have_a_handshake_budget() {
    let (_, mut gate, _) = pair(22);
    let t0 = Instant::from_micros(1_000);
    let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let garbage = [7u8; 96];
    let refused = |gate: &mut Gate, at: Instant, from: IpAddr| {
        matches!(
            gate.admit(at, from, Attempt::new(7, 1, 0), 1, &garbage),
            Err(SecureError::RateLimited(7))
        )
    };
    let burst = handshake::ADDRESS_BURST as usize;
    for _ in 0..burst {
        assert!(!refused(&mut gate, t0, a));
    }
    assert!(refused(&mut gate, t0, a));
    // Another address has its own budget; a second later `a` has a second's worth again.
    assert!(!refused(
        &mut gate,
        t0,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))
    ));
    let t1 = t0 + Duration::from_secs(1);
    let rate = handshake::ADDRESS_PER_SECOND as usize;
    for _ in 0..rate {
        assert!(!refused(&mut gate, t1, a));
    }
    assert!(refused(&mut gate, t1, a));
    // Spread over many addresses, the gate as a whole stops at its own burst.
    let (_, mut gate, _) = pair(23);
    let spread = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
    let read = (0..2 * handshake::GATE_BURST as usize)
        .filter(|&i| !refused(&mut gate, t0, spread(i)))
        .count();
    assert_eq!(read, handshake::GATE_BURST as usize);
}

#[test]
fn the_address_table_is_bounded() {
    let (_, mut gate, _) = pair(24);
    let garbage = [7u8; 96];
    let mut at = Instant::from_micros(1_000);
    for i in 0..handshake::MAX_ADDRESSES + 500 {
        // Slow enough for the gate's budget, each from a new address.
        at += Duration::from_millis(1);
        let from = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
        let _ = gate.admit(at, from, Attempt::new(7, 1, 0), 1, &garbage);
        assert!(gate.addresses_tracked() <= handshake::MAX_ADDRESSES);
    }
    // Once their buckets have refilled, idle addresses make room for new ones.
    let later = at + Duration::from_secs(10);
    let from = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    assert!(!matches!(
        gate.admit(later, from, Attempt::new(7, 1, 0), 1, &garbage),
        Err(SecureError::RateLimited(_))
    ));
    assert!(gate.addresses_tracked() < handshake::MAX_ADDRESSES);
}
