//! Bonded uplinks: one session over two or three radio links at once (issue 21).
//!
//! A vehicle that must not lose the picture carries several modems on different carriers.
//! [`Bond`] is the sans-IO scheduler that spreads one session's datagrams over them: it keeps
//! an estimate per uplink and tells the caller which uplink each datagram leaves by.
//!
//! # What it measures, and how
//!
//! The session's feedback (one ACK per frame, NACKs naming segments) says nothing of which
//! uplink carried what. So each uplink is measured on its own with a small sealed
//! [`PathReport`](super::wire::PathReport): every [`BondConfig::ping_interval`] the bond sends
//! a `PATH_PING` on each uplink carrying the bytes sent on it so far, and the tier-2 echoes it
//! on the same path with the bytes it has received from that path (`role::Tier2Server`, only
//! on a validated path, at the ping's own size). One echo gives:
//!
//! - the uplink's round trip *with its queue*: the ping waited behind this session's segments
//!   in the modem's queue and in the radio's;
//! - what the uplink delivered since the previous echo (the growth of the tier-2's count);
//! - what it lost (the ping's count beside the echo's: everything sent before a ping has
//!   arrived or is lost by the time the ping does, on a link that keeps order).
//!
//! Each uplink runs the transport's own [`RateController`] on those samples: the delivery rate
//! and the queueing delay above the uplink's minimum round trip, grown while its queue is
//! empty, cut while it holds one. That is "Transport, part 2" per path, with the echo as the
//! ACK. Its target is the uplink's share, not a second budget: the session has *one* rate
//! budget, the [`Sender`](super::Sender)'s rate control over all uplinks together (its ACKs
//! count every byte delivered on any of them), which the camera shapes its frames to. That
//! budget is held at or below what the live uplinks carry together ([`Bond::capacity`], which
//! the mobile client hands to `Sender::cap_rate` on every echo): on two 60 KB/s uplinks under
//! a 100 KB/s camera, 266 of 269 frames arrive with the cap and 204 without.
//!
//! # Where a datagram goes
//!
//! [`Bond::pick`] places each datagram on the uplink where it would arrive first: the one
//! whose `start + len / target + rtt / 2` is smallest, where `start` is when the bytes already
//! placed on it have left at its target and `rtt` the least of its last three round trips
//! (a virtual queue per uplink, as a multipath
//! scheduler's earliest-completion-first rule; MPTCP's default picks the lowest round trip
//! with room in its window, which starves a slow uplink of anything while the fast one has
//! room and fills the fast one's queue first). Every segment, parity segment and repair is
//! placed this way, so a repair of a segment lost on a slow uplink goes to the faster one when
//! that is where it arrives first.
//!
//! A segment sent again a second time (its first repair was lost too: a frame in the latency
//! tail, its deadline nearer) also goes, sealed on its own, by a second uplink
//! ([`Bond::pick_other`]), so that its next loss needs both: only when that uplink has
//! nothing of the session's still waiting to leave and the sender's pacing budget has room,
//! and the copy is charged to that budget and counted as repair bytes (`role::Mobile`). On
//! uplinks the camera fills, copies would only crowd out frames: with the pacing budget's
//! check alone, two 60 KB/s uplinks under a 100 KB/s camera fell from 1,916 to 1,268 KB of
//! frames.
//!
//! # When an uplink fails
//!
//! A ping may go unanswered for `srtt + max(4 x rttvar, 25 ms)` past the time the bytes
//! placed on its uplink before it take to leave at the uplink's target (it waits behind
//! them). An uplink with as many pings overdue as its ping loss explains fewer than once in
//! twenty (one on a clean uplink, two at 10% loss each way) is *suspect*: nothing new is
//! placed on it (its pings go on, every interval, so it is probed) until an echo comes back.
//! Once as many pings are overdue as its ping loss explains fewer than once in five hundred
//! (one on a clean uplink, two at 1% loss each way, four at 10%) it is *silent*: what it
//! carried since the last ping it answered is taken for lost and the caller sends it again by
//! the others at once ([`BondEvent::Silent`], the mobile client hands the data segments to
//! `Sender::resend_lost`), rather than a round trip later when the receiver asks. With pings
//! every 50 ms a clean uplink that dies is silent about one round trip plus a ping interval
//! later. (Taking the first overdue ping for silence on a lossy uplink resent a tenth of
//! everything on two 10%-loss uplinks: the repair bytes went from 27% to 57% of the frame
//! bytes.) An uplink that answers again was not dead but queued ([`BondEvent::Back`]): the
//! caller withdraws the resends that have not left yet, and the receiver names what it lost.
//! On two saturated uplinks a queue that outgrew the ping wait otherwise put 190 ms of
//! segments a second time on the other uplink, whose queue then overflowed.
//!
//! The odds are per ping, and an uplink is pinged 20 times a second: at one in a hundred, and
//! with the ping loss a moving average over 16 pings (which forgets a lost ping within a
//! second or two), an uplink losing 1% each way was taken for silent three or four times in
//! 30 s, and each time a whole frame went again by the other uplink: on a good uplink beside
//! one losing 20% at 50 ms, that frame arrived about 160 ms late. Over 64 pings a 1% uplink's
//! average stays near its 2% round-trip loss, so it needs two overdue pings, while an uplink
//! that lost no ping for about 7 s still needs one (a dead uplink is found as early as
//! before).
//!
//! Costs: one sealed ping of [`PATH_REPORT_LEN`](super::wire::PATH_REPORT_LEN) bytes plus
//! the sealing per uplink per interval each way (92 bytes on the wire: 1.8 KB/s per uplink
//! at 50 ms, 3% of a 60 KB/s modem).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rate::{LastThree, RateConfig, RateController, RttSample};
use super::rtt::SmoothedRtt;
use crate::time::Instant;

