"""A real SMTP server on loopback that keeps every message it receives, for the quick start.

    python scripts/stack/mailcatcher.py --port 1025 --dir .kiln/stack/mail

Each message is saved as `<n>-<subject>.eml`, and its HTML part, if any, beside it as `.html`,
so the report email can be opened in a browser. (Mailpit plays this part in docker-compose.yml.)
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import re
from pathlib import Path

from aiosmtpd.controller import Controller


class KeepMessages:
    def __init__(self, directory: Path):
        self.directory = directory
        self.count = len(list(directory.glob("*.eml")))

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.count += 1
        slug = re.sub(r"[^A-Za-z0-9]+", "-", str(message.get("Subject", "message")))[:60].strip("-")
        stem = self.directory / f"{self.count:03d}-{slug}"
        stem.with_suffix(".eml").write_bytes(envelope.content)
        html = message.get_body(preferencelist=("html",))
        if html is not None:
            stem.with_suffix(".html").write_text(html.get_content(), encoding="utf-8")
        print(f"received {stem.name} for {', '.join(envelope.rcpt_tos)}", flush=True)
        return "250 Message accepted for delivery"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, required=True)
    # Loopback for the quick start; 0.0.0.0 in a container (docker-compose.offline.yml), where the
    # reporter comes over the compose network.
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    # server_hostname: the name in the SMTP greeting (the default looks it up, slow without DNS).
    controller = Controller(
        KeepMessages(args.dir), hostname=args.host, port=args.port, server_hostname="mailcatcher"
    )
    controller.start()
    print(f"SMTP on {args.host}:{args.port}, messages in {args.dir}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
