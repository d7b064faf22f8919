//! Where a tier-2 hands what its receiver delivered: the backend's database in real runs, a
//! storage model in simulations that test durability, nothing in other simulations (their
//! summaries come from the recorded events instead). A backhaul reports frames back once
//! committed, so the tier-2 can send `STORED` (see [`super::durable`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::time::Instant;

/// A frame a tier-2 received whole and intact, for the first time.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub session: u32,
    /// Its id in the session it arrived on (a backfill session's own numbering for a
    /// backfilled frame).
    pub frame: u32,
    /// Its 64-bit capture sequence number, the storage key with the client (see
    /// [`super::durable`]).
    pub seq: u64,
    pub data: &'a [u8],
    pub segment_size: usize,
    pub segments: u16,
    /// Segments that had to be asked for again.
    pub failed: u16,
    /// First segment to complete frame.
    pub reassembly: Duration,
    /// A backfilled frame (sent again after it missed its live deadline; `seq` is its
    /// original identity), not a live delivery.
    pub backfill: bool,
}

/// A frame storage has committed: the tier-2 tells its client (wire `STORED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredFrame {
    pub session: u32,
    /// The capture sequence number.
    pub seq: u64,
    pub backfill: bool,
}

/// Told about sessions and frames as a tier-2's receiver sees them. Calls must return
/// quickly: they run inside the role's event loop (a real implementation queues the work for
/// a writer thread).
pub trait Backhaul: Send {
    fn session_opened(&mut self, now: Instant, session: u32, peer: SocketAddr);
    fn frame_delivered(&mut self, now: Instant, frame: &Delivered<'_>);
    fn frame_dropped(&mut self, now: Instant, session: u32, frame: u32);
    fn session_closed(&mut self, now: Instant, session: u32);
    /// Appends the frames committed since the last call to `out`. Storing must be
    /// idempotent per (session, seq): a frame handed over twice is one record, reported
    /// each time.
    fn poll_stored(&mut self, _now: Instant, _out: &mut Vec<StoredFrame>) {}
    /// When [`Backhaul::poll_stored`] should next be called, while stores are outstanding.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
