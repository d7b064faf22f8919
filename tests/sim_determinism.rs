//! Determinism (issue 3, item 4): a simulation is a function of (scenario, seed). The same
//! pair gives the same trace hash on every run; different seeds give different traces; the
//! hash covers the scenario too, and writing the trace out does not change the run. Also:
//! scenario files that are wrong are refused with an error naming the field at fault.
//!
//! The scenario, `sim/scenarios/determinism.toml`, is small but uses every source of
//! randomness and every kind of fault: loss, jitter, duplication, reordering, bit errors that
//! reach the receiver, a partition, a crash and a restart.
//!
//! A failing seed prints the command that replays it, e.g.
//! `LIVECAM_SEED=7 cargo test --test sim_determinism same_seed_gives_same_trace -- --exact`.

mod common;

use std::collections::BTreeSet;

use common::{
    backend_arg, for_each_seed, for_seeds, load_scenario, replay_test, run, run_with_trace,
    scenario_path, seeds, summary_problems, Frames,
};
use livecam_sim::scenario::Fault;
use livecam_sim::{Outcome, Scenario};

const FILE: &str = module_path!();
const SCENARIO: &str = "determinism.toml";

/// What must be equal between two runs of the same scenario and seed.
fn differences(a: &Outcome, b: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if a.trace_hash != b.trace_hash {
        out.push(format!("trace hash {} != {}", a.trace_hash, b.trace_hash));
    }
    if a.trace_events != b.trace_events {
        out.push(format!(
            "trace events {} != {}",
            a.trace_events, b.trace_events
        ));
    }
    if a.summary != b.summary {
        out.push(format!("summary {:?}\n  != {:?}", a.summary, b.summary));
    }
    if a.size_series != b.size_series {
        out.push("segment size series differ".into());
    }
    if a.sim_seconds != b.sim_seconds {
        out.push(format!(
            "simulated seconds {} != {}",
            a.sim_seconds, b.sim_seconds
        ));
    }
    out
}

