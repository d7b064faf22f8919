//! From a sweep's runs to its charts and tables, one analysis per [`Kind`].

mod bonding;

use std::collections::BTreeMap;

use livecam_sim::scenario::Fault;
use livecam_sim::Scenario;
use livecam_system::link::LinkConfig;

use crate::bounds;
use crate::chart::{fmt_num, Axis, Chart, Legend, Series, Stroke};
use crate::runner::RunRecord;
use crate::sweep::{Kind, Point, Sweep};
use crate::Error;

/// A table of figures for the report.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub note: String,
}

/// What an analysis draws and tabulates.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub charts: Vec<Chart>,
    pub tables: Vec<Table>,
}

/// Figures whose spread over seeds the summary CSV gives.
pub fn key_metrics(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::PolicyVsLoss => &[
            "goodput_bytes_per_s",
            "efficiency",
            "latency_ms_p50",
            "latency_ms_p99",
        ],
        Kind::SegmentSizeTrace => &["efficiency", "final_segment_size_mean"],
        Kind::ClusterBalance => &["jain_index", "max_over_mean", "setup_ms_p99"],
        Kind::Failover => &["frames_delivered", "failover_ms_max"],
        Kind::CapacityAdaptation => &["frames_delivered", "latency_ms_p99"],
        Kind::Bonding => &["frames_delivered", "latency_ms_p99", "wire_per_frame_byte"],
    }
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (0 for fewer than two values).
pub fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// The runs of each point, by point index.
fn by_point<'a>(sweep: &Sweep, records: &'a [RunRecord]) -> Vec<Vec<&'a RunRecord>> {
    let mut v: Vec<Vec<&RunRecord>> = vec![Vec::new(); sweep.points.len()];
    for r in records {
        if let Some(slot) = v.get_mut(r.point) {
            slot.push(r);
        }
    }
    v
}

fn metric_mean(runs: &[&RunRecord], name: &str) -> f64 {
    mean(&runs.iter().map(|r| r.metric(name)).collect::<Vec<_>>())
}

/// Distinct values of parameter `name`, in point order.
fn distinct(sweep: &Sweep, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &sweep.points {
        let v = p.text(name);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn scenario(sweep: &Sweep, p: &Point) -> Result<Scenario, Error> {
    sweep.scenario(p).map_err(|message| Error::Sweep {
        file: format!("{}.toml", sweep.name),
        message,
    })
}

/// Mean of several series sampled on the same x grid (the first series' x values).
fn mean_series(series: &[&Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let Some(first) = series.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let ys: Vec<f64> = series
                .iter()
                .filter_map(|s| s.get(i).map(|p| p.1))
                .collect();
            (first[i].0, mean(&ys))
        })
        .collect()
}

/// Draws the sweep's charts and tables.
pub fn analyse(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    match sweep.kind {
        Kind::PolicyVsLoss => policy_vs_loss(sweep, records),
        Kind::SegmentSizeTrace => segment_size_trace(sweep, records),
        Kind::ClusterBalance => cluster_balance(sweep, records),
        Kind::Failover => failover(sweep, records),
        Kind::CapacityAdaptation => capacity_adaptation(sweep, records),
        Kind::Bonding => bonding::bonding(sweep, records),
    }
}

/// A point's transport: its size policy, with `+fec:KIND` when parity is on.
fn transport(p: &crate::sweep::Point) -> String {
    match p.text("fec").as_str() {
        "" | "off" => p.text("policy"),
        fec => format!("{}+fec:{fec}", p.text("policy")),
    }
}

fn policy_label(p: &str) -> String {
    if let Some((policy, fec)) = p.split_once("+fec:") {
        return format!("{} + FEC ({fec})", policy_label(policy));
    }
    match p {
        "seed" => "seed rule (+/-10%)".into(),
        "model" => "model-based".into(),
        other => match other.strip_prefix("fixed:") {
            Some(n) => format!("fixed {n} B"),
            None => other.into(),
        },
    }
}

/// The channel's x value: packet loss, bit error rate, or the bursty channel's mean loss.
fn channel_x(family: &str, link: &LinkConfig) -> f64 {
    match family {
        "ber" => link.bit_error_rate,
        "bursty" => link.burst.as_ref().map_or(0.0, |b| b.mean_loss()),
        _ => link.loss,
    }
}

/// One channel of a family: its x value, a scenario of it, and the runs of each policy.
type Channel<'a> = (f64, Scenario, BTreeMap<String, Vec<&'a RunRecord>>);

