//! The two-tier cluster under seeded simulation (issue: fan-out, first responder, hand-over,
//! failover). Each test runs its scenario from `sim/scenarios/` over several seeds; a failure
//! prints the `LIVECAM_SEED=... cargo test ...` command that replays it.
//!
//! Scenarios run on the discrete-event backend by default (the 100-client balance scenario is
//! out of turmoil's reach: its cost grows with hosts x links per 1 ms tick); the smaller ones
//! also run on turmoil (`*_on_turmoil`) so the same role code is exercised there too.

mod common;

use common::{for_seeds, load_scenario, replay_test};
use livecam_sim::scenario::Scenario;
use livecam_sim::summary::{ClusterSummary, Summary};
use livecam_sim::{Outcome, Simulator};

const FILE: &str = "cluster";

/// DES seeds per scenario (or only `LIVECAM_SEED`).
fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("LIVECAM_SEED") {
        Ok(s) => vec![s.trim().parse().expect("LIVECAM_SEED is a number")],
        Err(_) => (1..=count).collect(),
    }
}

fn run(
    backend: Simulator,
    scenario: &Scenario,
    seed: u64,
) -> Result<(Outcome, ClusterSummary), String> {
    let outcome = livecam_sim::run(backend, scenario, seed, None).map_err(|e| e.to_string())?;
    let cluster = outcome
        .summary
        .cluster
        .clone()
        .ok_or_else(|| "no cluster figures in a cluster scenario".to_string())?;
    Ok((outcome, cluster))
}

fn verdict(o: &Outcome, c: &ClusterSummary, problems: Vec<String>) -> Result<(), String> {
    let figures = format!(
        "seed {}: sent {} delivered {} dropped {}; connections {} setup p50/max {:.0}/{:.0} ms; \
         failovers {} max {:.0} ms; jain {:.3}; sessions {:?}; managed {:?}; trace {}",
        o.seed,
        o.summary.frames_sent,
        o.summary.frames_delivered,
        o.summary.frames_dropped,
        c.connections,
        c.setup_ms_p50,
        c.setup_ms_max,
        c.failovers,
        c.failover_ms_max,
        c.jain_index,
        c.tier2_sessions,
        c.tier1_managed,
        o.trace_hash
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n({figures})", problems.join("\n")))
    }
}

/// Every client got a session at least once.
fn all_connected(sc: &Scenario, c: &ClusterSummary, p: &mut Vec<String>) {
    if c.connections < clients(sc) {
        p.push(format!(
            "{} connections for {} clients",
            c.connections,
            clients(sc)
        ));
    }
}

fn clients(scenario: &Scenario) -> u64 {
    scenario
        .hosts()
        .iter()
        .filter(|h| h.role == livecam_sim::scenario::RoleKind::Mobile)
        .count() as u64
}

/// One RTT of the scenario's default link: twice the delay plus the jitter bound.
fn rtt_ms(s: &Scenario) -> f64 {
    2.0 * (s.link.delay_ms + s.link.jitter_ms)
}

