//! Time-varying link capacity: Mahimahi packet-delivery traces and a seeded synthetic cellular
//! model, both as one [`CapacityTrace`] of delivery opportunities.
//!
//! A cellular uplink does not serialize at a constant rate: its capacity comes and goes from one
//! tenth of a second to the next, with seconds-long dips. Mahimahi (`mm-link`) describes such a
//! link by a *trace*: one line per opportunity for one 1500-byte packet to leave the bottleneck
//! queue, the number being the millisecond of the opportunity (several in one millisecond repeat
//! it), non-decreasing, the whole repeating with a period equal to the last timestamp. A
//! [`Link`](super::Link) whose [`LinkConfig::capacity`](super::LinkConfig::capacity) is set is
//! driven by those opportunities instead of a constant rate (see the [module docs](super)).
//!
//! The parser is written here because no crate reads Mahimahi traces; the format is a list of
//! numbers. Every error gives the 1-based line ([`TraceError::line`]), and nothing in a file can
//! make it panic. Recorded traces (e.g. the Saturator uplinks in mahimahi's `traces/`) are GPLv3
//! data: they are passed by path and never copied into this repository. For committed tests and
//! scenarios [`CellularSpec`] generates a trace of the same shape from a seed.
//!
//! A trace keeps only its sorted timestamps behind an [`Arc`], so a 155 000-line trace costs
//! 620 KB once and nothing per clone, and every query is a binary search.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::error::LinkConfigError;
use crate::time::Instant;

/// Wire bytes (IP and UDP headers included) one delivery opportunity carries: Mahimahi's
/// packet size.
pub const OPPORTUNITY_BYTES: usize = 1500;

/// The largest trace file read, in bytes (a 2-hour trace at 10 MB/s is ~40 MB).
pub const MAX_TRACE_FILE_BYTES: u64 = 64 << 20;

/// Most opportunities per period a generated trace may have (64 MB of timestamps).
pub const MAX_OPPORTUNITIES: usize = 1 << 24;

/// The longest period, in seconds, a generated trace may have.
pub const MAX_PERIOD_S: f64 = 3600.0;

/// Delivery opportunities of one period, repeating forever from the link's [`Instant::ZERO`].
///
/// Opportunity `i` of cycle `k` is at `k * period + timestamp[i]` milliseconds; opportunities
/// are numbered globally (`k * len + i`) in time order. Cheap to clone (the timestamps are
/// shared).
///
/// Serializes as the list of timestamps (for [`CapacitySpec::OpportunitiesMs`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u32>", into = "Vec<u32>")]
pub struct CapacityTrace {
    /// Millisecond of each opportunity in one period, non-decreasing; the last is the period
    /// (> 0). Never empty.
    ms: Arc<[u32]>,
}

impl fmt::Debug for CapacityTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapacityTrace")
            .field("opportunities", &self.ms.len())
            .field("period_ms", &self.period_ms())
            .finish()
    }
}

