//! `livecam bench capacity`: how many camera sessions one tier-2 core carries.
//!
//! Starts one tier-1 and one tier-2 as child processes of the `livecam` binary, both pinned to
//! one core (`--cpu`, `sched_setaffinity`), pins itself (the load generator) to the other
//! cores, and ramps the number of cameras at `fps` x `frame_bytes` through [`run_load`]. A
//! step passes while at least 99.9% of frames are delivered and the p99 frame latency is at
//! most 5 ms above the one-camera baseline. The knee is the last passing step, reported as
//! sessions per core, with the tier-2's RSS per session.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use super::load::{run_load, LoadError, LoadOptions};
use super::procstat;
use super::security::ClusterKeys;

/// What to measure.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    /// The `livecam` binary to start the servers from.
    pub exe: PathBuf,
    /// The core the servers run on.
    pub server_cpu: usize,
    /// Camera counts to try, ascending; the baseline (one camera) runs first regardless.
    pub steps: Vec<u32>,
    pub step: Duration,
    pub fps: f64,
    pub frame_bytes: usize,
    /// Delivered frames below this fail a step.
    pub min_delivered: f64,
    /// p99 latency more than this above the baseline fails a step, ms.
    pub max_added_p99_ms: f64,
    /// The tier-2 commits every frame to a SQLite file (`synchronous = FULL`, a fresh file
    /// per step), the cameras keep frames until STORED, and a step also needs
    /// `min_delivered` of its frames stored.
    pub database: bool,
}

impl Default for CapacityOptions {
    fn default() -> Self {
        CapacityOptions {
            exe: PathBuf::from("livecam"),
            server_cpu: 0,
            steps: vec![25, 50, 100, 150, 200, 300, 400, 500, 600, 800, 1000],
            step: Duration::from_secs(8),
            fps: 10.0,
            frame_bytes: 10_000,
            min_delivered: 0.999,
            max_added_p99_ms: 5.0,
            database: false,
        }
    }
}

/// One step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub cameras: u32,
    pub sessions_established: u32,
    pub delivered_ratio: f64,
    /// Frames reported stored (STORED) over frames sent; 0 without a database.
    pub stored_ratio: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub added_p99_ms: f64,
    /// The tier-2's CPU use over the step, in cores (1.0 = one core busy).
    pub tier2_cores: f64,
    pub tier1_cores: f64,
    pub tier2_rss_bytes: u64,
    pub passed: bool,
}

/// What `livecam bench capacity` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// Whether the tier-2 stored every frame durably (see [`CapacityOptions::database`]).
    pub database: bool,
    pub fps: f64,
    pub frame_bytes: usize,
    pub baseline_p99_ms: f64,
    pub steps: Vec<Step>,
    /// The last passing step's cameras, on one server core; `None` if even the first failed.
    pub knee_sessions_per_core: Option<u32>,
    /// Tier-2 RSS growth per session from the baseline to the knee.
    pub rss_bytes_per_session: Option<f64>,
    /// True when the ramp ended because the steps ran out, not at a failing step.
    pub knee_beyond_steps: bool,
}

