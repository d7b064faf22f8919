//! The two datagrams that carry another datagram: [`Sealed`] (type `0x08`, a session datagram
//! encrypted and authenticated with the session's Noise keys, see [`crate::secure`]) and
//! [`Signed`] (type `0x20`, a server-to-server control datagram with its sender's Ed25519
//! signature, see [`crate::secure::control`]). Their layouts are written once here, for the
//! in-place writers the secure layer uses ([`put_sealed`], [`put_signed_head`]) and for
//! [`super::Message`]'s encoder and decoder alike.

use super::codec::{Reader, Writer};
use super::{kind, put_crc, put_preamble, WireError, CRC_LEN, PREAMBLE_LEN};

/// Length of the AEAD tag a sealed datagram's body ends with.
pub const AEAD_TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds around its (encrypted) inner datagram: preamble, session,
/// nonce, AEAD tag and CRC.
pub const SEALED_OVERHEAD: usize = PREAMBLE_LEN + 4 + 8 + AEAD_TAG_LEN + CRC_LEN;
/// Length of the Ed25519 signature a signed control datagram ends with (before its CRC).
pub const SIGNATURE_LEN: usize = 64;
/// Bytes a signed datagram adds around the control datagram it carries: preamble, sender role
/// and id, counter, signature and CRC.
pub const SIGNED_OVERHEAD: usize = PREAMBLE_LEN + 1 + 4 + 8 + SIGNATURE_LEN + CRC_LEN;

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

impl<'a> Sealed<'a> {
    /// Session and nonce; the body follows to the CRC.
    fn encode_head(session: u32, nonce: u64, buf: &mut Vec<u8>) {
        buf.put_u32(session);
        buf.put_u64(nonce);
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        Self::encode_head(self.session, self.nonce, buf);
        buf.put_bytes(self.body);
    }

    pub(super) fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let session = r.u32()?;
        let nonce = r.u64()?;
        let body = r.rest();
        if body.len() < AEAD_TAG_LEN {
            return Err(WireError::Length("sealed body shorter than its tag"));
        }
        Ok(Sealed {
            session,
            nonce,
            body,
        })
    }
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
    Sealed::encode_head(session, nonce, buf);
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

impl<'a> Signed<'a> {
    /// Sender, counter and inner datagram: what follows the preamble under the signature.
    fn encode_signed_part(role: u8, id: u32, counter: u64, inner: &[u8], buf: &mut Vec<u8>) {
        buf.put_u8(role);
        buf.put_u32(id);
        buf.put_u64(counter);
        buf.put_bytes(inner);
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        Self::encode_signed_part(self.role, self.id, self.counter, self.inner, buf);
        buf.put_bytes(self.signature);
    }

    pub(super) fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let role = r.u8()?;
        let id = r.u32()?;
        let counter = r.u64()?;
        let (inner, signature) =
            r.rest()
                .split_last_chunk::<SIGNATURE_LEN>()
                .ok_or(WireError::Length(
                    "signed datagram shorter than its signature",
                ))?;
        Ok(Signed {
            role,
            id,
            counter,
            inner,
            signature,
        })
    }
}

/// Appends a signed datagram's preamble, sender, counter and inner datagram: the bytes its
/// signature covers. Returns where the datagram starts; the caller appends the
/// [`SIGNATURE_LEN`]-byte signature of `buf[start..]` and then calls [`finish_signed`].
pub fn put_signed_head(buf: &mut Vec<u8>, role: u8, id: u32, counter: u64, inner: &[u8]) -> usize {
    buf.reserve(SIGNED_OVERHEAD + inner.len());
    let start = put_preamble(buf, kind::SIGNED);
    Signed::encode_signed_part(role, id, counter, inner, buf);
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
