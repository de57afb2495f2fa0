#!/usr/bin/env python3
"""Writes the fuzz seed corpus: a few valid ThemisDB v1 frames (fuzz/seeds/).

Each seed is `0xDB 0x01 | u32 BE length | Envelope`, with the protobuf encoded by
hand (field numbers from proto/themis_wire_v1.proto), so no build is needed. The
seeds only give the fuzzer a head start; it mutates from there.

Usage (from the repository root or fuzz/):  python3 fuzz/gen_seeds.py
"""
import os
import struct

OP_HANDSHAKE, OP_CREATE, OP_READ, OP_QUERY, OP_PING, OP_CURSOR_NEXT, OP_ADMIN = (
    0x01, 0x02, 0x03, 0x06, 0x0C, 0x10, 0x14)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vfield(num, value):  # wire type 0
    return varint(num << 3) + varint(value)


def lfield(num, data):  # wire type 2
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def envelope(opcode, request_id, body):
    return vfield(1, opcode) + vfield(2, request_id) + lfield(3, body)


def frame(opcode, request_id, body):
    payload = envelope(opcode, request_id, body)
    return b"\xDB\x01" + struct.pack(">I", len(payload)) + payload


SEEDS = {
    "ping": frame(OP_PING, 1, vfield(1, 1_700_000_000_000)),
    "handshake": frame(OP_HANDSHAKE, 1, lfield(1, "1.0") + lfield(2, "fuzz")
                       + vfield(3, 0) + lfield(4, "root") + lfield(5, "secret")
                       + vfield(9, 0x3F)),
    "create": frame(OP_CREATE, 2, lfield(1, "users")
                    + lfield(2, b'{"_key":"ada","age":36}') + lfield(3, "tok")),
    "create_bulk": frame(OP_CREATE, 3, lfield(1, "users")
                         + lfield(6, b'{"a":1}') + lfield(6, b'{"b":[2,3]}')),
    "read": frame(OP_READ, 4, lfield(1, "users") + lfield(2, "ada") + lfield(2, "bob")),
    "query": frame(OP_QUERY, 5, lfield(1, "FOR u IN users FILTER u.age > @x RETURN u")
                   + lfield(2, lfield(1, "x") + lfield(2, b"30")) + vfield(4, 10)),
    "cursor_next": frame(OP_CURSOR_NEXT, 6, lfield(1, "c1") + vfield(2, 100)),
    "admin_create_collection": frame(OP_ADMIN, 7, lfield(1, "tok")
                                     + lfield(14, lfield(1, "orders"))),
    "admin_list_databases": frame(OP_ADMIN, 8, lfield(10, b"")),
    # Two frames back to back and a trailing partial one: the stream loop.
    "stream": frame(OP_PING, 9, vfield(1, 1)) + frame(OP_READ, 10, lfield(1, "u"))
              + frame(OP_PING, 11, b"")[:5],
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")


if __name__ == "__main__":
    main()
