//! Prometheus metrics of a running role or backend, served as text exposition at `/metrics`.
//!
//! The protocol and cluster machines keep their own counters (sans-IO, no globals); the
//! [`Metered`] wrapper around a role copies them into [`RoleMetrics`] after every step of
//! the driver loop and observes the role's events (frame latencies) into a histogram, so
//! the machines stay free of any metrics library. A tier-2's database writer counts what it
//! stored; those counts are copied in at every scrape ([`RoleMetrics::storage_writes`]).
//! The backend's [`BackendMetrics`] count its web requests, live sockets, command desk
//! (copied from the desk's own counters), retention passes and geofence events.
//! [`router`] serves either with `prometheus-client`'s encoder, on an address of its own
//! (`metrics = "ADDR"` in every role's and the backend's config), never on the web server.
//!
//! Nothing secret goes in: no client, frame or user ids, no addresses, tokens or names;
//! web requests are labelled by their route template (`/api/clients/{id}`), and a path that
//! matches no route by `unmatched`, so no request can add a label value of its choosing.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::machine::{Endpoint, Role};
use crate::role::{Mobile, RoleEvent, Tier1Server, Tier2Server};
use crate::time::Instant;

/// Every metric a role process exposes. Metrics a role has no use for stay at zero.
pub struct RoleMetrics {
    registry: Registry,
    pub datagrams_in: Counter,
    pub datagrams_malformed: Counter,
    pub datagrams_damaged: Counter,
    pub segments_in: Counter,
    pub segments_out: Counter,
    pub segments_resent: Counter,
    pub path_challenges: Counter,
    pub paths_validated: Counter,
    pub path_responses_refused: Counter,
    pub nacks_sent: Counter,
    pub nacks_received: Counter,
    pub nacks_ignored: Counter,
    pub nack_resends_limited: Counter,
    pub frames_sent: Counter,
    pub frames_delivered: Counter,
    pub frames_late: Counter,
    pub sessions: Gauge,
    pub frames_in_flight: Gauge,
    pub reassembly_bytes: Gauge,
    pub tier2_capacity: Gauge,
    pub tier1_managed: Gauge,
    /// Push to acknowledgement (mobile clients), milliseconds.
    pub frame_latency_ms: Histogram,
    pub commands: Counter,
    /// What a tier-2's database writer stored (see [`RoleMetrics::storage_writes`]).
    pub storage_frames_stored: Counter,
    pub storage_fixes_stored: Counter,
    pub storage_links_stored: Counter,
    pub storage_write_errors: Counter,
    pub storage_records_dropped: Counter,
    /// A bonded mobile client's uplinks (`proto::bond`), by uplink index.
    pub uplink_bytes: Family<UplinkLabels, Counter>,
    pub uplink_silences: Family<UplinkLabels, Counter>,
    pub uplink_target: Family<UplinkLabels, Gauge>,
    pub uplink_rtt_ms: Family<UplinkLabels, Gauge>,
}

/// The uplink a bonded client's metric is about: its index in the client's `uplinks`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UplinkLabels {
    pub uplink: u8,
}

/// What a tier-2's database writer did so far (totals), for [`RoleMetrics::storage_writes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageWrites {
    pub frames_stored: u64,
    pub fixes_stored: u64,
    pub links_stored: u64,
    pub write_errors: u64,
    pub records_dropped: u64,
}

