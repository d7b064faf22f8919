//! The roles together on a lossless in-process network with a fixed delay, stepped by hand on
//! virtual time: a tier-1, two tier-2s and one mobile client, and the test standing in for the
//! backend (it sends commands to a tier-2 and reads the results). For behaviour over minutes
//! of idle time, which the simulators' cameras (they finish when their frames are done) and
//! the process tests (real time) cannot afford. [`Net`] also serves other modules' tests
//! with hosts of their own ([`Net::with_hosts`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::cluster::{ClientConfig, Connector, Tier1, Tier1Config, Tier2, Tier2Config};
use crate::machine::Endpoint;
use crate::proto::wire::{self, Command, CommandMsg, CommandResult, Message};
use crate::proto::{DropReason, RateConfig, Receiver, ReceiverConfig, Sender, SenderConfig};
use crate::time::Instant;

const DELAY: Duration = Duration::from_millis(5);
const CLIENT: u32 = 7;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 7000))
}

fn backend() -> SocketAddr {
    addr(200)
}

pub(crate) enum Host {
    Tier1(Box<Tier1Server>),
    Tier2(Box<Tier2Server>),
    Mobile(Box<Mobile>),
}

impl Host {
    fn endpoint(&mut self) -> &mut dyn Endpoint {
        match self {
            Host::Tier1(t) => t.as_mut(),
            Host::Tier2(t) => t.as_mut(),
            Host::Mobile(m) => m.as_mut(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self {
            Host::Tier1(t) => t.poll_timeout(),
            Host::Tier2(t) => t.poll_timeout(),
            Host::Mobile(m) => m.poll_timeout(),
        }
    }
}

pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) hosts: BTreeMap<SocketAddr, Host>,
    /// `(arrival, sequence) -> (from, to, datagram)`.
    flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    /// Command results that reached the backend.
    results: Vec<CommandResult>,
    /// Bytes sent to addresses that are neither a host nor the backend.
    pub(crate) outside_bytes: usize,
}

impl Net {
    fn new() -> Net {
        let t1 = addr(1);
        let mut hosts = BTreeMap::new();
        hosts.insert(
            t1,
            Host::Tier1(Box::new(Tier1Server::new(
                Tier1::new(Tier1Config::new(1, t1, Vec::new()), Instant::ZERO),
                None,
            ))),
        );
        for id in [11u8, 12] {
            let tier2 = Tier2::new(Tier2Config::new(u32::from(id), vec![t1]), Instant::ZERO);
            let sink = Sink::new(
                Receiver::new(ReceiverConfig::default()),
                Box::new(FrameContent { seed: 1 }),
            );
            hosts.insert(
                addr(id),
                Host::Tier2(Box::new(Tier2Server::new(tier2, sink))),
            );
        }
        hosts.insert(addr(50), Host::Mobile(Box::new(mobile(0, Instant::ZERO))));
        Net::with_hosts(hosts)
    }

    /// A network of `hosts`, at time zero.
    pub(crate) fn with_hosts(hosts: BTreeMap<SocketAddr, Host>) -> Net {
        Net {
            now: Instant::ZERO,
            hosts,
            flight: BTreeMap::new(),
            seq: 0,
            results: Vec::new(),
            outside_bytes: 0,
        }
    }

    fn mobile(&self) -> &Mobile {
        match self.hosts.get(&addr(50)) {
            Some(Host::Mobile(m)) => m,
            _ => unreachable!("the mobile is at .50"),
        }
    }

    fn tier2(&self, at: SocketAddr) -> &Tier2Server {
        match self.hosts.get(&at) {
            Some(Host::Tier2(t)) => t,
            _ => panic!("no tier-2 at {at}"),
        }
    }

    /// The tier-2 address the mobile's session is on.
    fn session_tier2(&self) -> Option<SocketAddr> {
        self.mobile().connector().connected().map(|(_, a)| a)
    }

    pub(crate) fn send(&mut self, from: SocketAddr, to: SocketAddr, datagram: Vec<u8>) {
        self.seq += 1;
        self.flight
            .insert((self.now + DELAY, self.seq), (from, to, datagram));
    }

    /// Sends a command from the backend to the tier-2 holding the session.
    fn command(&mut self, id: u64, command: Command) {
        let to = self.session_tier2().expect("a session");
        let mut buf = Vec::new();
        Message::Command(CommandMsg {
            id,
            client: CLIENT,
            command,
        })
        .encode(&mut buf);
        self.send(backend(), to, buf);
    }

