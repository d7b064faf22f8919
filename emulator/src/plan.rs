//! From a scenario (the simulator's own file format, [`livecam_sim::Scenario`]) to what the
//! emulator runs: the hosts and their role processes' configs, and the run's network of links
//! with the fault schedule's link part ([`Scenario::network`], as the simulators build it).
//!
//! The emulator runs the same scenario files as `livecam sim`, so a simulated and an emulated
//! run of one file are comparable. It runs real processes, so it takes the hosts whose role has
//! a process (`tier1`, `tier2`, `mobile`), and the faults that act on links (`partition`,
//! `repair`, `set_link`); anything else is refused with the field named. Cluster and protocol
//! timers are the role processes' own defaults; the workload's `fps` and `policy` and the
//! protocol's `rate_control` are used.

use std::net::SocketAddr;

use livecam_sim::scenario::{Fault, RoleKind, Scenario};
use livecam_system::link::{LinkConfig, Network};
use livecam_system::proto::bond::Placement;
use livecam_system::proto::PolicyConfig;
use livecam_system::runtime::security::{ClusterKeys, ServerIdentity};
use livecam_system::runtime::service::{MobileFile, Peer, Tier1File, Tier2File};
use thiserror::Error;

use crate::forward::Hop;
use crate::frame::MAX_HOSTS;

/// A scenario the emulator cannot run.
#[derive(Debug, Error, PartialEq)]
pub enum PlanError {
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
}

fn unsupported(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        field: field.into(),
        message: message.into(),
    }
}

/// A role with a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProcessRole {
    Tier1,
    Tier2,
    Mobile,
}

impl ProcessRole {
    /// The `livecam` subcommand.
    pub fn command(self) -> &'static str {
        match self {
            ProcessRole::Tier1 => "tier1",
            ProcessRole::Tier2 => "tier2",
            ProcessRole::Mobile => "mobile",
        }
    }
}

/// One emulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostPlan {
    pub name: String,
    pub role: ProcessRole,
    /// The role's id: tier-1s and tier-2s `index + 1`, mobile clients `1000 + index`.
    pub id: u32,
    /// Tier-1 hosts (indices) this host talks to, default first.
    pub tier1: Vec<usize>,
    pub capacity: Option<u32>,
    /// A bonded mobile's further uplinks: the nodes of its interfaces `<host>.wwan<k>`
    /// ([`Plan::nodes`]), in order. Empty for every other host.
    pub interfaces: Vec<usize>,
}

/// One endpoint of the emulated network: a host, or an interface of a bonded host, each with
/// its own veth, address and links. Hosts come first (node `i` is `hosts[i]`), then the
/// interfaces, in the network's own order ([`Scenario::interfaces`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    pub name: String,
    /// The host whose namespace (and process) it belongs to: itself for a host.
    pub owner: usize,
}

/// Everything the emulator needs from a scenario.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub duration_s: f64,
    pub seed: u64,
    pub hosts: Vec<HostPlan>,
    /// The hosts, then the bonded hosts' further interfaces.
    pub nodes: Vec<NodePlan>,
    /// The nodes' links and the link faults' schedule, node `i` of the network being
    /// `nodes[i]`.
    pub network: Network<Hop>,
    pub fps: f64,
    /// The scenario's `protocol.rate_control` and `protocol.uplink_alone`, for the mobiles.
    pub rate_control: bool,
    pub uplink_alone: bool,
    pub policy: PolicyConfig,
    /// Mobile clients start this far apart.
    pub stagger_ms: f64,
}

/// A scenario file that could not be loaded and planned.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("loading scenario {path}: {source}")]
    Scenario {
        path: String,
        source: livecam_sim::scenario::ScenarioError,
    },
    #[error("scenario {path}: {source}")]
    Plan { path: String, source: PlanError },
}

impl Plan {
    /// Loads the scenario file at `path` and plans it with `seed` (default: the scenario's).
    pub fn load(path: &std::path::Path, seed: Option<u64>) -> Result<Plan, LoadError> {
        let p = path.display().to_string();
        let sc = Scenario::load(path).map_err(|source| LoadError::Scenario {
            path: p.clone(),
            source,
        })?;
        let seed = seed.unwrap_or(sc.seed);
        Plan::new(&sc, seed).map_err(|source| LoadError::Plan { path: p, source })
    }

