//! `livecam bench flood`: a secured tier-2 under a flood of garbage and of well-formed but
//! unauthenticated datagrams, next to a legitimate load.
//!
//! Starts a tier-1 and a secured tier-2 (keys made for the run) as child processes pinned to
//! one core, as [`super::capacity`] does, and runs a legitimate load (authenticated cameras
//! through [`run_load`]) twice: once alone (the baseline) and once while a flooder thread
//! sends `rate` datagrams per second at the tier-2 from several sockets. The flood mixes
//! garbage, plain segments for random sessions, sealed datagrams for random sessions and
//! nonces, forged sealed datagrams for the real sessions' ids, connect requests and
//! forwards from unknown devices, unsigned commands stopping the real cameras, unsigned manager
//! changes with an epoch of `u64::MAX`, and control datagrams with forged signatures under
//! the real tier-1's name. The report compares goodput and latency, follows the
//! tier-2's RSS (before, highest during, after) and CPU, and takes the tier-2's own count of
//! rejected datagrams from the JSON summary it prints when stopped.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::capacity::{pin_self_away_from, start, BenchCluster, Server};
use super::load::{run_load, LoadError, LoadOptions, LoadSummary};
use super::procstat;
use crate::proto::wire::{self, Message};
use crate::secure::ServerRole;

/// What to run.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// The `livecam` binary to start the servers from.
    pub exe: PathBuf,
    /// The core the servers run on; the load generator and the flooder take the others.
    pub server_cpu: usize,
    /// Flood datagrams per second offered.
    pub rate: u64,
    /// How long the flood (and the load measured under it) lasts.
    pub seconds: f64,
    /// How long the baseline load runs.
    pub baseline_seconds: f64,
    pub cameras: u32,
    pub fps: f64,
    pub frame_bytes: usize,
    /// Sockets (source ports) the flood comes from.
    pub sockets: usize,
    pub seed: u64,
    /// RSS growth over the run above this fails the memory target.
    pub max_rss_growth_bytes: u64,
    /// Goodput under flood below this share of the baseline's fails the goodput target.
    pub min_goodput_ratio: f64,
}

impl Default for FloodOptions {
    fn default() -> Self {
        FloodOptions {
            exe: PathBuf::from("livecam"),
            server_cpu: 0,
            rate: 200_000,
            seconds: 30.0,
            baseline_seconds: 10.0,
            cameras: 4,
            fps: 10.0,
            frame_bytes: 10_000,
            sockets: 4,
            seed: 1,
            max_rss_growth_bytes: 16 << 20,
            min_goodput_ratio: 0.9,
        }
    }
}

/// One load run's goodput.
#[derive(Debug, Clone, Serialize)]
pub struct Goodput {
    pub sessions_established: u32,
    pub frames_sent: u64,
    pub frames_delivered: u64,
    pub delivered_ratio: f64,
    /// Frames delivered per second of load.
    pub frames_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub segments_resent: u64,
}

impl From<&LoadSummary> for Goodput {
    fn from(s: &LoadSummary) -> Self {
        Goodput {
            sessions_established: s.sessions_established,
            frames_sent: s.frames_sent,
            frames_delivered: s.frames_delivered,
            delivered_ratio: s.delivered_ratio,
            frames_per_s: s.frames_delivered as f64 / s.duration_s.max(1e-9),
            latency_ms_p50: s.latency_ms_p50,
            latency_ms_p99: s.latency_ms_p99,
            segments_resent: s.segments_resent,
        }
    }
}

/// What the flooder did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FloodSent {
    pub datagrams: u64,
    pub bytes: u64,
    /// Sends the kernel refused (buffer full); not counted in `datagrams`.
    pub send_errors: u64,
    pub seconds: f64,
}

