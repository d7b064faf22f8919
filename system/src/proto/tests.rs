//! Function-call tests of sender and receiver together, on a tiny in-process network in the
//! shape of quinn-proto's test `Pair`: a virtual clock that jumps to the next event, a fixed
//! one-way latency, and a hook that decides the fate of every datagram.

use std::net::SocketAddr;
use std::time::Duration;

use super::wire::{self, Message};
use super::*;
use crate::machine::Endpoint;
use crate::time::Instant;

const TX: &str = "10.0.0.1:5000";
const RX: &str = "10.0.0.2:6000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Corrupt,
}

/// What crossed the network, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Segment {
        frame: u32,
        index: u16,
    },
    Nack {
        frame: u32,
        missing: Vec<u16>,
        next: u16,
    },
    Ack {
        frame: u32,
        next: u16,
    },
}

type Hook = Box<dyn FnMut(&Seen, usize) -> Fate>;

struct Pair {
    tx: Sender,
    rx: Receiver,
    now: Instant,
    latency: Duration,
    /// `(deliver_at, to_receiver, bytes)`
    wire: Vec<(Instant, bool, Vec<u8>)>,
    log: Vec<Seen>,
    hook: Hook,
    tx_events: Vec<SenderEvent>,
    rx_events: Vec<ReceiverEvent>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A message as it goes on the wire.
fn encode(m: Message) -> Vec<u8> {
    let mut buf = Vec::new();
    m.encode(&mut buf);
    buf
}

/// An ACK of `frame` of session 1, with no size advice.
fn ack_of(frame: u32) -> Vec<u8> {
    encode(Message::FrameAck(wire::FrameAck {
        session: 1,
        frame,
        next_segment_size: 0,
        next_parity: 0,
    }))
}

/// A NACK of session 1 naming `missing` of `frame`, with no size advice.
fn nack_of(frame: u32, missing: Vec<u16>) -> Vec<u8> {
    encode(Message::Nack(wire::Nack {
        session: 1,
        frame,
        next_segment_size: 0,
        next_parity: 0,
        missing,
    }))
}

/// Runs the sender's timers at `now` and sends what it lets go: how many datagrams left.
fn tick(tx: &mut Sender, now: Instant) -> usize {
    let mut buf = Vec::new();
    tx.handle_timeout(now);
    let mut sent = 0;
    while tx.poll_transmit(now, &mut buf).is_some() {
        sent += 1;
    }
    sent
}

fn seen(bytes: &[u8]) -> Seen {
    match wire::decode(bytes).unwrap() {
        Message::Segment(s) => Seen::Segment {
            frame: s.frame,
            index: s.index,
        },
        Message::Nack(n) => Seen::Nack {
            frame: n.frame,
            missing: n.missing,
            next: n.next_segment_size,
        },
        Message::FrameAck(a) => Seen::Ack {
            frame: a.frame,
            next: a.next_segment_size,
        },
        other => panic!("the protocol pair sent a {} message", other.name()),
    }
}

impl Pair {
    fn new(tx: SenderConfig, rx: ReceiverConfig) -> Self {
        Pair {
            tx: Sender::new(tx),
            rx: Receiver::new(rx),
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            wire: Vec::new(),
            log: Vec::new(),
            hook: Box::new(|_, _| Fate::Deliver),
            tx_events: Vec::new(),
            rx_events: Vec::new(),
        }
    }

    fn default_pair() -> Self {
        Pair::new(SenderConfig::new(1, addr(RX)), ReceiverConfig::default())
    }

    fn push(&mut self, len: usize) -> u32 {
        self.tx.push_frame(self.now, frame_bytes(len, 0)).unwrap()
    }

    /// Moves every ready datagram onto the wire, through the hook.
    fn flush(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut any = false;
            while let Some(dst) = self.tx.poll_transmit(self.now, &mut buf) {
                assert_eq!(dst, addr(RX));
                self.offer(true, &buf);
                any = true;
            }
            while let Some(dst) = self.rx.poll_transmit(self.now, &mut buf) {
                assert_eq!(dst, addr(TX));
                self.offer(false, &buf);
                any = true;
            }
            if !any {
                break;
            }
        }
    }

    fn offer(&mut self, to_rx: bool, bytes: &[u8]) {
        let s = seen(bytes);
        let n = self.log.iter().filter(|x| **x == s).count();
        self.log.push(s.clone());
        let mut bytes = bytes.to_vec();
        match (self.hook)(&s, n) {
            Fate::Drop => return,
            Fate::Corrupt => {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x10;
            }
            Fate::Deliver => {}
        }
        self.wire.push((self.now + self.latency, to_rx, bytes));
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.tx.poll_event() {
            self.tx_events.push(e);
        }
        while let Some(e) = self.rx.poll_event() {
            self.rx_events.push(e);
        }
    }

    /// Runs until nothing is pending or `until` is reached.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.flush();
            self.drain_events();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next = [next_wire, self.tx.poll_timeout(), self.rx.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { return };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.now);
            self.wire = rest;
            for (_, to_rx, bytes) in due {
                if to_rx {
                    self.rx.handle_datagram(self.now, addr(TX), &bytes);
                } else {
                    self.tx.handle_datagram(self.now, addr(RX), &bytes);
                }
            }
            if self.tx.poll_timeout().is_some_and(|t| t <= self.now) {
                self.tx.handle_timeout(self.now);
            }
            if self.rx.poll_timeout().is_some_and(|t| t <= self.now) {
                self.rx.handle_timeout(self.now);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn delivered(&self) -> Vec<(u32, Vec<u8>)> {
        self.rx_events
            .iter()
            .filter_map(|e| match e {
                ReceiverEvent::FrameDelivered { frame, data, .. } => Some((*frame, data.clone())),
                _ => None,
            })
            .collect()
    }

    fn acked(&self) -> Vec<u32> {
        self.tx_events
            .iter()
            .filter_map(|e| match e {
                SenderEvent::FrameAcked { frame, .. } => Some(*frame),
                _ => None,
            })
            .collect()
    }

    fn segments_sent(&self, frame: u32) -> Vec<u16> {
        self.log
            .iter()
            .filter_map(|s| match s {
                Seen::Segment { frame: f, index } if *f == frame => Some(*index),
                _ => None,
            })
            .collect()
    }

    fn nacks(&self) -> Vec<(u32, Vec<u16>)> {
        self.log
            .iter()
            .filter_map(|s| match s {
                Seen::Nack { frame, missing, .. } => Some((*frame, missing.clone())),
                _ => None,
            })
            .collect()
    }

    /// The segment size each NACK advised, in order.
    fn nacked_sizes(&self) -> Vec<u16> {
        self.log
            .iter()
            .filter_map(|s| match s {
                Seen::Nack { next, .. } => Some(*next),
                _ => None,
            })
            .collect()
    }
}

fn frame_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 + usize::from(salt)) as u8)
        .collect()
}

#[test]
fn lossless_transfer_delivers_every_frame_without_nacks() {
    let mut p = Pair::default_pair();
    for _ in 0..5 {
        p.push(10_000);
    }
    p.run_for(Duration::from_secs(2));
    let delivered = p.delivered();
    assert_eq!(delivered.len(), 5);
    for (_, data) in &delivered {
        assert_eq!(data, &frame_bytes(10_000, 0));
    }
    assert_eq!(p.acked(), vec![0, 1, 2, 3, 4]);
    assert!(p.nacks().is_empty());
    // 10,000 B at 500 B per segment: 20 segments per frame, each sent once.
    assert_eq!(p.tx.stats().segments_sent, 100);
    assert_eq!(p.tx.stats().segments_resent, 0);
}

#[test]
fn exactly_the_dropped_segments_are_nacked_and_resent() {
    let mut p = Pair::default_pair();
    let dropped = [3u16, 4, 11, 19];
    p.hook = Box::new(move |s, n| match s {
        Seen::Segment { index, .. } if n == 0 && dropped.contains(index) => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(10_000);
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.delivered().len(), 1);
    assert_eq!(p.delivered()[0].1, frame_bytes(10_000, 0));
    let nacked: Vec<u16> = p.nacks().into_iter().flat_map(|(_, m)| m).collect();
    assert_eq!(nacked, dropped.to_vec(), "NACKs named {nacked:?}");
    let mut sent = p.segments_sent(0);
    // First pass 0..20, then exactly the dropped ones again.
    let resent = sent.split_off(20);
    assert_eq!(sent, (0..20).collect::<Vec<_>>());
    assert_eq!(resent, dropped.to_vec());
    assert_eq!(p.tx.stats().segments_resent, 4);
    // The segment boundaries survive: the receiver checks offset and length of each resend.
    assert_eq!(p.rx.stats().segments_inconsistent, 0);
}

#[test]
fn a_corrupted_segment_is_caught_and_resent() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, n| match s {
        Seen::Segment { index: 7, .. } if n == 0 => Fate::Corrupt,
        _ => Fate::Deliver,
    });
    p.push(10_000);
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.rx.stats().datagrams_damaged, 1);
    assert_eq!(p.nacks(), vec![(0, vec![7])]);
    assert_eq!(p.delivered(), vec![(0, frame_bytes(10_000, 0))]);
}

