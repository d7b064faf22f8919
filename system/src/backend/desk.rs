//! The backend's command desk: sends each browser command to the tier-2 that holds the
//! client's session and waits for the client's result, resending on a timer (commands travel
//! over UDP) until an answer or a deadline. Sans-IO, like the protocol machines: `now` and
//! datagrams in; datagrams, a deadline and finished commands out.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::CommandState;
use crate::machine::{Endpoint, Role};
use crate::outbox::Outbox;
use crate::proto::wire::{self, Command, CommandMsg, Message};
use crate::secure::control::{ControlGate, ControlPlane, ControlStats, Incoming};
use crate::time::{period, Instant};

/// Timing of a [`CommandDesk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeskConfig {
    /// A command with no answer is sent again after this long.
    pub resend: Duration,
    /// A command with no answer after this long has failed.
    pub timeout: Duration,
    /// Commands waiting at most; a new one beyond this fails at once.
    pub max_pending: usize,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            resend: Duration::from_millis(250),
            timeout: Duration::from_secs(5),
            max_pending: 10_000,
        }
    }
}

/// A command that got its answer, or gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub id: u64,
    pub client: u32,
    pub state: CommandState,
}

/// What a [`CommandDesk`] did with the commands it was handed, for metrics. Every command
/// handed over (submitted, or failed at once by [`CommandDesk::fail`]) is counted once in
/// `submitted` and, once finished, once in `acked`, `failed` or `timed_out`: `submitted` is
/// their sum plus [`CommandDesk::pending`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeskStats {
    pub submitted: u64,
    /// The client carried it out.
    pub acked: u64,
    /// The client refused it, or it could not be sent (no session, too many waiting).
    pub failed: u64,
    /// No answer before the deadline.
    pub timed_out: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    msg: CommandMsg,
    tier2: SocketAddr,
    next_send: Instant,
    deadline: Instant,
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct CommandDesk {
    cfg: DeskConfig,
    pending: BTreeMap<u64, Pending>,
    outbox: Outbox,
    finished: VecDeque<Finished>,
    /// Datagrams that were not a result of a pending command from its tier-2.
    pub ignored: u64,
    /// Signs the commands and checks the results (secure mode).
    control: ControlGate,
    stats: DeskStats,
}

impl CommandDesk {
    pub fn new(mut cfg: DeskConfig) -> Self {
        cfg.resend = period(cfg.resend);
        CommandDesk {
            cfg,
            pending: BTreeMap::new(),
            outbox: Outbox::default(),
            finished: VecDeque::new(),
            ignored: 0,
            control: ControlGate::default(),
            stats: DeskStats::default(),
        }
    }

    /// Signs its commands with `plane` and takes only results signed by a tier-2.
    pub fn with_control(mut self, plane: ControlPlane) -> Self {
        self.control = ControlGate::new(Some(plane));
        self
    }

    /// What its control plane signed, let in and refused.
    pub fn control_stats(&self) -> ControlStats {
        self.control.stats()
    }

    /// Sends command `id` for `client` to `tier2`, the tier-2 holding the client's session.
    pub fn submit(
        &mut self,
        now: Instant,
        id: u64,
        client: u32,
        command: Command,
        tier2: SocketAddr,
    ) {
        if self.pending.contains_key(&id) {
            return;
        }
        self.stats.submitted += 1;
        if self.pending.len() >= self.cfg.max_pending {
            self.stats.failed += 1;
            self.push_failed(id, client, "too many commands waiting for an answer");
            return;
        }
        let msg = CommandMsg {
            id,
            client,
            command,
        };
        self.outbox.send(tier2, &Message::Command(msg));
        self.pending.insert(
            id,
            Pending {
                msg,
                tier2,
                next_send: now + self.cfg.resend,
                deadline: now + self.cfg.timeout,
            },
        );
    }

    /// Fails command `id` at once (no session to send it to, say).
    pub fn fail(&mut self, id: u64, client: u32, reason: &str) {
        if self.pending.remove(&id).is_none() {
            // Handed to the desk just to fail: it counts as submitted all the same.
            self.stats.submitted += 1;
        }
        self.stats.failed += 1;
        self.push_failed(id, client, reason);
    }

    fn push_failed(&mut self, id: u64, client: u32, reason: &str) {
        self.finished.push_back(Finished {
            id,
            client,
            state: CommandState::Failed {
                reason: reason.to_string(),
            },
        });
    }

    /// The next command that finished.
    pub fn poll_event(&mut self) -> Option<Finished> {
        self.finished.pop_front()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// What it did so far.
    pub fn stats(&self) -> DeskStats {
        self.stats
    }
}

impl Endpoint for CommandDesk {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let data = match self.control.incoming(now, from, data) {
            Incoming::Other(d) | Incoming::Control { datagram: d, .. } => d,
            Incoming::Refused => {
                self.ignored += 1;
                return;
            }
        };
        let Ok(Message::CommandResult(r)) = wire::decode(data) else {
            self.ignored += 1;
            return;
        };
        match self.pending.get(&r.id) {
            Some(p) if p.tier2 == from && p.msg.client == r.client => {
                self.pending.remove(&r.id);
                let state = if r.ok {
                    self.stats.acked += 1;
                    CommandState::Acked
                } else {
                    self.stats.failed += 1;
                    CommandState::Failed { reason: r.reason }
                };
                self.finished.push_back(Finished {
                    id: r.id,
                    client: r.client,
                    state,
                });
            }
            // A repeated answer to a finished command, or a stranger's.
            _ => self.ignored += 1,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (&id, p) in self.pending.iter_mut() {
            if p.deadline <= now {
                expired.push((id, p.msg.client));
            } else if p.next_send <= now {
                self.outbox.send(p.tier2, &Message::Command(p.msg));
                p.next_send = now + self.cfg.resend;
            }
        }
        let secs = self.cfg.timeout.as_secs_f64();
        for (id, client) in expired {
            self.pending.remove(&id);
            self.stats.timed_out += 1;
            self.push_failed(
                id,
                client,
                &format!("no answer from client {client} within {secs} s"),
            );
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let to = self.outbox.poll_transmit(buf)?;
        self.control.outgoing(now, buf);
        Some(to)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.next_send.min(p.deadline))
            .min()
    }
}

impl Role for CommandDesk {
    fn is_finished(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::CommandResult;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    fn sent(desk: &mut CommandDesk) -> Vec<(SocketAddr, CommandMsg)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(to) = desk.poll_transmit(Instant::ZERO, &mut buf) {
            match wire::decode(&buf) {
                Ok(Message::Command(m)) => out.push((to, m)),
                other => panic!("desk sent {other:?}"),
            }
        }
        out
    }

