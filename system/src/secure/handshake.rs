//! The Noise `IK` handshake, carried by the cluster's connection messages.
//!
//! ```text
//! client --CONNECT_REQUEST{hello}--> tier-1 --CONNECT_FORWARD{hello}--> each tier-2
//!    hello = Noise IK message 1: e, es, s, ss, payload(client, attempt, timestamp)
//! tier-2: Gate::admit: known device? budget of the source address? its registered key?
//!         newer timestamp? -> reservation
//! client <--CONNECT_OFFER{reply}-- tier-2
//!    reply = Noise IK message 2: e, ee, se, payload(tier2, attempt)
//! client: the first offer whose reply verifies wins; both sides hold a Channel.
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use snow::{Builder, HandshakeState};

use super::budget::{AddressBudget, Limits};
use super::{noise_err, params, Channel, DeviceRegistry, Entropy, PublicKey, SecureError};
use super::{StaticKey, PROLOGUE};
use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::wire::{WireError, MAX_HANDSHAKE_LEN};
use crate::time::Instant;

const HELLO_PAYLOAD_LEN: usize = 24;
const REPLY_PAYLOAD_LEN: usize = 8;
/// Bytes of the gate's answer to a hello (Noise IK's second message: an ephemeral key, then
/// the payload and its tag). What a tier-2's offer carries, so a tier-1 knows what the
/// offers its forwards draw will cost the request's source.
pub const REPLY_LEN: usize = 32 + REPLY_PAYLOAD_LEN + 16;

/// Wire bytes of a tier-2's offer carrying the gate's reply: what each tier-2 a secure tier-1
/// forwards a request to sends the request's (unverified) source.
pub fn offer_len() -> usize {
    use crate::proto::wire::{ConnectOffer, Message};
    Message::ConnectOffer(ConnectOffer {
        client: 0,
        attempt: 0,
        tier2: 0,
        load: 0,
        reply: &[0; REPLY_LEN],
    })
    .encoded_len()
}

/// What a hello claims, sealed into its payload: the device, which connection attempt, and
/// the capture sequence number its frames on the new session continue from (so a tier-1 or
/// anyone on the path cannot make the tier-2 file them under another identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub client: u32,
    pub attempt: u32,
    pub boot_seq: u64,
}

impl Attempt {
    pub fn new(client: u32, attempt: u32, boot_seq: u64) -> Self {
        Attempt {
            client,
            attempt,
            boot_seq,
        }
    }

    /// The hello's payload: client, attempt, timestamp, boot sequence number.
    fn payload(&self, timestamp: u64) -> Vec<u8> {
        let mut p = Vec::with_capacity(HELLO_PAYLOAD_LEN);
        p.put_u32(self.client);
        p.put_u32(self.attempt);
        p.put_u64(timestamp);
        p.put_u64(self.boot_seq);
        p
    }

    /// Reads a hello's payload back: the attempt it claims and its timestamp.
    fn read_payload(payload: &[u8]) -> Result<(Attempt, u64), WireError> {
        let mut r = Reader::new(payload);
        let client = r.u32()?;
        let attempt = r.u32()?;
        let timestamp = r.u64()?;
        let boot_seq = r.u64()?;
        r.finish()?;
        Ok((Attempt::new(client, attempt, boot_seq), timestamp))
    }
}

/// The reply's payload: the tier-2 that answers and the attempt it answers.
fn reply_payload(tier2: u32, attempt: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(REPLY_PAYLOAD_LEN);
    p.put_u32(tier2);
    p.put_u32(attempt);
    p
}

/// A device's side: its key pair and the cluster's public key.
#[derive(Debug)]
pub struct DeviceSecurity {
    key: StaticKey,
    cluster: PublicKey,
    /// Microseconds since the Unix epoch at `Instant::ZERO` (zero in simulations): handshake
    /// timestamps keep growing across restarts of a real device.
    epoch_us: u64,
    last_timestamp: u64,
    entropy: Entropy,
}

