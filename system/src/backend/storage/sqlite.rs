//! [`Storage`] on SQLite through `rusqlite` (bundled library): the embedded default.
//!
//! A file database runs in WAL mode with `synchronous = FULL`: the WAL is synced at every
//! commit, so a commit that returned survives a power loss, and a tier-2 sends STORED only
//! after one (with `NORMAL` a power loss could take back the last commits, frames whose
//! STORED had already released them from the camera's ring). The tier-2's writer commits in
//! batches (group commit), so the sync is paid per batch, not per frame; `livecam bench
//! capacity --database sqlite` measures what it costs. A busy timeout lets several processes
//! on one host write one file: readers never block, writers queue. Every write takes the write lock at `BEGIN` (`BEGIN IMMEDIATE`), so a
//! transaction never fails half-way for a lock another writer took after it began.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use super::geofence as fsql;
use super::{
    age_cutoff, client_row, clients_sql, command_cols, command_json, command_record, fix_params,
    fix_record_at, fix_record_cols, frame_meta, frame_meta_cols, frame_record, session_at,
    session_cols, state_params, too_new, u64_bits, users, Cols, FixParams, Migration,
};
use crate::backend::geofence::{
    FixCursor, FixRow, GeofenceEvent, GeofenceRecord, Geofences, GroupRecord, GroupRemoval,
    NewGeofence,
};
use crate::backend::users::{StoredUser, UserRecord, Users};
use crate::backend::{
    ClientRow, CommandRecord, CommandState, FixRecord, FrameMeta, FrameRecord, Inserted,
    LinkRecord, Pruned, Retention, SessionRecord, Storage, StorageError,
};
use crate::proto::wire::Command;

/// How long a writer waits for another's lock before it reports the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite schema, in order. Append; never edit a migration that has shipped.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "sessions, frames, fixes, link_stats, commands",
        sql: "
        CREATE TABLE sessions (
            client INTEGER PRIMARY KEY,
            tier2 INTEGER NOT NULL,
            tier2_addr TEXT NOT NULL,
            client_addr TEXT NOT NULL,
            started_ms INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL
        );
        -- The picture comes last, so that reading the index columns of a row never touches
        -- the overflow pages that hold it.
        CREATE TABLE frames (
            client INTEGER NOT NULL,
            frame INTEGER NOT NULL,
            tier2 INTEGER NOT NULL,
            capture_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,
            lat REAL,
            lon REAL,
            speed_mps REAL,
            heading_deg REAL,
            fix_time_ms INTEGER,
            segment_size INTEGER NOT NULL,
            jpeg_len INTEGER NOT NULL,
            jpeg BLOB NOT NULL,
            PRIMARY KEY (client, frame)
        );
        CREATE INDEX frames_client_received ON frames (client, received_ms, frame);
        CREATE INDEX frames_received ON frames (received_ms, client, frame, jpeg_len);
        CREATE TABLE fixes (
            client INTEGER NOT NULL,
            frame INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,
            lat REAL,
            lon REAL,
            speed_mps REAL,
            heading_deg REAL,
            fix_time_ms INTEGER NOT NULL,
            PRIMARY KEY (client, frame)
        );
        CREATE INDEX fixes_client_received ON fixes (client, received_ms, frame);
        CREATE INDEX fixes_received ON fixes (received_ms);
        CREATE TABLE link_stats (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            client INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            segment_size INTEGER NOT NULL,
            loss REAL,
            latency_ms REAL,
            frames_delivered INTEGER NOT NULL,
            frames_dropped INTEGER NOT NULL
        );
        CREATE INDEX link_stats_client_at ON link_stats (client, at_ms, id);
        CREATE INDEX link_stats_at ON link_stats (at_ms);
        -- AUTOINCREMENT: an id is never reused, so a late answer cannot finish a newer command.
        CREATE TABLE commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            client INTEGER NOT NULL,
            command TEXT NOT NULL,
            issued_by TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'acked', 'failed')),
            reason TEXT
        );
        CREATE INDEX commands_client ON commands (client, id);
    ",
    },
    Migration {
        version: 2,
        description: super::users::DESCRIPTION,
        sql: super::users::SQLITE_MIGRATION,
    },
    Migration {
        version: 3,
        description: super::geofence::DESCRIPTION,
        sql: super::geofence::SQLITE_MIGRATION,
    },
];

/// A SQLite database (file or memory) as [`Storage`].
pub struct SqliteStorage {
    conn: Connection,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Backend(format!("sqlite: {e}"))
    }
}

