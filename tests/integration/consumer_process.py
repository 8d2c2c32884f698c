"""A consumer in its own process, so tests can kill it with SIGKILL mid-message.

Usage: python -m tests.integration.consumer_process AMQP_URL MODE PURPOSE
(consumes queue kiln.test.PURPOSE, bound to build.requested)
MODE `hang`:  print "RECEIVED <id>" and block forever inside the handler (killed by the test).
MODE `crash`: print "RECEIVED <id>" and exit the process at once, without acking;
              with nothing to receive for 5 s, print "IDLE" and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from shared.bus import Bus
from shared.bus.topology import QueueSpec
from shared.events import BuildRequested


def killable_spec(purpose: str) -> QueueSpec:
    return QueueSpec("test", purpose, ("build.requested",))


def main() -> None:
    amqp_url, mode, purpose = sys.argv[1], sys.argv[2], sys.argv[3]
    spec = killable_spec(purpose)

    def handler(event: BuildRequested, ctx) -> None:
        print(f"RECEIVED {ctx.envelope.id}", flush=True)
        if mode == "crash":
            os._exit(3)
        threading.Event().wait()

    async def run() -> None:
        bus = await Bus(amqp_url, source="test-proc").connect()
        await bus.consume(spec, {BuildRequested: handler})
        print("READY", flush=True)
        if mode == "crash":
            await asyncio.sleep(5)
            print("IDLE", flush=True)
            os._exit(0)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
