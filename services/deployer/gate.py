"""The gate decision, pure: given what the deployer has seen of a build, wait, deploy or fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ImageState:
    target: str
    platform: str
    expected: bool
    pushed: bool
    scanned: bool
    verdict: str | None
    failure: str | None
    scan_summary: str | None = None
    repository: str | None = None
    digest: str | None = None
    tag: str | None = None

    @property
    def reference(self) -> str:
        """What a deployment pins to: the digest when known, else the tag."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"


@dataclass(frozen=True)
class GateDecision:
    action: Literal["wait", "deploy", "fail"]
    failed_stage: str | None = None
    error: str | None = None
    waiting_for: tuple[str, ...] = ()


def decide(targets_known: bool, images: list[ImageState], *, require_scan: bool) -> GateDecision:
    """Fail on the first failed image or scan (even before the target list is known: a failure
    is final); deploy when every expected image is pushed and, if required, scanned as pass."""
    for image in sorted(images, key=lambda i: (i.target, i.platform)):
        if image.failure is not None:
            return GateDecision(
                "fail", "image", f"image of {image.target} ({image.platform}) failed: {image.failure}"
            )
        if require_scan and image.scanned and image.verdict != "pass":
            return GateDecision(
                "fail",
                "scan",
                f"scan of {image.target} ({image.platform}) failed the policy: {image.scan_summary}",
            )
    if not targets_known:
        return GateDecision("wait", waiting_for=("compile.completed",))
    expected = [i for i in images if i.expected]
    missing = [f"{i.target} {i.platform}: push" for i in expected if not i.pushed]
    if require_scan:
        missing += [f"{i.target} {i.platform}: scan" for i in expected if not i.scanned]
    if missing:
        return GateDecision("wait", waiting_for=tuple(sorted(missing)))
    return GateDecision("deploy")
