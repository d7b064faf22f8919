//! The link layer over a simulator's own network (turmoil's, madsim's).
//!
//! [`LinkedSocket`] wraps a backend's datagram socket so that every datagram crosses the
//! run's shared [`Network`](livecam_system::link::Network) of seeded link models: the sender
//! side takes its fate (lost, damaged, duplicated) and its delivery time from the network and
//! sends it inside a small envelope carrying that time; the receiver side holds it until then.
//! The simulators' own networks only carry the envelope, with no loss and no latency of their
//! own, so a run's behaviour is the link model's, whatever the backend. (The des simulator
//! needs no envelope: its executor takes due datagrams from the shared network itself.)

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use livecam_system::link::{apply_bit_flips, Calendar};
use livecam_system::net::{sleep_until_opt, Clock, DatagramSocket};
use livecam_system::proto::wire::codec::{Reader, Writer};
use livecam_system::time::Instant;

use crate::state::{lock, Shared};

/// Envelope header: delivery time in microseconds.
const ENVELOPE: usize = 8;
const MAX_DATAGRAM: usize = 65_535;

/// Datagrams that arrived but are not due yet, delivered in `(due time, arrival)` order.
#[derive(Default)]
struct Inbox(Calendar<SocketAddr>);

impl Inbox {
    fn push(&mut self, at: Instant, from: SocketAddr, data: &[u8]) {
        self.0.push(at, from, data);
    }

    fn next_due(&mut self) -> Option<Instant> {
        self.0.next_due()
    }

    /// Copies the first datagram due at or before `now` into `buf`.
    fn pop_due(&mut self, now: Instant, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        self.0.pop_due(now, |from, bytes| {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            (n, from)
        })
    }
}

/// A finished receive on the inner socket: the pooled buffer, the length and the sender.
type Received = (Vec<u8>, usize, SocketAddr);
type PendingRecv = Pin<Box<dyn Future<Output = io::Result<Received>>>>;

/// A socket whose traffic crosses the shared link models. See the module docs.
///
/// The inner socket's receives are kept pending across calls, never cancelled: some backends
/// (madsim) lose the datagram a cancelled receive was about to return.
pub struct LinkedSocket<S, C> {
    inner: Rc<S>,
    clock: C,
    local: IpAddr,
    state: Shared,
    inbox: RefCell<Inbox>,
    pending: RefCell<Vec<Option<PendingRecv>>>,
    concurrency: usize,
    /// Full-size receive buffers, reused.
    buffers: Rc<RefCell<Vec<Vec<u8>>>>,
    /// The envelope being sent, reused.
    envelope: Cell<Vec<u8>>,
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
            inbox: RefCell::default(),
            pending: RefCell::new(Vec::new()),
            concurrency: concurrency.max(1),
            buffers: Rc::default(),
            envelope: Cell::default(),
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
                        // Receive into a pooled full-size buffer; `hold` gives it back.
                        let mut buf = buffers
                            .borrow_mut()
                            .pop()
                            .unwrap_or_else(|| vec![0u8; MAX_DATAGRAM + ENVELOPE]);
                        match inner.recv_from(&mut buf).await {
                            Ok((n, from)) => Ok((buf, n, from)),
                            Err(e) => {
                                buffers.borrow_mut().push(buf);
                                Err(e)
                            }
                        }
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
            let (buf, n, from) = r?;
            self.hold(now, from, &buf[..n]);
            self.buffers.borrow_mut().push(buf);
        }
        Poll::Ready(Ok(()))
    }

    fn hold(&self, now: Instant, from: SocketAddr, envelope: &[u8]) {
        // A datagram without an envelope came from outside the link layer: deliver it as is.
        let mut r = Reader::new(envelope);
        let (at, data) = match r.u64() {
            Ok(at) => (Instant::from_micros(at), r.rest()),
            Err(_) => (now, envelope),
        };
        self.inbox.borrow_mut().push(at, from, data);
    }
}

impl<S: DatagramSocket + 'static, C: Clock> DatagramSocket for LinkedSocket<S, C> {
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let now = self.clock.now();
        let fate = lock(&self.state).transmit(self.local, target.ip(), now, buf.len());
        // The scratch envelope is taken out for the await and put back after.
        let mut envelope = self.envelope.take();
        let mut result = Ok(buf.len());
        for copy in &fate.copies {
            envelope.clear();
            envelope.put_u64(copy.at.as_micros());
            envelope.put_bytes(buf);
            apply_bit_flips(&mut envelope[ENVELOPE..], &copy.bit_flips);
            if let Err(e) = self.inner.send_to(&envelope, target).await {
                result = Err(e);
                break;
            }
        }
        self.envelope.set(envelope);
        result
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let now = self.clock.now();
            if let Some(got) = self.inbox.borrow_mut().pop_due(now, buf) {
                return Ok(got);
            }
            let next = self.inbox.borrow_mut().next_due();
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
