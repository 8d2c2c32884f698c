"""The app's own configuration, as its services read it at run time.

Kiln mounts this service's sections of config/app.yaml (JSON, valid YAML too) read-only at
$KILN_APP_CONFIG. Environment variables `<PREFIX>_<SECTION>_<OPTION>` beat the file's
SECTION.OPTION: `DEMO_DATABASE_HOST=db2` beats `database: {host: ...}`. The rule:

- only sections in the file are overridden; section and option names compare upper-cased with
  `-` as `_`, the longest section name first (`DEMO_RATE_LIMIT_MAX` is `rate_limit.max`
  before `rate.limit_max`);
- an option the file lacks is added under its lower-case name (how secrets such as
  DEMO_DATABASE_PASSWORD arrive: never in the file, always from the environment);
- the value is a string, turned into the file's type when the file has the option as a bool,
  an int or a float (`DEMO_DATABASE_PORT=5433` -> 5433);
- nothing is ever expanded: "${HOME}" in the file or a variable stays "${HOME}".

Kiln checks at config time that a service's `env` entries with the prefix name a section and
option of its file, so a typo fails the build instead of being ignored here.
Stdlib only, so any service can use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def load_app_config(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, dict]:
    """The sections this service reads, with the environment's overrides applied; {} when
    nothing is mounted (the package has no app config, or the service reads none of it)."""
    environ = os.environ if environ is None else environ
    path = environ.get("KILN_APP_CONFIG")
    sections: dict[str, dict] = {}
    if path and Path(path).is_file():
        sections = json.loads(Path(path).read_text(encoding="utf-8"))
    head = f"{prefix}_"
    for name in sorted(environ):
        if name.startswith(head):
            _override(sections, name[len(head) :], environ[name])
    return sections


def _override(sections: dict[str, dict], rest: str, raw: str) -> None:
    for section in sorted(sections, key=lambda s: -len(_word(s))):
        word = f"{_word(section)}_"
        if rest.startswith(word) and len(rest) > len(word):
            wanted = rest[len(word) :]
            options = sections[section]
            option = next((o for o in options if _word(o) == wanted), wanted.lower())
            options[option] = _typed(raw, options.get(option))
            return


def _typed(raw: str, current: object) -> object:
    if isinstance(current, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    return raw


def _word(name: str) -> str:
    return name.upper().replace("-", "_")
