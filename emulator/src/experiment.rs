//! `livecam emulate --experiment NAME`: the experiments that need the emulator (root, wall
//! clock), written like the simulator's reports (`OUT/NAME/`: CSV, plotters charts with the
//! experiments crate's chart code and font, `index.html`, and a `report.json` the report index
//! lists).
//!
//! - `tcp-vs-segment` ([`crate::baseline`]): the same frames over the segment protocol, TCP and
//!   SRT across the bridge at 0, 1, 5, 10 and 20 % packet loss.
//! - `sim-vs-emulator`: scenario files run in the des simulator and in the emulator (the real
//!   role processes), figures side by side against a stated tolerance.
//!
//! They live here rather than in `livecam experiment run`, whose sweeps are deterministic
//! simulations run in parallel and merged from shards: these runs take root, real time and the
//! machine to themselves, and are not reproducible bit for bit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use livecam_experiments::bounds;
use livecam_experiments::chart::{self, Axis, Chart, Legend, Series, Stroke};
use livecam_experiments::report::Meta;
use livecam_sim::{Scenario, Simulator};
use serde::Serialize;
use thiserror::Error;

use crate::baseline::{self, Measured, StreamSpec};
use crate::plan::{LoadError, Plan};
use crate::run::{RunError, RunOptions};

/// An experiment that could not be run or written.
#[derive(Debug, Error)]
pub enum ExperimentError {
    #[error("no emulator experiment named {0:?}: tcp-vs-segment or sim-vs-emulator")]
    Unknown(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
    #[error("simulating {scenario}: {message}")]
    Sim { scenario: String, message: String },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// What an emulator experiment is asked for (from `livecam emulate`'s arguments).
#[derive(Debug, Clone)]
pub struct ExperimentArgs {
    /// sim-vs-emulator: one scenario instead of the committed pair.
    pub scenario: Option<PathBuf>,
    /// Seconds per run (default: each scenario's).
    pub duration: Option<f64>,
    /// tcp-vs-segment: the link models' seed (default 1).
    pub seed: Option<u64>,
    /// Where reports go.
    pub out: PathBuf,
    /// tcp-vs-segment: frames per stream.
    pub frames: Option<u32>,
    /// tcp-vs-segment: loss rates in percent.
    pub losses: Option<Vec<f64>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError + '_ {
    move |source| ExperimentError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The scenarios `sim-vs-emulator` runs, with their emulator seeds.
pub const SIM_VS_EMULATOR: [&str; 2] = [
    "emulator/scenarios/stream.toml",
    "emulator/scenarios/lossy-stream.toml",
];
/// Seeds of the simulated runs per scenario (cheap), and of the emulated ones (real time).
const SIM_SEEDS: u64 = 5;
const EMU_SEEDS: u64 = 2;

/// Runs experiment `name` and writes its report; returns its directory.
pub fn run(name: &str, args: &ExperimentArgs, exe: &Path) -> Result<PathBuf, ExperimentError> {
    match name {
        "tcp-vs-segment" => tcp_vs_segment(args),
        "sim-vs-emulator" => sim_vs_emulator(args, exe),
        other => Err(ExperimentError::Unknown(other.to_string())),
    }
}

fn command(args: &ExperimentArgs, name: &str) -> String {
    let mut c = format!("sudo livecam emulate --experiment {name}");
    if let Some(f) = args.frames {
        let _ = write!(c, " --frames {f}");
    }
    if let Some(l) = &args.losses {
        let l: Vec<String> = l.iter().map(|v| chart::fmt_num(*v)).collect();
        let _ = write!(c, " --losses {}", l.join(","));
    }
    if let Some(d) = args.duration {
        let _ = write!(c, " --duration {d}");
    }
    c
}

fn prepare(out: &Path, name: &str) -> Result<PathBuf, ExperimentError> {
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), ExperimentError> {
    let mut w = csv::Writer::from_path(path).map_err(|e| write_err(path, e))?;
    for r in rows {
        w.serialize(r).map_err(|e| write_err(path, e))?;
    }
    w.flush().map_err(io(path))
}

fn write_meta(dir: &Path, meta: &Meta, out: &Path) -> Result<(), ExperimentError> {
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(meta).map_err(|e| write_err(&path, e))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    livecam_experiments::report::write_index(out).map_err(|e| write_err(out, e))
}

fn render(c: &Chart, dir: &Path) -> Result<(), ExperimentError> {
    chart::render(c, dir).map_err(|e| write_err(dir, e))
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid \
#ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{\
text-align:left}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}figcaption{\
color:#555;font-size:90%}code,pre{background:#f6f6f6;padding:2px 4px}";

fn html_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}\
         </title>\n<style>{STYLE}</style>\n</head>\n<body>\n<p><a href=\"../index.html\">all \
         reports</a></p>\n<h1>{title}</h1>\n"
    )
}

