//! The authenticated control plane: every server-to-server datagram (heartbeats and their
//! answers, hand-overs, manager changes, peer status, connect forwards, commands and their
//! results) travels signed by the server that sent it, and a server in secure mode drops
//! what is unsigned, signed by a stranger, replayed, or signed by a server whose role may not
//! send it.
//!
//! - **Who**: every tier-1, tier-2 and backend has an Ed25519 key of its own
//!   ([`SigningKey`]); the [`ServerRegistry`] (`servers.toml`, written by
//!   `livecam keygen --cluster`) says which public key is which role and id. A signature
//!   proves the sender, not only membership: a tier-2 cannot pose as a tier-1, nor one tier-2
//!   as another (heartbeats must name their signer).
//! - **Why signatures, not MACs**: a MAC needs a key per pair, so the sender must know whom an
//!   address belongs to before it sends; a signature is checked by whoever receives it, which
//!   fits a cluster whose addresses are learned from the traffic. Ed25519 from `ring` (already
//!   linked for the session AEAD), deterministic (RFC 8032), so simulated runs keep their trace
//!   hash.
//! - **Replay**: each signed datagram carries the sender's counter, which never repeats: the
//!   sender's clock in microseconds (wall clock in real runs, so it grows across restarts),
//!   bumped past the last one used. The receiver keeps a replay window per sender, checked
//!   before the signature and moved only after it; and, for a receiver that restarted and
//!   lost its windows, refuses counters older than [`MAX_AGE`] behind its own clock (servers
//!   keep their clocks within that of each other, as Kerberos asks of its hosts).
//! - **What a stranger costs**: an unknown sender id is dropped after a map lookup; a replayed
//!   or stale counter before any cryptography; anything else costs one Ed25519 verification
//!   (tens of microseconds), charged first to a budget. A datagram from the address a sender
//!   last proved itself from is charged to the known paths' budget ([`KNOWN_PATHS`]); any
//!   other to the strangers' budget, per source address and in all ([`VERIFICATIONS`]: a
//!   quarter of a core at most, whatever the number of addresses). So a flood of forged
//!   signatures spends the strangers' budget and is then refused unchecked, while the real
//!   servers, on their known paths, keep being heard. Nothing a stranger sends creates state
//!   beyond its address's bucket.
//!
//! Sans-IO like the rest of [`crate::secure`]: `now` and bytes in, bytes out.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::budget::{AddressBudget, Limits};
use super::keys::{parse_hex32, read_text, KeyError, PublicKey};
use super::{Entropy, ReplayWindow};
use crate::proto::wire::{self, Message};
use crate::time::Instant;

/// Oldest counter a receiver takes, behind its own clock: bounds replays of recorded traffic
/// to a receiver that restarted (and so lost its replay windows).
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// Signature checks per source address (a tier-1 forwarding a fleet's reconnects after a
/// failover sends a few thousand at once) and in all (each costs ~50 us).
pub const VERIFICATIONS: Limits = Limits {
    address_burst: 4000.0,
    address_per_second: 2000.0,
    total_burst: 5000.0,
    total_per_second: 5000.0,
};

/// Signature checks for datagrams on a known path (the address its sender last verified
/// from): per address and in all, far above what a cluster sends, bounding only what an
/// on-path attacker spoofing a server's address could make a receiver spend.
pub const KNOWN_PATHS: Limits = Limits {
    address_burst: 20_000.0,
    address_per_second: 10_000.0,
    total_burst: 40_000.0,
    total_per_second: 20_000.0,
};

/// What a server is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    Tier1,
    Tier2,
    Backend,
}

impl ServerRole {
    /// The role's code on the wire.
    pub fn code(self) -> u8 {
        match self {
            ServerRole::Tier1 => 1,
            ServerRole::Tier2 => 2,
            ServerRole::Backend => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ServerRole::Tier1),
            2 => Some(ServerRole::Tier2),
            3 => Some(ServerRole::Backend),
            _ => None,
        }
    }

    /// The role's name, as in registries and key file names.
    pub fn name(self) -> &'static str {
        match self {
            ServerRole::Tier1 => "tier1",
            ServerRole::Tier2 => "tier2",
            ServerRole::Backend => "backend",
        }
    }
}

/// One server of the cluster: its role and its id within the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId {
    pub role: ServerRole,
    pub id: u32,
}

impl ServerId {
    pub fn new(role: ServerRole, id: u32) -> Self {
        ServerId { role, id }
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.role.name(), self.id)
    }
}

/// A server's Ed25519 signing key (its 32-byte seed). Never shown in `Debug` output.
pub struct SigningKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey {{ public: {} }}", self.public())
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        Self::from_seed(self.seed)
    }
}

impl SigningKey {
    pub fn generate(entropy: &mut Entropy) -> Self {
        Self::from_seed(entropy.bytes32())
    }

    /// The key of a 32-byte seed (every seed is a valid Ed25519 key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("ring takes every 32-byte Ed25519 seed");
        SigningKey { seed, pair }
    }

    pub fn public(&self) -> PublicKey {
        let mut p = [0u8; 32];
        p.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(p)
    }

    /// Parses the key's text form (64 hex digits); `what` names the field in errors.
    pub fn parse(text: &str, what: &str) -> Result<Self, KeyError> {
        parse_hex32(text, what).map(Self::from_seed)
    }

    /// Reads a key file (as `livecam keygen --cluster` writes it).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The key's text form, as written to key files.
    pub fn private_hex(&self) -> String {
        hex::encode(self.seed)
    }
}

