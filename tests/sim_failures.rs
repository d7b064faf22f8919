//! Reproducible failure scenarios (issue 3, item 6): 30% loss, bursty (Gilbert-Elliott) loss,
//! a 5 s partition mid-stream, and a link whose rate collapses. Each runs its scenario file
//! from `sim/scenarios/` with the seed's sender (no rate control) over 25 seeds and checks,
//! for every seed:
//!
//! - the protocol's promises: every frame captured is acknowledged within its deadline, or
//!   reported dropped when the deadline passes; none is delivered damaged or twice; none is
//!   acknowledged without being delivered (from the run's summary, and again from the trace,
//!   frame by frame);
//! - that the fault really happened and delivery is what the link allows: most frames still
//!   arrive under loss, none that the link could not carry, all of them once it is clean;
//! - that the segment size shrinks in the bad phase and grows back after it.
//!
//! A failure lists every failing seed with the command that replays it alone, e.g.
//! `LIVECAM_SEED=7 cargo test --test sim_failures loss30_keeps_promises_and_adapts -- --exact`.
//! `LIVECAM_SEEDS=500` runs more seeds.

mod common;

use common::{
    capture_end_s, final_size, for_each_seed, load_scenario, min_size_between, run_traced,
    show_series, size_at, size_problems, summary_problems, verdict, Run, Window,
};
use livecam_sim::scenario::{Fault, RoleKind};
use livecam_sim::Scenario;

const FILE: &str = module_path!();

/// `sim/scenarios/<file>` with the seed's sender (`rate_control = false`): these checks are
/// the patent's protocol under failures (its size rule shrinking under errors and overflow,
/// every frame either acknowledged or dropped at its deadline). The rate-controlled sender,
/// which drops at the source instead and keeps the queue from overflowing, is checked in
/// `tests/sim_capacity.rs`.
fn seed_sender(file: &str) -> Scenario {
    let mut scenario = load_scenario(file);
    scenario.protocol.rate_control = false;
    scenario
}

/// When the scenario's first fault that `pick` selects happens, in seconds.
fn fault_time(scenario: &Scenario, what: &str, pick: impl Fn(&Fault) -> bool) -> f64 {
    scenario
        .faults
        .iter()
        .filter(|f| pick(f))
        .map(Fault::at_s)
        .min_by(f64::total_cmp)
        .unwrap_or_else(|| panic!("scenario {:?} has no {what} fault", scenario.name))
}

fn deadline_s(scenario: &Scenario) -> f64 {
    scenario.protocol.frame_deadline_ms / 1000.0
}

/// Every promise, from the summary and from the trace.
fn promise_problems(scenario: &Scenario, run: &Run) -> Vec<String> {
    let mut problems = summary_problems(scenario, &run.outcome);
    problems.extend(run.frames.broken_promises());
    // Dropped means dropped at the deadline, promptly (no eviction: fewer frames are ever in
    // flight than the sender may hold); acknowledged means within it.
    problems.extend(run.frames.deadline_problems(deadline_s(scenario), 0.05));
    let traced = run.frames.by_id.len() as u64;
    if traced != run.outcome.summary.frames_sent {
        problems.push(format!(
            "the trace shows {traced} frames, the summary {} captured",
            run.outcome.summary.frames_sent
        ));
    }
    problems
}

/// Checks that at least `min_share` of the frames captured in `[from_s, until_s)` were
/// acknowledged (and that there were some).
fn expect_delivered(
    problems: &mut Vec<String>,
    run: &Run,
    from_s: f64,
    until_s: f64,
    min_share: f64,
    what: &str,
) -> Window {
    let w = run.frames.captured_between(from_s, until_s);
    if w.captured == 0 {
        problems.push(format!(
            "{what}: no frame captured in {from_s}..{until_s} s"
        ));
    } else if w.delivered_share() < min_share {
        problems.push(format!(
            "{what}: {} of {} frames captured in {from_s:.2}..{until_s:.2} s acknowledged \
             ({:.1}%), expected >= {:.0}%",
            w.acked,
            w.captured,
            100.0 * w.delivered_share(),
            100.0 * min_share
        ));
    }
    w
}

