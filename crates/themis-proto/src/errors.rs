//! The contract's one error rule, as traits over the generated types.
//!
//! A request that reached its handler and failed is answered with its own typed
//! response: `success = false`, `error_message`, and `error` (field 15). Anything that
//! could not be tied to a handler is an `OP_ERROR` frame carrying an [`wire::Error`].

use crate::wire::{self, ErrorCode};

/// Constructors and defaults for [`wire::Error`].
pub trait ErrorExt: Sized {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self;
    /// A retryable error, optionally with a delay hint.
    fn retryable(code: ErrorCode, message: impl Into<String>, retry_after_ms: u32) -> Self;
}

impl ErrorExt for wire::Error {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code as i32,
            message: message.into(),
            retryable: matches!(
                code,
                ErrorCode::ErrUnavailable | ErrorCode::ErrTimeout | ErrorCode::ErrRateLimited
            ),
            retry_after_ms: 0,
        }
    }

    fn retryable(code: ErrorCode, message: impl Into<String>, retry_after_ms: u32) -> Self {
        Self {
            code: code as i32,
            message: message.into(),
            retryable: true,
            retry_after_ms,
        }
    }
}

/// Every typed response: `success`, `error_message`, `error = 15`.
pub trait TypedResponse: prost::Message + Default {
    /// The response that reports `error`.
    fn failed(error: wire::Error) -> Self;
    /// The error this response reports, if it failed.
    fn error(&self) -> Option<&wire::Error>;
    fn success(&self) -> bool;
    fn error_message(&self) -> &str;
}

macro_rules! typed_response {
    ($($t:ident),* $(,)?) => {$(
        // Some responses have no fields beyond the error ones.
        #[allow(clippy::needless_update)]
        impl TypedResponse for wire::$t {
            fn failed(error: wire::Error) -> Self {
                Self {
                    success: false,
                    error_message: error.message.clone(),
                    error: Some(error),
                    ..Default::default()
                }
            }
            fn error(&self) -> Option<&wire::Error> {
                self.error.as_ref()
            }
            fn success(&self) -> bool {
                self.success
            }
            fn error_message(&self) -> &str {
                &self.error_message
            }
        }
    )*};
}

typed_response!(
    HandshakeResponse,
    CreateResponse,
    ReadResponse,
    UpdateResponse,
    DeleteResponse,
    QueryResponse,
    CursorCloseResponse,
    BeginTxResponse,
    CommitTxResponse,
    RollbackTxResponse,
    SubscribeResponse,
    UnsubscribeResponse,
    AdminResponse,
);
