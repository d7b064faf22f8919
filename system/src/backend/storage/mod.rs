//! The two implementations of [`Storage`]: SQLite (embedded default, WAL, through `rusqlite`
//! with its bundled library) and PostgreSQL (multi-host deployments, through the synchronous
//! `postgres` crate), and [`open`], which picks one by URL:
//!
//! - `sqlite:PATH` (or `sqlite://PATH`): a database file, created if missing, in WAL mode with
//!   a busy timeout, so several tier-2 processes on one host can write the same file.
//! - `sqlite::memory:`: a private in-memory database (tests, demos).
//! - `postgres://...` or `postgresql://...`: a PostgreSQL server, libpq URL syntax. A schema
//!   other than `public` is chosen with `?options=-csearch_path%3DNAME`.
//!
//! Both apply their dialect's list of schema migrations at open, in order, each recorded in a
//! `schema_version` table; a database already migrated is left alone, and one whose version is
//! newer than this build knows is refused. Both store the same tables: `sessions`, `frames`
//! (the JPEG bytes in the row, after the index columns), `fixes` (one row per frame with a
//! fix), `link_stats` and `commands`, `users` and `logins` for the web login, and
//! `client_groups`, `geofences` and `geofence_events` (see `geofence.rs`). Values always
//! travel as query parameters.
//!
//! ```
//! use livecam_system::backend::storage::open;
//! let mut db = open("sqlite::memory:").unwrap();
//! assert!(db.clients().unwrap().is_empty());
//! ```

use std::net::SocketAddr;

use crate::backend::{
    CommandRecord, CommandState, FixRecord, FrameMeta, LinkRecord, SessionRecord, Storage,
    StorageError,
};
use crate::device::Fix;
use crate::proto::wire::Command;

mod geofence;
mod postgres;
mod sqlite;
#[cfg(test)]
mod suite;
mod users;

pub use self::postgres::PgStorage;
pub use self::sqlite::SqliteStorage;

/// Opens the database `url` names (see the module docs for the forms), applying any schema
/// migrations it lacks.
pub fn open(url: &str) -> Result<Box<dyn Storage>, StorageError> {
    match parse_url(url)? {
        Target::SqliteMemory => Ok(Box::new(SqliteStorage::open_in_memory()?)),
        Target::SqliteFile(path) => Ok(Box::new(SqliteStorage::open_file(path)?)),
        Target::Postgres => Ok(Box::new(PgStorage::connect(url)?)),
    }
}

/// What a URL points at.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    SqliteMemory,
    SqliteFile(&'a str),
    Postgres,
}

fn parse_url(url: &str) -> Result<Target<'_>, StorageError> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(Target::SqliteMemory);
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(url_error(url, "no file path after sqlite:"));
        }
        return Ok(Target::SqliteFile(path));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres);
    }
    Err(url_error(
        url,
        "unknown scheme (expected sqlite:PATH, sqlite::memory:, postgres:// or postgresql://)",
    ))
}

fn url_error(url: &str, message: impl Into<String>) -> StorageError {
    StorageError::Url {
        url: redact(url),
        message: message.into(),
    }
}

/// The URL with any password replaced by `***`, fit for errors and logs.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// One step of a dialect's schema: applied once, in order of `version`, at open.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// The schema version after all of `migrations`.
fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

/// The error for a database whose schema is newer than this build.
fn too_new(found: i64, migrations: &[Migration]) -> StorageError {
    StorageError::Backend(format!(
        "database schema version {found} is newer than this build knows (up to {}); \
         upgrade livecam or use another database",
        latest(migrations)
    ))
}

/// The cut-off of a retention by age: rows received before it are deleted.
fn age_cutoff(now_ms: i64, max_age_s: u64) -> i64 {
    i64::try_from(max_age_s)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .and_then(|age_ms| now_ms.checked_sub(age_ms))
        .unwrap_or(i64::MIN)
}

/// Reads one column of a result row; implemented for both drivers' rows, so the records are
/// decoded by one piece of code.
pub(crate) trait Cols {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StorageError>;
    fn opt_f64(&self, i: usize) -> Result<Option<f64>, StorageError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StorageError>;
}

