//! The link layer every simulated backend shares.
//!
//! [`LinkedSocket`] wraps a backend's datagram socket (turmoil's, madsim's) so that every
//! datagram crosses the directed pair's seeded [`Link`](livecam_system::link::Link) model:
//! the sender side decides its fate (lost, damaged, duplicated) and its delivery time, and
//! sends it inside a small envelope carrying that time; the receiver side holds it until then.
//! The simulators' own networks only carry the envelope, with no loss and no latency of their
//! own, so a run's behaviour is the link model's, whatever the backend.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
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

/// Width of one [`Inbox`] bucket, in microseconds.
const BUCKET_US: u64 = 1024;

/// One held datagram: its order key and where its bytes are in the bucket's arena.
#[derive(Clone, Copy)]
struct HeldEntry {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    offset: usize,
    len: usize,
}

/// The datagrams due within one [`BUCKET_US`] window.
#[derive(Default)]
struct Bucket {
    entries: Vec<HeldEntry>,
    bytes: Vec<u8>,
    /// `entries[next..]` is in `(at, seq)` order; before that, already delivered.
    sorted: bool,
    next: usize,
}

/// Datagrams that arrived but are not due yet, delivered in `(due time, arrival)` order.
///
/// A calendar queue: datagrams are appended to the bucket of their due time (bytes to the
/// bucket's arena), and a bucket is sorted once, when it becomes the earliest. Pushes and
/// pops touch memory in sequence and cost O(1) amortised however many datagrams are in
/// flight; a binary heap of them costs O(log n) cache misses per datagram, which made the
/// receiver of a large fleet slower per datagram than a small one. Emptied buckets keep their
/// buffers for reuse.
#[derive(Default)]
struct Inbox {
    buckets: BTreeMap<u64, Bucket>,
    spare: Vec<Bucket>,
    seq: u64,
}

impl Inbox {
    fn push(&mut self, at: Instant, from: SocketAddr, data: &[u8]) {
        let seq = self.seq;
        self.seq += 1;
        let spare = &mut self.spare;
        let bucket = self
            .buckets
            .entry(at.as_micros() / BUCKET_US)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        let entry = HeldEntry {
            at,
            seq,
            from,
            offset: bucket.bytes.len(),
            len: data.len(),
        };
        bucket.bytes.extend_from_slice(data);
        if bucket.sorted {
            // Keys only grow in `seq`, so this is an append unless `at` is earlier.
            let pos = bucket.next
                + bucket.entries[bucket.next..].partition_point(|e| (e.at, e.seq) < (at, seq));
            bucket.entries.insert(pos, entry);
        } else {
            bucket.entries.push(entry);
        }
    }

    /// The earliest bucket, sorted.
    fn front(&mut self) -> Option<&mut Bucket> {
        let mut first = self.buckets.first_entry()?;
        let bucket = first.get_mut();
        if !bucket.sorted {
            bucket.entries.sort_unstable_by_key(|e| (e.at, e.seq));
            bucket.sorted = true;
        }
        Some(first.into_mut())
    }

    fn next_due(&mut self) -> Option<Instant> {
        self.front().map(|b| b.entries[b.next].at)
    }

    /// Copies the first datagram due at or before `now` into `buf`.
    fn pop_due(&mut self, now: Instant, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let bucket = self.front()?;
        let e = bucket.entries[bucket.next];
        if e.at > now {
            return None;
        }
        let n = e.len.min(buf.len());
        buf[..n].copy_from_slice(&bucket.bytes[e.offset..e.offset + n]);
        bucket.next += 1;
        if bucket.next == bucket.entries.len() {
            if let Some((_, mut done)) = self.buckets.pop_first() {
                done.entries.clear();
                done.bytes.clear();
                done.sorted = false;
                done.next = 0;
                self.spare.push(done);
            }
        }
        Some((n, e.from))
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
        let (at, data) = match envelope.split_first_chunk::<ENVELOPE>() {
            Some((at, data)) => (Instant::from_micros(u64::from_be_bytes(*at)), data),
            None => (now, envelope),
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
            envelope.extend_from_slice(&copy.at.as_micros().to_be_bytes());
            envelope.extend_from_slice(buf);
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
