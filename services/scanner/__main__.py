"""`python -m services.scanner [worker]`: consume image.pushed, scan, gate, report.
`python -m services.scanner audit {deps,config,secrets,image,all} [--image-tag REF] [--path DIR]`:
run audits standalone and print them; with `--build-id`, also emit `audit.completed` events."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from services.scanner.audit import MODES, AuditResult, audit_config, audit_deps, audit_image, audit_secrets
from services.scanner.bootstrap import SOURCE, bootstrap
from services.scanner.ports import AuditScanner
from services.scanner.report import ScanError
from services.scanner.settings import ScannerSettings
from shared.bus import Bus
from shared.bus.worker import run_worker
from shared.config import ConfigError, KilnConfig, load_config
from shared.events import StageFinished, StageStarted
from shared.logging import setup_logging
from shared.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.scanner")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("worker", help="consume image.pushed (the default)").set_defaults(run=worker_command)
    audit = commands.add_parser("audit", help="audit deps, config, secrets, an image, or all")
    audit.add_argument("mode", choices=[*MODES, "all"])
    audit.add_argument("--image-tag", help="full image reference for `image` (repository:tag or @digest)")
    audit.add_argument("--path", type=Path, default=Path("."), help="tree to audit (default: .)")
    audit.add_argument("--config", type=Path, help="config.yaml (tiers for deps; default KILN_CONFIG_PATH)")
    audit.add_argument("--build-id", help="emit audit.completed for this build")
    audit.add_argument("--package", default="", help="package of that build")
    audit.add_argument("--json", action="store_true", help="print results as JSON")
    audit.set_defaults(run=run_audit)
    return parser


def worker_command(args: argparse.Namespace, settings: ScannerSettings) -> int:
    return run_worker(bootstrap(settings))


def run_audit(args: argparse.Namespace, settings: ScannerSettings) -> int:
    if args.mode == "image" and not args.image_tag:
        print("audit image needs --image-tag REF", file=sys.stderr)
        return 2
    scanner = bootstrap(settings, with_database=False).parts["trivy"]
    modes = [m for m in MODES if m != "image" or args.image_tag] if args.mode == "all" else [args.mode]
    try:
        config = _config(args.config or settings.config_path)
        results = [_run_mode(mode, scanner, args, config) for mode in modes]
    except (ScanError, ConfigError) as exc:
        print(f"audit failed: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(json.dumps(result.event().model_dump(mode="json")) if args.json else _describe(result))
    if args.build_id:
        asyncio.run(_emit(settings, args.build_id, args.package, results))
    return 1 if any(r.serious() for r in results) else 0


def _config(path: str | Path | None) -> KilnConfig | None:
    return load_config(path) if path else None


def _run_mode(mode: str, scanner: AuditScanner, args: argparse.Namespace, config) -> AuditResult:
    started = time.monotonic()
    print(f"audit {mode}: running…", file=sys.stderr)
    if mode == "deps":
        root = Path(args.config).parent if args.config and args.path == Path(".") else args.path
        result = audit_deps(scanner, root, config)
    elif mode == "config":
        result = audit_config(scanner, args.path)
    elif mode == "secrets":
        result = audit_secrets(scanner, args.path)
    else:
        result = audit_image(scanner, args.image_tag)
    print(f"audit {mode}: done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return result


def _describe(result: AuditResult) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in result.counts().items() if v)
    lines = [f"== audit {result.mode} of {result.target}: {counts or 'no findings'}"]
    if result.note:
        lines.append(f"   note: {result.note}")
    for f in result.findings:
        what = " ".join(x for x in (f.package, f.installed, f"-> {f.fixed}" if f.fixed else "") if x)
        where = " ".join(x for x in (f.file, f"layer {f.layer}" if f.layer else "") if x)
        lines.append(f"   {f.severity:<8} {f.id:<24} {what} {where} {f.title}".rstrip())
    return "\n".join(lines)


async def _emit(settings: ScannerSettings, build_id: str, package: str, results: list[AuditResult]) -> None:
    bus = await Bus.from_settings(settings, source=SOURCE).connect()
    try:
        await bus.emit(StageStarted(stage="audit"), build_id=build_id, package=package)
        for result in results:
            await bus.emit(result.event(), build_id=build_id, package=package)
        serious = [r.mode for r in results if r.serious()]
        await bus.emit(
            StageFinished(
                stage="audit",
                status="succeeded",
                detail={"modes": [r.mode for r in results], "serious": serious},
            ),
            build_id=build_id,
            package=package,
        )
    finally:
        await bus.stop(grace_s=5)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(ScannerSettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    return getattr(args, "run", worker_command)(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
