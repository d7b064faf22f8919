//! The fence watcher: the backend's task that feeds every stored fix to the geofence
//! [`Detector`], stores the events it raises and publishes them to the live sockets.
//!
//! Tier-2s write fixes straight into the database (from their writer threads, on several
//! hosts perhaps), so the backend learns of them by reading: every [`POLL`] the watcher reloads
//! the fences and groups (small tables; changes made through any backend's API take effect
//! within a poll) and reads the fixes after its cursor, in `(received_ms, client, frame)` order,
//! in pages.
//!
//! - **Late commits.** A tier-2 commits in batches and its clock is not the backend's, so a fix
//!   can be committed after the watcher read past its `received_ms`. Each poll therefore starts
//!   [`LATE`] before the backend's clock (or at its cursor, if that is earlier) and the detector
//!   skips what it took already (each client's fixes are taken in frame order, once). A tier-2
//!   whose clock runs more than [`LATE`] behind the backend's loses its clients' events.
//! - **Restart.** The watcher starts at the backend's start time: fixes stored while no backend
//!   ran raise no events. Its inside state is rebuilt from the last stored event of each
//!   (fence, client), and every frame already stored counts as taken, so a restart repeats no
//!   event, and the first fix after it raises what it implies (a `leave` for a client that left
//!   meanwhile).
//! - **Cost.** Per poll: two small reads, about `LATE / POLL` times the fixes of one poll, and
//!   per fix a bounding-box test per fence ([`MAX_FENCES`](crate::backend::geofence::MAX_FENCES)
//!   at most) and a polygon test for the fences whose box holds it.
//!
//! Events are raised in one place, [`raise_geofence_events`] (after they are stored): it
//! counts them (`livecam_geofence_events_total`) and publishes them.
//!
//! With no fence at all the watcher reads no fixes: it only moves its cursor to [`LATE`] before
//! now, so a fence created later raises nothing for fixes older than that.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::backend::geofence::{Detector, FixCursor, GeofenceEvent};
use crate::backend::{Storage, StorageError};
use crate::metrics::BackendMetrics;

/// How often the watcher reads new fixes.
pub const POLL: Duration = Duration::from_millis(500);
/// How far behind the backend's clock each poll looks again for fixes committed late.
pub const LATE: Duration = Duration::from_secs(3);
/// Fixes read per query.
const PAGE: u32 = 2000;
/// Pages read per poll at most (the rest waits for the next poll).
const MAX_PAGES: usize = 50;

type Shared = Arc<Mutex<Box<dyn Storage>>>;

fn lock(storage: &Mutex<Box<dyn Storage>>) -> std::sync::MutexGuard<'_, Box<dyn Storage>> {
    // A panic while holding the lock leaves the connection as usable as any failed call.
    storage.lock().unwrap_or_else(|e| e.into_inner())
}

/// The watcher's state between polls.
struct Watcher {
    detector: Detector,
    /// Nothing received before this is read.
    start: FixCursor,
    /// The last fix read.
    cursor: FixCursor,
}

impl Watcher {
    /// A watcher from `start_ms` on, its state rebuilt from storage.
    fn new(db: &mut dyn Storage, start_ms: i64) -> Result<Self, StorageError> {
        let mut detector = Detector::new();
        detector.set_fences(&db.geofences()?, &db.groups()?);
        detector.restore(&db.last_geofence_events()?);
        for c in db.clients()? {
            if let Some(frame) = c.last_frame {
                detector.seen(c.client, frame);
            }
        }
        let start = FixCursor::before(start_ms);
        Ok(Watcher {
            detector,
            start,
            cursor: start,
        })
    }

