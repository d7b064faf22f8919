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

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"LC";
/// The wire version this build speaks. Version 2 added the repair segment and parity types and
/// the parity count in the frame ACK; a version 1 peer's datagrams are refused as
/// [`WireError::UnsupportedVersion`], and ours by it.
pub const VERSION: u8 = 3;
/// Preamble (magic, version, type) length.
pub const PREAMBLE_LEN: usize = 4;
/// Trailing checksum length.
pub const CRC_LEN: usize = 4;
/// Segment header after the preamble: session, frame, index, count, offset, frame length,
/// payload length.
const SEGMENT_FIELDS_LEN: usize = 4 + 4 + 2 + 2 + 4 + 4 + 2;
/// Bytes a segment adds to its payload on the wire (preamble, header and CRC), before UDP/IP.
pub const SEGMENT_OVERHEAD: usize = PREAMBLE_LEN + SEGMENT_FIELDS_LEN + CRC_LEN;
/// Parity header after the preamble: session, frame, index, first count, data count, frame
/// length, flags, payload length.
const PARITY_FIELDS_LEN: usize = 4 + 4 + 2 + 2 + 2 + 4 + 1 + 2;
/// Bytes a parity segment adds to its shard on the wire, before UDP/IP.
pub const PARITY_OVERHEAD: usize = PREAMBLE_LEN + PARITY_FIELDS_LEN + CRC_LEN;
/// Most shards (data segments and parity segments) one frame's erasure code spans: the code
/// works in GF(2^8).
pub const MAX_SHARDS: usize = 256;
/// UDP (8) and IPv4 (20) header bytes that every datagram also carries.
pub const UDP_IP_OVERHEAD: usize = 28;
/// Largest payload one segment may carry (keeps the datagram under UDP's 65,507-byte limit).
pub const MAX_SEGMENT_PAYLOAD: usize = 65_507 - SEGMENT_OVERHEAD;
/// Most segment indices one NACK datagram names; longer lists are split.
pub const MAX_NACK_INDICES: usize = 1024;
/// Longest Noise handshake message a connection request or offer carries.
pub const MAX_HANDSHAKE_LEN: usize = 512;
/// Bytes a sealed datagram adds around its (encrypted) inner datagram: preamble, session,
/// nonce, AEAD tag and CRC.
pub const SEALED_OVERHEAD: usize = PREAMBLE_LEN + 4 + 8 + AEAD_TAG_LEN + CRC_LEN;
/// Length of the AEAD tag a sealed datagram's body ends with.
pub const AEAD_TAG_LEN: usize = 16;
/// Length of the Ed25519 signature a signed control datagram ends with (before its CRC).
pub const SIGNATURE_LEN: usize = 64;
/// Bytes a signed datagram adds around the control datagram it carries: preamble, sender role
/// and id, counter, signature and CRC.
pub const SIGNED_OVERHEAD: usize = PREAMBLE_LEN + 1 + 4 + 8 + SIGNATURE_LEN + CRC_LEN;

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

/// One segment of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Session the frame belongs to.
    pub session: u32,
    /// Frame number within the session.
    pub frame: u32,
    /// Index of this segment within the frame, `< count`.
    pub index: u16,
    /// Number of segments the frame was cut into.
    pub count: u16,
    /// Byte offset of the payload within the frame.
    pub offset: u32,
    /// Length of the whole frame in bytes.
    pub frame_len: u32,
    /// The segment's bytes.
    pub payload: &'a [u8],
    /// Sent again (a repair), not in the frame's first crossing.
    pub repair: bool,
}

/// A parity segment: recovery shard `index` of a frame whose `count` data segments, each
/// padded with zeros to the payload's length (the frame's segment size), form the code's
/// original shards. Any `count` of the frame's data and parity segments rebuild the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parity<'a> {
    pub session: u32,
    pub frame: u32,
    /// Index among the frame's parity shards; `count + index < MAX_SHARDS`.
    pub index: u16,
    /// Parity segments the frame's first crossing carries (repairs may use later indices).
    pub first_count: u16,
    /// Data segments the frame was cut into.
    pub count: u16,
    /// Length of the whole frame in bytes.
    pub frame_len: u32,
    /// Sent in answer to a NACK, not in the first crossing.
    pub repair: bool,
    /// The shard: as long as the frame's segment size.
    pub payload: &'a [u8],
}

/// The receiver asks for exactly these segments of a frame again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub session: u32,
    pub frame: u32,
    /// Missing or damaged segment indices, strictly increasing.
    pub missing: Vec<u16>,
}

/// A frame arrived whole; the sender cuts its next frame into `next_segment_size` bytes and
/// adds `next_parity` parity segments to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAck {
    pub session: u32,
    pub frame: u32,
    pub next_segment_size: u16,
    pub next_parity: u8,
}

/// An idle session's sign of life (see `role::Mobile`): the client sends one when it has
/// heard nothing from its tier-2 for a keep-alive interval, and the tier-2 echoes it. It keeps
/// the session (and its keys) at the tier-2 while the camera sends no frames (stopped), and
/// tells the client its tier-2 is gone when no echo comes. Who may send it: the session's two
/// ends only (it travels sealed with the session's keys); the echo is the size of the request,
/// so answering it amplifies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    pub session: u32,
    /// Counts up per keep-alive; the echo carries the request's.
    pub seq: u32,
}

impl KeepAlive {
    /// Appends the encoded keep-alive to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = put_preamble(buf, kind::KEEPALIVE);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.seq.to_be_bytes());
        put_crc(buf, start);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(KeepAlive {
            session: r.u32()?,
            seq: r.u32()?,
        })
    }
}

/// Most frame ids one STORED datagram names; longer lists are split (160 x 8 B keeps a sealed
/// STORED within a 1500-byte MTU).
pub const MAX_STORED_FRAMES: usize = 160;

/// Tier-2 -> client: storage has committed these frames of `session` (capture sequence
/// numbers, see `role::durable`). Unlike [`FrameAck`] (the frame is complete), this is the
/// durable acknowledgement: only now may the client release the frame from its ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub session: u32,
    /// At most [`MAX_STORED_FRAMES`] ids: the frames' 64-bit capture sequence numbers.
    pub frames: Vec<u64>,
}