    fn result(id: u64, client: u32, ok: bool, reason: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        Message::CommandResult(CommandResult {
            id,
            client,
            ok,
            reason: reason.into(),
        })
        .encode(&mut buf);
        buf
    }

    #[test]
    fn sends_resends_and_finishes_on_the_answer() {
        let mut desk = CommandDesk::new(DeskConfig::default());
        let t0 = Instant::ZERO;
        desk.submit(t0, 1, 5, Command::Snapshot, addr(2));
        assert_eq!(sent(&mut desk).len(), 1);
        // No answer: resent once per resend period, to the same tier-2.
        let t1 = desk.poll_timeout().unwrap();
        assert_eq!(t1, t0 + Duration::from_millis(250));
        desk.handle_timeout(t1);
        assert_eq!(
            sent(&mut desk),
            vec![(
                addr(2),
                CommandMsg {
                    id: 1,
                    client: 5,
                    command: Command::Snapshot
                }
            )]
        );
        // An answer from someone else is ignored; the tier-2's finishes it.
        desk.handle_datagram(t1, addr(9), &result(1, 5, true, ""));
        assert_eq!(desk.poll_event(), None);
        desk.handle_datagram(t1, addr(2), &result(1, 5, true, ""));
        assert_eq!(
            desk.poll_event(),
            Some(Finished {
                id: 1,
                client: 5,
                state: CommandState::Acked
            })
        );
        assert_eq!(desk.pending(), 0);
        assert_eq!(desk.poll_timeout(), None);
        // A repeated answer changes nothing.
        desk.handle_datagram(t1, addr(2), &result(1, 5, false, "late"));
        assert_eq!(desk.poll_event(), None);
        assert_eq!(desk.ignored, 2);
        let s = desk.stats();
        assert_eq!((s.submitted, s.acked, s.failed, s.timed_out), (1, 1, 0, 0));
    }

    #[test]
    fn every_command_handed_over_is_counted_once_until_it_finishes() {
        let cfg = DeskConfig {
            max_pending: 2,
            ..DeskConfig::default()
        };
        let mut desk = CommandDesk::new(cfg);
        let t0 = Instant::ZERO;
        desk.submit(t0, 1, 5, Command::Snapshot, addr(2));
        desk.submit(t0, 1, 5, Command::Snapshot, addr(2)); // the same command again
        desk.submit(t0, 2, 6, Command::Snapshot, addr(2));
        desk.submit(t0, 3, 7, Command::Snapshot, addr(2)); // beyond max_pending
        desk.fail(4, 8, "client 8 has no session"); // never submitted
        desk.fail(2, 6, "given up"); // pending until now
        let s = desk.stats();
        assert_eq!((s.submitted, s.acked, s.failed, s.timed_out), (4, 0, 3, 0));
        assert_eq!(
            s.submitted,
            s.acked + s.failed + s.timed_out + desk.pending() as u64
        );
    }

    #[test]
    fn a_refusal_carries_its_reason_and_silence_times_out() {
        let mut desk = CommandDesk::new(DeskConfig::default());
        desk.submit(Instant::ZERO, 1, 5, Command::Stop, addr(2));
        desk.submit(Instant::ZERO, 2, 6, Command::Start, addr(3));
        desk.handle_datagram(Instant::ZERO, addr(2), &result(1, 5, false, "no camera"));
        assert_eq!(
            desk.poll_event().unwrap().state,
            CommandState::Failed {
                reason: "no camera".into()
            }
        );
        let mut now = Instant::ZERO;
        while let Some(t) = desk.poll_timeout() {
            now = t;
            desk.handle_timeout(now);
        }
        assert_eq!(now, Instant::ZERO + Duration::from_secs(5));
        let f = desk.poll_event().unwrap();
        assert_eq!(f.id, 2);
        assert!(
            matches!(f.state, CommandState::Failed { ref reason } if reason.contains("no answer"))
        );
        assert_eq!(
            desk.stats(),
            DeskStats {
                submitted: 2,
                acked: 0,
                failed: 1,
                timed_out: 1
            }
        );
        // 5 s at one send per 250 ms: the first send and 19 resends.
        assert_eq!(
            sent(&mut desk)
                .iter()
                .filter(|(to, _)| *to == addr(3))
                .count(),
            20
        );
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut desk = CommandDesk::new(DeskConfig::default());
        desk.handle_datagram(Instant::ZERO, addr(1), b"LC\x01\x31garbage");
        desk.handle_datagram(Instant::ZERO, addr(1), &[]);
        assert_eq!(desk.ignored, 2);
    }
}
