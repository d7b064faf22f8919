//! `livecam transfer`: frames from a sender to a receiver over real UDP on loopback.

use anyhow::Context;

use livecam_system::proto::{FecKind, PolicyKind};
use livecam_system::runtime::transfer::{transfer, TransferOptions};

/// Arguments of `livecam transfer`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Runs the transfer and prints one JSON line of figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        frames,
        frame_size,
        fps,
        loss,
        seed,
        policy,
        fec,
        rate,
    } = args;
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
    let report = super::runtime()?
        .block_on(transfer(&opts))
        .context("running the transfer")?;
    super::print_json(&report)
}
