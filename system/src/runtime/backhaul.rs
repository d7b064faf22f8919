//! A tier-2's path into the database: [`StorageBackhaul`] turns what the role's receiver
//! delivered into records and queues them for a writer thread that stores them in batches,
//! one transaction per batch, so the role's event loop never waits on the database.
//!
//! The queue is bounded: when the database falls behind, records beyond it are counted as
//! dropped (and logged), not buffered without limit.
//!
//! Once a batch is committed the writer reports its frames back through a channel;
//! [`Backhaul::poll_stored`] hands them to the role, which tells the clients (`STORED`), and
//! [`Backhaul::poll_timeout`] asks to be polled every [`STORED_POLL`] while frames are
//! outstanding. A frame dropped here or in a failed batch is never reported: its client still
//! holds it and sends it again (storage is idempotent per client and frame).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::backend::{FrameRecord, LinkRecord, SessionRecord, Storage};
use crate::device::CapturedFrame;
use crate::role::{Backhaul, Delivered, StoredFrame};
use crate::stats::Samples;
use crate::time::Instant;

/// Records waiting for the writer at most.
pub const QUEUE: usize = 4096;
/// Records stored per transaction at most.
const BATCH: usize = 256;
/// How often a session's link figures and last-seen time are written.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often the role polls for committed frames while some are outstanding.
pub const STORED_POLL: Duration = Duration::from_millis(5);

enum Record {
    Session(SessionRecord),
    /// A frame, and whether it was backfilled.
    Frame(FrameRecord, bool),
    Link(LinkRecord),
}

/// What the writer did with a batch's frames.
struct Written {
    stored: Vec<StoredFrame>,
    failed: u64,
}

/// What the backhaul did, shared with the writer thread.
#[derive(Debug, Default)]
pub struct BackhaulCounters {
    pub frames_queued: AtomicU64,
    pub frames_stored: AtomicU64,
    /// The fixes of the stored frames that had one.
    pub fixes_stored: AtomicU64,
    /// Link figure rows (one per session and reporting interval).
    pub links_stored: AtomicU64,
    /// Delivered frames that are not captured frames (no JPEG and fix to store).
    pub frames_undecodable: AtomicU64,
    /// Records dropped because the writer was behind.
    pub records_dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Frames refused because their (client, frame) key holds a different picture (answered
    /// STORED, since no retry could store them; not counted in `frames_stored`).
    pub frames_conflicting: AtomicU64,
}

/// A snapshot of [`BackhaulCounters`], for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackhaulReport {
    pub frames_queued: u64,
    pub frames_stored: u64,
    pub fixes_stored: u64,
    pub links_stored: u64,
    pub frames_undecodable: u64,
    pub records_dropped: u64,
    pub write_errors: u64,
    pub frames_conflicting: u64,
}

impl BackhaulCounters {
    pub fn report(&self) -> BackhaulReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BackhaulReport {
            frames_queued: get(&self.frames_queued),
            frames_stored: get(&self.frames_stored),
            fixes_stored: get(&self.fixes_stored),
            links_stored: get(&self.links_stored),
            frames_undecodable: get(&self.frames_undecodable),
            records_dropped: get(&self.records_dropped),
            write_errors: get(&self.write_errors),
            frames_conflicting: get(&self.frames_conflicting),
        }
    }

    /// The totals the tier-2's metrics show.
    pub fn writes(&self) -> crate::metrics::StorageWrites {
        let r = self.report();
        crate::metrics::StorageWrites {
            frames_stored: r.frames_stored,
            fixes_stored: r.fixes_stored,
            links_stored: r.links_stored,
            write_errors: r.write_errors,
            records_dropped: r.records_dropped,
        }
    }
}

/// One session's figures over the current reporting interval.
#[derive(Debug)]
struct Window {
    peer: SocketAddr,
    started_ms: i64,
    /// When the session last delivered a frame (or opened): its row's `last_seen_ms`, so a
    /// tier-2 the client has left never overwrites the row of the one it moved to.
    last_heard: Instant,
    since: Instant,
    segments: u64,
    failed: u64,
    reassembly_ms: Samples,
    delivered: u64,
    dropped: u64,
    segment_size: u32,
}

