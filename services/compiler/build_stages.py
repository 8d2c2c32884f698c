"""The compiler's three stages of a build: config (fetch + validate), keys, compile (+ push).

Each returns (result, detail) or raises StageFailed with a reason a person can act on.
Stage config reads two configs: the operator's (`operator_config`, KILN_CONFIG_PATH: trusted,
it decides registries, base images, keys ...) and the tree's own config.yaml, which may only
describe what is built (shared/config/repository.py) and is read with the untrusted-YAML loader.
"""

from __future__ import annotations

import contextlib
import logging
import platform as host
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from services.compiler.app_config import app_config_document, push_app_config
from services.compiler.engine import CompiledModule, CompileReport
from services.compiler.engine.tree import UnsafeLink
from services.compiler.fanout import ImagePlan, PlanError, build_version, plan_images
from services.compiler.ports import ArtifactStore, BasePythons, FetchFailed, SourceFetcher, TreeCompiler
from services.compiler.pythons import target_pythons
from services.compiler.reuse import ArtifactIndex
from services.compiler.source import (
    UnreadableConfig,
    factory_view,
    find_credential_files,
    find_escaping_links,
    read_repository_config,
    source_digest,
)
from services.compiler.tiers_bundle import (
    MissingRequirements,
    requirement_files,
    tiers_document,
    write_tiers_bundle,
)
from shared.bus.live_logs import LineSink, discard
from shared.bus.stage import StageFailed
from shared.config import ConfigError, KilnConfig, PackageConfig, key_paths, load_build_config
from shared.config.yaml_source import REPOSITORY_CONFIG_MAX_BYTES
from shared.events import BuildRequested
from shared.events.compile import Artifact, DocumentReference, FactorySetTiming, ModuleResult
from shared.naming import version_for_ref

log = logging.getLogger("kiln.compiler")


@dataclass(frozen=True)
class PreparedBuild:
    """What stage config established: the tree, its config, and the images to request."""

    root: Path
    view: Path
    config: KilnConfig
    package: PackageConfig
    factory_dirs: dict[str, str]
    requirements: dict[str, Path]
    images: list[ImagePlan]
    # The package's trimmed app config (packages.<p>.app_config), pushed by stage compile.
    app_config: bytes | None = None


