//! The mutation check: does the explorer find known bugs? Each of the ten mutants of
//! `livecam_system::mutants` is switched in alone and the explorer runs seeds from 1 until one
//! fails that passes without the mutant. At least nine of the ten must be found within the
//! budget, and every found failure must shrink to 5 hosts and 2 faults or fewer.
//!
//! Built only with the `mutants` feature (`.ci/run`:
//! `cargo test -p livecam-sim --features mutants --test mutants`); the long form with a 2,000
//! seed budget and 50-host growth is `livecam explore --mutants` (README, "The scenario
//! explorer").
#![cfg(feature = "mutants")]

use livecam_sim::explore::{self, Plan};
use livecam_sim::Simulator;
use livecam_system::mutants::Mutant;

/// Seeds per mutant here (the budget is 2,000; every mutant found today is found
/// within the first 266).
const BUDGET: u64 = 300;

#[test]
fn the_explorer_finds_at_least_nine_of_the_ten_known_bugs_and_shrinks_what_it_finds() {
    let plan = Plan {
        first: 1,
        count: Some(BUDGET),
        deadline: None,
        jobs: 2,
        backend: Simulator::Des,
        traces: Vec::new(),
        mutant: None,
    };
    let mut found = Vec::new();
    let mut missed = Vec::new();
    for m in Mutant::ALL {
        let hunt = explore::hunt(m, &plan).expect("the mutant runs");
        match hunt.found {
            Some(case) => {
                // Found means: fails with the mutant, passes without it (hunt checks this).
                assert!(!case.verdict.passed());
                found.push((m, case));
            }
            None => missed.push(m.name()),
        }
    }
    assert!(
        found.len() >= 9,
        "found {} of 10; missed {missed:?}",
        found.len()
    );
    // Every failure found shrinks to a handful of hosts and faults (the bound; from
    // the found scenario here, from 50 hosts in `livecam explore --mutants`).
    let mut sizes = Vec::new();
    for (m, case) in &found {
        let fails = |d: &explore::Drawn| {
            explore::with_mutant(Some(*m), || explore::run(d, Simulator::Des))
                .is_ok_and(|r| r.is_ok_and(|c| c.verdict.fails_like(&case.verdict)))
        };
        let (small, _) = explore::shrink(&case.drawn, 60, fails);
        assert!(
            fails(&small),
            "{}: the shrunk scenario still fails",
            m.name()
        );
        sizes.push((m.name(), small.hosts(), small.faults.len()));
    }
    println!("shrunk to (mutant, hosts, faults): {sizes:?}");
    let big: Vec<_> = sizes.iter().filter(|s| s.1 > 5 || s.2 > 2).collect();
    assert!(
        big.is_empty(),
        "not shrunk to 5 hosts and 2 faults: {big:?}"
    );
}