/// Most uplinks one session bonds: the tier-2 keeps as many validated paths per session
/// (`secure::paths::MAX_PATHS`).
pub const MAX_UPLINKS: usize = crate::secure::paths::MAX_PATHS;

/// Pings per uplink awaiting their echo; an older one is taken for lost.
const PINGS_KEPT: usize = 16;
/// The least an uplink's silence timer allows past its smoothed round trip.
const SILENCE_MARGIN: Duration = Duration::from_millis(25);
/// The silence timer before an uplink has a round trip.
const SILENCE_INITIAL: Duration = Duration::from_millis(500);
/// The most unanswered pings an uplink's silence waits for, however lossy it is.
const PINGS_FOR_SILENCE_MAX: usize = 4;
/// An uplink is silent once its ping loss explains its unanswered pings less often than this.
const SILENCE_ODDS: f64 = 0.002;
/// An uplink is suspect once its ping loss explains its unanswered pings less often than this.
const SUSPECT_ODDS: f64 = 0.05;
/// Weight of one ping in an uplink's ping loss average (see the module docs for why 64).
const PING_LOSS_GAIN: f64 = 1.0 / 64.0;

/// How a [`Bond`] spreads datagrams over its uplinks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Each datagram on the uplink where it arrives first ([`Bond::pick`]): the default.
    #[default]
    Earliest,
    /// Every datagram on every uplink still answering, as SRT's broadcast socket group does
    /// (the receiver keeps the first copy). The baseline the `bonding` experiment compares
    /// with: it survives a dying uplink without a repair, at one extra copy of all traffic
    /// per extra uplink, and carries no more than its slowest live uplink. Its budget
    /// ([`Bond::capacity`]) is that uplink's target, and a silent uplink needs no resend.
    Broadcast,
}

/// The uplinks a datagram leaves by: a set of uplink indices below [`MAX_UPLINKS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uplinks(u8);

impl Uplinks {
    /// The set holding only `uplink`.
    pub fn one(uplink: usize) -> Self {
        Uplinks(1 << uplink.min(MAX_UPLINKS - 1))
    }

    /// The lowest uplink in the set (0 for an empty one).
    pub fn first(self) -> usize {
        self.iter().next().unwrap_or(0)
    }

    /// The uplinks in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_UPLINKS).filter(move |&i| self.0 & (1 << i) != 0)
    }

    /// Adds `uplink` to the set (nothing past [`MAX_UPLINKS`]).
    pub fn insert(&mut self, uplink: usize) {
        if uplink < MAX_UPLINKS {
            self.0 |= 1 << uplink;
        }
    }
}

/// How a [`Bond`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct BondConfig {
    /// Uplinks, 1 to [`MAX_UPLINKS`].
    pub uplinks: usize,
    /// How datagrams are spread over them.
    pub placement: Placement,
    /// A ping on each uplink this often.
    pub ping_interval: Duration,
    /// Each uplink's rate controller (its target is the uplink's share).
    pub rate: RateConfig,
}

impl BondConfig {
    /// `uplinks` uplinks, pinged every 50 ms, each with the transport's default rate
    /// configuration whose target grows while its queue is empty however little it carries
    /// ([`RateConfig::grow_unused`]).
    pub fn new(uplinks: usize) -> Self {
        BondConfig {
            uplinks,
            placement: Placement::Earliest,
            ping_interval: Duration::from_millis(50),
            rate: RateConfig {
                grow_unused: true,
                ..RateConfig::default()
            },
        }
    }
}