#[test]
fn a_lost_tail_is_recovered_by_the_tail_timer() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, n| match s {
        Seen::Segment { index: 18 | 19, .. } if n == 0 => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(10_000);
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.delivered().len(), 1);
    assert_eq!(p.nacks(), vec![(0, vec![18, 19])]);
}

#[test]
fn a_frame_lost_whole_is_recovered_by_the_tail_probe() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, n| match s {
        Seen::Segment { frame: 0, .. } if n == 0 => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(2_000);
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.tx.stats().tail_probes, 1);
    assert_eq!(p.nacks(), vec![(0, vec![0, 1, 2])]);
    assert_eq!(p.delivered().len(), 1);
}

#[test]
fn a_lost_ack_is_repeated_after_a_probe() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, n| match s {
        Seen::Ack { .. } if n == 0 => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(2_000);
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.delivered().len(), 1, "delivered once, not twice");
    assert_eq!(p.acked(), vec![0]);
    assert_eq!(p.rx.stats().acks_sent, 2);
}

#[test]
fn on_a_lossy_link_the_ack_goes_twice_and_one_lost_copy_costs_nothing() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, n| match s {
        // Frame 0 loses a segment (the session has now seen loss) ...
        Seen::Segment { frame: 0, index: 1 } if n == 0 => Fate::Drop,
        // ... and frame 1 loses its first ACK.
        Seen::Ack { frame: 1, .. } if n == 0 => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(2_000);
    p.run_for(Duration::from_millis(200));
    let acks_before = p.rx.stats().acks_sent;
    let pushed = p.now;
    p.push(2_000);
    p.run_for(Duration::from_millis(200));
    assert_eq!(p.acked(), vec![0, 1]);
    assert_eq!(
        p.rx.stats().acks_sent - acks_before,
        2,
        "frame 1's ACK and its copy"
    );
    assert_eq!(p.tx.stats().tail_probes, 0, "the copy acknowledged frame 1");
    let latency = p
        .tx_events
        .iter()
        .find_map(|e| match e {
            SenderEvent::FrameAcked {
                frame: 1, latency, ..
            } => Some(*latency),
            _ => None,
        })
        .unwrap();
    assert!(
        latency <= Duration::from_millis(25),
        "acked in one round trip (20 ms), not after a probe: {latency:?} from {pushed:?}"
    );
}

#[test]
fn frames_past_their_deadline_are_reported_dropped_on_both_sides() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, _| match s {
        Seen::Segment { frame: 0, index: 5 } => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(10_000);
    p.run_for(Duration::from_secs(3));
    assert!(p.delivered().is_empty());
    assert!(p.tx_events.contains(&SenderEvent::FrameDropped {
        frame: 0,
        reason: DropReason::Deadline
    }));
    assert!(p.rx_events.iter().any(|e| matches!(
        e,
        ReceiverEvent::FrameDropped {
            frame: 0,
            reason: DropReason::Deadline,
            received: 19,
            segments: 20,
            ..
        }
    )));
    // NACKs repeated on their timer until the deadline, never more often than nack_interval.
    let nacks = p.nacks();
    assert!(nacks.len() >= 10, "only {} NACKs", nacks.len());
    assert!(nacks.iter().all(|(_, m)| m == &vec![5]));
    // Nothing of the frame stays in memory.
    assert_eq!(p.rx.frames_in_reassembly(), 0);
    assert_eq!(p.rx.bytes_in_use(), 0);
}

#[test]
fn a_later_frame_never_waits_behind_an_old_one() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, _| match s {
        Seen::Segment { frame: 0, index: 0 } => Fate::Drop,
        _ => Fate::Deliver,
    });
    p.push(5_000);
    p.push(5_000);
    p.run_for(Duration::from_millis(100));
    let delivered: Vec<u32> = p.delivered().into_iter().map(|(f, _)| f).collect();
    assert_eq!(delivered, vec![1]);
}

#[test]
fn the_size_from_an_ack_applies_from_the_next_frame_on() {
    let mut p = Pair::default_pair();
    p.push(10_000);
    // Frame 1 is cut before frame 0's ACK arrives: it keeps 500 B.
    p.push(10_000);
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.acked(), vec![0, 1]);
    // Seed rule: two clean frames, 500 -> 550 -> 605.
    assert_eq!(p.tx.segment_size(), 605);
    assert_eq!(p.segments_sent(1).len(), 20);
    let id = p.push(10_000);
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.segments_sent(id).len(), 10_000usize.div_ceil(605));
}

/// A NACK carries the receiver's size advice: the sender takes a smaller size from it (on a
/// link where no frame completes, NACKs are the only feedback), never a larger one (growth
/// waits for a frame ACK), nothing from a NACK of an older frame than the one that set the
/// size, and nothing from a size of 0 (the seed's rule advises on ACKs only).
#[test]
fn a_nack_brings_the_segment_size_down_but_never_up() {
    let rx = addr(RX);
    let mut cfg = SenderConfig::new(1, rx);
    cfg.initial_segment_size = 1000;
    let mut tx = Sender::new(cfg);
    for _ in 0..4 {
        tx.push_frame(Instant::ZERO, vec![7; 3000]).unwrap();
    }
    let nack = |frame: u32, size: u16, parity: u8| {
        encode(Message::Nack(wire::Nack {
            session: 1,
            frame,
            next_segment_size: size,
            next_parity: parity,
            missing: vec![0],
        }))
    };
    let now = Instant::from_millis(50);
    tx.handle_datagram(now, rx, &nack(1, 0, 0));
    assert_eq!(tx.segment_size(), 1000, "0 is no advice");
    tx.handle_datagram(now, rx, &nack(1, 1400, 2));
    assert_eq!((tx.segment_size(), tx.parity()), (1000, 0), "never up");
    tx.handle_datagram(now, rx, &nack(2, 300, 3));
    assert_eq!(
        (tx.segment_size(), tx.parity()),
        (300, 3),
        "down, with its parity"
    );
    tx.handle_datagram(now, rx, &nack(1, 200, 1));
    assert_eq!(tx.segment_size(), 300, "an older frame's NACK is stale");
    // The next frame is cut at the new size.
    let id = tx.push_frame(now, vec![8; 900]).unwrap();
    let mut buf = Vec::new();
    let mut cut = 0;
    for t in 50..2_000 {
        let now = Instant::from_millis(t);
        tx.handle_timeout(now);
        while tx.poll_transmit(now, &mut buf).is_some() {
            if let Ok(Message::Segment(seg)) = wire::decode(&buf) {
                if seg.frame == id {
                    cut = cut.max(seg.count);
                }
            }
        }
    }
    assert_eq!(usize::from(cut), 900usize.div_ceil(300));
}

/// The receiver's NACK carries the model policy's plan; under the seed's rule (the patent's
/// baseline, which advises on frame ACKs only) it carries 0, no advice.
#[test]
fn a_nack_carries_the_model_policys_size_and_not_the_seed_rules() {
    let nacked_size = |kind: PolicyKind| {
        let mut rx = ReceiverConfig::default();
        rx.policy.kind = kind;
        let mut p = Pair::new(SenderConfig::new(1, addr(RX)), rx);
        // The second segment's first copy is lost.
        p.hook = Box::new(|s, n| match s {
            Seen::Segment { index: 1, .. } if n == 0 => Fate::Drop,
            _ => Fate::Deliver,
        });
        p.push(3_000);
        p.run_for(Duration::from_secs(1));
        p.nacked_sizes()
    };
    let model = nacked_size(PolicyKind::Model);
    assert!(
        !model.is_empty() && model.iter().all(|&s| s > 0),
        "{model:?}"
    );
    let seed = nacked_size(PolicyKind::Seed);
    assert!(!seed.is_empty() && seed.iter().all(|&s| s == 0), "{seed:?}");
}

#[test]
fn the_seed_rule_shrinks_under_errors_and_grows_back() {
    let mut p = Pair::default_pair();
    p.hook = Box::new(|s, n| match s {
        Seen::Segment { frame, index: 0 } if (0..10).contains(frame) && n == 0 => Fate::Drop,
        _ => Fate::Deliver,
    });
    for _ in 0..10 {
        p.push(10_000);
        p.run_for(Duration::from_millis(200));
    }
    let shrunk = p.tx.segment_size();
    assert!(shrunk < 250, "size {shrunk} after ten lossy frames");
    for _ in 0..10 {
        p.push(10_000);
        p.run_for(Duration::from_millis(200));
    }
    assert!(p.tx.segment_size() > shrunk * 2);
}