/// A child process killed when dropped.
pub(super) struct Server(pub(super) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A bench's cluster on loopback, ready to start: a tier-1 and a keyed tier-2 (ids 1 and
/// 11) on free ports, their configs in a fresh directory, keys for the cameras `device_ids`.
pub(super) struct BenchCluster {
    pub(super) dir: PathBuf,
    pub(super) tier1: SocketAddr,
    pub(super) tier2: SocketAddr,
    pub(super) tier1_config: PathBuf,
    pub(super) tier2_config: PathBuf,
    pub(super) keys: ClusterKeys,
    /// The tier-2's SQLite file, when it has a database.
    pub(super) database: Option<PathBuf>,
}

impl BenchCluster {
    /// Writes the configs for bench `name` (the directory is `livecam-NAME-PID` under the
    /// temporary directory) with a tier-2 that takes `capacity` sessions and, with
    /// `database`, stores every frame in a SQLite file there.
    pub(super) fn prepare(
        name: &str,
        device_ids: &[u32],
        capacity: u32,
        database: bool,
    ) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("livecam-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let tier1: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let tier2: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let tier1_config = dir.join("tier1.toml");
        let servers = super::security::servers(&[1], &[11], &[]);
        let keys = ClusterKeys::create_for_run(&dir.join("keys"), device_ids, &servers)?;
        std::fs::write(
            &tier1_config,
            format!(
                "id = 1\nlisten = \"{tier1}\"\n{}",
                keys.identity_toml(servers[0])
            ),
        )?;
        let tier2_config = dir.join("tier2.toml");
        let database = database.then(|| dir.join("tier2.db"));
        let db_line = database.as_ref().map_or(String::new(), |p| {
            format!("database = {:?}\n", format!("sqlite:{}", p.display()))
        });
        std::fs::write(
            &tier2_config,
            format!(
                "id = 11\nlisten = \"{tier2}\"\ntier1 = [\"{tier1}\"]\ncapacity = {capacity}\n{db_line}{}",
                keys.tier2_toml(11)
            ),
        )?;
        Ok(BenchCluster {
            dir,
            tier1,
            tier2,
            tier1_config,
            tier2_config,
            keys,
            database,
        })
    }

    /// Removes the tier-2's database (and its WAL), so the next start begins empty.
    pub(super) fn clear_database(&self) -> std::io::Result<()> {
        let Some(db) = &self.database else {
            return Ok(());
        };
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::remove_file(PathBuf::from(p)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

pub(super) fn start(
    exe: &PathBuf,
    cpu: usize,
    role: &str,
    config: &PathBuf,
) -> std::io::Result<Server> {
    Command::new(exe)
        .args(["--cpu", &cpu.to_string(), role, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Server)
}

/// Pins the calling thread's process to every core but `except` (when there is another).
pub fn pin_self_away_from(except: usize) -> std::io::Result<()> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let current = sched_getaffinity(Pid::from_raw(0)).map_err(std::io::Error::from)?;
    let mut set = CpuSet::new();
    let mut any = false;
    for cpu in 0..CpuSet::count() {
        if cpu != except && current.is_set(cpu).unwrap_or(false) {
            set.set(cpu).map_err(std::io::Error::from)?;
            any = true;
        }
    }
    if any {
        sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Pins this process to core `cpu`.
pub fn pin_self_to(cpu: usize) -> std::io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu).map_err(std::io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
}

/// Runs the ramp. Must run inside a [`tokio::task::LocalSet`].
pub async fn run_capacity(
    opts: &CapacityOptions,
    mut progress: impl FnMut(&Step),
) -> Result<CapacityReport, LoadError> {
    // Authenticated sessions, as deployed: keys for every camera id the steps will use (each
    // step's cameras and its probe get fresh ids).
    let first = 1_000_000u32;
    let total: u32 = std::iter::once(1)
        .chain(opts.steps.iter().copied())
        .map(|n| n + 1)
        .sum();
    let ids: Vec<u32> = (first - 1..first - 1 + total).collect();
    let cluster = BenchCluster::prepare("capacity", &ids, 100_000, opts.database)?;
    let (t1, keys) = (cluster.tier1, &cluster.keys);
    let (c1, c2) = (&cluster.tier1_config, &cluster.tier2_config);
    pin_self_away_from(opts.server_cpu)?;
    let mut first_id = first;
    let mut step = |cameras: u32| {
        let o = LoadOptions {
            tier1: vec![t1],
            cameras,
            fps: opts.fps,
            frame_bytes: opts.frame_bytes,
            duration: opts.step,
            loss: 0.0,
            seed: u64::from(cameras),
            first_id,
            keys: Some(keys.dir.clone()),
            durable: opts.database,
        };
        first_id += cameras + 1;
        o
    };
    // Every step on freshly started servers: sessions of an earlier step would otherwise
    // linger (30 s idle timeout) and count against the next.
    let cluster = &cluster;
    let measure = |o: LoadOptions| async move {
        cluster.clear_database()?;
        let tier1 = start(&opts.exe, opts.server_cpu, "tier1", c1)?;
        let tier2 = start(&opts.exe, opts.server_cpu, "tier2", c2)?;
        // Let the tier-2 register.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let (pid1, pid2) = (tier1.0.id(), tier2.0.id());
        let before = (procstat::sample(pid1), procstat::sample(pid2));
        let s = run_load(&o).await?;
        let after = (procstat::sample(pid1), procstat::sample(pid2));
        drop((tier1, tier2));
        Ok::<_, LoadError>((
            s.clone(),
            procstat::cores(before.1, after.1, s.duration_s),
            procstat::cores(before.0, after.0, s.duration_s),
            after.1.map_or(0, |a| a.rss_bytes),
        ))
    };

    let (base, base_t2, base_t1, base_rss) = measure(step(1)).await?;
    let baseline_p99 = base.latency_ms_p99;
    let mut report = CapacityReport {
        database: opts.database,
        fps: opts.fps,
        frame_bytes: opts.frame_bytes,
        baseline_p99_ms: baseline_p99,
        steps: vec![Step {
            cameras: 1,
            sessions_established: base.sessions_established,
            delivered_ratio: base.delivered_ratio,
            stored_ratio: base.stored_ratio,
            latency_ms_p50: base.latency_ms_p50,
            latency_ms_p99: base.latency_ms_p99,
            added_p99_ms: 0.0,
            tier2_cores: base_t2,
            tier1_cores: base_t1,
            tier2_rss_bytes: base_rss,
            passed: base.delivered_ratio >= opts.min_delivered
                && (!opts.database || base.stored_ratio >= opts.min_delivered),
        }],
        knee_sessions_per_core: None,
        rss_bytes_per_session: None,
        knee_beyond_steps: false,
    };
    progress(&report.steps[0]);
    let mut knee: Option<(u32, u64)> = None;
    let mut failed = false;
    for &n in &opts.steps {
        let (s, t2c, t1c, rss) = measure(step(n)).await?;
        let added = s.latency_ms_p99 - baseline_p99;
        let passed = s.delivered_ratio >= opts.min_delivered
            && (!opts.database || s.stored_ratio >= opts.min_delivered)
            && added <= opts.max_added_p99_ms
            && s.sessions_established == n;
        let st = Step {
            cameras: n,
            sessions_established: s.sessions_established,
            delivered_ratio: s.delivered_ratio,
            stored_ratio: s.stored_ratio,
            latency_ms_p50: s.latency_ms_p50,
            latency_ms_p99: s.latency_ms_p99,
            added_p99_ms: added,
            tier2_cores: t2c,
            tier1_cores: t1c,
            tier2_rss_bytes: rss,
            passed,
        };
        progress(&st);
        report.steps.push(st);
        if !passed {
            failed = true;
            break;
        }
        knee = Some((n, rss));
    }
    report.knee_beyond_steps = !failed;
    if let Some((n, rss)) = knee {
        report.knee_sessions_per_core = Some(n);
        report.rss_bytes_per_session =
            Some((rss as f64 - base_rss as f64) / f64::from(n.saturating_sub(1).max(1)));
    }
    let _ = std::fs::remove_dir_all(&cluster.dir);
    Ok(report)
}
