//! Live video for the browser: the frames of the clients a live socket watches, pushed on that
//! socket as they are stored.
//!
//! **Why the live socket and not multipart MJPEG.** An `<img>` on a
//! `multipart/x-mixed-replace` stream is the simplest player, but the page learns nothing per
//! frame (no event when a part is shown, so no latency, no frame count, no way to drop a late
//! frame), and each stream holds one HTTP/1.1 connection: browsers open at most six per host,
//! so a grid of eight cameras would stall two of them, and every stream would need the login
//! checked on its own. Frames on the one live socket carry their capture and arrival times, the
//! page shows each when it is decoded and measures the latency, and the socket's login check
//! covers them. For one camera the two are equally smooth on screen (the browser test measures
//! both side by side; figures in the README).
//!
//! **How frames are found.** Tier-2s write frames straight to the database (see
//! `runtime::backhaul`); this server learns of them by asking. One poller per watched client,
//! shared by every socket that watches it, reads the frames received since the last one it saw
//! every [`VIDEO_POLL_MS`] and broadcasts them; it stops once no socket watches the client.
//! A page of [`FRAMES_PER_POLL`] frames means a backlog (a backfill after an outage): only its
//! newest [`NEWEST_OF_A_BACKLOG`] pictures are read, live video wants the present.
//!
//! **Who may watch, and what it costs.** Only a logged-in socket (the live socket's login
//! check); viewers may watch every client, as they read everything. A socket watches at most
//! [`MAX_WATCH`] clients, so a page cannot start more than that many pollers; a slow socket
//! never slows the others: each watched client is forwarded through a broadcast channel of
//! [`CHANNEL`] frames, and a socket that falls behind skips to the newest.
//!
//! **Multipart MJPEG too**, at `GET /api/clients/{id}/video.mjpeg` (logged in, like the
//! socket; the stream ends when the login does): for players outside the page (VLC, ffplay,
//! an `<img>` in another dashboard). The same poller feeds it. The browser test measures both
//! paths on screen side by side (see the README).
//!
//! **On the socket.** A binary message per frame: a 4-byte big-endian length, that many bytes
//! of JSON (`{"type":"frame","client":1,"frame":"17","tier2":2,"capture_ms":..,
//! "received_ms":..,"segment_size":..,"bytes":..}`, `frame` a decimal string as everywhere in
//! the API), then the JPEG.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::{with_storage, AppState};
use crate::backend::FrameRecord;

/// How often a watched client's frames are looked for.
pub(super) const VIDEO_POLL_MS: u64 = 25;
/// Most clients one socket may watch at once.
pub(super) const MAX_WATCH: usize = 16;
/// Frames listed per poll.
const FRAMES_PER_POLL: u32 = 16;
/// Pictures read of a full page (a backlog).
const NEWEST_OF_A_BACKLOG: usize = 2;
/// Frames a watched client's channel holds for a socket that is behind.
const CHANNEL: usize = 8;

type Frame = Arc<FrameRecord>;

/// The running pollers, by client.
#[derive(Default)]
pub(super) struct VideoHub {
    pollers: std::sync::Mutex<BTreeMap<u32, broadcast::Sender<Frame>>>,
}

impl VideoHub {
    /// The clients a poller runs for.
    #[cfg(test)]
    pub(super) fn clients(&self) -> Vec<u32> {
        match self.pollers.lock() {
            Ok(g) => g.keys().copied().collect(),
            Err(p) => p.into_inner().keys().copied().collect(),
        }
    }
}

/// A receiver of `client`'s new frames, starting its poller if none runs.
fn subscribe(shared: &AppState, client: u32) -> broadcast::Receiver<Frame> {
    let mut pollers = match shared.video.pollers.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(tx) = pollers.get(&client) {
        return tx.subscribe();
    }
    let (tx, rx) = broadcast::channel(CHANNEL);
    pollers.insert(client, tx.clone());
    tokio::spawn(poll(shared.clone(), client, tx));
    rx
}

/// The frames of a listing to read and send: those after `seen` (the arrival time of the
/// newest already sent, and the ids sent with that time), the newest few of a full page.
fn new_frames(
    listed: &[crate::backend::FrameMeta],
    seen: &(i64, BTreeSet<u64>),
    page: usize,
) -> Vec<u64> {
    let fresh: Vec<u64> = listed
        .iter()
        .filter(|m| m.received_ms > seen.0 || !seen.1.contains(&m.frame))
        .map(|m| m.frame)
        .collect();
    if listed.len() >= page {
        fresh[fresh.len().saturating_sub(NEWEST_OF_A_BACKLOG)..].to_vec()
    } else {
        fresh
    }
}

