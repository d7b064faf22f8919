//! The web server ([0024]-[0026] of the seed): a REST API and a WebSocket push over the
//! [`Storage`](crate::backend::Storage), the map server's routes, and the browser client, every
//! asset of which is compiled into the binary (it works with no internet).
//!
//! [`router`] builds the whole thing from a [`WebState`]; serve it with `axum::serve` and
//! `into_make_service_with_connect_info::<SocketAddr>()` (the login throttle keys on the
//! client's address).
//!
//! - `routes`: the REST API (`/api/...`, `/healthz`, `/tiles/{z}/{x}/{y}.png`).
//! - `live`: `/api/live`, a WebSocket pushing what changed in the fleet and command updates,
//!   and (`video`) the frames of the clients the page watches, as they are stored.
//! - `live`: `/api/live`, a WebSocket pushing what changed in the fleet, command updates and
//!   geofence events.
//! - `fences`: groups, geofences and their events (`/api/groups`, `/api/geofences`).
//! - `export`: a client's frames and fixes of a time range as a zip
//!   (`/api/clients/{id}/export.zip`).
//! - `assets`: the browser client (`/`, `/app.js`, `/app.css`, `/vendor/leaflet/...`).
//!
//! Commands: `POST /api/clients/{id}/commands` stores a pending command and hands it to the
//! command desk through [`WebState::commands`]; the desk sends it to the mobile client through
//! its tier-2, stores the answer, and publishes it on [`WebState::command_updates`], which the
//! WebSocket forwards to every browser.
//!
//! Login (`auth`): `POST /api/login` gives a token (and sets it as a cookie); every other
//! `/api/*` route, the WebSocket too, answers 401 without one. Viewers may not command (403);
//! operators command the clients they are allowed, and the command records who issued it.
//! The browser client, `/healthz` and map tiles are served to anyone.
//!
//! Every error is JSON `{"error": "..."}` with a fitting status code.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::backend::geofence::GeofenceEvent;
use crate::backend::map::Tiles;
use crate::backend::{ClientRow, CommandRecord, LinkRecord, Storage, StorageError};
use crate::device::City;

mod assets;
pub mod auth;
mod export;
mod fences;
mod live;
mod routes;
#[cfg(test)]
mod tests;
mod video;

/// What the web server needs. The backend process builds it and owns the command desk.
#[derive(Clone)]
pub struct WebState {
    /// Called inside `tokio::task::spawn_blocking`.
    pub storage: Arc<Mutex<Box<dyn Storage>>>,
    /// New commands, already stored as pending, for the command desk.
    pub commands: tokio::sync::mpsc::Sender<CommandRecord>,
    /// Commands the desk has finished (acked or failed), already stored.
    pub command_updates: tokio::sync::broadcast::Sender<CommandRecord>,
    /// Geofence events the fence watcher raised, already stored
    /// ([`crate::backend::fence_watch`]).
    pub geofence_events: tokio::sync::broadcast::Sender<GeofenceEvent>,
    /// The synthetic city the map shows.
    pub city: City,
    /// The map's raster tiles, if any: a tile server the browser asks, or an MBTiles file
    /// served at `/tiles/{z}/{x}/{y}.png`.
    pub tiles: Option<Tiles>,
    /// A client is online if its session's `last_seen_ms` is within this of now.
    pub online_window_ms: i64,
    /// The page is served over HTTPS: login cookies get `Secure` (never sent in the clear).
    pub secure_cookies: bool,
    /// Requests, live sockets and the rest of the backend's metrics (served elsewhere: see
    /// [`crate::metrics`]).
    pub metrics: Arc<crate::metrics::BackendMetrics>,
}

/// The whole web server: REST API, WebSocket push, map server and browser client.
pub fn router(state: WebState) -> Router {
    router_and_state(state).0
}

