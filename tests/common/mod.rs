//! Shared by the simulation tests: the seed loop that prints the command replaying each failing
//! seed, scenario loading, runs with the trace captured, and what the trace says about every
//! frame.
//!
//! Seeds: `LIVECAM_SEED=N` runs only seed `N` (the replay command a failure prints);
//! `LIVECAM_SEEDS=N` runs seeds `1..=N` instead of the default `1..=25` (a longer soak).
//! Simulator: turmoil, or the one `LIVECAM_BACKEND` names (`des`, `madsim`).

// Each test file uses its own part of this module.
#![allow(dead_code)]

pub mod roles;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use livecam_sim::scenario::{Fault, RoleKind};
use livecam_sim::{Outcome, Scenario, Simulator};
use serde::Deserialize;

/// Whether a test that needs privileges or outside tools can run here: `missing` is why not
/// (`None`: everything it needs is there). Without it the test prints why it is skipped and
/// passes, unless `LIVECAM_REQUIRE_ROOT=1` (CI: root, with every package `.ci/run` installs)
/// makes that a failure, so a privileged test can never pass there by skipping.
pub fn can_run(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("LIVECAM_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{test}: LIVECAM_REQUIRE_ROOT=1 but it cannot run here: {why}"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// The `--backend` argument of `livecam sim` for [`backend`].
pub fn backend_arg() -> &'static str {
    match backend() {
        Simulator::Turmoil => "turmoil",
        Simulator::Des => "des",
        Simulator::Madsim => "madsim",
    }
}

/// The simulator the tests run on: turmoil, unless `LIVECAM_BACKEND` names another (`des`, or
/// `madsim` in a build with `RUSTFLAGS="--cfg madsim"`).
pub fn backend() -> Simulator {
    match std::env::var("LIVECAM_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("turmoil") => Simulator::Turmoil,
        Ok("des") => Simulator::Des,
        Ok("madsim") => Simulator::Madsim,
        Ok(other) => panic!("LIVECAM_BACKEND={other:?}: expected turmoil, des or madsim"),
    }
}

/// Seeds per test unless `LIVECAM_SEEDS` says otherwise.
pub const DEFAULT_SEEDS: u64 = 25;

/// The seeds a seed loop runs: only `LIVECAM_SEED` when it is set, else `1..=LIVECAM_SEEDS`
/// (default [`DEFAULT_SEEDS`]).
pub fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("LIVECAM_SEED") {
        return vec![seed];
    }
    let count = env_u64("LIVECAM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    (1..=count).collect()
}

/// A non-negative integer from the environment variable `name`, if set.
pub fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a non-negative integer"),
    }
}

/// The command that runs test `name` of `tests/<test_file>.rs` with exactly `seed` (on the
/// same backend).
pub fn replay_command(name: &str, test_file: &str, seed: u64) -> String {
    format!(
        "{}LIVECAM_SEED={seed} cargo test --test {test_file} {name} -- --exact",
        backend_prefix()
    )
}

/// The command that runs test `name` of `tests/<test_file>.rs` (for tests without a seed loop).
pub fn replay_test(name: &str, test_file: &str) -> String {
    format!(
        "{}cargo test --test {test_file} {name} -- --exact",
        backend_prefix()
    )
}

fn backend_prefix() -> String {
    match std::env::var("LIVECAM_BACKEND") {
        Ok(b) if !b.is_empty() => format!("LIVECAM_BACKEND={b} "),
        _ => String::new(),
    }
}

/// Runs `check` for every seed of [`seeds`], keeps going past failures (an `Err` or a panic),
/// and at the end panics listing every failing seed with the one command that replays it.
///
/// `name` is the test function's name and `test_file` the test crate's (`module_path!()` in
/// the test file).
pub fn for_each_seed(name: &str, test_file: &str, check: impl FnMut(u64) -> Result<(), String>) {
    for_seeds(name, test_file, &seeds(), check);
}