/// The shared checks of the two loss scenarios: loss on every link from the start, a
/// `set_link` fault to a clean link later. `cause` is the loss cause the link model must
/// report; `min_share_lossy` the share of frames that must still arrive under loss.
fn check_lossy_then_clean(
    scenario: &Scenario,
    seed: u64,
    cause: &str,
    min_share_lossy: f64,
) -> Result<(), String> {
    let clean_at = fault_time(scenario, "set_link", |f| matches!(f, Fault::SetLink { .. }));
    let end = capture_end_s(scenario);
    let start = scenario.workload.limits.initial;
    let run = run_traced(scenario, seed)?;
    let s = &run.outcome.summary;
    let mut problems = promise_problems(scenario, &run);

    // The loss happened, of the kind the scenario says, and the protocol repaired it.
    if run.frames.lost(cause) == 0 {
        problems.push(format!(
            "no datagram lost to {cause:?}; losses: {:?}",
            run.frames.losses
        ));
    }
    let other: u64 = run
        .frames
        .losses
        .iter()
        .filter(|(c, _)| c.as_str() != cause)
        .map(|(_, n)| n)
        .sum();
    if other != 0 {
        problems.push(format!(
            "datagrams lost to other causes than {cause:?}: {:?}",
            run.frames.losses
        ));
    }
    if s.segments_resent * 10 < s.segments_sent {
        problems.push(format!(
            "only {} of {} segments resent: the loss did not bite",
            s.segments_resent, s.segments_sent
        ));
    }
    // Most frames still arrive under loss; once the link is clean, every one does.
    expect_delivered(
        &mut problems,
        &run,
        0.0,
        clean_at,
        min_share_lossy,
        "under loss",
    );
    expect_delivered(&mut problems, &run, 0.0, end, min_share_lossy, "overall");
    expect_delivered(&mut problems, &run, clean_at + 0.5, end, 1.0, "clean link");
    // The size shrinks well below its start under loss (0.5 s after the loss ends is still
    // "just after": ACKs of frames cut under loss are still arriving), and grows back.
    problems.extend(size_problems(
        &run.outcome,
        0.0,
        clean_at + 0.5,
        start * 2 / 5,
        4 * start,
        10,
    ));
    verdict(&run.outcome, problems)
}

#[test]
fn loss30_keeps_promises_and_adapts() {
    let scenario = seed_sender("loss30.toml");
    for_each_seed("loss30_keeps_promises_and_adapts", FILE, |seed| {
        check_lossy_then_clean(&scenario, seed, "random", 0.9)
    });
}

#[test]
fn bursty_loss_keeps_promises_and_adapts() {
    let scenario = seed_sender("bursty.toml");
    for_each_seed("bursty_loss_keeps_promises_and_adapts", FILE, |seed| {
        check_lossy_then_clean(&scenario, seed, "burst", 0.9)
    });
}

#[test]
fn partition_keeps_promises_and_recovers() {
    let scenario = seed_sender("partition.toml");
    let cut_at = fault_time(&scenario, "partition", |f| {
        matches!(f, Fault::Partition { .. })
    });
    let healed_at = fault_time(&scenario, "repair", |f| matches!(f, Fault::Repair { .. }));
    let deadline = deadline_s(&scenario);
    let end = capture_end_s(&scenario);
    let start = scenario.workload.limits.initial;
    for_each_seed("partition_keeps_promises_and_recovers", FILE, |seed| {
        let run = run_traced(&scenario, seed)?;
        let mut problems = promise_problems(&scenario, &run);
        if run.frames.lost("partition") == 0 {
            problems.push("no datagram lost to the partition".into());
        }
        // Before the cut the link is nearly clean: everything arrives.
        expect_delivered(&mut problems, &run, 0.0, cut_at - deadline, 1.0, "before");
        // A frame whose whole deadline lies inside the partition cannot arrive: each is
        // given up (reported), none acknowledged.
        let cut = run.frames.captured_between(cut_at, healed_at - deadline);
        if cut.captured == 0 || cut.acked != 0 || cut.given_up != cut.captured {
            problems.push(format!(
                "frames captured in {cut_at}..{} s, inside the partition: {cut:?}, expected \
                 all given up",
                healed_at - deadline
            ));
        }
        // Only frames that met the partition are dropped ...
        let met = run.frames.captured_between(cut_at - deadline, healed_at);
        let dropped = run.outcome.summary.frames_dropped;
        if met.given_up as u64 != dropped {
            problems.push(format!(
                "{dropped} frames dropped, but only {} of them captured in {}..{healed_at} s",
                met.given_up,
                cut_at - deadline
            ));
        }
        // ... and streaming resumes at once: every frame captured after the heal arrives.
        expect_delivered(&mut problems, &run, healed_at, end, 1.0, "after the heal");
        // Size: it had grown on the good link; the frames cut by the partition shrink it;
        // it grows back.
        for (session, series) in &run.outcome.size_series {
            let before = size_at(series, cut_at);
            let low = min_size_between(series, cut_at, healed_at + 2.0);
            let last = final_size(series);
            // (The receiver may forget a session silent for longer than the partition, and
            // its policy then starts afresh: so "grown back" is judged against the low point
            // and the start size, not against the size before the cut.)
            let grown = (4 * start).max(low * 3 / 2);
            if before < 4 * start || low * 10 > before * 6 || last < grown {
                problems.push(format!(
                    "session {session}: segment size {before} at the cut, {low} at its lowest \
                     until 2 s after the heal, {last} at the end; expected the size to have \
                     grown to >= {} before, shrunk to <= 60% of it, and grown back to >= \
                     {grown} (4 x the start size, and 1.5 x the low); sizes: {}",
                    4 * start,
                    show_series(series)
                ));
            }
        }
        verdict(&run.outcome, problems)
    });
}

