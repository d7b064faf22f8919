//! The scenario explorer: every seed draws a whole scenario (the cluster's shape, the
//! workload, the size and FEC policies, the links between every pair, and a fault schedule),
//! runs it, and judges it against the invariants, as FoundationDB's simulator and
//! TigerBeetle's VOPR do. A failing scenario is written as a TOML file `livecam sim` replays,
//! and [`shrink`] reduces it to a smaller one that still fails.
//!
//! What a drawn scenario can hold: one to three tier-1s, one to four tier-2s, one to eight
//! mobile clients, with or without durability (ring, STORED, backfill), sessions sealed with
//! Noise keys or plain; a default link with
//! i.i.d. or bursty loss, bit errors (checksummed or reaching the application), jitter,
//! duplicates, a small MTU, a rate, a synthetic cellular capacity or (given Mahimahi files,
//! [`draw_in`]) a recorded one, and per-pair overrides;
//! faults: crashes and restarts of every role, partitions both ways and one way, capacity
//! dips on an uplink, tier-1 drains, storage stalls on a tier-2; host clocks that drift (up to 500 ppm) or jump forward (a host frozen for up to
//! 3 s), which only the des simulator runs. Every fault is healed (restart, repair, restore) by [`QUIET_FROM`] of the run, and
//! from then on every link is loss-free (the calm, as FoundationDB's simulator stops clogging
//! the network before its liveness checks), so what must recover has time to.
//!
//! The judgement separates safety from liveness ([`Verdict`]):
//! - **safety**: the stream's promises (nothing acknowledged that was not delivered, no frame
//!   delivered damaged or twice: [`crate::summary`]), every frame sent accounted for
//!   (delivered, dropped or lost with its host), and with durability nothing stored that was
//!   never captured;
//! - **liveness**, once the faults stop and the network is calm: every client in a session at
//!   the end, every tier-2 with exactly one manager (a hand-over in flight leaves a tier-2
//!   between two for a round trip, so this is a property of the settled cluster, not of every
//!   instant) and, with durability, every captured frame stored or reported dropped.
//!
//! The explorer is measured by a mutation check ([`hunt`]): with the `mutants` feature, each
//! known bug of `livecam_system::mutants` is switched in alone and the seeds run until one
//! fails that passes without it.
//!
//! Everything is a function of the seed: the draw uses its own ChaCha stream, the run is the
//! simulator's, so `livecam sim` of the written file replays a failure exactly.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::ops::ControlFlow;

use livecam_system::mutants::Mutant;

use crate::scenario::{Scenario, ScenarioError};
use crate::simulator::{self, Outcome, SimError, Simulator};

/// Faults start after this fraction of the run...
const FAULTS_FROM: f64 = 0.1;
/// ...and are all healed by this one: the rest of the run is quiet, for liveness.
pub const QUIET_FROM: f64 = 0.55;

/// One directed link model as drawn: the fields of a scenario's link table that the explorer
/// varies.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawnLink {
    pub loss: f64,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub bit_error_rate: f64,
    pub checksums: bool,
    /// Gilbert-Elliott: good to bad, bad to good, loss while bad.
    pub burst: Option<(f64, f64, f64)>,
    pub duplicate: f64,
    pub mtu: usize,
    pub rate_bytes_per_s: Option<f64>,
    /// A synthetic cellular capacity: mean bytes per second and its seed.
    pub cellular: Option<(f64, u64)>,
    /// A recorded capacity: a Mahimahi trace file (from `livecam explore --traces DIR`).
    pub trace: Option<String>,
}

impl DrawnLink {
    fn perfect() -> Self {
        DrawnLink {
            loss: 0.0,
            delay_ms: 10.0,
            jitter_ms: 0.0,
            bit_error_rate: 0.0,
            checksums: true,
            burst: None,
            duplicate: 0.0,
            mtu: 1500,
            rate_bytes_per_s: None,
            cellular: None,
            trace: None,
        }
    }

    /// The link as a TOML inline table.
    fn toml(&self) -> String {
        let mut t = format!(
            "{{ loss = {:?}, delay_ms = {:?}, jitter_ms = {:?}, bit_error_rate = {:?}, \
             checksums = {}, duplicate = {:?}, mtu = {}",
            self.loss,
            self.delay_ms,
            self.jitter_ms,
            self.bit_error_rate,
            self.checksums,
            self.duplicate,
            self.mtu
        );
        if let Some((g, b, l)) = self.burst {
            let _ = write!(
                t,
                ", burst = {{ p_good_to_bad = {g:?}, p_bad_to_good = {b:?}, loss_bad = {l:?} }}"
            );
        }
        if let Some(r) = self.rate_bytes_per_s {
            let _ = write!(t, ", rate_bytes_per_s = {r:?}");
        }
        if let Some((mean, seed)) = self.cellular {
            let _ = write!(
                t,
                ", capacity = {{ cellular = {{ mean_bytes_per_s = {mean:?}, seed = {seed} }} }}"
            );
        }
        if let Some(path) = &self.trace {
            let _ = write!(t, ", capacity = {{ trace = {path:?} }}");
        }
        t.push_str(" }");
        t
    }

    /// The simpler links one step of shrinking may try instead of this one.
    fn simpler(&self) -> Vec<DrawnLink> {
        let mut out = Vec::new();
        let mut try_ = |changed: bool, l: DrawnLink| {
            if changed {
                out.push(l);
            }
        };
        try_(
            self.burst.is_some(),
            DrawnLink {
                burst: None,
                ..self.clone()
            },
        );
        try_(
            self.bit_error_rate > 0.0,
            DrawnLink {
                bit_error_rate: 0.0,
                checksums: true,
                ..self.clone()
            },
        );
        try_(
            self.cellular.is_some() || self.rate_bytes_per_s.is_some() || self.trace.is_some(),
            DrawnLink {
                cellular: None,
                rate_bytes_per_s: None,
                trace: None,
                ..self.clone()
            },
        );
        try_(
            self.jitter_ms > 0.0 || self.duplicate > 0.0,
            DrawnLink {
                jitter_ms: 0.0,
                duplicate: 0.0,
                ..self.clone()
            },
        );
        try_(
            self.mtu != 1500,
            DrawnLink {
                mtu: 1500,
                ..self.clone()
            },
        );
        try_(
            self.loss > 0.0,
            DrawnLink {
                loss: 0.0,
                ..self.clone()
            },
        );
        out
    }
}

