//! Experiment sweeps for livecam: runner, CSV export, plotters charts and HTML report.
//!
//! A sweep (`experiments/*.toml`, compiled in, see [`sweep`]) is a scenario template and the
//! points to fill it with. [`run`] runs every point over several seeds in deterministic
//! simulation ([`livecam_sim`], event-driven backend), in parallel across cores with each run
//! single-threaded, and [`report`] writes under `reports/NAME/` one CSV row per run, a summary
//! CSV, charts as PNG and SVG, and an `index.html` with the charts, the figures and the command
//! that reproduces them; `reports/index.html` links every experiment. A rerun with the same
//! seeds writes the same bytes.
//!
//! ```no_run
//! use livecam_experiments::{run, RunOptions};
//!
//! let opts = RunOptions { quick: true, ..RunOptions::default() };
//! let done = run(&["segment-size-trace".to_string()], &opts).unwrap();
//! println!("{} runs", done[0].runs);
//! ```
//!
//! A sweep can be spread over machines: `shard: Some((i, n))` runs every `n`-th job from the
//! `i`-th and saves the records under `reports/NAME/shards/`; [`merge`] joins the slices into
//! the same report a single run writes.

pub mod analysis;
pub mod bounds;
pub mod chart;
pub mod events;
pub mod report;
pub mod runner;
pub mod scale;
pub mod sweep;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use runner::RunRecord;
pub use sweep::{Kind, Sweep};

/// What can go wrong.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Sweep { file: String, message: String },
    #[error("no experiment named {0:?} (see `livecam experiment list`)")]
    Unknown(String),
    #[error("run {point} seed {seed}: {message}")]
    Run {
        point: String,
        seed: u64,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    #[error("drawing {0}")]
    Plot(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seeds per point (`1..=n`); default the sweep's `seeds`, or `quick_seeds` with `quick`.
    pub seeds: Option<u64>,
    pub quick: bool,
    /// Threads; default the machine's cores.
    pub jobs: Option<usize>,
    /// Run only slice `i` of `n` (0-based) and save it for [`merge`].
    pub shard: Option<(usize, usize)>,
    /// Where reports go.
    pub out: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seeds: None,
            quick: false,
            jobs: None,
            shard: None,
            out: PathBuf::from("reports"),
            progress: false,
        }
    }
}

/// What one experiment run did.
#[derive(Debug, Clone)]
pub struct Done {
    pub name: String,
    pub runs: usize,
    pub seeds: Vec<u64>,
    /// The report directory, or the shard file.
    pub path: PathBuf,
}

/// The sweep named `name`.
pub fn find(name: &str) -> Result<Sweep, Error> {
    sweep::builtin()?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::Unknown(name.to_string()))?
        .runnable()
}

/// Runs the named experiments and writes their reports (or shard files).
pub fn run(names: &[String], opts: &RunOptions) -> Result<Vec<Done>, Error> {
    let sweeps = names
        .iter()
        .map(|n| find(n))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, n)) = opts.shard {
        if n == 0 || i >= n {
            return Err(Error::Other(format!(
                "--shard {i}/{n}: need 0 <= I < N (shards are numbered from 0)"
            )));
        }
    }
    let threads = opts.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut done = Vec::new();
    for sweep in &sweeps {
        let seeds = sweep.seed_list(opts.quick, opts.seeds);
        let all = runner::jobs(sweep, &seeds);
        match opts.shard {
            Some((i, n)) => {
                let mine = runner::shard(&all, i, n);
                let records = runner::run_jobs(sweep, &mine, threads, opts.progress)?;
                let path = report::write_shard(sweep, &seeds, (i, n), &records, &opts.out)?;
                done.push(Done {
                    name: sweep.name.clone(),
                    runs: records.len(),
                    seeds,
                    path,
                });
            }
            None => {
                let records = runner::run_jobs(sweep, &all, threads, opts.progress)?;
                let path = report::write(sweep, &seeds, &records, &opts.out)?;
                done.push(Done {
                    name: sweep.name.clone(),
                    runs: records.len(),
                    seeds,
                    path,
                });
            }
        }
    }
    report::write_index(&opts.out)?;
    Ok(done)
}

/// Joins the shard files of the named experiments under `out` into their reports.
pub fn merge(names: &[String], out: &Path) -> Result<Vec<Done>, Error> {
    let mut done = Vec::new();
    for name in names {
        let sweep = find(name)?;
        let (seeds, records) = report::read_shards(&sweep, out)?;
        let path = report::write(&sweep, &seeds, &records, out)?;
        done.push(Done {
            name: sweep.name.clone(),
            runs: records.len(),
            seeds,
            path,
        });
    }
    report::write_index(out)?;
    Ok(done)
}
