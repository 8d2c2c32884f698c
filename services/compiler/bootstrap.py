"""The one place that wires the compiler service: settings -> git, engine, artifact store,
skip-compile index, cancellation, idempotency guard, and the handler table.

Unit tests call `bootstrap(settings, fetcher=..., compiler=..., store=..., pythons=...)` with
fakes; the worker calls it with settings alone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

from services.compiler.adapters.artifact_store import SharedArtifactStore
from services.compiler.adapters.engine_compiler import EngineCompiler
from services.compiler.base_python.reader import BasePythonReader
from services.compiler.base_python.registry_image import Registries
from services.compiler.base_python.store import ImageStore
from services.compiler.engine import ModuleCache, default_cache_dir
from services.compiler.handlers import BuildSettings, on_build_requested
from services.compiler.ports import ArtifactStore, BasePythons, SourceFetcher, TreeCompiler
from services.compiler.reuse import ArtifactIndex
from services.compiler.settings import CompilerSettings
from shared.artifacts import FILE_SCHEME
from shared.bus import SqlIdempotencyGuard
from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.dispatch import HandlerTable
from shared.bus.give_up import end_build_failed
from shared.bus.idempotency import IdempotencyGuard
from shared.bus.live_logs import LogShipper
from shared.bus.worker import Consumer, Worker
from shared.events import BuildRequested
from shared.git_source import GitSource
from shared.platforms import per_platform
from shared.registry import RegistryClient
from shared.registry.transport import parse_hosts
from shared.sandbox import Sandbox
from shared.sources import SourceGuard

SOURCE = "compiler"


def artifact_store_from(settings: CompilerSettings) -> SharedArtifactStore:
    if settings.artifact_store and settings.artifact_store.startswith(FILE_SCHEME):
        return SharedArtifactStore(settings.artifact_store)
    client = RegistryClient.from_settings(settings)
    return SharedArtifactStore(settings.artifact_store or f"{client.host}/kiln", client)


def base_pythons_from(settings: CompilerSettings) -> BasePythonReader:
    """Base images are read with the operator's registry credentials on KILN_REGISTRY_URL's host,
    anonymously elsewhere; what was read is cached per digest (base_python/store.py)."""
    store = settings.compiler_python_cache or str(default_cache_dir().parent / "base-python")
    headers = {
        platform: tuple(value.replace(",", " ").split())
        for platform, value in per_platform(settings, "python_headers_images_").items()
    }
    return BasePythonReader(
        Registries(RegistryClient.from_settings(settings), parse_hosts(settings.registry_insecure_hosts)),
        ImageStore(Path(store), settings.compiler_python_cache_entries),
        headers,
    )


def bootstrap(
    settings: CompilerSettings,
    *,
    fetcher: SourceFetcher | None = None,
    compiler: TreeCompiler | None = None,
    store: ArtifactStore | None = None,
    environ: Mapping[str, str] | None = None,
    guard: IdempotencyGuard | None = None,
    with_database: bool = True,
    pythons: BasePythons | None = None,
) -> Worker:
    if not settings.config_path:
        raise SystemExit(
            "KILN_CONFIG_PATH must name the operator config: it decides registries, base images and "
            "keys; a repository's own config.yaml only describes what is built"
        )
    cache = ModuleCache(settings.compiler_cache, max_bytes=settings.compiler_cache_max_bytes)
    cancel = CancelWatch()
    logs = LogShipper(SOURCE, secrets=settings.secret_values().values())
    if guard is None and with_database:
        from shared.db import make_engine, make_sessions

        guard = SqlIdempotencyGuard(make_sessions(make_engine(settings.database_url)))
    build_settings = BuildSettings(
        config_file=settings.compiler_config_file,
        operator_config=settings.config_path,
        work_dir=settings.work_dir,
        default_base_images=per_platform(settings, "base_image_"),
        config_env=dict(os.environ if environ is None else environ),
    )
    handlers: HandlerTable = {
        BuildRequested: functools.partial(
            on_build_requested,
            fetcher=fetcher
            or GitSource(
                token=settings.git_token,
                username=settings.git_username,
                timeout_s=settings.git_timeout_s,
                # Only the package's configured source; the token only to KILN_GIT_TOKEN_HOSTS.
                token_hosts=settings.token_hosts(),
                guard=SourceGuard.from_operator_config(settings, build_settings.config_env),
            ),
            compiler=compiler
            or EngineCompiler(
                cache,
                settings.compiler_jobs or os.cpu_count() or 1,
                sandbox=Sandbox(required=not settings.allow_unsandboxed),
            ),
            store=store or artifact_store_from(settings),
            index=ArtifactIndex(cache.root),
            settings=build_settings,
            is_cancelled=cancel.is_cancelled,
            cancel_reason=cancel.reason,
            logs=logs,
            pythons=pythons or base_pythons_from(settings),
        )
    }
    return Worker(
        source=SOURCE,
        settings=settings,
        consumers=[
            Consumer(t.COMPILER_BUILDS, handlers, give_up={BuildRequested: end_build_failed("compile")})
        ],
        guard=guard,
        cancel=cancel,
        logs=logs,
        health_port=settings.health_port,
    )
