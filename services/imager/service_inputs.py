"""What goes into a compiled service's build context: the Dockerfile (with its labels), the system
layer of its Debian packages, its tier venv and its factories (build_context.py writes the tar).

Each cached input (system layer, tier venv) is held against eviction while the tar is written.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from services.imager.apt_archive import SystemPackagesFailed
from services.imager.build_context import service_context
from services.imager.cache_bound import BoundedCache, held_entry
from services.imager.dockerfile import LAUNCHER_SOURCE, ImageSpec, render_dockerfile
from services.imager.system_layer import SystemLayerCache, SystemRequest, requested_packages
from services.imager.tier_venv import TierVenvCache
from services.imager.tiers import artifact_python, resolve_tier
from shared.bus.live_logs import LineSink, discard
from shared.events.compile import ImageRequested

LABEL_BUILD_ID = "dev.kiln.build-id"


@dataclass(frozen=True)
class ServiceInputs:
    config_path: str | None  # the operator config: tiers, and who asks for which system packages
    tiers: TierVenvCache
    system: SystemLayerCache | None
    cache: BoundedCache | None  # what holds entries against eviction; None: nothing is evicted


def immutable_tags(event: ImageRequested) -> list[str]:
    return [tag for tag in event.tags if tag != "latest"] or ["latest"]


def image_labels(event: ImageRequested, build_id: str, package: str) -> dict[str, str]:
    labels = {
        LABEL_BUILD_ID: build_id,
        "dev.kiln.package": package,
        "dev.kiln.service": event.target,
        "dev.kiln.platform": event.platform,
        "org.opencontainers.image.title": event.target,
        "org.opencontainers.image.version": immutable_tags(event)[0],
        "org.opencontainers.image.vendor": "kiln",
    }
    commit = getattr(event, "commit", None)
    if commit:
        labels["dev.kiln.commit"] = labels["org.opencontainers.image.revision"] = commit
    return labels


def service_build_context(
    event: ImageRequested, build_id: str, package: str, root: Path, inputs: ServiceInputs,
    log: LineSink = discard,
) -> bytes:  # fmt: skip
    """The build context of `event`'s service from the artifact at `root`."""
    tier = resolve_tier(event.tier, root, inputs.config_path) if event.tier else None
    request = requested_packages(inputs.config_path, package, event.target, event.tier)
    with contextlib.ExitStack() as held:
        system_dir = held.enter_context(
            held_entry(inputs.cache, lambda: _system_layer(request, event, inputs, log))
        )
        tier_dir = None
        if tier is not None:
            python = artifact_python(root)  # the base image's CPython, as the compiler read it
            tier_dir = held.enter_context(
                held_entry(inputs.cache, lambda: inputs.tiers.prepare(tier, event.platform, python))
            )
        spec = ImageSpec(
            base_image=event.base_image,
            command=event.command,
            factories=event.factories,
            tier=event.tier,
            requirements_hash=tier.requirements_hash(event.platform) if tier else None,
            port=event.port,
            health_path=event.health_path,
            labels=image_labels(event, build_id, package),
            system_packages=request.packages,
            system_layer=system_dir.name if system_dir else None,
        )
        dockerfile = render_dockerfile(spec)
        return service_context(dockerfile, root, event.factories, tier_dir, LAUNCHER_SOURCE, system_dir)


def _system_layer(request: SystemRequest, event: ImageRequested, inputs: ServiceInputs, log: LineSink):
    if not request.packages:
        return None
    if inputs.system is None:
        raise SystemPackagesFailed(f"{request.keys()}: this imager has no system layer cache configured")
    return inputs.system.prepare(request, event.base_image, event.platform, log)
