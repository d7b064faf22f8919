//! The whole real system over loopback, each role its own process: a tier-1, two tier-2s
//! writing to one SQLite database, the backend serving it, and two mobile clients with
//! synthetic cameras and routes. Frames reach the database intact (byte for byte what each
//! camera produced, which the clients keep a copy of), positions reach the map API, and
//! commands from the web API reach the clients through their tier-2 and come back
//! acknowledged, or failed with a reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use livecam_system::device::{City, FrameSource, SyntheticCamera, SyntheticSettings};
use serde_json::{json, Value};

mod common;
use common::roles::{kept, port, spawn, stop, write, Keys};

fn tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// The web API: base URL and the bearer token of a login.
struct Api(String, String);

impl Api {
    fn auth(&self) -> String {
        format!("Bearer {}", self.1)
    }

    /// Logs in as `name`; the token is sent with every request after.
    fn login(&mut self, name: &str, password: &str) {
        let r = ureq::post(&format!("{}/api/login", self.0))
            .send_json(json!({"name": name, "password": password}))
            .unwrap_or_else(|e| panic!("login as {name}: {e}"));
        let v: Value = r.into_json().expect("JSON");
        self.1 = v["token"].as_str().expect("a token").to_string();
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        match ureq::get(&format!("{}{path}", self.0))
            .set("Authorization", &self.auth())
            .call()
        {
            Ok(r) => r.into_json().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn get_bytes(&self, path: &str) -> Vec<u8> {
        let r = ureq::get(&format!("{}{path}", self.0))
            .set("Authorization", &self.auth())
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.content_type(), "image/jpeg", "GET {path}");
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut out).expect("read body");
        out
    }

    /// POSTs a command; the status and the JSON body.
    fn command(&self, client: u32, body: Value) -> (u16, Value) {
        let url = format!("{}/api/clients/{client}/commands", self.0);
        match ureq::post(&url)
            .set("Authorization", &self.auth())
            .send_json(body)
        {
            Ok(r) => (r.status(), r.into_json().expect("JSON")),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("POST {url}: {e}"),
        }
    }

