//! The audit log: security-relevant events, one record per event.
//!
//! What is recorded: successful logins, failed logins, permission denials, changes
//! to users, roles and API keys, and session revocations — each with the time, the
//! event kind, the client address, the username, the authentication method when
//! there is one, and a human-readable detail.
//!
//! What is never recorded: secrets. Passwords, API keys, JWTs, session tokens and
//! password hashes must not be put in an [`AuditEvent`] (callers put a key's id or
//! a token's subject in `detail`, never the credential itself).
//!
//! Where it goes (`[security] audit_log`):
//! * unset: the server log, as `tracing` events with target `themis::audit`;
//! * a path: JSON lines appended to that file, created with mode 0600 on Unix:
//!
//! ```text
//! {"time":"2026-11-21T10:15:30.123Z","kind":"login_failed","peer":"127.0.0.1:5555","username":"alice","method":"USERNAME_PASSWORD","detail":"wrong password"}
//! ```
//!
//! `peer` and `method` are `null` when unknown. Every line is built by `serde_json`
//! (control characters in a username are escaped, so a record is always exactly one
//! line) and written with a single `write_all` under a mutex, so concurrent records
//! never interleave. Recording never panics: when the file cannot be written the
//! event goes to the server log instead and the failure is warned about once (again
//! only after a write has succeeded in between). [`AuditLog::reopen`] reopens the
//! path, for log rotation on SIGHUP.
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Where audit records go. `Send + Sync`; share one per server.
pub struct AuditLog {
    sink: Sink,
}

enum Sink {
    /// `tracing`, target `themis::audit`.
    Tracing,
    File(FileSink),
}

struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
    /// A write failed and was warned about; cleared by the next successful write.
    failing: AtomicBool,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sink {
            Sink::Tracing => f.write_str("AuditLog(server log)"),
            Sink::File(s) => write!(f, "AuditLog({})", s.path.display()),
        }
    }
}

/// One security event. Must never carry a secret (see the module documentation).
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// What happened, in snake_case: `login`, `login_failed`, `permission_denied`,
    /// `user_created`, `api_key_revoked`, `sessions_revoked`, ...
    pub kind: &'static str,
    /// The client's address, when the event comes from a connection.
    pub peer: Option<SocketAddr>,
    /// The user the event is about (for a failed login: the name that was tried).
    pub username: &'a str,
    /// The authentication method (`USERNAME_PASSWORD`, `API_KEY`, ...), if any.
    pub method: Option<&'a str>,
    /// Free text for people: what was denied, which key, why a login failed.
    pub detail: String,
}

impl AuditLog {
    /// `None`: records go to the server log (`tracing`, target `themis::audit`).
    /// `Some(path)`: JSON lines are appended to `path`, created with mode 0600 on
    /// Unix if missing (an existing file keeps its permissions). The parent
    /// directory must exist; errors name the path.
    pub fn open(path: Option<&Path>) -> io::Result<AuditLog> {
        let sink = match path {
            None => Sink::Tracing,
            Some(path) => Sink::File(FileSink {
                path: path.to_path_buf(),
                file: Mutex::new(open_file(path)?),
                failing: AtomicBool::new(false),
            }),
        };
        Ok(AuditLog { sink })
    }

    /// Records `event`: one JSON line, written and flushed before returning, or a
    /// `tracing` event. Never panics; a write failure sends the event to the server
    /// log and is warned about once.
    pub fn record(&self, event: AuditEvent<'_>) {
        let sink = match &self.sink {
            Sink::Tracing => return trace_event(&event),
            Sink::File(sink) => sink,
        };
        let mut line = json_line(&event);
        line.push('\n');
        let result = {
            let mut file = sink.file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(line.as_bytes()).and_then(|()| file.flush())
        };
        match result {
            Ok(()) => {
                if sink.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        path = %sink.path.display(),
                        "audit log is being written again"
                    );
                }
            }
            Err(e) => {
                if !sink.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        path = %sink.path.display(),
                        error = %e,
                        "cannot write the audit log; audit events go to the server log \
                         until it can be written again"
                    );
                }
                trace_event(&event);
            }
        }
    }

    /// Reopens the file at the same path (after log rotation moved it away), so
    /// later records go to a file at that path again. On error the old file stays
    /// in use. A no-op when records go to the server log.
    pub fn reopen(&self) -> io::Result<()> {
        if let Sink::File(sink) = &self.sink {
            let new = open_file(&sink.path)?;
            *sink.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
            sink.failing.store(false, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Opens `path` for appending, creating it with mode 0600; errors name the path.
fn open_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let hint = match parent {
            Some(dir) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
                format!(" (directory {} does not exist)", dir.display())
            }
            _ => String::new(),
        };
        io::Error::new(e.kind(), format!("audit log {}: {e}{hint}", path.display()))
    })
}

