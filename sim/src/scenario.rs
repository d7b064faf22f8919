//! Scenario files: hosts and roles, links, workload, protocol knobs, duration and a fault
//! schedule, in TOML.
//!
//! ```toml
//! name = "example"
//! duration_s = 30.0
//!
//! [workload]
//! fps = 10.0
//! frame_bytes = 10000
//! policy = "seed"            # seed | fixed:N | model
//!
//! [[hosts]]
//! name = "server"
//! role = "receiver"
//!
//! [[hosts]]
//! name = "cam"               # a group: cam0 .. cam3
//! role = "camera"
//! count = 4
//! target = "server"
//!
//! [link]                     # every directed pair, unless overridden
//! loss = 0.05
//! delay_ms = 20.0
//! # a time-varying capacity instead of rate_bytes_per_s (livecam_system::link::Capacity):
//! # capacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7 } }
//! # capacity = { trace = "../shared/data/cellular/ATT-LTE-driving-2016.up" }  # from the cwd
//!
//! [[links]]                  # an override, both directions unless one_way
//! from = "cam0"
//! to = "server"
//! config = { loss = 0.3 }
//!
//! [[links]]                  # shared: every pair it names sends through one link
//! from = "cam"               # (one queue, one rate: a bottleneck the cameras share)
//! to = "server"
//! one_way = true
//! shared = true
//! config = { rate_bytes_per_s = 150000.0 }
//!
//! [[faults]]
//! at_s = 10.0
//! action = "partition"       # partition | repair | set_link | crash | restart
//! a = "cam"
//! b = "server"
//! ```
//!
//! A host or group name may be used wherever hosts are named. Every error names the field at
//! fault, e.g. `hosts[1].target: no host or group named "srv"`.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use livecam_system::link::{Change, LinkConfig, Network};
use livecam_system::proto::bond::{Placement, MAX_UPLINKS};
use livecam_system::proto::{FecKind, PolicyKind, SizeLimits};
use livecam_system::time::Instant;
use serde::Deserialize;
use thiserror::Error;

/// The longest time, in milliseconds, any scenario field may give (about 11.6 days).
pub const MAX_MS: f64 = 1e9;

/// Most hosts one scenario may have, groups expanded: the simulated address plan
/// (`10.0.H.L`, H in 0..=255, L in 1..=250) has no more addresses.
pub const MAX_HOSTS: usize = 256 * 250;

/// Most tier-1 hosts one host's `tier1` list may name, groups expanded (a real client is
/// given a handful).
pub const MAX_TIER1_NAMED: usize = 64;

/// A scenario that failed to load.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// One simulation's whole description.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    /// Simulated seconds to run.
    pub duration_s: f64,
    /// Seed used when none is given on the command line.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub workload: Workload,
    #[serde(default)]
    pub protocol: Protocol,
    pub hosts: Vec<HostSpec>,
    /// The link model of every directed host pair, unless overridden.
    #[serde(default)]
    pub link: LinkConfig,
    #[serde(default)]
    pub links: Vec<LinkOverride>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub cluster: Cluster,
    /// Nothing lost: mobile clients keep frames in a ring until stored, tier-2s store them
    /// (a storage model) and say so. Absent: off.
    #[serde(default)]
    pub durability: Option<Durability>,
    /// Host clocks that run off true time (the des simulator only).
    #[serde(default)]
    pub clocks: Vec<ClockSpec>,
}

/// The clock of a host, or of every member of a group (`[[clocks]]`): a rate error, as of a
/// crystal off by some parts per million, and forward jumps, as a host frozen for a while (a
/// virtual machine paused, a long stall) sees when it runs again. A monotonic clock never
/// runs backwards, so jumps only go forward.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    pub host: String,
    /// Parts per million fast (positive) or slow (negative), within +-10,000.
    #[serde(default)]
    pub drift_ppm: f64,
    #[serde(default)]
    pub jumps: Vec<ClockJump>,
}

/// A forward jump of a host clock.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClockJump {
    /// When, in true simulated seconds.
    pub at_s: f64,
    /// How far the clock jumps, up to a minute.
    pub jump_ms: f64,
}

/// Ring, backfill and storage-model knobs (`[durability]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Durability {
    /// Frames and bytes a client's ring holds at most.
    pub ring_frames: usize,
    pub ring_bytes: u64,
    /// Time from a frame's arrival at a tier-2 to its commit in the storage model.
    pub store_latency_ms: f64,
    /// Acknowledged but not STORED this long: backfilled.
    pub stored_timeout_ms: f64,
    /// A backfilled frame's deadline.
    pub backfill_deadline_ms: f64,
    pub backfill_in_flight: usize,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            ring_frames: 65_536,
            ring_bytes: 64 << 20,
            store_latency_ms: 20.0,
            stored_timeout_ms: 5000.0,
            backfill_deadline_ms: 5000.0,
            backfill_in_flight: 2,
        }
    }
}

/// Cluster timers and knobs, in milliseconds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// How tier-1 places a client: `first_responder` (the seed's), `random`, `round_robin`.
    pub selection: livecam_system::cluster::Selection,
    /// Tier-2 answer delay: `base + per_session * load`.
    pub offer_delay: livecam_system::cluster::OfferDelay,
    pub heartbeat_ms: f64,
    pub manager_timeout_ms: f64,
    pub tier2_timeout_ms: f64,
    pub peer_interval_ms: f64,
    pub peer_timeout_ms: f64,
    pub handover_retry_ms: f64,
    /// Balance when a peer's tier-2s average `balance_ratio` times our sessions; 0 disables.
    pub balance_ratio: f64,
    pub balance_min_gap: f64,
    pub balance_interval_ms: f64,
    pub connect_timeout_ms: f64,
    pub session_timeout_ms: f64,
    pub reservation_ttl_ms: f64,
    /// Sessions are authenticated and encrypted (Noise keys drawn from the seed); `false`
    /// runs the plain protocol.
    pub secure: bool,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            selection: Default::default(),
            offer_delay: Default::default(),
            heartbeat_ms: 200.0,
            manager_timeout_ms: 1000.0,
            tier2_timeout_ms: 1000.0,
            peer_interval_ms: 250.0,
            peer_timeout_ms: 1000.0,
            handover_retry_ms: 200.0,
            balance_ratio: 1.5,
            balance_min_gap: 4.0,
            balance_interval_ms: 2000.0,
            connect_timeout_ms: 500.0,
            session_timeout_ms: 1000.0,
            reservation_ttl_ms: 2000.0,
            secure: true,
        }
    }
}

