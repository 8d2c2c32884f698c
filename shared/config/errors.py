"""ConfigError: every problem of a config file, each with the key path it concerns."""

from __future__ import annotations

from collections.abc import Iterable

from shared.config.sections import PATTERN_HELP

# Keys that look like someone is about to commit a credential: say so, not just "unknown key".
_CREDENTIAL_KEYS = {"password", "token", "secret", "auth", "username", "private_key", "api_key"}


class ConfigError(Exception):
    """Raised by `load_config`; `.errors` is `[(key_path, message), ...]`, all of them."""

    def __init__(self, errors: Iterable[tuple[str, str]]):
        self.errors: list[tuple[str, str]] = list(dict.fromkeys(errors))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{path}: {message}" for path, message in self.errors)


def format_path(loc: Iterable[str | int]) -> str:
    """`("packages", "demo", "raci", "consulted", 0)` -> `packages.demo.raci.consulted[0]`."""
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


def describe_pydantic_error(error: dict, allowed_keys: list[str] | None) -> str:
    """A pydantic error rewritten to say what was expected, and what was found."""
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]).lower()
        if key in _CREDENTIAL_KEYS:
            where = "docs.wiki.api_key_env" if "docs" in error["loc"] else "deployment.registry.auth_env"
            return f"credentials never go in config.yaml: name the environment variable in {where} instead"
        expected = f" (expected one of: {', '.join(allowed_keys)})" if allowed_keys else ""
        return f"unknown key{expected}"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = error["ctx"]["pattern"]
        message = PATTERN_HELP.get(pattern, f"must match {pattern}")
    found = error.get("input")
    if found is not None and not isinstance(found, dict | list):
        message += f" (got {found!r})"
    return message
