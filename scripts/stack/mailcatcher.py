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
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(KeepMessages(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"SMTP on 127.0.0.1:{args.port}, messages in {args.dir}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