impl CapacityTrace {
    /// Parses Mahimahi trace text: one non-negative integer (milliseconds) per line,
    /// non-decreasing, the last above 0. Surrounding spaces and blank lines at the end are
    /// ignored; a blank line followed by more numbers is an error.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut ms: Vec<u32> = Vec::new();
        let mut blank_since: Option<usize> = None;
        let mut lines = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            lines = line;
            let t = raw.trim();
            if t.is_empty() {
                blank_since.get_or_insert(line);
                continue;
            }
            if let Some(blank) = blank_since {
                return Err(TraceError::NotATimestamp {
                    line: blank,
                    text: String::new(),
                });
            }
            let value = parse_ms(t).ok_or_else(|| TraceError::NotATimestamp {
                line,
                text: t.chars().take(40).collect(),
            })?;
            if let Some(&previous) = ms.last() {
                if value < previous {
                    return Err(TraceError::Unsorted {
                        line,
                        value,
                        previous,
                    });
                }
            }
            ms.push(value);
        }
        match ms.last() {
            None => Err(TraceError::Empty),
            Some(0) => Err(TraceError::ZeroPeriod {
                line: blank_since.map_or(lines, |b| b - 1),
            }),
            Some(_) => Ok(CapacityTrace { ms: ms.into() }),
        }
    }

    /// Reads and parses the trace file at `path` (relative to the current directory unless
    /// absolute). Errors name the path, and the line for a bad one.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CapacityError> {
        let path = path.as_ref();
        let read_err = |source| CapacityError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_TRACE_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        let parse_err = |error| CapacityError::Parse {
            path: path.to_path_buf(),
            error,
        };
        if bytes.len() as u64 > MAX_TRACE_FILE_BYTES {
            return Err(parse_err(TraceError::TooLarge {
                limit: MAX_TRACE_FILE_BYTES,
            }));
        }
        let text = String::from_utf8_lossy(&bytes);
        Self::parse(&text).map_err(parse_err)
    }

    /// A trace from opportunity timestamps in milliseconds, checked as [`CapacityTrace::parse`]
    /// checks a file (line numbers are 1-based positions in `ms`).
    pub fn from_millis(ms: &[u32]) -> Result<Self, TraceError> {
        for (i, pair) in ms.windows(2).enumerate() {
            if pair[1] < pair[0] {
                return Err(TraceError::Unsorted {
                    line: i + 2,
                    value: pair[1],
                    previous: pair[0],
                });
            }
        }
        match ms.last() {
            None => Err(TraceError::Empty),
            Some(0) => Err(TraceError::ZeroPeriod { line: ms.len() }),
            Some(_) => Ok(CapacityTrace { ms: ms.into() }),
        }
    }

    /// Opportunities in one period.
    pub fn opportunities(&self) -> usize {
        self.ms.len()
    }

    /// The period in milliseconds: the last timestamp (> 0).
    pub fn period_ms(&self) -> u64 {
        u64::from(self.ms.last().copied().unwrap_or(1)).max(1)
    }

    /// The long-run mean capacity in wire bytes per second.
    pub fn mean_bytes_per_s(&self) -> f64 {
        (self.ms.len() * OPPORTUNITY_BYTES) as f64 * 1000.0 / self.period_ms() as f64
    }

    /// Wire bytes the opportunities in `[t0, t1)` can carry (0 when `t1 <= t0`). The trace's
    /// time origin is [`Instant::ZERO`].
    pub fn bytes_between(&self, t0: Instant, t1: Instant) -> u64 {
        if t1 <= t0 {
            return 0;
        }
        let n = self.first_at_or_after(t1) - self.first_at_or_after(t0);
        n.saturating_mul(OPPORTUNITY_BYTES as u64)
    }

    /// The global number of the first opportunity at or after `t`.
    pub(crate) fn first_at_or_after(&self, t: Instant) -> u64 {
        self.first_from_ms(t.as_micros().div_ceil(1000))
    }

    /// The global number of the first opportunity strictly after `t`.
    pub(crate) fn first_after(&self, t: Instant) -> u64 {
        self.first_from_ms(t.as_micros() / 1000 + 1)
    }

    /// The global number of the first opportunity at millisecond `ms` or later.
    fn first_from_ms(&self, ms: u64) -> u64 {
        let period = self.period_ms();
        let (mut cycle, mut offset) = (ms / period, ms % period);
        if offset == 0 && cycle > 0 {
            // The previous cycle's last opportunities (at its period) are at `ms` too.
            cycle -= 1;
            offset = period;
        }
        // The last timestamp is the period, at least any offset: the search lands inside.
        let i = self.ms.partition_point(|&m| u64::from(m) < offset) as u64;
        cycle.saturating_mul(self.ms.len() as u64).saturating_add(i)
    }

    /// When global opportunity `n` happens.
    pub(crate) fn time_of(&self, n: u64) -> Instant {
        let len = self.ms.len() as u64;
        let ms = (n / len)
            .saturating_mul(self.period_ms())
            .saturating_add(u64::from(self.ms[(n % len) as usize]));
        Instant::from_millis(ms)
    }
}

impl TryFrom<Vec<u32>> for CapacityTrace {
    type Error = TraceError;

    fn try_from(ms: Vec<u32>) -> Result<Self, TraceError> {
        CapacityTrace::from_millis(&ms)
    }
}

impl From<CapacityTrace> for Vec<u32> {
    fn from(t: CapacityTrace) -> Self {
        t.ms.to_vec()
    }
}

