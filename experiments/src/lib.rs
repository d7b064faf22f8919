//! Experiment sweeps for livecam.
//!
//! This crate will hold the sweep definitions (`experiments/*.toml`), the parallel runner over
//! seeds, CSV export, plotters charts and the HTML report written under `reports/`. Every run is
//! a deterministic simulation from [`livecam_sim`], so a rerun with the same seeds writes the same
//! bytes. It is filled by the experiments issue.

pub use livecam_sim as sim;
