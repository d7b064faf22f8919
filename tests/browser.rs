//! The browser client in real headless Chromium, driven through chromedriver with fantoccini.
//!
//! It runs against `livecam up` (2 tier-1s, 4 tier-2s, the backend with the web server and
//! command desk, synthetic mobile clients, all on loopback) spawned as a process and stopped at
//! the end; its log goes to `browser-artifacts/up*.log`.
//!
//! The fleet test (`up --clients 8 --fps 10`) checks in the page: the login form appears (the
//! API answers 401 without a login), refuses a wrong password and logs in with the right one;
//! the page loads with the city streets, a marker per client appears and moves, the track
//! grows, the device list shows online clients with link figures, the live player advances at
//! the camera's rate with its figures beside it, the grid plays every camera at once (and the
//! live view's targets hold: frames shown >= 95% of those the tier-2s stored, tier-2 to screen
//! p95 <= 150 ms), an area lists the clients inside, history replay shows stored frames, and a
//! command click goes from pending to acked by the mobile client, a group and a geofence drawn
//! on the map raise client 1's `enter` in the event list and the history downloads as a zip
//! (`browser/fences.rs`); logging out brings the form back and the API refuses the page.
//!
//! The big fleet test (`up --clients 100 --fps 1 --tiles URL`) checks the tile layer (served
//! by a tile server in the test, with its attribution shown), that the map fits the fleet, and
//! that the page stays responsive with 100 clients (the longest stall of its event loop is
//! printed and bounded loosely).
//!
//! Screenshots of each part are saved under `$CARGO_TARGET_TMPDIR/browser-artifacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test prints why and
//! passes, unless `LIVECAM_REQUIRE_BROWSER=1`. `LIVECAM_CHROMIUM` and `LIVECAM_CHROMEDRIVER`
//! override where they are looked for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use livecam_system::device::City;
use serde_json::json;

#[path = "browser/fences.rs"]
mod fences;

const CLIENTS: u32 = 8;
/// Frames per second of each client in the fleet test: the live view's target load.
const FPS: u32 = 10;
/// The password of the web login `admin`, given to `livecam up` in a file.
const PASSWORD: &str = "browser test password";

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

/// `livecam up` as a child process, stopped with SIGINT (then killed) when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// The real Chromium binary and chromedriver, or `None` (the test then passes, printing why,
/// unless `LIVECAM_REQUIRE_BROWSER=1`).
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
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
        return None;
    };
    // Debian's /usr/bin/chromium is a wrapper script; chromedriver wants the real binary.
    let binary = ["/usr/lib/chromium/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file() && std::env::var_os("LIVECAM_CHROMIUM").is_none())
        .unwrap_or(chromium);
    Some((binary, chromedriver))
}

/// `livecam up` with `args` on a fresh database in `dir`, once it serves `/healthz`; its log
/// goes to `browser-artifacts/{name}.log`. Returns it and the page's URL.
async fn start_up(name: &str, args: &[&str], dir: &Path) -> (Up, String) {
    let password_file = dir.join("admin-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let http = free_port();
    let log = std::fs::File::create(artifacts().join(format!("{name}.log"))).unwrap();
    let up = Up(Command::new(env!("CARGO_BIN_EXE_livecam"))
        .arg("up")
        .args(args)
        .args(["--http", &format!("127.0.0.1:{http}")])
        .arg("--password-file")
        .arg(&password_file)
        .arg("--database")
        .arg(format!("sqlite:{}", dir.join("livecam.sqlite").display()))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("livecam up starts"));
    let web = format!("http://127.0.0.1:{http}/");
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(&format!("{web}healthz")).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "livecam up did not serve /healthz within 60 s (see {name}.log)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (up, web)
}

/// A WebDriver session in a fresh headless Chromium.
async fn open_browser(binary: &Path, chromedriver: &Path) -> (Driver, Client, tempfile::TempDir) {
    let port = free_port();
    let driver = Driver(
        Command::new(chromedriver)
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c, profile),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session from {}: {e}", chromedriver.display()),
        }
    }
}

/// Opens the page at `web` and waits for its login form.
async fn open_login(c: &Client, web: &str) {
    c.goto(web).await.unwrap();
    wait_for(
        c,
        "the login form",
        15,
        "return !document.getElementById('login').hidden",
        |v| v == true,
    )
    .await;
}

/// Types the login form's name and `password` and submits it.
async fn submit_login(c: &Client, password: &str) {
    type_into(c, "login-name", "admin").await;
    type_into(c, "login-password", password).await;
    click(c, "#login-submit").await;
}

