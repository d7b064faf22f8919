//! The one surface every sans-IO machine has: [`Endpoint`] (datagrams and timeouts in;
//! datagrams and a deadline out, `now` passed in every call) and [`Role`] (an endpoint that
//! knows when it is done). The protocol, the cluster, the roles and the command desk implement
//! it; the [`driver`](crate::driver) loop, the simulators and the emulator run anything that
//! does. It needs no runtime: this module and the machines build without tokio.

use std::net::SocketAddr;

use crate::time::Instant;

/// A sans-IO state machine that talks in datagrams.
pub trait Endpoint {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    /// Time has reached (or passed) the deadline from [`Endpoint::poll_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// Writes the next datagram to send into `buf` (clearing it first) and returns where it
    /// goes, or `None` when nothing is ready now.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr>;
    /// When [`Endpoint::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Instant>;

    /// A datagram arrived from `from` on local uplink `uplink` (the index of the socket it
    /// came in by, for a machine with several: a bonded camera's modems, `proto::bond`).
    /// Machines with one socket need not care: the default ignores the uplink.
    fn handle_datagram_on(&mut self, now: Instant, uplink: usize, from: SocketAddr, data: &[u8]) {
        let _ = uplink;
        self.handle_datagram(now, from, data);
    }

    /// As [`Endpoint::poll_transmit`], and the local uplink the datagram leaves by (0 for a
    /// machine with one socket: the default).
    fn poll_transmit_on(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<(usize, SocketAddr)> {
        self.poll_transmit(now, buf).map(|to| (0, to))
    }
}

/// An endpoint with application behaviour around it: a role that knows when it is done.
pub trait Role: Endpoint {
    /// True once the role has nothing more to do; [`run`] then returns.
    fn is_finished(&self) -> bool;
}
