//! `livecam experiment`: experiment sweeps run in simulation, written as CSV, charts and an
//! HTML report.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Subcommand;

/// The actions of `livecam experiment`.
#[derive(Subcommand)]
pub enum Action {
    /// List the experiments with their points and seeds.
    List,
    /// Run experiments and write their reports under OUT/NAME/ (and OUT/index.html).
    Run {
        /// Experiments to run (see `list`).
        names: Vec<String>,
        /// Run every experiment.
        #[arg(long)]
        all: bool,
        /// Seeds per point, 1..=N (default: the experiment's own, fewer with --quick).
        #[arg(long)]
        seeds: Option<u64>,
        /// The quick variant: fewer seeds per point.
        #[arg(long)]
        quick: bool,
        /// Runs at once (default: the machine's cores); each run is single-threaded.
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only slice I of N (0-based: 0/4 .. 3/4) and save it for `merge`.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
        /// Where reports go.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
    },
    /// Join the slices written by `run --shard I/N` into the report.
    Merge {
        /// Experiments to merge.
        names: Vec<String>,
        /// Merge every experiment.
        #[arg(long)]
        all: bool,
        /// Where the reports and their shards are.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
    },
}

/// Lists, runs or merges experiments.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::List => {
            for s in livecam_experiments::sweep::builtin()? {
                // One line per experiment, its name first (tests/reports_current.rs reads it).
                let missing = s.missing.as_ref().map_or(String::new(), |dir| {
                    format!("  [cannot run here: the recorded traces {dir} are not there]")
                });
                println!(
                    "{:<20} {:>4} points x {:>2} seeds ({} with --quick)  {}{missing}",
                    s.name,
                    s.points.len(),
                    s.seeds,
                    s.quick_seeds,
                    s.title
                );
            }
        }
        Action::Run {
            names,
            all,
            seeds,
            quick,
            jobs,
            shard,
            out,
        } => {
            let names = experiment_names(names, all)?;
            anyhow::ensure!(seeds != Some(0), "--seeds must be at least 1");
            anyhow::ensure!(jobs != Some(0), "--jobs must be at least 1");
            let opts = livecam_experiments::RunOptions {
                seeds,
                quick,
                jobs,
                shard,
                out,
                progress: std::io::stderr().is_terminal(),
            };
            for name in &names {
                let start = std::time::Instant::now();
                let done = livecam_experiments::run(std::slice::from_ref(name), &opts)?;
                for d in done {
                    println!(
                        "{}: {} runs (seeds {}) in {:.1} s -> {}",
                        d.name,
                        d.runs,
                        d.seeds.len(),
                        start.elapsed().as_secs_f64(),
                        d.path.display()
                    );
                }
            }
        }
        Action::Merge { names, all, out } => {
            let names = experiment_names(names, all)?;
            for d in livecam_experiments::merge(&names, &out)? {
                println!("{}: merged {} runs -> {}", d.name, d.runs, d.path.display());
            }
        }
    }
    Ok(())
}

/// `I/N` of `--shard`.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("expected I/N, e.g. 0/4, got {s:?}"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("bad shard index {i:?}"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("bad shard count {n:?}"))?;
    if n == 0 || i >= n {
        return Err(format!("need 0 <= I < N, got {i}/{n}"));
    }
    Ok((i, n))
}

/// The experiments named, or all of them.
fn experiment_names(names: Vec<String>, all: bool) -> anyhow::Result<Vec<String>> {
    if all {
        anyhow::ensure!(names.is_empty(), "give experiment names or --all, not both");
        let mut names = Vec::new();
        for s in livecam_experiments::sweep::builtin()? {
            match s.runnable() {
                Ok(s) => names.push(s.name),
                Err(why) => eprintln!("skipping {why}"),
            }
        }
        return Ok(names);
    }
    anyhow::ensure!(
        !names.is_empty(),
        "name the experiments to run, or --all (see `livecam experiment list`)"
    );
    Ok(names)
}
