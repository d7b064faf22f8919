//! The checks every [`Storage`] implementation must pass, run against each backend by
//! [`suite_tests`] so both get exactly the same ones.

use std::any::Any;

use std::collections::BTreeSet;

use crate::backend::geofence::{
    EventKind, FixCursor, GeofenceEvent, GroupRemoval, LatLon, NewGeofence,
};
use crate::backend::{
    CommandState, FrameRecord, LinkRecord, Pruned, Retention, SessionRecord, Storage, StorageError,
};
use crate::device::Fix;
use crate::proto::wire::Command;

/// A new, empty, migrated database of one backend, and ways to look behind its interface.
pub(crate) struct Fresh {
    pub db: Box<dyn Storage>,
    /// Its URL: [`super::open`] on it opens the same database again.
    pub url: String,
    /// Records schema version `v` as applied, as a newer build would.
    pub set_version: Box<dyn Fn(i64)>,
    /// The versions `schema_version` holds, ascending.
    pub versions: Box<dyn Fn() -> Vec<i64>>,
    /// Dropped last: removes the database.
    pub _guard: Box<dyn Any>,
}

impl Fresh {
    pub fn reopen(&self) -> Result<Box<dyn Storage>, StorageError> {
        super::open(&self.url)
    }
}

/// `#[test]` functions running every check of this suite on databases from `$fresh`, a
/// closure returning `Option<Fresh>` (`None`: the backend is not available, skip).
macro_rules! suite_tests {
    ($fresh:expr) => {
        $crate::backend::storage::suite::suite_tests!(@each $fresh;
            round_trips, duplicate_frames_are_ignored, clients_lists_sessions_and_fixes_in_order,
            ranges_and_limits, command_lifecycle, retention_by_age, retention_by_size,
            migrations_are_idempotent, newer_schema_is_refused, unknown_ids_are_none,
            users_and_logins, hostile_user_names_are_data, groups_and_fences_round_trip,
            a_group_in_use_is_not_deleted, geofence_events_are_idempotent_and_ranged,
            last_geofence_events_are_per_fence_and_client, fixes_after_pages_every_fix_once);
    };
    (@each $fresh:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                if let Some(f) = ($fresh)() {
                    $crate::backend::storage::suite::$name(f);
                }
            }
        )*
    };
}
pub(crate) use suite_tests;

pub(crate) fn session(client: u32, tier2: u32) -> SessionRecord {
    SessionRecord {
        client,
        tier2,
        tier2_addr: format!("10.0.0.{}:7000", tier2 % 250).parse().unwrap(),
        client_addr: "[2001:db8::7]:40123".parse().unwrap(),
        started_ms: 1_000,
        last_seen_ms: 2_000,
    }
}

pub(crate) fn fix(n: u32) -> Fix {
    Fix {
        lat: 48.1 + f64::from(n) * 1e-4,
        lon: -11.5 - f64::from(n) * 1e-4,
        speed_mps: 13.25,
        heading_deg: 271.5,
        fix_time_ms: 1_700_000_000_000 + u64::from(n),
    }
}

/// Frame `frame` of `client`, received at `received_ms`, with a fix and a 1000-byte picture.
pub(crate) fn frame(client: u32, frame: u32, received_ms: i64) -> FrameRecord {
    FrameRecord {
        client,
        frame: u64::from(frame),
        tier2: 3,
        capture_ms: received_ms - 40,
        received_ms,
        fix: Some(fix(frame)),
        segment_size: 1_200,
        jpeg: (0..1000u32)
            .map(|i| i.wrapping_mul(7).wrapping_add(frame) as u8)
            .collect(),
    }
}

pub(crate) fn link(client: u32, at_ms: i64) -> LinkRecord {
    LinkRecord {
        client,
        at_ms,
        segment_size: 800,
        loss: 0.125,
        latency_ms: 35.5,
        frames_delivered: 240,
        frames_dropped: 3,
    }
}

fn meta(f: &FrameRecord) -> crate::backend::FrameMeta {
    crate::backend::FrameMeta {
        client: f.client,
        frame: f.frame,
        tier2: f.tier2,
        capture_ms: f.capture_ms,
        received_ms: f.received_ms,
        fix: f.fix,
        segment_size: f.segment_size,
        jpeg_len: f.jpeg.len() as u32,
    }
}

