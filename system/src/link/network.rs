//! The network of links between a run's hosts, sans IO: the one every simulator and the
//! emulator drive.
//!
//! A [`Network`] holds, for a set of named hosts:
//!
//! - one [`Link`] per directed pair, created on first use (a fleet of ten thousand hosts
//!   talks over a few thousand pairs, not a hundred million), configured by the pair's
//!   override or the default, and seeded by [`pair_seed`] of the run seed and the two names,
//!   so the same scenario and seed give each pair the same dice in every runtime;
//! - pairs that share one link ([`share`](Network::share)): a bottleneck several hosts send
//!   through, one queue, one rate and one loss process for all of them, as cameras behind one
//!   cellular modem or one cell's uplink;
//! - the change schedule (partitions, repairs, new link models: a fault schedule's link part),
//!   applied as time passes, before anything offered at or after its instant;
//! - the datagrams in flight, in a [`Calendar`] queue, handed out in `(due time, offer order)`.
//!
//! It is driven by the `now` the caller passes, as smoltcp's and quinn-proto's machines are:
//! [`offer`](Network::offer) a datagram from one host to another, [`poll`](Network::poll)
//! what is due, sleep until [`next_deadline`](Network::next_deadline). The des simulator and
//! the emulator's bridge and relay drive it this way. turmoil and madsim must carry each
//! datagram on their own network to wake the receiving task, so they take only its fate from
//! [`transmit`](Network::transmit) (the first half of `offer`) and hold the datagram at the
//! receiver until it is due; the dice are the same.
//!
//! Each queued datagram carries a small `M` of the caller's (the des simulator's socket
//! addresses, the emulator's host pair): the network itself needs nothing but the host indices.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{apply_bit_flips, pair_seed, Calendar, Link, LinkConfig, Transmission};
use crate::lookup::Lookup;
use crate::time::Instant;

/// A change of the links at a point in time.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Cut (`true`) or restore (`false`) the directed links between these host pairs.
    Partition {
        pairs: Vec<(usize, usize)>,
        on: bool,
    },
    /// Replace the directed links' models (validate the config first).
    SetLink {
        pairs: Vec<(usize, usize)>,
        config: LinkConfig,
    },
}

/// The links between named hosts, their change schedule and what is in flight. See the
/// module docs.
#[derive(Clone)]
pub struct Network<M> {
    run_seed: u64,
    names: Vec<Box<str>>,
    by_name: BTreeMap<Box<str>, usize>,
    default: LinkConfig,
    /// The configured model of each pair that is not the default.
    configs: BTreeMap<(usize, usize), LinkConfig>,
    /// What the model runs with, given the configured one (identity unless the caller's
    /// medium needs otherwise; see [`Network::with_model`]).
    model: fn(&LinkConfig) -> LinkConfig,
    partitioned: BTreeSet<(usize, usize)>,
    /// Pairs that send through another pair's link (see [`Network::share`]): pair -> the
    /// pair whose link, model and partition it uses.
    shared: BTreeMap<(usize, usize), (usize, usize)>,
    links: Lookup<(usize, usize), Link>,
    schedule: Vec<(Instant, Change)>,
    next_change: usize,
    in_flight: Calendar<M>,
    /// A damaged copy being queued, reused.
    scratch: Vec<u8>,
}

