//! Where a tier-2 hands what its receiver delivered: the backend's database in real runs,
//! nothing in simulations (their summaries come from the recorded events instead).

use std::net::SocketAddr;
use std::time::Duration;

use crate::time::Instant;

/// A frame a tier-2 received whole and intact, for the first time.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub session: u32,
    pub frame: u32,
    pub data: &'a [u8],
    pub segment_size: usize,
    pub segments: u16,
    /// Segments that had to be asked for again.
    pub failed: u16,
    /// First segment to complete frame.
    pub reassembly: Duration,
}

/// Told about sessions and frames as a tier-2's receiver sees them. Calls must return
/// quickly: they run inside the role's event loop (a real implementation queues the work for
/// a writer thread).
pub trait Backhaul: Send {
    fn session_opened(&mut self, now: Instant, session: u32, peer: SocketAddr);
    fn frame_delivered(&mut self, now: Instant, frame: &Delivered<'_>);
    fn frame_dropped(&mut self, now: Instant, session: u32, frame: u32);
    fn session_closed(&mut self, now: Instant, session: u32);
}
