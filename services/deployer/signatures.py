"""Before a deploy: is every image signed by the attester's key? (deployment.require_signature)

The check is the containers policy podman and CRI-O apply before they start a container: a
`signedBy` requirement on the attester's GPG public key, evaluated by skopeo on a copy of the
image by digest (shared/skopeo.py). What the deployer deploys is pinned by digest, so a
signature by our key on that digest is also the proof that it is the image Kiln built: an image
re-pushed under the same tag by someone else has another digest and no signature of ours.

The images are checked side by side (each check downloads the image's layers: ≈ 0.7 s for the
example's base image).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.registry.transport import parse_hosts
from shared.skopeo import PolicyVerdict, SkopeoSigner

CheckSignatures = Callable[[list[str]], list[str]]
PARALLEL_CHECKS = 4


def signature_checker(settings) -> CheckSignatures | None:
    """None when the deployer has no public key configured (then require_signature refuses)."""
    if not settings.attest_gpg_public_key:
        return None
    public_key = Path(settings.attest_gpg_public_key).expanduser()
    credentials = None
    if settings.registry_username and settings.registry_password:
        credentials = (settings.registry_username, settings.registry_password.get_secret_value())
    skopeo = SkopeoSigner(
        lookaside_dir=settings.attest_lookaside_dir,
        lookaside_url=settings.attest_lookaside_url,
        binary=settings.skopeo,
        registry_credentials=credentials,
        insecure_hosts=parse_hosts(settings.registry_insecure_hosts),
    )
    return checker(skopeo.verify, public_key)


def checker(verify: Callable[..., PolicyVerdict], public_key: Path) -> CheckSignatures:
    def check(references: list[str]) -> list[str]:
        def one(reference: str) -> str | None:
            repository, _, digest = reference.partition("@")
            if not digest:
                return f"{reference} is not pinned by digest: its signature cannot be checked"
            verdict = verify(repository, digest, public_key=public_key)
            if verdict.accepted:
                return None
            return f"{reference} is not signed by the attester's key {public_key.name}: {verdict.reason}"

        with ThreadPoolExecutor(PARALLEL_CHECKS) as pool:
            return [problem for problem in pool.map(one, references) if problem]

    return check