impl SqliteStorage {
    /// Opens (creating if missing) the database file at `path`, in WAL mode, and migrates it.
    pub fn open_file(path: &str) -> Result<Self, StorageError> {
        let at = |e: rusqlite::Error| StorageError::Backend(format!("sqlite {path}: {e}"));
        let conn = Connection::open(path).map_err(at)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(at)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(at)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Backend(format!(
                "sqlite {path}: cannot use WAL mode (journal_mode is {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(at)?;
        Self::migrated(conn, MIGRATIONS).map_err(|e| match e {
            StorageError::Backend(m) => StorageError::Backend(format!("{path}: {m}")),
            e => e,
        })
    }

    /// A new, private in-memory database.
    pub fn open_in_memory() -> Result<Self, StorageError> {
        Self::migrated(Connection::open_in_memory()?, MIGRATIONS)
    }

    /// Applies the migrations `conn` lacks, in one transaction that holds the write lock, so
    /// processes opening one new file at once migrate it once.
    fn migrated(mut conn: Connection, migrations: &[Migration]) -> Result<Self, StorageError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
            )",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?;
        if current > super::latest(migrations) {
            return Err(too_new(current, migrations));
        }
        for m in migrations.iter().filter(|m| m.version > current) {
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO schema_version (version, description) VALUES (?1, ?2)",
                params![m.version, m.description],
            )?;
            tracing::info!(version = m.version, "sqlite: applied schema migration");
        }
        tx.commit()?;
        Ok(SqliteStorage { conn })
    }

    /// Runs `f` in a transaction that holds the write lock from its start.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

impl Cols for rusqlite::Row<'_> {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StorageError> {
        Ok(self.get(i)?)
    }
    fn opt_f64(&self, i: usize) -> Result<Option<f64>, StorageError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError> {
        Ok(self.get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StorageError> {
        Ok(self.get(i)?)
    }
}

/// Runs a query and decodes every row with `f`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&rusqlite::Row<'_>) -> Result<T, StorageError>,
) -> Result<Vec<T>, StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

