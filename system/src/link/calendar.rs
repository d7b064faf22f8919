//! A calendar queue of items due at simulated times: datagrams on their way.
//!
//! Time is cut into buckets of [`BUCKET_US`]; the [`RING`] buckets from the earliest pending
//! one on sit in a ring indexed by bucket number, with a bitmap of the non-empty ones, and
//! buckets further ahead wait in an ordered map until the ring reaches them. Items are
//! appended to their bucket and a bucket is sorted once, when it becomes the earliest. A push
//! or a pop costs O(1) amortised however many items are pending and touches memory in
//! sequence; a binary heap (or an ordered map) of items costs O(log n) cache misses per item,
//! and an ordered map of buckets one tree search per push. Emptied buckets keep their buffers.
//!
//! Items come out in `(due time, push order)` order: deterministic whatever they are.

use std::collections::BTreeMap;

use crate::time::Instant;

/// Width of one bucket, in microseconds.
const BUCKET_US: u64 = 32;

/// Buckets in the ring (a power of two): 8192 x 32 us, about a quarter of a second ahead.
const RING: usize = 8192;

/// One pending item: its order key, what it carries, and where its bytes are in the bucket's
/// arena.
#[derive(Clone, Copy)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    meta: T,
    offset: usize,
    len: usize,
}

/// The items due within one [`BUCKET_US`] window. Their bytes sit back to back in one arena,
/// so delivering a bucket reads memory in sequence.
#[derive(Clone)]
struct Bucket<T> {
    entries: Vec<Entry<T>>,
    bytes: Vec<u8>,
    /// `entries[next..]` is in `(at, seq)` order; before that, already delivered.
    sorted: bool,
    next: usize,
}

impl<T> Default for Bucket<T> {
    fn default() -> Self {
        Bucket {
            entries: Vec::new(),
            bytes: Vec::new(),
            sorted: false,
            next: 0,
        }
    }
}

impl<T: Copy> Bucket<T> {
    fn push(&mut self, entry: Entry<T>, data: &[u8]) {
        let entry = Entry {
            offset: self.bytes.len(),
            len: data.len(),
            ..entry
        };
        self.bytes.extend_from_slice(data);
        if self.sorted {
            // Keys only grow in `seq`, so this is an append unless `at` is earlier.
            let key = (entry.at, entry.seq);
            let pos =
                self.next + self.entries[self.next..].partition_point(|e| (e.at, e.seq) < key);
            self.entries.insert(pos, entry);
        } else {
            self.entries.push(entry);
        }
    }

    fn is_empty(&self) -> bool {
        self.next == self.entries.len()
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
        self.sorted = false;
        self.next = 0;
    }
}

/// Byte strings (datagrams) with a small `T` each, ordered by due time, then by push order.
/// See the module docs.
#[derive(Clone)]
pub struct Calendar<T> {
    /// Bucket `n` for `n` in `base..base + RING`, at `n % RING`, while it holds items.
    ring: Vec<Option<Bucket<T>>>,
    /// Bit `n % RING` set: bucket `n` of the ring holds items.
    occupied: Vec<u64>,
    /// The ring's first bucket number: no item is due in an earlier bucket.
    base: u64,
    /// Buckets at or past `base + RING`.
    far: BTreeMap<u64, Bucket<T>>,
    spare: Vec<Bucket<T>>,
    seq: u64,
    /// Items pending.
    pending: usize,
}

impl<T> Default for Calendar<T> {
    fn default() -> Self {
        Calendar {
            ring: std::iter::repeat_with(|| None).take(RING).collect(),
            occupied: vec![0; RING / 64],
            base: 0,
            far: BTreeMap::new(),
            spare: Vec::new(),
            seq: 0,
            pending: 0,
        }
    }
}

impl<T: Copy> Calendar<T> {
    /// Adds `data` with `meta`, due at `at`.
    pub fn push(&mut self, at: Instant, meta: T, data: &[u8]) {
        let seq = self.seq;
        self.seq += 1;
        self.pending += 1;
        let entry = Entry {
            at,
            seq,
            meta,
            offset: 0,
            len: 0,
        };
        // An item due before the ring's first bucket (the clock is behind the earliest
        // pending item) joins that bucket: it sorts first there, as it should.
        let n = (at.as_micros() / BUCKET_US).max(self.base);
        if n < self.base + RING as u64 {
            let slot = n as usize % RING;
            self.occupied[slot / 64] |= 1 << (slot % 64);
            // A bucket that starts takes the buffers freed last: still in cache.
            let spare = &mut self.spare;
            self.ring[slot]
                .get_or_insert_with(|| spare.pop().unwrap_or_default())
                .push(entry, data);
        } else {
            let spare = &mut self.spare;
            self.far
                .entry(n)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push(entry, data);
        }
    }

