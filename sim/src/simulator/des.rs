//! The discrete-event backend: a single-threaded executor of our own with a virtual clock
//! that jumps straight to the next timer, and an in-memory datagram network.
//!
//! It runs exactly the same code as the other backends: the product's roles
//! ([`host_main`]) through the product's one driver loop, over the run's shared network of
//! link models ([`livecam_system::link::Network`], in the [`SimState`](crate::state::SimState)).
//! What differs is only the runtime underneath: there are no ticks (time is exact to the
//! microsecond) and nothing is polled while nothing is due, so it is the fastest backend and
//! the default of `livecam sim`. A socket offers what it sends to the network, which holds each
//! datagram until its due time; the executor polls the network and wakes a receiving host once
//! per datagram, when it is due.
//! Determinism: at each time, faults apply first, then due datagrams reach their mailboxes in
//! `(due time, send order)` order, then timers fire in `(time, registration)` order; tasks run
//! in wake order from one FIFO; nothing else decides.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use livecam_system::net::{Clock, DatagramSocket};
use livecam_system::time::Instant;

use super::{HostFault, Outcome, Run, SimError, Simulator, TraceOut};
use crate::host::{host_main, PORT};
use crate::scenario::{Host, Scenario};
use crate::state::{lock, Shared};

/// A timer's key: fire time, then registration order.
type TimerKey = (Instant, u64);

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    waker: Option<Waker>,
}

/// Every bound socket's mailbox: hosts' addresses ([`address`]) index a vector, so a datagram
/// finds its mailbox in O(1) whatever the fleet; any other address goes to an ordered map.
/// Datagram buffers are recycled.
#[derive(Default)]
struct Mailboxes {
    hosts: Vec<Option<(SocketAddr, Mailbox)>>,
    others: BTreeMap<SocketAddr, Mailbox>,
    spare: Vec<Vec<u8>>,
}

impl Mailboxes {
    fn bind(&mut self, addr: SocketAddr) {
        match host_slot(addr.ip()) {
            Some(i) => {
                if self.hosts.len() <= i {
                    self.hosts.resize_with(i + 1, || None);
                }
                self.hosts[i] = Some((addr, Mailbox::default()));
            }
            None => {
                self.others.insert(addr, Mailbox::default());
            }
        }
    }

    fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Mailbox> {
        match host_slot(addr.ip()) {
            Some(i) => match self.hosts.get_mut(i) {
                Some(Some((a, mb))) if a == addr => Some(mb),
                _ => None,
            },
            None => self.others.get_mut(addr),
        }
    }

    fn unbind(&mut self, addr: &SocketAddr) {
        match host_slot(addr.ip()) {
            Some(i) => {
                if let Some(slot) = self.hosts.get_mut(i) {
                    if slot.as_ref().is_some_and(|(a, _)| a == addr) {
                        *slot = None;
                    }
                }
            }
            None => {
                self.others.remove(addr);
            }
        }
    }
}

/// The runtime's shared core: clock, timers, mailboxes, and the world state whose network
/// holds the datagrams on their way.
///
/// Timers live in an ordered map, and a dropped [`Sleep`]'s entry goes when the poll of its
/// task ends (unless the task sleeps until the same time again in that poll, which keeps
/// it), so the map holds only the sleeps that are still pending (a few per host). A heap with
/// cancelled entries left in place grows with the event rate times the timer horizon
/// instead: every datagram a role receives cancels the sleep of its driver loop.
pub struct Core {
    now: Cell<Instant>,
    seq: Cell<u64>,
    timers: RefCell<BTreeMap<TimerKey, Waker>>,
    /// Timers whose sleep was dropped while the current task ran: removed when its poll
    /// ends, unless the task sleeps until the same time again first (the driver loop drops
    /// its sleep for every datagram it receives and sleeps again until the same deadline:
    /// that costs no tree operation at all).
    dropped: RefCell<Vec<TimerKey>>,
    mailboxes: RefCell<Mailboxes>,
    state: Shared,
}

