//! Envelopes: encoding straight into frames, and decoding bodies by opcode.
//!
//! [`encode_frame`] writes header, envelope fields and the body message into one buffer
//! with no intermediate allocation of the body, producing bytes identical to
//! `Envelope { opcode, request_id, body: msg.encode_to_vec() }.encode_to_vec()`.
//!
//! [`Request::decode`] turns a client envelope into the typed request of its opcode.
//! This is the whole surface an untrusted peer reaches before a handler runs, and the
//! fuzz target drives exactly this function.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use crate::frame::{FrameCodec, FrameError, MAGIC};
use crate::wire::{self, Envelope, OpCode};

/// Appends one frame carrying `Envelope { opcode, request_id, body: msg }` to `dst`.
///
/// On error (`msg` too large for the codec's limit) `dst` is left unchanged.
pub fn encode_frame<M: Message>(
    codec: &FrameCodec,
    opcode: OpCode,
    request_id: u64,
    msg: &M,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let body_len = msg.encoded_len();
    let op = opcode as i32 as u64;
    let mut env_len = 0usize;
    if op != 0 {
        env_len += 1 + encoded_len_varint(op);
    }
    if request_id != 0 {
        env_len += 1 + encoded_len_varint(request_id);
    }
    if body_len != 0 {
        env_len += 1 + encoded_len_varint(body_len as u64) + body_len;
    }
    // An envelope of only defaults encodes to zero bytes; a frame must not be empty,
    // so such an envelope is sent with an explicit empty body (still valid protobuf).
    let explicit_empty_body = env_len == 0;
    if explicit_empty_body {
        env_len = 2;
    }
    let len = codec.checked_len(env_len)?;
    dst.reserve(crate::HEADER_LEN + env_len);
    dst.put_slice(&MAGIC);
    dst.put_u32(len);
    if op != 0 {
        encode_key(1, WireType::Varint, dst);
        encode_varint(op, dst);
    }
    if request_id != 0 {
        encode_key(2, WireType::Varint, dst);
        encode_varint(request_id, dst);
    }
    if body_len != 0 || explicit_empty_body {
        encode_key(3, WireType::LengthDelimited, dst);
        encode_varint(body_len as u64, dst);
        // Cannot fail: `dst` has room reserved for the whole body.
        msg.encode_raw(dst);
    }
    Ok(())
}

/// Why a payload could not be turned into a typed request. Answered with `OP_ERROR`
/// and the request's id (0 when the envelope itself did not decode); the connection
/// stays usable because the frame boundary is intact.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a valid ThemisDB Envelope protobuf: {0}")]
    Envelope(prost::DecodeError),
    #[error("unknown opcode 0x{0:02X}: see docs/protocol.md for the opcodes this server serves")]
    UnknownOpcode(i32),
    #[error("opcode {0:?} is sent only by the server")]
    ServerOnly(OpCode),
    #[error("body of {opcode:?} is not a valid {message}: {source}")]
    Body {
        opcode: OpCode,
        message: &'static str,
        source: prost::DecodeError,
    },
}

/// A decoded client request: the envelope's id plus its typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub request_id: u64,
    pub request: Request,
}

/// Every request a client may send, by opcode.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Handshake(wire::HandshakeRequest),
    Create(wire::CreateRequest),
    Read(wire::ReadRequest),
    Update(wire::UpdateRequest),
    Delete(wire::DeleteRequest),
    Query(wire::QueryRequest),
    BeginTx(wire::BeginTxRequest),
    CommitTx(wire::CommitTxRequest),
    RollbackTx(wire::RollbackTxRequest),
    Subscribe(wire::SubscribeRequest),
    Unsubscribe(wire::UnsubscribeRequest),
    Ping(wire::Ping),
    CursorNext(wire::CursorNextRequest),
    CursorClose(wire::CursorCloseRequest),
    Admin(wire::AdminRequest),
}

fn body<M: Message + Default>(
    opcode: OpCode,
    message: &'static str,
    bytes: Bytes,
) -> Result<M, DecodeError> {
    M::decode(bytes).map_err(|source| DecodeError::Body {
        opcode,
        message,
        source,
    })
}

impl Request {
    /// Decodes a frame payload. `Err((request_id, e))` carries the id to answer with.
    pub fn decode_payload(payload: Bytes) -> Result<Decoded, (u64, DecodeError)> {
        let env = Envelope::decode(payload).map_err(|e| (0, DecodeError::Envelope(e)))?;
        let request_id = env.request_id;
        let request = Self::decode(env.opcode, env.body).map_err(|e| (request_id, e))?;
        Ok(Decoded {
            request_id,
            request,
        })
    }

