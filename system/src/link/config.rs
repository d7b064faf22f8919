//! What a link does: [`LinkConfig`], its bursty-loss part [`GilbertElliott`], and their checks.

use super::capacity::Capacity;
use super::error::{non_negative, probability, LinkConfigError};
use super::packet::{MAX_MTU, MIN_MTU};
use serde::{Deserialize, Serialize};

/// Ethernet's MTU, the default.
pub const DEFAULT_MTU: usize = 1500;
/// Default capacity of the queue in front of the rate limiter: 64 KiB.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024;

/// Configuration of one directed link.
///
/// Every field has a default (see [`LinkConfig::default`]: a perfect link), so a scenario file
/// sets only what it changes; unknown fields are rejected so a typo does not silently give a
/// perfect link. In TOML:
///
/// ```toml
/// loss = 0.01
/// bit_error_rate = 1e-6
/// delay_ms = 40.0
/// jitter_ms = 10.0
/// rate_bytes_per_s = 250000.0
///
/// [burst]
/// p_good_to_bad = 0.005
/// p_bad_to_good = 0.25
/// ```
///
/// Times are plain numbers of milliseconds (fractions allowed; the model works in whole
/// microseconds), rates are bytes per second, sizes are bytes. Check a configuration with
/// [`LinkConfig::validate`] before use; a [`Link`](super::Link) given one that fails still never
/// panics, but clamps what it cannot use (probabilities to `0..=1`, negative or NaN times to 0,
/// a non-positive rate to unlimited, the MTU to at least [`MIN_MTU`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Probability that an IP packet is lost, independently of every other packet (`0..=1`).
    /// A datagram that travels as several fragments is lost when any one of them is.
    pub loss: f64,
    /// Probability that a bit on the wire is flipped, independently of every other bit (`0..=1`).
    /// Counted over whole IP packets, headers included.
    pub bit_error_rate: f64,
    /// IP MTU in bytes (`68..=65535`, default 1500): a datagram larger than `mtu - 28` bytes of
    /// UDP payload travels as several fragments, see [`packet_sizes`](super::packet_sizes).
    pub mtu: usize,
    /// Whether packets with bit errors are discarded, as the UDP and IP checksums do (default
    /// `true`): the datagram is lost ([`LossCause::Corrupted`](super::LossCause::Corrupted)).
    /// With `false` the datagram is delivered damaged: its
    /// [`Delivery::bit_flips`](super::Delivery::bit_flips) name the payload bits to flip, and
    /// flips that hit the IP or UDP headers are ignored.
    pub checksums: bool,
    /// Bursty loss, per packet, on top of `loss`; `None` for none.
    pub burst: Option<GilbertElliott>,
    /// One-way propagation delay in milliseconds (`>= 0`).
    pub delay_ms: f64,
    /// Extra delay in milliseconds, uniform in `[0, jitter_ms]` per datagram (`>= 0`). Jitter
    /// alone never reorders: a datagram is never delivered before the one offered before it.
    pub jitter_ms: f64,
    /// Serialization rate in bytes per second (`> 0`), counting IP and UDP headers;
    /// `None` (the default) for unlimited. Not together with `capacity`.
    pub rate_bytes_per_s: Option<f64>,
    /// A time-varying capacity instead of a constant rate: a Mahimahi trace file or the seeded
    /// synthetic cellular model (see [`Capacity`]); `None` (the default) for none. In TOML
    /// `capacity = { trace = "path/to/file.up" }` (the path relative to the current directory
    /// of the process that reads the configuration) or
    /// `capacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7 } }`. The file is read,
    /// or the trace generated, when the configuration is deserialized, so a bad one fails there.
    /// Not together with `rate_bytes_per_s`.
    pub capacity: Option<Capacity>,
    /// Capacity in bytes of the FIFO queue in front of the rate limiter (default 64 KiB); a
    /// datagram that would overflow it is dropped
    /// ([`LossCause::QueueFull`](super::LossCause::QueueFull)). Unused without a rate or a
    /// capacity.
    pub queue_bytes: usize,
    /// Probability that a delivered datagram is delivered twice (`0..=1`).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay_ms` more (`0..=1`), letting
    /// later datagrams overtake it. Only with `reorder > 0` can delivery order change.
    pub reorder: f64,
    /// How long, in milliseconds, a reordered datagram is held back (`>= 0`).
    pub reorder_delay_ms: f64,
}

impl Default for LinkConfig {
    /// A perfect link: no loss, no errors, no delay, unlimited rate, MTU 1500, checksums on.
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            bit_error_rate: 0.0,
            mtu: DEFAULT_MTU,
            checksums: true,
            burst: None,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            rate_bytes_per_s: None,
            capacity: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_ms: 0.0,
        }
    }
}

