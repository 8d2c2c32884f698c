"""The build report rendered from its view (Jinja2 templates beside this module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "html.j2"]),
    undefined=StrictUndefined,  # a template naming a value the view lacks fails the test, not the reader
    trim_blocks=False,
)


def render_html(view: dict[str, Any]) -> str:
    return _env.get_template("report.html.j2").render(**view)


def render_text(view: dict[str, Any]) -> str:
    return _env.get_template("report.txt.j2").render(**view)