/// Something the application should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondEvent {
    /// The uplink's pings went unanswered past its silence timer: nothing more is placed on
    /// it until it answers. What it carried from `since` on (when the last ping it answered
    /// left) is taken for lost: the caller sends it again by the others.
    Silent { uplink: usize, since: Instant },
    /// A silent uplink answered again: it is not dead, and what it carried from `since` on
    /// (the `since` of its [`BondEvent::Silent`]) has arrived or was lost one datagram at a
    /// time, which the receiver's NACKs repair. The caller withdraws the resends of it that
    /// have not left yet (`Sender::withdraw_resends`).
    Back { uplink: usize, since: Instant },
}

/// What one uplink carried, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UplinkStats {
    /// Datagrams and wire bytes placed on it (pings included).
    pub datagrams: u64,
    pub bytes: u64,
    pub pings: u64,
    pub echoes: u64,
    /// Times it fell silent.
    pub silences: u64,
    /// Its rate controller's target and smoothed round trip, as last seen.
    pub target: f64,
    pub srtt_ms: Option<f64>,
    /// Bytes it lost, by the echoes' counts.
    pub lost_bytes: u64,
}

impl UplinkStats {
    /// Adds `other`'s counts (not its target and round trip, which are the latest bond's):
    /// what an uplink carried over several sessions.
    pub fn add_counts(&mut self, other: &UplinkStats) {
        self.datagrams += other.datagrams;
        self.bytes += other.bytes;
        self.pings += other.pings;
        self.echoes += other.echoes;
        self.silences += other.silences;
        self.lost_bytes += other.lost_bytes;
    }
}

#[derive(Debug, Clone, Copy)]
struct Ping {
    token: u64,
    at: Instant,
    /// Bytes sent on the uplink before the ping.
    sent: u64,
    /// When the bytes placed on the uplink before it have left at its target
    /// ([`Uplink::clear_at`]): the ping waits behind them.
    clear_at: Instant,
}

#[derive(Debug, Clone)]
struct Uplink {
    rate: RateController,
    rtt: SmoothedRtt,
    /// Its last three round trips, and the least of them.
    last_rtts: LastThree,
    recent_rtt: Option<Duration>,
    /// When the bytes placed on it will have left at its target.
    free_at: Instant,
    pings: VecDeque<Ping>,
    next_ping: Instant,
    /// The last echo: the bytes the ping said were sent and the bytes the echo said arrived.
    last_echo: Option<(u64, u64)>,
    /// When the last ping it answered left: what it carried before has arrived or was lost
    /// on the way (the receiver NACKs that).
    answered_to: Instant,
    /// Its oldest unanswered ping is overdue: nothing new is placed on it.
    suspect: bool,
    /// Enough of its pings are overdue that what it carried is taken for lost.
    silent: bool,
    /// Share of its pings that went unanswered (moving average): a lossy uplink loses pings
    /// too, so it needs more of them overdue before it counts as silent.
    ping_loss: f64,
    stats: UplinkStats,
}

impl Uplink {
    fn new(rate: &RateConfig, now: Instant) -> Self {
        Uplink {
            rate: RateController::new(rate.clone()),
            rtt: SmoothedRtt::default(),
            last_rtts: LastThree::default(),
            recent_rtt: None,
            free_at: now,
            pings: VecDeque::new(),
            next_ping: now,
            last_echo: None,
            answered_to: now,
            suspect: false,
            silent: false,
            ping_loss: 0.0,
            stats: UplinkStats::default(),
        }
    }

    /// How long a ping may go unanswered.
    fn ping_wait(&self) -> Duration {
        match self.rtt.srtt() {
            Some(srtt) => srtt + (self.rtt.rttvar() * 4).max(SILENCE_MARGIN),
            None => SILENCE_INITIAL,
        }
    }

    /// Unanswered pings it takes for its ping loss to explain them less often than `odds`
    /// (1 on a clean uplink; at 10% loss each way, 2 for one in twenty and 4 for one in five
    /// hundred).
    fn pings_beyond(&self, odds: f64) -> usize {
        let mut k = 1;
        while k < PINGS_FOR_SILENCE_MAX && self.ping_loss.powi(k as i32) >= odds {
            k += 1;
        }
        k
    }

    /// Unanswered pings that make it silent: fewer than once in five hundred from its ping
    /// loss.
    fn pings_for_silence(&self) -> usize {
        self.pings_beyond(SILENCE_ODDS)
    }

    /// When enough unanswered pings make it suspect: fewer than once in twenty from its ping
    /// loss. (One overdue ping made an uplink losing 10% each way suspect a fifth of the
    /// time: every datagram of those frames went by the other uplink, a frame took twice its
    /// transmission, and its repairs queued behind the next frame.)
    fn suspect_at(&self) -> Option<Instant> {
        self.overdue_at(self.pings_beyond(SUSPECT_ODDS))
    }