    /// Waits until command `id` is no longer pending and returns it.
    fn settled(&self, id: u64) -> Value {
        let start = Instant::now();
        loop {
            let c = self.get(&format!("/api/commands/{id}")).expect("command");
            if c["state"] != "pending" {
                return c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "command {id} still pending: {c}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn frames_positions_and_commands_cross_the_whole_system() {
    let dir = std::env::temp_dir().join(format!("livecam-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite:{}", dir.join("livecam.db").display());
    let (t1, t2a, t2b, http) = (port(), port(), port(), tcp_port());

    // Keys for the devices and every server: sessions and the control plane are authenticated.
    let keys = Keys::make(&dir, "1-2");
    let password = write(&dir, "admin-password", "e2e admin password\n");
    let backend_cfg = write(
        &dir,
        "backend.toml",
        &format!(
            "database = \"{db}\"\nhttp = \"127.0.0.1:{http}\"\nadmin_password_file = \"{}\"\n{}",
            password.display(),
            keys.identity("backend", 1)
        ),
    );
    let backend = spawn("backend", &backend_cfg);
    let mut api = Api(format!("http://127.0.0.1:{http}"), String::new());
    let start = Instant::now();
    while ureq::get(&format!("{}/healthz", api.0)).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "backend never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        api.get("/api/clients").is_err(),
        "the API refuses a request without a login"
    );
    api.login("admin", "e2e admin password");

    let tier1 = spawn(
        "tier1",
        &write(
            &dir,
            "tier1.toml",
            &format!(
                "id = 1\nlisten = \"127.0.0.1:{t1}\"\n{}",
                keys.identity("tier1", 1)
            ),
        ),
    );
    let tier2 = |id: u32, p: u16| {
        spawn(
            "tier2",
            &write(
                &dir,
                &format!("tier2-{id}.toml"),
                &format!(
                    "id = {id}\nlisten = \"127.0.0.1:{p}\"\ntier1 = [\"127.0.0.1:{t1}\"]\ndatabase = \"{db}\"\n{}",
                    keys.tier2(id)
                ),
            ),
        )
    };
    let tier2s = [tier2(11, t2a), tier2(12, t2b)];
    std::thread::sleep(Duration::from_millis(600));
    // Client 1 films with the synthetic camera, client 2 replays a folder of pictures.
    let pictures = dir.join("pictures");
    std::fs::create_dir_all(&pictures).expect("pictures dir");
    let mut synthetic = SyntheticCamera::new(7, SyntheticSettings::default());
    for i in 0..3u64 {
        let jpeg = synthetic.capture(i, i * 100).expect("a synthetic picture");
        std::fs::write(pictures.join(format!("{i}.jpg")), jpeg).expect("write picture");
    }
    let mobile = |id: u32, camera: String| {
        let keep = dir.join(format!("kept-{id}"));
        let cfg = write(
            &dir,
            &format!("mobile-{id}.toml"),
            &format!(
                "id = {id}\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 10.0\ncamera = \"{camera}\"\nkeep_frames = \"{}\"\n{}",
                keep.display(),
                keys.mobile(id)
            ),
        );
        (spawn("mobile", &cfg), keep)
    };
    let cars = [
        mobile(1, "synthetic".into()),
        mobile(2, format!("folder:{}", pictures.display())),
    ];

    // Both clients show up on the map API, online, with a position and a stored frame.
    let start = Instant::now();
    let clients = loop {
        let clients = api.get("/api/clients").unwrap_or(Value::Null);
        let ready = clients.as_array().is_some_and(|a| {
            a.len() == 2
                && a.iter().all(|c| {
                    c["online"] == true && c["fix"]["lat"].is_f64() && c["last_frame"].is_string()
                })
        });
        if ready {
            break clients;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "clients never all showed up: {clients}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let city = City::default();
    let (south, west) = city.to_lat_lon(-100.0, -100.0);
    let (north, east) = city.to_lat_lon(
        city.block_m * f64::from(city.streets) + 100.0,
        city.block_m * f64::from(city.streets) + 100.0,
    );
    for c in clients.as_array().unwrap() {
        let (lat, lon) = (
            c["fix"]["lat"].as_f64().unwrap(),
            c["fix"]["lon"].as_f64().unwrap(),
        );
        assert!(
            (south..=north).contains(&lat) && (west..=east).contains(&lon),
            "client outside the city: {c}"
        );
    }
    let area = api
        .get(&format!(
            "/api/area?south={south}&west={west}&north={north}&east={east}"
        ))
        .expect("area");
    assert_eq!(area["clients"].as_array().map(Vec::len), Some(2), "{area}");

    // Commands: done by the client, through its tier-2, and acknowledged.
    let (status, cmd) = api.command(1, json!({"kind": "set_fps", "milli_fps": 5000}));
    assert_eq!(status, 202, "{cmd}");
    assert_eq!(cmd["state"], "pending", "{cmd}");
    let done = api.settled(cmd["id"].as_u64().expect("command id"));
    assert_eq!(done["state"], "acked", "{done}");
    assert_eq!(done["issued_by"], "admin", "{done}");
    let (_, cmd) = api.command(2, json!({"kind": "snapshot"}));
    let done = api.settled(cmd["id"].as_u64().expect("command id"));
    assert_eq!(done["state"], "acked", "{done}");
    // One the client refuses comes back failed, with its reason: replayed pictures are sent
    // as they are.
    let (_, cmd) = api.command(2, json!({"kind": "set_quality", "quality": 50}));
    let done = api.settled(cmd["id"].as_u64().expect("command id"));
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["reason"]
            .as_str()
            .is_some_and(|r| r.contains("as they are")),
        "{done}"
    );
    // Nonsense is refused at the door.
    let (status, body) = api.command(1, json!({"kind": "warp_speed"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.command(1, json!({"kind": "set_fps", "milli_fps": 0}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.command(99, json!({"kind": "snapshot"}));
    assert_eq!(status, 404, "{body}");

    // Stream a little longer, so there is a history to check.
    std::thread::sleep(Duration::from_secs(2));
    let mut acked = BTreeMap::new();
    let mut keeps = Vec::new();
    for (child, keep) in cars {
        let s = stop(child);
        acked.insert(
            s["id"].as_u64().unwrap() as u32,
            s["frames_delivered"].as_u64().unwrap(),
        );
        keeps.push(keep);
    }
    let t2: Vec<Value> = tier2s.into_iter().map(stop).collect();
    let _ = stop(tier1);
    for t in &t2 {
        let db = &t["database"];
        assert_eq!(db["records_dropped"], 0, "{t}");
        assert_eq!(db["write_errors"], 0, "{t}");
        assert_eq!(db["frames_undecodable"], 0, "{t}");
        assert_eq!(t["frames_corrupted"], 0, "{t}");
    }

    // Every stored frame is byte for byte what its camera produced, and every frame a
    // camera saw acknowledged is stored.
    for (client, keep) in [1u32, 2].into_iter().zip(&keeps) {
        let kept = kept(keep);
        let listed = api
            .get(&format!(
                "/api/clients/{client}/frames?from=0&to={}&limit=10000",
                i64::MAX
            ))
            .expect("frames");
        let frames = listed["frames"].as_array().expect("frame list");
        assert!(
            frames.len() as u64 >= acked[&client] && acked[&client] >= 10,
            "client {client}: {} stored, {} acknowledged",
            frames.len(),
            acked[&client]
        );
        for f in frames {
            // 64-bit ids travel as decimal strings (JavaScript numbers hold 53 bits).
            let id: u64 = f["frame"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("frame id");
            let original = kept
                .get(&id)
                .unwrap_or_else(|| panic!("frame {id} never sent"));
            let stored = api.get_bytes(&format!("/api/clients/{client}/frames/{id}"));
            assert!(
                stored == original.jpeg,
                "client {client} frame {id} differs"
            );
            let fix = original.fix.expect("synthetic frames carry a fix");
            assert_eq!(f["fix"]["lat"].as_f64(), Some(fix.lat), "{f}");
            assert_eq!(f["capture_ms"].as_u64(), Some(original.capture_ms), "{f}");
        }
        let track = api
            .get(&format!(
                "/api/clients/{client}/track?from=0&to={}",
                i64::MAX
            ))
            .expect("track");
        assert!(
            track["points"].as_array().is_some_and(|p| p.len() >= 10),
            "{track}"
        );
    }
    let b = stop(backend);
    assert!(b["commands_acked"].as_u64() >= Some(2), "{b}");
    let _ = std::fs::remove_dir_all(&dir);
}
