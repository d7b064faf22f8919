//! The role processes for real: `livecam tier1|tier2|mobile --config` as separate processes on
//! loopback UDP, stopped with SIGTERM, each printing its JSON summary.

use std::process::Child;
use std::time::Duration;

mod common;
use common::roles::{livecam, port, spawn, stop, write};

#[test]
fn tier1_tier2_and_mobile_processes_stream_over_loopback() {
    let dir = std::env::temp_dir().join(format!("livecam-processes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (t1, t2a, t2b) = (port(), port(), port());
    let tier1 = write(
        &dir,
        "tier1.toml",
        &format!("id = 1\nlisten = \"127.0.0.1:{t1}\"\n"),
    );
    let tier2 = |id: u32, p: u16| {
        write(
            &dir,
            &format!("tier2-{id}.toml"),
            &format!("id = {id}\nlisten = \"127.0.0.1:{p}\"\ntier1 = [\"127.0.0.1:{t1}\"]\n"),
        )
    };
    let (c2a, c2b) = (tier2(11, t2a), tier2(12, t2b));
    let mobile = |id: u32| {
        write(
            &dir,
            &format!("mobile-{id}.toml"),
            &format!(
                "id = {id}\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 20.0\njpeg_quality = 80\n"
            ),
        )
    };
    let t1p = spawn("tier1", &tier1);
    let t2ap = spawn("tier2", &c2a);
    let t2bp = spawn("tier2", &c2b);
    // Let the tier-2s register before clients ask.
    std::thread::sleep(Duration::from_millis(600));
    let cars: Vec<Child> = (1001..=1004)
        .map(|id| spawn("mobile", &mobile(id)))
        .collect();
    std::thread::sleep(Duration::from_secs(3));

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
    assert_eq!(placed.len(), 2, "clients on tier-2s {placed:?}");
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
