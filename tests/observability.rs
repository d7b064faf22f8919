//! Observability: the metrics every role and the backend export, the deploy files built on
//! them (Prometheus scrape config, Grafana dashboard), `livecam up` serving every role's
//! metrics (each role on a thread of its own), and JSON logs.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livecam_system::metrics::{BackendMetrics, GeofenceEdge, RoleMetrics, UplinkLabels};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every sample name a scrape of `exposition` can show: each family's samples as Prometheus
/// stores them (`_total` for counters; `_bucket`, `_sum` and `_count` for histograms), and
/// every sample line's name (families with labels show none until a label set exists).
fn metric_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("a TYPE line without a name and type: {line:?}");
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "gauge" => &[""],
                other => panic!("a metric of unexpected type {other}: {line:?}"),
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The names every role and the backend export, rendered from their registries. A family
/// with labels shows nothing before its first label set: the backend answers one request
/// first, as it has by the time anyone scrapes it.
fn exported_names() -> BTreeSet<String> {
    let role = RoleMetrics::default();
    // A bonded client's per-uplink families show once an uplink is counted.
    let uplink = UplinkLabels { uplink: 0 };
    let _ = role.uplink_bytes.get_or_create(&uplink);
    let _ = role.uplink_silences.get_or_create(&uplink);
    let _ = role.uplink_target.get_or_create(&uplink);
    let _ = role.uplink_rtt_ms.get_or_create(&uplink);
    let mut names = metric_names(&role.encode());
    let backend = BackendMetrics::default();
    backend.http_request(
        Some("/healthz"),
        &axum::http::Method::GET,
        axum::http::StatusCode::OK,
        Duration::from_millis(1),
    );
    names.extend(metric_names(&backend.encode()));
    names
}

/// The `livecam_*` names `text` uses.
fn livecam_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("livecam_") {
        // A name starts where the previous character is not part of an identifier.
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(name.clone());
        }
        rest = &tail[name.len().max(1)..];
    }
    out
}

/// Every `expr` in a Grafana dashboard, however deep.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_names_parser_finds_what_is_there_and_nothing_else() {
    let names = livecam_names(
        r#"rate(livecam_frames_late_total[1m]) / xlivecam_no + livecam_frame_latency_ms_bucket{job="livecam-mobile"}"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "livecam_frame_latency_ms_bucket",
            "livecam_frames_late_total"
        ]
    );
    let exported = exported_names();
    for name in [
        "livecam_frames_late_total",
        "livecam_frame_latency_ms_bucket",
        "livecam_sessions",
        "livecam_http_requests_total",
        "livecam_http_request_duration_seconds_count",
        "livecam_geofence_events_total",
        "livecam_desk_commands_pending",
        "livecam_storage_frames_stored_total",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    assert!(
        !exported.contains("livecam_frames_late"),
        "a counter without _total"
    );
}

