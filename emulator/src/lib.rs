//! Network emulator for livecam.
//!
//! This crate will hold the user-space link emulator: one network namespace per host, joined by
//! veth pairs to a bridge that forwards Ethernet frames with `pnet` (AF_PACKET) and applies the
//! same link models the simulators use ([`livecam_system::link`]), so that an emulator run and a
//! simulation run of one scenario are comparable. The kernel on the target machines has no
//! `netem` qdisc, so all shaping happens here, in user space.
//!
//! It is filled by the network-emulator issue; until then it only re-exports the shared link
//! model it will apply.

pub use livecam_system::link;
