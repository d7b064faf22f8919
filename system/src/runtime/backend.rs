//! The backend process: `livecam backend --config FILE.toml`.
//!
//! It opens the database the tier-2s write to, serves the map, the REST API, the live push and
//! the browser client over HTTP ([`crate::backend::web`]), runs the command desk
//! ([`CommandDesk`]) on a UDP socket, and prunes old data on a timer. Commands go from the
//! browser through the web API into the database (pending), to the desk, over UDP to the
//! tier-2 that holds the client's session and on to the client; the client's result comes back
//! the same way and is written to the database and pushed to browsers. The fence watcher
//! ([`crate::backend::fence_watch`]) turns the stored fixes into geofence events.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::backhaul::unix_ms;
use super::config::{from_toml, invalid, read_text, ConfigError};
use super::security::ServerIdentity;
use super::service::ServiceError;
use crate::backend::desk::{CommandDesk, DeskConfig, Finished};
use crate::backend::map::{TileUrl, TileUrlError, Tiles};
use crate::backend::web::{router, WebState};
use crate::backend::{CommandRecord, CommandState, Retention, Storage};
use crate::device::City;
use crate::driver::{self, Glue};
use crate::metrics::BackendMetrics;

use crate::net::{Clock, TokioClock};
use crate::secure::{ControlStats, ServerRole};
use crate::time::Instant;

/// `livecam backend --config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    /// `sqlite:PATH` or `postgres://...`: the database the tier-2s write to.
    pub database: String,
    /// The web server's address (browser client, REST API, live push).
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// The UDP address commands leave from (tier-2s answer to it).
    #[serde(default = "default_commands")]
    pub commands: SocketAddr,
    /// The map's raster tiles: a tile server's URL template
    /// (`https://tile.openstreetmap.org/{z}/{x}/{y}.png`, with `tiles_attribution`), which the
    /// browser asks directly, or the path of an MBTiles file this server serves. Without it the
    /// map shows the synthetic city.
    #[serde(default)]
    pub tiles: Option<String>,
    /// What the tile source asks to be shown on the map (needed with a tile URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles_attribution: Option<String>,
    /// A client counts as online when its tier-2 heard from it within this many ms.
    #[serde(default = "default_online_window")]
    pub online_window_ms: i64,
    /// What the database keeps; nothing is pruned without it.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Seconds between retention passes.
    #[serde(default = "default_retention_interval")]
    pub retention_interval_s: u64,
    /// The synthetic city the map shows (the one synthetic routes drive in).
    #[serde(default)]
    pub city: City,
    /// A file whose first line is the password of the operator `admin`, created at start if
    /// the database has no `admin` yet (an existing one keeps its password). Without it,
    /// users are added with `livecam user add`.
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// The backend's id among the cluster's backends (its signing key is `backend-ID.sign`).
    #[serde(default = "default_backend_id")]
    pub id: u32,
    /// This backend's signing key file (from `livecam keygen --cluster`): commands are signed
    /// with it, and tier-2s take commands only from the backends in their registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// The registry of the cluster's servers (`servers.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<PathBuf>,
    /// Send commands unsigned and take unsigned results: lab use only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Serve HTTPS with this PEM certificate chain (and `tls_key`); login cookies are then
    /// `Secure`. Without both, plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`, apart from the web server and
    /// without a login: put it on loopback or a monitoring network (see `crate::metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
}

fn default_backend_id() -> u32 {
    1
}

fn default_http() -> SocketAddr {
    ([127, 0, 0, 1], 8080).into()
}
fn default_commands() -> SocketAddr {
    ([0, 0, 0, 0], 0).into()
}
fn default_online_window() -> i64 {
    3000
}
fn default_retention_interval() -> u64 {
    60
}

crate::server_identity!(BackendFile, ServerRole::Backend);

impl BackendFile {
    /// Where the map's tiles come from: `tiles` read as a URL template when it starts with
    /// `http://` or `https://`, else as an MBTiles path (which must be a file).
    pub fn tile_source(&self, origin: &str) -> Result<Option<Tiles>, ConfigError> {
        let invalid = |field, message: &str| invalid(origin, field, message);
        let Some(t) = &self.tiles else {
            if self.tiles_attribution.is_some() {
                return Err(invalid(
                    "tiles_attribution",
                    "is set but tiles is not (it belongs to a tile URL)",
                ));
            }
            return Ok(None);
        };
        if t.starts_with("http://") || t.starts_with("https://") {
            let attribution = self.tiles_attribution.as_deref().unwrap_or_default();
            return TileUrl::new(t, attribution).map(|u| Some(Tiles::Url(u))).map_err(|e| {
                let field = if matches!(e, TileUrlError::NoAttribution)
                    || matches!(e, TileUrlError::TooLong { what, .. } if what.contains("attribution"))
                {
                    "tiles_attribution"
                } else {
                    "tiles"
                };
                invalid(field, &e.to_string())
            });
        }
        if self.tiles_attribution.is_some() {
            return Err(invalid(
                "tiles_attribution",
                "belongs to a tile URL; an MBTiles file carries its own",
            ));
        }
        let path = PathBuf::from(t);
        if !path.is_file() {
            return Err(invalid(
                "tiles",
                &format!("{t} is neither an http(s):// tile URL template nor an MBTiles file"),
            ));
        }
        Ok(Some(Tiles::MbTiles(path)))
    }

