use std::net::SocketAddr;

use serde::Serialize;

use crate::proto::DropReason;

/// A notable thing a role did, recorded (when asked) for traces and run summaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum RoleEvent {
    /// A camera captured a frame and pushed it into its sender.
    FramePushed {
        session: u32,
        frame: u32,
        len: usize,
        /// The boot's numbering: the frame's capture sequence number, its identity in the
        /// ring and in storage, is `boot_seq + frame` (see [`super::durable`]). Left out of
        /// a trace when 0.
        #[serde(skip_serializing_if = "is_zero")]
        boot_seq: u64,
    },
    /// A camera's frame was acknowledged.
    FrameAcked {
        session: u32,
        frame: u32,
        latency_us: u64,
    },
    /// A camera gave a frame up.
    FrameGivenUp {
        session: u32,
        frame: u32,
        reason: DropReason,
    },
    /// A camera's segment size for the next frames changed.
    SegmentSize { session: u32, size: usize },
    /// A camera's rate control moved its target (bytes per second on the wire), with the
    /// queueing delay it read then.
    TargetRate {
        session: u32,
        bytes_per_s: u64,
        queue_us: u64,
    },
    /// A receiver delivered a whole frame, checked against the camera's content.
    FrameDelivered {
        session: u32,
        frame: u32,
        intact: bool,
        duplicate: bool,
        segment_size: usize,
        failed: u16,
    },
    /// A receiver gave a frame up.
    FrameDropped {
        session: u32,
        frame: u32,
        reason: DropReason,
    },
    /// A mobile client started asking tier-1 for a session.
    Connecting { client: u32, tier1: SocketAddr },
    /// A mobile client got its session from a tier-2.
    Connected {
        client: u32,
        tier2: u32,
        setup_us: u64,
        attempts: u32,
    },
    /// A mobile client heard nothing from its tier-2 for too long and reconnects.
    SessionLost { client: u32, tier2: u32 },
    /// A tier-2 took a client.
    SessionAccepted { tier2: u32, client: u32 },
    /// A tier-2's manager changed.
    ManagerChanged {
        tier2: u32,
        manager: SocketAddr,
        epoch: u64,
    },
    /// A tier-1 started managing a tier-2.
    Managing { tier1: u32, tier2: u32 },
    /// A tier-1 stopped managing a tier-2 (handed over to `to`, or silent).
    Released {
        tier1: u32,
        tier2: u32,
        to: Option<u32>,
    },
    /// A tier-1 began draining.
    Draining { tier1: u32 },
    /// A tier-1 has no tier-2 left after draining.
    Drained { tier1: u32 },
    /// A camera's ring dropped a frame not yet stored, to make room for a new one.
    RingDropped { session: u32, frame: u64 },
    /// A camera's backfilled frame (one that missed its live deadline) was acknowledged.
    BackfillAcked { session: u32, frame: u64 },
    /// A tier-2 received a backfilled frame whole (checked against the camera's content).
    FrameBackfilled {
        session: u32,
        frame: u64,
        intact: bool,
    },
    /// A tier-2's storage committed a frame (and the tier-2 tells the client: STORED).
    FrameStored {
        session: u32,
        frame: u64,
        backfill: bool,
    },
    /// A mobile client carried out a command (`ok`) or refused it.
    CommandDone { client: u32, id: u64, ok: bool },
}

/// Whether a `u64` field is 0 (serde's `skip_serializing_if`).
fn is_zero(n: &u64) -> bool {
    *n == 0
}
