//! OP_HANDSHAKE: version negotiation, authentication, session creation or resumption.
//!
//! Version rule (contract §6): the major version must match; the server answers the
//! highest minor it supports. An empty `protocol_version` is taken as "1.0" (seed 000's
//! only version).

use std::net::SocketAddr;
use std::sync::Arc;

use themis_proto::wire::{self, AuthMethod, ErrorCode, HandshakeRequest, HandshakeResponse};
use themis_proto::{features, ErrorExt, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use tracing::{info, warn};

use crate::session::Session;
use crate::Shared;

use super::fail;

/// Features this server version serves.
pub const SERVER_FEATURES: u64 = features::MULTIPLEXING
    | features::CURSORS
    | features::TRANSACTIONS
    | features::SUBSCRIPTIONS
    | features::BULK_WRITES
    | features::ADMIN;

/// Runs a handshake; on success also returns the session to bind the connection to.
pub(crate) async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    req: HandshakeRequest,
) -> (HandshakeResponse, Option<Arc<Session>>) {
    match authenticate(shared, peer, &req).await {
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
    req: &HandshakeRequest,
) -> Result<Arc<Session>, wire::Error> {
    check_version(&req.protocol_version)?;

    if !req.session_token.is_empty() {
        let Some(session) = shared.sessions.resume(&req.session_token) else {
            warn!(%peer, "session resume failed: unknown or expired token");
            return Err(wire::Error::new(
                ErrorCode::ErrAuthFailed,
                "session token unknown or expired (sessions end after session_ttl and with a server restart): handshake again with credentials",
            ));
        };
        if !req.database.is_empty() && req.database != session.database {
            // Resuming keeps the user but may choose another default database.
            ensure_database(shared, &req.database)?;
            return Ok(shared.sessions.create(&session.username, &req.database));
        }
        return Ok(session);
    }

    let method = AuthMethod::try_from(req.auth_method).map_err(|_| {
        wire::Error::new(
            ErrorCode::ErrInvalidArgument,
            format!(
                "unknown auth_method {}: use USERNAME_PASSWORD (0)",
                req.auth_method
            ),
        )
    })?;
    if method != AuthMethod::UsernamePassword {
        return Err(wire::Error::new(
            ErrorCode::ErrAuthFailed,
            format!(
                "auth method {} is not enabled on this server: use USERNAME_PASSWORD",
                method.as_str_name()
            ),
        ));
    }
    if req.username.is_empty() {
        return Err(wire::Error::new(
            ErrorCode::ErrAuthFailed,
            "username is empty: USERNAME_PASSWORD needs username and password",
        ));
    }
    let ok = super::super::session::verify_password(
        &shared.store,
        &req.username,
        &req.password,
        shared.config.server.bcrypt_cost,
    )
    .await
    .map_err(|e| {
        wire::Error::new(
            ErrorCode::ErrInternal,
            format!("cannot check credentials: {e}"),
        )
    })?;
    if !ok {
        warn!(%peer, username = %req.username, method = "USERNAME_PASSWORD", "authentication failed");
        return Err(wire::Error::new(
            ErrorCode::ErrAuthFailed,
            "authentication failed: unknown user or wrong password",
        ));
    }
    let database = if req.database.is_empty() {
        "_system"
    } else {
        req.database.as_str()
    };
    ensure_database(shared, database)?;
    info!(%peer, username = %req.username, database, "authenticated");
    Ok(shared.sessions.create(&req.username, database))
}

fn ensure_database(shared: &Shared, name: &str) -> Result<(), wire::Error> {
    let exists = shared
        .store
        .list_databases()
        .map_err(super::storage_error)?
        .iter()
        .any(|d| d == name);
    if exists {
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
