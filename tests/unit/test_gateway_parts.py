"""Small pieces of the gateway and the CLI: topic matching, batching, signatures, progress lines."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cli.main import parser
from cli.progress import describe
from services.gateway.batching import Coalescer
from services.gateway.live import LiveHub, topic_matches
from services.gateway.starter import BuildOrder, BuildStarter
from services.gateway.webhooks.signature import SignatureError, sign, verify
from shared.events import BuildFinished, Envelope, StageStarted
from shared.events.build import Source
from tests.unit.test_gateway_fakes import MemoryLedger, RecordingPublisher


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "build.requested", True),
        ("build.#", "build.cancel.requested", True),
        ("build.*", "build.cancel.requested", False),
        ("image.requested.*", "image.requested.arm64", True),
        ("*.finished", "stage.finished", True),
        ("stage.finished", "stage.started", False),
        ("#.arm64", "image.requested.arm64", True),
    ],
)
def test_topic_matching_follows_amqp(pattern, key, expected):
    assert topic_matches(pattern, key) is expected


def test_signature_accepts_only_the_exact_body():
    verify("k" * 16, b"{}", sign("k" * 16, b"{}"))
    verify("k" * 16, b"{}", sign("k" * 16, b"{}").upper().replace("SHA256", "sha256"))
    for header in (None, "", "sha1=00", "sha256", sign("k" * 16, b"{} "), sign("x" * 16, b"{}"), "sha256=é"):
        with pytest.raises(SignatureError):
            verify("k" * 16, b"{}", header)


async def test_coalescer_batches_concurrent_callers_and_keeps_their_order():
    calls: list[list[int]] = []

    def bulk(items: list[int]) -> list[int]:
        calls.append(items)
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(bulk)
    results = await asyncio.gather(*(coalescer.submit([i, i + 100]) for i in range(20)))
    assert results == [[i * 10, (i + 100) * 10] for i in range(20)]
    assert len(calls) < 20  # callers that arrived while a batch ran shared the next one


async def test_the_answer_does_not_wait_for_the_published_mark():
    class SlowMarks(MemoryLedger):
        def __init__(self) -> None:
            super().__init__()
            self.mark_allowed = threading.Event()

        def confirm(self, keys: list[str]) -> None:
            self.mark_allowed.wait(10)
            super().confirm(keys)

    ledger, publisher = SlowMarks(), RecordingPublisher()
    starter = BuildStarter(publisher=publisher, ledger=ledger, config=None)
    order = BuildOrder(package="demo", source=Source(ref="refs/heads/main"), dedupe_key="ref:x")
    result = await asyncio.wait_for(starter.start([order], delivery_key="delivery:github:1"), 5)
    assert len(result.build_ids) == 1 and len(publisher.published) == 1
    assert ledger.keys == {"ref:x": "pending", "delivery:github:1": "pending"}  # mark still running
    again = await starter.start([order], delivery_key="delivery:github:2")  # a redelivery meanwhile
    assert again.build_ids == [] and len(publisher.published) == 1
    ledger.mark_allowed.set()
    await starter.drain()
    assert ledger.keys["ref:x"] == ledger.keys["delivery:github:1"] == "published"


async def test_coalescer_failure_reaches_every_waiter():
    def bulk(items: list[int]) -> list[int]:
        raise ConnectionError("database down")

    coalescer: Coalescer[int, int] = Coalescer(bulk)
    outcomes = await asyncio.gather(*(coalescer.submit([i]) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)


async def test_live_hub_filters_by_build_and_pattern():
    hub = LiveHub()
    build = hub.listen(build_id="b1")
    stages = hub.listen(pattern="stage.*")
    for build_id, event in (("b1", StageStarted(stage="compile")), ("b2", BuildFinished(status="failed"))):
        envelope = Envelope.new(event, source="t", build_id=build_id)
        hub.publish_local(envelope, envelope.routing_key())
    assert build.queue.qsize() == 1 and stages.queue.qsize() == 1
    hub.close()
    assert build.overflowed


def test_progress_lines():
    started = {"data": {"stage": "image", "platform": "linux/arm64", "target": "web"}}
    assert describe("stage.started", started) == "  ▶ image [web linux/arm64] started"
    finished = {"data": {"status": "failed", "failed_stage": "scan", "duration_ms": 1500, "error": "boom"}}
    assert describe("build.finished", finished) == "build failed at scan in 1.5s: boom"
    assert describe("compile.completed", {"data": {}}) is None


def test_cli_parses_the_seed_options():
    args = parser().parse_args(
        ["pipeline", "demo", "--skip-compile", "--notify", "raci", "--platform", "linux/amd64,linux/arm64"]
    )
    assert args.package == "demo" and args.skip_compile and args.notify == "raci"
    assert parser().parse_args(["replay", "b1", "--from", "scan"]).from_stage == "scan"
