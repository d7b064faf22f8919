//! Tallies a run from its role events and checks the protocol's promises.
//!
//! The promises, checked on every run:
//! - every frame a camera captured is acknowledged, or given up and reported (deadline or
//!   eviction), or was in the memory of a host that crashed;
//! - no frame is delivered damaged or twice;
//! - no frame is acknowledged that the receiver did not deliver.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use livecam_system::proto::{DropReason, SenderStats};
use livecam_system::role::RoleEvent;
use livecam_system::stats::Samples;
use livecam_system::time::Instant;
use serde::Serialize;

use crate::scenario::{RoleKind, Scenario};

#[derive(Debug, Default, Clone)]
struct SessionTally {
    host: String,
    /// The camera's numbering: its frame `n` is capture sequence number `boot_seq + n`.
    boot_seq: u64,
    pushed: BTreeSet<u32>,
    acked: BTreeSet<u32>,
    given_up: BTreeMap<u32, DropReason>,
    crashed: bool,
}

/// Where one camera incarnation's sender counters are kept in a [`Tally`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderSlot(usize);

/// Running counts of a simulation.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub datagrams_lost: u64,
    sessions: BTreeMap<u32, SessionTally>,
    delivered: BTreeSet<(u32, u32)>,
    frames_received: u64,
    frames_corrupted: u64,
    frames_duplicated: u64,
    receiver_dropped: u64,
    latencies: Samples,
    /// When each frame not yet delivered was pushed, and capture-to-delivery times.
    pushed_at: BTreeMap<(u32, u32), Instant>,
    one_way: Samples,
    /// Segment size over time per session: `(seconds, size)`.
    sizes: BTreeMap<u32, Vec<(f64, usize)>>,
    /// Latest counters of each camera incarnation's sender, by [`SenderSlot`].
    sender_stats: Vec<SenderStats>,
    cluster: ClusterTally,
    durable: DurableTally,
}

/// The durability part of the tally: the storage model's database, frame by frame.
#[derive(Debug, Default, Clone)]
struct DurableTally {
    seen: bool,
    /// (session, live frame id) committed by some tier-2's storage: the database's rows.
    /// Storage names frames by capture sequence number (`boot_seq` + live id, the boot's
    /// numbering from its host's wall clock, see `host::wall_clock_ms`); the tally takes the
    /// session's `boot_seq` off again.
    stored: BTreeSet<(u32, u64)>,
    /// Commits in all (a frame stored twice counts twice here, once above).
    commits: u64,
    /// Frames that reached the database through backfill.
    stored_by_backfill: BTreeSet<(u32, u64)>,
    /// Backfilled frames the tier-2s received whole.
    backfill_deliveries: u64,
    ring_dropped: BTreeSet<(u32, u64)>,
}

/// The cluster's part of the tally.
#[derive(Debug, Default, Clone)]
struct ClusterTally {
    seen: bool,
    setups: Samples,
    lost_at: BTreeMap<u32, Instant>,
    failovers: Samples,
    /// The tier-2 each client streams to now.
    client_tier2: BTreeMap<u32, u32>,
    client_host: BTreeMap<u32, String>,
    /// Tier-2 host -> its manager's address, from its last change.
    tier2_manager: BTreeMap<String, IpAddr>,
    /// Tier-1 host -> the tier-2 ids it manages.
    managed: BTreeMap<String, BTreeSet<u32>>,
    down: BTreeSet<String>,
}

