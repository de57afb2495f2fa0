//! OP_HANDSHAKE: version negotiation, authentication, session creation or resumption.
//!
//! Version rule (contract §6): the major version must match; the server answers the
//! highest minor it supports. An empty `protocol_version` is taken as "1.0" (seed 000's
//! only version).

use std::net::SocketAddr;
use std::sync::Arc;

use themis_proto::wire::{self, AuthMethod, ErrorCode, HandshakeRequest, HandshakeResponse};
use themis_proto::{features, ErrorExt, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use themis_storage::SYSTEM_DATABASE;
use tracing::{debug, info, warn};

use crate::audit::AuditEvent;
use crate::auth::apikey;
use crate::auth::certificate::username_from_certificate;
use crate::auth::Roles;
use crate::config::SecurityConfig;
use crate::session::{now_ms, verify_password, Login, Session};
use crate::Shared;

use super::fail;

/// Features this server version serves.
pub const SERVER_FEATURES: u64 = features::MULTIPLEXING
    | features::CURSORS
    | features::TRANSACTIONS
    | features::SUBSCRIPTIONS
    | features::BULK_WRITES
    | features::ADMIN
    | features::REQUEST_KEYS;

/// Runs a handshake; on success also returns the session to bind the connection to.
/// `client_cert` is the DER certificate the client presented in the TLS handshake.
pub(crate) async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    client_cert: Option<&[u8]>,
    req: HandshakeRequest,
) -> (HandshakeResponse, Option<Arc<Session>>) {
    match authenticate(shared, peer, client_cert, &req).await {
        Ok(session) => {
            let client_features = if req.client_features == 0 {
                // A client that sends no bitmask (seed 000's messages have none) is told
                // everything the server offers.
                SERVER_FEATURES
            } else {
                req.client_features & SERVER_FEATURES
            };
            let resp = HandshakeResponse {
                success: true,
                session_token: session.token.clone(),
                server_info: Some(wire::ServerInfo {
                    server_version: crate::SERVER_VERSION.to_string(),
                    protocol_version: format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"),
                    features: client_features,
                    max_frame_bytes: shared.codec.max_frame_bytes(),
                    node_id: shared.node_id.clone(),
                    idle_timeout_ms: shared
                        .config
                        .wire
                        .idle_timeout
                        .as_millis()
                        .min(u32::MAX as u128) as u32,
                    username: session.username.clone(),
                    database: session.database.clone(),
                    session_expires_at_ms: session.expires_at_ms,
                }),
                ..Default::default()
            };
            (resp, Some(session))
        }
        Err(e) => (fail(e), None),
    }
}

fn check_version(version: &str) -> Result<(), wire::Error> {
    let version = if version.is_empty() { "1.0" } else { version };
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse::<u32>().ok());
    if major == Some(PROTOCOL_MAJOR) {
        return Ok(());
    }
    Err(wire::Error::new(
        ErrorCode::ErrUnsupportedVersion,
        format!(
            "protocol version '{version}' is not supported: this server speaks {PROTOCOL_MAJOR}.0 to {PROTOCOL_MAJOR}.{PROTOCOL_MINOR} (supported majors: {PROTOCOL_MAJOR})"
        ),
    ))
}

