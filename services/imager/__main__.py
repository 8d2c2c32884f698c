"""`python -m services.imager [--platform linux/arm64]`: the worker (default), plus operator commands.

python -m services.imager --platform linux/amd64         worker: image jobs + multi-arch indexes
python -m services.imager minimal-factories SRC --config config.yaml --package P [--json]
python -m services.imager registry-prune --repo kiln/axion-webhook-demo --keep 5 [--dry-run]
python -m services.imager preflight
python -m services.imager containers {list,get,start,stop,delete,exec} ...
"""

from __future__ import annotations

import argparse
import logging
import sys

from services.imager import commands
from services.imager.settings import ImagerSettings
from shared.platforms import PLATFORM_NAMES
from shared.settings import load_settings

log = logging.getLogger("kiln.imager")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.imager")
    parser.add_argument("--platform", choices=PLATFORM_NAMES, help="default: KILN_PLATFORM")
    parser.add_argument("--no-manifests", action="store_true", help="do not also assemble multi-arch indexes")
    sub = parser.add_subparsers(dest="command")
    minimal = sub.add_parser("minimal-factories", help="each service's minimal factory set (import graph)")
    minimal.add_argument("src", help="the monorepo source tree")
    minimal.add_argument("--config", required=True)
    minimal.add_argument("--package", required=True)
    minimal.add_argument("--json", action="store_true")
    minimal.set_defaults(run=commands.run_minimal_factories, needs_settings=False)
    prune = sub.add_parser("registry-prune", help="keep the newest N build tags of a repository")
    prune.add_argument(
        "--repo", required=True, help="repository path without host, e.g. kiln/axion-webhook-demo"
    )
    prune.add_argument("--keep", type=int, required=True)
    prune.add_argument("--dry-run", action="store_true")
    prune.set_defaults(run=commands.run_registry_prune, needs_settings=True)
    preflight = sub.add_parser("preflight", help="docker daemon and registry reachable?")
    preflight.set_defaults(run=commands.run_preflight, needs_settings=True)
    containers = sub.add_parser("containers", help="list/get/start/stop/delete/exec containers")
    containers.add_argument("action", choices=["list", "get", "start", "stop", "delete", "exec"])
    containers.add_argument("name", nargs="?")
    containers.add_argument("cmd", nargs="*", help="for exec: the command")
    containers.add_argument("--all", action="store_true")
    containers.add_argument("--force", action="store_true")
    containers.add_argument("--timeout", type=int, default=10)
    containers.set_defaults(run=commands.run_containers, needs_settings=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return run_worker(args)
    if args.command == "containers" and args.action != "list" and not args.name:
        print("containers: this action needs a container name", file=sys.stderr)
        return 2
    settings = load_settings(ImagerSettings) if args.needs_settings else None
    return args.run(args, settings)


def run_worker(args: argparse.Namespace) -> int:
    from services.imager.bootstrap import bootstrap
    from shared.bus.worker import run_worker as run

    settings = load_settings(ImagerSettings)
    if args.platform:
        settings = settings.model_copy(update={"platform": args.platform})
    return run(bootstrap(settings, manifests=not args.no_manifests))


if __name__ == "__main__":
    raise SystemExit(main())
