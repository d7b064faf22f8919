//! The tables of [`Geofences`](crate::backend::geofence::Geofences) and the statements both
//! dialects run on them (as in `users.rs`: parameters `$1..$n`, each first used in that order,
//! so SQLite binds them as PostgreSQL does). Values always travel as parameters.
//!
//! - `client_groups`: a group, its members as a JSON array of client ids.
//! - `geofences`: a fence, its points as a JSON array of `[lat, lon]`, and its group (NULL: all
//!   clients). A group a fence is tied to is not deleted (checked in the deleting transaction;
//!   in PostgreSQL the insert holds a share lock on the group row and the delete an update
//!   lock, so of the two racing, the later one sees what the earlier did).
//! - `geofence_events`: keyed by (fence, client, frame), so storing an event twice (two
//!   backends watching one database) keeps one row; kept after the fence is deleted, with the
//!   fence's name, and pruned by the retention's age like fixes.
//! - An index on `fixes (received_ms, client, frame)` for the fence watcher's cursor; it
//!   replaces the index on `fixes (received_ms)`, its prefix.

use std::collections::BTreeSet;

use super::{bits_u64, corrupt, f64_col, i64_col, text_col, u32_col, u64_bits, Cols};
use crate::backend::geofence::{EventKind, GeofenceEvent, GeofenceRecord, GroupRecord, LatLon};
use crate::backend::StorageError;

pub(crate) const DESCRIPTION: &str = "client_groups, geofences, geofence_events";

/// Migration 3 for SQLite.
pub(crate) const SQLITE_MIGRATION: &str = "
    CREATE TABLE client_groups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        members TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE geofences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        group_id INTEGER,
        points TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX geofences_group ON geofences (group_id);
    CREATE TABLE geofence_events (
        fence INTEGER NOT NULL,
        client INTEGER NOT NULL,
        frame INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('enter', 'leave')),
        at_ms INTEGER NOT NULL,
        lat REAL NOT NULL,
        lon REAL NOT NULL,
        fence_name TEXT NOT NULL,
        PRIMARY KEY (fence, client, frame)
    );
    CREATE INDEX geofence_events_at ON geofence_events (at_ms);
    CREATE INDEX fixes_received_key ON fixes (received_ms, client, frame);
    DROP INDEX fixes_received;
";

