//! The `bonding` experiment's charts and table (issue 21): one modem, two bonded, and two
//! broadcasting every datagram (SRT's broadcast group) through each case of the sweep.

use livecam_sim::Scenario;
use livecam_system::link::LinkConfig;
use livecam_system::time::Instant;

use super::{by_point, mean_series, metric_mean, scenario, Figures, Table};
use crate::chart::{fmt_num, Axis, Chart, Legend, Series, Stroke};
use crate::runner::{RunRecord, RATE_BIN_S};
use crate::sweep::{Point, Sweep};
use crate::Error;

/// The case whose latency distribution is drawn, and the one-modem case beside it.
const LOSSY: &str = "10% loss each";
const TARGET: &str = "1% loss, one modem (target)";
const FAILURE: &str = "one dies 10-20 s";
const CAPACITY: &str = "2 x 60 KB/s";
const TRACES: &str = "two LTE traces";

/// How a point sends: one modem, bonded, or broadcast.
fn setup(p: &Point) -> String {
    if p.num("uplinks").unwrap_or(1.0) < 2.0 {
        "one modem".into()
    } else if p.text("bond") == "broadcast" {
        "broadcast (as SRT's group)".into()
    } else {
        "bonded (earliest arrival)".into()
    }
}

/// The palette index of a point's setup, the same in every chart.
fn color(p: &Point) -> usize {
    if p.num("uplinks").unwrap_or(1.0) < 2.0 {
        0
    } else if p.text("bond") == "broadcast" {
        2
    } else {
        1
    }
}

/// Points of `case`, with their index.
fn points_of<'a>(sweep: &'a Sweep, case: &'a str) -> impl Iterator<Item = (usize, &'a Point)> {
    sweep
        .points
        .iter()
        .enumerate()
        .filter(move |(_, p)| p.text("case") == case)
}

/// Share of values at or below each value: a CDF as `(value, share)` steps.
fn cdf(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, (i + 1) as f64 / n))
        .collect()
}

/// Capacity of the uplink links of `sc` from the van, KB/s per [`RATE_BIN_S`] bin up to
/// `end`: one series for the first uplink and one for all together (trace-driven links
/// only).
fn trace_capacity(sc: &Scenario, end: f64) -> Vec<(String, Vec<(f64, f64)>)> {
    let traces: Vec<(&str, &LinkConfig)> = sc
        .links
        .iter()
        .filter(|l| l.to == "t2" && l.config.capacity.is_some())
        .map(|l| (l.from.as_str(), &l.config))
        .collect();
    let bins = (end / RATE_BIN_S).floor() as usize;
    let at = |s: f64| Instant::ZERO + std::time::Duration::from_secs_f64(s);
    let series = |links: &[&LinkConfig]| -> Vec<(f64, f64)> {
        (0..bins)
            .map(|b| {
                let (t0, t1) = (b as f64 * RATE_BIN_S, (b + 1) as f64 * RATE_BIN_S);
                let bytes: u64 = links
                    .iter()
                    .filter_map(|l| l.capacity.as_ref())
                    .map(|c| c.trace().bytes_between(at(t0), at(t1)))
                    .sum();
                ((t0 + t1) / 2.0, bytes as f64 / RATE_BIN_S / 1000.0)
            })
            .collect()
    };
    let mut out = Vec::new();
    if let Some((name, first)) = traces.first() {
        out.push((format!("capacity of {name}'s uplink"), series(&[first])));
    }
    if traces.len() > 1 {
        let all: Vec<&LinkConfig> = traces.iter().map(|(_, l)| *l).collect();
        out.push(("capacity of both uplinks".into(), series(&all)));
    }
    out
}

