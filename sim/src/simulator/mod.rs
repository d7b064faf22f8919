//! The simulators: each runs a [`Scenario`] with a seed and returns the [`Outcome`]. (The
//! product's backend, storage, map and web, is `livecam_system::backend`: another thing.)
//!
//! - [`des`]: our discrete-event executor; exact time, fastest; the default.
//! - [`turmoil`](self::turmoil): turmoil's hosts and clock (1 ms ticks).
//! - `madsim`: when built with `RUSTFLAGS="--cfg madsim"`.
//!
//! All drive the run's one network of link models ([`livecam_system::link::Network`], in the
//! shared [`SimState`]: des directly, turmoil and madsim through [`crate::linked::LinkedSocket`]),
//! run the same role code ([`crate::host::host_main`]) and follow one run skeleton ([`Run`]).

pub mod des;
#[cfg(madsim)]
pub mod madsim;
pub mod turmoil;

use std::io::Write;

use serde::Serialize;
use thiserror::Error;

use livecam_system::time::Instant;

use crate::scenario::{Fault, Host, RoleKind, Scenario};
use crate::state::{lock, Shared, SimState};
use crate::summary::{Summary, Tally};
use crate::trace::{NetEvent, Trace};

/// A run that could not complete.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("simulation failed: {0}")]
    Simulator(String),
    #[error("writing the trace: {0}")]
    Trace(#[from] std::io::Error),
}

/// Which simulator runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Simulator {
    Des,
    Turmoil,
    Madsim,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub seed: u64,
    pub backend: Simulator,
    #[serde(flatten)]
    pub summary: Summary,
    pub trace_hash: String,
    pub trace_events: u64,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// Simulated seconds per wall-clock second.
    pub speedup: f64,
    /// Segment size over time per camera session: `(seconds, size)`. Not printed.
    #[serde(skip)]
    pub size_series: std::collections::BTreeMap<u32, Vec<(f64, usize)>>,
}

/// Where a run's trace lines go, if anywhere.
pub type TraceOut = Option<Box<dyn Write + Send>>;

/// Runs `scenario` with `seed` on `backend`.
pub fn run(
    backend: Simulator,
    scenario: &Scenario,
    seed: u64,
    trace: TraceOut,
) -> Result<Outcome, SimError> {
    if backend != Simulator::Des && !scenario.clocks.is_empty() {
        return Err(SimError::Simulator(
            "clocks: host clocks off true time run on the des simulator only".into(),
        ));
    }
    if backend != Simulator::Des && scenario.hosts.iter().any(|h| h.uplinks > 1) {
        // Their networks give a host one address; the des gives each uplink its own.
        return Err(SimError::Simulator(
            "hosts[].uplinks: bonded uplinks run on the des simulator only".into(),
        ));
    }
    match backend {
        Simulator::Des => self::des::run(scenario, seed, trace),
        Simulator::Turmoil => self::turmoil::run(scenario, seed, trace),
        #[cfg(madsim)]
        Simulator::Madsim => self::madsim::run(scenario, seed, trace),
        #[cfg(not(madsim))]
        Simulator::Madsim => Err(SimError::Simulator(
            "the madsim backend needs a build with RUSTFLAGS=\"--cfg madsim\"".into(),
        )),
    }
}

/// The one run skeleton every simulator follows: a fresh world state, the fault schedule
/// with its cursor, and the outcome at the end. A simulator starts its hosts on
/// [`Run::state`], steps its own runtime up to each instant [`Faults::next_at`] names,
/// applies the faults due there ([`Faults::apply_due`]: their crashes and restarts are the
/// simulator's to carry out), runs on to [`Run::end`], and hands back [`Run::finish`].
pub(crate) struct Run<'a> {
    backend: Simulator,
    scenario: &'a Scenario,
    seed: u64,
    pub state: Shared,
    pub faults: Faults,
    started: std::time::Instant,
}

impl<'a> Run<'a> {
    pub fn start(backend: Simulator, scenario: &'a Scenario, seed: u64, trace: TraceOut) -> Self {
        Run {
            backend,
            scenario,
            seed,
            state: new_state(scenario, seed, trace),
            faults: Faults::of(scenario),
            started: std::time::Instant::now(),
        }
    }

    /// When the run ends, in simulated time.
    pub fn end(&self) -> Instant {
        Instant::ZERO + std::time::Duration::from_secs_f64(self.scenario.duration_s)
    }

