//! The subcommands of `livecam`: one module per subcommand, each owning its clap `Args` (or
//! `Action`, for a subcommand with actions of its own) and its `run`. `main.rs` only wraps
//! them in its `Command` enum and dispatches. What several modules use lives here; what one
//! uses lives with it.

use anyhow::Context;

pub mod bench;
pub mod experiment;
pub mod explore;
pub mod keygen;
pub mod load;
pub mod roles;
pub mod sim;
pub mod transfer;
pub mod up;
pub mod user;

/// The single-threaded tokio runtime a role process runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Runs `future` to completion on [`runtime`] inside a `LocalSet`, for futures that spawn
/// local (non-`Send`) tasks.
pub fn block_on_local<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    Ok(tokio::task::LocalSet::new().block_on(&runtime()?, future))
}

/// The path of this `livecam` binary, for commands that start servers as child processes.
pub fn livecam_exe() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("finding the livecam binary")
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
