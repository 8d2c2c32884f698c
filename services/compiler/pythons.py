"""Which base image each platform's compile is for, and the CPython read from it (stage compile).

A package has one base image per platform (`deployment.base_images.<platform>`, else the
operator's KILN_BASE_IMAGE_<ARCH>), shared by its compiled services, so one tree per platform
serves them all. A platform whose services are all plain-Dockerfile builds has no base image:
it is compiled for the host's Python, as the standalone command is.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from services.compiler.base_python.reader import BaseImage, BasePythonError
from services.compiler.engine import TargetPython
from shared.bus.live_logs import LineSink
from shared.bus.stage import StageFailed
from shared.platforms import arch_of

if TYPE_CHECKING:
    from services.compiler.build_stages import PreparedBuild
    from services.compiler.ports import BasePythons


def base_images_of(package: str, prepared: PreparedBuild, platforms: Iterable[str]) -> dict[str, BaseImage]:
    """The base image of the compiled services per platform, with the key that set it."""
    configured = prepared.package.deployment.base_images
    found = {}
    for platform in platforms:
        plan = next(
            (
                p.fields
                for p in prepared.images
                if p.fields["platform"] == platform and not p.fields["dockerfile"]
            ),
            None,
        )
        if plan is None or not plan["base_image"]:
            continue
        if configured.get(platform):  # type: ignore[call-overload]
            key = f"packages.{package}.deployment.base_images.{platform}"
        else:
            key = f"KILN_BASE_IMAGE_{arch_of(platform).upper()}"
        found[platform] = BaseImage(platform, plan["base_image"], key)
    return found


def target_pythons(
    package: str,
    prepared: PreparedBuild,
    platforms: Iterable[str],
    pythons: BasePythons | None,
    held: ExitStack,
    log: LineSink,
) -> dict[str, TargetPython]:
    """Each platform's target, its headers held by `held`; StageFailed naming the key."""
    bases = base_images_of(package, prepared, platforms)
    if pythons is None or not bases:
        return {}
    try:
        return held.enter_context(pythons.held(bases, log))
    except BasePythonError as exc:
        failing = {platform: base.reference for platform, base in bases.items()}
        raise StageFailed(str(exc), {"base_images": failing}) from None
