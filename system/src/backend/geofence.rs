//! Groups of clients, geofences and their enter/leave events (issue 20, item 3).
//!
//! - A [`GroupRecord`] is a named set of client ids. A [`GeofenceRecord`] is a named polygon of
//!   latitude/longitude points, optionally tied to a group: then only the group's members
//!   raise its events. Both are created and deleted whole (never edited), through the web API
//!   by operators ([`crate::backend::web`]), and stored by [`Geofences`] in both databases.
//! - [`Detector`] is the enter/leave state machine: plain function calls, no clock, no I/O.
//!   It is fed every stored fix in order by the backend's fence watcher
//!   ([`crate::backend::fence_watch`]), which stores and pushes what it raises.
//!
//! The rules of [`Detector::handle_fix`], for each fence that applies to the fix's client:
//!
//! - **Inside** means inside the polygon or on its boundary (the area is closed); edges are
//!   straight lines in latitude/longitude (fences are small; a fence may not span the 180th
//!   meridian, see [`validate_points`]).
//! - A client not yet known inside a fence counts as outside. So a **first fix inside raises
//!   `enter`**, a first fix outside raises nothing, and after that every change of side raises
//!   `enter` or `leave`. Because "unknown" and "outside" behave alike, the whole state can be
//!   rebuilt from the last event of each (fence, client) ([`Detector::restore`]): a backend
//!   restart neither repeats an `enter` nor loses a `leave` that the next fix implies.
//! - Fixes are taken in each client's capture order: a fix whose frame id is not above the
//!   newest one already taken for that client (a repeat, or a backfilled old frame arriving
//!   late) changes nothing. Backfilled history fills the track, it does not replay events.
//! - A fix with a non-finite coordinate changes nothing.
//!
//! Events are idempotent in storage by (fence, client, frame), so two backends watching one
//! database store each event once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::{FixRecord, StorageError};

/// Longest name of a group or a fence, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most points a fence may have.
pub const MAX_POINTS: usize = 100;
/// Most clients a group may name.
pub const MAX_MEMBERS: usize = 1000;
/// Most groups, and most fences, the database holds (each fix is checked against every fence).
pub const MAX_GROUPS: usize = 500;
pub const MAX_FENCES: usize = 500;
/// How close to an edge (degrees, about 0.1 mm) a point counts as on the boundary.
const BOUNDARY_EPS: f64 = 1e-9;

/// A named set of clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: u64,
    pub name: String,
    pub members: BTreeSet<u32>,
    /// Who created it (a user name).
    pub created_by: String,
    pub created_ms: i64,
}

/// A point of a fence: `[lat, lon]` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon(pub f64, pub f64);

impl LatLon {
    pub fn lat(self) -> f64 {
        self.0
    }
    pub fn lon(self) -> f64 {
        self.1
    }
}

/// A fence as it is created: checked by [`validate_name`] and [`validate_points`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewGeofence {
    pub name: String,
    /// Only this group's members raise its events; `None`: every client.
    pub group: Option<u64>,
    pub points: Vec<LatLon>,
}

/// A stored fence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeofenceRecord {
    pub id: u64,
    pub name: String,
    pub group: Option<u64>,
    pub points: Vec<LatLon>,
    pub created_by: String,
    pub created_ms: i64,
}

/// Which way a client crossed a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Enter,
    Leave,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Enter => "enter",
            EventKind::Leave => "leave",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enter" => Some(EventKind::Enter),
            "leave" => Some(EventKind::Leave),
            _ => None,
        }
    }
}

/// A client entered or left a fence, at the fix that showed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeofenceEvent {
    pub fence: u64,
    /// The fence's name when the event was raised (kept after the fence is deleted).
    pub fence_name: String,
    pub client: u32,
    /// The frame whose fix showed it (a decimal string in JSON, see
    /// [`crate::backend::seq_string`]).
    #[serde(with = "crate::backend::seq_string")]
    pub frame: u64,
    pub kind: EventKind,
    /// When the tier-2 received that fix (the storage clock, as every `_ms` of the API).
    pub at_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

/// A stored fix with its frame id: what the fence watcher reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixRow {
    pub frame: u64,
    pub fix: FixRecord,
}

