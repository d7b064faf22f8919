//! `livecam user add|list|remove|passwd --database URL`: the users of the web API and UI
//! ([`crate::backend::users`]), and the `admin` account the backend and `livecam up` create.
//!
//! Passwords never come from the command line (other users of the host could read it there):
//! they are read from a file (`--password-file`) or, without one, from the first line of
//! standard input.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::backend::users::{self, ClientScope, UserError, UserRecord, UserRole, Users};
use crate::backend::Storage;

/// The account `livecam up` and a backend with `admin_password_file` create.
pub const ADMIN: &str = "admin";

/// What `livecam user` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// Adds a user; the password from `password_file`, or from stdin.
    Add {
        name: String,
        role: UserRole,
        clients: ClientScope,
        password_file: Option<PathBuf>,
    },
    /// Lists the users, one a line: name, role, clients.
    List,
    Remove {
        name: String,
    },
    /// Sets a user's password (from `password_file` or stdin) and ends their logins.
    Passwd {
        name: String,
        password_file: Option<PathBuf>,
    },
}

/// The first line of `file`, or of standard input without one; its line ending removed.
pub fn read_password(file: Option<&Path>) -> Result<String, UserError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            UserError::Invalid(format!("reading password file {}: {e}", path.display()))
        })?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| UserError::Invalid(format!("reading a password from stdin: {e}")))?;
            line
        }
    };
    let first = text.lines().next().unwrap_or("");
    if first.is_empty() {
        let from = file.map_or("stdin".to_string(), |p| p.display().to_string());
        return Err(UserError::Invalid(format!("no password in {from}")));
    }
    Ok(first.to_string())
}

/// Runs one `livecam user` action on an open database; what to print.
pub fn run_on(db: &mut dyn Storage, action: &UserAction, now_ms: i64) -> Result<String, UserError> {
    match action {
        UserAction::Add {
            name,
            role,
            clients,
            password_file,
        } => {
            users::check_name(name)?;
            let password = read_password(password_file.as_deref())?;
            let user = UserRecord {
                name: name.clone(),
                role: *role,
                clients: clients.clone(),
            };
            users::add_user(db, &user, &password, now_ms)?;
            Ok(format!("added {name} ({role}, clients {clients})"))
        }
        UserAction::List => Ok(db
            .users()?
            .iter()
            .map(|u| format!("{}\t{}\t{}\n", u.name, u.role, u.clients))
            .collect()),
        UserAction::Remove { name } => {
            if !db.remove_user(name)? {
                return Err(UserError::Invalid(format!("no user {name:?}")));
            }
            Ok(format!("removed {name}"))
        }
        UserAction::Passwd {
            name,
            password_file,
        } => {
            let password = read_password(password_file.as_deref())?;
            users::set_password(db, name, &password)?;
            Ok(format!("password of {name} changed; their logins ended"))
        }
    }
}

/// Opens the database `url` names and runs `action` on it.
pub fn run(url: &str, action: &UserAction) -> Result<String, UserError> {
    let mut db = crate::backend::open(url)?;
    run_on(db.as_mut(), action, super::backhaul::unix_ms())
}

