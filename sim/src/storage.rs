//! The storage model of a simulated tier-2: frames commit a fixed latency after they arrive,
//! in arrival order, and are then reported back so the tier-2 sends `STORED`. The database
//! itself is the run's tally: every commit is recorded as a `FrameStored` role event, and a
//! frame committed twice is one row there. Uncommitted writes die with their tier-2's host.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use livecam_system::role::{Backhaul, Delivered, StoredFrame};
use livecam_system::time::Instant;

/// See the [module docs](self).
#[derive(Debug)]
pub struct StorageModel {
    latency: Duration,
    pending: VecDeque<(Instant, StoredFrame)>,
}

impl StorageModel {
    pub fn new(latency: Duration) -> Self {
        StorageModel {
            latency,
            pending: VecDeque::new(),
        }
    }
}

impl Backhaul for StorageModel {
    fn session_opened(&mut self, _now: Instant, _session: u32, _peer: SocketAddr) {}

    fn frame_delivered(&mut self, now: Instant, f: &Delivered<'_>) {
        self.pending.push_back((
            now + self.latency,
            StoredFrame {
                session: f.session,
                seq: f.seq,
                backfill: f.backfill,
            },
        ));
    }

    fn frame_dropped(&mut self, _now: Instant, _session: u32, _frame: u32) {}

    fn session_closed(&mut self, _now: Instant, _session: u32) {}

    fn poll_stored(&mut self, now: Instant, out: &mut Vec<StoredFrame>) {
        while let Some(&(at, f)) = self.pending.front() {
            if at > now {
                break;
            }
            self.pending.pop_front();
            out.push(f);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.pending.front().map(|&(at, _)| at)
    }
}
