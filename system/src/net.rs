//! The net/clock layer: the only things a role driver needs from a runtime.
//!
//! [`DatagramSocket`] sends and receives UDP-like datagrams; [`Clock`] tells the time as an
//! [`Instant`] and sleeps until one. Implementations: tokio (here, for real runs; it also serves
//! turmoil, whose simulated time is tokio's clock), madsim (in the `sim` crate), and tokio again
//! inside the emulator's network namespaces. [`ImpairedSocket`] wraps any socket with a seeded
//! [`Link`](crate::link::Link) model, the way smoltcp's fault injector wraps a device: faults are
//! a layer around the net, never a mode of the protocol.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::link::{apply_bit_flips, Link, LinkConfig};
use crate::time::Instant;

/// A datagram socket.
pub trait DatagramSocket {
    /// Sends one datagram to `target`.
    fn send_to(&self, buf: &[u8], target: SocketAddr) -> impl Future<Output = io::Result<usize>>;
    /// Receives one datagram into `buf`; cancel-safe (used inside `select!`).
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A clock that tells time as [`Instant`] and sleeps.
pub trait Clock {
    /// Now, on this clock.
    fn now(&self) -> Instant;
    /// Completes once the clock reads `deadline` or later.
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()>;
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until_opt<C: Clock + ?Sized>(clock: &C, deadline: Option<Instant>) {
    match deadline {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl DatagramSocket for tokio::net::UdpSocket {
    fn send_to(&self, buf: &[u8], target: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        tokio::net::UdpSocket::send_to(self, buf, target)
    }
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        tokio::net::UdpSocket::recv_from(self, buf)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}

/// tokio's clock. Under turmoil this is simulated time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// The tokio instant at which this clock reads `base`.
    origin: tokio::time::Instant,
    base: Duration,
}

impl TokioClock {
    /// A clock whose origin is now. Must be called inside a tokio runtime with time enabled.
    pub fn new() -> Self {
        Self::reading(Duration::ZERO)
    }

    /// A clock that reads `base` now (a host restarted into a running simulation keeps the
    /// simulation's time).
    pub fn reading(base: Duration) -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
            base,
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::ZERO + self.base + self.origin.elapsed()
    }
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> {
        let after_origin = deadline.since_origin().saturating_sub(self.base);
        tokio::time::sleep_until(self.origin + after_origin)
    }
}

/// A socket whose outgoing datagrams cross a seeded link model: lost, damaged or duplicated as
/// the model decides.
///
/// This wrapper applies the model's fate but sends at once: it is for links without delay,
/// jitter, rate limit or reordering (such a config is refused at construction). Links that
/// schedule deliveries in time are applied by the simulators and the emulator, which own a
/// timer to deliver later.
pub struct ImpairedSocket<S, C> {
    inner: S,
    clock: C,
    link: RefCell<Link>,
}

impl<S: DatagramSocket, C: Clock> ImpairedSocket<S, C> {
    /// Wraps `inner`; fails when `config` is invalid or needs delayed delivery.
    pub fn new(inner: S, clock: C, config: LinkConfig, seed: u64) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let timed = config.delay_ms > 0.0
            || config.jitter_ms > 0.0
            || config.rate_bytes_per_s.is_some()
            || config.capacity.is_some()
            || config.reorder > 0.0;
        if timed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ImpairedSocket applies loss, corruption and duplication only; \
                 delay, jitter, rate, capacity and reorder need a simulator or the emulator",
            ));
        }
        Ok(ImpairedSocket {
            inner,
            clock,
            link: RefCell::new(Link::new(config, seed)),
        })
    }

    /// The link model's counters.
    pub fn link_stats(&self) -> crate::link::LinkStats {
        self.link.borrow().stats().clone()
    }

    /// The wrapped socket.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: DatagramSocket, C: Clock> DatagramSocket for ImpairedSocket<S, C> {
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let fate = self.link.borrow_mut().transmit(self.clock.now(), buf.len());
        for copy in &fate.copies {
            if copy.bit_flips.is_empty() {
                self.inner.send_to(buf, target).await?;
            } else {
                let mut damaged = buf.to_vec();
                apply_bit_flips(&mut damaged, &copy.bit_flips);
                self.inner.send_to(&damaged, target).await?;
            }
        }
        Ok(buf.len())
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        self.inner.recv_from(buf)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