/// [`router`], and the state it shares between requests (tests look into it).
fn router_and_state(state: WebState) -> (Router, AppState) {
    let shared = Arc::new(Shared {
        state,
        hub: live::Hub::default(),
        video: video::VideoHub::default(),
        tiles: Mutex::new(None),
        throttle: Mutex::new(auth::Throttles::default()),
        verifier: auth::Verifier::default(),
    });
    // Every route under /api but login and logout needs a logged-in user (auth.rs).
    let api = Router::new()
        .route("/api/me", get(auth::me))
        .route("/api/clients", get(routes::clients))
        .route("/api/clients/{id}", get(routes::client))
        .route("/api/clients/{id}/frame/latest", get(routes::latest_frame))
        .route("/api/clients/{id}/frames/{frame}", get(routes::frame))
        .route("/api/clients/{id}/frames", get(routes::frames))
        .route("/api/clients/{id}/track", get(routes::track))
        .route(
            "/api/clients/{id}/commands",
            post(routes::post_command).get(routes::client_commands),
        )
        .route("/api/commands/{id}", get(routes::command))
        .route("/api/clients/{id}/export.zip", get(export::export))
        .route("/api/clients/{id}/video.mjpeg", get(video::mjpeg))
        .route("/api/groups", get(fences::groups).post(fences::post_group))
        .route("/api/groups/{id}", delete(fences::delete_group))
        .route(
            "/api/geofences",
            get(fences::geofences).post(fences::post_geofence),
        )
        .route("/api/geofences/events", get(fences::events))
        .route("/api/geofences/{id}", delete(fences::delete_geofence))
        .route("/api/area", get(routes::area))
        .route("/api/map", get(routes::map_info))
        .route("/api/map/city.geojson", get(routes::city))
        .route("/api/map/clients.geojson", get(routes::positions))
        .route("/api/live", get(live::upgrade))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::require_login,
        ));
    let router = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/tiles/{z}/{x}/{y}", get(routes::tile))
        .merge(api)
        .merge(assets::routes())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn(auth::same_origin))
        .layer(axum::middleware::from_fn_with_state(
            shared.state.metrics.clone(),
            crate::metrics::track_http,
        ))
        .with_state(shared.clone());
    (router, shared)
}

/// The router's state: the caller's, plus what the server keeps for itself.
struct Shared {
    state: WebState,
    hub: live::Hub,
    /// The live video pollers, by watched client.
    video: video::VideoHub,
    /// The MBTiles file, opened on the first tile request.
    tiles: Mutex<Option<crate::backend::map::TileSource>>,
    /// Failed logins per name at an address, and per address.
    throttle: Mutex<auth::Throttles>,
    /// The argon2 checks' bounded pool.
    verifier: auth::Verifier,
}

type AppState = Arc<Shared>;

/// A failed request: its status and a message for the JSON body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::warn!(%message, "web request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Runs `f` on the storage on tokio's blocking pool.
async fn with_storage<T, F>(shared: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Storage) -> Result<T, StorageError> + Send + 'static,
{
    let storage = shared.state.storage.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = storage
            .lock()
            .map_err(|_| ApiError::internal("storage lock poisoned by an earlier failure"))?;
        f(guard.as_mut()).map_err(ApiError::from)
    })
    .await
    .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
}

/// Milliseconds since the Unix epoch on this server's clock (the clock storage times use).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A client's last position, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixView {
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: f64,
    pub heading_deg: f64,
    pub fix_time_ms: u64,
    /// When the tier-2 received it.
    pub received_ms: i64,
}

/// One mobile client as `GET /api/clients` and the WebSocket show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientView {
    pub id: u32,
    /// Its session's `last_seen_ms` is within the online window.
    pub online: bool,
    pub last_seen_ms: Option<i64>,
    pub tier2: Option<u32>,
    pub tier2_addr: Option<SocketAddr>,
    pub client_addr: Option<SocketAddr>,
    pub fix: Option<FixView>,
    /// Segment size, loss, latency and frame counts of the last reporting interval.
    pub link: Option<LinkRecord>,
    /// A decimal string (see [`crate::backend::seq_string`]).
    #[serde(with = "crate::backend::seq_string_opt")]
    pub last_frame: Option<u64>,
}

impl ClientView {
    fn new(row: &ClientRow, now_ms: i64, online_window_ms: i64) -> ClientView {
        let session = row.session.as_ref();
        ClientView {
            id: row.client,
            online: session
                .is_some_and(|s| s.last_seen_ms >= now_ms.saturating_sub(online_window_ms)),
            last_seen_ms: session.map(|s| s.last_seen_ms),
            tier2: session.map(|s| s.tier2),
            tier2_addr: session.map(|s| s.tier2_addr),
            client_addr: session.map(|s| s.client_addr),
            fix: row.last_fix.map(|f| FixView {
                lat: f.fix.lat,
                lon: f.fix.lon,
                speed_mps: f.fix.speed_mps,
                heading_deg: f.fix.heading_deg,
                fix_time_ms: f.fix.fix_time_ms,
                received_ms: f.received_ms,
            }),
            link: row.last_link,
            last_frame: row.last_frame,
        }
    }
}

/// Every client, as views, at `now`.
async fn client_views(shared: &AppState) -> Result<Vec<ClientView>, ApiError> {
    let window = shared.state.online_window_ms;
    let rows = with_storage(shared, |s| s.clients()).await?;
    let now = now_ms();
    Ok(rows
        .iter()
        .map(|r| ClientView::new(r, now, window))
        .collect())
}