impl Stored {
    /// Appends the encoded message to `buf`. At most [`MAX_STORED_FRAMES`] ids are written.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let n = self.frames.len().min(MAX_STORED_FRAMES);
        let start = put_preamble(buf, kind::STORED);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&(n as u16).to_be_bytes());
        for f in &self.frames[..n] {
            buf.extend_from_slice(&f.to_be_bytes());
        }
        put_crc(buf, start);
    }
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

/// What a client with keys pads its connection request to (see [`ConnectRequest::padding`]):
/// room for the tier-1's answer and a dozen offers, and within any path's MTU.
pub const PADDED_REQUEST_LEN: usize = 1200;

/// Tier-1 -> tier-2: a client's request, with the client's address (claim 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectForward<'a> {
    pub client: u32,
    pub attempt: u32,
    /// Copied from the request.
    pub boot_seq: u64,
    pub client_addr: SocketAddr,
    /// The client's handshake message, passed on unread.
    pub hello: &'a [u8],
}

/// Tier-2 -> client: an offer, sent later the more loaded the tier-2 is (claim 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOffer<'a> {
    pub client: u32,
    pub attempt: u32,
    pub tier2: u32,
    pub load: u32,
    /// The tier-2's answer to the client's handshake message (empty without keys).
    pub reply: &'a [u8],
}

/// A session datagram sealed with the session's keys ([`kind::SEALED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The session whose keys open it.
    pub session: u32,
    /// Sender's counter: the AEAD nonce, and what the receiver's replay window checks.
    pub nonce: u64,
    /// The encrypted inner datagram followed by its [`AEAD_TAG_LEN`]-byte tag.
    pub body: &'a [u8],
}

/// A control datagram signed by the server that sent it ([`kind::SIGNED`]). The signature
/// covers every byte before it: preamble, sender, counter and the inner datagram (itself a
/// whole datagram, preamble and CRC included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The sender's role code (see [`crate::secure::control::ServerRole`]).
    pub role: u8,
    /// The sender's id within its role.
    pub id: u32,
    /// The sender's counter: never repeats, grows across restarts (microseconds of its clock).
    pub counter: u64,
    pub inner: &'a [u8],
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// Client -> tier-2: accept (`CONNECT_ACCEPT`) or release (`CONNECT_RELEASE`) an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReply {
    pub client: u32,
    pub attempt: u32,
    pub tier2: u32,
}

/// Tier-2 -> manager: alive, with load. `epoch` counts the tier-2's manager changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub tier2: u32,
    pub epoch: u64,
    pub sessions: u32,
    pub capacity: u32,
}

/// Tier-1 -> tier-2: heard you.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    pub tier1: u32,
    pub tier2: u32,
    pub epoch: u64,
}

/// Tier-1 -> peer: take over this tier-2 (`HANDOVER_REQUEST`), or: taken (`HANDOVER_ACCEPT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    pub tier1: u32,
    pub tier2: u32,
    pub tier2_addr: SocketAddr,
    pub epoch: u64,
}

/// Tier-1 -> tier-2: your manager is `manager` at `manager_addr` from `epoch` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagerChange {
    pub tier2: u32,
    pub manager: u32,
    pub manager_addr: SocketAddr,
    pub epoch: u64,
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

/// What a browser can ask of a mobile client. Travels backend -> tier-2 -> client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Capture `milli_fps / 1000` frames per second.
    SetFps { milli_fps: u32 },
    /// Capture at this resolution.
    SetResolution { width: u16, height: u16 },
    /// JPEG quality, 1..=100.
    SetQuality { quality: u8 },
    /// Capture and send one frame now.
    Snapshot,
    /// Make this tier-1 the default (first) one for later connections.
    SwitchTier1 { addr: SocketAddr },
    /// Resume capturing.
    Start,
    /// Stop capturing (the session stays up).
    Stop,
}

impl Command {
    fn code(&self) -> u8 {
        match self {
            Command::SetFps { .. } => 1,
            Command::SetResolution { .. } => 2,
            Command::SetQuality { .. } => 3,
            Command::Snapshot => 4,
            Command::SwitchTier1 { .. } => 5,
            Command::Start => 6,
            Command::Stop => 7,
        }
    }
}

/// A command for mobile client `client`, numbered `id` by the backend that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandMsg {
    pub id: u64,
    pub client: u32,
    pub command: Command,
}

/// Longest failure reason a command result carries, in bytes.
pub const MAX_REASON_LEN: usize = 200;

/// The outcome of command `id`: done (`ok`), or failed with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub id: u64,
    pub client: u32,
    pub ok: bool,
    /// Empty when `ok`; at most [`MAX_REASON_LEN`] bytes of UTF-8.
    pub reason: String,
}

/// Most addresses one tier-1 list carries.
pub const MAX_TIER1_LIST: usize = 64;

/// Tier-2 -> client, sent once a session is set up: the tier-1 servers the tier-2 knows, its
/// manager first. Who may send it: the session's tier-2 only. It travels sealed with the
/// session's keys, which only a holder of the cluster key could agree, so unlike the plain
/// [`Message::Tier1List`] (whose source a client cannot verify) it may add tier-1s to the
/// client's list, and with them the addresses a `SwitchTier1` command may name. Never sent
/// without keys (a client then takes the plain list, as in the seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTier1s {
    pub session: u32,
    /// 1 to [`MAX_TIER1_LIST`] addresses.
    pub tier1s: Vec<SocketAddr>,
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
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.push(kind);
    start
}

fn put_crc(buf: &mut Vec<u8>, start: usize) {
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(&crc.to_be_bytes());
}

/// A tier-1 list: a count and the addresses (cut at [`MAX_TIER1_LIST`]).
fn put_addr_list(buf: &mut Vec<u8>, addrs: &[SocketAddr]) {
    let n = addrs.len().min(MAX_TIER1_LIST);
    buf.push(n as u8);
    for a in &addrs[..n] {
        put_addr(buf, a);
    }
}

/// A handshake message: a 16-bit length and the bytes (cut at [`MAX_HANDSHAKE_LEN`]; callers
/// never make longer ones).
fn put_handshake(buf: &mut Vec<u8>, msg: &[u8]) {
    let msg = &msg[..msg.len().min(MAX_HANDSHAKE_LEN)];
    buf.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    buf.extend_from_slice(msg);
}

