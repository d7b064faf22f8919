//! Role processes: `livecam tier1|tier2|mobile --config FILE.toml` (the backend's is in
//! [`super::backend`]).
//!
//! Each reads a TOML config (an error names the field), binds one UDP socket, runs its role
//! with the one driver loop over tokio until SIGINT or SIGTERM, and prints a JSON summary of
//! what it did on its way out. A mobile client sends frames of its camera (a real JPEG) with
//! the latest fix of its GPS source; a tier-2 checks each one's JPEG checksum and, when it has
//! a `database`, stores frames, fixes, its sessions and their link figures through the
//! backend's storage ([`super::backhaul`]), and relays the backend's commands to its clients.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::backhaul::{BackhaulCounters, BackhaulReport, StorageBackhaul};
use super::config::{from_toml, invalid, read_text, ConfigError};
use super::security::{self, ClusterKeys, ServerIdentity};
use super::socket::Uplink;
use crate::backend::StorageError;
use crate::cluster::{ClientConfig, Connector, Tier1, Tier1Config, Tier2, Tier2Config};
use crate::device::{
    open_camera, open_gps, CameraSettings, CameraSpec, CapturedCheck, DeviceFrames, GpsSettings,
    GpsSpec, SyntheticSettings,
};
use crate::driver;
use crate::machine::Role;
use crate::metrics::{Metered, Observed, RoleMetrics};
use crate::net::{Clock, DatagramSocket, TokioClock};
use crate::proto::bond::MAX_UPLINKS;
use crate::proto::{PolicyConfig, RateConfig, Receiver, ReceiverConfig, Sender, SenderConfig};
use crate::role::durable::{self, Durable, DurableConfig, BACKFILL_SESSION_BIT};
use crate::role::ring::{DiskRing, FrameRing, RingLimits};
use crate::role::{
    Camera, CameraConfig, FrameProducer, Mobile, MobileConfig, Sink, Tier1Server, Tier2Server,
};
use crate::secure::{ControlStats, DeviceSecurity, Gate, ServerRole};
use crate::time::Instant;
use std::sync::Arc;

/// Why a role process stopped with an error.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    User(#[from] crate::backend::users::UserError),
}

/// Opens the database at `url` off the async runtime: the PostgreSQL client blocks (and runs
/// a runtime of its own), so it must be opened, used and dropped on blocking threads.
pub(crate) async fn open_storage(
    url: &str,
) -> Result<Box<dyn crate::backend::Storage>, ServiceError> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || crate::backend::open(&url))
        .await
        .map_err(|e| ServiceError::Io(io::Error::other(e.to_string())))?
        .map_err(ServiceError::from)
}

/// A peer tier-1 server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: u32,
    pub addr: SocketAddr,
}

