"""The app's own configuration file: read from the repository (untrusted), trimmed to the sections
the operator lists, and checked against the services' environment overrides.

The file is repository content, so it is read as the repository's config.yaml is
(`parse_untrusted_yaml`: size cap, no anchors/aliases, no tags, bounded nesting) and only its
listed sections are kept. Nothing in it is ever expanded: `"${KILN_REGISTRY_PASSWORD}"` is a
string like any other (the generated compose file escapes `$`, the deployer passes the file as is).

What travels (compiler -> deployer, by reference: shared/document_artifacts.py) is the package's
trimmed document, canonical JSON:
`{"schema": 1, "package": …, "path": "config/app.yaml", "sections": {<section>: {<option>: …}}}`.
Each service's pods get the sections it reads (`service_view`), as JSON (valid YAML too).

Override rule (the app applies it at run time; examples/monorepo/core/app_config.py):
`<PREFIX>_<SECTION>_<OPTION>` beats the file's `SECTION.OPTION`; section and option names compare
upper-cased with `-` as `_`, the longest section name first. Kiln checks at stage config that every
such entry of a service's `env` names a section the service reads and an option the file has.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shared.config.app_sections import AppConfigSpec, env_word
from shared.config.errors import ConfigError, format_path
from shared.config.models import PackageConfig
from shared.config.yaml_source import parse_untrusted_yaml

# An app config is a few KiB; the same bound as the repository's config.yaml.
APP_CONFIG_MAX_BYTES = 256 * 1024
APP_CONFIG_SCHEMA = 1
Issue = tuple[tuple[str | int, ...], str]


def split_env_name(name: str, prefix: str, sections: Iterable[str]) -> tuple[str, str] | None:
    """(section, OPTION) that `<PREFIX>_<SECTION>_<OPTION>` names among `sections`, longest
    section first (`DEMO_RATE_LIMIT_MAX` is `rate_limit`.MAX before `rate`.LIMIT_MAX), or None."""
    head = f"{prefix}_"
    if not name.startswith(head):
        return None
    rest = name[len(head) :]
    for section in sorted(sections, key=lambda s: -len(env_word(s))):
        word = f"{env_word(section)}_"
        if rest.startswith(word) and len(rest) > len(word):
            return section, rest[len(word) :]
    return None


def trimmed_document(data: bytes, package: str, pkg: PackageConfig) -> bytes:
    """The package's trimmed app config (canonical JSON bytes) from the repository file's bytes;
    ConfigError naming `packages.<p>.app_config…` / `…services.<s>.env.<NAME>` for every problem."""
    spec = pkg.app_config
    assert spec is not None, "only for a package with app_config"
    document = parse_untrusted_yaml(data, f"{spec.path} in the repository", APP_CONFIG_MAX_BYTES)
    errors = [
        (f"<{spec.path}>", f"{format_path(p)}: duplicate key (line {line}); each key may appear once")
        for p, line in document.duplicates
    ]
    sections, issues = trim_sections(document.data, spec, package)
    issues += env_problems(package, pkg, sections)
    errors += [(format_path(loc), message) for loc, message in issues]
    if errors:
        raise ConfigError(errors)
    return encode_document(package, spec.path, sections)


def trim_sections(data: Any, spec: AppConfigSpec, package: str) -> tuple[dict[str, dict], list[Issue]]:
    """The listed sections of the parsed file, each a mapping of string-named options."""
    where = ("packages", package, "app_config")
    if not isinstance(data, dict):
        return {}, [
            ((*where, "path"), f"{spec.path} must be a mapping of sections (section: {{option: value}})")
        ]
    kept: dict[str, dict] = {}
    issues: list[Issue] = []
    for index, section in enumerate(spec.sections):
        at = (*where, "sections", index)
        if section not in data:
            issues.append((at, f'section "{section}" is not in {spec.path}'))
            continue
        options = data[section]
        if not isinstance(options, dict):
            kind = type(options).__name__ if options is not None else "nothing"
            issues.append(
                (at, f'section "{section}" of {spec.path} must be a mapping of options (got {kind})')
            )
            continue
        bad = [repr(key) for key in options if not isinstance(key, str)]
        if bad:
            issues.append(
                (
                    at,
                    f'section "{section}" of {spec.path}: option names must be strings '
                    f"(got {', '.join(bad)})",
                )
            )
            continue
        try:
            kept[section] = {key: _plain(value) for key, value in options.items()}
        except ValueError as exc:
            issues.append((at, f'section "{section}" of {spec.path}: {exc}'))
    return kept, issues


def env_problems(package: str, pkg: PackageConfig, sections: Mapping[str, Mapping]) -> Iterator[Issue]:
    """Every `<PREFIX>_…` entry of a service's env that names no section it reads or no option of
    that section in the trimmed file (a typo would leave the file's value silently in force)."""
    spec = pkg.app_config
    if spec is None:
        return
    path = spec.path
    for name, svc in pkg.services.items():
        for key in svc.env:
            if not key.startswith(f"{spec.env_prefix}_"):
                continue
            at = ("packages", package, "services", name, "env", key)
            named = split_env_name(key, spec.env_prefix, svc.app_config_sections)
            if named is None:
                reads = ", ".join(svc.app_config_sections) or "none"
                yield (
                    at,
                    (
                        f"names no section service {name} reads ({spec.env_prefix}_<SECTION>_<OPTION>; its "
                        f"app_config_sections: {reads})"
                    ),
                )
                continue
            section, option = named
            if section not in sections:
                continue  # a section the file lacks: reported once, at app_config.sections
            options = sections[section]
            if not any(env_word(o) == option for o in options):
                yield (
                    at,
                    (
                        f'names option {option}, which section "{section}" of {path} does not have (its '
                        f"options: {', '.join(sorted(options)) or 'none'})"
                    ),
                )


def encode_document(package: str, path: str, sections: Mapping[str, Any]) -> bytes:
    body = {"schema": APP_CONFIG_SCHEMA, "package": package, "path": path, "sections": sections}
    return (json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def decode_document(data: bytes) -> dict[str, dict]:
    """The sections of a trimmed document (what the deployer fetched); ValueError if it is none."""
    body = json.loads(data.decode("utf-8"))
    if not isinstance(body, dict) or body.get("schema") != APP_CONFIG_SCHEMA:
        raise ValueError(f"not a trimmed app config of schema {APP_CONFIG_SCHEMA}")
    sections = body.get("sections")
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise ValueError("its sections are not a mapping of mappings")
    return sections


def service_view(sections: Mapping[str, Any], reads: Iterable[str]) -> str:
    """The file one service's pods mount: the sections it reads, as the app's own file shape."""
    view = {name: sections[name] for name in reads}
    return json.dumps(view, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _plain(value: Any) -> Any:
    """A YAML value as JSON can hold it: dates as ISO strings, keys as strings; no NaN or infinity."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a number JSON can hold (write it as a string)")
    return value


def secret_receivers(pkg: PackageConfig) -> dict[str, tuple[str, ...]]:
    """Each app secret's name -> the services whose containers get it: those it lists, else the
    services that read the section its name names (validated by app_checks: never empty)."""
    spec = pkg.app_config
    receivers: dict[str, tuple[str, ...]] = {}
    for name, secret in pkg.app_secrets.items():
        if secret.services is not None:
            receivers[name] = tuple(secret.services)
            continue
        named = split_env_name(name, spec.env_prefix, spec.sections) if spec else None
        section = named[0] if named else None
        receivers[name] = tuple(s for s, svc in pkg.services.items() if section in svc.app_config_sections)
    return receivers
