"""Names derived from config and webhooks: versions, image references, k8s/compose names.

Pure functions except `version_for_ref`, which asks git. Package and branch names arrive
from webhooks, so every component is validated here before it can reach a tag or a
manifest; a bad component raises ValueError naming the component and the rule.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from shared.platforms import PLATFORM_NAMES, branch_of, parse

PLATFORMS = PLATFORM_NAMES  # kept under its old name for the callers that import it from here
DEFAULT_VERSION_MAP: Mapping[str, str] = {
    "develop": "meridian",
    "main": "axion",
    "helix": "helix",
    "*": "prism",
}
FALLBACK_KEY = "*"

# OCI distribution spec: a path component, a tag, and the practical 255-char name limit.
_OCI_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_OCI_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_OCI_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_REGISTRY_HOST = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]{1,5})?$"
)
_MAX_REPOSITORY_LENGTH = 255
_MAX_COMPONENT_LENGTH = 63  # our own limit: components double as DNS labels in k8s names
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# An image reference as docker and buildah take it: [registry[:port]/]path[:tag][@sha256:digest].
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"(?:[a-zA-Z0-9.-]+(?::[0-9]{{1,5}})?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
_MAX_REFERENCE_LENGTH = 512
# git check-ref-format, reduced to what a webhook may legally send us.
_BAD_REF = re.compile(r"(?:\.\.|@\{|[\x00-\x20\x7f~^:?*\[\\]|//|/\.|\.lock$|^/|/$|\.$)")


def _component(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    if len(value) > _MAX_COMPONENT_LENGTH:
        raise ValueError(f"{kind} {value!r} is longer than {_MAX_COMPONENT_LENGTH} characters")
    if not _OCI_COMPONENT.fullmatch(value):
        raise ValueError(
            f"{kind} {value!r} is not a valid image name component: use lowercase "
            "[a-z0-9] separated by single '.', '_', '__' or '-'"
        )
    return value


def validate_branch(branch: str) -> str:
    """Return the branch name without `refs/heads/`, or raise ValueError if git would refuse it."""
    if not isinstance(branch, str) or not branch.strip():
        raise ValueError(f"branch must be a non-empty string, got {branch!r}")
    name = branch_of(branch)
    if name.startswith("-") or _BAD_REF.search(name) or len(name) > 255:
        raise ValueError(f"branch {branch!r} is not a valid git branch name")
    return name


def version_for_branch(branch: str, version_map: Mapping[str, str] = DEFAULT_VERSION_MAP) -> str:
    """Version name for a branch: exact key, then glob keys (`feature/*`) in map order, then `*`."""
    name = validate_branch(branch)
    explicit = _explicit_version(name, version_map)
    if explicit is not None:
        return explicit
    if FALLBACK_KEY in version_map:
        return _component("version", version_map[FALLBACK_KEY])
    raise ValueError(f"branch {name!r} matches no version_map key and the map has no '*'")


def _is_pattern(key: str) -> bool:
    return any(ch in key for ch in "*?[")


def version_for_ref(
    repo_dir: str | Path, ref: str, version_map: Mapping[str, str] = DEFAULT_VERSION_MAP
) -> str:
    """Version for a branch or commit, deciding unmapped branches by merge-base.

    Rule: a ref whose name is an exact or glob key of the map gets that version. Otherwise,
    for every plain (non-glob) key that exists in the repository as a local branch or as
    `origin/<key>`, compute `git merge-base <ref> <key>` and count the commits from that
    merge-base to the ref; the key with the fewest (the branch the ref forked from most
    recently) wins, ties going to the key listed first in the map. With no such key, `*`.
    """
    name = branch_of(ref)
    if not name.startswith("-") and not _BAD_REF.search(name):
        exact_or_pattern = _explicit_version(name, version_map)
        if exact_or_pattern is not None:
            return exact_or_pattern
    target = _resolve_commit(repo_dir, ref)
    if target is None:
        raise ValueError(f"ref {ref!r} does not name a commit in {repo_dir}")
    best: tuple[int, str] | None = None
    for key, version in version_map.items():
        if key == FALLBACK_KEY or _is_pattern(key):
            continue
        mapped = _resolve_commit(repo_dir, key) or _resolve_commit(repo_dir, f"origin/{key}")
        if mapped is None:
            continue
        base = _git(repo_dir, "merge-base", target, mapped)
        if base is None:
            continue
        distance = int(_git(repo_dir, "rev-list", "--count", f"{base}..{target}") or 0)
        if best is None or distance < best[0]:
            best = (distance, version)
    if best is not None:
        return _component("version", best[1])
    if FALLBACK_KEY not in version_map:
        raise ValueError(f"ref {ref!r} forked from no mapped branch and the map has no '*'")
    return _component("version", version_map[FALLBACK_KEY])


def explicit_version(branch: str, version_map: Mapping[str, str] = DEFAULT_VERSION_MAP) -> str | None:
    """The version a branch's own name maps to (exact key, then globs), or None when only the
    fallback `*` would: then where it forked decides (`version_for_ref`), which needs history."""
    return _explicit_version(validate_branch(branch), version_map)


# At most this many map keys are looked up in a repository's history per build.
MAX_FORK_POINT_BRANCHES = 20


def fork_point_branches(version_map: Mapping[str, str]) -> list[str]:
    """The plain (non-glob) branch keys of the map, in map order: what `version_for_ref` measures
    a ref's fork point against. Keys that are not valid branch names are left out."""
    names = []
    for key in version_map:
        if key == FALLBACK_KEY or _is_pattern(key):
            continue
        try:
            names.append(validate_branch(key))
        except ValueError:
            continue
    return names[:MAX_FORK_POINT_BRANCHES]


