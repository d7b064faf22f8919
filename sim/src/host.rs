//! What runs on a simulated host: the product's roles, traced, over any backend.
//!
//! Backends only bind a socket and provide a clock; [`host_main`] builds the host's role from
//! the scenario, wraps it in [`SimRole`] (which writes every datagram and role event into the
//! trace and the tally) and runs it with the product's one driver loop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use livecam_system::driver::{self, Endpoint, Role};
use livecam_system::net::{Clock, DatagramSocket};
use livecam_system::proto::{PolicyConfig, Receiver, ReceiverConfig, Sender, SenderConfig};
use livecam_system::role::{Camera, CameraConfig, FrameContent, RoleEvent, Sink};
use livecam_system::time::Instant;

use crate::scenario::{Host, RoleKind, Scenario};
use crate::state::{lock, Shared};
use crate::trace::{MsgSummary, NetEvent};

/// UDP port every simulated role listens on.
pub const PORT: u16 = 7000;

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0) / 1e3)
}

fn policy(scenario: &Scenario) -> PolicyConfig {
    PolicyConfig {
        kind: scenario.workload.policy,
        limits: scenario.workload.limits,
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
        ..SenderConfig::new(session, peer)
    }
}

/// A session id unique per camera host and incarnation.
pub fn session_id(host_index: usize, incarnation: u32) -> u32 {
    ((host_index as u32) << 8) | (incarnation & 0xff)
}

enum Running {
    Camera(Box<Camera>),
    Sink(Box<Sink>),
}

/// A role with tracing around it.
pub struct SimRole {
    host: String,
    incarnation: u32,
    running: Running,
    state: Shared,
}

impl SimRole {
    fn flush(&mut self, now: Instant) {
        let events: Vec<(Instant, RoleEvent)> = match &mut self.running {
            Running::Camera(c) => c.take_recorded(),
            Running::Sink(s) => s.take_recorded(),
        };
        let mut st = lock(&self.state);
        for (t, ev) in &events {
            st.trace.record(*t, &self.host, ev);
            st.tally.on_role_event(*t, &self.host, ev);
        }
        if let Running::Camera(c) = &self.running {
            st.tally
                .set_sender_stats(&self.host, self.incarnation, c.sender().stats());
        }
        let _ = now;
    }

    fn endpoint(&mut self) -> &mut dyn Endpoint {
        match &mut self.running {
            Running::Camera(c) => c.as_mut(),
            Running::Sink(s) => s.as_mut(),
        }
    }
}

impl Endpoint for SimRole {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        {
            let mut st = lock(&self.state);
            let name = st.name_of(from.ip());
            let ev = NetEvent::Recv {
                from: &name,
                len: data.len(),
                msg: MsgSummary::of(data),
            };
            st.trace.record(now, &self.host, &ev);
        }
        self.endpoint().handle_datagram(now, from, data);
        self.flush(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint().handle_timeout(now);
        self.flush(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let dst = self.endpoint().poll_transmit(now, buf)?;
        let mut st = lock(&self.state);
        let name = st.name_of(dst.ip());
        let ev = NetEvent::Send {
            to: &name,
            len: buf.len(),
            msg: MsgSummary::of(buf),
        };
        st.trace.record(now, &self.host, &ev);
        Some(dst)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.running {
            Running::Camera(c) => c.poll_timeout(),
            Running::Sink(s) => s.poll_timeout(),
        }
    }
}

impl Role for SimRole {
    fn is_finished(&self) -> bool {
        match &self.running {
            Running::Camera(c) => c.is_finished(),
            Running::Sink(s) => s.is_finished(),
        }
    }
}

/// Runs one host's role until it finishes (cameras) or the simulation ends (receivers).
///
/// `resolve` maps a host name to its address on this backend.
pub async fn host_main<S, C>(
    scenario: &Scenario,
    host: &Host,
    seed: u64,
    state: Shared,
    socket: S,
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
    let running = match host.role {
        RoleKind::Receiver => {
            let mut sink = Sink::new(Receiver::new(receiver_config(scenario)), content);
            sink.record_events();
            Running::Sink(Box::new(sink))
        }
        RoleKind::Camera => {
            let target = host.target.as_deref().unwrap_or_default();
            let ip = resolve(target).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no host {target:?}"))
            })?;
            let session = session_id(host.index, incarnation);
            let sender = Sender::new(sender_config(scenario, session, (ip, PORT).into()));
            let start_at = now + ms(scenario.workload.stagger_ms * host.index as f64);
            let capture_end = scenario.duration_s - scenario.workload.settle_s;
            let remaining = (capture_end - start_at.since_origin().as_secs_f64()).max(0.0);
            lock(&state)
                .tally
                .on_session_start(start_at, session, sender.segment_size());
            let mut camera = Camera::new(
                CameraConfig {
                    fps: scenario.workload.fps,
                    frames: (remaining * scenario.workload.fps).floor() as u64,
                    frame_bytes: scenario.workload.frame_bytes,
                    start_at,
                    content,
                },
                sender,
            );
            camera.record_events();
            Running::Camera(Box::new(camera))
        }
    };
    let mut role = SimRole {
        host: host.name.clone(),
        incarnation,
        running,
        state,
    };
    driver::run(&mut role, &socket, &clock).await
}