impl<M: Copy> fmt::Debug for Network<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("hosts", &self.names)
            .field("links", &self.links.len())
            .field("changes", &self.schedule.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<M: Copy> Network<M> {
    /// A network with no host yet, every link `default` (validated), seeded from `run_seed`.
    pub fn new(run_seed: u64, default: LinkConfig) -> Self {
        Network {
            run_seed,
            names: Vec::new(),
            by_name: BTreeMap::new(),
            default,
            configs: BTreeMap::new(),
            model: LinkConfig::clone,
            partitioned: BTreeSet::new(),
            shared: BTreeMap::new(),
            links: Lookup::default(),
            schedule: Vec::new(),
            next_change: 0,
            in_flight: Calendar::default(),
            scratch: Vec::new(),
        }
    }

    /// Runs every link's model with `model(configured)` instead of the configured model (the
    /// emulator's bridge carries frames its hosts have already fragmented). [`config`]
    /// still answers the configured one.
    ///
    /// [`config`]: Network::config
    pub fn with_model(mut self, model: fn(&LinkConfig) -> LinkConfig) -> Self {
        self.model = model;
        self
    }

    /// Adds a host named `name` and returns its index (the existing one if the name is known).
    /// Indices count up from 0 in the order hosts are added.
    pub fn add_host(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.names.len();
        self.names.push(name.into());
        self.by_name.insert(name.into(), i);
        i
    }

    /// The index of the host named `name`.
    pub fn host(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The name of host `i` (empty if there is no such host).
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", |n| n)
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.names.len()
    }

    /// The configured model of the link from `from` to `to` (now, with the changes applied so
    /// far).
    pub fn config(&self, from: usize, to: usize) -> &LinkConfig {
        self.configs
            .get(&self.key(from, to))
            .unwrap_or(&self.default)
    }

    /// Makes `pairs` (directed) send through one link, the first pair's: one queue, one rate,
    /// one loss process, its model and its partition, so they compete for it as flows do at
    /// a bottleneck. A change naming any of the pairs changes that one link. A pair shared
    /// again leaves its earlier group. Call it before anything is offered to the pairs.
    pub fn share(&mut self, pairs: &[(usize, usize)]) {
        let Some(&first) = pairs.first() else { return };
        let first = self.key(first.0, first.1);
        for &pair in pairs {
            if pair != first {
                self.shared.insert(pair, first);
            }
        }
    }

    /// The pair whose link the pair `from` -> `to` sends through.
    fn key(&self, from: usize, to: usize) -> (usize, usize) {
        link_of(&self.shared, (from, to))
    }

    /// The default model and every pair's own, configured.
    pub fn configs(&self) -> impl Iterator<Item = &LinkConfig> {
        std::iter::once(&self.default).chain(self.configs.values())
    }

    /// Configures the link from `from` to `to` (validate `config` first), now.
    pub fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        let (from, to) = self.key(from, to);
        if let Some(link) = self.links.get_mut(&(from, to)) {
            link.set_config((self.model)(&config));
        }
        self.configs.insert((from, to), config);
    }

    /// Cuts (`true`) or restores (`false`) the link from `from` to `to`, now.
    pub fn set_partitioned(&mut self, from: usize, to: usize, on: bool) {
        let (from, to) = self.key(from, to);
        if let Some(link) = self.links.get_mut(&(from, to)) {
            link.set_partitioned(on);
        }
        if on {
            self.partitioned.insert((from, to));
        } else {
            self.partitioned.remove(&(from, to));
        }
    }

    /// Adds `changes` to the schedule (any order; kept stable for equal times).
    pub fn schedule(&mut self, changes: impl IntoIterator<Item = (Instant, Change)>) {
        let mut pending = self.schedule.split_off(self.next_change);
        pending.extend(changes);
        pending.sort_by_key(|(at, _)| *at);
        self.schedule = pending;
        self.next_change = 0;
        let pending = &self.schedule[self.next_change..];
        for (&key, link) in self.links.iter_mut() {
            link.foresee(foreseen(pending, &self.shared, self.model, key));
        }
    }

    /// The scheduled changes not applied yet, in time order.
    pub fn pending_changes(&self) -> &[(Instant, Change)] {
        &self.schedule[self.next_change..]
    }

    /// The link from `from` to `to`, if anything has been offered to it.
    pub fn link(&self, from: usize, to: usize) -> Option<&Link> {
        self.links.get(&self.key(from, to))
    }

    /// Decides the fate of a datagram of `len` bytes from `from` to `to` at `now`, without
    /// queueing it: for a runtime that carries the datagram to its due time itself.
    pub fn transmit(&mut self, now: Instant, from: usize, to: usize, len: usize) -> Transmission {
        self.apply_due(now);
        self.link_mut(from, to).transmit(now, len)
    }

    /// Offers a datagram from `from` to `to` at `now` and queues the copies that arrive
    /// (bit errors applied) for [`poll`](Network::poll), each with `meta`. Returns its fate.
    pub fn offer(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        meta: M,
        bytes: &[u8],
    ) -> Transmission {
        self.offer_with(now, from, to, meta, bytes.len(), bytes, |b, flips, _| {
            apply_bit_flips(b, flips)
        })
    }

    /// Like [`offer`](Network::offer), for a medium whose bytes are not the model's datagram
    /// (the emulator's Ethernet frames): the model sees `model_len` bytes, and `damage`
    /// applies a copy's bit flips to its bytes, given the link's configured model.
    #[allow(clippy::too_many_arguments)]
    pub fn offer_with(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        meta: M,
        model_len: usize,
        bytes: &[u8],
        mut damage: impl FnMut(&mut [u8], &[usize], &LinkConfig),
    ) -> Transmission {
        let fate = self.transmit(now, from, to, model_len);
        let (from, to) = self.key(from, to);
        let Network {
            configs,
            default,
            in_flight,
            scratch,
            ..
        } = self;
        for copy in &fate.copies {
            if copy.bit_flips.is_empty() {
                in_flight.push(copy.at, meta, bytes);
            } else {
                scratch.clear();
                scratch.extend_from_slice(bytes);
                let config = configs.get(&(from, to)).unwrap_or(default);
                damage(scratch, &copy.bit_flips, config);
                in_flight.push(copy.at, meta, scratch);
            }
        }
        fate
    }

    /// Hands the next datagram due at `now` (earliest first, ties in offer order) to `take`
    /// and returns what it returned.
    pub fn poll<R>(&mut self, now: Instant, take: impl FnOnce(M, &[u8]) -> R) -> Option<R> {
        self.apply_due(now);
        self.in_flight.pop_due(now, take)
    }

    /// When something next happens: a datagram falls due or the schedule changes a link.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let delivery = self.in_flight.next_due();
        let change = self.schedule.get(self.next_change).map(|(at, _)| *at);
        match (delivery, change) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Applies every scheduled change due at `now`.
    fn apply_due(&mut self, now: Instant) {
        while let Some((at, _)) = self.schedule.get(self.next_change) {
            if *at > now {
                break;
            }
            let (_, change) = self.schedule[self.next_change].clone();
            match change {
                Change::Partition { pairs, on } => {
                    for (a, b) in pairs {
                        self.set_partitioned(a, b, on);
                    }
                }
                Change::SetLink { pairs, config } => {
                    for (a, b) in pairs {
                        self.set_link(a, b, config.clone());
                    }
                }
            }
            self.next_change += 1;
        }
    }

    /// The link the pair `from` -> `to` sends through, created on first use (told what the
    /// pending schedule will make of it).
    fn link_mut(&mut self, from: usize, to: usize) -> &mut Link {
        let (from, to) = self.key(from, to);
        let Network {
            links,
            configs,
            default,
            model,
            partitioned,
            shared,
            names,
            run_seed,
            schedule,
            next_change,
            ..
        } = self;
        links.entry((from, to)).or_insert_with(|| {
            let name = |i: usize| names.get(i).map_or("", |n| &**n);
            let config = configs.get(&(from, to)).unwrap_or(default);
            let mut link = Link::new(model(config), pair_seed(*run_seed, name(from), name(to)));
            link.set_partitioned(partitioned.contains(&(from, to)));
            link.foresee(foreseen(
                &schedule[*next_change..],
                shared,
                *model,
                (from, to),
            ));
            link
        })
    }
}

