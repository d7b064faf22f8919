//! `livecam emulate --bench`: how fast the bridge forwards and how much latency it adds.
//!
//! Two hosts in namespaces behind the bridge, with perfect links (no loss, no delay, no rate):
//!
//! - **Throughput**: a sender in host 0 sends 64-byte UDP datagrams to host 1 at 100 000 per
//!   second (twice the target) for a while; the figure is datagrams received per second at host 1 (what the bridge
//!   forwarded), next to what was offered.
//! - **Added latency**: UDP ping-pong between the hosts, through the bridge, and the same
//!   between two namespaces joined directly by a veth pair; half the difference of the round
//!   trips (median and 99th percentile) is what the bridge adds one way.
//!
//! The sockets are opened inside the namespaces by threads that enter them (`setns`), so the
//! benchmark needs no helper process.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livecam_system::link::LinkConfig;
use serde::Serialize;

use crate::netns::{self, NetError};
use crate::run::RunError;

/// The rate the throughput test offers, packets per second: twice the target.
const OFFERED_PPS: f64 = 100_000.0;

/// The figures `--bench` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Datagrams per second the sender offered.
    pub offered_pps: f64,
    /// Datagrams per second that crossed the bridge.
    pub forwarded_pps: f64,
    /// Round trips measured on each path.
    pub round_trips: usize,
    pub rtt_us_p50_bridge: f64,
    pub rtt_us_p99_bridge: f64,
    pub rtt_us_p50_direct: f64,
    pub rtt_us_p99_direct: f64,
    /// One-way latency the bridge adds: half the round-trip difference, median.
    pub added_us_p50: f64,
    /// The same at the 99th percentile.
    pub added_us_p99: f64,
    /// Targets: >= 50 000 packets/s, < 100 us added.
    pub meets_targets: bool,
}

/// Opens a UDP socket bound to `bind` inside namespace `ns`.
fn socket_in(ns: &str, bind: SocketAddr) -> std::io::Result<UdpSocket> {
    netns::within(ns, || UdpSocket::bind(bind))
}

/// Two namespaces joined directly by a veth pair: the reference path. Deleted when dropped.
struct DirectPair {
    ns: [String; 2],
}

impl DirectPair {
    fn create() -> Result<DirectPair, NetError> {
        let tag = format!("{}{}", netns::PREFIX, std::process::id());
        let pair = DirectPair {
            ns: [format!("{tag}-d0"), format!("{tag}-d1")],
        };
        let [a, b] = &pair.ns;
        netns::run("ip", &["netns", "add", a])?;
        netns::run("ip", &["netns", "add", b])?;
        let (va, vb) = (format!("{tag}da"), format!("{tag}db"));
        netns::run(
            "ip",
            &[
                "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
            ],
        )?;
        for (ns, dev, ip) in [(a, &va, "10.201.0.1/24"), (b, &vb, "10.201.0.2/24")] {
            netns::run("ip", &["-n", ns, "addr", "add", ip, "dev", dev])?;
            netns::run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            netns::run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for DirectPair {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = netns::run("ip", &["netns", "del", ns]);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Round trips in microseconds, sorted: `n` ping-pongs from `client` to an echo on `server`.
fn ping_pong(client: UdpSocket, server: UdpSocket, to: SocketAddr, n: usize) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let _ = server.set_read_timeout(Some(Duration::from_millis(50)));
    let echo = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((len, from)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..len], from);
                }
            }
        })
    };
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut rtts = Vec::with_capacity(n);
    let mut buf = [0u8; 2048];
    // Warm-up: first packets pay for cold caches and lazily created state.
    for i in 0..n + 100 {
        let t = Instant::now();
        let payload = (i as u64).to_be_bytes();
        if client.send_to(&payload, to).is_err() {
            continue;
        }
        while let Ok((len, _)) = client.recv_from(&mut buf) {
            if buf[..len] == payload {
                if i >= 100 {
                    rtts.push(t.elapsed().as_secs_f64() * 1e6);
                }
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    rtts.sort_by(f64::total_cmp);
    rtts
}

/// Runs the benchmark: `seconds` of flooding, `round_trips` ping-pongs per path.
pub fn run(seconds: f64, round_trips: usize) -> Result<BenchReport, RunError> {
    let io = |what: &'static str| {
        move |source| RunError::Io {
            what: what.to_string(),
            source,
        }
    };
    let (net, bridge) = crate::baseline::two_hosts(1, LinkConfig::default())?;
    let a = net.names().netns(0);
    let b = net.names().netns(1);
    let to_b = SocketAddr::from((net.ip(1), 9000));

    // Throughput.
    let sink = socket_in(&b, to_b).map_err(io("opening the receiver"))?;
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io("setting a timeout"))?;
    let source =
        socket_in(&a, SocketAddr::from((net.ip(0), 0))).map_err(io("opening the sender"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if sink.recv_from(&mut buf).is_ok() {
                    n += 1;
                }
            }
            n
        })
    };
    let payload = [0x5au8; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    let span = Duration::from_secs_f64(seconds.max(0.1));
    // Paced in 1 ms bursts at OFFERED_PPS: an unpaced flood would only take the CPU the
    // bridge needs (two cores here), and measure the sender as much as the bridge.
    while start.elapsed() < span {
        let due = (start.elapsed().as_secs_f64() * OFFERED_PPS) as u64;
        while sent < due {
            if source.send_to(&payload, to_b).is_err() {
                break;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let what is in the sockets drain, then stop counting.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let received = counter.join().unwrap_or(0);

    // Latency through the bridge.
    let client =
        socket_in(&a, SocketAddr::from((net.ip(0), 0))).map_err(io("opening the client"))?;
    let to_echo = SocketAddr::from((net.ip(1), 9001));
    let server = socket_in(&b, to_echo).map_err(io("opening the echo"))?;
    let bridged = ping_pong(client, server, to_echo, round_trips);
    bridge.stop_stats();
    drop(net);

    // Latency on a direct veth pair.
    let pair = DirectPair::create()?;
    let client = socket_in(&pair.ns[0], SocketAddr::from(([10, 201, 0, 1], 0)))
        .map_err(io("opening the client"))?;
    let to_echo = SocketAddr::from(([10, 201, 0, 2], 9001));
    let server = socket_in(&pair.ns[1], to_echo).map_err(io("opening the echo"))?;
    let direct = ping_pong(client, server, to_echo, round_trips);
    drop(pair);

    let (b50, b99) = (percentile(&bridged, 0.5), percentile(&bridged, 0.99));
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let forwarded_pps = received as f64 / elapsed;
    let added_us_p50 = (b50 - d50) / 2.0;
    Ok(BenchReport {
        offered_pps: sent as f64 / elapsed,
        forwarded_pps,
        round_trips: bridged.len().min(direct.len()),
        rtt_us_p50_bridge: b50,
        rtt_us_p99_bridge: b99,
        rtt_us_p50_direct: d50,
        rtt_us_p99_direct: d99,
        added_us_p50,
        added_us_p99: (b99 - d99) / 2.0,
        meets_targets: forwarded_pps >= 50_000.0 && added_us_p50 < 100.0,
    })
}
