//! The few trace events the analyses need, picked out of a run's JSON-lines trace as it is
//! written (see [`livecam_sim::trace`]): the whole trace of a cluster run is tens of megabytes,
//! so lines are filtered by their event tag before they are parsed, and nothing else is kept.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;

/// A role event from the trace, with its time and host.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t_us: u64,
    pub host: String,
    pub kind: EventKind,
}

/// The events kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A camera's frame was acknowledged, this long after its capture.
    FrameAcked { frame: u32, latency_us: u64 },
    /// A camera captured a frame of `len` bytes (0: a capture instant skipped to fit the
    /// rate).
    FramePushed { frame: u32, len: u64 },
    /// A camera's rate control moved its target, reading this queueing delay.
    TargetRate { bytes_per_s: u64, queue_us: u64 },
    /// A mobile client got a session on tier-2 `tier2` (its host index).
    Connected { tier2: u32 },
    /// A mobile client lost its session.
    SessionLost,
}

#[derive(Deserialize)]
struct Line {
    t_us: u64,
    host: String,
    e: Body,
}

#[derive(Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum Body {
    FrameAcked { frame: u32, latency_us: u64 },
    FramePushed { frame: u32, len: u64 },
    TargetRate { bytes_per_s: u64, queue_us: u64 },
    Connected { tier2: u32 },
    SessionLost {},
}

const TAGS: [&[u8]; 5] = [
    b"\"ev\":\"target_rate\"",
    b"\"ev\":\"frame_acked\"",
    b"\"ev\":\"frame_pushed\"",
    b"\"ev\":\"connected\"",
    b"\"ev\":\"session_lost\"",
];

/// A trace writer that keeps the wanted events; clone it to read them after the run.
#[derive(Clone, Default)]
pub struct EventSink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    partial: Vec<u8>,
    events: Vec<Event>,
    error: Option<String>,
}

impl EventSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far, in trace order, or the first line that could not be read.
    pub fn take(&self) -> Result<Vec<Event>, String> {
        let mut st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        Ok(std::mem::take(&mut st.events))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl SinkState {
    fn line(&mut self, line: &[u8]) {
        if !TAGS.iter().any(|t| contains(line, t)) {
            return;
        }
        match serde_json::from_slice::<Line>(line) {
            Ok(l) => self.events.push(Event {
                t_us: l.t_us,
                host: l.host,
                kind: match l.e {
                    Body::FrameAcked { frame, latency_us } => {
                        EventKind::FrameAcked { frame, latency_us }
                    }
                    Body::FramePushed { frame, len } => EventKind::FramePushed { frame, len },
                    Body::TargetRate {
                        bytes_per_s,
                        queue_us,
                    } => EventKind::TargetRate {
                        bytes_per_s,
                        queue_us,
                    },
                    Body::Connected { tier2 } => EventKind::Connected { tier2 },
                    Body::SessionLost {} => EventKind::SessionLost,
                },
            }),
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(format!(
                        "trace line {:?}: {e}",
                        String::from_utf8_lossy(line)
                    ));
                }
            }
        }
    }
}

impl Write for EventSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if st.partial.is_empty() {
                st.line(&rest[..nl]);
            } else {
                let mut line = std::mem::take(&mut st.partial);
                line.extend_from_slice(&rest[..nl]);
                st.line(&line);
            }
            rest = &rest[nl + 1..];
        }
        st.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_wanted_events_across_split_writes() {
        let sink = EventSink::new();
        let mut w = sink.clone();
        let text = concat!(
            "{\"t_us\":5,\"host\":\"car0\",\"e\":{\"ev\":\"send\",\"to\":\"t10\",\"len\":3}}\n",
            "{\"t_us\":7,\"host\":\"car0\",\"e\":{\"ev\":\"connected\",\"client\":1,\"tier2\":4,",
            "\"setup_us\":9,\"attempts\":1}}\n",
            "{\"t_us\":9,\"host\":\"car0\",\"e\":{\"ev\":\"frame_acked\",\"session\":1,\"frame\":0,",
            "\"latency_us\":3}}\n",
            "{\"t_us\":11,\"host\":\"car0\",\"e\":{\"ev\":\"session_lost\",\"client\":1,\"tier2\":4}}\n",
        );
        for chunk in text.as_bytes().chunks(13) {
            w.write_all(chunk).unwrap();
        }
        let events = sink.take().unwrap();
        let kinds: Vec<_> = events.iter().map(|e| (e.t_us, e.kind.clone())).collect();
        assert_eq!(
            kinds,
            [
                (7, EventKind::Connected { tier2: 4 }),
                (
                    9,
                    EventKind::FrameAcked {
                        frame: 0,
                        latency_us: 3
                    }
                ),
                (11, EventKind::SessionLost)
            ]
        );
        assert_eq!(events[0].host, "car0");
    }
}