/// `livecam tier1 --config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier1File {
    pub id: u32,
    /// Address to bind; also what peers and clients use.
    pub listen: SocketAddr,
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// This server's signing key file (`tier1-ID.sign`, from `livecam keygen --cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// The registry of the cluster's servers (`servers.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<PathBuf>,
    /// Take and send unsigned control messages (anyone may steer the cluster): lab use only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// `livecam tier2 --config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier2File {
    pub id: u32,
    pub listen: SocketAddr,
    /// Tier-1 servers it may register with, its first manager first.
    pub tier1: Vec<SocketAddr>,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Segment size policy and FEC; without a `[policy]` table the best we have (the model
    /// policy with adaptive parity), the seed's rule with `kind = "seed"` and `fec = "off"`.
    #[serde(default = "PolicyConfig::best")]
    pub policy: PolicyConfig,
    /// Where frames, fixes, sessions and link figures go: `sqlite:PATH` or
    /// `postgres://...`. Without one the tier-2 only checks what it receives.
    #[serde(default)]
    pub database: Option<String>,
    /// The address the backend sends commands for this tier-2's clients to (default:
    /// `listen`; needed when `listen` is a wildcard address).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// The cluster's private key file (`livecam keygen`); every tier-2 of the cluster holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The devices it admits: a TOML file of `[[device]] id = N, key = "HEX"` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<PathBuf>,
    /// This server's signing key file (`tier2-ID.sign`, from `livecam keygen --cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// The registry of the cluster's servers (`servers.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<PathBuf>,
    /// Run without keys (plain sessions, anyone may connect, unsigned control messages):
    /// lab use only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl Tier2File {
    /// Where the backend reaches this tier-2.
    pub fn advertised(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}

/// The smallest ring a client may be configured with.
const MIN_RING_BYTES: u64 = 1 << 20;

fn default_capacity() -> u32 {
    1000
}

/// `livecam mobile --config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileFile {
    /// The client's id, also its session id: unique in the fleet.
    pub id: u32,
    #[serde(default = "any_port")]
    pub listen: SocketAddr,
    /// Tier-1 servers, the default first.
    pub tier1: Vec<SocketAddr>,
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Where pictures come from: `synthetic`, `folder:PATH`, `v4l2:/dev/videoN` or
    /// `camera:N` (real cameras need the `camera` feature); see [`crate::device::open_camera`].
    #[serde(default = "default_synthetic")]
    pub camera: String,
    /// Where positions come from: `synthetic` (a route through the synthetic city),
    /// `gpsd:HOST:PORT`, `nmea:/dev/ttyUSB0@9600` or `nmea-file:PATH`; see
    /// [`crate::device::open_gps`].
    #[serde(default = "default_synthetic")]
    pub gps: String,
    /// Capture resolution.
    #[serde(default = "default_width")]
    pub width: u16,
    #[serde(default = "default_height")]
    pub height: u16,
    /// JPEG quality, 1..=100.
    #[serde(default = "default_quality")]
    pub jpeg_quality: u8,
    /// Keep a copy of every frame sent in this directory, as `FRAME.lf` (the captured-frame
    /// format), for audits and end-to-end checks. Grows without bound: not for vehicles.
    #[serde(default)]
    pub keep_frames: Option<PathBuf>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// This device's private key file (`livecam keygen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The cluster's public key: 64 hex digits, or the path of the `.pub` file holding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_key: Option<String>,
    /// Run without keys (plain sessions): lab use only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Keep every frame in this file (an on-disk ring) until a tier-2 says the database has
    /// it, and backfill frames that missed their live deadline; see `role::durable`. Needs
    /// tier-2s with a database (only they confirm storage). Without it frames live only as
    /// long as their deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<PathBuf>,
    /// The ring's size bound in bytes; when full the oldest unstored frames are dropped (and
    /// counted).
    #[serde(default = "default_ring_bytes")]
    pub ring_bytes: u64,
    /// Rate control (default on): the sender paces at what the uplink delivers and the
    /// camera shapes its frames to fit, within the bounds `set_quality`, `set_resolution`
    /// and `set_fps` set; see `proto::rate`. `false` sends what the camera makes as fast as
    /// it comes (the seed's sender).
    #[serde(default = "yes")]
    pub rate_control: bool,
    /// With rate control: the camera has its uplink to itself (a modem of its own), so a
    /// frame's own transmission time is not read as queue (`proto::rate`,
    /// `RateConfig::uplink_alone`). Off by default: beside other traffic on the uplink it
    /// takes up to a frame interval of that traffic's queue for its own.
    #[serde(default)]
    pub uplink_alone: bool,
    /// Bonded uplinks: one session over two or three modems at once (`proto::bond`), each
    /// an interface name (`wwan0`, bound with `SO_BINDTODEVICE`: needs `CAP_NET_RAW`) or the
    /// modem's local address (`10.64.0.2`, or with a port). Each uplink proves itself to the
    /// tier-2 with a path challenge before it is answered on, so it needs keys. Empty (the
    /// default): one socket at `listen`, which is unused otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplinks: Vec<String>,
}

fn yes() -> bool {
    true
}

/// 64 MiB: about 11 minutes of 10 KB frames at 10 fps.
pub fn default_ring_bytes() -> u64 {
    RingLimits::default().max_bytes
}