fn default_seed() -> u64 {
    1
}

/// What the cameras produce.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub fps: f64,
    pub frame_bytes: usize,
    #[serde(default = "default_policy")]
    pub policy: PolicyKind,
    #[serde(default)]
    pub limits: SizeLimits,
    /// Parity segments per frame: `off` (the default: NACK only, the seed's protocol),
    /// `auto` or `fixed:M`.
    #[serde(default)]
    pub fec: FecKind,
    /// Cameras start one after another, this far apart, so they do not all fire at once.
    #[serde(default = "default_stagger")]
    pub stagger_ms: f64,
    /// Cameras stop capturing this long before the end, so every frame settles in the run.
    #[serde(default = "default_settle")]
    pub settle_s: f64,
}

fn default_policy() -> PolicyKind {
    PolicyKind::Seed
}
fn default_stagger() -> f64 {
    7.0
}
fn default_settle() -> f64 {
    3.0
}

/// Protocol timers, in milliseconds, and pacing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Protocol {
    pub frame_deadline_ms: f64,
    pub nack_delay_ms: f64,
    pub nack_interval_ms: f64,
    pub probe_timeout_ms: f64,
    /// Sender pacing, bytes per second; 0 is unpaced. Unused with `rate_control`.
    pub pacing_rate: f64,
    /// Rate control (default on): the sender paces at what the link delivers and the camera
    /// shapes its frames to it (see `livecam_system::proto::rate`). `false` is the seed's
    /// sender, which sends what the camera makes as fast as it comes.
    pub rate_control: bool,
    /// With rate control: each camera has its uplink to itself (a modem of its own), so a
    /// frame's own transmission time is not read as queue (`RateConfig::uplink_alone`; off by
    /// default: beside another flow it takes up to a frame interval of that flow's queue).
    pub uplink_alone: bool,
    /// How a bonded mobile (`hosts[].uplinks` > 1) spreads its datagrams: `"earliest"` (the
    /// default: each on the uplink where it arrives first) or `"broadcast"` (every one on
    /// every live uplink, as SRT's broadcast group: the `bonding` experiment's baseline).
    pub bond: Placement,
    pub max_frames_in_flight: usize,
    /// A receiver forgets a session (and its segment size memory) silent this long.
    pub session_idle_ms: f64,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            frame_deadline_ms: 1000.0,
            nack_delay_ms: 2.0,
            nack_interval_ms: 50.0,
            probe_timeout_ms: 100.0,
            pacing_rate: 0.0,
            rate_control: true,
            uplink_alone: false,
            bond: Placement::Earliest,
            max_frames_in_flight: 16,
            session_idle_ms: 30_000.0,
        }
    }
}

/// What a host does.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    /// Streams straight to a `receiver` (no cluster).
    Camera,
    /// Receives from `camera`s.
    Receiver,
    /// A tier-1 server of the cluster.
    Tier1,
    /// A tier-2 server of the cluster.
    Tier2,
    /// A mobile client: gets a session through tier-1, streams to a tier-2.
    Mobile,
}

/// A host, or a group of `count` alike hosts named `name0`, `name1`, ...
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    pub role: RoleKind,
    #[serde(default = "one")]
    pub count: usize,
    /// For cameras: the receiver they stream to.
    #[serde(default)]
    pub target: Option<String>,
    /// For mobile clients: the tier-1 servers to ask, default first. For tier-2 servers: the
    /// tier-1s it may register with, its first manager first. Names or groups.
    #[serde(default)]
    pub tier1: Vec<String>,
    /// For a group of mobile clients: member `i` starts its tier-1 list at entry `i` (mod the
    /// list's length), so the fleet's default tier-1s alternate.
    #[serde(default)]
    pub rotate_tier1: bool,
    /// For tier-2 servers: sessions taken at most.
    #[serde(default)]
    pub capacity: Option<u32>,
    /// For mobile clients: modems, 1 to 3 (a bonded session, `livecam_system::proto::bond`;
    /// needs `cluster.secure`). Uplink 0 is the host itself; uplink `k` is a network
    /// interface of its own named `<host>.wwan<k>`, with its own address and its own links,
    /// which `[[links]]` and the link faults name like a host.
    #[serde(default = "one")]
    pub uplinks: usize,
}

fn one() -> usize {
    1
}

/// A link model for the pairs between two hosts or groups.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    pub from: String,
    pub to: String,
    /// Only `from` -> `to`, not back.
    #[serde(default)]
    pub one_way: bool,
    /// Every pair this names sends through one link (per direction): one queue, one rate,
    /// one loss process, as flows share a bottleneck. A fault naming any of its pairs changes
    /// the whole link.
    #[serde(default)]
    pub shared: bool,
    pub config: LinkConfig,
}

/// Something that happens at a point in simulated time.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Every datagram between `a` and `b` (both ways, or from `a` to `b` only when
    /// `one_way`) is lost until repaired.
    Partition {
        at_s: f64,
        a: String,
        b: String,
        #[serde(default)]
        one_way: bool,
    },
    /// Ends a partition (both ways, or from `a` to `b` only when `one_way`).
    Repair {
        at_s: f64,
        a: String,
        b: String,
        #[serde(default)]
        one_way: bool,
    },
    /// Replaces the link model between `a` and `b` (both ways unless `one_way`).
    SetLink {
        at_s: f64,
        a: String,
        b: String,
        #[serde(default)]
        one_way: bool,
        config: LinkConfig,
    },
    /// Stops a host: everything it held in memory is gone.
    Crash { at_s: f64, host: String },
    /// Starts a crashed host again, fresh.
    Restart { at_s: f64, host: String },
    /// Tells a tier-1 to hand all its tier-2s to peers before downtime.
    Drain { at_s: f64, host: String },
    /// A tier-2's storage stops committing until `until_s` (a locked or slow database):
    /// frames keep arriving, and those it would have committed meanwhile commit at the end.
    StallStorage {
        at_s: f64,
        host: String,
        until_s: f64,
    },
}