fn figure(s: &mut String, c: &Chart) {
    let _ = writeln!(
        s,
        "<figure><img src=\"{0}.png\" alt=\"{1}\"><figcaption>{2} (<a href=\"{0}.svg\">svg</a>)\
         </figcaption></figure>",
        c.file, c.title, c.caption
    );
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        chart::fmt_num(v)
    } else {
        "-".into()
    }
}

// ---------------------------------------------------------------------------------------------
// tcp-vs-segment

fn tcp_vs_segment(args: &ExperimentArgs) -> Result<PathBuf, ExperimentError> {
    let spec = StreamSpec {
        frames: args.frames.unwrap_or(300),
        seed: args.seed.unwrap_or(1),
        ..StreamSpec::default()
    };
    let losses = args
        .losses
        .clone()
        .unwrap_or_else(|| vec![0.0, 1.0, 5.0, 10.0, 20.0]);
    if spec.frames == 0 || losses.iter().any(|l| !(0.0..100.0).contains(l)) {
        return Err(ExperimentError::Usage(
            "--frames must be positive and --losses within 0..100 (percent)".into(),
        ));
    }
    let srt = baseline::srt_available();
    if !srt {
        eprintln!("{} not found: SRT is left out", baseline::SRT_TOOL);
    }
    let fractions: Vec<f64> = losses.iter().map(|l| l / 100.0).collect();
    let rows = baseline::sweep(&spec, &fractions, srt, |m| {
        eprintln!(
            "{:<8} loss {:>4.1}%: delivered {}/{} one-way p50 {} p99 {} ms, goodput {:.0} B/s",
            m.transport,
            m.loss * 100.0,
            m.frames_delivered,
            m.frames_sent,
            ms(m.one_way_ms_p50),
            ms(m.one_way_ms_p99),
            m.goodput_bytes_per_s
        )
    })?;
    let name = "tcp-vs-segment";
    let dir = prepare(&args.out, name)?;
    write_csv(&dir.join(format!("{name}.csv")), &rows)?;
    let charts = tcp_charts(&spec, &rows);
    for c in &charts {
        render(c, &dir)?;
    }
    let cmd = command(args, name);
    let title = "Segment protocol vs TCP vs SRT on the same emulated link";
    let html = tcp_html(title, &cmd, &spec, &rows, &charts, srt);
    let path = dir.join("index.html");
    std::fs::write(&path, html).map_err(io(&path))?;
    write_meta(
        &dir,
        &Meta {
            name: name.into(),
            title: format!("{title} (emulator, real time)"),
            description: "One-way frame latency and goodput, 0-20 % loss".into(),
            command: cmd,
            seeds: vec![spec.seed],
            points: losses.len(),
            runs: rows.len(),
            charts: charts.iter().map(|c| c.file.clone()).collect(),
            promise_failures: rows.iter().filter(|r| r.frames_corrupted > 0).count(),
        },
        &args.out,
    )?;
    Ok(dir)
}

fn by_transport(rows: &[Measured]) -> Vec<(&'static str, Vec<&Measured>)> {
    let mut out: Vec<(&'static str, Vec<&Measured>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(t, _)| *t == r.transport) {
            Some((_, v)) => v.push(r),
            None => out.push((r.transport, vec![r])),
        }
    }
    out
}