/// `text` as a whole number of milliseconds that fits a `u32`: digits only.
fn parse_ms(text: &str) -> Option<u32> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// What is wrong with a trace's text; every variant but [`TraceError::TooLarge`] knows its
/// 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TraceError {
    /// No line at all.
    #[error("line 1: empty trace: a trace needs at least one delivery opportunity")]
    Empty,
    /// A line that is not a whole number of milliseconds within `0..=4294967295` (or a blank
    /// line before more numbers).
    #[error("line {line}: {text:?} is not a whole number of milliseconds")]
    NotATimestamp {
        /// The 1-based line.
        line: usize,
        /// Its text, trimmed (at most 40 characters).
        text: String,
    },
    /// A timestamp below the one before it.
    #[error("line {line}: {value} ms comes before the previous line's {previous} ms (timestamps must not decrease)")]
    Unsorted {
        /// The 1-based line.
        line: usize,
        /// Its timestamp.
        value: u32,
        /// The previous line's.
        previous: u32,
    },
    /// The last timestamp is 0: the trace has no period to repeat with.
    #[error(
        "line {line}: the last timestamp is 0, so the trace has no period (it must end above 0)"
    )]
    ZeroPeriod {
        /// The 1-based line of the last timestamp.
        line: usize,
    },
    /// The file is larger than [`MAX_TRACE_FILE_BYTES`].
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

impl TraceError {
    /// The 1-based line at fault (1 for an empty trace, 0 for a file too large).
    pub fn line(&self) -> usize {
        match self {
            TraceError::Empty => 1,
            TraceError::NotATimestamp { line, .. }
            | TraceError::Unsorted { line, .. }
            | TraceError::ZeroPeriod { line } => *line,
            TraceError::TooLarge { .. } => 0,
        }
    }
}

/// A capacity that could not be built: a trace file that cannot be read or parsed, or a bad
/// generator parameter. Displayed as `capacity.<form>: ...`.
#[derive(Debug, Error)]
pub enum CapacityError {
    /// The trace file could not be read.
    #[error("capacity.trace {path:?}: {source}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The trace file is not a valid trace.
    #[error("capacity.trace {path:?}: {error}")]
    Parse {
        /// The path as given.
        path: PathBuf,
        /// What is wrong, with the line.
        #[source]
        error: TraceError,
    },
    /// A synthetic generator parameter out of range; its field is named
    /// `capacity.cellular.<knob>`.
    #[error("{0}")]
    Cellular(#[from] LinkConfigError),
}

/// Where a link's capacity comes from, as written in a configuration:
/// `{ trace = "path" }`, `{ cellular = { mean_bytes_per_s = 250000.0, seed = 7 } }`, or a
/// short trace inline, `{ opportunities_ms = [1, 1, 5, 10] }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CapacitySpec {
    /// A Mahimahi trace file, relative to the current directory unless absolute.
    Trace(PathBuf),
    /// The seeded synthetic cellular model.
    Cellular(CellularSpec),
    /// A trace given inline: its timestamps in milliseconds, as the lines of a file.
    OpportunitiesMs(CapacityTrace),
}

/// A link's time-varying capacity: its [`CapacitySpec`] and the opportunities it stands for,
/// read or generated once when the capacity is built (so a bad file fails the configuration,
/// not the run).
///
/// Serializes as its spec and deserializes by building it again, so a configuration holding one
/// stays `Clone + PartialEq + Serialize + Deserialize`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "CapacitySpec", into = "CapacitySpec")]
pub struct Capacity {
    /// Behind an [`Arc`] so a configuration stays small and cheap to clone.
    inner: Arc<CapacityInner>,
}

#[derive(Debug, PartialEq)]
struct CapacityInner {
    spec: CapacitySpec,
    trace: CapacityTrace,
}

impl PartialEq for Capacity {
    /// The same spec and the same opportunities (a file read twice is compared by content).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner == other.inner
    }
}