async fn poll(shared: AppState, client: u32, tx: broadcast::Sender<Frame>) {
    // Start after the newest frame stored now: a socket sends that one itself when it starts
    // watching.
    let newest = with_storage(&shared, move |s| s.latest_frame(client))
        .await
        .ok()
        .flatten();
    let mut seen: (i64, BTreeSet<u64>) = match newest {
        Some(f) => (f.received_ms, BTreeSet::from([f.frame])),
        None => (i64::MIN, BTreeSet::new()),
    };
    let mut interval = tokio::time::interval(Duration::from_millis(VIDEO_POLL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if tx.receiver_count() == 0 {
            let mut pollers = match shared.video.pollers.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            // Checked under the lock `subscribe` takes, so no socket joins as we leave.
            if tx.receiver_count() == 0 {
                pollers.remove(&client);
                return;
            }
        }
        let from = seen.0;
        let listed = match with_storage(&shared, move |s| {
            s.frames(client, from, i64::MAX, FRAMES_PER_POLL)
        })
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(client, error = %e.message, "live video poll failed");
                continue;
            }
        };
        let wanted = new_frames(&listed, &seen, FRAMES_PER_POLL as usize);
        for m in &listed {
            if m.received_ms > seen.0 {
                seen = (m.received_ms, BTreeSet::new());
            }
            if m.received_ms == seen.0 {
                seen.1.insert(m.frame);
            }
        }
        // A full page all stored in one millisecond would be listed again and again: step
        // past that millisecond (live video skips some of a burst, it never stalls).
        if listed.len() >= FRAMES_PER_POLL as usize && listed.iter().all(|m| m.received_ms == from)
        {
            seen = (from.saturating_add(1), BTreeSet::new());
        }
        for frame in wanted {
            match with_storage(&shared, move |s| s.frame(client, frame)).await {
                // No receiver is not an error: the next tick stops the poller.
                Ok(Some(f)) => drop(tx.send(Arc::new(f))),
                // Pruned by retention in between: nothing to show.
                Ok(None) => {}
                Err(e) => tracing::warn!(client, error = %e.message, "live video read failed"),
            }
        }
    }
}

/// The MJPEG stream's boundary.
const BOUNDARY: &str = "livecamframe";

/// One part of the MJPEG stream.
fn mjpeg_part(f: &FrameRecord) -> axum::body::Bytes {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Livecam-Frame: {}\r\n\r\n",
        f.jpeg.len(),
        f.frame
    )
    .into_bytes();
    out.extend_from_slice(&f.jpeg);
    out.extend_from_slice(b"\r\n");
    out.into()
}

/// `GET /api/clients/{id}/video.mjpeg`: the client's frames as `multipart/x-mixed-replace`,
/// its newest stored picture first. A viewer that reads slowly skips to newer frames; the
/// stream ends when the viewer goes or its login ends (checked every second).
pub(super) async fn mjpeg(
    axum::extract::State(shared): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, super::ApiError> {
    use axum::response::IntoResponse;
    let id: u32 = super::routes::parse_id(&id, "client id")?;
    // `require_login` let the request in, so it carries a token.
    let login = super::auth::login_of(&headers).unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(2);
    let mut frames = subscribe(&shared, id);
    tokio::spawn(async move {
        if let Ok(Some(f)) = with_storage(&shared, move |s| s.latest_frame(id)).await {
            if tx.send(Ok(mjpeg_part(&f))).await.is_err() {
                return;
            }
        }
        let mut check = tokio::time::interval(Duration::from_millis(super::auth::LOGIN_CHECK_MS));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = check.tick() => {
                    if matches!(super::auth::login_holds(&shared, &login).await, Ok(false)) {
                        return;
                    }
                }
                f = frames.recv() => match f {
                    Ok(f) => {
                        if tx.send(Ok(mjpeg_part(&f))).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (axum::http::header::CACHE_CONTROL, "no-store".to_string()),
        ],
        axum::body::Body::from_stream(super::export::ChunkStream(rx)),
    )
        .into_response())
}

/// One binary socket message: header length, JSON header, JPEG.
pub(super) fn message(f: &FrameRecord) -> Vec<u8> {
    let header = json!({
        "type": "frame",
        "client": f.client,
        "frame": f.frame.to_string(),
        "tier2": f.tier2,
        "capture_ms": f.capture_ms,
        "received_ms": f.received_ms,
        "segment_size": f.segment_size,
        "bytes": f.jpeg.len(),
    })
    .to_string();
    let mut out = Vec::with_capacity(4 + header.len() + f.jpeg.len());
    // A header of a few hundred bytes: its length fits.
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&f.jpeg);
    out
}

/// Why a watch request was refused (sent back as `{"type":"error","error":...}`).
pub(super) fn parse_watch(msg: &serde_json::Value) -> Result<BTreeSet<u32>, String> {
    let list = msg
        .get("clients")
        .and_then(|c| c.as_array())
        .ok_or("watch needs clients: an array of client ids")?;
    if list.len() > MAX_WATCH {
        return Err(format!(
            "watch takes at most {MAX_WATCH} clients, got {}",
            list.len()
        ));
    }
    list.iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| format!("client ids are whole numbers, got {v}"))
        })
        .collect()
}

