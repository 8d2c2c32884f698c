"""RegistryClient: the OCI Distribution API (registry:2 / Distribution 2.8, Harbor) over httpx.

Synchronous on purpose: the imager's handlers run in worker threads and the CLI is a script;
async code calls it through `asyncio.to_thread`. Blobs travel as bytes in memory (images and
compiled trees of a few hundred MB at most); every blob and manifest read is checked against its
digest before it is returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from shared.registry import manifests as mf
from shared.registry import multiarch
from shared.registry import prune as pruning
from shared.registry.auth import RegistryChallengeAuth
from shared.registry.errors import (
    DigestMismatch,
    NotFound,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailable,
)
from shared.registry.transport import parse_hosts, registry_base_url

_PAGE_SIZE = 1000


class RegistryClient:
    def __init__(
        self,
        registry: str,
        username: str | None = None,
        password: str | None = None,
        *,
        insecure_hosts: Iterable[str] = (),
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        verify_tls: bool = True,
    ):
        # Raises InsecureRegistryRefused for http:// to a host neither loopback nor listed.
        self.base_url = registry_base_url(registry, insecure_hosts)
        self.host = httpx.URL(self.base_url).netloc.decode()
        self.username = username
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=RegistryChallengeAuth(username, password, insecure_hosts=insecure_hosts),
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            verify=verify_tls,  # False only for a lab Harbor with a self-signed certificate
            follow_redirects=True,  # blob GETs may redirect to storage (S3, Harbor's proxy)
        )

    @classmethod
    def from_settings(cls, settings: Any) -> RegistryClient:
        """From `KilnSettings`: registry_url, registry_username/password, registry_insecure_hosts."""
        password = settings.registry_password
        return cls(
            settings.registry_url,
            settings.registry_username,
            password.get_secret_value() if password is not None else None,
            insecure_hosts=parse_hosts(settings.registry_insecure_hosts),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport and error classification -------------------------------------------------

    def request(
        self, method: str, url: str | httpx.URL, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"registry {self.host} unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        if response.status_code in ok:
            return response
        raise self._error(method, response)

    def _error(self, method: str, response: httpx.Response) -> RegistryError:
        status = response.status_code
        codes, detail = _error_codes(response)
        where = f"{method} {response.request.url.path} → HTTP {status}{detail}"
        if status in (401, 403):
            who = f"user {self.username!r}" if self.username else "anonymous access"
            return RegistryAuthError(
                f"registry {self.host} refused {who}: {where}; check the registry username/password",
                status=status,
                codes=codes,
            )
        if status == 404:
            return NotFound(f"not found on {self.host}: {where}", status=status, codes=codes)
        if status == 429 or status >= 500:
            return RegistryUnavailable(f"registry {self.host} failed: {where}", status=status, codes=codes)
        if status == 405 and method == "DELETE":
            where += " (deletion is disabled: set storage.delete.enabled: true in the registry config)"
        return RegistryError(f"registry {self.host} rejected {where}", status=status, codes=codes)

    def _paginate(self, url: str, key: str) -> list[str]:
        items: list[str] = []
        next_url: str | None = url
        while next_url:
            response = self.request("GET", next_url)
            items += response.json().get(key) or []
            next_url = response.links.get("next", {}).get("url")
        return items

    # -- listing -----------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise unless the registry answers /v2/ and accepts our credentials."""
        self.request("GET", "/v2/")

    def list_repositories(self) -> list[str]:
        return self._paginate(f"/v2/_catalog?n={_PAGE_SIZE}", "repositories")

    def list_tags(self, repo: str) -> list[str]:
        return self._paginate(f"/v2/{repo}/tags/list?n={_PAGE_SIZE}", "tags")

    # -- manifests -----------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str) -> tuple[str, str, bytes]:
        """(media type, digest, exact bytes) of a tag or digest; the digest is computed and checked."""
        response = self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": mf.ACCEPT})
        data = response.content
        digest = mf.sha256_digest(data)
        announced = response.headers.get("Docker-Content-Digest")
        if (ref.startswith("sha256:") and ref != digest) or (announced and announced != digest):
            raise DigestMismatch(f"manifest {repo}@{ref} from {self.host} hashes to {digest}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return json.loads(data).get("mediaType") or media_type, digest, data

    def manifest_digest(self, repo: str, ref: str) -> str:
        response = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": mf.ACCEPT})
        digest = response.headers.get("Docker-Content-Digest")
        return digest if digest else self.get_manifest(repo, ref)[1]

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        digest = mf.sha256_digest(data)
        if ref.startswith("sha256:") and ref != digest:
            raise DigestMismatch(f"manifest bytes hash to {digest}, not to the reference {ref}")
        self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            ok=(201,),
            content=data,
            headers={"Content-Type": media_type},
        )
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete by digest: every tag pointing at it goes too. Needs storage.delete.enabled."""
        if not digest.startswith("sha256:"):
            raise ValueError(
                f"delete_manifest needs a digest, got {digest!r}: deleting by tag is not portable"
            )
        self.request("DELETE", f"/v2/{repo}/manifests/{digest}", ok=(202,))

    def image_size(self, repo: str, ref: str) -> int:
        """Config + layer bytes of an image; for an index, the sum over the images it lists."""
        media_type, _, data = self.get_manifest(repo, ref)
        document = json.loads(data)
        if media_type in mf.INDEXES:
            return sum(self.image_size(repo, entry["digest"]) for entry in document.get("manifests", []))
        return mf.image_bytes(document)

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        except NotFound:
            return False
        return True

    def get_blob(self, repo: str, digest: str) -> bytes:
        data = self.request("GET", f"/v2/{repo}/blobs/{digest}").content
        if mf.sha256_digest(data) != digest:
            raise DigestMismatch(f"blob {repo}@{digest} from {self.host} hashes to {mf.sha256_digest(data)}")
        return data

    def download_blob(self, repo: str, digest: str, destination: Path) -> int:
        """Stream a blob to `destination` (a layer may be hundreds of MB); its size. The bytes are
        hashed on the way: a blob that does not match its digest is deleted, DigestMismatch."""
        hasher, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error("GET", response)
                with destination.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        except httpx.TransportError as exc:
            destination.unlink(missing_ok=True)
            raise RegistryUnavailable(
                f"registry {self.host} unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        if f"sha256:{hasher.hexdigest()}" != digest:
            destination.unlink(missing_ok=True)
            raise DigestMismatch(
                f"blob {repo}@{digest} from {self.host} hashes to sha256:{hasher.hexdigest()}"
            )
        return size

    def push_blob(self, repo: str, data: bytes) -> str:
        """Monolithic upload (POST then PUT ?digest=), skipped when the blob is already there."""
        digest = mf.sha256_digest(data)
        if not self.blob_exists(repo, digest):
            started = self.request("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,))
            self._finish_upload(started, digest, data)
        return digest

    def _finish_upload(self, started: httpx.Response, digest: str, data: bytes) -> None:
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host} started an upload without a Location header")
        url = started.request.url.join(location).copy_merge_params({"digest": digest})
        self.request(
            "PUT", url, ok=(201,), content=data, headers={"Content-Type": "application/octet-stream"}
        )

    def mount_blob(self, to_repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True when mounted, False when the registry declined (no copy made)."""
        response = self.request(
            "POST",
            f"/v2/{to_repo}/blobs/uploads/",
            ok=(201, 202),
            params={"mount": digest, "from": from_repo},
        )
        if response.status_code == 201:
            return True
        if location := response.headers.get("Location"):  # declined: drop the upload it opened
            # Best effort: an abandoned upload session expires on its own.
            with contextlib.suppress(RegistryError):
                self.request("DELETE", response.request.url.join(location), ok=(204, 404))
        return False

    def copy_blob(self, to_repo: str, digest: str, from_repo: str) -> None:
        """Make a blob of `from_repo` exist in `to_repo`: existing, else mount, else pull and push."""
        if self.blob_exists(to_repo, digest) or self.mount_blob(to_repo, digest, from_repo):
            return
        self.push_blob(to_repo, self.get_blob(from_repo, digest))

    # -- multi-arch and maintenance (their own modules, which know the client only as a protocol) --

    def push_index(self, repo: str, tag: str, platform_refs: list[tuple[str, str, str]]) -> str:
        """See shared.registry.multiarch.push_index."""
        return multiarch.push_index(self, repo, tag, platform_refs)

    def prune(self, repo: str, keep: int, dry_run: bool = False) -> pruning.PruneReport:
        """See shared.registry.prune.prune."""
        return pruning.prune(self, repo, keep, dry_run)


def _error_codes(response: httpx.Response) -> tuple[tuple[str, ...], str]:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return (), ""
    codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict))
    messages = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    return codes, f" ({messages})" if messages else ""
