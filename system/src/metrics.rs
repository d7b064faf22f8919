//! Prometheus metrics of a running role, served as text exposition at `/metrics`.
//!
//! The protocol and cluster machines keep their own counters (sans-IO, no globals); the
//! [`Metered`] wrapper around a role copies them into [`RoleMetrics`] after every step of
//! the driver loop and observes the role's events (frame latencies) into a histogram, so
//! the machines stay free of any metrics library. [`router`] serves the registry with
//! `prometheus-client`'s encoder.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
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
        m
    }
}

impl RoleMetrics {
    /// The text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
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
}

impl<R: Observed> Role for Metered<R> {
    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// `GET /metrics` over `metrics`.
pub fn router(metrics: Arc<RoleMetrics>) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    )
}
