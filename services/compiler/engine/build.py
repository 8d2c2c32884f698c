"""compile_tree: the engine's entry point. Cached modules are linked straight from the cache;
the rest compile in a process pool (one module per task, largest first: the pool ends together).

A build holds a lease on the cache while it runs and looks entries up under the shared lookup
lock, so eviction never removes an entry it relies on (eviction.py); a build that added entries
prunes the cache back within its bound when it is done."""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import Cython

from shared.sandbox import REQUIRED, Sandbox

from . import tree as layout
from .cache import ModuleCache, digest, place
from .cc import Toolchain, find_ccache, normalize_platform, platform_slug, toolchain_for
from .confined import run_confined
from .cythonize import DIRECTIVES, cython_fingerprint
from .eviction import build_lease, lookup_lock, prune_if_over
from .job import ExtensionTarget, JobOutcome, ModuleJob, run_job
from .report import CompiledModule, CompileReport, summarize_sets
from .target import TargetPython

Progress = Callable[[CompiledModule], None]
log = logging.getLogger(__name__)
# The interpreter Cython runs in (part of the C key); the target's ABI is in the .so key.
PYTHON_ABI = f"{sys.implementation.cache_tag}:{sysconfig.get_config_var('SOABI')}"


def output_dirs(out: Path, platforms: list[str]) -> dict[str, Path]:
    """One platform: `out` itself. Several: `out/<arch>` (out/amd64, out/arm64)."""
    if len(platforms) == 1:
        return {platforms[0]: out}
    return {p: out / platform_slug(p) for p in platforms}


def compile_tree(
    src: Path,
    out: Path,
    *,
    platforms: list[str],
    jobs: int,
    cache: ModuleCache,
    factories: list[str] | None = None,
    fallback_to_source: Iterable[str] = frozenset(),
    progress: Progress | None = None,
    sandbox: Sandbox = REQUIRED,
    pythons: Mapping[str, TargetPython] | None = None,
) -> CompileReport:
    """The pending modules compile inside `sandbox` (confined.py); the host only hashes, looks up
    and links. `pythons`: the CPython each platform is compiled for (its base image's); a
    platform missing from it gets the host's Python (target.host_target)."""
    started = time.perf_counter()
    platforms = list(dict.fromkeys(normalize_platform(p) for p in platforms))
    wanted = {normalize_platform(p): python for p, python in (pythons or {}).items()}
    # ToolchainMissing before any work
    toolchains = [toolchain_for(p, wanted.get(p)) for p in platforms]
    outputs = output_dirs(Path(out).resolve(), platforms)
    for directory in outputs.values():
        layout.check_output_location(Path(src), directory)
    tree = layout.discover(Path(src), factories)
    fallback = set(fallback_to_source)
    notify = progress or (lambda _result: None)

    stored_bytes = 0
    with build_lease(cache):
        with lookup_lock(cache):  # no eviction between our stamps and our decisions
            lookup = _look_up(tree, toolchains, cache)
        results = lookup.results
        for decided in results.values():  # outside the lock: a slow callback never holds it
            notify(decided)
        by_name = {m.module: m for m in tree.modules}
        for outcome in _compile_pending(lookup.pending, jobs, sandbox, Path(src).resolve()):
            stored_bytes += outcome.stored_bytes
            module = by_name[outcome.module]
            if outcome.error is None:
                result = _result(module, "ok", outcome.duration_ms)
            else:
                status = "fallback" if module.module in fallback else "error"
                result = _result(module, status, outcome.duration_ms, outcome.error, outcome.line)
            results[module.module] = result
            notify(result)

        ordered = [results[m.module] for m in tree.modules]
        marker = {
            "compiled": True,
            "cython": Cython.__version__,
            "directives": {k: str(v) for k, v in DIRECTIVES.items()},
        }
        for toolchain in toolchains:
            _write_output(
                tree,
                outputs[toolchain.platform],
                toolchain,
                cache,
                results,
                lookup.keys,
                lookup.kept_as_source,
                marker,
            )
    try:
        prune_if_over(cache, stored_bytes)
    except OSError as problem:  # a full or read-only cache must not fail a finished build
        log.warning("compile cache %s: pruning failed: %s", cache.root, problem)
    report = CompileReport(outputs=outputs, modules=ordered, sets=summarize_sets(ordered))
    report.duration_ms = int((time.perf_counter() - started) * 1000)
    return report


@dataclass
class _Lookup:
    results: dict[str, CompiledModule] = field(default_factory=dict)
    pending: list[ModuleJob] = field(default_factory=list)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> platform -> .so key
    kept_as_source: set[str] = field(default_factory=set)


