"""The whole Kiln stack on one machine, as local processes, and the example build through it.

    python scripts/stack/stack.py up        start everything, push the example, follow the build
    python scripts/stack/stack.py up --package axion-like   the same with the 13-service example
    python scripts/stack/stack.py start     start the services only
    python scripts/stack/stack.py trigger   a signed Bitbucket push of the example repo; prints build ids
    python scripts/stack/stack.py follow ID follow a build until it ends (exit 0 if it succeeded)
    python scripts/stack/stack.py status    what runs, and where
    python scripts/stack/stack.py down      stop everything, remove the deployed containers

Expects the machine prepared by `./kiln-dev services` (dockerd, registry, base images, RabbitMQ,
MariaDB) and its variables (`source .kiln/dev.env`); `./kiln-dev up` does all of it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.stack import example, processes
from scripts.stack.layout import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=processes.ROOT / ".kiln" / "stack")
    parser.add_argument("--vhost", default="kiln")
    parser.add_argument("--database", default="kiln")
    parser.add_argument("--port", type=int, default=8000, help="gateway port")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--prefix", default="kiln-qs-", help="name prefix of deployed containers")
    sub = parser.add_subparsers(dest="command", required=True)
    # Which example the services are started for (their operator config) and which one is pushed.
    package = argparse.ArgumentParser(add_help=False)
    package.add_argument("--package", choices=sorted(example.EXAMPLES), default=example.DEMO.package)
    sub.add_parser("up", parents=[package])
    sub.add_parser("start", parents=[package])
    trigger = sub.add_parser("trigger", parents=[package])
    trigger.add_argument("--touch", help="change this file of the example first (a one-file change)")
    follow = sub.add_parser("follow")
    follow.add_argument("build_id")
    follow.add_argument("--timeout", type=float, default=1800)
    sub.add_parser("status")
    sub.add_parser("down")
    args = parser.parse_args(argv)
    stack = Stack(
        state=args.state_dir.resolve(),
        vhost=args.vhost,
        database=args.database,
        gateway_port=args.port,
        smtp_port=args.smtp_port,
        prefix=args.prefix,
        env=dict(os.environ),
        example=example.EXAMPLES[getattr(args, "package", None) or _started_package(args.state_dir)],
    )
    if args.command == "start":
        stack.start()
        return 0
    if args.command == "trigger":
        running = _started_package(args.state_dir)
        if running != args.package:
            raise SystemExit(
                f"the services run {running}'s operator config, which does not build {args.package}: "
                f"start them for it first (stack.py start --package {args.package})"
            )
        for build_id in example.trigger(stack, touch=args.touch):
            print(build_id)
        return 0
    if args.command == "follow":
        return 0 if example.follow(stack, args.build_id, timeout_s=args.timeout) == "succeeded" else 1
    if args.command == "status":
        stack.print_status()
        return 0
    if args.command == "down":
        stack.down()
        return 0
    stack.start()
    build_ids = example.trigger(stack)
    status = example.follow(stack, build_ids[0])
    stack.print_summary(build_ids[0], status)
    return 0 if status == "succeeded" else 1


def _started_package(state_dir: Path) -> str:
    """follow, status and down act on the stack as it was last started."""
    record = state_dir / "package"
    return record.read_text().strip() if record.is_file() else example.DEMO.package


if __name__ == "__main__":
    raise SystemExit(main())
