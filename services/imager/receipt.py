"""What an image job may ask for, checked against the operator's config on receipt.

The event models already refuse malformed fields (shared/events/formats.py). This is the second
half: a well-formed job is accepted only if every destination and input it names is the one the
operator's config (KILN_CONFIG_PATH, the environment) derives for that package, target and
platform. So a forged or confused `image.requested` can make the imager push nowhere but the
repository shared.naming derives under the operator's registry (the host its credentials are for),
build FROM nothing but a base image the operator configured, and read no artifact outside the
configured store. The build's version is the one part that cannot be re-derived here (a build may
ask for any version), so it is the one free part of the repository name.

A refusal is a JobRefused (a PermanentError): dead-lettered with the reason, reported as
image.failed (the give-up report), never retried. Nothing is fetched, built or pushed before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.artifacts import artifact_location
from shared.bus import PermanentError
from shared.config import ConfigError, KilnConfig, PackageConfig
from shared.events.compile import ImageRequested, arch_of
from shared.events.image import ImagePushed
from shared.naming import derived_version

_SHOWN = 200  # a refused value is shown this long at most (events and headers stay small)


class JobRefused(PermanentError):
    """The job names a destination or input the operator's config does not give it."""


@dataclass(frozen=True)
class ReceiptPolicy:
    """What the operator configured for this worker; built once in bootstrap."""

    # Reads the operator config (None: KILN_CONFIG_PATH is not set, and every job is refused).
    load_config: Callable[[], KilnConfig] | None
    registry_host: str  # the host KILN_REGISTRY_URL names: the only one the credentials are for
    artifact_store: str  # KILN_ARTIFACT_STORE, else "{registry_host}/kiln" (as the compiler)
    default_base_images: Mapping[str, str | None]  # KILN_BASE_IMAGE_AMD64 / _ARM64


def check_job(event: ImageRequested, package: str, policy: ReceiptPolicy) -> None:
    """Raise JobRefused naming every field that is not what the operator's config derives."""
    pkg = _service_package(event.target, package, policy)
    problems = [
        *_registry_problems(event, package, pkg, policy),
        *_base_image_problems(event, package, pkg, policy),
        *_artifact_problems(event, package, policy),
    ]
    if problems:
        raise JobRefused("; ".join(problems))


def check_pushed(event: ImagePushed, package: str, policy: ReceiptPolicy) -> None:
    """An image.pushed the index assembly may use: its repository is the derived one (an index
    is pushed with the imager's credentials, next to the platform images it names)."""
    pkg = _service_package(event.target, package, policy)
    problems = list(_registry_problems(event, package, pkg, policy))
    if problems:
        raise JobRefused("; ".join(problems))


def _service_package(target: str, package: str, policy: ReceiptPolicy) -> PackageConfig:
    pkg = _package(_operator_config(policy), package)
    if target not in pkg.services:
        known = ", ".join(sorted(pkg.services)) or "none"
        raise JobRefused(
            f"target {_shown(target)} is not a service of package {package!r} in the operator "
            f"config (services: {known}); add it to the operator config to build it"
        )
    return pkg


def _operator_config(policy: ReceiptPolicy) -> KilnConfig:
    if policy.load_config is None:
        raise JobRefused(
            "KILN_CONFIG_PATH is not set: the imager accepts a job only against the operator's config "
            "(set KILN_CONFIG_PATH to the pipeline config file)"
        )
    try:
        return policy.load_config()
    except ConfigError as exc:
        raise JobRefused(f"the operator config (KILN_CONFIG_PATH) is invalid: {exc}") from None


def _package(config: KilnConfig, package: str) -> PackageConfig:
    try:
        return config.package(package)
    except KeyError:
        raise JobRefused(
            f"package {_shown(package)} is not in the operator config (KILN_CONFIG_PATH); "
            f"known: {', '.join(sorted(config.packages))}"
        ) from None


def _registry_problems(
    event: ImageRequested | ImagePushed, package: str, pkg: PackageConfig, policy: ReceiptPolicy
):
    registry = pkg.deployment.registry
    if registry.host.lower() != policy.registry_host.lower():
        yield (
            f"packages.{package}.deployment.registry.host is {registry.host!r} but this imager's "
            f"credentials are for {policy.registry_host!r} (KILN_REGISTRY_URL): it pushes only there; "
            "make the two agree"
        )
        return
    try:
        derived_version(
            event.repository,
            registry_host=registry.host,
            project=registry.project,
            service=event.target,
            package=package,
            platform=event.platform,
            tenant=registry.tenant,
        )
    except ValueError as exc:
        yield f"repository refused: {_clip(str(exc))}"


def _base_image_problems(event: ImageRequested, package: str, pkg: PackageConfig, policy: ReceiptPolicy):
    if not event.base_image:
        if not event.dockerfile:
            yield "base_image is empty, and only a plain-Dockerfile job (dockerfile set) may leave it empty"
        return
    allowed = {
        image
        for image in (
            pkg.deployment.base_images.get(event.platform),  # type: ignore[call-overload]
            policy.default_base_images.get(event.platform),
        )
        if image
    }
    if event.base_image not in allowed:
        yield (
            f"base_image {_shown(event.base_image)} is not a base image the operator configured for "
            f"{event.platform} (packages.{package}.deployment.base_images or "
            f"KILN_BASE_IMAGE_{arch_of(event.platform).upper()}: {', '.join(sorted(allowed)) or 'none'})"
        )


def _artifact_problems(event: ImageRequested, package: str, policy: ReceiptPolicy):
    if event.artifact is None:
        return  # refused later, with its own message: the job names nothing to build from
    if event.artifact.platform != event.platform:
        yield f"artifact.platform {event.artifact.platform} is not the job's platform {event.platform}"
    where = event.artifact.reference.rpartition("@")[0]
    expected = artifact_location(policy.artifact_store, package)
    if where != expected:
        yield (
            f"artifact.reference {_shown(event.artifact.reference)} is not in the configured artifact "
            f"store: expected {expected}@sha256:<hex> (KILN_ARTIFACT_STORE)"
        )


def _shown(value: str) -> str:
    return repr(_clip(value))


def _clip(value: str) -> str:
    return value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
