"""EngineCleaner on a Docker Engine: untag and delete a job's images, remove proof containers.

Nothing here forces: Docker itself refuses to delete an image a container (a deployed service, a
user's) still uses, or a build-step image that is the parent of another image (the layer cache of
a kept image). Those refusals are expected and skipped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from services.imager.ports import ProofContainer
from services.imager.worker_ledger import PROOF_NAME

log = logging.getLogger("kiln.imager.cleanup")

PROOF_LABEL = "dev.kiln.proof"
OWNER_LABEL = "dev.kiln.imager.worker"


class DockerEngineCleaner:
    def __init__(self, client: docker.DockerClient | None = None):
        self.client = client or docker.from_env(timeout=120)

    def remove_references(self, references: Sequence[str]) -> list[str]:
        removed = []
        for reference in references:
            try:
                self.client.images.remove(reference, noprune=False)
            except ImageNotFound:
                continue
            except APIError as refused:  # in use by a container: it goes once that container does
                log.info("kept %s: %s", reference, refused.explanation or refused)
                continue
            removed.append(reference)
        return removed

    def remove_untagged(self, image_ids: Sequence[str]) -> list[str]:
        removed = []
        for image_id in reversed(image_ids):  # the last step first: its parents follow
            try:
                attrs = self.client.api.inspect_image(image_id)
            except (ImageNotFound, NotFound):
                continue
            names = [n for n in attrs.get("RepoTags") or [] if n != "<none>:<none>"]
            if names or [d for d in attrs.get("RepoDigests") or [] if not d.startswith("<none>")]:
                continue  # named (the base image, a kept image): not a leftover
            try:
                self.client.api.remove_image(attrs["Id"], noprune=False)
            except APIError:  # the parent of another image, or in use
                continue
            removed.append(attrs["Id"])
        return removed

    def older_references(self, repository: str, keep: int) -> list[str]:
        images = self.client.images.list(name=repository)
        mine = [image for image in images if any(_in(repository, tag) for tag in image.tags)]
        mine.sort(key=lambda image: image.attrs.get("Created", ""), reverse=True)
        return [tag for image in mine[keep:] for tag in image.tags if _in(repository, tag)]

    def proof_containers(self) -> list[ProofContainer]:
        found = []
        for container in self.client.api.containers(all=True, filters={"label": PROOF_LABEL}):
            proof = self._proof(container)
            if proof is not None:
                found.append(proof)
        return found

    def remove_container(self, container: ProofContainer) -> None:
        with contextlib.suppress(NotFound):
            self.client.api.remove_container(container.container_id, force=True)

    def _proof(self, summary: dict) -> ProofContainer | None:
        """A container is a proof only if the prover labelled it, not its image: a repository's
        Dockerfile can write `LABEL dev.kiln.proof=1` and every container of that image inherits it."""
        labels = summary.get("Labels") or {}
        try:
            image = self.client.api.inspect_image(summary["ImageID"])
        except (ImageNotFound, NotFound, KeyError):
            return None  # cannot tell whose label it is: leave it
        image_labels = (image.get("Config") or {}).get("Labels") or {}
        if PROOF_LABEL in image_labels or OWNER_LABEL in image_labels:
            return None
        name = ((summary.get("Names") or ["/"])[0]).lstrip("/")
        match = PROOF_NAME.match(name)
        if match is not None and labels.get(OWNER_LABEL) != match.group(1):
            return None
        if match is None and OWNER_LABEL in labels:
            return None  # a worker label on a container the prover did not name: not ours
        age = time.time() - float(summary.get("Created") or time.time())
        return ProofContainer(summary["Id"], name, match.group(1) if match else "", age)


def _in(repository: str, reference: str) -> bool:
    return reference.rpartition(":")[0] == repository
