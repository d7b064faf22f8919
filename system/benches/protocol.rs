//! Protocol throughput.
//!
//! - `encode`: a 10 KB frame pushed into a [`Sender`] and polled out as CRC-protected segments
//!   of 500 B and 1400 B.
//! - `decode`: the same segments decoded, checked and reassembled by a [`Receiver`].
//! - `loopback`: the same datagrams over real loopback UDP, once through the protocol (sender,
//!   receiver, frame ACK back) and once through a plain send/recv loop; after the run the
//!   ratio of the two throughputs is printed (target: protocol >= 70% of plain).
//!
//! - `encode_seal` / `open_decode`: the same with every datagram sealed and opened with a
//!   session's keys (ChaCha20-Poly1305, replay window), as authenticated sessions run; after
//!   the run the sealed/plain throughput ratios are printed.
//!
//! - `encode_fec` / `decode_fec`: a 10 KB frame in 1400 B segments with two Reed-Solomon parity
//!   segments (the sender's spares for NACKs encoded too); the decode side loses two data
//!   segments and rebuilds them from the parity, so the figure is decode + repair.
//!
//! Targets: encode and decode >= 2 GB/s on one core; with parity (encode + parity, decode +
//! repair) >= 1 GB/s. Run with `cargo bench -p livecam-system`.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;

use criterion::{criterion_group, BatchSize, Bencher, Criterion, Throughput};
use livecam_system::machine::Endpoint;
use livecam_system::proto::wire::{self, Message};
use livecam_system::proto::{
    PolicyConfig, PolicyKind, Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig,
};
use livecam_system::secure::{
    Attempt, Channel, DeviceRegistry, DeviceSecurity, Entropy, Gate, StaticKey,
};
use livecam_system::time::Instant;

const FRAME: usize = 10_000;
const SIZES: [usize; 2] = [500, 1400];

fn peer() -> SocketAddr {
    ([127, 0, 0, 1], 9).into()
}

fn sender(size: usize) -> Sender {
    let mut cfg = SenderConfig::new(1, peer());
    cfg.initial_segment_size = size;
    cfg.max_frames_in_flight = 1;
    Sender::new(cfg)
}

/// Parity segments per frame in the FEC benchmarks.
const PARITY: u8 = 2;

/// A sender whose peer asked (by a frame ACK, as a receiver does) for `size` segments with
/// [`PARITY`] parity segments per frame.
fn fec_sender(size: usize) -> Sender {
    let mut tx = sender(size);
    let mut ack = Vec::new();
    Message::FrameAck(wire::FrameAck {
        session: 1,
        frame: 0,
        next_segment_size: size as u16,
        next_parity: PARITY,
    })
    .encode(&mut ack);
    tx.handle_datagram(Instant::ZERO, peer(), &ack);
    assert_eq!(tx.parity(), usize::from(PARITY));
    tx
}

/// The datagrams of one frame, as the sender emits them.
fn segments(size: usize) -> Vec<Vec<u8>> {
    frame_datagrams(sender(size))
}

fn frame_datagrams(mut tx: Sender) -> Vec<Vec<u8>> {
    frame_datagrams_of(&mut tx)
}

/// The datagrams of the next frame `tx` sends.
fn frame_datagrams_of(tx: &mut Sender) -> Vec<Vec<u8>> {
    tx.push_frame(Instant::ZERO, vec![0xA5; FRAME]).unwrap();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while tx.poll_transmit(Instant::ZERO, &mut buf).is_some() {
        out.push(buf.clone());
    }
    out
}