    /// Applies the faults due at `now` (see [`Faults::apply_due`]).
    pub fn apply_faults(&mut self, now: Instant, on_host: impl FnMut(HostFault, &Host)) {
        self.faults
            .apply_due(self.scenario, &self.state, now, on_host);
    }

    /// The outcome, the simulator having run `sim_seconds`.
    pub fn finish(self, sim_seconds: f64) -> Result<Outcome, SimError> {
        let wall_seconds = self.started.elapsed().as_secs_f64();
        let mut st = lock(&self.state);
        st.trace.finish()?;
        let tally: &Tally = &st.tally;
        let mut summary = tally.summary(self.scenario, &|ip| st.name_of(ip).to_string());
        let sent = st.sent_bytes();
        for h in self
            .scenario
            .hosts()
            .iter()
            .filter(|h| h.role == RoleKind::Mobile)
        {
            let interfaces = self.scenario.interfaces_of(h).into_iter().map(|i| i.name);
            for name in std::iter::once(h.name.clone()).chain(interfaces) {
                let bytes = sent.get(name.as_str()).copied().unwrap_or(0);
                summary.uplink_bytes.insert(name, bytes);
            }
        }
        Ok(Outcome {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            backend: self.backend,
            summary,
            size_series: tally.size_series().clone(),
            trace_hash: st.trace.hash(),
            trace_events: st.trace.len(),
            sim_seconds,
            wall_seconds,
            speedup: sim_seconds / wall_seconds.max(1e-9),
        })
    }
}

/// What the fault schedule does to a host; each simulator does it its own way.
#[derive(Clone, Copy)]
pub(crate) enum HostFault {
    Crash,
    Restart,
}

/// A scenario's faults in time order (stable for equal times: file order) and how far a run
/// has got through them.
pub(crate) struct Faults {
    faults: Vec<Fault>,
    next: usize,
}

impl Faults {
    pub fn of(scenario: &Scenario) -> Self {
        let mut faults = scenario.faults.clone();
        faults.sort_by(|a, b| a.at_s().total_cmp(&b.at_s()));
        Faults { faults, next: 0 }
    }

    /// When the next fault is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.faults.get(self.next).map(Fault::at)
    }

    /// The one fault loop of every simulator: takes the faults due at `now`, traces each, and
    /// hands its crashes and restarts, per resolved host, to `on_host`. Their link part
    /// (partitions, repairs, link models) is the network's own schedule
    /// ([`Scenario::network`]), applied as it carries datagrams.
    pub fn apply_due(
        &mut self,
        scenario: &Scenario,
        state: &Shared,
        now: Instant,
        mut on_host: impl FnMut(HostFault, &Host),
    ) {
        while let Some(f) = self.faults.get(self.next) {
            if f.at() > now {
                break;
            }
            record_fault(scenario, &mut lock(state), now, f);
            let what = match f {
                Fault::Crash { host, .. } => Some((HostFault::Crash, host)),
                Fault::Restart { host, .. } => Some((HostFault::Restart, host)),
                _ => None,
            };
            if let Some((what, host)) = what {
                for h in scenario.resolve(host) {
                    on_host(what, &h);
                }
            }
            self.next += 1;
        }
    }
}

/// Traces a fault and counts the crashes it causes.
fn record_fault(scenario: &Scenario, state: &mut SimState, now: Instant, fault: &Fault) {
    let what = match fault {
        Fault::Partition { .. } => "partition",
        Fault::Repair { .. } => "repair",
        Fault::SetLink { .. } => "set_link",
        Fault::Crash { .. } => "crash",
        Fault::Restart { .. } => "restart",
        Fault::Drain { .. } => "drain",
        Fault::StallStorage { .. } => "stall_storage",
    };
    let host = match fault {
        Fault::Crash { host, .. }
        | Fault::Restart { host, .. }
        | Fault::Drain { host, .. }
        | Fault::StallStorage { host, .. } => host.as_str(),
        Fault::Partition { a, .. } | Fault::Repair { a, .. } | Fault::SetLink { a, .. } => {
            a.as_str()
        }
    };
    state.trace.record(now, host, &NetEvent::Fault { what });
    if let Fault::Crash { host, .. } = fault {
        for h in scenario.resolve(host) {
            state.tally.on_crash(&h.name);
        }
    }
}