impl Core {
    fn new(state: Shared) -> Self {
        Core {
            now: Cell::default(),
            seq: Cell::default(),
            timers: RefCell::default(),
            dropped: RefCell::default(),
            mailboxes: RefCell::default(),
            state,
        }
    }

    fn add_timer(&self, at: Instant, waker: Waker) -> TimerKey {
        {
            // The same task sleeping again until a time it just stopped sleeping until: the
            // entry (and its waker, the task's) is still there.
            let mut dropped = self.dropped.borrow_mut();
            if let Some(i) = dropped.iter().position(|k| k.0 == at) {
                return dropped.swap_remove(i);
            }
        }
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.timers.borrow_mut().insert((at, seq), waker);
        (at, seq)
    }

    fn cancel_timer(&self, key: TimerKey) {
        self.dropped.borrow_mut().push(key);
    }

    /// Removes the timers of sleeps dropped during the task poll that just ended.
    fn end_poll(&self) {
        let mut dropped = self.dropped.borrow_mut();
        if !dropped.is_empty() {
            let mut timers = self.timers.borrow_mut();
            for key in dropped.drain(..) {
                timers.remove(&key);
            }
        }
    }

    /// The next time a timer fires.
    fn next_timer(&self) -> Option<Instant> {
        self.timers.borrow().first_key_value().map(|(k, _)| k.0)
    }

    /// When the network next delivers a datagram (or changes a link).
    fn next_delivery(&self) -> Option<Instant> {
        lock(&self.state).next_deadline()
    }

    /// Puts every datagram due at or before now into its mailbox, in `(due time, send order)`
    /// order, and wakes the receivers (each once, however many datagrams it got).
    fn deliver_due(&self) {
        let now = self.now.get();
        let mut state = lock(&self.state);
        let mut mailboxes = self.mailboxes.borrow_mut();
        let mut wake = Vec::new();
        let mut deliver = |(to, from): (SocketAddr, SocketAddr), bytes: &[u8]| {
            let mut data = mailboxes.spare.pop().unwrap_or_default();
            // Nobody there: its host crashed while the datagram was on its way.
            let Some(mb) = mailboxes.get_mut(&to) else {
                mailboxes.spare.push(data);
                return;
            };
            data.clear();
            data.extend_from_slice(bytes);
            mb.queue.push_back((from, data));
            if let Some(w) = mb.waker.take() {
                wake.push(w);
            }
        };
        while state.poll(now, &mut deliver).is_some() {}
        drop((state, mailboxes));
        for w in wake {
            w.wake();
        }
    }

    /// Wakes every timer due at or before now, in `(time, registration)` order.
    fn fire_timers(&self) {
        let now = self.now.get();
        loop {
            let entry = {
                let mut timers = self.timers.borrow_mut();
                match timers.first_entry() {
                    Some(e) if e.key().0 <= now => Some(e.remove()),
                    _ => None,
                }
            };
            match entry {
                Some(waker) => waker.wake(),
                None => return,
            }
        }
    }
}

/// Simulated time on a [`Core`], as a host reads it: true time, or true time skewed by the
/// host's [`Skew`] (`[[clocks]]` in the scenario).
#[derive(Clone)]
pub struct DesClock {
    core: Rc<Core>,
    skew: Option<Rc<Skew>>,
}

/// A host clock off true time: it runs at `rate` (1 + drift) and jumps forward by each jump
/// at its true instant. Readings are whole microseconds and never go backwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Skew {
    rate: f64,
    /// `(true instant, forward jump)`, in microseconds, in time order.
    jumps: Vec<(u64, u64)>,
}

impl Skew {
    /// The skew `spec` describes.
    pub fn of(spec: &crate::scenario::ClockSpec) -> Self {
        let mut jumps: Vec<(u64, u64)> = spec
            .jumps
            .iter()
            .map(|j| {
                (
                    (j.at_s * 1e6).round() as u64,
                    (j.jump_ms * 1e3).round() as u64,
                )
            })
            .collect();
        jumps.sort_unstable();
        Skew {
            rate: 1.0 + spec.drift_ppm * 1e-6,
            jumps,
        }
    }

