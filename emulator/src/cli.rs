//! `livecam emulate`: the command line of the emulator.

use std::path::PathBuf;

use crate::experiment::ExperimentArgs;
use crate::plan::Plan;
use crate::run::{run, RunOptions};

/// Arguments of `livecam emulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulateArgs {
    /// The scenario to run (the simulator's format; hosts must be tier1, tier2 or mobile).
    pub scenario: Option<PathBuf>,
    /// Apply the link models to UDP between processes on loopback instead of namespaces:
    /// no privileges needed.
    #[arg(long)]
    pub relay: bool,
    /// Seconds to run (default: the scenario's duration_s).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seed of the link models (default: the scenario's seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Delete namespaces and interfaces left by emulator runs that were killed, then exit.
    #[arg(long)]
    pub sweep: bool,
    /// Measure the bridge (packets per second forwarded, latency added at zero configured
    /// delay) and print the figures; needs root.
    #[arg(long)]
    pub bench: bool,
    /// Run an emulator experiment and write its report under OUT/NAME/: `tcp-vs-segment` (the
    /// same frames over the segment protocol, TCP and SRT at 0-20 % loss) or `sim-vs-emulator`
    /// (scenarios in the des simulator and in the emulator); needs root.
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Where experiment reports go.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// tcp-vs-segment: frames per stream (default 300: 30 s at 10 fps).
    #[arg(long)]
    pub frames: Option<u32>,
    /// tcp-vs-segment: packet loss rates in percent, comma-separated (default 0,1,5,10,20).
    #[arg(long, value_delimiter = ',')]
    pub losses: Option<Vec<f64>>,
}

/// Errors of the command line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] crate::plan::LoadError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Net(#[from] crate::netns::NetError),
    #[error("{0}")]
    Usage(String),
    #[error("printing the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Experiment(#[from] crate::experiment::ExperimentError),
}

/// Runs `livecam emulate`; `exe` is the `livecam` binary, started for the roles.
pub fn main(args: EmulateArgs, exe: PathBuf) -> Result<(), CliError> {
    if args.sweep {
        let removed = crate::netns::sweep()?;
        println!("{{\"removed\":{removed}}}");
        return Ok(());
    }
    if args.bench {
        let report = crate::bench::run(args.duration.unwrap_or(2.0), 2000)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if let Some(name) = &args.experiment {
        let dir = crate::experiment::run(name, &ExperimentArgs::from(&args), &exe)?;
        println!("{name} -> {}", dir.display());
        return Ok(());
    }
    let Some(path) = &args.scenario else {
        return Err(CliError::Usage(
            "give a scenario file (e.g. emulator/scenarios/stream.toml), or --sweep, or --bench"
                .into(),
        ));
    };
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(CliError::Usage(format!(
                "--duration must be positive, got {d}"
            )));
        }
    }
    let plan = Plan::load(path, args.seed)?;
    let report = run(
        &plan,
        &RunOptions {
            relay: args.relay,
            duration_s: args.duration,
            exe,
        },
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

impl From<&EmulateArgs> for ExperimentArgs {
    fn from(a: &EmulateArgs) -> Self {
        ExperimentArgs {
            scenario: a.scenario.clone(),
            duration: a.duration,
            seed: a.seed,
            out: a.out.clone(),
            frames: a.frames,
            losses: a.losses.clone(),
        }
    }
}
