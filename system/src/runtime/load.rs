//! `livecam load`: many camera clients of the real protocol in one process, against running
//! tier-1 and tier-2 servers, and what it cost the servers.
//!
//! Every camera is a full mobile client (the [`Mobile`] role: connection through tier-1,
//! segment sender, reconnects) on its own UDP socket, all on one tokio runtime. Frames are
//! captured-frame records (`device::frame` format, CRC-checked by the tier-2) of exactly
//! `frame_bytes` bytes. Before it starts, one probe client must get an offer, so an address
//! with no cluster behind it is an error, not a run of zeros. CPU seconds and RSS of the
//! servers come from `/proc` ([`super::procstat`]): the tier-1s it was pointed at and every
//! tier-2 its cameras were placed on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::procstat::{self, ProcSample};
use crate::cluster::{ClientConfig, ClientEvent, Connector};
use crate::device::CapturedFrame;
use crate::driver::{self, Glue};
use crate::link::LinkConfig;
use crate::machine::Endpoint;
use crate::net::{Clock, ImpairedSocket, TokioClock};
use crate::proto::wire::Command;
use crate::proto::{PolicyConfig, Sender, SenderConfig};
use crate::role::durable::{Durable, DurableConfig};
use crate::role::ring::{MemoryRing, RingLimits};
use crate::role::{Camera, CameraConfig, FrameProducer, Mobile, MobileConfig};
use crate::stats::Samples;
use crate::time::Instant;

/// Cameras connect this long before they capture.
const CONNECT_AHEAD: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub tier1: Vec<SocketAddr>,
    pub cameras: u32,
    pub fps: f64,
    pub frame_bytes: usize,
    pub duration: Duration,
    /// Probability that a camera's datagram is lost on its way out (seeded).
    pub loss: f64,
    pub seed: u64,
    /// Client id of the first camera; the others follow. Must not clash with real clients.
    pub first_id: u32,
    /// Keys for authenticated sessions: a directory as `livecam keygen --cluster` writes it,
    /// with a `device-ID.key` for every camera id (and the probe's, `first_id - 1`). Without
    /// it the cameras speak the plain protocol (for tier-2s run with `insecure = true`).
    pub keys: Option<std::path::PathBuf>,
    /// Every camera keeps its frames in a ring (in memory) until a tier-2 says they are
    /// stored (wire `STORED`), and backfills what is not: the load for tier-2s with a
    /// database. The summary then counts frames stored.
    pub durable: bool,
}

/// Nonsense refused before anything starts, and a cluster that is not there.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("--cameras must be at least 1")]
    NoCameras,
    #[error("--fps must be within 0.1..=60, got {0}")]
    Fps(f64),
    #[error("--frame-bytes must be within {min}..={max}, got {got}")]
    FrameBytes { got: usize, min: usize, max: usize },
    #[error("--duration must be positive")]
    Duration,
    #[error("--loss must be within 0..=1, got {0}")]
    Loss(f64),
    #[error("--tier1 needs at least one address")]
    NoTier1,
    #[error("no offer within {secs} s through tier-1 {tier1:?}: is a tier-1 listening there, with tier-2s registered?")]
    Unreachable { tier1: Vec<SocketAddr>, secs: u64 },
    #[error("--keys: {0}")]
    Keys(#[from] crate::secure::KeyError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A camera's connector, with its keys when the run has them.
fn connector(
    keys: Option<&super::security::ClusterKeys>,
    id: u32,
    tier1: &[SocketAddr],
) -> Result<Connector, LoadError> {
    let c = Connector::new(ClientConfig::new(id, tier1.to_vec()));
    Ok(match keys {
        Some(k) => c.with_security(k.device_security(id)?),
        None => c,
    })
}

/// One server's cost over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCost {
    pub role: &'static str,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    /// CPU seconds the server used during the run (for servers known before it started: the
    /// tier-1s).
    pub cpu_s_during_run: Option<f64>,
    /// CPU seconds since the server process started.
    pub cpu_s_total: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// What `livecam load` prints.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub cameras: u32,
    pub sessions_established: u32,
    pub frames_sent: u64,
    pub frames_delivered: u64,
    /// Given up at their deadline.
    pub frames_late: u64,
    pub delivered_ratio: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub segments_sent: u64,
    pub segments_resent: u64,
    /// Frames a tier-2 reported committed to its database (with `durable`; else 0).
    pub frames_stored: u64,
    /// `frames_stored / frames_sent` (with `durable`; else 0).
    pub stored_ratio: f64,
    pub duration_s: f64,
    pub servers: Vec<ServerCost>,
}