/// A group of hosts: its member `i`.
type Group = fn(usize) -> Who;

/// A host as the explorer names it: a group and a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Tier1(usize),
    Tier2(usize),
    Mobile(usize),
}

impl Who {
    /// The host's name in `d`'s scenario: a group's member is named by the group and its
    /// index, a group of one by the group.
    fn name(self, d: &Drawn) -> String {
        let (group, i, count) = match self {
            Who::Tier1(i) => ("t1", i, d.tier1s),
            Who::Tier2(i) => ("t2", i, d.tier2s),
            Who::Mobile(i) => ("car", i, d.mobiles),
        };
        if count == 1 {
            group.to_string()
        } else {
            format!("{group}{i}")
        }
    }
}

/// One drawn fault, with its healing.
#[derive(Clone, Debug, PartialEq)]
pub enum DrawnFault {
    /// The host crashes at `at_s` and restarts at `restart_s`.
    Crash {
        at_s: f64,
        host: Who,
        restart_s: f64,
    },
    /// Between two hosts (both ways, or from `a` to `b` only when `one_way`), repaired at
    /// `repair_s`.
    Partition {
        at_s: f64,
        a: Who,
        b: Who,
        one_way: bool,
        repair_s: f64,
    },
    /// A tier-2's storage commits nothing from `at_s` to `until_s` (durable scenarios).
    StorageStall {
        at_s: f64,
        tier2: usize,
        until_s: f64,
    },
    /// A mobile's uplink to a tier-2 takes `link` from `at_s` to `until_s`, then the default.
    Dip {
        at_s: f64,
        mobile: usize,
        tier2: usize,
        link: DrawnLink,
        until_s: f64,
    },
    /// A tier-1 hands its tier-2s to its peers.
    Drain { at_s: f64, tier1: usize },
}

impl DrawnFault {
    /// The kind, for the coverage table.
    pub fn kind(&self) -> &'static str {
        match self {
            DrawnFault::Crash {
                host: Who::Tier1(_),
                ..
            } => "crash tier1",
            DrawnFault::Crash {
                host: Who::Tier2(_),
                ..
            } => "crash tier2",
            DrawnFault::Crash {
                host: Who::Mobile(_),
                ..
            } => "crash mobile",
            DrawnFault::Partition { one_way: false, .. } => "partition",
            DrawnFault::Partition { one_way: true, .. } => "one-way partition",
            DrawnFault::StorageStall { .. } => "storage stall",
            DrawnFault::Dip { .. } => "capacity dip",
            DrawnFault::Drain { .. } => "drain",
        }
    }

    fn hosts(&self) -> Vec<Who> {
        match *self {
            DrawnFault::Crash { host, .. } => vec![host],
            DrawnFault::Partition { a, b, .. } => vec![a, b],
            DrawnFault::Dip { mobile, tier2, .. } => vec![Who::Mobile(mobile), Who::Tier2(tier2)],
            DrawnFault::Drain { tier1, .. } => vec![Who::Tier1(tier1)],
            DrawnFault::StorageStall { tier2, .. } => vec![Who::Tier2(tier2)],
        }
    }
}

/// A host clock off true time: a drift, and perhaps one forward jump `(at_s, jump_ms)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawnClock {
    pub host: Who,
    pub drift_ppm: f64,
    pub jump: Option<(f64, f64)>,
}

/// A whole drawn scenario, kept in this form (not as TOML) so that it can be shrunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    pub seed: u64,
    pub duration_s: f64,
    pub tier1s: usize,
    pub tier2s: usize,
    pub mobiles: usize,
    pub fps: f64,
    pub frame_bytes: usize,
    /// `seed`, `fixed:N` or `model`.
    pub policy: String,
    /// `off`, `auto` or `fixed:N`.
    pub fec: String,
    pub rate_control: bool,
    /// With rate control, the cameras read their uplinks as their own
    /// (`RateConfig::uplink_alone`).
    pub uplink_alone: bool,
    pub durability: bool,
    /// Sessions sealed with Noise keys (the default), or the plain protocol.
    pub secure: bool,
    pub link: DrawnLink,
    /// Both ways between a mobile and a tier-2.
    pub overrides: Vec<(usize, usize, DrawnLink)>,
    pub faults: Vec<DrawnFault>,
    pub clocks: Vec<DrawnClock>,
    /// Members the shrinker took out of the middle of their group (the others keep their
    /// names, and so their links); empty in a drawn scenario.
    pub removed: Vec<Who>,
}

/// Draws the scenario of `seed` without recorded traces ([`draw_in`] with none).
pub fn draw(seed: u64) -> Drawn {
    draw_in(seed, &[])
}