impl Storage for SqliteStorage {
    fn upsert_session(&mut self, s: &SessionRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO sessions
                    (client, tier2, tier2_addr, client_addr, started_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (client) DO UPDATE SET
                    tier2 = excluded.tier2, tier2_addr = excluded.tier2_addr,
                    client_addr = excluded.client_addr, started_ms = excluded.started_ms,
                    last_seen_ms = excluded.last_seen_ms
                 WHERE excluded.last_seen_ms >= sessions.last_seen_ms",
            )?
            .execute(params![
                s.client,
                s.tier2,
                s.tier2_addr.to_string(),
                s.client_addr.to_string(),
                s.started_ms,
                s.last_seen_ms
            ])?;
            Ok(())
        })
    }

    fn insert_frames(&mut self, frames: &[FrameRecord]) -> Result<Inserted, StorageError> {
        if frames.is_empty() {
            return Ok(Inserted::default());
        }
        self.write(|tx| {
            let mut same_stmt =
                tx.prepare_cached("SELECT jpeg = ?3 FROM frames WHERE client = ?1 AND frame = ?2")?;
            let mut out = Inserted::default();
            let mut frame_stmt = tx.prepare_cached(
                "INSERT INTO frames (client, frame, tier2, capture_ms, received_ms, lat, lon,
                    speed_mps, heading_deg, fix_time_ms, segment_size, jpeg_len, jpeg)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (client, frame) DO NOTHING",
            )?;
            let mut fix_stmt = tx.prepare_cached(
                "INSERT INTO fixes (client, frame, received_ms, lat, lon, speed_mps,
                    heading_deg, fix_time_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (client, frame) DO NOTHING",
            )?;
            for f in frames {
                let FixParams {
                    lat,
                    lon,
                    speed,
                    heading,
                    time,
                } = fix_params(f.fix.as_ref());
                let inserted = frame_stmt.execute(params![
                    f.client,
                    u64_bits(f.frame),
                    f.tier2,
                    f.capture_ms,
                    f.received_ms,
                    lat,
                    lon,
                    speed,
                    heading,
                    time,
                    f.segment_size,
                    jpeg_len(&f.jpeg)?,
                    f.jpeg
                ])?;
                if inserted == 0 {
                    let same: bool = same_stmt
                        .query_row(params![f.client, u64_bits(f.frame), f.jpeg], |r| r.get(0))?;
                    if !same {
                        out.conflicts.push((f.client, f.frame));
                    }
                } else if f.fix.is_some() {
                    fix_stmt.execute(params![
                        f.client,
                        u64_bits(f.frame),
                        f.received_ms,
                        lat,
                        lon,
                        speed,
                        heading,
                        time
                    ])?;
                }
            }
            Ok(out)
        })
    }

    fn insert_link(&mut self, l: &LinkRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO link_stats (client, at_ms, segment_size, loss, latency_ms,
                    frames_delivered, frames_dropped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                l.client,
                l.at_ms,
                l.segment_size,
                l.loss,
                l.latency_ms,
                u64_bits(l.frames_delivered),
                u64_bits(l.frames_dropped)
            ])?;
            Ok(())
        })
    }

    fn clients(&mut self) -> Result<Vec<ClientRow>, StorageError> {
        rows(&self.conn, clients_sql!(), [], |r| client_row(r))
    }

    fn session(&mut self, client: u32) -> Result<Option<SessionRecord>, StorageError> {
        let mut stmt = self.conn.prepare_cached(concat!(
            "SELECT ",
            session_cols!("s"),
            " FROM sessions s WHERE s.client = ?1"
        ))?;
        let mut rows = stmt.query(params![client])?;
        match rows.next()? {
            Some(r) => session_at(r, 0),
            None => Ok(None),
        }
    }

    fn track(
        &mut self,
        client: u32,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<FixRecord>, StorageError> {
        rows(
            &self.conn,
            concat!(
                "SELECT ",
                fix_record_cols!("f"),
                " FROM fixes f WHERE f.client = ?1 AND f.received_ms BETWEEN ?2 AND ?3
                 ORDER BY f.received_ms, f.frame LIMIT ?4"
            ),
            params![client, from_ms, to_ms, limit],
            |r| fix_record_at(r, 0)?.ok_or_else(|| super::corrupt("fixes", "row without a client")),
        )
    }

    fn frames(
        &mut self,
        client: u32,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<FrameMeta>, StorageError> {
        rows(
            &self.conn,
            concat!(
                "SELECT ",
                frame_meta_cols!(),
                " FROM frames WHERE client = ?1 AND received_ms BETWEEN ?2 AND ?3
                 ORDER BY received_ms, frame LIMIT ?4"
            ),
            params![client, from_ms, to_ms, limit],
            |r| frame_meta(r),
        )
    }

    fn frame(&mut self, client: u32, frame: u64) -> Result<Option<FrameRecord>, StorageError> {
        let mut found = rows(
            &self.conn,
            concat!(
                "SELECT ",
                frame_meta_cols!(),
                ", jpeg FROM frames WHERE client = ?1 AND frame = ?2"
            ),
            params![client, u64_bits(frame)],
            |r| frame_record(r),
        )?;
        Ok(found.pop())
    }

    fn latest_frame(&mut self, client: u32) -> Result<Option<FrameRecord>, StorageError> {
        let mut found = rows(
            &self.conn,
            concat!(
                "SELECT ",
                frame_meta_cols!(),
                ", jpeg FROM frames WHERE client = ?1
                 ORDER BY received_ms DESC, frame DESC LIMIT 1"
            ),
            params![client],
            |r| frame_record(r),
        )?;
        Ok(found.pop())
    }

    fn insert_command(
        &mut self,
        client: u32,
        command: Command,
        issued_by: &str,
        now_ms: i64,
    ) -> Result<CommandRecord, StorageError> {
        let json = command_json(&command)?;
        let id: i64 = self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "INSERT INTO commands
                        (client, command, issued_by, created_ms, updated_ms, state)
                     VALUES (?1, ?2, ?3, ?4, ?4, 'pending') RETURNING id",
                )?
                .query_row(params![client, json, issued_by, now_ms], |r| r.get(0))?)
        })?;
        super::new_pending_command(id, client, command, issued_by, now_ms)
    }

    fn finish_command(
        &mut self,
        id: u64,
        state: &CommandState,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let (state, reason) = state_params(state);
        // An id beyond i64 was never issued: nothing to finish.
        let (Ok(id), false) = (i64::try_from(id), state == "pending") else {
            return Ok(());
        };
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE commands SET state = ?2, reason = ?3, updated_ms = ?4
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, state, reason, now_ms])?;
            Ok(())
        })
    }

    fn command(&mut self, id: u64) -> Result<Option<CommandRecord>, StorageError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let mut found = rows(
            &self.conn,
            concat!("SELECT ", command_cols!(), " FROM commands WHERE id = ?1"),
            params![id],
            |r| command_record(r),
        )?;
        Ok(found.pop())
    }

    fn commands(&mut self, client: u32, limit: u32) -> Result<Vec<CommandRecord>, StorageError> {
        rows(
            &self.conn,
            concat!(
                "SELECT ",
                command_cols!(),
                " FROM commands WHERE client = ?1 ORDER BY id DESC LIMIT ?2"
            ),
            params![client, limit],
            |r| command_record(r),
        )
    }

    fn apply_retention(&mut self, r: &Retention, now_ms: i64) -> Result<Pruned, StorageError> {
        self.write(|tx| {
            let mut pruned = Pruned::default();
            if let Some(age) = r.max_age_s {
                let cutoff = age_cutoff(now_ms, age);
                pruned.frames += tx
                    .prepare_cached("DELETE FROM frames WHERE received_ms < ?1")?
                    .execute(params![cutoff])? as u64;
                pruned.fixes += tx
                    .prepare_cached("DELETE FROM fixes WHERE received_ms < ?1")?
                    .execute(params![cutoff])? as u64;
                pruned.links += tx
                    .prepare_cached("DELETE FROM link_stats WHERE at_ms < ?1")?
                    .execute(params![cutoff])? as u64;
                pruned.geofence_events += tx
                    .prepare_cached(fsql::PRUNE_EVENTS_AGE)?
                    .execute(params![cutoff])? as u64;
            }
            if let Some(max) = r.max_frame_bytes {
                let max = i64::try_from(max).unwrap_or(i64::MAX);
                // Newest first, a running total of sizes: what lies beyond the budget goes.
                pruned.frames += tx
                    .prepare_cached(
                        "DELETE FROM frames WHERE (client, frame) IN (
                            SELECT client, frame FROM (
                                SELECT client, frame, SUM(jpeg_len) OVER (
                                    ORDER BY received_ms DESC, client DESC, frame DESC
                                ) AS total
                                FROM frames
                            ) WHERE total > ?1
                        )",
                    )?
                    .execute(params![max])? as u64;
            }
            Ok(pruned)
        })
    }
}