/// Where a reading of all clients' fixes stands: fixes are ordered by
/// `(received_ms, client, frame)`, the frame as stored (its bits as a signed integer), and a
/// cursor names the last one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FixCursor {
    pub received_ms: i64,
    pub client: i64,
    pub frame_bits: i64,
}

impl FixCursor {
    /// A cursor before every fix received at or after `ms`.
    pub fn before(ms: i64) -> Self {
        FixCursor {
            received_ms: ms.saturating_sub(1),
            client: i64::MAX,
            frame_bits: i64::MAX,
        }
    }

    /// The cursor at `row`.
    pub fn at(row: &FixRow) -> Self {
        FixCursor {
            received_ms: row.fix.received_ms,
            client: i64::from(row.fix.client),
            frame_bits: row.frame as i64,
        }
    }
}

/// What deleting a group did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRemoval {
    Deleted,
    NotFound,
    /// Not deleted: these fences are tied to it.
    InUse(Vec<u64>),
}

/// The storage of groups, fences and events; part of every
/// [`Storage`](crate::backend::Storage). Every method is one transaction, values travel as
/// parameters.
pub trait Geofences {
    /// Every group, by id.
    fn groups(&mut self) -> Result<Vec<GroupRecord>, StorageError>;
    /// Stores a new group (checked by the caller) and returns it with its id.
    fn insert_group(
        &mut self,
        name: &str,
        members: &BTreeSet<u32>,
        created_by: &str,
        now_ms: i64,
    ) -> Result<GroupRecord, StorageError>;
    /// Deletes a group no fence is tied to.
    fn delete_group(&mut self, id: u64) -> Result<GroupRemoval, StorageError>;
    /// Every fence, by id.
    fn geofences(&mut self) -> Result<Vec<GeofenceRecord>, StorageError>;
    /// Stores a new fence (checked by the caller); `None` when its group does not exist.
    fn insert_geofence(
        &mut self,
        fence: &NewGeofence,
        created_by: &str,
        now_ms: i64,
    ) -> Result<Option<GeofenceRecord>, StorageError>;
    /// Deletes a fence (its events stay); whether it existed.
    fn delete_geofence(&mut self, id: u64) -> Result<bool, StorageError>;
    /// Stores events; one already stored (same fence, client and frame) is left as it is.
    fn insert_geofence_events(&mut self, events: &[GeofenceEvent]) -> Result<(), StorageError>;
    /// Events with `at_ms` within `[from_ms, to_ms]`, oldest first, at most `limit`.
    fn geofence_events(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<GeofenceEvent>, StorageError>;
    /// The newest event (by frame) of each (fence, client) of the fences that exist.
    fn last_geofence_events(&mut self) -> Result<Vec<GeofenceEvent>, StorageError>;
    /// Every client's fixes after `after`, in cursor order, at most `limit`.
    fn fixes_after(&mut self, after: FixCursor, limit: u32) -> Result<Vec<FixRow>, StorageError>;
}

/// A group or fence refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A name: 1 to [`MAX_NAME_CHARS`] characters, not only spaces, no control characters.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, got {chars}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not hold control characters"));
    }
    Ok(())
}

/// A group's members: 1 to [`MAX_MEMBERS`] client ids.
pub fn validate_members(members: &BTreeSet<u32>) -> Result<(), Invalid> {
    if members.is_empty() {
        return Err(invalid("members", "must name at least one client"));
    }
    if members.len() > MAX_MEMBERS {
        return Err(invalid(
            "members",
            format!(
                "must name at most {MAX_MEMBERS} clients, got {}",
                members.len()
            ),
        ));
    }
    Ok(())
}