impl Fault {
    /// When it happens, in simulated seconds.
    pub fn at_s(&self) -> f64 {
        match self {
            Fault::Partition { at_s, .. }
            | Fault::Repair { at_s, .. }
            | Fault::SetLink { at_s, .. }
            | Fault::Crash { at_s, .. }
            | Fault::Restart { at_s, .. }
            | Fault::Drain { at_s, .. }
            | Fault::StallStorage { at_s, .. } => *at_s,
        }
    }

    /// When it happens, as a simulated instant: the one conversion of `at_s` every simulator
    /// and the emulator use.
    pub fn at(&self) -> Instant {
        Instant::ZERO + std::time::Duration::from_secs_f64(self.at_s())
    }
}

/// One concrete host after groups are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub group: String,
    pub role: RoleKind,
    /// Index in the scenario's host list, stable across runs.
    pub index: usize,
    /// For cameras, the receiver host's name.
    pub target: Option<String>,
    /// For mobile clients and tier-2s: tier-1 host names, in order (rotation applied).
    pub tier1: Vec<String>,
    pub capacity: Option<u32>,
    /// Index within its group.
    pub member: usize,
    /// Its uplinks ([`HostSpec::uplinks`]); an interface ([`Scenario::interfaces`]) has 1.
    pub uplinks: usize,
}

/// What a name stands for among the host specs: a spec's index into [`Scenario::hosts`] and
/// the members of it the name covers (one, or the whole group).
type Span = (usize, Range<usize>);

/// The name of uplink `k` of host `host`: its network interface.
fn interface_name(host: &str, k: usize) -> String {
    format!("{host}.wwan{k}")
}

/// The concrete name of member `i` of a spec.
fn member_name(spec: &HostSpec, i: usize) -> String {
    if spec.count == 1 {
        spec.name.clone()
    } else {
        format!("{}{i}", spec.name)
    }
}

impl Scenario {
    /// Loads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks scenario text.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// The concrete hosts, groups expanded, in a stable order.
    pub fn hosts(&self) -> Vec<Host> {
        let mut out = Vec::new();
        for spec in &self.hosts {
            let tier1 = self.tier1_of(spec);
            for i in 0..spec.count {
                out.push(Self::host(spec, &tier1, i, out.len()));
            }
        }
        out
    }

    /// Member `i` of `spec`, at `index` in the host list; `tier1` is the spec's tier-1
    /// names expanded ([`Scenario::tier1_of`]), rotated here when the spec asks for it.
    fn host(spec: &HostSpec, tier1: &[String], i: usize, index: usize) -> Host {
        let mut tier1 = tier1.to_vec();
        if spec.rotate_tier1 && !tier1.is_empty() {
            let k = i % tier1.len();
            tier1.rotate_left(k);
        }
        Host {
            name: member_name(spec, i),
            group: spec.name.clone(),
            role: spec.role,
            index,
            target: spec.target.clone(),
            tier1,
            capacity: spec.capacity,
            member: i,
            uplinks: spec.uplinks,
        }
    }

    /// The network interfaces beyond the hosts' own: uplink `k >= 1` of every host with
    /// several, named `<host>.wwan<k>`, indexed after the hosts (in host order, then `k`). In
    /// the network of links they are nodes like the hosts; they run no role.
    pub fn interfaces(&self) -> Vec<Host> {
        let hosts = self.hosts();
        let mut index = hosts.len();
        let mut out = Vec::new();
        for h in &hosts {
            out.extend(Self::interfaces_at(h, index));
            index += h.uplinks.saturating_sub(1);
        }
        out
    }

    /// The interfaces of `host`'s uplinks 1 and up, in order: counted from the host specs,
    /// not by listing every host, since the simulators ask it once per host.
    pub fn interfaces_of(&self, host: &Host) -> Vec<Host> {
        if host.uplinks <= 1 {
            return Vec::new();
        }
        // Hosts are numbered in spec order; interfaces after all of them, in host order.
        let mut index: usize = self.hosts.iter().map(|s| s.count).sum();
        let mut seen = 0;
        for spec in &self.hosts {
            let before = spec.count.min(host.index.saturating_sub(seen));
            index += before * spec.uplinks.saturating_sub(1);
            seen += spec.count;
            if seen > host.index {
                break;
            }
        }
        Self::interfaces_at(host, index).collect()
    }

