//! The role processes for real: `livecam tier1|tier2|mobile --config` as separate processes on
//! loopback UDP, stopped with SIGTERM, each printing its JSON summary.

use std::process::Child;
use std::time::Duration;

mod common;
use common::roles::{livecam, port, spawn, stop, write, Keys};

#[test]
fn tier1_tier2_and_mobile_processes_stream_over_loopback() {
    let dir = std::env::temp_dir().join(format!("livecam-processes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (t1, t2a, t2b) = (port(), port(), port());
    let keys = Keys::make(&dir, "1001-1004");
    let tier1 = write(
        &dir,
        "tier1.toml",
        &format!(
            "id = 1\nlisten = \"127.0.0.1:{t1}\"\n{}",
            keys.identity("tier1", 1)
        ),
    );
    let tier2 = |id: u32, p: u16| {
        write(
            &dir,
            &format!("tier2-{id}.toml"),
            &format!(
                "id = {id}\nlisten = \"127.0.0.1:{p}\"\ntier1 = [\"127.0.0.1:{t1}\"]\n{}",
                keys.tier2(id)
            ),
        )
    };
    let (c2a, c2b) = (tier2(11, t2a), tier2(12, t2b));
    let mobile = |id: u32| {
        write(
            &dir,
            &format!("mobile-{id}.toml"),
            &format!(
                "id = {id}\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 20.0\njpeg_quality = 80\n{}",
                keys.mobile(id)
            ),
        )
    };
    let t1p = spawn("tier1", &tier1);
    let t2ap = spawn("tier2", &c2a);
    let t2bp = spawn("tier2", &c2b);
    // Let the tier-2s register before clients ask.
    std::thread::sleep(Duration::from_millis(600));
    // One after another, so each asks when the others' sessions already count in the loads.
    let cars: Vec<Child> = (1001..=1004)
        .map(|id| {
            let car = spawn("mobile", &mobile(id));
            std::thread::sleep(Duration::from_millis(300));
            car
        })
        .collect();
    // Two that must not get in: a device the tier-2s do not know, and one claiming to be
    // 1003 with a key of its own.
    let own_key = dir.join("own.key");
    let _ = std::fs::remove_file(&own_key);
    let _ = std::fs::remove_file(dir.join("own.key.pub"));
    let made = livecam()
        .arg("keygen")
        .arg(&own_key)
        .output()
        .expect("livecam keygen");
    assert!(made.status.success(), "{made:?}");
    let stranger = |id: u32| {
        let text = format!(
            "id = {id}\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 20.0\n{}key = {:?}\n",
            keys.cluster_key(),
            own_key.display().to_string()
        );
        spawn(
            "mobile",
            &write(&dir, &format!("stranger-{id}.toml"), &text),
        )
    };
    let strangers = [stranger(1005), stranger(1003)];
    std::thread::sleep(Duration::from_secs(3));

    let strangers: Vec<serde_json::Value> = strangers.into_iter().map(stop).collect();
    let cars: Vec<serde_json::Value> = cars.into_iter().map(stop).collect();
    let t2: Vec<serde_json::Value> = [t2ap, t2bp].into_iter().map(stop).collect();
    let t1_summary = stop(t1p);

    let mut placed = std::collections::BTreeSet::new();
    for car in &cars {
        let delivered = car["frames_delivered"].as_u64().unwrap_or(0);
        assert!(
            delivered >= 30,
            "a client delivered only {delivered} frames: {car}"
        );
        placed.insert(
            car["tier2"]
                .as_u64()
                .expect("a connected client names its tier-2"),
        );
    }
    let received: u64 = t2
        .iter()
        .map(|t| t["frames_delivered"].as_u64().unwrap_or(0))
        .sum();
    let acked: u64 = cars
        .iter()
        .map(|c| c["frames_delivered"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        received >= acked,
        "tier-2s received {received}, clients saw {acked} acknowledged"
    );
    for s in &strangers {
        assert!(
            s["tier2"].is_null(),
            "an unauthenticated client got a session: {s}"
        );
        assert_eq!(s["frames_delivered"], 0, "{s}");
    }
    let refused = |what: &str| -> u64 {
        t2.iter()
            .map(|t| t["gate"][what].as_u64().expect("gate figures"))
            .sum()
    };
    assert!(refused("unknown_device") >= 1, "{t2:?}");
    assert!(
        refused("failed") >= 1,
        "the impostor was not refused: {t2:?}"
    );
    assert!(refused("admitted") >= 4, "{t2:?}");
    for t in &t2 {
        assert_eq!(t["frames_corrupted"], 0, "{t}");
        assert_eq!(t["frames_duplicated"], 0, "{t}");
        assert_eq!(t["manager"], format!("127.0.0.1:{t1}"), "{t}");
    }
    assert_eq!(
        t1_summary["managed"],
        serde_json::json!([11, 12]),
        "{t1_summary}"
    );
    // The least loaded tier-2 answers first: four clients do not all land on one.
    assert_eq!(placed.len(), 2, "clients on tier-2s {placed:?}: {t2:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_names_the_field() {
    let dir = std::env::temp_dir().join(format!("livecam-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (
            "tier2",
            "id = 1\nlisten = \"127.0.0.1:1\"\ntier1 = []\n",
            "tier1",
        ),
        (
            "tier2",
            "id = 1\nlisten = \"127.0.0.1:1\"\ntier1 = [\"127.0.0.1:2\"]\ncapacity = 0\n",
            "capacity",
        ),
        (
            "tier2",
            "id = 1\nlisten = \"127.0.0.1:1\"\ntier1 = [\"127.0.0.1:2\"]\n",
            "key",
        ),
        (
            "tier2",
            "id = 1\nlisten = \"127.0.0.1:1\"\ntier1 = [\"127.0.0.1:2\"]\nkey = \"/nonexistent/cluster.key\"\ndevices = \"/nonexistent/d.toml\"\n",
            "key",
        ),
        (
            "mobile",
            "id = 1\ntier1 = [\"127.0.0.1:2\"]\n",
            "key",
        ),
        (
            "mobile",
            "id = 1\ntier1 = [\"127.0.0.1:2\"]\ninsecure = true\ncluster_key = \"00\"\n",
            "insecure",
        ),
        (
            "mobile",
            "id = 1\ntier1 = [\"127.0.0.1:2\"]\nfps = 0.0\n",
            "fps",
        ),
        (
            "mobile",
            "id = 1\ntier1 = [\"127.0.0.1:2\"]\nfsp = 10.0\n",
            "fsp",
        ),
        ("tier1", "id = 1\nlisten = \"nowhere\"\n", "listen"),
        ("tier1", "id = 1\nlisten = \"127.0.0.1:1\"\n", "identity"),
        (
            "tier1",
            "id = 1\nlisten = \"127.0.0.1:1\"\nidentity = \"/nonexistent/tier1-1.sign\"\n",
            "servers",
        ),
        (
            "mobile",
            "id = 1\ntier1 = [\"127.0.0.1:2\"]\ngps = \"gpsd:nowhere\"\n",
            "gps",
        ),
    ];
    for (i, (role, text, field)) in cases.iter().enumerate() {
        let path = write(&dir, &format!("bad{i}.toml"), text);
        let out = livecam()
            .args([*role, "--config"])
            .arg(&path)
            .output()
            .expect("run livecam");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role} accepted {text:?}");
        assert!(
            err.contains(field),
            "{role} {text:?}: error does not name {field}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of the sample named `name` (counters may carry `_total`).
fn value(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    use prometheus_parse::Value;
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name || x.metric == format!("{name}_total"))
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                s.samples.iter().map(|x| &x.metric).collect::<Vec<_>>()
            )
        });
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is {other:?}"),
    }
}

#[test]
fn every_role_serves_prometheus_metrics() {
    let dir = std::env::temp_dir().join(format!("livecam-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (t1, t2) = (port(), port());
    let tcp = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free TCP port")
            .to_string()
    };
    let (m1, m2, mm) = (tcp(), tcp(), tcp());
    let tier1 = spawn(
        "tier1",
        &write(
            &dir,
            "tier1.toml",
            &format!("id = 1\nlisten = \"127.0.0.1:{t1}\"\nmetrics = \"{m1}\"\ninsecure = true\n"),
        ),
    );
    let tier2 = spawn(
        "tier2",
        &write(
            &dir,
            "tier2.toml",
            &format!("id = 11\nlisten = \"127.0.0.1:{t2}\"\ntier1 = [\"127.0.0.1:{t1}\"]\ncapacity = 50\nmetrics = \"{m2}\"\ninsecure = true\n"),
        ),
    );
    std::thread::sleep(Duration::from_millis(600));
    let car = spawn(
        "mobile",
        &write(
            &dir,
            "mobile.toml",
            &format!("id = 7\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 20.0\nmetrics = \"{mm}\"\ninsecure = true\n"),
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (s1, s2, sm) = (
        common::scrape(&m1),
        common::scrape(&m2),
        common::scrape(&mm),
    );
    assert_eq!(value(&s1, "livecam_tier1_managed_tier2s"), 1.0);
    assert_eq!(value(&s2, "livecam_sessions"), 1.0);
    assert_eq!(value(&s2, "livecam_tier2_capacity"), 50.0);
    assert!(value(&s2, "livecam_segments_in") > 0.0);
    assert!(value(&s2, "livecam_frames_delivered") >= 10.0);
    assert_eq!(value(&s2, "livecam_datagrams_malformed"), 0.0);
    assert!(value(&sm, "livecam_frames_delivered") >= 10.0);
    assert!(value(&sm, "livecam_segments_out") >= value(&sm, "livecam_frames_delivered"));
    assert!(
        sm.samples
            .iter()
            .any(|x| x.metric == "livecam_frame_latency_ms"),
        "no latency histogram"
    );
    for child in [car, tier2, tier1] {
        stop(child);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The attacks of "Security, part 2" against real processes, from a socket of a stranger on
/// the same network: each does no harm, and the servers count what they refused.
#[test]
fn strangers_cannot_stop_a_camera_or_steer_the_cluster() {
    use livecam_system::proto::wire::{
        self, Command, CommandMsg, Heartbeat, ManagerChange, Message,
    };

    let dir = std::env::temp_dir().join(format!("livecam-attacks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (t1, t2) = (port(), port());
    let keys = Keys::make(&dir, "1001");
    let tier1 = write(
        &dir,
        "tier1.toml",
        &format!(
            "id = 1\nlisten = \"127.0.0.1:{t1}\"\n{}",
            keys.identity("tier1", 1)
        ),
    );
    let tier2 = write(
        &dir,
        "tier2.toml",
        &format!(
            "id = 11\nlisten = \"127.0.0.1:{t2}\"\ntier1 = [\"127.0.0.1:{t1}\"]\n{}",
            keys.tier2(11)
        ),
    );
    let mobile = write(
        &dir,
        "mobile.toml",
        &format!(
            "id = 1001\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 20.0\n{}",
            keys.mobile(1001)
        ),
    );
    let t1p = spawn("tier1", &tier1);
    let t2p = spawn("tier2", &tier2);
    std::thread::sleep(Duration::from_millis(600));
    let car = spawn("mobile", &mobile);
    std::thread::sleep(Duration::from_millis(1500));

    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").expect("attacker socket");
    let me = attacker.local_addr().expect("address");
    let send = |to: u16, m: &Message<'_>| {
        let mut b = Vec::new();
        m.encode(&mut b);
        attacker.send_to(&b, ("127.0.0.1", to)).expect("send");
        b.len()
    };
    let stop_cmd = Message::Command(CommandMsg {
        id: 77,
        client: 1001,
        command: Command::Stop,
    });
    // Five plain `Stop` commands (on main before the fix, these stopped the camera).
    for _ in 0..5 {
        send(t2, &stop_cmd);
    }
    // The real tier-2 re-registered at the attacker's address; its manager moved to the
    // attacker with an epoch that would stick for ever.
    send(
        t1,
        &Message::Heartbeat(Heartbeat {
            tier2: 11,
            epoch: 1_000,
            sessions: 0,
            capacity: 1_000_000,
        }),
    );
    send(
        t2,
        &Message::ManagerChange(ManagerChange {
            tier2: 11,
            manager: 1,
            manager_addr: me,
            epoch: u64::MAX,
        }),
    );
    // A `Stop` under the backend's name with a made-up signature.
    let mut inner = Vec::new();
    stop_cmd.encode(&mut inner);
    let mut forged = Vec::new();
    let start = wire::put_signed_head(&mut forged, 3, 1, u64::MAX / 2, &inner);
    forged.extend_from_slice(&[0x5a; wire::SIGNATURE_LEN]);
    wire::finish_signed(&mut forged, start);
    attacker.send_to(&forged, ("127.0.0.1", t2)).expect("send");
    // Nothing comes back to the stranger.
    attacker
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(
        attacker.recv_from(&mut buf).is_err(),
        "a server answered a stranger"
    );
    std::thread::sleep(Duration::from_millis(2500));

    let car = stop(car);
    let t2s = stop(t2p);
    let t1s = stop(t1p);
    // The camera kept filming at 20 fps through the attack (about 4.5 s in all; stopped at
    // the attack it would have sent about 30).
    let delivered = car["frames_delivered"].as_u64().unwrap_or(0);
    assert!(delivered >= 60, "the camera stopped: {car}");
    // The cluster was not steered: the tier-2 still at its address under its real manager.
    assert_eq!(t2s["manager"], format!("127.0.0.1:{t1}"), "{t2s}");
    assert_eq!(t1s["managed"], serde_json::json!([11]), "{t1s}");
    // And each attack was seen and counted.
    assert!(t2s["control"]["unsigned"].as_u64() >= Some(6), "{t2s}");
    assert!(t2s["control"]["forged"].as_u64() >= Some(1), "{t2s}");
    assert!(t1s["control"]["unsigned"].as_u64() >= Some(1), "{t1s}");
    assert!(t2s["control"]["accepted"].as_u64() > Some(0), "{t2s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Amplification against real processes: a stranger replays a real device's hello (made from
/// the device's key, as an attacker who recorded one would hold it) to a secure tier-1 that
/// manages three tier-2s, as the client sent it (padded) and with its padding cut, plus a
/// forged one. Whatever comes back to the sender's address (the victim's, had it forged its
/// source) within a second is no larger than what was sent, for each.
#[test]
fn a_secure_cluster_sends_a_stranger_no_more_bytes_than_it_got() {
    use livecam_system::proto::wire::{ConnectRequest, Message, PADDED_REQUEST_LEN};
    use livecam_system::runtime::security::ClusterKeys;
    use livecam_system::secure::Attempt;
    use livecam_system::time::Instant;

    let dir = std::env::temp_dir().join(format!("livecam-amplify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let t1 = port();
    let keys = Keys::make(&dir, "1001");
    let tier1 = write(
        &dir,
        "tier1.toml",
        &format!(
            "id = 1\nlisten = \"127.0.0.1:{t1}\"\n{}",
            keys.identity("tier1", 1)
        ),
    );
    let t1p = spawn("tier1", &tier1);
    let tier2s: Vec<Child> = [11, 12, 13]
        .into_iter()
        .map(|id| {
            let cfg = write(
                &dir,
                &format!("tier2-{id}.toml"),
                &format!(
                    "id = {id}\nlisten = \"127.0.0.1:{}\"\ntier1 = [\"127.0.0.1:{t1}\"]\n{}",
                    port(),
                    keys.tier2(id)
                ),
            );
            spawn("tier2", &cfg)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));

    let cluster = ClusterKeys::open(&dir.join("keys")).expect("the cluster's keys");
    let mut device = cluster.device_security(1001).expect("device 1001's key");
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").expect("attacker socket");
    attacker
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let exchange = |datagram: &[u8]| {
        attacker.send_to(datagram, ("127.0.0.1", t1)).expect("send");
        let (mut got, until) = (0, std::time::Instant::now() + Duration::from_secs(1));
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < until {
            if let Ok((n, _)) = attacker.recv_from(&mut buf) {
                got += n;
            }
        }
        got
    };
    let mut results = Vec::new();
    for (attempt, padded) in [(1, true), (2, false)] {
        let (_, hello) = device
            .hello(Instant::ZERO, Attempt::new(1001, attempt, 0))
            .expect("a hello");
        let mut req = ConnectRequest {
            client: 1001,
            attempt,
            boot_seq: 0,
            hello: &hello,
            padding: 0,
        };
        if padded {
            req.padding = (PADDED_REQUEST_LEN - Message::ConnectRequest(req).encoded_len()) as u16;
        }
        let mut d = Vec::new();
        Message::ConnectRequest(req).encode(&mut d);
        results.push((d.len(), exchange(&d)));
    }
    let forged = [0x5a; 112];
    let mut d = Vec::new();
    Message::ConnectRequest(ConnectRequest {
        client: 1001,
        attempt: 3,
        boot_seq: 0,
        hello: &forged,
        padding: 0,
    })
    .encode(&mut d);
    results.push((d.len(), exchange(&d)));

    let t1s = stop(t1p);
    let t2s: Vec<serde_json::Value> = tier2s.into_iter().map(stop).collect();
    eprintln!("bytes (in, out) per request: {results:?}");
    assert_eq!(t1s["managed"], serde_json::json!([11, 12, 13]), "{t1s}");
    for &(sent, got) in &results {
        assert!(got <= sent, "{got} bytes back for {sent}: {results:?}");
    }
    // The measurement saw real answers: three offers and the list for the padded hello.
    let offer = livecam_system::secure::handshake::offer_len();
    assert_eq!(offer, 82, "an offer with the gate's reply");
    assert!(results[0].1 > 3 * offer, "{results:?}");
    assert!(results[1].1 > offer, "{results:?}");
    let admitted: u64 = t2s
        .iter()
        .map(|s| s["gate"]["admitted"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        admitted >= 4,
        "tier-2s admitted the replayed hellos: {t2s:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTP/1.1 request from local address `from` (so one test can be two users at two
/// addresses on loopback); the status and the body.
fn http_from(from: std::net::IpAddr, to: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(from, 0))
            .expect("bind the client's address");
        let mut stream = socket.connect(to).await.expect("connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read the answer");
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    })
}

/// Web attacks against a real backend process, each failing to harm the real user: a guesser
/// at one address locks out only itself (the real admin, at another address, logs in), and a
/// cookie-authenticated request forged from another site is refused while the same request
/// from the page's own origin goes through.
#[test]
fn a_web_attacker_locks_out_itself_and_cannot_forge_cookie_requests() {
    let dir = std::env::temp_dir().join(format!("livecam-web-attacks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite:{}", dir.join("livecam.db").display());
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port");
    let keys = Keys::make(&dir, "1");
    let password = write(&dir, "admin-password", "the real admin password\n");
    let cfg = write(
        &dir,
        "backend.toml",
        &format!(
            "database = \"{db}\"\nhttp = \"{http}\"\nadmin_password_file = \"{}\"\n{}",
            password.display(),
            keys.identity("backend", 1)
        ),
    );
    let backend = spawn("backend", &cfg);
    let start = std::time::Instant::now();
    while ureq::get(&format!("http://{http}/healthz")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "backend never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = format!("Host: {http}\r\n");
    let login = |from: [u8; 4], password: &str| {
        let body = format!(r#"{{"name":"admin","password":"{password}"}}"#);
        http_from(
            from.into(),
            http,
            &format!(
                "POST /api/login HTTP/1.1\r\n{host}Content-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    // The guesser at 127.0.0.1: a few free failures, then locked, the right password too.
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(login([127, 0, 0, 1], &format!("guess {i}")).0);
    }
    assert!(statuses[..3].iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");
    assert_eq!(
        login([127, 0, 0, 1], "the real admin password").0,
        429,
        "the guesser's address is locked"
    );
    // The real admin, at another address, logs in.
    let (status, body) = login([127, 0, 0, 2], "the real admin password");
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let token = token["token"].as_str().expect("a token").to_string();
    // A page on another site makes the admin's browser POST a command with its cookie.
    let command = r#"{"kind":"snapshot"}"#;
    let post = |origin: &str| {
        http_from(
            [127, 0, 0, 2].into(),
            http,
            &format!(
                "POST /api/clients/1/commands HTTP/1.1\r\n{host}Origin: {origin}\r\n\
                 Cookie: livecam_session={token}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{command}",
                command.len()
            ),
        )
    };
    let (status, body) = post("https://evil.example");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross-origin"), "{body}");
    // The same request from the page's own origin is carried out (no such client: 404).
    let (status, body) = post(&format!("http://{http}"));
    assert!(status != 403 && status != 401, "{status} {body}");
    let _ = stop(backend);
    let _ = std::fs::remove_dir_all(&dir);
}
