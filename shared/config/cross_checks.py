"""Rules that relate one part of config.yaml to another.

They run on the raw mapping, next to (not after) model validation, so a file with a
wrong type in one place and an unknown tier in another reports both at once. Each
check is defensive: a value of the wrong shape is the models' error to report, not ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.config.app_checks import check_app_config

Issue = tuple[tuple[str | int, ...], str]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def cross_check(data: Any, source_dir: Path | None) -> Iterator[Issue]:
    root = _mapping(data)
    version_map = root.get("version_map")
    if isinstance(version_map, dict) and "*" not in version_map:
        yield ("version_map",), "needs a '*' entry: the version of branches matching no other key"
    factories = _mapping(root.get("factories"))
    tiers = _mapping(root.get("tiers"))
    base_ports = {
        name: svc.get("port")
        for name, svc in _mapping(_mapping(root.get("base")).get("services")).items()
        if isinstance(svc, dict)
    }
    for package_name, package in _mapping(root.get("packages")).items():
        if isinstance(package, dict):
            yield from _check_package(
                ("packages", package_name), package, factories, tiers, base_ports, source_dir
            )


def _check_package(
    path: tuple, package: dict, factories: dict, tiers: dict, base_ports: dict, source_dir
) -> Iterator[Issue]:
    kept = _strings(package.get("factories"))
    for index, factory in enumerate(kept):
        if factory not in factories:
            yield (
                (*path, "factories", index),
                f"unknown factory {factory!r} (defined: {_names(factories)})",
            )
    features = _mapping(package.get("features"))
    services = _mapping(package.get("services"))
    ports: dict[int, str] = {p: f"base service {n}" for n, p in base_ports.items() if isinstance(p, int)}
    node_ports: dict[int, str] = {}
    for service_name, service in services.items():
        if isinstance(service, dict):
            where = (*path, "services", service_name)
            yield from _check_service(where, service, kept, factories, tiers, features)
            yield from _unique(where, "port", service.get("port"), service_name, ports)
            yield from _unique(where, "node_port", service.get("node_port"), service_name, node_ports)
    compile_section = _mapping(package.get("compile"))
    for index, module in enumerate(_strings(compile_section.get("fallback_to_source"))):
        if module.split(".")[0] not in kept:
            yield (
                (*path, "compile", "fallback_to_source", index),
                f"module {module!r} is not in one of this package's factories ({', '.join(kept)})",
            )
    deployment = _mapping(package.get("deployment"))
    for volume_name, volume in _mapping(deployment.get("volumes")).items():
        for index, user in enumerate(_strings(_mapping(volume).get("services"))):
            if user not in services:
                yield (
                    (*path, "deployment", "volumes", volume_name, "services", index),
                    f"unknown service {user!r} (services: {_names(services)})",
                )
    yield from check_app_config(path, package)
    keys_dir = _mapping(package.get("keys")).get("dir")
    if isinstance(keys_dir, str) and source_dir is not None and _inside(keys_dir, source_dir):
        yield (
            (*path, "keys", "dir"),
            "PEM keys must live outside the source tree (got a path inside it)",
        )


def _check_service(
    where: tuple, service: dict, kept: list[str], factories: dict, tiers: dict, features: dict
) -> Iterator[Issue]:
    tier = service.get("tier")
    if isinstance(tier, str) and tier not in tiers:
        yield (*where, "tier"), f"unknown tier {tier!r} (defined: {_names(tiers)})"
    for index, factory in enumerate(_strings(service.get("factories"))):
        if factory not in factories:
            yield (
                (*where, "factories", index),
                f"unknown factory {factory!r} (defined: {_names(factories)})",
            )
        elif factory not in kept:
            yield (
                (*where, "factories", index),
                f"factory {factory!r} is not compiled by this package (package factories: {', '.join(kept)})",
            )
    feature = service.get("feature")
    if isinstance(feature, str) and feature not in features:
        yield (*where, "feature"), f"unknown feature {feature!r} (declare it under features)"


def _unique(where: tuple, key: str, value: Any, service: str, seen: dict[int, str]) -> Iterator[Issue]:
    if not isinstance(value, int) or isinstance(value, bool):
        return
    if value in seen:
        yield (*where, key), f"{key} {value} is already used by {seen[value]}"
    else:
        seen[value] = f"service {service}"


def _names(mapping: dict) -> str:
    return ", ".join(str(k) for k in mapping) or "none"


def _inside(candidate: str, tree: Path) -> bool:
    resolved = Path(candidate).expanduser()
    if not resolved.is_absolute():
        resolved = tree / resolved
    resolved, tree = resolved.resolve(), tree.resolve()
    return resolved == tree or tree in resolved.parents
