//! One emulated run: hosts (namespaces behind the bridge, or loopback ports behind the relay),
//! the real role processes started in them, their JSON summaries collected, everything torn
//! down.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use livecam_system::link::LinkStats;
use livecam_system::runtime::security::ClusterKeys;
use serde::Serialize;
use thiserror::Error;

use crate::bridge::{Bridge, BridgeError};
use crate::forward::{ForwardStats, Forwarder, Mode};
use crate::netns::{self, Net, NetError};
use crate::plan::{Plan, ProcessRole};
use crate::relay::Relay;

/// The port every role process listens on inside its namespace.
pub const ROLE_PORT: u16 = 7000;
/// Tier-2s get this long to register with their tier-1 before clients start.
const REGISTER: Duration = Duration::from_millis(300);
/// How long a role process gets to print its summary after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A run that failed.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("writing a role config: {0}")]
    Config(#[from] toml::ser::Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Relay on loopback instead of namespaces and the bridge.
    pub relay: bool,
    /// Wall-clock seconds to run (default: the scenario's `duration_s`).
    pub duration_s: Option<f64>,
    /// The `livecam` binary to start the roles with.
    pub exe: PathBuf,
}

/// One host's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    pub role: &'static str,
    /// Its JSON summary, `null` when it printed none.
    pub summary: serde_json::Value,
    /// Why there is no summary, or what it said on stderr when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One directed link's counters (only links that carried something).
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub stats: LinkStats,
}

/// The mobile clients' figures together.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub frames_sent: u64,
    pub frames_delivered: u64,
    pub frames_dropped: u64,
    pub bytes_delivered: u64,
    /// Mean over the mobile clients of their median frame latency (capture to acknowledgment).
    pub latency_ms_p50: f64,
    /// The largest of the mobile clients' 99th percentiles.
    pub latency_ms_p99: f64,
    /// Bytes of frames acknowledged per second of the clients' streaming time.
    pub goodput_bytes_per_s: f64,
    /// Frames the tier-2s received damaged (must be 0) and twice (must be 0).
    pub frames_corrupted: u64,
    pub frames_duplicated: u64,
}

/// What `livecam emulate` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub mode: &'static str,
    pub seed: u64,
    pub duration_s: f64,
    pub mtu: usize,
    pub totals: Totals,
    pub hosts: Vec<HostReport>,
    pub forwarder: ForwardStats,
    pub links: Vec<LinkReport>,
}

/// A started role process.
struct Proc {
    host: usize,
    child: Child,
    stderr: PathBuf,
}

/// Kills what is still running when dropped (an error or panic mid-run).
struct Procs(Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A directory of this run's configs and logs, deleted when dropped.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `plan` and reports. Returns early (tearing down) on SIGINT or SIGTERM, reporting what
/// the processes did so far.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunReport, RunError> {
    // Catch SIGINT/SIGTERM from here on, so Ctrl-C during setup still tears down.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the tokio runtime"))?;
    let signals = {
        let _guard = rt.enter();
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).map_err(io_err("catching SIGINT"))?,
            signal(SignalKind::terminate()).map_err(io_err("catching SIGTERM"))?,
        )
    };
    let dir = RunDir(std::env::temp_dir().join(format!("livecam-emulate-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(io_err(format!("creating {}", dir.0.display())))?;
    // Every node (a host, or a bonded host's further interface) is a port of its own.
    let n = plan.nodes.len();
    let mode = if opts.relay {
        Mode::Datagram
    } else {
        Mode::Packet
    };
    let forwarder = Forwarder::new(mode, plan.network.clone());
    let duration = Duration::from_secs_f64(opts.duration_s.unwrap_or(plan.duration_s).max(0.0));
    if opts.relay {
        let binds = free_ports(n)?;
        let relay = Relay::start(binds.clone(), forwarder).map_err(io_err("starting the relay"))?;
        let public = relay.public().to_vec();
        let uplink = |k: usize| binds[k].to_string();
        let procs = start_roles(
            plan,
            opts,
            &dir.0,
            (|i| binds[i], |i| public[i], uplink),
            |_| None,
        )?;
        let hosts = stop_roles(plan, wait(&rt, signals, duration, procs));
        let (forwarder, links) = relay.stop(|f| read_links(plan, f));
        Ok(report(plan, "relay", duration, hosts, forwarder, links))
    } else {
        netns::sweep()?;
        let owners: Vec<usize> = plan.nodes.iter().map(|node| node.owner).collect();
        let net = Net::create_nodes(&owners, plan.mtu())?;
        let ports: Vec<String> = (0..n).map(|i| net.names().root_veth(i)).collect();
        let bridge = Bridge::start(&ports, forwarder)?;
        let addr = |i: usize| SocketAddr::from((net.ip(i), ROLE_PORT));
        // A bonded mobile binds a socket to each of its veths: the kernel then sends from
        // that veth's address and MAC, so the bridge takes it for that node and applies the
        // node's links.
        let uplink = |k: usize| net.names().host_veth(k);
        let procs = start_roles(plan, opts, &dir.0, (addr, addr, uplink), |i| {
            Some((&net, i))
        })?;
        let hosts = stop_roles(plan, wait(&rt, signals, duration, procs));
        let (forwarder, links) = bridge.stop(|f| read_links(plan, f));
        drop(net);
        Ok(report(plan, "netns", duration, hosts, forwarder, links))
    }
}

type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

/// Waits `duration` or a signal, whichever comes first.
fn wait(rt: &tokio::runtime::Runtime, signals: Signals, duration: Duration, procs: Procs) -> Procs {
    let (mut int, mut term) = signals;
    rt.block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = int.recv() => tracing::warn!("SIGINT: stopping"),
            _ = term.recv() => tracing::warn!("SIGTERM: stopping"),
        }
    });
    procs
}

