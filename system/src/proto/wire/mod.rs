//! The wire format: every livecam datagram, encoded and decoded in this one place.
//!
//! Every datagram starts with a 4-byte preamble and ends with a CRC-32C of everything before it:
//!
//! ```text
//! 0      2         3      4                              len-4    len
//! +------+---------+------+------------------------------+--------+
//! | "LC" | version | type | type-specific body           | CRC32C |
//! +------+---------+------+------------------------------+--------+
//! ```
//!
//! All integers are big-endian. Types `0x01..=0x0f` belong to the segment protocol (segment,
//! NACK, frame ACK, STORED, and `0x08`: a session datagram sealed with the session's Noise
//! keys, whose body is the encrypted inner datagram and its AEAD tag); `0x10..=0x2f` to the cluster's control messages (connection set-up,
//! heartbeats, hand-over; `0x10..=0x1b` in use); `0x30..=0x3f` to the backend's (commands to
//! mobile clients and their results; `0x30..=0x31` in use).
//! Addresses travel as a family byte (4 or 6), the address, and the port; handshake messages
//! as a 16-bit length and the bytes. A decoder that meets a type it does not know rejects it with
//! [`WireError::UnknownType`], so old peers fail loudly rather than misread.
//!
//! Decoding never panics, whatever the bytes: every field is bounds-checked and every
//! inconsistency is a typed [`WireError`].
//!
//! The module holds the preamble, the CRC, the type codes ([`kind`]), [`WireError`] and the
//! [`Message`] enum with its encoder and decoder, which dispatch on the type byte to the
//! families' body layouts:
//!
//! - [`codec`]: the one checked [`Reader`] and [`codec::Writer`] every
//!   layout here (and the workspace's other binary formats) is read and written with;
//! - `segments`: segment, parity, NACK, frame ACK, keep-alive and STORED;
//! - `cluster`: connection set-up, heartbeats, hand-overs, manager changes, peer status and
//!   tier-1 lists;
//! - `commands`: backend commands and their results;
//! - `secured`: the sealed and signed datagrams that carry another datagram.
//!
//! Every family's types are re-exported here, so `wire::Segment`, `wire::Heartbeat`, ... name
//! them. In each family a message's encoder and decoder sit side by side, so each layout is
//! written once; a message whose body is just its fields in order is declared with
//! `fields_body!`, and its struct is its layout.

use std::net::SocketAddr;

use thiserror::Error;

/// Declares a message whose body is its fields in wire order, with its `encode_body` and
/// `decode_body`: the struct is the layout, written once. Each field is a [`codec::Field`], or
/// names after `=>` the module whose `write` and `read` carry it (`handshake`).
macro_rules! fields_body {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty $(=> $with:ident)?,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name $(<$lt>)? {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl<'r $(: $lt, $lt)?> $name $(<$lt>)? {
            pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
                $(fields_body!(@write self, buf, $field $(, $with)?);)*
            }

            pub(super) fn decode_body(
                r: &mut $crate::proto::wire::codec::Reader<'r>,
            ) -> Result<Self, $crate::proto::wire::WireError> {
                // Struct fields are evaluated in the order written: the wire order.
                Ok($name {
                    $($field: fields_body!(@read r $(, $with)?),)*
                })
            }
        }
    };
    (@write $self:ident, $buf:ident, $field:ident) => {
        $crate::proto::wire::codec::Field::write(&$self.$field, $buf)
    };
    (@write $self:ident, $buf:ident, $field:ident, $with:ident) => {
        $with::write(&$self.$field, $buf)
    };
    (@read $r:ident) => {
        $crate::proto::wire::codec::Field::read($r)?
    };
    (@read $r:ident, $with:ident) => {
        $with::read($r)?
    };
}

mod cluster;
pub mod codec;
mod commands;
mod secured;
mod segments;

