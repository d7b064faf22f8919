use proptest::prelude::*;

use super::*;
use crate::proto::wire::{self, Message};
use crate::time::Instant;

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
    let (init, hello) = dev.hello(now, 7, 1).unwrap();
    let (reply, server) = gate.admit(now, 7, 1, 3, &hello).unwrap();
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
    let (_, hello) = dev.hello(now, 7, 1).unwrap();
    assert_eq!(
        gate.admit(now, 8, 1, 1, &hello).map(|_| ()),
        Err(SecureError::UnknownDevice(8))
    );
    assert!(gate.admit(now, 7, 1, 1, &hello).is_ok());
    let later = Instant::from_micros(500_000);
    assert_eq!(
        gate.admit(later, 7, 1, 1, &hello).map(|_| ()),
        Err(SecureError::ReplayedHello(7))
    );
    // A device with another key claiming to be 7.
    let thief = StaticKey::generate(&mut Entropy::seeded(99));
    let mut impostor = DeviceSecurity::new(thief, gate.public(), 0, Entropy::seeded(5));
    let at = Instant::from_micros(600_000);
    let (_, bad) = impostor.hello(at, 7, 2).unwrap();
    assert_eq!(
        gate.admit(at, 7, 2, 1, &bad).map(|_| ()),
        Err(SecureError::WrongKey(7))
    );
    // Garbage.
    assert!(matches!(
        gate.admit(Instant::from_micros(900_000), 7, 3, 1, &[1, 2, 3]),
        Err(SecureError::Handshake(_))
    ));
    let st = gate.stats();
    assert_eq!((st.admitted, st.unknown_device, st.replayed), (1, 1, 1));
}

#[test]
fn hello_floods_are_rate_limited_per_device() {
    let (mut dev, mut gate, _) = pair(13);
    let t0 = Instant::from_micros(1_000);
    let (_, h1) = dev.hello(t0, 7, 1).unwrap();
    assert!(gate.admit(t0, 7, 1, 1, &h1).is_ok());
    let (_, h2) = dev.hello(t0, 7, 2).unwrap();
    assert_eq!(
        gate.admit(t0, 7, 2, 1, &h2).map(|_| ()),
        Err(SecureError::RateLimited(7))
    );
    let t1 = t0 + handshake::HANDSHAKE_INTERVAL;
    let (_, h3) = dev.hello(t1, 7, 3).unwrap();
    assert!(gate.admit(t1, 7, 3, 1, &h3).is_ok());
}

#[test]
fn a_forged_offer_leaves_the_handshake_able_to_read_the_real_one() {
    let (mut dev, mut gate, _) = pair(14);
    let now = Instant::from_micros(1_000);
    let (init, hello) = dev.hello(now, 7, 1).unwrap();
    let (reply, _) = gate.admit(now, 7, 1, 3, &hello).unwrap();
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
        let (_, hello) = dev.hello(now, 7, 1).unwrap();
        let (reply, _) = gate.admit(now, 7, 1, 3, &hello).unwrap();
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