impl Tally {
    /// Takes one role event from `host`.
    pub fn on_role_event(&mut self, now: Instant, host: &str, ev: &RoleEvent) {
        let t = now.since_origin().as_secs_f64();
        match *ev {
            RoleEvent::FramePushed {
                session,
                frame,
                boot_seq,
                ..
            } => {
                let s = self.sessions.entry(session).or_default();
                if s.host.is_empty() {
                    s.host = host.to_string();
                }
                s.boot_seq = boot_seq;
                s.pushed.insert(frame);
                self.pushed_at.insert((session, frame), now);
            }
            RoleEvent::FrameAcked {
                session,
                frame,
                latency_us,
            } => {
                self.sessions
                    .entry(session)
                    .or_default()
                    .acked
                    .insert(frame);
                self.latencies.push(latency_us as f64 / 1e3);
            }
            RoleEvent::FrameGivenUp {
                session,
                frame,
                reason,
            } => {
                self.sessions
                    .entry(session)
                    .or_default()
                    .given_up
                    .insert(frame, reason);
            }
            RoleEvent::SegmentSize { session, size } => {
                self.sizes.entry(session).or_default().push((t, size));
            }
            RoleEvent::FrameDelivered {
                session,
                frame,
                intact,
                duplicate,
                ..
            } => {
                self.frames_received += 1;
                if let Some(at) = self.pushed_at.remove(&(session, frame)) {
                    let one_way = now.saturating_duration_since(at);
                    self.one_way.push(one_way.as_secs_f64() * 1e3);
                }
                self.delivered.insert((session, frame));
                self.frames_corrupted += u64::from(!intact);
                self.frames_duplicated += u64::from(duplicate);
            }
            RoleEvent::FrameDropped { .. } => self.receiver_dropped += 1,
            RoleEvent::FrameStored {
                session,
                frame,
                backfill,
            } => {
                let key = (session, self.live_id(session, frame));
                let d = &mut self.durable;
                d.seen = true;
                d.commits += 1;
                if d.stored.insert(key) && backfill {
                    d.stored_by_backfill.insert(key);
                }
            }
            RoleEvent::FrameBackfilled { intact, .. } => {
                self.durable.seen = true;
                self.durable.backfill_deliveries += 1;
                self.frames_corrupted += u64::from(!intact);
            }
            RoleEvent::RingDropped { session, frame } => {
                let key = (session, self.live_id(session, frame));
                self.durable.seen = true;
                self.durable.ring_dropped.insert(key);
            }
            RoleEvent::BackfillAcked { .. } => self.durable.seen = true,
            // A camera's rate control: in the trace, not in the tallies.
            RoleEvent::TargetRate { .. } => {}
            ref ev => self.on_cluster_event(now, host, ev),
        }
    }

    fn on_cluster_event(&mut self, now: Instant, host: &str, ev: &RoleEvent) {
        let c = &mut self.cluster;
        c.seen = true;
        match *ev {
            RoleEvent::Connected {
                client,
                tier2,
                setup_us,
                ..
            } => {
                c.setups.push(setup_us as f64 / 1e3);
                if let Some(lost) = c.lost_at.remove(&client) {
                    c.failovers
                        .push(now.saturating_duration_since(lost).as_secs_f64() * 1e3);
                }
                c.client_tier2.insert(client, tier2);
                c.client_host.insert(client, host.to_string());
            }
            RoleEvent::SessionLost { client, .. } => {
                c.lost_at.entry(client).or_insert(now);
                c.client_tier2.remove(&client);
            }
            RoleEvent::ManagerChanged { manager, .. } => {
                c.tier2_manager.insert(host.to_string(), manager.ip());
            }
            RoleEvent::Managing { tier2, .. } => {
                c.managed.entry(host.to_string()).or_default().insert(tier2);
            }
            RoleEvent::Released { tier2, .. } => {
                c.managed
                    .entry(host.to_string())
                    .or_default()
                    .remove(&tier2);
            }
            _ => {}
        }
    }

    /// Notes that a host (re)started: it holds nothing yet.
    pub fn on_start(&mut self, host: &str) {
        let c = &mut self.cluster;
        c.down.remove(host);
        c.managed.remove(host);
        c.tier2_manager.remove(host);
    }

    /// Notes a camera session's starting segment size.
    pub fn on_session_start(&mut self, now: Instant, session: u32, size: usize) {
        self.sizes
            .entry(session)
            .or_default()
            .push((now.since_origin().as_secs_f64(), size));
    }

    /// The live frame id of capture sequence number `seq` of `session`: `seq` less the
    /// session's `boot_seq` (a number no frame had when `seq` is below it, so that a frame
    /// named wrongly shows as stored, never captured).
    fn live_id(&self, session: u32, seq: u64) -> u64 {
        let boot = self.sessions.get(&session).map_or(0, |s| s.boot_seq);
        seq.wrapping_sub(boot)
    }