/// Draws the scenario of `seed`; with `traces` (Mahimahi files), one scenario in three gives
/// its default link or one of its overrides a recorded capacity picked from them. Small fleets (at most 15 hosts) with a light workload (2 to
/// 10 frames a second of 1 to 6 KB per mobile), 30 simulated seconds: hundreds of scenarios a
/// minute on a core.
pub fn draw_in(seed: u64, traces: &[String]) -> Drawn {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let duration_s = 30.0;
    let tier1s = rng.random_range(1..=3usize);
    let tier2s = rng.random_range(1..=4usize);
    let mobiles = rng.random_range(1..=8usize);
    let policy = match rng.random_range(0..3) {
        0 => "seed".to_string(),
        1 => format!("fixed:{}", [200, 500, 1000, 1400][rng.random_range(0..4)]),
        _ => "model".to_string(),
    };
    let fec = match rng.random_range(0..3) {
        0 => "off".to_string(),
        1 => "auto".to_string(),
        _ => format!("fixed:{}", rng.random_range(1..=3)),
    };
    let link = draw_link(&mut rng, false);
    let overrides = (0..rng.random_range(0..=2))
        .map(|_| {
            (
                rng.random_range(0..mobiles),
                rng.random_range(0..tier2s),
                draw_link(&mut rng, true),
            )
        })
        .collect();
    let mut faults = Vec::new();
    let (from, quiet) = (FAULTS_FROM * duration_s, QUIET_FROM * duration_s);
    for _ in 0..rng.random_range(0..=4) {
        let at_s = round_ms(rng.random_range(from..quiet - 1.0));
        let heal_s = round_ms(rng.random_range(at_s + 0.5..quiet));
        let host = |rng: &mut ChaCha8Rng| draw_host(rng, tier1s, tier2s, mobiles);
        let fault = match rng.random_range(0..4) {
            0 => DrawnFault::Crash {
                at_s,
                host: host(&mut rng),
                restart_s: heal_s,
            },
            1 => {
                let a = host(&mut rng);
                let b = host(&mut rng);
                if a == b {
                    continue;
                }
                DrawnFault::Partition {
                    at_s,
                    a,
                    b,
                    one_way: false,
                    repair_s: heal_s,
                }
            }
            2 => {
                let mut dip = draw_link(&mut rng, true);
                dip.rate_bytes_per_s = Some(round_ms(rng.random_range(5_000.0..60_000.0)));
                dip.cellular = None;
                DrawnFault::Dip {
                    at_s,
                    mobile: rng.random_range(0..mobiles),
                    tier2: rng.random_range(0..tier2s),
                    link: dip,
                    until_s: heal_s,
                }
            }
            _ => {
                if tier1s < 2 {
                    continue;
                }
                DrawnFault::Drain {
                    at_s,
                    tier1: rng.random_range(0..tier1s),
                }
            }
        };
        faults.push(fault);
    }
    // What later versions added draws from a stream of its own, so that a seed keeps the
    // shape it had before.
    let mut more = ChaCha8Rng::seed_from_u64(seed);
    more.set_stream(1);
    for f in &mut faults {
        if let DrawnFault::Partition { one_way, .. } = f {
            *one_way = more.random_bool(0.4);
        }
    }
    let mut clocks = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        if !rng.random_bool(0.4) {
            continue;
        }
        let host = draw_host(&mut rng, tier1s, tier2s, mobiles);
        let drift_ppm = rng.random_range(-500..=500) as f64;
        let jump = rng.random_bool(0.5).then(|| {
            (
                round_ms(rng.random_range(from..quiet - 1.0)),
                rng.random_range(50..=3000) as f64,
            )
        });
        clocks.push(DrawnClock {
            host,
            drift_ppm,
            jump,
        });
    }
    let mut drawn = Drawn {
        seed,
        duration_s,
        tier1s,
        tier2s,
        mobiles,
        fps: [2.0, 5.0, 10.0][rng.random_range(0..3)],
        frame_bytes: rng.random_range(1_000..=6_000),
        policy,
        fec,
        rate_control: rng.random_bool(0.8),
        uplink_alone: false,
        durability: rng.random_bool(0.3),
        secure: true,
        link,
        overrides,
        faults,
        clocks,
        removed: Vec::new(),
    };
    if drawn.durability && more.random_bool(0.5) {
        let at_s = round_ms(more.random_range(from..quiet - 1.0));
        drawn.faults.push(DrawnFault::StorageStall {
            at_s,
            tier2: more.random_range(0..tier2s),
            until_s: round_ms(more.random_range(at_s + 0.5..quiet)),
        });
    }
    // One in four runs the plain protocol (no session keys): what the CRC alone must catch.
    drawn.secure = !more.random_bool(0.25);
    if !traces.is_empty() && more.random_bool(1.0 / 3.0) {
        let which = more.random_range(0..=drawn.overrides.len());
        let link = match which.checked_sub(1) {
            Some(i) => &mut drawn.overrides[i].2,
            None => &mut drawn.link,
        };
        link.trace = Some(traces[more.random_range(0..traces.len())].clone());
        link.cellular = None;
        link.rate_bytes_per_s = None;
    }
    // Drawn last, so every seed's other draws are what they were before it existed.
    drawn.uplink_alone = drawn.rate_control && more.random_bool(0.25);
    drawn
}

/// Any host of the fleet: a role first, then a member.
fn draw_host(rng: &mut ChaCha8Rng, tier1s: usize, tier2s: usize, mobiles: usize) -> Who {
    match rng.random_range(0..3) {
        0 => Who::Tier1(rng.random_range(0..tier1s)),
        1 => Who::Tier2(rng.random_range(0..tier2s)),
        _ => Who::Mobile(rng.random_range(0..mobiles)),
    }
}