pub(crate) fn round_trips(mut f: Fresh) {
    let db = &mut f.db;
    // Sessions: insert, read, update.
    let mut s = session(u32::MAX, 9);
    db.upsert_session(&s).unwrap();
    assert_eq!(db.session(u32::MAX).unwrap(), Some(s.clone()));
    s.tier2 = 10;
    s.tier2_addr = "192.168.1.2:9000".parse().unwrap();
    s.last_seen_ms = 99_000;
    db.upsert_session(&s).unwrap();
    assert_eq!(db.session(u32::MAX).unwrap(), Some(s.clone()));
    // The tier-2 the client left writes its closing record late (it last heard the client
    // before the move): the row of the tier-2 that took the client over stays.
    let closing = SessionRecord {
        tier2: 9,
        last_seen_ms: 98_000,
        ..session(u32::MAX, 9)
    };
    db.upsert_session(&closing).unwrap();
    assert_eq!(
        db.session(u32::MAX).unwrap(),
        Some(s.clone()),
        "newest sighting wins"
    );

    // Frames with and without a fix, with extreme values.
    // The largest 64-bit frame id round-trips (stored as the bits of a signed column).
    let with_fix = FrameRecord {
        frame: u64::MAX,
        ..frame(4, u32::MAX, 5_000)
    };
    let mut without = frame(4, 0, 4_000);
    without.fix = None;
    without.jpeg = Vec::new();
    let mut odd = frame(4, 1, 4_500);
    odd.fix = Some(Fix {
        lat: -90.0,
        lon: 180.0,
        speed_mps: 0.0,
        heading_deg: 359.999,
        fix_time_ms: u64::MAX,
    });
    odd.capture_ms = i64::MIN;
    db.insert_frames(&[with_fix.clone(), without.clone(), odd.clone()])
        .unwrap();
    assert_eq!(db.frame(4, u64::MAX).unwrap(), Some(with_fix.clone()));
    assert_eq!(db.frame(4, 0).unwrap(), Some(without.clone()));
    assert_eq!(db.frame(4, 1).unwrap(), Some(odd.clone()));
    assert_eq!(db.latest_frame(4).unwrap(), Some(with_fix.clone()));
    assert_eq!(
        db.frames(4, i64::MIN, i64::MAX, 10).unwrap(),
        vec![meta(&without), meta(&odd), meta(&with_fix)]
    );
    // Fixes: one per frame that had one.
    let track = db.track(4, i64::MIN, i64::MAX, 10).unwrap();
    assert_eq!(track.len(), 2);
    assert_eq!(track[0].fix, odd.fix.unwrap());
    assert_eq!(track[0].received_ms, 4_500);
    assert_eq!(track[1].fix, with_fix.fix.unwrap());
    assert_eq!(track[1].client, 4);

    // Link records, NaN included.
    let l = link(4, 6_000);
    db.insert_link(&l).unwrap();
    let mut nan = link(u32::MAX, 7_000);
    nan.loss = f64::NAN;
    nan.latency_ms = f64::INFINITY;
    nan.frames_delivered = u64::MAX;
    db.insert_link(&nan).unwrap();
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 2);
    assert_eq!(clients[0].client, 4);
    assert_eq!(clients[0].last_link, Some(l));
    assert_eq!(clients[0].session, None);
    assert_eq!(clients[1].client, u32::MAX);
    assert_eq!(clients[1].session, Some(s));
    let back = clients[1].last_link.expect("link of client u32::MAX");
    assert!(back.loss.is_nan());
    assert_eq!(back.latency_ms, f64::INFINITY);
    assert_eq!(back.frames_delivered, u64::MAX);
    assert_eq!(back.frames_dropped, nan.frames_dropped);

    // Commands: every kind survives.
    let all = [
        Command::SetFps { milli_fps: 12_500 },
        Command::SetResolution {
            width: 1280,
            height: 720,
        },
        Command::SetQuality { quality: 80 },
        Command::Snapshot,
        Command::SwitchTier1 {
            addr: "[::1]:5000".parse().unwrap(),
        },
        Command::Start,
        Command::Stop,
    ];
    let mut ids = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let rec = db
            .insert_command(4, *c, "ops ü", 10_000 + i as i64)
            .unwrap();
        assert_eq!(rec.command, *c);
        assert_eq!(rec.state, CommandState::Pending);
        assert_eq!(db.command(rec.id).unwrap(), Some(rec.clone()));
        ids.push(rec.id);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, ids, "ids increase");
}