    /// The host's reading at true time `t` (microseconds).
    pub fn local(&self, t: u64) -> u64 {
        let jumped: u64 = self
            .jumps
            .iter()
            .take_while(|(at, _)| *at <= t)
            .map(|(_, d)| d)
            .sum();
        (t as f64 * self.rate) as u64 + jumped
    }

    /// The first true time at which the host reads `local` or later.
    pub fn true_at(&self, local: u64) -> u64 {
        let (mut jumped, mut from) = (0u64, 0u64);
        let mut guess = None;
        for &(at, d) in &self.jumps {
            let t = ((local.saturating_sub(jumped)) as f64 / self.rate).ceil() as u64;
            if t.max(from) < at {
                guess = Some(t.max(from));
                break;
            }
            jumped += d;
            from = at;
        }
        let mut t = guess.unwrap_or_else(|| {
            (((local.saturating_sub(jumped)) as f64 / self.rate).ceil() as u64).max(from)
        });
        // Rounding may leave the reading a microsecond short: the reading must have arrived.
        for _ in 0..4096 {
            if self.local(t) >= local {
                break;
            }
            t = t.saturating_add(1);
        }
        t
    }
}

struct Sleep {
    core: Rc<Core>,
    at: Instant,
    /// The registered timer, until it fires or the sleep is dropped.
    key: Option<TimerKey>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.now.get() >= self.at {
            // Done. Its entry, if the executor has not fired it yet (the task was woken by
            // something else at the same time), goes when this poll ends.
            if let Some(key) = self.key.take() {
                self.core.cancel_timer(key);
            }
            return Poll::Ready(());
        }
        if self.key.is_none() {
            let key = self.core.add_timer(self.at, cx.waker().clone());
            self.key = Some(key);
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.core.cancel_timer(key);
        }
    }
}

impl Clock for DesClock {
    fn now(&self) -> Instant {
        let now = self.core.now.get();
        match &self.skew {
            None => now,
            Some(s) => Instant::from_micros(s.local(now.as_micros())),
        }
    }
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> {
        let at = match &self.skew {
            None => deadline,
            Some(s) => Instant::from_micros(s.true_at(deadline.as_micros())),
        };
        Sleep {
            core: self.core.clone(),
            at,
            key: None,
        }
    }
}

/// A datagram socket of a des host: what it sends goes to the shared network, which decides
/// each datagram's fate and holds it until it is due; what the executor takes from the network
/// for its address lands in its mailbox.
pub struct DesSocket {
    core: Rc<Core>,
    addr: SocketAddr,
}

impl DesSocket {
    fn bind(core: Rc<Core>, addr: SocketAddr) -> Self {
        core.mailboxes.borrow_mut().bind(addr);
        DesSocket { core, addr }
    }
}

impl DatagramSocket for DesSocket {
    /// Offers the datagram to the network. One to an address nobody is bound to (its host is
    /// down) still meets its link, so the link's dice do not depend on who is up, and
    /// vanishes, as UDP does.
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let now = self.core.now.get();
        let bound = self.core.mailboxes.borrow_mut().get_mut(&target).is_some();
        let mut state = lock(&self.core.state);
        if bound {
            state.offer(now, self.addr, target, buf);
        } else {
            state.transmit(self.addr.ip(), target.ip(), now, buf.len());
        }
        Ok(buf.len())
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        std::future::poll_fn(move |cx| {
            let mut mailboxes = self.core.mailboxes.borrow_mut();
            let Some(mb) = mailboxes.get_mut(&self.addr) else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "socket closed: its host crashed",
                )));
            };
            match mb.queue.pop_front() {
                Some((from, data)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    mailboxes.spare.push(data);
                    Poll::Ready(Ok((n, from)))
                }
                None => {
                    mb.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Drop for DesSocket {
    fn drop(&mut self) {
        self.core.mailboxes.borrow_mut().unbind(&self.addr);
    }
}

struct TaskWaker {
    id: usize,
    ready: Arc<Mutex<VecDeque<usize>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut q) = self.ready.lock() {
            q.push_back(self.id);
        }
    }
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The host index behind an address made by [`address`].
fn host_slot(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [10, 0, hi, lo @ 1..=250] => Some(usize::from(hi) * 250 + usize::from(lo) - 1),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

fn address(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        0,
        (index / 250) as u8,
        (index % 250 + 1) as u8,
    ))
}

