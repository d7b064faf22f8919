//! Where each path of a session has got to in its first crossings (bonded uplinks, issue 21).
//!
//! A bonded camera spreads a frame's segments over two or three uplinks whose queues and
//! delays differ: segments arrive out of order *between* paths while each path keeps its own
//! order. Segment indices alone cannot tell a segment still crossing a slower path from one
//! lost, so the receiver NACKed segments that were on their way (on two 60 KB/s uplinks under
//! a 100 KB/s camera, 1,394 of 3,601 segments were sent twice with not one datagram lost) and
//! its link estimate read the reordering as loss.
//!
//! The receiver knows the path each datagram came by (its source address), and the order of a
//! first crossing is known without a sequence number on the wire: frames in order, a frame's
//! data segments by index, then its parity segments. So a position that a path has *passed*
//! (it delivered a later one) was delivered by it, or not sent on it, or lost on it; once
//! every live path has passed a position, a segment still missing there is lost. QUIC's
//! multipath extension numbers packets per path for this; here the order is in the segment
//! header already, and the wire stays as it is.
//!
//! A path is *live* while it has delivered a first crossing within `live_for` (the caller's
//! choice: the receiver uses twice its longest NACK period); a path that dies stops holding
//! anything back once that has passed, and the receiver's silence timer still bounds how long
//! a frame's tail waits. A session heard by one address holds nothing back here: the
//! receiver's rules for it are the ones it had before bonding (the segment indices say it
//! all on one path, but for a frame whose first crossing was lost whole, which the receiver
//! handles by its silence).
//!
//! Costs: at most [`MAX_PATHS`] marks per session (a new address replaces the one heard from
//! least recently, so a stranger's datagrams cannot grow it; sealed sessions reject them before
//! this anyway), and a scan of those on each first-crossing shard.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secure::paths::MAX_PATHS;
use crate::time::Instant;

/// Frame id `a` comes before `b` (ids wrap).
pub(super) fn is_before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < u32::MAX / 2
}

/// A shard's place in its frame's first crossing, counted from 1: data segment `index` is
/// `index + 1`, parity segment `index` of a frame of `count` data segments is
/// `count + index + 1`. A path at position `p` of a frame has passed every position up to `p`.
pub(super) fn position(count: u16, parity: bool, index: u16) -> u32 {
    let before = if parity { u32::from(count) } else { 0 };
    before + u32::from(index) + 1
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    from: SocketAddr,
    frame: u32,
    passed: u32,
    at: Instant,
}

impl Mark {
    fn advance(&mut self, frame: u32, position: u32) {
        if self.frame == frame {
            self.passed = self.passed.max(position);
        } else if is_before(self.frame, frame) {
            self.frame = frame;
            self.passed = position;
        }
        // An older frame's shard arriving late on this path moves nothing.
    }
}

/// The marks of one session's paths. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub(super) struct PathMarks {
    marks: Vec<Mark>,
}

impl PathMarks {
    /// A first-crossing shard at `position` of `frame` arrived by `from` at `now`.
    pub(super) fn arrived(&mut self, now: Instant, from: SocketAddr, frame: u32, position: u32) {
        if let Some(m) = self.mark_of(from) {
            m.at = now;
            m.advance(frame, position);
            return;
        }
        let mark = Mark {
            from,
            frame,
            passed: position,
            at: now,
        };
        if self.marks.len() < MAX_PATHS {
            self.marks.push(mark);
        } else if let Some(oldest) = self.marks.iter_mut().min_by_key(|m| m.at) {
            *oldest = mark;
        }
    }

    /// The client marked path `from` past `position` of `frame` (`wire::PathMark`): it carries
    /// nothing more of the frame's first crossing. The place moves as a shard's would, but the
    /// path is not kept live by it: one that carries no segments holds nothing back once its
    /// last segment is `live_for` old (a slow uplink the bond rarely uses would otherwise hold
    /// every hole back by its longer delay). An address that delivered no segment is not taken.
    pub(super) fn marked(&mut self, from: SocketAddr, frame: u32, position: u32) {
        if let Some(m) = self.mark_of(from) {
            m.advance(frame, position);
        }
    }

    /// The mark of path `from`, if it delivered a segment.
    fn mark_of(&mut self, from: SocketAddr) -> Option<&mut Mark> {
        self.marks.iter_mut().find(|m| m.from == from)
    }

    fn live(&self, now: Instant, live_for: Duration) -> impl Iterator<Item = &Mark> {
        self.marks
            .iter()
            .filter(move |m| now.saturating_duration_since(m.at) <= live_for)
    }

    /// Whether the session has been heard by more than one path.
    pub(super) fn several(&self) -> bool {
        self.marks.len() > 1
    }

    /// The positions of `frame` that every live path has passed (`u32::MAX` when none is
    /// still in or before it, or the session has one path).
    pub(super) fn passed(&self, now: Instant, live_for: Duration, frame: u32) -> u32 {
        if !self.several() {
            return u32::MAX;
        }
        self.live(now, live_for)
            .map(|m| {
                if m.frame == frame {
                    m.passed
                } else if is_before(frame, m.frame) {
                    u32::MAX
                } else {
                    0
                }
            })
            .min()
            .unwrap_or(u32::MAX)
    }

    /// The earliest frame a live path is in: every frame before it is over on every path.
    /// `None` when no path is live, or the session has one path.
    pub(super) fn floor(&self, now: Instant, live_for: Duration) -> Option<u32> {
        if !self.several() {
            return None;
        }
        self.live(now, live_for)
            .map(|m| m.frame)
            .reduce(|a, b| if is_before(b, a) { b } else { a })
    }

