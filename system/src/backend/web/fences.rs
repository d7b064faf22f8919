//! Groups, geofences and geofence events over the REST API (see
//! [`crate::backend::geofence`]):
//!
//! - `GET /api/groups`, `POST /api/groups` (`{"name": "...", "members": [1, 2]}`),
//!   `DELETE /api/groups/{id}`;
//! - `GET /api/geofences`, `POST /api/geofences`
//!   (`{"name": "...", "group": 3 or null, "points": [[lat, lon], ...]}`),
//!   `DELETE /api/geofences/{id}`;
//! - `GET /api/geofences/events?from&to&limit`: stored enter/leave events, oldest first (the
//!   same range rules as a track: the last ten minutes, 1000 events by default).
//!
//! Who may: every logged-in user reads (as everything else). Creating and deleting is an
//! operator's act, as commanding is: it changes what every user sees and what the backend
//! watches, so a viewer may not. A group names clients, so an operator limited to some clients
//! may create or delete only groups of those (as they may command only those); a fence sends
//! nothing to any client and its events are visible to every viewer anyway, so any operator
//! may create or delete one. Every input is checked before it is stored, and a bad one gets a
//! 400 naming the field; the counts are bounded ([`MAX_GROUPS`], [`MAX_FENCES`]), so the
//! per-fix cost of the fence watcher is too.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value};

use super::auth::CurrentUser;
use super::routes::{params, parse_id, QueryArg};
use super::{now_ms, with_storage, ApiError, AppState};
use crate::backend::geofence::{
    validate_members, validate_name, validate_points, GeofenceEvent, GeofenceRecord, GroupRecord,
    GroupRemoval, Invalid, LatLon, NewGeofence, MAX_FENCES, MAX_GROUPS, MAX_MEMBERS, MAX_POINTS,
};
use crate::backend::users::{UserRecord, UserRole};

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

/// Only operators change groups and fences.
fn operator(user: &UserRecord, what: &str) -> Result<(), ApiError> {
    match user.role {
        UserRole::Operator => Ok(()),
        UserRole::Viewer => Err(forbidden(format!(
            "user {} is a viewer and may not {what}",
            user.name
        ))),
    }
}

/// An operator may change a group only if they may command all of its members.
fn may_change_group(user: &UserRecord, members: &BTreeSet<u32>) -> Result<(), ApiError> {
    operator(user, "change groups")?;
    match members.iter().find(|&&c| !user.may_command(c)) {
        None => Ok(()),
        Some(c) => Err(forbidden(format!(
            "user {} may not command client {c}, so may not group it",
            user.name
        ))),
    }
}

/// The body as a JSON object with only the `allowed` fields.
fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body: not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request("body: must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{k}: unknown field (expected {})",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

fn name(map: &Map<String, Value>) -> Result<String, ApiError> {
    let name = match map.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("name: must be a string")),
        None => return Err(ApiError::bad_request("name: missing")),
    };
    validate_name(&name)?;
    Ok(name)
}

/// A client id from JSON: a whole number within u32.
fn client_id(v: &Value, field: &str) -> Result<u32, ApiError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!("{field}: must be a client id (0..=4294967295)"))
        })
}

fn members(map: &Map<String, Value>) -> Result<BTreeSet<u32>, ApiError> {
    let Some(list) = map.get("members") else {
        return Err(ApiError::bad_request("members: missing"));
    };
    let Value::Array(list) = list else {
        return Err(ApiError::bad_request(
            "members: must be an array of client ids",
        ));
    };
    if list.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "members: at most {MAX_MEMBERS} clients, got {}",
            list.len()
        )));
    }
    let members = list
        .iter()
        .enumerate()
        .map(|(i, v)| client_id(v, &format!("members[{i}]")))
        .collect::<Result<BTreeSet<u32>, _>>()?;
    validate_members(&members)?;
    Ok(members)
}