/// [`for_each_seed`] over the given seeds.
pub fn for_seeds(
    name: &str,
    test_file: &str,
    seeds: &[u64],
    mut check: impl FnMut(u64) -> Result<(), String>,
) {
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for &seed in seeds {
        let result = panic::catch_unwind(AssertUnwindSafe(|| check(seed)))
            .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))));
        if let Err(why) = result {
            failures.push((seed, why));
        }
    }
    println!(
        "{name}: {} seeds, {} failed, {:.1} s",
        seeds.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let mut report = format!(
            "{name}: {} of {} seeds failed; replay each with the command below it\n",
            failures.len(),
            seeds.len()
        );
        for (seed, why) in &failures {
            report.push_str(&format!(
                "\nseed {seed}:\n{}\n  replay: {}\n",
                indent(why),
                replay_command(name, test_file, *seed)
            ));
        }
        report.push_str("\nreplay commands:\n");
        for (seed, _) in &failures {
            report.push_str(&format!("  {}\n", replay_command(name, test_file, *seed)));
        }
        panic!("{report}");
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The path of a file under `sim/scenarios/`.
pub fn scenario_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sim/scenarios")
        .join(file)
}

/// Loads `sim/scenarios/<file>`, panicking with the loader's message if it is bad.
pub fn load_scenario(file: &str) -> Scenario {
    let path = scenario_path(file);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a scenario with one seed on the [`backend`], without a trace file.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Outcome, String> {
    livecam_sim::run(backend(), scenario, seed, None).map_err(|e| format!("run failed: {e}"))
}

/// A `Write` that appends to a shared buffer, so the trace can be read after the run.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs a scenario with one seed, capturing the trace lines.
pub fn run_with_trace(scenario: &Scenario, seed: u64) -> Result<(Outcome, Vec<u8>), String> {
    let buf = SharedBuf::default();
    let outcome = livecam_sim::run(backend(), scenario, seed, Some(Box::new(buf.clone())))
        .map_err(|e| format!("run failed: {e}"))?;
    Ok((outcome, buf.take()))
}

/// A run with what its trace says about every frame.
pub struct Run {
    pub outcome: Outcome,
    pub frames: Frames,
}

/// Runs a scenario with one seed and reads every frame's fate from the trace.
pub fn run_traced(scenario: &Scenario, seed: u64) -> Result<Run, String> {
    let (outcome, trace) = run_with_trace(scenario, seed)?;
    let frames = Frames::from_trace(&trace)?;
    Ok(Run { outcome, frames })
}

/// The fate of one frame, `(session, frame id)`, as the trace tells it.
#[derive(Debug, Default, Clone)]
pub struct FrameFate {
    /// When the camera captured it (pushed it into its sender), in simulated seconds.
    pub captured_s: f64,
    /// Its size in bytes (0: a capture instant skipped to fit the rate).
    pub len: usize,
    /// When the camera got its ACK.
    pub acked_s: Option<f64>,
    /// When the camera gave it up.
    pub given_up_s: Option<f64>,
    /// Why (`deadline`, `evicted`, `session_closed`).
    pub given_up_for: Option<String>,
    /// How many times a receiver delivered it.
    pub deliveries: u32,
    /// How many of those deliveries were damaged.
    pub damaged: u32,
}

/// Every frame of a run, and why datagrams were lost.
#[derive(Debug, Default)]
pub struct Frames {
    pub by_id: BTreeMap<(u32, u32), FrameFate>,
    /// Datagrams lost by the links, by cause (`random`, `burst`, `partition`, `queue_full`,
    /// `corrupted`).
    pub losses: BTreeMap<String, u64>,
}

/// Frames captured in a window of time and what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub captured: usize,
    pub acked: usize,
    pub given_up: usize,
}

impl Window {
    /// Acknowledged share of the frames captured (1 when none were).
    pub fn delivered_share(&self) -> f64 {
        if self.captured == 0 {
            1.0
        } else {
            self.acked as f64 / self.captured as f64
        }
    }
}

#[derive(Deserialize)]
struct TraceLine {
    t_us: u64,
    e: TraceEvent,
}

