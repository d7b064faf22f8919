//! Runs a sweep's (point, seed) jobs in parallel, each one a single-threaded deterministic
//! simulation on the event-driven backend, and reduces each run to a [`RunRecord`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use indicatif::{ProgressBar, ProgressStyle};
use livecam_sim::{Outcome, Scenario, Simulator};
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind, EventSink};
use crate::sweep::{Kind, Sweep};
use crate::Error;

/// Width of the bins of delivered frames over time, in seconds.
pub const RATE_BIN_S: f64 = 0.5;
/// Step of the sampled tier-2 load series, in seconds.
pub const LOAD_STEP_S: f64 = 0.25;

/// What one run left: figures, and the time series its analysis draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Index of the point in the sweep.
    pub point: usize,
    pub seed: u64,
    pub trace_hash: String,
    /// Figures in a fixed order (the CSV columns).
    pub metrics: Vec<(String, f64)>,
    /// Named `(seconds, value)` series.
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
}

impl RunRecord {
    /// Figure `name`, 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |&(_, v)| v)
    }
}

/// One job: a point index and a seed.
pub type Job = (usize, u64);

/// Every job of a sweep, points in order, seeds in order within a point.
pub fn jobs(sweep: &Sweep, seeds: &[u64]) -> Vec<Job> {
    (0..sweep.points.len())
        .flat_map(|p| seeds.iter().map(move |&s| (p, s)))
        .collect()
}

/// The jobs of shard `index` of `count`: every `count`-th job from `index` on.
pub fn shard(jobs: &[Job], index: usize, count: usize) -> Vec<Job> {
    jobs.iter()
        .enumerate()
        .filter(|(i, _)| i % count == index)
        .map(|(_, j)| *j)
        .collect()
}

/// Runs `jobs` on `threads` threads (a progress bar on stderr when `progress`), and returns
/// the records in job order.
pub fn run_jobs(
    sweep: &Sweep,
    jobs: &[Job],
    threads: usize,
    progress: bool,
) -> Result<Vec<RunRecord>, Error> {
    let bar = if progress {
        ProgressBar::new(jobs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>20} [{bar:40}] {pos}/{len} runs, {elapsed} ({eta})")
            .map_err(|e| Error::Other(e.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_prefix(sweep.name.clone());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunRecord, Error>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(point, seed)) = jobs.get(i) else {
                    break;
                };
                let r = run_one(sweep, point, seed);
                let failed = r.is_err();
                results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(r);
                bar.inc(1);
                if failed {
                    // Let the other threads stop early too.
                    next.store(jobs.len(), Ordering::Relaxed);
                }
            });
        }
    });
    bar.finish_and_clear();
    let results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut out = Vec::with_capacity(jobs.len());
    for (r, &(point, seed)) in results.into_iter().zip(jobs) {
        match r {
            Some(r) => out.push(r?),
            None => {
                return Err(Error::Other(format!(
                    "run of point {point} seed {seed} did not happen"
                )))
            }
        }
    }
    Ok(out)
}

/// Runs one point with one seed.
pub fn run_one(sweep: &Sweep, point: usize, seed: u64) -> Result<RunRecord, Error> {
    let p = &sweep.points[point];
    let scenario = sweep.scenario(p).map_err(|message| Error::Sweep {
        file: format!("{}.toml", sweep.name),
        message,
    })?;
    let needs_trace = matches!(
        sweep.kind,
        Kind::ClusterBalance | Kind::Failover | Kind::CapacityAdaptation | Kind::Bonding
    );
    let sink = EventSink::new();
    let trace: livecam_sim::simulator::TraceOut = if needs_trace {
        Some(Box::new(sink.clone()))
    } else {
        None
    };
    let sim_err = |e: String| Error::Run {
        point: crate::sweep::describe(p),
        seed,
        message: e,
    };
    let outcome = livecam_sim::run(Simulator::Des, &scenario, seed, trace)
        .map_err(|e| sim_err(e.to_string()))?;
    let events = if needs_trace {
        sink.take().map_err(sim_err)?
    } else {
        Vec::new()
    };
    let mut series = BTreeMap::new();
    match sweep.kind {
        Kind::PolicyVsLoss => {}
        Kind::SegmentSizeTrace => {
            for (session, points) in &outcome.size_series {
                series.insert(
                    format!("size:{session}"),
                    points.iter().map(|&(t, s)| (t, s as f64)).collect(),
                );
            }
        }
        Kind::ClusterBalance => {
            series.extend(load_series(&scenario, &events));
        }
        Kind::Failover => {
            series.insert(
                "delivered_fps".to_string(),
                delivered_rate(&events, scenario.duration_s),
            );
        }
        Kind::CapacityAdaptation | Kind::Bonding => {
            series.extend(frame_series(&events, scenario.duration_s))
        }
    }
    let mut metrics = metrics(&scenario, &outcome);
    if sweep.kind == Kind::Bonding {
        metrics.extend(uplink_metrics(&scenario, &outcome, &series));
    }
    Ok(RunRecord {
        point,
        seed,
        trace_hash: outcome.trace_hash.clone(),
        metrics,
        series,
    })
}