fn points(map: &Map<String, Value>) -> Result<Vec<LatLon>, ApiError> {
    let Some(list) = map.get("points") else {
        return Err(ApiError::bad_request("points: missing"));
    };
    let Value::Array(list) = list else {
        return Err(ApiError::bad_request(
            "points: must be an array of [lat, lon] pairs",
        ));
    };
    if list.len() > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "points: a fence has at most {MAX_POINTS} points, got {}",
            list.len()
        )));
    }
    let points = list
        .iter()
        .enumerate()
        .map(|(i, p)| match p.as_array().map(Vec::as_slice) {
            Some([lat, lon]) => match (lat.as_f64(), lon.as_f64()) {
                (Some(lat), Some(lon)) => Ok(LatLon(lat, lon)),
                _ => Err(ApiError::bad_request(format!(
                    "points[{i}]: lat and lon must be numbers of degrees"
                ))),
            },
            _ => Err(ApiError::bad_request(format!(
                "points[{i}]: must be a [lat, lon] pair"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    validate_points(&points)?;
    Ok(points)
}

fn group(map: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match map.get("group") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request("group: must be a group id (a whole number) or null")
        }),
    }
}

pub(super) async fn groups(
    State(shared): State<AppState>,
) -> Result<Json<Vec<GroupRecord>>, ApiError> {
    Ok(Json(with_storage(&shared, |s| s.groups()).await?))
}

pub(super) async fn post_group(
    State(shared): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&user, "change groups")?;
    let map = object(&body, &["name", "members"])?;
    let (name, members) = (name(&map)?, members(&map)?);
    may_change_group(&user, &members)?;
    let record = with_storage(&shared, move |s| {
        if s.groups()?.len() >= MAX_GROUPS {
            return Ok(None);
        }
        s.insert_group(&name, &members, &user.name, now_ms())
            .map(Some)
    })
    .await?
    .ok_or_else(|| conflict(format!("there are {MAX_GROUPS} groups already, the most")))?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

pub(super) async fn delete_group(
    State(shared): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    operator(&user, "change groups")?;
    let id: u64 = parse_id(&id, "group id")?;
    let found = with_storage(&shared, move |s| {
        Ok(s.groups()?.into_iter().find(|g| g.id == id))
    })
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no group {id}")))?;
    may_change_group(&user, &found.members)?;
    match with_storage(&shared, move |s| s.delete_group(id)).await? {
        GroupRemoval::Deleted => Ok(StatusCode::NO_CONTENT),
        GroupRemoval::NotFound => Err(ApiError::not_found(format!("no group {id}"))),
        GroupRemoval::InUse(fences) => {
            let ids: Vec<String> = fences.iter().map(u64::to_string).collect();
            Err(conflict(format!(
                "group {id} is used by geofences {}: delete them first",
                ids.join(", ")
            )))
        }
    }
}

pub(super) async fn geofences(
    State(shared): State<AppState>,
) -> Result<Json<Vec<GeofenceRecord>>, ApiError> {
    Ok(Json(with_storage(&shared, |s| s.geofences()).await?))
}

pub(super) async fn post_geofence(
    State(shared): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&user, "change geofences")?;
    let map = object(&body, &["name", "group", "points"])?;
    let fence = NewGeofence {
        name: name(&map)?,
        group: group(&map)?,
        points: points(&map)?,
    };
    let group = fence.group;
    let created = with_storage(&shared, move |s| {
        if s.geofences()?.len() >= MAX_FENCES {
            return Ok(Err(conflict(format!(
                "there are {MAX_FENCES} geofences already, the most"
            ))));
        }
        Ok(s.insert_geofence(&fence, &user.name, now_ms())?
            .ok_or_else(|| {
                ApiError::bad_request(format!("group: no group {}", group.unwrap_or_default()))
            }))
    })
    .await??;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(super) async fn delete_geofence(
    State(shared): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    operator(&user, "change geofences")?;
    let id: u64 = parse_id(&id, "geofence id")?;
    if with_storage(&shared, move |s| s.delete_geofence(id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no geofence {id}")))
    }
}

pub(super) async fn events(
    State(shared): State<AppState>,
    query: QueryArg,
) -> Result<Json<Value>, ApiError> {
    let (from, to, limit) = params(query)?.range()?;
    let events: Vec<GeofenceEvent> =
        with_storage(&shared, move |s| s.geofence_events(from, to, limit)).await?;
    Ok(Json(
        serde_json::json!({"from": from, "to": to, "events": events}),
    ))
}
