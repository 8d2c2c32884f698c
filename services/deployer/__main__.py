"""`python -m services.deployer [worker]` consumes the gate queue; the other commands work
without the bus: scaffold, deploy, status, targets, docs (see docs/deployer.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.deployer.settings import DeployerSettings
from shared.config import ConfigError, load_config
from shared.logging import setup_logging
from shared.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.deployer")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("worker", help="consume the gate queue (the default)")
    for name, text in (
        ("scaffold", "generate the chart, compose file, Caddyfile, registries.yaml, supervisor sections"),
        ("deploy", "deploy the package on its substrate, verify, roll back on failure"),
        ("status", "what runs now: revision, images, service states"),
        ("targets", "the topology: services, ports, replicas, routes, node ports"),
        ("docs", "build the package's MkDocs docs from a checkout and publish them to its wiki"),
    ):
        cmd = commands.add_parser(name, help=text)
        cmd.add_argument("package")
        cmd.add_argument("--config", type=Path, required=True, help="the pipeline config.yaml")
        if name in ("scaffold", "deploy"):
            cmd.add_argument("--image", action="append", default=[], metavar="SERVICE=REF")
            cmd.add_argument("--version", help="version component of default image names")
            cmd.add_argument("--tag", default="latest")
            cmd.add_argument(
                "--app-config",
                type=Path,
                metavar="FILE",
                help="the app's config file (packages.<p>.app_config.path of a checkout), trimmed as "
                "stage config trims it; needed when a service reads app config sections",
            )
        if name == "scaffold":
            cmd.add_argument("--out", type=Path, required=True)
        if name == "docs":
            cmd.add_argument(
                "--source", type=Path, help="the checkout (default: the config file's directory)"
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(DeployerSettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    if args.command in (None, "worker"):
        return _worker(settings)
    try:
        cfg = load_config(args.config, os.environ)
        cfg.package(args.package)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    from services.deployer import commands
    from shared.bus import PermanentError

    try:
        return getattr(commands, args.command)(cfg, args, settings)
    except PermanentError as exc:  # a config the command cannot use: the message names the key
        print(exc, file=sys.stderr)
        return 2


def _worker(settings: DeployerSettings) -> int:
    from services.deployer.bootstrap import bootstrap
    from shared.bus.worker import run_worker

    return run_worker(bootstrap(settings))


if __name__ == "__main__":
    sys.exit(main())
