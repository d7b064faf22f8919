//! A full disk, for real: a small tmpfs mounted for the test (root only), filled up under the
//! camera's on-disk ring and under the tier-2's SQLite database. Neither panics or corrupts
//! what it holds; every refused frame is counted (the ring) or reported as an error (storage:
//! no STORED then, so the camera keeps the frame and backfills it); both work again as soon
//! as space returns.
//!
//! Mounting needs root. Without it the test says so and passes, unless
//! `LIVECAM_REQUIRE_ROOT=1` (CI, which runs as root, sets it): then it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use livecam_system::backend::{FrameRecord, StorageError};
use livecam_system::role::ring::{DiskRing, FrameRing, RingFrame, RingLimits};

/// A tmpfs of `kib` KiB mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(name: &str, kib: u32) -> Option<SmallDisk> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let missing = (!root).then(|| "mounting a small tmpfs needs root".to_string());
        if !common::can_run(name, missing) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("livecam-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(SmallDisk { dir })
    }

    /// Fills `kib` KiB of the disk with a file that [`free`] deletes.
    fn ballast(&self, kib: usize) -> PathBuf {
        let path = self.dir.join("ballast");
        std::fs::write(&path, vec![0xa5; kib << 10]).expect("ballast fits");
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn frame(id: u64) -> RingFrame {
    RingFrame {
        frame: id,
        capture_us: id * 100_000,
        data: (0..10_000u64)
            .map(|i| (i ^ id.wrapping_mul(31)) as u8)
            .collect(),
    }
}

fn held(ring: &DiskRing) -> Vec<u64> {
    ring.index().iter().map(|e| e.frame).collect()
}

fn all_intact(ring: &mut DiskRing) {
    for id in held(ring) {
        assert_eq!(ring.load(id), Some(frame(id)), "frame {id} intact");
    }
}

#[test]
fn the_ring_counts_what_a_full_disk_refuses_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount("ring-full", 512) else {
        return;
    };
    let ballast = disk.ballast(256);
    let path = disk.dir.join("ring.log");
    let limits = RingLimits::default();
    let mut ring = DiskRing::open(&path, limits).expect("open the ring");
    let mut refused = Vec::new();
    for id in 0..60 {
        if ring.insert(frame(id)) == vec![id] {
            refused.push(id);
        }
    }
    let s = ring.stats();
    assert!(!refused.is_empty(), "256 KiB free cannot hold 60 x 10 KB");
    assert!(s.disk_full >= refused.len() as u64, "{s:?}");
    assert_eq!(s.frames_dropped, refused.len() as u64);
    assert_eq!(s.frames_inserted + s.frames_dropped, 60);
    assert_eq!(s.frames_inserted, s.syncs, "every kept frame was synced");
    let kept = held(&ring);
    assert_eq!(kept.len() as u64, s.frames_inserted);
    all_intact(&mut ring);

    // Space returns: the next frames are kept, without a restart.
    std::fs::remove_file(&ballast).expect("free the ballast");
    for id in 100..110 {
        assert!(ring.insert(frame(id)).is_empty(), "frame {id} kept");
    }
    assert_eq!(ring.stats().disk_full, s.disk_full, "no new refusals");
    let before = held(&ring);
    drop(ring);

    // What was reported kept is exactly what a reopen finds; no torn record left behind.
    let mut ring = DiskRing::open(&path, limits).expect("reopen");
    assert_eq!(held(&ring), before);
    assert_eq!(ring.stats().records_corrupt, 0);
    all_intact(&mut ring);
}

fn record(client: u32, n: u32) -> FrameRecord {
    FrameRecord {
        client,
        frame: u64::from(n),
        tier2: 11,
        capture_ms: 1_000 + i64::from(n),
        received_ms: 1_040 + i64::from(n),
        fix: None,
        segment_size: 1_200,
        jpeg: (0..10_000u32).map(|i| (i ^ n) as u8).collect(),
    }
}

fn stored_frames(db: &Path) -> Vec<u32> {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    let mut q = conn
        .prepare("SELECT frame FROM frames WHERE client = 7 ORDER BY frame")
        .expect("prepare");
    let rows = q.query_map([], |r| r.get(0)).expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

#[test]
fn storage_reports_a_full_disk_and_commits_again_when_space_returns() {
    let Some(disk) = SmallDisk::mount("db-full", 2048) else {
        return;
    };
    let ballast = disk.ballast(1024);
    let path = disk.dir.join("livecam.db");
    let mut db = livecam_system::backend::open(&format!("sqlite:{}", path.display()))
        .expect("open the database");
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for n in 0..200 {
        match db.insert_frames(&[record(7, n)]) {
            Ok(_) => ok.push(n),
            Err(StorageError::Backend(msg)) => {
                assert!(msg.contains("full"), "names the cause: {msg}");
                failed.push(n);
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(!failed.is_empty(), "1 MiB free cannot hold 2 MB of frames");
    // Refused commits stored nothing (the camera keeps those frames: no STORED for them).
    assert_eq!(stored_frames(&path), ok);

    std::fs::remove_file(&ballast).expect("free the ballast");
    for &n in &failed[..20] {
        db.insert_frames(&[record(7, n)]).expect("commits again");
    }
    let mut want = ok.clone();
    want.extend(&failed[..20]);
    want.sort_unstable();
    assert_eq!(stored_frames(&path), want);
}