/// Frames of exactly `len` bytes in the captured-frame format: one random block, stamped
/// with the frame id so no two frames are alike.
struct LoadFrames {
    block: Arc<[u8]>,
}

impl FrameProducer for LoadFrames {
    fn produce(&mut self, _session: u32, frame: u32, now: Instant, _len: usize) -> Vec<u8> {
        let mut jpeg = self.block.to_vec();
        jpeg[..4].copy_from_slice(&frame.to_be_bytes());
        CapturedFrame {
            capture_ms: now.since_origin().as_millis() as u64,
            fix: None,
            jpeg,
        }
        .encode()
    }

    fn apply(&mut self, command: &Command) -> Result<(), String> {
        Err(format!("{command:?}: load frames have no picture settings"))
    }
}

/// Bytes of a captured frame around its picture.
fn frame_overhead() -> usize {
    CapturedFrame {
        capture_ms: 0,
        fix: None,
        jpeg: Vec::new(),
    }
    .encode()
    .len()
}

impl LoadOptions {
    pub fn validate(&self) -> Result<(), LoadError> {
        let min = frame_overhead() + 4;
        let max = 1 << 20;
        if self.cameras == 0 {
            return Err(LoadError::NoCameras);
        }
        if !crate::role::FPS_RANGE.contains(&self.fps) {
            return Err(LoadError::Fps(self.fps));
        }
        if !(min..=max).contains(&self.frame_bytes) {
            return Err(LoadError::FrameBytes {
                got: self.frame_bytes,
                min,
                max,
            });
        }
        if self.duration.is_zero() {
            return Err(LoadError::Duration);
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(LoadError::Loss(self.loss));
        }
        if self.tier1.is_empty() {
            return Err(LoadError::NoTier1);
        }
        Ok(())
    }
}

/// Where camera `index` binds: on IPv4 loopback each camera from an address of its own
/// (`127.1.0.0/16` and up: Linux answers all of `127/8`), as independent devices would be;
/// from one address the handshake gate's per-address budget (a burst of 200 hellos) is what
/// a ramp of hundreds of cameras would measure.
fn camera_bind_addr(to: SocketAddr, index: u32) -> SocketAddr {
    match to.ip() {
        std::net::IpAddr::V4(ip) if ip.is_loopback() => {
            let base = u32::from(std::net::Ipv4Addr::new(127, 1, 0, 0));
            SocketAddr::from((std::net::Ipv4Addr::from(base + index % (1 << 16)), 0))
        }
        _ => bind_addr(to),
    }
}