impl Users for SqliteStorage {
    fn add_user(
        &mut self,
        user: &UserRecord,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let (role, clients) = users::user_params(user)?;
        self.write(|tx| {
            let added = tx.prepare_cached(users::ADD_USER)?.execute(params![
                user.name,
                password_hash,
                role,
                clients,
                now_ms
            ])?;
            Ok(added == 1)
        })
    }

    fn user(&mut self, name: &str) -> Result<Option<StoredUser>, StorageError> {
        let mut found = rows(&self.conn, users::USER, params![name], |r| {
            users::stored_user(r)
        })?;
        Ok(found.pop())
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StorageError> {
        rows(&self.conn, users::USERS, [], |r| users::user_record(r))
    }

    fn set_password(&mut self, name: &str, password_hash: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(users::SET_PASSWORD)?
                .execute(params![password_hash, name])?;
            tx.prepare_cached(users::DELETE_USER_LOGINS)?
                .execute(params![name])?;
            Ok(n == 1)
        })
    }

    fn remove_user(&mut self, name: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(users::REMOVE_USER)?
                .execute(params![name])?;
            tx.prepare_cached(users::DELETE_USER_LOGINS)?
                .execute(params![name])?;
            Ok(n == 1)
        })
    }

    fn insert_login(
        &mut self,
        token_hash: &[u8],
        name: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(users::PRUNE_LOGINS)?
                .execute(params![now_ms])?;
            tx.prepare_cached(users::INSERT_LOGIN)?
                .execute(params![token_hash, name, now_ms, expires_ms])?;
            Ok(())
        })
    }

    fn login_user(
        &mut self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<UserRecord>, StorageError> {
        let mut found = rows(
            &self.conn,
            users::LOGIN_USER,
            params![token_hash, now_ms],
            |r| users::user_record(r),
        )?;
        Ok(found.pop())
    }

    fn delete_login(&mut self, token_hash: &[u8]) -> Result<bool, StorageError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached(users::DELETE_LOGIN)?
                .execute(params![token_hash])?
                == 1)
        })
    }
}

impl Geofences for SqliteStorage {
    fn groups(&mut self) -> Result<Vec<GroupRecord>, StorageError> {
        rows(&self.conn, fsql::GROUPS, [], |r| fsql::group(r))
    }