    /// A backend over `database` with every other field at its default.
    pub fn new(database: String) -> Self {
        BackendFile {
            database,
            http: default_http(),
            commands: default_commands(),
            tiles: None,
            tiles_attribution: None,
            online_window_ms: default_online_window(),
            retention: None,
            retention_interval_s: default_retention_interval(),
            city: City::default(),
            admin_password_file: None,
            id: default_backend_id(),
            identity: None,
            servers: None,
            insecure: false,
            tls_cert: None,
            tls_key: None,
            metrics: None,
        }
    }

    /// The TLS server configuration, when `tls_cert` and `tls_key` are set.
    pub fn tls(&self, origin: &str) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
        let invalid = |field, message: String| invalid(origin, field, message);
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid("tls_key", "needed with tls_cert".into())),
            (None, Some(_)) => Err(invalid("tls_cert", "needed with tls_key".into())),
            (Some(cert), Some(key)) => {
                super::tls::server_config(cert, key).map(Some).map_err(|e| {
                    // Name the file that failed; a pair that does not match is the cert's.
                    let field = match &e {
                        super::tls::TlsError::File { path, .. }
                            if *path == key.display().to_string() =>
                        {
                            "tls_key"
                        }
                        _ => "tls_cert",
                    };
                    invalid(field, e.to_string())
                })
            }
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parses and checks config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let c: Self = from_toml(text, path)?;
        let invalid = |field, message: &str| invalid(path.display(), field, message);
        if c.online_window_ms <= 0 {
            return Err(invalid("online_window_ms", "must be positive"));
        }
        if c.retention_interval_s == 0 {
            return Err(invalid("retention_interval_s", "must be at least 1"));
        }
        if c.city.streets < 2 || !c.city.block_m.is_finite() || c.city.block_m <= 0.0 {
            return Err(invalid(
                "city",
                "needs at least 2 streets and a positive block_m",
            ));
        }
        // Found by the config fuzz target: a centre of NaN (or off the Earth) was accepted.
        let on_earth = c.city.centre_lat.is_finite()
            && c.city.centre_lat.abs() <= 85.0
            && c.city.centre_lon.is_finite()
            && c.city.centre_lon.abs() <= 180.0;
        if !on_earth {
            return Err(invalid(
                "city",
                "centre_lat must be within +-85 and centre_lon within +-180 degrees",
            ));
        }
        if let Some(p) = &c.admin_password_file {
            let password = super::users::read_password(Some(p))
                .map_err(|e| invalid("admin_password_file", &e.to_string()))?;
            crate::backend::users::check_password(&password)
                .map_err(|e| invalid("admin_password_file", &e.to_string()))?;
        }
        c.tile_source(&path.display().to_string())?;
        c.control_plane(Instant::ZERO, &path.display().to_string())?;
        c.tls(&path.display().to_string())?;
        Ok(c)
    }
}

/// What a backend process reports on exit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendSummary {
    pub role: &'static str,
    pub http: Option<SocketAddr>,
    pub commands_sent: u64,
    pub commands_acked: u64,
    pub commands_failed: u64,
    pub datagrams_ignored: u64,
    /// Control datagrams signed, let in and refused (all zero: insecure).
    pub control: ControlStats,
}

/// A backend that is listening: its addresses, before it runs.
pub struct Backend {
    cfg: BackendFile,
    storage: Arc<Mutex<Box<dyn Storage>>>,
    http: tokio::net::TcpListener,
    udp: tokio::net::UdpSocket,
    /// HTTPS when configured.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Where the metrics are served, when configured.
    metrics: Option<tokio::net::TcpListener>,
}

impl Backend {
    /// Opens the database and binds the HTTP and UDP sockets.
    pub async fn bind(cfg: &BackendFile) -> Result<Self, ServiceError> {
        let storage = super::service::open_storage(&cfg.database).await?;
        let backend = Backend {
            cfg: cfg.clone(),
            storage: Arc::new(Mutex::new(storage)),
            http: tokio::net::TcpListener::bind(cfg.http).await?,
            udp: tokio::net::UdpSocket::bind(cfg.commands).await?,
            tls: cfg.tls("the backend config")?,
            metrics: super::service::bind_metrics(cfg.metrics).await?,
        };
        if let Some(path) = &cfg.admin_password_file {
            let password = super::users::read_password(Some(path))?;
            if backend.ensure_admin(&password, false).await? {
                tracing::info!(file = %path.display(), "created user admin");
            }
        }
        Ok(backend)
    }

