"""`python -m shared.config validate PATH [--package P]` (an operator config)
| `validate --repository PATH [--operator OP] [--package P]` (a repository's config.yaml: its
keys alone, and with an operator config the merged result a build would use, with each package's
app config file beside it trimmed and checked as stage config does)
| `trim PATH --package P` | `keys generate --package P [--dir DIR] [--force]`. Exit 2 on invalid config."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from shared.config.app_config import APP_CONFIG_MAX_BYTES, trimmed_document
from shared.config.errors import ConfigError, format_path
from shared.config.keys import generate_keys
from shared.config.loader import DEFAULT_KEYS_DIR, load_build_config, load_config
from shared.config.repository import check_repository_keys
from shared.config.trim import trimmed_config
from shared.config.yaml_source import REPOSITORY_CONFIG_MAX_BYTES, parse_untrusted_yaml

EXIT_INVALID = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        return _keys(args)
    try:
        if getattr(args, "repository", False):
            cfg = _repository(args)
            if cfg is None:
                print(f"OK {args.path} (repository rules only; pass --operator to check the merged config)")
                return 0
        else:
            cfg = load_config(args.path, os.environ)
        if args.package is not None:
            cfg.package(args.package)
    except ConfigError as exc:
        print(f"{args.path}: {len(exc.errors)} error(s)", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    except KeyError as exc:
        print(f"--package: {exc.args[0]}", file=sys.stderr)
        return EXIT_INVALID
    if args.command == "trim":
        print(json.dumps(trimmed_config(cfg, args.package), indent=2, sort_keys=True))
        return 0
    names = [args.package] if args.package else list(cfg.packages)
    print(f"OK {args.path}")
    for name in names:
        pkg = cfg.packages[name]
        print(
            f"  package {name}: {len(pkg.services)} services"
            f" ({len(pkg.enabled_services())} enabled),"
            f" factories {', '.join(pkg.factories)}, substrate {pkg.deployment.substrate},"
            f" platforms {', '.join(pkg.deployment.platforms)}"
        )
    return 0


def _repository(args: argparse.Namespace):
    """Check a repository config.yaml; with an operator config, the merged one (else None)."""
    try:
        with open(args.path, "rb") as handle:
            data = handle.read(REPOSITORY_CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("<file>", f"cannot read {args.path}: {exc.strerror or exc}")]) from None
    operator = args.operator or os.environ.get("KILN_CONFIG_PATH")
    if operator:
        cfg = load_build_config(operator, data, os.environ, repository_name=args.path)
        _check_app_configs(cfg, Path(args.path).parent, args.package)
        return cfg
    document = parse_untrusted_yaml(data, args.path)
    refused = [(format_path(loc), message) for loc, message in check_repository_keys(document.data)]
    if refused:
        raise ConfigError(refused)
    return None


def _check_app_configs(cfg, root: Path, only: str | None) -> None:
    """The app config file of each package that names one, read from the repository root (the
    directory of its config.yaml), trimmed and checked; every problem as a ConfigError."""
    errors: list[tuple[str, str]] = []
    for name, pkg in cfg.packages.items():
        if pkg.app_config is None or (only and name != only):
            continue
        path = root / pkg.app_config.path
        try:
            with path.open("rb") as handle:
                trimmed_document(handle.read(APP_CONFIG_MAX_BYTES + 1), name, pkg)
        except OSError as exc:
            errors.append((f"packages.{name}.app_config.path", f"cannot read {path}: {exc.strerror or exc}"))
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError(errors)


def _keys(args: argparse.Namespace) -> int:
    directory = args.dir or DEFAULT_KEYS_DIR.format(package=args.package)
    try:
        private, public = generate_keys(directory, args.package, force=args.force)
    except FileExistsError as exc:
        print(f"{exc}; pass --force to replace them", file=sys.stderr)
        return 1
    print(f"wrote {private} (0600) and {public}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.config")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a config file, print every error")
    validate.add_argument("path")
    validate.add_argument("--package")
    validate.add_argument(
        "--repository", action="store_true", help="PATH is a repository's config.yaml (build keys only)"
    )
    validate.add_argument(
        "--operator", help="with --repository: the operator config to lay it over (default KILN_CONFIG_PATH)"
    )
    trim = commands.add_parser("trim", help="print the trimmed config of one package as JSON")
    trim.add_argument("path")
    trim.add_argument("--package", required=True)
    keys = commands.add_parser("keys", help="manage a package's PEM keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    generate = key_commands.add_parser("generate", help="write a new RSA-2048 key pair")
    generate.add_argument("--package", required=True)
    generate.add_argument("--dir", help=f"default {DEFAULT_KEYS_DIR}")
    generate.add_argument("--force", action="store_true")
    return parser


if __name__ == "__main__":
    sys.exit(main())
