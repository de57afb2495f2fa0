//! The fuzz target's invariants, run in every test pass: the checked-in seeds of
//! `fuzz/seeds` plus deterministic mutations of them (bit flips, truncations,
//! splices) go through the frame codec and request decoder without a panic, and
//! the codec never consumes a partial or rejected frame. The coverage-guided run
//! lives in `fuzz/` (see its README).

use bytes::BytesMut;
use themis_proto::{FrameCodec, Request, HEADER_LEN};

fn drive(data: &[u8]) {
    let codec = FrameCodec::new(1024 * 1024);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(payload)) => {
                assert_eq!(before - buf.len(), HEADER_LEN + payload.len());
                let _ = Request::decode_payload(payload);
            }
            Ok(None) | Err(_) => {
                assert_eq!(
                    buf.len(),
                    before,
                    "partial or rejected frames consume nothing"
                );
                break;
            }
        }
    }
    let _ = Request::decode_payload(bytes::Bytes::copy_from_slice(data));
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("fuzz/seeds exists")
        .map(|e| std::fs::read(e.expect("dir entry").path()).expect("seed readable"))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "seed corpus present");
    out
}

#[test]
fn seeds_and_mutations_never_panic() {
    let seeds = seeds();
    // xorshift64*: deterministic, so a failure reproduces.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for seed in &seeds {
        drive(seed);
    }
    for _ in 0..50_000 {
        let a = &seeds[(next() as usize) % seeds.len()];
        let mut m = a.clone();
        match next() % 4 {
            0 => {
                let i = (next() as usize) % m.len();
                m[i] ^= 1 << (next() % 8);
            }
            1 => m.truncate((next() as usize) % (m.len() + 1)),
            2 => {
                let b = &seeds[(next() as usize) % seeds.len()];
                let cut = (next() as usize) % (b.len() + 1);
                m.extend_from_slice(&b[cut..]);
            }
            _ => {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
        }
        drive(&m);
    }
}
