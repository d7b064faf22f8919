//! Drives a [`Forwarder`] in real time: receive threads offer what arrives (and send at once
//! whatever is already due, so a link with no delay costs one lock and one send), and one timer
//! thread sends delayed traffic when it falls due.
//!
//! The clock is a monotonic [`std::time::Instant`] taken when the engine starts; the forwarder
//! sees it as [`livecam_system::time::Instant`] microseconds since then, so the fault schedule
//! counts from the engine's start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use livecam_system::time::Instant;

use crate::forward::{Forwarder, Out};

/// Where forwarded traffic goes: the bridge's AF_PACKET senders, the relay's sockets.
pub type Deliver = Box<dyn FnMut(&Out) + Send>;

struct State {
    forwarder: Forwarder,
    deliver: Deliver,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stop: AtomicBool,
    origin: std::time::Instant,
}

/// A running forwarder: share [`Handle`]s with the receive threads, then [`Engine::finish`].
pub struct Engine {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
}

/// What a receive thread holds.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts the timer thread.
    pub fn start(forwarder: Forwarder, deliver: Deliver) -> Engine {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { forwarder, deliver }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            origin: std::time::Instant::now(),
        });
        let timer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("emulator-timer".into())
                .spawn(move || timer(&shared))
                .ok()
        };
        Engine { shared, timer }
    }

    /// A handle for a receive thread.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Stops the timer thread and reads the forwarder with `read` (what is still in flight is
    /// not sent). Stop the receive threads first, or their later offers are lost.
    pub fn finish<R>(mut self, read: impl FnOnce(&Forwarder) -> R) -> R {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
        read(&lock(&self.shared.state).forwarder)
    }
}

impl Handle {
    /// Offers `bytes` from `from` to `to` now, and sends whatever is due.
    pub fn offer(&self, from: usize, to: usize, bytes: Vec<u8>) {
        let mut st = lock(&self.shared.state);
        let now = now(&self.shared);
        let State { forwarder, deliver } = &mut *st;
        forwarder.offer(now, from, to, bytes);
        while let Some(out) = forwarder.poll(now) {
            deliver(&out);
        }
        if forwarder.in_flight() > 0 {
            self.shared.wake.notify_one();
        }
    }

    /// Counts something that could not be routed.
    pub fn unroutable(&self) {
        lock(&self.shared.state).forwarder.count_unroutable();
    }

    /// Whether the engine is stopping.
    pub fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Asks the engine's threads to stop.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now(shared: &Shared) -> Instant {
    Instant::from_micros(shared.origin.elapsed().as_micros() as u64)
}

fn timer(shared: &Shared) {
    let mut st = lock(&shared.state);
    while !shared.stop.load(Ordering::SeqCst) {
        let t = now(shared);
        let State { forwarder, deliver } = &mut *st;
        while let Some(out) = forwarder.poll(t) {
            deliver(&out);
        }
        let wait = match forwarder.next_deadline() {
            Some(at) => at
                .saturating_duration_since(t)
                .max(Duration::from_micros(20)),
            None => Duration::from_millis(100),
        };
        st = shared
            .wake
            .wait_timeout(st, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}
