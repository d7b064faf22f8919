//! The backend's datagrams (types `0x30..=0x31`): a [`Command`] for a mobile client and its
//! [`CommandResult`]. Each layout is written once, its encoder beside its decoder.

use std::net::SocketAddr;

use super::codec::{Reader, Writer};
use super::WireError;

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
    /// A code byte, then the command's fields.
    fn encode(&self, buf: &mut Vec<u8>) {
        match *self {
            Command::SetFps { milli_fps } => {
                buf.put_u8(1);
                buf.put_u32(milli_fps);
            }
            Command::SetResolution { width, height } => {
                buf.put_u8(2);
                buf.put_u16(width);
                buf.put_u16(height);
            }
            Command::SetQuality { quality } => {
                buf.put_u8(3);
                buf.put_u8(quality);
            }
            Command::Snapshot => buf.put_u8(4),
            Command::SwitchTier1 { addr } => {
                buf.put_u8(5);
                buf.put_addr(&addr);
            }
            Command::Start => buf.put_u8(6),
            Command::Stop => buf.put_u8(7),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
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
        })
    }
}

/// A command for mobile client `client`, numbered `id` by the backend that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandMsg {
    pub id: u64,
    pub client: u32,
    pub command: Command,
}

impl CommandMsg {
    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.id);
        buf.put_u32(self.client);
        self.command.encode(buf);
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(CommandMsg {
            id: r.u64()?,
            client: r.u32()?,
            command: Command::decode(r)?,
        })
    }
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

impl CommandResult {
    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.id);
        buf.put_u32(self.client);
        buf.put_flag(self.ok);
        let reason = truncate_utf8(&self.reason, MAX_REASON_LEN);
        buf.put_u8(reason.len() as u8);
        buf.put_bytes(reason.as_bytes());
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.u64()?;
        let client = r.u32()?;
        let ok = r.flag("command result flag is not 0 or 1")?;
        let n = usize::from(r.u8()?);
        if n > MAX_REASON_LEN {
            return Err(WireError::Invalid("command failure reason too long"));
        }
        let reason = std::str::from_utf8(r.take(n)?)
            .map_err(|_| WireError::Invalid("command failure reason is not UTF-8"))?
            .to_string();
        Ok(CommandResult {
            id,
            client,
            ok,
            reason,
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::proto::wire::{decode, Message};

    proptest! {
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
    }
}