fn any_port() -> SocketAddr {
    ([0, 0, 0, 0], 0).into()
}
fn default_fps() -> f64 {
    10.0
}
fn default_synthetic() -> String {
    "synthetic".to_string()
}
fn default_width() -> u16 {
    SyntheticSettings::default().width
}
fn default_height() -> u16 {
    SyntheticSettings::default().height
}

fn default_quality() -> u8 {
    SyntheticSettings::default().quality
}

crate::server_identity!(Tier1File, ServerRole::Tier1);
crate::server_identity!(Tier2File, ServerRole::Tier2);

impl Tier1File {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parses and checks config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let c: Self = from_toml(text, path)?;
        if c.peers.iter().any(|p| p.id == c.id) {
            return Err(invalid(
                path.display(),
                "peers",
                "lists this tier-1's own id",
            ));
        }
        c.control_plane(Instant::ZERO, &path.display().to_string())?;
        Ok(c)
    }
}

impl Tier2File {
    /// Sets the key fields for the cluster's `keys`.
    pub fn secure_with(&mut self, keys: &ClusterKeys) {
        self.key = Some(keys.cluster_key.clone());
        self.devices = Some(keys.devices.clone());
        self.secure_identity(keys);
    }

    /// The session gate its `key`, `devices` and `insecure` fields give (`None`: insecure).
    pub fn gate(&self, origin: &str) -> Result<Option<Gate>, ConfigError> {
        security::tier2_gate(
            self.key.as_deref(),
            self.devices.as_deref(),
            self.insecure,
            origin,
        )
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parses and checks config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let c: Self = from_toml(text, path)?;
        if c.tier1.is_empty() {
            return Err(invalid(
                path.display(),
                "tier1",
                "needs at least one tier-1 address",
            ));
        }
        if c.capacity == 0 {
            return Err(invalid(path.display(), "capacity", "must be at least 1"));
        }
        c.policy
            .validate()
            .map_err(|e| invalid(path.display(), "policy", e.to_string()))?;
        if c.database.is_some() && c.advertised().ip().is_unspecified() {
            return Err(invalid(
                path.display(),
                "advertise",
                "needed when `listen` is a wildcard address and a database is set",
            ));
        }
        c.gate(&path.display().to_string())?;
        c.control_plane(Instant::ZERO, &path.display().to_string())?;
        Ok(c)
    }
}

impl MobileFile {
    /// Sets the key fields for device `self.id` of the cluster's `keys`.
    pub fn secure_with(&mut self, keys: &ClusterKeys) {
        self.key = Some(keys.device_key(self.id));
        self.cluster_key = Some(keys.cluster_public.to_string());
        self.insecure = false;
    }

    /// The device's side of sessions from its `key`, `cluster_key` and `insecure` fields
    /// (`None`: insecure).
    pub fn device_security(&self, origin: &str) -> Result<Option<DeviceSecurity>, ConfigError> {
        security::device_security(
            self.key.as_deref(),
            self.cluster_key.as_deref(),
            self.insecure,
            origin,
        )
    }

