//! Every decoder against hostile input, on every `cargo test`: the committed fuzz corpus
//! (`fuzz/corpus/TARGET/*`) replayed, and proptest's arbitrary and mutated inputs, all through
//! the checks the fuzz targets run (`fuzz/src/lib.rs`, compiled in here), so a property broken
//! by a fuzzer's find fails here too once its input is in the corpus.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use livecam_system::device::NmeaParser;
use livecam_system::proto::wire::{
    self, Command, CommandMsg, CommandResult, ConnectForward, ConnectOffer, ConnectReply,
    ConnectRequest, FrameAck, Handover, Heartbeat, HeartbeatAck, KeepAlive, ManagerChange, Message,
    Nack, Parity, PathMark, PathProbe, PathReport, PeerStatus, Sealed, Segment, SessionTier1s,
    Stored,
};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

fn corpus_dir(target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_fuzz_corpus_file_passes_its_targets_check() {
    for (target, check) in checks::TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} has no seed inputs", dir.display());
        for f in files {
            let data = std::fs::read(&f).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails the {target} check", f.display());
        }
    }
}

/// Handshake bytes of a few shapes: none (a cluster without keys), a hello's length, the
/// longest allowed.
fn handshake(pick: u32) -> &'static [u8] {
    match pick % 3 {
        0 => &[],
        1 => &[0x5a; 112],
        _ => &[0xa5; wire::MAX_HANDSHAKE_LEN],
    }
}

