"""The report (shared.report: the same view and templates the gateway serves) as a multipart email."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from shared.report import render_html, render_text


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
