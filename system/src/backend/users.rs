//! Users of the web API and UI, and their login sessions (issue 9, "Security and robustness").
//!
//! - A user has a name, an argon2id password hash (PHC string, random salt from the operating
//!   system's generator), a [`UserRole`] and the [`ClientScope`] they may command.
//! - Logging in gives a random 256-bit bearer token. Only its SHA-256 is stored, with an expiry;
//!   a stolen database yields no usable token. Logging out deletes the row.
//! - [`Users`] is the storage side, implemented by both databases next to [`Storage`]
//!   (every [`Storage`] is one): parameterised SQL only.
//!
//! Secrets are compared in constant time: argon2's verification compares its output that way,
//! and a token is looked up by its hash (what the database compares is a SHA-256 of a 256-bit
//! random value, so how long a comparison takes tells nothing about any valid token).
//!
//! [`Storage`]: crate::backend::Storage

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::backend::StorageError;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Reads everything; commands nothing.
    Viewer,
    /// Reads everything; commands the clients of their [`ClientScope`].
    Operator,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Viewer => "viewer",
            UserRole::Operator => "operator",
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserRole {
    type Err = UserError;
    fn from_str(s: &str) -> Result<Self, UserError> {
        match s {
            "viewer" => Ok(UserRole::Viewer),
            "operator" => Ok(UserRole::Operator),
            other => Err(UserError::Invalid(format!(
                "role must be viewer or operator, got {other:?}"
            ))),
        }
    }
}

/// The mobile clients a user may command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientScope {
    All,
    Only(BTreeSet<u32>),
}

impl ClientScope {
    pub fn contains(&self, client: u32) -> bool {
        match self {
            ClientScope::All => true,
            ClientScope::Only(set) => set.contains(&client),
        }
    }
}

impl fmt::Display for ClientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientScope::All => f.write_str("all"),
            ClientScope::Only(set) if set.is_empty() => f.write_str("none"),
            ClientScope::Only(set) => {
                let ids: Vec<String> = set.iter().map(u32::to_string).collect();
                f.write_str(&ids.join(","))
            }
        }
    }
}

impl FromStr for ClientScope {
    type Err = UserError;
    /// `all`, `none`, or client ids separated by commas (`1,2,7`).
    fn from_str(s: &str) -> Result<Self, UserError> {
        match s.trim() {
            "all" => Ok(ClientScope::All),
            "none" | "" => Ok(ClientScope::Only(BTreeSet::new())),
            list => list
                .split(',')
                .map(|id| {
                    id.trim().parse::<u32>().map_err(|_| {
                        UserError::Invalid(format!(
                            "clients must be all, none or client ids like 1,2,7; {id:?} is not a client id"
                        ))
                    })
                })
                .collect::<Result<_, _>>()
                .map(ClientScope::Only),
        }
    }
}

/// A user as the API and storage show them (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: UserRole,
    pub clients: ClientScope,
}

impl UserRecord {
    /// Whether this user may send commands to `client`.
    pub fn may_command(&self, client: u32) -> bool {
        self.role == UserRole::Operator && self.clients.contains(client)
    }
}

/// A user with their stored password hash, as [`Users::user`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub user: UserRecord,
    /// An argon2 PHC string.
    pub password_hash: String,
}

/// Bad user input: a name, role, client list or password that cannot be used.
#[derive(Debug, Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// The longest name accepted.
pub const MAX_NAME: usize = 64;

/// A user name: 1..=64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(ok_char) {
        return Err(UserError::Invalid(format!(
            "user name must be 1..={MAX_NAME} letters, digits, '.', '_', '-' or '@', got {name:?}"
        )));
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::Invalid(format!(
            "password must be at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// `n` bytes from the operating system's random generator.
fn os_random<const N: usize>() -> Result<[u8; N], UserError> {
    let mut out = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut out)
        .map_err(|e| UserError::Hash(format!("operating system random generator: {e}")))?;
    Ok(out)
}

/// The argon2id PHC string of `password`, with a random 16-byte salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt =
        SaltString::encode_b64(&os_random::<16>()?).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (compared in constant time). A hash that
/// does not parse matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "a stored password hash does not parse");
            false
        }
    }
}

/// A hash to verify against when the user does not exist, so that a login for an unknown
/// name costs what one for a known name does (the answer and its timing tell nothing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("decoy password, never a real one").unwrap_or_else(|_| {
            // Without a random generator no login succeeds anyway; any valid PHC string does.
            "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$\
             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .to_string()
        })
    })
}

/// A new random password for a generated account: 128 bits, as 32 hex digits.
pub fn random_password() -> Result<String, UserError> {
    Ok(hex::encode(os_random::<16>()?))
}

/// A new login token: 256 random bits, as 64 hex digits.
pub fn new_token() -> Result<String, UserError> {
    Ok(hex::encode(os_random::<32>()?))
}

