"""Live log lines, our own logic without a broker: redaction, the bounded buffer, the batch model,
the gateway's recent-lines window and the CLI's follower. The broker side is proven in
tests/integration/test_live_logs.py."""

from __future__ import annotations

import threading
import time

import pytest

from cli.progress import LogFollower
from services.gateway.live import RECENT_BUILDS, RECENT_LINES_PER_BUILD, LiveHub, RecentLogs
from shared.bus import topology as t
from shared.bus.live_logs import BUFFER_LINES, KEY_REDACTED, MAX_LINE_CHARS, LogShipper
from shared.events import InvalidEvent
from shared.events.logs import LOG_LINES_TYPE, LogBatch, LogLines
from shared.logging import REDACT

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcdef\n-----END RSA PRIVATE KEY-----"


def test_routing_keys_carry_stage_and_arch():
    assert t.log_routing_key("compile") == "log.compile"
    assert t.log_routing_key("image", "linux/arm64") == "log.image.arm64"


def test_lines_are_redacted_like_log_records():
    shipper = LogShipper("test", secrets=["hunter2-registry-pass"])
    REDACT.add("global-token-value-42")
    stream = shipper.stream("b1", stage="push")
    stream("login with hunter2-registry-pass ok")
    stream("clone https://bob:s3cret@git.example/x.git")
    stream("Authorization: Bearer abcdefghijklmnop")
    stream("token global-token-value-42 used")
    stream(f"key:\n{PEM}\nafter")
    lines, dropped = stream.take()
    text = "\n".join(lines)
    for secret in ("hunter2-registry-pass", "s3cret", "abcdefghijklmnop", "global-token-value-42", "MIIE"):
        assert secret not in text
    assert dropped == 0
    assert lines[-3:] == ["key:", "[PRIVATE KEY REDACTED]", "after"]


def test_a_private_key_printed_line_by_line_is_suppressed_to_its_end():
    stream = LogShipper("test").stream("b1", stage="compile")
    for line in PEM.splitlines():
        stream(line)
    stream("next line")
    lines, _ = stream.take()
    assert lines == [KEY_REDACTED, "next line"]


def test_full_buffer_keeps_the_newest_lines_and_counts_the_rest():
    stream = LogShipper("test").stream("b1", stage="compile")
    for n in range(BUFFER_LINES + 123):
        stream(f"line {n}")
    lines, dropped = stream.take()
    assert dropped == 123
    assert len(lines) == BUFFER_LINES
    assert lines[0] == "line 123" and lines[-1] == f"line {BUFFER_LINES + 122}"
    stream.lost(7)  # a failed publish: the next batch says so
    assert stream.take() == ([], 7)


def test_long_lines_are_cut_and_multiline_text_is_split():
    stream = LogShipper("test").stream("b1", stage="compile")
    stream("x" * (MAX_LINE_CHARS + 50))
    stream("one\ntwo\n")
    lines, _ = stream.take()
    assert len(lines[0]) < MAX_LINE_CHARS + 20 and lines[0].endswith("(truncated)")
    assert lines[1:] == ["one", "two"]


def test_writing_never_waits_without_a_running_shipper():
    """No loop, no broker: writes are appends, and close does not wait for anything."""
    stream = LogShipper("test").stream("b1", stage="compile")
    started = time.perf_counter()
    for n in range(50_000):
        stream(f"line {n}")
    stream.close()
    assert time.perf_counter() - started < 5
    stream("after close")  # ignored, no error
    assert stream.take()[0][-1] == "line 49999"


def test_writes_from_many_threads_lose_nothing_below_the_bound():
    stream = LogShipper("test").stream("b1", stage="compile")

    def write(prefix: str) -> None:
        for n in range(200):
            stream(f"{prefix}{n}")

    threads = [threading.Thread(target=write, args=(f"t{i}-",)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines, dropped = stream.take()
    assert dropped == 0 and len(set(lines)) == 1000


def test_log_batch_round_trip_and_it_is_not_a_catalogue_event():
    batch = LogBatch.new(
        LogLines(stage="image", target="web", platform="linux/arm64", seq=3, lines=("a", "b")),
        source="imager",
        build_id="b1",
        package="demo",
    )
    again = LogBatch.from_json(batch.to_json())
    assert again == batch
    assert again.type == LOG_LINES_TYPE == "dev.kiln.log.lines.v1"
    assert again.source == "/kiln/imager"
    from shared.events import decode

    with pytest.raises(InvalidEvent):
        decode(batch.to_json())  # never dispatched to a handler, never recorded
    with pytest.raises(InvalidEvent):
        LogBatch.from_json(b'{"specversion": "1.0"}')


def _batch(build: str, lines: int, seq: int = 1) -> LogBatch:
    data = LogLines(stage="compile", seq=seq, lines=tuple(f"l{n}" for n in range(lines)))
    return LogBatch.new(data, source="compiler", build_id=build)


def test_recent_logs_are_bounded_per_build_and_in_builds():
    recent = RecentLogs()
    for seq in range(1, 40):
        recent.add(_batch("b1", 100, seq), "log.compile")
    kept = recent.of("b1")
    assert sum(len(b.data.lines) for b, _ in kept) <= RECENT_LINES_PER_BUILD
    assert kept[-1][0].data.seq == 39
    for n in range(RECENT_BUILDS + 5):
        recent.add(_batch(f"other{n}", 1), "log.compile")
    assert recent.of("b1") == []  # least recently active dropped first
    recent.finished(f"other{RECENT_BUILDS + 4}")
    assert recent.of(f"other{RECENT_BUILDS + 4}") == []


def test_hub_gives_log_batches_only_to_listeners_of_that_build_that_asked():
    hub = LiveHub()
    wants = hub.listen(build_id="b1", logs=True)
    events_only = hub.listen(build_id="b1")
    other = hub.listen(build_id="b2", logs=True)
    hub.publish_log_local(_batch("b1", 2), "log.compile")
    assert wants.queue.qsize() == 1
    assert events_only.queue.qsize() == 0 and other.queue.qsize() == 0


def test_follower_prints_live_lines_and_skips_tails_it_already_showed():
    follower = LogFollower()
    live = {"data": {"stage": "image", "target": "web", "platform": "linux/amd64", "lines": ["Step 1/3"]}}
    assert follower.lines("log", live) == ["[image/web/linux/amd64] Step 1/3"]
    failed = {"data": {"target": "web", "platform": "linux/amd64", "error": "boom", "log_tail": ["Step 1/3"]}}
    assert follower.lines("image.failed", failed) == []
    finished = {"data": {**failed["data"], "stage": "image", "status": "failed"}}
    assert follower.lines("stage.finished", finished) == ["[image/web/linux/amd64] ERROR boom"]
    # a stage whose live lines were not seen here: its stored tail is the log
    other = {"data": {"stage": "deploy", "status": "failed", "error": "no", "log_tail": ["x"]}}
    assert follower.lines("stage.finished", other) == ["[deploy] x", "[deploy] ERROR no"]
