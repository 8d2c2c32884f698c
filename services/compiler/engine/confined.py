"""The compile pool inside the sandbox (shared/sandbox.py): Cython and the C compiler read the
repository's modules, so they run where those modules can reach nothing.

One sandbox per compile, not one per module: the pool of `job.run_job` workers runs inside it, so
a one-file change costs one bwrap + interpreter start (see docs/architecture.md for the numbers).
The sandbox sees the tree read-only, the compile cache writable (where jobs store C and .so
entries and ccache keeps its files), no network and no Kiln setting. The host hands the jobs in as
a pickle it wrote itself and reads outcomes back as JSON lines, never as a pickle: what comes out
of the sandbox is data, never code.
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from shared.sandbox import Sandbox, python_paths

from .job import JobOutcome, ModuleJob

_OUTCOME_FIELDS = ("module", "duration_ms", "error", "line", "stored_bytes")
_MESSAGE_LINES = 10


def run_confined(pending: list[ModuleJob], jobs: int, sandbox: Sandbox, src: Path) -> Iterator[JobOutcome]:
    """Outcomes as the sandboxed pool finishes them; a sandbox that dies fails the rest, named."""
    with tempfile.TemporaryDirectory(prefix="kiln-confined-") as scratch:
        jobs_file = Path(scratch) / "jobs.pickle"
        jobs_file.write_bytes(pickle.dumps(pending))
        cache_root = pending[0].cache.root
        cache_root.mkdir(parents=True, exist_ok=True)
        read_only = [*python_paths(), src, *_linked_roots(src), scratch, *_toolchain_paths(pending)]
        process = sandbox.popen(
            [sys.executable, "-I", "-m", __name__, str(jobs_file), str(jobs)],
            read_only=read_only, writable=[cache_root], env={"LC_ALL": "C"}, cwd="/tmp",
        )  # fmt: skip
        answered: set[str] = set()
        for line in process.stdout or ():
            outcome = _outcome(line, {job.module for job in pending})
            if outcome is not None and outcome.module not in answered:
                answered.add(outcome.module)
                yield outcome
        problem = (process.stderr.read() if process.stderr else "").strip().splitlines()[-_MESSAGE_LINES:]
        process.wait()
        for job in pending:
            if job.module not in answered:
                detail = " ".join(problem) or f"exit code {process.returncode}"
                yield JobOutcome(job.module, 0, f"sandboxed compile failed: {detail}")


def _outcome(line: str, modules: set[str]) -> JobOutcome | None:
    try:
        fields = json.loads(line)
        outcome = JobOutcome(**{name: fields[name] for name in _OUTCOME_FIELDS})
    except (ValueError, KeyError, TypeError):
        return None
    return outcome if outcome.module in modules else None


def _linked_roots(src: Path) -> list[Path]:
    """The compiler stage's view links each factory's directory into `src`: those targets are
    bound too. Links inside the repository's own tree get nothing: outside the bound
    directories they lead nowhere in the sandbox."""
    return [entry.resolve() for entry in src.iterdir() if entry.is_symlink() and entry.resolve().is_dir()]


def _toolchain_paths(pending: Iterable[ModuleJob]) -> set[str]:
    paths: set[str] = set()
    for job in pending:
        for target in job.targets:
            paths.update(target.toolchain.include_dirs)
            paths.add(target.toolchain.compiler)
    return paths


def main(argv: list[str]) -> int:
    """Inside the sandbox: run the pool on the pickled jobs, one JSON line per finished module."""
    from .build import run_pool

    jobs_file, workers = argv
    pending = pickle.loads(Path(jobs_file).read_bytes())
    for outcome in run_pool(pending, int(workers)):
        print(json.dumps(asdict(outcome)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
