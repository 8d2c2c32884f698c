"""A proof is a function of what runs: the same content never needs proving twice (issue #17).

An image's *runtime content* is its layers (the rootfs diff ids), the parts of its config that
decide how it starts (command, entrypoint, environment, user, working dir, ports, health check)
and its architecture — not its labels, which carry the build id and change every build. Two
builds whose images have the same runtime content start the same way, so when a one-file change
touches a factory only one service keeps, the other services' images are built (every layer a
cache hit), found proven, and not run again: only what changed is proven.

The cache is the worker's own (`<work_dir>/proofs/`): written only after a proof this worker ran
passed, keyed by a hash it computed from the engine's view of the image, never by anything a job
or a repository says. A failed proof is never recorded, and a replay (`kiln replay --from image`,
a rerun) proves again whatever the cache holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("kiln.imager.proofs")

# The config keys that change how a container starts (the OCI image config's runtime part).
RUNTIME_CONFIG = (
    "Cmd",
    "Entrypoint",
    "Env",
    "User",
    "WorkingDir",
    "ExposedPorts",
    "Healthcheck",
    "StopSignal",
)
KEEP = 5000  # entries; one is ~200 bytes, the oldest go first


def runtime_key(attrs: Mapping[str, Any]) -> str | None:
    """`docker image inspect`'s attrs -> the hash of the runtime content; None when unknown."""
    layers = (attrs.get("RootFS") or {}).get("Layers")
    config = attrs.get("Config")
    if not layers or not isinstance(config, Mapping):
        return None
    runtime = {key: config.get(key) for key in RUNTIME_CONFIG}
    document = {"arch": attrs.get("Architecture"), "os": attrs.get("Os"), "layers": layers, "config": runtime}
    return "sha256:" + hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ProofQuestion:
    """What a proof showed, for one image content: it starts on `platform` and, with a health
    path, answers it on `port`. The windows are part of the question: a longer stay-up is a
    stronger claim."""

    content: str
    platform: str
    port: int | None
    health_path: str | None
    windows: str  # the prover's stay-up / timeout / QEMU factor

    @property
    def key(self) -> str:
        text = json.dumps([self.content, self.platform, self.port, self.health_path, self.windows])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PastProof:
    reason: str
    build_id: str
    at: float


class ProofCache:
    def __init__(self, root: Path, windows: str, keep: int = KEEP):
        self.root = root
        self.windows = windows
        self.keep = keep

    def question(
        self, content: str | None, *, platform: str, port: int | None, health_path: str | None
    ) -> ProofQuestion | None:
        if content is None:  # the builder could not say what the image holds: prove it
            return None
        return ProofQuestion(content, platform, port, health_path, self.windows)

    def find(self, question: ProofQuestion) -> PastProof | None:
        path = self.root / question.key
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return PastProof(str(data["reason"]), str(data["build_id"]), float(data["at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def record(self, question: ProofQuestion, reason: str, build_id: str) -> None:
        """After a passed proof. Never fails the job: a cache that cannot be written proves again."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / question.key
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            scratch.write_text(json.dumps({"reason": reason, "build_id": build_id, "at": time.time()}))
            scratch.replace(path)
            self._bound()
        except OSError as exc:
            log.warning("cannot record the proof in %s (%s): the next build proves it again", self.root, exc)

    def _bound(self) -> None:
        entries = [p for p in self.root.iterdir() if not p.name.startswith(".")]
        if len(entries) <= self.keep:
            return
        entries.sort(key=lambda p: p.stat().st_mtime)
        for stale in entries[: len(entries) - self.keep]:
            stale.unlink(missing_ok=True)
