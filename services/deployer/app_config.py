"""The app's own configuration at deploy time (issue #16 item 4).

The deployer reads only the operator's config, never the repository: the app config it mounts is
the document stage config trimmed from the build's tree, carried by compile.completed as a
reference into the artifact store and fetched here digest-checked. It is checked again against
today's operator config (the sections listed, the services' `<PREFIX>_…` env entries), since the
operator may have changed it after the build compiled.

App secrets come from the deployer's own environment, by the names the operator config gives
(`app_secrets.<NAME>.env`), at deploy time; they are registered with the redactor at once, so a
log line, an event or a container log tail that shows one shows `***`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from shared.artifacts import FILE_SCHEME, artifact_location
from shared.bus import TransientError
from shared.config import PackageConfig
from shared.config.app_config import decode_document, env_problems
from shared.document_artifacts import pull_document
from shared.logging import REDACT
from shared.registry import DigestMismatch, RegistryClient
from shared.registry.errors import NotFound, RegistryError, RegistryUnavailable

# (reference, package) -> the document's bytes, digest-checked.
FetchDocument = Callable[[str, str], bytes]


class AppConfigRefused(Exception):
    """The deploy cannot give the services their app config or secrets; the message says which key
    and what to do. The deploy stage fails with it (nothing is replaced)."""


def build_app_config(
    package: str, pkg: PackageConfig, reference: Mapping | None, fetch: FetchDocument | None
) -> str | None:
    """The build's trimmed app config (the document's JSON text), None for a package without one."""
    if pkg.app_config is None:
        return None
    key = f"packages.{package}.app_config"
    if not reference:
        raise AppConfigRefused(
            f"{key} is set, but this build carries no app config (compiled before the package had one, or "
            "by a compiler without it): rebuild it"
        )
    if fetch is None:
        raise AppConfigRefused(f"{key}: this deployer has no artifact store to fetch the app config from")
    where = str(reference.get("reference", ""))
    try:
        data = fetch(where, package)
    except RegistryUnavailable as exc:
        raise TransientError(f"cannot fetch the app config {where}: {exc}") from exc
    except DigestMismatch as exc:
        raise AppConfigRefused(f"{key}: the build's app config does not match its digest: {exc}") from None
    except (NotFound, FileNotFoundError):
        raise AppConfigRefused(
            f"{key}: the build's app config {where} is gone from the artifact store"
        ) from None
    except (RegistryError, ValueError, OSError) as exc:
        raise AppConfigRefused(f"{key}: cannot fetch the build's app config: {exc}") from None
    return checked_document(package, pkg, data)


def checked_document(package: str, pkg: PackageConfig, data: bytes | str) -> str:
    """The document, if today's operator config can be deployed with it."""
    spec = pkg.app_config
    assert spec is not None
    raw = data.encode() if isinstance(data, str) else data
    try:
        sections = decode_document(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AppConfigRefused(
            f"packages.{package}.app_config: the build's app config is unreadable: {exc}"
        ) from None
    missing = [name for name in spec.sections if name not in sections]
    if missing:
        raise AppConfigRefused(
            f"packages.{package}.app_config.sections: {', '.join(missing)} not in the build's trimmed "
            f"{spec.path} (the operator config lists sections the build did not trim): rebuild"
        )
    problems = [
        f"{'.'.join(map(str, loc))}: {message}" for loc, message in env_problems(package, pkg, sections)
    ]
    if problems:
        raise AppConfigRefused("; ".join(problems))
    return raw.decode("utf-8")


def app_secret_values(package: str, pkg: PackageConfig, env: Mapping[str, str]) -> dict[str, str]:
    """NAME -> value of every app secret, from the variables the operator config names."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, secret in sorted(pkg.app_secrets.items()):
        value = env.get(secret.env)
        if value:
            values[name] = value
        else:
            missing.append(f"packages.{package}.app_secrets.{name}.env: {secret.env} is not set")
    REDACT.add(*values.values())
    if missing:
        raise AppConfigRefused(
            "; ".join(missing) + " in the deployer's environment (set it where the deployer runs; the "
            "value is never written into a file)"
        )
    return values


def document_fetcher(settings) -> FetchDocument:
    """Fetch from the artifact store the compiler pushes to (KILN_ARTIFACT_STORE, else
    "{registry}/kiln"), and from nowhere else: a reference outside it is refused."""

    def fetch(reference: str, package: str) -> bytes:
        where = reference.rpartition("@")[0]
        if settings.artifact_store and settings.artifact_store.startswith(FILE_SCHEME):
            _inside(where, settings.artifact_store, package)
            return pull_document(reference)
        with RegistryClient.from_settings(settings) as client:
            _inside(where, settings.artifact_store or f"{client.host}/kiln", package)
            return pull_document(reference, client=client)

    return fetch


def _inside(where: str, store: str, package: str) -> None:
    expected = artifact_location(store, package)
    if where != expected:
        raise ValueError(
            f"{where}@… is not in the configured artifact store: expected {expected}@sha256:<hex> "
            "(KILN_ARTIFACT_STORE)"
        )
