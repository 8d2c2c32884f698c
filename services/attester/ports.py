"""The attester's ports: what the handler needs from the outside world, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.attester.provenance import BuildFacts
from services.attester.sbom import Sbom
from shared.events import ImagePushed, ManifestPushed
from shared.skopeo import PolicyVerdict, SimpleSignature


class SbomGenerator(Protocol):
    def sbom(self, reference: str) -> Sbom:
        """CycloneDX of `repository@digest`; raises SbomError."""


class SimpleSigner(Protocol):
    def sign(
        self,
        repository: str,
        digest: str,
        *,
        gpg_home: str | Path,
        fingerprint: str,
        passphrase: str | None = None,
    ) -> SimpleSignature:
        """GPG simple signing of the image; raises SigningError."""

    def verify(self, repository: str, digest: str, *, public_key: str | Path) -> PolicyVerdict: ...


@dataclass(frozen=True)
class Subject:
    """One image or index to attest: what an `image.pushed` or `manifest.pushed` names, and what
    each platform entry of an index names (those are attested in the index's repository too)."""

    repository: str
    digest: str
    target: str
    platform: str | None  # None: the multi-arch index

    @classmethod
    def of(cls, event: ImagePushed | ManifestPushed) -> Subject:
        platform = event.platform if isinstance(event, ImagePushed) else None
        return cls(event.repository, event.digest, event.target, platform)


# (build id, subject) -> what the build knows about itself (source, commit, digests, times).
BuildFactsFn = Callable[[str, Subject], BuildFacts]