#[test]
fn pacing_spaces_segments_at_the_configured_rate() {
    let mut cfg = SenderConfig::new(1, addr(RX));
    cfg.pacing_rate = Some(1_000_000);
    cfg.pacing_burst = 0;
    let mut tx = Sender::new(cfg);
    tx.push_frame(Instant::ZERO, vec![1; 10_000]).unwrap();
    let mut buf = Vec::new();
    let mut now = Instant::ZERO;
    let mut times = Vec::new();
    while times.len() < 20 {
        if tx.poll_transmit(now, &mut buf).is_some() {
            times.push(now);
        } else {
            now = tx.poll_timeout().unwrap();
        }
    }
    // 500 B + 30 B header + 28 B UDP/IP at 1 MB/s: 558 us apart.
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_micros(558));
    }
}

#[test]
fn the_sender_gives_up_the_oldest_frame_at_its_in_flight_limit() {
    let mut cfg = SenderConfig::new(1, addr(RX));
    cfg.max_frames_in_flight = 2;
    let mut tx = Sender::new(cfg);
    for _ in 0..3 {
        tx.push_frame(Instant::ZERO, vec![1; 1000]).unwrap();
    }
    assert_eq!(
        tx.poll_event(),
        Some(SenderEvent::FrameDropped {
            frame: 0,
            reason: DropReason::Evicted
        })
    );
    assert_eq!(tx.frames_in_flight(), 2);
    assert_eq!(tx.push_frame(Instant::ZERO, vec![]), Err(PushError::Empty));
}

/// Encodes one segment of a frame cut at `size`.
fn segment(session: u32, frame: u32, index: u16, len: usize, size: usize) -> Vec<u8> {
    let data = frame_bytes(len, 0);
    let count = len.div_ceil(size) as u16;
    let offset = usize::from(index) * size;
    let end = (offset + size).min(len);
    let mut buf = Vec::new();
    wire::Segment {
        session,
        frame,
        index,
        count,
        offset: offset as u32,
        frame_len: len as u32,
        payload: &data[offset..end],
        repair: false,
    }
    .encode(&mut buf);
    buf
}

/// Under the model policy, while no frame of the session has been delivered, a frame whose
/// first crossing ended with most segments missing moves the size for the next frames at once
/// (a later frame's segment ends the crossing), while the frame itself is still in repair.
/// One that lost a few waits until it is finished, and so does every frame once one was
/// delivered, as the seed's rule does for every frame.
#[test]
fn crossings_that_lost_most_segments_move_the_size_before_their_frames_are_finished() {
    // `whole` frames that arrive whole, then five frames of ten 500 B segments of which the
    // first `arrived` come, then the first segment of one more (which ends the crossing
    // before it): the size asked for after each.
    let sizes = |kind: PolicyKind, whole: u32, arrived: u16| {
        let mut cfg = ReceiverConfig::default();
        cfg.policy.kind = kind;
        let mut rx = Receiver::new(cfg);
        let from = addr(TX);
        let mut now = Instant::ZERO;
        let mut sizes = Vec::new();
        for frame in 0..whole + 6 {
            let arrived = match frame {
                f if f < whole => 10,
                f if f < whole + 5 => arrived,
                _ => 1,
            };
            for index in 0..arrived {
                rx.handle_datagram(now, from, &segment(7, frame, index, 5_000, 500));
                now += Duration::from_millis(1);
            }
            sizes.push(rx.segment_size(7).expect("the session"));
            now += Duration::from_millis(10);
        }
        assert_eq!(
            rx.frames_in_reassembly(),
            6,
            "only the whole frames are finished"
        );
        sizes
    };
    let model = sizes(PolicyKind::Model, 0, 2);
    assert!(
        model.last().is_some_and(|&s| s < 500),
        "8 of 10 lost at 500 B, frame after frame: {model:?}"
    );
    // Two lost of ten: the size waits for the frames.
    assert!(sizes(PolicyKind::Model, 0, 8).iter().all(|&s| s == 500));
    // Once a frame was delivered, the crossings that end short wait for their frames too.
    let after_one = sizes(PolicyKind::Model, 1, 2);
    assert!(
        after_one.iter().all(|&s| s == after_one[0]),
        "{after_one:?}"
    );
    // The seed's rule takes a frame when it is finished.
    assert!(sizes(PolicyKind::Seed, 0, 2).iter().all(|&s| s == 500));
}

#[test]
fn receiver_memory_is_bounded_by_its_caps() {
    let cfg = ReceiverConfig {
        max_sessions: 2,
        max_frames_per_session: 3,
        max_frame_len: 50_000,
        max_bytes: 100_000,
        ..ReceiverConfig::default()
    };
    let mut rx = Receiver::new(cfg);
    let now = Instant::ZERO;
    let from = addr(TX);
    // A third session is refused.
    for session in 0..3 {
        rx.handle_datagram(now, from, &segment(session, 0, 0, 10_000, 500));
    }
    assert_eq!(rx.session_count(), 2);
    assert_eq!(rx.stats().sessions_refused, 1);
    // A fourth frame in reassembly evicts the oldest, reported dropped.
    for frame in 1..4 {
        rx.handle_datagram(now, from, &segment(0, frame, 0, 10_000, 500));
    }
    assert_eq!(rx.frames_in_reassembly(), 4);
    let evicted = std::iter::from_fn(|| rx.poll_event()).any(|e| {
        matches!(
            e,
            ReceiverEvent::FrameDropped {
                session: 0,
                frame: 0,
                reason: DropReason::Evicted,
                ..
            }
        )
    });
    assert!(evicted);
    // A frame above max_frame_len is refused; the byte cap evicts to make room.
    rx.handle_datagram(now, from, &segment(1, 5, 0, 60_000, 1000));
    assert_eq!(rx.stats().frames_refused, 1);
    for frame in 10..13 {
        rx.handle_datagram(now, from, &segment(1, frame, 0, 40_000, 1000));
    }
    assert!(
        rx.bytes_in_use() <= 100_000,
        "{} bytes held",
        rx.bytes_in_use()
    );
}

#[test]
fn a_small_segment_reserves_what_arrived_not_the_whole_frame() {
    let mut rx = Receiver::new(ReceiverConfig::default());
    let now = Instant::ZERO;
    let from = addr(TX);
    // The first 1400 bytes of a 4 MB frame: the buffer holds those (and per-segment flags).
    rx.handle_datagram(now, from, &segment(1, 0, 0, 4_000_000, 1400));
    let held = rx.bytes_in_use();
    assert!(held < 100_000, "{held} bytes reserved for 1400 received");
    // A segment claiming an offset near the end reserves nothing: dropped and counted.
    rx.handle_datagram(now, from, &segment(1, 0, 2800, 4_000_000, 1400));
    assert_eq!(rx.bytes_in_use(), held);
    assert_eq!(rx.stats().segments_ahead, 1);
    // Arriving in order, the buffer grows with what arrives and the frame completes.
    let mut rx = Receiver::new(ReceiverConfig::default());
    let count = 200_000usize.div_ceil(1400) as u16;
    for index in 0..count {
        rx.handle_datagram(now, from, &segment(1, 0, index, 200_000, 1400));
        if index + 1 < count {
            let grown = usize::from(index + 1) * 1400;
            assert!(rx.bytes_in_use() < grown + 20_000, "grows with the data");
        }
    }
    assert_eq!(rx.stats().frames_delivered, 1);
    assert_eq!(rx.bytes_in_use(), 0);
    // Out of order within the allowance (a lost first segment) still completes.
    let mut rx = Receiver::new(ReceiverConfig::default());
    for index in (1..8).chain([0]) {
        rx.handle_datagram(now, from, &segment(1, 0, index, 10_000, 1400));
    }
    assert_eq!(rx.stats().frames_delivered, 1);
}

#[test]
fn inconsistent_and_malformed_datagrams_are_counted_and_dropped() {
    let mut rx = Receiver::new(ReceiverConfig::default());
    let now = Instant::ZERO;
    let from = addr(TX);
    rx.handle_datagram(now, from, b"not a livecam datagram");
    rx.handle_datagram(now, from, &[]);
    rx.handle_datagram(now, from, &segment(1, 0, 0, 10_000, 500));
    // Same frame, but cut at another size: boundaries disagree.
    rx.handle_datagram(now, from, &segment(1, 0, 1, 10_000, 400));
    let s = rx.stats();
    assert_eq!(s.datagrams_malformed, 2);
    assert_eq!(s.segments_inconsistent, 1);
    assert_eq!(s.segments_received, 1);
}

mod hostile_input {
    //! Whatever arrives from the network, well-formed or not, nothing panics and memory stays
    //! within the caps.
    use super::*;
    use proptest::prelude::*;

