//! Roles: application behaviour around the protocol machines, written once and run by the one
//! [`driver`](crate::driver) loop over any backend.
//!
//! - [`Camera`]: a mobile client's stream: produces frames at a frame rate and sends them with a
//!   [`Sender`](crate::proto::Sender).
//! - [`Sink`]: a receiving server: runs a [`Receiver`](crate::proto::Receiver) and checks every
//!   delivered frame byte for byte against what the camera produced.

mod camera;
mod content;
mod event;
mod sink;

pub use camera::{Camera, CameraConfig, CameraReport};
pub use content::FrameContent;
pub use event::RoleEvent;
pub use sink::{Sink, SinkReport};