/// The figures of a run, in CSV column order.
pub fn metrics(scenario: &Scenario, o: &Outcome) -> Vec<(String, f64)> {
    let s = &o.summary;
    let capture_s = scenario.frames_per_camera() as f64 / scenario.workload.fps;
    let goodput = if capture_s > 0.0 {
        (s.frames_delivered * scenario.workload.frame_bytes as u64) as f64 / capture_s
    } else {
        0.0
    };
    let mut m: Vec<(&str, f64)> = vec![
        ("frames_sent", s.frames_sent as f64),
        ("frames_delivered", s.frames_delivered as f64),
        ("frames_dropped", s.frames_dropped as f64),
        ("frames_lost_with_host", s.frames_lost_with_host as f64),
        ("goodput_bytes_per_s", goodput),
        ("efficiency", s.efficiency),
        ("latency_ms_p50", s.latency_ms_p50),
        ("latency_ms_p99", s.latency_ms_p99),
        ("latency_ms_max", s.latency_ms_max),
        ("one_way_ms_p50", s.one_way_ms_p50),
        ("one_way_ms_p99", s.one_way_ms_p99),
        ("repair_ratio", s.repair_ratio),
        ("header_ratio", s.header_ratio),
        ("segments_sent", s.segments_sent as f64),
        ("segments_resent", s.segments_resent as f64),
        ("bytes_sent", s.bytes_sent as f64),
        ("datagrams_lost_by_link", s.datagrams_lost_by_link as f64),
        ("final_segment_size_mean", s.final_segment_size_mean),
        ("promises_kept", f64::from(u8::from(s.promises_kept))),
    ];
    if let Some(c) = &s.cluster {
        m.extend([
            ("connections", c.connections as f64),
            ("setup_ms_p50", c.setup_ms_p50),
            ("setup_ms_p99", c.setup_ms_p99),
            ("failovers", c.failovers as f64),
            ("failover_ms_p50", c.failover_ms_p50),
            ("failover_ms_max", c.failover_ms_max),
            ("clients_unconnected", c.clients_unconnected as f64),
            ("jain_index", c.jain_index),
            ("max_over_mean", c.max_over_mean),
        ]);
    }
    m.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

/// What the mobile clients' modems carried: `frame_bytes_delivered` (bytes of the frames
/// acknowledged, at their shaped size, from `series`' `delivered_bps`), `wire_bytes` (every
/// datagram their uplinks sent, [`livecam_sim::summary::Summary::uplink_bytes`]),
/// `wire_per_frame_byte`, and `second_uplink_share`: the share of the wire bytes that left by
/// uplinks other than the first (the bonding sweep's van has two).
fn uplink_metrics(
    scenario: &Scenario,
    o: &Outcome,
    series: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Vec<(String, f64)> {
    let delivered: f64 = series
        .get("delivered_bps")
        .map_or(0.0, |v| v.iter().map(|p| p.1 * RATE_BIN_S).sum());
    let by_uplink = &o.summary.uplink_bytes;
    let wire: u64 = by_uplink.values().sum();
    let second: u64 = scenario
        .interfaces()
        .iter()
        .filter_map(|i| by_uplink.get(&i.name))
        .sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    [
        ("frame_bytes_delivered", delivered),
        ("wire_bytes", wire as f64),
        ("wire_per_frame_byte", ratio(wire as f64, delivered)),
        ("second_uplink_share", ratio(second as f64, wire as f64)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

/// Frames acknowledged per second, in bins of [`RATE_BIN_S`], each point at its bin's middle.
pub fn delivered_rate(events: &[Event], duration_s: f64) -> Vec<(f64, f64)> {
    let bins = (duration_s / RATE_BIN_S).ceil() as usize;
    let mut counts = vec![0u64; bins.max(1)];
    for e in events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::FrameAcked { .. }))
    {
        let b = ((e.t_us as f64 / 1e6) / RATE_BIN_S) as usize;
        if let Some(c) = counts.get_mut(b) {
            *c += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| ((i as f64 + 0.5) * RATE_BIN_S, c as f64 / RATE_BIN_S))
        .collect()
}

/// Per frame, over time (the first camera's; a capacity experiment has one): `size` (bytes
/// at capture, 0 for a skipped instant), `latency_ms` (at capture, for the frames
/// acknowledged), `delivered_bps` (bytes of the frames acknowledged in each
/// [`RATE_BIN_S`] bin, per second), `fps` (frames captured, skipped ones left out, per
/// second), and under rate control `target_bps` and `queue_ms` (the target and the queueing
/// delay it read, each time the target moved).
pub fn frame_series(events: &[Event], duration_s: f64) -> BTreeMap<String, Vec<(f64, f64)>> {
    let camera = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::FramePushed { .. }))
        .map(|e| e.host.clone());
    let bins = (duration_s / RATE_BIN_S).ceil() as usize;
    let mut delivered = vec![0.0; bins.max(1)];
    let mut captured = vec![0.0; bins.max(1)];
    let mut len_of = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let bin = |t: f64| (t / RATE_BIN_S) as usize;
    for e in events.iter().filter(|e| Some(&e.host) == camera.as_ref()) {
        let t = e.t_us as f64 / 1e6;
        match e.kind {
            EventKind::FramePushed { frame, len } => {
                len_of.insert(frame, len);
                out.entry("size".into()).or_default().push((t, len as f64));
                if let (Some(c), true) = (captured.get_mut(bin(t)), len > 0) {
                    *c += 1.0;
                }
            }
            EventKind::FrameAcked { frame, latency_us } => {
                let at = t - latency_us as f64 / 1e6;
                let ms = latency_us as f64 / 1e3;
                out.entry("latency_ms".into()).or_default().push((at, ms));
                if let (Some(d), Some(&len)) = (delivered.get_mut(bin(t)), len_of.get(&frame)) {
                    *d += len as f64;
                }
            }
            EventKind::TargetRate {
                bytes_per_s,
                queue_us,
            } => {
                out.entry("target_bps".into())
                    .or_default()
                    .push((t, bytes_per_s as f64));
                out.entry("queue_ms".into())
                    .or_default()
                    .push((t, queue_us as f64 / 1e3));
            }
            _ => {}
        }
    }
    let per_second = |v: &[f64]| {
        v.iter()
            .enumerate()
            .map(|(i, &x)| ((i as f64 + 0.5) * RATE_BIN_S, x / RATE_BIN_S))
            .collect()
    };
    out.insert("delivered_bps".into(), per_second(&delivered));
    out.insert("fps".into(), per_second(&captured));
    out
}

/// Clients per tier-2 over time (`load:NAME`), and Jain's index of those loads (`jain`),
/// sampled every [`LOAD_STEP_S`]: a client counts for the tier-2 of its last `connected` until
/// it loses its session.
pub fn load_series(scenario: &Scenario, events: &[Event]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let hosts = scenario.hosts();
    let tier2: Vec<(u32, String)> = hosts
        .iter()
        .filter(|h| h.role == livecam_sim::scenario::RoleKind::Tier2)
        .map(|h| (h.index as u32, h.name.clone()))
        .collect();
    let mut at: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let steps = (scenario.duration_s / LOAD_STEP_S).floor() as usize;
    let mut ev = events.iter().peekable();
    for k in 0..=steps {
        let t = k as f64 * LOAD_STEP_S;
        let t_us = (t * 1e6).round() as u64;
        while let Some(e) = ev.next_if(|e| e.t_us <= t_us) {
            match e.kind {
                EventKind::Connected { tier2 } => {
                    at.insert(e.host.as_str(), tier2);
                }
                EventKind::SessionLost => {
                    at.remove(e.host.as_str());
                }
                EventKind::FrameAcked { .. }
                | EventKind::FramePushed { .. }
                | EventKind::TargetRate { .. } => {}
            }
        }
        let loads: Vec<f64> = tier2
            .iter()
            .map(|(id, _)| at.values().filter(|&&t2| t2 == *id).count() as f64)
            .collect();
        for ((_, name), &l) in tier2.iter().zip(&loads) {
            out.entry(format!("load:{name}")).or_default().push((t, l));
        }
        out.entry("jain".into())
            .or_default()
            .push((t, livecam_system::stats::jain(&loads)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_jobs() {
        let jobs: Vec<Job> = (0..10).map(|i| (i / 3, i as u64)).collect();
        let mut all: Vec<Job> = (0..3).flat_map(|i| shard(&jobs, i, 3)).collect();
        all.sort();
        let mut want = jobs.clone();
        want.sort();
        assert_eq!(all, want);
        assert_eq!(shard(&jobs, 1, 3), [jobs[1], jobs[4], jobs[7]]);
    }

    #[test]
    fn delivered_rate_bins_acks() {
        let e = |t_us| Event {
            t_us,
            host: "car0".into(),
            kind: EventKind::FrameAcked {
                frame: 0,
                latency_us: 0,
            },
        };
        let r = delivered_rate(&[e(100), e(400_000), e(600_000)], 1.0);
        assert_eq!(r, [(0.25, 4.0), (0.75, 2.0)]);
    }
}
