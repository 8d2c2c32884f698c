"""An image reference -> its manifest for one platform, its config and its layers, over the OCI
distribution API (shared.registry). Nothing is pulled into an engine and nothing runs: the layers
are downloaded (digest-checked) and read as tar streams (layers.py).

Credentials: the operator's registry (KILN_REGISTRY_URL) gets KILN_REGISTRY_USERNAME/PASSWORD, as
for every other registry call of Kiln; any other registry is read anonymously (a public image such
as python:3.13-slim on Docker Hub). TLS as everywhere: verified, except loopback and
KILN_REGISTRY_INSECURE_HOSTS.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.naming import split_repository
from shared.platforms import parse
from shared.registry import RegistryClient
from shared.registry import manifests as mf
from shared.registry.transport import registry_host

from .layers import ImageFiles

DOCKER_HUB = "registry-1.docker.io"  # what docker means by a name without a registry host
_READABLE_LAYERS = ("tar", "tar+gzip", "tar.gzip")  # OCI and Docker media type endings


class ImageUnreadable(ValueError):
    """The reference names no image for the platform, or one Kiln cannot read."""


@dataclass(frozen=True)
class ImageName:
    host: str
    repository: str
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, image: str) -> ImageName:
        """`python:3.13-slim` -> (registry-1.docker.io, library/python, 3.13-slim), as docker reads it."""
        name, _, digest = image.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        tag = name[colon + 1 :] if colon > slash else ""
        name = name[:colon] if colon > slash else name
        host, path = split_repository(name)
        if host is None or host in ("docker.io", "index.docker.io"):
            host, path = DOCKER_HUB, path if "/" in path else f"library/{path}"
        return cls(host, path, digest or tag or "latest")


@dataclass(frozen=True)
class PlatformImage:
    client: RegistryClient
    name: ImageName
    digest: str  # the platform's own manifest: what the cache is keyed by
    manifest: dict

    def config(self) -> dict:
        return json.loads(self.client.get_blob(self.name.repository, self.manifest["config"]["digest"]))

    def read_into(self, files: ImageFiles, scratch: Path) -> None:
        """Every layer, in order, into `files` (each downloaded to `scratch` and checked first)."""
        for number, layer in enumerate(self.manifest.get("layers", []), start=1):
            media_type = layer.get("mediaType", "")
            if not media_type.endswith(_READABLE_LAYERS):
                raise ImageUnreadable(
                    f"layer {number} is {media_type or 'of no media type'}; Kiln reads tar and tar+gzip "
                    "layers (rebuild or copy the image with gzip layers)"
                )
            with tempfile.NamedTemporaryFile(dir=scratch, prefix=".layer-") as blob:
                self.client.download_blob(self.name.repository, layer["digest"], Path(blob.name))
                with open(blob.name, "rb") as stream:
                    files.apply_layer(stream)


class Registries:
    """One client per registry host (connections and tokens reused across compiles)."""

    def __init__(self, operator: RegistryClient, insecure_hosts: frozenset[str] = frozenset()):
        self._insecure_hosts = insecure_hosts
        self._clients = {registry_host(operator.host): operator}

    def client(self, host: str) -> RegistryClient:
        host = registry_host(host)
        if host not in self._clients:
            self._clients[host] = RegistryClient(host, insecure_hosts=self._insecure_hosts)
        return self._clients[host]

    def open(self, image: str, platform: str) -> PlatformImage:
        """The image of `platform` that `image` names (an index is resolved, a single image must
        be for that platform); RegistryError from the registry, ImageUnreadable otherwise."""
        name = ImageName.parse(image)
        client = self.client(name.host)
        media_type, digest, data = client.get_manifest(name.repository, name.reference)
        document = json.loads(data)
        wanted = parse(platform)
        if media_type in mf.INDEXES:
            entries = document.get("manifests", [])
            chosen = [e for e in entries if _platform_of(e.get("platform", {})) == wanted.name]
            if not chosen:
                offered = sorted({_platform_of(e.get("platform", {})) for e in entries})
                raise ImageUnreadable(f"it has no {wanted.name} image (its index has {', '.join(offered)})")
            media_type, digest, data = client.get_manifest(name.repository, chosen[0]["digest"])
            document = json.loads(data)
        if media_type not in mf.IMAGE_MANIFESTS:
            raise ImageUnreadable(
                f"its manifest is {media_type or 'of no known type'}, not an OCI or Docker v2 image"
            )
        return PlatformImage(client, name, digest, document)

    def close(self) -> None:
        for client in set(self._clients.values()):
            client.close()


def check_platform(config: dict, platform: str) -> None:
    """A single-platform image must be for the platform it is configured for."""
    wanted = parse(platform)
    has = _platform_of(config)
    if has != wanted.name:
        raise ImageUnreadable(f"it is a {has} image, not {wanted.name}")


def _platform_of(described: dict) -> str:
    return f"{described.get('os', '?')}/{described.get('architecture', '?')}"