fn policy_vs_loss(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    let groups = by_point(sweep, records);
    let mut policies: Vec<String> = Vec::new();
    for p in &sweep.points {
        let t = transport(p);
        if !policies.contains(&t) {
            policies.push(t);
        }
    }
    let mut f = Figures::default();
    for family in distinct(sweep, "family") {
        // x -> (policy -> runs), and the point's scenario for the limits.
        let mut at: BTreeMap<u64, Channel> = BTreeMap::new();
        for (i, p) in sweep.points.iter().enumerate() {
            if p.text("family") != family || groups[i].is_empty() {
                continue;
            }
            let sc = scenario(sweep, p)?;
            let x = channel_x(&family, &sc.link);
            let entry = at
                .entry(x.to_bits())
                .or_insert_with(|| (x, sc, BTreeMap::new()));
            entry.2.insert(transport(p), groups[i].clone());
        }
        let mut rows: Vec<&Channel> = at.values().collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        if rows.is_empty() {
            continue;
        }
        let (x_axis, what) = match family.as_str() {
            "ber" => (
                Axis::log("bit error rate (per bit on the wire)"),
                "bit errors",
            ),
            "bursty" => (
                Axis::linear("mean packet loss (Gilbert-Elliott bursts)"),
                "bursty loss",
            ),
            _ => (
                Axis::linear("packet loss rate (i.i.d., per IP packet)"),
                "i.i.d. packet loss",
            ),
        };
        let series_of = |metric: &str, scale: f64| -> Vec<Series> {
            policies
                .iter()
                .enumerate()
                .map(|(ci, pol)| {
                    let pts = rows
                        .iter()
                        .filter_map(|(x, _, by)| {
                            by.get(pol)
                                .map(|runs| (*x, metric_mean(runs, metric) * scale))
                        })
                        .collect();
                    let mut s = Series::line(policy_label(pol), ci, pts);
                    if pol.starts_with("fixed:") {
                        s.width = 1;
                    }
                    s
                })
                .collect()
        };
        // Best fixed size in hindsight, per x.
        let best_fixed = |metric: &str| -> Vec<(f64, String, f64)> {
            rows.iter()
                .filter_map(|(x, _, by)| {
                    by.iter()
                        .filter(|(p, _)| p.starts_with("fixed:"))
                        .map(|(p, runs)| (p.clone(), metric_mean(runs, metric)))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(p, v)| (*x, p, v))
                })
                .collect()
        };
        let limits = &rows[0].1.workload.limits;
        let offered = rows[0].1.workload.fps * rows[0].1.workload.frame_bytes as f64;
        let file_stem = format!("{}-{family}", sweep.name);

        // Goodput.
        let mut series = series_of("goodput_bytes_per_s", 1e-3);
        let bf = best_fixed("goodput_bytes_per_s");
        series.push(Series::reference(
            "best fixed size in hindsight",
            Stroke::Dotted,
            bf.iter().map(|(x, _, v)| (*x, v * 1e-3)).collect(),
        ));
        let limit: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(x, sc, _)| {
                bounds::goodput_limit(&sc.link, limits).map(|l| (*x, l * 1e-3))
            })
            .collect();
        let has_limit = !limit.is_empty();
        if has_limit {
            series.push(Series::reference(
                "physical limit: rate x P(intact) x payload share",
                Stroke::Dashed,
                limit.clone(),
            ));
        }
        series.push(Series {
            color: Some(7),
            ..Series::reference(
                "offered load",
                Stroke::Dotted,
                rows.iter().map(|(x, _, _)| (*x, offered * 1e-3)).collect(),
            )
        });
        f.charts.push(Chart {
            file: format!("{file_stem}-goodput"),
            title: format!("Goodput against {what}"),
            x: x_axis.clone(),
            y: Axis::linear("goodput (kB/s of frame data)"),
            series,
            bands: vec![],
            vlines: vec![],
            legend: Legend::UpperRight,
            headroom: 0.8,
            caption: format!(
                "Frame bytes acknowledged per second of capture, mean over seeds, under {what}. \
                 Dashed: the most any segment size could carry on this link; dotted: the best \
                 fixed size at each point, chosen after the fact."
            ),
        });

        // Efficiency.
        let mut series = series_of("efficiency", 1.0);
        series.push(Series::reference(
            "physical limit: P(intact) x payload share",
            Stroke::Dashed,
            rows.iter()
                .map(|(x, sc, _)| {
                    (
                        *x,
                        bounds::best_size(limits, |s| bounds::payload_efficiency(&sc.link, s)).1,
                    )
                })
                .collect(),
        ));
        f.charts.push(Chart {
            file: format!("{file_stem}-efficiency"),
            title: format!("Goodput efficiency against {what}"),
            x: x_axis.clone(),
            y: Axis::linear("efficiency (frame bytes acked / UDP payload bytes sent)"),
            series,
            bands: vec![],
            vlines: vec![],
            legend: Legend::UpperRight,
            headroom: 0.8,
            caption: format!(
                "Share of the bytes the camera sent that were frame data acknowledged, under \
                 {what}; headers, lost datagrams and retransmissions make up the rest."
            ),
        });

        // Latency.
        let frame_bytes = rows[0].1.workload.frame_bytes;
        for (metric, name, quantile) in [
            ("latency_ms_p50", "median", 0.5),
            ("latency_ms_p99", "99th percentile", 0.99),
        ] {
            let floors: Vec<(f64, (f64, f64))> = rows
                .iter()
                .map(|(x, sc, _)| {
                    (
                        *x,
                        bounds::latency_floors_ms(
                            &sc.link,
                            limits,
                            frame_bytes,
                            quantile,
                            bounds::Until::Ack,
                        ),
                    )
                })
                .collect();
            let mut series = series_of(metric, 1.0);
            series.push(Series::reference(
                "ARQ floor (NACK only, rounds formula)",
                Stroke::Dashed,
                floors.iter().map(|(x, (_, arq))| (*x, *arq)).collect(),
            ));
            series.push(Series {
                color: Some(7),
                ..Series::reference(
                    "one-crossing floor (serialisation + delay both ways)",
                    Stroke::Dashed,
                    floors.iter().map(|(x, (one, _))| (*x, *one)).collect(),
                )
            });
            f.charts.push(Chart {
                file: format!("{file_stem}-{}", metric.replace("latency_ms_", "latency-")),
                title: format!("Frame latency ({name}) against {what}"),
                x: x_axis.clone(),
                y: Axis::log("frame latency, capture to ACK (ms)"),
                series,
                bands: vec![],
                vlines: vec![],
                legend: Legend::UpperLeft,
                headroom: 0.0,
                caption: format!(
                    "The {name} of frame latency from capture to acknowledgement, mean over \
                     seeds (log scale); frames given up at the 1 s deadline are not counted. \
                     Dashed: the ARQ floor at this quantile (NACK repair only) and, grey, the \
                     one-crossing floor that parity can approach."
                ),
            });
        }

        // Table.
        let mut t = Table {
            title: format!("Goodput (kB/s) and p99 latency (ms) under {what}"),
            header: vec![x_axis.label.clone()],
            ..Table::default()
        };
        if has_limit {
            t.header.push("limit kB/s".into());
        }
        for pol in &policies {
            if !pol.starts_with("fixed:") {
                t.header.push(format!("{} kB/s", policy_label(pol)));
                t.header.push(format!("{} p99 ms", policy_label(pol)));
                t.header.push(format!("{} efficiency", policy_label(pol)));
                t.header.push(format!("{} repair", policy_label(pol)));
            }
        }
        t.header.push("best fixed (hindsight)".into());
        t.header.push("best fixed kB/s".into());
        t.header.push("model / best fixed efficiency".into());
        for (row, (_, size, v)) in rows.iter().zip(&bf) {
            let (x, sc, by) = row;
            let mut cells = vec![fmt_num(*x)];
            if let Some(l) = bounds::goodput_limit(&sc.link, limits) {
                cells.push(format!("{:.1}", l * 1e-3));
            }
            for pol in &policies {
                if pol.starts_with("fixed:") {
                    continue;
                }
                match by.get(pol) {
                    Some(runs) => {
                        cells.push(format!(
                            "{:.1}",
                            metric_mean(runs, "goodput_bytes_per_s") * 1e-3
                        ));
                        cells.push(format!("{:.0}", metric_mean(runs, "latency_ms_p99")));
                        cells.push(format!("{:.2}", metric_mean(runs, "efficiency")));
                        cells.push(format!("{:.0}%", metric_mean(runs, "repair_ratio") * 100.0));
                    }
                    None => cells.extend(["".into(), "".into(), "".into(), "".into()]),
                }
            }
            cells.push(policy_label(size));
            cells.push(format!("{:.1}", v * 1e-3));
            let best_eff = by
                .iter()
                .filter(|(p, _)| p.starts_with("fixed:"))
                .map(|(_, runs)| metric_mean(runs, "efficiency"))
                .fold(0.0, f64::max);
            let model = by.get("model").map(|r| metric_mean(r, "efficiency"));
            cells.push(match model {
                Some(m) if best_eff > 0.0 => format!("{:.3}", m / best_eff),
                _ => String::new(),
            });
            t.rows.push(cells);
        }
        f.tables.push(t);
    }
    Ok(f)
}

