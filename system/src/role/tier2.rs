use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Recorder, RoleEvent, Sink};
use crate::cluster::{Tier2, Tier2Event};
use crate::driver::{Endpoint, Role};
use crate::proto::wire;
use crate::time::Instant;

/// A tier-2 server: the cluster logic ([`Tier2`]) for control messages and a [`Sink`] for the
/// frames. Its load is the sessions its receiver holds plus clients that accepted and have not
/// sent their first segment yet, plus open reservations.
pub struct Tier2Server {
    tier2: Tier2,
    sink: Sink,
    /// Clients that accepted, until their session shows up in the receiver.
    accepted: BTreeMap<u32, Instant>,
    recorder: Recorder,
}

impl Tier2Server {
    pub fn new(tier2: Tier2, sink: Sink) -> Self {
        Tier2Server {
            tier2,
            sink,
            accepted: BTreeMap::new(),
            recorder: Recorder::default(),
        }
    }

    pub fn tier2(&self) -> &Tier2 {
        &self.tier2
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn enable_recording(&mut self) {
        self.recorder.enable();
        self.sink.recorder().enable();
    }

    pub fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        self.recorder.take_with(self.sink.recorder())
    }

    fn update(&mut self, now: Instant) {
        while let Some(ev) = self.tier2.poll_event() {
            let id = self.tier2.id();
            match ev {
                Tier2Event::SessionAccepted { client, .. } => {
                    self.accepted.insert(client, now);
                    self.recorder
                        .record(now, RoleEvent::SessionAccepted { tier2: id, client });
                }
                Tier2Event::ManagerChanged { manager, epoch } => self.recorder.record(
                    now,
                    RoleEvent::ManagerChanged {
                        tier2: id,
                        manager,
                        epoch,
                    },
                ),
            }
        }
        let receiver = self.sink.receiver();
        let ttl = receiver.config().frame_timeout;
        self.accepted.retain(|&client, &mut at| {
            receiver.segment_size(client).is_none() && now.saturating_duration_since(at) < ttl
        });
        let sessions = receiver.session_count() + self.accepted.len();
        self.tier2.set_sessions(sessions as u32);
    }
}

impl Endpoint for Tier2Server {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if wire::is_control(data) {
            if let Ok(msg) = wire::decode(data) {
                self.tier2.handle(now, from, &msg);
            }
        } else {
            self.sink.handle_datagram(now, from, data);
        }
        self.update(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sink.handle_timeout(now);
        self.tier2.handle_timeout(now);
        self.update(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.tier2
            .poll_transmit(buf)
            .or_else(|| self.sink.poll_transmit(now, buf))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.tier2.poll_timeout(), self.sink.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Role for Tier2Server {
    fn is_finished(&self) -> bool {
        false
    }
}