impl Capacity {
    /// Reads the trace file or runs the generator of `spec`.
    pub fn new(spec: CapacitySpec) -> Result<Self, CapacityError> {
        let trace = match &spec {
            CapacitySpec::Trace(path) => CapacityTrace::load(path)?,
            CapacitySpec::Cellular(c) => c.generate()?,
            CapacitySpec::OpportunitiesMs(t) => t.clone(),
        };
        Ok(Capacity {
            inner: Arc::new(CapacityInner { spec, trace }),
        })
    }

    /// A Mahimahi trace file: see [`CapacityTrace::load`].
    pub fn trace_file(path: impl Into<PathBuf>) -> Result<Self, CapacityError> {
        Self::new(CapacitySpec::Trace(path.into()))
    }

    /// The seeded synthetic cellular model: see [`CellularSpec::generate`].
    pub fn cellular(spec: CellularSpec) -> Result<Self, CapacityError> {
        Self::new(CapacitySpec::Cellular(spec))
    }

    /// A trace already in memory (it serializes inline, as `opportunities_ms`).
    pub fn from_trace(trace: CapacityTrace) -> Self {
        Capacity {
            inner: Arc::new(CapacityInner {
                spec: CapacitySpec::OpportunitiesMs(trace.clone()),
                trace,
            }),
        }
    }

    /// Where it came from.
    pub fn spec(&self) -> &CapacitySpec {
        &self.inner.spec
    }

    /// Its delivery opportunities.
    pub fn trace(&self) -> &CapacityTrace {
        &self.inner.trace
    }
}

impl TryFrom<CapacitySpec> for Capacity {
    type Error = CapacityError;

    fn try_from(spec: CapacitySpec) -> Result<Self, CapacityError> {
        Capacity::new(spec)
    }
}

impl From<Capacity> for CapacitySpec {
    fn from(c: Capacity) -> Self {
        c.inner.spec.clone()
    }
}

/// The seeded synthetic cellular uplink: a rate per slot (100 ms by default) following a
/// mean-reverting log-normal random walk, with occasional outages of a few seconds at a low
/// rate, scaled so one period averages `mean_bytes_per_s`, then turned into 1500-byte delivery
/// opportunities. Shaped after recorded LTE uplinks (240 KB/s to 1.7 MB/s on average,
/// seconds-long dips below 35 KB/s); a function of its fields only.
///
/// In TOML only `mean_bytes_per_s` and `seed` are required:
///
/// ```toml
/// capacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7, outage_probability = 0.01 } }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellularSpec {
    /// Long-run mean capacity in wire bytes per second (`> 0`).
    pub mean_bytes_per_s: f64,
    /// Seed of the generator ([`ChaCha8Rng`]).
    pub seed: u64,
    /// Length of the generated trace in seconds; it repeats after that (default 60,
    /// `0.001..=3600`).
    #[serde(default = "default_period_s")]
    pub period_s: f64,
    /// Length of a slot of constant rate in milliseconds (default 100, `>= 1`).
    #[serde(default = "default_slot_ms")]
    pub slot_ms: u32,
    /// Standard deviation of the natural log of the rate outside outages (default 0.5; 0 for
    /// a constant rate between outages).
    #[serde(default = "default_variability")]
    pub variability: f64,
    /// How long the rate remembers itself, in seconds: the random walk's correlation time
    /// (default 2, `> 0`).
    #[serde(default = "default_coherence_s")]
    pub coherence_s: f64,
    /// Probability, per slot, that an outage begins (default 0.005: about one every 20 s with
    /// 100 ms slots; `0..=1`).
    #[serde(default = "default_outage_probability")]
    pub outage_probability: f64,
    /// Mean length of an outage in seconds (default 2, `> 0`).
    #[serde(default = "default_outage_mean_s")]
    pub outage_mean_s: f64,
    /// Rate during an outage in bytes per second (default 20 000, `>= 0`, below
    /// `mean_bytes_per_s`).
    #[serde(default = "default_outage_bytes_per_s")]
    pub outage_bytes_per_s: f64,
}

fn default_period_s() -> f64 {
    60.0
}
fn default_slot_ms() -> u32 {
    100
}
fn default_variability() -> f64 {
    0.5
}
fn default_coherence_s() -> f64 {
    2.0
}
fn default_outage_probability() -> f64 {
    0.005
}
fn default_outage_mean_s() -> f64 {
    2.0
}
fn default_outage_bytes_per_s() -> f64 {
    20_000.0
}

