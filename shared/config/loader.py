"""load_config: YAML -> environment overrides -> models + cross-checks, all errors at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.config.cross_checks import cross_check
from shared.config.env_override import apply_env_overrides
from shared.config.errors import ConfigError, describe_pydantic_error, format_path
from shared.config.models import KilnConfig
from shared.config.schema_walk import allowed_keys
from shared.config.yaml_source import YamlDocument, parse_yaml

DEFAULT_KEYS_DIR = "~/.kiln/keys/{package}"


def load_config(path: str | os.PathLike, env: Mapping[str, str] = os.environ) -> KilnConfig:
    """Read, override from `env` and validate config.yaml; raise ConfigError with every problem."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("<file>", f"cannot read {source}: {exc.strerror or exc}")]) from None
    return parse_config(text, env, source_name=str(source), source_dir=source.parent)


def parse_config(
    text: str,
    env: Mapping[str, str] = os.environ,
    *,
    source_name: str = "<string>",
    source_dir: Path | None = None,
) -> KilnConfig:
    """Same as load_config, from text; `source_dir` is the tree PEM keys must stay out of."""
    document = parse_yaml(text, source_name)
    errors: list[tuple[str, str]] = [
        (format_path(path), f"duplicate key (line {line}); each key may appear once")
        for path, line in document.duplicates
    ]
    if not isinstance(document.data, dict):
        raise ConfigError([("<root>", "the file must be a mapping of sections")])
    data, origins, env_errors = apply_env_overrides(document.data, env)
    errors += env_errors
    data = _with_default_keys_dir(data)
    model: KilnConfig | None = None
    issues: list[tuple[tuple, str]] = []
    try:
        model = KilnConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            parent = loc[:-1] if error["type"] == "extra_forbidden" else loc
            issues.append((loc, describe_pydantic_error(error, allowed_keys(KilnConfig, parent))))
    issues += cross_check(data, source_dir)
    for loc, message in issues:
        errors.append((format_path(loc), _annotate(message, loc, document, origins)))
    if errors:
        raise ConfigError(errors)
    assert model is not None
    return model


def _clean_loc(loc: tuple) -> tuple:
    # pydantic marks a bad dict key with a trailing "[key]"; the key path already names it.
    return tuple(part for part in loc if part != "[key]")


def _annotate(message: str, loc: tuple, document: YamlDocument, origins: dict) -> str:
    for end in range(len(loc), 0, -1):
        name = origins.get(tuple(str(p) for p in loc[:end]))
        if name:
            return f"{message} [set by environment variable {name}]"
    line = document.line_of(loc)
    return f"{message} (line {line})" if line else message


def _with_default_keys_dir(data: dict[str, Any]) -> dict[str, Any]:
    packages = data.get("packages")
    if not isinstance(packages, dict):
        return data
    for name, package in packages.items():
        if isinstance(package, dict):
            keys = package.setdefault("keys", {})
            if isinstance(keys, dict):
                keys.setdefault("dir", DEFAULT_KEYS_DIR.format(package=name))
    return data