pub(crate) fn duplicate_frames_are_ignored(mut f: Fresh) {
    let db = &mut f.db;
    let first = frame(1, 5, 1_000);
    db.insert_frames(std::slice::from_ref(&first)).unwrap();
    let mut again = frame(1, 5, 2_000);
    again.jpeg = vec![1, 2, 3];
    again.fix = Some(fix(77));
    // Alone, and inside a batch with a new frame (and twice in the batch): another picture
    // under a stored key is refused and named; the same picture again is a repeat, no conflict.
    let r = db.insert_frames(&[again.clone()]).unwrap();
    assert_eq!(r.conflicts, vec![(1, 5)]);
    let new = frame(1, 6, 3_000);
    let r = db
        .insert_frames(&[again.clone(), new.clone(), new.clone()])
        .unwrap();
    assert_eq!(
        r.conflicts,
        vec![(1, 5)],
        "the repeat of frame 6 is no conflict"
    );
    assert_eq!(db.frame(1, 5).unwrap(), Some(first.clone()));
    assert_eq!(db.frame(1, 6).unwrap(), Some(new.clone()));
    let track = db.track(1, i64::MIN, i64::MAX, 100).unwrap();
    assert_eq!(
        track
            .iter()
            .map(|t| (t.received_ms, t.fix))
            .collect::<Vec<_>>(),
        vec![(1_000, first.fix.unwrap()), (3_000, new.fix.unwrap())]
    );
    // The same frame stored again by another tier-2 (a client backfilled it after its
    // STORED was lost and it reconnected elsewhere): still one row, the first.
    let mut elsewhere = first.clone();
    elsewhere.tier2 += 1;
    elsewhere.received_ms = 9_000;
    let r = db.insert_frames(&[elsewhere]).unwrap();
    assert!(r.conflicts.is_empty(), "the same picture: {r:?}");
    assert_eq!(db.frame(1, 5).unwrap(), Some(first.clone()));
    assert_eq!(db.frames(1, i64::MIN, i64::MAX, 100).unwrap().len(), 2);
    // The same frame id of another client is another frame.
    db.insert_frames(&[frame(2, 5, 1_500)]).unwrap();
    assert_eq!(db.frame(2, 5).unwrap(), Some(frame(2, 5, 1_500)));
    assert!(db.insert_frames(&[]).is_ok());
}

pub(crate) fn clients_lists_sessions_and_fixes_in_order(mut f: Fresh) {
    let db = &mut f.db;
    assert!(db.clients().unwrap().is_empty());
    db.upsert_session(&session(50, 1)).unwrap();
    db.upsert_session(&session(7, 2)).unwrap();
    // Client 30: fixes, no session; frames out of order of id and time.
    db.insert_frames(&[
        frame(30, 3, 3_000),
        frame(30, 9, 1_000),
        frame(30, 2, 2_000),
    ])
    .unwrap();
    // Client 40: a frame without a fix only, and a link record: no client row.
    let mut nofix = frame(40, 1, 1_000);
    nofix.fix = None;
    db.insert_frames(&[nofix]).unwrap();
    db.insert_link(&link(40, 1_000)).unwrap();
    // Client 7: links out of time order, a tie broken by arrival.
    db.insert_link(&link(7, 5_000)).unwrap();
    let mut newest = link(7, 9_000);
    newest.segment_size = 100;
    db.insert_link(&newest).unwrap();
    db.insert_link(&link(7, 1_000)).unwrap();
    let mut tie = link(7, 9_000);
    tie.segment_size = 200;
    db.insert_link(&tie).unwrap();
    db.insert_frames(&[frame(7, 1, 8_000)]).unwrap();

    let rows = db.clients().unwrap();
    assert_eq!(
        rows.iter().map(|r| r.client).collect::<Vec<_>>(),
        vec![7, 30, 50]
    );
    let (c7, c30, c50) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(c7.session, Some(session(7, 2)));
    assert_eq!(c7.last_link, Some(tie));
    assert_eq!(c7.last_frame, Some(1));
    assert_eq!(c7.last_fix.map(|x| x.fix), Some(fix(1)));
    assert_eq!(c30.session, None);
    assert_eq!(c30.last_link, None);
    assert_eq!(c30.last_frame, Some(3), "newest by reception, not by id");
    let lf = c30.last_fix.expect("fix of 30");
    assert_eq!((lf.client, lf.received_ms, lf.fix), (30, 3_000, fix(3)));
    assert_eq!(c50.session, Some(session(50, 1)));
    assert_eq!(
        (c50.last_fix, c50.last_link, c50.last_frame),
        (None, None, None)
    );

    // Many clients: all there, in order.
    for c in (1000..1300u32).rev() {
        db.insert_frames(&[frame(c, 1, 1_000)]).unwrap();
    }
    let rows = db.clients().unwrap();
    assert_eq!(rows.len(), 303);
    assert!(rows.windows(2).all(|w| w[0].client < w[1].client));
    assert!(rows[3..].iter().all(|r| r.last_frame == Some(1)));
}

