//! Simulation backends: each runs a [`Scenario`] with a seed and returns the [`Outcome`].
//!
//! - [`des`]: our discrete-event executor; exact time, fastest; the default.
//! - [`turmoil`](self::turmoil): turmoil's hosts and clock (1 ms ticks).
//! - `madsim`: when built with `RUSTFLAGS="--cfg madsim"`.
//!
//! Both apply the same link models ([`crate::net::LinkedSocket`]) and run the same role code
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
    let pairs = |a: &str, b: &str| {
        let mut v = Vec::new();
        for x in scenario.resolve(a) {
            for y in scenario.resolve(b) {
                v.push((x.name.clone(), y.name.clone()));
            }
        }
        v
    };
    match fault {
        Fault::Partition { a, b, .. } | Fault::Repair { a, b, .. } => {
            let on = matches!(fault, Fault::Partition { .. });
            for (x, y) in pairs(a, b) {
                state.set_partitioned(&x, &y, on);
                state.set_partitioned(&y, &x, on);
            }
        }
        Fault::SetLink {
            a,
            b,
            one_way,
            config,
            ..
        } => {
            for (x, y) in pairs(a, b) {
                state.set_link(&x, &y, config.clone());
                if !one_way {
                    state.set_link(&y, &x, config.clone());
                }
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