    /// Makes sure the operator `admin` exists with `password` (an existing one keeps its
    /// password unless `reset`); whether it was created.
    pub async fn ensure_admin(&self, password: &str, reset: bool) -> Result<bool, ServiceError> {
        let storage = self.storage.clone();
        let password = password.to_string();
        let created = tokio::task::spawn_blocking(move || {
            super::users::ensure_admin(lock(&storage).as_mut(), &password, reset, unix_ms())
        })
        .await
        .map_err(|e| ServiceError::Io(std::io::Error::other(e.to_string())))??;
        Ok(created)
    }

    /// The web server's address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// Where the metrics are served (`http://ADDR/metrics`), when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The web server's URL: `https://` when it serves TLS.
    pub fn url(&self) -> std::io::Result<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{}/", self.http_addr()?))
    }

    /// Serves until `stop`.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<BackendSummary, ServiceError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (upd_tx, _) = broadcast::channel(1024);
        let metrics = Arc::new(BackendMetrics::default());
        let (fence_tx, _) = broadcast::channel(1024);
        let state = WebState {
            storage: self.storage.clone(),
            commands: cmd_tx,
            command_updates: upd_tx.clone(),
            geofence_events: fence_tx.clone(),
            city: self.cfg.city,
            tiles: self.cfg.tile_source("the backend's config")?,
            online_window_ms: self.cfg.online_window_ms,
            secure_cookies: self.tls.is_some(),
            metrics: metrics.clone(),
        };
        let http = self.http.local_addr()?;
        let url = self.url()?;
        tracing::info!(%http, tls = self.tls.is_some(), "backend up: open {url}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_server = self.metrics.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics at http://{addr}/metrics");
            }
            let m = metrics.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(crate::metrics::serve(
                listener,
                move || m.encode(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            ))
        });
        let mut web_stop = stop_rx.clone();
        let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let web = match self.tls.clone() {
            None => tokio::spawn(async move {
                axum::serve(self.http, app)
                    .with_graceful_shutdown(async move {
                        let _ = web_stop.wait_for(|s| *s).await;
                    })
                    .await
            }),
            Some(config) => {
                let handle = axum_server::Handle::new();
                let server = axum_server::from_tcp_rustls(
                    self.http.into_std()?,
                    axum_server::tls_rustls::RustlsConfig::from_config(config),
                )?
                .handle(handle.clone());
                tokio::spawn(async move {
                    let _ = web_stop.wait_for(|s| *s).await;
                    handle.graceful_shutdown(Some(Duration::from_secs(5)));
                });
                tokio::spawn(async move { server.serve(app).await })
            }
        };
        let retention = self.cfg.retention.map(|r| {
            let storage = self.storage.clone();
            let every = Duration::from_secs(self.cfg.retention_interval_s);
            let mut stop = stop_rx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let storage = storage.clone();
                    let pruned = tokio::task::spawn_blocking(move || {
                        lock(&storage).apply_retention(&r, unix_ms())
                    })
                    .await;
                    match pruned {
                        Ok(Ok(p)) => {
                            metrics.retention(&p);
                            tracing::info!(?p, "retention pass");
                        }
                        Ok(Err(e)) => {
                            metrics.retention_failures.inc();
                            tracing::warn!(error = %e, "retention pass failed");
                        }
                        Err(e) => {
                            metrics.retention_failures.inc();
                            tracing::warn!(error = %e, "retention pass panicked");
                        }
                    }
                }
            })
        });
        // Geofence enter/leave events from the fixes stored from now on.
        let fences = tokio::spawn(crate::backend::fence_watch::run(
            self.storage.clone(),
            fence_tx,
            metrics.clone(),
            unix_ms(),
            stop_rx.clone(),
        ));
        let mut summary = BackendSummary::default();
        let ended = tokio::select! {
            r = desk_loop(&self.cfg, &self.udp, self.storage.clone(), cmd_rx, upd_tx, &metrics, &mut summary) => r,
            _ = stop => Ok(()),
        };
        let _ = stop_tx.send(true);
        if let Ok(Err(e)) = web.await {
            tracing::warn!(error = %e, "web server ended with an error");
        }
        if let Some(r) = retention {
            let _ = r.await;
        }
        if let Some(m) = metrics_server {
            if let Ok(Err(e)) = m.await {
                tracing::warn!(error = %e, "metrics server ended with an error");
            }
        }
        let _ = fences.await;
        // The last handle on the database: a PostgreSQL client must not be dropped on the
        // async runtime.
        let storage = self.storage;
        let _ = tokio::task::spawn_blocking(move || drop(storage)).await;
        ended?;
        Ok(BackendSummary {
            role: "backend",
            http: Some(http),
            ..summary
        })
    }
}