    /// When enough unanswered pings make it silent.
    fn silent_at(&self) -> Option<Instant> {
        self.overdue_at(self.pings_for_silence())
    }

    /// When `pings` (at least 1) of its pings are overdue, if that many are unanswered: the
    /// last of them waited [`Uplink::ping_wait`] past the bytes ahead of it.
    fn overdue_at(&self, pings: usize) -> Option<Instant> {
        let ping = self.pings.get(pings - 1)?;
        Some(ping.clear_at + self.ping_wait())
    }

    /// When the bytes placed on it so far have left at its target (`now` if they have).
    fn clear_at(&self, now: Instant) -> Instant {
        self.free_at.max(now)
    }

    /// When a datagram of `len` wire bytes placed on it now would arrive; `unmeasured` is
    /// the round trip taken for it before its first echo.
    fn arrival(&self, now: Instant, len: usize, unmeasured: Duration) -> (Instant, Instant) {
        let leaves = self.clear_at(now) + Duration::from_secs_f64(len as f64 / self.rate.target());
        // The least of its last three round trips: a queue that stands (an uplink whose
        // target runs above what it carries) is in all three, the burst of one frame that a
        // ping waited behind is gone by the next (with the smoothed round trip, which keeps
        // it, a frame's whole crossing went by one uplink and the next frame's by the other).
        let half_rtt = self.recent_rtt.unwrap_or(unmeasured) / 2;
        (leaves, leaves + half_rtt)
    }
}

/// The scheduler of a bonded session's uplinks. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Bond {
    cfg: BondConfig,
    uplinks: Vec<Uplink>,
    next_token: u64,
    events: VecDeque<BondEvent>,
}

impl Bond {
    /// A bond of `cfg.uplinks` uplinks (at least 1, at most [`MAX_UPLINKS`]) starting at `now`.
    pub fn new(cfg: BondConfig, now: Instant) -> Self {
        let n = cfg.uplinks.clamp(1, MAX_UPLINKS);
        Bond {
            uplinks: (0..n).map(|_| Uplink::new(&cfg.rate, now)).collect(),
            cfg,
            next_token: 0,
            events: VecDeque::new(),
        }
    }

    /// The bond, with `uplinks` suspect until their first echo: those the session's
    /// handshake tried and heard nothing by (a modem dead when the session starts), which
    /// then get no data to lose.
    pub fn suspect_until_heard(mut self, uplinks: impl IntoIterator<Item = usize>) -> Self {
        for i in uplinks {
            if let Some(u) = self.uplinks.get_mut(i) {
                u.suspect = true;
            }
        }
        self
    }

    /// The number of uplinks.
    pub fn uplinks(&self) -> usize {
        self.uplinks.len()
    }

    /// Whether `uplink` is silent (what it carried since its last answer is taken for lost).
    pub fn is_silent(&self, uplink: usize) -> bool {
        self.uplinks.get(uplink).is_some_and(|u| u.silent)
    }

    /// Whether nothing new is placed on `uplink` (its oldest ping is overdue).
    pub fn is_suspect(&self, uplink: usize) -> bool {
        self.uplinks.get(uplink).is_some_and(|u| u.suspect)
    }

    /// What the uplinks that are not silent are measured to carry together, bytes per second
    /// on the wire: the ceiling of the session's one rate budget. (A suspect uplink still
    /// counts: one lost ping on a lossy uplink would otherwise halve the budget.) Under
    /// [`Placement::Broadcast`] each of them carries everything: the slowest one's target.
    pub fn capacity(&self) -> f64 {
        let all_silent = self.uplinks.iter().all(|u| u.silent);
        let live = self
            .uplinks
            .iter()
            .filter(|u| all_silent || !u.silent)
            .map(|u| u.rate.target());
        match self.cfg.placement {
            Placement::Earliest => live.sum(),
            Placement::Broadcast => live.fold(f64::INFINITY, f64::min),
        }
    }

    /// How this bond places datagrams.
    pub fn placement(&self) -> Placement {
        self.cfg.placement
    }

    /// What each uplink carried.
    pub fn stats(&self) -> Vec<UplinkStats> {
        self.uplinks
            .iter()
            .map(|u| UplinkStats {
                target: u.rate.target(),
                srtt_ms: u.rtt.srtt().map(|d| d.as_secs_f64() * 1e3),
                ..u.stats.clone()
            })
            .collect()
    }