    fn arb_segment() -> impl Strategy<Value = Vec<u8>> {
        (
            0u32..4,
            0u32..6,
            any::<u16>(),
            1u16..40,
            any::<u32>(),
            0u32..20_000,
            proptest::collection::vec(any::<u8>(), 1..900),
        )
            .prop_map(|(session, frame, index, count, offset, extra, payload)| {
                let index = index % count;
                let offset = offset % 20_000;
                let mut buf = Vec::new();
                wire::Segment {
                    session,
                    frame,
                    index,
                    count,
                    offset,
                    frame_len: offset + payload.len() as u32 + extra,
                    repair: false,
                    payload: &payload,
                }
                .encode(&mut buf);
                buf
            })
    }

    fn arb_feedback() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (
                any::<u32>(),
                proptest::collection::btree_set(any::<u16>(), 1..50)
            )
                .prop_map(|(frame, missing)| {
                    let mut buf = Vec::new();
                    Message::Nack(wire::Nack {
                        session: 1,
                        frame: frame % 8,
                        next_segment_size: 0,
                        next_parity: 0,
                        missing: missing.into_iter().collect(),
                    })
                    .encode(&mut buf);
                    buf
                }),
            (any::<u32>(), any::<u16>()).prop_map(|(frame, next)| {
                let mut buf = Vec::new();
                Message::FrameAck(wire::FrameAck {
                    session: 1,
                    frame: frame % 8,
                    next_segment_size: next,
                    next_parity: 0,
                })
                .encode(&mut buf);
                buf
            }),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    /// A well-formed segment of a large frame of session 2, 3 or 4: any length up to the
    /// frame limit, any segment size, any index (so any offset).
    fn arb_hostile() -> impl Strategy<Value = Vec<u8>> {
        (
            2u32..5,
            0u32..64,
            1usize..4_000_000,
            100usize..1400,
            any::<u16>(),
        )
            .prop_map(|(session, frame, len, size, index)| {
                let count = len.div_ceil(size).min(usize::from(u16::MAX)) as u16;
                let len = len.min(usize::from(count) * size);
                let index = index % count;
                let offset = usize::from(index) * size;
                let payload = vec![0x5a; (len - offset).min(size)];
                let mut buf = Vec::new();
                wire::Segment {
                    session,
                    frame,
                    index,
                    count,
                    offset: offset as u32,
                    frame_len: len as u32,
                    payload: &payload,
                    repair: false,
                }
                .encode(&mut buf);
                buf
            })
    }

    proptest! {
        #[test]
        fn one_session_never_starves_another(
            hostile in proptest::collection::vec(arb_hostile(), 1..300),
            per_frame in 1usize..20,
        ) {
            // Session 1 streams 10 KB frames (a tenth of an even share of the budget) while
            // three others throw segments of huge frames at the receiver.
            let cfg = ReceiverConfig {
                max_bytes: 400_000,
                ..ReceiverConfig::default()
            };
            let mut rx = Receiver::new(cfg);
            let mut now = Instant::ZERO;
            let mut buf = Vec::new();
            let mut hostile = hostile.iter().cycle();
            let mut delivered = 0;
            let frames = 30u32;
            for frame in 0..frames {
                for index in 0..8u16 {
                    for _ in 0..per_frame {
                        if let Some(h) = hostile.next() {
                            rx.handle_datagram(now, addr(RX), h);
                        }
                    }
                    now += Duration::from_micros(200);
                    rx.handle_datagram(now, addr(TX), &segment(1, frame, index, 10_000, 1400));
                    rx.handle_timeout(now);
                    while rx.poll_transmit(now, &mut buf).is_some() {}
                    prop_assert!(rx.bytes_in_use() <= 400_000);
                }
                while let Some(ev) = rx.poll_event() {
                    match ev {
                        ReceiverEvent::FrameDelivered { session: 1, .. } => delivered += 1,
                        ReceiverEvent::FrameDropped { session: 1, frame, reason, .. } => {
                            prop_assert!(false, "session 1 lost frame {frame}: {reason:?}");
                        }
                        _ => {}
                    }
                }
            }
            prop_assert_eq!(delivered, frames);
        }

        #[test]
        fn the_receiver_survives_any_segments(
            segments in proptest::collection::vec(arb_segment(), 1..60),
            steps in proptest::collection::vec(0u64..400_000, 1..60),
        ) {
            let cfg = ReceiverConfig {
                max_frames_per_session: 4,
                max_bytes: 60_000,
                max_sessions: 3,
                ..ReceiverConfig::default()
            };
            let caps = (cfg.max_sessions, cfg.max_bytes);
            let mut rx = Receiver::new(cfg);
            let mut now = Instant::ZERO;
            let mut buf = Vec::new();
            for (seg, step) in segments.iter().zip(steps.iter().cycle()) {
                now += Duration::from_micros(*step);
                rx.handle_datagram(now, addr(TX), seg);
                rx.handle_timeout(now);
                while rx.poll_transmit(now, &mut buf).is_some() {}
                while rx.poll_event().is_some() {}
                prop_assert!(rx.session_count() <= caps.0);
                prop_assert!(rx.bytes_in_use() <= caps.1);
            }
            // Every timer eventually fires and the receiver forgets everything.
            now += Duration::from_secs(120);
            while let Some(t) = rx.poll_timeout() {
                prop_assert!(t <= now, "a timer beyond the idle horizon: {t}");
                rx.handle_timeout(now);
            }
            prop_assert_eq!(rx.frames_in_reassembly(), 0);
            prop_assert_eq!(rx.bytes_in_use(), 0);
        }

        #[test]
        fn the_sender_survives_any_feedback_and_never_sends_more_than_asked(
            feedback in proptest::collection::vec(arb_feedback(), 1..80),
        ) {
            let mut tx = Sender::new(SenderConfig::new(1, addr(RX)));
            let mut buf = Vec::new();
            let now = Instant::ZERO;
            for _ in 0..4 {
                tx.push_frame(now, vec![7; 3000]).unwrap();
            }
            while tx.poll_transmit(now, &mut buf).is_some() {}
            for fb in &feedback {
                let before = tx.stats().segments_sent;
                let named = match wire::decode(fb) {
                    Ok(Message::Nack(n)) => n.missing.len() as u64,
                    _ => 0,
                };
                tx.handle_datagram(now, addr(RX), fb);
                while tx.poll_transmit(now, &mut buf).is_some() {}
                // A NACK never makes the sender send more segments than it names.
                prop_assert!(tx.stats().segments_sent - before <= named);
                let size = tx.segment_size();
                prop_assert!((1..=wire::MAX_SEGMENT_PAYLOAD).contains(&size));
                if tx.frames_in_flight() < 4 {
                    // Pushing with whatever size an ACK set must work or be refused cleanly.
                    let _ = tx.push_frame(now, vec![1; 70_000]);
                    while tx.poll_transmit(now, &mut buf).is_some() {}
                }
            }
        }
    }
}

#[test]
fn a_restarted_sender_with_a_new_first_frame_is_not_taken_for_a_repeat() {
    let mut p = Pair::default_pair();
    p.push(2_000);
    p.run_for(Duration::from_millis(200));
    assert_eq!(p.delivered().len(), 1);
    // The camera reboots under the same session id; its frame ids start elsewhere.
    p.tx = Sender::new(SenderConfig {
        first_frame: 1_000,
        ..SenderConfig::new(1, addr(RX))
    });
    p.push(2_000);
    p.run_for(Duration::from_millis(200));
    let frames: Vec<u32> = p.delivered().into_iter().map(|(f, _)| f).collect();
    assert_eq!(frames, vec![0, 1_000]);
}

#[test]
fn per_segment_bookkeeping_counts_against_the_byte_cap() {
    let mut rx = Receiver::new(ReceiverConfig {
        max_bytes: 4 << 20,
        ..ReceiverConfig::default()
    });
    // Frames of 65,535 one-byte segments: tiny datagrams, big bookkeeping.
    for frame in 0..200 {
        for session in 0..4 {
            rx.handle_datagram(
                Instant::ZERO,
                addr(TX),
                &segment(session, frame, 0, 65_535, 1),
            );
        }
    }
    assert!(rx.bytes_in_use() <= 4 << 20, "{} bytes", rx.bytes_in_use());
    assert!(rx.frames_in_reassembly() <= (4 << 20) / (65_535 * 17));
}

