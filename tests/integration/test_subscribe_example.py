"""The runnable subscriber in docs/events.md works as documented against a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.bus import Bus
from shared.events import BuildFinished, BuildRequested

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).parents[2] / "examples" / "subscribe.py"


async def test_example_subscriber_prints_build_events(amqp_url):
    env = {**os.environ, "KILN_AMQP_URL": amqp_url, "SUBSCRIBER_QUEUE": "docs-example"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "build.#"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert "listening on docs-example" in ready
        bus = await Bus(amqp_url, source="test").connect()
        await bus.emit(BuildRequested(package="demo"), build_id="example-build-1")
        await bus.emit(BuildFinished(status="succeeded"), build_id="example-build-1")
        await bus.stop(grace_s=2)
        lines = [await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20) for _ in range(2)]
        assert "build.requested" in lines[0] and "build=example-" in lines[0]
        assert "build.finished" in lines[1] and '"succeeded"' in lines[1]
    finally:
        proc.terminate()
        proc.wait(10)
