"""`kiln`: start and follow builds through the gateway, and run the stage commands.

Exit codes: 0 ok / build succeeded, 1 build failed, 2 usage, 3 build cancelled, 4 gateway error.
"""

from __future__ import annotations

import argparse
import sys

from cli import commands
from cli.client import GatewayClient, GatewayError
from cli.forward import STAGE_COMMANDS, forward
from cli.settings import CliSettings
from shared.platforms import PLATFORM_NAMES

FORWARDED = (*STAGE_COMMANDS, "config")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kiln", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pipeline", help="start a build of a package and follow it to the end")
    p.add_argument("package")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--skip-push", action="store_true")
    p.add_argument("--skip-deploy", action="store_true")
    p.add_argument("--notify", help="an email address, or 'raci'")
    p.add_argument("--platform", help=f"{','.join(PLATFORM_NAMES)} (default: the package's platforms)")
    p.add_argument("--ref", help="branch to build (default: the repository's default branch)")
    p.add_argument(
        "--commit",
        help="40-hex commit to build (default: where the branch is now in the package's configured source)",
    )
    p.add_argument("--no-follow", action="store_true", help="print the build id and return")
    p.set_defaults(run=commands.pipeline)

    p = sub.add_parser("builds", help="list builds")
    p.add_argument("--package")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--branch")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(run=commands.builds)

    p = sub.add_parser("status", help="a build's stages, images and result")
    p.add_argument("build")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=commands.status)

    p = sub.add_parser("logs", help="a build's log lines")
    p.add_argument("build")
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(run=commands.logs)

    p = sub.add_parser("replay", help="rerun the build from a stage under a new attempt, and follow it")
    p.add_argument("build")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--from", dest="from_stage", metavar="STAGE", help="rerun STAGE and every stage after it"
    )
    which.add_argument(
        "--only", dest="only_stage", metavar="STAGE", help="rerun STAGE's job and nothing after it"
    )
    p.add_argument("--no-follow", action="store_true", help="return once the events are republished")
    p.set_defaults(run=commands.replay)

    p = sub.add_parser("cancel", help="stop a build at its next stage boundary")
    p.add_argument("build")
    p.add_argument("--reason", default="cancelled from the CLI", help="shown in the build's result")
    p.set_defaults(run=commands.cancel)

    p = sub.add_parser(
        "rollback", help="redeploy an earlier build's images and config as a new run, and follow it"
    )
    p.add_argument("package")
    p.add_argument("--to", type=int, required=True, metavar="NUMBER", help="the build number to go back to")
    p.add_argument("--no-follow", action="store_true", help="print the new run's id and return")
    p.set_defaults(run=commands.rollback)

    p = sub.add_parser("diff", help="what changed between two builds")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=commands.diff)

    p = sub.add_parser("events", help="events: a build's stored ones, or live with --follow")
    p.add_argument("filter", nargs="?", default="#", help="routing-key pattern, e.g. 'stage.*' or 'build.#'")
    p.add_argument("--follow", action="store_true")
    p.add_argument("--build")
    p.set_defaults(run=commands.events)

    for name in FORWARDED:
        target = "shared.config" if name == "config" else STAGE_COMMANDS[name]
        p = sub.add_parser(
            name, help=f"runs python -m {target} {'' if name == 'config' else name} ...", add_help=False
        )
        p.add_argument("args", nargs=argparse.REMAINDER)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:  # everything after the command belongs to that tool, --help too
        return forward(argv[0], argv[1:])
    args = parser().parse_args(argv)
    client = GatewayClient(CliSettings())
    try:
        return args.run(client, args)
    except GatewayError as exc:
        print(f"kiln: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130
