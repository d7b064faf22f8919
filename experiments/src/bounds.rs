//! What no segment size policy can beat on a link: the physical limits drawn on the charts.
//!
//! A segment of `S` payload bytes is one UDP datagram of `S + SEGMENT_OVERHEAD` bytes, which
//! travels as one or more IP packets ([`packet_sizes`]); it arrives intact when every packet
//! does. With i.i.d. packet loss `p` and bit error rate `b` a packet of `L` bytes survives with
//! probability `(1 - p)(1 - b)^(8L)`. Per byte on the wire, the useful bytes delivered are
//! `S x P(intact) / wire_bytes`: the payload share times the survival probability. Its maximum
//! over `S` times the link rate is the goodput limit. Bursty loss is taken at its mean loss, as
//! if it were i.i.d. (a bound for comparison, not an exact limit).

use livecam_system::link::{packet_sizes, wire_bytes, LinkConfig};
use livecam_system::proto::wire::SEGMENT_OVERHEAD;
use livecam_system::proto::SizeLimits;

/// Probability that a segment of `size` payload bytes arrives intact over `link`.
pub fn p_intact(link: &LinkConfig, size: usize) -> f64 {
    let loss = link.loss + link.burst.as_ref().map_or(0.0, |b| b.mean_loss());
    let loss = loss.clamp(0.0, 1.0);
    let ber = link.bit_error_rate.clamp(0.0, 1.0);
    packet_sizes(size + SEGMENT_OVERHEAD, link.mtu)
        .map(|len| (1.0 - loss) * (1.0 - ber).powf(8.0 * len as f64))
        .product()
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