#[test]
fn deliveries_made_on_the_budget_by_another_sender_count_as_delivered() {
    // The backfill sends on the live sender's budget; what it delivers must raise the rate
    // control's delivery rate (its target is capped at a multiple of it), or a backlog could
    // never drain faster than the live stream runs.
    let mut cfg = SenderConfig::new(1, addr(RX));
    cfg.rate_control = Some(RateConfig::default());
    let mut tx = Sender::new(cfg);
    let rate = |tx: &Sender| tx.rate_control().and_then(|rc| rc.delivery_rate());
    assert_eq!(rate(&tx), None);
    for i in 0..5 {
        tx.note_delivered(Instant::from_millis(100 * i), 10_000, None);
    }
    let r = rate(&tx).expect("a rate once two are in");
    assert!((r - 100_000.0).abs() < 1.0, "{r}");
    // Their sure round trips are the path's too: a sender whose live stream is idle, its
    // target at the floor after a silence, climbs again on what the backfill shows (no
    // queue), where deliveries without samples leave it where it is.
    let floor = |samples: bool| {
        let mut cfg = SenderConfig::new(1, addr(RX));
        cfg.rate_control = Some(RateConfig {
            initial_rate: 8_000.0,
            ..RateConfig::default()
        });
        let mut tx = Sender::new(cfg);
        for i in 0..10 {
            let rtt = samples.then_some(Duration::from_millis(50));
            tx.note_delivered(Instant::from_millis(600 * i), 10_000, rtt);
        }
        tx.rate_control().map(RateController::target).unwrap()
    };
    assert!(floor(true) > 16_000.0, "{}", floor(true));
    assert_eq!(floor(false), 8_000.0);
    // Without rate control it is a no-op.
    let mut plain = Sender::new(SenderConfig::new(1, addr(RX)));
    plain.note_delivered(Instant::ZERO, 10_000, None);
    assert!(plain.rate_control().is_none());
}

/// A sender at a low rate paces a frame's tail out long after its head, and the receiver's
/// stall timer may ask for the tail before it could have arrived. That NACK must not cost the
/// frame its round-trip sample (a camera at its floor would otherwise have every frame asked
/// for, no sample and no way up); a NACK that comes once the tail could have arrived does.
#[test]
fn a_nack_for_a_tail_still_in_flight_leaves_the_round_trip_sample() {
    // Runs the sender from `from` ms until it has sent `n` datagrams: when the last left.
    let send_until = |tx: &mut Sender, from: u64, n: usize| {
        let mut sent = 0;
        for t in from..from + 1_000 {
            sent += tick(tx, Instant::from_millis(t));
            if sent >= n {
                return t;
            }
        }
        panic!("{sent} of {n} datagrams sent");
    };
    // The increases the rate control makes when frame 1's NACK comes `nack_after` ms after
    // its tail left (the minimum round trip is 20 ms).
    let increases = |nack_after: u64| {
        let mut cfg = SenderConfig::new(1, addr(RX));
        cfg.initial_segment_size = 1000;
        cfg.rate_control = Some(RateConfig {
            initial_rate: 10_000.0,
            ..RateConfig::default()
        });
        let mut tx = Sender::new(cfg);
        let rx = addr(RX);
        // Frame 0, one segment, a clean 20 ms round trip.
        tx.push_frame(Instant::ZERO, vec![1; 500]).unwrap();
        let sent = send_until(&mut tx, 0, 1);
        tx.handle_datagram(Instant::from_millis(sent + 20), rx, &ack_of(0));
        // Frame 1, two segments paced about 100 ms apart.
        let start = sent + 30;
        tx.push_frame(Instant::from_millis(start), vec![2; 1500])
            .unwrap();
        let tail = send_until(&mut tx, start, 2);
        let before = tx.rate_control().unwrap().stats().increases;
        let nack = nack_of(1, vec![1]);
        tx.handle_datagram(Instant::from_millis(tail + nack_after), rx, &nack);
        // The ACK after the minimum round trip plus 2 ms: no queue.
        tx.handle_datagram(Instant::from_millis(tail + 22), rx, &ack_of(1));
        tx.rate_control().unwrap().stats().increases - before
    };
    assert_eq!(
        increases(2),
        1,
        "asked before the tail could arrive: a sample"
    );
    assert_eq!(increases(21), 0, "asked once it could have: no sample");
}

/// A frame's first NACK that comes long after its data left shows a queue (the head the
/// receiver got waited in it); while that queue is long, a NACK for a tail whose last copy
/// left within the round trip plus the queue brings no further copy (it is in the queue, and
/// one more would only wait behind it), and once the copy had time to arrive, it does. A
/// first NACK that shows no long queue is answered at once, as on any lossy link.
#[test]
fn a_nack_for_a_tail_that_may_still_be_in_a_long_queue_brings_no_copy() {
    let rx = addr(RX);
    // Runs the sender from `from` ms for `ms` ms: the instants of frame 1's tail copies.
    let run = |tx: &mut Sender, from: u64, ms: u64| {
        let mut buf = Vec::new();
        let mut copies = Vec::new();
        for t in from..from + ms {
            let now = Instant::from_millis(t);
            tx.handle_timeout(now);
            while tx.poll_transmit(now, &mut buf).is_some() {
                if let Ok(Message::Segment(s)) = wire::decode(&buf) {
                    if s.frame == 1 && s.index == 1 {
                        copies.push(t);
                    }
                }
            }
        }
        copies
    };
    // Frame 1's tail copies up to 1.1 s, when its first NACK (naming the tail) comes
    // `first_nack` ms after it was pushed at 100 ms and the receiver repeats it every 50 ms.
    let tail_copies = |first_nack: u64| {
        let mut cfg = SenderConfig::new(1, rx);
        cfg.initial_segment_size = 1000;
        cfg.rate_control = Some(RateConfig::default());
        let mut tx = Sender::new(cfg);
        // Frame 0, a clean 20 ms round trip.
        tx.push_frame(Instant::ZERO, vec![1; 500]).unwrap();
        run(&mut tx, 0, 5);
        tx.handle_datagram(Instant::from_millis(20), rx, &ack_of(0));
        // Frame 1: two segments, both leave at 100 ms; nothing comes back until its NACK.
        tx.push_frame(Instant::from_millis(100), vec![2; 1500])
            .unwrap();
        let nack = nack_of(1, vec![1]);
        let mut copies = run(&mut tx, 100, first_nack);
        let mut t = 100 + first_nack;
        while t < 1_100 {
            tx.handle_datagram(Instant::from_millis(t), rx, &nack);
            copies.extend(run(&mut tx, t, 50));
            t += 50;
        }
        copies
    };
    // The head waited at least 500 - 20 - 100 ms in a queue: the copies sent before the
    // NACK (the first crossing and the probes) are given that long; the NACKs within it bring
    // none, and the tail is sent again once its last copy could have arrived.
    let queued = tail_copies(500);
    let first_nack_at = 600;
    let answered: Vec<_> = queued.iter().filter(|&&t| t >= first_nack_at).collect();
    let last_before = queued
        .iter()
        .filter(|&&t| t < first_nack_at)
        .max()
        .copied()
        .unwrap();
    assert!(
        answered
            .first()
            .is_some_and(|&&t| t >= last_before + 20 + 380),
        "copies {queued:?}: one answered before the queue could drain"
    );
    assert!(
        answered.len() <= 2,
        "copies {queued:?}: the NACKs every 50 ms each brought a copy"
    );
    // A first NACK 60 ms after the frame left shows no long queue: answered at once.
    let prompt = tail_copies(60);
    assert!(prompt.contains(&160), "copies {prompt:?}");
}

/// Under rate control a frame's unheard bytes hold the window shut. A burst that takes two
/// frames whole and their first tail probes used to stall every later frame until feedback
/// came (NACK-only lossy soak case 0: 650 ms). On a link that has lost segments with no queue
/// in sight, the tail probe that fires now takes its frame's bytes for lost, and the next
/// frame starts before anything is heard of the lost ones; on a link that has lost nothing the
/// silence may be a queue, and the next frame waits for feedback as before.
#[test]
fn a_fired_tail_probe_frees_the_window_on_a_lossy_link_and_not_on_a_clean_one() {
    // Where, in the order datagrams left, frame 5's first segment went, and the first
    // feedback (NACK or ACK) on frame 3.
    let order = |lossy: bool| {
        let mut cfg = SenderConfig::new(1, addr(RX));
        cfg.initial_segment_size = 1000;
        // A window of 50 KB/s x (20 ms + 40 ms) = 3 KB: one 4 KB frame unheard shuts it.
        cfg.rate_control = Some(RateConfig {
            initial_rate: 50_000.0,
            max_rate: 50_000.0,
            ..RateConfig::default()
        });
        let rx = ReceiverConfig {
            policy: PolicyConfig {
                kind: PolicyKind::Fixed(1000),
                ..PolicyConfig::default()
            },
            ..ReceiverConfig::default()
        };
        let mut p = Pair::new(cfg, rx);
        p.hook = Box::new(move |s, n| match s {
            // Frame 1 loses a segment on a quiet link (frame 0 measured the round trip).
            Seen::Segment { frame: 1, index: 1 } if lossy && n == 0 => Fate::Drop,
            // Frames 3 and 4 go whole, and so do their first tail probes.
            Seen::Segment { frame: 3 | 4, .. } if n < 2 => Fate::Drop,
            _ => Fate::Deliver,
        });
        for _ in 0..6 {
            p.push(4000);
            p.run_for(Duration::from_millis(100));
        }
        p.run_for(Duration::from_secs(2));
        assert_eq!(p.acked().len(), 6, "lossy {lossy}: every frame arrives");
        let first5 = p
            .log
            .iter()
            .position(|s| *s == Seen::Segment { frame: 5, index: 0 });
        let heard3 = p
            .log
            .iter()
            .position(|s| matches!(s, Seen::Nack { frame: 3, .. } | Seen::Ack { frame: 3, .. }));
        (first5.unwrap(), heard3.unwrap())
    };
    let (first5, heard3) = order(true);
    assert!(
        first5 < heard3,
        "lossy link: frame 5 left at {first5}, after feedback on frame 3 at {heard3}"
    );
    let (first5, heard3) = order(false);
    assert!(
        first5 > heard3,
        "clean link: frame 5 left at {first5}, before feedback on frame 3 at {heard3}"
    );
}