/// The link between camera and receiver over time: `(from_s, to_s, link)`.
fn phases(sc: &Scenario) -> Vec<(f64, f64, LinkConfig)> {
    let mut changes: Vec<(f64, LinkConfig)> = vec![(0.0, sc.link.clone())];
    let mut faults = sc.faults.clone();
    faults.sort_by(|a, b| a.at_s().total_cmp(&b.at_s()));
    for fault in &faults {
        if let Fault::SetLink { at_s, config, .. } = fault {
            changes.push((*at_s, config.clone()));
        }
    }
    changes
        .iter()
        .enumerate()
        .map(|(i, (t, l))| {
            let end = changes.get(i + 1).map_or(sc.duration_s, |c| c.0);
            (*t, end, l.clone())
        })
        .collect()
}

fn describe_link(l: &LinkConfig) -> String {
    let mut parts = Vec::new();
    if l.loss > 0.0 {
        parts.push(format!("loss {}", fmt_num(l.loss)));
    }
    if l.bit_error_rate > 0.0 {
        parts.push(format!("BER {}", fmt_num(l.bit_error_rate)));
    }
    if let Some(b) = &l.burst {
        parts.push(format!("bursty loss {}", fmt_num(b.mean_loss())));
    }
    if parts.is_empty() {
        "clean".into()
    } else {
        parts.join(", ")
    }
}

