//! `livecam load`: N camera clients of the real protocol in one process against a running
//! cluster.

use std::path::PathBuf;

use livecam_system::runtime::load;

/// Arguments of `livecam load`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Runs the cameras and prints a JSON summary.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0 && args.duration < 1e6,
        "--duration must be positive seconds, got {}",
        args.duration
    );
    let opts = load::LoadOptions {
        tier1: args.tier1,
        cameras: args.cameras,
        fps: args.fps,
        frame_bytes: args.frame_bytes,
        duration: std::time::Duration::from_secs_f64(args.duration),
        loss: args.loss,
        seed: args.seed,
        first_id: args.first_id,
        keys: args.keys,
        durable: args.durable,
    };
    opts.validate()?;
    let summary = super::block_on_local(load::run_load(&opts))??;
    super::print_json(&summary)
}
