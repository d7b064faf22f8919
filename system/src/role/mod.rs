//! Roles: application behaviour around the protocol machines, written once and run by the one
//! [`driver`](crate::driver) loop over any backend.
//!
//! - [`Camera`]: a mobile client's stream: produces frames at a frame rate and sends them with a
//!   [`Sender`](crate::proto::Sender).
//! - [`Sink`]: a receiving server: runs a [`Receiver`](crate::proto::Receiver) and checks every
//!   delivered frame byte for byte against what the camera produced.
//! - [`Mobile`]: a mobile client in the cluster: gets a session through tier-1 with a
//!   [`Connector`](crate::cluster::Connector) and streams its [`Camera`] to the tier-2 that
//!   answered first; reconnects (and resends what is still in time) when the tier-2 goes quiet.
//! - [`Tier2Server`]: a tier-2 server: cluster logic plus a [`Sink`].
//! - [`Tier1Server`]: a tier-1 server.

pub mod adapt;
mod backhaul;
mod camera;
mod content;
pub mod durable;
mod event;
mod mobile;
mod recorder;
pub mod ring;
mod sink;
mod tier1;
mod tier2;

pub use backhaul::{Backhaul, Delivered, StoredFrame};
pub use camera::{Camera, CameraConfig, CameraReport, FPS_RANGE};
pub use content::{FrameCheck, FrameContent, FrameProducer};
pub use event::RoleEvent;
pub use mobile::{Mobile, MobileConfig};
pub use recorder::Recorder;
pub use sink::{Sink, SinkReport};
pub use tier1::Tier1Server;
pub use tier2::Tier2Server;

#[cfg(test)]
pub(crate) mod tests;