impl Default for RoleMetrics {
    fn default() -> Self {
        let mut m = RoleMetrics {
            registry: Registry::with_prefix("livecam"),
            datagrams_in: Counter::default(),
            datagrams_malformed: Counter::default(),
            datagrams_damaged: Counter::default(),
            segments_in: Counter::default(),
            segments_out: Counter::default(),
            segments_resent: Counter::default(),
            path_challenges: Counter::default(),
            paths_validated: Counter::default(),
            path_responses_refused: Counter::default(),
            nacks_sent: Counter::default(),
            nacks_received: Counter::default(),
            nacks_ignored: Counter::default(),
            nack_resends_limited: Counter::default(),
            frames_sent: Counter::default(),
            frames_delivered: Counter::default(),
            frames_late: Counter::default(),
            sessions: Gauge::default(),
            frames_in_flight: Gauge::default(),
            reassembly_bytes: Gauge::default(),
            tier2_capacity: Gauge::default(),
            tier1_managed: Gauge::default(),
            frame_latency_ms: Histogram::new(exponential_buckets(0.25, 2.0, 14)),
            commands: Counter::default(),
            storage_frames_stored: Counter::default(),
            storage_fixes_stored: Counter::default(),
            storage_links_stored: Counter::default(),
            storage_write_errors: Counter::default(),
            storage_records_dropped: Counter::default(),
            uplink_bytes: Family::default(),
            uplink_silences: Family::default(),
            uplink_target: Family::default(),
            uplink_rtt_ms: Family::default(),
        };
        let r = &mut m.registry;
        let counters = [
            ("datagrams_in", "Datagrams received", &m.datagrams_in),
            (
                "datagrams_malformed",
                "Datagrams dropped as malformed (bad magic, version, type or fields)",
                &m.datagrams_malformed,
            ),
            (
                "datagrams_damaged",
                "Datagrams dropped for a checksum mismatch",
                &m.datagrams_damaged,
            ),
            ("segments_in", "Frame segments received", &m.segments_in),
            (
                "segments_out",
                "Frame segments sent, resends included",
                &m.segments_out,
            ),
            (
                "segments_resent",
                "Segments sent again after a NACK or probe",
                &m.segments_resent,
            ),
            ("nacks_sent", "NACKs sent", &m.nacks_sent),
            (
                "path_challenges",
                "Path challenges a tier-2 sent to session addresses it had not validated",
                &m.path_challenges,
            ),
            (
                "paths_validated",
                "Session addresses that answered their challenge (a client that moved or rebound)",
                &m.paths_validated,
            ),
            (
                "path_responses_refused",
                "Path responses that answered no challenge sent to the address they came from",
                &m.path_responses_refused,
            ),
            ("nacks_received", "NACKs received", &m.nacks_received),
            (
                "nacks_ignored",
                "NACKs for frames not in flight plus NACKed indices ignored (out of range, unsent, repeated)",
                &m.nacks_ignored,
            ),
            (
                "nack_resends_limited",
                "NACKed segments not resent because the per-segment resend rate limit applied",
                &m.nack_resends_limited,
            ),
            (
                "frames_sent",
                "Frames captured and pushed into the sender",
                &m.frames_sent,
            ),
            (
                "frames_delivered",
                "Frames delivered whole (receivers) or acknowledged (senders)",
                &m.frames_delivered,
            ),
            (
                "frames_late",
                "Frames given up at their deadline",
                &m.frames_late,
            ),
            ("commands", "Browser commands carried out", &m.commands),
            (
                "storage_frames_stored",
                "Frames the tier-2's database writer committed",
                &m.storage_frames_stored,
            ),
            (
                "storage_fixes_stored",
                "GPS fixes the tier-2's database writer committed (one per stored frame with a fix)",
                &m.storage_fixes_stored,
            ),
            (
                "storage_links_stored",
                "Link figure rows the tier-2's database writer committed",
                &m.storage_links_stored,
            ),
            (
                "storage_write_errors",
                "Database writes of the tier-2 that failed",
                &m.storage_write_errors,
            ),
            (
                "storage_records_dropped",
                "Records the tier-2 dropped because its database writer was behind",
                &m.storage_records_dropped,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        let gauges = [
            (
                "sessions",
                "Open sessions (tier-2: its load as reported to tier-1)",
                &m.sessions,
            ),
            (
                "frames_in_flight",
                "Frames sent and not yet acknowledged",
                &m.frames_in_flight,
            ),
            (
                "reassembly_bytes",
                "Bytes held in frame reassembly",
                &m.reassembly_bytes,
            ),
            (
                "tier2_capacity",
                "Sessions this tier-2 takes at most",
                &m.tier2_capacity,
            ),
            (
                "tier1_managed_tier2s",
                "Tier-2 servers this tier-1 manages",
                &m.tier1_managed,
            ),
        ];
        for (name, help, g) in gauges {
            r.register(name, help, g.clone());
        }
        r.register(
            "frame_latency_ms",
            "Frame latency from capture to acknowledgement, milliseconds",
            m.frame_latency_ms.clone(),
        );
        r.register(
            "uplink_bytes",
            "Wire bytes a bonded client placed on each of its uplinks (pings included)",
            m.uplink_bytes.clone(),
        );
        r.register(
            "uplink_silences",
            "Times an uplink of a bonded client fell silent (its pings unanswered)",
            m.uplink_silences.clone(),
        );
        r.register(
            "uplink_target_bytes_per_second",
            "The share of a bonded client's rate each uplink is measured to carry",
            m.uplink_target.clone(),
        );
        r.register(
            "uplink_rtt_ms",
            "Smoothed round trip of each uplink of a bonded client, queue included, ms",
            m.uplink_rtt_ms.clone(),
        );
        m
    }
}

impl RoleMetrics {
    /// The text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        encoded(&self.registry)
    }

    /// Copies a tier-2's database writer's totals in.
    pub fn storage_writes(&self, w: StorageWrites) {
        mirror(&self.storage_frames_stored, w.frames_stored);
        mirror(&self.storage_fixes_stored, w.fixes_stored);
        mirror(&self.storage_links_stored, w.links_stored);
        mirror(&self.storage_write_errors, w.write_errors);
        mirror(&self.storage_records_dropped, w.records_dropped);
    }
}

fn encoded(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// Raises `c` to `total` (counters mirror a machine's own monotonic counts).
fn mirror(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn set(g: &Gauge, v: impl TryInto<i64>) {
    g.set(v.try_into().unwrap_or(i64::MAX));
}

/// A role whose counters and events can be metered.
pub trait Observed: Role {
    fn enable_recording(&mut self);
    fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)>;
    /// Copies the role's own counters and gauges into `m`.
    fn mirror(&self, m: &RoleMetrics);
}

impl Observed for Mobile {
    fn enable_recording(&mut self) {
        Mobile::enable_recording(self);
    }
    fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        Mobile::take_recorded(self)
    }
    fn mirror(&self, m: &RoleMetrics) {
        let s = self.camera().sender().stats();
        mirror(&m.datagrams_malformed, s.datagrams_malformed);
        mirror(&m.datagrams_damaged, s.datagrams_damaged);
        mirror(&m.segments_out, s.segments_sent);
        mirror(&m.segments_resent, s.segments_resent);
        mirror(&m.nacks_received, s.nacks_received);
        mirror(
            &m.nacks_ignored,
            s.nacks_unknown_frame + s.nack_indices_ignored,
        );
        mirror(&m.nack_resends_limited, s.nack_resends_limited);
        mirror(&m.frames_sent, s.frames_pushed);
        mirror(&m.frames_delivered, s.frames_acked);
        mirror(&m.frames_late, s.frames_dropped);
        set(
            &m.sessions,
            u8::from(self.connector().connected().is_some()),
        );
        set(
            &m.frames_in_flight,
            self.camera().sender().frames_in_flight(),
        );
        for (i, u) in self.uplink_stats().iter().enumerate() {
            let label = UplinkLabels {
                uplink: u8::try_from(i).unwrap_or(u8::MAX),
            };
            mirror(&m.uplink_bytes.get_or_create(&label), u.bytes);
            mirror(&m.uplink_silences.get_or_create(&label), u.silences);
            set(&m.uplink_target.get_or_create(&label), u.target as i64);
            let rtt = u.srtt_ms.map_or(0, |ms| ms.round() as i64);
            set(&m.uplink_rtt_ms.get_or_create(&label), rtt);
        }
    }
}

impl Observed for Tier2Server {
    fn enable_recording(&mut self) {
        Tier2Server::enable_recording(self);
    }
    fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        Tier2Server::take_recorded(self)
    }
    fn mirror(&self, m: &RoleMetrics) {
        let r = self.sink().receiver();
        let s = r.stats();
        mirror(&m.datagrams_in, s.datagrams);
        mirror(&m.datagrams_malformed, s.datagrams_malformed);
        mirror(&m.datagrams_damaged, s.datagrams_damaged);
        mirror(&m.segments_in, s.segments_received);
        mirror(&m.nacks_sent, s.nacks_sent);
        mirror(&m.frames_delivered, s.frames_delivered);
        mirror(&m.frames_late, s.frames_dropped);
        let paths = self.paths().stats();
        mirror(&m.path_challenges, paths.challenges);
        mirror(&m.paths_validated, paths.validated);
        mirror(&m.path_responses_refused, paths.refused_responses);
        set(&m.sessions, self.tier2().load());
        set(&m.tier2_capacity, self.tier2().capacity());
        set(&m.reassembly_bytes, r.bytes_in_use());
    }
}