/// See the [module docs](self).
pub struct StorageBackhaul {
    tier2: u32,
    tier2_addr: SocketAddr,
    /// Role time at which the wall clock read `origin_ms`.
    origin: Instant,
    origin_ms: i64,
    queue: SyncSender<Record>,
    windows: BTreeMap<u32, Window>,
    counters: Arc<BackhaulCounters>,
    written: Receiver<Written>,
    /// Frames queued and not yet reported stored or failed.
    outstanding: u64,
    last_poll: Instant,
}

/// Milliseconds since the Unix epoch now.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl StorageBackhaul {
    /// Starts the writer thread over `storage`. `now` is the role clock's reading at this
    /// moment; `tier2_addr` is where the backend sends commands for this tier-2's clients.
    /// The thread ends once the backhaul is dropped and its queue is written.
    pub fn start(
        storage: Box<dyn Storage>,
        tier2: u32,
        tier2_addr: SocketAddr,
        now: Instant,
    ) -> (Self, Arc<BackhaulCounters>, JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (written_tx, written) = mpsc::channel();
        let counters = Arc::new(BackhaulCounters::default());
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name(format!("tier2-{tier2}-db"))
            .spawn(move || write_loop(storage, rx, &c, &written_tx))
            .expect("spawning the database writer thread");
        (
            StorageBackhaul {
                tier2,
                tier2_addr,
                origin: now,
                origin_ms: unix_ms(),
                queue: tx,
                windows: BTreeMap::new(),
                counters: counters.clone(),
                written,
                outstanding: 0,
                last_poll: now,
            },
            counters,
            writer,
        )
    }

    fn ms(&self, now: Instant) -> i64 {
        let d = now.saturating_duration_since(self.origin);
        self.origin_ms + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
    }

    fn push(&self, r: Record) -> bool {
        match self.queue.try_send(r) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let n = self
                    .counters
                    .records_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n + 1, "database behind: records dropped");
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters
                    .records_dropped
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn session_record(&self, session: u32, w: &Window, now: Instant) -> SessionRecord {
        SessionRecord {
            client: session,
            tier2: self.tier2,
            tier2_addr: self.tier2_addr,
            client_addr: w.peer,
            started_ms: w.started_ms,
            last_seen_ms: self.ms(w.last_heard.min(now)),
        }
    }

    /// Writes the session's figures when its interval is over.
    fn report(&mut self, now: Instant, session: u32) {
        let Some(w) = self.windows.get(&session) else {
            return;
        };
        if now.saturating_duration_since(w.since) < REPORT_EVERY {
            return;
        }
        let expected = w.segments;
        let link = LinkRecord {
            client: session,
            at_ms: self.ms(now),
            segment_size: w.segment_size,
            loss: if expected == 0 {
                0.0
            } else {
                w.failed as f64 / expected as f64
            },
            latency_ms: w.reassembly_ms.quantile(0.5),
            frames_delivered: w.delivered,
            frames_dropped: w.dropped,
        };
        let rec = self.session_record(session, w, now);
        self.push(Record::Session(rec));
        self.push(Record::Link(link));
        if let Some(w) = self.windows.get_mut(&session) {
            *w = Window {
                since: now,
                segments: 0,
                failed: 0,
                reassembly_ms: Samples::default(),
                delivered: 0,
                dropped: 0,
                ..*w
            };
        }
    }
}

impl Backhaul for StorageBackhaul {
    fn session_opened(&mut self, now: Instant, session: u32, peer: SocketAddr) {
        let w = Window {
            peer,
            started_ms: self.ms(now),
            last_heard: now,
            since: now,
            segments: 0,
            failed: 0,
            reassembly_ms: Samples::default(),
            delivered: 0,
            dropped: 0,
            segment_size: 0,
        };
        let rec = self.session_record(session, &w, now);
        self.windows.insert(session, w);
        self.push(Record::Session(rec));
    }