/// Who is who in the cluster: each server's role, id and public signing key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerRegistry {
    keys: BTreeMap<ServerId, PublicKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    server: Vec<ServerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerEntry {
    role: ServerRole,
    id: u32,
    key: String,
}

impl ServerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, server: ServerId, key: PublicKey) {
        self.keys.insert(server, key);
    }

    pub fn get(&self, server: ServerId) -> Option<&PublicKey> {
        self.keys.get(&server)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a registry file:
    ///
    /// ```toml
    /// [[server]]
    /// role = "tier1"   # or "tier2", "backend"
    /// id = 1
    /// key = "<64 hex digits: the server's public signing key>"
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| KeyError::Registry {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut reg = ServerRegistry::new();
        for (i, s) in file.server.iter().enumerate() {
            let who = ServerId::new(s.role, s.id);
            let key = PublicKey::parse(&s.key, &format!("{origin}: server[{i}] ({who}) key"))?;
            if reg.keys.insert(who, key).is_some() {
                return Err(KeyError::Registry {
                    path: origin.to_string(),
                    message: format!("server[{i}]: {who} listed twice"),
                });
            }
        }
        Ok(reg)
    }

    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The registry's text form (what [`parse`](Self::parse) reads).
    pub fn to_toml(&self) -> String {
        self.keys
            .iter()
            .map(|(s, key)| {
                format!(
                    "[[server]]\nrole = \"{}\"\nid = {}\nkey = \"{key}\"\n\n",
                    s.role.name(),
                    s.id
                )
            })
            .collect()
    }
}

/// Why a signed datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    #[error("not a signed datagram")]
    NotSigned,
    #[error("signed by {0}, which the registry does not list")]
    UnknownSender(String),
    #[error("replayed counter {counter} from {sender}")]
    Replayed { sender: String, counter: u64 },
    #[error("counter {counter} from {sender} is older than the receiver takes")]
    Stale { sender: String, counter: u64 },
    #[error("signature by {0} does not verify")]
    Forged(String),
    #[error("{sender} may not send {what}")]
    NotPermitted { sender: String, what: &'static str },
    #[error("signature checks for this source are used up")]
    RateLimited,
}

/// What a [`ControlPlane`] saw: every refusal is counted by its reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ControlStats {
    /// Datagrams it signed and sent.
    pub signed: u64,
    /// Signed datagrams that verified and were let in.
    pub accepted: u64,
    /// Server-to-server datagrams that arrived unsigned (dropped).
    pub unsigned: u64,
    pub unknown_sender: u64,
    pub replayed: u64,
    pub stale: u64,
    pub forged: u64,
    pub not_permitted: u64,
    /// Refused unchecked: the source address, or the server, is out of signature checks.
    pub rate_limited: u64,
}

impl ControlStats {
    /// Every control datagram refused, whatever the reason.
    pub fn refused(&self) -> u64 {
        self.unsigned
            + self.unknown_sender
            + self.replayed
            + self.stale
            + self.forged
            + self.not_permitted
            + self.rate_limited
    }
}

/// One server's side of the control plane: signs what it sends, checks what it receives.
#[derive(Debug)]
pub struct ControlPlane {
    me: ServerId,
    key: SigningKey,
    registry: ServerRegistry,
    /// The wall clock at `Instant::ZERO`, in microseconds: counters are `wall_at_zero + now`.
    wall_at_zero: u64,
    /// The last counter this server used.
    counter: u64,
    windows: BTreeMap<ServerId, ReplayWindow>,
    /// Signature checks for strangers, and for datagrams on known paths.
    budget: AddressBudget,
    known_budget: AddressBudget,
    /// Where each sender last proved itself from (one entry per registered server at most).
    paths: BTreeMap<ServerId, SocketAddr>,
    stats: ControlStats,
    scratch: Vec<u8>,
}

impl ControlPlane {
    /// `wall_at_zero`: microseconds of the wall clock (since the Unix epoch in real runs) at
    /// `Instant::ZERO` of the clock this server's `now` comes from.
    pub fn new(me: ServerId, key: SigningKey, registry: ServerRegistry, wall_at_zero: u64) -> Self {
        ControlPlane {
            me,
            key,
            registry,
            wall_at_zero,
            counter: 0,
            windows: BTreeMap::new(),
            budget: AddressBudget::new(VERIFICATIONS),
            known_budget: AddressBudget::new(KNOWN_PATHS),
            paths: BTreeMap::new(),
            stats: ControlStats::default(),
            scratch: Vec::new(),
        }
    }

    pub fn me(&self) -> ServerId {
        self.me
    }

    pub fn stats(&self) -> ControlStats {
        self.stats
    }

    fn clock(&self, now: Instant) -> u64 {
        self.wall_at_zero.saturating_add(now.as_micros())
    }