/// Checks that PostgreSQL's `$N` parameters of `sql` first appear as `$1, $2, ...` in order,
/// so the statement can share its parameter list with SQLite's `?N` form.
#[cfg(test)]
pub(crate) fn assert_parameters_in_order(sql: &str) {
    let mut seen: Vec<u32> = Vec::new();
    for (i, _) in sql.match_indices('$') {
        let digits: String = sql[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let n: u32 = digits.parse().unwrap();
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    let expected: Vec<u32> = (1..=seen.len() as u32).collect();
    assert_eq!(seen, expected, "{sql}");
}

fn corrupt(table: &'static str, message: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        table,
        message: message.into(),
    }
}

fn i64_col(r: &impl Cols, i: usize, table: &'static str) -> Result<i64, StorageError> {
    r.opt_i64(i)?
        .ok_or_else(|| corrupt(table, format!("column {i} is null")))
}

fn u32_col(r: &impl Cols, i: usize, table: &'static str) -> Result<u32, StorageError> {
    let v = i64_col(r, i, table)?;
    u32::try_from(v).map_err(|_| corrupt(table, format!("column {i}: {v} is not a u32")))
}

/// A float column. NULL reads as NaN: SQLite stores a NaN as NULL, and PostgreSQL keeps it,
/// so a NaN written to either reads back as NaN.
fn f64_col(r: &impl Cols, i: usize) -> Result<f64, StorageError> {
    Ok(r.opt_f64(i)?.unwrap_or(f64::NAN))
}

fn text_col(r: &impl Cols, i: usize, table: &'static str) -> Result<String, StorageError> {
    r.opt_text(i)?
        .ok_or_else(|| corrupt(table, format!("column {i} is null")))
}

fn addr_col(r: &impl Cols, i: usize, table: &'static str) -> Result<SocketAddr, StorageError> {
    let s = text_col(r, i, table)?;
    s.parse()
        .map_err(|_| corrupt(table, format!("column {i}: {s:?} is not a socket address")))
}

/// The integers of the schema are signed 64-bit (the one width both dialects share). A `u32`
/// always fits; a `u64` is stored as its bit pattern, so every value round-trips.
fn u64_bits(v: u64) -> i64 {
    v as i64
}

fn bits_u64(v: i64) -> u64 {
    v as u64
}

/// The columns of a fix, as bound into a statement. All NULL when there is none;
/// `fix_time_ms` is the one that tells.
struct FixParams {
    lat: Option<f64>,
    lon: Option<f64>,
    speed: Option<f64>,
    heading: Option<f64>,
    time: Option<i64>,
}

fn fix_params(f: Option<&Fix>) -> FixParams {
    FixParams {
        lat: f.map(|f| f.lat),
        lon: f.map(|f| f.lon),
        speed: f.map(|f| f.speed_mps),
        heading: f.map(|f| f.heading_deg),
        time: f.map(|f| u64_bits(f.fix_time_ms)),
    }
}

/// Columns of a fix: `lat, lon, speed_mps, heading_deg, fix_time_ms` from `at`.
fn fix_cols(r: &impl Cols, at: usize) -> Result<Option<Fix>, StorageError> {
    let Some(time) = r.opt_i64(at + 4)? else {
        return Ok(None);
    };
    Ok(Some(Fix {
        lat: f64_col(r, at)?,
        lon: f64_col(r, at + 1)?,
        speed_mps: f64_col(r, at + 2)?,
        heading_deg: f64_col(r, at + 3)?,
        fix_time_ms: bits_u64(time),
    }))
}

/// The column lists the decoders below read, in their order. Shared by both dialects.
macro_rules! session_cols {
    ($t:literal) => {
        concat!(
            $t,
            ".client, ",
            $t,
            ".tier2, ",
            $t,
            ".tier2_addr, ",
            $t,
            ".client_addr, ",
            $t,
            ".started_ms, ",
            $t,
            ".last_seen_ms"
        )
    };
}
macro_rules! fix_record_cols {
    ($t:literal) => {
        concat!(
            $t,
            ".client, ",
            $t,
            ".received_ms, ",
            $t,
            ".lat, ",
            $t,
            ".lon, ",
            $t,
            ".speed_mps, ",
            $t,
            ".heading_deg, ",
            $t,
            ".fix_time_ms"
        )
    };
}
macro_rules! link_cols {
    ($t:literal) => {
        concat!(
            $t,
            ".client, ",
            $t,
            ".at_ms, ",
            $t,
            ".segment_size, ",
            $t,
            ".loss, ",
            $t,
            ".latency_ms, ",
            $t,
            ".frames_delivered, ",
            $t,
            ".frames_dropped"
        )
    };
}
macro_rules! frame_meta_cols {
    () => {
        "client, frame, tier2, capture_ms, received_ms, lat, lon, speed_mps, heading_deg, \
         fix_time_ms, segment_size, jpeg_len"
    };
}
macro_rules! command_cols {
    () => {
        "id, client, command, issued_by, created_ms, updated_ms, state, reason"
    };
}
/// Every client with a session or a fix, with its session, newest fix, newest link record
/// and newest frame id. The client ids of `fixes` come from a loose index scan (one index
/// probe per client, not a scan of all fixes); each "newest" is one probe of an index on
/// `(client, time, key)`. Plain SQL both dialects run as it is.
macro_rules! clients_sql {
    () => {
        concat!(
            "WITH RECURSIVE fc(client) AS (
                SELECT MIN(client) FROM fixes
                UNION ALL
                SELECT (SELECT MIN(f.client) FROM fixes f WHERE f.client > fc.client)
                FROM fc WHERE fc.client IS NOT NULL
            ), ids(client) AS (
                SELECT client FROM fc WHERE client IS NOT NULL
                UNION
                SELECT client FROM sessions
            )
            SELECT ids.client, ",
            $crate::backend::storage::session_cols!("s"),
            ", ",
            $crate::backend::storage::fix_record_cols!("f"),
            ", ",
            $crate::backend::storage::link_cols!("l"),
            ",
                (SELECT fr.frame FROM frames fr WHERE fr.client = ids.client
                 ORDER BY fr.received_ms DESC, fr.frame DESC LIMIT 1)
            FROM ids
            LEFT JOIN sessions s ON s.client = ids.client
            LEFT JOIN fixes f ON f.client = ids.client AND f.frame = (
                SELECT f2.frame FROM fixes f2 WHERE f2.client = ids.client
                ORDER BY f2.received_ms DESC, f2.frame DESC LIMIT 1)
            LEFT JOIN link_stats l ON l.id = (
                SELECT l2.id FROM link_stats l2 WHERE l2.client = ids.client
                ORDER BY l2.at_ms DESC, l2.id DESC LIMIT 1)
            ORDER BY ids.client"
        )
    };
}
pub(crate) use {
    clients_sql, command_cols, fix_record_cols, frame_meta_cols, link_cols, session_cols,
};

