"""The dashboard in real headless Chromium (Playwright) against a real gateway, RabbitMQ and MariaDB:
click from the builds list to a finished build, check what it shows, and watch live events and live
log lines arrive."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from shared.bus import Bus
from shared.bus.live_logs import LogShipper
from shared.events import BuildRequested, Envelope, StageStarted
from shared.events.build import Source
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_server import running_gateway

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def browser():
    assert Path(CHROMIUM).exists(), "install Chromium: apt-get install -y chromium"
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


async def test_list_to_finished_build_page(browser, amqp_url, database_url, sessions):
    package = f"ui{uuid.uuid4().hex[:6]}"
    build_id, envelopes = seed_build(sessions, package=package, arm_size_mb=48, multi_arch=True)
    other, _ = seed_build(sessions, package=package, size_mb=42, status="failed")
    async with running_gateway(amqp_url, database_url) as (url, _app):
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(f"{url}/?package={package}")
        assert await page.locator("table.builds tbody tr").count() == 2
        await page.screenshot(path=str(ARTIFACTS / "dashboard-builds.png"), full_page=True)

        await page.click(f"a[href='/ui/builds/{build_id}']")
        await page.wait_for_url(f"**/ui/builds/{build_id}")
        assert await page.locator("#build-status").inner_text() == "succeeded"
        assert await page.locator(".timeline .lane").count() == 8
        assert await page.locator("table.images tbody tr").count() == 2  # services
        images = await page.locator("table.images").inner_text()
        assert "50.0 MB" in images and "48.0 MB" in images
        # A multi-arch index is shown as the sum of its platform images, and says so.
        header = page.locator("table.images thead th.index-size")
        assert "multi-arch index (sum of platforms)" in (await header.inner_text()).lower()
        assert "sum of its platform images" in await header.get_attribute("title")
        index_cells = page.locator("table.images tbody td:last-child .size")
        assert await index_cells.all_inner_texts() == ["98.0 MB", "98.0 MB"]
        title = await index_cells.first.get_attribute("title")
        assert title.startswith("linux/amd64 50.0 MB + linux/arm64 48.0 MB")
        assert " 0.0 MB" not in images
        assert "pass · C0 H1 M0 L3" in await page.locator("table.images").inner_text()
        assert "4/4 ok" in await page.locator("table.matrix").first.inner_text()
        # history arrives over SSE: every stored event of the finished build is listed
        await page.wait_for_function(f"document.querySelectorAll('#events li').length >= {len(envelopes)}")
        await page.screenshot(path=str(ARTIFACTS / "dashboard-build.png"), full_page=True)

        await page.goto(f"{url}/ui/diff?a={build_id}&b={other}")
        assert "→" in await page.locator("table.diff").nth(1).inner_text()
        await page.screenshot(path=str(ARTIFACTS / "dashboard-diff.png"), full_page=True)


async def test_running_build_page_updates_live(browser, amqp_url, database_url, sessions):
    build_id, _ = seed_build(sessions, package="uilive", status="running")
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        async with running_gateway(amqp_url, database_url) as (url, _app):
            page = await browser.new_page()
            await page.goto(f"{url}/ui/builds/{build_id}")
            await page.wait_for_function("document.querySelectorAll('#events li').length > 0")
            before = await page.locator("#events li").count()
            request = BuildRequested(package="uilive", source=Source(ref="refs/heads/main"))
            for event in (request, StageStarted(stage="deploy", target="webhook")):
                await publisher.publish(
                    Envelope.new(event, source="test", build_id=build_id, package="uilive")
                )
            await page.wait_for_function(f"document.querySelectorAll('#events li').length >= {before + 2}")
            assert "stage.started  deploy webhook" in await page.locator("#events").text_content()
            await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
    finally:
        await publisher.stop(grace_s=1)


async def test_running_build_page_shows_live_log_lines(browser, amqp_url, database_url, sessions):
    """Lines shipped by a stage's LogShipper (the real one, on the real broker) appear in the log pane."""
    build_id, _ = seed_build(sessions, package="uilogs", status="running")
    publisher = await Bus(amqp_url, source="test").connect()
    shipper = LogShipper("compiler")
    await shipper.start(publisher)
    try:
        async with running_gateway(amqp_url, database_url) as (url, _app):
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{url}/ui/builds/{build_id}")
            await page.wait_for_function("document.querySelectorAll('#events li').length > 0")
            with shipper.stream(build_id, stage="compile", package="uilogs") as log:
                log("compiling core, webhook for linux/amd64")
                log("[1] ok       core.models (812 ms)")
            with shipper.stream(build_id, stage="image", target="webhook", platform="linux/arm64") as log:
                log("Step 1/6 : FROM kiln/base:arm64")
            await page.wait_for_function(
                "document.getElementById('log').textContent.includes('Step 1/6')", timeout=15_000
            )
            text = await page.locator("#log").text_content()
            assert "[compile] compiling core, webhook for linux/amd64" in text
            assert "[compile] [1] ok       core.models (812 ms)" in text
            assert "[image/webhook/linux/arm64] Step 1/6 : FROM kiln/base:arm64" in text
            await page.screenshot(path=str(ARTIFACTS / "dashboard-live-log.png"), full_page=True)
    finally:
        await shipper.stop()
        await publisher.stop(grace_s=1)
