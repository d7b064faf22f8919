//! The backend: the database every tier-2 writes through, and what the map and web servers
//! read from it ([0022]-[0027] of the seed).
//!
//! - [`Storage`]: one interface over SQLite (embedded default, WAL) and PostgreSQL (for
//!   multi-host deployments), chosen by a URL: sessions, frames (JPEG bytes with index rows),
//!   GPS fixes, link statistics and commands, with schema migrations and retention.
//! - The records below are what travels through it. Times are milliseconds since the Unix
//!   epoch on the writing server's clock.
//!
//! Storage calls block: tier-2s write from a writer thread of their own, and the web server
//! reads on tokio's blocking pool.

pub mod storage;

pub use storage::open;

use std::net::SocketAddr;

pub mod desk;
pub mod fence_watch;
pub mod geofence;
pub mod users;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::Fix;
use crate::proto::wire::Command;

/// A mobile client's session as the tier-2 that holds it sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub client: u32,
    pub tier2: u32,
    /// Where the tier-2 takes commands for this client (its UDP address).
    pub tier2_addr: SocketAddr,
    /// The client's address as the tier-2 sees it.
    pub client_addr: SocketAddr,
    pub started_ms: i64,
    /// The last time the tier-2 heard from the client.
    pub last_seen_ms: i64,
}

/// What [`Storage::insert_frames`] did with a batch besides storing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inserted {
    /// `(client, frame)` of the frames refused because their key already holds a different
    /// picture (frame ids repeated, e.g. after a clock step on a board without RTC): the stored
    /// one is kept and the new one is not stored.
    pub conflicts: Vec<(u32, u64)>,
}

/// A frame as stored: the captured JPEG with its capture time and fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub client: u32,
    /// The frame's 64-bit capture sequence number (never repeats per client, see
    /// [`crate::role::durable`]). Stored as the bits of a signed 64-bit column; in the web
    /// API's JSON it is a decimal string, since JavaScript numbers hold 53 bits.
    #[serde(with = "seq_string")]
    pub frame: u64,
    pub tier2: u32,
    /// Capture time on the client's clock.
    pub capture_ms: i64,
    /// When the tier-2 had it whole.
    pub received_ms: i64,
    pub fix: Option<Fix>,
    /// The segment size the frame travelled in.
    pub segment_size: u32,
    pub jpeg: Vec<u8>,
}

/// A frame's index row, without the picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    pub client: u32,
    #[serde(with = "seq_string")]
    pub frame: u64,
    pub tier2: u32,
    pub capture_ms: i64,
    pub received_ms: i64,
    pub fix: Option<Fix>,
    pub segment_size: u32,
    pub jpeg_len: u32,
}

/// A position of a client, as the tier-2 received it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FixRecord {
    pub client: u32,
    pub received_ms: i64,
    pub fix: Fix,
}

/// A client's link figures over the last reporting interval, as its tier-2 measured them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub client: u32,
    pub at_ms: i64,
    /// The segment size the tier-2 asks for now.
    pub segment_size: u32,
    /// Segments that arrived damaged or never, over segments expected, in the interval.
    pub loss: f64,
    /// Frame reassembly time (first segment to complete), median over the interval, ms.
    pub latency_ms: f64,
    pub frames_delivered: u64,
    pub frames_dropped: u64,
}

/// Where a command is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CommandState {
    /// Issued, no answer yet.
    Pending,
    /// The mobile client did it.
    Acked,
    /// It did not happen, and why.
    Failed { reason: String },
}

/// A command from the browser to a mobile client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub id: u64,
    pub client: u32,
    pub command: Command,
    /// Who issued it (a user name; empty before login exists).
    pub issued_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(flatten)]
    pub state: CommandState,
}

/// What the fleet view needs of one client: its session, last fix and last link figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRow {
    pub client: u32,
    pub session: Option<SessionRecord>,
    pub last_fix: Option<FixRecord>,
    pub last_link: Option<LinkRecord>,
    /// The id of the newest stored frame.
    #[serde(with = "seq_string_opt")]
    pub last_frame: Option<u64>,
}

/// How much the database keeps. Frames, fixes and geofence events older than `max_age_s`, and the oldest
/// frames beyond `max_frame_bytes` in all, are deleted by [`Storage::apply_retention`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub max_age_s: Option<u64>,
    pub max_frame_bytes: Option<u64>,
}

/// What retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub frames: u64,
    pub fixes: u64,
    pub links: u64,
    pub geofence_events: u64,
}

/// A storage failure.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The database URL is not one we can open.
    #[error("database url {url:?}: {message}")]
    Url { url: String, message: String },
    /// The database refused or failed an operation.
    #[error("database: {0}")]
    Backend(String),
    /// A row holds something this build cannot read.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
}

/// The one storage interface. Implemented for SQLite and PostgreSQL; [`open`] picks by URL.
/// Every method is one transaction. Users and logins of the web login are its part
/// [`Users`](users::Users); groups, geofences and their events its part
/// [`Geofences`](geofence::Geofences).
pub trait Storage: users::Users + geofence::Geofences + Send {
    /// Creates or updates the client's session row.
    fn upsert_session(&mut self, s: &SessionRecord) -> Result<(), StorageError>;
    /// Stores frames (and their fixes, as fix rows) in one transaction. A frame already stored
    /// (same client and frame id) is left as it is: the same picture again is taken as stored
    /// (a repeat), a different picture under that key is refused and named in
    /// [`Inserted::conflicts`].
    fn insert_frames(&mut self, frames: &[FrameRecord]) -> Result<Inserted, StorageError>;
    fn insert_link(&mut self, l: &LinkRecord) -> Result<(), StorageError>;
    /// Every client with a session or a fix, by client id.
    fn clients(&mut self) -> Result<Vec<ClientRow>, StorageError>;
    fn session(&mut self, client: u32) -> Result<Option<SessionRecord>, StorageError>;
    /// The client's fixes received within `[from_ms, to_ms]`, oldest first, at most `limit`.
    fn track(
        &mut self,
        client: u32,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<FixRecord>, StorageError>;
    /// The client's frames received within `[from_ms, to_ms]`, oldest first, at most `limit`.
    fn frames(
        &mut self,
        client: u32,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<FrameMeta>, StorageError>;
    fn frame(&mut self, client: u32, frame: u64) -> Result<Option<FrameRecord>, StorageError>;
    fn latest_frame(&mut self, client: u32) -> Result<Option<FrameRecord>, StorageError>;
    /// Stores a new pending command and returns it with its id.
    fn insert_command(
        &mut self,
        client: u32,
        command: Command,
        issued_by: &str,
        now_ms: i64,
    ) -> Result<CommandRecord, StorageError>;
    /// Moves a pending command to `state`; a command already acked or failed stays as it is.
    fn finish_command(
        &mut self,
        id: u64,
        state: &CommandState,
        now_ms: i64,
    ) -> Result<(), StorageError>;
    fn command(&mut self, id: u64) -> Result<Option<CommandRecord>, StorageError>;
    /// The client's most recent commands, newest first.
    fn commands(&mut self, client: u32, limit: u32) -> Result<Vec<CommandRecord>, StorageError>;
    fn apply_retention(&mut self, r: &Retention, now_ms: i64) -> Result<Pruned, StorageError>;
}

// The map and web servers over this storage.
pub mod map;
pub mod web;

/// Frame ids in JSON as decimal strings (JavaScript numbers hold 53 bits; ids are 64).
pub mod seq_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// [`seq_string`] for an optional id (`null` when absent).
pub mod seq_string_opt {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|v| v.to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|v| v.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