/// The missing indices of every NACK the receiver sends while time runs to `until` in 1 ms
/// steps (frame ACKs are taken out and dropped).
fn nacks_until(rx: &mut Receiver, from: Instant, until: Instant) -> Vec<(u32, Vec<u16>)> {
    let mut nacks = Vec::new();
    let mut now = from;
    while now <= until {
        if rx.poll_timeout().is_some_and(|t| t <= now) {
            rx.handle_timeout(now);
        }
        let mut buf = Vec::new();
        while rx.poll_transmit(now, &mut buf).is_some() {
            if let Seen::Nack { frame, missing, .. } = seen(&buf) {
                nacks.push((frame, missing));
            }
            buf.clear();
        }
        now += Duration::from_millis(1);
    }
    nacks
}

#[test]
fn segments_on_a_slower_bonded_path_are_awaited_and_only_the_lost_one_is_named() {
    let (fast, slow) = (addr("10.0.0.2:5000"), addr("10.0.1.2:5000"));
    let ms = |n: u64| Instant::ZERO + Duration::from_millis(n);
    // Frame 1 of 8 segments: the even ones by the fast path at 0-3 ms, the odd ones by the
    // slow path 30 ms later, where segment 5 is lost. With `bonded`, frame 0 came by both
    // paths first, so the receiver knows the session has two.
    let run = |bonded: bool| {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let mut now = ms(0);
        if bonded {
            for index in 0..8u16 {
                let by = if index % 2 == 0 { fast } else { slow };
                rx.handle_datagram(now, by, &segment(7, 0, index, 8000, 1000));
            }
            now = ms(10);
        }
        let t0 = now;
        for (k, index) in [0u16, 2, 4, 6].into_iter().enumerate() {
            rx.handle_datagram(
                t0 + Duration::from_millis(k as u64),
                fast,
                &segment(7, 1, index, 8000, 1000),
            );
        }
        let before = nacks_until(&mut rx, t0, t0 + Duration::from_millis(29));
        for (k, index) in [1u16, 3, 7].into_iter().enumerate() {
            let at = t0 + Duration::from_millis(30 + k as u64);
            rx.handle_datagram(at, slow, &segment(7, 1, index, 8000, 1000));
        }
        let after = nacks_until(
            &mut rx,
            t0 + Duration::from_millis(30),
            t0 + Duration::from_millis(45),
        );
        (before, after)
    };
    let (before, after) = run(true);
    assert_eq!(
        before,
        vec![],
        "nothing is named while the slow path may still bring it"
    );
    assert_eq!(
        after,
        vec![(1, vec![5])],
        "once both paths are past it, 5 is lost"
    );
    // One path (a session that is not bonded): a hole is a hole, named at once.
    let (before, _) = run(false);
    let named: Vec<u16> = before.iter().flat_map(|(_, m)| m.clone()).collect();
    assert!(
        named.contains(&1) && named.contains(&3),
        "one path: the holes are named before the slow segments come ({before:?})"
    );
}

#[test]
fn a_bonded_frames_lost_tail_is_named_once_every_path_marked_it() {
    let (fast, slow) = (addr("10.0.0.2:5000"), addr("10.0.1.2:5000"));
    let ms = |n: u64| Instant::ZERO + Duration::from_millis(n);
    let mark = |frame: u32| {
        encode(Message::PathMark(wire::PathMark {
            session: 7,
            frame,
            passed: 6,
        }))
    };
    // Frame 0 of 6 segments comes by both paths, one segment every 5 ms; frame 1's even
    // segments by the fast path at 40-50 ms, its odd ones by the slow one at 60-65 ms, and its
    // last (5, on the slow path) is lost: no later segment shows it missing. Returns when
    // each NACK went and what it named.
    let run = |marked: bool| {
        let mut rx = Receiver::new(ReceiverConfig::default());
        for index in 0..6u16 {
            let by = if index % 2 == 0 { fast } else { slow };
            let at = ms(5 * u64::from(index));
            rx.handle_datagram(at, by, &segment(7, 0, index, 6000, 1000));
        }
        let mut arrivals = vec![
            (40, fast, segment(7, 1, 0, 6000, 1000)),
            (45, fast, segment(7, 1, 2, 6000, 1000)),
            (50, fast, segment(7, 1, 4, 6000, 1000)),
            (60, slow, segment(7, 1, 1, 6000, 1000)),
            (65, slow, segment(7, 1, 3, 6000, 1000)),
        ];
        if marked {
            arrivals.push((51, fast, mark(1)));
            arrivals.push((66, slow, mark(1)));
            arrivals.sort_by_key(|a| a.0);
        }
        let mut named = Vec::new();
        let mut arrivals = arrivals.into_iter().peekable();
        for t in 30..200u64 {
            let now = ms(t);
            while let Some((_, by, d)) = arrivals.next_if(|a| a.0 <= t) {
                rx.handle_datagram(now, by, &d);
            }
            if rx.poll_timeout().is_some_and(|at| at <= now) {
                rx.handle_timeout(now);
            }
            let mut buf = Vec::new();
            while rx.poll_transmit(now, &mut buf).is_some() {
                if let Seen::Nack { frame, missing, .. } = seen(&buf) {
                    named.push((t, frame, missing));
                }
                buf.clear();
            }
        }
        named
    };
    let marked = run(true);
    let (at, frame, missing) = marked.first().cloned().expect("a NACK");
    assert_eq!((frame, missing), (1, vec![5]), "{marked:?}");
    assert!(
        at <= 70,
        "named within a few ms of the slow path's mark: {marked:?}"
    );
    let unmarked = run(false);
    assert!(
        unmarked.first().is_none_or(|n| n.0 > at),
        "without marks the tail waits for the frame's silence: {unmarked:?} against {marked:?}"
    );
}

#[test]
fn a_segment_sent_again_for_the_second_time_is_told_apart() {
    // A bonded client copies such a segment by a second uplink; what it reads must be about
    // the datagram just handed out, and only then.
    let mut cfg = SenderConfig::new(1, addr(RX));
    cfg.initial_segment_size = 1000;
    let mut tx = Sender::new(cfg);
    tx.push_frame(Instant::ZERO, vec![1; 3000]).unwrap();
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    let mut poll = |tx: &mut Sender, t: u64, sent: &mut Vec<(u16, bool)>| {
        while tx
            .poll_transmit(Instant::from_millis(t), &mut buf)
            .is_some()
        {
            if let Ok(Message::Segment(s)) = wire::decode(&buf) {
                sent.push((s.index, tx.resent_again()));
            }
        }
        assert!(!tx.resent_again(), "still set after nothing was handed out");
    };
    poll(&mut tx, 0, &mut sent);
    let nack = nack_of(0, vec![1]);
    for t in [100, 600] {
        tx.handle_datagram(Instant::from_millis(t), addr(RX), &nack);
        poll(&mut tx, t, &mut sent);
    }
    let named: Vec<bool> = sent
        .iter()
        .skip(3)
        .filter(|&&(i, _)| i == 1)
        .map(|&(_, again)| again)
        .collect();
    assert_eq!(&sent[..3], &[(0, false), (1, false), (2, false)]);
    assert_eq!(named, [false, true]);
}