    /// What the camera is opened with.
    pub fn camera_settings(&self) -> CameraSettings {
        CameraSettings {
            vehicle: self.id,
            width: self.width,
            height: self.height,
            fps: self.fps,
            quality: self.jpeg_quality,
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parses and checks config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let c: Self = from_toml(text, path)?;
        if c.tier1.is_empty() {
            return Err(invalid(
                path.display(),
                "tier1",
                "needs at least one tier-1 address",
            ));
        }
        if !(c.fps.is_finite() && c.fps > 0.0) {
            return Err(invalid(path.display(), "fps", "must be positive"));
        }
        if c.id & BACKFILL_SESSION_BIT != 0 {
            return Err(invalid(path.display(), "id", "must be below 2^31"));
        }
        if c.ring_bytes < MIN_RING_BYTES {
            return Err(invalid(
                path.display(),
                "ring_bytes",
                "must be at least 1 MiB (1048576)",
            ));
        }
        if c.ring.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid(path.display(), "ring", "must be a file path"));
        }
        CameraSpec::parse(&c.camera)
            .map_err(|e| invalid(path.display(), "camera", e.to_string()))?;
        GpsSpec::parse(&c.gps).map_err(|e| invalid(path.display(), "gps", e.to_string()))?;
        let settings = c.camera_settings();
        if let Err(e) = crate::role::adapt::check_resolution(settings.width, settings.height) {
            return Err(invalid(path.display(), "width", e.to_string()));
        }
        if let Err(e) = crate::role::adapt::check_quality(settings.quality) {
            return Err(invalid(path.display(), "jpeg_quality", e.to_string()));
        }
        let security = c.device_security(&path.display().to_string())?;
        if c.uplinks.len() > MAX_UPLINKS {
            return Err(invalid(
                path.display(),
                "uplinks",
                format!("at most {MAX_UPLINKS} uplinks"),
            ));
        }
        for u in &c.uplinks {
            Uplink::parse(u).map_err(|e| invalid(path.display(), "uplinks", e))?;
        }
        if c.uplinks.len() > 1 && security.is_none() {
            return Err(invalid(
                path.display(),
                "uplinks",
                "bonded uplinks need keys (`key`, `cluster_key`): a tier-2 validates a path \
                 only with the session's keys",
            ));
        }
        Ok(c)
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs `role` on `sockets` (its uplinks; one but for a bonded mobile client) until it
/// finishes or `stop` completes.
async fn serve<R: Role, S: DatagramSocket>(
    role: &mut R,
    sockets: &[&S],
    clock: &TokioClock,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    tokio::select! {
        r = driver::run_uplinks(role, sockets, clock) => r,
        _ = stop => Ok(()),
    }
}

/// Binds a role's metrics address, when it has one.
pub async fn bind_metrics(addr: Option<SocketAddr>) -> io::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(tokio::net::TcpListener::bind(addr).await?)),
        None => Ok(None),
    }
}

