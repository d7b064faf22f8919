//! A session's transport keys: sealing and opening [`kind::SEALED`] datagrams with an explicit
//! nonce and a replay window.
//!
//! [`kind::SEALED`]: crate::proto::wire::kind::SEALED

use snow::StatelessTransportState;

use super::SecureError;
use crate::proto::wire::{self, Sealed, AEAD_TAG_LEN};

/// Nonces a receiver remembers behind the newest one; older ones are refused.
pub const REPLAY_WINDOW: u64 = 1024;
/// One word more than the window needs, so the word being reused never holds a nonce the
/// window still covers (RFC 6479).
const WORDS: usize = (REPLAY_WINDOW / 64) as usize + 1;

/// Which of the last [`REPLAY_WINDOW`] nonces have been seen (RFC 6479's bitmap). A nonce is
/// checked before it is opened and marked only after it authenticated, so forgeries cannot
/// move the window.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Newest nonce seen plus one (0: none yet).
    top: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// Whether `nonce` may be accepted: newer than everything, or inside the window and unseen.
    pub fn check(&self, nonce: u64) -> Result<(), SecureError> {
        if nonce >= self.top {
            return Ok(());
        }
        if self.top - nonce > REPLAY_WINDOW || self.bit(nonce) {
            return Err(SecureError::Replay(nonce));
        }
        Ok(())
    }

    /// Records `nonce` as seen (after it authenticated).
    pub fn mark(&mut self, nonce: u64) {
        if nonce >= self.top {
            // Clear the words the window slides onto (they held nonces now too old).
            if self.top > 0 {
                let old = (self.top - 1) / 64;
                let steps = (nonce / 64 - old).min(WORDS as u64);
                for w in 1..=steps {
                    self.bits[((old + w) % WORDS as u64) as usize] = 0;
                }
            }
            self.top = nonce + 1;
        }
        let (w, b) = Self::slot(nonce);
        self.bits[w] |= 1 << b;
    }

    fn bit(&self, nonce: u64) -> bool {
        let (w, b) = Self::slot(nonce);
        self.bits[w] & (1 << b) != 0
    }

    fn slot(nonce: u64) -> (usize, u64) {
        (((nonce / 64) % WORDS as u64) as usize, nonce % 64)
    }
}

/// One session's keys, as either end holds them.
pub struct Channel {
    session: u32,
    transport: StatelessTransportState,
    next_nonce: u64,
    window: ReplayWindow,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("session", &self.session)
            .field("next_nonce", &self.next_nonce)
            .finish()
    }
}

impl Channel {
    pub(crate) fn new(session: u32, transport: StatelessTransportState) -> Self {
        Channel {
            session,
            transport,
            next_nonce: 0,
            window: ReplayWindow::default(),
        }
    }

    pub fn session(&self) -> u32 {
        self.session
    }

    /// Appends `plain` (a whole encoded datagram) to `out`, sealed.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        let nonce = self.next_nonce;
        let transport = &self.transport;
        wire::put_sealed(
            out,
            self.session,
            nonce,
            plain.len() + AEAD_TAG_LEN,
            |body| {
                transport
                    .write_message(nonce, plain, body)
                    .map_err(|e| SecureError::Seal(e.to_string()))
            },
        )?;
        self.next_nonce += 1;
        Ok(())
    }

    /// Opens a sealed datagram of this session into `out` (cleared first): the inner datagram.
    pub fn open(&mut self, sealed: &Sealed<'_>, out: &mut Vec<u8>) -> Result<(), SecureError> {
        self.window.check(sealed.nonce)?;
        out.clear();
        out.resize(sealed.body.len().saturating_sub(AEAD_TAG_LEN), 0);
        let n = self
            .transport
            .read_message(sealed.nonce, sealed.body, out)
            .map_err(|_| SecureError::Forged)?;
        out.truncate(n);
        self.window.mark(sealed.nonce);
        Ok(())
    }
}