/// Number of columns each list above has.
const SESSION_COLS: usize = 6;
const FIX_RECORD_COLS: usize = 7;
const LINK_COLS: usize = 7;

/// A session from [`session_cols`] at `at`; `None` when its client column is NULL (an outer
/// join found none).
fn session_at(r: &impl Cols, at: usize) -> Result<Option<SessionRecord>, StorageError> {
    const T: &str = "sessions";
    if r.opt_i64(at)?.is_none() {
        return Ok(None);
    }
    Ok(Some(SessionRecord {
        client: u32_col(r, at, T)?,
        tier2: u32_col(r, at + 1, T)?,
        tier2_addr: addr_col(r, at + 2, T)?,
        client_addr: addr_col(r, at + 3, T)?,
        started_ms: i64_col(r, at + 4, T)?,
        last_seen_ms: i64_col(r, at + 5, T)?,
    }))
}

/// A fix record from [`fix_record_cols`] at `at`; `None` when an outer join found none.
fn fix_record_at(r: &impl Cols, at: usize) -> Result<Option<FixRecord>, StorageError> {
    const T: &str = "fixes";
    if r.opt_i64(at)?.is_none() {
        return Ok(None);
    }
    let fix = fix_cols(r, at + 2)?.ok_or_else(|| corrupt(T, "fix without a time"))?;
    Ok(Some(FixRecord {
        client: u32_col(r, at, T)?,
        received_ms: i64_col(r, at + 1, T)?,
        fix,
    }))
}

/// A link record from [`link_cols`] at `at`; `None` when an outer join found none.
fn link_at(r: &impl Cols, at: usize) -> Result<Option<LinkRecord>, StorageError> {
    const T: &str = "link_stats";
    if r.opt_i64(at)?.is_none() {
        return Ok(None);
    }
    Ok(Some(LinkRecord {
        client: u32_col(r, at, T)?,
        at_ms: i64_col(r, at + 1, T)?,
        segment_size: u32_col(r, at + 2, T)?,
        loss: f64_col(r, at + 3)?,
        latency_ms: f64_col(r, at + 4)?,
        frames_delivered: bits_u64(i64_col(r, at + 5, T)?),
        frames_dropped: bits_u64(i64_col(r, at + 6, T)?),
    }))
}

/// A frame's index row from [`frame_meta_cols`].
fn frame_meta(r: &impl Cols) -> Result<FrameMeta, StorageError> {
    const T: &str = "frames";
    Ok(FrameMeta {
        client: u32_col(r, 0, T)?,
        frame: bits_u64(i64_col(r, 1, T)?),
        tier2: u32_col(r, 2, T)?,
        capture_ms: i64_col(r, 3, T)?,
        received_ms: i64_col(r, 4, T)?,
        fix: fix_cols(r, 5)?,
        segment_size: u32_col(r, 10, T)?,
        jpeg_len: u32_col(r, 11, T)?,
    })
}