impl LinkConfig {
    /// Checks every field, returning the first bad one.
    ///
    /// Probabilities must be within `0..=1`, the MTU within `68..=65535`, times finite and
    /// `>= 0`, a rate finite and `> 0`; a rate and a capacity are not both set.
    pub fn validate(&self) -> Result<(), LinkConfigError> {
        probability("loss", self.loss)?;
        probability("bit_error_rate", self.bit_error_rate)?;
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(LinkConfigError::Mtu { mtu: self.mtu });
        }
        if let Some(burst) = &self.burst {
            burst.validate()?;
        }
        non_negative("delay_ms", self.delay_ms)?;
        non_negative("jitter_ms", self.jitter_ms)?;
        if let Some(rate) = self.rate_bytes_per_s {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(LinkConfigError::NotPositive {
                    field: "rate_bytes_per_s",
                    value: rate,
                });
            }
        }
        if self.rate_bytes_per_s.is_some() && self.capacity.is_some() {
            return Err(LinkConfigError::Conflict {
                field: "capacity",
                other: "rate_bytes_per_s",
            });
        }
        probability("duplicate", self.duplicate)?;
        probability("reorder", self.reorder)?;
        non_negative("reorder_delay_ms", self.reorder_delay_ms)?;
        Ok(())
    }
}

/// The Gilbert-Elliott model of bursty loss: a two-state Markov chain advanced once per IP
/// packet.
///
/// The channel is either *good* or *bad*. Before each packet it moves from good to bad with
/// probability `p_good_to_bad` and from bad to good with `p_bad_to_good`; then the packet is
/// lost with the loss probability of the state it is in. A link starts good.
///
/// With the defaults `loss_good = 0` and `loss_bad = 1` (the plain Gilbert model) every packet
/// in the bad state is lost, so losses come in bursts of [`mean_burst_length`] packets on
/// average, and the long-run loss is [`mean_loss`].
///
/// [`mean_burst_length`]: GilbertElliott::mean_burst_length
/// [`mean_loss`]: GilbertElliott::mean_loss
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GilbertElliott {
    /// Per-packet probability of moving from the good state to the bad one (`0..=1`).
    pub p_good_to_bad: f64,
    /// Per-packet probability of moving from the bad state to the good one (`0..=1`).
    pub p_bad_to_good: f64,
    /// Loss probability of a packet in the good state (`0..=1`, default 0).
    pub loss_good: f64,
    /// Loss probability of a packet in the bad state (`0..=1`, default 1).
    pub loss_bad: f64,
}

