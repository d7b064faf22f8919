//! How a UDP datagram crosses a link as IP packets, and how bit errors land in it.

use rand::Rng;

/// The smallest IPv4 MTU (RFC 791: every host must pass 68-byte datagrams unfragmented).
pub const MIN_MTU: usize = 68;
/// The largest IPv4 MTU: the 16-bit total length field.
pub const MAX_MTU: usize = 65_535;
/// Bytes of IPv4 header on every packet (no options).
pub const IPV4_HEADER_LEN: usize = 20;
/// Bytes of UDP header, carried once per datagram, in its first fragment.
pub const UDP_HEADER_LEN: usize = 8;

/// The IP packets a datagram of `len` bytes of UDP payload crosses a link as.
///
/// The IP payload (`len + 8` bytes: the UDP header, then the payload) is cut into
/// `ceil((len + 8) / (mtu - 20))` fragments of `mtu - 20` bytes, the last one holding the rest;
/// each item is one packet's size on the wire, its 20-byte IPv4 header included. A datagram that
/// fits (`len <= mtu - 28`) is one packet of `len + 28` bytes. An `mtu` below 68 is taken as 68.
///
/// ```
/// use livecam_system::link::packet_sizes;
///
/// assert_eq!(packet_sizes(1472, 1500).collect::<Vec<_>>(), [1500]);
/// assert_eq!(packet_sizes(1473, 1500).collect::<Vec<_>>(), [1500, 21]);
/// assert_eq!(packet_sizes(4000, 1500).collect::<Vec<_>>(), [1500, 1500, 1068]);
/// ```
pub fn packet_sizes(len: usize, mtu: usize) -> impl Iterator<Item = usize> {
    let capacity = fragment_capacity(mtu);
    let total = len.saturating_add(UDP_HEADER_LEN);
    let count = total.div_ceil(capacity);
    (0..count).map(move |i| (total - i * capacity).min(capacity) + IPV4_HEADER_LEN)
}

/// Bytes a datagram of `len` bytes of UDP payload occupies on the wire: the sum of its
/// [`packet_sizes`], that is `len + 28` plus 20 for each fragment after the first.
pub fn wire_bytes(len: usize, mtu: usize) -> usize {
    let total = len.saturating_add(UDP_HEADER_LEN);
    let count = total.div_ceil(fragment_capacity(mtu));
    total.saturating_add(count.saturating_mul(IPV4_HEADER_LEN))
}

/// Flips the given bits of `datagram`, as a damaged [`Delivery`](super::Delivery) asks.
///
/// Bit `p` is in byte `p / 8`, counted from that byte's most significant bit (the order bits go
/// on the wire). Positions past the end of `datagram` are ignored.
///
/// ```
/// use livecam_system::link::apply_bit_flips;
///
/// let mut d = [0u8; 2];
/// apply_bit_flips(&mut d, &[0, 15, 16, 99]);
/// assert_eq!(d, [0x80, 0x01]);
/// ```
pub fn apply_bit_flips(datagram: &mut [u8], flips: &[usize]) {
    for &bit in flips {
        if let Some(byte) = datagram.get_mut(bit / 8) {
            *byte ^= 0x80 >> (bit % 8);
        }
    }
}

/// IP payload bytes per fragment.
pub(crate) fn fragment_capacity(mtu: usize) -> usize {
    mtu.max(MIN_MTU) - IPV4_HEADER_LEN
}

/// Where bit `bit` of fragment `fragment` (counted from the start of the packet, IPv4 header
/// included) falls in the UDP payload, or `None` when it hits the IPv4 or UDP header.
pub(crate) fn payload_bit(fragment: usize, bit: usize, capacity: usize) -> Option<usize> {
    let in_ip_payload = bit.checked_sub(IPV4_HEADER_LEN * 8)?;
    let in_udp = fragment
        .checked_mul(capacity * 8)?
        .checked_add(in_ip_payload)?;
    in_udp.checked_sub(UDP_HEADER_LEN * 8)
}