fn tcp_charts(spec: &StreamSpec, rows: &[Measured]) -> Vec<Chart> {
    let groups = by_transport(rows);
    let pts = |v: &[&Measured], f: &dyn Fn(&Measured) -> f64| -> Vec<(f64, f64)> {
        v.iter().map(|m| (m.loss * 100.0, f(m))).collect()
    };
    let mut latency = Vec::new();
    for (i, (t, v)) in groups.iter().enumerate() {
        latency.push(Series::line(
            format!("{t} p99"),
            i,
            pts(v, &|m| m.one_way_ms_p99),
        ));
        let mut p50 = Series::line(format!("{t} p50"), i, pts(v, &|m| m.one_way_ms_p50));
        p50.stroke = Stroke::Dotted;
        latency.push(p50);
    }
    // The floors on this link: NACK repair only at p99 (rounds formula), and one crossing.
    let mut losses: Vec<f64> = rows.iter().map(|m| m.loss).collect();
    losses.dedup();
    let limits = livecam_system::proto::SizeLimits::default();
    let floors: Vec<(f64, (f64, f64))> = losses
        .iter()
        .map(|&loss| {
            let f = bounds::latency_floors_ms(
                &spec.link(loss),
                &limits,
                spec.frame_bytes,
                0.99,
                bounds::Until::Delivery,
            );
            (loss * 100.0, f)
        })
        .collect();
    latency.push(Series::reference(
        "ARQ floor p99 (NACK only, rounds formula)",
        Stroke::Dashed,
        floors.iter().map(|(x, (_, arq))| (*x, *arq)).collect(),
    ));
    latency.push(Series {
        color: Some(7),
        ..Series::reference(
            "one-crossing floor (delay + serialisation)",
            Stroke::Dashed,
            floors.iter().map(|(x, (one, _))| (*x, *one)).collect(),
        )
    });
    let base = |file: &str, title: &str, y: Axis, series: Vec<Series>, caption: &str| Chart {
        file: file.into(),
        title: title.into(),
        x: Axis::linear("packet loss, each direction (%)"),
        y,
        series,
        bands: vec![],
        vlines: vec![],
        legend: Legend::UpperLeft,
        headroom: 0.3,
        caption: caption.into(),
    };
    vec![
        base(
            "tcp-vs-segment-latency",
            "One-way frame latency (capture to delivery)",
            Axis::log("latency (ms)"),
            latency,
            "One-way latency of delivered frames, from scheduled capture to the receiving \
             application having the whole frame: 99th percentile solid, median dotted. Dashed: \
             the ARQ floor at p99 (NACK repair only, best segment size) and, grey, the \
             one-crossing floor that parity can approach.",
        ),
        base(
            "tcp-vs-segment-goodput",
            "Goodput",
            Axis::linear("goodput (kB/s)"),
            groups
                .iter()
                .enumerate()
                .map(|(i, (t, v))| Series::line(*t, i, pts(v, &|m| m.goodput_bytes_per_s / 1e3)))
                .collect(),
            "Bytes of delivered frames per second, first capture to last delivery (the \
             stream offers 100 kB/s).",
        ),
        base(
            "tcp-vs-segment-delivered",
            "Frames delivered",
            Axis::linear("delivered (%)").range(0.0, 105.0),
            groups
                .iter()
                .enumerate()
                .map(|(i, (t, v))| Series::line(*t, i, pts(v, &|m| m.delivered_ratio() * 100.0)))
                .collect(),
            "Share of the frames the receiver had whole (TCP never gives up; the segment \
             protocol gives a frame up after 1 s; SRT drops what misses its 120 ms latency).",
        ),
    ]
}

