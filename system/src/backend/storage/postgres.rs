//! [`Storage`] on PostgreSQL through the synchronous `postgres` crate: for deployments where
//! tier-2s on several hosts write one database.
//!
//! The client runs its own small tokio runtime inside, so it is called from a plain thread or
//! from tokio's blocking pool (`spawn_blocking`), never from async code directly. Statements
//! are prepared once per connection and kept. Schema migrations run under a transaction-level
//! advisory lock, so servers starting together migrate a new database once.

use std::collections::{BTreeSet, HashMap};
use std::error::Error as _;
use std::str::FromStr;
use std::time::Duration;

use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Statement, Transaction};

use super::geofence as fsql;
use super::{
    age_cutoff, client_row, clients_sql, command_cols, command_json, command_record, fix_params,
    fix_record_at, fix_record_cols, frame_meta, frame_meta_cols, frame_record, session_at,
    session_cols, state_params, too_new, u64_bits, url_error, users, Cols, FixParams, Migration,
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

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The key of the advisory lock migrations hold (any constant; "livecam" in ASCII).
const MIGRATION_LOCK: i64 = 0x006c_6976_6563_616d;

/// The PostgreSQL schema, in order. Append; never edit a migration that has shipped. The same
/// tables and columns as SQLite's, in PostgreSQL's types.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "sessions, frames, fixes, link_stats, commands",
        sql: "
        CREATE TABLE sessions (
            client BIGINT PRIMARY KEY,
            tier2 BIGINT NOT NULL,
            tier2_addr TEXT NOT NULL,
            client_addr TEXT NOT NULL,
            started_ms BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL
        );
        CREATE TABLE frames (
            client BIGINT NOT NULL,
            frame BIGINT NOT NULL,
            tier2 BIGINT NOT NULL,
            capture_ms BIGINT NOT NULL,
            received_ms BIGINT NOT NULL,
            lat DOUBLE PRECISION,
            lon DOUBLE PRECISION,
            speed_mps DOUBLE PRECISION,
            heading_deg DOUBLE PRECISION,
            fix_time_ms BIGINT,
            segment_size BIGINT NOT NULL,
            jpeg_len BIGINT NOT NULL,
            jpeg BYTEA NOT NULL,
            PRIMARY KEY (client, frame)
        );
        -- Pictures are already compressed.
        ALTER TABLE frames ALTER COLUMN jpeg SET STORAGE EXTERNAL;
        CREATE INDEX frames_client_received ON frames (client, received_ms, frame);
        CREATE INDEX frames_received ON frames (received_ms, client, frame, jpeg_len);
        CREATE TABLE fixes (
            client BIGINT NOT NULL,
            frame BIGINT NOT NULL,
            received_ms BIGINT NOT NULL,
            lat DOUBLE PRECISION,
            lon DOUBLE PRECISION,
            speed_mps DOUBLE PRECISION,
            heading_deg DOUBLE PRECISION,
            fix_time_ms BIGINT NOT NULL,
            PRIMARY KEY (client, frame)
        );
        CREATE INDEX fixes_client_received ON fixes (client, received_ms, frame);
        CREATE INDEX fixes_received ON fixes (received_ms);
        CREATE TABLE link_stats (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            client BIGINT NOT NULL,
            at_ms BIGINT NOT NULL,
            segment_size BIGINT NOT NULL,
            loss DOUBLE PRECISION,
            latency_ms DOUBLE PRECISION,
            frames_delivered BIGINT NOT NULL,
            frames_dropped BIGINT NOT NULL
        );
        CREATE INDEX link_stats_client_at ON link_stats (client, at_ms, id);
        CREATE INDEX link_stats_at ON link_stats (at_ms);
        CREATE TABLE commands (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            client BIGINT NOT NULL,
            command TEXT NOT NULL,
            issued_by TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'acked', 'failed')),
            reason TEXT
        );
        CREATE INDEX commands_client ON commands (client, id);
    ",
    },
    Migration {
        version: 2,
        description: super::users::DESCRIPTION,
        sql: super::users::PG_MIGRATION,
    },
    Migration {
        version: 3,
        description: super::geofence::DESCRIPTION,
        sql: super::geofence::PG_MIGRATION,
    },
];

