//! Fuzz target: everything an untrusted peer's bytes reach before a handler runs.
//!
//! The input is treated two ways:
//! 1. as a byte stream off a socket: split into frames by `FrameCodec` (small
//!    `max_frame_bytes`, so the length checks are reachable) and every payload decoded
//!    as an `Envelope` plus the body of its opcode;
//! 2. as one frame payload directly, so envelope and body decoding get exercised even
//!    when the input has no valid frame header.
//!
//! Invariant checked: no panic, and the codec never reports a frame it did not consume
//! nor loops without progress.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use themis_proto::{FrameCodec, Request, HEADER_LEN};

/// 1 MiB: small enough that lengths just above the limit are cheap to reach.
const MAX_FRAME_BYTES: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let codec = FrameCodec::new(MAX_FRAME_BYTES);

    // 1. Stream of frames.
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(payload)) => {
                assert!(!payload.is_empty(), "codec returned an empty payload");
                assert!(payload.len() <= MAX_FRAME_BYTES as usize);
                assert_eq!(buf.len(), before - HEADER_LEN - payload.len());
                let _ = Request::decode_payload(payload);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "a partial frame must not be consumed");
                // What is left must really be a partial frame.
                let needed = codec.bytes_needed(&buf).expect("header was accepted");
                assert!(needed > 0);
                break;
            }
            Err(_) => {
                // A bad header closes the connection; nothing more is read.
                assert_eq!(buf.len(), before, "a rejected frame must not be consumed");
                break;
            }
        }
    }

    // 2. The raw input as one payload.
    let _ = Request::decode_payload(bytes::Bytes::copy_from_slice(data));
});