/// The record as one JSON object without a newline; `serde_json` escapes every
/// control character, so the result never contains a raw newline.
fn json_line(event: &AuditEvent<'_>) -> String {
    let value = serde_json::json!({
        "time": timestamp(time::OffsetDateTime::now_utc()),
        "kind": event.kind,
        "peer": event.peer.map(|p| p.to_string()),
        "username": event.username,
        "method": event.method,
        "detail": event.detail,
    });
    value.to_string()
}

/// `2026-11-21T10:15:30.123Z`: RFC 3339, UTC, milliseconds.
fn timestamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn trace_event(event: &AuditEvent<'_>) {
    let peer = event.peer.map(|p| p.to_string());
    tracing::info!(
        target: "themis::audit",
        kind = event.kind,
        peer = peer.as_deref(),
        username = event.username,
        method = event.method,
        detail = event.detail.as_str(),
        "audit"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event<'a>(username: &'a str, detail: &str) -> AuditEvent<'a> {
        AuditEvent {
            kind: "login_failed",
            peer: Some("127.0.0.1:5555".parse().expect("address")),
            username,
            method: Some("USERNAME_PASSWORD"),
            detail: detail.to_owned(),
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read audit log")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn lines_are_json_with_every_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(Some(&path)).expect("open");
        log.record(event("alice", "wrong password"));
        log.record(AuditEvent {
            kind: "user_created",
            peer: None,
            username: "bob",
            method: None,
            detail: String::new(),
        });
        let lines = lines(&path);
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(v["kind"], "login_failed");
        assert_eq!(v["peer"], "127.0.0.1:5555");
        assert_eq!(v["username"], "alice");
        assert_eq!(v["method"], "USERNAME_PASSWORD");
        assert_eq!(v["detail"], "wrong password");
        let time = v["time"].as_str().expect("time");
        assert_eq!(time.len(), "2026-11-21T10:15:30.123Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(
            keys,
            ["time", "kind", "peer", "username", "method", "detail"]
        );
        let v: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
        assert!(v["peer"].is_null() && v["method"].is_null());
        assert_eq!(v["username"], "bob");
    }

    #[test]
    fn timestamp_format() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_795_256_130_123_456_789)
            .expect("time");
        assert_eq!(timestamp(t), "2026-11-21T10:15:30.123Z");
    }

    #[cfg(unix)]
    #[test]
    fn file_is_created_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let _log = AuditLog::open(Some(&path)).expect("open");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing").join("audit.log");
        let err = AuditLog::open(Some(&path)).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
    }

    #[test]
    fn concurrent_records_give_intact_lines() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 500;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(Some(&path)).expect("open"));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let name = format!("user{t}");
                    for i in 0..PER_THREAD {
                        log.record(event(&name, &format!("{i} {}", "x".repeat(200))));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let lines = lines(&path);
        assert_eq!(lines.len(), THREADS * PER_THREAD);
        let mut per_user = [0usize; THREADS];
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).expect("intact line");
            let name = v["username"].as_str().expect("username");
            let t: usize = name["user".len()..].parse().expect("thread number");
            per_user[t] += 1;
        }
        assert!(per_user.iter().all(|&n| n == PER_THREAD));
    }

    #[test]
    fn reopen_after_rename_writes_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let rotated = dir.path().join("audit.log.1");
        let log = AuditLog::open(Some(&path)).expect("open");
        log.record(event("before", ""));
        std::fs::rename(&path, &rotated).expect("rename");
        // Until reopened, records follow the renamed file.
        log.record(event("between", ""));
        log.reopen().expect("reopen");
        log.record(event("after", ""));
        let old = lines(&rotated);
        let new = lines(&path);
        assert_eq!(old.len(), 2);
        assert!(old[0].contains("\"before\"") && old[1].contains("\"between\""));
        assert_eq!(new.len(), 1);
        assert!(new[0].contains("\"after\""));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn control_characters_stay_on_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(Some(&path)).expect("open");
        let name = "evil\n{\"kind\":\"login\"}\r\u{1b}[31m\u{0}";
        log.record(event(name, "line1\nline2"));
        let lines = lines(&path);
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(v["username"], name);
        assert_eq!(v["detail"], "line1\nline2");
    }

    #[test]
    fn tracing_sink_accepts_records_and_reopen_is_a_no_op() {
        let log = AuditLog::open(None).expect("open");
        log.record(event("alice", "ok"));
        log.reopen().expect("reopen");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_errors_do_not_panic() {
        // /dev/full fails every write with ENOSPC.
        if !Path::new("/dev/full").exists() {
            return;
        }
        let log = AuditLog::open(Some(Path::new("/dev/full"))).expect("open");
        for _ in 0..3 {
            log.record(event("alice", "x"));
        }
        if let Sink::File(s) = &log.sink {
            assert!(s.failing.load(Ordering::Relaxed));
        }
    }
}
