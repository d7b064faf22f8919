//! The forwarding decision, sans IO: one shared [`Link`] model per directed host pair, a fault
//! schedule, and the queue of datagrams or frames in flight, all driven by the `now` the caller
//! passes.
//!
//! The bridge (Ethernet frames between namespaces) and the relay (UDP datagrams on loopback)
//! are thin loops around a [`Forwarder`]: they hand it what arrives with [`Forwarder::offer`],
//! send what [`Forwarder::poll`] returns, and sleep until [`Forwarder::next_deadline`]. Given
//! the same offers at the same instants it makes the same decisions: every link's randomness
//! is seeded from the run's seed and the pair.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use livecam_system::link::{apply_bit_flips, Link, LinkConfig, LinkStats, LossCause, MAX_MTU};
use livecam_system::time::Instant;
use serde::Serialize;

use crate::frame;

/// What the forwarder carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// UDP payloads (the relay): the link model sees the datagram's size and cuts it into
    /// fragments by its own MTU; bit errors flip payload bits, or, with `checksums` on, lose
    /// the datagram, as in the simulators.
    Datagram,
    /// Ethernet frames holding one IPv4 packet each (the bridge): the hosts' kernels did the
    /// fragmenting, so each frame is one packet to the model (its MTU is set to the maximum).
    /// Bit errors are really applied to the frame; with `checksums` on the receiving kernel
    /// discards the damaged packet, with them off the bridge zeroes the UDP checksum so the
    /// damaged payload reaches the application.
    Packet,
}

/// A change of the links at a point in time.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Cut (`true`) or restore (`false`) the directed links.
    Partition {
        pairs: Vec<(usize, usize)>,
        on: bool,
    },
    /// Replace the directed links' models.
    SetLink {
        pairs: Vec<(usize, usize)>,
        config: LinkConfig,
    },
}

/// A datagram or frame leaving the forwarder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub from: usize,
    pub to: usize,
    pub bytes: Vec<u8>,
}

/// What the forwarder did, beyond the per-link [`LinkStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForwardStats {
    /// Offered for a pair of hosts.
    pub offered: u64,
    /// Handed out by `poll` (duplicates count twice).
    pub forwarded: u64,
    /// Delivered with bits flipped.
    pub corrupted: u64,
    /// Lost on a link (any cause).
    pub lost: u64,
    /// Not for a known pair of hosts (counted by the glue, which never offers them).
    pub unroutable: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: Instant,
    seq: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

/// Links between `hosts` hosts, a fault schedule and what is in flight.
#[derive(Debug)]
pub struct Forwarder {
    mode: Mode,
    hosts: usize,
    /// `from * hosts + to`; the diagonal is never used.
    links: Vec<Link>,
    /// The configured `checksums` of each link (the bridge's model always runs without them).
    checksums: Vec<bool>,
    schedule: Vec<(Instant, Action)>,
    next_action: usize,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    stats: ForwardStats,
}