pub(super) fn bonding(sweep: &Sweep, records: &[RunRecord]) -> Result<Figures, Error> {
    let groups = by_point(sweep, records);
    let mut f = Figures::default();
    let mut rows = Vec::new();
    for (i, p) in sweep.points.iter().enumerate() {
        let runs = &groups[i];
        if runs.is_empty() {
            continue;
        }
        let pct = |name: &str| format!("{:.0}%", 100.0 * metric_mean(runs, name));
        rows.push(vec![
            p.text("case"),
            setup(p),
            format!(
                "{:.0} / {:.0}",
                metric_mean(runs, "frames_delivered"),
                metric_mean(runs, "frames_sent")
            ),
            format!("{:.0}", metric_mean(runs, "frame_bytes_delivered") / 1000.0),
            format!("{:.0}", metric_mean(runs, "latency_ms_p50")),
            format!("{:.0}", metric_mean(runs, "latency_ms_p99")),
            format!("{:.0}", metric_mean(runs, "one_way_ms_p99")),
            pct("repair_ratio"),
            format!("{:.2}", metric_mean(runs, "wire_per_frame_byte")),
            pct("second_uplink_share"),
        ]);
    }
    f.tables.push(Table {
        title: "Per case and setup (mean over seeds)".into(),
        header: [
            "case",
            "setup",
            "frames delivered / captured",
            "frame KB delivered",
            "latency p50 ms",
            "latency p99 ms",
            "one-way p99 ms",
            "repair bytes / frame bytes",
            "wire bytes / frame byte delivered",
            "second uplink's share of wire bytes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows,
        note: "Latency runs from capture to the frame's ACK at the camera; one-way from capture \
               to the receiver holding the whole frame. Frame bytes are those of the frames \
               delivered, at the size the camera shaped them to. Wire bytes count every \
               datagram the van's modems sent (UDP payload and UDP/IP headers: connection, \
               pings, repairs and broadcast copies included)."
            .into(),
    });

    // Latency distribution on two lossy uplinks, beside one modem at 10% and at 1% loss.
    let mut series = Vec::new();
    for case in [LOSSY, TARGET] {
        for (i, p) in points_of(sweep, case) {
            let latencies: Vec<f64> = groups[i]
                .iter()
                .filter_map(|r| r.series.get("latency_ms"))
                .flat_map(|v| v.iter().map(|q| q.1))
                .collect();
            if latencies.is_empty() {
                continue;
            }
            let label = if case == TARGET {
                "one modem at 1% loss (the target)".to_string()
            } else {
                format!("{} at 10% loss", setup(p))
            };
            let c = if case == TARGET { 3 } else { color(p) };
            let mut s = Series::line(label, c, cdf(latencies));
            s.markers = false;
            s.step = true;
            series.push(s);
        }
    }
    f.charts.push(Chart {
        file: format!("{}-latency", sweep.name),
        title: "Frame latency on uplinks losing 10% each".into(),
        x: Axis::log("capture to ACK (ms)"),
        y: Axis::linear("share of frames delivered within").range(0.0, 1.0),
        series,
        bands: vec![],
        vlines: vec![],
        legend: Legend::LowerRight,
        headroom: 0.0,
        caption: "Distribution of frame latency, all seeds pooled. The issue's target is the \
                  bonded session's p99 no worse than one modem's at 1% loss."
            .into(),
    });

    // Frame latency over time through the failure.
    let mut series = Vec::new();
    let mut end = 0.0;
    for (i, p) in points_of(sweep, FAILURE) {
        let Some(run) = groups[i].first() else {
            continue;
        };
        let sc = scenario(sweep, p)?;
        end = sc.duration_s - sc.workload.settle_s;
        let points = run.series.get("latency_ms").cloned().unwrap_or_default();
        let mut s = Series::line(
            format!("{} (seed {})", setup(p), run.seed),
            color(p),
            points,
        );
        s.width = 1;
        series.push(s);
    }
    f.charts.push(Chart {
        file: format!("{}-failure", sweep.name),
        title: "Frame latency while the first uplink is dead".into(),
        x: Axis::linear("capture time (s)").range(0.0, end),
        y: Axis::log("capture to ACK (ms)"),
        series,
        bands: vec![(10.0, 20.0, "first uplink dead".into())],
        vlines: vec![],
        legend: Legend::UpperLeft,
        headroom: 0.3,
        caption: "One seed per setup; every frame delivered is a marker at its capture time. \
                  One modem loses its session and the frames of the outage; bonded and \
                  broadcast sessions go on over the second uplink."
            .into(),
    });

    // Delivered rate against capacity: two 60 KB/s uplinks, and two LTE traces.
    for (case, file, title) in [
        (
            CAPACITY,
            "capacity",
            "Delivered rate on two 60 KB/s uplinks",
        ),
        (
            TRACES,
            "traces",
            "Delivered rate on two recorded LTE uplinks",
        ),
    ] {
        let mut series = Vec::new();
        let mut end = 0.0;
        let mut offered = 0.0;
        let mut references = Vec::new();
        for (i, p) in points_of(sweep, case) {
            let sc = scenario(sweep, p)?;
            end = sc.duration_s - sc.workload.settle_s;
            offered = sc.workload.frame_bytes as f64 * sc.workload.fps / 1000.0;
            if p.num("uplinks").unwrap_or(1.0) >= 2.0 && references.is_empty() {
                references = if case == TRACES {
                    trace_capacity(&sc, end)
                } else {
                    let one = sc
                        .links
                        .first()
                        .and_then(|l| l.config.rate_bytes_per_s)
                        .unwrap_or(0.0)
                        / 1000.0;
                    vec![
                        ("one uplink's capacity".into(), vec![(0.0, one), (end, one)]),
                        (
                            "both uplinks' capacity".into(),
                            vec![(0.0, 2.0 * one), (end, 2.0 * one)],
                        ),
                    ]
                };
            }
            let rs: Vec<&Vec<(f64, f64)>> = groups[i]
                .iter()
                .filter_map(|r| r.series.get("delivered_bps"))
                .collect();
            let points = mean_series(&rs)
                .into_iter()
                .filter(|q| q.0 <= end)
                .map(|(t, y)| (t, y / 1000.0))
                .collect();
            let mut s = Series::line(setup(p), color(p), points);
            s.markers = false;
            series.push(s);
        }
        for (k, (label, points)) in references.into_iter().enumerate() {
            let stroke = if k == 0 {
                Stroke::Dashed
            } else {
                Stroke::Solid
            };
            let mut s = Series::reference(label, stroke, points);
            s.width = 1;
            series.push(s);
        }
        series.push(Series::reference(
            "offered by the camera",
            Stroke::Dotted,
            vec![(0.0, offered), (end, offered)],
        ));
        f.charts.push(Chart {
            file: format!("{}-{file}", sweep.name),
            title: title.into(),
            x: Axis::linear("time (s)").range(0.0, end),
            y: Axis::linear("frame KB acknowledged per second").range(0.0, 3.0 * offered),
            series,
            bands: vec![],
            vlines: vec![],
            legend: Legend::UpperRight,
            headroom: 0.3,
            caption: format!(
                "Frame bytes acknowledged per {} s bin, per second, mean over seeds; black: \
                 the uplinks' capacity on the wire (the physical ceiling; headers and repairs \
                 come out of it) and the camera's {} KB/s.",
                fmt_num(RATE_BIN_S),
                fmt_num(offered)
            ),
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdf_climbs_to_one_in_value_order() {
        assert_eq!(
            cdf(vec![3.0, 1.0, 2.0, 2.0]),
            [(1.0, 0.25), (2.0, 0.5), (2.0, 0.75), (3.0, 1.0)]
        );
    }
}