fn round_ms(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A link: mostly mild, sometimes with every feature; `harsh` for overrides and dips.
fn draw_link(rng: &mut ChaCha8Rng, harsh: bool) -> DrawnLink {
    let mut l = DrawnLink::perfect();
    l.delay_ms = round_ms(rng.random_range(2.0..60.0));
    let max_loss = if harsh { 0.3 } else { 0.1 };
    if rng.random_bool(0.7) {
        l.loss = round_ms(rng.random_range(0.0..max_loss));
    }
    if rng.random_bool(0.3) {
        l.jitter_ms = round_ms(rng.random_range(0.0..20.0));
    }
    if rng.random_bool(0.25) {
        l.bit_error_rate = [1e-6, 1e-5, 5e-5, 1e-4][rng.random_range(0..4)];
        l.checksums = rng.random_bool(0.5);
    }
    if rng.random_bool(0.2) {
        l.burst = Some((
            round_ms(rng.random_range(0.005..0.05)),
            round_ms(rng.random_range(0.2..0.6)),
            round_ms(rng.random_range(0.3..0.9)),
        ));
    }
    if rng.random_bool(0.1) {
        l.duplicate = 0.01;
    }
    if rng.random_bool(0.2) {
        l.mtu = [576, 1280][rng.random_range(0..2)];
    }
    match rng.random_range(0..10) {
        0 => l.rate_bytes_per_s = Some(round_ms(rng.random_range(100_000.0..2_000_000.0))),
        1 => {
            l.cellular = Some((
                round_ms(rng.random_range(200_000.0..1_500_000.0)),
                rng.random_range(1..1000),
            ))
        }
        _ => {}
    }
    l
}

impl Drawn {
    /// The scenario as a file `livecam sim` runs (its `seed` is the drawn one).
    pub fn toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Drawn by `livecam explore` from seed {}.\nname = \"explore-{}\"\nseed = {}\n\
             duration_s = {:?}\nlink = {}\n",
            self.seed,
            self.seed,
            self.seed,
            self.duration_s,
            self.link.toml()
        );
        let _ = writeln!(
            t,
            "[workload]\nfps = {:?}\nframe_bytes = {}\npolicy = \"{}\"\nfec = \"{}\"\n\
             stagger_ms = 20.0\nsettle_s = 5.0\n",
            self.fps, self.frame_bytes, self.policy, self.fec
        );
        let _ = writeln!(
            t,
            "[protocol]\nrate_control = {}\nuplink_alone = {}\n",
            self.rate_control, self.uplink_alone
        );
        if self.durability {
            t.push_str("[durability]\nstore_latency_ms = 20.0\n\n");
        }
        if !self.secure {
            t.push_str("[cluster]\nsecure = false\n\n");
        }
        if self.removed.is_empty() {
            let _ = writeln!(
                t,
                "[[hosts]]\nname = \"t1\"\nrole = \"tier1\"\ncount = {}\n",
                self.tier1s
            );
            let _ = writeln!(
                t,
                "[[hosts]]\nname = \"t2\"\nrole = \"tier2\"\ncount = {}\ntier1 = [\"t1\"]\n\
                 rotate_tier1 = true\n",
                self.tier2s
            );
            let _ = writeln!(
                t,
                "[[hosts]]\nname = \"car\"\nrole = \"mobile\"\ncount = {}\ntier1 = [\"t1\"]\n\
                 rotate_tier1 = true\n",
                self.mobiles
            );
        } else {
            // Members taken out of the middle: every host on its own, under the name it had in
            // its group, with the tier-1 list the group would have given it.
            let tier1s: Vec<String> = self
                .members(Who::Tier1, self.tier1s)
                .into_iter()
                .map(|w| format!("{:?}", w.name(self)))
                .collect();
            for (group, count) in self.groups() {
                for w in self.members(group, count) {
                    let (role, i) = match w {
                        Who::Tier1(i) => ("tier1", i),
                        Who::Tier2(i) => ("tier2", i),
                        Who::Mobile(i) => ("mobile", i),
                    };
                    let _ = write!(
                        t,
                        "[[hosts]]\nname = \"{}\"\nrole = \"{role}\"\n",
                        w.name(self)
                    );
                    if role != "tier1" && !tier1s.is_empty() {
                        let mut list = tier1s.clone();
                        let k = i % list.len();
                        list.rotate_left(k);
                        let _ = writeln!(t, "tier1 = [{}]", list.join(", "));
                    }
                    t.push('\n');
                }
            }
        }
        for (m, s, l) in &self.overrides {
            let (m, s) = (Who::Mobile(*m).name(self), Who::Tier2(*s).name(self));
            let _ = writeln!(
                t,
                "[[links]]\nfrom = \"{m}\"\nto = \"{s}\"\nconfig = {}\n",
                l.toml()
            );
        }
        let fault = |t: &mut String, at: f64, body: String| {
            let _ = writeln!(t, "[[faults]]\nat_s = {at:?}\n{body}");
        };
        for f in &self.faults {
            match f {
                DrawnFault::Crash {
                    at_s,
                    host,
                    restart_s,
                } => {
                    let h = host.name(self);
                    fault(
                        &mut t,
                        *at_s,
                        format!("action = \"crash\"\nhost = \"{h}\"\n"),
                    );
                    fault(
                        &mut t,
                        *restart_s,
                        format!("action = \"restart\"\nhost = \"{h}\"\n"),
                    );
                }
                DrawnFault::Partition {
                    at_s,
                    a,
                    b,
                    one_way,
                    repair_s,
                } => {
                    let (a, b) = (a.name(self), b.name(self));
                    for (at, action) in [(*at_s, "partition"), (*repair_s, "repair")] {
                        fault(
                            &mut t,
                            at,
                            format!(
                                "action = \"{action}\"\na = \"{a}\"\nb = \"{b}\"\n\
                                 one_way = {one_way}\n"
                            ),
                        );
                    }
                }
                DrawnFault::StorageStall {
                    at_s,
                    tier2,
                    until_s,
                } => {
                    fault(
                        &mut t,
                        *at_s,
                        format!(
                            "action = \"stall_storage\"\nhost = \"{}\"\nuntil_s = {until_s:?}\n",
                            Who::Tier2(*tier2).name(self)
                        ),
                    );
                }
                DrawnFault::Dip {
                    at_s,
                    mobile,
                    tier2,
                    link,
                    until_s,
                } => {
                    let back = self
                        .overrides
                        .iter()
                        .rev()
                        .find(|(m, s, _)| (m, s) == (mobile, tier2))
                        .map_or(&self.link, |(_, _, l)| l);
                    let (m, s) = (
                        Who::Mobile(*mobile).name(self),
                        Who::Tier2(*tier2).name(self),
                    );
                    for (at, l) in [(*at_s, link), (*until_s, back)] {
                        fault(
                            &mut t,
                            at,
                            format!(
                                "action = \"set_link\"\na = \"{m}\"\nb = \"{s}\"\n\
                                 one_way = true\nconfig = {}\n",
                                l.toml()
                            ),
                        );
                    }
                }
                DrawnFault::Drain { at_s, tier1 } => {
                    fault(
                        &mut t,
                        *at_s,
                        format!(
                            "action = \"drain\"\nhost = \"{}\"\n",
                            Who::Tier1(*tier1).name(self)
                        ),
                    );
                }
            }
        }
        for c in &self.clocks {
            let _ = write!(
                t,
                "[[clocks]]\nhost = \"{}\"\ndrift_ppm = {:?}\n",
                c.host.name(self),
                c.drift_ppm
            );
            if let Some((at, jump)) = c.jump {
                let _ = writeln!(t, "jumps = [{{ at_s = {at:?}, jump_ms = {jump:?} }}]");
            }
            t.push('\n');
        }
        // The calm: from QUIET_FROM on every link is loss-free, as FoundationDB's simulator
        // stops clogging the network before it checks that the cluster recovers.
        let calm = DrawnLink {
            delay_ms: self.link.delay_ms,
            ..DrawnLink::perfect()
        };
        // Group by group; host by host when members were taken out (the groups are gone).
        let groups: Vec<String> = if self.removed.is_empty() {
            ["t1", "t2", "car"].map(String::from).to_vec()
        } else {
            self.groups()
                .into_iter()
                .flat_map(|(g, n)| self.members(g, n))
                .map(|w| w.name(self))
                .collect()
        };
        let same_group = self.removed.is_empty();
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[if same_group { i } else { i + 1 }..] {
                fault(
                    &mut t,
                    self.calm_at_s(),
                    format!(
                        "action = \"set_link\"\na = \"{a}\"\nb = \"{b}\"\nconfig = {}\n",
                        calm.toml()
                    ),
                );
            }
        }
        t
    }

    /// The scenario, parsed and checked as `livecam sim` would.
    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&self.toml())
    }

    /// When the faults are over and every link turns loss-free, for the rest of the run.
    pub fn calm_at_s(&self) -> f64 {
        round_ms(QUIET_FROM * self.duration_s)
    }

    /// The same scenario with mobiles added until it holds `hosts` hosts: the hosts it had
    /// keep their names, links and faults (the mutation check grows a failure it found to
    /// see the shrinker bring it back).
    pub fn grown(&self, hosts: usize) -> Drawn {
        let mut d = self.clone();
        d.mobiles = d.mobiles.max(hosts.saturating_sub(d.tier1s + d.tier2s));
        d
    }

    /// Hosts in all.
    pub fn hosts(&self) -> usize {
        self.groups()
            .into_iter()
            .map(|(g, n)| self.members(g, n).len())
            .sum()
    }

    fn exists(&self, who: Who) -> bool {
        let in_group = match who {
            Who::Tier1(i) => i < self.tier1s,
            Who::Tier2(i) => i < self.tier2s,
            Who::Mobile(i) => i < self.mobiles,
        };
        in_group && !self.removed.contains(&who)
    }

    /// The groups, in the scenario's order, with their drawn sizes.
    fn groups(&self) -> [(Group, usize); 3] {
        [
            (Who::Tier1, self.tier1s),
            (Who::Tier2, self.tier2s),
            (Who::Mobile, self.mobiles),
        ]
    }

    /// The members of a group still there, in order.
    fn members(&self, group: Group, count: usize) -> Vec<Who> {
        (0..count).map(group).filter(|w| self.exists(*w)).collect()
    }

    /// Drops the faults and overrides that name hosts no longer there.
    fn prune(mut self) -> Self {
        let faults = std::mem::take(&mut self.faults);
        self.faults = faults
            .into_iter()
            .filter(|f| f.hosts().into_iter().all(|w| self.exists(w)))
            .filter(|f| {
                !matches!(f, DrawnFault::Drain { .. })
                    || self.members(Who::Tier1, self.tier1s).len() >= 2
            })
            .filter(|f| !matches!(f, DrawnFault::StorageStall { .. }) || self.durability)
            .collect();
        let overrides = std::mem::take(&mut self.overrides);
        self.overrides = overrides
            .into_iter()
            .filter(|(a, b, _)| self.exists(Who::Mobile(*a)) && self.exists(Who::Tier2(*b)))
            .collect();
        let clocks = std::mem::take(&mut self.clocks);
        self.clocks = clocks.into_iter().filter(|c| self.exists(c.host)).collect();
        self
    }

    /// The scenarios one step smaller than this one, most reducing first: fewer faults, fewer
    /// hosts, fewer overrides, simpler links, a shorter run.
    fn smaller(&self) -> Vec<Drawn> {
        let mut out = Vec::new();
        for i in 0..self.faults.len() {
            let mut d = self.clone();
            d.faults.remove(i);
            out.push(d);
        }
        // A group halved, or one host less (the same when it has two).
        let resized = |d: &Drawn, f: fn(&mut Drawn) -> &mut usize, to: fn(usize) -> usize| {
            let mut d = d.clone();
            let n = f(&mut d);
            if *n <= 1 {
                return None;
            }
            *n = to(*n).max(1);
            Some(d.prune())
        };
        let groups: [fn(&mut Drawn) -> &mut usize; 3] =
            [|d| &mut d.mobiles, |d| &mut d.tier2s, |d| &mut d.tier1s];
        for g in groups {
            out.extend(resized(self, g, |n| n / 2));
            out.extend(resized(self, g, |n| n - 1));
        }
        // Members out of the middle of a group (what fails may hang on its last member): the
        // first half of those left, then each one alone.
        for (group, count) in self.groups().into_iter().rev() {
            let left = self.members(group, count);
            if left.len() < 2 {
                continue;
            }
            let mut cuts: Vec<&[Who]> = vec![&left[..left.len() / 2]];
            cuts.extend(left.chunks(1));
            for cut in cuts {
                let mut d = self.clone();
                d.removed.extend_from_slice(cut);
                out.push(d.prune());
            }
        }
        for i in 0..self.overrides.len() {
            let mut d = self.clone();
            d.overrides.remove(i);
            out.push(d);
        }
        for i in 0..self.clocks.len() {
            let mut d = self.clone();
            d.clocks.remove(i);
            out.push(d);
        }
        for l in self.link.simpler() {
            out.push(Drawn {
                link: l,
                ..self.clone()
            });
        }
        if self.durability {
            out.push(
                Drawn {
                    durability: false,
                    ..self.clone()
                }
                .prune(),
            );
        }
        if self.fec != "off" {
            out.push(Drawn {
                fec: "off".into(),
                ..self.clone()
            });
        }
        // A shorter run: the faults compressed into its first part, in the same proportions.
        if self.duration_s > 10.0 {
            let k = 0.5;
            let mut d = self.clone();
            d.duration_s = self.duration_s * k;
            for f in &mut d.faults {
                match f {
                    DrawnFault::Crash {
                        at_s, restart_s: h, ..
                    }
                    | DrawnFault::Partition {
                        at_s, repair_s: h, ..
                    }
                    | DrawnFault::Dip {
                        at_s, until_s: h, ..
                    }
                    | DrawnFault::StorageStall {
                        at_s, until_s: h, ..
                    } => {
                        *at_s = round_ms(*at_s * k);
                        *h = round_ms(*h * k);
                    }
                    DrawnFault::Drain { at_s, .. } => *at_s = round_ms(*at_s * k),
                }
            }
            for c in &mut d.clocks {
                if let Some((at, _)) = &mut c.jump {
                    *at = round_ms(*at * k);
                }
            }
            out.push(d);
        }
        // Every group keeps a member.
        out.retain(|d| {
            d.groups()
                .into_iter()
                .all(|(g, n)| !d.members(g, n).is_empty())
        });
        out.dedup();
        out
    }
}