/// Appends a sealed datagram for `session` with `nonce` whose body `fill` writes in place:
/// `fill` gets `body_len` bytes to fill and returns how many it used (the rest is cut). The
/// preamble and CRC are added around it; on error nothing is appended.
pub fn put_sealed<E>(
    buf: &mut Vec<u8>,
    session: u32,
    nonce: u64,
    body_len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let start = put_preamble(buf, kind::SEALED);
    buf.extend_from_slice(&session.to_be_bytes());
    buf.extend_from_slice(&nonce.to_be_bytes());
    let body = buf.len();
    buf.resize(body + body_len, 0);
    match fill(&mut buf[body..]) {
        Ok(used) => {
            buf.truncate(body + used.min(body_len));
            put_crc(buf, start);
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Appends a signed datagram's preamble, sender, counter and inner datagram: the bytes its
/// signature covers. Returns where the datagram starts; the caller appends the
/// [`SIGNATURE_LEN`]-byte signature of `buf[start..]` and then calls [`finish_signed`].
pub fn put_signed_head(buf: &mut Vec<u8>, role: u8, id: u32, counter: u64, inner: &[u8]) -> usize {
    buf.reserve(SIGNED_OVERHEAD + inner.len());
    let start = put_preamble(buf, kind::SIGNED);
    buf.push(role);
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&counter.to_be_bytes());
    buf.extend_from_slice(inner);
    start
}

/// Ends a signed datagram begun at `start` by [`put_signed_head`] (and its signature): the CRC.
pub fn finish_signed(buf: &mut Vec<u8>, start: usize) {
    put_crc(buf, start);
}

/// The bytes of a signed datagram its signature covers (everything before the signature), or
/// `None` when it is too short to be one.
pub fn signed_part(datagram: &[u8]) -> Option<&[u8]> {
    datagram.get(..datagram.len().checked_sub(SIGNATURE_LEN + CRC_LEN)?)
}

/// Whether a datagram claims to be signed ([`kind::SIGNED`]); only the preamble is looked at.
pub fn is_signed(datagram: &[u8]) -> bool {
    datagram.len() >= PREAMBLE_LEN && datagram[..2] == MAGIC && datagram[3] == kind::SIGNED
}

/// Whether a datagram is one that servers send each other, which an authenticated control
/// plane signs (and drops unsigned): heartbeats and their answers, hand-overs, manager
/// changes, peer status, connect forwards, commands and (outside a session) their results.
pub fn is_server_to_server(datagram: &[u8]) -> bool {
    datagram.len() >= PREAMBLE_LEN
        && datagram[..2] == MAGIC
        && matches!(
            datagram[3],
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
}

/// Whether a datagram claims to be sealed ([`kind::SEALED`]); only the preamble is looked at.
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.len() >= PREAMBLE_LEN && datagram[..2] == MAGIC && datagram[3] == kind::SEALED
}

/// The session a session datagram belongs to, read from its header without further checks:
/// the first field of a segment, NACK or frame ACK; the client of a command or its result.
pub fn session_of(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < PREAMBLE_LEN || datagram[..2] != MAGIC {
        return None;
    }
    let at = match datagram[3] {
        0x01..=0x0f => PREAMBLE_LEN,
        kind::COMMAND | kind::COMMAND_RESULT => PREAMBLE_LEN + 8,
        _ => return None,
    };
    let b = datagram.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Segment<'_> {
    /// Appends the encoded segment to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.reserve(SEGMENT_OVERHEAD + self.payload.len());
        let code = if self.repair {
            kind::SEGMENT_REPAIR
        } else {
            kind::SEGMENT
        };
        let start = put_preamble(buf, code);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&self.index.to_be_bytes());
        buf.extend_from_slice(&self.count.to_be_bytes());
        buf.extend_from_slice(&self.offset.to_be_bytes());
        buf.extend_from_slice(&self.frame_len.to_be_bytes());
        // The payload length fits: callers cut segments of at most MAX_SEGMENT_PAYLOAD bytes.
        let len = u16::try_from(self.payload.len()).unwrap_or(u16::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(self.payload);
        put_crc(buf, start);
    }
}

impl Parity<'_> {
    /// Appends the encoded parity segment to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.reserve(PARITY_OVERHEAD + self.payload.len());
        let start = put_preamble(buf, kind::PARITY);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&self.index.to_be_bytes());
        buf.extend_from_slice(&self.first_count.to_be_bytes());
        buf.extend_from_slice(&self.count.to_be_bytes());
        buf.extend_from_slice(&self.frame_len.to_be_bytes());
        buf.push(u8::from(self.repair));
        let len = u16::try_from(self.payload.len()).unwrap_or(u16::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(self.payload);
        put_crc(buf, start);
    }
}

impl Nack {
    /// Appends the encoded NACK to `buf`. At most [`MAX_NACK_INDICES`] indices are written;
    /// the receiver splits longer lists.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let n = self.missing.len().min(MAX_NACK_INDICES);
        let start = put_preamble(buf, kind::NACK);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&(n as u16).to_be_bytes());
        for i in &self.missing[..n] {
            buf.extend_from_slice(&i.to_be_bytes());
        }
        put_crc(buf, start);
    }
}

impl FrameAck {
    /// Appends the encoded frame ACK to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = put_preamble(buf, kind::FRAME_ACK);
        buf.extend_from_slice(&self.session.to_be_bytes());
        buf.extend_from_slice(&self.frame.to_be_bytes());
        buf.extend_from_slice(&self.next_segment_size.to_be_bytes());
        buf.push(self.next_parity);
        put_crc(buf, start);
    }
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
}

fn put_addr(buf: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            buf.push(4);
            buf.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.push(6);
            buf.extend_from_slice(&ip.octets());
        }
    }
    buf.extend_from_slice(&addr.port().to_be_bytes());
}

