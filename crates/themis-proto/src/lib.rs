//! The ThemisDB wire protocol v1, without sockets.
//!
//! * [`wire`]: every message, enum and field of `proto/themis_wire_v1.proto`, generated
//!   by prost at build time (no system `protoc`).
//! * [`frame`]: the frame codec. `0xDB 0x01`, a big-endian `u32` payload length, then
//!   the payload. Magic and length are checked before any buffer is sized from them.
//! * [`envelope`]: building outgoing envelopes straight into a frame buffer, and
//!   decoding an incoming envelope's body into the typed [`envelope::Request`] of its
//!   opcode.
//! * [`errors`]: the one error rule of the contract: typed responses carry `Error` in
//!   field 15 with `success = false`; everything else is an `OP_ERROR` frame.
//!
//! Invariant: nothing in this crate performs I/O or trusts a length it has not checked.

pub mod envelope;
pub mod errors;
pub mod frame;

/// Generated protobuf types for package `themis.wire.v1`.
#[allow(clippy::all, missing_docs)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/themis.wire.v1.rs"));
}

pub use envelope::{encode_frame, Request};
pub use errors::{ErrorExt, TypedResponse};
pub use frame::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, MAGIC};
pub use wire::{ErrorCode, OpCode};

/// The protocol version this build speaks, as sent in `HandshakeRequest.protocol_version`.
pub const PROTOCOL_VERSION: &str = "1.0";
/// Major protocol version; a handshake with another major is refused.
pub const PROTOCOL_MAJOR: u32 = 1;
/// Highest minor protocol version this build supports.
pub const PROTOCOL_MINOR: u32 = 0;

/// Feature bit masks for `HandshakeRequest.client_features` / `ServerInfo.features`.
pub mod features {
    use crate::wire::FeatureBit;

    pub const MULTIPLEXING: u64 = 1 << FeatureBit::FeatureMultiplexing as u64;
    pub const CURSORS: u64 = 1 << FeatureBit::FeatureCursors as u64;
    pub const TRANSACTIONS: u64 = 1 << FeatureBit::FeatureTransactions as u64;
    pub const SUBSCRIPTIONS: u64 = 1 << FeatureBit::FeatureSubscriptions as u64;
    pub const BULK_WRITES: u64 = 1 << FeatureBit::FeatureBulkWrites as u64;
    pub const ADMIN: u64 = 1 << FeatureBit::FeatureAdmin as u64;
    pub const REQUEST_KEYS: u64 = 1 << FeatureBit::FeatureRequestKeys as u64;
}