    fn frame_delivered(&mut self, now: Instant, f: &Delivered<'_>) {
        if let Some(w) = self.windows.get_mut(&f.session) {
            w.segments += u64::from(f.segments);
            w.failed += u64::from(f.failed);
            w.reassembly_ms.push(f.reassembly.as_secs_f64() * 1e3);
            w.delivered += 1;
            w.last_heard = now;
            w.segment_size = u32::try_from(f.segment_size).unwrap_or(u32::MAX);
        }
        match CapturedFrame::decode(f.data) {
            Ok(c) => {
                let record = FrameRecord {
                    client: f.session,
                    frame: f.seq,
                    tier2: self.tier2,
                    capture_ms: i64::try_from(c.capture_ms).unwrap_or(i64::MAX),
                    received_ms: self.ms(now),
                    fix: c.fix,
                    segment_size: u32::try_from(f.segment_size).unwrap_or(u32::MAX),
                    jpeg: c.jpeg,
                };
                if self.push(Record::Frame(record, f.backfill)) {
                    self.counters.frames_queued.fetch_add(1, Ordering::Relaxed);
                    self.outstanding += 1;
                }
            }
            Err(e) => {
                self.counters
                    .frames_undecodable
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(session = f.session, frame = f.frame, error = %e, "frame not stored");
            }
        }
        self.report(now, f.session);
    }

    fn frame_dropped(&mut self, now: Instant, session: u32, _frame: u32) {
        if let Some(w) = self.windows.get_mut(&session) {
            w.dropped += 1;
        }
        self.report(now, session);
    }

    fn session_closed(&mut self, now: Instant, session: u32) {
        if let Some(w) = self.windows.remove(&session) {
            let rec = self.session_record(session, &w, now);
            self.push(Record::Session(rec));
        }
    }