impl Message<'_> {
    /// The bytes the message takes on the wire (it is encoded to count them).
    pub fn encoded_len(&self) -> usize {
        let mut buf = Vec::new();
        self.encode(&mut buf);
        buf.len()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let (kind, start) = match self {
            Message::Segment(s) => return s.encode(buf),
            Message::Parity(p) => return p.encode(buf),
            Message::Nack(n) => return n.encode(buf),
            Message::FrameAck(a) => return a.encode(buf),
            Message::Sealed(s) => {
                return put_sealed(buf, s.session, s.nonce, s.body.len(), |out| {
                    out.copy_from_slice(s.body);
                    Ok::<usize, std::convert::Infallible>(out.len())
                })
                .unwrap_or_else(|never| match never {})
            }
            Message::Stored(m) => return m.encode(buf),
            Message::KeepAlive(k) => return k.encode(buf),
            Message::Signed(m) => {
                let start = put_signed_head(buf, m.role, m.id, m.counter, m.inner);
                buf.extend_from_slice(m.signature);
                return put_crc(buf, start);
            }
            Message::ConnectRequest(_) => (kind::CONNECT_REQUEST, buf.len()),
            Message::ConnectForward(_) => (kind::CONNECT_FORWARD, buf.len()),
            Message::ConnectOffer(_) => (kind::CONNECT_OFFER, buf.len()),
            Message::ConnectAccept(_) => (kind::CONNECT_ACCEPT, buf.len()),
            Message::ConnectRelease(_) => (kind::CONNECT_RELEASE, buf.len()),
            Message::Heartbeat(_) => (kind::HEARTBEAT, buf.len()),
            Message::HeartbeatAck(_) => (kind::HEARTBEAT_ACK, buf.len()),
            Message::HandoverRequest(_) => (kind::HANDOVER_REQUEST, buf.len()),
            Message::HandoverAccept(_) => (kind::HANDOVER_ACCEPT, buf.len()),
            Message::ManagerChange(_) => (kind::MANAGER_CHANGE, buf.len()),
            Message::Tier1List(_) => (kind::TIER1_LIST, buf.len()),
            Message::SessionTier1s(_) => (kind::SESSION_TIER1S, buf.len()),
            Message::PeerStatus(_) => (kind::PEER_STATUS, buf.len()),
            Message::Command(_) => (kind::COMMAND, buf.len()),
            Message::CommandResult(_) => (kind::COMMAND_RESULT, buf.len()),
        };
        put_preamble(buf, kind);
        let u32 = |buf: &mut Vec<u8>, v: u32| buf.extend_from_slice(&v.to_be_bytes());
        let u64 = |buf: &mut Vec<u8>, v: u64| buf.extend_from_slice(&v.to_be_bytes());
        match self {
            Message::Segment(_)
            | Message::Parity(_)
            | Message::Nack(_)
            | Message::FrameAck(_)
            | Message::Stored(_)
            | Message::KeepAlive(_)
            | Message::Sealed(_)
            | Message::Signed(_) => {}
            Message::ConnectRequest(m) => {
                u32(buf, m.client);
                u32(buf, m.attempt);
                u64(buf, m.boot_seq);
                put_handshake(buf, m.hello);
                buf.extend_from_slice(&m.padding.to_be_bytes());
                buf.resize(buf.len() + usize::from(m.padding), 0);
            }
            Message::ConnectForward(m) => {
                u32(buf, m.client);
                u32(buf, m.attempt);
                u64(buf, m.boot_seq);
                put_addr(buf, &m.client_addr);
                put_handshake(buf, m.hello);
            }
            Message::ConnectOffer(m) => {
                u32(buf, m.client);
                u32(buf, m.attempt);
                u32(buf, m.tier2);
                u32(buf, m.load);
                put_handshake(buf, m.reply);
            }
            Message::ConnectAccept(m) | Message::ConnectRelease(m) => {
                u32(buf, m.client);
                u32(buf, m.attempt);
                u32(buf, m.tier2);
            }
            Message::Heartbeat(m) => {
                u32(buf, m.tier2);
                u64(buf, m.epoch);
                u32(buf, m.sessions);
                u32(buf, m.capacity);
            }
            Message::HeartbeatAck(m) => {
                u32(buf, m.tier1);
                u32(buf, m.tier2);
                u64(buf, m.epoch);
            }
            Message::HandoverRequest(m) | Message::HandoverAccept(m) => {
                u32(buf, m.tier1);
                u32(buf, m.tier2);
                put_addr(buf, &m.tier2_addr);
                u64(buf, m.epoch);
            }
            Message::ManagerChange(m) => {
                u32(buf, m.tier2);
                u32(buf, m.manager);
                put_addr(buf, &m.manager_addr);
                u64(buf, m.epoch);
            }
            Message::Tier1List(addrs) => put_addr_list(buf, addrs),
            Message::SessionTier1s(m) => {
                u32(buf, m.session);
                put_addr_list(buf, &m.tier1s);
            }
            Message::PeerStatus(m) => {
                u32(buf, m.tier1);
                u32(buf, m.tier2s);
                u32(buf, m.sessions);
                u32(buf, m.capacity);
                buf.push(u8::from(m.draining));
            }
            Message::Command(m) => {
                u64(buf, m.id);
                u32(buf, m.client);
                buf.push(m.command.code());
                match m.command {
                    Command::SetFps { milli_fps } => u32(buf, milli_fps),
                    Command::SetResolution { width, height } => {
                        buf.extend_from_slice(&width.to_be_bytes());
                        buf.extend_from_slice(&height.to_be_bytes());
                    }
                    Command::SetQuality { quality } => buf.push(quality),
                    Command::SwitchTier1 { addr } => put_addr(buf, &addr),
                    Command::Snapshot | Command::Start | Command::Stop => {}
                }
            }
            Message::CommandResult(m) => {
                u64(buf, m.id);
                u32(buf, m.client);
                buf.push(u8::from(m.ok));
                let reason = truncate_utf8(&m.reason, MAX_REASON_LEN);
                buf.push(reason.len() as u8);
                buf.extend_from_slice(reason.as_bytes());
            }
        }
        put_crc(buf, start);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A bounds-checked big-endian reader over a datagram body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Length("field runs past the end"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn handshake(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u16()?);
        if n > MAX_HANDSHAKE_LEN {
            return Err(WireError::Invalid("handshake message too long"));
        }
        self.take(n)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8()? {
            4 => {
                let b = self.take(4)?;
                IpAddr::from([b[0], b[1], b[2], b[3]])
            }
            6 => {
                let b = self.take(16)?;
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::from(a)
            }
            _ => return Err(WireError::Invalid("unknown address family")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    /// A tier-1 list: a count (1 to [`MAX_TIER1_LIST`]) and the addresses.
    fn addr_list(&mut self) -> Result<Vec<SocketAddr>, WireError> {
        let n = usize::from(self.u8()?);
        if n == 0 || n > MAX_TIER1_LIST {
            return Err(WireError::Invalid("tier-1 list length out of range"));
        }
        (0..n).map(|_| self.addr()).collect()
    }
    fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Length("trailing bytes after the message"))
        }
    }
}