/// A whole frame from [`frame_meta_cols`] followed by `jpeg`.
fn frame_record(r: &impl Cols) -> Result<crate::backend::FrameRecord, StorageError> {
    let m = frame_meta(r)?;
    Ok(crate::backend::FrameRecord {
        client: m.client,
        frame: m.frame,
        tier2: m.tier2,
        capture_ms: m.capture_ms,
        received_ms: m.received_ms,
        fix: m.fix,
        segment_size: m.segment_size,
        jpeg: r.bytes(12)?,
    })
}

/// How a command's state is stored: the `state` and `reason` columns.
/// The record of a command the database just stored as pending under `id`.
fn new_pending_command(
    id: i64,
    client: u32,
    command: Command,
    issued_by: &str,
    now_ms: i64,
) -> Result<CommandRecord, StorageError> {
    Ok(CommandRecord {
        id: u64::try_from(id).map_err(|_| corrupt("commands", format!("new id {id}")))?,
        client,
        command,
        issued_by: issued_by.to_string(),
        created_ms: now_ms,
        updated_ms: now_ms,
        state: CommandState::Pending,
    })
}

fn state_params(s: &CommandState) -> (&'static str, Option<&str>) {
    match s {
        CommandState::Pending => ("pending", None),
        CommandState::Acked => ("acked", None),
        CommandState::Failed { reason } => ("failed", Some(reason)),
    }
}

fn command_json(c: &Command) -> Result<String, StorageError> {
    serde_json::to_string(c).map_err(|e| StorageError::Backend(format!("encode command: {e}")))
}

/// A command from [`command_cols`].
fn command_record(r: &impl Cols) -> Result<CommandRecord, StorageError> {
    const T: &str = "commands";
    let id = i64_col(r, 0, T)?;
    let json = text_col(r, 2, T)?;
    let command: Command =
        serde_json::from_str(&json).map_err(|e| corrupt(T, format!("command {id}: {e}")))?;
    let state = match text_col(r, 6, T)?.as_str() {
        "pending" => CommandState::Pending,
        "acked" => CommandState::Acked,
        "failed" => CommandState::Failed {
            reason: r.opt_text(7)?.unwrap_or_default(),
        },
        other => return Err(corrupt(T, format!("command {id}: state {other:?}"))),
    };
    Ok(CommandRecord {
        id: u64::try_from(id).map_err(|_| corrupt(T, format!("command id {id}")))?,
        client: u32_col(r, 1, T)?,
        command,
        issued_by: text_col(r, 3, T)?,
        created_ms: i64_col(r, 4, T)?,
        updated_ms: i64_col(r, 5, T)?,
        state,
    })
}