@dataclass(frozen=True)
class CompileOutcome:
    ok: bool
    source_digest: str
    modules: tuple[ModuleResult, ...] = ()
    sets: tuple[FactorySetTiming, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    skipped: bool = False
    duration_ms: int = 0
    app_config: DocumentReference | None = None


class CompileFailed(StageFailed):
    """Stage compile failed: its per-module results still go out in CompileCompleted(ok=False)."""

    def __init__(self, error: str, detail: dict, compile_result: CompileOutcome):
        super().__init__(error, detail)
        self.compile_result = compile_result


def config_stage(
    event: BuildRequested,
    work_dir: Path,
    *,
    fetcher: SourceFetcher,
    config_file: str,
    operator_config: str,
    config_env: Mapping[str, str],
    default_base_images: Mapping[str, str | None],
) -> tuple[PreparedBuild, dict]:
    try:
        root = fetcher.fetch(event.source, work_dir, package=event.package)
    except FetchFailed as exc:
        raise StageFailed(f"fetching the source failed: {exc}") from None
    escaping = find_escaping_links(root)
    if escaping:
        raise StageFailed(
            "symbolic links leaving the source tree (Kiln never reads through them; remove them or "
            f"point them inside the repository): {', '.join(escaping)}",
            {"escaping_links": escaping},
        )
    try:
        repository = read_repository_config(root, config_file, REPOSITORY_CONFIG_MAX_BYTES)
        config = load_build_config(
            operator_config, repository, env=config_env, repository_name=config_file, source_dir=root
        )
    except UnreadableConfig as exc:
        raise StageFailed(str(exc)) from None
    except ConfigError as exc:
        errors = [f"{path}: {message}" for path, message in exc.errors]
        raise StageFailed(
            f"the build's config is invalid ({config_file} in the repository over the operator config "
            f"{operator_config}):\n" + "\n".join(errors),
            {"errors": errors},
        ) from None
    if event.package not in config.packages:
        known = ", ".join(sorted(config.packages))
        raise StageFailed(f"no package {event.package!r} in the operator config (known: {known})")
    package = config.packages[event.package]
    try:
        paths = {name: config.factories[name].path for name in package.factories}
        factory_dirs = factory_view(root, paths, work_dir / "view")
        requirements = requirement_files(config, root)
        version = build_version(event, config, fork_point=_fork_point(fetcher, event, root, config))
        images = plan_images(
            event,
            config,
            package,
            factory_dirs=factory_dirs,
            default_base_images=default_base_images,
            version=version,
        )
    except (PlanError, MissingRequirements, ValueError) as exc:
        raise StageFailed(str(exc)) from None
    app_config = app_config_document(root, event.package, package)
    detail = {
        "package": event.package,
        "source": "path" if event.source.path else "git",
        "repository_config": repository is not None,
        "factories": len(factory_dirs),
        "services": len(package.enabled_services()),
        "services_off": sorted(set(package.services) - set(package.enabled_services())),
        "images": len(images),
        "version": version,  # for log_build_run when the branch alone did not name it
        # The build host, for log_build_run (the reporter reads these two keys).
        "host_arch": host.machine(),
        "host_os": f"{host.system()} {host.release()}",
    }
    if app_config is not None and package.app_config is not None:
        detail["app_config"] = {"path": package.app_config.path, "sections": len(package.app_config.sections)}
    prepared = PreparedBuild(
        root, work_dir / "view", config, package, factory_dirs, requirements, images, app_config
    )
    return prepared, detail


def _fork_point(fetcher: SourceFetcher, event: BuildRequested, root: Path, config: KilnConfig):
    """Where the build's branch forked, from the source's history: a git source's checkout is
    one commit deep, so the mapped branches' commit graph is fetched first (no file contents).
    Unknown (None: the `*` version) when the history cannot be had; the build goes on."""

    def version_from_history(branches: list[str]) -> str | None:
        try:
            fetcher.fetch_history(root, event.source, branches, package=event.package)
            return version_for_ref(root, "HEAD", config.version_map)
        except (FetchFailed, ValueError, OSError) as exc:
            log.warning("build %s: where %s forked is unknown (%s); using the '*' version",
                        event.package, event.source.ref, exc)  # fmt: skip
            return None

    return version_from_history


def keys_stage(event: BuildRequested, prepared: PreparedBuild) -> tuple[None, dict]:
    private, public = key_paths(prepared.package.keys.dir, event.package)
    missing = [str(p) for p in (private, public) if not p.is_file()]
    planted = find_credential_files(prepared.root)
    problems = []
    if missing:
        problems.append(
            f"missing key file(s) {', '.join(missing)} (keys.dir is {prepared.package.keys.dir}; create "
            f"them with: python -m shared.config keys generate --package {event.package} --dir DIR)"
        )
    if planted:
        problems.append(
            "key or credential files inside the build context (remove them from the repository "
            f"and rotate them): {', '.join(planted)}"
        )
    if problems:
        raise StageFailed("; ".join(problems), {"missing": missing, "credential_files": planted})
    return None, {"private_key": str(private), "public_key": str(public), "credential_files": 0}


def compile_stage(
    event: BuildRequested,
    build_id: str,
    prepared: PreparedBuild,
    work_dir: Path,
    *,
    compiler: TreeCompiler,
    store: ArtifactStore,
    index: ArtifactIndex,
    log: LineSink = discard,
    pythons: BasePythons | None = None,
) -> tuple[CompileOutcome, dict]:
    """`log` receives the stage's live log lines: each module's result as it completes. `pythons`
    reads each platform's target CPython from its base image (None: the host's Python); the
    headers it found stay held until the compile is done."""
    with contextlib.ExitStack() as held:
        targets = target_pythons(event.package, prepared, event.options.platforms, pythons, held, log)
        return _compile(event, build_id, prepared, work_dir, targets, compiler, store, index, log)


def _compile(event, build_id, prepared, work_dir, targets, compiler, store, index, log):
    platforms = list(event.options.platforms)
    fallback = sorted(prepared.package.compile.fallback_to_source)
    digest = source_digest(
        prepared.view,
        prepared.requirements.values(),
        {
            "fallback": fallback,
            "tiers": tiers_document(prepared.config, prepared.requirements),
            # Another Python (a new base image) is another compile, never a reused artifact.
            "python": {p: [t.soabi, t.headers_digest] for p, t in sorted(targets.items())},
        },
    )
    note = None
    app_config = push_app_config(store, prepared.app_config, package=event.package, build=build_id)
    if event.options.skip_compile:
        reused = index.find(store.location, digest, platforms)
        if reused and all(store.exists(a) for a in reused):
            detail = {
                "reused": True,
                "source_digest": digest,
                "artifacts": {a.platform: a.digest for a in reused},
            }
            log(f"skip_compile: reusing the artifacts compiled earlier from source {digest}")
            outcome = CompileOutcome(
                True, digest, artifacts=tuple(reused), skipped=True, app_config=app_config
            )
            return outcome, detail
        note = "skip_compile requested, but no earlier artifacts exist for this source: compiled"
        log(note)
    factories = sorted(set(prepared.factory_dirs.values()))
    log(f"compiling {', '.join(factories)} for {', '.join(platforms)}")
    progress = ModuleProgress(log)
    try:
        report = compiler.compile(
            prepared.view,
            work_dir / "out",
            platforms=platforms,
            factories=factories,
            fallback_to_source=fallback,
            progress=progress,
            pythons=targets,
        )
    except UnsafeLink as exc:
        raise StageFailed(str(exc), {"unsafe_link": str(exc)}) from None
    log(progress.summary(report))
    modules, sets = event_results(report, platforms)
    detail = {**_counts(report), "platforms": platforms, "source_digest": digest}
    detail["python"] = {p: t.soabi for p, t in targets.items()}
    if note:
        detail["note"] = note
    if not report.ok:
        failed = "\n".join(
            f"{m.file}:{m.line}: {m.error}" if m.line else f"{m.file}: {m.error}" for m in report.failed
        )
        outcome = CompileOutcome(False, digest, modules, sets, duration_ms=report.duration_ms)
        raise CompileFailed(f"{len(report.failed)} module(s) failed to compile:\n{failed}", detail, outcome)
    artifacts = []
    for platform in platforms:
        out = report.outputs[platform]
        write_tiers_bundle(out, prepared.config, prepared.requirements)
        artifacts.append(
            store.push(out, package=event.package, build=build_id, platform=platform, source_digest=digest)
        )
        log(f"pushed the {platform} artifact: {artifacts[-1].reference}")
    index.record(store.location, digest, artifacts)
    detail["artifacts"] = {a.platform: a.digest for a in artifacts}
    return CompileOutcome(
        True, digest, modules, sets, tuple(artifacts), duration_ms=report.duration_ms, app_config=app_config
    ), detail


class ModuleProgress:
    """Each module's result as a log line as it completes. Cached modules are only counted: on
    the no-change path thousands of "cached" lines would bury what matters."""

    def __init__(self, log: LineSink):
        self._log = log
        self.done = 0

    def __call__(self, result: CompiledModule) -> None:
        self.done += 1
        if result.status == "cached":
            return
        line = f"[{self.done}] {result.status:<8} {result.module} ({result.duration_ms} ms)"
        if result.error:
            where = f"{result.file}:{result.line}" if result.line else result.file
            line += f"\n{where}: {result.error}"  # cythonize / cc output, several lines
        self._log(line)

    @staticmethod
    def summary(report: CompileReport) -> str:
        counts = {
            s: sum(m.status == s for m in report.modules) for s in ("ok", "cached", "fallback", "error")
        }
        return (
            f"{len(report.modules)} modules: {counts['ok']} compiled, {counts['cached']} cached, "
            f"{counts['fallback']} fallback, {counts['error']} failed in {report.duration_ms / 1000:.1f} s"
        )


def event_results(
    report: CompileReport, platforms: list[str]
) -> tuple[tuple[ModuleResult, ...], tuple[FactorySetTiming, ...]]:
    """The engine compiles a module for every platform at once: one result, reported per platform."""
    modules = tuple(
        ModuleResult(**asdict(m), platform=platform) for platform in platforms for m in report.modules
    )
    sets = tuple(
        FactorySetTiming(**asdict(s), platform=platform) for platform in platforms for s in report.sets
    )
    return modules, sets


def _counts(report: CompileReport) -> dict[str, int]:
    statuses = [m.status for m in report.modules]
    return {
        "modules": len(statuses),
        "compiled": statuses.count("ok"),
        "cached": statuses.count("cached"),
        "fallback": statuses.count("fallback"),
        "failed": statuses.count("error"),
        "duration_ms": report.duration_ms,
    }
