//! Frame codec: `0xDB 0x01 | u32 BE length | payload`.
//!
//! Decoding is incremental over a `BytesMut` that the caller fills from a socket.
//! The magic is checked as soon as two bytes are present and the length as soon as six
//! are, so a hostile peer can never make the reader size a buffer from an unchecked
//! length: callers only grow their read buffer towards a length this codec accepted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The two magic bytes that open every frame in both directions.
pub const MAGIC: [u8; 2] = [0xDB, 0x01];
/// Magic (2) + length (4).
pub const HEADER_LEN: usize = 6;
/// Default `max_frame_bytes`: 16 MiB of payload.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// A frame that must be answered with one `OP_ERROR` and a closed connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic 0x{0:02X}{1:02X}: every ThemisDB v1 frame starts with 0xDB01")]
    BadMagic(u8, u8),
    #[error("frame length 0 is invalid: a frame carries a non-empty protobuf Envelope")]
    Empty,
    #[error("frame of {len} bytes exceeds max_frame_bytes {max}: split the request (e.g. smaller bulk batches)")]
    TooLarge { len: u32, max: u32 },
}

/// Checks and splits frames. Cheap to copy; one per connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_bytes: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameCodec {
    pub fn new(max_frame_bytes: u32) -> Self {
        Self { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Validates the header at the front of `buf` without consuming anything.
    ///
    /// Returns `Ok(Some(payload_len))` once the six header bytes are present and valid,
    /// `Ok(None)` when more bytes are needed to decide, and an error as soon as the
    /// bytes present prove the frame invalid (the magic is checked from two bytes on).
    pub fn check_header(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if buf.len() >= 2 && buf[..2] != MAGIC {
            return Err(FrameError::BadMagic(buf[0], buf[1]));
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(len as usize))
    }

    /// Splits one complete frame off the front of `buf` and returns its payload.
    ///
    /// `Ok(None)` means more bytes are needed; [`Self::bytes_needed`] says how many.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.check_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }

    /// How many more bytes the frame at the front of `buf` needs, once its header was
    /// accepted by [`Self::check_header`]; `HEADER_LEN - buf.len()` before that.
    pub fn bytes_needed(&self, buf: &[u8]) -> Result<usize, FrameError> {
        match self.check_header(buf)? {
            Some(len) => Ok((HEADER_LEN + len).saturating_sub(buf.len())),
            None => Ok(HEADER_LEN - buf.len()),
        }
    }

    /// Appends a frame holding `payload` to `dst`.
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = self.checked_len(payload.len())?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_slice(&MAGIC);
        dst.put_u32(len);
        dst.put_slice(payload);
        Ok(())
    }

    pub(crate) fn checked_len(&self, len: usize) -> Result<u32, FrameError> {
        let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge {
            len: u32::MAX,
            max: self.max_frame_bytes,
        })?;
        if len32 == 0 {
            return Err(FrameError::Empty);
        }
        if len32 > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len: len32,
                max: self.max_frame_bytes,
            });
        }
        Ok(len32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        FrameCodec::default().encode(payload, &mut b).unwrap();
        b
    }

    #[test]
    fn roundtrip_and_partial_reads() {
        let codec = FrameCodec::default();
        let whole = frame(b"hello");
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(codec.decode(&mut part).unwrap(), None, "cut at {cut}");
            assert_eq!(part.len(), cut, "nothing consumed on a partial frame");
        }
        let mut two = frame(b"a");
        two.extend_from_slice(&frame(b"bc"));
        assert_eq!(&codec.decode(&mut two).unwrap().unwrap()[..], b"a");
        assert_eq!(&codec.decode(&mut two).unwrap().unwrap()[..], b"bc");
        assert!(two.is_empty());
    }

    #[test]
    fn bad_magic_detected_from_two_bytes() {
        let codec = FrameCodec::default();
        assert_eq!(
            codec.check_header(b"GE"),
            Err(FrameError::BadMagic(b'G', b'E'))
        );
        assert_eq!(codec.check_header(&[0xDB]), Ok(None));
    }

    #[test]
    fn zero_and_oversized_lengths_rejected_from_header_alone() {
        let codec = FrameCodec::new(1024);
        assert_eq!(
            codec.check_header(&[0xDB, 0x01, 0, 0, 0, 0]),
            Err(FrameError::Empty)
        );
        assert_eq!(
            codec.check_header(&[0xDB, 0x01, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 1024
            })
        );
        assert_eq!(
            codec.check_header(&[0xDB, 0x01, 0, 0, 4, 0]),
            Ok(Some(1024))
        );
        let mut dst = BytesMut::new();
        assert!(codec.encode(&[0u8; 1025], &mut dst).is_err());
        assert!(dst.is_empty());
    }

    #[test]
    fn bytes_needed_counts_towards_whole_frame() {
        let codec = FrameCodec::default();
        let whole = frame(b"0123456789");
        assert_eq!(codec.bytes_needed(&whole[..3]).unwrap(), 3);
        assert_eq!(codec.bytes_needed(&whole[..8]).unwrap(), 8);
        assert_eq!(codec.bytes_needed(&whole).unwrap(), 0);
    }
}