#[test]
fn resends_withdrawn_before_they_leave_do_not_go_and_a_nack_still_brings_them() {
    // A bonded uplink taken for silent has its segments queued again (`resend_lost`); when
    // it answers after all, the resends still waiting are withdrawn.
    let mut p = Pair::default_pair();
    let frame = p.push(10_000);
    let mut buf = Vec::new();
    let mut first = 0;
    while p.tx.poll_transmit(p.now, &mut buf).is_some() {
        first += 1;
    }
    assert_eq!(first, 20);
    assert_eq!(p.tx.resend_lost(frame, &[3, 4, 5]), 3);
    assert_eq!(p.tx.withdraw_resends(frame, &[4, 5, 9]), 2);
    // Nothing left to withdraw a second time, and nothing of an unknown frame.
    assert_eq!(p.tx.withdraw_resends(frame, &[4, 5]), 0);
    assert_eq!(p.tx.withdraw_resends(frame + 7, &[3]), 0);
    let mut sent = Vec::new();
    while p.tx.poll_transmit(p.now, &mut buf).is_some() {
        sent.push(seen(&buf));
    }
    assert_eq!(sent, vec![Seen::Segment { frame, index: 3 }]);
    // A withdrawn segment the receiver then names is sent again as any NACKed one.
    p.now += Duration::from_millis(5);
    p.tx.handle_datagram(p.now, addr(RX), &nack_of(frame, vec![5]));
    sent.clear();
    while p.tx.poll_transmit(p.now, &mut buf).is_some() {
        sent.push(seen(&buf));
    }
    assert_eq!(sent, vec![Seen::Segment { frame, index: 5 }]);
    assert_eq!(p.tx.stats().segments_resent, 2);
}

/// A frame lost whole and given up keeps its bytes counted in the window (they may still
/// sit in the bottleneck queue) until the queue ahead of them has drained and a round trip
/// passed, provided the receiver was heard after that and no queue was seen: then they are
/// lost, not in the network, and the next capture starts. On a path that answers nothing they
/// count for a whole deadline more, so a dead uplink is not fed the camera's load.
#[test]
fn an_abandoned_frame_stops_holding_the_window_once_the_path_answers_with_no_queue_after_it_drained(
) {
    // Datagrams that leave in [from, to) ms, the sender's timers run every millisecond;
    // `heard` (ms, datagram) is handed to the sender on the way.
    let run = |tx: &mut Sender, from: u64, to: u64, heard: &[(u64, Vec<u8>)]| {
        let mut sent = 0;
        for t in from..to {
            let now = Instant::from_millis(t);
            for (_, d) in heard.iter().filter(|(at, _)| *at == t) {
                tx.handle_datagram(now, addr(RX), d);
            }
            sent += tick(tx, now);
        }
        sent
    };
    // Frame 0 acknowledged (a 19 ms round trip); frame 1 sent at 20 ms and acknowledged 19
    // ms later, or 80 ms later (61 ms of queue); frame 2 sent at 20 ms too on a path that
    // loses it and its tail probes, given up about a second later; frame 3 captured at 1,850
    // ms, with or without a NACK (of frame 2) heard at 1,800 ms, after frame 2's bytes would
    // have drained. How many datagrams frame 3 sends by 1,950 ms.
    let frame_3_sent = |answered: bool, queue: bool| {
        let mut cfg = SenderConfig::new(1, addr(RX));
        cfg.initial_segment_size = 1000;
        cfg.rate_control = Some(RateConfig {
            initial_rate: 20_000.0,
            ..RateConfig::default()
        });
        let mut tx = Sender::new(cfg);
        tx.push_frame(Instant::ZERO, vec![1; 500]).unwrap();
        assert_eq!(run(&mut tx, 0, 20, &[(20 - 1, ack_of(0))]), 1);
        tx.push_frame(Instant::from_millis(20), vec![2; 500])
            .unwrap();
        tx.push_frame(Instant::from_millis(20), vec![3; 4000])
            .unwrap();
        let mut heard = vec![(if queue { 100 } else { 39 }, ack_of(1))];
        if answered {
            heard.push((1_800, nack_of(2, vec![0])));
        }
        run(&mut tx, 20, 1_850, &heard);
        tx.push_frame(Instant::from_millis(1_850), vec![4; 3000])
            .unwrap();
        run(&mut tx, 1_850, 1_950, &[])
    };
    assert!(frame_3_sent(true, false) > 0, "the window stayed shut");
    assert_eq!(frame_3_sent(false, false), 0, "a silent path was fed");
    assert_eq!(
        frame_3_sent(true, true),
        0,
        "bytes behind a queue were forgotten"
    );
}

/// The rate control's delivery rate must not count the time of a frame lost whole as time
/// the path spent delivering: on a link that loses frames whole in bursts it read far below
/// what the path carries, and GCC's bound on it took the target to its floor with no queue.
#[test]
fn a_frame_sent_after_one_lost_whole_counts_from_its_own_first_datagram() {
    // Frames of one 1000-byte segment at 0, 100 and 200 ms on a 20 ms path; frame 1 is lost
    // whole (or acknowledged, `lost` false). The delivery rate once frame 2 is acknowledged.
    let delivery_rate = |lost: bool| {
        let mut cfg = SenderConfig::new(1, addr(RX));
        cfg.initial_segment_size = 1000;
        cfg.rate_control = Some(RateConfig::default());
        let mut tx = Sender::new(cfg);
        for t in 0..300u64 {
            let now = Instant::from_millis(t);
            let frame = (t / 100) as u32;
            match t % 100 {
                0 => {
                    tx.push_frame(now, vec![frame as u8; 1000]).unwrap();
                }
                20 if frame != 1 || !lost => tx.handle_datagram(now, addr(RX), &ack_of(frame)),
                _ => {}
            }
            tick(&mut tx, now);
        }
        tx.rate_control()
            .and_then(RateController::delivery_rate)
            .unwrap()
    };
    // Each frame is about 1,070 bytes on the wire. With frame 1 acknowledged: two frames in
    // the 200 ms between the first ACK and the last. With frame 1 lost: frame 2 in the 20 ms
    // from its first datagram to its ACK, not one frame in 200 ms.
    let (acked, lost) = (delivery_rate(false), delivery_rate(true));
    assert!((9_000.0..12_000.0).contains(&acked), "{acked}");
    assert!((45_000.0..70_000.0).contains(&lost), "{lost}");
}

/// Under rate control a silence on a link that has lost nothing, with frames queued one
/// behind the other, is read as capacity: the oldest frame's bytes have not crossed in the
/// time they had, so the target falls to the rate they can have crossed at, past the half of
/// its start the silence's own cuts stop at. On a link that has lost segments the silence may
/// be a loss, and the cuts stop at half as before (and so they do for a frame alone in
/// flight: see `an_abandoned_frame_stops_holding_the_window_once_the_path_answers_...`).
#[test]
fn a_silence_on_a_clean_link_cuts_the_target_to_what_the_frame_can_have_crossed_at() {
    #[derive(PartialEq)]
    enum Link {
        Clean,
        /// A frame's head was lost and repaired before the silence.
        Lossy,
        /// The silent frame was overtaken: a newer one was acknowledged (it is lost).
        Overtaken,
    }
    let target_after_silence = |link: Link| {
        let rx = addr(RX);
        let mut cfg = SenderConfig::new(1, rx);
        cfg.initial_segment_size = 1000;
        cfg.rate_control = Some(RateConfig::default());
        let mut tx = Sender::new(cfg);
        // The sender's timers and datagrams over [from, to) ms.
        let send_all = |tx: &mut Sender, from: u64, to: u64| {
            for t in from..to {
                tick(tx, Instant::from_millis(t));
            }
        };
        // Frame 0: a clean 20 ms round trip.
        tx.push_frame(Instant::ZERO, vec![1; 500]).unwrap();
        send_all(&mut tx, 0, 5);
        tx.handle_datagram(Instant::from_millis(20), rx, &ack_of(0));
        if link == Link::Lossy {
            // Frame 1 loses its head: repaired, acknowledged with no queue in sight.
            tx.push_frame(Instant::from_millis(30), vec![2; 2000])
                .unwrap();
            send_all(&mut tx, 30, 40);
            tx.handle_datagram(Instant::from_millis(45), rx, &nack_of(1, vec![0]));
            send_all(&mut tx, 45, 50);
            tx.handle_datagram(Instant::from_millis(68), rx, &ack_of(1));
        }
        // Frames 2 and 3, 10 KB each, leave at 100 and 150 ms; nothing comes back for half
        // a second (but frame 3's ACK, when frame 2 was overtaken, and frame 4 after it).
        tx.push_frame(Instant::from_millis(100), vec![3; 10_000])
            .unwrap();
        send_all(&mut tx, 100, 150);
        tx.push_frame(Instant::from_millis(150), vec![4; 10_000])
            .unwrap();
        if link == Link::Overtaken {
            send_all(&mut tx, 150, 195);
            tx.handle_datagram(Instant::from_millis(195), rx, &ack_of(3));
            tx.push_frame(Instant::from_millis(200), vec![5; 10_000])
                .unwrap();
            send_all(&mut tx, 195, 600);
        } else {
            send_all(&mut tx, 150, 600);
        }
        let rc = tx.rate_control().unwrap();
        (rc.target(), rc.delivery_rate())
    };
    // 10 KB and its headers in at most 500 - 20 - 20 ms: no more than about 23 KB/s.
    let (clean, _) = target_after_silence(Link::Clean);
    assert!(clean < 30_000.0, "clean link: target {clean}");
    // Half of the 500 KB/s start, or what the two ACKs showed delivered if less, no lower.
    let (lossy, delivered) = target_after_silence(Link::Lossy);
    let floor = delivered.expect("two ACKs").min(250_000.0);
    assert!(
        lossy >= floor - 1.0,
        "lossy link: target {lossy}, floor {floor}"
    );
    assert!(lossy > 2.0 * clean, "lossy link: target {lossy}");
    // A frame known lost bounds nothing.
    let (overtaken, _) = target_after_silence(Link::Overtaken);
    assert!(overtaken > 2.0 * clean, "overtaken: target {overtaken}");
}

