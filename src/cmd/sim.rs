//! `livecam sim`: a scenario in deterministic simulation.

use std::path::PathBuf;

use anyhow::Context;

use livecam_sim::{Scenario, Simulator};

/// The scenario `livecam sim` runs when given none.
const REFERENCE_SCENARIO: &str = include_str!("../../sim/scenarios/reference.toml");

/// Arguments of `livecam sim`.
#[derive(clap::Args)]
pub struct Args {
    /// The scenario (TOML), e.g. sim/scenarios/cluster-balance.toml. Without one, the
    /// embedded reference scenario runs (sim/scenarios/reference.toml).
    scenario: Option<PathBuf>,
    /// Seed of the run (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Write every trace event as a JSON line to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Simulator: des (event-driven, exact time, fastest), turmoil (1 ms ticks), or madsim
    /// in a build with RUSTFLAGS="--cfg madsim".
    #[arg(long, value_enum, default_value_t = SimulatorArg::Des)]
    backend: SimulatorArg,
}

/// The simulator a command runs on, as `--backend` names it (`livecam sim`, `livecam explore`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulatorArg {
    Des,
    Turmoil,
    Madsim,
}

impl SimulatorArg {
    pub fn simulator(self) -> Simulator {
        match self {
            SimulatorArg::Des => Simulator::Des,
            SimulatorArg::Turmoil => Simulator::Turmoil,
            SimulatorArg::Madsim => Simulator::Madsim,
        }
    }

    /// The name `--backend` takes.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// Runs the scenario and prints one JSON object of figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let sc = match &args.scenario {
        Some(path) => {
            Scenario::load(path).with_context(|| format!("loading scenario {}", path.display()))?
        }
        None => Scenario::parse(REFERENCE_SCENARIO)
            .context("parsing the embedded reference scenario")?,
    };
    let seed = args.seed.unwrap_or(sc.seed);
    let out: livecam_sim::simulator::TraceOut = match &args.trace {
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("creating trace file {}", path.display()))?,
        ))),
        None => None,
    };
    let outcome = livecam_sim::run(args.backend.simulator(), &sc, seed, out)?;
    super::print_json(&outcome)
}
