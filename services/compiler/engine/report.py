"""Result types of a compile run: what callers (CLI, bus worker, reporter) consume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

ModuleStatus = Literal["ok", "error", "cached", "fallback"]


@dataclass(frozen=True)
class CompiledModule:
    """One module of one engine run. The engine compiles a module for every platform at once,
    so there is no platform here; the compile stage reports it once per platform as
    shared.events.compile.ModuleResult (these fields plus `platform`)."""

    module: str  # dotted name, e.g. "factory.core.models"
    factory: str  # top-level package the module belongs to
    status: ModuleStatus
    duration_ms: int
    error: str | None = None
    file: str | None = None  # source path relative to the compiled tree's root
    line: int | None = None  # where the error is, when known


@dataclass(frozen=True)
class CompiledSet:
    """A factory set's totals in one engine run; shared.events.compile.FactorySetTiming is these
    fields plus `platform`, as the compile.finished event carries them."""

    factory: str
    modules: int
    ok: int
    failed: int
    cached: int
    # Summed compile time of the set's modules (work, not wall time: sets compile interleaved).
    duration_ms: int


@dataclass
class CompileReport:
    outputs: dict[str, Path]  # platform ("linux/amd64") -> directory holding the compiled tree
    modules: list[CompiledModule] = field(default_factory=list)
    sets: list[CompiledSet] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return all(m.status != "error" for m in self.modules)

    @property
    def failed(self) -> list[CompiledModule]:
        return [m for m in self.modules if m.status == "error"]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "duration_ms": self.duration_ms,
            "outputs": {platform: str(path) for platform, path in self.outputs.items()},
            "modules": [asdict(m) for m in self.modules],
            "sets": [asdict(s) for s in self.sets],
        }


def summarize_sets(modules: list[CompiledModule]) -> list[CompiledSet]:
    by_factory: dict[str, list[CompiledModule]] = {}
    for result in modules:
        by_factory.setdefault(result.factory, []).append(result)
    return [
        CompiledSet(
            factory=factory,
            modules=len(results),
            ok=sum(r.status in ("ok", "cached", "fallback") for r in results),
            failed=sum(r.status == "error" for r in results),
            cached=sum(r.status == "cached" for r in results),
            duration_ms=sum(r.duration_ms for r in results),
        )
        for factory, results in sorted(by_factory.items())
    ]