/// The executor: tasks (one per running host), their wakers, and the core.
struct Executor {
    core: Rc<Core>,
    tasks: Vec<Option<(Task, Waker)>>,
    ready: Arc<Mutex<VecDeque<usize>>>,
    /// The task currently running each host, by host index.
    host_task: BTreeMap<usize, usize>,
}

impl Executor {
    fn spawn(&mut self, host: usize, fut: Task) {
        let id = self.tasks.len();
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            ready: self.ready.clone(),
        }));
        self.tasks.push(Some((fut, waker)));
        self.host_task.insert(host, id);
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(id);
    }

    fn kill(&mut self, host: usize) {
        if let Some(id) = self.host_task.remove(&host) {
            // Dropping the future drops everything the host held, its socket included; its
            // sleeps' timers go now, so that no other task's sleep takes one over.
            self.tasks[id] = None;
            self.core.end_poll();
        }
    }

    fn run_ready(&mut self) {
        loop {
            let next = self
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some(id) = next else { return };
            let Some(Some((fut, waker))) = self.tasks.get_mut(id) else {
                continue;
            };
            let waker = waker.clone();
            let mut cx = Context::from_waker(&waker);
            if fut.as_mut().poll(&mut cx).is_ready() {
                self.tasks[id] = None;
            }
            self.core.end_poll();
        }
    }
}

/// Host name to address, built once per run (a scan of `Scenario::hosts` per lookup made
/// starting a fleet quadratic in its size).
type Directory = Rc<BTreeMap<String, IpAddr>>;

fn host_task(
    core: &Rc<Core>,
    scenario: &Rc<Scenario>,
    directory: &Directory,
    host: &Host,
    seed: u64,
    state: &Shared,
) -> Task {
    let core = core.clone();
    let scenario = scenario.clone();
    let directory = directory.clone();
    let host = host.clone();
    let state = state.clone();
    Box::pin(async move {
        let ip = address(host.index);
        let clock = DesClock {
            core: core.clone(),
            skew: scenario.clock_of(&host).map(|c| Rc::new(Skew::of(c))),
        };
        // Its own address, then one per uplink interface.
        let sockets = std::iter::once(ip)
            .chain(
                scenario
                    .interfaces_of(&host)
                    .iter()
                    .map(|i| address(i.index)),
            )
            .map(|ip| DesSocket::bind(core.clone(), (ip, PORT).into()))
            .collect();
        let resolve = |name: &str| directory.get(name).copied();
        if let Err(e) = host_main(&scenario, &host, seed, state, sockets, clock, resolve).await {
            tracing::debug!(error = %e, host = %host.name, "host ended with an error");
        }
    })
}

