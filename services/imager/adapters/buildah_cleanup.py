"""EngineCleaner on buildah's vfs store: `buildah rmi` a job's names and step images, `buildah rm`
proof working containers.

Only what a job names is removed, never a store-wide `rmi --prune`: the store may be shared with
someone's own buildah or podman images on that host. buildah refuses to remove an image a working
container uses or another image builds on, which keeps the layer cache of kept images.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence

from services.imager.adapters.buildah import GLOBAL_OPTIONS
from services.imager.ports import ProofContainer
from services.imager.worker_ledger import PROOF_NAME

log = logging.getLogger("kiln.imager.cleanup")


class BuildahCleaner:
    def __init__(self, timeout_s: int = 120):
        self.timeout_s = timeout_s

    def _buildah(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["buildah", *GLOBAL_OPTIONS, *args], capture_output=True, text=True, timeout=self.timeout_s
        )

    def _images(self) -> list[dict]:
        done = self._buildah("images", "--all", "--json")
        return (json.loads(done.stdout or "[]") or []) if done.returncode == 0 else []  # "null": none

    def remove_references(self, references: Sequence[str]) -> list[str]:
        removed = []
        for reference in references:
            done = self._buildah("rmi", reference)
            if done.returncode == 0:
                removed.append(reference)
            elif "image not known" not in done.stderr:
                log.info("kept %s: %s", reference, done.stderr.strip()[-200:])
        return removed

    def remove_untagged(self, image_ids: Sequence[str]) -> list[str]:
        unnamed = {image["id"] for image in self._images() if not image.get("names")}
        removed = []
        for step in reversed(image_ids):
            step = step.removeprefix("sha256:")
            for image_id in [i for i in unnamed if i.startswith(step)]:
                if self._buildah("rmi", image_id).returncode == 0:
                    removed.append(image_id)
        return removed

    def older_references(self, repository: str, keep: int) -> list[str]:
        mine = [i for i in self._images() if any(_in(repository, n) for n in i.get("names") or [])]
        mine.sort(key=lambda image: image.get("created", 0), reverse=True)
        return [name for image in mine[keep:] for name in image["names"] if _in(repository, name)]

    def proof_containers(self) -> list[ProofContainer]:
        """Working containers the prover named; buildah containers carry no labels and no
        creation time here, so a container without a Kiln proof name is never touched."""
        done = self._buildah("containers", "--json")
        found = []
        listed = (json.loads(done.stdout or "[]") or []) if done.returncode == 0 else []  # "null": none
        for container in listed:
            match = PROOF_NAME.match(container.get("containername", ""))
            if match is not None:
                found.append(ProofContainer(container["id"], match.group(0), match.group(1), 0.0))
        return found

    def remove_container(self, container: ProofContainer) -> None:
        self._buildah("umount", container.container_id)
        self._buildah("rm", container.container_id)


def _in(repository: str, name: str) -> bool:
    return name.rpartition(":")[0] == repository
