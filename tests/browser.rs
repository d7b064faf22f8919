//! The browser client in real headless Chromium, driven through chromedriver with fantoccini.
//!
//! The web server runs in-process on real SQLite (a file in WAL mode). A feeder thread plays
//! three mobile clients' tier-2: it writes sessions, moving fixes (synthetic routes through the
//! synthetic city), synthetic-camera JPEG frames and link figures through its own connection to
//! the same database file. A stand-in command desk acks every command it is handed, as the
//! backend's desk does once the mobile client answered.
//!
//! Checked in the page: it loads with the city streets, a marker per client appears and moves,
//! the device list shows online clients with link figures, the live picture updates, an area
//! lists the clients inside, history replay shows stored frames, and a command click goes from
//! pending to acked. A screenshot is saved under `$CARGO_TARGET_TMPDIR/browser-artifacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test prints why and
//! passes, unless `LIVECAM_REQUIRE_BROWSER=1`. `LIVECAM_CHROMIUM` and `LIVECAM_CHROMEDRIVER`
//! override where they are looked for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use livecam_system::backend::web::{router, WebState};
use livecam_system::backend::{
    CommandRecord, CommandState, FrameRecord, LinkRecord, SessionRecord, Storage,
};
use livecam_system::device::{
    City, FrameSource, SyntheticCamera, SyntheticRoute, SyntheticSettings,
};
use serde_json::json;