fn tcp_html(
    title: &str,
    cmd: &str,
    spec: &StreamSpec,
    rows: &[Measured],
    charts: &[Chart],
    srt: bool,
) -> String {
    let mut s = html_head(title);
    let _ = writeln!(
        s,
        "<p>Regenerate (root, about {} minutes): <code>{cmd}</code></p>\n\
         <p>Two hosts in network namespaces behind the emulator's pnet bridge, which applies the \
         simulator's link model to every IP packet in both directions: {} ms one-way delay, no \
         jitter, no rate limit, MTU 1500, and independent random loss at the rate shown (data \
         and acknowledgments alike). Each transport streams the same {} frames of {} bytes at \
         {} fps (pseudo-random content, checked byte for byte at the receiver):</p>\n<ul>\n\
         <li><b>segment</b>: the segment protocol's own code (the Camera and Sink roles the \
         mobile and tier-2 processes run, seed policy, 1 s frame deadline) over UDP sockets in \
         the namespaces. The cluster's control plane is left out: it only sets the session \
         up.</li>\n<li><b>tcp</b>: one Linux TCP connection (default congestion control, \
         TCP_NODELAY), frames length-prefixed and written at their capture instant.</li>\n\
         <li><b>srt</b>: {}</li>\n</ul>\n\
         <p><b>What the latency is</b>: for all three, one way, from the frame's scheduled \
         capture instant to the instant the receiving application holds the whole frame, \
         both read on one monotonic clock (the namespaces share the host's clock). The camera's \
         own figure for the segment protocol (capture to acknowledgment, one more crossing) is \
         in the table as <i>ack</i>. Percentiles are over delivered frames: read them with the \
         delivered share, since a transport can buy latency by giving frames up.</p>",
        (rows.len() as f64 * (f64::from(spec.frames) / spec.fps + 3.0) / 60.0).ceil(),
        spec.delay_ms,
        spec.frames,
        spec.frame_bytes,
        spec.fps,
        if srt {
            "<code>srt-live-transmit</code> (live mode, 120 ms latency, its default) on both \
             hosts, fed the frames as 1316-byte UDP datagrams on the sender's loopback; a \
             frame counts when all its datagrams came out at the receiver."
        } else {
            "not run: <code>srt-live-transmit</code> (Debian <code>srt-tools</code>) was not \
             found."
        }
    );
    let _ = writeln!(
        s,
        "<table>\n<tr><th>loss %</th><th>transport</th><th>delivered</th><th>p50 ms</th>\
         <th>p99 ms</th><th>max ms</th><th>goodput kB/s</th><th>ack p50 / p99 ms</th>\
         <th>packets fwd (lost)</th><th>packets back (lost)</th></tr>"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.1}</td><td>{}</td><td>{} ({})</td><td>{} ({})</td></tr>",
            chart::fmt_num(r.loss * 100.0),
            r.transport,
            r.frames_delivered,
            r.frames_sent,
            ms(r.one_way_ms_p50),
            ms(r.one_way_ms_p99),
            ms(r.one_way_ms_max),
            r.goodput_bytes_per_s / 1e3,
            match (r.ack_ms_p50, r.ack_ms_p99) {
                (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
                _ => "-".into(),
            },
            r.packets_forward,
            r.packets_forward_lost,
            r.packets_back,
            r.packets_back_lost
        );
    }
    s.push_str("</table>\n<h2>Verdict, from these figures</h2>\n<ul>\n");
    for line in verdict(rows) {
        let _ = writeln!(s, "<li>{line}</li>");
    }
    s.push_str("</ul>\n");
    for c in charts {
        figure(&mut s, c);
    }
    s.push_str(
        "<p>Data: <a href=\"tcp-vs-segment.csv\">tcp-vs-segment.csv</a>. Wall-clock runs on \
         a shared machine: repeat runs differ by scheduling noise, mostly in the tails.</p>\n\
         </body>\n</html>\n",
    );
    s
}

