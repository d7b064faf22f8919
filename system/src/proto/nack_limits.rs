//! The sender's NACK limits: a NACK never makes it send more than the bytes of the distinct,
//! already-sent segments it names of a frame in flight, and each segment is resent on NACK at
//! most once per `nack_resend_interval`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::wire::{self, Message};
use super::{Sender, SenderConfig};
use crate::machine::Endpoint;
use crate::time::Instant;

fn peer() -> SocketAddr {
    "10.0.0.2:6000".parse().unwrap()
}

fn nack(frame: u32, missing: Vec<u16>) -> Vec<u8> {
    let mut buf = Vec::new();
    Message::Nack(wire::Nack {
        session: 1,
        frame,
        next_segment_size: 0,
        next_parity: 0,
        missing,
    })
    .encode(&mut buf);
    buf
}

fn ack(frame: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    Message::FrameAck(wire::FrameAck {
        session: 1,
        frame,
        next_segment_size: 0,
        next_parity: 0,
    })
    .encode(&mut buf);
    buf
}

/// One transmission: `(frame, index, payload bytes)`.
fn transmit(tx: &mut Sender, now: Instant) -> Option<(u32, u16, usize)> {
    let mut buf = Vec::new();
    tx.poll_transmit(now, &mut buf)?;
    match wire::decode(&buf) {
        Ok(Message::Segment(s)) => Some((s.frame, s.index, s.payload.len())),
        other => panic!("the sender sent something else: {other:?}"),
    }
}

/// A sender with three frames of 2,500 B in flight, all segments (500 B) sent once.
fn sent_sender() -> Sender {
    let mut tx = Sender::new(SenderConfig::new(1, peer()));
    for _ in 0..3 {
        tx.push_frame(Instant::ZERO, vec![7; 2_500]).unwrap();
    }
    while transmit(&mut tx, Instant::ZERO).is_some() {}
    tx
}

#[test]
fn a_nack_resends_each_named_segment_once_and_ignores_the_rest() {
    let mut tx = sent_sender();
    let now = Instant::ZERO + Duration::from_millis(20);
    // Repeated indices do not even decode: counted as malformed, nothing sent.
    tx.handle_datagram(now, peer(), &nack(1, vec![1, 1, 4]));
    assert_eq!(transmit(&mut tx, now), None);
    assert_eq!(tx.stats().datagrams_malformed, 1);
    // 1 and 4 exist; 9 and 65535 are out of range. A second NACK naming 1 before it went out
    // does not queue it twice.
    tx.handle_datagram(now, peer(), &nack(1, vec![1, 4, 9, 65_535]));
    tx.handle_datagram(now, peer(), &nack(1, vec![1]));
    let mut sent = Vec::new();
    while let Some(t) = transmit(&mut tx, now) {
        sent.push(t);
    }
    assert_eq!(sent, vec![(1, 1, 500), (1, 4, 500)]);
    // A NACK for an unknown frame sends nothing.
    tx.handle_datagram(now, peer(), &nack(77, vec![0, 1]));
    assert_eq!(transmit(&mut tx, now), None);
    let s = tx.stats();
    assert_eq!(s.nack_indices_ignored, 3);
    assert_eq!(s.nacks_unknown_frame, 1);
    assert_eq!(s.segments_resent, 2);
}

#[test]
fn a_nack_for_segments_not_sent_yet_sends_nothing_extra() {
    let mut tx = Sender::new(SenderConfig::new(1, peer()));
    tx.push_frame(Instant::ZERO, vec![7; 2_500]).unwrap();
    // Two of five segments out; a NACK naming all five resends the two, the rest go once.
    let first: Vec<_> = (0..2)
        .filter_map(|_| transmit(&mut tx, Instant::ZERO))
        .collect();
    assert_eq!(first, vec![(0, 0, 500), (0, 1, 500)]);
    let now = Instant::ZERO + Duration::from_millis(20);
    tx.handle_datagram(now, peer(), &nack(0, vec![0, 1, 2, 3, 4]));
    let mut sent = Vec::new();
    while let Some(t) = transmit(&mut tx, now) {
        sent.push(t);
    }
    let order: Vec<u16> = sent.iter().map(|&(_, i, _)| i).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
    assert_eq!(tx.stats().segments_resent, 2);
    assert_eq!(tx.stats().nack_indices_ignored, 3);
}

