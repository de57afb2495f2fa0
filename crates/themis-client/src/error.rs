//! The client's one error type.
//!
//! Every failure a caller can see is an [`Error`]. Errors the server reports — in a
//! typed response's field 15 (`success = false`) or in an `OP_ERROR` frame — all
//! become [`Error::Server`], carrying the wire [`ErrorCode`] and the server's message
//! verbatim; everything else (sockets, timeouts, bad frames, JSON, addresses) has its
//! own variant.
//!
//! Invariants: the server's message is never rewritten, only prefixed with the code
//! name in `Display`; an error code this build does not know maps to
//! `ERR_UNSPECIFIED` rather than being dropped.

use std::time::Duration;

use themis_proto::{wire, ErrorCode, TypedResponse};

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a ThemisDB server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server reported an error (typed response with `success = false`, or an
    /// `OP_ERROR` frame). `message` is the server's text, unchanged.
    #[error("{}: {}", .code.as_str_name(), .message)]
    Server {
        code: ErrorCode,
        message: String,
        /// The server says the same request may succeed if sent again.
        retryable: bool,
        /// How long the server asks the client to wait before retrying (0 = no hint).
        retry_after_ms: u32,
    },

    /// Reading from or writing to the socket failed (including connection refused).
    #[error("I/O error talking to the ThemisDB server: {0}")]
    Io(std::io::Error),

    /// The connection is gone; requests in flight on it fail with this instead of
    /// hanging. Connect again to continue.
    #[error("connection to the ThemisDB server is closed ({reason}); connect again to continue")]
    ConnectionClosed { reason: String },

    /// The server sent `OP_GOAWAY` (idle timeout, shutdown, ...): this connection takes
    /// no new requests. Connect again, after `reconnect_after_ms` if the server gave one.
    #[error("the server is closing this connection (reason: {reason}); reconnect{}",
        if *.reconnect_after_ms > 0 { format!(" after {} ms", .reconnect_after_ms) } else { String::new() })]
    GoAway {
        reason: String,
        reconnect_after_ms: u64,
    },

    /// State that lived on one connection — a transaction, a query's cursor — is gone
    /// because that connection closed; the server discarded it (a transaction was
    /// rolled back). Not retryable as is: run the transaction or query again (which a
    /// new request does on a fresh connection).
    #[error("{message}")]
    StateLost { message: String },

    /// No answer in time. For a request, its slot was released; a late answer is
    /// discarded. The request may still have been applied by the server. Waiting for
    /// a pooled connection (`acquiring ...`) sent nothing.
    #[error("{operation} timed out after {after:?}; raise ClientOptions::{} if the server is just slow",
        timeout_setting(.operation))]
    Timeout { operation: String, after: Duration },

    /// The address given to `Client::connect` is neither `host:port` nor a valid
    /// `themis://user:pass@host:port/db` URL.
    #[error("invalid ThemisDB address {input:?}: {reason}")]
    InvalidUrl { input: String, reason: String },

    /// The server sent something that breaks the wire contract (bad frame, undecodable
    /// message, unexpected opcode). The connection is not trusted afterwards.
    #[error("protocol error from the server: {0}")]
    Protocol(String),

    /// A request would exceed the frame limit the server advertised. Nothing was sent;
    /// split the request (e.g. smaller `insert_many` batches).
    #[error("request of {len} bytes exceeds the server's max_frame_bytes {max}; split it into smaller requests")]
    MessageTooLarge { len: u64, max: u32 },

    /// TLS could not be set up (a certificate or key file is missing or unreadable)
    /// or its handshake failed (the server's certificate is not trusted or does not
    /// name the host, the server refused the client certificate).
    #[error("TLS: {0}")]
    Tls(String),

    /// A document could not be turned into JSON, or the JSON the server returned does
    /// not fit the requested type.
    #[error("JSON (de)serialization failed: {0}")]
    Serialization(serde_json::Error),
}

/// The [`ClientOptions`](crate::ClientOptions) field that bounded a timed-out
/// `operation`.
fn timeout_setting(operation: &str) -> &'static str {
    if operation.starts_with("connect") {
        "connect_timeout"
    } else if operation.starts_with("acquiring") {
        "acquire_timeout (or max_connections_per_target)"
    } else {
        "request_timeout"
    }
}

