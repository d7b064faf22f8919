//! `livecam`: the one command-line front end of the live mobile camera system. Each
//! subcommand's arguments and work live in its module under `cmd/`; this file parses, sets up
//! logging and dispatches.

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cmd;

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
    /// Log lines on stderr as text, or as one JSON object each (for a log collector). What
    /// is logged is set by RUST_LOG (default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Stream frames from a sender to a receiver over real UDP on loopback and print one JSON
    /// line of figures.
    Transfer(cmd::transfer::Args),
    /// Run a tier-1 server (config: deploy/tier1-a.toml) until SIGINT or SIGTERM; print a JSON
    /// summary on exit.
    Tier1(cmd::roles::Args),
    /// Run a tier-2 server (config: deploy/tier2-a.toml) until SIGINT or SIGTERM.
    Tier2(cmd::roles::Args),
    /// Run a mobile client with a synthetic camera (config: deploy/mobile.toml) until SIGINT
    /// or SIGTERM.
    Mobile(cmd::roles::Args),
    /// Run the backend: database, map and web server, command desk (config:
    /// deploy/backend.toml) until SIGINT or SIGTERM.
    Backend(cmd::roles::Args),
    /// Start a whole system on loopback: 2 tier-1s, 4 tier-2s, the backend and N synthetic
    /// mobile clients; print the browser URL; run until Ctrl-C, then print a JSON summary.
    Up(cmd::up::Args),
    /// Manage the users of the web API and UI (passwords from --password-file or stdin).
    #[command(subcommand)]
    User(cmd::user::Action),
    /// Run N camera clients of the real protocol in this one process against a running
    /// cluster and print a JSON summary: sessions, frames, latency, resends, and the servers'
    /// CPU seconds and RSS from /proc.
    Load(cmd::load::Args),
    /// Make keys for authenticated sessions. `livecam keygen PATH` writes a private key to
    /// PATH (mode 0600) and its public key to PATH.pub, and prints the public key.
    /// `livecam keygen --cluster DIR --devices 1-20,31` makes a whole cluster's keys in DIR:
    /// cluster.key (for every tier-2), device-ID.key per device, devices.toml (the registry
    /// tier-2s admit), and a signing key per server (tier1-ID.sign, tier2-ID.sign,
    /// backend-ID.sign: `--tier1`, `--tier2`, `--backends`) with their registry servers.toml.
    Keygen(cmd::keygen::Args),
    /// Measurements that print their figures: `capacity` (sessions per tier-2 core),
    /// `sim-scale` (simulation cost against fleet size).
    #[command(subcommand)]
    Bench(cmd::bench::Action),
    /// Run a scenario file in deterministic simulation and print one JSON object of figures,
    /// with the trace hash that proves the run is a function of scenario and seed.
    Sim(cmd::sim::Args),
    /// Explore: every seed draws a whole scenario (fleet, links, faults), runs it and checks
    /// the safety and liveness invariants; failures are written as scenario files with their
    /// replay command and shrunk. Prints a coverage table.
    Explore(cmd::explore::Args),
    /// Run a scenario's tier1/tier2/mobile processes across emulated links (network namespaces
    /// and a pnet bridge, or --relay on loopback) and print one JSON object of their summaries.
    Emulate(livecam_emulator::cli::EmulateArgs),
    /// Experiment sweeps: run them in simulation and write CSV, charts and an HTML report.
    #[command(subcommand)]
    Experiment(cmd::experiment::Action),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if let Some(cpu) = cli.cpu {
        livecam_system::runtime::capacity::pin_self_to(cpu)
            .with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    match cli.command {
        Command::Transfer(args) => cmd::transfer::run(args),
        Command::Tier1(args) => cmd::roles::tier1(args),
        Command::Tier2(args) => cmd::roles::tier2(args),
        Command::Mobile(args) => cmd::roles::mobile(args),
        Command::Backend(args) => cmd::roles::backend(args),
        Command::Up(args) => cmd::up::run(args),
        Command::User(action) => cmd::user::run(action),
        Command::Load(args) => cmd::load::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Bench(action) => cmd::bench::run(action),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Explore(args) => cmd::explore::run(args),
        Command::Emulate(args) => {
            livecam_emulator::cli::main(args, cmd::livecam_exe()?).map_err(anyhow::Error::from)
        }
        Command::Experiment(action) => cmd::experiment::run(action),
    }
}
