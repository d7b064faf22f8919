//! The committed reference report cannot go stale: this test regenerates it with the real
//! binary (`livecam experiment run --all --quick`, a deterministic simulation, ~10 s) and fails
//! when any file differs from what `reports/` holds, or when a committed file of an experiment
//! is no longer written. A protocol change that moves a figure therefore lands with its report,
//! in the same commit.
//!
//! What is compared: every file under `reports/` once the simulated experiments' directories
//! (those `livecam experiment list` names) are rewritten from scratch, so `reports/index.html`, which
//! lists every report, is checked too. Each experiment's `NOTES.md` (hand-written history) is
//! kept. The reports of real-time runs (the emulator's, the simulator's speed) are measurements
//! of a machine, not functions of the code; they are carried over as they are, not compared.
//!
//! To bring the reports up to date: `cargo run --release -- experiment run --all --quick`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("read report file");
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The names of the simulated experiments, as `livecam experiment list` gives them, and
/// whether each can run here (one that reads the recorded LTE traces cannot where
/// `../shared/data/cellular` is not: its committed report is then carried over, not compared,
/// unless `LIVECAM_REQUIRE_TRACES=1`, as in CI, makes that a failure).
fn experiments() -> Vec<(String, bool)> {
    let out = Command::new(env!("CARGO_BIN_EXE_livecam"))
        .args(["experiment", "list"])
        .output()
        .expect("run livecam experiment list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().next()?.to_string();
            let runs = !l.contains("[cannot run here");
            assert!(
                runs || std::env::var("LIVECAM_REQUIRE_TRACES").is_err(),
                "{l}"
            );
            Some((name, runs))
        })
        .collect()
}

#[test]
fn the_committed_quick_report_is_what_this_commit_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = files(&root.join("reports"));
    let listed = experiments();
    assert!(!listed.is_empty(), "no experiments/*.toml");
    for (name, _) in listed.iter().filter(|(_, runs)| !runs) {
        eprintln!("{name}: carried over, not compared (no recorded traces here)");
    }
    let names: Vec<String> = listed
        .into_iter()
        .filter_map(|(name, runs)| runs.then_some(name))
        .collect();

    // The committed tree, minus what the run must write itself.
    let out = tempfile::tempdir().expect("temp dir");
    for (rel, bytes) in &committed {
        let first = rel.components().next().and_then(|c| c.as_os_str().to_str());
        let regenerated = first.is_some_and(|d| names.iter().any(|n| n == d))
            && rel.file_name().is_some_and(|f| f != "NOTES.md");
        if regenerated || rel == Path::new("index.html") {
            continue;
        }
        let path = out.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("copy report file");
    }

    let run = Command::new(env!("CARGO_BIN_EXE_livecam"))
        .args(["experiment", "run", "--all", "--quick", "--out"])
        .arg(out.path())
        .output()
        .expect("run livecam experiment");
    assert!(
        run.status.success(),
        "experiment run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    let fresh = files(out.path());
    let mut problems = Vec::new();
    for (rel, bytes) in &fresh {
        match committed.get(rel) {
            None => problems.push(format!("{}: written but not committed", rel.display())),
            Some(old) if old != bytes => problems.push(format!("{}: differs", rel.display())),
            Some(_) => {}
        }
    }
    for rel in committed.keys().filter(|rel| !fresh.contains_key(*rel)) {
        problems.push(format!(
            "{}: committed but no longer written",
            rel.display()
        ));
    }
    for name in &names {
        if !fresh.keys().any(|rel| rel.starts_with(name)) {
            problems.push(format!("{name}: experiment wrote no report"));
        }
    }
    assert!(
        problems.is_empty(),
        "reports/ is stale; regenerate it with `cargo run --release -- experiment run --all \
         --quick` and commit the result:\n  {}",
        problems.join("\n  ")
    );
}
