"""What the sandbox (shared/sandbox.py) costs the compile engine, in the same run: the example
monorepo compiled cold (empty cache) and after a one-file change, confined and unconfined,
alternating so both see the same machine load. Not run by CI.

    .venv/bin/python bench/compile/sandbox_cost.py [--repeat 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from services.compiler.engine import ModuleCache, compile_tree
from services.compiler.engine.cc import host_platform
from shared.sandbox import Sandbox

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monorepo"
CONFINED = Sandbox()
# The operator's opt-out, forced: a bwrap that does not exist, with required=False.
UNCONFINED = Sandbox(required=False, bwrap="/nonexistent/kiln-bench-no-bwrap")


def one_round(work: Path, sandbox: Sandbox, jobs: int) -> tuple[float, float]:
    src = work / "src"
    shutil.copytree(EXAMPLE, src)
    cache = ModuleCache(work / "cache")

    def timed() -> float:
        started = time.perf_counter()
        report = compile_tree(src, work / "out", platforms=[host_platform()], jobs=jobs, cache=cache,
                              sandbox=sandbox)  # fmt: skip
        assert all(m.status in ("ok", "cached") for m in report.modules), report.modules
        return time.perf_counter() - started

    cold = timed()
    changed = next(p for p in sorted(src.rglob("*.py")) if p.stat().st_size > 200)
    changed.write_text(changed.read_text() + "\n\ndef _bench_change():\n    return 1\n")
    return cold, timed()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[tuple[float, float]]] = {"sandboxed": [], "unsandboxed": []}
    modes = [("sandboxed", CONFINED), ("unsandboxed", UNCONFINED)]
    for round_number in range(args.repeat):
        # Alternate which goes first: the second of a pair finds warmer page caches.
        for name, sandbox in modes if round_number % 2 == 0 else modes[::-1]:
            with tempfile.TemporaryDirectory(prefix="kiln-bench-sandbox-") as work:
                times[name].append(one_round(Path(work), sandbox, args.jobs))
            cold, change = times[name][-1]
            print(f"  round {len(times[name])} {name:12} cold {cold:6.2f} s  one-file change {change:5.2f} s")
    for name, rounds in times.items():
        cold = statistics.median(r[0] for r in rounds)
        change = statistics.median(r[1] for r in rounds)
        print(f"{name:12} cold {cold:6.2f} s   one-file change {change:5.2f} s   (median of {len(rounds)})")


if __name__ == "__main__":
    main()
