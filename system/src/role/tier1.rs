use std::net::SocketAddr;

use super::{Recorder, RoleEvent};
use crate::cluster::{Tier1, Tier1Event};
use crate::machine::{Endpoint, Role};
use crate::proto::wire;
use crate::secure::control::{ControlGate, ControlPlane, ControlStats, Incoming};
use crate::time::Instant;

/// A tier-1 server, optionally told to drain at a given time (an operator's command ahead of
/// planned downtime).
pub struct Tier1Server {
    tier1: Tier1,
    drain_at: Option<Instant>,
    recorder: Recorder,
    /// Signs what it sends other servers and checks what they send it (secure mode).
    control: ControlGate,
}

impl Tier1Server {
    pub fn new(tier1: Tier1, drain_at: Option<Instant>) -> Self {
        Tier1Server {
            tier1,
            drain_at,
            recorder: Recorder::default(),
            control: ControlGate::default(),
        }
    }

    /// Authenticates its server-to-server traffic with `plane`: signed out, checked in, and
    /// unsigned control datagrams dropped.
    pub fn with_control(mut self, plane: ControlPlane) -> Self {
        self.control = ControlGate::new(Some(plane));
        self.tier1.bound_answers();
        self
    }

    /// What its control plane signed, let in and refused.
    pub fn control_stats(&self) -> ControlStats {
        self.control.stats()
    }

    pub fn tier1(&self) -> &Tier1 {
        &self.tier1
    }

    pub fn enable_recording(&mut self) {
        self.recorder.enable();
    }

    pub fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        self.recorder.take()
    }

    fn drain_events(&mut self, now: Instant) {
        let tier1 = self.tier1.id();
        while let Some(ev) = self.tier1.poll_event() {
            let ev = match ev {
                Tier1Event::Managing { tier2, .. } => RoleEvent::Managing { tier1, tier2 },
                Tier1Event::Released { tier2, to } => RoleEvent::Released { tier1, tier2, to },
                Tier1Event::Drained => RoleEvent::Drained { tier1 },
            };
            self.recorder.record(now, ev);
        }
    }
}

impl Endpoint for Tier1Server {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let data = match self.control.incoming(now, from, data) {
            Incoming::Refused => return,
            Incoming::Other(d) | Incoming::Control { datagram: d, .. } => d,
        };
        if let Ok(msg) = wire::decode(data) {
            self.tier1.handle(now, from, &msg);
        }
        self.drain_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.drain_at.is_some_and(|t| t <= now) {
            self.drain_at = None;
            self.recorder.record(
                now,
                RoleEvent::Draining {
                    tier1: self.tier1.id(),
                },
            );
            self.tier1.drain(now);
        }
        self.tier1.handle_timeout(now);
        self.drain_events(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let to = self.tier1.poll_transmit(now, buf)?;
        self.control.outgoing(now, buf);
        Some(to)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.tier1.poll_timeout(), self.drain_at]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Role for Tier1Server {
    fn is_finished(&self) -> bool {
        false
    }
}