    /// One poll at `now_ms`: the events raised, already stored.
    fn poll(
        &mut self,
        storage: &Mutex<Box<dyn Storage>>,
        now_ms: i64,
    ) -> Result<Vec<GeofenceEvent>, StorageError> {
        {
            let mut db = lock(storage);
            let (fences, groups) = (db.geofences()?, db.groups()?);
            self.detector.set_fences(&fences, &groups);
        }
        let late = i64::try_from(LATE.as_millis()).unwrap_or(i64::MAX);
        let recent = FixCursor::before(now_ms.saturating_sub(late));
        if !self.detector.has_fences() {
            self.cursor = self.cursor.max(recent);
            return Ok(Vec::new());
        }
        let mut at = self.cursor.min(recent).max(self.start);
        let mut events = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = lock(storage).fixes_after(at, PAGE)?;
            for row in &page {
                self.detector.handle_fix(row, &mut events);
            }
            let Some(last) = page.last() else { break };
            at = FixCursor::at(last);
            self.cursor = self.cursor.max(at);
            if page.len() < PAGE as usize {
                break;
            }
        }
        if !events.is_empty() {
            lock(storage).insert_geofence_events(&events)?;
        }
        Ok(events)
    }
}

/// Where geofence events are raised: they are stored already; this counts them for
/// `/metrics`, publishes them to the live sockets (no receiver is fine) and logs them.
pub fn raise_geofence_events(
    events: &[GeofenceEvent],
    updates: &broadcast::Sender<GeofenceEvent>,
    metrics: &BackendMetrics,
) {
    for e in events {
        metrics.geofence_event(e.kind);
        tracing::info!(
            fence = e.fence,
            client = e.client,
            kind = e.kind.as_str(),
            "geofence event"
        );
        let _ = updates.send(e.clone());
    }
}

/// Runs the watcher until `stop` turns true: from `start_ms` (the backend's start) on, its
/// events published on `updates`. A storage failure is logged and the poll tried again.
pub async fn run(
    storage: Shared,
    updates: broadcast::Sender<GeofenceEvent>,
    metrics: Arc<BackendMetrics>,
    start_ms: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut watcher: Option<Watcher> = None;
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let db = storage.clone();
        let w = watcher.take();
        let polled = tokio::task::spawn_blocking(move || {
            let mut w = match w {
                Some(w) => w,
                None => Watcher::new(lock(&db).as_mut(), start_ms)?,
            };
            let events = w.poll(&db, unix_ms());
            Ok::<_, StorageError>((w, events))
        })
        .await;
        match polled {
            Ok(Ok((w, events))) => {
                watcher = Some(w);
                match events {
                    Ok(events) => raise_geofence_events(&events, &updates, &metrics),
                    Err(e) => warn(&mut failures, &e),
                }
            }
            Ok(Err(e)) => warn(&mut failures, &e),
            Err(e) => tracing::warn!(error = %e, "fence watcher poll panicked"),
        }
    }
}

