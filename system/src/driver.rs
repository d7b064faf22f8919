//! The one driver loop that runs a sans-IO endpoint over any net/clock implementation.
//!
//! An [`Endpoint`](crate::machine::Endpoint) is anything shaped like the protocol machines: datagrams and timeouts in,
//! datagrams and a deadline out. [`run`] connects one to a [`DatagramSocket`] and a [`Clock`]
//! until the endpoint says it is finished. The tokio runtime, turmoil, madsim and the emulator
//! all use this same loop; only the socket and clock differ.

use std::io;

use crate::machine::Role;
use crate::net::{sleep_until_opt, Clock, DatagramSocket};

/// Largest datagram the driver receives.
pub const MAX_DATAGRAM: usize = 65_535;

/// Runs `role` over `socket` and `clock` until it is finished.
///
/// Send errors (an ICMP port unreachable reported on a later send, a full buffer) are what a
/// lossy network does anyway: they are logged and the datagram counts as lost. Receive errors
/// of the same kind are skipped. Only a socket that cannot be used at all ends the loop.
pub async fn run<R, S, C>(role: &mut R, socket: &S, clock: &C) -> io::Result<()>
where
    R: Role + ?Sized,
    S: DatagramSocket + ?Sized,
    C: Clock + ?Sized,
{
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    loop {
        let now = clock.now();
        if role.poll_timeout().is_some_and(|t| t <= now) {
            role.handle_timeout(now);
        }
        while let Some(dst) = role.poll_transmit(now, &mut out) {
            if let Err(e) = socket.send_to(&out, dst).await {
                if is_fatal(&e) {
                    return Err(e);
                }
                tracing::debug!(error = %e, %dst, "send failed; datagram counts as lost");
            }
        }
        if role.is_finished() {
            return Ok(());
        }
        let deadline = role.poll_timeout();
        if deadline.is_some_and(|t| t <= clock.now()) {
            continue;
        }
        tokio::select! {
            biased;
            r = socket.recv_from(&mut inbuf) => match r {
                Ok((n, from)) => role.handle_datagram(clock.now(), from, &inbuf[..n]),
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => tracing::debug!(error = %e, "receive failed; skipped"),
            },
            _ = sleep_until_opt(clock, deadline) => {}
        }
    }
}

fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
    )
}
