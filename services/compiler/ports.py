"""The compiler's side effects, as narrow ports: fetching a source, compiling, storing artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from services.compiler.base_python.reader import BaseImage
from services.compiler.engine import CompiledModule, CompileReport, TargetPython
from shared.bus.live_logs import LineSink
from shared.events.build import Source
from shared.events.compile import Artifact, DocumentReference
from shared.git_source import FetchFailed

__all__ = ["ArtifactStore", "BasePythons", "FetchFailed", "SourceFetcher", "TreeCompiler"]


class SourceFetcher(Protocol):
    def fetch(self, source: Source, work_dir: Path, *, package: str) -> Path:
        """Return the root of the source tree at the pushed commit (may be inside work_dir);
        FetchFailed when the source is not `package`'s configured source (shared/sources.py)."""
        ...

    def fetch_history(
        self, dest: Path, source: Source, branches: Sequence[str], *, package: str
    ) -> list[str]:
        """Deepen `fetch`'s checkout to the commit graph of its commit and of `branches` (as
        `origin/<branch>`); nothing for a local path. FetchFailed on git errors."""
        ...


class TreeCompiler(Protocol):
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
        """`progress` is called with each module's result as it completes (live log lines);
        `pythons` is the CPython each platform is compiled for (missing: the host's)."""
        ...


class BasePythons(Protocol):
    def held(
        self, bases: Mapping[str, BaseImage], log: LineSink
    ) -> AbstractContextManager[dict[str, TargetPython]]:
        """The CPython of each platform's base image, its headers kept on disk while the context
        is open; BasePythonError (naming the base image's key) when it cannot be compiled for."""
        ...


class ArtifactStore(Protocol):
    @property
    def location(self) -> str:
        """Where artifacts go (part of the skip-compile index key)."""
        ...

    def push(
        self, tree: Path, *, package: str, build: str, platform: str, source_digest: str
    ) -> Artifact: ...

    def exists(self, artifact: Artifact) -> bool: ...

    def push_document(self, data: bytes, *, package: str, build: str) -> DocumentReference:
        """A small document of the build (its trimmed app config), pinned by digest."""
        ...
