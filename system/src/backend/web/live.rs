//! `/api/live`: a WebSocket that pushes the fleet as it changes, and command updates.
//!
//! One poller per server reads the clients from storage every [`POLL_MS`] and publishes the
//! views on a watch channel; it starts with the first browser and stops a few seconds after
//! the last one left. Each socket remembers what it sent and sends only the clients that
//! changed (position, link figures, last frame id, online state) and those that went away.
//!
//! Messages (JSON text):
//! - `{"type":"hello","poll_ms":300,"online_window_ms":N}` first;
//! - `{"type":"clients","full":bool,"clients":[ClientView...],"removed":[id...]}`, the first
//!   one full;
//! - `{"type":"command","command":CommandRecord}` when the command desk finished one;
//! - `{"type":"geofence","event":GeofenceEvent}` when the fence watcher raised one;
//! - `{"type":"lagged","missed":N}` when this socket fell behind the command updates (or
//!   `{"type":"lagged","missed":N,"of":"geofence"}` behind the geofence events);
//! - binary messages: live video frames of the watched clients (see `video`);
//! - `{"type":"watching","clients":[id...]}` answering a watch request, or
//!   `{"type":"error","error":"..."}` when a request from the page was refused.
//!
//! The page sends `{"type":"watch","clients":[id...]}` to choose whose frames it gets (at
//! most `video::MAX_WATCH`; an empty list stops the video). Anything else it sends is
//! answered with an error message and otherwise ignored.
//!
//! A socket lives as long as the login that opened it: every [`LOGIN_CHECK_MS`] it checks the
//! login still holds and, once it is logged out or expired, closes with code 4401 ("login
//! ended"), so a logged-out browser (or a stolen token that was revoked) stops receiving.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::auth::LOGIN_CHECK_MS;
use super::video::{self, Watching};
use super::{client_views, with_storage, AppState, ClientView};

/// How often the poller reads the fleet.
pub(super) const POLL_MS: u64 = 300;
/// The close code a socket whose login ended gets (4000-4999: the application's own).
pub(super) const LOGIN_ENDED: u16 = 4401;
/// Polls with no browser before the poller stops.
const IDLE_POLLS: u32 = 10;

type Snapshot = Option<Arc<Vec<ClientView>>>;

/// Counts a live socket in the metrics' gauge while it lives.
struct OpenSocket(Arc<crate::metrics::BackendMetrics>);

impl OpenSocket {
    fn new(metrics: &Arc<crate::metrics::BackendMetrics>) -> Self {
        metrics.live_sockets.inc();
        OpenSocket(metrics.clone())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.live_sockets.dec();
    }
}

/// The running poller, if any.
#[derive(Default)]
pub(super) struct Hub {
    rx: Mutex<Option<watch::Receiver<Snapshot>>>,
}

/// A receiver of the poller's views, starting the poller if none runs.
fn subscribe(shared: &AppState) -> watch::Receiver<Snapshot> {
    let mut slot = match shared.hub.rx.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(rx) = slot.as_ref() {
        if rx.has_changed().is_ok() {
            return rx.clone();
        }
    }
    let (tx, rx) = watch::channel(None);
    *slot = Some(rx.clone());
    tokio::spawn(poll(shared.clone(), tx));
    rx
}