/// Clicks the first element the CSS `selector` matches (`#id` for one by id).
async fn click(c: &Client, selector: &str) {
    c.find(Locator::Css(selector))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` into the input with id `id`, replacing what it held.
async fn type_into(c: &Client, id: &str, text: &str) {
    let input = c.find(Locator::Id(id)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

/// Saves a screenshot of the page as `browser-artifacts/{name}.png`.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let shot = artifacts().join(format!("{name}.png"));
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_in_headless_chromium() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((binary, chromedriver)) = browser_programs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_up, web) = start_up(
        "up",
        &["--clients", &CLIENTS.to_string(), "--fps", &FPS.to_string()],
        dir.path(),
    )
    .await;
    let (_driver, c, _profile) = open_browser(&binary, &chromedriver).await;

    // The API answers 401 without a login: the page shows the login form. A wrong password
    // is refused with the server's message, the right one logs in.
    open_login(&c, &web).await;
    submit_login(&c, "not the password").await;
    wait_for(
        &c,
        "the refusal",
        15,
        "return document.getElementById('login-error').textContent",
        |v| v == "wrong name or password",
    )
    .await;
    submit_login(&c, PASSWORD).await;
    wait_for(
        &c,
        "the login",
        15,
        "return [document.getElementById('login').hidden, document.getElementById('user').dataset.name]",
        |v| v == &json!([true, "admin"]),
    )
    .await;
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
    wait_for(&c, "a marker per client", 15, count_markers, |v| {
        v.as_u64() == Some(u64::from(CLIENTS))
    })
    .await;
    let rows = wait_for(&c, "a row per client, online", 15,
        "return [...document.querySelectorAll('#client-rows tr')].map(r => [r.dataset.online, r.querySelector('[data-field=segment]').textContent, r.querySelector('[data-field=loss]').textContent])",
        |v| v.as_array().is_some_and(|a| a.len() == CLIENTS as usize && a.iter().all(|r| r[0] == "true" && r[1].as_str().is_some_and(|s| s.ends_with(" B")) && r[2].as_str().is_some_and(|s| s.ends_with(" %"))))).await;
    let _ = rows;
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
        "const t = window.livecam.tracks.get(1); return t ? t.points.length : 0",
        |v| v.as_u64().unwrap_or(0) >= 3,
    )
    .await;

    // The live player of the selected client (the first one) advances at the camera's rate,
    // with its figures beside it.
    let live = "const i = document.getElementById('live-frame'); return i.complete && i.naturalWidth > 0 ? [i.dataset.frame, i.naturalWidth] : null";
    let pic1 = wait_for(&c, "a live picture", 15, live, |v| !v.is_null()).await;
    assert_eq!(pic1[1], 320);
    wait_for(&c, "a newer live picture", 15, live, |v| {
        !v.is_null() && v[0] != pic1[0]
    })
    .await;
    let fps = wait_for(
        &c,
        "the player at the camera's rate",
        30,
        "return Number(document.getElementById('live-stats').dataset.fps)",
        |v| v.as_f64().is_some_and(|f| f >= f64::from(FPS) * 0.7),
    )
    .await;
    let stats = c
        .execute(
            "return document.getElementById('live-stats').textContent",
            vec![],
        )
        .await
        .unwrap();
    let stats = stats.as_str().unwrap_or_default();
    for figure in ["fps", "kB/s", "capture to screen", "segment", "loss"] {
        assert!(
            stats.contains(figure),
            "{figure} missing beside the player: {stats}"
        );
    }
    eprintln!("player: {fps} fps shown; {stats}");
    screenshot(&c, "player").await;

    // Which is smoother on screen, frames on the live socket or multipart MJPEG in an <img>?
    // For 8 s both play client 1 side by side; on every animation frame each picture is drawn
    // small onto a canvas and a change of its pixels counts as a frame shown. Compared: frames
    // shown, and the spread of the intervals between them.
    let probe = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const probe = (img) => {
               const cv = document.createElement('canvas'); cv.width = 64; cv.height = 48;
               const cx = cv.getContext('2d', { willReadFrequently: true });
               let last = null; const times = [];
               return { times, tick(now) {
                 if (!img.complete || !img.naturalWidth) return;
                 cx.drawImage(img, 0, 0, 64, 48);
                 const d = cx.getImageData(0, 0, 64, 48).data;
                 let h = 0;
                 for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) | 0;
                 if (h !== last) { if (last !== null) times.push(now); last = h; }
               } };
             };
             const mj = document.createElement('img');
             mj.style.cssText = 'position:fixed;left:0;top:0;width:64px;height:48px;opacity:0.01';
             mj.src = '/api/clients/1/video.mjpeg';
             document.body.appendChild(mj);
             const a = probe(document.getElementById('live-frame')), b = probe(mj);
             const t0 = performance.now();
             const loop = (now) => {
               a.tick(now); b.tick(now);
               if (now - t0 < 8000) requestAnimationFrame(loop);
               else { mj.src = ''; mj.remove(); done({ socket: a.times, mjpeg: b.times }); }
             };
             requestAnimationFrame(loop);",
            vec![],
        )
        .await
        .unwrap();
    for path in ["socket", "mjpeg"] {
        let times: Vec<f64> = probe[path]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let n = gaps.len().max(1) as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let p95 = sorted
            .get((sorted.len() as f64 * 0.95) as usize)
            .copied()
            .unwrap_or(0.0);
        eprintln!(
            "smoothness, {path}: {} frames shown in 8 s, interval mean {mean:.0} ms, sd {sd:.0} ms, p95 {p95:.0} ms",
            times.len()
        );
        assert!(
            times.len() as u32 >= FPS * 8 / 2,
            "{path} showed {} frames in 8 s",
            times.len()
        );
    }

    // The grid plays every online camera at once: a tile per client but the selected one
    // (which plays in the player), each advancing.
    click(&c, "#grid-all").await;
    let tiles = "return [...document.querySelectorAll('#grid-tiles figure')].map(f => [f.dataset.client, f.querySelector('img').dataset.frame])";
    let first = wait_for(&c, "a picture in every grid tile", 15, tiles, |v| {
        v.as_array().is_some_and(|a| {
            a.len() == CLIENTS as usize - 1
                && a.iter()
                    .all(|t| t[1].as_str().is_some_and(|f| !f.is_empty()))
        })
    })
    .await;
    wait_for(&c, "every grid tile to advance", 15, tiles, |v| {
        v.as_array().is_some_and(|a| {
            a.len() == first.as_array().unwrap().len()
                && a.iter()
                    .zip(first.as_array().unwrap())
                    .all(|(now, then)| now[1] != then[1])
        })
    })
    .await;
    screenshot(&c, "grid").await;

    // The live view's targets, over ten seconds of all eight cameras playing: frames shown
    // >= 95% of the frames the tier-2s stored (received) in that time, and tier-2 to screen
    // p95 <= 150 ms. The window ends a second before it is judged, so frames still on their
    // way are not counted as missed.
    // A run below them on a loaded machine (the browser's renderer starved for a moment) is
    // measured again, up to three windows; a live view that drops frames fails every one.
    let mut window = 0;
    let (ratio, p95, capture_p95, stored_len) = loop {
        window += 1;
        let t0 = c
            .execute("return Date.now()", vec![])
            .await
            .unwrap()
            .as_i64()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        let t1 = t0 + 10_000;
        let figures = c
            .execute_async(
                "const [t0, t1, n] = [arguments[0], arguments[1], arguments[2]];
                 const done = arguments[arguments.length - 1];
                 const ids = [...Array(n).keys()].map(i => i + 1);
                 Promise.all(ids.map(id => fetch('/api/clients/' + id + '/frames?from=' + t0 + '&to=' + t1 + '&limit=10000')
                     .then(r => r.json()).then(j => j.frames.map(f => id + ':' + f.frame))))
                   .then(stored => {
                     const shown = window.livecam.video.latencies
                       .filter(l => l.received_ms >= t0 && l.received_ms <= t1);
                     done({
                       stored: stored.flat(),
                       shown: shown.map(l => l.client + ':' + l.frame),
                       latency: shown.map(l => l.shown_ms - l.received_ms),
                       capture: shown.map(l => l.shown_ms - l.capture_ms),
                     });
                   });",
                vec![json!(t0), json!(t1), json!(CLIENTS)],
            )
            .await
            .unwrap();
        let strings = |k: &str| -> Vec<String> {
            figures[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let stored: std::collections::BTreeSet<String> = strings("stored").into_iter().collect();
        let shown: std::collections::BTreeSet<String> = strings("shown").into_iter().collect();
        let sorted = |k: &str| -> Vec<i64> {
            let mut v: Vec<i64> = figures[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            v.sort_unstable();
            assert!(!v.is_empty(), "no frame shown");
            v
        };
        let latency = sorted("latency");
        let capture = sorted("capture");
        let at = |v: &[i64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        let pct = |p: f64| at(&latency, p);
        let seen = stored.intersection(&shown).count();
        let ratio = seen as f64 / stored.len().max(1) as f64;
        eprintln!(
            "live view, {CLIENTS} clients x {FPS} fps over 10 s: {} frames stored, {seen} shown ({:.1}%); \
             tier-2 to screen p50 {} ms, p95 {} ms, max {} ms; capture to screen p50 {} ms, p95 {} ms",
            stored.len(),
            ratio * 100.0,
            pct(0.5),
            pct(0.95),
            pct(1.0),
            at(&capture, 0.5),
            at(&capture, 0.95),
        );
        let measured = (ratio, pct(0.95), at(&capture, 0.95), stored.len());
        if (ratio >= 0.95 && measured.1 <= 150) || window == 3 {
            break measured;
        }
        eprintln!("live view below its targets in window {window} of 3: measured again");
    };
    // Capture times are the mobile clients' wall clock (the same clock here).
    assert!(
        (0..1000).contains(&capture_p95),
        "capture to screen p95 {capture_p95} ms"
    );
    assert!(
        stored_len as u32 >= CLIENTS * FPS * 10 * 7 / 10,
        "the cameras stored too few frames: {stored_len}"
    );
    assert!(ratio >= 0.95, "frames shown {:.1}% < 95%", ratio * 100.0);
    assert!(p95 <= 150, "tier-2 to screen p95 {p95} ms > 150 ms");
    click(&c, "#grid-close").await;

    // Area selection: the whole city holds every client; a box far away none.
    let b = livecam_system::backend::map::city_bounds(&City::default());
    for (id, v) in [
        ("area-south", b.south - 0.001),
        ("area-west", b.west - 0.001),
        ("area-north", b.north + 0.001),
        ("area-east", b.east + 0.001),
    ] {
        type_into(&c, id, &format!("{v:.6}")).await;
    }
    click(&c, "#area-list").await;
    wait_for(
        &c,
        "every client in the area",
        10,
        "return document.getElementById('area-results').dataset.count",
        |v| v == CLIENTS.to_string().as_str(),
    )
    .await;

    // History replay of the selected client: track and stored frames, slider moves the frame.
    click(&c, "#history-load").await;
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

    // Replay plays at the recorded pace times the speed: at 20x the stored seconds pass in a
    // twentieth of the time, to the last frame.
    c.execute(
        "document.getElementById('history-speed').value = '20'; return null",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#history-play").await;
    wait_for(
        &c,
        "the replay to reach the last frame",
        20,
        "const s = document.getElementById('history-slider'); return Number(s.value) > 0 && s.value === s.max",
        |v| v == true,
    )
    .await;

    // A command click goes pending -> acked.
    click(&c, "#cmd-snapshot").await;
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
    click(&c, "#cmd-quality").await;
    wait_for(
        &c,
        "the refusal",
        10,
        "return document.getElementById('command-error').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("quality must be")),
    )
    .await;

    // Groups, a drawn geofence and its live event, the history download.
    fences::check(&c).await;

    screenshot(&c, "livecam").await;

    // Logging out ends the login: the form is back, the live socket closed, and the API
    // refuses the page's requests.
    click(&c, "#logout").await;
    wait_for(
        &c,
        "the login form after logout",
        10,
        "return [document.getElementById('login').hidden, document.getElementById('conn').dataset.state]",
        |v| v == &json!([false, "closed"]),
    )
    .await;
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch('/api/clients').then(r => done(r.status))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 401);

    c.close().await.unwrap();
}

/// The browser tests take turns: each runs a whole system and a browser, and the live view's
/// latency is measured with the machine to itself.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A 1x1 PNG, the tile the test's tile server answers every request with.
const TILE_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// A tile server on loopback, standing in for OpenStreetMap's: every `GET /{z}/{x}/{y}.png`
/// gets [`TILE_PNG`]; it counts the requests whose path has that shape.
struct TileServer {
    port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TileServer {
    fn start() -> TileServer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        // Skip the headers.
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h == "\r\n" {
                                break;
                            }
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("");
                        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                        let is_tile = parts.len() == 3
                            && parts[0].parse::<u32>().is_ok()
                            && parts[1].parse::<u32>().is_ok()
                            && parts[2]
                                .strip_suffix(".png")
                                .is_some_and(|y| y.parse::<u32>().is_ok());
                        if is_tile {
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n",
                            TILE_PNG.len()
                        );
                        if stream.write_all(head.as_bytes()).is_err()
                            || stream.write_all(TILE_PNG).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        TileServer { port, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_on_a_tile_map() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((binary, chromedriver)) = browser_programs() else {
        return;
    };
    const BIG: u32 = 100;
    let tiles = TileServer::start();
    let url = format!("http://127.0.0.1:{}/{{z}}/{{x}}/{{y}}.png", tiles.port);
    // Markup in the attribution must show as text, not become part of the page.
    let attribution = "(c) livecam test tiles <b>bold?</b>";
    let dir = tempfile::tempdir().unwrap();
    let (_up, web) = start_up(
        "up-100",
        &[
            "--clients",
            &BIG.to_string(),
            "--fps",
            "1",
            "--tiles",
            &url,
            "--tiles-attribution",
            attribution,
        ],
        dir.path(),
    )
    .await;
    let (_driver, c, _profile) = open_browser(&binary, &chromedriver).await;
    open_login(&c, &web).await;
    submit_login(&c, PASSWORD).await;

    // The tile layer: tiles from the tile server drawn, its attribution shown as text, and no
    // synthetic city drawn over a real map.
    let loaded = format!(
        "return [...document.querySelectorAll('img.leaflet-tile')].filter(i => i.src.startsWith('http://127.0.0.1:{}/') && i.complete && i.naturalWidth > 0).length",
        tiles.port
    );
    wait_for(&c, "tiles from the tile server", 20, &loaded, |v| {
        v.as_u64().unwrap_or(0) >= 4
    })
    .await;
    assert!(tiles.requests() >= 4, "{} tile requests", tiles.requests());
    let shown = c
        .execute(
            "const a = document.querySelector('.leaflet-control-attribution'); return [a.textContent, a.querySelectorAll('b').length, document.getElementById('map').dataset.streets]",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        shown[0].as_str().unwrap().contains(attribution),
        "attribution {shown}"
    );
    assert_eq!(
        shown[1], 0,
        "the attribution's markup became markup: {shown}"
    );
    assert_eq!(shown[2], "0", "the synthetic city is drawn over the tiles");

    // A hundred markers, the map fitted to them, a scale bar.
    wait_for(
        &c,
        "a hundred markers",
        60,
        "return document.querySelectorAll('.leaflet-marker-icon.client-marker').length",
        |v| v.as_u64() == Some(u64::from(BIG)),
    )
    .await;
    wait_for(
        &c,
        "the map fitted to the fleet",
        20,
        "return Number(document.getElementById('map').dataset.fitted || 0)",
        |v| v.as_u64().unwrap_or(0) >= u64::from(BIG) / 2,
    )
    .await;
    let scale = c
        .execute(
            "return document.querySelectorAll('.leaflet-control-scale-line').length",
            vec![],
        )
        .await
        .unwrap();
    assert!(scale.as_u64().unwrap_or(0) >= 1, "no scale bar");
    screenshot(&c, "tiles").await;

    // Responsive with a hundred clients: over ten seconds of updates, a click on the device
    // list selects that client at once, the grid of every online camera fills, and the
    // page's event loop never stalls long (a timer every 50 ms measures how late it runs).
    c.execute(
        "window.__stall = 0; let last = performance.now();
         setInterval(() => { const now = performance.now(); window.__stall = Math.max(window.__stall, now - last - 50); last = now; }, 50);
         return null",
        vec![],
    )
    .await
    .unwrap();
    let clicked = Instant::now();
    click(&c, "#client-rows tr[data-client=\"42\"]").await;
    wait_for(
        &c,
        "client 42 selected",
        5,
        "return document.getElementById('selected').dataset.client",
        |v| v == "42",
    )
    .await;
    let select_ms = clicked.elapsed().as_millis();
    click(&c, "#grid-all").await;
    wait_for(&c, "the grid at its bound", 20,
        "return [...document.querySelectorAll('#grid-tiles figure img')].filter(i => i.dataset.frame).length",
        |v| v.as_u64() == Some(15)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stall = c
        .execute("return window.__stall", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    eprintln!(
        "{BIG} clients: selection shown {select_ms} ms after the click (WebDriver round trips \
         included); longest event-loop stall {stall:.0} ms over 10 s with the grid playing"
    );
    // Loose: a hung or thrashing page stalls for seconds; a responsive one for tens of ms.
    assert!(stall < 1000.0, "the page stalled {stall:.0} ms");
    screenshot(&c, "hundred").await;
    c.close().await.unwrap();
}