/// Runs a backend until `stop`.
pub async fn run_backend(
    cfg: &BackendFile,
    stop: impl std::future::Future<Output = ()>,
) -> Result<BackendSummary, ServiceError> {
    Backend::bind(cfg).await?.run(stop).await
}

fn lock(storage: &Mutex<Box<dyn Storage>>) -> std::sync::MutexGuard<'_, Box<dyn Storage>> {
    // A panic while holding the lock leaves the connection as usable as any failed call.
    storage.lock().unwrap_or_else(|e| e.into_inner())
}

/// The command desk over the backend's UDP socket: new commands from the web API, results
/// from tier-2s, resends and deadlines from the desk. Runs until the socket fails.
async fn desk_loop(
    cfg: &BackendFile,
    socket: &tokio::net::UdpSocket,
    storage: Arc<Mutex<Box<dyn Storage>>>,
    commands: mpsc::Receiver<CommandRecord>,
    updates: broadcast::Sender<CommandRecord>,
    metrics: &BackendMetrics,
    summary: &mut BackendSummary,
) -> Result<(), ServiceError> {
    let clock = TokioClock::new();
    let mut desk = CommandDesk::new(DeskConfig::default());
    match cfg.control_plane(clock.now(), &format!("backend {}", cfg.id))? {
        Some(plane) => desk = desk.with_control(plane),
        None => super::service::warn_insecure("backend", cfg.id),
    }
    let mut glue = DeskGlue {
        storage,
        commands,
        updates,
        metrics,
        summary,
    };
    Ok(driver::run_with(&mut desk, socket, &clock, &mut glue).await?)
}

/// The command desk's part of the driver loop: new commands from the web API come in as
/// outside inputs (their session looked up in the database), and finished commands go to the
/// database and the browsers after every round.
struct DeskGlue<'a> {
    storage: Arc<Mutex<Box<dyn Storage>>>,
    commands: mpsc::Receiver<CommandRecord>,
    updates: broadcast::Sender<CommandRecord>,
    metrics: &'a BackendMetrics,
    summary: &'a mut BackendSummary,
}

impl Glue<CommandDesk> for DeskGlue<'_> {
    type Input = CommandRecord;

    async fn next_input(&mut self) -> Option<CommandRecord> {
        self.commands.recv().await
    }

    async fn handle_input(&mut self, desk: &mut CommandDesk, now: Instant, cmd: CommandRecord) {
        let s = self.storage.clone();
        let client = cmd.client;
        let session = tokio::task::spawn_blocking(move || lock(&s).session(client)).await;
        match session {
            Ok(Ok(Some(session))) => {
                desk.submit(now, cmd.id, cmd.client, cmd.command, session.tier2_addr);
            }
            Ok(Ok(None)) => desk.fail(
                cmd.id,
                cmd.client,
                &format!("client {client} has no session"),
            ),
            Ok(Err(e)) => desk.fail(cmd.id, cmd.client, &format!("database: {e}")),
            Err(e) => desk.fail(cmd.id, cmd.client, &format!("database: {e}")),
        }
    }

    async fn after_round(
        &mut self,
        desk: &mut CommandDesk,
        _: Instant,
        sent: usize,
    ) -> ControlFlow<()> {
        self.summary.commands_sent += sent as u64;
        while let Some(f) = desk.poll_event() {
            match f.state {
                CommandState::Acked => self.summary.commands_acked += 1,
                _ => self.summary.commands_failed += 1,
            }
            finish(&self.storage, &self.updates, f).await;
        }
        self.metrics.desk(desk.stats(), desk.pending());
        self.summary.datagrams_ignored = desk.ignored;
        self.summary.control = desk.control_stats();
        ControlFlow::Continue(())
    }
}

/// Writes a finished command to the database and tells the browsers.
async fn finish(
    storage: &Arc<Mutex<Box<dyn Storage>>>,
    updates: &broadcast::Sender<CommandRecord>,
    f: Finished,
) {
    let s = storage.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut db = lock(&s);
        db.finish_command(f.id, &f.state, unix_ms())?;
        db.command(f.id)
    })
    .await;
    match written {
        Ok(Ok(Some(record))) => {
            // No browser listening is fine.
            let _ = updates.send(record);
        }
        Ok(Ok(None)) => tracing::warn!(id = f.id, "finished command not in the database"),
        Ok(Err(e)) => tracing::warn!(error = %e, id = f.id, "storing a command result failed"),
        Err(e) => tracing::warn!(error = %e, "storing a command result panicked"),
    }
}
