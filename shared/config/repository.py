"""A repository's own config.yaml: what a pushed tree may say about its build, and how that is
laid over the operator's config.

Trust rule (issue #13): the operator's config (KILN_CONFIG_PATH, the environment) decides where
things go and who gets credentials; the repository only describes what is built. So the
repository file is an allow-list of build keys (`REPOSITORY_KEYS`); any other key is refused
naming its path. The overlay then replaces, key by key, the operator's build description of a
package and service the operator already declared: a repository can change how an image is
built, never which images (registry repositories) exist or where they go.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from shared.config.models import KilnConfig
from shared.config.schema_walk import allowed_keys

Issue = tuple[tuple[str | int, ...], str]
ANY = "*"  # any name (a factory, tier, package or service)
LEAF = None  # the whole value, whatever its shape (the models validate it after the overlay)

SERVICE_BUILD_KEYS = ("command", "port", "health", "factories", "tier", "feature", "env", "replicas")
REPOSITORY_KEYS: dict[str, Any] = {
    "factories": {ANY: {"path": LEAF}},
    "tiers": {ANY: {"requirements": LEAF, "arm_exclude": LEAF}},
    "packages": {
        ANY: {
            "factories": LEAF,
            "features": LEAF,
            "compile": {"fallback_to_source": LEAF},
            "services": {ANY: dict.fromkeys(SERVICE_BUILD_KEYS, LEAF)},
        }
    },
}
OPERATOR_HINT = "set it in the operator config (the file at KILN_CONFIG_PATH), not in the repository"


def check_repository_keys(data: Any) -> Iterator[Issue]:
    """Every key of a repository config that it may not set, with the reason."""
    if not isinstance(data, dict):
        yield (), "the repository config must be a mapping of sections"
        return
    yield from _walk(data, REPOSITORY_KEYS, ())


def _walk(data: dict, allowed: dict, path: tuple) -> Iterator[Issue]:
    for key, value in data.items():
        where = (*path, str(key))
        if ANY in allowed:
            child = allowed[ANY]
        elif key in allowed:
            child = allowed[key]
        else:
            yield where, _refusal(path, str(key), allowed)
            continue
        if child is LEAF:
            continue
        if isinstance(value, dict):
            yield from _walk(value, child, where)
        elif value is not None:
            yield where, "must be a mapping"


def _refusal(parent: tuple, key: str, allowed: dict) -> str:
    may = ", ".join(allowed)
    if key in (allowed_keys(KilnConfig, parent) or []):
        return f"operator only: {OPERATOR_HINT} (a repository config may set here: {may})"
    return f"unknown key (a repository config may set here: {may})"


def overlay(operator: Any, repository: dict) -> tuple[Any, list[Issue]]:
    """The operator's data with the repository's build keys laid over it, and what was refused
    (a package or service the operator did not declare)."""
    if not isinstance(operator, dict):
        return operator, []
    merged = copy.deepcopy(operator)
    issues: list[Issue] = []
    for section in ("factories", "tiers"):
        _merge_named(merged, section, repository.get(section))
    packages = _mapping(merged.get("packages"))
    for name, package in _mapping(repository.get("packages")).items():
        if name not in packages:
            known = ", ".join(sorted(map(str, packages))) or "none"
            issues.append(
                (
                    ("packages", name),
                    f"package {name!r} is not in the operator config (known: {known}); the operator "
                    "declares packages and where they go",
                )
            )
        elif isinstance(packages[name], dict) and isinstance(package, dict):
            issues += _merge_package(packages[name], package, ("packages", name))
    return merged, issues


def _merge_package(target: dict, package: dict, path: tuple) -> list[Issue]:
    issues: list[Issue] = []
    if "factories" in package:
        target["factories"] = copy.deepcopy(package["factories"])
    for section in ("features", "compile"):
        if isinstance(package.get(section), dict):
            target[section] = {**_mapping(target.get(section)), **copy.deepcopy(package[section])}
    declared = _mapping(target.get("services"))
    for name, service in _mapping(package.get("services")).items():
        if name not in declared:
            known = ", ".join(sorted(map(str, declared))) or "none"
            issues.append(
                (
                    (*path, "services", name),
                    f"service {name!r} is not declared in the operator config (declared: {known}); "
                    "each service is an image repository in the operator's registry, so the operator "
                    "adds new ones",
                )
            )
        elif isinstance(declared[name], dict) and isinstance(service, dict):
            declared[name] = {**declared[name], **copy.deepcopy(service)}
    return issues


def _merge_named(merged: dict, section: str, entries: Any) -> None:
    """factories / tiers: a repository entry replaces the keys it names; new names are added."""
    if not isinstance(entries, dict):
        return
    current = merged.get(section)
    if not isinstance(current, dict):
        current = merged[section] = {}
    for name, entry in entries.items():
        if isinstance(entry, dict):
            current[name] = {**_mapping(current.get(name)), **copy.deepcopy(entry)}


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