#[derive(Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum TraceEvent {
    FramePushed {
        session: u32,
        frame: u32,
        len: usize,
    },
    FrameAcked {
        session: u32,
        frame: u32,
    },
    FrameGivenUp {
        session: u32,
        frame: u32,
        reason: String,
    },
    FrameDelivered {
        session: u32,
        frame: u32,
        intact: bool,
    },
    Lost {
        cause: String,
    },
    #[serde(other)]
    Other,
}

impl FrameFate {
    /// Capture to ACK in milliseconds, if it was acknowledged.
    pub fn latency_ms(&self) -> Option<f64> {
        self.acked_s.map(|a| (a - self.captured_s) * 1000.0)
    }
}

impl Frames {
    /// Reads the frame and loss events out of trace lines (one JSON object a line).
    pub fn from_trace(trace: &[u8]) -> Result<Frames, String> {
        let text = std::str::from_utf8(trace).map_err(|e| format!("trace is not UTF-8: {e}"))?;
        let mut frames = Frames::default();
        for line in text.lines() {
            // Only these events matter here; skip the rest unparsed (most lines are datagrams).
            if !(line.contains(r#""ev":"frame_"#) || line.contains(r#""ev":"lost""#)) {
                continue;
            }
            let parsed: TraceLine = serde_json::from_str(line)
                .map_err(|e| format!("unreadable trace line {line:?}: {e}"))?;
            let t = parsed.t_us as f64 / 1e6;
            match parsed.e {
                TraceEvent::FramePushed {
                    session,
                    frame,
                    len,
                } => {
                    let f = frames.by_id.entry((session, frame)).or_default();
                    f.captured_s = t;
                    f.len = len;
                }
                TraceEvent::FrameAcked { session, frame } => {
                    frames.by_id.entry((session, frame)).or_default().acked_s = Some(t);
                }
                TraceEvent::FrameGivenUp {
                    session,
                    frame,
                    reason,
                } => {
                    let f = frames.by_id.entry((session, frame)).or_default();
                    f.given_up_s = Some(t);
                    f.given_up_for = Some(reason);
                }
                TraceEvent::FrameDelivered {
                    session,
                    frame,
                    intact,
                } => {
                    let f = frames.by_id.entry((session, frame)).or_default();
                    f.deliveries += 1;
                    f.damaged += u32::from(!intact);
                }
                TraceEvent::Lost { cause } => *frames.losses.entry(cause).or_default() += 1,
                TraceEvent::Other => {}
            }
        }
        Ok(frames)
    }

    /// The frames captured at or after `from_s` and before `until_s`.
    pub fn captured_between(&self, from_s: f64, until_s: f64) -> Window {
        let mut w = Window::default();
        for f in self
            .by_id
            .values()
            .filter(|f| f.captured_s >= from_s && f.captured_s < until_s)
        {
            w.captured += 1;
            w.acked += usize::from(f.acked_s.is_some());
            w.given_up += usize::from(f.given_up_s.is_some());
        }
        w
    }

    /// Datagrams the links lost for `cause`.
    pub fn lost(&self, cause: &str) -> u64 {
        self.losses.get(cause).copied().unwrap_or(0)
    }

    /// Frames acknowledged after their deadline, or given up for another reason than the
    /// deadline, or at another time than the deadline (within `slack_s` after it).
    pub fn deadline_problems(&self, deadline_s: f64, slack_s: f64) -> Vec<String> {
        let mut out = Vec::new();
        for (&(session, frame), f) in &self.by_id {
            let id = format!("session {session} frame {frame}");
            if let Some(at) = f.acked_s {
                if at - f.captured_s > deadline_s + 1e-6 {
                    out.push(format!(
                        "{id}: acknowledged {:.3} s after capture, past its deadline",
                        at - f.captured_s
                    ));
                }
            }
            if let Some(at) = f.given_up_s {
                let age = at - f.captured_s;
                match f.given_up_for.as_deref() {
                    // Dropped at the source by the rate control: a capture instant skipped
                    // (at once), or a frame a newer capture superseded before it could start
                    // (by its deadline at the latest, and when its session opened for one
                    // captured during the set-up).
                    Some("skipped") if age > 1e-6 => {
                        out.push(format!("{id}: skipped {age:.3} s after capture"))
                    }
                    Some(why @ ("superseded" | "set_up")) if age > deadline_s + 1e-6 => {
                        out.push(format!("{id}: {why} {age:.3} s after capture"))
                    }
                    Some("skipped" | "superseded" | "set_up") => {}
                    Some("deadline") => {
                        if age < deadline_s - 1e-6 || age > deadline_s + slack_s {
                            out.push(format!(
                                "{id}: given up {age:.3} s after capture, deadline {deadline_s} s"
                            ));
                        }
                    }
                    other => out.push(format!("{id}: given up for {other:?}")),
                }
            }
        }
        out.truncate(10);
        out
    }

    /// What the trace shows that no frame may do: be delivered twice or damaged, be both
    /// acknowledged and given up, be acknowledged yet never delivered, or be captured and
    /// then neither acknowledged nor given up. (This reads the trace directly, independently of
    /// the run's own summary.) Only for runs without crashes.
    pub fn broken_promises(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (&(session, frame), f) in &self.by_id {
            let id = format!("session {session} frame {frame}");
            if f.deliveries > 1 {
                out.push(format!("{id}: delivered {} times", f.deliveries));
            }
            if f.damaged > 0 {
                out.push(format!("{id}: delivered damaged"));
            }
            match (f.acked_s, f.given_up_s) {
                (Some(_), Some(_)) => out.push(format!("{id}: both acknowledged and given up")),
                (Some(_), None) if f.deliveries == 0 => {
                    out.push(format!("{id}: acknowledged, never delivered"))
                }
                (None, None) => out.push(format!(
                    "{id}: captured at {:.3} s, neither acknowledged nor given up",
                    f.captured_s
                )),
                _ => {}
            }
        }
        out.truncate(10);
        out
    }
}

/// Camera hosts in a scenario.
pub fn cameras(scenario: &Scenario) -> u64 {
    scenario
        .hosts()
        .iter()
        .filter(|h| h.role == RoleKind::Camera)
        .count() as u64
}

/// When the cameras stop capturing.
pub fn capture_end_s(scenario: &Scenario) -> f64 {
    scenario.duration_s - scenario.workload.settle_s
}

/// The promises every run must keep, checked on its summary: every frame captured is
/// acknowledged or reported dropped (or was on a crashed host), none is delivered damaged or
/// twice, none is acknowledged without being delivered; and, in runs without crashes, the
/// workload really ran: every camera captured its frames and no frame went down with a host.
pub fn summary_problems(scenario: &Scenario, outcome: &Outcome) -> Vec<String> {
    let s = &outcome.summary;
    let mut out = Vec::new();
    if !s.promises_kept {
        out.push(format!("promises broken: {:?}", s.violations));
    }
    if s.frames_corrupted != 0 {
        out.push(format!("{} frames delivered damaged", s.frames_corrupted));
    }
    if s.frames_duplicated != 0 {
        out.push(format!("{} frames delivered twice", s.frames_duplicated));
    }
    if s.frames_sent != s.frames_delivered + s.frames_dropped + s.frames_lost_with_host {
        out.push(format!(
            "frames_sent {} != delivered {} + dropped {} + lost with host {}",
            s.frames_sent, s.frames_delivered, s.frames_dropped, s.frames_lost_with_host
        ));
    }
    let has_cluster = scenario
        .hosts()
        .iter()
        .any(|h| matches!(h.role, RoleKind::Tier1 | RoleKind::Tier2 | RoleKind::Mobile));
    if s.cluster.is_some() && !has_cluster {
        out.push("cluster figures in a run without a cluster".into());
    }
    let crashes = scenario
        .faults
        .iter()
        .any(|f| matches!(f, Fault::Crash { .. }));
    if crashes {
        // A crash takes frames with it and a restart opens a new session: the counts below
        // do not apply.
        return out;
    }
    if s.frames_lost_with_host != 0 {
        out.push(format!(
            "{} frames lost with a host, but no host crashed",
            s.frames_lost_with_host
        ));
    }
    // Each camera captures frames_per_camera frames, one fewer when its stagger cuts into the
    // last frame period. Anything else means the workload did not run as the scenario says.
    let cams = cameras(scenario);
    let per_camera = scenario.frames_per_camera();
    let expected = cams * per_camera.saturating_sub(1)..=cams * per_camera;
    if !expected.contains(&s.frames_sent) {
        out.push(format!(
            "{} frames captured, expected {expected:?} ({cams} cameras)",
            s.frames_sent
        ));
    }
    if outcome.size_series.len() as u64 != cams {
        out.push(format!(
            "segment sizes recorded for {} sessions, expected {cams}",
            outcome.size_series.len()
        ));
    }
    out
}

/// The segment size a session used at time `t`: the last change at or before `t` (the start
/// size before any change).
pub fn size_at(series: &[(f64, usize)], t: f64) -> usize {
    series
        .iter()
        .take_while(|&&(at, _)| at <= t)
        .last()
        .or(series.first())
        .map_or(0, |&(_, size)| size)
}

/// The smallest segment size a session used from `from_s` to `until_s`.
pub fn min_size_between(series: &[(f64, usize)], from_s: f64, until_s: f64) -> usize {
    series
        .iter()
        .filter(|&&(at, _)| at > from_s && at <= until_s)
        .map(|&(_, size)| size)
        .chain(std::iter::once(size_at(series, from_s)))
        .min()
        .unwrap_or(0)
}

/// The segment size a session ended with.
pub fn final_size(series: &[(f64, usize)]) -> usize {
    series.last().map_or(0, |&(_, size)| size)
}

/// Checks that every session's segment size shrank to at most `shrunk_max` some time in
/// `[bad_from_s, bad_until_s]` and had grown back to at least `final_min` (and to at least
/// `growth` times that low point) by the end.
pub fn size_problems(
    outcome: &Outcome,
    bad_from_s: f64,
    bad_until_s: f64,
    shrunk_max: usize,
    final_min: usize,
    growth: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (session, series) in &outcome.size_series {
        let low = min_size_between(series, bad_from_s, bad_until_s);
        let last = final_size(series);
        if low > shrunk_max {
            out.push(format!(
                "session {session}: segment size never went below {low} in \
                 {bad_from_s}..{bad_until_s} s (expected <= {shrunk_max}); sizes: {}",
                show_series(series)
            ));
        }
        if last < final_min || last < growth * low {
            out.push(format!(
                "session {session}: segment size ended at {last}, expected >= {final_min} and \
                 >= {growth} x its low point {low}; sizes: {}",
                show_series(series)
            ));
        }
    }
    out
}

/// A size series, compactly, for failure messages.
pub fn show_series(series: &[(f64, usize)]) -> String {
    let shown: Vec<String> = series
        .iter()
        .map(|(t, size)| format!("{t:.2}s:{size}"))
        .collect();
    if shown.len() > 60 && std::env::var_os("LIVECAM_FULL_SERIES").is_none() {
        format!(
            "{} ... {}",
            shown[..30].join(" "),
            shown[shown.len() - 30..].join(" ")
        )
    } else {
        shown.join(" ")
    }
}

/// Turns a list of problems into a seed loop result, with the run's figures for context.
pub fn verdict(outcome: &Outcome, problems: Vec<String>) -> Result<(), String> {
    let s = &outcome.summary;
    let figures = format!(
        "seed {}: captured {} acked {} dropped {} received {} lost-by-link {} resent {}/{} \
         p99 {:.0} ms, trace {}",
        outcome.seed,
        s.frames_sent,
        s.frames_delivered,
        s.frames_dropped,
        s.frames_received,
        s.datagrams_lost_by_link,
        s.segments_resent,
        s.segments_sent,
        s.latency_ms_p99,
        outcome.trace_hash
    );
    println!("{figures}");
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n({figures})", problems.join("\n")))
    }
}

/// Scrapes `http://ADDR/metrics` and parses it with a Prometheus text parser.
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let body = ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap_or_else(|e| panic!("scraping {addr}: {e}"))
        .into_string()
        .expect("metrics body");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("metrics of {addr} do not parse: {e}\n{body}"))
}