/// Runs `role` like [`serve`], with its metrics served on `metrics` when there is a
/// listener (and a tier-2's database writer's counts, `storage`, copied in at each scrape);
/// gives the role back with the outcome.
async fn serve_metered<R: Observed, S: DatagramSocket>(
    role: R,
    metrics: Option<tokio::net::TcpListener>,
    storage: Option<Arc<BackhaulCounters>>,
    sockets: &[&S],
    clock: &TokioClock,
    stop: impl std::future::Future<Output = ()>,
) -> (R, io::Result<()>) {
    let Some(listener) = metrics else {
        let mut role = role;
        let r = serve(&mut role, sockets, clock, stop).await;
        return (role, r);
    };
    let m = Arc::new(RoleMetrics::default());
    let addr = listener.local_addr().ok();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let render = {
        let m = m.clone();
        move || {
            if let Some(c) = &storage {
                m.storage_writes(c.writes());
            }
            m.encode()
        }
    };
    let server = tokio::spawn(crate::metrics::serve(listener, render, async {
        let _ = done_rx.await;
    }));
    if let Some(addr) = addr {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    let mut metered = Metered::new(role, m);
    let r = serve(&mut metered, sockets, clock, stop).await;
    let _ = done_tx.send(());
    let _ = server.await;
    (metered.into_inner(), r)
}

/// Says loudly that a server runs without authentication.
pub(crate) fn warn_insecure(role: &str, id: u32) {
    tracing::warn!(
        "{role} {id} runs INSECURE (`insecure = true`): anyone on the network can send it \
         control messages; lab use only"
    );
}

/// What a tier-1 process reports on exit.
#[derive(Debug, Clone, Serialize)]
pub struct Tier1Summary {
    pub role: &'static str,
    pub id: u32,
    pub managed: Vec<u32>,
    pub sessions: u32,
    /// Control datagrams signed, let in and refused (all zero: insecure).
    pub control: ControlStats,
}

/// Runs a tier-1 on a socket bound to `listen` until `stop`.
pub async fn run_tier1(
    cfg: &Tier1File,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Tier1Summary, ServiceError> {
    let socket = super::socket::bind(cfg.listen)?;
    let metrics = bind_metrics(cfg.metrics).await?;
    run_tier1_on(cfg, &socket, metrics, stop).await
}

/// Runs a tier-1 on `socket` (bound to `cfg.listen`) until `stop`, its metrics served on
/// `metrics` (`cfg.metrics` is not looked at: the caller bound it, or another address).
pub async fn run_tier1_on<S: DatagramSocket>(
    cfg: &Tier1File,
    socket: &S,
    metrics: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Tier1Summary, ServiceError> {
    let clock = TokioClock::new();
    let peers = cfg.peers.iter().map(|p| (p.id, p.addr)).collect();
    let tier1 = Tier1::new(Tier1Config::new(cfg.id, cfg.listen, peers), clock.now());
    let mut server = Tier1Server::new(tier1, None);
    match cfg.control_plane(clock.now(), &format!("tier-1 {}", cfg.id))? {
        Some(plane) => server = server.with_control(plane),
        None => warn_insecure("tier-1", cfg.id),
    }
    tracing::info!(id = cfg.id, listen = %cfg.listen, "tier-1 up");
    let (server, served) = serve_metered(server, metrics, None, &[socket], &clock, stop).await;
    served?;
    Ok(Tier1Summary {
        role: "tier1",
        id: cfg.id,
        managed: server.tier1().managed().collect(),
        sessions: server.tier1().sessions(),
        control: server.control_stats(),
    })
}

/// What a tier-2 process reports on exit.
#[derive(Debug, Clone, Serialize)]
pub struct Tier2Summary {
    pub role: &'static str,
    pub id: u32,
    pub manager: Option<SocketAddr>,
    pub sessions: usize,
    #[serde(flatten)]
    pub frames: crate::role::SinkReport,
    /// What went to the database, when there is one.
    pub database: Option<BackhaulReport>,
    /// Connection requests admitted and refused by the device keys (`None`: insecure).
    pub gate: Option<crate::secure::GateStats>,
    /// Session datagrams refused as unauthenticated (unsealed, forged, replayed).
    pub datagrams_rejected: u64,
    /// Control datagrams signed, let in and refused (all zero: insecure).
    pub control: ControlStats,
    /// Session addresses challenged and validated (all zero: insecure, or no client moved).
    pub paths: crate::secure::PathStats,
}

/// Runs a tier-2 on a socket bound to `listen` until `stop`.
pub async fn run_tier2(
    cfg: &Tier2File,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Tier2Summary, ServiceError> {
    let socket = super::socket::bind(cfg.listen)?;
    let metrics = bind_metrics(cfg.metrics).await?;
    run_tier2_on(cfg, &socket, metrics, stop).await
}

/// Runs a tier-2 on `socket` until `stop`, its metrics served on `metrics` (as
/// [`run_tier1_on`]); on the way out, waits for the database writer to store what it queued.
pub async fn run_tier2_on<S: DatagramSocket>(
    cfg: &Tier2File,
    socket: &S,
    metrics: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Tier2Summary, ServiceError> {
    let clock = TokioClock::new();
    let mut tier2 = Tier2::new(
        Tier2Config {
            capacity: cfg.capacity,
            ..Tier2Config::new(cfg.id, cfg.tier1.clone())
        },
        clock.now(),
    );
    if let Some(gate) = cfg.gate(&format!("tier-2 {}", cfg.id))? {
        tier2 = tier2.with_gate(gate);
    }
    let receiver = Receiver::new(ReceiverConfig {
        policy: cfg.policy,
        ..ReceiverConfig::default()
    });
    let mut sink = Sink::new(receiver, Box::new(CapturedCheck));
    let mut writer = None;
    if let Some(url) = &cfg.database {
        let storage = open_storage(url).await?;
        let (backhaul, counters, thread) =
            StorageBackhaul::start(storage, cfg.id, cfg.advertised(), clock.now());
        sink = sink.with_backhaul(Box::new(backhaul));
        writer = Some((counters, thread));
    }
    let mut server = Tier2Server::new(tier2, sink);
    match cfg.control_plane(clock.now(), &format!("tier-2 {}", cfg.id))? {
        Some(plane) => server = server.with_control(plane),
        None => warn_insecure("tier-2", cfg.id),
    }
    tracing::info!(id = cfg.id, listen = %cfg.listen, database = cfg.database.is_some(), "tier-2 up");
    let storage = writer.as_ref().map(|(counters, _)| counters.clone());
    let (server, served) = serve_metered(server, metrics, storage, &[socket], &clock, stop).await;
    let summary = Tier2Summary {
        role: "tier2",
        id: cfg.id,
        manager: server.tier2().manager(),
        sessions: server.sink().receiver().session_count(),
        frames: server.sink().report(),
        database: None,
        gate: server.tier2().gate_stats(),
        datagrams_rejected: server.rejected(),
        control: server.control_stats(),
        paths: server.paths().stats(),
    };
    // Dropping the server closes the writer's queue; the writer stores what is left.
    drop(server);
    let database = match writer {
        Some((counters, thread)) => {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            Some(counters.report())
        }
        None => None,
    };
    served?;
    Ok(Tier2Summary {
        database,
        ..summary
    })
}

/// What a mobile client process reports on exit.
#[derive(Debug, Clone, Serialize)]
pub struct MobileSummary {
    pub role: &'static str,
    pub id: u32,
    pub tier2: Option<u32>,
    #[serde(flatten)]
    pub camera: crate::role::CameraReport,
}

/// Runs a mobile client on a socket bound to `listen` until `stop`.
pub async fn run_mobile(
    cfg: &MobileFile,
    stop: impl std::future::Future<Output = ()>,
) -> Result<MobileSummary, ServiceError> {
    let sockets = if cfg.uplinks.is_empty() {
        vec![super::socket::bind(cfg.listen)?]
    } else {
        cfg.uplinks
            .iter()
            .map(|u| {
                let uplink =
                    Uplink::parse(u).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                uplink.bind()
            })
            .collect::<io::Result<Vec<_>>>()?
    };
    let metrics = bind_metrics(cfg.metrics).await?;
    let sockets: Vec<&tokio::net::UdpSocket> = sockets.iter().collect();
    run_mobile_on(cfg, &sockets, metrics, stop).await
}

/// Keeps a copy of every frame its inner producer makes in a directory (`keep_frames`), named
/// by the frame's capture sequence number (`SEQ.lf`, the identity storage files it under).
struct KeepFrames {
    inner: Box<dyn FrameProducer>,
    dir: PathBuf,
    /// This boot's `boot_seq` (see [`crate::role::durable`]).
    boot_seq: u64,
}

impl FrameProducer for KeepFrames {
    fn produce(&mut self, session: u32, frame: u32, now: Instant, len: usize) -> Vec<u8> {
        let data = self.inner.produce(session, frame, now, len);
        let seq = durable::seq_of(self.boot_seq, frame);
        let path = self.dir.join(format!("{seq}.lf"));
        if let Err(e) = std::fs::write(&path, &data) {
            tracing::warn!(error = %e, path = %path.display(), "keeping a frame failed");
        }
        data
    }

    fn apply(&mut self, command: &crate::proto::wire::Command) -> Result<(), String> {
        self.inner.apply(command)
    }
}

/// Runs a mobile client on `sockets` (its uplinks: one, or the bonded ones of `uplinks`)
/// until `stop`, its metrics served on `metrics` (as [`run_tier1_on`]).
pub async fn run_mobile_on<S: DatagramSocket>(
    cfg: &MobileFile,
    sockets: &[&S],
    metrics: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<MobileSummary, ServiceError> {
    let clock = TokioClock::new();
    let policy = PolicyConfig::default();
    let ring = match &cfg.ring {
        Some(path) => {
            let limits = RingLimits {
                max_bytes: cfg.ring_bytes,
                ..RingLimits::default()
            };
            let ring = DiskRing::open(path, limits).map_err(|e| {
                ServiceError::Io(io::Error::new(
                    e.kind(),
                    format!("frame ring {}: {e}", path.display()),
                ))
            })?;
            let s = ring.stats();
            tracing::info!(path = %path.display(), frames = s.frames, bytes = s.bytes,
                corrupt = s.records_corrupt, "frame ring open");
            Some(ring)
        }
        None => None,
    };
    // This boot's frames number on above every frame the ring ever kept and not below the
    // clock (see `role::durable`): frame identities never repeat across restarts.
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let boot_seq = durable::boot_seq(ring.as_ref().map(|r| r as &dyn FrameRing), unix_ms);
    tracing::info!(boot_seq, "frames of this boot number on from here");
    let sender = Sender::new(SenderConfig {
        initial_segment_size: policy.initial_size(),
        rate_control: cfg.rate_control.then_some(RateConfig {
            uplink_alone: cfg.uplink_alone,
            ..RateConfig::default()
        }),
        ..SenderConfig::new(cfg.id, any_port())
    });
    let camera = open_camera(&cfg.camera, &cfg.camera_settings())?;
    let gps = open_gps(
        &cfg.gps,
        &GpsSettings {
            seed: u64::from(cfg.id),
            start: clock.now(),
            ..GpsSettings::default()
        },
    )?;
    let mut producer: Box<dyn FrameProducer> = Box::new(DeviceFrames {
        camera,
        gps,
        wall_origin: (clock.now(), unix_ms),
        errors: 0,
        adapt_refused: false,
    });
    if let Some(dir) = &cfg.keep_frames {
        std::fs::create_dir_all(dir)?;
        producer = Box::new(KeepFrames {
            inner: producer,
            dir: dir.clone(),
            boot_seq,
        });
    }
    let camera = Camera::new(
        CameraConfig {
            fps: cfg.fps,
            frames: u64::MAX,
            frame_bytes: 0,
            start_at: clock.now() + Duration::from_millis(10),
        },
        sender,
        producer,
    );
    let camera = camera.with_boot_seq(boot_seq);
    let camera = match ring {
        Some(ring) => {
            let d = Durable::new(
                DurableConfig::default(),
                Box::new(ring),
                camera.sender().config(),
            );
            camera.with_durable(d)
        }
        None => camera,
    };
    let mut connector = Connector::new(ClientConfig::new(cfg.id, cfg.tier1.clone()));
    if let Some(security) = cfg.device_security(&format!("mobile client {}", cfg.id))? {
        connector = connector.with_security(security);
    }
    let mobile_cfg = MobileConfig {
        uplinks: sockets.len(),
        ..MobileConfig::default()
    };
    let mobile = Mobile::new(mobile_cfg, connector, camera);
    tracing::info!(id = cfg.id, "mobile client up");
    let (mobile, served) = serve_metered(mobile, metrics, None, sockets, &clock, stop).await;
    served?;
    Ok(MobileSummary {
        role: "mobile",
        id: cfg.id,
        tier2: mobile.connector().connected().map(|(t, _)| t),
        camera: mobile.camera().report(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mobile(extra: &str) -> Result<MobileFile, ConfigError> {
        let text = format!("id = 7\ntier1 = [\"127.0.0.1:7000\"]\ninsecure = true\n{extra}\n");
        MobileFile::parse(&text, Path::new("mobile.toml"))
    }

    #[test]
    fn bonded_uplinks_are_checked_by_name() {
        assert!(
            mobile("uplinks = [\"127.0.0.1\"]").is_ok(),
            "one uplink needs no keys"
        );
        for (extra, says) in [
            ("uplinks = [\"wwan0\", \"wwan1\"]", "need keys"),
            ("uplinks = [\"a\", \"b\", \"c\", \"d\"]", "at most 3"),
            (
                "uplinks = [\"wwan 0\"]",
                "neither an address nor an interface",
            ),
        ] {
            let e = mobile(extra).unwrap_err().to_string();
            assert!(e.contains("uplinks") && e.contains(says), "{extra}: {e}");
        }
    }
}