/// Time-weighted mean of a step series over `[a, b)`.
fn step_mean(points: &[(f64, f64)], a: f64, b: f64) -> Option<f64> {
    let mut total = 0.0;
    let mut weight = 0.0;
    for (i, &(t, v)) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(b, |p| p.0);
        let (lo, hi) = (t.max(a), end.min(b));
        if hi > lo {
            total += v * (hi - lo);
            weight += hi - lo;
        }
    }
    (weight > 0.0).then(|| total / weight)
}

fn segment_size_trace(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    let groups = by_point(sweep, records);
    let mut f = Figures::default();
    let Some(first) = sweep.points.first() else {
        return Ok(f);
    };
    let sc = scenario(sweep, first)?;
    let ph = phases(&sc);
    let limits = &sc.workload.limits;
    let end = sc.duration_s - sc.workload.settle_s;
    let mut series = Vec::new();
    for (i, p) in sweep.points.iter().enumerate() {
        let Some(run) = groups[i].first() else {
            continue;
        };
        for (k, (_, pts)) in run
            .series
            .iter()
            .filter(|(n, _)| n.starts_with("size:"))
            .enumerate()
        {
            let mut pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0 <= end).collect();
            if let Some(&(_, last)) = pts.last() {
                pts.push((end, last));
            }
            let label = if k == 0 {
                format!("{} (seed {})", policy_label(&p.text("policy")), run.seed)
            } else {
                format!("{} session {k}", policy_label(&p.text("policy")))
            };
            let mut s = Series::line(label, i, pts);
            s.step = true;
            s.markers = false;
            series.push(s);
        }
    }
    let mut oracle = Vec::new();
    for (a, b, link) in &ph {
        let best = bounds::best_size(limits, |s| bounds::wire_efficiency(link, s)).0 as f64;
        oracle.push((*a, best));
        oracle.push((b.min(end), best));
    }
    series.push(Series::reference(
        "best size for the link (hindsight)",
        Stroke::Dashed,
        oracle,
    ));
    let base = &ph[0].2;
    let bands: Vec<(f64, f64, String)> = ph
        .iter()
        .filter(|(_, _, l)| l != base)
        .map(|(a, b, l)| (*a, *b, format!("bad link: {}", describe_link(l))))
        .collect();
    f.charts.push(Chart {
        file: format!("{}-size", sweep.name),
        title: "Segment size over time: good -> bad -> good link".into(),
        x: Axis::linear("time (s)").range(0.0, end),
        y: Axis::log("segment size (payload bytes)"),
        series,
        bands,
        vlines: vec![],
        legend: Legend::LowerLeft,
        headroom: 0.0,
        caption: format!(
            "Segment size each adaptive policy chose (one seed), log scale. Good link: {}; \
             shaded: the bad phase. Dashed: the size that maximises goodput on each phase's \
             link.",
            describe_link(base)
        ),
    });
    let mut t = Table {
        title: "Mean segment size per phase (time-weighted, over all seeds) and run figures".into(),
        header: vec!["policy".into()],
        ..Table::default()
    };
    for (a, b, l) in &ph {
        t.header.push(format!(
            "{}-{} s ({}): size B",
            fmt_num(*a),
            fmt_num(b.min(end)),
            describe_link(l)
        ));
    }
    t.header.extend(
        ["efficiency", "latency p99 ms", "frames dropped"]
            .iter()
            .map(|s| s.to_string()),
    );
    let mut best_row = vec!["best for the link (hindsight)".to_string()];
    for (_, _, link) in &ph {
        best_row.push(
            bounds::best_size(limits, |s| bounds::wire_efficiency(link, s))
                .0
                .to_string(),
        );
    }
    best_row.extend(["".into(), "".into(), "".into()]);
    for (i, p) in sweep.points.iter().enumerate() {
        let runs = &groups[i];
        if runs.is_empty() {
            continue;
        }
        let mut row = vec![policy_label(&p.text("policy"))];
        for (a, b, _) in &ph {
            let v: Vec<f64> = runs
                .iter()
                .flat_map(|r| r.series.iter().filter(|(n, _)| n.starts_with("size:")))
                .filter_map(|(_, pts)| step_mean(pts, *a, b.min(end)))
                .collect();
            row.push(format!("{:.0}", mean(&v)));
        }
        row.push(format!("{:.3}", metric_mean(runs, "efficiency")));
        row.push(format!("{:.0}", metric_mean(runs, "latency_ms_p99")));
        row.push(format!("{:.1}", metric_mean(runs, "frames_dropped")));
        t.rows.push(row);
    }
    t.rows.push(best_row);
    f.tables.push(t);
    Ok(f)
}

