"""Environment overrides of config.yaml values.

Two forms, both starting with `KILN_`; values are parsed as YAML scalars/flow values
(`false` -> bool, `5` -> int, `[linux/amd64]` -> list, anything else -> string):

* path form, any name containing `__`: `KILN_PACKAGES__DEMO__DEPLOYMENT__SUBSTRATE=k8s`
  sets exactly `packages.demo.deployment.substrate`. Segments match existing keys
  case-insensitively with `_` standing for `-`; the first segment must be a top-level
  section (version_map, base, factories, tiers, packages), otherwise the variable is not ours.
* short form, no `__`: `KILN_<SECTION>_<OPTION>` sets the option in that section of EVERY
  package. Sections: deployment, keys, features, scan, notify, webhooks, compile, docs, and the
  top-level version_map. Options are matched against the model's field names, longest
  first, through nested sections: `KILN_DEPLOYMENT_REGISTRY_HOST` -> deployment.registry.host,
  `KILN_KEYS_DIR` -> keys.dir, `KILN_FEATURES_REPORTS` -> features.reports.
  A name whose first word is not one of these sections is left alone (other settings share
  the prefix); a known section with an unknown option is an error naming the variable.

Path form is applied after short form, so the more specific variable wins.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from shared.config.models import KilnConfig, PackageConfig
from shared.config.schema_walk import child_type, is_mapping, is_model

PREFIX = "KILN_"
PACKAGE_SECTIONS = ("deployment", "keys", "features", "scan", "notify", "webhooks", "compile", "docs")
TOP_LEVEL_SHORT = ("version_map",)

Path = tuple[str, ...]


def apply_env_overrides(
    data: Any, env: Mapping[str, str]
) -> tuple[Any, dict[Path, str], list[tuple[str, str]]]:
    """Return (overridden data, {key path: env var name}, [errors about env names])."""
    if not isinstance(data, dict):
        return data, {}, []
    data = copy.deepcopy(data)
    origins: dict[Path, str] = {}
    errors: list[tuple[str, str]] = []
    names = sorted(n for n in env if n.startswith(PREFIX))
    short = [n for n in names if "__" not in n[len(PREFIX) :]]
    long = [n for n in names if "__" in n[len(PREFIX) :]]
    for name in short:
        tokens = name[len(PREFIX) :].lower().split("_")
        try:
            target = _resolve_short(tokens)
        except LookupError as exc:
            errors.append((name, str(exc)))
            continue
        if target is None:
            continue
        scope, relative = target
        value = _parse_value(env[name])
        if scope == "top":
            origins[_set(data, relative, value)] = name
            continue
        packages = data.get("packages")
        for package in packages if isinstance(packages, dict) else ():
            path = _set(data, ("packages", package, *relative), value)
            if path:
                origins[path] = name
    for name in long:
        segments = tuple(s for s in name[len(PREFIX) :].split("__"))
        if segments[0].lower() not in KilnConfig.model_fields or not all(segments):
            continue
        path = _set(data, tuple(s.lower() for s in segments), _parse_value(env[name]))
        if path:
            origins[path] = name
    return data, origins, errors


def _resolve_short(tokens: list[str]) -> tuple[str, Path] | None:
    for scope, model, sections in (
        ("top", KilnConfig, TOP_LEVEL_SHORT),
        ("package", PackageConfig, PACKAGE_SECTIONS),
    ):
        for section in sections:
            words = section.split("_")
            if tokens[: len(words)] == words:
                rest = tokens[len(words) :]
                if not rest:
                    raise LookupError(f"names section {section!r} but no option in it")
                section_type = child_type(model, section)
                return scope, (section, *_resolve_fields(section_type, rest, section))
    return None


def _resolve_fields(current: object, tokens: list[str], where: str) -> Path:
    if is_mapping(current):
        return ("_".join(tokens),)
    if is_model(current):
        fields = current.model_fields  # type: ignore[attr-defined]
        for end in range(len(tokens), 0, -1):
            candidate = "_".join(tokens[:end])
            if candidate not in fields:
                continue
            if end == len(tokens):
                return (candidate,)
            child = child_type(current, candidate)
            if is_model(child) or is_mapping(child):
                return (candidate, *_resolve_fields(child, tokens[end:], f"{where}.{candidate}"))
        known = ", ".join(fields)
        raise LookupError(f"no option {'_'.join(tokens)!r} in {where} (expected one of: {known})")
    raise LookupError(f"{where} has no options to set")


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _set(data: dict, path: Path, value: Any) -> Path | None:
    """Set `value` at `path`, matching existing keys loosely; None if a parent is not a mapping."""
    node = data
    resolved: list[str] = []
    for index, segment in enumerate(path):
        key = _existing_key(node, segment)
        resolved.append(key)
        if index == len(path) - 1:
            node[key] = value
            return tuple(resolved)
        if key not in node or node[key] is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            return None
        node = node[key]
    return None


def _existing_key(node: dict, segment: str) -> str:
    wanted = segment.lower().replace("-", "_")
    for key in node:
        if str(key).lower().replace("-", "_") == wanted:
            return key
    return segment