impl DeviceSecurity {
    pub fn new(key: StaticKey, cluster: PublicKey, epoch_us: u64, entropy: Entropy) -> Self {
        DeviceSecurity {
            key,
            cluster,
            epoch_us,
            last_timestamp: 0,
            entropy,
        }
    }

    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// Starts a handshake for connection attempt `at`: the hello for the request and the
    /// state that reads the answer.
    pub fn hello(
        &mut self,
        now: Instant,
        at: Attempt,
    ) -> Result<(Initiator, Vec<u8>), SecureError> {
        let timestamp = self
            .epoch_us
            .saturating_add(now.as_micros())
            .max(self.last_timestamp.saturating_add(1));
        self.last_timestamp = timestamp;
        let mut hs = Builder::with_resolver(params(), self.entropy.resolver())
            .local_private_key(self.key.private())
            .and_then(|b| b.remote_public_key(&self.cluster.0))
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
            .map_err(noise_err)?;
        let payload = at.payload(timestamp);
        let mut out = vec![0u8; MAX_HANDSHAKE_LEN];
        let n = hs.write_message(&payload, &mut out).map_err(noise_err)?;
        out.truncate(n);
        Ok((
            Initiator {
                hs: Box::new(hs),
                client: at.client,
                attempt: at.attempt,
            },
            out,
        ))
    }
}

/// A client's handshake in progress, waiting for an offer's reply.
pub struct Initiator {
    hs: Box<HandshakeState>,
    client: u32,
    attempt: u32,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("client", &self.client)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Initiator {
    /// Reads the reply of tier-2 `tier2`'s offer. On success the handshake is done and the
    /// session's channel is returned. On failure the error comes back with the handshake if it
    /// can still read another offer (a forged or damaged reply leaves it unchanged), or `None`
    /// if this attempt is spent.
    pub fn finish(
        mut self,
        tier2: u32,
        reply: &[u8],
    ) -> Result<Channel, (Option<Self>, SecureError)> {
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let n = match self.hs.read_message(reply, &mut payload) {
            Ok(n) => n,
            Err(e) => return Err((Some(self), noise_err(e))),
        };
        if payload.get(..n) != Some(&reply_payload(tier2, self.attempt)[..]) {
            // The reply verified, so the handshake moved on: this attempt is spent.
            return Err((None, SecureError::Mismatch));
        }
        let client = self.client;
        (*self.hs)
            .into_stateless_transport_mode()
            .map(|t| Channel::new(client, t))
            .map_err(|e| (None, noise_err(e)))
    }
}

/// What a tier-2's gate did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GateStats {
    pub admitted: u64,
    pub unknown_device: u64,
    pub failed: u64,
    pub replayed: u64,
    /// Refused unread: the source address, or the gate as a whole, is out of handshakes.
    pub rate_limited: u64,
}

/// Handshakes one source address may make the gate read: a burst, then a rate. A fleet behind
/// one carrier NAT shares an address, so this is far above what one device needs.
pub const ADDRESS_BURST: f64 = 200.0;
pub const ADDRESS_PER_SECOND: f64 = 100.0;
/// Handshakes the gate reads in all (each costs three Diffie-Hellman operations, about 0.1 ms):
/// a fifth of a core at most, whatever the number of source addresses.
pub const GATE_BURST: f64 = 500.0;
pub const GATE_PER_SECOND: f64 = 2000.0;
pub use super::budget::MAX_ADDRESSES;

/// The gate's handshake budget: per source address and in all.
const HANDSHAKES: Limits = Limits {
    address_burst: ADDRESS_BURST,
    address_per_second: ADDRESS_PER_SECOND,
    total_burst: GATE_BURST,
    total_per_second: GATE_PER_SECOND,
};

/// A tier-2's side: the cluster key pair and the devices it admits.
///
/// What a hello costs whom: an unknown device id costs a map lookup; anything else costs the
/// gate three Diffie-Hellman operations, so it is charged to the source address's budget and
/// to the gate's before it is read. Nothing about a device changes until its hello has
/// verified: a forged hello for a real device id is refused without touching that device's
/// state, so forgers cannot lock it out (they spend their own address's budget instead).
#[derive(Debug)]
pub struct Gate {
    key: StaticKey,
    devices: DeviceRegistry,
    /// Per device: the newest verified handshake timestamp, and when it was admitted.
    seen: BTreeMap<u32, (u64, Instant)>,
    /// Handshakes read, per source address and in all.
    budget: AddressBudget,
    entropy: Entropy,
    stats: GateStats,
}

/// A device is admitted this often at most (a verified hello sooner after the last is refused
/// as a retry storm; forged ones never count).
pub const HANDSHAKE_INTERVAL: Duration = Duration::from_millis(20);

