//! Deterministic simulation of livecam.
//!
//! The same role code that runs for real runs here under turmoil (and madsim when built with
//! `--cfg madsim`), with the shared seeded link models applied per directed host pair, scenario
//! files, fault schedules, and a trace hash that proves a run is a function of its scenario and
//! seed.