fn warn(failures: &mut u64, e: &StorageError) {
    *failures += 1;
    if failures.is_power_of_two() {
        tracing::warn!(error = %e, failures = *failures, "fence watcher poll failed");
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::geofence::{EventKind, LatLon, NewGeofence};
    use crate::backend::FrameRecord;
    use crate::device::Fix;

    fn frame(client: u32, frame: u64, received_ms: i64, lat: f64) -> FrameRecord {
        FrameRecord {
            client,
            frame,
            tier2: 1,
            capture_ms: received_ms,
            received_ms,
            fix: Some(Fix {
                lat,
                lon: 11.05,
                speed_mps: 0.0,
                heading_deg: 0.0,
                fix_time_ms: frame,
            }),
            segment_size: 500,
            jpeg: vec![0xff, 0xd8, frame as u8],
        }
    }

    const IN: f64 = 48.05;
    const OUT: f64 = 48.2;

    fn storage() -> Shared {
        let mut db = crate::backend::open("sqlite::memory:").unwrap();
        db.insert_geofence(&fences_new(), "op", 0).unwrap();
        Arc::new(Mutex::new(db))
    }

    fn kinds(events: &[GeofenceEvent]) -> Vec<(u32, u64, EventKind)> {
        events.iter().map(|e| (e.client, e.frame, e.kind)).collect()
    }

    #[test]
    fn fixes_committed_late_are_found_and_none_is_taken_twice() {
        let s = storage();
        let now = 100_000;
        let mut w = Watcher::new(lock(&s).as_mut(), now).unwrap();
        lock(&s)
            .insert_frames(&[frame(7, 1, now + 10, IN), frame(8, 1, now + 20, OUT)])
            .unwrap();
        let e = w.poll(&s, now + 30).unwrap();
        assert_eq!(kinds(&e), vec![(7, 1, EventKind::Enter)]);
        // Client 8's next fix is committed after the watcher read past its time.
        lock(&s)
            .insert_frames(&[frame(7, 2, now + 40, OUT)])
            .unwrap();
        assert_eq!(
            kinds(&w.poll(&s, now + 50).unwrap()),
            vec![(7, 2, EventKind::Leave)]
        );
        lock(&s)
            .insert_frames(&[frame(8, 2, now + 25, IN)])
            .unwrap();
        assert_eq!(
            kinds(&w.poll(&s, now + 60).unwrap()),
            vec![(8, 2, EventKind::Enter)]
        );
        assert!(w.poll(&s, now + 70).unwrap().is_empty(), "nothing twice");
        let stored = lock(&s).geofence_events(i64::MIN, i64::MAX, 100).unwrap();
        assert_eq!(stored.len(), 3);
        // A fix before the start is never read.
        lock(&s).insert_frames(&[frame(9, 1, now - 1, IN)]).unwrap();
        assert!(w.poll(&s, now + 80).unwrap().is_empty());
    }

    #[test]
    fn with_no_fence_nothing_is_read_and_a_new_fence_starts_from_recent_fixes() {
        let s = storage();
        let now = 100_000;
        let fences = lock(&s).geofences().unwrap();
        lock(&s).delete_geofence(fences[0].id).unwrap();
        let mut w = Watcher::new(lock(&s).as_mut(), now).unwrap();
        lock(&s)
            .insert_frames(&[frame(7, 1, now + 10, IN), frame(8, 1, now + 29_000, IN)])
            .unwrap();
        assert!(w.poll(&s, now + 30_000).unwrap().is_empty());
        // A fence now: client 7's old fix is past, client 8's recent one counts.
        lock(&s)
            .insert_geofence(&fences_new(), "op", now + 30_000)
            .unwrap();
        assert_eq!(
            kinds(&w.poll(&s, now + 30_500).unwrap()),
            vec![(8, 1, EventKind::Enter)]
        );
    }

    fn fences_new() -> NewGeofence {
        NewGeofence {
            name: "square".into(),
            group: None,
            points: vec![
                LatLon(48.0, 11.0),
                LatLon(48.0, 11.1),
                LatLon(48.1, 11.1),
                LatLon(48.1, 11.0),
            ],
        }
    }

    #[test]
    fn a_restarted_watcher_repeats_nothing_and_raises_what_the_next_fix_implies() {
        let s = storage();
        let now = 100_000;
        let mut w = Watcher::new(lock(&s).as_mut(), now).unwrap();
        lock(&s)
            .insert_frames(&[frame(7, 1, now + 10, IN), frame(8, 1, now + 10, IN)])
            .unwrap();
        assert_eq!(w.poll(&s, now + 20).unwrap().len(), 2);
        // Restart: a new watcher from a later start, fixes from before it re-read by nothing.
        let later = now + 1_000;
        let mut w = Watcher::new(lock(&s).as_mut(), later).unwrap();
        lock(&s)
            .insert_frames(&[frame(7, 2, later + 10, OUT), frame(8, 2, later + 10, IN)])
            .unwrap();
        assert_eq!(
            kinds(&w.poll(&s, later + 20).unwrap()),
            vec![(7, 2, EventKind::Leave)],
            "7 left, 8 stays inside: no second enter"
        );
    }
}