/// Migration 3 for PostgreSQL: the same tables in its types.
pub(crate) const PG_MIGRATION: &str = "
    CREATE TABLE client_groups (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL,
        members TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE geofences (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL,
        group_id BIGINT,
        points TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE INDEX geofences_group ON geofences (group_id);
    CREATE TABLE geofence_events (
        fence BIGINT NOT NULL,
        client BIGINT NOT NULL,
        frame BIGINT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('enter', 'leave')),
        at_ms BIGINT NOT NULL,
        lat DOUBLE PRECISION NOT NULL,
        lon DOUBLE PRECISION NOT NULL,
        fence_name TEXT NOT NULL,
        PRIMARY KEY (fence, client, frame)
    );
    CREATE INDEX geofence_events_at ON geofence_events (at_ms);
    CREATE INDEX fixes_received_key ON fixes (received_ms, client, frame);
    DROP INDEX fixes_received;
";

pub(crate) const GROUPS: &str =
    "SELECT id, name, members, created_by, created_ms FROM client_groups ORDER BY id";
pub(crate) const INSERT_GROUP: &str =
    "INSERT INTO client_groups (name, members, created_by, created_ms)
     VALUES ($1, $2, $3, $4) RETURNING id";
pub(crate) const DELETE_GROUP: &str = "DELETE FROM client_groups WHERE id = $1";
pub(crate) const FENCES_OF_GROUP: &str = "SELECT id FROM geofences WHERE group_id = $1 ORDER BY id";
pub(crate) const FENCES: &str =
    "SELECT id, name, group_id, points, created_by, created_ms FROM geofences ORDER BY id";
/// SQLite: the write transaction holds the database's write lock already.
pub(crate) const GROUP_EXISTS: &str = "SELECT id FROM client_groups WHERE id = $1";
/// PostgreSQL: a share lock on the group row, so a delete of it waits for this transaction.
pub(crate) const PG_GROUP_EXISTS: &str = "SELECT id FROM client_groups WHERE id = $1 FOR SHARE";
/// PostgreSQL: the deleting transaction's lock on the group row (waits for share locks).
pub(crate) const PG_LOCK_GROUP: &str = "SELECT id FROM client_groups WHERE id = $1 FOR UPDATE";
pub(crate) const INSERT_FENCE: &str =
    "INSERT INTO geofences (name, group_id, points, created_by, created_ms)
     VALUES ($1, $2, $3, $4, $5) RETURNING id";
pub(crate) const DELETE_FENCE: &str = "DELETE FROM geofences WHERE id = $1";
pub(crate) const INSERT_EVENT: &str = "INSERT INTO geofence_events
        (fence, client, frame, kind, at_ms, lat, lon, fence_name)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (fence, client, frame) DO NOTHING";
/// The columns [`event`] reads.
macro_rules! event_cols {
    ($t:literal) => {
        concat!(
            $t,
            ".fence, ",
            $t,
            ".fence_name, ",
            $t,
            ".client, ",
            $t,
            ".frame, ",
            $t,
            ".kind, ",
            $t,
            ".at_ms, ",
            $t,
            ".lat, ",
            $t,
            ".lon"
        )
    };
}
pub(crate) const EVENTS: &str = concat!(
    "SELECT ",
    event_cols!("e"),
    " FROM geofence_events e WHERE e.at_ms BETWEEN $1 AND $2
     ORDER BY e.at_ms, e.fence, e.client, e.frame LIMIT $3"
);
pub(crate) const LAST_EVENTS: &str = concat!(
    "SELECT ",
    event_cols!("e"),
    " FROM geofence_events e
     JOIN (SELECT fence, client, MAX(frame) AS frame FROM geofence_events
           GROUP BY fence, client) m
       ON m.fence = e.fence AND m.client = e.client AND m.frame = e.frame
     JOIN geofences g ON g.id = e.fence
     ORDER BY e.fence, e.client"
);
pub(crate) const FIXES_AFTER: &str = concat!(
    "SELECT f.frame, ",
    super::fix_record_cols!("f"),
    " FROM fixes f WHERE (f.received_ms, f.client, f.frame)
         > (CAST($1 AS BIGINT), CAST($2 AS BIGINT), CAST($3 AS BIGINT))
     ORDER BY f.received_ms, f.client, f.frame LIMIT $4"
);
pub(crate) const PRUNE_EVENTS_AGE: &str = "DELETE FROM geofence_events WHERE at_ms < $1";

/// The `members` column of a group.
pub(crate) fn members_json(members: &BTreeSet<u32>) -> Result<String, StorageError> {
    serde_json::to_string(members)
        .map_err(|e| StorageError::Backend(format!("encode group members: {e}")))
}

/// The `points` column of a fence.
pub(crate) fn points_json(points: &[LatLon]) -> Result<String, StorageError> {
    serde_json::to_string(points)
        .map_err(|e| StorageError::Backend(format!("encode fence points: {e}")))
}

/// A new row's id from `RETURNING id`.
pub(crate) fn new_id(table: &'static str, id: i64) -> Result<u64, StorageError> {
    u64::try_from(id).map_err(|_| corrupt(table, format!("new id {id}")))
}

/// A group from [`GROUPS`].
pub(crate) fn group(r: &impl Cols) -> Result<GroupRecord, StorageError> {
    const T: &str = "client_groups";
    let id = i64_col(r, 0, T)?;
    let json = text_col(r, 2, T)?;
    let members: BTreeSet<u32> = serde_json::from_str(&json)
        .map_err(|e| corrupt(T, format!("group {id}: members {json:?}: {e}")))?;
    Ok(GroupRecord {
        id: new_id(T, id)?,
        name: text_col(r, 1, T)?,
        members,
        created_by: text_col(r, 3, T)?,
        created_ms: i64_col(r, 4, T)?,
    })
}

/// A fence from [`FENCES`].
pub(crate) fn fence(r: &impl Cols) -> Result<GeofenceRecord, StorageError> {
    const T: &str = "geofences";
    let id = i64_col(r, 0, T)?;
    let json = text_col(r, 3, T)?;
    let points: Vec<LatLon> =
        serde_json::from_str(&json).map_err(|e| corrupt(T, format!("fence {id}: points: {e}")))?;
    let group = match r.opt_i64(2)? {
        None => None,
        Some(g) => Some(new_id(T, g)?),
    };
    Ok(GeofenceRecord {
        id: new_id(T, id)?,
        name: text_col(r, 1, T)?,
        group,
        points,
        created_by: text_col(r, 4, T)?,
        created_ms: i64_col(r, 5, T)?,
    })
}

/// An event from [`event_cols`].
pub(crate) fn event(r: &impl Cols) -> Result<GeofenceEvent, StorageError> {
    const T: &str = "geofence_events";
    let kind = text_col(r, 4, T)?;
    Ok(GeofenceEvent {
        fence: new_id(T, i64_col(r, 0, T)?)?,
        fence_name: text_col(r, 1, T)?,
        client: u32_col(r, 2, T)?,
        frame: bits_u64(i64_col(r, 3, T)?),
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt(T, format!("kind {kind:?}")))?,
        at_ms: i64_col(r, 5, T)?,
        lat: f64_col(r, 6)?,
        lon: f64_col(r, 7)?,
    })
}

/// A fix row from [`FIXES_AFTER`].
pub(crate) fn fix_row(r: &impl Cols) -> Result<crate::backend::geofence::FixRow, StorageError> {
    let frame = bits_u64(i64_col(r, 0, "fixes")?);
    let fix =
        super::fix_record_at(r, 1)?.ok_or_else(|| corrupt("fixes", "row without a client"))?;
    Ok(crate::backend::geofence::FixRow { frame, fix })
}

/// The parameters of [`INSERT_EVENT`] but the kind and name: fence, client, frame.
pub(crate) fn event_keys(e: &GeofenceEvent) -> (i64, i64, i64) {
    (u64_bits(e.fence), i64::from(e.client), u64_bits(e.frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite binds `$1..$n` by first appearance: each statement must first use them in order.
    #[test]
    fn parameters_first_appear_in_order() {
        for sql in [
            GROUPS,
            INSERT_GROUP,
            DELETE_GROUP,
            FENCES_OF_GROUP,
            FENCES,
            GROUP_EXISTS,
            PG_GROUP_EXISTS,
            PG_LOCK_GROUP,
            INSERT_FENCE,
            DELETE_FENCE,
            INSERT_EVENT,
            EVENTS,
            LAST_EVENTS,
            FIXES_AFTER,
            PRUNE_EVENTS_AGE,
        ] {
            crate::backend::storage::assert_parameters_in_order(sql);
        }
    }
}