const CLIENTS: u32 = 3;

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Plays the tier-2 of `CLIENTS` mobile clients until `stop`: every 250 ms a session heartbeat,
/// a frame with its fix, and link figures.
fn feed(url: String, stop: Arc<AtomicBool>) {
    let mut db = livecam_system::backend::open(&url).expect("feeder opens the database");
    let city = City::default();
    let mut routes: Vec<SyntheticRoute> = (1..=CLIENTS)
        .map(|c| {
            SyntheticRoute::new(
                city,
                25.0,
                u64::from(c),
                livecam_system::time::Instant::ZERO,
            )
        })
        .collect();
    let mut cameras: Vec<SyntheticCamera> = (1..=CLIENTS)
        .map(|c| SyntheticCamera::new(c, SyntheticSettings::default()))
        .collect();
    let started = Instant::now();
    let start_ms = now_ms();
    let mut frame = 0u32;
    while !stop.load(Ordering::Relaxed) {
        frame += 1;
        let now = now_ms();
        let sim_now =
            livecam_system::time::Instant::from_micros(started.elapsed().as_micros() as u64);
        for c in 1..=CLIENTS {
            let i = (c - 1) as usize;
            let fix = routes[i].fix(sim_now);
            db.upsert_session(&SessionRecord {
                client: c,
                tier2: 100 + c % 2,
                tier2_addr: "127.0.0.1:7201".parse().unwrap(),
                client_addr: format!("127.0.0.1:{}", 9100 + c).parse().unwrap(),
                started_ms: start_ms,
                last_seen_ms: now,
            })
            .expect("session");
            let jpeg = cameras[i]
                .capture(u64::from(frame), now as u64)
                .expect("camera");
            db.insert_frames(&[FrameRecord {
                client: c,
                frame,
                tier2: 100 + c % 2,
                capture_ms: now - 20,
                received_ms: now,
                fix: Some(fix),
                segment_size: 400 + 50 * c,
                jpeg,
            }])
            .expect("frame");
            db.insert_link(&LinkRecord {
                client: c,
                at_ms: now,
                segment_size: 400 + 50 * c,
                loss: 0.01 * f64::from(c),
                latency_ms: 5.0 + f64::from(c),
                frames_delivered: u64::from(frame),
                frames_dropped: 0,
            })
            .expect("link");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Acks every command after 200 ms, as the command desk does when the client answers.
async fn desk(
    mut commands: tokio::sync::mpsc::Receiver<CommandRecord>,
    storage: Arc<Mutex<Box<dyn Storage>>>,
    updates: tokio::sync::broadcast::Sender<CommandRecord>,
) {
    while let Some(cmd) = commands.recv().await {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let storage = storage.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut s = storage.lock().unwrap();
            s.finish_command(cmd.id, &CommandState::Acked, now_ms())
                .unwrap();
            s.command(cmd.id).unwrap().unwrap()
        })
        .await
        .unwrap();
        let _ = updates.send(done);
    }
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Evaluates `script` (a function body returning a value) until `ok` holds for its result,
/// or fails after `secs` with a screenshot.
async fn wait_for(
    client: &Client,
    what: &str,
    secs: u64,
    script: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        match client.execute(script, vec![]).await {
            Ok(v) if ok(&v) => return v,
            Ok(v) => last = v,
            Err(e) => last = json!(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(artifacts().join("failure.png"), png);
    }
    panic!("timed out after {secs} s waiting for {what}; last value {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_in_headless_chromium() {
    let required = std::env::var("LIVECAM_REQUIRE_BROWSER").as_deref() == Ok("1");
    let chromium = find_program(
        "LIVECAM_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find_program("LIVECAM_CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        let msg = "browser test skipped: chromium and chromedriver not found \
                   (apt-get install chromium chromium-driver; LIVECAM_REQUIRE_BROWSER=1 makes this fail)";
        assert!(!required, "{msg}");
        eprintln!("{msg}");
        return;
    };
    // Debian's /usr/bin/chromium is a wrapper script; chromedriver wants the real binary.
    let binary = ["/usr/lib/chromium/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file() && std::env::var_os("LIVECAM_CHROMIUM").is_none())
        .unwrap_or(chromium);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("livecam.sqlite").display());
    let storage: Arc<Mutex<Box<dyn Storage>>> =
        Arc::new(Mutex::new(livecam_system::backend::open(&url).unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || feed(url, stop))
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (updates, _) = tokio::sync::broadcast::channel(64);
    tokio::spawn(desk(rx, storage.clone(), updates.clone()));
    let app = router(WebState {
        storage,
        commands: tx,
        command_updates: updates,
        city: City::default(),
        tiles: None,
        online_window_ms: 3_000,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let port = free_port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": binary,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let mut client = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.is_none() {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => client = Some(c),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session from {}: {e}", chromedriver.display()),
        }
    }
    let c = client.unwrap();

    c.goto(&web).await.unwrap();
    // The page, the city streets and the live socket.
    wait_for(
        &c,
        "the city streets",
        15,
        "return document.getElementById('map').dataset.streets || null",
        |v| v == "24",
    )
    .await;
    wait_for(
        &c,
        "the live socket",
        15,
        "return document.getElementById('conn').dataset.state",
        |v| v == "open",
    )
    .await;
    // A marker per client, and the device list with link figures.
    let count_markers =
        "return document.querySelectorAll('.leaflet-marker-icon.client-marker').length";
    wait_for(&c, "three markers", 15, count_markers, |v| {
        v.as_u64() == Some(u64::from(CLIENTS))
    })
    .await;
    let rows = wait_for(&c, "three online rows", 15,
        "return [...document.querySelectorAll('#client-rows tr')].map(r => [r.dataset.online, r.querySelector('[data-field=segment]').textContent, r.querySelector('[data-field=loss]').textContent])",
        |v| v.as_array().is_some_and(|a| a.len() == CLIENTS as usize && a.iter().all(|r| r[0] == "true"))).await;
    assert_eq!(rows[0][1], "450 B", "{rows}");
    assert_eq!(rows[0][2], "1.0 %", "{rows}");
    // Markers move: client 1's marker position changes.
    let pos = "const m = document.querySelector('.client-marker[data-client=\"1\"]'); return m ? [m.dataset.lat, m.dataset.lon, m.style.transform] : null";
    let first = wait_for(&c, "client 1's marker", 10, pos, |v| !v.is_null()).await;
    let moved = wait_for(&c, "client 1's marker to move", 10, pos, |v| {
        !v.is_null() && (v[0] != first[0] || v[1] != first[1]) && v[2] != first[2]
    })
    .await;
    assert_ne!(moved, first);
    // The track grows.
    wait_for(
        &c,
        "client 1's track",
        10,
        "const t = window.livecam.tracks.get(1); return t ? t.getLatLngs().length : 0",
        |v| v.as_u64().unwrap_or(0) >= 3,
    )
    .await;

    // The live picture of the selected client (the first one) updates.
    let live = "const i = document.getElementById('live-frame'); return i.complete && i.naturalWidth > 0 ? [i.dataset.frame, i.naturalWidth] : null";
    let pic1 = wait_for(&c, "a live picture", 15, live, |v| !v.is_null()).await;
    assert_eq!(pic1[1], 320);
    wait_for(&c, "a newer live picture", 15, live, |v| {
        !v.is_null() && v[0] != pic1[0]
    })
    .await;

    // Area selection: the whole city holds every client; a box far away none.
    let b = livecam_system::backend::map::city_bounds(&City::default());
    for (id, v) in [
        ("area-south", b.south - 0.001),
        ("area-west", b.west - 0.001),
        ("area-north", b.north + 0.001),
        ("area-east", b.east + 0.001),
    ] {
        let input = c.find(Locator::Id(id)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(&format!("{v:.6}")).await.unwrap();
    }
    c.find(Locator::Id("area-list"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &c,
        "three clients in the area",
        10,
        "return document.getElementById('area-results').dataset.count",
        |v| v == "3",
    )
    .await;

    // History replay of the selected client: track and stored frames, slider moves the frame.
    c.find(Locator::Id("history-load"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hist = wait_for(&c, "stored history", 10, "const i = document.getElementById('history-info').dataset; return [Number(i.points), Number(i.frames)]", |v| v[1].as_u64().unwrap_or(0) >= 2).await;
    assert!(hist[0].as_u64().unwrap() >= 2, "{hist}");
    c.execute("const s = document.getElementById('history-slider'); s.value = s.max; s.dispatchEvent(new Event('input')); return null", vec![]).await.unwrap();
    let replay = "const i = document.getElementById('history-frame'); return i.complete && i.naturalWidth > 0 ? i.dataset.frame : null";
    let last = wait_for(&c, "the last stored frame", 10, replay, |v| !v.is_null()).await;
    c.execute("const s = document.getElementById('history-slider'); s.value = 0; s.dispatchEvent(new Event('input')); return null", vec![]).await.unwrap();
    wait_for(&c, "the first stored frame", 10, replay, |v| {
        !v.is_null() && *v != last
    })
    .await;

    // A command click goes pending -> acked.
    c.find(Locator::Id("cmd-snapshot"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let states =
        "return [...document.querySelectorAll('#command-log li')].map(l => l.dataset.state)";
    wait_for(&c, "the snapshot command acked", 10, states, |v| {
        v.as_array().is_some_and(|a| a.iter().any(|s| s == "acked"))
    })
    .await;
    // A bad value is refused with the server's reason, in the page.
    c.execute(
        "document.getElementById('cmd-quality-value').value = '0'; return null",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Id("cmd-quality"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &c,
        "the refusal",
        10,
        "return document.getElementById('command-error').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("quality must be")),
    )
    .await;

    let png = c.screenshot().await.unwrap();
    let shot = artifacts().join("livecam.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    assert!(png.starts_with(b"\x89PNG"));

    c.close().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
}