pub(crate) fn ranges_and_limits(mut f: Fresh) {
    let db = &mut f.db;
    let frames: Vec<_> = (0..20u32)
        .map(|i| frame(8, 100 + i, 10_000 + 100 * i64::from(i)))
        .collect();
    db.insert_frames(&frames).unwrap();
    db.insert_frames(&[frame(9, 100, 10_500)]).unwrap();

    // Inclusive bounds, oldest first.
    let got = db.frames(8, 10_200, 10_500, 100).unwrap();
    assert_eq!(
        got.iter().map(|m| m.frame).collect::<Vec<_>>(),
        vec![102, 103, 104, 105]
    );
    let track = db.track(8, 10_200, 10_500, 100).unwrap();
    assert_eq!(
        track.iter().map(|t| t.received_ms).collect::<Vec<_>>(),
        vec![10_200, 10_300, 10_400, 10_500]
    );
    // The limit keeps the oldest.
    let got = db.frames(8, i64::MIN, i64::MAX, 3).unwrap();
    assert_eq!(
        got.iter().map(|m| m.frame).collect::<Vec<_>>(),
        vec![100, 101, 102]
    );
    assert_eq!(
        db.track(8, i64::MIN, i64::MAX, 3).unwrap()[2].received_ms,
        10_200
    );
    assert!(db.frames(8, 0, 9_999, 100).unwrap().is_empty());
    assert!(db.track(8, 12_000, 13_000, 100).unwrap().is_empty());
    assert!(db.frames(8, i64::MIN, i64::MAX, 0).unwrap().is_empty());
    assert!(db.track(8, 10_500, 10_000, 10).unwrap().is_empty());
    assert_eq!(db.frames(9, i64::MIN, i64::MAX, 100).unwrap().len(), 1);
    assert_eq!(
        db.frames(8, i64::MIN, i64::MAX, u32::MAX).unwrap().len(),
        20
    );
    assert_eq!(db.latest_frame(8).unwrap(), Some(frames[19].clone()));
}

pub(crate) fn command_lifecycle(mut f: Fresh) {
    let db = &mut f.db;
    let a = db.insert_command(3, Command::Snapshot, "ann", 100).unwrap();
    let b = db
        .insert_command(3, Command::SetQuality { quality: 50 }, "bob", 200)
        .unwrap();
    let other = db.insert_command(4, Command::Stop, "", 250).unwrap();
    assert_ne!(a.id, b.id);

    db.finish_command(a.id, &CommandState::Acked, 300).unwrap();
    let reason = "camera busy: 'quoted'; DROP TABLE commands; --".to_string();
    db.finish_command(
        b.id,
        &CommandState::Failed {
            reason: reason.clone(),
        },
        400,
    )
    .unwrap();
    // Finishing again keeps the first outcome.
    db.finish_command(
        a.id,
        &CommandState::Failed {
            reason: "late".into(),
        },
        500,
    )
    .unwrap();
    db.finish_command(b.id, &CommandState::Acked, 600).unwrap();
    // "Finishing" to pending changes nothing.
    db.finish_command(other.id, &CommandState::Pending, 700)
        .unwrap();

    let a2 = db.command(a.id).unwrap().unwrap();
    assert_eq!(a2.state, CommandState::Acked);
    assert_eq!((a2.created_ms, a2.updated_ms), (100, 300));
    let b2 = db.command(b.id).unwrap().unwrap();
    assert_eq!(b2.state, CommandState::Failed { reason });
    assert_eq!((b2.created_ms, b2.updated_ms), (200, 400));
    assert_eq!(b2.issued_by, "bob");
    assert_eq!(db.command(other.id).unwrap(), Some(other.clone()));

    // Newest first, limited, per client.
    let list = db.commands(3, 10).unwrap();
    assert_eq!(list, vec![b2.clone(), a2]);
    assert_eq!(db.commands(3, 1).unwrap(), vec![b2]);
    assert_eq!(db.commands(4, 10).unwrap(), vec![other]);
    assert!(db.commands(5, 10).unwrap().is_empty());
    // Unknown ids: nothing to finish, nothing found.
    db.finish_command(u64::MAX, &CommandState::Acked, 1)
        .unwrap();
    db.finish_command(999_999, &CommandState::Acked, 1).unwrap();
    assert_eq!(db.command(999_999).unwrap(), None);
    assert_eq!(db.command(u64::MAX).unwrap(), None);
}

