"""The app's own configuration file at stage config: read from the checked-out tree (untrusted)
where the operator's `packages.<p>.app_config.path` says, trimmed to the sections the operator
lists and checked against the services' `<PREFIX>_…` env entries (shared/config/app_config.py);
pushed with the compiled artifacts so compile.completed can carry it by reference."""

from __future__ import annotations

from pathlib import Path

from services.compiler.ports import ArtifactStore
from services.compiler.source import UnreadableConfig, read_repository_config
from shared.bus.stage import StageFailed
from shared.config import ConfigError, PackageConfig
from shared.config.app_config import APP_CONFIG_MAX_BYTES, trimmed_document
from shared.events.compile import DocumentReference


def app_config_document(root: Path, package: str, pkg: PackageConfig) -> bytes | None:
    """The package's trimmed app config (JSON bytes), None when it has no app_config."""
    spec = pkg.app_config
    if spec is None:
        return None
    key = f"packages.{package}.app_config.path"
    try:
        data = read_repository_config(root, spec.path, APP_CONFIG_MAX_BYTES)
    except UnreadableConfig as exc:
        raise StageFailed(f"{key}: {exc}") from None
    if data is None:
        raise StageFailed(
            f"{key}: {spec.path} is not in the repository (the operator config names it as the app's "
            "configuration file; add it, or change app_config.path)"
        )
    try:
        return trimmed_document(data, package, pkg)
    except ConfigError as exc:
        errors = [f"{path}: {message}" for path, message in exc.errors]
        raise StageFailed(
            f"the app config {spec.path} in the repository is refused:\n" + "\n".join(errors),
            {"errors": errors},
        ) from None


def push_app_config(
    store: ArtifactStore, document: bytes | None, *, package: str, build: str
) -> DocumentReference | None:
    if document is None:
        return None
    return store.push_document(document, package=package, build=build)
