"""Which image references the deployer may deploy, checked against the operator's config.

An `image.pushed` names its repository; the broker is not a trust boundary, so that name is not
taken as given. The deployer deploys a reference only if its repository is exactly the one
shared.naming derives for that package, target and platform under the operator's registry (the
build's version is the one free part: a build may ask for any version), pinned by the digest it
recorded from image.pushed. An index (manifest.pushed) is accepted only under the same names.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.deployer.gate import ImageState
from shared.config import PackageConfig
from shared.naming import derived_version


def refused_images(images: Iterable[ImageState], package: str, pkg: PackageConfig) -> list[str]:
    """One reason per image that must not be deployed; empty when all may."""
    problems = []
    for image in images:
        where = f"{image.target} ({image.platform})"
        if not image.digest:
            problems.append(f"{where}: no digest recorded from image.pushed (only digests are deployed)")
            continue
        problem = repository_problem(image.repository or "", image.target, image.platform, package, pkg)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def repository_problem(repository: str, target: str, platform: str, package: str, pkg: PackageConfig) -> str:
    """Why `repository` is not the derived one for this package/target/platform ("" if it is)."""
    registry = pkg.deployment.registry
    try:
        derived_version(
            repository,
            registry_host=registry.host,
            project=registry.project,
            service=target,
            package=package,
            platform=platform,
            tenant=registry.tenant,
        )
    except ValueError as exc:
        return f"{exc}; the deployer deploys only what packages.{package}.deployment.registry derives"
    return ""