    /// The uplinks a datagram of `len` wire bytes leaves by, charged with it: under
    /// [`Placement::Earliest`] the live one where it would arrive first, under
    /// [`Placement::Broadcast`] every live one (every uplink when all are suspect: one of
    /// them may be back).
    pub fn pick(&mut self, now: Instant, len: usize) -> Uplinks {
        let all_suspect = self.uplinks.iter().all(|u| u.suspect);
        let live = (0..self.uplinks.len()).filter(|&i| all_suspect || !self.uplinks[i].suspect);
        let mut picked = Uplinks::default();
        match self.cfg.placement {
            Placement::Earliest => picked.insert(self.earliest(now, len, live).unwrap_or(0)),
            Placement::Broadcast => live.for_each(|i| picked.insert(i)),
        }
        for i in picked.iter() {
            self.charge(now, i, len);
        }
        picked
    }

    /// The live uplink other than `not` where a datagram of `len` wire bytes would arrive
    /// first, charged with it, if it has room now (nothing placed on it is still waiting
    /// to leave at its target): where a second copy goes (a segment whose first repair was
    /// lost too, see `role::Mobile`). A copy never queues behind the session's own
    /// datagrams: on uplinks the camera fills, copies would only crowd out frames.
    pub fn pick_other(&mut self, now: Instant, len: usize, not: usize) -> Option<usize> {
        let others = (0..self.uplinks.len())
            .filter(|&i| i != not && !self.uplinks[i].suspect && self.uplinks[i].free_at <= now);
        let other = self.earliest(now, len, others)?;
        self.charge(now, other, len);
        Some(other)
    }

    /// Of `candidates`, the uplink where a datagram of `len` wire bytes placed now would
    /// arrive first (the first of equals).
    fn earliest(
        &self,
        now: Instant,
        len: usize,
        candidates: impl Iterator<Item = usize>,
    ) -> Option<usize> {
        let unmeasured = self.unmeasured_rtt();
        candidates.min_by_key(|&i| self.uplinks[i].arrival(now, len, unmeasured).1)
    }