fn bind_addr(to: SocketAddr) -> SocketAddr {
    if to.ip().is_loopback() {
        SocketAddr::new(to.ip(), 0)
    } else if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// Asks tier-1 for a session once; true when a tier-2 offered one.
async fn probe(
    tier1: &[SocketAddr],
    id: u32,
    wait: Duration,
    keys: Option<&super::security::ClusterKeys>,
) -> Result<bool, LoadError> {
    let socket = tokio::net::UdpSocket::bind(bind_addr(tier1[0])).await?;
    let clock = TokioClock::new();
    let mut probe = Probe(connector(keys, id, tier1)?);
    probe.0.connect(clock.now());
    let mut glue = ProbeGlue {
        clock: &clock,
        end: clock.now() + wait,
        connected: false,
    };
    driver::run_with(&mut probe, &socket, &clock, &mut glue).await?;
    Ok(glue.connected)
}

/// A client connector alone on a socket: [`probe`]'s machine.
struct Probe(Connector);

impl Endpoint for Probe {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        // Anything but a cluster message is not for a probe; it is skipped.
        if let Ok(msg) = crate::proto::wire::decode(data) {
            self.0.handle(now, from, &msg);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.0.poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
}

/// The probe's part of the loop: it ends at `end`, or as soon as a tier-2's offer is taken.
struct ProbeGlue<'a> {
    clock: &'a TokioClock,
    end: Instant,
    connected: bool,
}

impl Glue<Probe> for ProbeGlue<'_> {
    type Input = std::convert::Infallible;
    async fn next_input(&mut self) -> Option<Self::Input> {
        self.clock.sleep_until(self.end).await;
        None
    }
    async fn handle_input(&mut self, _: &mut Probe, _: Instant, input: Self::Input) {
        match input {}
    }
    async fn after_round(&mut self, probe: &mut Probe, now: Instant, _: usize) -> ControlFlow<()> {
        while let Some(ev) = probe.0.poll_event() {
            self.connected |= matches!(ev, ClientEvent::Connected { .. });
        }
        if self.connected || now >= self.end {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

struct CameraOutcome {
    tier2: Option<SocketAddr>,
    report: crate::role::CameraReport,
    latencies: Samples,
}

/// Runs the load. Must run inside a [`tokio::task::LocalSet`].
pub async fn run_load(opts: &LoadOptions) -> Result<LoadSummary, LoadError> {
    opts.validate()?;
    let wait = Duration::from_secs(3);
    let keys = match &opts.keys {
        Some(dir) => Some(super::security::ClusterKeys::open(dir)?),
        None => None,
    };
    if !probe(
        &opts.tier1,
        opts.first_id.wrapping_sub(1),
        wait,
        keys.as_ref(),
    )
    .await?
    {
        return Err(LoadError::Unreachable {
            tier1: opts.tier1.clone(),
            secs: wait.as_secs(),
        });
    }
    let tier1_before: Vec<(SocketAddr, Option<ProcSample>)> = opts
        .tier1
        .iter()
        .map(|&a| (a, procstat::udp_owner(a).and_then(procstat::sample)))
        .collect();

    let mut block = vec![0u8; opts.frame_bytes - frame_overhead()];
    {
        use rand::{RngCore, SeedableRng};
        rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed).fill_bytes(&mut block);
    }
    let block: Arc<[u8]> = block.into();
    let frames = (opts.fps * opts.duration.as_secs_f64()).ceil().max(1.0) as u64;
    let policy = PolicyConfig::default();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..opts.cameras {
        let id = opts.first_id.wrapping_add(i);
        let local = camera_bind_addr(opts.tier1[0], i);
        let inner = tokio::net::UdpSocket::bind(local).await?;
        let clock = TokioClock::new();
        let socket = ImpairedSocket::new(
            inner,
            clock,
            LinkConfig {
                loss: opts.loss,
                ..LinkConfig::default()
            },
            opts.seed
                .wrapping_mul(1_000_003)
                .wrapping_add(u64::from(id)),
        )?;
        // Starts spread over one frame interval, as independent cameras would be.
        let offset = Duration::from_secs_f64(f64::from(i) / f64::from(opts.cameras) / opts.fps);
        let sender = Sender::new(SenderConfig {
            initial_segment_size: policy.initial_size(),
            ..SenderConfig::new(id, local)
        });
        let camera = Camera::new(
            CameraConfig {
                fps: opts.fps,
                frames,
                frame_bytes: opts.frame_bytes,
                // Sessions first (connection set-up is not frame latency), then capture.
                start_at: clock.now() + CONNECT_AHEAD + offset,
            },
            sender,
            Box::new(LoadFrames {
                block: block.clone(),
            }),
        );
        let camera = if opts.durable {
            let ring = MemoryRing::new(RingLimits::default());
            let d = Durable::new(
                DurableConfig::default(),
                Box::new(ring),
                camera.sender().config(),
            );
            camera.with_durable(d)
        } else {
            camera
        };
        let mut mobile = Mobile::new(
            MobileConfig {
                connect_ahead: CONNECT_AHEAD,
                ..MobileConfig::default()
            },
            connector(keys.as_ref(), id, &opts.tier1)?,
            camera,
        );
        // Frames still in flight when the run ends get their deadline (1 s) and a little.
        let hard_stop = CONNECT_AHEAD + opts.duration + offset + Duration::from_secs(2);
        tasks.push(tokio::task::spawn_local(async move {
            let _ =
                tokio::time::timeout(hard_stop, driver::run(&mut mobile, &socket, &clock)).await;
            CameraOutcome {
                tier2: mobile.connector().connected().map(|(_, a)| a),
                report: mobile.camera().report(),
                latencies: mobile.camera().latencies().clone(),
            }
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        if let Ok(o) = t.await {
            outcomes.push(o);
        }
    }
    let duration_s = started.elapsed().as_secs_f64();

    let mut servers: Vec<ServerCost> = tier1_before
        .into_iter()
        .map(|(addr, before)| {
            let after = before.and_then(|b| procstat::sample(b.pid));
            ServerCost {
                role: "tier1",
                addr,
                pid: before.map(|b| b.pid),
                cpu_s_during_run: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
                cpu_s_total: after.map(|a| a.cpu_s),
                rss_bytes: after.map(|a| a.rss_bytes),
            }
        })
        .collect();
    // Tier-2s: where the cameras ended up, found only now, so their CPU counts from their
    // start (`livecam bench capacity` starts its own servers and measures the run alone).
    let tier2s: BTreeMap<SocketAddr, ()> = outcomes
        .iter()
        .filter_map(|o| o.tier2)
        .map(|a| (a, ()))
        .collect();
    for addr in tier2s.into_keys() {
        let now = procstat::udp_owner(addr).and_then(procstat::sample);
        servers.push(ServerCost {
            role: "tier2",
            addr,
            pid: now.map(|s| s.pid),
            cpu_s_during_run: None,
            cpu_s_total: now.map(|s| s.cpu_s),
            rss_bytes: now.map(|s| s.rss_bytes),
        });
    }

    let mut latencies = Samples::default();
    let mut s = LoadSummary {
        cameras: opts.cameras,
        sessions_established: 0,
        frames_sent: 0,
        frames_delivered: 0,
        frames_late: 0,
        delivered_ratio: 0.0,
        latency_ms_p50: 0.0,
        latency_ms_p99: 0.0,
        latency_ms_max: 0.0,
        segments_sent: 0,
        segments_resent: 0,
        frames_stored: 0,
        stored_ratio: 0.0,
        duration_s,
        servers,
    };
    for o in &outcomes {
        s.sessions_established += u32::from(o.tier2.is_some());
        s.frames_sent += o.report.frames_sent;
        s.frames_delivered += o.report.frames_delivered;
        s.frames_late += o.report.frames_dropped;
        s.segments_sent += o.report.segments_sent;
        s.segments_resent += o.report.segments_resent;
        s.frames_stored += o.report.durable.map_or(0, |d| d.frames_stored);
        for &v in o.latencies.values() {
            latencies.push(v);
        }
    }
    s.delivered_ratio = if s.frames_sent == 0 {
        0.0
    } else {
        s.frames_delivered as f64 / s.frames_sent as f64
    };
    if s.frames_sent > 0 {
        s.stored_ratio = s.frames_stored as f64 / s.frames_sent as f64;
    }
    s.latency_ms_p50 = latencies.quantile(0.5);
    s.latency_ms_p99 = latencies.quantile(0.99);
    s.latency_ms_max = latencies.quantile(1.0);
    Ok(s)
}
