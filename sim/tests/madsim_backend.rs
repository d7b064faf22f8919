//! The madsim backend runs the same scenarios as the others, deterministically.
//!
//! Built and run only with `RUSTFLAGS="--cfg madsim"` (`.ci/run` does it in its own target
//! directory): `RUSTFLAGS="--cfg madsim" cargo test -p livecam-sim --test madsim_backend`.
#![cfg(madsim)]

use std::sync::Arc;

use livecam_sim::simulator::{self, madsim as madsim_simulator, Simulator};
use livecam_sim::Scenario;

/// Two cameras over a lossy, jittery link, with a partition and a link change mid-run.
const SCENARIO: &str = r#"
name = "madsim-check"
duration_s = 12.0
[workload]
fps = 10.0
frame_bytes = 8000
settle_s = 3.0
[[hosts]]
name = "server"
role = "receiver"
[[hosts]]
name = "cam"
role = "camera"
count = 2
target = "server"
[link]
loss = 0.1
delay_ms = 15.0
jitter_ms = 5.0
[[faults]]
at_s = 3.0
action = "partition"
a = "cam0"
b = "server"
[[faults]]
at_s = 4.5
action = "repair"
a = "cam0"
b = "server"
[[faults]]
at_s = 6.0
action = "set_link"
a = "cam"
b = "server"
config = { loss = 0.3, delay_ms = 15.0 }
"#;

const SEED: u64 = 42;

fn scenario() -> Scenario {
    Scenario::parse(SCENARIO).expect("the test scenario parses")
}

async fn simulate() -> String {
    let sc = scenario();
    let state = simulator::new_state(&sc, SEED, None);
    madsim_simulator::simulate(Arc::new(sc), SEED, state.clone()).await;
    let hash = livecam_sim::state::lock(&state).trace.hash();
    hash
}

#[test]
fn madsim_own_determinism_check_passes() {
    // madsim runs the future twice and fails if any random draw or timer differs.
    let hash =
        ::madsim::runtime::Runtime::check_determinism(SEED, madsim_simulator::config(), simulate);
    assert_eq!(hash.len(), 32);
}

#[test]
fn madsim_keeps_the_promises_and_repeats_its_trace() {
    let sc = scenario();
    let a = simulator::run(Simulator::Madsim, &sc, SEED, None).expect("madsim run");
    let b = simulator::run(Simulator::Madsim, &sc, SEED, None).expect("madsim run");
    assert!(a.summary.promises_kept, "{:?}", a.summary.violations);
    assert!(
        a.summary.frames_delivered > a.summary.frames_sent * 8 / 10,
        "{:?}",
        a.summary
    );
    assert_eq!(a.trace_hash, b.trace_hash);
    let c = simulator::run(Simulator::Madsim, &sc, SEED + 1, None).expect("madsim run");
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// A committed scenario of `sim/scenarios/`.
fn committed(file: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cluster roles under madsim: the failure suite's cluster scenarios (a tier-2 crash, a
/// tier-1 crash, a partition between the tiers, a drain, lossy control messages) keep every
/// cluster invariant, and the faults really happened (sessions failed over, the backup tier-1
/// took every tier-2). A failure names the scenario and seed, and how to replay it.
#[test]
fn madsim_runs_the_cluster_roles_through_their_faults() {
    let mut problems = Vec::new();
    for file in [
        "cluster-tier2-crash.toml",
        "cluster-tier1-crash.toml",
        "cluster-partition.toml",
        "cluster-drain.toml",
        "cluster-control-loss.toml",
    ] {
        let sc = committed(file);
        for seed in 1..=2 {
            let o = simulator::run(Simulator::Madsim, &sc, seed, None).expect("madsim run");
            let mut p = o.summary.cluster_problems();
            let c = o.summary.cluster.clone().unwrap_or_default();
            if c.connections == 0 {
                p.push("no session was ever set up".into());
            }
            if file == "cluster-tier2-crash.toml" && c.failovers == 0 {
                p.push("nobody failed over from the crashed tier-2".into());
            }
            if file == "cluster-tier1-crash.toml"
                && c.tier1_managed.get("t11").map(Vec::len) != Some(4)
            {
                p.push(format!(
                    "t11 manages {:?}, not all four tier-2s",
                    c.tier1_managed
                ));
            }
            if !p.is_empty() {
                problems.push(format!(
                    "{file} seed {seed} (livecam sim --backend madsim, built with \
                     RUSTFLAGS=\"--cfg madsim\", sim/scenarios/{file} --seed {seed}): {}",
                    p.join("; ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A cluster run repeats its trace under madsim too.
#[test]
fn madsim_repeats_a_cluster_trace() {
    let sc = committed("cluster-tier2-crash.toml");
    let a = simulator::run(Simulator::Madsim, &sc, 3, None).expect("madsim run");
    let b = simulator::run(Simulator::Madsim, &sc, 3, None).expect("madsim run");
    assert_eq!(a.trace_hash, b.trace_hash);
}

/// The explorer's drawn scenarios run on madsim too (`explore::run` with
/// `Simulator::Madsim`): the first 12 seeds whose draw holds no host clock fault (madsim
/// refuses `[[clocks]]`, as the scenario loader says) are judged for safety and liveness like
/// the des exploration in `tests/explore.rs`.
#[test]
fn madsim_explores_drawn_scenarios_and_judges_them() {
    use livecam_sim::explore;
    let mut judged = 0;
    let mut failed = Vec::new();
    for seed in 1.. {
        let drawn = explore::draw(seed);
        if !drawn.clocks.is_empty() {
            continue;
        }
        let case = explore::run(&drawn, Simulator::Madsim).expect("madsim runs a drawn scenario");
        if !case.verdict.passed() {
            failed.push(format!("seed {seed}: {}", case.verdict.lines().join("; ")));
        }
        judged += 1;
        if judged == 12 {
            break;
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
