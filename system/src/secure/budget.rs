//! What strangers may make a server spend: a token bucket per source address and one for the
//! server as a whole, charged before any expensive work (a handshake's Diffie-Hellman, a
//! signature check) is done for a datagram. The address table is bounded.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::time::Instant;

/// Source addresses with a bucket in use; past this, new addresses wait for idle ones to go.
pub const MAX_ADDRESSES: usize = 4096;
/// How often a full address table is swept of idle (refilled) buckets.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// A token bucket: `burst` at most, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: f64, per_second: f64) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_second).min(burst);
        self.at = self.at.max(now);
    }
}

/// How much work an [`AddressBudget`] allows: per source address and in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub address_burst: f64,
    pub address_per_second: f64,
    pub total_burst: f64,
    pub total_per_second: f64,
}

/// A budget per source address and in all (see the module docs).
#[derive(Debug)]
pub struct AddressBudget {
    limits: Limits,
    addresses: BTreeMap<IpAddr, Bucket>,
    total: Option<Bucket>,
    last_sweep: Option<Instant>,
}

impl AddressBudget {
    pub fn new(limits: Limits) -> Self {
        AddressBudget {
            limits,
            addresses: BTreeMap::new(),
            total: None,
            last_sweep: None,
        }
    }

    /// Source addresses holding a bucket (at most [`MAX_ADDRESSES`]).
    pub fn addresses_tracked(&self) -> usize {
        self.addresses.len()
    }

    /// Charges one unit of work to `from` and to the whole; false when either is out (and
    /// then nothing is charged).
    pub fn charge(&mut self, now: Instant, from: IpAddr) -> bool {
        let l = self.limits;
        if !self.addresses.contains_key(&from) && self.addresses.len() >= MAX_ADDRESSES {
            let due = self.last_sweep.is_none_or(|t| now >= t + SWEEP_EVERY);
            if !due {
                return false;
            }
            self.last_sweep = Some(now);
            self.addresses.retain(|_, b| {
                b.refill(now, l.address_burst, l.address_per_second);
                b.tokens < l.address_burst
            });
            if self.addresses.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let total = self
            .total
            .get_or_insert_with(|| Bucket::full(now, l.total_burst));
        total.refill(now, l.total_burst, l.total_per_second);
        if total.tokens < 1.0 {
            return false;
        }
        let bucket = self
            .addresses
            .entry(from)
            .or_insert_with(|| Bucket::full(now, l.address_burst));
        bucket.refill(now, l.address_burst, l.address_per_second);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        total.tokens -= 1.0;
        true
    }
}
