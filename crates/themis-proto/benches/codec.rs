//! Frame codec and envelope encode/decode throughput.
use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use themis_proto::wire::{CreateRequest, Envelope, Ping};
use themis_proto::{encode_frame, FrameCodec, OpCode, Request};

fn bench(c: &mut Criterion) {
    let codec = FrameCodec::default();
    let doc = br#"{"name":"Ada Lovelace","born":1815,"tags":["math","poetry"],"active":true}"#;
    let create = CreateRequest {
        collection: "users".into(),
        document: bytes::Bytes::from_static(doc),
        ..Default::default()
    };

    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_ping", |b| {
        let mut buf = BytesMut::with_capacity(1 << 16);
        b.iter(|| {
            buf.clear();
            encode_frame(
                &codec,
                OpCode::OpPing,
                12345,
                black_box(&Ping { timestamp_ms: 1 }),
                &mut buf,
            )
            .unwrap();
        })
    });
    g.bench_function("encode_create", |b| {
        let mut buf = BytesMut::with_capacity(1 << 16);
        b.iter(|| {
            buf.clear();
            encode_frame(
                &codec,
                OpCode::OpCreate,
                12345,
                black_box(&create),
                &mut buf,
            )
            .unwrap();
        })
    });
    let mut one = BytesMut::new();
    encode_frame(&codec, OpCode::OpCreate, 12345, &create, &mut one).unwrap();
    g.bench_function("decode_create", |b| {
        b.iter(|| {
            let mut buf = one.clone();
            let payload = codec.decode(&mut buf).unwrap().unwrap();
            black_box(Request::decode_payload(payload).unwrap());
        })
    });
    g.bench_function("envelope_prost_roundtrip_create", |b| {
        b.iter(|| {
            let env = Envelope {
                opcode: OpCode::OpCreate as i32,
                request_id: 12345,
                body: create.encode_to_vec().into(),
            };
            let bytes = env.encode_to_vec();
            black_box(Envelope::decode(&bytes[..]).unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
