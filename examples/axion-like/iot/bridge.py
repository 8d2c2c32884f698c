"""Service `mqtt` (tier io, port 9101 for health only): turns device PUBLISH packets into
envelopes on the bus. Run: python3 -m iot.bridge"""

from __future__ import annotations

import time

from core.checks import Check
from httpapi.service import run_service
from iot.codec import pack, unpack
from iot.packets import decode_length, encode_length, parse_publish, publish
from messaging.bus import Bus

SERVICE = "mqtt"
PORT = 9101


def bridge(bus: Bus, packet: bytes) -> str:
    topic, payload = parse_publish(packet)
    bus.publish("device." + topic.replace("/", "."), unpack(payload))
    return topic


def self_checks() -> list[Check]:
    packet = publish("site/7/temperature", pack({"celsius": 21.5, "at": 1700000000}))
    return [
        Check("iot.packets varint", lambda: decode_length(b"\x30" + encode_length(321)), (321, 3)),
        Check("iot.packets publish", lambda: parse_publish(packet)[0], "site/7/temperature"),
        Check("iot.codec msgpack", lambda: unpack(parse_publish(packet)[1])["celsius"], 21.5),
        Check("iot.bridge routes", lambda: bridge(Bus(), packet), "site/7/temperature"),
    ]


def main() -> int:
    bus = Bus()

    def heartbeat() -> None:  # the bridge's own reading, until devices connect
        bridge(bus, publish("bridge/heartbeat", pack({"at": int(time.time())})))

    return run_service(SERVICE, default_port=PORT, checks=self_checks, tick=heartbeat)


if __name__ == "__main__":
    raise SystemExit(main())
