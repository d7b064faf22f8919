//! `livecam up`: a whole system on loopback in one process: two tier-1s, four tier-2s, the
//! backend (database, map, web) and N mobile clients with synthetic cameras driving the
//! synthetic city, every role on its own UDP socket, running the same code as the role
//! processes, until stopped.
//!
//! Every tier-1, tier-2 and mobile client runs on a thread of its own with a single-threaded
//! runtime, as a role process would (the backend runs on the caller's runtime). On one
//! shared thread a camera's capture (rendering and JPEG-encoding its picture, ~1.5 ms) held up
//! every other role: a tier-2 could not acknowledge a frame while the other cameras encoded
//! theirs, and since every camera started at the same instant and captured at the same rate,
//! they all encoded at once. Frame latency on loopback grew with the fleet (p50 2 ms with one
//! client, 12.4 ms with six: see the README's "The loopback latency"). For the same reason
//! the cameras' first captures are spread over one frame interval: independent cameras are
//! not in phase.
//!
//! Every role serves its Prometheus metrics on an address of its own (see
//! [`UpOptions::metrics`]); `ready` is told where.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{oneshot, watch};

use super::backend::{Backend, BackendFile, BackendSummary};
use super::security::ServerIdentity;
use super::service::{
    self, MobileFile, MobileSummary, Peer, ServiceError, Tier1File, Tier1Summary, Tier2File,
    Tier2Summary,
};
use crate::backend::Retention;
use crate::link::LinkConfig;
use crate::net::{ImpairedSocket, TokioClock};
use crate::proto::PolicyConfig;

/// What to start.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub clients: u32,
    /// Probability that a mobile client's datagram is lost on its way out (the radio uplink).
    pub loss: f64,
    pub fps: f64,
    pub http: SocketAddr,
    /// The database; a fresh SQLite file in the temp directory when absent.
    pub database: Option<String>,
    pub seed: u64,
    /// The password of the web login `admin` (first line of the file); a random one, handed
    /// to `ready`, when absent.
    pub password_file: Option<PathBuf>,
    /// HTTPS for the web UI: a PEM certificate chain and its key (see `BackendFile::tls_cert`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The map's tiles and their attribution (see `BackendFile::tiles`).
    pub tiles: Option<String>,
    pub tiles_attribution: Option<String>,
    /// Where the roles serve their metrics (`None`: nowhere). Port 0 gives every role an
    /// ephemeral port of that IP; a port P gives the backend P, the tier-1s P+1 and P+2, the
    /// tier-2s P+3 to P+6 and mobile client N port P+6+N.
    pub metrics: Option<SocketAddr>,
}

/// Where one role serves its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsEndpoint {
    /// `backend`, `tier1`, `tier2` or `mobile`.
    pub role: &'static str,
    /// The role's id (the backend's is 1).
    pub id: u32,
    /// `http://ADDR/metrics`.
    pub addr: SocketAddr,
}

/// What `up` tells its caller once everything listens.
#[derive(Debug)]
pub struct Ready<'a> {
    /// The browser URL.
    pub url: &'a str,
    /// The generated password of `admin` (`None` when it came from the password file).
    pub password: Option<&'a str>,
    /// Every role's metrics address, the backend first.
    pub metrics: &'a [MetricsEndpoint],
}

/// What every role reported at the end.
#[derive(Debug, Serialize)]
pub struct UpSummary {
    pub database: String,
    /// Where each role served its metrics.
    pub metrics: Vec<MetricsEndpoint>,
    pub backend: BackendSummary,
    pub tier1: Vec<Tier1Summary>,
    pub tier2: Vec<Tier2Summary>,
    pub mobiles: Vec<MobileSummary>,
}

const TIER1S: u32 = 2;
const TIER2S: u32 = 4;

/// A UDP socket on loopback, to be handed to a role's thread.
fn loopback() -> std::io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Binds the metrics listener of the `index`-th role (0: the backend), by `base` (see
/// [`UpOptions::metrics`]).
fn metrics_listener(
    base: Option<SocketAddr>,
    index: u32,
) -> std::io::Result<Option<std::net::TcpListener>> {
    let Some(base) = base else { return Ok(None) };
    let mut addr = base;
    if base.port() != 0 {
        let port = u32::from(base.port()) + index;
        let port = u16::try_from(port).map_err(|_| {
            std::io::Error::other(format!(
                "metrics port {} + {index} is beyond 65535: choose a lower base port",
                base.port()
            ))
        })?;
        addr.set_port(port);
    }
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics address {addr}: {e}")))?;
    l.set_nonblocking(true)?;
    Ok(Some(l))
}

/// The listener for a role's runtime.
fn tokio_listener(
    l: Option<std::net::TcpListener>,
) -> std::io::Result<Option<tokio::net::TcpListener>> {
    l.map(tokio::net::TcpListener::from_std).transpose()
}

/// How long mobile client `id` (of `1..=clients`) waits before it starts: independent cameras
/// are not in phase, so the first captures spread evenly over one frame interval (in phase,
/// every camera would encode its picture at the same instant: see the [module docs](self)).
fn first_capture_phase(id: u32, clients: u32, interval: Duration) -> Duration {
    interval.mul_f64(f64::from(id.saturating_sub(1)) / f64::from(clients.max(1)))
}

/// Completes once `stop` says so.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

type Outcome<T> = oneshot::Receiver<Result<T, ServiceError>>;

/// Runs `run` on a thread named `name` with a single-threaded runtime of its own (see the
/// [module docs](self)); its outcome comes through the receiver.
fn on_own_thread<T, F, Fut>(name: String, run: F) -> Result<Outcome<T>, ServiceError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ServiceError>> + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new().name(name).spawn(move || {
        let outcome = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => tokio::task::LocalSet::new().block_on(&rt, run()),
            Err(e) => Err(ServiceError::Io(e)),
        };
        let _ = tx.send(outcome);
    })?;
    Ok(rx)
}