impl Forwarder {
    /// `hosts` hosts, the link from `a` to `b` configured by `config(a, b)` (validate them
    /// first) and seeded by `seed(a, b)` ([`livecam_system::link::pair_seed`] of the hosts'
    /// names, as in the simulators), and `schedule` applied as time passes (any order; it is
    /// sorted, stable for equal times).
    pub fn new(
        mode: Mode,
        hosts: usize,
        config: impl Fn(usize, usize) -> LinkConfig,
        seed: impl Fn(usize, usize) -> u64,
        mut schedule: Vec<(Instant, Action)>,
    ) -> Self {
        let mut links = Vec::with_capacity(hosts * hosts);
        let mut checksums = Vec::with_capacity(hosts * hosts);
        for a in 0..hosts {
            for b in 0..hosts {
                let c = config(a, b);
                checksums.push(c.checksums);
                links.push(Link::new(model_config(mode, c), seed(a, b)));
            }
        }
        schedule.sort_by_key(|(at, _)| *at);
        Forwarder {
            mode,
            hosts,
            links,
            checksums,
            schedule,
            next_action: 0,
            pending: BinaryHeap::new(),
            seq: 0,
            stats: ForwardStats::default(),
        }
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// Offers `bytes` from host `from` to host `to` at `now`. Returns why it was lost, if it
    /// was; otherwise it is queued for [`poll`](Self::poll). Pairs out of range (or a host to
    /// itself) are counted as unroutable and dropped.
    pub fn offer(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    ) -> Option<LossCause> {
        self.apply_schedule(now);
        if from >= self.hosts || to >= self.hosts || from == to {
            self.stats.unroutable += 1;
            return None;
        }
        self.stats.offered += 1;
        let i = from * self.hosts + to;
        let len = match self.mode {
            Mode::Datagram => bytes.len(),
            Mode::Packet => frame::model_len(&bytes),
        };
        let t = self.links[i].transmit(now, len);
        if let Some(cause) = t.lost {
            self.stats.lost += 1;
            return Some(cause);
        }
        let copies = t.copies.len();
        let mut bytes = Some(bytes);
        for (n, copy) in t.copies.into_iter().enumerate() {
            let mut b = if n + 1 == copies {
                bytes.take().unwrap_or_default()
            } else {
                bytes.clone().unwrap_or_default()
            };
            if !copy.bit_flips.is_empty() {
                self.stats.corrupted += 1;
                match self.mode {
                    Mode::Datagram => apply_bit_flips(&mut b, &copy.bit_flips),
                    Mode::Packet => {
                        if let Some(tail) = b.get_mut(frame::FLIP_OFFSET..) {
                            apply_bit_flips(tail, &copy.bit_flips);
                        }
                        if !self.checksums[i] {
                            frame::clear_udp_checksum(&mut b);
                        }
                    }
                }
            }
            self.seq += 1;
            self.pending.push(Reverse(Pending {
                at: copy.at,
                seq: self.seq,
                from,
                to,
                bytes: b,
            }));
        }
        None
    }

    /// The next datagram or frame due at `now`, if any (earliest first, ties in offer order).
    pub fn poll(&mut self, now: Instant) -> Option<Out> {
        self.apply_schedule(now);
        if self.pending.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(p) = self.pending.pop()?;
            self.stats.forwarded += 1;
            return Some(Out {
                from: p.from,
                to: p.to,
                bytes: p.bytes,
            });
        }
        None
    }

