//! Statistical and exact tests of [`Link`].
//!
//! Statistical checks use fixed seeds (so they are reproducible) and tolerances of 5 standard
//! errors of the estimate, worked out in each test: a correct model would fail one for an
//! arbitrary seed with probability below 1e-6, while the bugs named in the comments miss by
//! many more.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Binomial standard error of a proportion `p` estimated from `n` trials.
fn std_err(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

fn assert_close(what: &str, measured: f64, expected: f64, tolerance: f64) {
    assert!(
        (measured - expected).abs() <= tolerance,
        "{what}: measured {measured}, expected {expected} ± {tolerance}"
    );
}

/// Every offered datagram is counted once, as delivered or under one cause.
fn assert_accounted(stats: &LinkStats) {
    assert_eq!(stats.offered, stats.delivered + stats.lost(), "{stats:?}");
}

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

/// Offers `n` datagrams of `len` bytes, 1 ms apart; returns the fraction lost.
fn loss_fraction(link: &mut Link, n: usize, len: usize) -> f64 {
    let lost = (0..n)
        .filter(|&i| link.transmit(ms(i as u64), len).is_lost())
        .count();
    lost as f64 / n as f64
}

#[test]
fn perfect_link_delivers_everything_at_once() {
    let mut link = Link::new(LinkConfig::default(), 1);
    for i in 0..1000 {
        let t = link.transmit(ms(i), 65_507);
        assert_eq!(
            t,
            Transmission {
                copies: vec![Delivery {
                    at: ms(i),
                    bit_flips: vec![]
                }],
                lost: None
            }
        );
    }
    let stats = link.stats();
    assert_eq!((stats.offered, stats.delivered), (1000, 1000));
    assert_eq!(stats.bytes_offered, 65_507_000);
    assert_accounted(stats);
}

#[test]
fn iid_loss_matches_configured() {
    // 100k single-packet datagrams at 10%: standard error sqrt(0.1 * 0.9 / 1e5) = 0.00095.
    let n = 100_000;
    let mut link = Link::new(
        LinkConfig {
            loss: 0.1,
            ..LinkConfig::default()
        },
        7,
    );
    let measured = loss_fraction(&mut link, n, 1000);
    assert_close("1-packet loss", measured, 0.1, 5.0 * std_err(0.1, n));
    assert_eq!(link.stats().lost_random, link.stats().lost());
    assert_accounted(link.stats());

    // Per packet, not per datagram: a 3-fragment datagram is lost with 1 - 0.9^3 = 0.271.
    // (Per-datagram loss would measure 0.1, 180 standard errors off.)
    let expected = 1.0 - 0.9f64.powi(3);
    let measured = loss_fraction(&mut link, n, 4000);
    assert_close(
        "3-packet loss",
        measured,
        expected,
        5.0 * std_err(expected, n),
    );
}

#[test]
fn bit_error_loss_grows_with_size_as_predicted() {
    // With checksums on, a datagram survives only if none of the bits of its packets (headers
    // included) flip: P(loss) = 1 - prod over fragments of (1 - ber)^(8 * size). At ber = 3e-5
    // this goes from 0.7% (empty payload, 28 bytes) to 86% (8000 bytes, 6 fragments). 60k
    // datagrams per size: standard error at most sqrt(0.25 / 60_000) = 0.002.
    let ber = 3e-5;
    let n = 60_000;
    let mut link = Link::new(
        LinkConfig {
            bit_error_rate: ber,
            ..LinkConfig::default()
        },
        11,
    );
    let mut previous = (0.0, -1.0);
    for len in [0, 500, 1000, 1472, 1473, 4000, 8000] {
        let expected = 1.0
            - packet_sizes(len, 1500)
                .map(|size| (1.0 - ber).powi(8 * size as i32))
                .product::<f64>();
        let measured = loss_fraction(&mut link, n, len);
        assert_close(
            &format!("loss at {len} bytes"),
            measured,
            expected,
            5.0 * std_err(expected, n),
        );
        // Larger datagrams must suffer more: measurably so wherever the predicted step is
        // above 10 standard errors (1472 -> 1473 bytes adds only 21 bytes on the wire).
        if expected - previous.0 > 10.0 * std_err(0.5, n) {
            assert!(measured > previous.1, "no more loss at {len} bytes");
        }
        previous = (expected, measured);
    }
    let stats = link.stats();
    assert_eq!(stats.lost_corrupted, stats.lost());
    assert_eq!(stats.corrupted_delivered, 0);
    assert_accounted(stats);

    // The single-packet formula in closed form, for the record: 1000 bytes = 1028 on the wire.
    let single: f64 = 1.0 - (1.0 - ber).powi(8 * 1028);
    assert!((single - 0.2188).abs() < 1e-3);
}

#[test]
fn gilbert_elliott_matches_long_run_loss_and_burst_length() {
    // Plain Gilbert: good never loses, bad always does. p_gb = 0.01, p_bg = 0.2 give a
    // stationary bad fraction of 0.01 / 0.21 = 0.0476 and bursts of 1 / 0.2 = 5 packets.
    let ge = GilbertElliott {
        p_good_to_bad: 0.01,
        p_bad_to_good: 0.2,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let n = 1_000_000;
    let mut link = Link::new(
        LinkConfig {
            burst: Some(ge.clone()),
            ..LinkConfig::default()
        },
        3,
    );
    let (mut lost, mut bursts, mut in_burst) = (0usize, 0usize, false);
    for i in 0..n {
        let is_lost = link.transmit(Instant::from_micros(i), 100).is_lost();
        lost += usize::from(is_lost);
        bursts += usize::from(is_lost && !in_burst);
        in_burst = is_lost;
    }
    // Losses are correlated, so the binomial error understates it: for a two-state chain with
    // lambda = 1 - p_gb - p_bg = 0.79 the variance of the bad fraction is
    // pi_b * pi_g * (1 + lambda) / (1 - lambda) / n = 0.0454 * 8.52 / 1e6, i.e. sd 0.00062.
    let measured = lost as f64 / n as f64;
    let sd = (ge.stationary_bad() * (1.0 - ge.stationary_bad()) * 1.79 / 0.21 / n as f64).sqrt();
    assert_close("long-run loss", measured, ge.mean_loss(), 5.0 * sd);
    // About n * 0.0476 * 0.2 = 9524 bursts of geometric length (sd sqrt(0.8) / 0.2 = 4.47):
    // standard error of the mean 4.47 / sqrt(9524) = 0.046. A chain that forgot its state
    // (independent losses at the same mean) would give bursts of 1 / (1 - 0.0476) = 1.05.
    let mean_burst = lost as f64 / bursts as f64;
    let se = 0.8f64.sqrt() / 0.2 / (bursts as f64).sqrt();
    assert_close(
        "mean burst length",
        mean_burst,
        ge.mean_burst_length(),
        5.0 * se,
    );
    assert_eq!(link.stats().lost_burst as usize, lost);

    // Elliott's generalisation, both states lossy: long-run loss 0.9524 * 0.01 + 0.0476 * 0.5
    // = 0.0333. Variance of the mean: Bernoulli part 0.0333 * 0.9667 / n plus the state part
    // (0.5 - 0.01)^2 * 0.387 / n, sd 0.00035 at n = 1e6.
    let ge = GilbertElliott {
        loss_good: 0.01,
        loss_bad: 0.5,
        ..ge
    };
    let mut link = Link::new(
        LinkConfig {
            burst: Some(ge.clone()),
            ..LinkConfig::default()
        },
        4,
    );
    let lost = (0..n)
        .filter(|&i| link.transmit(Instant::from_micros(i), 100).is_lost())
        .count();
    let m = ge.mean_loss();
    let sd = ((m * (1.0 - m) + 0.49f64.powi(2) * 0.0454 * 1.79 / 0.21) / n as f64).sqrt();
    assert_close("Elliott long-run loss", lost as f64 / n as f64, m, 5.0 * sd);
}

#[test]
fn gilbert_elliott_steps_per_packet_so_fragmented_datagrams_suffer_more() {
    // A 44-fragment datagram makes the chain take 44 steps: with the chain above it is lost
    // whenever any of them is in the bad state, far more often than a 1-packet datagram
    // (0.0476): 1 - P(all 44 good) = 1 - 0.952 * 0.99^43 = 0.38.
    let ge = GilbertElliott {
        p_good_to_bad: 0.01,
        p_bad_to_good: 0.2,
        ..GilbertElliott::default()
    };
    let mut link = Link::new(
        LinkConfig {
            burst: Some(ge),
            ..LinkConfig::default()
        },
        5,
    );
    let small = loss_fraction(&mut link, 20_000, 100);
    let large = loss_fraction(&mut link, 20_000, 65_000);
    assert!(small < 0.07, "{small}");
    assert!(large > 0.3, "{large}");
}

#[test]
fn rate_limit_gives_the_rate_under_overload() {
    // 125 kB/s; 1000-byte datagrams on the wire (972 payload) every 4 ms, twice the rate.
    // The serializer never idles, so the k-th accepted datagram finishes at k * 8 ms exactly,
    // and by 20 s exactly 2500 have been delivered; the queue (65 datagrams in 64 KiB) spills
    // the rest.
    let rate = 125_000.0;
    let mut link = Link::new(
        LinkConfig {
            rate_bytes_per_s: Some(rate),
            ..LinkConfig::default()
        },
        1,
    );
    let mut deliveries = Vec::new();
    for i in 0..5000u64 {
        let t = link.transmit(ms(4 * i), 972);
        deliveries.extend(t.copies.iter().map(|d| d.at));
    }
    let by_20s = deliveries.iter().filter(|&&at| at <= ms(20_000)).count();
    assert_eq!(by_20s, 2500);
    let last = deliveries.last().copied().unwrap_or(Instant::ZERO);
    let throughput = deliveries.len() as f64 * 1000.0 / last.since_origin().as_secs_f64();
    assert_close("throughput", throughput, rate, 1e-6 * rate);
    for (k, at) in deliveries.iter().enumerate() {
        assert_eq!(*at, ms(8 * (k as u64 + 1)));
    }
    let stats = link.stats();
    assert_eq!(stats.lost_queue, 5000 - deliveries.len() as u64);
    assert!(stats.lost_queue > 2000);
    assert_accounted(stats);
}

#[test]
fn queueing_delay_is_backlog_over_rate() {
    // 1 MB/s: one byte is one microsecond. Ten 1000-byte (wire) datagrams at 10 ms make a
    // backlog of Q = 10_000 bytes; a datagram of 1972 payload bytes (two fragments, 2020 bytes
    // on the wire) offered then waits Q / rate = 10 ms, takes 2.02 ms itself, then 5 ms of
    // propagation.
    let mut link = Link::new(
        LinkConfig {
            rate_bytes_per_s: Some(1e6),
            delay_ms: 5.0,
            ..LinkConfig::default()
        },
        1,
    );
    for k in 1..=10u64 {
        let t = link.transmit(ms(10), 972);
        assert_eq!(t.copies[0].at, ms(10 + k + 5));
    }
    assert_eq!(link.backlog_bytes(ms(10)), 10_000.0);
    assert_eq!(wire_bytes(1972, 1500), 2020);
    let t = link.transmit(ms(10), 1972);
    assert_eq!(
        t.copies[0].at,
        Instant::from_micros(10_000 + 10_000 + 2020 + 5000)
    );
    // 3 ms later 3000 bytes have gone: 9020 remain, and a 1000-byte datagram waits 9.02 ms.
    assert_eq!(link.backlog_bytes(ms(13)), 9020.0);
    let t = link.transmit(ms(13), 972);
    assert_eq!(
        t.copies[0].at,
        Instant::from_micros(13_000 + 9020 + 1000 + 5000)
    );
    // Once drained, a datagram only pays its own serialization.
    assert_eq!(link.backlog_bytes(ms(100)), 0.0);
    let t = link.transmit(ms(100), 972);
    assert_eq!(t.copies[0].at, ms(100 + 1 + 5));

    // The same at a rate where bytes and microseconds differ: 125 kB/s, Q = 5 * 1000 bytes.
    let mut link = Link::new(
        LinkConfig {
            rate_bytes_per_s: Some(125_000.0),
            ..LinkConfig::default()
        },
        1,
    );
    for _ in 0..5 {
        link.transmit(Instant::ZERO, 972);
    }
    let t = link.transmit(Instant::ZERO, 472); // 500 on the wire
                                               // (5000 + 500) / 125_000 s = 44 ms.
    assert_eq!(t.copies[0].at, ms(44));
}

#[test]
fn tail_drop_happens_exactly_past_queue_bytes() {
    let config = LinkConfig {
        rate_bytes_per_s: Some(1e6),
        queue_bytes: 10_000,
        ..LinkConfig::default()
    };
    let mut link = Link::new(config.clone(), 1);
    for _ in 0..10 {
        assert!(!link.transmit(Instant::ZERO, 972).is_lost());
    }
    // Backlog 10_000: even the smallest datagram (28 bytes on the wire) overflows.
    assert_eq!(
        link.transmit(Instant::ZERO, 0).lost,
        Some(LossCause::QueueFull)
    );
    assert_eq!(
        link.transmit(Instant::ZERO, 972).lost,
        Some(LossCause::QueueFull)
    );
    // After 27 us, 9973 + 28 = 10_001 > 10_000: dropped. After 28 us, exactly 10_000: taken.
    assert_eq!(
        link.transmit(Instant::from_micros(27), 0).lost,
        Some(LossCause::QueueFull)
    );
    let t = link.transmit(Instant::from_micros(28), 0);
    assert_eq!(t.copies[0].at, Instant::from_micros(10_028));
    assert_eq!(link.stats().lost_queue, 3);
    assert_accounted(link.stats());

    // A datagram larger than the whole queue still goes through an idle link, one at a time.
    let mut link = Link::new(
        LinkConfig {
            queue_bytes: 1000,
            ..config
        },
        1,
    );
    // 2020 bytes on the wire into a 1000-byte queue: taken while idle.
    assert!(!link.transmit(Instant::ZERO, 1972).is_lost());
    // At 1 ms, 1020 bytes remain: no room even for 28 more. At 1.1 ms, 920 + 28 fit.
    assert!(link.transmit(Instant::from_micros(1000), 0).is_lost());
    assert!(!link.transmit(Instant::from_micros(1100), 0).is_lost());
    // Once idle again (2048 us), the oversized one is taken again; right behind it, nothing is.
    assert!(link.transmit(Instant::from_micros(2047), 1972).is_lost());
    assert!(!link.transmit(Instant::from_micros(2048), 1972).is_lost());
    assert!(link.transmit(Instant::from_micros(2048), 1972).is_lost());
}

#[test]
fn lost_datagrams_still_use_the_medium_and_set_config_keeps_the_queue() {
    let mut link = Link::new(
        LinkConfig {
            loss: 1.0,
            rate_bytes_per_s: Some(1e6),
            ..LinkConfig::default()
        },
        1,
    );
    for _ in 0..10 {
        assert_eq!(
            link.transmit(Instant::ZERO, 972).lost,
            Some(LossCause::Random)
        );
    }
    assert_eq!(link.backlog_bytes(Instant::ZERO), 10_000.0);
    link.set_config(LinkConfig {
        loss: 0.0,
        ..link.config().clone()
    });
    let t = link.transmit(Instant::ZERO, 972);
    assert_eq!(t.copies[0].at, Instant::from_micros(11_000));
}

#[test]
fn delay_and_jitter_stay_in_bounds_and_keep_order() {
    let config = LinkConfig {
        delay_ms: 30.0,
        jitter_ms: 10.0,
        ..LinkConfig::default()
    };
    // Offered every 1 ms, much closer than the jitter: order must be kept by holding back.
    let mut link = Link::new(config.clone(), 9);
    let mut previous = Instant::ZERO;
    let mut held = 0;
    for i in 0..100_000u64 {
        let now = ms(i);
        let at = link.transmit(now, 1000).copies[0].at;
        assert!(at >= now + Duration::from_millis(30), "{at} for {now}");
        assert!(at <= now + Duration::from_millis(40), "{at} for {now}");
        assert!(at >= previous, "reordered without reorder");
        held += usize::from(at == previous);
        previous = at;
    }
    assert!(held > 0, "never had to hold one back: jitter not applied?");

    // Offered 50 ms apart, the extra delay is uniform on [0, 10] ms: mean 5000 us, standard
    // error 2887 / sqrt(20_000) = 20.4 us. Zero or full jitter would miss by thousands.
    let mut link = Link::new(config, 10);
    let n = 20_000u64;
    let (mut sum, mut lo, mut hi) = (0u64, u64::MAX, 0u64);
    for i in 0..n {
        let now = ms(50 * i);
        let extra = (link.transmit(now, 1000).copies[0].at - now).as_micros() as u64 - 30_000;
        sum += extra;
        lo = lo.min(extra);
        hi = hi.max(extra);
    }
    assert_close("mean jitter", sum as f64 / n as f64, 5000.0, 5.0 * 20.4);
    assert!(lo < 10 && hi > 9990 && hi <= 10_000, "range {lo}..={hi}");
}

#[test]
fn reorder_holds_back_the_configured_fraction() {
    // 100k datagrams 1 ms apart, 10% held back 50 ms more: standard error 0.00095.
    let n = 100_000;
    let mut link = Link::new(
        LinkConfig {
            delay_ms: 10.0,
            reorder: 0.1,
            reorder_delay_ms: 50.0,
            ..LinkConfig::default()
        },
        12,
    );
    let mut held = 0;
    let mut overtaken = 0;
    let mut latest = Instant::ZERO;
    for i in 0..n as u64 {
        let now = ms(i);
        let at = link.transmit(now, 500).copies[0].at;
        if at == now + Duration::from_millis(60) {
            held += 1;
        } else {
            assert_eq!(at, now + Duration::from_millis(10));
        }
        overtaken += usize::from(at < latest);
        latest = latest.max(at);
    }
    assert_close(
        "reordered fraction",
        held as f64 / n as f64,
        0.1,
        5.0 * std_err(0.1, n),
    );
    assert!(overtaken > n / 20, "later datagrams overtake held ones");
}

#[test]
fn duplication_rate_matches_configured() {
    // 100k datagrams, 5% duplicated: standard error 0.00069.
    let n = 100_000;
    let mut link = Link::new(
        LinkConfig {
            duplicate: 0.05,
            delay_ms: 1.0,
            ..LinkConfig::default()
        },
        13,
    );
    let mut twice = 0;
    for i in 0..n as u64 {
        let t = link.transmit(ms(i), 300);
        match t.copies.as_slice() {
            [_] => {}
            [a, b] => {
                assert_eq!(a, b);
                twice += 1;
            }
            other => panic!("{} copies", other.len()),
        }
    }
    assert_close(
        "duplicated fraction",
        twice as f64 / n as f64,
        0.05,
        5.0 * std_err(0.05, n),
    );
    let stats = link.stats();
    assert_eq!(stats.duplicated, twice);
    assert_eq!(stats.delivered, n as u64);
    assert_accounted(stats);
}

#[test]
fn checksums_off_delivers_flips_within_the_payload_only() {
    // 4000-byte datagrams (3 fragments) at ber = 1e-5 with checksums off: nothing is lost, and
    // a datagram is damaged when one of its 32_000 payload bits flips (header flips are
    // ignored): 1 - (1 - 1e-5)^32_000 = 0.274, standard error 0.002 over 50k.
    let len = 4000;
    let n = 50_000;
    let ber = 1e-5;
    let mut link = Link::new(
        LinkConfig {
            bit_error_rate: ber,
            checksums: false,
            ..LinkConfig::default()
        },
        14,
    );
    let (mut damaged, mut flips, mut in_last_fragment) = (0usize, 0usize, 0usize);
    let last_fragment_start = (1472 + 1480) * 8;
    for i in 0..n as u64 {
        let t = link.transmit(ms(i), len);
        let copy = &t.copies[0];
        assert!(copy.bit_flips.iter().all(|&b| b < len * 8));
        assert!(copy.bit_flips.windows(2).all(|w| w[0] < w[1]));
        damaged += usize::from(!copy.bit_flips.is_empty());
        flips += copy.bit_flips.len();
        in_last_fragment += copy
            .bit_flips
            .iter()
            .filter(|&&b| b >= last_fragment_start)
            .count();
        let mut datagram = vec![0u8; len];
        apply_bit_flips(&mut datagram, &copy.bit_flips);
        let ones: u32 = datagram.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones as usize, copy.bit_flips.len());
    }
    let expected = 1.0 - (1.0 - ber).powi(8 * len as i32);
    assert_close(
        "damaged fraction",
        damaged as f64 / n as f64,
        expected,
        5.0 * std_err(expected, n),
    );
    // Flips spread over fragments by payload size: the last fragment holds 1048 of the 4000
    // bytes. About 16_000 flips, standard error sqrt(0.262 * 0.738 / 16_000) = 0.0035; a
    // fragment offset error (say, every fragment mapped onto the first) misses entirely.
    let share = 1048.0 / 4000.0;
    assert_close(
        "flips in last fragment",
        in_last_fragment as f64 / flips as f64,
        share,
        5.0 * std_err(share, flips),
    );
    let stats = link.stats();
    assert_eq!(stats.lost(), 0);
    assert_eq!(stats.corrupted_delivered as usize, damaged);
}

#[test]
fn partition_loses_everything_and_draws_nothing() {
    let config = LinkConfig {
        loss: 0.3,
        jitter_ms: 5.0,
        ..LinkConfig::default()
    };
    let mut cut = Link::new(config.clone(), 15);
    let mut fresh = Link::new(config, 15);
    cut.set_partitioned(true);
    assert!(cut.is_partitioned());
    for i in 0..1000 {
        assert_eq!(cut.transmit(ms(i), 100).lost, Some(LossCause::Partition));
    }
    assert_eq!(cut.stats().lost_partition, 1000);
    cut.set_partitioned(false);
    // Nothing was drawn while cut: the healed link goes on exactly as a fresh one.
    for i in 1000..2000 {
        assert_eq!(cut.transmit(ms(i), 100), fresh.transmit(ms(i), 100));
    }
    assert!(cut.stats().delivered > 0);
    assert_accounted(cut.stats());
}

#[test]
fn set_config_keeps_the_burst_state() {
    // First config drives the chain into the bad state at once and keeps it there.
    let sticky = GilbertElliott {
        p_good_to_bad: 1.0,
        p_bad_to_good: 0.0,
        ..GilbertElliott::default()
    };
    let mut link = Link::new(
        LinkConfig {
            burst: Some(sticky),
            ..LinkConfig::default()
        },
        16,
    );
    assert_eq!(link.transmit(ms(0), 10).lost, Some(LossCause::Burst));
    // A chain that never moves: a fresh link would stay good, this one stays bad.
    let frozen = LinkConfig {
        burst: Some(GilbertElliott {
            p_good_to_bad: 0.0,
            p_bad_to_good: 0.0,
            ..GilbertElliott::default()
        }),
        ..LinkConfig::default()
    };
    link.set_config(frozen.clone());
    assert_eq!(link.config(), &frozen);
    assert_eq!(link.transmit(ms(1), 10).lost, Some(LossCause::Burst));
    assert!(!Link::new(frozen, 16).transmit(ms(1), 10).is_lost());
}

#[test]
fn same_seed_same_fate_different_seed_different() {
    let config = LinkConfig {
        loss: 0.05,
        bit_error_rate: 1e-6,
        checksums: false,
        burst: Some(GilbertElliott {
            p_good_to_bad: 0.02,
            p_bad_to_good: 0.3,
            ..GilbertElliott::default()
        }),
        delay_ms: 20.0,
        jitter_ms: 5.0,
        rate_bytes_per_s: Some(2e6),
        queue_bytes: 30_000,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay_ms: 10.0,
        ..LinkConfig::default()
    };
    let run = |seed: u64| {
        let mut link = Link::new(config.clone(), seed);
        let mut offers = ChaCha8Rng::seed_from_u64(99);
        let mut now = Instant::ZERO;
        let fates: Vec<Transmission> = (0..20_000)
            .map(|_| {
                now += Duration::from_micros(offers.random_range(0..2000));
                link.transmit(now, offers.random_range(0..20_000))
            })
            .collect();
        (fates, link.stats().clone())
    };
    let (a, stats_a) = run(1);
    let (b, stats_b) = run(1);
    let (c, stats_c) = run(2);
    assert_eq!(a, b);
    assert_eq!(stats_a, stats_b);
    assert_ne!(a, c);
    assert_ne!(stats_a, stats_c);
    // Every mechanism showed up.
    for count in [
        stats_a.lost_random,
        stats_a.lost_burst,
        stats_a.lost_queue,
        stats_a.duplicated,
        stats_a.corrupted_delivered,
    ] {
        assert!(count > 0, "{stats_a:?}");
    }
    assert_accounted(&stats_a);
}

#[test]
fn invalid_configs_do_not_panic() {
    let config = LinkConfig {
        loss: f64::NAN,
        bit_error_rate: 2.0,
        mtu: 0,
        checksums: false,
        burst: Some(GilbertElliott {
            p_good_to_bad: f64::NAN,
            p_bad_to_good: -1.0,
            loss_good: 5.0,
            loss_bad: f64::INFINITY,
        }),
        delay_ms: -1.0,
        jitter_ms: f64::NAN,
        rate_bytes_per_s: Some(0.0),
        capacity: None,
        queue_bytes: 0,
        duplicate: -0.5,
        reorder: f64::INFINITY,
        reorder_delay_ms: f64::INFINITY,
    };
    assert!(config.validate().is_err());
    let mut link = Link::new(config, 17);
    for i in 0..100 {
        link.transmit(ms(i), 1000);
    }
    link.set_config(LinkConfig {
        delay_ms: f64::INFINITY,
        jitter_ms: 1e300,
        rate_bytes_per_s: Some(f64::MIN_POSITIVE),
        ..LinkConfig::default()
    });
    for i in 0..100 {
        link.transmit(ms(i), 1000);
    }
    link.transmit(Instant::MAX, 70_000);
    // A capacity far in the future, and at the end of time.
    link.set_config(LinkConfig {
        rate_bytes_per_s: Some(1.0),
        capacity: Some(Capacity::from_trace(
            CapacityTrace::from_millis(&[u32::MAX]).expect("valid"),
        )),
        queue_bytes: 0,
        ..LinkConfig::default()
    });
    for i in 0..100 {
        link.transmit(ms(i), 65_507);
        link.backlog_bytes(ms(i));
    }
    link.transmit(Instant::MAX, 70_000);
    link.backlog_bytes(Instant::MAX);
    assert_accounted(link.stats());
}

/// A link on the trace `ms` (opportunity timestamps) with a queue of `queue_bytes`.
fn trace_link(ms_list: &[u32], queue_bytes: usize) -> Link {
    let trace = CapacityTrace::from_millis(ms_list).expect("valid trace");
    let config = LinkConfig {
        capacity: Some(Capacity::from_trace(trace)),
        queue_bytes,
        ..LinkConfig::default()
    };
    config.validate().expect("valid config");
    Link::new(config, 1)
}

/// When `t` arrives (it must be delivered).
fn arrival(t: &Transmission) -> Instant {
    assert!(!t.is_lost(), "{t:?}");
    t.copies[0].at
}

#[test]
fn capacity_link_uses_one_opportunity_per_full_packet() {
    // Opportunities at 1, 1, 5 and 10 ms of every 10 ms: 4 x 1500 B per period.
    let mut link = trace_link(&[1, 1, 5, 10], 1 << 20);
    // 1472 B of payload is 1500 B on the wire: exactly one opportunity each.
    let got: Vec<u64> = (0..12)
        .map(|_| arrival(&link.transmit(ms(0), 1472)).as_micros() / 1000)
        .collect();
    assert_eq!(got, [1, 1, 5, 10, 11, 11, 15, 20, 21, 21, 25, 30]);
    // Per period, exactly the opportunities' bytes went out.
    assert_eq!(link.stats().delivered, 12);
}

#[test]
fn capacity_link_shares_opportunities_between_small_datagrams() {
    let mut link = trace_link(&[1, 1, 5, 10], 1 << 20);
    // 100 B of payload is 128 B on the wire; datagram k carries bytes up to (k + 1) * 128,
    // so it finishes in opportunity ((k + 1) * 128 - 1) / 1500.
    let opportunity_ms = |n: u64| [1, 1, 5, 10][(n % 4) as usize] + 10 * (n / 4);
    for k in 0..200u64 {
        let at = arrival(&link.transmit(ms(0), 100));
        let n = ((k + 1) * 128 - 1) / 1500;
        assert_eq!(at, ms(opportunity_ms(n)), "datagram {k}");
    }
    // 200 x 128 B = 25 600 B: 17.07 opportunities, so the last is the 18th.
    assert_eq!(link.backlog_bytes(ms(0)), 25_600.0);
    // At 20 ms, 8 opportunities are behind (20 ms itself counts as done).
    assert_eq!(link.backlog_bytes(ms(20)), 25_600.0 - 8.0 * 1500.0);
    assert_eq!(link.backlog_bytes(ms(45)), 0.0);
}

#[test]
fn capacity_link_delivers_the_traces_bytes_under_overload() {
    // Saturated for 10 s, the link delivers what the opportunities carry: every wire byte
    // offered by then (the queue is never empty) up to the trace's bytes.
    let spec = CellularSpec::new(200_000.0, 3);
    let capacity = Capacity::cellular(spec).expect("valid");
    let trace = capacity.trace().clone();
    let mut link = Link::new(
        LinkConfig {
            capacity: Some(capacity),
            ..LinkConfig::default()
        },
        9,
    );
    let mut delivered_wire = 0u64;
    let end = ms(10_000);
    for i in 0..10_000 {
        // 1 MB/s offered, far above the capacity.
        let t = link.transmit(ms(i), 972);
        if t.copies.first().is_some_and(|c| c.at < end) {
            delivered_wire += 1000;
        }
    }
    let capacity_bytes = trace.bytes_between(Instant::ZERO, end);
    assert!(
        delivered_wire <= capacity_bytes && delivered_wire + 1500 >= capacity_bytes,
        "delivered {delivered_wire} B of wire, capacity {capacity_bytes} B"
    );
    assert!(link.stats().lost_queue > 0);
    assert_accounted(link.stats());
}

#[test]
fn capacity_link_wastes_opportunities_that_find_the_queue_empty() {
    // One opportunity every 10 ms.
    let mut link = trace_link(&[10, 20], 1 << 20);
    assert_eq!(arrival(&link.transmit(ms(0), 100)), ms(10));
    // The rest of the 10 ms opportunity is gone: the next one is at 20 ms.
    assert_eq!(arrival(&link.transmit(ms(12), 100)), ms(20));
    // Offered at 20 ms, it shares the opportunity at 20 ms.
    assert_eq!(arrival(&link.transmit(ms(20), 100)), ms(20));
    // 3000 B of wire: 1500 - 256 left at 20 ms, then 30 and 40 ms.
    assert_eq!(arrival(&link.transmit(ms(20), 2972)), ms(40));
    // An idle link does not bank opportunities: after 1 s idle, the next is the next one.
    assert_eq!(arrival(&link.transmit(ms(1005), 1472)), ms(1010));
    assert_eq!(arrival(&link.transmit(ms(1005), 1472)), ms(1020));
}

#[test]
fn capacity_link_tail_drops_past_queue_bytes_and_reports_its_backlog() {
    let mut link = trace_link(&[10], 4500);
    assert_eq!(link.backlog_bytes(ms(0)), 0.0);
    for k in 1..=3 {
        assert_eq!(arrival(&link.transmit(ms(0), 1472)), ms(10 * k));
    }
    assert_eq!(link.backlog_bytes(ms(0)), 4500.0);
    let t = link.transmit(ms(0), 1);
    assert_eq!(t.lost, Some(LossCause::QueueFull));
    assert_eq!(link.backlog_bytes(ms(10)), 3000.0);
    assert_eq!(link.backlog_bytes(ms(25)), 1500.0);
    // Room again for one full packet.
    assert_eq!(arrival(&link.transmit(ms(10), 1472)), ms(40));
    assert!(link.transmit(ms(10), 1472).is_lost());
    assert_eq!(link.backlog_bytes(ms(40)), 0.0);
    // An idle link takes a datagram larger than the queue (not a black hole).
    assert_eq!(arrival(&link.transmit(ms(50), 9000)), ms(110));
    assert_eq!(link.stats().lost_queue, 2);
    assert_accounted(link.stats());
}

#[test]
fn capacity_with_no_opportunity_during_the_run_holds_everything() {
    // One opportunity a minute; a 30 s run never sees it.
    let mut link = trace_link(&[60_000], 64 * 1024);
    let mut first_arrival = None;
    for i in 0..3000 {
        let t = link.transmit(ms(i * 10), 1200);
        if let Some(c) = t.copies.first() {
            assert!(c.at >= ms(60_000));
            first_arrival.get_or_insert(c.at);
        }
    }
    assert_eq!(first_arrival, Some(ms(60_000)));
    let stats = link.stats();
    assert!(stats.lost_queue > 2900, "{stats:?}");
    assert!(link.backlog_bytes(ms(30_000)) <= 64.0 * 1024.0 + 1500.0);
    assert_accounted(stats);
}

#[test]
fn set_config_switches_between_rate_capacity_and_unlimited() {
    let capacity = Capacity::from_trace(CapacityTrace::from_millis(&[10]).expect("valid"));
    let with_capacity = LinkConfig {
        capacity: Some(capacity),
        ..LinkConfig::default()
    };
    let with_rate = LinkConfig {
        rate_bytes_per_s: Some(150_000.0),
        ..LinkConfig::default()
    };
    let mut link = Link::new(with_rate.clone(), 1);
    // 1500 B at 150 KB/s: 10 ms each.
    assert_eq!(arrival(&link.transmit(ms(0), 1472)), ms(10));
    assert_eq!(arrival(&link.transmit(ms(0), 1472)), ms(20));
    link.set_config(with_capacity.clone());
    // Behind the rate's queue (free at 20 ms): the capacity's first opportunity from then.
    assert_eq!(arrival(&link.transmit(ms(5), 1472)), ms(20));
    assert_eq!(arrival(&link.transmit(ms(5), 1472)), ms(30));
    // A change that keeps the capacity keeps its serializer.
    link.set_config(LinkConfig {
        delay_ms: 1.0,
        ..with_capacity.clone()
    });
    assert_eq!(arrival(&link.transmit(ms(5), 1472)), ms(41));
    link.set_config(LinkConfig::default());
    // Unlimited, but behind what is queued (and not before the last delivery, at 41 ms).
    assert_eq!(arrival(&link.transmit(ms(6), 1472)), ms(41));
    assert_eq!(link.backlog_bytes(ms(6)), 0.0);
    link.set_config(with_capacity);
    assert_eq!(arrival(&link.transmit(ms(50), 1472)), ms(50));
    link.set_config(with_rate);
    assert_eq!(arrival(&link.transmit(ms(50), 1472)), ms(60));
    assert_accounted(link.stats());
}

#[test]
fn capacity_and_rate_together_are_refused_naming_both() {
    let config = LinkConfig {
        rate_bytes_per_s: Some(1e6),
        capacity: Some(Capacity::from_trace(
            CapacityTrace::from_millis(&[1]).expect("valid"),
        )),
        ..LinkConfig::default()
    };
    let err = config.validate().expect_err("both");
    assert_eq!(err.field(), "capacity");
    let text = err.to_string();
    assert!(
        text.contains("capacity") && text.contains("rate_bytes_per_s"),
        "{text}"
    );
    // Unvalidated, the capacity wins and nothing panics.
    let mut link = Link::new(config, 1);
    assert_eq!(arrival(&link.transmit(ms(0), 100)), ms(1));
}

#[test]
fn link_config_toml_takes_a_capacity() {
    let c: LinkConfig = toml::from_str(
        "delay_ms = 20.0\ncapacity = { cellular = { mean_bytes_per_s = 250000.0, seed = 7 } }",
    )
    .expect("valid");
    c.validate().expect("valid");
    let capacity = c.capacity.as_ref().expect("set");
    assert!((capacity.trace().mean_bytes_per_s() - 250_000.0).abs() < 2500.0);
    let back: LinkConfig =
        toml::from_str(&toml::to_string(&c).expect("serializes")).expect("reads");
    assert_eq!(back, c);
    let err = toml::from_str::<LinkConfig>("capacity = { trace = \"no/such/trace.up\" }")
        .expect_err("missing file");
    assert!(err.to_string().contains("no/such/trace.up"), "{err}");
    assert!(toml::from_str::<LinkConfig>("capacity = { trace = 5 }").is_err());
}