/// What is stored of a token: its SHA-256.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The storage side of users and logins; see the module docs. Every method is one
/// transaction.
pub trait Users {
    /// Adds a user; `false` (and nothing changed) when the name is taken.
    fn add_user(
        &mut self,
        user: &UserRecord,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError>;
    fn user(&mut self, name: &str) -> Result<Option<StoredUser>, StorageError>;
    /// Every user, by name.
    fn users(&mut self) -> Result<Vec<UserRecord>, StorageError>;
    /// Sets a user's password hash and ends their logins; `false` when there is no such user.
    fn set_password(&mut self, name: &str, password_hash: &str) -> Result<bool, StorageError>;
    /// Removes a user and their logins; `false` when there was none.
    fn remove_user(&mut self, name: &str) -> Result<bool, StorageError>;
    /// Stores a login (the token's hash) of user `name`, valid until `expires_ms`, and
    /// deletes logins that expired before `now_ms`.
    fn insert_login(
        &mut self,
        token_hash: &[u8],
        name: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StorageError>;
    /// The user a token hash logs in, if its login exists and has not expired at `now_ms`.
    fn login_user(
        &mut self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<UserRecord>, StorageError>;
    /// Deletes a login; `false` when there was none.
    fn delete_login(&mut self, token_hash: &[u8]) -> Result<bool, StorageError>;
}

/// Adds a user with a password after checking the name and password; `Invalid` when the
/// name is taken.
pub fn add_user(
    db: &mut (impl Users + ?Sized),
    user: &UserRecord,
    password: &str,
    now_ms: i64,
) -> Result<(), UserError> {
    check_name(&user.name)?;
    check_password(password)?;
    let hash = hash_password(password)?;
    if !db.add_user(user, &hash, now_ms)? {
        return Err(UserError::Invalid(format!(
            "user {:?} exists already",
            user.name
        )));
    }
    Ok(())
}

/// Sets a user's password (ending their logins); `Invalid` when there is no such user.
pub fn set_password(
    db: &mut (impl Users + ?Sized),
    name: &str,
    password: &str,
) -> Result<(), UserError> {
    check_password(password)?;
    let hash = hash_password(password)?;
    if !db.set_password(name, &hash)? {
        return Err(UserError::Invalid(format!("no user {name:?}")));
    }
    Ok(())
}

/// The hash a login for `stored` is checked against: the user's, or the decoy when there is
/// no such user, so an unknown name costs the same argon2 verification as a known one.
pub fn hash_to_check(stored: Option<&StoredUser>) -> &str {
    stored.map_or(decoy_hash(), |s| s.password_hash.as_str())
}

/// Checks a name and password; the user when they match. Costs one argon2 verification
/// whether or not the user exists.
pub fn authenticate(
    db: &mut (impl Users + ?Sized),
    name: &str,
    password: &str,
) -> Result<Option<UserRecord>, StorageError> {
    let stored = if check_name(name).is_ok() {
        db.user(name)?
    } else {
        None
    };
    let ok = verify_password(password, hash_to_check(stored.as_ref()));
    Ok(stored.filter(|_| ok).map(|s| s.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_scopes_parse_and_print() {
        assert_eq!("viewer".parse::<UserRole>().unwrap(), UserRole::Viewer);
        assert_eq!("operator".parse::<UserRole>().unwrap(), UserRole::Operator);
        assert!("admin".parse::<UserRole>().is_err());
        assert_eq!("all".parse::<ClientScope>().unwrap(), ClientScope::All);
        let some: ClientScope = " 7, 2,2 ".parse().unwrap();
        assert_eq!(some, ClientScope::Only([2, 7].into()));
        assert_eq!(some.to_string(), "2,7");
        assert_eq!("none".parse::<ClientScope>().unwrap().to_string(), "none");
        let e = "1,x".parse::<ClientScope>().unwrap_err().to_string();
        assert!(e.contains("\"x\" is not a client id"), "{e}");
        assert!("-1".parse::<ClientScope>().is_err());
    }

    #[test]
    fn who_may_command_what() {
        let op = |clients| UserRecord {
            name: "o".into(),
            role: UserRole::Operator,
            clients,
        };
        assert!(op(ClientScope::All).may_command(9));
        assert!(op(ClientScope::Only([1, 2].into())).may_command(2));
        assert!(!op(ClientScope::Only([1, 2].into())).may_command(3));
        let viewer = UserRecord {
            role: UserRole::Viewer,
            ..op(ClientScope::All)
        };
        assert!(!viewer.may_command(1));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        for good in ["admin", "a.b-c_d@x", &"n".repeat(MAX_NAME)] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "has space",
            "semi;colon",
            "quote'",
            &"n".repeat(MAX_NAME + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("short").is_err());
        check_password("long enough").unwrap();
    }

    #[test]
    fn password_hashes_are_salted_argon2_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a random salt each time");
        assert!(verify_password("correct horse", &a));
        assert!(verify_password("correct horse", &b));
        assert!(!verify_password("correct horsE", &a));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn tokens_are_256_random_bits_stored_as_their_hash() {
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, new_token().unwrap());
        let h = token_hash(&t);
        assert_eq!(h.len(), 32);
        assert_eq!(h, token_hash(&t));
        assert_ne!(h, token_hash(&new_token().unwrap()));
        assert_eq!(random_password().unwrap().len(), 32);
    }
}
