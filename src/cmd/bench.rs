//! `livecam bench`: measurements that print their figures.

use std::path::PathBuf;

use clap::Subcommand;

use livecam_experiments::scale;
use livecam_system::runtime::{capacity, flood};

use super::{block_on_local, livecam_exe, print_json};

/// The measurements of `livecam bench`.
#[derive(Subcommand)]
pub enum Action {
    /// Ramp cameras against one tier-1 and one tier-2 pinned to one core until delivery
    /// falls below 99.9% or p99 latency rises 5 ms over one camera's; print the knee.
    Capacity(CapacityArgs),
    /// A secured tier-2 under a flood of garbage and unauthenticated datagrams next to a
    /// legitimate load: goodput normal vs under flood, tier-2 RSS and CPU, datagrams rejected.
    Flood(FloodArgs),
    /// Run the reference scenario in simulation with growing fleets and write the cost growth
    /// (CSV, log-log charts of wall time and events per second, index.html) to OUT.
    SimScale(SimScaleArgs),
}

/// Arguments of `livecam bench capacity`.
#[derive(clap::Args)]
pub struct CapacityArgs {
    /// Camera counts to try, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,100,150,200,300,400,500,600,800,1000"
    )]
    steps: Vec<u32>,
    /// Seconds per step.
    #[arg(long = "step-seconds", default_value_t = 8.0)]
    step_seconds: f64,
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    #[arg(long = "frame-bytes", default_value_t = 10_000)]
    frame_bytes: usize,
    /// The core the servers are pinned to; the load generator takes the others.
    #[arg(long = "server-cpu", default_value_t = 0)]
    server_cpu: usize,
    /// The tier-2 commits every frame to a SQLite file (synchronous = FULL), the cameras
    /// keep frames until STORED, and a step also needs 99.9% of frames stored: what
    /// durable storage costs.
    #[arg(long)]
    database: bool,
}

/// Arguments of `livecam bench flood`.
#[derive(clap::Args)]
pub struct FloodArgs {
    /// Flood datagrams per second.
    #[arg(long, default_value_t = 200_000)]
    rate: u64,
    /// Seconds of flood.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds of the baseline load, without flood.
    #[arg(long = "baseline-seconds", default_value_t = 10.0)]
    baseline_seconds: f64,
    #[arg(long, default_value_t = 4)]
    cameras: u32,
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    #[arg(long = "frame-bytes", default_value_t = 10_000)]
    frame_bytes: usize,
    /// Sockets (source ports) the flood comes from.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// The core the servers are pinned to; load generator and flooder take the others.
    #[arg(long = "server-cpu", default_value_t = 0)]
    server_cpu: usize,
}

/// Arguments of `livecam bench sim-scale`.
#[derive(clap::Args)]
pub struct SimScaleArgs {
    /// Camera counts, ascending.
    #[arg(long, value_delimiter = ',', default_value = "10,30,100,300,1000")]
    sizes: Vec<usize>,
    /// Simulated seconds per run.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The report directory; its parent's index.html links it.
    #[arg(long, default_value = "reports/sim-scale")]
    out: PathBuf,
}

/// Runs the measurement, with progress on stderr, and prints its report as JSON.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Capacity(args) => run_capacity(args),
        Action::Flood(args) => run_flood(args),
        Action::SimScale(args) => run_sim_scale(args),
    }
}

fn run_capacity(args: CapacityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.step_seconds.is_finite() && args.step_seconds >= 1.0,
        "--step-seconds must be at least 1"
    );
    let steps = args.steps;
    anyhow::ensure!(
        steps.windows(2).all(|w| w[0] < w[1]) && steps.first().is_some_and(|&n| n > 1),
        "--steps must be ascending camera counts above 1"
    );
    let database = args.database;
    let opts = capacity::CapacityOptions {
        exe: livecam_exe()?,
        server_cpu: args.server_cpu,
        steps,
        step: std::time::Duration::from_secs_f64(args.step_seconds),
        fps: args.fps,
        frame_bytes: args.frame_bytes,
        database,
        ..capacity::CapacityOptions::default()
    };
    let report = block_on_local(capacity::run_capacity(&opts, |s| {
        let stored = if database {
            format!(", stored {:.4}", s.stored_ratio)
        } else {
            String::new()
        };
        eprintln!(
            "{:>5} cameras: delivered {:.4}{stored}, p99 {:.2} ms ({:+.2}), tier-2 {:.2} cores, {} MB",
            s.cameras,
            s.delivered_ratio,
            s.latency_ms_p99,
            s.added_p99_ms,
            s.tier2_cores,
            s.tier2_rss_bytes >> 20
        );
    }))??;
    print_json(&report)
}

fn run_flood(args: FloodArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate >= 1, "--rate must be at least 1");
    anyhow::ensure!(
        args.seconds.is_finite() && args.seconds >= 5.0,
        "--seconds must be at least 5"
    );
    anyhow::ensure!(
        args.baseline_seconds.is_finite() && args.baseline_seconds >= 1.0,
        "--baseline-seconds must be at least 1"
    );
    anyhow::ensure!(args.cameras >= 1, "--cameras must be at least 1");
    anyhow::ensure!(args.sockets >= 1, "--sockets must be at least 1");
    let opts = flood::FloodOptions {
        exe: livecam_exe()?,
        server_cpu: args.server_cpu,
        rate: args.rate,
        seconds: args.seconds,
        baseline_seconds: args.baseline_seconds,
        cameras: args.cameras,
        fps: args.fps,
        frame_bytes: args.frame_bytes,
        sockets: args.sockets,
        ..flood::FloodOptions::default()
    };
    let report = block_on_local(flood::run_flood(&opts))??;
    print_json(&report)
}

fn run_sim_scale(args: SimScaleArgs) -> anyhow::Result<()> {
    let opts = scale::ScaleOptions {
        sizes: args.sizes,
        seconds: args.seconds,
        seed: args.seed,
        out: args.out,
    };
    let report = scale::run(&opts, |r| {
        eprintln!(
            "{:>6} cameras: {:>8.2} s wall, {} s CPU, {:>10} events, {:>9.0} events/s, \
             {:.2}x real time",
            r.cameras,
            r.wall_seconds,
            r.cpu_seconds
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "?".into()),
            r.trace_events,
            r.events_per_second,
            r.speedup
        );
    })?;
    print_json(&report)
}
