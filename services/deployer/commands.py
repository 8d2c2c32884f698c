"""The standalone commands (no bus, no database): scaffold, deploy, status, targets, docs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from services.deployer.adapters.http_probe import HttpxProbe
from services.deployer.app_config import AppConfigRefused, app_secret_values
from services.deployer.bootstrap import docs_stage, substrate_factory
from services.deployer.ports import DocsFailed
from services.deployer.release import run_release
from services.deployer.scaffold import render_scaffold, scaffold_inputs, write_scaffold
from services.deployer.settings import DeployerSettings
from services.deployer.topology import plan_topology
from shared.config import ConfigError, KilnConfig
from shared.config.app_config import APP_CONFIG_MAX_BYTES, trimmed_document
from shared.events.build import Source


def _images(args: argparse.Namespace) -> dict[str, str]:
    images = {}
    for item in args.image:
        service, sep, ref = item.partition("=")
        if not sep or not ref:
            raise SystemExit(f"--image {item!r}: expected SERVICE=REFERENCE")
        images[service] = ref
    return images


def _app_document(cfg: KilnConfig, args: argparse.Namespace) -> str | None:
    """The --app-config file trimmed as stage config trims it (the same untrusted reader)."""
    if args.app_config is None:
        return None
    pkg = cfg.package(args.package)
    if pkg.app_config is None:
        raise SystemExit(f"--app-config: packages.{args.package} has no app_config")
    with args.app_config.open("rb") as handle:
        data = handle.read(APP_CONFIG_MAX_BYTES + 1)
    try:
        return trimmed_document(data, args.package, pkg).decode()
    except ConfigError as exc:
        raise SystemExit(f"--app-config {args.app_config}:\n{exc}") from None


def _inputs(cfg: KilnConfig, args: argparse.Namespace, secrets: dict[str, str] | None = None):
    return scaffold_inputs(
        cfg,
        args.package,
        config_path=args.config,
        env=os.environ,
        images=_images(args),
        version=args.version,
        tag=args.tag,
        app_document=_app_document(cfg, args),
        secret_values=secrets,
    )


def scaffold(cfg: KilnConfig, args: argparse.Namespace, settings: DeployerSettings) -> int:
    files = render_scaffold(_inputs(cfg, args))
    written = write_scaffold(files, args.out)
    print(f"{len(files)} files in {args.out} ({len(written)} changed)")
    return 0


def deploy(cfg: KilnConfig, args: argparse.Namespace, settings: DeployerSettings) -> int:
    pkg = cfg.package(args.package)
    try:
        secrets = app_secret_values(args.package, pkg, os.environ)
    except AppConfigRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    substrate = substrate_factory(settings)(pkg.deployment.substrate)
    inputs = _inputs(cfg, args, secrets)
    outcome = run_release(inputs, substrate, HttpxProbe(), pkg.deployment.verify, time.sleep)
    report = {
        "deployed": outcome.deployed.model_dump(mode="json"),
        "verified": outcome.verified.model_dump(mode="json") if outcome.verified else None,
        "rollback": outcome.rollback.model_dump(mode="json") if outcome.rollback else None,
        "healthy": outcome.healthy,
        "error": outcome.error,
        "log_tail": list(outcome.log_tail),
    }
    print(json.dumps(report, indent=2))
    return 0 if outcome.healthy else 1


def status(cfg: KilnConfig, args: argparse.Namespace, settings: DeployerSettings) -> int:
    pkg = cfg.package(args.package)
    topology = plan_topology(cfg, args.package)
    substrate = substrate_factory(settings)(pkg.deployment.substrate)
    release = substrate.current(topology)
    services = {}
    for svc in topology.services:
        up, state = substrate.running(topology, svc)
        services[svc.name] = {
            "up": up,
            "state": state,
            "image": (release.images if release else {}).get(svc.name),
        }
    print(json.dumps({"revision": release.revision if release else None, "services": services}, indent=2))
    return 0 if all(s["up"] for s in services.values()) else 1


def targets(cfg: KilnConfig, args: argparse.Namespace, settings: DeployerSettings) -> int:
    topology = plan_topology(cfg, args.package)
    print(f"namespace {topology.namespace}")
    print(f"{'service':<20} {'kind':<6} {'port':>6} {'replicas':>8} {'node port':>9}  route")
    for s in topology.services:
        port, node_port, route = s.port or "-", s.node_port or "-", s.route or "-"
        print(f"{s.name:<20} {s.kind:<6} {port:>6} {s.replicas:>8} {node_port:>9}  {route}")
    return 0


def docs(cfg: KilnConfig, args: argparse.Namespace, settings: DeployerSettings) -> int:
    pkg = cfg.package(args.package)
    if pkg.docs is None:
        print(f"packages.{args.package}.docs: not configured (see docs/deployer.md, Docs)", file=sys.stderr)
        return 2
    source = Source(path=str((args.source or args.config.parent).resolve()))
    try:
        detail = docs_stage(settings, os.environ).run(args.package, pkg.docs, source)
    except DocsFailed as exc:
        print(f"docs: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(detail, indent=2))
    return 0
