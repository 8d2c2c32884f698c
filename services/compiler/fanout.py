"""The image jobs a build fans out to: one per enabled service x platform.

Planned in stage `config` (so a bad name or a missing base image fails before the compile),
completed with the artifact after the compile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from shared.config import KilnConfig, PackageConfig
from shared.events import BuildRequested, ImageRequested, describe_invalid
from shared.events.compile import Artifact, TargetPlatform
from shared.naming import (
    FALLBACK_KEY,
    build_tag,
    explicit_version,
    fork_point_branches,
    image_repository,
    validate_image_reference,
    version_for_branch,
)
from shared.platforms import arch_of, branch_of


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class ImagePlan:
    """An ImageRequested waiting for its artifact."""

    fields: dict

    @property
    def target(self) -> TargetPlatform:
        return TargetPlatform(target=self.fields["target"], platform=self.fields["platform"])

    def request(self, artifact: Artifact) -> ImageRequested:
        return ImageRequested(**self.fields, artifact=artifact)


# Given the map's plain branch keys: the version of the branch the build's commit forked from
# most recently (shared.naming.version_for_ref on the fetched history), or None if unknown.
ForkPoint = Callable[[list[str]], str | None]


def build_version(event: BuildRequested, config: KilnConfig, fork_point: ForkPoint | None = None) -> str:
    """The version of the build: as requested, else its branch's own entry in version_map, else
    that of the mapped branch it forked from (a feature branch off develop is develop's version,
    as the seed names it), else `*`. A build without a ref (a local path) gets `*`."""
    if event.version:
        return event.version
    ref = branch_of(event.source.ref)
    if ref:
        explicit = explicit_version(ref, config.version_map)
        if explicit is not None:
            return explicit
        branches = fork_point_branches(config.version_map)
        forked = fork_point(branches) if fork_point is not None and branches else None
        return forked or version_for_branch(ref, config.version_map)
    if FALLBACK_KEY not in config.version_map:
        raise PlanError("the build has no branch and version_map has no '*' entry; pass a version")
    return config.version_map[FALLBACK_KEY]


def plan_images(
    event: BuildRequested,
    config: KilnConfig,
    package: PackageConfig,
    *,
    factory_dirs: Mapping[str, str],
    default_base_images: Mapping[str, str | None],
    version: str | None = None,
) -> list[ImagePlan]:
    """Every image of the build (named with `version`, default `build_version`'s without
    history); services whose feature is off are not built."""
    version = version or build_version(event, config)
    registry = package.deployment.registry
    tags = ("latest",) if event.build_number is None else ("latest", build_tag(event.build_number))
    plans = []
    for name, service in sorted(package.enabled_services().items()):
        for platform in event.options.platforms:
            base_image = package.deployment.base_images.get(platform) or default_base_images.get(platform)
            if not base_image and not service.dockerfile:
                arch = arch_of(platform).upper()
                raise PlanError(
                    f"service {name} needs a base image for {platform}: set "
                    f"deployment.base_images in the operator config or KILN_BASE_IMAGE_{arch}"
                )
            if base_image:
                _checked_base_image(base_image, platform)
            fields = {
                "target": name,
                "platform": platform,
                "base_image": base_image or "",
                "tier": service.tier,
                "factories": _kept_factories(name, service.factories, factory_dirs),
                "command": tuple(service.command),
                "port": service.port,
                "health_path": service.health,
                "dockerfile": service.dockerfile,
                "repository": image_repository(
                    registry.host, registry.project, version, name, event.package, platform, registry.tenant
                ),
                "tags": tags,
                "skip_push": event.options.skip_push,
                "commit": event.source.commit,
            }
            try:  # the imager refuses a malformed job on receipt: fail here, at stage config
                ImageRequested(**fields)
            except ValidationError as exc:
                raise PlanError(f"service {name} ({platform}): {describe_invalid(exc)}") from None
            plans.append(ImagePlan(fields))
    return plans


def _checked_base_image(reference: str, platform: str) -> None:
    # The config validates deployment.base_images; the settings' defaults are checked here, as
    # the reference goes into the Dockerfile's FROM line.
    try:
        validate_image_reference(reference)
    except ValueError as exc:
        arch = arch_of(platform).upper()
        raise PlanError(f"base image for {platform}: {exc} (check KILN_BASE_IMAGE_{arch})") from None


def _kept_factories(service: str, factories: list[str], factory_dirs: Mapping[str, str]) -> tuple[str, ...]:
    """The package directories the image keeps (a factory's directory may differ from its name)."""
    unknown = [f for f in factories if f not in factory_dirs]
    if unknown:
        raise PlanError(
            f"service {service} keeps factories the package does not compile: {', '.join(unknown)}"
        )
    return tuple(factory_dirs[f] for f in factories)