/// Coarse categories of [`Error`], following the contract's mapping of seed 002's
/// error kinds onto `ErrorCode`s (see `docs/protocol.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The server cannot be reached or the connection broke: UNAVAILABLE, TIMEOUT,
    /// I/O errors, closed connections, GOAWAY, client-side timeouts.
    Connection,
    /// AUTH_FAILED, UNAUTHENTICATED, PERMISSION_DENIED.
    Auth,
    /// NOT_FOUND, CONFLICT, INVALID_ARGUMENT, QUERY, CURSOR_NOT_FOUND.
    Database,
    /// TRANSACTION.
    Transaction,
    /// PROTOCOL, UNKNOWN_OPCODE, UNSUPPORTED_VERSION, and bad frames from the server.
    Protocol,
    /// MESSAGE_TOO_LARGE, from the server or caught before sending.
    MessageTooLarge,
    /// RATE_LIMITED, RESOURCE_EXHAUSTED: back off and retry.
    Overloaded,
    /// INTERNAL, UNSPECIFIED: a server bug or an error code this build does not know.
    Internal,
    /// The caller's input was unusable before anything was sent: a bad address, a
    /// document that is not serializable, JSON that does not fit the requested type.
    InvalidInput,
}

impl ErrorKind {
    /// The category of a wire error code.
    pub fn of_code(code: ErrorCode) -> Self {
        use ErrorCode as C;
        match code {
            C::ErrUnavailable | C::ErrTimeout => Self::Connection,
            C::ErrAuthFailed | C::ErrUnauthenticated | C::ErrPermissionDenied => Self::Auth,
            C::ErrNotFound
            | C::ErrConflict
            | C::ErrInvalidArgument
            | C::ErrQuery
            | C::ErrCursorNotFound => Self::Database,
            C::ErrTransaction => Self::Transaction,
            C::ErrProtocol | C::ErrUnknownOpcode | C::ErrUnsupportedVersion => Self::Protocol,
            C::ErrMessageTooLarge => Self::MessageTooLarge,
            C::ErrRateLimited | C::ErrResourceExhausted => Self::Overloaded,
            C::ErrInternal | C::ErrUnspecified => Self::Internal,
        }
    }
}

impl Error {
    /// The wire error code: the server's for [`Error::Server`],
    /// `ERR_MESSAGE_TOO_LARGE` for [`Error::MessageTooLarge`], `ERR_TIMEOUT` for
    /// [`Error::Timeout`], `None` for errors with no wire equivalent.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            Self::MessageTooLarge { .. } => Some(ErrorCode::ErrMessageTooLarge),
            Self::Timeout { .. } => Some(ErrorCode::ErrTimeout),
            _ => None,
        }
    }

    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Server { code, .. } => ErrorKind::of_code(*code),
            Self::Io(_)
            | Self::ConnectionClosed { .. }
            | Self::GoAway { .. }
            | Self::StateLost { .. }
            | Self::Timeout { .. } => ErrorKind::Connection,
            Self::Protocol(_) => ErrorKind::Protocol,
            Self::Tls(_) => ErrorKind::Connection,
            Self::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
            Self::InvalidUrl { .. } | Self::Serialization(_) => ErrorKind::InvalidInput,
        }
    }

    /// Whether sending the same request again may succeed: the server said so
    /// (`retryable`), or the connection was going away (retry on a new connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Server { retryable, .. } => *retryable,
            Self::GoAway { .. } => true,
            _ => false,
        }
    }

    /// How long to wait before a retry, when the server gave a hint.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Server { retry_after_ms, .. } if *retry_after_ms > 0 => {
                Some(Duration::from_millis(u64::from(*retry_after_ms)))
            }
            Self::GoAway {
                reconnect_after_ms, ..
            } if *reconnect_after_ms > 0 => Some(Duration::from_millis(*reconnect_after_ms)),
            _ => None,
        }
    }

    /// `ERR_NOT_FOUND` (a missing document, collection or database).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::ErrNotFound)
    }

    /// `ERR_CONFLICT` (an `if_revision` mismatch, a duplicate key, a write-write
    /// conflict).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(ErrorCode::ErrConflict)
    }

    /// The connection is unusable: closed, going away, or broken by I/O.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Self::Io(_) | Self::ConnectionClosed { .. } | Self::GoAway { .. }
        )
    }

    /// [`Error::StateLost`]: the transaction or cursor this request belonged to died
    /// with its connection and must be run again from the start.
    pub fn is_state_lost(&self) -> bool {
        matches!(self, Self::StateLost { .. })
    }

    /// The server's message for [`Error::Server`].
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Self::Server { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Turns a typed response with `success = false` into its error: field 15
    /// (`error`) when present, else `error_message` with `ERR_UNSPECIFIED`.
    pub fn from_failed_response<R: TypedResponse>(response: &R) -> Self {
        match response.error() {
            Some(e) => {
                let mut err = Self::from(e.clone());
                if let Self::Server { message, .. } = &mut err {
                    if message.is_empty() {
                        message.push_str(response.error_message());
                    }
                }
                err
            }
            None => Self::Server {
                code: ErrorCode::ErrUnspecified,
                message: if response.error_message().is_empty() {
                    "the server reported a failure without a message".to_owned()
                } else {
                    response.error_message().to_owned()
                },
                retryable: false,
                retry_after_ms: 0,
            },
        }
    }
}