    /// The interfaces of `host`'s uplinks 1 and up, the first at `index`.
    fn interfaces_at(host: &Host, index: usize) -> impl Iterator<Item = Host> + '_ {
        (1..host.uplinks).map(move |k| {
            let name = interface_name(&host.name, k);
            Host {
                group: name.clone(),
                name,
                role: host.role,
                index: index + k - 1,
                target: None,
                tier1: Vec::new(),
                capacity: None,
                member: 0,
                uplinks: 1,
            }
        })
    }

    /// The network nodes a name stands for where links are named: the hosts it resolves to,
    /// else the interfaces `<host or group>.wwan<k>` names.
    pub fn resolve_nodes(&self, name: &str) -> Vec<Host> {
        let hosts = self.resolve(name);
        if !hosts.is_empty() {
            return hosts;
        }
        let Some((owner, k)) = name
            .rsplit_once(".wwan")
            .and_then(|(o, k)| Some((o, k.parse::<usize>().ok()?)))
        else {
            return Vec::new();
        };
        self.resolve(owner)
            .iter()
            .flat_map(|h| {
                let name = interface_name(&h.name, k);
                self.interfaces_of(h)
                    .into_iter()
                    .filter(move |i| i.name == name)
            })
            .collect()
    }

    /// The tier-1 host names a spec's `tier1` list expands to, in order.
    fn tier1_of(&self, spec: &HostSpec) -> Vec<String> {
        spec.tier1
            .iter()
            .filter_map(|n| self.find(n))
            .flat_map(|(s, members)| members.map(move |i| member_name(&self.hosts[s], i)))
            .collect()
    }

    /// What a name stands for among the specs: one concrete host (a single host, or a
    /// group's member) before a whole group, so that it agrees with [`Scenario::resolve`]
    /// whatever order the specs come in. Costs one pass over the specs, not the hosts.
    fn find(&self, name: &str) -> Option<Span> {
        let member = self.hosts.iter().enumerate().find_map(|(s, spec)| {
            if spec.count == 1 {
                return (spec.name == name).then_some((s, 0..1));
            }
            let i = name
                .strip_prefix(spec.name.as_str())
                // Only the names the group produces: digits, no leading zero, no sign.
                .filter(|r| {
                    !r.is_empty()
                        && r.bytes().all(|b| b.is_ascii_digit())
                        && (r.len() == 1 || !r.starts_with('0'))
                })
                .and_then(|r| r.parse::<usize>().ok())?;
            (i < spec.count).then_some((s, i..i + 1))
        });
        member.or_else(|| {
            self.hosts
                .iter()
                .position(|spec| spec.count > 1 && spec.name == name)
                .map(|s| (s, 0..self.hosts[s].count))
        })
    }

    /// How many concrete hosts a name stands for, without expanding anything.
    fn count_of(&self, name: &str) -> usize {
        self.find(name).map_or(0, |(_, members)| members.len())
    }

    /// The hosts a name stands for: a host, or every member of a group. Builds only those
    /// hosts, not the whole list.
    pub fn resolve(&self, name: &str) -> Vec<Host> {
        let Some((s, members)) = self.find(name) else {
            return Vec::new();
        };
        let spec = &self.hosts[s];
        let first = self.hosts[..s].iter().map(|h| h.count).sum::<usize>();
        let tier1 = self.tier1_of(spec);
        members
            .map(|i| Self::host(spec, &tier1, i, first + i))
            .collect()
    }

    /// The directed host pairs `a` x `b` names (groups resolved), and back again unless
    /// `one_way`: what a link override or a link fault acts on. The one expansion every backend
    /// and the emulator use.
    pub fn directed_pairs(&self, a: &str, b: &str, one_way: bool) -> Vec<(Host, Host)> {
        let mut v = Vec::new();
        for x in self.resolve_nodes(a) {
            for y in self.resolve_nodes(b) {
                v.push((x.clone(), y.clone()));
                if !one_way {
                    v.push((y, x.clone()));
                }
            }
        }
        v
    }

    /// The run's network of links, seeded by `seed`: every host (indexed as in
    /// [`Scenario::hosts`]), the default `link`, the `[[links]]` overrides (later ones win)
    /// and the fault schedule's link part ([`Scenario::link_changes`]). The one expansion of
    /// links and link faults that every simulator and the emulator drive.
    pub fn network<M: Copy>(&self, seed: u64) -> Network<M> {
        let mut network = Network::new(seed, self.link.clone());
        for h in self.hosts().into_iter().chain(self.interfaces()) {
            network.add_host(&h.name);
        }
        for o in &self.links {
            let pairs: Vec<(usize, usize)> = self
                .directed_pairs(&o.from, &o.to, o.one_way)
                .into_iter()
                .map(|(x, y)| (x.index, y.index))
                .collect();
            for &(x, y) in &pairs {
                network.set_link(x, y, o.config.clone());
            }
            if o.shared {
                // One link per direction.
                let senders: BTreeSet<usize> = self
                    .resolve_nodes(&o.from)
                    .iter()
                    .map(|h| h.index)
                    .collect();
                let (there, back): (Vec<_>, Vec<_>) =
                    pairs.iter().partition(|(x, _)| senders.contains(x));
                network.share(&there);
                network.share(&back);
            }
        }
        network.schedule(self.link_changes());
        network
    }

    /// The partitions, repairs and link models of the fault schedule, each at its time as a
    /// change of the directed host pairs it names (by index in [`Scenario::hosts`]).
    pub fn link_changes(&self) -> Vec<(Instant, Change)> {
        let pairs = |a: &str, b: &str, one_way: bool| -> Vec<(usize, usize)> {
            self.directed_pairs(a, b, one_way)
                .into_iter()
                .map(|(x, y)| (x.index, y.index))
                .collect()
        };
        self.faults
            .iter()
            .filter_map(|f| {
                let change = match f {
                    Fault::Partition { a, b, one_way, .. }
                    | Fault::Repair { a, b, one_way, .. } => Change::Partition {
                        pairs: pairs(a, b, *one_way),
                        on: matches!(f, Fault::Partition { .. }),
                    },
                    Fault::SetLink {
                        a,
                        b,
                        one_way,
                        config,
                        ..
                    } => Change::SetLink {
                        pairs: pairs(a, b, *one_way),
                        config: config.clone(),
                    },
                    Fault::Crash { .. }
                    | Fault::Restart { .. }
                    | Fault::Drain { .. }
                    | Fault::StallStorage { .. } => return None,
                };
                Some((f.at(), change))
            })
            .collect()
    }

    /// The storage stalls of `host` (`stall_storage` faults naming it): `[from, until)` in
    /// simulated time.
    pub fn storage_stalls(&self, host: &Host) -> Vec<(Instant, Instant)> {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::StallStorage {
                    host: h, until_s, ..
                } if self.resolve(h).iter().any(|x| x.name == host.name) => Some((
                    f.at(),
                    Instant::ZERO + std::time::Duration::from_secs_f64(*until_s),
                )),
                _ => None,
            })
            .collect()
    }

    /// The clock of `host` when `[[clocks]]` sets one (the last entry naming it wins).
    pub fn clock_of(&self, host: &Host) -> Option<&ClockSpec> {
        self.clocks
            .iter()
            .rev()
            .find(|c| self.resolve(&c.host).iter().any(|h| h.name == host.name))
    }

    /// Frames each camera captures: it stops `settle_s` before the end.
    pub fn frames_per_camera(&self) -> u64 {
        let active = (self.duration_s - self.workload.settle_s).max(0.0);
        (active * self.workload.fps).floor() as u64
    }

    /// Checks everything serde cannot, naming the field at fault.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(invalid(
                "duration_s",
                "must be a positive number of seconds",
            ));
        }
        let w = &self.workload;
        if !(w.fps.is_finite() && w.fps > 0.0) {
            return Err(invalid("workload.fps", "must be positive"));
        }
        if w.frame_bytes == 0 || w.frame_bytes > 16 << 20 {
            return Err(invalid("workload.frame_bytes", "must be within 1..=16 MiB"));
        }
        w.limits
            .validate()
            .map_err(|e| invalid("workload.limits", e.to_string()))?;
        if !(w.settle_s >= 0.0 && w.settle_s < self.duration_s) {
            return Err(invalid(
                "workload.settle_s",
                "must be >= 0 and shorter than duration_s",
            ));
        }
        let p = &self.protocol;
        let c = &self.cluster;
        // Timers: at least 1 ms (a shorter one cannot be kept by a clock of that resolution)
        // and at most MAX_MS.
        for (field, v) in [
            ("protocol.frame_deadline_ms", p.frame_deadline_ms),
            ("protocol.nack_interval_ms", p.nack_interval_ms),
            ("protocol.probe_timeout_ms", p.probe_timeout_ms),
            ("protocol.session_idle_ms", p.session_idle_ms),
            ("cluster.heartbeat_ms", c.heartbeat_ms),
            ("cluster.manager_timeout_ms", c.manager_timeout_ms),
            ("cluster.tier2_timeout_ms", c.tier2_timeout_ms),
            ("cluster.peer_interval_ms", c.peer_interval_ms),
            ("cluster.peer_timeout_ms", c.peer_timeout_ms),
            ("cluster.handover_retry_ms", c.handover_retry_ms),
            ("cluster.balance_interval_ms", c.balance_interval_ms),
            ("cluster.connect_timeout_ms", c.connect_timeout_ms),
            ("cluster.session_timeout_ms", c.session_timeout_ms),
            ("cluster.reservation_ttl_ms", c.reservation_ttl_ms),
        ] {
            if !(v.is_finite() && (1.0..=MAX_MS).contains(&v)) {
                return Err(invalid(
                    field,
                    format!("must be within 1..={MAX_MS} milliseconds"),
                ));
            }
        }
        for (field, v) in [
            ("protocol.nack_delay_ms", p.nack_delay_ms),
            ("cluster.offer_delay.base_ms", c.offer_delay.base_ms),
            (
                "cluster.offer_delay.per_session_ms",
                c.offer_delay.per_session_ms,
            ),
            ("cluster.offer_delay.max_ms", c.offer_delay.max_ms),
            ("workload.stagger_ms", self.workload.stagger_ms),
        ] {
            if !(v.is_finite() && (0.0..=MAX_MS).contains(&v)) {
                return Err(invalid(
                    field,
                    format!("must be within 0..={MAX_MS} milliseconds"),
                ));
            }
        }
        if !(c.balance_ratio.is_finite() && c.balance_ratio >= 0.0) {
            return Err(invalid(
                "cluster.balance_ratio",
                "must be >= 0 (0 disables balancing)",
            ));
        }
        if !(c.balance_min_gap.is_finite() && c.balance_min_gap >= 0.0) {
            return Err(invalid("cluster.balance_min_gap", "must be >= 0"));
        }
        if !(p.pacing_rate.is_finite() && p.pacing_rate >= 0.0) {
            return Err(invalid("protocol.pacing_rate", "must be >= 0"));
        }
        if p.max_frames_in_flight == 0 {
            return Err(invalid(
                "protocol.max_frames_in_flight",
                "must be at least 1",
            ));
        }
        if let Some(d) = &self.durability {
            for (field, v) in [
                ("durability.store_latency_ms", d.store_latency_ms),
                ("durability.stored_timeout_ms", d.stored_timeout_ms),
                ("durability.backfill_deadline_ms", d.backfill_deadline_ms),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(invalid(field, "must be a number >= 0"));
                }
            }
            if d.backfill_in_flight == 0 {
                return Err(invalid(
                    "durability.backfill_in_flight",
                    "must be at least 1",
                ));
            }
        }
        if self.hosts.is_empty() {
            return Err(invalid("hosts", "at least one host is needed"));
        }
        for (i, c) in self.clocks.iter().enumerate() {
            if self.count_of(&c.host) == 0 {
                return Err(invalid(
                    format!("clocks[{i}].host"),
                    format!("no host or group named {:?}", c.host),
                ));
            }
            if !(c.drift_ppm.is_finite() && c.drift_ppm.abs() <= 10_000.0) {
                return Err(invalid(
                    format!("clocks[{i}].drift_ppm"),
                    "must be within -10000..=10000",
                ));
            }
            for (j, jump) in c.jumps.iter().enumerate() {
                if !(jump.at_s.is_finite() && (0.0..=self.duration_s).contains(&jump.at_s)) {
                    return Err(invalid(
                        format!("clocks[{i}].jumps[{j}].at_s"),
                        "must be within the run",
                    ));
                }
                if !(jump.jump_ms.is_finite() && (0.0..=60_000.0).contains(&jump.jump_ms)) {
                    return Err(invalid(
                        format!("clocks[{i}].jumps[{j}].jump_ms"),
                        "must be within 0..=60000 (a monotonic clock only jumps forward)",
                    ));
                }
            }
        }
        let mut names = BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let field = |f: &str| format!("hosts[{i}].{f}");
            if h.name.is_empty()
                || !h
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    field("name"),
                    "must be non-empty ASCII letters, digits, - or _",
                ));
            }
            if h.count == 0 {
                return Err(invalid(field("count"), "must be at least 1"));
            }
            if !names.insert(h.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is used twice", h.name),
                ));
            }
        }
        // Before the groups are expanded: a huge `count` is an error, not an allocation.
        let total = self
            .hosts
            .iter()
            .fold(0usize, |n, h| n.saturating_add(h.count));
        if total > MAX_HOSTS {
            return Err(invalid(
                "hosts",
                format!(
                    "{total} hosts in all, more than the {MAX_HOSTS} the simulator can address"
                ),
            ));
        }
        // A group's name must not also be a member of another group ("cam1" of "cam"), or
        // the name would stand for two things (it finds that member, not its own group).
        for (i, h) in self.hosts.iter().enumerate() {
            if let Some((s, _)) = self.find(&h.name).filter(|&(s, _)| h.count > 1 && s != i) {
                return Err(invalid(
                    format!("hosts[{i}].name"),
                    format!(
                        "{:?} is also a member of group {:?}",
                        h.name, self.hosts[s].name
                    ),
                ));
            }
        }
        // Every host gets its own copy of the tier-1 names it is given: bounded, or a group
        // naming a big group would expand to count x count names.
        for (i, h) in self.hosts.iter().enumerate() {
            let named = h
                .tier1
                .iter()
                .fold(0usize, |n, t| n.saturating_add(self.count_of(t)));
            if named > MAX_TIER1_NAMED {
                return Err(invalid(
                    format!("hosts[{i}].tier1"),
                    format!("names {named} tier-1 hosts, more than {MAX_TIER1_NAMED}"),
                ));
            }
        }
        let hosts = self.hosts();
        let mut concrete = BTreeSet::new();
        for h in hosts.iter().chain(&self.interfaces()) {
            if !concrete.insert(h.name.clone()) {
                return Err(invalid(
                    "hosts",
                    format!("host name {:?} is produced twice", h.name),
                ));
            }
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let field = format!("hosts[{i}].target");
            match (h.role, &h.target) {
                (RoleKind::Camera, None) => {
                    return Err(invalid(field, "a camera needs a target receiver"))
                }
                (RoleKind::Camera, Some(t)) => {
                    let r = self.resolve(t);
                    if r.len() != 1 || r[0].role != RoleKind::Receiver {
                        return Err(invalid(
                            field,
                            format!("{t:?} is not a single receiver host"),
                        ));
                    }
                }
                (_, Some(_)) => return Err(invalid(field, "only a camera has a target")),
                (_, None) => {}
            }
            let field = format!("hosts[{i}].tier1");
            match h.role {
                RoleKind::Mobile | RoleKind::Tier2 => {
                    if h.tier1.is_empty() {
                        return Err(invalid(field, "needs at least one tier-1 host"));
                    }
                    for t in &h.tier1 {
                        let r = self.resolve(t);
                        if r.is_empty() || r.iter().any(|x| x.role != RoleKind::Tier1) {
                            return Err(invalid(
                                field.clone(),
                                format!("{t:?} is not a tier-1 host or group"),
                            ));
                        }
                    }
                }
                _ if !h.tier1.is_empty() => {
                    return Err(invalid(
                        field,
                        "only mobile clients and tier-2s name tier-1s",
                    ))
                }
                _ => {}
            }
            let field = format!("hosts[{i}].uplinks");
            if !(1..=MAX_UPLINKS).contains(&h.uplinks) {
                return Err(invalid(field, format!("must be within 1..={MAX_UPLINKS}")));
            }
            if h.uplinks > 1 && h.role != RoleKind::Mobile {
                return Err(invalid(field, "only a mobile client bonds uplinks"));
            }
            if h.uplinks > 1 && !self.cluster.secure {
                return Err(invalid(
                    field,
                    "bonded uplinks need cluster.secure: a tier-2 validates a path only with the \
                     session's keys",
                ));
            }
            if h.capacity.is_some() && h.role != RoleKind::Tier2 {
                return Err(invalid(
                    format!("hosts[{i}].capacity"),
                    "only a tier-2 has a capacity",
                ));
            }
        }
        self.link
            .validate()
            .map_err(|e| invalid("link", e.to_string()))?;
        let known = |field: String, name: &str| {
            if self.resolve(name).is_empty() {
                Err(invalid(field, format!("no host or group named {name:?}")))
            } else {
                Ok(())
            }
        };
        // Where links are named, an uplink's interface is a node too.
        let node = |field: String, name: &str| {
            if self.resolve_nodes(name).is_empty() {
                Err(invalid(
                    field,
                    format!("no host, group or uplink interface named {name:?}"),
                ))
            } else {
                Ok(())
            }
        };
        for (i, l) in self.links.iter().enumerate() {
            node(format!("links[{i}].from"), &l.from)?;
            node(format!("links[{i}].to"), &l.to)?;
            l.config
                .validate()
                .map_err(|e| invalid(format!("links[{i}].config"), e.to_string()))?;
        }
        for (i, f) in self.faults.iter().enumerate() {
            let at = f.at_s();
            if !(at.is_finite() && at >= 0.0 && at <= self.duration_s) {
                return Err(invalid(
                    format!("faults[{i}].at_s"),
                    "must lie within 0..=duration_s",
                ));
            }
            match f {
                Fault::Partition { a, b, .. } | Fault::Repair { a, b, .. } => {
                    node(format!("faults[{i}].a"), a)?;
                    node(format!("faults[{i}].b"), b)?;
                }
                Fault::SetLink { a, b, config, .. } => {
                    node(format!("faults[{i}].a"), a)?;
                    node(format!("faults[{i}].b"), b)?;
                    config
                        .validate()
                        .map_err(|e| invalid(format!("faults[{i}].config"), e.to_string()))?;
                }
                Fault::Crash { host, .. } | Fault::Restart { host, .. } => {
                    known(format!("faults[{i}].host"), host)?;
                }
                Fault::Drain { host, .. } => {
                    known(format!("faults[{i}].host"), host)?;
                    if self.resolve(host).iter().any(|h| h.role != RoleKind::Tier1) {
                        return Err(invalid(format!("faults[{i}].host"), "only a tier-1 drains"));
                    }
                }
                Fault::StallStorage { host, until_s, .. } => {
                    known(format!("faults[{i}].host"), host)?;
                    if self.resolve(host).iter().any(|h| h.role != RoleKind::Tier2) {
                        return Err(invalid(
                            format!("faults[{i}].host"),
                            "only a tier-2 has storage",
                        ));
                    }
                    if !(until_s.is_finite() && *until_s >= at && *until_s <= self.duration_s) {
                        return Err(invalid(
                            format!("faults[{i}].until_s"),
                            "must lie within at_s..=duration_s",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        duration_s = 10.0
        [workload]
        fps = 10.0
        frame_bytes = 10000
        [[hosts]]
        name = "rx"
        role = "receiver"
        [[hosts]]
        name = "cam"
        role = "camera"
        count = 3
        target = "rx"
        [link]
        loss = 0.1
        [[faults]]
        at_s = 2.0
        action = "partition"
        a = "cam"
        b = "rx"
    "#;

    fn err(text: &str) -> String {
        Scenario::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_and_expands_groups() {
        let s = Scenario::parse(GOOD).unwrap();
        let names: Vec<String> = s.hosts().into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["rx", "cam0", "cam1", "cam2"]);
        assert_eq!(s.resolve("cam").len(), 3);
        assert_eq!(s.resolve("cam1").len(), 1);
        assert_eq!(s.frames_per_camera(), 70);
    }

    /// A cluster text with `tier1` for the mobile group and one more host spec appended.
    fn cluster(tier1_count: usize, extra: &str) -> String {
        format!(
            r#"
            duration_s = 10.0
            [workload]
            fps = 10.0
            frame_bytes = 10000
            [[hosts]]
            name = "t"
            role = "tier1"
            count = {tier1_count}
            [[hosts]]
            name = "s"
            role = "tier2"
            count = 2
            tier1 = ["t"]
            [[hosts]]
            name = "m"
            role = "mobile"
            count = 5
            tier1 = ["t1", "t0"]
            rotate_tier1 = true
            {extra}
            "#
        )
    }

    #[test]
    fn bonded_uplinks_are_interfaces_that_links_name_and_only_a_keyed_mobile_has() {
        let link = "[[links]]\nfrom = \"m.wwan1\"\nto = \"s\"\nconfig = { loss = 0.1 }";
        let s = Scenario::parse(&cluster(2, &format!("uplinks = 2\n{link}"))).unwrap();
        let hosts = s.hosts();
        let interfaces = s.interfaces();
        assert_eq!(interfaces.len(), 5);
        assert_eq!(interfaces[0].name, "m0.wwan1");
        assert_eq!(interfaces[0].index, hosts.len());
        assert_eq!(interfaces[4].index, hosts.len() + 4);
        let m3 = hosts.iter().find(|h| h.name == "m3").unwrap();
        let of_m3: Vec<_> = s.interfaces_of(m3).into_iter().map(|h| h.name).collect();
        assert_eq!(of_m3, ["m3.wwan1"]);
        assert!(s.interfaces_of(&hosts[0]).is_empty());
        // Counted from the specs, each host's are the ones the whole list gives it.
        for uplinks in [2, 3] {
            let s = Scenario::parse(&cluster(2, &format!("uplinks = {uplinks}"))).unwrap();
            let all = s.interfaces();
            assert_eq!(all.len(), 5 * (uplinks - 1));
            let mut listed = Vec::new();
            for h in s.hosts() {
                let of = s.interfaces_of(&h);
                assert!(of
                    .iter()
                    .all(|i| i.name.starts_with(&format!("{}.", h.name))));
                listed.extend(of);
            }
            assert_eq!(listed, all);
        }
        // The group's interfaces times the two tier-2s, both ways.
        assert_eq!(s.directed_pairs("m.wwan1", "s", false).len(), 20);
        assert_eq!(s.resolve_nodes("m2.wwan1").len(), 1);
        assert!(s.resolve_nodes("m2.wwan2").is_empty());
        assert!(
            s.resolve("m2.wwan1").is_empty(),
            "an interface runs no role"
        );
        // Refused, naming the field.
        assert!(err(&cluster(2, "uplinks = 4")).contains("hosts[2].uplinks"));
        assert!(err(&cluster(2, "uplinks = 0")).contains("hosts[2].uplinks"));
        let keyless = cluster(2, "uplinks = 2\n[cluster]\nsecure = false");
        assert!(err(&keyless).contains("cluster.secure"));
        let tier2 = cluster(2, "").replace("role = \"tier2\"", "role = \"tier2\"\nuplinks = 2");
        assert!(err(&tier2).contains("hosts[1].uplinks"));
        assert!(
            err(&cluster(2, link)).contains("links[0].from"),
            "m has one uplink"
        );
        let wwan2 = link.replace("wwan1", "wwan2");
        assert!(err(&cluster(2, &format!("uplinks = 2\n{wwan2}"))).contains("links[0].from"));
    }

    #[test]
    fn resolve_builds_the_same_hosts_as_the_expansion() {
        let s = Scenario::parse(&cluster(3, "")).unwrap();
        let hosts = s.hosts();
        for h in &hosts {
            assert_eq!(s.resolve(&h.name), std::slice::from_ref(h));
        }
        assert_eq!(s.resolve("m"), hosts[5..10]);
        assert_eq!(s.resolve("m3")[0].tier1, ["t0", "t1"]);
        assert_eq!(s.resolve("s1")[0].tier1, ["t0", "t1", "t2"]);
        // Only the names a group produces: no leading zero, no sign, no member past the end.
        for name in ["m03", "m+3", "m5", "m", "t"] {
            assert_eq!(s.resolve(name).len(), s.count_of(name), "{name}");
        }
        assert!(s.resolve("m03").is_empty() && s.resolve("m+3").is_empty());
        assert!(s.resolve("m5").is_empty());
    }

    #[test]
    fn a_group_name_that_is_another_groups_member_is_refused() {
        let e = err(&cluster(
            2,
            r#"[[hosts]]
            name = "m1"
            role = "mobile"
            count = 2
            tier1 = ["t"]"#,
        ));
        assert!(
            e.contains("hosts[3].name") && e.contains("group \"m\""),
            "{e}"
        );
    }

    #[test]
    fn a_host_naming_too_many_tier1s_is_refused_before_expanding() {
        // 60,000 tier-1s named by each of 5 mobiles and 2 tier-2s: refused at once, not
        // expanded into 420,000 names.
        let e = err(&cluster(60_000, ""));
        assert!(
            e.contains("hosts[1].tier1") && e.contains("60000 tier-1"),
            "{e}"
        );
        assert!(Scenario::parse(&cluster(MAX_TIER1_NAMED, "")).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(&GOOD.replace("loss = 0.1", "loss = 1.5")).contains("link: loss"));
        assert!(err(&GOOD.replace("loss = 0.1", "los = 0.1")).contains("unknown field `los`"));
        assert!(
            err(&GOOD.replace("target = \"rx\"", "target = \"nope\"")).contains("hosts[1].target")
        );
        assert!(err(&GOOD.replace("b = \"rx\"", "b = \"ghost\"")).contains("faults[0].b"));
        assert!(err(&GOOD.replace("at_s = 2.0", "at_s = 20.0")).contains("faults[0].at_s"));
        assert!(err(&GOOD.replace("fps = 10.0", "fps = 0.0")).contains("workload.fps"));
        assert!(
            err(&GOOD.replace("action = \"partition\"", "action = \"explode\""))
                .contains("explode")
        );
        assert!(err(&GOOD.replace("count = 3", "count = 0")).contains("hosts[1].count"));
        // Found by fuzzing: a count past the address plan was expanded (and allocated) first.
        assert!(err(&GOOD.replace("count = 3", "count = 4294967296")).contains("hosts: 4294967297"));
        assert!(err(&GOOD.replace("count = 3", "count = 64000")).contains("more than the 64000"));
        assert!(err("duration_s = ").contains("TOML parse error"));
        let cluster = |knob: &str| format!("{GOOD}\n[cluster]\n{knob}\n");
        assert!(err(&cluster("heartbeat_ms = 0.0")).contains("cluster.heartbeat_ms"));
        assert!(err(&cluster("connect_timeout_ms = 1e300")).contains("cluster.connect_timeout_ms"));
        assert!(err(&cluster("offer_delay = { base_ms = inf }"))
            .contains("cluster.offer_delay.base_ms"));
        let protocol = |knob: &str| format!("{GOOD}\n[protocol]\n{knob}\n");
        assert!(err(&protocol("frame_deadline_ms = 1e300")).contains("protocol.frame_deadline_ms"));
        assert!(err(&protocol("nack_interval_ms = 0.0005")).contains("protocol.nack_interval_ms"));
    }

    #[test]
    fn a_partition_can_be_one_way_and_only_a_tier2_stalls_its_storage() {
        let one_way = GOOD.replace("b = \"rx\"", "b = \"rx\"\none_way = true");
        let s = Scenario::parse(&one_way).unwrap();
        let changes = s.link_changes();
        let Change::Partition { pairs, on } = &changes[0].1 else {
            panic!("{changes:?}");
        };
        assert!(on);
        assert_eq!(pairs, &[(1, 0), (2, 0), (3, 0)], "cam -> rx only");
        let both = Scenario::parse(GOOD).unwrap().link_changes();
        let Change::Partition { pairs, .. } = &both[0].1 else {
            panic!("{both:?}");
        };
        assert_eq!(pairs.len(), 6);
        let stall = |host: &str, until: f64| {
            format!(
                "{GOOD}\n[[faults]]\nat_s = 1.0\naction = \"stall_storage\"\nhost = \"{host}\"\n\
                 until_s = {until:?}\n"
            )
        };
        assert!(err(&stall("rx", 3.0)).starts_with("faults[1].host: only a tier-2"));
        assert!(err(&stall("nobody", 3.0)).starts_with("faults[1].host"));
    }

    #[test]
    fn links_overrides_and_set_link_take_a_capacity() {
        let cellular = "capacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7 } }";
        let text = GOOD.replace("loss = 0.1", &format!("loss = 0.1\n{cellular}"))
            + &format!(
                r#"
        [[links]]
        from = "cam0"
        to = "rx"
        config = {{ capacity = {{ opportunities_ms = [1, 1, 5, 10] }} }}
        [[faults]]
        at_s = 3.0
        action = "set_link"
        a = "cam"
        b = "rx"
        config = {{ delay_ms = 5.0, {cellular} }}
        "#
            );
        let s = Scenario::parse(&text).unwrap();
        let mean = |c: &LinkConfig| c.capacity.as_ref().unwrap().trace().mean_bytes_per_s();
        assert!((mean(&s.link) - 250_000.0).abs() < 2500.0);
        assert_eq!(mean(&s.links[0].config), 600_000.0);
        let Fault::SetLink { config, .. } = &s.faults[1] else {
            panic!("{:?}", s.faults[1]);
        };
        assert_eq!(config.capacity, s.link.capacity);
    }

    #[test]
    fn capacity_errors_name_the_field_the_path_and_the_line() {
        let with = |config: &str| GOOD.replace("loss = 0.1", config);
        let e = err(&with(
            "rate_bytes_per_s = 1e5\ncapacity = { opportunities_ms = [10] }",
        ));
        assert!(
            e.contains("link: capacity and rate_bytes_per_s exclude each other"),
            "{e}"
        );
        let e = err(&with("capacity = { trace = \"no/such.up\" }"));
        assert!(e.contains("capacity.trace \"no/such.up\""), "{e}");
        let e = err(&with("capacity = { opportunities_ms = [5, 3] }"));
        assert!(e.contains("line 2"), "{e}");
        let e = err(&with(
            "capacity = { cellular = { mean_bytes_per_s = 0.0, seed = 1 } }",
        ));
        assert!(e.contains("capacity.cellular.mean_bytes_per_s"), "{e}");
        let dir = std::env::temp_dir().join(format!("livecam-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.up");
        std::fs::write(&bad, "1\n2\n2\nabc\n").unwrap();
        let e = err(&with(&format!("capacity = {{ trace = {:?} }}", bad)));
        assert!(
            e.contains("capacity.trace") && e.contains("bad.up") && e.contains("line 4"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