/// The encoder-made seeds: one datagram of every message type (two for those with an address,
/// IPv4 and IPv6) and a few captured frames, as `(target, file name, bytes)`. A new message
/// type gets a line here; `LIVECAM_BLESS_CORPUS=1 cargo test --test decode_props` writes them.
fn encoder_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let v4: SocketAddr = "192.0.2.7:7101".parse().expect("an address");
    let v6: SocketAddr = "[2001:db8::7]:7102".parse().expect("an address");
    let payload = [0xa5u8; 64];
    // Handshake-shaped bytes (a real hello is 112 bytes, a reply 56) and a sealed body.
    let hello = [0x5au8; 112];
    let reply = [0x3cu8; 56];
    let body = [0xc3u8; 80];
    let messages = [
        Message::Segment(Segment {
            session: 1001,
            frame: 7,
            index: 1,
            count: 3,
            offset: 64,
            frame_len: 190,
            payload: &payload,
            repair: false,
        }),
        Message::Segment(Segment {
            session: 1001,
            frame: 7,
            index: 2,
            count: 3,
            offset: 128,
            frame_len: 190,
            payload: &payload[..62],
            repair: true,
        }),
        Message::Parity(Parity {
            session: 1001,
            frame: 7,
            index: 1,
            first_count: 2,
            count: 3,
            frame_len: 190,
            repair: false,
            payload: &payload,
        }),
        Message::Nack(Nack {
            session: 1001,
            frame: 7,
            next_segment_size: 700,
            next_parity: 2,
            missing: vec![0, 2, 9],
        }),
        Message::FrameAck(FrameAck {
            session: 1001,
            frame: 7,
            next_segment_size: 1100,
            next_parity: 2,
        }),
        Message::Stored(Stored {
            session: 1001,
            frames: vec![1_764_000_000_005, 1_764_000_000_006, 1 << 40],
        }),
        Message::KeepAlive(KeepAlive {
            session: 1001,
            seq: 3,
        }),
        Message::Sealed(Sealed {
            session: 1001,
            nonce: 42,
            body: &body,
        }),
        Message::ConnectRequest(ConnectRequest {
            client: 1001,
            attempt: 1,
            boot_seq: 0,
            hello: &hello,
            padding: 1034,
        }),
        Message::ConnectForward(ConnectForward {
            client: 1001,
            attempt: 1,
            boot_seq: 0,
            client_addr: v4,
            hello: &hello,
        }),
        Message::ConnectForward(ConnectForward {
            client: 1001,
            attempt: 2,
            boot_seq: 0,
            client_addr: v6,
            hello: &[],
        }),
        Message::ConnectOffer(ConnectOffer {
            client: 1001,
            attempt: 1,
            tier2: 11,
            load: 3,
            reply: &reply,
        }),
        Message::ConnectAccept(ConnectReply {
            client: 1001,
            attempt: 1,
            tier2: 11,
        }),
        Message::ConnectRelease(ConnectReply {
            client: 1001,
            attempt: 1,
            tier2: 12,
        }),
        Message::Heartbeat(Heartbeat {
            tier2: 11,
            epoch: 2,
            sessions: 3,
            capacity: 200,
        }),
        Message::HeartbeatAck(HeartbeatAck {
            tier1: 1,
            tier2: 11,
            epoch: 2,
        }),
        Message::HandoverRequest(Handover {
            tier1: 1,
            tier2: 11,
            tier2_addr: v4,
            epoch: 2,
        }),
        Message::HandoverAccept(Handover {
            tier1: 2,
            tier2: 11,
            tier2_addr: v6,
            epoch: 2,
        }),
        Message::ManagerChange(ManagerChange {
            tier2: 11,
            manager: 2,
            manager_addr: v4,
            epoch: 3,
        }),
        Message::Tier1List(vec![v4, v6]),
        Message::SessionTier1s(SessionTier1s {
            session: 1001,
            tier1s: vec![v4, v6],
        }),
        Message::PeerStatus(PeerStatus {
            tier1: 1,
            tier2s: 2,
            sessions: 30,
            capacity: 400,
            draining: true,
        }),
        Message::Command(CommandMsg {
            id: 1,
            client: 1001,
            command: Command::SetFps { milli_fps: 5000 },
        }),
        Message::Command(CommandMsg {
            id: 2,
            client: 1001,
            command: Command::SetResolution {
                width: 640,
                height: 480,
            },
        }),
        Message::Command(CommandMsg {
            id: 3,
            client: 1001,
            command: Command::SetQuality { quality: 70 },
        }),
        Message::Command(CommandMsg {
            id: 4,
            client: 1001,
            command: Command::Snapshot,
        }),
        Message::Command(CommandMsg {
            id: 5,
            client: 1001,
            command: Command::SwitchTier1 { addr: v6 },
        }),
        Message::Command(CommandMsg {
            id: 6,
            client: 1001,
            command: Command::Start,
        }),
        Message::Command(CommandMsg {
            id: 7,
            client: 1001,
            command: Command::Stop,
        }),
        Message::CommandResult(CommandResult {
            id: 1,
            client: 1001,
            ok: true,
            reason: String::new(),
        }),
        Message::CommandResult(CommandResult {
            id: 2,
            client: 1001,
            ok: false,
            reason: "resolution not supported: 640x480".into(),
        }),
        // New types go last, so the files of the ones before keep their names.
        Message::PathChallenge(PathProbe {
            session: 1001,
            token: 12,
        }),
        Message::PathResponse(PathProbe {
            session: 1001,
            token: 12,
        }),
        Message::PathPing(PathReport {
            session: 1001,
            token: 13,
            bytes: 48_000,
        }),
        Message::PathEcho(PathReport {
            session: 1001,
            token: 13,
            bytes: 45_600,
        }),
        Message::PathMark(PathMark {
            session: 1001,
            frame: 42,
            passed: 9,
        }),
    ];
    let mut out: Vec<_> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| ("wire", format!("{i:02}-{}", m.name()), encoded(m)))
        .collect();
    let fix = livecam_system::device::Fix {
        lat: 35.6812,
        lon: 139.7671,
        speed_mps: 8.5,
        heading_deg: 270.0,
        fix_time_ms: 1_700_000_000_000,
    };
    let jpeg = vec![
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0xff, 0xd9,
    ];
    for (name, fix, jpeg) in [
        ("with-fix", Some(fix), jpeg.clone()),
        ("without-fix", None, jpeg),
        ("empty-picture", Some(fix), Vec::new()),
    ] {
        let f = livecam_system::device::CapturedFrame {
            capture_ms: 123_456,
            fix,
            jpeg,
        };
        out.push(("frame", name.to_string(), f.encode()));
    }
    out
}

