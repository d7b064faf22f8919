//! The variable segment size protocol (seed [0028]-[0035], claims 1-14) as sans-IO state
//! machines.
//!
//! - [`wire`]: every datagram's encoding, in one place.
//! - [`Sender`]: cuts frames into segments, paces them, resends what is NACKed.
//! - [`Receiver`]: reassembles, checks, NACKs, acknowledges with the next segment size.
//! - [`policy`]: how the next segment size is chosen.
//! - [`estimator`]: what the receiver can tell about the link (loss, byte errors, bursts, round
//!   trip, jitter), which the model policy and the parity count read.
//! - [`fec`]: parity segments (Reed-Solomon) and how many a frame gets.
//! - [`rate`]: how fast the sender may send (delivery rate and queueing delay).
//! - [`bond`]: which of a bonded camera's uplinks each datagram leaves by.
//!
//! Both machines implement [`crate::machine::Endpoint`]: feed them datagrams and timeouts with
//! `now`, take datagrams from `poll_transmit`, sleep until `poll_timeout`, and read `poll_event`.

pub mod bond;
pub mod estimator;
pub mod fec;
mod finished;
mod limits;
mod path_marks;
pub mod policy;
pub mod rate;
pub mod receiver;
mod rtt;
pub mod sender;
pub mod wire;

pub use estimator::{LinkEstimate, LinkEstimator};
pub use fec::FecKind;
pub use limits::{PolicyError, SizeLimits, DEFAULT_SEGMENT_SIZE};
pub use policy::{FrameOutcome, PolicyConfig, PolicyKind, SizePolicy};
pub use rate::{RateConfig, RateController, RateStats, RttSample};
pub use receiver::{Receiver, ReceiverConfig, ReceiverEvent, ReceiverStats};
pub use rtt::SmoothedRtt;
pub use sender::{PushError, Sender, SenderConfig, SenderEvent, SenderStats};

use serde::Serialize;

/// Why a frame was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Its deadline passed before it was complete.
    Deadline,
    /// A newer frame needed its place (in-flight or reassembly limit).
    Evicted,
    /// Its session went idle and was forgotten.
    SessionClosed,
    /// A newer frame was captured before this one could start to leave (rate control: the
    /// newest frame wins); dropped at the source.
    Superseded,
    /// Never captured: the rate control lowered the frame rate and this capture instant was
    /// skipped; dropped at the source.
    Skipped,
    /// Captured while its session was being set up, with a newer frame captured before the
    /// session opened: a live session starts with the newest; dropped at the source.
    SetUp,
}

#[cfg(test)]
mod nack_limits;
#[cfg(test)]
mod tests;
