//! Bonded uplinks under simulation (issue 21): one keyed session over two modems, each with its
//! own network interface (`van.wwan1`), its own link and its own address in the des simulator.
//!
//! - `two_lossy_uplinks_carry_the_session_together`: `sim/scenarios/bonding-two-lossy.toml`,
//!   two uplinks losing 10% each. Every frame arrives, both uplinks carry a fair part of the
//!   session (the second one after its path challenge), and the repairs stay within 40% of
//!   the frame bytes. Prints the one-way p99 beside one modem with 1% loss
//!   (`bonding-one-link-1pct.toml`), the issue's latency target;
//!   `two_lossy_uplinks_with_adaptive_parity`: both with the tier-2's default adaptive
//!   parity, over seeds 1-12. Nothing is lost once the session is open and the repairs stay
//!   within 40%; it prints both p99s (the README's row: the target is not met).
//! - `an_uplink_that_dies_for_10_s_loses_no_frame`: `bonding-uplink-dies.toml`: the uplink that
//!   also carried the connection dies for 10 s. No frame is lost, the session is never lost
//!   (no reconnection), and frame latency p99 during the failure stays within the issue's
//!   bound: the normal p99 plus twice the survivor's round trip.
//! - `two_modems_carry_more_than_one`: `bonding-capacity.toml`, two 60 KB/s uplinks under a
//!   camera offering 100 KB/s carry more frame bytes than the first modem alone;
//!   `two_modems_with_parity_carry_nine_frames_in_ten`: the same with the tier-2's default
//!   adaptive parity delivers at least 90% of the frames (the issue's target).
//!
//! - `a_bonded_client_whose_tier2_dies_reconnects_and_bonds_again`: the tier-2 holding the
//!   bonded session crashes; the client reconnects through the tier-1 and every frame
//!   captured from 12 s on arrives.
//! - `a_client_whose_first_modem_is_dead_connects_by_the_second`:
//!   `bonding-first-modem-dead.toml`: the first modem reaches nobody from the start; the
//!   handshake moves to the second uplink after one connect timeout and every frame captured
//!   from 1 s on arrives.
//!
//! They run on the des simulator whatever `LIVECAM_BACKEND` says: it is the one that gives
//! each uplink an address of its own. Replay one seed with `livecam sim
//! sim/scenarios/<file> --seed N --trace t.jsonl`.

mod common;

use common::{for_seeds, load_scenario, Frames, SharedBuf};
use livecam_sim::summary::Summary;
use livecam_sim::{Outcome, Scenario, Simulator};
use livecam_system::stats::Samples;

/// Runs on the des simulator, the one that gives each uplink its own address (turmoil and
/// madsim refuse bonded hosts), with the trace.
fn run_des(scenario: &Scenario, seed: u64) -> Result<(Outcome, Vec<u8>), String> {
    let buf = SharedBuf::default();
    let outcome = livecam_sim::run(Simulator::Des, scenario, seed, Some(Box::new(buf.clone())))
        .map_err(|e| format!("run failed: {e}"))?;
    Ok((outcome, buf.take()))
}

/// Datagrams the tier-2 `t2` received from each of the van's uplinks, by the trace.
fn received_by_uplink(trace: &[u8]) -> (u64, u64) {
    let mut by = (0, 0);
    for line in std::str::from_utf8(trace).expect("UTF-8 trace").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON trace line");
        if v["host"] != "t2" || v["e"]["ev"] != "recv" {
            continue;
        }
        match v["e"]["from"].as_str() {
            Some("van") => by.0 += 1,
            Some("van.wwan1") => by.1 += 1,
            _ => {}
        }
    }
    by
}

/// Frame bytes acknowledged, at the sizes the camera adapted them to, by the trace.
fn acked_frame_bytes(trace: &[u8]) -> Result<f64, String> {
    let frames = Frames::from_trace(trace)?;
    Ok(frames
        .by_id
        .values()
        .filter(|f| f.acked_s.is_some())
        .map(|f| f.len as f64)
        .sum())
}

/// A scenario of `sim/scenarios/` with the tier-2's default adaptive parity (`fec = "auto"`)
/// in place of the scenario's NACK-only protocol.
fn with_adaptive_parity(file: &str) -> Scenario {
    let text = std::fs::read_to_string(common::scenario_path(file)).expect(file);
    assert!(
        text.contains("policy = \"model\"") && !text.contains("fec ="),
        "{file}: a NACK-only model-policy workload to give parity to"
    );
    Scenario::parse(&text.replace("policy = \"model\"", "policy = \"model\"\nfec = \"auto\""))
        .expect("the scenario with adaptive parity")
}