/// The pair whose link `pair` sends through, given the shared pairs (see [`Network::share`]).
fn link_of(
    shared: &BTreeMap<(usize, usize), (usize, usize)>,
    pair: (usize, usize),
) -> (usize, usize) {
    shared.get(&pair).copied().unwrap_or(pair)
}

/// The models the `pending` changes give the link `key` (a link's own pair), each with its
/// instant, as the model runs them: what [`Link::foresee`] takes, so a queue built before a
/// scheduled change drains at the new rate after it.
fn foreseen(
    pending: &[(Instant, Change)],
    shared: &BTreeMap<(usize, usize), (usize, usize)>,
    model: fn(&LinkConfig) -> LinkConfig,
    key: (usize, usize),
) -> Vec<(Instant, LinkConfig)> {
    pending
        .iter()
        .filter_map(|(at, change)| match change {
            Change::SetLink { pairs, config }
                if pairs.iter().any(|&pair| link_of(shared, pair) == key) =>
            {
                Some((*at, model(config)))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LossCause;
    use std::time::Duration;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn network(default: LinkConfig) -> Network<u8> {
        let mut n = Network::new(1, default);
        for name in ["a", "b", "c"] {
            n.add_host(name);
        }
        n
    }

    fn drain(n: &mut Network<u8>, now: Instant) -> Vec<(u8, Vec<u8>)> {
        std::iter::from_fn(|| n.poll(now, |m, b| (m, b.to_vec()))).collect()
    }

    #[test]
    fn delays_per_pair_and_hands_out_in_due_then_offer_order() {
        let mut n = network(LinkConfig {
            delay_ms: 5.0,
            ..LinkConfig::default()
        });
        n.set_link(
            0,
            1,
            LinkConfig {
                delay_ms: 20.0,
                ..LinkConfig::default()
            },
        );
        assert!(n.offer(ms(0), 0, 1, 1, &[1]).lost.is_none());
        assert!(n.offer(ms(0), 1, 0, 2, &[2]).lost.is_none());
        assert!(n.offer(ms(1), 0, 1, 3, &[3]).lost.is_none());
        assert_eq!(n.in_flight(), 3);
        assert_eq!(n.next_deadline(), Some(ms(5)));
        assert!(drain(&mut n, ms(4)).is_empty());
        assert_eq!(drain(&mut n, ms(5)), [(2, vec![2])]);
        assert_eq!(drain(&mut n, ms(21)), [(1, vec![1]), (3, vec![3])]);
        assert_eq!(n.next_deadline(), None);
        assert_eq!(n.link(0, 1).map(|l| l.stats().offered), Some(2));
        assert!(n.link(2, 0).is_none(), "links are made on first use");
    }

    #[test]
    fn shared_pairs_queue_behind_each_other_and_change_together() {
        // 1000 B/s: a 100-byte datagram takes 100 ms to leave.
        let slow = LinkConfig {
            rate_bytes_per_s: Some(1000.0),
            ..LinkConfig::default()
        };
        let mut n = network(LinkConfig::default());
        n.set_link(0, 2, slow.clone());
        n.share(&[(0, 2), (1, 2)]);
        assert_eq!(n.config(1, 2), &slow, "the shared link's model");
        let first = n.offer(ms(0), 0, 2, 1, &[0; 100]);
        let second = n.offer(ms(0), 1, 2, 2, &[0; 100]);
        let (a, b) = (first.copies[0].at, second.copies[0].at);
        assert!(
            b >= a + Duration::from_millis(99),
            "{a:?} then {b:?}: one queue"
        );
        assert_eq!(n.link(1, 2).map(|l| l.stats().offered), Some(2));
        // Unshared pairs keep their own links.
        assert!(n.offer(ms(0), 2, 0, 3, &[0; 100]).copies[0].at < a);
        // A change naming either pair changes the one link.
        n.set_partitioned(1, 2, true);
        assert_eq!(
            n.offer(ms(300), 0, 2, 4, &[1]).lost,
            Some(LossCause::Partition)
        );
    }

    #[test]
    fn a_queue_built_before_a_scheduled_change_drains_at_the_new_rate() {
        // 1000 wire bytes a second until 1 s, then 100,000 (a capacity dip ending), then
        // unlimited from 2 s: each datagram is 972 + 28 = 1000 wire bytes.
        let slow = LinkConfig {
            rate_bytes_per_s: Some(1_000.0),
            queue_bytes: 1_000_000,
            ..LinkConfig::default()
        };
        let fast = LinkConfig {
            rate_bytes_per_s: Some(100_000.0),
            ..slow.clone()
        };
        let at = |n: &mut Network<u8>, t: u64| n.transmit(ms(t), 0, 1, 972).copies[0].at;
        let mut n = network(slow.clone());
        n.schedule([
            (
                ms(1_000),
                Change::SetLink {
                    pairs: vec![(0, 1)],
                    config: fast,
                },
            ),
            (
                ms(2_000),
                Change::SetLink {
                    pairs: vec![(0, 1)],
                    config: LinkConfig::default(),
                },
            ),
        ]);
        assert_eq!(at(&mut n, 0), ms(1_000), "a second at the slow rate");
        // Queued behind it: the 1 s change speeds it up, 10 ms each.
        assert_eq!(at(&mut n, 0), ms(1_010));
        assert_eq!(at(&mut n, 500), ms(1_020));
        // Past the change, the queue's rest at the new rate, then none at all from 2 s.
        assert_eq!(at(&mut n, 1_005), ms(1_030));
        let backlog = n.link(0, 1).map(|l| l.backlog_bytes(ms(1_005)));
        assert_eq!(
            backlog.map(f64::round),
            Some(2_500.0),
            "25 ms of the new rate"
        );
        for _ in 0..200 {
            at(&mut n, 1_900);
        }
        assert_eq!(
            at(&mut n, 1_900),
            ms(2_000),
            "what is left at 2 s leaves at once"
        );
        assert_eq!(at(&mut n, 2_100), ms(2_100));

        // A change nobody scheduled (a direct set_link) was not foreseen: the queue keeps the
        // old rate's times.
        let mut n = network(slow.clone());
        assert_eq!(at(&mut n, 0), ms(1_000));
        assert_eq!(at(&mut n, 0), ms(2_000));
        n.set_link(
            0,
            1,
            LinkConfig {
                rate_bytes_per_s: Some(100_000.0),
                ..slow
            },
        );
        assert_eq!(at(&mut n, 10), ms(2_010));
    }

    #[test]
    fn the_schedule_applies_before_what_is_offered_at_its_instant() {
        let mut n = network(LinkConfig::default());
        n.schedule([
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
            (
                ms(30),
                Change::SetLink {
                    pairs: vec![(1, 2)],
                    config: LinkConfig {
                        loss: 1.0,
                        ..LinkConfig::default()
                    },
                },
            ),
        ]);
        assert_eq!(n.next_deadline(), Some(ms(10)));
        assert!(n.offer(ms(9), 0, 1, 0, &[1]).lost.is_none());
        assert_eq!(
            n.offer(ms(10), 0, 1, 0, &[1]).lost,
            Some(LossCause::Partition)
        );
        assert!(n.offer(ms(15), 1, 0, 0, &[1]).lost.is_none(), "one way");
        assert!(n.offer(ms(20), 0, 1, 0, &[1]).lost.is_none(), "repaired");
        assert_eq!(n.transmit(ms(30), 1, 2, 10).lost, Some(LossCause::Random));
        assert_eq!(n.config(1, 2).loss, 1.0);
    }

    #[test]
    fn a_pair_draws_the_same_dice_whatever_else_happens_and_whatever_the_host_order() {
        let lossy = LinkConfig {
            loss: 0.3,
            bit_error_rate: 1e-3,
            checksums: false,
            ..LinkConfig::default()
        };
        let fates = |names: &[&str], busy: bool| {
            let mut n: Network<u8> = Network::new(9, lossy.clone());
            for name in names {
                n.add_host(name);
            }
            let (a, c) = (n.host("a").unwrap(), n.host("c").unwrap());
            (0..200u64)
                .map(|k| {
                    if busy {
                        n.offer(ms(k), c, a, 0, &[0; 300]);
                    }
                    n.transmit(ms(k), a, c, 300)
                })
                .collect::<Vec<_>>()
        };
        let reference = fates(&["a", "b", "c"], false);
        assert_eq!(reference, fates(&["c", "a", "b"], true));
        assert!(reference.iter().any(|t| t.lost.is_some()));
        assert!(reference
            .iter()
            .any(|t| t.copies.iter().any(|c| !c.bit_flips.is_empty())));
    }

    #[test]
    fn damaged_copies_are_queued_damaged_and_the_model_can_be_mapped() {
        let mut n = network(LinkConfig {
            bit_error_rate: 1e-2,
            checksums: false,
            ..LinkConfig::default()
        })
        .with_model(|c| LinkConfig {
            mtu: 9000,
            ..c.clone()
        });
        assert_eq!(n.config(0, 1).mtu, LinkConfig::default().mtu);
        let sent = vec![0u8; 1000];
        let fate = n.offer(ms(0), 0, 1, 7, &sent);
        let (meta, got) = n.poll(ms(0), |m, b| (m, b.to_vec())).expect("due now");
        assert_eq!(meta, 7);
        let flips = &fate.copies[0].bit_flips;
        assert!(!flips.is_empty(), "80,000 bits at 1e-2");
        let mut expected = sent.clone();
        apply_bit_flips(&mut expected, flips);
        assert_eq!(got, expected);
        assert_eq!(n.link(0, 1).map(|l| l.config().mtu), Some(9000));
    }
}
