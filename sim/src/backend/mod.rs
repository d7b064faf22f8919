//! Simulation backends: each runs a [`Scenario`] with a seed and returns the [`Outcome`].
//!
//! - [`des`]: our discrete-event executor; exact time, fastest; the default.
//! - [`turmoil`](self::turmoil): turmoil's hosts and clock (1 ms ticks).
//! - `madsim`: when built with `RUSTFLAGS="--cfg madsim"`.
//!
//! Both apply the same link models ([`crate::linked::LinkedSocket`]) and run the same role code
//! ([`crate::host::host_main`]).

pub mod des;
#[cfg(madsim)]
pub mod madsim;
pub mod turmoil;

use std::io::Write;

use serde::Serialize;
use thiserror::Error;

use crate::scenario::{Fault, Scenario};
use crate::state::{lock, SimState};
use crate::summary::{Summary, Tally};
use crate::trace::{NetEvent, Trace};

/// A run that could not complete.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("simulation failed: {0}")]
    Backend(String),
    #[error("writing the trace: {0}")]
    Trace(#[from] std::io::Error),
}

/// Which simulator runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Des,
    Turmoil,
    Madsim,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub seed: u64,
    pub backend: Backend,
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
    backend: Backend,
    scenario: &Scenario,
    seed: u64,
    trace: TraceOut,
) -> Result<Outcome, SimError> {
    match backend {
        Backend::Des => self::des::run(scenario, seed, trace),
        Backend::Turmoil => self::turmoil::run(scenario, seed, trace),
        #[cfg(madsim)]
        Backend::Madsim => self::madsim::run(scenario, seed, trace),
        #[cfg(not(madsim))]
        Backend::Madsim => Err(SimError::Backend(
            "the madsim backend needs a build with RUSTFLAGS=\"--cfg madsim\"".into(),
        )),
    }
}

/// The fault schedule in time order (stable for equal times: file order).
pub(crate) fn schedule(scenario: &Scenario) -> Vec<Fault> {
    let mut faults = scenario.faults.clone();
    faults.sort_by(|a, b| a.at_s().total_cmp(&b.at_s()));
    faults
}

/// What the fault schedule does to a host; each simulator does it its own way.
#[derive(Clone, Copy)]
pub(crate) enum HostFault {
    Crash,
    Restart,
}

/// The one fault loop of every simulator: applies the faults of `faults` (sorted, see
/// [`schedule`]) due at `now`, from `*next` on. Each one's link part goes to the shared state;
/// its crashes and restarts, per resolved host, to `on_host`.
pub(crate) fn apply_due_faults(
    scenario: &Scenario,
    state: &crate::state::Shared,
    faults: &[Fault],
    next: &mut usize,
    now: livecam_system::time::Instant,
    mut on_host: impl FnMut(HostFault, &crate::scenario::Host),
) {
    while let Some(f) = faults.get(*next) {
        if livecam_system::time::Instant::ZERO + std::time::Duration::from_secs_f64(f.at_s()) > now
        {
            break;
        }
        apply_link_fault(scenario, &mut lock(state), now, f);
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
        *next += 1;
    }
}

/// Applies a link fault to the shared state; host faults are the backend's.
pub(crate) fn apply_link_fault(
    scenario: &Scenario,
    state: &mut SimState,
    now: livecam_system::time::Instant,
    fault: &Fault,
) {
    let what = match fault {
        Fault::Partition { .. } => "partition",
        Fault::Repair { .. } => "repair",
        Fault::SetLink { .. } => "set_link",
        Fault::Crash { .. } => "crash",
        Fault::Restart { .. } => "restart",
        Fault::Drain { .. } => "drain",
    };
    let host = match fault {
        Fault::Crash { host, .. } | Fault::Restart { host, .. } | Fault::Drain { host, .. } => {
            host.as_str()
        }
        Fault::Partition { a, .. } | Fault::Repair { a, .. } | Fault::SetLink { a, .. } => {
            a.as_str()
        }
    };
    state.trace.record(now, host, &NetEvent::Fault { what });
    match fault {
        Fault::Partition { a, b, .. } | Fault::Repair { a, b, .. } => {
            let on = matches!(fault, Fault::Partition { .. });
            for (x, y) in scenario.directed_pairs(a, b, false) {
                state.set_partitioned(&x.name, &y.name, on);
            }
        }
        Fault::SetLink {
            a,
            b,
            one_way,
            config,
            ..
        } => {
            for (x, y) in scenario.directed_pairs(a, b, *one_way) {
                state.set_link(&x.name, &y.name, config.clone());
            }
        }
        Fault::Crash { host, .. } => {
            for h in scenario.resolve(host) {
                state.tally.on_crash(&h.name);
            }
        }
        // A drain reaches the tier-1 through its own schedule (see `host_main`).
        Fault::Restart { .. } | Fault::Drain { .. } => {}
    }
}

/// Builds the outcome once a run is over.
pub fn finish(
    backend: Backend,
    scenario: &Scenario,
    seed: u64,
    state: &crate::state::Shared,
    sim_seconds: f64,
    wall: std::time::Duration,
) -> Result<Outcome, SimError> {
    let mut st = lock(state);
    st.trace.finish()?;
    let tally: &Tally = &st.tally;
    let wall_seconds = wall.as_secs_f64();
    Ok(Outcome {
        scenario: scenario.name.clone(),
        seed,
        backend,
        summary: tally.summary(scenario, &|ip| st.name_of(ip).to_string()),
        size_series: tally.size_series().clone(),
        trace_hash: st.trace.hash(),
        trace_events: st.trace.len(),
        sim_seconds,
        wall_seconds,
        speedup: sim_seconds / wall_seconds.max(1e-9),
    })
}

/// A fresh shared state for a run.
pub fn new_state(scenario: &Scenario, seed: u64, trace: TraceOut) -> crate::state::Shared {
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
        run(Backend::Des, scenario, 1, None).expect("runs")
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
        for backend in [Backend::Des, Backend::Turmoil] {
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