/// What a run broke, split as VOPR does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Must never happen, faults or not.
    pub safety: Vec<String>,
    /// Must have recovered once the faults stopped.
    pub liveness: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.safety.is_empty() && self.liveness.is_empty()
    }

    /// Whether this verdict fails the way `first` did, as shrinking asks: a safety failure
    /// must stay a safety failure (a smaller scenario that only fails liveness is another bug).
    pub fn fails_like(&self, first: &Verdict) -> bool {
        if first.safety.is_empty() {
            !self.passed()
        } else {
            !self.safety.is_empty()
        }
    }

    /// Every problem, one per line, safety first.
    pub fn lines(&self) -> Vec<String> {
        let s = self.safety.iter().map(|p| format!("safety: {p}"));
        let l = self.liveness.iter().map(|p| format!("liveness: {p}"));
        s.chain(l).collect()
    }
}

/// Judges a run of a drawn scenario. See the module docs.
pub fn judge(outcome: &Outcome) -> Verdict {
    let s = &outcome.summary;
    let mut v = Verdict::default();
    if !s.promises_kept {
        v.safety.extend(s.violations.iter().cloned());
    }
    if s.frames_corrupted + s.frames_duplicated > 0 {
        v.safety.push(format!(
            "{} frames delivered damaged, {} twice",
            s.frames_corrupted, s.frames_duplicated
        ));
    }
    let accounted = s.frames_delivered + s.frames_dropped + s.frames_lost_with_host;
    if s.frames_sent != accounted {
        v.safety.push(format!(
            "frames sent {} != delivered {} + dropped {} + lost with host {}",
            s.frames_sent, s.frames_delivered, s.frames_dropped, s.frames_lost_with_host
        ));
    }
    match &s.cluster {
        Some(c) => {
            if !c.managers_consistent {
                v.liveness
                    .push("a tier-2 without exactly one manager at the end".into());
            }
            if c.clients_unconnected > 0 {
                v.liveness.push(format!(
                    "{} clients without a session at the end",
                    c.clients_unconnected
                ));
            }
        }
        None => v.safety.push("no cluster figures".into()),
    }
    if let Some(d) = &s.durability {
        if d.stored_never_captured > 0 {
            v.safety.push(format!(
                "{} frames stored that were never captured",
                d.stored_never_captured
            ));
        }
        if d.frames_not_stored > 0 {
            v.liveness.push(format!(
                "{} captured frames neither stored nor reported dropped (first {:?})",
                d.frames_not_stored, d.first_not_stored
            ));
        }
    }
    v
}

