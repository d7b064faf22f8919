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
}
