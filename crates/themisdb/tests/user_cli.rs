//! `themisdb user …` and `themisdb apikey …` against a real server process: the
//! commands an operator types, their output and their exit codes.

mod common;

use std::process::{Command, Output};

use common::ServerProcess;

/// Runs `themisdb args…` with `THEMIS_URL` set to `url` (stdin empty).
fn themisdb(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .args(args)
        .env("THEMIS_URL", url)
        .env_remove("THEMIS_PASSWORD")
        .env_remove("THEMIS_API_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run themisdb")
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn users_keys_roles_and_sessions_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    let root = server.url();
    let addr = server.addr.to_string();

    // A user with a role, and a key for it, shown once.
    let out = themisdb(
        &root,
        &[
            "user",
            "create",
            "app",
            "--password",
            "app-secret-1",
            "--role",
            "_system=readwrite",
        ],
    );
    assert!(ok(&out, "user create").contains("app"));
    let out = themisdb(&root, &["apikey", "create", "--user", "app", "--json"]);
    let created: serde_json::Value = serde_json::from_str(&ok(&out, "apikey create")).unwrap();
    let key = created["key"]
        .as_str()
        .expect("the key is shown")
        .to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let listed = ok(
        &themisdb(&root, &["apikey", "list", "--user", "app"]),
        "apikey list",
    );
    assert!(listed.contains(&id), "{listed}");
    assert!(
        !listed.contains(&key),
        "a listing never shows the key: {listed}"
    );

    // Every command logs in with --api-key, query included.
    let bare = format!("themis://{addr}");
    let out = ok(
        &themisdb(
            &bare,
            &["query", "--api-key", &key, "RETURN CURRENT_USER()"],
        ),
        "query with a key",
    );
    assert!(out.contains("app"), "{out}");
    let out = ok(
        &themisdb(&bare, &["user", "whoami", "--api-key", &key]),
        "whoami with a key",
    );
    assert!(out.contains("API_KEY"), "{out}");

    // readwrite is not admin: the CLI reports the server's refusal and exits 1.
    let err = failed(
        &themisdb(
            &format!("themis://app:app-secret-1@{addr}"),
            &["user", "grant", "app", "_system", "admin"],
        ),
        "a self-grant",
    );
    assert!(err.contains("ERR_PERMISSION_DENIED"), "{err}");

    // Superuser on and off.
    let out = ok(
        &themisdb(&root, &["user", "superuser", "app", "true"]),
        "superuser on",
    );
    assert!(out.contains("superuser"), "{out}");
    ok(
        &themisdb(&root, &["user", "superuser", "app", "false"]),
        "superuser off",
    );

    // Ending sessions, and revoking the key: it stops working.
    let out = ok(
        &themisdb(&root, &["user", "end-sessions", "app"]),
        "end-sessions",
    );
    assert!(out.contains("ended"), "{out}");
    ok(
        &themisdb(&root, &["apikey", "revoke", &id]),
        "apikey revoke",
    );
    let err = failed(
        &themisdb(&bare, &["query", "--api-key", &key, "RETURN 1"]),
        "a revoked key",
    );
    assert!(err.contains("revoked"), "{err}");

    // Changing one's own password takes the current one: the login password.
    ok(
        &themisdb(
            &format!("themis://app:app-secret-1@{addr}"),
            &["user", "passwd", "app", "--password", "app-secret-2"],
        ),
        "own passwd",
    );
    ok(
        &themisdb(
            &format!("themis://app:app-secret-2@{addr}"),
            &["user", "whoami"],
        ),
        "login with the new password",
    );
    ok(&themisdb(&root, &["user", "drop", "app"]), "user drop");
    let listed = ok(&themisdb(&root, &["user", "list"]), "user list");
    assert!(!listed.contains("app"), "{listed}");
}