    fn insert_group(
        &mut self,
        name: &str,
        members: &BTreeSet<u32>,
        created_by: &str,
        now_ms: i64,
    ) -> Result<GroupRecord, StorageError> {
        let json = fsql::members_json(members)?;
        let id: i64 = self.write(|tx| {
            Ok(tx
                .prepare_cached(fsql::INSERT_GROUP)?
                .query_row(params![name, json, created_by, now_ms], |r| r.get(0))?)
        })?;
        Ok(GroupRecord {
            id: fsql::new_id("client_groups", id)?,
            name: name.to_string(),
            members: members.clone(),
            created_by: created_by.to_string(),
            created_ms: now_ms,
        })
    }

    fn delete_group(&mut self, id: u64) -> Result<GroupRemoval, StorageError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(GroupRemoval::NotFound);
        };
        self.write(|tx| {
            let users: Vec<i64> = tx
                .prepare_cached(fsql::FENCES_OF_GROUP)?
                .query_map(params![id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !users.is_empty() {
                return Ok(GroupRemoval::InUse(
                    users.into_iter().map(|f| f as u64).collect(),
                ));
            }
            let n = tx
                .prepare_cached(fsql::DELETE_GROUP)?
                .execute(params![id])?;
            Ok(if n == 1 {
                GroupRemoval::Deleted
            } else {
                GroupRemoval::NotFound
            })
        })
    }

    fn geofences(&mut self) -> Result<Vec<GeofenceRecord>, StorageError> {
        rows(&self.conn, fsql::FENCES, [], |r| fsql::fence(r))
    }

    fn insert_geofence(
        &mut self,
        fence: &NewGeofence,
        created_by: &str,
        now_ms: i64,
    ) -> Result<Option<GeofenceRecord>, StorageError> {
        let json = fsql::points_json(&fence.points)?;
        let group = match fence.group.map(i64::try_from) {
            None => None,
            Some(Ok(g)) => Some(g),
            Some(Err(_)) => return Ok(None),
        };
        let id: Option<i64> = self.write(|tx| {
            if let Some(g) = group {
                let found = tx
                    .prepare_cached(fsql::GROUP_EXISTS)?
                    .query_map(params![g], |r| r.get::<_, i64>(0))?
                    .next()
                    .transpose()?;
                if found.is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(tx.prepare_cached(fsql::INSERT_FENCE)?.query_row(
                params![fence.name, group, json, created_by, now_ms],
                |r| r.get(0),
            )?))
        })?;
        id.map(|id| {
            Ok(GeofenceRecord {
                id: fsql::new_id("geofences", id)?,
                name: fence.name.clone(),
                group: fence.group,
                points: fence.points.clone(),
                created_by: created_by.to_string(),
                created_ms: now_ms,
            })
        })
        .transpose()
    }

    fn delete_geofence(&mut self, id: u64) -> Result<bool, StorageError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.write(|tx| {
            Ok(tx
                .prepare_cached(fsql::DELETE_FENCE)?
                .execute(params![id])?
                == 1)
        })
    }

    fn insert_geofence_events(&mut self, events: &[GeofenceEvent]) -> Result<(), StorageError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(fsql::INSERT_EVENT)?;
            for e in events {
                let (fence, client, frame) = fsql::event_keys(e);
                stmt.execute(params![
                    fence,
                    client,
                    frame,
                    e.kind.as_str(),
                    e.at_ms,
                    e.lat,
                    e.lon,
                    e.fence_name
                ])?;
            }
            Ok(())
        })
    }

    fn geofence_events(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<GeofenceEvent>, StorageError> {
        rows(
            &self.conn,
            fsql::EVENTS,
            params![from_ms, to_ms, limit],
            |r| fsql::event(r),
        )
    }

    fn last_geofence_events(&mut self) -> Result<Vec<GeofenceEvent>, StorageError> {
        rows(&self.conn, fsql::LAST_EVENTS, [], |r| fsql::event(r))
    }

    fn fixes_after(&mut self, after: FixCursor, limit: u32) -> Result<Vec<FixRow>, StorageError> {
        rows(
            &self.conn,
            fsql::FIXES_AFTER,
            params![after.received_ms, after.client, after.frame_bits, limit],
            |r| fsql::fix_row(r),
        )
    }
}