pub(crate) fn retention_by_age(mut f: Fresh) {
    let db = &mut f.db;
    let now = 1_000_000;
    // Frames at now-100 s .. now-10 s, every 10 s; half without a fix.
    let frames: Vec<_> = (1..=10u32)
        .map(|i| {
            let mut fr = frame(1, i, now - 10_000 * i64::from(i));
            if i % 2 == 0 {
                fr.fix = None;
            }
            fr
        })
        .collect();
    db.insert_frames(&frames).unwrap();
    for i in 1..=10 {
        db.insert_link(&link(1, now - 10_000 * i)).unwrap();
    }
    // Geofence events at now-80 s .. now-20 s: the three older than 50 s go.
    let events: Vec<_> = (2..=8u32)
        .map(|i| event(1, 1, i, now - 10_000 * i64::from(i)))
        .collect();
    db.insert_geofence_events(&events).unwrap();
    db.upsert_session(&session(1, 1)).unwrap();
    let none = Retention {
        max_age_s: None,
        max_frame_bytes: None,
    };
    assert_eq!(db.apply_retention(&none, now).unwrap(), Pruned::default());

    // Older than 50 s goes; exactly 50 s stays.
    let r = Retention {
        max_age_s: Some(50),
        max_frame_bytes: None,
    };
    let pruned = db.apply_retention(&r, now).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            frames: 5,
            fixes: 2,
            links: 5,
            geofence_events: 3,
        }
    );
    let left = db.frames(1, i64::MIN, i64::MAX, 100).unwrap();
    assert_eq!(
        left.iter().map(|m| m.frame).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
    assert_eq!(db.track(1, i64::MIN, i64::MAX, 100).unwrap().len(), 3);
    assert_eq!(
        db.geofence_events(i64::MIN, i64::MAX, 100)
            .unwrap()
            .iter()
            .map(|e| e.frame)
            .collect::<Vec<_>>(),
        vec![5, 4, 3, 2]
    );
    assert_eq!(db.apply_retention(&r, now).unwrap(), Pruned::default());
    // Sessions and commands are not subject to it.
    assert_eq!(db.session(1).unwrap(), Some(session(1, 1)));
    let rows = db.clients().unwrap();
    assert_eq!(rows[0].last_link.map(|l| l.at_ms), Some(now - 10_000));
    // A huge age deletes nothing.
    let forever = Retention {
        max_age_s: Some(u64::MAX),
        max_frame_bytes: None,
    };
    assert_eq!(
        db.apply_retention(&forever, now).unwrap(),
        Pruned::default()
    );
}

pub(crate) fn retention_by_size(mut f: Fresh) {
    let db = &mut f.db;
    // 1000-byte frames of two clients, interleaved in time.
    for i in 0..10u32 {
        db.insert_frames(&[frame(1 + i % 2, i, 1_000 + i64::from(i))])
            .unwrap();
    }
    let r = Retention {
        max_age_s: None,
        max_frame_bytes: Some(3_500),
    };
    let pruned = db.apply_retention(&r, 10_000).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            frames: 7,
            fixes: 0,
            links: 0,
            geofence_events: 0,
        }
    );
    let mut kept: Vec<u64> = [1, 2]
        .iter()
        .flat_map(|&c| db.frames(c, i64::MIN, i64::MAX, 100).unwrap())
        .map(|m| m.frame)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, vec![7, 8, 9], "the newest frames stay");
    // Within budget: nothing more.
    assert_eq!(db.apply_retention(&r, 10_000).unwrap(), Pruned::default());
    // Fixes stay (the track outlives the pictures).
    assert_eq!(db.track(1, i64::MIN, i64::MAX, 100).unwrap().len(), 5);
    // Age and size together: age first, then size on what is left.
    let both = Retention {
        max_age_s: Some(1),
        max_frame_bytes: Some(1_000),
    };
    let pruned = db.apply_retention(&both, 2_008).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            frames: 2,
            fixes: 8,
            links: 0,
            geofence_events: 0,
        }
    );
    assert_eq!(db.latest_frame(2).unwrap(), Some(frame(2, 9, 1_009)));
    assert_eq!(db.latest_frame(1).unwrap(), None);
    // A zero budget empties the table.
    let zero = Retention {
        max_age_s: None,
        max_frame_bytes: Some(0),
    };
    assert_eq!(db.apply_retention(&zero, 0).unwrap().frames, 1);
}