#[test]
fn the_seed_corpus_holds_the_encoders_datagrams_and_the_sample_files() {
    let bless = std::env::var_os("LIVECAM_BLESS_CORPUS").is_some();
    for (target, name, bytes) in encoder_seeds() {
        let path = corpus_dir(target).join(&name);
        if bless {
            std::fs::write(&path, &bytes).expect("writing a seed");
        }
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(bytes),
            "{} is missing or stale: LIVECAM_BLESS_CORPUS=1 rewrites it",
            path.display()
        );
    }
    // The sample configs, scenarios and sweeps are seeds of their targets, byte for byte.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, target) in [
        ("deploy", "config"),
        ("sim/scenarios", "scenario"),
        ("experiments", "sweep"),
    ] {
        for e in std::fs::read_dir(root.join(dir)).expect("a sample directory") {
            let p = e.expect("an entry").path();
            if p.extension().is_some_and(|x| x == "toml")
                && p.file_name() != Some("Cargo.toml".as_ref())
            {
                let seed = corpus_dir(target).join(p.file_name().expect("a name"));
                if bless {
                    std::fs::copy(&p, &seed).expect("copying a seed");
                }
                assert_eq!(
                    std::fs::read(&seed).ok(),
                    std::fs::read(&p).ok(),
                    "{} is not the seed {}: LIVECAM_BLESS_CORPUS=1 copies it",
                    p.display(),
                    seed.display()
                );
            }
        }
    }
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
    ]
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<u32>().prop_map(|milli_fps| Command::SetFps { milli_fps }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(width, height)| Command::SetResolution { width, height }),
        any::<u8>().prop_map(|quality| Command::SetQuality { quality }),
        Just(Command::Snapshot),
        arb_addr().prop_map(|addr| Command::SwitchTier1 { addr }),
        Just(Command::Start),
        Just(Command::Stop),
    ]
}