/// The database `up` uses when none is given: a new SQLite file under the temp directory.
fn fresh_database() -> std::io::Result<String> {
    let dir: PathBuf = std::env::temp_dir().join(format!("livecam-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("livecam.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(format!("sqlite:{}", path.display()))
}

/// Starts everything, calls `ready` with the browser URL, the generated password of the
/// operator `admin` (`None` when it came from `password_file`) and the metrics addresses once
/// everything listens, and runs until `stop`.
pub async fn up(
    opts: &UpOptions,
    ready: impl FnOnce(&Ready<'_>),
    stop: impl Future<Output = ()>,
) -> Result<UpSummary, ServiceError> {
    let database = match &opts.database {
        Some(url) => url.clone(),
        None => fresh_database()?,
    };
    // Every session is authenticated: a cluster key and one key per client, made for this run.
    let keys_dir = std::env::temp_dir().join(format!(
        "livecam-up-{}/keys-{}",
        std::process::id(),
        super::security::unix_micros()
    ));
    let ids: Vec<u32> = (1..=opts.clients).collect();
    // And a signing key for every server: the control plane between them is authenticated.
    let servers = super::security::servers(
        &(1..=TIER1S).collect::<Vec<_>>(),
        &(0..TIER2S).map(|i| 11 + i).collect::<Vec<_>>(),
        &[1],
    );
    let keys = super::security::ClusterKeys::create(&keys_dir, &ids, &servers)?;
    // The backend opens (and migrates) the database before any tier-2 writes to it.
    let mut backend_cfg = BackendFile {
        http: opts.http,
        retention: Some(Retention {
            max_age_s: Some(3600),
            max_frame_bytes: Some(512 << 20),
        }),
        retention_interval_s: 30,
        tls_cert: opts.tls_cert.clone(),
        tls_key: opts.tls_key.clone(),
        tiles: opts.tiles.clone(),
        tiles_attribution: opts.tiles_attribution.clone(),
        // The backend binds it itself: the base address is its own.
        metrics: opts.metrics,
        ..BackendFile::new(database.clone())
    };
    // Refused here, naming the flag's field, rather than when the web server starts.
    backend_cfg.tile_source("livecam up")?;
    backend_cfg.secure_identity(&keys);
    let backend = Backend::bind(&backend_cfg).await?;
    let mut metrics = Vec::new();
    if let Some(addr) = backend.metrics_addr() {
        metrics.push(MetricsEndpoint {
            role: "backend",
            id: backend_cfg.id,
            addr,
        });
    }
    let mut role_index = 0u32;
    let mut next_listener = |role: &'static str, id: u32| {
        role_index += 1;
        let l = metrics_listener(opts.metrics, role_index)?;
        if let Some(l) = &l {
            metrics.push(MetricsEndpoint {
                role,
                id,
                addr: l.local_addr()?,
            });
        }
        Ok::<_, std::io::Error>(l)
    };
    // The login: admin, with the given password or a new random one (set anew either way,
    // so the password handed out works on a database used before).
    let generated = opts.password_file.is_none();
    let password = match &opts.password_file {
        Some(path) => super::users::read_password(Some(path))?,
        None => crate::backend::users::random_password()?,
    };
    backend.ensure_admin(&password, true).await?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut t1_sockets = Vec::new();
    for _ in 0..TIER1S {
        t1_sockets.push(loopback()?);
    }
    let t1_addrs: Vec<SocketAddr> = t1_sockets
        .iter()
        .map(std::net::UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    let mut tasks_t1 = Vec::new();
    for (i, socket) in t1_sockets.into_iter().enumerate() {
        let id = i as u32 + 1;
        let mut cfg = Tier1File {
            id,
            listen: t1_addrs[i],
            peers: (0..TIER1S as usize)
                .filter(|&j| j != i)
                .map(|j| Peer {
                    id: j as u32 + 1,
                    addr: t1_addrs[j],
                })
                .collect(),
            metrics: None,
            identity: None,
            servers: None,
            insecure: false,
        };
        cfg.secure_identity(&keys);
        let listener = next_listener("tier1", id)?;
        let stop = stop_rx.clone();
        tasks_t1.push(on_own_thread(format!("tier1-{id}"), move || async move {
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            let metrics = tokio_listener(listener)?;
            service::run_tier1_on(&cfg, &socket, metrics, stopped(stop)).await
        })?);
    }

    let mut tasks_t2 = Vec::new();
    for i in 0..TIER2S {
        let socket = loopback()?;
        // Half the tier-2s register with each tier-1 first.
        let mut tier1 = t1_addrs.clone();
        tier1.rotate_left((i % TIER1S) as usize);
        let mut cfg = Tier2File {
            id: 11 + i,
            listen: socket.local_addr()?,
            tier1,
            capacity: 1000,
            policy: PolicyConfig::best(),
            database: Some(database.clone()),
            advertise: None,
            metrics: None,
            key: None,
            devices: None,
            identity: None,
            servers: None,
            insecure: false,
        };
        cfg.secure_with(&keys);
        let listener = next_listener("tier2", cfg.id)?;
        let stop = stop_rx.clone();
        tasks_t2.push(on_own_thread(
            format!("tier2-{}", cfg.id),
            move || async move {
                let socket = tokio::net::UdpSocket::from_std(socket)?;
                let metrics = tokio_listener(listener)?;
                service::run_tier2_on(&cfg, &socket, metrics, stopped(stop)).await
            },
        )?);
    }

    let mut tasks_m = Vec::new();
    let frame_interval = Duration::from_secs_f64(1.0 / opts.fps);
    for id in 1..=opts.clients {
        let inner = loopback()?;
        let mut tier1 = t1_addrs.clone();
        tier1.rotate_left((id % TIER1S) as usize);
        let mut cfg = MobileFile {
            id,
            listen: inner.local_addr()?,
            tier1,
            fps: opts.fps,
            camera: "synthetic".to_string(),
            gps: "synthetic".to_string(),
            width: crate::device::SyntheticSettings::default().width,
            height: crate::device::SyntheticSettings::default().height,
            jpeg_quality: crate::device::SyntheticSettings::default().quality,
            keep_frames: None,
            metrics: None,
            key: None,
            cluster_key: None,
            insecure: false,
            ring: None,
            ring_bytes: crate::runtime::service::default_ring_bytes(),
            rate_control: true,
            uplink_alone: false,
            uplinks: Vec::new(),
        };
        cfg.secure_with(&keys);
        let link = LinkConfig {
            loss: opts.loss,
            ..LinkConfig::default()
        };
        let seed = opts
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(u64::from(id));
        let phase = first_capture_phase(id, opts.clients, frame_interval);
        let listener = next_listener("mobile", id)?;
        let stop = stop_rx.clone();
        tasks_m.push(on_own_thread(format!("mobile-{id}"), move || async move {
            let inner = tokio::net::UdpSocket::from_std(inner)?;
            let socket = ImpairedSocket::new(inner, TokioClock::new(), link, seed)?;
            let metrics = tokio_listener(listener)?;
            let mut early = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(phase) => {}
                _ = early.wait_for(|s| *s) => {}
            }
            service::run_mobile_on(&cfg, &[&socket], metrics, stopped(stop)).await
        })?);
    }

    let url = backend.url()?;
    ready(&Ready {
        url: &url,
        password: generated.then_some(password.as_str()),
        metrics: &metrics,
    });
    let backend = backend.run(stop).await;
    // The roles stop after the backend, whatever became of it.
    let _ = stop_tx.send(true);
    let backend = backend?;
    let mut summary = UpSummary {
        database,
        metrics,
        backend,
        tier1: Vec::new(),
        tier2: Vec::new(),
        mobiles: Vec::new(),
    };
    for t in tasks_m {
        summary.mobiles.push(joined(t.await)?);
    }
    for t in tasks_t2 {
        summary.tier2.push(joined(t.await)?);
    }
    for t in tasks_t1 {
        summary.tier1.push(joined(t.await)?);
    }
    let _ = std::fs::remove_dir_all(&keys.dir);
    Ok(summary)
}

fn joined<T>(
    r: Result<Result<T, ServiceError>, oneshot::error::RecvError>,
) -> Result<T, ServiceError> {
    r.map_err(|_| ServiceError::Io(std::io::Error::other("a role's thread panicked")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cameras_first_captures_spread_evenly_over_one_interval() {
        let interval = Duration::from_millis(200);
        let phases: Vec<Duration> = (1..=8)
            .map(|id| first_capture_phase(id, 8, interval))
            .collect();
        assert_eq!(phases[0], Duration::ZERO);
        for pair in phases.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(25), "{phases:?}");
        }
        assert!(phases[7] < interval);
        assert_eq!(first_capture_phase(1, 1, interval), Duration::ZERO);
    }
}