    fn poll_stored(&mut self, now: Instant, out: &mut Vec<StoredFrame>) {
        self.last_poll = now;
        while let Ok(w) = self.written.try_recv() {
            self.outstanding = self
                .outstanding
                .saturating_sub(w.stored.len() as u64 + w.failed);
            out.extend(w.stored);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (self.outstanding > 0).then_some(self.last_poll + STORED_POLL)
    }
}

fn write_loop(
    mut storage: Box<dyn Storage>,
    rx: Receiver<Record>,
    c: &BackhaulCounters,
    written: &mpsc::Sender<Written>,
) {
    let mut frames = Vec::with_capacity(BATCH);
    let mut backfill = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut fail = |e: crate::backend::StorageError| {
            let n = c.write_errors.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(error = %e, errors = n + 1, "database write failed");
            }
        };
        for r in batch {
            match r {
                Record::Frame(f, b) => {
                    frames.push(f);
                    backfill.push(b);
                }
                Record::Session(s) => storage.upsert_session(&s).unwrap_or_else(&mut fail),
                Record::Link(l) => match storage.insert_link(&l) {
                    Ok(()) => {
                        c.links_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => fail(e),
                },
            }
        }
        if !frames.is_empty() {
            let outcome = match storage.insert_frames(&frames) {
                Ok(inserted) => {
                    for &(client, frame) in &inserted.conflicts {
                        let n = c.frames_conflicting.fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() || n == 0 {
                            tracing::warn!(
                                client,
                                frame,
                                conflicts = n + 1,
                                "frame refused: its id is stored already with another picture"
                            );
                        }
                    }
                    // A conflicting frame is answered STORED all the same: storage will never
                    // take it (retrying would clog the camera's ring and its backfill for ever),
                    // so the camera lets it go, and the refusal is counted and logged here.
                    let stored: Vec<StoredFrame> = frames
                        .iter()
                        .zip(&backfill)
                        .map(|(f, &backfill)| StoredFrame {
                            session: f.client,
                            seq: f.frame,
                            backfill,
                        })
                        .collect();
                    let kept = stored.len() - inserted.conflicts.len().min(stored.len());
                    c.frames_stored.fetch_add(kept as u64, Ordering::Relaxed);
                    let fixes = frames
                        .iter()
                        .filter(|f| {
                            f.fix.is_some() && !inserted.conflicts.contains(&(f.client, f.frame))
                        })
                        .count();
                    c.fixes_stored.fetch_add(fixes as u64, Ordering::Relaxed);
                    Written { stored, failed: 0 }
                }
                Err(e) => {
                    fail(e);
                    Written {
                        stored: Vec::new(),
                        failed: frames.len() as u64,
                    }
                }
            };
            // The role may be gone already (shutting down): nothing to tell then.
            let _ = written.send(outcome);
            frames.clear();
            backfill.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::storage;

    fn delivered(frame: u32, data: &[u8], backfill: bool) -> Delivered<'_> {
        Delivered {
            session: 7,
            frame,
            seq: u64::from(frame),
            data,
            segment_size: 500,
            segments: 1,
            failed: 0,
            reassembly: Duration::ZERO,
            backfill,
        }
    }

    /// Polls until `n` frames are reported stored (the writer thread commits meanwhile).
    fn stored(b: &mut StorageBackhaul, n: usize) -> Vec<StoredFrame> {
        let mut out = Vec::new();
        for _ in 0..2000 {
            b.poll_stored(Instant::ZERO, &mut out);
            if out.len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        out
    }

    #[test]
    fn reports_frames_after_commit_and_stores_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let db = storage::open(&url).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000));
        let (mut b, counters, writer) = StorageBackhaul::start(db, 1, addr, Instant::ZERO);
        let frame = |ms: u64| {
            CapturedFrame {
                capture_ms: ms,
                fix: None,
                jpeg: vec![0xff, 0xd8, ms as u8],
            }
            .encode()
        };
        b.session_opened(Instant::ZERO, 7, addr);
        assert_eq!(b.poll_timeout(), None, "nothing outstanding");
        let (f1, f2) = (frame(100), frame(200));
        b.frame_delivered(Instant::ZERO, &delivered(1, &f1, false));
        b.frame_delivered(Instant::ZERO, &delivered(2, &f2, true));
        assert!(
            b.poll_timeout().is_some(),
            "polled while frames are outstanding"
        );
        let mut got = stored(&mut b, 2);
        got.sort();
        assert_eq!(
            got,
            vec![
                StoredFrame {
                    session: 7,
                    seq: 1,
                    backfill: false
                },
                StoredFrame {
                    session: 7,
                    seq: 2,
                    backfill: true
                }
            ]
        );
        assert_eq!(b.poll_timeout(), None);
        // Frame 2 again (its STORED was lost, the client backfilled it): reported again,
        // stored once.
        b.frame_delivered(Instant::ZERO, &delivered(2, &f2, true));
        assert_eq!(stored(&mut b, 1).len(), 1);
        // Another picture under frame 1's id (ids repeated after a clock step): refused and
        // counted; answered STORED so the camera does not retry it for ever.
        let before = counters.report().frames_stored;
        b.frame_delivered(Instant::ZERO, &delivered(1, &frame(300), false));
        b.frame_delivered(Instant::ZERO, &delivered(3, &frame(400), false));
        let mut got: Vec<u64> = stored(&mut b, 2).iter().map(|s| s.seq).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 3]);
        assert_eq!(counters.report().frames_conflicting, 1);
        assert_eq!(
            counters.report().frames_stored,
            before + 1,
            "only frame 3 stored"
        );
        drop(b);
        writer.join().unwrap();
        assert_eq!(counters.report().write_errors, 0);
        let mut db = storage::open(&url).unwrap();
        let rows = db.frames(7, i64::MIN, i64::MAX, 100).unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| (r.frame, r.capture_ms))
                .collect::<Vec<_>>(),
            vec![(1, 100), (2, 200), (3, 400)],
            "one row per frame, with its capture time; frame 1 the first picture"
        );
    }
}