/// Any message this build can encode, every type, with fields across their whole ranges
/// (within what a valid peer sends: a segment inside its frame, NACK indices increasing).
fn arb_message() -> impl Strategy<Value = Message<'static>> {
    let u = any::<u32>;
    prop_oneof![
        (
            u(),
            u(),
            1u16..,
            any::<u16>(),
            vec(any::<u8>(), 1..1500),
            any::<u32>()
        )
            .prop_map(|(session, frame, count, index, payload, offset)| {
                let payload: &'static [u8] = Box::leak(payload.into_boxed_slice());
                let offset = offset % (u32::MAX - payload.len() as u32);
                Message::Segment(Segment {
                    session,
                    frame,
                    index: index % count,
                    count,
                    offset,
                    frame_len: offset + payload.len() as u32,
                    payload,
                    repair: index % 2 == 1,
                })
            }),
        (
            u(),
            u(),
            1u16..200,
            any::<u16>(),
            vec(any::<u8>(), 1..1500),
            any::<u32>()
        )
            .prop_map(|(session, frame, count, index, payload, extra)| {
                let payload: &'static [u8] = Box::leak(payload.into_boxed_slice());
                let len = payload.len() as u32;
                Message::Parity(Parity {
                    session,
                    frame,
                    index: index % (wire::MAX_SHARDS as u16 - count),
                    first_count: index % (wire::MAX_SHARDS as u16 - count + 1),
                    count,
                    frame_len: (u32::from(count) - 1) * len + 1 + extra % len,
                    repair: extra % 2 == 0,
                    payload,
                })
            }),
        (
            u(),
            u(),
            any::<u16>(),
            any::<u8>(),
            btree_set(any::<u16>(), 1..=wire::MAX_NACK_INDICES)
        )
            .prop_map(|(session, frame, next_segment_size, next_parity, m)| {
                Message::Nack(Nack {
                    session,
                    frame,
                    next_segment_size,
                    next_parity,
                    missing: m.into_iter().collect(),
                })
            }),
        (u(), u(), any::<u16>(), any::<u8>()).prop_map(
            |(session, frame, next_segment_size, next_parity)| {
                Message::FrameAck(FrameAck {
                    session,
                    frame,
                    next_segment_size,
                    next_parity,
                })
            }
        ),
        (u(), u()).prop_map(|(client, attempt)| Message::ConnectRequest(ConnectRequest {
            client,
            attempt,
            boot_seq: u64::from(attempt) << 20,
            hello: handshake(client),
            padding: (client % 1200) as u16,
        })),
        (u(), u(), arb_addr()).prop_map(|(client, attempt, client_addr)| {
            Message::ConnectForward(ConnectForward {
                client,
                attempt,
                boot_seq: u64::from(attempt) << 20,
                client_addr,
                hello: handshake(attempt),
            })
        }),
        (u(), u(), u(), u()).prop_map(|(client, attempt, tier2, load)| {
            Message::ConnectOffer(ConnectOffer {
                client,
                attempt,
                tier2,
                load,
                reply: handshake(load),
            })
        }),
        (
            u(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 16..200)
        )
            .prop_map(|(session, nonce, body)| {
                Message::Sealed(Sealed {
                    session,
                    nonce,
                    body: Box::leak(body.into_boxed_slice()),
                })
            }),
        (
            u(),
            proptest::collection::vec(any::<u64>(), 0..=wire::MAX_STORED_FRAMES)
        )
            .prop_map(|(session, frames)| Message::Stored(Stored { session, frames })),
        (u(), u(), u(), any::<bool>()).prop_map(|(client, attempt, tier2, accept)| {
            let r = ConnectReply {
                client,
                attempt,
                tier2,
            };
            if accept {
                Message::ConnectAccept(r)
            } else {
                Message::ConnectRelease(r)
            }
        }),
        (u(), any::<u64>(), u(), u()).prop_map(|(tier2, epoch, sessions, capacity)| {
            Message::Heartbeat(Heartbeat {
                tier2,
                epoch,
                sessions,
                capacity,
            })
        }),
        (u(), u(), any::<u64>()).prop_map(|(tier1, tier2, epoch)| {
            Message::HeartbeatAck(HeartbeatAck {
                tier1,
                tier2,
                epoch,
            })
        }),
        (u(), u(), arb_addr(), any::<u64>(), any::<bool>()).prop_map(
            |(tier1, tier2, tier2_addr, epoch, req)| {
                let h = Handover {
                    tier1,
                    tier2,
                    tier2_addr,
                    epoch,
                };
                if req {
                    Message::HandoverRequest(h)
                } else {
                    Message::HandoverAccept(h)
                }
            }
        ),
        (u(), u(), arb_addr(), any::<u64>()).prop_map(|(tier2, manager, manager_addr, epoch)| {
            Message::ManagerChange(ManagerChange {
                tier2,
                manager,
                manager_addr,
                epoch,
            })
        }),
        vec(arb_addr(), 1..=wire::MAX_TIER1_LIST).prop_map(Message::Tier1List),
        (u(), vec(arb_addr(), 1..=wire::MAX_TIER1_LIST)).prop_map(|(session, tier1s)| {
            Message::SessionTier1s(SessionTier1s { session, tier1s })
        }),
        (u(), any::<u64>(), any::<bool>()).prop_map(|(session, token, challenge)| {
            let p = PathProbe { session, token };
            if challenge {
                Message::PathChallenge(p)
            } else {
                Message::PathResponse(p)
            }
        }),
        (u(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(session, token, bytes, ping)| {
                let p = PathReport {
                    session,
                    token,
                    bytes,
                };
                if ping {
                    Message::PathPing(p)
                } else {
                    Message::PathEcho(p)
                }
            }
        ),
        (u(), u(), u()).prop_map(|(session, frame, passed)| Message::PathMark(PathMark {
            session,
            frame,
            passed
        })),
        (u(), u(), u(), u(), any::<bool>()).prop_map(
            |(tier1, tier2s, sessions, capacity, draining)| {
                Message::PeerStatus(PeerStatus {
                    tier1,
                    tier2s,
                    sessions,
                    capacity,
                    draining,
                })
            }
        ),
        (any::<u64>(), u(), arb_command()).prop_map(|(id, client, command)| {
            Message::Command(CommandMsg {
                id,
                client,
                command,
            })
        }),
        (any::<u64>(), u(), any::<bool>(), "\\PC{0,60}").prop_map(|(id, client, ok, reason)| {
            // The longest prefix on a character boundary that fits the wire's limit.
            let mut end = reason.len().min(wire::MAX_REASON_LEN);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            Message::CommandResult(CommandResult {
                id,
                client,
                ok,
                reason: reason[..end].to_string(),
            })
        }),
    ]
}

fn encoded(m: &Message<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    m.encode(&mut buf);
    buf
}

/// A damaged copy of a datagram: bits flipped, cut short, bytes added or overwritten.
#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Overwrite(usize, u8),
}

fn arb_damage() -> impl Strategy<Value = Vec<Damage>> {
    vec(
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(i, b)| Damage::Flip(i, b)),
            any::<usize>().prop_map(Damage::Truncate),
            vec(any::<u8>(), 1..8).prop_map(Damage::Extend),
            (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::Overwrite(i, v)),
        ],
        1..4,
    )
}

fn damage(mut bytes: Vec<u8>, how: &[Damage]) -> Vec<u8> {
    for d in how {
        let n = bytes.len().max(1);
        match d {
            Damage::Flip(i, b) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x ^= 1 << b;
                }
            }
            Damage::Truncate(i) => bytes.truncate(i % n),
            Damage::Extend(more) => bytes.extend_from_slice(more),
            Damage::Overwrite(i, v) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x = *v;
                }
            }
        }
    }
    bytes
}

