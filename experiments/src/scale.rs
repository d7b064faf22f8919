//! Cost growth with fleet size: `livecam bench sim-scale`.
//!
//! Runs the reference scenario (`sim/scenarios/reference.toml`, event-driven backend) with its
//! camera group resized to each fleet size, and writes under `OUT/` (default
//! `reports/sim-scale/`): `sim-scale.csv` (one row per size), log-log charts of wall time and
//! trace events per wall second against the number of cameras, `index.html` and the
//! `report.json` that links the report from `reports/index.html`.
//!
//! What is scaled: the `camera` group's `count`; every camera still streams to the one
//! receiver over the same link. The start stagger is divided by the same factor, so the fleet
//! starts within the reference's window (20 x 7 ms) and every camera captures the same number
//! of frames whatever the fleet size: the work per camera is constant and wall time should
//! grow linearly. The slope of `log(wall)` against `log(cameras)` is a least-squares fit over
//! every size.
//!
//! The simulation is deterministic (each row's trace hash is a function of size and seed);
//! the timings are not: they are measured on this machine, as wall time and as the CPU time
//! of the thread that ran the simulation (`/proc/thread-self/schedstat`, when readable), which
//! a busy machine inflates less.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use livecam_sim::scenario::RoleKind;
use livecam_sim::{Scenario, Simulator};
use serde::Serialize;

use crate::chart::{self, Axis, Chart, Legend, Series, Stroke};
use crate::report::{esc, Meta, STYLE};
use crate::Error;

/// The scenario every size is derived from.
pub const REFERENCE: &str = include_str!("../../sim/scenarios/reference.toml");

/// The report's name: its directory under `reports/`.
pub const NAME: &str = "sim-scale";

/// Camera counts of the default sweep.
pub const DEFAULT_SIZES: [usize; 5] = [10, 30, 100, 300, 1000];

/// Most cameras one scenario may have (the simulated address plan holds 62 500 hosts).
pub const MAX_CAMERAS: usize = 50_000;

/// How to run the sweep.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Camera counts, ascending.
    pub sizes: Vec<usize>,
    /// Simulated seconds per run.
    pub seconds: f64,
    pub seed: u64,
    /// The report directory; its parent's `index.html` is rewritten to link it.
    pub out: PathBuf,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            sizes: DEFAULT_SIZES.to_vec(),
            seconds: 60.0,
            seed: 1,
            out: PathBuf::from("reports").join(NAME),
        }
    }
}

impl ScaleOptions {
    /// Refuses sizes and durations that make no sweep, naming the option.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Other(m));
        if self.sizes.is_empty() {
            return bad("--sizes: give at least one camera count".into());
        }
        if !self.sizes.windows(2).all(|w| w[0] < w[1]) {
            return bad(format!(
                "--sizes: camera counts must be ascending without repeats, got {:?}",
                self.sizes
            ));
        }
        if let Some(&n) = self.sizes.iter().find(|&&n| n == 0 || n > MAX_CAMERAS) {
            return bad(format!("--sizes: {n} is not within 1..={MAX_CAMERAS}"));
        }
        let settle = base()?.workload.settle_s;
        if !(self.seconds.is_finite() && self.seconds > settle && self.seconds <= 86_400.0) {
            return bad(format!(
                "--seconds: must be more than the {settle} s settle time and at most a day, \
                 got {}",
                self.seconds
            ));
        }
        Ok(())
    }
}

/// One fleet size's run.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub cameras: usize,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// CPU time of the simulating thread; `None` where `/proc` does not tell.
    pub cpu_seconds: Option<f64>,
    pub trace_events: u64,
    /// Trace events per wall second.
    pub events_per_second: f64,
    /// Simulated seconds per wall second (above 1: faster than real time).
    pub speedup: f64,
    pub frames_sent: u64,
    pub frames_delivered: u64,
    pub promises_kept: bool,
    pub trace_hash: String,
}

/// The whole sweep.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub seconds: f64,
    pub seed: u64,
    pub rows: Vec<ScaleRow>,
    /// Least-squares slope of `log(wall)` against `log(cameras)`.
    pub wall_slope: f64,
    /// The same fit over CPU time, when measured for every row.
    pub cpu_slope: Option<f64>,
}