/// What `livecam bench flood` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    pub offered_rate: u64,
    pub achieved_rate: f64,
    pub flood: FloodSent,
    pub sockets: usize,
    pub normal: Goodput,
    pub under_flood: Goodput,
    /// Delivered share under flood over the baseline's.
    pub goodput_ratio: f64,
    pub tier2_rss_before_bytes: u64,
    pub tier2_rss_max_during_bytes: u64,
    pub tier2_rss_after_bytes: u64,
    pub tier2_rss_growth_bytes: u64,
    /// The tier-2's CPU use in cores (1.0 = one core busy), alone and under flood.
    pub tier2_cores_normal: f64,
    pub tier2_cores_under_flood: f64,
    /// Session datagrams the tier-2 refused as unauthenticated, from its exit summary.
    pub tier2_datagrams_rejected: Option<u64>,
    /// Datagrams the kernel dropped for full UDP receive buffers during the flood, on the
    /// whole host (`/proc/net/snmp` `RcvbufErrors`): what the servers could not read in time.
    pub udp_rcvbuf_drops: Option<u64>,
    /// Its handshake gate's counters (connection requests admitted, refused, limited).
    pub tier2_gate: Option<serde_json::Value>,
    /// Its control plane's counters (unsigned, forged, rate-limited control datagrams).
    pub tier2_control: Option<serde_json::Value>,
    pub rss_target_met: bool,
    pub goodput_target_met: bool,
}

/// Errors of the bench.
pub type FloodError = LoadError;

/// The mix of flood datagrams, built ahead (the flooder only copies them out).
pub fn flood_datagrams(seed: u64, real_sessions: &[u32], count: usize) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let unknown_addr: SocketAddr = ([127, 0, 0, 1], 9).into();
    (0..count)
        .map(|i| {
            let mut buf = Vec::new();
            let mut body = vec![0u8; rng.random_range(100..1_200)];
            rng.fill_bytes(&mut body);
            match i % 9 {
                // Garbage.
                0 => buf = body,
                // Well-formed plain segments for random sessions.
                1 => {
                    let count = rng.random_range(1..40u16);
                    wire::Segment {
                        session: rng.random(),
                        frame: rng.random(),
                        index: rng.random_range(0..count),
                        count,
                        offset: 0,
                        frame_len: body.len() as u32 * u32::from(count),
                        payload: &body,
                        repair: false,
                    }
                    .encode(&mut buf);
                }
                // Sealed for random sessions and nonces.
                2 => Message::Sealed(wire::Sealed {
                    session: rng.random(),
                    nonce: rng.random(),
                    body: &body,
                })
                .encode(&mut buf),
                // Forged sealed datagrams for the real sessions.
                3 => Message::Sealed(wire::Sealed {
                    session: real_sessions
                        .get(rng.random_range(0..real_sessions.len().max(1)))
                        .copied()
                        .unwrap_or(1),
                    nonce: rng.random(),
                    body: &body,
                })
                .encode(&mut buf),
                // Connect requests from unknown devices.
                4 => Message::ConnectRequest(wire::ConnectRequest {
                    client: rng.random_range(3_000_000_000..u32::MAX),
                    attempt: rng.random(),
                    boot_seq: 0,
                    hello: &body[..96],
                    padding: 0,
                })
                .encode(&mut buf),
                // Connect forwards for unknown devices, as if from a tier-1 (unsigned).
                5 => Message::ConnectForward(wire::ConnectForward {
                    client: rng.random_range(3_000_000_000..u32::MAX),
                    attempt: rng.random(),
                    boot_seq: 0,
                    client_addr: unknown_addr,
                    hello: &body[..96],
                })
                .encode(&mut buf),
                // A stranger's commands for the real cameras (stop them), unsigned.
                6 => Message::Command(wire::CommandMsg {
                    id: rng.random(),
                    client: real_sessions
                        .get(rng.random_range(0..real_sessions.len().max(1)))
                        .copied()
                        .unwrap_or(1),
                    command: wire::Command::Stop,
                })
                .encode(&mut buf),
                // A manager change to the stranger with an epoch that would stick for ever.
                7 => Message::ManagerChange(wire::ManagerChange {
                    tier2: 11,
                    manager: 1,
                    manager_addr: unknown_addr,
                    epoch: u64::MAX,
                })
                .encode(&mut buf),
                // Forged signatures under the real tier-1's name, fresh counters: each costs a
                // signature check until the source's budget is spent.
                _ => {
                    let mut inner = Vec::new();
                    Message::ConnectForward(wire::ConnectForward {
                        client: rng.random_range(3_000_000_000..u32::MAX),
                        attempt: rng.random(),
                        boot_seq: 0,
                        client_addr: unknown_addr,
                        hello: &body[..96],
                    })
                    .encode(&mut inner);
                    let start = wire::put_signed_head(
                        &mut buf,
                        ServerRole::Tier1.code(),
                        1,
                        u64::MAX / 2 + rng.random_range(0..u64::MAX / 4),
                        &inner,
                    );
                    buf.extend_from_slice(&body[..wire::SIGNATURE_LEN]);
                    wire::finish_signed(&mut buf, start);
                }
            }
            buf
        })
        .collect()
}

