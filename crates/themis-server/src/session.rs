//! Users, password checks and session tokens.
//!
//! Passwords are stored only as bcrypt hashes (in the storage meta space). A successful
//! handshake creates a session: a random 256-bit token bound to a user, the way it
//! logged in, its roles and a default database, valid for `session_ttl` (and never
//! past the expiry of the JWT or API key it came from). A client that reconnects may
//! present the token instead of credentials. Sessions live in memory: after a server
//! restart a client authenticates again with its credentials.
//!
//! A session's roles follow the user's: granting or revoking a role updates every live
//! session of that user at once. Revoking a session (dropping its user, revoking its
//! API key, ADMIN revoke_sessions) ends it everywhere: its connections are closed at
//! their next request and its token can no longer be resumed.
//!
//! bcrypt is deliberately slow, so checks run on the blocking pool, never on a tokio
//! worker. An unknown user costs the same bcrypt work as a wrong password, so response
//! time does not reveal which users exist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use themis_proto::wire::AuthMethod;
use themis_storage::{DocumentStore, UserRecord, WaitDurable};
use tracing::{info, warn};

use crate::auth::Roles;
use crate::Config;

/// The superuser created on first start.
pub const ROOT_USER: &str = "root";
/// File in the data directory holding a generated root password (mode 0600).
pub const ROOT_PASSWORD_FILE: &str = "root-password";

/// An authenticated principal bound to a connection.
#[derive(Debug)]
pub struct Session {
    pub token: String,
    pub username: String,
    pub database: String,
    pub expires_at_ms: u64,
    /// How the user proved who they are.
    pub method: AuthMethod,
    /// The API key it logged in with, if any.
    pub api_key_id: Option<String>,
    roles: RwLock<Arc<Roles>>,
    /// Set once when the session is revoked; connections wait on it.
    revoked: tokio::sync::watch::Sender<bool>,
}

impl Session {
    /// The user's roles now (they change when an admin grants or revokes one).
    pub fn roles(&self) -> Arc<Roles> {
        self.roles.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_roles(&self, roles: Arc<Roles>) {
        *self.roles.write().unwrap_or_else(|p| p.into_inner()) = roles;
    }

    /// Whether the session was revoked; its connections stop serving it.
    pub fn is_revoked(&self) -> bool {
        *self.revoked.borrow()
    }

    /// Resolves when the session is revoked or expires; says which (the GOAWAY
    /// reason). A connection waits on this to close at once, not at its next frame.
    pub async fn ended(&self) -> &'static str {
        let mut revoked = self.revoked.subscribe();
        let expires = std::time::Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms()));
        tokio::select! {
            _ = revoked.wait_for(|r| *r) => "session_revoked",
            _ = tokio::time::sleep(expires) => "session_expired",
        }
    }
}

/// What a successful login establishes.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub method: AuthMethod,
    pub api_key_id: Option<String>,
    pub roles: Roles,
    /// The credential's own expiry (JWT `exp`, API key expiry), if it has one: the
    /// session ends then at the latest.
    pub not_after_ms: Option<u64>,
}

/// Live sessions by token.
pub struct SessionRegistry {
    ttl: Duration,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Size of the map at which `create` next sweeps out expired sessions.
    prune_at: std::sync::atomic::AtomicUsize,
}

