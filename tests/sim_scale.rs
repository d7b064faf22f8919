//! `livecam bench sim-scale` on two small fleets: the same code path as the full sweep
//! (scenario scaling, runs, CSV, charts, page, index link), in a few seconds.

use std::path::PathBuf;

use livecam_experiments::scale::{self, ScaleOptions};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("livecam-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn two_small_fleets_write_the_whole_report() {
    let root = scratch("sim-scale");
    let opts = ScaleOptions {
        sizes: vec![4, 12],
        seconds: 6.0,
        seed: 3,
        out: root.join("sim-scale"),
    };
    let mut seen = Vec::new();
    let report = scale::run(&opts, |r| seen.push(r.cameras)).expect("sweep runs");
    assert_eq!(seen, [4, 12]);
    assert_eq!(report.rows.len(), 2);
    for r in &report.rows {
        assert!(r.promises_kept, "{} cameras broke a promise", r.cameras);
        assert_eq!(r.sim_seconds, 6.0);
        assert!(r.frames_delivered > 0 && r.trace_events > 0);
        assert!(r.wall_seconds > 0.0 && r.events_per_second > 0.0);
        assert_eq!(r.trace_hash.len(), 32);
    }
    // Three times the cameras, three times the frames give or take one per camera (the
    // fleet starts in the same window: same work per camera).
    let (small, big) = (&report.rows[0], &report.rows[1]);
    assert!(
        big.frames_sent.abs_diff(3 * small.frames_sent) <= 12,
        "{} frames from 12 cameras, {} from 4",
        big.frames_sent,
        small.frames_sent
    );
    assert!(report.wall_slope.is_finite());

    let csv = std::fs::read_to_string(opts.out.join("sim-scale.csv")).expect("CSV written");
    let lines: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0][0], "cameras");
    let col = |name: &str| lines[0].iter().position(|c| *c == name).expect(name);
    assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    assert_eq!(lines[1][col("cameras")], "4");
    assert_eq!(lines[2][col("cameras")], "12");
    assert_eq!(lines[2][col("trace_hash")], big.trace_hash);
    assert_eq!(lines[1][col("promises_kept")], "true");

    for f in [
        "index.html",
        "report.json",
        "sim-scale-wall.png",
        "sim-scale-wall.svg",
        "sim-scale-rate.png",
        "sim-scale-rate.svg",
    ] {
        assert!(opts.out.join(f).is_file(), "{f} missing");
    }
    let page = std::fs::read_to_string(opts.out.join("index.html")).unwrap();
    assert!(page.contains(&big.trace_hash) && page.contains("sim-scale-wall.png"));
    let index = std::fs::read_to_string(root.join("index.html")).expect("parent index");
    assert!(index.contains("href=\"sim-scale/index.html\""), "{index}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn same_size_and_seed_same_trace_hash() {
    let a = scale::run_one(8, 5.0, 11).unwrap();
    let b = scale::run_one(8, 5.0, 11).unwrap();
    let c = scale::run_one(8, 5.0, 12).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.trace_events, b.trace_events);
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn nonsense_options_are_refused() {
    let opts = ScaleOptions {
        sizes: vec![10, 10],
        out: scratch("sim-scale-bad"),
        ..ScaleOptions::default()
    };
    let err = scale::run(&opts, |_| {}).unwrap_err().to_string();
    assert!(err.contains("--sizes"), "{err}");
    assert!(!opts.out.exists(), "nothing written for refused options");
}