/// True when the datagram claims to be a control message, cluster or backend (by its type
/// byte; the full check is [`decode`]'s). Roles use it to route datagrams without decoding
/// segments twice.
pub fn is_control(datagram: &[u8]) -> bool {
    datagram.len() >= PREAMBLE_LEN && datagram[..2] == MAGIC && (0x10..=0x3f).contains(&datagram[3])
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
    let need = PREAMBLE_LEN + CRC_LEN;
    if datagram.len() < need {
        return Err(WireError::TooShort {
            len: datagram.len(),
            need,
        });
    }
    let magic = [datagram[0], datagram[1]];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if datagram[2] != VERSION {
        return Err(WireError::UnsupportedVersion(datagram[2]));
    }
    let kind = datagram[3];
    let (signed, crc) = datagram.split_at(datagram.len() - CRC_LEN);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if verify_crc && crc32c::crc32c(signed) != crc {
        return Err(WireError::BadChecksum);
    }
    let mut r = Reader {
        bytes: &signed[PREAMBLE_LEN..],
    };
    let msg = match kind {
        kind::SEGMENT => Message::Segment(decode_segment(&mut r, false)?),
        kind::SEGMENT_REPAIR => Message::Segment(decode_segment(&mut r, true)?),
        kind::PARITY => Message::Parity(decode_parity(&mut r)?),
        kind::NACK => Message::Nack(decode_nack(&mut r)?),
        kind::FRAME_ACK => Message::FrameAck(FrameAck {
            session: r.u32()?,
            frame: r.u32()?,
            next_segment_size: r.u16()?,
            next_parity: r.u8()?,
        }),
        kind::KEEPALIVE => Message::KeepAlive(KeepAlive::decode(&mut r)?),
        kind::SEALED => {
            let session = r.u32()?;
            let nonce = r.u64()?;
            let body = r.take(r.bytes.len())?;
            if body.len() < AEAD_TAG_LEN {
                return Err(WireError::Length("sealed body shorter than its tag"));
            }
            Message::Sealed(Sealed {
                session,
                nonce,
                body,
            })
        }
        kind::SIGNED => {
            let role = r.u8()?;
            let id = r.u32()?;
            let counter = r.u64()?;
            let inner_len = r
                .bytes
                .len()
                .checked_sub(SIGNATURE_LEN)
                .ok_or(WireError::Length(
                    "signed datagram shorter than its signature",
                ))?;
            let inner = r.take(inner_len)?;
            let signature = r
                .take(SIGNATURE_LEN)?
                .try_into()
                .map_err(|_| WireError::Length("signature"))?;
            Message::Signed(Signed {
                role,
                id,
                counter,
                inner,
                signature,
            })
        }
        kind::STORED => {
            let session = r.u32()?;
            let n = usize::from(r.u16()?);
            if n > MAX_STORED_FRAMES {
                return Err(WireError::Invalid("STORED names too many frames"));
            }
            let frames = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            Message::Stored(Stored { session, frames })
        }
        kind::CONNECT_REQUEST => Message::ConnectRequest(ConnectRequest {
            client: r.u32()?,
            attempt: r.u32()?,
            boot_seq: r.u64()?,
            hello: r.handshake()?,
            // Zeros: only their number counts (and one encoding per message).
            padding: {
                let n = r.u16()?;
                if r.take(usize::from(n))?.iter().any(|&b| b != 0) {
                    return Err(WireError::Invalid("padding not zero"));
                }
                n
            },
        }),
        kind::CONNECT_FORWARD => Message::ConnectForward(ConnectForward {
            client: r.u32()?,
            attempt: r.u32()?,
            boot_seq: r.u64()?,
            client_addr: r.addr()?,
            hello: r.handshake()?,
        }),
        kind::CONNECT_OFFER => Message::ConnectOffer(ConnectOffer {
            client: r.u32()?,
            attempt: r.u32()?,
            tier2: r.u32()?,
            load: r.u32()?,
            reply: r.handshake()?,
        }),
        kind::CONNECT_ACCEPT | kind::CONNECT_RELEASE => {
            let m = ConnectReply {
                client: r.u32()?,
                attempt: r.u32()?,
                tier2: r.u32()?,
            };
            if kind == kind::CONNECT_ACCEPT {
                Message::ConnectAccept(m)
            } else {
                Message::ConnectRelease(m)
            }
        }
        kind::HEARTBEAT => Message::Heartbeat(Heartbeat {
            tier2: r.u32()?,
            epoch: r.u64()?,
            sessions: r.u32()?,
            capacity: r.u32()?,
        }),
        kind::HEARTBEAT_ACK => Message::HeartbeatAck(HeartbeatAck {
            tier1: r.u32()?,
            tier2: r.u32()?,
            epoch: r.u64()?,
        }),
        kind::HANDOVER_REQUEST | kind::HANDOVER_ACCEPT => {
            let m = Handover {
                tier1: r.u32()?,
                tier2: r.u32()?,
                tier2_addr: r.addr()?,
                epoch: r.u64()?,
            };
            if kind == kind::HANDOVER_REQUEST {
                Message::HandoverRequest(m)
            } else {
                Message::HandoverAccept(m)
            }
        }
        kind::MANAGER_CHANGE => Message::ManagerChange(ManagerChange {
            tier2: r.u32()?,
            manager: r.u32()?,
            manager_addr: r.addr()?,
            epoch: r.u64()?,
        }),
        kind::TIER1_LIST => Message::Tier1List(r.addr_list()?),
        kind::SESSION_TIER1S => Message::SessionTier1s(SessionTier1s {
            session: r.u32()?,
            tier1s: r.addr_list()?,
        }),
        kind::PEER_STATUS => Message::PeerStatus(PeerStatus {
            tier1: r.u32()?,
            tier2s: r.u32()?,
            sessions: r.u32()?,
            capacity: r.u32()?,
            draining: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Invalid("draining flag is not 0 or 1")),
            },
        }),
        kind::COMMAND => {
            let id = r.u64()?;
            let client = r.u32()?;
            let command = match r.u8()? {
                1 => Command::SetFps {
                    milli_fps: r.u32()?,
                },
                2 => Command::SetResolution {
                    width: r.u16()?,
                    height: r.u16()?,
                },
                3 => Command::SetQuality { quality: r.u8()? },
                4 => Command::Snapshot,
                5 => Command::SwitchTier1 { addr: r.addr()? },
                6 => Command::Start,
                7 => Command::Stop,
                _ => return Err(WireError::Invalid("unknown command")),
            };
            Message::Command(CommandMsg {
                id,
                client,
                command,
            })
        }
        kind::COMMAND_RESULT => {
            let id = r.u64()?;
            let client = r.u32()?;
            let ok = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Invalid("command result flag is not 0 or 1")),
            };
            let n = usize::from(r.u8()?);
            if n > MAX_REASON_LEN {
                return Err(WireError::Invalid("command failure reason too long"));
            }
            let reason = std::str::from_utf8(r.take(n)?)
                .map_err(|_| WireError::Invalid("command failure reason is not UTF-8"))?
                .to_string();
            Message::CommandResult(CommandResult {
                id,
                client,
                ok,
                reason,
            })
        }
        other => return Err(WireError::UnknownType(other)),
    };
    r.finish()?;
    Ok(msg)
}