    /// When something next happens: a delivery falls due or the schedule acts.
    pub fn next_deadline(&self) -> Option<Instant> {
        let delivery = self.pending.peek().map(|Reverse(p)| p.at);
        let action = self.schedule.get(self.next_action).map(|(at, _)| *at);
        match (delivery, action) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Datagrams or frames in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Counts a frame the glue could not route.
    pub fn count_unroutable(&mut self) {
        self.stats.unroutable += 1;
    }

    /// What the forwarder did.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// The statistics of the link from `from` to `to`.
    pub fn link_stats(&self, from: usize, to: usize) -> Option<&LinkStats> {
        (from < self.hosts && to < self.hosts).then(|| self.links[from * self.hosts + to].stats())
    }

    /// Applies every scheduled action due at `now`.
    fn apply_schedule(&mut self, now: Instant) {
        while let Some((at, action)) = self.schedule.get(self.next_action) {
            if *at > now {
                break;
            }
            match action {
                Action::Partition { pairs, on } => {
                    for &(a, b) in pairs {
                        if a < self.hosts && b < self.hosts {
                            self.links[a * self.hosts + b].set_partitioned(*on);
                        }
                    }
                }
                Action::SetLink { pairs, config } => {
                    for &(a, b) in pairs {
                        if a < self.hosts && b < self.hosts {
                            let i = a * self.hosts + b;
                            self.checksums[i] = config.checksums;
                            self.links[i].set_config(model_config(self.mode, config.clone()));
                        }
                    }
                }
            }
            self.next_action += 1;
        }
    }
}

/// The configuration the model runs with: as given for datagrams; for frames, one packet per
/// frame (maximum MTU) and the bit positions always reported (the kernel does the checking).
fn model_config(mode: Mode, mut c: LinkConfig) -> LinkConfig {
    if mode == Mode::Packet {
        c.mtu = MAX_MTU;
        c.checksums = false;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::udp_frame;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Link seeds as the emulator derives them, hosts named by their index.
    fn seeds(run: u64) -> impl Fn(usize, usize) -> u64 {
        move |a, b| livecam_system::link::pair_seed(run, &a.to_string(), &b.to_string())
    }

    fn drain(f: &mut Forwarder, now: Instant) -> Vec<Out> {
        std::iter::from_fn(|| f.poll(now)).collect()
    }

    #[test]
    fn delays_per_directed_pair_and_keeps_order() {
        let mut f = Forwarder::new(
            Mode::Datagram,
            3,
            |a, b| LinkConfig {
                delay_ms: if (a, b) == (0, 1) { 20.0 } else { 5.0 },
                ..LinkConfig::default()
            },
            seeds(1),
            vec![],
        );
        assert_eq!(f.offer(ms(0), 0, 1, vec![1]), None);
        assert_eq!(f.offer(ms(0), 1, 0, vec![2]), None);
        assert_eq!(f.offer(ms(1), 0, 1, vec![3]), None);
        assert_eq!(f.next_deadline(), Some(ms(5)));
        assert!(drain(&mut f, ms(4)).is_empty());
        let at5 = drain(&mut f, ms(5));
        assert_eq!(at5.len(), 1);
        assert_eq!(
            (at5[0].from, at5[0].to, at5[0].bytes.clone()),
            (1, 0, vec![2])
        );
        let rest = drain(&mut f, ms(21));
        assert_eq!(
            rest.iter().map(|o| o.bytes[0]).collect::<Vec<_>>(),
            [1, 3],
            "FIFO on a link"
        );
        assert_eq!(f.next_deadline(), None);
        assert_eq!(f.stats().forwarded, 3);
        // Unroutable pairs are counted, not offered.
        assert_eq!(f.offer(ms(30), 2, 2, vec![0]), None);
        assert_eq!(f.offer(ms(30), 0, 9, vec![0]), None);
        assert_eq!(f.stats().unroutable, 2);
        assert_eq!(f.stats().offered, 3);
    }

    #[test]
    fn partition_schedule_cuts_one_direction_then_heals() {
        let schedule = vec![
            (
                ms(20),
                Action::Partition {
                    pairs: vec![(0, 1)],
                    on: false,
                },
            ),
            (
                ms(10),
                Action::Partition {
                    pairs: vec![(0, 1)],
                    on: true,
                },
            ),
        ];
        let mut f = Forwarder::new(
            Mode::Datagram,
            2,
            |_, _| LinkConfig::default(),
            seeds(1),
            schedule,
        );
        assert_eq!(f.next_deadline(), Some(ms(10)));
        assert_eq!(f.offer(ms(9), 0, 1, vec![1]), None);
        assert_eq!(f.offer(ms(10), 0, 1, vec![1]), Some(LossCause::Partition));
        assert_eq!(f.offer(ms(15), 1, 0, vec![1]), None, "other direction open");
        assert_eq!(f.offer(ms(20), 0, 1, vec![1]), None, "healed");
        assert_eq!(f.link_stats(0, 1).map(|s| s.lost_partition), Some(1));
    }

    #[test]
    fn set_link_changes_the_model_mid_run() {
        let schedule = vec![(
            ms(10),
            Action::SetLink {
                pairs: vec![(0, 1)],
                config: LinkConfig {
                    loss: 1.0,
                    ..LinkConfig::default()
                },
            },
        )];
        let mut f = Forwarder::new(
            Mode::Datagram,
            2,
            |_, _| LinkConfig::default(),
            seeds(1),
            schedule,
        );
        assert_eq!(f.offer(ms(0), 0, 1, vec![0; 100]), None);
        assert_eq!(f.offer(ms(10), 0, 1, vec![0; 100]), Some(LossCause::Random));
    }

    #[test]
    fn loss_rate_and_seed_determinism() {
        let run = |seed| {
            let mut f = Forwarder::new(
                Mode::Datagram,
                2,
                |_, _| LinkConfig {
                    loss: 0.2,
                    ..LinkConfig::default()
                },
                seeds(seed),
                vec![],
            );
            (0..5000u64)
                .map(|i| {
                    f.offer(Instant::from_micros(i), 0, 1, vec![0; 200])
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same fates");
        assert_ne!(a, run(8));
        let lost = a.iter().filter(|l| **l).count() as f64 / a.len() as f64;
        // 5000 draws of p = 0.2: sd 0.0057; 5 sd.
        assert!((lost - 0.2).abs() < 0.03, "{lost}");
    }

    #[test]
    fn packet_mode_really_corrupts_frames_and_clears_checksums_when_asked() {
        for checksums in [true, false] {
            let mut f = Forwarder::new(
                Mode::Packet,
                2,
                |_, _| LinkConfig {
                    bit_error_rate: 1e-3,
                    checksums,
                    ..LinkConfig::default()
                },
                seeds(3),
                vec![],
            );
            let sent = udp_frame(0, 1, 1400, 0);
            let mut damaged = 0;
            for _ in 0..50 {
                assert_eq!(f.offer(ms(0), 0, 1, sent.clone()), None, "never lost");
                let out = f.poll(ms(0)).expect("due at once");
                assert_eq!(out.bytes.len(), sent.len());
                // Headers (Ethernet, IP, UDP ports and length) are never touched.
                assert_eq!(
                    out.bytes[..frame::FLIP_OFFSET - 2],
                    sent[..frame::FLIP_OFFSET - 2]
                );
                if out.bytes[frame::FLIP_OFFSET..] != sent[frame::FLIP_OFFSET..] {
                    damaged += 1;
                    let sum = &out.bytes[frame::FLIP_OFFSET - 2..frame::FLIP_OFFSET];
                    assert_eq!(sum == [0, 0], !checksums, "checksum cleared iff off");
                }
            }
            // 11_200 payload bits at 1e-3: P(clean) = e^-11.2, so essentially every frame.
            assert!(damaged >= 45, "{damaged}");
        }
    }

    #[test]
    fn packet_mode_rate_counts_the_frame_bytes() {
        // 1500-byte packets at 150_000 B/s: 10 ms each.
        let mut f = Forwarder::new(
            Mode::Packet,
            2,
            |_, _| LinkConfig {
                rate_bytes_per_s: Some(150_000.0),
                mtu: 576, // ignored in packet mode: the hosts fragment
                ..LinkConfig::default()
            },
            seeds(1),
            vec![],
        );
        for _ in 0..3 {
            assert_eq!(f.offer(ms(0), 0, 1, udp_frame(0, 1, 1472, 0)), None);
        }
        assert_eq!(f.next_deadline(), Some(ms(10)));
        assert_eq!(drain(&mut f, ms(29)).len(), 2);
        assert_eq!(drain(&mut f, ms(30)).len(), 1);
    }

    #[test]
    fn a_capacity_trace_delivers_at_its_opportunities() {
        use livecam_system::link::{Capacity, CapacityTrace};
        // One 1500-byte opportunity every 10 ms, from the forwarder's origin; a 20 ms delay.
        let trace = CapacityTrace::from_millis(&[10]).expect("valid trace");
        for mode in [Mode::Packet, Mode::Datagram] {
            let mut f = Forwarder::new(
                mode,
                2,
                |_, _| LinkConfig {
                    capacity: Some(Capacity::from_trace(trace.clone())),
                    delay_ms: 20.0,
                    ..LinkConfig::default()
                },
                seeds(1),
                vec![],
            );
            for _ in 0..3 {
                let bytes = match mode {
                    Mode::Packet => udp_frame(0, 1, 1472, 0),
                    Mode::Datagram => vec![0; 1472],
                };
                assert_eq!(f.offer(ms(0), 0, 1, bytes), None);
            }
            assert_eq!(f.next_deadline(), Some(ms(30)), "{mode:?}");
            assert_eq!(drain(&mut f, ms(49)).len(), 2, "{mode:?}");
            assert_eq!(drain(&mut f, ms(50)).len(), 1, "{mode:?}");
        }
    }

    #[test]
    fn datagram_mode_fragments_by_link_mtu() {
        // Fragment loss 0.5 on a 576 MTU: a 4000-byte datagram is 8 packets, survives with
        // 0.5^8 = 0.4%; a 100-byte one with 50%.
        let mut f = Forwarder::new(
            Mode::Datagram,
            2,
            |_, _| LinkConfig {
                loss: 0.5,
                mtu: 576,
                ..LinkConfig::default()
            },
            seeds(1),
            vec![],
        );
        let big = (0..2000)
            .filter(|_| f.offer(ms(0), 0, 1, vec![0; 4000]).is_none())
            .count();
        let small = (0..2000)
            .filter(|_| f.offer(ms(0), 0, 1, vec![0; 100]).is_none())
            .count();
        assert!(big < 30, "{big}");
        assert!((900..1100).contains(&small), "{small}");
    }
}