    /// Replaces the datagram in `buf` with its signed form.
    pub fn sign_in_place(&mut self, now: Instant, buf: &mut Vec<u8>) {
        let mut inner = std::mem::take(&mut self.scratch);
        std::mem::swap(&mut inner, buf);
        buf.clear();
        self.sign(now, &inner, buf);
        self.scratch = inner;
    }

    /// Appends `datagram` signed by this server to `out`.
    pub fn sign(&mut self, now: Instant, datagram: &[u8], out: &mut Vec<u8>) {
        self.counter = self.clock(now).max(self.counter.saturating_add(1));
        let start =
            wire::put_signed_head(out, self.me.role.code(), self.me.id, self.counter, datagram);
        let signature = self.key.pair.sign(&out[start..]);
        out.extend_from_slice(signature.as_ref());
        wire::finish_signed(out, start);
        self.stats.signed += 1;
    }

    /// Counts a server-to-server datagram that arrived unsigned (and is dropped).
    pub fn count_unsigned(&mut self) {
        self.stats.unsigned += 1;
    }

    /// Checks a signed datagram from source address `from`: the inner datagram and who sent
    /// it, if it verifies, is fresh and is one its sender's role may send. Every refusal is
    /// counted.
    pub fn open<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> Result<(ServerId, &'a [u8]), ControlError> {
        let r = self.check(now, from, datagram);
        match &r {
            Ok(_) => self.stats.accepted += 1,
            Err(ControlError::NotSigned) => {}
            Err(ControlError::UnknownSender(_)) => self.stats.unknown_sender += 1,
            Err(ControlError::Replayed { .. }) => self.stats.replayed += 1,
            Err(ControlError::Stale { .. }) => self.stats.stale += 1,
            Err(ControlError::Forged(_)) => self.stats.forged += 1,
            Err(ControlError::NotPermitted { .. }) => self.stats.not_permitted += 1,
            Err(ControlError::RateLimited) => self.stats.rate_limited += 1,
        }
        r
    }

    fn check<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> Result<(ServerId, &'a [u8]), ControlError> {
        let Ok(Message::Signed(m)) = wire::decode(datagram) else {
            return Err(ControlError::NotSigned);
        };
        let unknown = || ControlError::UnknownSender(format!("role {} id {}", m.role, m.id));
        let role = ServerRole::from_code(m.role).ok_or_else(unknown)?;
        let sender = ServerId::new(role, m.id);
        let key = *self.registry.get(sender).ok_or_else(unknown)?;
        let window = self.windows.get(&sender);
        if window.is_some_and(|w| w.check(m.counter).is_err()) {
            return Err(ControlError::Replayed {
                sender: sender.to_string(),
                counter: m.counter,
            });
        }
        let oldest = self.clock(now).saturating_sub(MAX_AGE.as_micros() as u64);
        if m.counter < oldest {
            return Err(ControlError::Stale {
                sender: sender.to_string(),
                counter: m.counter,
            });
        }
        let signed = wire::signed_part(datagram).ok_or(ControlError::NotSigned)?;
        let budget = if self.paths.get(&sender) == Some(&from) {
            &mut self.known_budget
        } else {
            &mut self.budget
        };
        if !budget.charge(now, from.ip()) {
            return Err(ControlError::RateLimited);
        }
        UnparsedPublicKey::new(&ED25519, key.0)
            .verify(signed, m.signature)
            .map_err(|_| ControlError::Forged(sender.to_string()))?;
        self.windows.entry(sender).or_default().mark(m.counter);
        self.paths.insert(sender, from);
        let inner = wire::decode(m.inner).map_err(|_| ControlError::NotPermitted {
            sender: sender.to_string(),
            what: "an undecodable datagram",
        })?;
        if !permitted(sender, &inner) {
            return Err(ControlError::NotPermitted {
                sender: sender.to_string(),
                what: inner.name(),
            });
        }
        Ok((sender, m.inner))
    }
}

/// Whether `sender` may send `msg`: each message comes from one role, and where it names its
/// sender, it names the one that signed it.
pub fn permitted(sender: ServerId, msg: &Message<'_>) -> bool {
    use ServerRole::*;
    match (sender.role, msg) {
        (Tier2, Message::Heartbeat(h)) => h.tier2 == sender.id,
        (Tier2, Message::CommandResult(_)) => true,
        (Tier1, Message::HeartbeatAck(a)) => a.tier1 == sender.id,
        (Tier1, Message::HandoverRequest(h) | Message::HandoverAccept(h)) => h.tier1 == sender.id,
        (Tier1, Message::PeerStatus(s)) => s.tier1 == sender.id,
        // Sent by the tier-2's manager naming its successor.
        (Tier1, Message::ManagerChange(_)) => true,
        (Tier1, Message::ConnectForward(_)) => true,
        (Backend, Message::Command(_)) => true,
        _ => false,
    }
}

/// How a role's control datagrams go out and come in, signed or not.
///
/// With a [`ControlPlane`], outgoing server-to-server datagrams are signed; incoming ones must
/// be signed and verify, and unsigned ones are dropped and counted. Without one (a lab run,
/// `insecure = true`), everything passes as it is.
#[derive(Debug, Default)]
pub struct ControlGate {
    plane: Option<ControlPlane>,
}

