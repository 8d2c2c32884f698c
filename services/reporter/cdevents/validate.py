"""Validation against the vendored CDEvents v0.5.1 JSON schemas (Apache-2.0, see schemas/LICENSE).

The event schemas `$ref` the link schemas (`links/embeddedlinksarray`, …) by relative URI, so
every file is registered under its `$id` in one `referencing.Registry`; nothing is fetched.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).parent / "schemas"


class InvalidCDEvent(Exception):
    """A translation that does not match its schema: a bug in Kiln, never published."""


@cache
def _registry_and_types() -> tuple[Registry, dict[str, dict[str, Any]]]:
    resources = []
    by_type: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
        type_enum = schema.get("properties", {}).get("context", {}).get("properties", {}).get("type", {})
        for ce_type in type_enum.get("enum", ()):
            by_type[ce_type] = schema
    return Registry().with_resources(resources), by_type


def schema_for(cdevent_type: str) -> dict[str, Any]:
    _, by_type = _registry_and_types()
    try:
        return by_type[cdevent_type]
    except KeyError:
        raise InvalidCDEvent(f"no v0.5.1 schema for type {cdevent_type!r}") from None


def validate(cdevent: dict[str, Any]) -> None:
    cdevent_type = cdevent.get("context", {}).get("type", "")
    registry, _ = _registry_and_types()
    validator = Draft202012Validator(
        schema_for(cdevent_type), registry=registry, format_checker=FormatChecker()
    )
    errors = sorted(validator.iter_errors(cdevent), key=lambda e: list(e.absolute_path))
    if errors:
        described = "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]
        )
        raise InvalidCDEvent(f"{cdevent_type}: {described}")
