"""Cross-checks of a package's app_config and app_secrets that need no file (run with the others
in cross_checks, on the raw mapping, so every error of a config is reported in one pass).

What they guard: a service reading a section the package does not list; an env entry or secret
named `<PREFIX>_…` that no reader would apply (a typo); a secret nobody receives, or one a
service's plain `env` would shadow. Whether the options exist needs the file: app_config.py does
that at stage config.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.config.app_config import split_env_name

Issue = tuple[tuple[str | int, ...], str]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def check_app_config(path: tuple, package: dict) -> Iterator[Issue]:
    spec = package.get("app_config")
    spec = spec if isinstance(spec, dict) else None
    sections = _strings((spec or {}).get("sections"))
    prefix = (spec or {}).get("env_prefix") if isinstance((spec or {}).get("env_prefix"), str) else None
    services = _mapping(package.get("services"))
    substrate = _mapping(package.get("deployment")).get("substrate")
    if spec is not None and substrate == "supervisor":
        yield (
            (*path, "app_config"),
            (
                "the supervisor substrate does not mount an app config (compose and k8s do); deploy this "
                "package with compose or k8s, or remove app_config"
            ),
        )
    readers: dict[str, list[str]] = {section: [] for section in sections}
    for name, service in services.items():
        where = (*path, "services", name)
        reads = _strings(_mapping(service).get("app_config_sections"))
        if reads and spec is None:
            yield (
                (*where, "app_config_sections"),
                (
                    f"needs packages.{path[-1]}.app_config (the repository file and the sections the "
                    "package uses)"
                ),
            )
            continue
        for index, section in enumerate(reads):
            if section in readers:
                readers[section].append(name)
            else:
                yield (
                    (*where, "app_config_sections", index),
                    (
                        f"section {section!r} is not in packages.{path[-1]}.app_config.sections "
                        f"({', '.join(sections) or 'none'})"
                    ),
                )
        for key in _mapping(_mapping(service).get("env")):
            if (
                prefix
                and str(key).startswith(f"{prefix}_")
                and split_env_name(str(key), prefix, reads) is None
            ):
                yield (
                    (*where, "env", key),
                    (
                        f"names no section service {name} reads ({prefix}_<SECTION>_<OPTION>; its "
                        f"app_config_sections: {', '.join(reads) or 'none'})"
                    ),
                )
    for name, secret in _mapping(package.get("app_secrets")).items():
        if isinstance(secret, dict):
            yield from _check_secret(
                (*path, "app_secrets", str(name)), str(name), secret, prefix, readers, services
            )


def _check_secret(
    where: tuple, name: str, secret: dict, prefix: str | None, readers: dict[str, list[str]], services: dict
) -> Iterator[Issue]:
    if name.startswith("KILN_"):
        yield where, "must not be a KILN_ variable (Kiln's own variables in the containers and its settings)"
        return
    named = split_env_name(name, prefix, readers) if prefix else None
    if prefix and name.startswith(f"{prefix}_") and named is None:
        yield (
            where,
            (
                f"starts with {prefix}_ but names no section of app_config.sections "
                f"({', '.join(readers) or 'none'}): the app's reader would ignore it"
            ),
        )
        return
    listed = secret.get("services")
    targets: list[str] = []
    if listed is None:
        if named is None:
            yield (
                (*where, "services"),
                (
                    f"{name} names no app_config section ({prefix or '<PREFIX>'}_<SECTION>_<OPTION>): "
                    "list the services that get it"
                ),
            )
            return
        targets = list(readers[named[0]])
        if not targets:
            yield (
                where,
                (
                    f'no service reads section "{named[0]}" (app_config_sections), so nobody would get it; '
                    "list the services that get it"
                ),
            )
    for index, target in enumerate(_strings(listed)):
        if target not in services:
            yield (*where, "services", index), f"unknown service {target!r} (services: {', '.join(services)})"
        elif named is not None and target not in readers[named[0]]:
            yield (
                (*where, "services", index),
                (f'service {target} does not read section "{named[0]}", so its reader would ignore {name}'),
            )
        else:
            targets.append(target)
    for target in targets:
        if name in _mapping(_mapping(services.get(target)).get("env")):
            yield (
                (*where[:-2], "services", target, "env", name),
                (
                    f"is also an app secret (app_secrets.{name}); a secret's value comes from the deployer's "
                    "environment only: remove it from env"
                ),
            )
