//! The REST API and the map server's routes. Inputs are parsed here by hand so that every bad
//! one gets a 400 naming the field.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::CurrentUser;
use super::{client_views, now_ms, with_storage, ApiError, AppState, ClientView};
use crate::backend::map::{self, BBox, TileSource, Tiles};
use crate::backend::users::UserRole;
use crate::backend::{CommandRecord, CommandState, FrameRecord};
use crate::proto::wire::Command;

/// Default span of a track or frame history request without `from`: ten minutes.
const DEFAULT_SPAN_MS: i64 = 10 * 60 * 1000;
/// Default and largest `limit` of a track or frame history request.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;
/// Commands shown with a client.
const RECENT_COMMANDS: u32 = 20;

pub(super) fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} must be a whole number, got {text:?}")))
}

/// Query parameters, parsed field by field.
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn num<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(text) => {
                text.trim().parse().map(Some).map_err(|_| {
                    ApiError::bad_request(format!("{name} must be {what}, got {text:?}"))
                })
            }
        }
    }

    fn degrees(&self, name: &'static str) -> Result<f64, ApiError> {
        self.num(name, "a number of degrees")?
            .ok_or_else(|| ApiError::bad_request(format!("{name} is missing (degrees)")))
    }

    /// `from`, `to` (ms since the Unix epoch) and `limit`, with defaults: the last ten minutes,
    /// 1000 rows.
    pub(super) fn range(&self) -> Result<(i64, i64, u32), ApiError> {
        self.range_limited(DEFAULT_LIMIT, MAX_LIMIT)
    }

    /// [`Params::range`] with another default and largest `limit`.
    pub(super) fn range_limited(
        &self,
        default_limit: u32,
        max_limit: u32,
    ) -> Result<(i64, i64, u32), ApiError> {
        const MS: &str = "milliseconds since the Unix epoch";
        let to = self.num::<i64>("to", MS)?.unwrap_or_else(now_ms);
        let from = self
            .num::<i64>("from", MS)?
            .unwrap_or(to.saturating_sub(DEFAULT_SPAN_MS));
        if from > to {
            return Err(ApiError::bad_request(format!(
                "from ({from}) is after to ({to})"
            )));
        }
        let limit = self
            .num::<u32>("limit", "a whole number")?
            .unwrap_or(default_limit);
        if !(1..=max_limit).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be 1..={max_limit}, got {limit}"
            )));
        }
        Ok((from, to, limit))
    }
}

pub(super) fn params(
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Params, ApiError> {
    query
        .map(|Query(q)| Params(q))
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

pub(super) type QueryArg =
    Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

pub(super) async fn healthz(State(shared): State<AppState>) -> Result<Json<Value>, ApiError> {
    with_storage(&shared, |s| s.session(0))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.message))?;
    Ok(Json(json!({"status": "ok"})))
}

pub(super) async fn clients(
    State(shared): State<AppState>,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    Ok(Json(client_views(&shared).await?))
}

/// The view of client `id`, or 404.
async fn find_client(shared: &AppState, id: u32) -> Result<ClientView, ApiError> {
    client_views(shared)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no client {id}")))
}

pub(super) async fn client(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "client id")?;
    let view = find_client(&shared, id).await?;
    let commands = with_storage(&shared, move |s| s.commands(id, RECENT_COMMANDS)).await?;
    let mut body = serde_json::to_value(view).map_err(|e| ApiError::internal(e.to_string()))?;
    body["commands"] =
        serde_json::to_value(commands).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(body))
}

fn jpeg(frame: FrameRecord, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg".to_string()),
            (header::CACHE_CONTROL, cache.to_string()),
            (
                header::HeaderName::from_static("x-livecam-frame"),
                frame.frame.to_string(),
            ),
            (
                header::HeaderName::from_static("x-livecam-capture-ms"),
                frame.capture_ms.to_string(),
            ),
        ],
        frame.jpeg,
    )
        .into_response()
}

pub(super) async fn latest_frame(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "client id")?;
    match with_storage(&shared, move |s| s.latest_frame(id)).await? {
        Some(f) => Ok(jpeg(f, "no-store")),
        None => Err(ApiError::not_found(format!(
            "no frame stored for client {id}"
        ))),
    }
}

pub(super) async fn frame(
    State(shared): State<AppState>,
    Path((id, frame)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: u32 = parse_id(&id, "client id")?;
    let frame: u64 = parse_id(&frame, "frame id")?;
    match with_storage(&shared, move |s| s.frame(id, frame)).await? {
        Some(f) => Ok(jpeg(f, "private, max-age=3600, immutable")),
        None => Err(ApiError::not_found(format!(
            "no frame {frame} stored for client {id}"
        ))),
    }
}

pub(super) async fn frames(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    query: QueryArg,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "client id")?;
    let (from, to, limit) = params(query)?.range()?;
    let frames = with_storage(&shared, move |s| s.frames(id, from, to, limit)).await?;
    Ok(Json(
        json!({"client": id, "from": from, "to": to, "frames": frames}),
    ))
}

pub(super) async fn track(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    query: QueryArg,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "client id")?;
    let (from, to, limit) = params(query)?.range()?;
    let fixes = with_storage(&shared, move |s| s.track(id, from, to, limit)).await?;
    let points: Vec<Value> = fixes
        .iter()
        .map(|f| {
            json!({
                "received_ms": f.received_ms,
                "lat": f.fix.lat,
                "lon": f.fix.lon,
                "speed_mps": f.fix.speed_mps,
                "heading_deg": f.fix.heading_deg,
                "fix_time_ms": f.fix.fix_time_ms,
            })
        })
        .collect();
    Ok(Json(
        json!({"client": id, "from": from, "to": to, "points": points}),
    ))
}