    /// Notes that every session of `host` lost its memory in a crash.
    pub fn on_crash(&mut self, host: &str) {
        for s in self.sessions.values_mut().filter(|s| s.host == host) {
            s.crashed = true;
        }
        let c = &mut self.cluster;
        c.down.insert(host.to_string());
        c.managed.remove(host);
        let gone: Vec<u32> = c
            .client_host
            .iter()
            .filter(|(_, h)| h.as_str() == host)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            c.client_tier2.remove(&id);
            c.lost_at.remove(&id);
        }
    }

    /// The cluster figures and checks, when the run had a cluster.
    fn cluster_summary(
        &self,
        scenario: &Scenario,
        name_of: &dyn Fn(IpAddr) -> String,
        violations: &mut Vec<String>,
    ) -> Option<ClusterSummary> {
        let c = &self.cluster;
        if !c.seen {
            return None;
        }
        let hosts = scenario.hosts();
        let name = |index: u32| {
            hosts
                .get(index as usize)
                .map(|h| h.name.clone())
                .unwrap_or_default()
        };
        let mut tier2_sessions: BTreeMap<String, u64> = hosts
            .iter()
            .filter(|h| h.role == RoleKind::Tier2 && !c.down.contains(&h.name))
            .map(|h| (h.name.clone(), 0))
            .collect();
        for &t in c.client_tier2.values() {
            if let Some(n) = tier2_sessions.get_mut(&name(t)) {
                *n += 1;
            }
        }
        let loads: Vec<f64> = tier2_sessions.values().map(|&n| n as f64).collect();
        let sum: f64 = loads.iter().sum();
        let jain_index = livecam_system::stats::jain(&loads);
        let mean = sum / loads.len().max(1) as f64;
        let max_over_mean = if mean > 0.0 {
            loads.iter().cloned().fold(0.0, f64::max) / mean
        } else {
            0.0
        };
        // Exactly one manager per live tier-2, and it is the one the tier-2 names.
        let mut managers_consistent = true;
        for h in hosts
            .iter()
            .filter(|h| h.role == RoleKind::Tier2 && !c.down.contains(&h.name))
        {
            let named = match c.tier2_manager.get(&h.name) {
                Some(&ip) => name_of(ip),
                None => h.tier1.first().cloned().unwrap_or_default(),
            };
            let holders: Vec<&String> = c
                .managed
                .iter()
                .filter(|(t1, set)| !c.down.contains(*t1) && set.contains(&(h.index as u32)))
                .map(|(t1, _)| t1)
                .collect();
            if holders.len() != 1 || *holders[0] != named || c.down.contains(&named) {
                managers_consistent = false;
                violations.push(format!(
                    "tier-2 {} names manager {named}, managed by {holders:?}",
                    h.name
                ));
            }
        }
        let tier1_managed = c
            .managed
            .iter()
            .filter(|(t1, _)| !c.down.contains(*t1))
            .map(|(t1, set)| (t1.clone(), set.iter().map(|&t| name(t)).collect()))
            .collect();
        Some(ClusterSummary {
            tier1_managed,
            connections: c.setups.len() as u64,
            setup_ms_p50: c.setups.quantile(0.5),
            setup_ms_p99: c.setups.quantile(0.99),
            setup_ms_max: c.setups.quantile(1.0),
            failovers: c.failovers.len() as u64,
            failover_ms_p50: c.failovers.quantile(0.5),
            failover_ms_max: c.failovers.quantile(1.0),
            clients_unconnected: c.lost_at.len() as u64,
            tier2_sessions,
            jain_index,
            max_over_mean,
            managers_consistent,
        })
    }

    /// The frames captured that the database does not hold, each `(session, frame)`, leaving
    /// out those the ring dropped (counted) and those lost with a crashed client.
    pub fn frames_not_stored(&self) -> Vec<(u32, u32)> {
        let d = &self.durable;
        self.sessions
            .iter()
            .filter(|(_, t)| !t.crashed)
            .flat_map(|(&id, t)| t.pushed.iter().map(move |&f| (id, f)))
            .filter(|&(id, f)| {
                let k = (id, u64::from(f));
                !d.stored.contains(&k) && !d.ring_dropped.contains(&k)
            })
            .collect()
    }

    /// Whether `(session, frame)` is in the database.
    pub fn is_stored(&self, session: u32, frame: u32) -> bool {
        self.durable.stored.contains(&(session, u64::from(frame)))
    }

    fn durable_summary(&self) -> Option<DurableSummary> {
        let d = &self.durable;
        if !d.seen {
            return None;
        }
        let missing = self.frames_not_stored();
        let captured: BTreeSet<(u32, u64)> = self
            .sessions
            .iter()
            .flat_map(|(&id, t)| t.pushed.iter().map(move |&f| (id, u64::from(f))))
            .collect();
        Some(DurableSummary {
            frames_captured: captured.len() as u64,
            frames_stored: d.stored.len() as u64,
            frames_stored_by_backfill: d.stored_by_backfill.len() as u64,
            commits: d.commits,
            backfill_deliveries: d.backfill_deliveries,
            frames_dropped_from_ring: d.ring_dropped.len() as u64,
            frames_lost_with_client: self
                .sessions
                .iter()
                .filter(|(_, t)| t.crashed)
                .map(|(&id, t)| {
                    t.pushed
                        .iter()
                        .filter(|&&f| !d.stored.contains(&(id, u64::from(f))))
                        .count() as u64
                })
                .sum(),
            frames_not_stored: missing.len() as u64,
            first_not_stored: missing
                .iter()
                .take(10)
                .map(|(s, f)| format!("{s}/{f}"))
                .collect(),
            stored_never_captured: d.stored.difference(&captured).count() as u64,
        })
    }

    /// A place for the sender counters of a camera incarnation that has just started.
    pub fn add_sender(&mut self) -> SenderSlot {
        self.sender_stats.push(SenderStats::default());
        SenderSlot(self.sender_stats.len() - 1)
    }

    /// Latest sender counters of one camera incarnation (set on every step it takes: a
    /// slot, not a lookup by name).
    pub fn set_sender_stats(&mut self, slot: SenderSlot, stats: &SenderStats) {
        if let Some(s) = self.sender_stats.get_mut(slot.0) {
            s.clone_from(stats);
        }
    }

    /// Segment size over time, per camera session.
    pub fn size_series(&self) -> &BTreeMap<u32, Vec<(f64, usize)>> {
        &self.sizes
    }

    /// Frame latencies (capture to ACK) in milliseconds.
    pub fn latencies(&self) -> &Samples {
        &self.latencies
    }

    /// The run's figures and promise checks.
    /// The run's figures and promise checks. `name_of` names the host behind an address.
    pub fn summary(&self, scenario: &Scenario, name_of: &dyn Fn(IpAddr) -> String) -> Summary {
        let frame_bytes = scenario.workload.frame_bytes;
        let mut s = Summary {
            cameras: self.sessions.len() as u64,
            frames_received: self.frames_received,
            frames_corrupted: self.frames_corrupted,
            frames_duplicated: self.frames_duplicated,
            frames_dropped_by_receiver: self.receiver_dropped,
            latency_ms_p50: self.latencies.quantile(0.5),
            latency_ms_p99: self.latencies.quantile(0.99),
            latency_ms_max: self.latencies.quantile(1.0),
            one_way_ms_p50: self.one_way.quantile(0.5),
            one_way_ms_p99: self.one_way.quantile(0.99),
            datagrams_lost_by_link: self.datagrams_lost,
            ..Summary::default()
        };
        for st in &self.sender_stats {
            s.segments_sent += st.segments_sent;
            s.segments_resent += st.segments_resent;
            s.bytes_sent += st.bytes_sent;
            s.data_bytes += st.data_bytes;
            s.repair_bytes += st.repair_bytes;
            s.header_bytes += st.header_bytes;
        }
        if s.data_bytes > 0 {
            s.repair_ratio = s.repair_bytes as f64 / s.data_bytes as f64;
            s.header_ratio = s.header_bytes as f64 / s.data_bytes as f64;
        }
        let mut violations = Vec::new();
        for (&id, t) in &self.sessions {
            s.frames_sent += t.pushed.len() as u64;
            s.frames_delivered += t.acked.len() as u64;
            s.frames_dropped += t.given_up.len() as u64;
            s.frames_superseded_at_setup += t
                .given_up
                .values()
                .filter(|&&r| r == DropReason::SetUp)
                .count() as u64;
            for &f in &t.acked {
                if !self.delivered.contains(&(id, f)) {
                    violations.push(format!(
                        "session {id} frame {f}: acknowledged, never delivered"
                    ));
                }
            }
            let unsettled = t
                .pushed
                .iter()
                .filter(|f| !t.acked.contains(f) && !t.given_up.contains_key(f))
                .count() as u64;
            if t.crashed {
                s.frames_lost_with_host += unsettled;
            } else if unsettled > 0 {
                violations.push(format!(
                    "session {id} on {}: {unsettled} frames neither acknowledged nor reported dropped",
                    t.host
                ));
            }
        }
        if self.frames_corrupted > 0 {
            violations.push(format!(
                "{} frames delivered damaged",
                self.frames_corrupted
            ));
        }
        if self.frames_duplicated > 0 {
            violations.push(format!("{} frames delivered twice", self.frames_duplicated));
        }
        let finals: Vec<f64> = self
            .sizes
            .values()
            .filter_map(|v| v.last().map(|&(_, size)| size as f64))
            .collect();
        if !finals.is_empty() {
            s.final_segment_size_mean = finals.iter().sum::<f64>() / finals.len() as f64;
        }
        if s.bytes_sent > 0 {
            s.efficiency = (s.frames_delivered * frame_bytes as u64) as f64 / s.bytes_sent as f64;
        }
        s.cluster = self.cluster_summary(scenario, name_of, &mut violations);
        s.durability = self.durable_summary();
        if let Some(d) = s
            .durability
            .as_ref()
            .filter(|d| d.stored_never_captured > 0)
        {
            violations.push(format!(
                "{} frames stored that no camera captured",
                d.stored_never_captured
            ));
        }
        s.promises_kept = violations.is_empty();
        violations.truncate(20);
        s.violations = violations;
        s
    }
}

