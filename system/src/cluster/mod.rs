//! The two-tier server cluster (seed [0036]-[0040], claims 15-28) as sans-IO state machines.
//!
//! - [`Tier1`]: takes a client's connection request and forwards it, with the client's
//!   address, to every tier-2 it manages; hands tier-2s to peer tier-1s (request, accept,
//!   manager change) to drain before downtime or to balance load; tells clients which tier-1s
//!   to use.
//! - [`Tier2`]: answers forwarded requests directly to the client, later the more loaded it is
//!   (a full tier-2 does not answer), holds a reservation until the client accepts or releases
//!   it (or it expires), and heartbeats its load to its manager.
//! - [`Connector`]: the client's side: a default tier-1 and backups, the first offer wins,
//!   the others are released, failover to the next tier-1 on timeout.
//!
//! Management is safe under lost and duplicated messages because the tier-2 is the one
//! authority on who manages it: it heartbeats only its current manager, and it changes
//! manager only on a [`ManagerChange`](crate::proto::wire::ManagerChange) with a higher epoch
//! than it has seen, or on its own when its manager stops answering. A tier-1 manages exactly
//! the tier-2s whose heartbeats name it, so once messages settle every tier-2 has exactly one
//! manager.

mod client;
mod tier1;
mod tier2;

pub use client::{ClientConfig, ClientEvent, Connector};
pub use tier1::{Balance, Selection, Tier1, Tier1Config, Tier1Event};
pub use tier2::{OfferDelay, Tier2, Tier2Config, Tier2Event};

#[cfg(test)]
mod tests;