fn base() -> Result<Scenario, Error> {
    Scenario::parse(REFERENCE).map_err(|e| Error::Other(format!("reference scenario: {e}")))
}

/// The reference scenario with `cameras` cameras and `seconds` of simulated time.
pub fn scenario(cameras: usize, seconds: f64) -> Result<Scenario, Error> {
    let mut sc = base()?;
    let group = sc
        .hosts
        .iter_mut()
        .find(|h| h.role == RoleKind::Camera)
        .ok_or_else(|| Error::Other("reference scenario: no camera group".into()))?;
    let reference = group.count.max(1);
    group.count = cameras;
    sc.workload.stagger_ms *= reference as f64 / cameras.max(1) as f64;
    sc.duration_s = seconds;
    sc.name = format!("reference-{cameras}");
    Ok(sc)
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (nanoseconds on CPU).
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// Runs one size and measures it.
pub fn run_one(cameras: usize, seconds: f64, seed: u64) -> Result<ScaleRow, Error> {
    let sc = scenario(cameras, seconds)?;
    let cpu0 = thread_cpu_seconds();
    let started = Instant::now();
    let outcome = livecam_sim::run(Simulator::Des, &sc, seed, None).map_err(|e| Error::Run {
        point: sc.name.clone(),
        seed,
        message: e.to_string(),
    })?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = match (cpu0, thread_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(ScaleRow {
        cameras,
        sim_seconds: outcome.sim_seconds,
        wall_seconds: wall,
        cpu_seconds: cpu,
        trace_events: outcome.trace_events,
        events_per_second: outcome.trace_events as f64 / wall,
        speedup: outcome.sim_seconds / wall,
        frames_sent: outcome.summary.frames_sent,
        frames_delivered: outcome.summary.frames_delivered,
        promises_kept: outcome.summary.promises_kept,
        trace_hash: outcome.trace_hash,
    })
}

/// Least-squares slope of `log(y)` against `log(x)`; `None` with fewer than two distinct
/// positive `x` or a non-positive `y`.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.iter().any(|&(x, y)| x <= 0.0 || y <= 0.0) {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.ln(), y.ln())).collect();
    let n = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Runs every size in turn (one thread: the figures are single-core), calling `progress`
/// after each, and writes the report.
pub fn run(opts: &ScaleOptions, mut progress: impl FnMut(&ScaleRow)) -> Result<ScaleReport, Error> {
    opts.validate()?;
    let mut rows = Vec::new();
    for &n in &opts.sizes {
        let row = run_one(n, opts.seconds, opts.seed)?;
        progress(&row);
        rows.push(row);
    }
    let wall: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.cameras as f64, r.wall_seconds))
        .collect();
    let cpu: Option<Vec<(f64, f64)>> = rows
        .iter()
        .map(|r| r.cpu_seconds.map(|c| (r.cameras as f64, c)))
        .collect();
    let report = ScaleReport {
        seconds: opts.seconds,
        seed: opts.seed,
        wall_slope: log_log_slope(&wall).unwrap_or(f64::NAN),
        cpu_slope: cpu.as_deref().and_then(log_log_slope),
        rows,
    };
    write(&report, opts)?;
    Ok(report)
}