/// A drawn scenario run and judged.
#[derive(Clone, Debug)]
pub struct Case {
    pub drawn: Drawn,
    pub verdict: Verdict,
    pub summary: crate::summary::Summary,
    pub trace_hash: String,
    pub wall_seconds: f64,
}

/// Runs a drawn scenario on `backend` and judges it.
pub fn run(drawn: &Drawn, backend: Simulator) -> Result<Case, ExploreError> {
    let scenario = drawn.scenario().map_err(|e| ExploreError::Draw {
        seed: drawn.seed,
        message: e.to_string(),
    })?;
    let outcome = simulator::run(backend, &scenario, drawn.seed, None)?;
    Ok(Case {
        drawn: drawn.clone(),
        verdict: judge(&outcome),
        summary: outcome.summary,
        trace_hash: outcome.trace_hash,
        wall_seconds: outcome.wall_seconds,
    })
}

/// Which seeds to explore and how.
#[derive(Clone, Debug)]
pub struct Plan {
    pub first: u64,
    /// Seeds in all; `None` runs until `deadline`.
    pub count: Option<u64>,
    /// No seed starts after this wall-clock instant (the only wall clock here: it decides
    /// how many seeds run, never what one does).
    pub deadline: Option<std::time::Instant>,
    pub jobs: usize,
    pub backend: Simulator,
    /// Mahimahi trace files drawn links may take their capacity from ([`draw_in`]).
    pub traces: Vec<String>,
    /// A known bug switched into every run (the mutation check, [`hunt`]); needs the
    /// `mutants` feature, without which every seed is an [`ExploreError::MutantsOff`].
    pub mutant: Option<Mutant>,
}

