"""Compiled-artifact transport: how the compiler's per-platform tree reaches imager workers.

    from shared.artifacts import push_artifact, pull_artifact, StoredArtifact

    stored = push_artifact(tree, store="127.0.0.1:5000/kiln", package="homechoice", build="b42",
                           platform="linux/arm64", source_digest="sha256:…", client=registry_client)
    stored.reference  # "127.0.0.1:5000/kiln/kiln-artifacts/homechoice@sha256:…" (goes into ImageRequested)
    stored.digest     # "sha256:…"
    pull_artifact(stored.reference, workdir / "compiled", client=registry_client)

Two stores, one reference shape `<where>@sha256:<hex>`:
- registry (`store="host[:port]/project"`): an OCI artifact — one tar+gzip layer, artifactType
  `application/vnd.kiln.compiled.v1+tar`, the empty config, annotations for build, platform, package
  and source digest — tagged `{project}/kiln-artifacts/{package}:{build}-{arch}`. Digest = the
  manifest's. Pushed with shared.registry's own blob upload rather than the `oras` package: one HTTP
  stack, one auth flow and one error classification (RegistryAuthError / RegistryUnavailable) for
  every registry call in Kiln, and digests verified on every read.
- shared directory (`store="file:///srv/kiln-artifacts"`, single host / NFS): the tar.gz stored as
  `<dir>/<package>/sha256-<hex>.tar.gz`, plus `<dir>/<package>/<build>-<arch>` holding its digest.
  Digest = the tar.gz's.

Content addressed: the tar is deterministic (sorted entries, zeroed mtimes and owners, modes
normalised to 0644/0755, gzip without name or time), so the same tree gives the same layer digest
on every machine, and the same push (tree, build, platform) gives the same artifact digest.
`pull_artifact` re-hashes everything it reads and raises DigestMismatch on any difference.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from shared.naming import validate_tag
from shared.registry import DigestMismatch, RegistryClient
from shared.registry import manifests as mf

ARTIFACT_TYPE = "application/vnd.kiln.compiled.v1+tar"
LAYER_MEDIA_TYPE = "application/vnd.kiln.compiled.v1.tar+gzip"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
ARTIFACTS_REPOSITORY = "kiln-artifacts"
FILE_SCHEME = "file://"


@dataclass(frozen=True)
class StoredArtifact:
    reference: str
    digest: str


def pack_directory(source_dir: str | Path) -> bytes:
    """A deterministic tar.gz of a directory's contents (paths relative to it)."""
    root = Path(source_dir)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
            if info.isreg():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def unpack(data: bytes, dest_dir: str | Path) -> Path:
    """Extract into an empty or new directory; the `data` filter refuses absolute paths and `..`."""
    dest = Path(dest_dir)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty: pull an artifact into a fresh directory")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def artifact_location(store: str, package: str) -> str:
    """Where a package's artifacts are in `store` (the part of a reference before `@digest`): the
    receivers check a reference against it, so an event cannot point them anywhere else."""
    if store.startswith(FILE_SCHEME):
        return f"{FILE_SCHEME}{Path(store.removeprefix(FILE_SCHEME)) / package}"
    return f"{store.rstrip('/')}/{ARTIFACTS_REPOSITORY}/{package}"


def _arch(platform: str) -> str:
    return mf.parse_platform(platform)["architecture"]


def artifact_manifest(layer: bytes, *, package: str, build: str, platform: str, source_digest: str) -> bytes:
    annotations = {
        "dev.kiln.package": package,
        "dev.kiln.build": build,
        "dev.kiln.platform": platform,
        "dev.kiln.source-digest": source_digest,
    }
    layer_descriptor = {
        "mediaType": LAYER_MEDIA_TYPE,
        "digest": mf.sha256_digest(layer),
        "size": len(layer),
        "annotations": {"org.opencontainers.image.title": f"{package}-{_arch(platform)}.tar.gz"},
    }
    config = {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": mf.sha256_digest(EMPTY_CONFIG), "size": 2}
    return mf.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": config,
            "layers": [layer_descriptor],
            "annotations": annotations,
        }
    )


def push_artifact(
    source_dir: str | Path,
    *,
    store: str,
    package: str,
    build: str,
    platform: str,
    source_digest: str = "",
    client: RegistryClient | None = None,
) -> StoredArtifact:
    tag = validate_tag(f"{build}-{_arch(platform)}")
    layer = pack_directory(source_dir)
    if store.startswith(FILE_SCHEME):
        return _store_in_directory(Path(store.removeprefix(FILE_SCHEME)), package, tag, layer)
    if client is None:
        raise ValueError(f"store {store!r} is a registry: pass the RegistryClient for it")
    host, _, project = store.partition("/")
    if host != client.host or not project:
        raise ValueError(f"store {store!r} must be '{client.host}/<project>' (the client's registry)")
    repo = f"{project}/{ARTIFACTS_REPOSITORY}/{package}"
    client.push_blob(repo, EMPTY_CONFIG)
    client.push_blob(repo, layer)
    manifest = artifact_manifest(
        layer, package=package, build=build, platform=platform, source_digest=source_digest
    )
    digest = client.put_manifest(repo, tag, manifest, mf.OCI_MANIFEST)
    return StoredArtifact(reference=f"{client.host}/{repo}@{digest}", digest=digest)


def _store_in_directory(root: Path, package: str, tag: str, layer: bytes) -> StoredArtifact:
    digest = mf.sha256_digest(layer)
    folder = root / package
    folder.mkdir(parents=True, exist_ok=True)
    blob = folder / f"{digest.replace(':', '-')}.tar.gz"
    if not blob.exists():  # write-then-rename: a reader never sees half a blob
        partial = blob.with_suffix(f".partial-{os.getpid()}")
        partial.write_bytes(layer)
        partial.replace(blob)
    (folder / tag).write_text(digest + "\n")
    return StoredArtifact(reference=f"{FILE_SCHEME}{folder}@{digest}", digest=digest)


def pull_artifact(reference: str, dest_dir: str | Path, *, client: RegistryClient | None = None) -> Path:
    """Fetch `<where>@sha256:<hex>` into dest_dir, verifying every digest; returns dest_dir."""
    where, at, digest = reference.rpartition("@")
    if not at or not digest.startswith("sha256:"):
        raise ValueError(f"artifact reference {reference!r} must end in @sha256:<hex> (pinned by digest)")
    if where.startswith(FILE_SCHEME):
        blob = Path(where.removeprefix(FILE_SCHEME)) / f"{digest.replace(':', '-')}.tar.gz"
        data = blob.read_bytes()
        if mf.sha256_digest(data) != digest:
            raise DigestMismatch(f"{blob} hashes to {mf.sha256_digest(data)}, not {digest}")
        return unpack(data, dest_dir)
    if client is None:
        raise ValueError(f"artifact {reference!r} is in a registry: pass the RegistryClient for it")
    host, _, repo = where.partition("/")
    if host != client.host:
        raise ValueError(f"artifact {reference!r} is on {host}, the client talks to {client.host}")
    _, _, manifest = client.get_manifest(repo, digest)  # raises DigestMismatch itself
    document = json.loads(manifest)
    if document.get("artifactType") != ARTIFACT_TYPE:
        raise ValueError(f"{reference} is not a Kiln compiled artifact ({document.get('artifactType')!r})")
    (layer,) = document["layers"]
    return unpack(client.get_blob(repo, layer["digest"]), dest_dir)
