"""TreeCompiler on the compile engine (services/compiler/engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from services.compiler.engine import CompiledModule, CompileReport, ModuleCache, TargetPython, compile_tree
from shared.sandbox import REQUIRED, Sandbox


class EngineCompiler:
    def __init__(self, cache: ModuleCache, jobs: int, sandbox: Sandbox = REQUIRED):
        self.cache = cache
        self._jobs = jobs
        self._sandbox = sandbox  # Sandbox(required=not settings.allow_unsandboxed) from bootstrap

    def compile(
        self,
        src: Path,
        out: Path,
        *,
        platforms: list[str],
        factories: list[str],
        fallback_to_source: Iterable[str],
        progress: Callable[[CompiledModule], None] | None = None,
        pythons: Mapping[str, TargetPython] | None = None,
    ) -> CompileReport:
        return compile_tree(
            src,
            out,
            platforms=platforms,
            jobs=self._jobs,
            cache=self.cache,
            factories=factories,
            fallback_to_source=fallback_to_source,
            progress=progress,
            sandbox=self._sandbox,
            pythons=pythons,
        )