def _look_up(tree, toolchains, cache: ModuleCache) -> _Lookup:
    """Decide per module: empty, cached, or to compile. Every entry this build will rely on is
    stamped as used here (cache.use), which is what keeps eviction away from it."""
    found = _Lookup()
    ccache = find_ccache()
    fingerprint = cython_fingerprint()
    for module in tree.modules:
        try:
            source = module.path.read_bytes()
        except OSError as unreadable:
            found.results[module.module] = _result(module, "error", 0, f"cannot read: {unreadable}")
            continue
        if _has_no_code(source):
            found.kept_as_source.add(module.module)
            found.results[module.module] = _result(module, "ok", 0)
            continue
        c_key = digest(source, module.module, fingerprint, PYTHON_ABI)
        targets = tuple(ExtensionTarget(tc, _extension_key(c_key, tc)) for tc in toolchains)
        found.keys[module.module] = {t.toolchain.platform: t.key for t in targets}
        hits = [cache.use(cache.extension_path(t.key)) for t in targets]  # every one: all are stamped
        if all(hits):
            found.results[module.module] = _result(module, "cached", 0)
            continue
        cache.use(cache.c_path(c_key))  # the job may reuse the C of an earlier build
        found.pending.append(
            ModuleJob(module.module, module.path, str(module.relative), c_key, targets, cache, ccache)
        )
    return found


def _extension_key(c_key: str, toolchain: Toolchain) -> str:
    return digest(c_key, toolchain.fingerprint(), toolchain.ext_suffix)


def _has_no_code(source: bytes) -> bool:
    # Line scan, not ast.parse: this runs for every module on the no-change path.
    return all(not line.strip() or line.lstrip().startswith(b"#") for line in source.splitlines())


def _result(module, status, duration_ms, error=None, line=None) -> CompiledModule:
    return CompiledModule(
        module.module, module.factory, status, duration_ms, error, str(module.relative), line
    )


def _compile_pending(pending: list[ModuleJob], jobs: int, sandbox: Sandbox, src: Path):
    if not pending:
        return iter(())
    if not sandbox.available():
        log.warning("UNSANDBOXED: compiling %d repository modules without a sandbox "
                    "(KILN_ALLOW_UNSANDBOXED=true)", len(pending))  # fmt: skip
        return run_pool(pending, jobs)
    return run_confined(pending, jobs, sandbox, src)


def run_pool(pending: list[ModuleJob], jobs: int) -> Iterable[JobOutcome]:
    """The process pool itself (inside the sandbox, or unconfined when the operator opted out)."""
    if not pending:
        return
    pending = sorted(pending, key=lambda job: job.source.stat().st_size, reverse=True)
    # forkserver: workers never inherit the caller's threads (the bus worker runs an event loop).
    context = multiprocessing.get_context("forkserver")
    # Cython's compiler is imported once in the fork server, not once per worker.
    context.set_forkserver_preload(["services.compiler.engine.job", "Cython.Compiler.Main"])
    workers = max(1, min(jobs, len(pending)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_job, job): job for job in pending}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as died:  # e.g. a worker killed by the OOM killer: report, go on
                failure = f"worker process failed: {type(died).__name__}: {died}"
                yield JobOutcome(futures[future].module, 0, failure)


def _write_output(tree, out, toolchain, cache, results, keys, kept_as_source, marker) -> None:
    stage = layout.staging_dir(out)
    stage.mkdir(parents=True)
    try:
        manifest = _fill_stage(tree, stage, toolchain, cache, results, keys, kept_as_source, marker)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # never leave half a tree behind
        raise
    layout.publish(stage, out, manifest)


def _fill_stage(tree, stage, toolchain, cache, results, keys, kept_as_source, marker) -> dict:
    written = {}
    for module in tree.modules:
        status = results[module.module].status
        if module.module in kept_as_source:
            target = stage / module.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")  # comments are dropped: nothing of the source ships
            written[module.module] = "empty"
        elif status in ("ok", "cached"):
            entry = cache.extension_path(keys[module.module][toolchain.platform])
            place(entry, stage / layout.extension_relative(module, toolchain.ext_suffix))
            written[module.module] = "compiled"
        elif status == "fallback":
            target = stage / module.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(module.path, target)
            written[module.module] = "source"
    layout.copy_data(tree, stage)
    marker = {**marker, **toolchain.python.marker(), "platform": toolchain.platform}
    layout.write_markers(tree, stage, marker)
    return {**marker, "modules": written}
