//! Groups, geofences, their events (stored, pushed, listed) and the history export, through
//! the router as the other tests use it (a submodule of `tests`, for its fixture).

use std::io::Read;

use super::*;
use crate::backend::fence_watch;

/// The router's answer to `uri` as the user `name` (a fresh login of theirs).
async fn as_user(
    f: &Fixture,
    name: &str,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, Value) {
    let token = login_token(f.storage.lock().unwrap().as_mut(), name, now_ms() + 60_000);
    let (status, _, v) = call_with(&f.raw, method, uri, &bearer(&token), body).await;
    (status, v)
}

/// A square of `half` metres around city point (x, y), as `[[lat, lon], ...]`.
fn square(city: &City, x: f64, y: f64, half: f64) -> Value {
    let corners = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)];
    Value::Array(
        corners
            .iter()
            .map(|(dx, dy)| {
                let (lat, lon) = city.to_lat_lon(x + dx * half, y + dy * half);
                json!([lat, lon])
            })
            .collect(),
    )
}

#[tokio::test]
async fn groups_and_geofences_are_created_listed_and_deleted_by_operators() {
    let f = fixture();
    let city = City::default();
    let (status, v) = get_json(&f.app, "/api/groups").await;
    assert_eq!((status, v), (StatusCode::OK, json!([])));

    let (status, _, group) = call_with(
        &f.app,
        Method::POST,
        "/api/groups",
        &[],
        r#"{"name": "east side", "members": [2, 1, 2]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["name"], "east side");
    assert_eq!(group["members"], json!([1, 2]), "sorted, once each");
    assert_eq!(group["created_by"], "op");
    let gid = group["id"].as_u64().unwrap();
    let (_, list) = get_json(&f.app, "/api/groups").await;
    assert_eq!(list, json!([group]));

    // A viewer reads but may not change; an operator limited to 2 and 3 groups only those.
    let (status, v) = as_user(&f, "viewer", Method::GET, "/api/groups", "").await;
    assert_eq!((status, v), (StatusCode::OK, json!([group])));
    let body = r#"{"name": "mine", "members": [2]}"#;
    let (status, v) = as_user(&f, "viewer", Method::POST, "/api/groups", body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = as_user(
        &f,
        "limited",
        Method::POST,
        "/api/groups",
        r#"{"name": "x", "members": [1, 2]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("client 1"), "{v}");
    let (status, mine) = as_user(&f, "limited", Method::POST, "/api/groups", body).await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let uri = format!("/api/groups/{gid}");
    let (status, _) = as_user(&f, "limited", Method::DELETE, &uri, "").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "not all of group {gid} is theirs"
    );

    // Fences: any operator; one tied to a group keeps the group.
    let fence = json!({"name": "depot", "group": gid, "points": square(&city, 600.0, 0.0, 50.0)});
    let (status, _, created) = call_with(
        &f.app,
        Method::POST,
        "/api/geofences",
        &[],
        &fence.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["group"], gid);
    assert_eq!(created["points"], fence["points"]);
    let fid = created["id"].as_u64().unwrap();
    let (status, v) = as_user(
        &f,
        "viewer",
        Method::POST,
        "/api/geofences",
        &fence.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (_, list) = get_json(&f.app, "/api/geofences").await;
    assert_eq!(list, json!([created]));
    expect_error(
        &f.app,
        Method::DELETE,
        &uri,
        "",
        StatusCode::CONFLICT,
        "geofences",
    )
    .await;
    let fence_uri = format!("/api/geofences/{fid}");
    let (status, v) = as_user(&f, "viewer", Method::DELETE, &fence_uri, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, _, _) = call(&f.app, Method::DELETE, &fence_uri, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect_error(
        &f.app,
        Method::DELETE,
        &fence_uri,
        "",
        StatusCode::NOT_FOUND,
        "no geofence",
    )
    .await;
    let (status, _, _) = call(&f.app, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = get_json(&f.app, "/api/groups").await;
    assert_eq!(list, json!([mine]));
    expect_error(
        &f.app,
        Method::DELETE,
        &uri,
        "",
        StatusCode::NOT_FOUND,
        "no group",
    )
    .await;
}

#[tokio::test]
async fn bad_groups_and_fences_are_400s_naming_the_field() {
    let f = fixture();
    let ok_points = json!([[48.0, 11.0], [48.0, 11.1], [48.1, 11.1]]);
    let long = "x".repeat(101);
    for (body, needle) in [
        ("[1, 2]".to_string(), "body: must be a JSON object"),
        ("{".to_string(), "body: not JSON"),
        (r#"{"members": [1]}"#.to_string(), "name: missing"),
        (
            r#"{"name": 5, "members": [1]}"#.to_string(),
            "name: must be a string",
        ),
        (
            json!({"name": long, "members": [1]}).to_string(),
            "name: must be at most 100",
        ),
        (
            r#"{"name": " ", "members": [1]}"#.to_string(),
            "name: must not be empty",
        ),
        (
            r#"{"name": "a", "members": []}"#.to_string(),
            "members: must name at least one",
        ),
        (
            r#"{"name": "a", "members": [1, "2"]}"#.to_string(),
            "members[1]: must be a client id",
        ),
        (
            r#"{"name": "a", "members": [4294967296]}"#.to_string(),
            "members[0]",
        ),
        (
            r#"{"name": "a", "members": 1}"#.to_string(),
            "members: must be an array",
        ),
        (
            r#"{"name": "a", "members": [1], "x": 1}"#.to_string(),
            "x: unknown field",
        ),
        (
            json!({"name": "a", "members": (0..1001).collect::<Vec<u32>>()}).to_string(),
            "members: at most 1000",
        ),
    ] {
        expect_error(
            &f.app,
            Method::POST,
            "/api/groups",
            &body,
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
    let many: Vec<Value> = (0..101)
        .map(|i| json!([0.0, f64::from(i) * 0.01]))
        .collect();
    for (body, needle) in [
        (json!({"name": "a"}), "points: missing"),
        (
            json!({"name": "a", "points": "x"}),
            "points: must be an array",
        ),
        (
            json!({"name": "a", "points": [[1, 2], [3, 4]]}),
            "points: a fence needs at least 3",
        ),
        (
            json!({"name": "a", "points": many}),
            "points: a fence has at most 100",
        ),
        (
            json!({"name": "a", "points": [[1, 2], [3], [5, 6]]}),
            "points[1]: must be a [lat, lon]",
        ),
        (
            json!({"name": "a", "points": [[1, 2], [3, 4], ["5", 6]]}),
            "points[2]: lat and lon must be numbers",
        ),
        (
            json!({"name": "a", "points": [[1, 2], [95, 4], [5, 6]]}),
            "points[1]: latitude",
        ),
        (
            json!({"name": "a", "points": [[1, 2], [3, 181], [5, 6]]}),
            "points[1]: longitude",
        ),
        (
            json!({"name": "a", "points": [[0, 0], [1, 1], [2, 2]]}),
            "no area",
        ),
        (
            json!({"name": "a", "group": "g", "points": ok_points}),
            "group: must be a group id",
        ),
        (
            json!({"name": "a", "group": 77, "points": ok_points}),
            "group: no group 77",
        ),
        (json!({"points": ok_points}), "name: missing"),
    ] {
        expect_error(
            &f.app,
            Method::POST,
            "/api/geofences",
            &body.to_string(),
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
    for uri in ["/api/groups/x", "/api/geofences/-1"] {
        expect_error(
            &f.app,
            Method::DELETE,
            uri,
            "",
            StatusCode::BAD_REQUEST,
            "id must be",
        )
        .await;
    }
    // Nothing was stored.
    assert!(f.storage.lock().unwrap().groups().unwrap().is_empty());
    assert!(f.storage.lock().unwrap().geofences().unwrap().is_empty());
}

#[tokio::test]
async fn geofence_events_are_stored_pushed_on_the_live_socket_and_listed() {
    let f = fixture();
    let city = City::default();
    let fence = json!({"name": "corner", "points": square(&city, 1200.0, 0.0, 50.0)});
    let (status, _, created) = call_with(
        &f.app,
        Method::POST,
        "/api/geofences",
        &[],
        &fence.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let fid = created["id"].as_u64().unwrap();

    let start = now_ms();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(fence_watch::run(
        f.storage.clone(),
        f.shared.state.geofence_events.clone(),
        f.shared.state.metrics.clone(),
        start,
        stop_rx,
    ));
    let mut ws = open_live(&f.app).await;
    assert_eq!(next(&mut ws).await["type"], "hello");
    // The watcher takes what is stored when it starts as seen: let it start first.
    tokio::time::sleep(fence_watch::POLL * 2).await;

    // Client 1 drives on east into the fence (frame 6) and out again (frame 7); client 2's
    // fix far away raises nothing.
    let frame = |client: u32, frame: u64, x: f64, at: i64| FrameRecord {
        client,
        frame,
        tier2: 11,
        capture_ms: at - 20,
        received_ms: at,
        fix: Some(city_fix(&city, x, 0.0)),
        segment_size: 500,
        jpeg: vec![0xff, 0xd8, frame as u8, 0xff, 0xd9],
    };
    let at = now_ms();
    f.storage
        .lock()
        .unwrap()
        .insert_frames(&[frame(1, 6, 1210.0, at), frame(2, 8, 3000.0, at)])
        .unwrap();
    let enter = next_geofence(&mut ws).await;
    assert_eq!(enter["kind"], "enter");
    assert_eq!(
        (enter["fence"].as_u64(), enter["client"].as_u64()),
        (Some(fid), Some(1))
    );
    assert_eq!(enter["fence_name"], "corner");
    assert_eq!(enter["frame"], "6");
    assert_eq!(enter["at_ms"], at);
    let (lat, lon) = city.to_lat_lon(1210.0, 0.0);
    assert_eq!(
        (enter["lat"].as_f64(), enter["lon"].as_f64()),
        (Some(lat), Some(lon))
    );
    let at2 = now_ms();
    f.storage
        .lock()
        .unwrap()
        .insert_frames(&[frame(1, 7, 1400.0, at2)])
        .unwrap();
    let leave = next_geofence(&mut ws).await;
    assert_eq!(
        (leave["kind"].as_str(), leave["frame"].as_str()),
        (Some("leave"), Some("7"))
    );
    // Each event raised is counted once in the metrics, by edge.
    let counted = |k| f.shared.state.metrics.geofence_events(k);
    use crate::backend::geofence::EventKind;
    assert_eq!(
        (counted(EventKind::Enter), counted(EventKind::Leave)),
        (1, 1)
    );

    let (status, v) = get_json(
        &f.app,
        &format!("/api/geofences/events?from={start}&to={}", now_ms()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["events"], json!([enter, leave]));
    let (_, v) = get_json(
        &f.app,
        &format!("/api/geofences/events?from={start}&limit=1"),
    )
    .await;
    assert_eq!(v["events"], json!([enter]));
    let (status, v) = as_user(&f, "viewer", Method::GET, "/api/geofences/events", "").await;
    assert_eq!(
        (status, v["events"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    for (uri, needle) in [
        ("/api/geofences/events?from=2&to=1", "is after to"),
        ("/api/geofences/events?limit=0", "limit must be"),
        ("/api/geofences/events?from=x", "from must be"),
    ] {
        expect_error(
            &f.app,
            Method::GET,
            uri,
            "",
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
    stop_tx.send(true).unwrap();
    watcher.await.unwrap();
}

/// The next geofence event the socket pushes.
async fn next_geofence(ws: &mut Ws) -> Value {
    loop {
        let m = next(ws).await;
        if m["type"] == "geofence" {
            return m["event"].clone();
        }
    }
}

/// The archive's files, by name.
fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a whole zip");
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        files.insert(file.name().to_string(), data);
    }
    files
}

fn csv_rows(data: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(data);
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

#[tokio::test]
async fn export_zips_the_stored_jpegs_and_fixes_of_the_range() {
    let f = fixture();
    let t = f.times.clone();
    let uri = format!("/api/clients/1/export.zip?from={}&to={}", t[1], t[3]);
    let (status, headers, body) = call(&f.app, Method::GET, &uri, "").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/zip");
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let files = unzip(&body);

    // The pictures of frames 2..=4, byte for byte, named by capture time and frame id.
    let stored: Vec<FrameRecord> = (2..=4u64)
        .map(|i| f.storage.lock().unwrap().frame(1, i).unwrap().unwrap())
        .collect();
    let jpegs: Vec<(&String, &Vec<u8>)> = files
        .iter()
        .filter(|(n, _)| n.starts_with("frames/"))
        .collect();
    assert_eq!(jpegs.len(), 3, "{:?}", files.keys());
    for (fr, (name, data)) in stored.iter().zip(&jpegs) {
        assert_eq!(
            **name,
            format!("frames/{:013}_{:020}.jpg", fr.capture_ms, fr.frame)
        );
        assert_eq!(**data, fr.jpeg, "{name}");
    }
    assert!(!files.contains_key("TRUNCATED.txt"));

    // fixes.csv: a header and the stored fixes of the range, in order.
    let track = f.storage.lock().unwrap().track(1, t[1], t[3], 100).unwrap();
    assert_eq!(track.len(), 3);
    let (header, rows) = csv_rows(&files["fixes.csv"]);
    assert_eq!(
        header,
        [
            "received_ms",
            "fix_time_ms",
            "lat",
            "lon",
            "speed_mps",
            "heading_deg"
        ]
    );
    assert_eq!(rows.len(), track.len());
    for (row, fix) in rows.iter().zip(&track) {
        assert_eq!(row[0].parse::<i64>().unwrap(), fix.received_ms);
        assert_eq!(row[1].parse::<u64>().unwrap(), fix.fix.fix_time_ms);
        assert_eq!(row[2].parse::<f64>().unwrap(), fix.fix.lat);
        assert_eq!(row[3].parse::<f64>().unwrap(), fix.fix.lon);
        assert_eq!(row[4].parse::<f64>().unwrap(), fix.fix.speed_mps);
        assert_eq!(row[5].parse::<f64>().unwrap(), fix.fix.heading_deg);
    }
    // frames.csv maps each picture to its frame and fix.
    let (header, rows) = csv_rows(&files["frames.csv"]);
    assert_eq!(header[..3], ["file", "frame", "capture_ms"]);
    assert_eq!(rows.len(), 3);
    for (row, fr) in rows.iter().zip(&stored) {
        assert!(files.contains_key(&row[0]));
        assert_eq!(row[1], fr.frame.to_string());
        assert_eq!(row[4].parse::<f64>().unwrap(), fr.fix.unwrap().lat);
    }

    // Over the limit: the first pictures and a note saying what is missing.
    let (status, _, body) = call(&f.app, Method::GET, &format!("{uri}&limit=2"), "").await;
    assert_eq!(status, StatusCode::OK);
    let files = unzip(&body);
    assert_eq!(files.keys().filter(|n| n.starts_with("frames/")).count(), 2);
    let note = String::from_utf8(files["TRUNCATED.txt"].clone()).unwrap();
    assert!(note.contains(&format!("from={}", t[2])), "{note}");

    // A viewer exports too (as they read history); a client with nothing: headers only.
    let (status, v) = as_user(&f, "viewer", Method::GET, &uri, "").await;
    assert_eq!(
        (status, v),
        (StatusCode::OK, Value::Null),
        "a zip, not JSON"
    );
    let (status, _, body) = call(&f.app, Method::GET, "/api/clients/42/export.zip", "").await;
    assert_eq!(status, StatusCode::OK);
    let files = unzip(&body);
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    assert_eq!(csv_rows(&files["fixes.csv"]).1.len(), 0);

    for (uri, needle) in [
        ("/api/clients/1/export.zip?limit=0", "limit must be"),
        (
            "/api/clients/1/export.zip?limit=10001",
            "limit must be 1..=10000",
        ),
        ("/api/clients/1/export.zip?from=5&to=4", "is after to"),
        ("/api/clients/one/export.zip", "client id"),
    ] {
        expect_error(
            &f.app,
            Method::GET,
            uri,
            "",
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
}
