//! Rerunning an experiment with the same seeds writes byte-identical CSV, whatever the thread
//! count, and merging shards writes the same report as one run.

use std::path::{Path, PathBuf};

use livecam_experiments::{merge, run, RunOptions};

fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("livecam-experiments-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read(dir: &Path, name: &str, file: &str) -> Vec<u8> {
    let path = dir.join(name).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn opts(out: &Path, jobs: usize, seeds: u64) -> RunOptions {
    RunOptions {
        seeds: Some(seeds),
        jobs: Some(jobs),
        out: out.to_path_buf(),
        ..RunOptions::default()
    }
}

#[test]
fn same_seeds_write_the_same_csv() {
    let names = ["segment-size-trace".to_string(), "failover".to_string()];
    let a = temp_dir("a");
    let b = temp_dir("b");
    run(&names, &opts(&a, 1, 2)).unwrap();
    run(&names, &opts(&b, 2, 2)).unwrap();
    for name in &names {
        for file in ["runs.csv", "summary.csv", "index.html", "report.json"] {
            assert_eq!(
                read(&a, name, file),
                read(&b, name, file),
                "{name}/{file} differs between two runs with the same seeds"
            );
        }
        let runs = String::from_utf8(read(&a, name, "runs.csv")).unwrap();
        // A header and one row per run; every run kept the protocol's promises.
        let rows: Vec<&str> = runs.lines().collect();
        assert!(rows.len() > 2, "{runs}");
        let header: Vec<&str> = rows[0].split(',').collect();
        let kept = header.iter().position(|h| *h == "promises_kept").unwrap();
        for row in &rows[1..] {
            assert_eq!(row.split(',').nth(kept), Some("1"), "{row}");
        }
    }
    let index = std::fs::read_to_string(a.join("index.html")).unwrap();
    assert!(index.contains("failover/index.html"), "{index}");
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn merged_shards_write_the_same_report() {
    let names = ["segment-size-trace".to_string()];
    let whole = temp_dir("whole");
    let sharded = temp_dir("sharded");
    run(&names, &opts(&whole, 2, 3)).unwrap();
    for i in [2, 0, 1] {
        let o = RunOptions {
            shard: Some((i, 3)),
            ..opts(&sharded, 1, 3)
        };
        run(&names, &o).unwrap();
    }
    merge(&names, &sharded).unwrap();
    for file in ["runs.csv", "summary.csv", "index.html"] {
        assert_eq!(
            read(&whole, &names[0], file),
            read(&sharded, &names[0], file),
            "{file} differs between a whole run and merged shards"
        );
    }
    // A missing slice is an error, not a smaller report.
    let path = sharded
        .join(&names[0])
        .join("shards")
        .join("shard-1-of-3.json");
    std::fs::remove_file(path).unwrap();
    let err = merge(&names, &sharded).unwrap_err().to_string();
    assert!(err.contains("need shards 0..3"), "{err}");
    std::fs::remove_dir_all(&whole).unwrap();
    std::fs::remove_dir_all(&sharded).unwrap();
}
