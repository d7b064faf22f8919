//! The event trace of a run and its hash.
//!
//! Every datagram sent, received or lost, every role event and every fault goes into the
//! trace. Each event is hashed as it is made, so the hash covers the whole run without storing
//! it: its compact binary encoding (time, host, event; datagrams, the bulk of a run, in a
//! fixed layout written here, other events with bincode) goes through XXH3-128 seeded with
//! the hash so far, a chain in which every event and its place count. With `--trace FILE`
//! each event is also written out as one JSON line `{"t_us":..,"host":"..","e":{..}}`. Same
//! scenario and seed, same events, same hash, with or without the file.

use std::io::{self, Write};

use livecam_system::link::LossCause;
use livecam_system::proto::wire::{self, Message};
use livecam_system::time::Instant;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// What a datagram was, for trace lines.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MsgSummary {
    Segment {
        session: u32,
        frame: u32,
        index: u16,
        count: u16,
    },
    Nack {
        session: u32,
        frame: u32,
        missing: Vec<u16>,
    },
    Ack {
        session: u32,
        frame: u32,
        next: u16,
    },
    /// A session datagram sealed with its session's keys: what is inside stays hidden.
    Sealed {
        session: u32,
        nonce: u64,
    },
    /// A cluster control message.
    Control {
        name: &'static str,
    },
    Undecodable {
        error: String,
    },
}

impl MsgSummary {
    /// What a received datagram was (a damaged one is undecodable: bad checksum).
    pub fn of(datagram: &[u8]) -> Self {
        Self::of_decoded(wire::decode(datagram))
    }

    /// What a datagram the host's role has just encoded is (its checksum is the encoder's,
    /// not checked again: see [`wire::decode_own`]).
    pub fn of_sent(datagram: &[u8]) -> Self {
        Self::of_decoded(wire::decode_own(datagram))
    }

    /// Appends the summary's fixed binary layout (for the hash): a kind byte, then its
    /// fields little-endian, text NUL-terminated.
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MsgSummary::Segment {
                session,
                frame,
                index,
                count,
            } => {
                out.push(0);
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&frame.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            MsgSummary::Nack {
                session,
                frame,
                missing,
            } => {
                out.push(1);
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&frame.to_le_bytes());
                out.extend_from_slice(&(missing.len() as u32).to_le_bytes());
                for i in missing {
                    out.extend_from_slice(&i.to_le_bytes());
                }
            }
            MsgSummary::Ack {
                session,
                frame,
                next,
            } => {
                out.push(2);
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&frame.to_le_bytes());
                out.extend_from_slice(&next.to_le_bytes());
            }
            MsgSummary::Sealed { session, nonce } => {
                out.push(3);
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            MsgSummary::Control { name } => {
                out.push(4);
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
            MsgSummary::Undecodable { error } => {
                out.push(5);
                out.extend_from_slice(error.as_bytes());
                out.push(0);
            }
        }
    }

    fn of_decoded(decoded: Result<Message<'_>, wire::WireError>) -> Self {
        match decoded {
            Ok(Message::Segment(s)) => MsgSummary::Segment {
                session: s.session,
                frame: s.frame,
                index: s.index,
                count: s.count,
            },
            Ok(Message::Nack(n)) => MsgSummary::Nack {
                session: n.session,
                frame: n.frame,
                missing: n.missing,
            },
            Ok(Message::FrameAck(a)) => MsgSummary::Ack {
                session: a.session,
                frame: a.frame,
                next: a.next_segment_size,
            },
            Ok(Message::Sealed(s)) => MsgSummary::Sealed {
                session: s.session,
                nonce: s.nonce,
            },
            Ok(other) => MsgSummary::Control { name: other.name() },
            Err(e) => MsgSummary::Undecodable {
                error: e.to_string(),
            },
        }
    }
}

/// A trace event that is not a role event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum NetEvent<'a> {
    Send {
        to: &'a str,
        len: usize,
        msg: MsgSummary,
    },
    Recv {
        from: &'a str,
        len: usize,
        msg: MsgSummary,
    },
    Lost {
        to: &'a str,
        cause: LossCause,
    },
    Fault {
        what: &'a str,
    },
    Start {
        incarnation: u32,
    },
}

/// Which way a traced datagram went, seen from the host that traces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Sent,
    Received,
}

/// The running trace: a hash, and optionally the lines written out.
pub struct Trace {
    hash: u128,
    lines: u64,
    out: Option<Box<dyn Write + Send>>,
    line: Vec<u8>,
    error: Option<io::Error>,
}

impl Trace {
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Self {
        Trace {
            hash: 0,
            lines: 0,
            out,
            line: Vec::with_capacity(256),
            error: None,
        }
    }

    /// Adds one event.
    pub fn record(&mut self, t: Instant, host: &str, event: &impl Serialize) {
        self.start_line(t, host);
        if bincode::serialize_into(&mut self.line, event).is_err() {
            self.line.push(0xff);
        }
        self.commit(t, host, event);
    }

    /// Adds a datagram `host` sent (`to` its peer) or received (from its peer): the same
    /// event as [`NetEvent::Send`] or [`NetEvent::Recv`], hashed in a fixed layout without
    /// serde's machinery (two of these per datagram are most of a run's events).
    pub fn record_datagram(
        &mut self,
        t: Instant,
        host: &str,
        way: Way,
        peer: &str,
        len: usize,
        msg: MsgSummary,
    ) {
        self.start_line(t, host);
        self.line.push(match way {
            Way::Sent => 0xf0,
            Way::Received => 0xf1,
        });
        self.line.extend_from_slice(peer.as_bytes());
        self.line.push(0);
        self.line.extend_from_slice(&(len as u32).to_le_bytes());
        msg.encode(&mut self.line);
        if self.out.is_some() {
            let event = match way {
                Way::Sent => NetEvent::Send { to: peer, len, msg },
                Way::Received => NetEvent::Recv {
                    from: peer,
                    len,
                    msg,
                },
            };
            self.commit(t, host, &event);
        } else {
            self.commit(t, host, &());
        }
    }

    /// Starts an event's binary line: time and host.
    fn start_line(&mut self, t: Instant, host: &str) {
        self.line.clear();
        self.line.extend_from_slice(&t.as_micros().to_le_bytes());
        self.line.extend_from_slice(host.as_bytes());
        self.line.push(0);
    }

    /// Chains the binary line into the hash and writes the event's JSON line if asked to.
    fn commit(&mut self, t: Instant, host: &str, event: &impl Serialize) {
        let seed = (self.hash as u64) ^ ((self.hash >> 64) as u64);
        self.hash = xxh3_128_with_seed(&self.line, seed);
        self.lines += 1;
        if let Some(out) = self.out.as_mut() {
            self.line.clear();
            let _ = write!(
                self.line,
                "{{\"t_us\":{},\"host\":\"{host}\",\"e\":",
                t.as_micros()
            );
            if serde_json::to_writer(&mut self.line, event).is_err() {
                self.line.extend_from_slice(b"null");
            }
            self.line.extend_from_slice(b"}\n");
            if let Err(e) = out.write_all(&self.line) {
                self.error.get_or_insert(e);
                self.out = None;
            }
        }
    }

    /// Lines so far.
    pub fn len(&self) -> u64 {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The hash of everything so far, as 32 hex digits.
    pub fn hash(&self) -> String {
        format!("{:032x}", self.hash)
    }

    /// Flushes the output, reporting the first write error if any.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(out) = self.out.as_mut() {
            out.flush()?;
        }
        Ok(())
    }
}
