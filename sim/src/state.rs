//! The world state every simulated host shares: the network of links, the trace and the tally.
//!
//! One `SimState` per run, behind an `Arc<Mutex<_>>` (madsim spawns need `Send`; nothing ever
//! contends, every backend runs one thread). Hosts touch it only between awaits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use livecam_system::link::{Network, Transmission};
use livecam_system::lookup::Lookup;
use livecam_system::proto::wire::UDP_IP_OVERHEAD;
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

/// Shared handle to the world state.
pub type Shared = Arc<Mutex<SimState>>;

/// Locks the shared state; a poisoned lock (a host panicked) still yields the state, since
/// the run is over anyway and the harness wants to report it.
pub fn lock(shared: &Shared) -> MutexGuard<'_, SimState> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The name of the network's host behind `ip` in `hosts`, borrowed; the address itself when
/// unknown.
fn host_name<'a>(
    hosts: &Lookup<AddrKey, usize>,
    network: &'a Network<Route>,
    ip: IpAddr,
) -> Cow<'a, str> {
    match hosts.get(&key(ip)) {
        Some(&i) => Cow::Borrowed(network.name(i)),
        None => Cow::Owned(ip.to_string()),
    }
}

/// Where a queued datagram goes and where it came from: `(to, from)`.
pub type Route = (SocketAddr, SocketAddr);

/// The world state.
pub struct SimState {
    /// The run's network ([`Scenario::network`]): every link, the link faults' schedule, and,
    /// for the des simulator, the datagrams in flight.
    network: Network<Route>,
    /// The network's host behind each address.
    hosts: Lookup<AddrKey, usize>,
    incarnations: BTreeMap<String, u32>,
    /// Wire bytes (UDP payload and UDP/IP headers) each of the network's hosts offered it,
    /// by host index.
    sent_bytes: Vec<u64>,
    pub trace: Trace,
    pub tally: Tally,
}

impl SimState {
    pub fn new(scenario: &Scenario, seed: u64, trace: Trace) -> Self {
        SimState {
            network: scenario.network(seed),
            hosts: Lookup::default(),
            incarnations: BTreeMap::new(),
            sent_bytes: Vec::new(),
            trace,
            tally: Tally::default(),
        }
    }

    /// Registers a host's address.
    pub fn set_address(&mut self, ip: IpAddr, name: &str) {
        let i = self.network.add_host(name);
        self.hosts.insert(key(ip), i);
    }

    /// The host name behind an address (the address itself when unknown).
    pub fn name_of(&self, ip: IpAddr) -> Cow<'_, str> {
        host_name(&self.hosts, &self.network, ip)
    }

    /// The network's host behind an address; an address no host registered becomes a host
    /// named by the address.
    fn host_at(&mut self, ip: IpAddr) -> usize {
        if let Some(&i) = self.hosts.get(&key(ip)) {
            return i;
        }
        let i = self.network.add_host(&ip.to_string());
        self.hosts.insert(key(ip), i);
        i
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
        let msg = match way {
            Way::Sent => MsgSummary::of_sent(datagram),
            Way::Received => MsgSummary::of(datagram),
        };
        // The fields apart, so the trace can be written while the name is borrowed.
        let name = host_name(&self.hosts, &self.network, peer);
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

    /// Decides the fate of a datagram from `from` to `to` and traces a loss; the caller
    /// carries the copies (turmoil, madsim).
    pub fn transmit(&mut self, from: IpAddr, to: IpAddr, now: Instant, len: usize) -> Transmission {
        let (a, b) = (self.host_at(from), self.host_at(to));
        self.count_sent(a, len);
        let fate = self.network.transmit(now, a, b, len);
        self.count_loss(now, a, b, &fate);
        fate
    }

    /// Offers a datagram to the network, which holds its copies until they are due
    /// ([`SimState::poll`], the des simulator), and traces a loss.
    pub fn offer(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let (a, b) = (self.host_at(from.ip()), self.host_at(to.ip()));
        self.count_sent(a, datagram.len());
        let fate = self.network.offer(now, a, b, (to, from), datagram);
        self.count_loss(now, a, b, &fate);
    }

    /// Hands the next datagram due at `now`, with its route, to `take`.
    pub fn poll<R>(&mut self, now: Instant, take: impl FnOnce(Route, &[u8]) -> R) -> Option<R> {
        self.network.poll(now, take)
    }

    /// When the network next delivers a datagram or changes a link.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.network.next_deadline()
    }

    fn count_sent(&mut self, from: usize, len: usize) {
        if self.sent_bytes.len() <= from {
            self.sent_bytes.resize(from + 1, 0);
        }
        self.sent_bytes[from] += (len + UDP_IP_OVERHEAD) as u64;
    }

    /// Wire bytes (UDP payload and UDP/IP headers) each host or interface that sent
    /// anything offered the network, by name.
    pub fn sent_bytes(&self) -> BTreeMap<&str, u64> {
        self.sent_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| (self.network.name(i), bytes))
            .collect()
    }

    fn count_loss(&mut self, now: Instant, from: usize, to: usize, fate: &Transmission) {
        if let Some(cause) = fate.lost {
            self.tally.datagrams_lost += 1;
            let (a, b) = (self.network.name(from), self.network.name(to));
            self.trace.record(now, a, &NetEvent::Lost { to: b, cause });
        }
    }
}