    /// Whether a live path is still delivering frames before `frame` (what `frame` has on it
    /// waits behind them: its silence is no sign of loss). Never with one path.
    pub(super) fn behind(&self, now: Instant, live_for: Duration, frame: u32) -> bool {
        self.several() && self.live(now, live_for).any(|m| is_before(m.frame, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 7000))
    }

    #[test]
    fn one_path_holds_nothing_back() {
        let mut m = PathMarks::default();
        m.arrived(ms(0), addr(1), 5, position(8, false, 2));
        assert!(!m.several());
        for frame in [4, 5, 6] {
            assert_eq!(m.passed(ms(1), LIVE, frame), u32::MAX);
            assert!(!m.behind(ms(1), LIVE, frame));
        }
        assert_eq!(m.floor(ms(1), LIVE), None);
    }

    #[test]
    fn a_position_is_passed_once_every_live_path_is_beyond_it() {
        let mut m = PathMarks::default();
        // The fast path has the frame's segments 0, 2 and 4; the slow one only 1 so far.
        for i in [0, 2, 4] {
            m.arrived(ms(10), addr(1), 7, position(6, false, i));
        }
        m.arrived(ms(12), addr(2), 7, position(6, false, 1));
        assert!(m.several());
        // Segment 3 may still be on the slow path: only 0 and 1 are passed everywhere.
        assert_eq!(m.passed(ms(13), LIVE, 7), 2);
        assert_eq!(m.floor(ms(13), LIVE), Some(7));
        // The slow path delivers the frame's first parity segment: it has passed every data
        // segment, so a data segment still missing is lost.
        m.arrived(ms(20), addr(2), 7, position(6, true, 0));
        assert_eq!(m.passed(ms(21), LIVE, 7), 5);
        m.arrived(ms(22), addr(1), 8, position(6, false, 0));
        assert_eq!(m.passed(ms(23), LIVE, 7), 7);
        // A late shard of an older frame moves no mark back; the slow path, still in frame
        // 7, has passed nothing of frame 8.
        m.arrived(ms(24), addr(1), 7, position(6, false, 5));
        assert_eq!(m.passed(ms(25), LIVE, 8), 0);
        m.arrived(ms(26), addr(2), 8, position(6, false, 2));
        assert_eq!(m.passed(ms(27), LIVE, 8), 1);
        assert!(!m.behind(ms(27), LIVE, 8));
        m.arrived(ms(28), addr(1), 9, position(6, false, 0));
        assert!(m.behind(ms(28), LIVE, 9));
        assert!(!m.behind(ms(28), LIVE, 8));
    }

    #[test]
    fn a_path_that_went_quiet_holds_nothing_back() {
        let mut m = PathMarks::default();
        m.arrived(ms(0), addr(2), 3, position(4, false, 0));
        m.arrived(ms(50), addr(1), 4, position(4, false, 3));
        assert_eq!(m.passed(ms(60), LIVE, 3), 1);
        assert!(m.behind(ms(60), LIVE, 4));
        // 100 ms after its last arrival the slow path no longer counts.
        assert_eq!(m.passed(ms(101), LIVE, 3), u32::MAX);
        assert_eq!(m.passed(ms(101), LIVE, 4), 4);
        assert!(!m.behind(ms(101), LIVE, 4));
        assert_eq!(m.floor(ms(101), LIVE), Some(4));
        assert_eq!(m.floor(ms(200), LIVE), None);
    }

    #[test]
    fn a_mark_moves_a_path_on_without_keeping_it_live() {
        let mut m = PathMarks::default();
        m.arrived(ms(0), addr(1), 3, position(4, false, 1));
        m.arrived(ms(1), addr(2), 3, position(4, false, 0));
        // The slow path's mark: it carries nothing more of frame 3.
        m.marked(addr(2), 3, position(4, false, 3));
        assert_eq!(m.passed(ms(2), LIVE, 3), 2);
        m.marked(addr(1), 3, position(4, false, 3));
        assert_eq!(m.passed(ms(2), LIVE, 3), 4);
        // Marks of frame 4 only: both paths have passed it, and neither delivered anything
        // since 1 ms, so 100 ms later neither holds anything back.
        m.marked(addr(1), 4, position(4, true, 1));
        assert_eq!(m.passed(ms(50), LIVE, 4), 0);
        m.marked(addr(2), 4, position(4, true, 1));
        assert_eq!(m.passed(ms(50), LIVE, 4), 6);
        assert_eq!(m.floor(ms(102), LIVE), None);
        // A mark from an address that delivered no segment is not taken.
        m.marked(addr(3), 9, 1);
        assert_eq!(m.marks.len(), 2);
    }

    #[test]
    fn strangers_cannot_grow_the_marks_and_frame_ids_wrap() {
        let mut m = PathMarks::default();
        for n in 1..=20u8 {
            m.arrived(ms(u64::from(n)), addr(n), u32::MAX, 1);
        }
        assert_eq!(m.marks.len(), MAX_PATHS);
        // The newest addresses are the ones kept.
        assert!(m.marks.iter().all(|k| k.from.ip() >= addr(18).ip()));
        m.arrived(ms(30), addr(20), 0, 1);
        assert_eq!(m.passed(ms(30), LIVE, u32::MAX), 1);
        assert_eq!(m.floor(ms(30), LIVE), Some(u32::MAX));
    }
}