/// The statements of [`Storage`], by name; prepared on first use.
mod sql {
    use super::*;

    pub const UPSERT_SESSION: &str = "INSERT INTO sessions
            (client, tier2, tier2_addr, client_addr, started_ms, last_seen_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (client) DO UPDATE SET
            tier2 = excluded.tier2, tier2_addr = excluded.tier2_addr,
            client_addr = excluded.client_addr, started_ms = excluded.started_ms,
            last_seen_ms = excluded.last_seen_ms
         WHERE excluded.last_seen_ms >= sessions.last_seen_ms";
    pub const INSERT_FRAME: &str = "INSERT INTO frames (client, frame, tier2, capture_ms,
            received_ms, lat, lon, speed_mps, heading_deg, fix_time_ms, segment_size, jpeg_len,
            jpeg)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (client, frame) DO NOTHING";
    pub const SAME_FRAME: &str = "SELECT jpeg = $3 FROM frames WHERE client = $1 AND frame = $2";
    pub const INSERT_FIX: &str = "INSERT INTO fixes (client, frame, received_ms, lat, lon,
            speed_mps, heading_deg, fix_time_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (client, frame) DO NOTHING";
    pub const INSERT_LINK: &str = "INSERT INTO link_stats (client, at_ms, segment_size, loss,
            latency_ms, frames_delivered, frames_dropped)
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
    pub const CLIENTS: &str = clients_sql!();
    pub const SESSION: &str = concat!(
        "SELECT ",
        session_cols!("s"),
        " FROM sessions s WHERE s.client = $1"
    );
    pub const TRACK: &str = concat!(
        "SELECT ",
        fix_record_cols!("f"),
        " FROM fixes f WHERE f.client = $1 AND f.received_ms BETWEEN $2 AND $3
         ORDER BY f.received_ms, f.frame LIMIT $4"
    );
    pub const FRAMES: &str = concat!(
        "SELECT ",
        frame_meta_cols!(),
        " FROM frames WHERE client = $1 AND received_ms BETWEEN $2 AND $3
         ORDER BY received_ms, frame LIMIT $4"
    );
    pub const FRAME: &str = concat!(
        "SELECT ",
        frame_meta_cols!(),
        ", jpeg FROM frames WHERE client = $1 AND frame = $2"
    );
    pub const LATEST_FRAME: &str = concat!(
        "SELECT ",
        frame_meta_cols!(),
        ", jpeg FROM frames WHERE client = $1 ORDER BY received_ms DESC, frame DESC LIMIT 1"
    );
    pub const INSERT_COMMAND: &str = "INSERT INTO commands
            (client, command, issued_by, created_ms, updated_ms, state)
         VALUES ($1, $2, $3, $4, $4, 'pending') RETURNING id";
    pub const FINISH_COMMAND: &str = "UPDATE commands SET state = $2, reason = $3, updated_ms = $4
         WHERE id = $1 AND state = 'pending'";
    pub const COMMAND: &str = concat!("SELECT ", command_cols!(), " FROM commands WHERE id = $1");
    pub const COMMANDS: &str = concat!(
        "SELECT ",
        command_cols!(),
        " FROM commands WHERE client = $1 ORDER BY id DESC LIMIT $2"
    );
    pub const PRUNE_FRAMES_AGE: &str = "DELETE FROM frames WHERE received_ms < $1";
    pub const PRUNE_FIXES_AGE: &str = "DELETE FROM fixes WHERE received_ms < $1";
    pub const PRUNE_LINKS_AGE: &str = "DELETE FROM link_stats WHERE at_ms < $1";
    /// Newest first, a running total of sizes: what lies beyond the budget goes.
    pub const PRUNE_FRAMES_SIZE: &str = "DELETE FROM frames WHERE (client, frame) IN (
            SELECT client, frame FROM (
                SELECT client, frame, SUM(jpeg_len) OVER (
                    ORDER BY received_ms DESC, client DESC, frame DESC
                ) AS total
                FROM frames
            ) AS running WHERE total > $1::BIGINT
        )";
}