/// Makes sure the operator [`ADMIN`] (every client) exists with `password`. An existing one
/// keeps its password unless `reset`. Returns whether it was created.
pub fn ensure_admin(
    db: &mut (impl Users + ?Sized),
    password: &str,
    reset: bool,
    now_ms: i64,
) -> Result<bool, UserError> {
    if db.user(ADMIN)?.is_some() {
        if reset {
            users::set_password(db, ADMIN, password)?;
        }
        return Ok(false);
    }
    let admin = UserRecord {
        name: ADMIN.to_string(),
        role: UserRole::Operator,
        clients: ClientScope::All,
    };
    users::add_user(db, &admin, password, now_ms)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_on_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "first password\nignored second line\n").unwrap();
        let mut db = crate::backend::open("sqlite::memory:").unwrap();
        let add = |name: &str, role, clients: &str| UserAction::Add {
            name: name.into(),
            role,
            clients: clients.parse().unwrap(),
            password_file: Some(pw.clone()),
        };
        let out = run_on(db.as_mut(), &add("ops", UserRole::Operator, "1,2"), 1).unwrap();
        assert_eq!(out, "added ops (operator, clients 1,2)");
        run_on(db.as_mut(), &add("eve", UserRole::Viewer, "all"), 1).unwrap();
        let e = run_on(db.as_mut(), &add("ops", UserRole::Viewer, "all"), 1).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        let e = run_on(db.as_mut(), &add("bad name", UserRole::Viewer, "all"), 1).unwrap_err();
        assert!(e.to_string().contains("user name must be"), "{e}");
        assert_eq!(
            run_on(db.as_mut(), &UserAction::List, 1).unwrap(),
            "eve\tviewer\tall\nops\toperator\t1,2\n"
        );
        assert!(users::authenticate(db.as_mut(), "ops", "first password")
            .unwrap()
            .is_some());

        std::fs::write(&pw, "second password").unwrap();
        let passwd = UserAction::Passwd {
            name: "ops".into(),
            password_file: Some(pw.clone()),
        };
        run_on(db.as_mut(), &passwd, 2).unwrap();
        assert!(users::authenticate(db.as_mut(), "ops", "first password")
            .unwrap()
            .is_none());
        assert!(users::authenticate(db.as_mut(), "ops", "second password")
            .unwrap()
            .is_some());

        let remove = UserAction::Remove { name: "ops".into() };
        assert_eq!(run_on(db.as_mut(), &remove, 3).unwrap(), "removed ops");
        assert!(run_on(db.as_mut(), &remove, 3).is_err());

        std::fs::write(&pw, "short\n").unwrap();
        let e = run_on(db.as_mut(), &add("sam", UserRole::Viewer, "all"), 1).unwrap_err();
        assert!(e.to_string().contains("at least 8"), "{e}");
        std::fs::write(&pw, "\n").unwrap();
        let e = run_on(db.as_mut(), &add("sam", UserRole::Viewer, "all"), 1).unwrap_err();
        assert!(e.to_string().contains("no password in"), "{e}");
        let missing = UserAction::Passwd {
            name: "eve".into(),
            password_file: Some(dir.path().join("missing")),
        };
        let e = run_on(db.as_mut(), &missing, 1).unwrap_err();
        assert!(e.to_string().contains("reading password file"), "{e}");
    }

    #[test]
    fn a_bad_admin_password_file_is_a_config_error_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        for (file, needle) in [
            (dir.path().join("missing"), "reading password file"),
            (short, "at least 8"),
        ] {
            let cfg = dir.path().join("backend.toml");
            std::fs::write(
                &cfg,
                format!(
                    "database = \"sqlite::memory:\"\nadmin_password_file = \"{}\"\n",
                    file.display()
                ),
            )
            .unwrap();
            let e = crate::runtime::backend::BackendFile::load(&cfg)
                .unwrap_err()
                .to_string();
            assert!(e.contains("admin_password_file"), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn the_admin_is_created_once_and_reset_only_when_asked() {
        let mut db = crate::backend::open("sqlite::memory:").unwrap();
        assert!(ensure_admin(db.as_mut(), "password one", false, 1).unwrap());
        assert!(!ensure_admin(db.as_mut(), "password two", false, 2).unwrap());
        let check = |db: &mut Box<dyn Storage>, pw| {
            users::authenticate(db.as_mut(), ADMIN, pw)
                .unwrap()
                .is_some()
        };
        assert!(check(&mut db, "password one"));
        assert!(!ensure_admin(db.as_mut(), "password two", true, 3).unwrap());
        assert!(check(&mut db, "password two"));
        let admin = db.user(ADMIN).unwrap().unwrap().user;
        assert_eq!(admin.role, UserRole::Operator);
        assert_eq!(admin.clients, ClientScope::All);
    }
}