/// The command that reproduces a report.
pub fn command(opts: &ScaleOptions) -> String {
    let sizes: Vec<String> = opts.sizes.iter().map(|n| n.to_string()).collect();
    format!(
        "cargo run --release -- bench sim-scale --sizes {} --seconds {} --seed {} --out {}",
        sizes.join(","),
        opts.seconds,
        opts.seed,
        opts.out.display()
    )
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> Error + '_ {
    move |e| Error::Data {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn fixed(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

/// Writes the CSV, charts, page and `report.json`, and relinks the parent index.
pub fn write(report: &ScaleReport, opts: &ScaleOptions) -> Result<(), Error> {
    let dir = &opts.out;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let path = dir.join(format!("{NAME}.csv"));
    let mut w = csv::Writer::from_path(&path).map_err(csv_err(&path))?;
    w.write_record([
        "cameras",
        "sim_seconds",
        "wall_seconds",
        "cpu_seconds",
        "trace_events",
        "events_per_second",
        "speedup",
        "frames_sent",
        "frames_delivered",
        "promises_kept",
        "trace_hash",
    ])
    .map_err(csv_err(&path))?;
    for r in &report.rows {
        w.write_record([
            r.cameras.to_string(),
            fixed(r.sim_seconds, 3),
            fixed(r.wall_seconds, 3),
            r.cpu_seconds.map(|c| fixed(c, 3)).unwrap_or_default(),
            r.trace_events.to_string(),
            fixed(r.events_per_second, 0),
            fixed(r.speedup, 3),
            r.frames_sent.to_string(),
            r.frames_delivered.to_string(),
            r.promises_kept.to_string(),
            r.trace_hash.clone(),
        ])
        .map_err(csv_err(&path))?;
    }
    w.flush().map_err(Error::io(&path))?;

    let charts = charts(report);
    for c in &charts {
        chart::render(c, dir)?;
    }
    let meta = Meta {
        name: NAME.into(),
        title: "Simulation cost against fleet size".into(),
        description: "Wall time and trace events per second of the reference scenario with \
                      10 to 1000 cameras (event-driven backend, one core)."
            .into(),
        command: command(opts),
        seeds: vec![opts.seed],
        points: report.rows.len(),
        runs: report.rows.len(),
        charts: charts.iter().map(|c| c.file.clone()).collect(),
        promise_failures: report.rows.iter().filter(|r| !r.promises_kept).count(),
    };
    let path = dir.join("index.html");
    std::fs::write(&path, page(report, opts, &meta, &charts)).map_err(Error::io(&path))?;
    let path = dir.join("report.json");
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&path, json + "\n").map_err(Error::io(&path))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::report::write_index(parent)?;
    }
    Ok(())
}

fn charts(report: &ScaleReport) -> Vec<Chart> {
    let xs: Vec<f64> = report.rows.iter().map(|r| r.cameras as f64).collect();
    let (lo, hi) = (
        xs.first().copied().unwrap_or(1.0),
        xs.last().copied().unwrap_or(1.0),
    );
    let first = report.rows.first();
    let mut time = vec![Series::line(
        "wall time",
        0,
        report
            .rows
            .iter()
            .map(|r| (r.cameras as f64, r.wall_seconds))
            .collect(),
    )];
    if report.rows.iter().all(|r| r.cpu_seconds.is_some()) {
        time.push(Series::line(
            "CPU time of the simulating thread",
            1,
            report
                .rows
                .iter()
                .filter_map(|r| r.cpu_seconds.map(|c| (r.cameras as f64, c)))
                .collect(),
        ));
    }
    if let Some(f) = first {
        time.push(Series::reference(
            "linear growth from the smallest fleet",
            Stroke::Dashed,
            vec![(lo, f.wall_seconds), (hi, f.wall_seconds * hi / lo)],
        ));
    }
    time.push(Series::reference(
        "real time (simulated seconds)",
        Stroke::Dotted,
        vec![(lo, report.seconds), (hi, report.seconds)],
    ));
    let rate = vec![Series::line(
        "trace events per wall second",
        2,
        report
            .rows
            .iter()
            .map(|r| (r.cameras as f64, r.events_per_second))
            .collect(),
    )];
    vec![
        Chart {
            file: format!("{NAME}-wall"),
            title: format!(
                "Wall time of a {} s reference run against fleet size",
                report.seconds
            ),
            x: Axis::log("cameras"),
            y: Axis::log("seconds"),
            series: time,
            bands: vec![],
            vlines: vec![],
            legend: Legend::UpperLeft,
            headroom: 0.0,
            caption: format!(
                "Wall time (and CPU time) of one run per fleet size, log-log; least-squares \
                 slope {} (1 is linear growth). Below the dotted line a run is faster than \
                 real time.",
                chart::fmt_num(report.wall_slope)
            ),
        },
        Chart {
            file: format!("{NAME}-rate"),
            title: "Trace events per wall second against fleet size".into(),
            x: Axis::log("cameras"),
            y: Axis::log("trace events per wall second"),
            series: rate,
            bands: vec![],
            vlines: vec![],
            legend: Legend::LowerLeft,
            headroom: 0.0,
            caption: "Trace events (datagrams sent, received and lost, role events) per wall \
                      second, log-log: flat means the cost per event does not grow with the \
                      fleet."
                .into(),
        },
    ]
}

fn page(report: &ScaleReport, opts: &ScaleOptions, meta: &Meta, charts: &[Chart]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{0}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <p><a href=\"../index.html\">All experiments</a></p>\n<h1>{0}</h1>\n<p>{1}</p>",
        esc(&meta.title),
        esc(&meta.description)
    );
    let _ = writeln!(
        s,
        "<h2>Reproduce</h2>\n<pre>{}</pre>\n<p>The reference scenario \
         (<code>sim/scenarios/reference.toml</code>: 10 fps, 10 KB frames, one receiver, 5% \
         loss, 20 ms delay) with its camera group resized and its start stagger divided by the \
         same factor, so every camera does the same work; {} simulated seconds, seed {}. The \
         trace hashes are a function of size and seed; the timings are this machine's and \
         vary from run to run. Data: <a href=\"{NAME}.csv\">{NAME}.csv</a>.</p>",
        esc(&meta.command),
        report.seconds,
        opts.seed
    );
    let cpu = report
        .cpu_slope
        .map(|c| format!(", over CPU time {}", fixed(c, 3)))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "<h2>Figures</h2>\n<p>Log-log slope of wall time against cameras (least squares over \
         every size): <b>{}</b>{cpu}. Goal: at most 1.15, and the 1000-camera run faster \
         than real time.</p>\n<table>\n<tr><th>cameras</th><th>wall s</th><th>CPU s</th>\
         <th>trace events</th><th>events per wall s</th><th>x real time</th>\
         <th>frames delivered / sent</th><th>promises</th><th>trace hash</th></tr>",
        fixed(report.wall_slope, 3)
    );
    for r in &report.rows {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{} / {}</td><td>{}</td><td><code>{}</code></td></tr>",
            r.cameras,
            fixed(r.wall_seconds, 2),
            r.cpu_seconds.map(|c| fixed(c, 2)).unwrap_or_default(),
            r.trace_events,
            fixed(r.events_per_second, 0),
            fixed(r.speedup, 2),
            r.frames_delivered,
            r.frames_sent,
            if r.promises_kept { "kept" } else { "FAILED" },
            r.trace_hash
        );
    }
    s.push_str("</table>\n<h2>Charts</h2>\n");
    for c in charts {
        let _ = writeln!(
            s,
            "<figure><img src=\"{0}.png\" alt=\"{1}\"><figcaption>{2} \
             (<a href=\"{0}.svg\">SVG</a>)</figcaption></figure>",
            c.file,
            esc(&c.title),
            esc(&c.caption)
        );
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_power_law_is_its_exponent() {
        let pts: Vec<(f64, f64)> = [10.0, 30.0, 100.0, 1000.0]
            .iter()
            .map(|&x: &f64| (x, 3.0 * x.powf(1.2)))
            .collect();
        let s = log_log_slope(&pts).unwrap();
        assert!((s - 1.2).abs() < 1e-9, "{s}");
        assert_eq!(log_log_slope(&[(10.0, 1.0)]), None);
        assert_eq!(log_log_slope(&[(10.0, 1.0), (20.0, 0.0)]), None);
    }

    #[test]
    fn scaled_scenario_keeps_the_fleet_window() {
        let sc = scenario(100, 10.0).unwrap();
        let cams = sc
            .hosts
            .iter()
            .find(|h| h.role == RoleKind::Camera)
            .unwrap();
        assert_eq!(cams.count, 100);
        assert!((sc.workload.stagger_ms * 100.0 - 7.0 * 20.0).abs() < 1e-9);
        assert_eq!(sc.duration_s, 10.0);
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let bad = |o: ScaleOptions| o.validate().unwrap_err().to_string();
        let d = ScaleOptions::default;
        assert!(bad(ScaleOptions {
            sizes: vec![],
            ..d()
        })
        .contains("--sizes"));
        assert!(bad(ScaleOptions {
            sizes: vec![30, 10],
            ..d()
        })
        .contains("ascending"));
        assert!(bad(ScaleOptions {
            sizes: vec![0, 10],
            ..d()
        })
        .contains("--sizes"));
        assert!(bad(ScaleOptions {
            seconds: 1.0,
            ..d()
        })
        .contains("--seconds"));
        assert!(bad(ScaleOptions {
            seconds: f64::NAN,
            ..d()
        })
        .contains("--seconds"));
        assert!(d().validate().is_ok());
    }
}
