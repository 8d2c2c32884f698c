"""`python -m services.compiler cache {stats,prune}`: look at and shrink the compile cache.

Defaults come from the compiler's settings (KILN_COMPILER_CACHE, KILN_COMPILER_CACHE_MAX_BYTES),
so on a compiler host the command sees the cache and the bound the workers use. Pruning is safe
while builds run: entries a running build relies on are kept (engine/eviction.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pydantic import ByteSize, TypeAdapter, ValidationError

from .engine import ModuleCache, default_cache_dir
from .engine.eviction import CacheStats, EvictionReport, prune, stats

_SIZE = TypeAdapter(ByteSize)


def byte_size(text: str) -> int:
    """argparse type: "5GiB", "800MB", "1048576"."""
    try:
        return int(_SIZE.validate_python(text))
    except ValidationError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (examples: 5GiB, 800MB, 1048576)") from None


def add_cache_options(parser: argparse.ArgumentParser, *, bound_flag: str) -> None:
    parser.add_argument(
        "--cache", type=Path, default=None, help=f"default: KILN_COMPILER_CACHE, else {default_cache_dir()}"
    )
    parser.add_argument(
        bound_flag,
        dest="max_bytes",
        type=byte_size,
        default=None,
        metavar="SIZE",
        help="size bound of the cache (5GiB, 800MB; 0 = unbounded); default: "
        "KILN_COMPILER_CACHE_MAX_BYTES, else 5GiB",
    )


def cache_from(args: argparse.Namespace) -> ModuleCache:
    """The cache the flags name, defaulting to what the compiler service's settings say."""
    from shared.settings import load_settings

    from .settings import CompilerSettings

    settings = load_settings(CompilerSettings)
    root = args.cache or settings.compiler_cache or None
    bound = args.max_bytes if args.max_bytes is not None else int(settings.compiler_cache_max_bytes)
    return ModuleCache(Path(root) if root else None, max_bytes=bound)


def register(commands: argparse._SubParsersAction) -> None:
    cache_cmd = commands.add_parser("cache", help="show or prune the compile cache")
    actions = cache_cmd.add_subparsers(dest="cache_action", required=True)
    stats_cmd = actions.add_parser("stats", help="size, entries, last use, running builds")
    prune_cmd = actions.add_parser("prune", help="evict least recently used entries down to the bound")
    for sub in (stats_cmd, prune_cmd):
        add_cache_options(sub, bound_flag="--max-bytes")
        sub.add_argument("--json", action="store_true", help="print JSON on stdout")
    prune_cmd.add_argument(
        "--all", action="store_true", help="evict every entry no running build uses (and clear ccache)"
    )
    stats_cmd.set_defaults(run=run_stats)
    prune_cmd.set_defaults(run=run_prune)


def run_stats(args: argparse.Namespace) -> int:
    cache = cache_from(args)
    if not cache.root.is_dir():
        print(f"error: no compile cache at {cache.root} (nothing compiled there yet?)", file=sys.stderr)
        return 2
    found = stats(cache)
    print(json.dumps(found.to_dict(), indent=2) if args.json else describe_stats(found))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    cache = cache_from(args)
    if not cache.root.is_dir():
        print(f"error: no compile cache at {cache.root}", file=sys.stderr)
        return 2
    report = prune(cache, everything=args.all)
    print(json.dumps(report.to_dict(), indent=2) if args.json else describe_prune(cache, report))
    return 0


def describe_stats(found: CacheStats) -> str:
    c, so = found.kinds["c"], found.kinds["so"]
    if found.max_bytes:
        share = f" ({100 * found.entry_bytes / max(1, found.entries_max_bytes):.0f}% of their bound)"
        bound = (
            f"{human(found.max_bytes)}: entries {human(found.entries_max_bytes)}, "
            f"ccache {human(found.ccache_max_bytes)}"
        )
    else:
        share, bound = "", "none (unbounded)"
    lines = [
        f"cache       {found.root}",
        f"bound       {bound}",
        f"entries     {c.entries} C ({human(c.bytes)}), {so.entries} extensions ({human(so.bytes)}): "
        f"{human(found.entry_bytes)}{share}",
        f"ccache      {human(found.ccache_bytes)}",
    ]
    if found.oldest_use is not None:
        lines.append(f"last use    oldest {when(found.oldest_use)}, newest {when(found.newest_use)}")
    running = ", ".join(f"pid {b.pid} since {when(b.started_ns / 1e9)}" for b in found.running_builds)
    lines.append(f"running     {len(found.running_builds)} build(s){': ' + running if running else ''}")
    if found.last_prune:
        last = found.last_prune
        lines.append(
            f"last prune  {when(last['finished'])}: evicted {last['evicted']} entries "
            f"({human(last['evicted_bytes'])}), kept {human(last['kept_bytes'])}"
        )
    if found.temporary_files:
        lines.append(f"temporary   {found.temporary_files} file(s) being written or left by a crash")
    return "\n".join(lines)


def describe_prune(cache: ModuleCache, report: EvictionReport) -> str:
    bound = human(report.bound_bytes) if cache.max_bytes else "none"
    lines = [
        f"evicted {report.evicted} entries ({human(report.evicted_bytes)}); "
        f"{human(report.kept_bytes)} kept (bound for entries: {bound})"
    ]
    if report.in_use_bytes:
        lines.append(
            f"{human(report.in_use_bytes)} over the bound kept: in use by {report.running_builds} "
            "running build(s) or used in the last seconds"
        )
    if report.garbage_removed:
        lines.append(f"removed {report.garbage_removed} leftover(s) of crashed builds")
    if report.ccache:
        lines.append(f"ccache: {report.ccache}")
    return "\n".join(lines)


def human(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{int(nbytes)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        nbytes /= 1024
        if nbytes < 1024 or unit == "TiB":
            break
    return f"{nbytes:.1f} {unit}"


def when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