fn selection_label(s: &str) -> String {
    match s {
        "first_responder" => "first responder (seed)".into(),
        "round_robin" => "round robin".into(),
        other => other.into(),
    }
}

fn cluster_balance(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    let groups = by_point(sweep, records);
    let selections = distinct(sweep, "selection");
    let mut f = Figures::default();
    let point_of = |sel: &str, clients: f64| {
        sweep
            .points
            .iter()
            .position(|p| p.text("selection") == sel && p.num("clients") == Some(clients))
    };
    let mut clients: Vec<f64> = sweep
        .points
        .iter()
        .filter_map(|p| p.num("clients"))
        .collect();
    clients.sort_by(f64::total_cmp);
    clients.dedup();
    for (metric, title, ylabel, file, reference) in [
        (
            "jain_index",
            "Jain index of tier-2 load at the end against clients",
            "Jain's fairness index (1 = even)",
            "jain",
            ("perfect balance", 1.0),
        ),
        (
            "max_over_mean",
            "Most loaded tier-2 over the mean against clients",
            "max load / mean load",
            "max-over-mean",
            ("perfect balance", 1.0),
        ),
    ] {
        let mut series: Vec<Series> = selections
            .iter()
            .enumerate()
            .map(|(ci, sel)| {
                let pts = clients
                    .iter()
                    .filter_map(|&c| {
                        let i = point_of(sel, c)?;
                        (!groups[i].is_empty()).then(|| (c, metric_mean(&groups[i], metric)))
                    })
                    .collect();
                Series::line(selection_label(sel), ci, pts)
            })
            .collect();
        series.push(Series::reference(
            reference.0,
            Stroke::Dashed,
            clients.iter().map(|&c| (c, reference.1)).collect(),
        ));
        let y = if metric == "jain_index" {
            Axis::linear(ylabel).range(0.0, 1.05)
        } else {
            Axis::linear(ylabel)
        };
        f.charts.push(Chart {
            file: format!("{}-{file}", sweep.name),
            title: title.into(),
            x: Axis::linear("mobile clients"),
            y,
            series,
            bands: vec![],
            vlines: vec![],
            legend: Legend::LowerRight,
            headroom: 0.0,
            caption: format!(
                "Clients per tier-2 when the run ends, mean over seeds, for each tier-1 \
                 selection rule ({} clients).",
                clients
                    .iter()
                    .map(|c| fmt_num(*c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    // Load over time at the largest client count, one chart per selection.
    if let Some(&most) = clients.last() {
        let mut jain_series = Vec::new();
        for (ci, sel) in selections.iter().enumerate() {
            let Some(i) = point_of(sel, most) else {
                continue;
            };
            let Some(run) = groups[i].first() else {
                continue;
            };
            let loads: Vec<(&String, &Vec<(f64, f64)>)> = run
                .series
                .iter()
                .filter(|(n, _)| n.starts_with("load:"))
                .collect();
            let mut series: Vec<Series> = loads
                .iter()
                .enumerate()
                .map(|(k, (n, pts))| {
                    let mut s = Series::line(n.trim_start_matches("load:"), k, (*pts).clone());
                    s.step = true;
                    s.markers = false;
                    s
                })
                .collect();
            if let Some((_, first)) = loads.first() {
                let n = loads.len() as f64;
                let mean_load: Vec<(f64, f64)> = (0..first.len())
                    .map(|j| {
                        let sum: f64 = loads
                            .iter()
                            .filter_map(|(_, p)| p.get(j))
                            .map(|p| p.1)
                            .sum();
                        (first[j].0, sum / n)
                    })
                    .collect();
                series.push(Series::reference(
                    "mean over tier-2s",
                    Stroke::Dashed,
                    mean_load,
                ));
            }
            f.charts.push(Chart {
                file: format!("{}-load-{}", sweep.name, sel.replace('_', "-")),
                title: format!(
                    "Clients per tier-2 over time: {} ({} clients)",
                    selection_label(sel),
                    fmt_num(most)
                ),
                x: Axis::linear("time (s)"),
                y: Axis::linear("clients on the tier-2 (sessions)"),
                series,
                bands: vec![],
                vlines: vec![],
                legend: Legend::UpperLeft,
                headroom: 0.0,
                caption: format!(
                    "Sessions each tier-2 holds as clients join (seed {}); dashed: the even \
                     share.",
                    run.seed
                ),
            });
            let js: Vec<&Vec<(f64, f64)>> = groups[i]
                .iter()
                .filter_map(|r| r.series.get("jain"))
                .collect();
            jain_series.push(Series {
                markers: false,
                ..Series::line(selection_label(sel), ci, mean_series(&js))
            });
        }
        f.charts.push(Chart {
            file: format!("{}-jain-over-time", sweep.name),
            title: format!(
                "Jain index of tier-2 load over time ({} clients)",
                fmt_num(most)
            ),
            x: Axis::linear("time (s)"),
            y: Axis::linear("Jain's fairness index (1 = even)").range(0.0, 1.05),
            series: jain_series,
            bands: vec![],
            vlines: vec![],
            legend: Legend::LowerRight,
            headroom: 0.0,
            caption: "Mean over seeds; before the first client joins every load is 0 and the \
                      index is taken as 1."
                .into(),
        });
    }
    let mut t = Table {
        title: "Balance and connection set-up (mean over seeds)".into(),
        header: [
            "selection",
            "clients",
            "Jain index",
            "Jain min..max",
            "max/mean",
            "setup p50 ms",
            "setup p99 ms",
            "frames delivered %",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..Table::default()
    };
    for (i, p) in sweep.points.iter().enumerate() {
        let runs = &groups[i];
        if runs.is_empty() {
            continue;
        }
        let j: Vec<f64> = runs.iter().map(|r| r.metric("jain_index")).collect();
        let lo = j.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = j.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sent = metric_mean(runs, "frames_sent");
        t.rows.push(vec![
            selection_label(&p.text("selection")),
            p.text("clients"),
            format!("{:.3}", mean(&j)),
            format!("{lo:.3}..{hi:.3}"),
            format!("{:.2}", metric_mean(runs, "max_over_mean")),
            format!("{:.1}", metric_mean(runs, "setup_ms_p50")),
            format!("{:.1}", metric_mean(runs, "setup_ms_p99")),
            format!(
                "{:.2}",
                100.0 * metric_mean(runs, "frames_delivered") / sent.max(1.0)
            ),
        ]);
    }
    f.tables.push(t);
    Ok(f)
}

fn failover(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    let groups = by_point(sweep, records);
    let mut f = Figures::default();
    let mut series = Vec::new();
    let mut fault_times: Vec<f64> = Vec::new();
    let mut offered = 0.0;
    let mut rows = Vec::new();
    for (i, p) in sweep.points.iter().enumerate() {
        let runs = &groups[i];
        if runs.is_empty() {
            continue;
        }
        let sc = scenario(sweep, p)?;
        let clients: usize = sc
            .hosts()
            .iter()
            .filter(|h| h.role == livecam_sim::scenario::RoleKind::Mobile)
            .count();
        offered = clients as f64 * sc.workload.fps;
        let fault_at = sc.faults.iter().map(Fault::at_s).next();
        if let Some(t) = fault_at {
            if !fault_times.contains(&t) {
                fault_times.push(t);
            }
        }
        let rs: Vec<&Vec<(f64, f64)>> = runs
            .iter()
            .filter_map(|r| r.series.get("delivered_fps"))
            .collect();
        let end = sc.duration_s - sc.workload.settle_s;
        let mean_rate: Vec<(f64, f64)> = mean_series(&rs)
            .into_iter()
            .filter(|p| p.0 <= end)
            .collect();
        let case = p.text("case");
        // The dip: the lowest rate in the 5 s after the fault, and the time below 90% of the
        // offered load then.
        let (dip, below) = match fault_at {
            Some(t) => {
                let after: Vec<f64> = mean_rate
                    .iter()
                    .filter(|p| p.0 > t && p.0 <= (t + 5.0).min(end))
                    .map(|p| p.1)
                    .collect();
                let dip = after.iter().copied().fold(f64::INFINITY, f64::min);
                let below = after.iter().filter(|&&v| v < 0.9 * offered).count() as f64
                    * crate::runner::RATE_BIN_S;
                (dip, below)
            }
            None => (f64::NAN, f64::NAN),
        };
        rows.push(vec![
            case.clone(),
            format!("{:.0}", metric_mean(runs, "frames_sent")),
            format!("{:.0}", metric_mean(runs, "frames_delivered")),
            format!("{:.1}", metric_mean(runs, "frames_dropped")),
            format!("{:.1}", metric_mean(runs, "frames_lost_with_host")),
            format!("{:.1}", metric_mean(runs, "failovers")),
            format!("{:.0}", metric_mean(runs, "failover_ms_p50")),
            format!("{:.0}", metric_mean(runs, "failover_ms_max")),
            if dip.is_finite() {
                format!("{dip:.0}")
            } else {
                "-".into()
            },
            if below.is_finite() {
                format!("{below:.1}")
            } else {
                "-".into()
            },
        ]);
        let mut s = Series::line(case, i, mean_rate);
        s.markers = false;
        series.push(s);
    }
    let x_end = series
        .iter()
        .flat_map(|s| s.points.last().map(|p| p.0))
        .fold(0.0, f64::max);
    series.push(Series::reference(
        "offered load (clients x fps)",
        Stroke::Dashed,
        vec![(0.0, offered), (x_end, offered)],
    ));
    f.charts.push(Chart {
        file: format!("{}-delivered", sweep.name),
        title: "Delivered frames per second through cluster faults".into(),
        x: Axis::linear("time (s)"),
        y: Axis::linear("frames acknowledged per second (all clients)"),
        series,
        bands: vec![],
        vlines: fault_times
            .iter()
            .map(|t| (*t, format!("fault at {} s", fmt_num(*t))))
            .collect(),
        legend: Legend::UpperRight,
        headroom: 0.6,
        caption: format!(
            "Frames acknowledged to the clients per second, in {} s bins, mean over seeds; \
             clients join during the first second and stop capturing 3 s before the end. Cases \
             without a dip lie on top of the baseline.",
            crate::runner::RATE_BIN_S
        ),
    });
    f.tables.push(Table {
        title: "Frames and failovers per run (mean over seeds)".into(),
        header: [
            "case",
            "frames sent",
            "delivered",
            "dropped (reported)",
            "lost with a crashed host",
            "failovers",
            "failover p50 ms",
            "failover max ms",
            "lowest frames/s in 5 s after the fault",
            "seconds below 90% of offered",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows,
        note: "A failover is a client reconnecting through tier-1 after its session went \
               quiet; its time runs from the loss being noticed to the new session."
            .into(),
    });
    Ok(f)
}

/// Capacity, delivered rate, frame latency, frame size and frame rate over time, one seed
/// per point (the sender with and without rate control), and a table over all seeds.
fn capacity_adaptation(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    let groups = by_point(sweep, records);
    let mut f = Figures::default();
    let Some(first) = sweep.points.first() else {
        return Ok(f);
    };
    let sc = scenario(sweep, first)?;
    let end = sc.duration_s - sc.workload.settle_s;
    let offered = sc.workload.frame_bytes as f64 * sc.workload.fps;
    let ph = phases(&sc);
    // The uplink's capacity in payload terms; unlimited phases draw at twice the load.
    let capacity: Vec<(f64, f64)> = ph
        .iter()
        .flat_map(|(a, b, l)| {
            let c = l.rate_bytes_per_s.unwrap_or(2.0 * offered) / 1000.0;
            [(*a, c), (b.min(end), c)]
        })
        .collect();
    let bands: Vec<(f64, f64, String)> = ph
        .iter()
        .filter(|(_, _, l)| l.rate_bytes_per_s.is_some())
        .map(|(a, b, l)| {
            let rate = l.rate_bytes_per_s.unwrap_or(0.0) / 1000.0;
            (*a, *b, format!("capacity {} KB/s", fmt_num(rate)))
        })
        .collect();
    let label = |p: &crate::sweep::Point| {
        if p.text("rate_control") == "true" {
            "rate control".to_string()
        } else {
            "seed's sender (no rate control)".to_string()
        }
    };
    let mut charts: Vec<(&str, &str, &str, Axis, Vec<Series>)> = vec![
        (
            "delivered",
            "Delivered rate",
            "frame bytes acknowledged per second (KB/s)",
            Axis::linear("KB/s"),
            vec![],
        ),
        (
            "latency",
            "Frame latency",
            "capture to ACK (ms), at capture time",
            Axis::log("ms"),
            vec![],
        ),
        (
            "size",
            "Frame size (quality and resolution)",
            "bytes per frame at capture",
            Axis::linear("bytes"),
            vec![],
        ),
        (
            "fps",
            "Frame rate",
            "frames captured per second (skipped instants left out)",
            Axis::linear("frames/s"),
            vec![],
        ),
        (
            "queue",
            "Queueing delay read by the rate control",
            "ms above the minimum round trip",
            Axis::linear("ms"),
            vec![],
        ),
    ];
    let mut rows = Vec::new();
    for (i, p) in sweep.points.iter().enumerate() {
        let runs = &groups[i];
        let Some(run) = runs.first() else { continue };
        let cut = |name: &str, scale: f64| -> Vec<(f64, f64)> {
            run.series
                .get(name)
                .map(|v| {
                    v.iter()
                        .filter(|q| q.0 <= end)
                        .map(|&(t, y)| (t, y * scale))
                        .collect()
                })
                .unwrap_or_default()
        };
        let data = [
            cut("delivered_bps", 1e-3),
            cut("latency_ms", 1.0),
            cut("size", 1.0),
            cut("fps", 1.0),
            cut("queue_ms", 1.0),
        ];
        for (chart, points) in charts.iter_mut().zip(data) {
            if points.is_empty() {
                continue;
            }
            let mut s = Series::line(format!("{} (seed {})", label(p), run.seed), i, points);
            s.markers = chart.0 == "latency";
            s.step = matches!(chart.0, "size" | "queue");
            chart.4.push(s);
        }
        let target = cut("target_bps", 1e-3);
        if !target.is_empty() {
            let mut s = Series::line(
                format!("rate control's target, wire bytes (seed {})", run.seed),
                i,
                target,
            );
            s.markers = false;
            s.step = true;
            s.stroke = Stroke::Dotted;
            charts[0].4.push(s);
        }
        rows.push(vec![
            label(p),
            format!("{:.0}", metric_mean(runs, "frames_sent")),
            format!("{:.0}", metric_mean(runs, "frames_delivered")),
            format!("{:.0}", metric_mean(runs, "frames_dropped")),
            format!("{:.0}", metric_mean(runs, "latency_ms_p50")),
            format!("{:.0}", metric_mean(runs, "latency_ms_p99")),
        ]);
    }
    for (name, title, y, axis, mut series) in charts {
        if name == "delivered" {
            series.push(Series::reference(
                "capacity",
                Stroke::Dashed,
                capacity.clone(),
            ));
        }
        f.charts.push(Chart {
            file: format!("{}-{name}", sweep.name),
            title: format!("{title} through a capacity step"),
            x: Axis::linear("time (s)").range(0.0, end),
            y: Axis {
                label: y.into(),
                ..axis
            },
            series,
            bands: bands.clone(),
            vlines: vec![],
            legend: Legend::UpperRight,
            headroom: 0.3,
            caption: format!(
                "One seed per sender; shaded: the dip. Offered load {} KB/s ({} B frames at {} \
                 fps); the dashed line is the capacity (unlimited phases drawn at twice the \
                 load).",
                fmt_num(offered / 1000.0),
                sc.workload.frame_bytes,
                fmt_num(sc.workload.fps)
            ),
        });
    }
    f.tables.push(Table {
        title: "Frames per run (mean over seeds)".into(),
        header: [
            "sender",
            "frames captured",
            "delivered",
            "dropped (reported)",
            "latency p50 ms",
            "latency p99 ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows,
        note: "Dropped counts the frames given up at their deadline and, under rate control, \
               those dropped at the source (superseded by a newer capture, or capture instants \
               skipped for a lower frame rate)."
            .into(),
    });
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_means_weight_by_time() {
        let pts = [(0.0, 100.0), (1.0, 200.0), (3.0, 50.0)];
        assert_eq!(step_mean(&pts, 0.0, 3.0), Some((100.0 + 400.0) / 3.0));
        assert_eq!(step_mean(&pts, 3.0, 4.0), Some(50.0));
        assert_eq!(step_mean(&pts, 5.0, 5.0), None);
        assert_eq!(sd(&[1.0, 3.0]), 2f64.sqrt());
    }
}
