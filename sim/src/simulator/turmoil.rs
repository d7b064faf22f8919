//! The turmoil backend: one turmoil host per scenario host, the shared link models applied
//! by [`LinkedSocket`], faults applied between simulation steps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use livecam_system::net::{DatagramSocket, TokioClock};
use livecam_system::time::Instant;

use super::{HostFault, Outcome, Run, SimError, Simulator, TraceOut};
use crate::host::{host_main, PORT};
use crate::linked::LinkedSocket;
use crate::scenario::Scenario;
use crate::state::lock;

/// Simulated time granularity: turmoil moves every host and the network in steps of this.
pub const TICK: Duration = Duration::from_millis(1);

/// turmoil's UDP socket, as a [`DatagramSocket`].
pub struct TurmoilSocket(pub ::turmoil::net::UdpSocket);

impl DatagramSocket for TurmoilSocket {
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        self.0.send_to(buf, target).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Simulated time, the same on every host: the simulation's elapsed time, read through tokio's
/// clock (which turmoil drives). Must be called on a turmoil host.
fn turmoil_clock() -> TokioClock {
    TokioClock::reading(::turmoil::sim_elapsed().unwrap_or_default())
}

/// Runs a scenario under turmoil.
pub fn run(scenario: &Scenario, seed: u64, trace: TraceOut) -> Result<Outcome, SimError> {
    let mut run = Run::start(Simulator::Turmoil, scenario, seed, trace);
    let state = run.state.clone();
    let duration = Duration::from_secs_f64(scenario.duration_s);
    let mut sim = ::turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(duration + Duration::from_secs(5))
        .tick_duration(TICK)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .udp_capacity(1 << 16)
        .build();
    let shared_scenario = Arc::new(scenario.clone());
    let hosts = scenario.hosts();
    for host in &hosts {
        let state = state.clone();
        let scenario = shared_scenario.clone();
        let name = host.name.clone();
        let host = host.clone();
        sim.host(name.as_str(), move || {
            let state = state.clone();
            let scenario = scenario.clone();
            let host = host.clone();
            async move {
                let socket = ::turmoil::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
                let clock = turmoil_clock();
                let ip = ::turmoil::lookup(host.name.as_str());
                let socket = LinkedSocket::new(TurmoilSocket(socket), clock, ip, state.clone());
                let resolve = |name: &str| -> Option<IpAddr> { Some(::turmoil::lookup(name)) };
                host_main(&scenario, &host, seed, state, vec![socket], clock, resolve).await?;
                Ok(())
            }
        });
    }
    {
        let mut st = lock(&state);
        for host in &hosts {
            st.set_address(sim.lookup(host.name.as_str()), &host.name);
        }
    }
    // turmoil steps every host and its network one tick at a time: faults apply between ticks.
    loop {
        let elapsed = sim.elapsed();
        run.apply_faults(Instant::ZERO + elapsed, |what, h| match what {
            HostFault::Crash => sim.crash(h.name.as_str()),
            HostFault::Restart => sim.bounce(h.name.as_str()),
        });
        if elapsed >= duration {
            break;
        }
        sim.step().map_err(|e| SimError::Simulator(e.to_string()))?;
    }
    run.finish(sim.elapsed().as_secs_f64())
}