fn decode_segment<'a>(r: &mut Reader<'a>, repair: bool) -> Result<Segment<'a>, WireError> {
    let session = r.u32()?;
    let frame = r.u32()?;
    let index = r.u16()?;
    let count = r.u16()?;
    let offset = r.u32()?;
    let frame_len = r.u32()?;
    let len = r.u16()?;
    let payload = r.take(usize::from(len))?;
    if count == 0 {
        return Err(WireError::Invalid("segment count is zero"));
    }
    if index >= count {
        return Err(WireError::Invalid("segment index not below count"));
    }
    if payload.is_empty() {
        return Err(WireError::Invalid("empty segment payload"));
    }
    if u64::from(offset) + u64::from(len) > u64::from(frame_len) {
        return Err(WireError::Invalid("segment runs past the frame's end"));
    }
    Ok(Segment {
        session,
        frame,
        index,
        count,
        offset,
        frame_len,
        payload,
        repair,
    })
}

fn decode_parity<'a>(r: &mut Reader<'a>) -> Result<Parity<'a>, WireError> {
    let session = r.u32()?;
    let frame = r.u32()?;
    let index = r.u16()?;
    let first_count = r.u16()?;
    let count = r.u16()?;
    let frame_len = r.u32()?;
    let repair = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(WireError::Invalid("parity flags")),
    };
    let len = r.u16()?;
    let payload = r.take(usize::from(len))?;
    if count == 0 || payload.is_empty() {
        return Err(WireError::Invalid("parity of an empty frame"));
    }
    if usize::from(count) + usize::from(index) >= MAX_SHARDS
        || usize::from(count) + usize::from(first_count) > MAX_SHARDS
    {
        return Err(WireError::Invalid("parity index past the code's shards"));
    }
    if u64::from(frame_len).div_ceil(u64::from(len)) != u64::from(count) {
        return Err(WireError::Invalid("parity shard does not fit its frame"));
    }
    Ok(Parity {
        session,
        frame,
        index,
        first_count,
        count,
        frame_len,
        repair,
        payload,
    })
}

