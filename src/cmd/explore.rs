//! `livecam explore`: the scenario explorer ([`livecam_sim::explore`]). Each seed draws a
//! whole scenario, runs it and judges it; every failure is written as a TOML file with its
//! replay command, then shrunk to a smaller one that still fails.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use livecam_sim::explore::{self, Coverage, Drawn, Plan, Verdict};
use livecam_system::link::CapacityTrace;
use livecam_system::mutants::Mutant;

use super::sim::SimulatorArg;

/// Arguments of `livecam explore`.
#[derive(clap::Args)]
pub struct Args {
    /// Seeds to explore (default 200; with --minutes, as many as fit).
    #[arg(long)]
    seeds: Option<u64>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Explore for this long (wall clock) instead of a number of seeds.
    #[arg(long)]
    minutes: Option<f64>,
    /// Scenarios run at once (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Simulator: des (the fastest) or turmoil.
    #[arg(long, value_enum, default_value_t = SimulatorArg::Des)]
    backend: SimulatorArg,
    /// Where failing scenarios (and their shrunk forms) are written.
    #[arg(long, default_value = "explore-out")]
    out: PathBuf,
    /// Runs the shrinker may spend on each failure (0: do not shrink).
    #[arg(long, default_value_t = 200)]
    shrink_budget: usize,
    /// A directory of Mahimahi trace files (such as ../shared/data/cellular): one drawn
    /// scenario in three takes a link's capacity from one of them.
    #[arg(long)]
    traces: Option<PathBuf>,
    /// The mutation check: for each known bug (or the one named), explore with it switched
    /// in until a seed fails that passes without it (--seeds is the budget per mutant,
    /// default 2000), then grow that scenario to --grow hosts and shrink it. Needs a build
    /// with `--features mutants`.
    #[arg(long)]
    mutants: bool,
    /// With --mutants: only this one (`ack-before-last-segment`, `stale-manager`, ...).
    #[arg(long, requires = "mutants")]
    mutant: Option<String>,
    /// With --mutants: the host count a found failure is grown to before it is shrunk.
    #[arg(long, default_value_t = 50, requires = "mutants")]
    grow: usize,
}

