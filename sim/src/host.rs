//! What runs on a simulated host: the product's roles, traced, over any backend.
//!
//! Backends only bind a socket and provide a clock; [`host_main`] builds the host's role from
//! the scenario, wraps it in [`SimRole`] (which writes every datagram and role event into the
//! trace and the tally) and runs it with the product's one driver loop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use livecam_system::cluster::{ClientConfig, Connector, Tier1, Tier1Config, Tier2, Tier2Config};
use livecam_system::driver;
use livecam_system::machine::{Endpoint, Role};
use livecam_system::net::{Clock, DatagramSocket};
use livecam_system::proto::{
    PolicyConfig, RateConfig, Receiver, ReceiverConfig, Sender, SenderConfig,
};
use livecam_system::role::durable::{self, Durable, DurableConfig};
use livecam_system::role::ring::{MemoryRing, RingLimits};
use livecam_system::role::{
    Camera, CameraConfig, FrameContent, Mobile, MobileConfig, RoleEvent, Sink, Tier1Server,
    Tier2Server,
};
use livecam_system::secure::{
    ControlPlane, DeviceRegistry, DeviceSecurity, Entropy, Gate, ServerId, ServerRegistry,
    ServerRole, SigningKey, StaticKey,
};
use livecam_system::time::Instant;

use crate::scenario::{Fault, Host, RoleKind, Scenario};
use crate::state::{lock, Shared};
use crate::storage::StorageModel;
use crate::summary::SenderSlot;
use crate::trace::Way;

/// UDP port every simulated role listens on.
pub const PORT: u16 = 7000;

fn ms(v: f64) -> Duration {
    // Scenarios are validated; an out-of-range value still must not panic here.
    Duration::try_from_secs_f64(v.max(0.0) / 1e3).unwrap_or(Duration::MAX)
}

fn policy(scenario: &Scenario) -> PolicyConfig {
    PolicyConfig {
        kind: scenario.workload.policy,
        limits: scenario.workload.limits,
        fec: scenario.workload.fec,
        // The path MTU is configured: the scenario's default link's.
        mtu: scenario.link.mtu,
        ..PolicyConfig::default()
    }
}

/// The receiver configuration a scenario asks for.
pub fn receiver_config(scenario: &Scenario) -> ReceiverConfig {
    let p = &scenario.protocol;
    ReceiverConfig {
        nack_delay: ms(p.nack_delay_ms),
        nack_interval: ms(p.nack_interval_ms),
        frame_timeout: ms(p.frame_deadline_ms),
        session_idle_timeout: ms(p.session_idle_ms),
        policy: policy(scenario),
        ..ReceiverConfig::default()
    }
}

/// The sender configuration a scenario asks for.
pub fn sender_config(scenario: &Scenario, session: u32, peer: SocketAddr) -> SenderConfig {
    let p = &scenario.protocol;
    SenderConfig {
        initial_segment_size: policy(scenario).initial_size(),
        pacing_rate: (p.pacing_rate > 0.0).then_some(p.pacing_rate as u64),
        frame_deadline: ms(p.frame_deadline_ms),
        max_frames_in_flight: p.max_frames_in_flight,
        probe_timeout: ms(p.probe_timeout_ms),
        rate_control: p.rate_control.then_some(RateConfig {
            uplink_alone: p.uplink_alone,
            ..RateConfig::default()
        }),
        ..SenderConfig::new(session, peer)
    }
}

/// Incarnations of a mobile host the tier-2s' device registry admits (its client id changes
/// with each restart; see [`session_id`]).
const REGISTERED_INCARNATIONS: u32 = 16;

/// The simulated cluster's keys, drawn from the run's seed: the same seed, the same keys.
fn cluster_key(seed: u64) -> StaticKey {
    StaticKey::generate(&mut Entropy::seeded(seed ^ 0x6c69_7665_6361_6d31))
}

/// Mobile host `index`'s device key.
fn device_key(seed: u64, index: usize) -> StaticKey {
    StaticKey::generate(&mut Entropy::seeded(
        seed.rotate_left(17) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    ))
}

/// Every mobile host's key, under each client id it may use.
fn device_registry(scenario: &Scenario, seed: u64) -> DeviceRegistry {
    let mut reg = DeviceRegistry::new();
    for h in scenario
        .hosts()
        .iter()
        .filter(|h| h.role == RoleKind::Mobile)
    {
        let key = device_key(seed, h.index).public();
        for inc in 0..REGISTERED_INCARNATIONS {
            reg.insert(session_id(h.index, inc), key);
        }
    }
    reg
}

