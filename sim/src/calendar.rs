//! A calendar queue of items due at simulated times: datagrams on their way.
//!
//! Items are appended to the bucket of their due time, and a bucket is sorted once, when it
//! becomes the earliest. Pushes and pops touch memory in sequence and cost O(1) amortised
//! however many items are pending; a binary heap (or an ordered map) of them costs O(log n)
//! cache misses per item, which made the receiver of a large fleet slower per datagram than a
//! small one. Emptied buckets keep their buffers for reuse.
//!
//! Items come out in `(due time, push order)` order: deterministic whatever they are.

use std::collections::BTreeMap;

use livecam_system::time::Instant;

/// Width of one bucket, in microseconds.
const BUCKET_US: u64 = 1024;

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

/// Byte strings (datagrams) with a small `T` each, ordered by due time, then by push order.
/// See the module docs.
pub struct Calendar<T> {
    buckets: BTreeMap<u64, Bucket<T>>,
    spare: Vec<Bucket<T>>,
    seq: u64,
}

impl<T> Default for Calendar<T> {
    fn default() -> Self {
        Calendar {
            buckets: BTreeMap::new(),
            spare: Vec::new(),
            seq: 0,
        }
    }
}

impl<T: Copy> Calendar<T> {
    /// Adds `data` with `meta`, due at `at`.
    pub fn push(&mut self, at: Instant, meta: T, data: &[u8]) {
        let seq = self.seq;
        self.seq += 1;
        let spare = &mut self.spare;
        let bucket = self
            .buckets
            .entry(at.as_micros() / BUCKET_US)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        let entry = Entry {
            at,
            seq,
            meta,
            offset: bucket.bytes.len(),
            len: data.len(),
        };
        bucket.bytes.extend_from_slice(data);
        if bucket.sorted {
            // Keys only grow in `seq`, so this is an append unless `at` is earlier.
            let pos = bucket.next
                + bucket.entries[bucket.next..].partition_point(|e| (e.at, e.seq) < (at, seq));
            bucket.entries.insert(pos, entry);
        } else {
            bucket.entries.push(entry);
        }
    }

    /// The earliest bucket, sorted.
    fn front(&mut self) -> Option<&mut Bucket<T>> {
        let mut first = self.buckets.first_entry()?;
        let bucket = first.get_mut();
        if !bucket.sorted {
            bucket.entries.sort_unstable_by_key(|e| (e.at, e.seq));
            bucket.sorted = true;
        }
        Some(first.into_mut())
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
        if bucket.next == bucket.entries.len() {
            if let Some((_, mut done)) = self.buckets.pop_first() {
                done.entries.clear();
                done.bytes.clear();
                done.sorted = false;
                done.next = 0;
                self.spare.push(done);
            }
        }
        Some(r)
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
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
