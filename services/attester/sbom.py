"""A CycloneDX SBOM and its summary (what goes into the stage's detail and the email)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SBOM_ARTIFACT_TYPE = "application/vnd.cyclonedx+json"
SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"


class SbomError(RuntimeError):
    """No SBOM could be made (trivy missing, crashing, or printing something else)."""


@dataclass(frozen=True)
class SbomSummary:
    spec_version: str
    components: int
    # Components by CycloneDX type: "library" are the packages (dpkg, pip), "operating-system" the OS.
    by_type: dict[str, int] = field(default_factory=dict)
    # Packages by purl type: deb, pypi, …
    by_ecosystem: dict[str, int] = field(default_factory=dict)

    @property
    def packages(self) -> int:
        return self.by_type.get("library", 0)

    def as_detail(self) -> dict[str, Any]:
        return {
            "format": f"CycloneDX {self.spec_version}",
            "components": self.components,
            "packages": self.packages,
            "by_ecosystem": dict(sorted(self.by_ecosystem.items())),
        }


@dataclass(frozen=True)
class Sbom:
    data: bytes
    summary: SbomSummary

    @classmethod
    def from_document(cls, data: bytes, document: Any) -> Sbom:
        return cls(data, summarise(document))


def summarise(document: Any) -> SbomSummary:
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise SbomError("not a CycloneDX document")
    components = [c for c in document.get("components") or [] if isinstance(c, dict)]
    ecosystems = Counter(
        str(c["purl"]).removeprefix("pkg:").split("/", 1)[0] for c in components if c.get("purl")
    )
    return SbomSummary(
        spec_version=str(document.get("specVersion", "?")),
        components=len(components),
        by_type=dict(Counter(str(c.get("type", "?")) for c in components)),
        by_ecosystem=dict(ecosystems),
    )


def parse(data: bytes) -> Sbom:
    try:
        return Sbom.from_document(data, json.loads(data))
    except ValueError:
        raise SbomError("SBOM is not JSON") from None
