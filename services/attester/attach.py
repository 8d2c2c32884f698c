"""What goes next to an image in the registry: SBOM and provenance as referrers of its digest."""

from __future__ import annotations

from services.attester.adapters.referrers import push_referrer
from services.attester.provenance import (
    DSSE_MEDIA_TYPE,
    PREDICATE_ANNOTATION,
    PROVENANCE_ARTIFACT_TYPE,
    SLSA_PROVENANCE,
)
from services.attester.sbom import SBOM_ARTIFACT_TYPE, SBOM_MEDIA_TYPE, Sbom
from shared.registry import RegistryClient


def attach_sbom(client: RegistryClient, repo: str, digest: str, sbom: Sbom) -> str:
    return push_referrer(
        client,
        repo,
        digest,
        artifact_type=SBOM_ARTIFACT_TYPE,
        media_type=SBOM_MEDIA_TYPE,
        data=sbom.data,
        annotations={"dev.kiln.sbom.packages": str(sbom.summary.packages)},
    )


def attach_provenance(client: RegistryClient, repo: str, digest: str, envelope: bytes) -> str:
    return push_referrer(
        client,
        repo,
        digest,
        artifact_type=PROVENANCE_ARTIFACT_TYPE,
        media_type=DSSE_MEDIA_TYPE,
        data=envelope,
        annotations={PREDICATE_ANNOTATION: SLSA_PROVENANCE},
    )
