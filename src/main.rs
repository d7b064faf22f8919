//! `livecam`: the one command-line front end of the live mobile camera system.

use anyhow::Context;
use clap::{Parser, Subcommand};
use livecam_system::proto::PolicyKind;
use livecam_system::runtime::transfer::{transfer, TransferOptions};

#[derive(Parser)]
#[command(
    name = "livecam",
    version,
    about = "Live mobile camera system and its testbed"
)]
struct Cli {
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
        /// Sender pacing in bytes per second (unpaced when absent).
        #[arg(long)]
        rate: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Transfer {
            frames,
            frame_size,
            fps,
            loss,
            seed,
            policy,
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
    }
    Ok(())
}
