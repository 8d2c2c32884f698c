"""Compiler service entry: `python -m services.compiler <subcommand>`.

`worker` (the default) consumes build.requested on the bus: see docs/compiler.md, "The compiler
service". `compile` is the standalone command (no bus, no database). `cache stats|prune` shows
and shrinks the compile cache (cache_command.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from shared.platforms import PLATFORM_NAMES

from . import cache_command
from .engine import (
    CompiledModule,
    CompileReport,
    OutputNotOurs,
    ToolchainMissing,
    compile_tree,
    host_platform,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.compiler")
    commands = parser.add_subparsers(dest="command")
    worker_cmd = commands.add_parser("worker", help="consume build.requested (the default)")
    worker_cmd.set_defaults(run=worker_command)
    compile_cmd = commands.add_parser("compile", help="compile a directory of Python packages")
    compile_cmd.add_argument("src", type=Path, help="a package directory or a directory of packages")
    compile_cmd.add_argument("--out", type=Path, required=True, help="directory receiving the compiled tree")
    compile_cmd.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        help=f"{' or '.join(PLATFORM_NAMES)}, repeatable (default: {host_platform()}); "
        "with several, DIR/<arch> per platform",
    )
    compile_cmd.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    cache_command.add_cache_options(compile_cmd, bound_flag="--cache-max-bytes")
    compile_cmd.add_argument(
        "--factory", action="append", dest="factories", help="only this top-level package"
    )
    compile_cmd.add_argument(
        "--fallback-to-source",
        action="append",
        default=[],
        metavar="MODULE",
        help="dotted module allowed to ship as source if it does not compile",
    )
    compile_cmd.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    compile_cmd.set_defaults(run=run_compile)
    cache_command.register(commands)
    return parser


def worker_command(args: argparse.Namespace) -> int:
    from shared.bus.worker import run_worker
    from shared.logging import setup_logging
    from shared.settings import load_settings

    from .bootstrap import bootstrap
    from .settings import CompilerSettings

    settings = load_settings(CompilerSettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    return run_worker(bootstrap(settings))


def run_compile(args: argparse.Namespace) -> int:
    counter = {"done": 0}

    def show_progress(result: CompiledModule) -> None:
        counter["done"] += 1
        if result.status == "cached":
            return  # thousands of "cached" lines would bury what matters; the summary counts them
        where = f"{result.file}:{result.line}" if result.line else result.file
        detail = f"  {where}: {result.error}" if result.error else ""
        line = f"[{counter['done']}] {result.status:<8} {result.module} ({result.duration_ms} ms)"
        print(
            line + detail,
            file=sys.stderr,
            flush=True,
        )

    try:
        report = compile_tree(
            args.src,
            args.out,
            platforms=args.platforms or [host_platform()],
            jobs=max(1, args.jobs),
            cache=cache_command.cache_from(args),
            factories=args.factories,
            fallback_to_source=set(args.fallback_to_source),
            progress=show_progress,
        )
    except (ToolchainMissing, OutputNotOurs, FileNotFoundError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_summary(report)
    return 0 if report.ok else 1


def print_summary(report: CompileReport) -> None:
    for timing in report.sets:
        print(
            f"{timing.factory:<30} {timing.modules:>5} modules  ok {timing.ok:>5}  failed "
            f"{timing.failed:>3}  cached {timing.cached:>5}  {timing.duration_ms / 1000:8.1f} s"
        )
    for failure in report.failed:
        where = f"{failure.file}:{failure.line}" if failure.line else failure.file
        print(f"FAILED {where}: {failure.error}")
    counts = {s: sum(m.status == s for m in report.modules) for s in ("ok", "cached", "fallback", "error")}
    outputs = ", ".join(f"{p} -> {d}" for p, d in report.outputs.items())
    print(
        f"{len(report.modules)} modules: {counts['ok']} compiled, {counts['cached']} cached, "
        f"{counts['fallback']} fallback, {counts['error']} failed "
        f"in {report.duration_ms / 1000:.2f} s; {outputs}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return getattr(args, "run", worker_command)(args)


if __name__ == "__main__":
    sys.exit(main())