/// The figures of one simulated run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub cameras: u64,
    /// Frames captured by cameras.
    pub frames_sent: u64,
    /// Frames acknowledged to their camera.
    pub frames_delivered: u64,
    /// Frames the cameras gave up (deadline or eviction, and at the source under rate
    /// control: superseded, skipped, or held by a slow set-up), each reported.
    pub frames_dropped: u64,
    /// Of those dropped, frames captured while their session was set up, a newer one
    /// captured before it opened (the session starts with the newest).
    pub frames_superseded_at_setup: u64,
    /// Frames still in a camera's memory when it crashed.
    pub frames_lost_with_host: u64,
    /// Frames the receivers delivered (a few more than acknowledged when ACKs were lost).
    pub frames_received: u64,
    pub frames_dropped_by_receiver: u64,
    pub frames_corrupted: u64,
    pub frames_duplicated: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// One way: from capture to the receiver holding the whole frame (first delivery).
    pub one_way_ms_p50: f64,
    pub one_way_ms_p99: f64,
    pub segments_sent: u64,
    pub segments_resent: u64,
    pub bytes_sent: u64,
    /// Frame bytes acknowledged per byte the cameras sent (UDP payload): the share of the
    /// uplink that carried useful data.
    pub efficiency: f64,
    /// Payload bytes of data segments sent once, repair bytes (parity shards and resent
    /// payload) and header bytes (ours, UDP and IP), as the senders counted them.
    pub data_bytes: u64,
    pub repair_bytes: u64,
    pub header_bytes: u64,
    /// Repair bytes per data byte; header bytes per data byte.
    pub repair_ratio: f64,
    pub header_ratio: f64,
    pub datagrams_lost_by_link: u64,
    /// Wire bytes (UDP payload and UDP/IP headers) each mobile client's uplink offered the
    /// network, by interface name (`van`, then `van.wwan1`, ... for a bonded one): what its
    /// modems carried, connection, pings and copies included.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub uplink_bytes: BTreeMap<String, u64>,
    pub final_segment_size_mean: f64,
    pub promises_kept: bool,
    pub violations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<DurableSummary>,
}

