"""ImageBuilder on a Docker Engine through the docker SDK (the default backend)."""

from __future__ import annotations

import contextlib
import io

import docker
from docker.errors import APIError, ImageNotFound

from services.imager.ports import (
    BuildFailed,
    BuiltImage,
    Progress,
    PushResult,
    RegistryAuth,
    RegistryAuthFailed,
)
from services.imager.proof_cache import runtime_key
from shared.registry.transport import with_tls_hint

_AUTH_WORDS = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


def split_reference(reference: str) -> tuple[str, str]:
    """`host:5000/a/b:tag` -> (`host:5000/a/b`, `tag`); the port colon is not a tag separator."""
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        return reference, "latest"
    return repository, tag


def push_line(chunk: dict) -> str:
    """A push's state changes ("abc123: Pushed", the final digest line); "" for progress-bar ticks,
    which come many times a second per layer and say nothing a person reads."""
    if chunk.get("progress") or not chunk.get("status"):
        return ""
    return f"{chunk['id']}: {chunk['status']}" if chunk.get("id") else str(chunk["status"])


class DockerEngineBuilder:
    def __init__(
        self, client: docker.DockerClient | None = None, *, timeout_s: int = 900, no_cache: bool = False
    ):
        self.client = client or docker.from_env(timeout=timeout_s)
        self.no_cache = no_cache  # benchmarks only: a cold build

    def build(
        self,
        context_tar: bytes,
        reference: str,
        *,
        platform: str,
        dockerfile: str = "Dockerfile",
        progress: Progress | None = None,
    ) -> BuiltImage:
        log: list[str] = []
        show = progress or (lambda _line: None)
        image_id = None
        try:
            stream = self.client.api.build(
                fileobj=io.BytesIO(context_tar),
                custom_context=True,
                dockerfile=dockerfile,
                tag=reference,
                platform=platform,
                rm=True,
                forcerm=True,
                pull=False,
                nocache=self.no_cache,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    lines = [line for line in chunk["stream"].splitlines() if line.strip()]
                    log.extend(lines)
                    for line in lines:
                        show(line)
                if "error" in chunk:
                    log.append(chunk["error"].strip())
                    show(chunk["error"].strip())
                    raise BuildFailed(f"build of {reference} failed: {chunk['error'].strip()}", log)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except APIError as exc:
            log.append(str(exc))
            raise BuildFailed(f"build of {reference} failed: {exc.explanation or exc}", log) from exc
        image = self.client.images.get(image_id or reference)
        return BuiltImage(
            image_id=image.id,
            reference=reference,
            size_bytes=image.attrs["Size"],
            log=log,
            content_key=runtime_key(image.attrs),
        )

    def tag(self, image_id: str, reference: str) -> None:
        repository, tag = split_reference(reference)
        self.client.api.tag(image_id, repository, tag=tag)

    def push(self, reference: str, auth: RegistryAuth, *, progress: Progress | None = None) -> PushResult:
        repository, tag = split_reference(reference)
        digest, size = "", 0
        for chunk in self.client.api.push(
            repository, tag=tag, auth_config=auth.as_docker(), stream=True, decode=True
        ):
            if progress is not None and push_line(chunk):
                progress(push_line(chunk))
            error = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
            if error:
                if any(word in error.lower() for word in _AUTH_WORDS):
                    raise RegistryAuthFailed(f"registry refused the credentials pushing {reference}: {error}")
                # TLS for that registry is the daemon's `insecure-registries`, named by the hint
                raise RuntimeError(with_tls_hint(f"push of {reference} failed: {error}", reference))
            aux = chunk.get("aux") or {}
            if "Digest" in aux:
                digest, size = aux["Digest"], int(aux.get("Size", 0))
        if not digest:
            raise RuntimeError(f"push of {reference} ended without a digest")
        return PushResult(digest=digest, size_bytes=size)

    def remove(self, reference: str) -> None:
        with contextlib.suppress(ImageNotFound):
            self.client.images.remove(reference, noprune=False)
