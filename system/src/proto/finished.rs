//! Which frames of a session a receiver has finished (delivered or dropped), over a window
//! of recent frame ids.
//!
//! The receiver asks on every segment whether its frame is already finished (a duplicate
//! to re-acknowledge, or a stale one to ignore). Frame ids grow by one per frame, so the
//! recent ones fit a window `[floor, floor + capacity)` held as two bitsets: one cache line
//! or so per session and O(1) per question, where an ordered map of a thousand ids cost a
//! few cache-missing node visits per segment (and a few KB per session). A frame finishing
//! past the window's end slides the window up; ids below `floor` are forgotten (stale).

/// How a frame finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    Delivered,
    Dropped,
}

/// The finished frames of one session. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct FinishedWindow {
    /// Ids below this are older than anything remembered.
    floor: u32,
    /// Bit `id % capacity`: frame `id` (within the window) finished.
    done: Vec<u64>,
    /// Bit `id % capacity`: it finished delivered (else dropped).
    delivered: Vec<u64>,
}

impl FinishedWindow {
    /// A window of at least `ids` frame ids (rounded up to a multiple of 64, at least 64).
    pub(crate) fn new(ids: usize) -> Self {
        let words = ids.div_ceil(64).clamp(1, 1 << 20);
        FinishedWindow {
            floor: 0,
            done: vec![0; words],
            delivered: vec![0; words],
        }
    }

    /// Frame ids remembered.
    fn capacity(&self) -> u64 {
        self.done.len() as u64 * 64
    }

    /// Ids below this are forgotten: a segment of such a frame is stale.
    pub(crate) fn floor(&self) -> u32 {
        self.floor
    }

    fn bit(&self, id: u32) -> (usize, u64) {
        let i = u64::from(id) % self.capacity();
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn in_window(&self, id: u32) -> bool {
        id >= self.floor && u64::from(id) < u64::from(self.floor) + self.capacity()
    }

    /// How frame `id` finished, if it did and is remembered.
    pub(crate) fn get(&self, id: u32) -> Option<Finished> {
        if !self.in_window(id) {
            return None;
        }
        let (w, b) = self.bit(id);
        if self.done[w] & b == 0 {
            None
        } else if self.delivered[w] & b != 0 {
            Some(Finished::Delivered)
        } else {
            Some(Finished::Dropped)
        }
    }

    /// Notes that frame `id` finished. An id below the floor is already forgotten; one past
    /// the window's end slides it up so that `id` is its last.
    pub(crate) fn insert(&mut self, id: u32, how: Finished) {
        if id < self.floor {
            return;
        }
        let end = u64::from(self.floor) + self.capacity();
        if u64::from(id) >= end {
            let floor = u64::from(id) + 1 - self.capacity();
            self.forget_below(floor as u32);
        }
        let (w, b) = self.bit(id);
        self.done[w] |= b;
        match how {
            Finished::Delivered => self.delivered[w] |= b,
            Finished::Dropped => self.delivered[w] &= !b,
        }
    }

    /// Moves the floor up to `floor`, clearing the ids that leave the window.
    fn forget_below(&mut self, floor: u32) {
        let leaving = u64::from(floor - self.floor);
        if leaving >= self.capacity() {
            self.done.fill(0);
            self.delivered.fill(0);
        } else {
            for id in self.floor..floor {
                let (w, b) = self.bit(id);
                self.done[w] &= !b;
                self.delivered[w] &= !b;
            }
        }
        self.floor = floor;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// The same rules over an ordered map: the window `[floor, floor + cap)`.
    fn model_insert(
        m: &mut BTreeMap<u32, Finished>,
        floor: &mut u32,
        cap: u64,
        id: u32,
        how: Finished,
    ) {
        if id < *floor {
            return;
        }
        if u64::from(id) >= u64::from(*floor) + cap {
            *floor = (u64::from(id) + 1 - cap) as u32;
            m.retain(|&k, _| k >= *floor);
        }
        m.insert(id, how);
    }

    proptest! {
        /// Mostly sequential ids with jumps, repeats and old ones: the bitsets answer as the
        /// ordered map does, for every id asked.
        #[test]
        fn answers_as_an_ordered_map_of_the_window(
            steps in proptest::collection::vec((0u32..3000, any::<bool>()), 1..400),
            ids in 64usize..300,
        ) {
            let mut w = FinishedWindow::new(ids);
            let cap = w.capacity();
            let mut model = BTreeMap::new();
            let mut floor = 0u32;
            let mut next = 0u32;
            for (jump, delivered) in steps {
                // Ids go up by one mostly; now and then far ahead or back.
                let id = match jump % 10 {
                    0 => next.saturating_sub(jump / 10),
                    1 => next + jump,
                    _ => next,
                };
                next = next.max(id) + 1;
                let how = if delivered { Finished::Delivered } else { Finished::Dropped };
                w.insert(id, how);
                model_insert(&mut model, &mut floor, cap, id, how);
                prop_assert_eq!(w.floor(), floor);
                for q in floor.saturating_sub(70)..=next + 70 {
                    prop_assert_eq!(w.get(q), model.get(&q).copied(), "id {}", q);
                }
            }
        }
    }

    #[test]
    fn a_frame_finished_again_takes_its_new_outcome_and_huge_ids_do_not_overflow() {
        let mut w = FinishedWindow::new(64);
        w.insert(3, Finished::Dropped);
        assert_eq!(w.get(3), Some(Finished::Dropped));
        w.insert(3, Finished::Delivered);
        assert_eq!(w.get(3), Some(Finished::Delivered));
        w.insert(u32::MAX, Finished::Delivered);
        assert_eq!(w.floor(), u32::MAX - 63);
        assert_eq!(w.get(u32::MAX), Some(Finished::Delivered));
        assert_eq!(w.get(3), None);
    }
}