pub use cluster::{
    ConnectForward, ConnectOffer, ConnectReply, ConnectRequest, Handover, Heartbeat, HeartbeatAck,
    ManagerChange, PeerStatus, SessionTier1s, MAX_HANDSHAKE_LEN, MAX_TIER1_LIST,
    PADDED_REQUEST_LEN,
};
use codec::{Reader, Writer};
pub use commands::{Command, CommandMsg, CommandResult, MAX_REASON_LEN};
pub use secured::{
    finish_signed, put_sealed, put_signed_head, signed_part, Sealed, Signed, AEAD_TAG_LEN,
    SEALED_OVERHEAD, SIGNATURE_LEN, SIGNED_OVERHEAD,
};
pub use segments::{
    FrameAck, KeepAlive, Nack, Parity, PathMark, PathProbe, PathReport, Segment, Stored,
    MAX_NACK_INDICES, MAX_SEGMENT_PAYLOAD, MAX_SHARDS, MAX_STORED_FRAMES, PARITY_OVERHEAD,
    PATH_PROBE_LEN, PATH_REPORT_LEN, SEGMENT_OVERHEAD,
};

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"LC";
/// The wire version this build speaks. Version 2 added the repair segment and parity types and
/// the parity count in the frame ACK, version 3 the 64-bit frame identities, version 4 the
/// segment size and parity in the NACK; an older peer's datagrams are refused as
/// [`WireError::UnsupportedVersion`], and ours by it. The path challenge and response
/// (`0x0a`, `0x0b`), the path ping and echo (`0x0c`, `0x0d`) and the path mark (`0x0e`) came
/// later within version 4:
/// types only added, which a peer that does not
/// know them refuses as [`WireError::UnknownType`] (its sessions keep their first path).
pub const VERSION: u8 = 4;
/// Preamble (magic, version, type) length.
pub const PREAMBLE_LEN: usize = 4;
/// Trailing checksum length.
pub const CRC_LEN: usize = 4;
/// UDP (8) and IPv4 (20) header bytes that every datagram also carries.
pub const UDP_IP_OVERHEAD: usize = 28;