#[test]
fn the_dashboard_and_the_scrape_config_use_only_metrics_that_exist() {
    let exported = exported_names();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy_dir().join("grafana/livecam.json")))
            .expect("the dashboard is JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 20, "only {} expressions", all.len());
    let mut used = BTreeSet::new();
    for e in &all {
        let names = livecam_names(e);
        assert!(
            !names.is_empty(),
            "an expression with no livecam metric: {e}"
        );
        for n in names {
            assert!(
                exported.contains(&n),
                "the dashboard uses {n}, which no role or backend exports (in {e})"
            );
            used.insert(n);
        }
    }
    for n in livecam_names(&read(&deploy_dir().join("prometheus.yml"))) {
        assert!(
            exported.contains(&n),
            "prometheus.yml uses {n}, which nobody exports"
        );
    }
    // Every family shows somewhere on the dashboard.
    let families: BTreeSet<String> = exported
        .iter()
        .map(|n| {
            ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect();
    for f in families {
        assert!(
            used.iter().any(|u| u.starts_with(&f)),
            "{f} is on no panel of the dashboard"
        );
    }
}

/// The `host:port` strings in the `targets` lists of a Prometheus config, by job.
fn scrape_targets(yaml: &str) -> Vec<(String, String)> {
    let mut job = String::new();
    let mut out = Vec::new();
    for line in yaml.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(j) = line.strip_prefix("- job_name:") {
            job = j.trim().to_string();
        } else if let Some(t) = line.strip_prefix("- targets:") {
            let t = t.trim().trim_start_matches('[').trim_end_matches(']');
            for target in t.split(',') {
                let target = target.trim().trim_matches('"');
                if !target.is_empty() {
                    out.push((job.clone(), target.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn the_scrape_config_targets_the_metrics_address_of_every_deploy_config() {
    let mut configured = BTreeSet::new();
    for entry in std::fs::read_dir(deploy_dir()).expect("deploy/") {
        let path = entry.expect("a deploy entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg: toml::Value = toml::from_str(&read(&path)).expect("deploy TOML");
            let role = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.split('-').next())
                .expect("a file name")
                .to_string();
            let addr = cfg
                .get("metrics")
                .and_then(|m| m.as_str())
                .unwrap_or_else(|| panic!("{} has no metrics address", path.display()));
            configured.insert((format!("livecam-{role}"), addr.to_string()));
        }
    }
    assert_eq!(configured.len(), 6, "{configured:?}");
    let targets: BTreeSet<(String, String)> =
        scrape_targets(&read(&deploy_dir().join("prometheus.yml")))
            .into_iter()
            .collect();
    assert_eq!(targets, configured);
}

#[test]
fn geofence_events_count_by_edge() {
    let m = BackendMetrics::default();
    m.geofence_event(GeofenceEdge::Enter);
    m.geofence_event(GeofenceEdge::Enter);
    m.geofence_event(GeofenceEdge::Leave);
    assert_eq!(m.geofence_events(GeofenceEdge::Enter), 2);
    assert_eq!(m.geofence_events(GeofenceEdge::Leave), 1);
    let text = m.encode();
    assert!(
        text.contains("livecam_geofence_events_total{event=\"enter\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("livecam_geofence_events_total{event=\"leave\"} 1"),
        "{text}"
    );
}

/// Sends SIGINT (or SIGTERM) and waits for the child.
fn stop(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child we started and have not waited for.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let _ = child.wait();
}

#[test]
fn logs_are_json_lines_with_log_format_json_and_text_without() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let cfg = dir.path().join("tier1.toml");
    std::fs::write(
        &cfg,
        format!("id = 1\nlisten = \"127.0.0.1:{port}\"\ninsecure = true\n"),
    )
    .expect("write config");
    let run = |format: Option<&str>| -> Vec<String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_livecam"));
        if let Some(f) = format {
            cmd.args(["--log-format", f]);
        }
        let mut child = cmd
            .args(["tier1", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start livecam tier1");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        let until = Instant::now() + Duration::from_secs(30);
        while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            let up = line.contains("tier-1 up");
            lines.push(line);
            if up {
                break;
            }
        }
        stop(&mut child, libc::SIGTERM);
        lines.extend(rx.try_iter());
        assert!(
            lines.iter().any(|l| l.contains("tier-1 up")),
            "no startup line logged: {lines:?}"
        );
        lines
    };
    let json = run(Some("json"));
    assert!(json.len() >= 2, "{json:?}");
    for line in &json {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["fields"].is_object(), "no fields: {line}");
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
    }
    assert!(
        json.iter()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains("INSECURE")),
        "{json:?}"
    );
    // The default is text: the same lines, none of them JSON.
    let text = run(None);
    assert!(
        text.iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{text:?}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_livecam"))
        .args(["--log-format", "xml", "tier1", "--config"])
        .arg(&cfg)
        .output()
        .expect("run livecam");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--log-format"),
        "the error names the flag"
    );
}

/// The sum of the samples named `name` (or `name_total`).
fn total(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .filter(|x| x.metric == name || x.metric == format!("{name}_total"))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let comm = task.expect("a task").path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.insert(name.trim().to_string());
        }
    }
    names
}

/// `livecam up` prints one metrics address per role, each serves that role's metrics, and
/// every tier-1, tier-2 and mobile client runs on a thread of its own: the regression check
/// of the loopback latency (on one shared thread every camera's JPEG encode held up every
/// other role's ACKs; see the README's "The loopback latency").
#[test]
fn up_serves_every_roles_metrics_and_runs_each_role_on_its_own_thread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut up = Command::new(env!("CARGO_BIN_EXE_livecam"))
        .args([
            "up",
            "--clients",
            "2",
            "--fps",
            "10",
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--database")
        .arg(format!("sqlite:{}", dir.path().join("up.db").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("livecam up starts");
    let stderr = BufReader::new(up.stderr.take().expect("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let checked = std::panic::catch_unwind(|| {
        let mut endpoints = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("livecam up says it is up");
            if line.contains("livecam is up") {
                break;
            }
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let addr = url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_string();
                endpoints.push((words[0].to_string(), words[1].to_string(), addr));
            }
        }
        let roles: Vec<(String, String)> = endpoints
            .iter()
            .map(|(r, id, _)| (r.clone(), id.clone()))
            .collect();
        let want: Vec<(String, String)> = [
            ("backend", "1"),
            ("tier1", "1"),
            ("tier1", "2"),
            ("tier2", "11"),
            ("tier2", "12"),
            ("tier2", "13"),
            ("tier2", "14"),
            ("mobile", "1"),
            ("mobile", "2"),
        ]
        .iter()
        .map(|(r, i)| (r.to_string(), i.to_string()))
        .collect();
        assert_eq!(roles, want, "one metrics line per role");
        // A thread names itself once it runs: give them a moment.
        let wanted: Vec<String> = endpoints
            .iter()
            .filter(|(r, _, _)| r != "backend")
            .map(|(role, id, _)| format!("{role}-{id}"))
            .collect();
        let mut threads = thread_names(up.id());
        let named_by = Instant::now() + Duration::from_secs(10);
        while !wanted.iter().all(|w| threads.contains(w)) && Instant::now() < named_by {
            std::thread::sleep(Duration::from_millis(100));
            threads = thread_names(up.id());
        }
        for name in &wanted {
            assert!(threads.contains(name), "no thread {name} in {threads:?}");
        }
        // Frames flow and get stored; every role's registry answers with its own figures.
        let deadline = Instant::now() + Duration::from_secs(30);
        let scrape_all = || -> Vec<(String, prometheus_parse::Scrape)> {
            endpoints
                .iter()
                .map(|(role, _, addr)| (role.clone(), common::scrape(addr)))
                .collect()
        };
        let sum = |all: &[(String, prometheus_parse::Scrape)], role: &str, name: &str| -> f64 {
            all.iter()
                .filter(|(r, _)| r == role)
                .map(|(_, s)| total(s, name))
                .sum()
        };
        let mut all = scrape_all();
        while (sum(&all, "mobile", "livecam_frames_delivered") < 10.0
            || sum(&all, "tier2", "livecam_storage_frames_stored") < 10.0
            || sum(&all, "tier2", "livecam_storage_fixes_stored") < 10.0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(300));
            all = scrape_all();
        }
        assert!(sum(&all, "mobile", "livecam_frames_delivered") >= 10.0);
        assert!(sum(&all, "tier2", "livecam_frames_delivered") >= 10.0);
        assert!(sum(&all, "tier2", "livecam_storage_frames_stored") >= 10.0);
        assert!(sum(&all, "tier2", "livecam_storage_fixes_stored") >= 10.0);
        assert_eq!(sum(&all, "tier2", "livecam_storage_write_errors"), 0.0);
        assert_eq!(sum(&all, "tier1", "livecam_tier1_managed_tier2s"), 4.0);
        assert_eq!(sum(&all, "backend", "livecam_frames_delivered"), 0.0);
        let backend = &all.iter().find(|(r, _)| r == "backend").expect("backend").1;
        assert!(
            backend
                .samples
                .iter()
                .any(|s| s.metric == "livecam_live_sockets"),
            "the backend's own metrics"
        );
        assert!(
            !backend
                .samples
                .iter()
                .any(|s| s.metric == "livecam_segments_in_total"),
            "not a role's"
        );
    });
    stop(&mut up, libc::SIGINT);
    let mut out = String::new();
    if let Some(mut stdout) = up.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
    let summary: serde_json::Value = serde_json::from_str(out.trim()).expect("a JSON summary");
    assert_eq!(summary["metrics"].as_array().map(Vec::len), Some(9));
    assert_eq!(summary["mobiles"].as_array().map(Vec::len), Some(2));
}
