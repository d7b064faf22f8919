//! The bounded exploration CI runs on every change: seeds 1 to 300 of `livecam explore`
//! (each a whole drawn scenario, 30 simulated seconds on the des simulator), judged for
//! safety and liveness.
//!
//! Safety must hold on every seed. A liveness failure must be one of [`KNOWN`]: failures the
//! explorer found that are not mended yet, each with what it is. A new one fails the test with
//! its replay command; a known one that passes again fails it too, so the list is kept true.

use livecam_sim::explore::{self, Plan};
use livecam_sim::Simulator;

/// Liveness failures the explorer found and that are still open, by seed: none today. The
/// range already caught and so keeps two mended bugs: seeds 231 and 267 drew durable mobiles
/// whose backlog was not stored by the end, because the rate control counted only live frames
/// as delivered (so the backfill never drained faster than the live stream ran) and a frame
/// with FEC gave it no round-trip sample while parity was still queued (so its target stayed
/// low for good after a dip). Seeds 29, 92, 169 and 294 keep a third: since simulated durable
/// cameras number their boots from their host's wall clock, as real ones do, a plain tier-2
/// that took a session without its request (the accept lost) stored its frames under ids they
/// did not have; a datagram of a reserved client now confirms it, and a storing tier-2 refuses
/// a session whose numbering it does not know.
///
/// Beyond the range CI runs, seeds 344 (a link that kept a dip's backlog), 415 (a longer path
/// read as a queue), 417 and 626 (a plain tier-2 restarted under a streaming durable client)
/// and 487 (a client that skipped the head of a draining tier-1's list) are mended; seed 1363
/// (one frame of a durable client not stored by the end, after a capacity dip with bursts) is
/// open (`livecam explore --first 1363 --seeds 1` replays and shrinks it).
const KNOWN: &[(u64, &str)] = &[];

const SEEDS: u64 = 300;

#[test]
fn a_bounded_exploration_keeps_safety_everywhere_and_liveness_but_for_known_findings() {
    let plan = Plan {
        first: 1,
        count: Some(SEEDS),
        deadline: None,
        jobs: 2,
        backend: Simulator::Des,
        traces: Vec::new(),
        mutant: None,
    };
    let mut safety = Vec::new();
    let mut liveness = Vec::new();
    let mut cases = 0;
    let ran = explore::explore(&plan, |seed, case| {
        let case = case.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        cases += 1;
        let replay = format!(
            "seed {seed}: {}\n  replay: write `explore::draw({seed}).toml()` (or run \
             `livecam explore --first {seed} --seeds 1`) and `livecam sim` it",
            case.verdict.lines().join("; ")
        );
        if !case.verdict.safety.is_empty() {
            safety.push(replay);
        } else if !case.verdict.liveness.is_empty() {
            liveness.push((seed, replay));
        }
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!((ran, cases), (SEEDS, SEEDS));
    assert!(safety.is_empty(), "safety broken:\n{}", safety.join("\n"));
    let new: Vec<&String> = liveness
        .iter()
        .filter(|(s, _)| !KNOWN.iter().any(|(k, _)| k == s))
        .map(|(_, r)| r)
        .collect();
    assert!(
        new.is_empty(),
        "new liveness failures:\n{}",
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mended: Vec<u64> = KNOWN
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k <= SEEDS && !liveness.iter().any(|(s, _)| s == k))
        .collect();
    assert!(
        mended.is_empty(),
        "known failures that pass now (take them off KNOWN): {mended:?}"
    );
}

#[test]
fn a_drawn_scenario_replays_exactly_and_a_real_failure_shrinks() {
    // A real property that drawn scenarios can break: "at least 90% of the frames sent are
    // delivered live" (faults and lossy links make many fall short; none of that is a bug).
    let short = |c: &explore::Case| {
        (c.summary.frames_delivered as f64) < 0.9 * c.summary.frames_sent as f64
    };
    let case = (1..)
        .map(|seed| explore::run(&explore::draw(seed), Simulator::Des).expect("runs"))
        .find(|c| short(c) && c.drawn.hosts() >= 8 && c.drawn.faults.len() >= 2)
        .expect("such a seed");
    let drawn = &case.drawn;
    let again = explore::run(drawn, Simulator::Des).expect("runs");
    assert_eq!(again.trace_hash, case.trace_hash, "a function of the seed");
    // What `livecam sim` of the written file runs is the same scenario.
    let replayed = livecam_sim::run(
        Simulator::Des,
        &livecam_sim::Scenario::parse(&drawn.toml()).expect("the file loads"),
        drawn.seed,
        None,
    )
    .expect("runs");
    assert_eq!(replayed.trace_hash, case.trace_hash);
    let (small, runs) = explore::shrink(drawn, 80, |d| {
        explore::run(d, Simulator::Des).is_ok_and(|c| short(&c))
    });
    assert!(runs > 0);
    assert!(short(&explore::run(&small, Simulator::Des).expect("runs")));
    assert!(
        small.hosts() + small.faults.len() < drawn.hosts() + drawn.faults.len(),
        "{} hosts and {} faults from {} and {}",
        small.hosts(),
        small.faults.len(),
        drawn.hosts(),
        drawn.faults.len()
    );
}

/// The same judgement with recorded uplinks in the draw: one scenario in three takes a link's
/// capacity from a trace of `../shared/data/cellular` (GPLv3 data from mahimahi, read from
/// there, never copied here). Without the directory the test says so and passes, unless
/// `LIVECAM_REQUIRE_TRACES=1` (CI) makes that a failure.
#[test]
fn an_exploration_with_the_recorded_uplinks_keeps_safety_and_liveness() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cellular");
    let mut traces: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "up"))
            .map(|p| p.display().to_string())
            .collect(),
        Err(e) => {
            assert!(
                std::env::var("LIVECAM_REQUIRE_TRACES").is_err(),
                "{}: {e}",
                dir.display()
            );
            eprintln!("skipped: no traces at {} ({e})", dir.display());
            return;
        }
    };
    traces.sort();
    assert!(!traces.is_empty(), "no .up traces in {}", dir.display());
    let plan = Plan {
        first: 1,
        count: Some(100),
        deadline: None,
        jobs: 2,
        backend: Simulator::Des,
        traces,
        mutant: None,
    };
    let mut failed = Vec::new();
    let mut with_trace = 0;
    explore::explore(&plan, |seed, case| {
        let case = case.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let mut links =
            std::iter::once(&case.drawn.link).chain(case.drawn.overrides.iter().map(|o| &o.2));
        with_trace += u64::from(links.any(|l| l.trace.is_some()));
        if !case.verdict.passed() {
            failed.push(format!("seed {seed}: {}", case.verdict.lines().join("; ")));
        }
        std::ops::ControlFlow::Continue(())
    });
    assert!(
        with_trace >= 20,
        "{with_trace} of 100 scenarios drew a trace"
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