/// When the client first connected (its `connected` event), by the trace.
fn connected_at(trace: &[u8]) -> Option<f64> {
    std::str::from_utf8(trace)
        .ok()?
        .lines()
        .filter(|l| l.contains(r#""ev":"connected""#))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["t_us"].as_f64())
        .map(|us| us / 1e6)
}

/// Issue 21's budget for a bond's repairs: repair bytes at most 40% of frame bytes.
const REPAIR_BUDGET: f64 = 0.40;

/// What is wrong with a run's repairs, if they went over [`REPAIR_BUDGET`].
fn repair_over_budget(s: &Summary) -> Option<String> {
    (s.repair_ratio > REPAIR_BUDGET).then(|| {
        format!(
            "repair bytes {:.0}% of frame bytes, more than {:.0}%",
            s.repair_ratio * 100.0,
            REPAIR_BUDGET * 100.0
        )
    })
}

fn p99(values: impl Iterator<Item = f64>) -> f64 {
    let mut s = Samples::default();
    values.for_each(|v| s.push(v));
    if s.is_empty() {
        f64::INFINITY
    } else {
        s.quantile(0.99)
    }
}

#[test]
fn two_lossy_uplinks_carry_the_session_together() {
    let bonded = load_scenario("bonding-two-lossy.toml");
    let single = load_scenario("bonding-one-link-1pct.toml");
    for_seeds(
        "two_lossy_uplinks_carry_the_session_together",
        module_path!(),
        &[1, 2, 3],
        |seed| {
            let (outcome, trace) = run_des(&bonded, seed)?;
            let s = &outcome.summary;
            let (first, second) = received_by_uplink(&trace);
            let share = second as f64 / (first + second).max(1) as f64;
            let (baseline, _) = run_des(&single, seed)?;
            println!(
                "seed {seed}: {}/{} frames, uplinks carried {first}/{second} datagrams, repair \
                 {:.0}% of frame bytes, one-way p99 {:.0} ms (one modem at 1% loss: {:.0} ms)",
                s.frames_delivered,
                s.frames_sent,
                s.repair_ratio * 100.0,
                s.one_way_ms_p99,
                baseline.summary.one_way_ms_p99,
            );
            let mut problems = Vec::new();
            if s.frames_delivered != s.frames_sent || s.frames_sent < 250 {
                problems.push(format!(
                    "{} of {} frames delivered",
                    s.frames_delivered, s.frames_sent
                ));
            }
            if !(0.35..=0.65).contains(&share) {
                problems.push(format!(
                    "the second uplink carried {:.0}% of the datagrams",
                    share * 100.0
                ));
            }
            problems.extend(repair_over_budget(s));
            if s.cluster.as_ref().is_some_and(|c| c.failovers > 0) {
                problems.push("the session was lost".into());
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        },
    );
}

/// The latency row of the README with the tier-2's default adaptive parity on both sides:
/// two 10%-loss uplinks beside one modem at 1% loss, seeds 1-12.
/// Asserted: one connection, and every frame captured once the client connected arrives (on
/// a lossy link the set-up itself can take a second: seed 11's took 1,063 ms over three
/// attempts, its first frame's deadline passed meanwhile and nine more were superseded at
/// set-up); repairs within the issue's 40%.
/// Printed, not asserted: the one-way p99s (bonded 101-147 ms, one modem 61-108 ms: the
/// issue's "no worse" is not met).
#[test]
fn two_lossy_uplinks_with_adaptive_parity() {
    let bonded = with_adaptive_parity("bonding-two-lossy.toml");
    let single = with_adaptive_parity("bonding-one-link-1pct.toml");
    let seeds: Vec<u64> = (1..=12).collect();
    for_seeds(
        "two_lossy_uplinks_with_adaptive_parity",
        module_path!(),
        &seeds,
        |seed| {
            let (outcome, trace) = run_des(&bonded, seed)?;
            let s = &outcome.summary;
            let connected = connected_at(&trace).ok_or("the client never connected")?;
            let frames = Frames::from_trace(&trace)?;
            // Captured once connected; a capture instant skipped to fit the rate (`len` 0)
            // is no frame.
            let after: Vec<_> = frames
                .by_id
                .values()
                .filter(|f| f.len > 0 && f.captured_s >= connected)
                .collect();
            let arrived = after.iter().filter(|f| f.acked_s.is_some()).count();
            let (baseline, _) = run_des(&single, seed)?;
            println!(
                "seed {seed}: with adaptive parity {}/{} frames ({arrived}/{} captured after it \
                 connected at {connected:.3} s), repair {:.0}% of frame bytes, one-way p99 \
                 {:.0} ms (one modem at 1% loss: {:.0} ms, repair {:.0}%)",
                s.frames_delivered,
                s.frames_sent,
                after.len(),
                s.repair_ratio * 100.0,
                s.one_way_ms_p99,
                baseline.summary.one_way_ms_p99,
                baseline.summary.repair_ratio * 100.0,
            );
            let mut problems = Vec::new();
            if arrived != after.len() {
                problems.push(format!(
                    "{arrived} of {} frames captured after the client connected delivered",
                    after.len()
                ));
            }
            if after.len() < 250 {
                problems.push(format!(
                    "only {} frames captured after the client connected at {connected:.3} s",
                    after.len()
                ));
            }
            if s.cluster.as_ref().is_none_or(|c| c.connections != 1) {
                problems.push("not one connection".into());
            }
            problems.extend(repair_over_budget(s));
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        },
    );
}

#[test]
fn an_uplink_that_dies_for_10_s_loses_no_frame() {
    let scenario = load_scenario("bonding-uplink-dies.toml");
    // The survivor's round trip: 30 ms each way.
    let survivor_rtt_ms = 60.0;
    for_seeds(
        "an_uplink_that_dies_for_10_s_loses_no_frame",
        module_path!(),
        &[1, 2, 3],
        |seed| {
            let (outcome, trace) = run_des(&scenario, seed)?;
            let frames = Frames::from_trace(&trace)?;
            let s = &outcome.summary;
            let latencies = |from: f64, until: f64| {
                frames
                    .by_id
                    .values()
                    .filter(move |f| f.captured_s >= from && f.captured_s < until)
                    .filter_map(|f| f.latency_ms())
            };
            let normal = p99(latencies(1.0, 10.0));
            let failed = p99(latencies(10.0, 20.0));
            let during = frames.captured_between(10.0, 20.0);
            println!(
                "seed {seed}: {}/{} frames, during the failure {}/{} with p99 {failed:.0} ms \
                 (normal p99 {normal:.0} ms, bound {:.0} ms)",
                s.frames_delivered,
                s.frames_sent,
                during.acked,
                during.captured,
                normal + 2.0 * survivor_rtt_ms,
            );
            let mut problems = Vec::new();
            if s.frames_delivered != s.frames_sent || during.captured < 95 {
                problems.push(format!(
                    "{} of {} frames delivered ({} of {} during the failure)",
                    s.frames_delivered, s.frames_sent, during.acked, during.captured
                ));
            }
            if failed > normal + 2.0 * survivor_rtt_ms {
                problems.push(format!(
                    "p99 during the failure {failed:.0} ms, above the normal {normal:.0} ms + 2 \
                     x {survivor_rtt_ms} ms"
                ));
            }
            if s.cluster.as_ref().is_some_and(|c| c.failovers > 0) {
                problems.push("the session was lost and set up again".into());
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        },
    );
}

#[test]
fn two_modems_carry_more_than_one() {
    let text = std::fs::read_to_string(common::scenario_path("bonding-capacity.toml"))
        .expect("bonding-capacity.toml");
    let bonded = Scenario::parse(&text).expect("a scenario");
    // The same van with its first modem only.
    let cut = text
        .find("[[links]]\nfrom = \"van.wwan1\"")
        .expect("the second link");
    let one = Scenario::parse(&text[..cut].replace("uplinks = 2", "uplinks = 1"))
        .expect("the one-modem scenario");
    for_seeds(
        "two_modems_carry_more_than_one",
        module_path!(),
        &[1, 2],
        |seed| {
            let (two, two_trace) = run_des(&bonded, seed)?;
            let (single, single_trace) = run_des(&one, seed)?;
            let (two_bytes, single_bytes) = (
                acked_frame_bytes(&two_trace)?,
                acked_frame_bytes(&single_trace)?,
            );
            let (s, o) = (&two.summary, &single.summary);
            println!(
                "seed {seed}: two modems {}/{} frames, {:.0} KB of frames, repair {:.0}%; one \
             modem {}/{} frames, {:.0} KB (target: 90% of the frames at the full 100 KB/s)",
                s.frames_delivered,
                s.frames_sent,
                two_bytes / 1e3,
                s.repair_ratio * 100.0,
                o.frames_delivered,
                o.frames_sent,
                single_bytes / 1e3,
            );
            if s.frames_delivered >= o.frames_delivered && two_bytes > 1.2 * single_bytes {
                Ok(())
            } else {
                Err("two modems carried no more than one".into())
            }
        },
    );
}

#[test]
fn two_modems_with_parity_carry_nine_frames_in_ten() {
    // An uplink whose queue outgrew its ping wait was taken for silent; what it carried went
    // again by the other, whose queue overflowed, and the adaptive parity followed the loss:
    // 240 of 269 frames. Its resends are withdrawn once it answers.
    let scenario = with_adaptive_parity("bonding-capacity.toml");
    for_seeds(
        "two_modems_with_parity_carry_nine_frames_in_ten",
        module_path!(),
        &[1, 2],
        |seed| {
            let (outcome, trace) = run_des(&scenario, seed)?;
            let s = &outcome.summary;
            println!(
                "seed {seed}: with adaptive parity {}/{} frames, {:.0} KB of frames, repair {:.0}%",
                s.frames_delivered,
                s.frames_sent,
                acked_frame_bytes(&trace)? / 1e3,
                s.repair_ratio * 100.0,
            );
            if s.frames_delivered as f64 >= 0.9 * s.frames_sent as f64 {
                Ok(())
            } else {
                Err("fewer than 90% of the frames delivered".into())
            }
        },
    );
}

#[test]
fn a_bonded_client_whose_tier2_dies_reconnects_and_bonds_again() {
    // Two tier-2s; the van's links to both are the two uplinks of bonding-uplink-dies.toml,
    // without its fault. A first run finds the tier-2 that takes the session; the second
    // crashes that one at 8 s. The bond goes with the session (its pings need a tier-2) and
    // comes back with the next one.
    let text = std::fs::read_to_string(common::scenario_path("bonding-uplink-dies.toml"))
        .expect("bonding-uplink-dies.toml");
    let cut = text.find("[[faults]]").expect("the faults");
    let text = text[..cut].replace(
        "name = \"t2\"\nrole = \"tier2\"",
        "name = \"t2\"\nrole = \"tier2\"\ncount = 2",
    );
    let mut scenario = Scenario::parse(&text).expect("a scenario");
    scenario.name = "bonding-tier2-dies".into();
    for_seeds(
        "a_bonded_client_whose_tier2_dies_reconnects_and_bonds_again",
        module_path!(),
        &[1, 2],
        |seed| {
            let (first, _) = run_des(&scenario, seed)?;
            let holder = first
                .summary
                .cluster
                .as_ref()
                .and_then(|c| {
                    let mut held = c.tier2_sessions.iter().filter(|(_, &n)| n > 0);
                    held.next().map(|(name, _)| name.clone())
                })
                .ok_or("no tier-2 took the session")?;
            let crashed = format!(
                "{text}\n[[faults]]\nat_s = 8.0\naction = \"crash\"\nhost = \"{holder}\"\n"
            );
            let crashed = Scenario::parse(&crashed).map_err(|e| e.to_string())?;
            let (outcome, trace) = run_des(&crashed, seed)?;
            let frames = Frames::from_trace(&trace)?;
            let after = frames.captured_between(12.0, 27.0);
            let failovers = outcome.summary.cluster.as_ref().map_or(0, |c| c.failovers);
            println!(
                "seed {seed}: {holder} crashed at 8 s; {failovers} failover(s), {}/{} frames \
                 captured from 12 s delivered",
                after.acked, after.captured
            );
            if failovers >= 1 && after.captured >= 140 && after.delivered_share() >= 0.99 {
                Ok(())
            } else {
                Err(format!(
                    "{failovers} failovers, {} of {} frames from 12 s delivered",
                    after.acked, after.captured
                ))
            }
        },
    );
}

#[test]
fn a_client_whose_first_modem_is_dead_connects_by_the_second() {
    // bonding-first-modem-dead.toml: the first modem reaches nobody from the start. The
    // handshake tries it once (a 500 ms connect timeout), then goes by the second uplink, and
    // the session streams there.
    let scenario = load_scenario("bonding-first-modem-dead.toml");
    for_seeds(
        "a_client_whose_first_modem_is_dead_connects_by_the_second",
        module_path!(),
        &[1, 2],
        |seed| {
            let (outcome, trace) = run_des(&scenario, seed)?;
            let frames = Frames::from_trace(&trace)?;
            let after = frames.captured_between(1.0, 17.0);
            let (first, second) = received_by_uplink(&trace);
            let setup = outcome
                .summary
                .cluster
                .as_ref()
                .map_or(f64::INFINITY, |c| c.setup_ms_max);
            println!(
                "seed {seed}: connected after {setup:.0} ms; {}/{} frames captured from 1 s \
                 delivered; the tier-2 heard {first} datagrams by the first modem, {second} by \
                 the second",
                after.acked, after.captured
            );
            if after.captured >= 150 && after.delivered_share() >= 0.99 && first == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} frames from 1 s delivered (setup {setup:.0} ms)",
                    after.acked, after.captured
                ))
            }
        },
    );
}