async fn poll(shared: AppState, tx: watch::Sender<Snapshot>) {
    let mut idle = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(POLL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match client_views(&shared).await {
            Ok(views) => {
                tx.send_if_modified(|old| {
                    if old.as_deref() == Some(&views) {
                        false
                    } else {
                        *old = Some(Arc::new(views));
                        true
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e.message, "live poll failed"),
        }
        // The hub keeps one receiver; more means browsers are watching.
        if tx.receiver_count() > 1 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= IDLE_POLLS {
            let mut slot = match shared.hub.rx.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            // Checked under the lock subscribers take, so none joins as we leave.
            if tx.receiver_count() <= 1 {
                *slot = None;
                return;
            }
            idle = 0;
        }
    }
}

pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Response {
    // `require_login` let the request in, so it carries a token.
    let login = super::auth::login_of(&headers).unwrap_or_default();
    ws.on_upgrade(move |socket| serve(socket, shared, login))
}

/// What changed between what a socket sent and `now`.
fn diff(sent: &mut BTreeMap<u32, ClientView>, now: &[ClientView]) -> (Vec<ClientView>, Vec<u32>) {
    let mut changed = Vec::new();
    for v in now {
        if sent.get(&v.id) != Some(v) {
            changed.push(v.clone());
            sent.insert(v.id, v.clone());
        }
    }
    let removed: Vec<u32> = sent
        .keys()
        .copied()
        .filter(|id| !now.iter().any(|v| v.id == *id))
        .collect();
    for id in &removed {
        sent.remove(id);
    }
    (changed, removed)
}

async fn send(socket: &mut WebSocket, value: serde_json::Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn serve(mut socket: WebSocket, shared: AppState, login: Vec<u8>) {
    let _open = OpenSocket::new(&shared.state.metrics);
    let hello = json!({
        "type": "hello",
        "poll_ms": POLL_MS,
        "online_window_ms": shared.state.online_window_ms,
    });
    if !send(&mut socket, hello).await {
        return;
    }
    let mut views = subscribe(&shared);
    let mut commands = shared.state.command_updates.subscribe();
    let mut fence_events = shared.state.geofence_events.subscribe();
    let mut sent: BTreeMap<u32, ClientView> = BTreeMap::new();
    let mut full = true;
    // A snapshot may already be there.
    views.mark_changed();
    let mut login_check = tokio::time::interval(Duration::from_millis(LOGIN_CHECK_MS));
    login_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut watching, mut frames) = Watching::new();
    loop {
        tokio::select! {
            _ = login_check.tick() => {
                // A storage error is taken for a hiccup (the next check asks again); only a
                // login that is gone ends the socket.
                if matches!(super::auth::login_holds(&shared, &login).await, Ok(false)) {
                    let close = CloseFrame {
                        code: LOGIN_ENDED,
                        reason: "login ended".into(),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(text))) => {
                    if !request(&mut socket, &shared, &mut watching, &text).await {
                        return;
                    }
                }
                Some(Ok(_)) => {}
            },
            Some(frame) = frames.recv() => {
                if socket.send(Message::Binary(video::message(&frame).into())).await.is_err() {
                    return;
                }
            }
            changed = views.changed() => {
                if changed.is_err() {
                    // The poller stopped between our subscribing and now: start another.
                    views = subscribe(&shared);
                    continue;
                }
                let snapshot = views.borrow_and_update().clone();
                let Some(snapshot) = snapshot else { continue };
                let (clients, removed) = diff(&mut sent, &snapshot);
                if clients.is_empty() && removed.is_empty() && !full {
                    continue;
                }
                let msg = json!({
                    "type": "clients",
                    "full": full,
                    "clients": clients,
                    "removed": removed,
                });
                full = false;
                if !send(&mut socket, msg).await {
                    return;
                }
            }
            update = commands.recv() => {
                let msg = match update {
                    Ok(record) => json!({"type": "command", "command": record}),
                    Err(broadcast::error::RecvError::Lagged(n)) => json!({"type": "lagged", "missed": n}),
                    // The sender lives in the state we hold; it cannot close.
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !send(&mut socket, msg).await {
                    return;
                }
            }
            event = fence_events.recv() => {
                let msg = match event {
                    Ok(event) => json!({"type": "geofence", "event": event}),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        json!({"type": "lagged", "missed": n, "of": "geofence"})
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !send(&mut socket, msg).await {
                    return;
                }
            }
        }
    }
}

/// Answers a request the page sent; false when the socket is gone.
async fn request(
    socket: &mut WebSocket,
    shared: &AppState,
    watching: &mut Watching,
    text: &str,
) -> bool {
    let msg: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return send(
                socket,
                json!({"type": "error", "error": format!("not JSON: {e}")}),
            )
            .await
        }
    };
    if msg.get("type").and_then(|t| t.as_str()) != Some("watch") {
        return send(
            socket,
            json!({"type": "error", "error": "the page may only send {\"type\":\"watch\",\"clients\":[...]}"}),
        )
        .await;
    }
    let clients = match video::parse_watch(&msg) {
        Ok(c) => c,
        Err(e) => return send(socket, json!({"type": "error", "error": e})).await,
    };
    let added = watching.set(shared, &clients);
    if !send(
        socket,
        json!({"type": "watching", "clients": watching.clients()}),
    )
    .await
    {
        return false;
    }
    // The newest stored picture of each newly watched client at once, not at its next frame.
    for id in added {
        if let Ok(Some(f)) = with_storage(shared, move |s| s.latest_frame(id)).await {
            if socket
                .send(Message::Binary(video::message(&f).into()))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u32, frame: u64) -> ClientView {
        ClientView {
            id,
            online: true,
            last_seen_ms: Some(1),
            tier2: Some(1),
            tier2_addr: None,
            client_addr: None,
            fix: None,
            link: None,
            last_frame: Some(frame),
        }
    }

    #[test]
    fn diff_sends_only_changes_and_removals() {
        let mut sent = BTreeMap::new();
        let (c, r) = diff(&mut sent, &[view(1, 1), view(2, 1)]);
        assert_eq!((c.len(), r.len()), (2, 0));
        let (c, r) = diff(&mut sent, &[view(1, 1), view(2, 2)]);
        assert_eq!(c, vec![view(2, 2)]);
        assert!(r.is_empty());
        let (c, r) = diff(&mut sent, &[view(2, 2)]);
        assert!(c.is_empty());
        assert_eq!(r, vec![1]);
        let (c, r) = diff(&mut sent, &[view(2, 2)]);
        assert!(c.is_empty() && r.is_empty());
    }
}