/// Sentences comparing the segment protocol with TCP (and SRT) at each loss rate.
pub fn verdict(rows: &[Measured]) -> Vec<String> {
    let mut out = Vec::new();
    let mut losses: Vec<f64> = rows.iter().map(|r| r.loss).collect();
    losses.dedup();
    for loss in losses {
        let find = |t: &str| rows.iter().find(|r| r.loss == loss && r.transport == t);
        let (Some(seg), Some(tcp)) = (find("segment"), find("tcp")) else {
            continue;
        };
        let mut line = format!(
            "{} % loss: segment p99 {} ms ({:.0} % delivered) vs TCP p99 {} ms ({:.0} %)",
            chart::fmt_num(loss * 100.0),
            ms(seg.one_way_ms_p99),
            seg.delivered_ratio() * 100.0,
            ms(tcp.one_way_ms_p99),
            tcp.delivered_ratio() * 100.0
        );
        if let Some(srt) = find("srt") {
            let _ = write!(
                line,
                ", SRT p99 {} ms ({:.0} %)",
                ms(srt.one_way_ms_p99),
                srt.delivered_ratio() * 100.0
            );
        }
        let better = seg.one_way_ms_p99 < tcp.one_way_ms_p99;
        let _ = write!(
            line,
            ": the segment protocol's tail is {}",
            if better {
                format!(
                    "{:.1}x shorter than TCP's",
                    tcp.one_way_ms_p99 / seg.one_way_ms_p99
                )
            } else {
                "not shorter than TCP's".into()
            }
        );
        out.push(line + ".");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// sim-vs-emulator

/// One scenario's figures from one side (mean over its seeds).
#[derive(Clone, Debug, Serialize)]
pub struct SideFigures {
    pub scenario: String,
    pub side: &'static str,
    pub runs: u64,
    pub frames_sent: f64,
    pub delivered_ratio: f64,
    /// Capture to acknowledgment at the camera, both sides (the same Camera code).
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub final_segment_size: f64,
    pub frame_bytes: f64,
    /// Datagrams (sim) or IP packets (emulator) lost on the data direction, over offered.
    pub link_loss_ratio: f64,
}

/// The tolerance a figure must meet for the two sides to agree.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Tolerance {
    pub delivered_ratio_abs: f64,
    pub p50_rel: f64,
    pub p50_abs_ms: f64,
    pub p99_rel: f64,
    pub p99_abs_ms: f64,
    pub segment_size_rel: f64,
}

/// The stated tolerance: medians within 25 % or 5 ms, 99th percentiles within 50 % or 20 ms
/// (tails of a few hundred frames are noisy on both sides), delivered share within 3 points,
/// segment size within 25 %.
pub const TOLERANCE: Tolerance = Tolerance {
    delivered_ratio_abs: 0.03,
    p50_rel: 0.25,
    p50_abs_ms: 5.0,
    p99_rel: 0.5,
    p99_abs_ms: 20.0,
    segment_size_rel: 0.25,
};

fn within(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    let d = (a - b).abs();
    d <= abs || d <= rel * a.abs().max(b.abs())
}

/// Which figures of `sim` and `emu` agree: `(figure, agrees)`.
pub fn agreement(sim: &SideFigures, emu: &SideFigures) -> Vec<(&'static str, bool)> {
    let t = TOLERANCE;
    vec![
        (
            "delivered",
            (sim.delivered_ratio - emu.delivered_ratio).abs() <= t.delivered_ratio_abs,
        ),
        (
            "p50",
            within(
                sim.latency_ms_p50,
                emu.latency_ms_p50,
                t.p50_rel,
                t.p50_abs_ms,
            ),
        ),
        (
            "p99",
            within(
                sim.latency_ms_p99,
                emu.latency_ms_p99,
                t.p99_rel,
                t.p99_abs_ms,
            ),
        ),
        (
            "segment size",
            within(
                sim.final_segment_size,
                emu.final_segment_size,
                t.segment_size_rel,
                0.0,
            ),
        ),
    ]
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn simulate(path: &Path, duration: Option<f64>) -> Result<SideFigures, ExperimentError> {
    let name = path.display().to_string();
    let mut sc = Scenario::load(path).map_err(|e| ExperimentError::Sim {
        scenario: name.clone(),
        message: e.to_string(),
    })?;
    if let Some(d) = duration {
        sc.duration_s = d;
    }
    let mut cols: [Vec<f64>; 7] = Default::default();
    for seed in 1..=SIM_SEEDS {
        let o = livecam_sim::run(Simulator::Des, &sc, seed, None).map_err(|e| {
            ExperimentError::Sim {
                scenario: name.clone(),
                message: e.to_string(),
            }
        })?;
        let s = &o.summary;
        cols[0].push(s.frames_sent as f64);
        cols[1].push(s.frames_delivered as f64 / (s.frames_sent.max(1)) as f64);
        cols[2].push(s.latency_ms_p50);
        cols[3].push(s.latency_ms_p99);
        cols[4].push(s.final_segment_size_mean);
        cols[5].push(sc.workload.frame_bytes as f64);
        cols[6].push(s.datagrams_lost_by_link as f64 / (s.segments_sent.max(1)) as f64);
    }
    Ok(SideFigures {
        scenario: sc.name.clone(),
        side: "sim (des)",
        runs: SIM_SEEDS,
        frames_sent: mean(&cols[0]),
        delivered_ratio: mean(&cols[1]),
        latency_ms_p50: mean(&cols[2]),
        latency_ms_p99: mean(&cols[3]),
        final_segment_size: mean(&cols[4]),
        frame_bytes: mean(&cols[5]),
        link_loss_ratio: mean(&cols[6]),
    })
}

fn emulate(path: &Path, duration: Option<f64>, exe: &Path) -> Result<SideFigures, ExperimentError> {
    let mut cols: [Vec<f64>; 7] = Default::default();
    let mut scenario = String::new();
    for seed in 1..=EMU_SEEDS {
        let plan = Plan::load(path, Some(seed))?;
        scenario = plan.name.clone();
        let r = crate::run::run(
            &plan,
            &RunOptions {
                relay: false,
                duration_s: duration,
                exe: exe.to_path_buf(),
            },
        )?;
        let t = &r.totals;
        let mobile = r.hosts.iter().find(|h| h.role == "mobile");
        let seg = mobile
            .and_then(|h| h.summary.get("final_segment_size"))
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN);
        let (offered, lost) = r
            .links
            .iter()
            .filter(|l| mobile.is_some_and(|m| m.name == l.from))
            .fold((0u64, 0u64), |(o, l), x| {
                (o + x.stats.offered, l + x.stats.lost())
            });
        cols[0].push(t.frames_sent as f64);
        cols[1].push(t.frames_delivered as f64 / (t.frames_sent.max(1)) as f64);
        cols[2].push(t.latency_ms_p50);
        cols[3].push(t.latency_ms_p99);
        cols[4].push(seg);
        cols[5].push(t.bytes_delivered as f64 / (t.frames_delivered.max(1)) as f64);
        cols[6].push(lost as f64 / (offered.max(1)) as f64);
    }
    Ok(SideFigures {
        scenario,
        side: "emulator",
        runs: EMU_SEEDS,
        frames_sent: mean(&cols[0]),
        delivered_ratio: mean(&cols[1]),
        latency_ms_p50: mean(&cols[2]),
        latency_ms_p99: mean(&cols[3]),
        final_segment_size: mean(&cols[4]),
        frame_bytes: mean(&cols[5]),
        link_loss_ratio: mean(&cols[6]),
    })
}

fn sim_vs_emulator(args: &ExperimentArgs, exe: &Path) -> Result<PathBuf, ExperimentError> {
    let paths: Vec<PathBuf> = match &args.scenario {
        Some(p) => vec![p.clone()],
        None => SIM_VS_EMULATOR.iter().map(PathBuf::from).collect(),
    };
    let mut rows = Vec::new();
    for p in &paths {
        let sim = simulate(p, args.duration)?;
        let emu = emulate(p, args.duration, exe)?;
        eprintln!(
            "{}: sim delivered {:.3} p50 {} p99 {} seg {}; emulator delivered {:.3} p50 {} \
             p99 {} seg {}",
            sim.scenario,
            sim.delivered_ratio,
            ms(sim.latency_ms_p50),
            ms(sim.latency_ms_p99),
            ms(sim.final_segment_size),
            emu.delivered_ratio,
            ms(emu.latency_ms_p50),
            ms(emu.latency_ms_p99),
            ms(emu.final_segment_size)
        );
        rows.push((p.clone(), sim, emu));
    }
    let name = "sim-vs-emulator";
    let dir = prepare(&args.out, name)?;
    let flat: Vec<SideFigures> = rows
        .iter()
        .flat_map(|(_, s, e)| [s.clone(), e.clone()])
        .collect();
    write_csv(&dir.join(format!("{name}.csv")), &flat)?;
    let chart = sim_chart(&rows);
    render(&chart, &dir)?;
    let mut cmd = format!("sudo livecam emulate --experiment {name}");
    if let Some(d) = args.duration {
        let _ = write!(cmd, " --duration {d}");
    }
    if let Some(p) = &args.scenario {
        let _ = write!(cmd, " {}", p.display());
    }
    let title = "Simulator vs emulator: the same scenario file";
    let path = dir.join("index.html");
    std::fs::write(&path, sim_html(title, &cmd, &rows, &chart)).map_err(io(&path))?;
    let disagreements = rows
        .iter()
        .map(|(_, s, e)| agreement(s, e).iter().filter(|(_, ok)| !ok).count())
        .sum();
    write_meta(
        &dir,
        &Meta {
            name: name.into(),
            title: format!("{title} (emulator, real time)"),
            description: "Delivered share, latency and segment size, des vs emulator".into(),
            command: cmd,
            seeds: (1..=SIM_SEEDS).collect(),
            points: rows.len(),
            runs: rows.len() * (SIM_SEEDS + EMU_SEEDS) as usize,
            charts: vec![chart.file.clone()],
            promise_failures: disagreements,
        },
        &args.out,
    )?;
    Ok(dir)
}

type SimRow = (PathBuf, SideFigures, SideFigures);

fn sim_chart(rows: &[SimRow]) -> Chart {
    let mut series = Vec::new();
    for (i, (_, s, e)) in rows.iter().enumerate() {
        let x = i as f64 + 1.0;
        let mut sim = Series::line(
            format!("{} sim p50/p99", s.scenario),
            2 * i,
            vec![(x - 0.1, s.latency_ms_p50), (x - 0.1, s.latency_ms_p99)],
        );
        sim.markers = true;
        let mut emu = Series::line(
            format!("{} emulator p50/p99", e.scenario),
            2 * i + 1,
            vec![(x + 0.1, e.latency_ms_p50), (x + 0.1, e.latency_ms_p99)],
        );
        emu.stroke = Stroke::Dashed;
        series.push(sim);
        series.push(emu);
    }
    Chart {
        file: "sim-vs-emulator-latency".into(),
        title: "Frame latency (capture to ACK): simulation vs emulation".into(),
        x: Axis::linear("scenario").range(0.5, rows.len() as f64 + 0.5),
        y: Axis::log("latency (ms)"),
        series,
        bands: vec![],
        vlines: vec![],
        legend: Legend::UpperLeft,
        headroom: 0.3,
        caption: "Each bar joins a side's median (lower point) and 99th percentile (upper), \
                  per scenario (x = 1, 2, ... in table order): simulation solid, emulator \
                  dashed."
            .into(),
    }
}

fn sim_html(title: &str, cmd: &str, rows: &[SimRow], chart: &Chart) -> String {
    let t = TOLERANCE;
    let mut s = html_head(title);
    let _ = writeln!(
        s,
        "<p>Regenerate (root, about {} minute(s)): <code>{cmd}</code></p>\n\
         <p>Each scenario file runs in the des simulator ({SIM_SEEDS} seeds) and in the \
         emulator ({EMU_SEEDS} seeds: the real <code>livecam tier1|tier2|mobile</code> \
         processes in namespaces behind the pnet bridge, the same link models). Figures are \
         means over seeds. Latency on both sides is the camera's: frame capture to \
         acknowledgment, from the same Camera code.</p>\n<p><b>Tolerance</b>: delivered share \
         within {} points; median within {} % or {} ms; 99th percentile within {} % or {} ms; \
         final segment size within {} %.</p>",
        rows.len().max(1),
        t.delivered_ratio_abs * 100.0,
        t.p50_rel * 100.0,
        t.p50_abs_ms,
        t.p99_rel * 100.0,
        t.p99_abs_ms,
        t.segment_size_rel * 100.0
    );
    s.push_str(
        "<table>\n<tr><th>scenario</th><th>side</th><th>runs</th><th>frames sent</th>\
         <th>delivered</th><th>p50 ms</th><th>p99 ms</th><th>final segment B</th>\
         <th>frame B</th><th>link loss</th></tr>\n",
    );
    for (p, sim, emu) in rows {
        for f in [sim, emu] {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.3}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
                p.display(),
                f.side,
                f.runs,
                f.frames_sent,
                f.delivered_ratio,
                ms(f.latency_ms_p50),
                ms(f.latency_ms_p99),
                ms(f.final_segment_size),
                ms(f.frame_bytes),
                f.link_loss_ratio
            );
        }
    }
    s.push_str("</table>\n<h2>Agreement</h2>\n<ul>\n");
    for (p, sim, emu) in rows {
        let a = agreement(sim, emu);
        let ok: Vec<&str> = a.iter().filter(|x| x.1).map(|x| x.0).collect();
        let bad: Vec<&str> = a.iter().filter(|x| !x.1).map(|x| x.0).collect();
        let _ = writeln!(
            s,
            "<li>{}: within tolerance: {}; outside: {}.</li>",
            p.display(),
            if ok.is_empty() {
                "none".into()
            } else {
                ok.join(", ")
            },
            if bad.is_empty() {
                "none".into()
            } else {
                bad.join(", ")
            }
        );
    }
    s.push_str("</ul>\n");
    s.push_str(SIM_NOTES);
    figure(&mut s, chart);
    s.push_str(
        "<p>Data: <a href=\"sim-vs-emulator.csv\">sim-vs-emulator.csv</a>.</p>\n</body>\n\
         </html>\n",
    );
    s
}

