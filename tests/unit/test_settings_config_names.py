"""No service setting (KILN_<FIELD>) may be mistaken for a config.yaml override (KILN_<SECTION>_…).

Both live in one process environment; a clash makes every service that loads the config refuse
to start (it happened once: KILN_COMPILE_JOBS read as an unknown option of `compile`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from shared.config import load_config
from shared.settings import KilnSettings

EXAMPLE = Path(__file__).parents[2] / "examples" / "operator" / "config.yaml"
SERVICES = ("gateway", "compiler", "imager", "scanner", "deployer", "reporter")
# Settings that are meant to override config: documented in docs/configuration.md.
INTENDED_OVERRIDES = {"KILN_KEYS_DIR"}


def settings_classes() -> list[type[KilnSettings]]:
    classes: list[type[KilnSettings]] = [KilnSettings]
    for service in SERVICES:
        module = importlib.import_module(f"services.{service}.settings")
        classes += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, KilnSettings) and value is not KilnSettings
        ]
    return classes


def env_names() -> list[str]:
    names = {f"KILN_{field.upper()}" for cls in settings_classes() for field in cls.model_fields}
    return sorted(names - INTENDED_OVERRIDES)


@pytest.mark.parametrize("name", env_names())
def test_setting_is_not_read_as_a_config_override(name):
    baseline = load_config(EXAMPLE, env={}).model_dump()
    assert load_config(EXAMPLE, env={name: "7"}).model_dump() == baseline
