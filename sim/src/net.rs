//! The link layer every simulated backend shares.
//!
//! [`LinkedSocket`] wraps a backend's datagram socket (turmoil's, madsim's) so that every
//! datagram crosses the directed pair's seeded [`Link`](livecam_system::link::Link) model:
//! the sender side decides its fate (lost, damaged, duplicated) and its delivery time, and
//! sends it inside a small envelope carrying that time; the receiver side holds it until then.
//! The simulators' own networks only carry the envelope, with no loss and no latency of their
//! own, so a run's behaviour is the link model's, whatever the backend.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use livecam_system::link::apply_bit_flips;
use livecam_system::net::{sleep_until_opt, Clock, DatagramSocket};
use livecam_system::time::Instant;

use crate::state::{lock, Shared};

/// Envelope header: delivery time in microseconds.
const ENVELOPE: usize = 8;
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    data: Vec<u8>,
}

type PendingRecv = Pin<Box<dyn Future<Output = io::Result<(Vec<u8>, SocketAddr)>>>>;

/// A socket whose traffic crosses the shared link models. See the module docs.
///
/// The inner socket's receives are kept pending across calls, never cancelled: some backends
/// (madsim) lose the datagram a cancelled receive was about to return.
pub struct LinkedSocket<S, C> {
    inner: Rc<S>,
    clock: C,
    local: IpAddr,
    state: Shared,
    inbox: RefCell<BinaryHeap<Reverse<Held>>>,
    seq: Cell<u64>,
    pending: RefCell<Vec<Option<PendingRecv>>>,
    concurrency: usize,
    /// Full-size receive buffers, reused.
    buffers: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl<S: DatagramSocket + 'static, C: Clock> LinkedSocket<S, C> {
    /// Wraps `inner`, bound on the host with address `local`, with one receive outstanding.
    pub fn new(inner: S, clock: C, local: IpAddr, state: Shared) -> Self {
        Self::with_concurrency(inner, clock, local, state, 1)
    }

    /// Like [`LinkedSocket::new`], with `concurrency` receives outstanding on the inner socket
    /// (madsim takes at least 1 ms of simulated time per receive, so one at a time would cap a
    /// socket at 1000 datagrams per simulated second).
    pub fn with_concurrency(
        inner: S,
        clock: C,
        local: IpAddr,
        state: Shared,
        concurrency: usize,
    ) -> Self {
        LinkedSocket {
            inner: Rc::new(inner),
            clock,
            local,
            state,
            inbox: RefCell::new(BinaryHeap::new()),
            seq: Cell::new(0),
            pending: RefCell::new(Vec::new()),
            concurrency: concurrency.max(1),
            buffers: Rc::default(),
        }
    }

    /// Polls the outstanding receives on the inner socket (starting them as needed) and
    /// holds whatever arrived; ready when at least one datagram did.
    fn poll_arrivals(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let mut arrived = Vec::new();
        {
            let mut slots = self.pending.borrow_mut();
            slots.resize_with(self.concurrency, || None);
            for slot in slots.iter_mut() {
                let fut = slot.get_or_insert_with(|| {
                    let inner = self.inner.clone();
                    let buffers = self.buffers.clone();
                    Box::pin(async move {
                        // Receive into a pooled full-size buffer, keep only the bytes.
                        let mut buf = buffers
                            .borrow_mut()
                            .pop()
                            .unwrap_or_else(|| vec![0u8; MAX_DATAGRAM + ENVELOPE]);
                        let r = inner.recv_from(&mut buf).await;
                        let out = r.map(|(n, from)| (buf[..n].to_vec(), from));
                        buffers.borrow_mut().push(buf);
                        out
                    })
                });
                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                    *slot = None;
                    arrived.push(r);
                }
            }
        }
        if arrived.is_empty() {
            return Poll::Pending;
        }
        let now = self.clock.now();
        for r in arrived {
            let (data, from) = r?;
            self.hold(now, from, &data);
        }
        Poll::Ready(Ok(()))
    }

    fn pop_due(&self, now: Instant, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.peek().is_none_or(|h| h.0.at > now) {
            return None;
        }
        let Reverse(h) = inbox.pop()?;
        let n = h.data.len().min(buf.len());
        buf[..n].copy_from_slice(&h.data[..n]);
        Some((n, h.from))
    }

    fn hold(&self, now: Instant, from: SocketAddr, envelope: &[u8]) {
        // A datagram without an envelope came from outside the link layer: deliver it as is.
        let (at, data) = match envelope.split_first_chunk::<ENVELOPE>() {
            Some((at, data)) => (Instant::from_micros(u64::from_be_bytes(*at)), data),
            None => (now, envelope),
        };
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.inbox.borrow_mut().push(Reverse(Held {
            at,
            seq,
            from,
            data: data.to_vec(),
        }));
    }
}

impl<S: DatagramSocket + 'static, C: Clock> DatagramSocket for LinkedSocket<S, C> {
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let now = self.clock.now();
        let fate = lock(&self.state).transmit(self.local, target.ip(), now, buf.len());
        for copy in &fate.copies {
            let mut envelope = Vec::with_capacity(ENVELOPE + buf.len());
            envelope.extend_from_slice(&copy.at.as_micros().to_be_bytes());
            envelope.extend_from_slice(buf);
            apply_bit_flips(&mut envelope[ENVELOPE..], &copy.bit_flips);
            self.inner.send_to(&envelope, target).await?;
        }
        Ok(buf.len())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let now = self.clock.now();
            if let Some(got) = self.pop_due(now, buf) {
                return Ok(got);
            }
            let next = self.inbox.borrow().peek().map(|h| h.0.at);
            tokio::select! {
                biased;
                r = std::future::poll_fn(|cx| self.poll_arrivals(cx)) => r?,
                _ = sleep_until_opt(&self.clock, next) => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