/// One iteration: a 10 KB frame pushed into `tx` and every datagram polled out.
fn push_and_poll(b: &mut Bencher, mut tx: Sender) {
    let mut buf = Vec::with_capacity(2048);
    let frame = vec![0xA5u8; FRAME];
    b.iter_batched(
        || frame.clone(),
        |data| {
            tx.push_frame(Instant::ZERO, data).unwrap();
            while tx.poll_transmit(Instant::ZERO, &mut buf).is_some() {
                black_box(&buf);
            }
        },
        BatchSize::SmallInput,
    );
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(FRAME as u64));
    for size in SIZES {
        g.bench_function(format!("10KB_frame_into_{size}B_segments"), |b| {
            push_and_poll(b, sender(size))
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(FRAME as u64));
    for size in SIZES {
        let segs = segments(size);
        g.bench_function(format!("10KB_frame_from_{size}B_segments"), |b| {
            let from = peer();
            let mut buf = Vec::with_capacity(64);
            b.iter_batched(
                || Receiver::new(ReceiverConfig::default()),
                |mut rx| {
                    for s in &segs {
                        rx.handle_datagram(Instant::ZERO, from, s);
                    }
                    while let Some(ev) = rx.poll_event() {
                        if let ReceiverEvent::FrameDelivered { data, .. } = ev {
                            black_box(data);
                        }
                    }
                    while rx.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
                    rx
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

fn encode_fec(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_fec");
    g.throughput(Throughput::Bytes(FRAME as u64));
    g.bench_function("10KB_frame_into_1400B_segments_2_parity", |b| {
        push_and_poll(b, fec_sender(1400))
    });
    g.finish();
}

fn decode_fec(c: &mut Criterion) {
    /// Frames decoded by one receiver: a session keeps its Reed-Solomon coder while frames
    /// keep their shape, so the coder is built once per this many frames, as in a session.
    const RUN: usize = 256;
    let mut g = c.benchmark_group("decode_fec");
    g.throughput(Throughput::Bytes(FRAME as u64));
    let mut tx = fec_sender(1400);
    let mut frames = Vec::with_capacity(RUN);
    for _ in 0..RUN {
        let all = frame_datagrams_of(&mut tx);
        // Two data segments lost: the frame completes only by rebuilding them from the parity.
        let kept: Vec<Vec<u8>> = all
            .iter()
            .filter(|d| !matches!(wire::decode(d), Ok(Message::Segment(s)) if s.index < 2))
            .cloned()
            .collect();
        assert_eq!(kept.len() + 2, all.len());
        frames.push(kept);
    }
    g.bench_function("10KB_frame_from_1400B_segments_2_lost_2_parity", |b| {
        let from = peer();
        let mut buf = Vec::with_capacity(64);
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            let mut rx = Receiver::new(ReceiverConfig::default());
            for i in 0..iters as usize {
                if i > 0 && i % RUN == 0 {
                    rx = Receiver::new(ReceiverConfig::default());
                }
                let started = std::time::Instant::now();
                for s in &frames[i % RUN] {
                    rx.handle_datagram(Instant::ZERO, from, s);
                }
                let mut delivered = false;
                while let Some(ev) = rx.poll_event() {
                    if let ReceiverEvent::FrameDelivered { data, .. } = ev {
                        delivered = true;
                        black_box(data);
                    }
                }
                while rx.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
                spent += started.elapsed();
                assert!(delivered, "the parity rebuilt the frame");
            }
            spent
        });
    });
    g.finish();
}

/// Both ends of a session's keys, from a real handshake.
fn channels(seed: u64) -> (Channel, Channel) {
    let mut e = Entropy::seeded(seed);
    let cluster = StaticKey::generate(&mut e);
    let device = StaticKey::generate(&mut e);
    let mut reg = DeviceRegistry::new();
    reg.insert(1, device.public());
    let mut dev = DeviceSecurity::new(device, cluster.public(), 0, Entropy::seeded(seed + 1));
    let mut gate = Gate::new(cluster, reg, Entropy::seeded(seed + 2));
    let (init, hello) = dev
        .hello(Instant::ZERO, Attempt::new(1, 1, 0))
        .expect("hello");
    let (reply, server) = gate
        .admit(
            Instant::ZERO,
            IpAddr::from([127, 0, 0, 1]),
            Attempt::new(1, 1, 0),
            9,
            &hello,
        )
        .expect("admitted");
    let client = init.finish(9, &reply).map_err(|(_, e)| e).expect("reply");
    (client, server)
}

fn encode_seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_seal");
    g.throughput(Throughput::Bytes(FRAME as u64));
    for size in SIZES {
        g.bench_function(format!("10KB_frame_into_{size}B_segments"), |b| {
            let mut tx = sender(size);
            let (mut key, _) = channels(1);
            let mut buf = Vec::with_capacity(2048);
            let mut sealed = Vec::with_capacity(2048);
            let frame = vec![0xA5u8; FRAME];
            b.iter_batched(
                || frame.clone(),
                |data| {
                    tx.push_frame(Instant::ZERO, data).unwrap();
                    while tx.poll_transmit(Instant::ZERO, &mut buf).is_some() {
                        sealed.clear();
                        key.seal(&buf, &mut sealed).unwrap();
                        black_box(&sealed);
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

fn open_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_decode");
    g.throughput(Throughput::Bytes(FRAME as u64));
    for size in SIZES {
        let segs = segments(size);
        g.bench_function(format!("10KB_frame_from_{size}B_segments"), |b| {
            let from = peer();
            let mut buf = Vec::with_capacity(64);
            let mut inner = Vec::with_capacity(2048);
            b.iter_batched(
                // A fresh session each time (the replay window would refuse a second pass).
                || {
                    let (mut client, server) = channels(2);
                    let sealed: Vec<Vec<u8>> = segs
                        .iter()
                        .map(|s| {
                            let mut out = Vec::new();
                            client.seal(s, &mut out).unwrap();
                            out
                        })
                        .collect();
                    (server, sealed, Receiver::new(ReceiverConfig::default()))
                },
                |(mut key, sealed, mut rx)| {
                    for s in &sealed {
                        if let Ok(Message::Sealed(m)) = wire::decode(s) {
                            key.open(&m, &mut inner).unwrap();
                            rx.handle_datagram(Instant::ZERO, from, &inner);
                        }
                    }
                    while let Some(ev) = rx.poll_event() {
                        if let ReceiverEvent::FrameDelivered { data, .. } = ev {
                            black_box(data);
                        }
                    }
                    while rx.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
                    (key, rx)
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

struct Loopback {
    tx: UdpSocket,
    rx: UdpSocket,
}

impl Loopback {
    fn new() -> Self {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        rx.connect(tx.local_addr().unwrap()).unwrap();
        Loopback { tx, rx }
    }
}

fn loopback(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback");
    g.throughput(Throughput::Bytes(FRAME as u64));
    let segs = segments(1400);

    g.bench_function("plain_udp", |b| {
        let net = Loopback::new();
        let mut inbuf = vec![0u8; 65_536];
        b.iter(|| {
            for s in &segs {
                net.tx.send(s).unwrap();
            }
            for _ in &segs {
                let n = net.rx.recv(&mut inbuf).unwrap();
                black_box(&inbuf[..n]);
            }
        });
    });

    g.bench_function("protocol", |b| {
        let net = Loopback::new();
        let mut tx = sender(1400);
        // A fixed-size policy, so every iteration moves the same datagrams as the plain loop.
        let mut rx = Receiver::new(ReceiverConfig {
            policy: PolicyConfig {
                kind: PolicyKind::Fixed(1400),
                ..PolicyConfig::default()
            },
            ..ReceiverConfig::default()
        });
        let (tx_addr, rx_addr) = (net.tx.local_addr().unwrap(), net.rx.local_addr().unwrap());
        let mut out = Vec::with_capacity(2048);
        let mut inbuf = vec![0u8; 65_536];
        let frame = vec![0xA5u8; FRAME];
        let now = Instant::ZERO;
        b.iter_batched(
            || frame.clone(),
            |data| {
                tx.push_frame(now, data).unwrap();
                let mut sent = 0;
                while tx.poll_transmit(now, &mut out).is_some() {
                    net.tx.send(&out).unwrap();
                    sent += 1;
                }
                for _ in 0..sent {
                    let n = net.rx.recv(&mut inbuf).unwrap();
                    rx.handle_datagram(now, tx_addr, &inbuf[..n]);
                }
                while let Some(ev) = rx.poll_event() {
                    black_box(ev);
                }
                while rx.poll_transmit(now, &mut out).is_some() {
                    net.rx.send(&out).unwrap();
                    let n = net.tx.recv(&mut inbuf).unwrap();
                    tx.handle_datagram(now, rx_addr, &inbuf[..n]);
                }
                assert_eq!(tx.frames_in_flight(), 0);
                assert_eq!(tx.segment_size(), 1400);
                while tx.poll_event().is_some() {}
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Reads criterion's mean estimate (ns per iteration) of one benchmark, if it ran.
fn mean_ns(group: &str, bench: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = dir
        .join("criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

criterion_group!(
    benches,
    encode,
    decode,
    encode_fec,
    decode_fec,
    encode_seal,
    open_decode,
    loopback
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let (Some(plain), Some(proto)) = (
        mean_ns("loopback", "plain_udp"),
        mean_ns("loopback", "protocol"),
    ) {
        println!(
            "loopback goodput: plain {:.0} MB/s, protocol {:.0} MB/s, protocol/plain = {:.2} (target >= 0.70)",
            FRAME as f64 / plain * 1e3,
            FRAME as f64 / proto * 1e3,
            plain / proto
        );
    }
    for (group, bench) in [
        ("encode_fec", "10KB_frame_into_1400B_segments_2_parity"),
        (
            "decode_fec",
            "10KB_frame_from_1400B_segments_2_lost_2_parity",
        ),
    ] {
        if let Some(ns) = mean_ns(group, bench) {
            println!(
                "{group}: {:.0} MB/s of frame per core (target >= 1000)",
                FRAME as f64 / ns * 1e3
            );
        }
    }
    for size in SIZES {
        for (plain, sealed, what) in [
            (
                "encode",
                "encode_seal",
                format!("10KB_frame_into_{size}B_segments"),
            ),
            (
                "decode",
                "open_decode",
                format!("10KB_frame_from_{size}B_segments"),
            ),
        ] {
            if let (Some(p), Some(s)) = (mean_ns(plain, &what), mean_ns(sealed, &what)) {
                println!(
                    "{sealed} {size} B: plain {:.0} MB/s, sealed {:.0} MB/s, sealed/plain = {:.2}",
                    FRAME as f64 / p * 1e3,
                    FRAME as f64 / s * 1e3,
                    p / s
                );
            }
        }
    }
}