/// A rate-controlled sender that has sent 40 frames of two 1000-byte segments, one every
/// 50 ms, each acknowledged 35 ms after it was pushed, the last at 1985 ms; on the lossy link
/// frame 20 lost its head first (named by a NACK while no queue was seen): 19 clean frames
/// since, more than `recent_losses` remembers and fewer than a clean run.
fn sender_after_a_run(lossy: bool) -> Sender {
    let rx = addr(RX);
    let mut cfg = SenderConfig::new(1, rx);
    cfg.initial_segment_size = 1000;
    cfg.rate_control = Some(RateConfig::default());
    let mut tx = Sender::new(cfg);
    for i in 0..40u64 {
        let at = i * 50;
        let id = tx
            .push_frame(Instant::from_millis(at), vec![1; 2000])
            .unwrap();
        for t in at..at + 15 {
            tick(&mut tx, Instant::from_millis(t));
        }
        if lossy && i == 20 {
            tx.handle_datagram(Instant::from_millis(at + 15), rx, &nack_of(id, vec![0]));
            tick(&mut tx, Instant::from_millis(at + 15));
        }
        tx.handle_datagram(Instant::from_millis(at + 35), rx, &ack_of(id));
    }
    tx
}

/// On a link that has carried a long run of frames with nothing lost, a silence is a queue
/// (capacity fell): a frame of several segments has its tail probed once, since the receiver
/// names a lost tail itself once any segment of the frame arrives, and further copies would
/// only lengthen the queue. A link that lost a segment within the run, or a frame of one
/// segment (lost whole, the receiver knows nothing of it), has the tail probed again as the
/// probes back off; and so does a clean link once a newer frame's ACK shows the tail lost.
#[test]
fn on_a_clean_link_a_silent_frame_of_several_segments_has_its_tail_probed_once() {
    let probes = |lossy: bool, frame_len: usize, newer_acked: bool| {
        let rx = addr(RX);
        let mut tx = sender_after_a_run(lossy);
        let before = tx.stats().tail_probes;
        tx.push_frame(Instant::from_millis(2000), vec![2; frame_len])
            .unwrap();
        for t in 2000..2900 {
            if newer_acked && t == 2400 {
                let id = tx
                    .push_frame(Instant::from_millis(t), vec![3; 500])
                    .unwrap();
                tick(&mut tx, Instant::from_millis(t));
                tx.handle_datagram(Instant::from_millis(t), rx, &ack_of(id));
            }
            tick(&mut tx, Instant::from_millis(t));
        }
        tx.stats().tail_probes - before
    };
    assert_eq!(probes(false, 2000, false), 1, "clean link, two segments");
    // The newer ACK shows the frame lost, which also ends the clean run.
    let overtaken = probes(false, 2000, true);
    assert!(
        overtaken >= 2,
        "a newer frame acknowledged: {overtaken} probes"
    );
    let lossy = probes(true, 2000, false);
    assert!(lossy >= 2, "lossy link, two segments: {lossy} probes");
    let whole = probes(false, 1000, false);
    assert!(whole >= 2, "clean link, one segment: {whole} probes");
}

/// In a clean run a tail probed once already is sent again when a newer frame's ACK shows it
/// lost: the one-probe rule yields to that evidence. Here the run survives the overtaking (the
/// newer frame's NACK showed a queue, so the unacknowledged older frame does not end it), and
/// only the evidence sends the copy.
#[test]
fn in_a_clean_run_a_tail_a_newer_ack_shows_lost_is_sent_again_after_its_one_probe() {
    let rx = addr(RX);
    let mut tx = sender_after_a_run(false);
    let probes = tx.stats().tail_probes;
    tx.push_frame(Instant::from_millis(2000), vec![2; 2000])
        .unwrap();
    for t in 2000..2400 {
        tick(&mut tx, Instant::from_millis(t));
    }
    assert_eq!(
        tx.stats().tail_probes - probes,
        1,
        "one probe in the silence"
    );
    let newer = tx
        .push_frame(Instant::from_millis(2400), vec![3; 2000])
        .unwrap();
    for t in 2400..2600 {
        tick(&mut tx, Instant::from_millis(t));
    }
    // The newer frame's NACK comes 200 ms after it left: its head waited about 65 ms in a
    // queue, so the older frame left unacknowledged does not end the run; its ACK follows.
    tx.handle_datagram(Instant::from_millis(2600), rx, &nack_of(newer, vec![1]));
    tick(&mut tx, Instant::from_millis(2600));
    let probes = tx.stats().tail_probes;
    tx.handle_datagram(Instant::from_millis(2650), rx, &ack_of(newer));
    tick(&mut tx, Instant::from_millis(2650));
    assert_eq!(
        tx.stats().tail_probes - probes,
        1,
        "the older tail, shown lost by the newer ACK"
    );
    // The run went on: the copy went for the evidence, not for want of a run.
    assert!(
        tx.in_clean_run(),
        "the run survives a newer ACK behind a queue"
    );
}

/// Segments `frame`'s two-segment tail NACK at `at` ms sends again.
fn resent_on_tail_nack(tx: &mut Sender, frame: u32, at: u64) -> u64 {
    let before = tx.stats().segments_resent;
    tx.handle_datagram(Instant::from_millis(at), addr(RX), &nack_of(frame, vec![1]));
    tick(tx, Instant::from_millis(at));
    tx.stats().segments_resent - before
}

/// A frame's first NACK, set off by its head arriving from a queue, names its tail. In a clean
/// run the head's wait tells the rate the queue drains at, and the tail's probe, sent behind
/// the head and the tail, cannot have arrived before its place in the queue has passed: a
/// NACK before then brings no copy (the queue the NACK shows by time alone, less the
/// receiver's longest quiet time, is too short to hold it); the receiver's repeat after then
/// does.
#[test]
fn in_a_clean_run_a_nack_brings_no_copy_of_a_tail_before_its_place_in_the_queue_has_passed() {
    let mut tx = sender_after_a_run(false);
    let id = tx
        .push_frame(Instant::from_millis(2000), vec![2; 2000])
        .unwrap();
    // Both segments leave at once and the tail's probe a probe timeout later; the head
    // arrives 115 ms late (three segments drain in 345 ms), and the receiver asks for the
    // tail.
    let probes = tx.stats().tail_probes;
    for t in 2000..2150 {
        tick(&mut tx, Instant::from_millis(t));
    }
    assert_eq!(tx.stats().tail_probes - probes, 1);
    let resent = |tx: &mut Sender, at: u64| resent_on_tail_nack(tx, id, at);
    assert_eq!(resent(&mut tx, 2150), 0, "the first NACK");
    assert_eq!(
        resent(&mut tx, 2300),
        0,
        "a repeat while the probe may be queued"
    );
    assert_eq!(resent(&mut tx, 2450), 1, "the repeat after its place");
}

/// The drain rate counts the bytes of older frames in flight when the frame's head left,
/// though their ACKs came before the NACK: read without them it is low, and a copy's place
/// in the queue seems further off than it is (the copy then waits past its arrival).
#[test]
fn in_a_clean_run_the_drain_rate_counts_the_older_frames_ahead_of_the_head() {
    let rx = addr(RX);
    let mut tx = sender_after_a_run(false);
    let older = tx
        .push_frame(Instant::from_millis(2000), vec![2; 2000])
        .unwrap();
    let id = tx
        .push_frame(Instant::from_millis(2000), vec![3; 2000])
        .unwrap();
    // The older frame's two segments, then this one's, leave at once; the older one is
    // acknowledged at 2100 ms, and this one's head arrives 115 ms late: five segments (the
    // tail's probe included) drain by about 2230 ms at the rate of the three ahead of it.
    for t in 2000..2100 {
        tick(&mut tx, Instant::from_millis(t));
    }
    tx.handle_datagram(Instant::from_millis(2100), rx, &ack_of(older));
    for t in 2100..2150 {
        tick(&mut tx, Instant::from_millis(t));
    }
    let resent = |tx: &mut Sender, at: u64| resent_on_tail_nack(tx, id, at);
    assert_eq!(resent(&mut tx, 2150), 0, "the first NACK");
    assert_eq!(resent(&mut tx, 2300), 1, "a repeat after the place");
}
