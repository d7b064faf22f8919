//! The simulators and the emulator draw the same dice: fed the same datagrams in the same
//! order, a scenario's links decide the same fate for each one in the simulators' shared
//! state (`livecam_sim::state::SimState`, behind des, turmoil and madsim) and in the
//! emulator's forwarder (behind the relay and the bridge): lost or not and why, and for every
//! copy that arrives, when, and with which bits flipped. Both drive one `link::Network` built
//! by the scenario's one expansion of its links and link faults (`Scenario::network`), which
//! seeds each pair from the run seed and the hosts' names; so `sim-vs-emulator` compares the
//! same draws, and what differs between its sides is the runtimes.

use std::net::{IpAddr, Ipv4Addr};

use livecam_emulator::forward::{Forwarder, Mode};
use livecam_emulator::plan::Plan;
use livecam_sim::state::SimState;
use livecam_sim::trace::Trace;
use livecam_sim::Scenario;
use livecam_system::link::apply_bit_flips;
use livecam_system::time::Instant;

/// Three hosts, a lossy, jittery default link with bit errors that reach the application and
/// duplicates, and a different, one-way model from the car to the tier-2.
const SCENARIO: &str = r#"
name = "same-fates"
duration_s = 60.0
[workload]
fps = 10.0
frame_bytes = 8000
[[hosts]]
name = "t1"
role = "tier1"
[[hosts]]
name = "t2"
role = "tier2"
tier1 = ["t1"]
[[hosts]]
name = "car"
role = "mobile"
tier1 = ["t1"]
[link]
loss = 0.1
delay_ms = 10.0
jitter_ms = 8.0
bit_error_rate = 1e-4
checksums = false
duplicate = 0.05
[[links]]
from = "car"
to = "t2"
one_way = true
config = { loss = 0.25, delay_ms = 20.0, jitter_ms = 5.0, bit_error_rate = 3e-4, checksums = false, burst = { p_good_to_bad = 0.05, p_bad_to_good = 0.3, loss_bad = 0.8 } }
"#;

fn ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1))
}

#[test]
fn simulation_and_emulation_draw_the_same_fate_for_each_datagram() {
    let scenario = Scenario::parse(SCENARIO).expect("scenario");
    for seed in [1, 7, 42] {
        let plan = Plan::new(&scenario, seed).expect("plan");
        let mut emulated = Forwarder::new(Mode::Datagram, plan.network.clone());
        let mut simulated = SimState::new(&scenario, seed, Trace::new(None));
        for (i, h) in plan.hosts.iter().enumerate() {
            simulated.set_address(ip(i), &h.name);
        }
        let index = |name: &str| plan.hosts.iter().position(|h| h.name == name).unwrap();
        let pairs = [("car", "t2"), ("t2", "car"), ("car", "t1"), ("t1", "t2")];
        let (mut lost, mut flipped, mut copies) = (0, 0, 0);
        for k in 0..4000u64 {
            // 40 ms apart: every copy of one datagram arrives before the next is offered.
            let now = Instant::from_millis(40 * k);
            let (from, to) = pairs[(k % 4) as usize];
            let (a, b) = (index(from), index(to));
            let len = 100 + (k as usize * 37) % 1300;
            let bytes: Vec<u8> = (0..len).map(|j| (j as u64 ^ k) as u8).collect();
            let fate = simulated.transmit(ip(a), ip(b), now, len);
            let got = emulated.offer(now, a, b, bytes.clone());
            assert_eq!(
                got, fate.lost,
                "seed {seed}, datagram {k} {from}->{to}: loss"
            );
            if fate.lost.is_some() {
                lost += 1;
                continue;
            }
            let mut expected = fate.copies;
            expected.sort_by_key(|c| c.at);
            let first = expected[0].at;
            if first > now {
                let early = Instant::from_micros(first.as_micros() - 1);
                assert_eq!(
                    emulated.poll(early),
                    None,
                    "seed {seed}, datagram {k}: early"
                );
            }
            for copy in expected {
                let mut want = bytes.clone();
                apply_bit_flips(&mut want, &copy.bit_flips);
                flipped += usize::from(!copy.bit_flips.is_empty());
                copies += 1;
                let out = emulated.poll(copy.at).unwrap_or_else(|| {
                    panic!("seed {seed}, datagram {k}: nothing at {:?}", copy.at)
                });
                assert_eq!((out.from, out.to), (a, b));
                assert!(out.bytes == want, "seed {seed}, datagram {k}: other bits");
            }
            assert_eq!(
                emulated.poll(Instant::MAX),
                None,
                "seed {seed}, datagram {k}: extra"
            );
        }
        // The draws covered every kind of fate.
        assert!(
            lost > 300 && flipped > 100 && copies > 3000,
            "{lost} {flipped} {copies}"
        );
    }
}