/// A fence's points: 3 to [`MAX_POINTS`], finite, latitudes within +-90 and longitudes within
/// +-180 degrees, no edge spanning more than 180 degrees of longitude (a fence across the
/// 180th meridian would be read the other way round the Earth), and a non-zero area.
pub fn validate_points(points: &[LatLon]) -> Result<(), Invalid> {
    if points.len() < 3 {
        return Err(invalid(
            "points",
            format!("a fence needs at least 3 points, got {}", points.len()),
        ));
    }
    if points.len() > MAX_POINTS {
        return Err(invalid(
            "points",
            format!(
                "a fence has at most {MAX_POINTS} points, got {}",
                points.len()
            ),
        ));
    }
    for (i, p) in points.iter().enumerate() {
        if !p.lat().is_finite() || p.lat().abs() > 90.0 {
            return Err(invalid(
                format!("points[{i}]"),
                format!("latitude must be a number within -90..=90, got {}", p.lat()),
            ));
        }
        if !p.lon().is_finite() || p.lon().abs() > 180.0 {
            return Err(invalid(
                format!("points[{i}]"),
                format!(
                    "longitude must be a number within -180..=180, got {}",
                    p.lon()
                ),
            ));
        }
    }
    for i in 0..points.len() {
        let (a, b) = (points[i], points[(i + 1) % points.len()]);
        if (a.lon() - b.lon()).abs() > 180.0 {
            return Err(invalid(
                format!("points[{i}]"),
                "an edge spans more than 180 degrees of longitude (fences may not cross the \
                 180th meridian)",
            ));
        }
    }
    if area(points).abs() < 1e-18 {
        return Err(invalid("points", "the points enclose no area"));
    }
    Ok(())
}

/// Twice the signed area of the polygon in square degrees (shoelace).
fn area(points: &[LatLon]) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a.lon() * b.lat() - b.lon() * a.lat()
        })
        .sum()
}

/// Whether `(lat, lon)` is inside the polygon or on its boundary (within [`BOUNDARY_EPS`]).
/// Even-odd rule, a ray cast towards growing longitude.
pub fn contains(points: &[LatLon], lat: f64, lon: f64) -> bool {
    if !lat.is_finite() || !lon.is_finite() || points.len() < 3 {
        return false;
    }
    let n = points.len();
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (points[i], points[(i + 1) % n]);
        if on_segment(a, b, lat, lon) {
            return true;
        }
        // The edge straddles the point's latitude (half-open, so a vertex counts once).
        if (a.lat() > lat) != (b.lat() > lat) {
            let cross = a.lon() + (lat - a.lat()) / (b.lat() - a.lat()) * (b.lon() - a.lon());
            if lon < cross {
                inside = !inside;
            }
        }
    }
    inside
}

fn on_segment(a: LatLon, b: LatLon, lat: f64, lon: f64) -> bool {
    let (dx, dy) = (b.lon() - a.lon(), b.lat() - a.lat());
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((lon - a.lon()) * dx + (lat - a.lat()) * dy) / len2).clamp(0.0, 1.0)
    };
    let (px, py) = (a.lon() + t * dx - lon, a.lat() + t * dy - lat);
    px * px + py * py <= BOUNDARY_EPS * BOUNDARY_EPS
}

/// A fence as the detector checks it: its polygon, bounding box and who it applies to.
#[derive(Debug, Clone)]
struct Active {
    id: u64,
    name: String,
    points: Vec<LatLon>,
    /// south, west, north, east
    bbox: (f64, f64, f64, f64),
    /// `None`: every client.
    members: Option<BTreeSet<u32>>,
}

impl Active {
    fn applies_to(&self, client: u32) -> bool {
        self.members.as_ref().is_none_or(|m| m.contains(&client))
    }

    fn contains(&self, lat: f64, lon: f64) -> bool {
        let (s, w, n, e) = self.bbox;
        let slack = BOUNDARY_EPS;
        lat >= s - slack
            && lat <= n + slack
            && lon >= w - slack
            && lon <= e + slack
            && contains(&self.points, lat, lon)
    }
}

/// The enter/leave state machine (see the module docs for its rules).
#[derive(Debug, Default)]
pub struct Detector {
    fences: Vec<Active>,
    /// The (fence, client) pairs known inside.
    inside: BTreeSet<(u64, u32)>,
    /// Per client, the newest frame whose fix was taken.
    last_frame: BTreeMap<u32, u64>,
}