/// Explores, prints each failure as it is found and a summary with the coverage table at the
/// end; fails when any scenario failed.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.backend == SimulatorArg::Madsim {
        anyhow::bail!("--backend: explore runs on des or turmoil");
    }
    let backend = args.backend.simulator();
    let minutes = match args.minutes {
        Some(m) if !(m.is_finite() && m > 0.0) => anyhow::bail!("--minutes: must be above 0"),
        m => m,
    };
    let plan = Plan {
        first: args.first,
        count: match (args.seeds, minutes) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) if args.mutants => Some(2000),
            (None, None) => Some(200),
        },
        deadline: minutes.map(|m| Instant::now() + Duration::from_secs_f64(m * 60.0)),
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        backend,
        traces: match &args.traces {
            Some(dir) => trace_files(dir)?,
            None => Vec::new(),
        },
        mutant: None,
    };
    if args.mutants {
        return mutation_check(&args, &plan);
    }
    let started = Instant::now();
    let mut coverage = Coverage::default();
    let mut failed: Vec<(u64, PathBuf)> = Vec::new();
    let mut errors = 0;
    let mut sim_wall = 0.0;
    let ran = explore::explore(&plan, |seed, case| {
        match case {
            Ok(case) => {
                coverage.add(&case.drawn);
                sim_wall += case.wall_seconds;
                if !case.verdict.passed() {
                    match report_failure(&args, &case.drawn, &case.verdict) {
                        Ok(path) => failed.push((seed, path)),
                        Err(e) => {
                            eprintln!("seed {seed}: {e:#}");
                            errors += 1;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                errors += 1;
            }
        }
        ControlFlow::Continue(())
    });
    let wall = started.elapsed().as_secs_f64();
    println!(
        "explored {ran} scenarios (seeds {}..{}) in {wall:.1} s on {} jobs: {:.0} per minute, \
         {:.0} per minute per core; {} failed{}",
        plan.first,
        plan.first + ran,
        plan.jobs,
        ran as f64 / wall.max(1e-9) * 60.0,
        ran as f64 / sim_wall.max(1e-9) * 60.0,
        failed.len(),
        if errors > 0 {
            format!(", {errors} could not run")
        } else {
            String::new()
        }
    );
    println!("coverage (scenarios holding each):\n{}", coverage.table());
    if failed.is_empty() && errors == 0 {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {ran} scenarios failed: {}",
            failed.len() + errors,
            failed
                .iter()
                .map(|(s, p)| format!("seed {s} ({})", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Writes a failing scenario and its shrunk form, and prints both with their replay commands.
fn report_failure(args: &Args, drawn: &Drawn, verdict: &Verdict) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = write(
        &args.out,
        &format!("seed-{}.toml", drawn.seed),
        &drawn.toml(),
    )?;
    println!(
        "FAIL seed {} ({} hosts, {} faults):\n  {}\n  replay: livecam sim {} --backend {}",
        drawn.seed,
        drawn.hosts(),
        drawn.faults.len(),
        verdict.lines().join("\n  "),
        path.display(),
        args.backend.name()
    );
    if args.shrink_budget > 0 {
        let (small, runs) = explore::shrink(drawn, args.shrink_budget, |d| {
            explore::run(d, args.backend.simulator()).is_ok_and(|c| c.verdict.fails_like(verdict))
        });
        let shrunk = write(
            &args.out,
            &format!("seed-{}.min.toml", drawn.seed),
            &small.toml(),
        )?;
        println!(
            "  shrunk in {runs} runs to {} hosts, {} faults, {} s: livecam sim {} --backend {}",
            small.hosts(),
            small.faults.len(),
            small.duration_s,
            shrunk.display(),
            args.backend.name()
        );
    }
    Ok(path)
}

/// The Mahimahi traces in `dir`, sorted, as absolute paths (a written scenario replays from
/// anywhere). Files that are not traces (a README beside them) are skipped, each named.
fn trace_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("--traces: {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("--traces: {}", dir.display()))?
            .path();
        if !path.is_file() {
            continue;
        }
        if let Err(e) = CapacityTrace::load(&path) {
            eprintln!("--traces: skipping {}: {e}", path.display());
            continue;
        }
        let path = std::fs::canonicalize(&path)
            .with_context(|| format!("--traces: {}", path.display()))?;
        files.push(path.display().to_string());
    }
    files.sort();
    if files.is_empty() {
        anyhow::bail!("--traces: no Mahimahi trace in {}", dir.display());
    }
    Ok(files)
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `--mutants`: hunts each known bug, prints where it was found and what it shrank to, and a
/// tally at the end.
fn mutation_check(args: &Args, plan: &Plan) -> anyhow::Result<()> {
    let mutants: Vec<Mutant> = match &args.mutant {
        None => Mutant::ALL.to_vec(),
        Some(name) => vec![Mutant::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .with_context(|| {
                let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "--mutant: no mutant {name:?} (there are {})",
                    names.join(", ")
                )
            })?],
    };
    let budget = plan.count.unwrap_or(0);
    let started = Instant::now();
    let mut found = 0;
    for &m in &mutants {
        let hunt = explore::hunt(m, plan)?;
        let Some(case) = hunt.found else {
            println!("{:<24} NOT FOUND in {} seeds", m.name(), hunt.seeds_run);
            continue;
        };
        found += 1;
        let d = &case.drawn;
        println!(
            "{:<24} found at seed {} (the {}th; {} hosts, {} faults): {}",
            m.name(),
            d.seed,
            hunt.seeds_run,
            d.hosts(),
            d.faults.len(),
            case.verdict.lines().join("; ")
        );
        if args.shrink_budget == 0 {
            continue;
        }
        let fails = |d: &Drawn| {
            explore::with_mutant(Some(m), || explore::run(d, plan.backend))
                .is_ok_and(|r| r.is_ok_and(|c| c.verdict.fails_like(&case.verdict)))
        };
        let grown = d.grown(args.grow);
        let start = if fails(&grown) { grown } else { d.clone() };
        let (small, runs) = explore::shrink(&start, args.shrink_budget, fails);
        println!(
            "{:<24} shrunk from {} hosts and {} faults in {runs} runs to {} hosts, {} faults, {} s",
            "",
            start.hosts(),
            start.faults.len(),
            small.hosts(),
            small.faults.len(),
            small.duration_s
        );
    }
    println!(
        "mutation check: {found} of {} mutants found within {budget} seeds each, in {:.0} s",
        mutants.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