def _explicit_version(name: str, version_map: Mapping[str, str]) -> str | None:
    if name in version_map and name != FALLBACK_KEY:
        return _component("version", version_map[name])
    for pattern, version in version_map.items():
        if pattern != FALLBACK_KEY and _is_pattern(pattern) and fnmatch.fnmatchcase(name, pattern):
            return _component("version", version)
    return None


def _resolve_commit(repo_dir: str | Path, ref: str) -> str | None:
    if ref.startswith("-"):
        raise ValueError(f"ref {ref!r} must not start with '-'")
    return _git(repo_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")


def _git(repo_dir: str | Path, *args: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(repo_dir), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def image_repository(
    registry_host: str,
    project: str,
    version: str,
    service: str,
    package: str,
    platform: str,
    tenant: str | None = None,
) -> str:
    """`{registry}/{project}/[tenants/{tenant}/]{version}-{service}-{package}[-arm]`."""
    if not isinstance(registry_host, str) or not _REGISTRY_HOST.fullmatch(registry_host):
        raise ValueError(f"registry host {registry_host!r} is not host[:port]")
    if platform not in PLATFORMS:
        raise ValueError(f"platform {platform!r} is not one of {', '.join(PLATFORMS)}")
    parts = [_component("project", project)]
    if tenant is not None:
        parts += ["tenants", _component("tenant", tenant)]
    suffix = parse(platform).repository_suffix
    name = (
        f"{_component('version', version)}-{_component('service', service)}"
        f"-{_component('package', package)}{suffix}"
    )
    repository = "/".join([registry_host.lower(), *parts, _component("image name", name)])
    if len(repository) > _MAX_REPOSITORY_LENGTH:
        raise ValueError(f"repository {repository!r} is longer than {_MAX_REPOSITORY_LENGTH}")
    return repository


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _OCI_TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r} must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")
    return tag


def image_ref(
    registry_host: str,
    project: str,
    version: str,
    service: str,
    package: str,
    platform: str,
    tag: str,
    tenant: str | None = None,
) -> str:
    """`image_repository(...):tag`."""
    repository = image_repository(registry_host, project, version, service, package, platform, tenant=tenant)
    return f"{repository}:{validate_tag(tag)}"


def validate_image_reference(reference: str) -> str:
    """A base or infra image reference, whole: it is written into a Dockerfile's FROM line and
    handed to docker, so whitespace, a newline or any other character outside the grammar is refused."""
    if (
        not isinstance(reference, str)
        or len(reference) > _MAX_REFERENCE_LENGTH
        or not _IMAGE_REFERENCE.fullmatch(reference)
    ):
        raise ValueError(
            f"image reference {reference!r} is not [registry[:port]/]name[:tag][@sha256:digest] "
            "(lowercase name components, no spaces or newlines)"
        )
    return reference


def digest_ref(repository: str, digest: str) -> str:
    """`repository@sha256:...`: the reference deployments pin to."""
    if not isinstance(digest, str) or not _OCI_DIGEST.fullmatch(digest):
        raise ValueError(f"digest {digest!r} is not sha256:<64 lowercase hex>")
    return f"{repository}@{digest}"


def build_tag(build_number: int) -> str:
    """Immutable per-build tag: `b42`. Numbers come from the database, one sequence per package."""
    if isinstance(build_number, bool) or not isinstance(build_number, int) or build_number < 1:
        raise ValueError(f"build number must be a positive integer, got {build_number!r}")
    return f"b{build_number}"


def safe_name(value: str) -> str:
    """A DNS-1123 label for k8s and compose: lowercase, `_` and `.` become `-`, max 63."""
    if not isinstance(value, str):
        raise ValueError(f"name must be a string, got {value!r}")
    name = value.lower().replace("_", "-").replace(".", "-")
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(
            f"name {value!r} does not become a DNS-1123 label ({name!r}): use [a-z0-9-], "
            "start and end alphanumeric, at most 63 characters"
        )
    return name


def namespace(package: str, env: str) -> str:
    """Kubernetes namespace of a package's deployment: `{package}-{env}`."""
    return safe_name(f"{package}-{env}")


# The same rules as patterns for the event models (shared/events/formats.py): pydantic checks
# them in its Rust core, so a malformed event costs a regex per field and nothing else. Anchored.
NAME_PATTERN = rf"^{_PATH_COMPONENT}$"  # = _OCI_COMPONENT: package, target, version
TAG_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
# `[host[:port]/]path`: no scheme, tag, whitespace or control character, nothing a shell, a
# Dockerfile or a template would read as syntax.
REPOSITORY_PATTERN = rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]{{1,5}})?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"
# What validate_image_reference accepts: the base images (FROM) and deployed references.
IMAGE_REFERENCE_PATTERN = rf"^{_IMAGE_REFERENCE.pattern}$"
_REPOSITORY = re.compile(REPOSITORY_PATTERN)