/// A picture's length as stored; pictures are far below 4 GiB (the protocol's frames are).
fn jpeg_len(jpeg: &[u8]) -> Result<u32, StorageError> {
    u32::try_from(jpeg.len())
        .map_err(|_| StorageError::Backend(format!("frame of {} bytes", jpeg.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::storage::{open, suite};

    /// A new database file in a directory of its own.
    fn fresh() -> suite::Fresh {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("livecam.db");
        let url = format!("sqlite:{}", path.display());
        let db = open(&url).expect("open");
        let p1 = path.clone();
        suite::Fresh {
            db,
            url,
            set_version: Box::new(move |v| {
                Connection::open(&p1)
                    .unwrap()
                    .execute(
                        "INSERT INTO schema_version (version, description) VALUES (?1, 'test')",
                        params![v],
                    )
                    .unwrap();
            }),
            versions: Box::new(move || {
                let conn = Connection::open(&path).unwrap();
                let mut stmt = conn
                    .prepare("SELECT version FROM schema_version ORDER BY version")
                    .unwrap();
                let v = stmt
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<Vec<i64>, _>>()
                    .unwrap();
                v
            }),
            _guard: Box::new(dir),
        }
    }

    crate::backend::storage::suite::suite_tests!(|| Some(fresh()));

    #[test]
    fn memory_databases_are_private_and_migrated() {
        let mut a = open("sqlite::memory:").unwrap();
        let mut b = open("sqlite::memory:").unwrap();
        a.insert_link(&suite::link(7, 1_000)).unwrap();
        assert!(
            a.clients().unwrap().is_empty(),
            "a link alone makes no client"
        );
        a.upsert_session(&suite::session(7, 1)).unwrap();
        assert_eq!(a.clients().unwrap().len(), 1);
        assert!(b.clients().unwrap().is_empty());
    }

    #[test]
    fn file_databases_use_wal_and_sync_every_commit() {
        let f = fresh();
        let s = SqliteStorage::open_file(f.url.trim_start_matches("sqlite:")).unwrap();
        let mode: String = s
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 = FULL: a commit that returned survives a power loss (STORED follows it).
        let sync: i64 = s
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let url = format!("sqlite:{}", path.display());
        match open(&url) {
            Err(StorageError::Backend(m)) => {
                assert!(m.contains("garbage.db"), "{m}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened garbage"),
        }
    }

    #[test]
    fn a_path_in_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}/no/such/dir/l.db", dir.path().display());
        assert!(matches!(open(&url), Err(StorageError::Backend(_))));
    }

    /// The fleet view's query probes indexes; it never scans the big tables.
    #[test]
    fn clients_query_uses_indexes_only() {
        let s = SqliteStorage::open_in_memory().unwrap();
        let mut stmt = s
            .conn()
            .prepare(concat!("EXPLAIN QUERY PLAN ", clients_sql!()))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let text = plan.join("\n");
        for table in ["fixes", "frames", "link_stats"] {
            for line in &plan {
                let scans = line.starts_with(&format!("SCAN {table}"))
                    || line.contains(&format!("SCAN {table} "));
                assert!(!scans, "full scan of {table}:\n{text}");
            }
        }
        assert!(text.contains("fixes_client_received"), "{text}");
        assert!(text.contains("frames_client_received"), "{text}");
        assert!(text.contains("link_stats_client_at"), "{text}");
    }

    /// Two connections to one file, each on its own thread, writing at the same time: every
    /// write lands, none fails busy.
    #[test]
    fn two_connections_write_one_file_concurrently() {
        let f = fresh();
        let url = f.url.clone();
        let writers: Vec<_> = (0..2u32)
            .map(|w| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut db = open(&url).expect("open");
                    let client = 100 + w;
                    db.upsert_session(&suite::session(client, w)).unwrap();
                    for i in 0..200u32 {
                        let mut fr = suite::frame(client, i, 1_000 + i64::from(i));
                        fr.jpeg = vec![w as u8; 100];
                        db.insert_frames(&[fr]).unwrap();
                        db.insert_link(&suite::link(client, 1_000 + i64::from(i)))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        let mut db = f.reopen().unwrap();
        let clients = db.clients().unwrap();
        assert_eq!(
            clients.iter().map(|c| c.client).collect::<Vec<_>>(),
            vec![100, 101]
        );
        for c in clients {
            assert_eq!(c.last_frame, Some(199));
            assert_eq!(db.track(c.client, 0, i64::MAX, 1000).unwrap().len(), 200);
            assert_eq!(db.frames(c.client, 0, i64::MAX, 1000).unwrap().len(), 200);
        }
    }
}
