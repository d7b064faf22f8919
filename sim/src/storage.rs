//! The storage model of a simulated tier-2: frames commit a fixed latency after they arrive
//! (or when a storage stall ends), in arrival order, and are then reported back so the tier-2
//! sends `STORED`. The database
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
    /// `[from, until)`: no commit completes in there (a `stall_storage` fault); one due
    /// then completes at `until`.
    stalls: Vec<(Instant, Instant)>,
    pending: VecDeque<(Instant, StoredFrame)>,
}

impl StorageModel {
    pub fn new(latency: Duration, stalls: Vec<(Instant, Instant)>) -> Self {
        StorageModel {
            latency,
            stalls,
            pending: VecDeque::new(),
        }
    }

    /// When a write arriving at `now` commits: after the latency, past any stall, and not
    /// before an earlier write (commits keep arrival order).
    fn commit_at(&self, now: Instant) -> Instant {
        let mut at = now + self.latency;
        for &(from, until) in &self.stalls {
            if at >= from && at < until {
                at = until;
            }
        }
        self.pending.back().map_or(at, |&(last, _)| at.max(last))
    }
}

impl Backhaul for StorageModel {
    fn session_opened(&mut self, _now: Instant, _session: u32, _peer: SocketAddr) {}

    fn frame_delivered(&mut self, now: Instant, f: &Delivered<'_>) {
        self.pending.push_back((
            self.commit_at(now),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_holds_commits_until_it_ends_and_order_is_kept() {
        let ms = Instant::from_millis;
        let mut s = StorageModel::new(Duration::from_millis(20), vec![(ms(1_000), ms(3_000))]);
        let frame = |seq| Delivered {
            session: 1,
            frame: seq as u32,
            seq,
            data: &[],
            segment_size: 500,
            segments: 1,
            failed: 0,
            reassembly: Duration::ZERO,
            backfill: false,
        };
        s.frame_delivered(ms(500), &frame(1));
        s.frame_delivered(ms(990), &frame(2)); // due 1010: inside the stall
        s.frame_delivered(ms(2_000), &frame(3));
        s.frame_delivered(ms(3_500), &frame(4));
        let mut out = Vec::new();
        s.poll_stored(ms(2_999), &mut out);
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(s.poll_timeout(), Some(ms(3_000)));
        out.clear();
        s.poll_stored(ms(3_000), &mut out);
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), [2, 3]);
        out.clear();
        s.poll_stored(ms(3_520), &mut out);
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), [4]);
    }
}
