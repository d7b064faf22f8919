//! The one driver loop that runs a sans-IO endpoint over any net/clock implementation.
//!
//! An [`Endpoint`](crate::machine::Endpoint) is anything shaped like the protocol machines: datagrams and timeouts in,
//! datagrams and a deadline out. [`run`] connects one to a [`DatagramSocket`] and a [`Clock`]
//! until the endpoint says it is finished; [`run_with`] does the same with a caller's [`Glue`]
//! (outside inputs, what to do with events, when to stop). The tokio runtime, turmoil, madsim and the emulator
//! all use this same loop; only the socket and clock differ.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use crate::machine::{Endpoint, Role};
use crate::net::{sleep_until_opt, Clock, DatagramSocket};
use crate::time::Instant;

/// Largest datagram the driver receives.
pub const MAX_DATAGRAM: usize = 65_535;

/// What a caller adds to the loop around its machine: inputs that come from elsewhere than the
/// socket (a channel of new commands, a deadline of its own) and what to do with the
/// machine's events after every round of sends. [`run`] uses [`Alone`]; the backend's command
/// desk and the load generator's session probe bring their own.
pub trait Glue<R: ?Sized> {
    /// An input from outside the socket.
    type Input;
    /// The next outside input; `None` ends the loop. Must be cancel-safe (raced against the
    /// socket and the machine's timer).
    fn next_input(&mut self) -> impl Future<Output = Option<Self::Input>>;
    /// Hands an outside input to the machine.
    fn handle_input(
        &mut self,
        machine: &mut R,
        now: Instant,
        input: Self::Input,
    ) -> impl Future<Output = ()>;
    /// After a round of sends (`sent` datagrams): drain the machine's events.
    /// `ControlFlow::Break` ends the loop.
    fn after_round(
        &mut self,
        machine: &mut R,
        now: Instant,
        sent: usize,
    ) -> impl Future<Output = ControlFlow<()>>;
}

/// The glue of a [`Role`] alone: no outside inputs; the loop ends when the role is finished.
pub struct Alone;

