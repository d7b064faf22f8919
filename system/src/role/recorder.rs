use super::RoleEvent;
use crate::time::Instant;

/// Role events kept for whoever asks (a simulation's trace), when recording is on.
#[derive(Debug, Default)]
pub struct Recorder(Option<Vec<(Instant, RoleEvent)>>);

impl Recorder {
    /// Starts recording.
    pub fn enable(&mut self) {
        self.0.get_or_insert_with(Vec::new);
    }

    pub fn record(&mut self, now: Instant, ev: RoleEvent) {
        if let Some(r) = self.0.as_mut() {
            r.push((now, ev));
        }
    }

    /// The events recorded since the last call.
    pub fn take(&mut self) -> Vec<(Instant, RoleEvent)> {
        self.0.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// This recorder's events and those of an inner role's, in time order (stable: at equal
    /// times, this recorder's first).
    pub fn take_with(&mut self, inner: &mut Recorder) -> Vec<(Instant, RoleEvent)> {
        let mut events = self.take();
        events.extend(inner.take());
        events.sort_by_key(|(t, _)| *t);
        events
    }
}