/// What differs by construction between the two sides.
const SIM_NOTES: &str = "<h2>Known differences by construction</h2>\n<ul>\n\
<li><b>Frames</b>: the simulator streams <code>frame_bytes</code> of pseudo-random content; \
the mobile process streams synthetic-camera JPEGs with a GPS fix (their size is the \
camera's, shown as <i>frame B</i>).</li>\n\
<li><b>Start and count</b>: the simulator starts mobile client <i>i</i> at \
<code>stagger_ms</code> x its host index and stops capturing <code>settle_s</code> before the \
end; the emulator starts it once the tier-2s registered and captures until the end. Compare \
shares and percentiles, not counts.</li>\n\
<li><b>Loss unit</b>: the simulator loses a segment's datagram as a whole with the \
probability of any of its MTU-sized fragments; the bridge loses the kernel's real IP \
fragments one by one. The same per-packet rate, counted in different units (the <i>link \
loss</i> column).</li>\n\
<li><b>Time</b>: the simulator's hosts take no time to compute; the emulated ones share two \
cores with the bridge, which adds tens of microseconds per packet and, under load, \
scheduling delays of milliseconds: it shows in the tails.</li>\n</ul>\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn side(p50: f64, p99: f64, delivered: f64, seg: f64) -> SideFigures {
        SideFigures {
            scenario: "s".into(),
            side: "x",
            runs: 1,
            frames_sent: 100.0,
            delivered_ratio: delivered,
            latency_ms_p50: p50,
            latency_ms_p99: p99,
            final_segment_size: seg,
            frame_bytes: 1e4,
            link_loss_ratio: 0.0,
        }
    }

    #[test]
    fn agreement_applies_the_stated_tolerance() {
        let a = side(20.0, 100.0, 1.0, 1000.0);
        // p50 off by 4 ms (abs ok), p99 by 45 % (rel ok), size by 20 %: all agree.
        let ok = agreement(&a, &side(24.0, 145.0, 0.98, 1200.0));
        assert!(ok.iter().all(|x| x.1), "{ok:?}");
        // p50 off by 33 % and 20 ms, delivered by 5 points, size 3x: those differ.
        let bad = agreement(
            &side(40.0, 100.0, 1.0, 2000.0),
            &side(60.0, 110.0, 0.95, 6000.0),
        );
        let names: Vec<_> = bad.iter().filter(|x| !x.1).map(|x| x.0).collect();
        assert_eq!(names, ["delivered", "p50", "segment size"]);
    }
}