/// A fresh shared state for a run.
pub fn new_state(scenario: &Scenario, seed: u64, trace: TraceOut) -> Shared {
    std::sync::Arc::new(std::sync::Mutex::new(SimState::new(
        scenario,
        seed,
        Trace::new(trace),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario_file(name: &str) -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name);
        Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn des(scenario: &Scenario) -> Outcome {
        run(Simulator::Des, scenario, 1, None).expect("runs")
    }

    /// The cellular uplink scenario with its capacity replaced by `config` (a TOML inline table
    /// of the uplink's link fields).
    fn uplink(config: &str) -> Scenario {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/cellular_uplink.toml"),
        )
        .expect("reads");
        let line = text
            .lines()
            .find(|l| l.starts_with("config = "))
            .expect("the uplink's config line");
        Scenario::parse(&text.replace(line, &format!("config = {config}"))).expect("valid")
    }

    #[test]
    fn a_capacity_drives_the_uplink_end_to_end() {
        let cellular = scenario_file("cellular_uplink.toml");
        let a = des(&cellular);
        assert!(a.summary.promises_kept, "{:?}", a.summary.violations);
        assert_eq!(
            a.trace_hash,
            des(&cellular).trace_hash,
            "a function of the scenario"
        );
        // The dips overflow the uplink's queue under the seed's sender; the rate control
        // keeps the queue short; a constant 250 KB/s overflows neither.
        let mut seed_sender = cellular.clone();
        seed_sender.protocol.rate_control = false;
        assert!(des(&seed_sender).summary.datagrams_lost_by_link > 0);
        assert!(
            a.summary.datagrams_lost_by_link < des(&seed_sender).summary.datagrams_lost_by_link
        );
        let rate = des(&uplink("{ delay_ms = 30.0, rate_bytes_per_s = 250000.0 }"));
        assert_eq!(rate.summary.datagrams_lost_by_link, 0);
        assert_eq!(rate.summary.frames_dropped, 0);
        // A flat synthetic capacity at the same mean behaves as the rate does.
        let flat = des(&uplink(
            "{ delay_ms = 30.0, capacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7, \
             variability = 0.0, outage_probability = 0.0 } } }",
        ));
        assert_eq!(flat.summary.datagrams_lost_by_link, 0);
        assert_eq!(flat.summary.frames_delivered, rate.summary.frames_delivered);
        assert!(
            (flat.summary.latency_ms_p50 - rate.summary.latency_ms_p50).abs() < 10.0,
            "{} vs {}",
            flat.summary.latency_ms_p50,
            rate.summary.latency_ms_p50
        );
    }

    #[test]
    fn a_capacity_with_no_opportunity_in_the_run_drops_every_frame_honestly() {
        let none = des(&uplink(
            "{ delay_ms = 30.0, capacity = { opportunities_ms = [600000] } }",
        ));
        assert!(none.summary.promises_kept, "{:?}", none.summary.violations);
        assert_eq!(none.summary.frames_delivered, 0);
        assert_eq!(none.summary.frames_dropped, none.summary.frames_sent);
    }

    #[test]
    fn set_link_switches_a_capacity_on_and_off_mid_run() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/cellular_uplink.toml"),
        )
        .expect("reads");
        let text = format!(
            "{text}
[[faults]]
at_s = 10.0
action = \"set_link\"
a = \"cam\"
b = \"server\"
one_way = true
config = {{ delay_ms = 30.0, rate_bytes_per_s = 20000.0 }}

[[faults]]
at_s = 20.0
action = \"set_link\"
a = \"cam\"
b = \"server\"
one_way = true
config = {{ delay_ms = 30.0 }}

[[faults]]
at_s = 30.0
action = \"set_link\"
a = \"cam\"
b = \"server\"
one_way = true
config = {{ delay_ms = 30.0, capacity = {{ opportunities_ms = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }} }}
"
        );
        let s = Scenario::parse(&text).expect("valid");
        for backend in [Simulator::Des, Simulator::Turmoil] {
            let o = run(backend, &s, 3, None).expect("runs");
            assert!(
                o.summary.promises_kept,
                "{backend:?}: {:?}",
                o.summary.violations
            );
            assert!(o.summary.frames_delivered > 0, "{backend:?}");
        }
    }

    #[test]
    fn a_recorded_trace_runs_from_its_path() {
        // GPLv3 mahimahi data next to the clone, read in place (never copied here).
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/cellular/ATT-LTE-driving-2016.up"
        );
        let o = des(&uplink(&format!(
            "{{ delay_ms = 30.0, capacity = {{ trace = {path:?} }} }}"
        )));
        assert!(o.summary.promises_kept, "{:?}", o.summary.violations);
        assert!(o.summary.frames_delivered > 0);
    }
}
