//! In-process tests of every route, on real SQLite storage filled through the `Storage` trait.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tower::ServiceExt;

use super::{now_ms, router, WebState};
use crate::backend::{
    CommandRecord, CommandState, FrameRecord, LinkRecord, SessionRecord, Storage,
};
use crate::device::{City, Fix, FrameSource, SyntheticCamera, SyntheticSettings};

const WINDOW_MS: i64 = 5_000;

struct Fixture {
    app: Router,
    storage: Arc<Mutex<Box<dyn Storage>>>,
    commands: mpsc::Receiver<CommandRecord>,
    updates: broadcast::Sender<CommandRecord>,
    /// Receive time of client 1's frames 1..=5.
    times: Vec<i64>,
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
                frame: i,
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

fn fixture_with(tiles: Option<std::path::PathBuf>) -> Fixture {
    let city = City::default();
    let mut storage = crate::backend::open("sqlite::memory:").unwrap();
    let times = fill(storage.as_mut(), &city, now_ms());
    let storage = Arc::new(Mutex::new(storage));
    let (tx, commands) = mpsc::channel(16);
    let (updates, _) = broadcast::channel(16);
    let app = router(WebState {
        storage: storage.clone(),
        commands: tx,
        command_updates: updates.clone(),
        city,
        tiles,
        online_window_ms: WINDOW_MS,
    });
    Fixture {
        app,
        storage,
        commands,
        updates,
        times,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
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
    assert_eq!(c1["last_frame"], 5);
    let want = city_fix(&city, 1000.0, 0.0);
    assert!((c1["fix"]["lat"].as_f64().unwrap() - want.lat).abs() < 1e-9);
    assert!((c1["fix"]["lon"].as_f64().unwrap() - want.lon).abs() < 1e-9);
    assert_eq!(c1["fix"]["received_ms"], f.times[4]);
    assert_eq!(c1["link"]["segment_size"], 550);
    assert_eq!(c1["link"]["loss"], 0.025);
    assert_eq!(c1["link"]["latency_ms"], 12.5);
    assert_eq!(list[1]["online"], false, "last seen a minute ago");
    assert_eq!(list[1]["last_frame"], 7);
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
        "/api/clients/1/frames/99999999999",
        "",
        StatusCode::BAD_REQUEST,
        "frame id",
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
    assert_eq!(frames[0]["frame"], 1);
    assert_eq!(frames[1]["frame"], 2);
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
    assert_eq!(
        rec["command"],
        json!({"kind": "set_fps", "milli_fps": 5000})
    );
    let id = rec["id"].as_u64().unwrap();
    let sent = f.commands.try_recv().unwrap();
    assert_eq!(sent.id, id);
    assert_eq!(sent.state, CommandState::Pending);

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
    assert_eq!(info["tiles"], false);
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
    let f = fixture_with(Some(path));
    let (_, info) = get_json(&f.app, "/api/map").await;
    assert_eq!(info["tiles"], true);
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
    let f = fixture_with(Some(bad));
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

#[tokio::test]
async fn live_socket_pushes_changes_and_command_updates() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let f = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = f.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/live"))
        .await
        .unwrap();
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
    assert_eq!(changed[0]["last_frame"], 6);

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