    /// The plan of `scenario` (already validated by its loader), run with `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<Plan, PlanError> {
        let all = scenario.hosts();
        let interfaces = scenario.interfaces();
        if all.len() + interfaces.len() > MAX_HOSTS {
            return Err(unsupported(
                "hosts",
                format!(
                    "{} hosts and interfaces; the emulator takes at most {MAX_HOSTS}",
                    all.len() + interfaces.len()
                ),
            ));
        }
        let node_of = |name: &str| {
            interfaces
                .iter()
                .position(|i| i.name == name)
                .map(|k| all.len() + k)
        };
        let index_of = |name: &str| all.iter().position(|h| h.name == name);
        let mut hosts = Vec::with_capacity(all.len());
        for h in &all {
            let role = match h.role {
                RoleKind::Tier1 => ProcessRole::Tier1,
                RoleKind::Tier2 => ProcessRole::Tier2,
                RoleKind::Mobile => ProcessRole::Mobile,
                RoleKind::Camera | RoleKind::Receiver => {
                    let spec = scenario
                        .hosts
                        .iter()
                        .position(|s| s.name == h.group)
                        .unwrap_or(0);
                    return Err(unsupported(
                        format!("hosts[{spec}].role"),
                        "the emulator runs role processes: tier1, tier2 or mobile \
                         (camera and receiver exist only in simulation)",
                    ));
                }
            };
            let id = match role {
                ProcessRole::Mobile => 1000 + h.index as u32,
                _ => h.index as u32 + 1,
            };
            hosts.push(HostPlan {
                name: h.name.clone(),
                role,
                id,
                tier1: h.tier1.iter().filter_map(|n| index_of(n)).collect(),
                capacity: h.capacity,
                interfaces: scenario
                    .interfaces_of(h)
                    .iter()
                    .filter_map(|i| node_of(&i.name))
                    .collect(),
            });
        }
        let mut nodes: Vec<NodePlan> = all
            .iter()
            .enumerate()
            .map(|(i, h)| NodePlan {
                name: h.name.clone(),
                owner: i,
            })
            .collect();
        let mut owners = vec![None; interfaces.len()];
        for (owner, h) in hosts.iter().enumerate() {
            for &node in &h.interfaces {
                owners[node - all.len()] = Some(owner);
            }
        }
        for (iface, owner) in interfaces.iter().zip(owners) {
            // Scenario::interfaces_of gives every interface to the host it is named after.
            let owner = owner.ok_or_else(|| {
                unsupported(
                    "hosts",
                    format!("interface {} belongs to no host", iface.name),
                )
            })?;
            nodes.push(NodePlan {
                name: iface.name.clone(),
                owner,
            });
        }
        if scenario.protocol.bond != Placement::Earliest && !interfaces.is_empty() {
            return Err(unsupported(
                "protocol.bond",
                "the emulated mobile places each datagram where it arrives first; the \
                 broadcast baseline runs on the des simulator",
            ));
        }
        if !scenario.clocks.is_empty() {
            return Err(unsupported(
                "clocks",
                "the emulator's hosts share the machine's clock; clock faults run on the des \
                 simulator",
            ));
        }
        if let Some((i, _)) = scenario.faults.iter().enumerate().find(|(_, f)| {
            matches!(
                f,
                Fault::Crash { .. }
                    | Fault::Restart { .. }
                    | Fault::Drain { .. }
                    | Fault::StallStorage { .. }
            )
        }) {
            return Err(unsupported(
                format!("faults[{i}].action"),
                "the emulator applies link faults only: partition, repair, set_link",
            ));
        }
        Ok(Plan {
            name: scenario.name.clone(),
            duration_s: scenario.duration_s,
            seed,
            hosts,
            nodes,
            network: scenario.network(seed),
            fps: scenario.workload.fps,
            rate_control: scenario.protocol.rate_control,
            uplink_alone: scenario.protocol.uplink_alone,
            policy: PolicyConfig {
                kind: scenario.workload.policy,
                limits: scenario.workload.limits,
                ..PolicyConfig::default()
            },
            stagger_ms: scenario.workload.stagger_ms,
        })
    }

    /// The link model from host `a` to host `b`, as configured before any fault.
    pub fn link(&self, a: usize, b: usize) -> LinkConfig {
        self.network.config(a, b).clone()
    }

    /// The hosts' interface MTU: the largest link MTU of the scenario's links, so every link's
    /// packets fit (the default link's MTU in the usual case of one).
    pub fn mtu(&self) -> usize {
        self.network.configs().map(|l| l.mtu).max().unwrap_or(1500)
    }

    /// The TOML config of host `i`'s role process: it binds `bind(i)` and reaches host `j` at
    /// `addr(j)`; its sessions use `keys` (made for the mobile hosts' ids), or none. A bonded
    /// mobile's uplinks are `uplink(k)` of its own node and its interfaces' (an interface
    /// name or an address, as its config takes them).
    pub fn role_config(
        &self,
        i: usize,
        bind: impl Fn(usize) -> SocketAddr,
        addr: impl Fn(usize) -> SocketAddr,
        uplink: impl Fn(usize) -> String,
        keys: Option<&ClusterKeys>,
    ) -> Result<String, toml::ser::Error> {
        let h = &self.hosts[i];
        let tier1: Vec<SocketAddr> = h.tier1.iter().map(|&j| addr(j)).collect();
        match h.role {
            ProcessRole::Tier1 => {
                let mut cfg = Tier1File {
                    id: h.id,
                    listen: bind(i),
                    peers: self
                        .hosts
                        .iter()
                        .enumerate()
                        .filter(|(j, p)| *j != i && p.role == ProcessRole::Tier1)
                        .map(|(j, p)| Peer {
                            id: p.id,
                            addr: addr(j),
                        })
                        .collect(),
                    metrics: None,
                    identity: None,
                    servers: None,
                    insecure: keys.is_none(),
                };
                if let Some(k) = keys {
                    cfg.secure_identity(k);
                }
                toml::to_string(&cfg)
            }
            ProcessRole::Tier2 => {
                let mut cfg = Tier2File {
                    id: h.id,
                    listen: bind(i),
                    tier1,
                    capacity: h.capacity.unwrap_or(1000),
                    policy: self.policy,
                    database: None,
                    advertise: None,
                    metrics: None,
                    key: None,
                    devices: None,
                    identity: None,
                    servers: None,
                    insecure: keys.is_none(),
                };
                if let Some(k) = keys {
                    cfg.secure_with(k);
                }
                toml::to_string(&cfg)
            }
            ProcessRole::Mobile => {
                let mut cfg = MobileFile {
                    id: h.id,
                    listen: bind(i),
                    tier1,
                    fps: self.fps,
                    camera: "synthetic".to_string(),
                    gps: "synthetic".to_string(),
                    width: 320,
                    height: 240,
                    jpeg_quality: 85,
                    keep_frames: None,
                    metrics: None,
                    key: None,
                    cluster_key: None,
                    insecure: keys.is_none(),
                    ring: None,
                    ring_bytes: livecam_system::runtime::service::default_ring_bytes(),
                    rate_control: self.rate_control,
                    uplink_alone: self.uplink_alone,
                    uplinks: if h.interfaces.is_empty() {
                        Vec::new()
                    } else {
                        std::iter::once(i)
                            .chain(h.interfaces.iter().copied())
                            .map(&uplink)
                            .collect()
                    },
                };
                if let Some(k) = keys {
                    cfg.secure_with(k);
                }
                toml::to_string(&cfg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livecam_system::link::Change;
    use livecam_system::time::Instant;

    const CLUSTER: &str = r#"
name = "t"
duration_s = 4.0
[workload]
fps = 5.0
frame_bytes = 10000
policy = "fixed:800"
[[hosts]]
name = "t1"
role = "tier1"
[[hosts]]
name = "t2"
role = "tier2"
count = 2
tier1 = ["t1"]
[[hosts]]
name = "car"
role = "mobile"
tier1 = ["t1"]
[link]
loss = 0.01
[[links]]
from = "car"
to = "t20"
one_way = true
config = { loss = 0.2, mtu = 9000 }
[[faults]]
at_s = 1.5
action = "partition"
a = "car"
b = "t2"
[[faults]]
at_s = 2.0
action = "repair"
a = "car"
b = "t2"
"#;

    #[test]
    fn plans_hosts_links_and_faults() {
        let sc = Scenario::parse(CLUSTER).expect("valid scenario");
        let p = Plan::new(&sc, 9).expect("plan");
        let names: Vec<_> = p.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["t1", "t20", "t21", "car"]);
        assert_eq!(p.hosts[3].id, 1003);
        assert_eq!(p.hosts[3].tier1, [0]);
        assert_eq!(p.link(3, 1).loss, 0.2);
        assert_eq!(p.link(1, 3).loss, 0.01, "one way");
        assert_eq!(p.mtu(), 9000);
        let schedule = p.network.pending_changes();
        assert_eq!(schedule.len(), 2);
        assert_eq!(schedule[0].0, Instant::from_millis(1500));
        match &schedule[0].1 {
            Change::Partition { pairs, on } => {
                assert!(on);
                assert_eq!(pairs, &[(3, 1), (1, 3), (3, 2), (2, 3)]);
            }
            other => panic!("{other:?}"),
        }
        let bind = |i: usize| SocketAddr::from(([10, 0, 0, i as u8], 7000));
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16));
        let t2 = p
            .role_config(1, bind, addr, |_| String::new(), None)
            .expect("toml");
        let parsed: Tier2File = toml::from_str(&t2).expect("a tier-2 config");
        assert_eq!(parsed.listen, bind(1));
        assert_eq!(parsed.tier1, [addr(0)]);
        assert_eq!(
            parsed.policy.kind,
            livecam_system::proto::PolicyKind::Fixed(800)
        );
        let t1: Tier1File = toml::from_str(
            &p.role_config(0, bind, addr, |_| String::new(), None)
                .expect("toml"),
        )
        .expect("a tier-1 config");
        assert!(t1.peers.is_empty());
        let m: MobileFile = toml::from_str(
            &p.role_config(3, bind, addr, |_| String::new(), None)
                .expect("toml"),
        )
        .expect("a mobile config");
        assert_eq!((m.fps, m.tier1.clone()), (5.0, vec![addr(0)]));
    }

    #[test]
    fn plans_a_bonded_mobiles_interfaces_as_nodes_of_its_own() {
        let text = CLUSTER.replace(
            "name = \"car\"\nrole = \"mobile\"",
            "name = \"car\"\nrole = \"mobile\"\nuplinks = 2",
        ) + "[[links]]\nfrom = \"car.wwan1\"\nto = \"t20\"\nconfig = { loss = 0.3 }\n";
        let sc = Scenario::parse(&text).expect("valid scenario");
        let p = Plan::new(&sc, 9).expect("plan");
        let nodes: Vec<(&str, usize)> =
            p.nodes.iter().map(|n| (n.name.as_str(), n.owner)).collect();
        assert_eq!(
            nodes,
            [
                ("t1", 0),
                ("t20", 1),
                ("t21", 2),
                ("car", 3),
                ("car.wwan1", 3)
            ]
        );
        assert_eq!(p.hosts[3].interfaces, [4]);
        assert_eq!(p.link(4, 1).loss, 0.3, "the interface's own link");
        assert_eq!(p.link(3, 1).loss, 0.2);
        let bind = |i: usize| SocketAddr::from(([10, 0, 0, i as u8], 7000));
        let uplink = |k: usize| format!("veth{k}");
        let m: MobileFile =
            toml::from_str(&p.role_config(3, bind, bind, uplink, None).expect("toml"))
                .expect("a mobile config");
        assert_eq!(m.uplinks, ["veth3", "veth4"]);
        let broadcast = text.replace("[link]", "[protocol]\nbond = \"broadcast\"\n[link]");
        let sc = Scenario::parse(&broadcast).expect("valid scenario");
        let e = Plan::new(&sc, 9).expect_err("refused");
        assert!(e.to_string().contains("protocol.bond"), "{e}");
    }

    #[test]
    fn plans_links_with_a_capacity() {
        let cellular = "capacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7 } }";
        let text = CLUSTER.replace(
            "config = { loss = 0.2, mtu = 9000 }",
            &format!("config = {{ loss = 0.2, {cellular} }}"),
        ) + "\n[[faults]]\nat_s = 3.0\naction = \"set_link\"\na = \"car\"\nb = \"t1\"\n\
              config = { capacity = { opportunities_ms = [1, 2] } }\n";
        let sc = Scenario::parse(&text).expect("valid scenario");
        let p = Plan::new(&sc, 9).expect("plan");
        let up = p.link(3, 1);
        let mean = up
            .capacity
            .as_ref()
            .expect("a capacity")
            .trace()
            .mean_bytes_per_s();
        assert!((mean - 250_000.0).abs() < 2500.0, "{mean}");
        assert_eq!(p.link(1, 3).capacity, None, "one way");
        let Some((at, Change::SetLink { .. })) = p.network.pending_changes().last() else {
            panic!("{:?}", p.network.pending_changes().last());
        };
        assert_eq!(*at, Instant::from_millis(3000));
    }

    #[test]
    fn refuses_what_has_no_process_naming_the_field() {
        let cam = CLUSTER.replace("role = \"mobile\"", "role = \"camera\"\ntarget = \"t20\"");
        let sc = Scenario::parse(&cam);
        // The simulator may refuse a camera aimed at a tier-2 first; if it takes it, we do not.
        if let Ok(sc) = sc {
            let err = Plan::new(&sc, 1).expect_err("camera");
            assert!(err.to_string().starts_with("hosts[2].role"), "{err}");
        }
        let crash =
            format!("{CLUSTER}\n[[faults]]\nat_s = 1.0\naction = \"crash\"\nhost = \"t1\"\n");
        let sc = Scenario::parse(&crash).expect("valid scenario");
        let err = Plan::new(&sc, 1).expect_err("crash");
        assert!(err.to_string().starts_with("faults[2].action"), "{err}");
    }
}
