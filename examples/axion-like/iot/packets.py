"""MQTT 3.1.1 PUBLISH packets (QoS 0): fixed header, remaining-length varint, topic, payload."""

from __future__ import annotations

PUBLISH = 0x30
MAX_REMAINING = 268_435_455  # four varint bytes


def encode_length(length: int) -> bytes:
    if not 0 <= length <= MAX_REMAINING:
        raise ValueError(f"an MQTT packet holds at most {MAX_REMAINING} bytes, not {length}")
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def decode_length(data: bytes, offset: int = 1) -> tuple[int, int]:
    """(length, offset of the first byte after it)."""
    length, shift = 0, 0
    for index in range(offset, min(offset + 4, len(data))):
        length |= (data[index] & 0x7F) << shift
        if not data[index] & 0x80:
            return length, index + 1
        shift += 7
    raise ValueError("malformed MQTT remaining length")


def publish(topic: str, payload: bytes) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + payload
    return bytes([PUBLISH]) + encode_length(len(body)) + body


def parse_publish(packet: bytes) -> tuple[str, bytes]:
    if not packet or packet[0] & 0xF0 != PUBLISH:
        raise ValueError("not an MQTT PUBLISH packet")
    length, start = decode_length(packet)
    body = packet[start : start + length]
    if len(body) != length or length < 2:
        raise ValueError("truncated MQTT PUBLISH packet")
    size = int.from_bytes(body[:2], "big")
    return body[2 : 2 + size].decode(), body[2 + size :]
