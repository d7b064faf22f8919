//! `livecam user add|list|remove|passwd` against a database file, through the real binary,
//! and the two-command start: `livecam up` creates `admin` with a random password, prints it
//! once, and that password logs in to the web API.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use livecam_system::backend::users::{self, ClientScope, UserRole};
use serde_json::{json, Value};

fn livecam() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livecam"))
}

/// Runs `livecam user ARGS`, with `stdin` as its standard input.
fn user(args: &[&str], stdin: &str) -> Output {
    let mut child = livecam()
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start livecam user");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for livecam user")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", ok(out));
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn user_cli_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("users.db").display());
    let db = url.as_str();
    let pw_file = dir.path().join("bob-password");
    std::fs::write(&pw_file, "bob's password\n").unwrap();

    let out = user(
        &[
            "add",
            "alice",
            "--database",
            db,
            "--role",
            "operator",
            "--clients",
            "1,2",
        ],
        "alice's password\n",
    );
    assert_eq!(ok(&out), "added alice (operator, clients 1,2)\n");
    let pw = pw_file.to_str().unwrap();
    ok(&user(
        &["add", "bob", "--database", db, "--password-file", pw],
        "",
    ));
    assert_eq!(
        ok(&user(&["list", "--database", db], "")),
        "alice\toperator\t1,2\nbob\tviewer\tall\n"
    );

    // Refusals name what is wrong, and change nothing.
    let e = failed(&user(
        &["add", "alice", "--database", db],
        "another password\n",
    ));
    assert!(e.contains("user \"alice\" exists already"), "{e}");
    let e = failed(&user(&["add", "carol", "--database", db], "short\n"));
    assert!(e.contains("at least 8 characters"), "{e}");
    let e = failed(&user(
        &["add", "carol", "--database", db, "--role", "admin"],
        "",
    ));
    assert!(e.contains("role must be viewer or operator"), "{e}");
    let e = failed(&user(
        &["add", "carol", "--database", db, "--clients", "1,x"],
        "",
    ));
    assert!(e.contains("\"x\" is not a client id"), "{e}");
    let e = failed(&user(&["add", "carol", "--database", db], ""));
    assert!(e.contains("no password in stdin"), "{e}");
    let e = failed(&user(&["remove", "carol", "--database", db], ""));
    assert!(e.contains("no user \"carol\""), "{e}");
    let e = failed(&user(&["list", "--database", "mysql://h/db"], ""));
    assert!(e.contains("unknown scheme"), "{e}");

    // A new password replaces the old one; removal removes.
    ok(&user(
        &["passwd", "alice", "--database", db],
        "alice's new password\n",
    ));
    ok(&user(&["remove", "bob", "--database", db], ""));
    assert_eq!(
        ok(&user(&["list", "--database", db], "")),
        "alice\toperator\t1,2\n"
    );

    // What the binary stored is what the web login checks.
    let mut storage = livecam_system::backend::open(db).unwrap();
    assert!(
        users::authenticate(storage.as_mut(), "alice", "alice's password")
            .unwrap()
            .is_none()
    );
    let alice = users::authenticate(storage.as_mut(), "alice", "alice's new password")
        .unwrap()
        .expect("alice logs in");
    assert_eq!(alice.role, UserRole::Operator);
    assert_eq!(alice.clients, ClientScope::Only([1, 2].into()));
    assert!(
        users::authenticate(storage.as_mut(), "bob", "bob's password")
            .unwrap()
            .is_none()
    );
    let stored = storage.user("alice").unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"));
    assert!(!stored.password_hash.contains("alice's new password"));
}

/// `livecam up` with no options but its port and database: the password it prints logs in
/// to the web API as the operator `admin`.
#[test]
fn up_prints_an_admin_password_that_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut up = livecam()
        .args([
            "up",
            "--clients",
            "1",
            "--http",
            &http.to_string(),
            "--database",
        ])
        .arg(format!("sqlite:{}", dir.path().join("up.db").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("livecam up starts");
    let stderr = BufReader::new(up.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("livecam is up") {
                let _ = tx.send(line);
            }
        }
    });
    let checked = std::panic::catch_unwind(|| {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("livecam up prints where to log in");
        let password = line
            .split("password ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no password in {line:?}"))
            .to_string();
        assert_eq!(password.len(), 32, "{line}");
        let base = format!("http://{http}");
        let refused = ureq::get(&format!("{base}/api/clients")).call();
        assert!(
            matches!(refused, Err(ureq::Error::Status(401, _))),
            "no login, no API"
        );
        let login: Value = ureq::post(&format!("{base}/api/login"))
            .send_json(json!({"name": "admin", "password": password}))
            .expect("the printed password logs in")
            .into_json()
            .unwrap();
        assert_eq!(
            login["user"],
            json!({"name": "admin", "role": "operator", "clients": "all"})
        );
        let token = login["token"].as_str().unwrap();
        let clients: Value = ureq::get(&format!("{base}/api/clients"))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("the API with the token")
            .into_json()
            .unwrap();
        assert!(clients.is_array(), "{clients}");
    });
    let _ = up.kill();
    let _ = up.wait();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}