impl Detector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the fences to watch. A fence tied to a group that is not in `groups` applies to
    /// no client. The inside state of fences no longer there is forgotten.
    pub fn set_fences(&mut self, fences: &[GeofenceRecord], groups: &[GroupRecord]) {
        self.fences = fences
            .iter()
            .map(|f| {
                let bbox = f.points.iter().fold(
                    (f64::INFINITY, f64::INFINITY, -f64::INFINITY, -f64::INFINITY),
                    |(s, w, n, e), p| {
                        (
                            s.min(p.lat()),
                            w.min(p.lon()),
                            n.max(p.lat()),
                            e.max(p.lon()),
                        )
                    },
                );
                let members = f.group.map(|g| {
                    groups
                        .iter()
                        .find(|gr| gr.id == g)
                        .map(|gr| gr.members.clone())
                        .unwrap_or_default()
                });
                Active {
                    id: f.id,
                    name: f.name.clone(),
                    points: f.points.clone(),
                    bbox,
                    members,
                }
            })
            .collect();
        let ids: BTreeSet<u64> = self.fences.iter().map(|f| f.id).collect();
        self.inside.retain(|(fence, _)| ids.contains(fence));
    }

    /// Rebuilds the inside state from the last event of each (fence, client): inside after an
    /// `enter`. Also takes each event's frame as seen for its client.
    pub fn restore(&mut self, last: &[GeofenceEvent]) {
        for e in last {
            match e.kind {
                EventKind::Enter => self.inside.insert((e.fence, e.client)),
                EventKind::Leave => self.inside.remove(&(e.fence, e.client)),
            };
            self.seen(e.client, e.frame);
        }
    }

    /// Takes frames up to `frame` of `client` as seen: fixes of those change nothing.
    pub fn seen(&mut self, client: u32, frame: u64) {
        let last = self.last_frame.entry(client).or_insert(frame);
        *last = (*last).max(frame);
    }

    /// Whether any fence is watched.
    pub fn has_fences(&self) -> bool {
        !self.fences.is_empty()
    }

    /// Whether `client` is known inside `fence`.
    pub fn is_inside(&self, fence: u64, client: u32) -> bool {
        self.inside.contains(&(fence, client))
    }

    /// Takes one fix; the events it raises are appended to `out`.
    pub fn handle_fix(&mut self, row: &FixRow, out: &mut Vec<GeofenceEvent>) {
        let FixRow { frame, fix } = *row;
        let (lat, lon) = (fix.fix.lat, fix.fix.lon);
        if !lat.is_finite() || !lon.is_finite() {
            return;
        }
        if self
            .last_frame
            .get(&fix.client)
            .is_some_and(|&last| frame <= last)
        {
            return;
        }
        self.last_frame.insert(fix.client, frame);
        for f in self.fences.iter().filter(|f| f.applies_to(fix.client)) {
            let now_inside = f.contains(lat, lon);
            let was_inside = self.inside.contains(&(f.id, fix.client));
            let kind = match (was_inside, now_inside) {
                (false, true) => EventKind::Enter,
                (true, false) => EventKind::Leave,
                _ => continue,
            };
            if now_inside {
                self.inside.insert((f.id, fix.client));
            } else {
                self.inside.remove(&(f.id, fix.client));
            }
            out.push(GeofenceEvent {
                fence: f.id,
                fence_name: f.name.clone(),
                client: fix.client,
                frame,
                kind,
                at_ms: fix.received_ms,
                lat,
                lon,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Fix;
    use proptest::prelude::*;

    fn square() -> Vec<LatLon> {
        vec![
            LatLon(48.0, 11.0),
            LatLon(48.0, 11.1),
            LatLon(48.1, 11.1),
            LatLon(48.1, 11.0),
        ]
    }

    fn fence(id: u64, group: Option<u64>) -> GeofenceRecord {
        GeofenceRecord {
            id,
            name: format!("fence {id}"),
            group,
            points: square(),
            created_by: "op".into(),
            created_ms: 0,
        }
    }

    fn row(client: u32, frame: u64, lat: f64, lon: f64) -> FixRow {
        FixRow {
            frame,
            fix: FixRecord {
                client,
                received_ms: 1_000 + frame as i64,
                fix: Fix {
                    lat,
                    lon,
                    speed_mps: 0.0,
                    heading_deg: 0.0,
                    fix_time_ms: frame,
                },
            },
        }
    }

    fn kinds(d: &mut Detector, rows: &[FixRow]) -> Vec<(u64, u32, EventKind)> {
        let mut out = Vec::new();
        for r in rows {
            d.handle_fix(r, &mut out);
        }
        out.iter().map(|e| (e.fence, e.client, e.kind)).collect()
    }

    const IN: (f64, f64) = (48.05, 11.05);
    const OUT: (f64, f64) = (48.2, 11.05);

    #[test]
    fn inside_outside_and_boundary() {
        let sq = square();
        assert!(contains(&sq, IN.0, IN.1));
        assert!(!contains(&sq, OUT.0, OUT.1));
        assert!(!contains(&sq, 48.05, 10.99));
        // On an edge and on a vertex: inside (the area is closed).
        assert!(contains(&sq, 48.0, 11.05));
        assert!(contains(&sq, 48.05, 11.1));
        assert!(contains(&sq, 48.1, 11.1));
        assert!(!contains(&sq, f64::NAN, 11.05));
        // A concave polygon: the notch is outside.
        let u = vec![
            LatLon(0.0, 0.0),
            LatLon(0.0, 3.0),
            LatLon(3.0, 3.0),
            LatLon(3.0, 2.0),
            LatLon(1.0, 2.0),
            LatLon(1.0, 1.0),
            LatLon(3.0, 1.0),
            LatLon(3.0, 0.0),
        ];
        assert!(contains(&u, 0.5, 1.5));
        assert!(!contains(&u, 2.0, 1.5), "in the notch");
        assert!(contains(&u, 2.0, 0.5));
        assert!(contains(&u, 2.0, 2.5));
    }

    #[test]
    fn first_fix_inside_enters_first_fix_outside_is_silent_then_every_crossing_counts() {
        let mut d = Detector::new();
        d.set_fences(&[fence(1, None)], &[]);
        assert_eq!(
            kinds(&mut d, &[row(7, 1, IN.0, IN.1)]),
            vec![(1, 7, EventKind::Enter)]
        );
        assert_eq!(kinds(&mut d, &[row(8, 1, OUT.0, OUT.1)]), vec![]);
        assert_eq!(
            kinds(
                &mut d,
                &[
                    row(7, 2, IN.0, IN.1),
                    row(7, 3, OUT.0, OUT.1),
                    row(8, 2, OUT.0, OUT.1),
                    row(8, 3, IN.0, IN.1),
                    row(7, 4, OUT.0, OUT.1),
                    row(7, 5, 48.0, 11.05),
                ]
            ),
            vec![
                (1, 7, EventKind::Leave),
                (1, 8, EventKind::Enter),
                (1, 7, EventKind::Enter),
            ]
        );
        assert!(d.is_inside(1, 7) && d.is_inside(1, 8));
    }

    #[test]
    fn old_or_repeated_frames_and_bad_fixes_change_nothing() {
        let mut d = Detector::new();
        d.set_fences(&[fence(1, None)], &[]);
        assert_eq!(kinds(&mut d, &[row(7, 10, IN.0, IN.1)]).len(), 1);
        // A backfilled frame from before, outside: ignored.
        assert_eq!(kinds(&mut d, &[row(7, 5, OUT.0, OUT.1)]), vec![]);
        assert_eq!(kinds(&mut d, &[row(7, 10, OUT.0, OUT.1)]), vec![]);
        assert_eq!(kinds(&mut d, &[row(7, 11, f64::NAN, OUT.1)]), vec![]);
        assert!(d.is_inside(1, 7));
        assert_eq!(kinds(&mut d, &[row(7, 12, OUT.0, OUT.1)]).len(), 1);
    }

    #[test]
    fn a_group_fence_raises_only_for_members_and_a_missing_group_for_none() {
        let group = GroupRecord {
            id: 3,
            name: "north".into(),
            members: [7].into(),
            created_by: "op".into(),
            created_ms: 0,
        };
        let mut d = Detector::new();
        d.set_fences(&[fence(1, Some(3)), fence(2, Some(99))], &[group]);
        assert_eq!(
            kinds(&mut d, &[row(7, 1, IN.0, IN.1), row(8, 1, IN.0, IN.1)]),
            vec![(1, 7, EventKind::Enter)]
        );
    }

    #[test]
    fn restore_from_last_events_gives_the_same_events_as_running_on() {
        let fences = [fence(1, None), fence(2, None)];
        let path = [
            row(7, 1, IN.0, IN.1),
            row(7, 2, OUT.0, OUT.1),
            row(7, 3, IN.0, IN.1),
            row(8, 1, OUT.0, OUT.1),
            row(9, 1, IN.0, IN.1),
            row(9, 2, OUT.0, OUT.1),
        ];
        let after = [
            row(7, 4, IN.0, IN.1),
            row(7, 5, OUT.0, OUT.1),
            row(8, 2, IN.0, IN.1),
            row(9, 3, OUT.0, OUT.1),
            row(9, 4, IN.0, IN.1),
        ];
        let mut running = Detector::new();
        running.set_fences(&fences, &[]);
        let mut stored = Vec::new();
        for r in &path {
            running.handle_fix(r, &mut stored);
        }
        // The last event of each (fence, client), as storage gives it.
        let mut last: BTreeMap<(u64, u32), GeofenceEvent> = BTreeMap::new();
        for e in &stored {
            last.insert((e.fence, e.client), e.clone());
        }
        let mut restarted = Detector::new();
        restarted.set_fences(&fences, &[]);
        restarted.restore(&last.into_values().collect::<Vec<_>>());
        assert_eq!(kinds(&mut restarted, &after), kinds(&mut running, &after));
        // And an old fix of before the restart is still ignored.
        assert_eq!(kinds(&mut restarted, &[row(7, 2, OUT.0, OUT.1)]), vec![]);
    }

    #[test]
    fn deleted_fences_forget_their_state() {
        let mut d = Detector::new();
        d.set_fences(&[fence(1, None)], &[]);
        kinds(&mut d, &[row(7, 1, IN.0, IN.1)]);
        d.set_fences(&[], &[]);
        assert!(!d.is_inside(1, 7));
        assert_eq!(kinds(&mut d, &[row(7, 2, OUT.0, OUT.1)]), vec![]);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate_points(&square()).is_ok());
        let e = validate_points(&square()[..2]).unwrap_err();
        assert_eq!(e.field, "points");
        let mut bad = square();
        bad[2] = LatLon(91.0, 11.0);
        assert_eq!(validate_points(&bad).unwrap_err().field, "points[2]");
        bad[2] = LatLon(48.1, f64::INFINITY);
        assert_eq!(validate_points(&bad).unwrap_err().field, "points[2]");
        let line = [LatLon(0.0, 0.0), LatLon(1.0, 1.0), LatLon(2.0, 2.0)];
        assert!(validate_points(&line)
            .unwrap_err()
            .message
            .contains("no area"));
        let across = [LatLon(0.0, 179.0), LatLon(1.0, -179.0), LatLon(1.0, 179.0)];
        assert_eq!(validate_points(&across).unwrap_err().field, "points[0]");
        let many = vec![LatLon(0.0, 0.0); MAX_POINTS + 1];
        assert!(validate_points(&many)
            .unwrap_err()
            .message
            .contains("at most"));
        assert!(validate_name("depot").is_ok());
        assert!(validate_name("  ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(validate_members(&BTreeSet::new()).is_err());
        assert!(validate_members(&(0..=MAX_MEMBERS as u32).collect()).is_err());
    }

    proptest! {
        /// A point is inside an axis-aligned rectangle exactly when its coordinates are within
        /// the rectangle's, whichever vertex the polygon starts at and whichever way it runs.
        #[test]
        fn rectangles_agree_with_their_bounds(
            s in -80.0..80.0f64, w in -170.0..170.0f64,
            h in 0.001..5.0f64, wd in 0.001..5.0f64,
            lat in -90.0..90.0f64, lon in -180.0..180.0f64,
            start in 0usize..4, reverse: bool,
        ) {
            let mut pts = vec![LatLon(s, w), LatLon(s, w + wd), LatLon(s + h, w + wd), LatLon(s + h, w)];
            pts.rotate_left(start);
            if reverse { pts.reverse(); }
            let within = lat >= s && lat <= s + h && lon >= w && lon <= w + wd;
            prop_assert_eq!(contains(&pts, lat, lon), within);
        }
    }
}