/// A PostgreSQL database as [`Storage`].
pub struct PgStorage {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

/// The error and its causes, one line (the driver's own text is only "db error").
fn describe(e: &::postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<::postgres::Error> for StorageError {
    fn from(e: ::postgres::Error) -> Self {
        StorageError::Backend(format!("postgres: {}", describe(&e)))
    }
}

impl PgStorage {
    /// Connects to the server `url` names (libpq URL syntax) and migrates its schema.
    pub fn connect(url: &str) -> Result<Self, StorageError> {
        let mut config = Config::from_str(url).map_err(|e| url_error(url, describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("livecam");
        }
        let client = config.connect(NoTls).map_err(|e| {
            StorageError::Backend(format!("postgres {}: {}", super::redact(url), describe(&e)))
        })?;
        let mut s = PgStorage {
            client,
            statements: HashMap::new(),
        };
        s.migrate(MIGRATIONS)?;
        Ok(s)
    }

    fn migrate(&mut self, migrations: &[Migration]) -> Result<(), StorageError> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
            .try_get(0)?;
        if current > super::latest(migrations) {
            return Err(too_new(current, migrations));
        }
        for m in migrations.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql)?;
            tx.execute(
                "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                &[&m.version, &m.description],
            )?;
            tracing::info!(version = m.version, "postgres: applied schema migration");
        }
        tx.commit()?;
        Ok(())
    }

