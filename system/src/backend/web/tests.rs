//! In-process tests of every route, on real SQLite storage filled through the `Storage` trait.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tower::ServiceExt;

use super::{auth, now_ms, router_and_state, AppState, WebState};
use crate::backend::map::{TileUrl, Tiles};
use crate::backend::users::{self, UserRecord, UserRole};
use crate::backend::{
    CommandRecord, CommandState, FrameRecord, LinkRecord, SessionRecord, Storage,
};
use crate::device::{City, Fix, FrameSource, SyntheticCamera, SyntheticSettings};

const WINDOW_MS: i64 = 5_000;

struct Fixture {
    /// The router as the operator `op` (every client) uses it: each request carries op's token.
    app: Router,
    /// The router with no token added.
    raw: Router,
    storage: Arc<Mutex<Box<dyn Storage>>>,
    commands: mpsc::Receiver<CommandRecord>,
    updates: broadcast::Sender<CommandRecord>,
    /// Receive time of client 1's frames 1..=5.
    times: Vec<i64>,
    /// What the router shares between requests.
    shared: AppState,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn city_fix(city: &City, x: f64, y: f64) -> Fix {
    let (lat, lon) = city.to_lat_lon(x, y);
    Fix {
        lat,
        lon,
        speed_mps: 10.0,
        heading_deg: 90.0,
        fix_time_ms: 0,
    }
}

/// Client 1: online, five frames driving east along the southern street, link figures.
/// Client 2: offline (last seen a minute ago), one frame in the north-east corner.
/// Client 3: a session and nothing else.
fn fill(storage: &mut dyn Storage, city: &City, now: i64) -> Vec<i64> {
    let mut camera = SyntheticCamera::new(1, SyntheticSettings::default());
    for (client, last_seen) in [(1u32, now), (2, now - 60_000), (3, now)] {
        storage
            .upsert_session(&SessionRecord {
                client,
                tier2: 10 + client,
                tier2_addr: addr("127.0.0.1:7101"),
                client_addr: addr(&format!("127.0.0.1:{}", 9000 + client)),
                started_ms: now - 120_000,
                last_seen_ms: last_seen,
            })
            .unwrap();
    }
    let mut times = Vec::new();
    let frames: Vec<FrameRecord> = (1..=5u32)
        .map(|i| {
            let t = now - 50_000 + i64::from(i) * 10_000;
            times.push(t);
            FrameRecord {
                client: 1,
                frame: u64::from(i),
                tier2: 11,
                capture_ms: t - 30,
                received_ms: t,
                fix: Some(city_fix(city, 200.0 * f64::from(i), 0.0)),
                segment_size: 500,
                jpeg: camera.capture(u64::from(i), t as u64).unwrap(),
            }
        })
        .collect();
    storage.insert_frames(&frames).unwrap();
    let far = city.block_m * f64::from(city.streets - 1);
    storage
        .insert_frames(&[FrameRecord {
            client: 2,
            frame: 7,
            tier2: 12,
            capture_ms: now - 61_000,
            received_ms: now - 60_000,
            fix: Some(city_fix(city, far, far)),
            segment_size: 800,
            jpeg: camera.capture(7, 0).unwrap(),
        }])
        .unwrap();
    storage
        .insert_link(&LinkRecord {
            client: 1,
            at_ms: now,
            segment_size: 550,
            loss: 0.025,
            latency_ms: 12.5,
            frames_delivered: 5,
            frames_dropped: 1,
        })
        .unwrap();
    times
}

/// The users every fixture has: name, role, clients. Each one's password is "NAME password".
const USERS: &[(&str, UserRole, &str)] = &[
    ("op", UserRole::Operator, "all"),
    ("limited", UserRole::Operator, "2,3"),
    ("viewer", UserRole::Viewer, "all"),
];

fn password(name: &str) -> String {
    format!("{name} password")
}

/// A token of a login of `name`, stored as a login through `POST /api/login` would.
fn login_token(storage: &mut dyn Storage, name: &str, expires_ms: i64) -> String {
    let token = users::new_token().unwrap();
    storage
        .insert_login(&users::token_hash(&token), name, now_ms(), expires_ms)
        .unwrap();
    token
}

fn fixture_with(tiles: Option<crate::backend::map::Tiles>) -> Fixture {
    let city = City::default();
    let mut storage = crate::backend::open("sqlite::memory:").unwrap();
    let times = fill(storage.as_mut(), &city, now_ms());
    for &(name, role, clients) in USERS {
        let user = UserRecord {
            name: name.into(),
            role,
            clients: clients.parse().unwrap(),
        };
        users::add_user(storage.as_mut(), &user, &password(name), 0).unwrap();
    }
    let token = login_token(storage.as_mut(), "op", now_ms() + 3_600_000);
    let storage = Arc::new(Mutex::new(storage));
    let (tx, commands) = mpsc::channel(16);
    let (updates, _) = broadcast::channel(16);
    let (raw, shared) = router_and_state(WebState {
        storage: storage.clone(),
        commands: tx,
        command_updates: updates.clone(),
        geofence_events: broadcast::channel(16).0,
        city,
        tiles,
        online_window_ms: WINDOW_MS,
        secure_cookies: false,
        metrics: Default::default(),
    });
    let app = raw.clone().layer(axum::middleware::map_request(move |req| {
        let token = token.clone();
        async move { with_token(req, &token) }
    }));
    Fixture {
        app,
        raw,
        storage,
        commands,
        updates,
        times,
        shared,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

/// `req` with `Authorization: Bearer token`, unless it carries a token already.
fn with_token(mut req: Request<Body>, token: &str) -> Request<Body> {
    let h = req.headers_mut();
    if !h.contains_key(header::AUTHORIZATION) && !h.contains_key(header::COOKIE) {
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    req
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    call_raw(app, method, uri, &[], body).await
}

/// A request to `app` with `headers`; the status, headers and body.
async fn call_raw(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(header::HeaderName, String)],
    body: &str,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, bytes)
}

async fn get_json(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, headers, body) = call(app, Method::GET, uri, "").await;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.contains("json"), "{uri}: content type {ct:?}");
    (status, serde_json::from_slice(&body).unwrap())
}