fn decode_nack(r: &mut Reader<'_>) -> Result<Nack, WireError> {
    let session = r.u32()?;
    let frame = r.u32()?;
    let n = usize::from(r.u16()?);
    if n == 0 || n > MAX_NACK_INDICES {
        return Err(WireError::Invalid("NACK index count out of range"));
    }
    let mut missing = Vec::with_capacity(n);
    for _ in 0..n {
        let i = r.u16()?;
        if missing.last().is_some_and(|&prev| prev >= i) {
            return Err(WireError::Invalid("NACK indices not strictly increasing"));
        }
        missing.push(i);
    }
    Ok(Nack {
        session,
        frame,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    use proptest::prelude::*;

    /// One of every message kind (and every command), encoded: the bytes fix the wire format.
    /// A change here is a new wire version.
    fn one_of_each() -> Vec<Message<'static>> {
        let v4 = SocketAddr::from(([10, 1, 2, 3], 4567));
        let v6 = SocketAddr::new(
            IpAddr::from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            80,
        );
        const SIG: [u8; SIGNATURE_LEN] = [0x5a; SIGNATURE_LEN];
        let commands = [
            Command::SetFps { milli_fps: 12_500 },
            Command::SetResolution {
                width: 1280,
                height: 720,
            },
            Command::SetQuality { quality: 85 },
            Command::Snapshot,
            Command::SwitchTier1 { addr: v6 },
            Command::Start,
            Command::Stop,
        ];
        let mut all = vec![
            Message::Segment(Segment {
                session: 0x0102_0304,
                frame: 7,
                index: 1,
                count: 3,
                offset: 4,
                frame_len: 12,
                payload: b"abcd",
                repair: false,
            }),
            Message::Segment(Segment {
                session: 9,
                frame: 8,
                index: 0,
                count: 1,
                offset: 0,
                frame_len: 3,
                payload: b"xyz",
                repair: true,
            }),
            Message::Parity(Parity {
                session: 9,
                frame: 8,
                index: 2,
                first_count: 1,
                count: 3,
                frame_len: 10,
                repair: true,
                payload: b"pqrs",
            }),
            Message::Nack(Nack {
                session: 5,
                frame: 6,
                missing: vec![1, 2, 300],
            }),
            Message::FrameAck(FrameAck {
                session: 5,
                frame: 6,
                next_segment_size: 1442,
                next_parity: 2,
            }),
            Message::Stored(Stored {
                session: 5,
                frames: vec![1, u64::MAX, 1 << 40],
            }),
            Message::KeepAlive(KeepAlive {
                session: 5,
                seq: 77,
            }),
            Message::ConnectRequest(ConnectRequest {
                client: 11,
                attempt: 2,
                boot_seq: 1 << 50,
                hello: b"hello",
                padding: 3,
            }),
            Message::ConnectForward(ConnectForward {
                client: 11,
                attempt: 2,
                boot_seq: 99,
                client_addr: v4,
                hello: b"hi",
            }),
            Message::ConnectOffer(ConnectOffer {
                client: 11,
                attempt: 2,
                tier2: 3,
                load: 40,
                reply: b"re",
            }),
            Message::ConnectAccept(ConnectReply {
                client: 11,
                attempt: 2,
                tier2: 3,
            }),
            Message::ConnectRelease(ConnectReply {
                client: 11,
                attempt: 2,
                tier2: 4,
            }),
            Message::Heartbeat(Heartbeat {
                tier2: 3,
                epoch: 1 << 33,
                sessions: 12,
                capacity: 100,
            }),
            Message::HeartbeatAck(HeartbeatAck {
                tier1: 1,
                tier2: 3,
                epoch: 5,
            }),
            Message::HandoverRequest(Handover {
                tier1: 1,
                tier2: 3,
                tier2_addr: v4,
                epoch: 6,
            }),
            Message::HandoverAccept(Handover {
                tier1: 2,
                tier2: 3,
                tier2_addr: v6,
                epoch: 6,
            }),
            Message::ManagerChange(ManagerChange {
                tier2: 3,
                manager: 2,
                manager_addr: v4,
                epoch: 7,
            }),
            Message::Tier1List(vec![v4, v6]),
            Message::SessionTier1s(SessionTier1s {
                session: 5,
                tier1s: vec![v6, v4],
            }),
            Message::PeerStatus(PeerStatus {
                tier1: 1,
                tier2s: 4,
                sessions: 30,
                capacity: 400,
                draining: true,
            }),
            Message::CommandResult(CommandResult {
                id: 1 << 60,
                client: 11,
                ok: false,
                reason: "no café".into(),
            }),
            Message::Sealed(Sealed {
                session: 5,
                nonce: 1 << 35,
                body: &[0xee; AEAD_TAG_LEN + 3],
            }),
            Message::Signed(Signed {
                role: 2,
                id: 3,
                counter: 1 << 45,
                inner: b"inner",
                signature: &SIG,
            }),
        ];
        all.extend(commands.into_iter().enumerate().map(|(i, command)| {
            Message::Command(CommandMsg {
                id: i as u64,
                client: 11,
                command,
            })
        }));
        all
    }

    #[test]
    fn golden_bytes_of_every_message() {
        let all = one_of_each();
        assert_eq!(all.len(), GOLDEN.len());
        for (m, want) in all.iter().zip(GOLDEN) {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, want, "{}", m.name());
            assert_eq!(decode(&buf).as_ref(), Ok(m));
        }
    }

    /// The bytes of [`one_of_each`], as wire version 3 writes them.
    const GOLDEN: [&str; 30] = [
        "4c430301010203040000000700010003000000040000000c000461626364dedca825",
        "4c4303050000000900000008000000010000000000000003000378797a1385c9af",
        "4c43030600000009000000080002000100030000000a01000470717273003d9ceb",
        "4c4303020000000500000006000300010002012ce29d9d58",
        "4c430303000000050000000605a2020b0211f9",
        "4c4303040000000500030000000000000001ffffffffffffffff00000100000000000013490e",
        "4c430307000000050000004d72c30b30",
        "4c4303100000000b000000020004000000000000000568656c6c6f0003000000e25d0659",
        "4c4303110000000b000000020000000000000063040a01020311d700026869a9be02d1",
        "4c4303120000000b000000020000000300000028000272652de4ab88",
        "4c4303130000000b000000020000000306ab2ac4",
        "4c4303140000000b0000000200000004405fe714",
        "4c4303150000000300000002000000000000000c000000643d77e7b8",
        "4c43031600000001000000030000000000000005199d8263",
        "4c4303170000000100000003040a01020311d70000000000000006bc1c1dac",
        "4c43031800000002000000030620010db800000000000000000000000900500000000000000006f4b0075b",
        "4c4303190000000300000002040a01020311d70000000000000007814bd159",
        "4c43031a02040a01020311d70620010db8000000000000000000000009005003ce01ac",
        "4c43030900000005020620010db80000000000000000000000090050040a01020311d7c65c2b67",
        "4c43031b00000001000000040000001e0000019001157b6638",
        "4c43033110000000000000000000000b00086e6f20636166c3a93db368f5",
        "4c430308000000050000000800000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee075e6707",
        "4c43032002000000030000200000000000696e6e65725a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a28f01d79",
        "4c43033000000000000000000000000b01000030d482dd1f83",
        "4c43033000000000000000010000000b02050002d0074efaeb",
        "4c43033000000000000000020000000b0355e9dc123c",
        "4c43033000000000000000030000000b04a5466a6e",
        "4c43033000000000000000040000000b050620010db80000000000000000000000090050cb0a14ca",
        "4c43033000000000000000050000000b062d048d2d",
        "4c43033000000000000000060000000b07ebd3c5f4",
    ];

    fn seg(payload: &[u8]) -> Segment<'_> {
        Segment {
            session: 9,
            frame: 3,
            index: 1,
            count: 4,
            offset: 500,
            frame_len: 2000,
            payload,
            repair: false,
        }
    }

    #[test]
    fn segment_overhead_matches_encoding() {
        let mut buf = Vec::new();
        seg(&[7; 500]).encode(&mut buf);
        assert_eq!(buf.len(), 500 + SEGMENT_OVERHEAD);
    }

    fn parity(payload: &[u8]) -> Parity<'_> {
        Parity {
            session: 9,
            frame: 3,
            index: 0,
            first_count: 2,
            count: 4,
            frame_len: 1900,
            repair: false,
            payload,
        }
    }

    #[test]
    fn parity_overhead_matches_encoding_and_round_trips() {
        let mut buf = Vec::new();
        let shard = [5u8; 500];
        parity(&shard).encode(&mut buf);
        assert_eq!(buf.len(), 500 + PARITY_OVERHEAD);
        assert_eq!(decode(&buf), Ok(Message::Parity(parity(&shard))));
    }

    #[test]
    fn parity_that_does_not_fit_its_frame_is_rejected() {
        let shard = [5u8; 500];
        let cases = [
            // 2100 bytes are five shards of 500, not four.
            (
                Parity {
                    frame_len: 2100,
                    ..parity(&shard)
                },
                "parity shard does not fit its frame",
            ),
            (
                Parity {
                    index: 252,
                    ..parity(&shard)
                },
                "parity index past the code's shards",
            ),
            (
                Parity {
                    first_count: 253,
                    ..parity(&shard)
                },
                "parity index past the code's shards",
            ),
            (
                Parity {
                    count: 0,
                    frame_len: 0,
                    ..parity(&shard)
                },
                "parity of an empty frame",
            ),
        ];
        for (p, why) in cases {
            let mut buf = Vec::new();
            p.encode(&mut buf);
            assert_eq!(decode(&buf), Err(WireError::Invalid(why)), "{p:?}");
        }
        // A flags byte other than 0 or 1.
        let mut buf = Vec::new();
        parity(&shard).encode(&mut buf);
        buf[PREAMBLE_LEN + 18] = 7;
        let n = buf.len() - CRC_LEN;
        let crc = crc32c::crc32c(&buf[..n]);
        buf[n..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&buf), Err(WireError::Invalid("parity flags")));
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        seg(&[7; 64]).encode(&mut buf);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn unknown_and_reserved_types_are_rejected() {
        let mut buf = Vec::new();
        FrameAck {
            session: 1,
            frame: 2,
            next_segment_size: 500,
            next_parity: 0,
        }
        .encode(&mut buf);
        buf[3] = 0x2f;
        let n = buf.len() - CRC_LEN;
        let crc = crc32c::crc32c(&buf[..n]);
        buf[n..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&buf), Err(WireError::UnknownType(0x2f)));
    }

    #[test]
    fn inconsistent_segment_is_rejected() {
        let mut buf = Vec::new();
        Segment {
            offset: 1900,
            ..seg(&[1; 200])
        }
        .encode(&mut buf);
        assert_eq!(
            decode(&buf),
            Err(WireError::Invalid("segment runs past the frame's end"))
        );
    }

    fn arb_message() -> impl Strategy<Value = (u8, u32, u32, u16, u16, Vec<u8>, Vec<u16>)> {
        (
            1u8..=6,
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            1u16..,
            proptest::collection::vec(any::<u8>(), 1..3000),
            proptest::collection::btree_set(any::<u16>(), 1..200)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        )
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_garbage_after_a_valid_preamble_never_panics(
            kind in 0u8..=0x40,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut buf = vec![b'L', b'C', VERSION, kind];
            buf.extend_from_slice(&body);
            let crc = crc32c::crc32c(&buf);
            buf.extend_from_slice(&crc.to_be_bytes());
            let _ = decode(&buf);
        }

        #[test]
        fn round_trip((which, session, frame, a, b, payload, missing) in arb_message()) {
            let mut buf = Vec::new();
            let msg = match which {
                1 => {
                    let count = b.max(1);
                    let index = a % count;
                    Message::Segment(Segment {
                        session, frame, index, count,
                        offset: 17,
                        frame_len: 17 + payload.len() as u32 + 5,
                        payload: &payload,
                        repair: a % 2 == 1,
                    })
                }
                2 => Message::Nack(Nack { session, frame, missing: missing.clone() }),
                3 => Message::FrameAck(FrameAck { session, frame, next_segment_size: a, next_parity: b as u8 }),
                6 => Message::KeepAlive(KeepAlive { session, seq: frame }),
                _ => {
                    // A parity shard of a frame of `count` segments of the shard's length.
                    let count = b % 200 + 1;
                    let len = payload.len() as u32;
                    Message::Parity(Parity {
                        session, frame,
                        index: a % (MAX_SHARDS as u16 - count),
                        first_count: b % 50,
                        count,
                        frame_len: (u32::from(count) - 1) * len + 1 + (a as u32 % len),
                        repair: which == 5,
                        payload: &payload,
                    })
                }
            };
            msg.encode(&mut buf);
            prop_assert_eq!(decode(&buf), Ok(msg));
        }

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

        #[test]
        fn command_messages_round_trip(
            which in 0u8..8,
            id in any::<u64>(),
            client in any::<u32>(),
            a in any::<u32>(),
            port in any::<u16>(),
            reason in ".{0,80}",
        ) {
            let command = match which {
                0 => Command::SetFps { milli_fps: a },
                1 => Command::SetResolution { width: a as u16, height: (a >> 16) as u16 },
                2 => Command::SetQuality { quality: a as u8 },
                3 => Command::Snapshot,
                4 => Command::SwitchTier1 { addr: SocketAddr::new(IpAddr::from(a.to_be_bytes()), port) },
                5 => Command::Start,
                6 => Command::Stop,
                _ => {
                    let msg = Message::CommandResult(CommandResult { id, client, ok: reason.is_empty(), reason: truncate_utf8(&reason, MAX_REASON_LEN).to_string() });
                    let mut buf = Vec::new();
                    msg.encode(&mut buf);
                    prop_assert_eq!(decode(&buf), Ok(msg));
                    return Ok(());
                }
            };
            let msg = Message::Command(CommandMsg { id, client, command });
            let mut buf = Vec::new();
            msg.encode(&mut buf);
            prop_assert_eq!(decode(&buf), Ok(msg));
        }

        #[test]
        fn truncation_is_always_rejected(payload in proptest::collection::vec(any::<u8>(), 1..600), cut in 1usize..600) {
            let mut buf = Vec::new();
            Segment { session: 1, frame: 1, index: 0, count: 1, offset: 0, frame_len: payload.len() as u32, payload: &payload, repair: false }.encode(&mut buf);
            let cut = cut.min(buf.len());
            prop_assert!(decode(&buf[..buf.len() - cut]).is_err());
        }
    }
}