fn read_links(plan: &Plan, f: &Forwarder) -> (ForwardStats, Vec<LinkReport>) {
    let n = plan.nodes.len();
    let mut links = Vec::new();
    for a in 0..n {
        for b in (0..n).filter(|&b| b != a) {
            if let Some(s) = f.link_stats(a, b).filter(|s| s.offered > 0) {
                links.push(LinkReport {
                    from: plan.nodes[a].name.clone(),
                    to: plan.nodes[b].name.clone(),
                    stats: s.clone(),
                });
            }
        }
    }
    (f.stats().clone(), links)
}

/// `n` free UDP ports on 127.0.0.1 (bound and released; a race with other programs is
/// possible but harmless in practice).
fn free_ports(n: usize) -> Result<Vec<SocketAddr>, RunError> {
    let sockets = (0..n)
        .map(|_| std::net::UdpSocket::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io_err("finding free ports"))?;
    sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io_err("finding free ports"))
}

/// Writes each host's config and starts the role processes: tier-1s, tier-2s, a pause for
/// registration, then mobile clients `stagger_ms` apart. `(bind, addr, uplink)` give node
/// `i`'s bound address, the address others reach it at, and how a bonded mobile names it as
/// an uplink ([`Plan::role_config`]).
fn start_roles<'n>(
    plan: &Plan,
    opts: &RunOptions,
    dir: &Path,
    (bind, addr, uplink): (
        impl Fn(usize) -> SocketAddr,
        impl Fn(usize) -> SocketAddr,
        impl Fn(usize) -> String,
    ),
    netns: impl Fn(usize) -> Option<(&'n Net, usize)>,
) -> Result<Procs, RunError> {
    let mut procs = Procs(Vec::new());
    let mut order: Vec<usize> = (0..plan.hosts.len()).collect();
    order.sort_by_key(|&i| (plan.hosts[i].role, i));
    let mut registered = false;
    // Sessions are authenticated as in a deployment: keys for this run, in its directory.
    let mobile_ids: Vec<u32> = plan
        .hosts
        .iter()
        .filter(|h| h.role == ProcessRole::Mobile)
        .map(|h| h.id)
        .collect();
    let keys_dir = dir.join("keys");
    let ids_of = |role| -> Vec<u32> {
        plan.hosts
            .iter()
            .filter(|h| h.role == role)
            .map(|h| h.id)
            .collect()
    };
    let servers = livecam_system::runtime::security::servers(
        &ids_of(ProcessRole::Tier1),
        &ids_of(ProcessRole::Tier2),
        &[],
    );
    let keys = ClusterKeys::create_for_run(&keys_dir, &mobile_ids, &servers)
        .map_err(io_err(format!("making keys in {}", keys_dir.display())))?;
    for i in order {
        let h = &plan.hosts[i];
        if h.role == ProcessRole::Mobile {
            std::thread::sleep(if registered {
                Duration::from_secs_f64(plan.stagger_ms.max(0.0) / 1000.0)
            } else {
                REGISTER
            });
            registered = true;
        }
        let config = dir.join(format!("{}.toml", h.name));
        std::fs::write(
            &config,
            plan.role_config(i, &bind, &addr, &uplink, Some(&keys))?,
        )
        .map_err(io_err(format!("writing {}", config.display())))?;
        let stderr_path = dir.join(format!("{}.stderr", h.name));
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(io_err(format!("creating {}", stderr_path.display())))?;
        let mut cmd = match netns(i) {
            Some((net, host)) => net.command(host, &opts.exe),
            None => Command::new(&opts.exe),
        };
        let child = cmd
            .arg(h.role.command())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io_err(format!(
                "starting {} on {}",
                h.role.command(),
                h.name
            )))?;
        procs.0.push(Proc {
            host: i,
            child,
            stderr: stderr_path,
        });
    }
    Ok(procs)
}