/// Sends `datagrams` round robin at `target` from `sockets` sockets at `rate` per second until
/// `stop`, in bursts of a millisecond's worth.
pub fn run_flooder(
    target: SocketAddr,
    sockets: usize,
    rate: u64,
    datagrams: &[Vec<u8>],
    stop: &AtomicBool,
    sent_so_far: &AtomicU64,
) -> std::io::Result<FloodSent> {
    let socks = (0..sockets.max(1))
        .map(|_| {
            let s = UdpSocket::bind(("127.0.0.1", 0))?;
            s.connect(target)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let started = std::time::Instant::now();
    let mut out = FloodSent::default();
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let attempted = out.datagrams + out.send_errors;
        if attempted >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        // At most a millisecond's worth at once, so a late start does not burst forever.
        let burst = (due - attempted).min(rate / 1000 + 1);
        for _ in 0..burst {
            let d = &datagrams[next % datagrams.len()];
            match socks[next % socks.len()].send(d) {
                Ok(n) => {
                    out.datagrams += 1;
                    out.bytes += n as u64;
                }
                Err(_) => out.send_errors += 1,
            }
            next = next.wrapping_add(1);
        }
        sent_so_far.store(out.datagrams, Ordering::Relaxed);
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// The host's count of UDP datagrams dropped for a full receive buffer.
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Stops a child with SIGTERM and returns what it printed.
fn stop_and_collect(mut server: Server) -> Option<String> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(i32::try_from(server.0.id()).ok()?);
    kill(pid, Signal::SIGTERM).ok()?;
    let mut stdout = server.0.stdout.take()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).ok()?;
    Some(text)
}

/// Runs the bench. Must run inside a [`tokio::task::LocalSet`].
pub async fn run_flood(opts: &FloodOptions) -> Result<FloodReport, FloodError> {
    // Keys for the two runs' cameras and their probes.
    let first = 2_000_000u32;
    let ids: Vec<u32> = (first - 1..first + 2 * (opts.cameras + 1)).collect();
    let cluster = BenchCluster::prepare("flood", &ids, 10_000, false)?;
    let (t1, t2, keys) = (cluster.tier1, cluster.tier2, &cluster.keys);
    pin_self_away_from(opts.server_cpu)?;
    let tier1 = start(&opts.exe, opts.server_cpu, "tier1", &cluster.tier1_config)?;
    let tier2 = Command::new(&opts.exe)
        .args(["--cpu", &opts.server_cpu.to_string(), "tier2", "--config"])
        .arg(&cluster.tier2_config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(Server)?;
    let pid2 = tier2.0.id();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let load = |first_id: u32, seconds: f64| LoadOptions {
        tier1: vec![t1],
        cameras: opts.cameras,
        fps: opts.fps,
        frame_bytes: opts.frame_bytes,
        duration: Duration::from_secs_f64(seconds.max(1.0)),
        loss: 0.0,
        seed: opts.seed,
        first_id,
        keys: Some(keys.dir.clone()),
        durable: false,
    };

    // Baseline.
    let b0 = procstat::sample(pid2);
    let normal = run_load(&load(first, opts.baseline_seconds)).await?;
    let b1 = procstat::sample(pid2);
    let rss_before = b1.map_or(0, |s| s.rss_bytes);

    // The same load under flood. Its cameras' ids are the sessions the forgeries name.
    let second = first + opts.cameras + 1;
    let real: Vec<u32> = (second..second + opts.cameras).collect();
    let datagrams = flood_datagrams(opts.seed, &real, 6 * 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, progress) = (stop.clone(), progress.clone());
        let (sockets, rate) = (opts.sockets, opts.rate);
        std::thread::spawn(move || run_flooder(t2, sockets, rate, &datagrams, &stop, &progress))
    };
    let rss_max = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, rss_max) = (stop.clone(), rss_max.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(s) = procstat::sample(pid2) {
                    rss_max.fetch_max(s.rss_bytes, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let f0 = procstat::sample(pid2);
    let drops0 = udp_rcvbuf_errors();
    let started = std::time::Instant::now();
    // The load's own set-up (probe, connect-ahead) and drain take about 3 s of the flood.
    let flooded = run_load(&load(second, opts.seconds - 3.0)).await;
    // The flood lasts its full time even if the load finished early.
    let left = opts.seconds - started.elapsed().as_secs_f64();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
    }
    let f1 = procstat::sample(pid2);
    let drops1 = udp_rcvbuf_errors();
    stop.store(true, Ordering::Relaxed);
    let sent = flooder
        .join()
        .map_err(|_| std::io::Error::other("the flooder panicked"))??;
    let _ = sampler.join();
    let flooded = flooded?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = procstat::sample(pid2).map_or(0, |s| s.rss_bytes);
    let rss_max = rss_max.load(Ordering::Relaxed).max(rss_after);

    drop(tier1);
    let summary: Option<serde_json::Value> =
        stop_and_collect(tier2).and_then(|t| serde_json::from_str(t.trim()).ok());
    let _ = std::fs::remove_dir_all(&cluster.dir);

    let normal = Goodput::from(&normal);
    let under_flood = Goodput::from(&flooded);
    let goodput_ratio = under_flood.delivered_ratio / normal.delivered_ratio.max(1e-9);
    let growth = rss_max.saturating_sub(rss_before);
    Ok(FloodReport {
        offered_rate: opts.rate,
        achieved_rate: sent.datagrams as f64 / sent.seconds.max(1e-9),
        flood: sent,
        sockets: opts.sockets,
        goodput_ratio,
        rss_target_met: growth < opts.max_rss_growth_bytes,
        goodput_target_met: goodput_ratio >= opts.min_goodput_ratio
            && under_flood.sessions_established == opts.cameras,
        normal,
        under_flood,
        tier2_rss_before_bytes: rss_before,
        tier2_rss_max_during_bytes: rss_max,
        tier2_rss_after_bytes: rss_after,
        tier2_rss_growth_bytes: growth,
        tier2_cores_normal: procstat::cores(b0, b1, opts.baseline_seconds),
        tier2_cores_under_flood: procstat::cores(f0, f1, started.elapsed().as_secs_f64()),
        tier2_datagrams_rejected: summary
            .as_ref()
            .and_then(|s| s.get("datagrams_rejected"))
            .and_then(|v| v.as_u64()),
        udp_rcvbuf_drops: drops0.zip(drops1).map(|(a, b)| b.saturating_sub(a)),
        tier2_gate: summary.as_ref().and_then(|s| s.get("gate").cloned()),
        tier2_control: summary.and_then(|s| s.get("control").cloned()),
    })
}
