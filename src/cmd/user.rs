//! `livecam user`: the users of the web API and UI.

use std::path::PathBuf;

use clap::Subcommand;

use livecam_system::backend::users::{ClientScope, UserRole};
use livecam_system::runtime::users::{run as run_users, UserAction};

/// The actions of `livecam user`.
#[derive(Subcommand)]
pub enum Action {
    /// Add a user: a viewer (reads only) or an operator (commands the clients given).
    Add {
        name: String,
        #[arg(long)]
        database: String,
        /// viewer or operator.
        #[arg(long, default_value = "viewer")]
        role: UserRole,
        /// The clients an operator may command: all, none or ids like 1,2,7.
        #[arg(long, default_value = "all")]
        clients: ClientScope,
        /// Read the password from this file's first line instead of stdin.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List the users: name, role, clients.
    List {
        #[arg(long)]
        database: String,
    },
    /// Remove a user and end their logins.
    Remove {
        name: String,
        #[arg(long)]
        database: String,
    },
    /// Set a user's password (from --password-file or stdin) and end their logins.
    Passwd {
        name: String,
        #[arg(long)]
        database: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// Runs the action against the database it names and prints what it reports.
pub fn run(action: Action) -> anyhow::Result<()> {
    let (database, action) = match action {
        Action::Add {
            name,
            database,
            role,
            clients,
            password_file,
        } => (
            database,
            UserAction::Add {
                name,
                role,
                clients,
                password_file,
            },
        ),
        Action::List { database } => (database, UserAction::List),
        Action::Remove { name, database } => (database, UserAction::Remove { name }),
        Action::Passwd {
            name,
            database,
            password_file,
        } => (
            database,
            UserAction::Passwd {
                name,
                password_file,
            },
        ),
    };
    let out = run_users(&database, &action)?;
    if !out.is_empty() {
        println!("{}", out.trim_end());
    }
    Ok(())
}