#[test]
fn same_seed_gives_same_trace() {
    let scenario = load_scenario(SCENARIO);
    for_each_seed("same_seed_gives_same_trace", FILE, |seed| {
        let first = run(&scenario, seed)?;
        // The second run is on a fresh thread: nothing thread-local may leak into a run.
        let second = std::thread::scope(|s| {
            s.spawn(|| run(&scenario, seed))
                .join()
                .unwrap_or_else(|_| Err("the second run panicked".into()))
        })?;
        let mut problems = differences(&first, &second);
        if first.trace_events < 1000 {
            problems.push(format!(
                "only {} trace events: the run did not happen",
                first.trace_events
            ));
        }
        problems.extend(summary_problems(&scenario, &first));
        println!(
            "seed {seed}: {} ({} events, {} frames acked of {})",
            first.trace_hash,
            first.trace_events,
            first.summary.frames_delivered,
            first.summary.frames_sent
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
}

/// Within one process, state that is fixed per process (addresses, the process id, anything
/// computed once at start-up) could make two runs agree that no other process would repeat.
/// So: the `livecam sim` command, in a process of its own, must give the same hash.
#[test]
fn another_process_gives_the_same_trace() {
    let scenario = load_scenario(SCENARIO);
    let path = scenario_path(SCENARIO);
    let seeds: Vec<u64> = seeds().into_iter().take(4).collect();
    for_seeds(
        "another_process_gives_the_same_trace",
        FILE,
        &seeds,
        |seed| {
            let here = run(&scenario, seed)?;
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_livecam"))
                .arg("sim")
                .arg(&path)
                .args(["--seed", &seed.to_string(), "--backend", backend_arg()])
                .output()
                .map_err(|e| format!("running livecam sim: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "livecam sim failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let json: serde_json::Value = serde_json::from_slice(&output.stdout)
                .map_err(|e| format!("livecam sim printed no JSON object: {e}"))?;
            let there = json["trace_hash"].as_str().unwrap_or_default();
            if there == here.trace_hash {
                Ok(())
            } else {
                Err(format!(
                    "trace hash {} in the test, {there:?} from `livecam sim {} --seed {seed} \
                 --backend {}`",
                    here.trace_hash,
                    path.display(),
                    backend_arg()
                ))
            }
        },
    );
}

#[test]
fn different_seeds_give_different_traces() {
    let scenario = load_scenario(SCENARIO);
    let seeds: Vec<u64> = (1..=20).collect();
    let mut hashes = Vec::new();
    let mut losses = BTreeSet::new();
    for &seed in &seeds {
        let outcome = run(&scenario, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(outcome.seed, seed);
        assert_eq!(
            outcome.trace_hash.len(),
            32,
            "seed {seed}: trace hash {:?} is not 32 hex digits",
            outcome.trace_hash
        );
        hashes.push((outcome.trace_hash.clone(), seed));
        losses.insert(outcome.summary.datagrams_lost_by_link);
    }
    let replay = replay_test("different_seeds_give_different_traces", FILE);
    let mut shared: Vec<&(String, u64)> = hashes
        .iter()
        .filter(|(h, _)| hashes.iter().filter(|(o, _)| o == h).count() > 1)
        .collect();
    shared.sort();
    assert!(
        shared.is_empty(),
        "seeds sharing a trace hash: {shared:?}\nreplay: {replay}"
    );
    // The seed drives the link models, not just the hash: the runs really differ.
    assert!(
        losses.len() > seeds.len() / 2,
        "only {} distinct loss counts over {} seeds: {losses:?}\nreplay: {replay}",
        losses.len(),
        seeds.len()
    );
}

#[test]
fn trace_file_does_not_change_the_run() {
    let scenario = load_scenario(SCENARIO);
    let seed = 7;
    let plain = run(&scenario, seed).expect("run without a trace file");
    let (traced, bytes) = run_with_trace(&scenario, seed).expect("run with a trace file");
    let (again, bytes_again) = run_with_trace(&scenario, seed).expect("second traced run");
    let replay = format!(
        "replay: {}",
        replay_test("trace_file_does_not_change_the_run", FILE)
    );
    assert_eq!(
        differences(&plain, &traced),
        Vec::<String>::new(),
        "a trace file changed the run; {replay}"
    );
    assert!(
        bytes == bytes_again,
        "the trace lines differ between two runs of seed {seed}; {replay}"
    );
    assert_eq!(again.trace_hash, traced.trace_hash, "{replay}");
    let text = String::from_utf8(bytes).expect("trace is UTF-8");
    assert_eq!(
        text.lines().count() as u64,
        traced.trace_events,
        "one trace line per event; {replay}"
    );
    // The trace is readable, and shows what the scenario promises to exercise: damaged
    // datagrams reaching the receiver (and refused), duplicates, each kind of loss, faults.
    let frames = Frames::from_trace(text.as_bytes()).expect("trace lines parse");
    assert!(
        frames.lost("random") > 0 && frames.lost("partition") > 0,
        "losses: {:?}; {replay}",
        frames.losses
    );
    let damaged_received = text
        .lines()
        .filter(|l| l.contains(r#""ev":"recv""#) && l.contains(r#""kind":"undecodable""#))
        .count();
    assert!(
        damaged_received > 0,
        "no damaged datagram reached the receiver: bit errors not exercised; {replay}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(r#""ev":"fault""#))
            .count(),
        scenario.faults.len(),
        "every fault is in the trace; {replay}"
    );
    assert_eq!(traced.summary.frames_corrupted, 0, "{replay}");
    assert_eq!(traced.summary.frames_duplicated, 0, "{replay}");
}

#[test]
fn the_hash_covers_the_scenario() {
    let scenario = load_scenario(SCENARIO);
    let seed = 3;
    let base = run(&scenario, seed).expect("base run").trace_hash;

    let mut more_loss = scenario.clone();
    more_loss.link.loss += 0.01;
    let mut later_cut = scenario.clone();
    for f in &mut later_cut.faults {
        if let Fault::Partition { at_s, .. } = f {
            *at_s += 0.01;
        }
    }
    for (what, changed) in [
        ("loss + 0.01", more_loss),
        ("partition 10 ms later", later_cut),
    ] {
        changed.validate().expect("still valid");
        let hash = run(&changed, seed).expect("changed run").trace_hash;
        assert_ne!(
            hash,
            base,
            "{what}: same trace hash as the original scenario (seed {seed}); replay: {}",
            replay_test("the_hash_covers_the_scenario", FILE)
        );
    }
}

/// A valid scenario that the bad cases below each break in one place.
const BASE: &str = r#"
name = "base"
duration_s = 10.0

[workload]
fps = 10.0
frame_bytes = 10000

[protocol]
frame_deadline_ms = 1000.0

[[hosts]]
name = "server"
role = "receiver"

[[hosts]]
name = "cam"
role = "camera"
count = 2
target = "server"

[link]
loss = 0.05
jitter_ms = 5.0

[[links]]
from = "cam0"
to = "server"
config = { loss = 0.1, burst = { p_good_to_bad = 0.01 } }

[[faults]]
at_s = 3.0
action = "partition"
a = "cam"
b = "server"

[[faults]]
at_s = 5.0
action = "set_link"
a = "cam1"
b = "server"
config = { jitter_ms = 2.0 }
"#;

#[test]
fn bad_scenario_file_names_the_field() {
    let dir = std::env::temp_dir().join(format!("livecam-bad-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let load = |name: &str, text: &str| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write scenario");
        Scenario::load(&path)
    };
    load("base", BASE).expect("the base scenario is valid");

    // (what is broken, text replaced, replacement, what the message must name)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "link loss",
            "loss = 0.05",
            "loss = 1.5",
            &["link", "loss", "1.5"],
        ),
        (
            "negative jitter",
            "[link]\nloss = 0.05\njitter_ms = 5.0",
            "[link]\nloss = 0.05\njitter_ms = -5.0",
            &["link", "jitter_ms"],
        ),
        (
            "override burst",
            "p_good_to_bad = 0.01",
            "p_good_to_bad = 2.0",
            &["links[0].config", "burst.p_good_to_bad"],
        ),
        (
            "override host",
            "from = \"cam0\"",
            "from = \"cam7\"",
            &["links[0].from", "cam7"],
        ),
        (
            "camera target",
            "target = \"server\"",
            "target = \"srv\"",
            &["hosts[1].target", "srv"],
        ),
        (
            "fault host",
            "a = \"cam1\"",
            "a = \"nobody\"",
            &["faults[1].a", "nobody"],
        ),
        (
            "fault time",
            "at_s = 5.0",
            "at_s = 50.0",
            &["faults[1].at_s"],
        ),
        (
            "fault link",
            "config = { jitter_ms = 2.0 }",
            "config = { jitter_ms = 2.0, mtu = 20 }",
            &["faults[1].config", "mtu"],
        ),
        ("fps", "fps = 10.0", "fps = 0.0", &["workload.fps"]),
        (
            "deadline",
            "frame_deadline_ms = 1000.0",
            "frame_deadline_ms = -1.0",
            &["protocol.frame_deadline_ms"],
        ),
        (
            "misspelt link field",
            "loss = 0.05",
            "los = 0.05",
            &["`los`"],
        ),
        (
            "wrong type",
            "duration_s = 10.0",
            "duration_s = \"ten\"",
            &["duration_s"],
        ),
        (
            "unknown action",
            "action = \"partition\"",
            "action = \"explode\"",
            &["explode"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, &(what, from, to, names)) in cases.iter().enumerate() {
        assert!(BASE.contains(from), "case {what}: {from:?} not in the base");
        let text = BASE.replacen(from, to, 1);
        match load(&format!("case{i}"), &text) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let message = e.to_string();
                for name in names {
                    if !message.contains(name) {
                        failures.push(format!("{what}: error {message:?} does not name {name:?}"));
                    }
                }
            }
        }
    }
    let missing = dir.join("no-such-scenario.toml");
    match Scenario::load(&missing) {
        Ok(_) => failures.push("a missing file loaded".into()),
        Err(e) if !e.to_string().contains("no-such-scenario.toml") => {
            failures.push(format!("missing file: {e:?} does not name the file"))
        }
        Err(_) => {}
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{}\nreplay: {}",
        failures.join("\n"),
        replay_test("bad_scenario_file_names_the_field", FILE)
    );
}

#[test]
fn every_scenario_file_loads_and_says_what_it_shows() {
    let dir = scenario_path("");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sim/scenarios")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "scenario files: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with('#'),
            "{}: no comment header saying what it shows",
            path.display()
        );
        Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