/// Explores the seeds of `plan` on `plan.jobs` threads and hands every case to `on_case` in
/// seed order, until the seeds are done or `on_case` breaks. Returns the number of cases
/// handed on.
pub fn explore(
    plan: &Plan,
    mut on_case: impl FnMut(u64, Result<Case, ExploreError>) -> ControlFlow<()>,
) -> u64 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    if plan.mutant.is_some() && !livecam_system::mutants::ENABLED {
        let _ = on_case(plan.first, Err(ExploreError::MutantsOff));
        return 1;
    }
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(plan.first);
    let end = plan.count.map(|n| plan.first.saturating_add(n));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut done = 0;
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                with_mutant(plan.mutant, || loop {
                    if stop.load(Ordering::Relaxed)
                        || plan
                            .deadline
                            .is_some_and(|d| std::time::Instant::now() >= d)
                    {
                        return;
                    }
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if end.is_some_and(|e| seed >= e) {
                        return;
                    }
                    let case = run(&draw_in(seed, &plan.traces), plan.backend);
                    if tx.send((seed, case)).is_err() {
                        return;
                    }
                })
            });
        }
        drop(tx);
        // In seed order: hold what arrives early.
        let mut held = std::collections::BTreeMap::new();
        let mut want = plan.first;
        for (seed, case) in rx {
            if stop.load(Ordering::Relaxed) {
                continue;
            }
            held.insert(seed, case);
            while let Some(case) = held.remove(&want) {
                done += 1;
                want += 1;
                if on_case(want - 1, case).is_break() {
                    stop.store(true, Ordering::Relaxed);
                    held.clear();
                    break;
                }
            }
        }
        // Seeds past a gap (a worker stopped at the deadline before an earlier seed ended
        // cannot happen: each seed a worker takes, it finishes), in order.
        for (seed, case) in held {
            done += 1;
            if on_case(seed, case).is_break() {
                break;
            }
        }
    });
    done
}

/// Runs `f` with `mutant` switched in on this thread (and every mutant out after it).
/// Without the `mutants` feature only `None` runs.
pub fn with_mutant<T>(mutant: Option<Mutant>, f: impl FnOnce() -> T) -> Result<T, ExploreError> {
    #[cfg(feature = "mutants")]
    {
        livecam_system::mutants::set(mutant);
        let out = f();
        livecam_system::mutants::set(None);
        Ok(out)
    }
    #[cfg(not(feature = "mutants"))]
    {
        match mutant {
            Some(_) => Err(ExploreError::MutantsOff),
            None => Ok(f()),
        }
    }
}

/// What the mutation check found for one mutant.
#[derive(Clone, Debug)]
pub struct Hunt {
    pub mutant: Mutant,
    /// Seeds run with the mutant switched in.
    pub seeds_run: u64,
    /// The first seed that failed with the mutant and passes without it.
    pub found: Option<Case>,
}

/// The mutation check for one mutant: explores `plan`'s seeds with `mutant` switched in
/// until one fails that passes without it (a seed that fails either way says nothing about
/// the mutant), or the seeds run out.
pub fn hunt(mutant: Mutant, plan: &Plan) -> Result<Hunt, ExploreError> {
    let plan = Plan {
        mutant: Some(mutant),
        ..plan.clone()
    };
    let mut found = None;
    let mut error = None;
    let seeds_run = explore(&plan, |_, case| {
        let verdict = case.and_then(|c| {
            if c.verdict.passed() {
                return Ok(None);
            }
            let without = run(&c.drawn, plan.backend)?;
            Ok(without.verdict.passed().then_some(c))
        });
        match verdict {
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(c)) => {
                found = Some(c);
                ControlFlow::Break(())
            }
            Err(e) => {
                error = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(Hunt {
            mutant,
            seeds_run,
            found,
        }),
    }
}

/// Why an exploration could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// A bug of the explorer: it drew a scenario the loader refuses.
    #[error("seed {seed} drew a scenario the loader refuses: {message}")]
    Draw { seed: u64, message: String },
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A mutant was asked of a build without the `mutants` feature.
    #[error("this build cannot switch mutants in: build it with `--features mutants`")]
    MutantsOff,
}

/// Reduces a failing scenario: tries the one-step-smaller scenarios ([`Drawn`]'s
/// simplifications) in turn, keeps the first that still `fails`, and starts again from it,
/// until none does or `budget` runs are spent. Returns the smallest found and the runs used.
pub fn shrink(
    drawn: &Drawn,
    budget: usize,
    mut fails: impl FnMut(&Drawn) -> bool,
) -> (Drawn, usize) {
    let mut best = drawn.clone();
    let mut runs = 0;
    'outer: loop {
        for candidate in best.smaller() {
            if runs >= budget {
                break 'outer;
            }
            runs += 1;
            if fails(&candidate) {
                best = candidate;
                continue 'outer;
            }
        }
        break;
    }
    (best, runs)
}

/// How often each role, fault kind and link feature appeared among explored scenarios.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coverage(pub std::collections::BTreeMap<&'static str, u64>);

/// Everything the coverage table counts, in its order.
pub const FEATURES: &[&str] = &[
    "role tier1",
    "role tier2",
    "role mobile",
    "several tier1s",
    "durability",
    "plain sessions",
    "crash tier1",
    "crash tier2",
    "crash mobile",
    "partition",
    "one-way partition",
    "capacity dip",
    "drain",
    "storage stall",
    "clock drift",
    "clock jump",
    "loss",
    "burst",
    "bit errors, checksummed",
    "bit errors to the application",
    "jitter",
    "duplicates",
    "small mtu",
    "rate",
    "cellular capacity",
    "recorded trace",
    "per-pair override",
    "fec auto",
    "fec fixed",
    "policy seed",
    "policy fixed",
    "policy model",
    "rate control off",
    "uplink alone",
];