#[test]
fn nack_resends_of_a_segment_are_rate_limited() {
    let mut tx = sent_sender();
    let interval = tx.nack_resend_interval();
    assert_eq!(interval, Duration::from_millis(10));
    let t0 = Instant::ZERO + Duration::from_millis(20);
    tx.handle_datagram(t0, peer(), &nack(0, vec![2]));
    assert_eq!(transmit(&mut tx, t0), Some((0, 2, 500)));
    // A storm of NACKs for the same segment within the interval resends nothing.
    for ms in 0..10 {
        let now = t0 + Duration::from_millis(ms);
        tx.handle_datagram(now, peer(), &nack(0, vec![2]));
        assert_eq!(transmit(&mut tx, now), None);
    }
    assert_eq!(tx.stats().nack_resends_limited, 10);
    // Once the interval is over, the receiver's repeat is honoured.
    let later = t0 + interval;
    tx.handle_datagram(later, peer(), &nack(0, vec![2]));
    assert_eq!(transmit(&mut tx, later), Some((0, 2, 500)));
    assert_eq!(tx.stats().segments_resent, 2);
}

#[derive(Debug, Clone)]
enum Op {
    /// NACK frame `frame` (ids 0..4 pushed, 4.. unknown) naming these indices.
    Nack { frame: u32, missing: Vec<u16> },
    /// Let time pass.
    Wait(u64),
    /// Send up to this many datagrams (fresh segments move forward).
    Send(u8),
    /// Acknowledge a frame, taking it out of flight.
    Ack(u32),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            0u32..6,
            prop_oneof![
                // What the wire carries: strictly increasing indices.
                4 => proptest::collection::btree_set(
                    prop_oneof![4 => 0u16..8, 1 => any::<u16>()],
                    1..24,
                )
                .prop_map(|set| set.into_iter().collect::<Vec<_>>()),
                // Anything: repeats and disorder, which do not decode.
                1 => proptest::collection::vec(0u16..8, 0..24),
            ],
        )
            .prop_map(|(frame, missing)| Op::Nack { frame, missing }),
        3 => (0u64..15).prop_map(Op::Wait),
        2 => (0u8..6).prop_map(Op::Send),
        1 => (0u32..6).prop_map(Op::Ack),
    ]
}

proptest! {
    #[test]
    fn nacks_never_resend_more_than_named_nor_faster_than_the_limit(
        sizes in proptest::collection::vec(1usize..3_000, 4),
        segment_size in 100usize..700,
        ops in proptest::collection::vec(arb_op(), 1..120),
    ) {
        let mut tx = Sender::new(SenderConfig {
            initial_segment_size: segment_size,
            // No tail probes in between: every resend here is NACK-driven.
            probe_timeout: Duration::from_secs(3600),
            frame_deadline: Duration::from_secs(3600),
            ..SenderConfig::new(1, peer())
        });
        let floor = tx.config().nack_resend_interval;
        let mut now = Instant::ZERO;
        for len in &sizes {
            tx.push_frame(now, vec![3; *len]).unwrap();
        }
        // What the model knows: segments sent once with their sizes, frames in flight, and
        // when each segment was last resent.
        let mut sent: BTreeMap<(u32, u16), usize> = BTreeMap::new();
        let mut in_flight: BTreeSet<u32> = (0..4).collect();
        let mut resent_at: BTreeMap<(u32, u16), Instant> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Wait(ms) => now += Duration::from_millis(ms),
                Op::Ack(frame) => {
                    tx.handle_datagram(now, peer(), &ack(frame));
                    in_flight.remove(&frame);
                }
                Op::Send(n) => {
                    for _ in 0..n {
                        let Some((frame, index, len)) = transmit(&mut tx, now) else { break };
                        prop_assert!(sent.insert((frame, index), len).is_none(), "an unasked resend");
                    }
                }
                Op::Nack { frame, missing } => {
                    // Bytes the NACK may cost: distinct, already sent segments of a frame in
                    // flight.
                    let named: BTreeSet<u16> = missing.iter().copied().collect();
                    let allowed: usize = if in_flight.contains(&frame) {
                        named.iter().filter_map(|&i| sent.get(&(frame, i))).sum()
                    } else {
                        0
                    };
                    tx.handle_datagram(now, peer(), &nack(frame, missing));
                    // Resends leave before fresh segments: take them, and at most one fresh.
                    let mut resent_bytes = 0;
                    while let Some((f, i, len)) = transmit(&mut tx, now) {
                        match sent.get(&(f, i)) {
                            None => {
                                sent.insert((f, i), len);
                                break;
                            }
                            Some(&first) => {
                                prop_assert_eq!(first, len, "a resend with other boundaries");
                                prop_assert!(f == frame && named.contains(&i), "resent {}/{} unnamed", f, i);
                                if let Some(&last) = resent_at.get(&(f, i)) {
                                    prop_assert!(now >= last + floor, "{}/{} resent twice within {:?}", f, i, floor);
                                }
                                resent_at.insert((f, i), now);
                                resent_bytes += len;
                            }
                        }
                    }
                    prop_assert!(resent_bytes <= allowed, "resent {} B for {} B named", resent_bytes, allowed);
                }
            }
        }
        // Every NACK either cost nothing or is accounted for in the sender's counters.
        let s = tx.stats();
        prop_assert!(s.segments_resent <= s.nacks_received * 24);
    }
}
