"""The per-service Dockerfile, rendered from `templates/Dockerfile.j2` (the source of truth)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

VENV_DIR = "/opt/kiln/venv"
APP_DIR = "/app"
LAUNCH_DIR = "/opt/kiln/launch"
LAUNCHER = f"{LAUNCH_DIR}/kiln_launch.py"
LAUNCHER_SOURCE = Path(__file__).parent / "templates" / "launch" / "kiln_launch.py"
# `python`, `python3`, `python3.13`, `/usr/local/bin/python3.13t`: any CPython the image has.
_PYTHON = re.compile(r"^python(?:3(?:\.\d{1,2}t?)?)?$")

_ENV = Environment(
    loader=PackageLoader("services.imager", "templates"),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,  # a Dockerfile, not HTML
)


def dockerfile_quote(value: object) -> str:
    """A double-quoted Dockerfile word: backslash, quote and `$` escaped, newlines flattened."""
    text = str(value).replace("\n", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


_ENV.filters["dockerfile_quote"] = dockerfile_quote


@dataclass(frozen=True)
class ImageSpec:
    """Everything the Dockerfile says about one service image."""

    base_image: str
    command: tuple[str, ...]
    factories: tuple[str, ...]
    tier: str | None = None
    requirements_hash: str | None = None
    port: int | None = None
    health_path: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    system_packages: tuple[str, ...] = ()
    system_layer: str | None = None  # the cached layer's name (system_layer.py); None: no layer


def launch_command(command: tuple[str, ...]) -> tuple[str, ...]:
    """`python3 -m pkg.mod ...` -> the launcher (compiled modules cannot run through runpy)."""
    if len(command) >= 3 and _PYTHON.fullmatch(command[0].rsplit("/", 1)[-1]) and command[1] == "-m":
        return ("python3", LAUNCHER, *command[2:])
    return command


def render_dockerfile(spec: ImageSpec) -> str:
    if not spec.command:
        raise ValueError("a service image needs a command")
    return _ENV.get_template("Dockerfile.j2").render(
        base_image=spec.base_image,
        venv_dir=VENV_DIR,
        app_dir=APP_DIR,
        launch_dir=LAUNCH_DIR,
        tier=spec.tier,
        requirements_hash=spec.requirements_hash or "",
        system_packages=", ".join(sorted(spec.system_packages)),
        system_layer=spec.system_layer,
        # sorted: the same factory set always gives the same layer order, so the same cache keys
        factories=sorted(spec.factories),
        port=spec.port,
        health_path=spec.health_path,
        command_json=json.dumps(list(launch_command(spec.command))),
        labels=sorted(spec.labels.items()),
    )
