use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Recorder, RoleEvent, Sink};
use crate::cluster::{Tier2, Tier2Event};
use crate::driver::{Endpoint, Role};
use crate::outbox::Outbox;
use crate::proto::wire::{self, CommandMsg, CommandResult, Message};
use crate::time::Instant;

/// A tier-2 server: the cluster logic ([`Tier2`]) for control messages and a [`Sink`] for the
/// frames. Its load is the sessions its receiver holds plus clients that accepted and have not
/// sent their first segment yet, plus open reservations.
///
/// It also relays the backend's commands to the clients it holds, and their results back
/// (seed [0040]: commands from the browser reach the mobile client through its tier-2).
pub struct Tier2Server {
    tier2: Tier2,
    sink: Sink,
    /// Clients that accepted, until their session shows up in the receiver.
    accepted: BTreeMap<u32, Instant>,
    /// Command id -> (who sent it, client, until when its result is relayed back).
    relays: BTreeMap<u64, Relay>,
    outbox: Outbox,
    recorder: Recorder,
}

#[derive(Debug, Clone, Copy)]
struct Relay {
    backend: SocketAddr,
    client: u32,
    expires: Instant,
}

/// How long a tier-2 relays results of a command back.
const RELAY_TTL: Duration = Duration::from_secs(30);
/// Commands in relay at most; the oldest is forgotten first.
const MAX_RELAYS: usize = 4096;

impl Tier2Server {
    pub fn new(tier2: Tier2, sink: Sink) -> Self {
        Tier2Server {
            tier2,
            sink,
            accepted: BTreeMap::new(),
            relays: BTreeMap::new(),
            outbox: Outbox::default(),
            recorder: Recorder::default(),
        }
    }

    /// A command from the backend: passed on to the client if this tier-2 holds its session,
    /// refused with a reason otherwise.
    fn on_command(&mut self, now: Instant, from: SocketAddr, m: &CommandMsg) {
        self.relays.retain(|_, r| r.expires > now);
        match self.sink.peer(m.client) {
            Some(client_addr) => {
                if self.relays.len() >= MAX_RELAYS && !self.relays.contains_key(&m.id) {
                    self.relays.pop_first();
                }
                self.relays.insert(
                    m.id,
                    Relay {
                        backend: from,
                        client: m.client,
                        expires: now + RELAY_TTL,
                    },
                );
                self.outbox.send(client_addr, &Message::Command(*m));
            }
            None => self.outbox.send(
                from,
                &Message::CommandResult(CommandResult {
                    id: m.id,
                    client: m.client,
                    ok: false,
                    reason: format!(
                        "client {} has no session on tier-2 {}",
                        m.client,
                        self.tier2.id()
                    ),
                }),
            ),
        }
    }

    /// A client's result: back to whoever sent the command.
    fn on_command_result(&mut self, from: SocketAddr, r: CommandResult) {
        let Some(relay) = self.relays.get(&r.id) else {
            return;
        };
        if relay.client == r.client && self.sink.peer(r.client) == Some(from) {
            self.outbox.send(relay.backend, &Message::CommandResult(r));
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
            match wire::decode(data) {
                Ok(Message::Command(m)) => self.on_command(now, from, &m),
                Ok(Message::CommandResult(r)) => self.on_command_result(from, r),
                Ok(msg) => {
                    self.tier2.handle(now, from, &msg);
                }
                Err(_) => {}
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
            .or_else(|| self.outbox.poll_transmit(buf))
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
