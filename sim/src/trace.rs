//! The event trace of a run and its hash.
//!
//! Every datagram sent, received or lost, every role event and every fault goes into the
//! trace. Each event is hashed (XXH3-128 over a compact binary encoding: time, host, event) as
//! it is made, so the hash covers the whole run without storing it; with `--trace FILE` each
//! event is also written out as one JSON line `{"t_us":..,"host":"..","e":{..}}`. Same
//! scenario and seed, same events, same hash, with or without the file.

use std::io::{self, Write};

use livecam_system::link::LossCause;
use livecam_system::proto::wire::{self, Message};
use livecam_system::time::Instant;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

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
    pub fn of(datagram: &[u8]) -> Self {
        match wire::decode(datagram) {
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

/// The running trace: a hash, and optionally the lines written out.
pub struct Trace {
    hasher: Xxh3,
    lines: u64,
    out: Option<Box<dyn Write + Send>>,
    line: Vec<u8>,
    error: Option<io::Error>,
}

impl Trace {
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Self {
        Trace {
            hasher: Xxh3::new(),
            lines: 0,
            out,
            line: Vec::with_capacity(256),
            error: None,
        }
    }

    /// Adds one event.
    pub fn record(&mut self, t: Instant, host: &str, event: &impl Serialize) {
        self.line.clear();
        self.line.extend_from_slice(&t.as_micros().to_le_bytes());
        self.line.extend_from_slice(host.as_bytes());
        self.line.push(0);
        if bincode::serialize_into(&mut self.line, event).is_err() {
            self.line.push(0xff);
        }
        self.hasher.update(&self.line);
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
        format!("{:032x}", self.hasher.digest128())
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