impl Coverage {
    /// Counts what `d` holds.
    pub fn add(&mut self, d: &Drawn) {
        let mut hit = |k: &'static str, on: bool| {
            if on {
                *self.0.entry(k).or_insert(0) += 1;
            }
        };
        hit("role tier1", d.tier1s > 0);
        hit("role tier2", d.tier2s > 0);
        hit("role mobile", d.mobiles > 0);
        hit("several tier1s", d.tier1s > 1);
        hit("durability", d.durability);
        hit("plain sessions", !d.secure);
        let kinds: std::collections::BTreeSet<&'static str> =
            d.faults.iter().map(DrawnFault::kind).collect();
        for kind in kinds {
            hit(kind, true);
        }
        hit("clock drift", d.clocks.iter().any(|c| c.drift_ppm != 0.0));
        hit("clock jump", d.clocks.iter().any(|c| c.jump.is_some()));
        let links: Vec<&DrawnLink> = std::iter::once(&d.link)
            .chain(d.overrides.iter().map(|(_, _, l)| l))
            .chain(d.faults.iter().filter_map(|f| match f {
                DrawnFault::Dip { link, .. } => Some(link),
                _ => None,
            }))
            .collect();
        let any = |p: &dyn Fn(&DrawnLink) -> bool| links.iter().any(|l| p(l));
        hit("loss", any(&|l| l.loss > 0.0));
        hit("burst", any(&|l| l.burst.is_some()));
        hit(
            "bit errors, checksummed",
            any(&|l| l.bit_error_rate > 0.0 && l.checksums),
        );
        hit(
            "bit errors to the application",
            any(&|l| l.bit_error_rate > 0.0 && !l.checksums),
        );
        hit("jitter", any(&|l| l.jitter_ms > 0.0));
        hit("duplicates", any(&|l| l.duplicate > 0.0));
        hit("small mtu", any(&|l| l.mtu < 1500));
        hit("rate", any(&|l| l.rate_bytes_per_s.is_some()));
        hit("cellular capacity", any(&|l| l.cellular.is_some()));
        hit("recorded trace", any(&|l| l.trace.is_some()));
        hit("per-pair override", !d.overrides.is_empty());
        hit("fec auto", d.fec == "auto");
        hit("fec fixed", d.fec.starts_with("fixed"));
        hit("policy seed", d.policy == "seed");
        hit("policy fixed", d.policy.starts_with("fixed"));
        hit("policy model", d.policy == "model");
        hit("rate control off", !d.rate_control);
        hit("uplink alone", d.uplink_alone);
    }

    /// The features no scenario had.
    pub fn missing(&self) -> Vec<&'static str> {
        FEATURES
            .iter()
            .copied()
            .filter(|f| !self.0.contains_key(f))
            .collect()
    }

    /// The table, one feature a line with its count.
    pub fn table(&self) -> String {
        let mut t = String::new();
        for f in FEATURES {
            let _ = writeln!(t, "{:>6}  {f}", self.0.get(f).copied().unwrap_or(0));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_draw_is_a_valid_scenario_and_a_function_of_its_seed() {
        let mut coverage = Coverage::default();
        // A recorded trace to draw from: one 1500-byte opportunity every 2 ms (750 KB/s).
        let trace = std::env::temp_dir().join(format!("livecam-draw-{}.up", std::process::id()));
        let lines: String = (1..=500).map(|i| format!("{}\n", 2 * i)).collect();
        std::fs::write(&trace, lines).unwrap();
        let traces = [trace.display().to_string()];
        for seed in 0..2000 {
            let d = draw_in(seed, &traces);
            assert_eq!(d, draw_in(seed, &traces), "seed {seed}");
            // Traces change links only: the fleet, faults and clocks are those drawn without.
            let without = draw(seed);
            assert_eq!(
                (without.hosts(), &without.faults, &without.clocks),
                (d.hosts(), &d.faults, &d.clocks)
            );
            let s = d
                .scenario()
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", d.toml()));
            assert_eq!(s.hosts().len(), d.hosts());
            for f in &d.faults {
                let (at, heal) = match *f {
                    DrawnFault::Crash {
                        at_s, restart_s, ..
                    } => (at_s, restart_s),
                    DrawnFault::Partition { at_s, repair_s, .. } => (at_s, repair_s),
                    DrawnFault::Dip { at_s, until_s, .. }
                    | DrawnFault::StorageStall { at_s, until_s, .. } => (at_s, until_s),
                    DrawnFault::Drain { at_s, .. } => (at_s, at_s),
                };
                assert!(at <= heal && heal <= QUIET_FROM * d.duration_s, "{f:?}");
            }
            coverage.add(&d);
        }
        let _ = std::fs::remove_file(&trace);
        assert!(coverage.missing().is_empty(), "{:?}", coverage.missing());
    }

    #[test]
    fn every_smaller_scenario_loads_and_members_out_of_the_middle_keep_their_names() {
        for seed in 0..200 {
            let d = draw(seed);
            let names = |d: &Drawn| -> Vec<String> {
                d.scenario()
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", d.toml()))
                    .hosts()
                    .into_iter()
                    .map(|h| h.name)
                    .collect()
            };
            let all = names(&d);
            for small in d.smaller() {
                assert_eq!(names(&small).len(), small.hosts(), "{}", small.toml());
                if !small.removed.is_empty() {
                    // The hosts left are those of the drawn scenario, under the same names.
                    let left = names(&small);
                    assert!(left.iter().all(|n| all.contains(n)), "{left:?} of {all:?}");
                    assert_eq!(left.len(), all.len() - small.removed.len());
                }
            }
        }
    }

    #[test]
    fn shrinking_keeps_what_fails_and_drops_the_rest() {
        // A stand-in failure: "some tier-2 crashes while at least two mobiles stream".
        let fails = |d: &Drawn| {
            d.mobiles >= 2
                && d.faults.iter().any(|f| {
                    matches!(
                        f,
                        DrawnFault::Crash {
                            host: Who::Tier2(_),
                            ..
                        }
                    )
                })
        };
        let big = (0..)
            .map(draw)
            .find(|d| fails(d) && d.faults.len() >= 3 && d.hosts() >= 8)
            .expect("such a draw");
        let (small, runs) = shrink(&big, 500, fails);
        assert!(fails(&small));
        assert!(runs < 500);
        assert_eq!(small.faults.len(), 1, "{small:?}");
        assert_eq!((small.tier1s, small.mobiles), (1, 2), "{small:?}");
        assert!(small.overrides.is_empty());
        assert!(small.duration_s < big.duration_s);
        small.scenario().expect("a shrunk scenario still loads");
    }
}