def validate_repository(repository: str, what: str = "repository") -> str:
    """`[host[:port]/]path` with lowercase OCI components; ValueError naming `what` otherwise."""
    if not isinstance(repository, str) or len(repository) > _MAX_REPOSITORY_LENGTH:
        raise ValueError(f"{what} {repository!r} is not a string of at most {_MAX_REPOSITORY_LENGTH} chars")
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(
            f"{what} {repository!r} is not [host[:port]/]path with lowercase [a-z0-9] components "
            "(no scheme, tag, whitespace or control characters)"
        )
    return repository


def registry_host_of(url: str) -> str:
    """`http://127.0.0.1:5000/x` or `127.0.0.1:5000` -> `127.0.0.1:5000` (what repositories start with)."""
    return url.split("://", 1)[-1].split("/", 1)[0].lower()


def split_repository(repository: str) -> tuple[str | None, str]:
    """(`host[:port]`, path) the way docker reads a reference: the first component is a host only
    if it has a `.` or `:` or is `localhost`; otherwise there is no host (docker.io)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first.lower(), rest
    return None, repository


def derived_version(
    repository: str,
    *,
    registry_host: str,
    project: str,
    service: str,
    package: str,
    platform: str,
    tenant: str | None = None,
) -> str:
    """The version V for which `repository == image_repository(registry_host, project, V, service,
    package, platform, tenant)`, or ValueError saying which repository was expected.

    The version is the one part a receiver cannot re-derive (a build may ask for any version), so
    it is the only free part: host, project, tenant, service, package and platform must all match."""
    prefix = "/".join([registry_host.lower(), project, *(["tenants", tenant] if tenant else [])]) + "/"
    suffix = f"-{service}-{package}" + (parse(platform).repository_suffix if platform in PLATFORMS else "")
    refused = f"repository {repository!r} is not {prefix}<version>{suffix} (derived from the operator config)"
    if not (isinstance(repository, str) and repository.startswith(prefix) and repository.endswith(suffix)):
        raise ValueError(refused)
    version = repository[len(prefix) : len(repository) - len(suffix)]
    try:
        derived = image_repository(registry_host, project, version, service, package, platform, tenant=tenant)
    except ValueError as exc:
        raise ValueError(f"{refused}: {exc}") from None
    if derived != repository:
        raise ValueError(refused)
    return version
