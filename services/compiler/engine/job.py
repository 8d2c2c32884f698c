"""One module's compile, run in a worker process: syntax check -> C (once) -> .so per platform.

Only plain, picklable data crosses the process boundary. Every failure becomes a JobOutcome with a
message and, when known, a line: a bad module never crashes the build.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import ModuleCache
from .cc import Toolchain, build_extension
from .cythonize import generate_c
from .precheck import check_syntax


@dataclass(frozen=True)
class ExtensionTarget:
    toolchain: Toolchain
    key: str  # cache key of the .so for this platform


@dataclass(frozen=True)
class ModuleJob:
    module: str
    source: Path
    display_file: str  # path shown in errors, relative to the tree root
    c_key: str
    targets: tuple[ExtensionTarget, ...]
    cache: ModuleCache
    ccache: str | None


@dataclass(frozen=True)
class JobOutcome:
    module: str
    duration_ms: int
    error: str | None = None
    line: int | None = None
    stored_bytes: int = 0  # added to the cache (what eviction keeps count of)


def run_job(job: ModuleJob) -> JobOutcome:
    started = time.perf_counter()
    stored: list[int] = []
    try:
        error, line = _compile(job, stored)
    except Exception as unexpected:  # a worker must always answer
        error, line = f"internal error: {type(unexpected).__name__}: {unexpected}", None
    elapsed = int((time.perf_counter() - started) * 1000)
    return JobOutcome(job.module, elapsed, error, line, sum(stored))


def _compile(job: ModuleJob, stored: list[int]) -> tuple[str | None, int | None]:
    cache = job.cache
    c_entry = cache.c_path(job.c_key)
    with tempfile.TemporaryDirectory(prefix="kiln-cc-") as scratch:
        work = Path(scratch)
        if not cache.has(c_entry):
            source = job.source.read_bytes()
            problem = check_syntax(source, job.display_file)
            if problem:
                return problem.message, problem.line
            c_file = work / "module.c"
            failure = generate_c(job.source, job.module, c_file)
            if failure:
                return failure.message, failure.line
            stored.append(cache.store(c_file, c_entry))
        for target in job.targets:
            extension_entry = cache.extension_path(target.key)
            if cache.has(extension_entry):
                continue
            extension = work / f"{job.module.rsplit('.', 1)[-1]}{target.toolchain.ext_suffix}"
            try:
                build_extension(
                    target.toolchain,
                    c_entry,
                    extension,
                    ccache=job.ccache,
                    ccache_dir=cache.ccache_dir,
                    ccache_max_bytes=cache.ccache_max_bytes(job.ccache is not None),
                )
            except subprocess.CalledProcessError as failed:
                detail = (failed.stderr or "").strip().splitlines()[-5:]
                return f"C compile for {target.toolchain.platform} failed: {' '.join(detail)}", None
            stored.append(cache.store(extension, extension_entry))
    return None, None