/// Independent bit errors of probability `p`, sampled by geometric skipping: one draw per
/// error (plus one), not one per bit.
///
/// The number of clean bits before the next error is geometric: `P(gap >= k) = (1 - p)^k`.
/// With `U` uniform in `(0, 1]`, `floor(ln U / ln(1 - p))` has exactly that law.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitErrors {
    /// `ln(1 - p)`, `< 0`; `-inf` when `p == 1`.
    ln_clean: f64,
}

impl BitErrors {
    /// `None` when `p` is 0 (or not above 0): no errors, no draws.
    pub(crate) fn new(p: f64) -> Option<Self> {
        if p > 0.0 {
            Some(BitErrors {
                ln_clean: (-p.min(1.0)).ln_1p(),
            })
        } else {
            None
        }
    }

    /// Number of clean bits before the next flipped one.
    pub(crate) fn gap<R: Rng>(&self, rng: &mut R) -> u64 {
        let u = 1.0 - rng.random::<f64>();
        // Non-negative (or -0.0 when p == 1); `as` floors and saturates, which is what we want.
        (u.ln() / self.ln_clean) as u64
    }

    /// Whether a packet of `bits` bits gets at least one error: one draw.
    pub(crate) fn any<R: Rng>(&self, rng: &mut R, bits: usize) -> bool {
        self.gap(rng) < bits as u64
    }