/// Refuses settings no camera takes, before they travel to the client.
fn check_command(c: &Command) -> Result<(), String> {
    match *c {
        Command::SetFps { milli_fps } if !(1..=60_000).contains(&milli_fps) => Err(format!(
            "milli_fps must be 1..=60000 (up to 60 frames per second), got {milli_fps}"
        )),
        Command::SetResolution { width, height }
            if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) =>
        {
            Err(format!(
                "resolution must be 16..=7680 x 16..=4320, got {width} x {height}"
            ))
        }
        Command::SetQuality { quality } if !(1..=100).contains(&quality) => {
            Err(format!("quality must be 1..=100, got {quality}"))
        }
        Command::SwitchTier1 { addr } if addr.port() == 0 || addr.ip().is_unspecified() => Err(
            format!("tier-1 address {addr} is not one a client can reach"),
        ),
        _ => Ok(()),
    }
}

pub(super) async fn post_command(
    State(shared): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "client id")?;
    if !user.may_command(id) {
        let why = match user.role {
            UserRole::Viewer => format!("user {} is a viewer and may not send commands", user.name),
            UserRole::Operator => format!("user {} may not command client {id}", user.name),
        };
        return Err(ApiError::new(StatusCode::FORBIDDEN, why));
    }
    let command: Command = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("command body: {e}")))?;
    check_command(&command).map_err(ApiError::bad_request)?;
    find_client(&shared, id).await?;
    let record = with_storage(&shared, move |s| {
        s.insert_command(id, command, &user.name, now_ms())
    })
    .await?;
    let reason = match shared.state.commands.try_send(record.clone()) {
        Ok(()) => return Ok((StatusCode::ACCEPTED, Json(record)).into_response()),
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => "command queue is full",
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => "command desk is not running",
    };
    let failed = CommandState::Failed {
        reason: reason.to_string(),
    };
    let cid = record.id;
    let record: Option<CommandRecord> = with_storage(&shared, move |s| {
        s.finish_command(cid, &failed, now_ms())?;
        s.command(cid)
    })
    .await?;
    if let Some(r) = &record {
        // Browsers watching learn it too; no receivers is fine.
        let _ = shared.state.command_updates.send(r.clone());
    }
    Ok((
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": reason, "command": record})),
    )
        .into_response())
}

pub(super) async fn client_commands(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    query: QueryArg,
) -> Result<Json<Vec<CommandRecord>>, ApiError> {
    let id = parse_id(&id, "client id")?;
    let limit = params(query)?
        .num::<u32>("limit", "a whole number")?
        .unwrap_or(RECENT_COMMANDS);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(Json(
        with_storage(&shared, move |s| s.commands(id, limit)).await?,
    ))
}

pub(super) async fn command(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommandRecord>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("command id must be a whole number, got {id:?}"))
    })?;
    with_storage(&shared, move |s| s.command(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no command {id}")))
}

pub(super) async fn area(
    State(shared): State<AppState>,
    query: QueryArg,
) -> Result<Json<Value>, ApiError> {
    let p = params(query)?;
    let bbox = BBox::new(
        p.degrees("south")?,
        p.degrees("west")?,
        p.degrees("north")?,
        p.degrees("east")?,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let inside: Vec<ClientView> = client_views(&shared)
        .await?
        .into_iter()
        .filter(|c| c.fix.as_ref().is_some_and(|f| bbox.contains(f.lat, f.lon)))
        .collect();
    Ok(Json(json!({"area": bbox, "clients": inside})))
}

pub(super) async fn map_info(State(shared): State<AppState>) -> Json<Value> {
    let city = shared.state.city;
    Json(json!({
        "city": city,
        "bounds": map::city_bounds(&city),
        "tiles": shared.state.tiles.as_ref().map(Tiles::browser_view),
        "online_window_ms": shared.state.online_window_ms,
    }))
}

pub(super) async fn city(State(shared): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/geo+json")],
        map::city_geojson(&shared.state.city).to_string(),
    )
        .into_response()
}

pub(super) async fn positions(State(shared): State<AppState>) -> Result<Response, ApiError> {
    let rows = with_storage(&shared, |s| s.clients()).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        map::positions_geojson(&rows).to_string(),
    )
        .into_response())
}

/// `/tiles/{z}/{x}/{y}.png` (any image extension, or none): XYZ numbering.
pub(super) async fn tile(
    State(shared): State<AppState>,
    Path((z, x, y)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let Some(Tiles::MbTiles(path)) = shared.state.tiles.clone() else {
        return Err(ApiError::not_found("no tile file is configured"));
    };
    let y = y
        .strip_suffix(".png")
        .or_else(|| y.strip_suffix(".jpg"))
        .or_else(|| y.strip_suffix(".webp"))
        .unwrap_or(&y);
    let (z, x, y) = (parse_id(&z, "zoom")?, parse_id(&x, "x")?, parse_id(y, "y")?);
    let shared2 = shared.clone();
    let tile = tokio::task::spawn_blocking(move || {
        let mut guard = shared2
            .tiles
            .lock()
            .map_err(|_| ApiError::internal("tile lock poisoned"))?;
        if guard.is_none() {
            *guard = Some(TileSource::open(&path).map_err(|e| ApiError::internal(e.to_string()))?);
        }
        match guard.as_ref() {
            Some(t) => t
                .tile(z, x, y)
                .map_err(|e| ApiError::internal(e.to_string())),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("tile task failed: {e}")))??;
    match tile {
        Some(t) => Ok((
            [
                (header::CONTENT_TYPE, t.content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            t.data,
        )
            .into_response()),
        None => Err(ApiError::not_found(format!("no tile {z}/{x}/{y}"))),
    }
}

pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such path: {}", uri.path()))
}

pub(super) async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on {}", uri.path()),
    )
}
