"""Pure logic of the gateway's trust boundary (no I/O): which addresses a subscription may reach,
the circuit breaker's pauses, when reads need the token, how a presented token is read."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from services.gateway.auth import presented_token
from services.gateway.settings import GatewaySettings, is_loopback_host
from services.gateway.subscriptions.store import MAX_PAUSE_S, Breaker
from services.gateway.subscriptions.targets import AllowList, TargetRefused, address_class, check

TOKEN = "t" * 32


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local (cloud metadata lives here)"),
        ("10.0.0.5", "private"),
        ("172.18.0.3", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("fe80::1", "link-local (cloud metadata lives here)"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata lives here)"),
        ("2002:0a00:0001::", "private"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classes(address, label):
    assert address_class(address) == label


def test_allow_list_takes_names_addresses_and_networks():
    allow = AllowList(["Hooks.Internal.", "10.20.0.0/16", "127.0.0.1", " "])
    assert allow.allows_name("hooks.internal") and not allow.allows_name("other.internal")
    assert allow.allows_address("10.20.3.4") and allow.allows_address("127.0.0.1")
    assert not allow.allows_address("10.21.0.1") and not allow.allows_address("::1")


async def test_check_uses_the_resolved_addresses_and_connects_to_the_checked_one():
    async def resolver(host, port):
        return {"public.example": ["93.184.216.34"], "mixed.example": ["93.184.216.34", "10.0.0.1"]}[host]

    target = await check("https://public.example:8443/hook?x=1", AllowList(), resolver)
    assert target.connect_url == "https://93.184.216.34:8443/hook?x=1"
    assert (target.host, target.host_header) == ("public.example", "public.example:8443")
    with pytest.raises(TargetRefused, match="private"):  # one private answer is enough to refuse
        await check("http://mixed.example/", AllowList(), resolver)
    allowed = await check("http://mixed.example/", AllowList(["mixed.example"]), resolver)
    assert allowed.address == "93.184.216.34"


def test_breaker_pauses_after_n_failures_and_doubles_up_to_an_hour():
    breaker = Breaker(failures=3, pause_s=60)
    assert breaker.pause(2) is None
    assert breaker.pause(3) == timedelta(seconds=60) and breaker.pause(4) == timedelta(seconds=120)
    assert breaker.pause(100) == timedelta(seconds=MAX_PAUSE_S)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("kiln.example.com", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback
    assert GatewaySettings(host=host).reads_require_token() is not loopback


def test_explicit_read_setting_wins_and_unsigned_needs_the_opt_in():
    assert GatewaySettings(host="0.0.0.0", read_requires_token=False).reads_require_token() is False
    assert GatewaySettings(read_requires_token=True).reads_require_token() is True
    settings = GatewaySettings(
        github_secret=TOKEN, allow_unsigned_github=True, allow_unsigned_bitbucket_cloud=True
    )
    assert settings.unsigned_providers() == ["bitbucket-cloud"]  # a provider with a secret stays signed


def test_presented_token_reads_bearer_and_basic_only():
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert presented_token(f"Bearer {TOKEN}") == TOKEN.encode()
    assert presented_token(f"Basic {basic}") == TOKEN.encode()
    assert presented_token(f"Basic {basic}", basic=False) is None  # writes: Bearer only
    assert presented_token("Bearer ") == b"" and presented_token("Basic !!") is None
    assert presented_token(f"Token {TOKEN}") is None and presented_token(None) is None


def test_the_listen_address_given_on_the_command_line_decides_about_reads(monkeypatch):
    """`--host 0.0.0.0` (compose) closes reads in this process and in the worker processes,
    which read KILN_HOST themselves."""
    from services.gateway import __main__ as entry

    served = {}
    monkeypatch.delenv("KILN_HOST", raising=False)
    monkeypatch.setattr(entry, "bootstrap", lambda settings: settings)
    monkeypatch.setattr(entry, "setup_logging", lambda *a, **k: None)
    monkeypatch.setattr(entry.uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    entry.main(["--host", "0.0.0.0", "--port", "8000", "--workers", "1"])
    assert served["host"] == "0.0.0.0" and served["app"].reads_require_token()
    assert entry.os.environ["KILN_HOST"] == "0.0.0.0"