/// Runs a scenario on the discrete-event executor.
pub fn run(scenario: &Scenario, seed: u64, trace: TraceOut) -> Result<Outcome, SimError> {
    let mut run = Run::start(Simulator::Des, scenario, seed, trace);
    let state = run.state.clone();
    let hosts = scenario.hosts();
    {
        let mut st = lock(&state);
        for h in hosts.iter().chain(&scenario.interfaces()) {
            st.set_address(address(h.index), &h.name);
        }
    }
    let core = Rc::new(Core::new(state.clone()));
    let shared_scenario = Rc::new(scenario.clone());
    let mut names = BTreeMap::new();
    for h in &hosts {
        // The first host of a name, as a scan would find.
        names.entry(h.name.clone()).or_insert(address(h.index));
    }
    let directory: Directory = Rc::new(names);
    let mut exec = Executor {
        core: core.clone(),
        tasks: Vec::new(),
        ready: Arc::new(Mutex::new(VecDeque::new())),
        host_task: BTreeMap::new(),
    };
    for h in &hosts {
        exec.spawn(
            h.index,
            host_task(&core, &shared_scenario, &directory, h, seed, &state),
        );
    }
    let end = run.end();
    loop {
        exec.run_ready();
        let next = [
            exec.core.next_timer(),
            exec.core.next_delivery(),
            run.faults.next_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) if t <= end => exec.core.now.set(t.max(exec.core.now.get())),
            _ => {
                exec.core.now.set(end);
                break;
            }
        }
        let now = exec.core.now.get();
        run.apply_faults(now, |what, h| match what {
            HostFault::Crash => exec.kill(h.index),
            HostFault::Restart => {
                if !exec.host_task.contains_key(&h.index) {
                    exec.spawn(
                        h.index,
                        host_task(&core, &shared_scenario, &directory, h, seed, &state),
                    );
                }
            }
        });
        exec.core.deliver_due();
        exec.core.fire_timers();
    }
    // Drop every task (and so every socket) before the core goes.
    exec.tasks.clear();
    run.finish(exec.core.now.get().since_origin().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{ClockJump, ClockSpec};

    fn skew(drift_ppm: f64, jumps: &[(f64, f64)]) -> Skew {
        Skew::of(&ClockSpec {
            host: "h".into(),
            drift_ppm,
            jumps: jumps
                .iter()
                .map(|&(at_s, jump_ms)| ClockJump { at_s, jump_ms })
                .collect(),
        })
    }

    #[test]
    fn a_skewed_clock_never_goes_back_and_wakes_exactly_when_it_reads_the_deadline() {
        for s in [
            skew(0.0, &[]),
            skew(500.0, &[]),
            skew(-500.0, &[(1.0, 300.0)]),
            skew(123.0, &[(0.5, 1.0), (2.0, 2000.0), (2.0, 5.0)]),
        ] {
            let mut last = 0;
            for t in (0..3_000_000).step_by(997) {
                let local = s.local(t);
                assert!(local >= last, "{s:?} at {t}");
                last = local;
                // The first true time the host reads `local`: at or before `t`, and the host
                // reads less just before it.
                let at = s.true_at(local);
                assert!(at <= t && s.local(at) >= local, "{s:?} at {t}");
                assert!(at == 0 || s.local(at - 1) < local, "{s:?} at {t}");
            }
        }
        // 500 ppm fast: a second later by 500 us; a jump reads ahead at once.
        assert_eq!(skew(500.0, &[]).local(1_000_000), 1_000_500);
        let j = skew(0.0, &[(1.0, 300.0)]);
        assert_eq!((j.local(999_999), j.local(1_000_000)), (999_999, 1_300_000));
        assert_eq!(
            j.true_at(1_200_000),
            1_000_000,
            "deadlines in the gap fire at the jump"
        );
    }

    #[test]
    fn a_cluster_with_drifting_and_jumping_clocks_keeps_its_promises_and_replays() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/cluster-tier2-crash.toml"
        ))
        .expect("reads");
        let text = format!(
            "{text}\n[[clocks]]\nhost = \"t2a\"\ndrift_ppm = 800.0\n\
             jumps = [{{ at_s = 3.0, jump_ms = 1500.0 }}]\n\n\
             [[clocks]]\nhost = \"car3\"\ndrift_ppm = -900.0\n\
             jumps = [{{ at_s = 9.0, jump_ms = 400.0 }}]\n"
        );
        let s = Scenario::parse(&text).expect("valid");
        let a = run(&s, 5, None).expect("runs");
        assert!(a.summary.cluster_problems().is_empty(), "{:?}", a.summary);
        assert_eq!(a.trace_hash, run(&s, 5, None).expect("runs").trace_hash);
        let plain = run(
            &Scenario::parse(&text_without_clocks(&text)).unwrap(),
            5,
            None,
        )
        .unwrap();
        assert_ne!(a.trace_hash, plain.trace_hash, "the clocks act");
        // Elsewhere they are refused, naming the field.
        let e = crate::simulator::run(Simulator::Turmoil, &s, 5, None).expect_err("des only");
        assert!(e.to_string().contains("clocks"), "{e}");
        let bad = format!("{text}\n[[clocks]]\nhost = \"nobody\"\n");
        let e = Scenario::parse(&bad).expect_err("unknown host");
        assert!(e.to_string().starts_with("clocks[2].host"), "{e}");
        let back = format!(
            "{text}\n[[clocks]]\nhost = \"t1\"\njumps = [{{ at_s = 1.0, jump_ms = -5.0 }}]\n"
        );
        let e = Scenario::parse(&back).expect_err("backwards");
        assert!(
            e.to_string().starts_with("clocks[2].jumps[0].jump_ms"),
            "{e}"
        );
    }

    #[test]
    fn a_durable_camera_numbers_each_boot_from_its_own_wall_clock_and_loses_nothing() {
        // car0's clock runs 2,000 ppm fast and jumps 2.5 s at 3 s; it crashes at 5 s and
        // boots again at 6 s (true time), numbering that boot from its wall clock; both cars
        // are cut off from the tier-2 for 3 s, so frames are backfilled under their numbers.
        let text = r#"
name = "durable-clocks"
duration_s = 20.0
[workload]
fps = 10.0
frame_bytes = 3000
settle_s = 5.0
[durability]
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
count = 2
tier1 = ["t1"]
[link]
delay_ms = 10.0
[[faults]]
at_s = 5.0
action = "crash"
host = "car0"
[[faults]]
at_s = 6.0
action = "restart"
host = "car0"
[[faults]]
at_s = 8.0
action = "partition"
a = "car"
b = "t2"
[[faults]]
at_s = 11.0
action = "repair"
a = "car"
b = "t2"
[[clocks]]
host = "car0"
drift_ppm = 2000.0
jumps = [{ at_s = 3.0, jump_ms = 2500.0 }]
"#;
        let s = Scenario::parse(text).expect("valid");
        let path = std::env::temp_dir().join(format!(
            "livecam-durable-clocks-{}.jsonl",
            std::process::id()
        ));
        let file = std::fs::File::create(&path).expect("a temporary file");
        let outcome = run(&s, 3, Some(Box::new(file))).expect("runs");
        let trace = std::fs::read_to_string(&path).expect("reads");
        let _ = std::fs::remove_file(&path);
        let d = outcome
            .summary
            .durability
            .as_ref()
            .expect("durable figures");
        assert!(
            outcome.summary.promises_kept,
            "{:?}",
            outcome.summary.violations
        );
        assert_eq!(
            (d.frames_not_stored, d.stored_never_captured),
            (0, 0),
            "{d:?}"
        );
        assert!(d.frames_stored_by_backfill > 0, "{d:?}");
        // Each session's numbering, from its frames' events.
        let mut boots = std::collections::BTreeMap::new();
        for line in trace
            .lines()
            .filter(|l| l.contains(r#""ev":"frame_pushed""#))
        {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let (host, boot) = (
                v["host"].as_str().unwrap_or(""),
                v["e"]["boot_seq"].as_u64(),
            );
            boots.insert((host.to_string(), v["e"]["session"].as_u64()), boot);
        }
        let epoch = crate::host::wall_clock_ms(Instant::ZERO);
        let first = |host: &str| boots.iter().find(|((h, _), _)| h == host).map(|(_, b)| *b);
        assert_eq!(first("car1"), Some(Some(epoch)), "{boots:?}");
        // car0's second boot, at 6 s true time: 6 s x 1.002 + 2.5 s on its clock.
        let second = boots
            .iter()
            .filter(|((h, _), _)| h == "car0")
            .map(|(_, b)| b.unwrap_or(0))
            .max();
        assert_eq!(second, Some(epoch + 8_512), "{boots:?}");
    }

    fn text_without_clocks(text: &str) -> String {
        text.split("\n[[clocks]]")
            .next()
            .unwrap_or(text)
            .to_string()
    }
}