impl Summary {
    /// What every run with a cluster must show, whatever its faults: the stream promises kept,
    /// no frame damaged or delivered twice, every frame sent delivered, dropped or lost with
    /// its host, every client with a session at the end, and every tier-2 with exactly one
    /// manager. Empty when all hold; otherwise one line per broken invariant.
    pub fn cluster_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.promises_kept {
            p.push(format!("promises broken: {:?}", self.violations));
        }
        if self.frames_corrupted + self.frames_duplicated > 0 {
            p.push(format!(
                "{} damaged, {} duplicated",
                self.frames_corrupted, self.frames_duplicated
            ));
        }
        let accounted = self.frames_delivered + self.frames_dropped + self.frames_lost_with_host;
        if self.frames_sent != accounted {
            p.push(format!(
                "frames: sent {} != delivered {} + dropped {} + lost with host {}",
                self.frames_sent,
                self.frames_delivered,
                self.frames_dropped,
                self.frames_lost_with_host
            ));
        }
        let Some(c) = &self.cluster else {
            p.push("no cluster figures in a cluster scenario".into());
            return p;
        };
        if c.clients_unconnected > 0 {
            p.push(format!(
                "{} clients without a session at the end",
                c.clients_unconnected
            ));
        }
        if !c.managers_consistent {
            p.push("a tier-2 without exactly one manager".into());
        }
        p
    }
}

