"""Standalone operator commands: minimal factories, registry prune, preflight, containers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.imager.import_graph import SourceIndex, minimal_factories
from services.imager.settings import ImagerSettings
from shared.config.loader import load_config
from shared.registry import RegistryClient, RegistryError


def run_minimal_factories(args: argparse.Namespace, _settings: ImagerSettings | None) -> int:
    """Prints each service's minimal factory set; exit 1 if a configured set misses one."""
    config = load_config(args.config)
    package = config.package(args.package)
    index = SourceIndex.scan(Path(args.src))
    report, short = {}, False
    for name, service in sorted(package.services.items()):
        if service.dockerfile:
            continue
        try:
            needed = minimal_factories(index, service.command)
        except (ValueError, KeyError) as exc:
            report[name] = {"error": str(exc)}
            continue
        missing = sorted(set(needed) - set(service.factories))
        short = short or bool(missing)
        report[name] = {
            "minimal": needed,
            "configured": sorted(service.factories),
            "missing": missing,
            "removable": sorted(set(service.factories) - set(needed)),
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, row in report.items():
            if "error" in row:
                print(f"{name}: cannot analyse: {row['error']}")
                continue
            line = f"{name}: {', '.join(row['minimal'])}"
            if row["missing"]:
                line += f"   MISSING from config: {', '.join(row['missing'])}"
            if row["removable"]:
                line += f"   removable: {', '.join(row['removable'])}"
            print(line)
    return 1 if short else 0


def run_registry_prune(args: argparse.Namespace, settings: ImagerSettings) -> int:
    with RegistryClient.from_settings(settings) as client:
        report = client.prune(args.repo, args.keep, dry_run=args.dry_run)
    print(("[dry run] " if args.dry_run else "") + report.summary())
    return 0


def run_preflight(_args: argparse.Namespace, settings: ImagerSettings) -> int:
    """Exit 0 only if the container engine and the registry both answer (with our credentials)."""
    ok = True
    try:
        import docker

        version = docker.from_env(timeout=10).version()
        print(f"docker: ok (engine {version.get('Version')}, api {version.get('ApiVersion')})")
    except Exception as exc:  # any failure here is the answer the operator asked for
        ok = False
        print(f"docker: UNREACHABLE ({exc}); is dockerd running? try ./kiln-dev services")
    try:
        with RegistryClient.from_settings(settings) as client:
            client.ping()
        print(f"registry {settings.registry_url}: ok")
    except RegistryError as exc:
        ok = False
        print(f"registry {settings.registry_url}: FAILED ({exc}); check KILN_REGISTRY_URL/USERNAME/PASSWORD")
    return 0 if ok else 1


def run_containers(args: argparse.Namespace, _settings: ImagerSettings | None) -> int:
    import docker
    from docker.errors import NotFound

    client = docker.from_env(timeout=30)
    try:
        if args.action == "list":
            for c in client.containers.list(all=args.all):
                print(
                    f"{c.short_id}  {c.status:<10} {c.name:<30} {','.join(c.image.tags) or c.image.short_id}"
                )
            return 0
        container = client.containers.get(args.name)
        if args.action == "get":
            attrs = container.attrs
            print(
                json.dumps(
                    {
                        "id": attrs["Id"],
                        "name": container.name,
                        "image": attrs["Config"]["Image"],
                        "state": attrs["State"],
                    },
                    indent=2,
                )
            )
        elif args.action == "start":
            container.start()
        elif args.action == "stop":
            container.stop(timeout=args.timeout)
        elif args.action == "delete":
            container.remove(force=args.force)
        elif args.action == "exec":
            result = container.exec_run(args.cmd)
            sys.stdout.write(result.output.decode(errors="replace"))
            return result.exit_code or 0
        return 0
    except NotFound:
        print(f"no container {args.name!r}", file=sys.stderr)
        return 1
