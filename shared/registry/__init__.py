"""OCI registry client for every stage: Distribution 2.8 (registry:2) and Harbor. Docs: docs/registry.md.

    from shared.registry import RegistryClient, HarborClient, RegistryAuthError, RegistryUnavailable, NotFound

    client = RegistryClient("127.0.0.1:5000", username, password)  # or RegistryClient.from_settings(settings)
    # registry: "host[:port]" or a URL. https with verified TLS, except loopback (127.0.0.0/8, ::1,
    # localhost) and the hosts in insecure_hosts= (KILN_REGISTRY_INSECURE_HOSTS): plain http there.
    # An http:// URL to any other host raises InsecureRegistryRefused. Password and tokens → REDACT.
    # Sync (httpx.Client): from async code use asyncio.to_thread. Close it, or use `with RegistryClient(...)`.

    # repo = repository path WITHOUT the host: "kiln/axion-report-homechoice-arm"
    client.ping()                                   # GET /v2/: raises unless reachable + credentials ok
    client.list_repositories() -> list[str]         # /v2/_catalog, all pages
    client.list_tags(repo) -> list[str]             # NotFound if the repository does not exist
    client.get_manifest(repo, ref) -> (media_type, digest, bytes)   # ref = tag or "sha256:…"; digest verified
    client.manifest_digest(repo, ref) -> str        # HEAD; the digest `docker push` printed
    client.put_manifest(repo, ref, data, media_type) -> digest
    client.delete_manifest(repo, digest)            # by digest only; removes every tag on it
    client.blob_exists(repo, digest) -> bool
    client.get_blob(repo, digest) -> bytes          # digest verified
    client.download_blob(repo, digest, path) -> size   # streamed to a file, digest verified
    client.push_blob(repo, data) -> digest          # monolithic POST+PUT, skipped if present
    client.mount_blob(to_repo, digest, from_repo) -> bool   # False: registry declined, nothing copied
    client.copy_blob(to_repo, digest, from_repo)    # exists, else mount, else pull+push
    client.image_size(repo, ref) -> int             # config + layers; for an index the sum of its images
    client.push_index(repo, tag, [(platform, repo, digest), ...]) -> index digest
        # OCI image index ("linux/amd64", "linux/arm64[/v8]"); images in other repositories (the
        # "-arm" one) are first copied into `repo` by blob mount + manifest PUT by digest. Idempotent.
    client.prune(repo, keep, dry_run=False) -> PruneReport
        # keeps the `keep` highest b<N> build tags and every non-build tag (latest, …); deletes by
        # digest what nothing kept references. report.kept_tags, report.deleted {digest: [tags]},
        # report.deleted_tags, report.summary(). Bytes are freed only by registry GC (docs/registry.md).

    harbor = HarborClient("harbor.example.com", user, password)    # a RegistryClient plus:
    harbor.list_projects() / list_project_repositories(project) / list_artifacts(project, repo,
        with_scan_overview=True) / delete_repository(project, repo) / trigger_gc() -> gc id / gc_status(id)

Errors (all RegistryError, with .status and .codes): RegistryAuthError (401/403: wrong credentials,
permanent), NotFound (404), RegistryUnavailable (refused/timeout/429/5xx: transient, retry),
DigestMismatch (content does not match its digest: never use it). Any other 4xx: RegistryError.
Media type constants: shared.registry.manifests (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, …).
CLI: python -m shared.registry {list,tags,prune,gc-harbor} (credentials from KILN_REGISTRY_*).
Compiled-artifact transport lives in shared.artifacts.
"""

from shared.registry.client import RegistryClient, registry_base_url
from shared.registry.errors import (
    DigestMismatch,
    NotFound,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailable,
)
from shared.registry.harbor import HarborClient, harbor_repository_segment
from shared.registry.prune import PruneReport
from shared.registry.transport import InsecureRegistryRefused, is_loopback, parse_hosts, plain_http_allowed

__all__ = [
    "DigestMismatch",
    "HarborClient",
    "InsecureRegistryRefused",
    "NotFound",
    "PruneReport",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "harbor_repository_segment",
    "is_loopback",
    "parse_hosts",
    "plain_http_allowed",
    "registry_base_url",
]
