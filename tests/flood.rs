//! `livecam bench flood` at a low rate: real tier-1 and secured tier-2 processes, a legitimate
//! authenticated load, and a flood of garbage and unauthenticated datagrams at the tier-2.
//! Only generous bounds: the tier-2's memory stays bounded, the legitimate sessions keep
//! delivering, and the tier-2 counted what it refused.

use std::path::PathBuf;

use livecam_system::runtime::flood::{run_flood, FloodOptions};

#[test]
fn a_flood_leaves_tier2_memory_bounded_and_the_legitimate_sessions_delivering() {
    let opts = FloodOptions {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_livecam")),
        rate: 20_000,
        seconds: 6.0,
        baseline_seconds: 2.0,
        cameras: 2,
        ..FloodOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = tokio::task::LocalSet::new()
        .block_on(&rt, run_flood(&opts))
        .expect("the bench runs");
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    // The flood went out (at least half the offered datagrams, generously).
    assert!(
        report.flood.datagrams >= 20_000 * 6 / 2,
        "flood sent only {}",
        report.flood.datagrams
    );
    // Memory stays bounded: nothing is kept per flood datagram.
    assert!(
        report.tier2_rss_growth_bytes < 32 << 20,
        "tier-2 RSS grew {} bytes",
        report.tier2_rss_growth_bytes
    );
    // The legitimate sessions are up and still deliver under flood.
    assert_eq!(report.under_flood.sessions_established, 2);
    assert!(
        report.under_flood.delivered_ratio >= 0.5,
        "{:?}",
        report.under_flood
    );
    // The tier-2 counted the unauthenticated session datagrams it refused (four ninths of the
    // mix: garbage, plain segments, sealed for random and for real sessions).
    let rejected = report.tier2_datagrams_rejected.expect("tier-2 summary");
    assert!(
        rejected >= report.flood.datagrams / 4,
        "rejected {rejected} of {}",
        report.flood.datagrams
    );
    // Its control plane refused the unsigned commands, manager changes and forwards, and the
    // forged signatures (checked until the strangers' budget ran out, then refused unchecked);
    // the tier-1's forwards, on their known path, still came through: the sessions above were
    // set up during the flood.
    let control = report
        .tier2_control
        .expect("a secured tier-2 has a control plane");
    let count = |k: &str| control.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(
        count("unsigned") >= report.flood.datagrams / 9,
        "control: {control}"
    );
    assert!(count("forged") > 0, "control: {control}");
    assert!(count("accepted") > 0, "control: {control}");
}
