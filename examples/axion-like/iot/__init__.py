"""iot: the mqtt bridge: MQTT 3.1.1 packets with msgpack payloads (tier `io`)."""