/// Values a config or scenario field should never choke on.
const NASTY_VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "4294967296",
    "18446744073709551616",
    "-9223372036854775808",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "-0.0",
    "1e-320",
    "\"\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"0.0.0.0:0\"",
    "\"[::]:65535\"",
    "\"256.1.1.1:1\"",
    "\"fixed:0\"",
    "\"nmea-file:@0\"",
    "\"gpsd:\"",
    "\"camera:99999999999\"",
    "[]",
    "[\"\"]",
    "{}",
    "true",
    "1979-05-27",
    "\"sqlite:\"",
    "\"postgres://\"",
];

/// A sample TOML file with one line changed: a value replaced by a nasty one, the line
/// dropped, or doubled.
fn mutate_toml(samples: &'static [&'static str]) -> impl Strategy<Value = String> {
    (0..samples.len(), any::<usize>(), 0..NASTY_VALUES.len() + 2).prop_map(move |(f, l, v)| {
        let lines: Vec<&str> = samples[f].lines().collect();
        let at = l % lines.len().max(1);
        let mut out = Vec::with_capacity(lines.len() + 1);
        for (i, line) in lines.iter().enumerate() {
            if i != at {
                out.push(line.to_string());
            } else if v == NASTY_VALUES.len() {
                // dropped
            } else if v == NASTY_VALUES.len() + 1 {
                out.push(line.to_string());
                out.push(line.to_string());
            } else if let Some((key, _)) = line.split_once('=') {
                out.push(format!("{key}= {}", NASTY_VALUES[v]));
            } else {
                out.push(line.to_string());
            }
        }
        out.join("\n")
    })
}

const CONFIGS: &[&str] = &[
    include_str!("../deploy/tier1-a.toml"),
    include_str!("../deploy/tier2-a.toml"),
    include_str!("../deploy/mobile.toml"),
    include_str!("../deploy/backend.toml"),
];
const SCENARIOS: &[&str] = &[
    include_str!("../sim/scenarios/reference.toml"),
    include_str!("../sim/scenarios/bursty.toml"),
    include_str!("../sim/scenarios/cluster-drain.toml"),
    include_str!("../sim/scenarios/cluster-tier2-crash.toml"),
];
const SWEEPS: &[&str] = &[
    include_str!("../experiments/policy-vs-loss.toml"),
    include_str!("../experiments/failover.toml"),
];

/// NMEA 0183's checksum: the XOR of the bytes between `$` and `*`.
fn nmea_checksum(body: &str) -> u8 {
    body.bytes().fold(0, |a, b| a ^ b)
}