    /// The number of the first non-empty bucket of the ring, if any.
    fn first_occupied(&self) -> Option<u64> {
        let start = self.base as usize % RING;
        let words = self.occupied.len();
        for k in 0..=words {
            let w = (start / 64 + k) % words;
            let mut bits = self.occupied[w];
            if k == 0 {
                bits &= !0u64 << (start % 64);
            } else if k == words {
                bits &= !(!0u64 << (start % 64));
            }
            if bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                return Some(self.base + ((slot + RING - start) % RING) as u64);
            }
        }
        None
    }

    /// Moves the ring up to start at bucket `n` and brings in the far buckets it now covers.
    fn advance(&mut self, n: u64) {
        self.base = n;
        while let Some(entry) = self.far.first_entry() {
            let k = *entry.key();
            if k >= self.base + RING as u64 {
                break;
            }
            let slot = k as usize % RING;
            self.ring[slot] = Some(entry.remove());
            self.occupied[slot / 64] |= 1 << (slot % 64);
        }
    }

    /// The earliest bucket, sorted.
    fn front(&mut self) -> Option<&mut Bucket<T>> {
        let n = match self.first_occupied() {
            Some(n) => n,
            None => *self.far.keys().next()?,
        };
        if n != self.base {
            self.advance(n);
        }
        let bucket = self.ring[n as usize % RING].as_mut()?;
        if !bucket.sorted {
            bucket.entries.sort_unstable_by_key(|e| (e.at, e.seq));
            bucket.sorted = true;
        }
        Some(bucket)
    }

    /// When the earliest item is due.
    pub fn next_due(&mut self) -> Option<Instant> {
        self.front().map(|b| b.entries[b.next].at)
    }

    /// Hands the earliest item to `take` if it is due at or before `now`, and returns what
    /// `take` returned.
    pub fn pop_due<R>(&mut self, now: Instant, take: impl FnOnce(T, &[u8]) -> R) -> Option<R> {
        let bucket = self.front()?;
        let e = bucket.entries[bucket.next];
        if e.at > now {
            return None;
        }
        let r = take(e.meta, &bucket.bytes[e.offset..e.offset + e.len]);
        bucket.next += 1;
        if bucket.is_empty() {
            let slot = self.base as usize % RING;
            self.occupied[slot / 64] &= !(1 << (slot % 64));
            if let Some(mut done) = self.ring[slot].take() {
                done.clear();
                self.spare.push(done);
            }
        }
        self.pending -= 1;
        Some(r)
    }

    /// How many items are pending.
    pub fn len(&self) -> usize {
        self.pending
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.first_occupied().is_none() && self.far.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Instant {
        Instant::from_micros(n)
    }

    #[test]
    fn items_come_out_by_due_time_then_push_order() {
        let mut c = Calendar::default();
        // Across buckets, within one, equal times, and a push into an already sorted bucket.
        for (at, name) in [(5000, "e"), (10, "b"), (10, "c"), (3, "a"), (2000, "d")] {
            c.push(us(at), name, name.as_bytes());
        }
        fn pop(c: &mut Calendar<&'static str>, t: u64) -> Option<&'static str> {
            c.pop_due(us(t), |meta, bytes| {
                assert_eq!(bytes, meta.as_bytes());
                meta
            })
        }
        assert_eq!(c.next_due(), Some(us(3)));
        assert_eq!(pop(&mut c, 2), None);
        assert_eq!(pop(&mut c, 3), Some("a"));
        c.push(us(4), "a2", b"a2");
        c.push(us(10), "c2", b"c2");
        let mut out = Vec::new();
        while let Some(x) = pop(&mut c, 10_000) {
            out.push(x);
        }
        assert_eq!(out, ["a2", "b", "c", "c2", "d", "e"]);
        assert!(c.is_empty());
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn items_far_ahead_and_late_pushes_keep_the_order() {
        // Due times from now to several ring lengths ahead, pushed while the clock advances
        // in uneven steps (some behind the earliest pending item): everything comes out in
        // (due time, push order) order and nothing before it is due.
        let mut c = Calendar::default();
        let mut expected = Vec::new();
        let mut x = 12345u64;
        let mut rand = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let horizon = 3 * RING as u64 * BUCKET_US;
        let mut now = 0;
        let mut out = Vec::new();
        for i in 0..20_000u32 {
            let at = now + rand() % horizon;
            c.push(us(at), i, &i.to_le_bytes());
            expected.push((at, i));
            if i % 7 == 0 {
                now += rand() % 2000;
                while let Some((m, b)) = c.pop_due(us(now), |m, b| (m, b.to_vec())) {
                    assert_eq!(b, m.to_le_bytes());
                    out.push(m);
                }
            }
        }
        while let Some(m) = c.pop_due(us(u64::MAX / 2), |m, _| m) {
            out.push(m);
        }
        expected.sort();
        let in_order: Vec<u32> = expected.iter().map(|&(_, i)| i).collect();
        assert_eq!(out, in_order);
        assert!(c.is_empty());
    }

    #[test]
    fn nothing_is_released_before_it_is_due() {
        let mut c = Calendar::default();
        c.push(us(1500), 1, &[1, 1]);
        c.push(us(1100), 2, &[2]);
        let len = |c: &mut Calendar<u8>, t| c.pop_due(us(t), |m, b| (m, b.len()));
        assert_eq!(len(&mut c, 1099), None);
        assert_eq!(len(&mut c, 1100), Some((2, 1)));
        assert_eq!(len(&mut c, 1499), None);
        assert_eq!(c.next_due(), Some(us(1500)));
        assert_eq!(len(&mut c, 1500), Some((1, 2)));
    }
}