fn balance(backend: Simulator, name: &str, seeds: &[u64]) {
    let sc = load_scenario("cluster-balance.toml");
    for_seeds(name, FILE, seeds, |seed| {
        let (o, c) = run(backend, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        all_connected(&sc, &c, &mut p);
        if c.tier2_sessions.len() != 6 {
            p.push(format!(
                "{} live tier-2s, expected 6",
                c.tier2_sessions.len()
            ));
        }
        if c.jain_index < 0.95 {
            p.push(format!("Jain index {:.3} < 0.95", c.jain_index));
        }
        if c.max_over_mean > 1.2 {
            p.push(format!(
                "busiest tier-2 at {:.2}x the mean > 1.2x",
                c.max_over_mean
            ));
        }
        verdict(&o, &c, p)
    });
}

#[test]
fn hundred_clients_spread_evenly_over_six_tier2s() {
    balance(
        Simulator::Des,
        "hundred_clients_spread_evenly_over_six_tier2s",
        &seeds(10),
    );
}

/// Checks that every frame dropped was superseded while its session was set up, at most one
/// per frame interval of the slowest set-up for each connection.
fn setup_only(s: &Summary, c: &ClusterSummary, fps: f64, p: &mut Vec<String>) {
    let other = s.frames_dropped - s.frames_superseded_at_setup;
    if other > 0 {
        p.push(format!("{other} frames dropped"));
    }
    let allowed = c.connections * (c.setup_ms_max / 1000.0 * fps).ceil() as u64;
    if s.frames_superseded_at_setup > allowed {
        p.push(format!(
            "{} frames superseded at set-up > {allowed} (one per frame interval of {:.0} ms for \
             each of {} connections)",
            s.frames_superseded_at_setup, c.setup_ms_max, c.connections
        ));
    }
}

fn drain(backend: Simulator, name: &str, seeds: &[u64]) {
    let sc = load_scenario("cluster-drain.toml");
    for_seeds(name, FILE, seeds, |seed| {
        let (o, c) = run(backend, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        let t10 = c.tier1_managed.get("t10").cloned().unwrap_or_default();
        let t11 = c.tier1_managed.get("t11").cloned().unwrap_or_default();
        if !t10.is_empty() || t11.len() != 4 {
            p.push(format!("after the drain t10 manages {t10:?}, t11 {t11:?}"));
        }
        // A connect offer the 2% loss took makes a set-up slow, and the session then opens
        // with the newest frame; the drain itself costs nothing.
        setup_only(&o.summary, &c, sc.workload.fps, &mut p);
        if c.failovers > 0 {
            p.push(format!("the drain cost {} sessions", c.failovers));
        }
        verdict(&o, &c, p)
    });
}

#[test]
fn a_draining_tier1_hands_every_tier2_to_its_peer() {
    drain(
        Simulator::Des,
        "a_draining_tier1_hands_every_tier2_to_its_peer",
        &seeds(10),
    );
}

#[test]
fn a_draining_tier1_hands_every_tier2_to_its_peer_on_turmoil() {
    drain(
        Simulator::Turmoil,
        "a_draining_tier1_hands_every_tier2_to_its_peer_on_turmoil",
        &seeds(2),
    );
}

fn tier1_crash(backend: Simulator, name: &str, seeds: &[u64]) {
    let sc = load_scenario("cluster-tier1-crash.toml");
    // A client that asked the dead tier-1 waits its connect timeout, then asks its backup:
    // one request, the forward, the offer, each a one-way trip, plus the offer delay.
    let bound = sc.cluster.connect_timeout_ms
        + 2.0 * rtt_ms(&sc)
        + sc.cluster.offer_delay.base_ms
        + sc.cluster.offer_delay.per_session_ms * clients(&sc) as f64;
    for_seeds(name, FILE, seeds, |seed| {
        let (o, c) = run(backend, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        all_connected(&sc, &c, &mut p);
        if c.setup_ms_max > bound {
            p.push(format!(
                "slowest set-up {:.0} ms > connect timeout + 2 RTT ({bound:.0} ms)",
                c.setup_ms_max
            ));
        }
        let t11 = c.tier1_managed.get("t11").cloned().unwrap_or_default();
        if t11.len() != 4 {
            p.push(format!("t11 manages {t11:?}, expected all four tier-2s"));
        }
        // A client that waited for its backup opens its session with the newest frame: the
        // captures of the wait are superseded, at most one per frame interval of it. Nothing
        // else is lost.
        setup_only(&o.summary, &c, sc.workload.fps, &mut p);
        verdict(&o, &c, p)
    });
}

#[test]
fn clients_fail_over_to_the_backup_when_a_tier1_crashes() {
    tier1_crash(
        Simulator::Des,
        "clients_fail_over_to_the_backup_when_a_tier1_crashes",
        &seeds(10),
    );
}

#[test]
fn clients_fail_over_to_the_backup_when_a_tier1_crashes_on_turmoil() {
    tier1_crash(
        Simulator::Turmoil,
        "clients_fail_over_to_the_backup_when_a_tier1_crashes_on_turmoil",
        &seeds(2),
    );
}

fn tier2_crash(backend: Simulator, name: &str, seeds: &[u64]) {
    let sc = load_scenario("cluster-tier2-crash.toml");
    let bound = 2.0 * rtt_ms(&sc)
        + sc.cluster.offer_delay.base_ms
        + sc.cluster.offer_delay.per_session_ms * clients(&sc) as f64;
    for_seeds(name, FILE, seeds, |seed| {
        let (o, c) = run(backend, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        if c.failovers == 0 {
            p.push("nobody was streaming to the crashed tier-2".into());
        }
        if c.failover_ms_max > bound {
            p.push(format!(
                "slowest reconnection {:.0} ms (after the {:.0} ms detection) > 2 RTT + offer delay ({bound:.0} ms)",
                c.failover_ms_max, sc.cluster.session_timeout_ms
            ));
        }
        if c.tier2_sessions.contains_key("t2a0") {
            p.push("the crashed tier-2 still counts as live".into());
        }
        // Frames in flight at the crash are resent to the new tier-2 within their deadline.
        // While the dead tier-2 is silent the rate control's window stays shut, so captures of
        // that time are superseded at the source (the newest wins): at most one per frame
        // interval of the silence (detection plus reconnection) per session that failed over.
        let silence_s = (sc.cluster.session_timeout_ms + c.failover_ms_max) / 1000.0;
        let allowed = c.failovers * (silence_s * sc.workload.fps).ceil() as u64;
        let lost = o.summary.frames_sent - o.summary.frames_delivered;
        if lost > allowed {
            p.push(format!(
                "{} of {} frames delivered: {lost} lost, at most {allowed} may be superseded",
                o.summary.frames_delivered, o.summary.frames_sent
            ));
        }
        verdict(&o, &c, p)
    });
}

#[test]
fn sessions_on_a_crashed_tier2_reconnect_and_resend() {
    tier2_crash(
        Simulator::Des,
        "sessions_on_a_crashed_tier2_reconnect_and_resend",
        &seeds(10),
    );
}

#[test]
fn sessions_on_a_crashed_tier2_reconnect_and_resend_on_turmoil() {
    tier2_crash(
        Simulator::Turmoil,
        "sessions_on_a_crashed_tier2_reconnect_and_resend_on_turmoil",
        &seeds(2),
    );
}

fn partition(backend: Simulator, name: &str, seeds: &[u64]) {
    let sc = load_scenario("cluster-partition.toml");
    for_seeds(name, FILE, seeds, |seed| {
        let (o, c) = run(backend, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        all_connected(&sc, &c, &mut p);
        verdict(&o, &c, p)
    });
}

#[test]
fn a_partition_between_tiers_moves_the_tier2s_and_settles() {
    partition(
        Simulator::Des,
        "a_partition_between_tiers_moves_the_tier2s_and_settles",
        &seeds(10),
    );
}

#[test]
fn a_partition_between_tiers_moves_the_tier2s_and_settles_on_turmoil() {
    partition(
        Simulator::Turmoil,
        "a_partition_between_tiers_moves_the_tier2s_and_settles_on_turmoil",
        &seeds(2),
    );
}

fn control_loss(backend: Simulator, name: &str, seeds: &[u64]) {
    let sc = load_scenario("cluster-control-loss.toml");
    for_seeds(name, FILE, seeds, |seed| {
        let (o, c) = run(backend, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        all_connected(&sc, &c, &mut p);
        let t10 = c.tier1_managed.get("t10").cloned().unwrap_or_default();
        if !t10.is_empty() {
            p.push(format!("t10 drained but still manages {t10:?}"));
        }
        verdict(&o, &c, p)
    });
}

#[test]
fn lost_and_duplicated_control_messages_still_settle() {
    control_loss(
        Simulator::Des,
        "lost_and_duplicated_control_messages_still_settle",
        &seeds(10),
    );
}

#[test]
fn lost_and_duplicated_control_messages_still_settle_on_turmoil() {
    control_loss(
        Simulator::Turmoil,
        "lost_and_duplicated_control_messages_still_settle_on_turmoil",
        &seeds(2),
    );
}

#[test]
fn the_cluster_scenario_prints_its_figures() {
    // `livecam sim` on a cluster scenario prints set-up latency, per-tier-2 load, the Jain
    // index and failover times.
    let sc = load_scenario("cluster-balance.toml");
    let (o, _) = run(Simulator::Des, &sc, 1).unwrap_or_else(|e| {
        panic!(
            "{e}\nreplay: {}",
            replay_test("the_cluster_scenario_prints_its_figures", FILE)
        )
    });
    let json = serde_json::to_value(&o).expect("outcome serialises");
    for key in [
        "setup_ms_p50",
        "setup_ms_p99",
        "tier2_sessions",
        "jain_index",
        "failover_ms_p50",
        "failover_ms_max",
    ] {
        assert!(json["cluster"].get(key).is_some(), "no {key} in {json}");
    }
}

#[test]
fn an_idle_tier1_hands_tier2s_to_a_busy_peer() {
    let name = "an_idle_tier1_hands_tier2s_to_a_busy_peer";
    let sc = load_scenario("cluster-skewed.toml");
    for_seeds(name, FILE, &seeds(5), |seed| {
        let (o, c) = run(Simulator::Des, &sc, seed)?;
        let mut p = o.summary.cluster_problems();
        let t10 = c.tier1_managed.get("t10").cloned().unwrap_or_default();
        if t10.len() < 5 {
            p.push(format!("t10 manages only {t10:?} after balancing"));
        }
        // Over the tier-2s serving t10's clients, the load is even.
        let loads: Vec<u64> = t10
            .iter()
            .filter_map(|t| c.tier2_sessions.get(t).copied())
            .collect();
        let mean = loads.iter().sum::<u64>() as f64 / loads.len().max(1) as f64;
        let max = loads.iter().copied().max().unwrap_or(0) as f64;
        if max > 1.3 * mean {
            p.push(format!("t10's tier-2s carry {loads:?}"));
        }
        verdict(&o, &c, p)
    });
}
