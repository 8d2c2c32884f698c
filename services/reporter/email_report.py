"""Renders the report (Jinja2 templates in `templates/`) into a multipart email: text + HTML."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
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


def report_message(view: dict[str, Any], *, sender: str, recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    build = view["build"]
    source = " ".join(p for p in (build.get("version"), build.get("ref"), view["short_commit"]) if p)
    message["Subject"] = f"[Kiln] {view['title']}" + (f" ({source})" if source else "")
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = make_msgid(domain="kiln")
    message["X-Kiln-Build"] = build["build_id"]
    message.set_content(render_text(view))
    message.add_alternative(render_html(view), subtype="html")
    return message
