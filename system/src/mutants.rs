//! Known bugs that can be switched into the machines one at a time, to measure the scenario
//! explorer: a mutation check asks whether the explorer's invariants catch each of them
//! within a budget of seeds (`livecam explore --mutants`, `sim/tests/mutants.rs`).
//!
//! Each [`Mutant`] is a bug that a plausible change could make: acknowledging a frame before
//! its last segment, a tier-2 that keeps a manager it was told to leave, a durable client that
//! frees its ring on ACK instead of STORED, and so on. The code reads `mutants::active(..)` at
//! the place the bug would be; [`active`] is a constant `false` unless the crate is built with
//! the `mutants` feature, so a normal build holds no switch and no cost (the optimiser
//! removes the dead branch).
//!
//! With the feature, the switch is per thread ([`set`]): the explorer runs one scenario per
//! worker thread, and each simulated run stays on its thread (des and turmoil run every host
//! on the calling thread), so two runs with two mutants can share a process.
//!
//! Who may switch one: only code built with the feature, which no shipped binary enables
//! (`.ci/run` builds it for the mutation test alone).

/// A known bug, switched in by [`set`] when the `mutants` feature is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// The receiver acknowledges a frame once all but its last missing segment arrived.
    AckBeforeLastSegment,
    /// The receiver writes every segment but the first one byte early in the frame.
    ReassemblyOffByOne,
    /// The receiver forgets that it delivered a frame: a late repair delivers it again.
    ForgetDelivered,
    /// The receiver skips the CRC of what arrives: damaged bits reach the frame.
    SkipChecksum,
    /// The sender never gives a frame up at its deadline.
    NoDeadlineDrop,
    /// The sender evicts a frame (the in-flight limit, a newer frame) without reporting it.
    SilentEviction,
    /// A tier-2 ignores the manager change its manager sends it.
    StaleManager,
    /// A client whose session went silent reports it lost and never connects again.
    NoReconnect,
    /// A durable client frees a frame from its ring on the ACK, not on STORED.
    ReleaseOnAck,
    /// A tier-2 sends STORED for a frame when it is delivered, before storage committed it.
    StoredBeforeCommit,
}

impl Mutant {
    /// Every mutant, in a fixed order.
    pub const ALL: [Mutant; 10] = [
        Mutant::AckBeforeLastSegment,
        Mutant::ReassemblyOffByOne,
        Mutant::ForgetDelivered,
        Mutant::SkipChecksum,
        Mutant::NoDeadlineDrop,
        Mutant::SilentEviction,
        Mutant::StaleManager,
        Mutant::NoReconnect,
        Mutant::ReleaseOnAck,
        Mutant::StoredBeforeCommit,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckBeforeLastSegment => "ack-before-last-segment",
            Mutant::ReassemblyOffByOne => "reassembly-off-by-one",
            Mutant::ForgetDelivered => "forget-delivered",
            Mutant::SkipChecksum => "skip-checksum",
            Mutant::NoDeadlineDrop => "no-deadline-drop",
            Mutant::SilentEviction => "silent-eviction",
            Mutant::StaleManager => "stale-manager",
            Mutant::NoReconnect => "no-reconnect",
            Mutant::ReleaseOnAck => "release-on-ack",
            Mutant::StoredBeforeCommit => "stored-before-commit",
        }
    }
}

#[cfg(feature = "mutants")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutant>> = const { std::cell::Cell::new(None) };
}

/// Whether `m` is switched in on this thread: always false without the `mutants` feature.
#[inline(always)]
pub fn active(m: Mutant) -> bool {
    #[cfg(feature = "mutants")]
    {
        ACTIVE.with(|a| a.get() == Some(m))
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = m;
        false
    }
}

/// Switches `m` in (or, with `None`, every mutant out) on this thread.
#[cfg(feature = "mutants")]
pub fn set(m: Option<Mutant>) {
    ACTIVE.with(|a| a.set(m));
}

/// Whether this build can switch mutants in at all.
pub const ENABLED: bool = cfg!(feature = "mutants");