impl Observed for Tier1Server {
    fn enable_recording(&mut self) {
        Tier1Server::enable_recording(self);
    }
    fn take_recorded(&mut self) -> Vec<(Instant, RoleEvent)> {
        Tier1Server::take_recorded(self)
    }
    fn mirror(&self, m: &RoleMetrics) {
        let t = self.tier1();
        set(&m.sessions, t.sessions());
        set(&m.tier1_managed, t.managed().count());
    }
}

/// A role with its metrics kept up to date. See the [module docs](self).
pub struct Metered<R> {
    inner: R,
    metrics: Arc<RoleMetrics>,
}

impl<R: Observed> Metered<R> {
    pub fn new(mut inner: R, metrics: Arc<RoleMetrics>) -> Self {
        inner.enable_recording();
        Metered { inner, metrics }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn observe(&mut self) {
        for (_, ev) in self.inner.take_recorded() {
            match ev {
                RoleEvent::FrameAcked { latency_us, .. } => {
                    self.metrics
                        .frame_latency_ms
                        .observe(latency_us as f64 / 1e3);
                }
                RoleEvent::CommandDone { .. } => {
                    self.metrics.commands.inc();
                }
                _ => {}
            }
        }
        self.inner.mirror(&self.metrics);
    }
}

impl<R: Observed> Endpoint for Metered<R> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.inner.handle_datagram(now, from, data);
        self.observe();
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.observe();
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.inner.poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn handle_datagram_on(&mut self, now: Instant, uplink: usize, from: SocketAddr, data: &[u8]) {
        self.inner.handle_datagram_on(now, uplink, from, data);
        self.observe();
    }
    fn poll_transmit_on(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<(usize, SocketAddr)> {
        self.inner.poll_transmit_on(now, buf)
    }
}

impl<R: Observed> Role for Metered<R> {
    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// `GET /metrics`, answered with what `render` makes at each scrape (the `encode` of a
/// [`RoleMetrics`] or [`BackendMetrics`], after copying in what it mirrors).
pub fn router(render: impl Fn() -> String + Clone + Send + Sync + 'static) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = render();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    )
}

/// Serves [`router`] on `listener` until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(render))
        .with_graceful_shutdown(stop)
        .await
}

/// The labels of a web request: its route template (`unmatched` for a path no route
/// matches), its method (`other` beyond the usual ones) and its status class (`2xx`...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GeofenceLabels {
    event: &'static str,
}