impl Gate {
    pub fn new(key: StaticKey, devices: DeviceRegistry, entropy: Entropy) -> Self {
        Gate {
            key,
            devices,
            seen: BTreeMap::new(),
            budget: AddressBudget::new(HANDSHAKES),
            entropy,
            stats: GateStats::default(),
        }
    }

    pub fn stats(&self) -> GateStats {
        self.stats
    }

    /// The cluster's public key (what devices are configured with).
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    pub fn devices(&self) -> &DeviceRegistry {
        &self.devices
    }

    /// Source addresses holding a handshake budget (bounded by [`MAX_ADDRESSES`]).
    pub fn addresses_tracked(&self) -> usize {
        self.budget.addresses_tracked()
    }

    /// Checks a forwarded hello claiming `at`, coming from `from`, and answers it for tier-2
    /// `tier2`: the reply for the offer and the session's channel, or why it is refused.
    pub fn admit(
        &mut self,
        now: Instant,
        from: IpAddr,
        at: Attempt,
        tier2: u32,
        hello: &[u8],
    ) -> Result<(Vec<u8>, Channel), SecureError> {
        let r = self.admit_inner(now, from, at, tier2, hello);
        let s = &mut self.stats;
        match &r {
            Ok(_) => s.admitted += 1,
            Err(SecureError::UnknownDevice(_)) => s.unknown_device += 1,
            Err(SecureError::ReplayedHello(_)) => s.replayed += 1,
            Err(SecureError::RateLimited(_)) => s.rate_limited += 1,
            Err(_) => s.failed += 1,
        }
        r
    }

    fn admit_inner(
        &mut self,
        now: Instant,
        from: IpAddr,
        at: Attempt,
        tier2: u32,
        hello: &[u8],
    ) -> Result<(Vec<u8>, Channel), SecureError> {
        let Attempt {
            client, attempt, ..
        } = at;
        let Some(registered) = self.devices.get(client).copied() else {
            return Err(SecureError::UnknownDevice(client));
        };
        if !self.budget.charge(now, from) {
            return Err(SecureError::RateLimited(client));
        }
        let mut hs = Builder::with_resolver(params(), self.entropy.resolver())
            .local_private_key(self.key.private())
            .and_then(|b| b.prologue(super::PROLOGUE))
            .and_then(|b| b.build_responder())
            .map_err(noise_err)?;
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let n = hs.read_message(hello, &mut payload).map_err(noise_err)?;
        if hs.get_remote_static() != Some(&registered.0[..]) {
            return Err(SecureError::WrongKey(client));
        }
        // The payload must claim what the (unsealed) forward says, timestamp aside.
        let (claimed, timestamp) = payload
            .get(..n)
            .and_then(|p| Attempt::read_payload(p).ok())
            .ok_or(SecureError::Mismatch)?;
        if claimed != at {
            return Err(SecureError::Mismatch);
        }
        // Verified: from here on the hello is the device's own (or a replay of one).
        let (newest, admitted_at) = self.seen.get(&client).copied().unwrap_or_default();
        if timestamp <= newest {
            return Err(SecureError::ReplayedHello(client));
        }
        if newest != 0 && now.saturating_duration_since(admitted_at) < HANDSHAKE_INTERVAL {
            return Err(SecureError::RateLimited(client));
        }
        self.seen.insert(client, (timestamp, now));
        let mut reply = vec![0u8; MAX_HANDSHAKE_LEN];
        let n = hs
            .write_message(&reply_payload(tier2, attempt), &mut reply)
            .map_err(noise_err)?;
        reply.truncate(n);
        let transport = hs.into_stateless_transport_mode().map_err(noise_err)?;
        Ok((reply, Channel::new(client, transport)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The payloads' layouts, byte for byte (a peer of another build must read them).
    #[test]
    fn golden_payloads() {
        let at = Attempt::new(0x0102_0304, 5, 0x0a0b_0c0d_0e0f_1011);
        let p = at.payload(0x1122_3344_5566_7788);
        assert_eq!(
            hex(&p),
            "01020304000000051122334455667788".to_owned() + "0a0b0c0d0e0f1011"
        );
        assert_eq!(Attempt::read_payload(&p), Ok((at, 0x1122_3344_5566_7788)));
        assert!(Attempt::read_payload(&p[..23]).is_err());
        assert!(Attempt::read_payload(&[&p[..], &[0]].concat()).is_err());
        assert_eq!(hex(&reply_payload(0x0a0b_0c0d, 7)), "0a0b0c0d00000007");
    }
}