/// The clients one socket watches: a forwarding task per client into the socket's channel,
/// stopped when the client is unwatched or the socket ends.
pub(super) struct Watching {
    tasks: BTreeMap<u32, JoinHandle<()>>,
    tx: mpsc::Sender<Frame>,
    /// Frames a forwarder skipped because the socket was behind.
    pub skipped: Arc<std::sync::atomic::AtomicU64>,
}

impl Watching {
    /// Frames for the socket arrive on the receiver.
    pub fn new() -> (Watching, mpsc::Receiver<Frame>) {
        // Small: a socket that cannot keep up should skip, not queue seconds of video.
        let (tx, rx) = mpsc::channel(2);
        let w = Watching {
            tasks: BTreeMap::new(),
            tx,
            skipped: Arc::default(),
        };
        (w, rx)
    }

    /// Watches exactly `clients`; returns the ones newly watched (the socket sends their
    /// newest stored frame at once).
    pub fn set(&mut self, shared: &AppState, clients: &BTreeSet<u32>) -> Vec<u32> {
        self.tasks.retain(|id, task| {
            let keep = clients.contains(id);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut added = Vec::new();
        for &id in clients {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let mut rx = subscribe(shared, id);
            let tx = self.tx.clone();
            let skipped = self.skipped.clone();
            let task = tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(f) => {
                            if tx.send(f).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            skipped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            self.tasks.insert(id, task);
            added.push(id);
        }
        added
    }

    pub fn clients(&self) -> Vec<u32> {
        self.tasks.keys().copied().collect()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FrameMeta;

    fn meta(frame: u64, received_ms: i64) -> FrameMeta {
        FrameMeta {
            client: 1,
            frame,
            tier2: 1,
            capture_ms: received_ms - 5,
            received_ms,
            fix: None,
            segment_size: 1000,
            jpeg_len: 10,
        }
    }

    #[test]
    fn only_frames_after_the_last_sent_and_the_newest_of_a_backlog() {
        let seen = (100, BTreeSet::from([7]));
        let listed = [meta(7, 100), meta(8, 100), meta(9, 130)];
        assert_eq!(new_frames(&listed, &seen, 16), vec![8, 9]);
        let backlog: Vec<FrameMeta> = (10..26).map(|i| meta(i, 200 + i as i64)).collect();
        assert_eq!(new_frames(&backlog, &seen, 16), vec![24, 25]);
        assert!(new_frames(&[meta(7, 100)], &seen, 16).is_empty());
    }

    #[test]
    fn watch_requests_are_bounded_whole_numbers() {
        let ok = parse_watch(&json!({"type": "watch", "clients": [3, 1, 3]})).unwrap();
        assert_eq!(ok, BTreeSet::from([1, 3]));
        assert!(parse_watch(&json!({"type": "watch"})).is_err());
        assert!(parse_watch(&json!({"clients": [-1]})).is_err());
        assert!(parse_watch(&json!({"clients": [1.5]})).is_err());
        assert!(parse_watch(&json!({"clients": [4294967296u64]})).is_err());
        let many: Vec<u32> = (0..=MAX_WATCH as u32).collect();
        let e = parse_watch(&json!({ "clients": many })).unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn a_frame_message_is_length_header_and_jpeg() {
        let f = FrameRecord {
            client: 4,
            frame: u64::MAX,
            tier2: 2,
            capture_ms: 10,
            received_ms: 20,
            fix: None,
            segment_size: 500,
            jpeg: vec![0xff, 0xd8, 0xff, 1, 2],
        };
        let m = message(&f);
        let n = u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let header: serde_json::Value = serde_json::from_slice(&m[4..4 + n]).unwrap();
        assert_eq!(header["frame"], u64::MAX.to_string());
        assert_eq!(header["client"], 4);
        assert_eq!(header["bytes"], 5);
        assert_eq!(&m[4 + n..], &f.jpeg[..]);
    }
}
