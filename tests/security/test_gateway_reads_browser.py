"""Finding 9 in a real browser: with reads closed (the gateway listening beyond loopback) the
dashboard asks for the token once, as HTTP Basic, and then works, live view (EventSource)
included; without it nothing is shown. Headless Chromium against a real gateway, RabbitMQ and
MariaDB."""

from __future__ import annotations

import pytest
from playwright.async_api import Error as PlaywrightError

from shared.bus import Bus
from shared.events import Envelope, StageStarted
from tests.browser.test_dashboard import browser  # noqa: F401 (the fixture)
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_server import running_gateway
from tests.integration.test_gateway_webhooks import SECRETS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def test_dashboard_asks_for_the_token_and_streams_with_it(browser, amqp_url, database_url, sessions):  # noqa: F811
    build_id, _ = seed_build(sessions, package="uiauth", status="running")
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        gateway = running_gateway(amqp_url, database_url, host="0.0.0.0")
        async with gateway as (url, _app):
            anonymous = await browser.new_page()
            try:  # headless Chromium cancels the credentials prompt: the page is never shown
                answer = await anonymous.goto(f"{url}/ui/builds/{build_id}")
                assert answer is not None and answer.status == 401
                assert "uiauth" not in await anonymous.content()
            except PlaywrightError as exc:
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)

            context = await browser.new_context(
                http_credentials={"username": "me", "password": SECRETS["api"]}
            )
            page = await context.new_page()
            assert (await page.goto(f"{url}/ui/builds/{build_id}")).status == 200
            await page.wait_for_function("document.querySelectorAll('#events li').length > 0")
            before = await page.locator("#events li").count()
            live = Envelope.new(
                StageStarted(stage="deploy", target="webhook"), source="test", build_id=build_id
            )
            await publisher.publish(live)
            await page.wait_for_function(f"document.querySelectorAll('#events li').length > {before}")
            await context.close()
    finally:
        await publisher.stop(grace_s=1)