#[test]
fn rate_collapse_keeps_promises_and_recovers() {
    let scenario = seed_sender("rate_collapse.toml");
    let set_links: Vec<&Fault> = scenario
        .faults
        .iter()
        .filter(|f| matches!(f, Fault::SetLink { .. }))
        .collect();
    let [Fault::SetLink {
        at_s: collapse_at,
        config: collapsed,
        ..
    }, Fault::SetLink {
        at_s: restore_at, ..
    }] = set_links[..]
    else {
        panic!("rate_collapse.toml must have two set_link faults: collapse, then restore");
    };
    let (collapse_at, restore_at) = (*collapse_at, *restore_at);
    let rate = collapsed
        .rate_bytes_per_s
        .expect("the collapse sets rate_bytes_per_s");
    // The restore is scheduled, so the link model drains what is queued then at the restored
    // (unlimited) rate: it leaves at once, and what comes later waits behind nothing.
    let cameras = scenario
        .hosts()
        .iter()
        .filter(|h| h.role == RoleKind::Camera)
        .count() as f64;
    let deadline = deadline_s(&scenario);
    let end = capture_end_s(&scenario);
    let start = scenario.workload.limits.initial;
    let frame_bytes = scenario.workload.frame_bytes as f64;
    for_each_seed("rate_collapse_keeps_promises_and_recovers", FILE, |seed| {
        let run = run_traced(&scenario, seed)?;
        let mut problems = promise_problems(&scenario, &run);
        if run.frames.lost("queue_full") == 0 {
            problems.push(format!(
                "the collapsed link never overflowed its queue; losses: {:?}",
                run.frames.losses
            ));
        }
        expect_delivered(
            &mut problems,
            &run,
            0.0,
            collapse_at - deadline,
            1.0,
            "before",
        );
        // No more frames arrive than the collapsed links could carry: on each camera's link,
        // what it serializes at `rate` during the collapse, what its queue holds at the
        // restore (which then leaves at once), and the frames of the last deadline before the
        // restore whose lost segments are repaired after it.
        let during = run.frames.captured_between(collapse_at, restore_at);
        let per_link = ((restore_at - collapse_at) * rate + collapsed.queue_bytes as f64)
            / frame_bytes
            + deadline * scenario.workload.fps;
        let capacity = (cameras * per_link).ceil();
        if during.acked as f64 > capacity {
            problems.push(format!(
                "{} frames captured during the collapse acknowledged, but the link could carry \
                 at most {capacity}: {during:?}",
                during.acked
            ));
        }
        // Once the restore has let the queue out, every frame arrives.
        let clean_from = restore_at + deadline + 0.5;
        expect_delivered(
            &mut problems,
            &run,
            clean_from,
            end,
            1.0,
            "after the restore",
        );
        for (session, series) in &run.outcome.size_series {
            let before = size_at(series, collapse_at);
            let low = min_size_between(series, collapse_at, clean_from);
            let last = final_size(series);
            // The sender sees the size only in the ACKs that get back through the collapsed
            // reverse link, so its low is the size of the first ACK to survive the queue: the
            // receiver's policy goes lower. Over seeds 1-25 the low is 30-47% of the size
            // before (the queue leaves at the restore, so fewer ACKs come back late and small)
            // and the size at the end 2.1 x the low or more: the bounds are 50% and 2 x.
            if before < 4 * start || low * 2 > before || last < before / 2 || last < 2 * low {
                problems.push(format!(
                    "session {session}: segment size {before} at the collapse, {low} at its \
                     lowest until {clean_from:.2} s, {last} at the end; expected >= {} before, \
                     <= 50% of it at the low, and >= half of it and >= 2 x the low at the \
                     end; sizes: {}",
                    4 * start,
                    show_series(series)
                ));
            }
        }
        verdict(&run.outcome, problems)
    });
}