/// Message type codes.
pub mod kind {
    /// A piece of a frame, sent for the first time.
    pub const SEGMENT: u8 = 0x01;
    /// A piece of a frame sent again (NACK answer or tail probe): the same layout as
    /// [`SEGMENT`], told apart so the receiver's link estimate counts first crossings only.
    pub const SEGMENT_REPAIR: u8 = 0x05;
    /// A parity segment: a Reed-Solomon recovery shard of a frame's data segments.
    pub const PARITY: u8 = 0x06;
    /// The receiver's request for named segments again.
    pub const NACK: u8 = 0x02;
    /// A frame is complete; carries the segment size for the next frame.
    pub const FRAME_ACK: u8 = 0x03;
    /// Tier-2 -> client: storage has committed these frames; the client may forget them.
    pub const STORED: u8 = 0x04;
    /// Client -> tier-2 on an idle session: still here; tier-2 -> client: the echo.
    pub const KEEPALIVE: u8 = 0x07;
    /// A session datagram (segment, NACK, ACK, command, result) sealed with the session's
    /// keys: the inner datagram travels encrypted and authenticated (see [`crate::secure`]).
    pub const SEALED: u8 = 0x08;
    /// Tier-2 -> client, sealed in the session: the cluster's tier-1 servers.
    pub const SESSION_TIER1S: u8 = 0x09;
    /// Tier-2 -> client, sealed, to an address the session has not used: are you there?
    pub const PATH_CHALLENGE: u8 = 0x0a;
    /// Client -> tier-2, sealed: the challenge's token, from the address it reached.
    pub const PATH_RESPONSE: u8 = 0x0b;
    /// Client -> tier-2, sealed, on one of its uplinks: how is this path?
    pub const PATH_PING: u8 = 0x0c;
    /// Tier-2 -> client, sealed, on the path the ping came from: the ping's token and what
    /// arrived from that path.
    pub const PATH_ECHO: u8 = 0x0d;
    /// Client -> tier-2, sealed, on each uplink of a bonded session when a frame's first
    /// crossing has been handed out: this uplink has nothing more of it.
    pub const PATH_MARK: u8 = 0x0e;
    /// Client -> tier-1: I want a session.
    pub const CONNECT_REQUEST: u8 = 0x10;
    /// Tier-1 -> each tier-2 it manages: this client wants a session.
    pub const CONNECT_FORWARD: u8 = 0x11;
    /// Tier-2 -> client: I can take you.
    pub const CONNECT_OFFER: u8 = 0x12;
    /// Client -> the first tier-2 that offered: I take your offer.
    pub const CONNECT_ACCEPT: u8 = 0x13;
    /// Client -> every later tier-2: I do not need your reservation.
    pub const CONNECT_RELEASE: u8 = 0x14;
    /// Tier-2 -> its manager: alive, with its load.
    pub const HEARTBEAT: u8 = 0x15;
    /// Tier-1 -> tier-2: heard you, I am your manager.
    pub const HEARTBEAT_ACK: u8 = 0x16;
    /// Tier-1 -> peer tier-1: will you manage this tier-2?
    pub const HANDOVER_REQUEST: u8 = 0x17;
    /// Peer tier-1 -> tier-1: yes.
    pub const HANDOVER_ACCEPT: u8 = 0x18;
    /// Tier-1 -> tier-2: your manager is now this one.
    pub const MANAGER_CHANGE: u8 = 0x19;
    /// Tier-1 -> client: the tier-1 servers to use, default first.
    pub const TIER1_LIST: u8 = 0x1a;
    /// Tier-1 -> peer tier-1: my group and its load.
    pub const PEER_STATUS: u8 = 0x1b;
    /// A server-to-server control datagram (heartbeat, hand-over, forward, command, ...)
    /// signed by the server that sent it (see [`crate::secure::control`]).
    pub const SIGNED: u8 = 0x20;
    /// Backend -> tier-2 -> mobile client: do this.
    pub const COMMAND: u8 = 0x30;
    /// Mobile client -> tier-2 -> backend: done, or failed and why.
    pub const COMMAND_RESULT: u8 = 0x31;
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than the smallest valid datagram of its kind.
    #[error("datagram too short: {len} bytes, need at least {need}")]
    TooShort { len: usize, need: usize },
    /// Does not start with `LC`.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 2]),
    /// A version this build does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// A type code this build does not know.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// The trailing CRC-32C does not match: the datagram was damaged on the way.
    #[error("checksum mismatch: datagram damaged")]
    BadChecksum,
    /// The length fields disagree with the datagram's size.
    #[error("length mismatch: {0}")]
    Length(&'static str),
    /// A field holds a value no valid peer sends.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// Any decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Segment(Segment<'a>),
    Parity(Parity<'a>),
    Nack(Nack),
    FrameAck(FrameAck),
    Stored(Stored),
    KeepAlive(KeepAlive),
    PathChallenge(PathProbe),
    PathResponse(PathProbe),
    PathPing(PathReport),
    PathEcho(PathReport),
    PathMark(PathMark),
    ConnectRequest(ConnectRequest<'a>),
    ConnectForward(ConnectForward<'a>),
    ConnectOffer(ConnectOffer<'a>),
    ConnectAccept(ConnectReply),
    ConnectRelease(ConnectReply),
    Heartbeat(Heartbeat),
    HeartbeatAck(HeartbeatAck),
    HandoverRequest(Handover),
    HandoverAccept(Handover),
    ManagerChange(ManagerChange),
    /// The tier-1 servers a client should use, default first (claims 22-23).
    Tier1List(Vec<SocketAddr>),
    SessionTier1s(SessionTier1s),
    PeerStatus(PeerStatus),
    Command(CommandMsg),
    CommandResult(CommandResult),
    Sealed(Sealed<'a>),
    Signed(Signed<'a>),
}

fn put_preamble(buf: &mut Vec<u8>, kind: u8) -> usize {
    let start = buf.len();
    buf.put_bytes(&MAGIC);
    buf.put_u8(VERSION);
    buf.put_u8(kind);
    start
}

fn put_crc(buf: &mut Vec<u8>, start: usize) {
    let crc = crc32c::crc32c(buf.get(start..).unwrap_or_default());
    buf.put_u32(crc);
}

/// Appends one datagram: the preamble of type `kind`, the body `body` writes, the CRC.
fn framed(buf: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = put_preamble(buf, kind);
    body(buf);
    put_crc(buf, start);
}

/// The type byte of a datagram that starts with [`MAGIC`] (any version), else `None`.
pub fn kind_of(datagram: &[u8]) -> Option<u8> {
    match datagram {
        [m0, m1, _version, kind, ..] if [*m0, *m1] == MAGIC => Some(*kind),
        _ => None,
    }
}

/// Whether a datagram claims to be signed ([`kind::SIGNED`]); only the preamble is looked at.
pub fn is_signed(datagram: &[u8]) -> bool {
    kind_of(datagram) == Some(kind::SIGNED)
}

/// Whether a datagram is one that servers send each other, which an authenticated control
/// plane signs (and drops unsigned): heartbeats and their answers, hand-overs, manager
/// changes, peer status, connect forwards, commands and (outside a session) their results.
pub fn is_server_to_server(datagram: &[u8]) -> bool {
    matches!(
        kind_of(datagram),
        Some(
            kind::HEARTBEAT
                | kind::HEARTBEAT_ACK
                | kind::HANDOVER_REQUEST
                | kind::HANDOVER_ACCEPT
                | kind::MANAGER_CHANGE
                | kind::PEER_STATUS
                | kind::CONNECT_FORWARD
                | kind::COMMAND
                | kind::COMMAND_RESULT
        )
    )
}

/// Whether a datagram claims to be sealed ([`kind::SEALED`]); only the preamble is looked at.
pub fn is_sealed(datagram: &[u8]) -> bool {
    kind_of(datagram) == Some(kind::SEALED)
}

/// True when the datagram claims to be a control message, cluster or backend (by its type
/// byte; the full check is [`decode`]'s). Roles use it to route datagrams without decoding
/// segments twice.
pub fn is_control(datagram: &[u8]) -> bool {
    kind_of(datagram).is_some_and(|k| (0x10..=0x3f).contains(&k))
}

/// The session a session datagram belongs to, read from its header without further checks:
/// the first field of a segment, NACK or frame ACK; the client of a command or its result.
pub fn session_of(datagram: &[u8]) -> Option<u32> {
    let mut r = Reader::new(datagram.get(PREAMBLE_LEN..)?);
    match kind_of(datagram)? {
        0x01..=0x0f => {}
        kind::COMMAND | kind::COMMAND_RESULT => {
            r.u64().ok()?;
        }
        _ => return None,
    }
    r.u32().ok()
}

/// The frame and index of a data segment (first sent or resent), read from its header
/// without further checks (no checksum): for a sender noting what it just encoded.
pub fn segment_of(datagram: &[u8]) -> Option<(u32, u16)> {
    if !matches!(kind_of(datagram)?, kind::SEGMENT | kind::SEGMENT_REPAIR) {
        return None;
    }
    let mut r = Reader::new(datagram.get(PREAMBLE_LEN..)?);
    r.u32().ok()?;
    Some((r.u32().ok()?, r.u16().ok()?))
}

impl Message<'_> {
    /// A short name of the message's type, for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Segment(s) if s.repair => "segment_repair",
            Message::Segment(_) => "segment",
            Message::Parity(_) => "parity",
            Message::Nack(_) => "nack",
            Message::FrameAck(_) => "frame_ack",
            Message::Stored(_) => "stored",
            Message::KeepAlive(_) => "keepalive",
            Message::PathChallenge(_) => "path_challenge",
            Message::PathResponse(_) => "path_response",
            Message::PathPing(_) => "path_ping",
            Message::PathEcho(_) => "path_echo",
            Message::PathMark(_) => "path_mark",
            Message::ConnectRequest(_) => "connect_request",
            Message::ConnectForward(_) => "connect_forward",
            Message::ConnectOffer(_) => "connect_offer",
            Message::ConnectAccept(_) => "connect_accept",
            Message::ConnectRelease(_) => "connect_release",
            Message::Heartbeat(_) => "heartbeat",
            Message::HeartbeatAck(_) => "heartbeat_ack",
            Message::HandoverRequest(_) => "handover_request",
            Message::HandoverAccept(_) => "handover_accept",
            Message::ManagerChange(_) => "manager_change",
            Message::Tier1List(_) => "tier1_list",
            Message::SessionTier1s(_) => "session_tier1s",
            Message::PeerStatus(_) => "peer_status",
            Message::Command(_) => "command",
            Message::CommandResult(_) => "command_result",
            Message::Sealed(_) => "sealed",
            Message::Signed(_) => "signed",
        }
    }

    /// The message's type code.
    fn kind(&self) -> u8 {
        match self {
            Message::Segment(s) => s.kind(),
            Message::Parity(_) => kind::PARITY,
            Message::Nack(_) => kind::NACK,
            Message::FrameAck(_) => kind::FRAME_ACK,
            Message::Stored(_) => kind::STORED,
            Message::KeepAlive(_) => kind::KEEPALIVE,
            Message::PathChallenge(_) => kind::PATH_CHALLENGE,
            Message::PathResponse(_) => kind::PATH_RESPONSE,
            Message::PathPing(_) => kind::PATH_PING,
            Message::PathEcho(_) => kind::PATH_ECHO,
            Message::PathMark(_) => kind::PATH_MARK,
            Message::ConnectRequest(_) => kind::CONNECT_REQUEST,
            Message::ConnectForward(_) => kind::CONNECT_FORWARD,
            Message::ConnectOffer(_) => kind::CONNECT_OFFER,
            Message::ConnectAccept(_) => kind::CONNECT_ACCEPT,
            Message::ConnectRelease(_) => kind::CONNECT_RELEASE,
            Message::Heartbeat(_) => kind::HEARTBEAT,
            Message::HeartbeatAck(_) => kind::HEARTBEAT_ACK,
            Message::HandoverRequest(_) => kind::HANDOVER_REQUEST,
            Message::HandoverAccept(_) => kind::HANDOVER_ACCEPT,
            Message::ManagerChange(_) => kind::MANAGER_CHANGE,
            Message::Tier1List(_) => kind::TIER1_LIST,
            Message::SessionTier1s(_) => kind::SESSION_TIER1S,
            Message::PeerStatus(_) => kind::PEER_STATUS,
            Message::Command(_) => kind::COMMAND,
            Message::CommandResult(_) => kind::COMMAND_RESULT,
            Message::Sealed(_) => kind::SEALED,
            Message::Signed(_) => kind::SIGNED,
        }
    }

    /// The bytes the message takes on the wire (it is encoded to count them).
    pub fn encoded_len(&self) -> usize {
        let mut buf = Vec::new();
        self.encode(&mut buf);
        buf.len()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        framed(buf, self.kind(), |buf| match self {
            Message::Segment(m) => m.encode_body(buf),
            Message::Parity(m) => m.encode_body(buf),
            Message::Nack(m) => m.encode_body(buf),
            Message::FrameAck(m) => m.encode_body(buf),
            Message::Stored(m) => m.encode_body(buf),
            Message::KeepAlive(m) => m.encode_body(buf),
            Message::PathChallenge(m) | Message::PathResponse(m) => m.encode_body(buf),
            Message::PathPing(m) | Message::PathEcho(m) => m.encode_body(buf),
            Message::PathMark(m) => m.encode_body(buf),
            Message::ConnectRequest(m) => m.encode_body(buf),
            Message::ConnectForward(m) => m.encode_body(buf),
            Message::ConnectOffer(m) => m.encode_body(buf),
            Message::ConnectAccept(m) | Message::ConnectRelease(m) => m.encode_body(buf),
            Message::Heartbeat(m) => m.encode_body(buf),
            Message::HeartbeatAck(m) => m.encode_body(buf),
            Message::HandoverRequest(m) | Message::HandoverAccept(m) => m.encode_body(buf),
            Message::ManagerChange(m) => m.encode_body(buf),
            Message::Tier1List(addrs) => cluster::put_tier1_list(buf, addrs),
            Message::SessionTier1s(m) => m.encode_body(buf),
            Message::PeerStatus(m) => m.encode_body(buf),
            Message::Command(m) => m.encode_body(buf),
            Message::CommandResult(m) => m.encode_body(buf),
            Message::Sealed(m) => m.encode_body(buf),
            Message::Signed(m) => m.encode_body(buf),
        });
    }
}

/// Decodes one datagram, checking preamble, checksum and every field.
pub fn decode(datagram: &[u8]) -> Result<Message<'_>, WireError> {
    decode_checked(datagram, true)
}

/// Decodes a datagram this process has just encoded: every field is checked as [`decode`]
/// does, but the checksum, which the encoder has just computed over these very bytes, is not
/// computed again. For observers of outgoing traffic (the simulator's trace summarises every
/// datagram a role sends); whatever comes from a network goes through [`decode`].
pub fn decode_own(datagram: &[u8]) -> Result<Message<'_>, WireError> {
    decode_checked(datagram, false)
}

fn decode_checked(datagram: &[u8], verify_crc: bool) -> Result<Message<'_>, WireError> {
    let Some((covered, crc)) = datagram
        .split_last_chunk::<CRC_LEN>()
        .filter(|(covered, _)| covered.len() >= PREAMBLE_LEN)
    else {
        return Err(WireError::TooShort {
            len: datagram.len(),
            need: PREAMBLE_LEN + CRC_LEN,
        });
    };
    let mut r = Reader::new(covered);
    let magic = r.array::<2>()?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let kind = r.u8()?;
    if verify_crc && crc32c::crc32c(covered) != u32::from_be_bytes(*crc) {
        return Err(WireError::BadChecksum);
    }
    let msg = match kind {
        kind::SEGMENT => Message::Segment(Segment::decode_body(&mut r, false)?),
        kind::SEGMENT_REPAIR => Message::Segment(Segment::decode_body(&mut r, true)?),
        kind::PARITY => Message::Parity(Parity::decode_body(&mut r)?),
        kind::NACK => Message::Nack(Nack::decode_body(&mut r)?),
        kind::FRAME_ACK => Message::FrameAck(FrameAck::decode_body(&mut r)?),
        kind::STORED => Message::Stored(Stored::decode_body(&mut r)?),
        kind::KEEPALIVE => Message::KeepAlive(KeepAlive::decode_body(&mut r)?),
        kind::PATH_CHALLENGE => Message::PathChallenge(PathProbe::decode_body(&mut r)?),
        kind::PATH_RESPONSE => Message::PathResponse(PathProbe::decode_body(&mut r)?),
        kind::PATH_PING => Message::PathPing(PathReport::decode_body(&mut r)?),
        kind::PATH_ECHO => Message::PathEcho(PathReport::decode_body(&mut r)?),
        kind::PATH_MARK => Message::PathMark(PathMark::decode_body(&mut r)?),
        kind::SEALED => Message::Sealed(Sealed::decode_body(&mut r)?),
        kind::SIGNED => Message::Signed(Signed::decode_body(&mut r)?),
        kind::CONNECT_REQUEST => Message::ConnectRequest(ConnectRequest::decode_body(&mut r)?),
        kind::CONNECT_FORWARD => Message::ConnectForward(ConnectForward::decode_body(&mut r)?),
        kind::CONNECT_OFFER => Message::ConnectOffer(ConnectOffer::decode_body(&mut r)?),
        kind::CONNECT_ACCEPT => Message::ConnectAccept(ConnectReply::decode_body(&mut r)?),
        kind::CONNECT_RELEASE => Message::ConnectRelease(ConnectReply::decode_body(&mut r)?),
        kind::HEARTBEAT => Message::Heartbeat(Heartbeat::decode_body(&mut r)?),
        kind::HEARTBEAT_ACK => Message::HeartbeatAck(HeartbeatAck::decode_body(&mut r)?),
        kind::HANDOVER_REQUEST => Message::HandoverRequest(Handover::decode_body(&mut r)?),
        kind::HANDOVER_ACCEPT => Message::HandoverAccept(Handover::decode_body(&mut r)?),
        kind::MANAGER_CHANGE => Message::ManagerChange(ManagerChange::decode_body(&mut r)?),
        kind::TIER1_LIST => Message::Tier1List(cluster::get_tier1_list(&mut r)?),
        kind::SESSION_TIER1S => Message::SessionTier1s(SessionTier1s::decode_body(&mut r)?),
        kind::PEER_STATUS => Message::PeerStatus(PeerStatus::decode_body(&mut r)?),
        kind::COMMAND => Message::Command(CommandMsg::decode_body(&mut r)?),
        kind::COMMAND_RESULT => Message::CommandResult(CommandResult::decode_body(&mut r)?),
        other => return Err(WireError::UnknownType(other)),
    };
    r.finish()?;
    Ok(msg)
}

#[cfg(test)]
mod tests;
