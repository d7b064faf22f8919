//! Nothing lost when a tier-2's database is unavailable for a while, with real processes: a
//! tier-1, a tier-2 writing to SQLite and a mobile client keeping an on-disk ring. While the
//! test holds an exclusive lock on the database for several seconds, the tier-2 cannot commit,
//! so it sends no STORED; the client keeps those frames in its ring and, once they are
//! acknowledged but unstored past its `stored_timeout`, backfills them. When the lock goes,
//! every frame the camera captured (its `keep_frames` copies) ends up in the database, byte
//! for byte.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::roles::{kept, kept_ids, port, spawn, stop, write, Keys};

/// How long the database stays locked: longer than the client's `stored_timeout` (5 s), so
/// frames acknowledged during the outage go to backfill.
const OUTAGE: Duration = Duration::from_secs(8);

/// `(frame, jpeg)` of client `client`'s stored frames.
fn stored(db: &Path, client: u32) -> Vec<(u64, Vec<u8>)> {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    let mut q = conn
        .prepare("SELECT frame, jpeg FROM frames WHERE client = ?1 ORDER BY frame")
        .expect("prepare");
    let rows = q
        .query_map([client], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

#[test]
fn a_database_locked_for_seconds_loses_no_frame() {
    let dir = std::env::temp_dir().join(format!("livecam-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("livecam.db");
    let (t1, t2) = (port(), port());
    let keys = Keys::make(&dir, "7");
    let tier1 = spawn(
        "tier1",
        &write(
            &dir,
            "tier1.toml",
            &format!(
                "id = 1\nlisten = \"127.0.0.1:{t1}\"\n{}",
                keys.identity("tier1", 1)
            ),
        ),
    );
    let tier2 = spawn(
        "tier2",
        &write(
            &dir,
            "tier2.toml",
            &format!(
                "id = 11\nlisten = \"127.0.0.1:{t2}\"\ntier1 = [\"127.0.0.1:{t1}\"]\ndatabase = \"sqlite:{}\"\n{}",
                db.display(),
                keys.tier2(11)
            ),
        ),
    );
    std::thread::sleep(Duration::from_millis(600));
    let keep = dir.join("kept");
    let mobile = spawn(
        "mobile",
        &write(
            &dir,
            "mobile.toml",
            &format!(
                "id = 7\nlisten = \"127.0.0.1:0\"\ntier1 = [\"127.0.0.1:{t1}\"]\nfps = 10.0\nkeep_frames = \"{}\"\nring = \"{}\"\n{}",
                keep.display(),
                dir.join("ring").display(),
                keys.mobile(7)
            ),
        ),
    );

    // Streaming and storing before the outage.
    let start = Instant::now();
    while stored(&db, 7).len() < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "frames never reached the database"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The outage: another writer holds the database's exclusive lock.
    let lock = rusqlite::Connection::open(&db).expect("open the database");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the database");
    let locked_from = kept_ids(&keep).last().copied().unwrap_or(0);
    std::thread::sleep(OUTAGE);
    let locked_until = kept_ids(&keep).last().copied().unwrap_or(0);
    let during = stored(&db, 7).len();
    lock.execute_batch("COMMIT").expect("unlock the database");
    drop(lock);
    assert!(
        locked_until >= locked_from + 50,
        "the camera kept capturing through the outage: frames {locked_from}..{locked_until}"
    );

    // After it: the backlog drains. Everything captured up to a second before the check is
    // stored (the newest frames may still be on their way).
    let start = Instant::now();
    let missing = loop {
        let have: BTreeSet<u64> = stored(&db, 7).into_iter().map(|(f, _)| f).collect();
        let kept = kept_ids(&keep);
        let newest = kept.last().copied().unwrap_or(0);
        let missing: Vec<u64> = kept
            .iter()
            .copied()
            .filter(|&f| f + 10 <= newest && !have.contains(&f))
            .collect();
        if missing.is_empty() && newest >= locked_until + 20 {
            break missing;
        }
        if start.elapsed() > Duration::from_secs(40) {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let m = stop(mobile);
    let t = stop(tier2);
    let _ = stop(tier1);
    assert!(
        missing.is_empty(),
        "frames never stored: {missing:?}\nmobile: {m}\ntier-2: {t}"
    );

    // The outage did bite: the frames of those seconds came back by backfill.
    let durable = &m["durable"];
    assert!(
        durable["backfill_acked"].as_u64() > Some(0),
        "no backfill: {m}"
    );
    assert_eq!(durable["ring"]["frames_dropped"], 0, "{m}");
    assert_eq!(t["frames_corrupted"], 0, "{t}");
    eprintln!(
        "outage: frames {locked_from}..{locked_until} captured while locked, {during} rows \
         then; backfill sent {} acked {}; tier-2 database {}",
        durable["backfill_sent"], durable["backfill_acked"], t["database"]
    );

    // Stored frames are the camera's, byte for byte.
    let kept = kept(&keep);
    for (frame, jpeg) in stored(&db, 7) {
        let original = kept
            .get(&frame)
            .unwrap_or_else(|| panic!("frame {frame} was not captured"));
        assert!(jpeg == original.jpeg, "frame {frame} differs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
