"""The app's own configuration (issue #16 item 4): the file of sections and options the platform
Kiln builds reads at run time (`database: {host, port}`, `mqtt: {broker}` ...), and its secrets.

Both are operator config. The file itself is repository content (its path is named here, its
sections are trimmed by shared/config/app_config.py at stage config); which sections reach the
pods, which service reads which, and where secrets come from are decided by the operator, so the
deployer, which reads only the operator's config, knows what to mount and to whom.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from shared.config.sections import ENV_NAME_PATTERN, PATTERN_HELP, RELATIVE_PATH_PATTERN, Section

# `<PREFIX>_<SECTION>_<OPTION>`: a prefix without `_`, so the section starts at the first `_`.
ENV_PREFIX_PATTERN = r"^[A-Z][A-Z0-9]{0,31}$"
# Section names of the app's file: they become part of environment variable names (upper case,
# `-` as `_`) and of ConfigMap keys, so plain words only.
APP_SECTION_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
PATTERN_HELP[ENV_PREFIX_PATTERN] = "must be an upper-case word like AXION ([A-Z][A-Z0-9]*, no '_')"
PATTERN_HELP[APP_SECTION_PATTERN] = "must be a section name: a letter, then letters, digits, '_' or '-'"
# The deployer's own settings and Kiln's variables in the pods (KILN_CONFIG, KILN_KEYS_DIR,
# KILN_APP_CONFIG): never an app's prefix, never a secret's name or source.
KILN_PREFIX = "KILN"

EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN, max_length=128)]
AppSection = Annotated[str, StringConstraints(pattern=APP_SECTION_PATTERN)]
ServiceName = Annotated[str, StringConstraints(max_length=40)]


class AppConfigSpec(Section):
    """`packages.<p>.app_config`: the repository's file and the sections the package's pods see."""

    path: Annotated[str, StringConstraints(pattern=RELATIVE_PATH_PATTERN)]
    env_prefix: Annotated[str, StringConstraints(pattern=ENV_PREFIX_PATTERN)]
    sections: Annotated[list[AppSection], Field(min_length=1)]

    @field_validator("path")
    @classmethod
    def _inside_repository(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("must stay inside the repository (no '..')")
        return value

    @field_validator("env_prefix")
    @classmethod
    def _not_kiln(cls, value: str) -> str:
        if value == KILN_PREFIX:
            raise ValueError("KILN is Kiln's own prefix (its settings and overrides); name the app's")
        return value

    @field_validator("sections")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        upper = [env_word(section) for section in value]
        if len(set(upper)) != len(upper):
            raise ValueError("sections must not repeat a section (compared as in variable names)")
        return value


class AppSecret(Section):
    """`packages.<p>.app_secrets.<NAME>`: the variable NAME in the containers, its value read by the
    deployer at deploy time from its own variable `env` (never written in any file)."""

    env: EnvName
    # Default: the services that read the section the name names (`<PREFIX>_<SECTION>_…`).
    services: list[ServiceName] | None = None

    @field_validator("env")
    @classmethod
    def _not_kiln(cls, value: str) -> str:
        if value.startswith(f"{KILN_PREFIX}_"):
            raise ValueError(
                "must not be a KILN_ variable: the deployer's own settings (registry, broker, database "
                "credentials) are never handed to an app; use a variable of its own, like DEMO_DB_PASSWORD"
            )
        return value


def env_word(name: str) -> str:
    """A section or option name as it appears in a variable name: `rate-limit` -> `RATE_LIMIT`."""
    return name.upper().replace("-", "_")
