//! The tables of [`Users`](crate::backend::users::Users) and the statements both dialects run
//! on them.
//!
//! The statements are one text for both: their parameters are `$1..$n`, each first used in
//! that order, which PostgreSQL numbers by digit and SQLite (named parameters, numbered by
//! first appearance) binds the same way. Values always travel as parameters.

use std::collections::BTreeSet;

use super::{corrupt, text_col, Cols};
use crate::backend::users::{ClientScope, StoredUser, UserRecord, UserRole};
use crate::backend::StorageError;

/// Migration 2 for SQLite: users and logins.
pub(crate) const SQLITE_MIGRATION: &str = "
    -- clients: NULL for every client, or a JSON array of client ids.
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator')),
        clients TEXT,
        created_ms INTEGER NOT NULL
    );
    -- A login: the SHA-256 of its bearer token, never the token.
    CREATE TABLE logins (
        token_hash BLOB PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE INDEX logins_name ON logins (name);
    CREATE INDEX logins_expires ON logins (expires_ms);
";

/// Migration 2 for PostgreSQL: the same tables in its types.
pub(crate) const PG_MIGRATION: &str = "
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator')),
        clients TEXT,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE logins (
        token_hash BYTEA PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE INDEX logins_name ON logins (name);
    CREATE INDEX logins_expires ON logins (expires_ms);
";

pub(crate) const DESCRIPTION: &str = "users, logins";

/// `name, role, clients, password_hash`: what [`stored_user`] reads.
pub(crate) const USER: &str =
    "SELECT name, role, clients, password_hash FROM users WHERE name = $1";
pub(crate) const USERS: &str = "SELECT name, role, clients FROM users ORDER BY name";
pub(crate) const ADD_USER: &str =
    "INSERT INTO users (name, password_hash, role, clients, created_ms)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING";
pub(crate) const SET_PASSWORD: &str = "UPDATE users SET password_hash = $1 WHERE name = $2";
pub(crate) const REMOVE_USER: &str = "DELETE FROM users WHERE name = $1";
pub(crate) const DELETE_USER_LOGINS: &str = "DELETE FROM logins WHERE name = $1";
pub(crate) const PRUNE_LOGINS: &str = "DELETE FROM logins WHERE expires_ms <= $1";
pub(crate) const INSERT_LOGIN: &str =
    "INSERT INTO logins (token_hash, name, created_ms, expires_ms) VALUES ($1, $2, $3, $4)";
pub(crate) const LOGIN_USER: &str = "SELECT u.name, u.role, u.clients
     FROM logins l JOIN users u ON u.name = l.name
     WHERE l.token_hash = $1 AND l.expires_ms > $2";
pub(crate) const DELETE_LOGIN: &str = "DELETE FROM logins WHERE token_hash = $1";

/// The `role` and `clients` columns of a user.
pub(crate) fn user_params(u: &UserRecord) -> Result<(&'static str, Option<String>), StorageError> {
    let clients = match &u.clients {
        ClientScope::All => None,
        ClientScope::Only(set) => Some(
            serde_json::to_string(set)
                .map_err(|e| StorageError::Backend(format!("encode client list: {e}")))?,
        ),
    };
    Ok((u.role.as_str(), clients))
}

/// A user from `name, role, clients`.
pub(crate) fn user_record(r: &impl Cols) -> Result<UserRecord, StorageError> {
    const T: &str = "users";
    let name = text_col(r, 0, T)?;
    let role: UserRole = text_col(r, 1, T)?
        .parse()
        .map_err(|e| corrupt(T, format!("user {name:?}: {e}")))?;
    let clients = match r.opt_text(2)? {
        None => ClientScope::All,
        Some(json) => ClientScope::Only(
            serde_json::from_str::<BTreeSet<u32>>(&json)
                .map_err(|e| corrupt(T, format!("user {name:?}: clients {json:?}: {e}")))?,
        ),
    };
    Ok(UserRecord {
        name,
        role,
        clients,
    })
}

/// A user with their hash, from [`USER`].
pub(crate) fn stored_user(r: &impl Cols) -> Result<StoredUser, StorageError> {
    Ok(StoredUser {
        user: user_record(r)?,
        password_hash: text_col(r, 3, "users")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite binds `$1..$n` by first appearance: each statement must first use them in order.
    #[test]
    fn parameters_first_appear_in_order() {
        for sql in [
            USER,
            USERS,
            ADD_USER,
            SET_PASSWORD,
            REMOVE_USER,
            DELETE_USER_LOGINS,
            PRUNE_LOGINS,
            INSERT_LOGIN,
            LOGIN_USER,
            DELETE_LOGIN,
        ] {
            crate::backend::storage::assert_parameters_in_order(sql);
        }
    }
}
