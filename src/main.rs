//! `livecam`: the one command-line front end of the live mobile camera system.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use livecam_sim::{Backend, Scenario};
use livecam_system::proto::{FecKind, PolicyKind};
use livecam_system::runtime::service;
use livecam_system::runtime::transfer::{transfer, TransferOptions};

/// The scenario `livecam sim` runs when given none.
const REFERENCE_SCENARIO: &str = include_str!("../sim/scenarios/reference.toml");

#[derive(Parser)]
#[command(
    name = "livecam",
    version,
    about = "Live mobile camera system and its testbed"
)]
struct Cli {
    /// Run on this CPU core only (sched_setaffinity), e.g. to pin a server for a benchmark.
    #[arg(long, global = true)]
    cpu: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream frames from a sender to a receiver over real UDP on loopback and print one JSON
    /// line of figures.
    Transfer {
        /// Frames to send.
        #[arg(long, default_value_t = 100)]
        frames: u64,
        /// Bytes per frame.
        #[arg(long = "frame-size", default_value_t = 10_000)]
        frame_size: usize,
        /// Frames per second.
        #[arg(long, default_value_t = 30.0)]
        fps: f64,
        /// Probability that a datagram is dropped, each direction (seeded).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Seed of the loss pattern and the frame content.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Segment size policy: `seed`, `fixed:N` or `model`.
        #[arg(long, default_value = "seed")]
        policy: PolicyKind,
        /// Parity segments per frame: `off` (NACK only), `auto` or `fixed:M`.
        #[arg(long, default_value = "off")]
        fec: FecKind,
        /// Sender pacing in bytes per second (unpaced when absent).
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Run a tier-1 server (config: deploy/tier1-a.toml) until SIGINT or SIGTERM; print a JSON
    /// summary on exit.
    Tier1 {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a tier-2 server (config: deploy/tier2-a.toml) until SIGINT or SIGTERM.
    Tier2 {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a mobile client with a synthetic camera (config: deploy/mobile.toml) until SIGINT
    /// or SIGTERM.
    Mobile {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the backend: database, map and web server, command desk (config:
    /// deploy/backend.toml) until SIGINT or SIGTERM.
    Backend {
        #[arg(long)]
        config: PathBuf,
    },
    /// Start a whole system on loopback: 2 tier-1s, 4 tier-2s, the backend and N synthetic
    /// mobile clients; print the browser URL; run until Ctrl-C, then print a JSON summary.
    Up {
        /// Mobile clients to start.
        #[arg(long, default_value_t = 8)]
        clients: u32,
        /// Probability that a mobile client's datagram is lost on the uplink (seeded).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Frames per second of each mobile client.
        #[arg(long, default_value_t = 5.0)]
        fps: f64,
        /// The web server's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
        /// Database URL (`sqlite:PATH` or `postgres://...`); a fresh SQLite file in the temp
        /// directory when absent.
        #[arg(long)]
        database: Option<String>,
        /// Seed of the loss pattern.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A file whose first line is the password of the web login `admin`; without it a
        /// random one is made and printed once.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Serve the web UI over HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Manage the users of the web API and UI (passwords from --password-file or stdin).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Run N camera clients of the real protocol in this one process against a running
    /// cluster and print a JSON summary: sessions, frames, latency, resends, and the servers'
    /// CPU seconds and RSS from /proc.
    Load {
        /// Tier-1 addresses, default first, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        tier1: Vec<std::net::SocketAddr>,
        #[arg(long)]
        cameras: u32,
        #[arg(long, default_value_t = 10.0)]
        fps: f64,
        /// Bytes per frame, captured-frame header included.
        #[arg(long = "frame-bytes", default_value_t = 10_000)]
        frame_bytes: usize,
        /// Seconds of capture.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Probability that a camera's datagram is lost on its way out (seeded).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Client id of the first camera (ids must be unique in the fleet).
        #[arg(long = "first-id", default_value_t = 1_000_000)]
        first_id: u32,
        /// Keys directory (`livecam keygen --cluster DIR --devices ...`) holding a key for
        /// every camera id and for `first-id - 1`; without it cameras speak the plain protocol
        /// (tier-2s with `insecure = true`).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Cameras keep frames until a tier-2 reports them stored (STORED) and backfill the
        /// rest, as deployed cameras do; the summary counts frames stored.
        #[arg(long)]
        durable: bool,
    },
    /// Make keys for authenticated sessions. `livecam keygen PATH` writes a private key to
    /// PATH (mode 0600) and its public key to PATH.pub, and prints the public key.
    /// `livecam keygen --cluster DIR --devices 1-20,31` makes a whole cluster's keys in DIR:
    /// cluster.key (for every tier-2), device-ID.key per device, devices.toml (the registry
    /// tier-2s admit), and a signing key per server (tier1-ID.sign, tier2-ID.sign,
    /// backend-ID.sign: `--tier1`, `--tier2`, `--backends`) with their registry servers.toml.
    Keygen {
        /// Where the private key goes (its public key: PATH.pub).
        #[arg(required_unless_present = "cluster", conflicts_with = "cluster")]
        path: Option<PathBuf>,
        /// A directory for a whole cluster's keys.
        #[arg(long, requires = "devices")]
        cluster: Option<PathBuf>,
        /// Device ids for `--cluster`: ranges and single ids, comma separated.
        #[arg(long)]
        devices: Option<String>,
        /// Tier-1 ids for `--cluster` (their signing keys).
        #[arg(long, default_value = "1")]
        tier1: String,
        /// Tier-2 ids for `--cluster` (their signing keys).
        #[arg(long, default_value = "11")]
        tier2: String,
        /// Backend ids for `--cluster` (their signing keys).
        #[arg(long, default_value = "1")]
        backends: String,
    },
    /// Measurements that print their figures: `capacity` (sessions per tier-2 core),
    /// `sim-scale` (simulation cost against fleet size).
    Bench {
        #[command(subcommand)]
        action: BenchAction,
    },
    /// Run a scenario file in deterministic simulation and print one JSON object of figures,
    /// with the trace hash that proves the run is a function of scenario and seed.
    Sim {
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
        #[arg(long, value_enum, default_value_t = SimBackend::Des)]
        backend: SimBackend,
    },
    /// Run a scenario's tier1/tier2/mobile processes across emulated links (network namespaces
    /// and a pnet bridge, or --relay on loopback) and print one JSON object of their summaries.
    Emulate(livecam_emulator::cli::EmulateArgs),
    /// Experiment sweeps: run them in simulation and write CSV, charts and an HTML report.
    Experiment {
        #[command(subcommand)]
        action: ExperimentCommand,
    },
}

#[derive(Subcommand)]
enum ExperimentCommand {
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
        return Ok(livecam_experiments::sweep::builtin()?
            .into_iter()
            .map(|s| s.name)
            .collect());
    }
    anyhow::ensure!(
        !names.is_empty(),
        "name the experiments to run, or --all (see `livecam experiment list`)"
    );
    Ok(names)
}

fn experiment(action: ExperimentCommand) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    match action {
        ExperimentCommand::List => {
            for s in livecam_experiments::sweep::builtin()? {
                println!(
                    "{:<20} {:>4} points x {:>2} seeds ({} with --quick)  {}",
                    s.name,
                    s.points.len(),
                    s.seeds,
                    s.quick_seeds,
                    s.title
                );
            }
        }
        ExperimentCommand::Run {
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
        ExperimentCommand::Merge { names, all, out } => {
            let names = experiment_names(names, all)?;
            for d in livecam_experiments::merge(&names, &out)? {
                println!("{}: merged {} runs -> {}", d.name, d.runs, d.path.display());
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum BenchAction {
    /// Ramp cameras against one tier-1 and one tier-2 pinned to one core until delivery
    /// falls below 99.9% or p99 latency rises 5 ms over one camera's; print the knee.
    Capacity {
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
    },
    /// A secured tier-2 under a flood of garbage and unauthenticated datagrams next to a
    /// legitimate load: goodput normal vs under flood, tier-2 RSS and CPU, datagrams rejected.
    Flood {
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
    },
    /// Run the reference scenario in simulation with growing fleets and write the cost growth
    /// (CSV, log-log charts of wall time and events per second, index.html) to OUT.
    SimScale {
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
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user: a viewer (reads only) or an operator (commands the clients given).
    Add {
        name: String,
        #[arg(long)]
        database: String,
        /// viewer or operator.
        #[arg(long, default_value = "viewer")]
        role: livecam_system::backend::users::Role,
        /// The clients an operator may command: all, none or ids like 1,2,7.
        #[arg(long, default_value = "all")]
        clients: livecam_system::backend::users::ClientScope,
        /// Read the password from this file's first line instead of stdin.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List the users: name, role, clients.
    List {
        #[arg(long)]
        database: String,
    },
    /// Remove a user and end their logins.
    Remove {
        name: String,
        #[arg(long)]
        database: String,
    },
    /// Set a user's password (from --password-file or stdin) and end their logins.
    Passwd {
        name: String,
        #[arg(long)]
        database: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SimBackend {
    Des,
    Turmoil,
    Madsim,
}

/// The single-threaded tokio runtime a role process runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Device ids as `1-20,31`: ranges and single ids, comma separated.
fn parse_ids(text: &str, flag: &str) -> anyhow::Result<Vec<u32>> {
    let mut ids = std::collections::BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (
            a.trim()
                .parse()
                .with_context(|| format!("{flag}: bad id {a:?}"))?,
            b.trim()
                .parse()
                .with_context(|| format!("{flag}: bad id {b:?}"))?,
        );
        anyhow::ensure!(a <= b, "{flag}: range {part:?} runs backwards");
        anyhow::ensure!(b - a < 1_000_000, "{flag}: range {part:?} is too long");
        ids.extend(a..=b);
    }
    anyhow::ensure!(!ids.is_empty(), "{flag}: no ids given");
    Ok(ids.into_iter().collect())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(cpu) = cli.cpu {
        livecam_system::runtime::capacity::pin_self_to(cpu)
            .with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    match cli.command {
        Command::Transfer {
            frames,
            frame_size,
            fps,
            loss,
            seed,
            policy,
            fec,
            rate,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&loss),
                "--loss must be within 0..=1, got {loss}"
            );
            anyhow::ensure!(fps > 0.0, "--fps must be positive, got {fps}");
            anyhow::ensure!(frame_size > 0, "--frame-size must be positive");
            let opts = TransferOptions {
                frames,
                frame_bytes: frame_size,
                fps,
                loss,
                seed,
                policy,
                fec,
                pacing_rate: rate,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let report = rt
                .block_on(transfer(&opts))
                .context("running the transfer")?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Keygen {
            path,
            cluster,
            devices,
            tier1,
            tier2,
            backends,
        } => {
            use livecam_system::runtime::security;
            if let Some(dir) = cluster {
                let ids = parse_ids(devices.as_deref().unwrap_or_default(), "--devices")?;
                let servers = security::servers(
                    &parse_ids(&tier1, "--tier1")?,
                    &parse_ids(&tier2, "--tier2")?,
                    &parse_ids(&backends, "--backends")?,
                );
                let keys = security::ClusterKeys::create(&dir, &ids, &servers)
                    .with_context(|| format!("writing keys to {}", dir.display()))?;
                println!(
                    "{}",
                    serde_json::json!({
                        "cluster_key": keys.cluster_key,
                        "cluster_public": keys.cluster_public.to_string(),
                        "devices": keys.devices,
                        "device_keys": ids.len(),
                        "servers": keys.servers,
                        "server_keys": servers.len(),
                    })
                );
            } else if let Some(path) = path {
                let public = security::keygen(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{public}");
            }
        }
        Command::Tier1 { config } => {
            let cfg = service::Tier1File::load(&config)?;
            let summary =
                runtime()?.block_on(service::run_tier1(&cfg, service::shutdown_signal()))?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Tier2 { config } => {
            let cfg = service::Tier2File::load(&config)?;
            let summary =
                runtime()?.block_on(service::run_tier2(&cfg, service::shutdown_signal()))?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Mobile { config } => {
            let cfg = service::MobileFile::load(&config)?;
            let summary =
                runtime()?.block_on(service::run_mobile(&cfg, service::shutdown_signal()))?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Backend { config } => {
            let cfg = livecam_system::runtime::backend::BackendFile::load(&config)?;
            let summary = runtime()?.block_on(livecam_system::runtime::backend::run_backend(
                &cfg,
                service::shutdown_signal(),
            ))?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Load {
            tier1,
            cameras,
            fps,
            frame_bytes,
            duration,
            loss,
            seed,
            first_id,
            keys,
            durable,
        } => {
            use livecam_system::runtime::load;
            anyhow::ensure!(
                duration.is_finite() && duration > 0.0 && duration < 1e6,
                "--duration must be positive seconds, got {duration}"
            );
            let opts = load::LoadOptions {
                tier1,
                cameras,
                fps,
                frame_bytes,
                duration: std::time::Duration::from_secs_f64(duration),
                loss,
                seed,
                first_id,
                keys,
                durable,
            };
            opts.validate()?;
            let local = tokio::task::LocalSet::new();
            let summary = local.block_on(&runtime()?, load::run_load(&opts))?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Bench {
            action:
                BenchAction::Capacity {
                    steps,
                    step_seconds,
                    fps,
                    frame_bytes,
                    server_cpu,
                    database,
                },
        } => {
            use livecam_system::runtime::capacity;
            anyhow::ensure!(
                step_seconds.is_finite() && step_seconds >= 1.0,
                "--step-seconds must be at least 1"
            );
            anyhow::ensure!(
                steps.windows(2).all(|w| w[0] < w[1]) && steps.first().is_some_and(|&n| n > 1),
                "--steps must be ascending camera counts above 1"
            );
            let opts = capacity::CapacityOptions {
                exe: std::env::current_exe().context("finding the livecam binary")?,
                server_cpu,
                steps,
                step: std::time::Duration::from_secs_f64(step_seconds),
                fps,
                frame_bytes,
                database,
                ..capacity::CapacityOptions::default()
            };
            let local = tokio::task::LocalSet::new();
            let report = local.block_on(
                &runtime()?,
                capacity::run_capacity(&opts, |s| {
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
                }),
            )?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Bench {
            action:
                BenchAction::Flood {
                    rate,
                    seconds,
                    baseline_seconds,
                    cameras,
                    fps,
                    frame_bytes,
                    sockets,
                    server_cpu,
                },
        } => {
            use livecam_system::runtime::flood;
            anyhow::ensure!(rate >= 1, "--rate must be at least 1");
            anyhow::ensure!(
                seconds.is_finite() && seconds >= 5.0,
                "--seconds must be at least 5"
            );
            anyhow::ensure!(
                baseline_seconds.is_finite() && baseline_seconds >= 1.0,
                "--baseline-seconds must be at least 1"
            );
            anyhow::ensure!(cameras >= 1, "--cameras must be at least 1");
            anyhow::ensure!(sockets >= 1, "--sockets must be at least 1");
            let opts = flood::FloodOptions {
                exe: std::env::current_exe().context("finding the livecam binary")?,
                server_cpu,
                rate,
                seconds,
                baseline_seconds,
                cameras,
                fps,
                frame_bytes,
                sockets,
                ..flood::FloodOptions::default()
            };
            let local = tokio::task::LocalSet::new();
            let report = local.block_on(&runtime()?, flood::run_flood(&opts))?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Bench {
            action:
                BenchAction::SimScale {
                    sizes,
                    seconds,
                    seed,
                    out,
                },
        } => {
            use livecam_experiments::scale;
            let opts = scale::ScaleOptions {
                sizes,
                seconds,
                seed,
                out,
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
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Up {
            clients,
            loss,
            fps,
            http,
            database,
            seed,
            password_file,
            tls_cert,
            tls_key,
        } => {
            use livecam_system::runtime::up;
            anyhow::ensure!(clients > 0, "--clients must be at least 1");
            anyhow::ensure!(
                (0.0..=1.0).contains(&loss),
                "--loss must be within 0..=1, got {loss}"
            );
            anyhow::ensure!(
                livecam_system::role::FPS_RANGE.contains(&fps),
                "--fps must be within 0.1..=60, got {fps}"
            );
            let opts = up::UpOptions {
                clients,
                loss,
                fps,
                http,
                database,
                seed,
                password_file,
                tls_cert,
                tls_key,
            };
            let local = tokio::task::LocalSet::new();
            let summary = local.block_on(
                &runtime()?,
                up::up(
                    &opts,
                    |url, password| match password {
                        Some(pw) => eprintln!(
                            "livecam is up: open {url} and log in as admin, password {pw} \
                             (shown once; Ctrl-C stops it)"
                        ),
                        None => eprintln!(
                            "livecam is up: open {url} and log in as admin with the password \
                             of --password-file (Ctrl-C stops it)"
                        ),
                    },
                    service::shutdown_signal(),
                ),
            )?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::User { action } => {
            use livecam_system::runtime::users::{run, UserAction};
            let (database, action) = match action {
                UserCommand::Add {
                    name,
                    database,
                    role,
                    clients,
                    password_file,
                } => (
                    database,
                    UserAction::Add {
                        name,
                        role,
                        clients,
                        password_file,
                    },
                ),
                UserCommand::List { database } => (database, UserAction::List),
                UserCommand::Remove { name, database } => (database, UserAction::Remove { name }),
                UserCommand::Passwd {
                    name,
                    database,
                    password_file,
                } => (
                    database,
                    UserAction::Passwd {
                        name,
                        password_file,
                    },
                ),
            };
            let out = run(&database, &action)?;
            if !out.is_empty() {
                println!("{}", out.trim_end());
            }
        }
        Command::Sim {
            scenario,
            seed,
            trace,
            backend,
        } => {
            let sc = match &scenario {
                Some(path) => Scenario::load(path)
                    .with_context(|| format!("loading scenario {}", path.display()))?,
                None => Scenario::parse(REFERENCE_SCENARIO)
                    .context("parsing the embedded reference scenario")?,
            };
            let seed = seed.unwrap_or(sc.seed);
            let out: livecam_sim::backend::TraceOut = match &trace {
                Some(path) => Some(Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating trace file {}", path.display()))?,
                ))),
                None => None,
            };
            let backend = match backend {
                SimBackend::Des => Backend::Des,
                SimBackend::Turmoil => Backend::Turmoil,
                SimBackend::Madsim => Backend::Madsim,
            };
            let outcome = livecam_sim::run(backend, &sc, seed, out)?;
            println!("{}", serde_json::to_string(&outcome)?);
        }
        Command::Experiment { action } => experiment(action)?,
        Command::Emulate(args) => livecam_emulator::cli::main(
            args,
            std::env::current_exe().context("finding the livecam binary")?,
        )?,
    }
    Ok(())
}
