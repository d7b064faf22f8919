//! What no segment size policy can beat on a link: the physical limits drawn on the charts.
//!
//! A segment of `S` payload bytes is one UDP datagram of `S + SEGMENT_OVERHEAD` bytes, which
//! travels as one or more IP packets ([`packet_sizes`]); it arrives intact when every packet
//! does. With i.i.d. packet loss `p` and bit error rate `b` a packet of `L` bytes survives with
//! probability `(1 - p)(1 - b)^(8L)`. Per byte on the wire, the useful bytes delivered are
//! `S x P(intact) / wire_bytes`: the payload share times the survival probability. Its maximum
//! over `S` times the link rate is the goodput limit. Bursty loss is taken at its mean loss, as
//! if it were i.i.d. (a bound for comparison, not an exact limit).

use livecam_system::link::{wire_bytes, LinkConfig};
use livecam_system::proto::wire::SEGMENT_OVERHEAD;
use livecam_system::proto::{LinkEstimate, SizeLimits};

/// The link as the protocol's own model sees it ([`LinkEstimate`]): loss per packet (bursty
/// loss at its mean), byte errors `-8 ln(1 - BER)` per wire byte, the MTU. The limits drawn
/// here and the model policy's choices come from the same formulas.
pub fn estimate_of(link: &LinkConfig) -> LinkEstimate {
    let loss = link.loss + link.burst.as_ref().map_or(0.0, |b| b.mean_loss());
    let ber = link.bit_error_rate.clamp(0.0, 1.0 - 1e-12);
    LinkEstimate {
        loss: loss.clamp(0.0, 1.0),
        byte_error: -8.0 * (1.0 - ber).ln(),
        mtu: link.mtu,
        ..LinkEstimate::default()
    }
}

/// Probability that a segment of `size` payload bytes arrives intact over `link`.
pub fn p_intact(link: &LinkConfig, size: usize) -> f64 {
    estimate_of(link).p_intact(size)
}

/// Rounds of NACK repair a frame of `segments` segments, each lost with probability `q` per
/// crossing, needs to be complete with probability `quantile`: the smallest `r` with
/// `(1 - q^r)^segments >= quantile` (the first crossing is round 1).
pub fn arq_rounds(q: f64, segments: usize, quantile: f64) -> u32 {
    let q = q.clamp(0.0, 0.999);
    (1..=64)
        .find(|&r| (1.0 - q.powi(r as i32)).powi(segments as i32) >= quantile)
        .unwrap_or(64)
}

/// Where a frame's latency ends: at the receiver holding it, or at the sender holding its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Delivery,
    Ack,
}

/// The latency floors of a frame of `frame_bytes` over `link`, from capture until `until`, in
/// ms, at the best segment size: `(one crossing, ARQ at quantile)`. One crossing: the frame's
/// wire bytes serialised at the link rate plus the delay (and the delay back for the ACK):
/// what a frame whose every segment, or enough parity, arrives the first time costs. ARQ: one
/// more round trip per extra round of NACK repair, from [`arq_rounds`].
pub fn latency_floors_ms(
    link: &LinkConfig,
    limits: &SizeLimits,
    frame_bytes: usize,
    quantile: f64,
    until: Until,
) -> (f64, f64) {
    let (size, _) = best_size(limits, |s| wire_efficiency(link, s));
    let segments = frame_bytes.div_ceil(size.max(1));
    let wire: usize = (0..segments)
        .map(|i| {
            let len = if i + 1 < segments {
                size
            } else {
                frame_bytes - size * i
            };
            wire_bytes(len + SEGMENT_OVERHEAD, link.mtu)
        })
        .sum();
    let serial = link
        .rate_bytes_per_s
        .map_or(0.0, |rate| wire as f64 / rate * 1e3);
    let crossings = match until {
        Until::Delivery => 1.0,
        Until::Ack => 2.0,
    };
    let one = serial + crossings * link.delay_ms;
    let rounds = arq_rounds(1.0 - p_intact(link, size), segments, quantile);
    (one, one + f64::from(rounds - 1) * 2.0 * link.delay_ms)
}