    pub(crate) fn run_until(&mut self, end: Instant) {
        loop {
            let next_arrival = self.flight.keys().next().map(|&(t, _)| t);
            let next_timer = self.hosts.values().filter_map(Host::deadline).min();
            let Some(t) = [next_arrival, next_timer].into_iter().flatten().min() else {
                break;
            };
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            while let Some(entry) = self.flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (from, to, data) = entry.remove();
                if to == backend() {
                    if let Ok(Message::CommandResult(r)) = wire::decode(&data) {
                        self.results.push(r);
                    }
                } else if let Some(h) = self.hosts.get_mut(&to) {
                    h.endpoint().handle_datagram(now, from, &data);
                } else {
                    self.outside_bytes += data.len();
                }
            }
            let mut out = Vec::new();
            for (&at, h) in self.hosts.iter_mut() {
                if h.deadline().is_some_and(|d| d <= now) {
                    h.endpoint().handle_timeout(now);
                }
                let mut buf = Vec::new();
                while let Some(to) = h.endpoint().poll_transmit(now, &mut buf) {
                    out.push((at, to, std::mem::take(&mut buf)));
                }
            }
            for (from, to, data) in out {
                self.send(from, to, data);
            }
        }
        self.now = end;
    }

    /// Takes out of flight the first datagram (from, to, bytes) that `pick` chooses, as an
    /// attacker on the path would.
    pub(crate) fn take_in_flight(
        &mut self,
        pick: impl Fn(SocketAddr, SocketAddr, &[u8]) -> bool,
    ) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let key = self
            .flight
            .iter()
            .find(|(_, (from, to, data))| pick(*from, *to, data))
            .map(|(&k, _)| k)?;
        self.flight.remove(&key)
    }

    fn result(&self, id: u64) -> Option<&CommandResult> {
        self.results.iter().find(|r| r.id == id)
    }
}

/// The mobile client of [`Net::new`], booted at `boot` and numbering its frames from
/// `boot_seq` (see [`super::durable`]).
fn mobile(boot_seq: u64, boot: Instant) -> Mobile {
    mobile_sending(SenderConfig::new(CLIENT, addr(11)), boot_seq, boot)
}

/// [`mobile`] with a sender of its own.
fn mobile_sending(sender: SenderConfig, boot_seq: u64, boot: Instant) -> Mobile {
    let camera = Camera::new(
        CameraConfig {
            fps: 10.0,
            frames: u64::MAX,
            frame_bytes: 3000,
            start_at: boot + Duration::from_secs(1),
        },
        Sender::new(sender),
        Box::new(FrameContent { seed: 1 }),
    )
    .with_boot_seq(boot_seq);
    let connector = Connector::new(ClientConfig::new(CLIENT, vec![addr(1)]));
    Mobile::new(MobileConfig::default(), connector, camera)
}

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

#[test]
fn a_stopped_camera_stays_commandable_long_past_the_idle_timeout() {
    let mut net = Net::new();
    net.run_until(at(3));
    let tier2 = net.session_tier2().expect("connected");
    net.command(1, Command::Stop);
    net.run_until(at(4));
    assert!(net.result(1).is_some_and(|r| r.ok), "{:?}", net.results);
    let sent = net.mobile().camera().report().frames_sent;
    // Twice the tier-2's 30 s idle timeout with no frame at all.
    net.run_until(at(64));
    assert_eq!(net.mobile().camera().report().frames_sent, sent, "stopped");
    assert_eq!(
        net.session_tier2(),
        Some(tier2),
        "the same session all along"
    );
    let keepalives = net.tier2(tier2).sink().receiver().stats().keepalives;
    assert!(
        (55..=62).contains(&keepalives),
        "one keep-alive a second while idle, got {keepalives}"
    );
    net.command(2, Command::Start);
    net.run_until(at(66));
    let r = net.result(2).expect("the start command answered");
    assert!(r.ok, "start after 60 s stopped: {r:?}");
    assert!(
        net.mobile().camera().report().frames_sent >= sent + 10,
        "frames flow again"
    );
}

#[test]
fn an_idle_client_fails_over_when_its_tier2_dies() {
    let mut net = Net::new();
    net.run_until(at(3));
    net.command(1, Command::Stop);
    net.run_until(at(10));
    let dead = net.session_tier2().expect("connected");
    net.hosts.remove(&dead);
    let died = net.now;
    // Within a keep-alive interval plus the session timeout, and a connection set-up.
    let bound = MobileConfig::default().keepalive_interval
        + MobileConfig::default().session_timeout
        + Duration::from_millis(500);
    let mut moved = None;
    while net.now < died + Duration::from_secs(10) {
        let step = net.now + Duration::from_millis(10);
        net.run_until(step);
        if net.session_tier2().is_some_and(|a| a != dead) {
            moved = Some(net.now.saturating_duration_since(died));
            break;
        }
    }
    let moved = moved.expect("the idle client reconnected to the other tier-2");
    assert!(
        moved <= bound,
        "failed over after {moved:?} (bound {bound:?})"
    );
    // Still stopped, still commandable on its new tier-2.
    net.command(2, Command::Snapshot);
    net.run_until(net.now + Duration::from_secs(1));
    assert!(net.result(2).is_some_and(|r| r.ok), "{:?}", net.results);
}