// `Io` and `Serialization` show their cause in their own message, so they do not also
// report it as `source()`: error reporters that print the chain (`anyhow`'s `{:#}`)
// would say it twice.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialization(e)
    }
}

impl From<wire::Error> for Error {
    fn from(e: wire::Error) -> Self {
        Self::Server {
            // A code from a newer server that this build does not know: keep the
            // message, report it as unspecified.
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::ErrUnspecified),
            message: e.message,
            retryable: e.retryable,
            retry_after_ms: e.retry_after_ms,
        }
    }
}

/// Checks a typed response: `Ok(response)` when `success`, else its error.
pub(crate) fn check<R: TypedResponse>(response: R) -> Result<R> {
    if response.success() {
        Ok(response)
    } else {
        Err(Error::from_failed_response(&response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the schema defines, by number (0..=18 with no gaps).
    fn all_codes() -> Vec<ErrorCode> {
        let codes: Vec<ErrorCode> = (0..=18)
            .map(|n| ErrorCode::try_from(n).expect("contract codes are 0..=18"))
            .collect();
        assert!(
            ErrorCode::try_from(19).is_err(),
            "new code: extend this test"
        );
        codes
    }

    #[test]
    fn every_wire_code_maps_with_message_verbatim() {
        for code in all_codes() {
            let message = format!("boom {} — do X next", code as i32);
            let err = Error::from(wire::Error {
                code: code as i32,
                message: message.clone(),
                retryable: code as i32 % 2 == 0,
                retry_after_ms: code as u32 * 10,
            });
            assert_eq!(err.code(), Some(code));
            assert_eq!(err.server_message(), Some(message.as_str()));
            let shown = err.to_string();
            assert!(shown.contains(&message), "{shown}");
            assert!(shown.starts_with(code.as_str_name()), "{shown}");
            assert_eq!(err.is_retryable(), code as i32 % 2 == 0);
            assert_eq!(
                err.retry_after(),
                (code as u64 > 0).then(|| Duration::from_millis(code as u64 * 10))
            );
            assert_eq!(err.is_not_found(), code == ErrorCode::ErrNotFound);
            assert_eq!(err.is_conflict(), code == ErrorCode::ErrConflict);
            assert_eq!(err.kind(), ErrorKind::of_code(code));
            assert!(!err.is_connection_error());
        }
    }

    #[test]
    fn kinds_follow_the_contract() {
        use ErrorCode as C;
        let expect = [
            (C::ErrUnspecified, ErrorKind::Internal),
            (C::ErrProtocol, ErrorKind::Protocol),
            (C::ErrUnsupportedVersion, ErrorKind::Protocol),
            (C::ErrUnknownOpcode, ErrorKind::Protocol),
            (C::ErrMessageTooLarge, ErrorKind::MessageTooLarge),
            (C::ErrUnauthenticated, ErrorKind::Auth),
            (C::ErrAuthFailed, ErrorKind::Auth),
            (C::ErrPermissionDenied, ErrorKind::Auth),
            (C::ErrNotFound, ErrorKind::Database),
            (C::ErrConflict, ErrorKind::Database),
            (C::ErrInvalidArgument, ErrorKind::Database),
            (C::ErrQuery, ErrorKind::Database),
            (C::ErrTransaction, ErrorKind::Transaction),
            (C::ErrCursorNotFound, ErrorKind::Database),
            (C::ErrRateLimited, ErrorKind::Overloaded),
            (C::ErrResourceExhausted, ErrorKind::Overloaded),
            (C::ErrTimeout, ErrorKind::Connection),
            (C::ErrUnavailable, ErrorKind::Connection),
            (C::ErrInternal, ErrorKind::Internal),
        ];
        assert_eq!(expect.len(), all_codes().len());
        for (code, kind) in expect {
            assert_eq!(ErrorKind::of_code(code), kind, "{code:?}");
        }
    }

    #[test]
    fn unknown_code_keeps_message() {
        let err = Error::from(wire::Error {
            code: 4242,
            message: "from the future".into(),
            retryable: false,
            retry_after_ms: 0,
        });
        assert_eq!(err.code(), Some(ErrorCode::ErrUnspecified));
        assert!(err.to_string().contains("from the future"));
    }

    #[test]
    fn failed_typed_response_uses_field_15_then_error_message() {
        let with_error = wire::UpdateResponse {
            success: false,
            error_message: "revision mismatch".into(),
            error: Some(wire::Error {
                code: ErrorCode::ErrConflict as i32,
                message: "revision mismatch: expected _rev 1-a, found 2-b".into(),
                retryable: false,
                retry_after_ms: 0,
            }),
            ..Default::default()
        };
        let err = check(with_error).unwrap_err();
        assert!(err.is_conflict());
        assert_eq!(
            err.server_message(),
            Some("revision mismatch: expected _rev 1-a, found 2-b")
        );

        let message_only = wire::CreateResponse {
            success: false,
            error_message: "collection name must start with a letter".into(),
            ..Default::default()
        };
        let err = check(message_only).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ErrUnspecified));
        assert_eq!(
            err.server_message(),
            Some("collection name must start with a letter")
        );

        let empty_error_message_in_field_15 = wire::ReadResponse {
            success: false,
            error_message: "only here".into(),
            error: Some(wire::Error {
                code: ErrorCode::ErrInternal as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = check(empty_error_message_in_field_15).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ErrInternal));
        assert_eq!(err.server_message(), Some("only here"));

        let ok = wire::DeleteResponse {
            success: true,
            deleted_count: 1,
            ..Default::default()
        };
        assert_eq!(check(ok).unwrap().deleted_count, 1);
    }

    #[test]
    fn client_side_errors() {
        let e = Error::ConnectionClosed {
            reason: "server closed the connection".into(),
        };
        assert!(e.is_connection_error() && !e.is_retryable() && e.code().is_none());
        assert_eq!(e.kind(), ErrorKind::Connection);

        let e = Error::GoAway {
            reason: "shutdown".into(),
            reconnect_after_ms: 500,
        };
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(500)));
        assert!(e.to_string().contains("shutdown") && e.to_string().contains("500 ms"));

        let e = Error::Timeout {
            operation: "OP_READ request".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(e.code(), Some(ErrorCode::ErrTimeout));
        assert!(e.to_string().contains("request_timeout"));
        let e = Error::Timeout {
            operation: "connect to db:8766".into(),
            after: Duration::from_secs(10),
        };
        assert!(e.to_string().contains("connect_timeout"));

        let e = Error::MessageTooLarge { len: 20, max: 10 };
        assert_eq!(e.code(), Some(ErrorCode::ErrMessageTooLarge));
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    }
}