    /// The prepared statement for `sql`.
    fn stmt(&mut self, sql: &'static str) -> Result<Statement, StorageError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs a query and decodes every row with `f`.
    fn rows<T>(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let stmt = self.stmt(sql)?;
        self.client.query(&stmt, params)?.iter().map(f).collect()
    }

    /// Runs `f` in a transaction, with the statements prepared first.
    fn write<T, const N: usize>(
        &mut self,
        sqls: [&'static str; N],
        f: impl FnOnce(&mut Transaction<'_>, [Statement; N]) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut stmts = Vec::with_capacity(N);
        for s in sqls {
            stmts.push(self.stmt(s)?);
        }
        let stmts: [Statement; N] = stmts
            .try_into()
            .map_err(|_| StorageError::Backend("statement count".into()))?;
        let mut tx = self.client.transaction()?;
        let out = f(&mut tx, stmts)?;
        tx.commit()?;
        Ok(out)
    }
}

impl Cols for Row {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StorageError> {
        Ok(self.try_get(i)?)
    }
    fn opt_f64(&self, i: usize) -> Result<Option<f64>, StorageError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError> {
        Ok(self.try_get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StorageError> {
        Ok(self.try_get(i)?)
    }
}

impl Storage for PgStorage {
    fn upsert_session(&mut self, s: &SessionRecord) -> Result<(), StorageError> {
        let (client, tier2) = (i64::from(s.client), i64::from(s.tier2));
        let (t2, ca) = (s.tier2_addr.to_string(), s.client_addr.to_string());
        self.write([sql::UPSERT_SESSION], |tx, [st]| {
            tx.execute(
                &st,
                &[&client, &tier2, &t2, &ca, &s.started_ms, &s.last_seen_ms],
            )?;
            Ok(())
        })
    }

    fn insert_frames(&mut self, frames: &[FrameRecord]) -> Result<Inserted, StorageError> {
        if frames.is_empty() {
            return Ok(Inserted::default());
        }
        let sqls = [sql::INSERT_FRAME, sql::INSERT_FIX, sql::SAME_FRAME];
        self.write(sqls, |tx, [fr, fx, same]| {
            let mut out = Inserted::default();
            for f in frames {
                let FixParams {
                    lat,
                    lon,
                    speed,
                    heading,
                    time,
                } = fix_params(f.fix.as_ref());
                let (client, frame) = (i64::from(f.client), u64_bits(f.frame));
                let len = i64::try_from(f.jpeg.len())
                    .ok()
                    .filter(|&n| n <= i64::from(u32::MAX))
                    .ok_or_else(|| {
                        StorageError::Backend(format!("frame of {} bytes", f.jpeg.len()))
                    })?;
                let inserted = tx.execute(
                    &fr,
                    &[
                        &client,
                        &frame,
                        &i64::from(f.tier2),
                        &f.capture_ms,
                        &f.received_ms,
                        &lat,
                        &lon,
                        &speed,
                        &heading,
                        &time,
                        &i64::from(f.segment_size),
                        &len,
                        &f.jpeg,
                    ],
                )?;
                if inserted == 0 {
                    // No row: retention removed it meanwhile; nothing to conflict with.
                    let row = tx.query_opt(&same, &[&client, &frame, &f.jpeg])?;
                    if row.map(|r| r.try_get::<_, bool>(0)).transpose()? == Some(false) {
                        out.conflicts.push((f.client, f.frame));
                    }
                } else if f.fix.is_some() {
                    tx.execute(
                        &fx,
                        &[
                            &client,
                            &frame,
                            &f.received_ms,
                            &lat,
                            &lon,
                            &speed,
                            &heading,
                            &time,
                        ],
                    )?;
                }
            }
            Ok(out)
        })
    }

    fn insert_link(&mut self, l: &LinkRecord) -> Result<(), StorageError> {
        self.write([sql::INSERT_LINK], |tx, [st]| {
            tx.execute(
                &st,
                &[
                    &i64::from(l.client),
                    &l.at_ms,
                    &i64::from(l.segment_size),
                    &l.loss,
                    &l.latency_ms,
                    &u64_bits(l.frames_delivered),
                    &u64_bits(l.frames_dropped),
                ],
            )?;
            Ok(())
        })
    }

    fn clients(&mut self) -> Result<Vec<ClientRow>, StorageError> {
        self.rows(sql::CLIENTS, &[], client_row)
    }

    fn session(&mut self, client: u32) -> Result<Option<SessionRecord>, StorageError> {
        let found = self.rows(sql::SESSION, &[&i64::from(client)], |r| session_at(r, 0))?;
        Ok(found.into_iter().next().flatten())
    }

    fn track(
        &mut self,
        client: u32,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<FixRecord>, StorageError> {
        self.rows(
            sql::TRACK,
            &[&i64::from(client), &from_ms, &to_ms, &i64::from(limit)],
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
        self.rows(
            sql::FRAMES,
            &[&i64::from(client), &from_ms, &to_ms, &i64::from(limit)],
            frame_meta,
        )
    }

    fn frame(&mut self, client: u32, frame: u64) -> Result<Option<FrameRecord>, StorageError> {
        let mut found = self.rows(
            sql::FRAME,
            &[&i64::from(client), &u64_bits(frame)],
            frame_record,
        )?;
        Ok(found.pop())
    }

    fn latest_frame(&mut self, client: u32) -> Result<Option<FrameRecord>, StorageError> {
        let mut found = self.rows(sql::LATEST_FRAME, &[&i64::from(client)], frame_record)?;
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
        let id: i64 = self.write([sql::INSERT_COMMAND], |tx, [st]| {
            Ok(tx
                .query_one(&st, &[&i64::from(client), &json, &issued_by, &now_ms])?
                .try_get(0)?)
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
        self.write([sql::FINISH_COMMAND], |tx, [st]| {
            tx.execute(&st, &[&id, &state, &reason, &now_ms])?;
            Ok(())
        })
    }

    fn command(&mut self, id: u64) -> Result<Option<CommandRecord>, StorageError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let mut found = self.rows(sql::COMMAND, &[&id], command_record)?;
        Ok(found.pop())
    }

    fn commands(&mut self, client: u32, limit: u32) -> Result<Vec<CommandRecord>, StorageError> {
        self.rows(
            sql::COMMANDS,
            &[&i64::from(client), &i64::from(limit)],
            command_record,
        )
    }

    fn apply_retention(&mut self, r: &Retention, now_ms: i64) -> Result<Pruned, StorageError> {
        let cutoff = r.max_age_s.map(|age| age_cutoff(now_ms, age));
        let max_bytes = r
            .max_frame_bytes
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        self.write(
            [
                sql::PRUNE_FRAMES_AGE,
                sql::PRUNE_FIXES_AGE,
                sql::PRUNE_LINKS_AGE,
                sql::PRUNE_FRAMES_SIZE,
                fsql::PRUNE_EVENTS_AGE,
            ],
            |tx, [frames, fixes, links, size, events]| {
                let mut pruned = Pruned::default();
                if let Some(cutoff) = cutoff {
                    pruned.frames += tx.execute(&frames, &[&cutoff])?;
                    pruned.fixes += tx.execute(&fixes, &[&cutoff])?;
                    pruned.links += tx.execute(&links, &[&cutoff])?;
                    pruned.geofence_events += tx.execute(&events, &[&cutoff])?;
                }
                if let Some(max) = max_bytes {
                    pruned.frames += tx.execute(&size, &[&max])?;
                }
                Ok(pruned)
            },
        )
    }
}

impl Users for PgStorage {
    fn add_user(
        &mut self,
        user: &UserRecord,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let (role, clients) = users::user_params(user)?;
        self.write([users::ADD_USER], |tx, [st]| {
            let added = tx.execute(&st, &[&user.name, &password_hash, &role, &clients, &now_ms])?;
            Ok(added == 1)
        })
    }

    fn user(&mut self, name: &str) -> Result<Option<StoredUser>, StorageError> {
        let mut found = self.rows(users::USER, &[&name], users::stored_user)?;
        Ok(found.pop())
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StorageError> {
        self.rows(users::USERS, &[], users::user_record)
    }

    fn set_password(&mut self, name: &str, password_hash: &str) -> Result<bool, StorageError> {
        self.write(
            [users::SET_PASSWORD, users::DELETE_USER_LOGINS],
            |tx, [set, logins]| {
                let n = tx.execute(&set, &[&password_hash, &name])?;
                tx.execute(&logins, &[&name])?;
                Ok(n == 1)
            },
        )
    }

    fn remove_user(&mut self, name: &str) -> Result<bool, StorageError> {
        self.write(
            [users::REMOVE_USER, users::DELETE_USER_LOGINS],
            |tx, [remove, logins]| {
                let n = tx.execute(&remove, &[&name])?;
                tx.execute(&logins, &[&name])?;
                Ok(n == 1)
            },
        )
    }

    fn insert_login(
        &mut self,
        token_hash: &[u8],
        name: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StorageError> {
        self.write(
            [users::PRUNE_LOGINS, users::INSERT_LOGIN],
            |tx, [prune, insert]| {
                tx.execute(&prune, &[&now_ms])?;
                tx.execute(&insert, &[&token_hash, &name, &now_ms, &expires_ms])?;
                Ok(())
            },
        )
    }

    fn login_user(
        &mut self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<UserRecord>, StorageError> {
        let mut found = self.rows(
            users::LOGIN_USER,
            &[&token_hash, &now_ms],
            users::user_record,
        )?;
        Ok(found.pop())
    }

    fn delete_login(&mut self, token_hash: &[u8]) -> Result<bool, StorageError> {
        self.write([users::DELETE_LOGIN], |tx, [st]| {
            Ok(tx.execute(&st, &[&token_hash])? == 1)
        })
    }
}

impl Geofences for PgStorage {
    fn groups(&mut self) -> Result<Vec<GroupRecord>, StorageError> {
        self.rows(fsql::GROUPS, &[], fsql::group)
    }

    fn insert_group(
        &mut self,
        name: &str,
        members: &BTreeSet<u32>,
        created_by: &str,
        now_ms: i64,
    ) -> Result<GroupRecord, StorageError> {
        let json = fsql::members_json(members)?;
        let id: i64 = self.write([fsql::INSERT_GROUP], |tx, [st]| {
            Ok(tx
                .query_one(&st, &[&name, &json, &created_by, &now_ms])?
                .try_get(0)?)
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
        // The row lock waits for a fence insert holding a share lock on the group; the check
        // after it (a new snapshot) then sees that fence.
        self.write(
            [
                fsql::PG_LOCK_GROUP,
                fsql::FENCES_OF_GROUP,
                fsql::DELETE_GROUP,
            ],
            |tx, [lock, fences, delete]| {
                if tx.query_opt(&lock, &[&id])?.is_none() {
                    return Ok(GroupRemoval::NotFound);
                }
                let users: Vec<u64> = tx
                    .query(&fences, &[&id])?
                    .iter()
                    .map(|r| r.try_get::<_, i64>(0).map(|f| f as u64))
                    .collect::<Result<_, _>>()?;
                if !users.is_empty() {
                    return Ok(GroupRemoval::InUse(users));
                }
                tx.execute(&delete, &[&id])?;
                Ok(GroupRemoval::Deleted)
            },
        )
    }

    fn geofences(&mut self) -> Result<Vec<GeofenceRecord>, StorageError> {
        self.rows(fsql::FENCES, &[], fsql::fence)
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
        let id: Option<i64> = self.write(
            [fsql::PG_GROUP_EXISTS, fsql::INSERT_FENCE],
            |tx, [exists, insert]| {
                if let Some(g) = group {
                    if tx.query_opt(&exists, &[&g])?.is_none() {
                        return Ok(None);
                    }
                }
                Ok(Some(
                    tx.query_one(&insert, &[&fence.name, &group, &json, &created_by, &now_ms])?
                        .try_get(0)?,
                ))
            },
        )?;
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
        self.write([fsql::DELETE_FENCE], |tx, [st]| {
            Ok(tx.execute(&st, &[&id])? == 1)
        })
    }

    fn insert_geofence_events(&mut self, events: &[GeofenceEvent]) -> Result<(), StorageError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write([fsql::INSERT_EVENT], |tx, [st]| {
            for e in events {
                let (fence, client, frame) = fsql::event_keys(e);
                tx.execute(
                    &st,
                    &[
                        &fence,
                        &client,
                        &frame,
                        &e.kind.as_str(),
                        &e.at_ms,
                        &e.lat,
                        &e.lon,
                        &e.fence_name,
                    ],
                )?;
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
        self.rows(
            fsql::EVENTS,
            &[&from_ms, &to_ms, &i64::from(limit)],
            fsql::event,
        )
    }

    fn last_geofence_events(&mut self) -> Result<Vec<GeofenceEvent>, StorageError> {
        self.rows(fsql::LAST_EVENTS, &[], fsql::event)
    }

    fn fixes_after(&mut self, after: FixCursor, limit: u32) -> Result<Vec<FixRow>, StorageError> {
        self.rows(
            fsql::FIXES_AFTER,
            &[
                &after.received_ms,
                &after.client,
                &after.frame_bits,
                &i64::from(limit),
            ],
            fsql::fix_row,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::backend::storage::{open, suite};

    /// The test server's URL, or `None` (with a note) when there is none and none is required.
    fn server() -> Option<String> {
        match std::env::var("LIVECAM_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                if std::env::var("LIVECAM_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!(
                        "LIVECAM_REQUIRE_POSTGRES=1 but LIVECAM_TEST_POSTGRES is unset: \
                         run `eval \"$(.ci/postgres.sh)\"` first"
                    );
                }
                eprintln!(
                    "SKIPPED: PostgreSQL storage test: set LIVECAM_TEST_POSTGRES to a server URL \
                     (`eval \"$(.ci/postgres.sh)\"` provides one) to run it"
                );
                None
            }
        }
    }

    /// `url` with its search path set to `schema`.
    fn in_schema(url: &str, schema: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}")
    }

    /// Drops its schema, with everything in it, when dropped.
    struct Schema {
        url: String,
        name: String,
    }

    impl Schema {
        /// A new, empty schema of its own for one test.
        fn new(url: &str, test: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "livecam_test_{}_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                test
            );
            let mut c = Client::connect(url, NoTls).expect("connect to the test server");
            // Names are ours (digits, letters, underscores); identifiers cannot be parameters.
            c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .expect("create schema");
            Schema {
                url: url.to_string(),
                name,
            }
        }

        fn url(&self) -> String {
            in_schema(&self.url, &self.name)
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            if let Ok(mut c) = Client::connect(&self.url, NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
            }
        }
    }

    fn fresh_named(test: &str) -> Option<suite::Fresh> {
        let server = server()?;
        let schema = Schema::new(&server, test);
        let url = schema.url();
        let db = open(&url).expect("open the test schema");
        let (u1, u2) = (url.clone(), url.clone());
        Some(suite::Fresh {
            db,
            url,
            set_version: Box::new(move |v| {
                let mut c = Client::connect(&u1, NoTls).unwrap();
                c.execute(
                    "INSERT INTO schema_version (version, description) VALUES ($1, 'test')",
                    &[&v],
                )
                .unwrap();
            }),
            versions: Box::new(move || {
                let mut c = Client::connect(&u2, NoTls).unwrap();
                c.query("SELECT version FROM schema_version ORDER BY version", &[])
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect()
            }),
            _guard: Box::new(schema),
        })
    }

    crate::backend::storage::suite::suite_tests!(|| fresh_named("suite"));

    /// Works from a plain thread, and from tokio's blocking pool under a running runtime.
    #[test]
    fn works_from_a_thread_and_from_spawn_blocking() {
        let Some(f) = fresh_named("threads") else {
            return;
        };
        let url = f.url.clone();
        let exercise = move |client: u32| {
            let mut db = open(&url).expect("open");
            db.upsert_session(&suite::session(client, 1)).unwrap();
            db.insert_frames(&[suite::frame(client, 1, 1_000)]).unwrap();
            let c = db
                .insert_command(client, Command::Snapshot, "t", 5)
                .unwrap();
            db.finish_command(c.id, &CommandState::Acked, 6).unwrap();
            assert_eq!(
                db.command(c.id).unwrap().unwrap().state,
                CommandState::Acked
            );
            db
        };
        let e1 = exercise.clone();
        std::thread::spawn(move || drop(e1(1)))
            .join()
            .expect("plain thread");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = rt.block_on(async move {
            tokio::task::spawn_blocking(move || exercise(2))
                .await
                .expect("spawn_blocking")
        });
        // A connection opened in the blocking pool, used and dropped on another thread.
        let mut db = std::thread::spawn(move || {
            let mut db = db;
            assert_eq!(db.clients().unwrap().len(), 2);
            db
        })
        .join()
        .unwrap();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || {
                assert_eq!(db.latest_frame(1).unwrap(), Some(suite::frame(1, 1, 1_000)));
                db.insert_link(&suite::link(2, 1)).unwrap();
            })
            .await
            .unwrap()
        });
        let mut check = f.reopen().unwrap();
        assert!(check.clients().unwrap()[1].last_link.is_some());
    }

    /// Several connections (as tier-2s on several hosts would hold) writing at once.
    #[test]
    fn concurrent_writers() {
        let Some(f) = fresh_named("concurrent") else {
            return;
        };
        let writers: Vec<_> = (0..4u32)
            .map(|w| {
                let url = f.url.clone();
                std::thread::spawn(move || {
                    let mut db = open(&url).expect("open");
                    for i in 0..50u32 {
                        db.insert_frames(&[suite::frame(w, i, i64::from(i))])
                            .unwrap();
                        // Everyone also writes frames of client 99: duplicates are ignored.
                        db.insert_frames(&[suite::frame(99, i, i64::from(i))])
                            .unwrap();
                        db.insert_command(w, Command::Start, "", 0).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        let mut db = f.db;
        let rows = db.clients().unwrap();
        assert_eq!(
            rows.iter().map(|r| r.client).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 99]
        );
        assert_eq!(db.frames(99, i64::MIN, i64::MAX, 1000).unwrap().len(), 50);
        assert_eq!(db.track(99, i64::MIN, i64::MAX, 1000).unwrap().len(), 50);
        let mut ids: Vec<u64> = (0..4)
            .flat_map(|w| db.commands(w, 1000).unwrap())
            .map(|c| c.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200);
    }

    #[test]
    fn malformed_urls_are_url_errors() {
        for url in [
            "postgres://u:secret@host:notaport/db",
            "postgresql://u@h/db?sslmode=sometimes",
        ] {
            match open(url) {
                Err(StorageError::Url {
                    url: named,
                    message,
                }) => {
                    assert!(!named.contains("secret"), "{named}");
                    assert!(!message.is_empty());
                }
                Err(e) => panic!("{url}: not a url error: {e}"),
                Ok(_) => panic!("{url} opened"),
            }
        }
    }

    #[test]
    fn an_unreachable_server_is_a_backend_error() {
        // Port 1 on the loopback: nothing listens there, the refusal is immediate.
        match open("postgres://u:secret@127.0.0.1:1/db?connect_timeout=2") {
            Err(StorageError::Backend(m)) => {
                assert!(m.contains("127.0.0.1:1"), "{m}");
                assert!(!m.contains("secret"), "{m}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected to port 1"),
        }
    }
}
