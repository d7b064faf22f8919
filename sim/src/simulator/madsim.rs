//! The madsim backend (built with `RUSTFLAGS="--cfg madsim"`): one madsim node per scenario
//! host, the shared link models applied by [`LinkedSocket`], faults applied by a controller
//! task. madsim is event-driven: time jumps straight to the next timer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use livecam_system::net::{Clock, DatagramSocket};
use livecam_system::time::Instant;

use super::{Faults, HostFault, Outcome, Run, SimError, Simulator, TraceOut};
use crate::host::{host_main, PORT};
use crate::linked::LinkedSocket;
use crate::scenario::Scenario;
use crate::state::{lock, Shared};

/// madsim's UDP socket, as a [`DatagramSocket`].
///
/// madsim's `send_to` sleeps (at least 1 ms of simulated time) before it hands the datagram
/// to the network; awaited inline, that would serialize a burst of segments 1 ms apart. Each
/// send therefore runs as its own task, so the sender goes on at once, as with a real socket.
pub struct MadsimSocket(pub std::rc::Rc<::madsim::net::UdpSocket>);

impl DatagramSocket for MadsimSocket {
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        let socket = self.0.clone();
        let data = buf.to_vec();
        ::madsim::task::spawn_local(async move {
            if let Err(e) = socket.send_to(target, &data).await {
                tracing::debug!(error = %e, %target, "madsim send failed");
            }
        });
        Ok(buf.len())
    }
    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Simulated time since the runtime started.
#[derive(Clone, Copy, Debug, Default)]
pub struct MadsimClock;

impl Clock for MadsimClock {
    fn now(&self) -> Instant {
        Instant::ZERO + ::madsim::time::TimeHandle::current().elapsed()
    }
    async fn sleep_until(&self, deadline: Instant) {
        let handle = ::madsim::time::TimeHandle::current();
        let wait = deadline.since_origin().saturating_sub(handle.elapsed());
        handle.sleep(wait).await
    }
}

/// Receives kept outstanding per socket: each madsim receive takes >= 1 ms of simulated time,
/// so this caps a socket at 32,000 datagrams per simulated second.
const RECEIVES_IN_FLIGHT: usize = 32;

fn address(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        0,
        (index / 250) as u8,
        (index % 250 + 1) as u8,
    ))
}

/// madsim's configuration for a run: the link models own loss and latency, so madsim's
/// network only carries the envelope.
pub fn config() -> ::madsim::Config {
    let mut config = ::madsim::Config::default();
    config.net.packet_loss_rate = 0.0;
    config.net.send_latency = Duration::ZERO..Duration::from_nanos(1);
    config
}

/// Runs a scenario under madsim.
pub fn run(scenario: &Scenario, seed: u64, trace: TraceOut) -> Result<Outcome, SimError> {
    let run = Run::start(Simulator::Madsim, scenario, seed, trace);
    let rt = ::madsim::runtime::Runtime::with_seed_and_config(seed, config());
    let sim_seconds = rt.block_on(simulate(
        Arc::new(scenario.clone()),
        seed,
        run.state.clone(),
    ));
    run.finish(sim_seconds)
}

/// The simulation itself, inside a madsim runtime: creates a node per host, applies the
/// fault schedule, and returns the simulated seconds run.
pub async fn simulate(scenario: Arc<Scenario>, seed: u64, state: Shared) -> f64 {
    let handle = ::madsim::runtime::Handle::current();
    let hosts = scenario.hosts();
    let addresses: Arc<Vec<(String, IpAddr)>> = Arc::new(
        hosts
            .iter()
            .map(|h| (h.name.clone(), address(h.index)))
            .collect(),
    );
    {
        let mut st = lock(&state);
        for (name, ip) in addresses.iter() {
            st.set_address(*ip, name);
        }
    }
    let mut nodes = Vec::new();
    for host in &hosts {
        let ip = address(host.index);
        let state = state.clone();
        let scenario = scenario.clone();
        let addresses = addresses.clone();
        let host_c = host.clone();
        let node = handle
            .create_node()
            .name(host.name.clone())
            .ip(ip)
            .init(move || {
                let state = state.clone();
                let scenario = scenario.clone();
                let addresses = addresses.clone();
                let host = host_c.clone();
                async move {
                    let socket = match ::madsim::net::UdpSocket::bind((ip, PORT)).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, host = %host.name, "bind failed");
                            return;
                        }
                    };
                    let clock = MadsimClock;
                    let socket = LinkedSocket::with_concurrency(
                        MadsimSocket(std::rc::Rc::new(socket)),
                        clock,
                        ip,
                        state.clone(),
                        RECEIVES_IN_FLIGHT,
                    );
                    let resolve =
                        |name: &str| addresses.iter().find(|(n, _)| n == name).map(|&(_, ip)| ip);
                    if let Err(e) =
                        host_main(&scenario, &host, seed, state, vec![socket], clock, resolve).await
                    {
                        tracing::error!(error = %e, host = %host.name, "host failed");
                    }
                }
            })
            .build();
        nodes.push((host.name.clone(), node.id()));
    }
    let time = ::madsim::time::TimeHandle::current();
    let duration = Duration::from_secs_f64(scenario.duration_s);
    // madsim is driven from inside: a controller task sleeps until each fault is due.
    let mut faults = Faults::of(&scenario);
    while let Some(at) = faults.next_at() {
        time.sleep(at.since_origin().saturating_sub(time.elapsed()))
            .await;
        let now = Instant::ZERO + time.elapsed();
        faults.apply_due(&scenario, &state, now, |what, h| {
            let ids = nodes
                .iter()
                .filter(|(n, _)| *n == h.name)
                .map(|&(_, id)| id);
            match what {
                HostFault::Crash => ids.for_each(|id| handle.kill(id)),
                HostFault::Restart => ids.for_each(|id| handle.restart(id)),
            }
        });
    }
    time.sleep(duration.saturating_sub(time.elapsed())).await;
    time.elapsed().as_secs_f64()
}