    /// Decodes the body of an envelope whose opcode field is `opcode`.
    pub fn decode(opcode: i32, bytes: Bytes) -> Result<Self, DecodeError> {
        let op = OpCode::try_from(opcode).map_err(|_| DecodeError::UnknownOpcode(opcode))?;
        use OpCode as O;
        Ok(match op {
            O::OpHandshake => Self::Handshake(body(op, "HandshakeRequest", bytes)?),
            O::OpCreate => Self::Create(body(op, "CreateRequest", bytes)?),
            O::OpRead => Self::Read(body(op, "ReadRequest", bytes)?),
            O::OpUpdate => Self::Update(body(op, "UpdateRequest", bytes)?),
            O::OpDelete => Self::Delete(body(op, "DeleteRequest", bytes)?),
            O::OpQuery => Self::Query(body(op, "QueryRequest", bytes)?),
            O::OpBeginTx => Self::BeginTx(body(op, "BeginTxRequest", bytes)?),
            O::OpCommitTx => Self::CommitTx(body(op, "CommitTxRequest", bytes)?),
            O::OpRollbackTx => Self::RollbackTx(body(op, "RollbackTxRequest", bytes)?),
            O::OpSubscribe => Self::Subscribe(body(op, "SubscribeRequest", bytes)?),
            O::OpUnsubscribe => Self::Unsubscribe(body(op, "UnsubscribeRequest", bytes)?),
            O::OpPing => Self::Ping(body(op, "Ping", bytes)?),
            O::OpCursorNext => Self::CursorNext(body(op, "CursorNextRequest", bytes)?),
            O::OpCursorClose => Self::CursorClose(body(op, "CursorCloseRequest", bytes)?),
            O::OpAdmin => Self::Admin(body(op, "AdminRequest", bytes)?),
            O::OpUnspecified => return Err(DecodeError::UnknownOpcode(opcode)),
            O::OpPong | O::OpEvent | O::OpGoaway | O::OpError => {
                return Err(DecodeError::ServerOnly(op))
            }
        })
    }

    /// The opcode this request came with; its response carries the same one
    /// (PING is answered by PONG).
    pub fn opcode(&self) -> OpCode {
        match self {
            Self::Handshake(_) => OpCode::OpHandshake,
            Self::Create(_) => OpCode::OpCreate,
            Self::Read(_) => OpCode::OpRead,
            Self::Update(_) => OpCode::OpUpdate,
            Self::Delete(_) => OpCode::OpDelete,
            Self::Query(_) => OpCode::OpQuery,
            Self::BeginTx(_) => OpCode::OpBeginTx,
            Self::CommitTx(_) => OpCode::OpCommitTx,
            Self::RollbackTx(_) => OpCode::OpRollbackTx,
            Self::Subscribe(_) => OpCode::OpSubscribe,
            Self::Unsubscribe(_) => OpCode::OpUnsubscribe,
            Self::Ping(_) => OpCode::OpPing,
            Self::CursorNext(_) => OpCode::OpCursorNext,
            Self::CursorClose(_) => OpCode::OpCursorClose,
            Self::Admin(_) => OpCode::OpAdmin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_encoding_matches_prost() {
        let codec = FrameCodec::default();
        let msg = wire::Ping { timestamp_ms: 42 };
        for (op, id) in [
            (OpCode::OpPing, 7u64),
            (OpCode::OpPing, 0),
            (OpCode::OpError, 1 << 40),
        ] {
            let mut dst = BytesMut::new();
            encode_frame(&codec, op, id, &msg, &mut dst).unwrap();
            let expected = Envelope {
                opcode: op as i32,
                request_id: id,
                body: msg.encode_to_vec().into(),
            }
            .encode_to_vec();
            assert_eq!(&dst[6..], &expected[..]);
            let payload = codec.decode(&mut dst).unwrap().unwrap();
            assert_eq!(payload, expected);
        }
    }

    #[test]
    fn default_envelope_still_makes_non_empty_frame() {
        let codec = FrameCodec::default();
        let mut dst = BytesMut::new();
        encode_frame(
            &codec,
            OpCode::OpUnspecified,
            0,
            &wire::Ping::default(),
            &mut dst,
        )
        .unwrap();
        let payload = codec.decode(&mut dst).unwrap().unwrap();
        let env = Envelope::decode(payload).unwrap();
        assert_eq!(env, Envelope::default());
    }

    #[test]
    fn decode_by_opcode() {
        let ping = wire::Ping { timestamp_ms: 5 };
        let env = Envelope {
            opcode: OpCode::OpPing as i32,
            request_id: 9,
            body: ping.encode_to_vec().into(),
        };
        let d = Request::decode_payload(env.encode_to_vec().into()).unwrap();
        assert_eq!(d.request_id, 9);
        assert_eq!(d.request, Request::Ping(ping));

        let bad = Envelope {
            opcode: 0x42,
            request_id: 3,
            body: Bytes::new(),
        };
        let (id, err) = Request::decode_payload(bad.encode_to_vec().into()).unwrap_err();
        assert_eq!(id, 3);
        assert!(matches!(err, DecodeError::UnknownOpcode(0x42)));

        let garbage_body = Envelope {
            opcode: OpCode::OpCreate as i32,
            request_id: 4,
            body: Bytes::from_static(&[0xFF, 0xFF, 0xFF]),
        };
        let (id, err) = Request::decode_payload(garbage_body.encode_to_vec().into()).unwrap_err();
        assert_eq!(id, 4);
        assert!(matches!(err, DecodeError::Body { .. }));

        let (id, _) = Request::decode_payload(Bytes::from_static(b"\xFF\xFF\xFF\xFF")).unwrap_err();
        assert_eq!(id, 0);
    }
}