/// What [`ControlGate::incoming`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Not server-to-server traffic: for the role to handle as it comes.
    Other(&'a [u8]),
    /// Server-to-server traffic from `sender` (`None`: the plane is off).
    Control {
        sender: Option<ServerId>,
        datagram: &'a [u8],
    },
    /// Refused (and counted).
    Refused,
}

impl ControlGate {
    pub fn new(plane: Option<ControlPlane>) -> Self {
        ControlGate { plane }
    }

    pub fn is_secure(&self) -> bool {
        self.plane.is_some()
    }

    pub fn stats(&self) -> ControlStats {
        self.plane.as_ref().map(|p| p.stats()).unwrap_or_default()
    }

    /// Signs the datagram in `buf` if it is server-to-server and the plane is on.
    pub fn outgoing(&mut self, now: Instant, buf: &mut Vec<u8>) {
        if let Some(plane) = &mut self.plane {
            if wire::is_server_to_server(buf) {
                plane.sign_in_place(now, buf);
            }
        }
    }

    /// Sorts an arriving datagram: signed ones are checked and unwrapped, unsigned
    /// server-to-server ones refused when the plane is on.
    pub fn incoming<'a>(&mut self, now: Instant, from: SocketAddr, data: &'a [u8]) -> Incoming<'a> {
        match &mut self.plane {
            Some(plane) if wire::is_signed(data) => match plane.open(now, from, data) {
                Ok((sender, inner)) => Incoming::Control {
                    sender: Some(sender),
                    datagram: inner,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "control datagram refused");
                    Incoming::Refused
                }
            },
            Some(plane) if wire::is_server_to_server(data) => {
                plane.count_unsigned();
                Incoming::Refused
            }
            None if wire::is_server_to_server(data) => Incoming::Control {
                sender: None,
                datagram: data,
            },
            _ => Incoming::Other(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    const FROM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 7000);
    use crate::cluster::{Tier1, Tier1Config, Tier2, Tier2Config};
    use crate::device::CapturedCheck;
    use crate::machine::Endpoint;
    use crate::proto::wire::{Command, CommandMsg, Heartbeat, ManagerChange};
    use crate::proto::{Receiver, ReceiverConfig};
    use crate::role::{Sink, Tier1Server, Tier2Server};
    use crate::secure::Attempt;

    const T1: ServerId = ServerId {
        role: ServerRole::Tier1,
        id: 1,
    };
    const T2: ServerId = ServerId {
        role: ServerRole::Tier2,
        id: 11,
    };
    const BACKEND: ServerId = ServerId {
        role: ServerRole::Backend,
        id: 1,
    };

    fn key(who: ServerId) -> SigningKey {
        SigningKey::generate(&mut Entropy::seeded(
            u64::from(who.role.code()) << 32 | u64::from(who.id),
        ))
    }

    fn registry() -> ServerRegistry {
        let mut r = ServerRegistry::new();
        for who in [T1, T2, BACKEND] {
            r.insert(who, key(who).public());
        }
        // More tier-2s, for a cluster of several (the amplification test).
        for id in [12, 13] {
            let who = ServerId::new(ServerRole::Tier2, id);
            r.insert(who, key(who).public());
        }
        r
    }

    fn plane(who: ServerId) -> ControlPlane {
        ControlPlane::new(who, key(who), registry(), 1_000_000_000)
    }

    fn encode(m: &Message<'_>) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
    }

    fn heartbeat(tier2: u32) -> Vec<u8> {
        encode(&Message::Heartbeat(Heartbeat {
            tier2,
            epoch: 1,
            sessions: 0,
            capacity: 10,
        }))
    }

    fn signed(by: &mut ControlPlane, now: Instant, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        by.sign(now, inner, &mut out);
        out
    }

    const T: Instant = Instant::from_millis(5_000);

    #[test]
    fn a_signed_datagram_opens_to_its_inner_one_and_names_its_sender() {
        let hb = heartbeat(11);
        let d = signed(&mut plane(T2), T, &hb);
        assert_eq!(d.len(), hb.len() + wire::SIGNED_OVERHEAD);
        // Every byte of a signed datagram decodes and encodes back the same.
        let m = wire::decode(&d).unwrap();
        assert_eq!(encode(&m), d);
        let mut t1 = plane(T1);
        assert_eq!(t1.open(T, FROM, &d), Ok((T2, &hb[..])));
        assert_eq!(t1.stats().accepted, 1);
    }

    #[test]
    fn forged_replayed_stale_unknown_and_out_of_role_datagrams_are_refused_and_counted() {
        let mut t1 = plane(T1);
        let mut t2 = plane(T2);
        let hb = heartbeat(11);
        let good = signed(&mut t2, T, &hb);

        // A stranger's key under the tier-2's name.
        let mut stranger = ControlPlane::new(T2, key(BACKEND), registry(), 1_000_000_000);
        let forged = signed(&mut stranger, T, &hb);
        assert!(matches!(
            t1.open(T, FROM, &forged),
            Err(ControlError::Forged(_))
        ));
        // One bit of the inner datagram changed (CRC fixed up, as an attacker would).
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        let n = flipped.len() - wire::CRC_LEN;
        let crc = crc32c::crc32c(&flipped[..n]).to_be_bytes();
        flipped[n..].copy_from_slice(&crc);
        assert!(matches!(
            t1.open(T, FROM, &flipped),
            Err(ControlError::Forged(_))
        ));
        // Forgeries did not move the window: the real one still opens, once.
        assert!(t1.open(T, FROM, &good).is_ok());
        assert!(matches!(
            t1.open(T, FROM, &good),
            Err(ControlError::Replayed { .. })
        ));
        // A sender the registry does not list.
        let ghost = ServerId::new(ServerRole::Tier2, 99);
        let mut g = ControlPlane::new(ghost, key(ghost), registry(), 1_000_000_000);
        assert!(matches!(
            t1.open(T, FROM, &signed(&mut g, T, &heartbeat(99))),
            Err(ControlError::UnknownSender(_))
        ));
        // A tier-2 may not hand out managers, nor heartbeat for another tier-2.
        let change = encode(&Message::ManagerChange(ManagerChange {
            tier2: 12,
            manager: 1,
            manager_addr: SocketAddr::from(([10, 0, 0, 1], 1)),
            epoch: u64::MAX,
        }));
        assert!(matches!(
            t1.open(T, FROM, &signed(&mut t2, T, &change)),
            Err(ControlError::NotPermitted { .. })
        ));
        assert!(matches!(
            t1.open(T, FROM, &signed(&mut t2, T, &heartbeat(12))),
            Err(ControlError::NotPermitted { .. })
        ));
        // A receiver that restarted (fresh windows) refuses what is older than MAX_AGE.
        let mut restarted = plane(T1);
        let later = T + MAX_AGE + Duration::from_secs(1);
        assert!(matches!(
            restarted.open(later, FROM, &good),
            Err(ControlError::Stale { .. })
        ));
        let s = t1.stats();
        assert_eq!(
            (
                s.accepted,
                s.forged,
                s.replayed,
                s.unknown_sender,
                s.not_permitted
            ),
            (1, 2, 1, 1, 2)
        );
        assert_eq!(restarted.stats().stale, 1);
        assert_eq!(s.refused(), 6);
    }

    #[test]
    fn a_forger_spends_its_own_addresss_signature_checks_not_the_real_servers() {
        let mut t1 = plane(T1);
        let mut stranger = ControlPlane::new(T2, key(BACKEND), registry(), 1_000_000_000);
        let mut t2 = plane(T2);
        // The real tier-2 proves itself once from its address.
        assert!(t1
            .open(T, FROM, &signed(&mut t2, T, &heartbeat(11)))
            .is_ok());
        // Forgers from many ports of one address, then from many addresses: the per-address
        // and then the whole strangers' budget run out, and the rest is refused unchecked.
        let per_address = VERIFICATIONS.address_burst as u64;
        let total = VERIFICATIONS.total_burst as u64;
        for i in 0..per_address + 100 {
            let forger = SocketAddr::from(([10, 6, 6, 6], 1000 + i as u16));
            let d = signed(&mut stranger, T, &heartbeat(11));
            assert!(t1.open(T, forger, &d).is_err());
        }
        for i in 0..total {
            let forger = SocketAddr::from(([10, 7, (i >> 8) as u8, i as u8], 1));
            let d = signed(&mut stranger, T, &heartbeat(11));
            assert!(t1.open(T, forger, &d).is_err());
        }
        let s = t1.stats();
        // Checked: what the strangers' budget allows (the real tier-2's first heartbeat, from
        // a path not known yet, took one check of it).
        assert_eq!(s.forged, total - 1);
        // (One forgery repeats the real heartbeat's counter: refused as a replay, unchecked.)
        assert_eq!(
            s.forged + s.rate_limited + s.replayed,
            per_address + 100 + total,
            "{s:?}"
        );
        // The real tier-2, on its known path, is still heard while the strangers' budget is
        // spent.
        assert!(t1
            .open(T, FROM, &signed(&mut t2, T, &heartbeat(11)))
            .is_ok());
        assert_eq!(t1.stats().accepted, 2);
    }

    #[test]
    fn counters_grow_across_a_restart_and_past_a_burst() {
        let mut a = plane(T2);
        let c = |d: &[u8]| match wire::decode(d) {
            Ok(Message::Signed(m)) => m.counter,
            other => panic!("{other:?}"),
        };
        let first = c(&signed(&mut a, T, &heartbeat(11)));
        let second = c(&signed(&mut a, T, &heartbeat(11)));
        assert!(second > first, "two in the same microsecond still differ");
        // The same server started again later (its clock read anew) picks up above.
        let mut again = ControlPlane::new(T2, key(T2), registry(), 1_000_000_000 + 10);
        assert!(
            c(&signed(
                &mut again,
                Instant::ZERO + Duration::from_secs(5),
                &heartbeat(11)
            )) > second
        );
    }

    #[test]
    fn registry_files_round_trip_and_name_bad_entries() {
        let r = registry();
        assert_eq!(
            ServerRegistry::parse(&r.to_toml(), "servers.toml").unwrap(),
            r
        );
        let e = ServerRegistry::parse(
            "[[server]]\nrole = \"tier1\"\nid = 1\nkey = \"00\"\n",
            "servers.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("server[0] (tier1-1) key"), "{e}");
        let e = ServerRegistry::parse(
            "[[server]]\nrole = \"mayor\"\nid = 1\nkey = \"00\"\n",
            "servers.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("servers.toml"), "{e}");
    }

    fn tier2_server() -> Tier2Server {
        let t1: SocketAddr = ([10, 0, 0, 1], 7000).into();
        let tier2 = Tier2::new(Tier2Config::new(11, vec![t1]), Instant::ZERO);
        let sink = Sink::new(
            Receiver::new(ReceiverConfig::default()),
            Box::new(CapturedCheck),
        );
        Tier2Server::new(tier2, sink).with_control(plane(T2))
    }

    fn sent(e: &mut impl Endpoint, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(to) = e.poll_transmit(now, &mut buf) {
            out.push((to, buf.clone()));
        }
        out
    }

    #[test]
    fn a_secure_tier2_takes_commands_only_signed_by_a_backend_and_signs_what_it_sends() {
        let mut s = tier2_server();
        let backend: SocketAddr = ([10, 0, 0, 9], 9000).into();
        let stranger: SocketAddr = ([10, 6, 6, 6], 1).into();
        let _ = sent(&mut s, T);
        let stop = encode(&Message::Command(CommandMsg {
            id: 1,
            client: 7,
            command: Command::Stop,
        }));
        // Plain from a stranger, and signed by a tier-1 (not a backend): nothing happens.
        s.handle_datagram(T, stranger, &stop);
        let by_tier1 = signed(&mut plane(T1), T, &stop);
        s.handle_datagram(T, stranger, &by_tier1);
        assert!(sent(&mut s, T).is_empty(), "no answer to a stranger");
        let st = s.control_stats();
        assert_eq!((st.unsigned, st.not_permitted), (1, 1));
        // Signed by the backend: taken (no such client here, so a signed failure goes back).
        s.handle_datagram(T, backend, &signed(&mut plane(BACKEND), T, &stop));
        let out = sent(&mut s, T);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, backend);
        let mut desk_side = plane(BACKEND);
        let (who, inner) = desk_side.open(T, FROM, &out[0].1).expect("a signed result");
        assert_eq!(who, T2);
        assert!(matches!(wire::decode(inner), Ok(Message::CommandResult(r)) if !r.ok));
        // Its heartbeats to its manager are signed too.
        s.handle_timeout(T + Duration::from_secs(1));
        let beats = sent(&mut s, T + Duration::from_secs(1));
        assert!(!beats.is_empty() && beats.iter().all(|(_, d)| wire::is_signed(d)));
    }

    #[test]
    fn a_secure_tier1_ignores_unsigned_heartbeats_and_manages_a_signed_one() {
        let me: SocketAddr = ([10, 0, 0, 1], 7000).into();
        let tier1 = Tier1::new(Tier1Config::new(1, me, Vec::new()), Instant::ZERO);
        let mut s = Tier1Server::new(tier1, None).with_control(plane(T1));
        let fake: SocketAddr = ([10, 6, 6, 6], 1).into();
        let real: SocketAddr = ([10, 0, 0, 2], 7000).into();
        // A stranger registering the real tier-2 at its own address.
        s.handle_datagram(T, fake, &heartbeat(11));
        assert_eq!(s.tier1().managed().count(), 0);
        assert!(sent(&mut s, T).is_empty());
        s.handle_datagram(T, real, &signed(&mut plane(T2), T, &heartbeat(11)));
        assert_eq!(s.tier1().managed().collect::<Vec<_>>(), vec![11]);
        let acks = sent(&mut s, T);
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].0, real);
        assert!(plane(T2).open(T, FROM, &acks[0].1).is_ok());
        assert_eq!(s.control_stats().unsigned, 1);
    }

    /// Amplification: what a secure cluster (one tier-1 managing three tier-2s) sends towards
    /// an address nobody verified (a stranger's, or a victim's that the stranger forged as its
    /// source) for one datagram of each kind, against the bytes of that datagram. Fresh
    /// servers for every datagram (the worst case: nothing seen before, so every tier-2 would
    /// answer a replayed hello with an offer); traffic between the cluster's own servers
    /// (forwards, heartbeats) is not an answer and is not counted; everything else is, for a
    /// second after the datagram (offers wait up to 200 ms).
    #[test]
    fn a_secure_cluster_answers_no_unverified_source_with_more_bytes_than_it_sent() {
        use crate::proto::wire::{
            ConnectForward, ConnectReply, ConnectRequest, FrameAck, Handover, KeepAlive, Nack,
            PeerStatus, Sealed, Segment,
        };
        use crate::role::tests::{Host, Net};
        use crate::secure::{DeviceRegistry, DeviceSecurity, Gate, StaticKey};

        use crate::proto::wire::PADDED_REQUEST_LEN;

        let t1: SocketAddr = ([10, 0, 0, 1], 7000).into();
        let t2: SocketAddr = ([10, 0, 0, 2], 7000).into();
        let tier2s = [
            (11u32, t2),
            (12, ([10, 0, 0, 3], 7000).into()),
            (13, ([10, 0, 0, 4], 7000).into()),
        ];
        let victim: SocketAddr = ([10, 6, 6, 6], 5000).into();
        let mut e = Entropy::seeded(40);
        let cluster = StaticKey::generate(&mut e);
        let device = StaticKey::generate(&mut e);
        let mut devices = DeviceRegistry::new();
        devices.insert(7, device.public());
        // A real hello of device 7, as an attacker who recorded it would replay it.
        let mut dev = DeviceSecurity::new(device, cluster.public(), 0, Entropy::seeded(41));
        let (_, hello) = dev.hello(T, Attempt::new(7, 1, 0)).expect("a hello");

        // A fresh secure cluster on the roles' in-process network (`role::tests::Net`): what
        // it sends to an address that is not one of its hosts is counted as leaving it.
        let cluster_up = || {
            let tier1 = Tier1::new(Tier1Config::new(1, t1, Vec::new()), Instant::ZERO);
            let tier1 = Tier1Server::new(tier1, None).with_control(plane(T1));
            let mut hosts = BTreeMap::from([(t1, Host::Tier1(Box::new(tier1)))]);
            for (id, at) in tier2s {
                let tier2 = Tier2::new(Tier2Config::new(id, vec![t1]), Instant::ZERO).with_gate(
                    Gate::new(cluster.clone(), devices.clone(), Entropy::seeded(42)),
                );
                let sink = Sink::new(
                    Receiver::new(ReceiverConfig::default()),
                    Box::new(CapturedCheck),
                );
                let me = ServerId::new(ServerRole::Tier2, id);
                let tier2 = Tier2Server::new(tier2, sink).with_control(plane(me));
                hosts.insert(at, Host::Tier2(Box::new(tier2)));
            }
            Net::with_hosts(hosts)
        };
        let managed = |net: &Net| match net.hosts.get(&t1) {
            Some(Host::Tier1(s)) => s.tier1().managed().count(),
            _ => 0,
        };

        let payload = [0x5a; 1000];
        let garbage = [0xa5; 112];
        let replayed = ConnectRequest {
            client: 7,
            attempt: 1,
            boot_seq: 0,
            hello: &hello,
            padding: 0,
        };
        // As the client sent it: padded (see `cluster::Connector`).
        let padded = ConnectRequest {
            padding: (PADDED_REQUEST_LEN - Message::ConnectRequest(replayed).encoded_len()) as u16,
            ..replayed
        };
        let samples: Vec<(&str, SocketAddr, Message<'_>)> = vec![
            (
                "connect_request (a replayed real hello)",
                t1,
                Message::ConnectRequest(padded),
            ),
            (
                "connect_request (that hello, padding cut)",
                t1,
                Message::ConnectRequest(replayed),
            ),
            (
                "connect_request (a forged hello)",
                t1,
                Message::ConnectRequest(ConnectRequest {
                    client: 7,
                    attempt: 2,
                    boot_seq: 0,
                    hello: &garbage,
                    padding: 0,
                }),
            ),
            (
                "connect_request (no hello)",
                t1,
                Message::ConnectRequest(ConnectRequest {
                    client: 7,
                    attempt: 3,
                    boot_seq: 0,
                    hello: &[],
                    padding: 0,
                }),
            ),
            (
                "connect_forward (unsigned)",
                t2,
                Message::ConnectForward(ConnectForward {
                    client: 7,
                    attempt: 1,
                    boot_seq: 0,
                    client_addr: victim,
                    hello: &hello,
                }),
            ),
            (
                "connect_accept",
                t2,
                Message::ConnectAccept(ConnectReply {
                    client: 7,
                    attempt: 1,
                    tier2: 11,
                }),
            ),
            (
                "connect_release",
                t2,
                Message::ConnectRelease(ConnectReply {
                    client: 7,
                    attempt: 1,
                    tier2: 11,
                }),
            ),
            (
                "heartbeat (unsigned)",
                t1,
                Message::Heartbeat(Heartbeat {
                    tier2: 12,
                    epoch: 1,
                    sessions: 0,
                    capacity: 10,
                }),
            ),
            (
                "peer_status (unsigned)",
                t1,
                Message::PeerStatus(PeerStatus {
                    tier1: 2,
                    tier2s: 1,
                    sessions: 0,
                    capacity: 10,
                    draining: false,
                }),
            ),
            (
                "handover_request (unsigned)",
                t1,
                Message::HandoverRequest(Handover {
                    tier1: 2,
                    tier2: 12,
                    tier2_addr: victim,
                    epoch: 9,
                }),
            ),
            (
                "manager_change (unsigned)",
                t2,
                Message::ManagerChange(ManagerChange {
                    tier2: 11,
                    manager: 2,
                    manager_addr: victim,
                    epoch: u64::MAX,
                }),
            ),
            (
                "command (unsigned)",
                t2,
                Message::Command(CommandMsg {
                    id: 1,
                    client: 7,
                    command: Command::Snapshot,
                }),
            ),
            ("tier1_list", t1, Message::Tier1List(vec![victim; 8])),
            (
                "keepalive (plain)",
                t2,
                Message::KeepAlive(KeepAlive { session: 7, seq: 1 }),
            ),
            (
                "segment (plain)",
                t2,
                Message::Segment(Segment {
                    session: 7,
                    frame: 1,
                    index: 0,
                    count: 2,
                    offset: 0,
                    frame_len: 2000,
                    payload: &payload,
                    repair: false,
                }),
            ),
            (
                "nack (plain)",
                t2,
                Message::Nack(Nack {
                    session: 7,
                    frame: 1,
                    next_segment_size: 0,
                    next_parity: 0,
                    missing: vec![0, 1, 2],
                }),
            ),
            (
                "frame_ack (plain)",
                t2,
                Message::FrameAck(FrameAck {
                    session: 7,
                    frame: 1,
                    next_segment_size: 1200,
                    next_parity: 0,
                }),
            ),
            (
                "sealed (a stranger's bytes)",
                t2,
                Message::Sealed(Sealed {
                    session: 7,
                    nonce: 1,
                    body: &payload,
                }),
            ),
        ];
        let mut answered = BTreeMap::new();
        for (name, to, msg) in samples {
            let mut net = cluster_up();
            // The tier-2s register with their tier-1 first (signed heartbeats).
            net.run_until(T);
            assert_eq!(net.outside_bytes, 0, "nothing leaves the cluster unasked");
            assert_eq!(managed(&net), tier2s.len(), "the tier-2s are managed");
            let d = {
                let mut b = Vec::new();
                msg.encode(&mut b);
                b
            };
            net.send(victim, to, d.clone());
            net.run_until(T + Duration::from_secs(1));
            let out = net.outside_bytes;
            eprintln!(
                "{name:<40} in {:>5} B  out {out:>5} B  ratio {:.2}",
                d.len(),
                out as f64 / d.len() as f64
            );
            assert!(out <= d.len(), "{name}: {out} bytes out for {} in", d.len());
            answered.insert(name, out);
        }
        // The measurement saw the answers it bounds: the padded hello draws an offer from
        // every tier-2 (three; the padding pays for a dozen) and the tier-1 list; cut to its
        // unpadded size, one offer at most.
        let offer = crate::secure::handshake::offer_len();
        let full = answered["connect_request (a replayed real hello)"];
        assert!(full > 3 * offer, "{answered:?}");
        let cut = answered["connect_request (that hello, padding cut)"];
        assert!((offer..2 * offer).contains(&cut), "{answered:?}");
    }

    /// The tier-1 list a secure client trusts comes sealed from its tier-2: it learns a
    /// tier-1 that only the tier-2 knows of, and nothing from the plain answers.
    #[test]
    fn a_secure_client_learns_its_tier2s_tier1s_sealed_in_the_session() {
        use crate::cluster::{ClientConfig, Connector};
        use crate::proto::{Sender, SenderConfig};
        use crate::role::tests::{Host, Net};
        use crate::role::{Camera, CameraConfig, FrameContent, Mobile, MobileConfig};
        use crate::secure::{DeviceRegistry, DeviceSecurity, Gate, StaticKey};

        let t1: SocketAddr = ([10, 0, 0, 1], 7000).into();
        let t2: SocketAddr = ([10, 0, 0, 2], 7000).into();
        // A second tier-1 that only the tier-2's configuration names (not running).
        let other: SocketAddr = ([10, 0, 0, 9], 7000).into();
        let car: SocketAddr = ([10, 0, 0, 50], 7000).into();
        let mut e = Entropy::seeded(50);
        let cluster = StaticKey::generate(&mut e);
        let device = StaticKey::generate(&mut e);
        let mut devices = DeviceRegistry::new();
        devices.insert(7, device.public());

        let tier1 = Tier1::new(Tier1Config::new(1, t1, Vec::new()), Instant::ZERO);
        let tier1 = Tier1Server::new(tier1, None).with_control(plane(T1));
        let tier2 = Tier2::new(Tier2Config::new(11, vec![t1, other]), Instant::ZERO)
            .with_gate(Gate::new(cluster.clone(), devices, Entropy::seeded(51)));
        let sink = Sink::new(
            Receiver::new(ReceiverConfig::default()),
            Box::new(FrameContent { seed: 1 }),
        );
        let tier2 = Tier2Server::new(tier2, sink).with_control(plane(T2));
        let camera = Camera::new(
            CameraConfig {
                fps: 10.0,
                frames: u64::MAX,
                frame_bytes: 3000,
                start_at: Instant::ZERO + Duration::from_secs(1),
            },
            Sender::new(SenderConfig::new(7, t2)),
            Box::new(FrameContent { seed: 1 }),
        );
        let dev = DeviceSecurity::new(device, cluster.public(), 0, Entropy::seeded(52));
        let connector = Connector::new(ClientConfig::new(7, vec![t1])).with_security(dev);
        let mobile = Mobile::new(MobileConfig::default(), connector, camera);
        let mut net = Net::with_hosts(BTreeMap::from([
            (t1, Host::Tier1(Box::new(tier1))),
            (t2, Host::Tier2(Box::new(tier2))),
            (car, Host::Mobile(Box::new(mobile))),
        ]));
        net.run_until(Instant::ZERO + Duration::from_secs(3));
        let Some(Host::Mobile(m)) = net.hosts.get(&car) else {
            unreachable!("the mobile is a host")
        };
        assert_eq!(m.connector().connected(), Some((11, t2)));
        assert_eq!(m.connector().tier1s(), &[t1, other]);
        assert!(m.camera().report().frames_sent >= 10);
    }
}
