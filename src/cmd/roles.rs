//! `livecam tier1`, `tier2`, `mobile` and `backend`: the role processes, each run from its
//! config file until SIGINT or SIGTERM, printing a JSON summary on exit.

use std::path::PathBuf;

use livecam_system::runtime::backend::{run_backend, BackendFile};
use livecam_system::runtime::service;

use super::runtime;

/// Arguments of every role: its config file.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
}

/// Runs a tier-1 server.
pub fn tier1(args: Args) -> anyhow::Result<()> {
    let cfg = service::Tier1File::load(&args.config)?;
    serve(service::run_tier1(&cfg, service::shutdown_signal()))
}

/// Runs a tier-2 server.
pub fn tier2(args: Args) -> anyhow::Result<()> {
    let cfg = service::Tier2File::load(&args.config)?;
    serve(service::run_tier2(&cfg, service::shutdown_signal()))
}

/// Runs a mobile client with a synthetic camera.
pub fn mobile(args: Args) -> anyhow::Result<()> {
    let cfg = service::MobileFile::load(&args.config)?;
    serve(service::run_mobile(&cfg, service::shutdown_signal()))
}

/// Runs the backend: database, map and web server, command desk.
pub fn backend(args: Args) -> anyhow::Result<()> {
    let cfg = BackendFile::load(&args.config)?;
    serve(run_backend(&cfg, service::shutdown_signal()))
}

/// Runs a role to its end on [`runtime`] and prints its summary.
fn serve<S, E>(role: impl std::future::Future<Output = Result<S, E>>) -> anyhow::Result<()>
where
    S: serde::Serialize,
    anyhow::Error: From<E>,
{
    let summary = runtime()?.block_on(role)?;
    super::print_json(&summary)
}