/// A row of [`clients_sql`].
fn client_row(r: &impl Cols) -> Result<crate::backend::ClientRow, StorageError> {
    let s = 1;
    let f = s + SESSION_COLS;
    let l = f + FIX_RECORD_COLS;
    let fr = l + LINK_COLS;
    Ok(crate::backend::ClientRow {
        client: u32_col(r, 0, "clients")?,
        session: session_at(r, s)?,
        last_fix: fix_record_at(r, f)?,
        last_link: link_at(r, l)?,
        last_frame: r.opt_i64(fr)?.map(bits_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The storage sources, as compiled into this test.
    const SOURCES: &[(&str, &str)] = &[
        ("mod.rs", include_str!("mod.rs")),
        ("sqlite.rs", include_str!("sqlite.rs")),
        ("postgres.rs", include_str!("postgres.rs")),
        ("users.rs", include_str!("users.rs")),
        ("geofence.rs", include_str!("geofence.rs")),
        ("suite.rs", include_str!("suite.rs")),
    ];

    /// The places in `source` (outside its `mod tests`, whose per-test schema names are
    /// identifiers, which cannot be parameters) where text that reads as SQL is built at run
    /// time: a `format!`, `push_str`, `+` or `+=` whose operands hold an SQL keyword.
    fn sql_built_from_text(source: &str) -> Vec<String> {
        const KEYWORDS: &[&str] = &[
            "SELECT", "INSERT", "UPDATE", "DELETE", "WHERE", "VALUES", "CREATE", "DROP", "ALTER",
            "FROM", "SET ",
        ];
        let code = source
            .find("#[cfg(test)]\nmod tests")
            .map_or(source, |end| &source[..end]);
        let sql = |text: &str| {
            KEYWORDS.iter().any(|k| {
                text.match_indices(k).any(|(i, _)| {
                    let before = text[..i].chars().next_back();
                    !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            })
        };
        let mut found = Vec::new();
        for builder in ["format!(", "push_str(", "write!(", "concat(", "join("] {
            for (at, _) in code.match_indices(builder) {
                // The arguments, up to the matching parenthesis.
                let args = &code[at + builder.len()..];
                let mut depth = 1;
                let end = args
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(args.len(), |(i, _)| i);
                if sql(&args[..end]) {
                    found.push(format!("{builder}{}", &args[..end]));
                }
            }
        }
        for line in code.lines() {
            let t = line.trim();
            let joins = t.contains('"') && (t.contains(" + ") || t.contains("+= "));
            if joins && sql(t) {
                found.push(t.to_string());
            }
        }
        found
    }

    #[test]
    fn no_sql_is_built_by_string_concatenation() {
        for (file, source) in SOURCES {
            let found = sql_built_from_text(source);
            assert!(found.is_empty(), "{file} builds SQL from text: {found:#?}");
        }
    }

    /// The scan above finds what it looks for.
    #[test]
    fn the_sql_scan_finds_built_sql() {
        for bad in [
            "let q = format!(\"SELECT * FROM users WHERE name = '{name}'\");",
            "q.push_str(\" WHERE name = \");",
            "let q = \"DELETE FROM logins WHERE name = '\".to_string() + name;",
            "let q = String::from(\"x\") + \"UPDATE users SET role = 1\";",
            "sql += \"AND expires_ms > 0\"; // FROM the query above",
            "write!(q, \"INSERT INTO users VALUES ({})\", v)",
        ] {
            assert!(!sql_built_from_text(bad).is_empty(), "{bad}");
        }
        for fine in [
            "format!(\"column {i} is null\")",
            "format!(\"database url {url}: no selection\")",
            "const Q: &str = concat!(\"SELECT \", cols!(), \" FROM t WHERE a = ?1\");",
            "#[cfg(test)]\nmod tests { format!(\"DROP SCHEMA {name}\") }",
        ] {
            assert!(sql_built_from_text(fine).is_empty(), "{fine}");
        }
    }

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(parse_url("sqlite::memory:").unwrap(), Target::SqliteMemory);
        assert_eq!(
            parse_url("sqlite:/var/lib/livecam.db").unwrap(),
            Target::SqliteFile("/var/lib/livecam.db")
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/livecam.db").unwrap(),
            Target::SqliteFile("/var/lib/livecam.db")
        );
        assert_eq!(
            parse_url("sqlite:data/l.db").unwrap(),
            Target::SqliteFile("data/l.db")
        );
        assert_eq!(parse_url("postgres://h/db").unwrap(), Target::Postgres);
        assert_eq!(parse_url("postgresql://h/db").unwrap(), Target::Postgres);
    }

    #[test]
    fn unknown_or_empty_urls_are_url_errors_naming_the_url() {
        for url in ["mysql://u@h/db", "", "sqlite:", "/tmp/x.db", "postgres:/h"] {
            match open(url) {
                Err(StorageError::Url { url: named, .. }) => assert_eq!(named, url),
                Err(e) => panic!("{url:?}: not a url error: {e}"),
                Ok(_) => panic!("{url:?} opened"),
            }
        }
    }

    #[test]
    fn url_errors_hide_the_password() {
        let Err(e) = open("mysql://livecam:secret@db.example:3306/x") else {
            panic!("opened");
        };
        let text = e.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.contains("mysql://livecam:***@db.example:3306/x"),
            "{text}"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://u:p@h/d?x=a@b"),
            "postgres://u:***@h/d?x=a@b"
        );
    }

    #[test]
    fn age_cutoff_saturates() {
        assert_eq!(age_cutoff(10_000, 3), 7_000);
        assert_eq!(age_cutoff(0, u64::MAX), i64::MIN);
        assert_eq!(age_cutoff(-10, i64::MAX as u64 / 1000 + 1), i64::MIN);
        assert_eq!(age_cutoff(i64::MIN, 0), i64::MIN);
    }

    #[test]
    fn migrations_are_in_strictly_increasing_order_from_one() {
        for list in [sqlite::MIGRATIONS, postgres::MIGRATIONS] {
            assert_eq!(list[0].version, 1);
            for w in list.windows(2) {
                assert_eq!(w[1].version, w[0].version + 1, "{}", w[1].description);
            }
        }
        assert_eq!(latest(sqlite::MIGRATIONS), latest(postgres::MIGRATIONS));
    }
}
