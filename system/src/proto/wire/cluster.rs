//! The cluster's control datagrams (types `0x10..=0x1b`, and `0x09`): connection set-up
//! (request, forward, offer, accept, release), heartbeats and their answers, hand-overs,
//! manager changes, peer status and the tier-1 lists. Each message's body layout is written
//! once, its encoder beside its decoder; [`super::Message`] adds the preamble and CRC.

use std::net::SocketAddr;

use super::codec::{Reader, Writer};
use super::WireError;

/// Longest Noise handshake message a connection request or offer carries.
pub const MAX_HANDSHAKE_LEN: usize = 512;
/// What a client with keys pads its connection request to (see [`ConnectRequest::padding`]):
/// room for the tier-1's answer and a dozen offers, and within any path's MTU.
pub const PADDED_REQUEST_LEN: usize = 1200;
/// Most addresses one tier-1 list carries.
pub const MAX_TIER1_LIST: usize = 64;

/// A handshake message: a 16-bit length and the bytes.
mod handshake {
    use super::super::codec::{Reader, Writer};
    use super::{WireError, MAX_HANDSHAKE_LEN};

    /// Cut at [`MAX_HANDSHAKE_LEN`] bytes; callers never make longer ones.
    pub(super) fn write(msg: &[u8], buf: &mut Vec<u8>) {
        let msg = msg.get(..MAX_HANDSHAKE_LEN).unwrap_or(msg);
        buf.put_u16(msg.len() as u16);
        buf.put_bytes(msg);
    }

    pub(super) fn read<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
        let n = usize::from(r.u16()?);
        if n > MAX_HANDSHAKE_LEN {
            return Err(WireError::Invalid("handshake message too long"));
        }
        r.take(n)
    }
}

/// A tier-1 list: a count and the addresses (cut at [`MAX_TIER1_LIST`]).
pub(super) fn put_tier1_list(buf: &mut Vec<u8>, addrs: &[SocketAddr]) {
    let n = addrs.len().min(MAX_TIER1_LIST);
    buf.put_u8(n as u8);
    for a in addrs.iter().take(n) {
        buf.put_addr(a);
    }
}

/// A tier-1 list: a count (1 to [`MAX_TIER1_LIST`]) and the addresses.
pub(super) fn get_tier1_list(r: &mut Reader<'_>) -> Result<Vec<SocketAddr>, WireError> {
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_TIER1_LIST {
        return Err(WireError::Invalid("tier-1 list length out of range"));
    }
    (0..n).map(|_| r.addr()).collect()
}

/// Client -> tier-1: a request for a communication interface (claim 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest<'a> {
    /// The requesting mobile client; also its session id once connected.
    pub client: u32,
    /// Which attempt this is, so late answers to an old attempt can be told apart.
    pub attempt: u32,
    /// The capture sequence number (the 64-bit frame identity) of frame 0 of the client's
    /// boot: live frame id `n` of the session is frame `boot_seq + n` (see
    /// [`crate::role::durable`]). Sealed into the hello when the cluster has keys.
    pub boot_seq: u64,
    /// The first Noise handshake message, which proves the device's key (empty on a cluster
    /// run without keys); at most [`MAX_HANDSHAKE_LEN`] bytes.
    pub hello: &'a [u8],
    /// Zero bytes after the hello. A client with keys pads its request to
    /// [`PADDED_REQUEST_LEN`] bytes: a secure tier-1 answers the request's unverified source
    /// (it may be a victim's forged address) with at most as many bytes as the request had,
    /// offers of the tier-2s it asks included, so padding buys a fan-out to several tier-2s
    /// (QUIC pads its Initial to 1200 bytes for the same reason).
    pub padding: u16,
}

impl<'a> ConnectRequest<'a> {
    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.client);
        buf.put_u32(self.attempt);
        buf.put_u64(self.boot_seq);
        handshake::write(self.hello, buf);
        buf.put_u16(self.padding);
        buf.resize(buf.len() + usize::from(self.padding), 0);
    }

    pub(super) fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(ConnectRequest {
            client: r.u32()?,
            attempt: r.u32()?,
            boot_seq: r.u64()?,
            hello: handshake::read(r)?,
            // Zeros: only their number counts (and one encoding per message).
            padding: {
                let n = r.u16()?;
                if r.take(usize::from(n))?.iter().any(|&b| b != 0) {
                    return Err(WireError::Invalid("padding not zero"));
                }
                n
            },
        })
    }
}

fields_body! {
    /// Tier-1 -> tier-2: a client's request, with the client's address (claim 15).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ConnectForward<'a> {
        pub client: u32,
        pub attempt: u32,
        /// Copied from the request.
        pub boot_seq: u64,
        pub client_addr: SocketAddr,
        /// The client's handshake message, passed on unread.
        pub hello: &'a [u8] => handshake,
    }
}

fields_body! {
    /// Tier-2 -> client: an offer, sent later the more loaded the tier-2 is (claim 17).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ConnectOffer<'a> {
        pub client: u32,
        pub attempt: u32,
        pub tier2: u32,
        pub load: u32,
        /// The tier-2's answer to the client's handshake message (empty without keys).
        pub reply: &'a [u8] => handshake,
    }
}

fields_body! {
    /// Client -> tier-2: accept (`CONNECT_ACCEPT`) or release (`CONNECT_RELEASE`) an offer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ConnectReply {
        pub client: u32,
        pub attempt: u32,
        pub tier2: u32,
    }
}