pub(crate) fn migrations_are_idempotent(mut f: Fresh) {
    let versions = (f.versions)();
    assert!(!versions.is_empty());
    assert_eq!(
        versions,
        (1..=*versions.last().unwrap()).collect::<Vec<_>>()
    );
    f.db.upsert_session(&session(1, 1)).unwrap();
    f.db.insert_frames(&[frame(1, 1, 1_000)]).unwrap();
    for _ in 0..2 {
        let mut again = f.reopen().expect("reopen");
        assert_eq!(again.session(1).unwrap(), Some(session(1, 1)));
        assert_eq!(again.frame(1, 1).unwrap(), Some(frame(1, 1, 1_000)));
    }
    assert_eq!((f.versions)(), versions);
}

pub(crate) fn newer_schema_is_refused(f: Fresh) {
    let newest = *(f.versions)().last().unwrap();
    (f.set_version)(newest + 1);
    match f.reopen() {
        Err(StorageError::Backend(m)) => {
            assert!(m.contains(&format!("version {}", newest + 1)), "{m}");
            assert!(m.contains("newer than this build"), "{m}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("opened a database of a newer schema"),
    }
}

pub(crate) fn unknown_ids_are_none(mut f: Fresh) {
    let db = &mut f.db;
    assert_eq!(db.session(1).unwrap(), None);
    assert_eq!(db.frame(1, 1).unwrap(), None);
    assert_eq!(db.latest_frame(1).unwrap(), None);
    assert!(db.track(1, i64::MIN, i64::MAX, 10).unwrap().is_empty());
    assert!(db.frames(1, i64::MIN, i64::MAX, 10).unwrap().is_empty());
    assert!(db.commands(1, 10).unwrap().is_empty());
}

pub(crate) fn users_and_logins(mut f: Fresh) {
    use crate::backend::users::{ClientScope, UserRecord, UserRole};
    let db = &mut f.db;
    let alice = UserRecord {
        name: "alice".into(),
        role: UserRole::Operator,
        clients: ClientScope::Only([3, 1].into()),
    };
    let bob = UserRecord {
        name: "bob".into(),
        role: UserRole::Viewer,
        clients: ClientScope::All,
    };
    assert!(db.users().unwrap().is_empty());
    assert!(db.add_user(&bob, "hash-b", 10).unwrap());
    assert!(db.add_user(&alice, "hash-a", 11).unwrap());
    assert!(!db.add_user(&alice, "other", 12).unwrap(), "a taken name");
    assert_eq!(db.users().unwrap(), vec![alice.clone(), bob.clone()]);
    let stored = db.user("alice").unwrap().unwrap();
    assert_eq!(stored.user, alice);
    assert_eq!(
        stored.password_hash, "hash-a",
        "a taken name changes nothing"
    );
    assert_eq!(db.user("carol").unwrap(), None);

    // Logins: found while valid, by hash only, and gone at expiry, logout or removal.
    let (ta, tb, old) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    db.insert_login(&old, "bob", 0, 50).unwrap();
    db.insert_login(&ta, "alice", 100, 1_000).unwrap();
    db.insert_login(&tb, "bob", 100, 1_000).unwrap();
    assert_eq!(db.login_user(&ta, 999).unwrap(), Some(alice.clone()));
    assert_eq!(db.login_user(&ta, 1_000).unwrap(), None, "expired");
    assert_eq!(db.login_user(&tb, 500).unwrap(), Some(bob.clone()));
    assert_eq!(db.login_user(&[9u8; 32], 500).unwrap(), None);
    assert_eq!(
        db.login_user(&old, 0).unwrap(),
        None,
        "expired logins are deleted when a new one is stored"
    );
    assert!(db.delete_login(&tb).unwrap());
    assert!(!db.delete_login(&tb).unwrap());
    assert_eq!(db.login_user(&tb, 500).unwrap(), None);

    // A new password ends the user's logins.
    assert!(db.set_password("alice", "hash-a2").unwrap());
    assert!(!db.set_password("carol", "x").unwrap());
    assert_eq!(db.user("alice").unwrap().unwrap().password_hash, "hash-a2");
    assert_eq!(db.login_user(&ta, 500).unwrap(), None);

    // Removing a user removes their logins with them.
    db.insert_login(&tb, "bob", 100, 1_000).unwrap();
    assert!(db.remove_user("bob").unwrap());
    assert!(!db.remove_user("bob").unwrap());
    assert_eq!(db.login_user(&tb, 500).unwrap(), None);
    assert_eq!(db.users().unwrap(), vec![alice.clone()]);

    // Kept across a reopen.
    let mut again = f.reopen().unwrap();
    assert_eq!(again.user("alice").unwrap().unwrap().user, alice);
}

/// Names that would break SQL built from text are stored and found as the data they are.
pub(crate) fn hostile_user_names_are_data(mut f: Fresh) {
    use crate::backend::users::{ClientScope, UserRecord, UserRole};
    let db = &mut f.db;
    for name in ["o'brien", "x'; DROP TABLE users; --", "a\"b", "%", "_"] {
        let u = UserRecord {
            name: name.to_string(),
            role: UserRole::Viewer,
            clients: ClientScope::Only([].into()),
        };
        assert!(db.add_user(&u, "h", 1).unwrap(), "{name}");
        assert_eq!(db.user(name).unwrap().unwrap().user, u, "{name}");
    }
    assert_eq!(db.users().unwrap().len(), 5);
    assert_eq!(db.user("o").unwrap(), None);
    assert!(db.remove_user("%").unwrap());
    assert_eq!(db.users().unwrap().len(), 4, "% is a name, not a pattern");
}

pub(crate) fn event(fence: u64, client: u32, frame: u32, at_ms: i64) -> GeofenceEvent {
    GeofenceEvent {
        fence,
        fence_name: format!("fence {fence}"),
        client,
        frame: u64::from(frame),
        kind: match frame & 1 {
            0 => EventKind::Enter,
            _ => EventKind::Leave,
        },
        at_ms,
        lat: 48.5 + f64::from(frame) * 1e-3,
        lon: -11.25,
    }
}

fn square() -> Vec<LatLon> {
    vec![
        LatLon(48.0, 11.0),
        LatLon(48.0, 11.1),
        LatLon(48.1, 11.1),
        LatLon(48.1, 11.0),
    ]
}

pub(crate) fn groups_and_fences_round_trip(mut f: Fresh) {
    let db = &mut f.db;
    assert!(db.groups().unwrap().is_empty());
    assert!(db.geofences().unwrap().is_empty());
    let members: BTreeSet<u32> = [u32::MAX, 0, 7].into();
    // A hostile name is data.
    let g = db
        .insert_group("north'; DROP TABLE geofences; --", &members, "op", 5)
        .unwrap();
    let g2 = db.insert_group("south", &[1].into(), "alice", 6).unwrap();
    assert_ne!(g.id, g2.id);
    assert_eq!(g.members, members);
    assert_eq!(db.groups().unwrap(), vec![g.clone(), g2.clone()]);

    let all = NewGeofence {
        name: "depot".into(),
        group: None,
        points: square(),
    };
    let fa = db.insert_geofence(&all, "op", 10).unwrap().unwrap();
    assert_eq!(
        (
            fa.name.as_str(),
            fa.group,
            fa.points.as_slice(),
            fa.created_ms
        ),
        ("depot", None, square().as_slice(), 10)
    );
    let mut tied = all.clone();
    tied.name = "yard".into();
    tied.group = Some(g.id);
    tied.points[0] = LatLon(-89.999_999_999, -179.999_999_999);
    let fb = db.insert_geofence(&tied, "alice", 11).unwrap().unwrap();
    assert_eq!(fb.group, Some(g.id));
    tied.group = Some(999_999);
    assert_eq!(
        db.insert_geofence(&tied, "op", 12).unwrap(),
        None,
        "no group"
    );
    tied.group = Some(u64::MAX);
    assert_eq!(
        db.insert_geofence(&tied, "op", 12).unwrap(),
        None,
        "no group"
    );
    assert_eq!(db.geofences().unwrap(), vec![fa.clone(), fb.clone()]);

    // Kept across a reopen; deleted once.
    let mut again = f.reopen().unwrap();
    assert_eq!(again.geofences().unwrap(), vec![fa.clone(), fb.clone()]);
    assert!(again.delete_geofence(fa.id).unwrap());
    assert!(!again.delete_geofence(fa.id).unwrap());
    assert!(!again.delete_geofence(u64::MAX).unwrap());
    assert_eq!(again.geofences().unwrap(), vec![fb]);
    assert_eq!(again.delete_group(g2.id).unwrap(), GroupRemoval::Deleted);
    assert_eq!(again.delete_group(g2.id).unwrap(), GroupRemoval::NotFound);
    assert_eq!(
        again.delete_group(u64::MAX).unwrap(),
        GroupRemoval::NotFound
    );
    assert_eq!(again.groups().unwrap(), vec![g]);
}

pub(crate) fn a_group_in_use_is_not_deleted(mut f: Fresh) {
    let db = &mut f.db;
    let g = db.insert_group("g", &[1, 2].into(), "op", 1).unwrap();
    let fence = |name: &str| NewGeofence {
        name: name.into(),
        group: Some(g.id),
        points: square(),
    };
    let a = db.insert_geofence(&fence("a"), "op", 2).unwrap().unwrap();
    let b = db.insert_geofence(&fence("b"), "op", 2).unwrap().unwrap();
    assert_eq!(
        db.delete_group(g.id).unwrap(),
        GroupRemoval::InUse(vec![a.id, b.id])
    );
    assert_eq!(db.groups().unwrap(), vec![g.clone()], "still there");
    db.delete_geofence(a.id).unwrap();
    db.delete_geofence(b.id).unwrap();
    assert_eq!(db.delete_group(g.id).unwrap(), GroupRemoval::Deleted);
    assert!(db.groups().unwrap().is_empty());
}

pub(crate) fn geofence_events_are_idempotent_and_ranged(mut f: Fresh) {
    let db = &mut f.db;
    let events: Vec<_> = (0..6u32)
        .map(|i| event(1, 7, i, 1_000 + i64::from(i)))
        .collect();
    db.insert_geofence_events(&events).unwrap();
    // Again, as a second backend would, with one more: stored once each.
    let mut more = events.clone();
    more.push(event(2, 7, 9, 1_003));
    db.insert_geofence_events(&more).unwrap();
    db.insert_geofence_events(&[]).unwrap();
    let all = db.geofence_events(i64::MIN, i64::MAX, 100).unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all[0], events[0], "round trip");
    assert_eq!(all[4], more[6], "ordered by time, then fence");
    let some = db.geofence_events(1_001, 1_003, 2).unwrap();
    assert_eq!(some, vec![events[1].clone(), events[2].clone()]);
    assert!(db.geofence_events(2_000, 3_000, 10).unwrap().is_empty());
    // A frame id beyond i63 round-trips.
    let mut big = event(3, 8, 0, 5);
    big.frame = u64::MAX;
    db.insert_geofence_events(std::slice::from_ref(&big))
        .unwrap();
    assert_eq!(db.geofence_events(5, 5, 10).unwrap(), vec![big]);
}

pub(crate) fn last_geofence_events_are_per_fence_and_client(mut f: Fresh) {
    let db = &mut f.db;
    let new = |name: &str| NewGeofence {
        name: name.into(),
        group: None,
        points: square(),
    };
    let a = db.insert_geofence(&new("a"), "op", 1).unwrap().unwrap();
    let b = db.insert_geofence(&new("b"), "op", 1).unwrap().unwrap();
    // Client 7 in a: frames 2 (enter), 3 (leave), 4 (enter), stored out of order.
    db.insert_geofence_events(&[
        event(a.id, 7, 4, 40),
        event(a.id, 7, 2, 20),
        event(a.id, 7, 3, 30),
        event(b.id, 7, 3, 30),
        event(a.id, 8, 6, 10),
        // A deleted fence's events are not part of the state.
        event(999, 7, 8, 50),
    ])
    .unwrap();
    let last = db.last_geofence_events().unwrap();
    assert_eq!(
        last,
        vec![
            event(a.id, 7, 4, 40),
            event(a.id, 8, 6, 10),
            event(b.id, 7, 3, 30)
        ]
    );
}

pub(crate) fn fixes_after_pages_every_fix_once(mut f: Fresh) {
    let db = &mut f.db;
    // Three clients, frames at times that repeat across clients; one frame without a fix.
    for client in [3u32, 1, 2] {
        let frames: Vec<_> = (0..5u32)
            .map(|i| {
                let mut fr = frame(client, 10 + i, 1_000 + i64::from(i / 2));
                if client == 2 && i == 1 {
                    fr.fix = None;
                }
                fr
            })
            .collect();
        db.insert_frames(&frames).unwrap();
    }
    let mut read = Vec::new();
    let mut cursor = FixCursor::before(1_000);
    // Bounded: a cursor that does not move on must fail here, not loop.
    for _ in 0..10 {
        let page = db.fixes_after(cursor, 4).unwrap();
        if page.is_empty() {
            break;
        }
        cursor = FixCursor::at(page.last().unwrap());
        read.extend(page);
    }
    assert_eq!(read.len(), 14);
    let keys: Vec<(i64, u32, u64)> = read
        .iter()
        .map(|r| (r.fix.received_ms, r.fix.client, r.frame))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(keys, sorted, "in cursor order, each once");
    assert_eq!(read[0].fix.fix, fix(10));
    // Fixes received before the cursor's time are not read.
    assert_eq!(
        db.fixes_after(FixCursor::before(1_002), 100).unwrap().len(),
        3
    );
    assert!(db
        .fixes_after(FixCursor::before(1_003), 100)
        .unwrap()
        .is_empty());
}