    /// The round trip an uplink is taken to have before its first echo: the longest the
    /// others measured (an uplink not yet measured, or not yet validated, is not preferred).
    fn unmeasured_rtt(&self) -> Duration {
        self.uplinks
            .iter()
            .filter_map(|u| u.rtt.srtt())
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// `len` wire bytes leave by `uplink` now.
    pub fn charge(&mut self, now: Instant, uplink: usize, len: usize) {
        let unmeasured = self.unmeasured_rtt();
        if let Some(u) = self.uplinks.get_mut(uplink) {
            u.free_at = u.arrival(now, len, unmeasured).0;
            u.stats.datagrams += 1;
            u.stats.bytes += len as u64;
        }
    }

    /// A ping due now: its uplink, token and the bytes sent on that uplink so far. The caller
    /// seals it as a `PATH_PING` and sends it by that uplink (and [`Bond::charge`]s it).
    pub fn poll_ping(&mut self, now: Instant) -> Option<(usize, u64, u64)> {
        let i = (0..self.uplinks.len()).find(|&i| self.uplinks[i].next_ping <= now)?;
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        let interval = self.cfg.ping_interval;
        let u = &mut self.uplinks[i];
        u.next_ping = now + interval;
        if u.pings.len() >= PINGS_KEPT {
            u.pings.pop_front();
        }
        u.pings.push_back(Ping {
            token,
            at: now,
            sent: u.stats.bytes,
            clear_at: u.clear_at(now),
        });
        u.stats.pings += 1;
        Some((i, token, u.stats.bytes))
    }

    /// An echo of the ping `token` came back by `uplink`, saying `received` bytes had arrived
    /// from it. Echoes of pings this bond did not send on that uplink (or already took)
    /// change nothing: a copy of an echo brought by another uplink would report the wrong
    /// one's bytes.
    pub fn on_echo(&mut self, now: Instant, uplink: usize, token: u64, received: u64) {
        let i = uplink;
        let Some(k) = self
            .uplinks
            .get(i)
            .and_then(|u| u.pings.iter().position(|p| p.token == token))
        else {
            return;
        };
        let u = &mut self.uplinks[i];
        let ping = u.pings[k];
        // Pings older than this one are lost or late: their echoes would say less.
        for lost in 0..=k {
            let x = if lost < k { 1.0 } else { 0.0 };
            u.ping_loss += (x - u.ping_loss) * PING_LOSS_GAIN;
        }
        u.pings.drain(..=k);
        let rtt = now.saturating_duration_since(ping.at);
        u.rtt.update(rtt);
        u.recent_rtt = Some(u.last_rtts.push(rtt));
        u.stats.echoes += 1;
        let (delivered, lost) = match u.last_echo {
            Some((sent0, received0)) if received >= received0 => {
                let delivered = received - received0;
                let sent = ping.sent.saturating_sub(sent0);
                (delivered, sent.saturating_sub(delivered))
            }
            // The tier-2 counts afresh (the path was validated anew: an address that
            // rebound): this echo is the new baseline.
            _ => (0, 0),
        };
        u.last_echo = Some((ping.sent, received));
        let since = u.answered_to;
        u.answered_to = u.answered_to.max(ping.at);
        u.stats.lost_bytes += lost;
        u.rate
            .on_ack(now, delivered, Some(RttSample::rtt(rtt)), None);
        u.suspect = false;
        if u.silent {
            u.silent = false;
            self.events.push_back(BondEvent::Back { uplink: i, since });
        }
    }

    /// Time has reached [`Bond::poll_timeout`]: uplinks whose pings went unanswered fall
    /// silent.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (i, u) in self.uplinks.iter_mut().enumerate() {
            if u.suspect_at().is_some_and(|t| t <= now) {
                u.suspect = true;
            }
            if !u.silent && u.silent_at().is_some_and(|t| t <= now) {
                u.silent = true;
                u.stats.silences += 1;
                // Nothing it held is coming: its virtual queue is empty when it is back.
                u.free_at = now;
                self.events.push_back(BondEvent::Silent {
                    uplink: i,
                    since: u.answered_to,
                });
            }
        }
    }

    /// The next ping or silence timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.uplinks
            .iter()
            .flat_map(|u| {
                [
                    Some(u.next_ping),
                    u.suspect_at().filter(|_| !u.suspect),
                    u.silent_at().filter(|_| !u.silent),
                ]
            })
            .flatten()
            .min()
    }

    pub fn poll_event(&mut self) -> Option<BondEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed ping's wire bytes.
    const PING: usize = crate::proto::wire::PATH_REPORT_LEN
        + crate::proto::wire::SEALED_OVERHEAD
        + crate::proto::wire::UDP_IP_OVERHEAD;

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    /// Runs `bond` for `secs` over uplinks with these capacities (bytes/s) and one-way delays,
    /// offering `len`-byte datagrams at `offered` bytes/s; each uplink is a FIFO queue that
    /// drains at its capacity. Returns the bytes each uplink carried.
    fn run(bond: &mut Bond, links: &[(f64, u64)], offered: f64, len: usize, secs: u64) -> Vec<u64> {
        let n = links.len();
        let mut busy_until = vec![Instant::ZERO; n];
        let mut carried = vec![0u64; n];
        let mut received = vec![0u64; n];
        // (arrival at the tier-2, uplink, ping token or 0, bytes)
        let mut arrivals: Vec<(Instant, usize, u64, usize)> = Vec::new();
        let mut echoes: Vec<(Instant, usize, u64, u64)> = Vec::new();
        let step = Duration::from_secs_f64(len as f64 / offered);
        let mut next_send = Instant::ZERO;
        let end = ms(secs * 1000);
        let mut now = Instant::ZERO;
        let send = |now: Instant,
                    i: usize,
                    token: u64,
                    busy: &mut Vec<Instant>,
                    arrivals: &mut Vec<(Instant, usize, u64, usize)>| {
            let len = if token == 0 { len } else { PING };
            let (cap, delay) = links[i];
            let start = busy[i].max(now);
            busy[i] = start + Duration::from_secs_f64(len as f64 / cap);
            arrivals.push((busy[i] + Duration::from_millis(delay), i, token, len));
        };
        while now < end {
            bond.handle_timeout(now);
            while let Some((i, token, _)) = bond.poll_ping(now) {
                bond.charge(now, i, PING);
                send(now, i, token, &mut busy_until, &mut arrivals);
            }
            while next_send <= now {
                for i in bond.pick(now, len).iter() {
                    carried[i] += len as u64;
                    send(now, i, 0, &mut busy_until, &mut arrivals);
                }
                next_send += step;
            }
            arrivals.sort_by_key(|a| a.0);
            while arrivals.first().is_some_and(|a| a.0 <= now) {
                let (at, i, token, bytes) = arrivals.remove(0);
                received[i] += bytes as u64;
                if token != 0 {
                    let back = at + Duration::from_millis(links[i].1);
                    echoes.push((back, i, token, received[i]));
                }
            }
            echoes.sort_by_key(|e| e.0);
            while echoes.first().is_some_and(|e| e.0 <= now) {
                let (_, i, token, bytes) = echoes.remove(0);
                bond.on_echo(now, i, token, bytes);
            }
            now += Duration::from_millis(1);
        }
        carried
    }

    #[test]
    fn an_uplink_the_handshake_found_dead_carries_nothing_until_it_answers() {
        let mut bond = Bond::new(BondConfig::new(2), Instant::ZERO).suspect_until_heard([0]);
        assert!((0..20).all(|_| bond.pick(ms(0), 1000) == Uplinks::one(1)));
        let (_, token, _) = bond.poll_ping(ms(0)).expect("a ping on uplink 0");
        bond.on_echo(ms(40), 0, token, PING as u64);
        assert!(!bond.is_suspect(0));
        assert!((0..20).any(|_| bond.pick(ms(40), 1000) == Uplinks::one(0)));
    }

    #[test]
    fn a_second_copy_goes_by_another_live_uplink_with_room_or_not_at_all() {
        let mut bond = Bond::new(BondConfig::new(3), Instant::ZERO).suspect_until_heard([2]);
        // Uplink 1 has room: the copy of what went by 0 goes there, and is charged.
        assert_eq!(bond.pick_other(ms(0), 1000, 0), Some(1));
        // Now 1 holds the copy and 0 had nothing placed: the copy of what went by 1 goes by
        // 0; never by the suspect 2, never back by the uplink the original took.
        assert_eq!(bond.pick_other(ms(0), 1000, 1), Some(0));
        // Both live uplinks hold bytes still to leave at their targets: no copy.
        assert_eq!(bond.pick_other(ms(0), 1000, 0), None);
        assert_eq!(bond.stats()[2].datagrams, 0);
    }

    #[test]
    fn broadcast_sends_everything_on_every_uplink_within_the_slowest() {
        let cfg = BondConfig {
            placement: Placement::Broadcast,
            ..BondConfig::new(2)
        };
        let mut bond = Bond::new(cfg, Instant::ZERO);
        assert_eq!(
            bond.pick(Instant::ZERO, 1000).iter().collect::<Vec<_>>(),
            [0, 1]
        );
        // 60 and 30 KB/s under 20 KB/s: both carry all of it, and the budget is the slower
        // uplink's target, not the sum.
        let carried = run(
            &mut bond,
            &[(60_000.0, 20), (30_000.0, 20)],
            20_000.0,
            1000,
            10,
        );
        assert_eq!(carried[0], carried[1]);
        let targets: Vec<f64> = bond.stats().iter().map(|s| s.target).collect();
        assert_eq!(bond.capacity(), targets[0].min(targets[1]));
        assert!(bond.capacity() < targets[0] + targets[1]);
    }

    #[test]
    fn two_uplinks_share_the_load_by_their_capacity() {
        let mut bond = Bond::new(BondConfig::new(2), Instant::ZERO);
        // 60 and 30 KB/s, both 20 ms each way; 80 KB/s offered.
        let carried = run(
            &mut bond,
            &[(60_000.0, 20), (30_000.0, 20)],
            80_000.0,
            1000,
            10,
        );
        let share = carried[0] as f64 / (carried[0] + carried[1]) as f64;
        eprintln!("share {share:.3} {:?}", bond.stats());
        assert!((0.55..0.8).contains(&share), "{carried:?}");
        let stats = bond.stats();
        // At 93% of the two uplinks together, with nothing pacing the source, neither queue
        // runs away (a split that overran one would grow its queue by seconds): the round
        // trips stay within about 6 x the base 40 ms.
        for s in &stats {
            assert!(s.srtt_ms.unwrap() < 250.0, "{stats:?}");
        }
    }

    #[test]
    fn a_dead_uplink_falls_silent_within_a_round_trip_and_a_ping_and_is_used_again_when_back() {
        let mut bond = Bond::new(BondConfig::new(2), Instant::ZERO);
        run(
            &mut bond,
            &[(60_000.0, 20), (60_000.0, 20)],
            50_000.0,
            1000,
            2,
        );
        assert!(!bond.is_silent(1));
        // Uplink 1's pings stop coming back from 2 s; uplink 0's come back 40 ms after they
        // left. A ping left on uplink 1 at 2.000 s at the latest is unanswered by its srtt
        // (~40 ms) + 25 ms, plus up to a ping interval for the first unanswered one.
        let mut silent_at = None;
        let mut echoes = VecDeque::new();
        let mut received = 1u64 << 20;
        for t in 2000..2300u64 {
            while echoes.front().is_some_and(|&(at, _)| at <= t) {
                let (_, token) = echoes.pop_front().unwrap();
                received += 86;
                bond.on_echo(ms(t), 0, token, received);
            }
            bond.handle_timeout(ms(t));
            while let Some((i, token, _)) = bond.poll_ping(ms(t)) {
                if i == 0 {
                    echoes.push_back((t + 40, token));
                }
            }
            if bond.is_silent(1) {
                silent_at = Some(t);
                break;
            }
        }
        let silent_at = silent_at.expect("uplink 1 fell silent");
        assert!(silent_at <= 2000 + 50 + 40 + 30, "{silent_at}");
        assert!(!bond.is_silent(0));
        match bond.poll_event() {
            // Its last answered ping left before 2 s.
            Some(BondEvent::Silent { uplink: 1, since }) => assert!(since < ms(2000)),
            other => panic!("{other:?}"),
        }
        // Nothing is placed on it while it is silent.
        assert!((0..50).all(|_| bond.pick(ms(silent_at), 1000) == Uplinks::one(0)));
        // Its next ping answers: it is back.
        let (i, token, _) = loop {
            let p = bond.poll_ping(ms(silent_at + 60)).expect("a ping");
            if p.0 == 1 {
                break p;
            }
        };
        assert_eq!(i, 1);
        // An echo of it brought by the other uplink is not taken.
        bond.on_echo(ms(silent_at + 100), 0, token, 1 << 20);
        assert!(bond.is_silent(1));
        bond.on_echo(ms(silent_at + 100), 1, token, 1 << 20);
        assert!(!bond.is_silent(1));
        match bond.poll_event() {
            // What it carried since its last answered ping, before 2 s, was not lost whole.
            Some(BondEvent::Back { uplink: 1, since }) => assert!(since < ms(2000)),
            other => panic!("{other:?}"),
        }
    }

    /// Pings every interval from `from` (ms) to `to` on a single uplink, echoed `rtt` ms later
    /// unless `lost(n)` for the `n`th (its silences are in `bond.stats()`).
    fn ping_for(bond: &mut Bond, from: u64, to: u64, rtt: u64, lost: impl Fn(u64) -> bool) {
        let mut echoes = VecDeque::new();
        let mut n = 0;
        for t in from..to {
            while echoes.front().is_some_and(|&(at, _)| at <= t) {
                let (_, token) = echoes.pop_front().unwrap();
                bond.on_echo(ms(t), 0, token, 0);
            }
            bond.handle_timeout(ms(t));
            while let Some((_, token, _)) = bond.poll_ping(ms(t)) {
                n += 1;
                if !lost(n) {
                    echoes.push_back((t + rtt, token));
                }
            }
        }
    }

    #[test]
    fn an_uplink_that_loses_a_ping_now_and_then_is_not_taken_for_silent() {
        // An uplink losing 1% each way loses about one ping in fifty. With the odds per ping
        // at one in a hundred over a 16-ping average it fell silent at each of those losses
        // (11 times in 30 s, a whole frame sent again by the other uplink each time). Now
        // only the first, when it had lost nothing yet, counts.
        let mut bond = Bond::new(BondConfig::new(1), Instant::ZERO);
        ping_for(&mut bond, 0, 30_000, 40, |n| n % 50 == 0);
        assert_eq!(bond.stats()[0].silences, 1);
        // A clean uplink that dies is still found at its first overdue ping.
        let mut bond = Bond::new(BondConfig::new(1), Instant::ZERO);
        ping_for(&mut bond, 0, 10_000, 40, |_| false);
        ping_for(&mut bond, 10_000, 10_150, 40, |_| true);
        assert_eq!(bond.stats()[0].silences, 1);
    }

    #[test]
    fn a_ping_behind_a_burst_is_given_the_time_the_burst_takes_to_leave() {
        let mut bond = Bond::new(BondConfig::new(1), Instant::ZERO);
        ping_for(&mut bond, 0, 1_000, 40, |_| false);
        let target = bond.stats()[0].target;
        // Half a second of bytes at the uplink's target placed at once, then the ping.
        let now = ms(1_000);
        bond.charge(now, 0, (target / 2.0) as usize);
        let (_, token, _) = bond.poll_ping(now).expect("a ping");
        bond.handle_timeout(ms(1_400));
        assert!(!bond.is_silent(0) && !bond.is_suspect(0));
        bond.on_echo(ms(1_540), 0, token, 0);
        bond.handle_timeout(ms(1_540));
        assert_eq!(bond.stats()[0].silences, 0);
    }

    #[test]
    fn echoes_it_did_not_ask_for_change_nothing() {
        let mut bond = Bond::new(BondConfig::new(2), Instant::ZERO);
        let before = bond.stats();
        bond.on_echo(ms(10), 0, 12345, u64::MAX);
        bond.on_echo(ms(10), 7, 12345, u64::MAX);
        assert_eq!(bond.stats(), before);
        assert_eq!(bond.poll_event(), None);
    }
}