/// Server host `index`'s signing key (tier-1s and tier-2s sign their control traffic in a
/// secure scenario).
fn server_key(seed: u64, index: usize) -> SigningKey {
    SigningKey::generate(&mut Entropy::seeded(
        seed.rotate_left(29) ^ (index as u64).wrapping_mul(0xd6e8_feb8_6659_fd93) ^ 0x5349_474e,
    ))
}

/// Which server a host is: tier-1s and tier-2s are numbered by their host index.
fn server_id(host: &Host) -> Option<ServerId> {
    match host.role {
        RoleKind::Tier1 => Some(ServerId::new(ServerRole::Tier1, host.index as u32)),
        RoleKind::Tier2 => Some(ServerId::new(ServerRole::Tier2, host.index as u32)),
        _ => None,
    }
}

/// Server host `host`'s control plane: its key, and every server host's public key. Counters
/// follow simulated time, which every host shares and which carries on across restarts.
fn control_plane(scenario: &Scenario, seed: u64, host: &Host) -> Option<ControlPlane> {
    let me = server_id(host)?;
    let mut registry = ServerRegistry::new();
    for h in scenario.hosts() {
        if let Some(who) = server_id(&h) {
            registry.insert(who, server_key(seed, h.index).public());
        }
    }
    Some(ControlPlane::new(
        me,
        server_key(seed, host.index),
        registry,
        0,
    ))
}

/// The Unix time, in milliseconds, a simulated host's wall clock reads when its own clock
/// reads `local` (2024-01-01T00:00:00Z at zero): a host whose clock drifts or jumps has a wall
/// clock that does too, so its durable camera's frame identities (numbered from the wall
/// clock at boot, see `livecam_system::role::durable`) are taken under the clock faults.
pub fn wall_clock_ms(local: Instant) -> u64 {
    const EPOCH_MS: u64 = 1_704_067_200_000;
    EPOCH_MS + local.since_origin().as_millis() as u64
}

/// A session id unique per camera host and incarnation.
pub fn session_id(host_index: usize, incarnation: u32) -> u32 {
    ((host_index as u32) << 8) | (incarnation & 0xff)
}

enum Running {
    Camera(Box<Camera>),
    Sink(Box<Sink>),
    Mobile(Box<Mobile>),
    Tier1(Box<Tier1Server>),
    Tier2(Box<Tier2Server>),
}

/// A role with tracing around it.
pub struct SimRole {
    host: String,
    /// Where the tally keeps this incarnation's sender counters (cameras and mobiles).
    sender: Option<SenderSlot>,
    running: Running,
    state: Shared,
}

impl SimRole {
    fn flush(&mut self) {
        let events: Vec<(Instant, RoleEvent)> = match &mut self.running {
            Running::Camera(c) => c.recorder().take(),
            Running::Sink(s) => s.recorder().take(),
            Running::Mobile(m) => m.take_recorded(),
            Running::Tier1(t) => t.take_recorded(),
            Running::Tier2(t) => t.take_recorded(),
        };
        if events.is_empty() && !matches!(self.running, Running::Camera(_) | Running::Mobile(_)) {
            return;
        }
        let mut st = lock(&self.state);
        for (t, ev) in &events {
            st.trace.record(*t, &self.host, ev);
            st.tally.on_role_event(*t, &self.host, ev);
        }
        let sender = match &self.running {
            Running::Camera(c) => Some(c.sender().stats()),
            Running::Mobile(m) => Some(m.camera().sender().stats()),
            _ => None,
        };
        if let (Some(stats), Some(slot)) = (sender, self.sender) {
            st.tally.set_sender_stats(slot, stats);
        }
    }

    fn endpoint(&mut self) -> &mut dyn Endpoint {
        match &mut self.running {
            Running::Camera(c) => c.as_mut(),
            Running::Sink(s) => s.as_mut(),
            Running::Mobile(m) => m.as_mut(),
            Running::Tier1(t) => t.as_mut(),
            Running::Tier2(t) => t.as_mut(),
        }
    }

    fn role(&self) -> &dyn Role {
        match &self.running {
            Running::Camera(c) => c.as_ref(),
            Running::Sink(s) => s.as_ref(),
            Running::Mobile(m) => m.as_ref(),
            Running::Tier1(t) => t.as_ref(),
            Running::Tier2(t) => t.as_ref(),
        }
    }
}