    /// Calls `flip` with each flipped bit position of a packet of `bits` bits, in order.
    pub(crate) fn each<R: Rng>(&self, rng: &mut R, bits: usize, mut flip: impl FnMut(usize)) {
        let bits = bits as u64;
        let mut pos = self.gap(rng);
        while pos < bits {
            // `pos < bits`, which came from a usize.
            flip(pos as usize);
            pos = pos.saturating_add(1).saturating_add(self.gap(rng));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn packet_sizes_follow_the_formula() {
        assert_eq!(packet_sizes(0, 1500).collect::<Vec<_>>(), [28]);
        assert_eq!(packet_sizes(1472, 1500).collect::<Vec<_>>(), [1500]);
        assert_eq!(packet_sizes(1473, 1500).collect::<Vec<_>>(), [1500, 21]);
        assert_eq!(packet_sizes(2952, 1500).collect::<Vec<_>>(), [1500, 1500]);
        // Largest UDP datagram: 65_515 bytes of IP payload in 45 fragments.
        let max: Vec<_> = packet_sizes(65_507, 1500).collect();
        assert_eq!(max.len(), 45);
        assert_eq!(max.iter().sum::<usize>(), 65_507 + 28 + 44 * 20);
        assert_eq!(wire_bytes(65_507, 1500), 65_507 + 28 + 44 * 20);
        for len in [0, 1, 1472, 1473, 9000, 65_507] {
            assert_eq!(
                wire_bytes(len, 1500),
                packet_sizes(len, 1500).sum::<usize>()
            );
        }
        // Tiny MTU, and one below the minimum taken as 68 (48 bytes of IP payload each).
        assert_eq!(packet_sizes(100, 68).collect::<Vec<_>>(), [68, 68, 32]);
        assert_eq!(packet_sizes(100, 0).collect::<Vec<_>>(), [68, 68, 32]);
        for len in [0, 1, 47, 1000, 1472, 1473, 9000, 65_507] {
            for mtu in [68, 576, 1280, 1500, 9000] {
                let sizes: Vec<_> = packet_sizes(len, mtu).collect();
                assert_eq!(sizes.len(), (len + 8).div_ceil(mtu - 20), "{len} {mtu}");
                assert!(sizes.iter().all(|&s| s > 20 && s <= mtu));
                assert_eq!(sizes.iter().sum::<usize>(), len + 8 + 20 * sizes.len());
            }
        }
    }

    #[test]
    fn apply_bit_flips_flips_and_ignores_out_of_range() {
        let mut d = vec![0u8; 4];
        apply_bit_flips(&mut d, &[0, 7, 8, 31, 32, 1_000_000]);
        assert_eq!(d, [0x81, 0x80, 0x00, 0x01]);
        apply_bit_flips(&mut d, &[0, 7, 8, 31]);
        assert_eq!(d, [0; 4]);
        apply_bit_flips(&mut [], &[0, 1]);
    }

    #[test]
    fn payload_bits_skip_headers_and_offset_fragments() {
        let cap = 1480;
        // First fragment: 20 bytes IPv4 header, 8 bytes UDP header, then payload.
        assert_eq!(payload_bit(0, 0, cap), None);
        assert_eq!(payload_bit(0, 159, cap), None);
        assert_eq!(payload_bit(0, 160, cap), None);
        assert_eq!(payload_bit(0, 223, cap), None);
        assert_eq!(payload_bit(0, 224, cap), Some(0));
        assert_eq!(payload_bit(0, 1500 * 8 - 1, cap), Some(1472 * 8 - 1));
        // Later fragments: only the IPv4 header, then payload continuing where the last left off.
        assert_eq!(payload_bit(1, 159, cap), None);
        assert_eq!(payload_bit(1, 160, cap), Some(1472 * 8));
        assert_eq!(payload_bit(2, 161, cap), Some((1472 + 1480) * 8 + 1));
    }

    #[test]
    fn geometric_skipping_matches_per_bit_law() {
        // p = 1e-4 over 10_000-bit packets: flips per packet are ~Poisson(1) (exactly
        // Binomial(10_000, 1e-4)), P(any) = 1 - (1 - 1e-4)^10_000 = 0.63214, and positions are
        // uniform (mean 4999.5, sd 2887). With 40_000 packets the standard errors are
        // sqrt(1 / 40_000) = 0.005 (mean count), sqrt(0.632 * 0.368 / 40_000) = 0.0024 (P(any))
        // and 2887 / sqrt(40_000) = 14.4 (mean position); we allow 5 of each. A sampler that
        // drew gaps with the wrong law (say mean 1/p - 1 flips too many, or positions bunched
        // at the start) misses by far more.
        const N: usize = 40_000;
        const BITS: usize = 10_000;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let be = BitErrors::new(1e-4).expect("p > 0");
        let (mut flips, mut any, mut pos_sum) = (0usize, 0usize, 0usize);
        let mut ordered = true;
        for _ in 0..N {
            let mut prev = None;
            be.each(&mut rng, BITS, |b| {
                ordered &= b < BITS && prev.is_none_or(|p| b > p);
                prev = Some(b);
                flips += 1;
                pos_sum += b;
            });
            any += usize::from(be.any(&mut rng, BITS));
        }
        assert!(ordered, "positions in range and increasing");
        let mean = flips as f64 / N as f64;
        assert!((mean - 1.0).abs() < 5.0 * 0.005, "mean flips {mean}");
        let p_any = any as f64 / N as f64;
        let expect = 1.0 - (1.0f64 - 1e-4).powi(BITS as i32);
        assert!(
            (p_any - expect).abs() < 5.0 * 0.0024,
            "P(any) {p_any} vs {expect}"
        );
        let mean_pos = pos_sum as f64 / flips as f64;
        assert!(
            (mean_pos - 4999.5).abs() < 5.0 * 14.4,
            "mean position {mean_pos}"
        );
        // p = 1 flips every bit; p = 0 none.
        let all = BitErrors::new(1.0).expect("p > 0");
        let mut n = 0;
        all.each(&mut rng, 64, |_| n += 1);
        assert_eq!(n, 64);
        assert!(all.any(&mut rng, 1));
        assert!(BitErrors::new(0.0).is_none());
        assert!(BitErrors::new(f64::NAN).is_none());
    }
}