impl<R: Role + ?Sized> Glue<R> for Alone {
    type Input = std::convert::Infallible;
    async fn next_input(&mut self) -> Option<Self::Input> {
        std::future::pending().await
    }
    async fn handle_input(&mut self, _: &mut R, _: Instant, input: Self::Input) {
        match input {}
    }
    async fn after_round(&mut self, role: &mut R, _: Instant, _: usize) -> ControlFlow<()> {
        if role.is_finished() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// Runs `role` over `socket` and `clock` until it is finished.
pub async fn run<R, S, C>(role: &mut R, socket: &S, clock: &C) -> io::Result<()>
where
    R: Role + ?Sized,
    S: DatagramSocket + ?Sized,
    C: Clock + ?Sized,
{
    run_with(role, socket, clock, &mut Alone).await
}

/// Rounds in a row that a machine may leave its deadline at or before the instant its
/// `handle_timeout` was given before the loop gives up on it. A machine clears a due timer
/// in one call; one that never does (a deadline nothing removes) would spin a core forever
/// and, under a simulator, stop simulated time: the loop ends with an error instead, so the
/// host fails loudly (a supervisor restarts it; the scenario explorer sees it die).
pub const MAX_STUCK_ROUNDS: u32 = 100_000;

/// What woke the loop.
enum Wake<I> {
    /// On this uplink.
    Datagram(usize, io::Result<(usize, SocketAddr)>),
    Input(Option<I>),
    Timer,
}

/// Runs `machine` over `socket` and `clock` with `glue` until the glue ends it.
///
/// Send errors (an ICMP port unreachable reported on a later send, a full buffer) are what a
/// lossy network does anyway: they are logged and the datagram counts as lost. Receive errors
/// of the same kind are skipped. Only a socket that cannot be used at all ends the loop, or a
/// machine whose due timer never clears ([`MAX_STUCK_ROUNDS`]).
pub async fn run_with<R, S, C, G>(
    machine: &mut R,
    socket: &S,
    clock: &C,
    glue: &mut G,
) -> io::Result<()>
where
    R: Endpoint + ?Sized,
    S: DatagramSocket + ?Sized,
    C: Clock + ?Sized,
    G: Glue<R>,
{
    run_uplinks_with(machine, &[socket], clock, glue).await
}

/// Most sockets [`run_uplinks_with`] drives: a bonded camera's modems
/// (`proto::bond::MAX_UPLINKS`).
pub const MAX_SOCKETS: usize = crate::proto::bond::MAX_UPLINKS;

/// Runs `role` over several sockets (uplinks, the first one the primary) until it is
/// finished.
pub async fn run_uplinks<R, S, C>(role: &mut R, sockets: &[&S], clock: &C) -> io::Result<()>
where
    R: Role + ?Sized,
    S: DatagramSocket + ?Sized,
    C: Clock + ?Sized,
{
    run_uplinks_with(role, sockets, clock, &mut Alone).await
}

/// [`run_with`] over one to [`MAX_SOCKETS`] sockets: socket `i` is the machine's local
/// uplink `i` ([`Endpoint::poll_transmit_on`] says which one a datagram leaves by, and
/// [`Endpoint::handle_datagram_on`] which one it came in by). A datagram for an uplink with
/// no socket leaves by the first.
pub async fn run_uplinks_with<R, S, C, G>(
    machine: &mut R,
    sockets: &[&S],
    clock: &C,
    glue: &mut G,
) -> io::Result<()>
where
    R: Endpoint + ?Sized,
    S: DatagramSocket + ?Sized,
    C: Clock + ?Sized,
    G: Glue<R>,
{
    let Some(&primary) = sockets.first().filter(|_| sockets.len() <= MAX_SOCKETS) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("1 to {MAX_SOCKETS} sockets, not {}", sockets.len()),
        ));
    };
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    // One receive buffer per socket: the receives are raced against each other.
    let mut inbufs: [Vec<u8>; MAX_SOCKETS] =
        std::array::from_fn(|i| vec![0u8; if i < sockets.len() { MAX_DATAGRAM } else { 0 }]);
    let mut stuck = 0u32;
    loop {
        let now = clock.now();
        if machine.poll_timeout().is_some_and(|t| t <= now) {
            machine.handle_timeout(now);
        }
        let mut sent = 0;
        while let Some((uplink, dst)) = machine.poll_transmit_on(now, &mut out) {
            sent += 1;
            let socket = sockets.get(uplink).copied().unwrap_or(primary);
            if let Err(e) = socket.send_to(&out, dst).await {
                if is_fatal(&e) {
                    return Err(e);
                }
                tracing::debug!(error = %e, %dst, uplink, "send failed; datagram counts as lost");
            }
        }
        if glue.after_round(machine, now, sent).await.is_break() {
            return Ok(());
        }
        let deadline = machine.poll_timeout();
        if deadline.is_some_and(|t| t <= clock.now()) {
            stuck = if deadline.is_some_and(|t| t <= now) {
                stuck + 1
            } else {
                0
            };
            if stuck >= MAX_STUCK_ROUNDS {
                tracing::error!(?deadline, ?now, "a timer that never clears; the loop ends");
                return Err(io::Error::other(format!(
                    "the machine's deadline stayed at {deadline:?}, not after {now:?}, for \
                     {MAX_STUCK_ROUNDS} rounds: a timer that never clears"
                )));
            }
            continue;
        }
        stuck = 0;
        let [in0, in1, in2] = &mut inbufs;
        let wake = tokio::select! {
            biased;
            r = recv_on(Some(primary), in0) => Wake::Datagram(0, r),
            r = recv_on(sockets.get(1).copied(), in1) => Wake::Datagram(1, r),
            r = recv_on(sockets.get(2).copied(), in2) => Wake::Datagram(2, r),
            input = glue.next_input() => Wake::Input(input),
            _ = sleep_until_opt(clock, deadline) => Wake::Timer,
        };
        match wake {
            Wake::Datagram(uplink, Ok((n, from))) => {
                let data = &inbufs[uplink][..n];
                machine.handle_datagram_on(clock.now(), uplink, from, data)
            }
            Wake::Datagram(_, Err(e)) if is_fatal(&e) => return Err(e),
            Wake::Datagram(_, Err(e)) => tracing::debug!(error = %e, "receive failed; skipped"),
            Wake::Input(Some(input)) => glue.handle_input(machine, clock.now(), input).await,
            Wake::Input(None) => return Ok(()),
            Wake::Timer => {}
        }
    }
}

/// Receives on `socket`, or never when there is none.
async fn recv_on<S: DatagramSocket + ?Sized>(
    socket: Option<&S>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TokioClock;

    /// A machine with a bug: its deadline is always due, and handling it changes nothing.
    struct Stuck {
        timeouts: u64,
    }

    impl Endpoint for Stuck {
        fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
        fn handle_timeout(&mut self, _: Instant) {
            self.timeouts += 1;
        }
        fn poll_transmit(&mut self, _: Instant, _: &mut Vec<u8>) -> Option<SocketAddr> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(Instant::ZERO)
        }
    }

    struct Forever;
    impl Glue<Stuck> for Forever {
        type Input = ();
        async fn next_input(&mut self) -> Option<()> {
            std::future::pending().await
        }
        async fn handle_input(&mut self, _: &mut Stuck, _: Instant, _: ()) {}
        async fn after_round(&mut self, _: &mut Stuck, _: Instant, _: usize) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
    }

    #[tokio::test]
    async fn a_timer_that_never_clears_ends_the_loop_with_an_error_instead_of_spinning() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let clock = TokioClock::default();
        let mut m = Stuck { timeouts: 0 };
        let e = run_with(&mut m, &socket, &clock, &mut Forever)
            .await
            .expect_err("the loop gives up");
        assert!(e.to_string().contains("never clears"), "{e}");
        assert_eq!(m.timeouts, u64::from(MAX_STUCK_ROUNDS));
    }
}