async fn authenticate(
    shared: &Shared,
    peer: SocketAddr,
    client_cert: Option<&[u8]>,
    req: &HandshakeRequest,
) -> Result<Arc<Session>, wire::Error> {
    check_version(&req.protocol_version)?;
    let database = if req.database.is_empty() {
        SYSTEM_DATABASE
    } else {
        req.database.as_str()
    };

    if !req.session_token.is_empty() {
        let Some(session) = shared.sessions.resume(&req.session_token) else {
            warn!(%peer, "session resume failed: unknown, expired or revoked token");
            return Err(wire::Error::new(
                ErrorCode::ErrAuthFailed,
                "session token unknown, expired or revoked (sessions end after session_ttl, with their credential, when revoked, and with a server restart): handshake again with credentials",
            ));
        };
        if req.database.is_empty() || req.database == session.database {
            return Ok(session);
        }
        // Resuming keeps the user but may choose another default database. Under the
        // user-admin lock, so a revocation cannot slip in between.
        let _serial = shared.user_admin.lock().await;
        if session.is_revoked() {
            return Err(wire::Error::new(
                ErrorCode::ErrAuthFailed,
                "session token revoked: handshake again with credentials",
            ));
        }
        check_database(shared, peer, &session.username, &session.roles(), database)?;
        return Ok(shared.sessions.with_database(&session, database));
    }

    let method = AuthMethod::try_from(req.auth_method).map_err(|_| {
        wire::Error::new(
            ErrorCode::ErrInvalidArgument,
            format!(
                "unknown auth_method {}: use USERNAME_PASSWORD (0), API_KEY (1), JWT (2) or CERTIFICATE (3)",
                req.auth_method
            ),
        )
    })?;
    check_enabled(&shared.config.security, method)?;
    // What failures are counted against besides the address: the claimed user, or
    // the key. A JWT or certificate names its user only once verified, so their
    // failures count against the method at this address (never against every JWT
    // login: junk tokens from one address must not slow down everyone's).
    let claimed = match method {
        AuthMethod::UsernamePassword => req.username.clone(),
        AuthMethod::ApiKey => match apikey::parse(&req.api_key) {
            Ok((id, _)) => apikey::prefix(id),
            Err(_) => format!("api-key@{}", peer.ip()),
        },
        AuthMethod::Jwt => format!("jwt@{}", peer.ip()),
        AuthMethod::Certificate => format!("certificate@{}", peer.ip()),
    };
    // Never longer than the handshake may take: the client gives up about then.
    let delay = shared
        .throttle
        .delay(peer.ip(), &claimed)
        .min(shared.config.wire.handshake_timeout);
    if !delay.is_zero() {
        debug!(%peer, username = %claimed, delay_ms = delay.as_millis() as u64, "login throttled after failed attempts");
        tokio::time::sleep(delay).await;
    }
    let verified = match verify(shared, method, client_cert, req).await {
        // Finished under the user-admin lock: a role change, password change, key
        // revocation or user drop that ran while the credentials were checked (bcrypt
        // takes a while) is seen here, and one that comes later finds the session.
        Ok(verified) => {
            let serial = shared.user_admin.lock().await;
            recheck(shared, verified).map(|login| (login, serial))
        }
        Err(refused) => Err(refused),
    };
    let (login, _serial) = match verified {
        Ok(done) => done,
        Err(Refused {
            username,
            reason,
            message,
        }) => {
            shared.throttle.failed(peer.ip(), &claimed);
            let username = username.unwrap_or(claimed);
            warn!(%peer, ?username, method = method.as_str_name(), %reason, "authentication failed");
            shared.audit.record(AuditEvent {
                kind: "login_failed",
                peer: Some(peer),
                username: &username,
                method: Some(method.as_str_name()),
                detail: reason,
            });
            return Err(wire::Error::new(ErrorCode::ErrAuthFailed, message));
        }
    };
    shared.throttle.succeeded(peer.ip(), &claimed);
    check_database(shared, peer, &login.username, &login.roles, database)?;
    info!(%peer, username = %login.username, method = method.as_str_name(), database, "authenticated");
    shared.audit.record(AuditEvent {
        kind: "login",
        peer: Some(peer),
        username: &login.username,
        method: Some(method.as_str_name()),
        detail: format!("database {database}"),
    });
    Ok(shared.sessions.create(login, database))
}

/// A refused login: what the log and audit record (`reason`, never a secret) and
/// what the client is told (`message`).
struct Refused {
    username: Option<String>,
    reason: String,
    message: String,
}

