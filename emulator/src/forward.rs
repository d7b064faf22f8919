//! The forwarding decision, sans IO: the run's shared [`Network`] of link models (the one the
//! simulators drive, built by the same [`Scenario::network`](livecam_sim::Scenario::network)),
//! carrying UDP datagrams (the relay) or Ethernet frames (the bridge).
//!
//! The bridge and the relay are thin loops around a [`Forwarder`]: they hand it what arrives
//! with [`Forwarder::offer`], send what [`Forwarder::poll`] returns, and sleep until
//! [`Forwarder::next_deadline`]. Given the same offers at the same instants it makes the same
//! decisions as the simulators do: every link's randomness is seeded from the run's seed and
//! the pair's host names.

use livecam_system::link::{apply_bit_flips, LinkConfig, LinkStats, LossCause, Network, MAX_MTU};
use livecam_system::time::Instant;
use serde::Serialize;

use crate::frame;

/// What a datagram or frame in flight carries besides its bytes: the host pair.
pub type Hop = (usize, usize);

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

/// The run's network, carrying datagrams or frames, and what it did.
#[derive(Debug)]
pub struct Forwarder {
    mode: Mode,
    network: Network<Hop>,
    stats: ForwardStats,
}

impl Forwarder {
    /// Carries `mode`'s traffic over `network` (its hosts, links and change schedule; see
    /// [`Scenario::network`](livecam_sim::Scenario::network)).
    pub fn new(mode: Mode, network: Network<Hop>) -> Self {
        let network = match mode {
            Mode::Datagram => network,
            Mode::Packet => network.with_model(packet_model),
        };
        Forwarder {
            mode,
            network,
            stats: ForwardStats::default(),
        }
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.network.hosts()
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
        let hosts = self.network.hosts();
        if from >= hosts || to >= hosts || from == to {
            self.stats.unroutable += 1;
            return None;
        }
        self.stats.offered += 1;
        let fate = match self.mode {
            Mode::Datagram => self.network.offer(now, from, to, (from, to), &bytes),
            Mode::Packet => self.network.offer_with(
                now,
                from,
                to,
                (from, to),
                frame::model_len(&bytes),
                &bytes,
                damage_frame,
            ),
        };
        if let Some(cause) = fate.lost {
            self.stats.lost += 1;
            return Some(cause);
        }
        self.stats.corrupted += fate
            .copies
            .iter()
            .filter(|c| !c.bit_flips.is_empty())
            .count() as u64;
        None
    }

    /// The next datagram or frame due at `now`, if any (earliest first, ties in offer order).
    pub fn poll(&mut self, now: Instant) -> Option<Out> {
        let out = self.network.poll(now, |(from, to), bytes| Out {
            from,
            to,
            bytes: bytes.to_vec(),
        })?;
        self.stats.forwarded += 1;
        Some(out)
    }

    /// When something next happens: a delivery falls due or the schedule changes a link.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.network.next_deadline()
    }

    /// Datagrams or frames in flight.
    pub fn in_flight(&self) -> usize {
        self.network.in_flight()
    }

    /// Counts a frame the glue could not route.
    pub fn count_unroutable(&mut self) {
        self.stats.unroutable += 1;
    }

    /// What the forwarder did.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// The statistics of the link from `from` to `to`, once anything was offered to it.
    pub fn link_stats(&self, from: usize, to: usize) -> Option<&LinkStats> {
        self.network.link(from, to).map(|l| l.stats())
    }
}

/// The model a frame's link runs with: one packet per frame (maximum MTU: the hosts' kernels
/// fragment) and the bit positions always reported (the receiving kernel does the checking).
fn packet_model(c: &LinkConfig) -> LinkConfig {
    LinkConfig {
        mtu: MAX_MTU,
        checksums: false,
        ..c.clone()
    }
}

/// Applies a frame's bit flips past its headers; with the link's `checksums` off, zeroes the
/// UDP checksum so the damaged payload reaches the application.
fn damage_frame(frame: &mut [u8], flips: &[usize], link: &LinkConfig) {
    if let Some(tail) = frame.get_mut(frame::FLIP_OFFSET..) {
        apply_bit_flips(tail, flips);
    }
    if !link.checksums {
        frame::clear_udp_checksum(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::udp_frame;
    use livecam_system::link::Change;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// A forwarder over `hosts` hosts named by their index, the link from `a` to `b`
    /// configured by `config(a, b)`, seeded from `seed`.
    fn forwarder(
        mode: Mode,
        hosts: usize,
        config: impl Fn(usize, usize) -> LinkConfig,
        seed: u64,
        schedule: Vec<(Instant, Change)>,
    ) -> Forwarder {
        let mut network = Network::new(seed, LinkConfig::default());
        for i in 0..hosts {
            network.add_host(&i.to_string());
        }
        for a in 0..hosts {
            for b in (0..hosts).filter(|&b| b != a) {
                network.set_link(a, b, config(a, b));
            }
        }
        network.schedule(schedule);
        Forwarder::new(mode, network)
    }

    fn drain(f: &mut Forwarder, now: Instant) -> Vec<Out> {
        std::iter::from_fn(|| f.poll(now)).collect()
    }

    #[test]
    fn delays_per_directed_pair_and_keeps_order() {
        let mut f = forwarder(
            Mode::Datagram,
            3,
            |a, b| LinkConfig {
                delay_ms: if (a, b) == (0, 1) { 20.0 } else { 5.0 },
                ..LinkConfig::default()
            },
            1,
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
                Change::Partition {
                    pairs: vec![(0, 1)],
                    on: false,
                },
            ),
            (
                ms(10),
                Change::Partition {
                    pairs: vec![(0, 1)],
                    on: true,
                },
            ),
        ];
        let mut f = forwarder(Mode::Datagram, 2, |_, _| LinkConfig::default(), 1, schedule);
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
            Change::SetLink {
                pairs: vec![(0, 1)],
                config: LinkConfig {
                    loss: 1.0,
                    ..LinkConfig::default()
                },
            },
        )];
        let mut f = forwarder(Mode::Datagram, 2, |_, _| LinkConfig::default(), 1, schedule);
        assert_eq!(f.offer(ms(0), 0, 1, vec![0; 100]), None);
        assert_eq!(f.offer(ms(10), 0, 1, vec![0; 100]), Some(LossCause::Random));
    }

    #[test]
    fn loss_rate_and_seed_determinism() {
        let run = |seed| {
            let mut f = forwarder(
                Mode::Datagram,
                2,
                |_, _| LinkConfig {
                    loss: 0.2,
                    ..LinkConfig::default()
                },
                seed,
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
            let mut f = forwarder(
                Mode::Packet,
                2,
                |_, _| LinkConfig {
                    bit_error_rate: 1e-3,
                    checksums,
                    ..LinkConfig::default()
                },
                3,
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
        let mut f = forwarder(
            Mode::Packet,
            2,
            |_, _| LinkConfig {
                rate_bytes_per_s: Some(150_000.0),
                mtu: 576, // ignored in packet mode: the hosts fragment
                ..LinkConfig::default()
            },
            1,
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
            let mut f = forwarder(
                mode,
                2,
                |_, _| LinkConfig {
                    capacity: Some(Capacity::from_trace(trace.clone())),
                    delay_ms: 20.0,
                    ..LinkConfig::default()
                },
                1,
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
        let mut f = forwarder(
            Mode::Datagram,
            2,
            |_, _| LinkConfig {
                loss: 0.5,
                mtu: 576,
                ..LinkConfig::default()
            },
            1,
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
