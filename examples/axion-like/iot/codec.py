"""Device payloads as msgpack (a native extension of tier `io`)."""

from __future__ import annotations

import msgpack


def pack(reading: dict) -> bytes:
    return msgpack.packb(reading, use_bin_type=True)


def unpack(data: bytes) -> dict:
    value = msgpack.unpackb(data, raw=False)
    if not isinstance(value, dict):
        raise ValueError("a device payload is a map")
    return value