#[test]
fn switch_tier1_goes_only_to_a_tier1_the_client_knows() {
    let mut net = Net::new();
    net.run_until(at(3));
    let attacker = SocketAddr::from(([10, 6, 6, 6], 7000));
    net.command(1, Command::SwitchTier1 { addr: attacker });
    net.run_until(at(4));
    let r = net.result(1).expect("answered");
    assert!(!r.ok && r.reason.contains("not one of"), "{r:?}");
    assert!(!net.mobile().connector().tier1s().contains(&attacker));
    // Its own tier-1 is taken.
    net.command(2, Command::SwitchTier1 { addr: addr(1) });
    net.run_until(at(5));
    assert!(net.result(2).is_some_and(|r| r.ok), "{:?}", net.results);
    assert_eq!(net.mobile().connector().tier1s().first(), Some(&addr(1)));
}

#[test]
fn a_restarted_client_numbers_afresh_and_its_new_frames_are_not_taken_for_stale_ones() {
    let mut net = Net::new();
    // One tier-2, so the restarted client comes back to the one that remembers its session.
    net.hosts.remove(&addr(12));
    net.run_until(at(5));
    let before = net.tier2(addr(11)).sink().report();
    assert!(before.frames_delivered >= 30, "{before:?}");
    // The client restarts: a new boot numbering on from a higher sequence number, its live
    // frame ids from 0 again, while the tier-2 still holds the old session (ids up to ~40).
    let reboot = net.now;
    net.hosts
        .insert(addr(50), Host::Mobile(Box::new(mobile(1_000_000, reboot))));
    net.run_until(at(10));
    let after = net.tier2(addr(11)).sink().report();
    assert_eq!(after.sessions_renumbered, 1, "{after:?}");
    assert!(
        after.frames_delivered >= before.frames_delivered + 30,
        "the new boot's frames are delivered: {} before, {} after",
        before.frames_delivered,
        after.frames_delivered
    );
    assert_eq!((after.frames_corrupted, after.frames_duplicated), (0, 0));
}

/// A session that opens late (its tier-1 unreachable for the first 1.4 s, the camera
/// capturing from 1 s) starts with the newest frame: under rate control the captures of the
/// wait are given up (`DropReason::SetUp`) the moment it opens, instead of leaving together
/// at the starting rate and holding up the frames after them; the newest of them arrives,
/// and nothing else is lost.
#[test]
fn a_session_that_opens_late_starts_with_the_newest_frame() {
    let mut net = Net::new();
    let mut cfg = SenderConfig::new(CLIENT, addr(11));
    cfg.rate_control = Some(RateConfig::default());
    let mut mobile = mobile_sending(cfg, 0, Instant::ZERO);
    mobile.enable_recording();
    net.hosts.insert(addr(50), Host::Mobile(Box::new(mobile)));
    let tier1 = net.hosts.remove(&addr(1)).expect("the tier-1");
    net.run_until(at(1) + Duration::from_millis(400));
    assert!(
        net.session_tier2().is_none(),
        "no session without the tier-1"
    );
    net.hosts.insert(addr(1), tier1);
    net.run_until(at(6));
    let Some(Host::Mobile(m)) = net.hosts.get_mut(&addr(50)) else {
        unreachable!("the mobile is at .50")
    };
    let events = m.take_recorded();
    let opened = events
        .iter()
        .find_map(|(t, e)| matches!(e, RoleEvent::Connected { .. }).then_some(*t))
        .expect("connected once the tier-1 answers");
    // The next connect attempt, within the frames' 1 s deadline.
    assert!(opened < at(2), "connected at {opened:?}");
    let waited: Vec<u32> = events
        .iter()
        .filter_map(|(t, e)| match e {
            RoleEvent::FramePushed { frame, .. } if *t <= opened => Some(*frame),
            _ => None,
        })
        .collect();
    assert!(waited.len() >= 4, "{waited:?} captured while waiting");
    let given_up: Vec<(u32, DropReason)> = events
        .iter()
        .filter_map(|(_, e)| match e {
            RoleEvent::FrameGivenUp { frame, reason, .. } => Some((*frame, *reason)),
            _ => None,
        })
        .collect();
    let stale: Vec<(u32, DropReason)> = waited[..waited.len() - 1]
        .iter()
        .map(|&f| (f, DropReason::SetUp))
        .collect();
    assert_eq!(
        given_up, stale,
        "all but the newest of {waited:?}, and nothing else"
    );
    let newest = waited[waited.len() - 1];
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, RoleEvent::FrameAcked { frame, .. } if *frame == newest)),
        "the newest frame of the wait, {newest}, arrives"
    );
    let r = m.camera().report();
    assert!(r.frames_delivered >= 40, "{r:?}");
    // No frame waited out the set-up: the newest of the wait took one round trip past it.
    assert!(r.latency_ms_max < 200.0, "{r:?}");
}