fields_body! {
    /// Tier-2 -> manager: alive, with load. `epoch` counts the tier-2's manager changes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Heartbeat {
        pub tier2: u32,
        pub epoch: u64,
        pub sessions: u32,
        pub capacity: u32,
    }
}

fields_body! {
    /// Tier-1 -> tier-2: heard you.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct HeartbeatAck {
        pub tier1: u32,
        pub tier2: u32,
        pub epoch: u64,
    }
}

fields_body! {
    /// Tier-1 -> peer: take over this tier-2 (`HANDOVER_REQUEST`), or: taken (`HANDOVER_ACCEPT`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Handover {
        pub tier1: u32,
        pub tier2: u32,
        pub tier2_addr: SocketAddr,
        pub epoch: u64,
    }
}

fields_body! {
    /// Tier-1 -> tier-2: your manager is `manager` at `manager_addr` from `epoch` on.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ManagerChange {
        pub tier2: u32,
        pub manager: u32,
        pub manager_addr: SocketAddr,
        pub epoch: u64,
    }
}

/// Tier-1 -> peer: my group and its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub tier1: u32,
    pub tier2s: u32,
    pub sessions: u32,
    pub capacity: u32,
    pub draining: bool,
}

impl PeerStatus {
    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.tier1);
        buf.put_u32(self.tier2s);
        buf.put_u32(self.sessions);
        buf.put_u32(self.capacity);
        buf.put_flag(self.draining);
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PeerStatus {
            tier1: r.u32()?,
            tier2s: r.u32()?,
            sessions: r.u32()?,
            capacity: r.u32()?,
            draining: r.flag("draining flag is not 0 or 1")?,
        })
    }
}

/// Tier-2 -> client, sent once a session is set up: the tier-1 servers the tier-2 knows, its
/// manager first. Who may send it: the session's tier-2 only. It travels sealed with the
/// session's keys, which only a holder of the cluster key could agree, so unlike the plain
/// [`super::Message::Tier1List`] (whose source a client cannot verify) it may add tier-1s to
/// the client's list, and with them the addresses a `SwitchTier1` command may name. Never sent
/// without keys (a client then takes the plain list, as in the seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTier1s {
    pub session: u32,
    /// 1 to [`MAX_TIER1_LIST`] addresses.
    pub tier1s: Vec<SocketAddr>,
}

impl SessionTier1s {
    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.session);
        put_tier1_list(buf, &self.tier1s);
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SessionTier1s {
            session: r.u32()?,
            tier1s: get_tier1_list(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::proto::wire::{decode, Message, WireError, CRC_LEN};

    #[test]
    fn a_connect_requests_padding_is_zeros_or_refused() {
        let m = Message::ConnectRequest(ConnectRequest {
            client: 1,
            attempt: 1,
            boot_seq: 5,
            hello: &[1, 2, 3],
            padding: 10,
        });
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(decode(&buf), Ok(m.clone()));
        // A padding byte set, under a valid checksum: one message has one encoding.
        let end = buf.len() - CRC_LEN;
        buf.truncate(end);
        buf[end - 1] = 1;
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&buf), Err(WireError::Invalid("padding not zero")));
    }

    proptest! {
        #[test]
        fn cluster_messages_round_trip(
            which in 0u8..13,
            a in any::<u32>(),
            b in any::<u32>(),
            c in any::<u32>(),
            e in any::<u64>(),
            ip in any::<[u8; 4]>(),
            ip6 in any::<[u8; 16]>(),
            port in any::<u16>(),
            v6 in any::<bool>(),
            n in 1usize..10,
            hello in proptest::collection::vec(any::<u8>(), 0..MAX_HANDSHAKE_LEN),
        ) {
            let addr = if v6 {
                SocketAddr::new(IpAddr::from(ip6), port)
            } else {
                SocketAddr::new(IpAddr::from(ip), port)
            };
            let msg = match which {
                0 => Message::ConnectRequest(ConnectRequest { client: a, attempt: b, boot_seq: u64::from(a) << 33, hello: &hello, padding: (b % 1500) as u16 }),
                1 => Message::ConnectForward(ConnectForward { client: a, attempt: b, boot_seq: u64::MAX, client_addr: addr, hello: &hello }),
                2 => Message::ConnectOffer(ConnectOffer { client: a, attempt: b, tier2: c, load: a ^ b, reply: &hello }),
                3 => Message::ConnectAccept(ConnectReply { client: a, attempt: b, tier2: c }),
                4 => Message::ConnectRelease(ConnectReply { client: a, attempt: b, tier2: c }),
                5 => Message::Heartbeat(Heartbeat { tier2: a, epoch: e, sessions: b, capacity: c }),
                6 => Message::HeartbeatAck(HeartbeatAck { tier1: a, tier2: b, epoch: e }),
                7 => Message::HandoverRequest(Handover { tier1: a, tier2: b, tier2_addr: addr, epoch: e }),
                8 => Message::HandoverAccept(Handover { tier1: a, tier2: b, tier2_addr: addr, epoch: e }),
                9 => Message::ManagerChange(ManagerChange { tier2: a, manager: b, manager_addr: addr, epoch: e }),
                10 => Message::Tier1List(vec![addr; n]),
                11 => Message::SessionTier1s(SessionTier1s { session: a, tier1s: vec![addr; n] }),
                _ => Message::PeerStatus(PeerStatus { tier1: a, tier2s: b, sessions: c, capacity: a, draining: v6 }),
            };
            let mut buf = Vec::new();
            msg.encode(&mut buf);
            prop_assert_eq!(decode(&buf), Ok(msg));
        }

    }
}