impl Refused {
    fn new(username: Option<&str>, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Refused {
            username: username.map(str::to_string),
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A refusal whose reason may be told to the client as it is.
    fn plain(username: Option<&str>, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Refused::new(
            username,
            reason.clone(),
            format!("authentication failed: {reason}"),
        )
    }
}

fn check_enabled(security: &SecurityConfig, method: AuthMethod) -> Result<(), wire::Error> {
    let methods = [
        (
            AuthMethod::UsernamePassword,
            security.password_auth,
            "enable_password_auth",
        ),
        (
            AuthMethod::ApiKey,
            security.api_key_auth,
            "enable_api_key_auth",
        ),
        (AuthMethod::Jwt, security.jwt_auth, "enable_jwt_auth"),
        (
            AuthMethod::Certificate,
            security.certificate_auth,
            "enable_certificate_auth",
        ),
    ];
    let (_, enabled, key) = methods
        .iter()
        .find(|(m, _, _)| *m == method)
        .copied()
        .unwrap_or((method, false, "?"));
    if enabled {
        return Ok(());
    }
    let others: Vec<&str> = methods
        .iter()
        .filter(|(_, on, _)| *on)
        .map(|(m, _, _)| m.as_str_name())
        .collect();
    Err(wire::Error::new(
        ErrorCode::ErrAuthFailed,
        format!(
            "auth method {} is disabled on this server ([security] {key} = false): use {}",
            method.as_str_name(),
            others.join(" or ")
        ),
    ))
}

/// Credentials that checked out, and what they were checked against.
struct Verified {
    login: Login,
    /// The password hash a password login matched.
    password_hash: Option<String>,
}

/// Reads the user (and key) again, under the user-admin lock: the login stands only
/// if nothing it relied on changed meanwhile, and takes the user's roles of now.
fn recheck(shared: &Shared, verified: Verified) -> Result<Login, Refused> {
    let Verified {
        mut login,
        password_hash,
    } = verified;
    let user = existing_user(shared, &login.username)?;
    if password_hash.is_some_and(|h| h != user.password_hash) {
        return Err(Refused::plain(
            Some(&login.username),
            "the password was changed during the login: log in with the new one",
        ));
    }
    if let Some(id) = &login.api_key_id {
        let revoked = match shared.store.get_api_key(id) {
            Ok(Some(key)) => key.revoked_at_ms.is_some(),
            _ => true,
        };
        if revoked {
            return Err(Refused::plain(
                Some(&login.username),
                format!("API key {} was revoked", apikey::prefix(id)),
            ));
        }
    }
    login.roles = Roles::from_value(&user.roles);
    Ok(login)
}

/// Checks the credentials of `method`; the login they establish.
async fn verify(
    shared: &Shared,
    method: AuthMethod,
    client_cert: Option<&[u8]>,
    req: &HandshakeRequest,
) -> Result<Verified, Refused> {
    let now = now_ms();
    let (user, api_key_id, not_after_ms) = match method {
        AuthMethod::UsernamePassword => {
            if req.username.is_empty() {
                return Err(Refused::plain(
                    None,
                    "username is empty: USERNAME_PASSWORD needs username and password",
                ));
            }
            let user = verify_password(
                &shared.store,
                &req.username,
                &req.password,
                shared.config.server.bcrypt_cost,
            )
            .await
            .map_err(|e| {
                Refused::plain(
                    Some(&req.username),
                    format!("cannot check credentials: {e}"),
                )
            })?;
            let user = user.ok_or_else(|| {
                Refused::new(
                    Some(&req.username),
                    "unknown user or wrong password",
                    "authentication failed: unknown user or wrong password",
                )
            })?;
            (user, None, None)
        }
        AuthMethod::ApiKey => {
            let (id, secret) = apikey::parse(&req.api_key).map_err(|e| Refused::plain(None, e))?;
            let record = shared
                .store
                .get_api_key(id)
                .map_err(|e| Refused::plain(None, format!("cannot check the API key: {e}")))?
                .ok_or_else(|| {
                    Refused::plain(
                        None,
                        format!("unknown API key {}: check the key, or create one with `themisdb apikey create`", apikey::prefix(id)),
                    )
                })?;
            apikey::verify(&record, secret, now)
                .map_err(|e| Refused::plain(Some(&record.username), e))?;
            let user = existing_user(shared, &record.username)?;
            if record.created_at_ms < user.created_at_ms {
                // Made for an earlier user of the same name (dropped since).
                return Err(Refused::plain(
                    Some(&record.username),
                    format!(
                        "API key {} belongs to an earlier user named '{}', dropped since: create a new key",
                        apikey::prefix(&record.id),
                        record.username
                    ),
                ));
            }
            (user, Some(record.id), record.expires_at_ms)
        }
        AuthMethod::Jwt => {
            let Some(verifier) = shared.jwt.as_ref() else {
                return Err(Refused::plain(None, "JWT login is not configured"));
            };
            let claims = verifier
                .verify(&req.jwt_token)
                .map_err(|e| Refused::plain(None, e))?;
            let user = existing_user(shared, &claims.sub)?;
            // A token accepted within the leeway after its exp gets that leeway.
            let leeway = shared.config.security.jwt_leeway.as_millis() as u64;
            (user, None, Some(claims.exp_ms.saturating_add(leeway)))
        }
        AuthMethod::Certificate => {
            let Some(der) = client_cert else {
                return Err(Refused::plain(
                    None,
                    "no client certificate: CERTIFICATE login needs a TLS connection that presents a client certificate signed by the server's client CA (tls_ca_cert_path)",
                ));
            };
            let name = username_from_certificate(der, shared.config.security.certificate_username)
                .map_err(|e| Refused::plain(None, e))?;
            if !req.username.is_empty() && req.username != name {
                return Err(Refused::plain(
                    Some(&req.username),
                    format!("the client certificate names user '{name}', not '{}': leave username empty or send '{name}'", req.username),
                ));
            }
            (existing_user(shared, &name)?, None, None)
        }
    };
    Ok(Verified {
        password_hash: (method == AuthMethod::UsernamePassword).then(|| user.password_hash.clone()),
        login: Login {
            roles: Roles::from_value(&user.roles),
            username: user.name,
            method,
            api_key_id,
            not_after_ms,
        },
    })
}

/// The user a verified credential names; it must exist (roles live there).
fn existing_user(shared: &Shared, name: &str) -> Result<themis_storage::UserRecord, Refused> {
    match shared.store.get_user(name) {
        Ok(Some(user)) => Ok(user),
        Ok(None) | Err(themis_storage::StorageError::InvalidArgument(_)) => Err(Refused::plain(
            Some(name),
            format!("user '{name}' does not exist: a superuser creates it with `themisdb user create {name}` (roles are kept there)"),
        )),
        Err(e) => Err(Refused::plain(Some(name), format!("cannot look the user up: {e}"))),
    }
}

/// The connection's default database must exist, and the user must hold a role on it
/// (every user may use `_system` as the default; each request is checked anyway).
fn check_database(
    shared: &Shared,
    peer: SocketAddr,
    username: &str,
    roles: &Roles,
    name: &str,
) -> Result<(), wire::Error> {
    // The role first: a user learns nothing about databases they hold no role on,
    // not even whether they exist.
    if name == SYSTEM_DATABASE || roles.sees(name) {
        return ensure_database(shared, name);
    }
    shared.audit.record(AuditEvent {
        kind: "permission_denied",
        peer: Some(peer),
        username,
        method: None,
        detail: format!("handshake with default database '{name}', on which the user has no role"),
    });
    Err(wire::Error::new(
        ErrorCode::ErrPermissionDenied,
        format!(
            "user '{username}' has no role on database '{name}': connect to a database you hold a role on, or ask a superuser (or an admin of '{name}') to grant one"
        ),
    ))
}

fn ensure_database(shared: &Shared, name: &str) -> Result<(), wire::Error> {
    if shared
        .store
        .database_exists(name)
        .map_err(super::storage_error)?
    {
        Ok(())
    } else {
        Err(wire::Error::new(
            ErrorCode::ErrNotFound,
            format!("database '{name}' not found: create it (ADMIN create_database) or connect to '_system'"),
        ))
    }
}

/// The answer to a HANDSHAKE on a connection that already has a session.
pub(crate) fn already_authenticated() -> wire::HandshakeResponse {
    themis_proto::TypedResponse::failed(wire::Error::new(
        ErrorCode::ErrProtocol,
        "this connection is already authenticated: open a new connection to log in as another user",
    ))
}