/// Stops the processes (mobile clients first, so their streams end before the servers go) and
/// reads their summaries.
fn stop_roles(plan: &Plan, mut procs: Procs) -> Vec<HostReport> {
    let mut reports: Vec<Option<HostReport>> = vec![None; plan.hosts.len()];
    let mut list = std::mem::take(&mut procs.0);
    list.sort_by_key(|p| std::cmp::Reverse((plan.hosts[p.host].role, p.host)));
    for mut p in list {
        let pid = p.child.id() as i32;
        // SAFETY: kill(2) with a plain pid and signal has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + EXIT_GRACE;
        let status = loop {
            match p.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = p.child.kill();
                    break p.child.wait().ok();
                }
            }
        };
        let mut out = String::new();
        if let Some(mut s) = p.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        let h = &plan.hosts[p.host];
        let (summary, error) = match serde_json::from_str::<serde_json::Value>(out.trim()) {
            Ok(v) => (v, None),
            Err(_) => {
                let log = std::fs::read_to_string(&p.stderr).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                (
                    serde_json::Value::Null,
                    Some(format!(
                        "no summary (exit {}): {tail}",
                        status.map(|s| s.to_string()).unwrap_or_default()
                    )),
                )
            }
        };
        reports[p.host] = Some(HostReport {
            name: h.name.clone(),
            role: h.role.command(),
            summary,
            error,
        });
    }
    reports.into_iter().flatten().collect()
}

fn report(
    plan: &Plan,
    mode: &'static str,
    duration: Duration,
    hosts: Vec<HostReport>,
    forwarder: ForwardStats,
    links: Vec<LinkReport>,
) -> RunReport {
    RunReport {
        scenario: plan.name.clone(),
        mode,
        seed: plan.seed,
        duration_s: duration.as_secs_f64(),
        mtu: plan.mtu(),
        totals: totals(&hosts),
        hosts,
        forwarder,
        links,
    }
}

/// The mobile clients' and tier-2s' figures together.
pub fn totals(hosts: &[HostReport]) -> Totals {
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let int = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let mut t = Totals::default();
    let mut p50 = Vec::new();
    let mut streaming_s = 0.0f64;
    for h in hosts {
        let s = &h.summary;
        match h.role {
            "mobile" => {
                t.frames_sent += int(s, "frames_sent");
                t.frames_delivered += int(s, "frames_delivered");
                t.frames_dropped += int(s, "frames_dropped");
                t.bytes_delivered += int(s, "bytes_delivered");
                if int(s, "frames_delivered") > 0 {
                    p50.push(num(s, "latency_ms_p50"));
                    t.latency_ms_p99 = t.latency_ms_p99.max(num(s, "latency_ms_p99"));
                    streaming_s =
                        streaming_s.max(num(s, "last_ack_at_s") - num(s, "first_frame_at_s"));
                }
            }
            "tier2" => {
                t.frames_corrupted += int(s, "frames_corrupted");
                t.frames_duplicated += int(s, "frames_duplicated");
            }
            _ => {}
        }
    }
    if !p50.is_empty() {
        t.latency_ms_p50 = p50.iter().sum::<f64>() / p50.len() as f64;
    }
    if streaming_s > 0.0 {
        t.goodput_bytes_per_s = t.bytes_delivered as f64 / streaming_s;
    }
    t
}
