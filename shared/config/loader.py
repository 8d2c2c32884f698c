"""load_config: YAML -> environment overrides -> models + cross-checks, all errors at once.

`load_build_config` is what the compiler uses for a build: the operator's file (trusted), the
repository's config.yaml (untrusted, build keys only: shared/config/repository.py) laid over it,
then the environment, then one validation of the result.
"""

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
from shared.config.repository import check_repository_keys, overlay
from shared.config.schema_walk import allowed_keys
from shared.config.yaml_source import YamlDocument, parse_untrusted_yaml, parse_yaml

DEFAULT_KEYS_DIR = "~/.kiln/keys/{package}"
# (label for line numbers or None for "(line N)", the document)
Sources = list[tuple[str | None, YamlDocument]]


def load_config(path: str | os.PathLike, env: Mapping[str, str] = os.environ) -> KilnConfig:
    """Read, override from `env` and validate config.yaml; raise ConfigError with every problem."""
    source = Path(path)
    return parse_config(_read(source), env, source_name=str(source), source_dir=source.parent)


def parse_config(
    text: str,
    env: Mapping[str, str] = os.environ,
    *,
    source_name: str = "<string>",
    source_dir: Path | None = None,
) -> KilnConfig:
    """Same as load_config, from text; `source_dir` is the tree PEM keys must stay out of."""
    document = parse_yaml(text, source_name)
    if not isinstance(document.data, dict):
        raise ConfigError([("<root>", "the file must be a mapping of sections")])
    return _validate(document.data, [(None, document)], [], env, source_dir)


def load_build_config(
    operator_path: str | os.PathLike,
    repository: bytes | None,
    env: Mapping[str, str] = os.environ,
    *,
    repository_name: str = "config.yaml",
    source_dir: Path | None = None,
) -> KilnConfig:
    """The config of a build: the operator's file with the repository's build description
    (`repository`, the bytes of its config.yaml; None if it has none) laid over it.
    `source_dir` is the checked-out tree, which the operator's keys.dir must stay out of."""
    operator_file = Path(operator_path)
    operator = parse_yaml(_read(operator_file), str(operator_file))
    if not isinstance(operator.data, dict):
        raise ConfigError([("<root>", f"{operator_file} must be a mapping of sections")])
    sources: Sources = [(None, operator)]
    data: Any = operator.data
    issues: list[tuple[tuple, str]] = []
    if repository is not None:
        label = f"{repository_name} in the repository"
        document = parse_untrusted_yaml(repository, label)
        sources.insert(0, (label, document))
        refused = list(check_repository_keys(document.data))
        if refused:  # nothing of a file that tries to set operator keys is used
            errors = _duplicates(document) + [
                (format_path(loc), _annotate(message, loc, sources, {})) for loc, message in refused
            ]
            raise ConfigError(errors)
        data, issues = overlay(operator.data, document.data)
    return _validate(data, sources, issues, env, source_dir)


def _validate(
    data: dict[str, Any],
    sources: Sources,
    issues: list[tuple[tuple, str]],
    env: Mapping[str, str],
    source_dir: Path | None,
) -> KilnConfig:
    errors = [error for _, document in sources for error in _duplicates(document)]
    data, origins, env_errors = apply_env_overrides(data, env)
    errors += env_errors
    data = _with_default_keys_dir(data)
    model: KilnConfig | None = None
    try:
        model = KilnConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            parent = loc[:-1] if error["type"] == "extra_forbidden" else loc
            issues.append((loc, describe_pydantic_error(error, allowed_keys(KilnConfig, parent))))
    issues += cross_check(data, source_dir)
    for loc, message in issues:
        errors.append((format_path(loc), _annotate(message, loc, sources, origins)))
    if errors:
        raise ConfigError(errors)
    assert model is not None
    return model


def _read(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("<file>", f"cannot read {source}: {exc.strerror or exc}")]) from None


def _duplicates(document: YamlDocument) -> list[tuple[str, str]]:
    return [
        (format_path(path), f"duplicate key (line {line}); each key may appear once")
        for path, line in document.duplicates
    ]


def _clean_loc(loc: tuple) -> tuple:
    # pydantic marks a bad dict key with a trailing "[key]"; the key path already names it.
    return tuple(part for part in loc if part != "[key]")


def _annotate(message: str, loc: tuple, sources: Sources, origins: dict) -> str:
    for end in range(len(loc), 0, -1):
        name = origins.get(tuple(str(p) for p in loc[:end]))
        if name:
            return f"{message} [set by environment variable {name}]"
    # The file that wrote the deepest part of the path; on a tie the repository (it overlays).
    for end in range(len(loc), 0, -1):
        for label, document in sources:
            line = document.lines.get(tuple(loc[:end]))
            if line is not None:
                return f"{message} ({label}, line {line})" if label else f"{message} (line {line})"
    return message


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