/// A GGA or RMC sentence body (no `$`, no checksum) with the given fields.
fn arb_nmea_body() -> impl Strategy<Value = String> {
    let coord = |deg: u32| (0..deg, 0u32..60, 0u32..10_000);
    (
        any::<bool>(),
        coord(100),
        prop_oneof![Just("N"), Just("S"), Just("X"), Just("")],
        coord(200),
        prop_oneof![Just("E"), Just("W"), Just("")],
        (0u32..24, 0u32..60, 0u32..61),
        0u32..1000,
    )
        .prop_map(
            |(gga, (la, lm, lf), ns, (lo, om, of), ew, (h, m, s), knots)| {
                let time = format!("{h:02}{m:02}{s:02}.000");
                let lat = format!("{la:02}{lm:02}.{lf:04}");
                let lon = format!("{lo:03}{om:02}.{of:04}");
                if gga {
                    format!("GPGGA,{time},{lat},{ns},{lon},{ew},1,8,1.03,61.7,M,55.2,M,,")
                } else {
                    format!("GPRMC,{time},A,{lat},{ns},{lon},{ew},{knots}.5,31.66,280511,,,A")
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_pass_every_check(bytes in vec(any::<u8>(), 0..512)) {
        for (_, check) in checks::TARGETS {
            check(&bytes);
        }
    }

    #[test]
    fn arbitrary_text_passes_every_check(text in "\\PC{0,200}") {
        for (_, check) in checks::TARGETS {
            check(text.as_bytes());
        }
    }

    #[test]
    fn every_message_round_trips(msg in arb_message()) {
        let bytes = encoded(&msg);
        prop_assert_eq!(wire::decode(&bytes), Ok(msg));
        checks::wire(&bytes);
    }

    #[test]
    fn a_body_behind_a_valid_preamble_and_checksum_is_decoded_or_rejected_cleanly(
        kind in any::<u8>(),
        body in vec(any::<u8>(), 0..300),
    ) {
        let mut bytes: Vec<u8> = [&wire::MAGIC[..], &[wire::VERSION, kind][..], &body[..]].concat();
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
        checks::wire(&bytes);
    }

    #[test]
    fn damaged_datagrams_are_rejected_or_decode_to_what_they_encode(
        msg in arb_message(),
        how in arb_damage(),
    ) {
        let bytes = damage(encoded(&msg), &how);
        checks::wire(&bytes);
    }

    #[test]
    fn a_flipped_bit_or_a_cut_is_always_rejected(
        msg in arb_message(),
        at in any::<usize>(),
        bit in 0u8..8,
        cut in 1usize..64,
    ) {
        let bytes = encoded(&msg);
        let mut flipped = bytes.clone();
        let i = at % flipped.len();
        flipped[i] ^= 1 << bit;
        prop_assert!(wire::decode(&flipped).is_err(), "flip of byte {} bit {} unnoticed", i, bit);
        let short = &bytes[..bytes.len().saturating_sub(cut)];
        prop_assert!(wire::decode(short).is_err(), "cut of {} bytes unnoticed", cut);
    }

    #[test]
    fn captured_frames_round_trip_and_survive_damage(
        capture_ms in any::<u64>(),
        fix in proptest::option::of((any::<f64>(), any::<f64>(), any::<f32>(), any::<f32>(), any::<u64>())),
        jpeg in vec(any::<u8>(), 0..600),
        how in arb_damage(),
    ) {
        let frame = livecam_system::device::CapturedFrame {
            capture_ms,
            fix: fix.map(|(lat, lon, s, h, fix_time_ms)| livecam_system::device::Fix {
                lat, lon, speed_mps: f64::from(s), heading_deg: f64::from(h), fix_time_ms,
            }),
            jpeg,
        };
        let bytes = frame.encode();
        checks::frame(&bytes);
        let back = livecam_system::device::CapturedFrame::decode(&bytes).expect("decodes");
        prop_assert_eq!(back.encode(), bytes.clone());
        checks::frame(&damage(bytes, &how));
    }

    #[test]
    fn nmea_sentences_give_fixes_only_with_the_right_checksum(
        body in arb_nmea_body(),
        wrong in 1u8..=255,
    ) {
        let sum = nmea_checksum(&body);
        let good = format!("${body}*{sum:02X}");
        let bad = format!("${body}*{:02X}", sum ^ wrong);
        let mut p = NmeaParser::new();
        prop_assert!(p.feed(&bad).is_none(), "{} gave a fix", bad);
        prop_assert_eq!(p.stats().bad_sentences, 1);
        p.feed(&good);
        checks::nmea(format!("{good}\r\n{bad}\r\n{good}\n").as_bytes());
    }

    #[test]
    fn nmea_streams_of_sentences_and_garbage_pass_the_check(
        parts in vec(prop_oneof![
            arb_nmea_body().prop_map(|b| format!("${b}*{:02X}", nmea_checksum(&b))),
            arb_nmea_body().prop_map(|b| format!("${b}*ZZ")),
            "\\PC{0,40}",
            vec(any::<u8>(), 0..300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ], 1..12),
        sep in prop_oneof![Just("\r\n"), Just("\n"), Just("\r")],
    ) {
        checks::nmea(parts.join(sep).as_bytes());
    }

    #[test]
    fn gpsd_reports_with_any_numbers_pass_the_check(
        lat in any::<f64>(),
        lon in any::<f64>(),
        speed in any::<f64>(),
        track in any::<f64>(),
        time in prop_oneof![Just("2024-01-01T00:00:00Z".to_string()), "\\PC{0,30}"],
    ) {
        let line = serde_json::json!({
            "class": "TPV", "lat": lat, "lon": lon, "speed": speed, "track": track, "time": time,
        });
        checks::gpsd(line.to_string().as_bytes());
    }

    #[test]
    fn configs_with_a_nasty_value_pass_the_check(text in mutate_toml(CONFIGS)) {
        checks::config(text.as_bytes());
    }

    #[test]
    fn scenarios_with_a_nasty_value_pass_the_check(text in mutate_toml(SCENARIOS)) {
        checks::scenario(text.as_bytes());
    }

    #[test]
    fn sweeps_with_a_nasty_value_pass_the_check(text in mutate_toml(SWEEPS)) {
        checks::sweep(text.as_bytes());
    }
}
