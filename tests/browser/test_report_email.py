"""The email report as a person sees it: sent through a real SMTP server (STARTTLS + auth), its
HTML part rendered in headless Chromium and saved as PNG under test-artifacts/ for review."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from services.reporter.bootstrap import bootstrap
from tests.integration.test_reporter_notify import parts, smtp, store  # noqa: F401  (smtp is a fixture)
from tests.unit.test_reporter_stream import full_build_stream

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def render_png(html: str, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}.html").write_text(html)
    target = ARTIFACTS / f"{name}.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 800})
        page.set_content(html, wait_until="load")
        assert page.locator(".kpi").count() == 6
        assert page.locator(".bar").count() >= 4
        page.screenshot(path=str(target), full_page=True)
        browser.close()
    return target


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_report_email_renders_in_chromium(sessions, smtp, outcome):  # noqa: F811
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id, notify="raci", fail_stage="image" if outcome == "failed" else None)
    store(sessions, stream)
    bootstrap(smtp.settings(), sessions=sessions).parts["notifier"].build_finished(stream[-1])
    assert smtp.inbox.received.wait(10)
    html = parts(smtp.inbox.messages[0])["text/html"]
    png = render_png(html, f"report-email-{outcome}")
    assert png.stat().st_size > 20_000