/// Useful bytes delivered per byte on the wire with segments of `size` bytes.
pub fn wire_efficiency(link: &LinkConfig, size: usize) -> f64 {
    let wire = wire_bytes(size + SEGMENT_OVERHEAD, link.mtu) as f64;
    size as f64 * p_intact(link, size) / wire
}

/// Useful bytes delivered per UDP payload byte sent (the summary's `efficiency`).
pub fn payload_efficiency(link: &LinkConfig, size: usize) -> f64 {
    size as f64 * p_intact(link, size) / (size + SEGMENT_OVERHEAD) as f64
}

/// The size within `limits` that maximises `f`, and the maximum (smallest size on ties).
pub fn best_size(limits: &SizeLimits, f: impl Fn(usize) -> f64) -> (usize, f64) {
    let mut best = (limits.min, f(limits.min));
    for size in limits.min..=limits.max {
        let v = f(size);
        if v > best.1 {
            best = (size, v);
        }
    }
    best
}

/// The goodput limit in bytes per second on a link with a rate, `None` without one.
pub fn goodput_limit(link: &LinkConfig, limits: &SizeLimits) -> Option<f64> {
    let rate = link.rate_bytes_per_s?;
    Some(rate * best_size(limits, |s| wire_efficiency(link, s)).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rounds_formula_and_the_floors() {
        // 8 segments at 10% loss: 3 rounds at p99, 2 at the median (0.9^8 = 0.43 < 0.5).
        assert_eq!(arq_rounds(0.1, 8, 0.99), 3);
        assert_eq!(arq_rounds(0.1, 8, 0.5), 2);
        assert_eq!(arq_rounds(0.0, 8, 0.99), 1);
        let link = LinkConfig {
            loss: 0.1,
            delay_ms: 20.0,
            ..LinkConfig::default()
        };
        let limits = SizeLimits {
            initial: 500,
            min: 100,
            max: 8000,
        };
        let (one, arq) = latency_floors_ms(&link, &limits, 10_000, 0.99, Until::Ack);
        assert_eq!((one, arq), (40.0, 120.0));
        let (one, arq) = latency_floors_ms(&link, &limits, 10_000, 0.99, Until::Delivery);
        assert_eq!((one, arq), (20.0, 100.0));
    }

    #[test]
    fn a_clean_link_favours_the_largest_single_packet() {
        let link = LinkConfig::default();
        let limits = SizeLimits {
            initial: 500,
            min: 100,
            max: 1472 - SEGMENT_OVERHEAD,
        };
        let (size, eff) = best_size(&limits, |s| wire_efficiency(&link, s));
        assert_eq!(size, 1442);
        assert!((eff - 1442.0 / 1500.0).abs() < 1e-12);
        assert_eq!(p_intact(&link, 8000), 1.0);
    }

    #[test]
    fn loss_counts_every_fragment_and_bit_errors_favour_small_segments() {
        let lossy = LinkConfig {
            loss: 0.1,
            ..LinkConfig::default()
        };
        // 4000 + 30 bytes of UDP payload travel as three packets.
        assert!((p_intact(&lossy, 4000) - 0.9f64.powi(3)).abs() < 1e-12);
        let noisy = LinkConfig {
            bit_error_rate: 1e-4,
            ..LinkConfig::default()
        };
        let (size, _) = best_size(&SizeLimits::default(), |s| wire_efficiency(&noisy, s));
        assert!((200..400).contains(&size), "{size}");
        let rated = LinkConfig {
            rate_bytes_per_s: Some(1000.0),
            ..lossy
        };
        let limit = goodput_limit(&rated, &SizeLimits::default()).unwrap();
        assert!(
            (limit - 1000.0 * 0.9 * 1442.0 / 1500.0).abs() < 1e-9,
            "{limit}"
        );
        assert_eq!(goodput_limit(&noisy, &SizeLimits::default()), None);
    }
}