impl Default for GilbertElliott {
    /// Never leaves the good state; losses 0 (good) and 1 (bad).
    fn default() -> Self {
        GilbertElliott {
            p_good_to_bad: 0.0,
            p_bad_to_good: 1.0,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

impl GilbertElliott {
    /// Long-run fraction of packets sent in the bad state:
    /// `p_good_to_bad / (p_good_to_bad + p_bad_to_good)` (0 when both are 0, as the chain
    /// then stays in the good state it starts in).
    pub fn stationary_bad(&self) -> f64 {
        let sum = self.p_good_to_bad + self.p_bad_to_good;
        if sum > 0.0 {
            self.p_good_to_bad / sum
        } else {
            0.0
        }
    }

    /// Long-run per-packet loss probability of this model alone:
    /// `(1 - b) * loss_good + b * loss_bad` with `b` the [`stationary_bad`] fraction.
    ///
    /// [`stationary_bad`]: GilbertElliott::stationary_bad
    pub fn mean_loss(&self) -> f64 {
        let bad = self.stationary_bad();
        (1.0 - bad) * self.loss_good + bad * self.loss_bad
    }

    /// Mean number of consecutive packets spent in the bad state, `1 / p_bad_to_good`
    /// (infinite when `p_bad_to_good` is 0). With `loss_good = 0` and `loss_bad = 1` this is the
    /// mean length of a run of lost packets.
    pub fn mean_burst_length(&self) -> f64 {
        1.0 / self.p_bad_to_good
    }

    /// Checks that all four fields are probabilities; errors name them as `burst.<field>`.
    pub fn validate(&self) -> Result<(), LinkConfigError> {
        probability("burst.p_good_to_bad", self.p_good_to_bad)?;
        probability("burst.p_bad_to_good", self.p_bad_to_good)?;
        probability("burst.loss_good", self.loss_good)?;
        probability("burst.loss_bad", self.loss_bad)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_perfect_valid_link() {
        let c = LinkConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.mtu, 1500);
        assert!(c.checksums);
        assert_eq!(c.queue_bytes, 65_536);
        assert_eq!((c.loss, c.delay_ms, c.rate_bytes_per_s), (0.0, 0.0, None));
    }

    #[test]
    fn validate_names_each_bad_field() {
        type Edit = fn(&mut LinkConfig);
        type BurstEdit = fn(&mut GilbertElliott);
        let ge = || GilbertElliott {
            p_good_to_bad: 0.1,
            p_bad_to_good: 0.5,
            ..GilbertElliott::default()
        };
        let cases: Vec<(&str, Edit)> = vec![
            ("loss", |c| c.loss = 1.5),
            ("loss", |c| c.loss = -0.1),
            ("loss", |c| c.loss = f64::NAN),
            ("bit_error_rate", |c| c.bit_error_rate = 2.0),
            ("mtu", |c| c.mtu = 67),
            ("mtu", |c| c.mtu = 65_536),
            ("delay_ms", |c| c.delay_ms = -1.0),
            ("delay_ms", |c| c.delay_ms = f64::INFINITY),
            ("jitter_ms", |c| c.jitter_ms = f64::NAN),
            ("rate_bytes_per_s", |c| c.rate_bytes_per_s = Some(0.0)),
            ("rate_bytes_per_s", |c| c.rate_bytes_per_s = Some(-5.0)),
            ("rate_bytes_per_s", |c| {
                c.rate_bytes_per_s = Some(f64::INFINITY)
            }),
            ("duplicate", |c| c.duplicate = 1.01),
            ("reorder", |c| c.reorder = -0.5),
            ("reorder_delay_ms", |c| c.reorder_delay_ms = -3.0),
        ];
        for (field, edit) in cases {
            let mut c = LinkConfig::default();
            edit(&mut c);
            let err = c.validate().expect_err(field);
            assert_eq!(err.field(), field);
            assert!(err.to_string().starts_with(field), "{err}");
        }
        let burst_cases: Vec<(&str, BurstEdit)> = vec![
            ("burst.p_good_to_bad", |g| g.p_good_to_bad = 1.5),
            ("burst.p_bad_to_good", |g| g.p_bad_to_good = -1.0),
            ("burst.loss_good", |g| g.loss_good = f64::NAN),
            ("burst.loss_bad", |g| g.loss_bad = 7.0),
        ];
        for (field, edit) in burst_cases {
            let mut g = ge();
            edit(&mut g);
            let c = LinkConfig {
                burst: Some(g),
                ..LinkConfig::default()
            };
            let err = c.validate().expect_err(field);
            assert_eq!(err.field(), field);
            assert!(err.to_string().starts_with(field), "{err}");
        }
        // Edges are valid.
        let edges = LinkConfig {
            loss: 1.0,
            bit_error_rate: 0.0,
            mtu: 68,
            burst: Some(ge()),
            rate_bytes_per_s: Some(1e-3),
            duplicate: 1.0,
            reorder: 0.0,
            ..LinkConfig::default()
        };
        assert_eq!(edges.validate(), Ok(()));
        assert_eq!(
            LinkConfig {
                loss: 1.5,
                ..LinkConfig::default()
            }
            .validate()
            .map_err(|e| e.to_string()),
            Err("loss must be within 0..=1, got 1.5".to_string())
        );
    }

    #[test]
    fn serde_takes_any_subset_and_rejects_unknown_fields() {
        let c: LinkConfig = serde_json::from_str(
            r#"{"loss": 0.1, "delay_ms": 20, "burst": {"p_good_to_bad": 0.01}}"#,
        )
        .expect("valid subset");
        assert_eq!(c.loss, 0.1);
        assert_eq!(c.delay_ms, 20.0);
        assert_eq!(c.mtu, DEFAULT_MTU);
        let burst = c.burst.as_ref().expect("burst set");
        assert_eq!((burst.p_good_to_bad, burst.p_bad_to_good), (0.01, 1.0));
        assert_eq!((burst.loss_good, burst.loss_bad), (0.0, 1.0));
        assert!(serde_json::from_str::<LinkConfig>(r#"{"los": 0.1}"#).is_err());
        assert!(serde_json::from_str::<LinkConfig>(r#"{"burst": {"p_gb": 0.1}}"#).is_err());
        let back: LinkConfig =
            serde_json::from_str(&serde_json::to_string(&c).expect("serializes")).expect("parses");
        assert_eq!(back, c);
    }

    #[test]
    fn gilbert_elliott_analytics() {
        let g = GilbertElliott {
            p_good_to_bad: 0.01,
            p_bad_to_good: 0.2,
            loss_good: 0.01,
            loss_bad: 0.5,
        };
        let bad = 0.01 / 0.21;
        assert!((g.stationary_bad() - bad).abs() < 1e-12);
        assert!((g.mean_loss() - ((1.0 - bad) * 0.01 + bad * 0.5)).abs() < 1e-12);
        assert!((g.mean_burst_length() - 5.0).abs() < 1e-12);
        let stuck = GilbertElliott::default();
        assert_eq!(stuck.stationary_bad(), 0.0);
        assert_eq!(stuck.mean_loss(), 0.0);
        let never_recovers = GilbertElliott {
            p_bad_to_good: 0.0,
            ..GilbertElliott::default()
        };
        assert!(never_recovers.mean_burst_length().is_infinite());
    }
}
