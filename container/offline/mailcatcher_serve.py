"""Serve scripts/stack/mailcatcher.py's message keeper on every interface of the container.

The quick start's catcher listens on loopback only; in compose the reporter reaches it over the
compose network, so the same handler is started here on 0.0.0.0.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiosmtpd.controller import Controller
from mailcatcher import KeepMessages


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    # server_hostname: the name in the SMTP greeting (the default looks it up, slow without DNS).
    controller = Controller(
        KeepMessages(args.dir), hostname="0.0.0.0", port=args.port, server_hostname="mailcatcher"
    )
    controller.start()
    print(f"SMTP on 0.0.0.0:{args.port}, messages in {args.dir}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
