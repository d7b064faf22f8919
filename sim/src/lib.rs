//! Deterministic simulation of livecam.
//!
//! The same role code that runs for real ([`livecam_system::role`], driven by
//! [`livecam_system::driver::run`]) runs here under turmoil, and under madsim when built with
//! `RUSTFLAGS="--cfg madsim"`, with the shared seeded link models applied per directed host
//! pair ([`linked::LinkedSocket`]), scenario files ([`scenario`]), fault schedules, and a trace
//! hash ([`trace`]) that proves a run is a function of its scenario and seed.
//!
//! ```no_run
//! use livecam_sim::{scenario::Scenario, simulator};
//!
//! let scenario = Scenario::load("sim/scenarios/reference.toml".as_ref()).unwrap();
//! let outcome = simulator::run(simulator::Simulator::Turmoil, &scenario, 7, None).unwrap();
//! assert!(outcome.summary.promises_kept, "{:?}", outcome.summary.violations);
//! println!("{}", outcome.trace_hash);
//! ```

pub mod explore;
pub mod host;
pub mod linked;
pub mod scenario;
pub mod simulator;
pub mod state;
pub mod storage;
pub mod summary;
pub mod trace;

pub use scenario::Scenario;
pub use simulator::{run, Outcome, SimError, Simulator};