/// A client crossing a geofence's edge (the fence watcher's event kind).
pub use crate::backend::geofence::EventKind as GeofenceEdge;

/// The route label of a request whose path matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Every metric the backend process exposes (see the [module docs](self)).
pub struct BackendMetrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    /// Browsers' live sockets (`/api/live`) open now.
    pub live_sockets: Gauge,
    pub commands_submitted: Counter,
    pub commands_acked: Counter,
    pub commands_failed: Counter,
    pub commands_timed_out: Counter,
    pub commands_pending: Gauge,
    pub retention_passes: Counter,
    pub retention_failures: Counter,
    retention_deleted: Family<TableLabels, Counter>,
    geofence_events: Family<GeofenceLabels, Counter>,
}

/// Buckets of the web request latency: 0.5 ms to ~8 s.
fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Default for BackendMetrics {
    fn default() -> Self {
        let m = BackendMetrics {
            registry: Registry::with_prefix("livecam"),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(http_histogram),
            live_sockets: Gauge::default(),
            commands_submitted: Counter::default(),
            commands_acked: Counter::default(),
            commands_failed: Counter::default(),
            commands_timed_out: Counter::default(),
            commands_pending: Gauge::default(),
            retention_passes: Counter::default(),
            retention_failures: Counter::default(),
            retention_deleted: Family::default(),
            geofence_events: Family::default(),
        };
        // Label sets known in advance show from the start (at zero), so a dashboard's rate()
        // has a series before the first event.
        for table in ["frames", "fixes", "links"] {
            let _ = m.retention_deleted.get_or_create(&TableLabels { table });
        }
        for edge in [GeofenceEdge::Enter, GeofenceEdge::Leave] {
            let _ = m.geofence_events.get_or_create(&GeofenceLabels {
                event: edge.as_str(),
            });
        }
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "http_requests",
            "Web requests answered, by route template, method and status class",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer a web request, by route template (a live socket: until upgraded)",
            m.http_seconds.clone(),
        );
        r.register(
            "live_sockets",
            "Browsers' live sockets (/api/live) open",
            m.live_sockets.clone(),
        );
        let counters = [
            (
                "desk_commands_submitted",
                "Commands handed to the command desk by the web API",
                &m.commands_submitted,
            ),
            (
                "desk_commands_acked",
                "Commands the client carried out",
                &m.commands_acked,
            ),
            (
                "desk_commands_failed",
                "Commands refused by the client or not sendable (no session, too many waiting)",
                &m.commands_failed,
            ),
            (
                "desk_commands_timed_out",
                "Commands with no answer before their deadline",
                &m.commands_timed_out,
            ),
            (
                "retention_passes",
                "Retention passes that completed",
                &m.retention_passes,
            ),
            (
                "retention_failures",
                "Retention passes that failed",
                &m.retention_failures,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register(
            "desk_commands_pending",
            "Commands sent and waiting for the client's answer",
            m.commands_pending.clone(),
        );
        r.register(
            "retention_deleted",
            "Rows retention deleted, by table (frames, fixes, links)",
            m.retention_deleted.clone(),
        );
        r.register(
            "geofence_events",
            "Clients entering or leaving a geofence",
            m.geofence_events.clone(),
        );
        m
    }
}

impl BackendMetrics {
    /// The text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        encoded(&self.registry)
    }

    /// Counts a web request answered in `elapsed`. `route` is the matched route template,
    /// `None` for a path no route matches.
    pub fn http_request(
        &self,
        route: Option<&str>,
        method: &axum::http::Method,
        status: axum::http::StatusCode,
        elapsed: std::time::Duration,
    ) {
        use axum::http::Method;
        let route = route.unwrap_or(UNMATCHED_ROUTE).to_string();
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::PATCH => "PATCH",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        let status = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_seconds
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// Copies the command desk's totals in.
    pub fn desk(&self, s: crate::backend::desk::DeskStats, pending: usize) {
        mirror(&self.commands_submitted, s.submitted);
        mirror(&self.commands_acked, s.acked);
        mirror(&self.commands_failed, s.failed);
        mirror(&self.commands_timed_out, s.timed_out);
        set(&self.commands_pending, pending);
    }

    /// Counts a retention pass and what it deleted.
    pub fn retention(&self, p: &crate::backend::Pruned) {
        self.retention_passes.inc();
        for (table, n) in [
            ("frames", p.frames),
            ("fixes", p.fixes),
            ("links", p.links),
            ("geofence_events", p.geofence_events),
        ] {
            self.retention_deleted
                .get_or_create(&TableLabels { table })
                .inc_by(n);
        }
    }

    /// Counts a client entering or leaving a geofence (called by the geofence engine).
    pub fn geofence_event(&self, edge: GeofenceEdge) {
        self.geofence_events
            .get_or_create(&GeofenceLabels {
                event: edge.as_str(),
            })
            .inc();
    }

    /// The number of geofence events of `edge` counted so far.
    pub fn geofence_events(&self, edge: GeofenceEdge) -> u64 {
        self.geofence_events
            .get_or_create(&GeofenceLabels {
                event: edge.as_str(),
            })
            .get()
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) counting every request of a router
/// into `metrics`, labelled by the route template it matched. Add it with `Router::layer`
/// so it sees the matched route.
pub async fn track_http(
    axum::extract::State(metrics): axum::extract::State<Arc<BackendMetrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.http_request(
        route.as_deref(),
        &method,
        response.status(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn web_requests_are_labelled_by_route_template_method_and_status_class() {
        use axum::http::{Method, StatusCode};
        let m = BackendMetrics::default();
        let ms = Duration::from_millis(3);
        m.http_request(Some("/api/clients/{id}"), &Method::GET, StatusCode::OK, ms);
        m.http_request(
            Some("/api/clients/{id}"),
            &Method::GET,
            StatusCode::NOT_FOUND,
            ms,
        );
        m.http_request(
            None,
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::IM_A_TEAPOT,
            ms,
        );
        let text = m.encode();
        let ok = "livecam_http_requests_total{route=\"/api/clients/{id}\",method=\"GET\",status=\"2xx\"} 1";
        assert!(line(&text, ok).is_some(), "{text}");
        assert!(text.contains("status=\"4xx\"} 1"), "{text}");
        // A path no route matches, with a made-up method: no label value of the caller's.
        assert!(
            line(
                &text,
                "livecam_http_requests_total{route=\"unmatched\",method=\"other\",status=\"4xx\"} 1"
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                "livecam_http_request_duration_seconds_count{route=\"/api/clients/{id}\"} 2"
            )
            .is_some(),
            "{text}"
        );
        assert!(!text.contains("BREW"));
    }

    #[test]
    fn the_desk_retention_and_storage_totals_are_copied_in() {
        let m = BackendMetrics::default();
        let stats = crate::backend::desk::DeskStats {
            submitted: 7,
            acked: 3,
            failed: 2,
            timed_out: 1,
        };
        m.desk(stats, 1);
        // Copying the same totals again counts nothing twice.
        m.desk(stats, 1);
        m.retention(&crate::backend::Pruned {
            frames: 5,
            fixes: 4,
            links: 0,
            geofence_events: 2,
        });
        let text = m.encode();
        for want in [
            "livecam_desk_commands_submitted_total 7",
            "livecam_desk_commands_acked_total 3",
            "livecam_desk_commands_failed_total 2",
            "livecam_desk_commands_timed_out_total 1",
            "livecam_desk_commands_pending 1",
            "livecam_retention_passes_total 1",
            "livecam_retention_deleted_total{table=\"frames\"} 5",
            "livecam_retention_deleted_total{table=\"fixes\"} 4",
            "livecam_retention_deleted_total{table=\"links\"} 0",
            "livecam_retention_deleted_total{table=\"geofence_events\"} 2",
            "livecam_geofence_events_total{event=\"enter\"} 0",
        ] {
            assert!(line(&text, want).is_some(), "no {want:?} in\n{text}");
        }
        let r = RoleMetrics::default();
        let w = StorageWrites {
            frames_stored: 10,
            fixes_stored: 9,
            links_stored: 2,
            write_errors: 1,
            records_dropped: 0,
        };
        r.storage_writes(w);
        r.storage_writes(w);
        let text = r.encode();
        for want in [
            "livecam_storage_frames_stored_total 10",
            "livecam_storage_fixes_stored_total 9",
            "livecam_storage_links_stored_total 2",
            "livecam_storage_write_errors_total 1",
            "livecam_storage_records_dropped_total 0",
        ] {
            assert!(line(&text, want).is_some(), "no {want:?} in\n{text}");
        }
    }

    #[test]
    fn the_live_socket_gauge_moves_both_ways() {
        let m = BackendMetrics::default();
        m.live_sockets.inc();
        m.live_sockets.inc();
        m.live_sockets.dec();
        assert!(line(&m.encode(), "livecam_live_sockets 1").is_some());
    }
}