/// Nothing lost: the storage model's database against what the cameras captured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DurableSummary {
    pub frames_captured: u64,
    /// Distinct frames in the database.
    pub frames_stored: u64,
    /// Of those, frames that got there by backfill (they missed their live deadline).
    pub frames_stored_by_backfill: u64,
    /// Commits in all; above `frames_stored` when a frame was stored twice (idempotently).
    pub commits: u64,
    /// Backfilled frames the tier-2s received whole.
    pub backfill_deliveries: u64,
    /// Frames a full ring dropped unstored (each reported by its camera).
    pub frames_dropped_from_ring: u64,
    /// Frames unstored when their client crashed (a simulated ring is in memory).
    pub frames_lost_with_client: u64,
    /// Captured, not stored, not dropped, not lost with a client: still on their way at the
    /// end, or lost. Zero once the run has settled.
    pub frames_not_stored: u64,
    /// The first of those, as `session/frame`.
    pub first_not_stored: Vec<String>,
    /// Must be zero.
    pub stored_never_captured: u64,
}

/// The cluster's figures: connection set-up, failover, balance, management.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterSummary {
    /// Sessions obtained through tier-1 (first connections and reconnections).
    pub connections: u64,
    /// From a client's first request to the offer it took.
    pub setup_ms_p50: f64,
    pub setup_ms_p99: f64,
    pub setup_ms_max: f64,
    /// Reconnections after a session went quiet, and how long each took.
    pub failovers: u64,
    pub failover_ms_p50: f64,
    pub failover_ms_max: f64,
    /// Clients that lost their session and had no new one at the end.
    pub clients_unconnected: u64,
    /// Clients streaming to each live tier-2 at the end.
    pub tier2_sessions: BTreeMap<String, u64>,
    /// Jain's fairness index of those loads (1 = perfectly even).
    pub jain_index: f64,
    /// The most loaded tier-2 over the mean.
    pub max_over_mean: f64,
    /// Every live tier-2 has exactly one live manager, the one it names.
    pub managers_consistent: bool,
    /// The tier-2s each live tier-1 manages at the end.
    pub tier1_managed: BTreeMap<String, Vec<String>>,
}