impl CellularSpec {
    /// The model with its default knobs, `mean_bytes_per_s` and `seed`.
    pub fn new(mean_bytes_per_s: f64, seed: u64) -> Self {
        CellularSpec {
            mean_bytes_per_s,
            seed,
            period_s: default_period_s(),
            slot_ms: default_slot_ms(),
            variability: default_variability(),
            coherence_s: default_coherence_s(),
            outage_probability: default_outage_probability(),
            outage_mean_s: default_outage_mean_s(),
            outage_bytes_per_s: default_outage_bytes_per_s(),
        }
    }

    /// Checks every knob; errors name it as `capacity.cellular.<knob>`.
    pub fn validate(&self) -> Result<(), LinkConfigError> {
        let positive = |field, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(LinkConfigError::NotPositive { field, value })
            }
        };
        positive("capacity.cellular.mean_bytes_per_s", self.mean_bytes_per_s)?;
        positive("capacity.cellular.period_s", self.period_s)?;
        if !(0.001..=MAX_PERIOD_S).contains(&self.period_s) {
            return Err(LinkConfigError::OutOfRange {
                field: "capacity.cellular.period_s",
                message: format!("must be within 0.001..={MAX_PERIOD_S} seconds"),
            });
        }
        let opportunities = self.mean_bytes_per_s * self.period_s / OPPORTUNITY_BYTES as f64;
        if opportunities > MAX_OPPORTUNITIES as f64 {
            return Err(LinkConfigError::OutOfRange {
                field: "capacity.cellular.mean_bytes_per_s",
                message: format!(
                    "times period_s gives more than {MAX_OPPORTUNITIES} opportunities of \
                     {OPPORTUNITY_BYTES} bytes"
                ),
            });
        }
        if self.slot_ms == 0 {
            return Err(LinkConfigError::NotPositive {
                field: "capacity.cellular.slot_ms",
                value: 0.0,
            });
        }
        if !(self.variability.is_finite() && (0.0..=5.0).contains(&self.variability)) {
            return Err(LinkConfigError::OutOfRange {
                field: "capacity.cellular.variability",
                message: "must be within 0..=5".into(),
            });
        }
        positive("capacity.cellular.coherence_s", self.coherence_s)?;
        if !(0.0..=1.0).contains(&self.outage_probability) {
            return Err(LinkConfigError::NotAProbability {
                field: "capacity.cellular.outage_probability",
                value: self.outage_probability,
            });
        }
        positive("capacity.cellular.outage_mean_s", self.outage_mean_s)?;
        if !(self.outage_bytes_per_s >= 0.0 && self.outage_bytes_per_s < self.mean_bytes_per_s) {
            return Err(LinkConfigError::OutOfRange {
                field: "capacity.cellular.outage_bytes_per_s",
                message: "must be >= 0 and below mean_bytes_per_s".into(),
            });
        }
        Ok(())
    }

    /// The trace: one rate per slot, then opportunities at the milliseconds where the bytes
    /// accumulated at that rate pass each multiple of 1500. The rates outside outages are
    /// scaled so the period's mean is `mean_bytes_per_s` (exactly when outages leave room,
    /// within one opportunity per period after rounding).
    pub fn generate(&self) -> Result<CapacityTrace, LinkConfigError> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let period_ms = ((self.period_s * 1000.0).round() as u64).max(1);
        let slot_ms = u64::from(self.slot_ms).min(period_ms);
        let slots = period_ms.div_ceil(slot_ms) as usize;
        let slot_s = slot_ms as f64 / 1000.0;
        // Mean-reverting walk on the log of the rate (AR(1)), stationary std `variability`.
        let phi = (-slot_s / self.coherence_s).exp();
        let step = self.variability * (1.0 - phi * phi).sqrt();
        let leave_outage = (slot_s / self.outage_mean_s).min(1.0);
        let mut log_rate = self.variability * normal(&mut rng);
        let mut outage = false;
        // (relative rate, in an outage) per slot.
        let mut plan: Vec<(f64, bool)> = Vec::with_capacity(slots);
        for _ in 0..slots {
            log_rate = phi * log_rate + step * normal(&mut rng);
            outage = if outage {
                rng.random::<f64>() >= leave_outage
            } else {
                self.outage_probability > 0.0 && rng.random::<f64>() < self.outage_probability
            };
            plan.push((log_rate.exp(), outage));
        }
        // Scale the rates outside outages so the whole period averages the mean.
        let slot_len = |k: usize| {
            let start = k as u64 * slot_ms;
            (period_ms.min(start + slot_ms) - start) as f64
        };
        let (mut good, mut dip) = (0.0, 0.0);
        for (k, &(rel, out)) in plan.iter().enumerate() {
            if out {
                dip += self.outage_bytes_per_s * rel.min(1.0) * slot_len(k);
            } else {
                good += rel * slot_len(k);
            }
        }
        let target = self.mean_bytes_per_s * period_ms as f64;
        let scale = if good > 0.0 {
            ((target - dip) / good).max(0.0)
        } else {
            0.0
        };
        let mut ms: Vec<u32> = Vec::new();
        let mut credit = 0.0;
        for (k, &(rel, out)) in plan.iter().enumerate() {
            let rate = if out {
                self.outage_bytes_per_s * rel.min(1.0)
            } else {
                scale * rel
            };
            let per_ms = rate / 1000.0;
            let start = k as u64 * slot_ms;
            for m in start + 1..=period_ms.min(start + slot_ms) {
                credit += per_ms;
                while credit >= OPPORTUNITY_BYTES as f64 && ms.len() < MAX_OPPORTUNITIES {
                    credit -= OPPORTUNITY_BYTES as f64;
                    // period_ms <= 3.6e6 fits a u32.
                    ms.push(m as u32);
                }
            }
        }
        // The period is the last timestamp: close it with the last millisecond.
        if ms.last().copied().map(u64::from) != Some(period_ms) {
            ms.push(period_ms as u32);
        }
        Ok(CapacityTrace { ms: ms.into() })
    }
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn parse_errors_give_the_line() {
        let cases: [(&str, TraceError); 7] = [
            ("", TraceError::Empty),
            ("\n\n", TraceError::Empty),
            (
                "5\nabc\n7\n",
                TraceError::NotATimestamp {
                    line: 2,
                    text: "abc".into(),
                },
            ),
            (
                "1\n2\n-3\n",
                TraceError::NotATimestamp {
                    line: 3,
                    text: "-3".into(),
                },
            ),
            (
                "1\n4294967296\n",
                TraceError::NotATimestamp {
                    line: 2,
                    text: "4294967296".into(),
                },
            ),
            (
                "1\n5\n5\n4\n9\n",
                TraceError::Unsorted {
                    line: 4,
                    value: 4,
                    previous: 5,
                },
            ),
            ("0\n0\n0\n\n", TraceError::ZeroPeriod { line: 3 }),
        ];
        for (text, expected) in cases {
            let err = CapacityTrace::parse(text).expect_err(text);
            assert_eq!(err, expected, "{text:?}");
            let line = err.line();
            assert!(
                err.to_string().starts_with(&format!("line {line}: ")),
                "{err}"
            );
        }
        // A blank line in the middle is an error at that line.
        assert_eq!(
            CapacityTrace::parse("1\n\n3\n").map_err(|e| e.line()),
            Err(2)
        );
        assert_eq!(
            CapacityTrace::from_millis(&[3, 2]).map_err(|e| e.line()),
            Err(2)
        );
    }

    #[test]
    fn parse_accepts_mahimahi_text() {
        let t = CapacityTrace::parse("0\n1\n1\n 5 \r\n10\n\n\n").expect("valid");
        assert_eq!(t.opportunities(), 5);
        assert_eq!(t.period_ms(), 10);
        // 5 opportunities of 1500 bytes every 10 ms.
        assert_eq!(t.mean_bytes_per_s(), 750_000.0);
        assert_eq!(CapacityTrace::parse("7").expect("one line").period_ms(), 7);
    }

    #[test]
    fn bytes_between_counts_half_open_intervals_across_periods() {
        // Opportunities at 0, 1, 1, 5 and 10 ms of each 10 ms period: 0 (= 10 of the previous
        // period, repeated), 1, 1, 5, 10, 11, 11, 15, 20, ...
        let t = CapacityTrace::from_millis(&[0, 1, 1, 5, 10]).expect("valid");
        let b = OPPORTUNITY_BYTES as u64;
        assert_eq!(t.bytes_between(ms(0), ms(1)), b);
        assert_eq!(t.bytes_between(ms(1), ms(2)), 2 * b);
        assert_eq!(t.bytes_between(ms(0), ms(10)), 4 * b);
        // The 10 ms of period 0 and the 0 ms of period 1 are both at 10 ms.
        assert_eq!(t.bytes_between(ms(10), ms(11)), 2 * b);
        // [0, 100 ms): 10 periods of 5, less the one at 100 ms.
        assert_eq!(t.bytes_between(ms(0), ms(100)), 49 * b);
        assert_eq!(t.bytes_between(ms(5), ms(5)), 0);
        assert_eq!(t.bytes_between(ms(6), ms(2)), 0);
        // Sub-millisecond instants: the opportunity at 5 ms lies within [4.5 ms, 5.5 ms).
        assert_eq!(
            t.bytes_between(Instant::from_micros(4500), Instant::from_micros(5500)),
            b
        );
        assert_eq!(
            t.bytes_between(Instant::from_micros(5001), Instant::from_micros(9999)),
            0
        );
        assert_eq!(t.time_of(t.first_at_or_after(ms(12))), ms(15));
        assert_eq!(t.time_of(t.first_after(ms(15))), ms(20));
    }

    #[test]
    fn load_names_the_path_and_the_line() {
        let dir = std::env::temp_dir().join(format!("livecam-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bad = dir.join("bad.up");
        std::fs::write(&bad, "1\n2\nabc\n").expect("write");
        let err = CapacityTrace::load(&bad).expect_err("abc");
        let text = err.to_string();
        assert!(text.contains("bad.up") && text.contains("line 3"), "{text}");
        assert!(matches!(err, CapacityError::Parse { error, .. } if error.line() == 3));
        let missing = dir.join("missing.up");
        let err = CapacityTrace::load(&missing).expect_err("missing");
        assert!(matches!(err, CapacityError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.up"), "{err}");
        let good = dir.join("good.up");
        std::fs::write(&good, "1\n2\n2\n4\n").expect("write");
        let c = Capacity::trace_file(&good).expect("valid");
        assert_eq!(c.trace().opportunities(), 4);
        assert_eq!(c.spec(), &CapacitySpec::Trace(good.clone()));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Mean rate of each whole second of one period, in bytes per second.
    fn second_rates(t: &CapacityTrace) -> Vec<f64> {
        (0..t.period_ms() / 1000)
            .map(|s| t.bytes_between(ms(s * 1000), ms(s * 1000 + 1000)) as f64)
            .collect()
    }

    #[test]
    fn cellular_is_deterministic_per_seed_and_has_its_mean() {
        let spec = CellularSpec::new(250_000.0, 7);
        let a = spec.generate().expect("valid");
        assert_eq!(a, spec.generate().expect("valid"), "same seed, same trace");
        let b = CellularSpec::new(250_000.0, 8).generate().expect("valid");
        assert_ne!(a, b, "another seed, another trace");
        assert_eq!(a.period_ms(), 60_000);
        for (mean, seed) in [
            (250_000.0, 1),
            (750_000.0, 2),
            (1_700_000.0, 3),
            (40_000.0, 4),
        ] {
            let t = CellularSpec::new(mean, seed).generate().expect("valid");
            // Scaled to the mean; rounding to whole opportunities costs < 1500 B per period.
            let got = t.mean_bytes_per_s();
            assert!((got - mean).abs() < 0.01 * mean, "{mean}: got {got}");
        }
    }

    #[test]
    fn cellular_varies_and_dips() {
        let spec = CellularSpec {
            period_s: 300.0,
            ..CellularSpec::new(250_000.0, 11)
        };
        let rates = second_rates(&spec.generate().expect("valid"));
        let dips = rates.iter().filter(|&&r| r < 35_000.0).count();
        // ~1.5 outages a minute of ~2 s each: a few percent of seconds, not none, not most.
        assert!((3..=60).contains(&dips), "{dips} seconds below 35 KB/s");
        let high = rates.iter().filter(|&&r| r > 400_000.0).count();
        assert!(high >= 10, "only {high} seconds above 400 KB/s");
        // Without variability or outages the rate is flat.
        let flat = CellularSpec {
            variability: 0.0,
            outage_probability: 0.0,
            ..spec
        };
        for r in second_rates(&flat.generate().expect("valid")) {
            assert!((r - 250_000.0).abs() <= 1500.0, "{r}");
        }
    }

    #[test]
    fn cellular_knobs_are_checked() {
        type Edit = fn(&mut CellularSpec);
        let cases: [(&str, Edit); 8] = [
            ("capacity.cellular.mean_bytes_per_s", |c| {
                c.mean_bytes_per_s = 0.0
            }),
            ("capacity.cellular.mean_bytes_per_s", |c| {
                c.mean_bytes_per_s = 1e12
            }),
            ("capacity.cellular.period_s", |c| c.period_s = 4000.0),
            ("capacity.cellular.slot_ms", |c| c.slot_ms = 0),
            ("capacity.cellular.variability", |c| c.variability = -1.0),
            ("capacity.cellular.coherence_s", |c| {
                c.coherence_s = f64::NAN
            }),
            ("capacity.cellular.outage_probability", |c| {
                c.outage_probability = 2.0
            }),
            ("capacity.cellular.outage_bytes_per_s", |c| {
                c.outage_bytes_per_s = 1e9
            }),
        ];
        for (field, edit) in cases {
            let mut c = CellularSpec::new(250_000.0, 1);
            edit(&mut c);
            let err = c.generate().expect_err(field);
            assert_eq!(err.field(), field);
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn capacity_serde_reads_the_spec_and_writes_it_back() {
        #[derive(Deserialize, Serialize, PartialEq, Debug)]
        struct Wrap {
            capacity: Capacity,
        }
        let w: Wrap =
            toml::from_str("capacity = { cellular = { mean_bytes_per_s = 300000.0, seed = 5 } }")
                .expect("valid");
        assert_eq!(
            w.capacity.spec(),
            &CapacitySpec::Cellular(CellularSpec::new(300_000.0, 5))
        );
        let back: Wrap = toml::from_str(&toml::to_string(&w).expect("serializes")).expect("reads");
        assert_eq!(back, w);
        for bad in [
            "capacity = { cellular = { mean_bytes_per_s = 1.0, seed = 5, sead = 1 } }",
            "capacity = { cellular = { seed = 5 } }",
            "capacity = { trace = \"a\", cellular = { mean_bytes_per_s = 1.0, seed = 5 } }",
            "capacity = { file = \"a\" }",
            "capacity = { cellular = { mean_bytes_per_s = -1.0, seed = 5 } }",
        ] {
            assert!(toml::from_str::<Wrap>(bad).is_err(), "{bad}");
        }
        let err = toml::from_str::<Wrap>("capacity = { trace = \"/nonexistent/x.up\" }")
            .expect_err("missing file");
        assert!(
            err.to_string()
                .contains("capacity.trace \"/nonexistent/x.up\""),
            "{err}"
        );
    }

    /// The recorded uplinks in `shared/data/cellular` (GPLv3 mahimahi data, read in place,
    /// never copied here), next to the repository's clone.
    const REAL_TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/cellular");

    #[test]
    fn real_cellular_traces_parse_with_plausible_means() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(REAL_TRACES)
            .unwrap_or_else(|e| panic!("{REAL_TRACES}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "up"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 3, "traces in {REAL_TRACES}: {paths:?}");
        for path in &paths {
            let t = CapacityTrace::load(path).unwrap_or_else(|e| panic!("{e}"));
            let mean = t.mean_bytes_per_s();
            assert!(
                (200_000.0..2_000_000.0).contains(&mean),
                "{}: mean {mean} B/s",
                path.display()
            );
            assert!(t.period_ms() >= 100_000, "{}", path.display());
            // Cheap to clone: the timestamps are shared.
            assert!(Arc::ptr_eq(&t.clone().ms, &t.ms));
        }
    }
}
