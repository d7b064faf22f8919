//! The world state every simulated host shares: the link table, the trace and the tally.
//!
//! One `SimState` per run, behind an `Arc<Mutex<_>>` (madsim spawns need `Send`; nothing ever
//! contends, every backend runs one thread). Hosts touch it only between awaits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use livecam_system::link::{pair_seed, Link, LinkConfig, Transmission};
use livecam_system::lookup::Lookup;
use livecam_system::time::Instant;

use crate::scenario::Scenario;
use crate::summary::Tally;
use crate::trace::{MsgSummary, NetEvent, Trace, Way};

/// An address as a map key: one integer compare instead of `IpAddr`'s enum and byte compares
/// (IPv4 as its IPv4-mapped IPv6 form).
type AddrKey = u128;

fn key(ip: IpAddr) -> AddrKey {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The host name behind an address in `names`, borrowed; the address itself when unknown.
fn name_in(names: &Lookup<AddrKey, Box<str>>, ip: IpAddr) -> Cow<'_, str> {
    match names.get(&key(ip)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(ip.to_string()),
    }
}

/// Shared handle to the world state.
pub type Shared = Arc<Mutex<SimState>>;

/// Locks the shared state; a poisoned lock (a host panicked) still yields the state, since
/// the run is over anyway and the harness wants to report it.
pub fn lock(shared: &Shared) -> MutexGuard<'_, SimState> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The world state.
pub struct SimState {
    /// Link model per directed pair of host addresses, created on first use.
    links: Lookup<(AddrKey, AddrKey), Link>,
    /// Configuration each directed pair starts with.
    configs: BTreeMap<(String, String), LinkConfig>,
    default_link: LinkConfig,
    /// Pairs currently partitioned.
    partitioned: BTreeMap<(String, String), bool>,
    names: Lookup<AddrKey, Box<str>>,
    addresses: BTreeMap<String, IpAddr>,
    incarnations: BTreeMap<String, u32>,
    seed: u64,
    pub trace: Trace,
    pub tally: Tally,
}

impl SimState {
    pub fn new(scenario: &Scenario, seed: u64, trace: Trace) -> Self {
        SimState {
            links: Lookup::default(),
            configs: scenario.link_overrides(),
            default_link: scenario.link.clone(),
            partitioned: BTreeMap::new(),
            names: Lookup::default(),
            addresses: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            seed,
            trace,
            tally: Tally::default(),
        }
    }

    /// Registers a host's address.
    pub fn set_address(&mut self, ip: IpAddr, name: &str) {
        self.names.insert(key(ip), name.into());
        self.addresses.insert(name.to_string(), ip);
    }

    /// The host name behind an address (the address itself when unknown).
    pub fn name_of(&self, ip: IpAddr) -> String {
        name_in(&self.names, ip).into_owned()
    }

    /// Traces a datagram `host` sent to, or received from, the host at `peer`.
    pub fn trace_datagram(
        &mut self,
        now: Instant,
        host: &str,
        way: Way,
        peer: IpAddr,
        datagram: &[u8],
    ) {
        let name = name_in(&self.names, peer);
        let msg = match way {
            Way::Sent => MsgSummary::of_sent(datagram),
            Way::Received => MsgSummary::of(datagram),
        };
        self.trace
            .record_datagram(now, host, way, &name, datagram.len(), msg);
    }

    /// Counts a host start and returns its incarnation (0 for the first).
    pub fn start_host(&mut self, name: &str, now: Instant) -> u32 {
        let n = self.incarnations.entry(name.to_string()).or_insert(0);
        let incarnation = *n;
        *n += 1;
        self.tally.on_start(name);
        self.trace
            .record(now, name, &NetEvent::Start { incarnation });
        incarnation
    }

    fn link(&mut self, from: IpAddr, to: IpAddr) -> &mut Link {
        let pair = (key(from), key(to));
        if !self.links.contains_key(&pair) {
            let names = (self.name_of(from).to_string(), self.name_of(to).to_string());
            let config = self
                .configs
                .get(&names)
                .cloned()
                .unwrap_or_else(|| self.default_link.clone());
            let mut link = Link::new(config, pair_seed(self.seed, &names.0, &names.1));
            link.set_partitioned(self.partitioned.get(&names).copied().unwrap_or(false));
            self.links.insert(pair, link);
        }
        self.links.get_mut(&pair).expect("link inserted above")
    }

    /// Decides the fate of a datagram from `from` to `to` and traces a loss.
    pub fn transmit(&mut self, from: IpAddr, to: IpAddr, now: Instant, len: usize) -> Transmission {
        let fate = self.link(from, to).transmit(now, len);
        if let Some(cause) = fate.lost {
            self.tally.datagrams_lost += 1;
            let (a, b) = (name_in(&self.names, from), name_in(&self.names, to));
            self.trace
                .record(now, &a, &NetEvent::Lost { to: &b, cause });
        }
        fate
    }

    /// Partitions (or repairs) the directed pair.
    pub fn set_partitioned(&mut self, from: &str, to: &str, on: bool) {
        self.partitioned
            .insert((from.to_string(), to.to_string()), on);
        if let (Some(&a), Some(&b)) = (self.addresses.get(from), self.addresses.get(to)) {
            self.link(a, b).set_partitioned(on);
        }
    }

    /// Replaces the directed pair's link model.
    pub fn set_link(&mut self, from: &str, to: &str, config: LinkConfig) {
        self.configs
            .insert((from.to_string(), to.to_string()), config.clone());
        if let (Some(&a), Some(&b)) = (self.addresses.get(from), self.addresses.get(to)) {
            self.link(a, b).set_config(config);
        }
    }
}