impl Endpoint for SimRole {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        lock(&self.state).trace_datagram(now, &self.host, Way::Received, from.ip(), data);
        self.endpoint().handle_datagram(now, from, data);
        self.flush();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint().handle_timeout(now);
        self.flush();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let dst = self.endpoint().poll_transmit(now, buf)?;
        lock(&self.state).trace_datagram(now, &self.host, Way::Sent, dst.ip(), buf);
        Some(dst)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.role().poll_timeout()
    }

    fn handle_datagram_on(&mut self, now: Instant, uplink: usize, from: SocketAddr, data: &[u8]) {
        lock(&self.state).trace_datagram(now, &self.host, Way::Received, from.ip(), data);
        self.endpoint().handle_datagram_on(now, uplink, from, data);
        self.flush();
    }

    fn poll_transmit_on(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<(usize, SocketAddr)> {
        let (uplink, dst) = self.endpoint().poll_transmit_on(now, buf)?;
        lock(&self.state).trace_datagram(now, &self.host, Way::Sent, dst.ip(), buf);
        Some((uplink, dst))
    }
}

impl Role for SimRole {
    fn is_finished(&self) -> bool {
        self.role().is_finished()
    }
}

/// Runs one host's role until it finishes (cameras) or the simulation ends (receivers).
///
/// `resolve` maps a host name to its address on this backend. `sockets` are the host's
/// uplinks, its own address first, then its interfaces' ([`Scenario::interfaces_of`]): one
/// unless the host bonds several.
pub async fn host_main<S, C>(
    scenario: &Scenario,
    host: &Host,
    seed: u64,
    state: Shared,
    sockets: Vec<S>,
    clock: C,
    resolve: impl Fn(&str) -> Option<IpAddr>,
) -> io::Result<()>
where
    S: DatagramSocket,
    C: Clock,
{
    let now = clock.now();
    let incarnation = lock(&state).start_host(&host.name, now);
    let content = FrameContent { seed };
    let addr_of = |name: &str| -> io::Result<SocketAddr> {
        resolve(name)
            .map(|ip| (ip, PORT).into())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no host {name:?}")))
    };
    let tier1_addrs = host
        .tier1
        .iter()
        .map(|n| addr_of(n))
        .collect::<io::Result<Vec<SocketAddr>>>()?;
    let c = &scenario.cluster;
    let camera = |peer: SocketAddr, session: u32| {
        let sender = Sender::new(sender_config(scenario, session, peer));
        let start_at = now + ms(scenario.workload.stagger_ms * host.index as f64);
        let capture_end = scenario.duration_s - scenario.workload.settle_s;
        let remaining = (capture_end - start_at.since_origin().as_secs_f64()).max(0.0);
        lock(&state)
            .tally
            .on_session_start(start_at, session, sender.segment_size());
        let durable = scenario.durability.as_ref().map(|d| {
            let ring = MemoryRing::new(RingLimits {
                max_frames: d.ring_frames,
                max_bytes: d.ring_bytes,
            });
            let cfg = DurableConfig {
                stored_timeout: ms(d.stored_timeout_ms),
                backfill_deadline: ms(d.backfill_deadline_ms),
                backfill_in_flight: d.backfill_in_flight,
            };
            Durable::new(cfg, Box::new(ring), sender.config())
        });
        let camera = Camera::new(
            CameraConfig {
                fps: scenario.workload.fps,
                frames: (remaining * scenario.workload.fps).floor() as u64,
                frame_bytes: scenario.workload.frame_bytes,
                start_at,
            },
            sender,
            Box::new(content),
        );
        match durable {
            // Numbered as a real client numbers a boot: from its wall clock (its ring is in
            // memory here, so it holds nothing of an earlier boot).
            Some(d) => camera
                .with_durable(d)
                .with_boot_seq(durable::boot_seq(None, wall_clock_ms(now))),
            None => camera,
        }
    };
    let sink = || {
        let sink = Sink::new(Receiver::new(receiver_config(scenario)), Box::new(content));
        match &scenario.durability {
            Some(d) => sink.with_backhaul(Box::new(StorageModel::new(
                ms(d.store_latency_ms),
                scenario.storage_stalls(host),
            ))),
            None => sink,
        }
    };
    let running = match host.role {
        RoleKind::Receiver => {
            let mut sink = sink();
            sink.recorder().enable();
            Running::Sink(Box::new(sink))
        }
        RoleKind::Camera => {
            let target = host.target.as_deref().unwrap_or_default();
            let mut camera = camera(addr_of(target)?, session_id(host.index, incarnation));
            camera.recorder().enable();
            Running::Camera(Box::new(camera))
        }
        RoleKind::Mobile => {
            let session = session_id(host.index, incarnation);
            let unconnected: SocketAddr = ([0, 0, 0, 0], 0).into();
            let camera = camera(unconnected, session);
            let mut connector = Connector::new(ClientConfig {
                connect_timeout: ms(c.connect_timeout_ms),
                ..ClientConfig::new(session, tier1_addrs)
            });
            if c.secure {
                connector = connector.with_security(DeviceSecurity::new(
                    device_key(seed, host.index),
                    cluster_key(seed).public(),
                    0,
                    Entropy::seeded(seed ^ u64::from(session).rotate_left(32)),
                ));
            }
            let mobile_cfg = MobileConfig {
                session_timeout: ms(c.session_timeout_ms),
                uplinks: sockets.len(),
                placement: scenario.protocol.bond,
                ..MobileConfig::default()
            };
            let mut mobile = Mobile::new(mobile_cfg, connector, camera);
            mobile.enable_recording();
            Running::Mobile(Box::new(mobile))
        }
        RoleKind::Tier1 => {
            let mut peers = Vec::new();
            for h in scenario
                .hosts()
                .iter()
                .filter(|h| h.role == RoleKind::Tier1)
            {
                peers.push((h.index as u32, addr_of(&h.name)?));
            }
            let cfg = Tier1Config {
                tier2_timeout: ms(c.tier2_timeout_ms),
                peer_interval: ms(c.peer_interval_ms),
                peer_timeout: ms(c.peer_timeout_ms),
                handover_retry: ms(c.handover_retry_ms),
                selection: c.selection,
                seed: seed ^ host.index as u64,
                balance: (c.balance_ratio > 0.0).then_some(livecam_system::cluster::Balance {
                    ratio: c.balance_ratio,
                    min_gap: c.balance_min_gap,
                    interval: ms(c.balance_interval_ms),
                }),
                ..Tier1Config::new(host.index as u32, addr_of(&host.name)?, peers)
            };
            let drain_at = scenario.faults.iter().find_map(|f| match f {
                Fault::Drain { at_s, host: h }
                    if scenario.resolve(h).iter().any(|x| x.name == host.name) =>
                {
                    Some(Instant::ZERO + Duration::from_secs_f64(*at_s))
                }
                _ => None,
            });
            let drain_at = drain_at.filter(|&t| t >= now);
            let mut server = Tier1Server::new(Tier1::new(cfg, now), drain_at);
            if c.secure {
                if let Some(plane) = control_plane(scenario, seed, host) {
                    server = server.with_control(plane);
                }
            }
            server.enable_recording();
            Running::Tier1(Box::new(server))
        }
        RoleKind::Tier2 => {
            let cfg = Tier2Config {
                capacity: host.capacity.unwrap_or(1000),
                offer_delay: c.offer_delay,
                heartbeat_interval: ms(c.heartbeat_ms),
                manager_timeout: ms(c.manager_timeout_ms),
                reservation_ttl: ms(c.reservation_ttl_ms),
                ..Tier2Config::new(host.index as u32, tier1_addrs)
            };
            let mut tier2 = Tier2::new(cfg, now);
            if c.secure {
                tier2 = tier2.with_gate(Gate::new(
                    cluster_key(seed),
                    device_registry(scenario, seed),
                    Entropy::seeded(seed ^ (host.index as u64) << 40 ^ u64::from(incarnation)),
                ));
            }
            let mut server = Tier2Server::new(tier2, sink());
            if c.secure {
                if let Some(plane) = control_plane(scenario, seed, host) {
                    server = server.with_control(plane);
                }
            }
            server.enable_recording();
            Running::Tier2(Box::new(server))
        }
    };
    let sender = matches!(running, Running::Camera(_) | Running::Mobile(_))
        .then(|| lock(&state).tally.add_sender());
    let mut role = SimRole {
        host: host.name.clone(),
        sender,
        running,
        state,
    };
    let sockets: Vec<&S> = sockets.iter().collect();
    driver::run_uplinks(&mut role, &sockets, &clock).await
}
