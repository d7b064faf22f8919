//! `livecam up`: a whole system on loopback in one process: two tier-1s, four tier-2s, the
//! backend (database, map, web) and N mobile clients with synthetic cameras driving the
//! synthetic city, every role on its own UDP socket, running the same code as the role
//! processes, until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use tokio::net::UdpSocket;

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
}

/// What every role reported at the end.
#[derive(Debug, Serialize)]
pub struct UpSummary {
    pub database: String,
    pub backend: BackendSummary,
    pub tier1: Vec<Tier1Summary>,
    pub tier2: Vec<Tier2Summary>,
    pub mobiles: Vec<MobileSummary>,
}

const TIER1S: u32 = 2;
const TIER2S: u32 = 4;

async fn loopback() -> std::io::Result<UdpSocket> {
    UdpSocket::bind(("127.0.0.1", 0)).await
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

/// Starts everything, calls `ready` with the browser URL and the generated password of the
/// operator `admin` (`None` when it came from `password_file`) once the backend listens, and
/// runs until `stop`. Must run inside a [`tokio::task::LocalSet`] (the mobile clients' impaired
/// sockets are not `Send`).
pub async fn up(
    opts: &UpOptions,
    ready: impl FnOnce(&str, Option<&str>),
    stop: impl std::future::Future<Output = ()>,
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
        ..BackendFile::new(database.clone())
    };
    // Refused here, naming the flag's field, rather than when the web server starts.
    backend_cfg.tile_source("livecam up")?;
    backend_cfg.secure_identity(&keys);
    let backend = Backend::bind(&backend_cfg).await?;
    // The login: admin, with the given password or a new random one (set anew either way,
    // so the password handed out works on a database used before).
    let generated = opts.password_file.is_none();
    let password = match &opts.password_file {
        Some(path) => super::users::read_password(Some(path))?,
        None => crate::backend::users::random_password()?,
    };
    backend.ensure_admin(&password, true).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut t1_sockets = Vec::new();
    for _ in 0..TIER1S {
        t1_sockets.push(loopback().await?);
    }
    let t1_addrs: Vec<SocketAddr> = t1_sockets
        .iter()
        .map(UdpSocket::local_addr)
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
        let stop = stopped();
        tasks_t1.push(tokio::task::spawn_local(async move {
            service::run_tier1_on(&cfg, &socket, stop).await
        }));
    }

    let mut tasks_t2 = Vec::new();
    for i in 0..TIER2S {
        let socket = loopback().await?;
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
        let stop = stopped();
        tasks_t2.push(tokio::task::spawn_local(async move {
            service::run_tier2_on(&cfg, &socket, stop).await
        }));
    }

    let mut tasks_m = Vec::new();
    for id in 1..=opts.clients {
        let inner = loopback().await?;
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
        };
        cfg.secure_with(&keys);
        let socket = ImpairedSocket::new(
            inner,
            TokioClock::new(),
            LinkConfig {
                loss: opts.loss,
                ..LinkConfig::default()
            },
            opts.seed
                .wrapping_mul(1_000_003)
                .wrapping_add(u64::from(id)),
        )?;
        let stop = stopped();
        tasks_m.push(tokio::task::spawn_local(async move {
            service::run_mobile_on(&cfg, &socket, stop).await
        }));
    }

    let url = backend.url()?;
    ready(&url, generated.then_some(password.as_str()));
    let backend = backend.run(stop).await;
    // The roles stop after the backend, whatever became of it.
    let _ = stop_tx.send(true);
    let backend = backend?;
    let mut summary = UpSummary {
        database,
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
    r: Result<Result<T, ServiceError>, tokio::task::JoinError>,
) -> Result<T, ServiceError> {
    r.map_err(|e| ServiceError::Io(std::io::Error::other(e.to_string())))?
}
