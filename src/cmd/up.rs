//! `livecam up`: a whole system on loopback, run until Ctrl-C.

use std::path::PathBuf;

use livecam_system::runtime::{service, up};

/// Arguments of `livecam up`.
#[derive(clap::Args)]
pub struct Args {
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
    /// The map's tiles: a tile server's URL template
    /// (`https://tile.openstreetmap.org/{z}/{x}/{y}.png`, with --tiles-attribution), which the
    /// browser asks directly, or an MBTiles file; without it the map draws the synthetic city.
    #[arg(long)]
    tiles: Option<String>,
    /// What the tile source asks to be shown on the map, e.g. "(c) OpenStreetMap contributors".
    #[arg(long, requires = "tiles")]
    tiles_attribution: Option<String>,
    /// Where every role serves Prometheus metrics (`http://ADDR/metrics`): port 0 gives each
    /// role an ephemeral port; a port P gives the backend P, the tier-1s P+1 and P+2, the
    /// tier-2s P+3 to P+6 and mobile client N port P+6+N. The addresses are printed at start.
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics: std::net::SocketAddr,
}

/// Starts the system, prints the browser URL, and on Ctrl-C prints a JSON summary.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.loss),
        "--loss must be within 0..=1, got {}",
        args.loss
    );
    anyhow::ensure!(
        livecam_system::role::FPS_RANGE.contains(&args.fps),
        "--fps must be within 0.1..=60, got {}",
        args.fps
    );
    let port = u32::from(args.metrics.port());
    anyhow::ensure!(
        port == 0 || port + 6 + args.clients <= 65535,
        "--metrics {}: the roles take ports {port} to {}, beyond 65535; choose a lower port",
        args.metrics,
        port + 6 + args.clients
    );
    let opts = up::UpOptions {
        clients: args.clients,
        loss: args.loss,
        fps: args.fps,
        http: args.http,
        database: args.database,
        seed: args.seed,
        password_file: args.password_file,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tiles: args.tiles,
        tiles_attribution: args.tiles_attribution,
        metrics: Some(args.metrics),
    };
    let summary = super::block_on_local(up::up(
        &opts,
        |ready| {
            eprintln!("metrics (Prometheus text):");
            for m in ready.metrics {
                eprintln!("  {:<8} {:>4}  http://{}/metrics", m.role, m.id, m.addr);
            }
            let url = ready.url;
            match ready.password {
                Some(pw) => eprintln!(
                    "livecam is up: open {url} and log in as admin, password {pw} \
                     (shown once; Ctrl-C stops it)"
                ),
                None => eprintln!(
                    "livecam is up: open {url} and log in as admin with the password \
                     of --password-file (Ctrl-C stops it)"
                ),
            }
        },
        service::shutdown_signal(),
    ))??;
    super::print_json(&summary)
}
