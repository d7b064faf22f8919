//! `livecam keygen`: keys for authenticated sessions, one or a whole cluster's.

use std::path::PathBuf;

use anyhow::Context;

use livecam_system::runtime::security;

/// Arguments of `livecam keygen`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Writes one key pair and prints its public key, or a whole cluster's keys and prints a
/// JSON summary of them.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = args.cluster {
        let ids = parse_ids(args.devices.as_deref().unwrap_or_default(), "--devices")?;
        let servers = security::servers(
            &parse_ids(&args.tier1, "--tier1")?,
            &parse_ids(&args.tier2, "--tier2")?,
            &parse_ids(&args.backends, "--backends")?,
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
    } else if let Some(path) = args.path {
        let public =
            security::keygen(&path).with_context(|| format!("writing {}", path.display()))?;
        println!("{public}");
    }
    Ok(())
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