/// The smallest map `create` sweeps.
const MIN_PRUNE_AT: usize = 1024;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SessionRegistry {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sessions: Mutex::new(HashMap::new()),
            prune_at: std::sync::atomic::AtomicUsize::new(MIN_PRUNE_AT),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        // A panic while holding this lock leaves the map consistent (single inserts
        // and removes), so a poisoned lock is safe to keep using.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a session for `login` with default database `database`.
    pub fn create(&self, login: Login, database: &str) -> Arc<Session> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let ttl_end = now_ms().saturating_add(self.ttl.as_millis() as u64);
        let session = Arc::new(Session {
            token: hex::encode(raw),
            username: login.username,
            database: database.to_string(),
            expires_at_ms: login.not_after_ms.map_or(ttl_end, |t| t.min(ttl_end)),
            method: login.method,
            api_key_id: login.api_key_id,
            roles: RwLock::new(Arc::new(login.roles)),
            revoked: tokio::sync::watch::channel(false).0,
        });
        let mut map = self.lock();
        // Expired sessions are dropped whenever the map has doubled since the last
        // sweep: amortised O(1) per login instead of a scan each time.
        let prune_at = self.prune_at.load(std::sync::atomic::Ordering::Relaxed);
        if map.len() >= prune_at {
            let now = now_ms();
            map.retain(|_, s| s.expires_at_ms > now);
            self.prune_at.store(
                (map.len() * 2).max(MIN_PRUNE_AT),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        map.insert(session.token.clone(), session.clone());
        session
    }

    /// A new session like `session` (same user, roles, method and expiry) with
    /// another default database.
    pub fn with_database(&self, session: &Session, database: &str) -> Arc<Session> {
        let login = Login {
            username: session.username.clone(),
            method: session.method,
            api_key_id: session.api_key_id.clone(),
            roles: (*session.roles()).clone(),
            not_after_ms: Some(session.expires_at_ms),
        };
        self.create(login, database)
    }

    /// The live session with this token, if any.
    pub fn resume(&self, token: &str) -> Option<Arc<Session>> {
        let mut map = self.lock();
        let session = map.get(token)?.clone();
        if session.expires_at_ms <= now_ms() || session.is_revoked() {
            map.remove(token);
            return None;
        }
        Some(session)
    }

    /// Gives every live session of `username` its new roles.
    pub fn update_roles(&self, username: &str, roles: &Roles) {
        let roles = Arc::new(roles.clone());
        for s in self.lock().values().filter(|s| s.username == username) {
            s.set_roles(roles.clone());
        }
    }

    /// Revokes every session `matches` selects; returns how many.
    pub fn revoke_where(&self, matches: impl Fn(&Session) -> bool) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| {
            if matches(s) {
                s.revoked.send_replace(true);
                false
            } else {
                true
            }
        });
        before - map.len()
    }
}

/// Checks `password` against `username`'s stored hash on the blocking pool; the
/// user's record when it matches.
pub(crate) async fn verify_password(
    store: &Arc<DocumentStore>,
    username: &str,
    password: &str,
    cost: u32,
) -> Result<Option<UserRecord>, String> {
    // A name no user can have (too long, control characters) is an unknown user: the
    // same answer after the same work as any other.
    let user = match store.get_user(username) {
        Ok(user) => user,
        Err(themis_storage::StorageError::InvalidArgument(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    let password = password.to_string();
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || {
        // An unknown user is checked against a hash of a random password, so it costs
        // the same bcrypt work as a wrong password.
        let hash = stored.unwrap_or_else(|| dummy_hash(cost).to_string());
        bcrypt::verify(password, &hash).unwrap_or(false)
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(user.filter(|_| ok))
}

/// A hash of a random password at `cost`, checked for unknown users. Built once at
/// start (see [`bootstrap_root`]), so the first unknown user costs no extra hashing.
fn dummy_hash(cost: u32) -> &'static str {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    DUMMY_HASH.get_or_init(|| {
        let random = Alphanumeric.sample_string(&mut rand::rng(), 24);
        bcrypt::hash(random, cost).unwrap_or_default()
    })
}

/// Hashes a password with the configured bcrypt cost, on the blocking pool.
pub(crate) async fn hash_password(password: &str, cost: u32) -> Result<String, String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Creates the `root` superuser when it does not exist yet (first start on an empty
/// data directory). Its password is `root_password` (from `THEMIS_ROOT_PASSWORD`), or
/// generated, printed once on stderr and written to `<data_dir>/root-password` (0600).
pub(crate) async fn bootstrap_root(
    store: &Arc<DocumentStore>,
    config: &Config,
    root_password: Option<String>,
) -> Result<(), String> {
    let cost = config.server.bcrypt_cost;
    tokio::task::spawn_blocking(move || {
        dummy_hash(cost);
    })
    .await
    .map_err(|e| e.to_string())?;
    if store
        .get_user(ROOT_USER)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let (password, generated) = match root_password.filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None => (Alphanumeric.sample_string(&mut rand::rng(), 24), true),
    };
    let record = UserRecord {
        name: ROOT_USER.to_string(),
        password_hash: hash_password(&password, config.server.bcrypt_cost).await?,
        roles: Roles {
            superuser: true,
            ..Roles::default()
        }
        .to_value(),
        created_at_ms: now_ms(),
    };
    if generated {
        let path = config.server.data_dir.join(ROOT_PASSWORD_FILE);
        write_secret_file(&path, &password)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!(
            "\n  ThemisDB created user 'root' with generated password: {password}\n  \
             (also saved to {}, readable only by you; store it safely, then delete that file.\n  \
             Set THEMIS_ROOT_PASSWORD before the first start to choose it yourself.)\n",
            path.display()
        );
        info!(file = %path.display(), "created user 'root' with a generated password");
    } else {
        info!("created user 'root' with the password from THEMIS_ROOT_PASSWORD");
    }
    store
        .put_user(&record)
        .wait()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The file may have existed with wider permissions.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            warn!(error = %e, "could not sync the data directory");
        }
    }
    Ok(())
}