/// Asserts a JSON error with `status` whose message contains `needle`.
async fn expect_error(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
    status: StatusCode,
    needle: &str,
) {
    let (got, _, bytes) = call(app, method, uri, body).await;
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{uri}: not JSON: {:?}", String::from_utf8_lossy(&bytes)));
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{uri}: no error in {v}"));
    assert_eq!(got, status, "{uri}: {msg}");
    assert!(msg.contains(needle), "{uri}: {msg:?} lacks {needle:?}");
}

#[tokio::test]
async fn healthz_answers_when_storage_does() {
    let f = fixture();
    let (status, v) = get_json(&f.app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn clients_list_last_fix_online_state_and_link_figures() {
    let f = fixture();
    let city = City::default();
    let (status, v) = get_json(&f.app, "/api/clients").await;
    assert_eq!(status, StatusCode::OK);
    let list = v.as_array().unwrap();
    let ids: Vec<u64> = list.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let c1 = &list[0];
    assert_eq!(c1["online"], true);
    assert_eq!(c1["tier2"], 11);
    assert_eq!(c1["tier2_addr"], "127.0.0.1:7101");
    assert_eq!(c1["last_frame"], "5");
    let want = city_fix(&city, 1000.0, 0.0);
    assert!((c1["fix"]["lat"].as_f64().unwrap() - want.lat).abs() < 1e-9);
    assert!((c1["fix"]["lon"].as_f64().unwrap() - want.lon).abs() < 1e-9);
    assert_eq!(c1["fix"]["received_ms"], f.times[4]);
    assert_eq!(c1["link"]["segment_size"], 550);
    assert_eq!(c1["link"]["loss"], 0.025);
    assert_eq!(c1["link"]["latency_ms"], 12.5);
    assert_eq!(list[1]["online"], false, "last seen a minute ago");
    assert_eq!(list[1]["last_frame"], "7");
    assert_eq!(list[2]["fix"], Value::Null);
    assert_eq!(list[2]["link"], Value::Null);

    let (status, one) = get_json(&f.app, "/api/clients/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], 2);
    assert_eq!(one["commands"], json!([]));
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/99",
        "",
        StatusCode::NOT_FOUND,
        "no client 99",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/abc",
        "",
        StatusCode::BAD_REQUEST,
        "client id",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/-1",
        "",
        StatusCode::BAD_REQUEST,
        "client id",
    )
    .await;
}

#[tokio::test]
async fn frames_are_served_as_the_stored_jpeg() {
    let f = fixture();
    let stored = f.storage.lock().unwrap().frame(1, 3).unwrap().unwrap();
    let (status, headers, body) = call(&f.app, Method::GET, "/api/clients/1/frames/3", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(headers["x-livecam-frame"], "3");
    assert_eq!(body, stored.jpeg);
    assert_eq!(&body[..2], &[0xff, 0xd8]);

    let (status, headers, body) =
        call(&f.app, Method::GET, "/api/clients/1/frame/latest", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-livecam-frame"], "5");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        body,
        f.storage.lock().unwrap().frame(1, 5).unwrap().unwrap().jpeg
    );

    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/1/frames/6",
        "",
        StatusCode::NOT_FOUND,
        "no frame 6",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/3/frame/latest",
        "",
        StatusCode::NOT_FOUND,
        "no frame",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/1/frames/x",
        "",
        StatusCode::BAD_REQUEST,
        "frame id",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/1/frames/18446744073709551616",
        "",
        StatusCode::BAD_REQUEST,
        "frame id",
    )
    .await;
    // Frame ids are 64-bit: one past 2^32 is a fine id that is not stored.
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/1/frames/99999999999",
        "",
        StatusCode::NOT_FOUND,
        "no frame 99999999999",
    )
    .await;
}

#[tokio::test]
async fn track_and_frame_history_follow_the_range() {
    let f = fixture();
    let t = &f.times;
    let (status, v) = get_json(
        &f.app,
        &format!("/api/clients/1/track?from={}&to={}", t[1], t[3]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    let times: Vec<i64> = points
        .iter()
        .map(|p| p["received_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(times, t[1..=3].to_vec());
    // Driving east: longitude grows.
    assert!(points[0]["lon"].as_f64() < points[2]["lon"].as_f64());

    let (_, v) = get_json(
        &f.app,
        &format!("/api/clients/1/frames?from={}&to={}&limit=2", t[0], t[4]),
    )
    .await;
    let frames = v["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0]["frame"], "1");
    assert_eq!(frames[1]["frame"], "2");
    assert!(
        frames[0].get("jpeg").is_none(),
        "history lists index rows only"
    );
    assert!(frames[0]["jpeg_len"].as_u64().unwrap() > 1000);

    // Without a range: the last ten minutes.
    let (_, v) = get_json(&f.app, "/api/clients/1/frames").await;
    assert_eq!(v["frames"].as_array().unwrap().len(), 5);
    let (_, v) = get_json(&f.app, "/api/clients/99/track").await;
    assert_eq!(v["points"], json!([]));

    for (uri, needle) in [
        (
            format!("/api/clients/1/track?from={}&to={}", t[3], t[1]),
            "is after to",
        ),
        (
            "/api/clients/1/track?from=yesterday".to_string(),
            "from must be",
        ),
        ("/api/clients/1/frames?to=1.5".to_string(), "to must be"),
        ("/api/clients/1/frames?limit=0".to_string(), "limit must be"),
        (
            "/api/clients/1/frames?limit=100000".to_string(),
            "limit must be",
        ),
        ("/api/clients/1/track?limit=-3".to_string(), "limit must be"),
        ("/api/clients/x/track".to_string(), "client id"),
    ] {
        expect_error(
            &f.app,
            Method::GET,
            &uri,
            "",
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
}

#[tokio::test]
async fn area_lists_the_clients_inside_and_refuses_bad_boxes() {
    let f = fixture();
    let city = City::default();
    let b = crate::backend::map::city_bounds(&city);
    let mid_lat = (b.south + b.north) / 2.0;
    let mid_lon = (b.west + b.east) / 2.0;
    let ids = |v: &Value| -> Vec<u64> {
        v["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    // The southern half holds client 1, the north-east quarter client 2, the whole city both.
    let (status, v) = get_json(
        &f.app,
        &format!(
            "/api/area?south={}&west={}&north={}&east={}",
            b.south - 0.001,
            b.west - 0.001,
            mid_lat,
            b.east + 0.001
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v), vec![1]);
    let (_, v) = get_json(
        &f.app,
        &format!(
            "/api/area?south={mid_lat}&west={mid_lon}&north={}&east={}",
            b.north + 0.001,
            b.east + 0.001
        ),
    )
    .await;
    assert_eq!(ids(&v), vec![2]);
    assert_eq!(v["clients"][0]["online"], false);
    let (_, v) = get_json(
        &f.app,
        &format!(
            "/api/area?south={}&west={}&north={}&east={}",
            b.south - 0.01,
            b.west - 0.01,
            b.north + 0.01,
            b.east + 0.01
        ),
    )
    .await;
    assert_eq!(ids(&v), vec![1, 2]);
    let (_, v) = get_json(&f.app, "/api/area?south=0&west=0&north=1&east=1").await;
    assert_eq!(ids(&v), Vec::<u64>::new());

    for (q, needle) in [
        ("south=2&west=0&north=1&east=1", "is north of north"),
        ("south=0&west=0&north=1", "east is missing"),
        ("south=0&west=abc&north=1&east=1", "west must be"),
        ("south=NaN&west=0&north=1&east=1", "south must be a finite"),
        ("south=0&west=0&north=95&east=1", "north = 95"),
        ("south=0&west=-200&north=1&east=1", "west = -200"),
        ("", "south is missing"),
    ] {
        expect_error(
            &f.app,
            Method::GET,
            &format!("/api/area?{q}"),
            "",
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
}

#[tokio::test]
async fn commands_are_stored_handed_to_the_desk_and_read_back() {
    let mut f = fixture();
    let (status, _, body) = call(
        &f.app,
        Method::POST,
        "/api/clients/1/commands",
        r#"{"kind":"set_fps","milli_fps":5000}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let rec: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rec["state"], "pending");
    assert_eq!(rec["client"], 1);
    assert_eq!(rec["issued_by"], "op");
    assert_eq!(
        rec["command"],
        json!({"kind": "set_fps", "milli_fps": 5000})
    );
    let id = rec["id"].as_u64().unwrap();
    let sent = f.commands.try_recv().unwrap();
    assert_eq!(sent.id, id);
    assert_eq!(sent.state, CommandState::Pending);
    assert_eq!(sent.issued_by, "op");
    let stored = f.storage.lock().unwrap().command(id).unwrap().unwrap();
    assert_eq!(stored.issued_by, "op", "the database records who issued it");

    let (_, v) = get_json(&f.app, &format!("/api/commands/{id}")).await;
    assert_eq!(v["state"], "pending");
    // The desk's answer, as it writes it.
    f.storage
        .lock()
        .unwrap()
        .finish_command(
            id,
            &CommandState::Failed {
                reason: "camera busy".into(),
            },
            now_ms(),
        )
        .unwrap();
    let (_, v) = get_json(&f.app, &format!("/api/commands/{id}")).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["reason"], "camera busy");
    let (_, v) = get_json(&f.app, "/api/clients/1/commands").await;
    assert_eq!(v[0]["id"], id);
    let (_, v) = get_json(&f.app, "/api/clients/1").await;
    assert_eq!(v["commands"][0]["id"], id);

    for body in [
        r#"{"kind":"snapshot"}"#,
        r#"{"kind":"set_resolution","width":640,"height":480}"#,
        r#"{"kind":"set_quality","quality":60}"#,
        r#"{"kind":"switch_tier1","addr":"127.0.0.1:7000"}"#,
        r#"{"kind":"start"}"#,
        r#"{"kind":"stop"}"#,
    ] {
        let (status, _, _) = call(&f.app, Method::POST, "/api/clients/2/commands", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(f.commands.try_recv().unwrap().client, 2);
    }

    for (body, needle) in [
        ("{not json", "command body"),
        ("", "command body"),
        (r#"{"kind":"fly"}"#, "unknown variant `fly`"),
        (r#"{"kind":"set_fps"}"#, "missing field `milli_fps`"),
        (r#"{"kind":"set_fps","milli_fps":-5}"#, "command body"),
        (r#"{"kind":"set_fps","milli_fps":0}"#, "milli_fps must be"),
        (
            r#"{"kind":"set_quality","quality":0}"#,
            "quality must be 1..=100",
        ),
        (
            r#"{"kind":"set_quality","quality":101}"#,
            "quality must be 1..=100",
        ),
        (
            r#"{"kind":"set_resolution","width":0,"height":480}"#,
            "resolution must be",
        ),
        (
            r#"{"kind":"switch_tier1","addr":"nowhere"}"#,
            "command body",
        ),
        (
            r#"{"kind":"switch_tier1","addr":"0.0.0.0:7000"}"#,
            "not one a client can reach",
        ),
    ] {
        expect_error(
            &f.app,
            Method::POST,
            "/api/clients/1/commands",
            body,
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
    expect_error(
        &f.app,
        Method::POST,
        "/api/clients/99/commands",
        r#"{"kind":"stop"}"#,
        StatusCode::NOT_FOUND,
        "no client 99",
    )
    .await;
    expect_error(
        &f.app,
        Method::POST,
        "/api/clients/z/commands",
        r#"{"kind":"stop"}"#,
        StatusCode::BAD_REQUEST,
        "client id",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/commands/123456",
        "",
        StatusCode::NOT_FOUND,
        "no command 123456",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/api/commands/x",
        "",
        StatusCode::BAD_REQUEST,
        "command id",
    )
    .await;
    assert!(
        f.commands.try_recv().is_err(),
        "refused commands never reach the desk"
    );
}

#[tokio::test]
async fn a_command_with_no_desk_fails_with_a_reason() {
    let f = fixture();
    let mut updates = f.updates.subscribe();
    drop(f.commands);
    let (status, _, body) = call(
        &f.app,
        Method::POST,
        "/api/clients/1/commands",
        r#"{"kind":"snapshot"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "command desk is not running");
    assert_eq!(v["command"]["state"], "failed");
    let id = v["command"]["id"].as_u64().unwrap();
    let stored = f.storage.lock().unwrap().command(id).unwrap().unwrap();
    assert_eq!(
        stored.state,
        CommandState::Failed {
            reason: "command desk is not running".into()
        }
    );
    assert_eq!(updates.try_recv().unwrap().id, id);
}

#[tokio::test]
async fn map_routes_serve_the_city_and_tiles_when_configured() {
    let f = fixture();
    let (status, headers, body) = call(&f.app, Method::GET, "/api/map/city.geojson", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/geo+json");
    let g: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(g["type"], "FeatureCollection");
    assert_eq!(g["features"].as_array().unwrap().len(), 24);
    let (_, info) = get_json(&f.app, "/api/map").await;
    assert_eq!(info["tiles"], Value::Null);
    assert_eq!(info["city"]["streets"], 12);
    let (_, _, body) = call(&f.app, Method::GET, "/api/map/clients.geojson", "").await;
    let g: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        g["features"].as_array().unwrap().len(),
        2,
        "clients 1 and 2 have fixes"
    );
    expect_error(
        &f.app,
        Method::GET,
        "/tiles/1/0/0.png",
        "",
        StatusCode::NOT_FOUND,
        "no tile file",
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mbtiles");
    let png = b"\x89PNG\r\n\x1a\ntile 15";
    crate::backend::map::tests::write_mbtiles(&path, 15, 29105, 12903, png);
    let f = fixture_with(Some(Tiles::MbTiles(path)));
    let (_, info) = get_json(&f.app, "/api/map").await;
    assert_eq!(info["tiles"]["url"], "/tiles/{z}/{x}/{y}.png");
    let (status, headers, body) = call(&f.app, Method::GET, "/tiles/15/29105/12903.png", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(body, png);
    expect_error(
        &f.app,
        Method::GET,
        "/tiles/15/29105/12904.png",
        "",
        StatusCode::NOT_FOUND,
        "no tile 15/29105/12904",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/tiles/a/0/0.png",
        "",
        StatusCode::BAD_REQUEST,
        "zoom",
    )
    .await;
    expect_error(
        &f.app,
        Method::GET,
        "/tiles/1/0/b.png",
        "",
        StatusCode::BAD_REQUEST,
        "y must be",
    )
    .await;

    let bad = dir.path().join("bad.mbtiles");
    std::fs::write(&bad, b"this is not a database").unwrap();
    let f = fixture_with(Some(Tiles::MbTiles(bad)));
    expect_error(
        &f.app,
        Method::GET,
        "/tiles/0/0/0.png",
        "",
        StatusCode::INTERNAL_SERVER_ERROR,
        "bad.mbtiles",
    )
    .await;
}

#[tokio::test]
async fn a_tile_url_goes_to_the_browser_with_its_attribution_and_is_not_served_here() {
    let url = TileUrl::new(
        "https://tile.example.org/{z}/{x}/{y}.png",
        "(c) Example contributors",
    )
    .unwrap();
    let f = fixture_with(Some(Tiles::Url(url)));
    let (_, info) = get_json(&f.app, "/api/map").await;
    assert_eq!(
        info["tiles"],
        serde_json::json!({
            "url": "https://tile.example.org/{z}/{x}/{y}.png",
            "attribution": "(c) Example contributors",
        })
    );
    expect_error(
        &f.app,
        Method::GET,
        "/tiles/1/0/0.png",
        "",
        StatusCode::NOT_FOUND,
        "no tile file",
    )
    .await;
}

#[tokio::test]
async fn every_asset_is_bundled_and_unknown_paths_are_json_errors() {
    let f = fixture();
    for &(route, content_type, bytes) in super::assets::ASSETS {
        let (status, headers, body) = call(&f.app, Method::GET, route, "").await;
        assert_eq!(status, StatusCode::OK, "{route}");
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{route}");
        assert_eq!(body, bytes, "{route}");
        assert!(!body.is_empty(), "{route}");
    }
    let (_, _, html) = call(&f.app, Method::GET, "/", "").await;
    let html = String::from_utf8(html).unwrap();
    // Everything the page loads is served here: no CDN.
    for src in [
        "/vendor/leaflet/leaflet.js",
        "/vendor/leaflet/leaflet.css",
        "/app.js",
        "/app.css",
    ] {
        assert!(html.contains(src), "{src}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    let (_, _, js) = call(&f.app, Method::GET, "/app.js", "").await;
    assert!(!String::from_utf8(js).unwrap().contains("https://"));
    expect_error(
        &f.app,
        Method::GET,
        "/nowhere",
        "",
        StatusCode::NOT_FOUND,
        "no such path: /nowhere",
    )
    .await;
    expect_error(
        &f.app,
        Method::DELETE,
        "/api/clients",
        "",
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
    )
    .await;
}

#[tokio::test]
async fn hostile_requests_get_client_errors_not_failures() {
    let f = fixture();
    for uri in [
        "/api/clients/%ff",
        "/api/clients/1%2F2/track",
        "/api/clients/4294967296",
        "/api/area?south=%zz",
        "/api/area?south=1e400&west=0&north=1&east=1",
        "/api/clients/1/track?from=-9223372036854775808&to=9223372036854775807",
        "/api/clients/1/frames?from=9223372036854775807",
        "/tiles/99/0/0.png",
        "/tiles/4294967295/4294967295/4294967295",
        "/api/commands/-1",
        "/api/live",
    ] {
        let (status, _, _) = call(&f.app, Method::GET, uri, "").await;
        assert!(
            status.is_client_error() || status.is_success(),
            "{uri}: {status}"
        );
    }
    let huge = format!(r#"{{"kind":"snapshot","pad":"{}"}}"#, "x".repeat(100_000));
    let (status, _, _) = call(&f.app, Method::POST, "/api/clients/1/commands", &huge).await;
    assert!(status.is_client_error() || status.is_success(), "{status}");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `app` on a loopback port of its own, for as long as the test runs; returns the port.
async fn serve(app: &Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Serves `app` and opens its live socket (`/api/live`).
async fn open_live(app: &Router) -> Ws {
    let port = serve(app).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/live"))
        .await
        .unwrap();
    ws
}

/// The next JSON text message, within 10 s.
async fn next(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The next binary message (a live video frame), within 10 s: its JSON header and JPEG.
async fn next_frame(ws: &mut Ws) -> (Value, Vec<u8>) {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Binary(b) = msg {
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let header = serde_json::from_slice(&b[4..4 + n]).unwrap();
            return (header, b[4 + n..].to_vec());
        }
    }
}

#[tokio::test]
async fn live_socket_streams_the_frames_of_watched_clients_as_they_are_stored() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let f = fixture();
    let mut ws = open_live(&f.app).await;
    assert_eq!(next(&mut ws).await["type"], "hello");
    // Refused requests are answered, and the socket goes on.
    for bad in [
        "not json",
        r#"{"type":"shout"}"#,
        r#"{"type":"watch","clients":[-3]}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        loop {
            let m = next(&mut ws).await;
            if m["type"] == "error" {
                break;
            }
        }
    }
    ws.send(Message::Text(r#"{"type":"watch","clients":[1]}"#.into()))
        .await
        .unwrap();
    loop {
        let m = next(&mut ws).await;
        if m["type"] == "watching" {
            assert_eq!(m["clients"], json!([1]));
            break;
        }
    }
    // Client 1's newest stored frame at once.
    let (header, jpeg) = next_frame(&mut ws).await;
    assert_eq!(
        (header["client"].clone(), header["frame"].clone()),
        (json!(1), json!("5"))
    );
    let stored = f.storage.lock().unwrap().frame(1, 5).unwrap().unwrap();
    assert_eq!(jpeg, stored.jpeg);
    assert_eq!(header["received_ms"], stored.received_ms);
    // Then each frame as it is stored, in order; another client's frames are not sent.
    let now = now_ms();
    for (client, frame) in [(1u32, 6u64), (3, 9), (1, 7)] {
        f.storage
            .lock()
            .unwrap()
            .insert_frames(&[FrameRecord {
                client,
                frame,
                tier2: 11,
                capture_ms: now,
                received_ms: now + frame as i64,
                fix: None,
                segment_size: 700,
                jpeg: vec![0xff, 0xd8, frame as u8, 0xd9],
            }])
            .unwrap();
    }
    for want in ["6", "7"] {
        let (header, jpeg) = next_frame(&mut ws).await;
        assert_eq!(header["client"], 1);
        assert_eq!(header["frame"], want);
        assert_eq!(header["segment_size"], 700);
        assert_eq!(jpeg[2].to_string(), want);
    }
    // Unwatching stops the video and, with no socket left watching, the poller.
    ws.send(Message::Text(r#"{"type":"watch","clients":[]}"#.into()))
        .await
        .unwrap();
    loop {
        let m = next(&mut ws).await;
        if m["type"] == "watching" {
            assert_eq!(m["clients"], json!([]));
            break;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !f.shared.video.clients().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the poller did not stop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn mjpeg_streams_the_newest_picture_then_each_stored_frame() {
    let f = fixture();
    let res = f
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/clients/1/video.mjpeg")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "multipart/x-mixed-replace; boundary=livecamframe"
    );
    let mut body = res.into_body();
    let mut next_part = async || -> Vec<u8> {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("a part within 10 s")
            .unwrap()
            .unwrap();
        frame.into_data().unwrap().to_vec()
    };
    let part = next_part().await;
    let stored = f.storage.lock().unwrap().frame(1, 5).unwrap().unwrap();
    let head = format!(
        "--livecamframe\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Livecam-Frame: 5\r\n\r\n",
        stored.jpeg.len()
    );
    assert!(part.starts_with(head.as_bytes()));
    assert_eq!(&part[head.len()..part.len() - 2], &stored.jpeg[..]);
    let now = now_ms();
    f.storage
        .lock()
        .unwrap()
        .insert_frames(&[FrameRecord {
            client: 1,
            frame: 6,
            tier2: 11,
            capture_ms: now,
            received_ms: now + 1,
            fix: None,
            segment_size: 700,
            jpeg: vec![0xff, 0xd8, 6, 0xd9],
        }])
        .unwrap();
    let part = next_part().await;
    assert!(
        part.ends_with(&[0xff, 0xd8, 6, 0xd9, b'\r', b'\n']),
        "{part:?}"
    );
    expect_error(
        &f.app,
        Method::GET,
        "/api/clients/x/video.mjpeg",
        "",
        StatusCode::BAD_REQUEST,
        "client id",
    )
    .await;
}

#[tokio::test]
async fn live_socket_pushes_changes_and_command_updates() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let f = fixture();
    let mut ws = open_live(&f.app).await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["online_window_ms"], WINDOW_MS);
    let full = next(&mut ws).await;
    assert_eq!(full["type"], "clients");
    assert_eq!(full["full"], true);
    assert_eq!(full["clients"].as_array().unwrap().len(), 3);

    // A new frame of client 1 moves it; only client 1 is sent again.
    let city = City::default();
    let now = now_ms();
    f.storage
        .lock()
        .unwrap()
        .insert_frames(&[FrameRecord {
            client: 1,
            frame: 6,
            tier2: 11,
            capture_ms: now,
            received_ms: now,
            fix: Some(city_fix(&city, 1200.0, 0.0)),
            segment_size: 500,
            jpeg: vec![0xff, 0xd8, 0xff, 0xd9],
        }])
        .unwrap();
    let diff = next(&mut ws).await;
    assert_eq!(diff["type"], "clients");
    assert_eq!(diff["full"], false);
    let changed = diff["clients"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{diff}");
    assert_eq!(changed[0]["id"], 1);
    assert_eq!(changed[0]["last_frame"], "6");

    // The desk's update reaches the socket.
    let rec = f
        .storage
        .lock()
        .unwrap()
        .insert_command(1, crate::proto::wire::Command::Snapshot, "", now)
        .unwrap();
    f.storage
        .lock()
        .unwrap()
        .finish_command(rec.id, &CommandState::Acked, now)
        .unwrap();
    let acked = f.storage.lock().unwrap().command(rec.id).unwrap().unwrap();
    f.updates.send(acked).unwrap();
    let update = loop {
        let m = next(&mut ws).await;
        if m["type"] == "command" {
            break m;
        }
    };
    assert_eq!(update["command"]["id"], rec.id);
    assert_eq!(update["command"]["state"], "acked");
    ws.send(Message::Close(None)).await.unwrap();
}

/// A request to `app` with `headers`; the status, headers and JSON body (Null when none).
async fn call_with(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(header::HeaderName, String)],
    body: &str,
) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, bytes) = call_raw(app, method, uri, headers, body).await;
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn bearer(token: &str) -> Vec<(header::HeaderName, String)> {
    vec![(header::AUTHORIZATION, format!("Bearer {token}"))]
}

/// `POST /api/login` as `name`; the status, headers and body.
async fn login(app: &Router, name: &str, password: &str) -> (StatusCode, HeaderMap, Value) {
    let body = json!({"name": name, "password": password}).to_string();
    call_with(app, Method::POST, "/api/login", &[], &body).await
}

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/me"),
    ("GET", "/api/clients"),
    ("GET", "/api/clients/1"),
    ("GET", "/api/clients/1/frame/latest"),
    ("GET", "/api/clients/1/frames/3"),
    ("GET", "/api/clients/1/frames"),
    ("GET", "/api/clients/1/track"),
    ("GET", "/api/clients/1/commands"),
    ("POST", "/api/clients/1/commands"),
    ("GET", "/api/commands/1"),
    ("GET", "/api/area?south=0&west=0&north=1&east=1"),
    ("GET", "/api/map"),
    ("GET", "/api/map/city.geojson"),
    ("GET", "/api/map/clients.geojson"),
    ("GET", "/api/live"),
    ("GET", "/api/groups"),
    ("POST", "/api/groups"),
    ("DELETE", "/api/groups/1"),
    ("GET", "/api/geofences"),
    ("POST", "/api/geofences"),
    ("DELETE", "/api/geofences/1"),
    ("GET", "/api/geofences/events"),
    ("GET", "/api/clients/1/export.zip"),
    ("GET", "/api/clients/1/video.mjpeg"),
];

#[tokio::test]
async fn every_api_route_needs_a_valid_unexpired_token() {
    let f = fixture();
    let expired = login_token(f.storage.lock().unwrap().as_mut(), "op", now_ms() - 1);
    let wrong = users::new_token().unwrap();
    for creds in [
        vec![],
        bearer(&wrong),
        bearer(&expired),
        bearer(""),
        vec![(header::COOKIE, format!("livecam_session={wrong}"))],
        vec![(header::AUTHORIZATION, "Basic b3A6b3AgcGFzc3dvcmQ=".into())],
    ] {
        for &(method, uri) in PROTECTED {
            let method: Method = method.parse().unwrap();
            let (status, headers, v) =
                call_with(&f.raw, method, uri, &creds, r#"{"kind":"stop"}"#).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} with {creds:?}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer", "{uri}");
            assert!(
                v["error"].as_str().unwrap().contains("login required"),
                "{uri}: {v}"
            );
        }
    }
    // Nothing was done on the way.
    assert!(f
        .storage
        .lock()
        .unwrap()
        .commands(1, 10)
        .unwrap()
        .is_empty());
    // The page, its assets, the health check and tiles are for anyone.
    for uri in ["/", "/app.js", "/app.css", "/healthz"] {
        let (status, _, _) = call(&f.raw, Method::GET, uri, "").await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    let (status, _, _) = call(&f.raw, Method::GET, "/tiles/1/0/0.png", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no tile file, but not a 401");
    // The same token a valid login has does it.
    let (status, _, v) = call_with(&f.app, Method::GET, "/api/me", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"name": "op", "role": "operator", "clients": "all"})
    );
}

#[tokio::test]
async fn login_gives_a_bearer_token_and_cookie_and_logout_ends_it() {
    let f = fixture();
    let (status, headers, v) = login(&f.raw, "limited", &password("limited")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64, "256 bits in hex");
    assert_eq!(
        v["user"],
        json!({"name": "limited", "role": "operator", "clients": {"only": [2, 3]}})
    );
    assert!(v["expires_ms"].as_i64().unwrap() > now_ms());
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("livecam_session={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // Only the token's hash is stored.
    {
        let hash = users::token_hash(&token);
        let mut db = f.storage.lock().unwrap();
        assert!(db.login_user(&hash, now_ms()).unwrap().is_some());
        assert!(db.login_user(token.as_bytes(), now_ms()).unwrap().is_none());
    }

    let (status, _, me) = call_with(&f.raw, Method::GET, "/api/me", &bearer(&token), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "limited");
    let by_cookie = vec![(header::COOKIE, format!("other=1; livecam_session={token}"))];
    let (status, _, _) = call_with(&f.raw, Method::GET, "/api/clients", &by_cookie, "").await;
    assert_eq!(status, StatusCode::OK, "the cookie alone logs in");

    let (status, headers, _) = call_with(&f.raw, Method::POST, "/api/logout", &by_cookie, "").await;
    assert_eq!(status, StatusCode::OK);
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    for creds in [bearer(&token), by_cookie] {
        let (status, _, _) = call_with(&f.raw, Method::GET, "/api/me", &creds, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");
    }
    // The fixture's own login is another one: still valid.
    let (status, _, _) = call_with(&f.app, Method::GET, "/api/me", &[], "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_look_alike_and_are_throttled_per_name() {
    let f = fixture();
    // A wrong password and an unknown name: the same answer.
    let (s1, _, wrong) = login(&f.raw, "viewer", "not the password").await;
    let (s2, _, unknown) = login(&f.raw, "nobody", "not the password").await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "wrong name or password");
    assert!(wrong.get("token").is_none());
    let (status, _, v) = login(&f.raw, &"x".repeat(100_000), "pw").await;
    assert_eq!(
        (status, &v),
        (StatusCode::UNAUTHORIZED, &wrong),
        "an impossible name"
    );

    // Bad bodies are 400 and count for nothing.
    for body in [
        "",
        "{",
        r#"{"name":"viewer"}"#,
        r#"{"name":1,"password":"x"}"#,
    ] {
        let (status, _, v) = call_with(&f.raw, Method::POST, "/api/login", &[], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }

    // After the free failures (one spent above) the name is locked: even the right
    // password is refused, with a Retry-After. Unknown names are locked just the same.
    for name in ["viewer", "nobody"] {
        let spent = 1;
        for _ in spent..auth::FREE_FAILURES {
            let (status, _, _) = login(&f.raw, name, "still wrong").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _, _) = login(&f.raw, name, "wrong once more").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "this one locks it");
        let (status, headers, v) = login(&f.raw, name, &password(name)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{name}: {v}");
        let retry: i64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=auth::FIRST_LOCK_MS / 1000).contains(&retry), "{retry}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("too many failed logins"),
            "{v}"
        );
        assert!(v.get("token").is_none());
    }
    // Other names are not affected.
    let (status, _, v) = login(&f.raw, "op", &password("op")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn commands_are_authorised_per_user() {
    let mut f = fixture();
    let (viewer, limited) = {
        let mut db = f.storage.lock().unwrap();
        let later = now_ms() + 60_000;
        (
            login_token(db.as_mut(), "viewer", later),
            login_token(db.as_mut(), "limited", later),
        )
    };
    let body = r#"{"kind":"snapshot"}"#;
    // A viewer reads everything and commands nothing.
    let (status, _, _) =
        call_with(&f.raw, Method::GET, "/api/clients/1", &bearer(&viewer), "").await;
    assert_eq!(status, StatusCode::OK);
    for client in [1, 2] {
        let uri = format!("/api/clients/{client}/commands");
        let (status, _, v) = call_with(&f.raw, Method::POST, &uri, &bearer(&viewer), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(
            v["error"],
            "user viewer is a viewer and may not send commands"
        );
    }
    // An operator commands only the clients of their list.
    let (status, _, v) = call_with(
        &f.raw,
        Method::POST,
        "/api/clients/1/commands",
        &bearer(&limited),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "user limited may not command client 1");
    assert!(
        f.commands.try_recv().is_err(),
        "refused commands never reach the desk"
    );
    assert!(f
        .storage
        .lock()
        .unwrap()
        .commands(1, 10)
        .unwrap()
        .is_empty());

    let (status, _, v) = call_with(
        &f.raw,
        Method::POST,
        "/api/clients/2/commands",
        &bearer(&limited),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["issued_by"], "limited");
    let sent = f.commands.try_recv().unwrap();
    assert_eq!((sent.client, sent.issued_by.as_str()), (2, "limited"));
    let stored = f.storage.lock().unwrap().command(sent.id).unwrap().unwrap();
    assert_eq!(stored.issued_by, "limited");
}

#[tokio::test]
async fn the_live_socket_needs_a_login() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error as WsError;

    let f = fixture();
    let port = serve(&f.raw).await;
    let url = format!("ws://127.0.0.1:{port}/api/live");
    match tokio_tungstenite::connect_async(&url).await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), StatusCode::UNAUTHORIZED),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a socket without a login"),
    }
    let token = login_token(
        f.storage.lock().unwrap().as_mut(),
        "viewer",
        now_ms() + 60_000,
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("livecam_session={token}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        next(&mut ws).await["type"],
        "hello",
        "any logged-in user watches"
    );
}

/// `POST /api/login` as `name` from `from` (as `axum::serve` with connect info gives it).
async fn login_from(app: &Router, from: SocketAddr, name: &str, password: &str) -> StatusCode {
    let body = json!({"name": name, "password": password}).to_string();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(from));
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn a_guesser_locks_out_its_own_address_not_the_real_user() {
    let f = fixture();
    let guesser: SocketAddr = "10.6.6.6:40000".parse().unwrap();
    // Another address of the guesser's IPv6 /64 counts as the same address.
    let v6: SocketAddr = "[2001:db8:1:2::10]:40000".parse().unwrap();
    let v6_next: SocketAddr = "[2001:db8:1:2::99]:40000".parse().unwrap();
    for i in 0..=auth::FREE_FAILURES {
        assert_eq!(
            login_from(&f.raw, v6, "viewer", &format!("guess {i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(&f.raw, v6_next, "viewer", &password("viewer")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let user: SocketAddr = "10.0.0.7:50000".parse().unwrap();
    for i in 0..10 {
        let status = login_from(&f.raw, guesser, "op", &format!("guess {i}")).await;
        let want = if i <= auth::FREE_FAILURES {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "guess {i}");
    }
    // The guesser's address is locked for that name, even with the right password...
    assert_eq!(
        login_from(&f.raw, guesser, "op", &password("op")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...and the real user, elsewhere, logs in.
    assert_eq!(
        login_from(&f.raw, user, "op", &password("op")).await,
        StatusCode::OK
    );
    // One address trying many names is locked as an address.
    let sprayer: SocketAddr = "10.6.6.7:40000".parse().unwrap();
    for i in 0..=auth::ADDRESS_FREE_FAILURES {
        let status = login_from(&f.raw, sprayer, &format!("name{i}"), "x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "name{i}");
    }
    assert_eq!(
        login_from(&f.raw, sprayer, "viewer", &password("viewer")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&f.raw, user, "viewer", &password("viewer")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn password_checks_wait_outside_the_storage_lock_and_the_queue_is_bounded() {
    let f = fixture();
    // Every core's permit taken: logins queue for the hash pool.
    let held = f.shared.verifier.hold_all().await;
    let mut queued = Vec::new();
    for i in 0..auth::MAX_WAITING {
        let app = f.raw.clone();
        let from: SocketAddr = format!("10.1.{}.{}:1", i / 200, i % 200).parse().unwrap();
        queued.push(tokio::spawn(async move {
            login_from(&app, from, "op", &password("op")).await
        }));
    }
    // Let them all reach the queue.
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The API answers meanwhile: nobody holds the storage lock while waiting for a hash.
    let (status, _) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        get_json(&f.app, "/api/clients"),
    )
    .await
    .expect("the API answers while logins wait");
    assert_eq!(status, StatusCode::OK);
    // One more login than the queue holds gets 503 at once.
    let over: SocketAddr = "10.2.0.1:1".parse().unwrap();
    assert_eq!(
        login_from(&f.raw, over, "op", &password("op")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A login whose client hung up while it waited gives its place back.
    let gone = queued.pop().unwrap();
    gone.abort();
    let _ = gone.await;
    assert_eq!(
        f.shared
            .verifier
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst),
        auth::MAX_WAITING - 1
    );
    drop(held);
    for q in queued {
        assert_eq!(q.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn cookie_posts_from_another_origin_are_refused() {
    let f = fixture();
    let (status, _, v) = login(&f.raw, "op", &password("op")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let cookie = (header::COOKIE, format!("{}={token}", auth::COOKIE));
    let host = (header::HOST, "cams.example:8080".to_string());
    let command = r#"{"kind":"snapshot"}"#;
    let uri = "/api/clients/1/commands";
    let evil = (header::ORIGIN, "https://evil.example".to_string());
    let (status, _, v) = call_with(
        &f.raw,
        Method::POST,
        uri,
        &[cookie.clone(), host.clone(), evil.clone()],
        command,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cross-origin"), "{v}");
    // So is the live socket opened from another origin with the cookie.
    let (status, _, _) = call_with(
        &f.raw,
        Method::GET,
        "/api/live",
        &[
            cookie.clone(),
            host.clone(),
            (header::ORIGIN, "http://cams.example:8081".to_string()),
            (header::UPGRADE, "websocket".to_string()),
            (header::CONNECTION, "upgrade".to_string()),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A login forged from another site is refused too.
    let body = json!({"name": "op", "password": password("op")}).to_string();
    let (status, _, _) = call_with(
        &f.raw,
        Method::POST,
        "/api/login",
        &[host.clone(), evil.clone()],
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // From its own pages, or with a bearer token (no other site can send one), it is taken.
    let own = (header::ORIGIN, "http://cams.example:8080".to_string());
    let (status, _, v) = call_with(
        &f.raw,
        Method::POST,
        uri,
        &[cookie, host.clone(), own],
        command,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let mut with_bearer = bearer(&token);
    with_bearer.extend([host, evil]);
    let (status, _, v) = call_with(&f.raw, Method::POST, uri, &with_bearer, command).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
}

#[tokio::test]
async fn a_live_socket_closes_when_its_login_ends() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let f = fixture();
    let (_, _, v) = login(&f.raw, "viewer", &password("viewer")).await;
    let token = v["token"].as_str().unwrap().to_string();
    let port = serve(&f.raw).await;
    let mut req = format!("ws://127.0.0.1:{port}/api/live")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "hello");
    let (status, _, _) = call_with(&f.raw, Method::POST, "/api/logout", &bearer(&token), "").await;
    assert_eq!(status, StatusCode::OK);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the socket closes after logout");
    assert_eq!(closed, Some(4401));
}

/// The value of the metrics line starting with `start`, if any.
fn metric(shared: &AppState, start: &str) -> Option<f64> {
    let text = shared.state.metrics.encode();
    text.lines()
        .find(|l| l.starts_with(start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn requests_and_live_sockets_are_counted_in_the_metrics() {
    let f = fixture();
    let (status, _) = get_json(&f.app, "/api/clients/1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&f.app, Method::GET, "/api/clients/999999", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&f.raw, Method::GET, "/api/clients", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&f.app, Method::GET, "/no/such/page/4711", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let count = |route: &str, status: &str| {
        metric(
            &f.shared,
            &format!(
                "livecam_http_requests_total{{route=\"{route}\",method=\"GET\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(count("/api/clients/{id}", "2xx"), Some(1.0));
    assert_eq!(count("/api/clients/{id}", "4xx"), Some(1.0));
    assert_eq!(count("/api/clients", "4xx"), Some(1.0));
    assert_eq!(count("unmatched", "4xx"), Some(1.0));
    // The metrics are not on the web server (see `crate::metrics`).
    let (status, _, _) = call(&f.app, Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // No id or path of a request becomes a label: every route label is a template.
    let text = f.shared.state.metrics.encode();
    let routes: std::collections::BTreeSet<&str> = text
        .split("route=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        routes.into_iter().collect::<Vec<_>>(),
        ["/api/clients", "/api/clients/{id}", "unmatched"],
        "{text}"
    );

    let mut ws = open_live(&f.app).await;
    assert_eq!(next(&mut ws).await["type"], "hello");
    assert_eq!(metric(&f.shared, "livecam_live_sockets "), Some(1.0));
    ws.close(None).await.unwrap();
    let mut open = None;
    for _ in 0..100 {
        open = metric(&f.shared, "livecam_live_sockets ");
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(open, Some(0.0), "the gauge falls when the socket closes");
}

#[path = "fence_tests.rs"]
mod fences;
